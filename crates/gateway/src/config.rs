//! The gateway's bounds and timings, as in `spec/gateway.allium` and
//! `spec/core.allium`'s config.

use domain::inventory::InventoryLimits;

/// Milliseconds on the shell's monotonic clock. The core never reads a
/// clock: every operation that needs time is handed `now`.
pub type Millis = u64;

/// Every bound the gateway enforces. `Default` gives the spec's values.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GatewayConfig {
    /// Partitions of the input topic (`core.input_partitions`).
    pub input_partitions: u32,
    /// Largest request body read (`core.max_body_bytes`).
    pub max_body_bytes: usize,
    /// Longest idempotency key, in UTF-8 bytes.
    pub max_idempotency_key_bytes: usize,
    /// Commands per pack, that is per input record (`core.max_pack_commands`).
    pub max_pack_commands: usize,
    /// How long a pack stays open for more commands (`core.pack_flush_window`).
    pub pack_flush_window_ms: Millis,
    /// How long a submission waits for its agreed outcome (`core.submit_timeout`).
    pub submit_timeout_ms: Millis,
    /// Submissions waiting at once before new ones are shed with 503.
    pub max_pending_submissions: usize,
    /// The Warden's idempotency window in stream time (`core.idempotency_ttl`),
    /// which the key index mirrors.
    pub idempotency_ttl_ms: i64,
    /// Keys the command lookup remembers at once.
    pub max_key_index_entries: usize,
    /// Outputs of observed publications held at once.
    pub max_observed_outputs: usize,
    /// The domain's bounds, shared with the Usher's validation.
    pub inventory: InventoryLimits,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        Self {
            input_partitions: 1,
            max_body_bytes: 16 * 1024,
            max_idempotency_key_bytes: 128,
            max_pack_commands: 128,
            pack_flush_window_ms: 20,
            submit_timeout_ms: 5_000,
            max_pending_submissions: 65_536,
            idempotency_ttl_ms: 10 * 60 * 1_000,
            max_key_index_entries: 262_144,
            max_observed_outputs: 262_144,
            inventory: InventoryLimits::default(),
        }
    }
}

impl GatewayConfig {
    /// Panics on a configuration the gateway cannot run with; called once
    /// at start, so a bad config never reaches traffic.
    pub fn assert_valid(&self) {
        assert!(self.input_partitions > 0, "at least one input partition");
        assert!(
            self.max_pack_commands > 0,
            "a pack holds at least one command"
        );
        assert!(
            self.max_observed_outputs >= self.max_pack_commands,
            "one full record's outputs fit the observed-outcome bound"
        );
        assert!(
            self.max_pending_submissions > 0,
            "at least one submission may wait"
        );
        assert!(
            self.max_key_index_entries > 0,
            "the key index holds at least one key"
        );
        assert!(self.idempotency_ttl_ms > 0, "a positive idempotency window");
    }
}
