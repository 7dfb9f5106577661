//! HTTP/1.1 on the wire for plain `http://` backends (RFC 9112): the request head we write,
//! the response head we read (parsed by `httparse`), and the response body's framing and
//! decoding.
//!
//! Pure functions over byte buffers, no I/O: [`super::plain`] owns the connections and calls
//! these as bytes arrive. The client-side server (`crate::h1_server`) reads request bodies with
//! the same [`Decoder`] and header checks ([`content_length`], [`has_token`]). Strict where a mistake would desynchronise a reused connection
//! (lengths, chunk sizes, conflicting framing), lenient where RFC 9112 allows it (a bare LF
//! ending a chunk line).

use std::ops::Range;

use bytes::{Buf, Bytes, BytesMut};
use http::header::{CONTENT_LENGTH, HOST, TRANSFER_ENCODING};
use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Version};

/// The longest response head (status line and headers) accepted.
pub const MAX_HEAD: usize = 64 * 1024;
/// The most header lines a response head may have.
const MAX_HEADERS: usize = 128;
/// The longest chunk-size line (with extensions) accepted.
const MAX_CHUNK_LINE: usize = 4 * 1024;

/// Why a response could not be read as HTTP/1.1.
#[derive(Debug, thiserror::Error)]
pub enum ProtoError {
    /// The status line or a header line is malformed.
    #[error("invalid response head: {0}")]
    Head(httparse::Error),
    /// The head did not end within [`MAX_HEAD`] bytes.
    #[error("response head larger than {MAX_HEAD} bytes")]
    HeadTooLarge,
    /// The status code is out of range, or asks to switch protocols (never requested).
    #[error("unexpected response status {0}")]
    Status(u16),
    /// `content-length` is not a number, or several disagree.
    #[error("invalid content-length in the response")]
    ContentLength,
    /// A chunk-size line is not a hexadecimal size, or is too long.
    #[error("invalid chunk size line in the response body")]
    ChunkSize,
    /// A chunk's data is not followed by CRLF.
    #[error("missing CRLF after a chunk of the response body")]
    ChunkEnd,
    /// The trailer section did not end within [`MAX_HEAD`] bytes.
    #[error("response trailers larger than {MAX_HEAD} bytes")]
    TrailersTooLarge,
    /// The backend closed the connection before the body's end.
    #[error("connection closed before the response body ended")]
    Truncated,
}

/// Appends a request head to `out`: request line, `host` (unless `headers` has one), every
/// header but framing ones, then `content-length` when there is a body or the method carries
/// one.
pub fn encode_head(
    out: &mut Vec<u8>,
    method: &Method,
    target: &str,
    host: &str,
    headers: &HeaderMap,
    body_len: usize,
) {
    out.extend_from_slice(method.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(target.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\n");
    if !headers.contains_key(HOST) {
        out.extend_from_slice(b"host: ");
        out.extend_from_slice(host.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    for (name, value) in headers {
        if name == CONTENT_LENGTH || name == TRANSFER_ENCODING {
            continue;
        }
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    let has_body = body_len > 0 || matches!(*method, Method::POST | Method::PUT | Method::PATCH);
    if has_body {
        out.extend_from_slice(b"content-length: ");
        push_decimal(out, body_len as u64);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
}

/// `n` in decimal (per message head: `write!` or `to_string` costs several times more).
pub(crate) fn push_decimal(out: &mut Vec<u8>, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    loop {
        at -= 1;
        digits[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[at..]);
}

/// A parsed response head.
#[derive(Debug)]
pub struct Head {
    /// Status code.
    pub status: StatusCode,
    /// `HTTP/1.0` or `HTTP/1.1`.
    pub version: Version,
    /// The header lines as the backend sent them.
    pub headers: RawHeaders,
    /// What framing and reuse depend on, noted as the headers were read.
    pub noted: Noted,
}

/// Headers never passed on from one hop to the next (RFC 9110 §7.6.1, plus the framing the
/// next hop sets itself: `content-length`, and `accept-encoding`, which asks for codings the
/// relay does not decode).
pub const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "transfer-encoding",
    "te",
    "trailer",
    "upgrade",
    "host",
    "content-length",
    "accept-encoding",
];

/// Whether `name` (any case) is one of [`HOP_BY_HOP`].
pub fn is_hop_by_hop(name: &[u8]) -> bool {
    HOP_BY_HOP
        .iter()
        .any(|h| h.len() == name.len() && h.as_bytes().eq_ignore_ascii_case(name))
}

/// A response head's header lines as the backend sent them: where each name and value lies
/// in the head's bytes. Reading a head builds no map and copies no header; the relay writes
/// the lines on as they came (less the hop-by-hop ones), and [`RawHeaders::to_map`] makes a
/// map for whatever needs one. Names and values are as `httparse` accepted them, which `http`
/// accepts too.
#[derive(Debug, Clone, Default)]
pub struct RawHeaders {
    head: Bytes,
    lines: Vec<(Range<usize>, Range<usize>)>,
}

impl RawHeaders {
    /// Each header's name (as written, any case) and value, in order.
    pub fn iter(&self) -> impl Iterator<Item = (&[u8], &[u8])> {
        self.lines
            .iter()
            .map(|(name, value)| (&self.head[name.clone()], &self.head[value.clone()]))
    }

    /// The headers as a map (names lowercased), in order.
    pub fn to_map(&self) -> HeaderMap {
        let mut map = HeaderMap::with_capacity(self.lines.len());
        for (name, value) in self.iter() {
            if let (Ok(name), Ok(value)) =
                (HeaderName::from_bytes(name), HeaderValue::from_bytes(value))
            {
                map.append(name, value);
            }
        }
        map
    }
}

/// The headers of a message head that concern its framing and its connection, noted as the
/// head's lines are read (framing and reuse then need no lookups).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Noted {
    /// A `transfer-encoding` header is present…
    pub transfer_encoding: bool,
    /// …and the last coding it lists is `chunked`.
    pub chunked_last: bool,
    /// The length the `content-length` headers declare (`None`: none)…
    pub length: Option<u64>,
    /// …unless a value is malformed or two disagree (as [`content_length`]).
    pub bad_length: bool,
    /// `connection: close`.
    pub close: bool,
    /// `connection: keep-alive`.
    pub keep_alive: bool,
    /// `expect: 100-continue`.
    pub continue_: bool,
}

impl Noted {
    /// The length the `content-length` headers declare (`None`: none).
    ///
    /// # Errors
    /// A value is malformed or two disagree.
    pub fn declared_length(&self) -> Result<Option<u64>, ProtoError> {
        if self.bad_length {
            return Err(ProtoError::ContentLength);
        }
        Ok(self.length)
    }

    /// Notes one header line: its name (any case) and value.
    pub fn note(&mut self, name: &[u8], value: &[u8]) {
        let is = |known: &str| name.eq_ignore_ascii_case(known.as_bytes());
        let has = |token: &str| has_token_in(value, token);
        match name.len() {
            17 if is("transfer-encoding") => {
                self.transfer_encoding = true;
                // The final coding decides; a value listing none leaves it as it was.
                if let Some(last) = value
                    .split(|&b| b == b',')
                    .map(<[u8]>::trim_ascii)
                    .rfind(|c| !c.is_empty())
                {
                    self.chunked_last = last.eq_ignore_ascii_case(b"chunked");
                }
            }
            14 if is("content-length") => match fold_length(self.length, value) {
                Ok(length) => self.length = length,
                Err(_) => self.bad_length = true,
            },
            10 if is("connection") => {
                self.close |= has("close");
                self.keep_alive |= has("keep-alive");
            }
            6 if is("expect") => self.continue_ |= has("100-continue"),
            _ => {}
        }
    }
}

/// Takes a response head off the start of `buf`, or `None` (and `buf` untouched) when more
/// bytes are needed. The header values are views of the head's bytes (no copy per header).
///
/// # Errors
/// The head is malformed or longer than [`MAX_HEAD`].
pub fn parse_head(buf: &mut BytesMut) -> Result<Option<Head>, ProtoError> {
    if buf.is_empty() {
        return Ok(None);
    }
    // Parsed while `buf` is borrowed: where each value is, as offsets into the head.
    let (len, status, version, noted, lines) = {
        let mut slots = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut resp = httparse::Response::new(&mut slots);
        let len = match resp.parse(buf) {
            Ok(httparse::Status::Complete(len)) => len,
            Ok(httparse::Status::Partial) if buf.len() > MAX_HEAD => {
                return Err(ProtoError::HeadTooLarge)
            }
            Ok(httparse::Status::Partial) => return Ok(None),
            Err(e) => return Err(ProtoError::Head(e)),
        };
        let code = resp.code.unwrap_or_default();
        let status = StatusCode::from_u16(code).map_err(|_| ProtoError::Status(code))?;
        let version = match resp.version {
            Some(0) => Version::HTTP_10,
            _ => Version::HTTP_11,
        };
        let mut noted = Noted::default();
        let mut lines = Vec::with_capacity(resp.headers.len());
        for h in resp.headers.iter() {
            noted.note(h.name.as_bytes(), h.value);
            lines.push((span_in(buf, h.name.as_bytes()), span_in(buf, h.value)));
        }
        (len, status, version, noted, lines)
    };
    let head = buf.split_to(len).freeze();
    Ok(Some(Head {
        status,
        version,
        headers: RawHeaders { head, lines },
        noted,
    }))
}

/// A header line of a head being parsed: its name, and where its value is in the head's
/// bytes. Heads are parsed while their read buffer is borrowed; once the head has been taken
/// off the buffer, [`header_map`] makes the values views of its bytes (no copy per header).
pub type HeaderLine = (HeaderName, Range<usize>);

/// Where `part`, a slice of `buf`, is in `buf`.
pub fn span_in(buf: &[u8], part: &[u8]) -> Range<usize> {
    let start = (part.as_ptr() as usize).saturating_sub(buf.as_ptr() as usize);
    start..start + part.len()
}

/// The lines of headers `httparse` parsed from `buf`.
///
/// # Errors
/// The name of a header `http` does not accept as a name.
pub fn header_lines<'h>(
    buf: &[u8],
    headers: &[httparse::Header<'h>],
) -> Result<Vec<HeaderLine>, &'h str> {
    // Sized up front (collecting `Result`s would grow the vector step by step).
    let mut lines = Vec::with_capacity(headers.len());
    for h in headers {
        let name = HeaderName::from_bytes(h.name.as_bytes()).map_err(|_| h.name)?;
        lines.push((name, span_in(buf, h.value)));
    }
    Ok(lines)
}

/// The header map of `lines`, in order, its values views of `head` (the bytes they were
/// located in); `each` sees every header as it goes in (a caller that needs a few of them
/// notes them there instead of looking them up after).
///
/// # Errors
/// The name of a header whose value `http` does not accept.
pub fn header_map(
    head: &Bytes,
    lines: Vec<HeaderLine>,
    mut each: impl FnMut(&HeaderName, &HeaderValue),
) -> Result<HeaderMap, HeaderName> {
    let mut headers = HeaderMap::with_capacity(lines.len());
    for (name, value) in lines {
        match HeaderValue::from_maybe_shared(head.slice(value)) {
            Ok(value) => {
                each(&name, &value);
                headers.append(name, value);
            }
            Err(_) => return Err(name),
        }
    }
    Ok(headers)
}

/// How a response body is delimited (RFC 9112 §6.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Framing {
    /// No body: a response to `HEAD`, a `204` or a `304`.
    Empty,
    /// Exactly this many bytes.
    Length(u64),
    /// Chunked transfer coding.
    Chunked,
    /// Everything until the backend closes the connection.
    Close,
}

/// The framing of a response to `method` with this head.
///
/// # Errors
/// `content-length` is malformed or its values disagree.
pub fn framing(method: &Method, head: &Head) -> Result<Framing, ProtoError> {
    let code = head.status.as_u16();
    if *method == Method::HEAD || code == 204 || code == 304 {
        return Ok(Framing::Empty);
    }
    if head.noted.transfer_encoding {
        // The final coding decides; anything but chunked runs until the connection closes.
        return Ok(if head.noted.chunked_last {
            Framing::Chunked
        } else {
            Framing::Close
        });
    }
    let length = head.noted.declared_length()?;
    Ok(length.map_or(Framing::Close, |n| {
        if n == 0 {
            Framing::Empty
        } else {
            Framing::Length(n)
        }
    }))
}

/// The body length the `content-length` headers of a message declare (`None`: no such
/// header). Every value and every comma-separated part of one must be the same number.
///
/// # Errors
/// A value is not a decimal number, or two disagree.
pub fn content_length(headers: &HeaderMap) -> Result<Option<u64>, ProtoError> {
    headers
        .get_all(CONTENT_LENGTH)
        .iter()
        .try_fold(None, |length, value| fold_length(length, value.as_bytes()))
}

/// `length` (what earlier `content-length` values declared) with one more value.
fn fold_length(mut length: Option<u64>, value: &[u8]) -> Result<Option<u64>, ProtoError> {
    for part in value.split(|&b| b == b',') {
        let n = parse_decimal(part.trim_ascii()).ok_or(ProtoError::ContentLength)?;
        if length.is_some_and(|l| l != n) {
            return Err(ProtoError::ContentLength);
        }
        length = Some(n);
    }
    Ok(length)
}

/// Whether a comma-separated header value (`connection`, `expect`, ...) lists `token`,
/// case-insensitively.
pub fn has_token(value: &HeaderValue, token: &str) -> bool {
    has_token_in(value.as_bytes(), token)
}

fn has_token_in(value: &[u8], token: &str) -> bool {
    value
        .split(|&b| b == b',')
        .any(|t| t.trim_ascii().eq_ignore_ascii_case(token.as_bytes()))
}

fn parse_decimal(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() || digits.len() > 19 {
        return None;
    }
    digits.iter().try_fold(0u64, |n, &d| {
        d.is_ascii_digit().then(|| n * 10 + u64::from(d - b'0'))
    })
}

/// Whether the connection may carry another request once this response has been read.
pub fn keep_alive(head: &Head, framing: Framing) -> bool {
    if framing == Framing::Close {
        return false;
    }
    match head.version {
        Version::HTTP_10 => head.noted.keep_alive,
        _ => !head.noted.close,
    }
}

/// What the decoder made of the bytes it has.
#[derive(Debug, PartialEq, Eq)]
pub enum Step {
    /// Body bytes (taken from the buffer without copying).
    Data(Bytes),
    /// More bytes are needed.
    NeedMore,
    /// The body has ended; the buffer holds whatever followed it.
    Done,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Length(u64),
    Close,
    ChunkSize,
    ChunkData(u64),
    ChunkEnd,
    Trailers(usize),
    Done,
}

/// Decodes a response body from a buffer the connection fills.
#[derive(Debug)]
pub struct Decoder {
    state: State,
}

impl Decoder {
    /// A decoder for a body framed as `framing`.
    pub fn new(framing: Framing) -> Self {
        let state = match framing {
            Framing::Empty => State::Done,
            Framing::Length(n) => State::Length(n),
            Framing::Chunked => State::ChunkSize,
            Framing::Close => State::Close,
        };
        Self { state }
    }

    /// True once the whole body has been decoded.
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// The bytes still to come, when the framing says.
    pub fn remaining(&self) -> Option<u64> {
        match self.state {
            State::Length(n) => Some(n),
            State::Done => Some(0),
            _ => None,
        }
    }

    /// Takes the next piece of body from `buf`.
    ///
    /// # Errors
    /// The chunked coding is malformed.
    pub fn step(&mut self, buf: &mut BytesMut) -> Result<Step, ProtoError> {
        loop {
            match self.state {
                State::Done => return Ok(Step::Done),
                // A sized body, or a chunk's data: as much of the rest as has arrived.
                State::Length(n) | State::ChunkData(n) => {
                    if buf.is_empty() {
                        return Ok(Step::NeedMore);
                    }
                    let take = usize::try_from(n).unwrap_or(usize::MAX).min(buf.len());
                    let left = n - take as u64;
                    self.state = match (self.state, left) {
                        (State::Length(_), 0) => State::Done,
                        (State::Length(_), _) => State::Length(left),
                        (_, 0) => State::ChunkEnd,
                        _ => State::ChunkData(left),
                    };
                    return Ok(Step::Data(buf.split_to(take).freeze()));
                }
                State::Close => {
                    if buf.is_empty() {
                        return Ok(Step::NeedMore);
                    }
                    return Ok(Step::Data(buf.split().freeze()));
                }
                State::ChunkSize => {
                    let Some(line) = take_line(buf, MAX_CHUNK_LINE, ProtoError::ChunkSize)? else {
                        return Ok(Step::NeedMore);
                    };
                    let size = chunk_size(&line)?;
                    self.state = if size == 0 {
                        State::Trailers(0)
                    } else {
                        State::ChunkData(size)
                    };
                }
                State::ChunkEnd => match buf.first() {
                    None => return Ok(Step::NeedMore),
                    Some(b'\n') => {
                        buf.advance(1);
                        self.state = State::ChunkSize;
                    }
                    Some(b'\r') if buf.len() < 2 => return Ok(Step::NeedMore),
                    Some(b'\r') if buf[1] == b'\n' => {
                        buf.advance(2);
                        self.state = State::ChunkSize;
                    }
                    Some(_) => return Err(ProtoError::ChunkEnd),
                },
                State::Trailers(seen) => {
                    let room = MAX_HEAD.saturating_sub(seen);
                    let Some(line) = take_line(buf, room, ProtoError::TrailersTooLarge)? else {
                        return Ok(Step::NeedMore);
                    };
                    // Trailers are not relayed: the client side is HTTP/1.1 without them.
                    self.state = if line.is_empty() {
                        State::Done
                    } else {
                        State::Trailers(seen + line.len() + 2)
                    };
                }
            }
        }
    }

    /// The backend closed the connection: the end of a close-delimited body, an error for
    /// any other body that has not ended.
    ///
    /// # Errors
    /// The body was cut short.
    pub fn eof(&mut self) -> Result<(), ProtoError> {
        match self.state {
            State::Close | State::Done => {
                self.state = State::Done;
                Ok(())
            }
            _ => Err(ProtoError::Truncated),
        }
    }
}

/// Takes one line (without its CRLF or bare LF) off the front of `buf`; `None` when the line
/// has not ended yet, `too_long` when it has not ended within `max` bytes.
fn take_line(
    buf: &mut BytesMut,
    max: usize,
    too_long: ProtoError,
) -> Result<Option<Bytes>, ProtoError> {
    let Some(end) = memchr::memchr(b'\n', &buf[..buf.len().min(max)]) else {
        return if buf.len() >= max {
            Err(too_long)
        } else {
            Ok(None)
        };
    };
    let mut line = buf.split_to(end + 1);
    line.truncate(end);
    if line.last() == Some(&b'\r') {
        line.truncate(end - 1);
    }
    Ok(Some(line.freeze()))
}

/// The size on a chunk-size line: hexadecimal digits, then optional whitespace and extensions.
fn chunk_size(line: &[u8]) -> Result<u64, ProtoError> {
    let digits = line
        .iter()
        .position(|b| !b.is_ascii_hexdigit())
        .unwrap_or(line.len());
    let (hex, rest) = line.split_at(digits);
    let rest = rest.trim_ascii_start();
    if hex.is_empty() || hex.len() > 15 || !(rest.is_empty() || rest[0] == b';') {
        return Err(ProtoError::ChunkSize);
    }
    Ok(hex.iter().fold(0u64, |n, &d| {
        let v = match d {
            b'0'..=b'9' => d - b'0',
            b'a'..=b'f' => d - b'a' + 10,
            _ => d - b'A' + 10,
        };
        n * 16 + u64::from(v)
    }))
}

#[cfg(test)]
#[path = "h1_tests.rs"]
mod tests;
