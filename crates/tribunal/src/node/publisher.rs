//! The publisher: writes agreed outcomes to the outcome topic when the
//! Clerk orders it, from this instance's own durable outputs.
//!
//! Recent outputs are kept in memory (bounded); an order for an older one
//! (after a restart, or beyond the bound) reads the Ledger's retained row.

use std::collections::BTreeMap;
use std::time::Duration;

use actix::prelude::*;
use clerk::PublishOrder;
use clerk::shell::{PublicationFailed, PublishRequested};
use ledger::{LedgerReader, RecordPosition};
use prost::Message as _;
use protocol::position::{Offset, Partition};
use protocol::records::{DeadLetterRecord, Publication};
use rdkafka::producer::{FutureProducer, FutureRecord};

use crate::batch::SealedOutputs;
use crate::node::processing::Committed;

/// How long one produce may wait in librdkafka's queue when it is full.
const ENQUEUE_TIMEOUT: Duration = Duration::from_secs(1);

/// The outputs a publication is built from.
#[derive(Clone, Debug)]
struct PublishableOutputs {
    outputs: Vec<Vec<u8>>,
    idempotency_keys: Vec<String>,
    record_timestamp: i64,
    digest: [u8; 32],
}

impl From<SealedOutputs> for PublishableOutputs {
    fn from(sealed: SealedOutputs) -> Self {
        Self {
            outputs: sealed.outputs,
            idempotency_keys: sealed.idempotency_keys,
            record_timestamp: sealed.record_timestamp,
            digest: sealed.digest.0,
        }
    }
}

/// The Clerk saw these records published: their outputs may be dropped.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct Forget(pub Vec<(Partition, Offset)>);

#[derive(Clone, Debug)]
pub struct PublisherTopics {
    pub outcomes: String,
    pub dead_letters: String,
}

pub struct PublisherActor {
    producer: FutureProducer,
    topics: PublisherTopics,
    reader: LedgerReader,
    recent: BTreeMap<(Partition, Offset), PublishableOutputs>,
    max_recent: usize,
    failed: Recipient<PublicationFailed>,
    published: u64,
    produce_failures: u64,
}

impl std::fmt::Debug for PublisherActor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PublisherActor")
            .field("recent", &self.recent.len())
            .field("published", &self.published)
            .finish_non_exhaustive()
    }
}

impl PublisherActor {
    pub fn new(
        producer: FutureProducer,
        topics: PublisherTopics,
        reader: LedgerReader,
        max_recent: usize,
        failed: Recipient<PublicationFailed>,
    ) -> Self {
        assert!(max_recent > 0, "the recent-outputs bound is positive");
        Self {
            producer,
            topics,
            reader,
            recent: BTreeMap::new(),
            max_recent,
            failed,
            published: 0,
            produce_failures: 0,
        }
    }

    fn outputs_for(&self, partition: Partition, offset: Offset) -> Option<PublishableOutputs> {
        if let Some(outputs) = self.recent.get(&(partition, offset)) {
            return Some(outputs.clone());
        }
        let position = RecordPosition { partition, offset };
        match self.reader.retained_outputs(position, 1) {
            Ok(rows) => rows
                .into_iter()
                .find(|(found, _)| *found == position)
                .map(|(_, row)| PublishableOutputs {
                    digest: row
                        .digest
                        .as_slice()
                        .try_into()
                        .expect("a stored digest is 32 bytes (checked at decode)"),
                    outputs: row.outputs,
                    idempotency_keys: row.idempotency_keys,
                    record_timestamp: row.record_timestamp,
                }),
            Err(error) => {
                tracing::error!(partition, offset, %error, "reading a retained output failed");
                None
            }
        }
    }

    /// spec: clerk.AgreedOutputsWrittenToOutcomeTopic
    fn publish(&mut self, order: PublishOrder, ctx: &mut Context<Self>) {
        let (partition, offset) = (order.partition, order.offset);
        let Some(outputs) = self.outputs_for(partition, offset) else {
            // The Clerk only orders publication of a durable own output
            // that matches the agreement; losing it is a storage fault.
            tracing::error!(partition, offset, "no durable output for a publish order");
            self.failed.do_send(PublicationFailed { partition, offset });
            return;
        };
        assert_eq!(
            outputs.digest, order.digest.0,
            "a publish order names this instance's own durable digest"
        );
        let publication = Publication {
            partition,
            offset,
            digest: order.digest.0.to_vec(),
            publisher_id: order.publisher_id,
            matching_copies: order.matching_copies,
            outputs: outputs.outputs,
            idempotency_keys: outputs.idempotency_keys,
            record_timestamp: outputs.record_timestamp,
        };
        let dead_letter = order.dead_letter_reason.map(|reason| DeadLetterRecord {
            partition,
            offset,
            reason,
            command_index: None,
        });
        let producer = self.producer.clone();
        let topics = self.topics.clone();
        let key = offset.to_be_bytes();
        let kafka_partition = i32::try_from(partition).expect("partition numbers fit i32");
        let task = async move {
            let payload = publication.encode_to_vec();
            let record = FutureRecord::to(&topics.outcomes)
                .partition(kafka_partition)
                .key(&key)
                .payload(&payload);
            let mut ok = producer.send(record, ENQUEUE_TIMEOUT).await.is_ok();
            if ok && let Some(letter) = dead_letter {
                let payload = letter.encode_to_vec();
                let record = FutureRecord::to(&topics.dead_letters)
                    .partition(kafka_partition)
                    .key(&key)
                    .payload(&payload);
                ok = producer.send(record, ENQUEUE_TIMEOUT).await.is_ok();
            }
            ok
        };
        ctx.spawn(task.into_actor(self).map(move |ok, publisher, _ctx| {
            if ok {
                publisher.published += 1;
            } else {
                publisher.produce_failures += 1;
                tracing::warn!(partition, offset, "producing a publication failed; retried");
                publisher
                    .failed
                    .do_send(PublicationFailed { partition, offset });
            }
        }));
    }
}

impl Actor for PublisherActor {
    type Context = Context<Self>;
}

impl Handler<Committed> for PublisherActor {
    type Result = ();

    fn handle(&mut self, committed: Committed, _ctx: &mut Self::Context) {
        for sealed in committed.records {
            self.recent
                .insert((committed.partition, sealed.offset), sealed.into());
        }
        while self.recent.len() > self.max_recent {
            // The oldest go first; an order for one reads the Ledger.
            self.recent.pop_first();
        }
    }
}

impl Handler<PublishRequested> for PublisherActor {
    type Result = ();

    fn handle(&mut self, PublishRequested(orders): PublishRequested, ctx: &mut Self::Context) {
        for order in orders {
            self.publish(order, ctx);
        }
    }
}

impl Handler<Forget> for PublisherActor {
    type Result = ();

    fn handle(&mut self, Forget(positions): Forget, _ctx: &mut Self::Context) {
        for position in positions {
            self.recent.remove(&position);
        }
    }
}

/// Asks for the publisher's counters, as Prometheus text.
#[derive(Clone, Copy, Debug, Message)]
#[rtype(result = "String")]
pub struct PublisherMetrics;

impl Handler<PublisherMetrics> for PublisherActor {
    type Result = String;

    fn handle(&mut self, _query: PublisherMetrics, _ctx: &mut Self::Context) -> String {
        format!(
            "tribunal_publisher_published_total {}\n\
             tribunal_publisher_produce_failures_total {}\n\
             tribunal_publisher_recent_outputs {}\n",
            self.published,
            self.produce_failures,
            self.recent.len()
        )
    }
}
