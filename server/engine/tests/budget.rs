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

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use vllm_sr_config::{load_path, LoadOptions};
use vllm_sr_engine::{
    embed_plan, route, Engine, MissingVectors, Outcome, RequestView, RouteOptions,
};
use vllm_sr_models::{
    Embedder, LoadOptions as ModelOptions, ModelRegistry, RuntimeOptions, DEFAULT_EMBEDDING_MODEL,
};

fn embedder() -> Option<Embedder> {
    if cfg!(debug_assertions) {
        eprintln!("skipping: model-backed tests need a release build (cargo test --release)");
        return None;
    }
    match ModelRegistry::from_env().resolve(DEFAULT_EMBEDDING_MODEL) {
        Ok(m) => Some(
            Embedder::load(
                &m.id,
                &m.dir,
                &ModelOptions::default(),
                RuntimeOptions::default(),
            )
            .expect("model loads"),
        ),
        Err(e) if std::env::var("VLLM_SR_REQUIRE_MODELS").is_ok_and(|v| v == "1") => panic!("{e}"),
        Err(e) => {
            eprintln!("skipping: {e}");
            None
        }
    }
}

fn balance(embedder: &Embedder) -> Engine {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/upstream/recipes/balance/config.yaml");
    let env = HashMap::from([("POSTGRES_PASSWORD".to_string(), "x".to_string())]);
    let loaded = load_path(
        &path,
        &LoadOptions {
            strict: false,
            env: &env,
            base_dir: None,
        },
    )
    .expect("recipe loads");
    Engine::build(Arc::new(loaded.config), embedder).expect("engine builds")
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

fn assert_skipped(o: &Outcome) {
    // Skipped families emit nothing of their own; as for any unmatched family, the
    // balance partitions then add their declared defaults (contract §4, step 1).
    // (skipped family, its key among the matched signals, what may appear there)
    for (family, key, defaults) in [
        (
            "embedding",
            "embeddings",
            vec!["general_chat_fallback".to_string()],
        ),
        ("domain", "domains", vec!["other".to_string()]),
        ("fact_check", "fact_check", vec![]),
        ("complexity", "complexity", vec![]),
    ] {
        assert!(
            o.skipped_signals.iter().any(|s| s == family),
            "{family} not skipped: {:?}",
            o.skipped_signals
        );
        let matched = o.matched_signals.get(key).cloned().unwrap_or_default();
        assert_eq!(matched, defaults, "{family} matched without vectors");
    }
    let why = o.skip_reason.as_deref().unwrap_or_default();
    assert!(why.contains("signal budget"), "{why}");
    assert_eq!(o.matched_signals["language"], vec!["en".to_string()]);
    assert!(o.matched_signals["keywords"].contains(&"reasoning_request_markers".to_string()));
    assert!(o.model.is_some(), "the request still routes");
}

#[test]
fn tiny_budget_skips_embedding_families_on_the_blocking_path() {
    let Some(e) = embedder() else { return };
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
    assert_eq!(in_time.matched_signals["domains"], vec!["math".to_string()]);
}

#[test]
fn tiny_budget_skips_embedding_families_on_the_async_path() {
    let Some(e) = embedder() else { return };
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
    assert_eq!(in_time.matched_signals, blocking.matched_signals);
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
    assert_eq!(split.matched_signals, in_time.matched_signals);
}

/// Compile-time check: the gateway can `tokio::spawn` the routing future.
#[allow(dead_code, reason = "checked by the compiler, never called")]
fn route_future_is_send(engine: &Engine, embedder: &Embedder) {
    fn send<T: Send>(_: &T) {}
    let future = route(engine, embedder, request(), RouteOptions::default());
    send(&future);
}
