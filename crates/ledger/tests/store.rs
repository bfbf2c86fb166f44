//! The Ledger against real RocksDB in temporary directories.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};

use domain::{EntityKey, EntityWrite};
use ledger::{
    ExpiryCandidate, GroupCommit, Ledger, LedgerConfig, LedgerError, RecordPosition, SealedRecord,
    StorageFailure, StoredOutput, WardenChange,
};
use proptest::prelude::*;
use protocol::position::{Offset, Partition, StreamTime};
use tempfile::TempDir;

const FIRST_ROW: RecordPosition = RecordPosition {
    partition: 0,
    offset: 0,
};

fn key(text: &str) -> EntityKey {
    EntityKey::new(text.to_owned())
}

fn record(partition: Partition, offset: Offset, writes: &[(&str, &str)]) -> SealedRecord {
    SealedRecord {
        position: RecordPosition { partition, offset },
        stream_time: StreamTime(1_000 + offset),
        entity_writes: writes
            .iter()
            .map(|(text, state)| EntityWrite {
                key: key(text),
                state: state.as_bytes().to_vec(),
            })
            .collect(),
        output: StoredOutput::new(
            vec![format!("outcome {partition}/{offset}").into_bytes()],
            vec![format!("idem-{partition}-{offset}")],
            1_000 + offset,
        ),
    }
}

/// A commit of `records` whose ranges all resume the outcome reader at `resume`.
fn commit_of(records: Vec<SealedRecord>, resume: Offset) -> GroupCommit {
    let mut commit = GroupCommit::new(1024);
    for record in records {
        commit.push(record);
    }
    let partitions: Vec<Partition> = commit.ranges().map(|range| range.partition).collect();
    for partition in partitions {
        commit.set_outcome_resume_offset(partition, resume);
    }
    commit
}

fn open(dir: &Path, partitions: u32) -> Ledger {
    Ledger::open(dir, LedgerConfig::new(partitions)).expect("the store opens")
}

fn states(ledger: &Ledger, keys: &[&str]) -> Vec<Option<String>> {
    let keys: Vec<EntityKey> = keys.iter().map(|text| key(text)).collect();
    ledger
        .reader()
        .entities(&keys)
        .expect("entities read")
        .into_iter()
        .map(|state| state.map(|bytes| String::from_utf8(bytes).expect("utf-8 test states")))
        .collect()
}

fn applied(ledger: &Ledger) -> Vec<Offset> {
    ledger
        .watermarks()
        .iter()
        .map(|w| w.applied_offset)
        .collect()
}

fn put_entry(partition: Partition, idempotency_key: &str, first_seen: i64) -> WardenChange {
    WardenChange::Put {
        partition,
        key: idempotency_key.to_owned(),
        first_seen: StreamTime(first_seen),
        entry: format!("entry {idempotency_key}").into_bytes(),
    }
}

/// Writes rows straight into the store's column families, as corruption or
/// a foreign writer would.
fn raw_put(dir: &Path, family: &str, key: &[u8], value: &[u8]) {
    let families = [
        "entities",
        "watermarks",
        "warden_entries",
        "warden_expiry",
        "outputs",
    ];
    let mut options = rocksdb::Options::default();
    options.create_if_missing(true);
    options.create_missing_column_families(true);
    let db = rocksdb::DB::open_cf(&options, dir, families).expect("raw open");
    db.put_cf(db.cf_handle(family).expect("family exists"), key, value)
        .expect("raw put");
}

fn untrustworthy(dir: &Path, partitions: u32) -> (Option<Partition>, StorageFailure) {
    match Ledger::open(dir, LedgerConfig::new(partitions)) {
        Err(LedgerError::Untrustworthy {
            partition, failure, ..
        }) => (partition, failure),
        other => panic!("expected an untrustworthy store, got {other:?}"),
    }
}

/// covers: ledger.AtomicGroupCommit, ledger.StoreEntityStateAsOfCommit, ledger.AdvancePartitionWatermark, ledger.WriteCommitAsOneSyncedBatch
#[test]
fn a_commit_is_all_or_nothing_across_a_reopen() {
    let dir = TempDir::new().unwrap();
    {
        let mut ledger = open(dir.path(), 2);
        let mut commit = commit_of(
            vec![
                record(0, 0, &[("a", "1"), ("b", "1")]),
                record(1, 0, &[("c", "1")]),
                record(0, 1, &[("a", "2")]),
            ],
            7,
        );
        commit.push_warden_change(put_entry(0, "k0", 1_000));
        commit.push_warden_change(put_entry(1, "k1", 1_000));
        let durable = ledger.write(commit).expect("synced write");
        assert_eq!(durable.outputs.len(), 3);

        // A commit assembled but never written leaves nothing behind.
        let mut dropped = commit_of(vec![record(0, 2, &[("a", "3"), ("d", "1")])], 9);
        dropped.push_warden_change(put_entry(0, "k2", 1_002));
        drop(dropped);
    }
    let ledger = open(dir.path(), 2);
    assert_eq!(
        states(&ledger, &["a", "b", "c", "d"]),
        vec![Some("2".into()), Some("1".into()), Some("1".into()), None],
        "states as of the commit's last records, nothing of the dropped commit"
    );
    assert_eq!(applied(&ledger), vec![1, 0]);
    let reader = ledger.reader();
    assert_eq!(
        reader.warden_entries(0, &["k0", "k2"]).unwrap(),
        vec![Some(b"entry k0".to_vec()), None]
    );
    assert_eq!(
        reader.warden_entries(1, &["k1"]).unwrap(),
        vec![Some(b"entry k1".to_vec())]
    );
    let rows: Vec<RecordPosition> = reader
        .retained_outputs(FIRST_ROW, 100)
        .unwrap()
        .into_iter()
        .map(|(position, _)| position)
        .collect();
    assert_eq!(
        rows,
        vec![
            RecordPosition {
                partition: 0,
                offset: 0
            },
            RecordPosition {
                partition: 0,
                offset: 1
            },
            RecordPosition {
                partition: 1,
                offset: 0
            },
        ]
    );
}

/// covers: ledger.LoadWatermarksAtStart, recovery.WatermarkNeverDecreases, ledger.DurableCommitCoveredByWatermark
#[test]
fn a_reopen_restores_watermark_stream_time_and_outcome_resume_offset() {
    let dir = TempDir::new().unwrap();
    {
        let ledger = open(dir.path(), 2);
        let fresh: Vec<_> = ledger
            .watermarks()
            .iter()
            .map(|w| (w.applied_offset, w.stream_time, w.outcome_resume_offset))
            .collect();
        assert_eq!(
            fresh,
            vec![(-1, StreamTime::EPOCH, 0); 2],
            "a fresh store has applied nothing"
        );
    }
    {
        let mut ledger = open(dir.path(), 2);
        ledger
            .write(commit_of(vec![record(1, 4, &[]), record(1, 5, &[])], 11))
            .unwrap();
        ledger
            .write(commit_of(vec![record(1, 6, &[])], 12))
            .unwrap();
        assert_eq!(
            applied(&ledger),
            vec![-1, 6],
            "the durable commit is covered by the watermark"
        );
    }
    let ledger = open(dir.path(), 2);
    let watermark = ledger.watermarks()[1];
    assert_eq!(watermark.applied_offset, 6);
    assert_eq!(watermark.stream_time, StreamTime(1_006));
    assert_eq!(watermark.outcome_resume_offset, 12);
    assert_eq!(ledger.watermarks()[0].applied_offset, -1);
}

/// covers: ledger.WatermarkMonotoneWithinProcess, ledger.UndurableCommitBeyondWatermark
#[test]
#[should_panic(expected = "a commit starts after the stored watermark")]
fn a_commit_at_or_below_the_watermark_is_refused() {
    let dir = TempDir::new().unwrap();
    let mut ledger = open(dir.path(), 1);
    ledger.write(commit_of(vec![record(0, 3, &[])], 0)).unwrap();
    ledger.write(commit_of(vec![record(0, 3, &[])], 0)).unwrap();
}

/// covers: recovery.WatermarkNeverDecreases
#[test]
#[should_panic(expected = "a commit starts after the stored watermark")]
fn after_a_restart_a_commit_below_the_stored_watermark_is_refused() {
    let dir = TempDir::new().unwrap();
    open(dir.path(), 1)
        .write(commit_of(vec![record(0, 3, &[])], 0))
        .unwrap();
    open(dir.path(), 1)
        .write(commit_of(vec![record(0, 2, &[])], 0))
        .unwrap();
}

/// covers: ledger.StoredOutputsNotAheadOfWatermark
#[test]
#[should_panic(expected = "only rows at or below the watermark exist to prune")]
fn pruning_a_row_above_the_watermark_is_refused() {
    let dir = TempDir::new().unwrap();
    let mut commit = commit_of(vec![record(0, 3, &[])], 0);
    commit.prune_output(RecordPosition {
        partition: 0,
        offset: 4,
    });
    open(dir.path(), 1).write(commit).unwrap();
}

/// covers: ledger.NoSyncPerCommand
#[test]
fn each_commit_syncs_the_wal_once_whatever_its_size() {
    let dir = TempDir::new().unwrap();
    let config = LedgerConfig {
        collect_statistics: true,
        ..LedgerConfig::new(1)
    };
    let mut ledger = Ledger::open(dir.path(), config).unwrap();
    assert_eq!(ledger.wal_syncs(), Some(0));
    for commit in 0..3 {
        let records = (0..200)
            .map(|i| {
                let offset = commit * 200 + i;
                record(0, offset, &[(&format!("e{offset}"), "1")])
            })
            .collect();
        ledger.write(commit_of(records, 0)).unwrap();
    }
    assert_eq!(
        ledger.wal_syncs(),
        Some(3),
        "600 records, three commits, three syncs"
    );
    let quiet = TempDir::new().unwrap();
    assert_eq!(
        open(quiet.path(), 1).wal_syncs(),
        None,
        "statistics are off by default"
    );
}

/// The writer moves to the one blocking writer thread; readers are shared.
#[test]
fn the_writer_can_move_threads_and_readers_can_be_shared() {
    fn movable<T: Send>() {}
    fn shareable<T: Send + Sync + Clone>() {}
    movable::<Ledger>();
    shareable::<ledger::LedgerReader>();
}

/// covers: ledger.MultiGetForRegistrar
#[test]
fn multi_get_returns_states_in_key_order_and_absent_for_missing_keys() {
    let dir = TempDir::new().unwrap();
    let mut ledger = open(dir.path(), 1);
    let mut commit = commit_of(vec![record(0, 0, &[("x", "10"), ("z", "30")])], 0);
    commit.push_warden_change(put_entry(0, "present", 1_000));
    ledger.write(commit).unwrap();
    assert_eq!(
        states(&ledger, &["z", "missing", "x", "z"]),
        vec![
            Some("30".into()),
            None,
            Some("10".into()),
            Some("30".into())
        ]
    );
    assert_eq!(
        states(&ledger, &["x", "x", "y", "z"]),
        vec![
            Some("10".into()),
            Some("10".into()),
            None,
            Some("30".into())
        ],
        "sorted keys with repeats"
    );
    assert_eq!(states(&ledger, &[]), Vec::<Option<String>>::new());
    let reader = ledger.reader();
    assert_eq!(
        reader.warden_entries(0, &["absent", "present"]).unwrap(),
        vec![None, Some(b"entry present".to_vec())]
    );
}

/// The expiry index finds purge candidates oldest first, bounded, per
/// partition; purges and stale-row drops remove what they name.
#[test]
fn the_expiry_scan_is_ordered_bounded_and_per_partition() {
    let dir = TempDir::new().unwrap();
    let mut ledger = open(dir.path(), 2);
    let mut commit = commit_of(vec![record(0, 0, &[]), record(1, 0, &[])], 0);
    for (idempotency_key, first_seen) in [("m", 30), ("b", 10), ("a", 30), ("c", 20), ("late", 99)]
    {
        commit.push_warden_change(put_entry(0, idempotency_key, first_seen));
    }
    commit.push_warden_change(put_entry(1, "other", 5));
    ledger.write(commit).unwrap();
    let reader = ledger.reader();
    let candidate = |key: &str, first_seen: i64| ExpiryCandidate {
        key: key.to_owned(),
        first_seen: StreamTime(first_seen),
    };
    assert_eq!(
        reader.expiry_candidates(0, StreamTime(30), 10).unwrap(),
        vec![
            candidate("b", 10),
            candidate("c", 20),
            candidate("a", 30),
            candidate("m", 30)
        ]
    );
    assert_eq!(
        reader.expiry_candidates(0, StreamTime(30), 2).unwrap(),
        vec![candidate("b", 10), candidate("c", 20)]
    );
    assert_eq!(
        reader.expiry_candidates(0, StreamTime(9), 10).unwrap(),
        vec![]
    );
    assert_eq!(
        reader.expiry_candidates(1, StreamTime(1_000), 10).unwrap(),
        vec![candidate("other", 5)]
    );

    let mut purge = commit_of(vec![record(0, 1, &[])], 0);
    purge.push_warden_change(WardenChange::Purge {
        partition: 0,
        key: "b".into(),
        first_seen: StreamTime(10),
    });
    // "c" was replaced by a fresh entry: only its stale index row goes.
    purge.push_warden_change(put_entry(0, "c", 50));
    purge.push_warden_change(WardenChange::DropStaleExpiryRow {
        partition: 0,
        key: "c".into(),
        first_seen: StreamTime(20),
    });
    ledger.write(purge).unwrap();
    assert_eq!(
        reader.expiry_candidates(0, StreamTime(60), 10).unwrap(),
        vec![candidate("a", 30), candidate("m", 30), candidate("c", 50)]
    );
    assert_eq!(
        reader.warden_entries(0, &["b", "c"]).unwrap(),
        vec![None, Some(b"entry c".to_vec())]
    );
}

/// covers: ledger.LoadRetainedOutputsForRepublication
#[test]
fn output_rows_are_retained_until_pruned_and_read_back_in_pages() {
    let dir = TempDir::new().unwrap();
    {
        let mut ledger = open(dir.path(), 2);
        let mut first = commit_of((0..5).map(|offset| record(0, offset, &[])).collect(), 0);
        first.push(record(1, 0, &[]));
        first.set_outcome_resume_offset(1, 0);
        ledger.write(first).unwrap();
        let mut second = commit_of(vec![record(0, 5, &[])], 3);
        second.prune_output(RecordPosition {
            partition: 0,
            offset: 1,
        });
        second.prune_output(RecordPosition {
            partition: 0,
            offset: 3,
        });
        ledger.write(second).unwrap();
    }
    let ledger = open(dir.path(), 2);
    let reader = ledger.reader();
    let mut pages = Vec::new();
    let mut from = FIRST_ROW;
    loop {
        let page = reader.retained_outputs(from, 2).unwrap();
        let Some(&(last, _)) = page.last() else { break };
        assert!(page.len() <= 2);
        pages.push(
            page.iter()
                .map(|(position, _)| (position.partition, position.offset))
                .collect::<Vec<_>>(),
        );
        from = RecordPosition {
            partition: last.partition,
            offset: last.offset + 1,
        };
    }
    assert_eq!(
        pages,
        vec![vec![(0, 0), (0, 2)], vec![(0, 4), (0, 5)], vec![(1, 0)]]
    );
    let (position, row) = &reader
        .retained_outputs(
            RecordPosition {
                partition: 0,
                offset: 5,
            },
            1,
        )
        .unwrap()[0];
    assert_eq!(
        *position,
        RecordPosition {
            partition: 0,
            offset: 5
        }
    );
    assert_eq!(
        row,
        &record(0, 5, &[]).output,
        "the row holds the record's outputs, digest, keys and timestamp"
    );
    assert_eq!(
        row.record_digest(),
        protocol::envelope::record_digest(&row.outputs)
    );
}

/// covers: ledger.UntrustworthyWatermarkAbortsStart
#[test]
fn a_store_opened_with_another_partition_count_is_refused() {
    let dir = TempDir::new().unwrap();
    open(dir.path(), 2)
        .write(commit_of(vec![record(1, 0, &[])], 0))
        .unwrap();
    assert_eq!(
        untrustworthy(dir.path(), 3),
        (None, StorageFailure::PartitionCountChanged)
    );
    assert_eq!(
        untrustworthy(dir.path(), 1),
        (None, StorageFailure::PartitionCountChanged)
    );
    assert_eq!(applied(&open(dir.path(), 2)), vec![-1, 0]);
    // Rows of a partition the store was never configured for.
    let mut key = 5u32.to_be_bytes().to_vec();
    key.extend_from_slice(&0u64.to_be_bytes());
    raw_put(dir.path(), "outputs", &key, b"");
    assert_eq!(
        untrustworthy(dir.path(), 2),
        (Some(5), StorageFailure::PartitionCountChanged)
    );
    // A store with no commit yet holds no routing: any count is fine.
    let empty = TempDir::new().unwrap();
    drop(open(empty.path(), 2));
    drop(open(empty.path(), 5));
}

/// covers: ledger.UntrustworthyWatermarkAbortsStart, ledger.StoredEntitiesNotAheadOfWatermark
#[test]
fn state_without_a_watermark_is_refused() {
    let entities_only = TempDir::new().unwrap();
    raw_put(entities_only.path(), "entities", b"wh1/sku1", b"5");
    assert_eq!(
        untrustworthy(entities_only.path(), 1),
        (None, StorageFailure::StateWithoutWatermark)
    );

    // Partition 1's Warden rows with only partition 0 watermarked.
    let warden_rows = TempDir::new().unwrap();
    open(warden_rows.path(), 2)
        .write(commit_of(vec![record(0, 0, &[])], 0))
        .unwrap();
    let mut key = 1u32.to_be_bytes().to_vec();
    key.extend_from_slice(b"idem");
    raw_put(warden_rows.path(), "warden_entries", &key, b"entry");
    assert_eq!(
        untrustworthy(warden_rows.path(), 2),
        (Some(1), StorageFailure::StateWithoutWatermark)
    );
}

/// covers: ledger.UntrustworthyWatermarkAbortsStart
#[test]
fn an_undecodable_watermark_row_is_refused() {
    let dir = TempDir::new().unwrap();
    open(dir.path(), 1)
        .write(commit_of(vec![record(0, 0, &[])], 0))
        .unwrap();
    raw_put(dir.path(), "watermarks", &0u32.to_be_bytes(), b"short");
    assert_eq!(
        untrustworthy(dir.path(), 1),
        (Some(0), StorageFailure::UndecodableValue)
    );
}

/// covers: ledger.LedgerOpenFailureAbortsStart
#[test]
fn a_store_that_cannot_be_opened_is_a_typed_failure() {
    let dir = TempDir::new().unwrap();
    let file = dir.path().join("not-a-directory");
    std::fs::write(&file, b"x").unwrap();
    let open_failure = |path: &Path| match Ledger::open(path, LedgerConfig::new(1)) {
        Err(LedgerError::Open { failure, .. }) => failure,
        other => panic!("expected an open failure, got {other:?}"),
    };
    assert_eq!(open_failure(&file), StorageFailure::IoError);

    let held = open(dir.path(), 1);
    assert_eq!(
        open_failure(dir.path()),
        StorageFailure::IoError,
        "the LOCK is held"
    );
    drop(held);

    let corrupt = TempDir::new().unwrap();
    drop(open(corrupt.path(), 1));
    std::fs::write(corrupt.path().join("CURRENT"), b"garbage").unwrap();
    assert_eq!(open_failure(corrupt.path()), StorageFailure::Corruption);
}

/// covers: ledger.FailedReadHaltsInstance
#[test]
fn an_undecodable_output_row_is_a_failed_read() {
    let dir = TempDir::new().unwrap();
    open(dir.path(), 1)
        .write(commit_of(vec![record(0, 0, &[])], 0))
        .unwrap();
    let mut key = 0u32.to_be_bytes().to_vec();
    key.extend_from_slice(&0u64.to_be_bytes());
    raw_put(dir.path(), "outputs", &key, &[0xff, 0xff, 0xff]);
    let ledger = open(dir.path(), 1);
    match ledger.reader().retained_outputs(FIRST_ROW, 10) {
        Err(error @ LedgerError::Read { .. }) => {
            assert_eq!(error.failure(), StorageFailure::UndecodableValue)
        }
        other => panic!("expected a failed read, got {other:?}"),
    }
}

fn replay_case() -> impl Strategy<Value = (Vec<(usize, String)>, Vec<bool>, Vec<bool>)> {
    (1usize..60).prop_flat_map(|records| {
        (
            proptest::collection::vec((0usize..4, "[0-9]{1,3}"), records),
            proptest::collection::vec(any::<bool>(), records),
            proptest::collection::vec(proptest::bool::weighted(0.1), records),
        )
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// Records cut into commits anywhere, with restarts anywhere: the
    /// stored states equal a sequential replay up to the watermark.
    ///
    /// covers: ledger.DurableStateEqualsReplay, ledger.StoredEntitiesNotAheadOfWatermark
    #[test]
    fn stored_state_equals_a_sequential_replay(
        (writes, cuts, restarts) in replay_case()
    ) {
        let dir = TempDir::new().unwrap();
        let keys = ["k0", "k1", "k2", "k3"];
        let mut ledger = open(dir.path(), 1);
        let mut replay = BTreeMap::new();
        let mut pending = Vec::new();
        let last = writes.len() - 1;
        for (offset, (key_index, state)) in writes.into_iter().enumerate() {
            pending.push(record(0, offset as Offset, &[(keys[key_index], &state)]));
            replay.insert(keys[key_index], state);
            if cuts[offset] || offset == last {
                ledger.write(commit_of(std::mem::take(&mut pending), 0)).unwrap();
                let expected: Vec<Option<String>> = keys.iter().map(|key| replay.get(key).cloned()).collect();
                prop_assert_eq!(states(&ledger, &keys), expected);
                prop_assert_eq!(applied(&ledger), vec![offset as Offset]);
            }
            if restarts[offset] && pending.is_empty() {
                drop(ledger);
                ledger = open(dir.path(), 1);
            }
        }
        drop(ledger);
        let reopened = open(dir.path(), 1);
        let expected: Vec<Option<String>> = keys.iter().map(|key| replay.get(key).cloned()).collect();
        prop_assert_eq!(states(&reopened, &keys), expected);
    }
}

const CRASH_DIR_VARIABLE: &str = "LEDGER_CRASH_TEST_DIR";

/// The child half of the crash test: commits forever, one record per
/// commit, each writing entity `e{k}` and Warden entry `k{k}`, and reports
/// each durable commit on stdout until it is killed.
#[test]
fn crash_child_writer() {
    let Some(dir) = std::env::var_os(CRASH_DIR_VARIABLE) else {
        return;
    };
    let mut ledger = open(Path::new(&dir), 1);
    let start = ledger.watermarks()[0].applied_offset + 1;
    for offset in start.. {
        let name = format!("e{offset}");
        let mut commit = commit_of(vec![record(0, offset, &[(&name, "x")])], 0);
        commit.push_warden_change(put_entry(0, &format!("k{offset}"), offset));
        ledger.write(commit).unwrap();
        println!("durable {offset}");
    }
}

/// A process killed at an arbitrary point of a stream of commits: after a
/// reopen, every commit up to the watermark is whole and nothing of a
/// later one exists.
///
/// covers: ledger.AtomicGroupCommit, ledger.StoredEntitiesNotAheadOfWatermark
#[test]
fn a_killed_writer_leaves_whole_commits_up_to_its_watermark() {
    if std::env::var_os(CRASH_DIR_VARIABLE).is_some() {
        return;
    }
    let dir = TempDir::new().unwrap();
    let mut reported: Offset = -1;
    for round in 1..=3 {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "crash_child_writer",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CRASH_DIR_VARIABLE, dir.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = BufReader::new(child.stdout.take().unwrap());
        for line in stdout.lines() {
            let line = line.unwrap();
            if let Some(offset) = line.strip_prefix("durable ") {
                reported = offset.parse().unwrap();
                if reported >= 40 * round {
                    break;
                }
            }
        }
        child.kill().unwrap();
        child.wait().unwrap();
        assert!(
            reported >= 40 * round,
            "the writer reported its commits: {reported}"
        );

        let ledger = open(dir.path(), 1);
        let watermark = ledger.watermarks()[0].applied_offset;
        assert!(
            watermark >= reported,
            "a reported commit is durable: {watermark} < {reported}"
        );
        let probe: Vec<Offset> = (0..watermark + 50).collect();
        let names: Vec<String> = probe.iter().map(|offset| format!("e{offset}")).collect();
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        let idempotency_keys: Vec<String> =
            probe.iter().map(|offset| format!("k{offset}")).collect();
        let entries = ledger
            .reader()
            .warden_entries(0, &idempotency_keys)
            .unwrap();
        let rows = ledger
            .reader()
            .retained_outputs(FIRST_ROW, usize::MAX)
            .unwrap();
        for ((offset, state), entry) in probe.iter().zip(states(&ledger, &names)).zip(entries) {
            let durable = *offset <= watermark;
            assert_eq!(
                state.is_some(),
                durable,
                "entity of commit {offset}, watermark {watermark}"
            );
            assert_eq!(
                entry.is_some(),
                durable,
                "Warden entry of commit {offset}, watermark {watermark}"
            );
        }
        assert_eq!(
            rows.len() as Offset,
            watermark + 1,
            "one output row per durable commit"
        );
    }
}
