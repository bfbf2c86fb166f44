use super::*;
use crate::test_support::*;

const MAX_PACK: usize = 128;

/// covers: gateway.CorruptPublicationDiscarded
#[test]
fn a_publication_whose_outputs_do_not_hash_to_its_digest_is_corrupt() {
    let mut tampered = publication(0, 7, accepted_record(0, 7, 2), 1);
    tampered.outputs[1] = rejected(0, 7, 1, "key-1", "insufficient_stock");
    assert_eq!(
        read_publication(tampered, MAX_PACK).map(|_| ()),
        Err(CorruptPublication::DigestMismatch)
    );
    let mut short_digest = publication(0, 7, accepted_record(0, 7, 1), 1);
    short_digest.digest.truncate(31);
    assert_eq!(
        read_publication(short_digest, MAX_PACK).map(|_| ()),
        Err(CorruptPublication::DigestMismatch)
    );
}

/// covers: gateway.CorruptPublicationDiscarded
#[test]
fn outputs_that_are_not_envelopes_or_too_many_are_corrupt_even_with_a_matching_digest() {
    let not_json = publication(0, 1, vec![b"not json".to_vec()], 1);
    assert_eq!(
        read_publication(not_json, MAX_PACK).map(|_| ()),
        Err(CorruptPublication::UnreadableEnvelope { index: 0 })
    );
    let odd_verdict = publication(
        0,
        1,
        vec![
            accepted(0, 1, 0, "k"),
            br#"{"partition":0,"offset":1,"index":1,"key":"k2","verdict":"duplicate"}"#.to_vec(),
        ],
        1,
    );
    assert_eq!(
        read_publication(odd_verdict, MAX_PACK).map(|_| ()),
        Err(CorruptPublication::UnreadableEnvelope { index: 1 })
    );
    let too_many = publication(0, 1, accepted_record(0, 1, 3), 1);
    assert_eq!(
        read_publication(too_many, 2).map(|_| ()),
        Err(CorruptPublication::TooManyOutputs { count: 3 })
    );
}

/// covers: gateway.StatusFollowsFromOutcomeBytes
#[test]
fn the_verdict_in_the_envelope_chooses_the_status_and_the_bytes_stay_verbatim() {
    let outputs = vec![
        accepted(3, 9, 0, "a"),
        rejected(3, 9, 1, "b", "insufficient_stock"),
    ];
    let read = read_publication(publication(3, 9, outputs.clone(), 5), MAX_PACK).expect("intact");
    let statuses: Vec<u16> = read
        .outputs
        .iter()
        .map(AgreedOutcome::http_status)
        .collect();
    assert_eq!(statuses, vec![200, 409]);
    for (read, written) in read.outputs.iter().zip(&outputs) {
        assert_eq!(read.bytes.as_ref(), written.as_slice());
    }
    let dead = read_publication(publication(3, 10, vec![dead_letter(3, 10)], 5), MAX_PACK)
        .expect("intact");
    assert_eq!(dead.outputs[0].http_status(), 422);
    let observed = ObservedOutcome {
        outputs: dead.outputs,
        forget_at: 0,
    };
    for index in [0, 1, 127] {
        let outcome = observed
            .outcome_for(index)
            .expect("every command of the record");
        assert_eq!(outcome.bytes.as_ref(), dead_letter(3, 10).as_slice());
    }
}

#[test]
fn only_commands_answered_by_evaluation_here_own_their_keys() {
    let outputs = vec![
        accepted(0, 20, 0, "fresh"),
        rejected(0, 20, 1, "short", "insufficient_stock"),
        // A duplicate carries its original's envelope: another offset.
        accepted(0, 4, 0, "dup"),
        rejected(0, 20, 3, "reused", "idempotency_key_reused"),
    ];
    let read = read_publication(publication(0, 20, outputs, 1), MAX_PACK).expect("intact");
    let owners: Vec<(u32, &str)> = read
        .first_answers
        .iter()
        .map(|a| (a.index, a.key.as_str()))
        .collect();
    assert_eq!(owners, vec![(0, "fresh"), (1, "short")]);
    let dead = read_publication(publication(0, 21, vec![dead_letter(0, 21)], 1), MAX_PACK)
        .expect("intact");
    assert!(dead.first_answers.is_empty());
}

fn outcome(text: &str) -> AgreedOutcome {
    AgreedOutcome {
        verdict: EnvelopeVerdict::Accepted,
        bytes: Bytes::copy_from_slice(text.as_bytes()),
    }
}

/// covers: gateway.FirstPublicationOfOffsetObserved, gateway.OneObservedOutcomePerOffset, gateway.RepeatedPublicationIgnored
#[test]
fn the_first_publication_of_a_position_stays() {
    let mut observed = ObservedOutcomes::new(16);
    assert!(matches!(
        observed.observe(0, 1, vec![outcome("first")], 10),
        Observation::Observed
    ));
    assert!(matches!(
        observed.observe(0, 1, vec![outcome("second")], 20),
        Observation::Repeated
    ));
    assert!(matches!(
        observed.observe(1, 1, vec![outcome("other partition")], 10),
        Observation::Observed
    ));
    assert_eq!(observed.len(), 2);
    let kept = observed
        .get(0, 1)
        .and_then(|o| o.outcome_for(0))
        .expect("held");
    assert_eq!(kept.bytes.as_ref(), b"first");
}

/// covers: gateway.ObservedOutcomeEvictedWhenFull
#[test]
fn held_outputs_stay_within_the_bound_by_evicting_the_oldest() {
    let mut observed = ObservedOutcomes::new(4);
    observed.observe(0, 1, vec![outcome("a"), outcome("b")], 10);
    observed.observe(0, 2, vec![], 11);
    observed.observe(0, 3, vec![outcome("c")], 12);
    assert_eq!(observed.held_outputs(), 4, "an empty record costs one");
    observed.observe(0, 4, vec![outcome("d"), outcome("e")], 13);
    assert!(!observed.contains(0, 1), "the oldest made room");
    assert!(observed.contains(0, 2) && observed.contains(0, 3) && observed.contains(0, 4));
    observed.observe(0, 5, vec![outcome("f"); 4], 14);
    assert_eq!(observed.len(), 1);
    assert!(observed.held_outputs() <= 4);
}

#[test]
fn due_outcomes_come_in_forget_order_and_postponing_moves_one_back() {
    let mut observed = ObservedOutcomes::new(16);
    observed.observe(0, 1, vec![outcome("a")], 10);
    observed.observe(0, 2, vec![outcome("b")], 12);
    assert_eq!(observed.due(9), vec![]);
    assert_eq!(observed.due(12), vec![(0, 1), (0, 2)]);
    observed.postpone(0, 1, 30);
    observed.forget(0, 2);
    assert_eq!(observed.next_forget_at(), Some(30));
    assert_eq!(observed.held_outputs(), 1);
}
