//! Router Replay from the proxy: every routed response carries `x-vsr-replay-id`, and the id
//! resolves to a record with the decision, base and final model, learning, usage and cost.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests"
)]

mod common;

use std::time::Duration;

use common::*;
use futures_util::StreamExt;
use vllm_sr_store::{Lifecycle, ReplayRecord};

async fn record(s: &Setup, id: &str) -> ReplayRecord {
    record_of(&s.gw, id).await
}

async fn record_of(gw: &vllm_sr_gateway::Gateway, id: &str) -> ReplayRecord {
    let replay = gw.replay().expect("replay is on");
    for _ in 0..100 {
        let reader = replay.reader.clone();
        let key = id.to_string();
        if let Some(r) = tokio::task::spawn_blocking(move || reader.get(&key))
            .await
            .unwrap()
            .unwrap()
        {
            return r;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("replay record {id} never appeared");
}

#[tokio::test]
async fn replay_id_resolves_to_the_routed_record() {
    let s = setup().await;
    let r = s
        .chat(ask(
            "auto",
            "prove that the sum of two even numbers is even",
        ))
        .await;
    assert_eq!(r.status(), 200);
    let id = header(&r, "x-vsr-replay-id").to_string();
    assert_eq!(id.len(), 32, "32 lowercase hex: {id}");
    let _ = r.bytes().await.unwrap();
    let rec = record(&s, &id).await;
    assert_eq!(rec.decision.as_deref(), Some("reasoning"));
    assert_eq!(rec.final_model.as_deref(), Some("thinker"));
    assert_eq!(rec.base_model.as_deref(), Some("thinker"));
    assert_eq!(rec.lifecycle, Lifecycle::Completed);
    assert_eq!(rec.status, Some(200));
    assert!(rec.backend.as_deref().unwrap().starts_with("thinker_"));
    assert!(rec.signals["keywords"].contains(&"reasoning_kw".to_string()));
    assert_eq!(rec.use_reasoning, Some(true));
    assert!(rec.plugins.contains(&"system_prompt".to_string()));
    let usage = rec.usage.expect("usage from the JSON body");
    assert!(usage.prompt_tokens > 0 && usage.completion_tokens == 4);
    assert!(rec.timings.total_ms >= rec.timings.upstream_ttfb_ms.unwrap());
    // The eval trace, packed on the request path, reads back as the engine's trace.
    let trace = rec.eval_trace.as_ref().expect("an eval trace").to_value();
    let matched: Vec<&str> = trace
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["matched"] == true)
        .map(|t| t["decision_name"].as_str().unwrap())
        .collect();
    assert!(matched.contains(&"reasoning"), "{trace}");
    assert!(trace[0]["root_trace"]["node_type"].is_string(), "{trace}");
}

#[tokio::test]
async fn streams_get_usage_from_an_injected_chunk_the_client_never_sees() {
    let s = setup().await;
    let r = s.chat_stream("hello").await;
    let id = header(&r, "x-vsr-replay-id").to_string();
    let mut text = String::new();
    let mut stream = r.bytes_stream();
    while let Some(c) = stream.next().await {
        text.push_str(std::str::from_utf8(&c.unwrap()).unwrap());
    }
    assert!(text.ends_with("data: [DONE]\n\n"));
    assert!(
        !text.contains("\"usage\""),
        "the client did not ask for usage: {text}"
    );
    let sent = s.fast.last().unwrap();
    assert_eq!(
        sent.body["stream_options"]["include_usage"], true,
        "the backend was asked"
    );
    let rec = record(&s, &id).await;
    assert!(rec.streaming);
    assert_eq!(rec.usage.unwrap().completion_tokens, 4);
    assert_eq!(rec.lifecycle, Lifecycle::Completed);
}

#[tokio::test]
async fn failed_and_aborted_requests_are_recorded_too() {
    let s = setup().await;
    s.fast.set(|b| {
        b.fail_status = 500;
        b.fail_count = 10;
    });
    let r = s.chat(ask("auto", "hello")).await;
    assert_eq!(r.status(), 502);
    let id = header(&r, "x-vsr-replay-id").to_string();
    let rec = record(&s, &id).await;
    assert_eq!(rec.lifecycle, Lifecycle::Failed);
    assert_eq!(rec.status, Some(502));
    assert!(rec.terminal_reason.unwrap().contains("fast_primary"));
    assert_eq!(rec.backend.as_deref(), Some("fast_primary"));
    assert_eq!(rec.final_model.as_deref(), Some("fast"));

    s.fast.set(|b| {
        b.fail_count = 0;
        b.chunks = 50;
        b.chunk_delay = Duration::from_millis(40);
    });
    let r = s.chat_stream("hello").await;
    let id = header(&r, "x-vsr-replay-id").to_string();
    let mut stream = r.bytes_stream();
    let _ = stream.next().await;
    drop(stream);
    let rec = record(&s, &id).await;
    assert_eq!(rec.lifecycle, Lifecycle::Aborted);
    assert_eq!(rec.terminal_reason.as_deref(), Some("client_disconnect"));
}

#[tokio::test]
async fn a_request_that_fails_before_any_attempt_is_recorded() {
    // The model has no backend: the request fails before anything is sent.
    let yaml = r#"
version: v0.3
providers:
  defaults: {default_model: m}
  models:
    - name: m
      provider_model_id: org/m
routing:
  modelCards: [{name: m}]
  decisions:
    - name: all
      rules: {operator: AND, conditions: []}
      modelRefs: [{model: m}]
"#;
    let (gw, _dir) = start_yaml(yaml).await;
    let r = post(&reqwest::Client::new(), gw.listeners()[0].addr, &hello()).await;
    assert_eq!(r.status(), 503);
    let id = header(&r, "x-vsr-replay-id").to_string();
    let rec = record_of(&gw, &id).await;
    assert_eq!(rec.lifecycle, Lifecycle::Failed);
    assert_eq!(rec.status, Some(503));
    assert_eq!(rec.backend, None);
    assert_eq!(rec.decision.as_deref(), Some("all"));
}

#[tokio::test]
async fn a_stream_outlasting_the_listener_timeout_is_cut_and_recorded_as_failed() {
    let s = setup().await;
    // The listener timeout is 2 s; this stream would take 4 s.
    s.fast.set(|b| {
        b.chunks = 10;
        b.chunk_delay = Duration::from_millis(400);
    });
    let r = s.chat_stream("hello").await;
    assert_eq!(r.status(), 200, "the head arrived in time");
    let id = header(&r, "x-vsr-replay-id").to_string();
    let (text, errored) = read_stream(r, Duration::from_secs(10)).await;
    assert!(text.contains("fast-0"), "chunks before the deadline arrive");
    assert!(!text.contains("[DONE]"), "the stream was cut: {text}");
    assert!(errored, "the client sees the stream fail, not a clean end");
    let rec = record(&s, &id).await;
    assert_eq!(rec.lifecycle, Lifecycle::Failed);
    assert_eq!(rec.terminal_reason.as_deref(), Some("upstream_timeout"));
}
