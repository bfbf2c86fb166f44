//! The checker's verdict: counts per check, every finding (related to the
//! faults active around it), what the history held, and what could not be
//! checked. Serialisable to JSON; `Display` is the human summary.

use std::collections::BTreeMap;
use std::fmt;

use serde::Serialize;

use super::view::{Answer, View};
use super::{CheckKind, Finding, FindingDetail};
use crate::history::{Fault, FaultId, History, InstanceId, Micros, SubmissionId};

/// Findings shown per check in the human summary (the JSON has them all).
const SHOWN_PER_CHECK: usize = 10;

/// Findings per check.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct CheckCounts {
    pub lost: usize,
    pub duplicated: usize,
    pub unexpected: usize,
    pub divergent: usize,
    pub invariant: usize,
    pub duplicate_mismatch: usize,
    pub corrupt_publication: usize,
}

impl CheckCounts {
    pub fn get(&self, kind: CheckKind) -> usize {
        match kind {
            CheckKind::Lost => self.lost,
            CheckKind::Duplicated => self.duplicated,
            CheckKind::Unexpected => self.unexpected,
            CheckKind::Divergent => self.divergent,
            CheckKind::Invariant => self.invariant,
            CheckKind::DuplicateMismatch => self.duplicate_mismatch,
            CheckKind::CorruptPublication => self.corrupt_publication,
        }
    }

    fn slot(&mut self, kind: CheckKind) -> &mut usize {
        match kind {
            CheckKind::Lost => &mut self.lost,
            CheckKind::Duplicated => &mut self.duplicated,
            CheckKind::Unexpected => &mut self.unexpected,
            CheckKind::Divergent => &mut self.divergent,
            CheckKind::Invariant => &mut self.invariant,
            CheckKind::DuplicateMismatch => &mut self.duplicate_mismatch,
            CheckKind::CorruptPublication => &mut self.corrupt_publication,
        }
    }

    pub fn total(&self) -> usize {
        CheckKind::ALL.iter().map(|&kind| self.get(kind)).sum()
    }
}

/// What the checked history held.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct HistoryStats {
    pub scenario: String,
    pub seed: u64,
    pub submissions: usize,
    /// Answered with an agreed outcome (200/409/422 envelope).
    pub outcomes: usize,
    /// Timed out, failed, 5xx or still in flight.
    pub indeterminate: usize,
    /// Refused with a 4xx: never produced.
    pub refused: usize,
    pub input_records: usize,
    pub publications: usize,
    /// Records with an intact publication.
    pub agreed_records: usize,
    /// Slots evaluated where they sit.
    pub fresh_applications: usize,
    pub instance_states: usize,
    pub faults: usize,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct CheckReport {
    pub counts: CheckCounts,
    pub stats: HistoryStats,
    /// In check order: lost, duplicated, unexpected, divergent, invariant,
    /// duplicate-mismatch, corrupt-publication.
    pub findings: Vec<Finding>,
    /// The faults injected, for the findings' references.
    pub faults: Vec<Fault>,
    /// What could not be checked, and why.
    pub notes: Vec<String>,
}

#[derive(Serialize)]
struct ReportJson<'a> {
    passed: bool,
    #[serde(flatten)]
    report: &'a CheckReport,
}

impl CheckReport {
    pub(super) fn new(
        history: &History,
        view: &View<'_>,
        mut findings: Vec<Finding>,
        notes: Vec<String>,
    ) -> Self {
        let windows: BTreeMap<SubmissionId, (Micros, Micros)> = history
            .submissions
            .iter()
            .map(|submission| (submission.id, submission.window(view.end_us)))
            .collect();
        let mut counts = CheckCounts::default();
        for finding in &mut findings {
            *counts.slot(finding.check) += 1;
            finding.faults = related_faults(&history.faults, &windows, view.end_us, finding);
        }
        let count_answers = |wanted: fn(&Answer<'_>) -> bool| {
            view.answers.iter().filter(|(_, a)| wanted(a)).count()
        };
        let stats = HistoryStats {
            scenario: history.run.scenario.clone(),
            seed: history.run.seed,
            submissions: history.submissions.len(),
            outcomes: count_answers(|a| matches!(a, Answer::Outcome { .. })),
            indeterminate: count_answers(|a| matches!(a, Answer::Indeterminate)),
            refused: count_answers(|a| matches!(a, Answer::Refused)),
            input_records: history.input.len(),
            publications: history.publications.len(),
            agreed_records: view.kept.len(),
            fresh_applications: view.fresh_slots().count(),
            instance_states: history.instances.len(),
            faults: history.faults.len(),
        };
        Self {
            counts,
            stats,
            findings,
            faults: history.faults.clone(),
            notes,
        }
    }

    /// No finding at all.
    pub fn passed(&self) -> bool {
        self.findings.is_empty()
    }

    pub fn findings_of(&self, kind: CheckKind) -> impl Iterator<Item = &Finding> {
        self.findings.iter().filter(move |f| f.check == kind)
    }

    /// The whole report as pretty JSON, with a top-level `passed`.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(&ReportJson {
            passed: self.passed(),
            report: self,
        })
        .expect("a report holds only strings, numbers and lists")
    }
}

/// Faults active while the finding's submissions were in flight, and
/// faults aimed at the instance the finding is about.
fn related_faults(
    faults: &[Fault],
    windows: &BTreeMap<SubmissionId, (Micros, Micros)>,
    end_us: Micros,
    finding: &Finding,
) -> Vec<FaultId> {
    let finding_windows: Vec<(Micros, Micros)> = finding
        .submissions
        .iter()
        .filter_map(|id| windows.get(id).copied())
        .collect();
    let instance = finding_instance(&finding.detail);
    faults
        .iter()
        .filter(|fault| {
            let (start, end) = (fault.started_us, fault.healed_us.unwrap_or(end_us));
            let overlaps = finding_windows
                .iter()
                .any(|&(from, to)| from <= end && start <= to);
            let aimed = instance.is_some_and(|id| fault.targets.contains(&id));
            overlaps || aimed
        })
        .map(|fault| fault.id)
        .collect()
}

fn finding_instance(detail: &FindingDetail) -> Option<InstanceId> {
    use super::{CorruptPublication as C, Divergent as D, Lost as L};
    match detail {
        FindingDetail::Lost(L::NotApplied { instance, .. })
        | FindingDetail::Divergent(
            D::RecordDigests { instance, .. } | D::StateDigest { instance, .. },
        )
        | FindingDetail::Invariant(super::InvariantViolation { instance, .. }) => Some(*instance),
        FindingDetail::CorruptPublication(
            C::Discarded { publisher, .. }
            | C::BelowQuorum { publisher, .. }
            | C::NotHonestMajority { publisher, .. }
            | C::DiffersFromReplay { publisher, .. }
            | C::WrongOutputCount { publisher, .. }
            | C::Misplaced { publisher, .. },
        ) => Some(*publisher),
        _ => None,
    }
}

impl fmt::Display for CheckReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let stats = &self.stats;
        writeln!(
            f,
            "chaos check {}: scenario {}, seed {}",
            if self.passed() { "PASSED" } else { "FAILED" },
            stats.scenario,
            stats.seed
        )?;
        writeln!(
            f,
            "  {} submissions: {} answered with an outcome, {} indeterminate, {} refused",
            stats.submissions, stats.outcomes, stats.indeterminate, stats.refused
        )?;
        writeln!(
            f,
            "  {} input records, {} publications ({} records agreed), {} fresh applications; \
             {} instance states; {} faults",
            stats.input_records,
            stats.publications,
            stats.agreed_records,
            stats.fresh_applications,
            stats.instance_states,
            stats.faults
        )?;
        let counts: Vec<String> = CheckKind::ALL
            .iter()
            .map(|&kind| format!("{kind} {}", self.counts.get(kind)))
            .collect();
        writeln!(f, "  {}", counts.join(", "))?;
        for kind in CheckKind::ALL {
            let total = self.counts.get(kind);
            for finding in self.findings_of(kind).take(SHOWN_PER_CHECK) {
                writeln!(f, "  {finding}")?;
            }
            if total > SHOWN_PER_CHECK {
                writeln!(f, "  [{kind}] ... {} more", total - SHOWN_PER_CHECK)?;
            }
        }
        let mentioned = self.findings.iter().flat_map(|finding| &finding.faults);
        let mut mentioned: Vec<FaultId> = mentioned.copied().collect();
        mentioned.sort_unstable();
        mentioned.dedup();
        for fault in self.faults.iter().filter(|f| mentioned.contains(&f.id)) {
            let healed = fault
                .healed_us
                .map_or("never healed".to_owned(), |at| format!("healed at {at} us"));
            writeln!(
                f,
                "  fault {}: {:?} on {:?} from {} us, {healed} ({})",
                fault.id, fault.kind, fault.targets, fault.started_us, fault.detail
            )?;
        }
        for note in &self.notes {
            writeln!(f, "  note: {note}")?;
        }
        Ok(())
    }
}
