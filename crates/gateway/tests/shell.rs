//! The gateway shell end to end: a real HTTP client over TCP to the real
//! server, packs on the embedded broker's input topic, and the test
//! playing the cluster by writing publications to the outcome topic.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use actix_web::dev::ServerHandle;
use broker::{EmbeddedBroker, Topics};
use bytes::Bytes;
use domain::inventory::partition_for_sku;
use gateway::config::GatewayConfig;
use gateway::node::{HealthSnapshot, InstanceStatus, StockLevel};
use gateway::shell::{Gateway, HttpSettings, InstanceView, OutcomeFeed, ShellConfig};
use http_body_util::{BodyExt as _, Full};
use hyper::header::{CONTENT_TYPE, HeaderMap, RETRY_AFTER};
use hyper::{Method, Request};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use prost::Message as _;
use protocol::envelope::{EnvelopeVerdict, encode_envelope, record_digest};
use protocol::position::{CommandPosition, Offset, Partition};
use protocol::records::{CommandPack, Publication};
use rdkafka::consumer::{BaseConsumer, Consumer as _};
use rdkafka::error::KafkaError;
use rdkafka::message::Message as _;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset as KafkaOffset, TopicPartitionList};
use serde_json::{Value, json};
use tokio::io::AsyncWriteExt as _;
use tokio::net::TcpStream;

const PARTITIONS: u32 = 2;
/// How long any awaited condition may take before the test fails.
const PATIENCE: Duration = Duration::from_secs(10);
const VIEW_METRICS: &str = "tribunal_test_view_up 1\n";

/// The instance behind the gateway, as the test sets it.
#[derive(Debug, Default)]
struct FakeView {
    halted: Arc<AtomicBool>,
}

impl InstanceView for FakeView {
    fn status(&self) -> InstanceStatus {
        if self.halted.load(Ordering::Relaxed) {
            InstanceStatus::Halted
        } else {
            InstanceStatus::Ready
        }
    }

    fn health(&self) -> HealthSnapshot {
        HealthSnapshot {
            status: self.status(),
            instance_id: 1,
            self_suspected: false,
            suspected_peers: Vec::new(),
            halted_partitions: Vec::new(),
            lag: Default::default(),
        }
    }

    async fn stock_level(&self, warehouse: String, sku: String) -> Option<StockLevel> {
        let partition = partition_for_sku(&sku, PARTITIONS);
        Some(StockLevel {
            warehouse,
            sku,
            quantity: 42,
            partition,
            as_of_offset: 7,
        })
    }

    fn metrics_text(&self) -> String {
        VIEW_METRICS.to_owned()
    }
}

struct Reply {
    status: u16,
    headers: HeaderMap,
    body: Bytes,
}

impl Reply {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("a JSON body")
    }
}

/// One pack as read from the input topic.
#[derive(Debug)]
struct ProducedPack {
    partition: Partition,
    offset: Offset,
    pack: CommandPack,
}

impl ProducedPack {
    fn position(&self, index: u32) -> CommandPosition {
        CommandPosition {
            partition: self.partition,
            offset: self.offset,
            index,
        }
    }

    fn index_of(&self, key: &str) -> u32 {
        let index = self
            .pack
            .submissions
            .iter()
            .position(|submission| submission.idempotency_key == key)
            .expect("the key is in the pack");
        u32::try_from(index).expect("a small pack")
    }

    /// What a correct cluster would agree for every command: accepted.
    fn accepted_outputs(&self) -> Vec<Vec<u8>> {
        (0..self.pack.submissions.len())
            .map(|index| {
                let index = u32::try_from(index).expect("a small pack");
                self.envelope(index, EnvelopeVerdict::Accepted)
            })
            .collect()
    }

    fn envelope(&self, index: u32, verdict: EnvelopeVerdict) -> Vec<u8> {
        let key = &self.pack.submissions[usize::try_from(index).expect("usize")].idempotency_key;
        let (reason, result): (Option<&str>, &[u8]) = match verdict {
            EnvelopeVerdict::Accepted => (None, br#"{"type":"receive","level":5}"#),
            _ => (Some("insufficient_stock"), b""),
        };
        encode_envelope(self.position(index), Some(key), verdict, reason, result)
    }

    /// An intact publication of `outputs` for this record.
    fn publication(&self, outputs: Vec<Vec<u8>>) -> Publication {
        Publication {
            partition: self.partition,
            offset: self.offset,
            digest: record_digest(&outputs).0.to_vec(),
            publisher_id: 0,
            matching_copies: 3,
            idempotency_keys: self
                .pack
                .submissions
                .iter()
                .map(|submission| submission.idempotency_key.clone())
                .collect(),
            outputs,
            record_timestamp: 1_700_000_000_000,
        }
    }
}

/// A gateway served over TCP, with the test in the cluster's place.
struct Harness {
    _broker: EmbeddedBroker,
    topics: Topics,
    server: ServerHandle,
    addr: SocketAddr,
    client: Client<HttpConnector, Full<Bytes>>,
    /// Every input partition from offset 0: the topics are new, and a
    /// logical "beginning" costs an offset lookup (about half a second).
    input: Arc<BaseConsumer>,
    publisher: FutureProducer,
    halted: Arc<AtomicBool>,
}

impl Harness {
    async fn start(config: GatewayConfig) -> Self {
        let topics = Topics::new(PARTITIONS);
        let broker = EmbeddedBroker::start(&topics).expect("embedded broker starts");
        let profile = broker.profile();
        let view = FakeView::default();
        let halted = Arc::clone(&view.halted);
        let shell = ShellConfig::new(
            GatewayConfig {
                input_partitions: PARTITIONS,
                ..config
            },
            profile.clone(),
            topics.clone(),
            "test-gateway",
        );
        let gateway = Gateway::start(shell, view, OutcomeFeed::OwnReader)
            .await
            .expect("gateway starts");
        let (server, addr) = gateway
            .serve(
                "127.0.0.1:0".parse().expect("an address"),
                &HttpSettings::default(),
            )
            .expect("server binds");
        let handle = server.handle();
        actix_web::rt::spawn(server);

        let input: BaseConsumer = profile
            .consumer_config("test-input-reader")
            .create()
            .expect("consumer");
        let mut assignment = TopicPartitionList::new();
        for partition in 0..PARTITIONS {
            assignment
                .add_partition_offset(
                    &topics.input,
                    i32::try_from(partition).expect("i32"),
                    KafkaOffset::Offset(0),
                )
                .expect("valid offset");
        }
        input.assign(&assignment).expect("assigned");
        let publisher = profile
            .producer_config("test-cluster")
            .create()
            .expect("producer");
        Self {
            _broker: broker,
            topics,
            server: handle,
            addr,
            client: Client::builder(TokioExecutor::new()).build_http(),
            input: Arc::new(input),
            publisher,
            halted,
        }
    }

    async fn stop(self) {
        self.server.stop(false).await;
    }

    async fn request(&self, method: Method, path: &str, content_type: &str, body: String) -> Reply {
        let request = Request::builder()
            .method(method)
            .uri(format!("http://{}{path}", self.addr))
            .header(CONTENT_TYPE, content_type)
            .body(Full::new(Bytes::from(body)))
            .expect("a request");
        let response = self.client.request(request).await.expect("a response");
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let body = response
            .into_body()
            .collect()
            .await
            .expect("a body")
            .to_bytes();
        Reply {
            status,
            headers,
            body,
        }
    }

    async fn submit(&self, body: Value) -> Reply {
        self.request(
            Method::POST,
            "/v1/commands",
            "application/json",
            body.to_string(),
        )
        .await
    }

    async fn get(&self, path: &str) -> Reply {
        self.request(Method::GET, path, "text/plain", String::new())
            .await
    }

    async fn metrics(&self) -> String {
        let reply = self.get("/metrics").await;
        assert_eq!(reply.status, 200);
        String::from_utf8(reply.body.to_vec()).expect("UTF-8 metrics")
    }

    /// Waits until /metrics shows every line (each ends with a newline).
    async fn await_metrics(&self, lines: &[&str]) -> String {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let text = self.metrics().await;
            if lines.iter().all(|line| text.contains(line)) {
                return text;
            }
            assert!(Instant::now() < deadline, "never saw {lines:?} in\n{text}");
            actix_web::rt::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// The next record of the input topic, decoded as a pack. Polled on a
    /// blocking thread: the gateway actor shares this test's thread.
    async fn next_pack(&self) -> ProducedPack {
        let input = Arc::clone(&self.input);
        actix_web::rt::task::spawn_blocking(move || {
            let deadline = Instant::now() + PATIENCE;
            while Instant::now() < deadline {
                match input.poll(Duration::from_millis(50)) {
                    Some(Ok(message)) => {
                        let pack = CommandPack::decode(message.payload().expect("a payload"))
                            .expect("the gateway writes packs");
                        return ProducedPack {
                            partition: Partition::try_from(message.partition()).expect("u32"),
                            offset: message.offset(),
                            pack,
                        };
                    }
                    None | Some(Err(KafkaError::PartitionEOF(_))) => {}
                    Some(Err(error)) => panic!("reading the input topic: {error}"),
                }
            }
            panic!("no pack on the input topic within {PATIENCE:?}");
        })
        .await
        .expect("the reader thread")
    }

    async fn publish_bytes(&self, partition: Partition, bytes: &[u8]) {
        let record = FutureRecord::<(), [u8]>::to(&self.topics.outcomes)
            .partition(i32::try_from(partition).expect("i32"))
            .payload(bytes);
        self.publisher
            .send(record, PATIENCE)
            .await
            .expect("the outcome record is written");
    }

    async fn publish(&self, publication: &Publication) {
        self.publish_bytes(publication.partition, &publication.encode_to_vec())
            .await;
    }

    /// Plays a correct cluster for the next pack: every command accepted.
    async fn accept_next_pack(&self) -> (ProducedPack, Vec<Vec<u8>>) {
        let produced = self.next_pack().await;
        let outputs = produced.accepted_outputs();
        self.publish(&produced.publication(outputs.clone())).await;
        (produced, outputs)
    }
}

fn receive(key: &str, sku: &str) -> Value {
    json!({"idempotency_key": key, "command": {"type": "receive", "warehouse": "w1", "sku": sku, "quantity": 5}})
}

/// `count` skus routed to `partition`.
fn skus_on(partition: Partition, count: usize) -> Vec<String> {
    (0..)
        .map(|n| format!("sku-{n}"))
        .filter(|sku| partition_for_sku(sku, PARTITIONS) == partition)
        .take(count)
        .collect()
}

fn quick_flush() -> GatewayConfig {
    GatewayConfig {
        pack_flush_window_ms: 5,
        ..GatewayConfig::default()
    }
}

/// covers: gateway.PackProducedAfterFlushWindow, gateway.PackAcknowledgedAssignsPositions, gateway.AgreedOutcomeAnswersWaitingSubmissions, gateway.AnswerBodyIsAgreedOutcomeBytes, gateway.StatusFollowsFromOutcomeBytes, gateway.MetricsExposedAsPrometheusText, gateway.StockLookupAnswersLocalDurableState
#[actix_web::test]
async fn a_submission_is_packed_produced_and_answered_with_its_published_outcome() {
    let harness = Harness::start(quick_flush()).await;
    let (reply, (produced, outputs)) = futures_util::join!(
        harness.submit(receive("k-1", "sku-a")),
        harness.accept_next_pack()
    );
    assert_eq!(produced.partition, partition_for_sku("sku-a", PARTITIONS));
    assert_eq!(produced.pack.submissions.len(), 1);
    assert_eq!(produced.pack.submissions[0].idempotency_key, "k-1");

    assert_eq!(reply.status, 200);
    assert_eq!(reply.headers[CONTENT_TYPE], "application/json");
    assert_eq!(reply.body, outputs[0], "the agreed bytes, verbatim");
    assert_eq!(reply.json()["verdict"], "accepted");

    let metrics = harness
        .await_metrics(&["tribunal_gateway_pending_submissions 0\n"])
        .await;
    for line in [
        "tribunal_gateway_submissions_total{result=\"accepted\"} 1\n",
        "tribunal_gateway_submit_seconds_count 1\n",
        "tribunal_gateway_packs_total{result=\"acknowledged\"} 1\n",
        "tribunal_gateway_produce_seconds_count 1\n",
        "tribunal_gateway_publications_total{result=\"observed\"} 1\n",
        VIEW_METRICS,
    ] {
        assert!(metrics.contains(line), "{line} in\n{metrics}");
    }

    let stock = harness.get("/v1/stock/w1/sku-a").await;
    assert_eq!(stock.status, 200);
    assert_eq!(stock.json()["quantity"], 42);
    harness.stop().await;
}

/// covers: gateway.ValidSubmissionJoinsOpenPack, gateway.FullPackProduced, gateway.OnePackIndexPerSubmission
#[actix_web::test]
async fn two_submissions_share_one_record_and_each_gets_the_output_at_its_index() {
    // The window outlasts the test: only filling the pack cuts it.
    let harness = Harness::start(GatewayConfig {
        max_pack_commands: 2,
        pack_flush_window_ms: 60_000,
        ..GatewayConfig::default()
    })
    .await;
    let skus = skus_on(1, 2);
    let cluster = async {
        let produced = harness.next_pack().await;
        // Outputs differ by index: the first accepted, the second rejected.
        let outputs = vec![
            produced.envelope(0, EnvelopeVerdict::Accepted),
            produced.envelope(1, EnvelopeVerdict::Rejected),
        ];
        harness
            .publish(&produced.publication(outputs.clone()))
            .await;
        (produced, outputs)
    };
    let (first, second, (produced, outputs)) = futures_util::join!(
        harness.submit(receive("k-a", &skus[0])),
        harness.submit(receive("k-b", &skus[1])),
        cluster
    );
    assert_eq!(produced.partition, 1);
    assert_eq!(produced.pack.submissions.len(), 2, "one record for both");
    for (key, reply) in [("k-a", &first), ("k-b", &second)] {
        let index = produced.index_of(key);
        let own = &outputs[usize::try_from(index).expect("usize")];
        assert_eq!(reply.body, *own, "{key} gets the output at its index");
        let expected_status = if index == 0 { 200 } else { 409 };
        assert_eq!(reply.status, expected_status, "{key}");
    }
    harness.stop().await;
}

/// covers: gateway.CorruptPublicationDiscarded, gateway.RepeatedPublicationIgnored, gateway.FirstPublicationOfOffsetObserved, gateway.CommandLookupReturnsAgreedOutcome
#[actix_web::test]
async fn undecodable_corrupt_and_repeated_publications_never_answer() {
    let harness = Harness::start(quick_flush()).await;
    let cluster = async {
        let produced = harness.next_pack().await;
        let accepted = produced.accepted_outputs();
        let rejected = vec![produced.envelope(0, EnvelopeVerdict::Rejected)];
        // Garbage, then a rejection whose digest is that of the accepted
        // outputs (corrupt), then the intact accepted publication.
        harness
            .publish_bytes(produced.partition, &[0xff, 0xff, 0xff])
            .await;
        let mut corrupt = produced.publication(rejected.clone());
        corrupt.digest = record_digest(&accepted).0.to_vec();
        harness.publish(&corrupt).await;
        harness
            .publish(&produced.publication(accepted.clone()))
            .await;
        (produced, accepted, rejected)
    };
    let (reply, (produced, accepted, rejected)) =
        futures_util::join!(harness.submit(receive("k-1", "sku-a")), cluster);
    assert_eq!(reply.status, 200, "the corrupt rejection answered nothing");
    assert_eq!(reply.body, accepted[0]);

    // A later publication of the same position, intact but different, is
    // ignored: the key keeps its first outcome.
    harness.publish(&produced.publication(rejected)).await;
    harness
        .await_metrics(&[
            "tribunal_gateway_publications_total{result=\"ignored\"} 1\n",
            "tribunal_gateway_publications_total{result=\"corrupt\"} 1\n",
            "tribunal_gateway_publications_total{result=\"observed\"} 1\n",
            "tribunal_gateway_outcome_records_undecodable_total 1\n",
        ])
        .await;
    let lookup = harness.get("/v1/commands/k-1").await;
    assert_eq!(lookup.status, 200);
    assert_eq!(lookup.body, accepted[0]);
    harness.stop().await;
}

/// covers: gateway.HaltedNodeRefusesSubmission, gateway.HealthReportsInstanceState
#[actix_web::test]
async fn a_halted_instance_refuses_submissions() {
    let harness = Harness::start(quick_flush()).await;
    harness.halted.store(true, Ordering::Relaxed);
    let reply = harness.submit(receive("k-1", "sku-a")).await;
    assert_eq!(reply.status, 503);
    assert_eq!(reply.json()["error"], "instance_halted");
    let health = harness.get("/health").await;
    assert_eq!(health.status, 503);
    assert_eq!(health.json()["status"], "halted");
    harness
        .await_metrics(&["tribunal_gateway_pending_submissions 0\n"])
        .await;
    harness.stop().await;
}

/// covers: gateway.OverloadedGatewayShedsSubmission
#[actix_web::test]
async fn a_full_waiting_table_sheds_submissions_until_one_is_answered() {
    let harness = Harness::start(GatewayConfig {
        max_pending_submissions: 1,
        ..quick_flush()
    })
    .await;
    let first = async {
        let reply = harness.submit(receive("k-1", "sku-a")).await;
        assert_eq!(reply.status, 200, "the waiting one is answered");
    };
    let shed_then_answer = async {
        harness
            .await_metrics(&["tribunal_gateway_pending_submissions 1\n"])
            .await;
        let shed = harness.submit(receive("k-2", "sku-b")).await;
        assert_eq!(shed.status, 503);
        assert_eq!(shed.json()["error"], "overloaded");
        assert_eq!(shed.headers[RETRY_AFTER], "1");
        harness.accept_next_pack().await
    };
    let ((), (produced, _)) = futures_util::join!(first, shed_then_answer);
    assert_eq!(
        produced.pack.submissions.len(),
        1,
        "the shed submission was not packed"
    );
    harness
        .await_metrics(&[
            "tribunal_gateway_pending_submissions 0\n",
            "tribunal_gateway_submissions_total{result=\"overloaded\"} 1\n",
        ])
        .await;
    harness.stop().await;
}

/// covers: gateway.WrongContentTypeRejected, gateway.NonPositiveQuantityRejected, gateway.RejectedSubmissionProducesNothing
#[actix_web::test]
async fn bad_submissions_are_rejected_and_produce_nothing() {
    let harness = Harness::start(quick_flush()).await;
    let wrong_type = harness
        .request(
            Method::POST,
            "/v1/commands",
            "text/plain",
            receive("k-bad-1", "sku-a").to_string(),
        )
        .await;
    assert_eq!(wrong_type.status, 415);
    assert_eq!(wrong_type.json()["error"], "unsupported_media_type");
    let mut zero = receive("k-bad-2", "sku-a");
    zero["command"]["quantity"] = json!(0);
    let zero = harness.submit(zero).await;
    assert_eq!(zero.status, 422);
    assert_eq!(zero.json()["error"], "quantity_not_positive");

    // The first record on the input topic is the valid submission's.
    let (reply, (produced, _)) = futures_util::join!(
        harness.submit(receive("k-good", "sku-a")),
        harness.accept_next_pack()
    );
    assert_eq!(reply.status, 200);
    assert_eq!(produced.offset, 0, "nothing was produced before it");
    let keys: Vec<&str> = produced
        .pack
        .submissions
        .iter()
        .map(|submission| submission.idempotency_key.as_str())
        .collect();
    assert_eq!(keys, ["k-good"]);
    harness.stop().await;
}

/// covers: gateway.ReplySentReleasesSubmission
#[actix_web::test]
async fn a_client_that_disconnects_abandons_its_submission() {
    let harness = Harness::start(quick_flush()).await;
    let body = receive("k-gone", "sku-a").to_string();
    let mut connection = TcpStream::connect(harness.addr).await.expect("connects");
    let request = format!(
        "POST /v1/commands HTTP/1.1\r\nHost: gateway\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    );
    connection
        .write_all(request.as_bytes())
        .await
        .expect("request written");
    // Packed and produced: it waits for its outcome.
    let produced = harness.next_pack().await;
    assert_eq!(produced.pack.submissions[0].idempotency_key, "k-gone");
    harness
        .await_metrics(&["tribunal_gateway_pending_submissions 1\n"])
        .await;

    drop(connection);
    harness
        .await_metrics(&[
            "tribunal_gateway_pending_submissions 0\n",
            "tribunal_gateway_submissions_abandoned_total 1\n",
        ])
        .await;
    harness.stop().await;
}
