//! Lost: a command whose submission was acknowledged with an outcome, but
//! which no publication holds, or which an honest instance's final state
//! does not cover.

use std::collections::BTreeMap;

use protocol::position::{CommandPosition, Offset, Partition};
use serde::Serialize;

use super::view::{Answer, View};
use super::{Finding, FindingDetail, Position};
use crate::history::{InstanceId, RawBytes, SubmissionId};

/// Most submission ids one aggregated finding lists.
const MAX_LISTED_SUBMISSIONS: usize = 20;

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Lost {
    /// A client was answered with an outcome naming a record that no intact
    /// publication holds.
    NotPublished {
        submission: SubmissionId,
        key: String,
        named: Position,
        answer: RawBytes,
    },
    /// An honest instance ended with its applied offset below the records
    /// of acknowledged commands: its state does not hold them.
    NotApplied {
        instance: InstanceId,
        partition: Partition,
        applied_offset: Offset,
        acknowledged: usize,
        first: Position,
    },
}

/// covers: inventory.ExactlyOnceApplication, inventory.AcceptedCommandsAreApplied, gateway.AnsweredOnlyFromPublishedOutcome
pub(super) fn check(view: &View<'_>, findings: &mut Vec<Finding>) {
    let mut acknowledged: Vec<(CommandPosition, SubmissionId)> = Vec::new();
    for (submission, answer) in &view.answers {
        let Answer::Outcome {
            bytes, envelope, ..
        } = answer
        else {
            continue;
        };
        let named = envelope.position;
        if view.kept.contains_key(&(named.partition, named.offset)) {
            acknowledged.push((named, submission.id));
            continue;
        }
        findings.push(Finding::new(
            "gateway.AnsweredOnlyFromPublishedOutcome",
            format!(
                "key {:?} was answered with an outcome at {named}, which no intact publication holds",
                submission.key
            ),
            vec![submission.id],
            FindingDetail::Lost(Lost::NotPublished {
                submission: submission.id,
                key: submission.key.clone(),
                named: named.into(),
                answer: RawBytes::from(*bytes),
            }),
        ));
    }
    acknowledged.sort_unstable();

    for instance in &view.honest {
        let mut behind: BTreeMap<Partition, Vec<(CommandPosition, SubmissionId)>> = BTreeMap::new();
        for &(position, submission) in &acknowledged {
            if position.offset > instance.applied_offset(position.partition) {
                behind
                    .entry(position.partition)
                    .or_default()
                    .push((position, submission));
            }
        }
        for (partition, missing) in behind {
            let applied_offset = instance.applied_offset(partition);
            let first = missing[0].0;
            findings.push(Finding::new(
                "inventory.ExactlyOnceApplication",
                format!(
                    "instance {} applied partition {partition} up to offset {applied_offset}, \
                     below {} acknowledged command(s), the first at {first}",
                    instance.instance,
                    missing.len()
                ),
                missing
                    .iter()
                    .take(MAX_LISTED_SUBMISSIONS)
                    .map(|&(_, id)| id)
                    .collect(),
                FindingDetail::Lost(Lost::NotApplied {
                    instance: instance.instance,
                    partition,
                    applied_offset,
                    acknowledged: missing.len(),
                    first: first.into(),
                }),
            ));
        }
    }
}
