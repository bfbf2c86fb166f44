//! Peer frames: the authenticated messages instances exchange (`spec/clerk.allium`).
//!
//! Wire: every message is a `u32` big-endian length, then a prost message of
//! that many bytes, at most `max_peer_frame_bytes`. Frames flow dialer ->
//! acceptor only; the one message the other way is the acceptor's
//! [`Challenge`], which carries the fresh session nonce.
//!
//! Handshake: the acceptor sends a [`Challenge`]; the dialer answers with a
//! hello [`Frame`] (sequence 1) bound to that nonce; copies and heartbeats
//! follow with sequences 2, 3, ... Every [`Frame`] carries an HMAC-SHA256
//! under the per-cluster key over all its other fields, so a frame recorded
//! on one connection never verifies on another (other nonce) and a frame
//! replayed on its own connection fails the sequence check.
//!
//! The challenge is not authenticated: it only names a nonce, and a forged
//! nonce yields a hello the real acceptor rejects. Nothing a dialer sends
//! before the acceptor verifies its hello carries progress or copies.

use std::fmt;

use hmac::{Hmac, Mac};
use prost::Message;
use sha2::Sha256;

use crate::envelope::RecordDigest;
use crate::position::{Offset, Partition};

/// `core.config.max_peer_frame_bytes`: the largest length a prefix may declare.
pub const MAX_PEER_FRAME_BYTES: usize = 1_048_576;

/// The hello's protocol version; an acceptor rejects any other.
pub const PROTOCOL_VERSION: u32 = 1;

/// Length of a session nonce, drawn fresh by the acceptor per connection.
pub const NONCE_BYTES: usize = 16;

/// Length of a record digest inside a copies frame.
pub const DIGEST_BYTES: usize = 32;

/// Shortest cluster key accepted: shorter keys are guessable.
pub const MIN_KEY_BYTES: usize = 16;

/// Longest cluster id accepted, so a frame's header overhead is bounded.
pub const MAX_CLUSTER_ID_BYTES: usize = 255;

const LENGTH_PREFIX_BYTES: usize = 4;

/// Separates this MAC from any other use of the cluster key.
const MAC_DOMAIN: &[u8] = b"tribunal/peer-frame/v1\0";

/// Upper bound of one copy's bytes in a copies body: a partition varint (5),
/// an offset varint (10) and the digest.
const COPY_MAX_BYTES: usize = 5 + 10 + DIGEST_BYTES;

/// Upper bound of a frame's bytes besides its body's copies, cluster id
/// excluded: field tags, length and integer varints, nonce, MAC, and the
/// copies body's three field headers.
const FRAME_OVERHEAD_BYTES: usize = 128;

/// A session nonce.
pub type Nonce = [u8; NONCE_BYTES];

/// The authenticated envelope of every dialer -> acceptor message.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Frame {
    #[prost(string, tag = "1")]
    pub cluster_id: String,
    #[prost(uint32, tag = "2")]
    pub sender_id: u32,
    #[prost(uint32, tag = "3")]
    pub receiver_id: u32,
    /// The acceptor's nonce from its challenge.
    #[prost(bytes = "vec", tag = "4")]
    pub session_nonce: Vec<u8>,
    /// 1 for the hello, then one more per frame on the connection.
    #[prost(uint64, tag = "5")]
    pub sequence: u64,
    #[prost(enumeration = "FrameKind", tag = "6")]
    pub kind: i32,
    /// The prost encoding of the kind's body ([`Hello`], [`Copies`], [`Heartbeat`]).
    #[prost(bytes = "vec", tag = "7")]
    pub body: Vec<u8>,
    /// HMAC-SHA256 over every field above (see [`FrameAuthenticator`]).
    #[prost(bytes = "vec", tag = "8")]
    pub mac: Vec<u8>,
}

/// What a frame's body holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum FrameKind {
    Unspecified = 0,
    Hello = 1,
    Copies = 2,
    Heartbeat = 3,
}

/// The first frame of a session. It claims no progress and no readiness:
/// starting and recovering instances send it too.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct Hello {
    #[prost(uint32, tag = "1")]
    pub protocol_version: u32,
}

/// Many copies, column-wise: entry `i` is `(partitions[i], offsets[i],
/// digests[32*i .. 32*i+32])`. Columns keep a frame of thousands of copies
/// at three allocations.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct Copies {
    #[prost(uint32, repeated, packed = "true", tag = "1")]
    pub partitions: Vec<u32>,
    #[prost(int64, repeated, packed = "true", tag = "2")]
    pub offsets: Vec<i64>,
    #[prost(bytes = "vec", tag = "3")]
    pub digests: Vec<u8>,
}

/// Sent by a ready instance when it has sent nothing else for a heartbeat
/// interval; proves liveness.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct Heartbeat {
    #[prost(enumeration = "PeerStatus", tag = "1")]
    pub status: i32,
    /// The sender's applied offset per input partition, index = partition.
    #[prost(int64, repeated, packed = "true", tag = "2")]
    pub applied_offsets: Vec<i64>,
}

/// An instance's status as a heartbeat reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum PeerStatus {
    Unspecified = 0,
    Ready = 1,
}

/// The acceptor's first and only message on a connection.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct Challenge {
    #[prost(string, tag = "1")]
    pub cluster_id: String,
    #[prost(uint32, tag = "2")]
    pub acceptor_id: u32,
    #[prost(bytes = "vec", tag = "3")]
    pub nonce: Vec<u8>,
}

/// One instance's copy of one input record's output digest.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CopyEntry {
    pub partition: Partition,
    pub offset: Offset,
    pub digest: RecordDigest,
}

/// A [`Copies`] body whose columns are known to line up.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CopyBatch {
    columns: Copies,
}

impl CopyBatch {
    pub fn with_capacity(copies: usize) -> Self {
        Self {
            columns: Copies {
                partitions: Vec::with_capacity(copies),
                offsets: Vec::with_capacity(copies),
                digests: Vec::with_capacity(copies * DIGEST_BYTES),
            },
        }
    }

    pub fn push(&mut self, entry: CopyEntry) {
        self.columns.partitions.push(entry.partition);
        self.columns.offsets.push(entry.offset);
        self.columns.digests.extend_from_slice(&entry.digest.0);
    }

    pub fn len(&self) -> usize {
        self.columns.partitions.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn iter(&self) -> impl Iterator<Item = CopyEntry> + '_ {
        self.columns
            .partitions
            .iter()
            .zip(&self.columns.offsets)
            .zip(self.columns.digests.chunks_exact(DIGEST_BYTES))
            .map(|((&partition, &offset), digest)| CopyEntry {
                partition,
                offset,
                digest: RecordDigest(digest.try_into().expect("chunks of DIGEST_BYTES")),
            })
    }

    fn from_columns(columns: Copies) -> Option<Self> {
        let count = columns.partitions.len();
        let aligned = columns.offsets.len() == count
            && Some(columns.digests.len()) == count.checked_mul(DIGEST_BYTES);
        aligned.then_some(Self { columns })
    }
}

impl FromIterator<CopyEntry> for CopyBatch {
    fn from_iter<I: IntoIterator<Item = CopyEntry>>(entries: I) -> Self {
        let mut batch = Self::default();
        entries.into_iter().for_each(|entry| batch.push(entry));
        batch
    }
}

/// The most copies one copies frame surely holds under `max_frame_bytes`
/// with a cluster id of `cluster_id_bytes`.
pub fn copies_per_frame(max_frame_bytes: usize, cluster_id_bytes: usize) -> usize {
    max_frame_bytes.saturating_sub(FRAME_OVERHEAD_BYTES + cluster_id_bytes) / COPY_MAX_BYTES
}

/// A frame's decoded body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FrameBody {
    Hello(Hello),
    Copies(CopyBatch),
    Heartbeat(Heartbeat),
}

impl FrameBody {
    pub fn kind(&self) -> FrameKind {
        match self {
            Self::Hello(_) => FrameKind::Hello,
            Self::Copies(_) => FrameKind::Copies,
            Self::Heartbeat(_) => FrameKind::Heartbeat,
        }
    }

    fn encode_to_vec(&self) -> Vec<u8> {
        match self {
            Self::Hello(hello) => hello.encode_to_vec(),
            Self::Copies(batch) => batch.columns.encode_to_vec(),
            Self::Heartbeat(heartbeat) => heartbeat.encode_to_vec(),
        }
    }

    /// `None` when the kind is unknown or the body does not decode as it.
    fn decode(kind: i32, body: &[u8]) -> Option<Self> {
        match FrameKind::try_from(kind).ok()? {
            FrameKind::Unspecified => None,
            FrameKind::Hello => Hello::decode(body).ok().map(Self::Hello),
            FrameKind::Copies => Copies::decode(body)
                .ok()
                .and_then(CopyBatch::from_columns)
                .map(Self::Copies),
            FrameKind::Heartbeat => Heartbeat::decode(body).ok().map(Self::Heartbeat),
        }
    }
}

/// Why an inbound frame was rejected; the label of
/// `tribunal_clerk_frames_rejected_total{reason}`. Every rejection closes the
/// connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RejectionReason {
    Oversized,
    Undecodable,
    BadMac,
    WrongCluster,
    UnknownSender,
    Replayed,
    ProtocolViolation,
}

impl RejectionReason {
    pub const ALL: [RejectionReason; 7] = [
        Self::Oversized,
        Self::Undecodable,
        Self::BadMac,
        Self::WrongCluster,
        Self::UnknownSender,
        Self::Replayed,
        Self::ProtocolViolation,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Oversized => "oversized",
            Self::Undecodable => "undecodable",
            Self::BadMac => "bad_mac",
            Self::WrongCluster => "wrong_cluster",
            Self::UnknownSender => "unknown_sender",
            Self::Replayed => "replayed",
            Self::ProtocolViolation => "protocol_violation",
        }
    }
}

impl fmt::Display for RejectionReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A cluster key or id that cannot be used.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyError {
    KeyTooShort { bytes: usize },
    ClusterIdTooLong { bytes: usize },
}

impl fmt::Display for KeyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::KeyTooShort { bytes } => {
                write!(
                    f,
                    "cluster key has {bytes} bytes, fewer than {MIN_KEY_BYTES}"
                )
            }
            Self::ClusterIdTooLong { bytes } => {
                write!(
                    f,
                    "cluster id has {bytes} bytes, more than {MAX_CLUSTER_ID_BYTES}"
                )
            }
        }
    }
}

impl std::error::Error for KeyError {}

/// The fields a sender chooses for one frame; the cluster id comes from the
/// authenticator.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameHeader {
    pub sender_id: u32,
    pub receiver_id: u32,
    pub session_nonce: Nonce,
    pub sequence: u64,
}

/// Seals and verifies frames under one cluster's id and key.
#[derive(Clone)]
pub struct FrameAuthenticator {
    cluster_id: String,
    keyed: Hmac<Sha256>,
}

impl fmt::Debug for FrameAuthenticator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FrameAuthenticator")
            .field("cluster_id", &self.cluster_id)
            .finish_non_exhaustive()
    }
}

impl FrameAuthenticator {
    pub fn new(cluster_id: impl Into<String>, key: &[u8]) -> Result<Self, KeyError> {
        let cluster_id = cluster_id.into();
        if key.len() < MIN_KEY_BYTES {
            return Err(KeyError::KeyTooShort { bytes: key.len() });
        }
        if cluster_id.len() > MAX_CLUSTER_ID_BYTES {
            return Err(KeyError::ClusterIdTooLong {
                bytes: cluster_id.len(),
            });
        }
        let keyed = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes keys of any length");
        Ok(Self { cluster_id, keyed })
    }

    pub fn cluster_id(&self) -> &str {
        &self.cluster_id
    }

    /// Builds the frame for `body` and computes its MAC.
    pub fn seal(&self, header: FrameHeader, body: &FrameBody) -> Frame {
        let mut frame = Frame {
            cluster_id: self.cluster_id.clone(),
            sender_id: header.sender_id,
            receiver_id: header.receiver_id,
            session_nonce: header.session_nonce.to_vec(),
            sequence: header.sequence,
            kind: body.kind() as i32,
            body: body.encode_to_vec(),
            mac: Vec::new(),
        };
        frame.mac = self.mac_over(&frame).finalize().into_bytes().to_vec();
        frame
    }

    /// Whether the frame's MAC is the cluster key's over its fields,
    /// compared in constant time.
    ///
    /// spec: clerk.ForgedFrameRejected
    pub fn mac_valid(&self, frame: &Frame) -> bool {
        self.mac_over(frame).verify_slice(&frame.mac).is_ok()
    }

    /// Every field is length-framed or fixed-width, so no two frames share
    /// a MAC input.
    fn mac_over(&self, frame: &Frame) -> Hmac<Sha256> {
        let mut mac = self.keyed.clone();
        mac.update(MAC_DOMAIN);
        update_framed(&mut mac, frame.cluster_id.as_bytes());
        mac.update(&frame.sender_id.to_be_bytes());
        mac.update(&frame.receiver_id.to_be_bytes());
        update_framed(&mut mac, &frame.session_nonce);
        mac.update(&frame.sequence.to_be_bytes());
        mac.update(&frame.kind.to_be_bytes());
        update_framed(&mut mac, &frame.body);
        mac
    }

    /// The challenge an acceptor sends on a new connection.
    pub fn challenge(&self, acceptor_id: u32, nonce: Nonce) -> Challenge {
        Challenge {
            cluster_id: self.cluster_id.clone(),
            acceptor_id,
            nonce: nonce.to_vec(),
        }
    }
}

fn update_framed(mac: &mut Hmac<Sha256>, bytes: &[u8]) {
    let length = u32::try_from(bytes.len()).expect("frames are bounded far below 4 GiB");
    mac.update(&length.to_be_bytes());
    mac.update(bytes);
}

/// What an inbound link knows when a frame arrives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InboundSession {
    pub own_id: u32,
    pub instance_count: u32,
    /// The peer the session's hello named; `None` before the hello.
    pub peer_id: Option<u32>,
    pub session_nonce: Nonce,
    pub last_recv_sequence: u64,
}

/// Runs the checks of the inbound rules in the spec's order after the codec
/// (undecodable body, MAC, cluster, sender, freshness) and returns the
/// decoded body of a frame that passed them all. Whether the frame's kind
/// fits the link's state (`ProtocolViolation`) is the session's call.
///
/// spec: clerk.UndecodableFrameRejected, clerk.ForgedFrameRejected, clerk.WrongClusterFrameRejected,
/// spec: clerk.UnknownSenderFrameRejected, clerk.ReplayedFrameRejected, clerk.SequenceStrictlyIncreasesPerSession
pub fn admit_frame(
    authenticator: &FrameAuthenticator,
    frame: &Frame,
    session: &InboundSession,
) -> Result<FrameBody, RejectionReason> {
    let body = FrameBody::decode(frame.kind, &frame.body).ok_or(RejectionReason::Undecodable)?;
    if !authenticator.mac_valid(frame) {
        return Err(RejectionReason::BadMac);
    }
    if frame.cluster_id != authenticator.cluster_id {
        return Err(RejectionReason::WrongCluster);
    }
    let sender = frame.sender_id;
    let unknown_sender = sender >= session.instance_count
        || sender == session.own_id
        || session.peer_id.is_some_and(|peer| peer != sender);
    if unknown_sender {
        return Err(RejectionReason::UnknownSender);
    }
    let fresh = frame.session_nonce.as_slice() == session.session_nonce.as_slice()
        && frame.sequence > session.last_recv_sequence;
    if !fresh {
        return Err(RejectionReason::Replayed);
    }
    Ok(body)
}

/// Appends `message` with its `u32` big-endian length prefix.
pub fn encode_length_prefixed<M: Message>(message: &M, out: &mut Vec<u8>) {
    let length = message.encoded_len();
    let prefix = u32::try_from(length).expect("peer messages are bounded far below 4 GiB");
    out.reserve(LENGTH_PREFIX_BYTES + length);
    out.extend_from_slice(&prefix.to_be_bytes());
    message
        .encode(out)
        .expect("a Vec grows to take the message");
}

/// Splits a byte stream into length-prefixed prost messages, buffering at
/// most one message of at most `max_message_bytes`. A prefix above the
/// bound is rejected before any of its body is read or buffered. After a
/// rejection the decoder keeps answering with it: the connection is done.
#[derive(Debug)]
pub struct LengthPrefixedDecoder {
    max_message_bytes: usize,
    prefix: [u8; LENGTH_PREFIX_BYTES],
    prefix_filled: usize,
    declared: Option<usize>,
    body: Vec<u8>,
    failed: Option<RejectionReason>,
}

impl LengthPrefixedDecoder {
    pub fn new(max_message_bytes: usize) -> Self {
        Self {
            max_message_bytes,
            prefix: [0; LENGTH_PREFIX_BYTES],
            prefix_filled: 0,
            declared: None,
            body: Vec::new(),
            failed: None,
        }
    }

    /// Consumes bytes from the front of `input` until one message is whole
    /// (returned) or `input` is empty (`Ok(None)`: feed more).
    ///
    /// spec: clerk.OversizedFrameRejected, clerk.UndecodableFrameRejected
    pub fn decode_next<M: Message + Default>(
        &mut self,
        input: &mut &[u8],
    ) -> Result<Option<M>, RejectionReason> {
        if let Some(reason) = self.failed {
            return Err(reason);
        }
        let declared = match self.declared {
            Some(declared) => declared,
            None => {
                let wanted = LENGTH_PREFIX_BYTES - self.prefix_filled;
                let taken = wanted.min(input.len());
                self.prefix[self.prefix_filled..self.prefix_filled + taken]
                    .copy_from_slice(&input[..taken]);
                self.prefix_filled += taken;
                *input = &input[taken..];
                if self.prefix_filled < LENGTH_PREFIX_BYTES {
                    return Ok(None);
                }
                let declared = u32::from_be_bytes(self.prefix) as usize;
                if declared > self.max_message_bytes {
                    return Err(self.fail(RejectionReason::Oversized));
                }
                self.body.reserve_exact(declared);
                self.declared = Some(declared);
                declared
            }
        };
        let taken = (declared - self.body.len()).min(input.len());
        self.body.extend_from_slice(&input[..taken]);
        *input = &input[taken..];
        if self.body.len() < declared {
            return Ok(None);
        }
        let message = M::decode(self.body.as_slice());
        self.body.clear();
        self.declared = None;
        self.prefix_filled = 0;
        message
            .map(Some)
            .map_err(|_| self.fail(RejectionReason::Undecodable))
    }

    /// Bytes held for the message being assembled, never above the bound.
    pub fn buffered_capacity(&self) -> usize {
        self.body.capacity()
    }

    fn fail(&mut self, reason: RejectionReason) -> RejectionReason {
        self.failed = Some(reason);
        self.body = Vec::new();
        reason
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    const KEY: &[u8] = b"0123456789abcdef0123456789abcdef";
    const NONCE: Nonce = [7; NONCE_BYTES];

    fn authenticator() -> FrameAuthenticator {
        FrameAuthenticator::new("tribunal", KEY).expect("valid key")
    }

    fn copies(count: usize) -> FrameBody {
        FrameBody::Copies(
            (0..count)
                .map(|i| CopyEntry {
                    partition: (i % 3) as u32,
                    offset: i as i64 * 1_000_003,
                    digest: RecordDigest([i as u8; DIGEST_BYTES]),
                })
                .collect(),
        )
    }

    fn header(sequence: u64) -> FrameHeader {
        FrameHeader {
            sender_id: 1,
            receiver_id: 0,
            session_nonce: NONCE,
            sequence,
        }
    }

    fn session(last_recv_sequence: u64) -> InboundSession {
        InboundSession {
            own_id: 0,
            instance_count: 4,
            peer_id: Some(1),
            session_nonce: NONCE,
            last_recv_sequence,
        }
    }

    fn wire(frame: &Frame) -> Vec<u8> {
        let mut out = Vec::new();
        encode_length_prefixed(frame, &mut out);
        out
    }

    fn decode_one(bytes: &[u8], max: usize) -> Result<Option<Frame>, RejectionReason> {
        let mut decoder = LengthPrefixedDecoder::new(max);
        let mut input = bytes;
        decoder.decode_next::<Frame>(&mut input)
    }

    #[test]
    fn a_sealed_frame_round_trips_through_the_codec_and_is_admitted() {
        let auth = authenticator();
        let body = copies(512);
        let frame = auth.seal(header(5), &body);
        let decoded = decode_one(&wire(&frame), MAX_PEER_FRAME_BYTES)
            .expect("decodes")
            .expect("whole");
        assert_eq!(decoded, frame);
        assert_eq!(admit_frame(&auth, &decoded, &session(4)), Ok(body));
    }

    /// covers: clerk.OversizedFrameRejected
    #[test]
    fn a_prefix_above_the_bound_is_rejected_before_its_body_is_buffered() {
        let mut bytes = ((MAX_PEER_FRAME_BYTES + 1) as u32).to_be_bytes().to_vec();
        bytes.extend_from_slice(&[0; 64]);
        let mut decoder = LengthPrefixedDecoder::new(MAX_PEER_FRAME_BYTES);
        let mut input = bytes.as_slice();
        assert_eq!(
            decoder.decode_next::<Frame>(&mut input),
            Err(RejectionReason::Oversized)
        );
        assert_eq!(decoder.buffered_capacity(), 0);
        assert_eq!(input.len(), 64, "the body is never read");
        let mut more: &[u8] = &[1, 2, 3];
        assert_eq!(
            decoder.decode_next::<Frame>(&mut more),
            Err(RejectionReason::Oversized),
            "a failed decoder stays failed"
        );
        // A frame of exactly the bound's length is not oversized.
        let mut exact = (MAX_PEER_FRAME_BYTES as u32).to_be_bytes().to_vec();
        exact.extend_from_slice(&[0; 10]);
        assert_eq!(decode_one(&exact, MAX_PEER_FRAME_BYTES), Ok(None));
    }

    /// covers: clerk.UndecodableFrameRejected
    #[test]
    fn garbage_bodies_and_unknown_kinds_are_undecodable() {
        assert_eq!(
            decode_one(&[0, 0, 0, 3, 0xff, 0xff, 0xff], 64),
            Err(RejectionReason::Undecodable)
        );
        let auth = authenticator();
        let mut unknown_kind = auth.seal(header(1), &FrameBody::Hello(Hello::default()));
        unknown_kind.kind = 42;
        assert_eq!(
            admit_frame(&auth, &unknown_kind, &session(0)),
            Err(RejectionReason::Undecodable)
        );
        let mut misaligned = auth.seal(header(1), &copies(2));
        let mut columns = Copies::decode(misaligned.body.as_slice()).expect("copies");
        columns.digests.pop();
        misaligned.body = columns.encode_to_vec();
        assert_eq!(
            admit_frame(&auth, &misaligned, &session(0)),
            Err(RejectionReason::Undecodable)
        );
    }

    /// covers: clerk.ForgedFrameRejected
    #[test]
    fn any_changed_field_or_another_key_fails_the_mac() {
        let auth = authenticator();
        let frame = auth.seal(header(2), &copies(3));
        let tampered: [fn(&mut Frame); 7] = [
            |f| f.sender_id = 2,
            |f| f.receiver_id = 3,
            |f| f.session_nonce[0] ^= 1,
            |f| f.sequence += 1,
            |f| f.kind = FrameKind::Heartbeat as i32,
            |f| f.body[5] ^= 1,
            |f| f.mac[31] ^= 1,
        ];
        for tamper in tampered {
            let mut forged = frame.clone();
            tamper(&mut forged);
            assert!(!auth.mac_valid(&forged));
        }
        let other =
            FrameAuthenticator::new("tribunal", b"another key of 32 bytes........").expect("key");
        assert!(!other.mac_valid(&frame));
        let mut truncated = frame.clone();
        truncated.mac.truncate(16);
        assert!(!auth.mac_valid(&truncated));
        assert_eq!(
            admit_frame(&other, &frame, &session(0)),
            Err(RejectionReason::BadMac)
        );
    }

    /// covers: clerk.WrongClusterFrameRejected
    #[test]
    fn a_frame_of_another_cluster_under_the_same_key_is_rejected() {
        let ours = authenticator();
        let theirs = FrameAuthenticator::new("elsewhere", KEY).expect("key");
        let frame = theirs.seal(header(1), &FrameBody::Hello(Hello::default()));
        assert!(ours.mac_valid(&frame), "the MAC covers the id, not the key");
        assert_eq!(
            admit_frame(&ours, &frame, &session(0)),
            Err(RejectionReason::WrongCluster)
        );
    }

    /// covers: clerk.UnknownSenderFrameRejected
    #[test]
    fn senders_out_of_range_self_or_not_the_sessions_peer_are_unknown() {
        let auth = authenticator();
        let hello = FrameBody::Hello(Hello::default());
        for sender_id in [4, 0, 2] {
            let frame = auth.seal(
                FrameHeader {
                    sender_id,
                    ..header(1)
                },
                &hello,
            );
            assert_eq!(
                admit_frame(&auth, &frame, &session(0)),
                Err(RejectionReason::UnknownSender),
                "sender {sender_id}"
            );
        }
        let before_hello = InboundSession {
            peer_id: None,
            ..session(0)
        };
        let from_two = auth.seal(
            FrameHeader {
                sender_id: 2,
                ..header(1)
            },
            &hello,
        );
        assert!(admit_frame(&auth, &from_two, &before_hello).is_ok());
    }

    /// covers: clerk.ReplayedFrameRejected, clerk.SequenceStrictlyIncreasesPerSession
    #[test]
    fn old_sequences_and_other_sessions_nonces_are_replays() {
        let auth = authenticator();
        let body = copies(1);
        assert!(admit_frame(&auth, &auth.seal(header(8), &body), &session(7)).is_ok());
        assert!(
            admit_frame(&auth, &auth.seal(header(10), &body), &session(7)).is_ok(),
            "gaps are allowed; only going back is not"
        );
        for sequence in [7, 3] {
            assert_eq!(
                admit_frame(&auth, &auth.seal(header(sequence), &body), &session(7)),
                Err(RejectionReason::Replayed)
            );
        }
        let other_session = auth.seal(
            FrameHeader {
                session_nonce: [8; NONCE_BYTES],
                ..header(8)
            },
            &body,
        );
        assert_eq!(
            admit_frame(&auth, &other_session, &session(7)),
            Err(RejectionReason::Replayed)
        );
    }

    #[test]
    fn keys_and_cluster_ids_are_checked() {
        assert_eq!(
            FrameAuthenticator::new("tribunal", b"short").err(),
            Some(KeyError::KeyTooShort { bytes: 5 })
        );
        assert_eq!(
            FrameAuthenticator::new("x".repeat(256), KEY).err(),
            Some(KeyError::ClusterIdTooLong { bytes: 256 })
        );
        assert!(!format!("{:?}", authenticator()).contains("0123"));
    }

    #[test]
    fn a_full_frame_of_copies_fits_the_bound() {
        let auth = FrameAuthenticator::new("c".repeat(MAX_CLUSTER_ID_BYTES), KEY).expect("key");
        let count = copies_per_frame(MAX_PEER_FRAME_BYTES, MAX_CLUSTER_ID_BYTES);
        assert!(count > 20_000);
        let entries = (0..count).map(|i| CopyEntry {
            partition: u32::MAX - i as u32,
            offset: i64::MIN + i as i64,
            digest: RecordDigest([0xff; DIGEST_BYTES]),
        });
        let frame = auth.seal(
            FrameHeader {
                sender_id: u32::MAX,
                receiver_id: u32::MAX,
                session_nonce: NONCE,
                sequence: u64::MAX,
            },
            &FrameBody::Copies(entries.collect()),
        );
        assert!(frame.encoded_len() <= MAX_PEER_FRAME_BYTES);
    }

    proptest! {
        /// covers: clerk.OversizedFrameRejected, clerk.UndecodableFrameRejected
        #[test]
        fn frames_split_anywhere_decode_the_same_and_buffers_stay_bounded(
            counts in proptest::collection::vec(0usize..40, 1..6),
            cuts in proptest::collection::vec(0usize..5_000, 0..12),
        ) {
            let auth = authenticator();
            let frames: Vec<Frame> = counts
                .iter()
                .enumerate()
                .map(|(i, &count)| auth.seal(header(i as u64 + 1), &copies(count)))
                .collect();
            let mut stream = Vec::new();
            frames.iter().for_each(|frame| encode_length_prefixed(frame, &mut stream));
            let mut cuts: Vec<usize> = cuts.into_iter().map(|cut| cut % (stream.len() + 1)).collect();
            cuts.push(stream.len());
            cuts.sort_unstable();
            let bound = frames.iter().map(Message::encoded_len).max().unwrap_or(0);
            let mut decoder = LengthPrefixedDecoder::new(bound);
            let mut decoded = Vec::new();
            let mut start = 0;
            for cut in cuts {
                let mut input = &stream[start..cut];
                while let Some(frame) = decoder.decode_next::<Frame>(&mut input).expect("valid stream") {
                    decoded.push(frame);
                }
                prop_assert!(input.is_empty());
                prop_assert!(decoder.buffered_capacity() <= bound);
                start = cut;
            }
            prop_assert_eq!(decoded, frames);
        }

        /// covers: clerk.ForgedFrameRejected
        #[test]
        fn flipped_bits_on_the_wire_never_yield_an_admitted_frame(
            count in 0usize..20,
            flips in proptest::collection::vec((any::<prop::sample::Index>(), 0u8..8), 1..4),
        ) {
            let auth = authenticator();
            let frame = auth.seal(header(3), &copies(count));
            let mut bytes = wire(&frame);
            for (at, bit) in &flips {
                let at = LENGTH_PREFIX_BYTES + at.index(bytes.len() - LENGTH_PREFIX_BYTES);
                bytes[at] ^= 1 << bit;
            }
            if let Ok(Some(decoded)) = decode_one(&bytes, MAX_PEER_FRAME_BYTES) {
                match admit_frame(&auth, &decoded, &session(2)) {
                    // Protobuf has aliases (e.g. a non-minimal varint): an
                    // admitted frame must carry exactly the sealed content.
                    Ok(body) => {
                        prop_assert_eq!(&decoded.body, &frame.body);
                        prop_assert_eq!(body, copies(count));
                    }
                    Err(reason) => prop_assert!(matches!(
                        reason,
                        RejectionReason::BadMac | RejectionReason::Undecodable
                    )),
                }
            }
        }
    }
}
