use std::collections::BTreeMap;

use proptest::prelude::*;

use super::*;
use crate::inventory::{Inventory, receive, ship, stock_key, transfer};
use crate::{Domain, DomainOutcome, EntityKey, EntityStates, EvaluationContext, Verdict};

fn at(partition: u32, offset: i64) -> CommandPosition {
    CommandPosition {
        partition,
        offset,
        index: 0,
    }
}

fn level(warehouse: &str, sku: &str, quantity: i64) -> LevelRow {
    (warehouse.into(), sku.into(), quantity)
}

/// The report holds `expected`, and it names its invariant when displayed.
fn assert_reports(report: &AuditReport, expected: &AuditViolation) {
    assert!(
        report.violations.contains(expected),
        "{expected:?} missing from {report}"
    );
    let invariant = expected.invariant();
    assert!(expected.to_string().starts_with(invariant));
    assert!(report.to_string().contains(invariant));
}

/// A single-partition audit holding one accepted receive of 5 at offset 0.
fn audit_with_receive_of_five() -> Audit {
    let mut audit = Audit::new(1);
    audit.record_outcome(at(0, 0), &receive("w1", "apple", 5), true);
    audit
}

#[test]
fn consistent_history_gives_a_clean_report() {
    let mut audit = audit_with_receive_of_five();
    audit.record_outcome(at(0, 1), &transfer("w1", "w2", "apple", 2), true);
    audit.record_outcome(at(0, 2), &ship("w2", "apple", 9), false);
    audit.record_outcome(at(0, 3), &ship("w2", "apple", 1), true);
    let report = audit.check_levels([level("w1", "apple", 3), level("w2", "apple", 1)]);
    assert!(report.is_clean(), "{report}");
    assert_eq!(report.to_string(), "audit clean");
}

/// covers: inventory.EachAcceptedCommandAppliedOnce
#[test]
fn a_position_accepted_twice_is_a_double_apply() {
    let mut audit = audit_with_receive_of_five();
    audit.record_outcome(at(0, 0), &receive("w1", "apple", 5), true);
    let report = audit.check_levels([level("w1", "apple", 10)]);
    assert_eq!(
        report.violations,
        vec![AuditViolation::AppliedTwice { position: at(0, 0) }]
    );
    assert_reports(&report, &report.violations[0]);
}

/// A command applied twice by the pipeline while its outcome was agreed once
/// (say, replay starting before the watermark that covers it).
///
/// covers: inventory.ExactlyOnceApplication
#[test]
fn a_double_apply_behind_one_outcome_breaks_conservation() {
    let report = audit_with_receive_of_five().check_levels([level("w1", "apple", 10)]);
    assert_reports(
        &report,
        &AuditViolation::StockNotConserved {
            sku: "apple".into(),
            level_sum: 10,
            ledger: SkuLedger {
                received: 5,
                shipped: 0,
            },
        },
    );
    assert_reports(
        &report,
        &AuditViolation::LevelDiffersFromReplay {
            warehouse: "w1".into(),
            sku: "apple".into(),
            replayed: Some(5),
            actual: Some(10),
        },
    );
}

/// covers: inventory.NoNegativeStock
#[test]
fn a_negative_level_is_reported() {
    let mut audit = audit_with_receive_of_five();
    audit.record_outcome(at(0, 1), &ship("w1", "apple", 8), true);
    let report = audit.check_levels([level("w1", "apple", -3)]);
    assert_eq!(
        report.violations,
        vec![AuditViolation::NegativeLevel {
            warehouse: "w1".into(),
            sku: "apple".into(),
            quantity: -3,
        }]
    );
    assert_reports(&report, &report.violations[0]);
}

/// covers: inventory.LevelWithinMaximum
#[test]
fn a_level_above_the_maximum_is_reported() {
    let limits = InventoryLimits {
        max_quantity: 10,
        max_stock_level: 4,
    };
    let audit = audit_with_receive_of_five().with_limits(limits);
    let report = audit.check_levels([level("w1", "apple", 5)]);
    assert_eq!(
        report.violations,
        vec![AuditViolation::LevelAboveMaximum {
            warehouse: "w1".into(),
            sku: "apple".into(),
            quantity: 5,
            max_stock_level: 4,
        }]
    );
    assert_reports(&report, &report.violations[0]);
}

/// covers: inventory.StockConservedPerSku
#[test]
fn levels_that_do_not_sum_to_the_totals_are_reported() {
    let mut audit = audit_with_receive_of_five();
    audit.record_outcome(at(0, 1), &transfer("w1", "w2", "apple", 2), true);
    // 3 + 1 = 4, but 5 were received and none shipped.
    let report = audit.check_levels([level("w1", "apple", 3), level("w2", "apple", 1)]);
    assert_reports(
        &report,
        &AuditViolation::StockNotConserved {
            sku: "apple".into(),
            level_sum: 4,
            ledger: SkuLedger {
                received: 5,
                shipped: 0,
            },
        },
    );
}

/// covers: inventory.LevelsEqualReplay
#[test]
fn a_conserved_but_misplaced_level_differs_from_the_replay() {
    let mut audit = audit_with_receive_of_five();
    audit.record_outcome(at(0, 1), &transfer("w1", "w2", "apple", 2), true);
    // The sum is right (5), the split is not.
    let report = audit.check_levels([level("w1", "apple", 4), level("w2", "apple", 1)]);
    assert_eq!(report.violations.len(), 2, "{report}");
    assert_reports(
        &report,
        &AuditViolation::LevelDiffersFromReplay {
            warehouse: "w2".into(),
            sku: "apple".into(),
            replayed: Some(2),
            actual: Some(1),
        },
    );
    // A written level is never deleted, so a missing row differs too.
    let report = audit.check_levels([level("w1", "apple", 5)]);
    assert_reports(
        &report,
        &AuditViolation::LevelDiffersFromReplay {
            warehouse: "w2".into(),
            sku: "apple".into(),
            replayed: Some(2),
            actual: None,
        },
    );
}

/// covers: inventory.NoCommandCrossesPartitions
#[test]
fn an_accepted_command_on_a_partition_not_owning_its_sku_is_reported() {
    let owner = partition_for_sku("apple", 2);
    let elsewhere = 1 - owner;
    let mut audit = Audit::new(2);
    audit.record_outcome(at(elsewhere, 0), &receive("w1", "apple", 5), true);
    // A rejected misrouted command is what the domain must answer.
    audit.record_outcome(at(elsewhere, 1), &receive("w1", "apple", 5), false);
    let report = audit.check_levels([level("w1", "apple", 5)]);
    assert_eq!(
        report.violations,
        vec![AuditViolation::MisroutedCommandApplied {
            position: at(elsewhere, 0),
            sku: "apple".into(),
            owner,
        }]
    );
    assert_reports(&report, &report.violations[0]);
}

/// covers: inventory.RejectedCommandsChangeNothing
#[test]
fn a_rejected_command_whose_effect_is_in_the_levels_is_named() {
    let mut audit = audit_with_receive_of_five();
    audit.record_outcome(at(0, 1), &transfer("w1", "w2", "apple", 3), false);
    audit.record_outcome(at(0, 2), &receive("w1", "apple", 4), false);
    let report = audit.check_levels([level("w1", "apple", 2), level("w2", "apple", 3)]);
    assert_reports(
        &report,
        &AuditViolation::RejectedEffectInLevels {
            position: at(0, 1),
            sku: "apple".into(),
        },
    );
    let named: Vec<_> = report
        .violations
        .iter()
        .filter(|v| matches!(v, AuditViolation::RejectedEffectInLevels { .. }))
        .collect();
    assert_eq!(named.len(), 1, "only the transfer explains the levels");
}

/// covers: inventory.RejectedCommandsChangeNothing
#[test]
fn a_position_both_accepted_and_rejected_is_reported_in_either_order() {
    let mut audit = audit_with_receive_of_five();
    audit.record_outcome(at(0, 0), &receive("w1", "apple", 5), false);
    audit.record_outcome(at(0, 1), &ship("w1", "apple", 9), false);
    audit.record_outcome(at(0, 1), &ship("w1", "apple", 9), true);
    let report = audit.check_levels([level("w1", "apple", 5)]);
    assert_reports(
        &report,
        &AuditViolation::RejectedCommandApplied { position: at(0, 0) },
    );
    assert_reports(
        &report,
        &AuditViolation::RejectedCommandApplied { position: at(0, 1) },
    );
}

/// covers: inventory.OneLevelPerWarehouseAndSku
#[test]
fn duplicate_rows_for_one_level_are_reported() {
    let report = audit_with_receive_of_five()
        .check_levels([level("w1", "apple", 2), level("w1", "apple", 3)]);
    assert_eq!(
        report.violations,
        vec![AuditViolation::DuplicateLevel {
            warehouse: "w1".into(),
            sku: "apple".into(),
            rows: 2,
        }]
    );
    assert_reports(&report, &report.violations[0]);
}

/// covers: inventory.EveryLevelHasTotals
#[test]
fn a_level_of_a_sku_without_accepted_commands_is_reported() {
    let report = audit_with_receive_of_five()
        .check_levels([level("w1", "apple", 5), level("w1", "pear", 0)]);
    assert_reports(
        &report,
        &AuditViolation::LevelWithoutTotals {
            warehouse: "w1".into(),
            sku: "pear".into(),
        },
    );
}

/// covers: inventory.AppliedQuantitiesNonNegative, inventory.LedgerCountersNonNegative
#[test]
fn an_accepted_negative_quantity_is_reported_on_the_command_and_the_ledger() {
    let mut audit = Audit::new(1);
    audit.record_outcome(at(0, 0), &ship("w1", "apple", -4), true);
    let report = audit.check_levels([level("w1", "apple", 4)]);
    assert_eq!(
        report.violations,
        vec![
            AuditViolation::NegativeAppliedQuantity {
                position: at(0, 0),
                quantity: -4,
            },
            AuditViolation::NegativeLedgerCounter {
                sku: "apple".into(),
                ledger: SkuLedger {
                    received: 0,
                    shipped: -4,
                },
            },
        ],
        "the level itself is what the command did: {report}"
    );
    for violation in &report.violations {
        assert_reports(&report, violation);
    }
}

/// covers: inventory.AcceptedCommandsAreApplied, inventory.TotalsMatchAppliedCommands
#[test]
fn accepted_commands_are_applied_and_totals_are_their_sums() {
    let mut audit = audit_with_receive_of_five();
    audit.record_outcome(at(0, 1), &ship("w1", "apple", 2), true);
    audit.record_outcome(at(0, 2), &ship("w1", "apple", 7), false);
    audit.record_outcome(at(0, 3), &transfer("w1", "w2", "apple", 1), true);
    audit.record_outcome(at(0, 4), &receive("w1", "pear", 8), true);
    let applied = audit.applied_commands();
    let positions: Vec<_> = applied.iter().map(|a| a.position.offset).collect();
    assert_eq!(
        positions,
        [0, 1, 3, 4],
        "every accepted command, no rejected one"
    );
    assert_eq!(
        applied[2],
        AppliedCommand {
            position: at(0, 3),
            sku: "apple".into(),
            received: 0,
            shipped: 0,
        }
    );
    let ledgers = audit.ledgers();
    for (sku, ledger) in &ledgers {
        let of_sku = applied.iter().filter(|a| &a.sku == sku);
        assert_eq!(ledger.received, of_sku.clone().map(|a| a.received).sum());
        assert_eq!(ledger.shipped, of_sku.map(|a| a.shipped).sum());
    }
    assert_eq!(
        ledgers["apple"],
        SkuLedger {
            received: 5,
            shipped: 2,
        }
    );
    assert_eq!(ledgers.len(), 2);
}

#[test]
fn extreme_input_is_reported_without_panicking() {
    let mut audit = Audit::new(3);
    for offset in 0..3 {
        audit.record_outcome(at(0, offset), &receive("w", "s", i64::MAX), true);
        audit.record_outcome(at(0, offset), &ship("w", "s", i64::MIN), true);
    }
    let report = audit.check_levels([level("w", "s", i64::MIN), level("w", "s", i64::MAX)]);
    assert!(!report.is_clean());
    assert!(report.to_string().contains("inventory.NoNegativeStock"));
}

/// An in-memory entity store that applies accepted writes.
#[derive(Default)]
struct Store(BTreeMap<EntityKey, Vec<u8>>);

impl EntityStates for Store {
    fn state(&self, key: &EntityKey) -> Option<&[u8]> {
        self.0.get(key).map(Vec::as_slice)
    }
}

impl Store {
    fn apply(&mut self, outcome: &DomainOutcome) {
        for write in &outcome.writes {
            self.0.insert(write.key.clone(), write.state.clone());
        }
    }
}

const PARTITIONS: u32 = 2;
const WAREHOUSES: [&str; 3] = ["w1", "w2", "w3"];
const SKUS: [&str; 3] = ["apple", "pear", "plum"];

/// A command, and whether it is sent to a partition that does not own its sku.
fn routed_command_strategy() -> impl Strategy<Value = (InventoryCommand, bool)> {
    let warehouse = proptest::sample::select(&WAREHOUSES[..]);
    let sku = proptest::sample::select(&SKUS[..]);
    let quantity = prop_oneof![-2i64..=0, 1i64..=40, Just(2_000_000i64)];
    let misrouted = proptest::bool::weighted(0.1);
    (
        0..3u8,
        warehouse.clone(),
        warehouse,
        sku,
        quantity,
        misrouted,
    )
        .prop_map(|(kind, a, b, sku, q, misrouted)| {
            let command = match kind {
                0 => receive(a, sku, q),
                1 => ship(a, sku, q),
                _ => transfer(a, b, sku, q),
            };
            (command, misrouted)
        })
}

proptest! {
    /// covers: inventory.LevelsEqualReplay, inventory.ExactlyOnceApplication
    #[test]
    fn evaluated_histories_give_a_clean_report(
        commands in proptest::collection::vec(routed_command_strategy(), 0..200)
    ) {
        let inventory = Inventory::default();
        let mut store = Store::default();
        let mut audit = Audit::new(PARTITIONS);
        let mut next_offset = [0i64; PARTITIONS as usize];
        for (command, misrouted) in &commands {
            let owner = partition_for_sku(command.sku(), PARTITIONS);
            let partition = if *misrouted { (owner + 1) % PARTITIONS } else { owner };
            let offset = &mut next_offset[partition as usize];
            let position = at(partition, *offset);
            *offset += 1;
            let context = EvaluationContext { partition, partitions: PARTITIONS };
            let outcome = inventory.evaluate(context, command, &store).expect("canonical store");
            audit.record_outcome(position, command, outcome.verdict == Verdict::Accepted);
            store.apply(&outcome);
        }
        let mut levels = Vec::new();
        for warehouse in WAREHOUSES {
            for sku in SKUS {
                if let Some(state) = store.state(&stock_key(warehouse, sku)) {
                    let quantity = std::str::from_utf8(state).expect("ascii").parse().expect("decimal");
                    levels.push(level(warehouse, sku, quantity));
                }
            }
        }
        let report = audit.check_levels(levels.clone());
        prop_assert!(report.is_clean(), "{}", report);

        // The audit is not vacuous: moving one unit of any level is caught.
        if let Some(first) = levels.first_mut() {
            first.2 += 1;
            prop_assert!(!audit.check_levels(levels).is_clean());
        }
    }
}
