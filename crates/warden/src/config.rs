//! The Warden's bounds, as in `spec/warden.allium`'s and `spec/core.allium`'s config.

/// Everything a [`crate::Warden`] is bounded by. Every instance must use the
/// same TTL: it decides which commands are duplicates.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WardenConfig {
    /// How long an entry stays live, on stream time (`core.idempotency_ttl`).
    pub idempotency_ttl_millis: i64,
    /// Most entries one group commit may write per partition
    /// (`warden.max_entries_per_commit`).
    pub max_entries_per_commit: usize,
    /// Most expired entries one group commit purges per partition
    /// (`warden.max_purges_per_commit`).
    pub max_purges_per_commit: usize,
    /// Most entries of one partition created and not yet handed to a commit
    /// (`warden.max_uncommitted_entries`).
    pub max_uncommitted_entries: usize,
}

impl WardenConfig {
    /// `core.idempotency_ttl`: 10 minutes.
    pub const IDEMPOTENCY_TTL_MILLIS: i64 = 10 * 60 * 1000;
    const MAX_PACK_COMMANDS: usize = 128;
    const MAX_GROUP_COMMIT_RECORDS: usize = 1024;
    /// `usher.max_pipeline_records`: records handed on and not yet durable.
    const MAX_PIPELINE_RECORDS: usize = Self::MAX_GROUP_COMMIT_RECORDS * 2;

    pub fn check(&self) -> Result<(), ConfigError> {
        if self.idempotency_ttl_millis <= 0 {
            return Err(ConfigError::NonPositiveTtl);
        }
        if self.max_entries_per_commit == 0 {
            return Err(ConfigError::NoEntriesPerCommit);
        }
        if self.max_purges_per_commit == 0 {
            return Err(ConfigError::NoPurgesPerCommit);
        }
        if self.max_uncommitted_entries == 0 {
            return Err(ConfigError::NoUncommittedEntries);
        }
        Ok(())
    }
}

impl Default for WardenConfig {
    fn default() -> Self {
        Self {
            idempotency_ttl_millis: Self::IDEMPOTENCY_TTL_MILLIS,
            max_entries_per_commit: Self::MAX_GROUP_COMMIT_RECORDS * Self::MAX_PACK_COMMANDS,
            max_purges_per_commit: 4096,
            max_uncommitted_entries: Self::MAX_PIPELINE_RECORDS * Self::MAX_PACK_COMMANDS,
        }
    }
}

/// A configuration the Warden cannot run with.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("idempotency_ttl must be positive")]
    NonPositiveTtl,
    #[error("max_entries_per_commit must be at least 1")]
    NoEntriesPerCommit,
    /// With no purges, expired entries would pile up forever.
    #[error("max_purges_per_commit must be at least 1")]
    NoPurgesPerCommit,
    #[error("max_uncommitted_entries must be at least 1")]
    NoUncommittedEntries,
}
