//! Prost messages carried in Kafka records.

/// The pack format version this build writes and decodes.
pub const PACK_VERSION: u32 = 1;

/// One record on the input topic: many submitted commands, so that broker
/// and consumer work follows records, not commands.
#[derive(Clone, PartialEq, prost::Message)]
pub struct CommandPack {
    #[prost(uint32, tag = "1")]
    pub version: u32,
    #[prost(message, repeated, tag = "2")]
    pub submissions: Vec<Submission>,
}

/// One client submission inside a pack; `command` is the domain's encoding.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Submission {
    #[prost(string, tag = "1")]
    pub idempotency_key: String,
    #[prost(bytes = "vec", tag = "2")]
    pub command: Vec<u8>,
}

/// One record on the outcome topic: the agreed outputs of one input record.
/// Readers deduplicate by (partition, offset): a backup may publish the same
/// record again after its priority delay.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Publication {
    #[prost(uint32, tag = "1")]
    pub partition: u32,
    #[prost(int64, tag = "2")]
    pub offset: i64,
    /// The agreed record digest (32 bytes).
    #[prost(bytes = "vec", tag = "3")]
    pub digest: Vec<u8>,
    #[prost(uint32, tag = "4")]
    pub publisher_id: u32,
    #[prost(uint32, tag = "5")]
    pub matching_copies: u32,
    /// One canonical envelope per command, index order.
    #[prost(bytes = "vec", repeated, tag = "6")]
    pub outputs: Vec<Vec<u8>>,
    /// One per output; empty for a dead letter.
    #[prost(string, repeated, tag = "7")]
    pub idempotency_keys: Vec<String>,
    /// The input record's stream time, in Unix milliseconds.
    #[prost(int64, tag = "8")]
    pub record_timestamp: i64,
}

/// One record on the dead-letter topic.
#[derive(Clone, PartialEq, prost::Message)]
pub struct DeadLetterRecord {
    #[prost(uint32, tag = "1")]
    pub partition: u32,
    #[prost(int64, tag = "2")]
    pub offset: i64,
    /// A fixed token (usher.DeadLetterReason), never decoder error text.
    #[prost(string, tag = "3")]
    pub reason: String,
    /// For `invalid_command`: which command of the pack failed.
    #[prost(uint32, optional, tag = "4")]
    pub command_index: Option<u32>,
}

#[cfg(test)]
mod tests {
    use prost::Message;

    use super::*;

    #[test]
    fn a_pack_round_trips_and_unknown_bytes_fail_to_decode() {
        let pack = CommandPack {
            version: PACK_VERSION,
            submissions: vec![Submission {
                idempotency_key: "k".into(),
                command: vec![1, 2, 3],
            }],
        };
        let bytes = pack.encode_to_vec();
        assert_eq!(CommandPack::decode(bytes.as_slice()), Ok(pack));
        assert!(CommandPack::decode(&[0xff, 0xff, 0xff][..]).is_err());
    }
}
