//! Shared setup of the gateway's end-to-end tests: a recipe in a temp dir, mock backends and
//! a gateway on port 0.

#![allow(
    dead_code,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stderr,
    reason = "test helpers; not every test file uses every helper"
)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde_json::{json, Value};
use vllm_sr_gateway::{Gateway, Limits, ServeOptions};
use vllm_sr_testkit::{Behavior, MockBackend};

pub struct Setup {
    pub gw: Gateway,
    pub fast: MockBackend,
    pub think_a: MockBackend,
    pub think_b: MockBackend,
    pub _dir: tempfile::TempDir,
    pub path: PathBuf,
    pub client: reqwest::Client,
}

pub fn recipe(fast: &str, a: &str, b: &str, extra_keyword: &str) -> String {
    format!(
        r#"
version: v0.3
listeners:
  - {{name: http, address: 127.0.0.1, port: 0, timeout: 2s}}
providers:
  defaults:
    default_model: fast
    reasoning_families:
      qwen3: {{type: chat_template_kwargs, parameter: enable_thinking}}
  models:
    - name: fast
      provider_model_id: Qwen/Qwen3-1.7B
      backend_refs: [{{name: primary, endpoint: "{fast}"}}]
    - name: thinker
      provider_model_id: Qwen/Qwen3-8B
      reasoning_family: qwen3
      reliability:
        lb_policy: round_robin
        retry_count: 1
        retry_on: connect-failure,5xx
        consecutive_5xx: 2
        base_ejection_time: 60s
        max_ejection_percent: 50
      backend_refs:
        - {{name: a, endpoint: "{a}"}}
        - {{name: b, endpoint: "{b}"}}
routing:
  modelCards:
    - {{name: fast}}
    - {{name: thinker}}
  signals:
    keywords:
      - name: reasoning_kw
        operator: OR
        keywords: [prove, step by step{extra_keyword}]
      - name: canned_kw
        operator: OR
        keywords: [ping the router]
  decisions:
    - name: reasoning
      priority: 200
      rules: {{operator: OR, conditions: [{{type: keyword, name: reasoning_kw}}]}}
      modelRefs: [{{model: thinker, use_reasoning: true, reasoning_effort: high}}]
      plugins:
        - type: system_prompt
          configuration: {{system_prompt: "You are careful.", mode: insert}}
        - type: header_mutation
          configuration: {{add: [{{name: x-lane, value: reasoning}}]}}
    - name: canned
      priority: 150
      rules: {{operator: OR, conditions: [{{type: keyword, name: canned_kw}}]}}
      modelRefs: [{{model: fast}}]
      plugins:
        - type: fast_response
          configuration: {{message: "pong"}}
    - name: everyday
      priority: 100
      rules: {{operator: AND, conditions: []}}
      modelRefs: [{{model: fast}}]
"#
    )
}

pub async fn setup_with(limits: Limits) -> Setup {
    let named = |n: &str| Behavior {
        name: n.to_string(),
        ..Behavior::default()
    };
    let fast = MockBackend::start(named("fast")).await.unwrap();
    let think_a = MockBackend::start(named("think-a")).await.unwrap();
    let think_b = MockBackend::start(named("think-b")).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("recipe.yaml");
    std::fs::write(
        &path,
        recipe(
            &fast.endpoint(),
            &think_a.endpoint(),
            &think_b.endpoint(),
            "",
        ),
    )
    .unwrap();
    let gw = Gateway::start(ServeOptions {
        metrics_addr: Some("127.0.0.1:0".parse().unwrap()),
        watch_interval: Some(Duration::from_millis(100)),
        state_dir: Some(dir.path().join("state")),
        ..ServeOptions::new(path.clone(), limits)
    })
    .await
    .unwrap();
    Setup {
        gw,
        fast,
        think_a,
        think_b,
        _dir: dir,
        path,
        client: reqwest::Client::new(),
    }
}

pub fn limits() -> Limits {
    Limits {
        max_body_bytes: 64 * 1024,
        max_concurrency: Some(64),
        signal_budget: Duration::from_millis(500),
        default_timeout: Duration::from_secs(5),
        request_read_timeout: Duration::from_secs(10),
        idle_timeout: Some(Duration::from_secs(60)),
    }
}

pub async fn setup() -> Setup {
    setup_with(limits()).await
}

/// The body of a `GET` of `url`, as text.
pub async fn get_text(client: &reqwest::Client, url: &str) -> String {
    client.get(url).send().await.unwrap().text().await.unwrap()
}

impl Setup {
    /// The gateway's Prometheus text.
    pub async fn metrics(&self) -> String {
        let url = format!("http://{}/metrics", self.gw.metrics_addr().unwrap());
        get_text(&self.client, &url).await
    }

    pub fn addr(&self) -> SocketAddr {
        self.gw.listeners()[0].addr
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr())
    }

    pub async fn chat(&self, body: Value) -> reqwest::Response {
        self.client
            .post(self.url("/v1/chat/completions"))
            .json(&body)
            .send()
            .await
            .unwrap()
    }

    /// A streamed chat request for `auto` asking `text`.
    pub async fn chat_stream(&self, text: &str) -> reqwest::Response {
        let mut body = ask("auto", text);
        body["stream"] = json!(true);
        self.chat(body).await
    }

    pub async fn chat_with(&self, body: Value, headers: &[(&str, &str)]) -> reqwest::Response {
        let mut req = self
            .client
            .post(self.url("/v1/chat/completions"))
            .json(&body);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        req.send().await.unwrap()
    }
}

pub fn ask(model: &str, text: &str) -> Value {
    json!({"model": model, "messages": [{"role": "user", "content": text}], "temperature": 0.2, "x_vendor_field": {"keep": true}})
}

pub fn header<'a>(r: &'a reqwest::Response, name: &str) -> &'a str {
    r.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
}

/// Reads a streamed body to its end: the text received and whether the stream ended with an
/// error instead of cleanly. Panics if the stream stalls for `stall` (it must end, not hang).
pub async fn read_stream(r: reqwest::Response, stall: Duration) -> (String, bool) {
    use futures_util::StreamExt;
    let mut stream = r.bytes_stream();
    let mut text = String::new();
    while let Some(chunk) = tokio::time::timeout(stall, stream.next())
        .await
        .expect("the client stream ends instead of hanging")
    {
        match chunk {
            Ok(b) => text.push_str(std::str::from_utf8(&b).unwrap()),
            Err(_) => return (text, true),
        }
    }
    (text, false)
}

pub async fn error_of(r: reqwest::Response) -> (u16, Value) {
    let status = r.status().as_u16();
    let body: Value = r.json().await.unwrap();
    assert!(
        body["error"]["message"].is_string(),
        "OpenAI error shape: {body}"
    );
    assert!(body["error"]["type"].is_string(), "{body}");
    assert!(body["error"].get("param").is_some(), "{body}");
    (status, body)
}

/// A gateway on port 0 serving `yaml` (written to a temp dir).
pub async fn start_yaml(yaml: &str) -> (Gateway, tempfile::TempDir) {
    start_yaml_with(yaml, limits()).await
}

/// As [`start_yaml`] with other limits (model-backed tests give the embedding a long budget).
pub async fn start_yaml_with(yaml: &str, limits: Limits) -> (Gateway, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("recipe.yaml");
    std::fs::write(&path, yaml).unwrap();
    let gw = Gateway::start(ServeOptions {
        listen: Some(vec!["127.0.0.1:0".parse().unwrap()]),
        state_dir: Some(dir.path().join("state")),
        ..ServeOptions::new(path, limits)
    })
    .await
    .unwrap();
    (gw, dir)
}

/// Mocks named `a`, `b`, ….
pub async fn mocks(n: usize) -> Vec<MockBackend> {
    let mut out = Vec::new();
    for i in 0..n {
        let name = ((b'a' + i as u8) as char).to_string();
        out.push(
            MockBackend::start(Behavior {
                name,
                ..Behavior::default()
            })
            .await
            .unwrap(),
        );
    }
    out
}

/// A one-model recipe: every request goes to `m`, whose backends and reliability are given.
pub fn one_model(reliability: &str, backends: &str, family: &str) -> String {
    format!(
        r#"
version: v0.3
providers:
  defaults:
    default_model: m
    reasoning_families:
      effort: {{type: reasoning_effort, parameter: reasoning_effort}}
  models:
    - name: m
      provider_model_id: org/model-m
{family}
      reliability: {reliability}
      backend_refs: {backends}
routing:
  modelCards: [{{name: m}}]
  decisions:
    - name: all
      rules: {{operator: AND, conditions: []}}
      modelRefs: [{{model: m, use_reasoning: true, reasoning_effort: high}}]
"#
    )
}

/// POSTs a chat request to a gateway listener.
pub async fn post(client: &reqwest::Client, addr: SocketAddr, body: &Value) -> reqwest::Response {
    client
        .post(format!("http://{addr}/v1/chat/completions"))
        .json(body)
        .send()
        .await
        .unwrap()
}

/// Waits until `f` holds (up to 5 s).
pub async fn eventually(mut f: impl FnMut() -> bool) -> bool {
    for _ in 0..100 {
        if f() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

/// A one-message chat body.
pub fn hello() -> Value {
    json!({"model": "auto", "messages": [{"role": "user", "content": "hello"}]})
}

/// Model-backed tests need a release build and the offline model; they skip otherwise, unless
/// `VLLM_SR_REQUIRE_MODELS=1` (CI) makes a missing model a failure.
pub fn model_available() -> bool {
    if cfg!(debug_assertions) {
        eprintln!("skipping: model-backed routing needs a release build");
        return false;
    }
    match vllm_sr_models::ModelRegistry::from_env().resolve(vllm_sr_models::DEFAULT_EMBEDDING_MODEL)
    {
        Ok(_) => true,
        Err(e) if std::env::var("VLLM_SR_REQUIRE_MODELS").is_ok_and(|v| v == "1") => panic!("{e}"),
        Err(e) => {
            eprintln!("skipping: {e}");
            false
        }
    }
}
