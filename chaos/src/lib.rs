//! Fault injection and history checking for a Tribunal cluster.
//!
//! - [`history`]: the recorded history of a run (submissions and answers,
//!   the input and outcome topics read back, each instance's final state,
//!   the faults injected), written as JSON lines while the run goes on;
//! - [`checker`]: judges a history against the spec's invariants (lost,
//!   duplicated, unexpected, divergent, invariant violations, duplicate
//!   answers that differ, corrupt publications) and reports every finding.

pub mod checker;
pub mod history;
