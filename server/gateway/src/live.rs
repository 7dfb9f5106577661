//! The live state: one validated recipe, its compiled engine, its backends and the embedding
//! model it needs, swapped as a whole on reload. A request loads the snapshot once and uses it
//! from start to end, so it never mixes old and new rules.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::Mutex;
use tokio_util::sync::CancellationToken;
use vllm_sr_config::model::{Decision, ModelId, RouterConfig};
use vllm_sr_config::{load_path, LoadError, LoadOptions, ProcessEnv};
use vllm_sr_engine::{needs_embeddings, Embed, Engine, EngineError};
use vllm_sr_models::{
    Embedder, LoadOptions as ModelLoadOptions, ModelError, ModelRegistry, RuntimeOptions,
    DEFAULT_EMBEDDING_MODEL,
};

use crate::headers::HeaderCache;
use crate::rewrite::Dialect;
use crate::upstream::Upstreams;

/// Why a recipe could not become the live state.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// The file is not a valid recipe; every diagnostic is listed.
    #[error("{path} is not a valid recipe:\n  {}", .errors.join("\n  "))]
    Invalid {
        /// The recipe file.
        path: PathBuf,
        /// Every error, formatted with its YAML path and line.
        errors: Vec<String>,
    },
    /// The embedding model could not be loaded.
    #[error("embedding model {reference}: {source}")]
    Model {
        /// The model reference.
        reference: String,
        /// Why.
        source: ModelError,
    },
    /// The engine rejected the recipe.
    #[error("building the routing engine: {0}")]
    Engine(#[from] EngineError),
}

/// Where the embedding model comes from; loaded once, on first need, and kept across reloads.
#[derive(Debug)]
pub struct ModelSource {
    reference: String,
    loaded: Mutex<Option<Embedder>>,
}

impl ModelSource {
    /// A source for `reference` (a Hugging Face repo id or a directory; `None`: the offline
    /// default model).
    pub fn new(reference: Option<String>) -> Self {
        Self {
            reference: reference.unwrap_or_else(|| DEFAULT_EMBEDDING_MODEL.to_string()),
            loaded: Mutex::new(None),
        }
    }

    /// The embedder, loading it on first use (blocking: call from a blocking thread).
    fn get(&self) -> Result<Embedder, BuildError> {
        let mut slot = self.loaded.lock();
        if let Some(e) = slot.as_ref() {
            return Ok(e.clone());
        }
        let err = |source| BuildError::Model {
            reference: self.reference.clone(),
            source,
        };
        let resolved = ModelRegistry::from_env()
            .resolve(&self.reference)
            .map_err(err)?;
        let started = std::time::Instant::now();
        let e = Embedder::load(
            &self.reference,
            &resolved.dir,
            &ModelLoadOptions::default(),
            RuntimeOptions::default(),
        )
        .map_err(err)?;
        tracing::info!(model = %self.reference, ms = started.elapsed().as_millis() as u64, "embedding model loaded");
        *slot = Some(e.clone());
        Ok(e)
    }
}

/// Stands in for the model when the recipe needs none.
struct NoModel;

impl Embed for NoModel {
    fn embed(&self, _: &[String]) -> Result<Vec<Vec<f32>>, EngineError> {
        Err(EngineError::Embedding(
            "no embedding model is loaded for this recipe".into(),
        ))
    }

    fn dims(&self) -> usize {
        0
    }
}

/// One recipe, ready to serve.
pub struct LiveState {
    /// The validated recipe.
    pub config: Arc<RouterConfig>,
    /// Its compiled engine.
    pub engine: Engine,
    /// Its backends.
    pub upstreams: Arc<Upstreams>,
    /// The embedding model, when the recipe needs one.
    pub embedder: Option<Embedder>,
    /// 1 at startup, +1 per successful reload.
    pub generation: u64,
    /// Reasoning dialect per model (its highest-weight backend's).
    dialects: Vec<Dialect>,
    /// Response header values of the recipe's names.
    pub headers: HeaderCache,
    /// Handles of the metric series the recipe's names use.
    pub series: crate::metrics::SeriesCache,
    /// The request headers routing reads (lowercased): the engine's and Router Learning's
    /// identity headers. Only these are copied into the engine's request view.
    pub(crate) routing_headers: Vec<String>,
    /// Model prices, for replay costs.
    pub prices: Arc<vllm_sr_store::PriceTable>,
    /// The effective config as YAML, secrets redacted (`GET /config`).
    pub effective_yaml: String,
    /// Stops this state's background loops (health checks) when it is replaced.
    pub(crate) cancel: CancellationToken,
}

impl std::fmt::Debug for LiveState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiveState")
            .field("generation", &self.generation)
            .field("models", &self.config.models.len())
            .finish_non_exhaustive()
    }
}

impl LiveState {
    /// Loads `path` and builds the live state (blocking: file I/O, model load, prototype
    /// embedding). Warnings are logged; errors are returned all at once.
    ///
    /// # Errors
    /// An invalid recipe, a model that cannot be loaded, or an engine build failure.
    pub fn load(
        path: &Path,
        models: &ModelSource,
        previous: Option<&LiveState>,
        generation: u64,
    ) -> Result<Self, BuildError> {
        let file = path.display().to_string();
        let loaded = load_path(
            path,
            &LoadOptions {
                strict: false,
                env: &ProcessEnv,
                base_dir: None,
            },
        )
        .map_err(|e| invalid(path, &e))?;
        for w in loaded.diagnostics.warnings() {
            tracing::warn!("{file}: {w}");
        }
        let yaml =
            vllm_sr_config::effective_yaml(&loaded.document, vllm_sr_config::Secrets::Redact)
                .unwrap_or_else(|e| format!("# the effective config could not be rendered: {e}\n"));
        let mut live = Self::build(Arc::new(loaded.config), models, previous, generation)?;
        live.effective_yaml = yaml;
        Ok(live)
    }

    /// Builds the live state from a validated config (blocking).
    ///
    /// # Errors
    /// A model that cannot be loaded, or an engine build failure.
    pub fn build(
        config: Arc<RouterConfig>,
        models: &ModelSource,
        previous: Option<&LiveState>,
        generation: u64,
    ) -> Result<Self, BuildError> {
        let embedder = if needs_embeddings(&config) {
            Some(models.get()?)
        } else {
            None
        };
        let engine = match &embedder {
            Some(e) => Engine::build(config.clone(), e)?,
            None => Engine::build(config.clone(), &NoModel)?,
        };
        for w in engine.warnings() {
            tracing::warn!("{w}");
        }
        let upstreams = Arc::new(Upstreams::build(
            &config,
            previous.map(|p| p.upstreams.as_ref()),
        ));
        let dialects = config
            .models
            .iter()
            .map(|m| {
                m.provider
                    .as_ref()
                    .and_then(|p| p.backends.iter().max_by_key(|b| b.weight))
                    .map_or(Dialect::Vllm, Dialect::of)
            })
            .collect();
        let routing_headers = routing_headers(&engine, &config);
        Ok(Self {
            routing_headers,
            headers: HeaderCache::new(&config),
            series: crate::metrics::SeriesCache::new(&config),
            prices: Arc::new(crate::replay::price_table(&config)),
            effective_yaml: String::new(),
            config,
            engine,
            upstreams,
            embedder,
            generation,
            dialects,
            cancel: CancellationToken::new(),
        })
    }

    /// Whether routing reads the request header `name`.
    pub(crate) fn reads_header(&self, name: &str) -> bool {
        self.routing_headers
            .iter()
            .any(|h| h.eq_ignore_ascii_case(name))
    }

    /// A decision of a recipe by name.
    pub fn decision(&self, recipe: &str, name: &str) -> Option<&Decision> {
        self.config
            .recipes
            .iter()
            .find(|r| r.name == recipe)
            .or_else(|| self.config.recipes.first())
            .and_then(|r| r.decisions.iter().find(|d| d.name == name))
    }

    /// The reasoning dialect of a model.
    pub fn dialect(&self, model: ModelId) -> Dialect {
        self.dialects
            .get(model.0 as usize)
            .copied()
            .unwrap_or(Dialect::Vllm)
    }

    /// Names a client may put in `model`: auto names, entrypoints and logical models.
    pub fn model_names(&self) -> Vec<String> {
        let c = &self.config;
        let mut names: Vec<String> = c.auto_model_names.clone();
        names.extend(c.entrypoints.keys().cloned());
        names.extend(c.models.iter().map(|m| m.card.name.clone()));
        names.dedup();
        names
    }
}

fn invalid(path: &Path, e: &LoadError) -> BuildError {
    let errors = e.diagnostics().errors().map(ToString::to_string).collect();
    BuildError::Invalid {
        path: path.to_path_buf(),
        errors,
    }
}

/// The headers routing reads: the engine's ([`Engine::read_headers`]) and, with Router
/// Learning's protection on, its session and conversation identity headers.
fn routing_headers(engine: &Engine, config: &RouterConfig) -> Vec<String> {
    let mut names = engine.read_headers();
    let learning = &config.global.router.learning;
    if learning.enabled && learning.protection.enabled {
        let identity = &learning.protection.identity.headers;
        for name in [&identity.session, &identity.conversation] {
            let name = name.to_ascii_lowercase();
            if !name.is_empty() && !names.contains(&name) {
                names.push(name);
            }
        }
    }
    names
}
