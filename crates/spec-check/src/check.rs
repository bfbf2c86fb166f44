//! Evaluating the spec, the markers and PENDING against each other.

use std::collections::{BTreeMap, HashMap};

use crate::Location;
use crate::markers::{Marker, MarkerKind, Scan};
use crate::pending::Pending;
use crate::report::{Failure, FailureKind, IdReport, Report, Status, Summary};
use crate::spec::{IdKind, Severity, Spec};

/// Builds the report: every failure, and the status of every id.
pub fn evaluate(spec: &Spec, scan: &Scan, pending: &Pending) -> Report {
    let mut evaluation = Evaluation::default();
    evaluation.spec(spec);
    for file in &scan.unparsable {
        evaluation.fail(
            FailureKind::UnparsableRust,
            format!(
                "unparsable Rust file: {}:{}: {}",
                file.location, file.column, file.message
            ),
            &file.location,
        );
    }
    for marker in &scan.markers {
        evaluation.marker(marker);
    }
    evaluation.pending(pending);
    let ids = evaluation.statuses(pending);

    let failures = evaluation.failures;
    let count = |status: Status| ids.iter().filter(|id| id.status == status).count();
    let failing = failures
        .iter()
        .filter(|f| f.kind.is_missing_coverage())
        .count();
    let summary = Summary {
        passed: failures.is_empty(),
        ids: ids.len(),
        ok: count(Status::Ok),
        pending: count(Status::Pending),
        failing,
        errors: failures.len() - failing,
        warnings: spec
            .diagnostics
            .iter()
            .filter(|d| d.severity == Severity::Warning)
            .count(),
        rust_files_scanned: scan.files_scanned,
    };
    Report {
        ids,
        diagnostics: spec.diagnostics.clone(),
        failures,
        summary,
    }
}

/// The coverage gathered for one id.
#[derive(Debug)]
struct Coverage {
    kind: IdKind,
    declared_at: Location,
    sites: Vec<Location>,
    tests: Vec<Location>,
}

#[derive(Debug, Default)]
struct Evaluation<'a> {
    /// Sorted by id, so the table groups ids by spec file.
    coverage: BTreeMap<&'a str, Coverage>,
    failures: Vec<Failure>,
}

impl<'a> Evaluation<'a> {
    fn fail(&mut self, kind: FailureKind, message: String, location: &Location) {
        self.failures.push(Failure {
            kind,
            message,
            location: location.clone(),
        });
    }

    /// Spec errors fail the run; the first declaration of an id wins and
    /// any later one is a duplicate.
    fn spec(&mut self, spec: &'a Spec) {
        for diagnostic in &spec.diagnostics {
            if diagnostic.severity == Severity::Error {
                let location = Location {
                    file: diagnostic.file.clone(),
                    line: diagnostic.line,
                };
                self.fail(FailureKind::SpecError, diagnostic.to_string(), &location);
            }
        }
        for spec_id in &spec.ids {
            if let Some(first) = self.coverage.get(spec_id.id.as_str()) {
                let message = format!(
                    "duplicate id: {} declared at {} and {}",
                    spec_id.id, first.declared_at, spec_id.declared_at
                );
                self.fail(FailureKind::DuplicateId, message, &spec_id.declared_at);
                continue;
            }
            self.coverage.insert(
                &spec_id.id,
                Coverage {
                    kind: spec_id.kind,
                    declared_at: spec_id.declared_at.clone(),
                    sites: Vec::new(),
                    tests: Vec::new(),
                },
            );
        }
    }

    fn marker(&mut self, marker: &Marker) {
        let location = &marker.location;
        if marker.ids.is_empty() {
            let message = format!("marker names no ids: {location}");
            self.fail(FailureKind::EmptyMarker, message, location);
        }
        // A marker in the wrong kind of code is reported once and counts for
        // nothing; its ids are still checked for staleness.
        let counts = match (marker.kind, marker.in_test) {
            (MarkerKind::Covers, false) => {
                let message = format!("covers marker outside a test: {location}");
                self.fail(FailureKind::CoversOutsideTest, message, location);
                false
            }
            (MarkerKind::Impl, true) => {
                let message = format!("implementation marker inside test code: {location}");
                self.fail(FailureKind::ImplInsideTest, message, location);
                false
            }
            (MarkerKind::Impl, false) | (MarkerKind::Covers, true) => true,
        };
        for id in &marker.ids {
            let Some(entry) = self.coverage.get_mut(id.as_str()) else {
                let message = format!("stale marker: {id} at {location}");
                self.fail(FailureKind::StaleMarker, message, location);
                continue;
            };
            if counts {
                let list = match marker.kind {
                    MarkerKind::Impl => &mut entry.sites,
                    MarkerKind::Covers => &mut entry.tests,
                };
                if !list.contains(location) {
                    list.push(location.clone());
                }
            }
        }
    }

    /// Problems in PENDING itself; whether a listed id is already complete
    /// is decided with its status.
    fn pending(&mut self, pending: &Pending) {
        let mut first_line: HashMap<&str, &Location> = HashMap::new();
        for entry in &pending.entries {
            let (id, location) = (&entry.id, &entry.location);
            if let Some(first) = first_line.get(id.as_str()) {
                let message =
                    format!("duplicate pending entry: {id} at {location} (first at {first})");
                self.fail(FailureKind::DuplicatePending, message, location);
            } else {
                first_line.insert(id, location);
            }
            if entry.reason.is_none() {
                let message = format!("pending entry without a reason: {id} at {location}");
                self.fail(FailureKind::PendingWithoutReason, message, location);
            }
            if !self.coverage.contains_key(id.as_str()) {
                let message = format!("stale pending: {id} at {location} is not in the spec");
                self.fail(FailureKind::StalePending, message, location);
            }
        }
    }

    /// The status of every id, failing the ids that are neither complete
    /// nor pending, and the pending ids that are already complete.
    fn statuses(&mut self, pending: &Pending) -> Vec<IdReport> {
        let coverage = std::mem::take(&mut self.coverage);
        let mut ids = Vec::with_capacity(coverage.len());
        for (id, entry) in coverage {
            let pending_entry = pending.get(id);
            let status = match (
                pending_entry,
                entry.sites.is_empty(),
                entry.tests.is_empty(),
            ) {
                (_, false, false) => Status::Ok,
                (Some(_), _, _) => Status::Pending,
                (None, true, false) => Status::MissingImpl,
                (None, false, true) => Status::MissingTest,
                (None, true, true) => Status::MissingBoth,
            };
            if let Some(pending_entry) = pending_entry
                && status == Status::Ok
            {
                let location = &pending_entry.location;
                let message = format!("implemented, remove from PENDING: {id} at {location}");
                self.fail(FailureKind::PendingImplemented, message, location);
            }
            let missing = match status {
                Status::MissingImpl => Some((FailureKind::MissingImpl, "no implementation site")),
                Status::MissingTest => Some((FailureKind::MissingTest, "no covering test")),
                Status::MissingBoth => Some((
                    FailureKind::MissingBoth,
                    "no implementation site and no covering test",
                )),
                Status::Ok | Status::Pending => None,
            };
            if let Some((kind, what)) = missing {
                let message = format!("{id}: {what} (declared at {})", entry.declared_at);
                self.fail(kind, message, &entry.declared_at);
            }
            ids.push(IdReport {
                id: id.to_owned(),
                kind: entry.kind,
                declared_at: entry.declared_at,
                sites: entry.sites,
                tests: entry.tests,
                status,
                pending_reason: pending_entry.and_then(|p| p.reason.clone()),
            });
        }
        ids
    }
}
