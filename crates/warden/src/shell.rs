//! The Warden's shell: the store-driven steps (one Ledger multi-get per
//! batch, the expiry candidates at a commit) as plain functions over the
//! core and a [`WardenStore`], and the actix actor that runs them.
//!
//! The functions are what the node's actor calls and what the
//! single-threaded pipeline calls, so both take the same path.

use actix::prelude::*;
use protocol::position::{CommandPosition, Offset, Partition, StreamTime};
use usher::Delivery;

use crate::entry::{EntryDecodeError, StoredEntry};
use crate::warden::{
    Classification, ExpiryCandidate, FetchedEntry, IncomingCommand, Warden, WardenCommitDelta,
    WardenError,
};

/// A read of the Ledger failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("reading the Ledger: {0}")]
pub struct StoreError(pub String);

/// What the Warden reads from the Ledger.
pub trait WardenStore {
    /// The stored entries of `keys` (in order; `None` when absent).
    fn entries(
        &self,
        partition: Partition,
        keys: &[String],
    ) -> Result<Vec<Option<Vec<u8>>>, StoreError>;

    /// Rows of the expiry index first seen before `cutoff`, oldest first,
    /// at most `limit`.
    fn expiry_candidates(
        &self,
        partition: Partition,
        cutoff: StreamTime,
        limit: usize,
    ) -> Result<Vec<ExpiryCandidate>, StoreError>;
}

#[derive(Debug, thiserror::Error)]
pub enum WardenShellError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the stored Warden entry of {key:?} cannot be decoded: {error}")]
    UndecodableEntry {
        key: String,
        error: EntryDecodeError,
    },
    #[error(transparent)]
    Warden(#[from] WardenError),
}

/// One Ledger multi-get for the batch's keys, then every command of every
/// record classified in log order (one list per record; empty for a dead
/// letter).
pub fn classify_batch<C>(
    warden: &mut Warden,
    store: &impl WardenStore,
    partition: Partition,
    deliveries: &[Delivery<C>],
) -> Result<Vec<Vec<Classification>>, WardenShellError> {
    let batch_keys = deliveries
        .iter()
        .flat_map(Delivery::commands)
        .map(|command| command.idempotency_key.as_str());
    let to_fetch = warden.plan_fetch(partition, batch_keys);
    let stored = if to_fetch.is_empty() {
        Vec::new()
    } else {
        store.entries(partition, &to_fetch)?
    };
    let fetched = to_fetch
        .into_iter()
        .zip(stored)
        .map(|(key, bytes)| {
            let entry = match bytes {
                Some(bytes) => Some(StoredEntry::decode(&bytes).map_err(|error| {
                    WardenShellError::UndecodableEntry {
                        key: key.clone(),
                        error,
                    }
                })?),
                None => None,
            };
            Ok(FetchedEntry { key, entry })
        })
        .collect::<Result<Vec<_>, WardenShellError>>()?;
    warden.accept_fetched(partition, fetched)?;
    deliveries
        .iter()
        .map(|delivery| {
            delivery
                .commands()
                .iter()
                .map(|command| {
                    warden
                        .classify(&IncomingCommand {
                            position: command.position,
                            idempotency_key: &command.idempotency_key,
                            command: &command.bytes,
                            stream_time: delivery.stream_time,
                        })
                        .map_err(WardenShellError::from)
                })
                .collect()
        })
        .collect()
}

/// The Warden's changes for the commit of `partition` through
/// `through_offset`: the entries the batch created and the expired entries
/// to purge (read from the Ledger's expiry index).
pub fn commit_delta(
    warden: &mut Warden,
    store: &impl WardenStore,
    partition: Partition,
    through_offset: Offset,
    stream_time: StreamTime,
) -> Result<WardenCommitDelta, WardenShellError> {
    let cutoff = warden.expiry_cutoff(stream_time);
    let limit = warden.config().max_purges_per_commit;
    let candidates = store.expiry_candidates(partition, cutoff, limit)?;
    Ok(warden.commit_delta(partition, through_offset, stream_time, candidates)?)
}

/// The Warden of one instance as an actor.
pub struct WardenActor<S> {
    warden: Warden,
    store: S,
}

impl<S> std::fmt::Debug for WardenActor<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WardenActor")
            .field("warden", &self.warden)
            .finish_non_exhaustive()
    }
}

impl<S: WardenStore + Unpin + 'static> WardenActor<S> {
    pub fn new(warden: Warden, store: S) -> Self {
        Self { warden, store }
    }
}

impl<S: WardenStore + Unpin + 'static> Actor for WardenActor<S> {
    type Context = Context<Self>;
}

/// Classify a batch; the deliveries come back with their classifications.
#[derive(Debug)]
pub struct Classify<C> {
    pub partition: Partition,
    pub deliveries: Vec<Delivery<C>>,
}

/// A classified batch: the deliveries and one classification per command.
pub type Classified<C> = (Vec<Delivery<C>>, Vec<Vec<Classification>>);

impl<C: 'static> Message for Classify<C> {
    type Result = Result<Classified<C>, WardenShellError>;
}

impl<S: WardenStore + Unpin + 'static, C: 'static> Handler<Classify<C>> for WardenActor<S> {
    type Result = Result<Classified<C>, WardenShellError>;

    fn handle(&mut self, classify: Classify<C>, _ctx: &mut Self::Context) -> Self::Result {
        let classifications = classify_batch(
            &mut self.warden,
            &self.store,
            classify.partition,
            &classify.deliveries,
        )?;
        Ok((classify.deliveries, classifications))
    }
}

/// The envelopes the Arbiter produced for fresh commands.
#[derive(Debug, Message)]
#[rtype(result = "Result<(), WardenError>")]
pub struct RecordResponses(pub Vec<(CommandPosition, Vec<u8>)>);

impl<S: WardenStore + Unpin + 'static> Handler<RecordResponses> for WardenActor<S> {
    type Result = Result<(), WardenError>;

    fn handle(
        &mut self,
        RecordResponses(responses): RecordResponses,
        _ctx: &mut Self::Context,
    ) -> Self::Result {
        for (position, envelope) in responses {
            // The Arbiter already copied these answers into the waiting
            // duplicates' outputs (their slots name the first position).
            self.warden.record_response(position, envelope)?;
        }
        Ok(())
    }
}

/// The Warden's part of the next group commit of a partition.
#[derive(Clone, Copy, Debug, Message)]
#[rtype(result = "Result<WardenCommitDelta, WardenShellError>")]
pub struct TakeCommitDelta {
    pub partition: Partition,
    pub through_offset: Offset,
    pub stream_time: StreamTime,
}

impl<S: WardenStore + Unpin + 'static> Handler<TakeCommitDelta> for WardenActor<S> {
    type Result = Result<WardenCommitDelta, WardenShellError>;

    fn handle(&mut self, take: TakeCommitDelta, _ctx: &mut Self::Context) -> Self::Result {
        commit_delta(
            &mut self.warden,
            &self.store,
            take.partition,
            take.through_offset,
            take.stream_time,
        )
    }
}

/// A group commit through `through_offset` of `partition` is durable.
#[derive(Clone, Copy, Debug, Message)]
#[rtype(result = "Result<(), WardenError>")]
pub struct EntriesDurable {
    pub partition: Partition,
    pub through_offset: Offset,
}

impl<S: WardenStore + Unpin + 'static> Handler<EntriesDurable> for WardenActor<S> {
    type Result = Result<(), WardenError>;

    fn handle(&mut self, durable: EntriesDurable, _ctx: &mut Self::Context) -> Self::Result {
        self.warden
            .on_durable(durable.partition, durable.through_offset)
    }
}
