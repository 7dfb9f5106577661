//! Plan → embed → evaluate for callers that hold an embedder, under the per-request signal
//! budget.
//!
//! The engine itself never waits: `Engine::plan` lists the texts to embed and
//! `Engine::evaluate` reads whatever vectors the caller brings. The signal budget
//! ([`RouteOptions::signal_budget`]) bounds how long a caller waits for those vectors; when it
//! runs out, the embedding-backed families count as unmatched, the deterministic ones
//! (keyword, structure, context, PII, language, ...) are still decided, and the outcome lists
//! the skipped families with the reason ([`MissingVectors`]).
//!
//! Two ways in:
//! - [`route`] for async callers (the HTTP gateway): awaits the model runtime's own deadline
//!   while the forward pass runs on the model's threads, never on an async worker.
//! - [`Engine::route_blocking`] for plain threads (CLI, tests, benchmarks).

use std::time::{Duration, Instant};

use vllm_sr_models::{Embedder, ModelError};

use crate::embed::Embed;
use crate::engine::{Engine, RouteOptions};
use crate::outcome::Outcome;
use crate::request::RequestView;

/// Why a request has no vectors.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MissingVectors {
    /// The embedding did not finish within the signal budget.
    #[error("signal budget of {} ms exceeded before the embeddings arrived", .0.as_secs_f64() * 1e3)]
    Budget(Duration),
    /// The embedding failed.
    #[error("embedding failed: {0}")]
    Failed(String),
}

/// Routes one request for an async caller: plans, embeds `plan.texts` on the model's own
/// threads within `opts.signal_budget` (the runtime's default deadline when `None`), and
/// evaluates.
///
/// Only the wait happens on the calling task; evaluation is pure CPU work of tens of
/// microseconds for short prompts (see `scripts/bench/results/`). Needs a tokio runtime with
/// the time driver, as every async method of the model runtime does.
pub async fn route(
    engine: &Engine,
    embedder: &Embedder,
    request: RequestView,
    opts: RouteOptions,
) -> Outcome {
    let plan = engine.plan(request, opts);
    if plan.texts.is_empty() {
        return engine.evaluate(plan, Some(&[]), 0.0);
    }
    let started = Instant::now();
    let texts = plan.texts.clone();
    let result = match opts.signal_budget {
        Some(budget) => embedder.embed_with_timeout(texts, budget).await,
        None => embedder.embed(texts).await,
    };
    let embed_ms = started.elapsed().as_secs_f64() * 1e3;
    match result {
        Ok(v) => {
            let vectors: Vec<Vec<f32>> = v.iter().map(|e| e.as_slice().to_vec()).collect();
            engine.evaluate(plan, Some(&vectors), embed_ms)
        }
        Err(ModelError::DeadlineExceeded { timeout, .. }) => {
            engine.evaluate_missing(plan, MissingVectors::Budget(timeout), embed_ms)
        }
        Err(e) => engine.evaluate_missing(plan, MissingVectors::Failed(e.to_string()), embed_ms),
    }
}

impl Engine {
    /// Plans, embeds with `embedder` on this thread within `opts.signal_budget`, and
    /// evaluates (CLI, tests, benchmarks). Never call it on an async worker.
    pub fn route_blocking(
        &self,
        request: RequestView,
        opts: RouteOptions,
        embedder: &dyn Embed,
    ) -> Outcome {
        let plan = self.plan(request, opts);
        if plan.texts.is_empty() {
            return self.evaluate(plan, Some(&[]), 0.0);
        }
        let started = Instant::now();
        let result = match opts.signal_budget {
            Some(budget) => embedder
                .embed_within(&plan.texts, budget)
                .map(|v| v.ok_or(MissingVectors::Budget(budget))),
            None => embedder.embed(&plan.texts).map(Ok),
        };
        let embed_ms = started.elapsed().as_secs_f64() * 1e3;
        match result {
            Ok(Ok(vectors)) => self.evaluate(plan, Some(&vectors), embed_ms),
            Ok(Err(missing)) => self.evaluate_missing(plan, missing, embed_ms),
            Err(e) => self.evaluate_missing(plan, MissingVectors::Failed(e.to_string()), embed_ms),
        }
    }
}
