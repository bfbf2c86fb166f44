//! The `tribunal` node binary: wires one instance (the six actors, the
//! gateway) or, with `cluster`, a local broker and several instances.
//!
//! The actors are not wired yet: the binary fixes its command line and exits
//! with the could-not-start code.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Exit code for a node or cluster that could not start.
const EXIT_COULD_NOT_START: u8 = 3;

#[derive(Debug, Parser)]
#[command(version, about = "A Tribunal node, or a local cluster of them")]
struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Start a Kafka-protocol broker and several node processes on 127.0.0.x.
    Cluster {
        #[arg(long, default_value_t = 4)]
        instances: u8,
        /// Use an existing broker instead of the embedded one.
        #[arg(long)]
        brokers: Option<String>,
    },
}

fn main() -> ExitCode {
    match Args::parse().command {
        Command::Cluster { instances, brokers } => eprintln!(
            "tribunal cluster: not yet implemented ({instances} instances, broker {})",
            brokers.as_deref().unwrap_or("embedded")
        ),
    }
    ExitCode::from(EXIT_COULD_NOT_START)
}
