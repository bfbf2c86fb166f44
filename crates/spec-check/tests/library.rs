//! The library API against the fixture workspaces in `tests/fixtures/`.

use std::path::{Path, PathBuf};

use spec_check::spec::{IdKind, Severity};
use spec_check::{Config, Failure, FailureKind, Location, Report, Status};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

fn check(name: &str) -> Report {
    let config = Config::new(&fixture(name), None).expect("fixture root exists");
    spec_check::run(&config).expect("fixture is readable")
}

fn at(file: &str, line: usize) -> Location {
    Location {
        file: file.to_owned(),
        line,
    }
}

fn status(report: &Report, id: &str) -> Status {
    report
        .ids
        .iter()
        .find(|entry| entry.id == id)
        .unwrap_or_else(|| panic!("{id} is not in the report"))
        .status
}

fn failures(report: &Report, kind: FailureKind) -> Vec<&Failure> {
    report.failures.iter().filter(|f| f.kind == kind).collect()
}

fn failure_kinds(report: &Report) -> Vec<FailureKind> {
    report.failures.iter().map(|f| f.kind).collect()
}

#[test]
fn ok_fixture_passes_with_every_site_and_test_located() {
    let report = check("ok");
    assert!(report.passed(), "failures: {:#?}", report.failures);

    let ids: Vec<(&str, IdKind)> = report
        .ids
        .iter()
        .map(|entry| (entry.id.as_str(), entry.kind))
        .collect();
    assert_eq!(
        ids,
        [
            ("counter.AllCountersNonNegative", IdKind::Invariant),
            ("counter.Increment", IdKind::Rule),
            ("counter.NeverDecreases", IdKind::AnnotatedInvariant),
            ("counter.NonNegative", IdKind::EntityInvariant),
        ]
    );
    assert!(report.ids.iter().all(|entry| entry.status == Status::Ok));

    let increment = &report.ids[1];
    assert_eq!(increment.sites, [at("crates/counter/src/lib.rs", 11)]);
    assert_eq!(increment.tests, [at("crates/counter/src/lib.rs", 26)]);
    let non_negative = &report.ids[3];
    assert_eq!(non_negative.sites, [at("crates/counter/src/lib.rs", 5)]);
    assert_eq!(
        non_negative.tests,
        [at("crates/counter/tests/invariants.rs", 1)]
    );
    // `#[tokio::test]` counts as a test attribute.
    assert_eq!(
        report.ids[2].tests,
        [at("crates/counter/tests/invariants.rs", 5)]
    );

    assert_eq!(report.summary.ids, 4);
    assert_eq!(report.summary.ok, 4);
    assert_eq!(report.summary.errors, 0);
}

#[test]
fn skipped_directories_are_not_scanned() {
    // The ok fixture has stale markers under `target/` and under a nested
    // `fixtures/` directory; the run passing proves they were skipped.
    let report = check("ok");
    assert!(failures(&report, FailureKind::StaleMarker).is_empty());
    assert_eq!(report.summary.rust_files_scanned, 2);
}

#[test]
fn every_kind_of_test_context_counts() {
    let report = check("test_contexts");
    assert!(report.passed(), "failures: {:#?}", report.failures);
    let test_of = |id: &str| {
        report
            .ids
            .iter()
            .find(|entry| entry.id == id)
            .map(|entry| entry.tests.clone())
            .unwrap_or_default()
    };
    assert_eq!(
        test_of("ctx.ViaOutOfLineModule"),
        [at("crates/counter/src/tests.rs", 3)]
    );
    assert_eq!(
        test_of("ctx.ViaNestedOutOfLineModule"),
        [at("crates/counter/src/tests/helpers.rs", 1)]
    );
    assert_eq!(
        test_of("ctx.ViaInnerCfgTest"),
        [at("crates/counter/src/extra.rs", 3)]
    );
    assert_eq!(
        test_of("ctx.ViaCfgAll"),
        [at("crates/counter/src/lib.rs", 22)]
    );
    assert_eq!(
        test_of("ctx.ViaTestAttribute"),
        [at("crates/counter/src/lib.rs", 27)]
    );
    assert_eq!(
        test_of("ctx.ViaBenches"),
        [at("crates/counter/benches/speed.rs", 1)]
    );
    assert_eq!(
        test_of("ctx.ViaOracle"),
        [at("chaos/src/checker/history.rs", 1)]
    );
}

#[test]
fn inner_doc_comments_are_implementation_sites() {
    let report = check("test_contexts");
    let oracle = report
        .ids
        .iter()
        .find(|entry| entry.id == "ctx.ViaOracle")
        .expect("id is declared");
    assert_eq!(oracle.sites, [at("crates/counter/src/lib.rs", 16)]);
}

#[test]
fn covers_markers_inside_proptest_count() {
    let report = check("proptest_marker");
    assert!(report.passed(), "failures: {:#?}", report.failures);
    let tests: Vec<(&str, &[Location])> = report
        .ids
        .iter()
        .map(|entry| (entry.id.as_str(), entry.tests.as_slice()))
        .collect();
    assert_eq!(
        tests,
        [
            (
                "props.InsideCfgTestModule",
                &[at("crates/counter/src/lib.rs", 14)][..]
            ),
            (
                "props.InsideItemMacro",
                &[at("crates/counter/src/lib.rs", 23)][..]
            ),
            (
                "props.InsideTestsFile",
                &[at("crates/counter/tests/props.rs", 4)][..]
            ),
        ]
    );
}

#[test]
fn parse_error_fails_with_the_parser_diagnostic() {
    let report = check("parse_error");
    assert!(!report.passed());
    let errors = failures(&report, FailureKind::SpecError);
    assert_eq!(errors.len(), 2, "{errors:#?}");
    assert!(
        errors[0]
            .message
            .starts_with("spec/broken.allium:5:1: error: expected expression"),
        "{}",
        errors[0].message
    );
    assert_eq!(errors[0].location, at("spec/broken.allium", 5));
    assert_eq!(report.summary.errors, 2);
}

#[test]
fn missing_impl_fails() {
    let report = check("missing_impl");
    assert!(!report.passed());
    assert_eq!(status(&report, "orders.PlaceOrder"), Status::MissingImpl);
    assert_eq!(status(&report, "orders.PositiveQuantity"), Status::Ok);
    assert_eq!(failure_kinds(&report), [FailureKind::MissingImpl]);
    assert_eq!(report.summary.failing, 1);
    assert_eq!(report.summary.errors, 0);
}

#[test]
fn missing_test_fails() {
    let report = check("missing_test");
    assert!(!report.passed());
    assert_eq!(status(&report, "orders.PlaceOrder"), Status::MissingTest);
    assert_eq!(failure_kinds(&report), [FailureKind::MissingTest]);
}

#[test]
fn stale_markers_fail() {
    let report = check("stale_marker");
    let messages: Vec<&str> = failures(&report, FailureKind::StaleMarker)
        .iter()
        .map(|f| f.message.as_str())
        .collect();
    assert_eq!(
        messages,
        [
            "stale marker: orders.CancelOrder at crates/orders/src/lib.rs:4",
            "stale marker: orders.RefundOrder at crates/orders/tests/orders.rs:1",
        ]
    );
    // The valid id on the same marker line still counts.
    assert_eq!(status(&report, "orders.PlaceOrder"), Status::Ok);
    assert!(!report.passed());
}

#[test]
fn stale_pending_fails() {
    let report = check("stale_pending");
    assert_eq!(failure_kinds(&report), [FailureKind::StalePending]);
    assert_eq!(report.failures[0].location, at("spec/PENDING", 2));
    assert!(report.failures[0].message.contains("orders.ShipOrder"));
}

#[test]
fn pending_id_passes_and_is_reported_pending() {
    let report = check("pending");
    assert!(report.passed(), "failures: {:#?}", report.failures);
    let place = report
        .ids
        .iter()
        .find(|entry| entry.id == "orders.PlaceOrder")
        .expect("id is declared");
    assert_eq!(place.status, Status::Pending);
    assert_eq!(
        place.pending_reason.as_deref(),
        Some("waits for the order gateway")
    );
    assert_eq!(report.summary.pending, 1);
    assert_eq!(report.summary.ok, 1);
}

#[test]
fn pending_file_problems_fail() {
    let report = check("pending_problems");
    assert_eq!(
        failure_kinds(&report),
        [
            FailureKind::PendingWithoutReason,
            FailureKind::DuplicatePending,
            FailureKind::PendingImplemented,
        ]
    );
    assert_eq!(
        report.failures[2].message,
        "implemented, remove from PENDING: orders.PositiveQuantity at spec/PENDING:1"
    );
    // An id listed without a reason is still treated as pending, so the
    // only failure about it is the missing reason.
    assert_eq!(status(&report, "orders.PlaceOrder"), Status::Pending);
}

#[test]
fn covers_marker_outside_a_test_fails() {
    let report = check("covers_outside_test");
    let locations: Vec<&Location> = failures(&report, FailureKind::CoversOutsideTest)
        .iter()
        .map(|f| &f.location)
        .collect();
    // A plain fn, and a module under `cfg(any(test, ...))`.
    assert_eq!(
        locations,
        [
            &at("crates/orders/src/lib.rs", 4),
            &at("crates/orders/src/lib.rs", 10)
        ]
    );
    // Misplaced markers do not count as tests.
    assert_eq!(status(&report, "orders.PlaceOrder"), Status::MissingTest);
}

#[test]
fn implementation_marker_inside_a_test_fails() {
    let report = check("impl_inside_test");
    let misplaced = failures(&report, FailureKind::ImplInsideTest);
    assert_eq!(misplaced.len(), 1);
    assert_eq!(misplaced[0].location, at("crates/orders/src/lib.rs", 5));
    assert_eq!(status(&report, "orders.PlaceOrder"), Status::MissingImpl);
}

#[test]
fn duplicate_id_fails() {
    let report = check("duplicate_id");
    assert_eq!(failure_kinds(&report), [FailureKind::DuplicateId]);
    assert_eq!(
        report.failures[0].message,
        "duplicate id: stock.Positive declared at spec/stock.allium:6 and spec/stock.allium:14"
    );
}

#[test]
fn cross_module_use_resolves_without_errors() {
    let report = check("cross_module");
    assert!(report.passed(), "failures: {:#?}", report.failures);
    assert_eq!(status(&report, "ledger.BalanceNonNegative"), Status::Ok);
    assert_eq!(status(&report, "payments.Deposit"), Status::Ok);

    // Analysed alone, ledger.allium warns that `Account` is unused; with the
    // cross-module context, the reference from payments.allium counts.
    let ledger = std::fs::read_to_string(fixture("cross_module/spec/ledger.allium"))
        .expect("fixture is readable");
    let alone = allium_parser::analyze(&allium_parser::parse(&ledger).module, &ledger);
    assert!(
        alone.iter().any(|d| d
            .message
            .contains("Entity 'Account' is declared but not referenced")),
        "{alone:#?}"
    );
    assert!(
        report
            .diagnostics
            .iter()
            .all(|d| d.file != "spec/ledger.allium"),
        "{:#?}",
        report.diagnostics
    );
}

#[test]
fn cross_module_errors_are_reported() {
    // `default ledger/Account` sets a field Account lacks; only analysis
    // with the imported module's schema can see it.
    let report = check("cross_module_error");
    let errors = failures(&report, FailureKind::SpecError);
    assert_eq!(errors.len(), 1, "{:#?}", report.failures);
    assert_eq!(
        errors[0].message,
        "spec/setup.allium:5:36: error: Default sets field 'balanse' which is not declared on 'ledger/Account'."
    );
}

#[test]
fn warnings_do_not_fail() {
    let report = check("missing_test");
    assert!(
        report
            .diagnostics
            .iter()
            .any(|d| d.severity == Severity::Warning)
    );
    assert_eq!(report.summary.warnings, 1);
    assert!(failures(&report, FailureKind::SpecError).is_empty());
}

#[test]
fn unparsable_rust_file_fails() {
    let report = check("unparsable_rust");
    let errors = failures(&report, FailureKind::UnparsableRust);
    assert_eq!(errors.len(), 1);
    assert_eq!(errors[0].location.file, "crates/orders/src/broken.rs");
    assert_eq!(status(&report, "orders.PlaceOrder"), Status::Ok);
}

#[test]
fn missing_spec_dir_is_an_error() {
    let root = fixture("ok");
    let config = Config::new(&root, Some(&root.join("no-such-spec"))).expect("root exists");
    assert!(matches!(
        spec_check::run(&config),
        Err(spec_check::Error::MissingSpecDir(_))
    ));
}

#[test]
fn text_report_has_table_pending_failures_and_summary() {
    let text = check("pending").text(false).to_string();
    assert!(text.contains("\nID "), "{text}");
    assert!(
        text.contains(
            "orders.PositiveQuantity  crates/orders/src/lib.rs:1  crates/orders/tests/orders.rs:1  ok"
        ),
        "{text}"
    );
    assert!(
        text.contains("pending:\n  orders.PlaceOrder  waits for the order gateway"),
        "{text}"
    );
    assert!(text.contains("spec/orders.allium: 1 warnings"), "{text}");
    assert!(!text.contains("warning:"), "{text}");
    assert!(
        text.ends_with("spec-check: 2 ids: 1 ok, 1 pending, 0 failing; 0 errors\n"),
        "{text}"
    );

    let verbose = check("pending").text(true).to_string();
    assert!(
        verbose.contains("  spec/orders.allium:3:8: warning: Entity 'Order'"),
        "{verbose}"
    );

    let failing = check("missing_impl").text(false).to_string();
    assert!(
        failing.contains("failures:\n  orders.PlaceOrder: no implementation site"),
        "{failing}"
    );
}
