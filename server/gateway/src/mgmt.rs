//! The management API (default `127.0.0.1:8080`): health, readiness, the effective config,
//! classification and the eval API without forwarding, Router Replay records, insights, and a
//! live Server-Sent-Events feed of routed requests.
//!
//! Bound to loopback it needs no credentials; bound anywhere else the gateway refuses to start
//! without a bearer token, which every route but `/health` then requires.

use std::convert::Infallible;
use std::sync::Arc;

use axum::extract::{Path, Query, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use futures_util::{Stream, StreamExt};
use serde::Deserialize;
use serde_json::{json, Value};
use tokio_stream::wrappers::errors::BroadcastStreamRecvError;
use tokio_stream::wrappers::BroadcastStream;
use vllm_sr_store::{ReplayFilter, ReplayRecord};

use crate::error::ApiError;
use crate::http::{header_pairs, AppState};
use crate::replay::Replay;
use crate::service::classify;

/// State of the management listener.
#[derive(Debug, Clone)]
pub struct MgmtState {
    /// The shared gateway state.
    pub app: Arc<AppState>,
    /// Required bearer token (`None`: loopback without auth).
    pub token: Option<Arc<str>>,
}

/// The management router.
pub fn router(state: MgmtState) -> Router {
    let protected = Router::new()
        .route("/ready", get(ready))
        .route("/config", get(config))
        .route("/api/v1/classify", post(classify_route))
        .route("/api/v1/eval", post(eval))
        .route("/api/v1/router_replay", get(replay_list))
        .route("/api/v1/router_replay/{id}", get(replay_get))
        .route("/api/v1/insights/summary", get(insights))
        .route("/api/v1/events", get(events))
        .route_layer(middleware::from_fn_with_state(state.clone(), auth));
    Router::new()
        .route("/health", get(health))
        .merge(protected)
        .fallback(|req: Request| async move {
            ApiError::NotFound {
                method: req.method().to_string(),
                path: req.uri().path().to_string(),
            }
        })
        .with_state(state)
}

async fn auth(State(s): State<MgmtState>, req: Request, next: Next) -> Response {
    if let Some(token) = &s.token {
        let given = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        if given != Some(token.as_ref()) {
            return ApiError::Unauthorized.into_response();
        }
    }
    next.run(req).await
}

async fn health() -> Json<Value> {
    Json(json!({"status": "healthy", "service": "vllm-sr"}))
}

async fn ready(State(s): State<MgmtState>) -> Response {
    let live = s.app.live.load();
    if live.upstreams.any_ready() {
        Json(json!({"status": "ready", "ready": true, "config_generation": live.generation}))
            .into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"status": "starting", "ready": false, "message": "no backend is healthy yet"})),
        )
            .into_response()
    }
}

async fn config(State(s): State<MgmtState>) -> Response {
    let live = s.app.live.load();
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/yaml"),
        )],
        live.effective_yaml.clone(),
    )
        .into_response()
}

async fn classify_route(
    State(s): State<MgmtState>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Result<Json<Value>, ApiError> {
    let live = s.app.live.load_full();
    let outcome = classify(
        &live,
        body,
        &header_pairs(&headers),
        false,
        s.app.limits.signal_budget,
    )
    .await?;
    serde_json::to_value(&outcome)
        .map(Json)
        .map_err(|e| ApiError::Unavailable(format!("serialising the outcome: {e}")))
}

#[derive(Debug, Deserialize)]
struct EvalQuery {
    #[serde(default)]
    trace: bool,
}

async fn eval(
    State(s): State<MgmtState>,
    Query(q): Query<EvalQuery>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Result<Json<Value>, ApiError> {
    let trace = q.trace || body.pointer("/options/trace").and_then(Value::as_bool) == Some(true);
    let text = body
        .get("text")
        .and_then(Value::as_str)
        .map(str::to_string)
        .unwrap_or_default();
    let live = s.app.live.load_full();
    let outcome = classify(
        &live,
        body,
        &header_pairs(&headers),
        true,
        s.app.limits.signal_budget,
    )
    .await?;
    let mut v = outcome.eval_response(&text);
    if !trace {
        if let Some(o) = v.as_object_mut() {
            o.remove("eval_trace");
        }
    }
    Ok(Json(v))
}

fn replay(s: &MgmtState) -> Result<Arc<Replay>, ApiError> {
    s.app.replay.clone().ok_or_else(|| {
        ApiError::Unavailable(
            "Router Replay is off: serve was started without a state directory".into(),
        )
    })
}

#[derive(Debug, Deserialize)]
struct ListQuery {
    decision: Option<String>,
    model: Option<String>,
    session: Option<String>,
    status: Option<u16>,
    since: Option<i64>,
    until: Option<i64>,
    cursor: Option<String>,
    limit: Option<usize>,
}

impl ListQuery {
    fn filter(&self) -> ReplayFilter {
        ReplayFilter {
            decision: self.decision.clone(),
            model: self.model.clone(),
            session: self.session.clone(),
            status: self.status,
            since_ms: self.since,
            until_ms: self.until,
            ..ReplayFilter::default()
        }
    }
}

/// Runs a blocking store query off the async workers.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, vllm_sr_store::StoreError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ApiError::Unavailable(format!("store task failed: {e}")))?
        .map_err(|e| ApiError::Unavailable(format!("replay store: {e}")))
}

async fn replay_list(
    State(s): State<MgmtState>,
    Query(q): Query<ListQuery>,
) -> Result<Json<Value>, ApiError> {
    let r = replay(&s)?;
    let filter = q.filter();
    let limit = q.limit.unwrap_or(20).clamp(1, 100);
    let cursor = q.cursor.clone();
    let page = blocking(move || r.reader.list(&filter, cursor.as_deref(), limit)).await?;
    let data: Vec<ReplayRecord> = page
        .records
        .into_iter()
        .map(ReplayRecord::without_bodies)
        .collect();
    Ok(Json(json!({
        "object": "router_replay.list",
        "count": data.len(),
        "data": data,
        "next_cursor": page.next_cursor,
        "has_more": page.next_cursor.is_some(),
    })))
}

async fn replay_get(
    State(s): State<MgmtState>,
    Path(id): Path<String>,
) -> Result<Json<ReplayRecord>, ApiError> {
    let r = replay(&s)?;
    let key = id.clone();
    match blocking(move || r.reader.get(&key)).await? {
        Some(rec) => Ok(Json(rec)),
        None => Err(ApiError::RecordNotFound { id }),
    }
}

async fn insights(
    State(s): State<MgmtState>,
    Query(q): Query<ListQuery>,
) -> Result<Json<Value>, ApiError> {
    let r = replay(&s)?;
    let filter = q.filter();
    let summary = blocking(move || r.reader.insights(&filter)).await?;
    serde_json::to_value(summary)
        .map(Json)
        .map_err(|e| ApiError::Unavailable(format!("serialising insights: {e}")))
}

async fn events(
    State(s): State<MgmtState>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let r = replay(&s)?;
    let stream = BroadcastStream::new(r.events.subscribe()).filter_map(|item| async move {
        match item {
            Ok(rec) => Event::default()
                .event("routed")
                .id(rec.id.clone())
                .json_data(rec.as_ref().clone().without_bodies())
                .ok()
                .map(Ok),
            Err(BroadcastStreamRecvError::Lagged(n)) => {
                Some(Ok(Event::default().event("lagged").data(n.to_string())))
            }
        }
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}
