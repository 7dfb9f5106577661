//! HTTP/1.1 for client connections (RFC 9112): reads requests off the socket, hands chat
//! completions to their handler with the body already read, everything else to the
//! listener's router, and writes the answers.
//!
//! Why not a general server: a proxy hop's cost is mostly the server's, and a general one
//! builds what this data plane never needs (an upgrade path, a service future per request,
//! a body channel, a header map copied between layers). Here the request head is parsed once
//! into the map the handlers read, the body is read into one buffer under the listener's size
//! limit, and the answer's head goes out with its first body bytes in one write when they are
//! ready together; streamed bodies go out frame by frame as they arrive.
//!
//! Strict framing (RFC 9112 §6): a request with both `transfer-encoding` and
//! `content-length`, several different lengths, or a transfer coding other than `chunked` is
//! refused and the connection closed, so no two parties can read one request differently.
//!
//! While a request is handled or its answer streamed, the socket is watched: a client that
//! closes its connection cancels the handler (and with it the upstream request).

use std::io;
use std::pin::Pin;
use std::time::{Duration, Instant, SystemTime};

use axum::response::IntoResponse;
use bytes::{Bytes, BytesMut};
use futures_util::FutureExt;
use http::header::{CONNECTION, CONTENT_LENGTH, DATE, TRANSFER_ENCODING};
use http::request::Parts;
use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri, Version};
use http_body_util::BodyExt;
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

use crate::error::ApiError;
use crate::headers::RouterHeaders;
use crate::http::{Answer, DataPlane};
use crate::upstream::h1::{
    content_length, has_token, header_lines, header_map, is_hop_by_hop, push_decimal, span_in,
    Decoder, Framing, Noted, RawHeaders, Step,
};

/// The longest request head (request line and headers) accepted.
const MAX_HEAD: usize = 64 * 1024;
/// The most header lines a request may have.
const MAX_HEADERS: usize = 100;
/// First size of a connection's read buffer; it grows with a large body.
const READ_BUF: usize = 8 * 1024;
/// Body bytes copied into the write buffer behind the head; larger frames are written from
/// where they are.
const COPY_FRAME: usize = 16 * 1024;

/// A parsed request head.
#[derive(Debug)]
struct Head {
    /// Method, target, version and headers.
    parts: Parts,
    /// How the body is delimited (`Empty`, `Length` or `Chunked`).
    framing: Framing,
    /// The client will wait for `100 Continue` before sending the body.
    expect_continue: bool,
    /// The client allows another request on this connection.
    keep_alive: bool,
}

fn bad(message: impl Into<String>) -> ApiError {
    ApiError::BadHttp(message.into())
}

fn bad_length() -> ApiError {
    bad("invalid or conflicting content-length values")
}

/// Takes the request head off the start of `buf`, or `None` (and `buf` untouched) when more
/// bytes are needed.
///
/// The header values and the target are views of the head's bytes (no copy per header).
fn parse_head(buf: &mut BytesMut) -> Result<Option<Head>, ApiError> {
    let too_large = || ApiError::HeadTooLarge(format!("request head larger than {MAX_HEAD} bytes"));
    // Parsed while `buf` is borrowed: where each piece is, as offsets into the head.
    let (len, method, version, target, lines) = {
        let mut slots = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut req = httparse::Request::new(&mut slots);
        let len = match req.parse(buf) {
            Ok(httparse::Status::Complete(len)) if len <= MAX_HEAD => len,
            Ok(httparse::Status::Complete(_)) => return Err(too_large()),
            Ok(httparse::Status::Partial) if buf.len() > MAX_HEAD => return Err(too_large()),
            Ok(httparse::Status::Partial) => return Ok(None),
            Err(httparse::Error::TooManyHeaders) => {
                return Err(ApiError::HeadTooLarge(format!(
                    "more than {MAX_HEADERS} request headers"
                )))
            }
            Err(e) => return Err(bad(format!("malformed request head: {e}"))),
        };
        let method = Method::from_bytes(req.method.unwrap_or_default().as_bytes())
            .map_err(|_| bad("invalid request method"))?;
        let version = if req.version == Some(0) {
            Version::HTTP_10
        } else {
            Version::HTTP_11
        };
        let target = span_in(buf, req.path.unwrap_or_default().as_bytes());
        let lines = header_lines(buf, req.headers)
            .map_err(|name| bad(format!("invalid header name {name:?}")))?;
        (len, method, version, target, lines)
    };
    let head = buf.split_to(len).freeze();
    let uri =
        Uri::from_maybe_shared(head.slice(target)).map_err(|_| bad("invalid request target"))?;
    // What the connection needs from the head, noted as the lines go in (no map lookups).
    let mut seen = Noted::default();
    let headers = header_map(&head, lines, |name, value| {
        seen.note(name.as_str().as_bytes(), value.as_bytes());
    })
    .map_err(|name| bad(format!("invalid value of header {name}")))?;
    let framing = if seen.transfer_encoding {
        body_framing(&headers, version)?
    } else {
        match seen.declared_length() {
            Ok(None | Some(0)) => Framing::Empty,
            Ok(Some(n)) => Framing::Length(n),
            Err(_) => return Err(bad_length()),
        }
    };
    let keep_alive = match version {
        Version::HTTP_10 => seen.keep_alive,
        _ => !seen.close,
    };
    let expect_continue = version == Version::HTTP_11 && seen.continue_;
    let (mut parts, ()) = http::Request::new(()).into_parts();
    parts.method = method;
    parts.uri = uri;
    parts.version = version;
    parts.headers = headers;
    Ok(Some(Head {
        parts,
        framing,
        expect_continue,
        keep_alive,
    }))
}

/// How a request body is delimited (RFC 9112 §6.3), refusing anything ambiguous.
fn body_framing(headers: &HeaderMap, version: Version) -> Result<Framing, ApiError> {
    if headers.contains_key(TRANSFER_ENCODING) {
        if headers.contains_key(CONTENT_LENGTH) {
            return Err(bad(
                "a request may not have both transfer-encoding and content-length",
            ));
        }
        if version == Version::HTTP_10 {
            return Err(bad("transfer-encoding in an HTTP/1.0 request"));
        }
        let codings: Vec<&str> = headers
            .get_all(TRANSFER_ENCODING)
            .iter()
            .map(|v| v.to_str().unwrap_or("?"))
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .filter(|c| !c.is_empty())
            .collect();
        return match codings.as_slice() {
            [c] if c.eq_ignore_ascii_case("chunked") => Ok(Framing::Chunked),
            _ => Err(ApiError::UnsupportedTransferCoding(format!(
                "unsupported transfer-encoding {:?}; only chunked is accepted",
                codings.join(", ")
            ))),
        };
    }
    let length = content_length(headers).map_err(|_| bad_length())?;
    Ok(match length {
        None | Some(0) => Framing::Empty,
        Some(n) => Framing::Length(n),
    })
}

/// One client connection: the socket, what has been read and not yet used, and the buffer
/// answers are written from.
struct Client {
    io: TcpStream,
    buf: BytesMut,
    out: Vec<u8>,
    /// How long the client may pause inside a request.
    read_timeout: Duration,
}

/// How reading a request body ended badly.
enum BodyFailure {
    /// Over the listener's limit.
    TooLarge,
    /// The chunked coding is malformed.
    Malformed(String),
    /// The client closed the connection or the socket failed.
    Io,
    /// The client paused longer than the read timeout.
    TimedOut,
}

impl Client {
    /// Reads more bytes into the buffer; `Ok(0)` when the client has closed.
    async fn fill(&mut self) -> io::Result<usize> {
        if self.buf.capacity() - self.buf.len() < 1024 {
            if self.buf.is_empty() {
                // Nothing to keep: a new buffer costs no copy (growing a shared one would).
                self.buf = BytesMut::with_capacity(READ_BUF);
            } else {
                self.buf.reserve(READ_BUF.max(self.buf.len()));
            }
        }
        read_into(&mut self.io, &mut self.buf).await
    }

    /// Writes all of `parts` (vectored).
    async fn write_all(&self, parts: &[&[u8]]) -> io::Result<()> {
        let mut done = 0usize;
        let total: usize = parts.iter().map(|p| p.len()).sum();
        while done < total {
            let mut skip = done;
            let mut slices = Vec::with_capacity(parts.len());
            for p in parts {
                if skip >= p.len() {
                    skip -= p.len();
                } else {
                    slices.push(io::IoSlice::new(&p[skip..]));
                    skip = 0;
                }
            }
            self.io.writable().await?;
            match self.io.try_write_vectored(&slices) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => done += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Writes and empties the write buffer.
    async fn flush(&mut self) -> io::Result<()> {
        if !self.out.is_empty() {
            self.write_all(&[&self.out]).await?;
            self.out.clear();
        }
        Ok(())
    }

    /// Reads the next request head: `None` when the client closed the connection between
    /// requests, the connection stayed idle too long, or the listener drains while it is
    /// idle.
    async fn read_head(
        &mut self,
        drain: &CancellationToken,
        idle: &mut IdleTimer,
    ) -> io::Result<Option<Head>> {
        let idle_since = Instant::now();
        loop {
            if !self.buf.is_empty() {
                match parse_head(&mut self.buf) {
                    Ok(Some(head)) => return Ok(Some(head)),
                    Ok(None) => {}
                    Err(refused) => {
                        self.refuse(refused).await;
                        return Ok(None);
                    }
                }
            }
            let idle_wait = self.buf.is_empty();
            let n = if idle_wait {
                let timer = idle.arm(idle_since);
                tokio::select! {
                    biased;
                    n = self.fill() => n?,
                    () = drain.cancelled() => return Ok(None),
                    () = timer => {
                        if idle.expired(idle_since) {
                            tracing::debug!("closing a client connection idle for {:?}", idle_since.elapsed());
                            return Ok(None);
                        }
                        continue;
                    }
                }
            } else {
                // Inside a head (most arrive whole, so this timer is rarely armed).
                match tokio::time::timeout(self.read_timeout, self.fill()).await {
                    Ok(n) => n?,
                    Err(_) => {
                        self.refuse(ApiError::RequestTimeout(self.read_timeout))
                            .await;
                        return Ok(None);
                    }
                }
            };
            if n == 0 {
                if !idle_wait {
                    tracing::debug!("client closed the connection inside a request head");
                }
                return Ok(None);
            }
        }
    }

    /// Answers a request that cannot be read and ends the connection.
    async fn refuse(&mut self, refused: ApiError) {
        let answer = Answer::new(refused.into_response(), RouterHeaders::default());
        let _ = self.respond(answer, Reply::closing()).await;
    }

    /// Reads a request body of `framing` whole, up to `limit` bytes.
    async fn read_body(&mut self, framing: Framing, limit: usize) -> Result<Bytes, BodyFailure> {
        if let Framing::Length(n) = framing {
            if n > limit as u64 {
                return Err(BodyFailure::TooLarge);
            }
            let n = n as usize;
            if self.buf.len() >= n {
                return Ok(self.buf.split_to(n).freeze());
            }
            // The rest of the body is read straight into a buffer of its exact size: what
            // came with the head is copied once, nothing is copied as it grows, and nothing
            // past the body (a next request) is read into it.
            let mut body = BytesMut::with_capacity(n);
            body.extend_from_slice(&self.buf);
            self.buf.clear();
            while body.len() < n {
                match tokio::time::timeout(self.read_timeout, read_into(&mut self.io, &mut body))
                    .await
                {
                    Err(_) => return Err(BodyFailure::TimedOut),
                    Ok(Ok(0) | Err(_)) => return Err(BodyFailure::Io),
                    Ok(Ok(_)) => {}
                }
            }
            return Ok(body.freeze());
        }
        let mut decoder = Decoder::new(framing);
        let mut body = BytesMut::new();
        loop {
            match decoder.step(&mut self.buf) {
                Ok(Step::Done) => return Ok(body.freeze()),
                Ok(Step::Data(data)) => {
                    if body.len() + data.len() > limit {
                        return Err(BodyFailure::TooLarge);
                    }
                    body.extend_from_slice(&data);
                }
                Ok(Step::NeedMore) => {
                    match tokio::time::timeout(self.read_timeout, self.fill()).await {
                        Err(_) => return Err(BodyFailure::TimedOut),
                        Ok(Ok(0) | Err(_)) => return Err(BodyFailure::Io),
                        Ok(Ok(_)) => {}
                    }
                }
                Err(e) => return Err(BodyFailure::Malformed(e.to_string())),
            }
        }
    }

    /// Resolves when the client has closed its side of the connection (or the socket
    /// failed). Bytes of a next request (pipelining) are left for later, and then this never
    /// resolves.
    async fn closed(&self) {
        let mut probe = [0u8; 1];
        match self.io.peek(&mut probe).await {
            Ok(0) | Err(_) => {}
            Ok(_) => std::future::pending().await,
        }
    }

    /// Writes `resp`: head, then body. `Ok(false)` when the connection cannot carry another
    /// request afterwards.
    async fn respond(&mut self, answer: Answer, reply: Reply) -> io::Result<bool> {
        let (parts, mut body) = answer.response.into_parts();
        let status = parts.status;
        let bodiless = reply.head_only
            || status.is_informational()
            || status == StatusCode::NO_CONTENT
            || status == StatusCode::NOT_MODIFIED;
        // A handler that leaves the request body unread says `connection: close`.
        let closing = parts
            .headers
            .get_all(CONNECTION)
            .iter()
            .any(|v| has_token(v, "close"));
        let mut keep = reply.keep_alive && !closing;
        let framing = if bodiless {
            Framing::Empty
        } else if let Some(n) = http_body::Body::size_hint(&body).exact() {
            Framing::Length(n)
        } else if reply.version == Version::HTTP_11 {
            Framing::Chunked
        } else {
            keep = false;
            Framing::Empty
        };
        let headers = AnswerHeaders {
            map: &parts.headers,
            upstream: answer.upstream.as_ref(),
            router: &answer.router,
        };
        self.encode_head(status, headers, framing, bodiless, keep);
        if bodiless {
            self.flush().await?;
            return Ok(keep);
        }
        let chunked = framing == Framing::Chunked;
        let mut sent = 0u64;
        loop {
            // Frames ready now join the write buffer (the head goes out with the first bytes
            // of a small answer); the buffer is written when the body has to wait.
            let frame = match body.frame().now_or_never() {
                Some(f) => f,
                None => {
                    self.flush().await?;
                    tokio::select! {
                        biased;
                        f = body.frame() => f,
                        () = self.closed() => {
                            return Err(io::Error::new(io::ErrorKind::ConnectionAborted, "client closed the connection"));
                        }
                    }
                }
            };
            let data = match frame {
                None => break,
                Some(Ok(frame)) => match frame.into_data() {
                    Ok(data) => data,
                    Err(_) => continue, // trailers: not relayed
                },
                Some(Err(e)) => {
                    // A body cut short: the client sees the connection end without the
                    // body's end, never a complete-looking answer.
                    tracing::debug!("response body failed: {e}");
                    let _ = self.flush().await;
                    return Ok(false);
                }
            };
            if data.is_empty() {
                continue;
            }
            sent += data.len() as u64;
            if chunked {
                chunk_size_line(&mut self.out, data.len());
            }
            if data.len() <= COPY_FRAME {
                self.out.extend_from_slice(&data);
            } else {
                let out = std::mem::take(&mut self.out);
                self.write_all(&[&out, &data]).await?;
                self.out = out;
                self.out.clear();
            }
            if chunked {
                self.out.extend_from_slice(b"\r\n");
            }
            // The declared length is complete: the client gets it now, before the body's end
            // runs (the relay's accounting and the replay record's end).
            if framing == Framing::Length(sent) {
                self.flush().await?;
            }
        }
        if chunked {
            self.out.extend_from_slice(b"0\r\n\r\n");
        } else if let Framing::Length(n) = framing {
            if sent != n {
                tracing::warn!(
                    declared = n,
                    sent,
                    "response body length differs from its size"
                );
                keep = false;
            }
        }
        self.flush().await?;
        Ok(keep)
    }

    /// Appends the status line and headers: the answer's own (but those the router's
    /// replace), a plain backend's as it wrote them (but hop-by-hop ones and those the
    /// router's replace), the router's, then framing, `date` and `connection`.
    fn encode_head(
        &mut self,
        status: StatusCode,
        AnswerHeaders {
            map: headers,
            upstream,
            router,
        }: AnswerHeaders<'_>,
        framing: Framing,
        bodiless: bool,
        keep: bool,
    ) {
        let out = &mut self.out;
        out.extend_from_slice(b"HTTP/1.1 ");
        out.extend_from_slice(status.as_str().as_bytes());
        out.push(b' ');
        out.extend_from_slice(status.canonical_reason().unwrap_or("Unknown").as_bytes());
        out.extend_from_slice(b"\r\n");
        let mut has_date = false;
        for (name, value) in headers {
            if name == TRANSFER_ENCODING || name == CONNECTION {
                continue;
            }
            // A bodiless answer (HEAD) keeps its declared length; otherwise the body's own
            // size decides.
            if name == CONTENT_LENGTH && !bodiless || router.replaces(name) {
                continue;
            }
            has_date |= name == DATE;
            put_header(out, name, value);
        }
        for (name, value) in upstream.iter().flat_map(|u| u.iter()) {
            // A bodiless answer (HEAD) keeps its declared length, as above.
            let length = bodiless && name.eq_ignore_ascii_case(b"content-length");
            if is_hop_by_hop(name) && !length || router.replaces_raw(name) {
                continue;
            }
            has_date |= name.eq_ignore_ascii_case(b"date");
            put_line(out, name, value);
        }
        out.extend_from_slice(router.lines());
        match framing {
            Framing::Length(n) => {
                out.extend_from_slice(b"content-length: ");
                push_decimal(out, n);
                out.extend_from_slice(b"\r\n");
            }
            Framing::Chunked => out.extend_from_slice(b"transfer-encoding: chunked\r\n"),
            Framing::Empty | Framing::Close => {}
        }
        if !has_date {
            out.extend_from_slice(b"date: ");
            out.extend_from_slice(&http_date());
            out.extend_from_slice(b"\r\n");
        }
        if !keep {
            out.extend_from_slice(b"connection: close\r\n");
        }
        out.extend_from_slice(b"\r\n");
    }
}

fn put_header(out: &mut Vec<u8>, name: &HeaderName, value: &HeaderValue) {
    put_line(out, name.as_str().as_bytes(), value.as_bytes());
}

fn put_line(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

/// An answer's headers: its map, a plain backend's as it wrote them, and the router's.
struct AnswerHeaders<'a> {
    map: &'a HeaderMap,
    upstream: Option<&'a RawHeaders>,
    router: &'a RouterHeaders,
}

/// The `date` header's value, formatted once a second per thread.
fn http_date() -> [u8; 29] {
    use std::cell::Cell;
    thread_local! {
        static CACHED: Cell<(u64, [u8; 29])> = const { Cell::new((u64::MAX, [0; 29])) };
    }
    let now = SystemTime::now();
    let secs = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    CACHED.with(|c| {
        let (at, text) = c.get();
        if at == secs {
            return text;
        }
        let mut text = [0u8; 29];
        let s = httpdate::fmt_http_date(now);
        if s.len() == text.len() {
            text.copy_from_slice(s.as_bytes());
        }
        c.set((secs, text));
        text
    })
}

/// Reads what the socket has into `buf`'s spare room, which must not be empty (at least one
/// byte, or `Ok(0)` when the peer has closed).
///
/// Through tokio's `AsyncRead`, which takes a read that did not fill the room as proof that
/// the socket is drained and forgets its readiness: the next wait (the next request, or
/// [`Client::closed`] while a request is handled) then sleeps until the socket signals again
/// instead of first making a system call that finds nothing.
async fn read_into(io: &mut TcpStream, buf: &mut BytesMut) -> io::Result<usize> {
    debug_assert!(buf.capacity() > buf.len(), "no room to read into");
    tokio::io::AsyncReadExt::read_buf(io, buf).await
}

/// Appends a chunk-size line (`{len:x}\r\n`) without the formatting machinery: one per
/// streamed frame.
fn chunk_size_line(out: &mut Vec<u8>, len: usize) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let digits = (usize::BITS - len.max(1).leading_zeros()).div_ceil(4) as usize;
    for i in (0..digits).rev() {
        out.push(HEX[(len >> (4 * i)) & 0xf]);
    }
    out.extend_from_slice(b"\r\n");
}

/// The idle timeout of a keep-alive connection, with one timer per connection that is
/// re-armed only when it would fire before half the timeout has passed: a busy connection
/// resets it at most twice per timeout, not once per request. When it fires early (the
/// connection was busy meanwhile), it is re-armed for the idle wait's own deadline.
struct IdleTimer {
    limit: Option<Duration>,
    sleep: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl IdleTimer {
    fn new(limit: Option<Duration>) -> Self {
        Self { limit, sleep: None }
    }

    /// The timer for an idle wait that began at `since` (pending forever without a limit).
    fn arm(&mut self, since: Instant) -> impl std::future::Future<Output = ()> + '_ {
        let sleep = self.limit.map(|limit| {
            let deadline = tokio::time::Instant::from_std(since + limit);
            let sleep = self
                .sleep
                .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
            let early = deadline - limit / 2;
            if sleep.deadline() < early || sleep.is_elapsed() {
                sleep.as_mut().reset(deadline);
            }
            sleep
        });
        async move {
            match sleep {
                Some(sleep) => sleep.await,
                None => std::future::pending().await,
            }
        }
    }

    /// The idle wait that began at `since` has lasted the whole limit.
    fn expired(&self, since: Instant) -> bool {
        self.limit.is_some_and(|limit| since.elapsed() >= limit)
    }
}

/// How an answer is written.
#[derive(Debug, Clone, Copy)]
struct Reply {
    version: Version,
    /// The request was `HEAD`: no body.
    head_only: bool,
    /// The connection may carry another request.
    keep_alive: bool,
}

impl Reply {
    fn closing() -> Self {
        Self {
            version: Version::HTTP_11,
            head_only: false,
            keep_alive: false,
        }
    }
}

/// Serves HTTP/1.1 requests on `io` until the client closes it, a request cannot be read, or
/// `drain` is cancelled (the request in flight is answered first).
pub(crate) async fn serve(io: TcpStream, service: DataPlane, drain: CancellationToken) {
    let mut c = Client {
        io,
        buf: BytesMut::with_capacity(READ_BUF),
        out: Vec::with_capacity(1024),
        read_timeout: service.read_timeout(),
    };
    let mut idle = IdleTimer::new(service.idle_timeout());
    loop {
        let head = match c.read_head(&drain, &mut idle).await {
            Ok(Some(head)) => head,
            Ok(None) => break,
            Err(e) => {
                tracing::debug!("client connection failed: {e}");
                return;
            }
        };
        let started = Instant::now();
        let Head {
            parts,
            framing,
            expect_continue,
            keep_alive,
        } = head;
        let mut reply = Reply {
            version: parts.version,
            head_only: parts.method == Method::HEAD,
            keep_alive,
        };
        let limit = service.body_limit();
        let body = match framing {
            Framing::Length(n) if n > limit as u64 => Err(BodyFailure::TooLarge),
            framing => {
                let missing = match framing {
                    Framing::Length(n) => (n as usize) > c.buf.len(),
                    Framing::Chunked => true,
                    Framing::Empty | Framing::Close => false,
                };
                if expect_continue && missing {
                    if let Err(e) = c.write_all(&[b"HTTP/1.1 100 Continue\r\n\r\n"]).await {
                        tracing::debug!("client connection failed: {e}");
                        return;
                    }
                }
                c.read_body(framing, limit).await
            }
        };
        let body = match body {
            Ok(body) => Ok(body),
            Err(BodyFailure::Io) => return,
            // The rest of the body is not read: the connection ends with this answer.
            Err(BodyFailure::TooLarge) => {
                reply.keep_alive = false;
                Err(ApiError::BodyTooLarge { limit })
            }
            Err(BodyFailure::TimedOut) => {
                reply.keep_alive = false;
                Err(ApiError::RequestTimeout(c.read_timeout))
            }
            Err(BodyFailure::Malformed(message)) => {
                reply.keep_alive = false;
                Err(bad(format!("malformed chunked request body: {message}")))
            }
        };
        let resp = tokio::select! {
            biased;
            resp = service.handle(parts, body, started) => resp,
            () = c.closed() => {
                tracing::debug!("client closed the connection before its answer");
                return;
            }
        };
        reply.keep_alive &= !drain.is_cancelled();
        match c.respond(resp, reply).await {
            Ok(true) => {}
            Ok(false) => break,
            Err(e) => {
                tracing::debug!("client connection failed while answering: {e}");
                return;
            }
        }
    }
    let _ = tokio::io::AsyncWriteExt::shutdown(&mut c.io).await;
}

#[cfg(test)]
#[path = "h1_server_tests.rs"]
mod tests;
