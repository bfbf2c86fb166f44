//! Unexpected: a command applied (evaluated fresh and published) that no
//! client submitted, or that the input log does not hold.

use std::collections::BTreeMap;

use serde::Serialize;

use super::view::View;
use super::{Finding, FindingDetail, Position};
use crate::history::Command;

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Unexpected {
    /// No submission that may have reached the log carries this key with
    /// this command (refused submissions produce nothing).
    NeverSubmitted {
        position: Position,
        key: String,
        /// `None` when neither the log nor the envelope says.
        command: Option<Command>,
        /// The commands submitted with this key, if any.
        submitted_with_key: Vec<Command>,
    },
    /// Published as evaluated at a position the input topic does not hold.
    NotInLog { position: Position, key: String },
}

/// covers: gateway.ValidSubmissionJoinsOpenPack, gateway.RejectedSubmissionProducesNothing, core.OutputsDependOnlyOnTheLog
pub(super) fn check(view: &View<'_>, findings: &mut Vec<Finding>) {
    let mut produced_by_key: BTreeMap<&str, Vec<&Command>> = BTreeMap::new();
    for (submission, answer) in &view.answers {
        if answer.may_have_been_produced() {
            produced_by_key
                .entry(submission.key.as_str())
                .or_default()
                .push(&submission.command);
        }
    }
    for slot in view.fresh_slots() {
        let Some(key) = slot.key() else { continue };
        let position = slot.position;
        let in_log = view
            .input
            .get(&(position.partition, position.offset))
            .is_some_and(|record| {
                usize::try_from(position.index).is_ok_and(|i| i < record.commands().len())
            });
        if view.has_input() && !in_log {
            findings.push(Finding::new(
                "core.OutputsDependOnlyOnTheLog",
                format!("key {key:?} was published as evaluated at {position}, which the input topic does not hold"),
                Vec::new(),
                FindingDetail::Unexpected(Unexpected::NotInLog {
                    position: position.into(),
                    key: key.to_owned(),
                }),
            ));
            continue;
        }
        let command = view.command_at(position);
        let submitted = produced_by_key.get(key).map_or(&[][..], Vec::as_slice);
        let matched = match &command {
            Some(command) => submitted.contains(&command),
            None => !submitted.is_empty(),
        };
        if matched {
            continue;
        }
        findings.push(Finding::new(
            "gateway.ValidSubmissionJoinsOpenPack",
            format!(
                "{position} applied key {key:?} with {command:?}, which no submission that could reach the log carried"
            ),
            Vec::new(),
            FindingDetail::Unexpected(Unexpected::NeverSubmitted {
                position: position.into(),
                key: key.to_owned(),
                command,
                submitted_with_key: submitted.iter().map(|c| (*c).clone()).collect(),
            }),
        ));
    }
}
