//! An idempotency entry as the Ledger stores it, and the command fingerprint.

use prost::Message as _;
use protocol::position::{CommandPosition, Partition, StreamTime};
use sha2::{Digest as _, Sha256};

/// SHA-256 of a command's bytes as the gateway produced them, without its
/// idempotency key: two submissions under one key are the same command iff
/// their fingerprints are equal.
pub type Fingerprint = [u8; 32];

/// The fingerprint of a command's encoding (`command_fingerprint`).
pub fn command_fingerprint(command: &[u8]) -> Fingerprint {
    Sha256::digest(command).into()
}

/// One recorded entry: the first answer to an idempotency key within its
/// partition. The Ledger stores [`StoredEntry::encode`] under
/// `u32be(partition) + key` and an expiry index row `(partition, first_seen, key)`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredEntry {
    pub partition: Partition,
    pub key: String,
    pub fingerprint: Fingerprint,
    /// Where the key was first answered; its partition is `partition`.
    pub first_position: CommandPosition,
    /// Stream time of the record that first carried the key.
    pub first_seen: StreamTime,
    /// The first answer's envelope, byte for byte; never empty.
    pub response: Vec<u8>,
}

/// The stored encoding's version; any other is rejected.
const ENTRY_VERSION: u32 = 1;

/// The prost message behind [`StoredEntry`]'s bytes.
#[derive(Clone, PartialEq, prost::Message)]
struct EntryRecord {
    #[prost(uint32, tag = "1")]
    version: u32,
    #[prost(uint32, tag = "2")]
    partition: u32,
    #[prost(string, tag = "3")]
    key: String,
    #[prost(bytes = "vec", tag = "4")]
    fingerprint: Vec<u8>,
    #[prost(int64, tag = "5")]
    first_offset: i64,
    #[prost(uint32, tag = "6")]
    first_index: u32,
    #[prost(int64, tag = "7")]
    first_seen_millis: i64,
    #[prost(bytes = "vec", tag = "8")]
    response: Vec<u8>,
}

/// Why stored bytes are not an entry. Any of them means the store cannot be
/// trusted: the instance halts rather than answer from it.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum EntryDecodeError {
    #[error("undecodable entry: {0}")]
    Malformed(#[from] prost::DecodeError),
    #[error("unsupported entry version {0}")]
    UnsupportedVersion(u32),
    #[error("fingerprint of {0} bytes, expected 32")]
    FingerprintLength(usize),
    #[error("negative first offset {0}")]
    NegativeOffset(i64),
    #[error("empty response")]
    EmptyResponse,
}

impl StoredEntry {
    /// spec: warden.EntryPartitionMatchesPosition
    pub fn encode(&self) -> Vec<u8> {
        assert_eq!(
            self.first_position.partition, self.partition,
            "an entry lives in the partition of its first position"
        );
        assert!(
            !self.response.is_empty(),
            "only answered entries are stored"
        );
        EntryRecord {
            version: ENTRY_VERSION,
            partition: self.partition,
            key: self.key.clone(),
            fingerprint: self.fingerprint.to_vec(),
            first_offset: self.first_position.offset,
            first_index: self.first_position.index,
            first_seen_millis: self.first_seen.millis(),
            response: self.response.clone(),
        }
        .encode_to_vec()
    }

    /// The partition is stored once, so a decoded entry always lies in the
    /// partition of its first position.
    ///
    /// spec: warden.EntryPartitionMatchesPosition
    pub fn decode(bytes: &[u8]) -> Result<StoredEntry, EntryDecodeError> {
        let record = EntryRecord::decode(bytes)?;
        if record.version != ENTRY_VERSION {
            return Err(EntryDecodeError::UnsupportedVersion(record.version));
        }
        let fingerprint = Fingerprint::try_from(record.fingerprint.as_slice())
            .map_err(|_| EntryDecodeError::FingerprintLength(record.fingerprint.len()))?;
        if record.first_offset < 0 {
            return Err(EntryDecodeError::NegativeOffset(record.first_offset));
        }
        if record.response.is_empty() {
            return Err(EntryDecodeError::EmptyResponse);
        }
        Ok(StoredEntry {
            partition: record.partition,
            key: record.key,
            fingerprint,
            first_position: CommandPosition {
                partition: record.partition,
                offset: record.first_offset,
                index: record.first_index,
            },
            first_seen: StreamTime(record.first_seen_millis),
            response: record.response,
        })
    }
}
