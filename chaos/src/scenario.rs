//! Scenarios and the plan a seed derives for one: the load (rate, length,
//! duplicate rate) and the faults (which instances, when, for how long).
//!
//! Pure and deterministic: the same scenario, seed, event count, rate and
//! instance count always give the same [`Plan`], so a failing run is
//! replayed by its command line alone. Fault times are fractions of the
//! load's length, so a short CI run and a long soak share one shape.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use rand::{Rng as _, SeedableRng as _};
use rand_chacha::ChaCha8Rng;

use crate::history::InstanceId;

/// One named way of hurting the cluster.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Scenario {
    KillPrimary,
    KillBackup,
    KillTwo,
    KillDuringRecovery,
    RollingRestart,
    Partition,
    Pause,
    Byzantine,
    BrokerRestart,
    DiskLoss,
    DuplicateStorm,
}

impl Scenario {
    /// Every scenario, in the order `all` runs them.
    pub const ALL: [Scenario; 11] = [
        Self::KillPrimary,
        Self::KillBackup,
        Self::KillTwo,
        Self::KillDuringRecovery,
        Self::RollingRestart,
        Self::Partition,
        Self::Pause,
        Self::Byzantine,
        Self::BrokerRestart,
        Self::DiskLoss,
        Self::DuplicateStorm,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Self::KillPrimary => "kill-primary",
            Self::KillBackup => "kill-backup",
            Self::KillTwo => "kill-two",
            Self::KillDuringRecovery => "kill-during-recovery",
            Self::RollingRestart => "rolling-restart",
            Self::Partition => "partition",
            Self::Pause => "pause",
            Self::Byzantine => "byzantine",
            Self::BrokerRestart => "broker-restart",
            Self::DiskLoss => "disk-loss",
            Self::DuplicateStorm => "duplicate-storm",
        }
    }

    /// The workload's probability of re-sending an earlier submission.
    fn duplicate_rate(self) -> f64 {
        match self {
            Self::DuplicateStorm => 0.5,
            _ => 0.05,
        }
    }
}

impl fmt::Display for Scenario {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Scenario {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        Self::ALL
            .into_iter()
            .find(|scenario| scenario.name() == text)
            .ok_or_else(|| {
                let names: Vec<&str> = Self::ALL.iter().map(|s| s.name()).collect();
                format!(
                    "unknown scenario {text:?}; one of {} or all",
                    names.join(", ")
                )
            })
    }
}

/// What the command line asks of one scenario run.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PlanRequest {
    pub scenario: Scenario,
    pub seed: u64,
    /// Commands submitted under load (the liveness probe comes on top).
    pub events: u64,
    /// Offered rate, requests per second.
    pub rps: f64,
    pub instances: u32,
    /// Input topic partitions (the faults do not depend on them).
    pub partitions: u32,
}

/// One fault, as the injector performs it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FaultAction {
    /// SIGKILL (or SIGTERM when `graceful`) every target at once; restart
    /// them after `down`.
    Kill {
        targets: Vec<InstanceId>,
        down: Duration,
        graceful: bool,
    },
    /// SIGKILL, restart after `down`, SIGKILL again as soon as the node
    /// answers /health while still replaying, then restart for good.
    KillDuringRecovery { target: InstanceId, down: Duration },
    /// SIGSTOP, SIGCONT after `paused`.
    Pause {
        target: InstanceId,
        paused: Duration,
    },
    /// Every federation link between `side` and the other instances cut
    /// (both directions) for `cut`.
    Partition {
        side: Vec<InstanceId>,
        cut: Duration,
    },
    /// Started with `--corrupt-outputs-for-detection-test` with the
    /// cluster, so it lies about live records from the first one (a liar
    /// restarted mid-run halts while replaying, on the first record already
    /// agreed, before it sends a copy); at the step it is restarted honest,
    /// and wiped and restarted once more if it halts on the outputs it
    /// stored while lying.
    Byzantine { target: InstanceId },
    /// The embedded broker down for `down`.
    BrokerRestart { down: Duration },
    /// SIGKILL, data directory wiped, restarted after `down`: it rebuilds
    /// from the log.
    DiskLoss { target: InstanceId, down: Duration },
}

impl FaultAction {
    /// Instances whose outputs are corrupt on purpose.
    fn liar(&self) -> Option<InstanceId> {
        match self {
            Self::Byzantine { target, .. } => Some(*target),
            _ => None,
        }
    }
}

impl fmt::Display for FaultAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Kill {
                targets,
                down,
                graceful,
            } => write!(
                f,
                "{} {targets:?}, restart after {down:?}",
                if *graceful { "SIGTERM" } else { "SIGKILL" }
            ),
            Self::KillDuringRecovery { target, down } => write!(
                f,
                "SIGKILL [{target}], restart after {down:?}, SIGKILL again while it replays, restart"
            ),
            Self::Pause { target, paused } => {
                write!(f, "SIGSTOP [{target}], SIGCONT after {paused:?}")
            }
            Self::Partition { side, cut } => {
                write!(
                    f,
                    "cut every link between {side:?} and the rest for {cut:?}"
                )
            }
            Self::Byzantine { target } => write!(
                f,
                "[{target}] corrupts its outputs from the start; restart it honest (wiped if it halts)"
            ),
            Self::BrokerRestart { down } => write!(f, "broker down for {down:?}"),
            Self::DiskLoss { target, down } => write!(
                f,
                "SIGKILL [{target}], wipe its data directory, restart after {down:?}"
            ),
        }
    }
}

/// A fault and when it starts, from the load's start. The injector runs
/// steps one after the other: a step starts at `at` or once the previous
/// one has healed and recovered, whichever is later.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FaultStep {
    pub at: Duration,
    pub action: FaultAction,
}

/// Everything one run does, derived from a [`PlanRequest`].
#[derive(Clone, Debug, PartialEq)]
pub struct Plan {
    pub request: PlanRequest,
    /// The load's length: `events / rps`.
    pub load: Duration,
    pub duplicate_rate: f64,
    /// The workload's seed (derived, so load and faults vary together).
    pub workload_seed: u64,
    pub steps: Vec<FaultStep>,
    /// Instances that lie at some point of the run.
    pub byzantine: Vec<InstanceId>,
}

/// Why no plan can be made.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum PlanError {
    #[error("{scenario} needs at least {needed} instances, got {instances}")]
    TooFewInstances {
        scenario: Scenario,
        needed: u32,
        instances: u32,
    },
    #[error("the rate must be a positive number, got {0}")]
    Rate(f64),
    #[error("at least one event is needed")]
    NoEvents,
    #[error("at least one partition is needed")]
    NoPartitions,
}

/// A fault round per this much load, at least one and at most
/// [`MAX_ROUNDS`]: long runs see more faults, not longer ones.
const LOAD_PER_ROUND: Duration = Duration::from_secs(20);
const MAX_ROUNDS: u64 = 5;

/// How long a fault lasts: a share of its round, within these bounds.
const SHORTEST_FAULT: Duration = Duration::from_millis(500);
const LONGEST_FAULT: Duration = Duration::from_secs(5);

impl Plan {
    pub fn derive(request: PlanRequest) -> Result<Plan, PlanError> {
        if !(request.rps.is_finite() && request.rps > 0.0) {
            return Err(PlanError::Rate(request.rps));
        }
        if request.events == 0 {
            return Err(PlanError::NoEvents);
        }
        if request.partitions == 0 {
            return Err(PlanError::NoPartitions);
        }
        let needed = match request.scenario {
            Scenario::KillTwo => 4,
            _ => 2,
        };
        if request.instances < needed {
            return Err(PlanError::TooFewInstances {
                scenario: request.scenario,
                needed,
                instances: request.instances,
            });
        }
        // The scenario is mixed in so `all` with one seed varies per scenario.
        let mut rng = ChaCha8Rng::seed_from_u64(request.seed ^ scenario_salt(request.scenario));
        let load = Duration::from_secs_f64(request.events as f64 / request.rps);
        let rounds = match request.scenario {
            // The liar lies once, from the start: one round.
            Scenario::Byzantine => 1,
            _ => (load.as_secs() / LOAD_PER_ROUND.as_secs()).clamp(1, MAX_ROUNDS),
        };
        let round = load / u32::try_from(rounds).expect("at most MAX_ROUNDS rounds");
        let mut steps = Vec::new();
        for index in 0..rounds {
            let round_start = round * u32::try_from(index).expect("at most MAX_ROUNDS rounds");
            // Inside the first half of the round, never in its first fifth:
            // the fault hits a cluster under load, and heals before the next.
            let at = round_start + round.mul_f64(rng.random_range(0.2..0.5));
            let length = round
                .mul_f64(rng.random_range(0.1..0.25))
                .clamp(SHORTEST_FAULT, LONGEST_FAULT);
            steps.extend(
                actions(request, &mut rng, length)
                    .into_iter()
                    .map(|action| FaultStep { at, action }),
            );
        }
        let mut byzantine: Vec<InstanceId> =
            steps.iter().filter_map(|step| step.action.liar()).collect();
        byzantine.sort_unstable();
        byzantine.dedup();
        Ok(Plan {
            request,
            load,
            duplicate_rate: request.scenario.duplicate_rate(),
            workload_seed: rng.random(),
            steps,
            byzantine,
        })
    }
}

/// The fault actions of one round (rolling restarts have one per instance).
fn actions(request: PlanRequest, rng: &mut ChaCha8Rng, length: Duration) -> Vec<FaultAction> {
    let instances = request.instances;
    let backup = |rng: &mut ChaCha8Rng| rng.random_range(1..instances);
    let any = |rng: &mut ChaCha8Rng| rng.random_range(0..instances);
    let kill = |targets: Vec<InstanceId>| FaultAction::Kill {
        targets,
        down: length,
        graceful: false,
    };
    match request.scenario {
        Scenario::KillPrimary => vec![kill(vec![0])],
        Scenario::KillBackup => vec![kill(vec![backup(rng)])],
        Scenario::KillTwo => vec![kill(vec![0, backup(rng)])],
        Scenario::KillDuringRecovery => vec![FaultAction::KillDuringRecovery {
            target: any(rng),
            down: length,
        }],
        Scenario::RollingRestart => {
            let mut order: Vec<InstanceId> = (0..instances).collect();
            // Fisher-Yates with the plan's generator.
            for i in (1..order.len()).rev() {
                order.swap(i, rng.random_range(0..=i));
            }
            order
                .into_iter()
                .map(|target| FaultAction::Kill {
                    targets: vec![target],
                    down: SHORTEST_FAULT,
                    graceful: true,
                })
                .collect()
        }
        Scenario::Partition => {
            // One instance isolated (the rest keep a quorum), or an even
            // split (nobody has one: agreement must wait for the heal).
            let isolated = any(rng);
            let side = if instances >= 4 && rng.random_bool(0.5) {
                let partner = (isolated + rng.random_range(1..instances)) % instances;
                let mut side = vec![isolated, partner];
                side.sort_unstable();
                side
            } else {
                vec![isolated]
            };
            vec![FaultAction::Partition { side, cut: length }]
        }
        Scenario::Pause => vec![FaultAction::Pause {
            target: any(rng),
            paused: length,
        }],
        Scenario::Byzantine => vec![FaultAction::Byzantine { target: any(rng) }],
        Scenario::BrokerRestart => vec![FaultAction::BrokerRestart { down: length }],
        Scenario::DiskLoss => vec![FaultAction::DiskLoss {
            target: any(rng),
            down: length,
        }],
        Scenario::DuplicateStorm => vec![kill(vec![any(rng)])],
    }
}

/// A fixed number per scenario (its position in [`Scenario::ALL`], spread).
fn scenario_salt(scenario: Scenario) -> u64 {
    let position = Scenario::ALL
        .iter()
        .position(|&s| s == scenario)
        .expect("every scenario is in ALL");
    (position as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15)
}

impl fmt::Display for Plan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let r = &self.request;
        writeln!(
            f,
            "scenario {}: seed {}, {} events at {} rps over {:?}, {} instances, {} partitions",
            r.scenario, r.seed, r.events, r.rps, self.load, r.instances, r.partitions
        )?;
        writeln!(
            f,
            "  workload: seed {}, duplicate rate {}",
            self.workload_seed, self.duplicate_rate
        )?;
        if !self.byzantine.is_empty() {
            writeln!(f, "  byzantine instances: {:?}", self.byzantine)?;
        }
        for (index, step) in self.steps.iter().enumerate() {
            writeln!(f, "  fault {index} at {:?}: {}", step.at, step.action)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(scenario: Scenario, seed: u64, events: u64) -> PlanRequest {
        PlanRequest {
            scenario,
            seed,
            events,
            rps: 500.0,
            instances: 4,
            partitions: 1,
        }
    }

    fn plan(scenario: Scenario, seed: u64, events: u64) -> Plan {
        Plan::derive(request(scenario, seed, events)).expect("a valid request")
    }

    #[test]
    fn a_seed_names_the_plan_and_another_seed_changes_it() {
        for scenario in Scenario::ALL {
            assert_eq!(plan(scenario, 7, 20_000), plan(scenario, 7, 20_000));
        }
        let differs = (0..8).any(|seed| {
            plan(Scenario::KillBackup, seed, 20_000).steps
                != plan(Scenario::KillBackup, 7, 20_000).steps
        });
        assert!(differs, "eight seeds all gave seed 7's faults");
        assert_ne!(
            plan(Scenario::Pause, 1, 2_000).workload_seed,
            plan(Scenario::Pause, 2, 2_000).workload_seed
        );
    }

    #[test]
    fn every_fault_starts_and_ends_within_the_load() {
        for scenario in Scenario::ALL {
            for seed in 0..20 {
                for events in [1_500, 20_000, 100_000] {
                    let plan = plan(scenario, seed, events);
                    assert!(!plan.steps.is_empty(), "{scenario} {seed}");
                    for step in &plan.steps {
                        assert!(step.at < plan.load, "{plan}");
                    }
                }
            }
        }
    }

    #[test]
    fn rounds_follow_the_load_length_within_bounds() {
        let rounds = |events| plan(Scenario::KillPrimary, 3, events).steps.len();
        assert_eq!(rounds(1_500), 1);
        assert_eq!(rounds(20_000), 2); // 40 s of load
        assert_eq!(rounds(1_000_000), MAX_ROUNDS as usize);
        let rolling = plan(Scenario::RollingRestart, 3, 1_500);
        let mut restarted: Vec<InstanceId> = rolling
            .steps
            .iter()
            .flat_map(|step| match &step.action {
                FaultAction::Kill { targets, .. } => targets.clone(),
                other => panic!("a rolling restart only restarts: {other}"),
            })
            .collect();
        restarted.sort_unstable();
        assert_eq!(restarted, vec![0, 1, 2, 3]);
    }

    #[test]
    fn targets_fit_the_scenario() {
        for seed in 0..50 {
            let first = |scenario| plan(scenario, seed, 20_000).steps[0].action.clone();
            assert!(matches!(first(Scenario::KillPrimary),
                FaultAction::Kill { targets, .. } if targets == vec![0]));
            assert!(matches!(first(Scenario::KillBackup),
                FaultAction::Kill { targets, .. } if targets.len() == 1 && targets[0] != 0));
            assert!(matches!(first(Scenario::KillTwo),
                FaultAction::Kill { targets, .. } if targets.len() == 2 && targets[0] == 0 && targets[1] != 0));
            match first(Scenario::Partition) {
                FaultAction::Partition { side, .. } => {
                    assert!(side.len() == 1 || (side.len() == 2 && side[0] < side[1]));
                    assert!(side.iter().all(|&i| i < 4));
                }
                other => panic!("{other}"),
            }
            let byzantine = plan(Scenario::Byzantine, seed, 20_000);
            let liars: Vec<InstanceId> = byzantine
                .steps
                .iter()
                .filter_map(|s| s.action.liar())
                .collect();
            assert!(liars.iter().all(|liar| byzantine.byzantine.contains(liar)));
            assert!(
                plan(Scenario::KillPrimary, seed, 20_000)
                    .byzantine
                    .is_empty()
            );
        }
        assert!(plan(Scenario::DuplicateStorm, 1, 2_000).duplicate_rate > 0.3);
    }

    #[test]
    fn names_round_trip_and_bad_requests_are_refused() {
        for scenario in Scenario::ALL {
            assert_eq!(scenario.name().parse::<Scenario>(), Ok(scenario));
        }
        assert!("kill-everything".parse::<Scenario>().is_err());
        let mut too_small = request(Scenario::KillTwo, 1, 100);
        too_small.instances = 3;
        assert!(matches!(
            Plan::derive(too_small),
            Err(PlanError::TooFewInstances { .. })
        ));
        let mut no_rate = request(Scenario::Pause, 1, 100);
        no_rate.rps = 0.0;
        assert_eq!(Plan::derive(no_rate), Err(PlanError::Rate(0.0)));
        assert_eq!(
            Plan::derive(request(Scenario::Pause, 1, 0)),
            Err(PlanError::NoEvents)
        );
        let mut no_partition = request(Scenario::Pause, 1, 100);
        no_partition.partitions = 0;
        assert_eq!(Plan::derive(no_partition), Err(PlanError::NoPartitions));
    }
}
