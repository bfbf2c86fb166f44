//! `report.html`: one self-contained page (inline CSS and SVG, no script,
//! nothing fetched) with the summary tables and three charts: latency
//! percentiles over time, throughput over time, and the latency
//! distribution (percentile spectrum, client-side beside server-side).
//!
//! URLs in any text are shown without their scheme (host:port), so the page
//! holds no URL at all: nothing a browser could fetch.

use std::fmt::Write as _;

use crate::measure::Measurements;
use crate::report::{LatencySummary, RangeMs, Summary};

pub fn render(summary: &Summary, measurements: &Measurements) -> String {
    let mut page = String::with_capacity(64 * 1024);
    page.push_str(HEAD);
    let _ = write!(
        page,
        "<h1>Tribunal load test <code>{}</code>: {}</h1>",
        escape(&summary.run_tag),
        match summary.verdict {
            crate::report::Verdict::Pass => "<span class=pass>PASS</span>",
            crate::report::Verdict::ThresholdFailed => "<span class=fail>THRESHOLD FAILED</span>",
            crate::report::Verdict::CorrectnessFailed =>
                "<span class=fail>CORRECTNESS FAILED</span>",
        }
    );
    overview(&mut page, summary);
    for warning in &summary.warnings {
        let _ = write!(page, "<p class=warn>warning: {}</p>", escape(warning));
    }
    page.push_str(&latency_over_time(measurements));
    page.push_str(&throughput_over_time(measurements));
    page.push_str(&distribution(summary, measurements));
    details(&mut page, summary);
    page.push_str("</body></html>\n");
    page
}

const HEAD: &str = "<!DOCTYPE html><html lang=en><head><meta charset=utf-8>\
<title>Tribunal load test</title><style>\
body{font-family:sans-serif;margin:24px;color:#222;max-width:1160px}\
table{border-collapse:collapse;margin:8px 0 16px}td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}\
th{background:#f3f3f3}td.l,th.l{text-align:left}.pass{color:#1a7f37}.fail{color:#c0392b}\
.warn{background:#fff4d6;border:1px solid #e0b84c;padding:6px}svg{background:#fff;border:1px solid #ddd;margin:8px 0}\
code{background:#f3f3f3;padding:0 3px}</style></head><body>";

fn overview(page: &mut String, summary: &Summary) {
    let c = &summary.config;
    let targets: Vec<String> = summary.targets.iter().map(|url| escape(url)).collect();
    let _ = write!(
        page,
        "<p>{} targets ({}); {} rps{} for {} s after {} s warmup; {} connections; \
         {} warehouses × {} skus, skew {}, mix {}, duplicates {}; seed {}.</p>",
        targets.len(),
        targets.join(", "),
        c.rps,
        c.ramp_from_rps
            .map(|from| format!(" (ramp from {from})"))
            .unwrap_or_default(),
        c.duration_s,
        c.warmup_s,
        c.connections,
        c.warehouses,
        c.skus,
        escape(&c.skew),
        escape(&c.mix),
        c.duplicate_rate,
        c.seed
    );
    let r = &summary.rates;
    let n = &summary.counts;
    let _ = write!(
        page,
        "<table><tr><th>offered/s</th><th>achieved/s</th><th>achieved</th><th>offered</th>\
         <th>ok</th><th>accepted</th><th>rejected</th><th>errors</th><th>dropped</th></tr>\
         <tr><td>{:.0}</td><td>{:.0}</td><td>{:.2}%</td><td>{}</td><td>{}</td><td>{}</td>\
         <td>{}</td><td>{}</td><td>{}</td></tr></table>",
        r.offered_rps,
        r.achieved_rps,
        r.achieved_percent,
        n.offered,
        n.ok,
        n.accepted,
        n.rejected,
        n.errors,
        n.dropped
    );
    page.push_str(
        "<table><tr><th class=l>latency (ms)</th><th>p50</th><th>p90</th><th>p99</th>\
         <th>p99.9</th><th>p99.99</th><th>max</th><th>mean</th><th>count</th></tr>",
    );
    let mut row = |name: &str, l: &LatencySummary| {
        let _ = write!(
            page,
            "<tr><td class=l>{name}</td><td>{:.2}</td><td>{:.2}</td><td>{:.2}</td><td>{:.2}</td>\
             <td>{:.2}</td><td>{:.2}</td><td>{:.2}</td><td>{}</td></tr>",
            l.p50, l.p90, l.p99, l.p99_9, l.p99_99, l.max, l.mean, l.count
        );
    };
    row(
        "client, from intended send (corrected)",
        &summary.latency_ms,
    );
    row(
        "client, from actual send (uncorrected)",
        &summary.service_time_ms,
    );
    row("start lag (actual − intended)", &summary.start_lag_ms);
    if let Some(baseline) = &summary.baseline {
        row("baseline (HTTP → Kafka → HTTP echo)", &baseline.latency_ms);
    }
    if let Some(server) = &summary.server_side {
        let cell = |range: &Option<RangeMs>| match range {
            Some(RangeMs {
                lower,
                upper: Some(upper),
                estimate,
            }) => format!("{estimate:.2} <small>({lower}–{upper}]</small>"),
            Some(RangeMs { lower, .. }) => format!("&gt; {lower}"),
            None => "–".to_owned(),
        };
        let _ = write!(
            page,
            "<tr><td class=l>server-side ({}, buckets)</td><td>{}</td><td>{}</td><td>{}</td>\
             <td>{}</td><td>–</td><td>–</td><td>–</td><td>{}</td></tr>",
            escape(&server.metric),
            cell(&server.p50),
            cell(&server.p90),
            cell(&server.p99),
            cell(&server.p99_9),
            server.count
        );
    }
    page.push_str("</table>");
    if let Some(baseline) = &summary.baseline {
        let ratio = |r: Option<f64>| r.map_or("–".to_owned(), |r| format!("×{r:.2}"));
        let _ = write!(
            page,
            "<p>Cost of agreement and durability (full path / bare HTTP → Kafka → HTTP echo at the \
             same rate): p50 {}, p99 {}; the baseline achieved {:.0}/s with {} errors.</p>",
            ratio(baseline.p50_ratio),
            ratio(baseline.p99_ratio),
            baseline.achieved_rps,
            baseline.errors
        );
    }
}

fn details(page: &mut String, summary: &Summary) {
    page.push_str("<h2>Thresholds</h2><table><tr><th class=l>threshold</th><th>observed</th><th>result</th></tr>");
    for result in &summary.thresholds {
        let _ = write!(
            page,
            "<tr><td class=l>{}</td><td>{}</td><td>{}</td></tr>",
            escape(&result.threshold),
            escape(&result.observed),
            pass_fail(result.passed)
        );
    }
    page.push_str("</table>");
    if !summary.errors.is_empty() {
        page.push_str("<h2>Errors</h2><table><tr><th class=l>kind</th><th>count</th><th class=l>example</th></tr>");
        for (kind, entry) in &summary.errors {
            let _ = write!(
                page,
                "<tr><td class=l>{}</td><td>{}</td><td class=l><code>{}</code></td></tr>",
                escape(kind),
                entry.count,
                escape(&entry.example)
            );
        }
        page.push_str("</table>");
    }
    if let Some(correctness) = &summary.correctness {
        page.push_str("<h2>Correctness after load</h2><table><tr><th class=l>check</th><th class=l>covered</th><th>result</th></tr>");
        for check in &correctness.checks {
            let _ = write!(
                page,
                "<tr><td class=l>{}</td><td class=l>{}</td><td>{}</td></tr>",
                escape(&check.name),
                escape(&check.detail),
                pass_fail(check.passed)
            );
        }
        page.push_str("</table>");
        for violation in &correctness.violations {
            let _ = write!(page, "<p class=warn>{}</p>", escape(violation));
        }
    }
}

fn pass_fail(passed: bool) -> &'static str {
    if passed {
        "<span class=pass>pass</span>"
    } else {
        "<span class=fail>FAIL</span>"
    }
}

/// HTML-escaped, with URL schemes dropped.
fn escape(text: &str) -> String {
    let text = text.replace("http://", "").replace("https://", "");
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            other => out.push(other),
        }
    }
    out
}

const COLORS: [&str; 6] = [
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#7f7f7f",
];

/// The smallest latency a log axis shows (1 µs, in ms).
const MIN_LATENCY_MS: f64 = 0.001;

fn latency_over_time(measurements: &Measurements) -> String {
    let quantiles = [("p50", 0.5), ("p90", 0.9), ("p99", 0.99), ("p99.9", 0.999)];
    let seconds: Vec<_> = measurements
        .seconds
        .iter()
        .filter(|s| s.completed > 0)
        .collect();
    let mut series: Vec<Series> = quantiles
        .iter()
        .enumerate()
        .map(|(at, (name, q))| Series {
            name: (*name).to_owned(),
            color: COLORS[at],
            style: Style::Line,
            points: seconds
                .iter()
                .map(|s| {
                    (
                        f64::from(s.second) + 0.5,
                        s.latency.value_at_quantile(*q) as f64 / 1_000.0,
                    )
                })
                .collect(),
        })
        .collect();
    series.push(Series {
        name: "max".to_owned(),
        color: COLORS[5],
        style: Style::Dashed,
        points: seconds
            .iter()
            .map(|s| (f64::from(s.second) + 0.5, s.latency.max() as f64 / 1_000.0))
            .collect(),
    });
    Chart {
        title: "Latency over time (from intended send time; each second's completions)",
        x: time_axis(measurements),
        y: log_axis("latency (ms)", &series),
        shade: warmup_span(measurements),
        series,
    }
    .render()
}

fn throughput_over_time(measurements: &Measurements) -> String {
    let per_second =
        |name: &str, color, style, value: fn(&crate::measure::SecondStats) -> u64| Series {
            name: name.to_owned(),
            color,
            style,
            points: measurements
                .seconds
                .iter()
                .map(|s| (f64::from(s.second) + 0.5, value(s) as f64))
                .collect(),
        };
    let series = vec![
        per_second("offered", COLORS[5], Style::Dashed, |s| s.offered),
        per_second("achieved (agreed answers)", COLORS[0], Style::Line, |s| {
            s.ok
        }),
        per_second("errors", COLORS[3], Style::Line, |s| s.errors),
        per_second("dropped", COLORS[1], Style::Line, |s| s.dropped),
    ];
    let top = series
        .iter()
        .flat_map(|s| s.points.iter().map(|p| p.1))
        .fold(1.0, f64::max);
    Chart {
        title: "Throughput over time (requests per second)",
        x: time_axis(measurements),
        y: linear_axis("requests/s", top * 1.05),
        shade: warmup_span(measurements),
        series,
    }
    .render()
}

/// x = log10(1 / (1 − q)): 0 is the median's left, 2 is p99, 4 is p99.99.
fn nines(q: f64) -> f64 {
    (1.0 / (1.0 - q).max(1e-6)).log10()
}

fn distribution(summary: &Summary, measurements: &Measurements) -> String {
    const STEPS: usize = 250;
    let spectrum = |histogram: &hdrhistogram::Histogram<u64>| -> Vec<(f64, f64)> {
        if histogram.is_empty() {
            return Vec::new();
        }
        (0..=STEPS)
            .map(|step| {
                let x = 5.0 * step as f64 / STEPS as f64;
                let q = 1.0 - 10f64.powf(-x);
                (x, histogram.value_at_quantile(q) as f64 / 1_000.0)
            })
            .collect()
    };
    let mut series = vec![
        Series {
            name: "client, from intended send".to_owned(),
            color: COLORS[0],
            style: Style::Line,
            points: spectrum(&measurements.latency),
        },
        Series {
            name: "client, from actual send".to_owned(),
            color: COLORS[1],
            style: Style::Dashed,
            points: spectrum(&measurements.service_time),
        },
    ];
    if let Some(server) = &summary.server_side {
        let total = server.buckets.count();
        if total > 0 {
            series.push(Series {
                name: "server-side bucket bounds".to_owned(),
                color: COLORS[2],
                style: Style::Markers,
                points: server
                    .buckets
                    .buckets
                    .iter()
                    .filter(|(bound, count)| bound.is_finite() && *count > 0)
                    .map(|(bound, count)| (nines(*count as f64 / total as f64), bound * 1_000.0))
                    .filter(|(x, _)| *x <= 5.0)
                    .collect(),
            });
        }
    }
    let x = Axis {
        label: "percentile".to_owned(),
        log: false,
        min: 0.0,
        max: 5.0,
        ticks: ["0%", "90%", "99%", "99.9%", "99.99%", "99.999%"]
            .iter()
            .enumerate()
            .map(|(at, label)| (at as f64, (*label).to_owned()))
            .collect(),
    };
    Chart {
        title: "Latency distribution (percentile spectrum)",
        y: log_axis("latency (ms)", &series),
        x,
        shade: None,
        series,
    }
    .render()
}

fn time_axis(measurements: &Measurements) -> Axis {
    let end = measurements.seconds.len().max(1) as f64;
    let mut axis = linear_axis("seconds since start", end);
    axis.label = "seconds since start".to_owned();
    axis
}

fn warmup_span(measurements: &Measurements) -> Option<(f64, f64)> {
    let warmup = measurements.seconds.iter().filter(|s| !s.measured).count();
    (warmup > 0).then_some((0.0, warmup as f64))
}

fn linear_axis(label: &str, max: f64) -> Axis {
    let raw = (max / 5.0).max(f64::MIN_POSITIVE);
    let magnitude = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * magnitude)
        .find(|s| *s >= raw)
        .unwrap_or(10.0 * magnitude);
    let top = (max / step).ceil() * step;
    let ticks = (0..=((top / step).round() as usize))
        .map(|k| {
            let value = k as f64 * step;
            (value, trim_number(value))
        })
        .collect();
    Axis {
        label: label.to_owned(),
        log: false,
        min: 0.0,
        max: top,
        ticks,
    }
}

fn log_axis(label: &str, series: &[Series]) -> Axis {
    let values = series.iter().flat_map(|s| s.points.iter().map(|p| p.1));
    let (low, high) = values.fold((f64::INFINITY, 0.0f64), |(lo, hi), v| {
        (lo.min(v.max(MIN_LATENCY_MS)), hi.max(v))
    });
    let (low, high) = if low.is_finite() {
        (low, high.max(low))
    } else {
        (0.1, 100.0)
    };
    let from = low.log10().floor() as i32;
    let to = (high.log10().ceil() as i32).max(from + 1);
    Axis {
        label: label.to_owned(),
        log: true,
        min: 10f64.powi(from),
        max: 10f64.powi(to),
        ticks: (from..=to)
            .map(|power| {
                let value = 10f64.powi(power);
                (value, trim_number(value))
            })
            .collect(),
    }
}

fn trim_number(value: f64) -> String {
    if value >= 1.0 {
        format!("{value:.0}")
    } else {
        let text = format!("{value:.3}");
        text.trim_end_matches('0').trim_end_matches('.').to_owned()
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Style {
    Line,
    Dashed,
    Markers,
}

#[derive(Debug)]
struct Series {
    name: String,
    color: &'static str,
    style: Style,
    points: Vec<(f64, f64)>,
}

#[derive(Debug)]
struct Axis {
    label: String,
    log: bool,
    min: f64,
    max: f64,
    ticks: Vec<(f64, String)>,
}

impl Axis {
    /// Where `value` falls, 0.0 at min and 1.0 at max (clamped).
    fn fraction(&self, value: f64) -> f64 {
        let (value, min, max) = if self.log {
            (
                value.max(self.min).log10(),
                self.min.log10(),
                self.max.log10(),
            )
        } else {
            (value, self.min, self.max)
        };
        if max <= min {
            return 0.0;
        }
        ((value - min) / (max - min)).clamp(0.0, 1.0)
    }
}

#[derive(Debug)]
struct Chart {
    title: &'static str,
    x: Axis,
    y: Axis,
    /// A shaded x range (the warmup).
    shade: Option<(f64, f64)>,
    series: Vec<Series>,
}

const WIDTH: f64 = 1100.0;
const HEIGHT: f64 = 340.0;
const LEFT: f64 = 70.0;
const RIGHT: f64 = 20.0;
const TOP: f64 = 34.0;
const BOTTOM: f64 = 48.0;

impl Chart {
    fn px(&self, x: f64) -> f64 {
        LEFT + self.x.fraction(x) * (WIDTH - LEFT - RIGHT)
    }

    fn py(&self, y: f64) -> f64 {
        HEIGHT - BOTTOM - self.y.fraction(y) * (HEIGHT - TOP - BOTTOM)
    }

    fn render(&self) -> String {
        let mut svg = String::with_capacity(16 * 1024);
        let _ = write!(
            svg,
            "<svg width={WIDTH} height={HEIGHT} viewBox=\"0 0 {WIDTH} {HEIGHT}\" role=img>\
             <text x={LEFT} y=20 font-size=15 font-weight=bold>{}</text>",
            escape(self.title)
        );
        if let Some((from, to)) = self.shade {
            let (x0, x1) = (self.px(from), self.px(to));
            let _ = write!(
                svg,
                "<rect x={x0:.1} y={TOP} width={:.1} height={:.1} fill=#eee />\
                 <text x={:.1} y={:.1} font-size=11 fill=#888>warmup</text>",
                x1 - x0,
                HEIGHT - TOP - BOTTOM,
                x0 + 4.0,
                TOP + 14.0
            );
        }
        for (value, label) in &self.y.ticks {
            let y = self.py(*value);
            let _ = write!(
                svg,
                "<line x1={LEFT} x2={:.1} y1={y:.1} y2={y:.1} stroke=#e5e5e5 />\
                 <text x={:.1} y={:.1} font-size=11 text-anchor=end>{}</text>",
                WIDTH - RIGHT,
                LEFT - 6.0,
                y + 4.0,
                escape(label)
            );
        }
        for (value, label) in &self.x.ticks {
            let x = self.px(*value);
            let _ = write!(
                svg,
                "<line x1={x:.1} x2={x:.1} y1={TOP} y2={:.1} stroke=#f0f0f0 />\
                 <text x={x:.1} y={:.1} font-size=11 text-anchor=middle>{}</text>",
                HEIGHT - BOTTOM,
                HEIGHT - BOTTOM + 16.0,
                escape(label)
            );
        }
        let _ = write!(
            svg,
            "<rect x={LEFT} y={TOP} width={:.1} height={:.1} fill=none stroke=#999 />\
             <text x={:.1} y={:.1} font-size=12 text-anchor=middle>{}</text>\
             <text x=14 y={:.1} font-size=12 text-anchor=middle transform=\"rotate(-90 14 {:.1})\">{}</text>",
            WIDTH - LEFT - RIGHT,
            HEIGHT - TOP - BOTTOM,
            (LEFT + WIDTH - RIGHT) / 2.0,
            HEIGHT - 8.0,
            escape(&self.x.label),
            (TOP + HEIGHT - BOTTOM) / 2.0,
            (TOP + HEIGHT - BOTTOM) / 2.0,
            escape(&self.y.label)
        );
        for series in &self.series {
            self.render_series(&mut svg, series);
        }
        for (at, series) in self.series.iter().enumerate() {
            let y = TOP + 14.0 + 16.0 * at as f64;
            let x = WIDTH - RIGHT - 230.0;
            let _ = write!(
                svg,
                "<line x1={x:.1} x2={:.1} y1={:.1} y2={:.1} stroke={} stroke-width=2{} />\
                 <text x={:.1} y={y:.1} font-size=11>{}</text>",
                x + 18.0,
                y - 4.0,
                y - 4.0,
                series.color,
                if series.style == Style::Dashed {
                    " stroke-dasharray=\"5 3\""
                } else {
                    ""
                },
                x + 24.0,
                escape(&series.name)
            );
        }
        svg.push_str("</svg>");
        svg
    }

    fn render_series(&self, svg: &mut String, series: &Series) {
        if series.points.is_empty() {
            return;
        }
        if series.style == Style::Markers {
            for (x, y) in &series.points {
                let _ = write!(
                    svg,
                    "<circle cx={:.1} cy={:.1} r=4 fill={} />",
                    self.px(*x),
                    self.py(*y),
                    series.color
                );
            }
            return;
        }
        let mut path = String::with_capacity(series.points.len() * 14);
        for (at, (x, y)) in series.points.iter().enumerate() {
            let _ = write!(
                path,
                "{}{:.1},{:.1}",
                if at == 0 { "M" } else { " L" },
                self.px(*x),
                self.py(*y)
            );
        }
        let _ = write!(
            svg,
            "<path d=\"{path}\" fill=none stroke={} stroke-width=1.6{} />",
            series.color,
            if series.style == Style::Dashed {
                " stroke-dasharray=\"5 3\""
            } else {
                ""
            }
        );
    }
}
