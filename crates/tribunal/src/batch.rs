//! The glue between the cores for one batch: plain functions that turn one
//! core's output into the next one's input. The node's actors and the
//! single-threaded [`crate::pipeline::Pipeline`] both call these, so a
//! batch takes the same path wherever it is processed.

use std::time::Duration;

use arbiter::{BatchInput, CommandSlot, EvaluatedBatch, FreshCommand, RecordContent, RecordInput};
use domain::inventory::{Inventory, InventoryCommand};
use domain::{EntityKey, EntityWrite};
use ledger::{
    CommitScheduler, GroupCommit, RecordPosition, SealedRecord, StoredOutput, WardenChange,
};
use protocol::position::{CommandPosition, Offset, Partition, StreamTime};
use registrar::RecordKeys;
use usher::{Delivery, DeliveryResult};
use warden::{Classification, WardenCommitDelta};

/// What one record produced: its outputs in index order and their digest,
/// durable when returned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SealedOutputs {
    pub offset: Offset,
    pub outputs: Vec<Vec<u8>>,
    pub digest: protocol::envelope::RecordDigest,
    /// One per output; empty for a dead letter.
    pub idempotency_keys: Vec<String>,
    /// The record's stream time, Unix milliseconds.
    pub record_timestamp: i64,
    /// The fixed reason token of a dead-lettered record.
    pub dead_letter_reason: Option<&'static str>,
}

/// The Arbiter's input: each command's slot from its Warden classification.
pub fn batch_input(
    partition: Partition,
    deliveries: &[Delivery<InventoryCommand>],
    classifications: Vec<Vec<Classification>>,
) -> BatchInput<InventoryCommand> {
    assert_eq!(
        deliveries.len(),
        classifications.len(),
        "one classification list per record"
    );
    let records = deliveries
        .iter()
        .zip(classifications)
        .map(|(delivery, classified)| {
            let content = match &delivery.result {
                DeliveryResult::DeadLettered(letter) => RecordContent::DeadLettered {
                    reason: letter.reason().token(),
                },
                DeliveryResult::Decoded(commands) => {
                    assert_eq!(commands.len(), classified.len(), "one class per command");
                    RecordContent::Commands(
                        commands
                            .iter()
                            .zip(classified)
                            .map(|(command, classification)| match classification {
                                Classification::Fresh => CommandSlot::Fresh(FreshCommand {
                                    position: command.position,
                                    idempotency_key: command.idempotency_key.clone(),
                                    command: command.command.clone(),
                                }),
                                Classification::Duplicate { response: envelope }
                                | Classification::KeyReused {
                                    rejection: envelope,
                                } => CommandSlot::Answered { envelope },
                                Classification::DuplicateAwaitingAnswer { first_position } => {
                                    CommandSlot::DuplicateOf { first_position }
                                }
                            })
                            .collect(),
                    )
                }
            };
            RecordInput {
                offset: delivery.offset,
                content,
            }
        })
        .collect();
    BatchInput { partition, records }
}

/// The keys each record's fresh commands touch, for the pre-warm.
pub fn record_keys(domain: &Inventory, batch: &BatchInput<InventoryCommand>) -> Vec<RecordKeys> {
    batch
        .records
        .iter()
        .map(|record| {
            let fresh = match &record.content {
                RecordContent::DeadLettered { .. } => &[][..],
                RecordContent::Commands(slots) => &slots[..],
            };
            RecordKeys::of_fresh_commands(
                record.offset,
                domain,
                fresh.iter().filter_map(|slot| match slot {
                    CommandSlot::Fresh(fresh) => Some(&fresh.command),
                    CommandSlot::Answered { .. } | CommandSlot::DuplicateOf { .. } => None,
                }),
            )
        })
        .collect()
}

/// The envelopes of the batch's fresh commands, for the Warden: moved out
/// (nothing after the Warden reads them), not copied per command.
pub fn take_fresh_responses(evaluated: &mut EvaluatedBatch) -> Vec<(CommandPosition, Vec<u8>)> {
    evaluated
        .records
        .iter_mut()
        .flat_map(|sealed| std::mem::take(&mut sealed.responses))
        .map(|response| (response.position, response.envelope))
        .collect()
}

/// The batch's entity writes in log order, for the Registrar.
pub fn staged_writes(evaluated: &EvaluatedBatch) -> Vec<(CommandPosition, EntityKey, Vec<u8>)> {
    evaluated
        .records
        .iter()
        .flat_map(|sealed| &sealed.writes)
        .map(|write| (write.position, write.key.clone(), write.state.clone()))
        .collect()
}

/// The batch as one group commit (outputs, states, Warden entries and the
/// watermark), and what each record sealed. The records join the commit
/// scheduler's open commit and the scheduler cuts it: a batch is sealed
/// whole, so no sealed record waits behind it and the cut is immediate
/// (ledger.StartSyncWhenDue: an idle pipeline does not wait). The commit
/// opens and is cut within this call, so its opening time is never read
/// and no clock is needed. The caller reports the write's success with
/// [`CommitScheduler::sync_finished`].
pub fn seal_commit(
    evaluated: EvaluatedBatch,
    deliveries: &[Delivery<InventoryCommand>],
    delta: WardenCommitDelta,
    outcome_resume_offset: Offset,
    commits: &mut CommitScheduler,
) -> (GroupCommit, Vec<SealedOutputs>) {
    let partition = evaluated.partition;
    let mut sealed_outputs = Vec::with_capacity(deliveries.len());
    for (sealed, delivery) in evaluated.records.into_iter().zip(deliveries) {
        assert_eq!(
            sealed.offset, delivery.offset,
            "records stay in offset order"
        );
        let idempotency_keys = delivery
            .commands()
            .iter()
            .map(|command| command.idempotency_key.clone())
            .collect();
        let output = StoredOutput::new(
            sealed.outputs,
            idempotency_keys,
            delivery.stream_time.millis(),
        );
        assert_eq!(
            output.digest, sealed.digest.0,
            "the stored digest is the sealed one"
        );
        sealed_outputs.push(SealedOutputs {
            offset: sealed.offset,
            outputs: output.outputs.clone(),
            digest: sealed.digest,
            idempotency_keys: output.idempotency_keys.clone(),
            record_timestamp: output.record_timestamp,
            dead_letter_reason: delivery.dead_letter().map(|letter| letter.reason().token()),
        });
        commits.append(
            SealedRecord {
                position: RecordPosition {
                    partition,
                    offset: sealed.offset,
                },
                stream_time: delivery.stream_time,
                entity_writes: sealed
                    .writes
                    .into_iter()
                    .map(|write| EntityWrite {
                        key: write.key,
                        state: write.state,
                    })
                    .collect(),
                output,
            },
            Duration::ZERO,
        );
    }
    let mut commit = commits
        .cut_if_due(Duration::ZERO, true)
        .expect("batches are sealed one at a time: no commit syncs while the next is sealed");
    push_warden_changes(&mut commit, delta);
    commit.set_outcome_resume_offset(partition, outcome_resume_offset);
    (commit, sealed_outputs)
}

/// The last record's stream time: what the commit's watermark carries.
pub fn last_stream_time(deliveries: &[Delivery<InventoryCommand>]) -> Option<StreamTime> {
    deliveries.last().map(|delivery| delivery.stream_time)
}

fn push_warden_changes(commit: &mut GroupCommit, delta: WardenCommitDelta) {
    let partition = delta.partition;
    for put in delta.puts {
        let first_seen = put.entry.first_seen;
        if let Some(replaced) = put.replaces_first_seen.filter(|&old| old != first_seen) {
            commit.push_warden_change(WardenChange::DropStaleExpiryRow {
                partition,
                key: put.entry.key.clone(),
                first_seen: replaced,
            });
        }
        commit.push_warden_change(WardenChange::Put {
            partition,
            key: put.entry.key.clone(),
            first_seen,
            entry: put.entry.encode(),
        });
    }
    for purge in delta.purges {
        commit.push_warden_change(WardenChange::Purge {
            partition,
            key: purge.key,
            first_seen: purge.first_seen,
        });
    }
}
