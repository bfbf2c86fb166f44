//! Answers cross from the gateway actor's thread to an HTTP worker's thread
//! once per batch, not once per answer.
//!
//! A oneshot resolved from another thread wakes its handler task through
//! the worker's remote queue, and the worker's `LocalSet` runs locally woken
//! tasks first: the h2 connection task, which the handler wakes by sending
//! its response, ran between any two remotely woken handlers, so every
//! answer left in a write of its own (0.94 `writev` per response at 2,500
//! responses/s per gateway). The relay resolves the oneshots on the worker
//! itself, which queues every handler of a batch locally ahead of the
//! connection task: the batch leaves in one write.

use std::cell::RefCell;

use tokio::sync::{mpsc, oneshot};

use crate::core::SubmitAnswer;

/// Where one waiting submission's answer goes.
pub type Reply = oneshot::Sender<SubmitAnswer>;

/// The answers of one settle that go to one worker.
type Batch = Vec<(Reply, SubmitAnswer)>;

/// A handle on one HTTP worker's relay task.
///
/// The channel is unbounded, but what it holds is bounded: every answer in
/// it is a reply the actor held, and the actor holds at most one reply per
/// waiting submission (`max_pending_submissions`).
#[derive(Clone, Debug)]
pub struct ReplyRelay {
    batches: mpsc::UnboundedSender<Batch>,
}

thread_local! {
    /// The relay of the HTTP worker running on this thread.
    static WORKER_RELAY: RefCell<Option<ReplyRelay>> = const { RefCell::new(None) };
}

impl ReplyRelay {
    /// The relay of the calling thread, started on first use (and again if
    /// its task ended). Call it from a task of an actix worker: the relay
    /// task is spawned on the thread's `LocalSet`.
    pub fn of_this_worker() -> ReplyRelay {
        WORKER_RELAY.with(|cell| {
            let mut relay = cell.borrow_mut();
            if let Some(running) = relay.as_ref().filter(|relay| !relay.batches.is_closed()) {
                return running.clone();
            }
            let (batches, mut incoming) = mpsc::unbounded_channel::<Batch>();
            tokio::task::spawn_local(async move {
                while let Some(batch) = incoming.recv().await {
                    for (reply, answer) in batch {
                        // A closed receiver is a client that just left:
                        // nothing is owed to it.
                        let _ = reply.send(answer);
                    }
                }
            });
            relay.insert(ReplyRelay { batches }).clone()
        })
    }

    fn same_worker(&self, other: &ReplyRelay) -> bool {
        self.batches.same_channel(&other.batches)
    }
}

/// The answers of one settle, grouped by the worker they go to (almost
/// always one).
#[derive(Debug, Default)]
pub struct Deliveries {
    by_worker: Vec<(ReplyRelay, Batch)>,
}

impl Deliveries {
    pub fn add(&mut self, relay: ReplyRelay, reply: Reply, answer: SubmitAnswer) {
        match self
            .by_worker
            .iter_mut()
            .find(|(worker, _)| worker.same_worker(&relay))
        {
            Some((_, batch)) => batch.push((reply, answer)),
            None => self.by_worker.push((relay, vec![(reply, answer)])),
        }
    }

    /// One message per worker. A worker that is gone drops its batch, and
    /// with it the replies of clients it can no longer answer.
    pub fn send(self) {
        for (relay, batch) in self.by_worker {
            let _ = relay.batches.send(batch);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ApiError;

    /// Answers handed over in one batch reach their receivers, each its own,
    /// and a batch for a worker whose relay task is gone is dropped, not
    /// lost silently: its receivers see the sender closed.
    #[test]
    fn a_batch_reaches_every_receiver_through_the_worker_relay() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("a current-thread runtime");
        let local = tokio::task::LocalSet::new();
        local.block_on(&runtime, async {
            let relay = ReplyRelay::of_this_worker();
            assert!(
                relay.same_worker(&ReplyRelay::of_this_worker()),
                "one relay per worker thread"
            );
            let (first, first_answer) = oneshot::channel();
            let (second, second_answer) = oneshot::channel();
            let mut deliveries = Deliveries::default();
            deliveries.add(relay.clone(), first, Err(ApiError::Overloaded));
            deliveries.add(relay, second, Err(ApiError::SubmitTimeout));
            assert_eq!(deliveries.by_worker.len(), 1, "one batch for one worker");
            deliveries.send();
            assert_eq!(first_answer.await, Ok(Err(ApiError::Overloaded)));
            assert_eq!(second_answer.await, Ok(Err(ApiError::SubmitTimeout)));
        });

        let (gone, gone_answer) = oneshot::channel();
        let (batches, incoming) = mpsc::unbounded_channel();
        drop(incoming);
        let mut deliveries = Deliveries::default();
        deliveries.add(ReplyRelay { batches }, gone, Err(ApiError::Overloaded));
        deliveries.send();
        assert!(
            runtime.block_on(gone_answer).is_err(),
            "a reply for a gone worker is dropped"
        );
    }
}
