//! Open-loop, in-network load generator for a Tribunal cluster.
//!
//! The generator itself is not built yet: this binary fixes the command line
//! users will call (`cargo run --release -p loadtest -- --rps 10000`) and
//! exits with the could-not-start code, so scripts never mistake it for a
//! passing run.

use std::process::ExitCode;

use clap::Parser;

/// Exit code for a run that could not start (distinct from a failed verdict).
const EXIT_COULD_NOT_START: u8 = 3;

#[derive(Debug, Parser)]
#[command(version, about = "Open-loop load generator for a Tribunal cluster")]
struct Args {
    /// Offered rate, requests per second, on a constant arrival schedule.
    #[arg(long, default_value_t = 10_000)]
    rps: u32,
    /// Measured duration in seconds.
    #[arg(long, default_value_t = 60)]
    duration_secs: u64,
    /// Instances of the embedded cluster to start.
    #[arg(long, default_value_t = 4)]
    instances: u8,
    /// Gateway URLs of an existing cluster to load instead of starting one.
    #[arg(long, value_delimiter = ',')]
    target: Vec<String>,
    /// Kafka bootstrap servers of an existing broker (default: embedded).
    #[arg(long)]
    brokers: Option<String>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    eprintln!(
        "loadtest: not yet implemented (requested {} rps for {} s against {}); \
         see the open load-generator issue",
        args.rps,
        args.duration_secs,
        describe_target(&args),
    );
    ExitCode::from(EXIT_COULD_NOT_START)
}

fn describe_target(args: &Args) -> String {
    if !args.target.is_empty() {
        return args.target.join(",");
    }
    match &args.brokers {
        Some(brokers) => format!("{} instances on broker {brokers}", args.instances),
        None => format!("{} embedded instances", args.instances),
    }
}
