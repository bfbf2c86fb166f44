//! Which stored outputs are published, and where the outcome reader resumes.
//!
//! The Clerk reports every publication it reads on the outcome topic, in
//! outcome-topic order. A record's output row is kept until its publication
//! is seen, then deleted by the next commit; a publication read before the
//! record's own commit is durable is remembered until it is. From both, each
//! commit learns the outcome offset its partitions' readers must resume at
//! after a restart, so every publication a replayed or retained record
//! needs is read again.
//!
//! Outcome partition `p` carries the publications of input partition `p`.

use std::collections::{BTreeMap, BTreeSet};

use protocol::position::{Offset, Partition};

use crate::codec::{RecordPosition, StoredOutput};
use crate::commit::{DurableCommit, GroupCommit};
use crate::store::PartitionWatermark;

/// What a reported publication changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PublicationNote {
    /// A stored row's publication: the next commit deletes the row.
    RowSeen,
    /// The record is above the watermark: its row, once durable, is
    /// created already seen.
    RememberedAhead,
    /// Nothing to do: the row is gone or already seen, or the publication
    /// was already remembered (a backup's republication).
    AlreadyKnown,
}

/// spec: ledger.SeenAheadOnlyAboveWatermark
#[derive(Debug)]
pub struct PublicationTracker {
    partitions: BTreeMap<Partition, PartitionPublications>,
    max_seen_ahead: usize,
}

#[derive(Debug)]
struct PartitionPublications {
    /// The stored watermark of the partition.
    applied_offset: Offset,
    /// The outcome offset after the last publication read.
    next_outcome_offset: Offset,
    /// Stored rows (all at or below the watermark) not yet seen published.
    unseen_rows: BTreeSet<Offset>,
    /// Stored rows seen published, deleted by the next commit.
    seen_rows: BTreeSet<Offset>,
    /// Input offset above the watermark -> outcome offset of its publication.
    seen_ahead: BTreeMap<Offset, Offset>,
}

impl PublicationTracker {
    /// Starts from the watermarks loaded at start. `max_seen_ahead` bounds
    /// the remembered publications of one partition; the Clerk never reads
    /// beyond its horizon, so `max_unagreed_records + copy_lookahead`
    /// (clerk.UnsettledTableBounded) is never exceeded.
    pub fn new(watermarks: &[PartitionWatermark], max_seen_ahead: usize) -> PublicationTracker {
        let partitions = watermarks
            .iter()
            .map(|watermark| {
                let publications = PartitionPublications {
                    applied_offset: watermark.applied_offset,
                    next_outcome_offset: watermark.outcome_resume_offset,
                    unseen_rows: BTreeSet::new(),
                    seen_rows: BTreeSet::new(),
                    seen_ahead: BTreeMap::new(),
                };
                (watermark.partition, publications)
            })
            .collect();
        PublicationTracker {
            partitions,
            max_seen_ahead,
        }
    }

    fn partition(&mut self, partition: Partition) -> &mut PartitionPublications {
        self.partitions
            .get_mut(&partition)
            .unwrap_or_else(|| panic!("partition {partition} is one of the input partitions"))
    }

    /// Learns the rows read back at start ([`crate::LedgerReader::retained_outputs`]):
    /// rows already marked seen go to the next commit's prunes.
    pub fn retained_row_loaded(&mut self, position: RecordPosition, row: &StoredOutput) {
        let publications = self.partition(position.partition);
        assert!(
            position.offset <= publications.applied_offset,
            "a stored output row is at or below its watermark: {position:?}"
        );
        if row.publication_seen {
            publications.seen_rows.insert(position.offset);
        } else {
            publications.unseen_rows.insert(position.offset);
        }
    }

    /// The Clerk read the publication of input `offset` of `partition` at
    /// `outcome_offset` of the outcome topic.
    ///
    /// spec: ledger.MarkOutputPublicationSeen, ledger.RememberPublicationSeenAhead
    pub fn publication_seen(
        &mut self,
        partition: Partition,
        offset: Offset,
        outcome_offset: Offset,
    ) -> PublicationNote {
        let max_seen_ahead = self.max_seen_ahead;
        let publications = self.partition(partition);
        publications.next_outcome_offset = publications.next_outcome_offset.max(outcome_offset + 1);
        if publications.unseen_rows.remove(&offset) {
            publications.seen_rows.insert(offset);
            return PublicationNote::RowSeen;
        }
        if offset <= publications.applied_offset || publications.seen_ahead.contains_key(&offset) {
            return PublicationNote::AlreadyKnown;
        }
        assert!(
            publications.seen_ahead.len() < max_seen_ahead,
            "publications seen ahead of partition {partition} exceed {max_seen_ahead}"
        );
        publications.seen_ahead.insert(offset, outcome_offset);
        PublicationNote::RememberedAhead
    }

    /// Completes a cut commit before its write: deletes of every row seen
    /// published, the outcome resume offset of each range, and the seen
    /// flag of records whose publication was read ahead.
    ///
    /// The resume offset of partition `p` committed through `w` is the
    /// lowest outcome offset among publications seen ahead above `w`, or,
    /// with none, the offset after the last publication read on `p`.
    ///
    /// spec: ledger.WriteCommitAsOneSyncedBatch, ledger.OnlySeenOutputsArePruned
    pub fn prepare(&self, commit: &mut GroupCommit) {
        for (&partition, publications) in &self.partitions {
            for &offset in &publications.seen_rows {
                commit.prune_output(RecordPosition { partition, offset });
            }
        }
        let resume_offsets: Vec<(Partition, Offset)> = commit
            .ranges()
            .map(|range| {
                let publications = &self.partitions[&range.partition];
                let lowest_ahead = publications
                    .seen_ahead
                    .range(range.last_offset + 1..)
                    .map(|(_, &outcome_offset)| outcome_offset)
                    .min();
                (
                    range.partition,
                    lowest_ahead.unwrap_or(publications.next_outcome_offset),
                )
            })
            .collect();
        for (partition, outcome_offset) in resume_offsets {
            commit.set_outcome_resume_offset(partition, outcome_offset);
        }
        for (position, output) in commit.outputs_mut() {
            output.publication_seen = self.partitions[&position.partition]
                .seen_ahead
                .contains_key(&position.offset);
        }
    }

    /// The commit is durable: its rows exist (seen if their publication was
    /// read meanwhile), its pruned rows are gone, and publications seen
    /// ahead at or below the new watermark are forgotten.
    ///
    /// spec: ledger.CommitBecomesDurable
    pub fn commit_durable(&mut self, durable: &DurableCommit) {
        for pruned in &durable.pruned_outputs {
            self.partition(pruned.partition)
                .seen_rows
                .remove(&pruned.offset);
        }
        for range in &durable.ranges {
            self.partition(range.partition).applied_offset = range.last_offset;
        }
        for (position, _) in &durable.outputs {
            let publications = self.partition(position.partition);
            if publications.seen_ahead.remove(&position.offset).is_some() {
                publications.seen_rows.insert(position.offset);
            } else {
                publications.unseen_rows.insert(position.offset);
            }
        }
        for range in &durable.ranges {
            let publications = self.partition(range.partition);
            publications.seen_ahead = publications.seen_ahead.split_off(&(range.last_offset + 1));
        }
    }

    /// Rows of `partition` kept for publication, for `/metrics`.
    pub fn unseen_rows(&self, partition: Partition) -> usize {
        self.partitions
            .get(&partition)
            .map_or(0, |publications| publications.unseen_rows.len())
    }
}

#[cfg(test)]
mod tests {
    use protocol::position::StreamTime;

    use super::*;
    use crate::commit::tests::record;

    fn fresh(partitions: u32) -> PublicationTracker {
        let watermarks: Vec<_> = (0..partitions)
            .map(|partition| PartitionWatermark {
                partition,
                applied_offset: -1,
                stream_time: StreamTime::EPOCH,
                outcome_resume_offset: 0,
            })
            .collect();
        PublicationTracker::new(&watermarks, 16)
    }

    fn commit_of(offsets: &[Offset]) -> GroupCommit {
        let mut commit = GroupCommit::new(16);
        for &offset in offsets {
            commit.push(record(0, offset, &[]));
        }
        commit
    }

    fn durable(commit: GroupCommit) -> DurableCommit {
        DurableCommit {
            ranges: commit.ranges().copied().collect(),
            outputs: commit.outputs().to_vec(),
            pruned_outputs: commit.pruned_outputs().iter().copied().collect(),
        }
    }

    /// covers: ledger.MarkOutputPublicationSeen, ledger.OnlySeenOutputsArePruned
    #[test]
    fn a_seen_row_is_pruned_by_the_next_commit_and_only_seen_rows_are() {
        let mut tracker = fresh(1);
        let mut first = commit_of(&[0, 1, 2]);
        tracker.prepare(&mut first);
        assert!(first.pruned_outputs().is_empty());
        tracker.commit_durable(&durable(first));
        assert_eq!(tracker.unseen_rows(0), 3);

        assert_eq!(tracker.publication_seen(0, 1, 40), PublicationNote::RowSeen);
        assert_eq!(
            tracker.publication_seen(0, 1, 41),
            PublicationNote::AlreadyKnown,
            "a backup's copy"
        );
        let mut second = commit_of(&[3]);
        tracker.prepare(&mut second);
        let pruned: Vec<_> = second.pruned_outputs().iter().map(|p| p.offset).collect();
        assert_eq!(pruned, vec![1]);
        tracker.commit_durable(&durable(second));

        let mut third = commit_of(&[4]);
        tracker.prepare(&mut third);
        assert!(
            third.pruned_outputs().is_empty(),
            "a pruned row is pruned once"
        );
        assert_eq!(tracker.unseen_rows(0), 3);
    }

    /// covers: ledger.RememberPublicationSeenAhead, ledger.SeenAheadOnlyAboveWatermark, ledger.CommitBecomesDurable
    #[test]
    fn a_publication_read_ahead_marks_the_row_seen_when_it_becomes_durable() {
        let mut tracker = fresh(1);
        assert_eq!(
            tracker.publication_seen(0, 1, 7),
            PublicationNote::RememberedAhead
        );
        assert_eq!(
            tracker.publication_seen(0, 5, 9),
            PublicationNote::RememberedAhead
        );
        assert_eq!(
            tracker.publication_seen(0, 5, 12),
            PublicationNote::AlreadyKnown
        );

        let mut commit = commit_of(&[0, 1, 2]);
        tracker.prepare(&mut commit);
        let flags: Vec<_> = commit
            .outputs()
            .iter()
            .map(|(_, o)| o.publication_seen)
            .collect();
        assert_eq!(flags, vec![false, true, false]);
        assert_eq!(
            commit.range(0).unwrap().outcome_resume_offset,
            Some(9),
            "offset 5 is above the new watermark: its publication must be read again"
        );
        tracker.commit_durable(&durable(commit));
        assert_eq!(tracker.unseen_rows(0), 2);
        assert_eq!(
            tracker.publication_seen(0, 1, 13),
            PublicationNote::AlreadyKnown,
            "offset 1 is a seen row now, not remembered ahead"
        );

        let mut next = commit_of(&[3, 4, 5]);
        tracker.prepare(&mut next);
        assert_eq!(
            next.pruned_outputs()
                .iter()
                .map(|p| p.offset)
                .collect::<Vec<_>>(),
            vec![1]
        );
        assert_eq!(
            next.range(0).unwrap().outcome_resume_offset,
            Some(14),
            "nothing seen ahead remains above 5: resume after the last publication read"
        );
    }

    #[test]
    fn rows_read_back_at_start_are_pruned_when_already_seen() {
        let watermarks = [PartitionWatermark {
            partition: 0,
            applied_offset: 10,
            stream_time: StreamTime(5),
            outcome_resume_offset: 3,
        }];
        let mut tracker = PublicationTracker::new(&watermarks, 4);
        let mut seen = StoredOutput::new(vec![], vec![], 0);
        seen.publication_seen = true;
        tracker.retained_row_loaded(
            RecordPosition {
                partition: 0,
                offset: 9,
            },
            &seen,
        );
        tracker.retained_row_loaded(
            RecordPosition {
                partition: 0,
                offset: 10,
            },
            &StoredOutput::new(vec![], vec![], 0),
        );
        let mut commit = commit_of(&[11]);
        tracker.prepare(&mut commit);
        assert_eq!(
            commit
                .pruned_outputs()
                .iter()
                .map(|p| p.offset)
                .collect::<Vec<_>>(),
            vec![9]
        );
        assert_eq!(commit.range(0).unwrap().outcome_resume_offset, Some(3));
        assert_eq!(tracker.publication_seen(0, 10, 3), PublicationNote::RowSeen);
    }
}
