//! Helpers shared by the crate's unit tests.

#![allow(clippy::panic, reason = "tests fail loudly on a broken fixture")]

use std::collections::HashMap;

use vllm_sr_config::model::RouterConfig;

/// A minimal recipe: one model `m` with one backend, and one decision named `decision` that
/// always matches.
pub(crate) fn one_decision_config(decision: &str) -> RouterConfig {
    let yaml = format!(
        r#"
version: v0.3
listeners: [{{name: l, address: 127.0.0.1, port: 8899}}]
providers:
  defaults: {{default_model: m}}
  models:
    - name: m
      backend_refs: [{{name: b, endpoint: "127.0.0.1:1", protocol: http}}]
routing:
  modelCards: [{{name: m}}]
  decisions:
    - name: "{decision}"
      priority: 1
      rules: {{operator: AND, conditions: []}}
      modelRefs: [{{model: m}}]
"#
    );
    let env = HashMap::<String, String>::new();
    let opts = vllm_sr_config::LoadOptions {
        strict: false,
        env: &env,
        base_dir: None,
    };
    match vllm_sr_config::load_bytes(yaml.as_bytes(), &opts) {
        Ok(l) => l.config,
        Err(e) => panic!("{e}"),
    }
}
