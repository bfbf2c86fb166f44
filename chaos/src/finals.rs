//! Each instance's final state, read from its Ledger once its node has
//! stopped: applied offsets, every stock level the input log names, the
//! record digests it still retains, and a digest of that state.
//!
//! The node exposes no listing of its state over HTTP, so the stopped
//! store is opened directly (RocksDB allows one process at a time).

use std::collections::BTreeSet;
use std::path::Path;

use domain::EntityKey;
use domain::inventory::{decode_level, stock_key};
use ledger::{Ledger, LedgerConfig, LedgerError};
use sha2::{Digest as _, Sha256};

use crate::history::{
    AppliedOffset, HexBytes, InputRecord, InstanceFinal, InstanceId, InstanceRecordDigest, StockRow,
};

/// Retained output rows read per page.
const OUTPUT_PAGE: usize = 1_024;

#[derive(Debug, thiserror::Error)]
pub enum FinalStateError {
    #[error("instance {instance}'s Ledger: {source}")]
    Ledger {
        instance: InstanceId,
        #[source]
        source: LedgerError,
    },
    #[error("instance {instance}: stock level {key:?} is not canonical: {detail}")]
    CorruptLevel {
        instance: InstanceId,
        key: String,
        detail: String,
    },
}

/// Every (warehouse, sku) level the input log's commands name.
pub fn named_levels(input: &[InputRecord]) -> BTreeSet<(String, String)> {
    input
        .iter()
        .flat_map(InputRecord::commands)
        .flat_map(|command| command.command.levels())
        .map(|(warehouse, sku)| (warehouse.to_owned(), sku.to_owned()))
        .collect()
}

/// Reads the stopped instance's store at `dir`.
pub fn read_final(
    instance: InstanceId,
    dir: &Path,
    partitions: u32,
    levels: &BTreeSet<(String, String)>,
) -> Result<InstanceFinal, FinalStateError> {
    let ledger_error = |source| FinalStateError::Ledger { instance, source };
    let ledger = Ledger::open(dir, LedgerConfig::new(partitions)).map_err(ledger_error)?;
    let applied: Vec<AppliedOffset> = ledger
        .watermarks()
        .into_iter()
        .map(|watermark| AppliedOffset {
            partition: watermark.partition,
            offset: watermark.applied_offset,
        })
        .collect();
    let reader = ledger.reader();
    let keys: Vec<EntityKey> = levels.iter().map(|(w, s)| stock_key(w, s)).collect();
    let states = reader.entities(&keys).map_err(ledger_error)?;
    let mut stock = Vec::new();
    for (((warehouse, sku), key), state) in levels.iter().zip(&keys).zip(states) {
        let Some(state) = state else {
            continue;
        };
        let quantity =
            decode_level(key, Some(&state)).map_err(|corrupt| FinalStateError::CorruptLevel {
                instance,
                key: key.as_str().to_owned(),
                detail: corrupt.detail,
            })?;
        stock.push(StockRow {
            warehouse: warehouse.clone(),
            sku: sku.clone(),
            quantity,
        });
    }
    let mut record_digests = Vec::new();
    reader
        .for_each_retained_output(OUTPUT_PAGE, |position, row| {
            record_digests.push(InstanceRecordDigest {
                partition: position.partition,
                offset: position.offset,
                digest: row.record_digest().into(),
            });
        })
        .map_err(ledger_error)?;
    Ok(InstanceFinal {
        instance,
        state_digest: Some(state_digest(&applied, &stock)),
        applied,
        stock,
        record_digests,
    })
}

/// SHA-256 over the applied offsets and the levels in order: equal for two
/// instances exactly when both read the same state.
fn state_digest(applied: &[AppliedOffset], stock: &[StockRow]) -> HexBytes {
    let mut hasher = Sha256::new();
    for offset in applied {
        hasher.update(offset.partition.to_be_bytes());
        hasher.update(offset.offset.to_be_bytes());
    }
    for row in stock {
        for text in [&row.warehouse, &row.sku] {
            hasher.update((text.len() as u64).to_be_bytes());
            hasher.update(text.as_bytes());
        }
        hasher.update(row.quantity.to_be_bytes());
    }
    HexBytes(hasher.finalize().to_vec())
}
