//! The outcome of a check and its two renderings: a text table for people
//! and JSON for tools.

use std::collections::BTreeMap;
use std::fmt;

use serde::Serialize;

use crate::Location;
use crate::spec::{IdKind, Severity, SpecDiagnostic};

/// Where one id stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Status {
    /// Has an implementation site and a covering test.
    Ok,
    /// Listed in PENDING and not yet complete.
    Pending,
    MissingImpl,
    MissingTest,
    MissingBoth,
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Ok => "ok",
            Self::Pending => "pending",
            Self::MissingImpl => "missing-impl",
            Self::MissingTest => "missing-test",
            Self::MissingBoth => "missing-both",
        })
    }
}

/// One spec id with the code that implements and tests it.
#[derive(Debug, Clone, Serialize)]
pub struct IdReport {
    pub id: String,
    pub kind: IdKind,
    pub declared_at: Location,
    pub sites: Vec<Location>,
    pub tests: Vec<Location>,
    pub status: Status,
    /// The PENDING reason, when the id is listed there.
    pub pending_reason: Option<String>,
}

/// Why the run fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureKind {
    /// An error-level diagnostic from the Allium parser or analyser.
    SpecError,
    DuplicateId,
    UnparsableRust,
    CoversOutsideTest,
    ImplInsideTest,
    /// A marker naming no ids at all.
    EmptyMarker,
    StaleMarker,
    StalePending,
    PendingImplemented,
    PendingWithoutReason,
    DuplicatePending,
    MissingImpl,
    MissingTest,
    MissingBoth,
}

impl FailureKind {
    /// Whether the failure is an id lacking code, as opposed to an error in
    /// the spec, the markers or PENDING.
    pub fn is_missing_coverage(self) -> bool {
        matches!(
            self,
            Self::MissingImpl | Self::MissingTest | Self::MissingBoth
        )
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Failure {
    pub kind: FailureKind,
    pub message: String,
    pub location: Location,
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    /// True when nothing fails: the run exits 0.
    pub passed: bool,
    pub ids: usize,
    pub ok: usize,
    pub pending: usize,
    /// Ids missing an implementation site, a test, or both.
    pub failing: usize,
    /// Failures other than missing coverage.
    pub errors: usize,
    pub warnings: usize,
    pub rust_files_scanned: usize,
}

/// The whole outcome; its serde form is the `--json` output.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub ids: Vec<IdReport>,
    /// Every spec diagnostic (errors, warnings and infos), in file order.
    pub diagnostics: Vec<SpecDiagnostic>,
    pub failures: Vec<Failure>,
    pub summary: Summary,
}

impl Report {
    pub fn passed(&self) -> bool {
        self.summary.passed
    }

    /// The human-readable report. `verbose` lists every spec warning instead
    /// of only a count per file.
    pub fn text(&self, verbose: bool) -> TextReport<'_> {
        TextReport {
            report: self,
            verbose,
        }
    }
}

/// [`Report`] rendered as text: warning counts, the id table, the pending
/// list, the failures and a summary line.
#[derive(Debug)]
pub struct TextReport<'a> {
    report: &'a Report,
    verbose: bool,
}

impl fmt::Display for TextReport<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.warnings(f)?;
        self.table(f)?;
        self.pending(f)?;
        let report = self.report;
        if !report.failures.is_empty() {
            writeln!(f, "\nfailures:")?;
            for failure in &report.failures {
                writeln!(f, "  {failure}")?;
            }
        }
        let s = &report.summary;
        writeln!(
            f,
            "\nspec-check: {} ids: {} ok, {} pending, {} failing; {} errors",
            s.ids, s.ok, s.pending, s.failing, s.errors
        )
    }
}

impl TextReport<'_> {
    fn warnings(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut by_file: BTreeMap<&str, Vec<&SpecDiagnostic>> = BTreeMap::new();
        for warning in &self.report.diagnostics {
            if warning.severity == Severity::Warning {
                by_file.entry(&warning.file).or_default().push(warning);
            }
        }
        for (file, warnings) in by_file {
            writeln!(f, "{file}: {} warnings", warnings.len())?;
            if self.verbose {
                for warning in warnings {
                    writeln!(f, "  {warning}")?;
                }
            }
        }
        if self.verbose {
            writeln!(
                f,
                "scanned {} Rust files",
                self.report.summary.rust_files_scanned
            )?;
        }
        Ok(())
    }

    fn table(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let header = ["ID", "IMPLEMENTATION", "TESTS", "STATUS"].map(str::to_owned);
        let rows: Vec<[String; 4]> = self
            .report
            .ids
            .iter()
            .map(|id| {
                [
                    id.id.clone(),
                    join_locations(&id.sites),
                    join_locations(&id.tests),
                    id.status.to_string(),
                ]
            })
            .collect();
        let mut widths = header.clone().map(|cell| cell.len());
        for row in &rows {
            for (width, cell) in widths.iter_mut().zip(row) {
                *width = (*width).max(cell.len());
            }
        }
        writeln!(f)?;
        for row in std::iter::once(&header).chain(&rows) {
            writeln!(
                f,
                "{:<w0$}  {:<w1$}  {:<w2$}  {}",
                row[0],
                row[1],
                row[2],
                row[3],
                w0 = widths[0],
                w1 = widths[1],
                w2 = widths[2],
            )?;
        }
        Ok(())
    }

    fn pending(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let pending: Vec<&IdReport> = self
            .report
            .ids
            .iter()
            .filter(|id| id.status == Status::Pending)
            .collect();
        if pending.is_empty() {
            return Ok(());
        }
        let width = pending.iter().map(|id| id.id.len()).max().unwrap_or(0);
        writeln!(f, "\npending:")?;
        for id in pending {
            let reason = id.pending_reason.as_deref().unwrap_or("(no reason)");
            writeln!(f, "  {:<width$}  {reason}", id.id)?;
        }
        Ok(())
    }
}

fn join_locations(locations: &[Location]) -> String {
    if locations.is_empty() {
        return "-".to_owned();
    }
    locations
        .iter()
        .map(Location::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}
