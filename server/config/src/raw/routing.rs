//! Raw `routing` section: model cards, signals container, projections, decisions, recipes.

use indexmap::IndexMap;
use serde::{Deserialize, Serialize};
use serde_norway::Value;

use super::signals::*;
use super::{is_false, RawPredicate};

/// `routing` (and `recipes[].routing`).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RawRouting {
    /// Model cards (top-level routing only).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub model_cards: Vec<RawModelCard>,
    /// Signal rules by family.
    #[serde(default, skip_serializing_if = "RawSignals::is_empty")]
    pub signals: RawSignals,
    /// Partitions, scores and mappings.
    #[serde(default, skip_serializing_if = "RawProjections::is_empty")]
    pub projections: RawProjections,
    /// Decisions in declaration order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub decisions: Vec<RawDecision>,
    /// `priority` or `confidence`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub strategy: Option<String>,
}

impl RawRouting {
    /// True when the profile declares signals, projections, decisions or a strategy.
    pub fn has_profile_content(&self) -> bool {
        !self.signals.is_empty()
            || !self.projections.is_empty()
            || !self.decisions.is_empty()
            || self.strategy.is_some()
    }
}

/// `routing.modelCards[]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawModelCard {
    /// Logical model name.
    pub name: String,
    /// e.g. `35B`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub param_size: Option<String>,
    /// Context window in tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context_window_size: Option<u64>,
    /// Free text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Capability tags.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub capabilities: Vec<String>,
    /// LoRA adapters served under this card.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub loras: Vec<RawLora>,
    /// Quality score in [0, 1].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quality_score: Option<f64>,
    /// e.g. `text`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub modality: Option<String>,
    /// Free-form tags.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
}

/// `routing.modelCards[].loras[]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLora {
    /// LoRA name.
    pub name: String,
    /// Free text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

/// `routing.signals`: one list per family, keyed by the YAML list names.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[expect(missing_docs, reason = "one field per signal family; see SignalFamily")]
pub struct RawSignals {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub keywords: Vec<RawKeywordRule>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub embeddings: Vec<RawEmbeddingRule>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub domains: Vec<RawDomainRule>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fact_check: Vec<RawNamedRule>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub user_feedbacks: Vec<RawNamedRule>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reasks: Vec<RawReaskRule>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub preferences: Vec<RawPreferenceRule>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub language: Vec<RawLanguageRule>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub context: Vec<RawContextRule>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub structure: Vec<RawStructureRule>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub complexity: Vec<RawComplexityRule>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub modality: Vec<RawNamedRule>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub role_bindings: Vec<RawRoleBinding>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub jailbreak: Vec<RawJailbreakRule>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pii: Vec<RawPiiRule>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub kb: Vec<RawKbRule>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conversation: Vec<RawConversationRule>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub events: Vec<RawEventRule>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub metadata: Vec<RawMetadataRule>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub classifiers: Vec<RawClassifierRule>,
}

impl RawSignals {
    /// True when no family declares a rule.
    pub fn is_empty(&self) -> bool {
        self == &Self::default()
    }
}

/// `routing.projections`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawProjections {
    /// Exclusive groups over domain or embedding signals.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub partitions: Vec<RawPartition>,
    /// Weighted sums over signals.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub scores: Vec<RawScore>,
    /// Bands over scores that emit named outputs.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mappings: Vec<RawMapping>,
}

impl RawProjections {
    /// True when nothing is declared.
    pub fn is_empty(&self) -> bool {
        self.partitions.is_empty() && self.scores.is_empty() && self.mappings.is_empty()
    }
}

/// `projections.partitions[]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPartition {
    /// Partition name.
    pub name: String,
    /// `exclusive` or `softmax_exclusive`.
    #[serde(default)]
    pub semantics: String,
    /// Softmax temperature (> 0 for softmax_exclusive).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f64>,
    /// Member signal names (all domains or all embeddings).
    #[serde(default)]
    pub members: Vec<String>,
    /// Member used when no member matched.
    #[serde(default)]
    pub default: String,
    /// Free text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

/// `projections.scores[]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawScore {
    /// Score name.
    pub name: String,
    /// `weighted_sum`.
    #[serde(default)]
    pub method: String,
    /// Inputs.
    #[serde(default)]
    pub inputs: Vec<RawScoreInput>,
    /// Free text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

/// `projections.scores[].inputs[]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawScoreInput {
    /// Signal type, `kb_metric` or `projection`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Signal, score or output name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Weight (may be negative).
    #[serde(default)]
    pub weight: f64,
    /// `binary` (default), `confidence`, `raw` or `score`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value_source: Option<String>,
    /// Value when matched (binary; 0 reads as 1).
    #[serde(default, rename = "match", skip_serializing_if = "Option::is_none")]
    pub match_value: Option<f64>,
    /// Value when unmatched (binary; default 0).
    #[serde(default, rename = "miss", skip_serializing_if = "Option::is_none")]
    pub miss_value: Option<f64>,
    /// KB name (kb_metric).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kb: Option<String>,
    /// Metric name (kb_metric).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metric: Option<String>,
}

/// `projections.mappings[]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMapping {
    /// Mapping name.
    pub name: String,
    /// Score name.
    #[serde(default)]
    pub source: String,
    /// `threshold_bands` (default) or `multi_emit`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    /// Confidence calibration.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub calibration: Option<RawCalibration>,
    /// Bands.
    #[serde(default)]
    pub outputs: Vec<RawMappingOutput>,
    /// Free text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

/// `mappings[].calibration`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCalibration {
    /// `sigmoid_distance`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    /// Sigmoid slope (default 12).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slope: Option<f64>,
}

/// `mappings[].outputs[]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMappingOutput {
    /// Output name (a projection leaf references it).
    pub name: String,
    /// Upper bound, exclusive.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lt: Option<f64>,
    /// Upper bound, inclusive.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lte: Option<f64>,
    /// Lower bound, exclusive.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gt: Option<f64>,
    /// Lower bound, inclusive.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gte: Option<f64>,
}

/// `routing.decisions[]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDecision {
    /// Decision name.
    pub name: String,
    /// Free text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Higher wins under the priority strategy.
    #[serde(default)]
    pub priority: i64,
    /// Lower wins when any matched decision has a tier.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tier: Option<i64>,
    /// Boolean rule tree; absent means unconditional.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rules: Option<RawRuleNode>,
    /// Candidate models.
    #[serde(default, rename = "modelRefs", skip_serializing_if = "Vec::is_empty")]
    pub model_refs: Vec<RawModelRef>,
    /// Selection algorithm (absent = static).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub algorithm: Option<RawAlgorithm>,
    /// Router Learning per-decision modes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub adaptations: Option<RawAdaptations>,
    /// Plugins.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub plugins: Vec<RawPlugin>,
    /// DSL `FOR` metadata.
    #[serde(
        default,
        rename = "candidateIterations",
        skip_serializing_if = "Option::is_none"
    )]
    pub candidate_iterations: Option<Value>,
    /// DSL `EMIT` metadata.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub emits: Option<Value>,
    /// Non-executable annotations.
    #[serde(default, skip_serializing_if = "IndexMap::is_empty")]
    pub annotations: IndexMap<String, Value>,
    /// Response shaping.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_contract: Option<Value>,
    /// Response shaping spec.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_contract_spec: Option<Value>,
}

/// A rule-tree node: a leaf (`type` set) or a composite (`operator` + `conditions`).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRuleNode {
    /// Leaf signal type.
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// Leaf signal name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Classifier label.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    /// Numeric predicate on the signal value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub predicate: Option<RawPredicate>,
    /// `match` or `no_match` when the classifier errored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_error: Option<String>,
    /// `AND`, `OR` or `NOT`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operator: Option<String>,
    /// Children of a composite.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<RawRuleNode>,
}

/// `decisions[].modelRefs[]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawModelRef {
    /// Model card (or LoRA) name.
    pub model: String,
    /// LoRA to forward instead of the card.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lora_name: Option<String>,
    /// Weight for distribution algorithms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weight: Option<f64>,
    /// Enable reasoning on this model.
    #[serde(default, skip_serializing_if = "is_false")]
    pub use_reasoning: bool,
    /// `low`, `medium`, `high`, `max`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reasoning_effort: Option<String>,
    /// Free text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reasoning_description: Option<String>,
}

/// `decisions[].algorithm`: a type and at most its own configuration block.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[expect(
    missing_docs,
    reason = "one optional block per algorithm type, named by the contract"
)]
pub struct RawAlgorithm {
    /// Algorithm type, lowercase.
    #[serde(rename = "type")]
    pub kind: String,
    /// Top-level error policy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub router_dc: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub automix: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hybrid: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency_aware: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub multi_factor: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub confidence: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ratings: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remom: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fusion: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workflows: Option<Value>,
}

impl RawAlgorithm {
    /// The configuration blocks that are present, by key.
    pub fn blocks(&self) -> Vec<(&'static str, &Value)> {
        let all: [(&'static str, &Option<Value>); 11] = [
            ("router_dc", &self.router_dc),
            ("automix", &self.automix),
            ("hybrid", &self.hybrid),
            ("latency_aware", &self.latency_aware),
            ("multi_factor", &self.multi_factor),
            ("prompt", &self.prompt),
            ("confidence", &self.confidence),
            ("ratings", &self.ratings),
            ("remom", &self.remom),
            ("fusion", &self.fusion),
            ("workflows", &self.workflows),
        ];
        all.into_iter()
            .filter_map(|(k, v)| v.as_ref().map(|v| (k, v)))
            .collect()
    }
}

/// `decisions[].adaptations` (strict: unknown keys are errors upstream).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAdaptations {
    /// `apply` (default), `observe` or `bypass`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<String>,
    /// Adaptation sub-mode.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub adaptation: Option<RawAdaptationMode>,
    /// Protection sub-mode.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protection: Option<RawProtectionMode>,
    /// Blog-era spelling of `protection`; accepted with a warning.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_aware: Option<RawProtectionMode>,
}

/// `adaptations.adaptation`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAdaptationMode {
    /// `apply`, `observe` or `bypass`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<String>,
    /// `decision`, `tier` or `global`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub candidate_set: Option<String>,
}

/// `adaptations.protection`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawProtectionMode {
    /// `apply`, `observe` or `bypass`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<String>,
    /// Per-decision override of the stability weight.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stability_weight: Option<f64>,
    /// Per-decision override of the switch margin.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub switch_margin: Option<f64>,
}

/// `decisions[].plugins[]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPlugin {
    /// Plugin type.
    #[serde(rename = "type")]
    pub kind: String,
    /// Type-specific configuration (required).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub configuration: Option<Value>,
}

/// `recipes[]`: an isolated routing profile.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRecipe {
    /// Recipe name.
    pub name: String,
    /// Free text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// The profile.
    #[serde(default)]
    pub routing: RawRouting,
}
