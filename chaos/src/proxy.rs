//! A fault-injecting TCP proxy per directed federation link: node `i`
//! dials peer `j` at the proxy of `(i, j)`, which forwards to `j`'s peer
//! listener. Cutting a link severs its open connections and refuses new
//! ones until it is healed; the nodes see what a real partition shows
//! them (resets, failed dials) and redial with their own backoff.
//!
//! The proxies listen on 127.0.0.1 ephemeral ports and run on the caller's
//! tokio runtime; dropping the [`ProxyMesh`] closes everything.

use std::collections::BTreeMap;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::Serialize;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinHandle;

use crate::history::InstanceId;

/// Connections one link carries at once; a node holds one outbound link
/// per peer, so more means dials piling up, which are refused.
const MAX_CONNECTIONS_PER_LINK: usize = 8;

/// What the proxies saw, summed over links.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ProxyCounters {
    /// Connections forwarded.
    pub forwarded: u64,
    /// Connections closed at once because their link was cut.
    pub refused: u64,
    /// Open connections severed by a cut.
    pub severed: u64,
    /// Connections whose upstream (the peer) could not be reached.
    pub upstream_failures: u64,
}

#[derive(Debug, Default)]
struct LinkCounters {
    forwarded: AtomicU64,
    refused: AtomicU64,
    severed: AtomicU64,
    upstream_failures: AtomicU64,
}

impl LinkCounters {
    fn add(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// One directed link: its listener's task and whether it is cut.
#[derive(Debug)]
struct Link {
    listen: SocketAddr,
    cut: watch::Sender<bool>,
    accept: JoinHandle<()>,
}

/// Every directed link between `instances` nodes.
#[derive(Debug)]
pub struct ProxyMesh {
    links: BTreeMap<(InstanceId, InstanceId), Link>,
    counters: Arc<LinkCounters>,
}

impl ProxyMesh {
    /// Listens for every ordered pair `(from, to)`, forwarding to
    /// `upstream(to)`. Must be called inside a tokio runtime.
    pub async fn start(
        instances: u32,
        upstream: impl Fn(InstanceId) -> SocketAddr,
    ) -> io::Result<ProxyMesh> {
        let counters = Arc::new(LinkCounters::default());
        let mut links = BTreeMap::new();
        for from in 0..instances {
            for to in (0..instances).filter(|&to| to != from) {
                let listener = TcpListener::bind("127.0.0.1:0").await?;
                let listen = listener.local_addr()?;
                let (cut, watch) = watch::channel(false);
                let accept = tokio::spawn(accept_loop(
                    listener,
                    upstream(to),
                    watch,
                    Arc::clone(&counters),
                ));
                links.insert(
                    (from, to),
                    Link {
                        listen,
                        cut,
                        accept,
                    },
                );
            }
        }
        Ok(ProxyMesh { links, counters })
    }

    /// The address node `from` must dial for peer `to`.
    pub fn routes(&self) -> BTreeMap<(InstanceId, InstanceId), SocketAddr> {
        self.links
            .iter()
            .map(|(&pair, link)| (pair, link.listen))
            .collect()
    }

    /// Cuts (`cut = true`) or heals every link, both directions, between
    /// `side` and the instances not in it.
    pub fn set_partition(&self, side: &[InstanceId], cut: bool) {
        for (&(from, to), link) in &self.links {
            if side.contains(&from) != side.contains(&to) {
                // Only the mesh holds receivers' sender; send_replace never fails.
                link.cut.send_replace(cut);
            }
        }
    }

    pub fn counters(&self) -> ProxyCounters {
        let c = &self.counters;
        ProxyCounters {
            forwarded: c.forwarded.load(Ordering::Relaxed),
            refused: c.refused.load(Ordering::Relaxed),
            severed: c.severed.load(Ordering::Relaxed),
            upstream_failures: c.upstream_failures.load(Ordering::Relaxed),
        }
    }
}

impl Drop for ProxyMesh {
    fn drop(&mut self) {
        for link in self.links.values() {
            link.cut.send_replace(true);
            link.accept.abort();
        }
    }
}

async fn accept_loop(
    listener: TcpListener,
    upstream: SocketAddr,
    cut: watch::Receiver<bool>,
    counters: Arc<LinkCounters>,
) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS_PER_LINK));
    loop {
        let inbound = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(error) => {
                // Out of descriptors or similar: the dialer sees a failed
                // connect and retries; so does this loop.
                tracing::warn!(%error, "proxy accept failed");
                continue;
            }
        };
        let slot = match Arc::clone(&slots).try_acquire_owned() {
            Ok(slot) if !*cut.borrow() => slot,
            // Cut, or too many connections: closed at once, as a dead peer.
            _ => {
                LinkCounters::add(&counters.refused);
                continue;
            }
        };
        let mut cut = cut.clone();
        let counters = Arc::clone(&counters);
        tokio::spawn(async move {
            let _slot = slot;
            let Ok(outbound) = TcpStream::connect(upstream).await else {
                LinkCounters::add(&counters.upstream_failures);
                return;
            };
            LinkCounters::add(&counters.forwarded);
            tokio::select! {
                // Either side closing ends the connection; how is the
                // endpoints' business.
                _ = forward(inbound, outbound) => {}
                _ = cut.wait_for(|&cut| cut) => LinkCounters::add(&counters.severed),
            }
        });
    }
}

async fn forward(mut inbound: TcpStream, mut outbound: TcpStream) -> io::Result<(u64, u64)> {
    inbound.set_nodelay(true)?;
    outbound.set_nodelay(true)?;
    tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    use super::*;

    /// An echo server standing in for every peer listener.
    async fn echo() -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("address");
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let mut buffer = [0u8; 64];
                    while let Ok(read) = stream.read(&mut buffer).await {
                        if read == 0 || stream.write_all(&buffer[..read]).await.is_err() {
                            break;
                        }
                    }
                });
            }
        });
        addr
    }

    async fn round_trip(addr: SocketAddr) -> io::Result<Vec<u8>> {
        let mut stream = TcpStream::connect(addr).await?;
        stream.write_all(b"ping").await?;
        let mut answer = vec![0u8; 4];
        tokio::time::timeout(Duration::from_secs(5), stream.read_exact(&mut answer))
            .await
            .map_err(|_| io::Error::from(io::ErrorKind::TimedOut))??;
        Ok(answer)
    }

    #[tokio::test]
    async fn links_forward_until_cut_and_again_once_healed() {
        let upstream = echo().await;
        let mesh = ProxyMesh::start(3, |_| upstream).await.expect("the mesh");
        let routes = mesh.routes();
        assert_eq!(routes.len(), 6);
        assert_eq!(
            round_trip(routes[&(0, 1)]).await.expect("forwarded"),
            b"ping"
        );

        // An open connection across the cut is severed.
        let mut open = TcpStream::connect(routes[&(1, 0)]).await.expect("connect");
        open.write_all(b"ping").await.expect("write");
        let mut answer = [0u8; 4];
        open.read_exact(&mut answer).await.expect("echoed");
        mesh.set_partition(&[0], true);
        let mut rest = Vec::new();
        let closed = tokio::time::timeout(Duration::from_secs(5), open.read_to_end(&mut rest))
            .await
            .expect("the severed connection closes");
        assert!(closed.is_ok_and(|read| read == 0) || rest.is_empty());

        // Across the cut nothing gets through; elsewhere everything does.
        assert!(round_trip(routes[&(0, 2)]).await.is_err());
        assert!(round_trip(routes[&(2, 0)]).await.is_err());
        assert_eq!(round_trip(routes[&(1, 2)]).await.expect("uncut"), b"ping");
        let counters = mesh.counters();
        assert_eq!(counters.severed, 1, "{counters:?}");
        assert!(counters.refused >= 2, "{counters:?}");

        mesh.set_partition(&[0], false);
        assert_eq!(round_trip(routes[&(0, 2)]).await.expect("healed"), b"ping");
    }
}
