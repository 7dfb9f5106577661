//! Every shipped and upstream recipe validates with zero errors, and its effective config
//! loads back to an equal `RouterConfig` (the round trip `vllm-sr config show` promises).

#![allow(
    clippy::expect_used,
    reason = "test helpers fail loudly on broken fixtures"
)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use vllm_sr_config::{effective_yaml, load_bytes, load_path, LoadOptions, Secrets};

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Upstream recipes (from the shared directory beside the checkout) and ours.
fn recipe_files() -> Vec<PathBuf> {
    let mut files = Vec::new();
    let upstream = workspace().join("../shared/upstream/recipes");
    for name in ["balance", "privacy", "agent"] {
        files.push(upstream.join(name).join("config.yaml"));
    }
    let ours = workspace().join("recipes");
    let mut entries: Vec<PathBuf> = std::fs::read_dir(&ours)
        .expect("recipes/ exists")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .filter(|p| !p.to_string_lossy().ends_with(".probes.yaml"))
        .collect();
    entries.sort();
    assert!(
        entries.len() >= 2,
        "recipes/ should ship at least two recipes, found {entries:?}"
    );
    files.extend(entries);
    files
}

fn env() -> HashMap<String, String> {
    // Upstream's agent recipe references a password variable; set it so the test also covers
    // substitution, and so no "unset variable" warning is expected.
    HashMap::from([("POSTGRES_PASSWORD".to_string(), "s3cret".to_string())])
}

#[test]
fn every_recipe_validates_without_errors() {
    let env = env();
    for file in recipe_files() {
        assert!(
            file.exists(),
            "{} is missing (the shared directory sits beside the checkout)",
            file.display()
        );
        let opts = LoadOptions {
            strict: false,
            env: &env,
            base_dir: None,
        };
        match load_path(&file, &opts) {
            Ok(loaded) => {
                let recipe = loaded.config.default_recipe();
                assert!(
                    !recipe.decisions.is_empty(),
                    "{}: no decisions",
                    file.display()
                );
                for w in loaded.diagnostics.warnings() {
                    eprintln!("{}: warning: {w}", file.display());
                }
            }
            Err(e) => {
                let msgs: Vec<String> = e
                    .diagnostics()
                    .all()
                    .iter()
                    .map(ToString::to_string)
                    .collect();
                panic!("{} does not validate:\n{}", file.display(), msgs.join("\n"));
            }
        }
    }
}

#[test]
fn effective_config_round_trips() {
    let env = env();
    for file in recipe_files() {
        let base = file.parent().map(Path::to_path_buf);
        let opts = LoadOptions {
            strict: false,
            env: &env,
            base_dir: base.clone(),
        };
        let first = load_path(&file, &opts).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        let yaml = effective_yaml(&first.document, Secrets::Reveal).expect("serialise");
        // The effective config needs no environment: every variable was already substituted.
        let empty = HashMap::new();
        let opts2 = LoadOptions {
            strict: true,
            env: &empty,
            base_dir: base,
        };
        let second = load_bytes(yaml.as_bytes(), &opts2).unwrap_or_else(|e| {
            let msgs: Vec<String> = e
                .diagnostics()
                .all()
                .iter()
                .map(ToString::to_string)
                .collect();
            panic!(
                "{}: effective config does not load:\n{}\n---\n{yaml}",
                file.display(),
                msgs.join("\n")
            )
        });
        assert_eq!(
            first.config,
            second.config,
            "{}: RouterConfig changed after a round trip",
            file.display()
        );
        assert_eq!(
            first.document,
            second.document,
            "{}: document changed after a round trip",
            file.display()
        );
        // A second round trip is byte-identical.
        let again = effective_yaml(&second.document, Secrets::Reveal).expect("serialise");
        assert_eq!(yaml, again);
    }
}

#[test]
fn effective_config_redacts_secrets_and_escapes_dollars() {
    let yaml = r#"
version: v0.3
providers:
  defaults: {default_model: m}
  models:
    - name: m
      provider_model_id: gpt
      backend_refs:
        - endpoint: api.example.com
          protocol: https
          api_key: ${KEY}
routing:
  modelCards: [{name: m}]
  signals:
    keywords:
      - {name: dollars, operator: OR, method: regex, keywords: ['\d+$', '$$HOME']}
  decisions:
    - name: d
      rules: {operator: AND, conditions: [{type: keyword, name: dollars}]}
      modelRefs: [{model: m}]
"#;
    let env = HashMap::from([("KEY".to_string(), "sk-live-123".to_string())]);
    let loaded = load_bytes(
        yaml.as_bytes(),
        &LoadOptions {
            strict: false,
            env: &env,
            base_dir: None,
        },
    )
    .expect("valid");
    let redacted = effective_yaml(&loaded.document, Secrets::Redact).expect("serialise");
    assert!(!redacted.contains("sk-live-123"), "{redacted}");
    assert!(redacted.contains("<redacted>"));
    let revealed = effective_yaml(&loaded.document, Secrets::Reveal).expect("serialise");
    assert!(revealed.contains("sk-live-123"));
    // `\d+$` stays readable; the literal `$HOME` (written `$$HOME`) is escaped again.
    assert!(revealed.contains(r"\d+$"), "{revealed}");
    assert!(revealed.contains("$$HOME"), "{revealed}");
    let kw = &loaded.config.default_recipe().signals.keywords[0];
    assert_eq!(kw.keywords, vec![r"\d+$".to_string(), "$HOME".to_string()]);
}
