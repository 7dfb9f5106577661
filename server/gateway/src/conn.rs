//! Serving one accepted client connection on an I/O thread: HTTP/1.1 (our own server,
//! [`crate::h1_server`]), or h2 (hyper's) when the client opens with the HTTP/2 connection
//! preface (prior knowledge, as gRPC and `curl --http2-prior-knowledge` do), with a graceful
//! close when the listener drains.
//!
//! The protocol is decided once per connection from the first bytes, read with `peek` so
//! nothing has to be replayed to the protocol's codec afterwards. (A general auto-detecting
//! server wraps the socket in a rewind buffer and its connection in another future, which
//! every read and every poll of every request pays for.)

use std::time::Duration;

use hyper::server::conn::http2;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

use crate::http::DataPlane;

/// What a client sends first on an h2 connection with prior knowledge (RFC 9113 §3.4).
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// How long a client may take to send enough bytes to tell h2 from HTTP/1.1.
const DETECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The protocol a connection speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Protocol {
    Http1,
    H2,
    /// Closed (or failed) before the protocol was known.
    Gone,
}

/// Serves `stream` until the client closes it, or until `drain` is cancelled and the request
/// in flight (if any) has been answered.
pub(crate) async fn serve(stream: TcpStream, service: DataPlane, drain: CancellationToken) {
    // A client that never sends its first byte is an idle connection too.
    let first_bytes = async {
        match service.idle_timeout() {
            Some(limit) => tokio::time::timeout(limit, detect(&stream))
                .await
                .unwrap_or_else(|_| {
                    tracing::debug!("closing a client connection silent for {limit:?}");
                    Protocol::Gone
                }),
            None => detect(&stream).await,
        }
    };
    let protocol = tokio::select! {
        p = first_bytes => p,
        () = drain.cancelled() => Protocol::Gone,
    };
    match protocol {
        Protocol::Gone => {}
        Protocol::Http1 => crate::h1_server::serve(stream, service, drain).await,
        Protocol::H2 => {
            let conn = http2::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), service);
            let mut conn = std::pin::pin!(conn);
            let served = tokio::select! {
                biased;
                r = conn.as_mut() => r,
                () = drain.cancelled() => {
                    conn.as_mut().graceful_shutdown();
                    conn.await
                }
            };
            if let Err(e) = served {
                tracing::debug!("h2 client connection ended: {e}");
            }
        }
    }
}

/// Reads (without consuming) the first bytes of a connection: the h2 preface or anything else.
async fn detect(stream: &TcpStream) -> Protocol {
    let started = tokio::time::Instant::now();
    let mut buf = [0u8; H2_PREFACE.len()];
    loop {
        let n = match stream.peek(&mut buf).await {
            Ok(0) | Err(_) => return Protocol::Gone,
            Ok(n) => n,
        };
        if buf[..n] != H2_PREFACE[..n] {
            return Protocol::Http1;
        }
        if n == H2_PREFACE.len() {
            return Protocol::H2;
        }
        // A prefix of the preface so far: `peek` would return the same bytes at once, so wait
        // a little for the rest.
        if started.elapsed() > DETECT_TIMEOUT {
            return Protocol::Gone;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;
    use tokio::net::TcpListener;

    /// What `detect` makes of a client that sends `first`, pausing between the pieces, and
    /// then closes.
    async fn detected(first: &[&[u8]]) -> Protocol {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut client = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        client.set_nodelay(true).unwrap();
        let (server, _) = listener.accept().await.unwrap();
        let send = async move {
            for p in first {
                client.write_all(p).await.unwrap();
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        };
        tokio::join!(detect(&server), send).0
    }

    #[tokio::test]
    async fn the_first_bytes_tell_h2_from_http1() {
        assert_eq!(
            detected(&[b"POST /v1/chat/completions HTTP/1.1\r\n"]).await,
            Protocol::Http1
        );
        assert_eq!(detected(&[b"G"]).await, Protocol::Http1);
        assert_eq!(detected(&[H2_PREFACE]).await, Protocol::H2);
        // The preface in pieces: the detector waits for the rest.
        assert_eq!(
            detected(&[b"PRI", &H2_PREFACE[3..10], &H2_PREFACE[10..]]).await,
            Protocol::H2
        );
        // `PRI` then something else is not h2.
        assert_eq!(
            detected(&[b"PRI", b" / HTTP/1.1\r\n"]).await,
            Protocol::Http1
        );
        assert_eq!(detected(&[]).await, Protocol::Gone);
    }
}
