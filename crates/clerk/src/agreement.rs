//! One instance's agreement table for one input partition: the copies it
//! holds per input record and what they add up to.
//!
//! The table decides per (partition, offset) and nothing else: which frame
//! or poll batch a copy came in never matters. Consequences that reach
//! beyond one slot (suspecting a peer, scheduling or withdrawing a
//! publication, alarms) are returned as outcomes for the [`crate::Clerk`]
//! to carry out.

use std::collections::BTreeMap;

use protocol::envelope::RecordDigest;
use protocol::position::{Offset, Partition};

use crate::config::{ClerkConfig, InstanceId, InstanceSet, Millis};

/// `clerk.SlotStatus`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SlotStatus {
    Collecting,
    Agreed,
    Published,
    SplitBrain,
}

/// The copies this instance holds for one input record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AgreementSlot {
    status: SlotStatus,
    agreed_digest: Option<RecordDigest>,
    own_digest: Option<RecordDigest>,
    dead_letter_reason: Option<String>,
    advertised: bool,
    published_at: Option<Millis>,
    /// At most one per sender.
    copies: Vec<(InstanceId, RecordDigest)>,
    settlement_reported: bool,
}

impl AgreementSlot {
    fn new(capacity: usize) -> Self {
        Self {
            status: SlotStatus::Collecting,
            agreed_digest: None,
            own_digest: None,
            dead_letter_reason: None,
            advertised: false,
            published_at: None,
            copies: Vec::with_capacity(capacity),
            settlement_reported: false,
        }
    }

    pub fn status(&self) -> SlotStatus {
        self.status
    }

    /// Present once the slot is agreed, published or split.
    pub fn agreed_digest(&self) -> Option<RecordDigest> {
        self.agreed_digest
    }

    /// Present once this instance's own output for the record is durable.
    pub fn own_digest(&self) -> Option<RecordDigest> {
        self.own_digest
    }

    pub fn dead_letter_reason(&self) -> Option<&str> {
        self.dead_letter_reason.as_deref()
    }

    pub fn advertised(&self) -> bool {
        self.advertised
    }

    pub fn published_at(&self) -> Option<Millis> {
        self.published_at
    }

    /// `(sender, digest)`, at most one per sender, in arrival order.
    pub fn copies(&self) -> &[(InstanceId, RecordDigest)] {
        &self.copies
    }

    pub fn copy_from(&self, sender: InstanceId) -> Option<RecordDigest> {
        self.copies
            .iter()
            .find(|(from, _)| *from == sender)
            .map(|&(_, digest)| digest)
    }

    /// Distinct instances holding `digest` here.
    pub fn matching_count(&self, digest: RecordDigest) -> u32 {
        self.copies.iter().filter(|(_, d)| *d == digest).count() as u32
    }

    fn is_settled_or_decided(&self) -> bool {
        matches!(self.status, SlotStatus::Agreed | SlotStatus::Published)
    }
}

/// What recording one copy did to its slot (`CopyRecorded`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CopyOutcome {
    /// Still collecting, or agreeing with what is already decided.
    Noted,
    /// The slot reached `required_copies` matching copies; `divergent` are
    /// the peers whose copies differ.
    Agreed { divergent: InstanceSet },
    /// A peer's copy differs from the agreed digest and has no quorum.
    Divergent,
    /// A second digest reached `required_copies`: the slot is split and the
    /// partition's publication halted.
    SplitBrain,
}

/// What became of a peer's copy (`PeerCopyArrived`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PeerCopyOutcome {
    Recorded(CopyOutcome),
    /// The same copy again; counted as dropped.
    Repeated,
    /// A second, different copy from the same sender for the same record.
    Equivocation,
    SuspectedSenderDropped,
    BeyondLookaheadDropped,
    SettledRecordIgnored,
}

/// What a publication read from the outcome topic did (`OutcomeRecordConsumed`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PublicationOutcome {
    /// An agreed slot saw its publication: published.
    Settled,
    /// A collecting or unknown record took the publication's digest.
    Learned,
    /// The publication's digest is not the one agreed here.
    Contradicting,
    /// A duplicate publication, or one for a record settled long ago.
    Ignored,
    /// The slot is split: nothing to do.
    SplitSlot,
    /// Beyond the horizon: the reader must hold it and offer it again once
    /// consumption catches up.
    BeyondHorizon,
}

/// One instance's agreement state for one input partition
/// (`clerk.PartitionAgreement`).
#[derive(Clone, Debug)]
pub struct AgreementTable {
    partition: Partition,
    own_id: InstanceId,
    instance_count: u32,
    required_copies: u32,
    copy_lookahead: i64,
    applied_offset: Offset,
    consumed_offset: Offset,
    publication_halted: bool,
    dropped_copies: u64,
    ignored_publications: u64,
    slots: BTreeMap<Offset, AgreementSlot>,
}

impl AgreementTable {
    pub fn new(partition: Partition, config: &ClerkConfig) -> Self {
        Self {
            partition,
            own_id: config.instance_id,
            instance_count: config.instance_count,
            required_copies: config.required_copies,
            copy_lookahead: i64::try_from(config.copy_lookahead).unwrap_or(i64::MAX),
            applied_offset: -1,
            consumed_offset: -1,
            publication_halted: false,
            dropped_copies: 0,
            ignored_publications: 0,
            slots: BTreeMap::new(),
        }
    }

    pub fn partition(&self) -> Partition {
        self.partition
    }

    pub fn applied_offset(&self) -> Offset {
        self.applied_offset
    }

    pub fn consumed_offset(&self) -> Offset {
        self.consumed_offset
    }

    /// The highest offset a peer's copy may open a slot for.
    pub fn horizon(&self) -> Offset {
        self.consumed_offset.saturating_add(self.copy_lookahead)
    }

    pub fn publication_halted(&self) -> bool {
        self.publication_halted
    }

    pub fn dropped_copies(&self) -> u64 {
        self.dropped_copies
    }

    pub fn ignored_publications(&self) -> u64 {
        self.ignored_publications
    }

    pub fn slot(&self, offset: Offset) -> Option<&AgreementSlot> {
        self.slots.get(&offset)
    }

    pub fn slots(&self) -> impl Iterator<Item = (Offset, &AgreementSlot)> {
        self.slots.iter().map(|(&offset, slot)| (offset, slot))
    }

    pub fn len(&self) -> usize {
        self.slots.len()
    }

    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// Slots not yet published (`unsettled_slots`).
    pub fn unsettled_count(&self) -> usize {
        self.slots
            .values()
            .filter(|slot| slot.status != SlotStatus::Published)
            .count()
    }

    /// Consumption and durability moved on; neither goes back.
    pub fn advance_progress(&mut self, consumed_offset: Offset, applied_offset: Offset) {
        self.applied_offset = self.applied_offset.max(applied_offset);
        self.consumed_offset = self
            .consumed_offset
            .max(consumed_offset)
            .max(self.applied_offset);
    }

    /// This instance's own output for `offset` is durable: its digest
    /// enters the slot as this instance's copy. A durable output means the
    /// record's effects are durable too, so progress moves up to it.
    ///
    /// spec: clerk.OwnOutputEntersAgreement
    pub fn record_own(
        &mut self,
        offset: Offset,
        digest: RecordDigest,
        dead_letter_reason: Option<String>,
    ) -> CopyOutcome {
        self.advance_progress(offset, offset);
        let own_id = self.own_id;
        let slot = self.slot_entry(offset);
        if let Some(own) = slot.own_digest {
            assert_eq!(
                own, digest,
                "a durable output never changes: the Ledger reported two digests for one record"
            );
            return CopyOutcome::Noted;
        }
        slot.own_digest = Some(digest);
        slot.dead_letter_reason = dead_letter_reason;
        self.record_copy(offset, own_id, digest)
    }

    /// A peer's copy arrived. The first applicable rule decides.
    ///
    /// spec: clerk.PeerCopyRecorded, clerk.RepeatedCopyIgnored, clerk.EquivocatingSenderSuspected,
    /// spec: clerk.CopyFromSuspectedSenderDropped, clerk.CopyBeyondLookaheadDropped, clerk.CopyForSettledRecordIgnored,
    /// spec: clerk.MatchingIsPerOffset
    pub fn record_peer(
        &mut self,
        sender: InstanceId,
        offset: Offset,
        digest: RecordDigest,
        sender_suspected: bool,
    ) -> PeerCopyOutcome {
        assert!(
            sender != self.own_id && sender < self.instance_count,
            "the session admits only known peers"
        );
        let outcome = match self.slots.get(&offset) {
            Some(slot) => match slot.copy_from(sender) {
                Some(prior) if prior == digest => PeerCopyOutcome::Repeated,
                Some(_) => return PeerCopyOutcome::Equivocation,
                None if sender_suspected => PeerCopyOutcome::SuspectedSenderDropped,
                None => return PeerCopyOutcome::Recorded(self.record_copy(offset, sender, digest)),
            },
            None if sender_suspected => PeerCopyOutcome::SuspectedSenderDropped,
            None if offset > self.horizon() => PeerCopyOutcome::BeyondLookaheadDropped,
            None if offset <= self.applied_offset => PeerCopyOutcome::SettledRecordIgnored,
            None => {
                self.slot_entry(offset);
                return PeerCopyOutcome::Recorded(self.record_copy(offset, sender, digest));
            }
        };
        self.dropped_copies += 1;
        outcome
    }

    fn slot_entry(&mut self, offset: Offset) -> &mut AgreementSlot {
        let capacity = self.instance_count as usize;
        self.slots
            .entry(offset)
            .or_insert_with(|| AgreementSlot::new(capacity))
    }

    /// spec: clerk.RecordAgreedAtRequiredCopies, clerk.DivergentCopySuspectsSender, clerk.SecondQuorumIsSplitBrain
    /// spec: clerk.OneCopyPerInstancePerRecord, clerk.AgreedSlotHasQuorum, clerk.OneAgreedDigestPerOffset
    /// spec: clerk.DetectionOnlyModeDetectsButDoesNotMask
    fn record_copy(
        &mut self,
        offset: Offset,
        sender: InstanceId,
        digest: RecordDigest,
    ) -> CopyOutcome {
        let (own_id, required) = (self.own_id, self.required_copies);
        let slot = self
            .slots
            .get_mut(&offset)
            .expect("the caller opened the slot");
        assert!(
            slot.copy_from(sender).is_none(),
            "one copy per instance per record"
        );
        slot.copies.push((sender, digest));
        let matching = slot.matching_count(digest);
        match slot.status {
            SlotStatus::Collecting if matching >= required => {
                slot.status = SlotStatus::Agreed;
                slot.agreed_digest = Some(digest);
                let divergent = slot
                    .copies
                    .iter()
                    .filter(|&&(from, d)| d != digest && from != own_id)
                    .map(|&(from, _)| from)
                    .collect();
                CopyOutcome::Agreed { divergent }
            }
            SlotStatus::Agreed | SlotStatus::Published if slot.agreed_digest != Some(digest) => {
                if matching >= required {
                    slot.status = SlotStatus::SplitBrain;
                    self.publication_halted = true;
                    CopyOutcome::SplitBrain
                } else if sender != own_id {
                    CopyOutcome::Divergent
                } else {
                    // The own copy's divergence is `watch`'s to report.
                    CopyOutcome::Noted
                }
            }
            SlotStatus::Collecting
            | SlotStatus::Agreed
            | SlotStatus::Published
            | SlotStatus::SplitBrain => CopyOutcome::Noted,
        }
    }

    /// Drops a newly suspected peer's copies from slots still collecting;
    /// decided slots keep theirs.
    ///
    /// spec: clerk.PeerMarkedSuspected
    pub fn forget_copies_from(&mut self, peer: InstanceId) {
        self.slots
            .values_mut()
            .filter(|slot| slot.status == SlotStatus::Collecting)
            .for_each(|slot| slot.copies.retain(|(from, _)| *from != peer));
    }

    /// Marks the own copy advertised; `false` if it already was, or there is
    /// no own copy to advertise.
    pub fn advertise(&mut self, offset: Offset) -> bool {
        match self.slots.get_mut(&offset) {
            Some(slot) if slot.own_digest.is_some() && !slot.advertised => {
                slot.advertised = true;
                true
            }
            _ => false,
        }
    }

    /// A publication for `offset` was read back from the outcome topic.
    ///
    /// spec: clerk.PublicationSettlesAgreedSlot, clerk.PublicationTeachesUnsettledSlot,
    /// spec: clerk.PublicationForSettledRecordIgnored, clerk.WhoPublishesNeverAffectsWhat
    pub fn publication(
        &mut self,
        offset: Offset,
        digest: RecordDigest,
        now: Millis,
    ) -> PublicationOutcome {
        let horizon = self.horizon();
        let capacity = self.instance_count as usize;
        let slot = match self.slots.get_mut(&offset) {
            Some(slot) => slot,
            None if offset <= self.applied_offset => {
                self.ignored_publications += 1;
                return PublicationOutcome::Ignored;
            }
            None if offset > horizon => return PublicationOutcome::BeyondHorizon,
            None => self
                .slots
                .entry(offset)
                .or_insert(AgreementSlot::new(capacity)),
        };
        match slot.status {
            SlotStatus::SplitBrain => PublicationOutcome::SplitSlot,
            _ if slot.is_settled_or_decided() && slot.agreed_digest != Some(digest) => {
                PublicationOutcome::Contradicting
            }
            SlotStatus::Published => {
                self.ignored_publications += 1;
                PublicationOutcome::Ignored
            }
            SlotStatus::Agreed => {
                slot.status = SlotStatus::Published;
                slot.published_at = Some(now);
                PublicationOutcome::Settled
            }
            SlotStatus::Collecting => {
                slot.status = SlotStatus::Published;
                slot.agreed_digest = Some(digest);
                slot.published_at = Some(now);
                PublicationOutcome::Learned
            }
        }
    }

    /// Evaluates the conditions rules watch a slot for, after a change or
    /// when time passed: self-divergence, settlement (reported once), and
    /// pruning (the slot is removed).
    pub fn watch(&mut self, offset: Offset, retention: Millis, now: Millis) -> SlotConditions {
        let Some(slot) = self.slots.get_mut(&offset) else {
            return SlotConditions::default();
        };
        let conditions = SlotConditions {
            own_diverged: slot.own_diverged(self.required_copies),
            newly_settled: slot.take_settlement(),
            pruned: slot.prune_due(self.instance_count, retention, now),
        };
        if conditions.pruned {
            self.slots.remove(&offset);
        }
        conditions
    }
}

/// What [`AgreementTable::watch`] found.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SlotConditions {
    /// The own output differs from the agreement without a quorum of its own.
    pub own_diverged: bool,
    /// Published with the own output durable, for the first time.
    pub newly_settled: bool,
    /// Published, settled, and every copy in or the retention passed: removed.
    pub pruned: bool,
}

impl AgreementSlot {
    /// Whether this instance's own output differs from the agreement while
    /// lacking a quorum of its own (with one it would be split brain).
    ///
    /// spec: clerk.OwnOutputDivergesFromAgreement
    fn own_diverged(&self, required_copies: u32) -> bool {
        self.is_settled_or_decided()
            && self.own_digest.is_some_and(|own| {
                Some(own) != self.agreed_digest && self.matching_count(own) < required_copies
            })
    }

    /// Published and the own output durable: `true` once.
    ///
    /// spec: clerk.SettlementReportedToUsher
    fn take_settlement(&mut self) -> bool {
        let settled = self.status == SlotStatus::Published && self.own_digest.is_some();
        let first = settled && !self.settlement_reported;
        self.settlement_reported |= settled;
        first
    }

    /// spec: clerk.PublishedSlotPruned
    fn prune_due(&self, instance_count: u32, retention: Millis, now: Millis) -> bool {
        self.status == SlotStatus::Published
            && self.own_digest.is_some()
            && (self.copies.len() >= instance_count as usize
                || self
                    .published_at
                    .is_some_and(|at| at.saturating_add(retention) <= now))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: RecordDigest = RecordDigest([0xaa; 32]);
    const B: RecordDigest = RecordDigest([0xbb; 32]);

    fn table(required_copies: u32) -> AgreementTable {
        let config = ClerkConfig {
            required_copies,
            copy_lookahead: 100,
            ..ClerkConfig::default()
        };
        let mut table = AgreementTable::new(0, &config);
        table.advance_progress(10, 9);
        table
    }

    fn diverged(table: &mut AgreementTable, offset: Offset) -> bool {
        table.watch(offset, 1_000, 0).own_diverged
    }

    fn settled(table: &mut AgreementTable, offset: Offset) -> bool {
        table.watch(offset, 1_000, 0).newly_settled
    }

    fn pruned(table: &mut AgreementTable, offset: Offset, now: Millis) -> bool {
        table.watch(offset, 1_000, now).pruned
    }

    fn peer(
        table: &mut AgreementTable,
        sender: InstanceId,
        offset: Offset,
        digest: RecordDigest,
    ) -> PeerCopyOutcome {
        table.record_peer(sender, offset, digest, false)
    }

    /// covers: clerk.PeerCopyRecorded, clerk.RecordAgreedAtRequiredCopies, clerk.AgreedSlotHasQuorum
    #[test]
    fn a_record_is_agreed_at_the_required_matching_copies_and_not_before() {
        let mut table = table(3);
        assert_eq!(
            peer(&mut table, 1, 12, A),
            PeerCopyOutcome::Recorded(CopyOutcome::Noted)
        );
        assert_eq!(
            peer(&mut table, 3, 12, B),
            PeerCopyOutcome::Recorded(CopyOutcome::Noted)
        );
        assert_eq!(
            peer(&mut table, 2, 12, A),
            PeerCopyOutcome::Recorded(CopyOutcome::Noted)
        );
        assert_eq!(
            table.slot(12).map(AgreementSlot::status),
            Some(SlotStatus::Collecting)
        );
        assert_eq!(
            table.record_own(12, A, None),
            CopyOutcome::Agreed {
                divergent: [3].into_iter().collect()
            }
        );
        let slot = table.slot(12).expect("slot");
        assert_eq!(slot.status(), SlotStatus::Agreed);
        assert_eq!(slot.agreed_digest(), Some(A));
        assert!(slot.matching_count(A) >= 3);
    }

    /// covers: clerk.OwnOutputEntersAgreement
    #[test]
    fn the_own_output_counts_as_a_copy_and_moves_progress() {
        let mut table = table(2);
        assert_eq!(
            table.record_own(15, A, Some("malformed_record".into())),
            CopyOutcome::Noted
        );
        let slot = table.slot(15).expect("slot");
        assert_eq!(slot.own_digest(), Some(A));
        assert_eq!(slot.copies(), &[(0, A)]);
        assert_eq!(slot.dead_letter_reason(), Some("malformed_record"));
        assert!(!slot.advertised());
        assert_eq!((table.applied_offset(), table.consumed_offset()), (15, 15));
        assert_eq!(
            table.record_own(15, A, None),
            CopyOutcome::Noted,
            "idempotent"
        );
        assert_eq!(
            peer(&mut table, 2, 15, A),
            PeerCopyOutcome::Recorded(CopyOutcome::Agreed {
                divergent: InstanceSet::EMPTY
            })
        );
    }

    /// covers: clerk.RepeatedCopyIgnored, clerk.EquivocatingSenderSuspected, clerk.OneCopyPerInstancePerRecord
    #[test]
    fn a_sender_has_one_copy_per_record() {
        let mut table = table(3);
        peer(&mut table, 1, 11, A);
        assert_eq!(peer(&mut table, 1, 11, A), PeerCopyOutcome::Repeated);
        assert_eq!(table.dropped_copies(), 1);
        assert_eq!(peer(&mut table, 1, 11, B), PeerCopyOutcome::Equivocation);
        assert_eq!(table.slot(11).expect("slot").copies(), &[(1, A)]);
        assert_eq!(table.dropped_copies(), 1);
    }

    /// covers: clerk.CopyFromSuspectedSenderDropped, clerk.CopyBeyondLookaheadDropped, clerk.CopyForSettledRecordIgnored
    #[test]
    fn copies_from_suspects_beyond_the_horizon_or_for_settled_records_are_dropped() {
        let mut table = table(3);
        assert_eq!(table.horizon(), 110);
        assert_eq!(
            table.record_peer(1, 20, A, true),
            PeerCopyOutcome::SuspectedSenderDropped
        );
        assert_eq!(
            peer(&mut table, 1, 111, A),
            PeerCopyOutcome::BeyondLookaheadDropped
        );
        assert_eq!(
            peer(&mut table, 1, 9, A),
            PeerCopyOutcome::SettledRecordIgnored
        );
        assert_eq!(
            peer(&mut table, 1, 110, A),
            PeerCopyOutcome::Recorded(CopyOutcome::Noted)
        );
        assert_eq!(table.dropped_copies(), 3);
        assert!(table.slot(20).is_none() && table.slot(111).is_none() && table.slot(9).is_none());
        // An existing slot takes copies below the watermark: its record is not settled yet.
        table.record_own(5, A, None);
        assert_eq!(
            peer(&mut table, 2, 5, A),
            PeerCopyOutcome::Recorded(CopyOutcome::Noted)
        );
    }

    /// covers: clerk.DivergentCopySuspectsSender
    #[test]
    fn a_late_copy_against_the_agreement_is_divergent() {
        let mut table = table(3);
        for sender in [1, 2, 3] {
            peer(&mut table, sender, 12, A);
        }
        assert_eq!(
            table.record_own(12, B, None),
            CopyOutcome::Noted,
            "the own copy's divergence is reported by watch"
        );
        assert!(diverged(&mut table, 12));
        let mut table = self::table(3);
        for sender in [1, 2] {
            peer(&mut table, sender, 12, A);
        }
        table.record_own(12, A, None);
        assert_eq!(
            peer(&mut table, 3, 12, B),
            PeerCopyOutcome::Recorded(CopyOutcome::Divergent)
        );
        assert!(!diverged(&mut table, 12));
    }

    /// covers: clerk.SecondQuorumIsSplitBrain, clerk.DetectionOnlyModeDetectsButDoesNotMask
    #[test]
    fn two_colluding_instances_in_detection_mode_are_split_brain() {
        let mut table = table(2);
        peer(&mut table, 1, 12, B);
        assert!(matches!(
            peer(&mut table, 2, 12, B),
            PeerCopyOutcome::Recorded(CopyOutcome::Agreed { .. })
        ));
        assert_eq!(table.record_own(12, A, None), CopyOutcome::Noted);
        assert!(diverged(&mut table, 12));
        assert_eq!(
            peer(&mut table, 3, 12, A),
            PeerCopyOutcome::Recorded(CopyOutcome::SplitBrain)
        );
        assert_eq!(
            table.slot(12).map(AgreementSlot::status),
            Some(SlotStatus::SplitBrain)
        );
        assert!(table.publication_halted());
        assert!(
            !diverged(&mut table, 12),
            "split brain, not self-divergence"
        );
    }

    /// covers: clerk.DetectionOnlyModeDetectsButDoesNotMask
    #[test]
    fn one_faulty_instance_in_detection_mode_is_detected_but_never_agreed() {
        let mut table = table(2);
        peer(&mut table, 3, 12, B);
        assert_eq!(
            table.record_own(12, A, None),
            CopyOutcome::Noted,
            "one wrong copy and one right one agree on nothing"
        );
        assert_eq!(
            peer(&mut table, 1, 12, A),
            PeerCopyOutcome::Recorded(CopyOutcome::Agreed {
                divergent: [3].into_iter().collect()
            })
        );
        assert_eq!(
            table.slot(12).and_then(AgreementSlot::agreed_digest),
            Some(A)
        );
    }

    /// covers: clerk.PublicationSettlesAgreedSlot, clerk.PublicationForSettledRecordIgnored
    #[test]
    fn publications_settle_agreed_slots_and_duplicates_are_ignored() {
        let mut table = table(2);
        table.record_own(12, A, None);
        peer(&mut table, 1, 12, A);
        assert_eq!(table.publication(12, A, 500), PublicationOutcome::Settled);
        let slot = table.slot(12).expect("slot");
        assert_eq!(
            (slot.status(), slot.published_at()),
            (SlotStatus::Published, Some(500))
        );
        assert_eq!(table.publication(12, A, 501), PublicationOutcome::Ignored);
        assert_eq!(table.publication(3, B, 501), PublicationOutcome::Ignored);
        assert_eq!(table.ignored_publications(), 2);
        assert_eq!(
            table.publication(12, B, 502),
            PublicationOutcome::Contradicting
        );
    }

    /// covers: clerk.PublicationTeachesUnsettledSlot
    #[test]
    fn publications_teach_collecting_and_unknown_records_within_the_horizon() {
        let mut table = table(3);
        peer(&mut table, 1, 14, B);
        assert_eq!(table.publication(14, A, 7), PublicationOutcome::Learned);
        assert_eq!(table.publication(30, A, 7), PublicationOutcome::Learned);
        assert_eq!(
            table.publication(111, A, 7),
            PublicationOutcome::BeyondHorizon
        );
        assert!(table.slot(111).is_none());
        for offset in [14, 30] {
            let slot = table.slot(offset).expect("slot");
            assert_eq!(slot.status(), SlotStatus::Published);
            assert_eq!(slot.agreed_digest(), Some(A));
            assert_eq!(slot.own_digest(), None);
        }
        assert!(
            !settled(&mut table, 30),
            "not settled without the own output"
        );
        table.record_own(30, A, None);
        assert!(settled(&mut table, 30));
        assert!(!settled(&mut table, 30), "reported once");
    }

    /// covers: clerk.PublishedSlotPruned
    #[test]
    fn published_slots_are_pruned_when_every_copy_is_in_or_the_retention_passed() {
        let mut table = table(3);
        for sender in [1, 2] {
            peer(&mut table, sender, 12, A);
        }
        table.record_own(12, A, None);
        table.publication(12, A, 100);
        assert!(!pruned(&mut table, 12, 500));
        peer(&mut table, 3, 12, A);
        assert!(pruned(&mut table, 12, 500));
        assert!(table.slot(12).is_none());

        table.publication(13, A, 100);
        assert!(!pruned(&mut table, 13, 5_000), "own output not durable yet");
        table.record_own(13, A, None);
        assert!(!pruned(&mut table, 13, 1_099));
        assert!(pruned(&mut table, 13, 1_100));
    }

    /// covers: clerk.MatchingIsPerOffset
    #[test]
    fn copies_match_per_offset_only() {
        let mut table = table(2);
        peer(&mut table, 1, 12, A);
        assert_eq!(
            peer(&mut table, 2, 13, A),
            PeerCopyOutcome::Recorded(CopyOutcome::Noted),
            "the same digest at another offset is another record"
        );
        assert_eq!(table.unsettled_count(), 2);
    }

    /// covers: clerk.PeerMarkedSuspected
    #[test]
    fn a_suspects_copies_leave_collecting_slots_only() {
        let mut table = table(2);
        peer(&mut table, 1, 12, A);
        peer(&mut table, 1, 13, B);
        peer(&mut table, 2, 13, B);
        table.forget_copies_from(1);
        assert!(table.slot(12).expect("slot").copies().is_empty());
        assert_eq!(table.slot(13).expect("slot").matching_count(B), 2);
    }
}
