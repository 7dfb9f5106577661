//! The validated `RouterConfig`: what the engine, proxy and management API consume.
//!
//! Everything here is resolved: model references are [`ModelId`]s, rule leaves hold signal
//! ids, thresholds are checked, defaults applied. No `Option` here means "filled in later".

pub mod decisions;
pub mod global;
pub mod projections;
pub mod rules;
pub mod signals;

use std::path::PathBuf;

use indexmap::IndexMap;

pub use decisions::*;
pub use global::GlobalConfig;
pub use projections::*;
pub use rules::*;
pub use signals::*;

/// Index into `RouterConfig::models`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ModelId(pub u32);

/// A numeric predicate `{gt, gte, lt, lte}`; all set bounds must hold.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
#[expect(missing_docs, reason = "bounds named by the contract")]
pub struct Predicate {
    pub gt: Option<f64>,
    pub gte: Option<f64>,
    pub lt: Option<f64>,
    pub lte: Option<f64>,
}

impl Predicate {
    /// True when `v` satisfies every set bound.
    pub fn holds(&self, v: f64) -> bool {
        self.gt.is_none_or(|b| v > b)
            && self.gte.is_none_or(|b| v >= b)
            && self.lt.is_none_or(|b| v < b)
            && self.lte.is_none_or(|b| v <= b)
    }

    /// The first set bound in the order gt, gte, lt, lte (used for sigmoid confidence).
    pub fn first_bound(&self) -> Option<f64> {
        self.gt.or(self.gte).or(self.lt).or(self.lte)
    }
}

/// The validated recipe.
#[derive(Debug, Clone, PartialEq)]
pub struct RouterConfig {
    /// `version` as written (`v0.3`).
    pub version: String,
    /// Listeners (the proxy binds one per entry).
    pub listeners: Vec<Listener>,
    /// Logical models, indexed by [`ModelId`].
    pub models: Vec<Model>,
    /// Defaults from `providers.defaults`.
    pub defaults: ProviderDefaults,
    /// Routing profiles; index 0 is `default`.
    pub recipes: Vec<Recipe>,
    /// Virtual model name → recipe index.
    pub entrypoints: IndexMap<String, usize>,
    /// Names that trigger auto routing on the default recipe.
    pub auto_model_names: Vec<String>,
    /// Typed `global`.
    pub global: GlobalConfig,
    /// Directory relative paths resolve against.
    pub base_dir: PathBuf,
}

impl RouterConfig {
    /// The default routing profile.
    pub fn default_recipe(&self) -> &Recipe {
        &self.recipes[0]
    }

    /// Looks a logical model up by card name.
    pub fn model_by_name(&self, name: &str) -> Option<ModelId> {
        self.models
            .iter()
            .position(|m| m.card.name == name)
            .map(|i| ModelId(i as u32))
    }

    /// The model behind an id.
    pub fn model(&self, id: ModelId) -> &Model {
        &self.models[id.0 as usize]
    }

    /// Which recipe a request's `model` selects, or `None` for an explicit model.
    pub fn recipe_for_model(&self, model: &str) -> Option<usize> {
        if self.auto_model_names.iter().any(|n| n == model) {
            Some(0)
        } else {
            self.entrypoints.get(model).copied()
        }
    }
}

/// `listeners[]`.
#[derive(Debug, Clone, PartialEq)]
#[expect(missing_docs, reason = "fields mirror the contract")]
pub struct Listener {
    pub name: String,
    pub address: String,
    pub port: u16,
    /// Request timeout in seconds.
    pub timeout_secs: Option<f64>,
}

/// `providers.defaults`.
#[derive(Debug, Clone, PartialEq)]
#[expect(missing_docs, reason = "fields mirror the contract")]
pub struct ProviderDefaults {
    pub default_model: Option<ModelId>,
    pub reasoning_families: IndexMap<String, ReasoningFamily>,
    pub default_reasoning_effort: Option<String>,
}

/// How reasoning is switched on for a model family (contract §9).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReasoningFamily {
    /// `chat_template_kwargs[param] = true|false|effort`.
    ChatTemplateKwargs(String),
    /// `reasoning_effort`-style parameter.
    ReasoningEffort(String),
    /// Top-level `reasoning_effort`.
    TopLevelReasoningEffort,
}

/// A logical model: its card and, when bound, its provider binding.
#[derive(Debug, Clone, PartialEq)]
pub struct Model {
    /// The card.
    pub card: ModelCard,
    /// The `providers.models[]` entry, if any.
    pub provider: Option<ProviderModel>,
}

/// `routing.modelCards[]`.
#[derive(Debug, Clone, PartialEq)]
#[expect(missing_docs, reason = "fields mirror the contract")]
pub struct ModelCard {
    pub name: String,
    pub param_size: Option<String>,
    pub context_window_size: Option<u64>,
    pub description: String,
    pub capabilities: Vec<String>,
    pub loras: Vec<String>,
    pub quality_score: Option<f64>,
    pub modality: Option<String>,
    pub tags: Vec<String>,
}

/// `providers.models[]`.
#[derive(Debug, Clone, PartialEq)]
#[expect(missing_docs, reason = "fields mirror the contract")]
pub struct ProviderModel {
    pub reasoning_family: Option<String>,
    pub provider_model_id: Option<String>,
    /// Forwarded model id per backend type.
    pub external_model_ids: IndexMap<String, String>,
    pub api_format: ApiFormat,
    pub pricing: Pricing,
    pub reliability: Reliability,
    pub backends: Vec<Backend>,
}

/// Upstream wire format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[expect(missing_docs, reason = "variants named by the contract")]
pub enum ApiFormat {
    Openai,
    Anthropic,
}

/// Prices per million tokens (0 when unset).
#[derive(Debug, Clone, PartialEq, Default)]
#[expect(missing_docs, reason = "fields mirror the contract")]
pub struct Pricing {
    pub currency: String,
    pub prompt_per_1m: f64,
    pub completion_per_1m: f64,
    pub cached_input_per_1m: f64,
    pub cache_write_per_1m: f64,
}

/// Load-balancing policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[expect(missing_docs, reason = "variants named by the contract")]
pub enum LbPolicy {
    LeastRequest,
    RoundRobin,
    Random,
}

/// Reliability knobs with defaults applied.
#[derive(Debug, Clone, PartialEq)]
#[expect(missing_docs, reason = "fields mirror the contract")]
pub struct Reliability {
    pub lb_policy: LbPolicy,
    pub retry_count: u32,
    pub retry_on: Vec<String>,
    pub consecutive_5xx: u32,
    pub base_ejection_secs: f64,
    pub max_ejection_percent: u32,
    pub health_check_path: Option<String>,
    pub health_check_interval_secs: f64,
    pub health_check_timeout_secs: f64,
}

impl Default for Reliability {
    fn default() -> Self {
        Self {
            lb_policy: LbPolicy::LeastRequest,
            retry_count: 1,
            retry_on: vec!["connect-failure".into(), "reset".into(), "5xx".into()],
            consecutive_5xx: 5,
            base_ejection_secs: 30.0,
            max_ejection_percent: 50,
            health_check_path: None,
            health_check_interval_secs: 10.0,
            health_check_timeout_secs: 2.0,
        }
    }
}

/// A concrete backend of a logical model.
#[derive(Debug, Clone, PartialEq)]
pub struct Backend {
    /// `<model>_<refname>`.
    pub name: String,
    /// `http` or `https`.
    pub scheme: String,
    /// Host name or address.
    pub host: String,
    /// Port (80/443 when not written).
    pub port: u16,
    /// Path prefix from a URL endpoint or `base_url` (no trailing slash).
    pub base_path: String,
    /// Chat completions path (default `/v1/chat/completions`).
    pub chat_path: String,
    /// Load-balancing weight.
    pub weight: u32,
    /// Backend type (`vllm`, `provider`, ...).
    pub kind: String,
    /// Hosted provider name.
    pub provider: Option<String>,
    /// Header carrying the key.
    pub auth_header: String,
    /// Prefix before the key.
    pub auth_prefix: String,
    /// The key, if configured (a literal or read from `api_key_env`).
    pub api_key: Option<String>,
    /// Extra static headers.
    pub extra_headers: IndexMap<String, String>,
}

/// A routing profile.
#[derive(Debug, Clone, PartialEq)]
pub struct Recipe {
    /// `default` for the top-level routing.
    pub name: String,
    /// Free text.
    pub description: String,
    /// Signal rules.
    pub signals: Signals,
    /// Projections.
    pub projections: Projections,
    /// Decisions in declaration order.
    pub decisions: Vec<Decision>,
    /// Ordering when no tiers are in play.
    pub strategy: Strategy,
}

/// Ordering of matched decisions without tiers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Strategy {
    /// Priority, then confidence, then name.
    Priority,
    /// Confidence, then priority, then name.
    Confidence,
}
