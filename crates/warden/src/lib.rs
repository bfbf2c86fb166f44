//! Warden: idempotency on stream time; a duplicate key within the TTL gets the stored response.
//!
//! The deterministic core (`spec/warden.allium`). Per partition, in log
//! order, the shell:
//! 1. asks [`Warden::plan_fetch`] which of a batch's keys the Ledger must be
//!    asked for, and hands the answers to [`Warden::accept_fetched`];
//! 2. calls [`Warden::classify`] for each command: fresh (evaluate it),
//!    duplicate (answered with the stored envelope), duplicate awaiting the
//!    answer of an earlier command of the batch, or key reused (answered
//!    with the `idempotency_key_reused` rejection);
//! 3. hands each fresh command's envelope to [`Warden::record_response`],
//!    which releases the answers of the duplicates that waited for it;
//! 4. at group commit adds [`Warden::commit_delta`] (entries to put,
//!    expired entries to purge) to the WriteBatch, and reports the synced
//!    commit to [`Warden::on_durable`].
//!
//! No clock, no I/O: time is the stream time each command's record carries.

mod config;
mod entry;
mod warden;

pub use config::{ConfigError, WardenConfig};
pub use entry::{EntryDecodeError, Fingerprint, StoredEntry, command_fingerprint};
pub use warden::{
    Classification, EntryPut, EntryStatus, EntryView, ExpiryCandidate, FetchedEntry,
    IncomingCommand, KEY_REUSED_REASON, PurgedEntry, ReleasedAnswer, Warden, WardenCommitDelta,
    WardenError, key_reused_rejection,
};

pub mod shell;
#[cfg(test)]
mod tests;
