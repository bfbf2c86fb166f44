//! Starting the embedded default cluster (broker + N instances on this
//! machine) when no `--target` is given: `tribunal::cluster::LocalCluster`
//! with this binary as the node program (its hidden `node` subcommand), so
//! `cargo run -p loadtest` needs no other binary.

use std::net::TcpListener;
use std::path::PathBuf;
use std::time::Duration;

use tribunal::cluster::{ClusterConfig, ClusterError, LocalCluster, NODE_SUBCOMMAND, NodeProgram};

/// What the embedded cluster is asked for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClusterRequest {
    pub instances: u8,
    /// An external broker's bootstrap servers; `None` starts the embedded one.
    pub brokers: Option<String>,
    pub partitions: u32,
    /// How long the cluster may take to report ready.
    pub ready_timeout: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum ClusterStartError {
    #[error("finding this executable or a free port: {0}")]
    Environment(#[from] std::io::Error),
    #[error("starting the embedded cluster: {error} (node logs in {logs})", logs = .logs.display())]
    Cluster {
        error: Box<ClusterError>,
        logs: PathBuf,
    },
}

/// A running cluster the generator started; stopped (and its data
/// removed) when dropped.
#[derive(Debug)]
pub struct EmbeddedCluster {
    cluster: LocalCluster,
    gateway_urls: Vec<String>,
    data_root: PathBuf,
}

impl EmbeddedCluster {
    pub fn gateway_urls(&self) -> &[String] {
        &self.gateway_urls
    }

    pub fn cluster(&mut self) -> &mut LocalCluster {
        &mut self.cluster
    }
}

impl Drop for EmbeddedCluster {
    fn drop(&mut self) {
        self.cluster.stop(Duration::from_secs(5));
        if let Err(error) = std::fs::remove_dir_all(&self.data_root) {
            eprintln!("loadtest: removing {}: {error}", self.data_root.display());
        }
    }
}

/// A port free on 127.0.0.1 now (the nodes bind it on 127.0.0.x).
fn free_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Starts the cluster and waits until it is ready.
pub fn start_embedded_cluster(
    request: &ClusterRequest,
) -> Result<EmbeddedCluster, ClusterStartError> {
    let data_root = std::env::temp_dir().join(format!("loadtest-cluster-{}", std::process::id()));
    let mut config = ClusterConfig::new(
        NodeProgram::this_executable(NODE_SUBCOMMAND)?,
        data_root.clone(),
    );
    config.instances = u32::from(request.instances);
    config.partitions = request.partitions;
    config.brokers = request.brokers.clone();
    config.http_port = free_port()?;
    config.peer_port = free_port()?;
    let failed = |error| ClusterStartError::Cluster {
        error: Box::new(error),
        logs: data_root.clone(),
    };
    let mut cluster = LocalCluster::start(config).map_err(failed)?;
    cluster.wait_ready(request.ready_timeout).map_err(failed)?;
    Ok(EmbeddedCluster {
        gateway_urls: cluster.gateway_urls(),
        cluster,
        data_root,
    })
}
