//! The validation checklist of the agentic-saars guide, end to end through the proxy with the
//! real offline embedding model: route families, Router Learning actions and scopes, tool-loop
//! hard lock. Needs a release build and the model; skips otherwise unless
//! `VLLM_SR_REQUIRE_MODELS=1`.

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
use serde_json::{json, Value};
use vllm_sr_gateway::{Gateway, Limits};
use vllm_sr_testkit::MockBackend;

struct Agentic {
    gw: Gateway,
    mock: MockBackend,
    _dir: tempfile::TempDir,
    client: reqwest::Client,
}

async fn start(scope: &str) -> Agentic {
    let mock = mocks(1).await.remove(0);
    let recipe = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../recipes/agentic-saars.yaml");
    let text = std::fs::read_to_string(recipe)
        .unwrap()
        .replace("${VLLM_ENDPOINT:-127.0.0.1:8090}", &mock.endpoint())
        .replace(
            "        scope: conversation\n",
            &format!("        scope: {scope}\n"),
        );
    let (gw, dir) = start_yaml_with(
        &text,
        Limits {
            signal_budget: Duration::from_secs(10),
            ..limits()
        },
    )
    .await;
    Agentic {
        gw,
        mock,
        _dir: dir,
        client: reqwest::Client::new(),
    }
}

#[derive(Debug)]
struct Seen {
    model: String,
    decision: String,
    action: String,
    scope: String,
    reason: String,
}

impl Agentic {
    async fn send(&self, session: &str, conversation: &str, messages: Value) -> Seen {
        let r = self
            .client
            .post(format!(
                "http://{}/v1/chat/completions",
                self.gw.listeners()[0].addr
            ))
            .header("x-session-id", session)
            .header("x-conversation-id", conversation)
            .json(&json!({"model": "auto", "messages": messages}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let h = |n: &str| {
            r.headers()
                .get(n)
                .map(|v| v.to_str().unwrap().to_string())
                .unwrap_or_default()
        };
        Seen {
            model: h("x-vsr-selected-model"),
            decision: h("x-vsr-selected-decision"),
            action: h("x-vsr-learning-actions"),
            scope: h("x-vsr-learning-scopes"),
            reason: h("x-vsr-learning-reasons"),
        }
    }
}

fn user(text: &str) -> Value {
    json!([{"role": "user", "content": text}])
}

const MATH: &str = "What is 17 * 23? Answer with only the number.";
const LEGAL: &str = "Review this indemnification clause in our vendor contract and assess liability exposure under GDPR.";

#[tokio::test(flavor = "multi_thread")]
async fn guide_checklist_route_families_and_learning() {
    if !model_available() {
        return;
    }
    let a = start("conversation").await;

    let s = a.send("demo-session", "demo-run-simple", user(MATH)).await;
    assert_eq!(s.decision, "simple_math_fast_path", "{s:?}");
    assert_eq!(s.model, "qwen/qwen3.6-rocm");
    assert_eq!(s.action, "session_aware=select");
    assert_eq!(s.scope, "session_aware=conversation");
    assert_eq!(
        a.mock.last().unwrap().header("x-selected-model"),
        Some("qwen/qwen3.6-rocm")
    );

    let s = a
        .send(
            "demo-session",
            "demo-run-private",
            user("My API key is sk_live_123456. Is it safe to paste this into a public issue?"),
        )
        .await;
    assert_eq!(s.decision, "local_privacy_policy", "{s:?}");
    assert_eq!(s.model, "qwen/qwen3.6-rocm");
    assert_eq!(s.action, "session_aware=bypass");

    // A domain prompt in a new conversation of the same session routes afresh.
    let s = a.send("demo-session", "demo-run-legal", user(LEGAL)).await;
    assert_eq!(s.decision, "domain_legal_health", "{s:?}");
    assert_eq!(s.model, "anthropic/claude-opus-4.6");
    assert_eq!(s.action, "session_aware=select");

    // Tool loop: the agent started on the local lane; its follow-up asks for architecture
    // work (base route: a cloud lane) while returning tool results, so the model is pinned.
    let s = a.send("demo-session", "demo-run-agent", user(MATH)).await;
    assert_eq!(s.model, "qwen/qwen3.6-rocm");
    let messages = json!([
        {"role": "user", "content": MATH},
        {"role": "assistant", "content": "391"},
        {"role": "user", "content": "Design a multi-region event-driven architecture with failover and explain the consistency trade-offs."},
        {"role": "assistant", "content": null, "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "read_docs", "arguments": "{}"}}]},
        {"role": "tool", "tool_call_id": "c1", "content": "Region A primary, region B standby."}
    ]);
    let s = a.send("demo-session", "demo-run-agent", messages).await;
    assert_eq!(s.action, "session_aware=hard_lock", "{s:?}");
    assert_eq!(s.reason, "session_aware=hard_lock=tool_loop");
    assert_eq!(s.model, "qwen/qwen3.6-rocm");
    assert_ne!(
        s.decision, "simple_math_fast_path",
        "the semantic route changed: {s:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn session_scope_keeps_the_first_model_for_a_new_conversation() {
    if !model_available() {
        return;
    }
    let a = start("session").await;
    let s = a.send("s-1", "run-1", user(MATH)).await;
    assert_eq!(
        (s.model.as_str(), s.action.as_str()),
        ("qwen/qwen3.6-rocm", "session_aware=select")
    );
    assert_eq!(s.scope, "session_aware=session");
    let s = a.send("s-1", "run-2", user(LEGAL)).await;
    assert_eq!(
        s.decision, "domain_legal_health",
        "the base route is the legal lane: {s:?}"
    );
    assert_eq!(
        s.model, "qwen/qwen3.6-rocm",
        "session protect holds the first model"
    );
    assert_eq!(s.action, "session_aware=stay");
}
