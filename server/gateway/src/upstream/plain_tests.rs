//! The plain pool against a hand-written HTTP/1.1 backend that counts its connections.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

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
        buf.drain(..head_end + len);
        seen.heads.lock().push(head);
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
        .body(UpstreamBody::new(Bytes::from_static(b"{\"model\":\"m\"}")))
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
        // Time for the connection's driver to see the backend's end of the stream.
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
    for (url, host, target) in [
        (
            "http://10.0.0.1:8000/v1/x?q=1",
            "10.0.0.1:8000",
            "/v1/x?q=1",
        ),
        ("http://vllm/v1/x", "vllm", "/v1/x"),
        ("http://vllm:80/v1/x", "vllm", "/v1/x"),
        ("http://u:p@vllm:81/v1/x", "vllm:81", "/v1/x"),
        ("http://[::1]:8000", "[::1]:8000", "/"),
    ] {
        let mut req = Request::post(url).body(UpstreamBody::default()).unwrap();
        let authority = req.uri().authority().cloned().unwrap();
        super::prepare(&mut req, &authority).unwrap();
        assert_eq!(req.headers()["host"], host, "{url}");
        assert_eq!(req.uri(), target, "{url}");
    }
}
