//! The full signal pass for a ~100-token prompt on the balance recipe, against one embedding
//! forward pass of the same prompt: p50/p99 of each, and a per-stage and per-family breakdown.
//! Target: full-pass p99 ≤ 1.3 × forward-pass p99.
//!
//! "Full pass" is `Engine::route_blocking` with every declared family evaluated (as the eval
//! API does): plan, the request's one embedding batch, every signal family, projections,
//! decisions and the outcome report. "Forward pass" is `Embedder::embed_blocking` of the same
//! text. Both go through the model's worker thread with its result cache off, and the two are
//! interleaved so machine noise hits them alike.
//!
//! Needs a release build and the default model (`scripts/fetch-models.sh`); without them it
//! says so and exits 0. Run: `cargo bench -p vllm-sr-engine --bench signals` (env
//! `BENCH_ITERS`, default 200).

#![allow(
    clippy::expect_used,
    clippy::print_stdout,
    clippy::print_stderr,
    reason = "benchmark harness"
)]

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::Instant;

use indexmap::IndexMap;
use serde_json::json;
use vllm_sr_engine::{Engine, RequestView, RouteOptions};
use vllm_sr_models::{
    Embedder, LoadOptions as ModelOptions, ModelRegistry, RuntimeOptions, DEFAULT_EMBEDDING_MODEL,
};

/// About 100 word-piece tokens (96 with [CLS]/[SEP] under the MiniLM tokenizer).
const PROMPT: &str = "Our team runs a small online bookstore on a single Postgres database and a \
Django monolith. Orders spike tenfold during holiday sales and checkout slows to several seconds. \
Compare three ways to handle the load: read replicas with caching, splitting checkout into its own \
service, or moving the catalogue to a managed search engine. Explain the trade-offs in cost, \
complexity and risk, and recommend one plan we could ship within a month.";

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn summary(v: &mut [f64]) -> (f64, f64, f64) {
    v.sort_by(f64::total_cmp);
    (
        percentile(v, 0.5),
        percentile(v, 0.99),
        v.iter().sum::<f64>() / v.len() as f64,
    )
}

fn main() {
    if cfg!(debug_assertions) {
        eprintln!("signals bench: skipped (needs a release build: cargo bench)");
        return;
    }
    // `cargo bench` passes `--bench`; `cargo test --benches` passes nothing: run only when benching.
    if !std::env::args().any(|a| a == "--bench") {
        eprintln!("signals bench: skipped (not run by cargo bench)");
        return;
    }
    let model = match ModelRegistry::from_env().resolve(DEFAULT_EMBEDDING_MODEL) {
        Ok(m) => m,
        Err(e) => {
            eprintln!("signals bench: skipped ({e})");
            return;
        }
    };
    let iters: usize = std::env::var("BENCH_ITERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200);
    let embedder = Embedder::load(
        &model.id,
        &model.dir,
        &ModelOptions::default(),
        RuntimeOptions {
            cache_capacity: 0,
            ..RuntimeOptions::default()
        },
    )
    .expect("model loads");

    let engine = Engine::build(common::upstream("balance"), &embedder).expect("engine builds");
    let body = json!({"model": "vllm-sr/auto", "messages": [{"role": "user", "content": PROMPT}]});
    let opts = RouteOptions {
        evaluate_all: true,
        signal_budget: None,
    };
    let route = || {
        let req = RequestView::from_json(&body).expect("valid request");
        engine.route_blocking(req, opts, &embedder)
    };
    let texts = engine
        .plan(RequestView::from_json(&body).expect("valid"), opts)
        .texts;

    // Warm-up.
    for _ in 0..10 {
        let _ = embedder.embed_blocking(vec![PROMPT.to_string()]);
        let _ = route();
    }

    let mut forward = Vec::with_capacity(iters);
    let mut full = Vec::with_capacity(iters);
    let mut stages: IndexMap<&str, Vec<f64>> = IndexMap::new();
    let mut families: IndexMap<String, Vec<f64>> = IndexMap::new();
    let mut decision = None;
    for _ in 0..iters {
        let t = Instant::now();
        let _ = embedder
            .embed_blocking(vec![PROMPT.to_string()])
            .expect("embeds");
        forward.push(t.elapsed().as_secs_f64() * 1e3);

        let t = Instant::now();
        let o = route();
        full.push(t.elapsed().as_secs_f64() * 1e3);
        let tm = o.timings;
        stages
            .entry("embed (inside the pass)")
            .or_default()
            .push(tm.embed_ms);
        stages
            .entry("signals (all families)")
            .or_default()
            .push(tm.signals_ms);
        stages
            .entry("decide (projections, trees)")
            .or_default()
            .push(tm.decide_ms);
        let rest = full[full.len() - 1] - tm.embed_ms - tm.signals_ms - tm.decide_ms;
        stages.entry("plan + report + glue").or_default().push(rest);
        for (name, m) in o.metrics.iter() {
            families
                .entry(name.to_string())
                .or_default()
                .push(m.execution_time_ms);
        }
        decision = o.decision;
    }

    let (f50, f99, fmean) = summary(&mut forward);
    let (a50, a99, amean) = summary(&mut full);
    println!("signals bench: balance recipe, {iters} interleaved iterations, texts embedded per request: {}", texts.len());
    println!("prompt: {} chars; decision: {decision:?}", PROMPT.len());
    println!();
    println!("| measure | p50 ms | p99 ms | mean ms |");
    println!("|---|---|---|---|");
    println!("| forward pass alone (embed_blocking, 1 text) | {f50:.2} | {f99:.2} | {fmean:.2} |");
    println!("| full signal pass (route_blocking) | {a50:.2} | {a99:.2} | {amean:.2} |");
    for (name, v) in &mut stages {
        let (p50, p99, mean) = summary(v);
        println!("| · {name} | {p50:.3} | {p99:.3} | {mean:.3} |");
    }
    println!();
    println!("| family | p50 µs | p99 µs |");
    println!("|---|---|---|");
    for (name, v) in &mut families {
        let (p50, p99, _) = summary(v);
        println!("| {name} | {:.1} | {:.1} |", p50 * 1e3, p99 * 1e3);
    }
    println!();
    println!(
        "full ÷ forward: p50 {:.3}, p99 {:.3} (target p99 ≤ 1.3)",
        a50 / f50,
        a99 / f99
    );
}
