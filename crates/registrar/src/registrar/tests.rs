use std::collections::BTreeMap;

use super::*;

const P0: Partition = 0;
const P1: Partition = 1;

fn key(name: &str) -> EntityKey {
    EntityKey::new(name.to_owned())
}

/// Records of one command touching at most two keys.
fn config(capacity: usize) -> RegistrarConfig {
    RegistrarConfig {
        max_cached_entities: capacity,
        max_pack_commands: 1,
        max_keys_per_command: 2,
    }
}

fn fresh(capacity: usize) -> Registrar {
    let loaded = [P0, P1].map(|partition| LoadedWatermark {
        partition,
        applied_offset: -1,
    });
    Registrar::new(config(capacity), &loaded).expect("valid start")
}

fn record(offset: Offset, keys: &[&str]) -> RecordKeys {
    RecordKeys {
        offset,
        keys: keys.iter().map(|name| key(name)).collect(),
    }
}

/// The Ledger's durable states, as the shell's multi-get would read them.
#[derive(Default)]
struct Ledger(BTreeMap<EntityKey, Vec<u8>>);

impl Ledger {
    fn read(&self, keys: &[EntityKey]) -> Vec<Option<Vec<u8>>> {
        keys.iter().map(|key| self.0.get(key).cloned()).collect()
    }
}

fn expect_prewarm(admission: Result<Admission, AdmitError>) -> PendingPrewarm {
    match admission.expect("admitted") {
        Admission::Prewarm(pending) => pending,
        Admission::WaitForRoom => panic!("expected a pre-warm, got WaitForRoom"),
    }
}

/// Admits a batch that must fit whole and loads it from `ledger`.
fn prewarm(
    registrar: &mut Registrar,
    ledger: &Ledger,
    partition: Partition,
    records: &[RecordKeys],
) -> PrewarmedBatch {
    let pending = expect_prewarm(registrar.admit(partition, records));
    assert_eq!(pending.remainder_records(), 0, "the batch fits whole");
    let states = ledger.read(pending.keys_to_read());
    registrar.complete_prewarm(pending, states).expect("loaded")
}

/// Writes as (offset, key, state) of one partition, index 0.
fn writes_of(
    partition: Partition,
    writes: &[(Offset, &str, &str)],
) -> Vec<(CommandPosition, EntityKey, Vec<u8>)> {
    writes
        .iter()
        .map(|&(offset, name, state)| {
            let position = CommandPosition {
                partition,
                offset,
                index: 0,
            };
            (position, key(name), state.as_bytes().to_vec())
        })
        .collect()
}

fn apply(
    registrar: &mut Registrar,
    batch: PrewarmedBatch,
    writes: &[(CommandPosition, EntityKey, Vec<u8>)],
) -> Result<(), Refused<PrewarmedBatch, ApplyError>> {
    registrar.apply_batch_writes(
        batch,
        writes.iter().map(|(position, key, state)| EntityWriteAt {
            position: *position,
            key,
            state,
        }),
    )
}

fn release(registrar: &mut Registrar, batch: PrewarmedBatch, writes: &[(Offset, &str, &str)]) {
    let partition = batch.partition();
    apply(registrar, batch, &writes_of(partition, writes)).expect("writes applied");
    registrar.assert_invariants();
}

fn state_of(registrar: &Registrar, name: &str) -> Option<Vec<u8>> {
    registrar
        .entity_state(&key(name))
        .expect("pre-warmed")
        .map(<[u8]>::to_vec)
}

/// covers: registrar.PrewarmTouchedKeysInOneMultiGet
#[test]
fn prewarm_reads_the_uncached_keys_of_a_batch_in_one_sorted_multi_get() {
    let mut registrar = fresh(8);
    let mut ledger = Ledger::default();
    ledger.0.insert(key("b"), b"7".to_vec());

    let pending =
        expect_prewarm(registrar.admit(P0, &[record(0, &["c", "b"]), record(1, &["b", "a"])]));
    assert_eq!(pending.keys_to_read(), &[key("a"), key("b"), key("c")]);
    assert_eq!(pending.batch().keys(), &[key("a"), key("b"), key("c")]);
    let batch = registrar
        .complete_prewarm(pending, ledger.read(&[key("a"), key("b"), key("c")]))
        .expect("loaded");
    assert_eq!(state_of(&registrar, "b"), Some(b"7".to_vec()));
    assert_eq!(state_of(&registrar, "a"), None);
    release(&mut registrar, batch, &[]);

    // Cached keys are pinned again, not read again.
    let pending = expect_prewarm(registrar.admit(P0, &[record(2, &["b", "d"])]));
    assert_eq!(pending.keys_to_read(), &[key("d")]);
    let status = registrar.cache_entry(&key("b")).expect("cached");
    assert_eq!(status.pin_count, 1);
    // A batch whose keys are all cached needs no Ledger read at all.
    let batch = registrar
        .complete_prewarm(pending, vec![None])
        .expect("loaded");
    release(&mut registrar, batch, &[]);
    let pending = expect_prewarm(registrar.admit(P0, &[record(3, &["a", "d"])]));
    assert!(pending.keys_to_read().is_empty());
    registrar
        .complete_prewarm(pending, Vec::new())
        .expect("nothing to load");
}

/// covers: registrar.PrewarmTouchedKeysInOneMultiGet
#[test]
fn a_multi_get_answer_of_the_wrong_length_is_refused_and_handed_back() {
    let mut registrar = fresh(8);
    let pending = expect_prewarm(registrar.admit(P0, &[record(0, &["a", "b"])]));
    let refused = registrar
        .complete_prewarm(pending, vec![None])
        .expect_err("two keys, one state");
    assert_eq!(
        refused.error,
        LoadError::StateCountMismatch {
            expected: 2,
            got: 1
        }
    );
    let batch = registrar
        .complete_prewarm(refused.returned, vec![None, None])
        .expect("the returned pre-warm loads");
    assert_eq!(batch.keys().len(), 2);
}

/// covers: registrar.ClassifiedBatchOfferedForPrewarm
#[test]
fn batches_are_served_in_arrival_order_one_multi_get_at_a_time() {
    let mut registrar = fresh(2);
    let ledger = Ledger::default();

    let pending = expect_prewarm(registrar.admit(P0, &[record(0, &["a"]), record(1, &["b", "c"])]));
    assert_eq!(pending.admitted_records(), 1);
    assert_eq!(pending.remainder_records(), 1);
    // The multi-get is outstanding: nothing else is admitted.
    assert_eq!(
        registrar.admit(P1, &[record(0, &["x"])]).unwrap_err(),
        AdmitError::LoadPending
    );
    let first = registrar
        .complete_prewarm(pending, ledger.read(&[key("a")]))
        .expect("loaded");
    // The remainder of the split is next in arrival order.
    assert_eq!(
        registrar.admit(P1, &[record(0, &["x"])]).unwrap_err(),
        AdmitError::OutOfArrivalOrder {
            expected: BatchStart {
                partition: P0,
                first_offset: 1
            }
        }
    );
    assert!(matches!(
        registrar.admit(P0, &[record(1, &["b", "c"])]),
        Ok(Admission::WaitForRoom)
    ));
    release(&mut registrar, first, &[]);
    // "a" is clean and unpinned now; the head batch is still the one waiting.
    assert_eq!(
        registrar.admit(P1, &[record(0, &["x"])]).unwrap_err(),
        AdmitError::WaitingForRoom {
            waiting: BatchStart {
                partition: P0,
                first_offset: 1
            }
        }
    );
}

/// covers: registrar.BatchSpansWholeRecords
#[test]
fn an_offered_batch_is_whole_records_in_increasing_offsets_after_the_last_admitted() {
    let mut registrar = fresh(4);
    assert_eq!(
        registrar.admit(P0, &[]).unwrap_err(),
        AdmitError::EmptyBatch
    );
    assert_eq!(
        registrar
            .admit(P0, &[record(3, &["a"]), record(3, &["b"])])
            .unwrap_err(),
        AdmitError::OffsetNotIncreasing {
            previous: 3,
            offset: 3
        }
    );
    assert_eq!(
        registrar
            .admit(P0, &[record(0, &["a", "b", "c"])])
            .unwrap_err(),
        AdmitError::RecordOverKeyBound {
            offset: 0,
            keys: 3,
            max_keys: 2
        }
    );
    assert_eq!(
        registrar.admit(7, &[record(0, &["a"])]).unwrap_err(),
        AdmitError::UnknownPartition { partition: 7 }
    );

    // Offsets may have gaps; a split falls between whole records.
    let records = [
        record(2, &["a", "b"]),
        record(5, &["c"]),
        record(9, &["d", "e"]),
    ];
    let pending = expect_prewarm(registrar.admit(P0, &records));
    assert_eq!(pending.admitted_records(), 2);
    assert_eq!(pending.batch().record_offsets(), &[2, 5]);
    assert_eq!(pending.batch().first_offset(), 2);
    assert_eq!(pending.batch().last_offset(), 5);
    let batch = registrar
        .complete_prewarm(pending, vec![None; 3])
        .expect("loaded");
    release(&mut registrar, batch, &[]);
    assert_eq!(
        registrar.admit(P0, &[record(5, &["d"])]).unwrap_err(),
        AdmitError::OutOfArrivalOrder {
            expected: BatchStart {
                partition: P0,
                first_offset: 9
            }
        }
    );
    let pending = expect_prewarm(registrar.admit(P0, &records[2..]));
    assert_eq!(pending.batch().record_offsets(), &[9]);
}

/// covers: registrar.SplitBatchToFitCache
#[test]
fn a_batch_that_does_not_fit_is_split_after_the_longest_fitting_prefix() {
    let mut registrar = fresh(4);
    let ledger = Ledger::default();
    let batch = prewarm(&mut registrar, &ledger, P0, &[record(0, &["x", "y"])]);
    release(&mut registrar, batch, &[(0, "x", "1"), (0, "y", "1")]);

    // Two slots left beside the dirty x and y. The record touching x needs
    // no new slot; the next new key does not fit.
    let records = [
        record(1, &["a"]),
        record(2, &["x"]),
        record(3, &["b"]),
        record(4, &["c"]),
    ];
    assert_eq!(registrar.fitting_records(&records), 3);
    let pending = expect_prewarm(registrar.admit(P0, &records));
    assert_eq!(pending.admitted_records(), 3);
    assert_eq!(pending.remainder_records(), 1);
    assert_eq!(pending.keys_to_read(), &[key("a"), key("b")]);
    let batch = registrar
        .complete_prewarm(pending, vec![None, None])
        .expect("loaded");
    assert_eq!(registrar.cache_stats().entries, 4);
    registrar.assert_invariants();
    release(&mut registrar, batch, &[]);
}

/// The room of a prefix counts the unevictable keys of the records left
/// out: a dirty key of a later record still holds its slot.
///
/// covers: registrar.SplitBatchToFitCache, registrar.CacheNeverOverCapacity
#[test]
fn a_prefix_fits_only_beside_the_dirty_keys_of_the_records_it_leaves_out() {
    let mut registrar = fresh(2);
    let batch = prewarm(&mut registrar, &Ledger::default(), P0, &[record(0, &["x"])]);
    release(&mut registrar, batch, &[(0, "x", "1")]);

    // Whole: {a, b, x} needs 3 slots. Prefix {a, b} needs 2 plus dirty x.
    assert_eq!(
        registrar.fitting_records(&[record(1, &["a", "b"]), record(2, &["x"])]),
        0
    );
    assert!(matches!(
        registrar.admit(P0, &[record(1, &["a", "b"]), record(2, &["x"])]),
        Ok(Admission::WaitForRoom)
    ));
    assert!(registrar.cache_stats().entries <= 2);
}

/// covers: registrar.WaitForRoomWhenFirstRecordDoesNotFit, registrar.RetryWaitingBatchWhenEntriesClean
#[test]
fn a_batch_waits_for_a_durable_commit_when_dirty_entries_fill_the_cache() {
    let mut registrar = fresh(2);
    let ledger = Ledger::default();
    let batch = prewarm(&mut registrar, &ledger, P0, &[record(0, &["x", "y"])]);
    release(&mut registrar, batch, &[(0, "x", "1"), (0, "y", "2")]);

    let waiting = [record(0, &["a"])];
    assert!(matches!(
        registrar.admit(P1, &waiting),
        Ok(Admission::WaitForRoom)
    ));
    let start = BatchStart {
        partition: P1,
        first_offset: 0,
    };
    assert_eq!(registrar.waiting_for_room(), Some(start));
    assert_eq!(
        registrar.admit(P0, &[record(1, &["z"])]).unwrap_err(),
        AdmitError::WaitingForRoom { waiting: start }
    );
    assert_eq!(
        registrar.admit(P1, &waiting).unwrap_err(),
        AdmitError::WaitingForRoom { waiting: start },
        "still waiting until a commit is durable"
    );

    let outcome = registrar.on_durable(P0, 0).expect("durable");
    assert_eq!(outcome.retry_waiting_batch, Some(start));
    assert_eq!(outcome.cleaned_entries, 2);
    assert_eq!(registrar.waiting_for_room(), None);
    let pending = expect_prewarm(registrar.admit(P1, &waiting));
    assert_eq!(pending.keys_to_read(), &[key("a")]);
    assert_eq!(registrar.cache_stats().evictions, 1);
    // A later durable commit has no waiting batch to retry.
    registrar
        .complete_prewarm(pending, vec![None])
        .expect("loaded");
    assert_eq!(
        registrar
            .on_durable(P0, 0)
            .expect("durable")
            .retry_waiting_batch,
        None
    );
}

/// covers: registrar.EvictLeastRecentlyUsedCleanEntries
#[test]
fn eviction_takes_the_least_recently_used_clean_unpinned_entries_ties_by_key() {
    let mut registrar = fresh(4);
    let ledger = Ledger::default();
    let first = prewarm(&mut registrar, &ledger, P0, &[record(0, &["d", "c"])]);
    release(&mut registrar, first, &[]);
    let second = prewarm(&mut registrar, &ledger, P0, &[record(1, &["a", "b"])]);
    release(&mut registrar, second, &[(1, "b", "5")]);
    // Used again: "d" is now more recent than "c".
    let third = prewarm(&mut registrar, &ledger, P0, &[record(2, &["d"])]);
    release(&mut registrar, third, &[]);

    // Clean unpinned: c (tick 1), a (tick 2), d (tick 3); dirty: b.
    let fourth = prewarm(&mut registrar, &ledger, P0, &[record(3, &["e"])]);
    assert!(
        registrar.cache_entry(&key("c")).is_none(),
        "oldest goes first"
    );
    release(&mut registrar, fourth, &[]);
    let fifth = prewarm(&mut registrar, &ledger, P0, &[record(4, &["f", "g"])]);
    assert!(registrar.cache_entry(&key("a")).is_none());
    assert!(registrar.cache_entry(&key("d")).is_none());
    assert!(registrar.cache_entry(&key("b")).is_some(), "dirty stays");
    assert!(
        registrar.cache_entry(&key("e")).is_some(),
        "used last stays"
    );
    assert_eq!(registrar.cache_stats().evictions, 3);
    release(&mut registrar, fifth, &[]);

    // Clean again once durable, dirty b is the oldest (tick 2), then e.
    registrar.on_durable(P0, 4).expect("durable");
    let sixth = prewarm(&mut registrar, &ledger, P0, &[record(5, &["i", "j"])]);
    assert!(registrar.cache_entry(&key("b")).is_none());
    assert!(registrar.cache_entry(&key("e")).is_none());
    release(&mut registrar, sixth, &[]);
    // f and g share tick 5: the smaller key goes first.
    let seventh = prewarm(&mut registrar, &ledger, P0, &[record(6, &["k"])]);
    assert!(registrar.cache_entry(&key("f")).is_none());
    assert!(registrar.cache_entry(&key("g")).is_some());
    release(&mut registrar, seventh, &[]);
}

/// covers: registrar.ReadYourWritesFromCache
#[test]
fn a_later_batch_reads_the_dirty_writes_of_an_earlier_one_without_the_ledger() {
    let mut registrar = fresh(4);
    let mut ledger = Ledger::default();
    ledger.0.insert(key("a"), b"1".to_vec());
    let first = prewarm(&mut registrar, &ledger, P0, &[record(0, &["a"])]);
    assert_eq!(state_of(&registrar, "a"), Some(b"1".to_vec()));
    // The next batch is pre-warmed while the first is still evaluated.
    let pending = expect_prewarm(registrar.admit(P0, &[record(1, &["a", "b"])]));
    assert_eq!(pending.keys_to_read(), &[key("b")]);
    let second = registrar
        .complete_prewarm(pending, ledger.read(&[key("b")]))
        .expect("loaded");
    release(&mut registrar, first, &[(0, "a", "9")]);

    assert_eq!(state_of(&registrar, "a"), Some(b"9".to_vec()));
    let view: &(dyn EntityStates + Sync) = &registrar;
    assert_eq!(view.state(&key("a")), Some(&b"9"[..]));
    assert_eq!(view.state(&key("b")), None);
    release(&mut registrar, second, &[]);
}

/// covers: registrar.ApplyBatchWritesAsDirtyEntries
#[test]
fn the_last_write_per_key_is_applied_dirty_and_the_pins_released() {
    let mut registrar = fresh(4);
    let batch = prewarm(
        &mut registrar,
        &Ledger::default(),
        P0,
        &[record(0, &["a", "b"]), record(1, &["a"])],
    );
    release(
        &mut registrar,
        batch,
        &[(0, "a", "1"), (0, "b", "2"), (1, "a", "3")],
    );
    let a = registrar.cache_entry(&key("a")).expect("cached");
    assert!(a.dirty);
    assert_eq!(a.pin_count, 0);
    assert_eq!(
        a.last_written,
        Some(WrittenAt {
            partition: P0,
            offset: 1
        })
    );
    assert_eq!(registrar.cache_stats().dirty, 2);
    assert_eq!(registrar.cache_stats().evictable, 0);
    // Reads are served only to a batch holding the key.
    assert_eq!(
        registrar.entity_state(&key("a")).unwrap_err().reason,
        Unavailable::NotPrewarmed
    );
    let batch = prewarm(&mut registrar, &Ledger::default(), P0, &[record(2, &["a"])]);
    assert_eq!(state_of(&registrar, "a"), Some(b"3".to_vec()));
    release(&mut registrar, batch, &[]);
}

/// covers: registrar.ApplyBatchWritesAsDirtyEntries, registrar.EvaluationSeesOnlyDeclaredKeys
#[test]
fn writes_outside_the_batch_or_out_of_order_are_refused_and_change_nothing() {
    let mut registrar = fresh(4);
    let ledger = Ledger::default();
    let mut batch = prewarm(
        &mut registrar,
        &ledger,
        P0,
        &[record(0, &["a"]), record(2, &["b"])],
    );
    fn refuse(
        registrar: &mut Registrar,
        batch: PrewarmedBatch,
        writes: Vec<(CommandPosition, EntityKey, Vec<u8>)>,
    ) -> (PrewarmedBatch, ApplyError) {
        let refused = apply(registrar, batch, &writes).expect_err("refused");
        (refused.returned, refused.error)
    }

    let mut error;
    (batch, error) = refuse(&mut registrar, batch, writes_of(P0, &[(0, "c", "1")]));
    assert!(matches!(error, ApplyError::KeyNotTouched { .. }));
    (batch, error) = refuse(&mut registrar, batch, writes_of(P0, &[(1, "a", "1")]));
    assert!(matches!(error, ApplyError::OutsideBatch { .. }));
    (batch, error) = refuse(&mut registrar, batch, writes_of(P1, &[(0, "a", "1")]));
    assert!(matches!(error, ApplyError::OutsideBatch { .. }));
    (batch, error) = refuse(
        &mut registrar,
        batch,
        writes_of(P0, &[(2, "b", "1"), (0, "a", "1")]),
    );
    assert!(matches!(error, ApplyError::NotInLogOrder { .. }));
    assert_eq!(registrar.cache_stats().dirty, 0, "nothing applied");

    // A partition's batches are released in admission order.
    let second = prewarm(&mut registrar, &ledger, P0, &[record(3, &["a"])]);
    let (second, error) = refuse(&mut registrar, second, Vec::new());
    assert_eq!(
        error,
        ApplyError::OutOfOrder {
            partition: P0,
            after_offset: 2,
            evaluated_offset: -1
        }
    );
    release(&mut registrar, batch, &[(0, "a", "1"), (2, "b", "2")]);
    release(&mut registrar, second, &[]);
}

/// covers: registrar.MarkEntriesCleanWhenCommitDurable
#[test]
fn a_durable_commit_cleans_the_entries_it_covers_and_keeps_rewritten_ones_dirty() {
    let mut registrar = fresh(4);
    let ledger = Ledger::default();
    let batch = prewarm(
        &mut registrar,
        &ledger,
        P0,
        &[record(0, &["a"]), record(1, &["b"])],
    );
    release(&mut registrar, batch, &[(0, "a", "1"), (1, "b", "1")]);
    let batch = prewarm(&mut registrar, &ledger, P0, &[record(2, &["a"])]);
    release(&mut registrar, batch, &[(2, "a", "2")]);
    let other = prewarm(&mut registrar, &ledger, P1, &[record(0, &["z"])]);
    release(&mut registrar, other, &[(0, "z", "1")]);

    let outcome = registrar.on_durable(P0, 1).expect("durable");
    assert_eq!(outcome.cleaned_entries, 1);
    assert!(!registrar.cache_entry(&key("b")).expect("cached").dirty);
    assert!(
        registrar.cache_entry(&key("a")).expect("cached").dirty,
        "rewritten at 2"
    );
    assert!(
        registrar.cache_entry(&key("z")).expect("cached").dirty,
        "other partition"
    );
    registrar.assert_invariants();
    assert_eq!(
        registrar
            .on_durable(P0, 2)
            .expect("durable")
            .cleaned_entries,
        1
    );
    assert_eq!(registrar.cache_stats().dirty, 1);
    registrar.assert_invariants();
}

/// covers: registrar.AdvanceWatermarkAfterDurableCommit, registrar.WatermarkMeansDurable
#[test]
fn only_a_durable_commit_advances_the_watermark_and_a_stale_report_changes_nothing() {
    let mut registrar = fresh(4);
    let batch = prewarm(
        &mut registrar,
        &Ledger::default(),
        P0,
        &[record(0, &[]), record(1, &["a"]), record(4, &[])],
    );
    assert_eq!(
        registrar.applied_offset(P0),
        Some(-1),
        "evaluation moves nothing"
    );
    release(&mut registrar, batch, &[(1, "a", "1")]);
    assert_eq!(
        registrar.applied_offset(P0),
        Some(-1),
        "applying writes moves nothing"
    );
    assert_eq!(
        registrar.on_durable(P0, 5).unwrap_err(),
        DurableError::AheadOfEvaluation {
            partition: P0,
            through_offset: 5,
            evaluated_offset: 4
        }
    );
    assert_eq!(
        registrar.on_durable(9, 0).unwrap_err(),
        DurableError::UnknownPartition { partition: 9 }
    );

    let outcome = registrar.on_durable(P0, 1).expect("durable");
    assert_eq!(
        outcome.advanced,
        Some(WatermarkAdvanced {
            partition: P0,
            from_offset: 0,
            through_offset: 1
        })
    );
    assert_eq!(registrar.applied_offset(P0), Some(1));
    assert_eq!(registrar.on_durable(P0, 0).expect("durable").advanced, None);
    assert_eq!(registrar.on_durable(P0, 1).expect("durable").advanced, None);
    assert_eq!(registrar.applied_offset(P0), Some(1));
    let outcome = registrar.on_durable(P0, 4).expect("durable");
    assert_eq!(
        outcome
            .advanced
            .map(|advanced| (advanced.from_offset, advanced.through_offset)),
        Some((2, 4))
    );
    assert_eq!(registrar.applied_offset(P1), Some(-1));
    assert_eq!(
        registrar.watermarks(),
        vec![
            LoadedWatermark {
                partition: P0,
                applied_offset: 4
            },
            LoadedWatermark {
                partition: P1,
                applied_offset: -1
            }
        ]
    );
}

/// covers: registrar.LoadWatermarkFromLedgerOnRecovery
#[test]
fn a_start_takes_the_ledgers_watermarks_with_an_empty_cache() {
    let loaded = [
        LoadedWatermark {
            partition: P1,
            applied_offset: -1,
        },
        LoadedWatermark {
            partition: P0,
            applied_offset: 41,
        },
    ];
    let mut registrar = Registrar::new(config(4), &loaded).expect("valid start");
    assert_eq!(registrar.applied_offset(P0), Some(41));
    assert_eq!(registrar.applied_offset(P1), Some(-1));
    assert_eq!(registrar.cache_stats().entries, 0);
    // Replay resumes after the watermark.
    assert_eq!(
        registrar.admit(P0, &[record(41, &["a"])]).unwrap_err(),
        AdmitError::OffsetNotIncreasing {
            previous: 41,
            offset: 41
        }
    );
    let batch = prewarm(
        &mut registrar,
        &Ledger::default(),
        P0,
        &[record(42, &["a"])],
    );
    release(&mut registrar, batch, &[(42, "a", "1")]);
    assert_eq!(
        registrar.on_durable(P0, 41).expect("durable").advanced,
        None
    );

    assert_eq!(
        Registrar::new(
            config(4),
            &[LoadedWatermark {
                partition: P0,
                applied_offset: -2
            }]
        )
        .unwrap_err(),
        StartError::WatermarkBelowStart {
            partition: P0,
            applied_offset: -2
        }
    );
    assert_eq!(
        Registrar::new(config(4), &[loaded[1], loaded[1]]).unwrap_err(),
        StartError::DuplicatePartition { partition: P0 }
    );
}

/// covers: registrar.SingleRecordFitsInCache
#[test]
fn the_biggest_record_must_fit_an_empty_cache() {
    assert_eq!(RegistrarConfig::default().validate(), Ok(()));
    assert_eq!(RegistrarConfig::default().max_keys_per_record(), 256);
    let too_small = RegistrarConfig {
        max_cached_entities: 255,
        ..RegistrarConfig::default()
    };
    assert_eq!(
        too_small.validate(),
        Err(ConfigError::RecordDoesNotFitCache {
            max_keys_per_record: 256,
            max_cached_entities: 255
        })
    );
    assert_eq!(
        Registrar::new(too_small, &[]).unwrap_err(),
        StartError::Config(ConfigError::RecordDoesNotFitCache {
            max_keys_per_record: 256,
            max_cached_entities: 255
        })
    );
    let no_commands = RegistrarConfig {
        max_pack_commands: 0,
        ..RegistrarConfig::default()
    };
    assert_eq!(no_commands.validate(), Err(ConfigError::ZeroRecordBound));
}

/// covers: registrar.CacheCapacityIsConfigured
#[test]
fn the_cache_holds_exactly_the_configured_number_of_entries() {
    let registrar = Registrar::new(RegistrarConfig::default(), &[]).expect("valid start");
    assert_eq!(registrar.cache_stats().capacity, 262_144);
    assert_eq!(fresh(3).cache_stats().capacity, 3);
}

/// covers: registrar.PinCountNonNegative, registrar.OneCacheEntryPerKey
#[test]
fn a_key_shared_by_outstanding_batches_is_one_entry_pinned_once_per_batch() {
    let mut registrar = fresh(4);
    let ledger = Ledger::default();
    let first = prewarm(&mut registrar, &ledger, P0, &[record(0, &["a"])]);
    let second = prewarm(&mut registrar, &ledger, P0, &[record(1, &["a", "b"])]);
    assert_eq!(registrar.cache_stats().entries, 2);
    assert_eq!(
        registrar.cache_entry(&key("a")).expect("cached").pin_count,
        2
    );
    release(&mut registrar, first, &[]);
    assert_eq!(
        registrar.cache_entry(&key("a")).expect("cached").pin_count,
        1
    );
    release(&mut registrar, second, &[]);
    assert_eq!(
        registrar.cache_entry(&key("a")).expect("cached").pin_count,
        0
    );
    assert_eq!(registrar.cache_stats().evictable, 2);
}

/// covers: registrar.EvaluationSeesOnlyDeclaredKeys
#[test]
fn only_keys_of_a_loaded_batch_being_evaluated_are_served() {
    let mut registrar = fresh(4);
    let pending = expect_prewarm(registrar.admit(P0, &[record(0, &["a"])]));
    assert_eq!(
        registrar.entity_state(&key("a")).unwrap_err().reason,
        Unavailable::LoadPending
    );
    let batch = registrar
        .complete_prewarm(pending, vec![Some(b"4".to_vec())])
        .expect("loaded");
    assert_eq!(state_of(&registrar, "a"), Some(b"4".to_vec()));
    assert_eq!(
        registrar.entity_state(&key("b")).unwrap_err(),
        StateUnavailable {
            key: key("b"),
            reason: Unavailable::NotPrewarmed
        }
    );
    release(&mut registrar, batch, &[]);
}

/// covers: registrar.EvaluationSeesOnlyDeclaredKeys
#[test]
#[should_panic(expected = "evaluation misses the cache")]
fn the_entity_view_panics_on_a_key_not_prewarmed() {
    let registrar = fresh(4);
    let view: &dyn EntityStates = &registrar;
    view.state(&key("a"));
}

/// covers: registrar.DirtyEntriesAreNotYetDurable, registrar.CleanEntriesAreDurable
#[test]
fn a_written_entry_is_dirty_above_the_watermark_and_clean_at_or_below_it() {
    let mut registrar = fresh(4);
    let batch = prewarm(
        &mut registrar,
        &Ledger::default(),
        P0,
        &[record(0, &["a"]), record(1, &["b"])],
    );
    release(&mut registrar, batch, &[(0, "a", "1"), (1, "b", "1")]);
    registrar.on_durable(P0, 0).expect("durable");
    let watermark = registrar.applied_offset(P0).expect("known");
    for (name, dirty) in [("a", false), ("b", true)] {
        let entry = registrar.cache_entry(&key(name)).expect("cached");
        let written = entry.last_written.expect("written").offset;
        assert_eq!(entry.dirty, dirty);
        assert_eq!(written > watermark, dirty);
    }
    registrar.assert_invariants();
}
