//! Decision evaluation only, on the balance recipe, with precomputed signals: partitions,
//! top-k, projections, all 14 decision trees and the ranking (`Engine::select`), and the same
//! plus the outcome report (`Engine::decide`). Target: `select` ≤ 5 µs.
//!
//! Every iteration gets its own clone of the signals made just before it (`PerIteration`), so
//! they are in cache as they are right after a real signal pass; batching clones up front
//! measured cache misses on cold copies instead.
//!
//! Signals come from the real embedding model when a release build finds it (as
//! `scripts/fetch-models.sh` installs it), else from the lexical test embedder; the bench
//! prints which. Also: the engine's whole share of a request on the proxy benchmark's
//! keyword-only recipe (`proxy_keyword`). Run: `cargo bench -p vllm-sr-engine --bench decide`.

#![allow(
    clippy::expect_used,
    clippy::print_stderr,
    reason = "benchmark harness"
)]

#[path = "../tests/common/mod.rs"]
mod common;

/// The allocator the `vllm-sr` binary ships with: the report allocates per request, and
/// glibc malloc made it look up to ~1.5x dearer than it is in the product.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use serde_json::json;
use vllm_sr_engine::{Embed, Engine, LexicalEmbedder, RequestView, RouteOptions, SignalPass};
use vllm_sr_models::{
    Embedder, LoadOptions as ModelOptions, ModelRegistry, RuntimeOptions, DEFAULT_EMBEDDING_MODEL,
};

/// Requests that end on different lanes of the balance recipe.
const PROMPTS: [(&str, &str); 4] = [
    (
        "proof",
        "Prove that the square root of 2 is irrational, step by step.",
    ),
    (
        "code",
        "Debug this Python stack trace: KeyError 'user_id' in the login handler after the upgrade.",
    ),
    (
        "creative",
        "Write three playful taglines for a neighbourhood bakery that opens at dawn.",
    ),
    ("greeting", "Hi! How are you today?"),
];

fn embedder() -> Box<dyn Embed> {
    if !cfg!(debug_assertions) {
        if let Ok(m) = ModelRegistry::from_env().resolve(DEFAULT_EMBEDDING_MODEL) {
            if let Ok(e) = Embedder::load(
                &m.id,
                &m.dir,
                &ModelOptions::default(),
                RuntimeOptions::default(),
            ) {
                eprintln!("decide bench: signals from {}", m.id);
                return Box::new(e);
            }
        }
    }
    eprintln!("decide bench: model not found, signals from the lexical test embedder");
    Box::new(LexicalEmbedder::new(384))
}

fn passes(engine: &Engine, embedder: &dyn Embed) -> Vec<(&'static str, SignalPass)> {
    PROMPTS
        .iter()
        .map(|(name, prompt)| {
            let req = RequestView::from_json(
                &json!({"model": "vllm-sr/auto", "messages": [{"role": "user", "content": prompt}]}),
            )
            .expect("valid request");
            let plan = engine.plan(req, RouteOptions::default());
            let vectors = embedder.embed(&plan.texts).expect("embeds");
            let pass = engine
                .signal_pass(plan, Some(&vectors), 0.0)
                .expect("an auto request");
            (*name, pass)
        })
        .collect()
}

fn balance(embedder: &dyn Embed) -> Engine {
    Engine::build(common::upstream("balance"), embedder).expect("engine builds")
}

/// CPU time this thread has run, from `/proc/thread-self/schedstat` (ns; Linux only).
fn thread_cpu_ns() -> Option<u64> {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Mean on-CPU time of `select` in µs: unlike wall time, barely moved by other tenants of a
/// shared machine (time slices taken by other processes are not counted). Each call gets a
/// fresh clone of the signals, made just before it (so they are in cache, as after a real
/// signal pass); the cost of cloning is measured separately and subtracted.
fn select_cpu_us(engine: &Engine, pass: &SignalPass) -> Option<f64> {
    const BATCH: usize = 1000;
    const ROUNDS: usize = 50;
    let mut with_select = 0u64;
    let mut clone_only = 0u64;
    for _ in 0..ROUNDS {
        let mut selections = Vec::with_capacity(BATCH);
        let before = thread_cpu_ns()?;
        for _ in 0..BATCH {
            selections.push(black_box(engine.select(pass.clone())));
        }
        with_select += thread_cpu_ns()? - before;
        drop(selections);
        let mut clones = Vec::with_capacity(BATCH);
        let before = thread_cpu_ns()?;
        for _ in 0..BATCH {
            clones.push(black_box(pass.clone()));
        }
        clone_only += thread_cpu_ns()? - before;
        drop(clones);
    }
    let per_call = with_select.saturating_sub(clone_only) as f64 / (BATCH * ROUNDS) as f64;
    Some(per_call / 1e3)
}

fn decide(c: &mut Criterion) {
    let embedder = embedder();
    let engine = balance(embedder.as_ref());
    let passes = passes(&engine, embedder.as_ref());
    let mut group = c.benchmark_group("balance");
    for (name, pass) in &passes {
        let winner = engine.select(pass.clone()).winner();
        let decision = winner.map(|i| engine.config().recipes[0].decisions[i].name.clone());
        let cpu = select_cpu_us(&engine, pass).map_or("n/a".into(), |us| format!("{us:.2} µs"));
        eprintln!("decide bench: {name} → {decision:?}; select on-CPU time per call {cpu}");
        group.bench_function(format!("select/{name}"), |b| {
            b.iter_batched(
                || pass.clone(),
                |p| black_box(engine.select(p)),
                BatchSize::PerIteration,
            )
        });
        group.bench_function(format!("select+report/{name}"), |b| {
            b.iter_batched(
                || pass.clone(),
                |p| black_box(engine.decide(p)),
                BatchSize::PerIteration,
            )
        });
    }
    group.finish();
}

/// The engine's whole share of a proxied request on the proxy benchmark's keyword-only recipe
/// (`scripts/bench/proxy/recipe.yaml`): the chat body read into a request view, the plan and
/// the evaluation with its outcome report — what `vllm-sr serve` runs per request when no
/// model is involved.
fn keyword_route(c: &mut Criterion) {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../scripts/bench/proxy/recipe.yaml");
    let engine =
        Engine::build(common::recipe_at(&path), &LexicalEmbedder::new(384)).expect("engine builds");
    let body = json!({"model": "auto", "messages": [{"role": "user", "content": "hello"}]});
    let route = |body: &serde_json::Value| {
        let req = RequestView::from_json(body).expect("valid request");
        let plan = engine.plan(req, RouteOptions::default());
        engine.evaluate(plan, Some(&[]), 0.0)
    };
    eprintln!(
        "decide bench: proxy keyword recipe → {:?}",
        route(&body).decision
    );
    c.bench_function("proxy_keyword/view+plan+evaluate", |b| {
        b.iter(|| black_box(route(black_box(&body))));
    });
}

criterion_group!(benches, decide, keyword_route);
criterion_main!(benches);
