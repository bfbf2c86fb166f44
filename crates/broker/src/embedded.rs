//! The embedded default broker: a one-node Kafka-protocol broker inside
//! this process, reached by every client over loopback TCP. It keeps its
//! logs in memory (bounded per partition), finds a fetch's start by binary
//! search, answers a waiting fetch as soon as a produce brings data, and
//! checks idempotent producers' sequences. It replaces librdkafka's mock
//! cluster, whose fetches scan every retained message set from the oldest
//! (cost grew with the log until a 1,000/s run stalled within 40 s) and hold
//! an empty fetch for the whole wait even when data arrives.

mod log;
mod requests;
mod server;

use std::net::{Ipv4Addr, TcpListener};

use crate::{BrokerError, BrokerKind, BrokerProfile, Topics};

/// Each partition keeps at most this many bytes of record batches; older
/// batches are dropped whole (a consumer behind them gets
/// OFFSET_OUT_OF_RANGE, as from a real broker's retention).
pub const RETENTION_BYTES_PER_PARTITION: usize = 256 * 1024 * 1024;

/// The embedded broker; it stops (connections closed, logs gone) on drop.
#[derive(Debug)]
pub struct EmbeddedBroker {
    server: server::Server,
}

impl EmbeddedBroker {
    /// Starts the broker on a free loopback port with the topics created.
    pub fn start(topics: &Topics) -> Result<Self, BrokerError> {
        let listener =
            TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).map_err(BrokerError::EmbeddedStart)?;
        let address = listener.local_addr().map_err(BrokerError::EmbeddedStart)?;
        let mut state = requests::BrokerState::new(
            &address.ip().to_string(),
            address.port(),
            RETENTION_BYTES_PER_PARTITION,
        );
        let partitions = i32::try_from(topics.partitions).expect("partition count fits i32");
        for topic in topics.all() {
            state
                .create_topic(topic, partitions)
                .map_err(|error| BrokerError::EmbeddedTopic {
                    topic: topic.to_owned(),
                    error,
                })?;
        }
        let server = server::Server::start(state, listener).map_err(BrokerError::EmbeddedStart)?;
        Ok(Self { server })
    }

    pub fn profile(&self) -> BrokerProfile {
        BrokerProfile {
            bootstrap_servers: self.server.address().to_string(),
            kind: BrokerKind::Embedded,
        }
    }

    /// Takes the broker down (connections closed, new ones refused) or
    /// brings it back up, keeping its logs: a broker restart as its clients
    /// see it.
    pub fn set_up(&self, up: bool) {
        self.server.set_up(up);
    }
}
