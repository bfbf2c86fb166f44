//! The Warden's general properties: a log driven through the core under
//! arbitrary batching, evaluation order, commit cuts, Ledger and durability
//! lags and purge schedules gives the outputs of the spec's rules applied one
//! command at a time.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use proptest::prelude::*;
use protocol::envelope::{EnvelopeVerdict, encode_envelope};
use protocol::position::{CommandPosition, Offset, StreamTime};
use warden::{
    Classification, ExpiryCandidate, FetchedEntry, IncomingCommand, StoredEntry, Warden,
    WardenCommitDelta, WardenConfig, command_fingerprint, key_reused_rejection,
};

const TTL: i64 = 100;
const PARTITION: u32 = 0;
const KEYS: [&str; 4] = ["k0", "k1", "k2", "k3"];
const COMMANDS: [&[u8]; 2] = [b"receive w1 sku-1 5", b"ship w1 sku-1 2"];

#[derive(Clone, Debug)]
struct Record {
    offset: Offset,
    stream_time: StreamTime,
    /// (key index, command index) per command of the pack.
    commands: Vec<(usize, usize)>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Fresh,
    Duplicate,
    KeyReused,
}

/// What one command's output is and how it came about.
type Outputs = BTreeMap<CommandPosition, (Kind, Vec<u8>)>;

fn log() -> impl Strategy<Value = Vec<Record>> {
    let record = (
        1..=2i64,
        0..=TTL * 4 / 5,
        prop::collection::vec((0..KEYS.len(), 0..COMMANDS.len()), 1..=3),
    );
    prop::collection::vec(record, 1..40).prop_map(|records| {
        let (mut offset, mut millis) = (-1, 0);
        records
            .into_iter()
            .map(|(offset_step, gap, commands)| {
                // Skipped offsets stand for dead-lettered records.
                offset += offset_step;
                millis += gap;
                Record {
                    offset,
                    stream_time: StreamTime(millis),
                    commands,
                }
            })
            .collect()
    })
}

fn position(record: &Record, index: usize) -> CommandPosition {
    CommandPosition {
        partition: PARTITION,
        offset: record.offset,
        index: u32::try_from(index).expect("small pack"),
    }
}

/// The domain's stand-in: a function of the command and its position.
fn evaluate(position: CommandPosition, key: &str, command: &[u8]) -> Vec<u8> {
    let body = format!(
        r#"{{"bytes":{},"offset":{}}}"#,
        command.len(),
        position.offset
    );
    encode_envelope(
        position,
        Some(key),
        EnvelopeVerdict::Accepted,
        None,
        body.as_bytes(),
    )
}

/// The spec's rules applied one command at a time, each at its own record's
/// stream time; returns the outputs and the entries at the end.
fn reference(log: &[Record]) -> (Outputs, BTreeMap<&'static str, StoredEntry>) {
    let mut entries: BTreeMap<&'static str, StoredEntry> = BTreeMap::new();
    let mut outputs = Outputs::new();
    for record in log {
        for (index, &(key, command)) in record.commands.iter().enumerate() {
            let (key, command, at) = (KEYS[key], COMMANDS[command], position(record, index));
            let live = entries
                .get(key)
                .filter(|entry| entry.first_seen.saturating_add_millis(TTL) > record.stream_time);
            let output = match live {
                Some(entry) if entry.fingerprint == command_fingerprint(command) => {
                    (Kind::Duplicate, entry.response.clone())
                }
                Some(_) => (Kind::KeyReused, key_reused_rejection(at, key)),
                None => {
                    let response = evaluate(at, key, command);
                    entries.insert(
                        key,
                        StoredEntry {
                            partition: PARTITION,
                            key: key.to_owned(),
                            fingerprint: command_fingerprint(command),
                            first_position: at,
                            first_seen: record.stream_time,
                            response: response.clone(),
                        },
                    );
                    (Kind::Fresh, response)
                }
            };
            outputs.insert(at, output);
        }
    }
    (outputs, entries)
}

/// How the shell happens to drive the core; none of it may change outputs.
#[derive(Clone, Debug)]
struct Schedule {
    /// Records per hand-off batch, cycled.
    batch_records: Vec<usize>,
    /// Per batch: 0 commits nothing; n commits through the
    /// ((n - 1) mod count)-th evaluated and uncommitted record.
    commit_cuts: Vec<usize>,
    /// Per settling point: commits written but not yet applied to the Ledger.
    ledger_lags: Vec<usize>,
    /// Per settling point: commits applied but not yet reported durable.
    durable_lags: Vec<usize>,
    /// Most purges per commit; `None` passes no candidates at all.
    purge_bound: Option<usize>,
    /// The Arbiter's evaluation order within a batch (causal groups).
    evaluation_rotation: usize,
    evaluation_reversed: bool,
}

impl Schedule {
    /// One command record at a time, each committed, applied and durable
    /// before the next; purges as early as they can be.
    fn one_at_a_time() -> Schedule {
        Schedule {
            batch_records: vec![1],
            commit_cuts: vec![1],
            ledger_lags: vec![0],
            durable_lags: vec![0],
            purge_bound: Some(64),
            evaluation_rotation: 0,
            evaluation_reversed: false,
        }
    }
}

fn schedule() -> impl Strategy<Value = Schedule> {
    (
        prop::collection::vec(1..=6usize, 1..5),
        prop::collection::vec(0..=4usize, 1..5),
        prop::collection::vec(0..=2usize, 1..5),
        prop::collection::vec(0..=2usize, 1..5),
        prop::option::of(1..=3usize),
        0..4usize,
        any::<bool>(),
    )
        .prop_map(
            |(
                batch_records,
                commit_cuts,
                ledger_lags,
                durable_lags,
                purge_bound,
                evaluation_rotation,
                evaluation_reversed,
            )| Schedule {
                batch_records,
                commit_cuts,
                ledger_lags,
                durable_lags,
                purge_bound,
                evaluation_rotation,
                evaluation_reversed,
            },
        )
}

/// The Ledger's warden_entries column family and expiry index.
#[derive(Default)]
struct Ledger {
    rows: BTreeMap<String, Vec<u8>>,
    index: BTreeSet<(StreamTime, String)>,
}

impl Ledger {
    fn apply(&mut self, delta: &WardenCommitDelta) {
        for put in &delta.puts {
            let key = put.entry.key.clone();
            if let Some(replaced) = put.replaces_first_seen {
                self.index.remove(&(replaced, key.clone()));
            }
            self.index.insert((put.entry.first_seen, key.clone()));
            self.rows.insert(key, put.entry.encode());
        }
        for purge in &delta.purges {
            self.rows.remove(&purge.key);
            self.index.remove(&(purge.first_seen, purge.key.clone()));
        }
        // Index rows and entries match one to one, so no scan is needed.
        let indexed: BTreeSet<(StreamTime, String)> = self
            .rows
            .iter()
            .map(|(key, bytes)| {
                let entry = StoredEntry::decode(bytes).expect("own bytes decode");
                (entry.first_seen, key.clone())
            })
            .collect();
        assert_eq!(
            indexed, self.index,
            "the expiry index names every row exactly"
        );
    }

    fn fetch(&self, keys: Vec<String>) -> Vec<FetchedEntry> {
        keys.into_iter()
            .map(|key| FetchedEntry {
                entry: self
                    .rows
                    .get(&key)
                    .map(|bytes| StoredEntry::decode(bytes).expect("own bytes decode")),
                key,
            })
            .collect()
    }

    fn expiry_candidates(&self, stream_time: StreamTime, count: usize) -> Vec<ExpiryCandidate> {
        self.index
            .iter()
            .take_while(|(first_seen, _)| first_seen.saturating_add_millis(TTL) <= stream_time)
            .take(count)
            .map(|(first_seen, key)| ExpiryCandidate {
                first_seen: *first_seen,
                key: key.clone(),
            })
            .collect()
    }

    fn live_entries(&self, stream_time: StreamTime) -> BTreeMap<String, StoredEntry> {
        self.rows
            .iter()
            .map(|(key, bytes)| (key.clone(), StoredEntry::decode(bytes).expect("decodes")))
            .filter(|(_, entry)| entry.first_seen.saturating_add_millis(TTL) > stream_time)
            .collect()
    }
}

/// Everything an instance's shell would do, with its state.
struct Shell {
    warden: Warden,
    ledger: Ledger,
    schedule: Schedule,
    /// Delta handed to the Ledger, not yet applied.
    writing: VecDeque<WardenCommitDelta>,
    /// Applied, not yet reported durable.
    syncing: VecDeque<Offset>,
    settled: usize,
    outputs: Outputs,
    /// Every response ever seen per entry (key, first position).
    responses: BTreeMap<(String, CommandPosition), Vec<u8>>,
}

impl Shell {
    fn new(schedule: Schedule) -> Shell {
        let config = WardenConfig {
            idempotency_ttl_millis: TTL,
            max_purges_per_commit: schedule.purge_bound.unwrap_or(1),
            ..WardenConfig::default()
        };
        Shell {
            warden: Warden::new(config).expect("valid config"),
            ledger: Ledger::default(),
            schedule,
            writing: VecDeque::new(),
            syncing: VecDeque::new(),
            settled: 0,
            outputs: Outputs::new(),
            responses: BTreeMap::new(),
        }
    }

    fn pick(values: &[usize], turn: usize) -> usize {
        values[turn % values.len()]
    }

    /// Lets the Ledger and the durability reports catch up to the lags.
    fn settle(&mut self, ledger_lag: usize, durable_lag: usize) {
        while self.writing.len() > ledger_lag {
            let delta = self.writing.pop_front().expect("non-empty");
            self.ledger.apply(&delta);
            self.syncing.push_back(delta.through_offset);
        }
        while self.syncing.len() > durable_lag {
            let through = self.syncing.pop_front().expect("non-empty");
            self.warden.on_durable(PARTITION, through).expect("durable");
        }
    }

    fn settle_by_schedule(&mut self) {
        let turn = self.settled;
        self.settled += 1;
        self.settle(
            Self::pick(&self.schedule.ledger_lags, turn),
            Self::pick(&self.schedule.durable_lags, turn),
        );
    }

    fn commit(&mut self, record: &Record) {
        let candidates = match self.schedule.purge_bound {
            // More than the bound: bounding is the core's job.
            Some(bound) => self.ledger.expiry_candidates(record.stream_time, bound * 2),
            None => Vec::new(),
        };
        let delta = self
            .warden
            .commit_delta(PARTITION, record.offset, record.stream_time, candidates)
            .expect("commit");
        for put in &delta.puts {
            self.note_response(
                &put.entry.key,
                put.entry.first_position,
                &put.entry.response,
            );
        }
        self.writing.push_back(delta);
    }

    /// ResponseNeverChanges: one entry, one response, wherever it shows.
    fn note_response(&mut self, key: &str, first_position: CommandPosition, response: &[u8]) {
        let seen = self
            .responses
            .entry((key.to_owned(), first_position))
            .or_insert_with(|| response.to_vec());
        assert_eq!(seen.as_slice(), response, "the response of {key} changed");
    }

    fn output(&mut self, at: CommandPosition, kind: Kind, bytes: Vec<u8>) {
        assert!(
            self.outputs.insert(at, (kind, bytes)).is_none(),
            "one output per command"
        );
    }

    fn run(mut self, log: &[Record]) -> (Outputs, BTreeMap<String, StoredEntry>) {
        let mut uncommitted: Vec<&Record> = Vec::new();
        let mut rest = log;
        let mut turn = 0;
        while !rest.is_empty() {
            let count = Self::pick(&self.schedule.batch_records, turn).min(rest.len());
            let (batch, later) = rest.split_at(count);
            rest = later;

            self.settle_by_schedule();
            let keys = batch
                .iter()
                .flat_map(|record| record.commands.iter().map(|&(key, _)| KEYS[key]));
            let plan = self.warden.plan_fetch(PARTITION, keys);
            let fetched = self.ledger.fetch(plan);
            // The Ledger may finish writes between the read and the classification.
            self.settle_by_schedule();
            self.warden
                .accept_fetched(PARTITION, fetched)
                .expect("fetched");

            let mut fresh = Vec::new();
            for record in batch {
                for (index, &(key, command)) in record.commands.iter().enumerate() {
                    let (key, command, at) =
                        (KEYS[key], COMMANDS[command], position(record, index));
                    let incoming = IncomingCommand {
                        position: at,
                        idempotency_key: key,
                        command,
                        stream_time: record.stream_time,
                    };
                    match self.warden.classify(&incoming).expect("classify") {
                        Classification::Fresh => fresh.push((at, key, command)),
                        Classification::Duplicate { response } => {
                            self.output(at, Kind::Duplicate, response);
                        }
                        Classification::DuplicateAwaitingAnswer { first_position } => {
                            assert!(first_position < at);
                        }
                        Classification::KeyReused { rejection } => {
                            self.output(at, Kind::KeyReused, rejection);
                        }
                    }
                    let entry = self
                        .warden
                        .entry(PARTITION, key)
                        .expect("classified keys stay");
                    if let Some(response) = entry.response.map(<[u8]>::to_vec) {
                        let first_position = entry.first_position;
                        self.note_response(key, first_position, &response);
                    }
                }
            }

            let rotation = self.schedule.evaluation_rotation % fresh.len().max(1);
            fresh.rotate_left(rotation);
            if self.schedule.evaluation_reversed {
                fresh.reverse();
            }
            for (at, key, command) in fresh {
                let response = evaluate(at, key, command);
                self.note_response(key, at, &response);
                let released = self
                    .warden
                    .record_response(at, response.clone())
                    .expect("record");
                for answer in released {
                    self.output(answer.position, Kind::Duplicate, answer.response);
                }
                self.output(at, Kind::Fresh, response);
            }

            uncommitted.extend(batch);
            let cut = Self::pick(&self.schedule.commit_cuts, turn);
            if cut > 0 {
                let through = (cut - 1) % uncommitted.len();
                self.commit(uncommitted[through]);
                uncommitted.drain(..=through);
            }
            turn += 1;
        }
        if let Some(last) = uncommitted.last() {
            self.commit(last);
        }
        self.settle(0, 0);
        let end = log
            .last()
            .map_or(StreamTime::EPOCH, |record| record.stream_time);
        let live = self.ledger.live_entries(end);
        (self.outputs, live)
    }
}

fn live_reference_entries(log: &[Record]) -> (Outputs, BTreeMap<String, StoredEntry>) {
    let (outputs, entries) = reference(log);
    let end = log
        .last()
        .map_or(StreamTime::EPOCH, |record| record.stream_time);
    let live = entries
        .into_iter()
        .filter(|(_, entry)| entry.first_seen.saturating_add_millis(TTL) > end)
        .map(|(key, entry)| (key.to_owned(), entry))
        .collect();
    (outputs, live)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// covers: warden.SequentialClassification, warden.DuplicateWithinBatchWaitsForFirstAnswer, warden.AnswerWaitingDuplicates
    #[test]
    fn batching_never_changes_classifications_or_answers(log in log(), schedule in schedule()) {
        let one_at_a_time = Shell::new(Schedule::one_at_a_time()).run(&log);
        let batched = Shell::new(schedule).run(&log);
        prop_assert_eq!(&batched.0, &one_at_a_time.0);
        prop_assert_eq!(&batched.1, &one_at_a_time.1);
    }

    /// covers: warden.ExpiryOnStreamTimeOnly, warden.MatchedEntryWasLive, warden.ClassificationMatchesFingerprint, warden.FreshCommandOwnsItsEntry, warden.DuplicateOutputEqualsStoredResponse, warden.ReusedKeyIsRejected, warden.ClassifyFreshCommand, warden.FreshCommandReplacesExpiredEntry
    #[test]
    fn outputs_follow_the_rules_at_each_commands_own_stream_time(log in log(), schedule in schedule()) {
        let (outputs, _) = Shell::new(schedule).run(&log);
        prop_assert_eq!(outputs, reference(&log).0);
    }

    /// covers: warden.ResponseNeverChanges, warden.EntriesReplicatedByDeterminism
    #[test]
    fn entries_never_change_and_every_instance_stores_the_same(
        log in log(),
        first in schedule(),
        second in schedule(),
    ) {
        // Shell::note_response fails the run if any entry's response changes.
        let first = Shell::new(first).run(&log);
        let second = Shell::new(second).run(&log);
        let expected = live_reference_entries(&log);
        prop_assert_eq!(&first.1, &expected.1);
        prop_assert_eq!(&second.1, &expected.1);
        prop_assert_eq!(first.0, second.0);
    }

    /// covers: warden.PurgeTimingInvisible, warden.PurgeExpiredEntriesAtGroupCommit, warden.PurgesPerCommitBounded
    #[test]
    fn when_purges_run_never_changes_outputs(
        log in log(),
        schedule in schedule(),
        bound in 1..=3usize,
    ) {
        let never = Shell::new(Schedule { purge_bound: None, ..schedule.clone() }).run(&log);
        let bounded = Shell::new(Schedule { purge_bound: Some(bound), ..schedule }).run(&log);
        prop_assert_eq!(&never.0, &bounded.0);
        prop_assert_eq!(never.1, bounded.1);
    }
}
