//! The Registrar's shell: the pre-warm step (one Ledger multi-get per
//! batch) as a plain function over the core and an [`EntityStore`], and
//! the actix actor that runs it and hands the Arbiter a snapshot of the
//! batch's states.
//!
//! The Arbiter runs in another actor, so it cannot borrow the cache: it
//! gets a [`StateSnapshot`] of exactly the batch's keys, taken after the
//! previous batch's writes were applied (the actor serves one batch at a
//! time), which is what evaluating against the cache itself would read.

use std::collections::BTreeMap;

use actix::prelude::*;
use domain::{EntityKey, EntityStates};
use protocol::position::{CommandPosition, Offset, Partition};

use crate::registrar::{
    Admission, AdmitError, ApplyError, DurableError, EntityWriteAt, LoadError, PrewarmedBatch,
    RecordKeys, Registrar,
};

/// A read of the Ledger failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("reading the Ledger: {0}")]
pub struct StoreError(pub String);

/// What the Registrar reads from the Ledger.
pub trait EntityStore {
    /// The durable states of `keys`, in order (`None`: never written).
    fn entities(&self, keys: &[EntityKey]) -> Result<Vec<Option<Vec<u8>>>, StoreError>;
}

#[derive(Debug, thiserror::Error)]
pub enum RegistrarShellError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Admit(#[from] AdmitError),
    #[error(transparent)]
    Load(#[from] LoadError),
    /// The node never offers a batch bigger than the cache: the usher's
    /// batch bound times the keys per record fits it (checked at start).
    #[error("the entity cache took {admitted} of the batch's {offered} records")]
    BatchDoesNotFitCache { admitted: usize, offered: usize },
    #[error("a batch is already pre-warmed and not yet applied")]
    BatchInFlight,
    #[error("no pre-warmed batch to apply writes to")]
    NoBatchInFlight,
    #[error(transparent)]
    Apply(#[from] ApplyError),
    #[error(transparent)]
    Durable(#[from] DurableError),
}

/// Admits the whole batch and loads the keys the cache lacks with one
/// multi-get.
pub fn prewarm(
    registrar: &mut Registrar,
    store: &impl EntityStore,
    partition: Partition,
    records: &[RecordKeys],
) -> Result<PrewarmedBatch, RegistrarShellError> {
    let pending = match registrar.admit(partition, records)? {
        Admission::Prewarm(pending) if pending.remainder_records() == 0 => pending,
        Admission::Prewarm(pending) => {
            return Err(RegistrarShellError::BatchDoesNotFitCache {
                admitted: pending.admitted_records(),
                offered: records.len(),
            });
        }
        Admission::WaitForRoom => {
            return Err(RegistrarShellError::BatchDoesNotFitCache {
                admitted: 0,
                offered: records.len(),
            });
        }
    };
    let states = if pending.keys_to_read().is_empty() {
        Vec::new()
    } else {
        store.entities(pending.keys_to_read())?
    };
    registrar
        .complete_prewarm(pending, states)
        .map_err(|refused| RegistrarShellError::Load(refused.error))
}

/// Applies an evaluated batch's writes and releases its pins.
pub fn apply_writes<'a>(
    registrar: &mut Registrar,
    batch: PrewarmedBatch,
    writes: impl IntoIterator<Item = EntityWriteAt<'a>>,
) -> Result<(), RegistrarShellError> {
    registrar
        .apply_batch_writes(batch, writes)
        .map_err(|refused| RegistrarShellError::Apply(refused.error))
}

/// The states of one batch's keys, as the cache held them when the batch
/// was pre-warmed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StateSnapshot {
    states: BTreeMap<EntityKey, Vec<u8>>,
}

impl StateSnapshot {
    fn of(registrar: &Registrar, batch: &PrewarmedBatch) -> Self {
        Self {
            states: batch
                .keys()
                .iter()
                .filter_map(|key| {
                    let state = registrar.state(key)?;
                    Some((key.clone(), state.to_vec()))
                })
                .collect(),
        }
    }
}

impl EntityStates for StateSnapshot {
    fn state(&self, key: &EntityKey) -> Option<&[u8]> {
        self.states.get(key).map(Vec::as_slice)
    }
}

/// The Registrar of one instance as an actor; one batch in flight.
pub struct RegistrarActor<S> {
    registrar: Registrar,
    store: S,
    in_flight: Option<PrewarmedBatch>,
}

impl<S> std::fmt::Debug for RegistrarActor<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegistrarActor")
            .field("registrar", &self.registrar)
            .field("in_flight", &self.in_flight)
            .finish_non_exhaustive()
    }
}

impl<S: EntityStore + Unpin + 'static> RegistrarActor<S> {
    pub fn new(registrar: Registrar, store: S) -> Self {
        Self {
            registrar,
            store,
            in_flight: None,
        }
    }
}

impl<S: EntityStore + Unpin + 'static> Actor for RegistrarActor<S> {
    type Context = Context<Self>;
}

/// Pre-warm a classified batch; the answer is its states.
#[derive(Debug, Message)]
#[rtype(result = "Result<StateSnapshot, RegistrarShellError>")]
pub struct Prewarm {
    pub partition: Partition,
    pub records: Vec<RecordKeys>,
}

impl<S: EntityStore + Unpin + 'static> Handler<Prewarm> for RegistrarActor<S> {
    type Result = Result<StateSnapshot, RegistrarShellError>;

    fn handle(&mut self, request: Prewarm, _ctx: &mut Self::Context) -> Self::Result {
        if self.in_flight.is_some() {
            return Err(RegistrarShellError::BatchInFlight);
        }
        let batch = prewarm(
            &mut self.registrar,
            &self.store,
            request.partition,
            &request.records,
        )?;
        let snapshot = StateSnapshot::of(&self.registrar, &batch);
        self.in_flight = Some(batch);
        Ok(snapshot)
    }
}

/// The evaluated batch's writes, in log order.
#[derive(Debug, Message)]
#[rtype(result = "Result<(), RegistrarShellError>")]
pub struct ApplyWrites(pub Vec<(CommandPosition, EntityKey, Vec<u8>)>);

impl<S: EntityStore + Unpin + 'static> Handler<ApplyWrites> for RegistrarActor<S> {
    type Result = Result<(), RegistrarShellError>;

    fn handle(
        &mut self,
        ApplyWrites(writes): ApplyWrites,
        _ctx: &mut Self::Context,
    ) -> Self::Result {
        let batch = self
            .in_flight
            .take()
            .ok_or(RegistrarShellError::NoBatchInFlight)?;
        apply_writes(
            &mut self.registrar,
            batch,
            writes.iter().map(|(position, key, state)| EntityWriteAt {
                position: *position,
                key,
                state,
            }),
        )
    }
}

/// A group commit through `through_offset` of `partition` is durable.
#[derive(Clone, Copy, Debug, Message)]
#[rtype(result = "Result<(), RegistrarShellError>")]
pub struct StatesDurable {
    pub partition: Partition,
    pub through_offset: Offset,
}

impl<S: EntityStore + Unpin + 'static> Handler<StatesDurable> for RegistrarActor<S> {
    type Result = Result<(), RegistrarShellError>;

    fn handle(&mut self, durable: StatesDurable, _ctx: &mut Self::Context) -> Self::Result {
        self.registrar
            .on_durable(durable.partition, durable.through_offset)?;
        Ok(())
    }
}
