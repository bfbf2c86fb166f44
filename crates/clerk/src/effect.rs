//! What the core asks its shell to do: the output half of the
//! inputs-in, effects-out split.

use protocol::envelope::RecordDigest;
use protocol::peer::RejectionReason;
use protocol::position::{Offset, Partition};

use crate::config::InstanceId;

/// A connection the core asked for or accepted. Ids are never reused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LinkId(pub u64);

/// `clerk.SuspicionReason`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SuspicionReason {
    DivergentCopy,
    Equivocation,
    ContradictingPublication,
}

impl SuspicionReason {
    pub const ALL: [SuspicionReason; 3] = [
        Self::DivergentCopy,
        Self::Equivocation,
        Self::ContradictingPublication,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::DivergentCopy => "divergent_copy",
            Self::Equivocation => "equivocation",
            Self::ContradictingPublication => "contradicting_publication",
        }
    }
}

/// Why a connection was dropped before its handshake completed; the shell
/// counts it under `tribunal_clerk_frames_rejected_total{reason}` with
/// [`HandshakeRejection::as_str`] as the reason, like a rejected frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum HandshakeRejection {
    /// Still connecting `handshake_timeout` after it was opened.
    Timeout,
    /// Accepted while `max_inbound_connecting` inbound links were still
    /// connecting.
    TooManyHalfOpen,
}

impl HandshakeRejection {
    pub const ALL: [HandshakeRejection; 2] = [Self::Timeout, Self::TooManyHalfOpen];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Timeout => "handshake_timeout",
            Self::TooManyHalfOpen => "too_many_half_open",
        }
    }
}

/// `clerk.AlarmKind`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum AlarmKind {
    SplitBrain,
    SelfDivergence,
    ContradictingPublication,
}

/// An agreed record this instance is to write to the outcome topic. The
/// shell reads the record's stored outputs (which hash to `digest`) from the
/// Ledger to build the `protocol::records::Publication`, and also writes a
/// dead-letter record when `dead_letter_reason` is set.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PublishOrder {
    pub partition: Partition,
    pub offset: Offset,
    pub digest: RecordDigest,
    pub publisher_id: InstanceId,
    pub matching_copies: u32,
    pub dead_letter_reason: Option<String>,
}

/// One thing for the shell to do, in the order the core decided them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Effect {
    /// Open a TCP connection to `peer` for this outbound link; report bytes
    /// read with `Clerk::bytes_received`, failure with `Clerk::link_io_failed`.
    Dial {
        link: LinkId,
        peer: InstanceId,
    },
    /// Write these bytes (a challenge or a hello). Not counted in the
    /// link's queue.
    SendHandshake {
        link: LinkId,
        bytes: Vec<u8>,
    },
    /// Write this length-prefixed frame; report `Clerk::frame_flushed` once
    /// written.
    SendFrame {
        link: LinkId,
        bytes: Vec<u8>,
    },
    /// Drop the connection and any frames still queued for it.
    CloseLink {
        link: LinkId,
    },
    /// Count `tribunal_clerk_frames_rejected_total{reason}` and log.
    FrameRejected {
        link: LinkId,
        peer: Option<InstanceId>,
        reason: RejectionReason,
    },
    /// Count `tribunal_clerk_frames_rejected_total{reason}` and log. `link`
    /// is `None` for an inbound connection refused before it became a link
    /// (`Clerk::inbound_accepted` returned `None`); the shell drops it.
    HandshakeRejected {
        link: Option<LinkId>,
        peer: Option<InstanceId>,
        reason: HandshakeRejection,
    },
    /// Log, count `tribunal_clerk_peers_suspected_total{reason}`.
    PeerSuspected {
        peer: InstanceId,
        reason: SuspicionReason,
        partition: Partition,
        offset: Offset,
    },
    Publish(PublishOrder),
    Alarm {
        kind: AlarmKind,
        partition: Partition,
        offset: Offset,
    },
    /// Split brain: the Usher stops consuming the partition
    /// (`usher.StopConsumingHaltedPartition`).
    PartitionHalted {
        partition: Partition,
    },
    /// This instance's output differs from the agreement: recovery halts it.
    SelfDivergenceDetected {
        partition: Partition,
        offset: Offset,
    },
    /// To the Usher (`usher.SettleRecordOnPublication`).
    RecordSettled {
        partition: Partition,
        offset: Offset,
    },
    /// To the Ledger (`ledger.MarkOutputPublicationSeen`).
    OutcomePublicationSeen {
        partition: Partition,
        offset: Offset,
        outcome_offset: Offset,
    },
    /// `assign()` the outcome topic's partition at this offset.
    AssignOutcomeReader {
        partition: Partition,
        outcome_offset: Offset,
    },
}
