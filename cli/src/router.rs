//! Loads a recipe and builds the in-process router: the embedding model on its own threads
//! and the engine whose prototype banks it embeds. Shared by `classify` and `eval`.

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Context};
use vllm_sr_engine::{Engine, Outcome, RequestView, RouteOptions};
use vllm_sr_models::{
    Embedder, LoadOptions as ModelLoadOptions, ModelRegistry, RuntimeOptions,
    DEFAULT_EMBEDDING_MODEL,
};

use crate::output::{diagnostic, err};

/// Which embedding model to load, from the command line.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct ModelArgs {
    /// Embedding model: a Hugging Face repo id or a local directory. Default: the offline
    /// model installed by ./install.sh (all-MiniLM-L6-v2).
    #[arg(long, env = "VLLM_SR_EMBEDDING_MODEL", value_name = "REF")]
    pub(crate) embedding_model: Option<String>,
}

/// An engine with the model that feeds it.
pub(crate) struct Router {
    pub(crate) engine: Engine,
    pub(crate) embedder: Embedder,
}

impl std::fmt::Debug for Router {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Router")
            .field("model", &self.embedder.model_id())
            .finish()
    }
}

impl Router {
    /// Loads the recipe (printing its diagnostics) and builds the engine.
    pub(crate) fn load(config: &Path, model: &ModelArgs) -> anyhow::Result<Self> {
        let file = config.display().to_string();
        let loaded = match crate::cmd::load(config, false) {
            Ok(l) => l,
            Err(e) => {
                for d in e.diagnostics().all() {
                    err(&diagnostic(&file, d));
                }
                bail!("{file} is not a valid recipe (see `vllm-sr validate --config {file}`)");
            }
        };
        for d in loaded.diagnostics.warnings() {
            tracing::warn!("{}", diagnostic(&file, d));
        }
        let reference = model
            .embedding_model
            .clone()
            .unwrap_or_else(|| DEFAULT_EMBEDDING_MODEL.to_string());
        let resolved = ModelRegistry::from_env()
            .resolve(&reference)
            .with_context(|| format!("embedding model {reference}"))?;
        let started = Instant::now();
        let embedder = Embedder::load(
            &reference,
            &resolved.dir,
            &ModelLoadOptions::default(),
            RuntimeOptions::default(),
        )
        .with_context(|| {
            format!(
                "loading embedding model {reference} from {}",
                resolved.dir.display()
            )
        })?;
        let engine = Engine::build(Arc::new(loaded.config), &embedder)
            .context("building the routing engine")?;
        tracing::info!(model = %reference, ms = started.elapsed().as_millis() as u64, "router ready");
        for w in engine.warnings() {
            tracing::warn!("{w}");
        }
        Ok(Self { engine, embedder })
    }

    /// Routes one request on this thread (the CLI has no async runtime).
    pub(crate) fn route(&self, request: RequestView, opts: RouteOptions) -> Outcome {
        self.engine.route_blocking(request, opts, &self.embedder)
    }
}
