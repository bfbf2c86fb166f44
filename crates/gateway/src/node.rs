//! What the HTTP API needs from the node it fronts. The node implements
//! [`NodeHandle`] by wiring the gateway core, the producer, the outcome
//! consumer and the instance's state; tests implement it with fakes.

use std::collections::BTreeMap;
use std::future::Future;

use protocol::position::{Offset, Partition};
use serde::Serialize;

use crate::core::SubmitAnswer;
use crate::key_index::CommandLookup;
use crate::validation::ValidSubmission;

/// Whether a submission may be read at all, decided before its body is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Admission {
    Open,
    /// The instance has halted: clients go to another node.
    Halted,
    /// `max_pending_submissions` are waiting.
    Overloaded,
}

/// `core.InstanceStatus`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum InstanceStatus {
    Starting,
    Recovering,
    Ready,
    Halted,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SuspectedPeer {
    pub instance_id: u32,
    pub reason: String,
}

/// The body of GET /health.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct HealthSnapshot {
    pub status: InstanceStatus,
    pub instance_id: u32,
    pub self_suspected: bool,
    pub suspected_peers: Vec<SuspectedPeer>,
    pub halted_partitions: Vec<Partition>,
    /// Per partition: high watermark - 1 - applied offset.
    pub lag: BTreeMap<Partition, i64>,
}

impl HealthSnapshot {
    /// Whether local durable state may be served (`gateway.StockLookupAnswersLocalDurableState`).
    pub fn serves_reads(&self) -> bool {
        self.status == InstanceStatus::Ready && !self.self_suspected
    }
}

/// One stock level from the Ledger's durable state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StockLevel {
    pub warehouse: String,
    pub sku: String,
    /// 0 when never written.
    pub quantity: i64,
    pub partition: Partition,
    /// The partition's applied offset the level is as of.
    pub as_of_offset: Offset,
}

/// The node behind the HTTP API.
///
/// Futures need not be `Send`: actix-web runs each worker on one thread.
pub trait NodeHandle: Send + Sync + 'static {
    /// Checked before a submission's body is read.
    fn admission(&self) -> Admission;

    /// Packs a validated submission and resolves with its agreed outcome or
    /// the reason there is none (overloaded, produce_failed,
    /// submit_timeout, instance_halted). Dropping the future abandons the
    /// submission (the client went away).
    fn submit(&self, submission: ValidSubmission) -> impl Future<Output = SubmitAnswer>;

    /// The owner of an idempotency key, in `partition` when the client
    /// named a sku.
    fn lookup_command(
        &self,
        key: String,
        partition: Option<Partition>,
    ) -> impl Future<Output = CommandLookup>;

    /// The level from durable state; `None` when the instance cannot serve
    /// reads any more (it stopped being ready meanwhile).
    fn stock_level(
        &self,
        warehouse: String,
        sku: String,
    ) -> impl Future<Output = Option<StockLevel>>;

    fn health(&self) -> HealthSnapshot;

    /// Prometheus text exposition of every component's metrics.
    fn metrics_text(&self) -> String;
}
