//! The Clerk's configuration (`core.config` and `clerk.config`) and the
//! small types every part of the core shares.

use std::fmt;

use protocol::peer::{MAX_CLUSTER_ID_BYTES, MAX_PEER_FRAME_BYTES};

/// A monotonic time in milliseconds, passed in by the shell: the core never
/// reads a clock.
pub type Millis = u64;

/// An instance's fixed id, `0..instance_count`.
pub type InstanceId = u32;

/// The largest cluster the core supports: instance sets are one `u64`.
pub const MAX_INSTANCES: u32 = 64;

/// `core.InstanceStatus` as far as the Clerk needs it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum InstanceStatus {
    Starting,
    Recovering,
    Ready,
    Halted,
}

impl InstanceStatus {
    /// `core.Instance`'s transitions.
    pub fn may_become(self, next: InstanceStatus) -> bool {
        use InstanceStatus::*;
        matches!(
            (self, next),
            (Starting, Recovering) | (Recovering, Ready) | (Starting | Recovering | Ready, Halted)
        )
    }
}

/// Every bound and delay of the Clerk. `Default` holds the spec's values
/// for instance 0 of the default cluster.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClerkConfig {
    pub instance_id: InstanceId,
    pub instance_count: u32,
    pub required_copies: u32,
    pub input_partitions: u32,
    pub cluster_id: String,
    pub max_unagreed_records: u64,
    /// Peer copies are kept up to `consumed_offset + copy_lookahead`.
    pub copy_lookahead: u64,
    pub max_peer_frame_bytes: usize,
    pub max_peer_queue_frames: u32,
    pub publish_step_delay: Millis,
    pub peer_liveness_timeout: Millis,
    pub heartbeat_interval: Millis,
    pub reconnect_initial_backoff: Millis,
    pub reconnect_max_backoff: Millis,
    pub stable_link_duration: Millis,
    pub published_slot_retention: Millis,
    /// A link still connecting this long after it was opened is closed.
    pub handshake_timeout: Millis,
    /// Inbound links accepted beyond this many still connecting are refused.
    pub max_inbound_connecting: u32,
}

impl Default for ClerkConfig {
    fn default() -> Self {
        let max_unagreed_records = 8192;
        let peer_liveness_timeout = 1_000;
        Self {
            instance_id: 0,
            instance_count: 4,
            required_copies: 3,
            input_partitions: 1,
            cluster_id: "tribunal".to_owned(),
            max_unagreed_records,
            copy_lookahead: max_unagreed_records,
            max_peer_frame_bytes: MAX_PEER_FRAME_BYTES,
            max_peer_queue_frames: 1024,
            publish_step_delay: 50,
            peer_liveness_timeout,
            heartbeat_interval: peer_liveness_timeout / 4,
            reconnect_initial_backoff: 50,
            reconnect_max_backoff: 5_000,
            stable_link_duration: 5_000,
            published_slot_retention: peer_liveness_timeout,
            handshake_timeout: 2_000,
            max_inbound_connecting: 16,
        }
    }
}

/// A configuration the Clerk cannot run with.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("instance_count {0} is outside 1..={MAX_INSTANCES}")]
    InstanceCount(u32),
    #[error("instance_id {id} is not below instance_count {count}")]
    InstanceId { id: u32, count: u32 },
    #[error("required_copies {required} is outside 2..=instance_count ({count})")]
    RequiredCopies { required: u32, count: u32 },
    #[error("input_partitions must be at least 1")]
    NoPartitions,
    #[error("cluster_id is longer than {MAX_CLUSTER_ID_BYTES} bytes")]
    ClusterIdTooLong,
    #[error("{0} must be positive")]
    NotPositive(&'static str),
    #[error("max_peer_frame_bytes {0} holds no copy")]
    FrameTooSmall(usize),
}

impl ClerkConfig {
    /// spec: core.RequiredCopiesWithinCluster
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !(1..=MAX_INSTANCES).contains(&self.instance_count) {
            return Err(ConfigError::InstanceCount(self.instance_count));
        }
        if self.instance_id >= self.instance_count {
            return Err(ConfigError::InstanceId {
                id: self.instance_id,
                count: self.instance_count,
            });
        }
        if !(2..=self.instance_count).contains(&self.required_copies) {
            return Err(ConfigError::RequiredCopies {
                required: self.required_copies,
                count: self.instance_count,
            });
        }
        if self.input_partitions == 0 {
            return Err(ConfigError::NoPartitions);
        }
        if self.cluster_id.len() > MAX_CLUSTER_ID_BYTES {
            return Err(ConfigError::ClusterIdTooLong);
        }
        let positive = [
            ("max_unagreed_records", self.max_unagreed_records),
            (
                "max_peer_queue_frames",
                u64::from(self.max_peer_queue_frames),
            ),
            ("peer_liveness_timeout", self.peer_liveness_timeout),
            ("heartbeat_interval", self.heartbeat_interval),
            ("reconnect_initial_backoff", self.reconnect_initial_backoff),
            ("handshake_timeout", self.handshake_timeout),
            (
                "max_inbound_connecting",
                u64::from(self.max_inbound_connecting),
            ),
        ];
        if let Some((name, _)) = positive.iter().find(|(_, value)| *value == 0) {
            return Err(ConfigError::NotPositive(name));
        }
        if self.copies_per_frame() == 0 {
            return Err(ConfigError::FrameTooSmall(self.max_peer_frame_bytes));
        }
        Ok(())
    }

    /// The most copies one frame carries.
    pub fn copies_per_frame(&self) -> usize {
        protocol::peer::copies_per_frame(self.max_peer_frame_bytes, self.cluster_id.len())
    }

    /// Every instance id but this one, ascending.
    pub fn peer_ids(&self) -> impl Iterator<Item = InstanceId> + '_ {
        (0..self.instance_count).filter(|&id| id != self.instance_id)
    }
}

/// A set of instance ids, one bit each.
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct InstanceSet(u64);

impl InstanceSet {
    pub const EMPTY: InstanceSet = InstanceSet(0);

    pub fn insert(&mut self, id: InstanceId) {
        assert!(id < MAX_INSTANCES, "instance ids are below {MAX_INSTANCES}");
        self.0 |= 1 << id;
    }

    pub fn remove(&mut self, id: InstanceId) -> bool {
        let present = self.contains(id);
        if id < MAX_INSTANCES {
            self.0 &= !(1 << id);
        }
        present
    }

    pub fn contains(self, id: InstanceId) -> bool {
        id < MAX_INSTANCES && self.0 & (1 << id) != 0
    }

    pub fn len(self) -> u32 {
        self.0.count_ones()
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// Ids in ascending order.
    pub fn iter(self) -> impl Iterator<Item = InstanceId> {
        (0..MAX_INSTANCES).filter(move |&id| self.contains(id))
    }
}

impl FromIterator<InstanceId> for InstanceSet {
    fn from_iter<I: IntoIterator<Item = InstanceId>>(ids: I) -> Self {
        let mut set = Self::EMPTY;
        ids.into_iter().for_each(|id| set.insert(id));
        set
    }
}

impl fmt::Debug for InstanceSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.iter()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_is_the_spec_and_valid() {
        let config = ClerkConfig::default();
        assert_eq!(config.validate(), Ok(()));
        assert_eq!(config.heartbeat_interval, 250);
        assert_eq!(config.peer_ids().collect::<Vec<_>>(), vec![1, 2, 3]);
        assert!(config.copies_per_frame() > 20_000);
    }

    /// covers: core.RequiredCopiesWithinCluster
    #[test]
    fn impossible_clusters_are_refused() {
        let with = |edit: fn(&mut ClerkConfig)| {
            let mut config = ClerkConfig::default();
            edit(&mut config);
            config.validate()
        };
        assert_eq!(
            with(|c| c.required_copies = 1),
            Err(ConfigError::RequiredCopies {
                required: 1,
                count: 4
            })
        );
        assert!(with(|c| c.required_copies = 5).is_err());
        assert_eq!(with(|c| c.required_copies = 2), Ok(()));
        assert!(with(|c| c.instance_id = 4).is_err());
        assert!(with(|c| c.instance_count = 65).is_err());
        assert!(with(|c| c.input_partitions = 0).is_err());
        assert!(with(|c| c.max_peer_frame_bytes = 100).is_err());
        assert_eq!(
            with(|c| c.heartbeat_interval = 0),
            Err(ConfigError::NotPositive("heartbeat_interval"))
        );
    }

    #[test]
    fn instance_status_moves_only_forward() {
        use InstanceStatus::*;
        assert!(Starting.may_become(Recovering));
        assert!(Recovering.may_become(Ready));
        assert!(Ready.may_become(Halted));
        assert!(!Ready.may_become(Recovering));
        assert!(!Halted.may_become(Ready));
        assert!(!Starting.may_become(Ready));
    }

    #[test]
    fn instance_sets_hold_ids() {
        let mut set: InstanceSet = [3, 0, 2].into_iter().collect();
        assert_eq!(set.len(), 3);
        assert!(set.remove(2));
        assert!(!set.remove(2));
        assert_eq!(set.iter().collect::<Vec<_>>(), vec![0, 3]);
        assert!(!set.contains(70));
    }
}
