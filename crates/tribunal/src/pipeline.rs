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

use arbiter::{Arbiter, ArbiterConfig, ArbiterHalt};
use domain::EvaluationContext;
use domain::inventory::{Inventory, InventoryCommand, InventoryLimits};
use ledger::{
    CommitLimits, CommitScheduler, Ledger, LedgerConfig, LedgerError, LedgerReader,
    PartitionWatermark,
};
use protocol::position::{Offset, Partition, StreamTime};
use registrar::shell::RegistrarShellError;
use registrar::{
    DurableError, EntityWriteAt, LoadedWatermark, Registrar, RegistrarConfig, StartError,
};
use usher::{DecodeLimits, Delivery, decode_record};
use warden::shell::WardenShellError;
use warden::{Warden, WardenConfig, WardenError};

use crate::batch;
pub use crate::batch::SealedOutputs;
use crate::store::LedgerStore;

/// One input record as fetched: offset, Kafka timestamp (Unix millis) and
/// value (`None` for a tombstone).
pub type InputRecord = (Offset, i64, Option<Vec<u8>>);

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
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    #[error(transparent)]
    Warden(#[from] WardenShellError),
    #[error(transparent)]
    WardenCore(#[from] WardenError),
    #[error(transparent)]
    RegistrarStart(#[from] StartError),
    #[error(transparent)]
    Registrar(#[from] RegistrarShellError),
    #[error(transparent)]
    Durable(#[from] DurableError),
    #[error(transparent)]
    Arbiter(#[from] ArbiterHalt),
}

/// One instance's cores over one Ledger, opened from its watermarks:
/// nothing cached survives a restart, the Warden and the Registrar read
/// what they need from the Ledger. The node hands each core to its actor;
/// the [`Pipeline`] drives them itself.
#[derive(Debug)]
pub struct Cores {
    pub domain: Inventory,
    pub warden: Warden,
    pub registrar: Registrar,
    pub arbiter: Arbiter<Inventory>,
    pub ledger: Ledger,
    /// When the Ledger's group commits are cut.
    pub commits: CommitScheduler,
    pub reader: LedgerReader,
    pub watermarks: Vec<PartitionWatermark>,
}

impl Cores {
    pub fn open(
        data_dir: &Path,
        ledger_config: LedgerConfig,
        arbiter_config: ArbiterConfig,
    ) -> Result<Cores, PipelineError> {
        let ledger = Ledger::open(data_dir, ledger_config)?;
        let watermarks = ledger.watermarks();
        let loaded: Vec<LoadedWatermark> = watermarks
            .iter()
            .map(|watermark| LoadedWatermark {
                partition: watermark.partition,
                applied_offset: watermark.applied_offset,
            })
            .collect();
        let domain = Inventory::new(InventoryLimits::default());
        let commit_limits = CommitLimits::default();
        assert!(
            arbiter_config.max_batch_records <= commit_limits.max_group_commit_records,
            "a batch fits one group commit"
        );
        Ok(Cores {
            warden: Warden::new(WardenConfig::default())
                .expect("the Warden's default config is valid"),
            registrar: Registrar::new(RegistrarConfig::default(), &loaded)?,
            arbiter: Arbiter::new(domain, arbiter_config),
            domain,
            reader: ledger.reader(),
            ledger,
            commits: CommitScheduler::new(commit_limits),
            watermarks,
        })
    }
}

/// Where a partition stands: what is durable, and the stream time and
/// outcome resume offset that go with it.
#[derive(Clone, Copy, Debug)]
struct PartitionState {
    applied_offset: Offset,
    stream_time: StreamTime,
    outcome_resume_offset: Offset,
}

/// One instance's pipeline, driven sequentially on the caller's thread.
#[derive(Debug)]
pub struct Pipeline {
    partitions: u32,
    decode_limits: DecodeLimits,
    cores: Cores,
    store: LedgerStore,
    states: BTreeMap<Partition, PartitionState>,
}

impl Pipeline {
    /// Opens (or creates) the Ledger in `data_dir` and starts the cores
    /// from its watermarks.
    pub fn open(data_dir: &Path, partitions: u32) -> Result<Pipeline, PipelineError> {
        let cores = Cores::open(
            data_dir,
            LedgerConfig::new(partitions),
            ArbiterConfig::default(),
        )?;
        let states = cores
            .watermarks
            .iter()
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
        Ok(Pipeline {
            partitions,
            decode_limits: DecodeLimits::default(),
            store: LedgerStore(cores.reader.clone()),
            cores,
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

    /// A reader of the Ledger, for the durable state.
    pub fn reader(&self) -> LedgerReader {
        self.cores.reader.clone()
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

    fn process_deliveries(
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
        let bound = self.cores.arbiter.config().max_batch_records;
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
        let (Some(last_offset), Some(last_stream_time)) = (
            deliveries.last().map(|delivery| delivery.offset),
            batch::last_stream_time(deliveries),
        ) else {
            return Ok(Vec::new());
        };
        let cores = &mut self.cores;
        let classifications =
            warden::shell::classify_batch(&mut cores.warden, &self.store, partition, deliveries)?;
        let input = batch::batch_input(partition, deliveries, classifications);
        let prewarmed = registrar::shell::prewarm(
            &mut cores.registrar,
            &self.store,
            partition,
            &batch::record_keys(&cores.domain, &input),
        )?;
        let context = EvaluationContext {
            partition,
            partitions: self.partitions,
        };
        let mut evaluated = cores
            .arbiter
            .evaluate_batch(context, &input, &cores.registrar)?;
        for (position, envelope) in batch::take_fresh_responses(&mut evaluated) {
            cores.warden.record_response(position, envelope)?;
        }
        let writes = batch::staged_writes(&evaluated);
        registrar::shell::apply_writes(
            &mut cores.registrar,
            prewarmed,
            writes.iter().map(|(position, key, state)| EntityWriteAt {
                position: *position,
                key,
                state,
            }),
        )?;
        let delta = warden::shell::commit_delta(
            &mut cores.warden,
            &self.store,
            partition,
            last_offset,
            last_stream_time,
        )?;
        let (commit, sealed) = batch::seal_commit(
            evaluated,
            deliveries,
            delta,
            state.outcome_resume_offset,
            &mut cores.commits,
        );
        let durable = cores.ledger.write(commit)?;
        cores.commits.sync_finished();
        for range in &durable.ranges {
            cores
                .registrar
                .on_durable(range.partition, range.last_offset)?;
            cores
                .warden
                .on_durable(range.partition, range.last_offset)?;
        }
        self.states.insert(
            partition,
            PartitionState {
                applied_offset: last_offset,
                stream_time: last_stream_time,
                outcome_resume_offset: state.outcome_resume_offset,
            },
        );
        Ok(sealed)
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
                    &self.cores.domain,
                    &self.decode_limits,
                    partition,
                    *offset,
                    stream_time,
                    payload.as_deref(),
                )
            })
            .collect()
    }
}

#[cfg(test)]
mod tests;
