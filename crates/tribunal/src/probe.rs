//! Blocking HTTP requests to a node, for the cluster launcher and tests.
//! Each call runs its own current-thread runtime; called from inside an
//! async runtime, it runs on a scoped thread of its own (a runtime cannot
//! block inside another).

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

/// One request's deadline, connect included.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error("request to {addr}{path}: {message}")]
    Request {
        addr: SocketAddr,
        path: String,
        message: String,
    },
    #[error("request to {addr}{path} timed out")]
    Timeout { addr: SocketAddr, path: String },
}

/// A response: status and body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub body: Bytes,
}

impl Response {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// GET `path` on `addr`.
pub fn get(addr: SocketAddr, path: &str) -> Result<Response, ProbeError> {
    send(addr, "GET", path, None)
}

/// POST a JSON body to `path` on `addr`.
pub fn post_json(addr: SocketAddr, path: &str, body: &str) -> Result<Response, ProbeError> {
    send(addr, "POST", path, Some(body.to_owned()))
}

/// Whether the node at `addr` answers /health with status `ready`.
pub fn is_ready(addr: SocketAddr) -> bool {
    get(addr, "/health").is_ok_and(|response| {
        response.status == 200
            && serde_json::from_slice::<serde_json::Value>(&response.body)
                .is_ok_and(|health| health["status"] == "ready")
    })
}

fn send(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: Option<String>,
) -> Result<Response, ProbeError> {
    if tokio::runtime::Handle::try_current().is_ok() {
        return std::thread::scope(|scope| {
            scope
                .spawn(|| send_blocking(addr, method, path, body))
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
        });
    }
    send_blocking(addr, method, path, body)
}

fn send_blocking(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: Option<String>,
) -> Result<Response, ProbeError> {
    let failed = |message: String| ProbeError::Request {
        addr,
        path: path.to_owned(),
        message,
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|error| failed(error.to_string()))?;
    let mut request = Request::builder()
        .method(method)
        .uri(format!("http://{addr}{path}"));
    if body.is_some() {
        request = request.header("content-type", "application/json");
    }
    let request = request
        .body(Full::new(Bytes::from(body.unwrap_or_default())))
        .map_err(|error| failed(error.to_string()))?;
    runtime.block_on(async {
        let client = Client::builder(TokioExecutor::new()).build_http();
        let exchange = async {
            let response = client
                .request(request)
                .await
                .map_err(|error| failed(error.to_string()))?;
            let status = response.status().as_u16();
            let body = response
                .into_body()
                .collect()
                .await
                .map_err(|error| failed(error.to_string()))?
                .to_bytes();
            Ok(Response { status, body })
        };
        tokio::time::timeout(REQUEST_TIMEOUT, exchange)
            .await
            .map_err(|_| ProbeError::Timeout {
                addr,
                path: path.to_owned(),
            })?
    })
}
