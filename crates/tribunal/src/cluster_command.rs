//! `tribunal cluster`: a local cluster in the foreground.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Args;

use crate::cluster::{ClusterConfig, LocalCluster, NodeProgram};
use crate::node::Topology;

/// Exit code when the cluster could not start.
pub const EXIT_COULD_NOT_START: u8 = 3;

#[derive(Clone, Debug, Args)]
pub struct ClusterArgs {
    #[command(flatten)]
    pub topology: Topology,
    /// An existing Kafka-protocol broker; default: an embedded one.
    #[arg(long)]
    pub brokers: Option<String>,
    /// Where the nodes keep their data; default: a new temporary directory
    /// (the embedded broker forgets everything at exit, so old node data
    /// would be ahead of its log).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    #[arg(long, default_value_t = 8080)]
    pub http_port: u16,
    #[arg(long, default_value_t = 7100)]
    pub peer_port: u16,
}

/// Runs the cluster until Ctrl-C or SIGTERM; `node_subcommand` is how this
/// executable runs a node.
pub fn run_cluster(args: ClusterArgs, node_subcommand: &str) -> ExitCode {
    crate::node::init_tracing();
    let program = match NodeProgram::this_executable(node_subcommand) {
        Ok(program) => program,
        Err(error) => {
            eprintln!("tribunal cluster: cannot find this executable: {error}");
            return ExitCode::from(EXIT_COULD_NOT_START);
        }
    };
    let (data_root, temporary) = match &args.data_dir {
        Some(dir) => (dir.clone(), false),
        None => (
            std::env::temp_dir().join(format!("tribunal-cluster-{}", std::process::id())),
            true,
        ),
    };
    let mut config = ClusterConfig::new(program, data_root.clone());
    config.instances = args.topology.instances;
    config.partitions = args.topology.partitions;
    config.required_copies = args.topology.required_copies;
    config.brokers = args.brokers.clone();
    config.http_port = args.http_port;
    config.peer_port = args.peer_port;
    let mut cluster = match LocalCluster::start(config) {
        Ok(cluster) => cluster,
        Err(error) => {
            eprintln!("tribunal cluster: {error}");
            return ExitCode::from(EXIT_COULD_NOT_START);
        }
    };
    let code = match cluster.wait_ready(Duration::from_secs(120)) {
        Ok(()) => {
            println!("broker: {}", cluster.bootstrap_servers());
            for (instance, url) in cluster.gateway_urls().iter().enumerate() {
                println!(
                    "node {instance}: {url}   (log: {})",
                    cluster.log_path(instance as u32).display()
                );
            }
            println!("ready; Ctrl-C stops the cluster");
            wait_for_stop_signal();
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!(
                "tribunal cluster: {error}; node logs are in {}",
                data_root.display()
            );
            ExitCode::from(EXIT_COULD_NOT_START)
        }
    };
    cluster.stop(Duration::from_secs(10));
    drop(cluster);
    if temporary && let Err(error) = std::fs::remove_dir_all(&data_root) {
        eprintln!(
            "tribunal cluster: removing {}: {error}",
            data_root.display()
        );
    }
    code
}

fn wait_for_stop_signal() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a current-thread runtime for signal handling");
    runtime.block_on(crate::node::stop_signal());
}
