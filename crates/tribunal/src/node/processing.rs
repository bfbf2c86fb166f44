//! The pipeline actor: every batch the Usher hands on goes through the
//! Warden, Registrar, Arbiter and Ledger cores ([`Pipeline`]) and is
//! durable, as one synced group commit, before anything about it leaves.
//!
//! It runs on its own thread (an actix `SyncArbiter`) because the group
//! commit blocks on fdatasync; the batches queue behind it in the mailbox
//! while the Usher's pipeline bound holds the queue's size.

use actix::prelude::*;
use domain::inventory::InventoryCommand;
use protocol::position::{Offset, Partition};
use usher::shell::{Delivered, WatermarkAdvanced};

use crate::lifecycle::HaltReason;
use crate::node::status::NodeStatus;
use crate::pipeline::{Pipeline, PipelineError, SealedOutputs};

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

pub struct ProcessingActor {
    pipeline: Pipeline,
    outbox: ProcessingOutbox,
    status: NodeStatus,
}

impl std::fmt::Debug for ProcessingActor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProcessingActor").finish_non_exhaustive()
    }
}

impl ProcessingActor {
    pub fn new(pipeline: Pipeline, outbox: ProcessingOutbox, status: NodeStatus) -> Self {
        Self {
            pipeline,
            outbox,
            status,
        }
    }

    fn halt_for(&self, error: &PipelineError, partition: Partition, offset: Offset) {
        let reason = match error {
            PipelineError::Arbiter(_) => HaltReason::DomainFailure,
            _ => HaltReason::DurableIoFailure,
        };
        tracing::error!(partition, offset, %error, "the pipeline failed; the instance halts");
        self.status.halt(reason, Some(partition), Some(offset));
    }
}

impl Actor for ProcessingActor {
    type Context = SyncContext<Self>;
}

impl Handler<Delivered<InventoryCommand>> for ProcessingActor {
    type Result = ();

    /// spec: ledger.DurableBeforeAdvertised, core.AppliedNeverAheadOfConsumed
    fn handle(&mut self, delivered: Delivered<InventoryCommand>, _ctx: &mut Self::Context) {
        if self.status.is_halted() {
            // Halted is terminal: nothing more is applied or advertised.
            return;
        }
        let partition = delivered.partition;
        let Some(first) = delivered.deliveries.first().map(|delivery| delivery.offset) else {
            return;
        };
        let applied_before = self
            .pipeline
            .applied_offset(partition)
            .expect("the Usher only consumes partitions the pipeline holds");
        let records = match self
            .pipeline
            .process_deliveries(partition, &delivered.deliveries)
        {
            Ok(records) => records,
            Err(error) => {
                self.halt_for(&error, partition, first);
                return;
            }
        };
        let through = records
            .last()
            .expect("a non-empty batch seals its records")
            .offset;
        // Everything below is told only now that the group commit is durable.
        self.outbox.watermark.do_send(WatermarkAdvanced {
            partition,
            from_offset: applied_before + 1,
            through_offset: through,
        });
        self.status.on_applied(partition, through);
        self.outbox
            .committed
            .do_send(Committed { partition, records });
    }
}
