//! Properties over random interleavings: quorum, per-offset matching,
//! forged and replayed frames.

mod support;

use std::collections::BTreeMap;

use clerk::{ClerkConfig, Effect, InstanceStatus, SlotStatus};
use proptest::prelude::*;
use protocol::envelope::RecordDigest;
use protocol::peer::{FrameAuthenticator, RejectionReason};
use protocol::position::Offset;
use support::*;

fn correct(offset: Offset) -> RecordDigest {
    digest(offset as u64)
}

fn wrong(offset: Offset, variant: u8) -> RecordDigest {
    digest(1_000_000 + offset as u64 * 8 + u64::from(variant))
}

/// How the one Byzantine peer treats one record.
#[derive(Clone, Copy, Debug)]
enum Byzantine {
    Correct,
    Silent,
    Wrong(u8),
    /// Sends the correct and a wrong copy, wrong first if the flag is set.
    Equivocate(u8, bool),
}

fn byzantine() -> impl Strategy<Value = Byzantine> {
    prop_oneof![
        Just(Byzantine::Correct),
        Just(Byzantine::Silent),
        (0u8..3).prop_map(Byzantine::Wrong),
        (0u8..3, any::<bool>()).prop_map(|(v, first)| Byzantine::Equivocate(v, first)),
    ]
}

/// One thing that happens to the Clerk under test.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Arrival {
    /// A copy from the fake peer at this index.
    Copy(usize, Offset, RecordDigest),
    /// The next own output becomes durable (own outputs come in offset order).
    Own,
}

/// Feeds the arrivals: copies of one peer accumulate into a frame until a
/// `cut` flushes every pending frame; time moves by `ticks`.
struct Run {
    clerk: clerk::Clerk,
    peers: Vec<FakePeer>,
    pending: Vec<Vec<(u32, Offset, RecordDigest)>>,
    now: u64,
    next_own: Offset,
    effects: Vec<Effect>,
}

impl Run {
    fn new(config: ClerkConfig) -> Self {
        let mut clerk = clerk(config, InstanceStatus::Ready);
        let ids: Vec<u32> = clerk.config().peer_ids().collect();
        let peers: Vec<FakePeer> = ids
            .into_iter()
            .map(|id| {
                let mut peer = FakePeer::connect(&mut clerk, id, u64::from(id) + 1, 0);
                peer.heartbeat(&mut clerk, 0);
                peer
            })
            .collect();
        let pending = vec![Vec::new(); peers.len()];
        Self {
            clerk,
            peers,
            pending,
            now: 0,
            next_own: 0,
            effects: Vec::new(),
        }
    }

    fn flush(&mut self) {
        for (index, batch) in self.pending.iter_mut().enumerate() {
            if !batch.is_empty() {
                self.peers[index].send_copies(&mut self.clerk, batch, self.now);
                batch.clear();
            }
        }
    }

    fn play(
        &mut self,
        arrivals: &[Arrival],
        cuts: &[bool],
        ticks: &[u8],
        own: impl Fn(Offset) -> RecordDigest,
    ) {
        for (i, arrival) in arrivals.iter().enumerate() {
            if cuts[i % cuts.len()] {
                self.flush();
            }
            match *arrival {
                Arrival::Copy(peer, offset, digest) => self.pending[peer].push((0, offset, digest)),
                Arrival::Own => {
                    self.flush();
                    let offset = self.next_own;
                    self.next_own += 1;
                    self.clerk
                        .outputs_committed(&[own_output(offset, own(offset))], self.now);
                }
            }
            self.now += u64::from(ticks[i % ticks.len()]);
            let effects = self.clerk.step(self.now);
            self.effects.extend(effects);
            self.clerk
                .check_invariants()
                .expect("invariants hold after every step");
        }
        self.flush();
        let effects = self.clerk.step(self.now);
        self.effects.extend(effects);
        self.clerk
            .check_invariants()
            .expect("invariants hold at the end");
    }

    /// (status, agreed digest, senders) per offset.
    fn outcome(&self) -> BTreeMap<Offset, (SlotStatus, Option<RecordDigest>, Vec<u32>)> {
        self.clerk
            .table(0)
            .slots()
            .map(|(offset, slot)| {
                let mut senders: Vec<u32> = slot.copies().iter().map(|&(from, _)| from).collect();
                senders.sort_unstable();
                (offset, (slot.status(), slot.agreed_digest(), senders))
            })
            .collect()
    }
}

fn own_output(offset: Offset, digest: RecordDigest) -> clerk::OwnOutput {
    own(0, offset, digest)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Four instances, at most one Byzantine peer sending wrong, missing or
    /// equivocating copies, in any interleaving and batching: nothing is
    /// agreed or published without required_copies matching copies, only
    /// the correct digest is ever agreed, every record is agreed once the
    /// three correct copies are in, and only the Byzantine peer is suspected.
    ///
    /// covers: clerk.NeverPublishWithoutQuorum, clerk.AgreedSlotHasQuorum, clerk.OneCopyPerInstancePerRecord
    /// covers: clerk.DetectionOnlyModeDetectsButDoesNotMask, clerk.OneAgreedDigestPerOffset
    /// covers: clerk.OnlyMatchingInstancesSchedulePublication, clerk.SuspectedPeerNeverRankedAhead
    #[test]
    fn never_publish_without_quorum(
        required in 2u32..=3,
        own_id in 0u32..4,
        byzantine_index in 0usize..3,
        behaviour in proptest::collection::vec(byzantine(), 1..24),
        order_seed in any::<u64>(),
        cuts in proptest::collection::vec(any::<bool>(), 1..16),
        ticks in proptest::collection::vec(0u8..40, 1..16),
    ) {
        let records = behaviour.len() as Offset;
        let config = ClerkConfig { required_copies: required, ..config(own_id) };
        let mut arrivals = Vec::new();
        for offset in 0..records {
            arrivals.push(Arrival::Own);
            for peer in 0..3 {
                if peer != byzantine_index {
                    arrivals.push(Arrival::Copy(peer, offset, correct(offset)));
                    continue;
                }
                match behaviour[offset as usize] {
                    Byzantine::Correct => arrivals.push(Arrival::Copy(peer, offset, correct(offset))),
                    Byzantine::Silent => {}
                    Byzantine::Wrong(v) => arrivals.push(Arrival::Copy(peer, offset, wrong(offset, v))),
                    Byzantine::Equivocate(v, wrong_first) => {
                        let (a, b) = (correct(offset), wrong(offset, v));
                        let (first, second) = if wrong_first { (b, a) } else { (a, b) };
                        arrivals.push(Arrival::Copy(peer, offset, first));
                        arrivals.push(Arrival::Copy(peer, offset, second));
                    }
                }
            }
        }
        shuffle(&mut arrivals, order_seed);
        let mut run = Run::new(config);
        run.play(&arrivals, &cuts, &ticks, correct);

        for order in publishes(&run.effects) {
            prop_assert!(order.matching_copies >= required);
            prop_assert_eq!(order.digest, correct(order.offset));
            prop_assert_eq!(order.publisher_id, own_id);
        }
        for offset in 0..records {
            let slot = run.clerk.table(0).slot(offset).expect("every record has a slot");
            prop_assert_eq!(slot.status(), SlotStatus::Agreed);
            prop_assert_eq!(slot.agreed_digest(), Some(correct(offset)));
            prop_assert!(slot.matching_count(correct(offset)) >= required);
        }
        let byzantine_id = run.peers[byzantine_index].id;
        let misbehaved = behaviour
            .iter()
            .any(|b| matches!(b, Byzantine::Wrong(_) | Byzantine::Equivocate(..)));
        let suspected: Vec<u32> = run.clerk.suspected_peers().into_iter().map(|(peer, _)| peer).collect();
        prop_assert_eq!(suspected, if misbehaved { vec![byzantine_id] } else { vec![] });
        prop_assert!(!run.clerk.self_suspected());
    }

    /// The same copies batched into frames differently and arriving in
    /// another order leave the same table: matching is per offset.
    ///
    /// covers: clerk.MatchingIsPerOffset
    #[test]
    fn matching_is_per_offset(
        required in 2u32..=3,
        holdings in proptest::collection::vec((any::<[bool; 3]>(), any::<bool>()), 1..32),
        first_order in any::<u64>(),
        second_order in any::<u64>(),
        first_cuts in proptest::collection::vec(any::<bool>(), 1..16),
        second_cuts in proptest::collection::vec(any::<bool>(), 1..16),
    ) {
        let digest_of = |offset: Offset| if holdings[offset as usize].1 { correct(offset) } else { wrong(offset, 7) };
        let mut arrivals = Vec::new();
        for (offset, (held, _)) in (0..).zip(&holdings) {
            arrivals.push(Arrival::Own);
            for (peer, &holds) in held.iter().enumerate() {
                if holds {
                    arrivals.push(Arrival::Copy(peer, offset, digest_of(offset)));
                }
            }
        }
        let config = ClerkConfig { required_copies: required, ..config(0) };
        let mut outcomes = Vec::new();
        for (seed, cuts) in [(first_order, &first_cuts), (second_order, &second_cuts)] {
            let mut order = arrivals.clone();
            shuffle(&mut order, seed);
            let mut run = Run::new(config.clone());
            run.play(&order, cuts, &[1], digest_of);
            outcomes.push(run.outcome());
        }
        prop_assert_eq!(&outcomes[0], &outcomes[1]);
        for (offset, (status, agreed, senders)) in &outcomes[0] {
            let held = 1 + holdings[*offset as usize].0.iter().filter(|&&h| h).count() as u32;
            prop_assert_eq!(senders.len() as u32, held);
            prop_assert_eq!(*status == SlotStatus::Agreed, held >= required);
            prop_assert_eq!(agreed.is_some(), held >= required);
        }
    }

    /// Whatever is done to a frame on the wire, the Clerk records only what
    /// an authentic, fresh frame carried; anything else closes the link.
    ///
    /// covers: clerk.ForgedFrameRejected, clerk.ReplayedFrameRejected, clerk.SequenceStrictlyIncreasesPerSession
    /// covers: clerk.UndecodableFrameRejected
    #[test]
    fn forged_and_replayed_frames_are_rejected(
        valid_before in 0usize..4,
        attack in 0u8..4,
        at in any::<prop::sample::Index>(),
        bit in 0u8..8,
    ) {
        let mut clerk = clerk(config(0), InstanceStatus::Ready);
        let mut old = FakePeer::connect(&mut clerk, 1, 1, 0);
        let old_frame = old.frame(&copies_body(&[(0, 90, digest(90))]));
        clerk.bytes_received(old.link, &old_frame, 0);
        let mut peer = FakePeer::connect(&mut clerk, 1, 2, 0);
        let mut sent = Vec::new();
        for i in 0..valid_before {
            let bytes = peer.frame(&copies_body(&[(0, i as Offset, digest(i as u64))]));
            clerk.bytes_received(peer.link, &bytes, 1);
            sent.push(bytes);
        }
        clerk.step(1);
        let before = clerk.table(0).len();
        let target = copies_body(&[(0, 50, digest(50))]);
        let peer_link = peer.link;
        let (bytes, expected): (Vec<u8>, &[RejectionReason]) = match attack {
            0 if !sent.is_empty() => (sent[at.index(sent.len())].clone(), &[RejectionReason::Replayed]),
            0 | 1 => (old_frame.clone(), &[RejectionReason::Replayed]),
            2 => {
                let forger = FrameAuthenticator::new("tribunal", b"a forger's key, also 32 bytes...").expect("key");
                let mut forged = FakePeer { authenticator: forger, ..peer };
                (forged.frame(&target), &[RejectionReason::BadMac])
            }
            _ => {
                let mut bytes = peer.frame(&target);
                let index = 4 + at.index(bytes.len() - 4);
                bytes[index] ^= 1 << bit;
                (bytes, &[RejectionReason::BadMac, RejectionReason::Undecodable])
            }
        };
        clerk.bytes_received(peer.link, &bytes, 2);
        let effects = clerk.step(2);
        let rejected: Vec<RejectionReason> = effects.iter().filter_map(|e| match e {
            Effect::FrameRejected { reason, .. } => Some(*reason),
            _ => None,
        }).collect();
        if rejected.is_empty() {
            // Protobuf aliases (a non-minimal varint) may survive a flipped
            // bit; then the frame carried exactly what was sealed.
            prop_assert_eq!(attack, 3);
            let slot = clerk.table(0).slot(50).expect("the sealed copy");
            prop_assert_eq!(slot.copy_from(1), Some(digest(50)));
        } else {
            prop_assert_eq!(rejected.len(), 1);
            prop_assert!(expected.contains(&rejected[0]), "{:?}", rejected);
            prop_assert_eq!(clerk.table(0).len(), before, "nothing recorded from a rejected frame");
            prop_assert!(clerk.link(peer_link).is_none(), "the link is closed");
        }
    }
}

/// Fisher-Yates with a fixed generator, so proptest shrinks the seed.
fn shuffle<T>(items: &mut [T], seed: u64) {
    let mut state = seed | 1;
    for i in (1..items.len()).rev() {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        items.swap(i, (state % (i as u64 + 1)) as usize);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// A whole cluster with one faulty instance and outputs becoming durable
    /// in any order across instances: every instance that is not
    /// self-suspected agrees on one digest per offset, and only correct
    /// outputs are published.
    ///
    /// covers: clerk.OneAgreedDigestPerOffset, clerk.PublishedOutputMatchesAgreedDigest
    /// covers: clerk.SuspectedInstanceNeverPublishes, clerk.WhoPublishesNeverAffectsWhat
    #[test]
    fn one_agreed_digest_per_offset_across_the_cluster(
        required in 2u32..=3,
        faulty in 0usize..4,
        faults in proptest::collection::vec(any::<bool>(), 4..16),
        order_seed in any::<u64>(),
        steps in proptest::collection::vec(0u64..60, 1..8),
    ) {
        let records = faults.len() as Offset;
        let configs = (0..4).map(|id| ClerkConfig { required_copies: required, ..config(id) }).collect();
        let mut cluster = Cluster::new(configs);
        cluster.settle();
        let mut commits: Vec<(usize, Offset)> = (0..4).flat_map(|node| (0..records).map(move |o| (node, o))).collect();
        shuffle(&mut commits, order_seed);
        // Each instance's own outputs stay in offset order.
        let mut next = [0 as Offset; 4];
        for (i, (node, _)) in commits.into_iter().enumerate() {
            let offset = next[node];
            next[node] += 1;
            let d = if node == faulty && faults[offset as usize] { wrong(offset, 0) } else { correct(offset) };
            cluster.commit(node, &[own(0, offset, d)]);
            cluster.advance(steps[i % steps.len()]);
        }
        cluster.advance(2_000);
        for order in &cluster.outcome_log {
            prop_assert_eq!(order.digest, correct(order.offset));
            prop_assert!(order.matching_copies >= required);
        }
        let published: std::collections::BTreeSet<Offset> = cluster.outcome_log.iter().map(|o| o.offset).collect();
        prop_assert_eq!(published.len() as Offset, records, "every record published once agreed");
        for node in &cluster.nodes {
            if node.self_suspected() {
                continue;
            }
            for (offset, slot) in node.table(0).slots() {
                if let Some(agreed) = slot.agreed_digest() {
                    prop_assert_eq!(agreed, correct(offset));
                }
            }
        }
        let did_fault = faults.iter().any(|&f| f);
        prop_assert_eq!(cluster.nodes[faulty].self_suspected(), did_fault);
    }
}
