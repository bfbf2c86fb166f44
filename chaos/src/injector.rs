//! Performs a plan's faults on a running cluster, one step after the other,
//! records each in the history, heals it, and measures recovery: from the
//! heal until every instance the fault touched is ready and has applied the
//! input log up to its end as of the heal.
//!
//! Blocking: runs on a thread of its own while the load runs. The fault
//! windows (how long a node stays down, paused or cut off) are the plan's
//! own durations, slept on purpose; every wait for the cluster polls.

use std::collections::BTreeMap;
use std::fmt;
use std::time::{Duration, Instant};

use serde::Serialize;
use tribunal::cluster::{ClusterError, LocalCluster};

use crate::history::{FaultId, FaultKind, InstanceId};
use crate::observe::Observer;
use crate::proxy::ProxyMesh;
use crate::recorder::Recorder;
use crate::scenario::{FaultAction, FaultStep};

/// The hidden node flag that makes an instance lie.
pub const CORRUPT_OUTPUTS_FLAG: &str = "--corrupt-outputs-for-detection-test";

/// How long a SIGSTOPped process may take to show as stopped.
const STOP_SHOWN_TIMEOUT: Duration = Duration::from_secs(1);

/// How long a gracefully stopped node gets before SIGKILL.
const GRACE: Duration = Duration::from_secs(10);

/// How long a restarted node gets to answer /health before the second
/// kill of `kill-during-recovery` goes ahead anyway.
const FIRST_ANSWER_TIMEOUT: Duration = Duration::from_secs(30);

/// What became of one step.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct StepOutcome {
    pub step: usize,
    pub action: String,
    /// The history's fault ids.
    pub faults: Vec<FaultId>,
    /// Milliseconds from the run's origin.
    pub started_ms: u64,
    pub healed_ms: u64,
    /// Heal -> every target ready and caught up; `None` when it did not
    /// happen within the recovery timeout (see `recovery_error`).
    pub recovery_ms: Option<u64>,
    pub recovery_error: Option<String>,
    /// What shows the fault really happened.
    pub evidence: Vec<Evidence>,
    /// A cluster operation that failed (the step stopped there).
    pub error: Option<String>,
}

/// What shows that a fault really happened.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Evidence {
    /// The node runs as a new process.
    Restarted {
        instance: InstanceId,
        pid_before: Option<u32>,
        pid_after: Option<u32>,
    },
    /// The node was killed again, answering /health with this status
    /// (`None`: it had not answered yet).
    KilledWhile {
        instance: InstanceId,
        status: Option<String>,
    },
    /// The paused process's state as the kernel showed it (`T`: stopped).
    ProcessState { instance: InstanceId, state: String },
    /// Proxy connections the cut severed or refused.
    LinksCut { severed: u64, refused: u64 },
    /// The peers that suspected someone (only the liar lies) for a
    /// divergent copy while it lied, with how many times.
    SuspectedBy {
        instance: InstanceId,
        peers: Vec<(InstanceId, u64)>,
    },
}

impl fmt::Display for Evidence {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Restarted {
                instance,
                pid_before,
                pid_after,
            } => write!(
                f,
                "instance {instance}: pid {pid_before:?} -> {pid_after:?}"
            ),
            Self::KilledWhile { instance, status } => write!(
                f,
                "instance {instance} killed again while answering {}",
                status.as_deref().unwrap_or("nothing yet")
            ),
            Self::ProcessState { instance, state } => {
                write!(
                    f,
                    "instance {instance}: process state {state:?} while paused"
                )
            }
            Self::LinksCut { severed, refused } => write!(
                f,
                "proxies: {severed} connections severed, {refused} refused while cut"
            ),
            Self::SuspectedBy { instance, peers } => write!(
                f,
                "instance {instance} suspected for divergent copies by (peer, times) {peers:?}"
            ),
        }
    }
}

/// What the injector needs.
#[derive(Debug)]
pub struct Injector<'a> {
    pub cluster: &'a mut LocalCluster,
    pub mesh: Option<&'a ProxyMesh>,
    pub observer: &'a Observer,
    pub recorder: &'a Recorder,
    /// The instances started lying, with the faults that record it.
    pub liars: BTreeMap<InstanceId, FaultId>,
    /// The load's start: step times count from it.
    pub load_origin: Instant,
    pub recovery_timeout: Duration,
}

/// Why a step could not be performed.
#[derive(Debug, thiserror::Error)]
enum StepError {
    #[error(transparent)]
    Cluster(#[from] ClusterError),
    #[error("{0}")]
    Unsupported(&'static str),
}

/// A fault's progress through one step, filled in as it goes.
struct Step<'s> {
    outcome: StepOutcome,
    /// Instances whose recovery is waited for after the heal.
    recovering: Vec<InstanceId>,
    recorder: &'s Recorder,
}

impl Step<'_> {
    fn started(&mut self, kind: FaultKind, targets: &[InstanceId], detail: String) -> FaultId {
        let fault = self.recorder.fault_started(kind, targets, detail);
        if self.outcome.faults.is_empty() {
            self.outcome.started_ms = self.recorder.now() / 1_000;
        }
        self.outcome.faults.push(fault);
        fault
    }

    fn healed(&mut self, fault: FaultId) {
        self.recorder.fault_healed(fault);
        self.outcome.healed_ms = self.recorder.now() / 1_000;
    }

    fn evidence(&mut self, evidence: Evidence) {
        self.outcome.evidence.push(evidence);
    }
}

impl Injector<'_> {
    /// Runs every step in order; one outcome per step.
    pub fn run(mut self, steps: &[FaultStep]) -> Vec<StepOutcome> {
        let mut outcomes = Vec::with_capacity(steps.len());
        for (index, step) in steps.iter().enumerate() {
            let due = self.load_origin + step.at;
            if let Some(wait) = due.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
            let mut state = Step {
                outcome: StepOutcome {
                    step: index,
                    action: step.action.to_string(),
                    faults: Vec::new(),
                    started_ms: 0,
                    healed_ms: 0,
                    recovery_ms: None,
                    recovery_error: None,
                    evidence: Vec::new(),
                    error: None,
                },
                recovering: Vec::new(),
                recorder: self.recorder,
            };
            match self.perform(&step.action, &mut state) {
                Ok(()) => self.recover(&mut state),
                Err(error) => state.outcome.error = Some(error.to_string()),
            }
            eprintln!(
                "chaos: fault {index} ({}): recovery {}",
                state.outcome.action,
                state
                    .outcome
                    .recovery_ms
                    .map_or_else(|| "none".to_owned(), |ms| format!("{ms} ms"))
            );
            outcomes.push(state.outcome);
        }
        outcomes
    }

    fn perform(&mut self, action: &FaultAction, step: &mut Step<'_>) -> Result<(), StepError> {
        match action {
            FaultAction::Kill {
                targets,
                down,
                graceful,
            } => {
                let detail = if *graceful { "SIGTERM" } else { "SIGKILL" };
                let fault = step.started(FaultKind::Kill, targets, detail.to_owned());
                let before = self.pids(targets);
                for &target in targets {
                    if *graceful {
                        self.cluster.terminate(target, GRACE)?;
                    } else {
                        self.cluster.kill(target)?;
                    }
                }
                std::thread::sleep(*down);
                self.restart(targets, step, fault, &before)
            }
            FaultAction::KillDuringRecovery { target, down } => {
                let targets = [*target];
                let first = step.started(FaultKind::Kill, &targets, "SIGKILL".to_owned());
                let before = self.pids(&targets);
                self.cluster.kill(*target)?;
                std::thread::sleep(*down);
                self.restart(&targets, step, first, &before)?;
                let status = self
                    .observer
                    .first_progress(*target, FIRST_ANSWER_TIMEOUT)
                    .map(|progress| progress.status);
                let evidence = Evidence::KilledWhile {
                    instance: *target,
                    status,
                };
                let second = step.started(FaultKind::Kill, &targets, evidence.to_string());
                step.evidence(evidence);
                let before = self.pids(&targets);
                self.cluster.kill(*target)?;
                self.restart(&targets, step, second, &before)
            }
            FaultAction::Pause { target, paused } => {
                let fault = step.started(FaultKind::Pause, &[*target], "SIGSTOP".to_owned());
                self.cluster.pause(*target, true)?;
                if let Some(state) = self.cluster.pid(*target).and_then(stopped_state) {
                    step.evidence(Evidence::ProcessState {
                        instance: *target,
                        state,
                    });
                }
                std::thread::sleep(*paused);
                self.cluster.pause(*target, false)?;
                step.healed(fault);
                step.recovering = vec![*target];
                Ok(())
            }
            FaultAction::Partition { side, cut } => {
                let mesh = self
                    .mesh
                    .ok_or(StepError::Unsupported("a partition needs the proxy mesh"))?;
                let before = mesh.counters();
                let fault = step.started(
                    FaultKind::Partition,
                    side,
                    format!("links between {side:?} and the rest cut"),
                );
                mesh.set_partition(side, true);
                std::thread::sleep(*cut);
                mesh.set_partition(side, false);
                step.healed(fault);
                let after = mesh.counters();
                step.evidence(Evidence::LinksCut {
                    severed: after.severed - before.severed,
                    refused: after.refused - before.refused,
                });
                // An even split stalls everyone: all must catch up.
                step.recovering = self.all_instances();
                Ok(())
            }
            FaultAction::Byzantine { target } => {
                let targets = [*target];
                let fault = *self
                    .liars
                    .get(target)
                    .ok_or(StepError::Unsupported("the liar was not started lying"))?;
                step.outcome.faults.push(fault);
                step.evidence(Evidence::SuspectedBy {
                    instance: *target,
                    peers: self.divergent_suspicions(*target),
                });
                // Its store holds the outputs it lied with: restarted on it,
                // it halts on self-divergence once it meets an agreed
                // publication of one of them, which may come after it has
                // reported ready. An operator wipes a former liar and lets
                // it rebuild from the log.
                let before = self.pids(&targets);
                self.cluster.kill(*target)?;
                self.cluster.set_extra_args(*target, Vec::new())?;
                self.cluster.wipe(*target)?;
                self.restart(&targets, step, fault, &before)
            }
            FaultAction::DiskLoss { target, down } => {
                let targets = [*target];
                let fault = step.started(
                    FaultKind::DiskLoss,
                    &targets,
                    "SIGKILL and data directory wiped".to_owned(),
                );
                let before = self.pids(&targets);
                self.cluster.kill(*target)?;
                self.cluster.wipe(*target)?;
                std::thread::sleep(*down);
                self.restart(&targets, step, fault, &before)
            }
            FaultAction::BrokerRestart { down } => {
                let fault = step.started(
                    FaultKind::BrokerRestart,
                    &[],
                    "embedded broker down (connections closed, log kept)".to_owned(),
                );
                self.cluster.set_broker_up(false)?;
                std::thread::sleep(*down);
                self.cluster.set_broker_up(true)?;
                step.healed(fault);
                // Every instance lost the broker: all must catch up.
                step.recovering = self.all_instances();
                Ok(())
            }
        }
    }

    /// Starts `targets` again, heals `fault`, and notes the pids.
    fn restart(
        &mut self,
        targets: &[InstanceId],
        step: &mut Step<'_>,
        fault: FaultId,
        before: &[Option<u32>],
    ) -> Result<(), StepError> {
        for &target in targets {
            self.cluster.start_instance(target)?;
        }
        step.healed(fault);
        let after = self.pids(targets);
        for ((&instance, &pid_before), pid_after) in targets.iter().zip(before).zip(after) {
            step.evidence(Evidence::Restarted {
                instance,
                pid_before,
                pid_after,
            });
        }
        step.recovering = targets.to_vec();
        Ok(())
    }

    /// Waits until every instance the step touched is ready and caught up.
    fn recover(&mut self, step: &mut Step<'_>) {
        match self
            .observer
            .wait_caught_up(&step.recovering, self.recovery_timeout, false)
        {
            Ok(took) => {
                step.outcome.recovery_ms =
                    Some(u64::try_from(took.as_millis()).unwrap_or(u64::MAX));
            }
            Err(error) => step.outcome.recovery_error = Some(error.to_string()),
        }
        if let Err(error) = self.cluster.check_running() {
            step.outcome.error = Some(format!("after the step: {error}"));
        }
    }

    fn pids(&self, targets: &[InstanceId]) -> Vec<Option<u32>> {
        targets
            .iter()
            .map(|&target| self.cluster.pid(target))
            .collect()
    }

    fn all_instances(&self) -> Vec<InstanceId> {
        (0..self.cluster.config().instances).collect()
    }

    /// Every other instance's count of divergent-copy suspicions so far
    /// (0 when it does not answer).
    fn divergent_suspicions(&self, target: InstanceId) -> Vec<(InstanceId, u64)> {
        self.all_instances()
            .into_iter()
            .filter(|&peer| peer != target)
            .map(|peer| {
                let count = self
                    .observer
                    .progress(peer)
                    .map_or(0, |p| p.divergent_suspicions);
                (peer, count)
            })
            .collect()
    }
}

/// The process's state once the kernel shows it stopped (`T`), or the
/// last state seen within [`STOP_SHOWN_TIMEOUT`]: SIGSTOP is delivered
/// asynchronously, a process running on another core stops a moment later.
fn stopped_state(pid: u32) -> Option<String> {
    let started = Instant::now();
    loop {
        let state = process_state(pid)?;
        if state == "T" || started.elapsed() > STOP_SHOWN_TIMEOUT {
            return Some(state);
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// The state letter of a process (`R`, `S`, `T` stopped, ...) from
/// `/proc/<pid>/stat`; `None` where there is no procfs.
fn process_state(pid: u32) -> Option<String> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces and parentheses: the state follows
    // the last closing one.
    let (_, after) = stat.rsplit_once(')')?;
    after.split_whitespace().next().map(str::to_owned)
}
