//! The bounded entity cache (`registrar.EntityCache`): one entry per key,
//! pinned while a pre-warmed batch needs it, dirty until the group commit
//! holding its last write is durable, and evicted least recently used first
//! once it is clean and unpinned.
//!
//! The key-to-entry map is a `HashMap` for constant-time reads during
//! evaluation; it is never iterated into a decision. Eviction order and the
//! dirty entries of a partition come from ordered indexes instead.

use std::collections::BTreeMap;

use domain::EntityKey;
use foldhash::{HashMap, HashMapExt as _};
use protocol::position::{Offset, Partition};

/// The record that last wrote an entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WrittenAt {
    pub partition: Partition,
    pub offset: Offset,
}

/// What the cache holds for one key, for metrics and tests.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CacheEntryStatus {
    /// The Ledger's answer for the key has arrived (or it was written since).
    pub loaded: bool,
    /// Written by a record whose group commit is not yet durable.
    pub dirty: bool,
    /// Pre-warmed batches not yet evaluated that touch the key.
    pub pin_count: u32,
    /// None: loaded from the Ledger and never written since.
    pub last_written: Option<WrittenAt>,
}

/// Why a state cannot be served during evaluation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Unavailable {
    #[error("the key was not pre-warmed for a batch being evaluated")]
    NotPrewarmed,
    #[error("the Ledger's answer for the key has not been loaded yet")]
    LoadPending,
}

#[derive(Debug)]
enum Slot {
    /// Reserved by a pre-warm whose multi-get has not answered yet.
    Loading,
    /// `None`: the entity does not exist yet.
    Loaded(Option<Vec<u8>>),
}

#[derive(Debug)]
struct CachedEntity {
    slot: Slot,
    dirty: bool,
    last_written: Option<WrittenAt>,
    /// While dirty: the entry's key in its partition's dirty index.
    dirty_stamp: u64,
    pin_count: u32,
    /// The use stamp of the last pre-warm that pinned the entry.
    last_used: u64,
}

impl CachedEntity {
    fn evictable(&self) -> bool {
        !self.dirty && self.pin_count == 0
    }
}

/// Entity keys under unique positions. Positions are integers (stamps), so
/// an index update compares integers only, never the keys.
#[derive(Debug)]
struct KeyIndex<O> {
    by_position: BTreeMap<O, EntityKey>,
}

impl<O> Default for KeyIndex<O> {
    fn default() -> Self {
        Self {
            by_position: BTreeMap::new(),
        }
    }
}

impl<O: Ord + Copy + std::fmt::Debug> KeyIndex<O> {
    fn len(&self) -> usize {
        self.by_position.len()
    }

    fn insert(&mut self, position: O, key: EntityKey) {
        let previous = self.by_position.insert(position, key);
        assert!(
            previous.is_none(),
            "a position indexes one key: {position:?}"
        );
    }

    fn remove(&mut self, position: O, key: &EntityKey) {
        let removed = self.by_position.remove(&position);
        assert!(
            removed.as_ref() == Some(key),
            "an indexed entry is found at its position"
        );
    }

    fn contains(&self, position: O, key: &EntityKey) -> bool {
        self.by_position.get(&position) == Some(key)
    }

    /// The key at the smallest position.
    fn pop_first(&mut self) -> Option<EntityKey> {
        self.by_position.pop_first().map(|(_, key)| key)
    }

    /// Removes and returns every key at a position up to `last`.
    fn take_through(&mut self, last: O) -> Vec<EntityKey> {
        let mut taken = Vec::new();
        while let Some(first) = self.by_position.first_entry() {
            if *first.key() > last {
                break;
            }
            taken.push(first.remove());
        }
        taken
    }
}

/// spec: registrar.OneCacheEntryPerKey
#[derive(Debug)]
pub(crate) struct EntityCache {
    capacity: usize,
    /// Logical clock for least-recently-used order: a pre-warm stamps its
    /// keys in key order, so ordering by stamp is ordering by pre-warm with
    /// ties broken by key, the spec's `last_used` order.
    access_clock: u64,
    /// One stamp per write, to tell apart the writes at one offset.
    write_clock: u64,
    entries: HashMap<EntityKey, CachedEntity>,
    /// Clean, unpinned entries by use stamp: the eviction order.
    evictable: KeyIndex<u64>,
    /// Dirty entries of each writing partition, by last written offset.
    dirty: BTreeMap<Partition, KeyIndex<(Offset, u64)>>,
    evictions: u64,
}

impl EntityCache {
    /// spec: registrar.CacheCapacityIsConfigured
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            capacity,
            access_clock: 0,
            write_clock: 0,
            entries: HashMap::new(),
            evictable: KeyIndex::default(),
            dirty: BTreeMap::new(),
            evictions: 0,
        }
    }

    pub(crate) fn capacity(&self) -> usize {
        self.capacity
    }

    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    pub(crate) fn evictable_len(&self) -> usize {
        self.evictable.len()
    }

    pub(crate) fn dirty_len(&self) -> usize {
        self.dirty.values().map(KeyIndex::len).sum()
    }

    pub(crate) fn evictions(&self) -> u64 {
        self.evictions
    }

    /// Entries no pre-warm may evict: dirty or pinned.
    pub(crate) fn unevictable_len(&self) -> usize {
        self.entries.len() - self.evictable.len()
    }

    pub(crate) fn is_unevictable(&self, key: &EntityKey) -> bool {
        self.entries
            .get(key)
            .is_some_and(|entry| !entry.evictable())
    }

    pub(crate) fn status(&self, key: &EntityKey) -> Option<CacheEntryStatus> {
        self.entries.get(key).map(|entry| CacheEntryStatus {
            loaded: matches!(entry.slot, Slot::Loaded(_)),
            dirty: entry.dirty,
            pin_count: entry.pin_count,
            last_written: entry.last_written,
        })
    }

    /// Pins every key of a batch being pre-warmed and reserves an entry for
    /// each missing one, evicting first if the free slots do not suffice.
    /// `keys` are sorted and distinct and must fit beside the unevictable
    /// entries outside them. Returns the missing keys, in key order: the
    /// one multi-get the Ledger answers.
    ///
    /// spec: registrar.PrewarmTouchedKeysInOneMultiGet
    pub(crate) fn pin(&mut self, keys: &[EntityKey]) -> Vec<EntityKey> {
        assert!(
            keys.windows(2).all(|pair| pair[0] < pair[1]),
            "pre-warm keys are sorted and distinct"
        );
        // Counted in the pinning pass itself (one lookup per key): the
        // bound is checked before anything is evicted or inserted.
        let unevictable_before = self.unevictable_len();
        let mut unevictable_inside = 0;
        let mut missing = Vec::new();
        let mut missing_stamps = Vec::new();
        for key in keys {
            self.access_clock += 1;
            let stamp = self.access_clock;
            match self.entries.get_mut(key) {
                Some(entry) => {
                    if entry.evictable() {
                        self.evictable.remove(entry.last_used, key);
                    } else {
                        unevictable_inside += 1;
                    }
                    entry.pin_count += 1;
                    entry.last_used = stamp;
                }
                None => {
                    missing.push(key.clone());
                    missing_stamps.push(stamp);
                }
            }
        }
        let unevictable_outside = unevictable_before - unevictable_inside;
        assert!(
            keys.len() + unevictable_outside <= self.capacity,
            "the admitted batch fits beside the unevictable entries"
        );
        let free_slots = self.capacity - self.entries.len();
        self.evict_least_recently_used(missing.len().saturating_sub(free_slots));
        for (key, stamp) in missing.iter().zip(missing_stamps) {
            let entry = CachedEntity {
                slot: Slot::Loading,
                dirty: false,
                last_written: None,
                dirty_stamp: 0,
                pin_count: 1,
                last_used: stamp,
            };
            assert!(self.entries.insert(key.clone(), entry).is_none());
        }
        assert!(self.entries.len() <= self.capacity, "never over capacity");
        missing
    }

    /// The batch's own keys are pinned by now, so they are never victims.
    ///
    /// spec: registrar.EvictLeastRecentlyUsedCleanEntries, registrar.NoUnflushedWriteOutsideCache
    fn evict_least_recently_used(&mut self, count: usize) {
        for _ in 0..count {
            let victim = self
                .evictable
                .pop_first()
                .expect("pre-warm admitted only a batch that leaves enough evictable entries");
            let entry = self
                .entries
                .remove(&victim)
                .expect("an indexed entry is cached");
            assert!(
                entry.evictable(),
                "a dirty or pinned entry is never evicted"
            );
            self.evictions += 1;
        }
    }

    /// Fills an entry reserved by `pin` with the Ledger's answer.
    pub(crate) fn load(&mut self, key: &EntityKey, state: Option<Vec<u8>>) {
        let entry = self
            .entries
            .get_mut(key)
            .expect("a key being loaded was reserved by its pre-warm");
        assert!(
            matches!(entry.slot, Slot::Loading),
            "a key is loaded once, after its reservation"
        );
        assert!(entry.pin_count > 0, "a key being loaded is pinned");
        entry.slot = Slot::Loaded(state);
    }

    /// spec: registrar.ReadYourWritesFromCache
    pub(crate) fn state(&self, key: &EntityKey) -> Result<Option<&[u8]>, Unavailable> {
        let entry = self.entries.get(key).ok_or(Unavailable::NotPrewarmed)?;
        if entry.pin_count == 0 {
            return Err(Unavailable::NotPrewarmed);
        }
        match &entry.slot {
            Slot::Loading => Err(Unavailable::LoadPending),
            Slot::Loaded(state) => Ok(state.as_deref()),
        }
    }

    /// Replaces a pinned entry's state with a write not yet durable.
    pub(crate) fn write(&mut self, key: &EntityKey, at: WrittenAt, state: &[u8]) {
        let entry = self
            .entries
            .get_mut(key)
            .expect("a written key was pre-warmed");
        assert!(entry.pin_count > 0, "a written key is pinned by its batch");
        assert!(
            matches!(entry.slot, Slot::Loaded(_)),
            "a written key was loaded before evaluation"
        );
        if entry.dirty {
            let previous = entry.last_written.expect("a dirty entry has been written");
            self.dirty
                .get_mut(&previous.partition)
                .expect("a dirty entry is indexed under its partition")
                .remove((previous.offset, entry.dirty_stamp), key);
        }
        self.write_clock += 1;
        entry.slot = Slot::Loaded(Some(state.to_vec()));
        entry.dirty = true;
        entry.last_written = Some(at);
        entry.dirty_stamp = self.write_clock;
        self.dirty
            .entry(at.partition)
            .or_default()
            .insert((at.offset, self.write_clock), key.clone());
    }

    /// spec: registrar.PinCountNonNegative
    pub(crate) fn unpin(&mut self, key: &EntityKey) {
        let entry = self
            .entries
            .get_mut(key)
            .expect("a key pinned by a batch stays cached until released");
        assert!(entry.pin_count > 0, "a pin is released once");
        entry.pin_count -= 1;
        if entry.evictable() {
            self.evictable.insert(entry.last_used, key.clone());
        }
    }

    /// Marks clean every entry `partition` last wrote at or before
    /// `through_offset`; an entry written again later keeps its higher
    /// offset and stays dirty. Returns how many became clean.
    ///
    /// spec: registrar.MarkEntriesCleanWhenCommitDurable
    pub(crate) fn clean_through(&mut self, partition: Partition, through_offset: Offset) -> usize {
        let Some(index) = self.dirty.get_mut(&partition) else {
            return 0;
        };
        let cleaned = index.take_through((through_offset, u64::MAX));
        for key in &cleaned {
            let entry = self
                .entries
                .get_mut(key)
                .expect("a dirty entry is never evicted");
            assert!(entry.dirty, "the dirty index holds dirty entries only");
            entry.dirty = false;
            if entry.evictable() {
                self.evictable.insert(entry.last_used, key.clone());
            }
        }
        cleaned.len()
    }

    /// Checks every entry against the indexes and `applied_offset` (the
    /// watermark of a partition). Linear: for tests and debugging.
    ///
    /// spec: registrar.CacheNeverOverCapacity, registrar.DirtyEntriesAreNotYetDurable, registrar.CleanEntriesAreDurable
    pub(crate) fn assert_invariants(&self, applied_offset: impl Fn(Partition) -> Offset) {
        assert!(self.entries.len() <= self.capacity, "never over capacity");
        let mut evictable = 0;
        let mut dirty = 0;
        for (key, entry) in &self.entries {
            assert!(entry.last_used <= self.access_clock);
            if matches!(entry.slot, Slot::Loading) {
                assert!(entry.pin_count > 0, "a loading entry is pinned");
            }
            if entry.evictable() {
                evictable += 1;
                assert!(self.evictable.contains(entry.last_used, key));
            }
            match (entry.dirty, entry.last_written) {
                (true, Some(written)) => {
                    dirty += 1;
                    assert!(
                        written.offset > applied_offset(written.partition),
                        "a dirty entry is not yet durable"
                    );
                    let index = self.dirty.get(&written.partition);
                    assert!(index.is_some_and(|index| {
                        index.contains((written.offset, entry.dirty_stamp), key)
                    }));
                }
                (true, None) => panic!("a dirty entry has been written"),
                (false, Some(written)) => assert!(
                    written.offset <= applied_offset(written.partition),
                    "a clean entry is durable"
                ),
                (false, None) => {}
            }
        }
        assert_eq!(evictable, self.evictable.len(), "no stale eviction entries");
        assert_eq!(dirty, self.dirty_len(), "no stale dirty entries");
    }
}

#[cfg(test)]
mod tests;
