//! What goes into the Arbiter and what comes out: plain data the node wires
//! between the Warden, the Registrar, the Ledger and the Clerk.

use domain::{CorruptState, EntityKey};
use protocol::envelope::{EnvelopeVerdict, RecordDigest};
use protocol::position::{CommandPosition, Offset, Partition};

/// A run of consecutive records of one partition, after the Warden has
/// classified every command and the Registrar has pre-warmed the entities
/// the fresh commands touch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BatchInput<C> {
    pub partition: Partition,
    /// Offset order, strictly ascending, at least one record.
    pub records: Vec<RecordInput<C>>,
}

/// One input record of the batch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecordInput<C> {
    pub offset: Offset,
    pub content: RecordContent<C>,
}

/// What the Usher and the Warden made of one record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RecordContent<C> {
    /// The record could not be decoded or holds an invalid command: its one
    /// output is a dead letter. `reason` is the Usher's token
    /// (usher.DeadLetterReason), never decoder error text.
    DeadLettered { reason: &'static str },
    /// One slot per command of the pack, in index order.
    Commands(Vec<CommandSlot<C>>),
}

/// One command of a decodable record, as the Warden classified it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CommandSlot<C> {
    /// First seen within the idempotency window: the domain evaluates it.
    Fresh(FreshCommand<C>),
    /// A duplicate (the original's stored envelope) or a reused key (the
    /// `idempotency_key_reused` rejection): copied into the output as is.
    Answered { envelope: Vec<u8> },
    /// A duplicate of the fresh command at `first_position`, earlier in the
    /// same batch, whose envelope the Warden does not hold yet (the Warden's
    /// `DuplicateAwaitingAnswer`): its output is a copy of that command's
    /// envelope, taken once the batch is evaluated. Not evaluated, no
    /// response, no write.
    DuplicateOf { first_position: CommandPosition },
}

/// A command the domain evaluates.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FreshCommand<C> {
    /// Must name the record and the slot the command sits in.
    pub position: CommandPosition,
    pub idempotency_key: String,
    pub command: C,
}

/// Every record of a batch, sealed, in offset order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EvaluatedBatch {
    pub partition: Partition,
    pub records: Vec<SealedRecord>,
}

/// One instance's outputs for one input record, and the effects to persist
/// with them in the same group commit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SealedRecord {
    pub offset: Offset,
    /// One envelope per command in index order (one dead letter for an
    /// undecodable record): what this instance persists, digests and would
    /// publish.
    pub outputs: Vec<Vec<u8>>,
    /// `record_digest(outputs)`: what the Clerk compares with peers.
    pub digest: RecordDigest,
    /// New entity states of the record's accepted commands, in log order.
    pub writes: Vec<StagedWrite>,
    /// One per fresh command of the record, in index order: the response the
    /// Warden stores for the command's idempotency key.
    pub responses: Vec<FreshResponse>,
}

/// A new entity state from an accepted command, staged until its group
/// commit is durable; the position tells the Ledger the state as of any
/// record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StagedWrite {
    pub key: EntityKey,
    pub state: Vec<u8>,
    pub position: CommandPosition,
}

/// The envelope a fresh command was answered with. It is the uncorrupted
/// envelope even under fault injection: Warden entries stay correct.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FreshResponse {
    pub position: CommandPosition,
    pub idempotency_key: String,
    /// `Accepted` or `Rejected`; never `DeadLettered`.
    pub verdict: EnvelopeVerdict,
    pub envelope: Vec<u8>,
}

/// Why the Arbiter stopped: the instance halts, and nothing of the batch is
/// sealed. `position` is the first failing command in log order.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("arbiter halted at {position}: {failure}")]
pub struct ArbiterHalt {
    pub position: CommandPosition,
    pub failure: DomainFailure,
}

/// How the domain failed (arbiter.DomainFailure).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DomainFailure {
    /// `touched_keys` or `evaluate` panicked. Never turned into a rejection:
    /// it may come from a fault of this instance only.
    #[error("the domain panicked: {message}")]
    Panicked { message: String },
    #[error("the rejection {reason:?} carries {writes} writes")]
    RejectionWithWrites { reason: &'static str, writes: usize },
    #[error("the outcome writes {key}, which touched_keys did not declare")]
    WriteOutsideTouchedKeys { key: EntityKey },
    #[error("evaluate read {key}, which touched_keys did not declare")]
    ReadOutsideTouchedKeys { key: EntityKey },
    #[error("the stored state of {} cannot be interpreted: {}", .0.key, .0.detail)]
    CorruptState(CorruptState),
}
