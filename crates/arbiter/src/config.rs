//! The Arbiter's bounds and switches, from `spec/arbiter.allium`'s and
//! `spec/core.allium`'s config.

/// `Default` gives the spec's values.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ArbiterConfig {
    /// Threads that evaluate causal groups, the pipeline thread included;
    /// 1 evaluates everything on the pipeline thread.
    pub max_evaluation_workers: usize,
    /// Batches with fewer fresh commands are evaluated on the pipeline thread.
    pub parallel_evaluation_min_commands: usize,
    /// Largest number of records in one batch (core.max_poll_records).
    pub max_batch_records: usize,
    /// Largest number of commands in one record (core.max_pack_commands).
    pub max_pack_commands: usize,
    /// TEST ONLY: corrupt output index 0 of every record before sealing, so
    /// tests can prove the Clerk catches a wrong instance.
    pub corrupt_outputs_for_detection_test: bool,
}

impl Default for ArbiterConfig {
    fn default() -> Self {
        Self {
            max_evaluation_workers: 2,
            parallel_evaluation_min_commands: 256,
            max_batch_records: 512,
            max_pack_commands: 128,
            corrupt_outputs_for_detection_test: false,
        }
    }
}
