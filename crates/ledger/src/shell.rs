//! The Ledger's shell: an actor on its own thread, because a group commit
//! blocks on fdatasync (~1.3 ms here) and nothing else may wait behind it.

use actix::prelude::*;

use protocol::position::{Offset, Partition};

use crate::commit::{DurableCommit, GroupCommit};
use crate::error::LedgerError;
use crate::publication::PublicationTracker;
use crate::store::Ledger;

/// The Ledger of one instance as an actor (start it with
/// `SyncArbiter::start(1, ..)`: commits are written one at a time, in
/// arrival order, each as one synced WriteBatch).
#[derive(Debug)]
pub struct LedgerActor {
    ledger: Ledger,
    /// Which stored outputs are published (pruned by the next commit) and
    /// where the outcome readers resume after a restart.
    publications: PublicationTracker,
}

impl LedgerActor {
    /// `publications` has learnt the retained rows read at start.
    pub fn new(ledger: Ledger, publications: PublicationTracker) -> Self {
        Self {
            ledger,
            publications,
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

    fn handle(&mut self, Commit(mut commit): Commit, _ctx: &mut Self::Context) -> Self::Result {
        self.publications.prepare(&mut commit);
        let durable = self.ledger.write(commit)?;
        self.publications.commit_durable(&durable);
        Ok(durable)
    }
}

/// Publications the Clerk read on the outcome topic: (input partition,
/// input offset, outcome offset), in outcome-topic order.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct PublicationsSeen(pub Vec<(Partition, Offset, Offset)>);

impl Handler<PublicationsSeen> for LedgerActor {
    type Result = ();

    fn handle(&mut self, PublicationsSeen(seen): PublicationsSeen, _ctx: &mut Self::Context) {
        for (partition, offset, outcome_offset) in seen {
            self.publications
                .publication_seen(partition, offset, outcome_offset);
        }
    }
}
