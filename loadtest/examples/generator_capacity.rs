//! How much load the generator itself can drive on this machine, and at
//! what CPU: the open-loop driver and recorder against the in-process fake
//! target, stepping the rate up. The fake runs on its own runtime thread, so
//! the generator's CPU (threads `lt-worker*`, `lt-recorder`) and the fake's
//! (`fake-target`) are read apart from /proc/self/task/*/schedstat.
//!
//! `cargo run --release -p loadtest --example generator_capacity -- --rates 10000,20000,40000`

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use clap::Parser;
use loadtest::client::{HttpClient, HttpVersion};
use loadtest::driver::{DriverConfig, drive};
use loadtest::fake_target::{FakeCluster, FakeClusterConfig};
use loadtest::history::{HistoryWriter, RunClock};
use loadtest::measure::{Progress, Recorder};
use loadtest::schedule::LoadPlan;
use loadtest::workload::{Mix, Skew, Workload, WorkloadConfig};
use tokio::sync::mpsc;

#[derive(Debug, Parser)]
struct Args {
    /// Rates to try, in order.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "5000,10000,20000,30000,40000"
    )]
    rates: Vec<f64>,
    /// Measured time per rate.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    duration: Duration,
    #[arg(long, default_value_t = 256)]
    connections: usize,
    /// Fake target listeners (the generator spreads over them).
    #[arg(long, default_value_t = 4)]
    instances: usize,
    #[arg(long, default_value = "250us", value_parser = humantime::parse_duration)]
    dispatch_quantum: Duration,
    /// Write the history file (to this directory) as a real run does.
    #[arg(long)]
    history_dir: Option<PathBuf>,
}

/// CPU time (ns) per thread-name group, from the kernel's schedstat.
fn cpu_by_thread_group() -> BTreeMap<String, u64> {
    let mut groups = BTreeMap::new();
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return groups;
    };
    for task in tasks.flatten() {
        let path = task.path();
        let name = std::fs::read_to_string(path.join("comm")).unwrap_or_default();
        let group = match name.trim() {
            n if n.starts_with("lt-worker") || n.starts_with("lt-dispatch") => {
                "generator (lt-worker)"
            }
            n if n.starts_with("lt-recorder") => "generator (lt-recorder)",
            n if n.starts_with("fake-target") => "fake target",
            _ => "other",
        };
        let ns: u64 = std::fs::read_to_string(path.join("schedstat"))
            .ok()
            .and_then(|s| s.split_whitespace().next().and_then(|v| v.parse().ok()))
            .unwrap_or(0);
        *groups.entry(group.to_owned()).or_default() += ns;
    }
    groups
}

fn main() {
    let args = Args::parse();
    let fake_runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("fake-target")
        .enable_all()
        .build()
        .expect("fake runtime");
    let fake = fake_runtime
        .block_on(FakeCluster::start(FakeClusterConfig {
            instances: args.instances,
            ..FakeClusterConfig::default()
        }))
        .expect("fake target");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .thread_name("lt-worker")
        .enable_all()
        .build()
        .expect("generator runtime");
    println!(
        "rate/s   achieved/s  p50 ms   p99 ms   max ms  lag p50  lag p99  dropped  generator cores  (worker, recorder)  fake cores"
    );
    for (step, rate) in args.rates.iter().enumerate() {
        let plan =
            LoadPlan::new(*rate, args.duration, Duration::from_secs(1), None).expect("valid plan");
        let client = Arc::new(
            HttpClient::new(
                &fake.urls(),
                args.connections,
                Duration::from_secs(10),
                HttpVersion::Http1,
            )
            .expect("valid targets"),
        );
        let mut workload = Workload::new(WorkloadConfig {
            warehouses: 8,
            skus: 1_000,
            skew: Skew::Uniform,
            mix: Mix::default(),
            duplicate_rate: 0.01,
            seed: 1,
            run_tag: format!("cap{step}"),
        })
        .expect("valid workload");
        let history = args.history_dir.as_ref().map(|dir| {
            std::fs::create_dir_all(dir).expect("history dir");
            HistoryWriter::create(&dir.join(format!("history-{rate}.jsonl"))).expect("history")
        });
        let clock = RunClock {
            origin: Instant::now() + Duration::from_millis(50),
            wall_origin: SystemTime::now(),
        };
        let (sender, receiver) = mpsc::channel(65_536);
        let recorder = Recorder::new(plan.clone(), clock, Progress::Quiet, history)
            .spawn(receiver)
            .expect("recorder");
        // Held until the CPU is sampled, so the recorder thread is still alive.
        let hold_recorder = sender.clone();
        let cpu_before = cpu_by_thread_group();
        let wall = Instant::now();
        runtime
            .block_on(drive(
                &plan.schedule,
                clock.origin,
                &mut workload,
                client,
                DriverConfig {
                    max_in_flight: args.connections,
                    max_lag: Duration::from_secs(1),
                    dispatch_quantum: args.dispatch_quantum,
                },
                sender,
            ))
            .expect("the run completes");
        let cpu_after = cpu_by_thread_group();
        drop(hold_recorder);
        let m = recorder.join().expect("the recorder does not panic");
        let wall_ns = wall.elapsed().as_nanos() as f64;
        let cores = |group: &str| {
            let before = cpu_before.get(group).copied().unwrap_or(0);
            let after = cpu_after.get(group).copied().unwrap_or(0);
            after.saturating_sub(before) as f64 / wall_ns
        };
        let worker = cores("generator (lt-worker)");
        let recorder_cores = cores("generator (lt-recorder)");
        println!(
            "{rate:>7}  {:>10.0}  {:>6.2}  {:>7.2}  {:>7.2}  {:>7.2}  {:>7.2}  {:>7}  {:>15.2}  ({worker:.2}, {recorder_cores:.2})  {:>10.2}",
            m.achieved_rps(&plan),
            m.latency.value_at_quantile(0.5) as f64 / 1e3,
            m.latency.value_at_quantile(0.99) as f64 / 1e3,
            m.latency.max() as f64 / 1e3,
            m.start_lag.value_at_quantile(0.5) as f64 / 1e3,
            m.start_lag.value_at_quantile(0.99) as f64 / 1e3,
            m.dropped,
            worker + recorder_cores,
            cores("fake target"),
        );
    }
}
