//! The open-loop driver against a fake target that stalls once: the
//! requests scheduled during the stall are measured from their intended
//! send time (coordinated omission corrected), and requests that cannot be
//! started within the lag bound are dropped and counted, never hidden.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use loadtest::client::{HttpClient, HttpVersion};
use loadtest::driver::{DriverConfig, drive};
use loadtest::fake_target::{FakeCluster, FakeClusterConfig, FakeFaults, Stall};
use loadtest::history::{Completion, HistoryRecord, HistoryWriter, RunClock, read_history};
use loadtest::measure::{Measurements, Progress, Recorder};
use loadtest::schedule::LoadPlan;
use loadtest::workload::{Mix, Skew, Workload, WorkloadConfig};
use tokio::sync::mpsc;

const STALL: Stall = Stall {
    after: Duration::from_millis(300),
    length: Duration::from_millis(200),
};

struct Run {
    records: Vec<HistoryRecord>,
    measurements: Measurements,
    clock: RunClock,
    stall: (Instant, Instant),
}

/// 1000 requests/s for 1 s through `slots` connections to a fake that
/// stalls once.
async fn run_against_stall(slots: usize, max_lag: Duration) -> Run {
    let fake = FakeCluster::start(FakeClusterConfig {
        faults: FakeFaults {
            stall: Some(STALL),
            ..FakeFaults::default()
        },
        ..FakeClusterConfig::default()
    })
    .await
    .expect("fake target starts");
    let client = Arc::new(
        HttpClient::new(
            &fake.urls(),
            slots,
            Duration::from_secs(5),
            HttpVersion::Http1,
        )
        .expect("valid target"),
    );
    let plan =
        LoadPlan::new(1_000.0, Duration::from_secs(1), Duration::ZERO, None).expect("valid plan");
    let mut workload = Workload::new(WorkloadConfig {
        warehouses: 2,
        skus: 10,
        skew: Skew::Uniform,
        mix: Mix::default(),
        duplicate_rate: 0.0,
        seed: 3,
        run_tag: "co".to_owned(),
    })
    .expect("valid workload");
    let dir = tempfile::tempdir().expect("temp dir");
    let history_path = dir.path().join("history.jsonl");
    let history = HistoryWriter::create(&history_path).expect("history file");
    let clock = RunClock {
        origin: Instant::now() + Duration::from_millis(20),
        wall_origin: SystemTime::now(),
    };
    let (sender, receiver) = mpsc::channel(1_024);
    let recorder = Recorder::new(plan.clone(), clock, Progress::Quiet, Some(history))
        .spawn(receiver)
        .expect("recorder thread");
    let config = DriverConfig {
        max_in_flight: slots,
        max_lag,
        dispatch_quantum: DriverConfig::DEFAULT_DISPATCH_QUANTUM,
    };
    let report = drive(
        &plan.schedule,
        clock.origin,
        &mut workload,
        client,
        config,
        sender,
    )
    .await
    .expect("the run completes");
    let measurements = tokio::task::spawn_blocking(move || recorder.join())
        .await
        .expect("join")
        .expect("the recorder does not panic");
    assert_eq!(report.scheduled, 1_000);
    assert_eq!(report.started + report.dropped, 1_000);
    let records = read_history(&history_path).expect("history parses");
    assert_eq!(records.len(), 1_000, "one record per scheduled request");
    Run {
        records,
        measurements,
        clock,
        stall: fake.stall_window().expect("the fake stalled"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_scheduled_during_a_stall_are_measured_from_their_intended_time() {
    let run = run_against_stall(8, Duration::from_secs(1)).await;
    let (stall_start, stall_end) = (run.clock.micros(run.stall.0), run.clock.micros(run.stall.1));
    let during: Vec<&HistoryRecord> = run
        .records
        .iter()
        .filter(|r| r.intended_us >= stall_start && r.intended_us + 5_000 < stall_end)
        .collect();
    assert!(
        during.len() >= 150,
        "{} requests due in the stall",
        during.len()
    );
    let mut sent_after_the_stall = 0;
    for record in &during {
        assert!(
            matches!(
                record.completion,
                Completion::Answered {
                    status: 200 | 409,
                    ..
                }
            ),
            "{record:?}"
        );
        let completed = record.completed_us.expect("completed");
        let sent = record.sent_us.expect("sent");
        // Latency from the intended time covers the rest of the stall.
        assert!(
            completed - record.intended_us + 1_000 >= stall_end - record.intended_us,
            "{record:?} completed before the stall ended at {stall_end}"
        );
        if sent + 1_000 >= stall_end {
            sent_after_the_stall += 1;
        }
    }
    // With 8 connections all stuck, nearly every request due in the stall
    // could only be sent after it: a tool timing from the actual send would
    // have recorded them as fast.
    assert!(
        sent_after_the_stall + 8 >= during.len(),
        "{sent_after_the_stall} of {} sent after the stall",
        during.len()
    );
    let m = &run.measurements;
    assert_eq!(m.dropped, 0);
    assert!(m.latency.max() >= 190_000, "max {} µs", m.latency.max());
    assert!(
        m.latency.value_at_quantile(0.9) >= 50_000,
        "p90 {} µs hides the stall",
        m.latency.value_at_quantile(0.9)
    );
    assert!(
        m.service_time.value_at_quantile(0.9) < m.latency.value_at_quantile(0.9),
        "the uncorrected view is the optimistic one"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_that_cannot_start_within_the_lag_bound_are_dropped_and_counted() {
    let run = run_against_stall(1, Duration::from_millis(50)).await;
    let dropped: Vec<&HistoryRecord> = run
        .records
        .iter()
        .filter(|r| r.completion == Completion::Dropped)
        .collect();
    // One connection stuck for 200 ms with a 50 ms bound: about 150 drops.
    assert!(
        (100..=250).contains(&dropped.len()),
        "{} dropped",
        dropped.len()
    );
    assert!(dropped.iter().all(|r| r.sent_us.is_none()));
    assert_eq!(run.measurements.dropped, dropped.len() as u64);
    let answered = run.records.len() - dropped.len();
    assert_eq!(run.measurements.started, answered as u64);
}
