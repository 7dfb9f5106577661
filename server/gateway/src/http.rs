//! The OpenAI-compatible HTTP surface of a listener: `POST /v1/chat/completions`,
//! `GET /v1/models`, `GET /health`, `GET /ready`, and OpenAI-shaped 404s for everything else.
//!
//! Handlers are thin: read the body under the size limit, take the concurrency permit, load
//! one live-state snapshot, call the routing service, forward, and add the `x-vsr-*` headers.
//! A listener serves [`DataPlane`]: chat completions go to their handler directly, the rest
//! through the [`router`].

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwap;
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Value};
use tokio::sync::Semaphore;
use vllm_sr_store::Lifecycle;

use crate::error::ApiError;
use crate::forward::{forward, ForwardCtx, WhileSent};
use crate::headers::{add_headers, names, HeaderContext, RouterHeaders};
use crate::learning::UsageFeedback;
use crate::live::LiveState;
use crate::metrics::{Metrics, SeriesCache};
use crate::replay::{End, Pending, Replay, RequestInfo};
use crate::service::{parse_body, route, RouteParams, Routed};
use crate::upstream::h1::{is_hop_by_hop, RawHeaders};

/// Request limits.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Largest accepted body.
    pub max_body_bytes: usize,
    /// Concurrent chat requests per process (`None`: unlimited).
    pub max_concurrency: Option<usize>,
    /// Deadline of the per-request embedding batch.
    pub signal_budget: Duration,
    /// Upstream timeout when the listener sets none.
    pub default_timeout: Duration,
    /// How long a client may pause while sending a request (inside its head, or between
    /// pieces of its body) before it gets a 408 and the connection closes.
    pub request_read_timeout: Duration,
    /// How long an HTTP/1.1 keep-alive connection may sit idle between requests before it
    /// is closed (`None`: never).
    pub idle_timeout: Option<Duration>,
}

/// State shared by every listener.
#[derive(Debug)]
pub struct AppState {
    /// The live recipe, swapped on reload.
    pub live: ArcSwap<LiveState>,
    /// Client of the control runtime (active health checks); each I/O thread forwards
    /// with its own.
    pub client: crate::upstream::client::UpstreamClient,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// Limits.
    pub limits: Limits,
    /// Concurrency limit.
    pub semaphore: Option<Arc<Semaphore>>,
    /// Set while draining: `/ready` reports 503.
    pub draining: AtomicBool,
    /// Router Learning state (kept across reloads).
    pub sessions: Arc<crate::learning::Sessions>,
    /// Router Replay (`None` when no state directory was given).
    pub replay: Option<Arc<Replay>>,
}

/// Per-listener state: the shared state plus this listener's timeout.
#[derive(Debug, Clone)]
pub struct ListenerState {
    /// Shared state.
    pub app: Arc<AppState>,
    /// The listener's `timeout`.
    pub timeout: Duration,
    /// The I/O thread's pooled upstream client.
    pub client: crate::upstream::client::UpstreamClient,
}

/// The router of one listener.
pub fn router(state: ListenerState) -> Router {
    Router::new()
        .route(CHAT_PATH, post(chat))
        .route("/v1/models", get(models))
        .route("/health", get(health))
        .route("/ready", get(ready))
        .fallback(not_found)
        .with_state(state)
}

async fn not_found(method: Method, uri: Uri) -> ApiError {
    ApiError::NotFound {
        method: method.to_string(),
        path: uri.path().to_string(),
    }
}

async fn health() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

async fn ready(State(s): State<ListenerState>) -> Response {
    let live = s.app.live.load();
    if s.app.draining.load(Ordering::Relaxed) {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"status": "draining"})),
        )
            .into_response();
    }
    if live.upstreams.any_ready() {
        Json(json!({"status": "ready", "config_generation": live.generation})).into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"status": "not_ready", "reason": "no backend is healthy yet"})),
        )
            .into_response()
    }
}

async fn models(State(s): State<ListenerState>) -> Json<Value> {
    let live = s.app.live.load();
    let c = &live.config;
    let mut data: Vec<Value> = c
        .auto_model_names
        .iter()
        .map(|n| {
            json!({"id": n, "object": "model", "created": 0, "owned_by": "vllm-semantic-router",
                   "description": "Intelligent Router for Mixture-of-Models",
                   "routing": {"resolution": "virtual", "selectable": true, "default_route": true}})
        })
        .collect();
    for (name, r) in &c.entrypoints {
        let recipe = &c.recipes[*r];
        data.push(
            json!({"id": name, "object": "model", "created": 0, "owned_by": "vllm-semantic-router",
            "description": recipe.description,
            "routing": {"resolution": "virtual", "selectable": true, "recipe": recipe.name}}),
        );
    }
    for m in &c.models {
        data.push(json!({"id": m.card.name, "object": "model", "created": 0, "owned_by": "upstream-endpoint",
            "routing": {"resolution": "passthrough", "selectable": true}}));
    }
    Json(json!({"object": "list", "data": data}))
}

/// Request headers as `(name, value)` pairs for the routing service, borrowed from the map
/// (names are lowercase; values that are not visible ASCII are skipped).
pub(crate) fn header_pairs(h: &HeaderMap) -> Vec<(&str, &str)> {
    header_pairs_if(h, |_| true)
}

/// [`header_pairs`] of the headers whose name `keep` accepts.
fn header_pairs_if(h: &HeaderMap, keep: impl Fn(&str) -> bool) -> Vec<(&str, &str)> {
    h.iter()
        .filter(|(k, _)| keep(k.as_str()))
        .filter_map(|(k, v)| Some((k.as_str(), v.to_str().ok()?)))
        .collect()
}

fn request_id(headers: &HeaderMap) -> String {
    headers
        .get(names::REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 200)
        .map_or_else(new_request_id, str::to_string)
}

/// 32 hex digits: milliseconds since the epoch, then 80 random bits (thread-local generator,
/// no system call per request).
fn new_request_id() -> String {
    let ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let high = (ms & 0xffff_ffff_ffff) << 16 | u64::from(fastrand::u16(..));
    let mut id = String::with_capacity(32);
    for word in [high, fastrand::u64(..)] {
        for shift in (0..16).rev() {
            let digit = (word >> (shift * 4)) & 0xF;
            id.push(char::from_digit(digit as u32, 16).unwrap_or('0'));
        }
    }
    id
}

/// A listener's service: chat completions straight to their handler, everything else through
/// the [`router`].
///
/// Chat completions are the hot path, and the router's work for them (matching the path,
/// recording the matched path and URL parameters in the request's extensions, cloning the
/// boxed route and mapping its future) cost about as much as adding every `x-vsr-*` header.
/// Behaviour is the router's: its route for the same path and method calls the same function.
#[derive(Debug, Clone)]
pub struct DataPlane {
    state: Arc<ListenerState>,
    router: Router,
}

impl DataPlane {
    /// The service of a listener.
    pub fn new(state: ListenerState) -> Self {
        Self {
            router: router(state.clone()),
            state: Arc::new(state),
        }
    }

    /// Largest request body a listener accepts.
    pub(crate) fn body_limit(&self) -> usize {
        self.state.app.limits.max_body_bytes
    }

    /// How long a client may pause inside a request ([`Limits::request_read_timeout`]).
    pub(crate) fn read_timeout(&self) -> Duration {
        self.state.app.limits.request_read_timeout
    }

    /// How long a connection may idle between requests ([`Limits::idle_timeout`]).
    pub(crate) fn idle_timeout(&self) -> Option<Duration> {
        self.state.app.limits.idle_timeout
    }

    /// A request whose body has been read (or could not be: the error is the answer, unless
    /// it is a chat completion, which records and counts it).
    pub(crate) async fn handle(
        &self,
        parts: http::request::Parts,
        body: Result<Bytes, ApiError>,
        started: Instant,
    ) -> Answer {
        if parts.method == Method::POST && parts.uri.path() == CHAT_PATH {
            return chat_with_body(&self.state, &parts.headers, body, started).await;
        }
        let response = match body {
            Ok(body) => {
                let req = Request::from_parts(parts, Body::from(body));
                let mut router = self.router.clone();
                match tower_service::Service::call(&mut router, req).await {
                    Ok(resp) => resp,
                    Err(never) => match never {},
                }
            }
            Err(e) => e.into_response(),
        };
        Answer::new(response, RouterHeaders::default())
    }

    fn dispatch(&self, req: Request) -> <Self as tower_service::Service<Request>>::Future {
        use tower_service::Service as _;
        if req.method() == Method::POST && req.uri().path() == CHAT_PATH {
            let state = self.state.clone();
            futures_util::future::Either::Left(Box::pin(async move {
                Ok(chat_request(&state, req).await.into_response())
            }))
        } else {
            futures_util::future::Either::Right(self.router.clone().call(req))
        }
    }
}

/// The chat path the data plane serves without the router.
const CHAT_PATH: &str = "/v1/chat/completions";

impl tower_service::Service<Request> for DataPlane {
    type Response = Response;
    type Error = std::convert::Infallible;
    type Future = futures_util::future::Either<
        futures_util::future::BoxFuture<'static, Result<Response, Self::Error>>,
        <Router as tower_service::Service<Request>>::Future,
    >;

    fn poll_ready(
        &mut self,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request) -> Self::Future {
        self.dispatch(req)
    }
}

/// The service hyper calls per request of a client connection (see `conn`).
impl hyper::service::Service<http::Request<hyper::body::Incoming>> for DataPlane {
    type Response = Response;
    type Error = std::convert::Infallible;
    type Future = <Self as tower_service::Service<Request>>::Future;

    fn call(&self, req: http::Request<hyper::body::Incoming>) -> Self::Future {
        self.dispatch(req.map(Body::new))
    }
}

async fn chat(State(s): State<ListenerState>, req: Request) -> Response {
    chat_request(&s, req).await.into_response()
}

/// `POST /v1/chat/completions` through the router: reads the body, then [`chat_with_body`].
async fn chat_request(s: &ListenerState, req: Request) -> Answer {
    let started = Instant::now();
    let (parts, body) = req.into_parts();
    let limit = s.app.limits.max_body_bytes;
    let declared = parts
        .headers
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    let body = if declared.is_some_and(|n| n > limit) {
        Err(ApiError::BodyTooLarge { limit })
    } else {
        axum::body::to_bytes(body, limit)
            .await
            .map_err(|_| ApiError::BodyTooLarge { limit })
    };
    chat_with_body(s, &parts.headers, body, started).await
}

/// A chat completion whose body has been read (or could not be): route, forward, and add the
/// router's headers.
pub(crate) async fn chat_with_body(
    s: &ListenerState,
    headers: &HeaderMap,
    body: Result<Bytes, ApiError>,
    started: Instant,
) -> Answer {
    let rid = request_id(headers);
    let mut answer = match chat_inner(s, headers, body, &rid, started).await {
        Ok(answer) => answer,
        Err(Failure {
            error: e,
            model,
            replay_id,
        }) => {
            s.app
                .metrics
                .errors
                .with_label_values(&[model.as_str(), e.reason()])
                .inc();
            s.app
                .metrics
                .requests
                .with_label_values(&["", model.as_str(), e.status().as_str()])
                .inc();
            let mut router = RouterHeaders::default();
            if let Some(id) = replay_id.and_then(|id| HeaderValue::from_str(&id).ok()) {
                router.set(names::REPLAY_ID, id);
            }
            Answer::new(e.into_response(), router)
        }
    };
    if let Ok(v) = HeaderValue::from_str(&rid) {
        answer.router.set(names::REQUEST_ID, v);
    }
    answer
}

/// A chat completion's answer: the response, a plain backend's headers as it wrote them,
/// and the router's headers still to be put on it (see [`RouterHeaders`]).
#[derive(Debug)]
pub(crate) struct Answer {
    pub(crate) response: Response,
    /// A plain backend's headers (hop-by-hop ones included, for the writer to leave out);
    /// the response's map has the rest.
    pub(crate) upstream: Option<RawHeaders>,
    pub(crate) router: RouterHeaders,
}

impl Answer {
    /// An answer whose headers are all in its response's map.
    pub(crate) fn new(response: Response, router: RouterHeaders) -> Self {
        Self {
            response,
            upstream: None,
            router,
        }
    }
}

impl IntoResponse for Answer {
    fn into_response(self) -> Response {
        let mut response = self.response;
        if let Some(upstream) = &self.upstream {
            let headers = response.headers_mut();
            for (name, value) in upstream.iter() {
                if is_hop_by_hop(name) {
                    continue;
                }
                if let (Ok(name), Ok(value)) =
                    (HeaderName::from_bytes(name), HeaderValue::from_bytes(value))
                {
                    headers.append(name, value);
                }
            }
        }
        self.router.apply(response.headers_mut());
        response
    }
}

/// A failed chat request: the error, the model it was for, and its replay record id.
struct Failure {
    error: ApiError,
    model: String,
    replay_id: Option<String>,
}

async fn chat_inner(
    s: &ListenerState,
    headers: &HeaderMap,
    body: Result<Bytes, ApiError>,
    rid: &str,
    started: Instant,
) -> Result<Answer, Failure> {
    let app = &s.app;
    let fail = |error: ApiError| Failure {
        error,
        model: String::new(),
        replay_id: None,
    };
    let permit = match &app.semaphore {
        Some(sem) => Some(sem.clone().try_acquire_owned().map_err(|_| {
            fail(ApiError::Overloaded {
                limit: app.limits.max_concurrency.unwrap_or(0),
            })
        })?),
        None => None,
    };
    let bytes = body.map_err(fail)?;
    let body = parse_body(&bytes).map_err(fail)?;
    let live = app.live.load_full();
    // Routing reads a few headers at most (`LiveState::routing_headers`); the replay record's
    // full list is made with the record, while the backend computes.
    let routing_headers = if live.routing_headers.is_empty() {
        Vec::new()
    } else {
        header_pairs_if(headers, |name| live.reads_header(name))
    };
    let params = RouteParams {
        signal_budget: app.limits.signal_budget,
        want_usage: app.replay.is_some(),
    };
    let routed = route(&live, &app.sessions, body, &routing_headers, params)
        .await
        .map_err(fail)?;
    // Borrowed: `routed` outlives every use (metric labels, the log line).
    let model = routed.outcome.model.as_deref().unwrap_or_default();
    let decision = routed.outcome.decision.as_deref().unwrap_or_default();
    let debug = headers
        .get(names::DEBUG)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("true"));
    // The record id goes out with the record and the router's headers, so it is made with
    // them, after the request has left.
    let record_id = || app.replay.is_some().then(vllm_sr_store::new_record_id);
    let start_record = |id: Option<String>| {
        app.replay.as_ref().zip(id).map(|(r, record_id)| {
            Pending::start(
                r,
                &live,
                &routed,
                RequestInfo {
                    record_id,
                    request_id: rid,
                    headers: &header_pairs(headers),
                    body: &bytes,
                    started,
                },
            )
        })
    };
    let header_cx = |path| HeaderContext {
        debug,
        path,
        replay_id: None,
        cache: &live.headers,
    };
    if let Some(message) = &routed.fast_response {
        observe_routing(&app.metrics, &live.series, &routed);
        let id = record_id();
        let mut router = RouterHeaders::new();
        add_headers(
            &mut router,
            &routed,
            HeaderContext {
                replay_id: id.as_deref(),
                ..header_cx("fast_response")
            },
        );
        router.set(names::FAST_RESPONSE, HeaderValue::from_static("true"));
        if let Some(p) = start_record(id) {
            p.finish(End {
                lifecycle: Lifecycle::Completed,
                status: Some(200),
                cache_hit: true,
                ..End::default()
            });
        }
        let resp = fast_response(message, routed.stream);
        app.metrics
            .requests
            .with_label_values(&[decision, model, "200"])
            .inc();
        return Ok(Answer::new(resp, router));
    }
    // What the answer needs but the upstream request does not waits until that request is
    // written: it then runs while the backend computes.
    let mut router = RouterHeaders::new();
    let mut while_sent = WhileSent::new(|| {
        observe_routing(&app.metrics, &live.series, &routed);
        let id = record_id();
        let cx = HeaderContext {
            replay_id: id.as_deref(),
            ..header_cx("upstream")
        };
        add_headers(&mut router, &routed, cx);
        start_record(id)
    });
    let ctx = ForwardCtx {
        client: &s.client,
        metrics: &app.metrics,
        client_headers: headers,
        request_id: rid,
        timeout: s.timeout,
        started,
        permit,
        while_sent: &mut while_sent,
        usage_feedback: routed
            .learning
            .as_ref()
            .map(|l| UsageFeedback::new(&app.sessions, l)),
    };
    let relayed = match forward(&live, &routed, ctx).await {
        Ok(r) => r,
        Err(error) => {
            let replay_id = while_sent.pending().take().map(|p| {
                let id = p.record.id.clone();
                p.finish(End {
                    lifecycle: Lifecycle::Failed,
                    reason: Some(error.to_string()),
                    status: Some(error.status().as_u16()),
                    ..End::default()
                });
                id
            });
            return Err(Failure {
                error,
                model: model.to_string(),
                replay_id,
            });
        }
    };
    // The work has run (in the first attempt); its borrow of `router` ends here.
    while_sent.run();
    drop(while_sent);
    // Counted in `vsr_requests_total` when the answer ends (`forward`'s relay).
    let resp = relayed.response;
    let status = resp.status();
    // Per request at debug: a synchronous log line per request costs more than routing.
    tracing::debug!(
        request_id = rid,
        decision = %decision,
        model = %model,
        backend = %relayed.backend,
        attempts = relayed.attempts,
        status = status.as_u16(),
        routing_us = routed.routing.as_micros() as u64,
        "routed"
    );
    Ok(Answer {
        response: resp,
        upstream: relayed.upstream_headers,
        router,
    })
}

fn observe_routing(m: &Metrics, series: &SeriesCache, r: &Routed) {
    m.routing_seconds.observe(r.routing.as_secs_f64());
    let t = &r.outcome.timings;
    m.signals_seconds.observe((t.embed_ms + t.signals_ms) / 1e3);
    // Only the families that ran: the others would pile zeros into the histograms. The
    // metrics are in `SignalFamily::ALL` order.
    for (i, (_, metric)) in r.outcome.metrics.iter().enumerate() {
        if metric.evaluated {
            series.observe_family(m, i, metric.execution_time_ms / 1e3);
        }
    }
    if let Some(d) = &r.outcome.decision {
        series.count_decision(m, d);
    }
}

/// The `fast_response` plugin's answer: a complete chat completion, or its SSE form.
fn fast_response(message: &str, stream: bool) -> Response {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let id = format!("chatcmpl-fast-{now}");
    if !stream {
        return Json(json!({
            "id": id, "object": "chat.completion", "created": now, "model": "router",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": message}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}
        }))
        .into_response();
    }
    let chunk = |delta: Value, finish: Value| {
        json!({"id": id, "object": "chat.completion.chunk", "created": now, "model": "router",
               "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})
    };
    let text = format!(
        "data: {}\n\ndata: {}\n\ndata: [DONE]\n\n",
        chunk(
            json!({"role": "assistant", "content": message}),
            Value::Null
        ),
        chunk(json!({}), json!("stop"))
    );
    let mut resp = Response::new(Body::from(text));
    resp.headers_mut().insert(
        "content-type",
        HeaderValue::from_static("text/event-stream"),
    );
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_request_ids_are_32_hex_digits_led_by_the_time() {
        let before = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        let a = new_request_id();
        let b = new_request_id();
        assert_eq!(a.len(), 32, "{a}");
        assert!(
            a.bytes().all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f')),
            "{a}"
        );
        assert_ne!(a, b);
        let ms = u64::from_str_radix(&a[..12], 16).unwrap_or(0);
        assert!(ms >= before && ms <= before + 60_000, "{a} vs {before}");
    }

    #[test]
    fn a_client_request_id_is_kept_and_a_bad_one_replaced() {
        let mut h = HeaderMap::new();
        h.insert("x-request-id", HeaderValue::from_static("req-42"));
        assert_eq!(request_id(&h), "req-42");
        h.insert("x-request-id", HeaderValue::from_static(""));
        assert_eq!(request_id(&h).len(), 32);
    }
}
