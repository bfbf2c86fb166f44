//! The report directory: `summary.json`, `per_second.csv`, `latency.hlog`
//! (HdrHistogram interval log, one interval per second) and a
//! self-contained `report.html` (inline SVG, no scripts, no fetches).

pub mod html;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs;
use std::io::{self, BufWriter, Write as _};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use hdrhistogram::Histogram;
use hdrhistogram::serialization::V2DeflateSerializer;
use hdrhistogram::serialization::interval_log::IntervalLogWriterBuilder;
use serde::Serialize;

use crate::correctness::CorrectnessReport;
use crate::measure::{Measurements, SecondStats};
use crate::prometheus::{BucketHistogram, QuantileRange};
use crate::schedule::LoadPlan;
use crate::verdict::ThresholdResult;

/// Latency quantiles in milliseconds.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct LatencySummary {
    pub count: u64,
    pub mean: f64,
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub p99_9: f64,
    pub p99_99: f64,
    pub max: f64,
}

impl LatencySummary {
    /// From a histogram of microseconds.
    pub fn of(histogram: &Histogram<u64>) -> Self {
        let ms = |micros: u64| micros as f64 / 1_000.0;
        Self {
            count: histogram.len(),
            mean: histogram.mean() / 1_000.0,
            p50: ms(histogram.value_at_quantile(0.5)),
            p90: ms(histogram.value_at_quantile(0.9)),
            p99: ms(histogram.value_at_quantile(0.99)),
            p99_9: ms(histogram.value_at_quantile(0.999)),
            p99_99: ms(histogram.value_at_quantile(0.9999)),
            max: ms(histogram.max()),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct RangeMs {
    pub lower: f64,
    /// `None` for the overflow bucket (unbounded).
    pub upper: Option<f64>,
    pub estimate: f64,
}

impl From<QuantileRange> for RangeMs {
    fn from(range: QuantileRange) -> Self {
        Self {
            lower: range.lower * 1_000.0,
            upper: range.upper.is_finite().then_some(range.upper * 1_000.0),
            estimate: range.estimate * 1_000.0,
        }
    }
}

/// The nodes' own submit latency over the measured part (bucket deltas
/// between two scrapes, summed over targets).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ServerSide {
    pub metric: String,
    pub scraped: Vec<String>,
    pub failed: Vec<String>,
    pub count: u64,
    pub p50: Option<RangeMs>,
    pub p90: Option<RangeMs>,
    pub p99: Option<RangeMs>,
    pub p99_9: Option<RangeMs>,
    #[serde(skip)]
    pub buckets: BucketHistogram,
}

impl ServerSide {
    pub fn new(
        metric: &str,
        scraped: Vec<String>,
        failed: Vec<String>,
        buckets: BucketHistogram,
    ) -> Self {
        let at = |q| buckets.quantile(q).map(RangeMs::from);
        Self {
            metric: metric.to_owned(),
            scraped,
            failed,
            count: buckets.count(),
            p50: at(0.5),
            p90: at(0.9),
            p99: at(0.99),
            p99_9: at(0.999),
            buckets,
        }
    }
}

/// How far client-side and server-side p99 may be apart before a warning.
pub const P99_GAP_WARNING_MS: f64 = 5.0;

/// The warning the reference's port-forwarding proxy would have raised:
/// client-side p99 well above the server's own p99 means time is spent
/// between the generator and the handler.
pub fn compare_p99(client_p99_ms: f64, server: &ServerSide) -> Option<String> {
    let range = server.p99.as_ref()?;
    match range.upper {
        Some(upper) if client_p99_ms > upper + P99_GAP_WARNING_MS => Some(format!(
            "client-side p99 {client_p99_ms:.2} ms exceeds the nodes' own p99 (at most {upper:.2} ms) \
             by more than {P99_GAP_WARNING_MS} ms: time is spent between generator and handler \
             (a proxy, the network, or a generator or gateway short of CPU)"
        )),
        _ if client_p99_ms + P99_GAP_WARNING_MS < range.lower => Some(format!(
            "the nodes' own p99 (above {:.2} ms) exceeds client-side p99 {client_p99_ms:.2} ms: \
             the scrapes count requests other than this run's",
            range.lower
        )),
        _ => None,
    }
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct RunConfigSummary {
    pub rps: f64,
    pub ramp_from_rps: Option<f64>,
    pub duration_s: f64,
    pub warmup_s: f64,
    pub connections: usize,
    pub max_lag_ms: f64,
    pub timeout_ms: f64,
    pub warehouses: u32,
    pub skus: u32,
    pub skew: String,
    pub mix: String,
    pub duplicate_rate: f64,
    pub seed: u64,
    pub partitions: u32,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Counts {
    pub offered: u64,
    pub started: u64,
    pub ok: u64,
    pub accepted: u64,
    pub rejected: u64,
    pub errors: u64,
    pub dropped: u64,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Rates {
    pub offered_rps: f64,
    pub achieved_rps: f64,
    pub achieved_percent: f64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ErrorEntry {
    pub count: u64,
    pub example: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct HistorySummary {
    pub file: String,
    pub records: Option<u64>,
    pub error: Option<String>,
}

/// The bare-path baseline next to the full path, at the same rate.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Baseline {
    pub latency_ms: LatencySummary,
    pub achieved_rps: f64,
    pub errors: u64,
    pub dropped: u64,
    /// Full path p50 / baseline p50.
    pub p50_ratio: Option<f64>,
    /// Full path p99 / baseline p99.
    pub p99_ratio: Option<f64>,
}

impl Baseline {
    /// The baseline's measurements beside the full path's latency; a ratio
    /// is `None` when the baseline measured 0.
    pub fn compare(full: &LatencySummary, baseline: &Measurements, plan: &LoadPlan) -> Self {
        let latency_ms = LatencySummary::of(&baseline.latency);
        let ratio = |full: f64, bare: f64| (bare > 0.0).then(|| full / bare);
        Self {
            p50_ratio: ratio(full.p50, latency_ms.p50),
            p99_ratio: ratio(full.p99, latency_ms.p99),
            achieved_rps: baseline.achieved_rps(plan),
            errors: baseline.error_count(),
            dropped: baseline.dropped,
            latency_ms,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Pass,
    ThresholdFailed,
    CorrectnessFailed,
}

/// `summary.json`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Summary {
    pub run_tag: String,
    /// Wall-clock instant of the run's time zero (history times count from it).
    pub origin_unix_ms: u64,
    pub targets: Vec<String>,
    pub config: RunConfigSummary,
    pub counts: Counts,
    pub rates: Rates,
    /// From the intended send time (coordinated omission corrected).
    pub latency_ms: LatencySummary,
    /// From the actual send time (what a closed-loop tool reports).
    pub service_time_ms: LatencySummary,
    /// How late requests were started.
    pub start_lag_ms: LatencySummary,
    pub errors: BTreeMap<String, ErrorEntry>,
    pub server_side: Option<ServerSide>,
    pub baseline: Option<Baseline>,
    pub warnings: Vec<String>,
    pub thresholds: Vec<ThresholdResult>,
    pub correctness: Option<CorrectnessReport>,
    pub history: Option<HistorySummary>,
    pub verdict: Verdict,
}

impl Summary {
    pub fn errors_of(measurements: &Measurements) -> BTreeMap<String, ErrorEntry> {
        measurements
            .errors
            .iter()
            .map(|(kind, tally)| {
                (
                    kind.clone(),
                    ErrorEntry {
                        count: tally.count,
                        example: tally.example.clone(),
                    },
                )
            })
            .collect()
    }
}

/// `target/loadtest/<UTC timestamp>/` under `base`.
pub fn default_report_dir(base: &Path, at: SystemTime) -> PathBuf {
    base.join(utc_timestamp(at))
}

/// `YYYYMMDDTHHMMSSZ` (civil-from-days, so no date crate is needed).
pub fn utc_timestamp(at: SystemTime) -> String {
    let seconds = at
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_secs();
    let (days, of_day) = (seconds / 86_400, seconds % 86_400);
    // Howard Hinnant's days-to-civil algorithm.
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1_460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_index + 2) / 5 + 1;
    let month = if month_index < 10 {
        month_index + 3
    } else {
        month_index - 9
    };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}{month:02}{day:02}T{:02}{:02}{:02}Z",
        of_day / 3_600,
        of_day / 60 % 60,
        of_day % 60
    )
}

/// Everything the files are written from.
#[derive(Debug)]
pub struct ReportInput<'a> {
    pub summary: &'a Summary,
    pub measurements: &'a Measurements,
}

/// The files written, for printing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReportFiles {
    pub summary: PathBuf,
    pub per_second: PathBuf,
    pub hdr_log: PathBuf,
    pub html: PathBuf,
}

pub fn write_report(dir: &Path, input: &ReportInput<'_>) -> io::Result<ReportFiles> {
    fs::create_dir_all(dir)?;
    let files = ReportFiles {
        summary: dir.join("summary.json"),
        per_second: dir.join("per_second.csv"),
        hdr_log: dir.join("latency.hlog"),
        html: dir.join("report.html"),
    };
    let json = serde_json::to_vec_pretty(input.summary).map_err(io::Error::other)?;
    fs::write(&files.summary, json)?;
    fs::write(
        &files.per_second,
        per_second_csv(&input.measurements.seconds),
    )?;
    write_hdr_log(&files.hdr_log, input)?;
    fs::write(&files.html, html::render(input.summary, input.measurements))?;
    Ok(files)
}

pub const CSV_HEADER: &str =
    "second,phase,offered,completed,ok,errors,dropped,p50_ms,p90_ms,p99_ms,p99_9_ms,max_ms";

/// One row per second of the run, warmup included.
pub fn per_second_csv(seconds: &[SecondStats]) -> String {
    let mut csv = String::with_capacity(64 * (seconds.len() + 1));
    csv.push_str(CSV_HEADER);
    csv.push('\n');
    for second in seconds {
        let at = |q: f64| second.latency.value_at_quantile(q) as f64 / 1_000.0;
        let _ = writeln!(
            csv,
            "{},{},{},{},{},{},{},{:.3},{:.3},{:.3},{:.3},{:.3}",
            second.second,
            if second.measured {
                "measured"
            } else {
                "warmup"
            },
            second.offered,
            second.completed,
            second.ok,
            second.errors,
            second.dropped,
            at(0.5),
            at(0.9),
            at(0.99),
            at(0.999),
            second.latency.max() as f64 / 1_000.0,
        );
    }
    csv
}

fn write_hdr_log(path: &Path, input: &ReportInput<'_>) -> io::Result<()> {
    let mut out = BufWriter::new(fs::File::create(path)?);
    let mut serializer = V2DeflateSerializer::new();
    let origin = SystemTime::UNIX_EPOCH + Duration::from_millis(input.summary.origin_unix_ms);
    let mut log = IntervalLogWriterBuilder::new()
        .add_comment("tribunal loadtest: latency from the intended send time, microseconds")
        .add_comment(&format!("run {}", input.summary.run_tag))
        .with_start_time(origin)
        .with_base_time(origin)
        .with_max_value_divisor(1_000.0)
        .begin_log_with(&mut out, &mut serializer)?;
    for second in &input.measurements.seconds {
        log.write_histogram(
            &second.latency,
            Duration::from_secs(u64::from(second.second)),
            Duration::from_secs(1),
            None,
        )
        .map_err(|error| io::Error::other(error.to_string()))?;
    }
    drop(log);
    out.flush()
}

#[cfg(test)]
mod tests;
