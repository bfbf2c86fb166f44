//! Open-loop, in-network load generator for a Tribunal cluster.
//!
//! `cargo run --release -p loadtest -- --rps 10000` loads the embedded
//! default cluster (or `--target` URLs) on a constant arrival schedule,
//! prints a line a second and a summary, writes the report directory, checks
//! correctness after the load and exits with the verdict: 0 pass, 1 a
//! threshold failed, 3 the run could not start, 4 the correctness pass found
//! a violation (2 is clap's usage error).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, SystemTime};

use broker::tansu::TansuBroker;
use clap::Parser;
use loadtest::client::HttpVersion;
use loadtest::cluster_start::ClusterRequest;
use loadtest::fake_target::{FakeCluster, FakeClusterConfig};
use loadtest::measure::Progress;
use loadtest::report::{Verdict, default_report_dir, utc_timestamp};
use loadtest::run::{RunConfig, print_summary, run};
use loadtest::verdict::Threshold;
use loadtest::workload::{Mix, Skew, WorkloadConfig};

#[derive(Debug, Parser)]
#[command(version, about = "Open-loop load generator for a Tribunal cluster")]
struct Args {
    /// Offered rate, requests per second, on a constant arrival schedule.
    #[arg(long, default_value_t = 10_000.0)]
    rps: f64,
    /// Measured duration (e.g. 60s, 2m).
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    duration: Duration,
    /// Warmup before the measured part, at the starting rate; not measured.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    warmup: Duration,
    /// Ramp linearly from this rate to --rps over the measured duration.
    #[arg(long, value_name = "START_RPS")]
    ramp: Option<f64>,
    /// Instances of the embedded cluster to start.
    #[arg(long, default_value_t = 4)]
    instances: u8,
    /// Gateway base URLs of a running cluster to load instead of starting one.
    #[arg(long, value_delimiter = ',', value_name = "URL")]
    target: Vec<String>,
    /// Kafka bootstrap servers of an existing broker (default: embedded).
    #[arg(long, conflicts_with = "tansu")]
    brokers: Option<String>,
    /// Start a fresh tansu broker (SQLite storage, loopback) for the run and
    /// put the cluster and the baseline on it (tansu must be installed:
    /// the README's test command installs it).
    #[arg(long, conflicts_with_all = ["target", "fake_target"])]
    tansu: bool,
    /// Input partitions (default: read from the targets' /health).
    #[arg(long)]
    partitions: Option<u32>,
    /// Warehouses in the workload.
    #[arg(long, default_value_t = 8)]
    warehouses: u32,
    /// Skus in the workload.
    #[arg(long, default_value_t = 1_000)]
    skus: u32,
    /// Key skew over skus: uniform or zipf:<s>.
    #[arg(long, default_value = "uniform")]
    skew: Skew,
    /// Command mix weights.
    #[arg(long, default_value = "receive=50,ship=30,transfer=20")]
    mix: Mix,
    /// Probability that a submission re-sends a recent one (same key and command).
    #[arg(long, default_value_t = 0.01)]
    duplicate_rate: f64,
    /// Pass/fail thresholds, repeatable or comma-separated: p99<100ms,
    /// errors=0, achieved>=99%, dropped=0, max<1s. Each replaces the
    /// default on its metric (defaults: p99<100ms, errors=0, achieved>=99%).
    #[arg(long, value_delimiter = ',')]
    threshold: Vec<Threshold>,
    /// Report directory (default: target/loadtest/<UTC timestamp>/).
    #[arg(long)]
    report_dir: Option<PathBuf>,
    /// Requests in flight at once over all targets (with `--http 1` also the
    /// number of connections). By Little's law the achievable rate is at
    /// most connections / latency: 10,000/s at 100 ms needs 1,000 in flight
    /// (512 capped a 10,000/s run at 6,900/s while the server answered in
    /// 68 ms at the median).
    #[arg(long, default_value_t = 2048)]
    connections: usize,
    /// HTTP version: 2 multiplexes all requests to a target over one
    /// connection (h2c, prior knowledge); 1 is HTTP/1.1, one request per
    /// connection at a time. The gateway serves both on the same port.
    /// Default: 2, or 1 with `--fake-target` (which speaks HTTP/1.1 only).
    #[arg(long)]
    http: Option<HttpVersion>,
    /// A request not started this long after its intended time is dropped.
    #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
    max_lag: Duration,
    /// The dispatcher's shortest sleep: requests due within it go out
    /// together, up to this late (smaller: more punctual, more CPU).
    #[arg(long, default_value = "250us", value_parser = humantime::parse_duration)]
    dispatch_quantum: Duration,
    /// Client timeout per request (a timeout counts as an error).
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    timeout: Duration,
    /// Also measure the bare path (HTTP -> Kafka -> HTTP echo) at the same rate.
    #[arg(long)]
    baseline: bool,
    /// Seed of the workload's command sequence.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Tag that makes keys and skus unique to this run (default: from the time).
    #[arg(long)]
    run_tag: Option<String>,
    /// Do not write history.jsonl.
    #[arg(long)]
    no_history: bool,
    /// Skip the correctness pass after the load.
    #[arg(long)]
    no_correctness: bool,
    /// How long instances get to converge before the level audit reports.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    settle_timeout: Duration,
    /// The gateways' key-index bound: only the newest acknowledged keys
    /// within it are looked up after the load (default: the gateway's).
    #[arg(long, default_value_t = gateway::config::GatewayConfig::default().max_key_index_entries)]
    key_index_bound: usize,
    /// How long the targets get to answer /health with ready.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    ready_timeout: Duration,
    /// Load an in-process fake cluster instead of real targets: measures
    /// the generator itself and shows the report; says nothing about Tribunal.
    #[arg(long, conflicts_with = "target")]
    fake_target: bool,
    /// No per-second line.
    #[arg(long)]
    quiet: bool,
}

// Why mimalloc: ARCHITECTURE.md, "Dependencies beyond the preferred set".
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Starts what a flag asks for; a failure is a run that could not start.
fn start_if<T, E: std::fmt::Display>(
    wanted: bool,
    what: &str,
    start: impl FnOnce() -> Result<T, E>,
) -> Result<Option<T>, ExitCode> {
    if !wanted {
        return Ok(None);
    }
    start().map(Some).map_err(|error| {
        eprintln!("loadtest: could not start {what}: {error}");
        ExitCode::from(loadtest::EXIT_COULD_NOT_START)
    })
}

fn main() -> ExitCode {
    // `loadtest node ...`: this binary as a node of the embedded cluster.
    if let Some(node) = tribunal::cluster::node_args_when_started_as_node() {
        return tribunal::node::run(node);
    }
    let args = Args::parse();
    let http = match (args.http, args.fake_target) {
        (Some(HttpVersion::Http2), true) => {
            eprintln!("loadtest: the fake target speaks HTTP/1.1 only; drop --http 2");
            return ExitCode::from(loadtest::EXIT_COULD_NOT_START);
        }
        (Some(version), _) => version,
        (None, true) => HttpVersion::Http1,
        (None, false) => HttpVersion::Http2,
    };
    // Kept alive for the whole run: the fake's listeners live on it.
    let fake = match start_if(args.fake_target, "the fake target", || {
        start_fake_cluster(args.instances)
    }) {
        Ok(fake) => fake,
        Err(code) => return code,
    };
    let targets = match &fake {
        Some((_, cluster)) => cluster.urls(),
        None => args.target,
    };
    // Held until the run has stopped its cluster: dropping it stops tansu.
    let tansu = match start_if(args.tansu, "tansu", TansuBroker::start) {
        Ok(tansu) => tansu,
        Err(code) => return code,
    };
    let brokers = match &tansu {
        Some(tansu) => Some(tansu.profile().bootstrap_servers),
        None => args.brokers,
    };
    let started = SystemTime::now();
    let timestamp = utc_timestamp(started);
    let config = RunConfig {
        rps: args.rps,
        duration: args.duration,
        warmup: args.warmup,
        ramp_from: args.ramp,
        targets,
        cluster: ClusterRequest {
            instances: args.instances,
            brokers,
            partitions: args.partitions.unwrap_or(1),
            ready_timeout: args.ready_timeout,
        },
        partitions: args.partitions,
        workload: WorkloadConfig {
            warehouses: args.warehouses,
            skus: args.skus,
            skew: args.skew,
            mix: args.mix,
            duplicate_rate: args.duplicate_rate,
            seed: args.seed,
            run_tag: args.run_tag.unwrap_or_else(|| format!("lt{timestamp}")),
        },
        connections: args.connections,
        http,
        max_lag: args.max_lag,
        dispatch_quantum: args.dispatch_quantum,
        timeout: args.timeout,
        thresholds: Threshold::with_defaults(&args.threshold),
        report_dir: args
            .report_dir
            .unwrap_or_else(|| default_report_dir(&PathBuf::from("target/loadtest"), started)),
        history: !args.no_history,
        progress: if args.quiet {
            Progress::Quiet
        } else {
            Progress::Print
        },
        check_correctness: !args.no_correctness,
        settle_timeout: args.settle_timeout,
        key_index_bound: args.key_index_bound,
        ready_timeout: args.ready_timeout,
        baseline: args.baseline,
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .thread_name("lt-worker")
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("loadtest: could not start the runtime: {error}");
            return ExitCode::from(loadtest::EXIT_COULD_NOT_START);
        }
    };
    match runtime.block_on(run(config)) {
        Ok(outcome) => {
            print_summary(&outcome);
            ExitCode::from(match outcome.summary.verdict {
                Verdict::Pass => loadtest::EXIT_PASS,
                Verdict::ThresholdFailed => loadtest::EXIT_THRESHOLD_FAILED,
                Verdict::CorrectnessFailed => loadtest::EXIT_CORRECTNESS_FAILED,
            })
        }
        Err(error) => {
            eprintln!("loadtest: could not start: {error}");
            ExitCode::from(loadtest::EXIT_COULD_NOT_START)
        }
    }
}

/// The fake cluster on a runtime of its own (thread `fake-target`), so its
/// CPU is told apart from the generator's.
fn start_fake_cluster(instances: u8) -> std::io::Result<(tokio::runtime::Runtime, FakeCluster)> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("fake-target")
        .enable_all()
        .build()?;
    let cluster = runtime.block_on(FakeCluster::start(FakeClusterConfig {
        instances: usize::from(instances),
        ..FakeClusterConfig::default()
    }))?;
    Ok((runtime, cluster))
}
