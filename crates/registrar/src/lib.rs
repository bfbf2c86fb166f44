//! Registrar: bounded entity cache, pre-warming and the persistence watermark.
//!
//! Before the Arbiter evaluates a batch of one partition, the Registrar pins
//! every entity its fresh commands touch, with one Ledger multi-get for the
//! keys not cached; the Arbiter then reads them from the Registrar
//! ([`domain::EntityStates`]). Writes of accepted commands stay in the cache
//! as dirty entries until their group commit is durable; only clean,
//! unpinned entries are evicted, least recently used first. A batch that
//! does not fit is split on a record boundary or waits for a durable commit.
//! The cache is invisible in outputs: every read returns the last write in
//! log order, whatever the capacity.
//!
//! The Registrar also keeps each partition's persistence watermark, which
//! only a durable commit moves, and only up.
//!
//! Deterministic core only: no I/O, no clock, no threads. See
//! [`Registrar`] for the call sequence the shell follows.

mod cache;
mod config;
mod registrar;

pub use cache::{CacheEntryStatus, Unavailable, WrittenAt};
pub use config::{ConfigError, RegistrarConfig};
pub use registrar::{
    Admission, AdmitError, ApplyError, BatchStart, CacheStats, DurableError, DurableOutcome,
    EntityWriteAt, LoadError, LoadedWatermark, PendingPrewarm, PrewarmedBatch, RecordKeys, Refused,
    Registrar, StartError, StateUnavailable, WatermarkAdvanced,
};
pub mod shell;
