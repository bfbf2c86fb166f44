//! Watching the cluster from outside: each node's /health and /metrics, and
//! the input topic's log ends from the broker. Blocking (it runs on the
//! injector's and the runner's own threads); every wait is a poll of a real
//! condition with a deadline, never a sleep standing in for one.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use broker::{BrokerProfile, Topics};
use protocol::position::Offset;
use rdkafka::consumer::{BaseConsumer, Consumer as _};
use rdkafka::error::KafkaError;
use serde::{Deserialize, Serialize};
use tribunal::probe;

use crate::history::InstanceId;

/// How often a condition is polled: each poll is a few HTTP requests.
const POLL_INTERVAL: Duration = Duration::from_millis(50);

/// How often a starting node is probed for its first answer.
const TIGHT_POLL_INTERVAL: Duration = Duration::from_millis(5);

/// A broker round trip for the log ends.
const BROKER_TIMEOUT: Duration = Duration::from_secs(5);

/// What /health and /metrics show of one node.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Progress {
    /// `starting`, `recovering`, `ready`, `halted`.
    pub status: String,
    pub self_suspected: bool,
    /// `(peer, reason)` pairs.
    pub suspected_peers: Vec<(InstanceId, String)>,
    /// Applied offset per input partition (-1 before the first record).
    pub applied: Vec<Offset>,
    /// Records in the agreement table not yet published, summed.
    pub unsettled: u64,
    /// Peers this node began to suspect for a divergent copy, ever.
    pub divergent_suspicions: u64,
}

impl Progress {
    pub fn is_ready(&self) -> bool {
        self.status == "ready"
    }

    /// Ready, and applied up to the log `ends` (next offsets to be written).
    pub fn caught_up(&self, ends: &[Offset]) -> bool {
        self.is_ready()
            && self.applied.len() == ends.len()
            && self
                .applied
                .iter()
                .zip(ends)
                .all(|(&applied, &end)| applied >= end - 1)
    }
}

#[derive(Deserialize)]
struct HealthBody {
    status: String,
    #[serde(default)]
    self_suspected: bool,
    #[serde(default)]
    suspected_peers: Vec<SuspectedBody>,
}

#[derive(Deserialize)]
struct SuspectedBody {
    instance_id: InstanceId,
    reason: String,
}

/// The cluster's gateways and broker, as seen from outside.
pub struct Observer {
    nodes: Vec<SocketAddr>,
    topics: Topics,
    consumer: BaseConsumer,
}

impl std::fmt::Debug for Observer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Observer")
            .field("nodes", &self.nodes)
            .finish_non_exhaustive()
    }
}

/// Why instances were not caught up in time.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, thiserror::Error)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum NotCaughtUp {
    #[error("the broker did not give the input log ends: {error}")]
    LogEnds { error: String },
    /// What each late instance last showed (`None`: it did not answer).
    #[error("not caught up after {waited_ms} ms: {behind:?} (log ends {ends:?})")]
    Behind {
        waited_ms: u128,
        ends: Vec<Offset>,
        behind: Vec<(InstanceId, Option<Progress>)>,
    },
}

impl Observer {
    pub fn new(
        profile: &BrokerProfile,
        partitions: u32,
        nodes: Vec<SocketAddr>,
    ) -> Result<Observer, KafkaError> {
        Ok(Observer {
            nodes,
            topics: Topics::new(partitions),
            consumer: profile.consumer_config("chaos-observer").create()?,
        })
    }

    /// The input topic's log end (next offset) per partition.
    pub fn input_ends(&self) -> Result<Vec<Offset>, KafkaError> {
        (0..self.topics.partitions)
            .map(|partition| {
                let partition = i32::try_from(partition).expect("partition ids fit i32");
                self.consumer
                    .fetch_watermarks(&self.topics.input, partition, BROKER_TIMEOUT)
                    .map(|(_, high)| high)
            })
            .collect()
    }

    /// One node's progress; `None` when it does not answer.
    pub fn progress(&self, instance: InstanceId) -> Option<Progress> {
        let addr = *self.nodes.get(instance as usize)?;
        let health = probe::get(addr, "/health").ok()?;
        let health: HealthBody = serde_json::from_slice(&health.body).ok()?;
        let metrics = probe::get(addr, "/metrics").ok()?.text();
        let applied = (0..self.topics.partitions)
            .map(|partition| {
                let series = format!("tribunal_usher_applied_offset{{partition=\"{partition}\"}}");
                metric(&metrics, &series).unwrap_or(-1)
            })
            .collect();
        let unsettled = (0..self.topics.partitions)
            .map(|partition| {
                let series =
                    format!("tribunal_clerk_unsettled_records{{partition=\"{partition}\"}}");
                metric(&metrics, &series).map_or(0, |count| count.max(0).unsigned_abs())
            })
            .sum();
        let divergent_suspicions = metric(
            &metrics,
            "tribunal_clerk_peers_suspected_total{reason=\"divergent_copy\"}",
        )
        .map_or(0, |count| count.max(0).unsigned_abs());
        Some(Progress {
            status: health.status,
            self_suspected: health.self_suspected,
            suspected_peers: health
                .suspected_peers
                .into_iter()
                .map(|peer| (peer.instance_id, peer.reason))
                .collect(),
            applied,
            unsettled,
            divergent_suspicions,
        })
    }

    /// The first progress a (re)starting node shows, polled tightly so a
    /// short recovery is still seen.
    pub fn first_progress(&self, instance: InstanceId, timeout: Duration) -> Option<Progress> {
        let started = Instant::now();
        while started.elapsed() < timeout {
            if let Some(progress) = self.progress(instance) {
                return Some(progress);
            }
            std::thread::sleep(TIGHT_POLL_INTERVAL);
        }
        None
    }

    /// Polls until `holds` is true of every instance's progress, or
    /// `timeout` passes; returns how long it took.
    pub fn wait_until(
        &self,
        instances: &[InstanceId],
        timeout: Duration,
        holds: impl Fn(&Progress) -> bool,
    ) -> Result<Duration, Vec<(InstanceId, Option<Progress>)>> {
        let started = Instant::now();
        loop {
            let behind: Vec<(InstanceId, Option<Progress>)> = instances
                .iter()
                .map(|&instance| (instance, self.progress(instance)))
                .filter(|(_, progress)| !progress.as_ref().is_some_and(&holds))
                .collect();
            if behind.is_empty() {
                return Ok(started.elapsed());
            }
            if started.elapsed() > timeout {
                return Err(behind);
            }
            std::thread::sleep(POLL_INTERVAL);
        }
    }

    /// Waits until `instances` are ready and have applied the input log
    /// up to its end as of the call (and, with `settled`, hold no
    /// unpublished record either).
    pub fn wait_caught_up(
        &self,
        instances: &[InstanceId],
        timeout: Duration,
        settled: bool,
    ) -> Result<Duration, NotCaughtUp> {
        let started = Instant::now();
        let ends = self.input_ends().map_err(|error| NotCaughtUp::LogEnds {
            error: error.to_string(),
        })?;
        self.wait_until(instances, timeout, |progress| {
            progress.caught_up(&ends) && (!settled || progress.unsettled == 0)
        })
        .map(|_| started.elapsed())
        .map_err(|behind| NotCaughtUp::Behind {
            waited_ms: started.elapsed().as_millis(),
            ends,
            behind,
        })
    }
}

/// The value of one series in Prometheus text.
pub fn metric(text: &str, series: &str) -> Option<i64> {
    text.lines().find_map(|line| {
        let value = line.strip_prefix(series)?.strip_prefix(' ')?;
        value.trim().parse::<f64>().ok().map(|value| value as i64)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn series_values_are_found_by_exact_name_and_labels() {
        let text = "# TYPE x gauge\n\
                    tribunal_usher_applied_offset{partition=\"0\"} 41\n\
                    tribunal_usher_applied_offset{partition=\"10\"} 7\n\
                    tribunal_clerk_peers_suspected_total 3\n";
        let applied = |p: &str| {
            metric(
                text,
                &format!("tribunal_usher_applied_offset{{partition=\"{p}\"}}"),
            )
        };
        assert_eq!(applied("0"), Some(41));
        assert_eq!(applied("10"), Some(7));
        assert_eq!(applied("1"), None);
        assert_eq!(
            metric(text, "tribunal_clerk_peers_suspected_total"),
            Some(3)
        );
        assert_eq!(metric(text, "tribunal_clerk_peers_suspected"), None);
    }

    #[test]
    fn caught_up_needs_ready_and_every_partition_at_its_end() {
        let progress = |status: &str, applied: Vec<Offset>| Progress {
            status: status.to_owned(),
            self_suspected: false,
            suspected_peers: Vec::new(),
            applied,
            unsettled: 0,
            divergent_suspicions: 0,
        };
        assert!(progress("ready", vec![9, 4]).caught_up(&[10, 5]));
        assert!(!progress("ready", vec![8, 4]).caught_up(&[10, 5]));
        assert!(!progress("recovering", vec![9, 4]).caught_up(&[10, 5]));
        assert!(progress("ready", vec![-1]).caught_up(&[0]));
    }
}
