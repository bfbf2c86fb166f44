//! The recorded history of one chaos run: what clients submitted and were
//! told, what the input and outcome topics hold when read back, each
//! instance's final state, and the faults injected.
//!
//! A recorder appends [`HistoryEvent`]s as JSON lines while the run goes on
//! ([`HistoryWriter`]): an invocation before the request is sent, its
//! completion when it ends, a fault when it starts and when it heals; the
//! topics and final states once the cluster has converged. Events may be
//! written in any order; [`History::from_events`] pairs them up and refuses
//! an inconsistent log. The checker (`crate::checker`) judges a [`History`].
//!
//! Bytes that clients or instances compare (answer bodies, outputs, digests)
//! are kept exactly: [`RawBytes`] is written as a JSON string when it is
//! UTF-8 (outcome envelopes are) and as hex otherwise.

use std::collections::BTreeMap;
use std::fmt;
use std::io::{self, BufRead, Write};

use domain::inventory::{Inventory, InventoryLimits};
use protocol::position::{Offset, Partition, StreamTime};
use protocol::records::Publication;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use usher::{DecodeLimits, DeliveryResult, decode_record};

/// An instance's id, `0..instances`.
pub type InstanceId = u32;

/// Microseconds since the run's start, on the runner's monotonic clock.
pub type Micros = u64;

/// The recorder's number for one submission, unique within a run.
pub type SubmissionId = u64;

/// The recorder's number for one injected fault, unique within a run.
pub type FaultId = u64;

/// What the run was: the cluster's shape and the parameters the checker
/// judges by.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunInfo {
    pub scenario: String,
    pub seed: u64,
    /// Instances in the cluster (`core.instance_count`).
    pub instances: u32,
    /// Partitions of the input topic (`core.input_partitions`).
    pub input_partitions: u32,
    /// `core.required_copies`.
    pub required_copies: u32,
    /// `core.idempotency_ttl`, on stream time: two fresh applications of one
    /// key at least this far apart are legitimate.
    pub idempotency_ttl_ms: i64,
    /// Instances the scenario makes lie: their divergence is expected, and
    /// they are left out of every comparison of honest instances.
    #[serde(default)]
    pub byzantine: Vec<InstanceId>,
    /// The inventory bounds the cluster ran with.
    #[serde(default)]
    pub inventory: InventoryBounds,
}

impl RunInfo {
    pub fn is_byzantine(&self, instance: InstanceId) -> bool {
        self.byzantine.contains(&instance)
    }

    /// The domain as the cluster's instances run it.
    pub fn domain(&self) -> Inventory {
        Inventory::new(self.inventory.into())
    }
}

/// `domain::inventory::InventoryLimits`, serialisable.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InventoryBounds {
    pub max_quantity: i64,
    pub max_stock_level: i64,
}

impl Default for InventoryBounds {
    fn default() -> Self {
        InventoryLimits::default().into()
    }
}

impl From<InventoryLimits> for InventoryBounds {
    fn from(limits: InventoryLimits) -> Self {
        Self {
            max_quantity: limits.max_quantity,
            max_stock_level: limits.max_stock_level,
        }
    }
}

impl From<InventoryBounds> for InventoryLimits {
    fn from(bounds: InventoryBounds) -> Self {
        Self {
            max_quantity: bounds.max_quantity,
            max_stock_level: bounds.max_stock_level,
        }
    }
}

/// A command as the HTTP API spells it inside a submission
/// (`{"type":"receive","warehouse":..,"sku":..,"quantity":..}`): the
/// domain's own command, whose serde form is the API's.
pub use domain::inventory::InventoryCommand as Command;

/// Bytes kept exactly: a JSON string when UTF-8, else `{"hex":"..."}`.
#[derive(Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RawBytes(pub Vec<u8>);

impl RawBytes {
    pub fn as_slice(&self) -> &[u8] {
        &self.0
    }

    /// The bytes as text, invalid UTF-8 replaced (for reports).
    pub fn lossy(&self) -> String {
        String::from_utf8_lossy(&self.0).into_owned()
    }
}

impl AsRef<[u8]> for RawBytes {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

impl From<Vec<u8>> for RawBytes {
    fn from(bytes: Vec<u8>) -> Self {
        Self(bytes)
    }
}

impl From<&[u8]> for RawBytes {
    fn from(bytes: &[u8]) -> Self {
        Self(bytes.to_vec())
    }
}

impl From<&str> for RawBytes {
    fn from(text: &str) -> Self {
        Self(text.as_bytes().to_vec())
    }
}

impl fmt::Debug for RawBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match std::str::from_utf8(&self.0) {
            Ok(text) => write!(f, "{text:?}"),
            Err(_) => write!(f, "hex:{}", HexBytes(self.0.clone())),
        }
    }
}

#[derive(Serialize, Deserialize)]
#[serde(untagged)]
enum RawBytesForm {
    Text(String),
    Binary { hex: HexBytes },
}

impl Serialize for RawBytes {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match std::str::from_utf8(&self.0) {
            Ok(text) => serializer.serialize_str(text),
            Err(_) => RawBytesForm::Binary {
                hex: HexBytes(self.0.clone()),
            }
            .serialize(serializer),
        }
    }
}

impl<'de> Deserialize<'de> for RawBytes {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Ok(match RawBytesForm::deserialize(deserializer)? {
            RawBytesForm::Text(text) => Self(text.into_bytes()),
            RawBytesForm::Binary { hex } => Self(hex.0),
        })
    }
}

/// Bytes written as lowercase hex (digests).
#[derive(Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct HexBytes(pub Vec<u8>);

impl From<Vec<u8>> for HexBytes {
    fn from(bytes: Vec<u8>) -> Self {
        Self(bytes)
    }
}

impl From<protocol::envelope::RecordDigest> for HexBytes {
    fn from(digest: protocol::envelope::RecordDigest) -> Self {
        Self(digest.0.to_vec())
    }
}

impl fmt::Display for HexBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.iter().try_for_each(|byte| write!(f, "{byte:02x}"))
    }
}

impl fmt::Debug for HexBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{self}")
    }
}

impl Serialize for HexBytes {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for HexBytes {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        parse_hex(&text).map(Self).ok_or_else(|| {
            serde::de::Error::custom(format!("not an even-length hex string: {text:?}"))
        })
    }
}

fn parse_hex(text: &str) -> Option<Vec<u8>> {
    if text.len() % 2 != 0 {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|at| {
            text.get(at..at + 2)
                .and_then(|pair| u8::from_str_radix(pair, 16).ok())
        })
        .collect()
}

/// A submission as invoked: sent once to one gateway.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Invocation {
    pub id: SubmissionId,
    /// The client (load generator task) that sent it.
    pub client: u32,
    /// The instance whose gateway it was sent to.
    pub gateway: InstanceId,
    pub key: String,
    pub command: Command,
    pub invoked_us: Micros,
}

/// How a submission ended.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Completion {
    /// An HTTP answer, any status, with its body byte for byte. Whether it
    /// is an agreed outcome (200/409/422 with an envelope), a refusal (4xx)
    /// or unanswered (503/504) is read from it by the checker.
    Answered { status: u16, body: RawBytes },
    /// No answer within the client's timeout: the command may be applied
    /// once, or not at all.
    TimedOut,
    /// No answer: connect failure, broken connection, protocol error. The
    /// command may be applied once, or not at all.
    Failed { error: String },
}

/// One submission and what became of it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Submission {
    pub id: SubmissionId,
    pub client: u32,
    pub gateway: InstanceId,
    pub key: String,
    pub command: Command,
    pub invoked_us: Micros,
    /// `None` while the submission was still in flight when the run ended
    /// (judged like a timeout).
    pub completed_us: Option<Micros>,
    pub completion: Option<Completion>,
}

impl Submission {
    /// When the submission could have taken effect, as far as the client
    /// knows: from invocation to completion (to `run_end` if it never ended).
    pub fn window(&self, run_end: Micros) -> (Micros, Micros) {
        (self.invoked_us, self.completed_us.unwrap_or(run_end))
    }
}

/// One record of the input topic as read back.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InputRecord {
    pub partition: Partition,
    pub offset: Offset,
    /// The record's Kafka timestamp, in Unix milliseconds (stream time).
    pub timestamp_ms: i64,
    pub content: InputContent,
}

/// What an input record decodes to, exactly as the Usher decodes it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum InputContent {
    /// The pack's commands, in index order.
    Commands { commands: Vec<InputCommand> },
    /// An undecodable record: the reason token the instances put in its
    /// dead-letter output (`usher::DeadLetterReason::token`).
    DeadLettered { reason: String },
}

/// One command of a pack.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InputCommand {
    pub key: String,
    pub command: Command,
}

impl InputRecord {
    /// Decodes a record's value (`None` for a tombstone) with the Usher's own
    /// decoder and the run's inventory bounds, so a record the instances
    /// dead-letter is dead-lettered here for the same reason.
    pub fn decode(
        run: &RunInfo,
        partition: Partition,
        offset: Offset,
        timestamp_ms: i64,
        payload: Option<&[u8]>,
    ) -> Self {
        let delivery = decode_record(
            &run.domain(),
            &DecodeLimits::default(),
            partition,
            offset,
            StreamTime(timestamp_ms),
            payload,
        );
        let content = match delivery.result {
            DeliveryResult::Decoded(commands) => InputContent::Commands {
                commands: commands
                    .iter()
                    .map(|decoded| InputCommand {
                        key: decoded.idempotency_key.clone(),
                        command: decoded.command.clone(),
                    })
                    .collect(),
            },
            DeliveryResult::DeadLettered(letter) => InputContent::DeadLettered {
                reason: letter.reason().token().to_owned(),
            },
        };
        Self {
            partition,
            offset,
            timestamp_ms,
            content,
        }
    }

    /// The commands of a decodable record; none for a dead letter.
    pub fn commands(&self) -> &[InputCommand] {
        match &self.content {
            InputContent::Commands { commands } => commands,
            InputContent::DeadLettered { .. } => &[],
        }
    }
}

/// One record of the outcome topic as read back
/// (`protocol::records::Publication`, with bytes kept exactly).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublishedRecord {
    /// The input record's partition and offset.
    pub partition: Partition,
    pub offset: Offset,
    /// The agreed record digest as published (32 bytes when intact).
    pub digest: HexBytes,
    pub publisher_id: InstanceId,
    pub matching_copies: u32,
    /// One canonical envelope per command, in index order.
    pub outputs: Vec<RawBytes>,
    /// One per output; empty for a dead letter.
    pub idempotency_keys: Vec<String>,
    /// The input record's stream time, in Unix milliseconds.
    pub record_timestamp: i64,
}

impl From<Publication> for PublishedRecord {
    fn from(publication: Publication) -> Self {
        Self {
            partition: publication.partition,
            offset: publication.offset,
            digest: HexBytes(publication.digest),
            publisher_id: publication.publisher_id,
            matching_copies: publication.matching_copies,
            outputs: publication.outputs.into_iter().map(RawBytes).collect(),
            idempotency_keys: publication.idempotency_keys,
            record_timestamp: publication.record_timestamp,
        }
    }
}

impl PublishedRecord {
    /// Decodes an outcome record's value.
    pub fn decode(payload: &[u8]) -> Result<Self, prost::DecodeError> {
        use prost::Message as _;
        Publication::decode(payload).map(Self::from)
    }
}

/// An outcome-topic record that is no publication at all.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnreadablePublication {
    /// Where it sits in the outcome topic.
    pub topic_partition: Partition,
    pub topic_offset: Offset,
    pub error: String,
}

/// An instance's applied offset (watermark) on one input partition; `-1`
/// before the first record.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct AppliedOffset {
    pub partition: Partition,
    pub offset: Offset,
}

/// One stock level: (warehouse, sku) → quantity.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct StockRow {
    pub warehouse: String,
    pub sku: String,
    pub quantity: i64,
}

/// An instance's own digest of one record's outputs.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct InstanceRecordDigest {
    pub partition: Partition,
    pub offset: Offset,
    pub digest: HexBytes,
}

/// An instance's state once the run has converged (absent for an instance
/// that could not be read).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstanceFinal {
    pub instance: InstanceId,
    /// Every partition's applied offset; a partition not listed counts as -1.
    pub applied: Vec<AppliedOffset>,
    /// A digest of the whole durable state, if the instance exposes one;
    /// compared between honest instances with equal applied offsets.
    #[serde(default)]
    pub state_digest: Option<HexBytes>,
    /// Every stock level the instance holds.
    pub stock: Vec<StockRow>,
    /// The instance's own record digests, as many as it still holds.
    #[serde(default)]
    pub record_digests: Vec<InstanceRecordDigest>,
}

impl InstanceFinal {
    /// The applied offset of `partition` (-1 when not listed).
    pub fn applied_offset(&self, partition: Partition) -> Offset {
        self.applied
            .iter()
            .filter(|applied| applied.partition == partition)
            .map(|applied| applied.offset)
            .max()
            .unwrap_or(-1)
    }
}

/// What kind of fault was injected.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FaultKind {
    /// SIGKILL; healed by the restart.
    Kill,
    /// SIGSTOP; healed by SIGCONT.
    Pause,
    /// Federation links cut between the targets and the rest.
    Partition,
    /// The targets corrupt their outputs.
    Byzantine,
    /// The broker stopped and restarted.
    BrokerRestart,
    /// The targets' data directories wiped; healed when they rejoin.
    DiskLoss,
}

/// One injected fault.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fault {
    pub id: FaultId,
    pub kind: FaultKind,
    /// Instances affected (empty for the broker).
    pub targets: Vec<InstanceId>,
    pub started_us: Micros,
    /// `None` when the fault was never healed.
    pub healed_us: Option<Micros>,
    /// Free text: which step of the scenario, which links, ...
    pub detail: String,
}

/// One line of a history file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum HistoryEvent {
    /// Exactly once per history.
    Run(RunInfo),
    /// Written before the request is sent.
    Invoked(Invocation),
    Completed {
        submission: SubmissionId,
        completed_us: Micros,
        completion: Completion,
    },
    FaultStarted {
        fault: FaultId,
        kind: FaultKind,
        targets: Vec<InstanceId>,
        started_us: Micros,
        detail: String,
    },
    FaultHealed {
        fault: FaultId,
        healed_us: Micros,
    },
    InputRecord(InputRecord),
    Publication(PublishedRecord),
    UnreadablePublication(UnreadablePublication),
    InstanceFinal(InstanceFinal),
}

/// A whole run's history, assembled from its events.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct History {
    pub run: RunInfo,
    /// By id.
    pub submissions: Vec<Submission>,
    /// By id.
    pub faults: Vec<Fault>,
    /// In read order.
    pub input: Vec<InputRecord>,
    /// In read order: readers keep the first intact one per (partition, offset).
    pub publications: Vec<PublishedRecord>,
    pub unreadable_publications: Vec<UnreadablePublication>,
    /// By instance id.
    pub instances: Vec<InstanceFinal>,
}

/// Why events do not make a history.
#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    #[error("reading the history: {0}")]
    Io(#[from] io::Error),
    #[error("history line {line}: {error}")]
    Parse {
        line: usize,
        error: serde_json::Error,
    },
    #[error("the history has no run event")]
    MissingRun,
    #[error("the history has more than one run event")]
    SecondRun,
    #[error("submission {0} invoked twice")]
    SubmissionInvokedTwice(SubmissionId),
    #[error("submission {0} completed twice")]
    SubmissionCompletedTwice(SubmissionId),
    #[error("submission {0} completed but never invoked")]
    CompletionWithoutInvocation(SubmissionId),
    #[error("fault {0} started twice")]
    FaultStartedTwice(FaultId),
    #[error("fault {0} healed twice")]
    FaultHealedTwice(FaultId),
    #[error("fault {0} healed but never started")]
    HealWithoutFault(FaultId),
    #[error("instance {0} has two final states")]
    InstanceFinalTwice(InstanceId),
}

impl History {
    /// Pairs invocations with completions and fault starts with heals.
    pub fn from_events(
        events: impl IntoIterator<Item = HistoryEvent>,
    ) -> Result<History, HistoryError> {
        let mut run = None;
        let mut invocations = BTreeMap::new();
        let mut completions = BTreeMap::new();
        let mut faults = BTreeMap::new();
        let mut heals = BTreeMap::new();
        let mut input = Vec::new();
        let mut publications = Vec::new();
        let mut unreadable_publications = Vec::new();
        let mut instances = BTreeMap::new();
        for event in events {
            match event {
                HistoryEvent::Run(info) => {
                    if run.replace(info).is_some() {
                        return Err(HistoryError::SecondRun);
                    }
                }
                HistoryEvent::Invoked(invocation) => {
                    let id = invocation.id;
                    if invocations.insert(id, invocation).is_some() {
                        return Err(HistoryError::SubmissionInvokedTwice(id));
                    }
                }
                HistoryEvent::Completed {
                    submission,
                    completed_us,
                    completion,
                } => {
                    if completions
                        .insert(submission, (completed_us, completion))
                        .is_some()
                    {
                        return Err(HistoryError::SubmissionCompletedTwice(submission));
                    }
                }
                HistoryEvent::FaultStarted {
                    fault,
                    kind,
                    targets,
                    started_us,
                    detail,
                } => {
                    let started = Fault {
                        id: fault,
                        kind,
                        targets,
                        started_us,
                        healed_us: None,
                        detail,
                    };
                    if faults.insert(fault, started).is_some() {
                        return Err(HistoryError::FaultStartedTwice(fault));
                    }
                }
                HistoryEvent::FaultHealed { fault, healed_us } => {
                    if heals.insert(fault, healed_us).is_some() {
                        return Err(HistoryError::FaultHealedTwice(fault));
                    }
                }
                HistoryEvent::InputRecord(record) => input.push(record),
                HistoryEvent::Publication(publication) => publications.push(publication),
                HistoryEvent::UnreadablePublication(record) => unreadable_publications.push(record),
                HistoryEvent::InstanceFinal(state) => {
                    let id = state.instance;
                    if instances.insert(id, state).is_some() {
                        return Err(HistoryError::InstanceFinalTwice(id));
                    }
                }
            }
        }
        let run = run.ok_or(HistoryError::MissingRun)?;
        if let Some(&orphan) = completions.keys().find(|id| !invocations.contains_key(id)) {
            return Err(HistoryError::CompletionWithoutInvocation(orphan));
        }
        if let Some(&orphan) = heals.keys().find(|id| !faults.contains_key(id)) {
            return Err(HistoryError::HealWithoutFault(orphan));
        }
        let submissions = invocations
            .into_values()
            .map(|invocation| {
                let completed = completions.remove(&invocation.id);
                Submission {
                    id: invocation.id,
                    client: invocation.client,
                    gateway: invocation.gateway,
                    key: invocation.key,
                    command: invocation.command,
                    invoked_us: invocation.invoked_us,
                    completed_us: completed.as_ref().map(|(at, _)| *at),
                    completion: completed.map(|(_, completion)| completion),
                }
            })
            .collect();
        let faults = faults
            .into_values()
            .map(|fault| Fault {
                healed_us: heals.get(&fault.id).copied(),
                ..fault
            })
            .collect();
        Ok(History {
            run,
            submissions,
            faults,
            input,
            publications,
            unreadable_publications,
            instances: instances.into_values().collect(),
        })
    }

    /// The events that rebuild this history (`from_events(h.to_events()) == h`).
    pub fn to_events(&self) -> Vec<HistoryEvent> {
        let mut events = vec![HistoryEvent::Run(self.run.clone())];
        for fault in &self.faults {
            events.push(HistoryEvent::FaultStarted {
                fault: fault.id,
                kind: fault.kind,
                targets: fault.targets.clone(),
                started_us: fault.started_us,
                detail: fault.detail.clone(),
            });
            if let Some(healed_us) = fault.healed_us {
                events.push(HistoryEvent::FaultHealed {
                    fault: fault.id,
                    healed_us,
                });
            }
        }
        for submission in &self.submissions {
            events.push(HistoryEvent::Invoked(Invocation {
                id: submission.id,
                client: submission.client,
                gateway: submission.gateway,
                key: submission.key.clone(),
                command: submission.command.clone(),
                invoked_us: submission.invoked_us,
            }));
            if let (Some(completed_us), Some(completion)) =
                (submission.completed_us, &submission.completion)
            {
                events.push(HistoryEvent::Completed {
                    submission: submission.id,
                    completed_us,
                    completion: completion.clone(),
                });
            }
        }
        events.extend(self.input.iter().cloned().map(HistoryEvent::InputRecord));
        events.extend(
            self.publications
                .iter()
                .cloned()
                .map(HistoryEvent::Publication),
        );
        events.extend(
            self.unreadable_publications
                .iter()
                .cloned()
                .map(HistoryEvent::UnreadablePublication),
        );
        events.extend(
            self.instances
                .iter()
                .cloned()
                .map(HistoryEvent::InstanceFinal),
        );
        events
    }

    /// The latest time the history mentions: the end of the run as far as
    /// the recorder saw it.
    pub fn end_us(&self) -> Micros {
        let submissions = self
            .submissions
            .iter()
            .map(|s| s.completed_us.unwrap_or(s.invoked_us));
        let faults = self
            .faults
            .iter()
            .map(|f| f.healed_us.unwrap_or(f.started_us));
        submissions.chain(faults).max().unwrap_or(0)
    }

    /// Reads a JSON-lines history.
    pub fn read(reader: impl BufRead) -> Result<History, HistoryError> {
        History::from_events(read_events(reader)?)
    }

    /// Writes this history as JSON lines.
    pub fn write(&self, writer: impl Write) -> io::Result<()> {
        let mut out = HistoryWriter::new(writer);
        for event in self.to_events() {
            out.append(&event)?;
        }
        out.into_inner().flush()
    }
}

/// Reads every event of a JSON-lines history; blank lines are skipped.
pub fn read_events(reader: impl BufRead) -> Result<Vec<HistoryEvent>, HistoryError> {
    let mut events = Vec::new();
    for (number, line) in reader.lines().enumerate() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        let event = serde_json::from_str(&line).map_err(|error| HistoryError::Parse {
            line: number + 1,
            error,
        })?;
        events.push(event);
    }
    Ok(events)
}

/// Appends events as JSON lines. Wrap the writer in a `BufWriter` and flush
/// when the run ends; share it between tasks behind a lock or a channel.
#[derive(Debug)]
pub struct HistoryWriter<W: Write> {
    out: W,
}

impl<W: Write> HistoryWriter<W> {
    pub fn new(out: W) -> Self {
        Self { out }
    }

    /// Writes one event and its line break.
    pub fn append(&mut self, event: &HistoryEvent) -> io::Result<()> {
        serde_json::to_writer(&mut self.out, event).map_err(io::Error::other)?;
        self.out.write_all(b"\n")
    }

    pub fn into_inner(self) -> W {
        self.out
    }
}
