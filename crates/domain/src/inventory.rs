//! The inventory domain: stock per (warehouse, sku); Receive, Ship, Transfer.
//!
//! Every command touches the levels of exactly one sku, and commands are
//! routed to partitions by sku, so no command ever crosses partitions.

pub mod audit;

use protocol::canonical_json::ObjectWriter;

use crate::{
    CommandDecodeError, CorruptState, Domain, DomainOutcome, EntityKey, EntityStates, EntityWrite,
    EvaluationContext, Verdict,
};

/// Bounds of the domain, as in `spec/inventory.allium`'s config.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InventoryLimits {
    /// Largest quantity one command may carry.
    pub max_quantity: i64,
    /// Largest level one (warehouse, sku) may hold; keeps every sum in i64.
    pub max_stock_level: i64,
}

impl Default for InventoryLimits {
    fn default() -> Self {
        Self {
            max_quantity: 1_000_000,
            max_stock_level: 1_000_000_000_000,
        }
    }
}

/// Only a transfer names a destination: the shape of the enum says so.
/// Its serde form is the HTTP API's `command` object
/// (`{"type":"receive","warehouse":..,"sku":..,"quantity":..}`), which the
/// load generator, the chaos history and clients share; what instances
/// agree on is the prost encoding and the canonical outcome, never this.
///
/// spec: inventory.TransferNamesDestination
#[derive(
    Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum InventoryCommand {
    Receive {
        warehouse: String,
        sku: String,
        quantity: i64,
    },
    Ship {
        warehouse: String,
        sku: String,
        quantity: i64,
    },
    Transfer {
        from: String,
        to: String,
        sku: String,
        quantity: i64,
    },
}

impl InventoryCommand {
    pub fn sku(&self) -> &str {
        match self {
            Self::Receive { sku, .. } | Self::Ship { sku, .. } | Self::Transfer { sku, .. } => sku,
        }
    }

    /// The (warehouse, sku) levels the command names.
    pub fn levels(&self) -> Vec<(&str, &str)> {
        match self {
            Self::Receive { warehouse, sku, .. } | Self::Ship { warehouse, sku, .. } => {
                vec![(warehouse, sku)]
            }
            Self::Transfer { from, to, sku, .. } => vec![(from, sku), (to, sku)],
        }
    }

    pub fn quantity(&self) -> i64 {
        match self {
            Self::Receive { quantity, .. }
            | Self::Ship { quantity, .. }
            | Self::Transfer { quantity, .. } => *quantity,
        }
    }

    /// The prost encoding carried inside a command pack.
    pub fn encode(&self) -> Vec<u8> {
        use prost::Message;
        wire::Command::from(self).encode_to_vec()
    }
}

/// Builds a receive command.
pub fn receive(warehouse: &str, sku: &str, quantity: i64) -> InventoryCommand {
    InventoryCommand::Receive {
        warehouse: warehouse.into(),
        sku: sku.into(),
        quantity,
    }
}

/// Builds a ship command.
pub fn ship(warehouse: &str, sku: &str, quantity: i64) -> InventoryCommand {
    InventoryCommand::Ship {
        warehouse: warehouse.into(),
        sku: sku.into(),
        quantity,
    }
}

/// Builds a transfer command.
pub fn transfer(from: &str, to: &str, sku: &str, quantity: i64) -> InventoryCommand {
    InventoryCommand::Transfer {
        from: from.into(),
        to: to.into(),
        sku: sku.into(),
        quantity,
    }
}

/// Rejection tokens, checked in this order (the first failing check names
/// the rejection, so every instance gives the same reason).
pub mod rejection {
    pub const MISROUTED: &str = "misrouted";
    pub const QUANTITY_NOT_POSITIVE: &str = "quantity_not_positive";
    pub const QUANTITY_ABOVE_MAX: &str = "quantity_above_max";
    pub const SAME_WAREHOUSE: &str = "same_warehouse";
    pub const INSUFFICIENT_STOCK: &str = "insufficient_stock";
    pub const STOCK_OVERFLOW: &str = "stock_overflow";
    /// Validation only: an empty or over-long warehouse or sku.
    pub const INVALID_FIELD: &str = "invalid_field";
}

/// Longest warehouse or sku identifier, in bytes.
pub const MAX_IDENTIFIER_BYTES: usize = 128;

/// The key of one stock level: length-prefixed so that distinct
/// (warehouse, sku) pairs never collide, whatever characters they contain.
///
/// spec: inventory.StockKeyIsInjective
pub fn stock_key(warehouse: &str, sku: &str) -> EntityKey {
    // Built piece by piece into an exactly sized string: every instance
    // makes each command's keys several times, and `format!` grows its
    // buffer more than once on the way.
    const PREFIX: &str = "stock:";
    let mut digits = itoa::Buffer::new();
    let length = digits.format(warehouse.len());
    let mut key =
        String::with_capacity(PREFIX.len() + length.len() + warehouse.len() + sku.len() + 2);
    for piece in [PREFIX, length, ":", warehouse, ":", sku] {
        key.push_str(piece);
    }
    EntityKey::new(key)
}

/// The input partition that owns a sku: FNV-1a 64 over its UTF-8 bytes.
/// The gateway's producer and the domain's misrouting check share it.
///
/// spec: inventory.RouteCommandBySku, inventory.RoutingUsesFnvHash
pub fn partition_for_sku(sku: &str, partitions: u32) -> u32 {
    assert!(partitions > 0, "a topic has at least one partition");
    const OFFSET_BASIS: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    let hash = sku.bytes().fold(OFFSET_BASIS, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(PRIME)
    });
    u32::try_from(hash % u64::from(partitions)).expect("remainder is below a u32 partition count")
}

#[derive(Clone, Copy, Debug, Default)]
pub struct Inventory {
    limits: InventoryLimits,
}

impl Inventory {
    pub fn new(limits: InventoryLimits) -> Self {
        Self { limits }
    }

    pub fn limits(&self) -> InventoryLimits {
        self.limits
    }
}

/// spec: inventory.EvaluateInventoryCommandInCheckOrder
impl Domain for Inventory {
    type Command = InventoryCommand;

    fn decode_command(&self, bytes: &[u8]) -> Result<InventoryCommand, CommandDecodeError> {
        use prost::Message;
        let message = wire::Command::decode(bytes).map_err(|error| CommandDecodeError {
            reason: "undecodable_command",
            detail: error.to_string(),
        })?;
        InventoryCommand::try_from(message)
    }

    fn validate(&self, command: &InventoryCommand) -> Result<(), CommandDecodeError> {
        let identifiers: &[(&str, &str)] = match command {
            InventoryCommand::Receive { warehouse, sku, .. }
            | InventoryCommand::Ship { warehouse, sku, .. } => {
                &[("warehouse", warehouse), ("sku", sku)]
            }
            InventoryCommand::Transfer { from, to, sku, .. } => {
                &[("from", from), ("to", to), ("sku", sku)]
            }
        };
        for (field, value) in identifiers {
            if value.is_empty() || value.len() > MAX_IDENTIFIER_BYTES {
                return Err(CommandDecodeError {
                    reason: rejection::INVALID_FIELD,
                    detail: format!("{field} must be 1 to {MAX_IDENTIFIER_BYTES} bytes"),
                });
            }
        }
        let quantity = command.quantity();
        let quantity_error = |reason| CommandDecodeError {
            reason,
            detail: format!(
                "quantity {quantity} is outside 1..={}",
                self.limits.max_quantity
            ),
        };
        if quantity < 1 {
            return Err(quantity_error(rejection::QUANTITY_NOT_POSITIVE));
        }
        if quantity > self.limits.max_quantity {
            return Err(quantity_error(rejection::QUANTITY_ABOVE_MAX));
        }
        Ok(())
    }

    fn touched_keys(&self, command: &InventoryCommand) -> Vec<EntityKey> {
        let mut keys = match command {
            InventoryCommand::Receive { warehouse, sku, .. }
            | InventoryCommand::Ship { warehouse, sku, .. } => vec![stock_key(warehouse, sku)],
            InventoryCommand::Transfer { from, to, sku, .. } => {
                vec![stock_key(from, sku), stock_key(to, sku)]
            }
        };
        keys.sort();
        keys.dedup();
        keys
    }

    fn evaluate(
        &self,
        context: EvaluationContext,
        command: &InventoryCommand,
        entities: &dyn EntityStates,
    ) -> Result<DomainOutcome, CorruptState> {
        let quantity = command.quantity();
        if partition_for_sku(command.sku(), context.partitions) != context.partition {
            return Ok(misrouted_outcome(command));
        }
        match command {
            InventoryCommand::Receive { warehouse, sku, .. } => {
                let key = stock_key(warehouse, sku);
                let level = read_level(entities, &key)?;
                let rejection = self
                    .static_check(context, command)
                    .or_else(|| self.overflow_check(level, quantity));
                Ok(receive_outcome(command, key, level, rejection))
            }
            InventoryCommand::Ship { warehouse, sku, .. } => {
                let key = stock_key(warehouse, sku);
                let level = read_level(entities, &key)?;
                let rejection = self
                    .static_check(context, command)
                    .or_else(|| shortage_check(level, quantity));
                Ok(ship_outcome(command, key, level, rejection))
            }
            InventoryCommand::Transfer { from, to, sku, .. } => {
                let from_key = stock_key(from, sku);
                let to_key = stock_key(to, sku);
                let from_level = read_level(entities, &from_key)?;
                let to_level = read_level(entities, &to_key)?;
                let rejection = self
                    .static_check(context, command)
                    .or_else(|| shortage_check(from_level, quantity))
                    .or_else(|| self.overflow_check(to_level, quantity));
                let levels = TransferLevels {
                    from_key,
                    to_key,
                    from_level,
                    to_level,
                };
                Ok(transfer_outcome(command, levels, rejection))
            }
        }
    }
}

impl Inventory {
    /// The checks that need no state, in the specified order (misrouting,
    /// the first of them, is answered earlier by [`misrouted_outcome`]).
    ///
    /// spec: inventory.RejectQuantityNotPositive, inventory.RejectQuantityAboveMax, inventory.RejectTransferToSameWarehouse
    fn static_check(
        &self,
        context: EvaluationContext,
        command: &InventoryCommand,
    ) -> Option<&'static str> {
        let quantity = command.quantity();
        debug_assert_eq!(
            partition_for_sku(command.sku(), context.partitions),
            context.partition,
            "misrouted commands are answered before any check that reads state"
        );
        if quantity < 1 {
            Some(rejection::QUANTITY_NOT_POSITIVE)
        } else if quantity > self.limits.max_quantity {
            Some(rejection::QUANTITY_ABOVE_MAX)
        } else if matches!(command, InventoryCommand::Transfer { from, to, .. } if from == to) {
            Some(rejection::SAME_WAREHOUSE)
        } else {
            None
        }
    }

    /// spec: inventory.RejectStockOverflow, inventory.LevelWithinMaximum
    fn overflow_check(&self, level: i64, quantity: i64) -> Option<&'static str> {
        // Subtraction cannot wrap: level and quantity are both within bounds.
        (self.limits.max_stock_level - level < quantity).then_some(rejection::STOCK_OVERFLOW)
    }
}

/// A command on a partition that does not own its sku. Its levels belong to
/// another partition, whose progress differs between instances, so they are
/// neither read nor reported.
///
/// spec: inventory.RejectMisroutedCommand
fn misrouted_outcome(command: &InventoryCommand) -> DomainOutcome {
    outcome(
        command,
        Verdict::Rejected(rejection::MISROUTED),
        Vec::new(),
        &[],
    )
}

/// spec: inventory.RejectInsufficientStock, inventory.NoNegativeStock
fn shortage_check(level: i64, quantity: i64) -> Option<&'static str> {
    (level < quantity).then_some(rejection::INSUFFICIENT_STOCK)
}

/// A level's state is its quantity in shortest decimal ASCII; an absent
/// level is zero.
///
/// spec: inventory.LevelStateIsDecimal
pub fn read_level(entities: &dyn EntityStates, key: &EntityKey) -> Result<i64, CorruptState> {
    decode_level(key, entities.state(key))
}

/// The level stored as `state` under `key` (`None`: never written, zero),
/// as [`read_level`] reads it; for readers holding one stored state.
pub fn decode_level(key: &EntityKey, state: Option<&[u8]>) -> Result<i64, CorruptState> {
    let Some(bytes) = state else {
        return Ok(0);
    };
    let corrupt = |detail: String| CorruptState {
        key: key.clone(),
        detail,
    };
    let text = std::str::from_utf8(bytes).map_err(|error| corrupt(error.to_string()))?;
    // Canonical means shortest decimal: digits only, no sign, no leading zero.
    let canonical = text == "0"
        || (text.bytes().all(|byte| byte.is_ascii_digit())
            && !text.starts_with('0')
            && !text.is_empty());
    if !canonical {
        return Err(corrupt(format!("not a canonical level: {text:?}")));
    }
    text.parse()
        .map_err(|_| corrupt(format!("not a level: {text:?}")))
}

fn level_write(key: EntityKey, level: i64) -> EntityWrite {
    assert!(
        level >= 0,
        "the shortage check keeps every level non-negative"
    );
    EntityWrite {
        key,
        state: itoa::Buffer::new().format(level).as_bytes().to_vec(),
    }
}

/// spec: inventory.ReceiveAddsStock
fn receive_outcome(
    command: &InventoryCommand,
    key: EntityKey,
    level: i64,
    rejection: Option<&'static str>,
) -> DomainOutcome {
    single_level_outcome(command, key, level, rejection, |level| {
        level + command.quantity()
    })
}

/// spec: inventory.ShipRemovesStock
fn ship_outcome(
    command: &InventoryCommand,
    key: EntityKey,
    level: i64,
    rejection: Option<&'static str>,
) -> DomainOutcome {
    single_level_outcome(command, key, level, rejection, |level| {
        level - command.quantity()
    })
}

/// The level is reported after the command when accepted, as it stood when
/// rejected. `apply` runs only once every check passed, so it never sees an
/// out-of-range quantity.
fn single_level_outcome(
    command: &InventoryCommand,
    key: EntityKey,
    level: i64,
    rejection: Option<&'static str>,
    apply: impl FnOnce(i64) -> i64,
) -> DomainOutcome {
    match rejection {
        Some(reason) => outcome(
            command,
            Verdict::Rejected(reason),
            Vec::new(),
            &[("level", level)],
        ),
        None => {
            let applied = apply(level);
            let write = level_write(key, applied);
            outcome(
                command,
                Verdict::Accepted,
                vec![write],
                &[("level", applied)],
            )
        }
    }
}

/// The two levels a transfer reads, before it is applied.
struct TransferLevels {
    from_key: EntityKey,
    to_key: EntityKey,
    from_level: i64,
    to_level: i64,
}

/// Both levels change in the one outcome, or neither does, and by the same
/// quantity: a transfer never changes a sku's total.
///
/// spec: inventory.TransferMovesStock, inventory.StockConservedPerSku
fn transfer_outcome(
    command: &InventoryCommand,
    levels: TransferLevels,
    rejection: Option<&'static str>,
) -> DomainOutcome {
    let TransferLevels {
        from_key,
        to_key,
        from_level,
        to_level,
    } = levels;
    match rejection {
        Some(reason) => outcome(
            command,
            Verdict::Rejected(reason),
            Vec::new(),
            &[("from_level", from_level), ("to_level", to_level)],
        ),
        None => {
            let quantity = command.quantity();
            let (from_after, to_after) = (from_level - quantity, to_level + quantity);
            let writes = vec![
                level_write(from_key, from_after),
                level_write(to_key, to_after),
            ];
            outcome(
                command,
                Verdict::Accepted,
                writes,
                &[("from_level", from_after), ("to_level", to_after)],
            )
        }
    }
}

/// The canonical body: the command's own fields, then the levels it reports.
///
/// spec: inventory.ResultBodyIsCanonicalJson
fn outcome(
    command: &InventoryCommand,
    verdict: Verdict,
    writes: Vec<EntityWrite>,
    levels: &[(&str, i64)],
) -> DomainOutcome {
    let mut body = Vec::with_capacity(128);
    let mut object = ObjectWriter::new(&mut body);
    match command {
        InventoryCommand::Receive {
            warehouse,
            sku,
            quantity,
        }
        | InventoryCommand::Ship {
            warehouse,
            sku,
            quantity,
        } => {
            let kind = if matches!(command, InventoryCommand::Receive { .. }) {
                "receive"
            } else {
                "ship"
            };
            object
                .string("type", kind)
                .string("warehouse", warehouse)
                .string("sku", sku)
                .integer("quantity", *quantity);
        }
        InventoryCommand::Transfer {
            from,
            to,
            sku,
            quantity,
        } => {
            object
                .string("type", "transfer")
                .string("from", from)
                .string("to", to)
                .string("sku", sku)
                .integer("quantity", *quantity);
        }
    }
    for &(name, level) in levels {
        object.integer(name, level);
    }
    object.finish();
    DomainOutcome {
        verdict,
        writes,
        body,
    }
}

/// The prost messages of inventory commands, as they travel in a pack.
mod wire {
    use super::InventoryCommand;
    use crate::CommandDecodeError;

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Command {
        #[prost(oneof = "Kind", tags = "1, 2, 3")]
        pub kind: Option<Kind>,
    }

    #[derive(Clone, PartialEq, prost::Oneof)]
    pub enum Kind {
        #[prost(message, tag = "1")]
        Receive(Movement),
        #[prost(message, tag = "2")]
        Ship(Movement),
        #[prost(message, tag = "3")]
        Transfer(Transfer),
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Movement {
        #[prost(string, tag = "1")]
        pub warehouse: String,
        #[prost(string, tag = "2")]
        pub sku: String,
        #[prost(int64, tag = "3")]
        pub quantity: i64,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Transfer {
        #[prost(string, tag = "1")]
        pub from: String,
        #[prost(string, tag = "2")]
        pub to: String,
        #[prost(string, tag = "3")]
        pub sku: String,
        #[prost(int64, tag = "4")]
        pub quantity: i64,
    }

    impl From<&InventoryCommand> for Command {
        fn from(command: &InventoryCommand) -> Self {
            let movement = |warehouse: &String, sku: &String, quantity: &i64| Movement {
                warehouse: warehouse.clone(),
                sku: sku.clone(),
                quantity: *quantity,
            };
            let kind = match command {
                InventoryCommand::Receive {
                    warehouse,
                    sku,
                    quantity,
                } => Kind::Receive(movement(warehouse, sku, quantity)),
                InventoryCommand::Ship {
                    warehouse,
                    sku,
                    quantity,
                } => Kind::Ship(movement(warehouse, sku, quantity)),
                InventoryCommand::Transfer {
                    from,
                    to,
                    sku,
                    quantity,
                } => Kind::Transfer(Transfer {
                    from: from.clone(),
                    to: to.clone(),
                    sku: sku.clone(),
                    quantity: *quantity,
                }),
            };
            Self { kind: Some(kind) }
        }
    }

    impl TryFrom<Command> for InventoryCommand {
        type Error = CommandDecodeError;

        fn try_from(message: Command) -> Result<Self, CommandDecodeError> {
            match message.kind {
                Some(Kind::Receive(m)) => Ok(InventoryCommand::Receive {
                    warehouse: m.warehouse,
                    sku: m.sku,
                    quantity: m.quantity,
                }),
                Some(Kind::Ship(m)) => Ok(InventoryCommand::Ship {
                    warehouse: m.warehouse,
                    sku: m.sku,
                    quantity: m.quantity,
                }),
                Some(Kind::Transfer(t)) => Ok(InventoryCommand::Transfer {
                    from: t.from,
                    to: t.to,
                    sku: t.sku,
                    quantity: t.quantity,
                }),
                None => Err(CommandDecodeError {
                    reason: "unknown_command",
                    detail: "the command names none of receive, ship, transfer".to_owned(),
                }),
            }
        }
    }
}

#[cfg(test)]
mod tests;
