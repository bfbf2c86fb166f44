//! Observed publications: the only source of a submission's answer.
//!
//! A publication is read once per (partition, offset), checked against its
//! own digest, and its outputs kept for `submit_timeout` so that a produce
//! acknowledgement arriving after the outcome still finds it.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;
use protocol::envelope::{EnvelopeVerdict, record_digest};
use protocol::position::{Offset, Partition};
use protocol::records::Publication;
use serde::Deserialize;

use crate::config::Millis;

/// One command's agreed outcome: the envelope bytes, answered verbatim.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AgreedOutcome {
    pub verdict: EnvelopeVerdict,
    pub bytes: Bytes,
}

impl AgreedOutcome {
    /// spec: gateway.StatusFollowsFromOutcomeBytes
    pub fn http_status(&self) -> u16 {
        match self.verdict {
            EnvelopeVerdict::Accepted => 200,
            EnvelopeVerdict::Rejected => 409,
            EnvelopeVerdict::DeadLettered => 422,
        }
    }
}

/// Why a publication was discarded unread.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CorruptPublication {
    /// The outputs do not hash to the record's digest.
    DigestMismatch,
    /// More outputs than one record can hold commands.
    TooManyOutputs { count: usize },
    /// An output is not an outcome envelope whose verdict can be read.
    UnreadableEnvelope { index: usize },
}

/// The head of an outcome envelope (`arbiter.EnvelopeIsCanonicalJson`);
/// the `result` body is skipped.
#[derive(Deserialize)]
struct EnvelopeHead<'a> {
    offset: Offset,
    index: u32,
    #[serde(borrow, default)]
    key: Option<Cow<'a, str>>,
    #[serde(borrow)]
    verdict: Cow<'a, str>,
    #[serde(borrow, default)]
    reason: Option<Cow<'a, str>>,
}

/// The Warden's rejection of a key reused with another command: it records
/// no entry, so it owns no key.
const KEY_REUSED: &str = "idempotency_key_reused";

/// A publication that passed its checks, with the keys it gives owners to.
#[derive(Debug)]
pub struct ReadPublication {
    pub partition: Partition,
    pub offset: Offset,
    pub record_timestamp: i64,
    pub outputs: Vec<AgreedOutcome>,
    /// Commands answered by evaluation here (not duplicates, not dead
    /// letters, not key-reuse rejections): the Warden's first writers.
    pub first_answers: Vec<FirstAnswer>,
}

/// A key's first answer in a publication (`gateway.KeyIndexUpdatedFromOutcome`'s
/// `new_key_owners` before the check against existing entries).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FirstAnswer {
    pub index: u32,
    pub key: String,
    pub outcome: AgreedOutcome,
}

/// Checks a publication and reads the verdict of every output.
///
/// spec: gateway.CorruptPublicationDiscarded
pub fn read_publication(
    publication: Publication,
    max_pack_commands: usize,
) -> Result<ReadPublication, CorruptPublication> {
    let Publication {
        partition,
        offset,
        digest,
        outputs,
        record_timestamp,
        ..
    } = publication;
    if outputs.len() > max_pack_commands {
        return Err(CorruptPublication::TooManyOutputs {
            count: outputs.len(),
        });
    }
    if record_digest(&outputs).0.as_slice() != digest.as_slice() {
        return Err(CorruptPublication::DigestMismatch);
    }
    let mut read = Vec::with_capacity(outputs.len());
    let mut first_answers = Vec::new();
    for (index, bytes) in outputs.into_iter().enumerate() {
        let unreadable = CorruptPublication::UnreadableEnvelope { index };
        let head: EnvelopeHead<'_> = serde_json::from_slice(&bytes).map_err(|_| unreadable)?;
        let verdict = match head.verdict.as_ref() {
            "accepted" => EnvelopeVerdict::Accepted,
            "rejected" => EnvelopeVerdict::Rejected,
            "dead_lettered" => EnvelopeVerdict::DeadLettered,
            _ => return Err(unreadable),
        };
        let index = u32::try_from(index).expect("outputs are bounded by max_pack_commands");
        // A duplicate carries its original's envelope, which names the
        // original's position: only a command answered here owns its key.
        let answered_here = head.offset == offset && head.index == index;
        let first_answer = match (&head.key, verdict, head.reason.as_deref()) {
            (Some(key), EnvelopeVerdict::Accepted | EnvelopeVerdict::Rejected, reason)
                if answered_here && reason != Some(KEY_REUSED) =>
            {
                Some(key.clone().into_owned())
            }
            _ => None,
        };
        let outcome = AgreedOutcome {
            verdict,
            bytes: Bytes::from(bytes),
        };
        if let Some(key) = first_answer {
            first_answers.push(FirstAnswer {
                index,
                key,
                outcome: outcome.clone(),
            });
        }
        read.push(outcome);
    }
    Ok(ReadPublication {
        partition,
        offset,
        record_timestamp,
        outputs: read,
        first_answers,
    })
}

/// The agreed outputs of one input record, as first read.
#[derive(Debug)]
pub struct ObservedOutcome {
    outputs: Vec<AgreedOutcome>,
    forget_at: Millis,
}

impl ObservedOutcome {
    /// `outputs[index]`, or the one output of a dead-lettered record,
    /// which answers every command the record carried.
    ///
    /// spec: gateway.StatusFollowsFromOutcomeBytes
    pub fn outcome_for(&self, index: u32) -> Option<&AgreedOutcome> {
        match self.outputs.as_slice() {
            [only] if only.verdict == EnvelopeVerdict::DeadLettered => Some(only),
            outputs => outputs.get(usize::try_from(index).ok()?),
        }
    }

    fn cost(&self) -> usize {
        self.outputs.len().max(1)
    }
}

/// What became of a publication handed to [`ObservedOutcomes::observe`].
#[derive(Debug)]
pub enum Observation {
    Observed,
    /// Its (partition, offset) was observed before.
    Repeated,
}

/// Observed outcomes by (partition, offset), bounded by the outputs they
/// hold; each record costs at least one. Ordered, not hashed: positions
/// arrive in offset order and leave roughly so, and an ordered map never
/// rehashes (a hash map growing with the traffic stalled every instance at
/// once at each doubling, see [`crate::key_index::KeyIndex`]).
#[derive(Debug)]
pub struct ObservedOutcomes {
    max_outputs: usize,
    held_outputs: usize,
    by_position: BTreeMap<(Partition, Offset), ObservedOutcome>,
    /// (forget_at, partition, offset): forgetting and eviction order.
    by_age: BTreeSet<(Millis, Partition, Offset)>,
}

impl ObservedOutcomes {
    pub fn new(max_outputs: usize) -> Self {
        assert!(max_outputs > 0, "at least one output may be held");
        Self {
            max_outputs,
            held_outputs: 0,
            by_position: BTreeMap::new(),
            by_age: BTreeSet::new(),
        }
    }

    pub fn contains(&self, partition: Partition, offset: Offset) -> bool {
        self.by_position.contains_key(&(partition, offset))
    }

    pub fn get(&self, partition: Partition, offset: Offset) -> Option<&ObservedOutcome> {
        self.by_position.get(&(partition, offset))
    }

    pub fn len(&self) -> usize {
        self.by_position.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_position.is_empty()
    }

    pub fn held_outputs(&self) -> usize {
        self.held_outputs
    }

    /// Keeps the first publication of a position; later ones are repeats.
    /// Makes room by evicting the outcomes due to be forgotten first.
    ///
    /// spec: gateway.FirstPublicationOfOffsetObserved, gateway.RepeatedPublicationIgnored, gateway.OneObservedOutcomePerOffset, gateway.ObservedOutcomeEvictedWhenFull
    pub fn observe(
        &mut self,
        partition: Partition,
        offset: Offset,
        outputs: Vec<AgreedOutcome>,
        forget_at: Millis,
    ) -> Observation {
        if self.contains(partition, offset) {
            return Observation::Repeated;
        }
        let observed = ObservedOutcome { outputs, forget_at };
        assert!(
            observed.cost() <= self.max_outputs,
            "checked against max_pack_commands"
        );
        while self.held_outputs + observed.cost() > self.max_outputs {
            let &(_, oldest_partition, oldest_offset) = self
                .by_age
                .first()
                .expect("held outputs belong to held outcomes");
            self.forget(oldest_partition, oldest_offset);
        }
        self.held_outputs += observed.cost();
        self.by_age.insert((forget_at, partition, offset));
        let previous = self.by_position.insert((partition, offset), observed);
        assert!(previous.is_none(), "one observed outcome per offset");
        Observation::Observed
    }

    /// The positions whose outcomes are due to be forgotten at `now`.
    pub fn due(&self, now: Millis) -> Vec<(Partition, Offset)> {
        self.by_age
            .iter()
            .take_while(|(forget_at, _, _)| *forget_at <= now)
            .map(|&(_, partition, offset)| (partition, offset))
            .collect()
    }

    /// Keeps a still-referenced outcome for another while.
    pub fn postpone(&mut self, partition: Partition, offset: Offset, forget_at: Millis) {
        let observed = self
            .by_position
            .get_mut(&(partition, offset))
            .expect("only a held outcome is postponed");
        let removed = self.by_age.remove(&(observed.forget_at, partition, offset));
        assert!(removed, "every held outcome has an age entry");
        observed.forget_at = forget_at;
        self.by_age.insert((forget_at, partition, offset));
    }

    pub fn forget(&mut self, partition: Partition, offset: Offset) {
        let observed = self
            .by_position
            .remove(&(partition, offset))
            .expect("only a held outcome is forgotten");
        let removed = self.by_age.remove(&(observed.forget_at, partition, offset));
        assert!(removed, "every held outcome has an age entry");
        self.held_outputs -= observed.cost();
    }

    pub fn next_forget_at(&self) -> Option<Millis> {
        self.by_age.first().map(|&(forget_at, _, _)| forget_at)
    }
}

#[cfg(test)]
mod tests;
