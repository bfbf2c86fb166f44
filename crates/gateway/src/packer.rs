//! Packing: submissions bound for one input partition share one Kafka
//! record, because broker and consumer work follows records, not commands.

use prost::Message as _;
use protocol::position::Partition;
use protocol::records::{CommandPack, PACK_VERSION, Submission};

use crate::config::Millis;

/// One submission while its HTTP exchange lasts, from packing to its answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SubmissionId(pub u64);

/// One pack, from opening to its produce acknowledgement or failure.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PackId(pub u64);

/// A pack cut and ready to produce as one record to `partition`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SealedPack {
    pub id: PackId,
    pub partition: Partition,
    /// The record value: an encoded [`CommandPack`].
    pub payload: Vec<u8>,
    /// The pack's submissions in pack order: `submissions[i]` has index `i`.
    pub submissions: Vec<SubmissionId>,
}

/// Where [`Packer::add`] put a submission.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Packed {
    pub pack: PackId,
    /// The submission's place in its pack: its future position's index.
    pub index: u32,
    /// The pack, when this submission filled it.
    pub sealed: Option<SealedPack>,
}

/// When packs are cut.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PackLimits {
    pub max_pack_commands: usize,
    pub flush_window_ms: Millis,
}

#[derive(Debug)]
struct OpenPack {
    id: PackId,
    opened_at: Millis,
    submissions: Vec<SubmissionId>,
    commands: Vec<Submission>,
}

/// At most one filling pack per partition; each is cut when full or once
/// its flush window has passed, whichever comes first.
#[derive(Debug)]
pub struct Packer {
    limits: PackLimits,
    /// Indexed by partition, so cuts come out in partition order.
    open: Vec<Option<OpenPack>>,
    next_pack: u64,
}

impl Packer {
    pub fn new(partitions: u32, limits: PackLimits) -> Self {
        assert!(partitions > 0, "at least one input partition");
        assert!(
            limits.max_pack_commands > 0,
            "a pack holds at least one command"
        );
        let slots = usize::try_from(partitions).expect("a partition count fits in usize");
        Self {
            limits,
            open: (0..slots).map(|_| None).collect(),
            next_pack: 0,
        }
    }

    /// Appends to the partition's filling pack, opening one if there is
    /// none; a pack this fills is cut at once.
    ///
    /// spec: gateway.ValidSubmissionJoinsOpenPack, gateway.FullPackProduced, gateway.OnePackIndexPerSubmission
    pub fn add(
        &mut self,
        now: Millis,
        partition: Partition,
        submission: SubmissionId,
        command: Submission,
    ) -> Packed {
        let slot = self.slot(partition);
        let next_pack = &mut self.next_pack;
        let open = self.open[slot].get_or_insert_with(|| {
            let id = PackId(*next_pack);
            *next_pack += 1;
            OpenPack {
                id,
                opened_at: now,
                submissions: Vec::new(),
                commands: Vec::new(),
            }
        });
        let index = u32::try_from(open.commands.len()).expect("packs hold far fewer than 2^32");
        open.submissions.push(submission);
        open.commands.push(command);
        let pack = open.id;
        let sealed =
            (open.commands.len() >= self.limits.max_pack_commands).then(|| self.seal(partition));
        Packed {
            pack,
            index,
            sealed,
        }
    }

    /// Cuts every pack whose flush window has passed, in partition order.
    ///
    /// spec: gateway.PackProducedAfterFlushWindow
    pub fn cut_expired(&mut self, now: Millis, sealed: &mut Vec<SealedPack>) {
        for partition in 0..self.open.len() {
            let due = self.open[partition]
                .as_ref()
                .is_some_and(|open| self.cut_time(open) <= now);
            if due {
                let partition = Partition::try_from(partition).expect("slots come from a u32");
                sealed.push(self.seal(partition));
            }
        }
    }

    /// The earliest time a filling pack is due to be cut.
    pub fn next_cut_at(&self) -> Option<Millis> {
        self.open
            .iter()
            .flatten()
            .map(|open| self.cut_time(open))
            .min()
    }

    pub fn filling_packs(&self) -> usize {
        self.open.iter().flatten().count()
    }

    fn cut_time(&self, open: &OpenPack) -> Millis {
        open.opened_at.saturating_add(self.limits.flush_window_ms)
    }

    fn slot(&self, partition: Partition) -> usize {
        let slot = usize::try_from(partition).expect("a partition fits in usize");
        assert!(
            slot < self.open.len(),
            "partition {partition} is routed by partition_for_sku"
        );
        slot
    }

    /// spec: gateway.PackNeverExceedsMaxCommands
    fn seal(&mut self, partition: Partition) -> SealedPack {
        let slot = self.slot(partition);
        let open = self.open[slot]
            .take()
            .expect("only a filling pack is sealed");
        assert!(
            !open.commands.is_empty() && open.commands.len() <= self.limits.max_pack_commands,
            "a pack holds 1..=max_pack_commands commands"
        );
        assert_eq!(open.commands.len(), open.submissions.len());
        let payload = CommandPack {
            version: PACK_VERSION,
            submissions: open.commands,
        }
        .encode_to_vec();
        SealedPack {
            id: open.id,
            partition,
            payload,
            submissions: open.submissions,
        }
    }
}

#[cfg(test)]
mod tests;
