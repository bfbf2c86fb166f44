//! Starting the embedded default cluster (broker + N instances on this
//! machine) when no `--target` is given.
//!
//! The node wiring will provide `tribunal::cluster::LocalCluster` (nodes run
//! as child processes of this binary through a hidden `node` subcommand).
//! Until it exists, [`start_embedded_cluster`] refuses, and the run ends
//! with the could-not-start exit code; `--target` loads a running cluster.

use std::time::Duration;

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

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ClusterStartError {
    #[error(
        "embedded cluster not available yet (the node wiring is in progress); \
         start a cluster yourself and pass --target URL[,URL...]"
    )]
    NotAvailable,
}

/// A running cluster the generator started; stopped when dropped.
#[derive(Debug)]
pub struct EmbeddedCluster {
    gateway_urls: Vec<String>,
}

impl EmbeddedCluster {
    pub fn gateway_urls(&self) -> &[String] {
        &self.gateway_urls
    }
}

/// Starts the cluster and waits until it is ready.
pub fn start_embedded_cluster(
    request: &ClusterRequest,
) -> Result<EmbeddedCluster, ClusterStartError> {
    let _ = request;
    Err(ClusterStartError::NotAvailable)
}
