//! Fault injection and history checking for a Tribunal cluster.
//!
//! The injector and the checker are not built yet: this binary fixes the
//! command line (`cargo run --release -p chaos -- --scenario all --seed 7`)
//! and exits with the could-not-start code, so CI can never count it as a
//! passing chaos run.

use std::process::ExitCode;

use clap::Parser;

/// Exit code for a run that could not start (distinct from a failed check).
const EXIT_COULD_NOT_START: u8 = 3;

#[derive(Debug, Parser)]
#[command(version, about = "Fault injection and history checking for Tribunal")]
struct Args {
    /// Scenario name, or `all`.
    #[arg(long, default_value = "all")]
    scenario: String,
    /// Number of submitted commands per scenario.
    #[arg(long, default_value_t = 20_000)]
    events: u64,
    /// Seed from which the fault schedule is derived.
    #[arg(long, default_value_t = 7)]
    seed: u64,
}

fn main() -> ExitCode {
    let args = Args::parse();
    eprintln!(
        "chaos: not yet implemented (scenario {}, {} events, seed {}); \
         see the open chaos issue",
        args.scenario, args.events, args.seed
    );
    ExitCode::from(EXIT_COULD_NOT_START)
}
