//! The routing service: an OpenAI chat body and its headers in, the routing outcome and the
//! rewritten body out. Transport-independent: the HTTP proxy calls it today and an Envoy
//! ext_proc server can call the very same function.
//!
//! The embedding batch runs on the model's own threads under the signal budget; when the
//! budget passes, embedding-backed families count as unmatched and the outcome lists them as
//! skipped. Everything else here is microseconds of CPU.

use std::time::{Duration, Instant};

use bytes::Bytes;
use serde_json::{Map, Value};
use std::sync::Arc;
use vllm_sr_config::model::{HeaderMutation, ModelId, Plugin};

use vllm_sr_engine::{
    embed_plan, MissingVectors, Outcome, Plan, RequestError, RequestView, RouteKind, RouteOptions,
};

use crate::body::{BodyError, ChatBody};
use crate::error::ApiError;
use crate::learning::{BaseRoute, Facts, LearningTrace, Sessions};
use crate::live::LiveState;
use crate::rewrite::{self, Applied};

/// A routed request, ready to forward.
#[derive(Debug)]
pub struct Routed {
    /// What the engine decided (for an explicit model: a direct outcome). Shared: the replay
    /// record reads it after the response is out.
    pub outcome: Arc<Outcome>,
    /// The logical model to forward to.
    pub model: ModelId,
    /// The body to forward, rewritten except for `model` (set per backend).
    pub body: ChatBody,
    /// What the rewrite did.
    pub applied: Applied,
    /// The decision's `header_mutation`, applied to the upstream request.
    pub header_mutation: Option<HeaderMutation>,
    /// The decision's `fast_response` message: answer without calling a backend.
    pub fast_response: Option<String>,
    /// The client asked for a stream.
    pub stream: bool,
    /// Time spent routing.
    pub routing: Duration,
    /// Router Learning's step, when learning is on and the request was auto-routed.
    pub learning: Option<LearningTrace>,
    /// The router asked the backend for a usage chunk the client did not request; the relay
    /// removes it from the client's stream.
    pub strip_usage: bool,
}

/// Reads a chat-completions request body for [`route`]; every transport calls this on the
/// body as it arrived, so `messages` is forwarded as the client's own bytes.
///
/// # Errors
/// Not JSON, or not an object (400).
pub fn parse_body(bytes: &Bytes) -> Result<ChatBody, ApiError> {
    ChatBody::parse(bytes).map_err(|e| match e {
        BodyError::Json(e) => ApiError::InvalidJson(e.to_string()),
        BodyError::NotAnObject => request_error(RequestError::NotAnObject),
    })
}

/// Per-request knobs.
#[derive(Debug, Clone, Copy)]
pub struct RouteParams {
    /// Deadline of the embedding batch.
    pub signal_budget: Duration,
    /// Ask streaming backends for a final usage chunk (for replay and cost).
    pub want_usage: bool,
}

/// Routes one chat-completions request.
///
/// # Errors
/// A body that is not a chat request (400), an unknown model (404), or a route that ends on
/// no model (503).
pub async fn route(
    live: &Arc<LiveState>,
    sessions: &Sessions,
    mut body: ChatBody,
    headers: &[(&str, &str)],
    params: RouteParams,
) -> Result<Routed, ApiError> {
    let started = Instant::now();
    let view = body.view().map_err(request_error)?;
    // Only the headers routing reads: copying every header cost more than reading them.
    let view = view.with_headers(
        headers
            .iter()
            .copied()
            .filter(|(name, _)| live.reads_header(name)),
    );
    let stream = body.members().get("stream").and_then(Value::as_bool) == Some(true);
    let facts = Facts::of(&live.config, &view);
    let plan = plan_known(live, view, RouteOptions::default())?;
    let mut outcome = evaluate(live, plan, params.signal_budget).await?;
    let learning = match (&facts, outcome.kind, outcome.model.clone()) {
        (Some(f), RouteKind::Auto, Some(model)) => {
            let decision = outcome
                .decision
                .as_deref()
                .and_then(|d| live.decision(&outcome.recipe, d));
            let trace = sessions.protect(
                &live.config,
                f,
                BaseRoute {
                    decision,
                    model: &model,
                    confidence: outcome.confidence,
                },
            );
            if trace.final_model != model {
                retarget(&mut outcome, decision, &trace.final_model);
            }
            Some(trace)
        }
        _ => None,
    };
    let Some(model) = outcome
        .model
        .as_deref()
        .and_then(|m| live.config.model_by_name(m))
    else {
        return Err(ApiError::NoBackend {
            model: outcome.requested_model.clone(),
            reason: "no decision matched and the recipe has no providers.defaults.default_model"
                .into(),
        });
    };
    let mut routed = Routed {
        model,
        body: ChatBody::default(),
        applied: Applied::default(),
        header_mutation: None,
        fast_response: None,
        stream,
        routing: Duration::ZERO,
        learning,
        strip_usage: false,
        outcome: Arc::new(outcome),
    };
    if routed.outcome.kind == RouteKind::Auto {
        let decision = routed
            .outcome
            .decision
            .as_deref()
            .and_then(|d| live.decision(&routed.outcome.recipe, d));
        routed.applied = rewrite::apply_routed(
            &mut body,
            &live.config,
            &routed.outcome,
            decision,
            live.dialect(model),
        );
        for p in decision.map(|d| d.plugins.as_slice()).unwrap_or_default() {
            match p {
                Plugin::HeaderMutation(h) => routed.header_mutation = Some(h.clone()),
                Plugin::FastResponse { message } => routed.fast_response = Some(message.clone()),
                _ => {}
            }
        }
    }
    // Learning keeps token totals per session, so it wants usage as much as replay does.
    if stream && (params.want_usage || routed.learning.is_some()) {
        routed.strip_usage = request_usage(body.members_mut());
    }
    routed.body = body;
    routed.routing = started.elapsed();
    Ok(routed)
}

/// Routing without forwarding (management `classify` and `eval`): the outcome of a
/// `{"text"|"query": …}` or `{"messages": […]}` body; `model` defaults to the first auto name.
/// `evaluate_all` evaluates every declared signal, not only those the decisions use.
///
/// # Errors
/// An empty or malformed body (400) or an unknown model (404).
pub async fn classify(
    live: &Arc<LiveState>,
    mut body: Value,
    headers: &[(&str, &str)],
    evaluate_all: bool,
    budget: Duration,
) -> Result<Outcome, ApiError> {
    let Some(obj) = body.as_object_mut() else {
        return Err(request_error(RequestError::NotAnObject));
    };
    let text = obj
        .get("text")
        .or_else(|| obj.get("query"))
        .and_then(Value::as_str)
        .map(str::to_string);
    if !obj.contains_key("messages") {
        let Some(text) = text.filter(|t| !t.trim().is_empty()) else {
            return Err(ApiError::InvalidRequest {
                message: "give the text to route as \"text\" (or \"query\") or as \"messages\""
                    .into(),
                param: Some("text".into()),
            });
        };
        obj.insert(
            "messages".into(),
            serde_json::json!([{"role": "user", "content": text}]),
        );
    }
    let auto = live
        .config
        .auto_model_names
        .first()
        .cloned()
        .unwrap_or_else(|| "auto".into());
    let model_missing = obj
        .get("model")
        .and_then(Value::as_str)
        .is_none_or(str::is_empty);
    if model_missing {
        obj.insert("model".into(), Value::String(auto));
    }
    let view = RequestView::from_json(&body)
        .map_err(request_error)?
        .with_headers(headers.iter().copied());
    let plan = plan_known(
        live,
        view,
        RouteOptions {
            evaluate_all,
            ..RouteOptions::default()
        },
    )?;
    evaluate(live, plan, budget).await
}

/// Sets `stream_options.include_usage`; true when the client had not asked for it.
fn request_usage(body: &mut Map<String, Value>) -> bool {
    let asked = body
        .get("stream_options")
        .and_then(|o| o.get("include_usage"))
        .and_then(Value::as_bool)
        == Some(true);
    if asked {
        return false;
    }
    match body.get_mut("stream_options") {
        Some(Value::Object(o)) => {
            o.insert("include_usage".into(), Value::Bool(true));
        }
        _ => {
            body.insert(
                "stream_options".into(),
                serde_json::json!({"include_usage": true}),
            );
        }
    }
    true
}

/// Points the outcome at the model learning kept; reasoning follows that model's modelRef in
/// the decision when it has one.
fn retarget(
    outcome: &mut Outcome,
    decision: Option<&vllm_sr_config::model::Decision>,
    model: &str,
) {
    outcome.model = Some(model.to_string());
    outcome.lora = None;
    if let Some(r) = decision.and_then(|d| d.model_refs.iter().find(|r| r.model_name == model)) {
        outcome.use_reasoning = r.use_reasoning;
        if let Some(e) = &r.reasoning_effort {
            outcome.reasoning_effort = e.clone();
        }
    }
}

/// Plans a request; a model that is neither an auto name, an entrypoint nor a logical model
/// is a 404 naming the ones that work.
fn plan_known(live: &LiveState, view: RequestView, opts: RouteOptions) -> Result<Plan, ApiError> {
    let plan = live.engine.plan(view, opts);
    if plan.kind == RouteKind::Unknown {
        return Err(ApiError::ModelNotFound {
            model: plan.request.model.clone(),
            known: live.model_names().join(", "),
        });
    }
    Ok(plan)
}

/// Embeds the plan's texts on the model's threads within the budget, then evaluates. With a
/// model, evaluation (milliseconds: language detection, banks) runs on a blocking thread so
/// the async workers stay free; keyword-only recipes evaluate inline in microseconds.
async fn evaluate(
    live: &Arc<LiveState>,
    plan: Plan,
    budget: Duration,
) -> Result<Outcome, ApiError> {
    let Some(embedder) = &live.embedder else {
        if plan.texts.is_empty() {
            return Ok(live.engine.evaluate(plan, Some(&[]), 0.0));
        }
        let why = MissingVectors::Failed("no embedding model is loaded".into());
        return Ok(live.engine.evaluate_missing(plan, why, 0.0));
    };
    // Boxed: only recipes with embedding signals come here, and the embedding future would
    // otherwise enlarge every request's routing future.
    let embedded = Box::pin(embed_plan(embedder, &plan, Some(budget))).await;
    if let Err(e) = &embedded.vectors {
        tracing::warn!(error = %e, "embedding-backed signals count as unmatched for this request");
    }
    let l = live.clone();
    tokio::task::spawn_blocking(move || l.engine.evaluate_embedded(plan, embedded))
        .await
        .map_err(|e| ApiError::Unavailable(format!("routing task failed: {e}")))
}

fn request_error(e: RequestError) -> ApiError {
    let param = match e {
        RequestError::MissingMessages => Some("messages".to_string()),
        _ => None,
    };
    ApiError::InvalidRequest {
        message: e.to_string(),
        param,
    }
}
