//! A tansu broker process for tests and local runs against a real
//! Kafka-protocol broker (loopback only), with its SQLite storage engine in a
//! directory of its own.
//!
//! Not its memory engine: tansu 0.6.0's memory engine (`dynostore` over an
//! in-memory object store) lists every stored batch of a partition on each
//! fetch that finds data, so a fetch costs O(log length) and a cluster at
//! 10,000 commands/s slows down minute by minute. The SQLite engine keeps
//! one row per record under the primary key (partition, offset): a fetch is
//! an index range scan, and a fetch from inside a multi-record batch works.

use std::io;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

use crate::{BrokerKind, BrokerProfile};

/// How long a fresh tansu may take to accept connections.
const STARTUP_DEADLINE: Duration = Duration::from_secs(20);
/// Pause between readiness probes: a refused connect returns at once.
const PROBE_INTERVAL: Duration = Duration::from_millis(20);

/// The install the README's test command performs; named in every start
/// error, so a test failing for want of tansu says how to get it.
const INSTALL_HINT: &str = "cargo install tansu --locked --version 0.6.0 --features libsql";

/// A running `tansu broker`, killed when dropped; its storage directory is
/// removed after it.
#[derive(Debug)]
pub struct TansuBroker {
    child: Child,
    address: SocketAddr,
    // Declared after `child`: dropped after the process is killed.
    _storage: TempDir,
}

impl TansuBroker {
    /// Starts tansu on a free loopback port, storing its log in a fresh
    /// temporary directory, and waits until it accepts connections. Fails
    /// with a clear error when `tansu` is not installed ([`INSTALL_HINT`]).
    pub fn start() -> io::Result<Self> {
        let storage = tempfile::Builder::new().prefix("tansu-").tempdir()?;
        let address = free_loopback_address()?;
        let url = format!("tcp://{address}");
        let child = Command::new("tansu")
            // tansu resolves a sqlite:// path against its working directory.
            .current_dir(storage.path())
            .args([
                "broker",
                "--listener-url",
                &url,
                "--advertised-listener-url",
                &url,
            ])
            .args(["--storage-engine", "sqlite://tansu.db", "--silent"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|error| {
                io::Error::new(
                    error.kind(),
                    format!("cannot run tansu ({error}); install it with `{INSTALL_HINT}`"),
                )
            })?;
        let mut broker = Self {
            child,
            address,
            _storage: storage,
        };
        broker.wait_until_accepting()?;
        Ok(broker)
    }

    pub fn profile(&self) -> BrokerProfile {
        BrokerProfile {
            bootstrap_servers: self.address.to_string(),
            kind: BrokerKind::External,
        }
    }

    fn wait_until_accepting(&mut self) -> io::Result<()> {
        let deadline = Instant::now() + STARTUP_DEADLINE;
        loop {
            if let Some(status) = self.child.try_wait()? {
                // Its SQLite engine is a build feature: a tansu installed
                // without it exits at once.
                return Err(io::Error::other(format!(
                    "tansu exited at start: {status} (install it with `{INSTALL_HINT}`)"
                )));
            }
            match TcpStream::connect_timeout(&self.address, Duration::from_millis(100)) {
                Ok(_) => return Ok(()),
                Err(error) if Instant::now() >= deadline => {
                    return Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        format!(
                            "tansu did not accept connections on {}: {error}",
                            self.address
                        ),
                    ));
                }
                Err(_) => std::thread::sleep(PROBE_INTERVAL),
            }
        }
    }
}

impl Drop for TansuBroker {
    fn drop(&mut self) {
        // Already exited is fine; there is nothing else to do on failure.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_loopback_address() -> io::Result<SocketAddr> {
    TcpListener::bind("127.0.0.1:0")?.local_addr()
}
