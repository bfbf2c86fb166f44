//! Evaluating one causal group: its commands in log order, each against the
//! group's view, every domain call behind `catch_unwind`.

use std::any::Any;
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::panic::{AssertUnwindSafe, catch_unwind};

use domain::{
    Domain, DomainOutcome, EntityKey, EntityStates, EntityWrite, EvaluationContext, Verdict,
};
use protocol::envelope::{EnvelopeVerdict, encode_envelope};

use crate::batch::{ArbiterHalt, DomainFailure, FreshCommand};

/// A fresh command with the keys it declared, sorted and without repeats.
#[derive(Debug)]
pub(crate) struct DeclaredCommand<'a, C> {
    pub fresh: &'a FreshCommand<C>,
    pub keys: Vec<EntityKey>,
}

impl<C> AsRef<[EntityKey]> for DeclaredCommand<'_, C> {
    fn as_ref(&self) -> &[EntityKey] {
        &self.keys
    }
}

/// What evaluating one fresh command produced.
#[derive(Debug)]
pub(crate) struct Evaluation {
    pub verdict: EnvelopeVerdict,
    pub envelope: Vec<u8>,
    /// Empty unless accepted.
    pub writes: Vec<EntityWrite>,
}

/// Asks the domain which keys a command touches; a panic halts.
pub(crate) fn declare<'a, D: Domain>(
    domain: &D,
    fresh: &'a FreshCommand<D::Command>,
) -> Result<DeclaredCommand<'a, D::Command>, ArbiterHalt> {
    let mut keys = catch_unwind(AssertUnwindSafe(|| domain.touched_keys(&fresh.command)))
        .map_err(|payload| panicked(fresh, payload.as_ref()))?;
    // The contract asks for sorted keys without repeats; normalising costs
    // nothing for a handful of keys and leaves one less way to fail.
    keys.sort_unstable();
    keys.dedup();
    Ok(DeclaredCommand { fresh, keys })
}

/// Evaluates the commands of one group in log order. Each command sees the
/// states staged by earlier accepted commands of the group, else `base`
/// (the Registrar's entries), else absent. Stops at the group's first
/// failing command.
///
/// spec: arbiter.EvaluateGroupInLogOrder
pub(crate) fn evaluate_group<D: Domain>(
    domain: &D,
    context: EvaluationContext,
    commands: &[DeclaredCommand<'_, D::Command>],
    group: &[usize],
    base: &(dyn EntityStates + Sync),
) -> Result<Vec<Evaluation>, ArbiterHalt> {
    let mut staged: BTreeMap<EntityKey, Vec<u8>> = BTreeMap::new();
    let mut evaluations = Vec::with_capacity(group.len());
    for (place, &command) in group.iter().enumerate() {
        let command = &commands[command];
        let view = CommandView {
            declared: &command.keys,
            staged: &staged,
            base,
            undeclared_read: RefCell::new(None),
        };
        let evaluation = evaluate_command(domain, context, command, &view)?;
        // The last command of a group has no later reader of its writes.
        if place + 1 < group.len() {
            for write in &evaluation.writes {
                staged.insert(write.key.clone(), write.state.clone());
            }
        }
        evaluations.push(evaluation);
    }
    Ok(evaluations)
}

/// Evaluates one command and encodes its envelope. A rejected command
/// returns no writes, so the group's view stays exactly as this command saw
/// it.
///
/// spec: arbiter.EvaluateFreshCommand, arbiter.RejectedCommandChangesNoEntity, arbiter.EvaluationVerdictFromDomain, arbiter.DomainPanicHaltsInstance
fn evaluate_command<D: Domain>(
    domain: &D,
    context: EvaluationContext,
    command: &DeclaredCommand<'_, D::Command>,
    view: &CommandView<'_>,
) -> Result<Evaluation, ArbiterHalt> {
    let fresh = command.fresh;
    let halt = |failure| ArbiterHalt {
        position: fresh.position,
        failure,
    };
    let outcome = catch_unwind(AssertUnwindSafe(|| {
        domain.evaluate(context, &fresh.command, view)
    }))
    .map_err(|payload| panicked(fresh, payload.as_ref()))?
    .map_err(|corrupt| halt(DomainFailure::CorruptState(corrupt)))?;
    if let Some(key) = view.undeclared_read.take() {
        return Err(halt(DomainFailure::ReadOutsideTouchedKeys { key }));
    }
    check_well_formed(&outcome, &command.keys).map_err(halt)?;

    let DomainOutcome {
        verdict,
        writes,
        body,
    } = outcome;
    let (verdict, reason) = match verdict {
        Verdict::Accepted => (EnvelopeVerdict::Accepted, None),
        Verdict::Rejected(reason) => (EnvelopeVerdict::Rejected, Some(reason)),
    };
    let envelope = encode_envelope(
        fresh.position,
        Some(&fresh.idempotency_key),
        verdict,
        reason,
        &body,
    );
    Ok(Evaluation {
        verdict,
        envelope,
        writes,
    })
}

/// A rejection writes nothing; an accepted outcome writes only declared
/// keys. (The verdict has exactly two values in Rust, so
/// `verdict_out_of_range` cannot occur.)
///
/// spec: arbiter.MalformedDomainOutcomeHaltsInstance, arbiter.StagedWritesOnlyFromAcceptedCommands, arbiter.StagedWritesWithinTouchedKeys
fn check_well_formed(outcome: &DomainOutcome, declared: &[EntityKey]) -> Result<(), DomainFailure> {
    if let (Verdict::Rejected(reason), false) = (&outcome.verdict, outcome.writes.is_empty()) {
        return Err(DomainFailure::RejectionWithWrites {
            reason,
            writes: outcome.writes.len(),
        });
    }
    match outcome
        .writes
        .iter()
        .find(|write| declared.binary_search(&write.key).is_err())
    {
        Some(write) => Err(DomainFailure::WriteOutsideTouchedKeys {
            key: write.key.clone(),
        }),
        None => Ok(()),
    }
}

/// What one command may read: its declared keys, as staged earlier in its
/// group or else as the Registrar holds them. A read of any other key is
/// remembered (and answered "absent") so the command halts the instance
/// instead of seeing a state that depends on grouping.
struct CommandView<'a> {
    declared: &'a [EntityKey],
    staged: &'a BTreeMap<EntityKey, Vec<u8>>,
    base: &'a (dyn EntityStates + Sync),
    undeclared_read: RefCell<Option<EntityKey>>,
}

impl EntityStates for CommandView<'_> {
    fn state(&self, key: &EntityKey) -> Option<&[u8]> {
        if self.declared.binary_search(key).is_err() {
            self.undeclared_read
                .borrow_mut()
                .get_or_insert_with(|| key.clone());
            return None;
        }
        match self.staged.get(key) {
            Some(state) => Some(state),
            None => self.base.state(key),
        }
    }
}

fn panicked<C>(fresh: &FreshCommand<C>, payload: &(dyn Any + Send)) -> ArbiterHalt {
    let message = payload
        .downcast_ref::<&str>()
        .map(|text| (*text).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".to_owned());
    ArbiterHalt {
        position: fresh.position,
        failure: DomainFailure::Panicked { message },
    }
}
