//! Synced group commits against real RocksDB in a temporary directory.
//!
//! - `group_commit/1024x16`: one commit of 1024 records, each a pack of 16
//!   commands writing 16 entity states and 16 Warden entries and keeping
//!   16 outputs; throughput in records (commits/s = 1 / time).
//! - `group_commit/1x1`: one record with one command per commit.
//! - `raw_synced_put`: one RocksDB put with sync=true, for comparison.

use std::time::Duration;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use domain::{EntityKey, EntityWrite};
use ledger::{
    GroupCommit, Ledger, LedgerConfig, RecordPosition, SealedRecord, StoredOutput, WardenChange,
};
use protocol::position::{Offset, StreamTime};
use tempfile::TempDir;

const WORKING_SET_KEYS: i64 = 100_000;

fn sealed_record(offset: Offset, commands: i64) -> SealedRecord {
    let commands_at = |index: i64| offset * commands + index;
    SealedRecord {
        position: RecordPosition { partition: 0, offset },
        stream_time: StreamTime(offset),
        entity_writes: (0..commands)
            .map(|index| EntityWrite {
                key: EntityKey::new(format!("wh{}/sku{:06}", index % 4, commands_at(index) % WORKING_SET_KEYS)),
                state: commands_at(index).to_be_bytes().to_vec(),
            })
            .collect(),
        output: StoredOutput::new(
            (0..commands)
                .map(|index| format!("{{\"verdict\":\"accepted\",\"position\":\"0/{offset}#{index}\",\"body\":{{\"level\":42}}}}").into_bytes())
                .collect(),
            (0..commands).map(|index| format!("idem-{}", commands_at(index))).collect(),
            offset,
        ),
    }
}

fn group_commit(first_offset: Offset, records: i64, commands: i64) -> GroupCommit {
    let mut commit = GroupCommit::new(records as usize);
    for offset in first_offset..first_offset + records {
        commit.push(sealed_record(offset, commands));
        for index in 0..commands {
            commit.push_warden_change(WardenChange::Put {
                partition: 0,
                key: format!("idem-{}", offset * commands + index),
                first_seen: StreamTime(offset),
                entry: vec![7; 120],
            });
        }
    }
    commit.set_outcome_resume_offset(0, 0);
    commit
}

fn bench_group_commit(c: &mut Criterion, records: i64, commands: i64) {
    let dir = TempDir::new().expect("temporary directory");
    let mut ledger = Ledger::open(dir.path(), LedgerConfig::new(1)).expect("ledger opens");
    let mut next_offset = 0;
    let mut group = c.benchmark_group("group_commit");
    group.throughput(Throughput::Elements(records as u64));
    group.bench_function(format!("{records}x{commands}"), |b| {
        b.iter_batched(
            || {
                let commit = group_commit(next_offset, records, commands);
                next_offset += records;
                commit
            },
            |commit| ledger.write(commit).expect("synced write"),
            BatchSize::PerIteration,
        )
    });
    group.finish();
}

fn group_commits(c: &mut Criterion) {
    bench_group_commit(c, 1024, 16);
    bench_group_commit(c, 1, 1);
}

fn raw_synced_put(c: &mut Criterion) {
    let dir = TempDir::new().expect("temporary directory");
    let mut options = rocksdb::Options::default();
    options.create_if_missing(true);
    let db = rocksdb::DB::open(&options, dir.path()).expect("rocksdb opens");
    let mut write_options = rocksdb::WriteOptions::default();
    write_options.set_sync(true);
    let mut key: u64 = 0;
    let mut group = c.benchmark_group("raw_synced_put");
    group.throughput(Throughput::Elements(1));
    group.bench_function("put", |b| {
        b.iter(|| {
            key += 1;
            db.put_opt(key.to_be_bytes(), [0u8; 64], &write_options)
                .expect("synced put")
        })
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20).measurement_time(Duration::from_secs(5));
    targets = group_commits, raw_synced_put
}
criterion_main!(benches);
