//! An in-process stand-in for a cluster's gateways: one shared inventory
//! behind several HTTP/1.1 listeners, speaking the gateway's API closely
//! enough for the generator, its correctness pass and its tests (and the
//! measurement of the generator's own capacity). Not a model of agreement:
//! one mutex, one state, answers at once.
//!
//! Faults for tests: a single stall of every answer, a double apply, one
//! instance reporting levels that differ from the others'.
//!
//! The HTTP side is a minimal HTTP/1.1 server on tokio's `TcpListener`
//! (keep-alive, `Content-Length` bodies only), enough for hyper's client.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::io::{self, Write as _};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use domain::inventory::partition_for_sku;
use protocol::envelope::{EnvelopeVerdict, encode_envelope};
use protocol::position::CommandPosition;
use serde::Deserialize;
use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

use crate::workload::Command;

/// Answers stall once: the first request arriving `after` the start holds
/// every answer until `length` later.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stall {
    pub after: Duration,
    pub length: Duration,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FakeFaults {
    pub stall: Option<Stall>,
    /// Every n-th accepted receive is applied twice.
    pub double_apply_every: Option<u64>,
    /// This instance reports every stock level one higher than it is.
    pub diverging_instance: Option<usize>,
    /// Every n-th submission times out unapplied (504) and is applied only
    /// when its key is first looked up, after that lookup answered 404: a
    /// record produced late or applied behind the instances' lag.
    pub late_apply_every: Option<u64>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FakeClusterConfig {
    pub instances: usize,
    pub partitions: u32,
    /// GET /v1/commands/{key} finds only the newest this many keys, as a
    /// gateway's bounded key index does (`None`: every key).
    pub lookup_bound: Option<usize>,
    pub faults: FakeFaults,
}

impl Default for FakeClusterConfig {
    fn default() -> Self {
        Self {
            instances: 1,
            partitions: 4,
            lookup_bound: None,
            faults: FakeFaults::default(),
        }
    }
}

#[derive(Debug, Default)]
struct Inventory {
    levels: HashMap<(String, String), i64>,
    /// Stored answers by key: (status, envelope bytes, first-answer rank).
    answers: HashMap<String, (Reply, u64)>,
    next_offset: Vec<i64>,
    accepted_receives: u64,
    /// Submissions timed out and not yet applied (`late_apply_every`).
    late: HashMap<String, SubmitBody>,
}

#[derive(Debug)]
struct Shared {
    config: FakeClusterConfig,
    started: Instant,
    inventory: Mutex<Inventory>,
    /// Stall window as (start, end) once it happened.
    stall: Mutex<Option<(Instant, Instant)>>,
    submissions: AtomicU64,
    /// Per instance: the submit handler's latency.
    latency: Vec<HandlerLatency>,
}

/// Upper bounds (µs) of the fake's latency buckets (a subset of the gateway's).
const BUCKET_BOUNDS_MICROS: [u64; 8] = [
    100, 1_000, 5_000, 10_000, 50_000, 100_000, 500_000, 1_000_000,
];

/// Buckets over [`BUCKET_BOUNDS_MICROS`] plus +Inf, and the sum.
#[derive(Debug)]
struct HandlerLatency {
    buckets: Vec<AtomicU64>,
    sum_micros: AtomicU64,
}

impl HandlerLatency {
    fn new() -> Self {
        Self {
            buckets: (0..=BUCKET_BOUNDS_MICROS.len())
                .map(|_| AtomicU64::new(0))
                .collect(),
            sum_micros: AtomicU64::new(0),
        }
    }

    fn observe(&self, elapsed: Duration) {
        let micros = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
        let bucket = BUCKET_BOUNDS_MICROS.partition_point(|bound| *bound < micros);
        self.buckets[bucket].fetch_add(1, Ordering::Relaxed);
        self.sum_micros.fetch_add(micros, Ordering::Relaxed);
    }

    /// The gateway's submit histogram in Prometheus text.
    fn render(&self) -> String {
        let name = crate::prometheus::GATEWAY_SUBMIT_SECONDS;
        let mut text = format!("# TYPE {name} histogram\n");
        let mut cumulative = 0;
        let bounds = BUCKET_BOUNDS_MICROS
            .iter()
            .map(|micros| (*micros as f64 / 1e6).to_string())
            .chain(["+Inf".to_owned()]);
        for (bound, bucket) in bounds.zip(&self.buckets) {
            cumulative += bucket.load(Ordering::Relaxed);
            let _ = writeln!(text, "{name}_bucket{{le=\"{bound}\"}} {cumulative}");
        }
        let sum = self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6;
        let _ = writeln!(text, "{name}_sum {sum}\n{name}_count {cumulative}");
        text
    }
}

/// Listeners sharing one inventory; they stop when this is dropped.
#[derive(Debug)]
pub struct FakeCluster {
    shared: Arc<Shared>,
    addresses: Vec<SocketAddr>,
    listeners: Vec<JoinHandle<()>>,
}

impl FakeCluster {
    /// Binds `instances` listeners on 127.0.0.1 (ephemeral ports) and
    /// serves them on the current tokio runtime.
    pub async fn start(config: FakeClusterConfig) -> io::Result<Self> {
        assert!(config.partitions > 0, "at least one partition");
        let shared = Arc::new(Shared {
            config,
            started: Instant::now(),
            inventory: Mutex::new(Inventory {
                next_offset: vec![0; config.partitions as usize],
                ..Inventory::default()
            }),
            stall: Mutex::new(None),
            submissions: AtomicU64::new(0),
            latency: (0..config.instances)
                .map(|_| HandlerLatency::new())
                .collect(),
        });
        let mut addresses = Vec::with_capacity(config.instances);
        let mut listeners = Vec::with_capacity(config.instances);
        for instance in 0..config.instances {
            let listener = TcpListener::bind("127.0.0.1:0").await?;
            addresses.push(listener.local_addr()?);
            listeners.push(tokio::spawn(accept(
                listener,
                Arc::clone(&shared),
                instance,
            )));
        }
        Ok(Self {
            shared,
            addresses,
            listeners,
        })
    }

    pub fn urls(&self) -> Vec<String> {
        self.addresses
            .iter()
            .map(|address| format!("http://{address}"))
            .collect()
    }

    /// When the stall happened, if it did.
    pub fn stall_window(&self) -> Option<(Instant, Instant)> {
        *self
            .shared
            .stall
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// POST /v1/commands requests served.
    pub fn submissions(&self) -> u64 {
        self.shared.submissions.load(Ordering::Relaxed)
    }
}

impl Drop for FakeCluster {
    fn drop(&mut self) {
        for listener in &self.listeners {
            listener.abort();
        }
    }
}

async fn accept(listener: TcpListener, shared: Arc<Shared>, instance: usize) {
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                // Nagle off, as on the real gateway; a failure only costs latency.
                let _ = stream.set_nodelay(true);
                tokio::spawn(serve(stream, Arc::clone(&shared), instance));
            }
            // Out of descriptors or similar: back off briefly, keep serving.
            Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
        }
    }
}

/// One keep-alive connection; ends when the client closes it or sends
/// something this server does not speak.
async fn serve(stream: TcpStream, shared: Arc<Shared>, instance: usize) {
    let (read, mut write) = stream.into_split();
    let mut reader = BufReader::new(read);
    let mut line = String::new();
    let mut response = Vec::with_capacity(512);
    loop {
        let Ok(Some(request)) = read_request(&mut reader, &mut line).await else {
            return;
        };
        let (status, body) = shared.handle(&request, instance).await;
        response.clear();
        // Writing into a Vec cannot fail.
        let _ = write!(
            response,
            "HTTP/1.1 {status} {}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
            reason_phrase(status),
            body.len()
        );
        response.extend_from_slice(&body);
        if write.write_all(&response).await.is_err() {
            return;
        }
    }
}

#[derive(Debug)]
struct HttpRequest {
    method: String,
    target: String,
    body: Vec<u8>,
}

/// Largest body this server reads, as the gateway's default bound.
const MAX_BODY_BYTES: usize = 16 * 1024;

/// The next request, `None` at a clean end of the connection.
async fn read_request(
    reader: &mut BufReader<tokio::net::tcp::OwnedReadHalf>,
    line: &mut String,
) -> io::Result<Option<HttpRequest>> {
    line.clear();
    if reader.read_line(line).await? == 0 {
        return Ok(None);
    }
    let mut parts = line.split_whitespace();
    let (Some(method), Some(target)) = (parts.next(), parts.next()) else {
        return Err(io::Error::new(io::ErrorKind::InvalidData, "request line"));
    };
    let (method, target) = (method.to_owned(), target.to_owned());
    let mut content_length = 0usize;
    loop {
        line.clear();
        if reader.read_line(line).await? == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        let header = line.trim_end();
        if header.is_empty() {
            break;
        }
        if let Some((name, value)) = header.split_once(':')
            && name.trim().eq_ignore_ascii_case("content-length")
        {
            content_length = value
                .trim()
                .parse()
                .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "content-length"))?;
        }
    }
    if content_length > MAX_BODY_BYTES {
        return Err(io::Error::new(io::ErrorKind::InvalidData, "body too large"));
    }
    let mut body = vec![0; content_length];
    reader.read_exact(&mut body).await?;
    Ok(Some(HttpRequest {
        method,
        target,
        body,
    }))
}

fn reason_phrase(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        409 => "Conflict",
        504 => "Gateway Timeout",
        _ => "Status",
    }
}

#[derive(Debug, Deserialize)]
struct SubmitBody {
    idempotency_key: String,
    command: Command,
}

type Reply = (u16, Arc<[u8]>);

fn json(status: u16, body: String) -> Reply {
    (status, Arc::from(body.into_bytes()))
}

fn error(status: u16, token: &str) -> Reply {
    json(
        status,
        format!(r#"{{"error":"{token}","detail":"fake target"}}"#),
    )
}

impl Shared {
    async fn handle(&self, request: &HttpRequest, instance: usize) -> Reply {
        let path = request.target.split('?').next().unwrap_or_default();
        let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
        match (request.method.as_str(), segments.as_slice()) {
            ("POST", ["v1", "commands"]) => self.submit(&request.body, instance).await,
            ("GET", ["v1", "commands", key]) => self.lookup(key),
            ("GET", ["v1", "stock", warehouse, sku]) => self.stock(warehouse, sku, instance),
            ("GET", ["health"]) => self.health(instance),
            ("GET", ["metrics"]) => json(200, self.latency[instance].render()),
            _ => error(404, "not_found"),
        }
    }

    async fn submit(&self, body: &[u8], instance: usize) -> Reply {
        let started = Instant::now();
        let number = self.submissions.fetch_add(1, Ordering::Relaxed) + 1;
        if let Some(until) = self.stall_until(started) {
            tokio::time::sleep_until(until.into()).await;
        }
        let late = self
            .config
            .faults
            .late_apply_every
            .is_some_and(|every| number % every == 0);
        let reply = match serde_json::from_slice::<SubmitBody>(body) {
            Ok(submission) if late => self.defer(submission),
            Ok(submission) => self.evaluate(submission),
            Err(_) => error(400, "malformed_json"),
        };
        self.latency[instance].observe(started.elapsed());
        reply
    }

    /// The end of the stall if this request falls in it (the first request
    /// after `Stall::after` opens it).
    fn stall_until(&self, now: Instant) -> Option<Instant> {
        let stall = self.config.faults.stall?;
        let mut window = self.stall.lock().unwrap_or_else(PoisonError::into_inner);
        match *window {
            Some((_, end)) => (now < end).then_some(end),
            None if now >= self.started + stall.after => {
                let end = now + stall.length;
                *window = Some((now, end));
                Some(end)
            }
            None => None,
        }
    }

    fn defer(&self, submission: SubmitBody) -> Reply {
        let mut inventory = self
            .inventory
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if !inventory.answers.contains_key(&submission.idempotency_key) {
            inventory
                .late
                .insert(submission.idempotency_key.clone(), submission);
        }
        error(504, "submit_timeout")
    }

    fn evaluate(&self, submission: SubmitBody) -> Reply {
        let mut inventory = self
            .inventory
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        self.evaluate_locked(&mut inventory, submission)
    }

    fn evaluate_locked(&self, inventory: &mut Inventory, submission: SubmitBody) -> Reply {
        inventory.late.remove(&submission.idempotency_key);
        if let Some((answer, _)) = inventory.answers.get(&submission.idempotency_key) {
            return answer.clone();
        }
        let command = &submission.command;
        let partition = partition_for_sku(command.sku(), self.config.partitions);
        let offset = inventory.next_offset[partition as usize];
        inventory.next_offset[partition as usize] += 1;
        let position = CommandPosition {
            partition,
            offset,
            index: 0,
        };
        let rejection = self.apply(inventory, command);
        let (status, verdict) = match rejection {
            None => (200, EnvelopeVerdict::Accepted),
            Some(_) => (409, EnvelopeVerdict::Rejected),
        };
        let envelope = encode_envelope(
            position,
            Some(&submission.idempotency_key),
            verdict,
            rejection,
            b"",
        );
        let answer: Reply = (status, Arc::from(envelope));
        let rank = inventory.answers.len() as u64;
        inventory
            .answers
            .insert(submission.idempotency_key, (answer.clone(), rank));
        answer
    }

    /// Applies an accepted command; the rejection reason otherwise.
    fn apply(&self, inventory: &mut Inventory, command: &Command) -> Option<&'static str> {
        fn level(inventory: &Inventory, warehouse: &str, sku: &str) -> i64 {
            inventory
                .levels
                .get(&(warehouse.to_owned(), sku.to_owned()))
                .copied()
                .unwrap_or(0)
        }
        fn add(inventory: &mut Inventory, warehouse: &str, sku: &str, by: i64) {
            *inventory
                .levels
                .entry((warehouse.to_owned(), sku.to_owned()))
                .or_default() += by;
        }
        match command {
            Command::Receive {
                warehouse,
                sku,
                quantity,
            } => {
                inventory.accepted_receives += 1;
                let times = match self.config.faults.double_apply_every {
                    Some(every) if inventory.accepted_receives % every == 0 => 2,
                    _ => 1,
                };
                add(inventory, warehouse, sku, quantity * times);
                None
            }
            Command::Ship {
                warehouse,
                sku,
                quantity,
            } => {
                if level(inventory, warehouse, sku) < *quantity {
                    return Some("insufficient_stock");
                }
                add(inventory, warehouse, sku, -quantity);
                None
            }
            Command::Transfer {
                from,
                to,
                sku,
                quantity,
            } => {
                if level(inventory, from, sku) < *quantity {
                    return Some("insufficient_stock");
                }
                add(inventory, from, sku, -quantity);
                add(inventory, to, sku, *quantity);
                None
            }
        }
    }

    fn lookup(&self, key: &str) -> Reply {
        let mut inventory = self
            .inventory
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(submission) = inventory.late.remove(key) {
            self.evaluate_locked(&mut inventory, submission);
            return error(404, "unknown_key");
        }
        let newest = |rank: u64| match self.config.lookup_bound {
            Some(bound) => rank + bound as u64 >= inventory.answers.len() as u64,
            None => true,
        };
        match inventory.answers.get(key) {
            Some((answer, rank)) if newest(*rank) => answer.clone(),
            _ => error(404, "unknown_key"),
        }
    }

    fn stock(&self, warehouse: &str, sku: &str, instance: usize) -> Reply {
        let inventory = self
            .inventory
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let mut quantity = inventory
            .levels
            .get(&(warehouse.to_owned(), sku.to_owned()))
            .copied()
            .unwrap_or(0);
        if self.config.faults.diverging_instance == Some(instance) {
            quantity += 1;
        }
        let partition = partition_for_sku(sku, self.config.partitions);
        let as_of = inventory.next_offset[partition as usize] - 1;
        json(
            200,
            format!(
                r#"{{"warehouse":"{warehouse}","sku":"{sku}","quantity":{quantity},"partition":{partition},"as_of_offset":{as_of}}}"#
            ),
        )
    }

    fn health(&self, instance: usize) -> Reply {
        let lag: Vec<String> = (0..self.config.partitions)
            .map(|p| format!(r#""{p}":0"#))
            .collect();
        json(
            200,
            format!(
                r#"{{"status":"ready","instance_id":{instance},"self_suspected":false,"suspected_peers":[],"halted_partitions":[],"lag":{{{}}}}}"#,
                lag.join(",")
            ),
        )
    }
}
