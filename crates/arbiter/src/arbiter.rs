//! The Arbiter core: one batch in, sealed records (or a halt) out.

use std::panic::resume_unwind;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;

use domain::{Domain, EntityStates, EvaluationContext};
use protocol::envelope::{RecordDigest, dead_letter_envelope, record_digest};
use protocol::position::{CommandPosition, Partition};

use crate::batch::{
    ArbiterHalt, BatchInput, CommandSlot, EvaluatedBatch, FreshCommand, FreshResponse,
    RecordContent, RecordInput, SealedRecord, StagedWrite,
};
use crate::config::ArbiterConfig;
use crate::evaluation::{DeclaredCommand, Evaluation, declare, evaluate_group};
use crate::grouping::{CausalGroup, causal_groups};

/// Evaluates batches of fresh commands through the domain `D`. Stateless
/// between batches: the caller hands batches of a partition over one at a
/// time, in offset order, each with entity states that include every write
/// of the batches before it.
#[derive(Debug)]
pub struct Arbiter<D> {
    domain: D,
    config: ArbiterConfig,
}

impl<D: Domain> Arbiter<D> {
    /// Panics on a config no pipeline can run with (no worker, no record).
    pub fn new(domain: D, config: ArbiterConfig) -> Self {
        assert!(
            config.max_evaluation_workers >= 1,
            "at least the pipeline thread evaluates"
        );
        assert!(
            config.max_batch_records >= 1,
            "a batch holds at least one record"
        );
        Self { domain, config }
    }

    pub fn domain(&self) -> &D {
        &self.domain
    }

    pub fn config(&self) -> &ArbiterConfig {
        &self.config
    }

    /// Evaluates every fresh command of `batch` as if one by one in log
    /// order against `entities` (the Registrar's pre-warmed states), fills
    /// every output slot and seals the records in offset order. Causal
    /// groups may run on worker threads; nothing returned depends on that,
    /// nor on where the batch boundaries fell, so a replay (which takes this
    /// same path: there is no other) yields the same bytes.
    ///
    /// On a domain failure or corrupt state nothing is sealed: the halt names
    /// the first failing command in log order.
    ///
    /// Panics when the batch breaks what the pipeline guarantees (another
    /// partition's context, 0 or more than `max_batch_records` records,
    /// offsets out of order, a pack above `max_pack_commands`, a fresh
    /// command naming another slot, a duplicate whose original is not a
    /// fresh command earlier in the batch): that is a bug upstream, not
    /// input.
    ///
    /// spec: arbiter.CompleteBatchEvaluation, arbiter.RecordsSealedInOffsetOrder, arbiter.ParallelEqualsSequential, arbiter.GroupingIsUnobservable, arbiter.ReplayEvaluatesIdentically
    pub fn evaluate_batch(
        &self,
        context: EvaluationContext,
        batch: &BatchInput<D::Command>,
        entities: &(dyn EntityStates + Sync),
    ) -> Result<EvaluatedBatch, ArbiterHalt> {
        assert_eq!(
            context.partition, batch.partition,
            "the batch is evaluated in its own partition's context"
        );
        let fresh = self.fresh_commands(batch);
        let mut declared = Vec::with_capacity(fresh.len());
        let mut first_halt = None;
        for command in fresh {
            match declare(&self.domain, command) {
                Ok(command) => declared.push(command),
                Err(halt) => {
                    // Commands before it may still fail first, as they
                    // would in sequential evaluation: evaluate those.
                    first_halt = Some(halt);
                    break;
                }
            }
        }
        let groups = causal_groups(&declared);
        let outcomes = self.evaluate_groups(context, &declared, &groups, entities);

        let mut evaluations: Vec<Option<Evaluation>> = Vec::new();
        evaluations.resize_with(declared.len(), || None);
        for (group, outcome) in groups.iter().zip(outcomes) {
            match outcome {
                Ok(group_evaluations) => {
                    place_evaluations(&mut evaluations, group, group_evaluations)
                }
                Err(halt) => first_halt = earlier_halt(first_halt, halt),
            }
        }
        if let Some(halt) = first_halt {
            return Err(halt);
        }

        let mut evaluations = evaluations
            .into_iter()
            .map(|evaluation| evaluation.expect("every fresh command was evaluated"));
        let mut records = Vec::with_capacity(batch.records.len());
        for record in &batch.records {
            let sealed = self.seal_record(batch.partition, record, &mut evaluations, &records);
            assert_eq!(
                sealed.outputs.len(),
                expected_outputs(record),
                "every slot of the record is filled"
            );
            records.push(sealed);
        }
        assert!(
            evaluations.next().is_none(),
            "every evaluation belongs to a slot"
        );
        Ok(EvaluatedBatch {
            partition: batch.partition,
            records,
        })
    }

    /// The batch's fresh commands in log order, checking the shape the
    /// pipeline guarantees.
    ///
    /// spec: arbiter.BatchWithinPollBound
    fn fresh_commands<'a>(
        &self,
        batch: &'a BatchInput<D::Command>,
    ) -> Vec<&'a FreshCommand<D::Command>> {
        let record_count = batch.records.len();
        assert!(
            (1..=self.config.max_batch_records).contains(&record_count),
            "a batch holds 1 to {} records, not {record_count}",
            self.config.max_batch_records
        );
        assert!(
            batch
                .records
                .windows(2)
                .all(|pair| pair[0].offset < pair[1].offset),
            "records are in offset order"
        );
        let mut fresh = Vec::new();
        for record in &batch.records {
            let RecordContent::Commands(slots) = &record.content else {
                continue;
            };
            assert!(
                slots.len() <= self.config.max_pack_commands,
                "a pack holds at most {} commands",
                self.config.max_pack_commands
            );
            for (index, slot) in slots.iter().enumerate() {
                match slot {
                    CommandSlot::Fresh(command) => {
                        assert_eq!(
                            command.position,
                            slot_position(batch.partition, record, index),
                            "a fresh command names the slot it sits in"
                        );
                        fresh.push(command);
                    }
                    CommandSlot::DuplicateOf { first_position } => {
                        // `fresh` holds the commands before this slot, in
                        // log order.
                        assert!(
                            fresh
                                .binary_search_by_key(first_position, |command| command.position)
                                .is_ok(),
                            "the duplicate at {} names {first_position}, which is not a fresh \
                             command earlier in the same batch",
                            slot_position(batch.partition, record, index)
                        );
                    }
                    CommandSlot::Answered { .. } => {}
                }
            }
        }
        fresh
    }

    /// Evaluates every group, on the pipeline thread or on up to
    /// `max_evaluation_workers` threads; either way the outcomes come back
    /// in group order.
    fn evaluate_groups(
        &self,
        context: EvaluationContext,
        declared: &[DeclaredCommand<'_, D::Command>],
        groups: &[CausalGroup],
        entities: &(dyn EntityStates + Sync),
    ) -> Vec<Result<Vec<Evaluation>, ArbiterHalt>> {
        let evaluate =
            |group: &CausalGroup| evaluate_group(&self.domain, context, declared, group, entities);
        let workers = self.config.max_evaluation_workers.min(groups.len());
        if workers <= 1 || declared.len() < self.config.parallel_evaluation_min_commands {
            return groups.iter().map(evaluate).collect();
        }

        let next_group = AtomicUsize::new(0);
        // Each worker takes the next unclaimed group until none is left and
        // returns its outcomes tagged with the group's ordinal.
        let drain = || {
            let mut finished = Vec::new();
            loop {
                let ordinal = next_group.fetch_add(1, Ordering::Relaxed);
                let Some(group) = groups.get(ordinal) else {
                    return finished;
                };
                finished.push((ordinal, evaluate(group)));
            }
        };
        let mut outcomes: Vec<Option<Result<Vec<Evaluation>, ArbiterHalt>>> = Vec::new();
        outcomes.resize_with(groups.len(), || None);
        thread::scope(|scope| {
            let helpers: Vec<_> = (1..workers).map(|_| scope.spawn(drain)).collect();
            let mut finished = drain();
            for helper in helpers {
                // Domain panics are caught inside; anything else is a bug of
                // this crate and goes on unwinding.
                finished.extend(
                    helper
                        .join()
                        .unwrap_or_else(|payload| resume_unwind(payload)),
                );
            }
            for (ordinal, outcome) in finished {
                assert!(outcomes[ordinal].is_none(), "each group is evaluated once");
                outcomes[ordinal] = Some(outcome);
            }
        });
        outcomes
            .into_iter()
            .map(|outcome| outcome.expect("every group was claimed by a worker"))
            .collect()
    }

    /// Fills every slot of one record (the domain's envelope for a fresh
    /// command, the Warden's stored bytes for an answered one, the
    /// original's envelope for a duplicate of a command earlier in the batch
    /// (sealed in `earlier` or in this record), the dead letter for an
    /// undecodable record), stages the accepted commands' writes and seals
    /// the record with the digest of its outputs.
    ///
    /// spec: arbiter.OpenRecordOutputsForBatch, arbiter.WardenAnsweredCommandTakesStoredOutput, arbiter.DuplicateKeepsOriginalEnvelope, arbiter.DeadLetteredRecordGetsDeadLetterOutput, arbiter.StageWritesOfAcceptedCommand, arbiter.WardenAnsweredCommandsNeverEvaluated, arbiter.EvaluatedSlotCarriesEvaluationOutcome, arbiter.DeadLetterSlotsOnlyInUndecodableRecords
    fn seal_record(
        &self,
        partition: Partition,
        record: &RecordInput<D::Command>,
        evaluations: &mut impl Iterator<Item = Evaluation>,
        earlier: &[SealedRecord],
    ) -> SealedRecord {
        let mut outputs = Vec::with_capacity(expected_outputs(record));
        let mut writes = Vec::new();
        let mut responses = Vec::new();
        match &record.content {
            RecordContent::DeadLettered { reason } => {
                outputs.push(dead_letter_envelope(partition, record.offset, reason));
            }
            RecordContent::Commands(slots) => {
                for slot in slots {
                    match slot {
                        CommandSlot::Answered { envelope } => outputs.push(envelope.clone()),
                        CommandSlot::DuplicateOf { first_position } => outputs
                            .push(original_envelope(earlier, &responses, *first_position).to_vec()),
                        CommandSlot::Fresh(command) => {
                            let Evaluation {
                                verdict,
                                envelope,
                                writes: entity_writes,
                            } = evaluations
                                .next()
                                .expect("one evaluation per fresh command");
                            writes.extend(entity_writes.into_iter().map(|write| StagedWrite {
                                key: write.key,
                                state: write.state,
                                position: command.position,
                            }));
                            outputs.push(envelope.clone());
                            responses.push(FreshResponse {
                                position: command.position,
                                idempotency_key: command.idempotency_key.clone(),
                                verdict,
                                envelope,
                            });
                        }
                    }
                }
            }
        }
        let digest = seal(&mut outputs, self.config.corrupt_outputs_for_detection_test);
        SealedRecord {
            offset: record.offset,
            outputs,
            digest,
            writes,
            responses,
        }
    }
}

/// Digests a record's outputs in index order. Under the test-only fault
/// flag, the lowest bit of the last byte of output 0 is flipped first, so
/// the corrupted bytes are what this instance persists, digests and would
/// publish (a decodable record without commands has nothing to corrupt).
///
/// spec: arbiter.SealRecordWithOutputDigest, arbiter.FaultInjectionCorruptsOutputs
fn seal(outputs: &mut [Vec<u8>], corrupt_outputs_for_detection_test: bool) -> RecordDigest {
    if corrupt_outputs_for_detection_test {
        if let Some(last_byte) = outputs.first_mut().and_then(|first| first.last_mut()) {
            *last_byte ^= 1;
        }
    }
    record_digest(outputs)
}

/// The envelope the fresh command at `first_position` was answered with, as
/// its response holds it: never the fault-injected output bytes, which
/// exist only once a record is sealed. `current` holds the responses of the
/// record being filled, so far.
///
/// spec: arbiter.DuplicateKeepsOriginalEnvelope
fn original_envelope<'a>(
    earlier: &'a [SealedRecord],
    current: &'a [FreshResponse],
    first_position: CommandPosition,
) -> &'a [u8] {
    let responses = match earlier.binary_search_by_key(&first_position.offset, |r| r.offset) {
        Ok(record) => &earlier[record].responses,
        Err(_) => current,
    };
    let response = responses
        .binary_search_by_key(&first_position, |response| response.position)
        .expect("a duplicate's original is a fresh command earlier in the batch");
    &responses[response].envelope
}

/// A record's output count: its command count, or one dead letter.
///
/// spec: arbiter.ExpectedOutputsMatchRecord, arbiter.EvaluatedBatchHasEveryOutput, arbiter.OneSlotPerIndex, arbiter.SlotIndexInRange
fn expected_outputs<C>(record: &RecordInput<C>) -> usize {
    match &record.content {
        RecordContent::DeadLettered { .. } => 1,
        RecordContent::Commands(slots) => slots.len(),
    }
}

fn slot_position<C>(
    partition: Partition,
    record: &RecordInput<C>,
    index: usize,
) -> CommandPosition {
    CommandPosition {
        partition,
        offset: record.offset,
        index: u32::try_from(index).expect("a pack's command count fits in u32"),
    }
}

/// Places one group's evaluations at their commands' log positions.
///
/// spec: arbiter.FreshCommandEvaluatedOnce
fn place_evaluations(
    evaluations: &mut [Option<Evaluation>],
    group: &CausalGroup,
    group_evaluations: Vec<Evaluation>,
) {
    assert_eq!(group.len(), group_evaluations.len());
    for (&command, evaluation) in group.iter().zip(group_evaluations) {
        let slot = &mut evaluations[command];
        assert!(slot.is_none(), "a fresh command is evaluated once");
        *slot = Some(evaluation);
    }
}

/// Sequential evaluation halts at the first failure in log order; groups
/// evaluated apart each report their own first one.
fn earlier_halt(current: Option<ArbiterHalt>, candidate: ArbiterHalt) -> Option<ArbiterHalt> {
    match current {
        Some(current) if current.position <= candidate.position => Some(current),
        _ => Some(candidate),
    }
}
