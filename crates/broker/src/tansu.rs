//! A tansu broker process for tests and local runs against a real
//! Kafka-protocol broker (memory storage, loopback only).

use std::io;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::{BrokerKind, BrokerProfile};

/// How long a fresh tansu may take to accept connections.
const STARTUP_DEADLINE: Duration = Duration::from_secs(20);
/// Pause between readiness probes: a refused connect returns at once.
const PROBE_INTERVAL: Duration = Duration::from_millis(20);

/// A running `tansu broker`, killed when dropped.
#[derive(Debug)]
pub struct TansuBroker {
    child: Child,
    address: SocketAddr,
}

impl TansuBroker {
    /// Starts tansu on a free loopback port and waits until it accepts
    /// connections. Fails with a clear error when `tansu` is not installed
    /// (`cargo install tansu --locked --features dynostore`).
    pub fn start() -> io::Result<Self> {
        let address = free_loopback_address()?;
        let url = format!("tcp://{address}");
        let child = Command::new("tansu")
            .args([
                "broker",
                "--listener-url",
                &url,
                "--advertised-listener-url",
                &url,
            ])
            .args(["--storage-engine", "memory://tansu/", "--silent"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|error| {
                io::Error::new(
                    error.kind(),
                    format!(
                        "cannot run tansu ({error}); install it with \
                         `cargo install tansu --locked --features dynostore`"
                    ),
                )
            })?;
        let mut broker = Self { child, address };
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
                return Err(io::Error::other(format!("tansu exited at start: {status}")));
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
