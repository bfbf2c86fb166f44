//! The actor's TCP: the accept loop, dials, and each link's reader and
//! writer task. Every task reports to the actor by message and holds no
//! Clerk state; the actor owns the tasks through [`LinkIo`] and dropping
//! one ends its tasks.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use actix::{Addr, Message};
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufWriter};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tracing::{Instrument, Span};

use crate::effect::LinkId;
use crate::shell::ClerkActor;

/// One read hands the core at most this much; the reader waits for the
/// actor to take each chunk before reading on, so a link holds at most one
/// chunk in the actor's mailbox.
const READ_CHUNK_BYTES: usize = 64 * 1024;

/// The writer gathers small frames (heartbeats, short copy batches) into
/// one write; larger frames go to the socket directly.
const WRITE_BUFFER_BYTES: usize = 64 * 1024;

/// After a failed accept (say, out of file descriptors) the loop waits this
/// long before the next, rather than spinning.
const ACCEPT_RETRY_DELAY: Duration = Duration::from_millis(100);

/// A task that ends when its guard is dropped.
#[derive(Debug)]
pub(crate) struct TaskGuard(JoinHandle<()>);

impl Drop for TaskGuard {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Bytes for a link's writer.
#[derive(Debug)]
pub(crate) struct Outgoing {
    bytes: Vec<u8>,
    /// A frame the core counts in the link's queue (reported written with
    /// `frame_flushed`); a handshake message is not counted.
    counted: bool,
}

impl Outgoing {
    pub(crate) fn handshake(bytes: Vec<u8>) -> Self {
        Self {
            bytes,
            counted: false,
        }
    }

    pub(crate) fn frame(bytes: Vec<u8>) -> Self {
        Self {
            bytes,
            counted: true,
        }
    }
}

/// One link's I/O. Dropping it drops the connection and every byte still
/// queued for it (`Effect::CloseLink`).
#[derive(Debug)]
pub(crate) enum LinkIo {
    /// A dial whose TCP connect has not finished.
    Connecting { _connect: TaskGuard },
    Open {
        queue: mpsc::Sender<Outgoing>,
        _reader: TaskGuard,
        _writer: TaskGuard,
    },
}

// ---------------------------------------------------------------------
// What the tasks report
// ---------------------------------------------------------------------

#[derive(Debug, Message)]
#[rtype(result = "()")]
pub(crate) struct InboundConnection {
    pub(crate) stream: TcpStream,
}

#[derive(Debug, Message)]
#[rtype(result = "()")]
pub(crate) struct Connected {
    pub(crate) link: LinkId,
    pub(crate) stream: TcpStream,
}

#[derive(Debug, Message)]
#[rtype(result = "()")]
pub(crate) struct ConnectFailed {
    pub(crate) link: LinkId,
    pub(crate) error: io::Error,
}

#[derive(Debug, Message)]
#[rtype(result = "()")]
pub(crate) struct BytesRead {
    pub(crate) link: LinkId,
    pub(crate) bytes: Vec<u8>,
}

/// A read or write failed, or the peer closed its end.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub(crate) struct LinkFailed {
    pub(crate) link: LinkId,
    pub(crate) error: io::Error,
}

/// This many counted frames of the link reached the socket.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub(crate) struct FramesWritten {
    pub(crate) link: LinkId,
    pub(crate) frames: usize,
}

// ---------------------------------------------------------------------
// Tasks
// ---------------------------------------------------------------------

/// Accepts peers' connections for as long as the guard lives. Each
/// connection waits for the actor to take it before the next accept.
pub(crate) fn accept_connections(
    listener: TcpListener,
    actor: Addr<ClerkActor>,
    span: &Span,
) -> TaskGuard {
    let accepting = async move {
        loop {
            match listener.accept().await {
                Ok((stream, _)) => {
                    if actor.send(InboundConnection { stream }).await.is_err() {
                        return;
                    }
                }
                Err(error) => {
                    tracing::warn!(%error, "accepting a peer connection failed");
                    tokio::time::sleep(ACCEPT_RETRY_DELAY).await;
                }
            }
        }
    };
    TaskGuard(actix::spawn(accepting.instrument(span.clone())))
}

/// Opens the TCP connection of an outbound link. No timeout of its own:
/// the core closes a link still connecting after `handshake_timeout`,
/// which drops this task.
///
/// spec: clerk.DialerConnects
pub(crate) fn dial(link: LinkId, address: SocketAddr, actor: Addr<ClerkActor>) -> LinkIo {
    let connect = actix::spawn(async move {
        match TcpStream::connect(address).await {
            Ok(stream) => actor.do_send(Connected { link, stream }),
            Err(error) => actor.do_send(ConnectFailed { link, error }),
        }
    });
    LinkIo::Connecting {
        _connect: TaskGuard(connect),
    }
}

/// Starts the reader and writer of a connected link. The writer's queue
/// holds `queue_frames` messages: the core never has more than
/// `max_peer_queue_frames` frames unwritten on a link, plus the one
/// handshake message, so a full queue is a bug.
pub(crate) fn open(
    link: LinkId,
    stream: TcpStream,
    queue_frames: usize,
    actor: Addr<ClerkActor>,
    span: &Span,
) -> LinkIo {
    // Frames are already batched; Nagle would only hold heartbeats back.
    if let Err(error) = stream.set_nodelay(true) {
        span.in_scope(|| tracing::debug!(link = link.0, %error, "TCP_NODELAY not set"));
    }
    let (read_half, write_half) = stream.into_split();
    let (queue, pending) = mpsc::channel(queue_frames);
    let reader = actix::spawn(read_bytes(link, read_half, actor.clone()));
    let writer = actix::spawn(write_frames(link, write_half, pending, queue_frames, actor));
    LinkIo::Open {
        queue,
        _reader: TaskGuard(reader),
        _writer: TaskGuard(writer),
    }
}

async fn read_bytes(link: LinkId, mut half: OwnedReadHalf, actor: Addr<ClerkActor>) {
    let mut buffer = vec![0; READ_CHUNK_BYTES];
    let error = loop {
        match half.read(&mut buffer).await {
            Ok(0) => break io::Error::from(io::ErrorKind::UnexpectedEof),
            Ok(read) => {
                let bytes = buffer[..read].to_vec();
                if actor.send(BytesRead { link, bytes }).await.is_err() {
                    return;
                }
            }
            Err(error) => break error,
        }
    };
    actor.do_send(LinkFailed { link, error });
}

/// Writes everything queued, flushes once, then reports the frames
/// written: a burst of frames costs one flush and one report.
///
/// spec: clerk.FrameWrittenToSocket
async fn write_frames(
    link: LinkId,
    half: OwnedWriteHalf,
    mut pending: mpsc::Receiver<Outgoing>,
    queue_frames: usize,
    actor: Addr<ClerkActor>,
) {
    let mut socket = BufWriter::with_capacity(WRITE_BUFFER_BYTES, half);
    let mut batch = Vec::with_capacity(queue_frames);
    while pending.recv_many(&mut batch, queue_frames).await > 0 {
        let frames = batch.iter().filter(|outgoing| outgoing.counted).count();
        let written = async {
            for outgoing in batch.drain(..) {
                socket.write_all(&outgoing.bytes).await?;
            }
            socket.flush().await
        };
        if let Err(error) = written.await {
            actor.do_send(LinkFailed { link, error });
            return;
        }
        if frames > 0 {
            actor.do_send(FramesWritten { link, frames });
        }
    }
}
