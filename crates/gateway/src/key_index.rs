//! The key index behind GET /v1/commands/{key}: who owns an idempotency key
//! in each partition, mirrored from publications with the Warden's
//! first-writer rule and expired with its TTL, in stream time.

use std::collections::{BTreeMap, HashMap};

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

#[derive(Debug, Default)]
struct PartitionKeys {
    by_key: HashMap<String, AgreedOutcome>,
    /// (record_timestamp, insertion sequence) -> key: expiry and eviction
    /// order; the sequence breaks ties of equal timestamps.
    by_age: BTreeMap<(i64, u64), String>,
}

impl PartitionKeys {
    fn remove_oldest(&mut self) {
        let (_, key) = self.by_age.pop_first().expect("a partition with entries");
        let removed = self.by_key.remove(&key);
        assert!(removed.is_some(), "every age entry names a held key");
    }

    fn oldest(&self) -> Option<(i64, u64)> {
        self.by_age.first_key_value().map(|(age, _)| *age)
    }
}

/// Bounded by `max_entries` across partitions: when full, the entry with
/// the oldest record timestamp goes first.
#[derive(Debug)]
pub struct KeyIndex {
    max_entries: usize,
    ttl_ms: i64,
    entries: usize,
    next_sequence: u64,
    partitions: BTreeMap<Partition, PartitionKeys>,
}

impl KeyIndex {
    pub fn new(max_entries: usize, ttl_ms: i64) -> Self {
        assert!(max_entries > 0 && ttl_ms > 0, "a usable key index");
        Self {
            max_entries,
            ttl_ms,
            entries: 0,
            next_sequence: 0,
            partitions: BTreeMap::new(),
        }
    }

    pub fn len(&self) -> usize {
        self.entries
    }

    pub fn is_empty(&self) -> bool {
        self.entries == 0
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
        let ttl_ms = self.ttl_ms;
        let keys = self.partitions.entry(partition).or_default();
        let mut expired = 0;
        while keys
            .oldest()
            .is_some_and(|(stamp, _)| stamp.saturating_add(ttl_ms) <= record_timestamp)
        {
            keys.remove_oldest();
            expired += 1;
        }
        self.entries -= expired;
        for answer in first_answers {
            if self.partition_holds(partition, &answer.key) {
                continue;
            }
            if self.entries >= self.max_entries {
                self.evict_oldest();
            }
            let sequence = self.next_sequence;
            self.next_sequence += 1;
            let keys = self.partitions.entry(partition).or_default();
            keys.by_age
                .insert((record_timestamp, sequence), answer.key.clone());
            keys.by_key.insert(answer.key, answer.outcome);
            self.entries += 1;
        }
        self.partitions.retain(|_, keys| !keys.by_key.is_empty());
        debug_assert_eq!(
            self.entries,
            self.partitions
                .values()
                .map(|k| k.by_key.len())
                .sum::<usize>()
        );
    }

    /// The owner of `key`, in `partition` when a sku named one.
    ///
    /// spec: gateway.CommandLookupReturnsAgreedOutcome, gateway.CommandLookupUnknownKey, gateway.CommandLookupAmbiguousKey
    pub fn lookup(&self, key: &str, partition: Option<Partition>) -> CommandLookup {
        let mut found = self
            .partitions
            .iter()
            .filter(|(p, _)| partition.is_none_or(|wanted| **p == wanted))
            .filter_map(|(p, keys)| keys.by_key.get(key).map(|entry| (*p, entry)));
        match (found.next(), found.next()) {
            (None, _) => CommandLookup::Unknown,
            (Some((_, entry)), None) => CommandLookup::Found(entry.clone()),
            (Some((first, _)), Some((second, _))) => {
                let mut partitions = vec![first, second];
                partitions.extend(found.map(|(p, _)| p));
                CommandLookup::Ambiguous { partitions }
            }
        }
    }

    fn partition_holds(&self, partition: Partition, key: &str) -> bool {
        self.partitions
            .get(&partition)
            .is_some_and(|keys| keys.by_key.contains_key(key))
    }

    fn evict_oldest(&mut self) {
        let oldest = self
            .partitions
            .iter()
            .filter_map(|(p, keys)| keys.oldest().map(|age| (age, *p)))
            .min()
            .map(|(_, p)| p)
            .expect("a full index holds entries");
        self.partitions
            .get_mut(&oldest)
            .expect("found above")
            .remove_oldest();
        self.entries -= 1;
    }
}

#[cfg(test)]
mod tests;
