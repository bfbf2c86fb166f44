//! What the gateway shows of its instance: status, health, durable stock
//! levels and the other actors' metrics.

use domain::inventory::{decode_level, partition_for_sku, stock_key};
use gateway::metrics::MetricsRegistry;
use gateway::node::{HealthSnapshot, StockLevel, SuspectedPeer};
use gateway::shell::InstanceView;
use ledger::LedgerReader;

use crate::lifecycle::InstanceStatus;
use crate::node::status::NodeStatus;

pub struct NodeView {
    status: NodeStatus,
    reader: LedgerReader,
    partitions: u32,
    /// The node's own metrics (the pipeline's stages).
    registry: MetricsRegistry,
}

impl NodeView {
    pub fn new(
        status: NodeStatus,
        reader: LedgerReader,
        partitions: u32,
        registry: MetricsRegistry,
    ) -> Self {
        Self {
            status,
            reader,
            partitions,
            registry,
        }
    }
}

fn gateway_status(status: InstanceStatus) -> gateway::node::InstanceStatus {
    match status {
        InstanceStatus::Starting => gateway::node::InstanceStatus::Starting,
        InstanceStatus::Recovering => gateway::node::InstanceStatus::Recovering,
        InstanceStatus::Ready => gateway::node::InstanceStatus::Ready,
        InstanceStatus::Halted => gateway::node::InstanceStatus::Halted,
    }
}

impl InstanceView for NodeView {
    fn status(&self) -> gateway::node::InstanceStatus {
        gateway_status(self.status.status())
    }

    fn health(&self) -> HealthSnapshot {
        let observed = self.status.observed();
        HealthSnapshot {
            status: gateway_status(self.status.status()),
            instance_id: self.status.instance_id(),
            self_suspected: observed.self_suspected,
            suspected_peers: observed
                .suspected_peers
                .into_iter()
                .map(|(instance_id, reason)| SuspectedPeer {
                    instance_id,
                    reason,
                })
                .collect(),
            halted_partitions: observed.halted_partitions,
            lag: observed.lag,
        }
    }

    /// A point read of the Ledger's durable state (a RocksDB get, served
    /// from its block cache or memtable: microseconds, so it runs inline).
    ///
    async fn stock_level(&self, warehouse: String, sku: String) -> Option<StockLevel> {
        if self.status.status() != InstanceStatus::Ready {
            return None;
        }
        let partition = partition_for_sku(&sku, self.partitions);
        let key = stock_key(&warehouse, &sku);
        let as_of_offset = self.status.applied_offset(partition)?;
        let state = match self.reader.entities(std::slice::from_ref(&key)) {
            Ok(mut states) => states.pop().flatten(),
            Err(error) => {
                tracing::error!(%error, "reading a stock level failed");
                return None;
            }
        };
        let quantity = match decode_level(&key, state.as_deref()) {
            Ok(quantity) => quantity,
            Err(corrupt) => {
                tracing::error!(?corrupt, "a stored stock level is corrupt");
                return None;
            }
        };
        Some(StockLevel {
            warehouse,
            sku,
            quantity,
            partition,
            as_of_offset,
        })
    }

    fn metrics_text(&self) -> String {
        let mut text = self.registry.render();
        text.push_str(&self.status.observed().metrics_text);
        text
    }
}
