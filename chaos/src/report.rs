//! The verdict of one scenario run: the plan, the load, each fault with its
//! evidence and recovery time, the safety phase (the checker over the whole
//! history) and the liveness phase (after the heal: new submissions answered
//! and every instance at the log end within deadlines). Written as
//! `report.json` and `report.txt` beside `history.jsonl`.

use std::fmt;
use std::io;
use std::path::Path;

use serde::Serialize;

use crate::checker::CheckReport;
use crate::injector::StepOutcome;
use crate::proxy::ProxyCounters;
use crate::recorder::LoadCounts;

/// After the heal: progress within deadlines.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Liveness {
    /// The probe load sent after every fault healed.
    pub probes: LoadCounts,
    /// From the end of the probe load until every instance was ready,
    /// at the log end and held nothing unpublished.
    pub converged_ms: Option<u64>,
    pub converge_error: Option<String>,
}

impl Liveness {
    /// Every probe answered with an agreed outcome, and convergence.
    pub fn passed(&self) -> bool {
        self.probes.sent > 0
            && self.probes.agreed == self.probes.scheduled
            && self.converged_ms.is_some()
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct RunReport {
    pub scenario: String,
    pub seed: u64,
    /// The derived configuration, as printed at the start.
    pub plan: String,
    /// The command line that replays this run.
    pub replay: String,
    pub run_dir: String,
    /// The load under faults (the safety phase's submissions).
    pub load: LoadCounts,
    pub faults: Vec<StepOutcome>,
    pub proxies: Option<ProxyCounters>,
    pub liveness: Liveness,
    /// The checker over the whole history.
    pub check: CheckReport,
    /// Why the run failed; empty when it passed.
    pub failures: Vec<String>,
}

#[derive(Serialize)]
struct RunReportJson<'a> {
    passed: bool,
    #[serde(flatten)]
    report: &'a RunReport,
}

impl RunReport {
    pub fn passed(&self) -> bool {
        self.failures.is_empty()
    }

    /// The reasons a run fails: any finding, a fault step that errored or
    /// did not recover, a liveness miss.
    pub fn failures_of(
        check: &CheckReport,
        faults: &[StepOutcome],
        liveness: &Liveness,
    ) -> Vec<String> {
        let mut failures = Vec::new();
        if !check.passed() {
            failures.push(format!(
                "safety: the checker found {} violation(s)",
                check.counts.total()
            ));
        }
        for fault in faults {
            if let Some(error) = &fault.error {
                failures.push(format!("fault {}: {error}", fault.step));
            }
            if let Some(error) = &fault.recovery_error {
                failures.push(format!("fault {} did not recover: {error}", fault.step));
            }
        }
        if !liveness.passed() {
            failures.push(format!(
                "liveness: {} of {} probes answered with an outcome{}",
                liveness.probes.agreed,
                liveness.probes.scheduled,
                liveness
                    .converge_error
                    .as_ref()
                    .map(|error| format!("; {error}"))
                    .unwrap_or_default()
            ));
        }
        failures
    }

    /// `report.json` (with a top-level `passed`) and `report.txt` in `dir`.
    pub fn write(&self, dir: &Path) -> io::Result<()> {
        let json = serde_json::to_string_pretty(&RunReportJson {
            passed: self.passed(),
            report: self,
        })
        .map_err(io::Error::other)?;
        std::fs::write(dir.join("report.json"), json)?;
        std::fs::write(dir.join("report.txt"), self.to_string())
    }
}

impl fmt::Display for RunReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "chaos {} {}: seed {}",
            self.scenario,
            if self.passed() { "PASSED" } else { "FAILED" },
            self.seed
        )?;
        write!(f, "{}", self.plan)?;
        let load = &self.load;
        writeln!(
            f,
            "safety phase (under faults): {} scheduled, {} sent, {} agreed outcomes, {} other answers, \
             {} unanswered, {} dropped",
            load.scheduled,
            load.sent,
            load.agreed,
            load.answered - load.agreed,
            load.unanswered,
            load.dropped
        )?;
        for fault in &self.faults {
            let recovery = fault.recovery_ms.map_or_else(
                || {
                    format!(
                        "NOT recovered ({})",
                        fault.recovery_error.as_deref().unwrap_or("-")
                    )
                },
                |ms| format!("recovered in {ms} ms"),
            );
            writeln!(
                f,
                "  fault {} at {} ms, healed at {} ms, {recovery}: {}",
                fault.step, fault.started_ms, fault.healed_ms, fault.action
            )?;
            for evidence in &fault.evidence {
                writeln!(f, "    {evidence}")?;
            }
            if let Some(error) = &fault.error {
                writeln!(f, "    error: {error}")?;
            }
        }
        if let Some(proxies) = &self.proxies {
            writeln!(
                f,
                "  proxies: {} forwarded, {} severed, {} refused, {} upstream failures",
                proxies.forwarded, proxies.severed, proxies.refused, proxies.upstream_failures
            )?;
        }
        let live = &self.liveness;
        writeln!(
            f,
            "liveness phase (healed): {} of {} probes agreed; {}",
            live.probes.agreed,
            live.probes.scheduled,
            live.converged_ms.map_or_else(
                || format!(
                    "NOT converged: {}",
                    live.converge_error.as_deref().unwrap_or("-")
                ),
                |ms| format!("every instance at the log end in {ms} ms"),
            )
        )?;
        write!(f, "{}", self.check)?;
        for failure in &self.failures {
            writeln!(f, "FAILURE: {failure}")?;
        }
        writeln!(f, "history and report: {}", self.run_dir)?;
        if !self.passed() {
            writeln!(f, "replay: {}", self.replay)?;
        }
        Ok(())
    }
}
