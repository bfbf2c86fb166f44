//! Kafka plumbing shared by the shells that talk to the broker.
//!
//! Two brokers are supported: the embedded broker (`embedded`: in this
//! process, nothing to install) and any external Kafka-protocol broker
//! (tansu in CI). They want different lingering and fetch waits (below).

pub mod embedded;
pub mod tansu;

pub use embedded::EmbeddedBroker;

use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::types::RDKafkaErrorCode;

/// The three topics of a Tribunal cluster. Outcomes of input partition p go
/// to outcome partition p, so all three share the partition count.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Topics {
    pub input: String,
    pub outcomes: String,
    pub dead_letters: String,
    pub partitions: u32,
}

impl Topics {
    pub fn new(partitions: u32) -> Self {
        assert!(partitions > 0, "a topic has at least one partition");
        Self {
            input: "tribunal.commands".to_owned(),
            outcomes: "tribunal.outcomes".to_owned(),
            dead_letters: "tribunal.dead-letters".to_owned(),
            partitions,
        }
    }

    fn all(&self) -> [&str; 3] {
        [&self.input, &self.outcomes, &self.dead_letters]
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BrokerKind {
    /// The broker in this process (`EmbeddedBroker`), reached over loopback TCP.
    Embedded,
    /// A real Kafka-protocol broker.
    External,
}

/// Where the broker is and which client settings suit it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BrokerProfile {
    pub bootstrap_servers: String,
    pub kind: BrokerKind,
}

impl BrokerProfile {
    /// A producer for packs or publications: idempotent, `acks=all`, many
    /// sends in flight, lingering just long enough to batch.
    pub fn producer_config(&self, client_id: &str) -> ClientConfig {
        let mut config = self.common_config(client_id);
        config
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("max.in.flight.requests.per.connection", "5")
            .set("linger.ms", self.linger_ms())
            // Up to a whole flush of packs per produce request. (tansu
            // 0.6.0's memory engine mishandles multi-record batches; its
            // SQLite engine, which `TansuBroker` runs, keeps a row per record.)
            .set("batch.num.messages", "10000")
            .set("message.timeout.ms", "10000");
        config
    }

    /// A consumer for explicit partition assignment. librdkafka wants a
    /// `group.id` even for `assign()`; nothing subscribes or commits through
    /// it, and the broker never chooses a position.
    ///
    /// spec: usher.NoConsumerGroupCommits
    pub fn consumer_config(&self, client_id: &str) -> ClientConfig {
        let mut config = self.common_config(client_id);
        config
            .set("group.id", format!("{client_id}.unused"))
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "error")
            // The shells ask for log ends when they need them; EOF events
            // would only be logged as errors by librdkafka.
            .set("enable.partition.eof", "false")
            .set("fetch.wait.max.ms", self.fetch_wait_max_ms())
            .set("queued.max.messages.kbytes", "16384");
        config
    }

    fn common_config(&self, client_id: &str) -> ClientConfig {
        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", &self.bootstrap_servers)
            .set("client.id", client_id)
            // Small requests (one pack, one fetch) must not wait for the
            // previous one's ACK: with Nagle on, a delayed ACK stalls them.
            .set("socket.nagle.disable", "true");
        config
    }

    /// The gateway already holds commands for `core.pack_flush_window`
    /// (one pack per record); a millisecond on top sufficed for the mock
    /// cluster the embedded broker replaced (not re-measured on it), tansu
    /// stalls periodically below 5.
    fn linger_ms(&self) -> &'static str {
        match self.kind {
            BrokerKind::Embedded => "1",
            BrokerKind::External => "5",
        }
    }

    /// How long a fetch that finds nothing waits. The embedded broker
    /// answers as soon as data arrives, so a long wait costs no latency and
    /// spares it empty fetches (a request queued behind a waiting fetch on
    /// the same connection, such as a log-end query, waits with it, as on
    /// any Kafka broker). tansu 0.6.0 sleeps out the whole wait after
    /// every fetch, data or not, so there the wait is added to every hop.
    fn fetch_wait_max_ms(&self) -> &'static str {
        match self.kind {
            BrokerKind::Embedded => "100",
            BrokerKind::External => "5",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    #[error("starting the embedded broker: {0}")]
    EmbeddedStart(#[source] std::io::Error),
    #[error("creating topic {topic} on the embedded broker: {error}")]
    EmbeddedTopic {
        topic: String,
        #[source]
        error: kafka_protocol::ResponseError,
    },
    #[error("creating topic {topic}: {source}")]
    CreateTopic {
        topic: String,
        #[source]
        source: rdkafka::error::KafkaError,
    },
    #[error("creating topic {topic}: broker answered {code:?}")]
    CreateTopicRefused {
        topic: String,
        code: RDKafkaErrorCode,
    },
}

/// Creates the topics on an external broker; topics that already exist are
/// fine (every node of a cluster calls this at start).
pub async fn ensure_external_topics(
    profile: &BrokerProfile,
    topics: &Topics,
) -> Result<(), BrokerError> {
    let admin: AdminClient<DefaultClientContext> = profile
        .common_config("tribunal-admin")
        .create()
        .map_err(|source| BrokerError::CreateTopic {
            topic: topics.input.clone(),
            source,
        })?;
    let partitions = i32::try_from(topics.partitions).expect("partition count fits i32");
    let new_topics: Vec<NewTopic<'_>> = topics
        .all()
        .into_iter()
        .map(|name| NewTopic::new(name, partitions, TopicReplication::Fixed(1)))
        .collect();
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
    let results = admin
        .create_topics(&new_topics, &options)
        .await
        .map_err(|source| BrokerError::CreateTopic {
            topic: topics.input.clone(),
            source,
        })?;
    for result in results {
        match result {
            Ok(_) => {}
            Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((topic, code)) => return Err(BrokerError::CreateTopicRefused { topic, code }),
        }
    }
    Ok(())
}
