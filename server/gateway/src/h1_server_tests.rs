#![allow(clippy::unwrap_used, clippy::panic, reason = "tests")]

use super::*;

fn parsed(text: &str) -> Head {
    let mut buf = BytesMut::from(text);
    let head = parse_head(&mut buf).unwrap().expect("complete");
    assert!(buf.is_empty(), "the whole head is taken");
    head
}

fn refused(text: &str) -> ApiError {
    match parse_head(&mut BytesMut::from(text)) {
        Err(e) => e,
        Ok(r) => panic!("accepted {text:?}: {r:?}"),
    }
}

#[test]
fn a_request_head_is_read_with_its_framing_and_connection_options() {
    let h = parsed("POST /v1/chat/completions?x=1 HTTP/1.1\r\nHost: a\r\nContent-Length: 12\r\nX-Two: 1\r\nx-two: 2\r\n\r\n");
    assert_eq!(h.parts.method, Method::POST);
    assert_eq!(h.parts.uri.path(), "/v1/chat/completions");
    assert_eq!(h.parts.uri.query(), Some("x=1"));
    assert_eq!(h.parts.version, Version::HTTP_11);
    assert_eq!(h.parts.headers.get_all("x-two").iter().count(), 2);
    assert_eq!(h.framing, Framing::Length(12));
    assert!(h.keep_alive);
    assert!(!h.expect_continue);

    let h = parsed("GET /health HTTP/1.1\r\nconnection: keep-alive, Close\r\n\r\n");
    assert_eq!(h.framing, Framing::Empty);
    assert!(!h.keep_alive);

    let h = parsed("GET /health HTTP/1.0\r\n\r\n");
    assert!(!h.keep_alive, "HTTP/1.0 closes unless asked");
    let h = parsed("GET /health HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
    assert!(h.keep_alive);

    let h = parsed("POST / HTTP/1.1\r\nTransfer-Encoding: Chunked\r\nExpect: 100-continue\r\n\r\n");
    assert_eq!(h.framing, Framing::Chunked);
    assert!(h.expect_continue);
    let h = parsed("POST / HTTP/1.1\r\ncontent-length: 7, 7\r\n\r\n");
    assert_eq!(h.framing, Framing::Length(7));
    let h = parsed("POST / HTTP/1.1\r\ncontent-length: 0\r\n\r\n");
    assert_eq!(h.framing, Framing::Empty);
}

#[test]
fn a_partial_head_waits_for_more_bytes() {
    let full = "POST /v1/chat/completions HTTP/1.1\r\nhost: a\r\ncontent-length: 2\r\n\r\n{}";
    for cut in 0..full.len() - 2 {
        let mut buf = BytesMut::from(&full[..cut]);
        assert!(parse_head(&mut buf).unwrap().is_none(), "cut at {cut}");
        assert_eq!(buf.len(), cut, "nothing taken");
    }
    let mut buf = BytesMut::from(full);
    let head = parse_head(&mut buf).unwrap().unwrap();
    assert_eq!(&buf[..], b"{}", "the body stays");
    assert_eq!(head.parts.headers["host"], "a");
}

#[test]
fn ambiguous_or_malformed_heads_are_refused_with_their_status() {
    let status = |text: &str| refused(text).status().as_u16();
    let cases: [(&str, u16); 13] = [
        // Both framings at once: the classic smuggling shape.
        (
            "POST / HTTP/1.1\r\ncontent-length: 3\r\ntransfer-encoding: chunked\r\n\r\n",
            400,
        ),
        (
            "POST / HTTP/1.1\r\ncontent-length: 3\r\ncontent-length: 4\r\n\r\n",
            400,
        ),
        ("POST / HTTP/1.1\r\ncontent-length: 3, 4\r\n\r\n", 400),
        ("POST / HTTP/1.1\r\ncontent-length: +3\r\n\r\n", 400),
        ("POST / HTTP/1.1\r\ncontent-length: \r\n\r\n", 400),
        (
            "POST / HTTP/1.1\r\ncontent-length: 99999999999999999999\r\n\r\n",
            400,
        ),
        ("POST / HTTP/1.0\r\ntransfer-encoding: chunked\r\n\r\n", 400),
        ("POST / HTTP/1.1\r\ntransfer-encoding: gzip\r\n\r\n", 501),
        (
            "POST / HTTP/1.1\r\ntransfer-encoding: chunked, chunked\r\n\r\n",
            501,
        ),
        (
            "POST / HTTP/1.1\r\ntransfer-encoding: chunked\r\ntransfer-encoding: gzip\r\n\r\n",
            501,
        ),
        ("GET / HTTP/2.0\r\n\r\n", 400),
        ("GET /\r\n\r\n", 400),
        ("GET / HTTP/1.1\r\nbad header\r\n\r\n", 400),
    ];
    for (text, want) in cases {
        assert_eq!(status(text), want, "{text:?}");
    }

    let many: String = (0..=MAX_HEADERS)
        .map(|i| format!("x-h{i}: v\r\n"))
        .collect();
    assert_eq!(status(&format!("GET / HTTP/1.1\r\n{many}\r\n")), 431);
    let long = format!("GET / HTTP/1.1\r\nx-big: {}", "a".repeat(MAX_HEAD));
    assert_eq!(status(&long), 431);
    assert_eq!(
        status(&format!("{long}\r\n\r\n")),
        431,
        "complete but too long"
    );
}

#[test]
fn the_date_header_is_an_imf_fixdate() {
    let date = http_date();
    let text = std::str::from_utf8(&date).unwrap();
    let parsed = httpdate::parse_http_date(text).unwrap();
    let skew = SystemTime::now().duration_since(parsed).unwrap_or_default();
    assert!(skew.as_secs() <= 2, "{text}");
    assert!(text.ends_with(" GMT"), "{text}");
}

/// A body with all its declared bytes ready at once and its end right after; at its end it
/// notes how many bytes the client has already received.
struct EndSeesClient {
    data: Option<Bytes>,
    peer: std::net::TcpStream,
    seen_at_end: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl http_body::Body for EndSeesClient {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, axum::Error>>> {
        if let Some(data) = self.data.take() {
            return std::task::Poll::Ready(Some(Ok(http_body::Frame::data(data))));
        }
        let mut buf = [0u8; 4096];
        let n = self.peer.peek(&mut buf).unwrap_or(0);
        self.seen_at_end
            .store(n, std::sync::atomic::Ordering::SeqCst);
        std::task::Poll::Ready(None)
    }

    fn size_hint(&self) -> http_body::SizeHint {
        http_body::SizeHint::with_exact(self.data.as_ref().map_or(0, |d| d.len() as u64))
    }
}

/// A served connection, and its client's end (non-blocking).
async fn connection() -> (Client, std::net::TcpStream) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let peer = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    peer.set_nonblocking(true).unwrap();
    let (io, _) = listener.accept().await.unwrap();
    let client = Client {
        io,
        buf: BytesMut::new(),
        out: Vec::new(),
        read_timeout: Duration::from_secs(5),
    };
    (client, peer)
}

#[tokio::test]
async fn a_sized_answer_goes_out_before_the_body_end_runs() {
    let (mut client, peer) = connection().await;
    let seen = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let body = EndSeesClient {
        data: Some(Bytes::from_static(b"{\"ok\":true}")),
        peer: peer.try_clone().unwrap(),
        seen_at_end: seen.clone(),
    };
    let answer = Answer::new(
        axum::response::Response::new(axum::body::Body::new(body)),
        RouterHeaders::new(),
    );
    let reply = Reply {
        version: Version::HTTP_11,
        head_only: false,
        keep_alive: true,
    };
    assert!(client.respond(answer, reply).await.unwrap(), "kept alive");
    let mut all = [0u8; 4096];
    let n = peer.peek(&mut all).unwrap();
    let text = String::from_utf8_lossy(&all[..n]);
    assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text}");
    assert!(text.ends_with("\r\n\r\n{\"ok\":true}"), "{text}");
    assert_eq!(
        seen.load(std::sync::atomic::Ordering::SeqCst),
        n,
        "the whole answer was out when the body's end ran"
    );
}

#[test]
fn chunk_size_lines_are_lowercase_hex() {
    for len in [
        0usize,
        1,
        9,
        10,
        15,
        16,
        255,
        256,
        4096,
        65_535,
        1 << 20,
        usize::MAX,
    ] {
        let mut out = Vec::new();
        chunk_size_line(&mut out, len);
        assert_eq!(String::from_utf8(out).unwrap(), format!("{len:x}\r\n"));
    }
}

#[test]
fn decimals_are_written_as_to_string_writes_them() {
    for n in [
        0u64,
        1,
        9,
        10,
        99,
        100,
        12_345,
        1 << 32,
        u64::MAX - 1,
        u64::MAX,
    ] {
        let mut out = b"x".to_vec();
        push_decimal(&mut out, n);
        assert_eq!(String::from_utf8(out).unwrap(), format!("x{n}"));
    }
}

#[tokio::test]
async fn a_backends_headers_go_out_as_written_less_hop_by_hop_and_replaced_ones() {
    let (mut client, _peer) = connection().await;
    let mut upstream = BytesMut::from(
        "HTTP/1.1 200 OK\r\nX-Request-Id: theirs\r\nConnection: keep-alive\r\n\
         Keep-Alive: timeout=5\r\nContent-Length: 2\r\nOpenAI-Processing-Ms: 12\r\n\
         Date: Mon, 01 Jan 2024 00:00:00 GMT\r\n\r\n",
    );
    let head = crate::upstream::h1::parse_head(&mut upstream)
        .unwrap()
        .unwrap();
    let mut router = RouterHeaders::new();
    router.set(
        HeaderName::from_static("x-request-id"),
        HeaderValue::from_static("ours"),
    );
    let map = HeaderMap::new();
    let headers = || AnswerHeaders {
        map: &map,
        upstream: Some(&head.headers),
        router: &router,
    };
    client.encode_head(StatusCode::OK, headers(), Framing::Length(2), false, true);
    assert_eq!(
        String::from_utf8_lossy(&client.out),
        "HTTP/1.1 200 OK\r\nOpenAI-Processing-Ms: 12\r\nDate: Mon, 01 Jan 2024 00:00:00 GMT\r\n\
         x-request-id: ours\r\ncontent-length: 2\r\n\r\n",
        "the backend's date is kept (no second one); its x-request-id is the router's"
    );
    // An answer to HEAD keeps the length the backend declared.
    client.out.clear();
    client.encode_head(StatusCode::OK, headers(), Framing::Empty, true, true);
    assert!(
        String::from_utf8_lossy(&client.out).contains("\r\nContent-Length: 2\r\n"),
        "{}",
        String::from_utf8_lossy(&client.out)
    );
}
