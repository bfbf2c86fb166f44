//! One instance's pipeline over the deterministic cores and a real Ledger,
//! driven sequentially: one batch of one partition is decoded (Usher),
//! classified (Warden), pre-warmed (Registrar), evaluated (Arbiter) and
//! written as one synced group commit (Ledger), then marked durable.
//!
//! No clock, no threads of its own, no Kafka: the caller hands in the
//! records of a partition in log order. This is the path a replay takes as
//! well, so a pipeline reopened on the same directory continues from its
//! watermark with the same outputs it would have produced without a stop.

use std::collections::BTreeMap;
use std::path::Path;

use arbiter::{
    Arbiter, ArbiterConfig, ArbiterHalt, BatchInput, CommandSlot, FreshCommand, RecordContent,
    RecordInput,
};
use domain::inventory::{Inventory, InventoryCommand, InventoryLimits};
use domain::{EntityWrite, EvaluationContext};
use ledger::{
    GroupCommit, Ledger, LedgerConfig, LedgerError, LedgerReader, RecordPosition, SealedRecord,
    StoredOutput, WardenChange,
};
use protocol::envelope::RecordDigest;
use protocol::position::{Offset, Partition, StreamTime};
use registrar::{
    Admission, AdmitError, ApplyError, DurableError, EntityWriteAt, LoadError, LoadedWatermark,
    RecordKeys, Registrar, RegistrarConfig, StartError,
};
use usher::{DecodeLimits, Delivery, DeliveryResult, decode_record};
use warden::{
    Classification, EntryDecodeError, ExpiryCandidate, FetchedEntry, IncomingCommand, StoredEntry,
    Warden, WardenConfig, WardenError,
};

/// One input record as fetched: offset, Kafka timestamp (Unix millis) and
/// value (`None` for a tombstone).
pub type InputRecord = (Offset, i64, Option<Vec<u8>>);

/// What one record produced: its outputs in index order and their digest,
/// durable when returned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SealedOutputs {
    pub offset: Offset,
    pub outputs: Vec<Vec<u8>>,
    pub digest: RecordDigest,
    /// One per output; empty for a dead letter.
    pub idempotency_keys: Vec<String>,
    /// The record's stream time, Unix milliseconds.
    pub record_timestamp: i64,
    /// The fixed reason token of a dead-lettered record.
    pub dead_letter_reason: Option<&'static str>,
}

/// Why a batch was not processed. Any error but the input checks
/// ([`PipelineError::UnknownPartition`], [`PipelineError::OffsetNotAfter`],
/// [`PipelineError::BatchTooLarge`]) leaves the cores mid-batch: the
/// instance halts, and a new pipeline is opened on the same directory.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error("partition {partition} is not one of the {partitions} input partitions")]
    UnknownPartition {
        partition: Partition,
        partitions: u32,
    },
    #[error("record {offset} of partition {partition} is not after offset {previous}")]
    OffsetNotAfter {
        partition: Partition,
        offset: Offset,
        previous: Offset,
    },
    #[error("a batch of {records} records exceeds the bound of {bound}")]
    BatchTooLarge { records: usize, bound: usize },
    #[error("the entity cache took {admitted} of the batch's {offered} records")]
    BatchDoesNotFitCache { admitted: usize, offered: usize },
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    #[error("the stored Warden entry of {key:?} cannot be decoded: {error}")]
    UndecodableEntry {
        key: String,
        error: EntryDecodeError,
    },
    #[error(transparent)]
    Warden(#[from] WardenError),
    #[error(transparent)]
    RegistrarStart(#[from] StartError),
    #[error(transparent)]
    Admit(#[from] AdmitError),
    #[error(transparent)]
    Prewarm(#[from] LoadError),
    #[error(transparent)]
    ApplyWrites(#[from] ApplyError),
    #[error(transparent)]
    Durable(#[from] DurableError),
    #[error(transparent)]
    Arbiter(#[from] ArbiterHalt),
}

/// Where a partition stands: what is durable, and the stream time and
/// outcome resume offset that go with it.
#[derive(Clone, Copy, Debug)]
struct PartitionState {
    applied_offset: Offset,
    stream_time: StreamTime,
    outcome_resume_offset: Offset,
}

/// One instance's cores over one Ledger, for the inventory domain.
#[derive(Debug)]
pub struct Pipeline {
    partitions: u32,
    decode_limits: DecodeLimits,
    domain: Inventory,
    warden: Warden,
    registrar: Registrar,
    arbiter: Arbiter<Inventory>,
    ledger: Ledger,
    reader: LedgerReader,
    states: BTreeMap<Partition, PartitionState>,
}

impl Pipeline {
    /// Opens (or creates) the Ledger in `data_dir` and starts the cores from
    /// its watermarks: nothing cached survives, the Warden and the Registrar
    /// read what they need from the Ledger.
    pub fn open(data_dir: &Path, partitions: u32) -> Result<Pipeline, PipelineError> {
        Self::open_with(data_dir, partitions, ArbiterConfig::default())
    }

    /// [`Pipeline::open`] with an Arbiter configuration (evaluation workers,
    /// the test-only corruption flag).
    pub fn open_with(
        data_dir: &Path,
        partitions: u32,
        arbiter_config: ArbiterConfig,
    ) -> Result<Pipeline, PipelineError> {
        let ledger = Ledger::open(data_dir, LedgerConfig::new(partitions))?;
        let states: BTreeMap<Partition, PartitionState> = ledger
            .watermarks()
            .into_iter()
            .map(|watermark| {
                (
                    watermark.partition,
                    PartitionState {
                        applied_offset: watermark.applied_offset,
                        stream_time: watermark.stream_time,
                        outcome_resume_offset: watermark.outcome_resume_offset,
                    },
                )
            })
            .collect();
        let loaded: Vec<LoadedWatermark> = states
            .iter()
            .map(|(&partition, state)| LoadedWatermark {
                partition,
                applied_offset: state.applied_offset,
            })
            .collect();
        let domain = Inventory::new(InventoryLimits::default());
        Ok(Pipeline {
            partitions,
            decode_limits: DecodeLimits::default(),
            warden: Warden::new(WardenConfig::default())
                .expect("the Warden's default config is valid"),
            registrar: Registrar::new(RegistrarConfig::default(), &loaded)?,
            arbiter: Arbiter::new(domain, arbiter_config),
            domain,
            reader: ledger.reader(),
            ledger,
            states,
        })
    }

    /// The last offset of `partition` whose outputs and state are durable
    /// (-1 before the first commit); `None` for an unknown partition.
    pub fn applied_offset(&self, partition: Partition) -> Option<Offset> {
        self.states
            .get(&partition)
            .map(|state| state.applied_offset)
    }

    /// The stream time stored with `partition`'s watermark.
    pub fn stream_time(&self, partition: Partition) -> Option<StreamTime> {
        self.states.get(&partition).map(|state| state.stream_time)
    }

    /// Where `partition`'s outcome reader resumes after a restart.
    pub fn outcome_resume_offset(&self, partition: Partition) -> Option<Offset> {
        self.states
            .get(&partition)
            .map(|state| state.outcome_resume_offset)
    }

    /// A reader of the Ledger, for the durable state.
    pub fn reader(&self) -> LedgerReader {
        self.reader.clone()
    }

    /// Processes one batch of consecutive records of `partition` (offsets
    /// ascending, after the watermark): decode, classify, pre-warm,
    /// evaluate, one synced group commit, durable. Returns every record's
    /// outputs and digest once they are durable. The same records give the
    /// same outputs whatever the batch boundaries and wherever the pipeline
    /// was reopened, as the whole path is a function of the log and the
    /// Ledger, never of memory that a restart loses.
    ///
    /// spec: recovery.ReplayFromAnyWatermarkIsIdentical
    pub fn process(
        &mut self,
        partition: Partition,
        records: &[InputRecord],
    ) -> Result<Vec<SealedOutputs>, PipelineError> {
        let stream_time = self
            .states
            .get(&partition)
            .map_or(StreamTime(0), |state| state.stream_time);
        let deliveries = self.decode(partition, stream_time, records);
        self.process_deliveries(partition, &deliveries)
    }

    /// [`Pipeline::process`] for records the Usher already decoded and
    /// stamped with their stream time (the node's path).
    pub fn process_deliveries(
        &mut self,
        partition: Partition,
        deliveries: &[Delivery<InventoryCommand>],
    ) -> Result<Vec<SealedOutputs>, PipelineError> {
        let state = *self
            .states
            .get(&partition)
            .ok_or(PipelineError::UnknownPartition {
                partition,
                partitions: self.partitions,
            })?;
        let bound = self.arbiter.config().max_batch_records;
        if deliveries.len() > bound {
            return Err(PipelineError::BatchTooLarge {
                records: deliveries.len(),
                bound,
            });
        }
        let mut previous = state.applied_offset;
        for offset in deliveries.iter().map(|delivery| delivery.offset) {
            if offset <= previous {
                return Err(PipelineError::OffsetNotAfter {
                    partition,
                    offset,
                    previous,
                });
            }
            previous = offset;
        }
        let Some(last_offset) = deliveries.last().map(|delivery| delivery.offset) else {
            return Ok(Vec::new());
        };

        let batch = self.classify(partition, deliveries)?;
        let prewarmed = self.prewarm(partition, &batch)?;
        let context = EvaluationContext {
            partition,
            partitions: self.partitions,
        };
        let evaluated = self
            .arbiter
            .evaluate_batch(context, &batch, &self.registrar)?;
        for sealed in &evaluated.records {
            for response in &sealed.responses {
                // The Arbiter already copied these answers into the
                // duplicates' outputs (CommandSlot::DuplicateOf).
                self.warden
                    .record_response(response.position, response.envelope.clone())?;
            }
        }
        let writes = evaluated.records.iter().flat_map(|sealed| {
            sealed.writes.iter().map(|write| EntityWriteAt {
                position: write.position,
                key: &write.key,
                state: &write.state,
            })
        });
        self.registrar
            .apply_batch_writes(prewarmed, writes)
            .map_err(|refused| refused.error)?;

        let mut commit = GroupCommit::new(deliveries.len());
        let mut sealed_outputs = Vec::with_capacity(deliveries.len());
        for (sealed, delivery) in evaluated.records.iter().zip(deliveries) {
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
                sealed.outputs.clone(),
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
            commit.push(SealedRecord {
                position: RecordPosition {
                    partition,
                    offset: sealed.offset,
                },
                stream_time: delivery.stream_time,
                entity_writes: sealed
                    .writes
                    .iter()
                    .map(|write| EntityWrite {
                        key: write.key.clone(),
                        state: write.state.clone(),
                    })
                    .collect(),
                output,
            });
        }
        let last_stream_time = deliveries
            .last()
            .expect("a non-empty batch has deliveries")
            .stream_time;
        self.add_warden_changes(&mut commit, partition, last_offset, last_stream_time)?;
        commit.set_outcome_resume_offset(partition, state.outcome_resume_offset);
        let durable = self.ledger.write(commit)?;
        for range in &durable.ranges {
            self.registrar
                .on_durable(range.partition, range.last_offset)?;
            self.warden.on_durable(range.partition, range.last_offset)?;
        }
        self.states.insert(
            partition,
            PartitionState {
                applied_offset: last_offset,
                stream_time: last_stream_time,
                outcome_resume_offset: state.outcome_resume_offset,
            },
        );
        Ok(sealed_outputs)
    }

    /// The Usher's part: each record decoded, carrying the partition's
    /// stream time up to and including it.
    fn decode(
        &self,
        partition: Partition,
        mut stream_time: StreamTime,
        records: &[InputRecord],
    ) -> Vec<Delivery<InventoryCommand>> {
        records
            .iter()
            .map(|(offset, timestamp, payload)| {
                stream_time = stream_time.advanced_by(StreamTime(*timestamp));
                decode_record(
                    &self.domain,
                    &self.decode_limits,
                    partition,
                    *offset,
                    stream_time,
                    payload.as_deref(),
                )
            })
            .collect()
    }

    /// The Warden's part: one Ledger multi-get for the batch's keys, then
    /// every command classified in log order.
    fn classify(
        &mut self,
        partition: Partition,
        deliveries: &[Delivery<InventoryCommand>],
    ) -> Result<BatchInput<InventoryCommand>, PipelineError> {
        let batch_keys = deliveries
            .iter()
            .flat_map(Delivery::commands)
            .map(|command| command.idempotency_key.as_str());
        let to_fetch = self.warden.plan_fetch(partition, batch_keys);
        let stored = self.reader.warden_entries(partition, &to_fetch)?;
        let fetched = to_fetch
            .into_iter()
            .zip(stored)
            .map(|(key, bytes)| {
                let entry = match bytes {
                    Some(bytes) => Some(StoredEntry::decode(&bytes).map_err(|error| {
                        PipelineError::UndecodableEntry {
                            key: key.clone(),
                            error,
                        }
                    })?),
                    None => None,
                };
                Ok(FetchedEntry { key, entry })
            })
            .collect::<Result<Vec<_>, PipelineError>>()?;
        self.warden.accept_fetched(partition, fetched)?;

        let mut records = Vec::with_capacity(deliveries.len());
        for delivery in deliveries {
            let content = match &delivery.result {
                DeliveryResult::DeadLettered(letter) => RecordContent::DeadLettered {
                    reason: letter.reason().token(),
                },
                DeliveryResult::Decoded(commands) => {
                    let mut slots = Vec::with_capacity(commands.len());
                    for command in commands {
                        let classification = self.warden.classify(&IncomingCommand {
                            position: command.position,
                            idempotency_key: &command.idempotency_key,
                            command: &command.bytes,
                            stream_time: delivery.stream_time,
                        })?;
                        slots.push(match classification {
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
                        });
                    }
                    RecordContent::Commands(slots)
                }
            };
            records.push(RecordInput {
                offset: delivery.offset,
                content,
            });
        }
        Ok(BatchInput { partition, records })
    }

    /// The Registrar's part: the whole batch admitted, the keys it lacks
    /// read from the Ledger in one multi-get.
    fn prewarm(
        &mut self,
        partition: Partition,
        batch: &BatchInput<InventoryCommand>,
    ) -> Result<registrar::PrewarmedBatch, PipelineError> {
        let record_keys: Vec<RecordKeys> = batch
            .records
            .iter()
            .map(|record| {
                let fresh = match &record.content {
                    RecordContent::DeadLettered { .. } => &[][..],
                    RecordContent::Commands(slots) => &slots[..],
                };
                RecordKeys::of_fresh_commands(
                    record.offset,
                    &self.domain,
                    fresh.iter().filter_map(|slot| match slot {
                        CommandSlot::Fresh(fresh) => Some(&fresh.command),
                        CommandSlot::Answered { .. } | CommandSlot::DuplicateOf { .. } => None,
                    }),
                )
            })
            .collect();
        let pending = match self.registrar.admit(partition, &record_keys)? {
            Admission::Prewarm(pending) if pending.remainder_records() == 0 => pending,
            Admission::Prewarm(pending) => {
                return Err(PipelineError::BatchDoesNotFitCache {
                    admitted: pending.admitted_records(),
                    offered: record_keys.len(),
                });
            }
            Admission::WaitForRoom => {
                return Err(PipelineError::BatchDoesNotFitCache {
                    admitted: 0,
                    offered: record_keys.len(),
                });
            }
        };
        let states = if pending.keys_to_read().is_empty() {
            Vec::new()
        } else {
            self.reader.entities(pending.keys_to_read())?
        };
        self.registrar
            .complete_prewarm(pending, states)
            .map_err(|refused| PipelineError::Prewarm(refused.error))
    }

    /// The Warden's changes for the commit through `through_offset`: the
    /// entries the batch created, and the expired entries to purge.
    fn add_warden_changes(
        &mut self,
        commit: &mut GroupCommit,
        partition: Partition,
        through_offset: Offset,
        stream_time: StreamTime,
    ) -> Result<(), PipelineError> {
        let cutoff = self.warden.expiry_cutoff(stream_time);
        let max_purges = self.warden.config().max_purges_per_commit;
        let candidates = self
            .reader
            .expiry_candidates(partition, cutoff, max_purges)?
            .into_iter()
            .map(|candidate| ExpiryCandidate {
                first_seen: candidate.first_seen,
                key: candidate.key,
            })
            .collect();
        let delta = self
            .warden
            .commit_delta(partition, through_offset, stream_time, candidates)?;
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
        Ok(())
    }
}

#[cfg(test)]
mod tests;
