//! The key index behind GET /v1/commands/{key}: who owns an idempotency key
//! in each partition, mirrored from publications with the Warden's
//! first-writer rule and expired with its TTL, in stream time.

use std::collections::BTreeMap;

use foldhash::{HashMap, HashMapExt as _};
use protocol::position::Partition;

use crate::outcomes::{AgreedOutcome, FirstAnswer};

/// The answer of a command lookup.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CommandLookup {
    Found(AgreedOutcome),
    /// Never owned, or expired, or evicted.
    Unknown,
    /// The key owns commands in several partitions; a sku picks one.
    Ambiguous {
        partitions: Vec<Partition>,
    },
}

/// Bounded by `max_entries` across partitions: when full, the entry with
/// the oldest record timestamp goes first.
///
/// The map of owners is allocated when the index is made, at twice its
/// bound: a map growing with the traffic rehashed every entry at each
/// doubling, on the gateway's thread of every instance at the same
/// publication, stalling all of them at once (latency spikes at ~57k and
/// ~115k keys). Twice, because a hash map whose removed slots run out
/// rehashes in place only when at most half full, and grows otherwise.
#[derive(Debug)]
pub struct KeyIndex {
    max_entries: usize,
    ttl_ms: i64,
    next_sequence: u64,
    owners: HashMap<(Partition, String), AgreedOutcome>,
    /// Per partition, (record_timestamp, insertion sequence) -> key: expiry
    /// and eviction order; the sequence breaks ties of equal timestamps.
    ages: BTreeMap<Partition, BTreeMap<(i64, u64), String>>,
}

impl KeyIndex {
    pub fn new(max_entries: usize, ttl_ms: i64) -> Self {
        assert!(max_entries > 0 && ttl_ms > 0, "a usable key index");
        Self {
            max_entries,
            ttl_ms,
            next_sequence: 0,
            owners: HashMap::with_capacity(max_entries.saturating_mul(2)),
            ages: BTreeMap::new(),
        }
    }

    pub fn len(&self) -> usize {
        self.owners.len()
    }

    pub fn is_empty(&self) -> bool {
        self.owners.is_empty()
    }

    /// Entries the index holds without allocating.
    #[cfg(test)]
    pub(crate) fn capacity(&self) -> usize {
        self.owners.capacity()
    }

    /// Expires the partition's entries whose TTL has passed at the
    /// publication's stream time (so an expired key can be owned again, as
    /// the Warden lets a fresh command replace an expired entry), then
    /// records the first answers of keys with no entry.
    ///
    /// spec: gateway.KeyIndexUpdatedFromOutcome, gateway.KeyIndexEvictsOldestWhenFull
    pub fn record(
        &mut self,
        partition: Partition,
        record_timestamp: i64,
        first_answers: Vec<FirstAnswer>,
    ) {
        while self
            .oldest_of(partition)
            .is_some_and(|(stamp, _)| stamp.saturating_add(self.ttl_ms) <= record_timestamp)
        {
            self.remove_oldest_of(partition);
        }
        for answer in first_answers {
            let owner = (partition, answer.key);
            if self.owners.contains_key(&owner) {
                continue;
            }
            if self.owners.len() >= self.max_entries {
                self.evict_oldest();
            }
            let sequence = self.next_sequence;
            self.next_sequence += 1;
            self.ages
                .entry(partition)
                .or_default()
                .insert((record_timestamp, sequence), owner.1.clone());
            self.owners.insert(owner, answer.outcome);
        }
        debug_assert_eq!(
            self.owners.len(),
            self.ages.values().map(BTreeMap::len).sum::<usize>()
        );
    }

    /// The owner of `key`, in `partition` when a sku named one.
    ///
    /// spec: gateway.CommandLookupReturnsAgreedOutcome, gateway.CommandLookupUnknownKey, gateway.CommandLookupAmbiguousKey
    pub fn lookup(&self, key: &str, partition: Option<Partition>) -> CommandLookup {
        let mut probe = (0, key.to_owned());
        let mut found = Vec::new();
        for &held in self.ages.keys() {
            if partition.is_some_and(|wanted| wanted != held) {
                continue;
            }
            probe.0 = held;
            if let Some(entry) = self.owners.get(&probe) {
                found.push((held, entry));
            }
        }
        match found.as_slice() {
            [] => CommandLookup::Unknown,
            [(_, entry)] => CommandLookup::Found((*entry).clone()),
            several => CommandLookup::Ambiguous {
                partitions: several.iter().map(|(p, _)| *p).collect(),
            },
        }
    }

    fn oldest_of(&self, partition: Partition) -> Option<(i64, u64)> {
        self.ages
            .get(&partition)
            .and_then(|ages| ages.first_key_value())
            .map(|(age, _)| *age)
    }

    fn remove_oldest_of(&mut self, partition: Partition) {
        let ages = self
            .ages
            .get_mut(&partition)
            .expect("a partition with entries");
        let (_, key) = ages.pop_first().expect("a partition with entries");
        if ages.is_empty() {
            self.ages.remove(&partition);
        }
        let removed = self.owners.remove(&(partition, key));
        assert!(removed.is_some(), "every age entry names a held key");
    }

    fn evict_oldest(&mut self) {
        let oldest = self
            .ages
            .iter()
            .filter_map(|(&p, ages)| ages.first_key_value().map(|(&age, _)| (age, p)))
            .min()
            .map(|(_, p)| p)
            .expect("a full index holds entries");
        self.remove_oldest_of(oldest);
    }
}

#[cfg(test)]
mod tests;
