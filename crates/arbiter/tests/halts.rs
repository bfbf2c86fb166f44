//! A domain that breaks its contract halts the Arbiter: a typed halt naming
//! the first failing command in log order, and nothing of the batch sealed.

mod support;

use arbiter::{Arbiter, ArbiterConfig, ArbiterHalt, BatchInput, DomainFailure, EvaluatedBatch};
use domain::{
    CommandDecodeError, CorruptState, Domain, DomainOutcome, EntityKey, EntityStates, EntityWrite,
    EvaluationContext, Verdict,
};
use proptest::prelude::*;
use support::{CONTEXT, PARTITION, SlotSpec, Store, position, record};

/// What the test domain does with a command on entity `key`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Act {
    /// Accepts and writes its key: a well-behaved command.
    Write,
    RejectWithWrites,
    WriteUndeclared,
    ReadUndeclared,
    Panic,
    PanicInTouchedKeys,
    ReportCorruptState,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Misbehave {
    key: u8,
    act: Act,
}

/// Keys are `k<n>`; the undeclared key is one no command declares.
struct Misbehaving;

fn key(n: u8) -> EntityKey {
    EntityKey::new(format!("k{n}"))
}

fn undeclared() -> EntityKey {
    EntityKey::new("undeclared".to_owned())
}

impl Domain for Misbehaving {
    type Command = Misbehave;

    fn decode_command(&self, _: &[u8]) -> Result<Misbehave, CommandDecodeError> {
        unreachable!("the Arbiter never decodes")
    }

    fn validate(&self, _: &Misbehave) -> Result<(), CommandDecodeError> {
        Ok(())
    }

    fn touched_keys(&self, command: &Misbehave) -> Vec<EntityKey> {
        assert!(
            command.act != Act::PanicInTouchedKeys,
            "touched_keys blew up"
        );
        vec![key(command.key)]
    }

    fn evaluate(
        &self,
        _: EvaluationContext,
        command: &Misbehave,
        entities: &dyn EntityStates,
    ) -> Result<DomainOutcome, CorruptState> {
        let own = key(command.key);
        let count = entities.state(&own).map_or(0, <[u8]>::len);
        let write = |key: EntityKey| EntityWrite {
            key,
            state: vec![b'.'; count + 1],
        };
        let (verdict, writes) = match command.act {
            Act::Write => (Verdict::Accepted, vec![write(own)]),
            Act::RejectWithWrites => (Verdict::Rejected("no"), vec![write(own)]),
            Act::WriteUndeclared => (Verdict::Accepted, vec![write(own), write(undeclared())]),
            Act::ReadUndeclared => {
                let _ = entities.state(&undeclared());
                (Verdict::Accepted, vec![write(own)])
            }
            Act::Panic => panic!("evaluate blew up"),
            Act::PanicInTouchedKeys => unreachable!("touched_keys panics first"),
            Act::ReportCorruptState => {
                return Err(CorruptState {
                    key: own,
                    detail: "garbled".to_owned(),
                });
            }
        };
        Ok(DomainOutcome {
            verdict,
            writes,
            body: br#"{"ok":1}"#.to_vec(),
        })
    }
}

fn arbiter(workers: usize) -> Arbiter<Misbehaving> {
    Arbiter::new(
        Misbehaving,
        ArbiterConfig {
            max_evaluation_workers: workers,
            parallel_evaluation_min_commands: 0,
            ..ArbiterConfig::default()
        },
    )
}

fn command(key: u8, act: Act) -> SlotSpec<Misbehave> {
    SlotSpec::Fresh(Misbehave { key, act })
}

fn evaluate(
    workers: usize,
    records: Vec<Vec<SlotSpec<Misbehave>>>,
) -> Result<EvaluatedBatch, ArbiterHalt> {
    let records = records
        .into_iter()
        .zip(0..)
        .map(|(slots, offset)| record(offset, slots))
        .collect();
    arbiter(workers).evaluate_batch(
        CONTEXT,
        &BatchInput {
            partition: PARTITION,
            records,
        },
        &Store::default(),
    )
}

/// covers: arbiter.MalformedDomainOutcomeHaltsInstance, arbiter.DomainRejectionWritesNothing, arbiter.DomainDeclaresEveryKey, arbiter.StagedWritesOnlyFromAcceptedCommands, arbiter.StagedWritesWithinTouchedKeys
#[test]
fn each_contract_breach_halts_with_its_failure_at_its_command() {
    let cases = [
        (
            Act::RejectWithWrites,
            DomainFailure::RejectionWithWrites {
                reason: "no",
                writes: 1,
            },
        ),
        (
            Act::WriteUndeclared,
            DomainFailure::WriteOutsideTouchedKeys { key: undeclared() },
        ),
        (
            Act::ReadUndeclared,
            DomainFailure::ReadOutsideTouchedKeys { key: undeclared() },
        ),
        (
            Act::ReportCorruptState,
            DomainFailure::CorruptState(CorruptState {
                key: key(1),
                detail: "garbled".to_owned(),
            }),
        ),
    ];
    for (act, failure) in cases {
        for workers in [1, 2] {
            let halt = evaluate(
                workers,
                vec![
                    vec![command(0, Act::Write)],
                    vec![command(2, Act::Write), command(1, act)],
                ],
            )
            .expect_err("a breach halts");
            assert_eq!(
                halt,
                ArbiterHalt {
                    position: position(1, 1),
                    failure: failure.clone()
                },
                "{act:?}"
            );
        }
    }
    assert!(
        evaluate(
            2,
            vec![vec![command(0, Act::Write), command(0, Act::Write)]]
        )
        .is_ok()
    );
}

/// covers: arbiter.DomainPanicHaltsInstance
#[test]
fn a_panic_in_evaluate_or_touched_keys_halts_instead_of_rejecting() {
    for workers in [1, 2, 3] {
        let halt = evaluate(
            workers,
            vec![
                vec![command(0, Act::Write), command(1, Act::Panic)],
                vec![command(2, Act::Write)],
            ],
        )
        .expect_err("a panic halts");
        assert_eq!(halt.position, position(0, 1));
        assert_eq!(
            halt.failure,
            DomainFailure::Panicked {
                message: "evaluate blew up".to_owned()
            }
        );

        let halt = evaluate(
            workers,
            vec![
                vec![command(0, Act::Write)],
                vec![command(1, Act::PanicInTouchedKeys)],
            ],
        )
        .expect_err("a panic halts");
        assert_eq!(halt.position, position(1, 0));
        assert_eq!(
            halt.failure,
            DomainFailure::Panicked {
                message: "touched_keys blew up".to_owned()
            }
        );
    }
}

fn act() -> impl Strategy<Value = Act> {
    prop_oneof![
        12 => Just(Act::Write),
        1 => Just(Act::RejectWithWrites),
        1 => Just(Act::WriteUndeclared),
        1 => Just(Act::ReadUndeclared),
        1 => Just(Act::Panic),
        1 => Just(Act::PanicInTouchedKeys),
        1 => Just(Act::ReportCorruptState),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Whatever the grouping and the worker count, the halt is the one
    /// sequential evaluation meets first; a clean batch is sealed whole.
    ///
    /// covers: arbiter.MalformedDomainOutcomeHaltsInstance, arbiter.DomainPanicHaltsInstance, arbiter.ParallelEqualsSequential
    #[test]
    fn the_halt_names_the_first_failing_command_in_log_order(
        records in proptest::collection::vec(
            proptest::collection::vec((0u8..6, act()).prop_map(|(key, act)| command(key, act)), 0..6),
            1..8,
        ),
        workers in 1usize..4,
    ) {
        let first_failure = records
            .iter()
            .zip(0i64..)
            .flat_map(|(slots, offset)| slots.iter().zip(0u32..).map(move |(slot, index)| (offset, index, slot)))
            .find_map(|(offset, index, slot)| match slot {
                SlotSpec::Fresh(Misbehave { act, .. }) if *act != Act::Write => Some(position(offset, index)),
                _ => None,
            });
        let sequential = evaluate(1, records.clone());
        let parallel = evaluate(workers, records);
        match first_failure {
            Some(at) => prop_assert_eq!(sequential.clone().expect_err("halts").position, at),
            None => prop_assert!(sequential.is_ok()),
        }
        prop_assert_eq!(parallel, sequential);
    }
}
