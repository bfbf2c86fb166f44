//! The on-disk layout: column families, key encodings and value encodings.
//!
//! Every integer in a key is big-endian so that RocksDB's bytewise order is
//! the numeric order: the outputs column family iterates in (partition,
//! offset) order and the expiry index in (partition, first_seen, key) order.
//!
//! | family | key | value |
//! | --- | --- | --- |
//! | `entities` | entity key text (UTF-8) | canonical state bytes (the domain's) |
//! | `watermarks` | `u32be partition` | [`StoredWatermark`]: three `i64be` (24 bytes) |
//! | `watermarks` | [`META_INPUT_PARTITIONS_KEY`] | `u32be input_partitions` |
//! | `warden_entries` | `u32be partition` + idempotency key (UTF-8) | the Warden's entry bytes |
//! | `warden_expiry` | `u32be partition` + `u64be first_seen'` + idempotency key | empty |
//! | `outputs` | `u32be partition` + `u64be offset` | [`StoredOutput`] (prost) |
//!
//! `first_seen'` is the stream time in milliseconds with its sign bit
//! flipped, which orders every `i64` correctly as unsigned bytes. Watermark
//! values are fixed-width big-endian rather than prost: three numbers that
//! never change shape, and a wrong length is detectably corrupt.

use protocol::envelope::{RecordDigest, record_digest};
use protocol::position::{Offset, Partition, StreamTime};

use crate::error::LedgerError;

/// The column families, in the order they are opened.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Family {
    Entities,
    Watermarks,
    WardenEntries,
    WardenExpiry,
    Outputs,
}

impl Family {
    pub(crate) const ALL: [Family; 5] = [
        Family::Entities,
        Family::Watermarks,
        Family::WardenEntries,
        Family::WardenExpiry,
        Family::Outputs,
    ];

    pub(crate) fn name(self) -> &'static str {
        match self {
            Family::Entities => "entities",
            Family::Watermarks => "watermarks",
            Family::WardenEntries => "warden_entries",
            Family::WardenExpiry => "warden_expiry",
            Family::Outputs => "outputs",
        }
    }
}

/// The meta row of the watermarks family. Its length differs from a
/// partition key's (4 bytes), so the two can never collide.
pub const META_INPUT_PARTITIONS_KEY: &[u8] = b"meta/input_partitions";

const PARTITION_BYTES: usize = 4;
const WATERMARK_VALUE_BYTES: usize = 24;
const OUTPUT_KEY_BYTES: usize = PARTITION_BYTES + 8;
const EXPIRY_PREFIX_BYTES: usize = PARTITION_BYTES + 8;

pub(crate) fn partition_key(partition: Partition) -> [u8; PARTITION_BYTES] {
    partition.to_be_bytes()
}

pub(crate) fn decode_partition_key(key: &[u8]) -> Option<Partition> {
    <[u8; PARTITION_BYTES]>::try_from(key)
        .ok()
        .map(Partition::from_be_bytes)
}

pub(crate) fn encode_input_partitions(input_partitions: u32) -> [u8; 4] {
    input_partitions.to_be_bytes()
}

pub(crate) fn decode_input_partitions(value: &[u8]) -> Option<u32> {
    <[u8; 4]>::try_from(value).ok().map(u32::from_be_bytes)
}

/// One row of the watermarks family: how far a partition is durably applied.
///
/// spec: ledger.StoredWatermarkIsAnOffset
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StoredWatermark {
    /// Highest input offset whose effects are stored; never negative in a row.
    pub applied_offset: Offset,
    /// Stream time at `applied_offset`, restored with it so the Warden's TTL
    /// test after a restart sees what every other instance saw there.
    pub stream_time: StreamTime,
    /// Outcome-topic offset the outcome reader of this partition resumes at.
    pub outcome_resume_offset: Offset,
}

impl StoredWatermark {
    pub(crate) fn encode(&self) -> [u8; WATERMARK_VALUE_BYTES] {
        assert!(
            self.applied_offset >= 0 && self.outcome_resume_offset >= 0,
            "a stored watermark is an offset: {self:?}"
        );
        let mut bytes = [0; WATERMARK_VALUE_BYTES];
        bytes[0..8].copy_from_slice(&self.applied_offset.to_be_bytes());
        bytes[8..16].copy_from_slice(&self.stream_time.millis().to_be_bytes());
        bytes[16..24].copy_from_slice(&self.outcome_resume_offset.to_be_bytes());
        bytes
    }

    pub(crate) fn decode(bytes: &[u8]) -> Option<StoredWatermark> {
        let bytes = <&[u8; WATERMARK_VALUE_BYTES]>::try_from(bytes).ok()?;
        let word = |at: usize| {
            i64::from_be_bytes(
                bytes[at..at + 8]
                    .try_into()
                    .expect("an 8-byte slice of a fixed 24-byte array"),
            )
        };
        let watermark = StoredWatermark {
            applied_offset: word(0),
            stream_time: StreamTime(word(8)),
            outcome_resume_offset: word(16),
        };
        (watermark.applied_offset >= 0 && watermark.outcome_resume_offset >= 0).then_some(watermark)
    }
}

pub(crate) fn warden_entry_key(partition: Partition, idempotency_key: &str) -> Vec<u8> {
    let mut key = Vec::with_capacity(PARTITION_BYTES + idempotency_key.len());
    key.extend_from_slice(&partition_key(partition));
    key.extend_from_slice(idempotency_key.as_bytes());
    key
}

fn order_preserving_millis(time: StreamTime) -> [u8; 8] {
    ((time.millis() as u64) ^ (1 << 63)).to_be_bytes()
}

fn millis_from_order_preserving(bytes: [u8; 8]) -> StreamTime {
    StreamTime((u64::from_be_bytes(bytes) ^ (1 << 63)) as i64)
}

/// `partition ++ first_seen'`: every expiry-index key of entries of
/// `partition` first seen at `first_seen` starts with it.
pub(crate) fn expiry_prefix(
    partition: Partition,
    first_seen: StreamTime,
) -> [u8; EXPIRY_PREFIX_BYTES] {
    let mut prefix = [0; EXPIRY_PREFIX_BYTES];
    prefix[..PARTITION_BYTES].copy_from_slice(&partition_key(partition));
    prefix[PARTITION_BYTES..].copy_from_slice(&order_preserving_millis(first_seen));
    prefix
}

pub(crate) fn expiry_key(
    partition: Partition,
    first_seen: StreamTime,
    idempotency_key: &str,
) -> Vec<u8> {
    let mut key = Vec::with_capacity(EXPIRY_PREFIX_BYTES + idempotency_key.len());
    key.extend_from_slice(&expiry_prefix(partition, first_seen));
    key.extend_from_slice(idempotency_key.as_bytes());
    key
}

/// `(partition, first_seen, idempotency key)` of an expiry-index key.
pub(crate) fn decode_expiry_key(key: &[u8]) -> Option<(Partition, StreamTime, String)> {
    if key.len() < EXPIRY_PREFIX_BYTES {
        return None;
    }
    let partition = decode_partition_key(&key[..PARTITION_BYTES])?;
    let first_seen = millis_from_order_preserving(
        key[PARTITION_BYTES..EXPIRY_PREFIX_BYTES]
            .try_into()
            .expect("an 8-byte slice checked above"),
    );
    let idempotency_key = String::from_utf8(key[EXPIRY_PREFIX_BYTES..].to_vec()).ok()?;
    Some((partition, first_seen, idempotency_key))
}

/// Where one input record sits: the key of its output row.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RecordPosition {
    pub partition: Partition,
    pub offset: Offset,
}

impl RecordPosition {
    pub(crate) fn output_key(self) -> [u8; OUTPUT_KEY_BYTES] {
        let offset =
            u64::try_from(self.offset).expect("an output row belongs to a record at offset >= 0");
        let mut key = [0; OUTPUT_KEY_BYTES];
        key[..PARTITION_BYTES].copy_from_slice(&partition_key(self.partition));
        key[PARTITION_BYTES..].copy_from_slice(&offset.to_be_bytes());
        key
    }

    pub(crate) fn from_output_key(key: &[u8]) -> Option<RecordPosition> {
        let key = <&[u8; OUTPUT_KEY_BYTES]>::try_from(key).ok()?;
        let partition = decode_partition_key(&key[..PARTITION_BYTES])?;
        let offset = u64::from_be_bytes(key[PARTITION_BYTES..].try_into().expect("8 bytes"));
        Some(RecordPosition {
            partition,
            offset: Offset::try_from(offset).ok()?,
        })
    }
}

/// Row of the outputs family: what publication needs for one record, kept
/// until its publication is seen on the outcome topic.
#[derive(Clone, PartialEq, prost::Message)]
pub struct StoredOutput {
    /// The record digest over `outputs` (32 bytes).
    #[prost(bytes = "vec", tag = "1")]
    pub digest: Vec<u8>,
    /// One canonical envelope per command, index order.
    #[prost(bytes = "vec", repeated, tag = "2")]
    pub outputs: Vec<Vec<u8>>,
    /// One idempotency key per output; empty for a dead letter.
    #[prost(string, repeated, tag = "3")]
    pub idempotency_keys: Vec<String>,
    /// The input record's stream time, in Unix milliseconds.
    #[prost(int64, tag = "4")]
    pub record_timestamp: i64,
    /// The record's publication was already read when the row was written.
    #[prost(bool, tag = "5")]
    pub publication_seen: bool,
}

impl StoredOutput {
    /// A row for outputs whose publication has not been seen; the digest is
    /// computed here so a row can never disagree with its outputs.
    pub fn new(
        outputs: Vec<Vec<u8>>,
        idempotency_keys: Vec<String>,
        record_timestamp: i64,
    ) -> StoredOutput {
        StoredOutput {
            digest: record_digest(&outputs).0.to_vec(),
            outputs,
            idempotency_keys,
            record_timestamp,
            publication_seen: false,
        }
    }

    pub fn record_digest(&self) -> RecordDigest {
        RecordDigest(
            self.digest
                .as_slice()
                .try_into()
                .expect("a stored output's digest is checked to be 32 bytes"),
        )
    }

    /// Decodes a row and checks it: a digest that is not the digest of the
    /// row's outputs is local corruption, never a value to publish.
    pub(crate) fn decode_row(
        position: RecordPosition,
        bytes: &[u8],
    ) -> Result<StoredOutput, LedgerError> {
        let row = <StoredOutput as prost::Message>::decode(bytes).map_err(|error| {
            LedgerError::undecodable(format!("output row {position:?}: {error}"))
        })?;
        if row.digest.as_slice() != record_digest(&row.outputs).0.as_slice() {
            return Err(LedgerError::undecodable(format!(
                "output row {position:?}: digest does not match its outputs"
            )));
        }
        Ok(row)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        #[test]
        fn expiry_keys_order_by_partition_then_time_then_key(
            a in (0u32..4, any::<i64>(), "[a-c]{0,3}"),
            b in (0u32..4, any::<i64>(), "[a-c]{0,3}"),
        ) {
            let key_a = expiry_key(a.0, StreamTime(a.1), &a.2);
            let key_b = expiry_key(b.0, StreamTime(b.1), &b.2);
            prop_assert_eq!(key_a.cmp(&key_b), a.cmp(&b));
            prop_assert_eq!(decode_expiry_key(&key_a), Some((a.0, StreamTime(a.1), a.2.clone())));
        }

        #[test]
        fn output_keys_order_by_position(
            a in (0u32..4, 0i64..i64::MAX),
            b in (0u32..4, 0i64..i64::MAX),
        ) {
            let a = RecordPosition { partition: a.0, offset: a.1 };
            let b = RecordPosition { partition: b.0, offset: b.1 };
            prop_assert_eq!(a.output_key().cmp(&b.output_key()), a.cmp(&b));
            prop_assert_eq!(RecordPosition::from_output_key(&a.output_key()), Some(a));
        }

        #[test]
        fn watermarks_round_trip(applied in 0i64.., time in any::<i64>(), resume in 0i64..) {
            let watermark = StoredWatermark {
                applied_offset: applied,
                stream_time: StreamTime(time),
                outcome_resume_offset: resume,
            };
            prop_assert_eq!(StoredWatermark::decode(&watermark.encode()), Some(watermark));
        }
    }

    /// covers: ledger.StoredWatermarkIsAnOffset
    #[test]
    fn a_watermark_row_that_is_not_an_offset_does_not_decode() {
        let mut bytes = StoredWatermark {
            applied_offset: 7,
            stream_time: StreamTime(1),
            outcome_resume_offset: 3,
        }
        .encode();
        bytes[0..8].copy_from_slice(&(-1i64).to_be_bytes());
        assert_eq!(StoredWatermark::decode(&bytes), None);
        assert_eq!(StoredWatermark::decode(&bytes[..23]), None);
    }

    #[test]
    #[should_panic(expected = "a stored watermark is an offset")]
    fn a_negative_watermark_is_never_encoded() {
        StoredWatermark {
            applied_offset: -1,
            stream_time: StreamTime(0),
            outcome_resume_offset: 0,
        }
        .encode();
    }

    #[test]
    fn a_row_whose_digest_disagrees_with_its_outputs_is_refused() {
        let position = RecordPosition {
            partition: 0,
            offset: 1,
        };
        let mut row = StoredOutput::new(vec![b"a".to_vec()], vec!["k".into()], 5);
        let bytes = prost::Message::encode_to_vec(&row);
        assert_eq!(StoredOutput::decode_row(position, &bytes).unwrap(), row);
        row.outputs[0] = b"b".to_vec();
        let bytes = prost::Message::encode_to_vec(&row);
        assert!(StoredOutput::decode_row(position, &bytes).is_err());
        assert!(StoredOutput::decode_row(position, &[0xff, 0xff]).is_err());
    }
}
