//! The outcome-topic reader: a dedicated thread (rdkafka's poll blocks)
//! with every outcome partition assigned explicitly, positioned at the end
//! as of start, never subscribing or committing.

use std::thread;
use std::time::Duration;

use prost::Message as _;
use protocol::position::Partition;
use protocol::records::Publication;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, KafkaResult};
use rdkafka::message::{BorrowedMessage, Message};
use rdkafka::{Offset, TopicPartitionList};
use tokio::sync::{mpsc, oneshot};

use super::{ShellConfig, ShellError, ShellMetrics, kafka_partition};

/// How long one poll waits for a first record. Bounds how late the thread
/// notices that the actor is gone; a record that arrives ends the wait.
const POLL_WAIT: Duration = Duration::from_millis(100);

/// How long finding a partition's end may take at start.
const POSITION_TIMEOUT: Duration = Duration::from_secs(10);

pub struct OutcomeReader {
    consumer: BaseConsumer,
    topic: String,
    partitions: u32,
    max_batch: usize,
    metrics: ShellMetrics,
}

impl std::fmt::Debug for OutcomeReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OutcomeReader")
            .field("topic", &self.topic)
            .field("partitions", &self.partitions)
            .finish_non_exhaustive()
    }
}

impl OutcomeReader {
    pub fn new(config: &ShellConfig, metrics: ShellMetrics) -> Result<Self, ShellError> {
        let consumer = config
            .broker
            .consumer_config(&format!("{}-outcomes", config.client_id))
            .create()
            .map_err(ShellError::OutcomeConsumer)?;
        Ok(Self {
            consumer,
            topic: config.topics.outcomes.clone(),
            partitions: config.topics.partitions,
            max_batch: config.max_publications_per_batch,
            metrics,
        })
    }

    /// Starts the thread. The returned receiver resolves once every
    /// partition is assigned at its end (or positioning failed); batches
    /// then flow into `batches` until its receiver is dropped.
    pub fn spawn(
        self,
        batches: mpsc::Sender<Vec<Publication>>,
    ) -> Result<oneshot::Receiver<Result<(), ShellError>>, ShellError> {
        let (positioned, when_positioned) = oneshot::channel();
        thread::Builder::new()
            .name("gateway-outcomes".to_owned())
            .spawn(move || self.run(positioned, batches))
            .map_err(ShellError::ReaderThread)?;
        Ok(when_positioned)
    }

    fn run(
        self,
        positioned: oneshot::Sender<Result<(), ShellError>>,
        batches: mpsc::Sender<Vec<Publication>>,
    ) {
        let assigned = self.assign_at_end();
        let failed = assigned.is_err();
        if positioned.send(assigned).is_err() || failed {
            return;
        }
        while !batches.is_closed() {
            let batch = self.next_batch();
            // Blocks while the actor's queue is full: backpressure.
            if !batch.is_empty() && batches.blocking_send(batch).is_err() {
                return;
            }
        }
    }

    /// Every partition at its high watermark, read now: a publication
    /// written after this is read, none before it (explicit offsets, so
    /// no "latest" is resolved later, after records arrived).
    fn assign_at_end(&self) -> Result<(), ShellError> {
        let mut assignment = TopicPartitionList::new();
        for partition in 0..self.partitions {
            let end = self
                .end_of(partition)
                .map_err(|source| ShellError::OutcomeEnd { partition, source })?;
            assignment
                .add_partition_offset(&self.topic, kafka_partition(partition), Offset::Offset(end))
                .map_err(ShellError::OutcomeAssign)?;
        }
        self.consumer
            .assign(&assignment)
            .map_err(ShellError::OutcomeAssign)
    }

    fn end_of(&self, partition: Partition) -> KafkaResult<i64> {
        let (_, high) = self.consumer.fetch_watermarks(
            &self.topic,
            kafka_partition(partition),
            POSITION_TIMEOUT,
        )?;
        Ok(high)
    }

    /// What one poll returns: waits up to [`POLL_WAIT`] for a first
    /// record, then takes what is already fetched, up to `max_batch`.
    fn next_batch(&self) -> Vec<Publication> {
        let mut batch = Vec::new();
        let mut wait = POLL_WAIT;
        while batch.len() < self.max_batch {
            let Some(polled) = self.consumer.poll(wait) else {
                break;
            };
            wait = Duration::ZERO;
            match polled {
                Ok(message) => self.decode(&message, &mut batch),
                // The profile turns end-of-partition events off; should
                // they come back, reaching the end is no error.
                Err(KafkaError::PartitionEOF(_)) => {}
                Err(error) => {
                    self.metrics.outcome_read_errors.increment();
                    tracing::warn!(%error, "reading the outcome topic");
                }
            }
        }
        batch
    }

    /// An undecodable record is counted and skipped: it never blocks the
    /// publications behind it.
    fn decode(&self, message: &BorrowedMessage<'_>, batch: &mut Vec<Publication>) {
        match message.payload().map(Publication::decode) {
            Some(Ok(publication)) => batch.push(publication),
            undecodable => {
                self.metrics.outcome_records_undecodable.increment();
                tracing::warn!(
                    partition = message.partition(),
                    offset = message.offset(),
                    error = ?undecodable.and_then(Result::err),
                    "undecodable outcome record skipped"
                );
            }
        }
    }
}
