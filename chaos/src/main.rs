//! `cargo run --release -p chaos -- --scenario <name>|all --events N --seed S`:
//! runs each scenario on its own real cluster, prints the derived
//! configuration, the per-fault recovery times and the checker's verdict,
//! and exits 0 (pass), 1 (a check failed) or 3 (could not start). Every
//! failure prints the seed and the command that replays it.

use std::process::ExitCode;

use chaos::cli::{Args, replay_command};
use chaos::runner::{self, RunOutcome, RunSettings};
use chaos::scenario::Plan;
use chaos::{EXIT_COULD_NOT_START, EXIT_FAILED, EXIT_PASS};
use clap::Parser;
use nix::sys::signal::Signal;
use tribunal::cluster::NodeProgram;

// Why mimalloc: ARCHITECTURE.md, "Dependencies beyond the preferred set".
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    // `chaos node ...`: this binary as a node of the cluster it starts.
    if let Some(node) = tribunal::cluster::node_args_when_started_as_node() {
        // A node does not outlive its runner: if the runner dies (Ctrl-C,
        // a crash) its nodes go too, instead of holding ports and cores.
        // The runner spawns every node from its main thread, which lives
        // as long as the runner does.
        if let Err(error) = nix::sys::prctl::set_pdeathsig(Signal::SIGKILL) {
            eprintln!("chaos node: cannot tie this node to its runner: {error}");
        }
        return tribunal::node::run(node);
    }
    let args = Args::parse();
    let node_program = match NodeProgram::this_executable(tribunal::cluster::NODE_SUBCOMMAND) {
        Ok(program) => program,
        Err(error) => {
            eprintln!("chaos: cannot find this executable: {error}");
            return ExitCode::from(EXIT_COULD_NOT_START);
        }
    };
    let mut summary = Vec::new();
    let mut code = EXIT_PASS;
    for scenario in args.scenario.scenarios() {
        let request = args.plan_request(scenario);
        let replay = replay_command(&request, &args.broker());
        let plan = match Plan::derive(request) {
            Ok(plan) => plan,
            Err(error) => {
                eprintln!("chaos: {scenario}: {error}");
                return ExitCode::from(EXIT_COULD_NOT_START);
            }
        };
        println!("{plan}");
        let settings = RunSettings {
            run_dir: args.out.join(format!(
                "{scenario}-seed{}-{}",
                request.seed,
                std::process::id()
            )),
            plan,
            broker: args.broker(),
            node_program: node_program.clone(),
            recovery_timeout: args.recovery_timeout,
            converge_timeout: args.converge_timeout,
            connections: args.connections,
            replay: replay.clone(),
        };
        match runner::run(&settings) {
            Ok(RunOutcome::Finished(report)) => {
                println!("{report}");
                let recoveries: Vec<String> = report
                    .faults
                    .iter()
                    .map(|f| f.recovery_ms.map_or("-".to_owned(), |ms| format!("{ms}ms")))
                    .collect();
                summary.push(format!(
                    "{scenario}: {} ({} submissions, lost {}, duplicated {}, divergent {}; recovery {})",
                    if report.passed() { "PASSED" } else { "FAILED" },
                    report.check.stats.submissions,
                    report.check.counts.lost,
                    report.check.counts.duplicated,
                    report.check.counts.divergent,
                    recoveries.join(" ")
                ));
                if !report.passed() {
                    eprintln!(
                        "chaos: {scenario} FAILED with seed {}; replay: {replay}",
                        request.seed
                    );
                    code = code.max(EXIT_FAILED);
                }
            }
            Ok(RunOutcome::Skipped(reason)) => {
                println!("chaos: {scenario} {reason}");
                summary.push(format!("{scenario}: {reason}"));
            }
            Err(error) => {
                eprintln!(
                    "chaos: {scenario} could not start: {error} (seed {}; replay: {replay})",
                    request.seed
                );
                summary.push(format!("{scenario}: could not start: {error}"));
                code = EXIT_COULD_NOT_START;
            }
        }
    }
    println!("chaos summary (seed {}):", args.seed);
    for line in &summary {
        println!("  {line}");
    }
    ExitCode::from(code)
}
