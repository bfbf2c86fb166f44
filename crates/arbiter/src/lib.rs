//! Arbiter: deterministic evaluation of commands against entity state, in
//! causal groups (`spec/arbiter.allium`).
//!
//! The core takes one batch of consecutive records of one partition, after
//! the Warden classified every command and the Registrar pre-warmed the
//! entities; it evaluates the fresh commands through a [`domain::Domain`],
//! fills one output per command and seals each record with the digest the
//! Clerk compares with peers. Causal groups (commands connected through the
//! keys they touch) may be evaluated on worker threads; the result is
//! byte-identical to evaluating every fresh command one by one in log
//! order, whatever the worker count or where batch boundaries fell.
//!
//! - [`Arbiter::evaluate_batch`]: [`BatchInput`] in, [`EvaluatedBatch`] or
//!   [`ArbiterHalt`] out;
//! - [`ArbiterConfig`]: worker count, bounds, the test-only fault flag.

mod arbiter;
mod batch;
mod config;
mod evaluation;
mod grouping;

pub use arbiter::Arbiter;
pub use batch::{
    ArbiterHalt, BatchInput, CommandSlot, DomainFailure, EvaluatedBatch, FreshCommand,
    FreshResponse, RecordContent, RecordInput, SealedRecord, StagedWrite,
};
pub use config::ArbiterConfig;
pub mod shell;
