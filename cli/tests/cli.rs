//! End-to-end tests of the `vllm-sr` binary: exit codes, human and JSON output.

#![allow(
    clippy::expect_used,
    reason = "test helpers fail loudly on broken fixtures"
)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_vllm-sr"))
}

fn run(args: &[&str]) -> Output {
    bin()
        .args(args)
        .env_remove("VLLM_SR_CONFIG")
        .output()
        .expect("run vllm-sr")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn upstream(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared/upstream/recipes")
        .join(name)
        .join("config.yaml")
}

fn write(dir: &Path, name: &str, body: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, body).expect("write");
    p
}

const BROKEN: &str = "version: v0.3
routing:
  modelCards:
    - name: local
  signals:
    keywords:
      - name: urgent
        operator: OR
        keywords: [asap]
  decisions:
    - name: legal
      rules:
        operator: AND
        conditions:
          - type: keyword
            name: legal_markers
      modelRefs:
        - model: missing-model
";

#[test]
fn help_lists_commands() {
    let out = run(&["--help"]);
    assert!(out.status.success());
    let s = text(&out.stdout);
    for cmd in ["validate", "config"] {
        assert!(s.contains(cmd), "--help should mention {cmd}:\n{s}");
    }
    let out = run(&["validate", "--help"]);
    assert!(text(&out.stdout).contains("--strict"));
}

#[test]
fn validate_accepts_an_upstream_recipe() {
    let out = run(&[
        "validate",
        "--config",
        upstream("privacy").to_str().expect("utf8"),
    ]);
    assert!(out.status.success(), "stderr: {}", text(&out.stderr));
    let s = text(&out.stdout);
    assert!(s.contains("valid"), "{s}");
    assert!(
        s.contains("local_security_containment"),
        "summary lists decisions: {s}"
    );
    assert!(s.contains("keywords 9"), "summary counts signals: {s}");
}

#[test]
fn validate_reports_every_error_with_position_and_exits_1() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = write(dir.path(), "broken.yaml", BROKEN);
    let out = run(&["validate", "-c", file.to_str().expect("utf8")]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    let f = file.display();
    assert!(
        err.contains(&format!("{f}:15:13: error: routing.decisions[0].rules.conditions[0]: unknown keyword signal \"legal_markers\"")),
        "{err}"
    );
    assert!(err.contains(&format!("{f}:18:11: error: routing.decisions[0].modelRefs[0].model: unknown model \"missing-model\"")), "{err}");
    assert!(err.contains("2 error(s)"), "{err}");
}

#[test]
fn validate_json_has_the_documented_shape() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = write(dir.path(), "broken.yaml", BROKEN);
    let out = run(&["validate", "-c", file.to_str().expect("utf8"), "--json"]);
    assert_eq!(out.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json on stdout");
    assert_eq!(v["valid"], false);
    let errors = v["errors"].as_array().expect("errors array");
    assert_eq!(errors.len(), 2);
    assert_eq!(
        errors[0]["path"],
        "routing.decisions[0].rules.conditions[0]"
    );
    assert_eq!(errors[0]["line"], 15);
    assert_eq!(errors[0]["column"], 13);
    assert!(errors[0]["message"]
        .as_str()
        .expect("message")
        .contains("legal_markers"));
    assert!(v["warnings"].is_array());
    assert!(v["summary"].is_null());

    let out = run(&[
        "validate",
        "-c",
        upstream("balance").to_str().expect("utf8"),
        "--json",
    ]);
    assert!(out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(v["valid"], true);
    assert_eq!(
        v["summary"]["recipes"][0]["decisions"]
            .as_array()
            .map(Vec::len),
        Some(14)
    );
    assert_eq!(v["summary"]["recipes"][0]["signals"]["domains"], 14);
}

#[test]
fn strict_turns_warnings_into_errors() {
    let dir = tempfile::tempdir().expect("tempdir");
    let body = "version: v0.3\nlisteners:\n  - {name: l, port: 8899, timout: 30s}\nrouting:\n  modelCards: [{name: m}]\n  decisions:\n    - {name: d, modelRefs: [{model: m}]}\n";
    let file = write(dir.path(), "warn.yaml", body);
    let path = file.to_str().expect("utf8");
    let out = run(&["validate", "-c", path]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("did you mean \"timeout\""),
        "{}",
        text(&out.stderr)
    );
    let out = run(&["validate", "-c", path, "--strict"]);
    assert_eq!(out.status.code(), Some(1));
}

#[test]
fn bad_inputs_fail_cleanly() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path().to_str().expect("utf8");
    let out = run(&["validate", "-c", d]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("not a regular file"),
        "{}",
        text(&out.stderr)
    );

    let missing = dir.path().join("nope.yaml");
    let out = run(&["validate", "-c", missing.to_str().expect("utf8")]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("cannot read"),
        "{}",
        text(&out.stderr)
    );

    let bad = write(dir.path(), "bad.yaml", "routing: [unclosed\n");
    let out = run(&["validate", "-c", bad.to_str().expect("utf8")]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("invalid YAML"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn config_show_prints_the_effective_config_with_secrets_redacted() {
    let dir = tempfile::tempdir().expect("tempdir");
    let body = "version: v0.3\nproviders:\n  defaults: {default_model: m}\n  models:\n    - name: m\n      provider_model_id: gpt\n      backend_refs: [{endpoint: 'api.example.com', protocol: https, api_key: sk-live-abc}]\nrouting:\n  modelCards: [{name: m}]\n  decisions:\n    - {name: d, modelRefs: [{model: m}]}\n";
    let file = write(dir.path(), "secret.yaml", body);
    let out = run(&["config", "show", "-c", file.to_str().expect("utf8")]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let s = text(&out.stdout);
    assert!(!s.contains("sk-live-abc"), "{s}");
    assert!(s.contains("<redacted>"));
    // Defaults were applied.
    assert!(s.contains("management_api:"), "{s}");
    let out = run(&[
        "config",
        "show",
        "-c",
        file.to_str().expect("utf8"),
        "--show-secrets",
    ]);
    assert!(text(&out.stdout).contains("sk-live-abc"));
}
