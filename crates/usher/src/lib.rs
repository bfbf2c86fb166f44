//! Usher: consumes the input partitions in order, hands each command on,
//! tracks consumed offsets (`spec/usher.allium`).
//!
//! This is the deterministic core; the Kafka shell drives it.
//!
//! - [`decode_record`] turns one record's bytes into its commands or a
//!   [`DeadLetter`] with a fixed reason token;
//! - [`PartitionConsumer`] hands records of one partition on in log order,
//!   each carrying its stream time, drops redeliveries and applies
//!   backpressure, answering every event with at most one [`ConsumerEffect`];
//! - [`Usher`] holds one consumer per input partition and the Ledger's
//!   disk-low pause.
//!
//! What reaches an output (decode result, dead-letter reason, stream time)
//! is a function of the log alone: poll sizes, pauses, retries and
//! redeliveries change only when a record is handed on.

mod config;
mod consumer;
mod decode;
mod partitions;

pub use config::{ConfigError, DecodeLimits, UsherConfig};
pub use consumer::{
    Assignment, ConsumerEffect, FetchErrorKind, FetchedRecord, HandOff, PartitionConsumer, Polling,
    UsherAlarm, fetch_backoff, hand_off_batch_size,
};
pub use decode::{
    DeadLetter, DeadLetterReason, DecodedCommand, Delivery, DeliveryResult, InvalidCommand,
    decode_record,
};
pub use partitions::{AssignError, Usher};
pub mod shell;
