//! Typed view of `global` after the overlay on built-in defaults (contract §1.7, §6.7).
//!
//! Only the parts the router acts on are typed; the full merged tree stays available as
//! `RouterConfig::global_tree` for `config show`. Unknown keys were already reported against
//! the defaults tree, so these structs ignore extra fields, except `learning`, which upstream
//! checks strictly.

use indexmap::IndexMap;
use serde::Deserialize;

/// Typed `global`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[expect(missing_docs, reason = "sections named by the contract")]
pub struct GlobalConfig {
    pub router: RouterSettings,
    pub services: Services,
    pub stores: Stores,
    pub integrations: Integrations,
    pub model_catalog: ModelCatalog,
}

/// `global.router`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[expect(missing_docs, reason = "fields mirror the contract")]
pub struct RouterSettings {
    pub strategy: String,
    pub auto_model_name: String,
    /// `None` when absent (defaults apply); `Some([])` disables auto names.
    #[serde(default)]
    pub auto_model_names: Option<Vec<String>>,
    pub include_config_models_in_list: bool,
    pub clear_route_cache: bool,
    pub learning: Learning,
}

/// `global.router.learning` (strict).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
#[expect(missing_docs, reason = "fields mirror the contract")]
pub struct Learning {
    pub enabled: bool,
    pub adaptation: LearningAdaptation,
    pub protection: LearningProtection,
    pub state_store: LearningStateStore,
}

/// `learning.adaptation`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
#[expect(missing_docs, reason = "fields mirror the contract")]
pub struct LearningAdaptation {
    pub enabled: bool,
    pub candidate_set: String,
    pub strategy: String,
}

/// `learning.protection`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
#[expect(missing_docs, reason = "fields mirror the contract")]
pub struct LearningProtection {
    pub enabled: bool,
    pub scope: String,
    pub identity: LearningIdentity,
    pub tuning: LearningTuning,
}

/// `learning.protection.identity`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LearningIdentity {
    /// Header names by identity kind.
    pub headers: LearningHeaders,
}

/// `learning.protection.identity.headers`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
#[expect(missing_docs, reason = "fields mirror the contract")]
pub struct LearningHeaders {
    pub session: String,
    pub conversation: String,
}

/// `learning.protection.tuning`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
#[expect(missing_docs, reason = "fields mirror the contract")]
pub struct LearningTuning {
    pub idle_timeout_seconds: u64,
    pub min_turns_before_switch: u32,
    pub switch_margin: f64,
    pub stability_weight: f64,
}

/// `learning.state_store`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
#[expect(missing_docs, reason = "fields mirror the contract")]
pub struct LearningStateStore {
    pub backend: String,
    pub ttl_seconds: u64,
    pub timeout_ms: u64,
    pub redis: serde_norway::Value,
}

/// `global.services`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[expect(missing_docs, reason = "fields mirror the contract")]
pub struct Services {
    pub management_api: ManagementApi,
    pub router_replay: RouterReplayService,
    pub authz: Authz,
}

/// `global.services.management_api`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[expect(missing_docs, reason = "fields mirror the contract")]
pub struct ManagementApi {
    pub bind_address: String,
    pub port: u16,
    pub remote_exposure: bool,
    pub auth: ManagementAuth,
}

/// `management_api.auth`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[expect(missing_docs, reason = "fields mirror the contract")]
pub struct ManagementAuth {
    /// `disabled` or `bearer`.
    pub mode: String,
    pub tokens: Vec<ManagementToken>,
    pub roles: IndexMap<String, Vec<String>>,
}

/// `management_api.auth.tokens[]`: a token read from an environment variable.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[expect(missing_docs, reason = "fields mirror the contract")]
pub struct ManagementToken {
    pub env: String,
    #[serde(default)]
    pub role: Option<String>,
}

/// `global.services.router_replay`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[expect(missing_docs, reason = "fields mirror the contract")]
pub struct RouterReplayService {
    pub enabled: bool,
    pub store_backend: String,
    pub ttl_seconds: u64,
    pub async_writes: bool,
}

/// `global.services.authz`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[expect(missing_docs, reason = "fields mirror the contract")]
pub struct Authz {
    pub fail_open: bool,
    pub identity: AuthzIdentity,
}

/// `authz.identity`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[expect(missing_docs, reason = "fields mirror the contract")]
pub struct AuthzIdentity {
    pub user_id_header: String,
    pub user_groups_header: String,
}

/// `global.stores`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[expect(missing_docs, reason = "fields mirror the contract")]
pub struct Stores {
    pub response_cache: ResponseCacheStore,
}

/// `global.stores.response_cache`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[expect(missing_docs, reason = "fields mirror the contract")]
pub struct ResponseCacheStore {
    pub enabled: bool,
    pub backend_type: String,
    pub max_entries: u64,
    pub ttl_seconds: u64,
    pub eviction_policy: String,
    pub similarity_threshold: f64,
}

/// `global.integrations`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[expect(missing_docs, reason = "fields mirror the contract")]
pub struct Integrations {
    pub tools: ToolsIntegration,
    pub looper: Looper,
}

/// `global.integrations.tools`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[expect(missing_docs, reason = "fields mirror the contract")]
pub struct ToolsIntegration {
    pub enabled: bool,
    pub top_k: u32,
    pub tools_db_path: String,
    pub fallback_to_empty: bool,
    #[serde(default)]
    pub similarity_threshold: Option<f64>,
}

/// `global.integrations.looper`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[expect(missing_docs, reason = "fields mirror the contract")]
pub struct Looper {
    pub endpoint: String,
    pub timeout_seconds: u64,
    pub remom: LooperNames,
    pub fusion: LooperNames,
    pub flow: LooperNames,
}

/// Looper virtual model names.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[expect(missing_docs, reason = "fields mirror the contract")]
pub struct LooperNames {
    pub model_names: Vec<String>,
}

/// `global.model_catalog`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[expect(missing_docs, reason = "fields mirror the contract")]
pub struct ModelCatalog {
    pub embeddings: Embeddings,
    pub system: IndexMap<String, String>,
    pub modules: Modules,
    pub kbs: Vec<KnowledgeBase>,
    pub external: Vec<serde_norway::Value>,
}

/// `model_catalog.embeddings`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[expect(missing_docs, reason = "fields mirror the contract")]
pub struct Embeddings {
    pub semantic: SemanticEmbeddings,
}

/// `model_catalog.embeddings.semantic`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[expect(missing_docs, reason = "fields mirror the contract")]
pub struct SemanticEmbeddings {
    pub mmbert_model_path: String,
    pub bert_model_path: String,
    pub use_cpu: bool,
    pub embedding_config: EmbeddingConfig,
}

/// `semantic.embedding_config`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[expect(missing_docs, reason = "fields mirror the contract")]
pub struct EmbeddingConfig {
    pub model_type: String,
    pub target_dimension: u32,
    pub target_layer: u32,
    pub top_k: u32,
    pub min_score_threshold: f64,
    pub enable_soft_matching: bool,
    pub backend: String,
    pub prototype_scoring: PrototypeScoring,
}

/// Prototype-bank scoring options (contract §3.2).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[expect(missing_docs, reason = "fields mirror the contract")]
pub struct PrototypeScoring {
    pub enabled: bool,
    pub cluster_similarity_threshold: f64,
    pub max_prototypes: u32,
    pub best_weight: f64,
    pub top_m: u32,
    pub margin_threshold: f64,
}

/// `model_catalog.modules` (typed parts).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[expect(missing_docs, reason = "fields mirror the contract")]
pub struct Modules {
    pub prompt_guard: PromptGuard,
    pub classifier: ClassifierModules,
    pub feedback_detector: FeedbackDetector,
    pub hallucination_mitigation: HallucinationMitigation,
    pub prompt_compression: PromptCompression,
}

/// `modules.prompt_guard`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[expect(missing_docs, reason = "fields mirror the contract")]
pub struct PromptGuard {
    pub enabled: bool,
    pub model_ref: String,
    pub threshold: f64,
    pub positive_labels: Vec<String>,
    /// `allow` or `block`.
    pub on_error: String,
}

/// `modules.classifier`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[expect(missing_docs, reason = "fields mirror the contract")]
pub struct ClassifierModules {
    pub domain: DomainModule,
    pub pii: PiiModule,
    pub preference: PreferenceModule,
}

/// `modules.classifier.domain`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[expect(missing_docs, reason = "fields mirror the contract")]
pub struct DomainModule {
    pub model_ref: String,
    pub threshold: f64,
    pub fallback_category: String,
}

/// `modules.classifier.pii`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[expect(missing_docs, reason = "fields mirror the contract")]
pub struct PiiModule {
    pub model_ref: String,
    pub threshold: f64,
}

/// `modules.classifier.preference`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[expect(missing_docs, reason = "fields mirror the contract")]
pub struct PreferenceModule {
    pub use_contrastive: bool,
}

/// `modules.feedback_detector`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[expect(missing_docs, reason = "fields mirror the contract")]
pub struct FeedbackDetector {
    pub enabled: bool,
    pub model_ref: String,
    pub threshold: f64,
}

/// `modules.hallucination_mitigation` (the fact-check threshold).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[expect(missing_docs, reason = "fields mirror the contract")]
pub struct HallucinationMitigation {
    pub enabled: bool,
    pub fact_check: Threshold,
}

/// A `{threshold}` block.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[expect(missing_docs, reason = "fields mirror the contract")]
pub struct Threshold {
    pub threshold: f64,
}

/// `modules.prompt_compression`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[expect(missing_docs, reason = "fields mirror the contract")]
pub struct PromptCompression {
    pub enabled: bool,
    pub skip_signals: Vec<String>,
}

/// `model_catalog.kbs[]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
#[expect(missing_docs, reason = "fields mirror the contract")]
pub struct KnowledgeBase {
    pub name: String,
    pub source: KbSource,
    #[serde(default = "default_kb_threshold")]
    pub threshold: f64,
    #[serde(default)]
    pub label_thresholds: IndexMap<String, f64>,
    #[serde(default)]
    pub groups: IndexMap<String, Vec<String>>,
    #[serde(default)]
    pub metrics: Vec<KbMetric>,
    #[serde(default)]
    pub description: Option<String>,
}

fn default_kb_threshold() -> f64 {
    0.5
}

/// `kbs[].source`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KbSource {
    /// Path of a `labels.json` manifest, relative to the config's directory.
    pub path: String,
}

/// `kbs[].metrics[]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
#[expect(missing_docs, reason = "fields mirror the contract")]
pub struct KbMetric {
    pub name: String,
    /// `group_margin`.
    #[serde(rename = "type")]
    pub kind: String,
    pub positive_group: String,
    pub negative_group: String,
}
