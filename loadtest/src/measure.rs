//! Measurement: turns the driver's outcomes into HDR histograms, per-second
//! statistics, error counts, the history file and the record of answers the
//! correctness pass checks. Runs on its own thread, so its work (and the
//! history file's writes) never delays dispatch on the load runtime.
//!
//! Attribution: the totals and the latency histogram cover requests
//! *intended* in the measured part (after the warmup); the per-second rows
//! count completions in the second they completed (dropped requests in the
//! second they were due), whatever the phase.

use std::collections::BTreeMap;
use std::hash::{DefaultHasher, Hash as _, Hasher as _};
use std::io;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use protocol::position::CommandPosition;
use serde::Deserialize;
use tokio::sync::mpsc;

use crate::client::{Answer, RequestErrorKind};
use crate::driver::{Outcome, OutcomeResult};
use crate::history::{Completion, HistoryRecord, HistoryWriter, RunClock, duration_micros};
use crate::schedule::LoadPlan;
use crate::workload::Command;

/// Latencies are kept in microseconds, up to an hour, to 3 significant digits.
pub fn latency_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("static bounds are valid")
}

/// One second of the run (second 0 starts at the run's origin, warmup included).
#[derive(Clone, Debug)]
pub struct SecondStats {
    pub second: u32,
    pub measured: bool,
    /// Requests the schedule intends in this second.
    pub offered: u64,
    /// Requests that completed in this second (answered, failed, timed out).
    pub completed: u64,
    /// Of those, answered with an agreed outcome.
    pub ok: u64,
    pub errors: u64,
    /// Requests due in this second that were dropped.
    pub dropped: u64,
    /// Latency (from intended time) of this second's completions.
    pub latency: Histogram<u64>,
}

/// An error's count and the first detail seen, for the summary.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ErrorTally {
    pub count: u64,
    pub example: String,
}

/// A submission answered with an agreed outcome.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AnsweredSubmission {
    /// Place in the arrival schedule (so also age: lower is older).
    pub index: u64,
    pub key: String,
    pub command: Command,
    pub position: CommandPosition,
    pub accepted: bool,
    /// Hash of the answer's bytes (identical answers, identical hashes).
    pub body_digest: u64,
}

/// A submission that was sent but got no agreed outcome: it may or may not
/// have been applied, so the correctness pass looks it up.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnansweredSubmission {
    /// Place in the arrival schedule.
    pub index: u64,
    pub key: String,
    pub command: Command,
}

/// Everything the recorder learnt.
#[derive(Debug)]
pub struct Measurements {
    /// Measured part: latency from intended send time, every started request.
    pub latency: Histogram<u64>,
    /// Measured part: from actual send to completion (what a closed-loop
    /// tool would report).
    pub service_time: Histogram<u64>,
    /// Measured part: how late requests were started.
    pub start_lag: Histogram<u64>,
    /// Warmup part: latency from intended send time.
    pub warmup_latency: Histogram<u64>,
    pub seconds: Vec<SecondStats>,
    /// Measured part: scheduled requests.
    pub offered: u64,
    pub started: u64,
    pub ok: u64,
    pub accepted: u64,
    pub rejected: u64,
    pub dropped: u64,
    pub errors: BTreeMap<String, ErrorTally>,
    /// Offsets from the origin of the first and the last measured ok answer.
    pub ok_span: Option<(Duration, Duration)>,
    /// All phases.
    pub answered: Vec<AnsweredSubmission>,
    pub unanswered: Vec<UnansweredSubmission>,
    /// History records written, or why the history is incomplete.
    pub history: Option<Result<u64, String>>,
}

impl Measurements {
    fn new(plan: &LoadPlan) -> Self {
        Self {
            latency: latency_histogram(),
            service_time: latency_histogram(),
            start_lag: latency_histogram(),
            warmup_latency: latency_histogram(),
            seconds: Vec::new(),
            offered: plan.measured_requests(),
            started: 0,
            ok: 0,
            accepted: 0,
            rejected: 0,
            dropped: 0,
            errors: BTreeMap::new(),
            ok_span: None,
            // Sized for the whole schedule up front: doubling a vector of
            // hundreds of thousands of answers stalls the recorder mid-run.
            answered: Vec::with_capacity(
                usize::try_from(plan.schedule.total_requests()).expect("a 64-bit usize"),
            ),
            unanswered: Vec::new(),
            history: None,
        }
    }

    pub fn error_count(&self) -> u64 {
        self.errors.values().map(|tally| tally.count).sum()
    }

    /// Measured ok answers per second: over the span from the first to the
    /// last of them, or over the measured duration if that is longer. A
    /// system that keeps pace answers within the duration shifted by its
    /// latency; one that falls behind stretches the span.
    pub fn achieved_rps(&self, plan: &LoadPlan) -> f64 {
        let span = self
            .ok_span
            .map_or(Duration::ZERO, |(first, last)| last.saturating_sub(first))
            .max(plan.measured_duration());
        if span.is_zero() {
            return 0.0;
        }
        self.ok as f64 / span.as_secs_f64()
    }

    pub fn offered_rps(&self, plan: &LoadPlan) -> f64 {
        let span = plan.measured_duration().as_secs_f64();
        if span == 0.0 {
            0.0
        } else {
            self.offered as f64 / span
        }
    }

    /// Achieved as a percentage of offered (100 when nothing was offered).
    pub fn achieved_percent(&self, plan: &LoadPlan) -> f64 {
        let offered = self.offered_rps(plan);
        if offered == 0.0 {
            100.0
        } else {
            100.0 * self.achieved_rps(plan) / offered
        }
    }
}

/// The row of `second`, adding the rows up to it.
fn second_mut<'a>(
    seconds: &'a mut Vec<SecondStats>,
    plan: &LoadPlan,
    second: u32,
) -> &'a mut SecondStats {
    while seconds.len() <= second as usize {
        let next = u32::try_from(seconds.len()).expect("seconds fit u32");
        let start = Duration::from_secs(u64::from(next));
        let end = start + Duration::from_secs(1);
        let offered = plan.schedule.requests_before(end) - plan.schedule.requests_before(start);
        seconds.push(SecondStats {
            second: next,
            measured: plan.is_measured(start),
            offered,
            completed: 0,
            ok: 0,
            errors: 0,
            dropped: 0,
            latency: latency_histogram(),
        });
    }
    &mut seconds[second as usize]
}

/// The head of an outcome envelope (`protocol::envelope::encode_envelope`).
#[derive(Deserialize)]
struct EnvelopeHead<'a> {
    partition: u32,
    offset: i64,
    index: u32,
    #[serde(borrow, default)]
    key: Option<&'a str>,
    #[serde(borrow)]
    verdict: &'a str,
}

/// The head of an error answer (`{"error":TOKEN,...}`).
#[derive(Deserialize)]
struct ErrorHead<'a> {
    #[serde(borrow)]
    error: &'a str,
}

/// An agreed outcome read from an answer, or the error kind it counts as.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reading {
    Agreed {
        position: CommandPosition,
        accepted: bool,
    },
    Error(String),
}

/// Reads an answer to a submission (or to a lookup) of `key`: 200 with an
/// accepted envelope or 409 with a rejected one is an agreed outcome;
/// everything else is an error named by status and token.
pub fn read_answer(answer: &Answer, key: &str) -> Reading {
    if let Ok(head) = serde_json::from_slice::<EnvelopeHead<'_>>(&answer.body) {
        let position = CommandPosition {
            partition: head.partition,
            offset: head.offset,
            index: head.index,
        };
        let accepted = match (answer.status, head.verdict) {
            (200, "accepted") => true,
            (409, "rejected") => false,
            (status, verdict) => return Reading::Error(format!("http {status} {verdict}")),
        };
        if head.key != Some(key) {
            return Reading::Error("answer names another key".to_owned());
        }
        return Reading::Agreed { position, accepted };
    }
    match serde_json::from_slice::<ErrorHead<'_>>(&answer.body) {
        Ok(head) => Reading::Error(format!("http {} {}", answer.status, head.error)),
        Err(_) => Reading::Error(format!("http {}", answer.status)),
    }
}

/// Hash of an answer's bytes, for byte-identity checks without keeping them.
pub fn body_digest(body: &[u8]) -> u64 {
    let mut hasher = DefaultHasher::new();
    body.hash(&mut hasher);
    hasher.finish()
}

/// When and in which phase one started request ran.
#[derive(Clone, Copy, Debug)]
struct Timing {
    sent: Instant,
    completed: Instant,
    measured: bool,
}

/// How a started request ended, as the totals count it.
#[derive(Debug)]
enum Settled {
    Agreed {
        position: CommandPosition,
        accepted: bool,
        body_digest: u64,
    },
    Error {
        kind: String,
        example: String,
    },
}

/// What the live line prints each second.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Progress {
    Print,
    Quiet,
}

/// Owns the measurements while the run goes on.
#[derive(Debug)]
pub struct Recorder {
    plan: LoadPlan,
    clock: RunClock,
    progress: Progress,
    history: Option<HistoryWriter>,
    history_error: Option<io::Error>,
    measurements: Measurements,
    /// The next second whose live line is due.
    next_line: u32,
}

impl Recorder {
    pub fn new(
        plan: LoadPlan,
        clock: RunClock,
        progress: Progress,
        history: Option<HistoryWriter>,
    ) -> Self {
        let measurements = Measurements::new(&plan);
        Self {
            plan,
            clock,
            progress,
            history,
            history_error: None,
            measurements,
            next_line: 0,
        }
    }

    /// Starts the recorder on its own thread; it ends when every sender of
    /// `outcomes` is gone and returns what it measured.
    pub fn spawn(
        self,
        outcomes: mpsc::Receiver<Outcome>,
    ) -> io::Result<std::thread::JoinHandle<Measurements>> {
        std::thread::Builder::new()
            .name("lt-recorder".to_owned())
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_time()
                    .build()
                    .expect("a current-thread runtime with a timer builds");
                runtime.block_on(self.run(outcomes))
            })
    }

    async fn run(mut self, mut outcomes: mpsc::Receiver<Outcome>) -> Measurements {
        let first_tick = self.clock.origin + Duration::from_secs(1);
        let mut ticks = tokio::time::interval_at(first_tick.into(), Duration::from_secs(1));
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        loop {
            tokio::select! {
                outcome = outcomes.recv() => match outcome {
                    Some(outcome) => self.record(outcome),
                    None => break,
                },
                tick = ticks.tick() => {
                    let elapsed = tick.into_std().saturating_duration_since(self.clock.origin);
                    if let Some(ended) = seconds_of(elapsed).checked_sub(1) {
                        self.print_seconds_through(ended);
                    }
                }
            }
        }
        // The schedule's last seconds end after the last tick that came.
        let scheduled = seconds_of(
            self.plan
                .schedule
                .duration()
                .saturating_sub(Duration::from_nanos(1)),
        );
        self.print_seconds_through(scheduled);
        self.finish()
    }

    /// Records one outcome.
    pub fn record(&mut self, outcome: Outcome) {
        let intended_offset = outcome
            .intended
            .saturating_duration_since(self.clock.origin);
        let measured = self.plan.is_measured(intended_offset);
        let completion = match (&outcome.result, outcome.sent, outcome.completed) {
            (OutcomeResult::Answered(answer), Some(sent), Some(completed)) => {
                let settled = match read_answer(answer, &outcome.submission.key) {
                    Reading::Agreed { position, accepted } => Settled::Agreed {
                        position,
                        accepted,
                        body_digest: body_digest(&answer.body),
                    },
                    Reading::Error(kind) => Settled::Error {
                        kind,
                        example: String::from_utf8_lossy(&answer.body)
                            .chars()
                            .take(200)
                            .collect(),
                    },
                };
                let timing = Timing {
                    sent,
                    completed,
                    measured,
                };
                self.record_completion(&outcome, timing, settled);
                Completion::Answered {
                    status: answer.status,
                    body: String::from_utf8_lossy(&answer.body).into_owned(),
                }
            }
            (OutcomeResult::Failed(error), Some(sent), Some(completed)) => {
                let settled = Settled::Error {
                    kind: error.kind.token().to_owned(),
                    example: error.detail.clone(),
                };
                let timing = Timing {
                    sent,
                    completed,
                    measured,
                };
                self.record_completion(&outcome, timing, settled);
                match error.kind {
                    RequestErrorKind::Timeout => Completion::TimedOut,
                    kind => Completion::Failed {
                        error: kind.token().to_owned(),
                        detail: error.detail.clone(),
                    },
                }
            }
            // Dropped, or (never built by the driver) an outcome without times.
            _ => {
                second_mut(
                    &mut self.measurements.seconds,
                    &self.plan,
                    seconds_of(intended_offset),
                )
                .dropped += 1;
                if measured {
                    self.measurements.dropped += 1;
                }
                Completion::Dropped
            }
        };
        self.write_history(&outcome, completion);
    }

    fn record_completion(&mut self, outcome: &Outcome, timing: Timing, settled: Settled) {
        let Timing {
            sent,
            completed,
            measured,
        } = timing;
        let latency = duration_micros(completed.saturating_duration_since(outcome.intended));
        let completed_offset = completed.saturating_duration_since(self.clock.origin);
        let m = &mut self.measurements;
        let second = second_mut(&mut m.seconds, &self.plan, seconds_of(completed_offset));
        second.completed += 1;
        second.latency.saturating_record(latency);
        if matches!(settled, Settled::Agreed { .. }) {
            second.ok += 1;
        } else {
            second.errors += 1;
        }
        if measured {
            m.started += 1;
            m.latency.saturating_record(latency);
            m.service_time
                .saturating_record(duration_micros(completed.saturating_duration_since(sent)));
            m.start_lag.saturating_record(duration_micros(
                sent.saturating_duration_since(outcome.intended),
            ));
        } else {
            m.warmup_latency.saturating_record(latency);
        }
        let key = outcome.submission.key.clone();
        let command = outcome.submission.command.clone();
        match settled {
            Settled::Agreed {
                position,
                accepted,
                body_digest,
            } => {
                if measured {
                    m.ok += 1;
                    m.ok_span = Some(match m.ok_span {
                        None => (completed_offset, completed_offset),
                        Some((first, last)) => {
                            (first.min(completed_offset), last.max(completed_offset))
                        }
                    });
                    if accepted {
                        m.accepted += 1;
                    } else {
                        m.rejected += 1;
                    }
                }
                m.answered.push(AnsweredSubmission {
                    index: outcome.index,
                    key,
                    command,
                    position,
                    accepted,
                    body_digest,
                });
            }
            Settled::Error { kind, example } => {
                if measured {
                    m.errors
                        .entry(kind)
                        .or_insert(ErrorTally { count: 0, example })
                        .count += 1;
                }
                m.unanswered.push(UnansweredSubmission {
                    index: outcome.index,
                    key,
                    command,
                });
            }
        }
    }

    fn write_history(&mut self, outcome: &Outcome, completion: Completion) {
        let Some(history) = &mut self.history else {
            return;
        };
        let record = HistoryRecord {
            index: outcome.index,
            key: outcome.submission.key.clone(),
            command: outcome.submission.command.clone(),
            duplicate: outcome.submission.duplicate,
            target: outcome.target,
            intended_us: self.clock.micros(outcome.intended),
            sent_us: outcome.sent.map(|sent| self.clock.micros(sent)),
            completed_us: outcome.completed.map(|done| self.clock.micros(done)),
            completion,
        };
        if let Err(error) = history.write(&record) {
            // Stop writing: a history with a hole would mislead its reader.
            self.history = None;
            self.history_error = Some(error);
        }
    }

    /// The live lines of the seconds up to `last` not printed yet.
    fn print_seconds_through(&mut self, last: u32) {
        if self.progress == Progress::Quiet {
            return;
        }
        while self.next_line <= last {
            self.print_second(self.next_line);
            self.next_line += 1;
        }
    }

    fn print_second(&mut self, second: u32) {
        let stats = second_mut(&mut self.measurements.seconds, &self.plan, second).clone();
        let m = &self.measurements;
        let (phase, so_far) = if stats.measured {
            ("", &m.latency)
        } else {
            ("warmup ", &m.warmup_latency)
        };
        let errors: u64 = m.seconds.iter().map(|s| s.errors).sum();
        let dropped: u64 = m.seconds.iter().map(|s| s.dropped).sum();
        eprintln!(
            "{phase}{:>4}s  offered {:>6}/s  achieved {:>6}/s  p50 {}  p99 {}  errors {errors}  dropped {dropped}",
            second + 1,
            stats.offered,
            stats.ok,
            format_micros(so_far.value_at_quantile(0.5)),
            format_micros(so_far.value_at_quantile(0.99)),
        );
    }

    /// Flushes the history and hands back the measurements.
    pub fn finish(mut self) -> Measurements {
        self.measurements.history = match (self.history.take(), self.history_error.take()) {
            (_, Some(error)) => Some(Err(error.to_string())),
            (Some(history), None) => Some(history.finish().map_err(|error| error.to_string())),
            (None, None) => None,
        };
        self.measurements
    }
}

fn seconds_of(offset: Duration) -> u32 {
    u32::try_from(offset.as_secs()).unwrap_or(u32::MAX)
}

/// Microseconds as a short human reading: `850 µs`, `12.3 ms`, `1.20 s`.
pub fn format_micros(micros: u64) -> String {
    if micros < 1_000 {
        format!("{micros} µs")
    } else if micros < 1_000_000 {
        format!("{:.2} ms", micros as f64 / 1_000.0)
    } else {
        format!("{:.2} s", micros as f64 / 1_000_000.0)
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use crate::workload::Command;

    use super::*;

    fn answer(status: u16, body: &'static str) -> Answer {
        Answer {
            status,
            body: Bytes::from_static(body.as_bytes()),
        }
    }

    #[test]
    fn answers_read_as_agreed_outcomes_or_named_errors() {
        let accepted = answer(
            200,
            r#"{"partition":2,"offset":41,"index":3,"key":"k","verdict":"accepted","result":{}}"#,
        );
        assert_eq!(
            read_answer(&accepted, "k"),
            Reading::Agreed {
                position: CommandPosition {
                    partition: 2,
                    offset: 41,
                    index: 3
                },
                accepted: true
            }
        );
        assert_eq!(
            read_answer(&accepted, "other"),
            Reading::Error("answer names another key".to_owned())
        );
        let rejected = answer(
            409,
            r#"{"partition":0,"offset":1,"index":0,"key":"k","verdict":"rejected","reason":"insufficient_stock"}"#,
        );
        assert!(matches!(
            read_answer(&rejected, "k"),
            Reading::Agreed {
                accepted: false,
                ..
            }
        ));
        let dead = answer(
            422,
            r#"{"partition":0,"offset":1,"index":0,"verdict":"dead_lettered","reason":"x"}"#,
        );
        assert_eq!(
            read_answer(&dead, "k"),
            Reading::Error("http 422 dead_lettered".to_owned())
        );
        let shed = answer(503, r#"{"error":"overloaded","detail":"retry"}"#);
        assert_eq!(
            read_answer(&shed, "k"),
            Reading::Error("http 503 overloaded".to_owned())
        );
        assert_eq!(
            read_answer(&answer(502, "Bad Gateway"), "k"),
            Reading::Error("http 502".to_owned())
        );
    }

    /// 100 requests/s for 1 s after no warmup, each answered `latency(i)`
    /// after its intended time.
    fn achieved_percent_with(latency: impl Fn(u64) -> Duration) -> f64 {
        use std::time::SystemTime;

        use crate::workload::Submission;

        let plan =
            LoadPlan::new(100.0, Duration::from_secs(1), Duration::ZERO, None).expect("valid");
        let origin = Instant::now();
        let clock = RunClock {
            origin,
            wall_origin: SystemTime::now(),
        };
        let mut recorder = Recorder::new(plan.clone(), clock, Progress::Quiet, None);
        for index in 0..100u64 {
            let intended = origin + Duration::from_millis(10 * index);
            let key = format!("k{index}");
            let body = format!(
                r#"{{"partition":0,"offset":{index},"index":0,"key":"{key}","verdict":"accepted"}}"#
            );
            recorder.record(Outcome {
                index,
                submission: Submission {
                    key,
                    command: Command::Ship {
                        warehouse: "w".to_owned(),
                        sku: "s".to_owned(),
                        quantity: 1,
                    },
                    duplicate: false,
                },
                target: 0,
                intended,
                sent: Some(intended),
                completed: Some(intended + latency(index)),
                result: OutcomeResult::Answered(Answer {
                    status: 200,
                    body: Bytes::from(body),
                }),
            });
        }
        recorder.finish().achieved_percent(&plan)
    }

    #[test]
    fn keeping_pace_at_any_latency_achieves_the_offered_rate_and_falling_behind_does_not() {
        let steady = achieved_percent_with(|_| Duration::from_millis(500));
        assert!((steady - 100.0).abs() < 1e-9, "{steady}");
        // Each answer 10 ms later than the one before: answers spread over 2 s.
        let behind = achieved_percent_with(|index| Duration::from_millis(10 * index));
        assert!((behind - 50.5).abs() < 1.0, "{behind}");
    }

    #[test]
    fn micros_read_in_the_unit_that_fits() {
        assert_eq!(format_micros(850), "850 µs");
        assert_eq!(format_micros(12_345), "12.35 ms");
        assert_eq!(format_micros(1_200_000), "1.20 s");
    }
}
