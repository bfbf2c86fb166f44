//! A real Tribunal cluster for end-to-end tests: one tansu broker, four
//! `tribunal node` processes on 127.0.0.(i+1), a temporary data root; plus
//! an inventory model (the honest answers), blocking HTTP helpers and a
//! reader of the outcome topic.
//!
//! Tests using [`TestCluster`] run one at a time (see [`SERIAL`]): each
//! cluster is five processes, and two cores shared by several clusters make
//! every deadline a coin toss.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use broker::Topics;
use broker::tansu::TansuBroker;
use domain::EntityKey;
use domain::inventory::{decode_level, stock_key};
use ledger::{Ledger, LedgerConfig};
use prost::Message as _;
use protocol::envelope::record_digest;
use protocol::records::Publication;
use rand::Rng as _;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Message as _, Offset, TopicPartitionList};
use serde_json::Value;
use tribunal::cluster::{ClusterConfig, ClusterError, LocalCluster, NodeProgram};
use tribunal::probe::{self, Response};

/// One cluster at a time in this test binary.
static SERIAL: Mutex<()> = Mutex::new(());

/// The longest any condition is waited for.
pub const DEADLINE: Duration = Duration::from_secs(30);
/// Pause between polls of a remote condition (each poll is a real request).
const POLL: Duration = Duration::from_millis(20);

pub const ALL: [u32; 4] = [0, 1, 2, 3];

/// How a test's cluster differs from four instances, 3 required copies.
#[derive(Clone, Debug)]
pub struct Options {
    pub required_copies: u32,
    pub extra_args: BTreeMap<u32, Vec<String>>,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            required_copies: 3,
            extra_args: BTreeMap::new(),
        }
    }
}

/// A running cluster on its own broker, ports and data root. Fields drop in
/// order: the nodes, then the broker, then the files, then the lock.
#[derive(Debug)]
pub struct TestCluster {
    pub cluster: LocalCluster,
    /// Held so the broker lives exactly as long as the cluster.
    _tansu: TansuBroker,
    data: tempfile::TempDir,
    /// Markers submitted so far (each needs a fresh key).
    markers: AtomicU32,
    _serial: MutexGuard<'static, ()>,
}

impl TestCluster {
    /// Starts tansu and four nodes and waits until every node is ready.
    pub fn start(options: Options) -> TestCluster {
        let serial = SERIAL
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let data = tempfile::Builder::new()
            .prefix("tribunal-e2e-")
            .tempdir()
            .expect("a temporary directory");
        let tansu = TansuBroker::start().unwrap_or_else(|error| panic!("tansu starts: {error}"));
        let http_port = free_port_on_every_host(&[]);
        let peer_port = free_port_on_every_host(&[http_port]);
        let config = ClusterConfig {
            instances: 4,
            partitions: 1,
            required_copies: options.required_copies,
            brokers: Some(tansu.profile().bootstrap_servers),
            data_root: data.path().join("cluster"),
            http_port,
            peer_port,
            node_program: NodeProgram {
                program: PathBuf::from(env!("CARGO_BIN_EXE_tribunal")),
                leading_args: vec!["node".into()],
            },
            extra_args: options.extra_args,
        };
        let cluster = LocalCluster::start(config).expect("the nodes start");
        let mut test = TestCluster {
            cluster,
            _tansu: tansu,
            data,
            markers: AtomicU32::new(0),
            _serial: serial,
        };
        test.wait_ready(&ALL);
        test
    }

    pub fn addr(&self, instance: u32) -> SocketAddr {
        self.cluster.http_addr(instance)
    }

    /// Waits until `instances` report ready and are who they should be
    /// (a foreign process on a port would answer with another id).
    pub fn wait_ready(&mut self, instances: &[u32]) {
        self.cluster
            .wait_ready_instances(instances, DEADLINE)
            .unwrap_or_else(|error| panic!("{}", self.failure(&format!("not ready: {error}"))));
        for &instance in instances {
            let health = self.health(instance);
            assert_eq!(health["instance_id"], instance, "{health}");
        }
    }

    /// Waits until `instance`, which was ready, is out of service: its
    /// process exited as a halted node exits, or its /health says halted
    /// or self-suspected, or it no longer answers /health at all.
    ///
    /// The last case is what a halted node does today: it stops its HTTP
    /// server and then hangs on shutdown instead of exiting (reported).
    pub fn wait_out_of_service(&mut self, instance: u32) {
        let started = Instant::now();
        loop {
            self.check_running_tolerating(&[instance]);
            if self.cluster.pid(instance).is_none() {
                return;
            }
            let out_of_service = match probe::get(self.addr(instance), "/health") {
                Err(_) => true,
                Ok(response) => {
                    let health: Value = serde_json::from_slice(&response.body).unwrap_or_default();
                    health["status"] == "halted" || health["self_suspected"] == true
                }
            };
            if out_of_service {
                return;
            }
            assert!(
                started.elapsed() < DEADLINE,
                "{}",
                self.failure(&format!("node {instance} is still in service"))
            );
            std::thread::sleep(POLL);
        }
    }

    /// Fails if a node exited, unless it is in `may_exit` and exited as a
    /// halted node does.
    fn check_running_tolerating(&mut self, may_exit: &[u32]) {
        loop {
            match self.cluster.check_running() {
                Ok(()) => return,
                Err(ClusterError::NodeExited { instance, status })
                    if may_exit.contains(&instance) =>
                {
                    let halted = format!("exit status: {}", tribunal::node::exit::HALTED);
                    assert_eq!(status, halted, "node {instance} exited, but not halted");
                }
                Err(error) => panic!("{}", self.failure(&error.to_string())),
            }
        }
    }

    /// POSTs one command; `Err` when the node did not answer at all.
    pub fn try_submit(&self, instance: u32, key: &str, command: &str) -> Result<Response, String> {
        post_command(self.addr(instance), key, command)
    }

    /// POSTs one command to `instance` and expects an agreed outcome.
    pub fn submit(&self, instance: u32, key: &str, command: &Command) -> Response {
        match self.try_submit(instance, key, &command_json(command)) {
            Ok(response) if response.status == 200 || response.status == 409 => response,
            Ok(response) => panic!(
                "{}",
                self.failure(&format!(
                    "node {instance} answered {key} with {}: {}",
                    response.status,
                    response.text()
                ))
            ),
            Err(error) => panic!(
                "{}",
                self.failure(&format!("node {instance}, {key}: {error}"))
            ),
        }
    }

    /// Submits to the given nodes in turn until one answers with an agreed
    /// outcome (a node may be down, halted or timing out).
    pub fn submit_until_answered(
        &self,
        instances: &[u32],
        key: &str,
        command: &Command,
    ) -> Response {
        let started = Instant::now();
        let mut last;
        for &instance in instances.iter().cycle() {
            match self.try_submit(instance, key, &command_json(command)) {
                Ok(response) if response.status == 200 || response.status == 409 => {
                    return response;
                }
                Ok(response) => {
                    last = format!("node {instance}: {} {}", response.status, response.text())
                }
                Err(error) => last = format!("node {instance}: {error}"),
            }
            assert!(
                started.elapsed() < DEADLINE,
                "{}",
                self.failure(&format!("{key} never answered; last: {last}"))
            );
            std::thread::sleep(POLL);
        }
        unreachable!("cycle over a non-empty list never ends")
    }

    pub fn get(&self, instance: u32, path: &str) -> Response {
        probe::get(self.addr(instance), path)
            .unwrap_or_else(|error| panic!("{}", self.failure(&format!("GET {path}: {error}"))))
    }

    pub fn health(&self, instance: u32) -> Value {
        let response = self.get(instance, "/health");
        serde_json::from_slice(&response.body).expect("/health is JSON")
    }

    /// One sample of a Prometheus series, `name{labels}` exactly as written.
    pub fn metric(&self, instance: u32, series: &str) -> Option<i64> {
        let text = self.get(instance, "/metrics").text();
        metric_in(&text, series)
    }

    /// Waits until a metric satisfies `holds`; returns its value.
    pub fn wait_metric(&self, instance: u32, series: &str, holds: impl Fn(i64) -> bool) -> i64 {
        let started = Instant::now();
        loop {
            let value = self.metric(instance, series);
            if let Some(value) = value.filter(|&value| holds(value)) {
                return value;
            }
            assert!(
                started.elapsed() < DEADLINE,
                "{}",
                self.failure(&format!("node {instance}: {series} is {value:?}"))
            );
            std::thread::sleep(POLL);
        }
    }

    /// `(quantity, as_of_offset)` of one stock level on one node.
    pub fn stock(&self, instance: u32, warehouse: &str, sku: &str) -> Result<(i64, i64), String> {
        let response = probe::get(self.addr(instance), &format!("/v1/stock/{warehouse}/{sku}"))
            .map_err(|error| error.to_string())?;
        if response.status != 200 {
            return Err(format!("{} {}", response.status, response.text()));
        }
        let level: Value = serde_json::from_slice(&response.body).expect("a stock level is JSON");
        Ok((
            level["quantity"].as_i64().expect("an integer quantity"),
            level["as_of_offset"].as_i64().expect("an integer offset"),
        ))
    }

    /// Submits a marker command through the first of `via` that answers,
    /// then asserts that each of `instances` holds the model's levels once
    /// it has durably applied the marker. Every record produced before the
    /// call lies below the marker's offset, which is returned.
    ///
    /// (The broker's log end cannot tell: tansu answers ListOffsets with the
    /// last produce batch's base offset + 1, short of the end whenever that
    /// batch held several records.)
    pub fn settle(&self, via: &[u32], instances: &[u32], model: &mut Model) -> i64 {
        let key = format!("marker-{}", self.markers.fetch_add(1, Ordering::Relaxed));
        let command = receive("marker", "marker", 1);
        let expected = model.apply(&command);
        let answer = self.submit_until_answered(via, &key, &command);
        let marker = assert_answer(&answer, &key, &expected).offset;
        self.assert_levels_at(instances, model, marker);
        marker
    }

    /// Waits until each of `instances` has durably applied `offset`, then
    /// asserts that its levels equal the model's. (Waiting on the watermark,
    /// not on the levels, makes the equality exact.)
    pub fn assert_levels_at(&self, instances: &[u32], model: &Model, offset: i64) {
        for &instance in instances {
            self.wait_metric(
                instance,
                "tribunal_usher_applied_offset{partition=\"0\"}",
                |applied| applied >= offset,
            );
            for (warehouse, sku, expected) in model.levels() {
                let started = Instant::now();
                let (quantity, as_of) = loop {
                    match self.stock(instance, warehouse, sku) {
                        Ok((quantity, as_of)) if as_of >= offset => break (quantity, as_of),
                        other => assert!(
                            started.elapsed() < DEADLINE,
                            "{}",
                            self.failure(&format!(
                                "node {instance}: stock {warehouse}/{sku}: {other:?}"
                            ))
                        ),
                    }
                    std::thread::sleep(POLL);
                };
                assert_eq!(
                    quantity,
                    expected,
                    "node {instance}: {warehouse}/{sku} as of offset {as_of}\n{}",
                    self.failure("")
                );
            }
        }
    }

    /// Asserts `applied <= consumed` in the Usher's progress on every node
    /// that answers.
    pub fn assert_applied_not_ahead_of_consumed(&self, instances: &[u32]) {
        for &instance in instances {
            let text = self.get(instance, "/metrics").text();
            let applied = metric_in(&text, "tribunal_usher_applied_offset{partition=\"0\"}");
            let consumed = metric_in(&text, "tribunal_usher_consumed_offset{partition=\"0\"}");
            if let (Some(applied), Some(consumed)) = (applied, consumed) {
                assert!(
                    applied <= consumed,
                    "node {instance}: applied {applied} > consumed {consumed}"
                );
            }
        }
    }

    /// Asserts that no node among `instances` suspects anyone or itself.
    pub fn assert_nobody_suspected(&self, instances: &[u32]) {
        for &instance in instances {
            let health = self.health(instance);
            assert_eq!(health["status"], "ready", "node {instance}: {health}");
            assert_eq!(health["self_suspected"], false, "node {instance}: {health}");
            assert_eq!(
                health["suspected_peers"],
                Value::Array(Vec::new()),
                "node {instance}: {health}"
            );
        }
    }

    /// The outcome topic in order, read until it holds a publication of
    /// every input offset up to `through`, and then on while records keep
    /// arriving (a backup's repeat). Not the broker's log end: see
    /// [`TestCluster::settle`].
    pub fn publications(&self, through: i64) -> Vec<Publication> {
        let topic = Topics::new(1).outcomes;
        let consumer = self.consumer("e2e-outcomes");
        let mut assignment = TopicPartitionList::new();
        assignment
            .add_partition_offset(&topic, 0, Offset::Beginning)
            .expect("a valid assignment");
        consumer
            .assign(&assignment)
            .expect("assign the outcome partition");
        let started = Instant::now();
        let mut publications = Vec::new();
        let mut missing: BTreeSet<i64> = (0..=through).collect();
        loop {
            match consumer.poll(Duration::from_millis(300)) {
                None if missing.is_empty() => return publications,
                None => {}
                // librdkafka retries by itself; the deadline bounds it.
                Some(Err(error)) => eprintln!("reading the outcome topic: {error}"),
                Some(Ok(message)) => {
                    let payload = message.payload().unwrap_or_default();
                    let publication = Publication::decode(payload).expect("a Publication record");
                    missing.remove(&publication.offset);
                    publications.push(publication);
                }
            }
            assert!(
                started.elapsed() < DEADLINE,
                "{}",
                self.failure(&format!("no publication of input offsets {missing:?}"))
            );
        }
    }

    /// Reads the publications (see [`TestCluster::publications`]) and checks
    /// each: its outputs hash to its digest, it has at least `required`
    /// matching copies, and its publisher is honest.
    /// Returns the publications by input offset (backups may repeat one;
    /// all copies must be equal but for the publisher).
    pub fn checked_publications(
        &self,
        through: i64,
        required: u32,
        honest: &[u32],
    ) -> BTreeMap<i64, Publication> {
        let mut by_offset: BTreeMap<i64, Publication> = BTreeMap::new();
        for publication in self.publications(through) {
            assert!(
                honest.contains(&publication.publisher_id),
                "offset {} published by {}, not one of {honest:?}",
                publication.offset,
                publication.publisher_id
            );
            assert!(
                publication.matching_copies >= required,
                "offset {} published with {} copies",
                publication.offset,
                publication.matching_copies
            );
            assert_eq!(
                record_digest(&publication.outputs).0.to_vec(),
                publication.digest,
                "offset {}: outputs do not hash to the published digest",
                publication.offset
            );
            if let Some(first) = by_offset.get(&publication.offset) {
                assert_eq!(
                    first.outputs, publication.outputs,
                    "offset {}",
                    publication.offset
                );
                assert_eq!(
                    first.digest, publication.digest,
                    "offset {}",
                    publication.offset
                );
            } else {
                by_offset.insert(publication.offset, publication);
            }
        }
        by_offset
    }

    /// Opens a stopped node's Ledger: its durable watermark and the levels
    /// it holds for `stocks`.
    pub fn durable_state(&self, instance: u32, stocks: &[(String, String)]) -> DurableState {
        let ledger = Ledger::open(&self.cluster.data_dir(instance), LedgerConfig::new(1))
            .unwrap_or_else(|error| panic!("node {instance}'s Ledger: {error}"));
        let applied_offset = ledger.watermarks()[0].applied_offset;
        let keys: Vec<EntityKey> = stocks.iter().map(|(w, s)| stock_key(w, s)).collect();
        let states = ledger.reader().entities(&keys).expect("stored levels");
        let levels = stocks
            .iter()
            .zip(keys.iter().zip(states))
            .map(|(stock, (key, state))| {
                (
                    stock.clone(),
                    decode_level(key, state.as_deref()).expect("a canonical level"),
                )
            })
            .collect();
        DurableState {
            applied_offset,
            levels,
        }
    }

    fn consumer(&self, client_id: &str) -> BaseConsumer {
        self.cluster
            .broker_profile()
            .consumer_config(client_id)
            .create()
            .expect("a consumer")
    }

    /// A failure message with the tail of every node's log.
    pub fn failure(&self, what: &str) -> String {
        let mut message = format!("{what}\ndata root: {}\n", self.data.path().display());
        for instance in ALL {
            let log = std::fs::read_to_string(self.cluster.log_path(instance)).unwrap_or_default();
            let lines: Vec<&str> = log.lines().collect();
            let tail = &lines[lines.len().saturating_sub(25)..];
            message.push_str(&format!(
                "--- node {instance} (last {} lines)\n",
                tail.len()
            ));
            for line in tail {
                message.push_str(line);
                message.push('\n');
            }
        }
        message
    }
}

/// What a stopped node's Ledger holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DurableState {
    pub applied_offset: i64,
    pub levels: BTreeMap<(String, String), i64>,
}

/// POSTs `{"idempotency_key":key,"command":command}`; `Err` when the node
/// did not answer at all.
pub fn post_command(addr: SocketAddr, key: &str, command: &str) -> Result<Response, String> {
    let body = format!(r#"{{"idempotency_key":"{key}","command":{command}}}"#);
    probe::post_json(addr, "/v1/commands", &body).map_err(|error| error.to_string())
}

/// The value of `series` in Prometheus text.
pub fn metric_in(text: &str, series: &str) -> Option<i64> {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .find_map(|line| {
            let (name, value) = line.rsplit_once(' ')?;
            (name == series)
                .then(|| value.parse::<f64>().ok())
                .flatten()
        })
        .map(|value| value as i64)
}

/// A port free on 127.0.0.1 to 127.0.0.4, outside the ephemeral range (so
/// no outgoing connection takes it meanwhile) and not in `taken`.
fn free_port_on_every_host(taken: &[u16]) -> u16 {
    let mut rng = rand::rng();
    loop {
        let port: u16 = rng.random_range(20_000..32_000);
        let free = !taken.contains(&port)
            && (1..=4)
                .all(|last| TcpListener::bind((Ipv4Addr::new(127, 0, 0, last), port)).is_ok());
        if free {
            return port;
        }
    }
}

/// An inventory command as a client sends it (its serde form is the
/// request's `command` object).
pub use domain::inventory::InventoryCommand as Command;

/// The request's `command` object.
pub fn command_json(command: &Command) -> String {
    serde_json::to_string(command).expect("a command always serialises")
}

pub fn receive(warehouse: &str, sku: &str, quantity: i64) -> Command {
    Command::Receive {
        warehouse: warehouse.into(),
        sku: sku.into(),
        quantity,
    }
}

pub fn ship(warehouse: &str, sku: &str, quantity: i64) -> Command {
    Command::Ship {
        warehouse: warehouse.into(),
        sku: sku.into(),
        quantity,
    }
}

pub fn transfer(from: &str, to: &str, sku: &str, quantity: i64) -> Command {
    Command::Transfer {
        from: from.into(),
        to: to.into(),
        sku: sku.into(),
        quantity,
    }
}

/// The honest outcome of one command: what every correct instance answers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Expected {
    pub verdict: &'static str,
    pub reason: Option<&'static str>,
    /// The domain's canonical result body.
    pub result: Option<String>,
}

impl Expected {
    pub fn http_status(&self) -> u16 {
        if self.verdict == "accepted" { 200 } else { 409 }
    }

    /// The exact envelope bytes for this outcome at `(offset, index)`.
    pub fn envelope(&self, offset: i64, index: i64, key: &str) -> String {
        let mut out = format!(
            r#"{{"partition":0,"offset":{offset},"index":{index},"key":"{key}","verdict":"{}""#,
            self.verdict
        );
        if let Some(reason) = self.reason {
            out.push_str(&format!(r#","reason":"{reason}""#));
        }
        if let Some(result) = &self.result {
            out.push_str(&format!(r#","result":{result}"#));
        }
        out.push('}');
        out
    }

    /// The rejection a reused key gets.
    pub fn key_reused() -> Expected {
        Expected {
            verdict: "rejected",
            reason: Some("idempotency_key_reused"),
            result: None,
        }
    }
}

/// The inventory domain, independently: levels per (warehouse, sku).
#[derive(Clone, Debug, Default)]
pub struct Model {
    levels: BTreeMap<(String, String), i64>,
}

impl Model {
    pub fn level(&self, warehouse: &str, sku: &str) -> i64 {
        self.levels
            .get(&(warehouse.to_owned(), sku.to_owned()))
            .copied()
            .unwrap_or(0)
    }

    pub fn levels(&self) -> impl Iterator<Item = (&String, &String, i64)> + '_ {
        self.levels.iter().map(|((w, s), &level)| (w, s, level))
    }

    pub fn stocks(&self) -> Vec<(String, String)> {
        self.levels.keys().cloned().collect()
    }

    fn set(&mut self, warehouse: &str, sku: &str, level: i64) {
        self.levels
            .insert((warehouse.to_owned(), sku.to_owned()), level);
    }

    /// Applies `command` as the domain does and returns its outcome.
    pub fn apply(&mut self, command: &Command) -> Expected {
        match command {
            Command::Receive {
                warehouse,
                sku,
                quantity,
            } => {
                let level = self.level(warehouse, sku) + quantity;
                self.set(warehouse, sku, level);
                accepted(format!(
                    r#"{{"type":"receive","warehouse":"{warehouse}","sku":"{sku}","quantity":{quantity},"level":{level}}}"#
                ))
            }
            Command::Ship {
                warehouse,
                sku,
                quantity,
            } => {
                let level = self.level(warehouse, sku);
                let short = level < *quantity;
                let after = if short { level } else { level - quantity };
                let body = format!(
                    r#"{{"type":"ship","warehouse":"{warehouse}","sku":"{sku}","quantity":{quantity},"level":{after}}}"#
                );
                if short {
                    rejected("insufficient_stock", body)
                } else {
                    self.set(warehouse, sku, after);
                    accepted(body)
                }
            }
            Command::Transfer {
                from,
                to,
                sku,
                quantity,
            } => {
                let (from_level, to_level) = (self.level(from, sku), self.level(to, sku));
                let body = |from_level: i64, to_level: i64| {
                    format!(
                        r#"{{"type":"transfer","from":"{from}","to":"{to}","sku":"{sku}","quantity":{quantity},"from_level":{from_level},"to_level":{to_level}}}"#
                    )
                };
                if from == to {
                    rejected("same_warehouse", body(from_level, to_level))
                } else if from_level < *quantity {
                    rejected("insufficient_stock", body(from_level, to_level))
                } else {
                    self.set(from, sku, from_level - quantity);
                    self.set(to, sku, to_level + quantity);
                    accepted(body(from_level - quantity, to_level + quantity))
                }
            }
        }
    }
}

fn accepted(result: String) -> Expected {
    Expected {
        verdict: "accepted",
        reason: None,
        result: Some(result),
    }
}

fn rejected(reason: &'static str, result: String) -> Expected {
    Expected {
        verdict: "rejected",
        reason: Some(reason),
        result: Some(result),
    }
}

/// Where an answer sits in the log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AnswerPosition {
    pub offset: i64,
    pub index: i64,
}

/// Asserts that `answer` is exactly the honest envelope of `expected` for
/// `key`, byte for byte; returns its position.
pub fn assert_answer(answer: &Response, key: &str, expected: &Expected) -> AnswerPosition {
    let body: Value = serde_json::from_slice(&answer.body)
        .unwrap_or_else(|error| panic!("{key}: answer is not JSON ({error}): {}", answer.text()));
    let position = AnswerPosition {
        offset: body["offset"].as_i64().expect("an offset"),
        index: body["index"].as_i64().expect("an index"),
    };
    assert_eq!(
        answer.text(),
        expected.envelope(position.offset, position.index, key),
        "{key}: the answer is not the honest outcome"
    );
    assert_eq!(
        answer.status,
        expected.http_status(),
        "{key}: {}",
        answer.text()
    );
    position
}

/// Asserts that every acknowledged answer is, byte for byte, the output at
/// its position in the agreed publication of its record, under its key.
pub fn assert_answers_published(
    publications: &BTreeMap<i64, Publication>,
    answers: &[(String, Response)],
) {
    for (key, answer) in answers {
        let body: Value = serde_json::from_slice(&answer.body).expect("an envelope");
        let offset = body["offset"].as_i64().expect("an offset");
        let index = usize::try_from(body["index"].as_u64().expect("an index")).expect("small");
        let publication = publications
            .get(&offset)
            .unwrap_or_else(|| panic!("{key}: no publication of offset {offset}"));
        assert_eq!(
            publication.outputs.get(index).map(Vec::as_slice),
            Some(answer.body.as_ref()),
            "{key}: the answer is not the published output"
        );
        assert_eq!(
            publication.idempotency_keys.get(index).map(String::as_str),
            Some(key.as_str()),
            "offset {offset}"
        );
    }
}

/// The set of instances that are not `excluded`.
pub fn others(excluded: &[u32]) -> Vec<u32> {
    let excluded: BTreeSet<u32> = excluded.iter().copied().collect();
    ALL.into_iter().filter(|i| !excluded.contains(i)).collect()
}
