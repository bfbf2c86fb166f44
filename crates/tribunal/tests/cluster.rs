//! End to end: a real four-process Tribunal cluster on a tansu broker
//! (issue 3, section 9). Each test starts its own broker, ports and data
//! root; the tests run one at a time (see `support::SERIAL`), since each
//! cluster is five processes on two cores.
//!
//! Answers are checked byte for byte against an independent model of the
//! inventory domain (`support::Model`), levels on every instance against the
//! same model once the instance has durably applied the whole input log,
//! and the outcome topic record by record.

mod support;

use std::io::{ErrorKind, Read as _, Write as _};
use std::net::TcpStream;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use prost::Message as _;
use protocol::envelope::RecordDigest;
use protocol::peer::{
    Challenge, CopyBatch, CopyEntry, FrameAuthenticator, FrameBody, FrameHeader, Hello, Nonce,
    PROTOCOL_VERSION, encode_length_prefixed,
};
use protocol::records::{CommandPack, PACK_VERSION, Submission};
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer as _, ThreadedProducer};
use serde_json::Value;
use tribunal::cluster::NODE_ALLOCATOR_ENV;
use tribunal::probe::{self, Response};

use support::{
    ALL, Command, DEADLINE, Expected, Model, Options, TestCluster, assert_answer,
    assert_answers_published, command_json, others, post_command, receive, ship, transfer,
};

/// A mix of receives, shipments and transfers over two skus and three
/// warehouses, every one of them accepted when run in order from empty.
fn accepted_script() -> Vec<Command> {
    vec![
        receive("w1", "apple", 10),
        receive("w2", "apple", 5),
        ship("w1", "apple", 3),
        transfer("w1", "w2", "apple", 4),
        receive("w1", "pear", 7),
        transfer("w2", "w3", "apple", 6),
        ship("w3", "apple", 6),
        receive("w3", "pear", 2),
        transfer("w1", "w3", "pear", 7),
        ship("w2", "apple", 3),
    ]
}

/// Runs `commands` through the model and the cluster, spreading them over
/// `nodes`; asserts each answer is the honest one; returns the answers.
fn run_script(
    test: &TestCluster,
    model: &mut Model,
    nodes: &[u32],
    prefix: &str,
    commands: &[Command],
) -> Vec<(String, Response)> {
    commands
        .iter()
        .enumerate()
        .map(|(i, command)| {
            let key = format!("{prefix}-{i}");
            let expected = model.apply(command);
            let answer = test.submit(nodes[i % nodes.len()], &key, command);
            assert_answer(&answer, &key, &expected);
            (key, answer)
        })
        .collect()
}

/// Resubmits every answered key with its command to each of `nodes` and
/// asserts the answer is byte-identical to the first one.
fn assert_duplicates_identical(
    test: &TestCluster,
    nodes: &[u32],
    answered: &[(String, Response)],
    commands: &[Command],
) {
    for ((key, first), command) in answered.iter().zip(commands) {
        for &node in nodes {
            let again = test.submit(node, key, command);
            assert_eq!(again.status, first.status, "{key} on node {node}");
            assert_eq!(again.body, first.body, "{key} on node {node}");
        }
    }
}

/// covers: core.CorrectInstancesAgree, core.AppliedNeverAheadOfConsumed, clerk.AgreedOutputsWrittenToOutcomeTopic
#[test]
fn an_acknowledged_command_is_applied_exactly_once_on_every_instance() {
    let test = TestCluster::start(Options::default());
    let mut model = Model::default();
    let script = accepted_script();
    let mut answers = Vec::new();
    for (i, command) in script.iter().enumerate() {
        let key = format!("once-{i}");
        let expected = model.apply(command);
        let answer = test.submit(ALL[i % ALL.len()], &key, command);
        assert_answer(&answer, &key, &expected);
        answers.push((key, answer));
        test.assert_applied_not_ahead_of_consumed(&ALL);
    }
    test.settle(&ALL, &ALL, &mut model);

    // Repeats, on every node: the first answer again, nothing applied twice.
    assert_duplicates_identical(&test, &ALL, &answers, &script);
    let marker = test.settle(&ALL, &ALL, &mut model);
    test.assert_applied_not_ahead_of_consumed(&ALL);
    test.assert_nobody_suspected(&ALL);

    let publications = test.checked_publications(marker, 3, &ALL);
    assert_answers_published(&publications, &answers);
}

/// A node gets each setting of `NODE_ALLOCATOR_ENV`, unless its starter's
/// environment sets that variable itself: then the node inherits that value.
#[test]
fn every_node_process_starts_with_the_node_allocator_settings() {
    let test = TestCluster::start(Options::default());
    for instance in ALL {
        let pid = test.cluster.pid(instance).expect("the node runs");
        let environ = std::fs::read(format!("/proc/{pid}/environ")).expect("readable environ");
        for (name, default) in NODE_ALLOCATOR_ENV {
            let value = std::env::var(name).unwrap_or_else(|_| default.to_owned());
            let wanted = format!("{name}={value}");
            assert!(
                environ
                    .split(|byte| *byte == 0)
                    .any(|entry| entry == wanted.as_bytes()),
                "node {instance} started without {wanted}"
            );
        }
    }
}

/// covers: core.CorrectInstancesAgree
#[test]
fn a_rejected_command_changes_nothing_on_any_instance() {
    let test = TestCluster::start(Options::default());
    let mut model = Model::default();
    let setup = [receive("w1", "apple", 10), transfer("w1", "w2", "apple", 4)];
    let setup_answers = run_script(&test, &mut model, &ALL, "setup", &setup);
    test.settle(&ALL, &ALL, &mut model);

    let rejected = [
        ship("w1", "apple", 100),
        transfer("w2", "w1", "apple", 50),
        transfer("w1", "w1", "apple", 1),
        ship("w9", "apple", 1),
        ship("w1", "apple", 7),
    ];
    let before = model.clone();
    let answers = run_script(&test, &mut model, &ALL, "rejected", &rejected);
    for (key, answer) in &answers {
        assert_eq!(answer.status, 409, "{key}: {}", answer.text());
    }
    assert_eq!(
        model.levels().collect::<Vec<_>>(),
        before.levels().collect::<Vec<_>>()
    );

    // A key reused for another command is rejected, and applies nothing.
    let (reused_key, _) = &setup_answers[0];
    let reused = test.submit(2, reused_key, &ship("w1", "apple", 1));
    let reused_at = assert_answer(&reused, reused_key, &Expected::key_reused()).offset;

    // Refused at the gateway: a 4xx naming the problem, nothing produced.
    let refusals = [
        (
            r#"{"type":"receive","warehouse":"w1","sku":"apple","quantity":0}"#,
            422,
            "quantity_not_positive",
        ),
        (
            r#"{"type":"ship","warehouse":"w1","sku":"apple","quantity":-3}"#,
            422,
            "quantity_not_positive",
        ),
        (
            r#"{"type":"steal","warehouse":"w1","sku":"apple","quantity":3}"#,
            400,
            "unknown_command",
        ),
        (
            r#"{"type":"receive","warehouse":"w1","sku":"apple"}"#,
            400,
            "invalid_field",
        ),
    ];
    for (i, (command, status, error)) in refusals.into_iter().enumerate() {
        let answer = post_command(test.addr(ALL[i % 4]), &format!("refused-{i}"), command)
            .expect("an answer");
        assert_eq!(answer.status, status, "{command}: {}", answer.text());
        let body: Value = serde_json::from_slice(&answer.body).expect("a JSON error");
        assert_eq!(body["error"], error, "{command}: {}", answer.text());
    }
    let malformed = probe::post_json(test.addr(1), "/v1/commands", r#"{"idempotency_key":"x","#)
        .expect("an answer");
    assert_eq!(malformed.status, 400, "{}", malformed.text());
    let marker = test.settle(&ALL, &ALL, &mut model);
    assert_eq!(
        marker,
        reused_at + 1,
        "a refused submission reached the log"
    );

    // A rejection is answered again, byte for byte, by every node.
    assert_duplicates_identical(&test, &ALL, &answers, &rejected);
    test.settle(&ALL, &ALL, &mut model);
    test.assert_nobody_suspected(&ALL);
}

#[test]
fn a_duplicate_gets_the_same_bytes_from_any_node_also_after_the_first_answerer_was_killed() {
    let mut test = TestCluster::start(Options::default());
    let mut model = Model::default();
    let script = [
        receive("w1", "kiwi", 8),
        ship("w1", "kiwi", 3),
        ship("w1", "kiwi", 50),
        transfer("w1", "w2", "kiwi", 2),
    ];
    // Node 0 answers first; it is also the primary publisher.
    let answers = run_script(&test, &mut model, &[0], "dup", &script);
    test.settle(&[0], &ALL, &mut model);

    test.cluster.kill(0).expect("SIGKILL node 0");
    let survivors = others(&[0]);
    assert_duplicates_identical(&test, &survivors, &answers, &script);
    for (key, first) in &answers {
        for &node in &survivors {
            let looked_up = test.get(node, &format!("/v1/commands/{key}"));
            assert_eq!(looked_up.status, first.status, "GET {key} on node {node}");
            assert_eq!(looked_up.body, first.body, "GET {key} on node {node}");
        }
    }
    test.settle(&survivors, &survivors, &mut model);

    // And from the restarted first answerer too.
    test.cluster.start_instance(0).expect("restart node 0");
    test.wait_ready(&[0]);
    assert_duplicates_identical(&test, &[0], &answers, &script);
    test.settle(&ALL, &ALL, &mut model);
    test.assert_nobody_suspected(&ALL);
}

/// covers: recovery.ProcessCrashKeepsOnlyDurableState, ledger.WatermarkMatchesProgress, core.CorrectInstancesAgree
#[test]
fn after_sigkill_of_one_instance_the_cluster_answers_and_the_instance_catches_up() {
    const KILLED: u32 = 2;
    let mut test = TestCluster::start(Options::default());
    let mut model = Model::default();
    let script = accepted_script();
    let (before_kill, after_kill) = script.split_at(5);
    run_script(&test, &mut model, &ALL, "first", before_kill);
    test.settle(&ALL, &ALL, &mut model);

    // Quiet: what the node reports is what its Ledger holds after SIGKILL.
    let applied = "tribunal_usher_applied_offset{partition=\"0\"}";
    let reported = test
        .metric(KILLED, applied)
        .expect("the node reports its progress");
    let (_, stock_as_of) = test.stock(KILLED, "w1", "apple").expect("a level");
    test.cluster.kill(KILLED).expect("SIGKILL");
    let durable = test.durable_state(KILLED, &model.stocks());
    assert_eq!(
        durable.applied_offset, reported,
        "stored watermark vs reported progress"
    );
    assert_eq!(
        durable.applied_offset, stock_as_of,
        "stored watermark vs served reads"
    );
    let expected_levels: Vec<_> = model
        .levels()
        .map(|(w, s, l)| ((w.clone(), s.clone()), l))
        .collect();
    assert_eq!(
        durable.levels.into_iter().collect::<Vec<_>>(),
        expected_levels
    );

    // Three of four keep answering, and agree.
    let survivors = others(&[KILLED]);
    let answers = run_script(&test, &mut model, &survivors, "second", after_kill);
    let marker = test.settle(&survivors, &survivors, &mut model);
    let publications = test.checked_publications(marker, 3, &ALL);
    assert_answers_published(&publications, &answers);
    for publication in publications
        .values()
        .filter(|p| p.offset > durable.applied_offset)
    {
        assert_ne!(
            publication.publisher_id, KILLED,
            "offset {}",
            publication.offset
        );
        assert_eq!(
            publication.matching_copies, 3,
            "offset {}",
            publication.offset
        );
    }

    // The restarted instance replays what it missed and rejoins.
    test.cluster.start_instance(KILLED).expect("restart");
    test.wait_ready(&[KILLED]);
    test.settle(&ALL, &ALL, &mut model);
    run_script(
        &test,
        &mut model,
        &[KILLED],
        "third",
        &[receive("w4", "plum", 1)],
    );
    test.settle(&[KILLED], &ALL, &mut model);
    test.assert_nobody_suspected(&ALL);
}

/// covers: recovery.SimultaneousRestartLosesNothing, recovery.CrashBeforeGroupCommitLosesNothing, ledger.DurableBeforeAdvertised
#[test]
fn after_all_four_are_killed_and_restarted_nothing_acknowledged_is_lost() {
    let mut test = TestCluster::start(Options::default());
    let mut model = Model::default();
    let script = accepted_script();
    let mut answered: Vec<(String, Command, Response)> =
        run_script(&test, &mut model, &ALL, "calm", &script)
            .into_iter()
            .zip(script.iter().cloned())
            .map(|((key, answer), command)| (key, command, answer))
            .collect();
    test.settle(&ALL, &ALL, &mut model);

    // Two clients submit back to back; every instance is SIGKILLed while
    // they do, so some submissions are in flight (produced, evaluated,
    // perhaps committed somewhere, unanswered) at the crash.
    let acknowledged: Mutex<Vec<(String, Command, Response)>> = Mutex::new(Vec::new());
    let unanswered: Mutex<Vec<(String, Command)>> = Mutex::new(Vec::new());
    let stop = AtomicBool::new(false);
    let addrs = [test.addr(0), test.addr(1)];
    std::thread::scope(|scope| {
        for (client, addr) in addrs.into_iter().enumerate() {
            let (acknowledged, unanswered, stop) = (&acknowledged, &unanswered, &stop);
            scope.spawn(move || {
                for n in 1.. {
                    let key = format!("burst-{client}-{n}");
                    let command = receive("w1", "fig", n);
                    match post_command(addr, &key, &command_json(&command)) {
                        Ok(answer) if answer.status == 200 => {
                            acknowledged
                                .lock()
                                .expect("no panics")
                                .push((key, command, answer));
                        }
                        _ => {
                            unanswered.lock().expect("no panics").push((key, command));
                            return;
                        }
                    }
                    if stop.load(Ordering::Relaxed) {
                        return;
                    }
                }
            });
        }
        let started = Instant::now();
        while acknowledged.lock().expect("no panics").len() < 20 {
            assert!(started.elapsed() < DEADLINE, "the clients got no answers");
            std::thread::sleep(Duration::from_millis(5));
        }
        for instance in ALL {
            test.cluster.kill(instance).expect("SIGKILL");
        }
        stop.store(true, Ordering::Relaxed);
    });
    let acknowledged = acknowledged.into_inner().expect("no panics");
    let unanswered = unanswered.into_inner().expect("no panics");
    eprintln!(
        "{} acknowledged, {} unanswered at the crash",
        acknowledged.len(),
        unanswered.len()
    );

    // Every published record was durable on its publisher, and on as many
    // instances as it had matching copies, before it was advertised.
    let stocks = model.stocks();
    let watermarks: Vec<i64> = ALL
        .iter()
        .map(|&instance| test.durable_state(instance, &stocks).applied_offset)
        .collect();
    let last_acknowledged = acknowledged
        .iter()
        .map(|(_, _, answer)| {
            serde_json::from_slice::<Value>(&answer.body).expect("an envelope")["offset"]
                .as_i64()
                .expect("an offset")
        })
        .max()
        .expect("acknowledged submissions");
    for publication in test
        .checked_publications(last_acknowledged, 3, &ALL)
        .values()
    {
        let durable_on = watermarks
            .iter()
            .filter(|&&w| w >= publication.offset)
            .count();
        assert!(
            durable_on >= publication.matching_copies as usize,
            "offset {} published with {} copies, durable on {durable_on} (watermarks {watermarks:?})",
            publication.offset,
            publication.matching_copies
        );
        assert!(
            watermarks[publication.publisher_id as usize] >= publication.offset,
            "offset {} published by {} before it was durable there ({watermarks:?})",
            publication.offset,
            publication.publisher_id
        );
    }

    for instance in ALL {
        test.cluster.start_instance(instance).expect("restart");
    }
    test.wait_ready(&ALL);

    // Unanswered submissions are retried with their keys: applied once
    // whether or not they were applied before the crash.
    for (key, command) in &unanswered {
        let answer = test.submit_until_answered(&ALL, key, command);
        assert_eq!(answer.status, 200, "{key}: {}", answer.text());
        model.apply(command);
    }
    // Acknowledged ones are applied already: a repeat answers the same.
    answered.extend(acknowledged);
    for (i, (key, command, first)) in answered.iter().enumerate() {
        if key.starts_with("burst-") {
            model.apply(command);
        }
        let again = test.submit(ALL[i % 4], key, command);
        assert_eq!(
            again.body, first.body,
            "{key} after the restart of all four"
        );
    }
    test.settle(&ALL, &ALL, &mut model);
    test.assert_nobody_suspected(&ALL);
}

/// covers: core.CorrectInstancesAgree, clerk.AgreedOutputsWrittenToOutcomeTopic
#[test]
fn an_instance_corrupting_its_outputs_is_suspected_and_never_published() {
    const CORRUPT: u32 = 0;
    // Ready: with nothing evaluated yet, nothing differs.
    let mut test = TestCluster::start(Options {
        extra_args: [(
            CORRUPT,
            vec!["--corrupt-outputs-for-detection-test".to_owned()],
        )]
        .into(),
        ..Options::default()
    });
    let honest = others(&[CORRUPT]);

    // Clients talk to every node, the corrupt one included: whatever
    // answer they get is the honest one (or no answer at all).
    let mut model = Model::default();
    let mut answers = Vec::new();
    for (i, command) in accepted_script().iter().enumerate() {
        let key = format!("honest-{i}");
        let expected = model.apply(command);
        let node = ALL[i % ALL.len()];
        let answer = match test.try_submit(node, &key, &command_json(command)) {
            Ok(answer) if node != CORRUPT || answer.status == 200 || answer.status == 409 => answer,
            Ok(_) | Err(_) => test.submit_until_answered(&honest, &key, command),
        };
        assert_answer(&answer, &key, &expected);
        answers.push((key, answer));
    }
    let marker = test.settle(&honest, &honest, &mut model);

    // Every honest node suspects the corrupt one for a divergent copy.
    for &node in &honest {
        let started = Instant::now();
        loop {
            let health = test.health(node);
            let suspects = health["suspected_peers"].as_array().is_some_and(|peers| {
                peers.iter().any(|peer| {
                    peer["instance_id"] == CORRUPT && peer["reason"] == "divergent_copy"
                })
            });
            if suspects {
                assert_eq!(health["status"], "ready", "node {node}: {health}");
                assert_eq!(health["self_suspected"], false, "node {node}: {health}");
                break;
            }
            assert!(
                started.elapsed() < DEADLINE,
                "node {node} never suspected {CORRUPT}: {health}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    // The corrupt instance itself halts once it sees the agreement.
    test.wait_out_of_service(CORRUPT);

    // Nothing the corrupt instance produced reached the outcome topic.
    let publications = test.checked_publications(marker, 3, &honest);
    assert_answers_published(&publications, &answers);
}

/// covers: clerk.ForgedFrameRejected, clerk.UndecodableFrameRejected, clerk.OversizedFrameRejected
#[test]
fn a_forged_peer_frame_is_rejected_and_counted_and_the_cluster_keeps_agreeing() {
    const TARGET: u32 = 1;
    let test = TestCluster::start(Options::default());
    let mut model = Model::default();
    run_script(&test, &mut model, &ALL, "before", &accepted_script()[..3]);
    let rejected =
        |reason: &str| format!("tribunal_clerk_frames_rejected_total{{reason=\"{reason}\"}}");
    let count = |reason: &str| {
        test.metric(TARGET, &rejected(reason))
            .expect("the counter is exported")
    };
    let (bad_mac, undecodable, oversized) =
        (count("bad_mac"), count("undecodable"), count("oversized"));

    // A well-formed hello claiming to be node 0, sealed with a wrong key;
    // then a copies frame, as from node 0, disagreeing on a published record.
    let forger = |challenge: &Challenge| {
        FrameAuthenticator::new(challenge.cluster_id.clone(), &[0x5a; 32]).expect("a long key")
    };
    for body in [
        FrameBody::Hello(Hello {
            protocol_version: PROTOCOL_VERSION,
        }),
        FrameBody::Copies(CopyBatch::from_iter([CopyEntry {
            partition: 0,
            offset: 0,
            digest: RecordDigest([7; 32]),
        }])),
    ] {
        let (mut stream, challenge) = connect_for_challenge(&test, TARGET);
        let nonce: Nonce = challenge.nonce.as_slice().try_into().expect("a nonce");
        let frame = forger(&challenge).seal(
            FrameHeader {
                sender_id: 0,
                receiver_id: TARGET,
                session_nonce: nonce,
                sequence: 1,
            },
            &body,
        );
        let mut bytes = Vec::new();
        encode_length_prefixed(&frame, &mut bytes);
        stream.write_all(&bytes).expect("send the forged frame");
        assert_closed(stream);
    }
    test.wait_metric(TARGET, &rejected("bad_mac"), |n| n >= bad_mac + 2);

    // Garbage inside a valid length prefix, and a prefix over the bound.
    let (mut stream, _) = connect_for_challenge(&test, TARGET);
    stream
        .write_all(&[0, 0, 0, 8, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff])
        .expect("send");
    assert_closed(stream);
    test.wait_metric(TARGET, &rejected("undecodable"), |n| n > undecodable);
    let (mut stream, _) = connect_for_challenge(&test, TARGET);
    stream.write_all(&[0xff, 0xff, 0xff, 0xff]).expect("send");
    assert_closed(stream);
    test.wait_metric(TARGET, &rejected("oversized"), |n| n > oversized);

    // Nobody is suspected for a forgery, and the cluster still agrees.
    test.assert_nobody_suspected(&ALL);
    run_script(&test, &mut model, &ALL, "after", &accepted_script()[3..]);
    let marker = test.settle(&ALL, &ALL, &mut model);
    test.assert_nobody_suspected(&ALL);
    test.checked_publications(marker, 3, &ALL);
}

/// Connects to `instance`'s peer port and reads its challenge.
fn connect_for_challenge(test: &TestCluster, instance: u32) -> (TcpStream, Challenge) {
    let mut stream =
        TcpStream::connect(test.cluster.peer_addr(instance)).expect("connect to the peer port");
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("a read timeout");
    let mut prefix = [0; 4];
    stream
        .read_exact(&mut prefix)
        .expect("a challenge's length");
    let mut body = vec![0; u32::from_be_bytes(prefix) as usize];
    stream.read_exact(&mut body).expect("a challenge");
    (
        stream,
        Challenge::decode(body.as_slice()).expect("a Challenge"),
    )
}

/// Asserts the node closed the connection (EOF or reset, not a timeout).
fn assert_closed(mut stream: TcpStream) {
    let mut buffer = [0; 64];
    match stream.read(&mut buffer) {
        Ok(0) => {}
        Ok(n) => panic!("the node answered a rejected frame with {n} bytes"),
        Err(error) if error.kind() == ErrorKind::ConnectionReset => {}
        Err(error) => panic!("the connection stayed open: {error}"),
    }
}

/// covers: clerk.AgreedOutputsWrittenToOutcomeTopic, core.CorrectInstancesAgree
#[test]
fn with_two_required_copies_the_cluster_answers() {
    let mut test = TestCluster::start(Options {
        required_copies: 2,
        ..Options::default()
    });
    let mut model = Model::default();
    let script = accepted_script();
    let answers = run_script(&test, &mut model, &ALL, "two", &script[..6]);
    test.settle(&ALL, &ALL, &mut model);
    // Two live instances are enough in detection-only mode.
    test.cluster.kill(2).expect("SIGKILL node 2");
    test.cluster.kill(3).expect("SIGKILL node 3");
    let more = run_script(&test, &mut model, &[0, 1], "pair", &script[6..]);
    let marker = test.settle(&[0, 1], &[0, 1], &mut model);
    let publications = test.checked_publications(marker, 2, &ALL);
    assert_answers_published(&publications, &answers);
    assert_answers_published(&publications, &more);
    test.assert_nobody_suspected(&[0, 1]);
}

/// covers: recovery.OperatorWipeAndRejoin, core.OutputsDependOnlyOnTheLog
#[test]
fn a_wiped_instance_rebuilds_from_the_log_and_converges() {
    const WIPED: u32 = 3;
    let mut test = TestCluster::start(Options::default());
    let mut model = Model::default();
    let script = accepted_script();
    let answers = run_script(&test, &mut model, &ALL, "history", &script);
    test.settle(&ALL, &ALL, &mut model);

    test.cluster.kill(WIPED).expect("SIGKILL");
    test.cluster.wipe(WIPED).expect("wipe");
    assert!(
        !test.cluster.data_dir(WIPED).exists(),
        "the data directory is gone"
    );
    test.cluster
        .start_instance(WIPED)
        .expect("restart on an empty directory");
    test.wait_ready(&[WIPED]);
    test.settle(&ALL, &ALL, &mut model);
    test.assert_nobody_suspected(&ALL);

    // With node 1 down, every agreement needs the rebuilt node's copies:
    // its re-evaluated outputs and Warden entries must match byte for byte.
    test.cluster.kill(1).expect("SIGKILL node 1");
    let live = others(&[1]);
    assert_duplicates_identical(&test, &[WIPED], &answers, &script);
    let fresh = run_script(
        &test,
        &mut model,
        &[WIPED, 0, 2],
        "rebuilt",
        &[
            receive("w5", "plum", 9),
            transfer("w5", "w6", "plum", 4),
            ship("w6", "plum", 5),
        ],
    );
    let marker = test.settle(&[WIPED], &live, &mut model);
    test.assert_nobody_suspected(&live);
    assert_answers_published(&test.checked_publications(marker, 3, &ALL), &fresh);
}

/// covers: recovery.RecoveringInstanceWithholdsOwnCopies
#[test]
fn a_recovering_instance_withholds_its_copies_until_it_has_caught_up() {
    const RECOVERING: u32 = 3;
    const BACKLOG: i64 = 3_000;
    let mut test = TestCluster::start(Options::default());
    let mut model = Model::default();
    let before_backlog = test.settle(&ALL, &ALL, &mut model);

    // Only nodes 0 and 1 run: two copies, nothing can be agreed. The
    // backlog takes the offsets right after the marker (nothing else is
    // produced meanwhile).
    test.cluster.kill(2).expect("SIGKILL node 2");
    test.cluster.kill(RECOVERING).expect("SIGKILL node 3");
    let backlog = receive("w1", "plum", 1);
    produce_backlog(&test, BACKLOG, &backlog);
    for _ in 0..BACKLOG {
        model.apply(&backlog);
    }
    let last_backlog_offset = before_backlog + BACKLOG;
    test.assert_levels_at(&[0, 1], &model, last_backlog_offset);
    let observed_publications = "tribunal_gateway_publications_total{result=\"observed\"}";
    let baseline = test
        .metric(0, observed_publications)
        .expect("node 0 counts publications");
    assert!(
        test.publications(before_backlog)
            .iter()
            .all(|p| p.offset <= before_backlog),
        "a backlog record was published with two live instances"
    );

    // Node 3 replays the backlog. A publication of a backlog record needs
    // its copy; so does any copy it sends. Neither may happen before it is
    // ready. (Each metric is read before the status: status only moves
    // forward, so a violation cannot hide between the reads.)
    test.cluster
        .start_instance(RECOVERING)
        .expect("restart node 3");
    let started = Instant::now();
    let mut recovering_samples = 0;
    loop {
        let seen_by_0 = test
            .metric(0, observed_publications)
            .expect("node 0 counts publications");
        // No /metrics snapshot yet reads as nothing sent.
        let sent = probe::get(test.addr(RECOVERING), "/metrics")
            .ok()
            .and_then(|metrics| {
                support::metric_in(&metrics.text(), "tribunal_clerk_copies_sent_total")
            })
            .unwrap_or(0);
        let status = probe::get(test.addr(RECOVERING), "/health")
            .ok()
            .and_then(|health| serde_json::from_slice::<Value>(&health.body).ok())
            .map(|health| health["status"].as_str().unwrap_or_default().to_owned());
        match status.as_deref() {
            Some("ready") => break,
            Some("recovering" | "starting") => {
                recovering_samples += 1;
                assert_eq!(sent, 0, "copies sent while recovering");
                assert_eq!(
                    seen_by_0, baseline,
                    "a backlog record was agreed while node 3 recovered"
                );
            }
            Some(other) => panic!("{}", test.failure(&format!("node 3 is {other}"))),
            None => {}
        }
        assert!(
            started.elapsed() < DEADLINE,
            "{}",
            test.failure("node 3 never became ready")
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    eprintln!("node 3 was seen recovering {recovering_samples} times");
    assert!(
        recovering_samples > 0,
        "recovery was too short to observe; raise BACKLOG"
    );

    // Once ready, its copies complete the agreement of the whole backlog.
    test.assert_levels_at(&[0, 1, RECOVERING], &model, last_backlog_offset);
    // Every instance is honest here; node 2 may have published (as a
    // backup) before it was killed.
    let publications = test.checked_publications(last_backlog_offset, 3, &ALL);
    assert!(
        publications
            .keys()
            .any(|&offset| offset == last_backlog_offset)
    );
    test.cluster.start_instance(2).expect("restart node 2");
    test.wait_ready(&[2]);
    test.settle(&ALL, &ALL, &mut model);
    test.assert_nobody_suspected(&ALL);
}

/// Produces `count` records straight to the input topic, one command each.
fn produce_backlog(test: &TestCluster, count: i64, command: &Command) {
    let Command::Receive {
        warehouse,
        sku,
        quantity,
    } = command
    else {
        panic!("receives only");
    };
    let encoded = domain::inventory::receive(warehouse, sku, *quantity).encode();
    let producer: ThreadedProducer<DefaultProducerContext> = test
        .cluster
        .broker_profile()
        .producer_config("e2e-backlog")
        .create()
        .expect("a producer");
    let topic = broker::Topics::new(1).input;
    for n in 0..count {
        let pack = CommandPack {
            version: PACK_VERSION,
            submissions: vec![Submission {
                idempotency_key: format!("backlog-{n}"),
                command: encoded.clone(),
            }],
        }
        .encode_to_vec();
        producer
            .send(BaseRecord::<(), _>::to(&topic).partition(0).payload(&pack))
            .map_err(|(error, _)| error)
            .expect("queue a record");
    }
    producer
        .flush(Duration::from_secs(30))
        .expect("every record acknowledged");
}
