//! The gateway actor: owns the core, turns its effects into produce calls
//! and answers, and feeds it submissions, delivery reports, publications
//! and time.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use actix::fut::wrap_future;
use actix::prelude::*;
use foldhash::{HashMap, HashMapExt as _};
use futures_util::stream;
use protocol::position::Partition;
use protocol::records::Publication;
use rdkafka::producer::{FutureProducer, FutureRecord};
use tokio::sync::mpsc;

use crate::config::Millis;
use crate::core::{GatewayCore, PublicationRead};
use crate::error::ApiError;
use crate::key_index::CommandLookup;
use crate::packer::{PackId, SealedPack, SubmissionId};
use crate::validation::ValidSubmission;

use super::reply_relay::{Deliveries, Reply, ReplyRelay};
use super::{ShellMetrics, kafka_partition};

/// Messages from HTTP workers waiting for room in the actor's mailbox
/// beyond this wait there (`Addr::send` parks them): submissions and
/// lookups in flight to the actor are bounded.
const MAILBOX_CAPACITY: usize = 1_024;

/// How often the actor looks for submissions whose client went away.
/// Releasing them a little late only holds a waiting slot a little longer.
const ABANDON_SWEEP: Duration = Duration::from_millis(50);

/// A validated submission, where its answer goes and through which HTTP
/// worker's relay.
#[derive(Debug)]
pub struct Submit {
    pub submission: ValidSubmission,
    pub reply: Reply,
    pub relay: ReplyRelay,
}

impl Message for Submit {
    type Result = ();
}

#[derive(Debug)]
pub struct LookupCommand {
    pub key: String,
    pub partition: Option<Partition>,
}

impl Message for LookupCommand {
    type Result = CommandLookup;
}

/// Bounds on packs between the core and the broker.
#[derive(Clone, Copy, Debug)]
pub struct ProduceLimits {
    pub max_in_flight: usize,
    pub max_queued: usize,
}

pub struct GatewayActor {
    core: GatewayCore,
    /// The shell's monotonic clock: `Millis` are milliseconds since here.
    clock: Instant,
    producer: FutureProducer,
    input_topic: String,
    limits: ProduceLimits,
    in_flight: usize,
    /// Sealed packs waiting for a send slot, in the order the core cut them.
    queued: VecDeque<SealedPack>,
    /// Where each waiting submission's answer goes.
    replies: HashMap<SubmissionId, (Reply, ReplyRelay)>,
    /// The core's next deadline and the timer armed for it.
    timer: Option<(Millis, SpawnHandle)>,
    /// Admission's view of whether submissions are taken.
    accepting: Arc<AtomicBool>,
    metrics: ShellMetrics,
}

impl std::fmt::Debug for GatewayActor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GatewayActor")
            .field("core", &self.core)
            .field("input_topic", &self.input_topic)
            .field("in_flight", &self.in_flight)
            .field("queued", &self.queued.len())
            .field("replies", &self.replies.len())
            .finish_non_exhaustive()
    }
}

/// Feeds the reader thread's batches to the actor as a stream.
pub fn read_outcomes(
    ctx: &mut Context<GatewayActor>,
    mut batches: mpsc::Receiver<Vec<Publication>>,
) {
    ctx.add_stream(stream::poll_fn(move |cx| batches.poll_recv(cx)));
}

impl GatewayActor {
    pub fn new(
        core: GatewayCore,
        producer: FutureProducer,
        input_topic: String,
        limits: ProduceLimits,
        accepting: Arc<AtomicBool>,
        metrics: ShellMetrics,
    ) -> Self {
        Self {
            core,
            clock: Instant::now(),
            producer,
            input_topic,
            limits,
            in_flight: 0,
            queued: VecDeque::new(),
            replies: HashMap::new(),
            timer: None,
            accepting,
            metrics,
        }
    }

    fn now(&self) -> Millis {
        Millis::try_from(self.clock.elapsed().as_millis()).expect("u64 milliseconds span 584 My")
    }

    /// After every input: hand out what the core made ready, publish the
    /// state admission and metrics read, and arm the timer.
    fn settle(&mut self, ctx: &mut Context<Self>) {
        loop {
            let ready = self.core.take_ready();
            if ready.is_empty() {
                break;
            }
            let mut deliveries = Deliveries::default();
            for (id, answer) in ready.answers {
                if let Some((reply, relay)) = self.replies.remove(&id) {
                    deliveries.add(relay, reply, answer);
                }
            }
            deliveries.send();
            self.queued.extend(ready.packs);
            // A send refused at once fails its pack in the core, which
            // makes answers ready: go round again.
            self.send_queued(ctx);
        }
        self.accepting.store(
            self.core.is_accepting() && self.queued.len() < self.limits.max_queued,
            Ordering::Relaxed,
        );
        self.metrics
            .pending_submissions
            .set_count(self.core.pending());
        self.metrics.packs_in_flight.set_count(self.in_flight);
        self.metrics.packs_queued.set_count(self.queued.len());
        self.arm_timer(ctx);
    }

    fn send_queued(&mut self, ctx: &mut Context<Self>) {
        while self.in_flight < self.limits.max_in_flight {
            let Some(pack) = self.queued.pop_front() else {
                break;
            };
            self.send(pack, ctx);
        }
    }

    /// One record per pack, to the pack's partition; the delivery report
    /// comes back into the actor while other sends proceed.
    ///
    /// spec: gateway.PackProducedAfterFlushWindow
    fn send(&mut self, pack: SealedPack, ctx: &mut Context<Self>) {
        let partition = kafka_partition(pack.partition);
        let record = FutureRecord::<(), [u8]>::to(&self.input_topic)
            .partition(partition)
            .payload(&pack.payload);
        match self.producer.send_result(record) {
            Ok(delivery) => {
                self.in_flight += 1;
                let (id, sent_at) = (pack.id, Instant::now());
                ctx.spawn(
                    wrap_future::<_, Self>(delivery).map(move |report, actor, ctx| {
                        let offset = match report {
                            Ok(Ok(delivery)) => Ok(delivery.offset),
                            Ok(Err((error, _))) => Err(error.to_string()),
                            Err(_) => Err("the producer was dropped".to_owned()),
                        };
                        actor.delivered(id, sent_at, offset, ctx);
                    }),
                );
            }
            Err((error, _)) => {
                tracing::warn!(%error, partition, "pack refused by the producer queue");
                self.metrics.packs_failed.increment();
                self.core.produce_failed(pack.id);
            }
        }
    }

    /// spec: gateway.PackAcknowledgedAssignsPositions, gateway.ProduceFailureAnswersUnavailable
    fn delivered(
        &mut self,
        pack: PackId,
        sent_at: Instant,
        offset: Result<i64, String>,
        ctx: &mut Context<Self>,
    ) {
        self.in_flight -= 1;
        self.metrics.produce_latency.observe(sent_at.elapsed());
        match offset {
            Ok(offset) => {
                self.metrics.packs_acknowledged.increment();
                self.core.produce_acknowledged(pack, offset);
            }
            Err(error) => {
                tracing::warn!(%error, "pack not written; its submissions answer 503");
                self.metrics.packs_failed.increment();
                self.core.produce_failed(pack);
            }
        }
        self.send_queued(ctx);
        self.settle(ctx);
    }

    /// One timer, for the core's earliest deadline; re-armed only when a
    /// new deadline comes before the armed one.
    fn arm_timer(&mut self, ctx: &mut Context<Self>) {
        let Some(deadline) = self.core.next_deadline() else {
            return;
        };
        if matches!(self.timer, Some((armed, _)) if armed <= deadline) {
            return;
        }
        if let Some((_, handle)) = self.timer.take() {
            ctx.cancel_future(handle);
        }
        let delay = Duration::from_millis(deadline.saturating_sub(self.now()));
        let handle = ctx.run_later(delay, |actor, ctx| {
            actor.timer = None;
            let now = actor.now();
            actor.core.tick(now);
            actor.settle(ctx);
        });
        self.timer = Some((deadline, handle));
    }

    /// Submissions whose HTTP exchange ended without its answer: the
    /// receiver of their reply was dropped.
    ///
    /// spec: gateway.ReplySentReleasesSubmission
    fn release_abandoned(&mut self, ctx: &mut Context<Self>) {
        let before = self.replies.len();
        self.replies.retain(|id, (reply, _)| {
            let gone = reply.is_closed();
            if gone {
                self.core.abandon(*id);
            }
            !gone
        });
        let released = before - self.replies.len();
        if released > 0 {
            self.metrics
                .submissions_abandoned
                .add(u64::try_from(released).expect("a count fits u64"));
            self.settle(ctx);
        }
    }
}

impl Actor for GatewayActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.set_mailbox_capacity(MAILBOX_CAPACITY);
        ctx.run_interval(ABANDON_SWEEP, Self::release_abandoned);
    }
}

impl Handler<Submit> for GatewayActor {
    type Result = ();

    /// spec: gateway.OverloadedGatewayShedsSubmission
    fn handle(
        &mut self,
        Submit {
            submission,
            reply,
            relay,
        }: Submit,
        ctx: &mut Context<Self>,
    ) {
        if reply.is_closed() {
            // The client left while the submission waited in the mailbox.
            return;
        }
        if self.queued.len() >= self.limits.max_queued {
            let _ = reply.send(Err(ApiError::Overloaded));
            return;
        }
        match self.core.submit(self.now(), submission) {
            Ok(id) => {
                self.replies.insert(id, (reply, relay));
            }
            Err(refused) => {
                let _ = reply.send(Err(refused));
            }
        }
        self.settle(ctx);
    }
}

impl Handler<LookupCommand> for GatewayActor {
    type Result = MessageResult<LookupCommand>;

    fn handle(&mut self, lookup: LookupCommand, _: &mut Context<Self>) -> Self::Result {
        MessageResult(self.core.lookup_command(&lookup.key, lookup.partition))
    }
}

impl StreamHandler<Vec<Publication>> for GatewayActor {
    fn handle(&mut self, batch: Vec<Publication>, ctx: &mut Context<Self>) {
        let now = self.now();
        for publication in batch {
            let (partition, offset) = (publication.partition, publication.offset);
            match self.core.publication_read(now, publication) {
                PublicationRead::Observed { .. } => self.metrics.publications_observed.increment(),
                PublicationRead::Ignored => self.metrics.publications_ignored.increment(),
                PublicationRead::Corrupt(reason) => {
                    tracing::warn!(partition, offset, ?reason, "corrupt publication discarded");
                    self.metrics.publications_corrupt.increment();
                }
            }
        }
        self.settle(ctx);
    }

    /// The reader thread only ends when the actor is gone, or when it
    /// panicked: without outcomes nothing can be answered, so stop and let
    /// submissions fail over to other nodes.
    fn finished(&mut self, ctx: &mut Context<Self>) {
        tracing::error!("the outcome reader ended; the gateway stops");
        ctx.stop();
    }
}
