//! The outcome envelope and the record digest: the bytes instances agree on.

use std::fmt;

use sha2::{Digest as _, Sha256};

use crate::canonical_json::ObjectWriter;
use crate::position::CommandPosition;

/// The verdict an envelope carries. A duplicate carries its original's
/// envelope, so there is no "duplicate" here.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EnvelopeVerdict {
    Accepted,
    Rejected,
    DeadLettered,
}

impl EnvelopeVerdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Accepted => "accepted",
            Self::Rejected => "rejected",
            Self::DeadLettered => "dead_lettered",
        }
    }
}

/// Encodes one command's outcome:
/// `{"partition":P,"offset":O,"index":I,"key":K,"verdict":V,"reason":R,"result":BODY}`
/// with `key` absent only for a dead letter, `reason` present exactly when
/// rejected or dead-lettered, and `result` (the domain's canonical body,
/// embedded verbatim) only when non-empty.
///
/// spec: arbiter.EnvelopeIsCanonicalJson, core.CanonicalEncoding
pub fn encode_envelope(
    position: CommandPosition,
    key: Option<&str>,
    verdict: EnvelopeVerdict,
    reason: Option<&str>,
    result: &[u8],
) -> Vec<u8> {
    assert_eq!(
        reason.is_some(),
        verdict != EnvelopeVerdict::Accepted,
        "a reason is present exactly when the command was not accepted"
    );
    let mut out = Vec::with_capacity(96 + result.len());
    let mut object = ObjectWriter::new(&mut out);
    object
        .integer("partition", i64::from(position.partition))
        .integer("offset", position.offset)
        .integer("index", i64::from(position.index));
    if let Some(key) = key {
        object.string("key", key);
    }
    object.string("verdict", verdict.as_str());
    if let Some(reason) = reason {
        object.string("reason", reason);
    }
    if !result.is_empty() {
        object.raw("result", result);
    }
    object.finish();
    out
}

/// The single output of a record that could not be decoded: index 0, no key.
pub fn dead_letter_envelope(partition: u32, offset: i64, reason: &str) -> Vec<u8> {
    let position = CommandPosition {
        partition,
        offset,
        index: 0,
    };
    encode_envelope(
        position,
        None,
        EnvelopeVerdict::DeadLettered,
        Some(reason),
        &[],
    )
}

/// SHA-256 over one record's outputs in index order.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RecordDigest(pub [u8; 32]);

impl fmt::Display for RecordDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.iter().try_for_each(|byte| write!(f, "{byte:02x}"))
    }
}

impl fmt::Debug for RecordDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RecordDigest({self})")
    }
}

/// Digest input: `u32be(n)`, then per output `u32be(len)` and its bytes, so
/// no two output lists share a digest input.
///
/// spec: arbiter.DigestFramesEveryOutput
pub fn record_digest<O: AsRef<[u8]>>(outputs: &[O]) -> RecordDigest {
    let mut hasher = Sha256::new();
    hasher.update(frame_length(outputs.len()));
    for output in outputs {
        let bytes = output.as_ref();
        hasher.update(frame_length(bytes.len()));
        hasher.update(bytes);
    }
    RecordDigest(hasher.finalize().into())
}

fn frame_length(length: usize) -> [u8; 4] {
    u32::try_from(length)
        .expect("outputs and their counts are bounded far below 4 GiB")
        .to_be_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    const AT: CommandPosition = CommandPosition {
        partition: 2,
        offset: 41,
        index: 3,
    };

    /// covers: arbiter.EnvelopeIsCanonicalJson, core.CanonicalEncoding
    #[test]
    fn envelope_fields_appear_in_the_fixed_order_and_only_when_due() {
        let accepted = encode_envelope(
            AT,
            Some("k-1"),
            EnvelopeVerdict::Accepted,
            None,
            br#"{"level":3}"#,
        );
        assert_eq!(
            String::from_utf8(accepted).expect("UTF-8"),
            r#"{"partition":2,"offset":41,"index":3,"key":"k-1","verdict":"accepted","result":{"level":3}}"#
        );
        let rejected = encode_envelope(
            AT,
            Some("k\"2"),
            EnvelopeVerdict::Rejected,
            Some("idempotency_key_reused"),
            &[],
        );
        assert_eq!(
            String::from_utf8(rejected).expect("UTF-8"),
            r#"{"partition":2,"offset":41,"index":3,"key":"k\"2","verdict":"rejected","reason":"idempotency_key_reused"}"#
        );
        assert_eq!(
            String::from_utf8(dead_letter_envelope(0, 7, "malformed_record")).expect("UTF-8"),
            r#"{"partition":0,"offset":7,"index":0,"verdict":"dead_lettered","reason":"malformed_record"}"#
        );
    }

    /// covers: arbiter.DigestFramesEveryOutput
    #[test]
    fn digests_frame_every_output_so_regrouping_bytes_changes_the_digest() {
        let split = record_digest(&[&b"ab"[..], b"c"]);
        let moved = record_digest(&[&b"a"[..], b"bc"]);
        let joined = record_digest(&[&b"abc"[..]]);
        assert_ne!(split, moved);
        assert_ne!(split, joined);
        assert_eq!(split, record_digest(&[b"ab".to_vec(), b"c".to_vec()]));
        // SHA-256 of u32be(0): the empty output list.
        assert_eq!(
            record_digest::<&[u8]>(&[]).to_string(),
            "df3f619804a92fdb4057192dc43dd748ea778adc52bc498ce80524c014b81119"
        );
    }
}
