//! The per-request signal budget with the real embedding model: a tiny budget leaves the
//! embedding-backed families skipped and the deterministic ones decided, through both the
//! async helper the gateway calls (`route`) and the blocking path the CLI uses.
//!
//! Needs a release build and the model from `scripts/fetch-models.sh`; otherwise the tests
//! say so and return, unless `VLLM_SR_REQUIRE_MODELS=1` (CI) makes a missing model a failure.

#![allow(
    clippy::expect_used,
    clippy::panic,
    clippy::print_stderr,
    reason = "test harness"
)]

mod common;

use std::time::Duration;

use serde_json::json;
use vllm_sr_engine::{
    embed_plan, route, Engine, MissingVectors, Outcome, RequestView, RouteOptions,
};
use vllm_sr_models::Embedder;

fn balance(embedder: &Embedder) -> Engine {
    Engine::build(common::upstream("balance"), embedder).expect("engine builds")
}

fn assert_skipped(o: &Outcome) {
    common::assert_embedding_families_skipped(o);
    let why = o.skip_reason.as_deref().unwrap_or_default();
    assert!(why.contains("signal budget"), "{why}");
    assert_eq!(
        o.signals().matched_signals["language"],
        vec!["en".to_string()]
    );
    assert!(
        o.signals().matched_signals["keywords"].contains(&"reasoning_request_markers".to_string())
    );
}

const PROOF: &str = "Prove by contradiction that there are infinitely many primes, step by step.";

fn request_with(text: &str) -> RequestView {
    RequestView::from_json(
        &json!({"model": "vllm-sr/auto", "messages": [{"role": "user", "content": text}]}),
    )
    .expect("valid")
}

fn request() -> RequestView {
    request_with(PROOF)
}

fn opts(budget: Duration) -> RouteOptions {
    RouteOptions {
        evaluate_all: true,
        signal_budget: Some(budget),
    }
}

#[test]
fn tiny_budget_skips_embedding_families_on_the_blocking_path() {
    let Some(e) = common::embedder("model-backed tests") else {
        return;
    };
    let engine = balance(&e);
    // A forward pass takes milliseconds; 1 µs always runs out first.
    let late = engine.route_blocking(request(), opts(Duration::from_micros(1)), &e);
    assert_skipped(&late);
    let in_time = engine.route_blocking(request(), opts(Duration::from_secs(30)), &e);
    assert!(
        in_time.skipped_signals.is_empty(),
        "{:?}",
        in_time.skipped_signals
    );
    assert_eq!(
        in_time.signals().matched_signals["domains"],
        vec!["math".to_string()]
    );
}

#[test]
fn tiny_budget_skips_embedding_families_on_the_async_path() {
    let Some(e) = common::embedder("model-backed tests") else {
        return;
    };
    let engine = balance(&e);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_time()
        .build()
        .expect("runtime");
    let late = rt.block_on(route(
        &engine,
        &e,
        request(),
        opts(Duration::from_micros(1)),
    ));
    assert_skipped(&late);
    let in_time = rt.block_on(route(&engine, &e, request(), opts(Duration::from_secs(30))));
    assert!(
        in_time.skipped_signals.is_empty(),
        "{:?}",
        in_time.skipped_signals
    );
    let blocking = engine.route_blocking(request(), opts(Duration::from_secs(30)), &e);
    assert_eq!(
        in_time.signals().matched_signals,
        blocking.signals().matched_signals
    );
    assert_eq!(in_time.decision, blocking.decision);

    // The two halves, as a gateway that evaluates off its async workers would call them. (A
    // text not embedded before: the model runtime answers cached texts without waiting.)
    let fresh = request_with("Prove step by step, by contradiction, that no largest prime exists.");
    let plan = engine.plan(fresh, opts(Duration::from_micros(1)));
    let embedded = rt.block_on(embed_plan(&e, &plan, Some(Duration::from_micros(1))));
    assert!(
        matches!(embedded.vectors, Err(MissingVectors::Budget(_))),
        "{:?}",
        embedded.vectors
    );
    assert_skipped(&engine.evaluate_embedded(plan, embedded));
    let plan = engine.plan(request(), opts(Duration::from_secs(30)));
    let embedded = rt.block_on(embed_plan(&e, &plan, Some(Duration::from_secs(30))));
    let split = engine.evaluate_embedded(plan, embedded);
    assert_eq!(
        split.signals().matched_signals,
        in_time.signals().matched_signals
    );
}

/// Compile-time check: the gateway can `tokio::spawn` the routing future.
#[allow(dead_code, reason = "checked by the compiler, never called")]
fn route_future_is_send(engine: &Engine, embedder: &Embedder) {
    fn send<T: Send>(_: &T) {}
    let future = route(engine, embedder, request(), RouteOptions::default());
    send(&future);
}
