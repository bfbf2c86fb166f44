//! The load generator as a library: the chaos injector drives its load with
//! the same schedule, client and history recording as `loadtest` itself.
//!
//! The pieces, each usable alone:
//! - [`schedule`]: intended send times (constant rate, ramps, warmup).
//! - [`workload`]: the seeded command sequence (mix, skew, duplicates).
//! - [`client`]: the pooled HTTP/1.1 client over the gateway URLs.
//! - [`driver`]: the open-loop driver (dispatch at intended times, bounded
//!   in-flight, drops counted), emitting one outcome per scheduled request.
//! - [`measure`]: the recorder (HDR histograms, per-second rows, history).
//! - [`history`]: the JSON-lines history record and its writer and reader.
//! - [`prometheus`]: server-side latency from /metrics scrapes.
//! - [`verdict`]: thresholds and their evaluation.
//! - [`correctness`]: the after-load pass against the cluster.
//! - [`report`]: summary.json, per-second CSV, HDR log, report.html.
//! - [`run`]: one whole run, as the binary performs it.
//! - [`baseline`]: the bare HTTP -> Kafka -> HTTP echo path for `--baseline`.
//! - [`fake_target`]: an in-process stand-in for the gateways, for tests and
//!   for measuring the generator itself.

pub mod baseline;
pub mod client;
pub mod cluster_start;
pub mod correctness;
pub mod driver;
pub mod fake_target;
pub mod history;
pub mod measure;
pub mod prometheus;
pub mod report;
pub mod run;
pub mod schedule;
pub mod verdict;
pub mod workload;

/// Exit code of a run whose thresholds all held and whose correctness
/// pass (when run) found nothing.
pub const EXIT_PASS: u8 = 0;
/// Exit code of a run that missed a threshold.
pub const EXIT_THRESHOLD_FAILED: u8 = 1;
/// Exit code of a run that could not start (cluster or targets unreachable,
/// invalid settings). 2 is left to the argument parser's usage errors.
pub const EXIT_COULD_NOT_START: u8 = 3;
/// Exit code of a run whose correctness pass found a violation.
pub const EXIT_CORRECTNESS_FAILED: u8 = 4;
