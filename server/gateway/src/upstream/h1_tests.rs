//! The HTTP/1.1 codec against hand-written bytes.

use bytes::{Bytes, BytesMut};
use http::{HeaderMap, HeaderValue, Method, StatusCode, Version};

use super::{
    encode_head, framing, keep_alive, parse_head, Decoder, Framing, Head, ProtoError, Step,
};

fn head(text: &str) -> Head {
    let mut buf = BytesMut::from(text);
    let head = parse_head(&mut buf).unwrap().unwrap();
    assert!(buf.is_empty(), "the whole head is taken");
    head
}

/// `parse_head` of `bytes` in a buffer of their own.
fn parse(bytes: &[u8]) -> Result<Option<Head>, ProtoError> {
    parse_head(&mut BytesMut::from(bytes))
}

/// Feeds `wire` to a decoder `split` bytes at a time; the body, and whether it ended.
fn decode(framing: Framing, wire: &[u8], split: usize) -> Result<(Vec<u8>, bool), ProtoError> {
    let mut d = Decoder::new(framing);
    let mut buf = BytesMut::new();
    let mut body = Vec::new();
    for piece in wire.chunks(split.max(1)) {
        buf.extend_from_slice(piece);
        loop {
            match d.step(&mut buf)? {
                Step::Data(b) => body.extend_from_slice(&b),
                Step::NeedMore => break,
                Step::Done => return Ok((body, true)),
            }
        }
    }
    Ok((body, d.is_done()))
}

#[test]
fn the_request_head_has_a_host_a_length_and_no_framing_headers_of_the_caller() {
    let mut headers = HeaderMap::new();
    headers.insert("content-type", HeaderValue::from_static("application/json"));
    headers.insert("content-length", HeaderValue::from_static("999"));
    headers.insert("transfer-encoding", HeaderValue::from_static("chunked"));
    headers.append("x-a", HeaderValue::from_static("1"));
    headers.append("x-a", HeaderValue::from_static("2"));
    let mut out = Vec::new();
    encode_head(
        &mut out,
        &Method::POST,
        "/v1/chat/completions?x=1",
        "vllm:8000",
        &headers,
        12,
    );
    assert_eq!(
        String::from_utf8(out).unwrap(),
        "POST /v1/chat/completions?x=1 HTTP/1.1\r\nhost: vllm:8000\r\n\
         content-type: application/json\r\nx-a: 1\r\nx-a: 2\r\ncontent-length: 12\r\n\r\n"
    );

    // A caller's host wins; a GET without a body has no length.
    let mut headers = HeaderMap::new();
    headers.insert("host", HeaderValue::from_static("other"));
    let mut out = Vec::new();
    encode_head(&mut out, &Method::GET, "/health", "vllm", &headers, 0);
    assert_eq!(out, b"GET /health HTTP/1.1\r\nhost: other\r\n\r\n");

    // An empty POST still says its length.
    let mut out = Vec::new();
    encode_head(&mut out, &Method::POST, "/", "h", &HeaderMap::new(), 0);
    assert_eq!(
        out,
        b"POST / HTTP/1.1\r\nhost: h\r\ncontent-length: 0\r\n\r\n"
    );
}

#[test]
fn a_response_head_parses_only_once_complete() {
    let text = "HTTP/1.1 201 Created\r\nContent-Type: application/json\r\nX-Y: a\r\nx-y: b\r\n\r\n";
    for end in [0, 10, text.len() - 1] {
        let mut buf = BytesMut::from(&text.as_bytes()[..end]);
        assert!(parse_head(&mut buf).unwrap().is_none(), "{end}");
        assert_eq!(buf.len(), end, "nothing taken");
    }
    let mut wire = BytesMut::from(text);
    wire.extend_from_slice(b"{}");
    let h = parse_head(&mut wire).unwrap().unwrap();
    assert_eq!(&wire[..], b"{}", "the body stays");
    assert_eq!(h.status, StatusCode::CREATED);
    assert_eq!(h.version, Version::HTTP_11);
    let written: Vec<_> = h.headers.iter().collect();
    assert_eq!(
        written,
        [
            (&b"Content-Type"[..], &b"application/json"[..]),
            (b"X-Y", b"a"),
            (b"x-y", b"b")
        ],
        "as written, in order"
    );
    let map = h.headers.to_map();
    assert_eq!(map["content-type"], "application/json");
    let ys: Vec<_> = map.get_all("x-y").iter().collect();
    assert_eq!(ys, ["a", "b"]);
    assert_eq!(head("HTTP/1.0 200 OK\r\n\r\n").version, Version::HTTP_10);
}

#[test]
fn malformed_and_oversized_heads_are_errors() {
    assert!(matches!(
        parse(b"HTTP/1.1 2x0 OK\r\n\r\n"),
        Err(ProtoError::Head(_))
    ));
    assert!(matches!(
        parse(b"SMTP ready\r\n\r\n"),
        Err(ProtoError::Head(_))
    ));
    let mut big = b"HTTP/1.1 200 OK\r\n".to_vec();
    while big.len() <= super::MAX_HEAD {
        big.extend_from_slice(b"x-filler: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n");
    }
    assert!(matches!(
        parse(&big),
        Err(ProtoError::HeadTooLarge | ProtoError::Head(_))
    ));
    let text = ProtoError::Head(httparse::Error::Status).to_string();
    assert_eq!(text, "invalid response head: invalid response status");
}

#[test]
fn framing_follows_rfc_9112() {
    let post = Method::POST;
    let cases = [
        (
            "HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\n",
            Framing::Length(5),
        ),
        (
            "HTTP/1.1 200 OK\r\ncontent-length: 5, 5\r\n\r\n",
            Framing::Length(5),
        ),
        (
            "HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n",
            Framing::Empty,
        ),
        (
            "HTTP/1.1 204 No Content\r\ncontent-length: 5\r\n\r\n",
            Framing::Empty,
        ),
        ("HTTP/1.1 304 Not Modified\r\n\r\n", Framing::Empty),
        (
            "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n",
            Framing::Chunked,
        ),
        (
            "HTTP/1.1 200 OK\r\ntransfer-encoding: gzip, Chunked\r\n\r\n",
            Framing::Chunked,
        ),
        // Transfer-Encoding overrides Content-Length.
        (
            "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\ncontent-length: 3\r\n\r\n",
            Framing::Chunked,
        ),
        (
            "HTTP/1.1 200 OK\r\ntransfer-encoding: gzip\r\n\r\n",
            Framing::Close,
        ),
        ("HTTP/1.1 200 OK\r\n\r\n", Framing::Close),
    ];
    for (text, want) in cases {
        assert_eq!(framing(&post, &head(text)).unwrap(), want, "{text}");
    }
    let h = head("HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\n");
    assert_eq!(framing(&Method::HEAD, &h).unwrap(), Framing::Empty);
    for bad in [
        "HTTP/1.1 200 OK\r\ncontent-length: 5\r\ncontent-length: 6\r\n\r\n",
        "HTTP/1.1 200 OK\r\ncontent-length: -1\r\n\r\n",
        "HTTP/1.1 200 OK\r\ncontent-length: 5x\r\n\r\n",
        "HTTP/1.1 200 OK\r\ncontent-length: 99999999999999999999\r\n\r\n",
    ] {
        assert!(
            matches!(framing(&post, &head(bad)), Err(ProtoError::ContentLength)),
            "{bad}"
        );
    }
}

#[test]
fn keep_alive_follows_the_version_and_the_connection_header() {
    let cases = [
        ("HTTP/1.1 200 OK\r\ncontent-length: 1\r\n\r\n", true),
        (
            "HTTP/1.1 200 OK\r\ncontent-length: 1\r\nconnection: Close\r\n\r\n",
            false,
        ),
        (
            "HTTP/1.1 200 OK\r\ncontent-length: 1\r\nconnection: x, close\r\n\r\n",
            false,
        ),
        ("HTTP/1.0 200 OK\r\ncontent-length: 1\r\n\r\n", false),
        (
            "HTTP/1.0 200 OK\r\ncontent-length: 1\r\nconnection: keep-alive\r\n\r\n",
            true,
        ),
        // A close-delimited body uses the connection up.
        ("HTTP/1.1 200 OK\r\n\r\n", false),
    ];
    for (text, want) in cases {
        let h = head(text);
        let f = framing(&Method::POST, &h).unwrap();
        assert_eq!(keep_alive(&h, f), want, "{text}");
    }
}

#[test]
fn a_length_body_ends_at_its_length_whatever_the_pieces() {
    for split in [1, 2, 3, 100] {
        let (body, done) = decode(Framing::Length(5), b"hello", split).unwrap();
        assert_eq!((&body[..], done), (&b"hello"[..], true), "{split}");
    }
    // Bytes after the body stay in the buffer.
    let mut d = Decoder::new(Framing::Length(2));
    assert_eq!(d.remaining(), Some(2));
    let mut buf = BytesMut::from(&b"okHTTP"[..]);
    assert_eq!(
        d.step(&mut buf).unwrap(),
        Step::Data(Bytes::from_static(b"ok"))
    );
    assert!(d.is_done());
    assert_eq!(d.remaining(), Some(0));
    assert_eq!(d.step(&mut buf).unwrap(), Step::Done);
    assert_eq!(&buf[..], b"HTTP");
    // Cut short.
    let mut d = Decoder::new(Framing::Length(9));
    let mut buf = BytesMut::from(&b"abc"[..]);
    assert!(matches!(d.step(&mut buf).unwrap(), Step::Data(_)));
    assert!(matches!(d.eof(), Err(ProtoError::Truncated)));
}

#[test]
fn a_chunked_body_decodes_whatever_the_pieces() {
    let wire: &[u8] = b"5;ext=1\r\nhello\r\n1 \r\n,\r\n6\n world\n0\r\nx-trailer: t\r\n\r\nNEXT";
    for split in [1, 2, 3, 7, 1000] {
        let (body, done) = decode(Framing::Chunked, wire, split).unwrap();
        assert_eq!(String::from_utf8(body).unwrap(), "hello, world", "{split}");
        assert!(done, "{split}");
    }
    // What follows the body is left for the next response.
    let mut d = Decoder::new(Framing::Chunked);
    let mut buf = BytesMut::from(wire);
    while d.step(&mut buf).unwrap() != Step::Done {}
    assert_eq!(&buf[..], b"NEXT");
    // Big sizes in either case.
    let (body, _) = decode(
        Framing::Chunked,
        b"A\r\n0123456789\r\na\r\n0123456789\r\n0\r\n\r\n",
        4,
    )
    .unwrap();
    assert_eq!(body.len(), 20);
}

#[test]
fn malformed_chunked_bodies_are_errors() {
    for (wire, want) in [
        (&b"zz\r\n"[..], "size"),
        (b"\r\n", "size"),
        (b"5 x\r\n", "size"),
        (b"ffffffffffffffff\r\n", "size"),
        (b"2\r\nhiX\r\n", "end"),
        (b"2\r\nhi\rX", "end"),
    ] {
        let err = decode(Framing::Chunked, wire, 1000).unwrap_err();
        let ok = match want {
            "size" => matches!(err, ProtoError::ChunkSize),
            _ => matches!(err, ProtoError::ChunkEnd),
        };
        assert!(ok, "{:?}: {err:?}", String::from_utf8_lossy(wire));
    }
    // A size line that never ends.
    let long = vec![b'1'; 5000];
    assert!(matches!(
        decode(Framing::Chunked, &long, 1000),
        Err(ProtoError::ChunkSize)
    ));
    // Cut in the middle of a chunk.
    let mut d = Decoder::new(Framing::Chunked);
    let mut buf = BytesMut::from(&b"5\r\nhe"[..]);
    assert!(matches!(d.step(&mut buf).unwrap(), Step::Data(_)));
    assert_eq!(d.step(&mut buf).unwrap(), Step::NeedMore);
    assert!(matches!(d.eof(), Err(ProtoError::Truncated)));
}

#[test]
fn a_close_delimited_body_ends_with_the_connection() {
    let mut d = Decoder::new(Framing::Close);
    assert_eq!(d.remaining(), None);
    let mut buf = BytesMut::from(&b"abc"[..]);
    assert_eq!(
        d.step(&mut buf).unwrap(),
        Step::Data(Bytes::from_static(b"abc"))
    );
    assert_eq!(d.step(&mut buf).unwrap(), Step::NeedMore);
    d.eof().unwrap();
    assert!(d.is_done());
    assert_eq!(d.step(&mut buf).unwrap(), Step::Done);
}

#[test]
fn an_empty_body_is_done_from_the_start() {
    let mut d = Decoder::new(Framing::Empty);
    assert!(d.is_done());
    assert_eq!(d.remaining(), Some(0));
    assert_eq!(d.step(&mut BytesMut::new()).unwrap(), Step::Done);
}
