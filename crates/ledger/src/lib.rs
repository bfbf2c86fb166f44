//! Ledger: durable state (entities, watermark, Warden entries) in one synced RocksDB WriteBatch per group commit.
//!
//! The I/O crate of an instance: [`Ledger`] owns the RocksDB store (layout in
//! [`codec`]) and is its only writer; [`LedgerReader`] serves the read paths
//! from any thread. Around it, three deterministic cores the node drives:
//!
//! - [`CommitScheduler`]: when to cut a group commit (size, window, idle);
//! - [`PublicationTracker`]: which output rows to prune, which publications
//!   were read ahead, and where the outcome reader resumes;
//! - [`DiskGuard`]: pausing intake on low disk, with hysteresis.
//!
//! One group commit, in order: the scheduler cuts a [`GroupCommit`];
//! [`PublicationTracker::prepare`] adds prunes and outcome resume offsets;
//! the Warden adds its [`WardenChange`]s per [`CommitRange`]
//! (ledger.GroupCommitAssembled); [`Ledger::write`] writes it as one synced
//! WriteBatch on the one blocking writer thread and returns a
//! [`DurableCommit`]; then [`PublicationTracker::commit_durable`] and
//! [`CommitScheduler::sync_finished`], and the Registrar, Warden and Clerk
//! learn of it.
//!
//! Errors: every call returns a typed [`LedgerError`]; the node halts the
//! instance on any of them (while starting for open and vetting failures,
//! ledger.LedgerOpenFailureAbortsStart and
//! ledger.UntrustworthyWatermarkAbortsStart; later for write and read
//! failures, ledger.FailedWriteHaltsInstance and
//! ledger.FailedReadHaltsInstance). The Ledger itself refuses every commit
//! after a failed write and never retries one.

pub mod codec;
pub mod commit;
pub mod disk;
pub mod error;
pub mod publication;
pub mod scheduler;
pub mod store;

pub use codec::{RecordPosition, StoredOutput, StoredWatermark};
pub use commit::{CommitRange, DurableCommit, GroupCommit, SealedRecord, WardenChange};
pub use disk::{DiskGuard, DiskLimits, IntakeChange};
pub use error::{LedgerError, StorageFailure};
pub use publication::{PublicationNote, PublicationTracker};
pub use scheduler::{CommitLimits, CommitScheduler};
pub use store::{ExpiryCandidate, Ledger, LedgerConfig, LedgerReader, PartitionWatermark};
pub mod shell;
