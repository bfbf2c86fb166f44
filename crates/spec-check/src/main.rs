//! `spec-check`: the conformance gate. See the library docs for the marker
//! convention. Exit codes: 0 when nothing fails, 1 when anything fails, 2 for
//! usage or I/O errors.

use std::io::{ErrorKind, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Parser;
use spec_check::Config;

/// Check that every rule and invariant in the Allium spec has an
/// implementation site (`/// spec: <id>`) and a covering test
/// (`/// covers: <id>`).
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// Workspace root to scan for Rust files [default: the current directory
    /// if it contains spec/, else the workspace this binary was built from]
    #[arg(long)]
    root: Option<PathBuf>,
    /// Directory holding the .allium files and PENDING [default: <root>/spec]
    #[arg(long)]
    spec_dir: Option<PathBuf>,
    /// Print the report as JSON
    #[arg(long)]
    json: bool,
    /// List every spec warning, not only a count per file
    #[arg(long)]
    verbose: bool,
}

const USAGE_OR_IO_ERROR: u8 = 2;

fn main() -> ExitCode {
    let args = Args::parse();
    let root = args.root.unwrap_or_else(default_root);
    let report = Config::new(&root, args.spec_dir.as_deref()).and_then(|c| spec_check::run(&c));
    let report = match report {
        Ok(report) => report,
        Err(error) => {
            eprintln!("spec-check: {error}");
            return ExitCode::from(USAGE_OR_IO_ERROR);
        }
    };
    let rendered = if args.json {
        match serde_json::to_string_pretty(&report) {
            Ok(json) => json + "\n",
            Err(error) => {
                eprintln!("spec-check: cannot serialise the report: {error}");
                return ExitCode::from(USAGE_OR_IO_ERROR);
            }
        }
    } else {
        report.text(args.verbose).to_string()
    };
    // A closed pipe (`spec-check | head`) is the reader's choice, not an
    // error; anything else means the report was lost.
    if let Err(error) = std::io::stdout().lock().write_all(rendered.as_bytes())
        && error.kind() != ErrorKind::BrokenPipe
    {
        eprintln!("spec-check: cannot write the report: {error}");
        return ExitCode::from(USAGE_OR_IO_ERROR);
    }
    if report.passed() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// The nearest directory, from the current one upwards, that holds a
/// `spec/` directory: so `cargo run -p spec-check` works from anywhere in a
/// checkout. Not the directory the binary was compiled in: a build shared
/// between checkouts (one target directory for several clones, as CI does)
/// would check a checkout that may be gone.
fn default_root() -> PathBuf {
    let start = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("."));
    let found = start
        .ancestors()
        .find(|dir| dir.join("spec").is_dir())
        .map(Path::to_path_buf);
    found.unwrap_or(start)
}
