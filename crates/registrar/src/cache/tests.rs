use super::*;

fn key(name: &str) -> EntityKey {
    EntityKey::new(name.to_owned())
}

fn keys(names: &[&str]) -> Vec<EntityKey> {
    names.iter().map(|name| key(name)).collect()
}

const AT_3: WrittenAt = WrittenAt {
    partition: 0,
    offset: 3,
};

/// A cache holding `a` written at offset 3 and unpinned.
fn cache_with_dirty_a() -> EntityCache {
    let mut cache = EntityCache::new(2);
    let missing = cache.pin(&keys(&["a"]));
    assert_eq!(missing, keys(&["a"]));
    cache.load(&key("a"), None);
    cache.write(&key("a"), AT_3, b"1");
    cache.unpin(&key("a"));
    cache
}

/// covers: registrar.DirtyEntriesAreNotYetDurable
#[test]
#[should_panic(expected = "a dirty entry is not yet durable")]
fn the_checker_refuses_a_dirty_entry_at_or_below_the_watermark() {
    cache_with_dirty_a().assert_invariants(|_| 3);
}

/// covers: registrar.CleanEntriesAreDurable
#[test]
#[should_panic(expected = "a clean entry is durable")]
fn the_checker_refuses_a_clean_entry_above_the_watermark() {
    let mut cache = cache_with_dirty_a();
    assert_eq!(cache.clean_through(0, 3), 1);
    cache.assert_invariants(|_| 2);
}

/// covers: registrar.DirtyEntriesAreNotYetDurable, registrar.CleanEntriesAreDurable, registrar.NoUnflushedWriteOutsideCache
#[test]
fn a_dirty_entry_is_never_a_victim_and_a_cleaned_one_is() {
    let mut cache = cache_with_dirty_a();
    cache.assert_invariants(|_| 2);
    let missing = cache.pin(&keys(&["b"]));
    cache.load(&missing[0], None);
    cache.unpin(&key("b"));
    assert_eq!(cache.unevictable_len(), 1);

    assert_eq!(cache.clean_through(0, 2), 0, "written at 3");
    assert_eq!(cache.clean_through(1, 3), 0, "another partition");
    assert!(cache.status(&key("a")).expect("cached").dirty);
    assert_eq!(cache.clean_through(0, 3), 1);
    cache.assert_invariants(|_| 3);

    // Both clean now: a (tick 1) goes before b (tick 2).
    cache.pin(&keys(&["c"]));
    assert!(cache.status(&key("a")).is_none());
    assert!(cache.status(&key("b")).is_some());
    assert_eq!(cache.evictions(), 1);
}

/// covers: registrar.CacheNeverOverCapacity
#[test]
#[should_panic(expected = "fits beside the unevictable entries")]
fn pinning_more_than_the_room_left_is_a_broken_admission() {
    let mut cache = cache_with_dirty_a();
    cache.pin(&keys(&["b", "c"]));
}

/// covers: registrar.PinCountNonNegative
#[test]
#[should_panic(expected = "a pin is released once")]
fn releasing_a_pin_twice_is_refused() {
    let mut cache = cache_with_dirty_a();
    cache.unpin(&key("a"));
}

/// covers: registrar.EvictLeastRecentlyUsedCleanEntries
#[test]
fn victims_go_by_last_pre_warm_then_by_key() {
    let mut cache = EntityCache::new(4);
    // One pre-warm stamps b, c, d; a later one re-stamps c, then a arrives.
    for batch in [&["b", "c", "d"][..], &["c"], &["a"]] {
        for missing in cache.pin(&keys(batch)) {
            cache.load(&missing, None);
        }
        for key in keys(batch) {
            cache.unpin(&key);
        }
    }
    cache.assert_invariants(|_| -1);
    let evicted_by = |cache: &mut EntityCache, batch: &[&str]| {
        let before: Vec<_> = ["a", "b", "c", "d"]
            .into_iter()
            .filter(|name| cache.status(&key(name)).is_some())
            .collect();
        cache.pin(&keys(batch));
        before
            .into_iter()
            .filter(|name| cache.status(&key(name)).is_none())
            .collect::<Vec<_>>()
    };
    // b and d share the oldest pre-warm: b first by key, then d; then c
    // (re-used by the second pre-warm), then a.
    assert_eq!(evicted_by(&mut cache, &["x"]), ["b"]);
    assert_eq!(evicted_by(&mut cache, &["y"]), ["d"]);
    assert_eq!(evicted_by(&mut cache, &["z"]), ["c"]);
    assert_eq!(evicted_by(&mut cache, &["w"]), ["a"]);
}

/// covers: registrar.MarkEntriesCleanWhenCommitDurable
#[test]
fn a_key_written_again_stays_dirty_until_its_last_write_is_durable() {
    let mut cache = EntityCache::new(4);
    let batch = keys(&["a", "b"]);
    for missing in cache.pin(&batch) {
        cache.load(&missing, None);
    }
    let at = |offset| WrittenAt {
        partition: 0,
        offset,
    };
    cache.write(&key("a"), at(3), b"1");
    cache.write(&key("b"), at(3), b"1");
    cache.write(&key("a"), at(5), b"2");
    for key in &batch {
        cache.unpin(key);
    }
    cache.assert_invariants(|_| 2);
    assert_eq!(cache.dirty_len(), 2);
    assert_eq!(cache.clean_through(0, 4), 1, "only b was last written by 3");
    assert!(cache.status(&key("a")).expect("cached").dirty);
    cache.assert_invariants(|_| 4);
    assert_eq!(cache.clean_through(0, 5), 1);
    assert_eq!(cache.dirty_len(), 0);
    cache.assert_invariants(|_| 5);
}
