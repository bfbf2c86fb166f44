//! Writes the run's history as it happens: submissions from the load
//! driver's outcomes, faults from the injector, and at the end the topics
//! and final states. One file (`history.jsonl`), appended to by several
//! threads through one lock; times are microseconds since the run's origin.

use std::fs::File;
use std::io::{self, BufWriter, Write as _};
use std::path::Path;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use loadtest::client::RequestErrorKind;
use loadtest::driver::{Outcome, OutcomeResult};
use tokio::sync::mpsc;

use crate::history::{
    Completion, FaultId, FaultKind, HistoryEvent, HistoryWriter, InstanceId, Invocation, Micros,
    SubmissionId,
};

#[derive(Debug)]
struct Sink {
    writer: HistoryWriter<BufWriter<File>>,
    /// The first write error; later events are not written after it.
    failed: Option<io::Error>,
}

/// The run's history file, shared by the load recorder and the injector.
#[derive(Debug)]
pub struct Recorder {
    origin: Instant,
    sink: Mutex<Sink>,
    next_fault: AtomicU64,
}

/// What the driver's outcomes amounted to.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct LoadCounts {
    /// Scheduled requests.
    pub scheduled: u64,
    /// Sent, so recorded as submissions.
    pub sent: u64,
    /// Sent re-sending an earlier submission's key and command.
    pub resent: u64,
    /// Answered with any HTTP status.
    pub answered: u64,
    /// Answered 200 or 409 (an agreed outcome).
    pub agreed: u64,
    /// Timed out or failed without an answer.
    pub unanswered: u64,
    /// Never sent: the driver could not start them in time.
    pub dropped: u64,
}

impl Recorder {
    pub fn create(path: &Path, origin: Instant) -> io::Result<Recorder> {
        let file = File::create(path)?;
        Ok(Recorder {
            origin,
            sink: Mutex::new(Sink {
                writer: HistoryWriter::new(BufWriter::new(file)),
                failed: None,
            }),
            next_fault: AtomicU64::new(0),
        })
    }

    /// Microseconds from the run's origin to `at` (0 before it).
    pub fn micros(&self, at: Instant) -> Micros {
        u64::try_from(at.saturating_duration_since(self.origin).as_micros()).unwrap_or(u64::MAX)
    }

    pub fn now(&self) -> Micros {
        self.micros(Instant::now())
    }

    pub fn append(&self, event: &HistoryEvent) {
        // A poisoned lock means a thread panicked mid-write: the history is
        // unusable and the run is failing anyway.
        let mut sink = self.sink.lock().expect("no thread panics while writing");
        if sink.failed.is_none()
            && let Err(error) = sink.writer.append(event)
        {
            sink.failed = Some(error);
        }
    }

    /// Records a fault's start now; returns its id.
    pub fn fault_started(
        &self,
        kind: FaultKind,
        targets: &[InstanceId],
        detail: String,
    ) -> FaultId {
        let fault = self.next_fault.fetch_add(1, Ordering::Relaxed);
        self.append(&HistoryEvent::FaultStarted {
            fault,
            kind,
            targets: targets.to_vec(),
            started_us: self.now(),
            detail,
        });
        fault
    }

    pub fn fault_healed(&self, fault: FaultId) {
        self.append(&HistoryEvent::FaultHealed {
            fault,
            healed_us: self.now(),
        });
    }

    /// Records every outcome the driver reports until it closes the
    /// channel; submission ids are `first_id + index`. Blocking: run it on
    /// a thread of its own.
    pub fn record_load(
        &self,
        mut outcomes: mpsc::Receiver<Outcome>,
        first_id: SubmissionId,
    ) -> LoadCounts {
        let mut counts = LoadCounts::default();
        while let Some(outcome) = outcomes.blocking_recv() {
            counts.scheduled += 1;
            let completion = match outcome.result {
                OutcomeResult::Dropped => {
                    counts.dropped += 1;
                    continue;
                }
                OutcomeResult::Answered(answer) => {
                    counts.answered += 1;
                    if matches!(answer.status, 200 | 409) {
                        counts.agreed += 1;
                    }
                    Completion::Answered {
                        status: answer.status,
                        body: answer.body.to_vec().into(),
                    }
                }
                OutcomeResult::Failed(error) if error.kind == RequestErrorKind::Timeout => {
                    counts.unanswered += 1;
                    Completion::TimedOut
                }
                OutcomeResult::Failed(error) => {
                    counts.unanswered += 1;
                    Completion::Failed {
                        error: error.to_string(),
                    }
                }
            };
            counts.sent += 1;
            counts.resent += u64::from(outcome.submission.duplicate);
            let id = first_id + outcome.index;
            let timed = "the driver times every request it sends";
            let (sent, completed) = (outcome.sent.expect(timed), outcome.completed.expect(timed));
            self.append(&HistoryEvent::Invoked(Invocation {
                id,
                client: 0,
                gateway: outcome.target,
                key: outcome.submission.key,
                command: outcome.submission.command,
                invoked_us: self.micros(sent),
            }));
            self.append(&HistoryEvent::Completed {
                submission: id,
                completed_us: self.micros(completed),
                completion,
            });
        }
        counts
    }

    /// Flushes the file; the first error of the whole run, if any.
    pub fn finish(self) -> io::Result<()> {
        let sink = self
            .sink
            .into_inner()
            .expect("no thread panics while writing");
        if let Some(error) = sink.failed {
            return Err(error);
        }
        sink.writer.into_inner().flush()
    }
}
