//! Fault injection and history checking for a Tribunal cluster.
//!
//! - [`scenario`]: the scenarios and the plan a seed derives for one;
//! - [`runner`]: one scenario run on a real cluster, start to verdict;
//! - [`injector`]: performs a plan's faults and measures recovery;
//! - [`proxy`]: the fault-injecting TCP proxies between instances;
//! - [`observe`]: the cluster seen from outside (/health, /metrics, log ends);
//! - [`recorder`]: writes the history as the run goes;
//! - [`readback`], [`finals`]: the topics and each instance's final state,
//!   read back into the history at the end;
//! - [`history`]: the recorded history of a run, as JSON lines;
//! - [`checker`]: judges a history against the spec's invariants (lost,
//!   duplicated, unexpected, divergent, invariant violations, duplicate
//!   answers that differ, corrupt publications) and reports every finding;
//! - [`report`]: the verdict of a run; [`cli`]: the command line and the
//!   line that replays a run.

pub mod checker;
pub mod cli;
pub mod finals;
pub mod history;
pub mod injector;
pub mod observe;
pub mod proxy;
pub mod readback;
pub mod recorder;
pub mod report;
pub mod runner;
pub mod scenario;

/// Exit code: every run passed (or was skipped).
pub const EXIT_PASS: u8 = 0;
/// Exit code: a check, a recovery or the liveness phase failed.
pub const EXIT_FAILED: u8 = 1;
/// Exit code: a run could not start (2 is the argument parser's).
pub const EXIT_COULD_NOT_START: u8 = 3;
