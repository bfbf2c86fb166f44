use std::collections::BTreeMap;

use proptest::prelude::*;

use super::*;

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

    fn level(&self, warehouse: &str, sku: &str) -> i64 {
        read_level(self, &stock_key(warehouse, sku)).expect("store holds canonical levels")
    }
}

const SINGLE: EvaluationContext = EvaluationContext {
    partition: 0,
    partitions: 1,
};

fn run(store: &mut Store, command: &InventoryCommand) -> DomainOutcome {
    let outcome = Inventory::default()
        .evaluate(SINGLE, command, store)
        .expect("store holds canonical levels");
    store.apply(&outcome);
    outcome
}

fn body(outcome: &DomainOutcome) -> &str {
    std::str::from_utf8(&outcome.body).expect("bodies are UTF-8")
}

/// covers: inventory.ReceiveAddsStock, inventory.ResultBodyIsCanonicalJson
#[test]
fn receive_adds_stock_and_reports_the_new_level() {
    let mut store = Store::default();
    run(&mut store, &receive("w1", "apple", 5));
    let outcome = run(&mut store, &receive("w1", "apple", 7));
    assert_eq!(outcome.verdict, Verdict::Accepted);
    assert_eq!(store.level("w1", "apple"), 12);
    assert_eq!(
        body(&outcome),
        r#"{"type":"receive","warehouse":"w1","sku":"apple","quantity":7,"level":12}"#
    );
}

/// covers: inventory.ShipRemovesStock
#[test]
fn ship_removes_stock() {
    let mut store = Store::default();
    run(&mut store, &receive("w1", "apple", 10));
    let outcome = run(&mut store, &ship("w1", "apple", 4));
    assert_eq!(outcome.verdict, Verdict::Accepted);
    assert_eq!(store.level("w1", "apple"), 6);
    assert_eq!(
        body(&outcome),
        r#"{"type":"ship","warehouse":"w1","sku":"apple","quantity":4,"level":6}"#
    );
}

/// covers: inventory.RejectInsufficientStock, arbiter.DomainRejectionWritesNothing
#[test]
fn ship_beyond_the_level_is_rejected_and_reports_what_was_there() {
    let mut store = Store::default();
    run(&mut store, &receive("w1", "apple", 3));
    let outcome = run(&mut store, &ship("w1", "apple", 4));
    assert_eq!(
        outcome.verdict,
        Verdict::Rejected(rejection::INSUFFICIENT_STOCK)
    );
    assert!(outcome.writes.is_empty());
    assert_eq!(store.level("w1", "apple"), 3);
    assert!(body(&outcome).ends_with(r#""quantity":4,"level":3}"#));
}

/// covers: inventory.TransferMovesStock
#[test]
fn transfer_moves_stock_atomically() {
    let mut store = Store::default();
    run(&mut store, &receive("w1", "apple", 10));
    let outcome = run(&mut store, &transfer("w1", "w2", "apple", 6));
    assert_eq!(outcome.verdict, Verdict::Accepted);
    assert_eq!(
        (store.level("w1", "apple"), store.level("w2", "apple")),
        (4, 6)
    );
    assert_eq!(
        body(&outcome),
        r#"{"type":"transfer","from":"w1","to":"w2","sku":"apple","quantity":6,"from_level":4,"to_level":6}"#
    );

    let short = run(&mut store, &transfer("w1", "w2", "apple", 5));
    assert_eq!(
        short.verdict,
        Verdict::Rejected(rejection::INSUFFICIENT_STOCK)
    );
    assert_eq!(
        (store.level("w1", "apple"), store.level("w2", "apple")),
        (4, 6)
    );
}

/// covers: inventory.RejectTransferToSameWarehouse
#[test]
fn transfer_to_the_same_warehouse_is_rejected() {
    let mut store = Store::default();
    run(&mut store, &receive("w1", "apple", 10));
    let outcome = run(&mut store, &transfer("w1", "w1", "apple", 1));
    assert_eq!(
        outcome.verdict,
        Verdict::Rejected(rejection::SAME_WAREHOUSE)
    );
    assert_eq!(store.level("w1", "apple"), 10);
}

/// covers: inventory.RejectQuantityNotPositive, inventory.RejectQuantityAboveMax
#[test]
fn quantities_outside_the_range_are_rejected() {
    let mut store = Store::default();
    for quantity in [0, -1, i64::MIN] {
        for command in [
            receive("w", "s", quantity),
            ship("w", "s", quantity),
            transfer("a", "b", "s", quantity),
        ] {
            let outcome = run(&mut store, &command);
            assert_eq!(
                outcome.verdict,
                Verdict::Rejected(rejection::QUANTITY_NOT_POSITIVE)
            );
        }
    }
    let above = InventoryLimits::default().max_quantity + 1;
    let outcome = run(&mut store, &receive("w", "s", above));
    assert_eq!(
        outcome.verdict,
        Verdict::Rejected(rejection::QUANTITY_ABOVE_MAX)
    );
    assert!(store.0.is_empty(), "no rejected command creates a level");
}

/// covers: inventory.RejectStockOverflow, inventory.LevelWithinMaximum
#[test]
fn a_level_never_exceeds_the_maximum() {
    let limits = InventoryLimits {
        max_quantity: 10,
        max_stock_level: 15,
    };
    let inventory = Inventory::new(limits);
    let mut store = Store::default();
    let mut step = |command: &InventoryCommand| {
        let outcome = inventory
            .evaluate(SINGLE, command, &store)
            .expect("canonical");
        store.apply(&outcome);
        outcome.verdict
    };
    assert_eq!(step(&receive("w1", "s", 10)), Verdict::Accepted);
    assert_eq!(
        step(&receive("w1", "s", 6)),
        Verdict::Rejected(rejection::STOCK_OVERFLOW)
    );
    assert_eq!(step(&receive("w2", "s", 10)), Verdict::Accepted);
    assert_eq!(
        step(&transfer("w1", "w2", "s", 6)),
        Verdict::Rejected(rejection::STOCK_OVERFLOW)
    );
    assert_eq!(step(&transfer("w1", "w2", "s", 5)), Verdict::Accepted);
}

/// covers: inventory.RejectMisroutedCommand, inventory.RouteCommandBySku, inventory.RoutingUsesFnvHash
#[test]
fn a_command_on_a_partition_that_does_not_own_its_sku_is_rejected() {
    // FNV-1a 64 of the empty string is the offset basis itself.
    assert_eq!(
        partition_for_sku("", 7),
        (0xcbf2_9ce4_8422_2325_u64 % 7) as u32
    );
    // A known vector: FNV-1a 64("a") = 0xaf63dc4c8601ec8c.
    assert_eq!(
        partition_for_sku("a", 1000),
        (0xaf63_dc4c_8601_ec8c_u64 % 1000) as u32
    );

    let partitions = 4;
    let owner = partition_for_sku("apple", partitions);
    let elsewhere = (owner + 1) % partitions;
    let store = Store::default();
    let inventory = Inventory::default();
    let at = |partition| EvaluationContext {
        partition,
        partitions,
    };
    let command = receive("w1", "apple", 1);
    let misrouted = inventory
        .evaluate(at(elsewhere), &command, &store)
        .expect("canonical");
    assert_eq!(misrouted.verdict, Verdict::Rejected(rejection::MISROUTED));
    assert_eq!(
        body(&misrouted),
        r#"{"type":"receive","warehouse":"w1","sku":"apple","quantity":1}"#,
        "another partition's level is neither read nor reported"
    );
    // Even corrupt state of the other partition's entity is never read.
    let mut foreign = Store::default();
    foreign
        .0
        .insert(stock_key("w1", "apple"), b"garbage".to_vec());
    assert!(
        inventory
            .evaluate(at(elsewhere), &command, &foreign)
            .is_ok()
    );
    let routed = inventory
        .evaluate(at(owner), &command, &store)
        .expect("canonical");
    assert_eq!(routed.verdict, Verdict::Accepted);
}

/// covers: inventory.StockKeyIsInjective
#[test]
fn stock_keys_of_distinct_pairs_differ() {
    assert_ne!(stock_key("a:b", "c"), stock_key("a", "b:c"));
    assert_eq!(stock_key("w1", "apple").as_str(), "stock:2:w1:apple");
    assert_eq!(
        stock_key("warehouse-12", "s").as_str(),
        "stock:12:warehouse-12:s"
    );
}

/// covers: inventory.LevelStateIsDecimal
#[test]
fn stored_state_that_is_not_a_canonical_level_is_corruption() {
    let inventory = Inventory::default();
    for bad in [&b"-1"[..], b"007", b"1e3", b"\xff", b""] {
        let mut store = Store::default();
        store.0.insert(stock_key("w", "s"), bad.to_vec());
        let result = inventory.evaluate(SINGLE, &ship("w", "s", 1), &store);
        assert!(result.is_err(), "{bad:?} must be reported as corrupt state");
    }
}

/// covers: inventory.EvaluateInventoryCommandInCheckOrder
#[test]
fn the_first_failing_check_names_the_rejection() {
    let inventory = Inventory::default();
    let store = Store::default();
    // Misrouted beats a bad quantity; a bad quantity beats the same warehouse;
    // the same warehouse beats a shortage.
    let partitions = 2;
    let owner = partition_for_sku("s", partitions);
    let wrong = EvaluationContext {
        partition: 1 - owner,
        partitions,
    };
    let verdict = |context, command: &InventoryCommand| {
        inventory
            .evaluate(context, command, &store)
            .expect("canonical")
            .verdict
    };
    assert_eq!(
        verdict(wrong, &transfer("w", "w", "s", 0)),
        Verdict::Rejected(rejection::MISROUTED)
    );
    assert_eq!(
        verdict(SINGLE, &transfer("w", "w", "s", 0)),
        Verdict::Rejected(rejection::QUANTITY_NOT_POSITIVE)
    );
    assert_eq!(
        verdict(SINGLE, &transfer("w", "w", "s", 1)),
        Verdict::Rejected(rejection::SAME_WAREHOUSE)
    );
}

/// covers: inventory.TransferNamesDestination
#[test]
fn commands_round_trip_through_their_wire_encoding() {
    let inventory = Inventory::default();
    for command in [
        receive("w", "s", 1),
        ship("w", "s", -5),
        transfer("a", "b", "s", i64::MAX),
    ] {
        assert_eq!(inventory.decode_command(&command.encode()), Ok(command));
    }
    assert_eq!(
        inventory.decode_command(&[]).map_err(|e| e.reason),
        Err("unknown_command")
    );
    assert_eq!(
        inventory
            .decode_command(&[0xff, 0xff])
            .map_err(|e| e.reason),
        Err("undecodable_command")
    );
}

/// covers: arbiter.DomainIsPure
#[test]
fn evaluation_keeps_no_state_between_calls() {
    let inventory = Inventory::default();
    let mut store = Store::default();
    run(&mut store, &receive("w1", "apple", 5));
    let probe = ship("w1", "apple", 3);
    let first = inventory
        .evaluate(SINGLE, &probe, &store)
        .expect("canonical");
    for other in [
        receive("w2", "pear", 9),
        ship("w9", "apple", 1),
        transfer("w1", "w2", "apple", 100),
    ] {
        inventory
            .evaluate(SINGLE, &other, &store)
            .expect("canonical");
    }
    let second = inventory
        .evaluate(SINGLE, &probe, &store)
        .expect("canonical");
    assert_eq!(first, second, "earlier calls leave nothing behind");
}

#[test]
fn validation_refuses_bad_identifiers_and_quantities_before_the_log() {
    let inventory = Inventory::default();
    let reason = |command: InventoryCommand| inventory.validate(&command).err().map(|e| e.reason);
    assert_eq!(reason(receive("w", "s", 1)), None);
    assert_eq!(reason(receive("", "s", 1)), Some(rejection::INVALID_FIELD));
    assert_eq!(
        reason(transfer("a", &"x".repeat(129), "s", 1)),
        Some(rejection::INVALID_FIELD)
    );
    assert_eq!(
        reason(ship("w", "s", 0)),
        Some(rejection::QUANTITY_NOT_POSITIVE)
    );
    assert_eq!(
        reason(ship("w", "s", 1_000_001)),
        Some(rejection::QUANTITY_ABOVE_MAX)
    );
    // The same warehouse is the domain's rejection, not a validation error.
    assert_eq!(reason(transfer("w", "w", "s", 1)), None);
}

fn command_strategy() -> impl Strategy<Value = InventoryCommand> {
    let warehouse = prop_oneof![Just("w1"), Just("w2"), Just("w3")];
    let sku = prop_oneof![Just("apple"), Just("pear")];
    let quantity = prop_oneof![-2i64..=0, 1i64..=40, Just(2_000_000i64)];
    (0..3u8, warehouse.clone(), warehouse, sku, quantity).prop_map(
        |(kind, a, b, sku, q)| match kind {
            0 => receive(a, sku, q),
            1 => ship(a, sku, q),
            _ => transfer(a, b, sku, q),
        },
    )
}

proptest! {
    /// covers: inventory.NoNegativeStock, inventory.StockConservedPerSku, arbiter.DomainIsTotal, arbiter.DomainIsDeterministic, arbiter.DomainDeclaresEveryKey, arbiter.DomainRejectionWritesNothing
    #[test]
    fn any_command_sequence_keeps_stock_non_negative_and_conserved(
        commands in proptest::collection::vec(command_strategy(), 0..200)
    ) {
        let inventory = Inventory::default();
        let mut store = Store::default();
        let mut received: BTreeMap<String, i64> = BTreeMap::new();
        let mut shipped: BTreeMap<String, i64> = BTreeMap::new();
        for command in &commands {
            let outcome = inventory.evaluate(SINGLE, command, &store).expect("total");
            let again = inventory.evaluate(SINGLE, command, &store).expect("total");
            prop_assert_eq!(&outcome, &again, "evaluation is deterministic");
            let touched = inventory.touched_keys(command);
            for write in &outcome.writes {
                prop_assert!(touched.contains(&write.key), "writes stay within touched keys");
            }
            match outcome.verdict {
                Verdict::Rejected(_) => prop_assert!(outcome.writes.is_empty()),
                Verdict::Accepted => match command {
                    InventoryCommand::Receive { sku, quantity, .. } => {
                        *received.entry(sku.clone()).or_default() += quantity;
                    }
                    InventoryCommand::Ship { sku, quantity, .. } => {
                        *shipped.entry(sku.clone()).or_default() += quantity;
                    }
                    InventoryCommand::Transfer { .. } => {}
                },
            }
            store.apply(&outcome);
        }
        for sku in ["apple", "pear"] {
            let levels: Vec<i64> = ["w1", "w2", "w3"].iter().map(|w| store.level(w, sku)).collect();
            prop_assert!(levels.iter().all(|&level| level >= 0));
            let total: i64 = levels.iter().sum();
            let expected = received.get(sku).copied().unwrap_or(0) - shipped.get(sku).copied().unwrap_or(0);
            prop_assert_eq!(total, expected);
        }
    }
}
