//! The `spec-check` binary: exit codes, text and `--json` output.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

fn spec_check(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_spec-check"))
        .args(args)
        .output()
        .expect("the binary runs")
}

fn run_fixture(name: &str, extra: &[&str]) -> Output {
    let root = fixture(name);
    let root = root.to_str().expect("fixture path is UTF-8");
    let mut args = vec!["--root", root];
    args.extend_from_slice(extra);
    spec_check(&args)
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn json(output: &Output) -> serde_json::Value {
    serde_json::from_slice(&output.stdout).expect("stdout is JSON")
}

#[test]
fn passing_fixture_exits_zero() {
    let output = run_fixture("ok", &[]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert!(
        stdout(&output).contains("spec-check: 4 ids: 4 ok, 0 pending, 0 failing; 0 errors"),
        "{}",
        stdout(&output)
    );
}

#[test]
fn pending_fixture_exits_zero() {
    let output = run_fixture("pending", &[]);
    assert_eq!(output.status.code(), Some(0), "{}", stdout(&output));
}

#[test]
fn failing_fixtures_exit_one() {
    for name in [
        "missing_impl",
        "missing_test",
        "stale_marker",
        "stale_pending",
        "pending_problems",
        "covers_outside_test",
        "impl_inside_test",
        "duplicate_id",
        "cross_module_error",
        "unparsable_rust",
    ] {
        let output = run_fixture(name, &[]);
        assert_eq!(output.status.code(), Some(1), "{name}: {}", stdout(&output));
    }
}

#[test]
fn spec_errors_are_printed_with_their_position() {
    let output = run_fixture("parse_error", &[]);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stdout(&output).contains("  spec/broken.allium:5:1: error: expected expression"),
        "{}",
        stdout(&output)
    );
}

#[test]
fn json_output_has_ids_diagnostics_failures_and_summary() {
    let output = run_fixture("stale_marker", &["--json"]);
    assert_eq!(output.status.code(), Some(1));
    let report = json(&output);

    let ids = report["ids"].as_array().expect("ids is an array");
    assert_eq!(ids.len(), 1);
    assert_eq!(ids[0]["id"], "orders.PlaceOrder");
    assert_eq!(ids[0]["kind"], "rule");
    assert_eq!(ids[0]["status"], "ok");
    assert_eq!(
        ids[0]["sites"],
        serde_json::json!([{ "file": "crates/orders/src/lib.rs", "line": 1 }])
    );
    assert_eq!(
        ids[0]["tests"],
        serde_json::json!([{ "file": "crates/orders/tests/orders.rs", "line": 1 }])
    );
    assert_eq!(
        ids[0]["declared_at"],
        serde_json::json!({ "file": "spec/orders.allium", "line": 3 })
    );

    assert!(report["diagnostics"].is_array());
    let failures = report["failures"].as_array().expect("failures is an array");
    assert_eq!(failures.len(), 2);
    assert_eq!(failures[0]["kind"], "stale_marker");
    assert_eq!(
        failures[0]["message"],
        "stale marker: orders.CancelOrder at crates/orders/src/lib.rs:4"
    );
    assert_eq!(failures[0]["location"]["line"], 4);

    let summary = &report["summary"];
    assert_eq!(summary["passed"], false);
    assert_eq!(summary["ids"], 1);
    assert_eq!(summary["ok"], 1);
    assert_eq!(summary["errors"], 2);
    assert_eq!(summary["failing"], 0);
}

#[test]
fn json_output_of_a_passing_run() {
    let output = run_fixture("pending", &["--json"]);
    assert_eq!(output.status.code(), Some(0));
    let report = json(&output);
    assert_eq!(report["summary"]["passed"], true);
    assert_eq!(report["summary"]["pending"], 1);
    let place = report["ids"]
        .as_array()
        .expect("ids is an array")
        .iter()
        .find(|id| id["id"] == "orders.PlaceOrder")
        .expect("id is reported");
    assert_eq!(place["status"], "pending");
    assert_eq!(place["pending_reason"], "waits for the order gateway");
    let diagnostic = &report["diagnostics"][0];
    assert_eq!(diagnostic["severity"], "warning");
    assert_eq!(diagnostic["file"], "spec/orders.allium");
    assert_eq!(diagnostic["code"], "allium.entity.unused");
}

#[test]
fn verbose_lists_warnings() {
    let quiet = stdout(&run_fixture("pending", &[]));
    let verbose = stdout(&run_fixture("pending", &["--verbose"]));
    assert!(quiet.contains("spec/orders.allium: 1 warnings"), "{quiet}");
    assert!(!quiet.contains(": warning: "), "{quiet}");
    assert!(
        verbose.contains("spec/orders.allium:3:8: warning: "),
        "{verbose}"
    );
}

#[test]
fn missing_spec_dir_exits_two() {
    let output = run_fixture("ok", &["--spec-dir", "/nonexistent/spec-check/spec"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(
        stderr(&output).contains("does not exist"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn missing_root_exits_two() {
    let output = spec_check(&["--root", "/nonexistent/spec-check-root"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(
        stderr(&output).contains("/nonexistent/spec-check-root"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn unknown_flag_exits_two() {
    let output = spec_check(&["--no-such-flag"]);
    assert_eq!(output.status.code(), Some(2));
}

#[test]
fn spec_dir_without_allium_files_exits_two() {
    let root = tempfile::tempdir().expect("temp dir");
    std::fs::create_dir(root.path().join("spec")).expect("create spec dir");
    let output = spec_check(&["--root", &root.path().to_string_lossy()]);
    assert_eq!(output.status.code(), Some(2));
    assert!(
        stderr(&output).contains("no .allium files"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn unreadable_rust_file_exits_two() {
    let root = tempfile::tempdir().expect("temp dir");
    let spec = root.path().join("spec");
    std::fs::create_dir(&spec).expect("create spec dir");
    std::fs::copy(
        fixture("ok/spec/counter.allium"),
        spec.join("counter.allium"),
    )
    .expect("copy spec");
    let src = root.path().join("crates/foo/src");
    std::fs::create_dir_all(&src).expect("create src dir");
    // Not UTF-8, so the file cannot be read as Rust source.
    std::fs::write(src.join("lib.rs"), [0xff, 0xfe, 0x00]).expect("write file");

    let output = spec_check(&["--root", &root.path().to_string_lossy()]);
    assert_eq!(output.status.code(), Some(2));
    assert!(stderr(&output).contains("lib.rs"), "{}", stderr(&output));
}

#[test]
fn default_root_is_the_workspace() {
    // Run from this crate's directory, which has no spec/, so the binary
    // looks upwards and finds the workspace's. The real spec may or may not
    // pass right now; it must be found and checked either way.
    let output = Command::new(env!("CARGO_BIN_EXE_spec-check"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("the binary runs");
    assert_ne!(output.status.code(), Some(2), "{}", stderr(&output));
    assert!(
        stdout(&output).contains("spec-check: "),
        "{}",
        stdout(&output)
    );
}
