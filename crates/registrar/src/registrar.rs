//! The Registrar's deterministic core: admission of batches into the cache
//! (fit, split, wait), the pre-warm plan and load, the view evaluation reads,
//! dirty writes, durable commits and the persistence watermark.

use std::collections::{BTreeMap, BTreeSet};

use domain::{Domain, EntityKey, EntityStates};
use protocol::position::{CommandPosition, Offset, Partition};

use crate::cache::{CacheEntryStatus, EntityCache, Unavailable, WrittenAt};
use crate::config::{ConfigError, RegistrarConfig};

/// A partition's watermark as the Ledger stored it (-1 for a fresh or wiped
/// store).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LoadedWatermark {
    pub partition: Partition,
    pub applied_offset: Offset,
}

/// The distinct keys the fresh commands of one record touch; empty for a
/// record of duplicates or an undecodable record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecordKeys {
    pub offset: Offset,
    pub keys: Vec<EntityKey>,
}

impl RecordKeys {
    /// The sorted union of the keys `domain` declares for `fresh_commands`.
    pub fn of_fresh_commands<'c, D: Domain>(
        offset: Offset,
        domain: &D,
        fresh_commands: impl IntoIterator<Item = &'c D::Command>,
    ) -> Self
    where
        D::Command: 'c,
    {
        let keys: BTreeSet<EntityKey> = fresh_commands
            .into_iter()
            .flat_map(|command| domain.touched_keys(command))
            .collect();
        Self {
            offset,
            keys: keys.into_iter().collect(),
        }
    }
}

/// Where a batch offered for pre-warm starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BatchStart {
    pub partition: Partition,
    pub first_offset: Offset,
}

/// The answer to a batch offered for pre-warm.
#[derive(Debug)]
pub enum Admission {
    /// The leading [`PendingPrewarm::admitted_records`] records are pinned;
    /// read [`PendingPrewarm::keys_to_read`] from the Ledger in one
    /// multi-get. If fewer records were admitted than offered, the batch is
    /// split there and the remainder must be offered next.
    Prewarm(PendingPrewarm),
    /// Not even the first record fits beside the dirty and pinned entries:
    /// offer the batch again when [`DurableOutcome::retry_waiting_batch`]
    /// names it. Nothing else is admitted meanwhile.
    WaitForRoom,
}

/// A pre-warm waiting for its one Ledger multi-get.
#[derive(Debug)]
pub struct PendingPrewarm {
    id: u64,
    batch: PrewarmedBatch,
    keys_to_read: Vec<EntityKey>,
    offered_records: usize,
}

impl PendingPrewarm {
    /// The touched keys not cached, sorted: one multi-get, answered in this
    /// order. Empty: pass no states, without asking the Ledger.
    pub fn keys_to_read(&self) -> &[EntityKey] {
        &self.keys_to_read
    }

    pub fn admitted_records(&self) -> usize {
        self.batch.record_offsets.len()
    }

    /// Records of the offered batch left for a later pre-warm; zero unless
    /// the batch was split.
    pub fn remainder_records(&self) -> usize {
        self.offered_records - self.admitted_records()
    }

    pub fn batch(&self) -> &PrewarmedBatch {
        &self.batch
    }
}

/// A batch whose touched entries are cached and pinned until its writes are
/// applied. Not `Clone`: it is released exactly once.
#[derive(Debug)]
pub struct PrewarmedBatch {
    partition: Partition,
    record_offsets: Vec<Offset>,
    keys: Vec<EntityKey>,
    /// The last offset admitted on the partition before this batch: the
    /// batch before it must be released first.
    after_offset: Offset,
}

impl PrewarmedBatch {
    pub fn partition(&self) -> Partition {
        self.partition
    }

    /// Offsets of the batch's records, increasing.
    pub fn record_offsets(&self) -> &[Offset] {
        &self.record_offsets
    }

    pub fn first_offset(&self) -> Offset {
        self.record_offsets[0]
    }

    pub fn last_offset(&self) -> Offset {
        *self
            .record_offsets
            .last()
            .expect("a batch holds at least one record")
    }

    /// The touched keys, sorted and distinct: what evaluation may read.
    pub fn keys(&self) -> &[EntityKey] {
        &self.keys
    }
}

/// One staged write of an accepted command, borrowed from the Arbiter's
/// output (which the Ledger persists).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EntityWriteAt<'a> {
    pub position: CommandPosition,
    pub key: &'a EntityKey,
    pub state: &'a [u8],
}

/// The watermark moved: records `from_offset..=through_offset` are durable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WatermarkAdvanced {
    pub partition: Partition,
    pub from_offset: Offset,
    pub through_offset: Offset,
}

/// What a durable group commit changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DurableOutcome {
    /// None when the report was at or below the watermark.
    pub advanced: Option<WatermarkAdvanced>,
    pub cleaned_entries: usize,
    /// The batch that was waiting for room: offer it again before any other.
    pub retry_waiting_batch: Option<BatchStart>,
}

/// Cache gauges for `/metrics`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CacheStats {
    pub capacity: usize,
    pub entries: usize,
    pub dirty: usize,
    pub evictable: usize,
    pub evictions: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("the Ledger's watermark {applied_offset} of partition {partition} is below -1")]
    WatermarkBelowStart {
        partition: Partition,
        applied_offset: Offset,
    },
    #[error("partition {partition} was loaded twice")]
    DuplicatePartition { partition: Partition },
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AdmitError {
    #[error("partition {partition} has no watermark")]
    UnknownPartition { partition: Partition },
    #[error("a batch holds at least one record")]
    EmptyBatch,
    #[error("record offset {offset} does not follow offset {previous}")]
    OffsetNotIncreasing { previous: Offset, offset: Offset },
    #[error("record {offset} touches {keys} keys, more than the bound of {max_keys}")]
    RecordOverKeyBound {
        offset: Offset,
        keys: usize,
        max_keys: usize,
    },
    #[error("the previous pre-warm's multi-get has not been loaded")]
    LoadPending,
    #[error("the batch at {waiting:?} is waiting for room")]
    WaitingForRoom { waiting: BatchStart },
    #[error("the batch at {expected:?} must be offered first")]
    OutOfArrivalOrder { expected: BatchStart },
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum LoadError {
    #[error("the pre-warm is not the one this Registrar is waiting for")]
    UnknownPrewarm,
    #[error("{got} states for {expected} keys")]
    StateCountMismatch { expected: usize, got: usize },
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ApplyError {
    #[error(
        "partition {partition}: the batch after offset {after_offset} is released \
         while evaluation is at {evaluated_offset}"
    )]
    OutOfOrder {
        partition: Partition,
        after_offset: Offset,
        evaluated_offset: Offset,
    },
    #[error("write at {position} is outside the batch's records")]
    OutsideBatch { position: CommandPosition },
    #[error("write at {position} to {key}, a key the batch does not touch")]
    KeyNotTouched {
        position: CommandPosition,
        key: EntityKey,
    },
    #[error("write at {position} comes after a write at {previous}")]
    NotInLogOrder {
        previous: CommandPosition,
        position: CommandPosition,
    },
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DurableError {
    #[error("partition {partition} has no watermark")]
    UnknownPartition { partition: Partition },
    #[error(
        "partition {partition}: commit through {through_offset} is ahead of evaluation at \
         {evaluated_offset}"
    )]
    AheadOfEvaluation {
        partition: Partition,
        through_offset: Offset,
        evaluated_offset: Offset,
    },
}

/// A call refused: nothing changed, and the argument it consumed comes back.
#[derive(Debug, thiserror::Error)]
#[error("{error}")]
pub struct Refused<T: std::fmt::Debug, E: std::error::Error + 'static> {
    pub returned: T,
    #[source]
    pub error: E,
}

/// A state evaluation asked for and cannot have.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("state of {key} unavailable: {reason}")]
pub struct StateUnavailable {
    pub key: EntityKey,
    pub reason: Unavailable,
}

/// One partition's progress through the Registrar; always
/// `applied_offset <= evaluated_offset <= admitted_offset`.
#[derive(Clone, Copy, Debug)]
struct PartitionProgress {
    /// The persistence watermark.
    applied_offset: Offset,
    /// Last offset of the last batch whose writes were applied.
    evaluated_offset: Offset,
    /// Last offset of the last batch admitted for pre-warm.
    admitted_offset: Offset,
}

#[derive(Clone, Copy, Debug)]
struct HeadBatch {
    start: BatchStart,
    waiting_for_room: bool,
}

/// The Registrar of one instance: its one cache, shared by all partitions,
/// and every partition's watermark.
///
/// The shell drives one pre-warm at a time, in arrival order:
/// [`Registrar::admit`] → one Ledger multi-get of
/// [`PendingPrewarm::keys_to_read`] → [`Registrar::complete_prewarm`] → the
/// Arbiter evaluates against the Registrar ([`EntityStates`]) →
/// [`Registrar::apply_batch_writes`] → the Ledger's group commit →
/// [`Registrar::on_durable`]. The next batch may be pre-warmed while the
/// previous one is evaluated; a partition's batches are released in order.
#[derive(Debug)]
pub struct Registrar {
    config: RegistrarConfig,
    cache: EntityCache,
    progress: BTreeMap<Partition, PartitionProgress>,
    /// A split remainder or a batch waiting for room: served before any other.
    head: Option<HeadBatch>,
    /// The pre-warm whose multi-get is outstanding.
    pending_load: Option<u64>,
    next_prewarm_id: u64,
}

impl Registrar {
    /// Starts with the watermarks the Ledger holds and an empty cache:
    /// nothing cached survives a restart. Consumed offset and stream time
    /// are the Usher's (usher.AssignPartitionFromWatermark).
    ///
    /// spec: registrar.LoadWatermarkFromLedgerOnRecovery
    pub fn new(config: RegistrarConfig, loaded: &[LoadedWatermark]) -> Result<Self, StartError> {
        config.validate()?;
        let mut progress = BTreeMap::new();
        for watermark in loaded {
            if watermark.applied_offset < -1 {
                return Err(StartError::WatermarkBelowStart {
                    partition: watermark.partition,
                    applied_offset: watermark.applied_offset,
                });
            }
            let start = PartitionProgress {
                applied_offset: watermark.applied_offset,
                evaluated_offset: watermark.applied_offset,
                admitted_offset: watermark.applied_offset,
            };
            if progress.insert(watermark.partition, start).is_some() {
                return Err(StartError::DuplicatePartition {
                    partition: watermark.partition,
                });
            }
        }
        Ok(Self {
            config,
            cache: EntityCache::new(config.max_cached_entities),
            progress,
            head: None,
            pending_load: None,
            next_prewarm_id: 0,
        })
    }

    pub fn config(&self) -> &RegistrarConfig {
        &self.config
    }

    /// The persistence watermark of `partition`.
    pub fn applied_offset(&self, partition: Partition) -> Option<Offset> {
        self.progress
            .get(&partition)
            .map(|progress| progress.applied_offset)
    }

    /// Every partition's watermark, by partition.
    pub fn watermarks(&self) -> Vec<LoadedWatermark> {
        self.progress
            .iter()
            .map(|(&partition, progress)| LoadedWatermark {
                partition,
                applied_offset: progress.applied_offset,
            })
            .collect()
    }

    /// The batch waiting for room, if one is.
    pub fn waiting_for_room(&self) -> Option<BatchStart> {
        self.head
            .filter(|head| head.waiting_for_room)
            .map(|head| head.start)
    }

    pub fn cache_stats(&self) -> CacheStats {
        CacheStats {
            capacity: self.cache.capacity(),
            entries: self.cache.len(),
            dirty: self.cache.dirty_len(),
            evictable: self.cache.evictable_len(),
            evictions: self.cache.evictions(),
        }
    }

    pub fn cache_entry(&self, key: &EntityKey) -> Option<CacheEntryStatus> {
        self.cache.status(key)
    }

    /// How many leading records of `records` fit the cache now: the longest
    /// prefix whose distinct keys, with the dirty and pinned entries outside
    /// them, number at most the capacity. Each record is whole; a key of the
    /// prefix that is already unevictable needs no new slot.
    ///
    /// spec: registrar.SplitBatchToFitCache
    pub fn fitting_records(&self, records: &[RecordKeys]) -> usize {
        let mut needed_slots = self.cache.unevictable_len();
        let at_most_new: usize = records.iter().map(|record| record.keys.len()).sum();
        if needed_slots + at_most_new <= self.cache.capacity() {
            return records.len();
        }
        let mut seen = BTreeSet::new();
        for (fitting, record) in records.iter().enumerate() {
            for key in &record.keys {
                if seen.insert(key) && !self.cache.is_unevictable(key) {
                    needed_slots += 1;
                }
            }
            if needed_slots > self.cache.capacity() {
                return fitting;
            }
        }
        records.len()
    }

    /// Offers a classified batch of `partition` for pre-warm, in arrival
    /// order: a split remainder is served before any other, a batch waiting
    /// for room is offered again only once a durable commit names it, and
    /// one multi-get is outstanding at a time. Admits the
    /// longest prefix of whole records that fits (all of them if it can),
    /// pins its keys, evicts what room needs and reserves the missing keys.
    ///
    /// spec: registrar.ClassifiedBatchOfferedForPrewarm, registrar.BatchSpansWholeRecords, registrar.PrewarmedBatchFitsCache
    pub fn admit(
        &mut self,
        partition: Partition,
        records: &[RecordKeys],
    ) -> Result<Admission, AdmitError> {
        self.check_offer(partition, records)?;
        let offered = BatchStart {
            partition,
            first_offset: records[0].offset,
        };
        let admitted_records = self.fitting_records(records);
        if admitted_records == 0 {
            self.wait_for_room(offered);
            return Ok(Admission::WaitForRoom);
        }
        let admitted = &records[..admitted_records];
        let mut distinct: Vec<&EntityKey> = admitted
            .iter()
            .flat_map(|record| record.keys.iter())
            .collect();
        distinct.sort_unstable();
        distinct.dedup();
        let keys: Vec<EntityKey> = distinct.into_iter().cloned().collect();
        assert!(
            keys.len() <= self.cache.capacity(),
            "a pre-warmed batch fits the cache"
        );
        let keys_to_read = self.cache.pin(&keys);

        let progress = self
            .progress
            .get_mut(&partition)
            .expect("check_offer found the partition");
        let after_offset = progress.admitted_offset;
        let record_offsets: Vec<Offset> = admitted.iter().map(|record| record.offset).collect();
        progress.admitted_offset = *record_offsets.last().expect("at least one record fits");
        self.head = records.get(admitted_records).map(|remainder| HeadBatch {
            start: BatchStart {
                partition,
                first_offset: remainder.offset,
            },
            waiting_for_room: false,
        });
        let id = self.next_prewarm_id;
        self.next_prewarm_id += 1;
        self.pending_load = Some(id);
        Ok(Admission::Prewarm(PendingPrewarm {
            id,
            batch: PrewarmedBatch {
                partition,
                record_offsets,
                keys,
                after_offset,
            },
            keys_to_read,
            offered_records: records.len(),
        }))
    }

    fn check_offer(&self, partition: Partition, records: &[RecordKeys]) -> Result<(), AdmitError> {
        if self.pending_load.is_some() {
            return Err(AdmitError::LoadPending);
        }
        let progress = self
            .progress
            .get(&partition)
            .ok_or(AdmitError::UnknownPartition { partition })?;
        let first = records.first().ok_or(AdmitError::EmptyBatch)?;
        if let Some(head) = self.head {
            if head.waiting_for_room {
                return Err(AdmitError::WaitingForRoom {
                    waiting: head.start,
                });
            }
            let offered = BatchStart {
                partition,
                first_offset: first.offset,
            };
            if head.start != offered {
                return Err(AdmitError::OutOfArrivalOrder {
                    expected: head.start,
                });
            }
        }
        let max_keys = self.config.max_keys_per_record();
        let mut previous = progress.admitted_offset;
        for record in records {
            if record.offset <= previous {
                return Err(AdmitError::OffsetNotIncreasing {
                    previous,
                    offset: record.offset,
                });
            }
            previous = record.offset;
            if record.keys.len() <= max_keys {
                continue;
            }
            let keys = record.keys.iter().collect::<BTreeSet<_>>().len();
            if keys > max_keys {
                return Err(AdmitError::RecordOverKeyBound {
                    offset: record.offset,
                    keys,
                    max_keys,
                });
            }
        }
        Ok(())
    }

    /// Dirty and pinned entries fill the cache; the next durable commit
    /// frees room (RetryWaitingBatchWhenEntriesClean).
    ///
    /// spec: registrar.WaitForRoomWhenFirstRecordDoesNotFit
    fn wait_for_room(&mut self, batch: BatchStart) {
        self.head = Some(HeadBatch {
            start: batch,
            waiting_for_room: true,
        });
    }

    /// Loads the multi-get's answer: `states[i]` is the Ledger's state of
    /// `keys_to_read()[i]` (None: never written).
    pub fn complete_prewarm(
        &mut self,
        pending: PendingPrewarm,
        states: Vec<Option<Vec<u8>>>,
    ) -> Result<PrewarmedBatch, Box<Refused<PendingPrewarm, LoadError>>> {
        let refusal = if self.pending_load != Some(pending.id) {
            Some(LoadError::UnknownPrewarm)
        } else if states.len() != pending.keys_to_read.len() {
            Some(LoadError::StateCountMismatch {
                expected: pending.keys_to_read.len(),
                got: states.len(),
            })
        } else {
            None
        };
        if let Some(error) = refusal {
            return Err(Box::new(Refused {
                returned: pending,
                error,
            }));
        }
        for (key, state) in pending.keys_to_read.iter().zip(states) {
            self.cache.load(key, state);
        }
        self.pending_load = None;
        Ok(pending.batch)
    }

    /// The state evaluation reads: the last write to the key in log order
    /// (dirty or clean) or the Ledger's state. Only keys of a pre-warmed
    /// batch not yet released are served.
    ///
    /// spec: registrar.EvaluationSeesOnlyDeclaredKeys
    pub fn entity_state(&self, key: &EntityKey) -> Result<Option<&[u8]>, StateUnavailable> {
        self.cache.state(key).map_err(|reason| StateUnavailable {
            key: key.clone(),
            reason,
        })
    }

    /// Applies the staged writes of an evaluated batch as dirty entries (for
    /// a key written more than once the last in log order wins) and
    /// releases its pins. Batches of a partition are released in admission
    /// order. A write outside the batch's records or keys is a domain breach
    /// the Arbiter missed: refused, and the instance must halt.
    ///
    /// spec: registrar.ApplyBatchWritesAsDirtyEntries
    pub fn apply_batch_writes<'a>(
        &mut self,
        batch: PrewarmedBatch,
        writes: impl IntoIterator<Item = EntityWriteAt<'a>>,
    ) -> Result<(), Refused<PrewarmedBatch, ApplyError>> {
        let writes: Vec<EntityWriteAt<'a>> = writes.into_iter().collect();
        if let Err(error) = self.check_writes(&batch, &writes) {
            return Err(Refused {
                returned: batch,
                error,
            });
        }
        for write in &writes {
            let at = WrittenAt {
                partition: write.position.partition,
                offset: write.position.offset,
            };
            self.cache.write(write.key, at, write.state);
        }
        for key in &batch.keys {
            self.cache.unpin(key);
        }
        let progress = self
            .progress
            .get_mut(&batch.partition)
            .expect("a prewarmed batch's partition is known");
        progress.evaluated_offset = batch.last_offset();
        Ok(())
    }

    fn check_writes(
        &self,
        batch: &PrewarmedBatch,
        writes: &[EntityWriteAt<'_>],
    ) -> Result<(), ApplyError> {
        let evaluated_offset = self.progress[&batch.partition].evaluated_offset;
        if evaluated_offset != batch.after_offset {
            return Err(ApplyError::OutOfOrder {
                partition: batch.partition,
                after_offset: batch.after_offset,
                evaluated_offset,
            });
        }
        let mut previous: Option<CommandPosition> = None;
        for write in writes {
            let position = write.position;
            if position.partition != batch.partition
                || batch
                    .record_offsets
                    .binary_search(&position.offset)
                    .is_err()
            {
                return Err(ApplyError::OutsideBatch { position });
            }
            if batch.keys.binary_search(write.key).is_err() {
                return Err(ApplyError::KeyNotTouched {
                    position,
                    key: write.key.clone(),
                });
            }
            if let Some(previous) = previous.filter(|previous| *previous > position) {
                return Err(ApplyError::NotInLogOrder { previous, position });
            }
            previous = Some(position);
        }
        Ok(())
    }

    /// The Ledger reports the group commit through `through_offset` of
    /// `partition` synced: its entries become clean, the watermark advances,
    /// and a batch waiting for room is due again.
    pub fn on_durable(
        &mut self,
        partition: Partition,
        through_offset: Offset,
    ) -> Result<DurableOutcome, DurableError> {
        let progress = self
            .progress
            .get(&partition)
            .ok_or(DurableError::UnknownPartition { partition })?;
        if through_offset > progress.evaluated_offset {
            return Err(DurableError::AheadOfEvaluation {
                partition,
                through_offset,
                evaluated_offset: progress.evaluated_offset,
            });
        }
        let cleaned_entries = self.cache.clean_through(partition, through_offset);
        let advanced = self.advance_watermark(partition, through_offset);
        let retry_waiting_batch = self.retry_waiting_batch();
        Ok(DurableOutcome {
            advanced,
            cleaned_entries,
            retry_waiting_batch,
        })
    }

    /// Only a durable commit moves the watermark, and only up; a report at
    /// or below it changes nothing.
    ///
    /// spec: registrar.AdvanceWatermarkAfterDurableCommit, registrar.WatermarkNeverDecreases, registrar.WatermarkMeansDurable
    fn advance_watermark(
        &mut self,
        partition: Partition,
        through_offset: Offset,
    ) -> Option<WatermarkAdvanced> {
        let progress = self
            .progress
            .get_mut(&partition)
            .expect("on_durable found the partition");
        if through_offset <= progress.applied_offset {
            return None;
        }
        let from_offset = progress.applied_offset + 1;
        progress.applied_offset = through_offset;
        assert!(progress.applied_offset <= progress.evaluated_offset);
        Some(WatermarkAdvanced {
            partition,
            from_offset,
            through_offset,
        })
    }

    /// spec: registrar.RetryWaitingBatchWhenEntriesClean
    fn retry_waiting_batch(&mut self) -> Option<BatchStart> {
        let head = self.head.as_mut().filter(|head| head.waiting_for_room)?;
        head.waiting_for_room = false;
        Some(head.start)
    }

    /// Checks every invariant of the cache and the watermarks. Linear in the
    /// cache size: for tests and debugging, not the hot path.
    pub fn assert_invariants(&self) {
        for progress in self.progress.values() {
            assert!(progress.applied_offset >= -1);
            assert!(progress.applied_offset <= progress.evaluated_offset);
            assert!(progress.evaluated_offset <= progress.admitted_offset);
        }
        self.cache.assert_invariants(|partition| {
            self.applied_offset(partition)
                .expect("only batches of known partitions write")
        });
    }
}

/// Panics on a key that was not pre-warmed: the Arbiter serves only declared
/// keys, so this is a broken pipeline, and the Arbiter's panic boundary
/// halts the instance (arbiter.DomainPanicHaltsInstance). Every state served
/// is the last write in log order, so capacity, eviction and splits never
/// reach an output.
///
/// spec: registrar.CacheInvisibleInOutputs
impl EntityStates for Registrar {
    fn state(&self, key: &EntityKey) -> Option<&[u8]> {
        match self.entity_state(key) {
            Ok(state) => state,
            Err(unavailable) => panic!("evaluation misses the cache: {unavailable}"),
        }
    }
}

#[cfg(test)]
mod tests;
