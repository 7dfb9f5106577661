//! End-to-end tests of `vllm-sr serve` as a process: startup output, routing through the real
//! listener, SIGHUP reload, SIGTERM drain, and the official `openai` Python SDK as a client.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stderr,
    reason = "tests"
)]

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use vllm_sr_testkit::{Behavior, MockBackend};

fn recipe(endpoint: &str, keyword: &str) -> String {
    format!(
        r#"version: v0.3
listeners:
  - {{name: http-test, address: 127.0.0.1, port: 0, timeout: 30s}}
providers:
  defaults:
    default_model: small
    reasoning_families:
      qwen3: {{type: chat_template_kwargs, parameter: enable_thinking}}
  models:
    - name: small
      provider_model_id: Qwen/Qwen3-1.7B
      backend_refs: [{{endpoint: "{endpoint}"}}]
    - name: big
      provider_model_id: Qwen/Qwen3-8B
      reasoning_family: qwen3
      backend_refs: [{{endpoint: "{endpoint}"}}]
routing:
  modelCards: [{{name: small}}, {{name: big}}]
  signals:
    keywords:
      - {{name: hard, operator: OR, keywords: ["{keyword}"]}}
  decisions:
    - name: reasoning
      priority: 200
      rules: {{operator: OR, conditions: [{{type: keyword, name: hard}}]}}
      modelRefs: [{{model: big, use_reasoning: true}}]
    - name: everyday
      priority: 100
      rules: {{operator: AND, conditions: []}}
      modelRefs: [{{model: small}}]
"#
    )
}

struct Served {
    child: Child,
    addr: SocketAddr,
    lines: mpsc::Receiver<String>,
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn serve(config: &Path, extra: &[&str]) -> Served {
    let mut child = Command::new(env!("CARGO_BIN_EXE_vllm-sr"))
        .args(["serve", "--config"])
        .arg(config)
        .args([
            "--metrics-port",
            "0",
            "--metrics-bind",
            "127.0.0.1",
            "--management-port",
            "0",
            "--log-level",
            "info",
        ])
        .args(extra)
        .env_remove("VLLM_SR_CONFIG")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start vllm-sr serve");
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let mut addr = None;
    let mut seen = Vec::new();
    while addr.is_none() {
        let line = rx
            .recv_timeout(Duration::from_secs(60))
            .expect("startup output");
        if let Some(rest) = line.trim().strip_prefix("listener http-test: http://") {
            addr = rest
                .strip_suffix("/v1/chat/completions")
                .map(|a| a.parse().unwrap());
        }
        seen.push(line);
    }
    assert!(seen[0].starts_with("vllm-sr serving"), "{seen:?}");
    Served {
        child,
        addr: addr.unwrap(),
        lines: rx,
    }
}

fn signal(child: &Child, sig: &str) {
    let ok = Command::new("kill")
        .args([sig, &child.id().to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill {sig}");
}

fn chat(addr: SocketAddr, text: &str) -> (u16, String) {
    let out = Command::new("curl")
        .args(["-s", "-o", "/dev/null", "-w", "%{http_code}", "-D", "-"])
        .args(["-H", "content-type: application/json"])
        .arg("--data")
        .arg(format!(
            r#"{{"model":"auto","messages":[{{"role":"user","content":"{text}"}}]}}"#
        ))
        .arg(format!("http://{addr}/v1/chat/completions"))
        .output()
        .expect("curl");
    let s = String::from_utf8_lossy(&out.stdout).into_owned();
    let status = s.lines().last().unwrap_or("0").trim().parse().unwrap_or(0);
    (status, s)
}

fn decision(headers: &str) -> String {
    headers
        .lines()
        .find_map(|l| l.strip_prefix("x-vsr-selected-decision: "))
        .unwrap_or("")
        .trim()
        .to_string()
}

fn write_recipe(dir: &Path, endpoint: &str, keyword: &str) -> PathBuf {
    let p = dir.join("recipe.yaml");
    std::fs::write(&p, recipe(endpoint, keyword)).unwrap();
    p
}

#[tokio::test(flavor = "multi_thread")]
async fn serve_routes_reloads_on_sighup_and_drains_on_sigterm() {
    let mock = MockBackend::start(Behavior::default()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = write_recipe(dir.path(), &mock.endpoint(), "prove");
    let mut s = serve(&path, &["--watch-interval-ms", "0"]);
    let addr = s.addr;

    let (status, headers) = tokio::task::spawn_blocking(move || chat(addr, "prove it"))
        .await
        .unwrap();
    assert_eq!(status, 200, "{headers}");
    assert_eq!(decision(&headers), "reasoning");
    assert!(headers.contains("x-vsr-selected-model: big"), "{headers}");
    assert_eq!(mock.last().unwrap().body["model"], "Qwen/Qwen3-8B");
    assert!(
        dir.path().join(".vllm-sr").is_dir(),
        "state dir beside the config"
    );

    // SIGHUP reloads: the keyword changes.
    write_recipe(dir.path(), &mock.endpoint(), "whiteboard");
    signal(&s.child, "-HUP");
    let mut switched = false;
    for _ in 0..50 {
        let (_, h) = tokio::task::spawn_blocking(move || chat(addr, "a whiteboard"))
            .await
            .unwrap();
        if decision(&h) == "reasoning" {
            switched = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(switched, "SIGHUP applied the new recipe");

    // SIGTERM drains: a slow in-flight request still completes, then the process exits 0.
    mock.set(|b| b.latency = Duration::from_millis(800));
    let slow = tokio::task::spawn_blocking(move || chat(addr, "hello"));
    tokio::time::sleep(Duration::from_millis(300)).await;
    signal(&s.child, "-TERM");
    let (status, _) = slow.await.unwrap();
    assert_eq!(
        status, 200,
        "the in-flight request finished during the drain"
    );
    let exit = s.child.wait().unwrap();
    assert!(exit.success(), "clean exit after draining: {exit:?}");
    let rest: Vec<String> = s.lines.try_iter().collect();
    assert!(
        rest.is_empty() || !rest.iter().any(|l| l.contains("panicked")),
        "{rest:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn serve_rejects_an_invalid_recipe_with_every_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.yaml");
    std::fs::write(
        &path,
        "version: v0.3\nrouting:\n  decisions:\n    - name: x\n      modelRefs: [{model: nope}]\n",
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_vllm-sr"))
        .args(["serve", "--config"])
        .arg(&path)
        .args(["--no-metrics", "--listen", "127.0.0.1:0"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("not a valid recipe") && err.contains("nope"),
        "{err}"
    );
}

/// The official `openai` Python SDK against `vllm-sr serve`: a completion, a stream, an error.
/// `scripts/test.sh` installs the SDK into a venv and sets `VLLM_SR_TEST_PYTHON`.
#[tokio::test(flavor = "multi_thread")]
async fn official_openai_sdk_reads_completions_streams_and_vsr_headers() {
    let python = match std::env::var("VLLM_SR_TEST_PYTHON") {
        Ok(p) => p,
        Err(_) if std::env::var("VLLM_SR_REQUIRE_TOOLS").is_ok_and(|v| v == "1") => {
            panic!("VLLM_SR_TEST_PYTHON is not set (scripts/test.sh sets it)")
        }
        Err(_) => {
            eprintln!("skipping: set VLLM_SR_TEST_PYTHON to a python with the openai package");
            return;
        }
    };
    let mock = MockBackend::start(Behavior::default()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = write_recipe(dir.path(), &mock.endpoint(), "prove");
    let s = serve(&path, &[]);
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/openai_sdk_client.py");
    let base = format!("http://{}/v1", s.addr);
    let out =
        tokio::task::spawn_blocking(move || Command::new(python).arg(script).arg(base).output())
            .await
            .unwrap()
            .expect("run python");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON line");
    assert_eq!(v["headers"]["x-vsr-selected-decision"], "reasoning", "{v}");
    assert_eq!(v["headers"]["x-vsr-selected-model"], "big");
    assert_eq!(v["headers"]["x-vsr-selected-reasoning"], "on");
    assert!(v["headers"]["x-request-id"].is_string());
    assert!(v["content"].as_str().unwrap().starts_with("mock-0"));
    assert!(v["usage_total"].as_u64().unwrap() > 0);
    assert_eq!(
        v["stream"]["headers"]["x-vsr-selected-decision"],
        "everyday"
    );
    assert_eq!(v["stream"]["content"], "mock-0 mock-1 mock-2 mock-3 ");
    assert!(v["stream"]["usage_total"].as_u64().unwrap() > 0);
    assert_eq!(v["error"]["status"], 404);
    assert_eq!(v["error"]["code"], "model_not_found");
}
