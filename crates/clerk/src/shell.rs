//! The Clerk's actix shell: [`ClerkActor`] owns the deterministic
//! [`Clerk`] and does its I/O.
//!
//! - Peer links are real TCP: an accept loop on the pre-bound listener, a
//!   connect task per `Effect::Dial`, and a reader and a writer task per
//!   connected link (`links`). Tasks report by message; the actor feeds
//!   the core and carries out the effects of [`Clerk::step`].
//! - The actor steps after every input and again at the core's
//!   [`Clerk::next_deadline`] (heartbeats, publication delays, reconnect
//!   backoff, handshake and liveness timeouts), so there is no fixed tick.
//! - Effects for the rest of the node leave through a [`ClerkOutbox`],
//!   batched per step; suspicion, alarms and rejections are logged here
//!   and counted by the core ([`ClerkSnapshot::prometheus_text`]).
//! - Time is milliseconds since the actor was built (monotonic `Instant`).
//!
//! Built with [`ClerkActor::spawn`] inside a running actix `System`.

mod links;
mod messages;
mod snapshot;

use std::collections::BTreeMap;
use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use actix::{
    Actor, ActorContext, Addr, AsyncContext, Context, Handler, MessageResult, SpawnHandle,
};
use tokio::sync::mpsc::error::TrySendError;

use crate::clerk::{Clerk, ClerkError, OutcomeIntake};
use crate::config::{ClerkConfig, InstanceId, Millis};
use crate::effect::{Effect, LinkId, PublishOrder};
use crate::shell::links::{
    BytesRead, ConnectFailed, Connected, FramesWritten, InboundConnection, LinkFailed, LinkIo,
    Outgoing, TaskGuard,
};

pub use crate::shell::messages::{
    AssignOutcomeReader, ClearPeerSuspicion, ClerkOutbox, ClerkSnapshotRequested,
    OutcomePublicationsSeen, OutcomesConsumed, OutputsCommitted, PartitionHalted, ProgressAdvanced,
    PublicationFailed, PublicationSeen, PublishRequested, RecordPosition, RecordsSettled,
    RetainedOutputsLoaded, SelfDivergenceDetected, StatusChanged, WatermarkLoaded,
};
pub use crate::shell::snapshot::{ClerkSnapshot, ShellCounters};

/// How often the actor runs [`Clerk::check_invariants`]. A full check
/// walks every slot and schedule (0.6 ms for a full 8,192-record table,
/// `invariants/full_table` in `crates/clerk/benches`), while a busy actor
/// steps thousands of times a second: after every step the checks would
/// cost more than the agreement itself (`matching/clerk`: about 0.25 µs a
/// copy). Every 100 ms they cost under 1% of a core and still stop a
/// broken instance within a tenth of a second.
const INVARIANT_CHECK_INTERVAL: Millis = 100;

/// What a [`ClerkActor`] needs.
#[derive(Debug)]
pub struct ClerkShellConfig {
    pub clerk: ClerkConfig,
    /// The per-cluster key peer frames are authenticated with.
    pub cluster_key: Vec<u8>,
    /// Bound already (tests bind port 0 and hand the address round).
    pub listener: std::net::TcpListener,
    /// Where every peer listens; one entry per peer id is required.
    pub peer_addresses: BTreeMap<InstanceId, SocketAddr>,
}

/// Why a [`ClerkActor`] could not start.
#[derive(Debug, thiserror::Error)]
pub enum ShellError {
    #[error(transparent)]
    Clerk(#[from] ClerkError),
    #[error("no address for peer {0}")]
    MissingPeerAddress(InstanceId),
    #[error("peer listener: {0}")]
    Listener(#[source] io::Error),
}

/// The Clerk as an actor: one instance's peer federation over TCP.
pub struct ClerkActor {
    clerk: Clerk,
    started_at: Instant,
    peer_addresses: BTreeMap<InstanceId, SocketAddr>,
    outbox: ClerkOutbox,
    /// Taken by `started`, which hands it to the accept loop.
    listener: Option<tokio::net::TcpListener>,
    _accept_loop: Option<TaskGuard>,
    /// The I/O of every link the core holds, by the same ids.
    links: BTreeMap<LinkId, LinkIo>,
    /// The pending wake-up and the deadline it was armed for.
    timer: Option<(Millis, SpawnHandle)>,
    /// Names the instance in every log line (tests and `tribunal cluster`
    /// run several in one process).
    span: tracing::Span,
    next_invariant_check_at: Millis,
    counters: ShellCounters,
}

impl fmt::Debug for ClerkActor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClerkActor")
            .field("instance_id", &self.clerk.config().instance_id)
            .field("status", &self.clerk.status())
            .field("links", &self.links.len())
            .field("counters", &self.counters)
            .finish_non_exhaustive()
    }
}

impl ClerkActor {
    /// Builds the core and starts the actor in the current actix `System`
    /// (call it from inside one: the listener joins its runtime).
    pub fn spawn(config: ClerkShellConfig, outbox: ClerkOutbox) -> Result<Addr<Self>, ShellError> {
        let started_at = Instant::now();
        let span = tracing::info_span!("clerk", instance = config.clerk.instance_id);
        let clerk = Clerk::new(config.clerk, &config.cluster_key, 0)?;
        if let Some(peer) = clerk
            .config()
            .peer_ids()
            .find(|peer| !config.peer_addresses.contains_key(peer))
        {
            return Err(ShellError::MissingPeerAddress(peer));
        }
        config
            .listener
            .set_nonblocking(true)
            .map_err(ShellError::Listener)?;
        let listener =
            tokio::net::TcpListener::from_std(config.listener).map_err(ShellError::Listener)?;
        let actor = Self {
            clerk,
            started_at,
            peer_addresses: config.peer_addresses,
            outbox,
            listener: Some(listener),
            _accept_loop: None,
            links: BTreeMap::new(),
            timer: None,
            span,
            next_invariant_check_at: 0,
            counters: ShellCounters::default(),
        };
        Ok(actor.start())
    }

    fn now(&self) -> Millis {
        Millis::try_from(self.started_at.elapsed().as_millis()).unwrap_or(Millis::MAX)
    }

    /// Runs the core's timers, carries out every effect, and arms the
    /// wake-up for the next deadline.
    fn step(&mut self, ctx: &mut Context<Self>) {
        let span = self.span.clone();
        let _in_span = span.enter();
        let now = self.now();
        let effects = self.clerk.step(now);
        self.check_invariants(now);
        let mut batch = StepOutput::default();
        for effect in effects {
            self.carry_out(effect, &mut batch, ctx);
        }
        batch.deliver(&self.outbox);
        self.arm_timer(now, ctx);
    }

    /// A violation is a bug in the core or in this shell: stop the
    /// instance rather than publish from a broken state.
    fn check_invariants(&mut self, now: Millis) {
        if now < self.next_invariant_check_at {
            return;
        }
        self.next_invariant_check_at = now.saturating_add(INVARIANT_CHECK_INTERVAL);
        if let Err(violation) = self.clerk.check_invariants() {
            panic!("clerk invariant violated: {violation}");
        }
    }

    fn carry_out(&mut self, effect: Effect, batch: &mut StepOutput, ctx: &mut Context<Self>) {
        match effect {
            Effect::Dial { link, peer } => {
                let address = self.peer_addresses[&peer];
                tracing::debug!(link = link.0, peer, %address, "dialling peer");
                let io = links::dial(link, address, ctx.address());
                self.links.insert(link, io);
            }
            Effect::SendHandshake { link, bytes } => self.send(link, Outgoing::handshake(bytes)),
            Effect::SendFrame { link, bytes } => self.send(link, Outgoing::frame(bytes)),
            Effect::CloseLink { link } => {
                self.links.remove(&link);
            }
            Effect::FrameRejected { link, peer, reason } => {
                tracing::warn!(
                    link = link.0,
                    ?peer,
                    reason = reason.as_str(),
                    "peer frame rejected"
                );
            }
            Effect::HandshakeRejected { link, peer, reason } => {
                let link = link.map(|link| link.0);
                tracing::warn!(
                    ?link,
                    ?peer,
                    reason = reason.as_str(),
                    "peer handshake rejected"
                );
            }
            Effect::PeerSuspected {
                peer,
                reason,
                partition,
                offset,
            } => {
                tracing::warn!(
                    peer,
                    reason = reason.as_str(),
                    partition,
                    offset,
                    "peer suspected"
                );
            }
            Effect::Alarm {
                kind,
                partition,
                offset,
            } => {
                tracing::error!(?kind, partition, offset, "clerk alarm");
            }
            Effect::Publish(order) => batch.publish.push(order),
            Effect::PartitionHalted { partition } => {
                tracing::error!(partition, "split brain: partition halted");
                self.outbox
                    .partition_halted
                    .do_send(PartitionHalted { partition });
            }
            Effect::SelfDivergenceDetected { partition, offset } => {
                tracing::error!(partition, offset, "own output diverges from the agreement");
                self.outbox
                    .self_divergence
                    .do_send(SelfDivergenceDetected { partition, offset });
            }
            Effect::RecordSettled { partition, offset } => {
                batch.settled.push(RecordPosition { partition, offset });
            }
            Effect::OutcomePublicationSeen {
                partition,
                offset,
                outcome_offset,
            } => batch.seen.push(PublicationSeen {
                partition,
                offset,
                outcome_offset,
            }),
            Effect::AssignOutcomeReader {
                partition,
                outcome_offset,
            } => self.outbox.outcome_reader.do_send(AssignOutcomeReader {
                partition,
                outcome_offset,
            }),
        }
    }

    /// Queues bytes for a link's writer. The core sends only on links whose
    /// TCP connection is up, and never more frames than the queue holds.
    fn send(&mut self, link: LinkId, outgoing: Outgoing) {
        let Some(LinkIo::Open { queue, .. }) = self.links.get(&link) else {
            panic!("the core sent on link {link:?}, which has no connection");
        };
        match queue.try_send(outgoing) {
            // Closed: the writer failed and its LinkFailed is on the way.
            Ok(()) | Err(TrySendError::Closed(_)) => {}
            Err(TrySendError::Full(_)) => {
                panic!("link {link:?}: more frames unwritten than max_peer_queue_frames")
            }
        }
    }

    /// Wakes the actor at the core's next deadline. An earlier wake-up
    /// already armed stays: stepping early is harmless, and re-arming on
    /// every input would churn timers.
    fn arm_timer(&mut self, now: Millis, ctx: &mut Context<Self>) {
        let Some(deadline) = self.clerk.next_deadline() else {
            return;
        };
        if let Some((armed_for, handle)) = self.timer {
            if armed_for <= deadline {
                return;
            }
            ctx.cancel_future(handle);
        }
        let delay = deadline.saturating_sub(now).max(1);
        let handle = ctx.run_later(Duration::from_millis(delay), |actor, ctx| {
            actor.timer = None;
            actor.step(ctx);
        });
        self.timer = Some((deadline, handle));
    }

    /// A link writer's queue: the core's counted frames plus the link's
    /// one handshake message.
    fn writer_queue_bound(&self) -> usize {
        self.clerk.config().max_peer_queue_frames as usize + 1
    }

    /// A link's I/O failed: the core closes it (and backs off an outbound
    /// one). Reports for links already closed are stale and ignored.
    fn link_failed(&mut self, link: LinkId, error: &io::Error, ctx: &mut Context<Self>) {
        if !self.links.contains_key(&link) {
            return;
        }
        self.span
            .in_scope(|| tracing::debug!(link = link.0, %error, "peer link failed"));
        self.clerk.link_io_failed(link, self.now());
        self.step(ctx);
    }
}

/// The outbox messages of one step, sent once each.
#[derive(Default)]
struct StepOutput {
    publish: Vec<PublishOrder>,
    settled: Vec<RecordPosition>,
    seen: Vec<PublicationSeen>,
}

impl StepOutput {
    fn deliver(self, outbox: &ClerkOutbox) {
        if !self.publish.is_empty() {
            outbox.publish.do_send(PublishRequested(self.publish));
        }
        if !self.settled.is_empty() {
            outbox.settled.do_send(RecordsSettled(self.settled));
        }
        if !self.seen.is_empty() {
            outbox
                .publications_seen
                .do_send(OutcomePublicationsSeen(self.seen));
        }
    }
}

impl Actor for ClerkActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        let Some(listener) = self.listener.take() else {
            tracing::error!("clerk actor restarted without its listener");
            return ctx.stop();
        };
        let accept_loop = links::accept_connections(listener, ctx.address(), &self.span);
        self._accept_loop = Some(accept_loop);
        self.step(ctx);
    }
}

// ---------------------------------------------------------------------
// Inputs from the node
// ---------------------------------------------------------------------

impl Handler<OutputsCommitted> for ClerkActor {
    type Result = ();

    fn handle(&mut self, message: OutputsCommitted, ctx: &mut Context<Self>) {
        self.clerk.outputs_committed(&message.0, self.now());
        self.step(ctx);
    }
}

impl Handler<RetainedOutputsLoaded> for ClerkActor {
    type Result = ();

    fn handle(&mut self, message: RetainedOutputsLoaded, ctx: &mut Context<Self>) {
        self.clerk.retained_outputs_loaded(&message.0, self.now());
        self.step(ctx);
    }
}

impl Handler<WatermarkLoaded> for ClerkActor {
    type Result = ();

    fn handle(&mut self, message: WatermarkLoaded, ctx: &mut Context<Self>) {
        self.clerk.watermark_loaded(
            message.partition,
            message.applied_offset,
            message.outcome_resume_offset,
        );
        self.step(ctx);
    }
}

impl Handler<ProgressAdvanced> for ClerkActor {
    type Result = ();

    fn handle(&mut self, message: ProgressAdvanced, ctx: &mut Context<Self>) {
        self.clerk.advance_progress(
            message.partition,
            message.consumed_offset,
            message.applied_offset,
        );
        self.step(ctx);
    }
}

impl Handler<StatusChanged> for ClerkActor {
    type Result = ();

    fn handle(&mut self, message: StatusChanged, ctx: &mut Context<Self>) {
        self.span
            .in_scope(|| tracing::info!(status = ?message.0, "clerk status"));
        self.clerk.set_status(message.0, self.now());
        self.step(ctx);
    }
}

impl Handler<OutcomesConsumed> for ClerkActor {
    type Result = Vec<OutcomeIntake>;

    fn handle(&mut self, message: OutcomesConsumed, ctx: &mut Context<Self>) -> Vec<OutcomeIntake> {
        let now = self.now();
        let intakes = message
            .0
            .into_iter()
            .map(|record| self.clerk.outcome_consumed(record, now))
            .collect();
        self.step(ctx);
        intakes
    }
}

impl Handler<PublicationFailed> for ClerkActor {
    type Result = ();

    fn handle(&mut self, message: PublicationFailed, ctx: &mut Context<Self>) {
        self.clerk
            .publication_failed(message.partition, message.offset, self.now());
        self.step(ctx);
    }
}

impl Handler<ClearPeerSuspicion> for ClerkActor {
    type Result = bool;

    fn handle(&mut self, message: ClearPeerSuspicion, ctx: &mut Context<Self>) -> bool {
        let cleared = self.clerk.clear_peer_suspicion(message.0);
        self.span.in_scope(|| {
            tracing::info!(
                peer = message.0,
                cleared,
                "peer suspicion cleared by operator"
            );
        });
        self.step(ctx);
        cleared
    }
}

impl Handler<ClerkSnapshotRequested> for ClerkActor {
    type Result = MessageResult<ClerkSnapshotRequested>;

    fn handle(&mut self, _: ClerkSnapshotRequested, _: &mut Context<Self>) -> Self::Result {
        MessageResult(ClerkSnapshot::of(&self.clerk, self.counters))
    }
}

// ---------------------------------------------------------------------
// Inputs from the link tasks
// ---------------------------------------------------------------------

impl Handler<InboundConnection> for ClerkActor {
    type Result = ();

    /// A refused connection (`None`) is dropped here, which closes it.
    fn handle(&mut self, message: InboundConnection, ctx: &mut Context<Self>) {
        self.counters.inbound_connections += 1;
        // From the thread's CSPRNG: a guessable nonce would let a recorded
        // session's frames verify on a new connection.
        let nonce = rand::random();
        if let Some(link) = self.clerk.inbound_accepted(nonce, self.now()) {
            let queue = self.writer_queue_bound();
            let io = links::open(link, message.stream, queue, ctx.address(), &self.span);
            self.links.insert(link, io);
        }
        self.step(ctx);
    }
}

impl Handler<Connected> for ClerkActor {
    type Result = ();

    /// The core learns nothing yet: the link counts as connecting until
    /// the acceptor's challenge arrives. A dial the core closed meanwhile
    /// drops its connection here.
    fn handle(&mut self, message: Connected, ctx: &mut Context<Self>) {
        let link = message.link;
        if let Some(LinkIo::Connecting { .. }) = self.links.get(&link) {
            let queue = self.writer_queue_bound();
            let io = links::open(link, message.stream, queue, ctx.address(), &self.span);
            self.links.insert(link, io);
        }
    }
}

impl Handler<ConnectFailed> for ClerkActor {
    type Result = ();

    fn handle(&mut self, message: ConnectFailed, ctx: &mut Context<Self>) {
        if self.links.contains_key(&message.link) {
            self.counters.connect_failures += 1;
        }
        self.link_failed(message.link, &message.error, ctx);
    }
}

impl Handler<BytesRead> for ClerkActor {
    type Result = ();

    fn handle(&mut self, message: BytesRead, ctx: &mut Context<Self>) {
        self.clerk
            .bytes_received(message.link, &message.bytes, self.now());
        self.step(ctx);
    }
}

impl Handler<LinkFailed> for ClerkActor {
    type Result = ();

    fn handle(&mut self, message: LinkFailed, ctx: &mut Context<Self>) {
        if self.links.contains_key(&message.link) {
            self.counters.link_io_failures += 1;
        }
        self.link_failed(message.link, &message.error, ctx);
    }
}

impl Handler<FramesWritten> for ClerkActor {
    type Result = ();

    fn handle(&mut self, message: FramesWritten, ctx: &mut Context<Self>) {
        for _ in 0..message.frames {
            self.clerk.frame_flushed(message.link);
        }
        self.step(ctx);
    }
}
