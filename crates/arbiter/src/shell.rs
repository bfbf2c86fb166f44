//! The Arbiter's shell: an actor around the core. A batch's evaluation is
//! short (microseconds per command) next to a thread hop under load, so the
//! node runs it on its main arbiter; large batches fan out over the core's
//! own evaluation workers.

use actix::prelude::*;
use domain::{Domain, EntityStates, EvaluationContext};

use crate::arbiter::Arbiter;
use crate::batch::{ArbiterHalt, BatchInput, EvaluatedBatch};

/// The Arbiter of one instance as an actor: batches are evaluated one at a
/// time, in the order they arrive.
pub struct ArbiterActor<D: Domain> {
    arbiter: Arbiter<D>,
}

impl<D: Domain> std::fmt::Debug for ArbiterActor<D> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ArbiterActor").finish_non_exhaustive()
    }
}

impl<D: Domain> ArbiterActor<D> {
    pub fn new(arbiter: Arbiter<D>) -> Self {
        Self { arbiter }
    }
}

impl<D: Domain + Send + Unpin + 'static> Actor for ArbiterActor<D> {
    type Context = Context<Self>;
}

/// Evaluate a batch against the states of its keys.
#[derive(Debug)]
pub struct Evaluate<C, S> {
    pub context: EvaluationContext,
    pub batch: BatchInput<C>,
    pub states: S,
}

impl<C: Send + 'static, S: Send + 'static> Message for Evaluate<C, S> {
    type Result = Result<EvaluatedBatch, ArbiterHalt>;
}

impl<D, S> Handler<Evaluate<D::Command, S>> for ArbiterActor<D>
where
    D: Domain + Send + Unpin + 'static,
    D::Command: Send + 'static,
    S: EntityStates + Sync + Send + 'static,
{
    type Result = Result<EvaluatedBatch, ArbiterHalt>;

    fn handle(
        &mut self,
        request: Evaluate<D::Command, S>,
        _ctx: &mut Self::Context,
    ) -> Self::Result {
        self.arbiter
            .evaluate_batch(request.context, &request.batch, &request.states)
    }
}
