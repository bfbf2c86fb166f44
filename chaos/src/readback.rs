//! Reads the input and outcome topics back from offset 0 to their log ends
//! once the cluster has stopped, as history events: input records decoded
//! the way the Usher decodes them, publications byte for byte.

use std::time::{Duration, Instant};

use broker::{BrokerProfile, Topics};
use protocol::position::Partition;
use rdkafka::consumer::{BaseConsumer, Consumer as _};
use rdkafka::error::KafkaError;
use rdkafka::message::Message as _;
use rdkafka::{Offset, TopicPartitionList};

use crate::history::{HistoryEvent, InputRecord, PublishedRecord, RunInfo, UnreadablePublication};

/// One poll's wait; the deadline bounds the whole read.
const POLL: Duration = Duration::from_millis(200);

/// The log-end round trip.
const WATERMARK_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum ReadbackError {
    #[error("reading {topic}: {source}")]
    Kafka {
        topic: String,
        #[source]
        source: KafkaError,
    },
    /// The broker no longer holds the head of the log: the history would
    /// miss what the instances and clients saw, so it cannot be judged.
    #[error(
        "{topic} partition {partition} starts at offset {log_start}, not 0: the broker dropped \
         the head of the log (the embedded broker keeps 256 MiB per partition; run fewer \
         events, more --partitions, or --brokers with a broker that keeps more)"
    )]
    Truncated {
        topic: String,
        partition: Partition,
        log_start: i64,
    },
    #[error("{topic} partition {partition}: read {read} of {expected} records within {waited:?}")]
    Incomplete {
        topic: String,
        partition: Partition,
        read: i64,
        expected: i64,
        waited: Duration,
    },
}

/// Every record of both topics, as history events, in log order per
/// partition (input first).
pub fn read_topics(
    profile: &BrokerProfile,
    run: &RunInfo,
    deadline: Duration,
) -> Result<Vec<HistoryEvent>, ReadbackError> {
    let topics = Topics::new(run.input_partitions);
    let mut events = Vec::new();
    for partition in 0..run.input_partitions {
        read_partition(
            profile,
            &topics.input,
            partition,
            deadline,
            |offset, message| {
                events.push(HistoryEvent::InputRecord(InputRecord::decode(
                    run,
                    partition,
                    offset,
                    message.timestamp().to_millis().unwrap_or(0),
                    message.payload(),
                )));
            },
        )?;
    }
    for partition in 0..run.input_partitions {
        read_partition(
            profile,
            &topics.outcomes,
            partition,
            deadline,
            |offset, message| {
                events.push(
                    match PublishedRecord::decode(message.payload().unwrap_or_default()) {
                        Ok(publication) => HistoryEvent::Publication(publication),
                        Err(error) => HistoryEvent::UnreadablePublication(UnreadablePublication {
                            topic_partition: partition,
                            topic_offset: offset,
                            error: error.to_string(),
                        }),
                    },
                );
            },
        )?;
    }
    Ok(events)
}

fn read_partition(
    profile: &BrokerProfile,
    topic: &str,
    partition: Partition,
    deadline: Duration,
    mut each: impl FnMut(i64, &rdkafka::message::BorrowedMessage<'_>),
) -> Result<(), ReadbackError> {
    let kafka = |source| ReadbackError::Kafka {
        topic: topic.to_owned(),
        source,
    };
    let consumer: BaseConsumer = profile
        .consumer_config("chaos-readback")
        .create()
        .map_err(kafka)?;
    let kafka_partition = i32::try_from(partition).expect("partition ids fit i32");
    let (start, end) = consumer
        .fetch_watermarks(topic, kafka_partition, WATERMARK_TIMEOUT)
        .map_err(kafka)?;
    if start > 0 {
        return Err(ReadbackError::Truncated {
            topic: topic.to_owned(),
            partition,
            log_start: start,
        });
    }
    let mut assignment = TopicPartitionList::new();
    assignment
        .add_partition_offset(topic, kafka_partition, Offset::Beginning)
        .map_err(kafka)?;
    consumer.assign(&assignment).map_err(kafka)?;
    let started = Instant::now();
    let mut next = 0;
    while next < end {
        if started.elapsed() > deadline {
            return Err(ReadbackError::Incomplete {
                topic: topic.to_owned(),
                partition,
                read: next,
                expected: end,
                waited: started.elapsed(),
            });
        }
        match consumer.poll(POLL) {
            None => {}
            Some(Ok(message)) => {
                next = message.offset() + 1;
                each(message.offset(), &message);
            }
            // librdkafka retries fetch errors itself; the deadline bounds it.
            Some(Err(error)) => tracing::warn!(%error, topic, "reading back"),
        }
    }
    Ok(())
}
