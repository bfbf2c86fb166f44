//! The gateway's shell: the real [`NodeHandle`] around [`GatewayCore`].
//!
//! - an actix actor ([`actor`]) owns the core: submissions arrive with a
//!   oneshot for their answer, which goes back through the HTTP worker's
//!   [`reply_relay`] (one hand-over per batch of answers, so a batch leaves
//!   the worker in one write), packs go to the input topic through an
//!   idempotent `FutureProducer` (many sends in flight, bounded), the
//!   core's timers run on `next_deadline`;
//! - the actor reads the outcome topic's publications from an
//!   [`OutcomeFeed`]: its own thread ([`outcome_reader`]), which reads
//!   every outcome partition by explicit assignment and hands the actor one
//!   batch per poll, or the batches of a node that reads the topic anyway;
//! - what only the node knows (status, durable stock, the other actors'
//!   metrics) comes through [`InstanceView`].
//!
//! Start with [`Gateway::start`] inside the node's actix `System`, then
//! [`Gateway::serve`] the HTTP API.

mod actor;
mod outcome_reader;
mod reply_relay;

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use actix::prelude::SendError;
use actix::{Actor as _, Addr};
use actix_web::dev::Server;
use actix_web::http::KeepAlive;
use actix_web::{HttpServer, web};
use broker::{BrokerProfile, Topics};
use protocol::position::Partition;
use protocol::records::Publication;
use rdkafka::error::KafkaError;
use rdkafka::producer::FutureProducer;
use tokio::sync::{mpsc, oneshot};

use crate::config::GatewayConfig;
use crate::core::{GatewayCore, SubmitAnswer};
use crate::error::ApiError;
use crate::http::{ApiState, HttpMetrics, app};
use crate::key_index::CommandLookup;
use crate::metrics::{Counter, Gauge, Histogram, LATENCY_BUCKETS_MICROS, MetricsRegistry};
use crate::node::{Admission, HealthSnapshot, InstanceStatus, NodeHandle, StockLevel};
use crate::validation::ValidSubmission;

use actor::{GatewayActor, LookupCommand, ProduceLimits, Submit};
use outcome_reader::OutcomeReader;
use reply_relay::ReplyRelay;

/// What the gateway cannot know itself: the instance it fronts.
pub trait InstanceView: Send + Sync + 'static {
    /// Read on every submission before its body: keep it cheap (an atomic
    /// load, not a snapshot).
    fn status(&self) -> InstanceStatus;

    /// The body of GET /health.
    fn health(&self) -> HealthSnapshot;

    /// The level from the Ledger's durable state; `None` when the
    /// instance stopped serving reads meanwhile. Called on an HTTP worker:
    /// a blocking read belongs on the node's own thread, awaited here.
    fn stock_level(
        &self,
        warehouse: String,
        sku: String,
    ) -> impl Future<Output = Option<StockLevel>>;

    /// Prometheus text of every other component, appended to the
    /// gateway's own metrics on GET /metrics.
    fn metrics_text(&self) -> String;
}

/// Everything [`Gateway::start`] needs.
#[derive(Clone, Debug)]
pub struct ShellConfig {
    pub gateway: GatewayConfig,
    pub broker: BrokerProfile,
    /// `topics.partitions` must equal `gateway.input_partitions`.
    pub topics: Topics,
    /// Prefix of the Kafka client ids (`<prefix>-packs`, `<prefix>-outcomes`),
    /// e.g. `tribunal-gateway-2`.
    pub client_id: String,
    /// Packs sent and not yet acknowledged or failed. Beyond it packs wait
    /// in the shell, in order.
    pub max_packs_in_flight: usize,
    /// Packs waiting for a send slot; while this many wait, submissions are
    /// shed with 503 overloaded. The queue never exceeds it by more than
    /// the input partition count (packs already filling when it filled).
    pub max_queued_packs: usize,
    /// Publications handed to the actor per message, at most.
    pub max_publications_per_batch: usize,
}

impl ShellConfig {
    /// The bounds that suit one node on the shared 2-core machine: at
    /// 10,000 commands/s over 4 partitions with a 1 ms flush window about
    /// 4,000 packs/s are cut and each is in flight for linger + ack
    /// (~2-3 ms, measured on the mock cluster the embedded broker replaced),
    /// so about a dozen are in flight; 64 leaves room for a slow broker
    /// before packs queue in the shell.
    pub fn new(
        gateway: GatewayConfig,
        broker: BrokerProfile,
        topics: Topics,
        client_id: impl Into<String>,
    ) -> Self {
        Self {
            gateway,
            broker,
            topics,
            client_id: client_id.into(),
            max_packs_in_flight: 64,
            max_queued_packs: 1_024,
            max_publications_per_batch: 512,
        }
    }

    /// Panics on a configuration the shell cannot run with; called once at
    /// start.
    pub fn assert_valid(&self) {
        self.gateway.assert_valid();
        assert_eq!(
            self.topics.partitions, self.gateway.input_partitions,
            "the topics have the partitions the gateway routes to"
        );
        assert!(self.max_packs_in_flight > 0, "at least one pack in flight");
        assert!(self.max_queued_packs > 0, "at least one pack may queue");
        assert!(
            self.max_publications_per_batch > 0,
            "a batch holds at least one publication"
        );
    }

    /// spec: gateway.PackProducedAfterFlushWindow
    ///
    /// The broker's producer settings (idempotent, acks=all, 5 requests in
    /// flight, linger for the broker kind), with the delivery timeout set
    /// below `submit_timeout`: a pack that cannot be written fails as 503
    /// produce_failed (retry safe) before its submissions would time out
    /// as 504.
    fn producer(&self) -> Result<FutureProducer, ShellError> {
        let submit_timeout = self.gateway.submit_timeout_ms;
        let delivery_timeout = submit_timeout - submit_timeout / 5;
        self.broker
            .producer_config(&format!("{}-packs", self.client_id))
            .set("message.timeout.ms", delivery_timeout.to_string())
            .create()
            .map_err(ShellError::Producer)
    }
}

/// How the HTTP server runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpSettings {
    /// One by default. The machine has 2 cores for 4 instances, a broker
    /// and the load generator; a request costs ~10 µs of CPU, so one
    /// worker thread serves far more than the cluster can process, and
    /// every submission goes through the single gateway actor anyway.
    /// More workers would only add threads competing for the same 2 cores.
    pub workers: usize,
    /// Pending connections the kernel queues (`listen` backlog). A load
    /// generator opening a few hundred connections at once must not see
    /// SYNs dropped (a 1 s retransmit in its tail); std's listener is fixed
    /// at 128, which is why [`Gateway::serve`] binds the socket itself.
    pub backlog: u32,
    /// Connections one worker holds open at once.
    pub max_connections: usize,
    /// Idle time before a kept-alive connection is closed: longer than a
    /// load generator's gaps, so its connection pool is reused.
    pub keep_alive: Duration,
    /// Seconds a graceful stop waits for open requests.
    pub shutdown_timeout_secs: u64,
}

impl Default for HttpSettings {
    fn default() -> Self {
        Self {
            workers: 1,
            backlog: 1_024,
            max_connections: 4_096,
            keep_alive: Duration::from_secs(75),
            shutdown_timeout_secs: 5,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ShellError {
    #[error("creating the pack producer: {0}")]
    Producer(#[source] KafkaError),
    #[error("creating the outcome consumer: {0}")]
    OutcomeConsumer(#[source] KafkaError),
    #[error("finding the end of outcome partition {partition}: {source}")]
    OutcomeEnd {
        partition: Partition,
        #[source]
        source: KafkaError,
    },
    #[error("assigning the outcome partitions: {0}")]
    OutcomeAssign(#[source] KafkaError),
    #[error("starting the outcome reader thread: {0}")]
    ReaderThread(#[source] io::Error),
    #[error("the outcome reader thread ended before it was positioned")]
    ReaderEnded,
}

/// The shell's own counters, beside the HTTP ones (`HttpMetrics`).
#[derive(Clone, Debug)]
struct ShellMetrics {
    packs_acknowledged: Counter,
    packs_failed: Counter,
    produce_latency: Histogram,
    publications_observed: Counter,
    publications_ignored: Counter,
    publications_corrupt: Counter,
    outcome_records_undecodable: Counter,
    outcome_read_errors: Counter,
    submissions_abandoned: Counter,
    pending_submissions: Gauge,
    packs_in_flight: Gauge,
    packs_queued: Gauge,
}

impl ShellMetrics {
    fn register(registry: &mut MetricsRegistry) -> Self {
        let packs = |registry: &mut MetricsRegistry, result| {
            registry.counter(
                "tribunal_gateway_packs_total",
                "Packs produced to the input topic, by delivery result.",
                &[("result", result)],
            )
        };
        let publications = |registry: &mut MetricsRegistry, result| {
            registry.counter(
                "tribunal_gateway_publications_total",
                "Outcome-topic publications read, by what became of them.",
                &[("result", result)],
            )
        };
        Self {
            packs_acknowledged: packs(registry, "acknowledged"),
            packs_failed: packs(registry, "failed"),
            produce_latency: registry.histogram(
                "tribunal_gateway_produce_seconds",
                "Pack produce latency, from send to delivery report.",
                &[],
                LATENCY_BUCKETS_MICROS,
            ),
            publications_observed: publications(registry, "observed"),
            publications_ignored: publications(registry, "ignored"),
            publications_corrupt: publications(registry, "corrupt"),
            outcome_records_undecodable: registry.counter(
                "tribunal_gateway_outcome_records_undecodable_total",
                "Outcome-topic records that are not a Publication, skipped.",
                &[],
            ),
            outcome_read_errors: registry.counter(
                "tribunal_gateway_outcome_read_errors_total",
                "Errors reported while reading the outcome topic.",
                &[],
            ),
            submissions_abandoned: registry.counter(
                "tribunal_gateway_submissions_abandoned_total",
                "Submissions released because the client left before its answer.",
                &[],
            ),
            pending_submissions: registry.gauge(
                "tribunal_gateway_pending_submissions",
                "Submissions packed or produced, waiting for their answer.",
                &[],
            ),
            packs_in_flight: registry.gauge(
                "tribunal_gateway_packs_in_flight",
                "Packs sent to the broker and not yet acknowledged or failed.",
                &[],
            ),
            packs_queued: registry.gauge(
                "tribunal_gateway_packs_queued",
                "Packs waiting in the gateway for a send slot.",
                &[],
            ),
        }
    }
}

/// The [`NodeHandle`] the HTTP API runs over: the gateway actor for
/// submissions and lookups, the view for everything else.
#[derive(Debug)]
pub struct GatewayNode<V> {
    actor: Addr<GatewayActor>,
    /// Whether the core takes submissions, as the actor last saw it.
    accepting: Arc<AtomicBool>,
    view: V,
    registry: MetricsRegistry,
}

impl<V: InstanceView> NodeHandle for GatewayNode<V> {
    /// spec: gateway.HaltedNodeRefusesSubmission, gateway.OverloadedGatewayShedsSubmission
    fn admission(&self) -> Admission {
        if self.view.status() == InstanceStatus::Halted {
            Admission::Halted
        } else if !self.accepting.load(Ordering::Relaxed) {
            Admission::Overloaded
        } else {
            Admission::Open
        }
    }

    /// The answer comes back through a oneshot, resolved by this worker's
    /// [`ReplyRelay`]; dropping this future (the client went away) drops its
    /// receiver, which the actor notices and abandons the submission. A
    /// stopped actor means the node is going down: the client should submit
    /// elsewhere. The submission is handed over without waiting for the
    /// actor to take it (one wake-up fewer from the actor's thread); only a
    /// full mailbox makes it wait for room.
    async fn submit(&self, submission: ValidSubmission) -> SubmitAnswer {
        let (reply, answer) = oneshot::channel();
        let submit = Submit {
            submission,
            reply,
            relay: ReplyRelay::of_this_worker(),
        };
        match self.actor.try_send(submit) {
            Ok(()) => {}
            Err(SendError::Full(submit)) => self
                .actor
                .send(submit)
                .await
                .map_err(|_| ApiError::InstanceHalted)?,
            Err(SendError::Closed(_)) => return Err(ApiError::InstanceHalted),
        }
        answer.await.unwrap_or(Err(ApiError::InstanceHalted))
    }

    /// A stopped actor knows no keys.
    async fn lookup_command(&self, key: String, partition: Option<Partition>) -> CommandLookup {
        self.actor
            .send(LookupCommand { key, partition })
            .await
            .unwrap_or(CommandLookup::Unknown)
    }

    async fn stock_level(&self, warehouse: String, sku: String) -> Option<StockLevel> {
        self.view.stock_level(warehouse, sku).await
    }

    fn health(&self) -> HealthSnapshot {
        self.view.health()
    }

    fn metrics_text(&self) -> String {
        let mut text = self.registry.render();
        text.push_str(&self.view.metrics_text());
        text
    }
}

/// Kafka numbers partitions with `i32`.
fn kafka_partition(partition: Partition) -> i32 {
    i32::try_from(partition).expect("the topics were created with an i32 partition count")
}

/// A started gateway: the actor and the outcome reader run; the HTTP API
/// is served with [`serve`](Self::serve).
#[derive(Debug)]
pub struct Gateway<V> {
    state: web::Data<ApiState<GatewayNode<V>>>,
}

/// Outcome batches queued between the reader thread and the actor; the
/// reader blocks beyond this.
pub const OUTCOME_BATCHES_QUEUED: usize = 4;

/// Where the gateway's actor gets the outcome topic's publications.
#[derive(Debug)]
pub enum OutcomeFeed {
    /// Its own reader thread and consumer, positioned at the end of every
    /// outcome partition as of start.
    OwnReader,
    /// Batches from a reader the embedding node runs anyway (one consumer
    /// less per node): in outcome-offset order per partition, from
    /// positions at or before the end as of start. A publication may come
    /// twice; the core ignores the second (first publication wins).
    Fed(mpsc::Receiver<Vec<Publication>>),
}

impl<V: InstanceView> Gateway<V> {
    /// Creates the producer, starts the actor on the current actix arbiter
    /// and, with [`OutcomeFeed::OwnReader`], positions its reader at the end
    /// of every outcome partition as of now. Returns once the reader is
    /// positioned, so a publication written after this returns is read.
    /// Call it inside the node's actix `System`.
    pub async fn start(
        config: ShellConfig,
        view: V,
        feed: OutcomeFeed,
    ) -> Result<Self, ShellError> {
        config.assert_valid();
        let mut registry = MetricsRegistry::new();
        let http_metrics = HttpMetrics::register(&mut registry);
        let metrics = ShellMetrics::register(&mut registry);
        let producer = config.producer()?;
        let batches_out = match feed {
            OutcomeFeed::OwnReader => {
                let reader = OutcomeReader::new(&config, metrics.clone())?;
                let (batches_in, batches_out) = mpsc::channel(OUTCOME_BATCHES_QUEUED);
                let positioned = reader.spawn(batches_in)?;
                positioned.await.map_err(|_| ShellError::ReaderEnded)??;
                batches_out
            }
            OutcomeFeed::Fed(batches) => batches,
        };

        let accepting = Arc::new(AtomicBool::new(true));
        let actor = GatewayActor::new(
            GatewayCore::new(config.gateway),
            producer,
            config.topics.input.clone(),
            ProduceLimits {
                max_in_flight: config.max_packs_in_flight,
                max_queued: config.max_queued_packs,
            },
            Arc::clone(&accepting),
            metrics,
        );
        let actor = GatewayActor::create(|ctx| {
            actor::read_outcomes(ctx, batches_out);
            actor
        });
        let node = GatewayNode {
            actor,
            accepting,
            view,
            registry,
        };
        Ok(Self {
            state: web::Data::new(ApiState {
                node,
                config: config.gateway,
                metrics: http_metrics,
            }),
        })
    }

    /// Binds `addr` (port 0 picks one) with `settings.backlog` and starts
    /// the HTTP server, HTTP/1.1 or h2c (HTTP/2 with prior knowledge) as
    /// each connection opens; returns it with the bound address. The server does
    /// not handle signals: the node stops it through `Server::handle()`.
    /// Await the `Server` (or spawn it) to drive it.
    ///
    /// A client that disconnects while waiting ends its exchange at once
    /// (half-closed connections are not kept), which abandons its
    /// submission (`gateway.ReplySentReleasesSubmission`).
    pub fn serve(
        &self,
        addr: SocketAddr,
        settings: &HttpSettings,
    ) -> io::Result<(Server, SocketAddr)> {
        let state = self.state.clone();
        let server = HttpServer::new(move || app(state.clone()))
            .workers(settings.workers)
            .backlog(settings.backlog)
            .max_connections(settings.max_connections)
            .keep_alive(KeepAlive::Timeout(settings.keep_alive))
            .h1_allow_half_closed(false)
            .shutdown_timeout(settings.shutdown_timeout_secs)
            .disable_signals()
            .bind_auto_h2c(addr)?;
        let bound = *server
            .addrs()
            .first()
            .expect("bind succeeded, so one address is bound");
        Ok((server.run(), bound))
    }
}
