//! The instance lifecycle (`spec/recovery.allium`): starting, recovering,
//! ready, halted. A deterministic core: the node feeds it what the Ledger
//! and the broker report and applies the decisions it returns.

use std::collections::BTreeMap;

use protocol::position::{Offset, Partition};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InstanceStatus {
    Starting,
    Recovering,
    Ready,
    Halted,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HaltReason {
    /// The Ledger could not be opened or trusted.
    Storage,
    /// This instance's own output differed from an agreed digest.
    SelfDivergence,
    /// Retention removed records this instance has not applied.
    InputTruncated,
    /// The log ends below offsets this instance already applied.
    InputRewound,
    /// A group commit or a Ledger read failed.
    DurableIoFailure,
    /// The domain broke its contract (panic, malformed outcome).
    DomainFailure,
}

/// Why and where an instance halted, for /health and the alarm log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HaltRecord {
    pub reason: HaltReason,
    pub partition: Option<Partition>,
    pub offset: Option<Offset>,
}

/// What the broker reports for one partition when recovery starts; the
/// lifecycle asserts the start is never past the end.
///
/// spec: recovery.TargetInsideLog
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LogBounds {
    /// Earliest offset the broker still holds.
    pub log_start_offset: Offset,
    /// Next offset to be written.
    pub log_end_offset: Offset,
}

/// What one partition must reach before the instance is ready; fixed once.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CatchUpTarget {
    pub bounds: LogBounds,
    pub applied_offset: Offset,
}

impl CatchUpTarget {
    fn reached(&self) -> bool {
        self.applied_offset >= self.bounds.log_end_offset - 1
    }
}

/// A partition to consume from `offset` on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReplayFrom {
    pub partition: Partition,
    pub offset: Offset,
}

#[derive(Debug, PartialEq, Eq)]
pub enum LifecycleError {
    InstanceIdOutOfRange {
        instance_id: u32,
        instance_count: u32,
    },
    NotStarting(InstanceStatus),
    PartitionsMismatch {
        expected: usize,
        reported: usize,
    },
}

/// One start of an instance process.
#[derive(Debug)]
pub struct Lifecycle {
    instance_id: u32,
    status: InstanceStatus,
    targets: BTreeMap<Partition, CatchUpTarget>,
    halt: Option<HaltRecord>,
}

impl Lifecycle {
    /// spec: recovery.ProcessStartCreatesStartingInstance, core.InstanceIdInRange
    pub fn start(instance_id: u32, instance_count: u32) -> Result<Self, LifecycleError> {
        if instance_id >= instance_count {
            return Err(LifecycleError::InstanceIdOutOfRange {
                instance_id,
                instance_count,
            });
        }
        Ok(Self {
            instance_id,
            status: InstanceStatus::Starting,
            targets: BTreeMap::new(),
            halt: None,
        })
    }

    pub fn instance_id(&self) -> u32 {
        self.instance_id
    }

    pub fn status(&self) -> InstanceStatus {
        self.status
    }

    pub fn halt_record(&self) -> Option<HaltRecord> {
        self.halt
    }

    /// Copies, heartbeats and progress go to peers only from a ready
    /// instance: a recovering one advertises nothing.
    ///
    /// spec: recovery.ReadinessGate, recovery.NoCopiesAdvertisedBeforeReady, recovery.NoPublicationBeforeReady
    pub fn is_advertising(&self) -> bool {
        self.status == InstanceStatus::Ready
    }

    /// The Ledger has read the stored watermarks (`-1` for a partition with
    /// none) and the broker has reported each partition's bounds: recovery
    /// begins, the catch-up targets are fixed, and each partition either
    /// replays from its watermark + 1 or halts the instance.
    ///
    /// spec: core.WatermarkLowerBound, recovery.RecoveryBeginsWhenWatermarksLoaded, recovery.CatchUpTargetFixedOnEnteringRecovery, recovery.ReplayResumesAfterWatermark, recovery.WipedInstanceRebuildsFromOffsetZero, recovery.TruncatedInputHaltsRecovery, recovery.RewoundInputHaltsRecovery, recovery.RecoveryStartsInsideRetainedLog, recovery.NeverFastForwardFromPeers
    pub fn watermarks_loaded(
        &mut self,
        partitions: &[(Partition, Offset, LogBounds)],
    ) -> Result<Vec<ReplayFrom>, LifecycleError> {
        if self.status != InstanceStatus::Starting {
            return Err(LifecycleError::NotStarting(self.status));
        }
        self.status = InstanceStatus::Recovering;
        for &(partition, applied_offset, bounds) in partitions {
            assert!(applied_offset >= -1, "a watermark is an offset or -1");
            assert!(
                bounds.log_start_offset <= bounds.log_end_offset,
                "a broker reports a log start at or below its log end"
            );
            self.targets.insert(
                partition,
                CatchUpTarget {
                    bounds,
                    applied_offset,
                },
            );
        }
        let mut replays = Vec::with_capacity(self.targets.len());
        for (&partition, target) in &self.targets {
            let next = target.applied_offset + 1;
            if target.bounds.log_start_offset > next {
                self.halt_with(HaltReason::InputTruncated, partition, next);
                return Ok(Vec::new());
            }
            if target.bounds.log_end_offset < next {
                let end = target.bounds.log_end_offset;
                self.halt_with(HaltReason::InputRewound, partition, end);
                return Ok(Vec::new());
            }
            replays.push(ReplayFrom {
                partition,
                offset: next,
            });
        }
        self.become_ready_if_caught_up();
        Ok(replays)
    }

    /// The durable watermark of a partition advanced (after a group commit).
    ///
    /// spec: recovery.CaughtUpInstanceBecomesReady, recovery.ReadyOnlyWhenCaughtUp, recovery.WatermarkNeverDecreases
    pub fn on_applied(&mut self, partition: Partition, applied_offset: Offset) {
        let Some(target) = self.targets.get_mut(&partition) else {
            return;
        };
        assert!(
            applied_offset >= target.applied_offset,
            "the durable watermark never decreases"
        );
        target.applied_offset = applied_offset;
        self.become_ready_if_caught_up();
    }

    /// Halts for a reason found outside recovery (self-divergence, a failed
    /// write, a broken domain). Halted is terminal for the process.
    ///
    /// spec: recovery.SelfDivergenceHaltsReadyInstance, recovery.SelfDivergenceHaltsRecoveringInstance
    pub fn halt(
        &mut self,
        reason: HaltReason,
        partition: Option<Partition>,
        offset: Option<Offset>,
    ) {
        if self.status == InstanceStatus::Halted {
            return;
        }
        self.status = InstanceStatus::Halted;
        self.halt = Some(HaltRecord {
            reason,
            partition,
            offset,
        });
    }

    fn halt_with(&mut self, reason: HaltReason, partition: Partition, offset: Offset) {
        self.halt(reason, Some(partition), Some(offset));
    }

    fn become_ready_if_caught_up(&mut self) {
        if self.status == InstanceStatus::Recovering
            && self.targets.values().all(CatchUpTarget::reached)
        {
            self.status = InstanceStatus::Ready;
        }
    }
}

#[cfg(test)]
mod tests;
