//! The Ledger's shell: an actor on its own thread, because a group commit
//! blocks on fdatasync (~1.3 ms here) and nothing else may wait behind it.

use actix::prelude::*;

use crate::commit::{DurableCommit, GroupCommit};
use crate::error::LedgerError;
use crate::store::Ledger;

/// The Ledger of one instance as an actor (start it with
/// `SyncArbiter::start(1, ..)`: commits are written one at a time, in
/// arrival order, each as one synced WriteBatch).
#[derive(Debug)]
pub struct LedgerActor {
    ledger: Ledger,
    commits: u64,
    records: u64,
}

impl LedgerActor {
    pub fn new(ledger: Ledger) -> Self {
        Self {
            ledger,
            commits: 0,
            records: 0,
        }
    }
}

impl Actor for LedgerActor {
    type Context = SyncContext<Self>;
}

/// Write one group commit; the answer says what became durable.
#[derive(Debug, Message)]
#[rtype(result = "Result<DurableCommit, LedgerError>")]
pub struct Commit(pub GroupCommit);

impl Handler<Commit> for LedgerActor {
    type Result = Result<DurableCommit, LedgerError>;

    fn handle(&mut self, Commit(commit): Commit, _ctx: &mut Self::Context) -> Self::Result {
        let records = commit.record_count() as u64;
        let durable = self.ledger.write(commit)?;
        self.commits += 1;
        self.records += records;
        Ok(durable)
    }
}

/// Commits and records written so far, for /metrics.
#[derive(Clone, Copy, Debug, Message)]
#[rtype(result = "(u64, u64)")]
pub struct LedgerCounters;

impl Handler<LedgerCounters> for LedgerActor {
    type Result = MessageResult<LedgerCounters>;

    fn handle(&mut self, _query: LedgerCounters, _ctx: &mut Self::Context) -> Self::Result {
        MessageResult((self.commits, self.records))
    }
}
