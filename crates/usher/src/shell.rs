//! The Usher's shell: an actix actor around [`Usher`] and a fetch thread
//! around an rdkafka `BaseConsumer`.
//!
//! The fetch thread polls the input topic and hands each partition's run of
//! records to the actor, then waits for the actor's answer before it polls
//! again: every seek or pause the core decides is applied before the next
//! poll, so records the core did not take are fetched again, never skipped.
//! The actor forwards decoded batches to the node's pipeline and applies the
//! core's [`ConsumerEffect`]s to the consumer.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use actix::prelude::*;
use domain::Domain;
use protocol::position::{Offset, Partition, StreamTime};
use rdkafka::TopicPartitionList;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message as _;
use rdkafka::types::RDKafkaErrorCode;

use crate::consumer::{Assignment, ConsumerEffect, FetchErrorKind, FetchedRecord, UsherAlarm};
use crate::decode::Delivery;
use crate::partitions::Usher;

/// How long one poll waits for the first record; bounds how late the fetch
/// thread notices a stop request.
const POLL_WAIT: Duration = Duration::from_millis(100);
/// How often the fetch thread asks the broker for the log ends (for the lag).
const LOG_END_REFRESH: Duration = Duration::from_millis(500);
/// How long asking for one partition's log end may take. The request shares
/// the fetch's broker connection, and librdkafka drops a connection when a
/// request on it times out (`socket.max.fails=1`), losing the fetch in
/// flight: at 200 ms, tansu at 2,000 commands/s made each instance
/// reconnect 11-19 times in 15 s. The thread only reports lag, so a slow
/// answer costs nothing.
const LOG_END_TIMEOUT: Duration = Duration::from_secs(5);
/// How long the fetch thread waits for the actor's answer; only a stopping
/// actor takes this long, and the thread then ends.
const ACTOR_ANSWER: Duration = Duration::from_secs(30);
/// How long a seek may take before it counts as a failed fetch.
const SEEK_TIMEOUT: Duration = Duration::from_secs(5);

/// One record as fetched, owned so it can cross to the actor.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OwnedRecord {
    pub offset: Offset,
    pub timestamp: StreamTime,
    pub payload: Option<Vec<u8>>,
}

/// A run of consecutive records of one partition, as polled.
#[derive(Debug)]
pub struct Fetched {
    pub partition: Partition,
    pub records: Vec<OwnedRecord>,
}

/// The broker's log ends (next offset to be written), for the lag.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct LogEnds(pub BTreeMap<Partition, Offset>);

impl Message for Fetched {
    /// How long the fetch thread waits before fetching again (a retry backoff).
    type Result = Option<Duration>;
}

/// A fetch failed; the kind decides between a retry and a halt.
#[derive(Debug, Message)]
#[rtype(result = "Option<Duration>")]
pub struct FetchFailed {
    pub kind: FetchErrorKind,
    pub error: String,
}

/// A batch of decoded records for the pipeline, in log order.
#[derive(Debug)]
pub struct Delivered<C> {
    pub partition: Partition,
    pub deliveries: Vec<Delivery<C>>,
}

impl<C: 'static> Message for Delivered<C> {
    type Result = ();
}

/// The Usher halted the instance (records it needs are gone from the log).
#[derive(Clone, Copy, Debug, Message)]
#[rtype(result = "()")]
pub struct UsherHalted(pub UsherAlarm);

/// A group commit made `from_offset..=through_offset` of `partition` durable.
#[derive(Clone, Copy, Debug, Message)]
#[rtype(result = "()")]
pub struct WatermarkAdvanced {
    pub partition: Partition,
    pub from_offset: Offset,
    pub through_offset: Offset,
}

/// The Clerk saw these records' publications.
#[derive(Clone, Debug, Message)]
#[rtype(result = "()")]
pub struct RecordsSettled {
    pub partition: Partition,
    pub offsets: Vec<Offset>,
}

/// Split brain on `partition`: stop consuming it for good.
#[derive(Clone, Copy, Debug, Message)]
#[rtype(result = "()")]
pub struct StopPartition(pub Partition);

/// Where one partition's consumption stands, for /health and /metrics.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PartitionProgress {
    pub partition: Partition,
    pub applied_offset: Offset,
    pub consumed_offset: Offset,
    pub lag: i64,
    pub unagreed_records: usize,
    pub queued_records: usize,
    pub redelivered_dropped: u64,
    pub offset_gaps: u64,
}

/// Asks for every partition's [`PartitionProgress`].
#[derive(Clone, Copy, Debug, Message)]
#[rtype(result = "Vec<PartitionProgress>")]
pub struct ProgressQuery;

/// Where the actor sends what it decided.
#[derive(Debug)]
pub struct UsherOutbox<C: Send + 'static> {
    pub delivered: Recipient<Delivered<C>>,
    pub halted: Recipient<UsherHalted>,
}

/// The Usher of one instance, over one consumer of the input topic.
pub struct UsherActor<D: Domain>
where
    D::Command: Send + 'static,
{
    usher: Usher,
    domain: D,
    consumer: Arc<BaseConsumer>,
    topic: String,
    outbox: UsherOutbox<D::Command>,
    fetch_thread: Option<FetchThread>,
}

impl<D: Domain> std::fmt::Debug for UsherActor<D>
where
    D::Command: Send + 'static,
{
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UsherActor")
            .field("usher", &self.usher)
            .field("topic", &self.topic)
            .finish_non_exhaustive()
    }
}

/// Why the Usher could not start.
#[derive(Debug, thiserror::Error)]
pub enum UsherStartError {
    #[error(transparent)]
    Assign(#[from] crate::partitions::AssignError),
    #[error("assigning the input partitions to the consumer: {0}")]
    Kafka(#[from] KafkaError),
}

impl<D> UsherActor<D>
where
    D: Domain + Unpin + 'static,
    D::Command: Send + 'static,
{
    /// Assigns every partition at its watermark + 1, explicitly (no group
    /// subscription: positions live in the Ledger).
    ///
    /// spec: usher.AssignPartitionFromWatermark, usher.NoConsumerGroupCommits
    pub fn new(
        mut usher: Usher,
        domain: D,
        consumer: BaseConsumer,
        topic: String,
        assignments: &[Assignment],
        outbox: UsherOutbox<D::Command>,
    ) -> Result<Self, UsherStartError> {
        let mut positions = TopicPartitionList::new();
        for assignment in assignments {
            let consumer = usher.assign(*assignment)?;
            positions.add_partition_offset(
                &topic,
                partition_index(assignment.partition),
                rdkafka::Offset::Offset(consumer.next_offset()),
            )?;
        }
        consumer.assign(&positions)?;
        Ok(Self {
            usher,
            domain,
            consumer: Arc::new(consumer),
            topic,
            outbox,
            fetch_thread: None,
        })
    }

    fn apply(&mut self, partition: Partition, effect: ConsumerEffect) -> Option<Duration> {
        let mut list = TopicPartitionList::new();
        list.add_partition(&self.topic, partition_index(partition));
        let outcome = match effect {
            ConsumerEffect::Pause | ConsumerEffect::Stop => {
                self.consumer.pause(&list).map(|()| None)
            }
            ConsumerEffect::Resume { offset } => self
                .consumer
                .resume(&list)
                .and_then(|()| self.seek(partition, offset))
                .map(|()| None),
            ConsumerEffect::Seek { offset } => self.seek(partition, offset).map(|()| None),
            ConsumerEffect::Refetch { offset, delay } => {
                tracing::warn!(
                    partition,
                    missing_offset = offset,
                    "the fetch skipped an offset; fetching again from it"
                );
                self.seek(partition, offset).map(|()| Some(delay))
            }
            ConsumerEffect::RetryFetch { delay } => return Some(delay),
            ConsumerEffect::Halt(alarm) => {
                tracing::error!(
                    partition = alarm.partition,
                    next_offset = alarm.next_offset,
                    "usher halts the instance: {}",
                    alarm.message
                );
                self.outbox.halted.do_send(UsherHalted(alarm));
                return None;
            }
        };
        match outcome {
            Ok(delay) => delay,
            Err(error) => {
                // The position stays where the core thinks it is only if the
                // seek happened; a failed one is retried as a failed fetch.
                tracing::warn!(partition, %error, ?effect, "applying a consumer effect failed");
                self.fetch_failed(FetchErrorKind::Retriable)
            }
        }
    }

    fn seek(&self, partition: Partition, offset: Offset) -> Result<(), KafkaError> {
        self.consumer.seek(
            &self.topic,
            partition_index(partition),
            rdkafka::Offset::Offset(offset),
            SEEK_TIMEOUT,
        )
    }

    fn fetch_failed(&mut self, kind: FetchErrorKind) -> Option<Duration> {
        let partitions: Vec<Partition> = self
            .usher
            .consumers()
            .map(|consumer| consumer.partition())
            .collect();
        partitions
            .into_iter()
            .filter_map(|partition| {
                let effect = self.usher.consumer_mut(partition)?.fetch_failed(kind)?;
                self.apply(partition, effect)
            })
            .max()
    }
}

impl<D> Actor for UsherActor<D>
where
    D: Domain + Unpin + 'static,
    D::Command: Send + 'static,
{
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        let partitions = self.usher.config().input_partitions;
        self.fetch_thread = Some(FetchThread::spawn(
            Arc::clone(&self.consumer),
            self.topic.clone(),
            partitions,
            self.usher.config().max_poll_records,
            ctx.address(),
        ));
    }

    fn stopped(&mut self, _ctx: &mut Self::Context) {
        if let Some(thread) = self.fetch_thread.take() {
            thread.stop();
        }
    }
}

impl<D> Handler<Fetched> for UsherActor<D>
where
    D: Domain + Unpin + 'static,
    D::Command: Send + 'static,
{
    type Result = Option<Duration>;

    fn handle(&mut self, fetched: Fetched, _ctx: &mut Self::Context) -> Option<Duration> {
        let partition = fetched.partition;
        let Some(consumer) = self.usher.consumer_mut(partition) else {
            tracing::warn!(partition, "records fetched for an unassigned partition");
            return None;
        };
        let records: Vec<FetchedRecord<'_>> = fetched
            .records
            .iter()
            .map(|record| FetchedRecord {
                offset: record.offset,
                timestamp: record.timestamp,
                payload: record.payload.as_deref(),
            })
            .collect();
        let hand_off = consumer.hand_off(&self.domain, &records);
        if !hand_off.deliveries.is_empty() {
            self.outbox.delivered.do_send(Delivered {
                partition,
                deliveries: hand_off.deliveries,
            });
        }
        hand_off
            .effect
            .and_then(|effect| self.apply(partition, effect))
    }
}

impl<D> Handler<LogEnds> for UsherActor<D>
where
    D: Domain + Unpin + 'static,
    D::Command: Send + 'static,
{
    type Result = ();

    /// spec: usher.ObservePartitionEnd
    fn handle(&mut self, LogEnds(ends): LogEnds, _ctx: &mut Self::Context) {
        for (partition, end) in ends {
            if let Some(consumer) = self.usher.consumer_mut(partition) {
                consumer.partition_end_reached(end - 1);
            }
        }
    }
}

impl<D> Handler<FetchFailed> for UsherActor<D>
where
    D: Domain + Unpin + 'static,
    D::Command: Send + 'static,
{
    type Result = Option<Duration>;

    /// spec: usher.RetryAfterRetriableFetchError, usher.HaltOnOffsetOutOfRange
    fn handle(&mut self, failed: FetchFailed, _ctx: &mut Self::Context) -> Option<Duration> {
        tracing::warn!(kind = ?failed.kind, error = %failed.error, "fetching the input topic failed");
        self.fetch_failed(failed.kind)
    }
}

impl<D> Handler<WatermarkAdvanced> for UsherActor<D>
where
    D: Domain + Unpin + 'static,
    D::Command: Send + 'static,
{
    type Result = ();

    fn handle(&mut self, advanced: WatermarkAdvanced, _ctx: &mut Self::Context) {
        let Some(consumer) = self.usher.consumer_mut(advanced.partition) else {
            return;
        };
        if let Some(effect) =
            consumer.watermark_advanced(advanced.from_offset, advanced.through_offset)
        {
            self.apply(advanced.partition, effect);
        }
    }
}

impl<D> Handler<RecordsSettled> for UsherActor<D>
where
    D: Domain + Unpin + 'static,
    D::Command: Send + 'static,
{
    type Result = ();

    fn handle(&mut self, settled: RecordsSettled, _ctx: &mut Self::Context) {
        let Some(consumer) = self.usher.consumer_mut(settled.partition) else {
            return;
        };
        let effect = settled
            .offsets
            .iter()
            .filter_map(|&offset| consumer.record_settled(offset))
            .last();
        if let Some(effect) = effect {
            self.apply(settled.partition, effect);
        }
    }
}

impl<D> Handler<StopPartition> for UsherActor<D>
where
    D: Domain + Unpin + 'static,
    D::Command: Send + 'static,
{
    type Result = ();

    fn handle(&mut self, StopPartition(partition): StopPartition, _ctx: &mut Self::Context) {
        if let Some(effect) = self
            .usher
            .consumer_mut(partition)
            .and_then(|consumer| consumer.stop())
        {
            self.apply(partition, effect);
        }
    }
}

impl<D> Handler<ProgressQuery> for UsherActor<D>
where
    D: Domain + Unpin + 'static,
    D::Command: Send + 'static,
{
    type Result = MessageResult<ProgressQuery>;

    fn handle(&mut self, _query: ProgressQuery, _ctx: &mut Self::Context) -> Self::Result {
        MessageResult(
            self.usher
                .consumers()
                .map(|consumer| PartitionProgress {
                    partition: consumer.partition(),
                    applied_offset: consumer.applied_offset(),
                    consumed_offset: consumer.consumed_offset(),
                    lag: consumer.lag(),
                    unagreed_records: consumer.unagreed_records(),
                    queued_records: consumer.queued_records(),
                    redelivered_dropped: consumer.redelivered_dropped(),
                    offset_gaps: consumer.offset_gaps(),
                })
                .collect(),
        )
    }
}

fn partition_index(partition: Partition) -> i32 {
    i32::try_from(partition).expect("partition numbers fit Kafka's i32")
}

/// The thread that polls the consumer and waits for the actor after each
/// run of records.
#[derive(Debug)]
struct FetchThread {
    stop: Arc<AtomicBool>,
    handle: JoinHandle<()>,
    log_ends: JoinHandle<()>,
}

impl FetchThread {
    fn spawn<A>(
        consumer: Arc<BaseConsumer>,
        topic: String,
        partitions: u32,
        max_poll_records: usize,
        usher: Addr<A>,
    ) -> FetchThread
    where
        A: Actor<Context = Context<A>> + Handler<Fetched> + Handler<FetchFailed> + Handler<LogEnds>,
    {
        let stop = Arc::new(AtomicBool::new(false));
        let log_ends = spawn_log_end_thread(
            Arc::clone(&consumer),
            topic.clone(),
            partitions,
            Arc::clone(&stop),
            usher.clone(),
        );
        let stopping = Arc::clone(&stop);
        let handle = std::thread::Builder::new()
            .name("usher-fetch".to_owned())
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_time()
                    .build()
                    .expect("a current-thread runtime needs no resources that can run out");
                let poller = Poller {
                    consumer: &consumer,
                    max_poll_records,
                };
                while !stopping.load(Ordering::Relaxed) {
                    let backoff = match poller.poll_runs() {
                        Ok(runs) => {
                            let mut backoff = None;
                            for run in runs {
                                match runtime
                                    .block_on(async { usher.send(run).timeout(ACTOR_ANSWER).await })
                                {
                                    Ok(delay) => backoff = backoff.max(delay),
                                    Err(MailboxError::Closed | MailboxError::Timeout) => return,
                                }
                            }
                            backoff
                        }
                        Err(failed) => {
                            match runtime
                                .block_on(async { usher.send(failed).timeout(ACTOR_ANSWER).await })
                            {
                                Ok(delay) => delay,
                                Err(MailboxError::Closed | MailboxError::Timeout) => return,
                            }
                        }
                    };
                    if let Some(delay) = backoff {
                        // A retry backoff the core chose, not synchronisation.
                        std::thread::sleep(delay);
                    }
                }
            })
            .expect("spawning the fetch thread");
        FetchThread {
            stop,
            handle,
            log_ends,
        }
    }

    /// Tells both threads to end; they notice within one poll wait or
    /// refresh period. Not joined: this runs in the actor's `stopped`, and
    /// a thread waiting for that actor's answer would wait for the join.
    fn stop(self) {
        self.stop.store(true, Ordering::Relaxed);
        drop((self.handle, self.log_ends));
    }
}

/// Asks the broker for every partition's log end once per
/// [`LOG_END_REFRESH`], on its own thread: each is a broker round trip, and
/// on the poll thread it stalled consumption (a p99 of 240 ms instead of
/// 21 ms at 300 commands/s).
fn spawn_log_end_thread<A>(
    consumer: Arc<BaseConsumer>,
    topic: String,
    partitions: u32,
    stop: Arc<AtomicBool>,
    usher: Addr<A>,
) -> JoinHandle<()>
where
    A: Actor<Context = Context<A>> + Handler<LogEnds>,
{
    std::thread::Builder::new()
        .name("usher-log-ends".to_owned())
        .spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let ends = (0..partitions)
                    .filter_map(|partition| {
                        consumer
                            .fetch_watermarks(&topic, partition_index(partition), LOG_END_TIMEOUT)
                            .ok()
                            .map(|(_, high)| (partition, high))
                    })
                    .collect();
                if usher.try_send(LogEnds(ends)).is_err() && !usher.connected() {
                    return;
                }
                // A refresh period, not synchronisation.
                std::thread::sleep(LOG_END_REFRESH);
            }
        })
        .expect("spawning the log-end thread")
}

/// One poll round: records grouped by partition, in fetch order.
struct Poller<'a> {
    consumer: &'a BaseConsumer,
    max_poll_records: usize,
}

impl Poller<'_> {
    fn poll_runs(&self) -> Result<Vec<Fetched>, FetchFailed> {
        let mut runs: BTreeMap<Partition, Vec<OwnedRecord>> = BTreeMap::new();
        let mut polled = 0;
        let mut wait = POLL_WAIT;
        while polled < self.max_poll_records {
            let Some(result) = self.consumer.poll(wait) else {
                break;
            };
            wait = Duration::ZERO;
            match result {
                Ok(message) => {
                    let Ok(partition) = Partition::try_from(message.partition()) else {
                        continue;
                    };
                    runs.entry(partition).or_default().push(OwnedRecord {
                        offset: message.offset(),
                        timestamp: StreamTime(message.timestamp().to_millis().unwrap_or(0)),
                        payload: message.payload().map(<[u8]>::to_vec),
                    });
                    polled += 1;
                }
                Err(KafkaError::PartitionEOF(_)) => {}
                Err(error) => {
                    if polled > 0 {
                        // Hand on what was fetched; the error shows again.
                        break;
                    }
                    return Err(FetchFailed {
                        kind: fetch_error_kind(&error),
                        error: error.to_string(),
                    });
                }
            }
        }
        Ok(runs
            .into_iter()
            .map(|(partition, records)| Fetched { partition, records })
            .collect())
    }
}

/// librdkafka retries transport errors itself; only a position outside the
/// log is fatal (`auto.offset.reset=error` surfaces it instead of jumping).
fn fetch_error_kind(error: &KafkaError) -> FetchErrorKind {
    match error.rdkafka_error_code() {
        Some(RDKafkaErrorCode::OffsetOutOfRange | RDKafkaErrorCode::AutoOffsetReset) => {
            FetchErrorKind::OffsetOutOfRange
        }
        _ => FetchErrorKind::Retriable,
    }
}
