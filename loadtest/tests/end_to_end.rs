//! Whole runs (`loadtest::run::run`) against the in-process fake cluster:
//! the verdict, the correctness pass (and that it catches a double apply
//! and a diverging instance), the report files, the could-not-start path.
//! (The embedded cluster is started by `tribunal::cluster` and tested there.)

use std::path::Path;
use std::time::Duration;

use hdrhistogram::serialization::interval_log::{IntervalLogIterator, LogEntry};
use loadtest::fake_target::{FakeCluster, FakeClusterConfig, FakeFaults};
use loadtest::history::read_history;
use loadtest::measure::Progress;
use loadtest::report::Verdict;
use loadtest::run::{RunConfig, RunOutcome, StartError, run};
use loadtest::verdict::Threshold;
use loadtest::workload::{Mix, Skew, WorkloadConfig};

fn config(targets: Vec<String>, report_dir: &Path) -> RunConfig {
    RunConfig {
        rps: 400.0,
        duration: Duration::from_secs(1),
        warmup: Duration::from_millis(500),
        ramp_from: None,
        targets,
        cluster: loadtest::cluster_start::ClusterRequest {
            instances: 4,
            brokers: None,
            partitions: 4,
            ready_timeout: Duration::from_secs(1),
        },
        partitions: None,
        workload: WorkloadConfig {
            warehouses: 4,
            skus: 40,
            skew: Skew::Zipf(1.1),
            mix: Mix::default(),
            duplicate_rate: 0.05,
            seed: 11,
            run_tag: "e2e".to_owned(),
        },
        connections: 32,
        // The fake cluster speaks HTTP/1.1 only.
        http: loadtest::client::HttpVersion::Http1,
        max_lag: Duration::from_secs(1),
        dispatch_quantum: loadtest::driver::DriverConfig::DEFAULT_DISPATCH_QUANTUM,
        timeout: Duration::from_secs(5),
        thresholds: Threshold::with_defaults(&[]),
        report_dir: report_dir.to_owned(),
        history: true,
        progress: Progress::Quiet,
        check_correctness: true,
        settle_timeout: Duration::from_millis(600),
        key_index_bound: 262_144,
        ready_timeout: Duration::from_secs(1),
        baseline: false,
    }
}

async fn run_against(faults: FakeFaults, report_dir: &Path) -> RunOutcome {
    let fake = FakeCluster::start(FakeClusterConfig {
        instances: 4,
        partitions: 4,
        lookup_bound: None,
        faults,
    })
    .await
    .expect("fake cluster starts");
    run(config(fake.urls(), report_dir))
        .await
        .expect("the run starts")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clean_run_passes_and_writes_a_well_formed_report() {
    let dir = tempfile::tempdir().expect("temp dir");
    let outcome = run_against(FakeFaults::default(), dir.path()).await;
    let summary = &outcome.summary;
    let correctness = summary.correctness.as_ref().expect("the pass ran");
    assert!(correctness.passed(), "{correctness:#?}");
    assert_eq!(summary.verdict, Verdict::Pass, "{:#?}", summary.thresholds);
    assert_eq!(summary.config.partitions, 4, "read from /health");
    assert_eq!(summary.counts.offered, 400);
    assert_eq!(summary.counts.errors + summary.counts.dropped, 0);
    let server = summary.server_side.as_ref().expect("scraped");
    assert_eq!(server.scraped.len(), 4);
    // The measured part's submissions, give or take the warmup's tail.
    assert!((380..=460).contains(&server.count), "{}", server.count);

    let files = outcome.files.as_ref().expect("report written");
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&files.summary).expect("summary.json"))
            .expect("summary.json parses");
    assert_eq!(json["verdict"], "pass");
    assert_eq!(json["counts"]["offered"], 400);

    let csv = std::fs::read_to_string(&files.per_second).expect("csv");
    let rows: Vec<&str> = csv.lines().skip(1).collect();
    assert!(rows.len() >= 2, "{csv}");
    for (second, row) in rows.iter().enumerate() {
        assert!(
            row.starts_with(&format!("{second},")),
            "row {second}: {row}"
        );
        assert_eq!(row.split(',').count(), 12, "{row}");
    }

    let html = std::fs::read_to_string(&files.html).expect("html");
    assert!(!html.contains("http://") && !html.contains("https://"));
    assert!(!html.contains("<script") && !html.contains("<link"));
    assert_eq!(html.matches("<svg").count(), 3);

    let log = std::fs::read(&files.hdr_log).expect("hdr log");
    let intervals = IntervalLogIterator::new(&log)
        .filter(|entry| matches!(entry, Ok(LogEntry::Interval(_))))
        .count();
    assert_eq!(intervals, outcome.measurements.seconds.len());

    let history = read_history(&dir.path().join("history.jsonl")).expect("history");
    assert_eq!(history.len(), 600, "warmup and measured requests");
    assert!(history.iter().any(|record| record.duplicate));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_correctness_pass_catches_a_double_apply() {
    let dir = tempfile::tempdir().expect("temp dir");
    let faults = FakeFaults {
        double_apply_every: Some(7),
        ..FakeFaults::default()
    };
    let outcome = run_against(faults, dir.path()).await;
    let correctness = outcome.summary.correctness.as_ref().expect("the pass ran");
    assert_eq!(outcome.summary.verdict, Verdict::CorrectnessFailed);
    let failed: Vec<&str> = correctness
        .checks
        .iter()
        .filter(|c| !c.passed)
        .map(|c| c.name.as_str())
        .collect();
    assert_eq!(failed.len(), 4, "every instance's audit: {failed:?}");
    assert!(
        failed
            .iter()
            .all(|name| name.starts_with("inventory audit on "))
    );
    assert!(
        correctness
            .violations
            .iter()
            .any(|v| v.contains("inventory.StockConservedPerSku")),
        "{:#?}",
        correctness.violations
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_correctness_pass_catches_a_diverging_instance() {
    let dir = tempfile::tempdir().expect("temp dir");
    let faults = FakeFaults {
        diverging_instance: Some(2),
        ..FakeFaults::default()
    };
    let outcome = run_against(faults, dir.path()).await;
    let correctness = outcome.summary.correctness.as_ref().expect("the pass ran");
    let failed: Vec<&str> = correctness
        .checks
        .iter()
        .filter(|c| !c.passed)
        .map(|c| c.name.as_str())
        .collect();
    assert_eq!(failed.len(), 2, "{failed:?}");
    assert!(failed.contains(&"instances hold equal levels"));
    assert!(
        failed
            .iter()
            .any(|name| name.starts_with("inventory audit on "))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_target_means_the_run_could_not_start() {
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.local_addr().expect("address").port()
    };
    let dir = tempfile::tempdir().expect("temp dir");
    let error = run(config(vec![format!("http://127.0.0.1:{port}")], dir.path()))
        .await
        .expect_err("nothing listens");
    assert!(matches!(error, StartError::NotReady { .. }), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_keys_a_bounded_key_index_still_holds_are_looked_up() {
    let fake = FakeCluster::start(FakeClusterConfig {
        instances: 4,
        partitions: 4,
        lookup_bound: Some(200),
        faults: FakeFaults::default(),
    })
    .await
    .expect("fake cluster starts");
    let dir = tempfile::tempdir().expect("temp dir");
    let mut config = config(fake.urls(), dir.path());
    config.key_index_bound = 200;
    let outcome = run(config).await.expect("the run starts");
    let correctness = outcome.summary.correctness.as_ref().expect("the pass ran");
    assert!(correctness.passed(), "{correctness:#?}");
    let lookups = correctness
        .checks
        .iter()
        .find(|c| c.name.starts_with("every acknowledged command"))
        .expect("the lookup check");
    // 180 of the ~570 acknowledged keys are looked up (nine tenths of 200).
    assert!(
        lookups
            .detail
            .starts_with("180 acknowledged keys looked up"),
        "{}",
        lookups.detail
    );
}

/// A command that timed out may be applied after the pass first looked it
/// up (produced late, or behind the instances' lag): the pass looks it up
/// again while the audit settles instead of calling it not applied.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_timed_out_command_applied_after_its_first_lookup_is_audited() {
    let dir = tempfile::tempdir().expect("temp dir");
    let outcome = run_against(
        FakeFaults {
            late_apply_every: Some(25),
            ..FakeFaults::default()
        },
        dir.path(),
    )
    .await;
    let correctness = outcome.summary.correctness.as_ref().expect("the pass ran");
    assert!(correctness.passed(), "{correctness:#?}");
    let unacknowledged = correctness
        .checks
        .iter()
        .find(|c| c.name.starts_with("every unacknowledged command"))
        .expect("the unacknowledged check");
    assert!(
        unacknowledged
            .detail
            .contains(" found (audited as agreed), 0 unknown"),
        "{}",
        unacknowledged.detail
    );
    assert!(
        !unacknowledged.detail.starts_with("0 sent"),
        "{}",
        unacknowledged.detail
    );
}
