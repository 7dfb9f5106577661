//! Validated signal rules, one typed struct per family (contract §3).
//!
//! Patterns are kept as validated source text (they compiled at load time); the engine
//! compiles them once when it is built, never per request.

use super::rules::Condition;
use super::Predicate;

/// The 20 signal families.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[expect(
    missing_docs,
    reason = "variants named by the contract; see SignalFamily::ALL"
)]
pub enum SignalFamily {
    Keyword,
    Embedding,
    Domain,
    FactCheck,
    UserFeedback,
    Reask,
    Preference,
    Language,
    Context,
    Structure,
    Complexity,
    Modality,
    Authz,
    Jailbreak,
    Pii,
    Kb,
    Conversation,
    Event,
    Metadata,
    Classifier,
}

impl SignalFamily {
    /// Every family, in the contract's order.
    pub const ALL: [SignalFamily; 20] = [
        Self::Keyword,
        Self::Embedding,
        Self::Domain,
        Self::FactCheck,
        Self::UserFeedback,
        Self::Reask,
        Self::Preference,
        Self::Language,
        Self::Context,
        Self::Structure,
        Self::Complexity,
        Self::Modality,
        Self::Authz,
        Self::Jailbreak,
        Self::Pii,
        Self::Kb,
        Self::Conversation,
        Self::Event,
        Self::Metadata,
        Self::Classifier,
    ];

    /// The YAML list name under `routing.signals`.
    pub fn yaml_key(self) -> &'static str {
        match self {
            Self::Keyword => "keywords",
            Self::Embedding => "embeddings",
            Self::Domain => "domains",
            Self::FactCheck => "fact_check",
            Self::UserFeedback => "user_feedbacks",
            Self::Reask => "reasks",
            Self::Preference => "preferences",
            Self::Language => "language",
            Self::Context => "context",
            Self::Structure => "structure",
            Self::Complexity => "complexity",
            Self::Modality => "modality",
            Self::Authz => "role_bindings",
            Self::Jailbreak => "jailbreak",
            Self::Pii => "pii",
            Self::Kb => "kb",
            Self::Conversation => "conversation",
            Self::Event => "events",
            Self::Metadata => "metadata",
            Self::Classifier => "classifiers",
        }
    }

    /// The leaf `type:` in rule trees and the prefix of `type:name` confidence keys.
    pub fn leaf_type(self) -> &'static str {
        match self {
            Self::Keyword => "keyword",
            Self::Embedding => "embedding",
            Self::Domain => "domain",
            Self::FactCheck => "fact_check",
            Self::UserFeedback => "user_feedback",
            Self::Reask => "reask",
            Self::Preference => "preference",
            Self::Language => "language",
            Self::Context => "context",
            Self::Structure => "structure",
            Self::Complexity => "complexity",
            Self::Modality => "modality",
            Self::Authz => "authz",
            Self::Jailbreak => "jailbreak",
            Self::Pii => "pii",
            Self::Kb => "kb",
            Self::Conversation => "conversation",
            Self::Event => "event",
            Self::Metadata => "metadata",
            Self::Classifier => "classifier",
        }
    }

    /// The key of this family in the eval API's `matched_signals` (contract §11.1).
    pub fn eval_key(self) -> &'static str {
        match self {
            Self::Keyword => "keywords",
            Self::Embedding => "embeddings",
            Self::Domain => "domains",
            Self::UserFeedback => "user_feedback",
            Self::Preference => "preferences",
            other => other.leaf_type(),
        }
    }

    /// Parses a leaf type (trimmed, case-insensitive).
    pub fn from_leaf_type(s: &str) -> Option<Self> {
        let s = s.trim().to_ascii_lowercase();
        Self::ALL.into_iter().find(|f| f.leaf_type() == s)
    }

    /// Parses a YAML list name.
    pub fn from_yaml_key(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|f| f.yaml_key() == s)
    }
}

/// A resolved reference to one rule of one family inside a recipe.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SignalRef {
    /// The family.
    pub family: SignalFamily,
    /// Index into that family's rule list.
    pub index: u32,
}

/// All rules of one recipe, by family.
#[derive(Debug, Clone, PartialEq, Default)]
#[expect(missing_docs, reason = "one list per family")]
pub struct Signals {
    pub keywords: Vec<KeywordRule>,
    pub embeddings: Vec<EmbeddingRule>,
    pub domains: Vec<DomainRule>,
    pub fact_check: Vec<NamedRule>,
    pub user_feedbacks: Vec<NamedRule>,
    pub reasks: Vec<ReaskRule>,
    pub preferences: Vec<PreferenceRule>,
    pub language: Vec<LanguageRule>,
    pub context: Vec<ContextRule>,
    pub structure: Vec<StructureRule>,
    pub complexity: Vec<ComplexityRule>,
    pub modality: Vec<NamedRule>,
    pub role_bindings: Vec<RoleBinding>,
    /// Distinct roles of `role_bindings`, in first-seen order; authz leaves index this.
    pub roles: Vec<String>,
    pub jailbreak: Vec<JailbreakRule>,
    pub pii: Vec<PiiRule>,
    pub kb: Vec<KbRule>,
    pub conversation: Vec<ConversationRule>,
    pub events: Vec<EventRule>,
    pub metadata: Vec<MetadataRule>,
    pub classifiers: Vec<ClassifierRule>,
}

/// Runs `$body` with `$v` bound to the rule list of `$family` (each arm sees its own rule
/// type; every rule type has a `name`).
macro_rules! with_rules {
    ($signals:expr, $family:expr, |$v:ident| $body:expr) => {{
        let s = $signals;
        match $family {
            SignalFamily::Keyword => {
                let $v = &s.keywords;
                $body
            }
            SignalFamily::Embedding => {
                let $v = &s.embeddings;
                $body
            }
            SignalFamily::Domain => {
                let $v = &s.domains;
                $body
            }
            SignalFamily::FactCheck => {
                let $v = &s.fact_check;
                $body
            }
            SignalFamily::UserFeedback => {
                let $v = &s.user_feedbacks;
                $body
            }
            SignalFamily::Reask => {
                let $v = &s.reasks;
                $body
            }
            SignalFamily::Preference => {
                let $v = &s.preferences;
                $body
            }
            SignalFamily::Language => {
                let $v = &s.language;
                $body
            }
            SignalFamily::Context => {
                let $v = &s.context;
                $body
            }
            SignalFamily::Structure => {
                let $v = &s.structure;
                $body
            }
            SignalFamily::Complexity => {
                let $v = &s.complexity;
                $body
            }
            SignalFamily::Modality => {
                let $v = &s.modality;
                $body
            }
            SignalFamily::Authz => {
                let $v = &s.role_bindings;
                $body
            }
            SignalFamily::Jailbreak => {
                let $v = &s.jailbreak;
                $body
            }
            SignalFamily::Pii => {
                let $v = &s.pii;
                $body
            }
            SignalFamily::Kb => {
                let $v = &s.kb;
                $body
            }
            SignalFamily::Conversation => {
                let $v = &s.conversation;
                $body
            }
            SignalFamily::Event => {
                let $v = &s.events;
                $body
            }
            SignalFamily::Metadata => {
                let $v = &s.metadata;
                $body
            }
            SignalFamily::Classifier => {
                let $v = &s.classifiers;
                $body
            }
        }
    }};
}

impl Signals {
    /// Rule names of one family, in declaration order.
    pub fn names(&self, family: SignalFamily) -> Vec<&str> {
        with_rules!(self, family, |v| v
            .iter()
            .map(|r| r.name.as_str())
            .collect())
    }

    /// Number of rules of one family (no allocation: evaluated per request).
    pub fn count(&self, family: SignalFamily) -> usize {
        with_rules!(self, family, |v| v.len())
    }

    /// The name of rule `index` of one family (no allocation: read per request).
    pub fn name_at(&self, family: SignalFamily, index: usize) -> Option<&str> {
        with_rules!(self, family, |v| v.get(index).map(|r| r.name.as_str()))
    }

    /// The name of a referenced rule.
    pub fn name_of(&self, r: SignalRef) -> &str {
        self.name_at(r.family, r.index as usize).unwrap_or("")
    }
}

/// Keyword combination.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeywordOperator {
    /// Every keyword must match.
    And,
    /// Any keyword matches.
    Or,
    /// No keyword matches.
    Nor,
}

/// How keywords are matched.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum KeywordMethod {
    /// Quoted literal with `\b` boundaries unless the keyword holds Han characters.
    Literal,
    /// Keywords are regexes.
    Regex,
    /// BM25 relevance above a threshold.
    Bm25 {
        /// Score threshold.
        threshold: f64,
    },
    /// Character n-gram similarity above a threshold.
    Ngram {
        /// Similarity threshold.
        threshold: f64,
        /// N.
        arity: u32,
    },
}

/// `keywords[]`.
#[derive(Debug, Clone, PartialEq)]
#[expect(missing_docs, reason = "fields mirror the contract")]
pub struct KeywordRule {
    pub name: String,
    pub operator: KeywordOperator,
    pub keywords: Vec<String>,
    pub case_sensitive: bool,
    pub method: KeywordMethod,
    /// Maximum edit distance when fuzzy matching is on.
    pub fuzzy_threshold: Option<u32>,
}

/// Prototype-score aggregation of an embedding rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Aggregation {
    /// `0.75·best + 0.25·mean(top 2)` (the contract's `max`, not a pure max).
    Max,
    /// Mean over all prototypes.
    Mean,
    /// Same as max.
    Any,
}

/// `embeddings[]`.
#[derive(Debug, Clone, PartialEq)]
#[expect(missing_docs, reason = "fields mirror the contract")]
pub struct EmbeddingRule {
    pub name: String,
    pub threshold: f64,
    pub candidates: Vec<String>,
    pub aggregation: Aggregation,
    /// True for `query_modality: image`.
    pub image_query: bool,
}

/// `domains[]`.
#[derive(Debug, Clone, PartialEq)]
#[expect(missing_docs, reason = "fields mirror the contract")]
pub struct DomainRule {
    pub name: String,
    pub description: String,
    pub mmlu_categories: Vec<String>,
    pub model_scores: Vec<(String, f64, bool)>,
}

/// A rule that is only a name (fact_check, user_feedbacks, modality).
#[derive(Debug, Clone, PartialEq)]
#[expect(missing_docs, reason = "fields mirror the contract")]
pub struct NamedRule {
    pub name: String,
    pub description: String,
}

/// `reasks[]`.
#[derive(Debug, Clone, PartialEq)]
#[expect(missing_docs, reason = "fields mirror the contract")]
pub struct ReaskRule {
    pub name: String,
    pub threshold: f64,
    pub lookback_turns: u32,
}

/// `preferences[]`.
#[derive(Debug, Clone, PartialEq)]
#[expect(missing_docs, reason = "fields mirror the contract")]
pub struct PreferenceRule {
    pub name: String,
    pub description: String,
    pub examples: Vec<String>,
    pub threshold: f64,
}

/// `language[]`.
#[derive(Debug, Clone, PartialEq)]
#[expect(missing_docs, reason = "fields mirror the contract")]
pub struct LanguageRule {
    /// ISO 639-1 code.
    pub name: String,
    pub threshold: f64,
}

/// `context[]`: inclusive token range.
#[derive(Debug, Clone, PartialEq)]
#[expect(missing_docs, reason = "fields mirror the contract")]
pub struct ContextRule {
    pub name: String,
    pub min_tokens: u64,
    pub max_tokens: u64,
}

/// What a structure rule measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[expect(missing_docs, reason = "variants named by the contract")]
pub enum StructureFeature {
    Exists,
    Count,
    Density,
    Sequence,
}

/// Where structure occurrences come from.
#[derive(Debug, Clone, PartialEq)]
pub enum StructureSource {
    /// Non-overlapping regex matches (`(?i)` unless case-sensitive).
    Regex {
        /// The pattern as written.
        pattern: String,
        /// Case-sensitive.
        case_sensitive: bool,
    },
    /// Occurrences of each keyword.
    KeywordSet {
        /// Keywords.
        keywords: Vec<String>,
        /// Case-sensitive.
        case_sensitive: bool,
    },
    /// Ordered marker sequences.
    Sequence {
        /// Each sequence has at least two markers.
        sequences: Vec<Vec<String>>,
        /// Case-sensitive.
        case_sensitive: bool,
    },
    /// Byte length of the text.
    TextBytes,
}

/// `structure[]`.
#[derive(Debug, Clone, PartialEq)]
#[expect(missing_docs, reason = "fields mirror the contract")]
pub struct StructureRule {
    pub name: String,
    pub feature: StructureFeature,
    pub source: StructureSource,
    pub predicate: Option<Predicate>,
}

/// Complexity level emitted as `rule:level`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[expect(missing_docs, reason = "the three levels")]
pub enum ComplexityLevel {
    Easy,
    Medium,
    Hard,
}

impl ComplexityLevel {
    /// `easy`, `medium` or `hard`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Easy => "easy",
            Self::Medium => "medium",
            Self::Hard => "hard",
        }
    }

    /// Parses `easy|medium|hard`.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "easy" => Some(Self::Easy),
            "medium" => Some(Self::Medium),
            "hard" => Some(Self::Hard),
            _ => None,
        }
    }
}

/// `complexity[]`.
#[derive(Debug, Clone, PartialEq)]
#[expect(missing_docs, reason = "fields mirror the contract")]
pub struct ComplexityRule {
    pub name: String,
    pub threshold: f64,
    pub hard: Vec<String>,
    pub hard_images: Vec<String>,
    pub easy: Vec<String>,
    pub easy_images: Vec<String>,
    /// When present and false, the rule's output is dropped.
    pub composer: Option<Condition>,
}

/// `role_bindings[]`.
#[derive(Debug, Clone, PartialEq)]
#[expect(missing_docs, reason = "fields mirror the contract")]
pub struct RoleBinding {
    pub name: String,
    pub role: String,
    pub users: Vec<String>,
    pub groups: Vec<String>,
}

/// Jailbreak detection method.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JailbreakMethod {
    /// Prompt-guard sequence classifier.
    Classifier,
    /// Embedding contrast against jailbreak and benign patterns.
    Contrastive,
}

/// `jailbreak[]`.
#[derive(Debug, Clone, PartialEq)]
#[expect(missing_docs, reason = "fields mirror the contract")]
pub struct JailbreakRule {
    pub name: String,
    pub method: JailbreakMethod,
    pub threshold: f64,
    pub include_history: bool,
    pub jailbreak_patterns: Vec<String>,
    pub benign_patterns: Vec<String>,
}

/// `pii[]`.
#[derive(Debug, Clone, PartialEq)]
#[expect(missing_docs, reason = "fields mirror the contract")]
pub struct PiiRule {
    pub name: String,
    pub threshold: f64,
    /// Uppercased entity types that do not trigger the rule.
    pub pii_types_allowed: Vec<String>,
    pub include_history: bool,
}

/// Target of a KB rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KbTarget {
    /// A label of the KB.
    Label(String),
    /// A group of the KB.
    Group(String),
}

/// `kb[]`.
#[derive(Debug, Clone, PartialEq)]
#[expect(missing_docs, reason = "fields mirror the contract")]
pub struct KbRule {
    pub name: String,
    /// Index into `global.model_catalog.kbs`.
    pub kb: u32,
    pub target: KbTarget,
    /// `match: best` (else threshold).
    pub best: bool,
}

/// What a conversation rule counts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConversationSource {
    /// Messages, optionally of one role (`user`, `assistant`, `system`, `developer`, `tool`,
    /// `non_user`).
    Message(Option<String>),
    /// Tool definitions in the request.
    ToolDefinition,
    /// Assistant tool calls.
    AssistantToolCall,
    /// Tool results.
    AssistantToolCycle,
    /// 1 when a tool loop is in progress.
    ActiveToolLoop,
    /// Image content parts.
    ImageContent,
}

/// `conversation[]`.
#[derive(Debug, Clone, PartialEq)]
#[expect(missing_docs, reason = "fields mirror the contract")]
pub struct ConversationRule {
    pub name: String,
    /// True for `exists`, false for `count`.
    pub exists: bool,
    pub source: ConversationSource,
    pub predicate: Option<Predicate>,
}

/// `events[]`.
#[derive(Debug, Clone, PartialEq)]
#[expect(missing_docs, reason = "fields mirror the contract")]
pub struct EventRule {
    pub name: String,
    pub event_types: Vec<String>,
    pub severities: Vec<String>,
    pub action_codes: Vec<String>,
    pub temporal: bool,
}

/// `metadata[].predicate`: exactly one comparator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MetadataPredicate {
    /// Present and equal.
    Equals(String),
    /// Present and one of.
    In(Vec<String>),
    /// Presence equals.
    Exists(bool),
}

/// `metadata[]`.
#[derive(Debug, Clone, PartialEq)]
#[expect(missing_docs, reason = "fields mirror the contract")]
pub struct MetadataRule {
    pub name: String,
    pub key: String,
    pub predicate: MetadataPredicate,
}

/// `classifiers[]`.
#[derive(Debug, Clone, PartialEq)]
#[expect(missing_docs, reason = "fields mirror the contract")]
pub struct ClassifierRule {
    pub name: String,
    /// True for `type: llm`, false for local.
    pub llm: bool,
    pub model: Option<String>,
    pub model_path: Option<String>,
    pub labels: Vec<String>,
    pub instructions: Option<String>,
}
