use std::collections::BTreeMap;

use domain::Domain as _;
use domain::inventory::{Inventory, InventoryCommand};
use proptest::prelude::*;
use prost::Message as _;
use protocol::records::CommandPack;

use super::*;
use crate::test_support::*;

fn config() -> GatewayConfig {
    GatewayConfig {
        input_partitions: 4,
        max_pack_commands: 3,
        pack_flush_window_ms: 1,
        submit_timeout_ms: 100,
        max_pending_submissions: 8,
        ..GatewayConfig::default()
    }
}

fn receive(key: &str, sku: &str) -> ValidSubmission {
    ValidSubmission {
        idempotency_key: key.to_owned(),
        command: InventoryCommand::Receive {
            warehouse: "w".into(),
            sku: sku.into(),
            quantity: 2,
        },
    }
}

/// Submits one command and cuts its pack: (id, the pack).
fn submit_alone(core: &mut GatewayCore, now: Millis, key: &str) -> (SubmissionId, SealedPack) {
    let id = core.submit(now, receive(key, "sku-1")).expect("accepted");
    core.tick(now + core.config().pack_flush_window_ms);
    let mut ready = core.take_ready();
    assert_eq!(ready.packs.len(), 1);
    (id, ready.packs.remove(0))
}

fn answers(core: &mut GatewayCore) -> Vec<(SubmissionId, SubmitAnswer)> {
    let ready = core.take_ready();
    assert!(ready.packs.is_empty());
    ready.answers
}

/// covers: gateway.ValidSubmissionJoinsOpenPack, gateway.PackProducedAfterFlushWindow
#[test]
fn a_valid_submission_is_packed_for_its_skus_partition() {
    let mut core = GatewayCore::new(config());
    let first = core.submit(0, receive("a", "sku-1")).expect("accepted");
    let second = core.submit(0, receive("b", "sku-1")).expect("accepted");
    assert!(core.take_ready().is_empty(), "the pack is still filling");
    assert_eq!(core.next_deadline(), Some(1));
    core.tick(1);
    let ready = core.take_ready();
    let [pack] = ready.packs.as_slice() else {
        panic!("one pack: {:?}", ready.packs)
    };
    assert_eq!(pack.partition, partition_for_sku("sku-1", 4));
    assert_eq!(pack.submissions, vec![first, second]);
    let decoded = CommandPack::decode(pack.payload.as_slice()).expect("a command pack");
    assert_eq!(decoded.submissions[1].idempotency_key, "b");
    let command = Inventory::default()
        .decode_command(&decoded.submissions[1].command)
        .expect("the domain's encoding");
    assert_eq!(command, receive("b", "sku-1").command);
    assert_eq!(core.pending(), 2);
}

/// covers: gateway.FullPackProduced
#[test]
fn a_full_pack_is_handed_out_at_once() {
    let mut core = GatewayCore::new(config());
    for key in ["a", "b", "c"] {
        core.submit(0, receive(key, "sku-1")).expect("accepted");
    }
    let ready = core.take_ready();
    assert_eq!(ready.packs.len(), 1);
    assert_eq!(ready.packs[0].submissions.len(), 3);
}

/// covers: gateway.PackAcknowledgedAssignsPositions, gateway.AgreedOutcomeAnswersWaitingSubmissions, gateway.AnswerBodyIsAgreedOutcomeBytes
#[test]
fn the_ack_assigns_positions_and_the_publication_answers_each_index() {
    let mut core = GatewayCore::new(config());
    let a = core.submit(0, receive("a", "sku-1")).expect("accepted");
    let b = core.submit(0, receive("b", "sku-1")).expect("accepted");
    core.tick(1);
    let pack = core.take_ready().packs.remove(0);
    let partition = pack.partition;
    core.produce_acknowledged(pack.id, 40);
    assert!(answers(&mut core).is_empty(), "no outcome yet");
    let outputs = vec![
        accepted(partition, 40, 0, "a"),
        rejected(partition, 40, 1, "b", "insufficient_stock"),
    ];
    let read = core.publication_read(2, publication(partition, 40, outputs.clone(), 1_000));
    assert_eq!(read, PublicationRead::Observed { answered: 2 });
    let answered = answers(&mut core);
    assert_eq!(answered.len(), 2);
    for (id, answer) in answered {
        let outcome = answer.expect("agreed");
        let (index, status) = if id == a { (0, 200) } else { (1, 409) };
        assert!(id == a || id == b);
        assert_eq!(outcome.bytes.as_ref(), outputs[index].as_slice());
        assert_eq!(outcome.http_status(), status);
    }
    assert_eq!(core.pending(), 0, "answered submissions are released");
}

/// covers: gateway.OutcomeSeenBeforeAckAnswersAtOnce, gateway.FirstPublicationOfOffsetObserved
#[test]
fn an_outcome_read_before_the_ack_answers_when_the_ack_arrives() {
    let mut core = GatewayCore::new(config());
    let (id, pack) = submit_alone(&mut core, 0, "a");
    let outputs = vec![accepted(pack.partition, 7, 0, "a")];
    let read = core.publication_read(1, publication(pack.partition, 7, outputs.clone(), 1));
    assert_eq!(read, PublicationRead::Observed { answered: 0 });
    core.produce_acknowledged(pack.id, 7);
    let answered = answers(&mut core);
    assert_eq!(answered.len(), 1);
    assert_eq!(answered[0].0, id);
    assert_eq!(
        answered[0].1.as_ref().expect("agreed").bytes.as_ref(),
        outputs[0].as_slice()
    );
}

/// covers: gateway.RepeatedPublicationIgnored, gateway.OneObservedOutcomePerOffset
#[test]
fn a_repeated_publication_is_counted_and_changes_nothing() {
    let mut core = GatewayCore::new(config());
    let (_, pack) = submit_alone(&mut core, 0, "a");
    let p = pack.partition;
    core.publication_read(1, publication(p, 3, vec![accepted(p, 3, 0, "a")], 1));
    let other_bytes = vec![rejected(p, 3, 0, "a", "insufficient_stock")];
    assert_eq!(
        core.publication_read(2, publication(p, 3, other_bytes, 1)),
        PublicationRead::Ignored
    );
    assert_eq!(core.ignored_publications(), 1);
    core.produce_acknowledged(pack.id, 3);
    let answered = answers(&mut core);
    assert_eq!(
        answered[0].1.as_ref().expect("agreed").http_status(),
        200,
        "the first publication answers"
    );
    assert_eq!(
        core.lookup_command("a", None),
        CommandLookup::Found(answered[0].1.clone().expect("agreed"))
    );
}

/// covers: gateway.CorruptPublicationDiscarded
#[test]
fn a_corrupt_publication_answers_nobody_and_a_correct_one_still_can() {
    let mut core = GatewayCore::new(config());
    let (id, pack) = submit_alone(&mut core, 0, "a");
    let p = pack.partition;
    core.produce_acknowledged(pack.id, 5);
    let good = publication(p, 5, vec![accepted(p, 5, 0, "a")], 1);
    let mut forged = good.clone();
    forged.outputs[0] = rejected(p, 5, 0, "a", "insufficient_stock");
    assert_eq!(
        core.publication_read(1, forged),
        PublicationRead::Corrupt(CorruptPublication::DigestMismatch)
    );
    assert_eq!(core.corrupt_publications(), 1);
    assert!(answers(&mut core).is_empty());
    assert_eq!(core.lookup_command("a", None), CommandLookup::Unknown);
    assert_eq!(
        core.publication_read(2, good),
        PublicationRead::Observed { answered: 1 }
    );
    assert_eq!(answers(&mut core)[0].0, id);
}

/// covers: gateway.SubmissionTimesOut
#[test]
fn packed_and_produced_submissions_time_out_and_a_late_outcome_answers_nobody() {
    let mut core = GatewayCore::new(config());
    let (produced, pack) = submit_alone(&mut core, 0, "a");
    core.produce_acknowledged(pack.id, 1);
    let packed = core.submit(50, receive("b", "sku-2")).expect("accepted");
    core.tick(51);
    let late_pack = core.take_ready().packs.remove(0);
    assert_eq!(core.next_deadline(), Some(100));
    core.tick(99);
    assert!(answers(&mut core).is_empty());
    core.tick(100);
    assert_eq!(
        answers(&mut core),
        vec![(produced, Err(ApiError::SubmitTimeout))]
    );
    core.tick(150);
    assert_eq!(
        answers(&mut core),
        vec![(packed, Err(ApiError::SubmitTimeout))]
    );
    assert_eq!(core.pending(), 0);
    core.produce_acknowledged(late_pack.id, 2);
    let p = pack.partition;
    core.publication_read(151, publication(p, 1, vec![accepted(p, 1, 0, "a")], 1));
    assert!(answers(&mut core).is_empty());
}

/// covers: gateway.OverloadedGatewayShedsSubmission
#[test]
fn a_full_waiting_table_sheds_new_submissions_until_one_is_answered() {
    let mut core = GatewayCore::new(GatewayConfig {
        max_pending_submissions: 2,
        ..config()
    });
    let first = core.submit(0, receive("a", "s")).expect("accepted");
    core.submit(0, receive("b", "s")).expect("accepted");
    assert!(!core.is_accepting());
    assert_eq!(core.submit(0, receive("c", "s")), Err(ApiError::Overloaded));
    assert_eq!(core.pending(), 2);
    core.abandon(first);
    assert!(core.is_accepting());
    core.submit(0, receive("c", "s")).expect("room again");
}

/// covers: gateway.ProduceFailureAnswersUnavailable
#[test]
fn a_failed_produce_answers_its_packs_submissions_only() {
    let mut core = GatewayCore::new(config());
    let (failed, failing_pack) = submit_alone(&mut core, 0, "a");
    let (other, _) = submit_alone(&mut core, 0, "b");
    core.produce_failed(failing_pack.id);
    assert_eq!(
        answers(&mut core),
        vec![(failed, Err(ApiError::ProduceFailed))]
    );
    assert_eq!(core.pending(), 1);
    assert!(core.waiting.get(other).is_some());
}

/// covers: gateway.ReplySentReleasesSubmission
#[test]
fn an_abandoned_submission_is_released_and_never_answered() {
    let mut core = GatewayCore::new(config());
    let (id, pack) = submit_alone(&mut core, 0, "a");
    core.abandon(id);
    assert_eq!(core.pending(), 0);
    core.produce_acknowledged(pack.id, 0);
    let p = pack.partition;
    core.publication_read(1, publication(p, 0, vec![accepted(p, 0, 0, "a")], 1));
    assert!(answers(&mut core).is_empty());
    assert!(
        matches!(core.lookup_command("a", None), CommandLookup::Found(_)),
        "the index still learns it"
    );
}

/// covers: gateway.StatusFollowsFromOutcomeBytes
#[test]
fn every_command_of_a_dead_lettered_record_gets_its_one_output() {
    let mut core = GatewayCore::new(config());
    let ids: Vec<SubmissionId> = ["a", "b", "c"]
        .iter()
        .map(|key| core.submit(0, receive(key, "s")).expect("accepted"))
        .collect();
    let pack = core.take_ready().packs.remove(0);
    core.produce_acknowledged(pack.id, 9);
    core.publication_read(
        1,
        publication(pack.partition, 9, vec![dead_letter(pack.partition, 9)], 1),
    );
    let answered = answers(&mut core);
    assert_eq!(answered.iter().map(|(id, _)| *id).collect::<Vec<_>>(), ids);
    for (_, answer) in answered {
        let outcome = answer.expect("agreed");
        assert_eq!(outcome.http_status(), 422);
        assert_eq!(
            outcome.bytes.as_ref(),
            dead_letter(pack.partition, 9).as_slice()
        );
    }
}

/// covers: gateway.ObservedOutcomeForgottenAfterSubmitTimeout
#[test]
fn an_observed_outcome_is_forgotten_after_the_submit_timeout_unless_a_waiter_refers_to_it() {
    let mut core = GatewayCore::new(config());
    let p = partition_for_sku("s", 4);
    let other = (p + 1) % 4;
    core.publication_read(0, publication(other, 1, accepted_record(other, 1, 1), 1));
    // The record at (p, 2) holds one output, but the pack acknowledged
    // there holds two: index 1 cannot be answered from it, so the outcome
    // stays referenced while that submission waits.
    core.publication_read(0, publication(p, 2, accepted_record(p, 2, 1), 1));
    let a = core.submit(10, receive("a", "s")).expect("accepted");
    let b = core.submit(10, receive("b", "s")).expect("accepted");
    core.tick(11);
    let pack = core.take_ready().packs.remove(0);
    core.produce_acknowledged(pack.id, 2);
    assert_eq!(
        answers(&mut core)
            .iter()
            .map(|(id, _)| *id)
            .collect::<Vec<_>>(),
        vec![a]
    );
    core.tick(100);
    assert!(!core.observed.contains(other, 1), "unreferenced: forgotten");
    assert!(core.observed.contains(p, 2), "referenced: kept");
    core.tick(110);
    assert_eq!(answers(&mut core), vec![(b, Err(ApiError::SubmitTimeout))]);
    assert_eq!(core.next_deadline(), Some(200));
    core.tick(200);
    assert!(core.observed.is_empty());
    assert_eq!(core.next_deadline(), None);
}

/// covers: gateway.RetryWithSameKeyIsSafe
#[test]
fn a_retry_after_a_timeout_gets_the_stored_outcome_of_the_first_attempt() {
    let mut core = GatewayCore::new(config());
    let (first, pack) = submit_alone(&mut core, 0, "k");
    let p = pack.partition;
    core.produce_acknowledged(pack.id, 10);
    core.tick(100);
    assert_eq!(
        answers(&mut core),
        vec![(first, Err(ApiError::SubmitTimeout))]
    );
    // The first attempt was applied after all; its outcome names offset 10.
    let original = accepted(p, 10, 0, "k");
    core.publication_read(101, publication(p, 10, vec![original.clone()], 5));
    let (retry, retry_pack) = submit_alone(&mut core, 102, "k");
    core.produce_acknowledged(retry_pack.id, 11);
    // The Warden answers the duplicate with the stored envelope.
    core.publication_read(103, publication(p, 11, vec![original.clone()], 6));
    let answered = answers(&mut core);
    assert_eq!(answered.len(), 1);
    assert_eq!(answered[0].0, retry);
    let outcome = answered[0].1.as_ref().expect("agreed");
    assert_eq!(outcome.bytes.as_ref(), original.as_slice());
    assert_eq!(outcome.http_status(), 200);
    match core.lookup_command("k", None) {
        CommandLookup::Found(owner) => assert_eq!(owner.bytes.as_ref(), original.as_slice()),
        other => panic!("the first attempt owns the key: {other:?}"),
    }
}

/// One step of the property test below.
#[derive(Clone, Debug)]
enum Step {
    Submit { sku: u8 },
    Advance { millis: u64 },
    Ack { pack: usize },
    Fail { pack: usize },
    Publish { pack: usize, kind: u8 },
    Abandon { submission: u64 },
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        4 => (0u8..6).prop_map(|sku| Step::Submit { sku }),
        2 => (0u64..40).prop_map(|millis| Step::Advance { millis }),
        3 => any::<usize>().prop_map(|pack| Step::Ack { pack }),
        1 => any::<usize>().prop_map(|pack| Step::Fail { pack }),
        3 => (any::<usize>(), 0u8..5).prop_map(|(pack, kind)| Step::Publish { pack, kind }),
        1 => (0u64..64).prop_map(|submission| Step::Abandon { submission }),
    ]
}

/// A pack as the broker wrote it: its offset is fixed when it is handed
/// out, the gateway learns it from the ack.
struct Written {
    pack: SealedPack,
    offset: Offset,
    settled: bool,
}

proptest! {
    /// covers: gateway.AnsweredOnlyFromPublishedOutcome, gateway.AnswerBodyIsAgreedOutcomeBytes, gateway.SuccessOnlyWhenAnswered, gateway.OnePackIndexPerSubmission
    #[test]
    fn every_agreed_answer_is_the_first_intact_publication_at_the_submissions_own_position(
        steps in proptest::collection::vec(step(), 1..120),
    ) {
        let config = GatewayConfig { max_pending_submissions: 16, ..config() };
        let mut core = GatewayCore::new(config);
        let mut now = 0;
        let mut written: Vec<Written> = Vec::new();
        let mut next_offset: BTreeMap<Partition, Offset> = BTreeMap::new();
        // The agreed outputs per position: the first publication fixes them,
        // as agreement does; a correct publisher never writes others.
        let mut agreed: BTreeMap<(Partition, Offset), Vec<Vec<u8>>> = BTreeMap::new();
        // Where each submission sits, once its pack is acknowledged.
        let mut acked_at: BTreeMap<SubmissionId, (Partition, Offset, u32)> = BTreeMap::new();
        let mut answered: BTreeMap<SubmissionId, SubmitAnswer> = BTreeMap::new();
        let mut observed = std::collections::BTreeSet::new();
        for step in steps {
            match step {
                Step::Submit { sku } => {
                    let key = format!("k{}", now % 7);
                    let _ = core.submit(now, receive(&key, &format!("sku-{sku}")));
                }
                Step::Advance { millis } => {
                    now += millis;
                    core.tick(now);
                }
                Step::Ack { .. } | Step::Fail { .. } if written.is_empty() => {}
                Step::Ack { pack } => {
                    let count = written.len();
                    let target = &mut written[pack % count];
                    if !target.settled {
                        target.settled = true;
                        core.produce_acknowledged(target.pack.id, target.offset);
                        for (index, id) in target.pack.submissions.iter().enumerate() {
                            let index = u32::try_from(index).expect("small");
                            acked_at.insert(*id, (target.pack.partition, target.offset, index));
                        }
                    }
                }
                Step::Fail { pack } => {
                    let count = written.len();
                    let target = &mut written[pack % count];
                    if !target.settled {
                        target.settled = true;
                        core.produce_failed(target.pack.id);
                    }
                }
                Step::Publish { .. } if written.is_empty() => {}
                Step::Publish { pack, kind } => {
                    let target = &written[pack % written.len()];
                    let (p, o) = (target.pack.partition, target.offset);
                    let count = u32::try_from(target.pack.submissions.len()).expect("small");
                    let outputs = agreed.entry((p, o)).or_insert_with(|| match kind {
                        0 => vec![dead_letter(p, o)],
                        1 => (0..count)
                            .map(|i| rejected(p, o, i, &format!("key-{i}"), "insufficient_stock"))
                            .collect(),
                        _ => accepted_record(p, o, count),
                    }).clone();
                    let mut record = publication(p, o, outputs.clone(), i64::try_from(now).expect("small"));
                    if kind == 4 {
                        record.outputs.reverse();
                        record.outputs.push(b"{}".to_vec());
                    }
                    let read = core.publication_read(now, record);
                    if kind == 4 {
                        prop_assert!(!matches!(read, PublicationRead::Observed { .. }), "never observed");
                    } else {
                        prop_assert!(!matches!(read, PublicationRead::Corrupt(_)));
                        observed.insert((p, o));
                    }
                }
                Step::Abandon { submission } => core.abandon(SubmissionId(submission)),
            }
            let ready = core.take_ready();
            for pack in ready.packs {
                let offset = next_offset.entry(pack.partition).or_insert(0);
                written.push(Written { pack, offset: *offset, settled: false });
                *offset += 1;
            }
            for (id, answer) in ready.answers {
                if let Ok(outcome) = &answer {
                    let &(p, o, index) = acked_at.get(&id).expect("an agreed answer needs a known offset");
                    prop_assert!(observed.contains(&(p, o)), "and an intact publication read there");
                    let outputs = &agreed[&(p, o)];
                    let expected = if outputs.len() == 1 && outcome.verdict == protocol::envelope::EnvelopeVerdict::DeadLettered {
                        &outputs[0]
                    } else {
                        &outputs[usize::try_from(index).expect("small")]
                    };
                    prop_assert_eq!(outcome.bytes.as_ref(), expected.as_slice());
                    prop_assert!(outcome.http_status() >= 200);
                } else if let Err(error) = &answer {
                    prop_assert!(error.http_status() >= 400, "2xx only when answered");
                }
                prop_assert!(answered.insert(id, answer).is_none(), "one answer per submission");
            }
            prop_assert!(core.pending() <= config.max_pending_submissions);
            prop_assert!(core.observed.held_outputs() <= config.max_observed_outputs);
        }
    }
}
