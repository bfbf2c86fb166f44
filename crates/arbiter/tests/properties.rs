//! Properties of the Arbiter with the inventory domain: evaluation in causal
//! groups, on any number of workers and in any batching, gives the bytes of
//! plain sequential evaluation.

mod support;

use std::collections::BTreeSet;

use arbiter::{BatchInput, CommandSlot, RecordContent};
use domain::Domain;
use domain::inventory::Inventory;
use proptest::prelude::*;
use protocol::envelope::{EnvelopeVerdict, record_digest};
use support::{
    CONTEXT, PARTITION, Responses, all_outcomes, answer_duplicates, arbiter, evaluate_in_batches,
    evaluate_sequentially, initial_store, inventory_log, outcomes,
};

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    /// covers: arbiter.ParallelEqualsSequential, arbiter.EvaluateGroupInLogOrder, arbiter.EvaluateFreshCommand, arbiter.StageWritesOfAcceptedCommand, arbiter.RejectedCommandChangesNoEntity
    #[test]
    fn any_worker_count_gives_the_bytes_of_sequential_evaluation(
        log in inventory_log(24),
        store in initial_store(),
        workers in 1usize..5,
    ) {
        let (expected, expected_store) = evaluate_sequentially(&log, store.clone());
        // Threshold 0: even a tiny batch goes to the workers.
        let (batches, final_store) =
            evaluate_in_batches(&arbiter(workers, 0), &log, [log.len()], store);
        prop_assert_eq!(all_outcomes(&batches), expected);
        prop_assert_eq!(final_store, expected_store);
    }

    /// covers: arbiter.GroupingIsUnobservable, arbiter.RecordsSealedInOffsetOrder
    #[test]
    fn batch_boundaries_change_no_output_digest_or_state(
        log in inventory_log(24),
        store in initial_store(),
        sizes in proptest::collection::vec(1usize..6, 0..24),
        workers in 1usize..4,
    ) {
        let (whole, whole_store) =
            evaluate_in_batches(&arbiter(1, 0), &log, [log.len()], store.clone());
        let (split, split_store) = evaluate_in_batches(&arbiter(workers, 0), &log, sizes, store);
        prop_assert_eq!(all_outcomes(&split), all_outcomes(&whole));
        prop_assert_eq!(split_store, whole_store);
        let offsets: Vec<i64> = split.iter().flat_map(|b| &b.records).map(|r| r.offset).collect();
        prop_assert_eq!(offsets, log.iter().map(|r| r.offset).collect::<Vec<_>>());
    }

    /// covers: arbiter.ReplayEvaluatesIdentically
    #[test]
    fn replay_from_a_checkpoint_reproduces_the_live_run(
        log in inventory_log(24),
        store in initial_store(),
        checkpoint in any::<prop::sample::Index>(),
        live_sizes in proptest::collection::vec(1usize..8, 0..24),
        replay_sizes in proptest::collection::vec(1usize..8, 0..24),
        replay_workers in 1usize..4,
    ) {
        let (live, live_store) =
            evaluate_in_batches(&arbiter(2, 0), &log, live_sizes, store.clone());
        // The Ledger's state as of the checkpoint record: the initial state
        // and every staged write up to and including it.
        let applied = checkpoint.index(log.len());
        let mut durable = store;
        let live_records: Vec<_> = live.iter().flat_map(|b| b.records.clone()).collect();
        for record in &live_records[..=applied] {
            for write in &record.writes {
                durable.0.insert(write.key.clone(), write.state.clone());
            }
        }
        // Duplicates of commands up to the checkpoint: the Warden answers
        // them from its durable entries.
        let durable_answers: Responses = live_records[..=applied]
            .iter()
            .flat_map(|record| &record.responses)
            .map(|response| (response.position, response.envelope.clone()))
            .collect();
        let (replayed, replay_store) = evaluate_in_batches(
            &arbiter(replay_workers, 0),
            &answer_duplicates(&log[applied + 1..], &durable_answers),
            replay_sizes,
            durable,
        );
        let replayed_records: Vec<_> = replayed.into_iter().flat_map(|b| b.records).collect();
        prop_assert_eq!(&replayed_records[..], &live_records[applied + 1..]);
        prop_assert_eq!(replay_store, live_store);
    }

    /// covers: arbiter.OpenRecordOutputsForBatch, arbiter.CompleteBatchEvaluation, arbiter.SealRecordWithOutputDigest, arbiter.ExpectedOutputsMatchRecord, arbiter.EvaluatedBatchHasEveryOutput, arbiter.OneSlotPerIndex, arbiter.SlotIndexInRange, arbiter.WardenAnsweredCommandTakesStoredOutput, arbiter.WardenAnsweredCommandsNeverEvaluated, arbiter.DuplicateKeepsOriginalEnvelope, arbiter.DeadLetteredRecordGetsDeadLetterOutput, arbiter.DeadLetterSlotsOnlyInUndecodableRecords, arbiter.EvaluatedSlotCarriesEvaluationOutcome, arbiter.FreshCommandEvaluatedOnce, arbiter.EvaluationVerdictFromDomain, arbiter.StagedWritesOnlyFromAcceptedCommands, arbiter.StagedWritesWithinTouchedKeys, arbiter.RejectedCommandChangesNoEntity
    #[test]
    fn every_slot_is_filled_from_its_source_and_every_record_sealed(
        log in inventory_log(24),
        store in initial_store(),
        workers in 1usize..4,
    ) {
        let input = BatchInput { partition: PARTITION, records: log.clone() };
        let evaluated = arbiter(workers, 0)
            .evaluate_batch(CONTEXT, &input, &store)
            .expect("the inventory domain keeps its contract");
        prop_assert_eq!(evaluated.partition, PARTITION);
        prop_assert_eq!(evaluated.records.len(), log.len());
        for (record, sealed) in log.iter().zip(&evaluated.records) {
            prop_assert_eq!(sealed.offset, record.offset);
            prop_assert_eq!(sealed.digest, record_digest(&sealed.outputs));
            let is_dead_letter = |bytes: &[u8]| {
                String::from_utf8_lossy(bytes).contains(r#""verdict":"dead_lettered""#)
            };
            match &record.content {
                RecordContent::DeadLettered { .. } => {
                    prop_assert_eq!(sealed.outputs.len(), 1);
                    prop_assert!(is_dead_letter(&sealed.outputs[0]));
                    prop_assert!(sealed.writes.is_empty() && sealed.responses.is_empty());
                }
                RecordContent::Commands(slots) => {
                    prop_assert_eq!(sealed.outputs.len(), slots.len());
                    prop_assert!(!sealed.outputs.iter().any(|o| is_dead_letter(o)));
                    let mut responses = sealed.responses.iter();
                    let mut accepted = BTreeSet::new();
                    for (index, (slot, output)) in slots.iter().zip(&sealed.outputs).enumerate() {
                        match slot {
                            CommandSlot::Answered { envelope } => prop_assert_eq!(output, envelope),
                            CommandSlot::DuplicateOf { first_position } => {
                                // Not evaluated: no response, no write; the
                                // bytes are the original's response.
                                let original = evaluated
                                    .records
                                    .iter()
                                    .flat_map(|r| &r.responses)
                                    .find(|r| r.position == *first_position)
                                    .expect("the original is a fresh command of the batch");
                                prop_assert!(*first_position < support::position(record.offset, index as u32));
                                prop_assert_eq!(output, &original.envelope);
                            }
                            CommandSlot::Fresh(fresh) => {
                                let response = responses.next().expect("a response per fresh command");
                                prop_assert_eq!(response.position, fresh.position);
                                prop_assert_eq!(response.position.index as usize, index);
                                prop_assert_eq!(&response.idempotency_key, &fresh.idempotency_key);
                                prop_assert_eq!(&response.envelope, output);
                                match response.verdict {
                                    EnvelopeVerdict::Accepted => { accepted.insert(fresh.position); }
                                    EnvelopeVerdict::Rejected => {}
                                    EnvelopeVerdict::DeadLettered => prop_assert!(false, "a fresh command is never dead-lettered"),
                                }
                                let declared = Inventory::default().touched_keys(&fresh.command);
                                for write in sealed.writes.iter().filter(|w| w.position == fresh.position) {
                                    prop_assert!(declared.contains(&write.key));
                                }
                            }
                        }
                    }
                    prop_assert!(responses.next().is_none());
                    // Writes come from accepted commands only, in log order.
                    prop_assert!(sealed.writes.iter().all(|w| accepted.contains(&w.position)));
                    prop_assert!(sealed.writes.windows(2).all(|p| p[0].position <= p[1].position));
                }
            }
        }
    }
}

/// Worker dispatch with the spec's default threshold: a batch above it goes
/// to two workers, one below it stays on the pipeline thread; both give the
/// reference bytes.
///
/// covers: arbiter.ParallelEqualsSequential, arbiter.PartitionBatchIntoCausalGroups
#[test]
fn batches_above_and_below_the_dispatch_threshold_agree_with_sequential_evaluation() {
    use domain::inventory::InventoryCommand;
    use support::{SlotSpec, Store, record};

    let skus = ["y", "w", "u", "s", "a", "c", "q", "x"];
    let command = |n: usize| {
        let sku = skus[n % skus.len()].to_owned();
        match n % 3 {
            0 => InventoryCommand::Receive {
                warehouse: "a".into(),
                sku,
                quantity: 5,
            },
            1 => InventoryCommand::Ship {
                warehouse: "a".into(),
                sku,
                quantity: 3,
            },
            _ => InventoryCommand::Transfer {
                from: "a".into(),
                to: "b".into(),
                sku,
                quantity: 2,
            },
        }
    };
    let log: Vec<_> = (0..40i64)
        .map(|offset| {
            let slots = (0..16)
                .map(|i| SlotSpec::Fresh(command(offset as usize * 16 + i)))
                .collect();
            record(offset, slots)
        })
        .collect();
    let (expected, _) = evaluate_sequentially(&log, Store::default());
    for records in [log.len(), 2] {
        let batch = BatchInput {
            partition: PARTITION,
            records: log[..records].to_vec(),
        };
        let evaluated = support::arbiter(2, 256)
            .evaluate_batch(CONTEXT, &batch, &Store::default())
            .expect("the inventory domain keeps its contract");
        assert_eq!(outcomes(&evaluated), expected[..records]);
    }
}
