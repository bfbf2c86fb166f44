//! Ledger: durable state (entities, watermark, Warden entries) in one synced RocksDB WriteBatch per group commit.
