//! Storage failures and the typed errors every Ledger call returns.
//!
//! The Ledger never decides to halt: it reports what failed, marks itself
//! failed after a write error, and the node halts the instance
//! (ledger.LedgerOpenFailureAbortsStart, ledger.UntrustworthyWatermarkAbortsStart,
//! ledger.FailedWriteHaltsInstance, ledger.FailedReadHaltsInstance).

use std::fmt;

use protocol::position::Partition;
use rocksdb::ErrorKind;

/// Why the Ledger stopped this instance (spec `StorageFailure`); shown on
/// `/health` and in the alarm log by its spec token.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StorageFailure {
    IoError,
    NoSpace,
    Corruption,
    UndecodableValue,
    StateWithoutWatermark,
    PartitionCountChanged,
}

impl StorageFailure {
    /// The spec's token for this failure.
    pub fn as_str(self) -> &'static str {
        match self {
            StorageFailure::IoError => "io_error",
            StorageFailure::NoSpace => "no_space",
            StorageFailure::Corruption => "corruption",
            StorageFailure::UndecodableValue => "undecodable_value",
            StorageFailure::StateWithoutWatermark => "state_without_watermark",
            StorageFailure::PartitionCountChanged => "partition_count_changed",
        }
    }

    /// What a RocksDB status means for the instance. Corruption is its own
    /// failure (the data dir must be wiped); a full disk is its own failure
    /// (a restart is enough once space is freed); every other status is an
    /// I/O error whose effect on disk is unknown.
    pub fn of_rocksdb_status(kind: ErrorKind, message: &str) -> StorageFailure {
        match kind {
            ErrorKind::Corruption => StorageFailure::Corruption,
            _ if message.contains("No space left on device") || message.contains("NoSpace") => {
                StorageFailure::NoSpace
            }
            _ => StorageFailure::IoError,
        }
    }

    pub(crate) fn of_rocksdb(error: &rocksdb::Error) -> StorageFailure {
        StorageFailure::of_rocksdb_status(error.kind(), error.as_ref())
    }
}

impl fmt::Display for StorageFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Every way a Ledger call fails. Each variant is terminal for the instance:
/// the node halts on any of them and never retries the call.
#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    /// The store could not be opened (ledger.LedgerOpenFailureAbortsStart).
    #[error("ledger cannot be opened ({failure}): {detail}")]
    Open {
        failure: StorageFailure,
        detail: String,
    },
    /// The store opened but cannot be trusted to replay from
    /// (ledger.UntrustworthyWatermarkAbortsStart).
    #[error("ledger is untrustworthy ({failure}, partition {partition:?}): {detail}")]
    Untrustworthy {
        partition: Option<Partition>,
        failure: StorageFailure,
        detail: String,
    },
    /// The synced write of a group commit failed; what reached the disk is
    /// unknown (ledger.FailedWriteHaltsInstance).
    #[error("group commit write failed ({failure}): {detail}")]
    Write {
        failure: StorageFailure,
        detail: String,
    },
    /// A read failed or returned bytes that do not decode
    /// (ledger.FailedReadHaltsInstance).
    #[error("ledger read failed ({failure}): {detail}")]
    Read {
        failure: StorageFailure,
        detail: String,
    },
    /// A write was attempted after an earlier write failed: a failed commit
    /// is never retried and nothing after it is written.
    #[error("ledger failed earlier ({failure}); it takes no more commits")]
    AlreadyFailed { failure: StorageFailure },
}

impl LedgerError {
    pub fn failure(&self) -> StorageFailure {
        match self {
            LedgerError::Open { failure, .. }
            | LedgerError::Untrustworthy { failure, .. }
            | LedgerError::Write { failure, .. }
            | LedgerError::Read { failure, .. }
            | LedgerError::AlreadyFailed { failure } => *failure,
        }
    }

    pub(crate) fn read(error: &rocksdb::Error) -> LedgerError {
        LedgerError::Read {
            failure: StorageFailure::of_rocksdb(error),
            detail: error.to_string(),
        }
    }

    pub(crate) fn undecodable(detail: String) -> LedgerError {
        LedgerError::Read {
            failure: StorageFailure::UndecodableValue,
            detail,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rocksdb_statuses_map_to_spec_failures() {
        assert_eq!(
            StorageFailure::of_rocksdb_status(
                ErrorKind::Corruption,
                "Corruption: block checksum mismatch"
            ),
            StorageFailure::Corruption
        );
        assert_eq!(
            StorageFailure::of_rocksdb_status(
                ErrorKind::IOError,
                "IO error: No space left on device: While appending to file: 000012.log"
            ),
            StorageFailure::NoSpace
        );
        assert_eq!(
            StorageFailure::of_rocksdb_status(ErrorKind::IOError, "IO error: While fsync: bad"),
            StorageFailure::IoError
        );
        assert_eq!(
            StorageFailure::of_rocksdb_status(
                ErrorKind::NotSupported,
                "Not implemented: read only"
            ),
            StorageFailure::IoError
        );
        assert_eq!(
            StorageFailure::PartitionCountChanged.to_string(),
            "partition_count_changed"
        );
    }
}
