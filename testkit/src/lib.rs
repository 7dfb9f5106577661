//! A mock OpenAI-compatible backend for tests and benchmarks.
//!
//! It speaks the real wire protocol of `POST /v1/chat/completions`: a non-streaming
//! `chat.completion` JSON with `usage`, or SSE `chat.completion.chunk` frames (role, content
//! deltas, a finish chunk, a usage chunk when `stream_options.include_usage` asks for it) ending
//! in `data: [DONE]`. Knobs (latency, forced status codes, a mid-stream cut) are changed at run
//! time through [`MockBackend::set`], and every request it receives is recorded so tests can
//! assert what a proxy forwarded. It also answers `GET /v1/models` and `GET /health`.
//!
//! The mock is a stand-in for an LLM backend only (no GPU here); everything else in the tests
//! is real.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use futures_util::stream;
use parking_lot::Mutex;
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Run-time behaviour of the mock.
#[derive(Debug, Clone, PartialEq)]
pub struct Behavior {
    /// Delay before the response head (and before the first chunk).
    pub latency: Duration,
    /// Delay between SSE chunks.
    pub chunk_delay: Duration,
    /// Content deltas per streamed answer.
    pub chunks: usize,
    /// The next `fail_count` requests get this status with an OpenAI error body.
    pub fail_status: u16,
    /// How many requests still fail (decremented per failed request).
    pub fail_count: u64,
    /// Close the stream after this many content chunks, without `[DONE]`.
    pub cut_after: Option<usize>,
    /// Status of `GET /health`.
    pub health_status: u16,
    /// Name put in the answer text, to tell backends apart.
    pub name: String,
    /// Headers added to every chat answer, as written (real backends send their own, e.g.
    /// `x-request-id` or `openai-processing-ms`).
    pub response_headers: Vec<(String, String)>,
}

impl Default for Behavior {
    fn default() -> Self {
        Self {
            latency: Duration::ZERO,
            chunk_delay: Duration::ZERO,
            chunks: 4,
            fail_status: 500,
            fail_count: 0,
            cut_after: None,
            health_status: 200,
            name: "mock".to_string(),
            response_headers: Vec::new(),
        }
    }
}

/// One request the mock received.
#[derive(Debug, Clone)]
pub struct Recorded {
    /// Request path.
    pub path: String,
    /// Request headers, names lowercased.
    pub headers: Vec<(String, String)>,
    /// The JSON body (`Value::Null` when it was not JSON).
    pub body: Value,
}

impl Recorded {
    /// First value of a header.
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.as_str())
    }
}

#[derive(Debug, Default)]
struct Shared {
    behavior: Mutex<Behavior>,
    recorded: Mutex<Vec<Recorded>>,
    served: AtomicU64,
    health_checks: AtomicU64,
    /// Streams whose client went away before the end.
    aborted_streams: AtomicU64,
    /// When false, bodies are not kept (benchmarks).
    record: bool,
}

/// A running mock backend; stops when dropped or on [`MockBackend::shutdown`].
#[derive(Debug)]
pub struct MockBackend {
    addr: SocketAddr,
    shared: Arc<Shared>,
    cancel: CancellationToken,
    tracker: TaskTracker,
}

impl MockBackend {
    /// Starts a mock on `127.0.0.1:0` that records every request.
    ///
    /// # Errors
    /// When the socket cannot be bound.
    pub async fn start(behavior: Behavior) -> std::io::Result<Self> {
        Self::start_on(
            "127.0.0.1:0".parse().map_err(std::io::Error::other)?,
            behavior,
            true,
        )
        .await
    }

    /// Starts a mock on `addr`; `record: false` keeps no bodies (for load tests).
    ///
    /// # Errors
    /// When the socket cannot be bound.
    pub async fn start_on(
        addr: SocketAddr,
        behavior: Behavior,
        record: bool,
    ) -> std::io::Result<Self> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            behavior: Mutex::new(behavior),
            record,
            ..Shared::default()
        });
        let app = Router::new()
            .route("/v1/chat/completions", post(chat))
            .route("/v1/models", get(models))
            .route("/health", get(health))
            .with_state(shared.clone());
        let cancel = CancellationToken::new();
        let tracker = TaskTracker::new();
        let token = cancel.clone();
        tracker.spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async move { token.cancelled().await })
                .await;
        });
        tracker.close();
        Ok(Self {
            addr,
            shared,
            cancel,
            tracker,
        })
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `host:port`, as a recipe `endpoint`.
    pub fn endpoint(&self) -> String {
        self.addr.to_string()
    }

    /// Changes the behaviour.
    pub fn set(&self, f: impl FnOnce(&mut Behavior)) {
        f(&mut self.shared.behavior.lock());
    }

    /// Requests received so far.
    pub fn recorded(&self) -> Vec<Recorded> {
        self.shared.recorded.lock().clone()
    }

    /// Waits until more than `count` requests have been received (checking every 10 ms, for
    /// at most `limit`); whether they were. Tests use it to act once a request is in flight.
    pub async fn received_more_than(&self, count: usize, limit: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + limit;
        while self.shared.recorded.lock().len() <= count {
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        true
    }

    /// The last chat request received.
    pub fn last(&self) -> Option<Recorded> {
        self.shared
            .recorded
            .lock()
            .iter()
            .rev()
            .find(|r| r.path == "/v1/chat/completions")
            .cloned()
    }

    /// Chat requests answered (including forced failures).
    pub fn served(&self) -> u64 {
        self.shared.served.load(Ordering::Relaxed)
    }

    /// `GET /health` calls received.
    pub fn health_checks(&self) -> u64 {
        self.shared.health_checks.load(Ordering::Relaxed)
    }

    /// Streams abandoned by the client before their end.
    pub fn aborted_streams(&self) -> u64 {
        self.shared.aborted_streams.load(Ordering::Relaxed)
    }

    /// Stops accepting and waits for the server task.
    pub async fn shutdown(self) {
        self.cancel.cancel();
        self.tracker.wait().await;
    }
}

impl Drop for MockBackend {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

async fn health(State(s): State<Arc<Shared>>) -> StatusCode {
    s.health_checks.fetch_add(1, Ordering::Relaxed);
    let status = s.behavior.lock().health_status;
    StatusCode::from_u16(status).unwrap_or(StatusCode::OK)
}

async fn models(State(s): State<Arc<Shared>>) -> Json<Value> {
    let name = s.behavior.lock().name.clone();
    Json(
        json!({"object": "list", "data": [{"id": name, "object": "model", "created": 0, "owned_by": "mock"}]}),
    )
}

fn error_body(status: u16, message: &str) -> Value {
    json!({"error": {"message": message, "type": "server_error", "code": status, "param": null}})
}

async fn chat(state: State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> Response {
    let extra = state.behavior.lock().response_headers.clone();
    let mut resp = chat_answer(state, headers, body).await;
    for (name, value) in extra {
        if let (Ok(name), Ok(value)) = (
            axum::http::HeaderName::try_from(name),
            axum::http::HeaderValue::try_from(value),
        ) {
            resp.headers_mut().append(name, value);
        }
    }
    resp
}

async fn chat_answer(State(s): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> Response {
    let parsed: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    if s.record {
        s.recorded.lock().push(Recorded {
            path: "/v1/chat/completions".to_string(),
            headers: headers
                .iter()
                .map(|(k, v)| {
                    (
                        k.as_str().to_string(),
                        v.to_str().unwrap_or_default().to_string(),
                    )
                })
                .collect(),
            body: parsed.clone(),
        });
    }
    s.served.fetch_add(1, Ordering::Relaxed);
    let b = {
        let mut guard = s.behavior.lock();
        let snapshot = guard.clone();
        if guard.fail_count > 0 {
            guard.fail_count -= 1;
        }
        snapshot
    };
    if !b.latency.is_zero() {
        tokio::time::sleep(b.latency).await;
    }
    if b.fail_count > 0 {
        let status =
            StatusCode::from_u16(b.fail_status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        return (
            status,
            Json(error_body(b.fail_status, "mock backend failure")),
        )
            .into_response();
    }
    if parsed.is_null() {
        return (
            StatusCode::BAD_REQUEST,
            Json(error_body(400, "body is not JSON")),
        )
            .into_response();
    }
    let model = parsed
        .get("model")
        .and_then(Value::as_str)
        .unwrap_or("unknown")
        .to_string();
    let words: Vec<String> = (0..b.chunks.max(1))
        .map(|i| format!("{}-{i} ", b.name))
        .collect();
    let prompt_tokens = approx_tokens(&parsed);
    let usage = json!({
        "prompt_tokens": prompt_tokens,
        "completion_tokens": words.len(),
        "total_tokens": prompt_tokens + words.len() as u64,
        "prompt_tokens_details": {"cached_tokens": 0}
    });
    let id = format!("chatcmpl-mock-{}", s.served.load(Ordering::Relaxed));
    if parsed.get("stream").and_then(Value::as_bool) != Some(true) {
        return Json(json!({
            "id": id,
            "object": "chat.completion",
            "created": 1_700_000_000u64,
            "model": model,
            "choices": [{
                "index": 0,
                "message": {"role": "assistant", "content": words.concat()},
                "finish_reason": "stop",
                "logprobs": null
            }],
            "usage": usage
        }))
        .into_response();
    }
    let include_usage = parsed
        .pointer("/stream_options/include_usage")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let chunk = |delta: Value, finish: Value| {
        json!({
            "id": id, "object": "chat.completion.chunk", "created": 1_700_000_000u64,
            "model": model, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]
        })
    };
    let mut frames: Vec<Value> = vec![chunk(
        json!({"role": "assistant", "content": ""}),
        Value::Null,
    )];
    frames.extend(
        words
            .iter()
            .map(|w| chunk(json!({"content": w}), Value::Null)),
    );
    let cut = b.cut_after.map(|n| n + 1);
    frames.push(chunk(json!({}), json!("stop")));
    if include_usage {
        frames.push(json!({
            "id": id, "object": "chat.completion.chunk", "created": 1_700_000_000u64,
            "model": model, "choices": [], "usage": usage
        }));
    }
    let mut lines: Vec<Bytes> = frames
        .iter()
        .map(|f| Bytes::from(format!("data: {f}\n\n")))
        .collect();
    match cut {
        Some(n) => lines.truncate(n.min(lines.len())),
        None => lines.push(Bytes::from_static(b"data: [DONE]\n\n")),
    }
    let cut_stream = cut.is_some();
    let guard = StreamGuard {
        shared: s.clone(),
        done: false,
    };
    let delay = b.chunk_delay;
    let body = stream::unfold(
        (lines.into_iter(), guard, true),
        move |(mut it, mut guard, first)| async move {
            match it.next() {
                Some(line) => {
                    if !first && !delay.is_zero() {
                        tokio::time::sleep(delay).await;
                    }
                    Some((Ok::<_, std::io::Error>(line), (it, guard, false)))
                }
                None if cut_stream => {
                    guard.finish();
                    Some((
                        Err(std::io::Error::other("mock: stream cut")),
                        (it, guard, false),
                    ))
                }
                None => {
                    guard.finish();
                    None
                }
            }
        },
    );
    Response::builder()
        .header("content-type", "text/event-stream")
        .header("cache-control", "no-cache")
        .body(Body::from_stream(body))
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}

/// Counts streams dropped before their end (the client disconnected).
struct StreamGuard {
    shared: Arc<Shared>,
    done: bool,
}

impl StreamGuard {
    fn finish(&mut self) {
        self.done = true;
    }
}

impl Drop for StreamGuard {
    fn drop(&mut self) {
        if !self.done {
            self.shared.aborted_streams.fetch_add(1, Ordering::Relaxed);
        }
    }
}

fn approx_tokens(body: &Value) -> u64 {
    let chars: usize = body
        .get("messages")
        .and_then(Value::as_array)
        .map(|m| {
            m.iter()
                .filter_map(|x| x.get("content").and_then(Value::as_str))
                .map(str::len)
                .sum()
        })
        .unwrap_or(0);
    (chars as u64).div_ceil(4).max(1)
}
