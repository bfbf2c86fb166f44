//! One whole run, as the `loadtest` binary performs it: targets, preflight,
//! open-loop load, server-side scrapes, correctness pass, report, verdict.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use broker::{BrokerKind, BrokerProfile, EmbeddedBroker, Topics};
use serde::Deserialize;
use tokio::sync::mpsc;

use crate::baseline::EchoServer;
use crate::client::{HttpClient, HttpVersion, TargetError};
use crate::cluster_start::{ClusterRequest, EmbeddedCluster, start_embedded_cluster};
use crate::correctness::{self, CorrectnessConfig, CorrectnessReport};
use crate::driver::{self, DriverConfig};
use crate::history::{HistoryWriter, RunClock};
use crate::measure::{Measurements, Progress, Recorder};
use crate::prometheus::{self, BucketHistogram, GATEWAY_SUBMIT_SECONDS};
use crate::report::{
    self, Counts, HistorySummary, LatencySummary, Rates, ReportFiles, ReportInput,
    RunConfigSummary, ServerSide, Summary, Verdict,
};
use crate::schedule::LoadPlan;
use crate::verdict::{self, Observed, Threshold};
use crate::workload::{Workload, WorkloadConfig};

/// Everything a run needs, as the command line gives it.
#[derive(Clone, Debug)]
pub struct RunConfig {
    pub rps: f64,
    pub duration: Duration,
    pub warmup: Duration,
    pub ramp_from: Option<f64>,
    /// Gateway URLs; empty starts the embedded cluster.
    pub targets: Vec<String>,
    pub cluster: ClusterRequest,
    /// Input partitions; `None` reads them from the targets' /health.
    pub partitions: Option<u32>,
    pub workload: WorkloadConfig,
    pub connections: usize,
    pub http: HttpVersion,
    pub max_lag: Duration,
    pub dispatch_quantum: Duration,
    pub timeout: Duration,
    /// Already merged with the defaults.
    pub thresholds: Vec<Threshold>,
    pub report_dir: PathBuf,
    pub history: bool,
    pub progress: Progress,
    pub check_correctness: bool,
    pub settle_timeout: Duration,
    /// The gateways' key-index bound (`max_key_index_entries`): how many
    /// of the newest acknowledged keys a lookup can still find.
    pub key_index_bound: usize,
    /// Also measure the bare HTTP -> Kafka -> HTTP path at the same rate.
    pub baseline: bool,
    /// How long targets get to report ready before the run gives up.
    pub ready_timeout: Duration,
}

/// A run that never got going: the could-not-start exit code.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Cluster(#[from] crate::cluster_start::ClusterStartError),
    #[error(transparent)]
    Target(#[from] TargetError),
    #[error("target {url} is not ready: {reason}")]
    NotReady { url: String, reason: String },
    #[error("invalid run: {0}")]
    Invalid(String),
    #[error("report directory {dir}: {error}")]
    ReportDir { dir: String, error: std::io::Error },
    #[error("could not start the recorder thread: {0}")]
    Recorder(std::io::Error),
    #[error("could not start the baseline: {0}")]
    Baseline(String),
}

/// A finished run.
#[derive(Debug)]
pub struct RunOutcome {
    pub summary: Summary,
    pub measurements: Measurements,
    /// `Err` when the report could not be written (the verdict still stands).
    pub files: Result<ReportFiles, String>,
}

/// Outcomes queued between request tasks and the recorder.
const OUTCOME_QUEUE: usize = 65_536;

/// The first request is scheduled this far after the run's clock starts, so
/// it is not late by the time the recorder and dispatcher are up.
const START_LEAD: Duration = Duration::from_millis(50);

pub async fn run(config: RunConfig) -> Result<RunOutcome, StartError> {
    let (urls, mut cluster) = resolve_targets(&config)?;
    let client = Arc::new(HttpClient::new(
        &urls,
        config.connections,
        config.timeout,
        config.http,
    )?);
    let health_partitions = preflight(&client, config.ready_timeout).await?;
    let (partitions, mut warnings) = choose_partitions(config.partitions, health_partitions);
    let plan = LoadPlan::new(config.rps, config.duration, config.warmup, config.ramp_from)
        .map_err(|error| StartError::Invalid(error.to_string()))?;
    let workload = Workload::new(config.workload.clone())
        .map_err(|error| StartError::Invalid(error.to_string()))?;
    let report_dir_error = |error| StartError::ReportDir {
        dir: config.report_dir.display().to_string(),
        error,
    };
    std::fs::create_dir_all(&config.report_dir).map_err(report_dir_error)?;
    let history_path = config.report_dir.join("history.jsonl");
    let history = if config.history {
        Some(HistoryWriter::create(&history_path).map_err(report_dir_error)?)
    } else {
        None
    };

    eprintln!(
        "loadtest: {} rps{} for {:?} after {:?} warmup against {} ({} partitions), run tag {}",
        config.rps,
        config
            .ramp_from
            .map(|from| format!(" (ramp from {from})"))
            .unwrap_or_default(),
        config.duration,
        config.warmup,
        urls.join(","),
        partitions,
        config.workload.run_tag
    );
    let load = apply_load(&client, &plan, workload, &config, config.progress, history).await?;
    if let Some(error) = &load.drive_error {
        warnings.push(format!("the driver stopped early: {error}"));
    }
    let after = scrape_all(&client).await;
    let server_side = server_side(&client, &load.before, &after);
    let measurements = load.measurements;

    let correctness = if config.check_correctness {
        eprintln!(
            "loadtest: correctness pass over {} answered and {} unanswered submissions ...",
            measurements.answered.len(),
            measurements.unanswered.len()
        );
        let correctness_config = CorrectnessConfig {
            partitions,
            concurrency: config.connections.clamp(1, 256),
            settle_timeout: config.settle_timeout,
            lookup_window: CorrectnessConfig::lookup_window_for(config.key_index_bound),
        };
        Some(
            correctness::check(
                Arc::clone(&client),
                &measurements.answered,
                &measurements.unanswered,
                correctness_config,
            )
            .await,
        )
    } else {
        None
    };

    let baseline = if config.baseline {
        let profile = baseline_broker(&config, cluster.as_mut(), &mut warnings)?;
        Some(measure_baseline(&config, &plan, &profile).await?)
    } else {
        None
    };

    let mut summary = summarise(SummaryParts {
        config: &config,
        urls,
        partitions,
        plan: &plan,
        clock: load.clock,
        measurements: &measurements,
        server_side,
        correctness,
        warnings,
        history_path: config.history.then_some(history_path),
    });
    summary.baseline =
        baseline.map(|baseline| report::Baseline::compare(&summary.latency_ms, &baseline, &plan));
    let files = report::write_report(
        &config.report_dir,
        &ReportInput {
            summary: &summary,
            measurements: &measurements,
        },
    )
    .map_err(|error| error.to_string());
    Ok(RunOutcome {
        summary,
        measurements,
        files,
    })
}

/// What one load phase measured.
struct Load {
    measurements: Measurements,
    clock: RunClock,
    /// The targets' /metrics when the measured part began.
    before: Scrape,
    drive_error: Option<driver::DriveError>,
}

/// Drives `plan` against the client's targets and records it.
async fn apply_load(
    client: &Arc<HttpClient>,
    plan: &LoadPlan,
    mut workload: Workload,
    config: &RunConfig,
    progress: Progress,
    history: Option<HistoryWriter>,
) -> Result<Load, StartError> {
    let clock = RunClock {
        origin: Instant::now() + START_LEAD,
        wall_origin: SystemTime::now() + START_LEAD,
    };
    let (sender, receiver) = mpsc::channel(OUTCOME_QUEUE);
    let recorder = Recorder::new(plan.clone(), clock, progress, history)
        .spawn(receiver)
        .map_err(StartError::Recorder)?;
    let scrape_before = {
        let client = Arc::clone(client);
        let at = clock.origin + plan.measure_from;
        tokio::spawn(async move {
            tokio::time::sleep_until(at.into()).await;
            scrape_all(&client).await
        })
    };
    let driver_config = DriverConfig {
        max_in_flight: config.connections,
        max_lag: config.max_lag,
        dispatch_quantum: config.dispatch_quantum,
    };
    let drive = driver::drive(
        &plan.schedule,
        clock.origin,
        &mut workload,
        Arc::clone(client),
        driver_config,
        sender,
    )
    .await;
    let measurements = tokio::task::spawn_blocking(move || recorder.join())
        .await
        .expect("joining the recorder thread does not panic")
        .expect("the recorder thread does not panic");
    let before = scrape_before.await.expect("the scrape task does not panic");
    Ok(Load {
        measurements,
        clock,
        before,
        drive_error: drive.err(),
    })
}

/// The broker the baseline echoes through: the cluster's own when known.
fn baseline_broker(
    config: &RunConfig,
    cluster: Option<&mut EmbeddedCluster>,
    warnings: &mut Vec<String>,
) -> Result<BaselineBroker, StartError> {
    if let Some(cluster) = cluster {
        return Ok(BaselineBroker::Shared(
            cluster.cluster().broker_profile().clone(),
        ));
    }
    if let Some(brokers) = &config.cluster.brokers {
        return Ok(BaselineBroker::Shared(BrokerProfile {
            bootstrap_servers: brokers.clone(),
            kind: BrokerKind::External,
        }));
    }
    warnings.push(
        "the baseline echoed through an embedded broker of its own: the targets' broker is \
         unknown (pass --brokers to use it)"
            .to_owned(),
    );
    let broker = EmbeddedBroker::start(&Topics::new(1))
        .map_err(|error| StartError::Baseline(error.to_string()))?;
    Ok(BaselineBroker::Own(broker))
}

/// The cluster's broker, or one started for the baseline alone.
#[derive(Debug)]
enum BaselineBroker {
    Shared(BrokerProfile),
    Own(EmbeddedBroker),
}

impl BaselineBroker {
    fn profile(&self) -> BrokerProfile {
        match self {
            Self::Shared(profile) => profile.clone(),
            Self::Own(broker) => broker.profile(),
        }
    }
}

/// The same plan and workload shape against the echo node.
async fn measure_baseline(
    config: &RunConfig,
    plan: &LoadPlan,
    broker: &BaselineBroker,
) -> Result<Measurements, StartError> {
    let echo = EchoServer::start(&broker.profile())
        .await
        .map_err(|error| StartError::Baseline(error.to_string()))?;
    eprintln!(
        "loadtest: baseline (HTTP -> Kafka -> HTTP echo at {}) at the same rate ...",
        echo.url()
    );
    let client = Arc::new(HttpClient::new(
        &[echo.url().to_owned()],
        config.connections,
        config.timeout,
        config.http,
    )?);
    preflight(&client, config.ready_timeout).await?;
    let mut workload = config.workload.clone();
    workload.run_tag = format!("{}-bl", workload.run_tag);
    let workload =
        Workload::new(workload).map_err(|error| StartError::Invalid(error.to_string()))?;
    let load = apply_load(&client, plan, workload, config, config.progress, None).await?;
    Ok(load.measurements)
}

fn resolve_targets(
    config: &RunConfig,
) -> Result<(Vec<String>, Option<EmbeddedCluster>), StartError> {
    if !config.targets.is_empty() {
        return Ok((config.targets.clone(), None));
    }
    let cluster = start_embedded_cluster(&config.cluster)?;
    Ok((cluster.gateway_urls().to_vec(), Some(cluster)))
}

#[derive(Deserialize)]
struct HealthBody {
    status: String,
    #[serde(default)]
    lag: BTreeMap<String, i64>,
}

/// Waits until every target answers /health with `ready`; returns the
/// partition count the health bodies name (their lag map's keys), if any.
async fn preflight(client: &HttpClient, timeout: Duration) -> Result<Option<u32>, StartError> {
    let deadline = Instant::now() + timeout;
    let mut partitions = None;
    for target in 0..client.target_count() {
        loop {
            let reason = match client.get(target, "/health").await {
                Ok(answer) => match serde_json::from_slice::<HealthBody>(&answer.body) {
                    Ok(health) if answer.status == 200 && health.status == "ready" => {
                        let highest = health
                            .lag
                            .keys()
                            .filter_map(|p| p.parse::<u32>().ok())
                            .max();
                        partitions = partitions.max(highest.map(|p| p + 1));
                        break;
                    }
                    Ok(health) => format!("status {} ({})", health.status, answer.status),
                    Err(error) => format!("unreadable /health ({}): {error}", answer.status),
                },
                Err(error) => error.to_string(),
            };
            if Instant::now() >= deadline {
                return Err(StartError::NotReady {
                    url: client.base_url(target).to_owned(),
                    reason,
                });
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
    Ok(partitions)
}

fn choose_partitions(given: Option<u32>, from_health: Option<u32>) -> (u32, Vec<String>) {
    match (given, from_health) {
        (Some(given), Some(seen)) if given != seen => (
            given,
            vec![format!(
                "--partitions {given} differs from the {seen} partitions the targets' /health names"
            )],
        ),
        (Some(given), _) => (given, Vec::new()),
        (None, Some(seen)) => (seen, Vec::new()),
        (None, None) => (
            1,
            vec![
                "the partition count is unknown (no --partitions, no lag in /health): assuming 1"
                    .to_owned(),
            ],
        ),
    }
}

/// Each target's /metrics: the histogram, or why it could not be had.
type Scrape = Vec<Result<BucketHistogram, String>>;

async fn scrape_all(client: &HttpClient) -> Scrape {
    let mut scrapes = Vec::with_capacity(client.target_count());
    for target in 0..client.target_count() {
        let scrape = match client.get(target, "/metrics").await {
            Ok(answer) if answer.status == 200 => prometheus::parse_histogram(
                &String::from_utf8_lossy(&answer.body),
                GATEWAY_SUBMIT_SECONDS,
            )
            .ok_or_else(|| format!("no {GATEWAY_SUBMIT_SECONDS} histogram")),
            Ok(answer) => Err(format!("/metrics answered {}", answer.status)),
            Err(error) => Err(error.to_string()),
        };
        scrapes.push(scrape);
    }
    scrapes
}

fn server_side(client: &HttpClient, before: &Scrape, after: &Scrape) -> Option<ServerSide> {
    let mut deltas = Vec::new();
    let (mut scraped, mut failed) = (Vec::new(), Vec::new());
    for (target, (before, after)) in before.iter().zip(after).enumerate() {
        let url = client.base_url(target).to_owned();
        match (before, after) {
            (Ok(before), Ok(after)) => {
                deltas.push(after.since(before));
                scraped.push(url);
            }
            (Err(error), _) | (_, Err(error)) => failed.push(format!("{url}: {error}")),
        }
    }
    if deltas.is_empty() {
        return None;
    }
    Some(ServerSide::new(
        GATEWAY_SUBMIT_SECONDS,
        scraped,
        failed,
        BucketHistogram::merge(&deltas),
    ))
}

struct SummaryParts<'a> {
    config: &'a RunConfig,
    urls: Vec<String>,
    partitions: u32,
    plan: &'a LoadPlan,
    clock: RunClock,
    measurements: &'a Measurements,
    server_side: Option<ServerSide>,
    correctness: Option<CorrectnessReport>,
    warnings: Vec<String>,
    history_path: Option<PathBuf>,
}

fn summarise(parts: SummaryParts<'_>) -> Summary {
    let SummaryParts {
        config,
        urls,
        partitions,
        plan,
        clock,
        measurements: m,
        server_side,
        correctness,
        mut warnings,
        history_path,
    } = parts;
    let latency = LatencySummary::of(&m.latency);
    if let Some(warning) = server_side
        .as_ref()
        .and_then(|server| report::compare_p99(latency.p99, server))
    {
        warnings.push(warning);
    }
    if let Some(server) = &server_side {
        warnings.extend(
            server
                .failed
                .iter()
                .map(|failure| format!("server-side scrape failed: {failure}")),
        );
    }
    let achieved_percent = m.achieved_percent(plan);
    let observed = Observed {
        max_latency: (!m.latency.is_empty()).then(|| m.latency.max()),
        errors: m.error_count(),
        dropped: m.dropped,
        achieved_percent,
    };
    let latency_at = |q: f64| (!m.latency.is_empty()).then(|| m.latency.value_at_quantile(q));
    let thresholds = verdict::evaluate(&config.thresholds, latency_at, &observed);
    let verdict = if correctness.as_ref().is_some_and(|c| !c.passed()) {
        Verdict::CorrectnessFailed
    } else if thresholds.iter().all(|t| t.passed) {
        Verdict::Pass
    } else {
        Verdict::ThresholdFailed
    };
    let history = history_path.map(|path| {
        let (records, error) = match &m.history {
            Some(Ok(records)) => (Some(*records), None),
            Some(Err(error)) => (None, Some(error.clone())),
            None => (None, None),
        };
        HistorySummary {
            file: path.display().to_string(),
            records,
            error,
        }
    });
    if let Some(HistorySummary {
        error: Some(error), ..
    }) = &history
    {
        warnings.push(format!("the history file is incomplete: {error}"));
    }
    let w = &config.workload;
    Summary {
        run_tag: w.run_tag.clone(),
        origin_unix_ms: clock.wall_origin_unix_millis(),
        targets: urls,
        config: RunConfigSummary {
            rps: config.rps,
            ramp_from_rps: config.ramp_from,
            duration_s: config.duration.as_secs_f64(),
            warmup_s: config.warmup.as_secs_f64(),
            connections: config.connections,
            max_lag_ms: config.max_lag.as_secs_f64() * 1_000.0,
            timeout_ms: config.timeout.as_secs_f64() * 1_000.0,
            warehouses: w.warehouses,
            skus: w.skus,
            skew: w.skew.to_string(),
            mix: w.mix.to_string(),
            duplicate_rate: w.duplicate_rate,
            seed: w.seed,
            partitions,
        },
        counts: Counts {
            offered: m.offered,
            started: m.started,
            ok: m.ok,
            accepted: m.accepted,
            rejected: m.rejected,
            errors: m.error_count(),
            dropped: m.dropped,
        },
        rates: Rates {
            offered_rps: m.offered_rps(plan),
            achieved_rps: m.achieved_rps(plan),
            achieved_percent,
        },
        latency_ms: latency,
        service_time_ms: LatencySummary::of(&m.service_time),
        start_lag_ms: LatencySummary::of(&m.start_lag),
        errors: Summary::errors_of(m),
        server_side,
        baseline: None,
        warnings,
        thresholds,
        correctness,
        history,
        verdict,
    }
}

/// The end-of-run text: rates, latency beside server-side, errors,
/// thresholds, correctness, warnings and where the report is.
pub fn print_summary(outcome: &RunOutcome) {
    let s = &outcome.summary;
    let l = &s.latency_ms;
    println!();
    println!(
        "offered {:.0}/s, achieved {:.0}/s ({:.2}%); {} ok ({} accepted, {} rejected), {} errors, {} dropped",
        s.rates.offered_rps,
        s.rates.achieved_rps,
        s.rates.achieved_percent,
        s.counts.ok,
        s.counts.accepted,
        s.counts.rejected,
        s.counts.errors,
        s.counts.dropped
    );
    println!(
        "latency (ms, from intended send): p50 {:.2}  p90 {:.2}  p99 {:.2}  p99.9 {:.2}  p99.99 {:.2}  max {:.2}",
        l.p50, l.p90, l.p99, l.p99_9, l.p99_99, l.max
    );
    let u = &s.service_time_ms;
    println!(
        "latency (ms, from actual send):   p50 {:.2}  p90 {:.2}  p99 {:.2}  p99.9 {:.2}  max {:.2}  (start lag p99 {:.2})",
        u.p50, u.p90, u.p99, u.p99_9, u.max, s.start_lag_ms.p99
    );
    match &s.server_side {
        Some(server) => {
            let show = |range: &Option<report::RangeMs>| match range {
                Some(report::RangeMs {
                    upper: Some(upper),
                    estimate,
                    lower,
                }) => format!("{estimate:.2} (in {lower}..{upper}]"),
                Some(report::RangeMs { lower, .. }) => format!("> {lower}"),
                None => "-".to_owned(),
            };
            println!(
                "server-side (ms, {} over {} targets, {} requests): p50 {}  p90 {}  p99 {}  p99.9 {}",
                server.metric,
                server.scraped.len(),
                server.count,
                show(&server.p50),
                show(&server.p90),
                show(&server.p99),
                show(&server.p99_9)
            );
        }
        None => println!("server-side: no histogram could be scraped"),
    }
    if let Some(baseline) = &s.baseline {
        let ratio = |r: Option<f64>| r.map_or("-".to_owned(), |r| format!("x{r:.2}"));
        let b = &baseline.latency_ms;
        println!(
            "baseline (HTTP -> Kafka -> HTTP echo, ms): p50 {:.2}  p90 {:.2}  p99 {:.2}  p99.9 {:.2}  max {:.2}; \
             achieved {:.0}/s, {} errors, {} dropped",
            b.p50,
            b.p90,
            b.p99,
            b.p99_9,
            b.max,
            baseline.achieved_rps,
            baseline.errors,
            baseline.dropped
        );
        println!(
            "full/baseline: p50 {}, p99 {}",
            ratio(baseline.p50_ratio),
            ratio(baseline.p99_ratio)
        );
    }
    for (kind, entry) in &s.errors {
        println!("error {kind}: {} (e.g. {})", entry.count, entry.example);
    }
    if let Some(correctness) = &s.correctness {
        println!("correctness after load:");
        for check in &correctness.checks {
            println!(
                "  [{}] {}: {}",
                if check.passed { "ok" } else { "FAIL" },
                check.name,
                check.detail
            );
        }
        for violation in &correctness.violations {
            println!("    {violation}");
        }
        if correctness.violation_count > correctness.violations.len() {
            println!(
                "    ... {} more",
                correctness.violation_count - correctness.violations.len()
            );
        }
    }
    for result in &s.thresholds {
        println!(
            "threshold {}: observed {} -> {}",
            result.threshold,
            result.observed,
            if result.passed { "pass" } else { "FAIL" }
        );
    }
    for warning in &s.warnings {
        println!("warning: {warning}");
    }
    match &outcome.files {
        Ok(files) => println!("report: {}", files.html.display()),
        Err(error) => println!("report could not be written: {error}"),
    }
    println!(
        "verdict: {}",
        match s.verdict {
            Verdict::Pass => "PASS",
            Verdict::ThresholdFailed => "FAIL (threshold)",
            Verdict::CorrectnessFailed => "FAIL (correctness)",
        }
    );
}
