//! The Ledger as the store the Warden and the Registrar read from.

use domain::EntityKey;
use ledger::LedgerReader;
use protocol::position::{Partition, StreamTime};

/// A reader of the Ledger, seen through the Warden's and the Registrar's
/// store traits (their crates do not depend on the Ledger's).
#[derive(Clone, Debug)]
pub struct LedgerStore(pub LedgerReader);

impl warden::shell::WardenStore for LedgerStore {
    fn entries(
        &self,
        partition: Partition,
        keys: &[String],
    ) -> Result<Vec<Option<Vec<u8>>>, warden::shell::StoreError> {
        self.0
            .warden_entries(partition, keys)
            .map_err(|error| warden::shell::StoreError(error.to_string()))
    }

    fn expiry_candidates(
        &self,
        partition: Partition,
        cutoff: StreamTime,
        limit: usize,
    ) -> Result<Vec<warden::ExpiryCandidate>, warden::shell::StoreError> {
        let rows = self
            .0
            .expiry_candidates(partition, cutoff, limit)
            .map_err(|error| warden::shell::StoreError(error.to_string()))?;
        Ok(rows
            .into_iter()
            .map(|row| warden::ExpiryCandidate {
                first_seen: row.first_seen,
                key: row.key,
            })
            .collect())
    }
}

impl registrar::shell::EntityStore for LedgerStore {
    fn entities(
        &self,
        keys: &[EntityKey],
    ) -> Result<Vec<Option<Vec<u8>>>, registrar::shell::StoreError> {
        self.0
            .entities(keys)
            .map_err(|error| registrar::shell::StoreError(error.to_string()))
    }
}
