//! Duplicated: one idempotency key evaluated fresh more than once within
//! its TTL (two applications at different positions). The Warden keys its
//! entries by (partition, key) and a fresh command replaces an expired
//! entry, so a second fresh application is legitimate only at least
//! `idempotency_ttl` of stream time after the one that opened the entry.
//! A submission that timed out may be applied once or not at all, never
//! twice: this check is what says so.

use std::collections::BTreeMap;

use protocol::position::{CommandPosition, Partition};
use serde::Serialize;

use super::view::{Answer, View};
use super::{Finding, FindingDetail, Position};
use crate::history::SubmissionId;

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Duplicated {
    pub partition: Partition,
    pub key: String,
    /// The fresh applications inside one TTL window, in log order.
    pub applications: Vec<Position>,
    /// Their stream times (`None`: not known).
    pub stream_times_ms: Vec<Option<i64>>,
    /// Every submission of the key and how it ended.
    pub submissions: Vec<KeySubmission>,
    /// Some submission of the key ended without an outcome (timeout,
    /// failure, 5xx): the retry-safety promise is the one broken.
    pub after_indeterminate: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct KeySubmission {
    pub id: SubmissionId,
    pub answer: String,
}

/// covers: gateway.RetryWithSameKeyIsSafe, inventory.ExactlyOnceApplication, warden.SequentialClassification
pub(super) fn check(view: &View<'_>, findings: &mut Vec<Finding>) {
    let mut fresh_by_key: BTreeMap<(Partition, &str), Vec<CommandPosition>> = BTreeMap::new();
    for slot in view.fresh_slots() {
        if let Some(key) = slot.key() {
            fresh_by_key
                .entry((slot.position.partition, key))
                .or_default()
                .push(slot.position);
        }
    }
    let mut submissions_by_key: BTreeMap<&str, Vec<(SubmissionId, &Answer<'_>)>> = BTreeMap::new();
    for (submission, answer) in &view.answers {
        submissions_by_key
            .entry(submission.key.as_str())
            .or_default()
            .push((submission.id, answer));
    }
    let ttl = view.run.idempotency_ttl_ms;
    for ((partition, key), positions) in fresh_by_key {
        for window in ttl_windows(view, &positions, ttl) {
            if window.len() < 2 {
                continue;
            }
            let submissions = submissions_by_key.get(key).map_or(&[][..], Vec::as_slice);
            let after_indeterminate = submissions
                .iter()
                .any(|(_, answer)| matches!(answer, Answer::Indeterminate));
            let listed: Vec<String> = window.iter().map(ToString::to_string).collect();
            findings.push(Finding::new(
                "gateway.RetryWithSameKeyIsSafe",
                format!(
                    "key {key:?} on partition {partition} was applied {} times within its TTL, at {}{}",
                    window.len(),
                    listed.join(", "),
                    if after_indeterminate {
                        " (a submission of it ended without an outcome)"
                    } else {
                        ""
                    }
                ),
                submissions.iter().map(|(id, _)| *id).collect(),
                FindingDetail::Duplicated(Duplicated {
                    partition,
                    key: key.to_owned(),
                    applications: window.iter().copied().map(Position::from).collect(),
                    stream_times_ms: window
                        .iter()
                        .map(|p| view.stream_time((p.partition, p.offset)))
                        .collect(),
                    submissions: submissions
                        .iter()
                        .map(|(id, answer)| KeySubmission {
                            id: *id,
                            answer: answer.describe(),
                        })
                        .collect(),
                    after_indeterminate,
                }),
            ));
        }
    }
}

/// Splits one key's fresh applications (log order) into TTL windows: a
/// window opens at an application and holds every later one before its
/// entry expires. An unknown stream time never closes a window.
fn ttl_windows(
    view: &View<'_>,
    positions: &[CommandPosition],
    ttl: i64,
) -> Vec<Vec<CommandPosition>> {
    let mut windows: Vec<Vec<CommandPosition>> = Vec::new();
    let mut opened_at: Option<i64> = None;
    for &position in positions {
        let time = view.stream_time((position.partition, position.offset));
        let expired = match (opened_at, time) {
            (Some(opened), Some(time)) => time >= opened.saturating_add(ttl),
            _ => windows.is_empty(),
        };
        match windows.last_mut() {
            Some(window) if !expired => window.push(position),
            _ => {
                windows.push(vec![position]);
                opened_at = time;
            }
        }
    }
    windows
}
