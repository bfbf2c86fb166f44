//! Builders shared by the unit tests: envelopes and publications as a
//! correct cluster writes them.

use protocol::envelope::{EnvelopeVerdict, dead_letter_envelope, encode_envelope, record_digest};
use protocol::position::CommandPosition;
use protocol::position::{Offset, Partition};
use protocol::records::Publication;

pub fn position(partition: Partition, offset: Offset, index: u32) -> CommandPosition {
    CommandPosition {
        partition,
        offset,
        index,
    }
}

pub fn accepted(partition: Partition, offset: Offset, index: u32, key: &str) -> Vec<u8> {
    encode_envelope(
        position(partition, offset, index),
        Some(key),
        EnvelopeVerdict::Accepted,
        None,
        br#"{"type":"receive","level":1}"#,
    )
}

pub fn rejected(
    partition: Partition,
    offset: Offset,
    index: u32,
    key: &str,
    reason: &str,
) -> Vec<u8> {
    encode_envelope(
        position(partition, offset, index),
        Some(key),
        EnvelopeVerdict::Rejected,
        Some(reason),
        &[],
    )
}

pub fn dead_letter(partition: Partition, offset: Offset) -> Vec<u8> {
    dead_letter_envelope(partition, offset, "malformed_record")
}

/// An intact publication: the digest is the outputs' record digest.
pub fn publication(
    partition: Partition,
    offset: Offset,
    outputs: Vec<Vec<u8>>,
    record_timestamp: i64,
) -> Publication {
    Publication {
        partition,
        offset,
        digest: record_digest(&outputs).0.to_vec(),
        publisher_id: 0,
        matching_copies: 3,
        outputs,
        idempotency_keys: Vec::new(),
        record_timestamp,
    }
}

/// Outputs all accepted, keyed `key-<index>`.
pub fn accepted_record(partition: Partition, offset: Offset, commands: u32) -> Vec<Vec<u8>> {
    (0..commands)
        .map(|index| accepted(partition, offset, index, &format!("key-{index}")))
        .collect()
}
