//! What `/health` and `/metrics` see of the Clerk, and its Prometheus text.

use std::collections::BTreeMap;
use std::fmt::Write;

use protocol::peer::RejectionReason;

use crate::clerk::{Clerk, ClerkCounters};
use crate::config::{InstanceId, InstanceStatus};
use crate::effect::{HandshakeRejection, SuspicionReason};
use crate::link::{LinkDirection, LinkStatus, LinkView, PeerDialer, PeerView};

/// What the shell itself counts (the core counts frames and suspicion).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ShellCounters {
    /// TCP connections accepted on the peer listener (refused ones too).
    pub inbound_connections: u64,
    /// Dials whose TCP connect failed.
    pub connect_failures: u64,
    /// Reads or writes that failed, or a peer that closed its end.
    pub link_io_failures: u64,
}

/// The Clerk's state at one moment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClerkSnapshot {
    pub instance_id: InstanceId,
    pub status: InstanceStatus,
    /// This instance's own output differed from an agreement.
    pub self_suspected: bool,
    /// Suspected peers and why, ascending by id.
    pub suspected_peers: Vec<(InstanceId, SuspicionReason)>,
    pub peers: BTreeMap<InstanceId, PeerView>,
    pub dialers: BTreeMap<InstanceId, PeerDialer>,
    pub links: Vec<LinkView>,
    /// Slots not yet published, index = partition.
    pub unsettled_records: Vec<usize>,
    /// Publication schedules held (produced or waiting for their turn).
    pub scheduled_publications: usize,
    pub counters: ClerkCounters,
    pub shell: ShellCounters,
}

impl ClerkSnapshot {
    pub(crate) fn of(clerk: &Clerk, shell: ShellCounters) -> Self {
        let config = clerk.config();
        let peer_ids = || config.peer_ids();
        Self {
            instance_id: config.instance_id,
            status: clerk.status(),
            self_suspected: clerk.self_suspected(),
            suspected_peers: clerk.suspected_peers(),
            peers: peer_ids()
                .filter_map(|peer| Some((peer, clerk.peer_view(peer)?.clone())))
                .collect(),
            dialers: peer_ids()
                .filter_map(|peer| Some((peer, clerk.dialer(peer)?.clone())))
                .collect(),
            links: clerk.links().collect(),
            unsettled_records: (0..config.input_partitions)
                .map(|partition| clerk.table(partition).unsettled_count())
                .collect(),
            scheduled_publications: clerk.schedules().count(),
            counters: clerk.counters().clone(),
            shell,
        }
    }

    /// The established outbound link to `peer`, if any.
    pub fn established_outbound_to(&self, peer: InstanceId) -> Option<&LinkView> {
        self.links.iter().find(|link| {
            link.direction == LinkDirection::Outbound
                && link.status == LinkStatus::Established
                && link.peer_id == Some(peer)
        })
    }

    /// The Clerk's metrics in the Prometheus text format. Every label value
    /// a counter can take is written, zero or not, so rates start at once.
    ///
    /// Handshake rejections count under `tribunal_clerk_frames_rejected_total`
    /// with reasons `handshake_timeout` and `too_many_half_open`, as
    /// `clerk.RejectionReason` lists them.
    pub fn prometheus_text(&self) -> String {
        let counters = &self.counters;
        let mut out = String::new();
        let rejected = RejectionReason::ALL
            .iter()
            .map(|reason| {
                let count = counters.frames_rejected.get(reason).copied();
                (reason.as_str(), count.unwrap_or(0))
            })
            .chain(HandshakeRejection::ALL.iter().map(|reason| {
                let count = counters.handshakes_rejected.get(reason).copied();
                (reason.as_str(), count.unwrap_or(0))
            }));
        family(
            &mut out,
            "tribunal_clerk_frames_rejected_total",
            "counter",
            "Peer frames and handshakes rejected, by reason; each closes its connection.",
            rejected.map(|(reason, count)| (label("reason", reason), count)),
        );
        family(
            &mut out,
            "tribunal_clerk_peers_suspected_total",
            "counter",
            "Peers this instance began to suspect, by reason.",
            SuspicionReason::ALL.iter().map(|reason| {
                let count = counters.peers_suspected.get(reason).copied();
                (label("reason", reason.as_str()), count.unwrap_or(0))
            }),
        );
        let plain: [(&str, &str, &str, u64); 9] = [
            (
                "tribunal_clerk_frames_sent_total",
                "counter",
                "Session frames (copies and heartbeats) sealed for peers.",
                counters.frames_sent,
            ),
            (
                "tribunal_clerk_copies_sent_total",
                "counter",
                "Own output copies packed into frames for peers.",
                counters.copies_sent,
            ),
            (
                "tribunal_clerk_frames_accepted_total",
                "counter",
                "Peer frames that passed every check.",
                counters.frames_accepted,
            ),
            (
                "tribunal_clerk_unknown_partition_copies_total",
                "counter",
                "Peer copies for a partition outside this cluster's input partitions.",
                counters.copies_for_unknown_partitions,
            ),
            (
                "tribunal_clerk_unknown_partition_outcomes_total",
                "counter",
                "Outcome records for a partition outside this cluster's input partitions.",
                counters.outcomes_for_unknown_partitions,
            ),
            (
                "tribunal_clerk_inbound_connections_total",
                "counter",
                "TCP connections accepted on the peer listener.",
                self.shell.inbound_connections,
            ),
            (
                "tribunal_clerk_connect_failures_total",
                "counter",
                "Dials to a peer whose TCP connect failed.",
                self.shell.connect_failures,
            ),
            (
                "tribunal_clerk_link_io_failures_total",
                "counter",
                "Peer links closed by a read or write failure or by the peer.",
                self.shell.link_io_failures,
            ),
            (
                "tribunal_clerk_scheduled_publications",
                "gauge",
                "Publication schedules held.",
                self.scheduled_publications as u64,
            ),
        ];
        for (name, kind, help, value) in plain {
            family(&mut out, name, kind, help, [(String::new(), value)]);
        }
        let gauges: [(&str, &str, u64); 3] = [
            (
                "tribunal_clerk_self_suspected",
                "1 once this instance's own output differed from an agreement.",
                u64::from(self.self_suspected),
            ),
            (
                "tribunal_clerk_peers_live",
                "Peers heard from within the liveness timeout.",
                self.peers.values().filter(|view| view.live).count() as u64,
            ),
            (
                "tribunal_clerk_peers_suspected",
                "Peers currently suspected.",
                self.suspected_peers.len() as u64,
            ),
        ];
        for (name, help, value) in gauges {
            family(&mut out, name, "gauge", help, [(String::new(), value)]);
        }
        let links = [LinkDirection::Outbound, LinkDirection::Inbound]
            .into_iter()
            .flat_map(|direction| {
                [LinkStatus::Connecting, LinkStatus::Established].map(|status| (direction, status))
            })
            .map(|(direction, status)| {
                let count = self
                    .links
                    .iter()
                    .filter(|link| link.direction == direction && link.status == status)
                    .count();
                let labels = format!(
                    "{{direction=\"{}\",status=\"{}\"}}",
                    direction_name(direction),
                    status_name(status)
                );
                (labels, count as u64)
            });
        family(
            &mut out,
            "tribunal_clerk_links",
            "gauge",
            "Open peer links by direction and status.",
            links,
        );
        family(
            &mut out,
            "tribunal_clerk_unsettled_records",
            "gauge",
            "Records in the agreement table not yet published, by input partition.",
            self.unsettled_records
                .iter()
                .enumerate()
                .map(|(partition, &count)| {
                    (label("partition", &partition.to_string()), count as u64)
                }),
        );
        out
    }
}

fn label(name: &str, value: &str) -> String {
    format!("{{{name}=\"{value}\"}}")
}

fn direction_name(direction: LinkDirection) -> &'static str {
    match direction {
        LinkDirection::Outbound => "outbound",
        LinkDirection::Inbound => "inbound",
    }
}

fn status_name(status: LinkStatus) -> &'static str {
    match status {
        LinkStatus::Connecting => "connecting",
        LinkStatus::Established => "established",
    }
}

/// One metric family: its HELP and TYPE lines, then one sample per label set.
fn family(
    out: &mut String,
    name: &str,
    kind: &str,
    help: &str,
    samples: impl IntoIterator<Item = (String, u64)>,
) {
    // Writing to a String cannot fail.
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
    for (labels, value) in samples {
        let _ = writeln!(out, "{name}{labels} {value}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ClerkConfig;

    #[test]
    fn every_reason_is_written_with_its_count() {
        let clerk = Clerk::new(
            ClerkConfig::default(),
            b"a cluster key of 32 bytes, here.",
            0,
        )
        .expect("valid config");
        let mut snapshot = ClerkSnapshot::of(&clerk, ShellCounters::default());
        snapshot
            .counters
            .frames_rejected
            .insert(RejectionReason::BadMac, 3);
        snapshot
            .counters
            .handshakes_rejected
            .insert(HandshakeRejection::Timeout, 2);
        snapshot
            .counters
            .peers_suspected
            .insert(SuspicionReason::DivergentCopy, 1);
        snapshot.counters.copies_sent = 70_000;
        let text = snapshot.prometheus_text();
        for line in [
            "# TYPE tribunal_clerk_frames_rejected_total counter",
            "tribunal_clerk_frames_rejected_total{reason=\"bad_mac\"} 3",
            "tribunal_clerk_frames_rejected_total{reason=\"oversized\"} 0",
            "tribunal_clerk_frames_rejected_total{reason=\"handshake_timeout\"} 2",
            "tribunal_clerk_frames_rejected_total{reason=\"too_many_half_open\"} 0",
            "tribunal_clerk_peers_suspected_total{reason=\"divergent_copy\"} 1",
            "tribunal_clerk_peers_suspected_total{reason=\"equivocation\"} 0",
            "tribunal_clerk_copies_sent_total 70000",
            "tribunal_clerk_links{direction=\"outbound\",status=\"established\"} 0",
            "tribunal_clerk_unsettled_records{partition=\"0\"} 0",
            "tribunal_clerk_self_suspected 0",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "missing {line:?} in\n{text}"
            );
        }
        let samples = text.lines().filter(|l| !l.starts_with('#')).count();
        let families = text.lines().filter(|l| l.starts_with("# TYPE")).count();
        assert_eq!(families, 16);
        assert_eq!(samples, 9 + 3 + 9 + 3 + 4 + 1);
    }
}
