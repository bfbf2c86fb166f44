//! The waiting-submission table: submissions whose HTTP exchange is open,
//! from packing until their answer.

use std::collections::BTreeSet;

use foldhash::{HashMap, HashMapExt as _};
use protocol::position::{Offset, Partition};

use crate::config::Millis;
use crate::packer::{PackId, SubmissionId};

/// Where a waiting submission is (`gateway.SubmissionStatus` packed or produced).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WaitState {
    /// In a pack not yet acknowledged.
    Packed { pack: PackId },
    /// Its record's offset is known: waiting for the publication.
    Produced { offset: Offset },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Waiter {
    pub partition: Partition,
    pub index: u32,
    pub state: WaitState,
    pub deadline: Millis,
}

/// At most `capacity` waiters; indexed by deadline and by produced position.
#[derive(Debug)]
pub struct WaitingTable {
    capacity: usize,
    waiters: HashMap<SubmissionId, Waiter>,
    by_deadline: BTreeSet<(Millis, SubmissionId)>,
    by_position: HashMap<(Partition, Offset), Vec<SubmissionId>>,
}

impl WaitingTable {
    pub fn new(capacity: usize) -> Self {
        assert!(capacity > 0, "at least one submission may wait");
        Self {
            capacity,
            waiters: HashMap::new(),
            by_deadline: BTreeSet::new(),
            by_position: HashMap::new(),
        }
    }

    pub fn len(&self) -> usize {
        self.waiters.len()
    }

    pub fn is_empty(&self) -> bool {
        self.waiters.is_empty()
    }

    pub fn is_full(&self) -> bool {
        self.waiters.len() >= self.capacity
    }

    pub fn get(&self, id: SubmissionId) -> Option<&Waiter> {
        self.waiters.get(&id)
    }

    pub fn insert(&mut self, id: SubmissionId, waiter: Waiter) {
        assert!(!self.is_full(), "admission checks the bound first");
        assert!(
            matches!(waiter.state, WaitState::Packed { .. }),
            "a submission starts packed"
        );
        self.by_deadline.insert((waiter.deadline, id));
        let previous = self.waiters.insert(id, waiter);
        assert!(previous.is_none(), "submission ids are never reused");
    }

    /// Records the offset of a packed submission; false when it no longer
    /// waits (answered, timed out or abandoned meanwhile).
    pub fn mark_produced(&mut self, id: SubmissionId, offset: Offset) -> bool {
        let Some(waiter) = self.waiters.get_mut(&id) else {
            return false;
        };
        assert!(
            matches!(waiter.state, WaitState::Packed { .. }),
            "a pack is acknowledged once"
        );
        waiter.state = WaitState::Produced { offset };
        self.by_position
            .entry((waiter.partition, offset))
            .or_default()
            .push(id);
        true
    }

    /// The submissions waiting for the record at (partition, offset).
    pub fn waiting_at(&self, partition: Partition, offset: Offset) -> Vec<SubmissionId> {
        self.by_position
            .get(&(partition, offset))
            .cloned()
            .unwrap_or_default()
    }

    pub fn references(&self, partition: Partition, offset: Offset) -> bool {
        self.by_position.contains_key(&(partition, offset))
    }

    /// Waiters whose deadline has come, in deadline order.
    pub fn expired(&self, now: Millis) -> Vec<SubmissionId> {
        self.by_deadline
            .iter()
            .take_while(|(deadline, _)| *deadline <= now)
            .map(|&(_, id)| id)
            .collect()
    }

    pub fn next_deadline(&self) -> Option<Millis> {
        self.by_deadline.first().map(|&(deadline, _)| deadline)
    }

    pub fn remove(&mut self, id: SubmissionId) -> Option<Waiter> {
        let waiter = self.waiters.remove(&id)?;
        let removed = self.by_deadline.remove(&(waiter.deadline, id));
        assert!(removed, "every waiter has a deadline entry");
        if let WaitState::Produced { offset } = waiter.state {
            let position = (waiter.partition, offset);
            let ids = self
                .by_position
                .get_mut(&position)
                .expect("a produced waiter is indexed by position");
            ids.retain(|other| *other != id);
            if ids.is_empty() {
                self.by_position.remove(&position);
            }
        }
        Some(waiter)
    }
}
