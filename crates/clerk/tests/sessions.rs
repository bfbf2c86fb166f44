//! Links and sessions: handshake, inbound checks, liveness, reconnects,
//! packing and queues.

mod support;

use clerk::{
    ClerkConfig, Effect, HandshakeRejection, InstanceStatus, LinkDirection, LinkStatus,
    OutcomeIntake, OutcomeRecord, SlotStatus,
};
use prost::Message;
use protocol::peer::{
    Challenge, FrameAuthenticator, FrameBody, FrameHeader, Hello, PROTOCOL_VERSION, RejectionReason,
};
use support::*;

fn rejections(effects: &[Effect]) -> Vec<RejectionReason> {
    let frame = |effect: &Effect| match effect {
        Effect::FrameRejected { reason, .. } => Some(*reason),
        _ => None,
    };
    effects.iter().filter_map(frame).collect()
}

/// covers: clerk.ClerkInitialisedAtProcessStart
#[test]
fn at_start_no_peer_is_live_or_suspected_and_every_peer_is_dialled() {
    let mut clerk = clerk(config(2), InstanceStatus::Starting);
    for peer in [0, 1, 3] {
        let view = clerk.peer_view(peer).expect("a view per peer");
        assert!(!view.live && !view.suspected);
        assert_eq!(clerk.dialer(peer).expect("dialer").backoff, 50);
    }
    assert!(clerk.peer_view(2).is_none(), "no view of itself");
    assert_eq!(clerk.table(0).applied_offset(), -1);
    let dialled: Vec<u32> = clerk
        .step(0)
        .iter()
        .filter_map(|effect| match effect {
            Effect::Dial { peer, .. } => Some(*peer),
            _ => None,
        })
        .collect();
    assert_eq!(dialled, vec![0, 1, 3], "dialled while starting too");
    assert!(clerk.step(10).is_empty(), "one link per dialer at a time");
}

/// covers: clerk.AcceptorIssuesChallenge
#[test]
fn an_accepted_connection_gets_a_challenge_with_the_fresh_nonce() {
    let mut clerk = clerk(config(0), InstanceStatus::Recovering);
    let link = clerk.inbound_accepted(nonce(9), 5).expect("accepted");
    let view = clerk.link(link).expect("open");
    assert_eq!(
        (view.direction, view.status, view.peer_id),
        (LinkDirection::Inbound, LinkStatus::Connecting, None)
    );
    let challenge = clerk
        .step(5)
        .into_iter()
        .find_map(|effect| match effect {
            Effect::SendHandshake { link: on, bytes } if on == link => {
                Some(Challenge::decode(&bytes[4..]).expect("challenge"))
            }
            _ => None,
        })
        .expect("a challenge");
    assert_eq!(
        challenge,
        Challenge {
            cluster_id: "tribunal".into(),
            acceptor_id: 0,
            nonce: nonce(9).to_vec()
        }
    );
    clerk.set_status(InstanceStatus::Halted, 6);
    assert_eq!(clerk.inbound_accepted(nonce(10), 6), None);
}

/// covers: clerk.DialerSendsHelloOnChallenge
#[test]
fn the_dialer_answers_the_challenge_with_a_hello_bound_to_its_nonce() {
    let mut clerk = clerk(config(1), InstanceStatus::Recovering);
    let (link, hello, _) = establish_outbound(&mut clerk, 3, 77, 20);
    assert_eq!(
        (hello.sender_id, hello.receiver_id, hello.sequence),
        (1, 3, 1)
    );
    assert_eq!(hello.session_nonce, nonce(77).to_vec());
    assert!(authenticator().mac_valid(&hello));
    assert_eq!(
        Hello::decode(hello.body.as_slice())
            .expect("hello")
            .protocol_version,
        PROTOCOL_VERSION
    );
    let view = clerk.link(link).expect("open");
    assert_eq!(view.status, LinkStatus::Established);
    assert_eq!(view.next_send_sequence, 2);
}

/// covers: clerk.MismatchedChallengeRejected
#[test]
fn a_challenge_from_the_wrong_acceptor_or_cluster_closes_the_link() {
    for (challenge, reason) in [
        (
            Challenge {
                cluster_id: "tribunal".into(),
                acceptor_id: 2,
                nonce: nonce(1).to_vec(),
            },
            RejectionReason::UnknownSender,
        ),
        (
            Challenge {
                cluster_id: "other".into(),
                acceptor_id: 3,
                nonce: nonce(1).to_vec(),
            },
            RejectionReason::WrongCluster,
        ),
        (
            Challenge {
                cluster_id: "tribunal".into(),
                acceptor_id: 3,
                nonce: vec![1, 2],
            },
            RejectionReason::Undecodable,
        ),
    ] {
        let mut clerk = clerk(config(1), InstanceStatus::Ready);
        let link = clerk
            .step(0)
            .iter()
            .find_map(|effect| match effect {
                Effect::Dial { link, peer: 3 } => Some(*link),
                _ => None,
            })
            .expect("dial");
        clerk.bytes_received(link, &wire(&challenge), 1);
        assert_eq!(rejections(&clerk.step(1)), vec![reason]);
        assert!(clerk.link(link).is_none());
    }
}

/// covers: clerk.OutOfProtocolFrameRejected
#[test]
fn anything_after_the_challenge_on_an_outbound_link_is_out_of_protocol() {
    let mut clerk = clerk(config(1), InstanceStatus::Ready);
    let (link, _, _) = establish_outbound(&mut clerk, 0, 5, 0);
    clerk.bytes_received(link, &[0, 0, 0, 0], 1);
    assert_eq!(
        rejections(&clerk.step(1)),
        vec![RejectionReason::ProtocolViolation]
    );
    assert!(clerk.link(link).is_none());
}

/// covers: clerk.OutOfProtocolFrameRejected
#[test]
fn copies_before_the_hello_a_second_hello_or_a_misaddressed_frame_are_out_of_protocol() {
    let mut clerk = clerk(config(0), InstanceStatus::Ready);
    let link = clerk.inbound_accepted(nonce(1), 0).expect("accepted");
    let mut early = FakePeer {
        id: 1,
        receiver: 0,
        link,
        nonce: nonce(1),
        next_sequence: 1,
        authenticator: authenticator(),
    };
    early.send_copies(&mut clerk, &[(0, 0, digest(1))], 0);
    assert_eq!(
        rejections(&clerk.step(0)),
        vec![RejectionReason::ProtocolViolation]
    );
    assert!(clerk.table(0).is_empty());

    let mut peer = FakePeer::connect(&mut clerk, 1, 2, 0);
    let hello = FrameBody::Hello(Hello {
        protocol_version: PROTOCOL_VERSION,
    });
    peer.send(&mut clerk, &hello, 0);
    assert_eq!(
        rejections(&clerk.step(0)),
        vec![RejectionReason::ProtocolViolation]
    );

    let mut misaddressed = FakePeer::connect(&mut clerk, 1, 3, 0);
    misaddressed.receiver = 2;
    misaddressed.heartbeat(&mut clerk, 0);
    assert_eq!(
        rejections(&clerk.step(0)),
        vec![RejectionReason::ProtocolViolation]
    );

    let link = clerk.inbound_accepted(nonce(4), 0).expect("accepted");
    let mut old_version = FakePeer {
        link,
        nonce: nonce(4),
        ..misaddressed
    };
    old_version.receiver = 0;
    old_version.send(
        &mut clerk,
        &FrameBody::Hello(Hello {
            protocol_version: 0,
        }),
        0,
    );
    assert_eq!(
        rejections(&clerk.step(0)),
        vec![RejectionReason::ProtocolViolation]
    );
    assert_eq!(
        clerk.counters().frames_rejected[&RejectionReason::ProtocolViolation],
        4
    );
}

/// covers: clerk.HelloEstablishesInboundSession
#[test]
fn a_hello_establishes_the_session_without_making_the_peer_live_and_replaces_an_older_one() {
    let mut clerk = clerk(config(0), InstanceStatus::Ready);
    let first = FakePeer::connect(&mut clerk, 2, 1, 10);
    let view = clerk.link(first.link).expect("open");
    assert_eq!(
        (view.status, view.peer_id, view.last_recv_sequence),
        (LinkStatus::Established, Some(2), 1)
    );
    assert!(
        !clerk.peer_view(2).expect("view").live,
        "a hello is no sign of readiness"
    );
    let other = FakePeer::connect(&mut clerk, 3, 2, 10);
    let second = FakePeer::connect(&mut clerk, 2, 3, 11);
    assert!(
        clerk.link(first.link).is_none(),
        "the peer reconnected: the older session goes"
    );
    assert!(clerk.link(second.link).is_some() && clerk.link(other.link).is_some());
    assert!(
        clerk
            .step(11)
            .contains(&Effect::CloseLink { link: first.link })
    );
}

/// covers: clerk.SessionFrameAccepted
#[test]
fn copies_and_heartbeats_make_the_peer_live_and_copies_enter_the_table() {
    let mut clerk = clerk(config(0), InstanceStatus::Ready);
    let mut peer = FakePeer::connect(&mut clerk, 1, 1, 0);
    peer.heartbeat(&mut clerk, 40);
    let view = clerk.peer_view(1).expect("view");
    assert!(view.live);
    assert_eq!(view.last_authenticated_at, 40);
    assert_eq!(view.applied_offsets, vec![0]);
    peer.send_copies(
        &mut clerk,
        &[(0, 3, digest(3)), (0, 4, digest(4)), (7, 1, digest(1))],
        50,
    );
    assert_eq!(
        clerk.table(0).slot(3).expect("slot").copy_from(1),
        Some(digest(3))
    );
    assert_eq!(
        clerk.table(0).slot(4).expect("slot").copy_from(1),
        Some(digest(4))
    );
    assert_eq!(clerk.counters().copies_for_unknown_partitions, 1);
    assert_eq!(clerk.peer_view(1).expect("view").last_authenticated_at, 50);
    assert_eq!(clerk.link(peer.link).expect("open").last_recv_sequence, 3);
}

/// covers: clerk.PeerLivenessLapses
#[test]
fn a_peer_silent_for_the_liveness_timeout_is_no_longer_live() {
    let mut clerk = clerk(config(0), InstanceStatus::Ready);
    let mut peer = FakePeer::connect(&mut clerk, 1, 1, 0);
    peer.heartbeat(&mut clerk, 100);
    clerk.step(1_099);
    assert!(clerk.peer_view(1).expect("view").live);
    clerk.step(1_100);
    assert!(!clerk.peer_view(1).expect("view").live);
}

/// covers: clerk.ReplayedFrameRejected, clerk.SequenceStrictlyIncreasesPerSession
#[test]
fn a_replayed_frame_closes_the_link_and_records_nothing() {
    let mut clerk = clerk(config(0), InstanceStatus::Ready);
    let mut peer = FakePeer::connect(&mut clerk, 1, 1, 0);
    let frame = peer.frame(&copies_body(&[(0, 1, digest(1))]));
    clerk.bytes_received(peer.link, &frame, 1);
    // A recorded frame replayed on a new session of the same peer.
    let again = FakePeer::connect(&mut clerk, 1, 2, 2);
    clerk.bytes_received(again.link, &frame, 2);
    assert_eq!(rejections(&clerk.step(2)), vec![RejectionReason::Replayed]);
    assert!(clerk.link(again.link).is_none());
    // And on its own session.
    let mut third = FakePeer::connect(&mut clerk, 1, 3, 3);
    let replayed = third.frame(&copies_body(&[(0, 2, digest(2))]));
    clerk.bytes_received(third.link, &replayed, 3);
    clerk.bytes_received(third.link, &replayed, 3);
    assert_eq!(rejections(&clerk.step(3)), vec![RejectionReason::Replayed]);
    assert_eq!(clerk.table(0).slot(2).expect("slot").copies().len(), 1);
}

/// covers: clerk.ForgedFrameRejected, clerk.WrongClusterFrameRejected, clerk.UnknownSenderFrameRejected
#[test]
fn forged_foreign_and_unknown_frames_close_the_link_and_are_counted() {
    let mut clerk = clerk(config(0), InstanceStatus::Ready);
    let body = copies_body(&[(0, 1, digest(1))]);
    let header = |sender_id, session| FrameHeader {
        sender_id,
        receiver_id: 0,
        session_nonce: nonce(session),
        sequence: 2,
    };
    let forger =
        FrameAuthenticator::new("tribunal", b"not the cluster key, but 32 long").expect("key");
    let foreign = FrameAuthenticator::new("elsewhere", KEY).expect("key");
    let cases = [
        (forger.seal(header(1, 1), &body), RejectionReason::BadMac),
        (
            foreign.seal(header(1, 2), &body),
            RejectionReason::WrongCluster,
        ),
        (
            authenticator().seal(header(2, 3), &body),
            RejectionReason::UnknownSender,
        ),
    ];
    for (session, (frame, reason)) in (1..).zip(cases) {
        let peer = FakePeer::connect(&mut clerk, 1, session, 0);
        clerk.bytes_received(peer.link, &wire(&frame), 1);
        let effects = clerk.step(1);
        assert_eq!(rejections(&effects), vec![reason]);
        assert!(effects.contains(&Effect::FrameRejected {
            link: peer.link,
            peer: Some(1),
            reason
        }));
        assert!(clerk.link(peer.link).is_none());
        assert_eq!(clerk.counters().frames_rejected[&reason], 1);
    }
    assert!(clerk.table(0).is_empty(), "no rejected copy was recorded");
}

/// covers: clerk.OversizedFrameRejected, clerk.UndecodableFrameRejected
#[test]
fn oversized_and_undecodable_frames_close_the_link() {
    let config = ClerkConfig {
        max_peer_frame_bytes: 4_096,
        ..config(0)
    };
    let mut clerk = clerk(config, InstanceStatus::Ready);
    let peer = FakePeer::connect(&mut clerk, 1, 1, 0);
    clerk.bytes_received(peer.link, &4_097u32.to_be_bytes(), 1);
    let peer2 = FakePeer::connect(&mut clerk, 1, 2, 1);
    clerk.bytes_received(peer2.link, &[0, 0, 0, 2, 0xff, 0xff], 1);
    assert_eq!(
        rejections(&clerk.step(1)),
        vec![RejectionReason::Oversized, RejectionReason::Undecodable]
    );
}

/// covers: clerk.LinkIoFailureClosesLink, clerk.DialerBacksOffAfterClose
#[test]
fn a_failed_connection_closes_and_the_dialer_waits_its_backoff() {
    let mut clerk = clerk(config(0), InstanceStatus::Ready);
    let (link, _, _) = establish_outbound(&mut clerk, 1, 1, 0);
    clerk.link_io_failed(link, 10);
    assert!(clerk.link(link).is_none());
    let dialer = clerk.dialer(1).expect("dialer");
    assert!((60..=70).contains(&dialer.next_attempt_at), "{dialer:?}");
    assert_eq!(dialer.backoff, 100);
    let redial = |effects: Vec<Effect>| {
        effects
            .iter()
            .any(|e| matches!(e, Effect::Dial { peer: 1, .. }))
    };
    assert!(!redial(clerk.step(59)));
    assert!(redial(clerk.step(70)));
    clerk.link_io_failed(link, 71);
    assert!(
        clerk.step(71).is_empty(),
        "a stale failure report is ignored"
    );
}

/// covers: clerk.ClosedLinkReleasesOwedCopies, clerk.ReconnectResendsUnagreedCopies
#[test]
fn a_reconnect_resends_every_advertised_copy_still_collecting() {
    let mut clerk = clerk(config(0), InstanceStatus::Ready);
    let (link, _, _) = establish_outbound(&mut clerk, 1, 1, 0);
    clerk.link_io_failed(link, 0);
    clerk.outputs_committed(
        &[
            own(0, 0, digest(0)),
            own(0, 1, digest(1)),
            own(0, 2, digest(2)),
        ],
        1,
    );
    let (link, _, _) = establish_outbound(&mut clerk, 2, 2, 1);
    clerk.step(1);
    // Record 1 reaches agreement: it is no longer re-sent.
    let mut peer2 = FakePeer::connect(&mut clerk, 2, 10, 1);
    let mut peer3 = FakePeer::connect(&mut clerk, 3, 11, 1);
    peer2.send_copies(&mut clerk, &[(0, 1, digest(1))], 1);
    peer3.send_copies(&mut clerk, &[(0, 1, digest(1))], 1);
    assert_eq!(
        clerk.table(0).slot(1).expect("slot").status(),
        SlotStatus::Agreed
    );
    clerk.link_io_failed(link, 2);
    let (relink, _, effects) = establish_outbound(&mut clerk, 2, 3, 500);
    let resent: Vec<i64> = copies_sent(&effects, relink, 0, 2, nonce(3))
        .iter()
        .map(|copy| copy.offset)
        .collect();
    assert_eq!(resent, vec![0, 2]);
    let (peer1_link, _, effects) = establish_outbound(&mut clerk, 1, 4, 1_000);
    let resent = copies_sent(&effects, peer1_link, 0, 1, nonce(4));
    assert_eq!(resent.len(), 2, "every reconnect resends");
}

/// covers: clerk.CopiesPackedIntoFrame, clerk.OutboundQueueBounded
#[test]
fn owed_copies_are_packed_many_per_frame_and_wait_while_the_queue_is_full() {
    let config = ClerkConfig {
        max_peer_frame_bytes: 128 + 8 + 3 * 47,
        max_peer_queue_frames: 2,
        ..config(0)
    };
    let mut clerk = clerk(config, InstanceStatus::Ready);
    assert_eq!(clerk.config().copies_per_frame(), 3);
    let (link, _, _) = establish_outbound(&mut clerk, 1, 1, 0);
    clerk.step(0);
    let outputs: Vec<_> = (0..10)
        .rev()
        .map(|offset| own(0, offset, digest(offset as u64)))
        .collect();
    clerk.outputs_committed(&outputs, 1);
    let effects = clerk.step(1);
    let bodies = sent_bodies(&effects, link, 0, 1, nonce(1));
    let sizes: Vec<usize> = bodies
        .iter()
        .map(|body| match body {
            FrameBody::Copies(batch) => batch.len(),
            other => panic!("unexpected {other:?}"),
        })
        .collect();
    assert_eq!(sizes, vec![3, 3], "two frames fill the queue");
    let view = clerk.link(link).expect("open");
    assert_eq!((view.queued_frames, view.owed_copies), (2, 4));
    clerk.check_invariants().expect("bounded");
    assert!(clerk.step(2).is_empty(), "no room, no frame, no heartbeat");
    clerk.frame_flushed(link);
    let effects = clerk.step(3);
    let offsets: Vec<i64> = copies_sent(&effects, link, 0, 1, nonce(1))
        .iter()
        .map(|copy| copy.offset)
        .collect();
    assert_eq!(offsets, vec![6, 7, 8], "in (partition, offset) order");
}

/// covers: clerk.HeartbeatSentWhileReady
#[test]
fn an_idle_link_of_a_ready_instance_carries_heartbeats() {
    let mut recovering = clerk(config(0), InstanceStatus::Recovering);
    let (link, _, _) = establish_outbound(&mut recovering, 1, 1, 0);
    assert!(sent_bodies(&recovering.step(1_000), link, 0, 1, nonce(1)).is_empty());
    recovering.set_status(InstanceStatus::Ready, 1_000);
    let bodies = sent_bodies(&recovering.step(1_000), link, 0, 1, nonce(1));
    assert!(
        matches!(bodies.as_slice(), [FrameBody::Heartbeat(h)] if h.applied_offsets == vec![-1])
    );
    assert!(sent_bodies(&recovering.step(1_249), link, 0, 1, nonce(1)).is_empty());
    assert_eq!(
        sent_bodies(&recovering.step(1_250), link, 0, 1, nonce(1)).len(),
        1
    );
}

/// covers: clerk.HaltWithdrawsLinksAndSchedules
#[test]
fn halting_closes_every_link_withdraws_schedules_and_stops_dialling() {
    let mut cluster = Cluster::new((0..4).map(config).collect());
    cluster.settle();
    cluster.mute.insert(0);
    let outputs = [own(0, 0, digest(0))];
    for node in 0..4 {
        cluster.commit(node, &outputs);
    }
    cluster.settle();
    assert!(
        cluster.nodes[1].schedule(0, 0).is_some(),
        "node 1 backs up node 0"
    );
    let node = &mut cluster.nodes[1];
    node.set_status(InstanceStatus::Halted, cluster.now);
    assert!(node.schedule(0, 0).is_none());
    assert_eq!(node.links().count(), 0);
    let effects = node.step(cluster.now + 10_000);
    assert!(
        effects
            .iter()
            .all(|effect| matches!(effect, Effect::CloseLink { .. }))
    );
    assert_eq!(effects.len(), 6, "three outbound and three inbound links");
}

/// covers: clerk.HandshakeTimesOut
#[test]
fn a_silent_inbound_link_is_closed_at_the_handshake_timeout_and_not_before() {
    let mut clerk = clerk(config(2), InstanceStatus::Ready);
    let timeout = clerk.config().handshake_timeout;
    let link = clerk.inbound_accepted(nonce(1), 100).expect("accepting");
    let before = clerk.step(100 + timeout - 1);
    assert!(clerk.counters().handshakes_rejected.is_empty());
    assert!(!before.contains(&Effect::CloseLink { link }));
    assert_eq!(
        clerk.link(link).map(|view| view.status),
        Some(LinkStatus::Connecting)
    );

    let at = clerk.step(100 + timeout);
    assert!(at.contains(&Effect::HandshakeRejected {
        link: Some(link),
        peer: None,
        reason: HandshakeRejection::Timeout,
    }));
    assert!(at.contains(&Effect::CloseLink { link }));
    assert!(clerk.link(link).is_none());
    assert_eq!(
        clerk.counters().handshakes_rejected[&HandshakeRejection::Timeout],
        1
    );
}

/// covers: clerk.HandshakeTimesOut
#[test]
fn a_stalled_outbound_link_times_out_and_its_dialer_backs_off() {
    let mut clerk = clerk(config(2), InstanceStatus::Ready);
    let timeout = clerk.config().handshake_timeout;
    clerk.step(0);
    let dialled = clerk.dialer(0).expect("dialer").link.expect("dialling");
    let effects = clerk.step(timeout);
    assert!(effects.contains(&Effect::HandshakeRejected {
        link: Some(dialled),
        peer: Some(0),
        reason: HandshakeRejection::Timeout,
    }));
    assert!(clerk.link(dialled).is_none());
    let dialer = clerk.dialer(0).expect("dialer");
    assert!(
        dialer.next_attempt_at > timeout,
        "backs off, no instant redial"
    );
    assert_ne!(dialer.link, Some(dialled));
}

/// covers: clerk.HandshakeTimesOut
#[test]
fn established_links_outlive_the_handshake_timeout() {
    let mut clerk = clerk(config(2), InstanceStatus::Ready);
    let timeout = clerk.config().handshake_timeout;
    let peer = FakePeer::connect(&mut clerk, 1, 1, 0);
    let (outbound, _, _) = establish_outbound(&mut clerk, 0, 7, 0);
    let effects = clerk.step(timeout * 3);
    for link in [peer.link, outbound] {
        assert!(!effects.iter().any(|effect| matches!(
            effect,
            Effect::HandshakeRejected { link: Some(on), .. } | Effect::CloseLink { link: on }
                if *on == link
        )));
        assert_eq!(
            clerk.link(link).map(|view| view.status),
            Some(LinkStatus::Established)
        );
    }
}

/// covers: clerk.ExcessHalfOpenLinkRefused
#[test]
fn the_inbound_link_beyond_max_inbound_connecting_is_refused() {
    let mut clerk = clerk(config(2), InstanceStatus::Ready);
    let bound = clerk.config().max_inbound_connecting;
    assert_eq!(bound, 16);
    // An established inbound link does not count as half-open.
    FakePeer::connect(&mut clerk, 1, 100, 0);
    let half_open: Vec<_> = (0..u64::from(bound))
        .map(|n| {
            clerk
                .inbound_accepted(nonce(n), 0)
                .expect("within the bound")
        })
        .collect();
    clerk.step(0);
    assert_eq!(clerk.inbound_accepted(nonce(99), 0), None);
    assert!(clerk.step(0).contains(&Effect::HandshakeRejected {
        link: None,
        peer: None,
        reason: HandshakeRejection::TooManyHalfOpen,
    }));
    assert_eq!(
        clerk.counters().handshakes_rejected[&HandshakeRejection::TooManyHalfOpen],
        1
    );
    // Once one half-open link closes, another is accepted.
    clerk.link_io_failed(half_open[0], 1);
    assert!(clerk.inbound_accepted(nonce(98), 1).is_some());
}

/// The shell steps after each input and at `next_deadline` instead of on a
/// fixed tick: before the deadline a step has no timed work, at it it has.
#[test]
fn step_has_timed_work_exactly_from_the_next_deadline() {
    let two = ClerkConfig {
        instance_count: 2,
        required_copies: 2,
        ..config(1)
    };
    let mut clerk = clerk(two, InstanceStatus::Ready);
    assert_eq!(clerk.next_deadline(), Some(0), "the dialer is due at start");
    assert!(matches!(clerk.step(0)[..], [Effect::Dial { peer: 0, .. }]));

    let timeout = clerk.config().handshake_timeout;
    assert_eq!(clerk.next_deadline(), Some(timeout), "the dial times out");
    assert!(clerk.step(timeout - 1).is_empty());
    assert!(clerk.step(timeout).iter().any(|effect| matches!(
        effect,
        Effect::HandshakeRejected {
            reason: HandshakeRejection::Timeout,
            ..
        }
    )));

    let retry = clerk.dialer(0).expect("dialer").next_attempt_at;
    assert!(retry > timeout);
    assert_eq!(clerk.next_deadline(), Some(retry), "the dialer backs off");
    assert!(clerk.step(retry - 1).is_empty());
    let (link, _, _) = establish_outbound(&mut clerk, 0, 5, retry);
    let mut peer = FakePeer::connect(&mut clerk, 0, 6, retry);
    peer.heartbeat(&mut clerk, retry);
    let heartbeat = clerk.config().heartbeat_interval;
    assert_eq!(clerk.next_deadline(), Some(retry + heartbeat));

    // Agreed with the live primary's copy: this backup publishes one step
    // delay later unless the primary's publication shows up first.
    peer.send_copies(&mut clerk, &[(0, 0, digest(0))], retry);
    clerk.outputs_committed(&[own(0, 0, digest(0))], retry);
    assert!(!clerk.step(retry).is_empty(), "the own copy goes out");
    let delay = clerk.config().publish_step_delay;
    assert_eq!(clerk.next_deadline(), Some(retry + delay));
    assert!(clerk.step(retry + delay - 1).is_empty());
    assert_eq!(publishes(&clerk.step(retry + delay)).len(), 1);
    let published = OutcomeRecord {
        partition: 0,
        offset: 0,
        digest: digest(0),
        publisher_id: 0,
        outcome_offset: 0,
    };
    assert_eq!(
        clerk.outcome_consumed(published, retry + 60),
        OutcomeIntake::Taken
    );
    clerk.step(retry + 60);

    // From here on only heartbeats, the peer's liveness lapse and the
    // published slot's retention are timed; walk deadline by deadline.
    let liveness = clerk.config().peer_liveness_timeout;
    let retention = clerk.config().published_slot_retention;
    let mut deadlines = Vec::new();
    while let Some(at) = clerk
        .next_deadline()
        .filter(|&at| at <= retry + 2 * liveness)
    {
        assert!(clerk.step(at - 1).is_empty(), "nothing timed before {at}");
        assert_eq!(
            clerk.peer_view(0).expect("view").live,
            at <= retry + liveness
        );
        let effects = clerk.step(at);
        if (at - retry) % heartbeat == 0 {
            let heartbeats = sent_bodies(&effects, link, 1, 0, nonce(5));
            assert!(matches!(heartbeats[..], [FrameBody::Heartbeat(_)]), "{at}");
        }
        deadlines.push(at - retry);
    }
    assert!(!clerk.peer_view(0).expect("view").live, "lapsed");
    assert!(deadlines.contains(&liveness));
    assert!(deadlines.contains(&(60 + retention)));
    assert!(deadlines.contains(&(4 * heartbeat)));
}
