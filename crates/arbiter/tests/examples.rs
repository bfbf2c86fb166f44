//! Worked examples of single rules, with the exact bytes.

mod support;

use arbiter::{ArbiterConfig, BatchInput, RecordContent, RecordInput, StagedWrite};
use domain::inventory::{Inventory, InventoryCommand, receive, ship, stock_key};
use protocol::envelope::record_digest;
use support::{CONTEXT, PARTITION, SlotSpec, Store, position, record};

fn text(bytes: &[u8]) -> &str {
    std::str::from_utf8(bytes).expect("envelopes are UTF-8")
}

/// covers: arbiter.EvaluateFreshCommand, arbiter.StageWritesOfAcceptedCommand, arbiter.EnvelopeIsCanonicalJson
#[test]
fn an_accepted_command_gets_its_envelope_and_stages_its_write() {
    let batch = BatchInput {
        partition: PARTITION,
        records: vec![record(7, vec![SlotSpec::Fresh(receive("a", "y", 5))])],
    };
    let evaluated = support::arbiter(1, 256)
        .evaluate_batch(CONTEXT, &batch, &Store::default())
        .expect("evaluates");
    let sealed = &evaluated.records[0];
    assert_eq!(
        text(&sealed.outputs[0]),
        r#"{"partition":0,"offset":7,"index":0,"key":"key-7-0","verdict":"accepted","result":{"type":"receive","warehouse":"a","sku":"y","quantity":5,"level":5}}"#
    );
    assert_eq!(
        sealed.writes,
        vec![StagedWrite {
            key: stock_key("a", "y"),
            state: b"5".to_vec(),
            position: position(7, 0)
        }]
    );
}

/// Receive 5, ship 10 (rejected: the level stays 5), ship 5 (accepted: it
/// saw 5, not a level the rejection left behind).
///
/// covers: arbiter.RejectedCommandChangesNoEntity
#[test]
fn a_rejected_command_leaves_the_view_of_the_next_command_untouched() {
    let slots = vec![
        SlotSpec::Fresh(receive("a", "y", 5)),
        SlotSpec::Fresh(ship("a", "y", 10)),
        SlotSpec::Fresh(ship("a", "y", 5)),
    ];
    let batch = BatchInput {
        partition: PARTITION,
        records: vec![record(0, slots)],
    };
    let evaluated = support::arbiter(1, 256)
        .evaluate_batch(CONTEXT, &batch, &Store::default())
        .expect("evaluates");
    let sealed = &evaluated.records[0];
    assert_eq!(
        text(&sealed.outputs[1]),
        r#"{"partition":0,"offset":0,"index":1,"key":"key-0-1","verdict":"rejected","reason":"insufficient_stock","result":{"type":"ship","warehouse":"a","sku":"y","quantity":10,"level":5}}"#
    );
    assert!(text(&sealed.outputs[2]).contains(r#""verdict":"accepted""#));
    let written: Vec<_> = sealed
        .writes
        .iter()
        .map(|w| (w.position.index, text(&w.state)))
        .collect();
    assert_eq!(written, vec![(0, "5"), (2, "0")]);
}

/// covers: arbiter.DeadLetteredRecordGetsDeadLetterOutput, arbiter.WardenAnsweredCommandTakesStoredOutput, arbiter.DuplicateKeepsOriginalEnvelope
#[test]
fn dead_letters_and_warden_answers_fill_their_slots_without_the_domain() {
    let stored = br#"{"partition":0,"offset":1,"index":0,"key":"k","verdict":"accepted","result":{"level":3}}"#.to_vec();
    let batch = BatchInput {
        partition: PARTITION,
        records: vec![
            RecordInput {
                offset: 4,
                content: RecordContent::DeadLettered {
                    reason: "malformed_record",
                },
            },
            record(
                5,
                vec![
                    SlotSpec::Answered(stored.clone()),
                    SlotSpec::Fresh(ship("a", "y", 1)),
                ],
            ),
        ],
    };
    let evaluated = support::arbiter(1, 256)
        .evaluate_batch(CONTEXT, &batch, &Store::default())
        .expect("evaluates");
    assert_eq!(
        evaluated.records[0].outputs,
        vec![br#"{"partition":0,"offset":4,"index":0,"verdict":"dead_lettered","reason":"malformed_record"}"#.to_vec()]
    );
    assert_eq!(evaluated.records[1].outputs[0], stored);
    assert_eq!(
        evaluated.records[1].responses.len(),
        1,
        "only the fresh command is answered by the Arbiter"
    );
    assert_eq!(evaluated.records[1].responses[0].position, position(5, 1));
}

/// covers: arbiter.FaultInjectionCorruptsOutputs, arbiter.SealRecordWithOutputDigest
#[test]
fn fault_injection_flips_the_last_bit_of_output_zero_and_digests_the_corrupted_bytes() {
    let batch = BatchInput {
        partition: PARTITION,
        records: vec![
            record(
                0,
                vec![
                    SlotSpec::Fresh(receive("a", "y", 5)),
                    SlotSpec::Fresh(ship("a", "y", 2)),
                ],
            ),
            RecordInput {
                offset: 1,
                content: RecordContent::DeadLettered {
                    reason: "invalid_command",
                },
            },
            record(2, vec![]),
        ],
    };
    let honest = support::arbiter(1, 256)
        .evaluate_batch(CONTEXT, &batch, &Store::default())
        .expect("evaluates");
    let faulty = arbiter::Arbiter::new(
        Inventory::default(),
        ArbiterConfig {
            corrupt_outputs_for_detection_test: true,
            ..ArbiterConfig::default()
        },
    )
    .evaluate_batch(CONTEXT, &batch, &Store::default())
    .expect("evaluates");
    for (honest, faulty) in honest.records.iter().zip(&faulty.records) {
        assert_eq!(faulty.digest, record_digest(&faulty.outputs));
        // Entity state and the Warden's responses stay correct.
        assert_eq!(faulty.writes, honest.writes);
        assert_eq!(faulty.responses, honest.responses);
        let Some(first) = honest.outputs.first() else {
            assert_eq!(
                faulty.digest, honest.digest,
                "a record without outputs has nothing to corrupt"
            );
            continue;
        };
        assert_ne!(faulty.digest, honest.digest);
        let mut corrupted = first.clone();
        *corrupted.last_mut().expect("an envelope is never empty") ^= 1;
        assert_eq!(faulty.outputs[0], corrupted);
        assert_eq!(faulty.outputs[1..], honest.outputs[1..]);
    }
    assert_eq!(
        text(&faulty.records[0].outputs[0]).chars().last(),
        Some('|'),
        "'}}' ^ 1 is '|'"
    );
}

fn batch_of(records: usize) -> BatchInput<InventoryCommand> {
    let records = (0..records)
        .map(|offset| {
            record(
                i64::try_from(offset).expect("small"),
                vec![SlotSpec::Fresh(receive("a", "y", 1))],
            )
        })
        .collect();
    BatchInput {
        partition: PARTITION,
        records,
    }
}

/// covers: arbiter.BatchWithinPollBound
#[test]
fn a_batch_of_up_to_max_poll_records_is_evaluated() {
    let max = ArbiterConfig::default().max_batch_records;
    assert_eq!(max, 512, "core.max_poll_records");
    let evaluated = support::arbiter(2, 256)
        .evaluate_batch(CONTEXT, &batch_of(max), &Store::default())
        .expect("evaluates");
    assert_eq!(evaluated.records.len(), max);
    assert_eq!(text(&evaluated.records[max - 1].writes[0].state), "512");
}

/// covers: arbiter.BatchWithinPollBound
#[test]
#[should_panic(expected = "a batch holds 1 to 512 records, not 513")]
fn a_batch_above_max_poll_records_is_a_pipeline_bug() {
    let _ = support::arbiter(1, 256).evaluate_batch(CONTEXT, &batch_of(513), &Store::default());
}

/// covers: arbiter.BatchWithinPollBound
#[test]
#[should_panic(expected = "a batch holds 1 to 512 records, not 0")]
fn an_empty_batch_is_a_pipeline_bug() {
    let _ = support::arbiter(1, 256).evaluate_batch(CONTEXT, &batch_of(0), &Store::default());
}

/// A record holding fresh commands and duplicates of them (one later in the
/// same record, one in the next record), and a record of duplicates only.
fn batch_with_duplicates() -> BatchInput<InventoryCommand> {
    BatchInput {
        partition: PARTITION,
        records: vec![
            record(
                5,
                vec![
                    SlotSpec::Fresh(receive("a", "y", 5)),
                    SlotSpec::DuplicateOf(position(5, 0)),
                    SlotSpec::Fresh(ship("a", "y", 2)),
                ],
            ),
            record(
                6,
                vec![
                    SlotSpec::DuplicateOf(position(5, 2)),
                    SlotSpec::DuplicateOf(position(5, 0)),
                    SlotSpec::Fresh(ship("a", "y", 1)),
                ],
            ),
        ],
    }
}

/// covers: arbiter.DuplicateKeepsOriginalEnvelope, arbiter.WardenAnsweredCommandTakesStoredOutput, arbiter.WardenAnsweredCommandsNeverEvaluated
#[test]
fn a_duplicate_of_a_command_earlier_in_the_batch_copies_its_envelope() {
    let evaluated = support::arbiter(1, 256)
        .evaluate_batch(CONTEXT, &batch_with_duplicates(), &Store::default())
        .expect("evaluates");
    let [first, second] = &evaluated.records[..] else {
        panic!("two records sealed");
    };
    let received = br#"{"partition":0,"offset":5,"index":0,"key":"key-5-0","verdict":"accepted","result":{"type":"receive","warehouse":"a","sku":"y","quantity":5,"level":5}}"#;
    let shipped = br#"{"partition":0,"offset":5,"index":2,"key":"key-5-2","verdict":"accepted","result":{"type":"ship","warehouse":"a","sku":"y","quantity":2,"level":3}}"#;
    assert_eq!(text(&first.outputs[0]), text(received));
    assert_eq!(text(&first.outputs[1]), text(received));
    assert_eq!(text(&first.outputs[2]), text(shipped));
    assert_eq!(text(&second.outputs[0]), text(shipped));
    assert_eq!(text(&second.outputs[1]), text(received));
    // The duplicates were not evaluated: the level went 5, 3, 2 (three
    // commands), not through a second receive or ship.
    assert_eq!(
        text(&second.outputs[2]),
        r#"{"partition":0,"offset":6,"index":2,"key":"key-6-2","verdict":"accepted","result":{"type":"ship","warehouse":"a","sku":"y","quantity":1,"level":2}}"#
    );
    assert_eq!(
        first.digest,
        record_digest(&[received.to_vec(), received.to_vec(), shipped.to_vec()])
    );
    assert_eq!(
        second.digest,
        record_digest(&[
            shipped.to_vec(),
            received.to_vec(),
            second.outputs[2].clone()
        ])
    );
    // Only fresh commands have responses and writes.
    let answered = |sealed: &arbiter::SealedRecord| {
        sealed
            .responses
            .iter()
            .map(|r| r.position)
            .collect::<Vec<_>>()
    };
    let written = |sealed: &arbiter::SealedRecord| {
        sealed
            .writes
            .iter()
            .map(|w| (w.position, text(&w.state).to_owned()))
            .collect::<Vec<_>>()
    };
    assert_eq!(answered(first), vec![position(5, 0), position(5, 2)]);
    assert_eq!(answered(second), vec![position(6, 2)]);
    assert_eq!(
        written(first),
        vec![(position(5, 0), "5".into()), (position(5, 2), "3".into())]
    );
    assert_eq!(written(second), vec![(position(6, 2), "2".into())]);
}

/// The fault flag corrupts output 0 of each record as it is sealed; a
/// duplicate copies its original's uncorrupted envelope (and, at index 0,
/// is corrupted in turn).
///
/// covers: arbiter.FaultInjectionCorruptsOutputs, arbiter.DuplicateKeepsOriginalEnvelope
#[test]
fn under_fault_injection_a_duplicate_copies_the_uncorrupted_envelope() {
    let batch = batch_with_duplicates();
    let honest = support::arbiter(1, 256)
        .evaluate_batch(CONTEXT, &batch, &Store::default())
        .expect("evaluates");
    let faulty = arbiter::Arbiter::new(
        Inventory::default(),
        ArbiterConfig {
            corrupt_outputs_for_detection_test: true,
            ..ArbiterConfig::default()
        },
    )
    .evaluate_batch(CONTEXT, &batch, &Store::default())
    .expect("evaluates");
    let corrupted = |bytes: &[u8]| {
        let mut bytes = bytes.to_vec();
        *bytes.last_mut().expect("an envelope is never empty") ^= 1;
        bytes
    };
    let (first, second) = (&faulty.records[0], &faulty.records[1]);
    let received = &honest.records[0].outputs[0];
    let shipped = &honest.records[0].outputs[2];
    assert_eq!(first.outputs[0], corrupted(received));
    assert_eq!(&first.outputs[1], received, "copied before sealing");
    assert_eq!(
        second.outputs[0],
        corrupted(shipped),
        "output 0 of its record"
    );
    assert_eq!(&second.outputs[1], received, "copied from the response");
    for (honest, faulty) in honest.records.iter().zip(&faulty.records) {
        assert_eq!(faulty.responses, honest.responses);
        assert_eq!(faulty.digest, record_digest(&faulty.outputs));
    }
}

fn duplicate_batch(first_position_of_duplicate: (i64, u32)) -> BatchInput<InventoryCommand> {
    let (offset, index) = first_position_of_duplicate;
    BatchInput {
        partition: PARTITION,
        records: vec![
            record(
                1,
                vec![
                    SlotSpec::Fresh(receive("a", "y", 5)),
                    SlotSpec::Answered(b"{\"stored\":1}".to_vec()),
                    SlotSpec::DuplicateOf(position(offset, index)),
                    SlotSpec::Fresh(receive("a", "y", 1)),
                ],
            ),
            record(2, vec![SlotSpec::Fresh(receive("a", "y", 1))]),
        ],
    }
}

fn evaluate_duplicate_batch(first_position_of_duplicate: (i64, u32)) {
    let _ = support::arbiter(1, 256).evaluate_batch(
        CONTEXT,
        &duplicate_batch(first_position_of_duplicate),
        &Store::default(),
    );
}

#[test]
fn a_duplicate_of_the_first_fresh_command_is_well_formed() {
    let evaluated = support::arbiter(1, 256)
        .evaluate_batch(CONTEXT, &duplicate_batch((1, 0)), &Store::default())
        .expect("evaluates");
    assert_eq!(
        evaluated.records[0].outputs[2],
        evaluated.records[0].outputs[0]
    );
}

/// covers: arbiter.DuplicateKeepsOriginalEnvelope
#[test]
#[should_panic(
    expected = "the duplicate at 0/1#2 names 0/1#3, which is not a fresh command earlier in the same batch"
)]
fn a_duplicate_of_a_later_command_in_its_record_is_a_pipeline_bug() {
    evaluate_duplicate_batch((1, 3));
}

/// covers: arbiter.DuplicateKeepsOriginalEnvelope
#[test]
#[should_panic(expected = "which is not a fresh command earlier in the same batch")]
fn a_duplicate_of_a_command_in_a_later_record_is_a_pipeline_bug() {
    evaluate_duplicate_batch((2, 0));
}

/// covers: arbiter.DuplicateKeepsOriginalEnvelope
#[test]
#[should_panic(expected = "which is not a fresh command earlier in the same batch")]
fn a_duplicate_of_itself_is_a_pipeline_bug() {
    evaluate_duplicate_batch((1, 2));
}

/// covers: arbiter.DuplicateKeepsOriginalEnvelope
#[test]
#[should_panic(expected = "which is not a fresh command earlier in the same batch")]
fn a_duplicate_of_an_answered_command_is_a_pipeline_bug() {
    evaluate_duplicate_batch((1, 1));
}

/// covers: arbiter.DuplicateKeepsOriginalEnvelope
#[test]
#[should_panic(expected = "which is not a fresh command earlier in the same batch")]
fn a_duplicate_of_a_command_of_an_earlier_batch_is_a_pipeline_bug() {
    evaluate_duplicate_batch((0, 0));
}
