//! The bare path for `--baseline`: an echo node that speaks just enough of
//! the gateway's API for the generator (POST /v1/commands, GET /health) and
//! answers a submission once its body has gone through Kafka and come back:
//! HTTP (actix-web, one worker, as the gateway) -> produce (the broker
//! profile's idempotent producer) -> read back (explicit assignment) ->
//! HTTP answer. No agreement, no evaluation, no persistence: the full path
//! divided by this one is the cost of those.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

use actix_web::dev::ServerHandle;
use actix_web::{App, HttpResponse, HttpServer, web};
use broker::BrokerProfile;
use bytes::Bytes;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer as _};
use rdkafka::message::Message as _;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{Offset, TopicPartitionList};
use serde::Deserialize;
use tokio::sync::oneshot;

/// The echo topic (one partition); never one of the cluster's topics.
pub const ECHO_TOPIC: &str = "loadtest.baseline-echo";

/// Submissions waiting for their record at once; more are answered 503.
const MAX_WAITING: usize = 65_536;

/// How long a submission waits for its record before a 504.
const ECHO_TIMEOUT: Duration = Duration::from_secs(5);

/// How long one poll of the reader waits; bounds how late it sees the stop.
const POLL_WAIT: Duration = Duration::from_millis(100);

#[derive(Debug, thiserror::Error)]
pub enum BaselineError {
    #[error("creating a Kafka client: {0}")]
    Client(#[source] rdkafka::error::KafkaError),
    #[error("creating topic {ECHO_TOPIC}: {0}")]
    CreateTopic(String),
    #[error("the first record to {ECHO_TOPIC} was not delivered: {0}")]
    Probe(#[source] rdkafka::error::KafkaError),
    #[error("assigning {ECHO_TOPIC}: {0}")]
    Assign(#[source] rdkafka::error::KafkaError),
    #[error("starting the echo server: {0}")]
    Server(#[source] std::io::Error),
}

type Waiting = Arc<Mutex<HashMap<u64, oneshot::Sender<i64>>>>;

struct EchoState {
    producer: FutureProducer,
    waiting: Waiting,
    next: AtomicU64,
}

/// A running echo node; stopped when dropped.
pub struct EchoServer {
    url: String,
    server: ServerHandle,
    http: Option<JoinHandle<()>>,
    stop_reader: Arc<AtomicBool>,
    reader: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for EchoServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EchoServer")
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

impl EchoServer {
    /// Creates the echo topic, proves it with a first record, starts
    /// the reader at the record after it and then the HTTP server.
    pub async fn start(profile: &BrokerProfile) -> Result<Self, BaselineError> {
        create_echo_topic(profile).await?;
        let producer: FutureProducer = profile
            .producer_config("loadtest-baseline")
            .create()
            .map_err(BaselineError::Client)?;
        // A key no submission gets: the reader ignores the probe.
        let probe_key = u64::MAX.to_be_bytes();
        let probe = FutureRecord::to(ECHO_TOPIC)
            .partition(0)
            .key(&probe_key[..])
            .payload(&b"probe"[..]);
        let delivered = producer
            .send(probe, Duration::from_secs(10))
            .await
            .map_err(|(error, _)| BaselineError::Probe(error))?;
        let consumer: BaseConsumer = profile
            .consumer_config("loadtest-baseline")
            .create()
            .map_err(BaselineError::Client)?;
        let mut assignment = TopicPartitionList::new();
        assignment
            .add_partition_offset(ECHO_TOPIC, 0, Offset::Offset(delivered.offset + 1))
            .map_err(BaselineError::Assign)?;
        consumer
            .assign(&assignment)
            .map_err(BaselineError::Assign)?;

        let waiting: Waiting = Arc::new(Mutex::new(HashMap::new()));
        let stop_reader = Arc::new(AtomicBool::new(false));
        let reader = {
            let (waiting, stop) = (Arc::clone(&waiting), Arc::clone(&stop_reader));
            std::thread::Builder::new()
                .name("echo-reader".to_owned())
                .spawn(move || read_back(&consumer, &waiting, &stop))
                .map_err(BaselineError::Server)?
        };
        let state = web::Data::new(EchoState {
            producer,
            waiting,
            next: AtomicU64::new(0),
        });
        let (started, on_started) = std::sync::mpsc::sync_channel(1);
        let http = std::thread::Builder::new()
            .name("echo-http".to_owned())
            .spawn(move || serve(state, started))
            .map_err(BaselineError::Server)?;
        let (url, server) = match on_started.recv() {
            Ok(Ok(started)) => started,
            Ok(Err(error)) => return Err(BaselineError::Server(error)),
            Err(_) => {
                return Err(BaselineError::Server(std::io::Error::other(
                    "the echo server thread ended before binding",
                )));
            }
        };
        Ok(Self {
            url,
            server,
            http: Some(http),
            stop_reader,
            reader: Some(reader),
        })
    }

    pub fn url(&self) -> &str {
        &self.url
    }
}

impl Drop for EchoServer {
    fn drop(&mut self) {
        // Stopping returns a future the server's own system drives; the
        // thread ends once it has.
        drop(self.server.stop(false));
        self.stop_reader.store(true, Ordering::Relaxed);
        for thread in [self.http.take(), self.reader.take()].into_iter().flatten() {
            if thread.join().is_err() {
                eprintln!("loadtest: a baseline echo thread panicked");
            }
        }
    }
}

async fn create_echo_topic(profile: &BrokerProfile) -> Result<(), BaselineError> {
    let admin: AdminClient<DefaultClientContext> = profile
        .producer_config("loadtest-baseline-admin")
        .create()
        .map_err(BaselineError::Client)?;
    let topic = NewTopic::new(ECHO_TOPIC, 1, TopicReplication::Fixed(1));
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
    let results = admin
        .create_topics([&topic], &options)
        .await
        .map_err(|error| BaselineError::CreateTopic(error.to_string()))?;
    for result in results {
        match result {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((_, code)) => return Err(BaselineError::CreateTopic(format!("{code:?}"))),
        }
    }
    Ok(())
}

/// The reader thread: hands each record's offset to the submission its key
/// names (records of other runs or of the probe name nobody waiting).
fn read_back(consumer: &BaseConsumer, waiting: &Waiting, stop: &AtomicBool) {
    while !stop.load(Ordering::Relaxed) {
        let Some(polled) = consumer.poll(POLL_WAIT) else {
            continue;
        };
        let Ok(record) = polled else {
            // Transient fetch errors: librdkafka retries; the waiting
            // submission times out if its record never comes.
            continue;
        };
        let Some(sequence) = record
            .key()
            .and_then(|key| <[u8; 8]>::try_from(key).ok())
            .map(u64::from_be_bytes)
        else {
            continue;
        };
        let waiter = waiting
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&sequence);
        if let Some(waiter) = waiter {
            // The submission may have timed out meanwhile: nothing to do.
            let _ = waiter.send(record.offset());
        }
    }
}

type Started = std::io::Result<(String, ServerHandle)>;

/// The HTTP side, on its own actix system (one worker, as the gateway).
fn serve(state: web::Data<EchoState>, started: std::sync::mpsc::SyncSender<Started>) {
    let system = actix_web::rt::System::new();
    system.block_on(async move {
        let server = HttpServer::new(move || {
            App::new()
                .app_data(state.clone())
                .route("/v1/commands", web::post().to(echo))
                .route("/health", web::get().to(health))
        })
        .workers(1)
        .disable_signals()
        .bind_auto_h2c("127.0.0.1:0");
        let server = match server {
            Ok(server) => server,
            Err(error) => {
                // The caller is waiting on this channel; if it is gone there
                // is nobody left to tell.
                let _ = started.send(Err(error));
                return;
            }
        };
        let url = format!(
            "http://{}",
            server
                .addrs()
                .first()
                .expect("bind succeeded, so one address is bound")
        );
        let running = server.run();
        let _ = started.send(Ok((url, running.handle())));
        if let Err(error) = running.await {
            eprintln!("loadtest: the baseline echo server failed: {error}");
        }
    });
}

#[derive(Deserialize)]
struct KeyOnly {
    idempotency_key: String,
}

async fn echo(state: web::Data<EchoState>, body: Bytes) -> HttpResponse {
    let Ok(KeyOnly { idempotency_key }) = serde_json::from_slice::<KeyOnly>(&body) else {
        return HttpResponse::BadRequest().json(serde_json::json!({"error": "malformed_json"}));
    };
    let sequence = state.next.fetch_add(1, Ordering::Relaxed);
    let (answer, answered) = oneshot::channel();
    {
        let mut waiting = state.waiting.lock().unwrap_or_else(PoisonError::into_inner);
        if waiting.len() >= MAX_WAITING {
            return HttpResponse::ServiceUnavailable()
                .json(serde_json::json!({"error": "overloaded"}));
        }
        waiting.insert(sequence, answer);
    }
    let key = sequence.to_be_bytes();
    let record = FutureRecord::to(ECHO_TOPIC)
        .partition(0)
        .key(&key[..])
        .payload(&body[..]);
    // The delivery report is not awaited: reading the record back is the
    // answer, and it implies delivery.
    if state.producer.send_result(record).is_err() {
        forget(&state.waiting, sequence);
        return HttpResponse::ServiceUnavailable()
            .json(serde_json::json!({"error": "produce_failed"}));
    }
    match tokio::time::timeout(ECHO_TIMEOUT, answered).await {
        Ok(Ok(offset)) => HttpResponse::Ok().json(serde_json::json!({
            "partition": 0,
            "offset": offset,
            "index": 0,
            "key": idempotency_key,
            "verdict": "accepted",
        })),
        _ => {
            forget(&state.waiting, sequence);
            HttpResponse::GatewayTimeout().json(serde_json::json!({"error": "submit_timeout"}))
        }
    }
}

fn forget(waiting: &Waiting, sequence: u64) {
    waiting
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .remove(&sequence);
}

async fn health() -> HttpResponse {
    HttpResponse::Ok().json(serde_json::json!({"status": "ready", "lag": {"0": 0}}))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use broker::{EmbeddedBroker, Topics};

    use super::*;
    use crate::client::{Answer, HttpClient, HttpVersion};
    use crate::measure::{Reading, read_answer};

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_submission_comes_back_through_kafka_with_its_offset() {
        let broker = EmbeddedBroker::start(&Topics::new(1)).expect("embedded broker");
        let echo = EchoServer::start(&broker.profile())
            .await
            .expect("echo server");
        let body = Bytes::from_static(br#"{"idempotency_key":"k-1","command":{}}"#);
        let offset = |answer: &Answer| match read_answer(answer, "k-1") {
            Reading::Agreed { position, .. } => position.offset,
            Reading::Error(error) => panic!("not an echo: {error}"),
        };
        // The echo serves both versions on one port, as the gateway does.
        for version in [HttpVersion::Http1, HttpVersion::Http2] {
            let client = HttpClient::new(
                &[echo.url().to_owned()],
                4,
                Duration::from_secs(10),
                version,
            )
            .expect("valid target");
            let first = client.submit(0, body.clone()).await.expect("answered");
            let second = client.submit(0, body.clone()).await.expect("answered");
            assert_eq!(offset(&second), offset(&first) + 1, "{version:?}");
            let health = client.get(0, "/health").await.expect("answered");
            assert_eq!(health.status, 200, "{version:?}");
        }
    }
}
