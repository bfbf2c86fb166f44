//! The Clerk's deterministic core: one instance's links, peer views,
//! agreement tables and publication schedules.
//!
//! The shell calls the input methods as things happen (bytes read, outputs
//! durable, publications read back, status changes), each with the current
//! monotonic time, then [`Clerk::step`], which runs the timers and hands
//! back every [`Effect`] decided since the last step, in order.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use protocol::envelope::RecordDigest;
use protocol::peer::{
    Challenge, CopyBatch, CopyEntry, Frame, FrameAuthenticator, FrameBody, FrameHeader, Heartbeat,
    Hello, InboundSession, KeyError, Nonce, PROTOCOL_VERSION, PeerStatus, RejectionReason,
    admit_frame, encode_length_prefixed,
};
use protocol::position::{Offset, Partition};

use crate::agreement::{
    AgreementTable, CopyOutcome, PeerCopyOutcome, PublicationOutcome, SlotStatus,
};
use crate::backoff::retry_after_close;
use crate::config::{ClerkConfig, ConfigError, InstanceId, InstanceSet, InstanceStatus, Millis};
use crate::effect::{AlarmKind, Effect, HandshakeRejection, LinkId, PublishOrder, SuspicionReason};
use crate::link::{LinkDirection, LinkStatus, LinkView, PeerDialer, PeerLink, PeerView};

/// A publication this instance will write once due (`clerk.ScheduledPublication`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Schedule {
    /// Live, unsuspected peers with a lower id whose copy matches the
    /// agreement: they publish first.
    pub ranked_ahead: InstanceSet,
    pub due_at: Millis,
    pub produced: bool,
}

impl Schedule {
    /// spec: clerk.RankCountsInstancesAhead
    pub fn rank(&self) -> u32 {
        self.ranked_ahead.len()
    }
}

/// This instance's own durable output for one input record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OwnOutput {
    pub partition: Partition,
    pub offset: Offset,
    pub digest: RecordDigest,
    pub dead_letter_reason: Option<String>,
}

/// A publication read back from the outcome topic.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OutcomeRecord {
    pub partition: Partition,
    pub offset: Offset,
    pub digest: RecordDigest,
    pub publisher_id: InstanceId,
    /// Where it sits on the outcome topic.
    pub outcome_offset: Offset,
}

/// Whether the core took an outcome record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OutcomeIntake {
    Taken,
    /// Beyond the partition's horizon: pause the outcome reader and offer
    /// the record again once consumption has moved on.
    Deferred {
        horizon: Offset,
    },
    /// Not an input partition of this cluster; counted, not taken.
    UnknownPartition,
}

/// Counters behind `/metrics`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ClerkCounters {
    pub frames_rejected: BTreeMap<RejectionReason, u64>,
    pub handshakes_rejected: BTreeMap<HandshakeRejection, u64>,
    pub peers_suspected: BTreeMap<SuspicionReason, u64>,
    pub copies_for_unknown_partitions: u64,
    pub outcomes_for_unknown_partitions: u64,
    pub frames_sent: u64,
    pub copies_sent: u64,
    pub frames_accepted: u64,
}

/// A state the spec forbids; found by [`Clerk::check_invariants`].
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum InvariantViolation {
    #[error("agreed slot {partition}/{offset} lacks required_copies matching copies")]
    AgreedSlotHasQuorum {
        partition: Partition,
        offset: Offset,
    },
    #[error("slot {partition}/{offset} holds two copies from one instance")]
    OneCopyPerInstancePerRecord {
        partition: Partition,
        offset: Offset,
    },
    #[error("schedule {partition}/{offset} is not for an agreed slot matching the own output")]
    OnlyMatchingInstancesSchedulePublication {
        partition: Partition,
        offset: Offset,
    },
    #[error("a self-suspected instance holds schedule {partition}/{offset}")]
    SuspectedInstanceNeverPublishes {
        partition: Partition,
        offset: Offset,
    },
    #[error("schedule {partition}/{offset} ranks suspected peer {peer} ahead")]
    SuspectedPeerNeverRankedAhead {
        partition: Partition,
        offset: Offset,
        peer: InstanceId,
    },
    #[error("schedule {partition}/{offset} on a halted partition")]
    NoPublicationOnHaltedPartition {
        partition: Partition,
        offset: Offset,
    },
    #[error("copy {partition}/{offset} owed without an advertised own output")]
    CopiesOwedOnlyForDurableOwnOutputs {
        partition: Partition,
        offset: Offset,
    },
    #[error("partition {partition} holds {unsettled} unsettled slots")]
    UnsettledTableBounded {
        partition: Partition,
        unsettled: usize,
    },
    #[error("link {link:?} has {queued} queued frames")]
    OutboundQueueBounded { link: LinkId, queued: u32 },
    #[error("copy {partition}/{offset} owed or schedule held before ready")]
    NotReady {
        partition: Partition,
        offset: Offset,
    },
}

/// One instance's Clerk.
#[derive(Debug)]
pub struct Clerk {
    config: ClerkConfig,
    authenticator: FrameAuthenticator,
    status: InstanceStatus,
    self_suspected: bool,
    views: BTreeMap<InstanceId, PeerView>,
    dialers: BTreeMap<InstanceId, PeerDialer>,
    links: BTreeMap<LinkId, PeerLink>,
    next_link_id: u64,
    tables: Vec<AgreementTable>,
    schedules: BTreeMap<(Partition, Offset), Schedule>,
    /// Unproduced schedules by due time.
    due: BTreeSet<(Millis, Partition, Offset)>,
    /// Published slots by publication time, for the retention prune.
    published: VecDeque<(Millis, Partition, Offset)>,
    counters: ClerkCounters,
    effects: Vec<Effect>,
}

impl Clerk {
    /// A Clerk at process start: every peer unknown and not live, a dialer
    /// per peer due at once, an empty table per input partition.
    ///
    /// spec: clerk.ClerkInitialisedAtProcessStart
    pub fn new(config: ClerkConfig, cluster_key: &[u8], now: Millis) -> Result<Self, ClerkError> {
        config.validate()?;
        let authenticator = FrameAuthenticator::new(config.cluster_id.clone(), cluster_key)?;
        let views = config
            .peer_ids()
            .map(|peer| {
                let view = PeerView {
                    live: false,
                    last_authenticated_at: now,
                    suspected: false,
                    suspicion_reason: None,
                    applied_offsets: Vec::new(),
                };
                (peer, view)
            })
            .collect();
        let dialers = config
            .peer_ids()
            .map(|peer| {
                let dialer = PeerDialer {
                    backoff: config.reconnect_initial_backoff,
                    next_attempt_at: now,
                    link: None,
                    attempts: 0,
                };
                (peer, dialer)
            })
            .collect();
        let tables = (0..config.input_partitions)
            .map(|partition| AgreementTable::new(partition, &config))
            .collect();
        Ok(Self {
            config,
            authenticator,
            status: InstanceStatus::Starting,
            self_suspected: false,
            views,
            dialers,
            links: BTreeMap::new(),
            next_link_id: 0,
            tables,
            schedules: BTreeMap::new(),
            due: BTreeSet::new(),
            published: VecDeque::new(),
            counters: ClerkCounters::default(),
            effects: Vec::new(),
        })
    }

    // ---------------------------------------------------------------
    // Queries
    // ---------------------------------------------------------------

    pub fn config(&self) -> &ClerkConfig {
        &self.config
    }

    pub fn status(&self) -> InstanceStatus {
        self.status
    }

    /// Whether this instance's own output differed from an agreement.
    pub fn self_suspected(&self) -> bool {
        self.self_suspected
    }

    pub fn peer_view(&self, peer: InstanceId) -> Option<&PeerView> {
        self.views.get(&peer)
    }

    pub fn dialer(&self, peer: InstanceId) -> Option<&PeerDialer> {
        self.dialers.get(&peer)
    }

    /// For `/health`: suspected peers and why, ascending by id.
    pub fn suspected_peers(&self) -> Vec<(InstanceId, SuspicionReason)> {
        self.views
            .iter()
            .filter(|(_, view)| view.suspected)
            .filter_map(|(&peer, view)| Some((peer, view.suspicion_reason?)))
            .collect()
    }

    /// Panics on a partition outside `0..input_partitions`.
    pub fn table(&self, partition: Partition) -> &AgreementTable {
        &self.tables[partition as usize]
    }

    pub fn schedule(&self, partition: Partition, offset: Offset) -> Option<&Schedule> {
        self.schedules.get(&(partition, offset))
    }

    /// Every publication schedule held, by (partition, offset).
    pub fn schedules(&self) -> impl Iterator<Item = ((Partition, Offset), &Schedule)> + '_ {
        self.schedules
            .iter()
            .map(|(&key, schedule)| (key, schedule))
    }

    pub fn link(&self, link: LinkId) -> Option<LinkView> {
        self.links.get(&link).map(|state| state.view(link))
    }

    pub fn links(&self) -> impl Iterator<Item = LinkView> + '_ {
        self.links.iter().map(|(&id, link)| link.view(id))
    }

    pub fn counters(&self) -> &ClerkCounters {
        &self.counters
    }

    // ---------------------------------------------------------------
    // Inputs: instance and progress
    // ---------------------------------------------------------------

    /// The instance's status changed (recovery decides; the Clerk follows).
    ///
    /// spec: clerk.BacklogAdvertisedOnReady, clerk.ReadinessReleasesAgreementsLearnedWhileRecovering,
    /// spec: clerk.HaltWithdrawsLinksAndSchedules
    pub fn set_status(&mut self, next: InstanceStatus, now: Millis) {
        if next == self.status {
            return;
        }
        assert!(
            self.status.may_become(next),
            "instance status {:?} cannot become {next:?}",
            self.status
        );
        self.status = next;
        match next {
            InstanceStatus::Ready => {
                for partition in 0..self.config.input_partitions {
                    let (backlog, agreed) = self.ready_work(partition);
                    backlog
                        .into_iter()
                        .for_each(|offset| self.own_copy_durable(partition, offset));
                    agreed
                        .into_iter()
                        .for_each(|offset| self.publication_eligible(partition, offset, now));
                }
            }
            InstanceStatus::Halted => {
                let open: Vec<LinkId> = self.links.keys().copied().collect();
                open.into_iter().for_each(|link| self.close_link(link, now));
                self.drop_schedules(|_| true);
            }
            InstanceStatus::Starting | InstanceStatus::Recovering => {}
        }
    }

    /// Offsets of collecting slots with an own output (to advertise) and of
    /// agreed slots (to schedule).
    fn ready_work(&self, partition: Partition) -> (Vec<Offset>, Vec<Offset>) {
        let table = &self.tables[partition as usize];
        let backlog = table
            .slots()
            .filter(|(_, slot)| {
                slot.status() == SlotStatus::Collecting && slot.own_digest().is_some()
            })
            .map(|(offset, _)| offset)
            .collect();
        let agreed = table
            .slots()
            .filter(|(_, slot)| slot.status() == SlotStatus::Agreed)
            .map(|(offset, _)| offset)
            .collect();
        (backlog, agreed)
    }

    /// The Usher consumed and the Ledger made durable up to these offsets.
    pub fn advance_progress(
        &mut self,
        partition: Partition,
        consumed_offset: Offset,
        applied_offset: Offset,
    ) {
        self.tables[partition as usize].advance_progress(consumed_offset, applied_offset);
    }

    /// The Ledger loaded a partition's watermark at start: the outcome
    /// reader resumes where the Ledger says every needed publication is.
    ///
    /// spec: clerk.OutcomeReaderResumesAtStoredPosition
    pub fn watermark_loaded(
        &mut self,
        partition: Partition,
        applied_offset: Offset,
        outcome_resume_offset: Offset,
    ) {
        self.tables[partition as usize].advance_progress(applied_offset, applied_offset);
        self.effects.push(Effect::AssignOutcomeReader {
            partition,
            outcome_offset: outcome_resume_offset,
        });
    }

    /// Outputs of a commit are durable (the synced write returned).
    ///
    /// spec: clerk.CommittedOutputEntersAgreement
    pub fn outputs_committed(&mut self, outputs: &[OwnOutput], now: Millis) {
        outputs
            .iter()
            .for_each(|output| self.own_output_durable(output, now));
    }

    /// Outputs durable before a restart and not yet seen published.
    ///
    /// spec: clerk.RetainedOutputsReenterAgreement
    pub fn retained_outputs_loaded(&mut self, outputs: &[OwnOutput], now: Millis) {
        outputs
            .iter()
            .for_each(|output| self.own_output_durable(output, now));
    }

    fn own_output_durable(&mut self, output: &OwnOutput, now: Millis) {
        let (partition, offset) = (output.partition, output.offset);
        assert!(
            partition < self.config.input_partitions,
            "own outputs are for input partitions"
        );
        let outcome = self.tables[partition as usize].record_own(
            offset,
            output.digest,
            output.dead_letter_reason.clone(),
        );
        self.copy_recorded(partition, offset, self.config.instance_id, outcome, now);
        self.own_copy_durable(partition, offset);
        self.publication_eligible(partition, offset, now);
        self.slot_changed(partition, offset, now);
    }

    /// spec: clerk.OwnCopyAdvertisedWhenReady, clerk.CopiesOwedOnlyForDurableOwnOutputs
    fn own_copy_durable(&mut self, partition: Partition, offset: Offset) {
        if !self.is_advertising() || !self.tables[partition as usize].advertise(offset) {
            return;
        }
        self.links
            .values_mut()
            .filter(|link| link.is_established_outbound())
            .for_each(|link| {
                link.owed.insert((partition, offset));
            });
    }

    fn is_advertising(&self) -> bool {
        self.status == InstanceStatus::Ready && !self.self_suspected
    }

    // ---------------------------------------------------------------
    // Inputs: connections
    // ---------------------------------------------------------------

    /// A peer connected to this instance; `nonce` is fresh randomness from
    /// the shell. `None`: refuse the connection (halted, or too many
    /// inbound links still connecting).
    ///
    /// spec: clerk.AcceptorIssuesChallenge, clerk.ExcessHalfOpenLinkRefused
    pub fn inbound_accepted(&mut self, nonce: Nonce, now: Millis) -> Option<LinkId> {
        if self.status == InstanceStatus::Halted {
            return None;
        }
        let half_open = self
            .links
            .values()
            .filter(|link| {
                link.direction == LinkDirection::Inbound && link.status == LinkStatus::Connecting
            })
            .count();
        if half_open >= self.config.max_inbound_connecting as usize {
            self.count_handshake_rejection(None, None, HandshakeRejection::TooManyHalfOpen);
            return None;
        }
        let link = self.open_link(LinkDirection::Inbound, None, Some(nonce), now);
        let mut bytes = Vec::new();
        encode_length_prefixed(
            &self.authenticator.challenge(self.config.instance_id, nonce),
            &mut bytes,
        );
        self.effects.push(Effect::SendHandshake { link, bytes });
        Some(link)
    }

    fn open_link(
        &mut self,
        direction: LinkDirection,
        peer: Option<InstanceId>,
        nonce: Option<Nonce>,
        now: Millis,
    ) -> LinkId {
        let id = LinkId(self.next_link_id);
        self.next_link_id += 1;
        let link = PeerLink::new(
            direction,
            peer,
            nonce,
            self.config.max_peer_frame_bytes,
            now,
        );
        self.links.insert(id, link);
        id
    }

    /// Bytes read from a connection.
    ///
    /// spec: clerk.OutOfProtocolFrameRejected
    pub fn bytes_received(&mut self, link: LinkId, mut bytes: &[u8], now: Millis) {
        loop {
            let Some(state) = self.links.get_mut(&link) else {
                return;
            };
            match (state.direction, state.status) {
                (LinkDirection::Outbound, LinkStatus::Connecting) => {
                    match state.decoder.decode_next::<Challenge>(&mut bytes) {
                        Err(reason) => return self.reject(link, reason, now),
                        Ok(None) => return,
                        Ok(Some(challenge)) => self.challenge_received(link, challenge, now),
                    }
                }
                // Nothing flows acceptor -> dialer after the challenge.
                (LinkDirection::Outbound, LinkStatus::Established) => {
                    if !bytes.is_empty() {
                        self.reject(link, RejectionReason::ProtocolViolation, now);
                    }
                    return;
                }
                (LinkDirection::Inbound, _) => match state.decoder.decode_next::<Frame>(&mut bytes)
                {
                    Err(reason) => return self.reject(link, reason, now),
                    Ok(None) => return,
                    Ok(Some(frame)) => self.frame_received(link, frame, now),
                },
            }
        }
    }

    /// The acceptor's challenge arrived: answer with the hello bound to its
    /// nonce, and owe the peer every own copy still collecting.
    ///
    /// spec: clerk.DialerSendsHelloOnChallenge, clerk.MismatchedChallengeRejected, clerk.ReconnectResendsUnagreedCopies
    fn challenge_received(&mut self, link: LinkId, challenge: Challenge, now: Millis) {
        let state = self
            .links
            .get_mut(&link)
            .expect("the caller found the link");
        let peer = state.peer_id.expect("outbound links know their peer");
        let rejection = if challenge.cluster_id != self.authenticator.cluster_id() {
            Some(RejectionReason::WrongCluster)
        } else if challenge.acceptor_id != peer {
            Some(RejectionReason::UnknownSender)
        } else {
            None
        };
        let nonce = Nonce::try_from(challenge.nonce.as_slice());
        let nonce = match (rejection, nonce) {
            (Some(reason), _) => return self.reject(link, reason, now),
            (None, Err(_)) => return self.reject(link, RejectionReason::Undecodable, now),
            (None, Ok(nonce)) => nonce,
        };
        state.session_nonce = Some(nonce);
        state.status = LinkStatus::Established;
        state.established_at = Some(now);
        state.last_sent_at = now;
        let hello = self.authenticator.seal(
            FrameHeader {
                sender_id: self.config.instance_id,
                receiver_id: peer,
                session_nonce: nonce,
                sequence: 1,
            },
            &FrameBody::Hello(Hello {
                protocol_version: PROTOCOL_VERSION,
            }),
        );
        state.next_send_sequence = 2;
        let mut bytes = Vec::new();
        encode_length_prefixed(&hello, &mut bytes);
        self.effects.push(Effect::SendHandshake { link, bytes });
        if self.is_advertising() {
            let unagreed: Vec<(Partition, Offset)> = self
                .tables
                .iter()
                .flat_map(|table| {
                    table
                        .slots()
                        .filter(|(_, slot)| {
                            slot.status() == SlotStatus::Collecting && slot.advertised()
                        })
                        .map(|(offset, _)| (table.partition(), offset))
                })
                .collect();
            let state = self.links.get_mut(&link).expect("still open");
            state.owed.extend(unagreed);
        }
    }

    /// A whole frame arrived on an inbound link.
    ///
    /// spec: clerk.OutOfProtocolFrameRejected
    fn frame_received(&mut self, link: LinkId, frame: Frame, now: Millis) {
        let state = &self.links[&link];
        let session = InboundSession {
            own_id: self.config.instance_id,
            instance_count: self.config.instance_count,
            peer_id: state.peer_id,
            session_nonce: state
                .session_nonce
                .expect("inbound links draw their nonce at accept"),
            last_recv_sequence: state.last_recv_sequence,
        };
        let body = match admit_frame(&self.authenticator, &frame, &session) {
            Ok(body) => body,
            Err(reason) => return self.reject(link, reason, now),
        };
        let fits_state = match (state.status, &body) {
            (LinkStatus::Connecting, FrameBody::Hello(hello)) => {
                hello.protocol_version == PROTOCOL_VERSION
            }
            (LinkStatus::Established, FrameBody::Copies(_) | FrameBody::Heartbeat(_)) => true,
            (LinkStatus::Connecting, _) | (LinkStatus::Established, FrameBody::Hello(_)) => false,
        };
        if !fits_state || frame.receiver_id != self.config.instance_id {
            return self.reject(link, RejectionReason::ProtocolViolation, now);
        }
        self.counters.frames_accepted += 1;
        match body {
            FrameBody::Hello(_) => self.hello_accepted(link, &frame, now),
            FrameBody::Copies(batch) => {
                self.session_frame_accepted(link, &frame, now);
                batch
                    .iter()
                    .for_each(|entry| self.peer_copy_arrived(frame.sender_id, entry, now));
            }
            FrameBody::Heartbeat(heartbeat) => {
                self.session_frame_accepted(link, &frame, now);
                let view = self
                    .views
                    .get_mut(&frame.sender_id)
                    .expect("admitted senders are peers");
                view.applied_offsets = heartbeat.applied_offsets;
                view.applied_offsets
                    .truncate(self.config.input_partitions as usize);
            }
        }
    }

    /// A hello never refreshes liveness: starting and recovering instances
    /// send hellos too.
    ///
    /// spec: clerk.HelloEstablishesInboundSession
    fn hello_accepted(&mut self, link: LinkId, frame: &Frame, now: Millis) {
        let older: Vec<LinkId> = self
            .links
            .iter()
            .filter(|&(&id, other)| {
                id != link
                    && other.direction == LinkDirection::Inbound
                    && other.status == LinkStatus::Established
                    && other.peer_id == Some(frame.sender_id)
            })
            .map(|(&id, _)| id)
            .collect();
        older.into_iter().for_each(|id| self.close_link(id, now));
        let state = self
            .links
            .get_mut(&link)
            .expect("the caller found the link");
        state.peer_id = Some(frame.sender_id);
        state.last_recv_sequence = frame.sequence;
        state.status = LinkStatus::Established;
        state.established_at = Some(now);
    }

    /// spec: clerk.SessionFrameAccepted
    fn session_frame_accepted(&mut self, link: LinkId, frame: &Frame, now: Millis) {
        let state = self
            .links
            .get_mut(&link)
            .expect("the caller found the link");
        state.last_recv_sequence = frame.sequence;
        let view = self
            .views
            .get_mut(&frame.sender_id)
            .expect("admitted senders are peers");
        view.last_authenticated_at = now;
        view.live = true;
    }

    /// The connection failed (connect, read or write).
    ///
    /// spec: clerk.LinkIoFailureClosesLink
    pub fn link_io_failed(&mut self, link: LinkId, now: Millis) {
        if self.links.contains_key(&link) {
            self.close_link(link, now);
        }
    }

    /// One `SendFrame` of this link was written to the socket.
    pub fn frame_flushed(&mut self, link: LinkId) {
        if let Some(state) = self.links.get_mut(&link) {
            assert!(state.queued_frames > 0, "a flush for a frame never queued");
            state.queued_frames -= 1;
        }
    }

    /// spec: clerk.ForgedFrameRejected, clerk.OversizedFrameRejected, clerk.UndecodableFrameRejected
    fn reject(&mut self, link: LinkId, reason: RejectionReason, now: Millis) {
        *self.counters.frames_rejected.entry(reason).or_default() += 1;
        let peer = self.links.get(&link).and_then(|state| state.peer_id);
        self.effects
            .push(Effect::FrameRejected { link, peer, reason });
        self.close_link(link, now);
    }

    fn count_handshake_rejection(
        &mut self,
        link: Option<LinkId>,
        peer: Option<InstanceId>,
        reason: HandshakeRejection,
    ) {
        *self.counters.handshakes_rejected.entry(reason).or_default() += 1;
        self.effects
            .push(Effect::HandshakeRejected { link, peer, reason });
    }

    /// Closing drops the link with its queue count and owed copies; an
    /// outbound link's dialer backs off before the next attempt.
    ///
    /// spec: clerk.ClosedLinkReleasesOwedCopies
    fn close_link(&mut self, link: LinkId, now: Millis) {
        let state = self.links.remove(&link).expect("closing an open link");
        self.effects.push(Effect::CloseLink { link });
        if state.direction == LinkDirection::Inbound {
            return;
        }
        let peer = state.peer_id.expect("outbound links know their peer");
        let dialer = self.dialers.get_mut(&peer).expect("a dialer per peer");
        let retry = retry_after_close(
            &self.config,
            peer,
            dialer.backoff,
            dialer.attempts,
            state.established_at,
            now,
        );
        dialer.link = None;
        dialer.attempts += 1;
        dialer.backoff = retry.backoff;
        dialer.next_attempt_at = retry.next_attempt_at;
    }

    // ---------------------------------------------------------------
    // Peers' copies and suspicion
    // ---------------------------------------------------------------

    fn peer_copy_arrived(&mut self, sender: InstanceId, entry: CopyEntry, now: Millis) {
        let (partition, offset) = (entry.partition, entry.offset);
        if partition >= self.config.input_partitions {
            self.counters.copies_for_unknown_partitions += 1;
            return;
        }
        let suspected = self.views[&sender].suspected;
        match self.tables[partition as usize].record_peer(sender, offset, entry.digest, suspected) {
            PeerCopyOutcome::Recorded(outcome) => {
                self.copy_recorded(partition, offset, sender, outcome, now);
                self.slot_changed(partition, offset, now);
            }
            PeerCopyOutcome::Equivocation => {
                self.raise_suspicion(sender, SuspicionReason::Equivocation, partition, offset);
            }
            PeerCopyOutcome::Repeated
            | PeerCopyOutcome::SuspectedSenderDropped
            | PeerCopyOutcome::BeyondLookaheadDropped
            | PeerCopyOutcome::SettledRecordIgnored => {}
        }
    }

    /// What a recorded copy means beyond its slot.
    ///
    /// spec: clerk.RecordAgreedAtRequiredCopies, clerk.DivergentCopySuspectsSender, clerk.SecondQuorumIsSplitBrain
    fn copy_recorded(
        &mut self,
        partition: Partition,
        offset: Offset,
        sender: InstanceId,
        outcome: CopyOutcome,
        now: Millis,
    ) {
        match outcome {
            CopyOutcome::Noted => {}
            CopyOutcome::Agreed { divergent } => {
                for peer in divergent.iter() {
                    self.raise_suspicion(peer, SuspicionReason::DivergentCopy, partition, offset);
                }
                self.publication_eligible(partition, offset, now);
            }
            CopyOutcome::Divergent => {
                self.raise_suspicion(sender, SuspicionReason::DivergentCopy, partition, offset);
            }
            CopyOutcome::SplitBrain => {
                self.drop_schedules(|(p, _)| p == partition);
                self.effects.push(Effect::Alarm {
                    kind: AlarmKind::SplitBrain,
                    partition,
                    offset,
                });
                self.effects.push(Effect::PartitionHalted { partition });
            }
        }
    }

    /// spec: clerk.PeerMarkedSuspected, clerk.SuspectedPeerNeverRankedAhead
    fn raise_suspicion(
        &mut self,
        peer: InstanceId,
        reason: SuspicionReason,
        partition: Partition,
        offset: Offset,
    ) {
        let Some(view) = self.views.get_mut(&peer) else {
            return;
        };
        view.suspicion_reason = Some(reason);
        if view.suspected {
            return;
        }
        view.suspected = true;
        *self.counters.peers_suspected.entry(reason).or_default() += 1;
        self.effects.push(Effect::PeerSuspected {
            peer,
            reason,
            partition,
            offset,
        });
        self.tables
            .iter_mut()
            .for_each(|table| table.forget_copies_from(peer));
        let step = self.config.publish_step_delay;
        for (&(p, o), schedule) in self.schedules.iter_mut() {
            if !schedule.ranked_ahead.remove(peer) {
                continue;
            }
            let due_at = schedule.due_at.saturating_sub(step);
            if !schedule.produced {
                self.due.remove(&(schedule.due_at, p, o));
                self.due.insert((due_at, p, o));
            }
            schedule.due_at = due_at;
        }
    }

    /// An operator cleared a peer's suspicion; `false` if it was not suspected.
    ///
    /// spec: clerk.OperatorClearsSuspicion
    pub fn clear_peer_suspicion(&mut self, peer: InstanceId) -> bool {
        match self.views.get_mut(&peer) {
            Some(view) if view.suspected => {
                view.suspected = false;
                view.suspicion_reason = None;
                true
            }
            _ => false,
        }
    }

    /// Conditions of a slot that rules watch for (`self_diverged`,
    /// `settled_with_own_output`, `prune_due`), checked after every change.
    ///
    /// spec: clerk.OwnOutputDivergesFromAgreement, clerk.SettlementReportedToUsher, clerk.PublishedSlotPruned
    fn slot_changed(&mut self, partition: Partition, offset: Offset, now: Millis) {
        let retention = self.config.published_slot_retention;
        let conditions = self.tables[partition as usize].watch(offset, retention, now);
        if conditions.own_diverged && !self.self_suspected {
            self.self_suspected = true;
            self.drop_schedules(|_| true);
            self.effects.push(Effect::Alarm {
                kind: AlarmKind::SelfDivergence,
                partition,
                offset,
            });
            self.effects
                .push(Effect::SelfDivergenceDetected { partition, offset });
        }
        if conditions.newly_settled {
            self.effects
                .push(Effect::RecordSettled { partition, offset });
        }
        if conditions.pruned {
            self.links.values_mut().for_each(|link| {
                link.owed.remove(&(partition, offset));
            });
        }
    }

    // ---------------------------------------------------------------
    // Publication
    // ---------------------------------------------------------------

    /// spec: clerk.PublicationScheduledWhenEligible, clerk.OnlyMatchingInstancesSchedulePublication,
    /// spec: clerk.SuspectedInstanceNeverPublishes, clerk.NoPublicationOnHaltedPartition
    fn publication_eligible(&mut self, partition: Partition, offset: Offset, now: Millis) {
        let table = &self.tables[partition as usize];
        let Some(slot) = table.slot(offset) else {
            return;
        };
        let eligible = slot.status() == SlotStatus::Agreed
            && slot.own_digest().is_some()
            && slot.own_digest() == slot.agreed_digest()
            && self.is_advertising()
            && !table.publication_halted()
            && !self.schedules.contains_key(&(partition, offset));
        if !eligible {
            return;
        }
        let ranked_ahead: InstanceSet = self
            .views
            .range(..self.config.instance_id)
            .filter(|(_, view)| view.live && !view.suspected)
            .filter(|&(&peer, _)| {
                // A copy not yet here does not rule the peer out: it is
                // live and about to agree.
                slot.copy_from(peer).is_none() || slot.copy_from(peer) == slot.agreed_digest()
            })
            .map(|(&peer, _)| peer)
            .collect();
        let schedule = Schedule {
            ranked_ahead,
            due_at: now
                .saturating_add(u64::from(ranked_ahead.len()) * self.config.publish_step_delay),
            produced: false,
        };
        self.due.insert((schedule.due_at, partition, offset));
        self.schedules.insert((partition, offset), schedule);
    }

    /// Publishes every schedule that fell due: the primary (rank 0) at once,
    /// a backup after its rank's delay unless the publication was read back
    /// meanwhile (which removed the schedule).
    ///
    /// spec: clerk.PrimaryPublishesAtOnce, clerk.BackupPublishesAfterStepDelay
    fn publish_due(&mut self, now: Millis) {
        while let Some(&(due_at, partition, offset)) = self.due.first() {
            if due_at > now {
                break;
            }
            self.due.pop_first();
            self.publish(partition, offset);
        }
    }

    /// The core's half of `clerk.AgreedOutputsWrittenToOutcomeTopic`: only
    /// an agreed digest, only with a quorum, only the own matching output.
    ///
    /// spec: clerk.NeverPublishWithoutQuorum, clerk.PublishedOutputMatchesAgreedDigest
    fn publish(&mut self, partition: Partition, offset: Offset) {
        let table = &self.tables[partition as usize];
        let slot = table
            .slot(offset)
            .expect("schedules are withdrawn with their slots");
        let agreed = slot.agreed_digest().expect("scheduled slots are agreed");
        assert_eq!(
            slot.status(),
            SlotStatus::Agreed,
            "scheduled slots are agreed"
        );
        assert_eq!(
            slot.own_digest(),
            Some(agreed),
            "only a matching instance publishes"
        );
        assert!(self.is_advertising() && !table.publication_halted());
        let matching_copies = slot.matching_count(agreed);
        assert!(
            matching_copies >= self.config.required_copies,
            "never publish without required_copies matching copies"
        );
        let schedule = self
            .schedules
            .get_mut(&(partition, offset))
            .expect("due entries have schedules");
        assert!(!schedule.produced);
        schedule.produced = true;
        self.effects.push(Effect::Publish(PublishOrder {
            partition,
            offset,
            digest: agreed,
            publisher_id: self.config.instance_id,
            matching_copies,
            dead_letter_reason: slot.dead_letter_reason().map(str::to_owned),
        }));
    }

    /// Producing a `Publish` failed: try again after a step delay.
    ///
    /// spec: clerk.FailedPublicationRetried
    pub fn publication_failed(&mut self, partition: Partition, offset: Offset, now: Millis) {
        let agreed = self
            .tables
            .get(partition as usize)
            .and_then(|table| table.slot(offset))
            .is_some_and(|slot| slot.status() == SlotStatus::Agreed);
        let Some(schedule) = self.schedules.get_mut(&(partition, offset)) else {
            return;
        };
        if schedule.produced && agreed {
            schedule.produced = false;
            schedule.due_at = now.saturating_add(self.config.publish_step_delay);
            self.due.insert((schedule.due_at, partition, offset));
        }
    }

    /// A publication was read from the outcome topic (every instance reads
    /// every publication, in outcome-topic order).
    ///
    /// spec: clerk.PublicationReportedToLedger, clerk.ContradictingPublicationRaisesAlarm,
    /// spec: clerk.PublicationSettlesAgreedSlot, clerk.PublicationTeachesUnsettledSlot
    pub fn outcome_consumed(&mut self, record: OutcomeRecord, now: Millis) -> OutcomeIntake {
        let OutcomeRecord {
            partition, offset, ..
        } = record;
        let Some(table) = self.tables.get_mut(partition as usize) else {
            self.counters.outcomes_for_unknown_partitions += 1;
            return OutcomeIntake::UnknownPartition;
        };
        let outcome = table.publication(offset, record.digest, now);
        if outcome == PublicationOutcome::BeyondHorizon {
            return OutcomeIntake::Deferred {
                horizon: table.horizon(),
            };
        }
        self.effects.push(Effect::OutcomePublicationSeen {
            partition,
            offset,
            outcome_offset: record.outcome_offset,
        });
        match outcome {
            PublicationOutcome::Settled | PublicationOutcome::Learned => {
                if let Some(schedule) = self.schedules.remove(&(partition, offset)) {
                    self.due.remove(&(schedule.due_at, partition, offset));
                }
                self.published.push_back((now, partition, offset));
            }
            PublicationOutcome::Contradicting => {
                self.effects.push(Effect::Alarm {
                    kind: AlarmKind::ContradictingPublication,
                    partition,
                    offset,
                });
                self.raise_suspicion(
                    record.publisher_id,
                    SuspicionReason::ContradictingPublication,
                    partition,
                    offset,
                );
            }
            PublicationOutcome::Ignored
            | PublicationOutcome::SplitSlot
            | PublicationOutcome::BeyondHorizon => {}
        }
        self.slot_changed(partition, offset, now);
        OutcomeIntake::Taken
    }

    fn drop_schedules(&mut self, mut matches: impl FnMut((Partition, Offset)) -> bool) {
        let due = &mut self.due;
        self.schedules.retain(|&key, schedule| {
            let dropped = matches(key);
            if dropped && !schedule.produced {
                due.remove(&(schedule.due_at, key.0, key.1));
            }
            !dropped
        });
    }

    // ---------------------------------------------------------------
    // Timers and sending
    // ---------------------------------------------------------------

    /// The earliest time at which [`Clerk::step`] has timed work: a peer's
    /// liveness lapsing, a handshake timing out, a dialer due, a heartbeat
    /// due, a publication due, a published slot's retention ending. `None`
    /// when only a new input can give it work. A shell that steps after
    /// every input and again at this deadline misses nothing, so it needs no
    /// fixed tick.
    ///
    /// Copies owed to a link are not timed: they wait only for queue room,
    /// which a `frame_flushed` input (followed by a step) gives back.
    pub fn next_deadline(&self) -> Option<Millis> {
        let liveness = self.views.values().filter(|view| view.live).map(|view| {
            view.last_authenticated_at
                .saturating_add(self.config.peer_liveness_timeout)
        });
        let handshakes = self
            .links
            .values()
            .filter(|link| link.status == LinkStatus::Connecting)
            .map(|link| link.opened_at.saturating_add(self.config.handshake_timeout));
        let dials = self
            .dialers
            .values()
            .filter(|dialer| self.status != InstanceStatus::Halted && dialer.link.is_none())
            .map(|dialer| dialer.next_attempt_at);
        let heartbeats = self
            .links
            .values()
            .filter(|link| {
                self.is_advertising()
                    && link.is_established_outbound()
                    && link.queued_frames < self.config.max_peer_queue_frames
            })
            .map(|link| {
                link.last_sent_at
                    .saturating_add(self.config.heartbeat_interval)
            });
        let publication = self.due.first().map(|&(due_at, _, _)| due_at);
        let prune = self.published.front().map(|&(published_at, _, _)| {
            published_at.saturating_add(self.config.published_slot_retention)
        });
        liveness
            .chain(handshakes)
            .chain(dials)
            .chain(heartbeats)
            .chain(publication)
            .chain(prune)
            .min()
    }

    /// Runs everything time makes due and returns the effects decided since
    /// the last step.
    pub fn step(&mut self, now: Millis) -> Vec<Effect> {
        self.lapse_liveness(now);
        self.time_out_handshakes(now);
        self.dial(now);
        self.pack_copies(now);
        self.send_heartbeats(now);
        self.publish_due(now);
        self.prune_retained(now);
        std::mem::take(&mut self.effects)
    }

    /// spec: clerk.PeerLivenessLapses
    fn lapse_liveness(&mut self, now: Millis) {
        let timeout = self.config.peer_liveness_timeout;
        self.views
            .values_mut()
            .filter(|view| view.live && view.last_authenticated_at.saturating_add(timeout) <= now)
            .for_each(|view| view.live = false);
    }

    /// Runs before dialling so a timed-out outbound link backs off first.
    ///
    /// spec: clerk.HandshakeTimesOut
    fn time_out_handshakes(&mut self, now: Millis) {
        let timeout = self.config.handshake_timeout;
        let expired: Vec<(LinkId, Option<InstanceId>)> = self
            .links
            .iter()
            .filter(|(_, link)| {
                link.status == LinkStatus::Connecting
                    && link.opened_at.saturating_add(timeout) <= now
            })
            .map(|(&id, link)| (id, link.peer_id))
            .collect();
        for (link, peer) in expired {
            self.count_handshake_rejection(Some(link), peer, HandshakeRejection::Timeout);
            self.close_link(link, now);
        }
    }

    /// The state half of `clerk.DialerConnects`; the shell connects.
    fn dial(&mut self, now: Millis) {
        if self.status == InstanceStatus::Halted {
            return;
        }
        let due: Vec<InstanceId> = self
            .dialers
            .iter()
            .filter(|(_, dialer)| dialer.link.is_none() && dialer.next_attempt_at <= now)
            .map(|(&peer, _)| peer)
            .collect();
        for peer in due {
            let link = self.open_link(LinkDirection::Outbound, Some(peer), None, now);
            self.dialers.get_mut(&peer).expect("a dialer per peer").link = Some(link);
            self.effects.push(Effect::Dial { link, peer });
        }
    }

    /// Packs owed copies, many per frame in (partition, offset) order, while
    /// the link's queue has room; the rest wait in the owed set.
    ///
    /// spec: clerk.CopiesPackedIntoFrame, clerk.OutboundQueueBounded
    fn pack_copies(&mut self, now: Millis) {
        let per_frame = self.config.copies_per_frame();
        let max_queued = self.config.max_peer_queue_frames;
        let mut sender = FrameSender {
            authenticator: &self.authenticator,
            own_id: self.config.instance_id,
            counters: &mut self.counters,
            effects: &mut self.effects,
        };
        for (&link, state) in self.links.iter_mut() {
            if !state.is_established_outbound() {
                continue;
            }
            while !state.owed.is_empty() && state.queued_frames < max_queued {
                let mut batch = CopyBatch::with_capacity(per_frame.min(state.owed.len()));
                while batch.len() < per_frame {
                    let Some((partition, offset)) = state.owed.pop_first() else {
                        break;
                    };
                    let slot = self.tables[partition as usize]
                        .slot(offset)
                        .expect("owed copies leave with their slot");
                    assert!(slot.advertised(), "only advertised copies are owed");
                    let digest = slot.own_digest().expect("advertised copies are durable");
                    batch.push(CopyEntry {
                        partition,
                        offset,
                        digest,
                    });
                }
                sender.counters.copies_sent += batch.len() as u64;
                sender.send(link, state, &FrameBody::Copies(batch), now);
            }
        }
    }

    /// spec: clerk.HeartbeatSentWhileReady
    fn send_heartbeats(&mut self, now: Millis) {
        if !self.is_advertising() {
            return;
        }
        let interval = self.config.heartbeat_interval;
        let applied_offsets: Vec<Offset> = self
            .tables
            .iter()
            .map(AgreementTable::applied_offset)
            .collect();
        let mut sender = FrameSender {
            authenticator: &self.authenticator,
            own_id: self.config.instance_id,
            counters: &mut self.counters,
            effects: &mut self.effects,
        };
        for (&link, state) in self.links.iter_mut() {
            let due = state.is_established_outbound()
                && state.last_sent_at.saturating_add(interval) <= now
                && state.queued_frames < self.config.max_peer_queue_frames;
            if !due {
                continue;
            }
            let body = FrameBody::Heartbeat(Heartbeat {
                status: PeerStatus::Ready as i32,
                applied_offsets: applied_offsets.clone(),
            });
            sender.send(link, state, &body, now);
        }
    }

    fn prune_retained(&mut self, now: Millis) {
        let retention = self.config.published_slot_retention;
        while let Some(&(published_at, partition, offset)) = self.published.front() {
            if published_at.saturating_add(retention) > now {
                break;
            }
            self.published.pop_front();
            self.slot_changed(partition, offset, now);
        }
    }

    // ---------------------------------------------------------------
    // Invariants
    // ---------------------------------------------------------------

    /// Checks the state invariants of `clerk.allium` (and recovery's
    /// readiness gate) over the whole core. Tests call it after every step;
    /// the shell may call it in checked builds.
    ///
    /// spec: clerk.AgreedSlotHasQuorum, clerk.OneCopyPerInstancePerRecord, clerk.OnlyMatchingInstancesSchedulePublication
    /// spec: clerk.SuspectedInstanceNeverPublishes, clerk.SuspectedPeerNeverRankedAhead, clerk.NoPublicationOnHaltedPartition
    /// spec: clerk.CopiesOwedOnlyForDurableOwnOutputs, clerk.UnsettledTableBounded, clerk.OutboundQueueBounded
    pub fn check_invariants(&self) -> Result<(), InvariantViolation> {
        let required = self.config.required_copies;
        for table in &self.tables {
            let partition = table.partition();
            for (offset, slot) in table.slots() {
                if slot.status() == SlotStatus::Agreed
                    && slot
                        .agreed_digest()
                        .is_none_or(|d| slot.matching_count(d) < required)
                {
                    return Err(InvariantViolation::AgreedSlotHasQuorum { partition, offset });
                }
                let senders: InstanceSet = slot.copies().iter().map(|&(from, _)| from).collect();
                if senders.len() as usize != slot.copies().len() {
                    return Err(InvariantViolation::OneCopyPerInstancePerRecord {
                        partition,
                        offset,
                    });
                }
            }
            let bound = self.config.max_unagreed_records + self.config.copy_lookahead;
            let unsettled = table.unsettled_count();
            if unsettled as u64 > bound {
                return Err(InvariantViolation::UnsettledTableBounded {
                    partition,
                    unsettled,
                });
            }
        }
        for (&(partition, offset), schedule) in &self.schedules {
            let table = &self.tables[partition as usize];
            let matching = table.slot(offset).is_some_and(|slot| {
                slot.status() == SlotStatus::Agreed
                    && slot.own_digest().is_some()
                    && slot.own_digest() == slot.agreed_digest()
            });
            if !matching {
                return Err(
                    InvariantViolation::OnlyMatchingInstancesSchedulePublication {
                        partition,
                        offset,
                    },
                );
            }
            if self.self_suspected {
                return Err(InvariantViolation::SuspectedInstanceNeverPublishes {
                    partition,
                    offset,
                });
            }
            if let Some(peer) = schedule
                .ranked_ahead
                .iter()
                .find(|peer| self.views[peer].suspected)
            {
                return Err(InvariantViolation::SuspectedPeerNeverRankedAhead {
                    partition,
                    offset,
                    peer,
                });
            }
            if table.publication_halted() {
                return Err(InvariantViolation::NoPublicationOnHaltedPartition {
                    partition,
                    offset,
                });
            }
            if self.status != InstanceStatus::Ready {
                return Err(InvariantViolation::NotReady { partition, offset });
            }
        }
        for (&link, state) in &self.links {
            if state.queued_frames > self.config.max_peer_queue_frames {
                return Err(InvariantViolation::OutboundQueueBounded {
                    link,
                    queued: state.queued_frames,
                });
            }
            for &(partition, offset) in &state.owed {
                let durable = self.tables[partition as usize]
                    .slot(offset)
                    .is_some_and(|slot| slot.own_digest().is_some() && slot.advertised());
                if !durable {
                    return Err(InvariantViolation::CopiesOwedOnlyForDurableOwnOutputs {
                        partition,
                        offset,
                    });
                }
                if self.status != InstanceStatus::Ready {
                    return Err(InvariantViolation::NotReady { partition, offset });
                }
            }
        }
        Ok(())
    }
}

/// The Clerk's parts that sending a frame touches, borrowed apart from its
/// links so a loop over the links can send.
struct FrameSender<'a> {
    authenticator: &'a FrameAuthenticator,
    own_id: InstanceId,
    counters: &'a mut ClerkCounters,
    effects: &'a mut Vec<Effect>,
}

impl FrameSender<'_> {
    /// Seals `body` as the link's next frame, counts it in the link's queue
    /// and asks the shell to write it.
    fn send(&mut self, id: LinkId, link: &mut PeerLink, body: &FrameBody, now: Millis) {
        let frame = self.authenticator.seal(
            FrameHeader {
                sender_id: self.own_id,
                receiver_id: link.peer_id.expect("outbound links know their peer"),
                session_nonce: link.session_nonce.expect("established links have a nonce"),
                sequence: link.next_send_sequence,
            },
            body,
        );
        link.next_send_sequence += 1;
        link.queued_frames += 1;
        link.last_sent_at = now;
        let mut bytes = Vec::new();
        encode_length_prefixed(&frame, &mut bytes);
        self.counters.frames_sent += 1;
        self.effects.push(Effect::SendFrame { link: id, bytes });
    }
}

/// Why a Clerk could not be built.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ClerkError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("cluster key: {0}")]
    Key(#[from] KeyError),
}
