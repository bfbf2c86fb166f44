//! The node's command line.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;

use broker::{BrokerKind, BrokerProfile};
use clap::{Args, ValueEnum};

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum BrokerKindArg {
    /// The embedded broker held by the parent process.
    Embedded,
    /// A real Kafka-protocol broker.
    External,
}

/// The shape of a cluster: the same flags for `tribunal cluster` and for
/// each node it starts.
#[derive(Clone, Copy, Debug, Args)]
pub struct Topology {
    /// Instances in the cluster.
    #[arg(long, default_value_t = 4)]
    pub instances: u32,
    /// Input (and outcome) topic partitions.
    #[arg(long, default_value_t = 1)]
    pub partitions: u32,
    /// Matching copies that make an outcome agreed (2 = detection only).
    #[arg(long, default_value_t = 3)]
    pub required_copies: u32,
}

/// One instance of a Tribunal cluster.
#[derive(Clone, Debug, Args)]
pub struct NodeArgs {
    /// This instance's id, 0-based; the lowest live id publishes first.
    #[arg(long)]
    pub id: u32,
    #[command(flatten)]
    pub topology: Topology,
    /// Kafka bootstrap servers.
    #[arg(long)]
    pub brokers: String,
    #[arg(long, value_enum, default_value_t = BrokerKindArg::External)]
    pub broker_kind: BrokerKindArg,
    /// The Ledger's directory (created when missing).
    #[arg(long)]
    pub data_dir: PathBuf,
    /// The HTTP gateway's address.
    #[arg(long)]
    pub http_listen: SocketAddr,
    /// The address peers connect to.
    #[arg(long)]
    pub peer_listen: SocketAddr,
    /// Every other instance as id=host:port, comma separated.
    #[arg(long, value_delimiter = ',', value_parser = parse_peer)]
    pub peers: Vec<(u32, SocketAddr)>,
    /// TEST ONLY: corrupt this instance's outputs so tests can prove the
    /// cluster detects and never publishes them.
    #[arg(long, hide = true)]
    pub corrupt_outputs_for_detection_test: bool,
}

impl NodeArgs {
    pub fn broker_profile(&self) -> BrokerProfile {
        BrokerProfile {
            bootstrap_servers: self.brokers.clone(),
            kind: match self.broker_kind {
                BrokerKindArg::Embedded => BrokerKind::Embedded,
                BrokerKindArg::External => BrokerKind::External,
            },
        }
    }

    pub fn peer_map(&self) -> BTreeMap<u32, SocketAddr> {
        self.peers.iter().copied().collect()
    }
}

fn parse_peer(text: &str) -> Result<(u32, SocketAddr), String> {
    let (id, addr) = text
        .split_once('=')
        .ok_or_else(|| format!("a peer is id=host:port, got {text:?}"))?;
    let id = id
        .trim()
        .parse()
        .map_err(|error| format!("peer id {id:?}: {error}"))?;
    let addr = addr
        .trim()
        .parse()
        .map_err(|error| format!("peer address {addr:?}: {error}"))?;
    Ok((id, addr))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peers_parse_as_id_and_address_and_garbage_is_named() {
        assert_eq!(
            parse_peer("2=127.0.0.3:7100"),
            Ok((2, "127.0.0.3:7100".parse().expect("a socket address")))
        );
        assert!(
            parse_peer("127.0.0.3:7100")
                .unwrap_err()
                .contains("id=host:port")
        );
        assert!(
            parse_peer("x=127.0.0.3:7100")
                .unwrap_err()
                .contains("peer id")
        );
        assert!(
            parse_peer("1=nowhere")
                .unwrap_err()
                .contains("peer address")
        );
    }
}
