use domain::inventory::{Inventory, InventoryCommand};
use prost::Message;
use protocol::records::{CommandPack, PACK_VERSION, Submission};

use super::*;
use crate::config::ConfigError;
use crate::partitions::{AssignError, Usher};

/// Small bounds, so that pauses happen within a few records.
fn config() -> UsherConfig {
    UsherConfig {
        input_partitions: 2,
        max_poll_records: 4,
        max_unagreed_records: 8,
        max_pipeline_records: 64,
        ..UsherConfig::default()
    }
}

fn pack() -> Vec<u8> {
    let command = InventoryCommand::Receive {
        warehouse: "w1".into(),
        sku: "apple".into(),
        quantity: 1,
    };
    CommandPack {
        version: PACK_VERSION,
        submissions: vec![Submission {
            idempotency_key: "k".into(),
            command: command.encode(),
        }],
    }
    .encode_to_vec()
}

fn record(payload: &[u8], offset: Offset, timestamp: i64) -> FetchedRecord<'_> {
    FetchedRecord {
        offset,
        timestamp: StreamTime(timestamp),
        payload: Some(payload),
    }
}

/// Records at `offsets`, each stamped with its offset.
fn records(payload: &[u8], offsets: impl IntoIterator<Item = Offset>) -> Vec<FetchedRecord<'_>> {
    offsets
        .into_iter()
        .map(|offset| record(payload, offset, offset))
        .collect()
}

fn assignment(partition: Partition, applied_offset: Offset, catch_up_target: Offset) -> Assignment {
    Assignment {
        partition,
        applied_offset,
        stream_time: StreamTime::EPOCH,
        catch_up_target,
    }
}

/// An Usher with partition 0 assigned from a wiped state, nothing to replay.
fn usher_with(config: UsherConfig) -> Usher {
    let mut usher = Usher::new(config).expect("valid config");
    usher.assign(assignment(0, -1, 0)).expect("assignable");
    usher
}

fn hand_off(
    consumer: &mut PartitionConsumer,
    records: &[FetchedRecord<'_>],
) -> HandOff<InventoryCommand> {
    consumer.hand_off(&Inventory::default(), records)
}

fn offsets(hand_off: &HandOff<InventoryCommand>) -> Vec<Offset> {
    hand_off.deliveries.iter().map(|d| d.offset).collect()
}

/// covers: usher.AssignPartitionFromWatermark
#[test]
fn a_partition_starts_after_its_watermark() {
    let mut usher = Usher::new(config()).unwrap();
    let consumer = usher
        .assign(Assignment {
            partition: 1,
            applied_offset: 41,
            stream_time: StreamTime(5_000),
            catch_up_target: 60,
        })
        .unwrap();
    assert_eq!(consumer.partition(), 1);
    assert_eq!(consumer.next_offset(), 42);
    assert_eq!(consumer.consumed_offset(), 41);
    assert_eq!(consumer.applied_offset(), 41);
    assert_eq!(consumer.stream_time(), StreamTime(5_000));
    assert_eq!(consumer.catch_up_target(), 60);
    assert_eq!(consumer.high_watermark(), 60);
    assert_eq!(consumer.lag(), 18);
    assert_eq!(consumer.polling(), Polling::Active);
    assert_eq!(
        (consumer.unagreed_records(), consumer.queued_records()),
        (0, 0)
    );
    assert_eq!(consumer.fetch_retries(), 0);
    assert_eq!(consumer.last_fetch_error(), None);
    assert_eq!(
        (consumer.redelivered_dropped(), consumer.offset_gaps()),
        (0, 0)
    );
}

/// covers: usher.AssignPartitionFromWatermark
#[test]
fn an_assignment_contradicting_recovery_is_refused() {
    let mut usher = Usher::new(config()).unwrap();
    assert_eq!(
        usher.assign(assignment(0, 10, 10)).unwrap_err(),
        AssignError::TargetBeforeWatermark {
            catch_up_target: 10,
            applied_offset: 10
        }
    );
    assert_eq!(
        usher.assign(assignment(0, -2, 0)).unwrap_err(),
        AssignError::WatermarkBelowStart { applied_offset: -2 }
    );
    assert!(usher.consumer(0).is_none());
}

/// covers: usher.OneConsumerPerPartition, usher.ConsumerPartitionInRange
#[test]
fn one_consumer_per_partition_of_the_topic() {
    let mut usher = Usher::new(config()).unwrap();
    usher.assign(assignment(1, -1, 0)).unwrap();
    usher.assign(assignment(0, 7, 9)).unwrap();
    assert_eq!(
        usher.assign(assignment(1, 3, 9)).unwrap_err(),
        AssignError::AlreadyAssigned { partition: 1 }
    );
    assert_eq!(
        usher.assign(assignment(2, -1, 0)).unwrap_err(),
        AssignError::PartitionOutOfRange {
            partition: 2,
            input_partitions: 2
        }
    );
    let partitions: Vec<_> = usher.consumers().map(|c| c.partition()).collect();
    assert_eq!(partitions, [0, 1]);
    assert_eq!(
        usher.consumer(1).unwrap().next_offset(),
        0,
        "kept, not replaced"
    );
}

/// covers: usher.HandOffRecordInOrder, usher.StreamTimeIsPrefixMaximum, usher.DeliveryStreamTimeCoversRecord
#[test]
fn stream_time_is_the_running_maximum_and_never_decreases() {
    let payload = pack();
    let mut usher = Usher::new(config()).unwrap();
    let consumer = usher
        .assign(Assignment {
            partition: 0,
            applied_offset: 9,
            stream_time: StreamTime(120),
            catch_up_target: 10,
        })
        .unwrap();
    let run = [
        record(&payload, 10, 100),
        record(&payload, 11, 50),
        record(&payload, 12, 200),
        record(&payload, 13, 150),
    ];
    let handed = hand_off(consumer, &run);
    let times: Vec<_> = handed.deliveries.iter().map(|d| d.stream_time.0).collect();
    assert_eq!(times, [120, 120, 200, 200], "each record carries its own");
    assert_eq!(consumer.stream_time(), StreamTime(200));
    assert_eq!(consumer.consumed_offset(), 13);
    assert_eq!(consumer.queued_records(), 4);
    assert_eq!(consumer.unagreed_records(), 4);
    assert!(handed.deliveries.iter().all(|d| d.commands().len() == 1));
}

/// covers: usher.DropRedeliveredRecord, usher.HandOffOrderIsLogOrder
#[test]
fn redelivered_records_are_dropped_and_counted() {
    let payload = pack();
    let mut usher = usher_with(config());
    let consumer = usher.consumer_mut(0).unwrap();
    assert_eq!(
        offsets(&hand_off(consumer, &records(&payload, 0..4))),
        [0, 1, 2, 3]
    );

    // A redelivered record carries a late timestamp that must not count.
    let run = [
        record(&payload, 2, 9_999),
        record(&payload, 3, 9_999),
        record(&payload, 4, 4),
    ];
    let handed = hand_off(consumer, &run);
    assert_eq!(offsets(&handed), [4]);
    assert_eq!(handed.redelivered, 2);
    assert_eq!(handed.deliveries[0].stream_time, StreamTime(4));
    assert_eq!(consumer.redelivered_dropped(), 2);
    assert_eq!(consumer.stream_time(), StreamTime(4));
    assert_eq!(
        consumer.queued_records(),
        5,
        "a redelivery is not queued again"
    );
}

/// covers: usher.RefetchAcrossOffsetGap, usher.HandOffIsContiguous
#[test]
fn an_offset_gap_is_never_stepped_over_but_fetched_again_with_backoff() {
    let payload = pack();
    let mut usher = usher_with(config());
    let consumer = usher.consumer_mut(0).unwrap();
    let handed = hand_off(consumer, &records(&payload, [0, 1, 5, 6]));
    assert_eq!(offsets(&handed), [0, 1], "the records before the gap");
    assert_eq!(handed.not_taken, 2);
    let initial = UsherConfig::default().fetch_retry_initial;
    assert_eq!(
        handed.effect,
        Some(ConsumerEffect::Refetch {
            offset: 2,
            delay: initial
        })
    );
    assert_eq!(consumer.offset_gaps(), 1);
    assert_eq!(consumer.next_offset(), 2);

    // The broker keeps skipping offset 2: the backoff grows, nothing moves.
    let handed = hand_off(consumer, &records(&payload, [3, 4]));
    assert!(handed.deliveries.is_empty());
    assert_eq!(
        handed.effect,
        Some(ConsumerEffect::Refetch {
            offset: 2,
            delay: initial * 2
        })
    );
    assert_eq!((consumer.offset_gaps(), consumer.fetch_retries()), (2, 2));

    // The refetch brings offset 2: everything is handed on, retries reset.
    let handed = hand_off(consumer, &records(&payload, 2..6));
    assert_eq!(offsets(&handed), [2, 3, 4, 5]);
    assert_eq!(handed.effect, None);
    assert_eq!(consumer.fetch_retries(), 0);
    assert_eq!(consumer.next_offset(), 6);
}

/// covers: usher.FormBoundedHandOffBatch
#[test]
fn a_batch_takes_what_is_available_up_to_the_room() {
    assert_eq!(hand_off_batch_size(0, 5), None);
    assert_eq!(hand_off_batch_size(5, 0), None);
    assert_eq!(hand_off_batch_size(3, 5).map(NonZeroUsize::get), Some(3));
    assert_eq!(hand_off_batch_size(9, 5).map(NonZeroUsize::get), Some(5));
}

/// covers: usher.FormBoundedHandOffBatch, usher.HandOffBatchBounded
#[test]
fn records_beyond_the_batch_are_left_to_be_fetched_again() {
    let payload = pack();
    let mut usher = usher_with(config());
    let consumer = usher.consumer_mut(0).unwrap();
    assert_eq!(consumer.room(), 4, "max_poll_records");
    let handed = hand_off(consumer, &records(&payload, 0..6));
    assert_eq!(offsets(&handed), [0, 1, 2, 3]);
    assert_eq!(handed.not_taken, 2);
    assert_eq!(handed.effect, Some(ConsumerEffect::Seek { offset: 4 }));
    // The room shrinks with the agreement bound: 8 - 4 unsettled.
    assert_eq!(consumer.room(), 4);
    let handed = hand_off(consumer, &records(&payload, 4..6));
    assert_eq!((offsets(&handed), handed.effect), (vec![4, 5], None));
    assert_eq!(consumer.room(), 2);

    let empty = hand_off(consumer, &[]);
    assert!(empty.deliveries.is_empty());
    assert_eq!(empty.effect, None);
}

/// covers: usher.PauseWhenAgreementLags, usher.ResumeWhenBelowBounds, usher.UnagreedRecordsWithinBound, usher.SettleRecordOnPublication
#[test]
fn agreement_lag_pauses_and_resumes_only_when_a_whole_batch_fits() {
    let payload = pack();
    let mut usher = usher_with(config());
    let consumer = usher.consumer_mut(0).unwrap();
    assert_eq!(hand_off(consumer, &records(&payload, 0..4)).effect, None);
    let handed = hand_off(consumer, &records(&payload, 4..8));
    assert_eq!(handed.effect, Some(ConsumerEffect::Pause));
    assert_eq!(consumer.polling(), Polling::Paused);
    assert_eq!(consumer.unagreed_records(), 8);
    assert_eq!(consumer.room(), 0);

    // Records still arriving while paused are not taken; resuming seeks back.
    let late = hand_off(consumer, &records(&payload, 8..10));
    assert!(late.deliveries.is_empty());
    assert_eq!((late.not_taken, late.effect), (2, None));

    // Below the bound but without room for a poll batch: no flapping.
    for offset in 0..3 {
        assert_eq!(consumer.record_settled(offset), None);
        assert_eq!(consumer.polling(), Polling::Paused);
    }
    assert_eq!(
        consumer.record_settled(3),
        Some(ConsumerEffect::Resume { offset: 8 })
    );
    assert_eq!(consumer.unagreed_records(), 4);
    assert_eq!(consumer.polling(), Polling::Active);
}

/// covers: usher.PauseWhenPipelineQueueFull, usher.ReleaseQueueOnDurableCommit, usher.PipelineQueueWithinBound
#[test]
fn a_full_pipeline_queue_pauses_until_commits_release_it() {
    let payload = pack();
    let config = UsherConfig {
        max_poll_records: 3,
        max_pipeline_records: 6,
        ..config()
    };
    let mut usher = Usher::new(config).unwrap();
    // Everything below offset 100 is replay: only the queue bound applies.
    let consumer = usher.assign(assignment(0, -1, 100)).unwrap();
    let mut effects = Vec::new();
    for run in [[0, 1], [2, 3], [4, 5]] {
        effects.push(hand_off(consumer, &records(&payload, run)).effect);
    }
    assert_eq!(effects, [None, None, Some(ConsumerEffect::Pause)]);
    assert_eq!(consumer.queued_records(), 6);
    assert_eq!(consumer.unagreed_records(), 0, "replay is never unsettled");

    // Below the bound, but a poll batch does not fit: 4 + 3 > 6.
    assert_eq!(consumer.watermark_advanced(0, 1), None);
    assert_eq!(consumer.queued_records(), 4);
    assert_eq!(consumer.applied_offset(), 1);
    assert_eq!(
        consumer.watermark_advanced(2, 2),
        Some(ConsumerEffect::Resume { offset: 6 })
    );
    assert_eq!(consumer.queued_records(), 3);
    // A stale report changes nothing.
    assert_eq!(consumer.watermark_advanced(0, 1), None);
    assert_eq!(
        (consumer.applied_offset(), consumer.queued_records()),
        (2, 3)
    );
}

/// covers: usher.SettleRecordOnPublication
#[test]
fn replayed_records_are_never_counted_as_unsettled() {
    let payload = pack();
    let mut usher = Usher::new(config()).unwrap();
    let consumer = usher.assign(assignment(0, -1, 5)).unwrap();
    hand_off(consumer, &records(&payload, 0..4));
    hand_off(consumer, &records(&payload, 4..8));
    assert_eq!(consumer.unagreed_records(), 3, "offsets 5, 6 and 7");
    assert_eq!(consumer.polling(), Polling::Active);

    // The Clerk settles replayed records too: they release nothing.
    assert_eq!(consumer.record_settled(2), None);
    assert_eq!(consumer.unagreed_records(), 3);
    // Nor does a record not handed on yet.
    consumer.record_settled(8);
    assert_eq!(consumer.unagreed_records(), 3);
    consumer.record_settled(6);
    assert_eq!(consumer.unagreed_records(), 2);
}

/// covers: usher.PauseWhileLedgerDiskLow, usher.ResumeWhenLedgerDiskRecovers
#[test]
fn low_disk_pauses_every_partition_and_recovery_respects_their_own_bounds() {
    let payload = pack();
    let mut usher = Usher::new(config()).unwrap();
    usher.assign(assignment(0, -1, 0)).unwrap();
    usher.assign(assignment(1, -1, 0)).unwrap();
    let at_bound = usher.consumer_mut(1).unwrap();
    hand_off(at_bound, &records(&payload, 0..4));
    assert_eq!(
        hand_off(at_bound, &records(&payload, 4..8)).effect,
        Some(ConsumerEffect::Pause)
    );

    assert_eq!(usher.pause_intake(), [(0, ConsumerEffect::Pause)]);
    assert!(usher.consumers().all(|c| c.polling() == Polling::Paused));
    // Room again on partition 1, but the disk is still low.
    let consumer = usher.consumer_mut(1).unwrap();
    for offset in 0..4 {
        assert_eq!(consumer.record_settled(offset), None);
    }
    assert_eq!(consumer.polling(), Polling::Paused);
    assert_eq!(
        usher.resume_intake(),
        [
            (0, ConsumerEffect::Resume { offset: 0 }),
            (1, ConsumerEffect::Resume { offset: 8 }),
        ]
    );

    // A partition still at its own bound stays paused when the disk recovers.
    hand_off(usher.consumer_mut(1).unwrap(), &records(&payload, 8..12));
    assert_eq!(usher.consumer(1).unwrap().polling(), Polling::Paused);
    assert_eq!(usher.pause_intake(), [(0, ConsumerEffect::Pause)]);
    assert_eq!(
        usher.resume_intake(),
        [(0, ConsumerEffect::Resume { offset: 0 })]
    );
    assert_eq!(usher.consumer(1).unwrap().polling(), Polling::Paused);

    // A partition assigned while the disk is low starts paused.
    let mut low = Usher::new(config()).unwrap();
    low.pause_intake();
    assert_eq!(
        low.assign(assignment(1, -1, 0)).unwrap().polling(),
        Polling::Paused
    );
}

/// covers: usher.StopConsumingHaltedPartition
#[test]
fn a_halted_partition_stops_for_good() {
    let payload = pack();
    let mut usher = usher_with(config());
    let consumer = usher.consumer_mut(0).unwrap();
    hand_off(consumer, &records(&payload, 0..4));
    hand_off(consumer, &records(&payload, 4..8));
    assert_eq!(consumer.polling(), Polling::Paused);
    assert_eq!(consumer.stop(), Some(ConsumerEffect::Stop));
    assert_eq!(consumer.stop(), None);

    for offset in 0..8 {
        assert_eq!(consumer.record_settled(offset), None);
    }
    assert_eq!(consumer.watermark_advanced(0, 7), None);
    assert_eq!(consumer.fetch_failed(FetchErrorKind::Retriable), None);
    let late = hand_off(consumer, &records(&payload, 8..10));
    assert!(late.deliveries.is_empty());
    assert_eq!(late.effect, None);
    assert_eq!(consumer.polling(), Polling::Stopped);
    assert_eq!(usher.resume_intake(), []);
    assert_eq!(usher.consumer(0).unwrap().polling(), Polling::Stopped);
}

/// covers: usher.RetryAfterRetriableFetchError
#[test]
fn retriable_fetch_errors_back_off_exponentially_up_to_the_maximum() {
    let payload = pack();
    let mut usher = usher_with(config());
    let consumer = usher.consumer_mut(0).unwrap();
    let delays: Vec<_> = (0..9)
        .map(|_| match consumer.fetch_failed(FetchErrorKind::Retriable) {
            Some(ConsumerEffect::RetryFetch { delay }) => delay.as_millis(),
            other => panic!("expected a retry, got {other:?}"),
        })
        .collect();
    assert_eq!(delays, [10, 20, 40, 80, 160, 320, 640, 1000, 1000]);
    assert_eq!(consumer.fetch_retries(), 9);
    assert_eq!(consumer.last_fetch_error(), Some(FetchErrorKind::Retriable));
    assert_eq!(consumer.next_offset(), 0, "the position stays");
    assert_eq!(consumer.polling(), Polling::Active);

    hand_off(consumer, &records(&payload, [0]));
    assert_eq!(consumer.fetch_retries(), 0);
    assert_eq!(consumer.last_fetch_error(), None);
    assert_eq!(
        consumer.fetch_failed(FetchErrorKind::Retriable),
        Some(ConsumerEffect::RetryFetch {
            delay: Duration::from_millis(10)
        })
    );
}

/// covers: usher.RetryAfterRetriableFetchError
#[test]
fn backoff_is_a_pure_function_of_the_retry_count() {
    let (initial, max) = (Duration::from_millis(10), Duration::from_secs(1));
    assert_eq!(fetch_backoff(0, initial, max), initial);
    assert_eq!(fetch_backoff(1, initial, max), initial);
    assert_eq!(fetch_backoff(4, initial, max), Duration::from_millis(80));
    assert_eq!(fetch_backoff(40, initial, max), max);
    assert_eq!(fetch_backoff(u32::MAX, initial, max), max);
}

/// covers: usher.HaltOnOffsetOutOfRange
#[test]
fn an_offset_out_of_range_halts_with_an_alarm() {
    let payload = pack();
    let mut usher = usher_with(config());
    let consumer = usher.consumer_mut(0).unwrap();
    hand_off(consumer, &records(&payload, 0..3));
    assert_eq!(
        consumer.fetch_failed(FetchErrorKind::OffsetOutOfRange),
        Some(ConsumerEffect::Halt(UsherAlarm {
            partition: 0,
            next_offset: 3,
            message: "records after the watermark are gone from the log",
        }))
    );
    assert_eq!(
        consumer.last_fetch_error(),
        Some(FetchErrorKind::OffsetOutOfRange)
    );
    assert_eq!(consumer.polling(), Polling::Stopped);
    assert_eq!(consumer.next_offset(), 3, "never skips to the log start");
    assert!(
        hand_off(consumer, &records(&payload, 5..7))
            .deliveries
            .is_empty()
    );
}

/// covers: usher.ObservePartitionEnd
#[test]
fn partition_end_moves_only_the_lag() {
    let payload = pack();
    let mut usher = Usher::new(config()).unwrap();
    let consumer = usher.assign(assignment(0, 9, 20)).unwrap();
    assert_eq!(consumer.lag(), 10);
    consumer.partition_end_reached(30);
    assert_eq!(consumer.high_watermark(), 30);
    assert_eq!(consumer.lag(), 20);
    consumer.partition_end_reached(25);
    assert_eq!(consumer.high_watermark(), 30, "an older report is ignored");
    assert_eq!(consumer.polling(), Polling::Active);

    hand_off(consumer, &records(&payload, 10..14));
    consumer.watermark_advanced(10, 13);
    assert_eq!(consumer.lag(), 16);
    // Records past a stale end: the lag reads 0, never negative.
    let mut usher = Usher::new(config()).unwrap();
    let consumer = usher.assign(assignment(0, -1, 1)).unwrap();
    hand_off(consumer, &records(&payload, 0..3));
    consumer.watermark_advanced(0, 2);
    assert_eq!(consumer.lag(), 0);
}

#[test]
fn a_config_whose_paused_partitions_could_never_resume_is_refused() {
    assert_eq!(UsherConfig::default().check(), Ok(()));
    let config = UsherConfig {
        max_poll_records: 100,
        max_pipeline_records: 50,
        ..UsherConfig::default()
    };
    assert_eq!(
        Usher::new(config).unwrap_err(),
        ConfigError::PollBatchAboveBound {
            max_poll_records: 100,
            bound: 50
        }
    );
    let config = UsherConfig {
        fetch_retry_initial: Duration::ZERO,
        ..UsherConfig::default()
    };
    assert_eq!(config.check(), Err(ConfigError::FetchRetryDelays));
}
