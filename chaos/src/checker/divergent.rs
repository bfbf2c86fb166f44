//! Divergent: honest instances that hold different outputs for one record
//! or different states at the same applied offsets, and clients answered
//! with bytes that are not the agreed outcome. Byzantine instances are left
//! out: their divergence is the scenario.

use std::collections::BTreeMap;

use protocol::position::{Offset, Partition};
use serde::Serialize;

use super::view::{Answer, View, majority};
use super::{Finding, FindingDetail};
use crate::history::{AppliedOffset, HexBytes, InstanceId, RawBytes, SubmissionId};

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Divergent {
    /// An honest instance's record digests differ from the honest majority
    /// (or, without one, from the publication) on `differing` records of a
    /// partition, the first at `first_offset`.
    RecordDigests {
        instance: InstanceId,
        partition: Partition,
        first_offset: Offset,
        differing: usize,
        digest: HexBytes,
        reference: Option<HexBytes>,
    },
    /// An honest instance's state digest differs from the majority of the
    /// honest instances at the same applied offsets (`majority` is `None`
    /// when there is none).
    StateDigest {
        instance: InstanceId,
        applied: Vec<AppliedOffset>,
        digest: HexBytes,
        majority: Option<HexBytes>,
        same_offsets: Vec<InstanceId>,
    },
    /// A client was answered with an outcome that the agreed publication
    /// does not hold for its key.
    AnswerNotAgreed {
        submission: SubmissionId,
        key: String,
        status: u16,
        answer: RawBytes,
        published: Option<RawBytes>,
    },
    /// A client was answered with a success, or an envelope, that is no
    /// correct gateway's answer.
    MalformedAnswer {
        submission: SubmissionId,
        key: String,
        status: u16,
        answer: RawBytes,
        why: String,
    },
}

/// covers: core.CorrectInstancesAgree, recovery.ReplayFromAnyWatermarkIsIdentical, gateway.AnswerBodyIsAgreedOutcomeBytes, gateway.SuccessOnlyWhenAnswered
pub(super) fn check(view: &View<'_>, findings: &mut Vec<Finding>) {
    record_digests(view, findings);
    state_digests(view, findings);
    answers(view, findings);
}

fn record_digests(view: &View<'_>, findings: &mut Vec<Finding>) {
    // (instance, partition) -> (first offset, its digest, reference, count)
    type Deviation<'a> = (Offset, &'a HexBytes, Option<&'a HexBytes>, usize);
    let mut deviations: BTreeMap<(InstanceId, Partition), Deviation<'_>> = BTreeMap::new();
    for (record, held) in view.honest_digests() {
        if held.iter().all(|(_, digest)| *digest == held[0].1) {
            continue;
        }
        // Without an honest majority, the publication is the reference;
        // without either, every honest holder is named.
        let reference = majority(held.iter().map(|(_, digest)| *digest))
            .or_else(|| view.kept.get(&record).map(|p| &p.digest));
        let deviants = held
            .iter()
            .filter(|(_, digest)| reference.is_none_or(|r| r != *digest));
        for &(instance, digest) in deviants {
            deviations
                .entry((instance, record.0))
                .and_modify(|deviation| deviation.3 += 1)
                .or_insert((record.1, digest, reference, 1));
        }
    }
    for ((instance, partition), (first_offset, digest, reference, differing)) in deviations {
        findings.push(Finding::new(
            "core.CorrectInstancesAgree",
            format!(
                "instance {instance} holds {differing} record digest(s) on partition {partition} \
                 that differ from the honest majority, the first at offset {first_offset}: \
                 {digest} instead of {}",
                reference.map_or("(no majority)".to_owned(), ToString::to_string)
            ),
            Vec::new(),
            FindingDetail::Divergent(Divergent::RecordDigests {
                instance,
                partition,
                first_offset,
                differing,
                digest: digest.clone(),
                reference: reference.cloned(),
            }),
        ));
    }
}

fn state_digests(view: &View<'_>, findings: &mut Vec<Finding>) {
    let mut by_offsets: BTreeMap<Vec<Offset>, Vec<(InstanceId, &HexBytes)>> = BTreeMap::new();
    for instance in &view.honest {
        let Some(digest) = &instance.state_digest else {
            continue;
        };
        let offsets = (0..view.run.input_partitions)
            .map(|partition| instance.applied_offset(partition))
            .collect();
        by_offsets
            .entry(offsets)
            .or_default()
            .push((instance.instance, digest));
    }
    for (offsets, group) in by_offsets {
        let majority = majority(group.iter().map(|(_, digest)| *digest));
        let same_offsets: Vec<InstanceId> = group.iter().map(|(id, _)| *id).collect();
        for &(instance, digest) in &group {
            if majority == Some(digest) || group.iter().all(|(_, d)| *d == digest) {
                continue;
            }
            let applied = (0u32..)
                .zip(&offsets)
                .map(|(partition, &offset)| AppliedOffset { partition, offset })
                .collect();
            findings.push(Finding::new(
                "core.CorrectInstancesAgree",
                format!(
                    "instance {instance}'s state digest {digest} differs from {} among instances \
                     {same_offsets:?} at the same applied offsets {offsets:?}",
                    majority.map_or("the others (no majority)".to_owned(), |m| format!(
                        "the majority's {m}"
                    ))
                ),
                Vec::new(),
                FindingDetail::Divergent(Divergent::StateDigest {
                    instance,
                    applied,
                    digest: digest.clone(),
                    majority: majority.cloned(),
                    same_offsets: same_offsets.clone(),
                }),
            ));
        }
    }
}

fn answers(view: &View<'_>, findings: &mut Vec<Finding>) {
    let mut outputs_by_key: BTreeMap<&str, Vec<&[u8]>> = BTreeMap::new();
    for slot in view.slots.values() {
        if let Some(key) = slot.key() {
            outputs_by_key.entry(key).or_default().push(slot.bytes);
        }
    }
    for (submission, answer) in &view.answers {
        match answer {
            Answer::Outcome {
                status,
                bytes,
                envelope,
            } => {
                let named = envelope.position;
                if !view.kept.contains_key(&(named.partition, named.offset)) {
                    continue; // lost: reported by that check
                }
                // A duplicate's answer is the bytes in its own slot, which
                // hold the original's envelope: any slot of the key will do.
                let published = view.slots.get(&named).map(|slot| slot.bytes);
                let key_matches = envelope
                    .key
                    .as_deref()
                    .is_none_or(|key| key == submission.key);
                let agreed = published == Some(*bytes)
                    || outputs_by_key
                        .get(submission.key.as_str())
                        .is_some_and(|outputs| outputs.contains(bytes));
                if key_matches && agreed {
                    continue;
                }
                findings.push(Finding::new(
                    "gateway.AnswerBodyIsAgreedOutcomeBytes",
                    format!(
                        "key {:?} was answered {status} with bytes that no agreed publication \
                         holds for it (naming {named})",
                        submission.key
                    ),
                    vec![submission.id],
                    FindingDetail::Divergent(Divergent::AnswerNotAgreed {
                        submission: submission.id,
                        key: submission.key.clone(),
                        status: *status,
                        answer: RawBytes::from(*bytes),
                        published: published.map(RawBytes::from),
                    }),
                ));
            }
            Answer::Malformed { status, bytes, why } => findings.push(Finding::new(
                "gateway.SuccessOnlyWhenAnswered",
                format!("key {:?} was answered {status}: {why}", submission.key),
                vec![submission.id],
                FindingDetail::Divergent(Divergent::MalformedAnswer {
                    submission: submission.id,
                    key: submission.key.clone(),
                    status: *status,
                    answer: RawBytes::from(*bytes),
                    why: (*why).to_owned(),
                }),
            )),
            Answer::Refused | Answer::Indeterminate => {}
        }
    }
}
