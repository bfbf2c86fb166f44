//! Reads the outcome topic back, once per node, for two readers: the Clerk
//! (every publication, from any instance, settles or contradicts this
//! instance's view of a record) and the gateway (agreed answers for its
//! waiting clients and its key index). One consumer instead of two: on the
//! embedded broker every consumer's fetches cost the broker's one thread.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use clerk::{OutcomeIntake, OutcomeRecord};
use prost::Message as _;
use protocol::envelope::RecordDigest;
use protocol::position::{Offset, Partition};
use protocol::records::Publication;
use rdkafka::TopicPartitionList;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message as _;
use tokio::sync::mpsc;

const POLL_WAIT: Duration = Duration::from_millis(100);
/// Most publications handed to the Clerk in one call.
const MAX_BATCH: usize = 1024;
/// How long a deferred record waits before it is offered again.
const DEFER_BACKOFF: Duration = Duration::from_millis(20);
const SEEK_TIMEOUT: Duration = Duration::from_secs(5);

/// Hands a batch to the Clerk and returns its intake of each, in order.
pub type Deliver = Box<dyn FnMut(Vec<OutcomeRecord>) -> Option<Vec<OutcomeIntake>> + Send>;

/// The gateway's side of the reader: each publication is forwarded once,
/// in outcome-offset order per partition (records offered to the Clerk
/// again after a deferral are not forwarded again).
pub struct GatewayFeed {
    batches: mpsc::Sender<Vec<Publication>>,
    forwarded_through: HashMap<Partition, Offset>,
}

impl GatewayFeed {
    pub fn new(batches: mpsc::Sender<Vec<Publication>>) -> GatewayFeed {
        GatewayFeed {
            batches,
            forwarded_through: HashMap::new(),
        }
    }

    /// Blocks while the gateway's queue is full (backpressure on the
    /// reader). `false` once the gateway is gone.
    fn forward(&mut self, batch: Vec<(Publication, Offset)>) -> bool {
        let fresh: Vec<Publication> = batch
            .into_iter()
            .filter(|(publication, outcome_offset)| {
                let through = self
                    .forwarded_through
                    .entry(publication.partition)
                    .or_insert(Offset::MIN);
                let fresh = *outcome_offset > *through;
                *through = (*through).max(*outcome_offset);
                fresh
            })
            .map(|(publication, _)| publication)
            .collect();
        fresh.is_empty() || self.batches.blocking_send(fresh).is_ok()
    }
}

#[derive(Debug)]
pub struct OutcomeReader {
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<()>>,
}

impl OutcomeReader {
    /// Starts reading `topic` at the given outcome offsets (one per
    /// partition): the Clerk's resume positions, at or before the log end,
    /// so the gateway sees every publication written after it started.
    pub fn start(
        consumer: BaseConsumer,
        topic: String,
        start_offsets: &[(Partition, Offset)],
        mut deliver: Deliver,
        mut gateway: GatewayFeed,
    ) -> Result<OutcomeReader, KafkaError> {
        let mut list = TopicPartitionList::new();
        for &(partition, offset) in start_offsets {
            list.add_partition_offset(
                &topic,
                kafka_partition(partition),
                rdkafka::Offset::Offset(offset),
            )?;
        }
        consumer.assign(&list)?;
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = Arc::clone(&stop);
        let handle = std::thread::Builder::new()
            .name("outcome-reader".to_owned())
            .spawn(move || {
                while !stopping.load(Ordering::Relaxed) {
                    let polled = poll_batch(&consumer);
                    if polled.is_empty() {
                        continue;
                    }
                    let batch: Vec<OutcomeRecord> = polled
                        .iter()
                        .filter_map(|(publication, outcome_offset)| {
                            outcome_record(publication, *outcome_offset)
                        })
                        .collect();
                    if !gateway.forward(polled) {
                        return;
                    }
                    let Some(intakes) = deliver(batch.clone()) else {
                        return;
                    };
                    if let Some(record) = first_deferred(&batch, &intakes) {
                        // Everything from the deferred record on is offered
                        // again once consumption has moved on.
                        let seek = consumer.seek(
                            &topic,
                            kafka_partition(record.partition),
                            rdkafka::Offset::Offset(record.outcome_offset),
                            SEEK_TIMEOUT,
                        );
                        if let Err(error) = seek {
                            tracing::warn!(%error, "seeking the outcome reader back failed");
                        }
                        std::thread::sleep(DEFER_BACKOFF);
                    }
                }
            })
            .expect("spawning the outcome reader thread");
        Ok(OutcomeReader {
            stop,
            handle: Some(handle),
        })
    }
}

impl Drop for OutcomeReader {
    /// Tells the thread to end (it notices within one poll wait). Not
    /// joined: it may be waiting for the Clerk's answer while the actor
    /// system is the one shutting down.
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        drop(self.handle.take());
    }
}

/// Up to [`MAX_BATCH`] publications with their outcome offsets.
fn poll_batch(consumer: &BaseConsumer) -> Vec<(Publication, Offset)> {
    let mut batch = Vec::new();
    let mut wait = POLL_WAIT;
    while batch.len() < MAX_BATCH {
        let Some(result) = consumer.poll(wait) else {
            break;
        };
        wait = Duration::ZERO;
        match result {
            Ok(message) => match message.payload().map(Publication::decode) {
                Some(Ok(publication)) => batch.push((publication, message.offset())),
                Some(Err(_)) | None => {
                    tracing::warn!(
                        offset = message.offset(),
                        "an undecodable record on the outcome topic is skipped"
                    );
                }
            },
            Err(KafkaError::PartitionEOF(_)) => {}
            Err(error) => {
                tracing::warn!(%error, "reading the outcome topic failed; librdkafka retries");
                break;
            }
        }
    }
    batch
}

/// `None` for a digest that is not 32 bytes: the Clerk cannot match it
/// (the gateway still sees it and counts it as corrupt).
fn outcome_record(publication: &Publication, outcome_offset: Offset) -> Option<OutcomeRecord> {
    Some(OutcomeRecord {
        partition: publication.partition,
        offset: publication.offset,
        digest: RecordDigest(publication.digest.as_slice().try_into().ok()?),
        publisher_id: publication.publisher_id,
        outcome_offset,
    })
}

fn first_deferred<'a>(
    batch: &'a [OutcomeRecord],
    intakes: &[OutcomeIntake],
) -> Option<&'a OutcomeRecord> {
    batch
        .iter()
        .zip(intakes)
        .find(|(_, intake)| matches!(intake, OutcomeIntake::Deferred { .. }))
        .map(|(record, _)| record)
}

fn kafka_partition(partition: Partition) -> i32 {
    i32::try_from(partition).expect("partition numbers fit i32")
}
