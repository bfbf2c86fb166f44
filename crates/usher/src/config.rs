//! The Usher's bounds, as in `spec/usher.allium`'s and `spec/core.allium`'s config.

use std::time::Duration;

use protocol::records::PACK_VERSION;

/// Bounds of record decoding. Every instance must use the same values: they
/// decide which records are dead-lettered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DecodeLimits {
    /// Larger payloads are dead-lettered without being parsed.
    pub max_pack_bytes: usize,
    /// Most commands one pack may hold.
    pub max_pack_commands: usize,
    /// The pack format version this build decodes.
    pub supported_pack_version: u32,
}

impl DecodeLimits {
    /// `core.max_pack_commands`.
    pub const MAX_PACK_COMMANDS: usize = 128;
    /// `core.max_body_bytes`: the largest HTTP body, hence command, the gateway packs.
    pub const MAX_BODY_BYTES: usize = 16_384;
}

impl Default for DecodeLimits {
    fn default() -> Self {
        Self {
            max_pack_bytes: Self::MAX_PACK_COMMANDS * Self::MAX_BODY_BYTES,
            max_pack_commands: Self::MAX_PACK_COMMANDS,
            supported_pack_version: PACK_VERSION,
        }
    }
}

/// Everything a [`crate::PartitionConsumer`] is bounded by.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UsherConfig {
    /// Partitions of the input topic (`core.input_partitions`).
    pub input_partitions: u32,
    /// Largest hand-off batch (`core.max_poll_records`).
    pub max_poll_records: usize,
    /// Unsettled records at which a partition pauses (`core.max_unagreed_records`).
    pub max_unagreed_records: usize,
    /// Records handed on but not yet durable at which a partition pauses.
    pub max_pipeline_records: usize,
    /// Delay before the first retry of a failed fetch; doubles per retry.
    pub fetch_retry_initial: Duration,
    /// Longest delay between fetch retries.
    pub fetch_retry_max: Duration,
    pub decode: DecodeLimits,
}

impl Default for UsherConfig {
    fn default() -> Self {
        const MAX_GROUP_COMMIT_RECORDS: usize = 1024;
        Self {
            input_partitions: 1,
            max_poll_records: 512,
            max_unagreed_records: 8192,
            // One group commit in flight while the next fills.
            max_pipeline_records: MAX_GROUP_COMMIT_RECORDS * 2,
            fetch_retry_initial: Duration::from_millis(10),
            fetch_retry_max: Duration::from_secs(1),
            decode: DecodeLimits::default(),
        }
    }
}

/// A configuration the Usher cannot run with.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("input_partitions must be at least 1")]
    NoPartitions,
    #[error("max_poll_records must be at least 1")]
    EmptyPollBatch,
    /// A paused partition resumes only when a whole poll batch fits under
    /// both bounds; a batch larger than a bound would never resume.
    #[error("max_poll_records ({max_poll_records}) exceeds a pause bound ({bound})")]
    PollBatchAboveBound {
        max_poll_records: usize,
        bound: usize,
    },
    #[error("fetch_retry_initial must be positive and at most fetch_retry_max")]
    FetchRetryDelays,
    #[error("max_pack_commands must be at least 1")]
    NoPackCommands,
}

impl UsherConfig {
    pub fn check(&self) -> Result<(), ConfigError> {
        if self.input_partitions == 0 {
            return Err(ConfigError::NoPartitions);
        }
        if self.max_poll_records == 0 {
            return Err(ConfigError::EmptyPollBatch);
        }
        let tightest_bound = self.max_unagreed_records.min(self.max_pipeline_records);
        if self.max_poll_records > tightest_bound {
            return Err(ConfigError::PollBatchAboveBound {
                max_poll_records: self.max_poll_records,
                bound: tightest_bound,
            });
        }
        if self.fetch_retry_initial.is_zero() || self.fetch_retry_initial > self.fetch_retry_max {
            return Err(ConfigError::FetchRetryDelays);
        }
        if self.decode.max_pack_commands == 0 {
            return Err(ConfigError::NoPackCommands);
        }
        Ok(())
    }
}
