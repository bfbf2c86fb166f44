//! The conductor: takes each batch the Usher hands on through the Warden,
//! Registrar, Arbiter and Ledger actors in order, and tells the rest of
//! the node about it only once its group commit is durable.
//!
//! Batches are processed one at a time: the next batch's classification
//! must see the previous batch's Warden entries and its pre-warm the
//! previous batch's writes. Whatever the Usher hands on while a batch is in
//! flight queues here and goes into the next batch, up to the Arbiter's
//! batch bound, so the batch (and the group commit) grows with the load
//! instead of one fsync per record. The Usher's pipeline bound keeps the
//! queue bounded.
//!
//! A sealed batch's records join the Ledger's commit scheduler, which cuts
//! them as one group commit at once (a batch is sealed whole, so no sealed
//! record waits behind it); the next batch starts once that commit is
//! durable, so one sync is in flight at a time.

use std::collections::{BTreeMap, VecDeque};
use std::time::Instant;

use actix::prelude::*;
use arbiter::shell::{ArbiterActor, Evaluate};
use arbiter::{ArbiterHalt, EvaluatedBatch};
use domain::EvaluationContext;
use domain::inventory::{Inventory, InventoryCommand};
use ledger::shell::{Commit, LedgerActor};
use ledger::{CommitScheduler, GroupCommit, LedgerError};
use protocol::position::{Offset, Partition};
use registrar::shell::{ApplyWrites, Prewarm, RegistrarActor, RegistrarShellError, StatesDurable};
use usher::Delivery;
use usher::shell::{Delivered, WatermarkAdvanced};
use warden::shell::{
    Classify, EntriesDurable, RecordResponses, TakeCommitDelta, WardenActor, WardenShellError,
};
use warden::{WardenCommitDelta, WardenError};

use gateway::metrics::{Counter, Histogram, LATENCY_BUCKETS_MICROS, MetricsRegistry};

use crate::batch::{self, SealedOutputs};
use crate::lifecycle::HaltReason;
use crate::node::status::NodeStatus;
use crate::store::LedgerStore;

/// One batch made durable: what the Clerk, the publisher and the lifecycle
/// learn about it.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct Committed {
    pub partition: Partition,
    pub records: Vec<SealedOutputs>,
}

#[derive(Debug)]
pub struct ProcessingOutbox {
    pub watermark: Recipient<WatermarkAdvanced>,
    pub committed: Recipient<Committed>,
}

/// Per-stage latency of the pipeline, and what went through it.
#[derive(Clone, Debug)]
pub struct PipelineMetrics {
    classify: Histogram,
    prewarm: Histogram,
    evaluate: Histogram,
    commit: Histogram,
    batch: Histogram,
    batches: Counter,
    records: Counter,
    commands: Counter,
}

impl PipelineMetrics {
    pub fn register(registry: &mut MetricsRegistry) -> Self {
        let name = "tribunal_pipeline_stage_seconds";
        let help = "Time per batch in each pipeline stage (Warden classify, Registrar pre-warm, Arbiter evaluate, Ledger synced commit, whole batch)";
        let mut stage =
            |stage| registry.histogram(name, help, &[("stage", stage)], LATENCY_BUCKETS_MICROS);
        Self {
            classify: stage("classify"),
            prewarm: stage("prewarm"),
            evaluate: stage("evaluate"),
            commit: stage("commit"),
            batch: stage("batch"),
            batches: registry.counter(
                "tribunal_pipeline_batches_total",
                "Batches made durable",
                &[],
            ),
            records: registry.counter(
                "tribunal_pipeline_records_total",
                "Input records made durable",
                &[],
            ),
            commands: registry.counter(
                "tribunal_pipeline_commands_total",
                "Commands in records made durable",
                &[],
            ),
        }
    }
}

/// The core actors a batch goes through.
#[derive(Clone)]
pub struct Stages {
    pub domain: Inventory,
    pub partitions: u32,
    pub warden: Addr<WardenActor<LedgerStore>>,
    pub registrar: Addr<RegistrarActor<LedgerStore>>,
    pub arbiter: Addr<ArbiterActor<Inventory>>,
    pub ledger: Addr<LedgerActor>,
    pub metrics: PipelineMetrics,
}

/// Where a partition stands.
#[derive(Clone, Copy, Debug)]
pub struct PartitionState {
    pub applied_offset: Offset,
    pub outcome_resume_offset: Offset,
}

#[derive(Debug, thiserror::Error)]
enum BatchError {
    #[error("an actor stopped: {0}")]
    Mailbox(#[from] MailboxError),
    #[error(transparent)]
    Warden(#[from] WardenShellError),
    #[error(transparent)]
    WardenCore(#[from] WardenError),
    #[error(transparent)]
    Registrar(#[from] RegistrarShellError),
    #[error(transparent)]
    Arbiter(#[from] ArbiterHalt),
    #[error(transparent)]
    Ledger(#[from] LedgerError),
}

impl BatchError {
    fn halt_reason(&self) -> HaltReason {
        match self {
            Self::Arbiter(_) => HaltReason::DomainFailure,
            _ => HaltReason::DurableIoFailure,
        }
    }
}

/// A batch through the Warden, the Registrar and the Arbiter: what its
/// group commit is sealed from.
struct ReadyToSeal {
    started: Instant,
    deliveries: Vec<Delivery<InventoryCommand>>,
    evaluated: EvaluatedBatch,
    delta: WardenCommitDelta,
}

impl Stages {
    /// One batch through every core up to its commit. Every instance takes
    /// the same path over the same log, with no clock and no randomness,
    /// which is why correct instances agree.
    ///
    /// spec: core.OutputsDependOnlyOnTheLog, core.CorrectInstancesAgree
    async fn evaluate(
        self,
        partition: Partition,
        deliveries: Vec<Delivery<InventoryCommand>>,
    ) -> Result<ReadyToSeal, BatchError> {
        let (through, stream_time) = deliveries
            .last()
            .map(|delivery| (delivery.offset, delivery.stream_time))
            .expect("a batch holds at least one record");
        let metrics = &self.metrics;
        let started = Instant::now();
        let (deliveries, classifications) = self
            .warden
            .send(Classify {
                partition,
                deliveries,
            })
            .await??;
        metrics.classify.observe(started.elapsed());
        let stage = Instant::now();
        let input = batch::batch_input(partition, &deliveries, classifications);
        let states = self
            .registrar
            .send(Prewarm {
                partition,
                records: batch::record_keys(&self.domain, &input),
            })
            .await??;
        metrics.prewarm.observe(stage.elapsed());
        let stage = Instant::now();
        let context = EvaluationContext {
            partition,
            partitions: self.partitions,
        };
        let mut evaluated = self
            .arbiter
            .send(Evaluate {
                context,
                batch: input,
                states,
            })
            .await??;
        metrics.evaluate.observe(stage.elapsed());
        self.warden
            .send(RecordResponses(batch::take_fresh_responses(&mut evaluated)))
            .await??;
        self.registrar
            .send(ApplyWrites(batch::staged_writes(&evaluated)))
            .await??;
        let delta = self
            .warden
            .send(TakeCommitDelta {
                partition,
                through_offset: through,
                stream_time,
            })
            .await??;
        Ok(ReadyToSeal {
            started,
            deliveries,
            evaluated,
            delta,
        })
    }

    /// The batch's group commit written (synced) and the cores told it is
    /// durable; the records' outputs are returned only then.
    async fn make_durable(
        self,
        commit: GroupCommit,
        sealed: Vec<SealedOutputs>,
        started: Instant,
        commands: u64,
    ) -> Result<Vec<SealedOutputs>, BatchError> {
        let metrics = &self.metrics;
        let stage = Instant::now();
        let durable = self.ledger.send(Commit(commit)).await??;
        metrics.commit.observe(stage.elapsed());
        for range in &durable.ranges {
            self.registrar
                .send(StatesDurable {
                    partition: range.partition,
                    through_offset: range.last_offset,
                })
                .await??;
            self.warden
                .send(EntriesDurable {
                    partition: range.partition,
                    through_offset: range.last_offset,
                })
                .await??;
        }
        metrics.batch.observe(started.elapsed());
        metrics.batches.increment();
        metrics.records.add(sealed.len() as u64);
        metrics.commands.add(commands);
        Ok(sealed)
    }
}

pub struct ProcessingActor {
    stages: Stages,
    partitions: BTreeMap<Partition, PartitionState>,
    outbox: ProcessingOutbox,
    status: NodeStatus,
    /// Records handed on and not yet in a batch, per partition, in order.
    queued: BTreeMap<Partition, VecDeque<Delivery<InventoryCommand>>>,
    /// The next batch takes at most this many records.
    max_batch_records: usize,
    /// A batch is in flight.
    busy: bool,
    /// The partition served last, so partitions take turns.
    last_served: Option<Partition>,
    /// Cuts each sealed batch's group commit; one syncs at a time.
    commits: CommitScheduler,
}

impl std::fmt::Debug for ProcessingActor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProcessingActor")
            .field("partitions", &self.partitions)
            .finish_non_exhaustive()
    }
}

impl ProcessingActor {
    pub fn new(
        stages: Stages,
        partitions: BTreeMap<Partition, PartitionState>,
        outbox: ProcessingOutbox,
        status: NodeStatus,
        max_batch_records: usize,
        commits: CommitScheduler,
    ) -> Self {
        assert!(max_batch_records > 0, "a batch holds at least one record");
        Self {
            stages,
            partitions,
            outbox,
            status,
            queued: BTreeMap::new(),
            max_batch_records,
            busy: false,
            last_served: None,
            commits,
        }
    }

    /// Starts the next batch if none is in flight: every queued record of
    /// the next partition with any, up to the batch bound.
    fn start_next(&mut self, ctx: &mut Context<Self>) {
        if self.busy || self.status.is_halted() {
            return;
        }
        let after = self.last_served;
        let next = self
            .queued
            .iter()
            .filter(|(_, queue)| !queue.is_empty())
            .map(|(&partition, _)| partition)
            .find(|&partition| after.is_none_or(|last| partition > last))
            .or_else(|| {
                self.queued
                    .iter()
                    .find(|(_, queue)| !queue.is_empty())
                    .map(|(&partition, _)| partition)
            });
        let Some(partition) = next else {
            return;
        };
        let queue = self
            .queued
            .get_mut(&partition)
            .expect("the partition was found in the queue");
        let take = queue.len().min(self.max_batch_records);
        let deliveries: Vec<Delivery<InventoryCommand>> = queue.drain(..take).collect();
        let first = deliveries[0].offset;
        let state = *self
            .partitions
            .get(&partition)
            .expect("the Usher only consumes partitions the node holds");
        assert!(
            first > state.applied_offset,
            "the Usher hands on only records after the watermark"
        );
        self.busy = true;
        self.last_served = Some(partition);
        let work = self.stages.clone().evaluate(partition, deliveries);
        ctx.spawn(
            work.into_actor(self)
                .map(move |result, actor, ctx| match result {
                    Ok(ready) => actor.seal(partition, first, state, ready, ctx),
                    Err(error) => actor.done(partition, first, Err(error), ctx),
                }),
        );
    }

    /// Seals the evaluated batch into its group commit, cut by the commit
    /// scheduler, and makes it durable.
    fn seal(
        &mut self,
        partition: Partition,
        first: Offset,
        state: PartitionState,
        ready: ReadyToSeal,
        ctx: &mut Context<Self>,
    ) {
        let commands = ready
            .deliveries
            .iter()
            .map(|delivery| delivery.commands().len() as u64)
            .sum();
        let (commit, sealed) = batch::seal_commit(
            ready.evaluated,
            &ready.deliveries,
            ready.delta,
            state.outcome_resume_offset,
            &mut self.commits,
        );
        let work = self
            .stages
            .clone()
            .make_durable(commit, sealed, ready.started, commands);
        ctx.spawn(work.into_actor(self).map(move |result, actor, ctx| {
            if result.is_ok() {
                actor.commits.sync_finished();
            }
            actor.done(partition, first, result, ctx);
        }));
    }

    /// The batch in flight ended, durable or failed; the next may start.
    fn done(
        &mut self,
        partition: Partition,
        first: Offset,
        result: Result<Vec<SealedOutputs>, BatchError>,
        ctx: &mut Context<Self>,
    ) {
        self.busy = false;
        self.finish(partition, first, result);
        self.start_next(ctx);
    }

    /// A batch is durable: only now do the Usher, the lifecycle, the Clerk
    /// and the publisher hear of it, so a crash before this point leaves
    /// the records above the watermark, never advertised, to be replayed.
    ///
    /// spec: ledger.DurableBeforeAdvertised, ledger.WatermarkMatchesProgress, core.AppliedNeverAheadOfConsumed, recovery.CrashBeforeGroupCommitLosesNothing
    fn finish(
        &mut self,
        partition: Partition,
        first: Offset,
        result: Result<Vec<SealedOutputs>, BatchError>,
    ) {
        let records = match result {
            Ok(records) => records,
            Err(error) => {
                tracing::error!(partition, offset = first, %error, "a batch failed; the instance halts");
                self.status
                    .halt(error.halt_reason(), Some(partition), Some(first));
                return;
            }
        };
        let Some(through) = records.last().map(|sealed| sealed.offset) else {
            return;
        };
        let state = self
            .partitions
            .get_mut(&partition)
            .expect("only assigned partitions are processed");
        let from_offset = state.applied_offset + 1;
        state.applied_offset = through;
        // Everything below is told only now that the group commit is durable.
        self.outbox.watermark.do_send(WatermarkAdvanced {
            partition,
            from_offset,
            through_offset: through,
        });
        self.status.on_applied(partition, through);
        self.outbox
            .committed
            .do_send(Committed { partition, records });
    }
}

impl Actor for ProcessingActor {
    type Context = Context<Self>;
}

impl Handler<Delivered<InventoryCommand>> for ProcessingActor {
    type Result = ();

    fn handle(&mut self, delivered: Delivered<InventoryCommand>, ctx: &mut Self::Context) {
        if self.status.is_halted() {
            // Halted is terminal: nothing more is applied or advertised.
            return;
        }
        self.queued
            .entry(delivered.partition)
            .or_default()
            .extend(delivered.deliveries);
        self.start_next(ctx);
    }
}
