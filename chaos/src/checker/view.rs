//! The history indexed once for every check: the agreed outcomes (first
//! intact publication per record), their slots classified the way the
//! Warden answered them, the input log, stream times, the clients' answers
//! and the honest instances.

use std::collections::BTreeMap;

use protocol::envelope::{EnvelopeVerdict, record_digest};
use protocol::position::{CommandPosition, Offset, Partition};
use serde::Deserialize;
use usher::DecodeLimits;

use crate::history::{
    Command, Completion, HexBytes, History, InputRecord, InstanceFinal, InstanceId, Micros,
    PublishedRecord, RunInfo, Submission,
};

/// An input record's place: (partition, offset).
pub(super) type RecordId = (Partition, Offset);

/// The Warden's rejection of a key reused with another command
/// (`warden::KEY_REUSED_REASON`): it owns no entry and is never evaluated.
pub(super) const KEY_REUSED: &str = "idempotency_key_reused";

/// The head of an outcome envelope (`arbiter.EnvelopeIsCanonicalJson`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Envelope {
    /// The position the envelope names: its own slot when the command was
    /// evaluated there, the original's for a Warden duplicate.
    pub position: CommandPosition,
    pub key: Option<String>,
    pub verdict: EnvelopeVerdict,
    pub reason: Option<String>,
}

#[derive(Deserialize)]
struct EnvelopeFields {
    partition: Partition,
    offset: Offset,
    index: u32,
    #[serde(default)]
    key: Option<String>,
    verdict: String,
    #[serde(default)]
    reason: Option<String>,
}

#[derive(Deserialize)]
struct EnvelopeResult {
    #[serde(default)]
    result: Option<Command>,
}

impl Envelope {
    /// `None` for bytes that are not an envelope with a known verdict.
    pub fn parse(bytes: &[u8]) -> Option<Envelope> {
        let fields: EnvelopeFields = serde_json::from_slice(bytes).ok()?;
        let verdict = match fields.verdict.as_str() {
            "accepted" => EnvelopeVerdict::Accepted,
            "rejected" => EnvelopeVerdict::Rejected,
            "dead_lettered" => EnvelopeVerdict::DeadLettered,
            _ => return None,
        };
        Some(Envelope {
            position: CommandPosition {
                partition: fields.partition,
                offset: fields.offset,
                index: fields.index,
            },
            key: fields.key,
            verdict,
            reason: fields.reason,
        })
    }

    /// The command an envelope's `result` body restates (the domain writes
    /// the command's own fields first), if it has one.
    pub fn command(bytes: &[u8]) -> Option<Command> {
        serde_json::from_slice::<EnvelopeResult>(bytes)
            .ok()
            .and_then(|envelope| envelope.result)
    }

    /// The HTTP status a gateway answers this envelope with
    /// (`gateway.StatusFollowsFromOutcomeBytes`).
    pub fn http_status(&self) -> u16 {
        match self.verdict {
            EnvelopeVerdict::Accepted => 200,
            EnvelopeVerdict::Rejected => 409,
            EnvelopeVerdict::DeadLettered => 422,
        }
    }
}

/// How the Warden answered one slot, read from its envelope.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum SlotKind {
    /// Evaluated here: the envelope names this slot.
    Fresh,
    /// A duplicate: the original's envelope, naming an earlier position.
    Duplicate { of: CommandPosition },
    /// Rejected as `idempotency_key_reused`, not evaluated.
    KeyReused,
    /// The single output of an undecodable record.
    DeadLetter,
    /// An envelope no correct instance writes in this slot.
    Misplaced(&'static str),
}

#[derive(Clone, Debug)]
pub(super) struct Slot<'h> {
    pub position: CommandPosition,
    pub bytes: &'h [u8],
    pub envelope: Envelope,
    pub kind: SlotKind,
}

impl Slot<'_> {
    /// The key the slot was submitted with, as its envelope states it.
    pub fn key(&self) -> Option<&str> {
        self.envelope.key.as_deref()
    }
}

fn classify(position: CommandPosition, envelope: &Envelope) -> SlotKind {
    let named = envelope.position;
    if envelope.verdict == EnvelopeVerdict::DeadLettered {
        return if named == position && position.index == 0 && envelope.key.is_none() {
            SlotKind::DeadLetter
        } else {
            SlotKind::Misplaced("a dead letter names another slot, or carries a key")
        };
    }
    if named.partition != position.partition {
        return SlotKind::Misplaced("the envelope names another partition");
    }
    if envelope.key.is_none() {
        return SlotKind::Misplaced("an evaluated command's envelope has no key");
    }
    if named == position {
        if envelope.reason.as_deref() == Some(KEY_REUSED) {
            SlotKind::KeyReused
        } else {
            SlotKind::Fresh
        }
    } else if named < position && envelope.reason.as_deref() != Some(KEY_REUSED) {
        SlotKind::Duplicate { of: named }
    } else {
        SlotKind::Misplaced("the envelope names a later position, or a reused key elsewhere")
    }
}

/// What a client was told, read from its completion.
#[derive(Clone, Debug)]
pub(super) enum Answer<'h> {
    /// An agreed outcome: 200/409/422 with an envelope of that verdict.
    Outcome {
        status: u16,
        bytes: &'h [u8],
        envelope: Envelope,
    },
    /// A success status without an outcome, or an envelope under the wrong
    /// status: never a correct gateway's answer.
    Malformed {
        status: u16,
        bytes: &'h [u8],
        why: &'static str,
    },
    /// A 4xx refusal (validation): nothing was produced.
    Refused,
    /// No outcome: 5xx, timeout, failure, or still in flight. The command
    /// may be applied once, or not at all.
    Indeterminate,
}

impl Answer<'_> {
    fn of(submission: &Submission) -> Answer<'_> {
        let Some(Completion::Answered { status, body }) = &submission.completion else {
            return Answer::Indeterminate;
        };
        let (status, bytes) = (*status, body.as_slice());
        match Envelope::parse(bytes) {
            Some(envelope) if envelope.http_status() == status => Answer::Outcome {
                status,
                bytes,
                envelope,
            },
            Some(_) => Answer::Malformed {
                status,
                bytes,
                why: "the status does not follow from the envelope's verdict",
            },
            None if (200..300).contains(&status) => Answer::Malformed {
                status,
                bytes,
                why: "a success status without an outcome envelope",
            },
            None if status >= 500 => Answer::Indeterminate,
            None => Answer::Refused,
        }
    }

    /// Whether the submission may have put its command into the log.
    pub fn may_have_been_produced(&self) -> bool {
        !matches!(self, Answer::Refused)
    }

    /// A short description for reports.
    pub fn describe(&self) -> String {
        match self {
            Answer::Outcome {
                status, envelope, ..
            } => format!("answered {status} naming {}", envelope.position),
            Answer::Malformed { status, why, .. } => format!("answered {status}: {why}"),
            Answer::Refused => "refused".to_owned(),
            Answer::Indeterminate => "indeterminate (timeout, failure or 5xx)".to_owned(),
        }
    }
}

/// Why readers discard a publication (`gateway.CorruptPublicationDiscarded`),
/// `None` when it is intact.
fn defect(publication: &PublishedRecord) -> Option<String> {
    let max = DecodeLimits::MAX_PACK_COMMANDS;
    if publication.outputs.len() > max {
        return Some(format!(
            "{} outputs, more than a pack's {max} commands",
            publication.outputs.len()
        ));
    }
    if record_digest(&publication.outputs).0.as_slice() != publication.digest.0.as_slice() {
        return Some("the outputs do not hash to the published digest".to_owned());
    }
    publication
        .outputs
        .iter()
        .position(|output| Envelope::parse(output.as_slice()).is_none())
        .map(|index| format!("output {index} is not an outcome envelope"))
}

#[derive(Debug)]
pub(super) struct View<'h> {
    pub history: &'h History,
    pub run: &'h RunInfo,
    /// The end of the run as far as the history saw it.
    pub end_us: Micros,
    /// The first intact publication of each record, in read order.
    pub kept: BTreeMap<RecordId, &'h PublishedRecord>,
    /// Every publication, with why readers discard it (`None`: intact).
    pub publications: Vec<(&'h PublishedRecord, Option<String>)>,
    /// Every slot of the kept publications.
    pub slots: BTreeMap<CommandPosition, Slot<'h>>,
    /// The first read of each input record.
    pub input: BTreeMap<RecordId, &'h InputRecord>,
    /// Per partition, the largest record timestamp up to each record.
    stream_times: BTreeMap<RecordId, i64>,
    /// Each submission with its answer, by submission id.
    pub answers: Vec<(&'h Submission, Answer<'h>)>,
    /// Instances not declared byzantine, with their final state.
    pub honest: Vec<&'h InstanceFinal>,
}

impl<'h> View<'h> {
    pub fn new(history: &'h History) -> Self {
        let mut kept = BTreeMap::new();
        let mut publications = Vec::with_capacity(history.publications.len());
        for publication in &history.publications {
            let defect = defect(publication);
            if defect.is_none() {
                kept.entry((publication.partition, publication.offset))
                    .or_insert(publication);
            }
            publications.push((publication, defect));
        }
        let mut slots = BTreeMap::new();
        for publication in kept.values() {
            for (index, output) in (0u32..).zip(&publication.outputs) {
                let position = CommandPosition {
                    partition: publication.partition,
                    offset: publication.offset,
                    index,
                };
                let envelope = Envelope::parse(output.as_slice())
                    .expect("a kept publication's outputs are all envelopes");
                let kind = classify(position, &envelope);
                slots.insert(
                    position,
                    Slot {
                        position,
                        bytes: output.as_slice(),
                        envelope,
                        kind,
                    },
                );
            }
        }
        let mut input = BTreeMap::new();
        for record in &history.input {
            input
                .entry((record.partition, record.offset))
                .or_insert(record);
        }
        let mut stream_times = BTreeMap::new();
        let mut partition_time: BTreeMap<Partition, i64> = BTreeMap::new();
        for (&id, record) in &input {
            let time = partition_time.entry(id.0).or_insert(i64::MIN);
            *time = (*time).max(record.timestamp_ms);
            stream_times.insert(id, *time);
        }
        let answers = history
            .submissions
            .iter()
            .map(|submission| (submission, Answer::of(submission)))
            .collect();
        let honest = history
            .instances
            .iter()
            .filter(|instance| !history.run.is_byzantine(instance.instance))
            .collect();
        Self {
            history,
            run: &history.run,
            end_us: history.end_us(),
            kept,
            publications,
            slots,
            input,
            stream_times,
            answers,
            honest,
        }
    }

    /// The stream time of a record: from the input log when it was read
    /// back, else as its publication states it.
    pub fn stream_time(&self, record: RecordId) -> Option<i64> {
        self.stream_times
            .get(&record)
            .copied()
            .or_else(|| self.kept.get(&record).map(|p| p.record_timestamp))
    }

    /// The command at a position: from the input log, else as its
    /// published envelope restates it.
    pub fn command_at(&self, position: CommandPosition) -> Option<Command> {
        let record = (position.partition, position.offset);
        let from_input = self.input.get(&record).and_then(|record| {
            let index = usize::try_from(position.index).ok()?;
            record.commands().get(index).map(|c| c.command.clone())
        });
        from_input.or_else(|| {
            self.slots
                .get(&position)
                .and_then(|slot| Envelope::command(slot.bytes))
        })
    }

    /// Whether the input topic was recorded at all.
    pub fn has_input(&self) -> bool {
        !self.input.is_empty()
    }

    /// Slots evaluated where they sit, in log order.
    pub fn fresh_slots(&self) -> impl Iterator<Item = &Slot<'h>> {
        self.slots
            .values()
            .filter(|slot| slot.kind == SlotKind::Fresh)
    }

    /// The honest instances' own digests of each record they still hold.
    pub fn honest_digests(&self) -> BTreeMap<RecordId, Vec<(InstanceId, &'h HexBytes)>> {
        let mut digests: BTreeMap<RecordId, Vec<(InstanceId, &'h HexBytes)>> = BTreeMap::new();
        for instance in &self.honest {
            for held in &instance.record_digests {
                digests
                    .entry((held.partition, held.offset))
                    .or_default()
                    .push((instance.instance, &held.digest));
            }
        }
        digests
    }

    /// What the report should say about what could not be checked.
    pub fn notes(&self) -> Vec<String> {
        let mut notes = Vec::new();
        if !self.has_input() && !self.kept.is_empty() {
            notes.push(
                "the input topic was not recorded: unexpected-in-log and replay checks skipped"
                    .to_owned(),
            );
        }
        let missing: Vec<_> = (0..self.run.instances)
            .filter(|id| !self.history.instances.iter().any(|i| i.instance == *id))
            .collect();
        if !missing.is_empty() {
            notes.push(format!(
                "no final state for instances {missing:?}: their state was not checked"
            ));
        }
        notes
    }
}

/// The value more than half of `held` are equal to, if any.
pub(super) fn majority<'a, T: Ord>(held: impl IntoIterator<Item = &'a T>) -> Option<&'a T> {
    let mut counts: BTreeMap<&T, usize> = BTreeMap::new();
    let mut total = 0;
    for value in held {
        *counts.entry(value).or_default() += 1;
        total += 1;
    }
    counts
        .into_iter()
        .find(|&(_, count)| count * 2 > total)
        .map(|(value, _)| value)
}
