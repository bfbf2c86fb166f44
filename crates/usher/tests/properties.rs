//! The Usher's general properties, on random logs driven through random
//! schedules of polls, redeliveries, pauses, settlements, commits and fetch
//! errors, checked against a reference that decodes the log in one pass.

use domain::inventory::{Inventory, InventoryCommand};
use proptest::prelude::*;
use prost::Message;
use protocol::position::{Offset, StreamTime};
use protocol::records::{CommandPack, PACK_VERSION, Submission};
use usher::{
    Assignment, ConsumerEffect, DecodeLimits, Delivery, FetchErrorKind, FetchedRecord, Polling,
    Usher, UsherConfig, decode_record,
};

/// Bounds small enough that every schedule pauses and resumes.
fn config() -> UsherConfig {
    UsherConfig {
        input_partitions: 1,
        max_poll_records: 3,
        max_unagreed_records: 6,
        max_pipeline_records: 5,
        ..UsherConfig::default()
    }
}

#[derive(Clone, Debug)]
struct LogRecord {
    offset: Offset,
    timestamp: StreamTime,
    payload: Option<Vec<u8>>,
}

impl LogRecord {
    fn fetched(&self) -> FetchedRecord<'_> {
        FetchedRecord {
            offset: self.offset,
            timestamp: self.timestamp,
            payload: self.payload.as_deref(),
        }
    }
}

/// Where the log starts for this instance, and the log after its watermark.
#[derive(Clone, Debug)]
struct Scenario {
    applied_offset: Offset,
    stream_time: StreamTime,
    /// Records from here on are live; below it, replay.
    catch_up_target: Offset,
    log: Vec<LogRecord>,
}

impl Scenario {
    fn assignment(&self) -> Assignment {
        Assignment {
            partition: 0,
            applied_offset: self.applied_offset,
            stream_time: self.stream_time,
            catch_up_target: self.catch_up_target,
        }
    }
}

/// The shell's moves, in a random order.
#[derive(Clone, Debug)]
enum Step {
    /// Fetch up to `max` records, starting `rewind` records before the
    /// fetch position (a redelivery); a faulty broker leaves out the
    /// fetched record at index `skip` (an offset gap).
    Poll {
        max: usize,
        rewind: usize,
        skip: Option<usize>,
    },
    /// The Clerk settles one committed record (replayed ones included).
    Settle {
        pick: usize,
    },
    /// The Registrar makes the next `records` handed-on records durable.
    Commit {
        records: usize,
    },
    DiskLow,
    DiskRecovered,
    FetchError,
    PartitionEnd,
}

fn command() -> impl Strategy<Value = InventoryCommand> {
    // Empty skus and non-positive quantities fail validation.
    (0u8..3, "[a-c]{0,2}", -1i64..4).prop_map(|(kind, sku, quantity)| match kind {
        0 => InventoryCommand::Receive {
            warehouse: "w1".into(),
            sku,
            quantity,
        },
        1 => InventoryCommand::Ship {
            warehouse: "w1".into(),
            sku,
            quantity,
        },
        _ => InventoryCommand::Transfer {
            from: "w1".into(),
            to: "w2".into(),
            sku,
            quantity,
        },
    })
}

fn pack(version: u32, submissions: Vec<(String, InventoryCommand)>) -> Vec<u8> {
    CommandPack {
        version,
        submissions: submissions
            .into_iter()
            .map(|(idempotency_key, command)| Submission {
                idempotency_key,
                command: command.encode(),
            })
            .collect(),
    }
    .encode_to_vec()
}

fn payload() -> impl Strategy<Value = Option<Vec<u8>>> {
    let submissions = || prop::collection::vec(("[a-z]{1,3}", command()), 1..4);
    prop_oneof![
        6 => submissions().prop_map(|s| Some(pack(PACK_VERSION, s))),
        1 => Just(None),
        1 => prop::collection::vec(any::<u8>(), 0..16).prop_map(Some),
        1 => Just(Some(pack(PACK_VERSION, Vec::new()))),
        1 => submissions().prop_map(|s| Some(pack(PACK_VERSION + 1, s))),
    ]
}

fn scenario() -> impl Strategy<Value = Scenario> {
    let records = prop::collection::vec((0i64..1_000, payload()), 0..40);
    (-1i64..20, 0i64..500, records, 0i64..45).prop_map(
        |(applied_offset, stream_time, records, target_step)| {
            let mut offset = applied_offset;
            let log = records
                .into_iter()
                .map(|(timestamp, payload)| {
                    offset += 1;
                    LogRecord {
                        offset,
                        timestamp: StreamTime(timestamp),
                        payload,
                    }
                })
                .collect();
            Scenario {
                applied_offset,
                stream_time: StreamTime(stream_time),
                catch_up_target: applied_offset + 1 + target_step,
                log,
            }
        },
    )
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        6 => (
            1usize..6,
            prop_oneof![4 => Just(0usize), 1 => 1usize..4],
            prop_oneof![4 => Just(None), 1 => (0usize..5).prop_map(Some)],
        )
            .prop_map(|(max, rewind, skip)| Step::Poll { max, rewind, skip }),
        3 => any::<usize>().prop_map(|pick| Step::Settle { pick }),
        3 => (1usize..5).prop_map(|records| Step::Commit { records }),
        1 => Just(Step::DiskLow),
        1 => Just(Step::DiskRecovered),
        1 => Just(Step::FetchError),
        1 => Just(Step::PartitionEnd),
    ]
}

/// The log decoded in one pass, each record with the maximum timestamp up
/// to it: what every schedule must hand on.
fn reference(scenario: &Scenario) -> Vec<Delivery<InventoryCommand>> {
    let mut stream_time = scenario.stream_time;
    scenario
        .log
        .iter()
        .map(|record| {
            if record.timestamp > stream_time {
                stream_time = record.timestamp;
            }
            decode_record(
                &Inventory::default(),
                &DecodeLimits::default(),
                0,
                record.offset,
                stream_time,
                record.payload.as_deref(),
            )
        })
        .collect()
}

/// One instance's Usher on partition 0, fed by a fake broker.
struct Simulation<'a> {
    scenario: &'a Scenario,
    usher: Usher,
    /// The fake broker's fetch position, an index into the log.
    fetch_position: usize,
    deliveries: Vec<Delivery<InventoryCommand>>,
    /// Handed-on records made durable so far (a prefix of `deliveries`).
    committed: usize,
    /// Committed records the Clerk has not settled yet.
    unsettled: Vec<Offset>,
}

impl<'a> Simulation<'a> {
    fn new(scenario: &'a Scenario) -> Self {
        let mut usher = Usher::new(config()).expect("valid config");
        usher.assign(scenario.assignment()).expect("assignable");
        Self {
            scenario,
            usher,
            fetch_position: 0,
            deliveries: Vec::new(),
            committed: 0,
            unsettled: Vec::new(),
        }
    }

    fn consumer(&mut self) -> &mut usher::PartitionConsumer {
        self.usher.consumer_mut(0).expect("assigned")
    }

    fn seek(&mut self, offset: Offset) {
        self.fetch_position = self.scenario.log.partition_point(|r| r.offset < offset);
    }

    fn apply(&mut self, effect: Option<ConsumerEffect>) {
        match effect {
            Some(
                ConsumerEffect::Resume { offset }
                | ConsumerEffect::Seek { offset }
                | ConsumerEffect::Refetch { offset, .. },
            ) => self.seek(offset),
            Some(ConsumerEffect::Pause | ConsumerEffect::RetryFetch { .. }) | None => {}
            Some(other @ (ConsumerEffect::Stop | ConsumerEffect::Halt(_))) => {
                panic!("nothing here stops the partition: {other:?}")
            }
        }
    }

    fn poll(&mut self, max: usize, rewind: usize, skip: Option<usize>) {
        let scenario = self.scenario;
        let start = self.fetch_position.saturating_sub(rewind);
        let end = (start + max).min(scenario.log.len());
        let fetched: Vec<_> = scenario.log[start..end]
            .iter()
            .enumerate()
            // The client's next fetch starts after the last record it got,
            // so a skipped record is always followed by one that was not.
            .filter(|&(index, _)| Some(index) != skip || index + 1 == end - start)
            .map(|(_, record)| record.fetched())
            .collect();
        // The broker's position moves on whether or not the records are taken.
        self.fetch_position = self.fetch_position.max(end);
        let handed = self.consumer().hand_off(&Inventory::default(), &fetched);
        assert!(handed.deliveries.len() <= config().max_poll_records);
        assert_eq!(
            handed.deliveries.len() + handed.redelivered + handed.not_taken,
            fetched.len()
        );
        self.deliveries.extend(handed.deliveries);
        self.apply(handed.effect);
    }

    fn commit(&mut self, records: usize) {
        let through = self
            .committed
            .saturating_add(records)
            .min(self.deliveries.len());
        if through == self.committed {
            return;
        }
        let from_offset = self.consumer().applied_offset() + 1;
        let through_offset = self.deliveries[through - 1].offset;
        let newly = self.deliveries[self.committed..through]
            .iter()
            .map(|d| d.offset);
        self.unsettled.extend(newly.collect::<Vec<_>>());
        self.committed = through;
        let effect = self
            .consumer()
            .watermark_advanced(from_offset, through_offset);
        self.apply(effect);
    }

    fn settle(&mut self, pick: usize) {
        if self.unsettled.is_empty() {
            return;
        }
        let offset = self.unsettled.swap_remove(pick % self.unsettled.len());
        let before = self.consumer().unagreed_records();
        let effect = self.consumer().record_settled(offset);
        let released = before - self.consumer().unagreed_records();
        let replayed = offset < self.scenario.catch_up_target;
        assert_eq!(released, usize::from(!replayed), "replay is never counted");
        self.apply(effect);
    }

    fn step(&mut self, step: &Step) {
        match *step {
            Step::Poll { max, rewind, skip } => self.poll(max, rewind, skip),
            Step::Settle { pick } => self.settle(pick),
            Step::Commit { records } => self.commit(records),
            Step::DiskLow => {
                for (_, effect) in self.usher.pause_intake() {
                    self.apply(Some(effect));
                }
            }
            Step::DiskRecovered => {
                for (_, effect) in self.usher.resume_intake() {
                    self.apply(Some(effect));
                }
            }
            Step::FetchError => {
                let effect = self.consumer().fetch_failed(FetchErrorKind::Retriable);
                self.apply(effect);
            }
            Step::PartitionEnd => {
                let end = self.scenario.log.last().map_or(0, |r| r.offset + 1);
                self.consumer().partition_end_reached(end);
            }
        }
        let config = config();
        let consumer = self.consumer();
        assert!(consumer.unagreed_records() <= config.max_unagreed_records);
        assert!(consumer.queued_records() <= config.max_pipeline_records);
    }

    /// Runs the schedule, then lets the pipeline drain until the whole log
    /// is handed on: pauses delay records, never lose them.
    fn run(mut self, steps: &[Step]) -> Vec<Delivery<InventoryCommand>> {
        for step in steps {
            self.step(step);
        }
        let mut rounds = 0;
        while self.deliveries.len() < self.scenario.log.len() {
            rounds += 1;
            assert!(
                rounds <= 4 * self.scenario.log.len() + 4,
                "the consumer stalled"
            );
            self.step(&Step::DiskRecovered);
            self.step(&Step::Commit {
                records: usize::MAX,
            });
            while !self.unsettled.is_empty() {
                self.step(&Step::Settle { pick: 0 });
            }
            assert_eq!(self.consumer().polling(), Polling::Active);
            self.step(&Step::Poll {
                max: config().max_poll_records,
                rewind: 0,
                skip: None,
            });
        }
        self.deliveries
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// covers: usher.TimingNeverChangesOutputs
    #[test]
    fn timing_never_changes_outputs(
        scenario in scenario(),
        steps in prop::collection::vec(step(), 0..80),
    ) {
        let deliveries = Simulation::new(&scenario).run(&steps);
        prop_assert_eq!(deliveries, reference(&scenario));
    }

    /// Every offset is handed on, in order, also when the broker skips
    /// records in a fetch.
    ///
    /// covers: usher.HandOffOrderIsLogOrder, usher.HandOffIsContiguous, usher.DropRedeliveredRecord, usher.RefetchAcrossOffsetGap
    #[test]
    fn hand_off_order_is_log_order(
        scenario in scenario(),
        steps in prop::collection::vec(step(), 0..80),
    ) {
        let deliveries = Simulation::new(&scenario).run(&steps);
        let handed: Vec<_> = deliveries.iter().map(|d| d.offset).collect();
        let logged: Vec<_> = scenario.log.iter().map(|r| r.offset).collect();
        prop_assert!(handed.windows(2).all(|pair| pair[0] < pair[1]));
        prop_assert_eq!(handed, logged);
    }

    /// Stream time is the running maximum, and a restart from any watermark
    /// (with the stream time stored beside it) gives every later record the
    /// same stream time.
    ///
    /// covers: usher.StreamTimeIsPrefixMaximum, usher.DeliveryStreamTimeCoversRecord
    #[test]
    fn stream_time_is_prefix_maximum(
        scenario in scenario(),
        steps in prop::collection::vec(step(), 0..80),
        restart_pick in any::<usize>(),
    ) {
        let deliveries = Simulation::new(&scenario).run(&steps);
        let mut maximum = scenario.stream_time;
        for (delivery, record) in deliveries.iter().zip(&scenario.log) {
            maximum = maximum.max(record.timestamp);
            prop_assert_eq!(delivery.stream_time, maximum);
            prop_assert!(delivery.stream_time >= record.timestamp);
        }
        prop_assert!(deliveries.windows(2).all(|pair| pair[0].stream_time <= pair[1].stream_time));

        if !scenario.log.is_empty() {
            let watermark = restart_pick % scenario.log.len();
            let restarted = Scenario {
                applied_offset: scenario.log[watermark].offset,
                stream_time: deliveries[watermark].stream_time,
                catch_up_target: scenario.log.last().map_or(0, |r| r.offset + 1),
                log: scenario.log[watermark + 1..].to_vec(),
            };
            let replayed = Simulation::new(&restarted).run(&steps);
            prop_assert_eq!(&replayed[..], &deliveries[watermark + 1..]);
        }
    }
}
