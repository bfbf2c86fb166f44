//! Agreement, suspicion and publication through the Clerk's inputs.

mod support;

use clerk::{
    AlarmKind, Clerk, ClerkConfig, Effect, InstanceStatus, OutcomeIntake, OutcomeRecord,
    PublishOrder, SlotStatus, SuspicionReason,
};
use protocol::envelope::RecordDigest;
use protocol::position::Offset;
use support::*;

const GOOD: u64 = 1;
const BAD: u64 = 2;

/// A ready Clerk `id` with fake peers for every other instance, each live.
fn ready_with_peers(config: ClerkConfig) -> (Clerk, Vec<FakePeer>) {
    let id = config.instance_id;
    let mut clerk = clerk(config, InstanceStatus::Ready);
    let peers: Vec<FakePeer> = clerk
        .config()
        .peer_ids()
        .collect::<Vec<_>>()
        .into_iter()
        .map(|peer| {
            let mut fake =
                FakePeer::connect(&mut clerk, peer, u64::from(peer) + 100 * u64::from(id), 0);
            fake.heartbeat(&mut clerk, 0);
            fake
        })
        .collect();
    clerk.step(0);
    (clerk, peers)
}

fn peer(peers: &mut [FakePeer], id: u32) -> &mut FakePeer {
    peers.iter_mut().find(|peer| peer.id == id).expect("peer")
}

fn outcome(
    offset: Offset,
    digest: RecordDigest,
    publisher_id: u32,
    outcome_offset: Offset,
) -> OutcomeRecord {
    OutcomeRecord {
        partition: 0,
        offset,
        digest,
        publisher_id,
        outcome_offset,
    }
}

fn alarms(effects: &[Effect]) -> Vec<AlarmKind> {
    effects
        .iter()
        .filter_map(|effect| match effect {
            Effect::Alarm { kind, .. } => Some(*kind),
            _ => None,
        })
        .collect()
}

/// covers: clerk.PublicationScheduledWhenEligible, clerk.PrimaryPublishesAtOnce, clerk.NeverPublishWithoutQuorum
/// covers: clerk.PublishedOutputMatchesAgreedDigest
#[test]
fn the_lowest_live_matching_instance_publishes_at_once() {
    let (mut clerk, mut peers) = ready_with_peers(config(0));
    clerk.outputs_committed(&[own(0, 5, digest(GOOD))], 10);
    peer(&mut peers, 2).send_copies(&mut clerk, &[(0, 5, digest(GOOD))], 10);
    assert!(clerk.schedule(0, 5).is_none(), "two copies are no quorum");
    assert!(publishes(&clerk.step(10)).is_empty());
    peer(&mut peers, 3).send_copies(&mut clerk, &[(0, 5, digest(GOOD))], 11);
    let schedule = *clerk.schedule(0, 5).expect("scheduled");
    assert_eq!((schedule.rank(), schedule.due_at), (0, 11));
    assert_eq!(
        publishes(&clerk.step(11)),
        vec![PublishOrder {
            partition: 0,
            offset: 5,
            digest: digest(GOOD),
            publisher_id: 0,
            matching_copies: 3,
            dead_letter_reason: None,
        }]
    );
    assert!(clerk.schedule(0, 5).expect("kept until read back").produced);
    assert!(publishes(&clerk.step(500)).is_empty(), "produced once");
}

/// covers: clerk.BackupPublishesAfterStepDelay, clerk.RankCountsInstancesAhead, clerk.PublicationSettlesAgreedSlot
#[test]
fn a_backup_waits_a_step_per_instance_ahead_and_stands_down_when_it_sees_the_publication() {
    let (mut clerk, mut peers) = ready_with_peers(config(2));
    let copies = [(0, 5, digest(GOOD)), (0, 6, digest(GOOD))];
    peer(&mut peers, 0).send_copies(&mut clerk, &copies, 0);
    peer(&mut peers, 1).send_copies(&mut clerk, &copies, 0);
    clerk.outputs_committed(&[own(0, 5, digest(GOOD)), own(0, 6, digest(GOOD))], 20);
    let schedule = *clerk.schedule(0, 5).expect("scheduled");
    assert_eq!(schedule.ranked_ahead.iter().collect::<Vec<_>>(), vec![0, 1]);
    assert_eq!((schedule.rank(), schedule.due_at), (2, 120));
    assert!(publishes(&clerk.step(119)).is_empty());
    assert_eq!(
        clerk.outcome_consumed(outcome(6, digest(GOOD), 0, 0), 119),
        OutcomeIntake::Taken
    );
    assert!(
        clerk.schedule(0, 6).is_none(),
        "the primary's publication was seen"
    );
    assert_eq!(
        clerk.table(0).slot(6).expect("slot").status(),
        SlotStatus::Published
    );
    let published = publishes(&clerk.step(120));
    assert_eq!(published.len(), 1);
    assert_eq!((published[0].offset, published[0].publisher_id), (5, 2));
}

/// covers: clerk.PublicationScheduledWhenEligible
#[test]
fn peers_not_live_or_without_a_matching_copy_are_not_ranked_ahead() {
    let mut clerk = clerk(config(3), InstanceStatus::Ready);
    let mut silent = FakePeer::connect(&mut clerk, 0, 1, 0);
    let mut live = FakePeer::connect(&mut clerk, 1, 2, 0);
    let mut other = FakePeer::connect(&mut clerk, 2, 3, 0);
    live.heartbeat(&mut clerk, 0);
    other.heartbeat(&mut clerk, 0);
    silent.send_copies(&mut clerk, &[(0, 1, digest(GOOD))], 0);
    clerk.step(2_000); // peer 0's copy made it live at 0; it lapsed since
    live.send_copies(&mut clerk, &[(0, 1, digest(GOOD))], 2_000);
    other.send_copies(&mut clerk, &[(0, 1, digest(BAD))], 2_000);
    clerk.outputs_committed(&[own(0, 1, digest(GOOD))], 2_000);
    let schedule = clerk.schedule(0, 1).expect("scheduled");
    assert_eq!(schedule.ranked_ahead.iter().collect::<Vec<_>>(), vec![1]);
}

/// covers: clerk.FailedPublicationRetried
#[test]
fn a_failed_produce_is_retried_after_a_step_delay() {
    let (mut clerk, mut peers) = ready_with_peers(config(0));
    for id in [1, 2] {
        peer(&mut peers, id).send_copies(&mut clerk, &[(0, 0, digest(GOOD))], 0);
    }
    clerk.outputs_committed(&[own(0, 0, digest(GOOD))], 0);
    assert_eq!(publishes(&clerk.step(0)).len(), 1);
    clerk.publication_failed(0, 0, 30);
    assert!(!clerk.schedule(0, 0).expect("kept").produced);
    assert!(publishes(&clerk.step(79)).is_empty());
    assert_eq!(publishes(&clerk.step(80)).len(), 1);
    clerk.publication_failed(0, 99, 80);
    clerk.outcome_consumed(outcome(0, digest(GOOD), 0, 0), 81);
    clerk.publication_failed(0, 0, 81);
    assert!(
        publishes(&clerk.step(1_000)).is_empty(),
        "published slots are not retried"
    );
}

/// covers: clerk.PublicationReportedToLedger, clerk.PublicationForSettledRecordIgnored, clerk.WhoPublishesNeverAffectsWhat
#[test]
fn every_publication_read_is_reported_and_duplicates_are_ignored() {
    let (mut clerk, mut peers) = ready_with_peers(config(1));
    clerk.advance_progress(0, 20, 9);
    clerk.outputs_committed(&[own(0, 10, digest(GOOD))], 0);
    for id in [0, 2] {
        peer(&mut peers, id).send_copies(&mut clerk, &[(0, 10, digest(GOOD))], 0);
    }
    clerk.step(0);
    for (outcome_offset, publisher) in [(40, 0), (41, 1), (42, 2)] {
        clerk.outcome_consumed(outcome(10, digest(GOOD), publisher, outcome_offset), 5);
    }
    clerk.outcome_consumed(outcome(3, digest(GOOD), 0, 43), 5);
    let reported: Vec<(Offset, Offset)> = clerk
        .step(5)
        .iter()
        .filter_map(|effect| match effect {
            Effect::OutcomePublicationSeen {
                partition: 0,
                offset,
                outcome_offset,
            } => Some((*offset, *outcome_offset)),
            _ => None,
        })
        .collect();
    assert_eq!(reported, vec![(10, 40), (10, 41), (10, 42), (3, 43)]);
    assert_eq!(clerk.table(0).ignored_publications(), 3);
    assert!(
        clerk.suspected_peers().is_empty(),
        "identical publications by anyone are fine"
    );
}

/// covers: clerk.ContradictingPublicationRaisesAlarm
#[test]
fn a_publication_against_the_agreement_raises_an_alarm_and_suspects_its_publisher() {
    let (mut clerk, mut peers) = ready_with_peers(config(0));
    for id in [1, 2] {
        peer(&mut peers, id).send_copies(&mut clerk, &[(0, 0, digest(GOOD))], 0);
    }
    clerk.outputs_committed(&[own(0, 0, digest(GOOD))], 0);
    clerk.step(0);
    clerk.outcome_consumed(outcome(0, digest(BAD), 3, 0), 1);
    let effects = clerk.step(1);
    assert_eq!(alarms(&effects), vec![AlarmKind::ContradictingPublication]);
    assert_eq!(
        clerk.suspected_peers(),
        vec![(3, SuspicionReason::ContradictingPublication)]
    );
    assert_eq!(
        clerk.table(0).slot(0).expect("slot").status(),
        SlotStatus::Agreed
    );
}

/// covers: clerk.PublicationTeachesUnsettledSlot, clerk.SettlementReportedToUsher, clerk.PublishedSlotPruned
#[test]
fn a_lagging_instance_learns_a_publication_then_settles_and_prunes_with_its_own_output() {
    let mut clerk = clerk(config(3), InstanceStatus::Ready);
    clerk.advance_progress(0, 4, 4);
    assert_eq!(
        clerk.outcome_consumed(outcome(7, digest(GOOD), 0, 0), 10),
        OutcomeIntake::Taken
    );
    let slot = clerk.table(0).slot(7).expect("learned");
    assert_eq!(
        (slot.status(), slot.agreed_digest()),
        (SlotStatus::Published, Some(digest(GOOD)))
    );
    assert!(
        !clerk
            .step(10)
            .iter()
            .any(|e| matches!(e, Effect::RecordSettled { .. }))
    );
    clerk.outputs_committed(&[own(0, 7, digest(GOOD))], 20);
    let effects = clerk.step(20);
    assert!(effects.contains(&Effect::RecordSettled {
        partition: 0,
        offset: 7
    }));
    assert!(
        clerk.table(0).slot(7).is_some(),
        "kept for late copies until the retention passes"
    );
    clerk.step(1_009);
    assert!(clerk.table(0).slot(7).is_some());
    let effects = clerk.step(1_010);
    assert!(clerk.table(0).slot(7).is_none());
    assert!(
        !effects
            .iter()
            .any(|e| matches!(e, Effect::RecordSettled { .. })),
        "reported once"
    );
}

/// covers: clerk.PublicationTeachesUnsettledSlot
#[test]
fn publications_beyond_the_horizon_are_deferred() {
    let config = ClerkConfig {
        copy_lookahead: 10,
        ..config(0)
    };
    let mut clerk = clerk(config, InstanceStatus::Recovering);
    assert_eq!(
        clerk.outcome_consumed(outcome(10, digest(GOOD), 1, 0), 0),
        OutcomeIntake::Deferred { horizon: 9 }
    );
    assert!(
        !clerk
            .step(0)
            .iter()
            .any(|e| matches!(e, Effect::OutcomePublicationSeen { .. })),
        "not reported to the Ledger either"
    );
    clerk.advance_progress(0, 0, -1);
    assert_eq!(
        clerk.outcome_consumed(outcome(10, digest(GOOD), 1, 0), 0),
        OutcomeIntake::Taken
    );
    let unknown = OutcomeRecord {
        partition: 5,
        ..outcome(1, digest(GOOD), 1, 1)
    };
    assert_eq!(
        clerk.outcome_consumed(unknown, 0),
        OutcomeIntake::UnknownPartition
    );
}

/// covers: clerk.OutcomeReaderResumesAtStoredPosition
#[test]
fn a_loaded_watermark_assigns_the_outcome_reader_where_the_ledger_says() {
    let mut clerk = clerk(config(0), InstanceStatus::Starting);
    clerk.watermark_loaded(0, 41, 1_234);
    assert!(clerk.step(0).contains(&Effect::AssignOutcomeReader {
        partition: 0,
        outcome_offset: 1_234
    }));
    assert_eq!(clerk.table(0).applied_offset(), 41);
}

/// covers: clerk.OwnCopyAdvertisedWhenReady, clerk.CopiesOwedOnlyForDurableOwnOutputs, clerk.CommittedOutputEntersAgreement
#[test]
fn a_ready_instance_owes_each_durable_output_to_every_established_outbound_link() {
    let mut clerk = clerk(config(0), InstanceStatus::Ready);
    let (link1, _, _) = establish_outbound(&mut clerk, 1, 1, 0);
    let (link2, _, _) = establish_outbound(&mut clerk, 2, 2, 0);
    clerk.outputs_committed(&[own(0, 0, digest(GOOD))], 1);
    assert!(clerk.table(0).slot(0).expect("slot").advertised());
    clerk
        .check_invariants()
        .expect("owed copies are durable and advertised");
    let effects = clerk.step(1);
    for (link, peer, session) in [(link1, 1, 1), (link2, 2, 2)] {
        let sent = copies_sent(&effects, link, 0, peer, nonce(session));
        assert_eq!(sent.len(), 1);
        assert_eq!((sent[0].offset, sent[0].digest), (0, digest(GOOD)));
    }
}

/// covers: clerk.BacklogAdvertisedOnReady, clerk.ReadinessReleasesAgreementsLearnedWhileRecovering
/// covers: clerk.RetainedOutputsReenterAgreement
#[test]
fn a_recovering_instance_withholds_its_copies_and_publications_until_ready() {
    let mut clerk = clerk(config(0), InstanceStatus::Recovering);
    let (link, _, _) = establish_outbound(&mut clerk, 1, 1, 0);
    let mut peer2 = FakePeer::connect(&mut clerk, 2, 2, 0);
    let mut peer3 = FakePeer::connect(&mut clerk, 3, 3, 0);
    clerk.retained_outputs_loaded(&[own(0, 0, digest(GOOD)), own(0, 1, digest(GOOD))], 0);
    peer2.send_copies(&mut clerk, &[(0, 0, digest(GOOD))], 0);
    peer3.send_copies(&mut clerk, &[(0, 0, digest(GOOD))], 0);
    assert_eq!(
        clerk.table(0).slot(0).expect("slot").status(),
        SlotStatus::Agreed
    );
    assert!(
        clerk.schedule(0, 0).is_none(),
        "no publication before ready"
    );
    assert!(!clerk.table(0).slot(1).expect("slot").advertised());
    let effects = clerk.step(1);
    assert!(copies_sent(&effects, link, 0, 1, nonce(1)).is_empty());
    assert!(publishes(&effects).is_empty());
    clerk
        .check_invariants()
        .expect("nothing owed or scheduled while recovering");

    clerk.set_status(InstanceStatus::Ready, 2);
    let effects = clerk.step(2);
    let sent: Vec<Offset> = copies_sent(&effects, link, 0, 1, nonce(1))
        .iter()
        .map(|c| c.offset)
        .collect();
    assert_eq!(sent, vec![1], "only the backlog still collecting");
    assert_eq!(
        publishes(&effects)
            .iter()
            .map(|p| p.offset)
            .collect::<Vec<_>>(),
        vec![0]
    );
}

/// covers: clerk.PeerMarkedSuspected, clerk.SuspectedPeerNeverRankedAhead
#[test]
fn suspecting_a_peer_drops_its_collecting_copies_and_moves_schedules_up() {
    let (mut clerk, mut peers) = ready_with_peers(config(3));
    for id in [0, 1] {
        peer(&mut peers, id).send_copies(&mut clerk, &[(0, 0, digest(GOOD))], 0);
    }
    peer(&mut peers, 0).send_copies(&mut clerk, &[(0, 1, digest(GOOD))], 0);
    clerk.outputs_committed(&[own(0, 0, digest(GOOD))], 10);
    // Peers 0 and 1 match; live peer 2's copy has not arrived yet, which
    // still ranks it ahead.
    assert_eq!(clerk.schedule(0, 0).expect("scheduled").due_at, 160);
    // Peer 0 equivocates on record 1.
    peer(&mut peers, 0).send_copies(&mut clerk, &[(0, 1, digest(BAD))], 20);
    let effects = clerk.step(20);
    assert!(effects.contains(&Effect::PeerSuspected {
        peer: 0,
        reason: SuspicionReason::Equivocation,
        partition: 0,
        offset: 1
    }));
    assert!(clerk.table(0).slot(1).expect("slot").copies().is_empty());
    let schedule = clerk.schedule(0, 0).expect("scheduled");
    assert_eq!((schedule.rank(), schedule.due_at), (2, 110));
    clerk.check_invariants().expect("no suspect ranked ahead");
    peer(&mut peers, 0).send_copies(&mut clerk, &[(0, 2, digest(GOOD))], 21);
    assert!(
        clerk.table(0).slot(2).is_none(),
        "a suspect's copies are dropped"
    );
    assert_eq!(clerk.table(0).dropped_copies(), 1);
}

/// covers: clerk.EquivocatingSenderSuspected, clerk.DivergentCopySuspectsSender, clerk.CopyFromSuspectedSenderDropped
#[test]
fn equivocating_and_divergent_peers_are_suspected_for_good() {
    let (mut clerk, mut peers) = ready_with_peers(config(0));
    peer(&mut peers, 1).send_copies(&mut clerk, &[(0, 0, digest(GOOD))], 0);
    peer(&mut peers, 2).send_copies(&mut clerk, &[(0, 0, digest(GOOD))], 0);
    clerk.outputs_committed(&[own(0, 0, digest(GOOD))], 0);
    peer(&mut peers, 1).send_copies(&mut clerk, &[(0, 1, digest(GOOD)), (0, 1, digest(BAD))], 0);
    clerk.outputs_committed(&[own(0, 1, digest(GOOD))], 0);
    let slot = clerk.table(0).slot(0).expect("slot");
    assert_eq!(slot.status(), SlotStatus::Agreed);
    assert_eq!(
        slot.copy_from(1),
        Some(digest(GOOD)),
        "decided slots keep a suspect's copy"
    );
    assert!(
        clerk.table(0).slot(1).expect("slot").copy_from(1).is_none(),
        "collecting slots drop it"
    );
    peer(&mut peers, 3).send_copies(&mut clerk, &[(0, 0, digest(BAD))], 0);
    assert_eq!(
        clerk.suspected_peers(),
        vec![
            (1, SuspicionReason::Equivocation),
            (3, SuspicionReason::DivergentCopy)
        ]
    );
    let dropped = clerk.table(0).dropped_copies();
    peer(&mut peers, 3).send_copies(&mut clerk, &[(0, 1, digest(GOOD))], 1);
    assert!(
        clerk.table(0).slot(1).expect("slot").copy_from(3).is_none(),
        "dropped once suspected"
    );
    assert_eq!(clerk.table(0).dropped_copies(), dropped + 1);
}

/// covers: clerk.OperatorClearsSuspicion
#[test]
fn an_operator_clears_a_suspicion() {
    let (mut clerk, mut peers) = ready_with_peers(config(0));
    peer(&mut peers, 1).send_copies(&mut clerk, &[(0, 0, digest(GOOD)), (0, 0, digest(BAD))], 0);
    assert!(clerk.peer_view(1).expect("view").suspected);
    assert!(clerk.clear_peer_suspicion(1));
    assert!(!clerk.clear_peer_suspicion(1));
    assert!(!clerk.clear_peer_suspicion(0), "no view of itself");
    let view = clerk.peer_view(1).expect("view");
    assert!(!view.suspected && view.suspicion_reason.is_none());
    peer(&mut peers, 1).send_copies(&mut clerk, &[(0, 5, digest(GOOD))], 1);
    assert!(clerk.table(0).slot(5).expect("slot").copy_from(1).is_some());
}

/// covers: clerk.OwnOutputDivergesFromAgreement, clerk.SuspectedInstanceNeverPublishes
#[test]
fn an_instance_whose_output_differs_from_the_agreement_suspects_itself_and_stops() {
    let (mut clerk, mut peers) = ready_with_peers(config(0));
    for id in [1, 2, 3] {
        peer(&mut peers, id).send_copies(
            &mut clerk,
            &[(0, 0, digest(GOOD)), (0, 1, digest(GOOD))],
            0,
        );
    }
    clerk.outputs_committed(&[own(0, 0, digest(GOOD))], 0);
    assert!(clerk.schedule(0, 0).is_some());
    clerk.outputs_committed(&[own(0, 1, digest(BAD))], 1);
    assert!(clerk.self_suspected());
    assert!(clerk.schedule(0, 0).is_none(), "every schedule withdrawn");
    let effects = clerk.step(1);
    assert_eq!(alarms(&effects), vec![AlarmKind::SelfDivergence]);
    assert!(effects.contains(&Effect::SelfDivergenceDetected {
        partition: 0,
        offset: 1
    }));
    assert!(publishes(&effects).is_empty());
    clerk.outputs_committed(&[own(0, 2, digest(GOOD))], 2);
    assert!(
        !clerk.table(0).slot(2).expect("slot").advertised(),
        "never advertises again"
    );
    for id in [1, 2, 3] {
        peer(&mut peers, id).send_copies(&mut clerk, &[(0, 2, digest(GOOD))], 2);
    }
    assert!(clerk.schedule(0, 2).is_none());
    assert!(publishes(&clerk.step(1_000)).is_empty());
    clerk.check_invariants().expect("consistent");
}

/// covers: clerk.OwnOutputDivergesFromAgreement
#[test]
fn a_published_record_checks_a_late_own_output() {
    let mut clerk = clerk(config(2), InstanceStatus::Recovering);
    clerk.outcome_consumed(outcome(0, digest(GOOD), 0, 0), 0);
    clerk.retained_outputs_loaded(&[own(0, 0, digest(BAD))], 1);
    assert!(clerk.self_suspected());
    assert!(clerk.step(1).contains(&Effect::SelfDivergenceDetected {
        partition: 0,
        offset: 0
    }));
}

/// covers: clerk.SecondQuorumIsSplitBrain, clerk.NoPublicationOnHaltedPartition
#[test]
fn a_second_quorum_halts_the_partition_and_raises_an_alarm() {
    let config = ClerkConfig {
        required_copies: 2,
        ..config(3)
    };
    let (mut clerk, mut peers) = ready_with_peers(config);
    for id in [0, 1] {
        peer(&mut peers, id).send_copies(&mut clerk, &[(0, 4, digest(GOOD))], 0);
    }
    clerk.outputs_committed(&[own(0, 3, digest(GOOD))], 0);
    peer(&mut peers, 0).send_copies(&mut clerk, &[(0, 3, digest(GOOD))], 0);
    assert!(clerk.schedule(0, 3).is_some());
    peer(&mut peers, 2).send_copies(&mut clerk, &[(0, 4, digest(BAD))], 0);
    clerk.outputs_committed(&[own(0, 4, digest(BAD))], 1);
    let effects = clerk.step(1);
    assert_eq!(alarms(&effects), vec![AlarmKind::SplitBrain]);
    assert!(effects.contains(&Effect::PartitionHalted { partition: 0 }));
    assert!(!clerk.self_suspected(), "its own digest has a quorum too");
    assert_eq!(
        clerk.table(0).slot(4).expect("slot").status(),
        SlotStatus::SplitBrain
    );
    assert!(clerk.table(0).publication_halted());
    assert!(
        clerk.schedule(0, 3).is_none(),
        "the partition publishes nothing more"
    );
    clerk.outputs_committed(&[own(0, 5, digest(GOOD))], 2);
    peer(&mut peers, 1).send_copies(&mut clerk, &[(0, 5, digest(GOOD))], 2);
    assert!(clerk.schedule(0, 5).is_none());
    assert!(publishes(&clerk.step(1_000)).is_empty());
    clerk.check_invariants().expect("consistent");
}

/// covers: clerk.UnsettledTableBounded, clerk.CopyBeyondLookaheadDropped
#[test]
fn a_flood_of_copies_never_grows_the_table_past_its_bound() {
    let config = ClerkConfig {
        max_unagreed_records: 16,
        copy_lookahead: 16,
        ..config(0)
    };
    let (mut clerk, mut peers) = ready_with_peers(config);
    let flood: Vec<_> = (0..1_000)
        .map(|offset| (0, offset, digest(offset as u64)))
        .collect();
    peer(&mut peers, 1).send_copies(&mut clerk, &flood, 0);
    assert_eq!(
        clerk.table(0).len(),
        16,
        "offsets 0..=15 are within the horizon"
    );
    assert_eq!(clerk.table(0).dropped_copies(), 984);
    clerk.check_invariants().expect("bounded");
}

/// covers: clerk.OneAgreedDigestPerOffset, clerk.WhoPublishesNeverAffectsWhat
#[test]
fn a_cluster_with_one_faulty_instance_agrees_on_one_digest_and_masks_the_fault() {
    let mut cluster = Cluster::new((0..4).map(config).collect());
    cluster.settle();
    for offset in 0..20 {
        for node in 0..4 {
            let faulty = node == 0 && offset % 3 == 0;
            let d = if faulty {
                digest(1_000 + offset as u64)
            } else {
                digest(offset as u64)
            };
            cluster.commit(node, &[own(0, offset, d)]);
        }
        cluster.advance(1);
    }
    cluster.advance(200);
    assert!(cluster.nodes[0].self_suspected());
    for node in 1..4 {
        assert_eq!(
            cluster.nodes[node].suspected_peers(),
            vec![(0, SuspicionReason::DivergentCopy)]
        );
        assert!(!cluster.nodes[node].self_suspected());
    }
    let mut seen = std::collections::BTreeMap::new();
    for order in &cluster.outcome_log {
        assert!(order.matching_copies >= 3);
        assert_eq!(
            order.digest,
            digest(order.offset as u64),
            "only correct outputs are published"
        );
        seen.entry(order.offset).or_insert(order.digest);
    }
    assert_eq!(seen.len(), 20, "every record published");
    let published_by: std::collections::BTreeSet<u32> = cluster
        .outcome_log
        .iter()
        .map(|order| order.publisher_id)
        .collect();
    assert!(
        !published_by.contains(&0),
        "the faulty instance never publishes"
    );
}

/// covers: clerk.WhoPublishesNeverAffectsWhat
#[test]
fn when_the_primary_publishes_nothing_a_backup_publishes_the_same_record() {
    let mut cluster = Cluster::new((0..4).map(config).collect());
    cluster.settle();
    cluster.advance(10); // heartbeats: every peer live
    cluster.mute.insert(0);
    for node in 0..4 {
        cluster.commit(node, &[own(0, 0, digest(7))]);
    }
    cluster.settle();
    let first: Vec<_> = cluster
        .effects_of(0)
        .filter_map(|e| match e {
            Effect::Publish(order) => Some(order.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(first.len(), 1);
    assert!(cluster.outcome_log.is_empty());
    cluster.advance(50);
    assert_eq!(cluster.outcome_log.len(), 1);
    let backup = &cluster.outcome_log[0];
    assert_eq!(backup.publisher_id, 1);
    assert_eq!(
        (backup.offset, backup.digest),
        (first[0].offset, first[0].digest)
    );
    cluster.advance(1_000);
    assert_eq!(
        cluster.outcome_log.len(),
        1,
        "the others saw it and stood down"
    );
    for node in 0..4 {
        assert!(
            cluster.nodes[node].table(0).slot(0).is_none(),
            "settled and pruned everywhere"
        );
    }
}
