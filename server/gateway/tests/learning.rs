//! Router Learning end to end (runtime spec §4): select, stay, switch, hard lock on tool loops,
//! bypass for policy decisions, conversation vs session scope, derived identity, and the exact
//! `x-vsr-learning-*` header surface.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests"
)]

mod common;

use common::*;
use serde_json::{json, Value};
use std::time::Duration;

use vllm_sr_gateway::{Gateway, ServeOptions};
use vllm_sr_store::ReplayRecord;
use vllm_sr_testkit::MockBackend;

fn recipe(endpoint: &str, scope: &str) -> String {
    format!(
        r#"
version: v0.3
providers:
  defaults:
    default_model: small
  models:
    - {{name: small, provider_model_id: s, backend_refs: [{{endpoint: "{endpoint}"}}]}}
    - {{name: big, provider_model_id: b, backend_refs: [{{endpoint: "{endpoint}"}}]}}
    - {{name: local, provider_model_id: l, backend_refs: [{{endpoint: "{endpoint}"}}]}}
routing:
  modelCards: [{{name: small}}, {{name: big}}, {{name: local}}]
  signals:
    keywords:
      - {{name: secret, operator: OR, keywords: [api key]}}
      - {{name: code, operator: OR, keywords: [code]}}
      - {{name: escalate, operator: OR, keywords: [escalate]}}
      - {{name: poem, operator: OR, keywords: [poem]}}
  decisions:
    - name: privacy
      priority: 300
      rules: {{operator: OR, conditions: [{{type: keyword, name: secret}}]}}
      modelRefs: [{{model: local}}]
      adaptations: {{mode: bypass}}
    - name: coding
      priority: 200
      rules: {{operator: OR, conditions: [{{type: keyword, name: code}}]}}
      modelRefs: [{{model: big}}]
    - name: escalation
      priority: 150
      rules: {{operator: OR, conditions: [{{type: keyword, name: escalate}}]}}
      modelRefs: [{{model: big}}]
      adaptations: {{protection: {{switch_margin: 0, stability_weight: 0}}}}
    - name: writing
      priority: 120
      rules: {{operator: OR, conditions: [{{type: keyword, name: poem}}]}}
      modelRefs: [{{model: small}}]
    - name: everyday
      priority: 100
      rules: {{operator: AND, conditions: []}}
      modelRefs: [{{model: small}}]
global:
  router:
    learning:
      enabled: true
      protection:
        enabled: true
        scope: {scope}
        identity: {{headers: {{session: x-session-id, conversation: x-conversation-id}}}}
        tuning: {{idle_timeout_seconds: 300, min_turns_before_switch: 1, switch_margin: 0.05, stability_weight: 1.0}}
"#
    )
}

struct L {
    gw: Gateway,
    _dir: tempfile::TempDir,
    _mock: MockBackend,
    client: reqwest::Client,
}

async fn start(scope: &str) -> L {
    let m = mocks(1).await.remove(0);
    let (gw, dir) = start_yaml(&recipe(&m.endpoint(), scope)).await;
    L {
        gw,
        _dir: dir,
        _mock: m,
        client: reqwest::Client::new(),
    }
}

/// (selected model, action, reason) plus every learning header.
async fn turn(
    l: &L,
    ids: Option<(&str, &str)>,
    messages: Value,
) -> (String, String, String, Vec<(String, String)>) {
    turn_on(&l.client, &l.gw, ids, messages).await
}

async fn turn_on(
    client: &reqwest::Client,
    gw: &Gateway,
    ids: Option<(&str, &str)>,
    messages: Value,
) -> (String, String, String, Vec<(String, String)>) {
    let mut req = client
        .post(format!(
            "http://{}/v1/chat/completions",
            gw.listeners()[0].addr
        ))
        .json(&json!({"model": "auto", "messages": messages}));
    if let Some((s, c)) = ids {
        req = req.header("x-session-id", s).header("x-conversation-id", c);
    }
    let r = req.send().await.unwrap();
    assert_eq!(r.status(), 200);
    let h = |n: &str| {
        r.headers()
            .get(n)
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_default()
    };
    let learning: Vec<(String, String)> = r
        .headers()
        .iter()
        .filter(|(k, _)| k.as_str().starts_with("x-vsr-learning-"))
        .map(|(k, v)| (k.to_string(), v.to_str().unwrap().to_string()))
        .collect();
    let action = h("x-vsr-learning-actions");
    let reason = h("x-vsr-learning-reasons");
    (h("x-vsr-selected-model"), action, reason, learning)
}

fn user(text: &str) -> Value {
    json!([{"role": "user", "content": text}])
}

#[tokio::test]
async fn conversation_scope_select_stay_switch_and_new_conversation() {
    let l = start("conversation").await;
    let (model, _, _, headers) = turn(&l, Some(("s1", "run-1")), user("write a poem")).await;
    assert_eq!(model, "small");
    assert_eq!(
        headers,
        vec![
            ("x-vsr-learning-methods".into(), "session_aware".into()),
            (
                "x-vsr-learning-actions".into(),
                "session_aware=select".into()
            ),
            (
                "x-vsr-learning-scopes".into(),
                "session_aware=conversation".into()
            ),
            (
                "x-vsr-learning-reasons".into(),
                "session_aware=select=new_conversation".into()
            ),
            ("x-vsr-learning-modes".into(), "session_aware=apply".into()),
        ]
    );
    // The route drifts to `big` with the same confidence: no gain pays the switch cost.
    let (model, action, reason, _) =
        turn(&l, Some(("s1", "run-1")), user("review this code")).await;
    assert_eq!(
        (model.as_str(), action.as_str()),
        ("small", "session_aware=stay")
    );
    assert_eq!(reason, "session_aware=stay=switch_margin_not_met");
    // A decision with zero margin and stability may switch.
    let (model, action, _, _) = turn(&l, Some(("s1", "run-1")), user("escalate please")).await;
    assert_eq!(
        (model.as_str(), action.as_str()),
        ("big", "session_aware=switch")
    );
    // A new conversation in the same session is routed afresh.
    let (model, action, _, _) = turn(&l, Some(("s1", "run-2")), user("review this code")).await;
    assert_eq!(
        (model.as_str(), action.as_str()),
        ("big", "session_aware=select")
    );
}

#[tokio::test]
async fn tool_loop_hard_locks_even_when_the_route_changes() {
    let l = start("conversation").await;
    let (model, ..) = turn(&l, Some(("s1", "agent")), user("what is 2+2")).await;
    assert_eq!(model, "small");
    let messages = json!([
        {"role": "user", "content": "what is 2+2"},
        {"role": "assistant", "content": "4"},
        {"role": "user", "content": "now fix the code in main.rs"},
        {"role": "assistant", "content": null, "tool_calls": [{"id": "t1", "type": "function", "function": {"name": "read_file", "arguments": "{\"path\":\"main.rs\"}"}}]},
        {"role": "tool", "tool_call_id": "t1", "content": "fn main() {}"}
    ]);
    let (model, action, reason, _) = turn(&l, Some(("s1", "agent")), messages).await;
    assert_eq!(
        model, "small",
        "the base route (coding → big) is overridden"
    );
    assert_eq!(action, "session_aware=hard_lock");
    assert_eq!(reason, "session_aware=hard_lock=tool_loop");

    // The replay record keeps both routes and the learning reason.
    let rec = records(&l.gw, 2).await.pop().expect("two records");
    assert_eq!(rec.decision.as_deref(), Some("coding"));
    assert_eq!(rec.base_model.as_deref(), Some("big"));
    assert_eq!(rec.final_model.as_deref(), Some("small"));
    let learning = rec.learning.expect("learning trace");
    assert_eq!(learning.action.as_deref(), Some("hard_lock"));
    assert_eq!(learning.reason.as_deref(), Some("tool_loop"));
}

#[tokio::test]
async fn privacy_decisions_bypass_learning() {
    let l = start("conversation").await;
    turn(&l, Some(("s1", "run")), user("what is 2+2")).await;
    let (model, action, reason, headers) = turn(
        &l,
        Some(("s1", "run")),
        user("My API key is sk_live_123456. Is it safe?"),
    )
    .await;
    assert_eq!(model, "local");
    assert_eq!(action, "session_aware=bypass");
    assert_eq!(reason, "session_aware=bypass=decision_bypass");
    assert!(headers.contains(&("x-vsr-learning-modes".into(), "session_aware=bypass".into())));
}

#[tokio::test]
async fn session_scope_holds_the_first_model_across_conversations() {
    let l = start("session").await;
    let (model, _, _, headers) = turn(&l, Some(("s9", "run-1")), user("what is 2+2")).await;
    assert_eq!(model, "small");
    assert!(headers.contains(&(
        "x-vsr-learning-scopes".into(),
        "session_aware=session".into()
    )));
    let (model, action, reason, _) =
        turn(&l, Some(("s9", "run-2")), user("review this code")).await;
    assert_eq!(
        model, "small",
        "a new conversation in the session stays on the first model"
    );
    assert_eq!(action, "session_aware=stay");
    assert_eq!(reason, "session_aware=stay=session_scope");
    let (model, action, _, _) = turn(&l, Some(("s10", "run-1")), user("review this code")).await;
    assert_eq!(
        (model.as_str(), action.as_str()),
        ("big", "session_aware=select"),
        "another session is free"
    );
}

#[tokio::test]
async fn without_identity_headers_a_key_is_derived_from_the_first_turns() {
    let l = start("conversation").await;
    let (_, _, reason, _) = turn(&l, None, user("write a poem")).await;
    assert_eq!(
        reason,
        "session_aware=select=new_conversation:derived_identity"
    );
    // Same first turn, later in the same conversation: recognised, so the route is protected.
    let messages = json!([
        {"role": "user", "content": "write a poem"},
        {"role": "assistant", "content": "Roses are red"},
        {"role": "user", "content": "review this code"}
    ]);
    let (model, action, reason, _) = turn(&l, None, messages).await;
    assert_eq!(
        (model.as_str(), action.as_str()),
        ("small", "session_aware=stay"),
        "{reason}"
    );
}

/// Every replay record of `gw`, oldest first, once `n` are committed.
async fn records(gw: &Gateway, n: usize) -> Vec<ReplayRecord> {
    let replay = gw.replay().expect("replay is on");
    for _ in 0..100 {
        let reader = replay.reader.clone();
        let page = tokio::task::spawn_blocking(move || {
            reader.list(&vllm_sr_store::ReplayFilter::default(), None, 100)
        })
        .await
        .unwrap()
        .unwrap();
        if page.records.len() >= n {
            return page.records.into_iter().rev().collect();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("fewer than {n} replay records");
}

fn tokens(r: &ReplayRecord) -> Value {
    r.learning
        .as_ref()
        .and_then(|l| l.detail.clone())
        .expect("learning detail")["tokens"]
        .clone()
}

#[tokio::test]
async fn a_restart_keeps_sessions_on_their_model_with_their_token_totals() {
    let mock = mocks(1).await.remove(0);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("recipe.yaml");
    std::fs::write(&path, recipe(&mock.endpoint(), "session")).unwrap();
    let opts = || ServeOptions {
        listen: Some(vec!["127.0.0.1:0".parse().unwrap()]),
        state_dir: Some(dir.path().join("state")),
        ..ServeOptions::new(path.clone(), limits())
    };
    let gw = Gateway::start(opts()).await.unwrap();
    // After the gateway installed the TLS crypto provider.
    let client = reqwest::Client::new();
    let (model, action, ..) = turn_on(
        &client,
        &gw,
        Some(("agent-7", "run-1")),
        user("review this code"),
    )
    .await;
    assert_eq!(
        (model.as_str(), action.as_str()),
        ("big", "session_aware=select")
    );
    turn_on(
        &client,
        &gw,
        Some(("agent-7", "run-1")),
        user("and this code too"),
    )
    .await;
    let before = records(&gw, 2).await;
    let prompt: u64 = before
        .iter()
        .map(|r| r.usage.as_ref().expect("usage").prompt_tokens)
        .sum();
    let completion: u64 = before
        .iter()
        .map(|r| r.usage.as_ref().unwrap().completion_tokens)
        .sum();
    assert_eq!(
        tokens(&before[1]),
        json!({"responses": 1, "prompt": before[0].usage.unwrap().prompt_tokens, "cached": 0,
               "completion": before[0].usage.unwrap().completion_tokens}),
        "the second turn sees the first turn's usage"
    );
    assert!(gw.shutdown(Duration::from_secs(5)).await);

    // A new process on the same state directory: the session is still on `big`.
    let gw = Gateway::start(opts()).await.unwrap();
    let (model, action, reason, _) = turn_on(
        &client,
        &gw,
        Some(("agent-7", "run-2")),
        user("write a poem"),
    )
    .await;
    assert_eq!(
        (model.as_str(), action.as_str(), reason.as_str()),
        (
            "big",
            "session_aware=stay",
            "session_aware=stay=session_scope"
        ),
        "without the snapshot this would be a new session on `small`"
    );
    let after = records(&gw, 3).await;
    let detail = after[2].learning.as_ref().unwrap().detail.clone().unwrap();
    assert_eq!(detail["turn"], 2);
    assert_eq!(
        tokens(&after[2]),
        json!({"responses": 2, "prompt": prompt, "cached": 0, "completion": completion})
    );
    // Another session starts fresh.
    let (model, action, ..) = turn_on(
        &client,
        &gw,
        Some(("agent-8", "run-1")),
        user("write a poem"),
    )
    .await;
    assert_eq!(
        (model.as_str(), action.as_str()),
        ("small", "session_aware=select")
    );
    assert!(gw.shutdown(Duration::from_secs(5)).await);
}
