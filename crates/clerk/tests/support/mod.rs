//! Drivers for the Clerk's tests: fake peers speaking the wire protocol,
//! and an in-memory cluster of Clerks.

#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use clerk::{
    Clerk, ClerkConfig, Effect, InstanceId, InstanceStatus, LinkDirection, LinkId, LinkStatus,
    Millis, OutcomeIntake, OutcomeRecord, OwnOutput, PublishOrder,
};
use prost::Message;
use protocol::envelope::RecordDigest;
use protocol::peer::{
    Challenge, CopyBatch, CopyEntry, Frame, FrameAuthenticator, FrameBody, FrameHeader, Hello,
    InboundSession, NONCE_BYTES, Nonce, PROTOCOL_VERSION, admit_frame, encode_length_prefixed,
};
use protocol::position::{Offset, Partition};

pub const KEY: &[u8] = b"tribunal test cluster key, 32 b.";

pub fn digest(n: u64) -> RecordDigest {
    let mut bytes = [0u8; 32];
    bytes[..8].copy_from_slice(&n.to_be_bytes());
    bytes[31] = 0x5a;
    RecordDigest(bytes)
}

pub fn config(instance_id: InstanceId) -> ClerkConfig {
    ClerkConfig {
        instance_id,
        ..ClerkConfig::default()
    }
}

pub fn clerk(config: ClerkConfig, status: InstanceStatus) -> Clerk {
    let mut clerk = Clerk::new(config, KEY, 0).expect("valid config");
    if status != InstanceStatus::Starting {
        clerk.set_status(InstanceStatus::Recovering, 0);
    }
    if status == InstanceStatus::Ready {
        clerk.set_status(InstanceStatus::Ready, 0);
    }
    clerk
}

pub fn own(partition: Partition, offset: Offset, digest: RecordDigest) -> OwnOutput {
    OwnOutput {
        partition,
        offset,
        digest,
        dead_letter_reason: None,
    }
}

pub fn authenticator() -> FrameAuthenticator {
    FrameAuthenticator::new("tribunal", KEY).expect("key")
}

pub fn wire<M: Message>(message: &M) -> Vec<u8> {
    let mut bytes = Vec::new();
    encode_length_prefixed(message, &mut bytes);
    bytes
}

pub fn nonce(n: u64) -> Nonce {
    let mut nonce = [0u8; NONCE_BYTES];
    nonce[..8].copy_from_slice(&n.to_be_bytes());
    nonce
}

/// A peer as a test writes it: connects to a Clerk and sends frames.
#[derive(Debug)]
pub struct FakePeer {
    pub id: InstanceId,
    pub receiver: InstanceId,
    pub link: LinkId,
    pub nonce: Nonce,
    pub next_sequence: u64,
    pub authenticator: FrameAuthenticator,
}

impl FakePeer {
    /// Connects to `clerk` as peer `id` and says hello.
    pub fn connect(clerk: &mut Clerk, id: InstanceId, session: u64, now: Millis) -> Self {
        let nonce = nonce(session);
        let link = clerk.inbound_accepted(nonce, now).expect("accepting");
        let mut peer = Self {
            id,
            receiver: clerk.config().instance_id,
            link,
            nonce,
            next_sequence: 1,
            authenticator: authenticator(),
        };
        peer.send(
            clerk,
            &FrameBody::Hello(Hello {
                protocol_version: PROTOCOL_VERSION,
            }),
            now,
        );
        peer
    }

    /// The next frame of this session, sealed and length-prefixed.
    pub fn frame(&mut self, body: &FrameBody) -> Vec<u8> {
        let frame = self.authenticator.seal(
            FrameHeader {
                sender_id: self.id,
                receiver_id: self.receiver,
                session_nonce: self.nonce,
                sequence: self.next_sequence,
            },
            body,
        );
        self.next_sequence += 1;
        wire(&frame)
    }

    pub fn send(&mut self, clerk: &mut Clerk, body: &FrameBody, now: Millis) {
        let bytes = self.frame(body);
        clerk.bytes_received(self.link, &bytes, now);
    }

    pub fn send_copies(
        &mut self,
        clerk: &mut Clerk,
        copies: &[(Partition, Offset, RecordDigest)],
        now: Millis,
    ) {
        let body = copies_body(copies);
        self.send(clerk, &body, now);
    }

    pub fn heartbeat(&mut self, clerk: &mut Clerk, now: Millis) {
        let body = FrameBody::Heartbeat(protocol::peer::Heartbeat {
            status: protocol::peer::PeerStatus::Ready as i32,
            applied_offsets: vec![0],
        });
        self.send(clerk, &body, now);
    }
}

pub fn copies_body(copies: &[(Partition, Offset, RecordDigest)]) -> FrameBody {
    FrameBody::Copies(
        copies
            .iter()
            .map(|&(partition, offset, digest)| CopyEntry {
                partition,
                offset,
                digest,
            })
            .collect::<CopyBatch>(),
    )
}

/// Dials `peer` from `clerk` and answers with the acceptor's challenge;
/// returns the outbound link, the hello the Clerk sent, and every effect of
/// the step that sent it.
pub fn establish_outbound(
    clerk: &mut Clerk,
    peer: InstanceId,
    session: u64,
    now: Millis,
) -> (LinkId, Frame, Vec<Effect>) {
    clerk.step(now);
    let link = clerk
        .links()
        .find(|view| {
            view.direction == LinkDirection::Outbound
                && view.status == LinkStatus::Connecting
                && view.peer_id == Some(peer)
        })
        .map(|view| view.id)
        .expect("the Clerk dials the peer");
    let challenge = Challenge {
        cluster_id: "tribunal".into(),
        acceptor_id: peer,
        nonce: nonce(session).to_vec(),
    };
    clerk.bytes_received(link, &wire(&challenge), now);
    let effects = clerk.step(now);
    let hello = effects
        .iter()
        .find_map(|effect| match effect {
            Effect::SendHandshake { link: on, bytes } if *on == link => Some(decode_frame(bytes)),
            _ => None,
        })
        .expect("the Clerk answers with a hello");
    (link, hello, effects)
}

pub fn decode_frame(bytes: &[u8]) -> Frame {
    let mut decoder =
        protocol::peer::LengthPrefixedDecoder::new(protocol::peer::MAX_PEER_FRAME_BYTES);
    let mut input = bytes;
    decoder
        .decode_next::<Frame>(&mut input)
        .expect("decodes")
        .expect("whole")
}

/// The bodies of frames `clerk` (id `sender`) sent on `link`, as peer
/// `receiver` admits them.
pub fn sent_bodies(
    effects: &[Effect],
    link: LinkId,
    sender: InstanceId,
    receiver: InstanceId,
    nonce: Nonce,
) -> Vec<FrameBody> {
    let mut last = 0;
    effects
        .iter()
        .filter_map(|effect| match effect {
            Effect::SendFrame { link: on, bytes } | Effect::SendHandshake { link: on, bytes }
                if *on == link =>
            {
                Some(decode_frame(bytes))
            }
            _ => None,
        })
        .map(|frame| {
            let session = InboundSession {
                own_id: receiver,
                instance_count: 4,
                peer_id: Some(sender),
                session_nonce: nonce,
                last_recv_sequence: last,
            };
            last = frame.sequence;
            admit_frame(&authenticator(), &frame, &session).expect("the Clerk's frames verify")
        })
        .collect()
}

pub fn copies_sent(
    effects: &[Effect],
    link: LinkId,
    sender: InstanceId,
    receiver: InstanceId,
    nonce: Nonce,
) -> Vec<CopyEntry> {
    sent_bodies(effects, link, sender, receiver, nonce)
        .into_iter()
        .filter_map(|body| match body {
            FrameBody::Copies(batch) => Some(batch.iter().collect::<Vec<_>>()),
            _ => None,
        })
        .flatten()
        .collect()
}

pub fn publishes(effects: &[Effect]) -> Vec<PublishOrder> {
    effects
        .iter()
        .filter_map(|effect| match effect {
            Effect::Publish(order) => Some(order.clone()),
            _ => None,
        })
        .collect()
}

/// An in-memory cluster: every Clerk dials every other, frames are
/// delivered in order per connection, publications go to one shared
/// outcome log that every Clerk reads.
#[derive(Debug)]
pub struct Cluster {
    pub nodes: Vec<Clerk>,
    pub now: Millis,
    pipes: BTreeMap<(usize, LinkId), (usize, LinkId)>,
    wire: VecDeque<(usize, LinkId, Vec<u8>)>,
    pub outcome_log: Vec<PublishOrder>,
    cursors: Vec<usize>,
    /// Every effect other than transport, per node, in order.
    pub log: Vec<(usize, Effect)>,
    /// Nodes whose publications never reach the outcome topic.
    pub mute: BTreeSet<usize>,
    sessions: u64,
}

impl Cluster {
    pub fn new(configs: Vec<ClerkConfig>) -> Self {
        let count = configs.len();
        let nodes = configs
            .into_iter()
            .map(|config| clerk(config, InstanceStatus::Ready))
            .collect();
        Self {
            nodes,
            now: 0,
            pipes: BTreeMap::new(),
            wire: VecDeque::new(),
            outcome_log: Vec::new(),
            cursors: vec![0; count],
            log: Vec::new(),
            mute: BTreeSet::new(),
            sessions: 0,
        }
    }

    /// Steps, routes and delivers until nothing moves.
    pub fn settle(&mut self) {
        for _ in 0..1_000 {
            let mut moved = false;
            for node in 0..self.nodes.len() {
                let effects = self.nodes[node].step(self.now);
                let deadline = self.nodes[node].next_deadline();
                assert!(
                    deadline.is_none_or(|at| at > self.now),
                    "a step leaves no timed work behind: {deadline:?} at {}",
                    self.now
                );
                moved |= !effects.is_empty();
                for effect in effects {
                    self.route(node, effect);
                }
            }
            while let Some((node, link, bytes)) = self.wire.pop_front() {
                moved = true;
                self.nodes[node].bytes_received(link, &bytes, self.now);
            }
            for node in 0..self.nodes.len() {
                while self.cursors[node] < self.outcome_log.len() {
                    let order = &self.outcome_log[self.cursors[node]];
                    let record = OutcomeRecord {
                        partition: order.partition,
                        offset: order.offset,
                        digest: order.digest,
                        publisher_id: order.publisher_id,
                        outcome_offset: self.cursors[node] as Offset,
                    };
                    if self.nodes[node].outcome_consumed(record, self.now) != OutcomeIntake::Taken {
                        break;
                    }
                    self.cursors[node] += 1;
                    moved = true;
                }
            }
            for node in &self.nodes {
                node.check_invariants().expect("invariants hold");
            }
            if !moved {
                return;
            }
        }
        panic!("the cluster never settled");
    }

    pub fn advance(&mut self, millis: Millis) {
        self.now += millis;
        self.settle();
    }

    fn route(&mut self, node: usize, effect: Effect) {
        match effect {
            Effect::Dial { link, peer } => {
                self.sessions += 1;
                let peer = peer as usize;
                match self.nodes[peer].inbound_accepted(nonce(self.sessions), self.now) {
                    Some(accepted) => {
                        self.pipes.insert((node, link), (peer, accepted));
                        self.pipes.insert((peer, accepted), (node, link));
                    }
                    None => self.nodes[node].link_io_failed(link, self.now),
                }
            }
            Effect::SendHandshake { link, bytes } => self.transmit(node, link, bytes),
            Effect::SendFrame { link, bytes } => {
                self.nodes[node].frame_flushed(link);
                self.transmit(node, link, bytes);
            }
            Effect::CloseLink { link } => {
                if let Some((peer, other)) = self.pipes.remove(&(node, link)) {
                    self.pipes.remove(&(peer, other));
                    self.nodes[peer].link_io_failed(other, self.now);
                }
            }
            Effect::Publish(order) => {
                if !self.mute.contains(&node) {
                    self.outcome_log.push(order.clone());
                }
                self.log.push((node, Effect::Publish(order)));
            }
            other => self.log.push((node, other)),
        }
    }

    fn transmit(&mut self, node: usize, link: LinkId, bytes: Vec<u8>) {
        if let Some(&(peer, other)) = self.pipes.get(&(node, link)) {
            self.wire.push_back((peer, other, bytes));
        }
    }

    pub fn commit(&mut self, node: usize, outputs: &[OwnOutput]) {
        self.nodes[node].outputs_committed(outputs, self.now);
    }

    pub fn effects_of(&self, node: usize) -> impl Iterator<Item = &Effect> {
        self.log
            .iter()
            .filter(move |(n, _)| *n == node)
            .map(|(_, effect)| effect)
    }
}
