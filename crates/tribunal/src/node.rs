//! One Tribunal instance as an OS process: the cores' actix shells, wired.
//!
//! ```text
//! input topic ─▶ UsherActor ─▶ ProcessingActor (Warden, Registrar, Arbiter,
//!   Ledger cores; one synced group commit per batch) ─▶ PublisherActor +
//!   ClerkActor (copies ⇄ peers) ─▶ publish orders ─▶ outcome topic
//!   ─▶ OutcomeReader ─▶ ClerkActor (settles) ─▶ UsherActor (backpressure)
//! gateway (HTTP) ─▶ input topic;  outcome topic ─▶ gateway ─▶ client
//! ```

mod args;
mod outcome_reader;
mod processing;
mod publisher;
mod startup;
mod status;
mod view;
mod wiring;

use std::process::ExitCode;

pub use args::{BrokerKindArg, NodeArgs, Topology};

/// Exit codes of a node process.
pub mod exit {
    /// Bad arguments or environment.
    pub const CONFIGURATION: u8 = 2;
    /// The broker or the Ledger could not be reached or trusted.
    pub const COULD_NOT_START: u8 = 3;
    /// The instance halted (recovery found the log truncated or rewound,
    /// storage failed, or its own output diverged).
    pub const HALTED: u8 = 4;
}

/// Logs to stderr; `RUST_LOG` filters (default `info`).
pub fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // A second init (tests, cluster + node in one process) keeps the first.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

/// Resolves on Ctrl-C or SIGTERM.
pub async fn stop_signal() {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(error) => {
                tracing::warn!(%error, "cannot listen for SIGTERM; only Ctrl-C stops");
                std::future::pending::<()>().await;
            }
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = terminate => {}
    }
}

/// Runs one instance until SIGTERM/Ctrl-C or a halt.
pub fn run(args: NodeArgs) -> ExitCode {
    init_tracing();
    let started = match startup::start(&args) {
        Ok(started) => started,
        Err(failure) => {
            tracing::error!(instance = args.id, "{failure}");
            return ExitCode::from(failure.exit_code());
        }
    };
    wiring::run_system(args, started)
}
