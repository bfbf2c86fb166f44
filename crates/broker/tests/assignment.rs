//! Both brokers with the settings the shells use: an idempotent producer, and
//! a consumer assigned explicitly at an offset that never commits.

use std::time::Duration;

use broker::tansu::TansuBroker;
use broker::{BrokerProfile, EmbeddedBroker, Topics, ensure_external_topics};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};

/// Produces three records to partition 1, then reads from offset 1 with an
/// explicitly assigned consumer: exactly the last two arrive, nothing is
/// committed.
async fn assigned_consumer_reads_from_its_offset(profile: &BrokerProfile, topics: &Topics) {
    let producer: FutureProducer = profile
        .producer_config("test-producer")
        .create()
        .expect("producer");
    for payload in ["zero", "one", "two"] {
        let record = FutureRecord::<(), str>::to(&topics.input)
            .partition(1)
            .payload(payload);
        let delivery = producer
            .send(record, Duration::from_secs(10))
            .await
            .expect("acknowledged");
        assert_eq!(delivery.partition, 1);
    }

    let consumer: BaseConsumer = profile
        .consumer_config("test-consumer")
        .create()
        .expect("consumer");
    let mut assignment = TopicPartitionList::new();
    assignment
        .add_partition_offset(&topics.input, 1, Offset::Offset(1))
        .expect("valid offset");
    consumer.assign(&assignment).expect("assigned");

    let mut received = Vec::new();
    for _ in 0..400 {
        if received.len() == 2 {
            break;
        }
        // Partition end arrives as an error and an idle poll as None: poll on.
        if let Some(Ok(message)) = consumer.poll(Duration::from_millis(50)) {
            let payload = message.payload().expect("payload").to_vec();
            received.push((message.offset(), String::from_utf8(payload).expect("UTF-8")));
        }
    }
    assert_eq!(received, vec![(1, "one".to_owned()), (2, "two".to_owned())]);
    let committed = consumer
        .committed_offsets(assignment, Duration::from_secs(10))
        .expect("committed offsets answer");
    let position = committed
        .find_partition(&topics.input, 1)
        .expect("partition listed")
        .offset();
    assert!(
        matches!(position, Offset::Invalid),
        "no offset was committed: {position:?}"
    );
}

/// covers: usher.NoConsumerGroupCommits
#[tokio::test]
async fn embedded_broker() {
    let topics = Topics::new(2);
    let broker = EmbeddedBroker::start(&topics).expect("embedded broker starts");
    assigned_consumer_reads_from_its_offset(&broker.profile(), &topics).await;
}

/// covers: usher.NoConsumerGroupCommits
#[tokio::test]
async fn tansu_broker() {
    let topics = Topics::new(2);
    let broker =
        TansuBroker::start().expect("tansu starts (the README's test command installs it)");
    ensure_external_topics(&broker.profile(), &topics)
        .await
        .expect("topics created");
    // A second call finds them and is fine.
    ensure_external_topics(&broker.profile(), &topics)
        .await
        .expect("topics exist");
    assigned_consumer_reads_from_its_offset(&broker.profile(), &topics).await;
}
