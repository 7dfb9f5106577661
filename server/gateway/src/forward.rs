//! Forwarding a routed request to one of its model's backends: backend choice, the upstream
//! request (model id, credentials, header edits), retries where safe, outlier bookkeeping, and
//! the response relayed to the client chunk by chunk.
//!
//! Retries happen only before any byte reached the client: on a connection failure or a
//! retriable status of the response head. Once the head is relayed, the body streams through
//! unbuffered; a client disconnect drops the stream, which closes the upstream connection and
//! so cancels the generation.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, Request};
use axum::response::Response;
use bytes::Bytes;
use http_body::{Body as HttpBody, Frame, SizeHint};
use serde_json::Value;
use tokio::sync::OwnedSemaphorePermit;
use tokio::time::Sleep;
use vllm_sr_store::Lifecycle;

use crate::error::ApiError;
use crate::headers::names;
use crate::learning::UsageFeedback;
use crate::live::LiveState;
use crate::metrics::Metrics;
use crate::replay::{End, Pending};
use crate::rewrite::model_id_for;
use crate::service::Routed;
use crate::tap::Tap;
use crate::upstream::client::{describe, read_prefix, UpstreamBody, UpstreamClient};
use crate::upstream::h1::{RawHeaders, HOP_BY_HOP};
use crate::upstream::plain::ResponseBody;
use crate::upstream::{BackendState, Ejection, InflightGuard, Pool};

/// Work the caller defers until the first attempt's request is written to the backend, so
/// that it runs while the backend computes rather than before the request leaves (the
/// replay record, the response's router headers, routing metrics). It runs once: in the
/// first attempt, or when [`WhileSent::pending`] is first read (a request that failed before
/// any attempt). It returns the request's replay record.
pub struct WhileSent<'w> {
    work: Option<Box<dyn FnOnce() -> Option<Pending> + Send + 'w>>,
    pending: Option<Pending>,
}

impl<'w> WhileSent<'w> {
    /// Defers `work`.
    pub fn new(work: impl FnOnce() -> Option<Pending> + Send + 'w) -> Self {
        Self {
            work: Some(Box::new(work)),
            pending: None,
        }
    }

    /// Runs the work unless it has run.
    pub fn run(&mut self) {
        if let Some(work) = self.work.take() {
            self.pending = work();
        }
    }

    /// The replay record (running the work first if it has not run); taken when the
    /// response is relayed, left for the caller to finish as failed otherwise.
    pub fn pending(&mut self) -> &mut Option<Pending> {
        self.run();
        &mut self.pending
    }
}

impl std::fmt::Debug for WhileSent<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WhileSent")
            .field("ran", &self.work.is_none())
            .field("pending", &self.pending.is_some())
            .finish()
    }
}

/// What a forward needs besides the routed request.
#[derive(Debug)]
pub struct ForwardCtx<'a, 'w> {
    /// This I/O thread's HTTP client (pooled keep-alive connections).
    pub client: &'a UpstreamClient,
    /// Metrics.
    pub metrics: &'a Arc<Metrics>,
    /// The client's request headers.
    pub client_headers: &'a HeaderMap,
    /// The request id.
    pub request_id: &'a str,
    /// Listener timeout for the whole upstream exchange.
    pub timeout: Duration,
    /// When the request arrived.
    pub started: Instant,
    /// The concurrency permit, held until the response body ends.
    pub permit: Option<OwnedSemaphorePermit>,
    /// Work deferred until the first request is written, and the replay record it makes.
    pub while_sent: &'a mut WhileSent<'w>,
    /// Router Learning's key, to credit the response's usage to.
    pub usage_feedback: Option<UsageFeedback>,
}

/// The upstream response to relay: status, headers and the streaming body.
#[derive(Debug)]
pub struct Relayed {
    /// Response to send (headers still to be extended by the caller). A plain backend's
    /// headers are in [`Relayed::upstream_headers`] instead of its map.
    pub response: Response,
    /// A plain backend's headers as it wrote them, hop-by-hop ones included: whoever writes
    /// the answer leaves those out ([`crate::upstream::h1::is_hop_by_hop`]).
    pub upstream_headers: Option<RawHeaders>,
    /// Backend that answered.
    pub backend: String,
    /// Attempts made.
    pub attempts: u32,
}

fn retriable(policy: &[String], status: Option<u16>) -> bool {
    let has = |k: &str| {
        policy
            .iter()
            .flat_map(|p| p.split(','))
            .any(|p| p.trim() == k)
    };
    match status {
        None => has("connect-failure") || has("reset") || has("refused-stream"),
        Some(s) => {
            (s >= 500 && has("5xx"))
                || (matches!(s, 502..=504) && has("gateway-error"))
                || (s == 429 && has("retriable-4xx"))
        }
    }
}

/// Sends `routed` to a backend of its model and returns the response to relay.
///
/// # Errors
/// No backend (503), every attempt failed (502 naming the last backend and cause), or the
/// listener timeout passed before the response head (504).
pub async fn forward(
    live: &LiveState,
    routed: &Routed,
    ctx: ForwardCtx<'_, '_>,
) -> Result<Relayed, ApiError> {
    // Borrowed: only an error needs it owned.
    let model_name = live.config.model(routed.model).card.name.as_str();
    let Some(pool) = live.upstreams.pool(routed.model) else {
        return Err(ApiError::NoBackend {
            model: model_name.to_string(),
            reason: "it has no backend_refs in providers.models".into(),
        });
    };
    let max_attempts = 1 + pool.reliability.retry_count;
    let mut tried: Vec<usize> = Vec::new();
    let mut attempt = 0u32;
    let deadline = ctx.started + ctx.timeout;
    loop {
        attempt += 1;
        let Some(i) = pool.pick(&tried).or_else(|| pool.pick(&[])) else {
            return Err(ApiError::NoBackend {
                model: model_name.to_string(),
                reason: "every backend was tried".into(),
            });
        };
        tried.push(i);
        let backend = &pool.backends[i];
        let request = upstream_request(live, routed, backend, &ctx)?;
        let guard = backend.start();
        let t = Instant::now();
        let remaining = deadline.saturating_duration_since(Instant::now());
        let send = ctx.client.send(request);
        // The deferred work is polled after the send, which writes the request before it
        // waits for the answer: the work overlaps the backend's.
        let while_sent = &mut *ctx.while_sent;
        let both = futures_util::future::join(send, async { while_sent.run() });
        let sent = tokio::time::timeout(remaining, both)
            .await
            .map(|(sent, ())| sent);
        if let Some(p) = ctx.while_sent.pending().as_mut() {
            p.record.backend = Some(backend.name.clone());
        }
        let last = attempt >= max_attempts;
        match sent {
            Err(_) => {
                observe(pool, i, None, ctx.metrics);
                return Err(ApiError::UpstreamTimeout {
                    backend: backend.name.clone(),
                    after: ctx.timeout,
                });
            }
            Ok(Err(e)) => {
                observe(pool, i, None, ctx.metrics);
                let cause = describe(&e);
                if !last && retriable(&pool.reliability.retry_on, None) {
                    tracing::info!(backend = %backend.name, %cause, attempt, "retrying on another attempt");
                    ctx.metrics
                        .retries
                        .with_label_values(&[backend.name.as_str()])
                        .inc();
                    continue;
                }
                return Err(ApiError::Backend {
                    backend: backend.name.clone(),
                    cause,
                });
            }
            Ok(Ok(resp)) => {
                let code = resp.status();
                let status = code.as_u16();
                observe(pool, i, Some(status), ctx.metrics);
                let series = live.series.model(ctx.metrics, routed.model, model_name);
                series.upstream_seconds.observe(t.elapsed().as_secs_f64());
                if status >= 500 {
                    if !last && retriable(&pool.reliability.retry_on, Some(status)) {
                        tracing::info!(backend = %backend.name, status, attempt, "retrying after a backend error");
                        ctx.metrics
                            .retries
                            .with_label_values(&[backend.name.as_str()])
                            .inc();
                        continue;
                    }
                    let remaining = deadline.saturating_duration_since(Instant::now());
                    let message = error_message(resp.into_body(), remaining).await;
                    return Err(ApiError::Backend {
                        backend: backend.name.clone(),
                        cause: format!("HTTP {status}: {message}"),
                    });
                }
                let mut pending = ctx.while_sent.pending().take();
                if let Some(p) = pending.as_mut() {
                    p.upstream(&backend.name, status, t.elapsed().as_secs_f64() * 1e3);
                }
                let feedback = ctx.usage_feedback;
                let tap = (pending.is_some() || feedback.is_some()).then(|| {
                    let capture = pending.as_ref().and_then(|p| p.capture_response);
                    Tap::new(routed.stream, routed.strip_usage, capture)
                });
                let (response, upstream_headers) = relay(
                    resp,
                    deadline,
                    Done {
                        _guard: guard,
                        _permit: ctx.permit,
                        total_seconds: series.total_seconds.clone(),
                        counted: Counted {
                            metrics: Arc::clone(ctx.metrics),
                            outcome: Arc::clone(&routed.outcome),
                            model_requests: series.requests.clone(),
                            status: code,
                        },
                        started: ctx.started,
                    },
                    Watch {
                        tap,
                        pending,
                        feedback,
                    },
                );
                return Ok(Relayed {
                    response,
                    upstream_headers,
                    backend: backend.name.clone(),
                    attempts: attempt,
                });
            }
        }
    }
}

fn observe(pool: &Pool, i: usize, status: Option<u16>, metrics: &Metrics) {
    if let Ejection::Ejected(d) = pool.observe(i, status) {
        let name = &pool.backends[i].name;
        tracing::warn!(backend = %name, seconds = d.as_secs_f64(), "backend ejected after consecutive failures");
        metrics.ejections.with_label_values(&[name.as_str()]).inc();
    }
}

/// The message of a backend's error body (OpenAI shape or plain text), bounded.
async fn error_message(body: ResponseBody, timeout: Duration) -> String {
    let bytes = tokio::time::timeout(timeout, read_prefix(body, 2048))
        .await
        .unwrap_or_default();
    let parsed: Option<Value> = serde_json::from_slice(&bytes).ok();
    parsed
        .as_ref()
        .and_then(|v| {
            v.pointer("/error/message")
                .and_then(Value::as_str)
                .map(str::to_string)
        })
        .unwrap_or_else(|| String::from_utf8_lossy(&bytes).trim().to_string())
}

fn upstream_request(
    live: &LiveState,
    routed: &Routed,
    backend: &BackendState,
    ctx: &ForwardCtx<'_, '_>,
) -> Result<Request<UpstreamBody>, ApiError> {
    let card = routed.outcome.model.as_deref().unwrap_or_default();
    let model_id = model_id_for(
        &live.config,
        card,
        routed.outcome.lora.as_deref(),
        &backend.config,
    );
    let bytes = routed
        .body
        .encode(&model_id)
        .map_err(|e| ApiError::InvalidRequest {
            message: format!("cannot serialise the rewritten body: {e}"),
            param: None,
        })?;
    // The client's, less framing ones, plus the few set here: growing the map rehashes it.
    let mut headers = HeaderMap::with_capacity(ctx.client_headers.len() + 4);
    for (k, v) in ctx.client_headers {
        if !HOP_BY_HOP.contains(&k.as_str()) {
            headers.append(k.clone(), v.clone());
        }
    }
    let set = |h: &mut HeaderMap, k: &str, v: &str| {
        if let (Ok(k), Ok(v)) = (HeaderName::try_from(k), HeaderValue::from_str(v)) {
            h.insert(k, v);
        }
    };
    headers.insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    if let Ok(value) = HeaderValue::from_str(ctx.request_id) {
        headers.insert(names::REQUEST_ID, value);
    }
    // The card name's value is cached (as for the response's `x-vsr-selected-model`).
    headers.insert(names::UPSTREAM_SELECTED_MODEL, live.headers.value(card));
    let b = &backend.config;
    if let Some(key) = &b.api_key {
        headers.remove(http::header::AUTHORIZATION);
        set(
            &mut headers,
            &b.auth_header,
            &format!("{}{key}", b.auth_prefix),
        );
    }
    for (k, v) in &b.extra_headers {
        set(&mut headers, k, v);
    }
    if let Some(m) = &routed.header_mutation {
        for name in &m.delete {
            headers.remove(name.as_str());
        }
        for (k, v) in &m.update {
            set(&mut headers, k, v);
        }
        for (k, v) in &m.add {
            if let (Ok(k), Ok(v)) = (HeaderName::try_from(k.as_str()), HeaderValue::from_str(v)) {
                headers.append(k, v);
            }
        }
    }
    let mut req = Request::new(UpstreamBody::from(bytes));
    *req.method_mut() = Method::POST;
    *req.uri_mut() = backend.chat_uri.clone();
    *req.headers_mut() = headers;
    Ok(req)
}

/// What watches a relayed body: the tap reading usage (and capturing the body), the replay
/// record it finishes, and the learning key its usage is credited to.
struct Watch {
    tap: Option<Tap>,
    pending: Option<Pending>,
    feedback: Option<UsageFeedback>,
}

/// Relays the upstream response: status and end-to-end headers now, the body as it arrives.
/// A plain backend's headers are returned as it wrote them (its response's map is empty).
fn relay(
    resp: http::Response<ResponseBody>,
    deadline: Instant,
    done: Done,
    watch: Watch,
) -> (Response, Option<RawHeaders>) {
    let Watch {
        tap,
        pending,
        feedback,
    } = watch;
    let (parts, mut inner) = resp.into_parts();
    let raw = inner.take_headers();
    let mut headers = parts.headers;
    let strip = stripping(&tap);
    // Usually none or one (`transfer-encoding` on a stream): removing them is cheaper than
    // copying the rest into a new map.
    let drop = |k: &HeaderName| {
        HOP_BY_HOP.contains(&k.as_str()) && (k != http::header::CONTENT_LENGTH || strip)
    };
    while let Some(k) = headers.keys().find(|k| drop(k)).cloned() {
        headers.remove(&k);
    }
    // hyper reads the length off the head (`content-length`, or none for chunked/SSE).
    let expected = inner.size_hint().exact();
    let body = RelayBody {
        expected,
        sent: 0,
        inner,
        deadline,
        timer: None,
        tap,
        pending,
        feedback,
        done: Some(done),
    };
    let mut out = Response::new(Body::new(body));
    *out.status_mut() = parts.status;
    *out.headers_mut() = headers;
    (out, raw)
}

/// A tap that may drop bytes makes the upstream `content-length` wrong.
fn stripping(tap: &Option<Tap>) -> bool {
    tap.as_ref().is_some_and(Tap::may_strip)
}

/// Held until the relayed body ends (or the client goes away).
struct Done {
    _guard: InflightGuard,
    _permit: Option<OwnedSemaphorePermit>,
    /// The model's `vsr_request_duration_seconds`.
    total_seconds: prometheus::Histogram,
    counted: Counted,
    started: Instant,
}

/// What counts a relayed answer in `vsr_requests_total` and `llm_model_requests_total`:
/// done when the answer ends, so the labelled lookup runs after the client has the answer
/// rather than before its first byte.
struct Counted {
    metrics: Arc<Metrics>,
    /// The decision and model labels.
    outcome: Arc<vllm_sr_engine::Outcome>,
    model_requests: prometheus::IntCounter,
    status: http::StatusCode,
}

impl Drop for Done {
    fn drop(&mut self) {
        self.total_seconds
            .observe(self.started.elapsed().as_secs_f64());
        let c = &self.counted;
        let labels = [
            c.outcome.decision.as_deref().unwrap_or_default(),
            c.outcome.model.as_deref().unwrap_or_default(),
            c.status.as_str(),
        ];
        c.metrics.requests.with_label_values(&labels).inc();
        c.model_requests.inc();
    }
}

/// The relayed body: upstream frames passed on as they arrive, watched by the tap, cut at the
/// listener deadline.
struct RelayBody {
    /// The upstream `content-length`, when it sent one.
    expected: Option<u64>,
    /// Bytes relayed so far.
    sent: u64,
    inner: ResponseBody,
    /// End of the exchange (the listener timeout).
    deadline: Instant,
    /// Armed the first time the upstream makes the relay wait (most non-streamed bodies
    /// arrive with their head and never need a timer).
    timer: Option<Pin<Box<Sleep>>>,
    tap: Option<Tap>,
    pending: Option<Pending>,
    feedback: Option<UsageFeedback>,
    done: Option<Done>,
}

impl RelayBody {
    /// Ends the exchange once: credits the usage to the learning key, finishes the replay
    /// record and releases the backend slot.
    fn end(&mut self, lifecycle: Lifecycle, reason: Option<String>) {
        if let (Some(f), Some(u)) = (self.feedback.take(), self.tap.as_ref().and_then(Tap::usage)) {
            f.record(&u);
        }
        if let Some(p) = self.pending.take() {
            let (usage, response_body) = match &self.tap {
                Some(t) => (t.usage(), t.captured()),
                None => (None, None),
            };
            p.finish(End {
                lifecycle,
                reason,
                usage,
                response_body,
                ..End::default()
            });
        }
        self.done.take();
    }

    /// True once the deadline has passed (polling the timer registers the wake-up).
    fn timed_out(&mut self, cx: &mut Context<'_>) -> bool {
        let deadline = self.deadline;
        let timer = self
            .timer
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline.into())));
        std::future::Future::poll(timer.as_mut(), cx).is_ready()
    }
}

impl Drop for RelayBody {
    fn drop(&mut self) {
        if self.done.is_none() {
            return;
        }
        // The server stops polling a body once it has written `content-length` bytes.
        if self.expected.is_some_and(|n| n == self.sent) {
            if let Some(t) = self.tap.as_mut() {
                t.finish();
            }
            self.end(Lifecycle::Completed, None);
        } else {
            self.end(Lifecycle::Aborted, Some("client_disconnect".into()));
        }
    }
}

impl HttpBody for RelayBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        if self.done.is_none() {
            return Poll::Ready(None);
        }
        loop {
            match Pin::new(&mut self.inner).poll_frame(cx) {
                Poll::Ready(Some(Ok(frame))) => {
                    // Trailers are not relayed (the client side is HTTP/1.1).
                    let Ok(b) = frame.into_data() else { continue };
                    self.sent += b.len() as u64;
                    let out = match self.tap.as_mut() {
                        Some(t) => t.chunk(b),
                        None => b,
                    };
                    if !out.is_empty() {
                        return Poll::Ready(Some(Ok(Frame::data(out))));
                    }
                }
                Poll::Ready(Some(Err(e))) => {
                    tracing::warn!(error = %e, "upstream body ended with an error; closing the client stream");
                    self.end(Lifecycle::Failed, Some(format!("upstream_error: {e}")));
                    return Poll::Ready(Some(Err(std::io::Error::other(e))));
                }
                Poll::Ready(None) => {
                    let rest = self.tap.as_mut().and_then(Tap::finish);
                    self.end(Lifecycle::Completed, None);
                    return Poll::Ready(rest.map(|b| Ok(Frame::data(b))));
                }
                Poll::Pending => {
                    if self.timed_out(cx) {
                        tracing::warn!(
                            "listener timeout while relaying the body; closing the client stream"
                        );
                        self.end(Lifecycle::Failed, Some("upstream_timeout".into()));
                        return Poll::Ready(Some(Err(std::io::Error::new(
                            std::io::ErrorKind::TimedOut,
                            "listener timeout while relaying the upstream body",
                        ))));
                    }
                    return Poll::Pending;
                }
            }
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self.expected {
            Some(n) if !stripping(&self.tap) => SizeHint::with_exact(n),
            _ => SizeHint::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;

    #[test]
    fn deferred_work_runs_once_whichever_way_it_is_reached() {
        let runs = AtomicU32::new(0);
        let work = || {
            runs.fetch_add(1, Ordering::Relaxed);
            None
        };
        let mut first_run = WhileSent::new(work);
        assert_eq!(
            runs.load(Ordering::Relaxed),
            0,
            "deferred, not run at creation"
        );
        first_run.run();
        first_run.run();
        assert!(first_run.pending().is_none());
        assert_eq!(runs.load(Ordering::Relaxed), 1);

        // Read first (a request that failed before any attempt): the work runs then.
        let mut first_read = WhileSent::new(work);
        assert!(first_read.pending().is_none());
        first_read.run();
        assert_eq!(runs.load(Ordering::Relaxed), 2);
    }
}
