//! A simulated cluster that writes the history a correct run would record,
//! through the real inventory domain, envelope encoding and record digests,
//! with a sequential Warden (entries per (partition, key), live for the TTL
//! of stream time). Each planting method breaks exactly one guarantee.

use std::collections::BTreeMap;

use domain::inventory::{Inventory, partition_for_sku};
use domain::{Domain as _, EntityKey, EntityStates, EvaluationContext, Verdict};
use protocol::envelope::{EnvelopeVerdict, dead_letter_envelope, encode_envelope, record_digest};
use protocol::position::{CommandPosition, Offset, Partition};

use crate::history::{
    AppliedOffset, Command, Completion, Fault, FaultKind, HexBytes, History, InputCommand,
    InputContent, InputRecord, InstanceFinal, InstanceId, InstanceRecordDigest, PublishedRecord,
    RawBytes, RunInfo, StockRow, Submission, SubmissionId,
};

/// The TTL of the simulated Warden, in stream milliseconds.
pub const TTL_MS: i64 = 1_000;
/// The instance that lies about its own copies (never about publications).
pub const BYZANTINE: InstanceId = 3;
const INSTANCES: u32 = 4;
/// Every record advances stream time by this much.
const RECORD_STEP_MS: i64 = 1;
const START_MS: i64 = 1_700_000_000_000;

#[derive(Debug)]
struct Entry {
    command: Command,
    first_seen: i64,
    response: Vec<u8>,
}

/// How the simulated Warden treats one record's commands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Warden {
    Correct,
    /// Forgets every entry: each command is evaluated fresh.
    Forgetful,
    /// Answers duplicates with a response that is not the stored one.
    AltersDuplicates,
}

#[derive(Debug)]
struct Levels(BTreeMap<EntityKey, Vec<u8>>);

impl EntityStates for Levels {
    fn state(&self, key: &EntityKey) -> Option<&[u8]> {
        self.0.get(key).map(Vec::as_slice)
    }
}

#[derive(Debug)]
pub struct Cluster {
    run: RunInfo,
    domain: Inventory,
    levels: Levels,
    /// Level per (warehouse, sku), as the writes left them.
    stock: BTreeMap<(String, String), i64>,
    entries: BTreeMap<(Partition, String), Entry>,
    next_offset: BTreeMap<Partition, Offset>,
    stream_ms: i64,
    now_us: u64,
    submissions: Vec<Submission>,
    input: Vec<InputRecord>,
    publications: Vec<PublishedRecord>,
    faults: Vec<Fault>,
    honest_digests: Vec<InstanceRecordDigest>,
    byzantine_digests: Vec<InstanceRecordDigest>,
}

/// A bytes change that keeps an envelope readable: an extra field.
pub fn forge(envelope: &[u8]) -> Vec<u8> {
    let mut forged = envelope[..envelope.len() - 1].to_vec();
    forged.extend_from_slice(br#","forged":1}"#);
    forged
}

impl Cluster {
    pub fn new(partitions: u32) -> Self {
        let run = RunInfo {
            scenario: "simulated".to_owned(),
            seed: 0,
            instances: INSTANCES,
            input_partitions: partitions,
            required_copies: 3,
            idempotency_ttl_ms: TTL_MS,
            byzantine: vec![BYZANTINE],
            inventory: Default::default(),
        };
        Self {
            domain: run.domain(),
            run,
            levels: Levels(BTreeMap::new()),
            stock: BTreeMap::new(),
            entries: BTreeMap::new(),
            next_offset: (0..partitions).map(|p| (p, 0)).collect(),
            stream_ms: START_MS,
            now_us: 0,
            submissions: Vec::new(),
            input: Vec::new(),
            publications: Vec::new(),
            faults: Vec::new(),
            honest_digests: Vec::new(),
            byzantine_digests: Vec::new(),
        }
    }

    pub fn submission_count(&self) -> usize {
        self.submissions.len()
    }

    pub fn key_of(&self, id: SubmissionId) -> String {
        self.submissions[usize::try_from(id).expect("small id")]
            .key
            .clone()
    }

    pub fn partition_of(&self, command: &Command) -> Partition {
        partition_for_sku(command.sku(), self.run.input_partitions)
    }

    fn tick(&mut self) -> u64 {
        self.now_us += 100;
        self.now_us
    }

    pub fn advance_stream(&mut self, millis: i64) {
        self.stream_ms += millis;
    }

    pub fn invoke(&mut self, key: &str, command: &Command) -> SubmissionId {
        let id = u64::try_from(self.submissions.len()).expect("few submissions");
        let invoked_us = self.tick();
        self.submissions.push(Submission {
            id,
            client: 0,
            gateway: 0,
            key: key.to_owned(),
            command: command.clone(),
            invoked_us,
            completed_us: None,
            completion: None,
        });
        id
    }

    pub fn complete(&mut self, id: SubmissionId, completion: Completion) {
        let completed_us = self.tick();
        let submission = &mut self.submissions[usize::try_from(id).expect("small id")];
        submission.completed_us = Some(completed_us);
        submission.completion = Some(completion);
    }

    fn answer(&mut self, id: SubmissionId, envelope: &[u8]) {
        let status = crate::checker::view::Envelope::parse(envelope)
            .expect("the simulation writes envelopes")
            .http_status();
        self.complete(
            id,
            Completion::Answered {
                status,
                body: RawBytes::from(envelope),
            },
        );
    }

    /// Evaluates one command fresh at `position` and applies it when
    /// `apply`; returns its envelope.
    fn evaluate(
        &mut self,
        position: CommandPosition,
        key: &str,
        command: &Command,
        apply: bool,
    ) -> Vec<u8> {
        let context = EvaluationContext {
            partition: position.partition,
            partitions: self.run.input_partitions,
        };
        let outcome = self
            .domain
            .evaluate(context, command, &self.levels)
            .expect("the simulation writes canonical levels");
        let (verdict, reason) = match outcome.verdict {
            Verdict::Accepted => (EnvelopeVerdict::Accepted, None),
            Verdict::Rejected(reason) => (EnvelopeVerdict::Rejected, Some(reason)),
        };
        if apply && verdict == EnvelopeVerdict::Accepted {
            let warehouses: Vec<&str> = match command {
                Command::Receive { warehouse, .. } | Command::Ship { warehouse, .. } => {
                    vec![warehouse]
                }
                // Writes come source first, destination second.
                Command::Transfer { from, to, .. } => vec![from, to],
            };
            for (write, warehouse) in outcome.writes.iter().zip(warehouses) {
                let level: i64 = std::str::from_utf8(&write.state)
                    .expect("decimal")
                    .parse()
                    .expect("a level");
                self.stock
                    .insert((warehouse.to_owned(), command.sku().to_owned()), level);
            }
            for write in outcome.writes {
                self.levels.0.insert(write.key, write.state);
            }
        }
        encode_envelope(position, Some(key), verdict, reason, &outcome.body)
    }

    fn take_offset(&mut self, partition: Partition) -> Offset {
        let next = self
            .next_offset
            .get_mut(&partition)
            .expect("known partition");
        *next += 1;
        *next - 1
    }

    /// Produces one record holding `commands` (all of one partition),
    /// evaluates it as every instance would and publishes it.
    fn produce_with(&mut self, commands: &[(String, Command)], warden: Warden) -> Vec<Vec<u8>> {
        let partition = self.partition_of(&commands[0].1);
        assert!(
            commands
                .iter()
                .all(|(_, c)| self.partition_of(c) == partition),
            "a pack holds one partition's commands"
        );
        self.stream_ms += RECORD_STEP_MS;
        let offset = self.take_offset(partition);
        let mut outputs = Vec::with_capacity(commands.len());
        for (index, (key, command)) in (0u32..).zip(commands) {
            let position = CommandPosition {
                partition,
                offset,
                index,
            };
            let entry_key = (partition, key.clone());
            let live = self.entries.get(&entry_key).filter(|entry| {
                entry.first_seen + TTL_MS > self.stream_ms && warden != Warden::Forgetful
            });
            let output = match live {
                Some(entry) if entry.command == *command => match warden {
                    Warden::AltersDuplicates => forge(&entry.response),
                    _ => entry.response.clone(),
                },
                Some(_) => encode_envelope(
                    position,
                    Some(key),
                    EnvelopeVerdict::Rejected,
                    Some("idempotency_key_reused"),
                    &[],
                ),
                None => {
                    let envelope = self.evaluate(position, key, command, true);
                    self.entries.insert(
                        entry_key,
                        Entry {
                            command: command.clone(),
                            first_seen: self.stream_ms,
                            response: envelope.clone(),
                        },
                    );
                    envelope
                }
            };
            outputs.push(output);
        }
        let content = InputContent::Commands {
            commands: commands
                .iter()
                .map(|(key, command)| InputCommand {
                    key: key.clone(),
                    command: command.clone(),
                })
                .collect(),
        };
        let keys = commands.iter().map(|(key, _)| key.clone()).collect();
        self.record(partition, offset, content, outputs.clone(), keys);
        outputs
    }

    fn record(
        &mut self,
        partition: Partition,
        offset: Offset,
        content: InputContent,
        outputs: Vec<Vec<u8>>,
        keys: Vec<String>,
    ) {
        let digest = HexBytes::from(record_digest(&outputs));
        self.input.push(InputRecord {
            partition,
            offset,
            timestamp_ms: self.stream_ms,
            content,
        });
        self.publications.push(PublishedRecord {
            partition,
            offset,
            digest: digest.clone(),
            publisher_id: 0,
            matching_copies: 4,
            outputs: outputs.into_iter().map(RawBytes).collect(),
            idempotency_keys: keys,
            record_timestamp: self.stream_ms,
        });
        // The byzantine instance lies about every third record it holds.
        let byzantine_digest = if offset % 3 == 0 {
            HexBytes::from(record_digest(&[b"a lie".as_slice()]))
        } else {
            digest.clone()
        };
        self.honest_digests.push(InstanceRecordDigest {
            partition,
            offset,
            digest,
        });
        self.byzantine_digests.push(InstanceRecordDigest {
            partition,
            offset,
            digest: byzantine_digest,
        });
    }

    fn produce(&mut self, commands: &[(String, Command)]) -> Vec<Vec<u8>> {
        self.produce_with(commands, Warden::Correct)
    }

    /// One submission, packed alone, answered with its outcome.
    pub fn submit(&mut self, key: &str, command: &Command) -> SubmissionId {
        self.submit_pack(&[(key.to_owned(), command.clone())])[0]
    }

    /// Submissions packed into one record, each answered with its outcome.
    pub fn submit_pack(&mut self, commands: &[(String, Command)]) -> Vec<SubmissionId> {
        let ids: Vec<_> = commands.iter().map(|(k, c)| self.invoke(k, c)).collect();
        let outputs = self.produce(commands);
        for (&id, output) in ids.iter().zip(&outputs) {
            self.answer(id, output);
        }
        ids
    }

    /// Resends submission `id`'s key and command.
    pub fn retry(&mut self, id: SubmissionId) -> SubmissionId {
        let original = &self.submissions[usize::try_from(id).expect("small id")];
        let (key, command) = (original.key.clone(), original.command.clone());
        self.submit(&key, &command)
    }

    /// Applied, but the client saw a timeout (`failed`: a broken connection).
    pub fn submit_unanswered(
        &mut self,
        key: &str,
        command: &Command,
        failed: bool,
    ) -> SubmissionId {
        let id = self.invoke(key, command);
        self.produce(&[(key.to_owned(), command.clone())]);
        self.complete(id, unanswered(failed));
        id
    }

    /// Timed out before it was ever produced.
    pub fn submit_never_produced(&mut self, key: &str, command: &Command) -> SubmissionId {
        let id = self.invoke(key, command);
        self.complete(id, Completion::TimedOut);
        id
    }

    /// Refused by validation: nothing produced.
    pub fn submit_refused(&mut self, key: &str, command: &Command) -> SubmissionId {
        let id = self.invoke(key, command);
        self.complete(
            id,
            Completion::Answered {
                status: 400,
                body: RawBytes::from(r#"{"error":"invalid_field","detail":"simulated"}"#),
            },
        );
        id
    }

    /// An undecodable record, produced by nobody's submission.
    pub fn dead_letter(&mut self, partition: Partition) {
        self.stream_ms += RECORD_STEP_MS;
        let offset = self.take_offset(partition);
        let reason = "malformed_record";
        let output = dead_letter_envelope(partition, offset, reason);
        let content = InputContent::DeadLettered {
            reason: reason.to_owned(),
        };
        self.record(partition, offset, content, vec![output], Vec::new());
    }

    pub fn fault(&mut self, kind: FaultKind, targets: Vec<InstanceId>, healed: bool) -> u64 {
        let id = u64::try_from(self.faults.len()).expect("few faults");
        let started_us = self.tick();
        self.faults.push(Fault {
            id,
            kind,
            targets,
            started_us,
            healed_us: None,
            detail: "simulated".to_owned(),
        });
        if healed {
            let healed_us = self.tick();
            self.faults[usize::try_from(id).expect("small id")].healed_us = Some(healed_us);
        }
        id
    }

    pub fn heal(&mut self, fault: u64) {
        let healed_us = self.tick();
        self.faults[usize::try_from(fault).expect("small id")].healed_us = Some(healed_us);
    }

    // ---- planted faults -------------------------------------------------

    /// Acknowledged, then lost with its record: the answer names a position
    /// that no topic and no state holds.
    pub fn plant_loss(&mut self, key: &str, command: &Command) -> SubmissionId {
        let id = self.invoke(key, command);
        let partition = self.partition_of(command);
        let position = CommandPosition {
            partition,
            offset: self.take_offset(partition),
            index: 0,
        };
        let envelope = self.evaluate(position, key, command, false);
        self.answer(id, &envelope);
        id
    }

    /// Submitted once and answered, but its record was produced twice and
    /// the second copy evaluated fresh again.
    pub fn plant_duplicate(&mut self, key: &str, command: &Command) -> SubmissionId {
        let id = self.submit(key, command);
        self.produce_with(&[(key.to_owned(), command.clone())], Warden::Forgetful);
        id
    }

    /// A submission that timed out, whose command was then applied twice.
    pub fn plant_timeout_applied_twice(&mut self, key: &str, command: &Command) -> SubmissionId {
        let id = self.submit_unanswered(key, command, false);
        self.produce_with(&[(key.to_owned(), command.clone())], Warden::Forgetful);
        id
    }

    /// A command in the log that nobody submitted.
    pub fn plant_unexpected(&mut self, key: &str, command: &Command) {
        self.produce(&[(key.to_owned(), command.clone())]);
    }

    /// A retry answered with a response that is not the stored one.
    pub fn plant_duplicate_mismatch(&mut self, key: &str, command: &Command) -> SubmissionId {
        self.submit(key, command);
        let id = self.invoke(key, command);
        let outputs = self.produce_with(
            &[(key.to_owned(), command.clone())],
            Warden::AltersDuplicates,
        );
        self.answer(id, &outputs[0]);
        id
    }

    /// The byzantine instance publishes its forged copy of a record (after
    /// the honest publication, which readers keep).
    pub fn plant_corrupt_publication(&mut self, key: &str, command: &Command) {
        self.submit(key, command);
        let honest = self.publications.last().expect("just published").clone();
        let outputs: Vec<Vec<u8>> = honest.outputs.iter().map(|o| forge(o.as_slice())).collect();
        let digest = HexBytes::from(record_digest(&outputs));
        let lie = self
            .byzantine_digests
            .iter_mut()
            .find(|d| d.partition == honest.partition && d.offset == honest.offset)
            .expect("every record has a byzantine digest");
        lie.digest = digest.clone();
        self.publications.push(PublishedRecord {
            digest,
            publisher_id: BYZANTINE,
            outputs: outputs.into_iter().map(RawBytes).collect(),
            ..honest
        });
    }

    /// The history the run would record, every instance converged.
    pub fn finish(self) -> History {
        let applied: Vec<AppliedOffset> = self
            .next_offset
            .iter()
            .map(|(&partition, &next)| AppliedOffset {
                partition,
                offset: next - 1,
            })
            .collect();
        let stock: Vec<StockRow> = self
            .stock
            .iter()
            .map(|((warehouse, sku), &quantity)| StockRow {
                warehouse: warehouse.clone(),
                sku: sku.clone(),
                quantity,
            })
            .collect();
        let rows: Vec<String> = stock
            .iter()
            .map(|r| format!("{}\0{}\0{}", r.warehouse, r.sku, r.quantity))
            .collect();
        let state_digest = HexBytes::from(record_digest(&rows));
        let instances = (0..INSTANCES)
            .map(|instance| {
                let byzantine = instance == BYZANTINE;
                InstanceFinal {
                    instance,
                    applied: applied.clone(),
                    state_digest: Some(if byzantine {
                        HexBytes::from(record_digest(&[b"a lying state".as_slice()]))
                    } else {
                        state_digest.clone()
                    }),
                    stock: stock.clone(),
                    record_digests: if byzantine {
                        self.byzantine_digests.clone()
                    } else {
                        self.honest_digests.clone()
                    },
                }
            })
            .collect();
        History {
            run: self.run,
            submissions: self.submissions,
            faults: self.faults,
            input: self.input,
            publications: self.publications,
            unreadable_publications: Vec::new(),
            instances,
        }
    }
}

fn unanswered(failed: bool) -> Completion {
    if failed {
        Completion::Failed {
            error: "connection reset".to_owned(),
        }
    } else {
        Completion::TimedOut
    }
}

// ---- planted faults on a finished history --------------------------------

/// An honest instance's state digest differs from its peers'.
pub fn plant_state_divergence(history: &mut History) {
    history.instances[1].state_digest = Some(HexBytes::from(vec![0xde, 0xad]));
}

/// An honest instance holds a negative level.
pub fn plant_negative_stock(history: &mut History) {
    set_first_level(&mut history.instances[1], |_| -1);
}

/// An honest instance holds one unit more than was received.
pub fn plant_non_conservation(history: &mut History) {
    set_first_level(&mut history.instances[2], |quantity| quantity + 1);
}

fn set_first_level(instance: &mut InstanceFinal, change: impl FnOnce(i64) -> i64) {
    match instance.stock.first_mut() {
        Some(row) => row.quantity = change(row.quantity),
        None => instance.stock.push(StockRow {
            warehouse: "w-planted".to_owned(),
            sku: "sku-planted".to_owned(),
            quantity: change(0),
        }),
    }
}
