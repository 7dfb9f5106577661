//! Shared by the engine's test binaries and benches: the upstream recipes, the offline
//! default embedding model, and the check that embedding-backed families were skipped.

#![allow(
    dead_code,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stderr,
    reason = "test helpers: each binary uses a subset, and they fail or skip loudly"
)]

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use vllm_sr_config::model::RouterConfig;
use vllm_sr_config::{load_path, LoadOptions};
use vllm_sr_engine::Outcome;
use vllm_sr_models::{
    Embedder, LoadOptions as ModelOptions, ModelRegistry, RuntimeOptions, DEFAULT_EMBEDDING_MODEL,
};

/// A recipe file, loaded leniently with the one variable the upstream recipes need.
pub fn recipe_at(path: &Path) -> Arc<RouterConfig> {
    let env = HashMap::from([("POSTGRES_PASSWORD".to_string(), "x".to_string())]);
    let loaded = load_path(
        path,
        &LoadOptions {
            strict: false,
            env: &env,
            base_dir: None,
        },
    )
    .expect("recipe loads");
    Arc::new(loaded.config)
}

/// `shared/upstream/recipes/<name>/`.
pub fn upstream_dir(name: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/upstream/recipes")
        .join(name)
}

/// An upstream recipe by name (`balance`, `privacy`, `agent`).
pub fn upstream(name: &str) -> Arc<RouterConfig> {
    recipe_at(&upstream_dir(name).join("config.yaml"))
}

/// The offline default embedding model with `runtime`, or `None` (after saying why) in a
/// debug build or without the model — unless `VLLM_SR_REQUIRE_MODELS=1` (CI) makes a missing
/// model a failure. `what` names the caller in the skip message.
pub fn embedder_with(what: &str, runtime: RuntimeOptions) -> Option<Embedder> {
    embedder_for(what, &ModelOptions::default(), runtime)
}

/// [`embedder_with`] these load options (e.g. a CPU kernel).
pub fn embedder_for(what: &str, opts: &ModelOptions, runtime: RuntimeOptions) -> Option<Embedder> {
    if cfg!(debug_assertions) {
        eprintln!("skipping: {what} needs a release build (cargo test --release)");
        return None;
    }
    match ModelRegistry::from_env().resolve(DEFAULT_EMBEDDING_MODEL) {
        Ok(m) => Some(Embedder::load(&m.id, &m.dir, opts, runtime).expect("model loads")),
        Err(e) if std::env::var("VLLM_SR_REQUIRE_MODELS").is_ok_and(|v| v == "1") => panic!("{e}"),
        Err(e) => {
            eprintln!("skipping: {e}");
            None
        }
    }
}

/// [`embedder_with`] the default runtime.
pub fn embedder(what: &str) -> Option<Embedder> {
    embedder_with(what, RuntimeOptions::default())
}

/// The balance recipe's embedding-backed families were skipped: they emit nothing of their
/// own and, as for any unmatched family, the partitions add their declared defaults
/// (contract §4, step 1); the request still routes.
pub fn assert_embedding_families_skipped(o: &Outcome) {
    // (skipped family, its key among the matched signals, what may appear there)
    for (family, key, defaults) in [
        (
            "embedding",
            "embeddings",
            vec!["general_chat_fallback".to_string()],
        ),
        ("domain", "domains", vec!["other".to_string()]),
        ("fact_check", "fact_check", vec![]),
        ("complexity", "complexity", vec![]),
    ] {
        assert!(
            o.skipped_signals.iter().any(|s| s == family),
            "{family} not skipped: {:?}",
            o.skipped_signals
        );
        let matched = o
            .signals()
            .matched_signals
            .get(key)
            .cloned()
            .unwrap_or_default();
        assert_eq!(matched, defaults, "{family} matched without vectors");
    }
    assert!(o.model.is_some(), "the request still routes");
}
