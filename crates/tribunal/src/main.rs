//! `tribunal node ...` runs one instance; `tribunal cluster` runs a local
//! cluster (a broker and N nodes on 127.0.0.x) until Ctrl-C.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use tribunal::cluster::NODE_SUBCOMMAND;
use tribunal::cluster_command::{ClusterArgs, run_cluster};
use tribunal::node::{NodeArgs, run};

#[derive(Debug, Parser)]
#[command(version, about = "A Tribunal node, or a local cluster of them")]
struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run one instance.
    Node(NodeArgs),
    /// Start a broker and N instances on this machine; print the gateway
    /// URLs; stop everything on Ctrl-C.
    Cluster(ClusterArgs),
}

// Why mimalloc: ARCHITECTURE.md, "Dependencies beyond the preferred set".
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    match Args::parse().command {
        Command::Node(args) => run(args),
        Command::Cluster(args) => run_cluster(args, NODE_SUBCOMMAND),
    }
}
