//! One peer connection's session state (`clerk.PeerLink`) and one peer's
//! dialer and view.

use std::collections::BTreeSet;

use protocol::peer::{LengthPrefixedDecoder, Nonce};
use protocol::position::{Offset, Partition};

use crate::config::{InstanceId, Millis};
use crate::effect::{LinkId, SuspicionReason};

/// Frames flow dialer -> acceptor only: each instance dials every peer for
/// its own traffic and accepts the peers' connections.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum LinkDirection {
    Outbound,
    Inbound,
}

/// A closed link is removed, so only the two live states exist.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum LinkStatus {
    Connecting,
    Established,
}

#[derive(Debug)]
pub(crate) struct PeerLink {
    pub(crate) direction: LinkDirection,
    /// Outbound: the dialled peer. Inbound: known once the hello is accepted.
    pub(crate) peer_id: Option<InstanceId>,
    pub(crate) status: LinkStatus,
    /// Inbound: drawn at accept. Outbound: taken from the challenge.
    pub(crate) session_nonce: Option<Nonce>,
    pub(crate) next_send_sequence: u64,
    pub(crate) last_recv_sequence: u64,
    pub(crate) queued_frames: u32,
    pub(crate) last_sent_at: Millis,
    pub(crate) opened_at: Millis,
    pub(crate) established_at: Option<Millis>,
    /// Own copies still to pack into frames, in (partition, offset) order.
    pub(crate) owed: BTreeSet<(Partition, Offset)>,
    pub(crate) decoder: LengthPrefixedDecoder,
}

impl PeerLink {
    pub(crate) fn new(
        direction: LinkDirection,
        peer_id: Option<InstanceId>,
        session_nonce: Option<Nonce>,
        max_frame_bytes: usize,
        now: Millis,
    ) -> Self {
        Self {
            direction,
            peer_id,
            status: LinkStatus::Connecting,
            session_nonce,
            next_send_sequence: 1,
            last_recv_sequence: 0,
            queued_frames: 0,
            last_sent_at: now,
            opened_at: now,
            established_at: None,
            owed: BTreeSet::new(),
            decoder: LengthPrefixedDecoder::new(max_frame_bytes),
        }
    }

    pub(crate) fn is_established_outbound(&self) -> bool {
        self.direction == LinkDirection::Outbound && self.status == LinkStatus::Established
    }

    pub(crate) fn view(&self, id: LinkId) -> LinkView {
        LinkView {
            id,
            direction: self.direction,
            peer_id: self.peer_id,
            status: self.status,
            next_send_sequence: self.next_send_sequence,
            last_recv_sequence: self.last_recv_sequence,
            queued_frames: self.queued_frames,
            owed_copies: self.owed.len(),
        }
    }
}

/// A link as the shell and `/health` see it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LinkView {
    pub id: LinkId,
    pub direction: LinkDirection,
    pub peer_id: Option<InstanceId>,
    pub status: LinkStatus,
    pub next_send_sequence: u64,
    pub last_recv_sequence: u64,
    pub queued_frames: u32,
    pub owed_copies: usize,
}

/// This instance's dialer towards one peer (`clerk.PeerDialer`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerDialer {
    pub backoff: Millis,
    pub next_attempt_at: Millis,
    pub link: Option<LinkId>,
    /// Closed links so far; spreads the jitter.
    pub attempts: u64,
}

/// This instance's view of one peer (`clerk.PeerView`). Suspicion is local
/// to the viewer and lasts until an operator clears it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerView {
    pub live: bool,
    pub last_authenticated_at: Millis,
    pub suspected: bool,
    pub suspicion_reason: Option<SuspicionReason>,
    /// The applied offsets of the peer's last heartbeat, index = partition.
    pub applied_offsets: Vec<Offset>,
}
