//! A local cluster: a Kafka-protocol broker (the embedded one, in this
//! process, or an external one) and N node processes on 127.0.0.(i+1).
//!
//! The node processes are real OS processes of the calling binary (a hidden
//! `node` subcommand), so the chaos injector can SIGKILL, SIGSTOP and
//! restart them, and `cargo run -p loadtest` needs no other binary.

use std::collections::BTreeMap;
use std::fs::File;
use std::io;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use broker::{BrokerKind, BrokerProfile, EmbeddedBroker, Topics};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use rand::RngCore;

use crate::probe;

/// The environment variable carrying the cluster key (hex) to node processes:
/// not on the command line, where `ps` would show it.
pub const CLUSTER_KEY_ENV: &str = "TRIBUNAL_CLUSTER_KEY";

/// Allocator settings given to every node process whose starter's
/// environment does not set them itself. mimalloc returns an emptied page to
/// the OS 10 ms after it empties; an instance allocates and frees each
/// batch's buffers in bursts, about a hundred times a second, so it faulted
/// the same pages back in over and over (~3,000 minor faults/s per instance
/// at 10,000 requests/s). Never returning them leaves a node's resident size
/// at its peak, which its bounded queues, batches and caches bound; see
/// ARCHITECTURE.md for what it gained.
pub const NODE_ALLOCATOR_ENV: [(&str, &str); 1] = [("MIMALLOC_PURGE_DELAY", "-1")];

/// The first argument that makes a program which starts a [`LocalCluster`]
/// of itself (`tribunal`, `loadtest`, `chaos`) run as one of its nodes.
pub const NODE_SUBCOMMAND: &str = "node";

/// The node's arguments when this process was started as a node
/// (`<program> node --id ...`); `None` when it was not.
pub fn node_args_when_started_as_node() -> Option<crate::node::NodeArgs> {
    #[derive(clap::Parser)]
    struct NodeMode {
        #[command(flatten)]
        node: crate::node::NodeArgs,
    }
    if std::env::args().nth(1).as_deref() != Some(NODE_SUBCOMMAND) {
        return None;
    }
    let without_subcommand = std::env::args()
        .enumerate()
        .filter(|&(index, _)| index != 1)
        .map(|(_, arg)| arg);
    Some(<NodeMode as clap::Parser>::parse_from(without_subcommand).node)
}

/// How a node process is started: a program and the arguments that select
/// its node mode (`tribunal node`, `loadtest node`, ...).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeProgram {
    pub program: PathBuf,
    pub leading_args: Vec<String>,
}

impl NodeProgram {
    /// This executable, with `subcommand` selecting its node mode.
    pub fn this_executable(subcommand: &str) -> io::Result<NodeProgram> {
        Ok(NodeProgram {
            program: std::env::current_exe()?,
            leading_args: vec![subcommand.to_owned()],
        })
    }
}

#[derive(Clone, Debug)]
pub struct ClusterConfig {
    pub instances: u32,
    pub partitions: u32,
    pub required_copies: u32,
    /// An external broker; `None` starts the embedded broker in this
    /// process (it lives as long as the [`LocalCluster`]).
    pub brokers: Option<String>,
    /// Node i keeps its Ledger in `data_root/node-i` and logs to
    /// `data_root/node-i.log`.
    pub data_root: PathBuf,
    /// Every node's HTTP gateway listens on 127.0.0.(i+1):http_port.
    pub http_port: u16,
    /// Every node's peer listener is 127.0.0.(i+1):peer_port.
    pub peer_port: u16,
    pub node_program: NodeProgram,
    /// Extra flags for some instances (test-only fault flags).
    pub extra_args: BTreeMap<u32, Vec<String>>,
}

/// `(from, to)` -> the address node `from` dials for peer `to` instead of
/// `to`'s own peer listener: a fault-injecting proxy in between.
pub type PeerRoutes = BTreeMap<(u32, u32), SocketAddr>;

impl ClusterConfig {
    /// Four instances, three matching copies, one partition, embedded broker.
    pub fn new(node_program: NodeProgram, data_root: PathBuf) -> ClusterConfig {
        ClusterConfig {
            instances: 4,
            partitions: 1,
            required_copies: 3,
            brokers: None,
            data_root,
            http_port: 8080,
            peer_port: 7100,
            node_program,
            extra_args: BTreeMap::new(),
        }
    }

    /// Node `instance`'s HTTP gateway: 127.0.0.(i+1):http_port.
    pub fn http_addr(&self, instance: u32) -> SocketAddr {
        SocketAddr::V4(SocketAddrV4::new(host(instance), self.http_port))
    }

    /// Node `instance`'s peer listener: 127.0.0.(i+1):peer_port.
    pub fn peer_addr(&self, instance: u32) -> SocketAddr {
        SocketAddr::V4(SocketAddrV4::new(host(instance), self.peer_port))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error(transparent)]
    Broker(#[from] broker::BrokerError),
    #[error("starting node {instance}: {source}")]
    Spawn {
        instance: u32,
        #[source]
        source: io::Error,
    },
    #[error("preparing {path}: {source}")]
    Files {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("no such instance {0}")]
    NoSuchInstance(u32),
    #[error("signalling node {instance}: {source}")]
    Signal {
        instance: u32,
        #[source]
        source: nix::Error,
    },
    #[error("instances {waiting:?} not ready after {waited:?}")]
    NotReady { waiting: Vec<u32>, waited: Duration },
    #[error("node {instance} exited: {status}")]
    NodeExited { instance: u32, status: String },
    #[error("the cluster runs on an external broker, which it cannot take down")]
    ExternalBroker,
}

/// A running local cluster; dropping it kills every node.
#[derive(Debug)]
pub struct LocalCluster {
    config: ClusterConfig,
    /// Held so the embedded broker lives exactly as long as the cluster.
    _embedded_broker: Option<EmbeddedBroker>,
    profile: BrokerProfile,
    cluster_key: String,
    children: Vec<Option<Child>>,
    peer_routes: PeerRoutes,
}

impl LocalCluster {
    /// Starts the broker (unless external) and every node; returns once
    /// they are spawned (see [`LocalCluster::wait_ready`]).
    pub fn start(config: ClusterConfig) -> Result<LocalCluster, ClusterError> {
        LocalCluster::start_routed(config, PeerRoutes::new())
    }

    /// [`LocalCluster::start`], with the peer addresses of `routes` given
    /// to the nodes instead of the peers' own listeners.
    pub fn start_routed(
        config: ClusterConfig,
        peer_routes: PeerRoutes,
    ) -> Result<LocalCluster, ClusterError> {
        let topics = Topics::new(config.partitions);
        let (broker, profile) = match &config.brokers {
            Some(bootstrap_servers) => (
                None,
                BrokerProfile {
                    bootstrap_servers: bootstrap_servers.clone(),
                    kind: BrokerKind::External,
                },
            ),
            None => {
                let broker = EmbeddedBroker::start(&topics)?;
                let profile = broker.profile();
                (Some(broker), profile)
            }
        };
        std::fs::create_dir_all(&config.data_root).map_err(|source| ClusterError::Files {
            path: config.data_root.clone(),
            source,
        })?;
        let mut key = [0u8; 32];
        rand::rng().fill_bytes(&mut key);
        let mut cluster = LocalCluster {
            children: (0..config.instances).map(|_| None).collect(),
            config,
            _embedded_broker: broker,
            profile,
            cluster_key: hex(&key),
            peer_routes,
        };
        for instance in 0..cluster.config.instances {
            cluster.start_instance(instance)?;
        }
        Ok(cluster)
    }

    pub fn config(&self) -> &ClusterConfig {
        &self.config
    }

    pub fn bootstrap_servers(&self) -> &str {
        &self.profile.bootstrap_servers
    }

    pub fn broker_profile(&self) -> &BrokerProfile {
        &self.profile
    }

    pub fn http_addr(&self, instance: u32) -> SocketAddr {
        self.config.http_addr(instance)
    }

    pub fn peer_addr(&self, instance: u32) -> SocketAddr {
        self.config.peer_addr(instance)
    }

    /// The address node `from` dials to reach `to`: a configured route, or
    /// `to`'s own peer listener.
    pub fn dialled_peer_addr(&self, from: u32, to: u32) -> SocketAddr {
        self.peer_routes
            .get(&(from, to))
            .copied()
            .unwrap_or_else(|| self.peer_addr(to))
    }

    pub fn gateway_urls(&self) -> Vec<String> {
        (0..self.config.instances)
            .map(|instance| format!("http://{}", self.http_addr(instance)))
            .collect()
    }

    pub fn data_dir(&self, instance: u32) -> PathBuf {
        self.config.data_root.join(format!("node-{instance}"))
    }

    pub fn log_path(&self, instance: u32) -> PathBuf {
        self.config.data_root.join(format!("node-{instance}.log"))
    }

    /// The pid of a running node.
    pub fn pid(&self, instance: u32) -> Option<u32> {
        self.children
            .get(instance as usize)?
            .as_ref()
            .map(Child::id)
    }

    /// The command line of node `instance` (without the program).
    pub fn node_args(&self, instance: u32) -> Vec<String> {
        let peers: Vec<String> = (0..self.config.instances)
            .filter(|&peer| peer != instance)
            .map(|peer| format!("{peer}={}", self.dialled_peer_addr(instance, peer)))
            .collect();
        let broker_kind = match self.profile.kind {
            BrokerKind::Embedded => "embedded",
            BrokerKind::External => "external",
        };
        let mut args = self.config.node_program.leading_args.clone();
        args.extend([
            format!("--id={instance}"),
            format!("--instances={}", self.config.instances),
            format!("--partitions={}", self.config.partitions),
            format!("--required-copies={}", self.config.required_copies),
            format!("--brokers={}", self.profile.bootstrap_servers),
            format!("--broker-kind={broker_kind}"),
            format!("--data-dir={}", self.data_dir(instance).display()),
            format!("--http-listen={}", self.http_addr(instance)),
            format!("--peer-listen={}", self.peer_addr(instance)),
        ]);
        if !peers.is_empty() {
            args.push(format!("--peers={}", peers.join(",")));
        }
        if let Some(extra) = self.config.extra_args.get(&instance) {
            args.extend(extra.iter().cloned());
        }
        args
    }

    /// Replaces the extra flags of one instance (empty: none) for its next
    /// start; a running node keeps the flags it was started with.
    pub fn set_extra_args(&mut self, instance: u32, args: Vec<String>) -> Result<(), ClusterError> {
        if instance >= self.config.instances {
            return Err(ClusterError::NoSuchInstance(instance));
        }
        if args.is_empty() {
            self.config.extra_args.remove(&instance);
        } else {
            self.config.extra_args.insert(instance, args);
        }
        Ok(())
    }

    /// Starts (or restarts) one node; its log is appended to.
    pub fn start_instance(&mut self, instance: u32) -> Result<(), ClusterError> {
        if instance >= self.config.instances {
            return Err(ClusterError::NoSuchInstance(instance));
        }
        let log_path = self.log_path(instance);
        let log = File::options()
            .create(true)
            .append(true)
            .open(&log_path)
            .map_err(|source| ClusterError::Files {
                path: log_path.clone(),
                source,
            })?;
        let log_err = log.try_clone().map_err(|source| ClusterError::Files {
            path: log_path,
            source,
        })?;
        let mut command = Command::new(&self.config.node_program.program);
        for (name, value) in NODE_ALLOCATOR_ENV {
            if std::env::var_os(name).is_none() {
                command.env(name, value);
            }
        }
        let child = command
            .args(self.node_args(instance))
            .env(CLUSTER_KEY_ENV, &self.cluster_key)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err)
            .spawn()
            .map_err(|source| ClusterError::Spawn { instance, source })?;
        self.children[instance as usize] = Some(child);
        Ok(())
    }

    /// SIGKILL, and reap.
    pub fn kill(&mut self, instance: u32) -> Result<(), ClusterError> {
        let slot = self
            .children
            .get_mut(instance as usize)
            .ok_or(ClusterError::NoSuchInstance(instance))?;
        if let Some(mut child) = slot.take() {
            child
                .kill()
                .and_then(|()| child.wait().map(drop))
                .map_err(|source| ClusterError::Spawn { instance, source })?;
        }
        Ok(())
    }

    /// Takes the embedded broker down or brings it back up, log kept.
    pub fn set_broker_up(&self, up: bool) -> Result<(), ClusterError> {
        let broker = self
            ._embedded_broker
            .as_ref()
            .ok_or(ClusterError::ExternalBroker)?;
        broker.set_up(up);
        Ok(())
    }

    /// SIGSTOP (`pause = true`) or SIGCONT.
    pub fn pause(&self, instance: u32, pause: bool) -> Result<(), ClusterError> {
        let pid = self
            .pid(instance)
            .ok_or(ClusterError::NoSuchInstance(instance))?;
        let signal = if pause {
            Signal::SIGSTOP
        } else {
            Signal::SIGCONT
        };
        let pid = Pid::from_raw(i32::try_from(pid).expect("pids fit i32"));
        kill(pid, signal).map_err(|source| ClusterError::Signal { instance, source })
    }

    /// Deletes a stopped node's data directory (an operator wipe); the node
    /// started again rebuilds from offset 0 of the log.
    ///
    /// spec: recovery.OperatorWipeAndRejoin
    pub fn wipe(&self, instance: u32) -> Result<(), ClusterError> {
        let dir = self.data_dir(instance);
        match std::fs::remove_dir_all(&dir) {
            Ok(()) => Ok(()),
            Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(source) => Err(ClusterError::Files { path: dir, source }),
        }
    }

    /// Fails if a node that should run has exited.
    pub fn check_running(&mut self) -> Result<(), ClusterError> {
        for (instance, slot) in self.children.iter_mut().enumerate() {
            if let Some(child) = slot
                && let Ok(Some(status)) = child.try_wait()
            {
                *slot = None;
                return Err(ClusterError::NodeExited {
                    instance: u32::try_from(instance).expect("instance ids fit u32"),
                    status: status.to_string(),
                });
            }
        }
        Ok(())
    }

    /// Waits until every running node reports `ready` on /health.
    /// Blocking: from async code, call it on a blocking thread.
    pub fn wait_ready(&mut self, timeout: Duration) -> Result<(), ClusterError> {
        let running: Vec<u32> = (0..self.config.instances)
            .filter(|&instance| self.pid(instance).is_some())
            .collect();
        self.wait_ready_instances(&running, timeout)
    }

    /// Waits until the given nodes report `ready` on /health.
    pub fn wait_ready_instances(
        &mut self,
        instances: &[u32],
        timeout: Duration,
    ) -> Result<(), ClusterError> {
        let started = Instant::now();
        let mut waiting: Vec<u32> = instances.to_vec();
        while !waiting.is_empty() {
            self.check_running()?;
            let addrs: Vec<(u32, SocketAddr)> = waiting
                .iter()
                .map(|&instance| (instance, self.http_addr(instance)))
                .collect();
            waiting = addrs
                .into_iter()
                .filter(|(_, addr)| !probe::is_ready(*addr))
                .map(|(instance, _)| instance)
                .collect();
            if waiting.is_empty() {
                break;
            }
            if started.elapsed() > timeout {
                return Err(ClusterError::NotReady {
                    waiting,
                    waited: started.elapsed(),
                });
            }
            // Polling a remote condition: each probe is a real request.
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(())
    }

    /// SIGTERM to every node, SIGKILL to those still running after `grace`.
    pub fn stop(&mut self, grace: Duration) {
        for child in self.children.iter().flatten() {
            terminate(child);
        }
        let deadline = Instant::now() + grace;
        for slot in &mut self.children {
            if let Some(child) = slot.take() {
                reap_by(child, deadline);
            }
        }
    }

    /// SIGTERM to one node (a graceful stop), SIGKILL if it still runs
    /// after `grace`; reaped either way.
    pub fn terminate(&mut self, instance: u32, grace: Duration) -> Result<(), ClusterError> {
        let slot = self
            .children
            .get_mut(instance as usize)
            .ok_or(ClusterError::NoSuchInstance(instance))?;
        if let Some(child) = slot.take() {
            terminate(&child);
            reap_by(child, Instant::now() + grace);
        }
        Ok(())
    }
}

/// SIGCONT (a paused node cannot act on anything else) then SIGTERM.
fn terminate(child: &Child) {
    let pid = Pid::from_raw(i32::try_from(child.id()).expect("pids fit i32"));
    // Already gone is fine.
    let _ = kill(pid, Signal::SIGCONT);
    let _ = kill(pid, Signal::SIGTERM);
}

/// Waits for `child` to exit until `deadline`, then SIGKILLs and reaps it.
fn reap_by(mut child: Child, deadline: Instant) {
    loop {
        match child.try_wait() {
            Ok(Some(_)) => return,
            Ok(None) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(20));
            }
            Ok(None) | Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                return;
            }
        }
    }
}

impl Drop for LocalCluster {
    fn drop(&mut self) {
        for child in self.children.iter_mut().flatten() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn host(instance: u32) -> Ipv4Addr {
    let last = u8::try_from(instance + 1).expect("at most 254 instances on 127.0.0.x");
    Ipv4Addr::new(127, 0, 0, last)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}
