//! The management API end to end: replay list/get with filters and cursors, insights equal to
//! the sum of records, classify and eval without forwarding, the effective config with secrets
//! redacted, the live event feed, and bearer auth off loopback.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests"
)]

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::*;
use futures_util::StreamExt;
use serde_json::{json, Value};
use vllm_sr_gateway::{Gateway, ManagementOptions, ServeOptions};
use vllm_sr_testkit::MockBackend;

struct M {
    gw: Gateway,
    _dir: tempfile::TempDir,
    mock: MockBackend,
    client: reqwest::Client,
}

const PRICED: &str = r#"
version: v0.3
providers:
  defaults: {default_model: small}
  models:
    - name: small
      provider_model_id: s
      pricing: {currency: USD, prompt_per_1m: 0.1, completion_per_1m: 0.4}
      backend_refs: [{endpoint: "ENDPOINT", api_key: sk-very-secret}]
    - name: big
      provider_model_id: b
      pricing: {currency: USD, prompt_per_1m: 3.0, completion_per_1m: 15.0}
      backend_refs: [{endpoint: "ENDPOINT"}]
routing:
  modelCards: [{name: small}, {name: big}]
  signals:
    keywords: [{name: hard, operator: OR, keywords: [prove]}]
  decisions:
    - name: reasoning
      priority: 200
      rules: {operator: OR, conditions: [{type: keyword, name: hard}]}
      modelRefs: [{model: big}]
    - name: everyday
      priority: 100
      rules: {operator: AND, conditions: []}
      modelRefs: [{model: small}]
"#;

async fn start(bind: &str, token: Option<&str>) -> Result<M, String> {
    start_with(bind, token, None).await
}

async fn start_with(bind: &str, token: Option<&str>, baseline: Option<&str>) -> Result<M, String> {
    let mock = mocks(1).await.remove(0);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("recipe.yaml");
    std::fs::write(&path, PRICED.replace("ENDPOINT", &mock.endpoint())).unwrap();
    let gw = Gateway::start(ServeOptions {
        listen: Some(vec!["127.0.0.1:0".parse().unwrap()]),
        state_dir: Some(dir.path().join("state")),
        management: Some(ManagementOptions {
            bind: Some(bind.parse().unwrap()),
            port: Some(0),
            token: token.map(str::to_string),
        }),
        baseline_model: baseline.map(str::to_string),
        ..ServeOptions::new(path, limits())
    })
    .await
    .map_err(|e| e.to_string())?;
    Ok(M {
        gw,
        _dir: dir,
        mock,
        client: reqwest::Client::new(),
    })
}

impl M {
    fn mgmt(&self, path: &str) -> String {
        let port = self.gw.management_addr().unwrap().port();
        format!("http://127.0.0.1:{port}{path}")
    }

    async fn get(&self, path: &str) -> Value {
        let r = self.client.get(self.mgmt(path)).send().await.unwrap();
        assert_eq!(r.status(), 200, "{path}");
        r.json().await.unwrap()
    }

    async fn route(&self, text: &str) -> String {
        let addr: SocketAddr = self.gw.listeners()[0].addr;
        let r = post(
            &self.client,
            addr,
            &json!({"model": "auto", "messages": [{"role": "user", "content": text}]}),
        )
        .await;
        assert_eq!(r.status(), 200);
        let id = r.headers()["x-vsr-replay-id"].to_str().unwrap().to_string();
        let _ = r.bytes().await;
        id
    }

    async fn wait_for(&self, n: usize) {
        for _ in 0..100 {
            let v = self.get("/api/v1/router_replay?limit=100").await;
            if v["count"].as_u64() == Some(n as u64) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("replay never reached {n} records");
    }
}

#[tokio::test]
async fn replay_list_get_filters_cursor_and_insights() {
    let m = start("127.0.0.1", None).await.unwrap();
    let mut ids = Vec::new();
    for i in 0..7 {
        let text = if i % 3 == 0 { "prove it" } else { "hello" };
        ids.push(m.route(text).await);
    }
    m.wait_for(7).await;

    let all = m.get("/api/v1/router_replay?limit=100").await;
    assert_eq!(all["object"], "router_replay.list");
    let listed: Vec<&str> = all["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap())
        .collect();
    let mut newest_first = ids.clone();
    newest_first.reverse();
    assert_eq!(listed, newest_first);

    let reasoning = m.get("/api/v1/router_replay?decision=reasoning").await;
    assert_eq!(reasoning["count"], 3);

    // Cursor pagination: pages of 3 cover everything once.
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let q = match &cursor {
            Some(c) => format!("/api/v1/router_replay?limit=3&cursor={c}"),
            None => "/api/v1/router_replay?limit=3".to_string(),
        };
        let page = m.get(&q).await;
        seen.extend(
            page["data"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| r["id"].as_str().unwrap().to_string()),
        );
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => break,
        }
    }
    assert_eq!(seen, newest_first);

    let one = m.get(&format!("/api/v1/router_replay/{}", ids[0])).await;
    assert_eq!(one["decision"], "reasoning");
    assert_eq!(one["final_model"], "big");
    let missing = m
        .client
        .get(m.mgmt("/api/v1/router_replay/0123456789abcdef0123456789abcdef"))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);

    // Insights totals are the sums over the records.
    let records: Vec<Value> = all["data"].as_array().unwrap().clone();
    let mut actual = 0.0;
    let mut tokens = 0;
    for r in &records {
        let full = m
            .get(&format!(
                "/api/v1/router_replay/{}",
                r["id"].as_str().unwrap()
            ))
            .await;
        actual += full["cost"]["actual"].as_f64().unwrap();
        tokens += full["usage"]["prompt_tokens"].as_u64().unwrap()
            + full["usage"]["completion_tokens"].as_u64().unwrap();
    }
    let ins = m.get("/api/v1/insights/summary").await;
    let text = ins.to_string();
    assert!(text.contains("\"requests\":7"), "{text}");
    let totals = &ins["totals"];
    assert!(
        (totals["actual_cost"].as_f64().unwrap() - actual).abs() < 1e-12,
        "{totals} vs {actual}"
    );
    assert!(totals["baseline_cost"].as_f64().unwrap() >= totals["actual_cost"].as_f64().unwrap());
    let summed =
        totals["prompt_tokens"].as_u64().unwrap() + totals["completion_tokens"].as_u64().unwrap();
    assert_eq!(summed, tokens);
}

#[tokio::test]
async fn classify_eval_config_and_events() {
    let m = start("127.0.0.1", None).await.unwrap();
    let c = m
        .client
        .post(m.mgmt("/api/v1/classify"))
        .json(&json!({"text": "prove it"}))
        .send()
        .await
        .unwrap();
    assert_eq!(c.status(), 200);
    let c: Value = c.json().await.unwrap();
    assert_eq!(c["decision"], "reasoning");
    assert_eq!(c["model"], "big");
    assert_eq!(m.mock.served(), 0, "classify does not forward");

    let e: Value = m
        .client
        .post(m.mgmt("/api/v1/eval?trace=true"))
        .json(&json!({"text": "hello"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(e["decision_result"]["decision_name"], "everyday");
    assert!(
        e["eval_trace"].as_array().is_some_and(|t| t.len() == 2),
        "{e}"
    );
    let bad = m
        .client
        .post(m.mgmt("/api/v1/eval"))
        .json(&json!({"text": ""}))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);

    let cfg = get_text(&m.client, &m.mgmt("/config")).await;
    assert!(
        cfg.contains("<redacted>") && !cfg.contains("sk-very-secret"),
        "{cfg}"
    );

    let events = m.client.get(m.mgmt("/api/v1/events")).send().await.unwrap();
    assert_eq!(events.headers()["content-type"], "text/event-stream");
    let mut stream = events.bytes_stream();
    let id = m.route("prove it").await;
    let mut got = String::new();
    while !got.contains(&id) {
        let chunk = tokio::time::timeout(Duration::from_secs(5), stream.next())
            .await
            .expect("an event")
            .unwrap()
            .unwrap();
        got.push_str(std::str::from_utf8(&chunk).unwrap());
    }
    assert!(
        got.contains("event: routed") && got.contains("\"decision\":\"reasoning\""),
        "{got}"
    );
}

#[tokio::test]
async fn off_loopback_needs_a_bearer_token() {
    let err = start("0.0.0.0", None)
        .await
        .err()
        .expect("refused without a token");
    assert!(err.contains("bearer token"), "{err}");

    let m = start("0.0.0.0", Some("s3cret")).await.unwrap();
    let health = m.client.get(m.mgmt("/health")).send().await.unwrap();
    assert_eq!(health.status(), 200, "health stays anonymous");
    let denied = m
        .client
        .get(m.mgmt("/api/v1/router_replay"))
        .send()
        .await
        .unwrap();
    assert_eq!(denied.status(), 401);
    let wrong = m
        .client
        .get(m.mgmt("/config"))
        .bearer_auth("nope")
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);
    let ok = m
        .client
        .get(m.mgmt("/api/v1/router_replay"))
        .bearer_auth("s3cret")
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
}

#[tokio::test]
async fn a_fixed_baseline_model_prices_every_request_against_it() {
    let err = start_with("127.0.0.1", None, Some("gpt-9"))
        .await
        .err()
        .unwrap();
    assert!(
        err.contains("--baseline-model gpt-9") && err.contains("priced models: small, big"),
        "{err}"
    );
    let m = start_with("127.0.0.1", None, Some("small")).await.unwrap();
    let dear = m.route("prove it").await;
    let cheap = m.route("hello").await;
    m.wait_for(2).await;
    let dear = m.get(&format!("/api/v1/router_replay/{dear}")).await;
    let cheap = m.get(&format!("/api/v1/router_replay/{cheap}")).await;
    assert_eq!(dear["final_model"], "big");
    for r in [&dear, &cheap] {
        assert_eq!(r["cost"]["baseline_model"], "small", "{r}");
    }
    let (actual, baseline) = (
        dear["cost"]["actual"].as_f64().unwrap(),
        dear["cost"]["baseline"].as_f64().unwrap(),
    );
    assert!(actual > baseline, "big costs more than the small baseline");
    assert_eq!(cheap["cost"]["actual"], cheap["cost"]["baseline"]);
    let totals = m.get("/api/v1/insights/summary").await["totals"].clone();
    let expected = baseline - actual;
    assert!(
        (totals["savings"].as_f64().unwrap() - expected).abs() < 1e-12,
        "negative savings are reported as such: {totals}"
    );
}
