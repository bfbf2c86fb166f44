//! Clerk: authenticated agreement between instances; publishes only on
//! `required_copies` matching copies (`spec/clerk.allium`).
//!
//! Everything but [`shell`] is the deterministic core: no I/O, no clock,
//! no randomness.
//! The shell feeds it what happened ([`Clerk::bytes_received`],
//! [`Clerk::outputs_committed`], [`Clerk::outcome_consumed`],
//! [`Clerk::set_status`], ...) with the current monotonic time in
//! milliseconds, calls [`Clerk::step`] and carries out the returned
//! [`Effect`]s in order (dial, write frames, publish, report to the Usher
//! and the Ledger), in the manner of raft-rs's `RawNode`/`Ready` split.
//!
//! - [`agreement`]: one partition's table of copies per input record;
//! - [`clerk`]: links, sessions, peer views, suspicion, publication schedules;
//! - [`backoff`]: the dialer's reconnect backoff;
//! - [`shell`]: the actix actor that owns a [`Clerk`] and does its TCP
//!   (the only part with I/O);
//! - wire frames and their authentication live in `protocol::peer`.

pub mod agreement;
pub mod backoff;
pub mod clerk;
pub mod config;
pub mod effect;
pub mod link;
pub mod shell;

pub use crate::agreement::{
    AgreementSlot, AgreementTable, CopyOutcome, PeerCopyOutcome, PublicationOutcome,
    SlotConditions, SlotStatus,
};
pub use crate::clerk::{
    Clerk, ClerkCounters, ClerkError, InvariantViolation, OutcomeIntake, OutcomeRecord, OwnOutput,
    Schedule,
};
pub use crate::config::{
    ClerkConfig, ConfigError, InstanceId, InstanceSet, InstanceStatus, Millis,
};
pub use crate::effect::{
    AlarmKind, Effect, HandshakeRejection, LinkId, PublishOrder, SuspicionReason,
};
pub use crate::link::{LinkDirection, LinkStatus, LinkView, PeerDialer, PeerView};
