//! The Warden's deterministic core: classification, recording, group-commit
//! deltas and durability, for every partition of one instance.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use foldhash::{HashMap, HashMapExt as _};
use protocol::envelope::{EnvelopeVerdict, encode_envelope};
use protocol::position::{CommandPosition, Offset, Partition, StreamTime};

use crate::config::{ConfigError, WardenConfig};
use crate::entry::{Fingerprint, StoredEntry, command_fingerprint};

/// The reason token of the Warden's own rejection.
pub const KEY_REUSED_REASON: &str = "idempotency_key_reused";

/// One command as the Usher hands it on.
#[derive(Clone, Copy, Debug)]
pub struct IncomingCommand<'a> {
    pub position: CommandPosition,
    pub idempotency_key: &'a str,
    /// The command's bytes as the gateway produced them (`Submission.command`).
    pub command: &'a [u8],
    /// The stream time of the command's own record.
    pub stream_time: StreamTime,
}

/// What the Warden made of one command.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Classification {
    /// No live entry: evaluate it and hand its envelope to
    /// [`Warden::record_response`].
    Fresh,
    /// A live entry with the same fingerprint: the output is `response`, the
    /// stored envelope byte for byte; not evaluated.
    Duplicate { response: Vec<u8> },
    /// A duplicate of the command at `first_position`, classified but not yet
    /// answered: not evaluated; its answer is released by
    /// [`Warden::record_response`] for `first_position`.
    DuplicateAwaitingAnswer { first_position: CommandPosition },
    /// A live entry with a different fingerprint: the output is `rejection`,
    /// the `idempotency_key_reused` envelope; not evaluated.
    KeyReused { rejection: Vec<u8> },
}

/// A waiting duplicate's answer, released when its original was recorded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReleasedAnswer {
    /// The duplicate's own position.
    pub position: CommandPosition,
    /// The original's envelope, byte for byte.
    pub response: Vec<u8>,
}

/// The Ledger's answer for one key of a [`Warden::plan_fetch`] plan.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FetchedEntry {
    pub key: String,
    /// `None` when the Ledger holds no entry for the key.
    pub entry: Option<StoredEntry>,
}

/// One row of the Ledger's expiry index `(partition, first_seen, key)`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct ExpiryCandidate {
    pub first_seen: StreamTime,
    pub key: String,
}

/// An entry to write. The Ledger puts `entry` under `(partition, key)` with
/// its index row `(partition, entry.first_seen, key)`, and deletes the index
/// row `(partition, replaces_first_seen, key)` of the entry it overwrites, so
/// index rows and entries always match one to one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EntryPut {
    pub entry: StoredEntry,
    pub replaces_first_seen: Option<StreamTime>,
}

/// An expired entry to delete: the row `(partition, key)` and its index row
/// `(partition, first_seen, key)`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PurgedEntry {
    pub key: String,
    pub first_seen: StreamTime,
}

/// What the Warden adds to one group commit of one partition: written in the
/// same WriteBatch as the entity states and the watermark.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WardenCommitDelta {
    pub partition: Partition,
    pub through_offset: Offset,
    /// Stream time of the commit's last record.
    pub stream_time: StreamTime,
    /// At most one per key, sorted by key.
    pub puts: Vec<EntryPut>,
    /// Oldest first, then by key.
    pub purges: Vec<PurgedEntry>,
}

/// Where an entry stands (`IdempotencyEntry.status`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EntryStatus {
    AwaitingResponse,
    Recorded,
    Durable,
}

/// A read-only view of a key's current entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EntryView<'a> {
    pub fingerprint: &'a Fingerprint,
    pub first_position: CommandPosition,
    pub first_seen: StreamTime,
    pub status: EntryStatus,
    /// `None` while awaiting its response.
    pub response: Option<&'a [u8]>,
}

/// The shell called the core out of the pipeline's order, or handed it data
/// it cannot trust. The instance halts on any of them.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum WardenError {
    #[error("key {key:?} of partition {partition} was neither fetched nor in memory")]
    NotFetched { partition: Partition, key: String },
    #[error("command {position} does not follow {previous} in log order")]
    OutOfOrder {
        position: CommandPosition,
        previous: CommandPosition,
    },
    #[error("command {position} lies in a commit already assembled (through {through_offset})")]
    AlreadyCommitted {
        position: CommandPosition,
        through_offset: Offset,
    },
    #[error("command {position} carries stream time {stream_time:?}, behind {floor:?}")]
    StreamTimeWentBack {
        position: CommandPosition,
        stream_time: StreamTime,
        floor: StreamTime,
    },
    #[error("partition {partition} already holds {bound} entries not yet committed")]
    UncommittedEntriesFull { partition: Partition, bound: usize },
    #[error("the Ledger answered key {key:?} of partition {partition} with another entry")]
    FetchedEntryMismatch { partition: Partition, key: String },
    #[error("no fresh command awaits a response at {0}")]
    UnknownPosition(CommandPosition),
    #[error("the response at {0} is already recorded")]
    AlreadyRecorded(CommandPosition),
    #[error("empty response at {0}")]
    EmptyResponse(CommandPosition),
    #[error("commit through {through_offset} of partition {partition} does not follow {previous}")]
    CommitNotAfterPrevious {
        partition: Partition,
        through_offset: Offset,
        previous: Offset,
    },
    #[error("commit includes {0}, whose response is not recorded")]
    ResponseMissing(CommandPosition),
    #[error("commit of partition {partition} would write {entries} entries, above {bound}")]
    TooManyEntries {
        partition: Partition,
        entries: usize,
        bound: usize,
    },
    #[error("no commit of partition {partition} through {through_offset} awaits durability")]
    DurableNotACommit {
        partition: Partition,
        through_offset: Offset,
    },
}

/// The idempotency entries of every partition of one instance.
///
/// Entries are created only by classifying the log in order and answered
/// only by this instance's own evaluations; entries from storage come only
/// from this instance's own Ledger. So every correct instance holds the same
/// entries at every offset and nothing is ever taken from a peer.
///
/// Memory holds a partition's entries that are not yet durable, and durable
/// ("clean") ones only from a fetch or a commit until the next
/// [`Warden::plan_fetch`] of the partition: the Ledger holds those.
///
/// spec: warden.EntriesReplicatedByDeterminism, warden.AtMostOneEntryPerKey
#[derive(Debug)]
pub struct Warden {
    config: WardenConfig,
    partitions: BTreeMap<Partition, PartitionEntries>,
}

#[derive(Debug)]
struct PartitionEntries {
    /// Looked up by key only, never iterated, so its order reaches no output.
    slots: HashMap<String, Slot>,
    /// Entries created by fresh commands and not yet handed to a commit.
    unassembled: BTreeMap<CommandPosition, String>,
    /// Keys whose slot holds durable entries only (or none).
    clean: BTreeSet<String>,
    /// Commits handed to the Ledger and not yet durable, oldest first.
    in_flight: VecDeque<InFlightCommit>,
    last_position: Option<CommandPosition>,
    assembled_through: Option<Offset>,
    /// No later command may carry an older stream time: the largest stream
    /// time classified or committed. Purges rely on it.
    stream_time_floor: StreamTime,
}

#[derive(Debug)]
struct InFlightCommit {
    through_offset: Offset,
    written: Vec<(String, CommandPosition)>,
}

/// One key's entries: at most one current entry, plus superseded ones kept
/// only until their response is recorded and they are handed to a commit.
#[derive(Debug)]
struct Slot {
    /// Oldest first; the last is the key's current entry. Every version
    /// before the last is still unassembled.
    versions: Vec<Version>,
    /// `first_seen` of the row the Ledger holds for the key once every
    /// assembled commit is applied.
    ledger_row: Option<StreamTime>,
}

#[derive(Debug)]
struct Version {
    fingerprint: Fingerprint,
    first_position: CommandPosition,
    first_seen: StreamTime,
    state: VersionState,
}

#[derive(Debug)]
enum VersionState {
    /// Duplicates classified meanwhile wait here for the answer.
    AwaitingResponse {
        waiting: Vec<CommandPosition>,
    },
    Recorded {
        response: Vec<u8>,
    },
    Durable {
        response: Vec<u8>,
    },
}

impl Default for PartitionEntries {
    fn default() -> Self {
        Self {
            slots: HashMap::new(),
            unassembled: BTreeMap::new(),
            clean: BTreeSet::new(),
            in_flight: VecDeque::new(),
            last_position: None,
            assembled_through: None,
            stream_time_floor: StreamTime(i64::MIN),
        }
    }
}

/// An entry first seen at `first_seen` is live for a command whose record
/// carries stream time `stream_time` iff `first_seen + ttl > stream_time`.
/// Nothing else (no clock, no batch or commit stream time) enters.
///
/// spec: warden.ExpiryOnStreamTimeOnly
fn is_live_at(first_seen: StreamTime, ttl_millis: i64, stream_time: StreamTime) -> bool {
    first_seen.saturating_add_millis(ttl_millis) > stream_time
}

/// The `idempotency_key_reused` rejection: a function of the command alone,
/// computed, never stored.
///
/// spec: warden.ReusedKeyIsRejected
pub fn key_reused_rejection(position: CommandPosition, idempotency_key: &str) -> Vec<u8> {
    encode_envelope(
        position,
        Some(idempotency_key),
        EnvelopeVerdict::Rejected,
        Some(KEY_REUSED_REASON),
        &[],
    )
}

impl Version {
    fn response(&self) -> Option<&[u8]> {
        match &self.state {
            VersionState::AwaitingResponse { .. } => None,
            VersionState::Recorded { response } | VersionState::Durable { response } => {
                Some(response)
            }
        }
    }

    fn is_durable(&self) -> bool {
        matches!(self.state, VersionState::Durable { .. })
    }

    fn from_stored(entry: StoredEntry) -> Version {
        Version {
            fingerprint: entry.fingerprint,
            first_position: entry.first_position,
            first_seen: entry.first_seen,
            state: VersionState::Durable {
                response: entry.response,
            },
        }
    }
}

impl Slot {
    fn current(&mut self) -> Option<&mut Version> {
        self.versions.last_mut()
    }

    fn version_at(&mut self, position: CommandPosition) -> Option<&mut Version> {
        self.versions
            .iter_mut()
            .find(|version| version.first_position == position)
    }

    fn is_clean(&self) -> bool {
        self.versions.iter().all(Version::is_durable)
    }
}

impl Warden {
    pub fn new(config: WardenConfig) -> Result<Warden, ConfigError> {
        config.check()?;
        Ok(Warden {
            config,
            partitions: BTreeMap::new(),
        })
    }

    pub fn config(&self) -> &WardenConfig {
        &self.config
    }

    /// Entries first seen at or before the returned stream time are expired
    /// at `stream_time` (the complement of `is_live_at`): the bound the Ledger
    /// scans its expiry index with for purge candidates.
    pub fn expiry_cutoff(&self, stream_time: StreamTime) -> StreamTime {
        stream_time.saturating_add_millis(-self.config.idempotency_ttl_millis)
    }

    /// Before classifying a batch of `partition`: the keys (sorted, unique)
    /// of `batch_keys` the Ledger must be asked for in one multi-get. Clean
    /// entries of other keys leave memory here; those of the batch stay, so
    /// nothing between this plan and the classification can lose them.
    pub fn plan_fetch<'k>(
        &mut self,
        partition: Partition,
        batch_keys: impl IntoIterator<Item = &'k str>,
    ) -> Vec<String> {
        let entries = self.partitions.entry(partition).or_default();
        let batch_keys: BTreeSet<&str> = batch_keys.into_iter().collect();
        let slots = &mut entries.slots;
        entries.clean.retain(|key| {
            if batch_keys.contains(key.as_str()) {
                return true;
            }
            let slot = slots.remove(key).expect("a clean key has a slot");
            assert!(slot.is_clean(), "only durable entries leave memory");
            false
        });
        batch_keys
            .into_iter()
            .filter(|key| !slots.contains_key(*key))
            .map(str::to_owned)
            .collect()
    }

    /// The Ledger's answers to a [`Warden::plan_fetch`] plan. A key that is
    /// already in memory keeps its memory entry: every Ledger row was
    /// written from memory, so memory is never older.
    pub fn accept_fetched(
        &mut self,
        partition: Partition,
        fetched: Vec<FetchedEntry>,
    ) -> Result<(), WardenError> {
        if let Some(mismatch) = fetched.iter().find(|answer| {
            answer
                .entry
                .as_ref()
                .is_some_and(|entry| entry.partition != partition || entry.key != answer.key)
        }) {
            return Err(WardenError::FetchedEntryMismatch {
                partition,
                key: mismatch.key.clone(),
            });
        }
        let entries = self.partitions.entry(partition).or_default();
        for FetchedEntry { key, entry } in fetched {
            if entries.slots.contains_key(&key) {
                continue;
            }
            let slot = Slot {
                ledger_row: entry.as_ref().map(|entry| entry.first_seen),
                versions: entry.map(Version::from_stored).into_iter().collect(),
            };
            entries.slots.insert(key.clone(), slot);
            entries.clean.insert(key);
        }
        Ok(())
    }

    /// Classifies one command against its partition's entries at its own
    /// record's stream time. Commands of a partition come in log order; each
    /// fresh command's entry exists from here on, so a later command with
    /// the same key sees it before the first is even evaluated.
    ///
    /// spec: warden.ClassifyFreshCommand, warden.FreshCommandReplacesExpiredEntry, warden.AnswerDuplicateFromStoredResponse, warden.DuplicateWithinBatchWaitsForFirstAnswer, warden.RejectReusedKeyWithDifferentCommand, warden.SequentialClassification, warden.PurgeTimingInvisible, warden.ClassificationMatchesFingerprint, warden.MatchedEntryWasLive, warden.FreshCommandOwnsItsEntry, warden.DuplicateOutputEqualsStoredResponse
    pub fn classify(
        &mut self,
        command: &IncomingCommand<'_>,
    ) -> Result<Classification, WardenError> {
        let position = command.position;
        let not_fetched = || WardenError::NotFetched {
            partition: position.partition,
            key: command.idempotency_key.to_owned(),
        };
        let entries = self
            .partitions
            .get_mut(&position.partition)
            .ok_or_else(not_fetched)?;
        entries.check_in_log_order(command)?;
        let slot = entries
            .slots
            .get_mut(command.idempotency_key)
            .ok_or_else(not_fetched)?;
        let fingerprint = command_fingerprint(command.command);
        let ttl = self.config.idempotency_ttl_millis;

        // An expired entry not yet purged is treated exactly like a missing one.
        let classification = match slot.current() {
            Some(current) if is_live_at(current.first_seen, ttl, command.stream_time) => {
                if current.fingerprint != fingerprint {
                    Classification::KeyReused {
                        rejection: key_reused_rejection(position, command.idempotency_key),
                    }
                } else {
                    match &mut current.state {
                        VersionState::AwaitingResponse { waiting } => {
                            waiting.push(position);
                            Classification::DuplicateAwaitingAnswer {
                                first_position: current.first_position,
                            }
                        }
                        VersionState::Recorded { response }
                        | VersionState::Durable { response } => Classification::Duplicate {
                            response: response.clone(),
                        },
                    }
                }
            }
            _ => {
                if entries.unassembled.len() >= self.config.max_uncommitted_entries {
                    return Err(WardenError::UncommittedEntriesFull {
                        partition: position.partition,
                        bound: self.config.max_uncommitted_entries,
                    });
                }
                // Entries already handed to a commit are not needed any more
                // once superseded: the Ledger has them and nothing classifies
                // against them.
                let assembled_through = entries.assembled_through;
                slot.versions.retain(|version| {
                    assembled_through.is_none_or(|through| version.first_position.offset > through)
                });
                slot.versions.push(Version {
                    fingerprint,
                    first_position: position,
                    first_seen: command.stream_time,
                    state: VersionState::AwaitingResponse {
                        waiting: Vec::new(),
                    },
                });
                entries
                    .unassembled
                    .insert(position, command.idempotency_key.to_owned());
                entries.clean.remove(command.idempotency_key);
                Classification::Fresh
            }
        };
        entries.last_position = Some(position);
        entries.stream_time_floor = entries.stream_time_floor.max(command.stream_time);
        Ok(classification)
    }

    /// Records the envelope the Arbiter produced for the fresh command at
    /// `position`, whatever its verdict, and releases the answers of the
    /// duplicates that waited for it, in log order.
    ///
    /// spec: warden.RecordResponseAfterEvaluation, warden.AnswerWaitingDuplicates, warden.ResponseNeverChanges
    pub fn record_response(
        &mut self,
        position: CommandPosition,
        response: Vec<u8>,
    ) -> Result<Vec<ReleasedAnswer>, WardenError> {
        if response.is_empty() {
            return Err(WardenError::EmptyResponse(position));
        }
        let entries = self
            .partitions
            .get_mut(&position.partition)
            .ok_or(WardenError::UnknownPosition(position))?;
        let key = entries
            .unassembled
            .get(&position)
            .ok_or(WardenError::UnknownPosition(position))?;
        let version = entries
            .slots
            .get_mut(key)
            .and_then(|slot| slot.version_at(position))
            .expect("an unassembled entry is in its slot");
        let VersionState::AwaitingResponse { waiting } = &mut version.state else {
            return Err(WardenError::AlreadyRecorded(position));
        };
        let waiting = std::mem::take(waiting);
        let released = waiting
            .into_iter()
            .map(|duplicate| ReleasedAnswer {
                position: duplicate,
                response: response.clone(),
            })
            .collect();
        version.state = VersionState::Recorded { response };
        Ok(released)
    }

    /// The Warden's part of a group commit of `partition` through
    /// `through_offset`, whose last record carries `stream_time`: the
    /// current entry of every key created by those records, and the purge of
    /// `candidates` (rows of the Ledger's expiry index, oldest first) that
    /// are really expired, at most `max_purges_per_commit` of them.
    ///
    /// spec: warden.WriteEntriesInStateWriteBatch, warden.EntriesPerCommitBounded, warden.PurgeExpiredEntriesAtGroupCommit, warden.PurgesPerCommitBounded
    pub fn commit_delta(
        &mut self,
        partition: Partition,
        through_offset: Offset,
        stream_time: StreamTime,
        candidates: Vec<ExpiryCandidate>,
    ) -> Result<WardenCommitDelta, WardenError> {
        let entries = self.partitions.entry(partition).or_default();
        if let Some(previous) = entries.assembled_through.filter(|&p| through_offset <= p) {
            return Err(WardenError::CommitNotAfterPrevious {
                partition,
                through_offset,
                previous,
            });
        }
        let first_after = CommandPosition {
            partition,
            offset: through_offset.saturating_add(1),
            index: 0,
        };
        // The last entry created per key by the committed records; earlier
        // ones under the same key were replaced within the commit.
        let mut written: BTreeMap<&str, CommandPosition> = BTreeMap::new();
        for (&position, key) in entries.unassembled.range(..first_after) {
            let slot = &entries.slots[key];
            let version = slot
                .versions
                .iter()
                .find(|version| version.first_position == position)
                .expect("an unassembled entry is in its slot");
            if version.response().is_none() {
                return Err(WardenError::ResponseMissing(position));
            }
            written.insert(key, position);
        }
        if written.len() > self.config.max_entries_per_commit {
            return Err(WardenError::TooManyEntries {
                partition,
                entries: written.len(),
                bound: self.config.max_entries_per_commit,
            });
        }
        let written: Vec<(String, CommandPosition)> = written
            .into_iter()
            .map(|(key, position)| (key.to_owned(), position))
            .collect();
        entries.unassembled = entries.unassembled.split_off(&first_after);

        let mut puts = Vec::with_capacity(written.len());
        for (key, position) in &written {
            let slot = entries.slots.get_mut(key).expect("written keys have slots");
            let version = slot
                .versions
                .iter()
                .find(|version| version.first_position == *position)
                .expect("written entries exist");
            let response = version.response().expect("checked above").to_vec();
            puts.push(EntryPut {
                entry: StoredEntry {
                    partition,
                    key: key.clone(),
                    fingerprint: version.fingerprint,
                    first_position: version.first_position,
                    first_seen: version.first_seen,
                    response,
                },
                replaces_first_seen: slot.ledger_row,
            });
            let first_seen = version.first_seen;
            slot.ledger_row = Some(first_seen);
            let current = slot.versions.last().map(|version| version.first_position);
            slot.versions.retain(|version| {
                version.first_position.offset > through_offset
                    || Some(version.first_position) == current
            });
        }

        let purges = entries.purge(
            candidates,
            stream_time,
            self.config.idempotency_ttl_millis,
            self.config.max_purges_per_commit,
        );

        assert!(puts.len() <= self.config.max_entries_per_commit);
        assert!(purges.len() <= self.config.max_purges_per_commit);
        entries.assembled_through = Some(through_offset);
        entries.stream_time_floor = entries.stream_time_floor.max(stream_time);
        entries.in_flight.push_back(InFlightCommit {
            through_offset,
            written,
        });
        Ok(WardenCommitDelta {
            partition,
            through_offset,
            stream_time,
            puts,
            purges,
        })
    }

    /// The commit of `partition` through `through_offset` (and every earlier
    /// one) is synced: the entries it wrote are durable.
    ///
    /// spec: warden.EntriesBecomeDurableWithTheirCommit
    pub fn on_durable(
        &mut self,
        partition: Partition,
        through_offset: Offset,
    ) -> Result<(), WardenError> {
        let not_a_commit = WardenError::DurableNotACommit {
            partition,
            through_offset,
        };
        let entries = self
            .partitions
            .get_mut(&partition)
            .ok_or(not_a_commit.clone())?;
        if !entries
            .in_flight
            .iter()
            .any(|commit| commit.through_offset == through_offset)
        {
            return Err(not_a_commit);
        }
        while entries
            .in_flight
            .front()
            .is_some_and(|commit| commit.through_offset <= through_offset)
        {
            let commit = entries.in_flight.pop_front().expect("checked non-empty");
            for (key, position) in commit.written {
                let slot = entries
                    .slots
                    .get_mut(&key)
                    .expect("a dirty slot stays in memory");
                // A written entry replaced since has left memory already.
                if let Some(version) = slot.version_at(position) {
                    let VersionState::Recorded { response } = &mut version.state else {
                        panic!("only recorded entries are written, once each");
                    };
                    version.state = VersionState::Durable {
                        response: std::mem::take(response),
                    };
                }
                if slot.is_clean() {
                    entries.clean.insert(key);
                }
            }
        }
        Ok(())
    }

    /// The current entry of `key` in `partition`, if memory holds one.
    pub fn entry(&self, partition: Partition, key: &str) -> Option<EntryView<'_>> {
        let version = self
            .partitions
            .get(&partition)?
            .slots
            .get(key)?
            .versions
            .last()?;
        Some(EntryView {
            fingerprint: &version.fingerprint,
            first_position: version.first_position,
            first_seen: version.first_seen,
            status: match version.state {
                VersionState::AwaitingResponse { .. } => EntryStatus::AwaitingResponse,
                VersionState::Recorded { .. } => EntryStatus::Recorded,
                VersionState::Durable { .. } => EntryStatus::Durable,
            },
            response: version.response(),
        })
    }
}

impl PartitionEntries {
    fn check_in_log_order(&self, command: &IncomingCommand<'_>) -> Result<(), WardenError> {
        let position = command.position;
        if let Some(previous) = self.last_position.filter(|&p| position <= p) {
            return Err(WardenError::OutOfOrder { position, previous });
        }
        if let Some(through_offset) = self.assembled_through.filter(|&t| position.offset <= t) {
            return Err(WardenError::AlreadyCommitted {
                position,
                through_offset,
            });
        }
        if command.stream_time < self.stream_time_floor {
            return Err(WardenError::StreamTimeWentBack {
                position,
                stream_time: command.stream_time,
                floor: self.stream_time_floor,
            });
        }
        Ok(())
    }

    /// Which candidates to delete. A candidate is purged iff it is expired
    /// at the commit's stream time (hence for every later record: stream
    /// time never decreases) and it is still the key's row in the Ledger
    /// once this commit's puts are applied. A key replaced since is skipped:
    /// the replacing put deleted or will delete the stale index row.
    fn purge(
        &mut self,
        mut candidates: Vec<ExpiryCandidate>,
        stream_time: StreamTime,
        ttl_millis: i64,
        bound: usize,
    ) -> Vec<PurgedEntry> {
        candidates.sort_unstable();
        candidates.dedup();
        let mut purges = Vec::new();
        for ExpiryCandidate { first_seen, key } in candidates {
            if purges.len() == bound || is_live_at(first_seen, ttl_millis, stream_time) {
                break;
            }
            // A key not in memory has no entry in flight, so its row is the
            // one its index row names.
            let still_the_row = match self.slots.get_mut(&key) {
                Some(slot) if slot.ledger_row == Some(first_seen) => {
                    slot.ledger_row = None;
                    true
                }
                Some(_) => false,
                None => true,
            };
            if still_the_row {
                purges.push(PurgedEntry { key, first_seen });
            }
        }
        purges
    }
}
