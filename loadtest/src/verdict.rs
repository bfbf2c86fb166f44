//! Pass/fail thresholds and the run's verdict.
//!
//! A threshold is `<metric><op><value>`: `p99<100ms`, `p99.9<=250ms`,
//! `max<2s`, `errors=0`, `dropped<=10`, `achieved>=99%`. Metrics: `pNN`
//! (latency quantiles, from the intended send time), `max`, `errors`,
//! `dropped` (counts in the measured part) and `achieved` (percent of the
//! offered rate). A user threshold replaces the default on the same metric;
//! the other defaults stay.

use std::fmt;
use std::str::FromStr;

use serde::Serialize;

use crate::measure::format_micros;

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Metric {
    /// A latency percentile in (0, 100), as written (`p99.9` is 99.9).
    Percentile(f64),
    MaxLatency,
    Errors,
    Dropped,
    AchievedPercent,
}

impl Metric {
    fn is_latency(self) -> bool {
        matches!(self, Self::Percentile(_) | Self::MaxLatency)
    }
}

impl fmt::Display for Metric {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Percentile(p) => write!(f, "p{p}"),
            Self::MaxLatency => f.write_str("max"),
            Self::Errors => f.write_str("errors"),
            Self::Dropped => f.write_str("dropped"),
            Self::AchievedPercent => f.write_str("achieved"),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Comparison {
    Less,
    LessOrEqual,
    Equal,
    GreaterOrEqual,
    Greater,
}

impl Comparison {
    fn symbol(self) -> &'static str {
        match self {
            Self::Less => "<",
            Self::LessOrEqual => "<=",
            Self::Equal => "=",
            Self::GreaterOrEqual => ">=",
            Self::Greater => ">",
        }
    }

    fn holds(self, observed: f64, limit: f64) -> bool {
        match self {
            Self::Less => observed < limit,
            Self::LessOrEqual => observed <= limit,
            Self::Equal => observed == limit,
            Self::GreaterOrEqual => observed >= limit,
            Self::Greater => observed > limit,
        }
    }
}

/// One threshold; latency limits are in microseconds, achieved in percent,
/// counts as counts.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Threshold {
    pub metric: Metric,
    pub comparison: Comparison,
    pub limit: f64,
}

impl Threshold {
    /// p99 < 100 ms, zero errors, achieved ≥ 99 %.
    pub fn defaults() -> Vec<Threshold> {
        ["p99<100ms", "errors=0", "achieved>=99%"]
            .iter()
            .map(|text| text.parse().expect("the defaults parse"))
            .collect()
    }

    /// The defaults, each replaced by a user threshold on its metric, then
    /// the user's other thresholds.
    pub fn with_defaults(user: &[Threshold]) -> Vec<Threshold> {
        let mut all: Vec<Threshold> = Self::defaults()
            .into_iter()
            .filter(|default| user.iter().all(|u| u.metric != default.metric))
            .collect();
        all.extend_from_slice(user);
        all
    }

    fn format_value(&self, value: f64) -> String {
        match self.metric {
            Metric::Percentile(_) | Metric::MaxLatency => format_micros(value as u64),
            Metric::AchievedPercent => format!("{value:.2}%"),
            Metric::Errors | Metric::Dropped => format!("{value}"),
        }
    }
}

impl fmt::Display for Threshold {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}{}{}",
            self.metric,
            self.comparison.symbol(),
            self.format_value(self.limit).replace(' ', "")
        )
    }
}

impl FromStr for Threshold {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let text = text.trim();
        let at = text
            .find(['<', '>', '='])
            .ok_or_else(|| format!("{text:?}: expected <metric><op><value>, e.g. p99<100ms"))?;
        let (metric, rest) = text.split_at(at);
        let (comparison, value) = [
            ("<=", Comparison::LessOrEqual),
            (">=", Comparison::GreaterOrEqual),
            ("<", Comparison::Less),
            (">", Comparison::Greater),
            ("==", Comparison::Equal),
            ("=", Comparison::Equal),
        ]
        .iter()
        .find_map(|(symbol, comparison)| rest.strip_prefix(symbol).map(|v| (*comparison, v)))
        .expect("rest starts with one of the operators found");
        let metric = parse_metric(metric.trim()).map_err(|e| format!("{text:?}: {e}"))?;
        let value = value.trim();
        let limit = if metric.is_latency() {
            parse_latency_micros(value)
        } else if metric == Metric::AchievedPercent {
            parse_percent(value)
        } else {
            value
                .parse::<u64>()
                .map(|count| count as f64)
                .map_err(|_| format!("{value:?} is not a whole count"))
        }
        .map_err(|e| format!("{text:?}: {e}"))?;
        Ok(Self {
            metric,
            comparison,
            limit,
        })
    }
}

fn parse_metric(name: &str) -> Result<Metric, String> {
    match name {
        "max" => Ok(Metric::MaxLatency),
        "errors" => Ok(Metric::Errors),
        "dropped" => Ok(Metric::Dropped),
        "achieved" => Ok(Metric::AchievedPercent),
        other => {
            let percentile = other
                .strip_prefix('p')
                .and_then(|p| p.parse::<f64>().ok())
                .filter(|p| *p > 0.0 && *p < 100.0)
                .ok_or_else(|| {
                    format!("unknown metric {other:?} (pNN, max, errors, dropped, achieved)")
                })?;
            Ok(Metric::Percentile(percentile))
        }
    }
}

fn parse_latency_micros(value: &str) -> Result<f64, String> {
    let units = [
        ("us", 1.0),
        ("µs", 1.0),
        ("ms", 1_000.0),
        ("s", 1_000_000.0),
    ];
    let (number, scale) = units
        .iter()
        .find_map(|(unit, scale)| value.strip_suffix(unit).map(|n| (n, *scale)))
        .ok_or_else(|| format!("{value:?} needs a unit: us, ms or s"))?;
    let number: f64 = number
        .trim()
        .parse()
        .map_err(|_| format!("{value:?} is not a duration"))?;
    if !number.is_finite() || number < 0.0 {
        return Err(format!("{value:?} is not a duration"));
    }
    Ok(number * scale)
}

fn parse_percent(value: &str) -> Result<f64, String> {
    value
        .strip_suffix('%')
        .and_then(|n| n.trim().parse::<f64>().ok())
        .filter(|p| p.is_finite())
        .ok_or_else(|| format!("{value:?} is not a percentage like 99%"))
}

/// What the thresholds are checked against (measured part of the run).
#[derive(Clone, Debug, PartialEq)]
pub struct Observed {
    pub max_latency: Option<u64>,
    pub errors: u64,
    pub dropped: u64,
    pub achieved_percent: f64,
}

/// One threshold's result, for printing and for summary.json.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ThresholdResult {
    pub threshold: String,
    pub observed: String,
    pub passed: bool,
}

/// Checks each threshold; `latency_at(q)` gives the latency (µs) at quantile
/// `q` in (0, 1). A latency threshold with nothing measured fails: a run that
/// answered nothing proves nothing.
pub fn evaluate(
    thresholds: &[Threshold],
    latency_at: impl Fn(f64) -> Option<u64>,
    observed: &Observed,
) -> Vec<ThresholdResult> {
    thresholds
        .iter()
        .map(|threshold| {
            let value = match threshold.metric {
                Metric::Percentile(p) => latency_at(p / 100.0).map(|v| v as f64),
                Metric::MaxLatency => observed.max_latency.map(|v| v as f64),
                Metric::Errors => Some(observed.errors as f64),
                Metric::Dropped => Some(observed.dropped as f64),
                Metric::AchievedPercent => Some(observed.achieved_percent),
            };
            let (passed, shown) = match value {
                Some(value) => (
                    threshold.comparison.holds(value, threshold.limit),
                    threshold.format_value(value),
                ),
                None => (false, "nothing measured".to_owned()),
            };
            ThresholdResult {
                threshold: threshold.to_string(),
                observed: shown,
                passed,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Threshold {
        text.parse().expect("valid threshold")
    }

    #[test]
    fn thresholds_parse_with_units_and_operators() {
        assert_eq!(
            parse("p99<100ms"),
            Threshold {
                metric: Metric::Percentile(99.0),
                comparison: Comparison::Less,
                limit: 100_000.0
            }
        );
        let nines = parse("p99.9 <= 1.5s");
        assert_eq!(nines.metric, Metric::Percentile(99.9));
        assert!(nines.to_string().starts_with("p99.9<="), "{nines}");
        assert_eq!(nines.comparison, Comparison::LessOrEqual);
        assert_eq!(nines.limit, 1_500_000.0);
        assert_eq!(parse("max<250us").limit, 250.0);
        assert_eq!(parse("errors=0").comparison, Comparison::Equal);
        assert_eq!(parse("dropped<=10").limit, 10.0);
        assert_eq!(parse("achieved>=99%").limit, 99.0);
        assert_eq!(parse("p99<100ms").to_string(), "p99<100.00ms");
        for bad in [
            "p99",
            "p99<100",
            "p100<1ms",
            "q99<1ms",
            "errors=x",
            "achieved>=99",
            "p50<-1ms",
        ] {
            assert!(bad.parse::<Threshold>().is_err(), "{bad}");
        }
    }

    #[test]
    fn user_thresholds_replace_the_default_on_their_metric_only() {
        let user = [parse("p99<50ms"), parse("dropped=0")];
        let all = Threshold::with_defaults(&user);
        let shown: Vec<String> = all.iter().map(Threshold::to_string).collect();
        assert_eq!(
            shown,
            ["errors=0", "achieved>=99.00%", "p99<50.00ms", "dropped=0"]
        );
    }

    #[test]
    fn the_verdict_passes_and_fails_on_the_observed_values() {
        let observed = Observed {
            max_latency: Some(300_000),
            errors: 0,
            dropped: 3,
            achieved_percent: 99.5,
        };
        let latency_at = |q: f64| Some(if q >= 0.99 { 120_000 } else { 2_000 });
        let thresholds = [
            parse("p50<10ms"),
            parse("p99<100ms"),
            parse("errors=0"),
            parse("dropped=0"),
            parse("achieved>=99%"),
            parse("max<1s"),
        ];
        let passed: Vec<bool> = evaluate(&thresholds, latency_at, &observed)
            .iter()
            .map(|r| r.passed)
            .collect();
        assert_eq!(passed, [true, false, true, false, true, true]);
        let nothing = evaluate(&[parse("p99<100ms")], |_| None, &observed);
        assert!(!nothing[0].passed);
        assert_eq!(nothing[0].observed, "nothing measured");
    }
}
