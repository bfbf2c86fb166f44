//! The gateway's deterministic core: packing, waiting, observing outcomes.
//!
//! Inputs in (submissions, produce results, publications, time), effects
//! out through [`GatewayCore::take_ready`]: packs to produce and answers to
//! hand to waiting HTTP exchanges. No I/O, no clock: the shell passes `now`.

use domain::inventory::partition_for_sku;
use foldhash::{HashMap, HashMapExt as _};
use protocol::position::{Offset, Partition};
use protocol::records::{Publication, Submission};

use crate::config::{GatewayConfig, Millis};
use crate::error::ApiError;
use crate::key_index::{CommandLookup, KeyIndex};
use crate::outcomes::{
    AgreedOutcome, CorruptPublication, Observation, ObservedOutcome, ObservedOutcomes,
    read_publication,
};
use crate::packer::{PackId, PackLimits, Packer, SealedPack, SubmissionId};
use crate::validation::ValidSubmission;
use crate::waiting::{WaitState, Waiter, WaitingTable};

/// The answer to one submission: its agreed outcome, or why there is none.
pub type SubmitAnswer = Result<AgreedOutcome, ApiError>;

/// Effects for the shell: produce these packs, send these answers.
#[derive(Debug, Default)]
pub struct Ready {
    pub packs: Vec<SealedPack>,
    pub answers: Vec<(SubmissionId, SubmitAnswer)>,
}

impl Ready {
    pub fn is_empty(&self) -> bool {
        self.packs.is_empty() && self.answers.is_empty()
    }
}

/// What became of one publication read from the outcome topic.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PublicationRead {
    /// First of its position; `answered` waiting submissions got their answer.
    Observed {
        answered: usize,
    },
    /// Its position was observed before.
    Ignored,
    Corrupt(CorruptPublication),
}

/// The gateway of one node process (`gateway.Gateway`).
#[derive(Debug)]
pub struct GatewayCore {
    config: GatewayConfig,
    next_submission: u64,
    packer: Packer,
    /// Sealed packs handed out and not yet acknowledged or failed, with
    /// their partition and submissions in pack order.
    producing: HashMap<PackId, (Partition, Vec<SubmissionId>)>,
    waiting: WaitingTable,
    observed: ObservedOutcomes,
    keys: KeyIndex,
    ready: Ready,
    ignored_publications: u64,
    corrupt_publications: u64,
}

impl GatewayCore {
    pub fn new(config: GatewayConfig) -> Self {
        config.assert_valid();
        Self {
            config,
            next_submission: 0,
            packer: Packer::new(
                config.input_partitions,
                PackLimits {
                    max_pack_commands: config.max_pack_commands,
                    flush_window_ms: config.pack_flush_window_ms,
                },
            ),
            producing: HashMap::new(),
            waiting: WaitingTable::new(config.max_pending_submissions),
            observed: ObservedOutcomes::new(config.max_observed_outputs),
            keys: KeyIndex::new(config.max_key_index_entries, config.idempotency_ttl_ms),
            ready: Ready::default(),
            ignored_publications: 0,
            corrupt_publications: 0,
        }
    }

    pub fn config(&self) -> &GatewayConfig {
        &self.config
    }

    /// Submissions packed or produced, waiting for their answer.
    pub fn pending(&self) -> usize {
        self.waiting.len()
    }

    /// spec: gateway.OverloadedGatewayShedsSubmission
    pub fn is_accepting(&self) -> bool {
        !self.waiting.is_full()
    }

    pub fn ignored_publications(&self) -> u64 {
        self.ignored_publications
    }

    pub fn corrupt_publications(&self) -> u64 {
        self.corrupt_publications
    }

    /// Packs a validated submission for its sku's partition; refused with
    /// `overloaded` when the waiting table is full.
    ///
    /// spec: gateway.ValidSubmissionJoinsOpenPack, gateway.OverloadedGatewayShedsSubmission
    pub fn submit(
        &mut self,
        now: Millis,
        submission: ValidSubmission,
    ) -> Result<SubmissionId, ApiError> {
        if !self.is_accepting() {
            return Err(ApiError::Overloaded);
        }
        let id = SubmissionId(self.next_submission);
        self.next_submission += 1;
        let partition = partition_for_sku(submission.command.sku(), self.config.input_partitions);
        let command = Submission {
            command: submission.command.encode(),
            idempotency_key: submission.idempotency_key,
        };
        let packed = self.packer.add(now, partition, id, command);
        self.waiting.insert(
            id,
            Waiter {
                partition,
                index: packed.index,
                state: WaitState::Packed { pack: packed.pack },
                deadline: now.saturating_add(self.config.submit_timeout_ms),
            },
        );
        if let Some(sealed) = packed.sealed {
            self.hand_out(sealed);
        }
        Ok(id)
    }

    /// The HTTP exchange ended without waiting for an answer (the client
    /// went away). A packed command stays in its pack: it may be applied,
    /// once.
    ///
    /// spec: gateway.ReplySentReleasesSubmission
    pub fn abandon(&mut self, id: SubmissionId) {
        self.waiting.remove(id);
    }

    /// Cuts packs whose flush window passed, times out submissions and
    /// forgets observed outcomes no longer needed.
    pub fn tick(&mut self, now: Millis) {
        let mut sealed = Vec::new();
        self.packer.cut_expired(now, &mut sealed);
        for pack in sealed {
            self.hand_out(pack);
        }
        self.time_out(now);
        self.forget_observed(now);
    }

    /// The earliest time [`tick`](Self::tick) has work to do.
    pub fn next_deadline(&self) -> Option<Millis> {
        [
            self.packer.next_cut_at(),
            self.waiting.next_deadline(),
            self.observed.next_forget_at(),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// spec: gateway.PackAcknowledgedAssignsPositions, gateway.OutcomeSeenBeforeAckAnswersAtOnce
    pub fn produce_acknowledged(&mut self, pack: PackId, offset: Offset) {
        let (partition, submissions) = self
            .producing
            .remove(&pack)
            .expect("a pack is acknowledged or failed once, after it was handed out");
        for id in submissions {
            if self.waiting.mark_produced(id, offset) {
                self.answer_if_observed(id, partition, offset);
            }
        }
    }

    /// spec: gateway.ProduceFailureAnswersUnavailable, gateway.RetryWithSameKeyIsSafe
    pub fn produce_failed(&mut self, pack: PackId) {
        let (_, submissions) = self
            .producing
            .remove(&pack)
            .expect("a pack is acknowledged or failed once, after it was handed out");
        for id in submissions {
            if self.waiting.remove(id).is_some() {
                self.ready.answers.push((id, Err(ApiError::ProduceFailed)));
            }
        }
    }

    /// spec: gateway.FirstPublicationOfOffsetObserved, gateway.RepeatedPublicationIgnored, gateway.CorruptPublicationDiscarded, gateway.AgreedOutcomeAnswersWaitingSubmissions, gateway.KeyIndexUpdatedFromOutcome
    pub fn publication_read(&mut self, now: Millis, publication: Publication) -> PublicationRead {
        let (partition, offset) = (publication.partition, publication.offset);
        if self.observed.contains(partition, offset) {
            self.ignored_publications += 1;
            return PublicationRead::Ignored;
        }
        let read = match read_publication(publication, self.config.max_pack_commands) {
            Ok(read) => read,
            Err(corrupt) => {
                self.corrupt_publications += 1;
                return PublicationRead::Corrupt(corrupt);
            }
        };
        let forget_at = now.saturating_add(self.config.submit_timeout_ms);
        let observation = self
            .observed
            .observe(partition, offset, read.outputs, forget_at);
        assert!(
            matches!(observation, Observation::Observed),
            "checked above"
        );
        self.keys
            .record(partition, read.record_timestamp, read.first_answers);
        let answers_before = self.ready.answers.len();
        for id in self.waiting.waiting_at(partition, offset) {
            self.answer_if_observed(id, partition, offset);
        }
        PublicationRead::Observed {
            answered: self.ready.answers.len() - answers_before,
        }
    }

    pub fn lookup_command(&self, key: &str, partition: Option<Partition>) -> CommandLookup {
        self.keys.lookup(key, partition)
    }

    pub fn take_ready(&mut self) -> Ready {
        std::mem::take(&mut self.ready)
    }

    fn hand_out(&mut self, sealed: SealedPack) {
        let previous = self
            .producing
            .insert(sealed.id, (sealed.partition, sealed.submissions.clone()));
        assert!(previous.is_none(), "pack ids are never reused");
        self.ready.packs.push(sealed);
    }

    /// The one place a submission gets an agreed outcome: from the outcome
    /// observed at its own (partition, offset), at its own index.
    ///
    /// spec: gateway.AnsweredOnlyFromPublishedOutcome, gateway.AnswerBodyIsAgreedOutcomeBytes, gateway.SuccessOnlyWhenAnswered, gateway.StatusFollowsFromOutcomeBytes
    fn answer_if_observed(&mut self, id: SubmissionId, partition: Partition, offset: Offset) {
        let waiter = *self.waiting.get(id).expect("a waiting submission");
        assert_eq!(waiter.state, WaitState::Produced { offset });
        assert_eq!(waiter.partition, partition);
        let Some(outcome) = self
            .observed
            .get(partition, offset)
            .and_then(|observed: &ObservedOutcome| observed.outcome_for(waiter.index))
            .cloned()
        else {
            // No outcome, or none at this index: the record at this offset
            // does not match the pack; the submission times out (504) and
            // the client retries safely with its key.
            return;
        };
        self.waiting.remove(id);
        self.ready.answers.push((id, Ok(outcome)));
    }

    /// spec: gateway.SubmissionTimesOut
    fn time_out(&mut self, now: Millis) {
        for id in self.waiting.expired(now) {
            self.waiting.remove(id);
            self.ready.answers.push((id, Err(ApiError::SubmitTimeout)));
        }
    }

    /// spec: gateway.ObservedOutcomeForgottenAfterSubmitTimeout
    fn forget_observed(&mut self, now: Millis) {
        for (partition, offset) in self.observed.due(now) {
            if self.waiting.references(partition, offset) {
                let later = now.saturating_add(self.config.submit_timeout_ms);
                self.observed.postpone(partition, offset, later);
            } else {
                self.observed.forget(partition, offset);
            }
        }
    }
}

#[cfg(test)]
mod tests;
