//! What one group commit writes, assembled in memory before the one synced
//! WriteBatch (see [`crate::store::Ledger::write`]).

use std::collections::{BTreeMap, BTreeSet};

use domain::{EntityKey, EntityWrite};
use protocol::position::{Offset, Partition, StreamTime};

use crate::codec::{RecordPosition, StoredOutput};

/// One input record the Arbiter sealed: its outputs (digest fixed) and the
/// entity states its accepted commands wrote, in command order.
///
/// spec: ledger.CommitsHoldSealedRecords
#[derive(Clone, Debug, PartialEq)]
pub struct SealedRecord {
    pub position: RecordPosition,
    /// Stream time at this record (the partition's prefix maximum).
    pub stream_time: StreamTime,
    pub entity_writes: Vec<EntityWrite>,
    pub output: StoredOutput,
}

/// The offsets of one partition a commit covers.
///
/// spec: ledger.RangeOrdered
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CommitRange {
    pub partition: Partition,
    pub first_offset: Offset,
    pub last_offset: Offset,
    /// Stream time at `last_offset`.
    pub stream_time: StreamTime,
    /// Set when the commit is cut (ledger.WriteCommitAsOneSyncedBatch); a
    /// commit is written only once every range has one.
    pub outcome_resume_offset: Option<Offset>,
}

/// One change of the Warden's idempotency entries, applied in the order the
/// Warden made them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WardenChange {
    /// Write an entry and its expiry-index row.
    Put {
        partition: Partition,
        key: String,
        first_seen: StreamTime,
        entry: Vec<u8>,
    },
    /// Delete an expired entry and its expiry-index row.
    Purge {
        partition: Partition,
        key: String,
        first_seen: StreamTime,
    },
    /// Delete only an expiry-index row whose key was replaced by a fresh
    /// entry since (warden.PurgeExpiredEntriesAtGroupCommit).
    DropStaleExpiryRow {
        partition: Partition,
        key: String,
        first_seen: StreamTime,
    },
}

impl WardenChange {
    pub fn partition(&self) -> Partition {
        match self {
            WardenChange::Put { partition, .. }
            | WardenChange::Purge { partition, .. }
            | WardenChange::DropStaleExpiryRow { partition, .. } => *partition,
        }
    }
}

/// Everything one synced WriteBatch holds: entity states as of the commit's
/// last records, Warden changes, one watermark per covered partition, the
/// records' output rows, and deletes of output rows whose publication was
/// seen.
///
/// A commit holds whole records in log order per partition and at most
/// `max_records` of them; it is cut at record boundaries only, so its
/// states are exactly those as of each range's last offset.
#[derive(Clone, Debug)]
pub struct GroupCommit {
    max_records: usize,
    ranges: BTreeMap<Partition, CommitRange>,
    entities: BTreeMap<EntityKey, Vec<u8>>,
    outputs: Vec<(RecordPosition, StoredOutput)>,
    warden: Vec<WardenChange>,
    pruned_outputs: BTreeSet<RecordPosition>,
}

impl GroupCommit {
    pub fn new(max_records: usize) -> GroupCommit {
        assert!(max_records > 0, "a group commit holds at least one record");
        GroupCommit {
            max_records,
            ranges: BTreeMap::new(),
            entities: BTreeMap::new(),
            outputs: Vec::new(),
            warden: Vec::new(),
            pruned_outputs: BTreeSet::new(),
        }
    }

    pub fn record_count(&self) -> usize {
        self.outputs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.outputs.is_empty()
    }

    /// spec: ledger.CommitSizeBounded
    pub fn is_full(&self) -> bool {
        self.outputs.len() >= self.max_records
    }

    /// Adds a sealed record: its range grows, its entity writes replace any
    /// earlier state of the same key in this commit, its output row joins.
    ///
    /// spec: ledger.ExtendCommitRange, ledger.DurableStateEqualsReplay
    pub fn push(&mut self, record: SealedRecord) {
        assert!(!self.is_full(), "a full commit takes no more records");
        assert!(
            record.output.digest.len() == 32,
            "a sealed record carries its 32-byte digest: {:?}",
            record.position
        );
        let SealedRecord {
            position,
            stream_time,
            entity_writes,
            output,
        } = record;
        assert!(
            position.offset >= 0,
            "a record sits at offset >= 0: {position:?}"
        );
        self.ranges
            .entry(position.partition)
            .and_modify(|range| {
                assert!(
                    position.offset > range.last_offset && stream_time >= range.stream_time,
                    "records join a commit in log order: {position:?} after {range:?}"
                );
                range.last_offset = position.offset;
                range.stream_time = stream_time;
            })
            .or_insert(CommitRange {
                partition: position.partition,
                first_offset: position.offset,
                last_offset: position.offset,
                stream_time,
                outcome_resume_offset: None,
            });
        for write in entity_writes {
            self.entities.insert(write.key, write.state);
        }
        self.outputs.push((position, output));
    }

    /// The ranges in partition order, for the Warden's additions
    /// (ledger.GroupCommitAssembled) and the outcome resume offsets.
    pub fn ranges(&self) -> impl Iterator<Item = &CommitRange> {
        self.ranges.values()
    }

    pub fn range(&self, partition: Partition) -> Option<&CommitRange> {
        self.ranges.get(&partition)
    }

    pub fn set_outcome_resume_offset(&mut self, partition: Partition, outcome_offset: Offset) {
        assert!(outcome_offset >= 0, "an outcome offset is >= 0");
        let range = self
            .ranges
            .get_mut(&partition)
            .expect("a resume offset belongs to a partition the commit covers");
        range.outcome_resume_offset = Some(outcome_offset);
    }

    /// The output rows of this commit's records, in the order they joined.
    pub fn outputs(&self) -> &[(RecordPosition, StoredOutput)] {
        &self.outputs
    }

    pub(crate) fn outputs_mut(&mut self) -> &mut [(RecordPosition, StoredOutput)] {
        &mut self.outputs
    }

    /// Adds a change of the Warden's entries. Entries belong to records of
    /// this commit, so their partition must be one the commit covers: the
    /// watermark written with them then describes them.
    pub fn push_warden_change(&mut self, change: WardenChange) {
        assert!(
            self.ranges.contains_key(&change.partition()),
            "Warden changes belong to a partition the commit covers: {change:?}"
        );
        self.warden.push(change);
    }

    /// Deletes the output row of a record whose publication was seen.
    pub fn prune_output(&mut self, position: RecordPosition) {
        self.pruned_outputs.insert(position);
    }

    pub fn pruned_outputs(&self) -> &BTreeSet<RecordPosition> {
        &self.pruned_outputs
    }

    pub(crate) fn entities(&self) -> &BTreeMap<EntityKey, Vec<u8>> {
        &self.entities
    }

    pub(crate) fn warden_changes(&self) -> &[WardenChange] {
        &self.warden
    }

    pub(crate) fn into_durable(self) -> DurableCommit {
        DurableCommit {
            ranges: self.ranges.into_values().collect(),
            outputs: self.outputs,
            pruned_outputs: self.pruned_outputs.into_iter().collect(),
        }
    }
}

/// A commit whose synced write returned success: the hand-over from
/// durability to the Registrar (watermarks), the Warden (entries durable)
/// and the Clerk (own outputs enter agreement, in offset order).
///
/// spec: ledger.CommitBecomesDurable
#[derive(Clone, Debug, PartialEq)]
pub struct DurableCommit {
    /// Partition order; each range's `outcome_resume_offset` is set.
    pub ranges: Vec<CommitRange>,
    pub outputs: Vec<(RecordPosition, StoredOutput)>,
    pub pruned_outputs: Vec<RecordPosition>,
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn record(
        partition: Partition,
        offset: Offset,
        writes: &[(&str, &str)],
    ) -> SealedRecord {
        SealedRecord {
            position: RecordPosition { partition, offset },
            stream_time: StreamTime(offset * 10),
            entity_writes: writes
                .iter()
                .map(|(key, state)| EntityWrite {
                    key: EntityKey::new((*key).to_owned()),
                    state: state.as_bytes().to_vec(),
                })
                .collect(),
            output: StoredOutput::new(
                vec![format!("{partition}/{offset}").into_bytes()],
                vec![],
                offset * 10,
            ),
        }
    }

    /// covers: ledger.ExtendCommitRange, ledger.RangeOrdered
    #[test]
    fn ranges_grow_per_partition_with_the_stream_time_of_their_last_record() {
        let mut commit = GroupCommit::new(8);
        commit.push(record(1, 5, &[]));
        commit.push(record(0, 3, &[]));
        commit.push(record(1, 9, &[]));
        let ranges: Vec<_> = commit.ranges().copied().collect();
        assert_eq!(
            ranges,
            vec![
                CommitRange {
                    partition: 0,
                    first_offset: 3,
                    last_offset: 3,
                    stream_time: StreamTime(30),
                    outcome_resume_offset: None,
                },
                CommitRange {
                    partition: 1,
                    first_offset: 5,
                    last_offset: 9,
                    stream_time: StreamTime(90),
                    outcome_resume_offset: None,
                },
            ]
        );
        assert!(
            ranges
                .iter()
                .all(|range| range.first_offset <= range.last_offset)
        );
    }

    #[test]
    #[should_panic(expected = "records join a commit in log order")]
    fn a_record_behind_its_range_is_refused() {
        let mut commit = GroupCommit::new(8);
        commit.push(record(0, 5, &[]));
        commit.push(record(0, 5, &[]));
    }

    /// covers: ledger.CommitSizeBounded
    #[test]
    #[should_panic(expected = "a full commit takes no more records")]
    fn a_full_commit_takes_no_more_records() {
        let mut commit = GroupCommit::new(2);
        commit.push(record(0, 0, &[]));
        commit.push(record(0, 1, &[]));
        assert!(commit.is_full());
        commit.push(record(0, 2, &[]));
    }

    #[test]
    #[should_panic(expected = "Warden changes belong to a partition the commit covers")]
    fn warden_changes_outside_the_commit_are_refused() {
        let mut commit = GroupCommit::new(2);
        commit.push(record(0, 0, &[]));
        commit.push_warden_change(WardenChange::Purge {
            partition: 1,
            key: "k".into(),
            first_seen: StreamTime(0),
        });
    }

    /// covers: ledger.CommitsHoldSealedRecords
    #[test]
    #[should_panic(expected = "a sealed record carries its 32-byte digest")]
    fn a_record_without_its_digest_is_not_sealed() {
        let mut unsealed = record(0, 0, &[]);
        unsealed.output.digest.clear();
        GroupCommit::new(2).push(unsealed);
    }
}
