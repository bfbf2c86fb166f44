use std::time::{Duration, Instant};

use bytes::Bytes;

use super::*;
use crate::client::Answer;
use crate::driver::{Outcome, OutcomeResult};
use crate::history::RunClock;
use crate::measure::{Progress, Recorder};
use crate::prometheus::BucketHistogram;
use crate::schedule::LoadPlan;
use crate::workload::{Command, Submission};

#[test]
fn timestamps_are_utc_civil_dates() {
    let at = |secs| SystemTime::UNIX_EPOCH + Duration::from_secs(secs);
    assert_eq!(utc_timestamp(at(0)), "19700101T000000Z");
    // 2024-02-29T23:59:59Z, a leap day.
    assert_eq!(utc_timestamp(at(1_709_251_199)), "20240229T235959Z");
    assert_eq!(utc_timestamp(at(1_709_251_200)), "20240301T000000Z");
}

/// Two seconds of synthetic outcomes through the real recorder.
fn recorded() -> crate::measure::Measurements {
    let plan = LoadPlan::new(10.0, Duration::from_secs(1), Duration::from_secs(1), None)
        .expect("valid plan");
    let origin = Instant::now();
    let clock = RunClock {
        origin,
        wall_origin: SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000),
    };
    let mut recorder = Recorder::new(plan, clock, Progress::Quiet, None);
    for index in 0..20u64 {
        let intended = origin + Duration::from_millis(100 * index);
        let key = format!("k-{index}");
        let body = format!(
            r#"{{"partition":0,"offset":{index},"index":0,"key":"{key}","verdict":"accepted"}}"#
        );
        recorder.record(Outcome {
            index,
            submission: Submission {
                key,
                command: Command::Receive {
                    warehouse: "wh-0".to_owned(),
                    sku: "s".to_owned(),
                    quantity: 1,
                },
                duplicate: false,
            },
            target: 0,
            intended,
            sent: Some(intended),
            completed: Some(intended + Duration::from_millis(5 + index)),
            result: OutcomeResult::Answered(Answer {
                status: 200,
                body: Bytes::from(body),
            }),
        });
    }
    recorder.finish()
}

#[test]
fn the_csv_has_a_row_per_second_with_its_phase_and_percentiles() {
    let measurements = recorded();
    let csv = per_second_csv(&measurements.seconds);
    let rows: Vec<&str> = csv.lines().collect();
    assert_eq!(rows[0], CSV_HEADER);
    assert_eq!(rows.len(), 3, "{csv}");
    assert!(rows[1].starts_with("0,warmup,10,10,10,0,0,"), "{}", rows[1]);
    assert!(
        rows[2].starts_with("1,measured,10,10,10,0,0,"),
        "{}",
        rows[2]
    );
    // Second 1's completions took 15..24 ms; the max column says so.
    let max: f64 = rows[2]
        .rsplit(',')
        .next()
        .and_then(|v| v.parse().ok())
        .expect("a number");
    assert!((max - 24.0).abs() < 0.1, "{max}");
    assert_eq!(measurements.ok, 10);
    assert_eq!(measurements.latency.len(), 10);
}

#[test]
fn p99_gaps_beyond_a_few_milliseconds_warn() {
    let buckets = BucketHistogram {
        buckets: vec![(0.005, 90), (0.01, 100), (f64::INFINITY, 100)],
        sum_seconds: 0.3,
    };
    let server = ServerSide::new("m", vec!["a".to_owned()], Vec::new(), buckets);
    assert_eq!(compare_p99(12.0, &server), None);
    let warning = compare_p99(210.0, &server).expect("a 200 ms gap warns");
    assert!(
        warning.contains("between generator and handler"),
        "{warning}"
    );
    let far_below = ServerSide::new(
        "m",
        Vec::new(),
        Vec::new(),
        BucketHistogram {
            buckets: vec![(0.1, 0), (1.0, 100), (f64::INFINITY, 100)],
            sum_seconds: 50.0,
        },
    );
    assert!(compare_p99(1.0, &far_below).is_some());
}
