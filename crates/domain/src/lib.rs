//! The pluggable domain: what the Arbiter evaluates commands with.
//!
//! A domain is a pure function from a command and the entities it declares to
//! an outcome. Everything Tribunal guarantees (agreement, replay, parallel
//! causal groups) rests on the four properties of the `arbiter.Domain`
//! contract: pure, deterministic, total, and honest about the keys it touches.

pub mod inventory;

use std::fmt;
use std::sync::Arc;

/// The key of one entity, as stored in the Ledger and grouped by the Arbiter.
///
/// Shared, not owned: one command's key is held at once by the Arbiter's
/// groups, the Registrar's cache and its eviction and dirty indexes, and the
/// group commit, and a clone per holder was an allocation and a copy each.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct EntityKey(Arc<str>);

impl EntityKey {
    pub fn new(text: String) -> Self {
        Self(Arc::from(text))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for EntityKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Read access to the current state of the entities a command declared.
/// `None` means the entity does not exist; the domain defines what that means.
pub trait EntityStates {
    fn state(&self, key: &EntityKey) -> Option<&[u8]>;
}

/// Where the command being evaluated sits; partition-aware domains use it to
/// refuse commands routed to a partition that does not own their entities.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EvaluationContext {
    pub partition: u32,
    pub partitions: u32,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    Accepted,
    /// A rejection token, stable across versions (it is part of the agreed bytes).
    Rejected(&'static str),
}

/// One entity's new state, written when the outcome is accepted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EntityWrite {
    pub key: EntityKey,
    pub state: Vec<u8>,
}

/// The result of evaluating one command.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DomainOutcome {
    pub verdict: Verdict,
    /// Empty when rejected.
    pub writes: Vec<EntityWrite>,
    /// The canonical JSON body handed back to the client.
    pub body: Vec<u8>,
}

/// A command's bytes that the domain cannot read. Deterministic: every
/// instance decodes the same bytes to the same error.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CommandDecodeError {
    /// Stable reason token, e.g. `unknown_command`.
    pub reason: &'static str,
    pub detail: String,
}

/// Stored entity state the domain cannot interpret. Only local corruption
/// produces it (the domain wrote every state it reads), so the instance halts
/// rather than publish a guess.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CorruptState {
    pub key: EntityKey,
    pub detail: String,
}

/// spec: arbiter.DomainIsPure, arbiter.DomainIsDeterministic, arbiter.DomainIsTotal, arbiter.DomainDeclaresEveryKey, arbiter.DomainRejectionWritesNothing
pub trait Domain: Send + Sync {
    type Command: Send + Sync + fmt::Debug;

    fn decode_command(&self, bytes: &[u8]) -> Result<Self::Command, CommandDecodeError>;

    /// The checks a command must pass before it may enter the log: the
    /// gateway refuses a failing submission, and the Usher dead-letters a
    /// record holding one (whoever produced it).
    fn validate(&self, command: &Self::Command) -> Result<(), CommandDecodeError>;

    /// Every key `evaluate` may read or write, sorted and without repeats; a
    /// function of the command alone.
    fn touched_keys(&self, command: &Self::Command) -> Vec<EntityKey>;

    fn evaluate(
        &self,
        context: EvaluationContext,
        command: &Self::Command,
        entities: &dyn EntityStates,
    ) -> Result<DomainOutcome, CorruptState>;
}
