//! One partition's log: record batches as producers sent them, offsets
//! assigned on append, an index from offset to batch, idempotent-producer
//! sequence checks and retention by size. No I/O and no clock.

use std::collections::{HashMap, VecDeque};

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::ResponseError;

/// Record batch v2 layout (the only one producers of this era send).
const BASE_OFFSET: usize = 0;
const BATCH_LENGTH: usize = 8;
const MAGIC: usize = 16;
const CRC: usize = 17;
const ATTRIBUTES: usize = 21;
const LAST_OFFSET_DELTA: usize = 23;
const MAX_TIMESTAMP: usize = 35;
const PRODUCER_ID: usize = 43;
const PRODUCER_EPOCH: usize = 51;
const BASE_SEQUENCE: usize = 53;
/// Bytes before the first record: the fixed header.
const BATCH_HEADER_BYTES: usize = 61;
/// `batchLength` counts from the partition leader epoch on.
const LENGTH_PREFIX_BYTES: usize = 12;

/// How many recent batches of each producer are remembered to recognise a
/// retried send (librdkafka keeps at most five requests in flight).
const REMEMBERED_BATCHES_PER_PRODUCER: usize = 5;

/// One batch as stored: its bytes carry the assigned base offset.
#[derive(Clone, Debug)]
struct StoredBatch {
    base_offset: i64,
    last_offset: i64,
    max_timestamp: i64,
    bytes: Bytes,
}

/// What a producer last appended, to tell a retry from a gap.
#[derive(Clone, Debug, Default)]
struct ProducerState {
    epoch: i16,
    /// (base sequence, last sequence, base offset), oldest first.
    recent: VecDeque<(i32, i32, i64)>,
}

/// The header fields an append needs, read from a validated batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BatchHeader {
    pub record_count: i64,
    pub max_timestamp: i64,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub base_sequence: i32,
}

/// Splits a produce request's records into validated v2 batches.
pub fn split_batches(records: &Bytes) -> Result<Vec<(BatchHeader, Bytes)>, ResponseError> {
    let mut batches = Vec::new();
    let mut at = 0;
    while at < records.len() {
        let rest = &records[at..];
        if rest.len() < BATCH_HEADER_BYTES {
            return Err(ResponseError::CorruptMessage);
        }
        if rest[MAGIC] != 2 {
            return Err(ResponseError::UnsupportedForMessageFormat);
        }
        let length = usize::try_from(read_i32(rest, BATCH_LENGTH))
            .map_err(|_| ResponseError::CorruptMessage)?;
        let total = length
            .checked_add(LENGTH_PREFIX_BYTES)
            .filter(|total| *total >= BATCH_HEADER_BYTES && *total <= rest.len())
            .ok_or(ResponseError::CorruptMessage)?;
        let batch = &rest[..total];
        let stated_crc = u32::from_be_bytes(batch[CRC..CRC + 4].try_into().expect("4 bytes"));
        if crc32c::crc32c(&batch[ATTRIBUTES..]) != stated_crc {
            return Err(ResponseError::CorruptMessage);
        }
        let last_offset_delta = read_i32(batch, LAST_OFFSET_DELTA);
        if last_offset_delta < 0 {
            return Err(ResponseError::CorruptMessage);
        }
        let header = BatchHeader {
            record_count: i64::from(last_offset_delta) + 1,
            max_timestamp: read_i64(batch, MAX_TIMESTAMP),
            producer_id: read_i64(batch, PRODUCER_ID),
            producer_epoch: i16::from_be_bytes([batch[PRODUCER_EPOCH], batch[PRODUCER_EPOCH + 1]]),
            base_sequence: read_i32(batch, BASE_SEQUENCE),
        };
        batches.push((header, records.slice(at..at + total)));
        at += total;
    }
    if batches.is_empty() {
        return Err(ResponseError::CorruptMessage);
    }
    Ok(batches)
}

fn read_i32(bytes: &[u8], at: usize) -> i32 {
    i32::from_be_bytes(bytes[at..at + 4].try_into().expect("4 bytes"))
}

fn read_i64(bytes: &[u8], at: usize) -> i64 {
    i64::from_be_bytes(bytes[at..at + 8].try_into().expect("8 bytes"))
}

/// A partition's retained batches, oldest first, and the offsets around them.
#[derive(Debug)]
pub struct PartitionLog {
    batches: VecDeque<StoredBatch>,
    retained_bytes: usize,
    retention_bytes: usize,
    next_offset: i64,
    producers: HashMap<i64, ProducerState>,
}

impl PartitionLog {
    pub fn new(retention_bytes: usize) -> Self {
        assert!(retention_bytes > 0, "a log retains something");
        Self {
            batches: VecDeque::new(),
            retained_bytes: 0,
            retention_bytes,
            next_offset: 0,
            producers: HashMap::new(),
        }
    }

    /// The first retained offset (the log end while nothing is retained).
    pub fn log_start(&self) -> i64 {
        self.batches
            .front()
            .map_or(self.next_offset, |batch| batch.base_offset)
    }

    /// The offset the next record gets (the high watermark: one replica).
    pub fn log_end(&self) -> i64 {
        self.next_offset
    }

    /// Appends one validated batch and returns its base offset. A retry of
    /// one of the producer's recent batches returns the offset it got the
    /// first time and appends nothing.
    pub fn append(&mut self, header: &BatchHeader, batch: &Bytes) -> Result<i64, ResponseError> {
        if header.producer_id >= 0 {
            if let Some(state) = self.producers.get(&header.producer_id) {
                if header.producer_epoch < state.epoch {
                    return Err(ResponseError::InvalidProducerEpoch);
                }
                if header.producer_epoch == state.epoch {
                    let last_sequence = last_sequence(header);
                    if let Some(&(_, _, offset)) = state.recent.iter().find(|(base, last, _)| {
                        *base == header.base_sequence && *last == last_sequence
                    }) {
                        return Ok(offset);
                    }
                    let expected = state
                        .recent
                        .back()
                        .map_or(header.base_sequence, |(_, last, _)| last.wrapping_add(1));
                    if header.base_sequence != expected {
                        return Err(ResponseError::OutOfOrderSequenceNumber);
                    }
                }
            }
        }
        let base_offset = self.next_offset;
        let mut stored = BytesMut::from(&batch[..]);
        stored[BASE_OFFSET..BASE_OFFSET + 8].copy_from_slice(&base_offset.to_be_bytes());
        let last_offset = base_offset + header.record_count - 1;
        self.retained_bytes += stored.len();
        self.batches.push_back(StoredBatch {
            base_offset,
            last_offset,
            max_timestamp: header.max_timestamp,
            bytes: stored.freeze(),
        });
        self.next_offset = last_offset + 1;
        if header.producer_id >= 0 {
            let state = self.producers.entry(header.producer_id).or_default();
            if state.epoch != header.producer_epoch {
                state.epoch = header.producer_epoch;
                state.recent.clear();
            }
            state
                .recent
                .push_back((header.base_sequence, last_sequence(header), base_offset));
            if state.recent.len() > REMEMBERED_BATCHES_PER_PRODUCER {
                state.recent.pop_front();
            }
        }
        self.enforce_retention();
        Ok(base_offset)
    }

    /// Drops the oldest batches beyond the retention size; the newest batch
    /// always stays, so the log end stays readable.
    fn enforce_retention(&mut self) {
        while self.retained_bytes > self.retention_bytes && self.batches.len() > 1 {
            let oldest = self.batches.pop_front().expect("more than one batch");
            self.retained_bytes -= oldest.bytes.len();
        }
    }

    /// The batches from the one holding `offset` on, at least one and then
    /// as many as fit in `max_bytes`. `offset == log_end()` reads nothing.
    pub fn read(&self, offset: i64, max_bytes: usize) -> Result<Bytes, ResponseError> {
        if offset < self.log_start() || offset > self.next_offset {
            return Err(ResponseError::OffsetOutOfRange);
        }
        let first = self
            .batches
            .partition_point(|batch| batch.last_offset < offset);
        let mut fitting = 0;
        let mut bytes = 0;
        for batch in self.batches.range(first..) {
            if fitting > 0 && bytes + batch.bytes.len() > max_bytes {
                break;
            }
            fitting += 1;
            bytes += batch.bytes.len();
        }
        // A consumer at the tail usually reads one batch: share it, no copy.
        match fitting {
            0 => Ok(Bytes::new()),
            1 => Ok(self.batches[first].bytes.clone()),
            _ => {
                let mut out = BytesMut::with_capacity(bytes);
                for batch in self.batches.range(first..first + fitting) {
                    out.put_slice(&batch.bytes);
                }
                Ok(out.freeze())
            }
        }
    }

    /// The first offset whose batch has a record at or after `timestamp`
    /// (ListOffsets by time), or `None` when every record is older.
    pub fn offset_for_timestamp(&self, timestamp: i64) -> Option<i64> {
        self.batches
            .iter()
            .find(|batch| batch.max_timestamp >= timestamp)
            .map(|batch| batch.base_offset)
    }
}

fn last_sequence(header: &BatchHeader) -> i32 {
    let delta = i32::try_from(header.record_count - 1).expect("a batch's record count fits i32");
    header.base_sequence.wrapping_add(delta)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A v2 batch of `records` empty records with a valid CRC.
    pub(crate) fn batch(records: i32, producer_id: i64, epoch: i16, base_sequence: i32) -> Bytes {
        let mut body = BytesMut::new();
        body.put_i16(0); // attributes
        body.put_i32(records - 1); // last offset delta
        body.put_i64(1_000); // base timestamp
        body.put_i64(1_000 + i64::from(records)); // max timestamp
        body.put_i64(producer_id);
        body.put_i16(epoch);
        body.put_i32(base_sequence);
        body.put_i32(records);
        for delta in 0..records {
            // length, attributes, timestamp delta, offset delta, key -1, value -1, headers 0 (varints)
            let delta = u8::try_from(delta * 2).expect("small test batch");
            body.put_slice(&[12, 0, 0, delta, 1, 1, 0]);
        }
        let mut out = BytesMut::new();
        out.put_i64(0);
        out.put_i32(i32::try_from(body.len() + 9).expect("small"));
        out.put_i32(-1); // partition leader epoch
        out.put_u8(2);
        out.put_u32(crc32c::crc32c(&body));
        out.put_slice(&body);
        out.freeze()
    }

    fn append(log: &mut PartitionLog, bytes: &Bytes) -> Result<i64, ResponseError> {
        let batches = split_batches(bytes)?;
        let (header, batch) = &batches[0];
        log.append(header, batch)
    }

    #[test]
    fn offsets_are_assigned_in_order_and_written_into_the_stored_batch() {
        let mut log = PartitionLog::new(1 << 20);
        assert_eq!(append(&mut log, &batch(3, -1, 0, -1)), Ok(0));
        assert_eq!(append(&mut log, &batch(2, -1, 0, -1)), Ok(3));
        assert_eq!(log.log_end(), 5);
        let read = log.read(4, 1 << 20).expect("in range");
        let batches = split_batches(&read).expect("stored batches stay valid");
        assert_eq!(batches.len(), 1, "offset 4 is in the second batch");
        assert_eq!(read_i64(&read, BASE_OFFSET), 3);
    }

    #[test]
    fn reads_start_at_the_batch_holding_the_offset_and_respect_max_bytes() {
        let mut log = PartitionLog::new(1 << 20);
        for _ in 0..10 {
            append(&mut log, &batch(2, -1, 0, -1)).expect("appended");
        }
        let one = batch(2, -1, 0, -1).len();
        let read = log.read(7, one * 3).expect("in range");
        assert_eq!(read.len(), one * 3);
        assert_eq!(read_i64(&read, BASE_OFFSET), 6);
        // At least one batch even when it alone exceeds max_bytes.
        assert_eq!(log.read(0, 1).expect("in range").len(), one);
        assert!(
            log.read(20, 100)
                .expect("the log end reads nothing")
                .is_empty()
        );
        assert_eq!(log.read(21, 100), Err(ResponseError::OffsetOutOfRange));
    }

    #[test]
    fn retention_drops_the_oldest_batches_and_moves_the_log_start() {
        let one = batch(1, -1, 0, -1).len();
        let mut log = PartitionLog::new(one * 3);
        for _ in 0..5 {
            append(&mut log, &batch(1, -1, 0, -1)).expect("appended");
        }
        assert_eq!(log.log_start(), 2);
        assert_eq!(log.read(1, 100), Err(ResponseError::OffsetOutOfRange));
        assert!(log.read(2, 1 << 20).is_ok());
    }

    #[test]
    fn a_retried_batch_gets_its_first_offset_and_is_not_appended_again() {
        let mut log = PartitionLog::new(1 << 20);
        assert_eq!(append(&mut log, &batch(2, 7, 0, 0)), Ok(0));
        assert_eq!(append(&mut log, &batch(3, 7, 0, 2)), Ok(2));
        assert_eq!(
            append(&mut log, &batch(2, 7, 0, 0)),
            Ok(0),
            "retry of the first"
        );
        assert_eq!(log.log_end(), 5);
        assert_eq!(
            append(&mut log, &batch(1, 7, 0, 9)),
            Err(ResponseError::OutOfOrderSequenceNumber)
        );
        assert_eq!(append(&mut log, &batch(1, 7, 0, 5)), Ok(5));
        assert_eq!(
            append(&mut log, &batch(1, 7, 1, 0)),
            Ok(6),
            "a new epoch starts over"
        );
        assert_eq!(
            append(&mut log, &batch(1, 7, 0, 6)),
            Err(ResponseError::InvalidProducerEpoch)
        );
    }

    #[test]
    fn malformed_batches_are_refused_with_a_code() {
        let good = batch(2, -1, 0, -1);
        let mut flipped = BytesMut::from(&good[..]);
        let last = flipped.len() - 1;
        flipped[last] ^= 1;
        assert_eq!(
            split_batches(&flipped.freeze()).err(),
            Some(ResponseError::CorruptMessage),
            "bad CRC"
        );
        assert_eq!(
            split_batches(&good.slice(..good.len() - 1)).err(),
            Some(ResponseError::CorruptMessage),
            "truncated"
        );
        let mut old_magic = BytesMut::from(&good[..]);
        old_magic[MAGIC] = 1;
        assert_eq!(
            split_batches(&old_magic.freeze()).err(),
            Some(ResponseError::UnsupportedForMessageFormat)
        );
        assert_eq!(
            split_batches(&Bytes::new()).err(),
            Some(ResponseError::CorruptMessage),
            "empty"
        );
        let two = Bytes::from([good.clone(), good.clone()].concat());
        assert_eq!(split_batches(&two).map(|batches| batches.len()), Ok(2));
    }
}
