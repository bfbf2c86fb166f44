//! The Registrar's bounds, from `spec/registrar.allium`'s and
//! `spec/core.allium`'s config.

/// `Default` gives the spec's values; tests shrink them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RegistrarConfig {
    /// Entries the cache may hold (core.max_cached_entities).
    pub max_cached_entities: usize,
    /// Most commands one record carries (core.max_pack_commands).
    pub max_pack_commands: usize,
    /// Most keys the domain declares for one command
    /// (registrar.max_keys_per_command).
    pub max_keys_per_command: usize,
}

impl Default for RegistrarConfig {
    fn default() -> Self {
        Self {
            max_cached_entities: 262_144,
            max_pack_commands: 128,
            max_keys_per_command: 2,
        }
    }
}

impl RegistrarConfig {
    /// Most distinct keys one record may touch.
    pub fn max_keys_per_record(&self) -> usize {
        self.max_pack_commands
            .saturating_mul(self.max_keys_per_command)
    }

    /// Refuses a configuration under which a batch split could stop making
    /// progress: the biggest record must fit an empty cache.
    ///
    /// spec: registrar.SingleRecordFitsInCache
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.max_pack_commands == 0 || self.max_keys_per_command == 0 {
            return Err(ConfigError::ZeroRecordBound);
        }
        if self.max_keys_per_record() > self.max_cached_entities {
            return Err(ConfigError::RecordDoesNotFitCache {
                max_keys_per_record: self.max_keys_per_record(),
                max_cached_entities: self.max_cached_entities,
            });
        }
        Ok(())
    }
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("max_pack_commands and max_keys_per_command must be at least 1")]
    ZeroRecordBound,
    #[error(
        "a record may touch {max_keys_per_record} keys but the cache holds only \
         {max_cached_entities}: a batch could never be split to fit"
    )]
    RecordDoesNotFitCache {
        max_keys_per_record: usize,
        max_cached_entities: usize,
    },
}
