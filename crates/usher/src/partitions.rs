//! Every input partition's consumer on one instance.

use std::collections::BTreeMap;

use protocol::position::{Offset, Partition};

use crate::config::{ConfigError, UsherConfig};
use crate::consumer::{Assignment, ConsumerEffect, PartitionConsumer};

/// An assignment that contradicts the Usher's state or recovery's.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AssignError {
    #[error("partition {partition} is outside the input topic's {input_partitions} partitions")]
    PartitionOutOfRange {
        partition: Partition,
        input_partitions: u32,
    },
    #[error("partition {partition} is already assigned")]
    AlreadyAssigned { partition: Partition },
    #[error("watermark {applied_offset} is below -1")]
    WatermarkBelowStart { applied_offset: Offset },
    /// Recovery halts on a rewound log instead of replaying it.
    #[error("catch-up target {catch_up_target} is at or below watermark {applied_offset}")]
    TargetBeforeWatermark {
        catch_up_target: Offset,
        applied_offset: Offset,
    },
}

/// The Usher of one instance: at most one consumer per input partition.
///
/// spec: usher.OneConsumerPerPartition, usher.ConsumerPartitionInRange
#[derive(Debug)]
pub struct Usher {
    config: UsherConfig,
    /// The Ledger's disk-low pause, applied to every partition.
    intake_paused: bool,
    consumers: BTreeMap<Partition, PartitionConsumer>,
}

impl Usher {
    pub fn new(config: UsherConfig) -> Result<Self, ConfigError> {
        config.check()?;
        Ok(Self {
            config,
            intake_paused: false,
            consumers: BTreeMap::new(),
        })
    }

    pub fn config(&self) -> &UsherConfig {
        &self.config
    }

    /// Starts consuming a partition at its watermark + 1. The consumer
    /// starts paused while the Ledger's intake is paused.
    ///
    /// spec: usher.AssignPartitionFromWatermark
    pub fn assign(
        &mut self,
        assignment: Assignment,
    ) -> Result<&mut PartitionConsumer, AssignError> {
        let partition = assignment.partition;
        if partition >= self.config.input_partitions {
            return Err(AssignError::PartitionOutOfRange {
                partition,
                input_partitions: self.config.input_partitions,
            });
        }
        if self.consumers.contains_key(&partition) {
            return Err(AssignError::AlreadyAssigned { partition });
        }
        if assignment.applied_offset < -1 {
            return Err(AssignError::WatermarkBelowStart {
                applied_offset: assignment.applied_offset,
            });
        }
        if assignment.catch_up_target <= assignment.applied_offset {
            return Err(AssignError::TargetBeforeWatermark {
                catch_up_target: assignment.catch_up_target,
                applied_offset: assignment.applied_offset,
            });
        }
        let consumer = PartitionConsumer::assign(self.config, assignment, self.intake_paused);
        Ok(self.consumers.entry(partition).or_insert(consumer))
    }

    pub fn consumer(&self, partition: Partition) -> Option<&PartitionConsumer> {
        self.consumers.get(&partition)
    }

    pub fn consumer_mut(&mut self, partition: Partition) -> Option<&mut PartitionConsumer> {
        self.consumers.get_mut(&partition)
    }

    /// The consumers in partition order.
    pub fn consumers(&self) -> impl Iterator<Item = &PartitionConsumer> {
        self.consumers.values()
    }

    /// The Ledger's disk is low: every active partition pauses. Records
    /// already handed on are still evaluated and committed.
    pub fn pause_intake(&mut self) -> Vec<(Partition, ConsumerEffect)> {
        self.set_intake_paused(true)
    }

    /// The Ledger's disk recovered: every partition not at one of its own
    /// bounds resumes.
    pub fn resume_intake(&mut self) -> Vec<(Partition, ConsumerEffect)> {
        self.set_intake_paused(false)
    }

    fn set_intake_paused(&mut self, paused: bool) -> Vec<(Partition, ConsumerEffect)> {
        self.intake_paused = paused;
        self.consumers
            .iter_mut()
            .filter_map(|(&partition, consumer)| {
                consumer
                    .set_intake_paused(paused)
                    .map(|effect| (partition, effect))
            })
            .collect()
    }
}
