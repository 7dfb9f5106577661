//! The plain pool against a hand-written HTTP/1.1 backend that counts its connections.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use super::RawHeaders;
use bytes::Bytes;
use http::Request;
use http_body_util::BodyExt;
use parking_lot::Mutex;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::task::TaskTracker;

use super::PlainPool;
use crate::upstream::client::{describe, UpstreamBody};

/// How the test backend answers.
#[derive(Clone, Copy, PartialEq)]
enum Mode {
    /// `200` with a 2-byte body; the connection stays open.
    KeepAlive,
    /// The same answer, then the backend closes the connection (without saying so).
    CloseAfterOne,
    /// A chunked head and one chunk, then nothing until the client goes away.
    Hang,
    /// These bytes as the answer to every request; the connection stays open.
    Raw(&'static [u8]),
    /// These bytes as the answer, then the backend closes the connection.
    RawThenClose(&'static [u8]),
    /// The request body back, as the response body.
    Echo,
    /// The first request on a connection gets the `KeepAlive` answer; at the second the
    /// backend closes the connection without answering (its keep-alive timeout raced it).
    SilentSecond,
}

#[derive(Default)]
struct Seen {
    accepted: AtomicUsize,
    /// Connections the client closed while the backend was still sending.
    closed_by_client: AtomicUsize,
    /// Connections the client closed between requests.
    ended: AtomicUsize,
    heads: Mutex<Vec<String>>,
}

async fn backend(mode: Mode) -> (String, Arc<Seen>, TaskTracker) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let seen = Arc::new(Seen::default());
    let tasks = TaskTracker::new();
    let (s, t) = (seen.clone(), tasks.clone());
    tasks.spawn(async move {
        while let Ok((conn, _)) = listener.accept().await {
            s.accepted.fetch_add(1, Ordering::SeqCst);
            t.spawn(serve(conn, mode, s.clone()));
        }
    });
    (base, seen, tasks)
}

async fn serve(mut conn: TcpStream, mode: Mode, seen: Arc<Seen>) {
    let mut buf = Vec::new();
    loop {
        let Some(head_end) = read_head(&mut conn, &mut buf).await else {
            seen.ended.fetch_add(1, Ordering::SeqCst);
            return;
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).to_lowercase();
        let len: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .map_or(0, |v| v.trim().parse().unwrap());
        while buf.len() < head_end + len {
            let mut chunk = [0u8; 4096];
            match conn.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
        let body: Vec<u8> = buf.drain(..head_end + len).skip(head_end).collect();
        if mode == Mode::Echo {
            let head = format!("HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n", body.len());
            if conn.write_all(head.as_bytes()).await.is_err()
                || conn.write_all(&body).await.is_err()
            {
                return;
            }
            continue;
        }
        let nth = {
            let mut heads = seen.heads.lock();
            heads.push(head);
            heads.len()
        };
        if mode == Mode::SilentSecond && nth % 2 == 0 {
            return;
        }
        match mode {
            Mode::Raw(answer) => {
                if conn.write_all(answer).await.is_err() {
                    return;
                }
                continue;
            }
            Mode::RawThenClose(answer) => {
                let _ = conn.write_all(answer).await;
                return;
            }
            _ => {}
        }
        if mode == Mode::Hang {
            let _ = conn
                .write_all(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n2\r\nhi\r\n")
                .await;
            let mut rest = [0u8; 64];
            while let Ok(n) = conn.read(&mut rest).await {
                if n == 0 {
                    seen.closed_by_client.fetch_add(1, Ordering::SeqCst);
                    return;
                }
            }
            return;
        }
        if conn
            .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
            .await
            .is_err()
            || mode == Mode::CloseAfterOne
        {
            return;
        }
    }
}

/// Reads until the end of a request head; its length, or `None` at the end of the stream.
async fn read_head(conn: &mut TcpStream, buf: &mut Vec<u8>) -> Option<usize> {
    loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            return Some(i + 4);
        }
        let mut chunk = [0u8; 4096];
        match conn.read(&mut chunk).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

fn post(base: &str) -> Request<UpstreamBody> {
    Request::post(format!("{base}/v1/chat/completions"))
        .body(Bytes::from_static(b"{\"model\":\"m\"}"))
        .unwrap()
}

fn pool() -> Arc<PlainPool> {
    Arc::new(PlainPool::new(
        Duration::from_secs(2),
        Duration::from_secs(90),
    ))
}

/// Waits up to 2 s for `count` to reach `n`.
async fn reaches(count: &AtomicUsize, n: usize) -> bool {
    for _ in 0..200 {
        if count.load(Ordering::SeqCst) >= n {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    false
}

#[tokio::test]
async fn reuses_one_connection_and_sends_origin_form_with_a_host_header() {
    let (base, seen, _tasks) = backend(Mode::KeepAlive).await;
    let pool = pool();
    for _ in 0..5 {
        let resp = pool.send(post(&base)).await.unwrap();
        assert_eq!(resp.status(), 200);
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(&body[..], b"ok");
    }
    assert_eq!(seen.accepted.load(Ordering::SeqCst), 1);
    let heads = seen.heads.lock();
    assert_eq!(heads.len(), 5);
    let authority = base.trim_start_matches("http://");
    for head in heads.iter() {
        assert!(
            head.starts_with("post /v1/chat/completions http/1.1\r\n"),
            "{head}"
        );
        assert!(
            head.contains(&format!("\r\nhost: {authority}\r\n")),
            "{head}"
        );
    }
}

#[tokio::test]
async fn a_connection_the_backend_closed_is_not_reused() {
    let (base, seen, _tasks) = backend(Mode::CloseAfterOne).await;
    let pool = pool();
    for _ in 0..3 {
        let resp = pool.send(post(&base)).await.unwrap();
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(&body[..], b"ok");
        // Time for the backend's end of the stream to arrive.
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(seen.accepted.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn a_body_dropped_before_its_end_closes_its_connection() {
    let (base, seen, _tasks) = backend(Mode::Hang).await;
    let pool = pool();
    let resp = pool.send(post(&base)).await.unwrap();
    let mut body = resp.into_body();
    let first = body.frame().await.unwrap().unwrap().into_data().unwrap();
    assert_eq!(&first[..], b"hi");
    drop(body);
    assert!(reaches(&seen.closed_by_client, 1).await);
    // The next request needs a connection of its own.
    let resp = pool.send(post(&base)).await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(seen.accepted.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn idle_connections_are_closed_after_the_idle_timeout_without_more_traffic() {
    let (base, seen, _tasks) = backend(Mode::KeepAlive).await;
    let pool = Arc::new(PlainPool::new(
        Duration::from_secs(2),
        Duration::from_millis(200),
    ));
    let resp = pool.send(post(&base)).await.unwrap();
    resp.into_body().collect().await.unwrap();
    assert_eq!(pool.idle.lock().len(), 1, "kept for the next request");
    // Still open well within the idle timeout.
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(seen.ended.load(Ordering::SeqCst), 0);
    // The sweeper closes it once the timeout has passed, with no request to trigger it.
    assert!(
        reaches(&seen.ended, 1).await,
        "the idle connection was closed"
    );
    assert!(pool.idle.lock().is_empty());
    assert_eq!(seen.accepted.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_pooled_connection_closed_at_the_next_request_is_retried_on_a_new_one() {
    let (base, seen, _tasks) = backend(Mode::SilentSecond).await;
    let pool = pool();
    for _ in 0..2 {
        let resp = pool.send(post(&base)).await.unwrap();
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(&body[..], b"ok");
    }
    assert_eq!(seen.accepted.load(Ordering::SeqCst), 2);
    assert_eq!(seen.heads.lock().len(), 3, "the second request, sent twice");
}

/// One request: the status, the headers and the body (or why it could not be read).
async fn exchange(
    pool: &Arc<PlainPool>,
    base: &str,
) -> (http::StatusCode, http::HeaderMap, Result<Bytes, String>) {
    let resp = pool.send(post(base)).await.unwrap();
    let (parts, body) = resp.into_parts();
    assert!(parts.headers.is_empty(), "the headers travel with the body");
    let headers = body.headers().map(RawHeaders::to_map).unwrap_or_default();
    let body = body
        .collect()
        .await
        .map(http_body_util::Collected::to_bytes)
        .map_err(|e| e.to_string());
    (parts.status, headers, body)
}

#[tokio::test]
async fn a_new_connection_closed_without_an_answer_is_an_error_and_not_retried() {
    let (base, seen, _tasks) = backend(Mode::RawThenClose(b"")).await;
    let err = pool().send(post(&base)).await.unwrap_err();
    assert_eq!(
        describe(&err),
        "request failed: connection closed before the response head"
    );
    assert_eq!(seen.accepted.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_malformed_head_is_an_error() {
    let (base, _seen, _tasks) = backend(Mode::RawThenClose(b"HTTP/1.1 abc\r\n\r\n")).await;
    let err = pool().send(post(&base)).await.unwrap_err();
    assert!(
        describe(&err).starts_with("request failed: invalid response head: "),
        "{}",
        describe(&err)
    );
}

#[tokio::test]
async fn a_body_cut_short_is_an_error_and_a_close_delimited_one_is_not() {
    let cut = b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nab";
    let (base, _seen, _tasks) = backend(Mode::RawThenClose(cut)).await;
    let (status, _, body) = exchange(&pool(), &base).await;
    assert_eq!(status, 200);
    assert_eq!(
        body.unwrap_err(),
        "connection closed before the response body ended"
    );

    let until_close = b"HTTP/1.1 200 OK\r\n\r\nuntil the end";
    let (base, seen, _tasks) = backend(Mode::RawThenClose(until_close)).await;
    let pool = pool();
    for _ in 0..2 {
        let (_, _, body) = exchange(&pool, &base).await;
        assert_eq!(&body.unwrap()[..], b"until the end");
    }
    assert_eq!(seen.accepted.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn interim_heads_are_skipped_and_empty_bodies_keep_the_connection() {
    let answer = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\nx-a: 1\r\n\r\n";
    let (base, seen, _tasks) = backend(Mode::Raw(answer)).await;
    let pool = pool();
    for _ in 0..3 {
        let (status, headers, body) = exchange(&pool, &base).await;
        assert_eq!(status, 204);
        assert_eq!(headers["x-a"], "1");
        assert!(body.unwrap().is_empty());
    }
    assert_eq!(seen.accepted.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_response_that_says_close_does_not_go_back_to_the_pool() {
    let answer = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok";
    let (base, seen, _tasks) = backend(Mode::Raw(answer)).await;
    let pool = pool();
    for _ in 0..2 {
        let (_, _, body) = exchange(&pool, &base).await;
        assert_eq!(&body.unwrap()[..], b"ok");
    }
    assert_eq!(seen.accepted.load(Ordering::SeqCst), 2);
    assert!(reaches(&seen.ended, 1).await, "the client closed the first");
}

#[tokio::test]
async fn chunks_already_read_come_out_without_waiting_and_the_connection_is_reused() {
    let answer = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n\
        6\r\ndata: \r\n3\r\nabc\r\n2\r\n\n\n\r\n0\r\n\r\n";
    let (base, seen, _tasks) = backend(Mode::Raw(answer)).await;
    let pool = pool();
    for _ in 0..3 {
        let resp = pool.send(post(&base)).await.unwrap();
        let headers = resp.body().headers().unwrap().to_map();
        assert_eq!(headers["transfer-encoding"], "chunked");
        assert!(
            resp.headers().is_empty(),
            "the headers travel with the body"
        );
        let mut body = std::pin::pin!(resp.into_body());
        // The whole answer has long arrived: every frame is ready without another read.
        tokio::time::sleep(Duration::from_millis(20)).await;
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        let mut frames = Vec::new();
        loop {
            match http_body::Body::poll_frame(body.as_mut(), &mut cx) {
                std::task::Poll::Ready(Some(frame)) => {
                    frames.push(frame.unwrap().into_data().unwrap());
                }
                std::task::Poll::Ready(None) => break,
                std::task::Poll::Pending => panic!("waited with {frames:?} read"),
            }
        }
        assert_eq!(frames, ["data: ", "abc", "\n\n"]);
        assert!(http_body::Body::is_end_stream(&*body));
    }
    assert_eq!(seen.accepted.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn bodies_larger_than_the_socket_buffers_go_both_ways_intact() {
    let (base, seen, _tasks) = backend(Mode::Echo).await;
    let pool = pool();
    let big: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
    let big = Bytes::from(big);
    for _ in 0..2 {
        let req = Request::post(format!("{base}/v1/chat/completions"))
            .body(big.clone())
            .unwrap();
        let resp = pool.send(req).await.unwrap();
        assert_eq!(
            resp.body().headers().unwrap().to_map()["content-length"],
            "3000000"
        );
        let mut body = resp.into_body();
        let mut frames = 0;
        let mut got = Vec::new();
        while let Some(frame) = body.frame().await {
            got.extend_from_slice(&frame.unwrap().into_data().unwrap());
            frames += 1;
        }
        assert!(frames > 1, "read in pieces");
        // Reads grow with a large body: far fewer than one per 8 KiB.
        assert!(frames < 3_000_000 / 8192 / 2, "{frames} frames");
        assert!(got == big, "the echoed body differs");
    }
    assert_eq!(seen.accepted.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_refused_connection_says_so() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let err = pool()
        .send(post(&format!("http://127.0.0.1:{port}")))
        .await
        .unwrap_err();
    let text = describe(&err);
    assert!(
        text.starts_with("connection failed: tcp connect error: "),
        "{text}"
    );
    assert!(text.contains("refused"), "{text}");
}

#[test]
fn the_host_header_leaves_out_user_info_and_the_default_port() {
    for (url, host) in [
        ("http://10.0.0.1:8000/v1/x?q=1", "10.0.0.1:8000"),
        ("http://vllm/v1/x", "vllm"),
        ("http://vllm:80/v1/x", "vllm"),
        ("http://u:p@vllm:81/v1/x", "vllm:81"),
        ("http://[::1]:8000", "[::1]:8000"),
    ] {
        let uri: http::Uri = url.parse().unwrap();
        assert_eq!(super::host_header(uri.authority().unwrap()), host, "{url}");
    }
}
