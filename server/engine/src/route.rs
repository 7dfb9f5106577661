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
//!   while the forward pass runs on the model's threads, never on an async worker. Its two
//!   halves, [`embed_plan`] and [`Engine::evaluate_embedded`], let a caller run the CPU-bound
//!   evaluation elsewhere (e.g. `spawn_blocking`).
//! - [`Engine::route_blocking`] for plain threads (CLI, tests, benchmarks).

use std::time::{Duration, Instant};

use vllm_sr_models::{Embedder, ModelError};

use crate::embed::Embed;
use crate::engine::{Engine, Plan, RouteOptions};
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

/// A plan's vectors, or why there are none, and how long the wait took.
#[derive(Debug, Clone, PartialEq)]
pub struct Embedded {
    /// One vector per `plan.texts` entry, in order.
    pub vectors: Result<Vec<Vec<f32>>, MissingVectors>,
    /// Time spent waiting for them.
    pub embed_ms: f64,
}

/// Embeds `plan.texts` on the model's own threads, waiting at most `budget` (the runtime's
/// default deadline when `None`). Texts in the runtime's result cache come back at once, even
/// under a budget too small for a forward pass. Needs a tokio runtime with the time driver, as
/// every async method of the model runtime does.
pub async fn embed_plan(embedder: &Embedder, plan: &Plan, budget: Option<Duration>) -> Embedded {
    if plan.texts.is_empty() {
        return Embedded {
            vectors: Ok(Vec::new()),
            embed_ms: 0.0,
        };
    }
    let started = Instant::now();
    let texts = plan.texts.clone();
    let result = match budget {
        Some(budget) => embedder.embed_with_timeout(texts, budget).await,
        None => embedder.embed(texts).await,
    };
    let vectors = match result {
        Ok(v) => Ok(v.iter().map(|e| e.as_slice().to_vec()).collect()),
        Err(ModelError::DeadlineExceeded { timeout, .. }) => Err(MissingVectors::Budget(timeout)),
        Err(e) => Err(MissingVectors::Failed(e.to_string())),
    };
    Embedded {
        vectors,
        embed_ms: started.elapsed().as_secs_f64() * 1e3,
    }
}

/// Routes one request for an async caller: plans, embeds within `opts.signal_budget`
/// ([`embed_plan`]), and evaluates ([`Engine::evaluate_embedded`]) on the calling task.
///
/// Evaluation is pure CPU work, about 3 ms for a 100-token prompt on the balance recipe (mostly
/// language detection; `scripts/bench/results/engine-2026-11-21.md`). A caller that keeps its
/// async workers free of millisecond-scale work awaits [`embed_plan`] itself and runs
/// [`Engine::evaluate_embedded`] under `spawn_blocking`.
pub async fn route(
    engine: &Engine,
    embedder: &Embedder,
    request: RequestView,
    opts: RouteOptions,
) -> Outcome {
    let plan = engine.plan(request, opts);
    let embedded = embed_plan(embedder, &plan, opts.signal_budget).await;
    engine.evaluate_embedded(plan, embedded)
}

impl Engine {
    /// Evaluates a plan with the result of [`embed_plan`] (vectors, or why there are none).
    pub fn evaluate_embedded(&self, plan: Plan, embedded: Embedded) -> Outcome {
        match embedded.vectors {
            Ok(vectors) => self.evaluate(plan, Some(&vectors), embedded.embed_ms),
            Err(missing) => self.evaluate_missing(plan, missing, embedded.embed_ms),
        }
    }

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
