//! The history checker: judges a recorded [`History`] against the spec's
//! invariants and reports every violation it finds.
//!
//! Pure: no I/O, no clock. [`check`] indexes the history once ([`view`]),
//! runs each check (one module each), and gathers the findings into a
//! [`CheckReport`]. Every check names the spec invariant it verifies with a
//! `covers:` line (this directory is test code for `spec-check`), and every
//! finding carries the spec id it breaks.
//!
//! The references the checks judge by:
//! - the agreed outcomes: per (partition, offset) the first *intact*
//!   publication in read order, as readers keep it
//!   (`gateway.FirstPublicationOfOffsetObserved`);
//! - a sequential replay of the input topic through the real inventory
//!   domain, following the Warden's classification as published (fresh,
//!   duplicate, key reused), so a wrong classification is judged by the
//!   duplicate checks and a wrong evaluation by the publication check;
//! - the honest instances: every instance the scenario did not declare
//!   byzantine.

mod corrupt_publication;
mod divergent;
mod duplicate_responses;
mod duplicated;
mod invariants;
mod lost;
mod report;
mod unexpected;
mod view;

#[cfg(test)]
mod tests;

use std::fmt;

use protocol::position::{CommandPosition, Offset, Partition};
use serde::Serialize;

use crate::history::{FaultId, History, SubmissionId};

pub use corrupt_publication::CorruptPublication;
pub use divergent::Divergent;
pub use duplicate_responses::DuplicateMismatch;
pub use duplicated::{Duplicated, KeySubmission};
pub use invariants::InvariantViolation;
pub use lost::Lost;
pub use report::{CheckCounts, CheckReport, HistoryStats};
pub use unexpected::Unexpected;

/// Judges a history: every check, every finding.
pub fn check(history: &History) -> CheckReport {
    let view = view::View::new(history);
    let mut findings = Vec::new();
    lost::check(&view, &mut findings);
    duplicated::check(&view, &mut findings);
    unexpected::check(&view, &mut findings);
    divergent::check(&view, &mut findings);
    invariants::check(&view, &mut findings);
    duplicate_responses::check(&view, &mut findings);
    let replay_notes = corrupt_publication::check(&view, &mut findings);
    let mut notes = view.notes();
    notes.extend(replay_notes);
    notes.extend(invariants::notes(&view));
    CheckReport::new(history, &view, findings, notes)
}

/// The seven checks, as counted in the report.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CheckKind {
    /// Acknowledged but not applied.
    Lost,
    /// One idempotency key applied more than once within its TTL.
    Duplicated,
    /// Applied but never submitted.
    Unexpected,
    /// Outputs, state or answers that differ where honest instances agree.
    Divergent,
    /// An honest instance's final stock breaks an inventory invariant.
    Invariant,
    /// Answers to one key and command that are not byte-identical.
    DuplicateMismatch,
    /// A published outcome that is not the honest, agreed one.
    CorruptPublication,
}

impl CheckKind {
    pub const ALL: [CheckKind; 7] = [
        Self::Lost,
        Self::Duplicated,
        Self::Unexpected,
        Self::Divergent,
        Self::Invariant,
        Self::DuplicateMismatch,
        Self::CorruptPublication,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Self::Lost => "lost",
            Self::Duplicated => "duplicated",
            Self::Unexpected => "unexpected",
            Self::Divergent => "divergent",
            Self::Invariant => "invariant",
            Self::DuplicateMismatch => "duplicate-mismatch",
            Self::CorruptPublication => "corrupt-publication",
        }
    }
}

impl fmt::Display for CheckKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A command's place in the input log, serialisable.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct Position {
    pub partition: Partition,
    pub offset: Offset,
    pub index: u32,
}

impl From<CommandPosition> for Position {
    fn from(position: CommandPosition) -> Self {
        Self {
            partition: position.partition,
            offset: position.offset,
            index: position.index,
        }
    }
}

impl From<Position> for CommandPosition {
    fn from(position: Position) -> Self {
        Self {
            partition: position.partition,
            offset: position.offset,
            index: position.index,
        }
    }
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        CommandPosition::from(*self).fmt(f)
    }
}

/// What a finding is about, per check.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FindingDetail {
    Lost(Lost),
    Duplicated(Duplicated),
    Unexpected(Unexpected),
    Divergent(Divergent),
    Invariant(InvariantViolation),
    DuplicateMismatch(DuplicateMismatch),
    CorruptPublication(CorruptPublication),
}

impl FindingDetail {
    pub fn check(&self) -> CheckKind {
        match self {
            Self::Lost(_) => CheckKind::Lost,
            Self::Duplicated(_) => CheckKind::Duplicated,
            Self::Unexpected(_) => CheckKind::Unexpected,
            Self::Divergent(_) => CheckKind::Divergent,
            Self::Invariant(_) => CheckKind::Invariant,
            Self::DuplicateMismatch(_) => CheckKind::DuplicateMismatch,
            Self::CorruptPublication(_) => CheckKind::CorruptPublication,
        }
    }
}

/// One violation, with what is needed to debug it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Finding {
    pub check: CheckKind,
    /// The spec id (`<file>.<Name>`) of the invariant broken.
    pub invariant: &'static str,
    /// One line for a human.
    pub message: String,
    /// The submissions involved; their windows relate the finding to faults.
    pub submissions: Vec<SubmissionId>,
    /// Faults active while those submissions were in flight.
    pub faults: Vec<FaultId>,
    pub detail: FindingDetail,
}

impl Finding {
    fn new(
        invariant: &'static str,
        message: String,
        submissions: Vec<SubmissionId>,
        detail: FindingDetail,
    ) -> Self {
        Self {
            check: detail.check(),
            invariant,
            message,
            submissions,
            faults: Vec::new(),
            detail,
        }
    }
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[{}] {}: {}", self.check, self.invariant, self.message)?;
        if !self.submissions.is_empty() {
            write!(f, " (submissions {:?})", self.submissions)?;
        }
        if !self.faults.is_empty() {
            write!(f, " (during faults {:?})", self.faults)?;
        }
        Ok(())
    }
}
