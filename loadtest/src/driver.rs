//! The open-loop driver: starts request `i` at its intended time from the
//! schedule whatever became of earlier requests, and reports every
//! scheduled request's outcome (answered, failed or dropped) to a channel.
//!
//! Latency is measured from the intended time (the recorder does it), so a
//! stalled server cannot hide its tail by slowing the sender down
//! (coordinated omission, corrected as wrk2 does). Whatever lateness the
//! dispatcher itself adds is part of the measured latency, and is reported
//! on its own as the start lag.
//!
//! Requests in flight are bounded (`max_in_flight`, one per HTTP/1.1
//! connection). A request due while every slot is busy waits for one; a
//! request that cannot be started within `max_lag` of its intended time
//! (slots exhausted, or the generator itself fell behind) is dropped:
//! reported as such, never sent, never hidden.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::runtime::Handle;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};

use crate::client::{Answer, HttpClient, RequestError};
use crate::schedule::Schedule;
use crate::workload::{Submission, Workload};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DriverConfig {
    /// Requests in flight at once (so also HTTP connections).
    pub max_in_flight: usize,
    /// A request not started this long after its intended time is dropped.
    pub max_lag: Duration,
    /// The dispatcher sleeps at least this long between wake-ups: requests
    /// due within one quantum go out together, up to a quantum late. Smaller
    /// is more punctual and costs more CPU (a wake-up of the dispatcher and
    /// of a runtime worker per quantum).
    pub dispatch_quantum: Duration,
}

impl DriverConfig {
    /// Punctual to about a quarter millisecond at about a third of a core
    /// for 10,000 requests/s on this project's 2-core machines.
    pub const DEFAULT_DISPATCH_QUANTUM: Duration = Duration::from_micros(250);
}

/// What became of one scheduled request.
#[derive(Debug)]
pub struct Outcome {
    pub index: u64,
    pub submission: Submission,
    /// Index of the target URL it went (or would have gone) to.
    pub target: u32,
    pub intended: Instant,
    /// `None` when dropped.
    pub sent: Option<Instant>,
    /// `None` when dropped.
    pub completed: Option<Instant>,
    pub result: OutcomeResult,
}

#[derive(Debug)]
pub enum OutcomeResult {
    Answered(Answer),
    Failed(RequestError),
    Dropped,
}

/// The driver's own account of the run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DriveReport {
    pub scheduled: u64,
    pub started: u64,
    pub dropped: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DriveError {
    #[error("the outcome receiver is gone; the run cannot be recorded")]
    ReceiverGone,
    #[error("max_in_flight must be at least 1")]
    NoSlots,
}

/// Runs the whole schedule from `origin`, round-robin over the client's
/// targets, and returns once every started request has completed (each
/// bounded by the client's timeout). Every scheduled request yields exactly
/// one [`Outcome`] on `outcomes`, sent before its slot is released, so a
/// recorder that cannot keep up slows dispatch (showing as lateness and
/// drops) instead of growing a queue.
///
/// The dispatcher runs on the calling worker's thread, taken out of the
/// runtime with `block_in_place`, and waits with the OS's sleep (tens of
/// microseconds of precision instead of the runtime timer's millisecond);
/// requests run as tasks on the other workers. Needs the multi-thread
/// runtime.
pub async fn drive(
    schedule: &Schedule,
    origin: Instant,
    workload: &mut Workload,
    client: Arc<HttpClient>,
    config: DriverConfig,
    outcomes: mpsc::Sender<Outcome>,
) -> Result<DriveReport, DriveError> {
    if config.max_in_flight == 0 {
        return Err(DriveError::NoSlots);
    }
    let slots = Arc::new(Semaphore::new(config.max_in_flight));
    let runtime = Handle::current();
    let dispatcher = Dispatcher {
        runtime: &runtime,
        slots: &slots,
        client: &client,
        outcomes: &outcomes,
        config,
    };
    let report = tokio::task::block_in_place(|| dispatcher.run(schedule, origin, workload));
    drop(outcomes);
    // Every slot back means every started request has reported.
    let all = u32::try_from(config.max_in_flight).unwrap_or(u32::MAX);
    let _drained = slots
        .acquire_many(all)
        .await
        .expect("the semaphore is never closed");
    report
}

struct Dispatcher<'a> {
    runtime: &'a Handle,
    slots: &'a Arc<Semaphore>,
    client: &'a Arc<HttpClient>,
    outcomes: &'a mpsc::Sender<Outcome>,
    config: DriverConfig,
}

impl Dispatcher<'_> {
    fn run(
        &self,
        schedule: &Schedule,
        origin: Instant,
        workload: &mut Workload,
    ) -> Result<DriveReport, DriveError> {
        let targets = self.client.target_count() as u64;
        let mut report = DriveReport {
            scheduled: schedule.total_requests(),
            started: 0,
            dropped: 0,
        };
        let mut last_wake = Instant::now();
        for index in 0..schedule.total_requests() {
            let offset = schedule
                .intended(index)
                .expect("every index below total_requests has a time");
            let intended = origin + offset;
            let submission = workload.next_submission();
            let target = u32::try_from(index % targets).expect("a target index fits u32");
            let now = Instant::now();
            if intended > now {
                let wake = intended.max(last_wake + self.config.dispatch_quantum);
                std::thread::sleep(wake - now);
                last_wake = Instant::now();
            }
            let Some(slot) = self.take_slot(intended + self.config.max_lag) else {
                report.dropped += 1;
                let dropped = Outcome {
                    index,
                    submission,
                    target,
                    intended,
                    sent: None,
                    completed: None,
                    result: OutcomeResult::Dropped,
                };
                self.outcomes
                    .blocking_send(dropped)
                    .map_err(|_| DriveError::ReceiverGone)?;
                continue;
            };
            report.started += 1;
            let request = Request {
                index,
                submission,
                target,
                intended,
            };
            self.runtime
                .spawn(request.run(Arc::clone(self.client), self.outcomes.clone(), slot));
        }
        Ok(report)
    }

    /// A free slot, waiting for one until `deadline` at most.
    fn take_slot(&self, deadline: Instant) -> Option<OwnedSemaphorePermit> {
        if Instant::now() > deadline {
            return None;
        }
        if let Ok(slot) = Arc::clone(self.slots).try_acquire_owned() {
            return Some(slot);
        }
        let wait = tokio::time::timeout_at(deadline.into(), Arc::clone(self.slots).acquire_owned());
        self.runtime
            .block_on(wait)
            .ok()
            .map(|acquired| acquired.expect("the semaphore is never closed"))
    }
}

struct Request {
    index: u64,
    submission: Submission,
    target: u32,
    intended: Instant,
}

impl Request {
    async fn run(
        self,
        client: Arc<HttpClient>,
        outcomes: mpsc::Sender<Outcome>,
        slot: OwnedSemaphorePermit,
    ) {
        let sent = Instant::now();
        let result = client
            .submit(self.target as usize, self.submission.body())
            .await;
        let completed = Instant::now();
        let outcome = Outcome {
            index: self.index,
            submission: self.submission,
            target: self.target,
            intended: self.intended,
            sent: Some(sent),
            completed: Some(completed),
            result: match result {
                Ok(answer) => OutcomeResult::Answered(answer),
                Err(error) => OutcomeResult::Failed(error),
            },
        };
        // A closed channel means the recorder is gone; the dispatcher
        // notices on its next send and stops the run.
        let _ = outcomes.send(outcome).await;
        drop(slot);
    }
}
