//! The instance's lifecycle and what /health shows, shared by the actors
//! that change it and the gateway that reports it.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use protocol::position::{Offset, Partition};

use crate::lifecycle::{HaltReason, HaltRecord, InstanceStatus, Lifecycle};

/// Called with the new status whenever it changes (to tell the Clerk).
pub type StatusListener = Box<dyn FnMut(InstanceStatus) + Send>;

/// What the periodic refresh copies in from the actors.
#[derive(Clone, Debug, Default)]
pub struct Observed {
    /// Per partition: the log end (next offset) minus one minus applied.
    pub lag: BTreeMap<Partition, i64>,
    pub self_suspected: bool,
    pub suspected_peers: Vec<(u32, String)>,
    pub halted_partitions: Vec<Partition>,
    /// Prometheus text of the actors that are not the gateway.
    pub metrics_text: String,
}

struct Inner {
    lifecycle: Lifecycle,
    /// Each partition's durable watermark.
    applied: BTreeMap<Partition, Offset>,
    listeners: Vec<StatusListener>,
    observed: Observed,
}

/// Cheap to clone; every clone is the same instance's status.
#[derive(Clone)]
pub struct NodeStatus {
    inner: Arc<Mutex<Inner>>,
}

impl std::fmt::Debug for NodeStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeStatus")
            .field("status", &self.status())
            .finish_non_exhaustive()
    }
}

impl NodeStatus {
    pub fn new(lifecycle: Lifecycle, applied: BTreeMap<Partition, Offset>) -> Self {
        Self {
            inner: Arc::new(Mutex::new(Inner {
                lifecycle,
                applied,
                listeners: Vec::new(),
                observed: Observed::default(),
            })),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock is a bug elsewhere; the status
        // itself is still consistent (every change is one assignment).
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Registers a listener and calls it once with the current status.
    pub fn listen(&self, mut listener: StatusListener) {
        let mut inner = self.lock();
        listener(inner.lifecycle.status());
        inner.listeners.push(listener);
    }

    pub fn status(&self) -> InstanceStatus {
        self.lock().lifecycle.status()
    }

    pub fn is_halted(&self) -> bool {
        self.status() == InstanceStatus::Halted
    }

    pub fn halt_record(&self) -> Option<HaltRecord> {
        self.lock().lifecycle.halt_record()
    }

    pub fn instance_id(&self) -> u32 {
        self.lock().lifecycle.instance_id()
    }

    pub fn on_applied(&self, partition: Partition, applied_offset: Offset) {
        self.lock().applied.insert(partition, applied_offset);
        self.change(|lifecycle| lifecycle.on_applied(partition, applied_offset));
    }

    pub fn applied_offset(&self, partition: Partition) -> Option<Offset> {
        self.lock().applied.get(&partition).copied()
    }

    pub fn halt(&self, reason: HaltReason, partition: Option<Partition>, offset: Option<Offset>) {
        self.change(|lifecycle| lifecycle.halt(reason, partition, offset));
    }

    fn change(&self, apply: impl FnOnce(&mut Lifecycle)) {
        let mut inner = self.lock();
        let before = inner.lifecycle.status();
        apply(&mut inner.lifecycle);
        let after = inner.lifecycle.status();
        if after != before {
            tracing::info!(?before, ?after, "instance status changed");
            for listener in &mut inner.listeners {
                listener(after);
            }
        }
    }

    pub fn observe(&self, observed: Observed) {
        self.lock().observed = observed;
    }

    pub fn observed(&self) -> Observed {
        self.lock().observed.clone()
    }
}
