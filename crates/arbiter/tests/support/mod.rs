//! Shared by the Arbiter's integration tests: an entity store, inventory
//! logs for proptest, and a naive sequential evaluator to compare with.

#![allow(dead_code)] // each test binary uses its own part of this module

use std::collections::BTreeMap;

use arbiter::{
    Arbiter, ArbiterConfig, BatchInput, CommandSlot, EvaluatedBatch, FreshCommand, RecordContent,
    RecordInput,
};
use domain::inventory::{Inventory, InventoryCommand};
use domain::{Domain, EntityKey, EntityStates, EvaluationContext, Verdict};
use proptest::prelude::*;
use protocol::envelope::{
    EnvelopeVerdict, RecordDigest, dead_letter_envelope, encode_envelope, record_digest,
};
use protocol::position::{CommandPosition, Offset};

pub const PARTITION: u32 = 0;
/// Skus of the log: all but `x` belong to partition 0 of 2 (so a few
/// generated commands are misrouted).
const SKUS: [&str; 5] = ["y", "w", "u", "s", "x"];
/// Two partitions, so that some generated commands are misrouted.
pub const CONTEXT: EvaluationContext = EvaluationContext {
    partition: PARTITION,
    partitions: 2,
};

/// Entity states as the Registrar (live) or the Ledger (recovery) hold them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Store(pub BTreeMap<EntityKey, Vec<u8>>);

impl EntityStates for Store {
    fn state(&self, key: &EntityKey) -> Option<&[u8]> {
        self.0.get(key).map(Vec::as_slice)
    }
}

impl Store {
    /// The Registrar's dirty entries after a batch: its staged writes, in
    /// log order.
    pub fn apply(&mut self, batch: &EvaluatedBatch) {
        for record in &batch.records {
            for write in &record.writes {
                self.0.insert(write.key.clone(), write.state.clone());
            }
        }
    }
}

/// One record's outputs and digest: what instances agree on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecordOutcome {
    pub offset: Offset,
    pub outputs: Vec<Vec<u8>>,
    pub digest: RecordDigest,
}

pub fn outcomes(batch: &EvaluatedBatch) -> Vec<RecordOutcome> {
    batch
        .records
        .iter()
        .map(|record| RecordOutcome {
            offset: record.offset,
            outputs: record.outputs.clone(),
            digest: record.digest,
        })
        .collect()
}

pub fn arbiter(workers: usize, parallel_evaluation_min_commands: usize) -> Arbiter<Inventory> {
    Arbiter::new(
        Inventory::default(),
        ArbiterConfig {
            max_evaluation_workers: workers,
            parallel_evaluation_min_commands,
            ..ArbiterConfig::default()
        },
    )
}

pub fn position(offset: Offset, index: u32) -> CommandPosition {
    CommandPosition {
        partition: PARTITION,
        offset,
        index,
    }
}

pub fn fresh<C>(offset: Offset, index: u32, command: C) -> CommandSlot<C> {
    CommandSlot::Fresh(FreshCommand {
        position: position(offset, index),
        idempotency_key: format!("key-{offset}-{index}"),
        command,
    })
}

/// Builds one record whose fresh slots name their own positions.
pub fn record<C>(offset: Offset, slots: Vec<SlotSpec<C>>) -> RecordInput<C> {
    let slots = slots
        .into_iter()
        .enumerate()
        .map(|(index, slot)| {
            let index = u32::try_from(index).expect("small pack");
            match slot {
                SlotSpec::Fresh(command) => fresh(offset, index, command),
                SlotSpec::Answered(envelope) => CommandSlot::Answered { envelope },
                SlotSpec::DuplicateOf(first_position) => {
                    CommandSlot::DuplicateOf { first_position }
                }
            }
        })
        .collect();
    RecordInput {
        offset,
        content: RecordContent::Commands(slots),
    }
}

/// A slot before its position is known.
#[derive(Clone, Debug)]
pub enum SlotSpec<C> {
    Fresh(C),
    Answered(Vec<u8>),
    DuplicateOf(CommandPosition),
}

/// A generated slot: a duplicate names one of the fresh commands before it
/// in the log, once their positions are known.
#[derive(Clone, Debug)]
enum GeneratedSlot {
    Spec(SlotSpec<InventoryCommand>),
    DuplicateOfEarlier(prop::sample::Index),
}

fn inventory_command() -> impl Strategy<Value = InventoryCommand> {
    let warehouse = prop::sample::select(vec!["a", "b", "c"]).prop_map(str::to_owned);
    let sku = prop::sample::select(SKUS.to_vec()).prop_map(str::to_owned);
    let quantity = prop_oneof![
        8 => 1i64..40,
        1 => -2i64..=0,
        1 => Just(1_000_001i64),
    ];
    prop_oneof![
        (warehouse.clone(), sku.clone(), quantity.clone()).prop_map(
            |(warehouse, sku, quantity)| InventoryCommand::Receive {
                warehouse,
                sku,
                quantity
            }
        ),
        (warehouse.clone(), sku.clone(), quantity.clone()).prop_map(
            |(warehouse, sku, quantity)| InventoryCommand::Ship {
                warehouse,
                sku,
                quantity
            }
        ),
        (warehouse.clone(), warehouse, sku, quantity).prop_map(|(from, to, sku, quantity)| {
            InventoryCommand::Transfer {
                from,
                to,
                sku,
                quantity,
            }
        }),
    ]
}

fn slot() -> impl Strategy<Value = GeneratedSlot> {
    prop_oneof![
        6 => inventory_command().prop_map(|command| GeneratedSlot::Spec(SlotSpec::Fresh(command))),
        1 => (0u32..1000).prop_map(|n| GeneratedSlot::Spec(SlotSpec::Answered(format!("{{\"stored\":{n}}}").into_bytes()))),
        1 => any::<prop::sample::Index>().prop_map(GeneratedSlot::DuplicateOfEarlier),
    ]
}

/// A log of consecutive records (offsets may skip, as Kafka's may):
/// packs of fresh, Warden-answered and duplicate commands (of a fresh
/// command earlier in the log), some empty, some dead letters.
pub fn inventory_log(
    max_records: usize,
) -> impl Strategy<Value = Vec<RecordInput<InventoryCommand>>> {
    let content = prop_oneof![
        8 => proptest::collection::vec(slot(), 0..12).prop_map(Some),
        1 => Just(None),
    ];
    (
        0i64..50,
        proptest::collection::vec((1i64..3, content), 1..max_records),
    )
        .prop_map(|(start, specs)| {
            let mut offset = start;
            let mut fresh_positions = Vec::new();
            specs
                .into_iter()
                .map(|(gap, content)| {
                    offset += gap;
                    match content {
                        Some(slots) => {
                            let slots = slots
                                .into_iter()
                                .zip(0u32..)
                                .map(|(slot, index)| match slot {
                                    GeneratedSlot::Spec(spec) => {
                                        if let SlotSpec::Fresh(_) = spec {
                                            fresh_positions.push(position(offset, index));
                                        }
                                        spec
                                    }
                                    GeneratedSlot::DuplicateOfEarlier(pick) => {
                                        if fresh_positions.is_empty() {
                                            SlotSpec::Answered(b"{\"stored\":0}".to_vec())
                                        } else {
                                            SlotSpec::DuplicateOf(
                                                fresh_positions[pick.index(fresh_positions.len())],
                                            )
                                        }
                                    }
                                })
                                .collect();
                            record(offset, slots)
                        }
                        None => RecordInput {
                            offset,
                            content: RecordContent::DeadLettered {
                                reason: "malformed_record",
                            },
                        },
                    }
                })
                .collect()
        })
}

/// Levels some keys already hold before the log starts.
pub fn initial_store() -> impl Strategy<Value = Store> {
    let warehouse = prop::sample::select(vec!["a", "b", "c"]);
    let sku = prop::sample::select(SKUS.to_vec());
    proptest::collection::btree_map((warehouse, sku), 0i64..30, 0..8).prop_map(|levels| {
        Store(
            levels
                .into_iter()
                .map(|((warehouse, sku), level)| {
                    (
                        domain::inventory::stock_key(warehouse, sku),
                        level.to_string().into_bytes(),
                    )
                })
                .collect(),
        )
    })
}

/// The reference semantics, written without groups, views or threads: every
/// fresh command in log order against one store, each accepted write
/// applied at once.
pub fn evaluate_sequentially(
    log: &[RecordInput<InventoryCommand>],
    mut store: Store,
) -> (Vec<RecordOutcome>, Store) {
    let inventory = Inventory::default();
    let mut outcomes = Vec::new();
    let mut envelopes = Responses::new();
    for record in log {
        let outputs: Vec<Vec<u8>> = match &record.content {
            RecordContent::DeadLettered { reason } => {
                vec![dead_letter_envelope(PARTITION, record.offset, reason)]
            }
            RecordContent::Commands(slots) => slots
                .iter()
                .map(|slot| match slot {
                    CommandSlot::Answered { envelope } => envelope.clone(),
                    CommandSlot::DuplicateOf { first_position } => {
                        envelopes[first_position].clone()
                    }
                    CommandSlot::Fresh(fresh) => {
                        let outcome = inventory
                            .evaluate(CONTEXT, &fresh.command, &store)
                            .expect("the store holds canonical levels");
                        let (verdict, reason) = match outcome.verdict {
                            Verdict::Accepted => (EnvelopeVerdict::Accepted, None),
                            Verdict::Rejected(reason) => (EnvelopeVerdict::Rejected, Some(reason)),
                        };
                        for write in outcome.writes {
                            store.0.insert(write.key, write.state);
                        }
                        let envelope = encode_envelope(
                            fresh.position,
                            Some(&fresh.idempotency_key),
                            verdict,
                            reason,
                            &outcome.body,
                        );
                        envelopes.insert(fresh.position, envelope.clone());
                        envelope
                    }
                })
                .collect(),
        };
        outcomes.push(RecordOutcome {
            offset: record.offset,
            digest: record_digest(&outputs),
            outputs,
        });
    }
    (outcomes, store)
}

/// The envelopes fresh commands were answered with, as the Warden stores
/// them.
pub type Responses = BTreeMap<CommandPosition, Vec<u8>>;

pub fn responses(batches: &[EvaluatedBatch]) -> Responses {
    batches
        .iter()
        .flat_map(|batch| &batch.records)
        .flat_map(|record| &record.responses)
        .map(|response| (response.position, response.envelope.clone()))
        .collect()
}

/// What the Warden makes of a duplicate once its original is answered (in
/// an earlier batch): a slot answered with the stored envelope.
pub fn answer_duplicates(
    records: &[RecordInput<InventoryCommand>],
    answered: &Responses,
) -> Vec<RecordInput<InventoryCommand>> {
    let mut records = records.to_vec();
    for record in &mut records {
        let RecordContent::Commands(slots) = &mut record.content else {
            continue;
        };
        for slot in slots {
            if let CommandSlot::DuplicateOf { first_position } = slot {
                if let Some(envelope) = answered.get(first_position) {
                    *slot = CommandSlot::Answered {
                        envelope: envelope.clone(),
                    };
                }
            }
        }
    }
    records
}

/// Evaluates `log` in batches cut after the given record counts, as the
/// pipeline does: each batch sees the writes of the batches before it, and
/// a duplicate of a command of an earlier batch is answered by the Warden.
pub fn evaluate_in_batches(
    arbiter: &Arbiter<Inventory>,
    log: &[RecordInput<InventoryCommand>],
    batch_sizes: impl IntoIterator<Item = usize>,
    mut store: Store,
) -> (Vec<EvaluatedBatch>, Store) {
    let mut batches = Vec::new();
    let mut answered = Responses::new();
    let mut rest = log;
    let mut sizes = batch_sizes.into_iter();
    while !rest.is_empty() {
        let size = sizes.next().unwrap_or(rest.len()).clamp(1, rest.len());
        let (head, tail) = rest.split_at(size);
        rest = tail;
        let input = BatchInput {
            partition: PARTITION,
            records: answer_duplicates(head, &answered),
        };
        let evaluated = arbiter
            .evaluate_batch(CONTEXT, &input, &store)
            .expect("the inventory domain keeps its contract");
        store.apply(&evaluated);
        answered.extend(responses(std::slice::from_ref(&evaluated)));
        batches.push(evaluated);
    }
    (batches, store)
}

pub fn all_outcomes(batches: &[EvaluatedBatch]) -> Vec<RecordOutcome> {
    batches.iter().flat_map(outcomes).collect()
}
