//! Server-side latency from the nodes' own measurement: reads a histogram
//! family from Prometheus text (format 0.0.4), takes the difference between
//! two scrapes and estimates quantiles from the bucket counts.
//!
//! Bucket bounds are coarse (the gateway's step from 5 ms to 10 ms to 25 ms),
//! so a quantile is a range: the bucket it falls in, plus a linear
//! interpolation inside that bucket as the point estimate.

use std::collections::BTreeMap;

/// The gateway's POST /v1/commands latency, from the request reaching the
/// handler to its answer (`crates/gateway/src/http.rs`).
pub const GATEWAY_SUBMIT_SECONDS: &str = "tribunal_gateway_submit_seconds";

/// A cumulative histogram: `(upper bound in seconds, count ≤ bound)`,
/// ascending, the last bound `+Inf`.
#[derive(Clone, Debug, PartialEq)]
pub struct BucketHistogram {
    pub buckets: Vec<(f64, u64)>,
    pub sum_seconds: f64,
}

/// Where a quantile lies: within `(lower, upper]` seconds, estimated at
/// `estimate` (`upper` is infinite when it lies in the overflow bucket).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct QuantileRange {
    pub lower: f64,
    pub upper: f64,
    pub estimate: f64,
}

impl BucketHistogram {
    pub fn count(&self) -> u64 {
        self.buckets.last().map_or(0, |(_, count)| *count)
    }

    /// `self - earlier`, bucket by bucket (a counter reset, for instance a
    /// restarted node, clamps at zero).
    pub fn since(&self, earlier: &BucketHistogram) -> BucketHistogram {
        let buckets = self
            .buckets
            .iter()
            .map(|(bound, count)| {
                let before = earlier
                    .buckets
                    .iter()
                    .find(|(b, _)| b == bound)
                    .map_or(0, |(_, c)| *c);
                (*bound, count.saturating_sub(before))
            })
            .collect();
        BucketHistogram {
            buckets,
            sum_seconds: (self.sum_seconds - earlier.sum_seconds).max(0.0),
        }
    }

    /// The bucket-wise sum of several histograms (several nodes).
    pub fn merge<'a>(histograms: impl IntoIterator<Item = &'a BucketHistogram>) -> Self {
        let mut by_bound: BTreeMap<u64, (f64, u64)> = BTreeMap::new();
        let mut sum_seconds = 0.0;
        for histogram in histograms {
            sum_seconds += histogram.sum_seconds;
            for (bound, count) in &histogram.buckets {
                by_bound.entry(bound.to_bits()).or_insert((*bound, 0)).1 += count;
            }
        }
        let mut buckets: Vec<(f64, u64)> = by_bound.into_values().collect();
        buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
        BucketHistogram {
            buckets,
            sum_seconds,
        }
    }

    /// The range holding quantile `q` (0 < q ≤ 1); `None` when empty.
    pub fn quantile(&self, q: f64) -> Option<QuantileRange> {
        let total = self.count();
        if total == 0 {
            return None;
        }
        let rank = (q * total as f64).ceil().max(1.0);
        let mut lower = 0.0;
        let mut below = 0u64;
        for (bound, cumulative) in &self.buckets {
            if *cumulative as f64 >= rank {
                let in_bucket = (cumulative - below) as f64;
                let estimate = if bound.is_infinite() {
                    lower
                } else {
                    lower + (bound - lower) * (rank - below as f64) / in_bucket
                };
                return Some(QuantileRange {
                    lower,
                    upper: *bound,
                    estimate,
                });
            }
            lower = *bound;
            below = *cumulative;
        }
        None
    }
}

/// Reads the histogram family `name`, summing its series over all label
/// sets (other than `le`); `None` when the text has no bucket of it.
pub fn parse_histogram(text: &str, name: &str) -> Option<BucketHistogram> {
    let bucket_name = format!("{name}_bucket");
    let sum_name = format!("{name}_sum");
    let mut by_bound: BTreeMap<u64, (f64, u64)> = BTreeMap::new();
    let mut sum_seconds = 0.0;
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let Some(sample) = parse_sample(line) else {
            continue;
        };
        if sample.name == bucket_name {
            let Some(bound) = sample.label("le").and_then(parse_bound) else {
                continue;
            };
            by_bound.entry(bound.to_bits()).or_insert((bound, 0)).1 += sample.value as u64;
        } else if sample.name == sum_name {
            sum_seconds += sample.value;
        }
    }
    if by_bound.is_empty() {
        return None;
    }
    let mut buckets: Vec<(f64, u64)> = by_bound.into_values().collect();
    buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
    Some(BucketHistogram {
        buckets,
        sum_seconds,
    })
}

fn parse_bound(text: &str) -> Option<f64> {
    match text {
        "+Inf" | "Inf" => Some(f64::INFINITY),
        other => other.parse().ok(),
    }
}

/// One sample line: `name{label="value",...} value [timestamp]`.
#[derive(Debug, PartialEq)]
struct Sample<'a> {
    name: &'a str,
    labels: Vec<(&'a str, String)>,
    value: f64,
}

impl Sample<'_> {
    fn label(&self, name: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|(label, _)| *label == name)
            .map(|(_, value)| value.as_str())
    }
}

fn parse_sample(line: &str) -> Option<Sample<'_>> {
    let name_end = line.find(|c: char| c == '{' || c.is_whitespace())?;
    let name = &line[..name_end];
    let mut rest = &line[name_end..];
    let mut labels = Vec::new();
    if let Some(inner) = rest.strip_prefix('{') {
        let (parsed, after) = parse_labels(inner)?;
        labels = parsed;
        rest = after;
    }
    let value = rest.split_whitespace().next()?;
    let value = match value {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        other => other.parse().ok()?,
    };
    Some(Sample {
        name,
        labels,
        value,
    })
}

/// Labels up to the closing brace, with `\\`, `\"` and `\n` escapes
/// undone; returns the text after the brace.
fn parse_labels(mut text: &str) -> Option<(Vec<(&str, String)>, &str)> {
    let mut labels = Vec::new();
    loop {
        text = text.trim_start_matches([',', ' ']);
        if let Some(after) = text.strip_prefix('}') {
            return Some((labels, after));
        }
        let equals = text.find('=')?;
        let name = text[..equals].trim();
        let quoted = text[equals + 1..].trim_start().strip_prefix('"')?;
        let mut value = String::new();
        let mut chars = quoted.char_indices();
        let end = loop {
            let (at, c) = chars.next()?;
            match c {
                '"' => break at,
                '\\' => match chars.next()?.1 {
                    'n' => value.push('\n'),
                    other => value.push(other),
                },
                other => value.push(other),
            }
        };
        labels.push((name, value));
        text = &quoted[end + 1..];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// As the gateway's registry renders it (crates/gateway/src/metrics.rs).
    const SCRAPE: &str = "\
# HELP tribunal_gateway_submissions_total POST /v1/commands answers, by verdict or error.
# TYPE tribunal_gateway_submissions_total counter
tribunal_gateway_submissions_total{result=\"accepted\"} 90
# HELP tribunal_gateway_submit_seconds POST /v1/commands latency, from request to answer.
# TYPE tribunal_gateway_submit_seconds histogram
tribunal_gateway_submit_seconds_bucket{le=\"0.001\"} 10
tribunal_gateway_submit_seconds_bucket{le=\"0.005\"} 60
tribunal_gateway_submit_seconds_bucket{le=\"0.01\"} 95
tribunal_gateway_submit_seconds_bucket{le=\"+Inf\"} 100
tribunal_gateway_submit_seconds_sum 0.5
tribunal_gateway_submit_seconds_count 100
";

    #[test]
    fn the_gateway_histogram_parses_and_other_families_are_ignored() {
        let histogram = parse_histogram(SCRAPE, GATEWAY_SUBMIT_SECONDS).expect("present");
        assert_eq!(
            histogram.buckets,
            vec![(0.001, 10), (0.005, 60), (0.01, 95), (f64::INFINITY, 100)]
        );
        assert_eq!(histogram.count(), 100);
        assert!((histogram.sum_seconds - 0.5).abs() < 1e-12);
        assert_eq!(parse_histogram(SCRAPE, "tribunal_other_seconds"), None);
    }

    #[test]
    fn quantiles_interpolate_inside_their_bucket() {
        let histogram = parse_histogram(SCRAPE, GATEWAY_SUBMIT_SECONDS).expect("present");
        let median = histogram.quantile(0.5).expect("not empty");
        assert_eq!((median.lower, median.upper), (0.001, 0.005));
        // Rank 50 is the 40th of 50 in (1 ms, 5 ms]: 1 + 4·40/50 = 4.2 ms.
        assert!((median.estimate - 0.0042).abs() < 1e-9, "{median:?}");
        let p99 = histogram.quantile(0.99).expect("not empty");
        assert_eq!((p99.lower, p99.upper), (0.01, f64::INFINITY));
        assert_eq!(p99.estimate, 0.01);
    }

    #[test]
    fn deltas_and_merges_work_bucket_by_bucket_across_label_sets() {
        let before = parse_histogram(SCRAPE, GATEWAY_SUBMIT_SECONDS).expect("present");
        let labelled = "\
tribunal_gateway_submit_seconds_bucket{node=\"a\",le=\"0.001\"} 20
tribunal_gateway_submit_seconds_bucket{node=\"a\",le=\"0.005\"} 70
tribunal_gateway_submit_seconds_bucket{node=\"a\",le=\"0.01\"} 95
tribunal_gateway_submit_seconds_bucket{node=\"a\",le=\"+Inf\"} 100
tribunal_gateway_submit_seconds_bucket{node=\"b \\\"x\\\"\",le=\"0.001\"} 1
tribunal_gateway_submit_seconds_bucket{node=\"b \\\"x\\\"\",le=\"0.005\"} 1
tribunal_gateway_submit_seconds_bucket{node=\"b \\\"x\\\"\",le=\"0.01\"} 1
tribunal_gateway_submit_seconds_bucket{node=\"b \\\"x\\\"\",le=\"+Inf\"} 2
tribunal_gateway_submit_seconds_sum{node=\"a\"} 0.75
";
        let after = parse_histogram(labelled, GATEWAY_SUBMIT_SECONDS).expect("present");
        assert_eq!(
            after.buckets,
            vec![(0.001, 21), (0.005, 71), (0.01, 96), (f64::INFINITY, 102)]
        );
        let delta = after.since(&before);
        assert_eq!(
            delta.buckets,
            vec![(0.001, 11), (0.005, 11), (0.01, 1), (f64::INFINITY, 2)]
        );
        assert!((delta.sum_seconds - 0.25).abs() < 1e-12);
        let merged = BucketHistogram::merge([&delta, &delta]);
        assert_eq!(merged.count(), 4);
        assert_eq!(BucketHistogram::merge([]).quantile(0.5), None);
    }

    #[test]
    fn label_values_unescape() {
        let sample = parse_sample(r#"m{a="x\"y\\z\n",b="2"} 3.5 1700000000"#).expect("a sample");
        assert_eq!(sample.name, "m");
        assert_eq!(sample.label("a"), Some("x\"y\\z\n"));
        assert_eq!(sample.label("b"), Some("2"));
        assert_eq!(sample.value, 3.5);
        assert_eq!(parse_sample("plain 7").map(|s| s.value), Some(7.0));
    }
}
