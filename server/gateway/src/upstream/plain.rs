//! Keep-alive HTTP/1.1 connections to `http://` backends, pooled per I/O thread.
//!
//! The common deployment (vLLM beside the router) speaks plain HTTP/1.1, and for it a
//! general-purpose pool costs more than the exchange it pools: hyper-util's keys every checkout
//! and return by `(scheme, authority)` with SipHash, byte by byte, builds the `Host` header
//! with `format!`, and returns each connection through a spawned task. Here a connection is
//! taken from a short list keyed by the authority (foldhash), and handed back by the response
//! body itself when the upstream body has been read to its end ([`ResponseBody`]). A body that
//! is dropped before its end (client gone, timeout, error) closes its connection: HTTP/1.1
//! cannot reuse a connection with an unread response on it.
//!
//! Owns: connecting (TCP, `TCP_NODELAY`, connect deadline), the HTTP/1.1 handshake, the idle
//! lists (LIFO, at most [`MAX_IDLE_PER_HOST`] per authority, idle for at most the idle timeout,
//! [`IDLE_TIMEOUT`] by default, swept by a timer so a backend that gets no more traffic keeps
//! no connections open)
//! and one retry on a fresh connection when a pooled one turned out to be closed before the
//! request was written to it (nothing reached the backend, so this is always safe).

use std::collections::{HashMap, VecDeque};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::uri::{Authority, PathAndQuery};
use http::{HeaderValue, Request, Response, Uri};
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use parking_lot::Mutex;
use tokio_util::task::TaskTracker;

use super::client::{SendError, UpstreamBody};

/// How long an idle connection is kept.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(90);
/// Idle connections kept per authority.
pub const MAX_IDLE_PER_HOST: usize = 1024;

type IdleLists = HashMap<Box<str>, VecDeque<Idle>, foldhash::fast::RandomState>;

/// The idle connections of one I/O thread (or of the health checker), by authority.
#[derive(Debug)]
pub struct PlainPool {
    idle: Mutex<IdleLists>,
    /// Connection drivers, on the runtime of the thread that opened them. Each ends when its
    /// connection closes: the backend closes it, a body is dropped before its end, or the
    /// pool with its idle senders is dropped at shutdown (dropping the runtime ends the rest).
    /// The sweeper runs here too, and ends with the pool.
    drivers: TaskTracker,
    connect_timeout: Duration,
    idle_timeout: Duration,
    /// The sweeper starts with the first connection (a runtime is running by then).
    sweeping: AtomicBool,
}

#[derive(Debug)]
struct Idle {
    sender: SendRequest<UpstreamBody>,
    since: Instant,
}

impl PlainPool {
    /// An empty pool whose connects give up after `connect_timeout` and whose connections
    /// are closed after `idle_timeout` unused.
    pub fn new(connect_timeout: Duration, idle_timeout: Duration) -> Self {
        Self {
            idle: Mutex::new(HashMap::default()),
            drivers: TaskTracker::new(),
            connect_timeout,
            idle_timeout,
            sweeping: AtomicBool::new(false),
        }
    }

    /// Drops every idle connection that is closed or past the idle timeout, and the lists
    /// left empty.
    fn sweep(&self) {
        let now = Instant::now();
        self.idle.lock().retain(|_, list| {
            list.retain(|c| !self.expired(c, now));
            !list.is_empty()
        });
    }

    fn expired(&self, c: &Idle, now: Instant) -> bool {
        c.sender.is_closed() || now.duration_since(c.since) > self.idle_timeout
    }

    /// Sends `req` (an absolute `http://` URI) on a pooled or new connection.
    pub async fn send(
        self: &Arc<Self>,
        mut req: Request<UpstreamBody>,
    ) -> Result<Response<ResponseBody>, SendError> {
        let Some(authority) = req.uri().authority().cloned() else {
            return Err(SendError::Connect(format!(
                "no host in the backend URL {}",
                req.uri()
            )));
        };
        prepare(&mut req, &authority)?;
        let (mut sender, mut reused) = match self.checkout(authority.as_str()) {
            Some(s) => (s, true),
            None => (self.connect(&authority).await?, false),
        };
        loop {
            match sender.try_send_request(req).await {
                Ok(resp) => {
                    let back = Return {
                        pool: Arc::clone(self),
                        authority,
                        sender,
                    };
                    return Ok(resp.map(|inner| ResponseBody::pooled(inner, back)));
                }
                Err(mut e) => match e.take_message() {
                    // The pooled connection was closed before the request was written to
                    // it (the backend's keep-alive timeout raced this request).
                    Some(unsent) if reused => {
                        tracing::debug!(backend = %authority, "pooled connection closed; reconnecting");
                        req = unsent;
                        sender = self.connect(&authority).await?;
                        reused = false;
                    }
                    _ => return Err(SendError::Exchange(e.into_error())),
                },
            }
        }
    }

    /// The most recently used idle connection to `authority` that is ready for a request.
    /// Closed and expired ones are dropped; open ones still finishing their last exchange
    /// stay for the next caller.
    fn checkout(&self, authority: &str) -> Option<SendRequest<UpstreamBody>> {
        let mut lists = self.idle.lock();
        let list = lists.get_mut(authority)?;
        let now = Instant::now();
        let mut busy = Vec::new();
        let found = loop {
            let Some(c) = list.pop_back() else { break None };
            if self.expired(&c, now) {
                continue;
            }
            if c.sender.is_ready() {
                break Some(c.sender);
            }
            busy.push(c);
        };
        list.extend(busy);
        found
    }

    /// Puts a connection whose response was read to its end back in the pool.
    fn put(&self, authority: &Authority, sender: SendRequest<UpstreamBody>) {
        if sender.is_closed() {
            return;
        }
        let now = Instant::now();
        let mut lists = self.idle.lock();
        let list = match lists.get_mut(authority.as_str()) {
            Some(list) => list,
            None => lists.entry(authority.as_str().into()).or_default(),
        };
        // The oldest are at the front: drop the ones past their idle time.
        while list.front().is_some_and(|c| self.expired(c, now)) {
            list.pop_front();
        }
        if list.len() < MAX_IDLE_PER_HOST {
            list.push_back(Idle { sender, since: now });
        }
    }

    /// Opens a connection to `authority` and starts its driver (and, the first time, the
    /// sweeper).
    async fn connect(
        self: &Arc<Self>,
        authority: &Authority,
    ) -> Result<SendRequest<UpstreamBody>, SendError> {
        if !self.sweeping.swap(true, Ordering::Relaxed) {
            self.drivers
                .spawn(sweeper(Arc::downgrade(self), self.idle_timeout / 2));
        }
        // `[::1]` in a URL, `::1` to the resolver.
        let host = authority
            .host()
            .trim_start_matches('[')
            .trim_end_matches(']');
        let port = authority.port_u16().unwrap_or(80);
        let stream = tokio::time::timeout(
            self.connect_timeout,
            tokio::net::TcpStream::connect((host, port)),
        )
        .await
        .map_err(|_| {
            SendError::Connect(format!(
                "tcp connect error: no connection within {:?}",
                self.connect_timeout
            ))
        })?
        .map_err(|e| SendError::Connect(format!("tcp connect error: {e}")))?;
        stream
            .set_nodelay(true)
            .map_err(|e| SendError::Connect(format!("setting TCP_NODELAY: {e}")))?;
        let (sender, conn) = http1::Builder::new()
            .handshake(TokioIo::new(stream))
            .await
            .map_err(SendError::Exchange)?;
        let backend = authority.clone();
        self.drivers.spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(%backend, error = %e, "upstream connection ended with an error");
            }
        });
        Ok(sender)
    }
}

/// Sweeps `pool` every `every` until the pool is gone.
async fn sweeper(pool: Weak<PlainPool>, every: Duration) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tick.tick().await;
        let Some(pool) = pool.upgrade() else { return };
        pool.sweep();
    }
}

/// Origin-form target and a `Host` header, as an HTTP/1.1 server expects them.
fn prepare(req: &mut Request<UpstreamBody>, authority: &Authority) -> Result<(), SendError> {
    if !req.headers().contains_key(http::header::HOST) {
        // Without user info; the default port left out, as browsers and hyper-util do.
        let host = authority.as_str().rsplit('@').next().unwrap_or_default();
        let host = host.strip_suffix(":80").unwrap_or(host);
        let value = HeaderValue::from_str(host)
            .map_err(|_| SendError::Connect(format!("{authority} is not a valid Host header")))?;
        req.headers_mut().insert(http::header::HOST, value);
    }
    let target = req
        .uri()
        .path_and_query()
        .cloned()
        .unwrap_or_else(|| PathAndQuery::from_static("/"));
    *req.uri_mut() = Uri::from(target);
    Ok(())
}

/// A connection going back to its pool once its response has been read.
#[derive(Debug)]
struct Return {
    pool: Arc<PlainPool>,
    authority: Authority,
    sender: SendRequest<UpstreamBody>,
}

/// An upstream response body. A pooled connection goes back to its pool when the body has
/// been read to its end; dropped earlier, the connection is closed.
#[derive(Debug)]
pub struct ResponseBody {
    inner: Incoming,
    back: Option<Return>,
}

impl ResponseBody {
    /// A body whose connection is not ours to return (hyper-util's pool owns it).
    pub fn unpooled(inner: Incoming) -> Self {
        Self { inner, back: None }
    }

    fn pooled(inner: Incoming, back: Return) -> Self {
        let mut body = Self {
            inner,
            back: Some(back),
        };
        // An empty body (e.g. `content-length: 0`) is already at its end.
        body.release_if_ended();
        body
    }

    fn release_if_ended(&mut self) {
        if self.inner.is_end_stream() {
            self.release();
        }
    }

    fn release(&mut self) {
        if let Some(r) = self.back.take() {
            r.pool.put(&r.authority, r.sender);
        }
    }
}

impl Body for ResponseBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        match &polled {
            // A body with a length is over with its last byte, before anyone asks for more
            // (the client side stops polling once it has written `content-length` bytes).
            Poll::Ready(Some(Ok(_))) => self.release_if_ended(),
            Poll::Ready(None) => self.release(),
            // The connection cannot be reused.
            Poll::Ready(Some(Err(_))) => self.back = None,
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
#[path = "plain_tests.rs"]
mod tests;
