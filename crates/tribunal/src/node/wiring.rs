//! Starts every actor of one instance in one actix `System` and connects
//! their outboxes; the [`NodeHub`] routes what one actor decides to the
//! actors that act on it, so no actor crate depends on another.

use std::process::ExitCode;
use std::sync::Mutex;
use std::time::Duration;

use actix::prelude::*;
use clerk::shell::{
    AssignOutcomeReader, ClerkActor, ClerkOutbox, ClerkShellConfig, ClerkSnapshot,
    ClerkSnapshotRequested, OutcomePublicationsSeen, OutcomesConsumed, OutputsCommitted,
    PartitionHalted, ProgressAdvanced, PublicationFailed, RecordsSettled, RetainedOutputsLoaded,
    SelfDivergenceDetected, StatusChanged, WatermarkLoaded,
};
use clerk::{ClerkConfig, OwnOutput};
use domain::inventory::{Inventory, InventoryLimits};
use gateway::config::GatewayConfig;
use gateway::shell::{Gateway, HttpSettings, OUTCOME_BATCHES_QUEUED, OutcomeFeed, ShellConfig};
use ledger::LedgerReader;
use protocol::envelope::RecordDigest;
use protocol::position::{Offset, Partition, StreamTime};
use rdkafka::consumer::BaseConsumer;
use rdkafka::producer::FutureProducer;
use tokio::sync::mpsc;
use usher::shell::{
    ProgressQuery, StopPartition, UsherActor, UsherHalted, UsherOutbox, WatermarkAdvanced,
};
use usher::{Assignment, Usher, UsherConfig};

use crate::lifecycle::{HaltReason, InstanceStatus};
use crate::node::args::NodeArgs;
use crate::node::exit;
use crate::node::outcome_reader::{GatewayFeed, OutcomeReader};
use crate::node::processing::{
    Committed, PartitionState, PipelineMetrics, ProcessingActor, ProcessingOutbox, Stages,
};
use crate::node::publisher::{Forget, PublisherActor, PublisherMetrics, PublisherTopics};
use crate::node::startup::Started;
use crate::node::status::{NodeStatus, Observed};
use crate::node::view::NodeView;
use crate::pipeline::Cores;
use crate::store::LedgerStore;
use arbiter::shell::ArbiterActor;
use gateway::metrics::MetricsRegistry;
use ledger::PublicationTracker;
use ledger::shell::{LedgerActor, PublicationsSeen};
use registrar::shell::RegistrarActor;
use warden::shell::WardenActor;

/// Outputs kept in memory for publishing, per partition (the Clerk's
/// unagreed window); older ones are read back from the Ledger.
const RECENT_OUTPUTS_PER_PARTITION: usize = 8_192;
/// Publications the Ledger remembers ahead of its watermark, per partition:
/// the Clerk reads no further than its unagreed window plus its lookahead.
const MAX_PUBLICATIONS_SEEN_AHEAD: usize = 2 * 8_192;
/// Retained Ledger rows read per page at start.
const RETAINED_PAGE: usize = 4_096;
/// How long the outcome reader waits for the Clerk's answer; only a
/// stopping node takes this long, and the reader then ends.
const CLERK_ANSWER: Duration = Duration::from_secs(30);
/// How often /health's view of the actors is refreshed.
const OBSERVE_INTERVAL: Duration = Duration::from_millis(200);

/// Runs the instance's actors until a stop signal or a halt.
pub fn run_system(args: NodeArgs, started: Started) -> ExitCode {
    let system = System::new();
    let code = system.block_on(async move {
        match run_node(args, started).await {
            Ok(code) => code,
            Err(message) => {
                tracing::error!("{message}");
                ExitCode::from(exit::COULD_NOT_START)
            }
        }
    });
    System::current().stop();
    code
}

async fn run_node(args: NodeArgs, started: Started) -> Result<ExitCode, String> {
    let Started {
        cluster_key,
        topics,
        cores,
        lifecycle,
        log_ends,
    } = started;
    let id = args.id;
    let profile = args.broker_profile();
    let reader = cores.reader.clone();
    let partitions: Vec<Partition> = (0..args.topology.partitions).collect();
    let watermarks: Vec<(Partition, Offset, StreamTime, Offset)> = cores
        .watermarks
        .iter()
        .map(|watermark| {
            (
                watermark.partition,
                watermark.applied_offset,
                watermark.stream_time,
                watermark.outcome_resume_offset,
            )
        })
        .collect();
    let (retained, publications) = retained_outputs(&reader, &cores.watermarks)?;
    let status = NodeStatus::new(
        lifecycle,
        watermarks
            .iter()
            .map(|&(partition, applied, _, _)| (partition, applied))
            .collect(),
    );

    let (gateway_batches_in, gateway_batches_out) = mpsc::channel(OUTCOME_BATCHES_QUEUED);
    let hub = NodeHub {
        status: status.clone(),
        clerk: None,
        usher: None,
        publisher: None,
        ledger: None,
        outcome_reader: None,
        outcome_reader_starts: Vec::new(),
        partitions: args.topology.partitions,
        outcome_consumer: Some(
            profile
                .consumer_config(&format!("tribunal-{id}-outcomes"))
                .create()
                .map_err(|error| format!("outcome consumer: {error}"))?,
        ),
        outcome_topic: topics.outcomes.clone(),
        gateway_feed: Some(GatewayFeed::new(gateway_batches_in)),
    }
    .start();

    let producer: FutureProducer = profile
        .producer_config(&format!("tribunal-{id}-publisher"))
        .create()
        .map_err(|error| format!("publication producer: {error}"))?;
    let publisher = PublisherActor::new(
        producer,
        PublisherTopics {
            outcomes: topics.outcomes.clone(),
            dead_letters: topics.dead_letters.clone(),
        },
        reader.clone(),
        RECENT_OUTPUTS_PER_PARTITION * partitions.len(),
        hub.clone().recipient(),
    )
    .start();

    let listener = std::net::TcpListener::bind(args.peer_listen)
        .map_err(|error| format!("peer listener on {}: {error}", args.peer_listen))?;
    let clerk = ClerkActor::spawn(
        ClerkShellConfig {
            clerk: ClerkConfig {
                instance_id: id,
                instance_count: args.topology.instances,
                required_copies: args.topology.required_copies,
                input_partitions: args.topology.partitions,
                ..ClerkConfig::default()
            },
            cluster_key,
            listener,
            peer_addresses: args.peer_map(),
        },
        ClerkOutbox {
            publish: publisher.clone().recipient(),
            settled: hub.clone().recipient(),
            publications_seen: hub.clone().recipient(),
            outcome_reader: hub.clone().recipient(),
            partition_halted: hub.clone().recipient(),
            self_divergence: hub.clone().recipient(),
        },
    )
    .map_err(|error| format!("clerk: {error}"))?;
    for &(partition, applied_offset, _, outcome_resume_offset) in &watermarks {
        clerk.do_send(WatermarkLoaded {
            partition,
            applied_offset,
            outcome_resume_offset,
        });
    }
    clerk.do_send(RetainedOutputsLoaded(retained));

    let mut registry = MetricsRegistry::new();
    let pipeline_metrics = PipelineMetrics::register(&mut registry);
    let (processing, ledger_actor) = start_processing(
        cores,
        publications,
        &watermarks,
        args.topology.partitions,
        &status,
        &hub,
        pipeline_metrics,
    );

    let assignments: Vec<Assignment> = watermarks
        .iter()
        .map(|&(partition, applied_offset, stream_time, _)| {
            let log_end = log_ends
                .iter()
                .find(|(p, _)| *p == partition)
                .map(|&(_, end)| end)
                .expect("a log end per partition");
            Assignment {
                partition,
                applied_offset,
                stream_time,
                catch_up_target: log_end.max(applied_offset + 1),
            }
        })
        .collect();
    let consumer: BaseConsumer = profile
        .consumer_config(&format!("tribunal-{id}-input"))
        .create()
        .map_err(|error| format!("input consumer: {error}"))?;
    let usher = UsherActor::new(
        Usher::new(UsherConfig {
            input_partitions: args.topology.partitions,
            ..UsherConfig::default()
        })
        .map_err(|error| format!("usher config: {error}"))?,
        Inventory::new(InventoryLimits::default()),
        consumer,
        topics.input.clone(),
        &assignments,
        UsherOutbox {
            delivered: processing.recipient(),
            halted: hub.clone().recipient(),
        },
    )
    .map_err(|error| format!("usher: {error}"))?
    .start();

    hub.do_send(Connect {
        clerk: clerk.clone(),
        usher: usher.clone(),
        publisher: publisher.clone(),
        ledger: ledger_actor,
    });
    status.listen(clerk_status_listener(clerk.clone()));

    let view = NodeView::new(
        status.clone(),
        reader.clone(),
        args.topology.partitions,
        registry,
    );
    let gateway = Gateway::start(
        ShellConfig::new(
            GatewayConfig {
                input_partitions: args.topology.partitions,
                ..GatewayConfig::default()
            },
            profile.clone(),
            topics.clone(),
            format!("tribunal-gateway-{id}"),
        ),
        view,
        OutcomeFeed::Fed(gateway_batches_out),
    )
    .await
    .map_err(|error| format!("gateway: {error}"))?;
    let (server, bound) = gateway
        .serve(args.http_listen, &HttpSettings::default())
        .map_err(|error| format!("HTTP listener on {}: {error}", args.http_listen))?;
    let server_handle = server.handle();
    actix::spawn(async move {
        if let Err(error) = server.await {
            tracing::error!(%error, "the HTTP server failed");
        }
    });
    tracing::info!(instance = id, http = %bound, peers = %args.peer_listen, "node started");

    let observer = observe_periodically(
        status.clone(),
        usher.clone(),
        clerk.clone(),
        publisher.clone(),
    );
    // A halted instance stops applying and publishing but keeps serving
    // /health and /metrics until an operator stops it.
    crate::node::stop_signal().await;
    tracing::info!("stop signal; shutting down");
    let code = match status.halt_record() {
        Some(record) => {
            tracing::error!(?record, "stopping a halted instance");
            ExitCode::from(exit::HALTED)
        }
        None => ExitCode::SUCCESS,
    };
    observer.abort();
    server_handle.stop(true).await;
    Ok(code)
}

/// The core actors (Warden, Registrar and Arbiter on this arbiter; the
/// Ledger on its own thread, as a commit blocks on fdatasync) and the
/// conductor that takes batches through them.
fn start_processing(
    cores: Cores,
    publications: PublicationTracker,
    watermarks: &[(Partition, Offset, StreamTime, Offset)],
    partitions: u32,
    status: &NodeStatus,
    hub: &Addr<NodeHub>,
    metrics: PipelineMetrics,
) -> (Addr<ProcessingActor>, Addr<LedgerActor>) {
    let Cores {
        domain,
        warden,
        registrar,
        arbiter,
        ledger,
        commits,
        reader,
        watermarks: _,
    } = cores;
    let store = LedgerStore(reader);
    let max_batch_records = arbiter.config().max_batch_records;
    let arbiter = ArbiterActor::new(arbiter).start();
    let ledger = once_on_thread(
        "ledger-commit",
        (ledger, publications),
        |(ledger, publications)| LedgerActor::new(ledger, publications),
    );
    let stages = Stages {
        domain,
        partitions,
        warden: WardenActor::new(warden, store.clone()).start(),
        registrar: RegistrarActor::new(registrar, store).start(),
        arbiter,
        ledger: ledger.clone(),
        metrics,
    };
    let processing = ProcessingActor::new(
        stages,
        watermarks
            .iter()
            .map(|&(partition, applied_offset, _, outcome_resume_offset)| {
                (
                    partition,
                    PartitionState {
                        applied_offset,
                        outcome_resume_offset,
                    },
                )
            })
            .collect(),
        ProcessingOutbox {
            watermark: hub.clone().recipient(),
            committed: hub.clone().recipient(),
        },
        status.clone(),
        max_batch_records,
        commits,
    )
    .start();
    (processing, ledger)
}

/// Starts a one-thread `SyncArbiter` actor around `core`, on a thread named
/// `thread_name` so that profiles tell it from the main thread; the factory
/// runs exactly once, on that thread.
fn once_on_thread<T, A>(
    thread_name: &str,
    core: T,
    make: impl Fn(T) -> A + Send + Sync + 'static,
) -> Addr<A>
where
    T: Send + 'static,
    A: Actor<Context = SyncContext<A>>,
{
    let core = Mutex::new(Some(core));
    SyncArbiter::start_with_thread_builder(
        1,
        || std::thread::Builder::new().name(thread_name.to_owned()),
        move || {
            make(
                lock(&core)
                    .take()
                    .expect("a one-thread SyncArbiter builds its actor once"),
            )
        },
    )
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Rows the Ledger still holds: those whose publication was not seen
/// before the stop are the Clerk's own copies again; all of them teach the
/// Ledger's publication tracker what to prune.
fn retained_outputs(
    reader: &LedgerReader,
    watermarks: &[ledger::PartitionWatermark],
) -> Result<(Vec<OwnOutput>, PublicationTracker), String> {
    let mut tracker = PublicationTracker::new(watermarks, MAX_PUBLICATIONS_SEEN_AHEAD);
    let mut outputs = Vec::new();
    reader
        .for_each_retained_output(RETAINED_PAGE, |position, row| {
            tracker.retained_row_loaded(position, &row);
            if !row.publication_seen {
                outputs.push(OwnOutput {
                    partition: position.partition,
                    offset: position.offset,
                    digest: row.record_digest(),
                    // Not stored: a restarted publisher writes no
                    // dead-letter record for these (the publication itself
                    // still carries the agreed outcome).
                    dead_letter_reason: None,
                });
            }
        })
        .map_err(|error| format!("reading retained outputs: {error}"))?;
    Ok((outputs, tracker))
}

/// Tells the Clerk every status change: a recovering instance's Clerk
/// keeps its own copies to itself until it is ready.
///
/// spec: recovery.RecoveringInstanceWithholdsOwnCopies
fn clerk_status_listener(clerk: Addr<ClerkActor>) -> crate::node::status::StatusListener {
    let mut told = clerk::InstanceStatus::Starting;
    Box::new(move |status| {
        let next = clerk_status(status);
        if told == clerk::InstanceStatus::Starting && next == clerk::InstanceStatus::Ready {
            // An instance with nothing to replay is ready at once; the
            // Clerk still sees it pass through recovery.
            clerk.do_send(StatusChanged(clerk::InstanceStatus::Recovering));
        }
        if next != told {
            clerk.do_send(StatusChanged(next));
            told = next;
        }
    })
}

fn clerk_status(status: InstanceStatus) -> clerk::InstanceStatus {
    match status {
        InstanceStatus::Starting => clerk::InstanceStatus::Starting,
        InstanceStatus::Recovering => clerk::InstanceStatus::Recovering,
        InstanceStatus::Ready => clerk::InstanceStatus::Ready,
        InstanceStatus::Halted => clerk::InstanceStatus::Halted,
    }
}

/// Copies the actors' progress and suspicion into the status /health reads.
fn observe_periodically(
    status: NodeStatus,
    usher: Addr<UsherActor<Inventory>>,
    clerk: Addr<ClerkActor>,
    publisher: Addr<PublisherActor>,
) -> tokio::task::JoinHandle<()> {
    actix::spawn(async move {
        let mut interval = tokio::time::interval(OBSERVE_INTERVAL);
        loop {
            interval.tick().await;
            let (Ok(progress), Ok(snapshot), Ok(publisher_text)) = (
                usher.send(ProgressQuery).await,
                clerk.send(ClerkSnapshotRequested).await,
                publisher.send(PublisherMetrics).await,
            ) else {
                return;
            };
            status.observe(observed(&progress, &snapshot, publisher_text));
        }
    })
}

fn observed(
    progress: &[usher::shell::PartitionProgress],
    snapshot: &ClerkSnapshot,
    publisher_text: String,
) -> Observed {
    let mut metrics_text = snapshot.prometheus_text();
    metrics_text.push_str(&publisher_text);
    for partition in progress {
        use std::fmt::Write as _;
        let p = partition.partition;
        let _ = writeln!(
            metrics_text,
            "tribunal_usher_applied_offset{{partition=\"{p}\"}} {}\n\
             tribunal_usher_consumed_offset{{partition=\"{p}\"}} {}\n\
             tribunal_usher_lag{{partition=\"{p}\"}} {}\n\
             tribunal_usher_unagreed_records{{partition=\"{p}\"}} {}\n\
             tribunal_usher_queued_records{{partition=\"{p}\"}} {}\n\
             tribunal_usher_redelivered_dropped_total{{partition=\"{p}\"}} {}\n\
             tribunal_usher_offset_gaps_total{{partition=\"{p}\"}} {}",
            partition.applied_offset,
            partition.consumed_offset,
            partition.lag,
            partition.unagreed_records,
            partition.queued_records,
            partition.redelivered_dropped,
            partition.offset_gaps,
        );
    }
    Observed {
        lag: progress
            .iter()
            .map(|partition| (partition.partition, partition.lag))
            .collect(),
        self_suspected: snapshot.self_suspected,
        suspected_peers: snapshot
            .suspected_peers
            .iter()
            .map(|(peer, reason)| (*peer, reason.as_str().to_owned()))
            .collect(),
        halted_partitions: Vec::new(),
        metrics_text,
    }
}

/// Hands the hub the actors started after it.
#[derive(Message)]
#[rtype(result = "()")]
struct Connect {
    clerk: Addr<ClerkActor>,
    usher: Addr<UsherActor<Inventory>>,
    publisher: Addr<PublisherActor>,
    ledger: Addr<LedgerActor>,
}

/// Routes between the actors (see the module docs).
struct NodeHub {
    status: NodeStatus,
    clerk: Option<Addr<ClerkActor>>,
    usher: Option<Addr<UsherActor<Inventory>>>,
    publisher: Option<Addr<PublisherActor>>,
    ledger: Option<Addr<LedgerActor>>,
    outcome_reader: Option<OutcomeReader>,
    /// Outcome reader positions the Clerk asked for, until every partition has one.
    outcome_reader_starts: Vec<(Partition, Offset)>,
    partitions: u32,
    outcome_consumer: Option<BaseConsumer>,
    outcome_topic: String,
    /// Handed to the outcome reader when it starts.
    gateway_feed: Option<GatewayFeed>,
}

impl NodeHub {
    fn clerk(&self) -> &Addr<ClerkActor> {
        self.clerk
            .as_ref()
            .expect("connected before any actor runs")
    }

    fn usher(&self) -> &Addr<UsherActor<Inventory>> {
        self.usher
            .as_ref()
            .expect("connected before any actor runs")
    }

    fn publisher(&self) -> &Addr<PublisherActor> {
        self.publisher
            .as_ref()
            .expect("connected before any actor runs")
    }

    fn ledger(&self) -> &Addr<LedgerActor> {
        self.ledger
            .as_ref()
            .expect("connected before any actor runs")
    }

    fn start_outcome_reader(&mut self) {
        let (Some(consumer), Some(gateway_feed)) =
            (self.outcome_consumer.take(), self.gateway_feed.take())
        else {
            return;
        };
        let clerk = self.clerk().clone();
        let runtime = match tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
        {
            Ok(runtime) => runtime,
            Err(error) => {
                tracing::error!(%error, "no runtime for the outcome reader");
                self.status.halt(HaltReason::Storage, None, None);
                return;
            }
        };
        let deliver = Box::new(move |batch| {
            runtime
                .block_on(async {
                    clerk
                        .send(OutcomesConsumed(batch))
                        .timeout(CLERK_ANSWER)
                        .await
                })
                .ok()
        });
        match OutcomeReader::start(
            consumer,
            self.outcome_topic.clone(),
            &self.outcome_reader_starts,
            deliver,
            gateway_feed,
        ) {
            Ok(reader) => self.outcome_reader = Some(reader),
            Err(error) => {
                tracing::error!(%error, "starting the outcome reader failed");
                self.status.halt(HaltReason::Storage, None, None);
            }
        }
    }
}

impl Actor for NodeHub {
    type Context = Context<Self>;
}

impl Handler<Connect> for NodeHub {
    type Result = ();

    fn handle(&mut self, connect: Connect, _ctx: &mut Self::Context) {
        self.clerk = Some(connect.clerk);
        self.usher = Some(connect.usher);
        self.publisher = Some(connect.publisher);
        self.ledger = Some(connect.ledger);
    }
}

impl Handler<Committed> for NodeHub {
    type Result = ();

    /// spec: ledger.DurableBeforeAdvertised
    fn handle(&mut self, committed: Committed, _ctx: &mut Self::Context) {
        let partition = committed.partition;
        let own: Vec<OwnOutput> = committed
            .records
            .iter()
            .map(|sealed| OwnOutput {
                partition,
                offset: sealed.offset,
                digest: RecordDigest(sealed.digest.0),
                dead_letter_reason: sealed.dead_letter_reason.map(str::to_owned),
            })
            .collect();
        let through = own.last().map(|output| output.offset);
        self.clerk().do_send(OutputsCommitted(own));
        if let Some(through) = through {
            self.clerk().do_send(ProgressAdvanced {
                partition,
                consumed_offset: through,
                applied_offset: through,
            });
        }
        self.publisher().do_send(committed);
    }
}

impl Handler<WatermarkAdvanced> for NodeHub {
    type Result = ();

    fn handle(&mut self, advanced: WatermarkAdvanced, _ctx: &mut Self::Context) {
        self.usher().do_send(advanced);
    }
}

impl Handler<RecordsSettled> for NodeHub {
    type Result = ();

    fn handle(&mut self, RecordsSettled(positions): RecordsSettled, _ctx: &mut Self::Context) {
        let mut by_partition: std::collections::BTreeMap<Partition, Vec<Offset>> =
            std::collections::BTreeMap::new();
        for position in &positions {
            by_partition
                .entry(position.partition)
                .or_default()
                .push(position.offset);
        }
        for (partition, offsets) in by_partition {
            self.usher()
                .do_send(usher::shell::RecordsSettled { partition, offsets });
        }
        self.publisher().do_send(Forget(
            positions
                .iter()
                .map(|position| (position.partition, position.offset))
                .collect(),
        ));
    }
}

impl Handler<OutcomePublicationsSeen> for NodeHub {
    type Result = ();

    fn handle(
        &mut self,
        OutcomePublicationsSeen(seen): OutcomePublicationsSeen,
        _ctx: &mut Self::Context,
    ) {
        self.ledger().do_send(PublicationsSeen(
            seen.into_iter()
                .map(|seen| (seen.partition, seen.offset, seen.outcome_offset))
                .collect(),
        ));
    }
}

impl Handler<AssignOutcomeReader> for NodeHub {
    type Result = ();

    fn handle(&mut self, assign: AssignOutcomeReader, _ctx: &mut Self::Context) {
        if self.outcome_reader.is_some() {
            tracing::warn!(
                partition = assign.partition,
                "the outcome reader is already positioned"
            );
            return;
        }
        self.outcome_reader_starts
            .retain(|(partition, _)| *partition != assign.partition);
        self.outcome_reader_starts
            .push((assign.partition, assign.outcome_offset));
        if self.outcome_reader_starts.len() == self.partitions as usize {
            self.start_outcome_reader();
        }
    }
}

impl Handler<PartitionHalted> for NodeHub {
    type Result = ();

    fn handle(&mut self, halted: PartitionHalted, _ctx: &mut Self::Context) {
        tracing::error!(
            partition = halted.partition,
            "split brain: the partition stops"
        );
        self.usher().do_send(StopPartition(halted.partition));
    }
}

impl Handler<SelfDivergenceDetected> for NodeHub {
    type Result = ();

    fn handle(&mut self, diverged: SelfDivergenceDetected, _ctx: &mut Self::Context) {
        tracing::error!(
            partition = diverged.partition,
            offset = diverged.offset,
            "this instance's own output differs from the agreement"
        );
        self.status.halt(
            HaltReason::SelfDivergence,
            Some(diverged.partition),
            Some(diverged.offset),
        );
    }
}

impl Handler<UsherHalted> for NodeHub {
    type Result = ();

    fn handle(&mut self, UsherHalted(alarm): UsherHalted, _ctx: &mut Self::Context) {
        self.status.halt(
            HaltReason::InputTruncated,
            Some(alarm.partition),
            Some(alarm.next_offset),
        );
    }
}

impl Handler<PublicationFailed> for NodeHub {
    type Result = ();

    fn handle(&mut self, failed: PublicationFailed, _ctx: &mut Self::Context) {
        self.clerk().do_send(failed);
    }
}
