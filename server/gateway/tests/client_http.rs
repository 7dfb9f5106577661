//! The listener's HTTP/1.1 as a client sees it on the wire: raw sockets against a real
//! listener, for what HTTP client libraries do not let a test do (pipelining, chunked and
//! `Expect: 100-continue` uploads, HTTP/1.0, malformed and ambiguous requests, hanging up
//! while the answer is awaited).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::disallowed_methods,
    reason = "tests"
)]

mod common;

use std::time::Duration;

use common::*;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A chat request's JSON body.
fn chat_body(text: &str) -> String {
    ask("auto", text).to_string()
}

/// A complete chat request with `content-length`, plus `extra` header lines.
fn chat_request(text: &str, extra: &str) -> String {
    let body = chat_body(text);
    format!(
        "POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n\
         {extra}content-length: {}\r\n\r\n{body}",
        body.len()
    )
}

/// One answer read off a connection.
#[derive(Debug)]
struct Answer {
    status: u16,
    /// Lowercased header lines.
    head: String,
    body: Vec<u8>,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.head
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{name}: ")))
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap()
    }
}

/// Reads answers off a connection, keeping what follows one for the next.
struct Reader {
    conn: TcpStream,
    buf: Vec<u8>,
}

impl Reader {
    async fn connect(s: &Setup) -> Self {
        Self {
            conn: TcpStream::connect(s.addr()).await.unwrap(),
            buf: Vec::new(),
        }
    }

    async fn send(&mut self, bytes: &[u8]) {
        self.conn.write_all(bytes).await.unwrap();
    }

    /// More bytes, or `false` when the server closed the connection.
    async fn more(&mut self) -> bool {
        let mut chunk = [0u8; 8192];
        let n = tokio::time::timeout(Duration::from_secs(5), self.conn.read(&mut chunk))
            .await
            .expect("the server answers within 5 s")
            .unwrap_or(0);
        self.buf.extend_from_slice(&chunk[..n]);
        n > 0
    }

    /// The next answer (head, and a body framed by `content-length` or chunked; none for
    /// `HEAD` when `head_only`).
    async fn answer(&mut self, head_only: bool) -> Answer {
        let end = loop {
            if let Some(end) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break end;
            }
            assert!(self.more().await, "closed before an answer's head");
        };
        let head = String::from_utf8(self.buf.drain(..end + 4).collect())
            .unwrap()
            .to_lowercase();
        let status = head[9..12].parse().unwrap();
        let mut answer = Answer {
            status,
            head,
            body: Vec::new(),
        };
        if head_only || status == 100 {
            return answer;
        }
        if answer.header("transfer-encoding") == Some("chunked") {
            loop {
                let line_end = loop {
                    if let Some(i) = self.buf.windows(2).position(|w| w == b"\r\n") {
                        break i;
                    }
                    assert!(self.more().await, "closed inside a chunked body");
                };
                let size =
                    usize::from_str_radix(std::str::from_utf8(&self.buf[..line_end]).unwrap(), 16)
                        .unwrap();
                while self.buf.len() < line_end + 2 + size + 2 {
                    assert!(self.more().await, "closed inside a chunk");
                }
                let chunk: Vec<u8> = self.buf.drain(..line_end + 2 + size + 2).collect();
                if size == 0 {
                    return answer;
                }
                answer
                    .body
                    .extend_from_slice(&chunk[line_end + 2..line_end + 2 + size]);
            }
        }
        let len: usize = answer
            .header("content-length")
            .expect("framed answer")
            .parse()
            .unwrap();
        while self.buf.len() < len {
            assert!(self.more().await, "closed inside a sized body");
        }
        answer.body = self.buf.drain(..len).collect();
        answer
    }

    /// True when the server closes the connection (after whatever is buffered).
    async fn closed(&mut self) -> bool {
        !self.more().await
    }
}

#[tokio::test]
async fn pipelined_requests_are_answered_in_order_on_one_connection() {
    let s = setup().await;
    let mut c = Reader::connect(&s).await;
    let two = format!(
        "{}{}GET /health HTTP/1.1\r\nhost: x\r\n\r\n",
        chat_request("Please prove that sqrt(2) is irrational", ""),
        chat_request("what is the capital of France?", "")
    );
    c.send(two.as_bytes()).await;
    let first = c.answer(false).await;
    assert_eq!(first.status, 200);
    assert_eq!(first.header("x-vsr-selected-decision"), Some("reasoning"));
    assert_eq!(first.json()["object"], "chat.completion");
    let second = c.answer(false).await;
    assert_eq!(second.header("x-vsr-selected-decision"), Some("everyday"));
    let third = c.answer(false).await;
    assert_eq!(third.status, 200);
    assert!(third.header("date").is_some());
    // Still open for more.
    c.send(chat_request("hello", "").as_bytes()).await;
    assert_eq!(c.answer(false).await.status, 200);
}

#[tokio::test]
async fn a_chunked_upload_is_read_whole_and_forwarded() {
    let s = setup().await;
    let body = chat_body("what is the capital of France?");
    let (a, b) = body.split_at(body.len() / 2);
    let mut c = Reader::connect(&s).await;
    let head =
        "POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n\
                transfer-encoding: chunked\r\n\r\n";
    c.send(format!("{head}{:x};ext=1\r\n{a}\r\n", a.len()).as_bytes())
        .await;
    tokio::time::sleep(Duration::from_millis(30)).await;
    c.send(format!("{:x}\r\n{b}\r\n0\r\n\r\n", b.len()).as_bytes())
        .await;
    let answer = c.answer(false).await;
    assert_eq!(answer.status, 200, "{answer:?}");
    let sent = s.fast.last().expect("forwarded");
    assert_eq!(
        sent.body["messages"][0]["content"],
        "what is the capital of France?"
    );
}

#[tokio::test]
async fn expect_continue_gets_its_interim_answer_before_the_body_is_sent() {
    let s = setup().await;
    let body = chat_body("hello");
    let mut c = Reader::connect(&s).await;
    c.send(
        format!(
            "POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\nexpect: 100-continue\r\n\
             content-length: {}\r\n\r\n",
            body.len()
        )
        .as_bytes(),
    )
    .await;
    assert_eq!(c.answer(false).await.status, 100);
    c.send(body.as_bytes()).await;
    assert_eq!(c.answer(false).await.status, 200);
}

#[tokio::test]
async fn an_http10_client_gets_its_answer_and_the_connection_closes() {
    let s = setup().await;
    let mut c = Reader::connect(&s).await;
    let body = chat_body("hello");
    c.send(
        format!(
            "POST /v1/chat/completions HTTP/1.0\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        )
        .as_bytes(),
    )
    .await;
    let answer = c.answer(false).await;
    assert_eq!(answer.status, 200);
    assert_eq!(answer.header("connection"), Some("close"));
    assert!(c.closed().await);
}

#[tokio::test]
async fn a_head_request_gets_headers_only_and_the_connection_stays_open() {
    let s = setup().await;
    let mut c = Reader::connect(&s).await;
    c.send(b"HEAD /health HTTP/1.1\r\nhost: x\r\n\r\nGET /health HTTP/1.1\r\nhost: x\r\n\r\n")
        .await;
    let head = c.answer(true).await;
    assert_eq!(head.status, 200);
    let get = c.answer(false).await;
    assert_eq!(get.status, 200);
    assert_eq!(get.json()["status"], "ok");
}

/// Requests that cannot be read unambiguously: an OpenAI-shaped error, and the connection
/// ends (the bytes after such a head cannot be trusted to start a request).
#[tokio::test]
async fn malformed_and_ambiguous_requests_are_refused_and_the_connection_closed() {
    let s = setup().await;
    let cases: [(&str, u16, &str); 5] = [
        (
            "POST /v1/chat/completions HTTP/1.1\r\ncontent-length: 5\r\ntransfer-encoding: chunked\r\n\r\n",
            400,
            "invalid_http",
        ),
        (
            "POST /v1/chat/completions HTTP/1.1\r\ntransfer-encoding: gzip, chunked\r\n\r\n",
            501,
            "unsupported_transfer_encoding",
        ),
        (
            "POST /v1/chat/completions HTTP/1.1\r\ncontent-length: 5\r\ncontent-length: 6\r\n\r\n",
            400,
            "invalid_http",
        ),
        (
            "POST /v1/chat/completions HTTP/1.1\r\ncontent-length: -5\r\n\r\n",
            400,
            "invalid_http",
        ),
        ("NOT A REQUEST\r\n\r\n", 400, "invalid_http"),
    ];
    for (request, status, code) in cases {
        let mut c = Reader::connect(&s).await;
        c.send(request.as_bytes()).await;
        let answer = c.answer(false).await;
        assert_eq!(answer.status, status, "{request:?}");
        assert_eq!(answer.json()["error"]["code"], code, "{request:?}");
        assert_eq!(answer.header("connection"), Some("close"));
        assert!(c.closed().await, "{request:?}");
    }

    // A bad chunk size inside an otherwise good request.
    let mut c = Reader::connect(&s).await;
    c.send(b"POST /v1/chat/completions HTTP/1.1\r\ntransfer-encoding: chunked\r\n\r\nzz\r\n")
        .await;
    let answer = c.answer(false).await;
    assert_eq!(answer.status, 400);
    assert!(answer.json()["error"]["message"]
        .as_str()
        .unwrap()
        .contains("chunked"));
    assert!(c.closed().await);

    // A head over the limit.
    let mut c = Reader::connect(&s).await;
    let big = format!(
        "GET /health HTTP/1.1\r\nx-big: {}\r\n\r\n",
        "a".repeat(70 * 1024)
    );
    c.send(big.as_bytes()).await;
    let answer = c.answer(false).await;
    assert_eq!(answer.status, 431);
    assert!(c.closed().await);
}

#[tokio::test]
async fn a_chunked_upload_over_the_limit_is_refused() {
    let s = setup().await;
    let mut c = Reader::connect(&s).await;
    let piece = "x".repeat(40 * 1024);
    c.send(
        format!(
            "POST /v1/chat/completions HTTP/1.1\r\ntransfer-encoding: chunked\r\n\r\n\
             {:x}\r\n{piece}\r\n{:x}\r\n{piece}\r\n",
            piece.len(),
            piece.len()
        )
        .as_bytes(),
    )
    .await;
    let answer = c.answer(false).await;
    assert_eq!(answer.status, 413);
    assert_eq!(answer.json()["error"]["code"], "request_too_large");
    assert!(c.closed().await);
}

/// A client that hangs up while its (non-streamed) answer is awaited cancels the upstream
/// request: the backend's in-flight count drops long before the backend would have answered.
#[tokio::test]
async fn hanging_up_before_the_answer_cancels_the_upstream_request() {
    let s = setup().await;
    s.fast.set(|b| b.latency = Duration::from_secs(3));
    let inflight = || -> u32 { s.gw.live().upstreams.all().map(|b| b.inflight()).sum() };
    let mut c = Reader::connect(&s).await;
    c.send(chat_request("what is the capital of France?", "").as_bytes())
        .await;
    let mut waited = 0;
    while inflight() == 0 {
        assert!(waited < 200, "the request reached a backend");
        tokio::time::sleep(Duration::from_millis(10)).await;
        waited += 1;
    }
    drop(c);
    let mut waited = 0;
    while inflight() != 0 {
        assert!(
            waited < 100,
            "the upstream request is still in flight 1 s after the hang-up"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
        waited += 1;
    }
    // The listener still serves.
    s.fast.set(|b| b.latency = Duration::ZERO);
    let r = s.chat(ask("auto", "hello")).await;
    assert_eq!(r.status(), 200);
}

/// A sized body larger than the read buffer, arriving in pieces, with the next request in the
/// same write as its last piece: the body is read whole and the next request is not lost.
#[tokio::test]
async fn a_large_body_in_pieces_is_read_whole_and_the_next_request_kept() {
    let s = setup().await;
    let text = format!("what is the capital of France? {}", "padding ".repeat(7000));
    let request = chat_request(&text, "");
    assert!(request.len() > 50 * 1024);
    let (a, rest) = request.split_at(3000);
    let (b, c) = rest.split_at(30_000);
    let mut c_and_next = c.to_string();
    c_and_next.push_str(&chat_request("Please prove that sqrt(2) is irrational", ""));
    let mut conn = Reader::connect(&s).await;
    for piece in [a, b, c_and_next.as_str()] {
        conn.send(piece.as_bytes()).await;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let first = conn.answer(false).await;
    assert_eq!(first.status, 200, "{first:?}");
    assert_eq!(first.header("x-vsr-selected-decision"), Some("everyday"));
    let sent = s.fast.last().expect("forwarded");
    assert_eq!(sent.body["messages"][0]["content"], text.as_str());
    let second = conn.answer(false).await;
    assert_eq!(second.header("x-vsr-selected-decision"), Some("reasoning"));
}

/// A client that stops inside its request head, or between pieces of its body, gets a 408
/// and its connection closes; a pause between requests shorter than the idle timeout is not
/// timed by the read timeout.
#[tokio::test]
async fn a_client_stalling_inside_a_request_gets_a_408() {
    let s = setup_with(vllm_sr_gateway::Limits {
        request_read_timeout: Duration::from_millis(300),
        idle_timeout: Some(Duration::from_millis(1500)),
        ..limits()
    })
    .await;

    // Idle longer than the read timeout between requests: still served.
    let mut idle = Reader::connect(&s).await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    idle.send(chat_request("hello", "").as_bytes()).await;
    assert_eq!(idle.answer(false).await.status, 200);
    tokio::time::sleep(Duration::from_millis(600)).await;
    idle.send(chat_request("hello", "").as_bytes()).await;
    assert_eq!(idle.answer(false).await.status, 200);

    // Inside the head.
    let mut c = Reader::connect(&s).await;
    c.send(b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\n")
        .await;
    let answer = c.answer(false).await;
    assert_eq!(answer.status, 408);
    assert_eq!(answer.json()["error"]["code"], "request_timeout");
    assert!(c.closed().await);

    // Inside a sized body, and inside a chunked one.
    let full = chat_request("hello", "");
    let chunked = "POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\n\
                   transfer-encoding: chunked\r\n\r\n5\r\n{\"mod";
    for partial in [&full[..full.len() - 5], chunked] {
        let mut c = Reader::connect(&s).await;
        c.send(partial.as_bytes()).await;
        let answer = c.answer(false).await;
        assert_eq!(answer.status, 408, "{partial}");
        assert!(c.closed().await);
    }
}

/// A keep-alive connection idle longer than the idle timeout between requests is closed;
/// each idle wait is timed on its own, however long the connection has lived.
#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed_after_the_idle_timeout() {
    let s = setup_with(vllm_sr_gateway::Limits {
        idle_timeout: Some(Duration::from_millis(400)),
        ..limits()
    })
    .await;
    let mut c = Reader::connect(&s).await;
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_millis(250)).await;
        c.send(chat_request("hello", "").as_bytes()).await;
        assert_eq!(c.answer(false).await.status, 200);
    }
    let idle_from = std::time::Instant::now();
    assert!(c.closed().await, "closed once idle for the whole timeout");
    let waited = idle_from.elapsed();
    assert!(
        waited >= Duration::from_millis(350),
        "closed after {waited:?}, before the timeout"
    );
    // A connection that never sends a request is closed too.
    let mut silent = Reader::connect(&s).await;
    assert!(silent.closed().await);
}
