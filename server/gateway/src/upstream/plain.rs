//! Keep-alive HTTP/1.1 connections to `http://` backends, pooled per I/O thread, and the
//! exchange on them.
//!
//! The common deployment (vLLM beside the router) speaks plain HTTP/1.1, and for it a
//! general-purpose client costs more than the exchange: a connection task per connection that
//! the request's task hands its request to and gets its response back from (two task wake-ups
//! and a channel per request), a pool keyed with SipHash, a `Host` header built with
//! `format!`. Here the request's own task writes the request and reads the response on the
//! connection ([`super::h1`] is the codec), and the response body reads its bytes straight off
//! the socket as the relay polls it: every complete piece already in the buffer is handed on
//! at once, so a burst of SSE events leaves in one write to the client.
//!
//! A connection is taken from a short list keyed by the authority (foldhash) and handed back
//! by the response body itself when the body has been read to its end ([`ResponseBody`]). A
//! body dropped before its end (client gone, timeout, error) closes its connection: HTTP/1.1
//! cannot reuse a connection with an unread response on it.
//!
//! Owns: connecting (TCP, `TCP_NODELAY`, connect deadline), the idle lists (LIFO, at most
//! [`MAX_IDLE_PER_HOST`] per authority, idle for at most the idle timeout, [`IDLE_TIMEOUT`] by
//! default, swept by a timer so a backend that gets no more traffic keeps no connections open;
//! a connection the backend closed is noticed from the socket's readiness, without a system
//! call while it is open), and one retry on a fresh connection when a pooled one failed before
//! any byte of an answer came back. A backend closes a keep-alive connection only between
//! requests, so such a request was never read; this is the race with the backend's idle
//! timeout (uvicorn's is 5 s).

use std::collections::{HashMap, VecDeque};
use std::future::poll_fn;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use http::uri::{Authority, PathAndQuery};
use http::{Request, Response};
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use parking_lot::Mutex;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio_util::task::TaskTracker;

use super::client::{SendError, UpstreamBody};
use super::h1::{self, Decoder, Head, ProtoError, RawHeaders, Step};

/// How long an idle connection is kept.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(90);
/// Idle connections kept per authority.
pub const MAX_IDLE_PER_HOST: usize = 1024;
/// A connection's read buffer grows by this much when it runs low…
const READ_CHUNK: usize = 8 * 1024;
/// …and by up to this much after reads that filled it (a large body).
const READ_CHUNK_MAX: usize = 256 * 1024;
/// The read buffer is grown before a read when less than this is free.
const READ_MIN: usize = 1024;

type IdleLists = HashMap<Box<str>, VecDeque<Idle>, foldhash::fast::RandomState>;

/// Why an exchange with a plain backend failed before a usable response head.
#[derive(Debug, thiserror::Error)]
pub enum ExchangeError {
    /// Writing the request failed.
    #[error("writing the request: {0}")]
    Write(io::Error),
    /// Reading the response head failed.
    #[error("reading the response: {0}")]
    Read(io::Error),
    /// The backend closed the connection before a whole response head.
    #[error("connection closed before the response head")]
    Closed,
    /// The response is not valid HTTP/1.1.
    #[error(transparent)]
    Proto(#[from] ProtoError),
}

/// Why a response body could not be read to its end.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    /// An `https://` backend's body (hyper).
    #[error(transparent)]
    Tls(#[from] hyper::Error),
    /// Reading from a plain backend failed.
    #[error("reading the response body: {0}")]
    Read(io::Error),
    /// A plain backend's body is not valid HTTP/1.1 or was cut short.
    #[error(transparent)]
    Proto(#[from] ProtoError),
}

/// The idle connections of one I/O thread (or of the health checker), by authority.
#[derive(Debug)]
pub struct PlainPool {
    idle: Mutex<IdleLists>,
    /// The sweeper, on the runtime of the thread that opened the first connection; it ends
    /// with the pool.
    tasks: TaskTracker,
    connect_timeout: Duration,
    idle_timeout: Duration,
    /// The sweeper starts with the first connection (a runtime is running by then).
    sweeping: AtomicBool,
}

#[derive(Debug)]
struct Idle {
    conn: Conn,
    since: Instant,
}

/// One connection to a backend and the bytes read from it but not yet used.
#[derive(Debug)]
struct Conn {
    io: TcpStream,
    buf: BytesMut,
    /// How much the buffer grows by next: doubled after every read that filled it, back to
    /// [`READ_CHUNK`] after one that did not.
    grow: usize,
}

impl Conn {
    /// False once the backend has closed the connection (or sent bytes nobody asked for).
    /// Costs a system call only when the socket has signalled something since it was last
    /// read.
    fn is_open(&self) -> bool {
        let mut probe = [0u8; 1];
        matches!(self.io.try_read(&mut probe), Err(e) if e.kind() == io::ErrorKind::WouldBlock)
    }

    /// Writes the head and the body, in one system call when the socket takes both.
    async fn write_request(&mut self, mut head: &[u8], mut body: &[u8]) -> io::Result<()> {
        while !head.is_empty() {
            let n = self
                .io
                .write_vectored(&[io::IoSlice::new(head), io::IoSlice::new(body)])
                .await?;
            if n == 0 {
                return Err(io::ErrorKind::WriteZero.into());
            }
            let from_head = n.min(head.len());
            head = &head[from_head..];
            body = &body[n - from_head..];
        }
        self.io.write_all(body).await
    }

    /// Reads what the socket has into the buffer; 0 at the end of the stream.
    fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        if self.buf.capacity() - self.buf.len() < READ_MIN {
            self.buf.reserve(self.grow);
        }
        let room = self.buf.capacity() - self.buf.len();
        let read = tokio_util::io::poll_read_buf(Pin::new(&mut self.io), cx, &mut self.buf);
        if let Poll::Ready(Ok(n)) = read {
            self.grow = if n == room {
                (self.grow * 2).min(READ_CHUNK_MAX)
            } else {
                READ_CHUNK
            };
        }
        read
    }

    /// Reads the final response head (interim `1xx` heads are skipped). On failure, also
    /// whether no byte of an answer came back.
    async fn read_head(&mut self) -> Result<Head, (ExchangeError, bool)> {
        let mut answered = false;
        loop {
            match h1::parse_head(&mut self.buf) {
                Ok(Some(head)) => {
                    answered = true;
                    match head.status.as_u16() {
                        101 => return Err((ProtoError::Status(101).into(), false)),
                        100..=199 => continue,
                        _ => return Ok(head),
                    }
                }
                Ok(None) => {}
                Err(e) => return Err((e.into(), false)),
            }
            let unanswered = !answered && self.buf.is_empty();
            match poll_fn(|cx| self.poll_fill(cx)).await {
                Ok(0) => return Err((ExchangeError::Closed, unanswered)),
                Ok(_) => {}
                Err(e) => {
                    let reset = e.kind() == io::ErrorKind::ConnectionReset;
                    return Err((ExchangeError::Read(e), unanswered && reset));
                }
            }
        }
    }
}

impl PlainPool {
    /// An empty pool whose connects give up after `connect_timeout` and whose connections
    /// are closed after `idle_timeout` unused.
    pub fn new(connect_timeout: Duration, idle_timeout: Duration) -> Self {
        Self {
            idle: Mutex::new(HashMap::default()),
            tasks: TaskTracker::new(),
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
        self.idle_too_long(c, now) || !c.conn.is_open()
    }

    fn idle_too_long(&self, c: &Idle, now: Instant) -> bool {
        now.duration_since(c.since) > self.idle_timeout
    }

    /// Sends `req` (an absolute `http://` URI) on a pooled or new connection; resolves with
    /// the response head, the body streaming from the connection. The response's headers
    /// travel with its body, as the backend wrote them ([`ResponseBody::headers`]); its
    /// header map is empty.
    pub async fn send(
        self: &Arc<Self>,
        req: Request<UpstreamBody>,
    ) -> Result<Response<ResponseBody>, SendError> {
        let (parts, body) = req.into_parts();
        let Some(authority) = parts.uri.authority().cloned() else {
            return Err(SendError::Connect(format!(
                "no host in the backend URL {}",
                parts.uri
            )));
        };
        let target = parts.uri.path_and_query().map_or("/", PathAndQuery::as_str);
        let mut head = Vec::with_capacity(512);
        h1::encode_head(
            &mut head,
            &parts.method,
            target,
            host_header(&authority),
            &parts.headers,
            body.len(),
        );
        let (mut conn, mut reused) = match self.checkout(authority.as_str()) {
            Some(c) => (c, true),
            None => (self.connect(&authority).await?, false),
        };
        let answer = loop {
            let result = match conn.write_request(&head, &body).await {
                Ok(()) => conn.read_head().await,
                Err(e) => Err((ExchangeError::Write(e), true)),
            };
            match result {
                Ok(answer) => break answer,
                Err((e, true)) if reused => {
                    tracing::debug!(backend = %authority, error = %e, "pooled connection closed; reconnecting");
                    conn = self.connect(&authority).await?;
                    reused = false;
                }
                Err((e, _)) => return Err(SendError::Exchange(e)),
            }
        };
        let framing =
            h1::framing(&parts.method, &answer).map_err(|e| SendError::Exchange(e.into()))?;
        let back = h1::keep_alive(&answer, framing).then(|| Return {
            pool: Arc::clone(self),
            authority,
        });
        let body = ResponseBody::plain(
            PlainBody {
                conn: Some(conn),
                decoder: Decoder::new(framing),
                back,
            },
            answer.headers,
        );
        let mut resp = Response::new(body);
        *resp.status_mut() = answer.status;
        *resp.version_mut() = answer.version;
        Ok(resp)
    }

    /// The most recently used idle connection to `authority` that is still open. Closed and
    /// expired ones are dropped.
    fn checkout(&self, authority: &str) -> Option<Conn> {
        let mut lists = self.idle.lock();
        let list = lists.get_mut(authority)?;
        let now = Instant::now();
        while let Some(c) = list.pop_back() {
            if !self.expired(&c, now) {
                return Some(c.conn);
            }
        }
        None
    }

    /// Puts a connection whose response was read to its end back in the pool.
    fn put(&self, authority: &Authority, conn: Conn) {
        let now = Instant::now();
        let mut lists = self.idle.lock();
        let list = match lists.get_mut(authority.as_str()) {
            Some(list) => list,
            None => lists.entry(authority.as_str().into()).or_default(),
        };
        // The oldest are at the front: drop the ones past their idle time.
        while list.front().is_some_and(|c| self.idle_too_long(c, now)) {
            list.pop_front();
        }
        if list.len() < MAX_IDLE_PER_HOST {
            list.push_back(Idle { conn, since: now });
        }
    }

    /// Opens a connection to `authority` (and, the first time, starts the sweeper).
    async fn connect(self: &Arc<Self>, authority: &Authority) -> Result<Conn, SendError> {
        if !self.sweeping.swap(true, Ordering::Relaxed) {
            self.tasks
                .spawn(sweeper(Arc::downgrade(self), self.idle_timeout / 2));
        }
        // `[::1]` in a URL, `::1` to the resolver.
        let host = authority
            .host()
            .trim_start_matches('[')
            .trim_end_matches(']');
        let port = authority.port_u16().unwrap_or(80);
        let io = tokio::time::timeout(self.connect_timeout, TcpStream::connect((host, port)))
            .await
            .map_err(|_| {
                SendError::Connect(format!(
                    "tcp connect error: no connection within {:?}",
                    self.connect_timeout
                ))
            })?
            .map_err(|e| SendError::Connect(format!("tcp connect error: {e}")))?;
        io.set_nodelay(true)
            .map_err(|e| SendError::Connect(format!("setting TCP_NODELAY: {e}")))?;
        Ok(Conn {
            io,
            buf: BytesMut::with_capacity(READ_CHUNK),
            grow: READ_CHUNK,
        })
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

/// The `Host` header for `authority`: without user info, the default port left out, as
/// browsers and hyper-util do.
fn host_header(authority: &Authority) -> &str {
    let all = authority.as_str();
    // A byte loop: on an authority's few bytes, `rfind` on a `char` and `memrchr` both cost
    // several times more.
    let host = all
        .bytes()
        .rposition(|b| b == b'@')
        .map_or(all, |at| &all[at + 1..]);
    host.strip_suffix(":80").unwrap_or(host)
}

/// Where a connection goes back once its response has been read.
#[derive(Debug)]
struct Return {
    pool: Arc<PlainPool>,
    authority: Authority,
}

/// A plain backend's response body, read off its connection.
#[derive(Debug)]
struct PlainBody {
    /// `None` once the body has ended (the connection went back or was closed).
    conn: Option<Conn>,
    decoder: Decoder,
    /// `None` when the connection cannot carry another request.
    back: Option<Return>,
}

impl PlainBody {
    /// The body has ended: the connection goes back to its pool if it can carry another
    /// request and nothing unasked-for followed the response.
    fn release(&mut self) {
        if let (Some(conn), Some(back)) = (self.conn.take(), self.back.take()) {
            if conn.buf.is_empty() {
                back.pool.put(&back.authority, conn);
            }
        }
    }

    fn poll_frame(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        loop {
            let Some(conn) = self.conn.as_mut() else {
                return Poll::Ready(None);
            };
            match self.decoder.step(&mut conn.buf) {
                Ok(Step::Data(data)) => {
                    // A body with a length is over with its last byte, before anyone asks for
                    // more (the client side stops polling once it has written
                    // `content-length` bytes).
                    if self.decoder.is_done() {
                        self.release();
                    }
                    return Poll::Ready(Some(Ok(Frame::data(data))));
                }
                Ok(Step::Done) => {
                    self.release();
                    return Poll::Ready(None);
                }
                Ok(Step::NeedMore) => match conn.poll_fill(cx) {
                    Poll::Pending => return Poll::Pending,
                    Poll::Ready(Ok(0)) => {
                        self.conn = None;
                        return match self.decoder.eof() {
                            Ok(()) => Poll::Ready(None),
                            Err(e) => Poll::Ready(Some(Err(e.into()))),
                        };
                    }
                    Poll::Ready(Ok(_)) => {}
                    Poll::Ready(Err(e)) => {
                        self.conn = None;
                        return Poll::Ready(Some(Err(BodyError::Read(e))));
                    }
                },
                Err(e) => {
                    self.conn = None;
                    return Poll::Ready(Some(Err(e.into())));
                }
            }
        }
    }
}

#[derive(Debug)]
enum Inner {
    Plain(PlainBody),
    Tls(Incoming),
}

/// An upstream response body. A pooled connection goes back to its pool when the body has
/// been read to its end; dropped earlier, the connection is closed.
///
/// A plain backend's response headers come with its body, as the backend wrote them (no map
/// is built for them: the relay writes them on as they came).
#[derive(Debug)]
pub struct ResponseBody {
    inner: Inner,
    headers: Option<RawHeaders>,
}

impl ResponseBody {
    /// A body whose connection is not ours to return (hyper-util's pool owns it); its headers
    /// are in its response's map.
    pub fn tls(inner: Incoming) -> Self {
        Self {
            inner: Inner::Tls(inner),
            headers: None,
        }
    }

    fn plain(mut body: PlainBody, headers: RawHeaders) -> Self {
        // An empty body (e.g. `content-length: 0`) is already at its end.
        if body.decoder.is_done() {
            body.release();
        }
        Self {
            inner: Inner::Plain(body),
            headers: Some(headers),
        }
    }

    /// A plain backend's response headers (`None` for a TLS backend's, which are in the
    /// response's map).
    pub fn headers(&self) -> Option<&RawHeaders> {
        self.headers.as_ref()
    }

    /// Takes a plain backend's response headers (see [`Self::headers`]).
    pub fn take_headers(&mut self) -> Option<RawHeaders> {
        self.headers.take()
    }
}

impl Body for ResponseBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        match &mut self.inner {
            Inner::Plain(body) => body.poll_frame(cx),
            Inner::Tls(body) => Pin::new(body)
                .poll_frame(cx)
                .map(|f| f.map(|r| r.map_err(BodyError::Tls))),
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.inner {
            Inner::Plain(body) => body.decoder.is_done(),
            Inner::Tls(body) => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.inner {
            Inner::Plain(body) => body
                .decoder
                .remaining()
                .map_or_else(SizeHint::default, SizeHint::with_exact),
            Inner::Tls(body) => body.size_hint(),
        }
    }
}

#[cfg(test)]
#[path = "plain_tests.rs"]
mod tests;
