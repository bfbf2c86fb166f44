//! A minimal Prometheus registry: counters, gauges and latency histograms,
//! text exposition format 0.0.4.
//!
//! Hand-written rather than the `prometheus` crate: the node needs three
//! metric kinds with fixed label sets, registered once at start; atomics
//! and a renderer cover that without another dependency tree. Latencies are
//! kept in integer microseconds and rendered as seconds.

use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds (microseconds) for request-scale latencies: 100 µs to 10 s.
pub const LATENCY_BUCKETS_MICROS: &[u64] = &[
    100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000,
    1_000_000, 2_500_000, 5_000_000, 10_000_000,
];

/// A monotonically increasing count.
#[derive(Clone, Debug, Default)]
pub struct Counter(Arc<AtomicU64>);

impl Counter {
    pub fn increment(&self) {
        self.add(1);
    }

    pub fn add(&self, amount: u64) {
        self.0.fetch_add(amount, Ordering::Relaxed);
    }

    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// A value that goes up and down: the level of something now.
#[derive(Clone, Debug, Default)]
pub struct Gauge(Arc<AtomicI64>);

impl Gauge {
    pub fn set(&self, value: i64) {
        self.0.store(value, Ordering::Relaxed);
    }

    /// Sets a count; one above `i64::MAX` cannot exist in memory.
    pub fn set_count(&self, count: usize) {
        self.set(i64::try_from(count).unwrap_or(i64::MAX));
    }

    pub fn get(&self) -> i64 {
        self.0.load(Ordering::Relaxed)
    }
}

#[derive(Debug)]
struct HistogramCells {
    bounds_micros: Vec<u64>,
    /// One per bound, plus one for observations above the last bound.
    buckets: Vec<AtomicU64>,
    sum_micros: AtomicU64,
}

/// A latency distribution over fixed buckets.
#[derive(Clone, Debug)]
pub struct Histogram(Arc<HistogramCells>);

impl Histogram {
    fn new(bounds_micros: &[u64]) -> Self {
        assert!(!bounds_micros.is_empty(), "a histogram has buckets");
        assert!(
            bounds_micros.windows(2).all(|pair| pair[0] < pair[1]),
            "bucket bounds increase"
        );
        Self(Arc::new(HistogramCells {
            bounds_micros: bounds_micros.to_vec(),
            buckets: (0..=bounds_micros.len())
                .map(|_| AtomicU64::new(0))
                .collect(),
            sum_micros: AtomicU64::new(0),
        }))
    }

    pub fn observe(&self, elapsed: Duration) {
        self.observe_micros(u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX));
    }

    pub fn observe_micros(&self, micros: u64) {
        let cells = &self.0;
        let bucket = cells.bounds_micros.partition_point(|bound| *bound < micros);
        cells.buckets[bucket].fetch_add(1, Ordering::Relaxed);
        cells.sum_micros.fetch_add(micros, Ordering::Relaxed);
    }

    /// Observations so far.
    pub fn count(&self) -> u64 {
        self.0
            .buckets
            .iter()
            .map(|b| b.load(Ordering::Relaxed))
            .sum()
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Counter,
    Gauge,
    Histogram,
}

#[derive(Debug)]
enum Cells {
    Counter(Counter),
    Gauge(Gauge),
    Histogram(Histogram),
}

#[derive(Debug)]
struct Series {
    /// Rendered `name="value"` pairs, comma-separated, without braces.
    labels: String,
    cells: Cells,
}

#[derive(Debug)]
struct Family {
    name: String,
    help: String,
    kind: Kind,
    series: Vec<Series>,
}

/// Metrics registered once at start, then rendered on every scrape.
#[derive(Debug, Default)]
pub struct MetricsRegistry {
    families: Vec<Family>,
}

impl MetricsRegistry {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn counter(&mut self, name: &str, help: &str, labels: &[(&str, &str)]) -> Counter {
        let counter = Counter::default();
        self.register(
            name,
            help,
            Kind::Counter,
            labels,
            Cells::Counter(counter.clone()),
        );
        counter
    }

    pub fn gauge(&mut self, name: &str, help: &str, labels: &[(&str, &str)]) -> Gauge {
        let gauge = Gauge::default();
        self.register(name, help, Kind::Gauge, labels, Cells::Gauge(gauge.clone()));
        gauge
    }

    pub fn histogram(
        &mut self,
        name: &str,
        help: &str,
        labels: &[(&str, &str)],
        bounds_micros: &[u64],
    ) -> Histogram {
        let histogram = Histogram::new(bounds_micros);
        self.register(
            name,
            help,
            Kind::Histogram,
            labels,
            Cells::Histogram(histogram.clone()),
        );
        histogram
    }

    /// The text exposition format, families in registration order.
    pub fn render(&self) -> String {
        let mut out = String::new();
        for family in &self.families {
            let kind = match family.kind {
                Kind::Counter => "counter",
                Kind::Gauge => "gauge",
                Kind::Histogram => "histogram",
            };
            let _ = writeln!(out, "# HELP {} {}", family.name, escape_help(&family.help));
            let _ = writeln!(out, "# TYPE {} {kind}", family.name);
            for series in &family.series {
                render_series(&mut out, &family.name, series);
            }
        }
        out
    }

    fn register(
        &mut self,
        name: &str,
        help: &str,
        kind: Kind,
        labels: &[(&str, &str)],
        cells: Cells,
    ) {
        assert!(is_metric_name(name), "metric name {name:?}");
        for (label, _) in labels {
            assert!(
                is_label_name(label) && *label != "le",
                "label name {label:?} on {name}"
            );
        }
        let labels = labels
            .iter()
            .map(|(label, value)| format!("{label}=\"{}\"", escape_label_value(value)))
            .collect::<Vec<_>>()
            .join(",");
        let family = match self.families.iter().position(|f| f.name == name) {
            Some(at) => &mut self.families[at],
            None => {
                self.families.push(Family {
                    name: name.to_owned(),
                    help: help.to_owned(),
                    kind,
                    series: Vec::new(),
                });
                self.families.last_mut().expect("just pushed")
            }
        };
        assert!(
            family.kind == kind && family.help == help,
            "{name} is registered once with one kind and help"
        );
        assert!(
            family.series.iter().all(|s| s.labels != labels),
            "{name}{{{labels}}} is registered once"
        );
        family.series.push(Series { labels, cells });
    }
}

fn render_series(out: &mut String, name: &str, series: &Series) {
    let braces = |extra: &str| match (series.labels.is_empty(), extra.is_empty()) {
        (true, true) => String::new(),
        (true, false) => format!("{{{extra}}}"),
        (false, true) => format!("{{{}}}", series.labels),
        (false, false) => format!("{{{},{extra}}}", series.labels),
    };
    match &series.cells {
        Cells::Counter(counter) => {
            let _ = writeln!(out, "{name}{} {}", braces(""), counter.get());
        }
        Cells::Gauge(gauge) => {
            let _ = writeln!(out, "{name}{} {}", braces(""), gauge.get());
        }
        Cells::Histogram(histogram) => {
            let cells = &histogram.0;
            let mut cumulative = 0u64;
            for (bound, bucket) in cells.bounds_micros.iter().zip(&cells.buckets) {
                cumulative += bucket.load(Ordering::Relaxed);
                let le = format!("le=\"{}\"", seconds(*bound));
                let _ = writeln!(out, "{name}_bucket{} {cumulative}", braces(&le));
            }
            let overflow = cells.buckets.last().expect("an overflow bucket");
            cumulative += overflow.load(Ordering::Relaxed);
            let _ = writeln!(out, "{name}_bucket{} {cumulative}", braces("le=\"+Inf\""));
            let sum = seconds(cells.sum_micros.load(Ordering::Relaxed));
            let _ = writeln!(out, "{name}_sum{} {sum}", braces(""));
            let _ = writeln!(out, "{name}_count{} {cumulative}", braces(""));
        }
    }
}

/// Microseconds as decimal seconds, without floating point.
fn seconds(micros: u64) -> String {
    let (whole, fraction) = (micros / 1_000_000, micros % 1_000_000);
    if fraction == 0 {
        return whole.to_string();
    }
    let digits = format!("{fraction:06}");
    format!("{whole}.{}", digits.trim_end_matches('0'))
}

fn is_metric_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

fn is_label_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !name.starts_with("__")
}

fn escape_help(help: &str) -> String {
    help.replace('\\', "\\\\").replace('\n', "\\n")
}

fn escape_label_value(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// covers: gateway.MetricsExposedAsPrometheusText
    #[test]
    fn counters_gauges_and_histograms_render_in_the_text_format() {
        let mut registry = MetricsRegistry::new();
        let accepted = registry.counter(
            "tribunal_submissions_total",
            "Submissions by result.",
            &[("result", "accepted")],
        );
        let odd = registry.counter(
            "tribunal_submissions_total",
            "Submissions by result.",
            &[("result", "a\"b\\c\nd")],
        );
        let pending = registry.gauge("tribunal_pending", "Waiting now.", &[]);
        let latency = registry.histogram(
            "tribunal_submit_seconds",
            "Submit latency.",
            &[],
            &[1_000, 250_000, 2_000_000],
        );
        accepted.add(3);
        odd.increment();
        pending.set_count(7);
        pending.set(-2);
        for micros in [999, 1_000, 1_001, 3_000_000] {
            latency.observe_micros(micros);
        }
        latency.observe(Duration::from_millis(200));
        assert_eq!(latency.count(), 5);
        let expected = "\
# HELP tribunal_submissions_total Submissions by result.
# TYPE tribunal_submissions_total counter
tribunal_submissions_total{result=\"accepted\"} 3
tribunal_submissions_total{result=\"a\\\"b\\\\c\\nd\"} 1
# HELP tribunal_pending Waiting now.
# TYPE tribunal_pending gauge
tribunal_pending -2
# HELP tribunal_submit_seconds Submit latency.
# TYPE tribunal_submit_seconds histogram
tribunal_submit_seconds_bucket{le=\"0.001\"} 2
tribunal_submit_seconds_bucket{le=\"0.25\"} 4
tribunal_submit_seconds_bucket{le=\"2\"} 4
tribunal_submit_seconds_bucket{le=\"+Inf\"} 5
tribunal_submit_seconds_sum 3.203
tribunal_submit_seconds_count 5
";
        assert_eq!(registry.render(), expected);
    }

    #[test]
    fn labelled_histograms_put_le_last() {
        let mut registry = MetricsRegistry::new();
        registry
            .histogram("h", "help", &[("stage", "agree")], &[5])
            .observe_micros(5);
        let text = registry.render();
        assert!(
            text.contains("h_bucket{stage=\"agree\",le=\"0.000005\"} 1\n"),
            "{text}"
        );
        assert!(text.contains("h_sum{stage=\"agree\"} 0.000005\n"), "{text}");
    }

    #[test]
    #[should_panic(expected = "registered once")]
    fn a_series_is_registered_once() {
        let mut registry = MetricsRegistry::new();
        registry.counter("c_total", "help", &[("a", "1")]);
        registry.counter("c_total", "help", &[("a", "1")]);
    }
}
