//! Corrupt publications: published outcomes that are not the honest,
//! agreed ones. Judged three ways:
//! - on their own: intact (digest over the outputs, envelopes, size),
//!   published with a quorum, one digest per record;
//! - against the honest instances' own record digests: a published digest
//!   held only by a corrupt copy (a byzantine instance's, say) and not by
//!   the honest majority;
//! - against a sequential replay of the input log through the real
//!   inventory domain: every evaluated slot must hold the envelope the
//!   domain gives for that command on the levels of the replay so far.
//!   The replay follows the Warden's classification as published (a
//!   wrong classification is the duplicate checks' business) and stops on
//!   a partition at the first record without an agreed publication.

use std::collections::{BTreeMap, BTreeSet};

use domain::{Domain as _, EntityKey, EntityStates, EvaluationContext, Verdict};
use protocol::envelope::{EnvelopeVerdict, dead_letter_envelope, encode_envelope};
use protocol::position::{CommandPosition, Offset, Partition};
use serde::Serialize;

use super::view::{KEY_REUSED, RecordId, SlotKind, View, majority};
use super::{Finding, FindingDetail, Position};
use crate::history::{HexBytes, InputContent, InstanceId, PublishedRecord, RawBytes};

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum CorruptPublication {
    /// Readers discard it: the outputs do not hash to the digest, there are
    /// more than a pack holds, or one is not an envelope.
    Discarded {
        partition: Partition,
        offset: Offset,
        publisher: InstanceId,
        why: String,
    },
    BelowQuorum {
        partition: Partition,
        offset: Offset,
        publisher: InstanceId,
        matching_copies: u32,
        required_copies: u32,
    },
    /// Intact publications of one record with different digests.
    Conflicting {
        partition: Partition,
        offset: Offset,
        /// (publisher, digest) of each distinct digest's first publication.
        digests: Vec<(InstanceId, HexBytes)>,
    },
    /// The published digest is not the honest majority's (`majority` is
    /// `None` when honest instances split evenly and none holds it).
    NotHonestMajority {
        partition: Partition,
        offset: Offset,
        publisher: InstanceId,
        digest: HexBytes,
        majority: Option<HexBytes>,
        /// Every instance, honest or not, whose copy has this digest.
        held_by: Vec<InstanceId>,
    },
    /// An evaluated slot that is not what the domain gives on the replay.
    DiffersFromReplay {
        position: Position,
        publisher: InstanceId,
        published: RawBytes,
        replayed: RawBytes,
    },
    /// A decodable record published with another number of outputs.
    WrongOutputCount {
        partition: Partition,
        offset: Offset,
        publisher: InstanceId,
        outputs: usize,
        commands: usize,
    },
    /// An envelope no correct instance writes in its slot.
    Misplaced {
        position: Position,
        publisher: InstanceId,
        output: RawBytes,
        why: String,
    },
    /// An outcome-topic record that is no publication.
    Unreadable {
        topic_partition: Partition,
        topic_offset: Offset,
        error: String,
    },
}

/// Runs every publication check; returns notes on what the replay could
/// not cover.
///
/// covers: clerk.NeverPublishWithoutQuorum, clerk.PublishedOutputMatchesAgreedDigest, clerk.OneAgreedDigestPerOffset, clerk.WhoPublishesNeverAffectsWhat, clerk.DetectionOnlyModeDetectsButDoesNotMask, core.OutputsDependOnlyOnTheLog, arbiter.EnvelopeIsCanonicalJson
pub(super) fn check(view: &View<'_>, findings: &mut Vec<Finding>) -> Vec<String> {
    each_publication(view, findings);
    conflicting(view, findings);
    honest_majority(view, findings);
    misplaced(view, findings);
    replay(view, findings)
}

fn push(
    findings: &mut Vec<Finding>,
    invariant: &'static str,
    message: String,
    detail: CorruptPublication,
) {
    findings.push(Finding::new(
        invariant,
        message,
        Vec::new(),
        FindingDetail::CorruptPublication(detail),
    ));
}

fn each_publication(view: &View<'_>, findings: &mut Vec<Finding>) {
    let required_copies = view.run.required_copies;
    for (publication, defect) in &view.publications {
        let PublishedRecord {
            partition,
            offset,
            publisher_id,
            matching_copies,
            ..
        } = **publication;
        if let Some(why) = defect {
            push(
                findings,
                "clerk.PublishedOutputMatchesAgreedDigest",
                format!(
                    "instance {publisher_id} published {partition}/{offset}, which readers discard: {why}"
                ),
                CorruptPublication::Discarded {
                    partition,
                    offset,
                    publisher: publisher_id,
                    why: why.clone(),
                },
            );
        }
        if matching_copies < required_copies {
            push(
                findings,
                "clerk.NeverPublishWithoutQuorum",
                format!(
                    "instance {publisher_id} published {partition}/{offset} with {matching_copies} \
                     matching copies, fewer than the required {required_copies}"
                ),
                CorruptPublication::BelowQuorum {
                    partition,
                    offset,
                    publisher: publisher_id,
                    matching_copies,
                    required_copies,
                },
            );
        }
    }
    for record in &view.history.unreadable_publications {
        push(
            findings,
            "clerk.PublishedOutputMatchesAgreedDigest",
            format!(
                "outcome record {}/{} is no publication: {}",
                record.topic_partition, record.topic_offset, record.error
            ),
            CorruptPublication::Unreadable {
                topic_partition: record.topic_partition,
                topic_offset: record.topic_offset,
                error: record.error.clone(),
            },
        );
    }
}

/// The intact publications of each record: one per distinct digest, in
/// read order.
fn intact_by_record<'h>(view: &View<'h>) -> BTreeMap<RecordId, Vec<&'h PublishedRecord>> {
    let mut by_record: BTreeMap<RecordId, Vec<&'h PublishedRecord>> = BTreeMap::new();
    for (publication, defect) in &view.publications {
        if defect.is_some() {
            continue;
        }
        let seen = by_record
            .entry((publication.partition, publication.offset))
            .or_default();
        if !seen.iter().any(|p| p.digest == publication.digest) {
            seen.push(publication);
        }
    }
    by_record
}

fn conflicting(view: &View<'_>, findings: &mut Vec<Finding>) {
    for ((partition, offset), publications) in intact_by_record(view) {
        if publications.len() < 2 {
            continue;
        }
        let digests: Vec<(InstanceId, HexBytes)> = publications
            .iter()
            .map(|p| (p.publisher_id, p.digest.clone()))
            .collect();
        push(
            findings,
            "clerk.OneAgreedDigestPerOffset",
            format!(
                "{partition}/{offset} was published with {} different digests: {digests:?}",
                digests.len()
            ),
            CorruptPublication::Conflicting {
                partition,
                offset,
                digests,
            },
        );
    }
}

fn honest_majority(view: &View<'_>, findings: &mut Vec<Finding>) {
    let honest = view.honest_digests();
    let mut holders: BTreeMap<(RecordId, &HexBytes), BTreeSet<InstanceId>> = BTreeMap::new();
    for instance in &view.history.instances {
        for held in &instance.record_digests {
            holders
                .entry(((held.partition, held.offset), &held.digest))
                .or_default()
                .insert(instance.instance);
        }
    }
    for (record, publications) in intact_by_record(view) {
        let Some(held) = honest.get(&record).filter(|held| !held.is_empty()) else {
            continue;
        };
        let majority = majority(held.iter().map(|(_, digest)| *digest));
        for publication in publications {
            let digest = &publication.digest;
            let honest_copy = match majority {
                Some(majority) => majority == digest,
                None => held.iter().any(|(_, d)| *d == digest),
            };
            if honest_copy {
                continue;
            }
            let held_by: Vec<InstanceId> = holders
                .get(&(record, digest))
                .map(|set| set.iter().copied().collect())
                .unwrap_or_default();
            push(
                findings,
                "clerk.PublishedOutputMatchesAgreedDigest",
                format!(
                    "instance {} published {}/{} with digest {digest}, held by instances \
                     {held_by:?}, not the honest majority's {}",
                    publication.publisher_id,
                    record.0,
                    record.1,
                    majority.map_or("(none)".to_owned(), ToString::to_string)
                ),
                CorruptPublication::NotHonestMajority {
                    partition: record.0,
                    offset: record.1,
                    publisher: publication.publisher_id,
                    digest: digest.clone(),
                    majority: majority.cloned(),
                    held_by,
                },
            );
        }
    }
}

fn misplaced(view: &View<'_>, findings: &mut Vec<Finding>) {
    for slot in view.slots.values() {
        let SlotKind::Misplaced(why) = slot.kind else {
            continue;
        };
        let publisher = publisher_of(view, slot.position);
        push(
            findings,
            "arbiter.EnvelopeIsCanonicalJson",
            format!("the output at {}: {why}", slot.position),
            CorruptPublication::Misplaced {
                position: slot.position.into(),
                publisher,
                output: RawBytes::from(slot.bytes),
                why: why.to_owned(),
            },
        );
    }
}

fn publisher_of(view: &View<'_>, position: CommandPosition) -> InstanceId {
    view.kept
        .get(&(position.partition, position.offset))
        .map(|publication| publication.publisher_id)
        .expect("slots belong to kept publications")
}

/// Stock levels as the replay has them: the domain's own writes only.
#[derive(Debug, Default)]
struct Levels(BTreeMap<EntityKey, Vec<u8>>);

impl EntityStates for Levels {
    fn state(&self, key: &EntityKey) -> Option<&[u8]> {
        self.0.get(key).map(Vec::as_slice)
    }
}

fn replay(view: &View<'_>, findings: &mut Vec<Finding>) -> Vec<String> {
    let domain = view.run.domain();
    let partitions = view.run.input_partitions;
    let mut levels = Levels::default();
    let mut stopped: BTreeSet<Partition> = BTreeSet::new();
    let mut notes = Vec::new();
    for (&(partition, offset), record) in &view.input {
        if stopped.contains(&partition) {
            continue;
        }
        let Some(publication) = view.kept.get(&(partition, offset)) else {
            notes.push(format!(
                "partition {partition}: replay stopped at offset {offset}, which has no agreed publication"
            ));
            stopped.insert(partition);
            continue;
        };
        let publisher = publication.publisher_id;
        let commands = match &record.content {
            InputContent::DeadLettered { reason } => {
                let expected = dead_letter_envelope(partition, offset, reason);
                let published = publication.outputs.first().map(RawBytes::as_slice);
                if publication.outputs.len() != 1 || published != Some(expected.as_slice()) {
                    let position = CommandPosition {
                        partition,
                        offset,
                        index: 0,
                    };
                    differs(
                        findings,
                        position,
                        publisher,
                        published.unwrap_or_default(),
                        &expected,
                    );
                }
                continue;
            }
            InputContent::Commands { commands } => commands,
        };
        if publication.outputs.len() != commands.len() {
            push(
                findings,
                "core.OutputsDependOnlyOnTheLog",
                format!(
                    "{partition}/{offset} holds {} command(s) but was published with {} output(s)",
                    commands.len(),
                    publication.outputs.len()
                ),
                CorruptPublication::WrongOutputCount {
                    partition,
                    offset,
                    publisher,
                    outputs: publication.outputs.len(),
                    commands: commands.len(),
                },
            );
            notes.push(format!(
                "partition {partition}: replay stopped at offset {offset}, whose outputs do not match its commands"
            ));
            stopped.insert(partition);
            continue;
        }
        let context = EvaluationContext {
            partition,
            partitions,
        };
        for (index, input) in (0u32..).zip(commands) {
            let position = CommandPosition {
                partition,
                offset,
                index,
            };
            let slot = &view.slots[&position];
            let expected = match &slot.kind {
                SlotKind::Fresh => {
                    let command = input.command.clone();
                    let outcome = domain
                        .evaluate(context, &command, &levels)
                        .expect("the replay's levels hold only the domain's own writes");
                    let (verdict, reason) = match outcome.verdict {
                        Verdict::Accepted => (EnvelopeVerdict::Accepted, None),
                        Verdict::Rejected(reason) => (EnvelopeVerdict::Rejected, Some(reason)),
                    };
                    if verdict == EnvelopeVerdict::Accepted {
                        for write in outcome.writes {
                            levels.0.insert(write.key, write.state);
                        }
                    }
                    encode_envelope(position, Some(&input.key), verdict, reason, &outcome.body)
                }
                SlotKind::KeyReused => encode_envelope(
                    position,
                    Some(&input.key),
                    EnvelopeVerdict::Rejected,
                    Some(KEY_REUSED),
                    &[],
                ),
                SlotKind::DeadLetter => {
                    push(
                        findings,
                        "arbiter.EnvelopeIsCanonicalJson",
                        format!(
                            "the output at {position} is a dead letter, but the record decodes"
                        ),
                        CorruptPublication::Misplaced {
                            position: position.into(),
                            publisher,
                            output: RawBytes::from(slot.bytes),
                            why: "a dead letter for a decodable record".to_owned(),
                        },
                    );
                    continue;
                }
                // Judged by the duplicate checks, and reported as misplaced.
                SlotKind::Duplicate { .. } | SlotKind::Misplaced(_) => continue,
            };
            if expected != slot.bytes {
                differs(findings, position, publisher, slot.bytes, &expected);
            }
        }
    }
    notes
}

fn differs(
    findings: &mut Vec<Finding>,
    position: CommandPosition,
    publisher: InstanceId,
    published: &[u8],
    replayed: &[u8],
) {
    push(
        findings,
        "core.OutputsDependOnlyOnTheLog",
        format!(
            "the output at {position} is {}, the replay of the log gives {}",
            String::from_utf8_lossy(published),
            String::from_utf8_lossy(replayed)
        ),
        CorruptPublication::DiffersFromReplay {
            position: position.into(),
            publisher,
            published: RawBytes::from(published),
            replayed: RawBytes::from(replayed),
        },
    );
}
