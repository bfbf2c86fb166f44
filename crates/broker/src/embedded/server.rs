//! The broker's I/O: one thread running a single-threaded tokio runtime, a
//! loopback listener, one task per connection answering its requests in
//! order (as a Kafka broker does), and fetches that wait for data.

use std::cell::RefCell;
use std::io;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{
    ApiKey, FetchRequest, FetchResponse, RequestKind, ResponseHeader, ResponseKind,
};
use kafka_protocol::protocol::{Encodable, decode_request_header_from_buffer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, oneshot, watch};
use tokio::time::Instant;

use kafka_protocol::ResponseError;

use super::requests::{BrokerState, is_supported};

/// Kafka's own default for `socket.request.max.bytes`.
const MAX_REQUEST_BYTES: usize = 100 * 1024 * 1024;
/// A fetch never waits longer than this, whatever the client asks.
const MAX_FETCH_WAIT: Duration = Duration::from_secs(30);

/// The running broker thread and its controls.
#[derive(Debug)]
pub struct Server {
    address: SocketAddr,
    up: watch::Sender<bool>,
    shutdown: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Server {
    pub fn start(state: BrokerState, listener: std::net::TcpListener) -> io::Result<Self> {
        let address = listener.local_addr()?;
        listener.set_nonblocking(true)?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let (up, up_seen) = watch::channel(true);
        let (shutdown, shutdown_seen) = oneshot::channel();
        let thread = std::thread::Builder::new()
            .name("embedded-broker".to_owned())
            .spawn(move || {
                let local = tokio::task::LocalSet::new();
                local.block_on(&runtime, async move {
                    match TcpListener::from_std(listener) {
                        Ok(listener) => accept(listener, state, up_seen, shutdown_seen).await,
                        Err(error) => tracing::error!(%error, "embedded broker: listener unusable"),
                    }
                });
            })?;
        Ok(Self {
            address,
            up,
            shutdown: Some(shutdown),
            thread: Some(thread),
        })
    }

    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// Down: every connection is closed and new ones are closed at once;
    /// the logs stay. Up: connections are served again.
    pub fn set_up(&self, up: bool) {
        self.up.send_replace(up);
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            // The thread may have ended already (listener unusable).
            let _ = shutdown.send(());
        }
        if let Some(thread) = self.thread.take()
            && thread.join().is_err()
        {
            tracing::error!("embedded broker thread panicked");
        }
    }
}

async fn accept(
    listener: TcpListener,
    state: BrokerState,
    up: watch::Receiver<bool>,
    mut shutdown: oneshot::Receiver<()>,
) {
    let state = Rc::new(RefCell::new(state));
    let appended = Rc::new(Notify::new());
    loop {
        tokio::select! {
            _ = &mut shutdown => return,
            accepted = listener.accept() => match accepted {
                Err(error) => tracing::warn!(%error, "embedded broker: accept failed"),
                Ok((socket, _)) if *up.borrow() => {
                    if let Err(error) = socket.set_nodelay(true) {
                        tracing::warn!(%error, "embedded broker: cannot disable Nagle");
                    }
                    tokio::task::spawn_local(serve_while_up(socket, state.clone(), appended.clone(), up.clone()));
                }
                // Down: the connection is refused by closing it.
                Ok(_) => {}
            },
        }
    }
}

async fn serve_while_up(
    socket: TcpStream,
    state: Rc<RefCell<BrokerState>>,
    appended: Rc<Notify>,
    mut up: watch::Receiver<bool>,
) {
    tokio::select! {
        // Down wins over a request that arrived in the same wake-up.
        biased;
        _ = up.wait_for(|up| !*up) => {}
        served = serve(socket, &state, &appended) => {
            if let Err(error) = served {
                tracing::warn!(%error, "embedded broker: connection closed");
            }
        }
    }
}

async fn serve(
    mut socket: TcpStream,
    state: &RefCell<BrokerState>,
    appended: &Notify,
) -> io::Result<()> {
    loop {
        let length = match socket.read_u32().await {
            Ok(length) => length,
            Err(error) if error.kind() == io::ErrorKind::UnexpectedEof => return Ok(()),
            Err(error) => return Err(error),
        };
        let length = usize::try_from(length).unwrap_or(usize::MAX);
        if length == 0 || length > MAX_REQUEST_BYTES {
            return Err(invalid(format!("request of {length} bytes")));
        }
        let mut frame = vec![0; length];
        socket.read_exact(&mut frame).await?;
        if let Some(response) = answer(Bytes::from(frame), state, appended).await? {
            socket.write_all(&response).await?;
        }
    }
}

fn invalid(message: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message)
}

/// One request's response frame, `None` for a produce with `acks=0`. An
/// undecodable request or an unsupported version (other than ApiVersions,
/// which is answered so the client can pick another) closes the connection.
async fn answer(
    mut frame: Bytes,
    state: &RefCell<BrokerState>,
    appended: &Notify,
) -> io::Result<Option<BytesMut>> {
    let header = decode_request_header_from_buffer(&mut frame)
        .map_err(|error| invalid(error.to_string()))?;
    let api_key = ApiKey::try_from(header.request_api_key)
        .map_err(|()| invalid(format!("api key {}", header.request_api_key)))?;
    let version = header.request_api_version;
    if !is_supported(api_key, version) {
        if api_key == ApiKey::ApiVersions {
            let refusal = ResponseKind::ApiVersions(BrokerState::api_versions(
                ResponseError::UnsupportedVersion.code(),
            ));
            return encode(header.correlation_id, api_key, 0, &refusal).map(Some);
        }
        return Err(invalid(format!("{api_key:?} v{version} is not supported")));
    }
    let request = RequestKind::decode(api_key, &mut frame, version)
        .map_err(|error| invalid(error.to_string()))?;
    let response = match request {
        RequestKind::ApiVersions(_) => ResponseKind::ApiVersions(BrokerState::api_versions(0)),
        RequestKind::Metadata(request) => ResponseKind::Metadata(state.borrow().metadata(&request)),
        RequestKind::Produce(request) => {
            let response = state.borrow_mut().produce(&request);
            appended.notify_waiters();
            if request.acks == 0 {
                return Ok(None);
            }
            ResponseKind::Produce(response)
        }
        RequestKind::Fetch(request) => ResponseKind::Fetch(fetch(&request, state, appended).await),
        RequestKind::ListOffsets(request) => {
            ResponseKind::ListOffsets(state.borrow().list_offsets(&request))
        }
        RequestKind::CreateTopics(request) => {
            ResponseKind::CreateTopics(state.borrow_mut().create_topics(&request))
        }
        RequestKind::FindCoordinator(request) => {
            ResponseKind::FindCoordinator(state.borrow().find_coordinator(&request))
        }
        RequestKind::OffsetCommit(request) => {
            ResponseKind::OffsetCommit(state.borrow_mut().offset_commit(&request))
        }
        RequestKind::OffsetFetch(request) => {
            ResponseKind::OffsetFetch(state.borrow().offset_fetch(&request))
        }
        RequestKind::InitProducerId(_) => {
            ResponseKind::InitProducerId(state.borrow_mut().init_producer_id())
        }
        other => return Err(invalid(format!("no handler for {other:?}"))),
    };
    encode(header.correlation_id, api_key, version, &response).map(Some)
}

/// Answers as soon as the fetch finds data (or an error), else when an
/// append may have brought some, else at the client's `max_wait_ms`.
async fn fetch(
    request: &FetchRequest,
    state: &RefCell<BrokerState>,
    appended: &Notify,
) -> FetchResponse {
    let wait =
        Duration::from_millis(u64::try_from(request.max_wait_ms).unwrap_or(0)).min(MAX_FETCH_WAIT);
    let deadline = Instant::now() + wait;
    loop {
        let notified = appended.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        let found = state.borrow().fetch(request);
        if found.ready || Instant::now() >= deadline {
            return found.response;
        }
        tokio::select! {
            _ = notified => {}
            _ = tokio::time::sleep_until(deadline) => {}
        }
    }
}

fn encode(
    correlation_id: i32,
    api_key: ApiKey,
    version: i16,
    response: &ResponseKind,
) -> io::Result<BytesMut> {
    let mut frame = BytesMut::new();
    frame.put_u32(0);
    ResponseHeader::default()
        .with_correlation_id(correlation_id)
        .encode(&mut frame, api_key.response_header_version(version))
        .and_then(|()| response.encode(&mut frame, version))
        .map_err(|error| invalid(format!("encoding {api_key:?} v{version}: {error}")))?;
    let length =
        u32::try_from(frame.len() - 4).map_err(|_| invalid("response too large".to_owned()))?;
    frame[..4].copy_from_slice(&length.to_be_bytes());
    Ok(frame)
}

#[cfg(test)]
mod tests {
    use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
    use kafka_protocol::messages::{ApiVersionsRequest, ProduceRequest, RequestHeader};
    use kafka_protocol::protocol::Encodable;

    use super::super::log::tests::batch;
    use super::super::requests::tests::{produce, topic_name};
    use super::*;

    fn state() -> RefCell<BrokerState> {
        let mut state = BrokerState::new("127.0.0.1", 9092, 1 << 20);
        state.create_topic("t", 1).expect("created");
        RefCell::new(state)
    }

    fn frame(api_key: i16, version: i16, body: &impl Encodable) -> Bytes {
        let header = RequestHeader::default()
            .with_request_api_key(api_key)
            .with_request_api_version(version)
            .with_correlation_id(7);
        let mut out = BytesMut::new();
        let header_version =
            ApiKey::try_from(api_key).map_or(1, |key| key.request_header_version(version));
        header
            .encode(&mut out, header_version)
            .expect("header encodes");
        body.encode(&mut out, version).expect("body encodes");
        out.freeze()
    }

    #[tokio::test]
    async fn a_waiting_fetch_answers_when_a_produce_brings_data_not_at_its_deadline() {
        let state = state();
        let appended = Notify::new();
        let request = FetchRequest::default()
            .with_max_wait_ms(10_000)
            .with_min_bytes(1)
            .with_max_bytes(1 << 20)
            .with_topics(vec![
                FetchTopic::default()
                    .with_topic(topic_name("t"))
                    .with_partitions(vec![
                        FetchPartition::default()
                            .with_partition(0)
                            .with_fetch_offset(0)
                            .with_partition_max_bytes(1 << 20),
                    ]),
            ]);
        let fetching = fetch(&request, &state, &appended);
        tokio::pin!(fetching);
        assert!(
            tokio::time::timeout(Duration::from_millis(1), fetching.as_mut())
                .await
                .is_err(),
            "nothing to read yet: the fetch waits"
        );
        produce(&mut state.borrow_mut(), "t", 0, batch(1, -1, 0, -1));
        appended.notify_waiters();
        // The fetch's own deadline is 10 s away: only the wake-up answers
        // it within 5.
        let response = tokio::time::timeout(Duration::from_secs(5), fetching)
            .await
            .expect("woken by the produce");
        let records = response.responses[0].partitions[0]
            .records
            .as_ref()
            .expect("records");
        assert_eq!(records.len(), batch(1, -1, 0, -1).len());
    }

    #[tokio::test]
    async fn undecodable_or_unsupported_requests_close_the_connection_with_an_error() {
        let (state, appended) = (state(), Notify::new());
        let unknown_key = frame(9_999, 0, &ApiVersionsRequest::default());
        assert!(answer(unknown_key, &state, &appended).await.is_err());
        let fetch_v12 = frame(ApiKey::Fetch as i16, 12, &FetchRequest::default());
        let error = answer(fetch_v12, &state, &appended)
            .await
            .expect_err("unsupported version");
        assert!(error.to_string().contains("not supported"), "{error}");
        let truncated = frame(ApiKey::Produce as i16, 7, &ProduceRequest::default()).slice(..20);
        assert!(answer(truncated, &state, &appended).await.is_err());
    }

    #[tokio::test]
    async fn api_versions_at_an_unknown_version_is_answered_so_the_client_can_retry() {
        let (state, appended) = (state(), Notify::new());
        let request = frame(
            ApiKey::ApiVersions as i16,
            3,
            &ApiVersionsRequest::default(),
        );
        let mut newer = BytesMut::from(&request[..]);
        newer[2..4].copy_from_slice(&9_i16.to_be_bytes());
        let response = answer(newer.freeze(), &state, &appended)
            .await
            .expect("answered")
            .expect("a response");
        // length, correlation id, then the v0 body: error code first.
        assert_eq!(&response[4..8], &7_i32.to_be_bytes());
        assert_eq!(
            &response[8..10],
            &ResponseError::UnsupportedVersion.code().to_be_bytes()
        );
    }

    #[tokio::test]
    async fn a_produce_without_acks_gets_no_response_but_is_appended() {
        let (state, appended) = (state(), Notify::new());
        let request = ProduceRequest::default().with_acks(0).with_topic_data(vec![
            kafka_protocol::messages::produce_request::TopicProduceData::default()
                .with_name(topic_name("t"))
                .with_partition_data(vec![
                    kafka_protocol::messages::produce_request::PartitionProduceData::default()
                        .with_index(0)
                        .with_records(Some(batch(2, -1, 0, -1))),
                ]),
        ]);
        let response = answer(
            frame(ApiKey::Produce as i16, 7, &request),
            &state,
            &appended,
        )
        .await;
        assert!(matches!(response, Ok(None)));
        let latest = kafka_protocol::messages::ListOffsetsRequest::default().with_topics(vec![
            kafka_protocol::messages::list_offsets_request::ListOffsetsTopic::default()
                .with_name(topic_name("t"))
                .with_partitions(vec![
                    kafka_protocol::messages::list_offsets_request::ListOffsetsPartition::default()
                        .with_partition_index(0)
                        .with_timestamp(-1),
                ]),
        ]);
        let end = state.borrow().list_offsets(&latest);
        assert_eq!(
            end.topics[0].partitions[0].offset, 2,
            "both records appended"
        );
    }

    /// Sends an ApiVersions request and reads the answer: `None` when the
    /// broker closed the connection instead.
    fn ask_versions(stream: &mut std::net::TcpStream) -> Option<i32> {
        use std::io::{Read, Write};
        let request = frame(
            ApiKey::ApiVersions as i16,
            0,
            &ApiVersionsRequest::default(),
        );
        let length = u32::try_from(request.len()).expect("small");
        stream.write_all(&length.to_be_bytes()).ok()?;
        stream.write_all(&request).ok()?;
        let mut length = [0_u8; 4];
        stream.read_exact(&mut length).ok()?;
        let mut body = vec![0_u8; usize::try_from(u32::from_be_bytes(length)).expect("fits")];
        stream.read_exact(&mut body).ok()?;
        Some(i32::from_be_bytes(
            body[..4].try_into().expect("correlation id"),
        ))
    }

    #[test]
    fn down_closes_connections_and_refuses_new_ones_until_up_again() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bound");
        let server =
            Server::start(BrokerState::new("127.0.0.1", 0, 1 << 20), listener).expect("started");
        let connect = || std::net::TcpStream::connect(server.address()).expect("connected");
        let mut before = connect();
        assert_eq!(ask_versions(&mut before), Some(7), "served while up");
        server.set_up(false);
        assert_eq!(
            ask_versions(&mut before),
            None,
            "an open connection is closed"
        );
        assert_eq!(
            ask_versions(&mut connect()),
            None,
            "a new one is closed at once"
        );
        server.set_up(true);
        assert_eq!(
            ask_versions(&mut connect()),
            Some(7),
            "served again once up"
        );
    }

    #[test]
    fn a_frame_beyond_the_request_bound_closes_the_connection() {
        let state = BrokerState::new("127.0.0.1", 0, 1 << 20);
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bound");
        let server = Server::start(state, listener).expect("started");
        let mut oversized = std::net::TcpStream::connect(server.address()).expect("connected");
        use std::io::{Read, Write};
        let length = u32::try_from(MAX_REQUEST_BYTES + 1).expect("fits");
        oversized.write_all(&length.to_be_bytes()).expect("written");
        let mut buffer = [0_u8; 1];
        assert_eq!(
            oversized.read(&mut buffer).expect("closed, not reset"),
            0,
            "the broker closed it"
        );
    }
}
