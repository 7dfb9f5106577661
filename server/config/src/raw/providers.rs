//! Raw `providers` section: defaults, logical models and their backends.

use indexmap::IndexMap;
use serde::{Deserialize, Serialize};

use super::StringOrList;

/// `providers.defaults`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawProviderDefaults {
    /// Model used when no decision matches.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_model: Option<String>,
    /// Reasoning families by name.
    #[serde(default, skip_serializing_if = "IndexMap::is_empty")]
    pub reasoning_families: IndexMap<String, RawReasoningFamily>,
    /// Fallback effort when a modelRef sets none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_reasoning_effort: Option<String>,
}

/// `providers.defaults.reasoning_families.<name>`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawReasoningFamily {
    /// `chat_template_kwargs`, `reasoning_effort` or `top_level_reasoning_effort`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The parameter name, e.g. `enable_thinking`.
    #[serde(default)]
    pub parameter: String,
}

/// `providers.models[]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawProviderModel {
    /// Must equal a `routing.modelCards[].name`.
    pub name: String,
    /// Key of `providers.defaults.reasoning_families`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reasoning_family: Option<String>,
    /// The model id the backend expects.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider_model_id: Option<String>,
    /// Explicit model id per backend type.
    #[serde(default, skip_serializing_if = "IndexMap::is_empty")]
    pub external_model_ids: IndexMap<String, String>,
    /// `openai` or `anthropic`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_format: Option<String>,
    /// Prices per million tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pricing: Option<RawPricing>,
    /// Data-plane reliability knobs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reliability: Option<RawReliability>,
    /// Concrete backends.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub backend_refs: Vec<RawBackendRef>,
}

/// `pricing`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPricing {
    /// Currency code, e.g. `USD`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub currency: Option<String>,
    /// Price per 1M prompt tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt_per_1m: Option<f64>,
    /// Price per 1M completion tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completion_per_1m: Option<f64>,
    /// Price per 1M cached prompt tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cached_input_per_1m: Option<f64>,
    /// Price per 1M cache-write tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_write_per_1m: Option<f64>,
}

/// `reliability`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawReliability {
    /// `least_request`, `round_robin` or `random`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lb_policy: Option<String>,
    /// Retries per request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_count: Option<u32>,
    /// Retry conditions (`5xx`, `reset`, `connect-failure`, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_on: Option<StringOrList>,
    /// Consecutive 5xx responses before ejection.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consecutive_5xx: Option<u32>,
    /// Base ejection time (duration string).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_ejection_time: Option<String>,
    /// Maximum share of endpoints ejected at once, percent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_ejection_percent: Option<u32>,
    /// Active health-check path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_check_path: Option<String>,
    /// Active health-check interval (duration string).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_check_interval: Option<String>,
    /// Active health-check timeout (duration string).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_check_timeout: Option<String>,
}

/// `backend_refs[]`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawBackendRef {
    /// Endpoint suffix (default `primary`, then `backend-N`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// `host[:port]` or a URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    /// `http` (default) or `https`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<String>,
    /// Load-balancing weight (default 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weight: Option<u32>,
    /// Backend type (default: `provider` when a provider is set, else `vllm`).
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// Base URL of a hosted API.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_url: Option<String>,
    /// Hosted provider name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider: Option<String>,
    /// Header carrying the key (default `Authorization`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth_header: Option<String>,
    /// Prefix before the key (default `Bearer `).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth_prefix: Option<String>,
    /// Extra static headers.
    #[serde(default, skip_serializing_if = "IndexMap::is_empty")]
    pub extra_headers: IndexMap<String, String>,
    /// API version (Azure-style providers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_version: Option<String>,
    /// Path of the chat completions endpoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chat_path: Option<String>,
    /// Literal API key (a secret: redacted by `config show`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_key: Option<String>,
    /// Name of an environment variable holding the key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_key_env: Option<String>,
}
