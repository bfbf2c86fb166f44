//! The conductor: takes each batch the Usher hands on through the Warden,
//! Registrar, Arbiter and Ledger actors in order, and tells the rest of
//! the node about it only once its group commit is durable.
//!
//! Batches are processed one at a time (`ctx.wait`): the next batch's
//! classification must see the previous batch's Warden entries and its
//! pre-warm the previous batch's writes. The Usher's pipeline bound keeps
//! the queue of batches waiting here bounded.

use std::collections::BTreeMap;

use actix::prelude::*;
use arbiter::ArbiterHalt;
use arbiter::shell::{ArbiterActor, Evaluate};
use domain::EvaluationContext;
use domain::inventory::{Inventory, InventoryCommand};
use ledger::LedgerError;
use ledger::shell::{Commit, LedgerActor};
use protocol::position::{Offset, Partition};
use registrar::shell::{ApplyWrites, Prewarm, RegistrarActor, RegistrarShellError, StatesDurable};
use usher::Delivery;
use usher::shell::{Delivered, WatermarkAdvanced};
use warden::WardenError;
use warden::shell::{
    Classify, EntriesDurable, RecordResponses, TakeCommitDelta, WardenActor, WardenShellError,
};

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

/// The core actors a batch goes through.
#[derive(Clone)]
pub struct Stages {
    pub domain: Inventory,
    pub partitions: u32,
    pub warden: Addr<WardenActor<LedgerStore>>,
    pub registrar: Addr<RegistrarActor<LedgerStore>>,
    pub arbiter: Addr<ArbiterActor<Inventory>>,
    pub ledger: Addr<LedgerActor>,
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

impl Stages {
    /// One batch through every core; durable when it returns. Every
    /// instance takes the same path over the same log, with no clock and
    /// no randomness, which is why correct instances agree.
    ///
    /// spec: core.OutputsDependOnlyOnTheLog, core.CorrectInstancesAgree
    async fn process(
        self,
        partition: Partition,
        state: PartitionState,
        deliveries: Vec<Delivery<InventoryCommand>>,
    ) -> Result<Vec<SealedOutputs>, BatchError> {
        let (Some(through), Some(stream_time)) = (
            deliveries.last().map(|delivery| delivery.offset),
            batch::last_stream_time(&deliveries),
        ) else {
            return Ok(Vec::new());
        };
        let (deliveries, classifications) = self
            .warden
            .send(Classify {
                partition,
                deliveries,
            })
            .await??;
        let input = batch::batch_input(partition, &deliveries, classifications);
        let states = self
            .registrar
            .send(Prewarm {
                partition,
                records: batch::record_keys(&self.domain, &input),
            })
            .await??;
        let context = EvaluationContext {
            partition,
            partitions: self.partitions,
        };
        let evaluated = self
            .arbiter
            .send(Evaluate {
                context,
                batch: input,
                states,
            })
            .await??;
        self.warden
            .send(RecordResponses(batch::fresh_responses(&evaluated)))
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
        let (commit, sealed) =
            batch::seal_commit(evaluated, &deliveries, delta, state.outcome_resume_offset);
        let durable = self.ledger.send(Commit(commit)).await??;
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
        Ok(sealed)
    }
}

pub struct ProcessingActor {
    stages: Stages,
    partitions: BTreeMap<Partition, PartitionState>,
    outbox: ProcessingOutbox,
    status: NodeStatus,
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
    ) -> Self {
        Self {
            stages,
            partitions,
            outbox,
            status,
        }
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
        let partition = delivered.partition;
        let Some(first) = delivered.deliveries.first().map(|delivery| delivery.offset) else {
            return;
        };
        let state = *self
            .partitions
            .get(&partition)
            .expect("the Usher only consumes partitions the node holds");
        assert!(
            first > state.applied_offset,
            "the Usher hands on only records after the watermark"
        );
        let work = self
            .stages
            .clone()
            .process(partition, state, delivered.deliveries);
        ctx.wait(
            work.into_actor(self)
                .map(move |result, actor, _ctx| actor.finish(partition, first, result)),
        );
    }
}
