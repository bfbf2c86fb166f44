//! When to cut a group commit: the deterministic batching policy.
//!
//! No clock is read here: `now` is passed in (time since any fixed origin,
//! e.g. the node's start). The wall clock decides only when a commit is
//! written, never what it holds.

use std::time::Duration;

use crate::commit::{GroupCommit, SealedRecord};

/// Group-commit bounds, from `spec/core.allium`'s config.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CommitLimits {
    /// `core.max_group_commit_records`.
    pub max_group_commit_records: usize,
    /// `core.group_commit_window`: the longest a record waits for company.
    pub group_commit_window: Duration,
}

impl Default for CommitLimits {
    fn default() -> Self {
        CommitLimits {
            max_group_commit_records: 1024,
            group_commit_window: Duration::from_millis(2),
        }
    }
}

/// Fills one open commit while at most one other syncs, and says when the
/// open one is due.
///
/// A caller [`append`](Self::append)s sealed records while
/// [`has_room`](Self::has_room) (else they wait in its bounded queue: that
/// is the backpressure), asks [`cut_if_due`](Self::cut_if_due) on every
/// record, empty queue, window timer and finished sync, and calls
/// [`sync_finished`](Self::sync_finished) once the cut commit's write
/// returned. The node seals a batch whole, so its queue is empty at every
/// cut and no commit waits for its window.
///
/// spec: ledger.OneSyncInFlight, ledger.OneOpenCommit
#[derive(Debug)]
pub struct CommitScheduler {
    limits: CommitLimits,
    open: Option<OpenCommit>,
    syncing: bool,
}

#[derive(Debug)]
struct OpenCommit {
    commit: GroupCommit,
    opened_at: Duration,
}

impl CommitScheduler {
    pub fn new(limits: CommitLimits) -> CommitScheduler {
        assert!(
            limits.max_group_commit_records > 0,
            "a group commit holds at least one record"
        );
        CommitScheduler {
            limits,
            open: None,
            syncing: false,
        }
    }

    /// Whether a sealed record can join now: no open commit, or one that
    /// is not full.
    pub fn has_room(&self) -> bool {
        self.open.as_ref().is_none_or(|open| !open.commit.is_full())
    }

    /// Adds a sealed record to the open commit, opening one at `now` if
    /// there is none.
    ///
    /// spec: ledger.AppendSealedRecordToOpenCommit, ledger.OpenGroupCommitForSealedRecord
    pub fn append(&mut self, record: SealedRecord, now: Duration) {
        assert!(
            self.has_room(),
            "a sealed record joins only a commit with room"
        );
        let max_records = self.limits.max_group_commit_records;
        self.open
            .get_or_insert_with(|| OpenCommit {
                commit: GroupCommit::new(max_records),
                opened_at: now,
            })
            .commit
            .push(record);
    }

    /// Cuts the open commit for its synced write when it is due: full, or
    /// open for the whole window, or the sealed-record queue is empty (an
    /// idle pipeline does not wait). Never while another commit syncs.
    ///
    /// spec: ledger.StartSyncWhenDue
    pub fn cut_if_due(&mut self, now: Duration, sealed_queue_empty: bool) -> Option<GroupCommit> {
        if self.syncing {
            return None;
        }
        let open = self.open.as_ref()?;
        let window_over = now.saturating_sub(open.opened_at) >= self.limits.group_commit_window;
        if !(open.commit.is_full() || window_over || sealed_queue_empty) {
            return None;
        }
        self.syncing = true;
        self.open.take().map(|open| open.commit)
    }

    /// When the open commit's window ends; `None` without an open commit.
    /// Only tests ask: the node cuts each commit as it is sealed, so it
    /// arms no window timer.
    #[cfg(test)]
    pub fn window_deadline(&self) -> Option<Duration> {
        self.open
            .as_ref()
            .map(|open| open.opened_at + self.limits.group_commit_window)
    }

    #[cfg(test)]
    pub fn is_syncing(&self) -> bool {
        self.syncing
    }

    /// Records in the open commit.
    #[cfg(test)]
    pub fn open_records(&self) -> usize {
        self.open
            .as_ref()
            .map_or(0, |open| open.commit.record_count())
    }

    /// The cut commit's write returned success. (A failed write halts the
    /// instance: nothing is cut after it.)
    pub fn sync_finished(&mut self) {
        assert!(self.syncing, "a sync finishes only after one was cut");
        self.syncing = false;
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::commit::tests::record;

    const MS: Duration = Duration::from_millis(1);

    fn scheduler(max: usize) -> CommitScheduler {
        CommitScheduler::new(CommitLimits {
            max_group_commit_records: max,
            group_commit_window: 2 * MS,
        })
    }

    /// covers: ledger.StartSyncWhenDue
    #[test]
    fn a_commit_is_cut_when_full_when_its_window_ends_or_when_the_queue_is_empty() {
        let mut scheduler = scheduler(2);
        assert!(
            scheduler.cut_if_due(Duration::ZERO, true).is_none(),
            "nothing open, nothing cut"
        );

        scheduler.append(record(0, 0, &[]), Duration::ZERO);
        assert!(
            scheduler.cut_if_due(MS, false).is_none(),
            "not full, window open, more coming"
        );
        assert_eq!(scheduler.window_deadline(), Some(2 * MS));
        let cut = scheduler
            .cut_if_due(2 * MS, false)
            .expect("the window is over");
        assert_eq!(cut.record_count(), 1);
        scheduler.sync_finished();

        scheduler.append(record(0, 1, &[]), 10 * MS);
        scheduler.append(record(0, 2, &[]), 10 * MS);
        assert!(!scheduler.has_room());
        assert_eq!(
            scheduler
                .cut_if_due(10 * MS, false)
                .map(|c| c.record_count()),
            Some(2)
        );
        scheduler.sync_finished();

        scheduler.append(record(0, 3, &[]), 20 * MS);
        assert_eq!(
            scheduler
                .cut_if_due(20 * MS, true)
                .map(|c| c.record_count()),
            Some(1)
        );
    }

    /// covers: ledger.OpenGroupCommitForSealedRecord, ledger.AppendSealedRecordToOpenCommit
    #[test]
    fn records_fill_the_open_commit_while_another_syncs() {
        let mut scheduler = scheduler(4);
        scheduler.append(record(0, 0, &[]), Duration::ZERO);
        assert!(scheduler.cut_if_due(Duration::ZERO, true).is_some());
        assert_eq!(scheduler.open_records(), 0);
        scheduler.append(record(0, 1, &[]), 5 * MS);
        scheduler.append(record(0, 2, &[]), 6 * MS);
        assert_eq!(scheduler.open_records(), 2);
        assert_eq!(
            scheduler.window_deadline(),
            Some(7 * MS),
            "opened by its first record"
        );
        assert!(
            scheduler.cut_if_due(100 * MS, true).is_none(),
            "one sync in flight"
        );
        scheduler.sync_finished();
        assert_eq!(
            scheduler
                .cut_if_due(100 * MS, false)
                .map(|c| c.record_count()),
            Some(2)
        );
    }

    #[derive(Clone, Debug)]
    enum Step {
        Seal,
        Tick(u64),
        QueueEmpty,
        SyncReturns,
    }

    fn step() -> impl Strategy<Value = Step> {
        prop_oneof![
            4 => Just(Step::Seal),
            2 => (0u64..3).prop_map(Step::Tick),
            1 => Just(Step::QueueEmpty),
            2 => Just(Step::SyncReturns),
        ]
    }

    proptest! {
        /// The node's loop driven by arbitrary arrivals, ticks and sync
        /// completions: no commit exceeds the bound, no two syncs overlap,
        /// and every sealed record is committed exactly once, in order.
        ///
        /// covers: ledger.OneSyncInFlight, ledger.OneOpenCommit, ledger.CommitSizeBounded, ledger.StartSyncWhenDue
        #[test]
        fn every_sealed_record_is_committed_once_in_bounded_commits(
            max in 1usize..6,
            steps in proptest::collection::vec(step(), 0..200),
        ) {
            let mut scheduler = scheduler(max);
            let mut now = Duration::ZERO;
            let mut queue = std::collections::VecDeque::new();
            let mut next_offset = 0;
            let mut in_flight: Option<GroupCommit> = None;
            let mut committed = Vec::new();
            let mut finish = |in_flight: &mut Option<GroupCommit>, scheduler: &mut CommitScheduler| {
                if let Some(commit) = in_flight.take() {
                    committed.extend(commit.outputs().iter().map(|(position, _)| position.offset));
                    scheduler.sync_finished();
                }
            };
            let drive = |scheduler: &mut CommitScheduler,
                         queue: &mut std::collections::VecDeque<SealedRecord>,
                         in_flight: &mut Option<GroupCommit>,
                         now: Duration,
                         empty_signal: bool| {
                while scheduler.has_room() {
                    let Some(record) = queue.pop_front() else { break };
                    scheduler.append(record, now);
                }
                if let Some(commit) = scheduler.cut_if_due(now, empty_signal && queue.is_empty()) {
                    assert!(in_flight.is_none(), "a second sync while one is in flight");
                    assert!(commit.record_count() <= max && !commit.is_empty());
                    *in_flight = Some(commit);
                }
                assert!(scheduler.open_records() <= max);
            };
            for step in steps {
                match step {
                    Step::Seal => {
                        queue.push_back(record(0, next_offset, &[]));
                        next_offset += 1;
                        drive(&mut scheduler, &mut queue, &mut in_flight, now, false);
                    }
                    Step::Tick(millis) => {
                        now += Duration::from_millis(millis);
                        drive(&mut scheduler, &mut queue, &mut in_flight, now, false);
                    }
                    Step::QueueEmpty => drive(&mut scheduler, &mut queue, &mut in_flight, now, true),
                    Step::SyncReturns => {
                        finish(&mut in_flight, &mut scheduler);
                        drive(&mut scheduler, &mut queue, &mut in_flight, now, false);
                    }
                }
                prop_assert_eq!(scheduler.is_syncing(), in_flight.is_some());
            }
            // Drain: syncs return, the queue runs empty, time passes.
            for _ in 0..(next_offset as usize + 2) {
                finish(&mut in_flight, &mut scheduler);
                now += 2 * MS;
                drive(&mut scheduler, &mut queue, &mut in_flight, now, true);
            }
            finish(&mut in_flight, &mut scheduler);
            prop_assert_eq!(committed, (0..next_offset).collect::<Vec<_>>());
        }
    }
}
