//! What the rest of the node tells the Clerk actor, and what the actor
//! hands on to the rest of the node (through a [`ClerkOutbox`]).
//!
//! Outbound messages carry every effect of one kind decided in one step,
//! so a burst of agreements costs one message per recipient, not one per
//! record.

use actix::{Message, Recipient};
use protocol::position::{Offset, Partition};

use crate::clerk::{OutcomeIntake, OutcomeRecord, OwnOutput};
use crate::config::{InstanceId, InstanceStatus};
use crate::effect::PublishOrder;
use crate::shell::snapshot::ClerkSnapshot;

// ---------------------------------------------------------------------
// Into the actor
// ---------------------------------------------------------------------

/// The outputs of a group commit are durable (the synced write returned),
/// in offset order per partition (`Clerk::outputs_committed`).
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct OutputsCommitted(pub Vec<OwnOutput>);

/// Outputs durable before a restart and not yet seen published, read back
/// at start (`Clerk::retained_outputs_loaded`).
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct RetainedOutputsLoaded(pub Vec<OwnOutput>);

/// A partition's stored watermark, loaded at start; answered with an
/// [`AssignOutcomeReader`] (`Clerk::watermark_loaded`).
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct WatermarkLoaded {
    pub partition: Partition,
    pub applied_offset: Offset,
    pub outcome_resume_offset: Offset,
}

/// The Usher consumed and the Ledger made durable up to these offsets
/// (`Clerk::advance_progress`). Send it after the [`OutputsCommitted`] of
/// the records it covers: a peer's copy for an offset at or below
/// `applied_offset` with no slot counts as one for a settled record and is
/// dropped.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct ProgressAdvanced {
    pub partition: Partition,
    pub consumed_offset: Offset,
    pub applied_offset: Offset,
}

/// The instance's status changed (`Clerk::set_status`); a transition the
/// core does not allow is a bug and panics.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct StatusChanged(pub InstanceStatus);

/// Publications read back from the outcome topic, in topic order. The
/// reply holds one [`OutcomeIntake`] per record, in the same order: a
/// `Deferred` record must be offered again once consumption moved on.
#[derive(Debug, Message)]
#[rtype(result = "Vec<OutcomeIntake>")]
pub struct OutcomesConsumed(pub Vec<OutcomeRecord>);

/// Producing a [`PublishRequested`] order failed; the core retries after a
/// step delay (`Clerk::publication_failed`).
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct PublicationFailed {
    pub partition: Partition,
    pub offset: Offset,
}

/// An operator cleared this peer's suspicion; the reply is `false` if it
/// was not suspected (`Clerk::clear_peer_suspicion`).
#[derive(Debug, Message)]
#[rtype(result = "bool")]
pub struct ClearPeerSuspicion(pub InstanceId);

/// For `/health` and `/metrics`: the reply is a [`ClerkSnapshot`].
#[derive(Debug, Message)]
#[rtype(result = "ClerkSnapshot")]
pub struct ClerkSnapshotRequested;

// ---------------------------------------------------------------------
// Out of the actor
// ---------------------------------------------------------------------

/// Agreed records this instance is to write to the outcome topic, in the
/// order the core decided them. Answer a failed one with
/// [`PublicationFailed`].
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct PublishRequested(pub Vec<PublishOrder>);

/// One input record.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RecordPosition {
    pub partition: Partition,
    pub offset: Offset,
}

/// Records published with this instance's own output: the Usher may settle
/// them (`usher.SettleRecordOnPublication`).
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct RecordsSettled(pub Vec<RecordPosition>);

/// A publication read back, and where it sits on the outcome topic.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PublicationSeen {
    pub partition: Partition,
    pub offset: Offset,
    pub outcome_offset: Offset,
}

/// For the Ledger (`ledger.MarkOutputPublicationSeen`).
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct OutcomePublicationsSeen(pub Vec<PublicationSeen>);

/// `assign()` the outcome topic's partition at this offset.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct AssignOutcomeReader {
    pub partition: Partition,
    pub outcome_offset: Offset,
}

/// Split brain on this partition: the Usher stops consuming it
/// (`usher.StopConsumingHaltedPartition`).
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct PartitionHalted {
    pub partition: Partition,
}

/// This instance's own output differs from the agreement: recovery halts
/// the instance.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct SelfDivergenceDetected {
    pub partition: Partition,
    pub offset: Offset,
}

/// Where the actor sends what the rest of the node acts on. Delivery uses
/// `Recipient::do_send`: the records in flight are bounded by the core's
/// windows (`max_unagreed_records` + `copy_lookahead` per partition), not
/// by the recipients' mailboxes.
#[derive(Clone, Debug)]
pub struct ClerkOutbox {
    pub publish: Recipient<PublishRequested>,
    pub settled: Recipient<RecordsSettled>,
    pub publications_seen: Recipient<OutcomePublicationsSeen>,
    pub outcome_reader: Recipient<AssignOutcomeReader>,
    pub partition_halted: Recipient<PartitionHalted>,
    pub self_divergence: Recipient<SelfDivergenceDetected>,
}
