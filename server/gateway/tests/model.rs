//! The quickstart recipe (keywords plus an embedding signal) through the gateway with the real
//! offline embedding model. Needs a release build and the model from `scripts/fetch-models.sh`;
//! skips otherwise, unless `VLLM_SR_REQUIRE_MODELS=1` (CI) makes a missing model a failure.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stderr,
    reason = "tests"
)]

mod common;

use std::path::Path;
use std::time::Duration;

use common::*;
use serde_json::json;
use vllm_sr_gateway::Limits;

#[tokio::test(flavor = "multi_thread")]
async fn quickstart_routes_by_embedding_similarity_through_the_proxy() {
    if !model_available() {
        return;
    }
    let m = mocks(1).await;
    let quickstart = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../recipes/quickstart.yaml");
    let text = std::fs::read_to_string(quickstart).unwrap().replace(
        "${OPENAI_COMPAT_ENDPOINT:-127.0.0.1:8000}",
        &m[0].endpoint(),
    );
    let (gw, _dir) = start_yaml_with(
        &text,
        Limits {
            signal_budget: Duration::from_secs(5),
            ..limits()
        },
    )
    .await;
    let addr = gw.listeners()[0].addr;
    let client = reqwest::Client::new();
    let ask =
        |text: &str| json!({"model": "auto", "messages": [{"role": "user", "content": text}]});

    // No reasoning keyword: only the embedding signal can pick the reasoning lane.
    let r = post(
        &client,
        addr,
        &ask("My program crashes when the list is empty; find the bug and explain why it happens."),
    )
    .await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-vsr-selected-decision"], "reasoning");
    let sent = m[0].last().unwrap();
    assert_eq!(sent.body["model"], "Qwen/Qwen3-8B");
    assert_eq!(sent.body["chat_template_kwargs"]["enable_thinking"], true);

    let r = post(&client, addr, &ask("hi! what's a good name for a cat?")).await;
    assert_eq!(r.headers()["x-vsr-selected-decision"], "fast");
    assert_eq!(m[0].last().unwrap().body["model"], "Qwen/Qwen3-1.7B");
}
