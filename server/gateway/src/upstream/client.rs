//! The upstream HTTP client over URIs parsed once per backend: `http://` backends through our
//! own keep-alive HTTP/1.1 pool ([`super::plain`]), `https://` ones through hyper-util's pooled
//! client (h2 or HTTP/1.1 by ALPN, rustls with the platform's certificate verifier).
//!
//! Deliberately thin: no redirects, no decompression, no per-request URL parsing or timer —
//! the forwarder owns deadlines (one per exchange) and retries. Each data-plane I/O thread
//! owns one client, so a pooled connection is only ever driven by the thread that uses it.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::uri::Scheme;
use http::{Request, Response, Uri};
use http_body_util::{BodyExt, Full};
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};

use super::plain::{ExchangeError, PlainPool, ResponseBody, IDLE_TIMEOUT, MAX_IDLE_PER_HOST};
use crate::server::StartError;

/// TCP connect deadline.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// A request body: the rewritten JSON, in one piece.
pub type UpstreamBody = Bytes;

/// Why an upstream exchange failed before a response head arrived.
#[derive(Debug)]
pub enum SendError {
    /// No connection to an `http://` backend (resolving, connecting, the deadline).
    Connect(String),
    /// Writing the request or reading the response head failed on an `http://` backend.
    Exchange(ExchangeError),
    /// An `https://` exchange failed (connecting or on the connection).
    Tls(hyper_util::client::legacy::Error),
}

/// A pooled HTTP/1.1 + h2 client (cheap to clone; clones share the pools).
#[derive(Clone, Debug)]
pub struct UpstreamClient {
    plain: Arc<PlainPool>,
    tls: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
}

impl UpstreamClient {
    /// A client with its own connection pool.
    ///
    /// # Errors
    /// The TLS configuration (platform verifier) could not be set up.
    pub fn new() -> Result<Self, StartError> {
        let provider = rustls::crypto::ring::default_provider();
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_nodelay(true);
        http.set_connect_timeout(Some(CONNECT_TIMEOUT));
        let https = HttpsConnectorBuilder::new()
            .with_provider_and_platform_verifier(provider)
            .map_err(|e| StartError::Setup(format!("TLS for upstream connections: {e}")))?
            .https_or_http()
            .enable_all_versions()
            .wrap_connector(http);
        let tls = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(IDLE_TIMEOUT)
            .pool_max_idle_per_host(MAX_IDLE_PER_HOST)
            .pool_timer(TokioTimer::new())
            .timer(TokioTimer::new())
            .build(https);
        Ok(Self {
            plain: Arc::new(PlainPool::new(CONNECT_TIMEOUT, IDLE_TIMEOUT)),
            tls,
        })
    }

    /// Sends `req` (an absolute URI); resolves with the response head (the body streams from
    /// it).
    ///
    /// # Errors
    /// Connecting, writing the request or reading the head failed.
    pub async fn send(
        &self,
        req: Request<UpstreamBody>,
    ) -> Result<Response<ResponseBody>, SendError> {
        if req.uri().scheme() == Some(&Scheme::HTTP) {
            return self.plain.send(req).await;
        }
        match self.tls.request(req.map(Full::new)).await {
            Ok(resp) => Ok(resp.map(ResponseBody::tls)),
            Err(e) => Err(SendError::Tls(e)),
        }
    }

    /// `GET uri` within `timeout`; the status, or why there is none.
    pub async fn get_status(&self, uri: Uri, timeout: Duration) -> Result<u16, String> {
        let req = Request::get(uri)
            .body(UpstreamBody::default())
            .map_err(|e| e.to_string())?;
        let exchange = async {
            let resp = self.send(req).await.map_err(|e| describe(&e))?;
            let status = resp.status().as_u16();
            // Read the (small) body so the connection goes back to the pool.
            read_prefix(resp.into_body(), 64 * 1024).await;
            Ok(status)
        };
        tokio::time::timeout(timeout, exchange)
            .await
            .unwrap_or_else(|_| Err(format!("no answer within {timeout:?}")))
    }
}

/// A send error with its causes, e.g. `connection failed: tcp connect error: Connection
/// refused (os error 111)`.
pub fn describe(e: &SendError) -> String {
    let (mut s, mut source): (String, Option<&(dyn std::error::Error + 'static)>) = match e {
        SendError::Connect(cause) => return format!("connection failed: {cause}"),
        SendError::Exchange(e) => return format!("request failed: {e}"),
        SendError::Tls(e) if e.is_connect() => {
            ("connection failed".into(), std::error::Error::source(e))
        }
        SendError::Tls(e) => ("request failed".into(), std::error::Error::source(e)),
    };
    while let Some(inner) = source {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        source = inner.source();
    }
    s
}

/// Up to `limit` bytes of a response body (callers bound the wait).
pub async fn read_prefix(mut body: ResponseBody, limit: usize) -> Bytes {
    let mut out = Vec::new();
    while out.len() < limit {
        match body.frame().await {
            Some(Ok(frame)) => {
                if let Ok(data) = frame.into_data() {
                    out.extend_from_slice(&data[..data.len().min(limit - out.len())]);
                }
            }
            _ => break,
        }
    }
    Bytes::from(out)
}
