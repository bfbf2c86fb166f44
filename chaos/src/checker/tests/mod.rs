//! Checker self-tests: histories of a simulated correct cluster pass; each
//! planted fault is reported, as exactly its own kind.

mod cluster;

use std::collections::BTreeSet;

use domain::inventory::{receive, ship, transfer};
use proptest::prelude::*;
use protocol::records::{CommandPack, PACK_VERSION, Publication, Submission as PackedSubmission};

use self::cluster::{
    BYZANTINE, Cluster, TTL_MS, forge, plant_negative_stock, plant_non_conservation,
    plant_state_divergence,
};
use super::{
    CheckKind, CheckReport, CorruptPublication, Divergent, DuplicateMismatch, FindingDetail, Lost,
    Unexpected, check,
};
use crate::history::{
    Command, Completion, FaultKind, HexBytes, History, HistoryError, HistoryEvent, InputContent,
    InputRecord, Invocation, PublishedRecord, RawBytes, read_events,
};

fn command(from_domain: domain::inventory::InventoryCommand) -> Command {
    from_domain
}

fn kinds(report: &CheckReport) -> BTreeSet<CheckKind> {
    report.findings.iter().map(|f| f.check).collect()
}

/// The report holds findings of `kind` and of no other kind.
fn assert_only(report: &CheckReport, kind: CheckKind) {
    assert_eq!(kinds(report), BTreeSet::from([kind]), "{report}");
    assert!(!report.passed());
    assert_eq!(report.counts.get(kind), report.findings.len());
}

fn assert_clean(report: &CheckReport) {
    assert!(report.passed(), "{report}");
    assert_eq!(report.counts.total(), 0);
    assert!(report.notes.is_empty(), "{:?}", report.notes);
}

/// A history exercising every correct behaviour: packs, rejections,
/// transfers, retries answered by the Warden, a reused key, timeouts
/// applied once or never, a refusal, a dead letter, and a key evaluated
/// again after its entry expired.
fn clean_cluster() -> Cluster {
    let mut cluster = Cluster::new(2);
    let first = cluster.submit("k-1", &command(receive("w1", "apple", 10)));
    cluster.submit("k-2", &command(ship("w1", "apple", 20))); // rejected: short
    cluster.submit_pack(&[
        ("k-3".to_owned(), command(transfer("w1", "w2", "apple", 4))),
        ("k-4".to_owned(), command(ship("w2", "apple", 1))),
        ("k-3".to_owned(), command(transfer("w1", "w2", "apple", 4))), // duplicate in the pack
    ]);
    cluster.retry(first);
    cluster.submit("k-1", &command(receive("w1", "apple", 99))); // key reused
    cluster.submit("k-5", &command(receive("w9", "pear", 3)));
    let timed_out = cluster.submit_unanswered("k-6", &command(receive("w1", "pear", 2)), false);
    cluster.retry(timed_out);
    cluster.submit_unanswered("k-7", &command(ship("w9", "pear", 1)), true);
    cluster.submit_never_produced("k-8", &command(receive("w1", "plum", 1)));
    cluster.submit_refused("k-9", &command(receive("w1", "plum", 0)));
    cluster.dead_letter(1);
    cluster.advance_stream(TTL_MS);
    cluster.retry(first); // the entry expired: evaluated afresh, legitimately
    cluster
}

#[test]
fn a_clean_history_passes() {
    let report = check(&clean_cluster().finish());
    assert_clean(&report);
    assert_eq!(report.stats.submissions, 14);
    assert_eq!(report.stats.refused, 1);
    assert_eq!(report.stats.indeterminate, 3);
    assert!(report.to_string().starts_with("chaos check PASSED"));
}

#[test]
fn an_acknowledged_command_whose_record_vanished_is_lost() {
    let mut cluster = clean_cluster();
    let lost = cluster.plant_loss("k-lost", &command(receive("w1", "apple", 5)));
    let report = check(&cluster.finish());
    assert_only(&report, CheckKind::Lost);
    assert!(matches!(
        &report.findings[0].detail,
        FindingDetail::Lost(Lost::NotPublished { submission, .. }) if *submission == lost
    ));
}

#[test]
fn an_honest_instance_left_behind_acknowledged_commands_lost_them() {
    let mut history = clean_cluster().finish();
    history.instances[1]
        .applied
        .iter_mut()
        .for_each(|a| a.offset = -1);
    let report = check(&history);
    let not_applied: Vec<_> = report
        .findings_of(CheckKind::Lost)
        .filter(|f| {
            matches!(
                f.detail,
                FindingDetail::Lost(Lost::NotApplied { instance: 1, .. })
            )
        })
        .collect();
    // One per partition holding acknowledged commands, covering all ten.
    let acknowledged: usize = not_applied
        .iter()
        .map(|f| match f.detail {
            FindingDetail::Lost(Lost::NotApplied { acknowledged, .. }) => acknowledged,
            _ => 0,
        })
        .sum();
    assert_eq!(acknowledged, report.stats.outcomes, "{report}");
}

#[test]
fn a_key_applied_twice_is_duplicated() {
    let mut cluster = clean_cluster();
    cluster.plant_duplicate("k-twice", &command(receive("w1", "fig", 5)));
    let report = check(&cluster.finish());
    assert_only(&report, CheckKind::Duplicated);
    let FindingDetail::Duplicated(duplicated) = &report.findings[0].detail else {
        panic!("{report}");
    };
    assert_eq!(duplicated.applications.len(), 2);
    assert!(!duplicated.after_indeterminate);
}

#[test]
fn a_timed_out_submission_applied_twice_is_duplicated() {
    let mut cluster = clean_cluster();
    cluster.plant_timeout_applied_twice("k-timeout", &command(ship("w1", "apple", 1)));
    let report = check(&cluster.finish());
    assert_only(&report, CheckKind::Duplicated);
    let FindingDetail::Duplicated(duplicated) = &report.findings[0].detail else {
        panic!("{report}");
    };
    assert!(duplicated.after_indeterminate, "{report}");
}

#[test]
fn a_command_nobody_submitted_is_unexpected() {
    let mut cluster = clean_cluster();
    cluster.plant_unexpected("k-ghost", &command(receive("w1", "fig", 5)));
    let report = check(&cluster.finish());
    assert_only(&report, CheckKind::Unexpected);
}

#[test]
fn a_command_applied_although_its_only_submission_was_refused_is_unexpected() {
    let mut cluster = Cluster::new(1);
    let refused = command(receive("w1", "fig", 5));
    cluster.submit_refused("k-refused", &refused);
    cluster.plant_unexpected("k-refused", &refused);
    let report = check(&cluster.finish());
    assert_only(&report, CheckKind::Unexpected);
}

#[test]
fn a_published_command_missing_from_the_input_topic_is_unexpected() {
    let mut history = clean_cluster().finish();
    let dropped = history.input.remove(0);
    let report = check(&history);
    assert!(
        report.findings_of(CheckKind::Unexpected).any(|f| matches!(
            &f.detail,
            FindingDetail::Unexpected(Unexpected::NotInLog { position, .. })
                if position.partition == dropped.partition && position.offset == dropped.offset
        )),
        "{report}"
    );
}

#[test]
fn an_honest_state_digest_that_differs_is_divergent() {
    let mut history = clean_cluster().finish();
    plant_state_divergence(&mut history);
    let report = check(&history);
    assert_only(&report, CheckKind::Divergent);
    assert!(matches!(
        &report.findings[0].detail,
        FindingDetail::Divergent(Divergent::StateDigest { instance: 1, .. })
    ));
}

#[test]
fn an_honest_record_digest_that_differs_is_divergent_and_the_byzantine_ones_are_not() {
    let mut history = clean_cluster().finish();
    history.instances[2].record_digests[1].digest = HexBytes::from(vec![1, 2, 3]);
    let report = check(&history);
    assert_only(&report, CheckKind::Divergent);
    assert_eq!(report.findings.len(), 1, "{report}");
    assert!(matches!(
        &report.findings[0].detail,
        FindingDetail::Divergent(Divergent::RecordDigests {
            instance: 2,
            differing: 1,
            ..
        })
    ));
}

#[test]
fn the_byzantine_instance_diverging_is_expected() {
    let mut history = clean_cluster().finish();
    let honest = history.instances[0].clone();
    let byzantine = &history.instances[usize::try_from(BYZANTINE).expect("small")];
    assert_ne!(byzantine.state_digest, honest.state_digest);
    assert_ne!(byzantine.record_digests, honest.record_digests);
    // Were it honest, its lies would be reported.
    history.run.byzantine.clear();
    assert_only(&check(&history), CheckKind::Divergent);
}

#[test]
fn an_answer_that_is_not_the_agreed_outcome_is_divergent() {
    let mut history = clean_cluster().finish();
    // k-2: answered once, never retried.
    let Some(Completion::Answered { body, .. }) = &mut history.submissions[1].completion else {
        panic!("the second submission was answered");
    };
    *body = RawBytes(forge(body.as_slice()));
    let report = check(&history);
    assert_only(&report, CheckKind::Divergent);
    assert!(matches!(
        &report.findings[0].detail,
        FindingDetail::Divergent(Divergent::AnswerNotAgreed { submission: 1, .. })
    ));
}

#[test]
fn a_success_status_without_an_outcome_is_divergent() {
    let mut history = clean_cluster().finish();
    history.submissions[0].completion = Some(Completion::Answered {
        status: 200,
        body: RawBytes::from("ok"),
    });
    let report = check(&history);
    assert!(
        report.findings_of(CheckKind::Divergent).any(|f| matches!(
            f.detail,
            FindingDetail::Divergent(Divergent::MalformedAnswer { submission: 0, .. })
        )),
        "{report}"
    );
}

#[test]
fn a_negative_level_is_an_invariant_violation() {
    let mut history = clean_cluster().finish();
    plant_negative_stock(&mut history);
    let report = check(&history);
    assert_only(&report, CheckKind::Invariant);
    assert!(
        report
            .findings
            .iter()
            .any(|f| f.invariant == "inventory.NoNegativeStock"),
        "{report}"
    );
}

#[test]
fn stock_not_conserved_is_an_invariant_violation() {
    let mut history = clean_cluster().finish();
    plant_non_conservation(&mut history);
    let report = check(&history);
    assert_only(&report, CheckKind::Invariant);
    assert!(
        report
            .findings
            .iter()
            .any(|f| f.invariant == "inventory.StockConservedPerSku"),
        "{report}"
    );
}

#[test]
fn a_retry_answered_with_other_bytes_is_a_duplicate_mismatch() {
    let mut cluster = clean_cluster();
    cluster.plant_duplicate_mismatch("k-retry", &command(receive("w1", "fig", 5)));
    let report = check(&cluster.finish());
    assert_only(&report, CheckKind::DuplicateMismatch);
    let details: Vec<_> = report.findings.iter().map(|f| &f.detail).collect();
    assert!(details.iter().any(|d| matches!(
        d,
        FindingDetail::DuplicateMismatch(DuplicateMismatch::Answers { answers, .. }) if answers.len() == 2
    )));
    assert!(details.iter().any(|d| matches!(
        d,
        FindingDetail::DuplicateMismatch(DuplicateMismatch::PublishedDuplicate { .. })
    )));
}

#[test]
fn a_forged_copy_published_by_the_byzantine_instance_is_a_corrupt_publication() {
    let mut cluster = clean_cluster();
    cluster.plant_corrupt_publication("k-forged", &command(receive("w1", "fig", 5)));
    let report = check(&cluster.finish());
    assert_only(&report, CheckKind::CorruptPublication);
    assert!(report.findings.iter().any(|f| matches!(
        &f.detail,
        FindingDetail::CorruptPublication(CorruptPublication::NotHonestMajority { publisher, held_by, .. })
            if *publisher == BYZANTINE && *held_by == vec![BYZANTINE]
    )), "{report}");
}

#[test]
fn a_forged_copy_read_first_differs_from_the_replay_and_the_honest_majority() {
    let mut cluster = Cluster::new(1);
    cluster.submit("k-1", &command(receive("w1", "fig", 5)));
    cluster.plant_corrupt_publication("k-2", &command(receive("w1", "fig", 2)));
    let mut history = cluster.finish();
    // Readers see the forgery first and answer the client from it.
    let forged = history.publications.pop().expect("the forgery");
    history.publications.insert(1, forged.clone());
    history.submissions[1].completion = Some(Completion::Answered {
        status: 200,
        body: forged.outputs[0].clone(),
    });
    let report = check(&history);
    assert_only(&report, CheckKind::CorruptPublication);
    let details: Vec<_> = report.findings.iter().map(|f| &f.detail).collect();
    assert!(
        details.iter().any(|d| matches!(
            d,
            FindingDetail::CorruptPublication(CorruptPublication::DiffersFromReplay { .. })
        )),
        "{report}"
    );
    assert!(
        details.iter().any(|d| matches!(
            d,
            FindingDetail::CorruptPublication(CorruptPublication::NotHonestMajority { .. })
        )),
        "{report}"
    );
}

#[test]
fn a_publication_below_quorum_or_not_hashing_to_its_digest_is_corrupt() {
    let mut history = clean_cluster().finish();
    history.publications[0].matching_copies = 2;
    let mut torn = history.publications[1].clone();
    torn.outputs[0] = RawBytes(forge(torn.outputs[0].as_slice()));
    history.publications.push(torn);
    let report = check(&history);
    assert_only(&report, CheckKind::CorruptPublication);
    let details: Vec<_> = report.findings.iter().map(|f| &f.detail).collect();
    assert!(details.iter().any(|d| matches!(
        d,
        FindingDetail::CorruptPublication(CorruptPublication::BelowQuorum {
            matching_copies: 2,
            ..
        })
    )));
    assert!(details.iter().any(|d| matches!(
        d,
        FindingDetail::CorruptPublication(CorruptPublication::Discarded { .. })
    )));
}

#[test]
fn findings_name_the_faults_active_around_them() {
    let mut cluster = clean_cluster();
    let kill = cluster.fault(FaultKind::Kill, vec![0], false);
    let lost = cluster.plant_loss("k-lost", &command(receive("w1", "apple", 5)));
    cluster.heal(kill);
    let unrelated = cluster.fault(FaultKind::Pause, vec![2], true);
    let report = check(&cluster.finish());
    let finding = &report.findings[0];
    assert_eq!(finding.submissions, vec![lost]);
    assert_eq!(finding.faults, vec![kill]);
    assert_ne!(kill, unrelated);
    assert!(
        report.to_string().contains("fault 0: Kill on [0]"),
        "{report}"
    );
}

#[test]
fn the_report_serialises_with_its_verdict_counts_and_findings() {
    let mut cluster = clean_cluster();
    cluster.plant_unexpected("k-ghost", &command(receive("w1", "fig", 5)));
    let report = check(&cluster.finish());
    let json: serde_json::Value = serde_json::from_str(&report.to_json()).expect("JSON");
    assert_eq!(json["passed"], false);
    assert_eq!(json["counts"]["unexpected"], 1);
    assert_eq!(json["counts"]["lost"], 0);
    assert_eq!(json["findings"][0]["check"], "unexpected");
    assert_eq!(
        json["findings"][0]["invariant"],
        "gateway.ValidSubmissionJoinsOpenPack"
    );
    assert_eq!(
        json["findings"][0]["detail"]["unexpected"]["kind"],
        "never_submitted"
    );
    let summary = report.to_string();
    assert!(summary.starts_with("chaos check FAILED"), "{summary}");
    assert!(summary.contains("unexpected 1"), "{summary}");
}

#[test]
fn a_history_round_trips_through_json_lines_bytes_exactly() {
    let mut cluster = clean_cluster();
    cluster.fault(FaultKind::DiskLoss, vec![1], true);
    let mut history = cluster.finish();
    history.publications[0].outputs[0] = RawBytes(vec![0xff, 0x00, b'{']);
    let mut lines = Vec::new();
    history.write(&mut lines).expect("write to memory");
    let text = String::from_utf8(lines.clone()).expect("JSON is UTF-8");
    assert!(text.contains(r#"{"hex":"ff007b"}"#), "{text}");
    assert!(text.contains(r#""event":"invoked""#), "{text}");
    assert_eq!(History::read(lines.as_slice()).expect("read back"), history);
}

#[test]
fn events_that_do_not_pair_up_are_refused() {
    let run = clean_cluster().finish().run;
    let orphan = vec![
        HistoryEvent::Run(run.clone()),
        HistoryEvent::Completed {
            submission: 7,
            completed_us: 1,
            completion: Completion::TimedOut,
        },
    ];
    assert!(matches!(
        History::from_events(orphan),
        Err(HistoryError::CompletionWithoutInvocation(7))
    ));
    let invocation = Invocation {
        id: 1,
        client: 0,
        gateway: 0,
        key: "k".to_owned(),
        command: command(receive("w", "s", 1)),
        invoked_us: 0,
    };
    let twice = vec![
        HistoryEvent::Run(run),
        HistoryEvent::Invoked(invocation.clone()),
        HistoryEvent::Invoked(invocation),
    ];
    assert!(matches!(
        History::from_events(twice),
        Err(HistoryError::SubmissionInvokedTwice(1))
    ));
    assert!(matches!(
        History::from_events(Vec::new()),
        Err(HistoryError::MissingRun)
    ));
    assert!(matches!(
        read_events(&b"{\"event\":\"nonsense\"}\n"[..]),
        Err(HistoryError::Parse { line: 1, .. })
    ));
}

#[test]
fn input_and_outcome_records_decode_as_the_instances_decode_them() {
    use prost::Message as _;
    let run = clean_cluster().finish().run;
    let pack = CommandPack {
        version: PACK_VERSION,
        submissions: vec![PackedSubmission {
            idempotency_key: "k-1".to_owned(),
            command: receive("w1", "apple", 3).encode(),
        }],
    };
    let record = InputRecord::decode(&run, 0, 5, 1_000, Some(&pack.encode_to_vec()));
    assert_eq!(record.commands().len(), 1);
    assert_eq!(record.commands()[0].key, "k-1");
    assert_eq!(
        record.commands()[0].command,
        command(receive("w1", "apple", 3))
    );
    let garbage = InputRecord::decode(&run, 0, 6, 1_000, Some(&[0xff, 0xff, 0xff]));
    assert_eq!(
        garbage.content,
        InputContent::DeadLettered {
            reason: "malformed_record".to_owned()
        }
    );
    let publication = Publication {
        partition: 0,
        offset: 5,
        digest: vec![7; 32],
        publisher_id: 2,
        matching_copies: 3,
        outputs: vec![b"{}".to_vec()],
        idempotency_keys: vec!["k-1".to_owned()],
        record_timestamp: 1_000,
    };
    let read = PublishedRecord::decode(&publication.encode_to_vec()).expect("decodes");
    assert_eq!(read.publisher_id, 2);
    assert_eq!(read.digest, HexBytes(vec![7; 32]));
    assert_eq!(read.outputs, vec![RawBytes::from("{}")]);
}

// ---- properties ------------------------------------------------------------

#[derive(Clone, Debug)]
struct Spec {
    kind: u8,
    from: u8,
    to: u8,
    sku: u8,
    quantity: i64,
}

impl Spec {
    fn command(&self) -> Command {
        let (from, to, sku) = (
            format!("w{}", self.from),
            format!("w{}", self.to),
            format!("sku-{}", self.sku),
        );
        command(match self.kind {
            0 => receive(&from, &sku, self.quantity),
            1 => ship(&from, &sku, self.quantity),
            _ => transfer(&from, &to, &sku, self.quantity),
        })
    }
}

fn spec() -> impl Strategy<Value = Spec> {
    (0u8..3, 0u8..3, 0u8..3, 0u8..4, 1i64..=20).prop_map(|(kind, from, to, sku, quantity)| Spec {
        kind,
        from,
        to,
        sku,
        quantity,
    })
}

#[derive(Clone, Debug)]
enum Op {
    Submit(Spec),
    Pack(Vec<Spec>),
    Retry(usize),
    ReuseKey(usize, Spec),
    Unanswered(Spec, bool),
    NeverProduced(Spec),
    Refused(Spec),
    Expire,
    DeadLetter(u32),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => spec().prop_map(Op::Submit),
        2 => prop::collection::vec(spec(), 2..5).prop_map(Op::Pack),
        3 => any::<usize>().prop_map(Op::Retry),
        1 => (any::<usize>(), spec()).prop_map(|(of, spec)| Op::ReuseKey(of, spec)),
        1 => (spec(), any::<bool>()).prop_map(|(spec, failed)| Op::Unanswered(spec, failed)),
        1 => spec().prop_map(Op::NeverProduced),
        1 => spec().prop_map(Op::Refused),
        1 => Just(Op::Expire),
        1 => (0u32..2).prop_map(Op::DeadLetter),
    ]
}

/// Runs `ops` on a correct two-partition cluster.
fn run_ops(ops: &[Op]) -> Cluster {
    let mut cluster = Cluster::new(2);
    let mut fresh_key = 0u32;
    let mut next_key = || {
        fresh_key += 1;
        format!("key-{fresh_key}")
    };
    for op in ops {
        let earlier = |cluster: &Cluster, pick: usize| {
            let count = cluster.submission_count();
            (count > 0).then(|| u64::try_from(pick % count).expect("small"))
        };
        match op {
            Op::Submit(spec) => {
                cluster.submit(&next_key(), &spec.command());
            }
            Op::Pack(specs) => {
                // One record holds one partition's commands: one sku here.
                let sku = specs[0].sku;
                let pack: Vec<_> = specs
                    .iter()
                    .map(|spec| {
                        (
                            next_key(),
                            Spec {
                                sku,
                                ..spec.clone()
                            }
                            .command(),
                        )
                    })
                    .collect();
                cluster.submit_pack(&pack);
            }
            Op::Retry(pick) => {
                if let Some(id) = earlier(&cluster, *pick) {
                    cluster.retry(id);
                }
            }
            Op::ReuseKey(pick, spec) => {
                if let Some(id) = earlier(&cluster, *pick) {
                    let key = cluster.key_of(id);
                    cluster.submit(&key, &spec.command());
                }
            }
            Op::Unanswered(spec, failed) => {
                cluster.submit_unanswered(&next_key(), &spec.command(), *failed);
            }
            Op::NeverProduced(spec) => {
                cluster.submit_never_produced(&next_key(), &spec.command());
            }
            Op::Refused(spec) => {
                cluster.submit_refused(&next_key(), &spec.command());
            }
            Op::Expire => cluster.advance_stream(TTL_MS),
            Op::DeadLetter(partition) => cluster.dead_letter(*partition),
        }
    }
    cluster
}

#[derive(Clone, Copy, Debug)]
enum Plant {
    Loss,
    Duplicate,
    TimeoutAppliedTwice,
    Unexpected,
    Divergence,
    NegativeStock,
    NonConservation,
    DuplicateMismatch,
    CorruptPublication,
}

impl Plant {
    const ALL: [Plant; 9] = [
        Self::Loss,
        Self::Duplicate,
        Self::TimeoutAppliedTwice,
        Self::Unexpected,
        Self::Divergence,
        Self::NegativeStock,
        Self::NonConservation,
        Self::DuplicateMismatch,
        Self::CorruptPublication,
    ];

    fn reported_as(self) -> CheckKind {
        match self {
            Self::Loss => CheckKind::Lost,
            Self::Duplicate | Self::TimeoutAppliedTwice => CheckKind::Duplicated,
            Self::Unexpected => CheckKind::Unexpected,
            Self::Divergence => CheckKind::Divergent,
            Self::NegativeStock | Self::NonConservation => CheckKind::Invariant,
            Self::DuplicateMismatch => CheckKind::DuplicateMismatch,
            Self::CorruptPublication => CheckKind::CorruptPublication,
        }
    }

    fn apply(self, mut cluster: Cluster, command: &Command) -> History {
        let key = "key-planted";
        match self {
            Self::Loss => drop(cluster.plant_loss(key, command)),
            Self::Duplicate => drop(cluster.plant_duplicate(key, command)),
            Self::TimeoutAppliedTwice => drop(cluster.plant_timeout_applied_twice(key, command)),
            Self::Unexpected => cluster.plant_unexpected(key, command),
            Self::DuplicateMismatch => drop(cluster.plant_duplicate_mismatch(key, command)),
            Self::CorruptPublication => cluster.plant_corrupt_publication(key, command),
            Self::Divergence | Self::NegativeStock | Self::NonConservation => {}
        }
        let mut history = cluster.finish();
        match self {
            Self::Divergence => plant_state_divergence(&mut history),
            Self::NegativeStock => plant_negative_stock(&mut history),
            Self::NonConservation => plant_non_conservation(&mut history),
            _ => {}
        }
        history
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    /// A history of any command sequence on a correct cluster passes.
    #[test]
    fn a_correct_cluster_always_passes(ops in prop::collection::vec(op(), 0..40)) {
        let report = check(&run_ops(&ops).finish());
        prop_assert!(report.passed(), "{}", report);
        prop_assert!(report.notes.is_empty(), "{:?}", report.notes);
    }

    /// One planted fault of any kind is reported, as exactly its kind.
    #[test]
    fn a_planted_fault_is_reported_as_exactly_its_kind(
        ops in prop::collection::vec(op(), 0..30),
        plant in prop::sample::select(Plant::ALL.to_vec()),
        planted in spec(),
    ) {
        let history = plant.apply(run_ops(&ops), &planted.command());
        let report = check(&history);
        prop_assert_eq!(kinds(&report), BTreeSet::from([plant.reported_as()]), "{}", report);
    }
}
