//! The inventory audit: rebuilds the spec's audit projections (`SkuLedger`,
//! `AppliedCommand`) from the agreed outcomes of one or more partitions and
//! checks an instance's final stock levels against them.
//!
//! `evaluate` never reads or writes these projections (a per-sku counter
//! would put every command of a sku into one causal group); end-to-end tests,
//! the load generator's correctness pass and the chaos history checker run
//! this over real histories. Every check reports instead of panicking: the
//! input is exactly what is being doubted. Sums are taken in `i128`, so no
//! input of `i64` quantities can overflow them.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use protocol::position::CommandPosition;

use super::{InventoryCommand, InventoryLimits, partition_for_sku};

/// One row of an instance's stock: (warehouse, sku, quantity).
pub type LevelRow = (String, String, i64);

/// A stock level's identity: (warehouse, sku).
type LevelKey = (String, String);

/// Accepted totals of one sku.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SkuLedger {
    pub received: i128,
    pub shipped: i128,
}

/// The effect of one accepted command on its sku's totals (a transfer moves
/// stock and records 0 and 0).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AppliedCommand {
    pub position: CommandPosition,
    pub sku: String,
    pub received: i128,
    pub shipped: i128,
}

impl AppliedCommand {
    fn of(position: CommandPosition, command: &InventoryCommand) -> Self {
        let quantity = i128::from(command.quantity());
        let (received, shipped) = match command {
            InventoryCommand::Receive { .. } => (quantity, 0),
            InventoryCommand::Ship { .. } => (0, quantity),
            InventoryCommand::Transfer { .. } => (0, 0),
        };
        Self {
            position,
            sku: command.sku().to_owned(),
            received,
            shipped,
        }
    }
}

/// One broken invariant; `Display` starts with the invariant's spec id.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AuditViolation {
    /// A position recorded as accepted more than once.
    AppliedTwice {
        position: CommandPosition,
    },
    /// A position recorded as both accepted and rejected.
    RejectedCommandApplied {
        position: CommandPosition,
    },
    /// The levels differ from the replay by exactly the effect this rejected
    /// command would have had (a candidate cause of those differences).
    RejectedEffectInLevels {
        position: CommandPosition,
        sku: String,
    },
    /// An accepted command on a partition that does not own its sku.
    MisroutedCommandApplied {
        position: CommandPosition,
        sku: String,
        owner: u32,
    },
    /// An accepted receive or ship carrying a negative quantity.
    NegativeAppliedQuantity {
        position: CommandPosition,
        quantity: i64,
    },
    NegativeLedgerCounter {
        sku: String,
        ledger: SkuLedger,
    },
    DuplicateLevel {
        warehouse: String,
        sku: String,
        rows: usize,
    },
    NegativeLevel {
        warehouse: String,
        sku: String,
        quantity: i64,
    },
    LevelAboveMaximum {
        warehouse: String,
        sku: String,
        quantity: i64,
        max_stock_level: i64,
    },
    LevelWithoutTotals {
        warehouse: String,
        sku: String,
    },
    StockNotConserved {
        sku: String,
        level_sum: i128,
        ledger: SkuLedger,
    },
    /// `None` on a side: the replay never wrote the level, or the instance
    /// has no row for it (a written level is never deleted, even at 0).
    LevelDiffersFromReplay {
        warehouse: String,
        sku: String,
        replayed: Option<i128>,
        actual: Option<i128>,
    },
}

impl AuditViolation {
    /// The spec id of the invariant this violation breaks.
    pub fn invariant(&self) -> &'static str {
        match self {
            Self::AppliedTwice { .. } => "inventory.EachAcceptedCommandAppliedOnce",
            Self::RejectedCommandApplied { .. } | Self::RejectedEffectInLevels { .. } => {
                "inventory.RejectedCommandsChangeNothing"
            }
            Self::MisroutedCommandApplied { .. } => "inventory.NoCommandCrossesPartitions",
            Self::NegativeAppliedQuantity { .. } => "inventory.AppliedQuantitiesNonNegative",
            Self::NegativeLedgerCounter { .. } => "inventory.LedgerCountersNonNegative",
            Self::DuplicateLevel { .. } => "inventory.OneLevelPerWarehouseAndSku",
            Self::NegativeLevel { .. } => "inventory.NoNegativeStock",
            Self::LevelAboveMaximum { .. } => "inventory.LevelWithinMaximum",
            Self::LevelWithoutTotals { .. } => "inventory.EveryLevelHasTotals",
            Self::StockNotConserved { .. } => "inventory.StockConservedPerSku",
            Self::LevelDiffersFromReplay { .. } => "inventory.LevelsEqualReplay",
        }
    }
}

impl fmt::Display for AuditViolation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: ", self.invariant())?;
        match self {
            Self::AppliedTwice { position } => write!(f, "command {position} accepted twice"),
            Self::RejectedCommandApplied { position } => {
                write!(f, "command {position} both accepted and rejected")
            }
            Self::RejectedEffectInLevels { position, sku } => write!(
                f,
                "levels of sku {sku:?} differ from the replay by the effect of rejected command {position}"
            ),
            Self::MisroutedCommandApplied {
                position,
                sku,
                owner,
            } => write!(
                f,
                "command {position} accepted for sku {sku:?}, owned by partition {owner}"
            ),
            Self::NegativeAppliedQuantity { position, quantity } => {
                write!(f, "command {position} applied quantity {quantity}")
            }
            Self::NegativeLedgerCounter { sku, ledger } => write!(
                f,
                "sku {sku:?} received {} shipped {}",
                ledger.received, ledger.shipped
            ),
            Self::DuplicateLevel {
                warehouse,
                sku,
                rows,
            } => write!(f, "{rows} rows for warehouse {warehouse:?} sku {sku:?}"),
            Self::NegativeLevel {
                warehouse,
                sku,
                quantity,
            } => write!(f, "warehouse {warehouse:?} sku {sku:?} holds {quantity}"),
            Self::LevelAboveMaximum {
                warehouse,
                sku,
                quantity,
                max_stock_level,
            } => write!(
                f,
                "warehouse {warehouse:?} sku {sku:?} holds {quantity} > {max_stock_level}"
            ),
            Self::LevelWithoutTotals { warehouse, sku } => write!(
                f,
                "warehouse {warehouse:?} sku {sku:?} has a level but no accepted command"
            ),
            Self::StockNotConserved {
                sku,
                level_sum,
                ledger,
            } => write!(
                f,
                "sku {sku:?} levels sum to {level_sum}, received {} - shipped {}",
                ledger.received, ledger.shipped
            ),
            Self::LevelDiffersFromReplay {
                warehouse,
                sku,
                replayed,
                actual,
            } => write!(
                f,
                "warehouse {warehouse:?} sku {sku:?} replays to {replayed:?}, holds {actual:?}"
            ),
        }
    }
}

/// Every violation found, in a deterministic order: those seen while
/// recording outcomes (in record order), then those of the levels.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AuditReport {
    pub violations: Vec<AuditViolation>,
}

impl AuditReport {
    pub fn is_clean(&self) -> bool {
        self.violations.is_empty()
    }
}

impl fmt::Display for AuditReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_clean() {
            return f.write_str("audit clean");
        }
        writeln!(f, "{} violation(s):", self.violations.len())?;
        for violation in &self.violations {
            writeln!(f, "  {violation}")?;
        }
        Ok(())
    }
}

/// The audit model of agreed outcomes. A double apply shows up as a repeated
/// accepted position, a negative level or a conservation mismatch.
///
/// spec: inventory.ExactlyOnceApplication
#[derive(Clone, Debug)]
pub struct Audit {
    partitions: u32,
    limits: InventoryLimits,
    /// Every accepted record, in record order (repeats included).
    accepted: Vec<(CommandPosition, InventoryCommand)>,
    accepted_positions: BTreeSet<CommandPosition>,
    /// The first rejected record of each position.
    rejected: BTreeMap<CommandPosition, InventoryCommand>,
    recorded_violations: Vec<AuditViolation>,
}

impl Audit {
    /// An audit of commands routed over `partitions` input partitions, with
    /// the spec's default limits.
    ///
    /// # Panics
    /// If `partitions` is 0 (configuration, not audited input).
    pub fn new(partitions: u32) -> Self {
        assert!(partitions > 0, "a topic has at least one partition");
        Self {
            partitions,
            limits: InventoryLimits::default(),
            accepted: Vec::new(),
            accepted_positions: BTreeSet::new(),
            rejected: BTreeMap::new(),
            recorded_violations: Vec::new(),
        }
    }

    pub fn with_limits(self, limits: InventoryLimits) -> Self {
        Self { limits, ..self }
    }

    /// Records one agreed outcome: the command evaluated at `position`.
    ///
    /// Pass each evaluated command once. A Warden-answered duplicate is not an
    /// outcome of its own (its envelope is the original's and names the
    /// original's position); passing it counts as a second apply. Outcomes
    /// republished by a backup are deduplicated by (partition, offset) first.
    ///
    /// spec: inventory.AcceptedCommandsAreApplied, inventory.EachAcceptedCommandAppliedOnce, inventory.RejectedCommandsChangeNothing, inventory.NoCommandCrossesPartitions, inventory.AppliedQuantitiesNonNegative
    pub fn record_outcome(
        &mut self,
        position: CommandPosition,
        command: &InventoryCommand,
        accepted: bool,
    ) {
        if !accepted {
            if self.accepted_positions.contains(&position) {
                self.recorded_violations
                    .push(AuditViolation::RejectedCommandApplied { position });
            }
            self.rejected
                .entry(position)
                .or_insert_with(|| command.clone());
            return;
        }
        if !self.accepted_positions.insert(position) {
            self.recorded_violations
                .push(AuditViolation::AppliedTwice { position });
        }
        if self.rejected.contains_key(&position) {
            self.recorded_violations
                .push(AuditViolation::RejectedCommandApplied { position });
        }
        let owner = partition_for_sku(command.sku(), self.partitions);
        if owner != position.partition {
            self.recorded_violations
                .push(AuditViolation::MisroutedCommandApplied {
                    position,
                    sku: command.sku().to_owned(),
                    owner,
                });
        }
        let applied = AppliedCommand::of(position, command);
        if applied.received < 0 || applied.shipped < 0 {
            self.recorded_violations
                .push(AuditViolation::NegativeAppliedQuantity {
                    position,
                    quantity: command.quantity(),
                });
        }
        self.accepted.push((position, command.clone()));
    }

    /// One `AppliedCommand` per accepted record, in record order.
    pub fn applied_commands(&self) -> Vec<AppliedCommand> {
        self.accepted
            .iter()
            .map(|(position, command)| AppliedCommand::of(*position, command))
            .collect()
    }

    /// The totals of every sku with an accepted command: the sums of its
    /// applied commands, by construction.
    ///
    /// spec: inventory.TotalsMatchAppliedCommands
    pub fn ledgers(&self) -> BTreeMap<String, SkuLedger> {
        let mut ledgers: BTreeMap<String, SkuLedger> = BTreeMap::new();
        for applied in self.applied_commands() {
            let ledger = ledgers.entry(applied.sku).or_default();
            ledger.received += applied.received;
            ledger.shipped += applied.shipped;
        }
        ledgers
    }

    /// Checks an instance's final levels (of the skus whose partitions were
    /// recorded) against the recorded outcomes. Duplicate rows of one
    /// (warehouse, sku) are reported and then counted as their sum.
    ///
    /// spec: inventory.LedgerCountersNonNegative, inventory.NoNegativeStock, inventory.LevelWithinMaximum, inventory.OneLevelPerWarehouseAndSku, inventory.EveryLevelHasTotals, inventory.StockConservedPerSku
    pub fn check_levels(&self, levels: impl IntoIterator<Item = LevelRow>) -> AuditReport {
        let mut violations = self.recorded_violations.clone();
        let ledgers = self.ledgers();
        for (sku, ledger) in &ledgers {
            if ledger.received < 0 || ledger.shipped < 0 {
                violations.push(AuditViolation::NegativeLedgerCounter {
                    sku: sku.clone(),
                    ledger: *ledger,
                });
            }
        }

        // (sum, row count) per level.
        let mut actual: BTreeMap<LevelKey, (i128, usize)> = BTreeMap::new();
        for (warehouse, sku, quantity) in levels {
            if quantity < 0 {
                violations.push(AuditViolation::NegativeLevel {
                    warehouse: warehouse.clone(),
                    sku: sku.clone(),
                    quantity,
                });
            }
            if quantity > self.limits.max_stock_level {
                violations.push(AuditViolation::LevelAboveMaximum {
                    warehouse: warehouse.clone(),
                    sku: sku.clone(),
                    quantity,
                    max_stock_level: self.limits.max_stock_level,
                });
            }
            let tally = actual.entry((warehouse, sku)).or_default();
            tally.0 += i128::from(quantity);
            tally.1 += 1;
        }

        let mut level_sums: BTreeMap<&str, i128> = BTreeMap::new();
        for ((warehouse, sku), &(sum, rows)) in &actual {
            if rows > 1 {
                violations.push(AuditViolation::DuplicateLevel {
                    warehouse: warehouse.clone(),
                    sku: sku.clone(),
                    rows,
                });
            }
            if !ledgers.contains_key(sku) {
                violations.push(AuditViolation::LevelWithoutTotals {
                    warehouse: warehouse.clone(),
                    sku: sku.clone(),
                });
            }
            *level_sums.entry(sku).or_default() += sum;
        }
        for (sku, ledger) in &ledgers {
            let level_sum = level_sums.get(sku.as_str()).copied().unwrap_or(0);
            if level_sum != ledger.received - ledger.shipped {
                violations.push(AuditViolation::StockNotConserved {
                    sku: sku.clone(),
                    level_sum,
                    ledger: *ledger,
                });
            }
        }

        let actual_levels = actual
            .into_iter()
            .map(|(key, (sum, _))| (key, sum))
            .collect();
        self.check_replay(&actual_levels, &mut violations);
        AuditReport { violations }
    }

    /// Compares the levels with a replay of the accepted commands, then names
    /// every rejected command whose whole effect is exactly what the levels
    /// hold beyond the replay. Replaying by summing each command's changes
    /// equals replaying in log order: accepted commands only add and subtract.
    ///
    /// spec: inventory.LevelsEqualReplay, inventory.RejectedCommandsChangeNothing
    fn check_replay(
        &self,
        actual: &BTreeMap<LevelKey, i128>,
        violations: &mut Vec<AuditViolation>,
    ) {
        let mut replayed: BTreeMap<LevelKey, i128> = BTreeMap::new();
        for (_, command) in &self.accepted {
            for (key, change) in level_changes(command) {
                *replayed.entry(key).or_default() += change;
            }
        }
        let keys: BTreeSet<&LevelKey> = replayed.keys().chain(actual.keys()).collect();
        let mut excess: BTreeMap<&LevelKey, i128> = BTreeMap::new();
        for key in keys {
            let (replayed, actual) = (replayed.get(key).copied(), actual.get(key).copied());
            if replayed != actual {
                excess.insert(key, actual.unwrap_or(0) - replayed.unwrap_or(0));
                violations.push(AuditViolation::LevelDiffersFromReplay {
                    warehouse: key.0.clone(),
                    sku: key.1.clone(),
                    replayed,
                    actual,
                });
            }
        }
        if excess.is_empty() {
            return;
        }
        for (position, command) in &self.rejected {
            let changes = level_changes(command);
            let explains_excess = changes.values().any(|&change| change != 0)
                && changes
                    .iter()
                    .all(|(key, &change)| excess.get(key).copied().unwrap_or(0) == change);
            if explains_excess {
                violations.push(AuditViolation::RejectedEffectInLevels {
                    position: *position,
                    sku: command.sku().to_owned(),
                });
            }
        }
    }
}

/// How applying `command` changes each level it touches.
fn level_changes(command: &InventoryCommand) -> BTreeMap<LevelKey, i128> {
    let quantity = i128::from(command.quantity());
    let sku = command.sku();
    let mut changes: BTreeMap<LevelKey, i128> = BTreeMap::new();
    let mut change = |warehouse: &str, by: i128| {
        *changes
            .entry((warehouse.to_owned(), sku.to_owned()))
            .or_default() += by;
    };
    match command {
        InventoryCommand::Receive { warehouse, .. } => change(warehouse, quantity),
        InventoryCommand::Ship { warehouse, .. } => change(warehouse, -quantity),
        InventoryCommand::Transfer { from, to, .. } => {
            change(from, -quantity);
            change(to, quantity);
        }
    }
    changes
}

#[cfg(test)]
mod tests;
