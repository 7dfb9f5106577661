//! Raw signal rules, one struct per family of `routing.signals` (contract §3).

use serde::{Deserialize, Serialize};

use super::{is_false, NumOrStr, RawPredicate, RawRuleNode};

/// `keywords[]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawKeywordRule {
    /// Rule name.
    pub name: String,
    /// `AND`, `OR` or `NOR`.
    #[serde(default)]
    pub operator: String,
    /// Keywords (literal, or regexes with `method: regex`).
    #[serde(default)]
    pub keywords: Vec<String>,
    /// Case-sensitive matching (default false).
    #[serde(default, skip_serializing_if = "is_false")]
    pub case_sensitive: bool,
    /// `regex`, `bm25` or `ngram`; unset means literal matching.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    /// Levenshtein matching against words.
    #[serde(default, skip_serializing_if = "is_false")]
    pub fuzzy_match: bool,
    /// Maximum edit distance for fuzzy matching (default 2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fuzzy_threshold: Option<u32>,
    /// BM25 score threshold (default 0.1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bm25_threshold: Option<f64>,
    /// N-gram similarity threshold (default 0.4).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ngram_threshold: Option<f64>,
    /// N-gram arity (default 3).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ngram_arity: Option<u32>,
    /// Free text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

/// `embeddings[]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawEmbeddingRule {
    /// Rule name.
    pub name: String,
    /// Hard-match threshold.
    #[serde(default)]
    pub threshold: f64,
    /// Example texts forming the prototype bank.
    #[serde(default)]
    pub candidates: Vec<String>,
    /// `max`, `mean` or `any`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aggregation_method: Option<String>,
    /// `text` (default), `image` or `audio`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub query_modality: Option<String>,
    /// Free text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

/// `domains[]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDomainRule {
    /// Domain name.
    pub name: String,
    /// Free text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// MMLU-Pro categories mapped to this domain.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mmlu_categories: Vec<String>,
    /// Per-model scores (used by the static selector quirk).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub model_scores: Vec<RawModelScore>,
}

/// `domains[].model_scores[]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawModelScore {
    /// Model card name.
    pub model: String,
    /// Score.
    #[serde(default)]
    pub score: f64,
    /// Whether to enable reasoning.
    #[serde(default, skip_serializing_if = "is_false")]
    pub use_reasoning: bool,
}

/// A rule with only a name and description (`fact_check`, `user_feedbacks`, `modality`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawNamedRule {
    /// Rule name (for fact_check/feedback/modality: the label it emits).
    pub name: String,
    /// Free text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

/// `reasks[]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawReaskRule {
    /// Rule name.
    pub name: String,
    /// Free text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Similarity threshold (default 0.8).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threshold: Option<f64>,
    /// Prior turns that must all be similar (default 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lookback_turns: Option<u32>,
}

/// `preferences[]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPreferenceRule {
    /// Rule name.
    pub name: String,
    /// Free text (also a prototype).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Example texts.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub examples: Vec<String>,
    /// Minimum score.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threshold: Option<f64>,
}

/// `language[]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLanguageRule {
    /// ISO 639-1 code, lowercase.
    pub name: String,
    /// Free text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Minimum detection confidence.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threshold: Option<f64>,
}

/// `context[]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawContextRule {
    /// Rule name.
    pub name: String,
    /// Lower bound, e.g. `"1K"`.
    pub min_tokens: NumOrStr,
    /// Upper bound, e.g. `"256K"`.
    pub max_tokens: NumOrStr,
    /// Free text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

/// `structure[]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawStructureRule {
    /// Rule name.
    pub name: String,
    /// Free text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// What is measured.
    pub feature: RawStructureFeature,
    /// When the rule matches; absent means value > 0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub predicate: Option<RawPredicate>,
}

/// `structure[].feature`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawStructureFeature {
    /// `exists`, `count`, `density` or `sequence`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Where occurrences come from.
    pub source: RawStructureSource,
}

/// `structure[].feature.source`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawStructureSource {
    /// `regex`, `keyword_set`, `sequence` or `text_bytes`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Regex for `regex`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pattern: Option<String>,
    /// Keywords for `keyword_set`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub keywords: Vec<String>,
    /// Case-sensitive matching.
    #[serde(default, skip_serializing_if = "is_false")]
    pub case_sensitive: bool,
    /// Marker sequences for `sequence`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sequences: Vec<Vec<String>>,
}

/// `complexity[]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawComplexityRule {
    /// Rule name; leaves reference `name:easy|medium|hard`.
    pub name: String,
    /// Margin threshold.
    #[serde(default)]
    pub threshold: f64,
    /// Hard prototypes.
    #[serde(default)]
    pub hard: RawComplexityBank,
    /// Easy prototypes.
    #[serde(default)]
    pub easy: RawComplexityBank,
    /// Free text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Optional boolean filter over other signals.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub composer: Option<RawRuleNode>,
}

/// `complexity[].hard` / `.easy`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawComplexityBank {
    /// Text prototypes.
    #[serde(default)]
    pub candidates: Vec<String>,
    /// Image prototypes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub image_candidates: Vec<String>,
}

/// `role_bindings[]` (authz).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRoleBinding {
    /// Binding name.
    pub name: String,
    /// Free text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Role emitted when a subject matches.
    #[serde(default)]
    pub role: String,
    /// Users and groups.
    #[serde(default)]
    pub subjects: Vec<RawSubject>,
}

/// `role_bindings[].subjects[]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSubject {
    /// `User` or `Group`.
    pub kind: String,
    /// User id or group name.
    pub name: String,
}

/// `jailbreak[]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawJailbreakRule {
    /// Rule name.
    pub name: String,
    /// `classifier` (default) or `contrastive`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    /// Risk threshold.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threshold: Option<f64>,
    /// Also scan non-user messages.
    #[serde(default, skip_serializing_if = "is_false")]
    pub include_history: bool,
    /// Free text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Contrastive: jailbreak examples.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub jailbreak_patterns: Vec<String>,
    /// Contrastive: benign examples.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub benign_patterns: Vec<String>,
}

/// `pii[]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPiiRule {
    /// Rule name.
    pub name: String,
    /// Entity confidence threshold.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threshold: Option<f64>,
    /// Entity types that do not trigger the rule.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pii_types_allowed: Vec<String>,
    /// Also scan non-user messages.
    #[serde(default, skip_serializing_if = "is_false")]
    pub include_history: bool,
    /// Free text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

/// `kb[]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawKbRule {
    /// Rule name.
    pub name: String,
    /// KB name from `global.model_catalog.kbs`.
    pub kb: String,
    /// Label or group target.
    pub target: RawKbTarget,
    /// `threshold` (default) or `best`.
    #[serde(default, rename = "match", skip_serializing_if = "Option::is_none")]
    pub match_mode: Option<String>,
    /// Free text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

/// `kb[].target`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawKbTarget {
    /// `label` or `group`.
    pub kind: String,
    /// Label or group name.
    pub value: String,
}

/// `conversation[]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConversationRule {
    /// Rule name.
    pub name: String,
    /// Free text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// What is counted.
    pub feature: RawConversationFeature,
    /// Required for matching with `count`; forbidden with `exists`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub predicate: Option<RawPredicate>,
}

/// `conversation[].feature`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConversationFeature {
    /// `count` or `exists`.
    #[serde(rename = "type")]
    pub kind: String,
    /// What is counted.
    pub source: RawConversationSource,
}

/// `conversation[].feature.source`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConversationSource {
    /// `message`, `tool_definition`, `assistant_tool_call`, `assistant_tool_cycle`,
    /// `active_tool_loop` or `image_content`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Message role filter for `message`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
}

/// `events[]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawEventRule {
    /// Rule name.
    pub name: String,
    /// Free text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Event type words.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub event_types: Vec<String>,
    /// `critical`, `high`, `medium`, `low`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub severities: Vec<String>,
    /// Action codes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub action_codes: Vec<String>,
    /// Require a temporal marker.
    #[serde(default, skip_serializing_if = "is_false")]
    pub temporal: bool,
}

/// `metadata[]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMetadataRule {
    /// Rule name.
    pub name: String,
    /// Free text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Metadata key.
    pub key: String,
    /// Exactly one comparator.
    pub predicate: RawMetadataPredicate,
}

/// `metadata[].predicate`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMetadataPredicate {
    /// Value equals.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub equals: Option<String>,
    /// Value is one of.
    #[serde(default, rename = "in", skip_serializing_if = "Option::is_none")]
    pub one_of: Option<Vec<String>>,
    /// Key presence.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exists: Option<bool>,
}

/// `classifiers[]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawClassifierRule {
    /// Rule name.
    pub name: String,
    /// Free text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// `local` or `llm`.
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// External model name (llm).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// Local model directory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_path: Option<String>,
    /// Labels the classifier emits.
    #[serde(default)]
    pub labels: Vec<String>,
    /// Prompt instructions (llm).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instructions: Option<String>,
    /// Run on CPU.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub use_cpu: Option<bool>,
}
