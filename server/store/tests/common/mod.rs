//! Helpers shared by the store's integration tests: options for small, fast stores and
//! record generators.

#![allow(dead_code, reason = "each test binary uses a different subset")]

use std::collections::BTreeMap;
use std::time::Duration;

use vllm_sr_store::{Cost, LearningTrace, Lifecycle, ReplayRecord, StoreOptions, Timings, Usage};

/// A store that commits quickly and keeps everything.
pub fn options() -> StoreOptions {
    StoreOptions {
        queue_capacity: 1024,
        batch_max_rows: 64,
        flush_interval: Duration::from_millis(5),
        max_records: None,
        ttl: None,
        retention_interval: Duration::from_secs(60),
        read_connections: 2,
    }
}

/// A record with every field set.
pub fn full_record(timestamp_ms: i64) -> ReplayRecord {
    let mut r = ReplayRecord::new(timestamp_ms);
    r.ended_ms = Some(timestamp_ms + 812);
    r.request_id = Some("req-123".into());
    r.session_hash = Some("s:9f86d081".into());
    r.conversation_hash = Some("c:2c26b46b".into());
    r.requested_model = Some("MoM".into());
    r.recipe = Some("agentic-saars".into());
    r.decision = Some("code_generation".into());
    r.confidence = Some(0.87);
    r.base_model = Some("qwen3-8b".into());
    r.final_model = Some("qwen3-32b".into());
    r.backend = Some("vllm-a".into());
    r.status = Some(200);
    r.lifecycle = Lifecycle::Completed;
    r.streaming = true;
    r.signals = BTreeMap::from([
        ("keyword".into(), vec!["code_words".into()]),
        (
            "embedding".into(),
            vec!["coding".into(), "debugging".into()],
        ),
    ]);
    r.signal_confidences = BTreeMap::from([("embedding:coding".into(), 0.91)]);
    r.projection_scores = BTreeMap::from([("difficulty".into(), 0.64)]);
    r.eval_trace = vllm_sr_store::RawJson::of(
        &serde_json::json!([{"decision_name": "code_generation", "matched": true}]),
    );
    r.learning = Some(LearningTrace {
        action: Some("switch".into()),
        reason: Some("underpowered".into()),
        scope: Some("session".into()),
        mode: Some("enforce".into()),
        switch_cost: Some(0.0021),
        detail: Some(serde_json::json!({"protection": {"switch_margin": 0.1}})),
    });
    r.plugins = vec!["system_prompt".into(), "router_replay".into()];
    r.use_reasoning = Some(true);
    r.reasoning_effort = Some("high".into());
    r.timings = Timings {
        signals_ms: 3.25,
        routing_ms: 0.5,
        upstream_ttfb_ms: Some(140.0),
        total_ms: 812.0,
    };
    r.usage = Some(Usage {
        prompt_tokens: 1200,
        cached_prompt_tokens: 1024,
        completion_tokens: 350,
    });
    r.cost = Some(Cost {
        actual: 0.00042,
        baseline: 0.0105,
        currency: "USD".into(),
        baseline_model: Some("gpt-5".into()),
    });
    r.cache_hit = false;
    r.terminal_reason = None;
    r.request_body = Some(r#"{"model":"MoM","messages":[{"role":"user","content":"hé"}]}"#.into());
    r.request_body_truncated = false;
    r.response_body = Some("{\"choices\":[".into());
    r.response_body_truncated = true;
    r
}

pub const DECISIONS: [&str; 4] = ["code", "math", "chat", "reasoning"];
pub const MODELS: [&str; 3] = ["small", "medium", "large"];

/// A random but plausible record at `timestamp_ms`.
pub fn random_record(rng: &mut fastrand::Rng, timestamp_ms: i64) -> ReplayRecord {
    let mut r = ReplayRecord::new(timestamp_ms);
    if rng.u8(..10) > 0 {
        r.decision = Some(DECISIONS[rng.usize(..DECISIONS.len())].into());
    }
    if rng.u8(..10) > 0 {
        r.final_model = Some(MODELS[rng.usize(..MODELS.len())].into());
    }
    r.session_hash = Some(format!("s{}", rng.u8(..5)));
    r.status = Some(*rng.choice(&[200u16, 200, 200, 429, 502]).unwrap_or(&200));
    r.lifecycle = *rng
        .choice(&[
            Lifecycle::Completed,
            Lifecycle::Completed,
            Lifecycle::Failed,
            Lifecycle::Aborted,
            Lifecycle::InProgress,
        ])
        .unwrap_or(&Lifecycle::Completed);
    r.cache_hit = rng.u8(..8) == 0;
    r.timings.total_ms = f64::from(rng.u32(1..5000)) / 4.0;
    if rng.u8(..5) > 0 {
        let prompt = rng.u64(0..5000);
        r.usage = Some(Usage {
            prompt_tokens: prompt,
            cached_prompt_tokens: rng.u64(0..=prompt),
            completion_tokens: rng.u64(0..2000),
        });
        if rng.bool() {
            let actual = f64::from(rng.u32(0..100_000)) / 1e6;
            r.cost = Some(Cost {
                actual,
                baseline: actual + f64::from(rng.u32(0..100_000)) / 1e6,
                currency: "USD".into(),
                baseline_model: Some("large".into()),
            });
        }
    }
    r
}

/// A record of about 2 KB of JSON (benchmarks): every field set, a ~900-byte request body.
pub fn realistic_record(seq: i64) -> ReplayRecord {
    let mut r = full_record(1_763_700_000_000 + seq);
    let content = "Write a Rust function that parses an RFC 3339 timestamp and returns the Unix \
                   time in milliseconds; handle offsets and leap seconds. ";
    r.request_body = Some(format!(
        r#"{{"model":"MoM","stream":true,"messages":[{{"role":"system","content":"You are a helpful assistant."}},{{"role":"user","content":"{}"}}]}}"#,
        content.repeat(6)
    ));
    r
}
