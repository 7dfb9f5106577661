//! The upstream HTTP client: hyper's pooled client (keep-alive HTTP/1.1, h2 by ALPN, rustls
//! with the platform's certificate verifier for https) over URIs parsed once per backend.
//!
//! Deliberately thin: no redirects, no decompression, no per-request URL parsing or timer —
//! the forwarder owns deadlines (one per exchange) and retries. Each data-plane I/O thread
//! owns one client, so a pooled connection is only ever driven by the thread that uses it.

use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, Uri};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};

use crate::server::StartError;

/// How long an idle pooled connection is kept.
const POOL_IDLE: Duration = Duration::from_secs(90);
/// Idle connections kept per backend.
const POOL_MAX_IDLE_PER_HOST: usize = 1024;
/// TCP connect deadline.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// A request body: the rewritten JSON, in one piece.
pub type UpstreamBody = Full<Bytes>;

/// Why an upstream exchange failed before a response head arrived.
pub type SendError = hyper_util::client::legacy::Error;

/// A pooled HTTP/1.1 + h2 client (cheap to clone; clones share the pool).
#[derive(Clone, Debug)]
pub struct UpstreamClient {
    inner: Client<HttpsConnector<HttpConnector>, UpstreamBody>,
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
        let inner = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(POOL_IDLE)
            .pool_max_idle_per_host(POOL_MAX_IDLE_PER_HOST)
            .pool_timer(TokioTimer::new())
            .timer(TokioTimer::new())
            .build(https);
        Ok(Self { inner })
    }

    /// Sends `req`; resolves with the response head (the body streams from it).
    ///
    /// # Errors
    /// Connecting, writing the request or reading the head failed.
    pub async fn send(&self, req: Request<UpstreamBody>) -> Result<Response<Incoming>, SendError> {
        self.inner.request(req).await
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
    let mut s = if e.is_connect() {
        "connection failed".to_string()
    } else {
        "request failed".to_string()
    };
    let mut source = std::error::Error::source(e);
    while let Some(inner) = source {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        source = inner.source();
    }
    s
}

/// Up to `limit` bytes of a response body (callers bound the wait).
pub async fn read_prefix(mut body: Incoming, limit: usize) -> Bytes {
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
