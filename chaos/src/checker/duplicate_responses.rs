//! Duplicate submissions whose responses are not byte-identical: clients
//! that sent one key with one command and were told different things, and
//! published duplicate slots that do not repeat their original's envelope.
//! Two answers may differ only when both are fresh evaluations at least
//! `idempotency_ttl` of stream time apart (the first entry had expired).

use std::collections::{BTreeMap, BTreeSet};

use protocol::position::CommandPosition;
use serde::Serialize;

use protocol::envelope::EnvelopeVerdict;

use super::view::{Answer, Envelope, KEY_REUSED, SlotKind, View};
use super::{Finding, FindingDetail, Position};
use crate::history::{Command, RawBytes, SubmissionId};

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum DuplicateMismatch {
    /// Submissions of one key and command answered with different bytes.
    Answers {
        key: String,
        command: Command,
        answers: Vec<AnsweredBytes>,
    },
    /// A duplicate slot whose output is not its original's envelope.
    PublishedDuplicate {
        position: Position,
        original: Position,
        duplicate: RawBytes,
        original_output: RawBytes,
    },
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct AnsweredBytes {
    pub submission: SubmissionId,
    pub status: u16,
    pub body: RawBytes,
}

/// covers: gateway.StatusFollowsFromOutcomeBytes, warden.DuplicateOutputEqualsStoredResponse, warden.ResponseNeverChanges, arbiter.DuplicateKeepsOriginalEnvelope
pub(super) fn check(view: &View<'_>, findings: &mut Vec<Finding>) {
    answers(view, findings);
    published_duplicates(view, findings);
}

type Answered<'a> = (SubmissionId, u16, &'a [u8], &'a Envelope);

fn answers(view: &View<'_>, findings: &mut Vec<Finding>) {
    let mut by_request: BTreeMap<(&str, &Command), Vec<Answered<'_>>> = BTreeMap::new();
    for (submission, answer) in &view.answers {
        // A reused-key rejection is computed per position and a dead letter
        // owns no entry: neither is a stored response that retries repeat.
        let Answer::Outcome {
            status,
            bytes,
            envelope,
        } = answer
        else {
            continue;
        };
        if envelope.verdict != EnvelopeVerdict::DeadLettered
            && envelope.reason.as_deref() != Some(KEY_REUSED)
        {
            by_request
                .entry((submission.key.as_str(), &submission.command))
                .or_default()
                .push((submission.id, *status, bytes, envelope));
        }
    }
    for ((key, command), answered) in by_request {
        let distinct: BTreeSet<(u16, &[u8])> = answered
            .iter()
            .map(|&(_, status, bytes, _)| (status, bytes))
            .collect();
        if distinct.len() < 2 || expired_between(view, &answered) {
            continue;
        }
        findings.push(Finding::new(
            "gateway.StatusFollowsFromOutcomeBytes",
            format!(
                "{} submissions of key {key:?} with one command got {} different answers",
                answered.len(),
                distinct.len()
            ),
            answered.iter().map(|&(id, ..)| id).collect(),
            FindingDetail::DuplicateMismatch(DuplicateMismatch::Answers {
                key: key.to_owned(),
                command: command.clone(),
                answers: answered
                    .iter()
                    .map(|&(submission, status, body, _)| AnsweredBytes {
                        submission,
                        status,
                        body: RawBytes::from(body),
                    })
                    .collect(),
            }),
        ));
    }
}

/// Whether every different answer is a fresh evaluation in its own slot,
/// each at least a TTL of stream time after the one before: the Warden's
/// entry had expired, so a new one was legitimately made.
fn expired_between(view: &View<'_>, answered: &[Answered<'_>]) -> bool {
    let mut evaluations: BTreeMap<CommandPosition, &[u8]> = BTreeMap::new();
    for &(_, _, bytes, envelope) in answered {
        let position = envelope.position;
        let fresh_here = view
            .slots
            .get(&position)
            .is_some_and(|slot| slot.kind == SlotKind::Fresh && slot.bytes == bytes);
        if !fresh_here
            || evaluations
                .insert(position, bytes)
                .is_some_and(|b| b != bytes)
        {
            return false;
        }
    }
    let times: Vec<Option<i64>> = evaluations
        .keys()
        .map(|p| view.stream_time((p.partition, p.offset)))
        .collect();
    times.windows(2).all(|pair| match (pair[0], pair[1]) {
        (Some(earlier), Some(later)) => {
            later >= earlier.saturating_add(view.run.idempotency_ttl_ms)
        }
        _ => false,
    })
}

fn published_duplicates(view: &View<'_>, findings: &mut Vec<Finding>) {
    for slot in view.slots.values() {
        let SlotKind::Duplicate { of } = slot.kind else {
            continue;
        };
        let Some(original) = view.slots.get(&of) else {
            continue; // the original's record is not published: nothing to compare
        };
        if original.bytes == slot.bytes {
            continue;
        }
        findings.push(Finding::new(
            "warden.DuplicateOutputEqualsStoredResponse",
            format!(
                "the duplicate at {} does not repeat the envelope of its original at {of}",
                slot.position
            ),
            Vec::new(),
            FindingDetail::DuplicateMismatch(DuplicateMismatch::PublishedDuplicate {
                position: slot.position.into(),
                original: of.into(),
                duplicate: RawBytes::from(slot.bytes),
                original_output: RawBytes::from(original.bytes),
            }),
        ));
    }
}
