//! One scenario run, start to verdict: start the cluster (and the proxies
//! a partition needs), drive the load while the injector performs the
//! faults, probe liveness once everything healed, wait for convergence,
//! stop the nodes, read the topics and the final states back into the
//! history, check it, and write the report.

use std::fs::File;
use std::io::BufReader;
use std::net::TcpListener;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use broker::tansu::TansuBroker;
use loadtest::client::{HttpClient, HttpVersion, TargetError};
use loadtest::driver::{self, DriveError, DriverConfig};
use loadtest::schedule::{Schedule, Segment};
use loadtest::workload::{Mix, Skew, Workload, WorkloadConfig, WorkloadError};
use tokio::runtime::Runtime;
use tokio::sync::mpsc;
use tribunal::cluster::{ClusterConfig, ClusterError, LocalCluster, NodeProgram};

use crate::checker;
use crate::finals;
use crate::history::{
    FaultKind, History, HistoryError, HistoryEvent, InputRecord, InstanceId, RunInfo, SubmissionId,
};
use crate::injector::{CORRUPT_OUTPUTS_FLAG, Injector};
use crate::observe::Observer;
use crate::proxy::ProxyMesh;
use crate::readback;
use crate::recorder::{LoadCounts, Recorder};
use crate::report::{Liveness, RunReport};
use crate::scenario::{FaultAction, Plan};

/// How long the cluster gets to report ready at the start.
const READY_TIMEOUT: Duration = Duration::from_secs(120);
/// A submission without an answer this long is a timeout.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(30);
/// The load starts this long after the run's origin.
const START_LEAD: Duration = Duration::from_millis(100);
/// Driver outcomes queued for the recorder.
const OUTCOME_QUEUE: usize = 8_192;
/// A request not started this late is dropped (and not recorded as sent).
const MAX_LAG: Duration = Duration::from_secs(1);
/// The dispatcher's shortest sleep: a few hundred requests a second need
/// no finer punctuality, and it costs CPU the cluster shares.
const DISPATCH_QUANTUM: Duration = Duration::from_millis(1);
/// The liveness probe: this long at the scenario's rate, within bounds.
const PROBE_LOAD: Duration = Duration::from_secs(2);
const PROBE_EVENTS: (f64, f64) = (20.0, 1_000.0);
/// How long the nodes get to stop after SIGTERM.
const STOP_GRACE: Duration = Duration::from_secs(10);
/// How long reading each topic partition back may take.
const READBACK_DEADLINE: Duration = Duration::from_secs(60);
/// The workload's universe: few enough skus that commands collide.
const WAREHOUSES: u32 = 8;
const SKUS: u32 = 100;

/// Which broker a run uses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BrokerChoice {
    /// The embedded broker, in this process.
    Embedded,
    /// A fresh tansu process (SQLite storage in a temporary directory) for
    /// this run.
    Tansu,
    /// Bootstrap servers of a broker whose topics are still empty.
    External(String),
}

/// What one run needs besides its plan.
#[derive(Clone, Debug)]
pub struct RunSettings {
    pub plan: Plan,
    pub broker: BrokerChoice,
    /// The run's own directory: history, report, node data and logs.
    pub run_dir: PathBuf,
    pub node_program: NodeProgram,
    pub recovery_timeout: Duration,
    pub converge_timeout: Duration,
    pub connections: usize,
    /// The command line that replays the run.
    pub replay: String,
}

#[derive(Debug)]
pub enum RunOutcome {
    Finished(Box<RunReport>),
    /// The scenario cannot run in this setting; why.
    Skipped(String),
}

/// Why a run never got going (exit code 3).
#[derive(Debug, thiserror::Error)]
pub enum CouldNotStart {
    #[error("run directory {dir}: {source}")]
    Files {
        dir: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("tansu: {0}")]
    Tansu(std::io::Error),
    #[error(
        "the input topic already holds records (log ends {0:?}): the history needs an empty \
         log, so give each run a fresh broker"
    )]
    UsedLog(Vec<i64>),
    #[error("the async runtime: {0}")]
    Runtime(std::io::Error),
    #[error("the proxies: {0}")]
    Proxies(std::io::Error),
    #[error("the cluster: {0} (node logs in the run directory)")]
    Cluster(#[from] ClusterError),
    #[error("the broker observer: {0}")]
    Observer(#[from] rdkafka::error::KafkaError),
    #[error("the gateways: {0}")]
    Targets(#[from] TargetError),
    #[error("the workload: {0}")]
    Workload(#[from] WorkloadError),
    #[error("the schedule: {0}")]
    Schedule(String),
    #[error("the load driver: {0}")]
    Drive(#[from] DriveError),
    #[error("the history: {0}")]
    History(#[from] HistoryError),
}

/// Why the plan cannot run in this setting, if it cannot.
fn unsupported(plan: &Plan, broker: &BrokerChoice) -> Option<String> {
    let external_broker = *broker != BrokerChoice::Embedded;
    let restarts_broker = plan
        .steps
        .iter()
        .any(|step| matches!(step.action, FaultAction::BrokerRestart { .. }));
    (restarts_broker && external_broker).then(|| {
        "skipped: only the embedded broker can be taken down and brought back by the \
         runner"
            .to_owned()
    })
}

/// The cluster, and the proxies when the plan cuts links; ready.
fn start_cluster(
    settings: &RunSettings,
    brokers: Option<String>,
    runtime: &Runtime,
) -> Result<(LocalCluster, Option<ProxyMesh>), CouldNotStart> {
    let plan = &settings.plan;
    let files = |source| CouldNotStart::Files {
        dir: settings.run_dir.clone(),
        source,
    };
    let mut config =
        ClusterConfig::new(settings.node_program.clone(), settings.run_dir.join("data"));
    config.instances = plan.request.instances;
    config.partitions = plan.request.partitions;
    config.brokers = brokers;
    config.http_port = free_port().map_err(files)?;
    config.peer_port = free_port().map_err(files)?;
    for &liar in &plan.byzantine {
        config
            .extra_args
            .insert(liar, vec![CORRUPT_OUTPUTS_FLAG.to_owned()]);
    }
    let cuts_links = plan
        .steps
        .iter()
        .any(|step| matches!(step.action, FaultAction::Partition { .. }));
    let mesh = if cuts_links {
        let upstream = |to| config.peer_addr(to);
        let mesh = runtime
            .block_on(ProxyMesh::start(config.instances, upstream))
            .map_err(CouldNotStart::Proxies)?;
        Some(mesh)
    } else {
        None
    };
    let routes = mesh.as_ref().map(ProxyMesh::routes).unwrap_or_default();
    let mut cluster = LocalCluster::start_routed(config, routes)?;
    eprintln!(
        "chaos: cluster of {} on {} (broker {}), data and logs in {}",
        cluster.config().instances,
        cluster.gateway_urls().join(","),
        cluster.bootstrap_servers(),
        settings.run_dir.display()
    );
    cluster.wait_ready(READY_TIMEOUT)?;
    Ok((cluster, mesh))
}

pub fn run(settings: &RunSettings) -> Result<RunOutcome, CouldNotStart> {
    let plan = &settings.plan;
    if let Some(reason) = unsupported(plan, &settings.broker) {
        return Ok(RunOutcome::Skipped(reason));
    }
    let run_dir = &settings.run_dir;
    let files = |source| CouldNotStart::Files {
        dir: run_dir.clone(),
        source,
    };
    std::fs::create_dir_all(run_dir).map_err(files)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(3)
        .thread_name("chaos-worker")
        .enable_all()
        .build()
        .map_err(CouldNotStart::Runtime)?;

    // Held for the run: dropping it stops tansu.
    let tansu = match settings.broker {
        BrokerChoice::Tansu => Some(TansuBroker::start().map_err(CouldNotStart::Tansu)?),
        BrokerChoice::Embedded | BrokerChoice::External(_) => None,
    };
    let brokers = match (&settings.broker, &tansu) {
        (BrokerChoice::External(brokers), _) => Some(brokers.clone()),
        (_, Some(tansu)) => Some(tansu.profile().bootstrap_servers),
        (_, None) => None,
    };
    let (mut cluster, mesh) = start_cluster(settings, brokers, &runtime)?;

    let run_info = RunInfo {
        scenario: plan.request.scenario.to_string(),
        seed: plan.request.seed,
        instances: cluster.config().instances,
        input_partitions: cluster.config().partitions,
        required_copies: cluster.config().required_copies,
        idempotency_ttl_ms: warden::WardenConfig::IDEMPOTENCY_TTL_MILLIS,
        byzantine: plan.byzantine.clone(),
        inventory: Default::default(),
    };
    let history_path = run_dir.join("history.jsonl");
    let origin = Instant::now();
    let recorder = Recorder::create(&history_path, origin).map_err(files)?;
    recorder.append(&HistoryEvent::Run(run_info.clone()));
    let liars = plan
        .byzantine
        .iter()
        .map(|&liar| {
            let detail = "started corrupting its outputs".to_owned();
            (
                liar,
                recorder.fault_started(FaultKind::Byzantine, &[liar], detail),
            )
        })
        .collect();
    let instances: Vec<u32> = (0..cluster.config().instances).collect();
    let nodes = instances.iter().map(|&i| cluster.http_addr(i)).collect();
    let observer = Observer::new(cluster.broker_profile(), run_info.input_partitions, nodes)?;
    let ends = observer.input_ends()?;
    if ends.iter().any(|&end| end > 0) {
        return Err(CouldNotStart::UsedLog(ends));
    }
    let client = Arc::new(HttpClient::new(
        &cluster.gateway_urls(),
        settings.connections,
        CLIENT_TIMEOUT,
        // One connection per request in flight: a killed or cut-off node
        // fails its own requests only, as independent clients would see it.
        HttpVersion::Http1,
    )?);
    let mut workload = Workload::new(WorkloadConfig {
        warehouses: WAREHOUSES,
        skus: SKUS,
        skew: Skew::Uniform,
        mix: Mix::default(),
        duplicate_rate: plan.duplicate_rate,
        seed: plan.workload_seed,
        run_tag: format!("{}-{}", plan.request.scenario, plan.request.seed)
            .chars()
            .take(32)
            .collect(),
    })?;
    let load_schedule = schedule(plan.request.rps, plan.load)?;
    let load_origin = origin + START_LEAD;
    let driving = Driving {
        runtime: &runtime,
        recorder: &recorder,
        client: &client,
        connections: settings.connections,
    };

    // The safety phase: load and faults together. The injector stays on
    // this thread: the cluster holds the embedded broker, which is not Send.
    let (load, faults) = std::thread::scope(|scope| {
        let loading = scope.spawn(|| driving.drive(&load_schedule, load_origin, &mut workload, 0));
        let injector = Injector {
            cluster: &mut cluster,
            mesh: mesh.as_ref(),
            observer: &observer,
            recorder: &recorder,
            liars,
            load_origin,
            recovery_timeout: settings.recovery_timeout,
        };
        let faults = injector.run(&plan.steps);
        let load = loading.join().expect("the load driver does not panic");
        (load, faults)
    });
    let load = load?;
    eprintln!(
        "chaos: load done ({} sent, {} agreed); liveness probe ...",
        load.sent, load.agreed
    );

    // The liveness phase: everything healed, progress within deadlines.
    let liveness = liveness_phase(
        &driving,
        &observer,
        settings,
        &mut workload,
        load.scheduled,
        &instances,
    )?;
    let proxies = mesh.as_ref().map(ProxyMesh::counters);
    drop(mesh);

    // Read back: the nodes stop first, so nothing changes while reading.
    cluster.stop(STOP_GRACE);
    let mut failures = read_back(&cluster, &run_info, &recorder);
    recorder.finish().map_err(files)?;
    let ledger_dirs: Vec<PathBuf> = instances.iter().map(|&i| cluster.data_dir(i)).collect();
    drop(cluster);

    let history = History::read(BufReader::new(File::open(&history_path).map_err(files)?))?;
    let check = checker::check(&history);
    failures.splice(0..0, RunReport::failures_of(&check, &faults, &liveness));
    let report = RunReport {
        scenario: plan.request.scenario.to_string(),
        seed: plan.request.seed,
        plan: plan.to_string(),
        replay: settings.replay.clone(),
        run_dir: run_dir.display().to_string(),
        load,
        faults,
        proxies,
        liveness,
        check,
        failures,
    };
    report.write(run_dir).map_err(files)?;
    if report.passed() {
        remove_ledgers(&ledger_dirs);
    }
    Ok(RunOutcome::Finished(Box::new(report)))
}

/// New submissions must all be answered with an agreed outcome (within the
/// client timeout), then every instance must reach the log end with
/// nothing left unpublished (within the convergence timeout).
fn liveness_phase(
    driving: &Driving<'_>,
    observer: &Observer,
    settings: &RunSettings,
    workload: &mut Workload,
    first_id: SubmissionId,
    instances: &[InstanceId],
) -> Result<Liveness, CouldNotStart> {
    let rps = settings.plan.request.rps;
    let events = (rps * PROBE_LOAD.as_secs_f64()).clamp(PROBE_EVENTS.0, PROBE_EVENTS.1);
    let probe_schedule = schedule(rps, Duration::from_secs_f64(events / rps))?;
    let probes = driving.drive(
        &probe_schedule,
        Instant::now() + START_LEAD,
        workload,
        first_id,
    )?;
    let converged = observer.wait_caught_up(instances, settings.converge_timeout, true);
    Ok(Liveness {
        probes,
        converged_ms: converged
            .as_ref()
            .ok()
            .map(|took| u64::try_from(took.as_millis()).unwrap_or(u64::MAX)),
        converge_error: converged.err().map(|error| error.to_string()),
    })
}

/// The topics and every stopped instance's final state into the history;
/// what could not be read, as failures.
fn read_back(cluster: &LocalCluster, run: &RunInfo, recorder: &Recorder) -> Vec<String> {
    let events = match readback::read_topics(cluster.broker_profile(), run, READBACK_DEADLINE) {
        Ok(events) => events,
        Err(error) => return vec![format!("reading the topics back: {error}")],
    };
    let input: Vec<InputRecord> = events
        .iter()
        .filter_map(|event| match event {
            HistoryEvent::InputRecord(record) => Some(record.clone()),
            _ => None,
        })
        .collect();
    for event in &events {
        recorder.append(event);
    }
    let levels = finals::named_levels(&input);
    let mut failures = Vec::new();
    for instance in 0..run.instances {
        let dir = cluster.data_dir(instance);
        match finals::read_final(instance, &dir, run.input_partitions, &levels) {
            Ok(state) => recorder.append(&HistoryEvent::InstanceFinal(state)),
            Err(error) => failures.push(format!("final state: {error}")),
        }
    }
    failures
}

/// How loads are driven and recorded in this run.
struct Driving<'a> {
    runtime: &'a Runtime,
    recorder: &'a Recorder,
    client: &'a Arc<HttpClient>,
    connections: usize,
}

impl Driving<'_> {
    /// Drives `schedule` from `origin` and records every outcome, with
    /// submission ids from `first_id`.
    fn drive(
        &self,
        schedule: &Schedule,
        origin: Instant,
        workload: &mut Workload,
        first_id: SubmissionId,
    ) -> Result<LoadCounts, DriveError> {
        let (sender, receiver) = mpsc::channel(OUTCOME_QUEUE);
        let config = DriverConfig {
            max_in_flight: self.connections,
            max_lag: MAX_LAG,
            dispatch_quantum: DISPATCH_QUANTUM,
        };
        std::thread::scope(|scope| {
            let recording = scope.spawn(|| self.recorder.record_load(receiver, first_id));
            let driven = self.runtime.block_on(driver::drive(
                schedule,
                origin,
                workload,
                Arc::clone(self.client),
                config,
                sender,
            ));
            let counts = recording.join().expect("the recorder does not panic");
            driven.map(|_| counts)
        })
    }
}

fn schedule(rps: f64, length: Duration) -> Result<Schedule, CouldNotStart> {
    Schedule::new(vec![Segment::constant(rps, length)])
        .map_err(|error| CouldNotStart::Schedule(error.to_string()))
}

/// A port free on 127.0.0.1 now (the nodes bind it on 127.0.0.x).
fn free_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// A passed run keeps its history, report and node logs, not the stores.
fn remove_ledgers(dirs: &[PathBuf]) {
    for dir in dirs {
        if let Err(error) = std::fs::remove_dir_all(dir)
            && error.kind() != std::io::ErrorKind::NotFound
        {
            eprintln!("chaos: removing {}: {error}", dir.display());
        }
    }
}
