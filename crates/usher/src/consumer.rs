//! One input partition's consumption on one instance: in-order hand-off,
//! stream time, the consumed offset and backpressure.
//!
//! The consumer does no I/O. Each event the Kafka shell, the Clerk, the
//! Registrar or the Ledger reports goes in as a method call; what librdkafka
//! must do about it comes back as a [`ConsumerEffect`].

use std::num::NonZeroUsize;
use std::time::Duration;

use domain::Domain;
use protocol::position::{Offset, Partition, StreamTime};

use crate::config::UsherConfig;
use crate::decode::{Delivery, decode_record};

/// Whether the shell fetches this partition.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Polling {
    Active,
    Paused,
    /// For good, in this process: the Clerk halted the partition or its
    /// records are gone from the log.
    Stopped,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FetchErrorKind {
    /// Transport errors, timeouts, leader changes, unknown topic or
    /// partition, authorisation failures: the position stays, nothing is skipped.
    Retriable,
    /// The next offset is below the log start: records this instance never
    /// applied were deleted.
    OffsetOutOfRange,
}

/// One record as fetched from this consumer's partition.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FetchedRecord<'a> {
    pub offset: Offset,
    /// The Kafka record timestamp, in Unix milliseconds.
    pub timestamp: StreamTime,
    /// `None` for a record without a value (a tombstone).
    pub payload: Option<&'a [u8]>,
}

/// Raised when the instance must halt because of this partition.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UsherAlarm {
    pub partition: Partition,
    /// The offset the consumer could not fetch.
    pub next_offset: Offset,
    pub message: &'static str,
}

/// What the shell must do with librdkafka (or the instance) after an event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConsumerEffect {
    /// `pause()` the partition; other partitions keep flowing.
    Pause,
    /// `resume()` the partition and seek to `offset`, the consumer's next
    /// offset: records fetched while it was paused were not taken.
    Resume { offset: Offset },
    /// Seek to `offset`: records fetched beyond the hand-off batch were not taken.
    Seek { offset: Offset },
    /// Seek back to `offset` and fetch again after `delay`: the fetch skipped
    /// it (an offset gap), and nothing past it may be handed on.
    Refetch { offset: Offset, delay: Duration },
    /// Stop consuming the partition for good (no resume).
    Stop,
    /// Fetch again after `delay`, at the same position.
    RetryFetch { delay: Duration },
    /// Halt the instance and raise the alarm.
    Halt(UsherAlarm),
}

/// The result of handing on one polled run of records.
#[derive(Debug)]
pub struct HandOff<C> {
    /// The hand-off batch, in log order; empty when no batch could be formed.
    pub deliveries: Vec<Delivery<C>>,
    /// Records at or below the consumed offset, dropped.
    pub redelivered: usize,
    /// Records beyond the batch, left to be fetched again from the next offset.
    pub not_taken: usize,
    pub effect: Option<ConsumerEffect>,
}

/// Where a partition starts: the Ledger's watermark and the catch-up target
/// recovery fixed for it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Assignment {
    pub partition: Partition,
    /// Highest offset durable in the Ledger; -1 for a wiped instance.
    pub applied_offset: Offset,
    /// The stream time stored with `applied_offset`; the epoch for a wiped instance.
    pub stream_time: StreamTime,
    /// The log end offset when recovery started: records below it are replay.
    pub catch_up_target: Offset,
}

/// The size of the next hand-off batch: every available record that fits
/// the room, `None` when no batch can be formed.
///
/// spec: usher.FormBoundedHandOffBatch
pub fn hand_off_batch_size(available: usize, room: usize) -> Option<NonZeroUsize> {
    NonZeroUsize::new(available.min(room))
}

/// The delay before fetch retry number `retries` (1 for the first): it
/// doubles from `initial` and never exceeds `max`.
pub fn fetch_backoff(retries: u32, initial: Duration, max: Duration) -> Duration {
    let factor = 1u32
        .checked_shl(retries.saturating_sub(1))
        .unwrap_or(u32::MAX);
    initial.saturating_mul(factor).min(max)
}

/// The fresh records at the head of a fetched run: those that continue the
/// log from the consumed offset without a gap.
struct ContiguousRun {
    fresh: usize,
    /// A record beyond the next expected offset followed them.
    gap_follows: bool,
}

impl ContiguousRun {
    fn of(consumed_offset: Offset, records: &[FetchedRecord<'_>]) -> ContiguousRun {
        let mut expected = consumed_offset + 1;
        let mut fresh = 0;
        for record in records {
            if record.offset > expected {
                return ContiguousRun {
                    fresh,
                    gap_follows: true,
                };
            }
            if record.offset == expected {
                fresh += 1;
                expected += 1;
            }
        }
        ContiguousRun {
            fresh,
            gap_follows: false,
        }
    }
}

/// The Usher's consumption of one input partition.
#[derive(Debug)]
pub struct PartitionConsumer {
    config: UsherConfig,
    partition: Partition,
    applied_offset: Offset,
    consumed_offset: Offset,
    stream_time: StreamTime,
    catch_up_target: Offset,
    high_watermark: Offset,
    polling: Polling,
    /// The Ledger's disk-low pause, which holds for every partition.
    intake_paused: bool,
    /// Records handed on at or above the catch-up target, not yet settled.
    unagreed_records: usize,
    fetch_retries: u32,
    last_fetch_error: Option<FetchErrorKind>,
    redelivered_dropped: u64,
    offset_gaps: u64,
}

impl PartitionConsumer {
    /// A consumer positioned at `applied_offset + 1`. The caller has checked
    /// the assignment ([`crate::Usher::assign`]).
    pub(crate) fn assign(config: UsherConfig, assignment: Assignment, intake_paused: bool) -> Self {
        assert!(
            assignment.applied_offset >= -1,
            "a watermark is at least -1"
        );
        assert!(
            assignment.catch_up_target > assignment.applied_offset,
            "recovery never replays from beyond its catch-up target"
        );
        Self {
            config,
            partition: assignment.partition,
            applied_offset: assignment.applied_offset,
            consumed_offset: assignment.applied_offset,
            stream_time: assignment.stream_time,
            catch_up_target: assignment.catch_up_target,
            high_watermark: assignment.catch_up_target,
            polling: if intake_paused {
                Polling::Paused
            } else {
                Polling::Active
            },
            intake_paused,
            unagreed_records: 0,
            fetch_retries: 0,
            last_fetch_error: None,
            redelivered_dropped: 0,
            offset_gaps: 0,
        }
    }

    /// How many records the next hand-off batch may take: none unless
    /// polling is active, else at most a poll batch and what both bounds allow.
    pub fn room(&self) -> usize {
        if self.polling != Polling::Active {
            return 0;
        }
        let agreement_room = self.config.max_unagreed_records - self.unagreed_records;
        let pipeline_room = self.config.max_pipeline_records - self.queued_records();
        self.config
            .max_poll_records
            .min(agreement_room)
            .min(pipeline_room)
    }

    /// Hands on a run of records fetched from this partition, in the order
    /// fetched. Records at or below the consumed offset are dropped; of the
    /// records that continue the log without a gap, as many as the room
    /// allows form the batch, each carrying the stream time up to and
    /// including it; the others are left to be fetched again. A gap (an
    /// offset the fetch skipped) is never stepped over: the partition is
    /// fetched again from the missing offset after a backoff.
    ///
    /// spec: usher.HandOffRecordInOrder, usher.DropRedeliveredRecord, usher.RefetchAcrossOffsetGap, usher.HandOffBatchBounded, usher.HandOffOrderIsLogOrder, usher.HandOffIsContiguous, usher.StreamTimeIsPrefixMaximum, usher.DeliveryStreamTimeCoversRecord, usher.TimingNeverChangesOutputs
    pub fn hand_off<D: Domain>(
        &mut self,
        domain: &D,
        records: &[FetchedRecord<'_>],
    ) -> HandOff<D::Command> {
        let run = ContiguousRun::of(self.consumed_offset, records);
        let batch_size = hand_off_batch_size(run.fresh, self.room()).map_or(0, NonZeroUsize::get);
        assert!(
            batch_size <= self.config.max_poll_records,
            "a hand-off batch holds at most max_poll_records records"
        );

        let mut deliveries = Vec::with_capacity(batch_size);
        let mut redelivered = 0;
        let mut not_taken = 0;
        for record in records {
            if record.offset <= self.consumed_offset {
                redelivered += 1;
            } else if deliveries.len() < batch_size {
                let stream_time = self.take(record);
                deliveries.push(decode_record(
                    domain,
                    &self.config.decode,
                    self.partition,
                    record.offset,
                    stream_time,
                    record.payload,
                ));
            } else {
                not_taken += 1;
            }
        }
        assert_eq!(
            deliveries.len(),
            batch_size,
            "a formed batch is taken whole"
        );
        self.redelivered_dropped += redelivered as u64;
        let stopped_at_gap = run.gap_follows && batch_size == run.fresh;
        if stopped_at_gap {
            self.offset_gaps += 1;
        }

        let effect = match self.reconcile_polling() {
            Some(effect) => Some(effect),
            None if stopped_at_gap && self.polling == Polling::Active => {
                self.fetch_retries = self.fetch_retries.saturating_add(1);
                Some(ConsumerEffect::Refetch {
                    offset: self.next_offset(),
                    delay: fetch_backoff(
                        self.fetch_retries,
                        self.config.fetch_retry_initial,
                        self.config.fetch_retry_max,
                    ),
                })
            }
            None if not_taken > 0 && self.polling == Polling::Active => {
                Some(ConsumerEffect::Seek {
                    offset: self.next_offset(),
                })
            }
            None => None,
        };
        HandOff {
            deliveries,
            redelivered,
            not_taken,
            effect,
        }
    }

    /// Advances the consumer past one record of the batch and returns the
    /// stream time the record carries.
    fn take(&mut self, record: &FetchedRecord<'_>) -> StreamTime {
        assert_eq!(
            record.offset,
            self.consumed_offset + 1,
            "records are taken in log order, without gaps"
        );
        self.stream_time = self.stream_time.advanced_by(record.timestamp);
        assert!(self.stream_time >= record.timestamp);
        self.consumed_offset = record.offset;
        assert!(
            self.queued_records() <= self.config.max_pipeline_records,
            "the pipeline queue stays within its bound"
        );
        if record.offset >= self.catch_up_target {
            self.unagreed_records += 1;
            assert!(
                self.unagreed_records <= self.config.max_unagreed_records,
                "unsettled records stay within their bound"
            );
        }
        self.fetch_retries = 0;
        self.last_fetch_error = None;
        self.stream_time
    }

    /// The Clerk saw the record's publication with this instance's own output
    /// durable. Replayed records (below the catch-up target) were never counted.
    ///
    /// spec: usher.SettleRecordOnPublication
    pub fn record_settled(&mut self, offset: Offset) -> Option<ConsumerEffect> {
        let counted = offset >= self.catch_up_target && offset <= self.consumed_offset;
        if !counted || self.unagreed_records == 0 {
            return None;
        }
        self.unagreed_records -= 1;
        self.reconcile_polling()
    }

    /// A group commit made `from_offset..=through_offset` durable: the records
    /// handed on in that range leave the pipeline queue. A report at or below
    /// the watermark changes nothing.
    ///
    /// spec: usher.ReleaseQueueOnDurableCommit
    pub fn watermark_advanced(
        &mut self,
        from_offset: Offset,
        through_offset: Offset,
    ) -> Option<ConsumerEffect> {
        if through_offset <= self.applied_offset {
            return None;
        }
        assert_eq!(
            from_offset,
            self.applied_offset + 1,
            "the watermark advances without skipping"
        );
        assert!(
            through_offset <= self.consumed_offset,
            "the watermark never passes the consumed offset"
        );
        self.applied_offset = through_offset;
        self.reconcile_polling()
    }

    /// The Clerk halted the partition (split brain).
    ///
    /// spec: usher.StopConsumingHaltedPartition
    pub fn stop(&mut self) -> Option<ConsumerEffect> {
        if self.polling == Polling::Stopped {
            return None;
        }
        self.polling = Polling::Stopped;
        Some(ConsumerEffect::Stop)
    }

    /// A fetch of this partition failed. A stopped partition ignores it.
    ///
    /// spec: usher.RetryAfterRetriableFetchError, usher.HaltOnOffsetOutOfRange
    pub fn fetch_failed(&mut self, kind: FetchErrorKind) -> Option<ConsumerEffect> {
        if self.polling == Polling::Stopped {
            return None;
        }
        self.last_fetch_error = Some(kind);
        match kind {
            FetchErrorKind::Retriable => {
                self.fetch_retries = self.fetch_retries.saturating_add(1);
                Some(ConsumerEffect::RetryFetch {
                    delay: fetch_backoff(
                        self.fetch_retries,
                        self.config.fetch_retry_initial,
                        self.config.fetch_retry_max,
                    ),
                })
            }
            FetchErrorKind::OffsetOutOfRange => {
                // Skipping to the log start would silently diverge from the peers.
                self.polling = Polling::Stopped;
                Some(ConsumerEffect::Halt(UsherAlarm {
                    partition: self.partition,
                    next_offset: self.next_offset(),
                    message: "records after the watermark are gone from the log",
                }))
            }
        }
    }

    /// The broker reported the end of the partition; only the lag changes.
    /// An older, lower report is ignored.
    ///
    /// spec: usher.ObservePartitionEnd
    pub fn partition_end_reached(&mut self, high_watermark: Offset) {
        self.high_watermark = self.high_watermark.max(high_watermark);
    }

    /// spec: usher.PauseWhileLedgerDiskLow, usher.ResumeWhenLedgerDiskRecovers
    pub(crate) fn set_intake_paused(&mut self, paused: bool) -> Option<ConsumerEffect> {
        self.intake_paused = paused;
        self.reconcile_polling()
    }

    /// Pauses at a bound or on low disk; resumes only when a whole poll batch
    /// fits under both bounds and the disk is fine, so a partition at a bound
    /// does not flap.
    ///
    /// spec: usher.PauseWhenAgreementLags, usher.PauseWhenPipelineQueueFull, usher.ResumeWhenBelowBounds, usher.UnagreedRecordsWithinBound, usher.PipelineQueueWithinBound
    fn reconcile_polling(&mut self) -> Option<ConsumerEffect> {
        let config = &self.config;
        let unagreed = self.unagreed_records;
        let queued = self.queued_records();
        assert!(unagreed <= config.max_unagreed_records && queued <= config.max_pipeline_records);
        let at_bound =
            unagreed >= config.max_unagreed_records || queued >= config.max_pipeline_records;
        let room_for_poll_batch = unagreed + config.max_poll_records <= config.max_unagreed_records
            && queued + config.max_poll_records <= config.max_pipeline_records;
        match self.polling {
            Polling::Active if at_bound || self.intake_paused => {
                self.polling = Polling::Paused;
                Some(ConsumerEffect::Pause)
            }
            Polling::Paused if room_for_poll_batch && !self.intake_paused => {
                self.polling = Polling::Active;
                Some(ConsumerEffect::Resume {
                    offset: self.next_offset(),
                })
            }
            Polling::Active | Polling::Paused | Polling::Stopped => None,
        }
    }

    pub fn partition(&self) -> Partition {
        self.partition
    }

    /// Where fetching resumes: one past the last record handed on.
    pub fn next_offset(&self) -> Offset {
        self.consumed_offset + 1
    }

    pub fn consumed_offset(&self) -> Offset {
        self.consumed_offset
    }

    pub fn applied_offset(&self) -> Offset {
        self.applied_offset
    }

    /// The largest record timestamp seen on the partition (stored one included).
    pub fn stream_time(&self) -> StreamTime {
        self.stream_time
    }

    pub fn catch_up_target(&self) -> Offset {
        self.catch_up_target
    }

    pub fn high_watermark(&self) -> Offset {
        self.high_watermark
    }

    /// Records in the log not yet durable here, as /health reports it. The
    /// broker's end may be reported late, so a negative difference reads 0.
    pub fn lag(&self) -> i64 {
        (self.high_watermark - 1 - self.applied_offset).max(0)
    }

    pub fn polling(&self) -> Polling {
        self.polling
    }

    pub fn unagreed_records(&self) -> usize {
        self.unagreed_records
    }

    /// Records handed on and not yet durable: the pipeline queue. Hand-off
    /// is contiguous, so they are exactly the offsets after the watermark
    /// up to the consumed offset.
    pub fn queued_records(&self) -> usize {
        usize::try_from(self.consumed_offset - self.applied_offset)
            .expect("the watermark never passes the consumed offset")
    }

    pub fn fetch_retries(&self) -> u32 {
        self.fetch_retries
    }

    pub fn last_fetch_error(&self) -> Option<FetchErrorKind> {
        self.last_fetch_error
    }

    pub fn redelivered_dropped(&self) -> u64 {
        self.redelivered_dropped
    }

    pub fn offset_gaps(&self) -> u64 {
        self.offset_gaps
    }
}

#[cfg(test)]
mod tests;
