//! Validated decisions: rule tree, model refs, algorithm, plugins, learning modes (§6–§8).

use indexmap::IndexMap;
use serde_norway::Value;

use super::rules::Condition;
use super::ModelId;

/// One decision of a recipe.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    /// Unique within the recipe.
    pub name: String,
    /// Free text.
    pub description: String,
    /// Higher wins under the priority strategy.
    pub priority: i64,
    /// 0 when unset; lower non-zero tiers win in tiered mode.
    pub tier: u32,
    /// When the decision matches.
    pub rules: Condition,
    /// Candidate models; the static selector takes the first.
    pub model_refs: Vec<ModelRef>,
    /// Selection algorithm.
    pub algorithm: Algorithm,
    /// Plugins in declaration order, one per type.
    pub plugins: Vec<Plugin>,
    /// Router Learning modes for this decision.
    pub adaptations: Adaptations,
    /// Non-executable annotations.
    pub annotations: IndexMap<String, Value>,
}

impl Decision {
    /// The plugin of one kind, if configured.
    pub fn plugin(&self, kind: PluginKind) -> Option<&Plugin> {
        self.plugins.iter().find(|p| p.kind() == kind)
    }
}

/// A candidate model of a decision.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelRef {
    /// The card (a LoRA name resolves to its base card).
    pub model: ModelId,
    /// The name as written (card or LoRA name).
    pub model_name: String,
    /// LoRA forwarded instead of the card.
    pub lora_name: Option<String>,
    /// Weight for distribution algorithms.
    pub weight: Option<f64>,
    /// Enable reasoning.
    pub use_reasoning: bool,
    /// `low`, `medium`, `high`, `max`.
    pub reasoning_effort: Option<String>,
    /// Free text.
    pub reasoning_description: Option<String>,
}

/// Selection algorithm types (contract §7).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[expect(missing_docs, reason = "variants named by the contract")]
pub enum AlgorithmKind {
    Static,
    RouterDc,
    Automix,
    Hybrid,
    LatencyAware,
    MultiFactor,
    Prompt,
    Knn,
    Kmeans,
    Svm,
    Mlp,
    Confidence,
    Ratings,
    Remom,
    Fusion,
    Workflows,
}

impl AlgorithmKind {
    /// Every kind with its YAML name and block key (`None` for block-less kinds).
    pub const TABLE: [(AlgorithmKind, &'static str, Option<&'static str>); 16] = [
        (Self::Static, "static", None),
        (Self::RouterDc, "router_dc", Some("router_dc")),
        (Self::Automix, "automix", Some("automix")),
        (Self::Hybrid, "hybrid", Some("hybrid")),
        (Self::LatencyAware, "latency_aware", Some("latency_aware")),
        (Self::MultiFactor, "multi_factor", Some("multi_factor")),
        (Self::Prompt, "prompt", Some("prompt")),
        (Self::Knn, "knn", None),
        (Self::Kmeans, "kmeans", None),
        (Self::Svm, "svm", None),
        (Self::Mlp, "mlp", None),
        (Self::Confidence, "confidence", Some("confidence")),
        (Self::Ratings, "ratings", Some("ratings")),
        (Self::Remom, "remom", Some("remom")),
        (Self::Fusion, "fusion", Some("fusion")),
        (Self::Workflows, "workflows", Some("workflows")),
    ];

    /// The YAML name.
    pub fn as_str(self) -> &'static str {
        Self::TABLE
            .iter()
            .find(|(k, ..)| *k == self)
            .map(|(_, n, _)| *n)
            .unwrap_or("static")
    }

    /// The block key this kind accepts.
    pub fn block_key(self) -> Option<&'static str> {
        Self::TABLE
            .iter()
            .find(|(k, ..)| *k == self)
            .and_then(|(.., b)| *b)
    }

    /// Parses a YAML name (must be lowercase).
    pub fn parse(s: &str) -> Option<Self> {
        Self::TABLE
            .iter()
            .find(|(_, n, _)| *n == s)
            .map(|(k, ..)| *k)
    }

    /// Looper algorithms call several models through the looper endpoint.
    pub fn is_looper(self) -> bool {
        matches!(
            self,
            Self::Confidence | Self::Ratings | Self::Remom | Self::Fusion | Self::Workflows
        )
    }
}

/// A decision's algorithm.
#[derive(Debug, Clone, PartialEq)]
pub struct Algorithm {
    /// Type.
    pub kind: AlgorithmKind,
    /// Top-level `on_error`.
    pub on_error: Option<String>,
    /// The type's own configuration block, if any.
    pub block: Option<Value>,
}

impl Algorithm {
    /// The implicit algorithm of a decision without one.
    pub fn static_default() -> Self {
        Self {
            kind: AlgorithmKind::Static,
            on_error: None,
            block: None,
        }
    }
}

/// Router Learning mode of a decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum LearningMode {
    /// Learning may change the pick.
    Apply,
    /// Diagnostics only.
    Observe,
    /// Learning is off for this decision.
    Bypass,
}

impl LearningMode {
    /// `apply`, `observe` or `bypass`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Apply => "apply",
            Self::Observe => "observe",
            Self::Bypass => "bypass",
        }
    }

    /// Parses a mode name.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "apply" => Some(Self::Apply),
            "observe" => Some(Self::Observe),
            "bypass" => Some(Self::Bypass),
            _ => None,
        }
    }
}

/// Per-decision learning modes; sub-modes are never stronger than `mode`.
#[derive(Debug, Clone, PartialEq)]
pub struct Adaptations {
    /// Decision-wide mode.
    pub mode: LearningMode,
    /// Effective adaptation mode.
    pub adaptation: LearningMode,
    /// `decision`, `tier` or `global`, when overridden.
    pub candidate_set: Option<String>,
    /// Effective protection mode.
    pub protection: LearningMode,
    /// Per-decision stability weight override.
    pub stability_weight: Option<f64>,
    /// Per-decision switch margin override.
    pub switch_margin: Option<f64>,
}

impl Default for Adaptations {
    fn default() -> Self {
        Self {
            mode: LearningMode::Apply,
            adaptation: LearningMode::Apply,
            candidate_set: None,
            protection: LearningMode::Apply,
            stability_weight: None,
            switch_margin: None,
        }
    }
}

/// Plugin types (contract §8), after alias normalisation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[expect(missing_docs, reason = "variants named by the contract")]
pub enum PluginKind {
    SystemPrompt,
    HeaderMutation,
    ResponseCache,
    RouterReplay,
    Tools,
    ToolSelection,
    FastResponse,
    RequestParams,
    ResponseJailbreak,
    Hallucination,
    Rag,
    Memory,
    ImageGen,
    ContextCompression,
}

impl PluginKind {
    /// Every kind with its canonical name.
    pub const TABLE: [(PluginKind, &'static str); 14] = [
        (Self::SystemPrompt, "system_prompt"),
        (Self::HeaderMutation, "header_mutation"),
        (Self::ResponseCache, "response_cache"),
        (Self::RouterReplay, "router_replay"),
        (Self::Tools, "tools"),
        (Self::ToolSelection, "tool_selection"),
        (Self::FastResponse, "fast_response"),
        (Self::RequestParams, "request_params"),
        (Self::ResponseJailbreak, "response_jailbreak"),
        (Self::Hallucination, "hallucination"),
        (Self::Rag, "rag"),
        (Self::Memory, "memory"),
        (Self::ImageGen, "image_gen"),
        (Self::ContextCompression, "context_compression"),
    ];

    /// Canonical name.
    pub fn as_str(self) -> &'static str {
        Self::TABLE
            .iter()
            .find(|(k, _)| *k == self)
            .map(|(_, n)| *n)
            .unwrap_or("")
    }

    /// Parses a canonical name or an accepted alias. The second value is true when the name
    /// was a deprecated alias.
    pub fn parse(s: &str) -> Option<(Self, bool)> {
        let normalized = s.trim().replace('-', "_");
        let (name, deprecated) = match normalized.as_str() {
            "semantic_cache" | "response_cache" if s != "response_cache" => {
                ("response_cache", true)
            }
            other => (other, false),
        };
        Self::TABLE
            .iter()
            .find(|(_, n)| *n == name)
            .map(|(k, _)| (*k, deprecated))
    }
}

/// A configured plugin.
#[derive(Debug, Clone, PartialEq)]
pub enum Plugin {
    /// Insert or replace the system prompt.
    SystemPrompt(SystemPrompt),
    /// Static header edits on the upstream request.
    HeaderMutation(HeaderMutation),
    /// Record replay entries for this decision.
    RouterReplay(RouterReplay),
    /// Edit the request's tools.
    Tools(Tools),
    /// Answer immediately without an upstream call.
    FastResponse {
        /// The message returned.
        message: String,
    },
    /// Strip or cap request fields.
    RequestParams(RequestParams),
    /// Accepted and validated; applied by later subsystems (cache, RAG, memory, ...).
    Other {
        /// Kind.
        kind: PluginKind,
        /// `enabled` (default true).
        enabled: bool,
        /// Configuration as written.
        configuration: Value,
    },
}

impl Plugin {
    /// The plugin's kind.
    pub fn kind(&self) -> PluginKind {
        match self {
            Self::SystemPrompt(_) => PluginKind::SystemPrompt,
            Self::HeaderMutation(_) => PluginKind::HeaderMutation,
            Self::RouterReplay(_) => PluginKind::RouterReplay,
            Self::Tools(_) => PluginKind::Tools,
            Self::FastResponse { .. } => PluginKind::FastResponse,
            Self::RequestParams(_) => PluginKind::RequestParams,
            Self::Other { kind, .. } => *kind,
        }
    }
}

/// `system_prompt` plugin.
#[derive(Debug, Clone, PartialEq)]
pub struct SystemPrompt {
    /// Applied when true.
    pub enabled: bool,
    /// Prompt text.
    pub prompt: String,
    /// Replace instead of insert.
    pub replace: bool,
}

/// `header_mutation` plugin.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct HeaderMutation {
    /// Headers appended.
    pub add: Vec<(String, String)>,
    /// Headers set (replacing).
    pub update: Vec<(String, String)>,
    /// Headers removed.
    pub delete: Vec<String>,
}

/// `router_replay` plugin.
#[derive(Debug, Clone, PartialEq)]
#[expect(missing_docs, reason = "fields mirror the contract")]
pub struct RouterReplay {
    pub enabled: bool,
    pub max_records: Option<u64>,
    pub capture_request_body: bool,
    pub capture_response_body: bool,
    pub max_body_bytes: Option<u64>,
}

/// `tools` plugin mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ToolsMode {
    /// Leave tools as they are.
    Passthrough,
    /// Remove tools.
    None,
    /// Apply allow and block lists.
    Filtered,
}

/// `tools` plugin.
#[derive(Debug, Clone, PartialEq)]
#[expect(missing_docs, reason = "fields mirror the contract")]
pub struct Tools {
    pub enabled: bool,
    pub mode: ToolsMode,
    pub semantic_selection: bool,
    pub allow_tools: Vec<String>,
    pub block_tools: Vec<String>,
    pub strip_tool_history: bool,
}

/// `request_params` plugin.
#[derive(Debug, Clone, PartialEq, Default)]
#[expect(missing_docs, reason = "fields mirror the contract")]
pub struct RequestParams {
    pub blocked_params: Vec<String>,
    pub max_tokens_limit: Option<u64>,
    pub max_n: Option<u64>,
    pub strip_unknown: bool,
}
