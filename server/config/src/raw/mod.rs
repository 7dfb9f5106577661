//! Raw serde types that mirror the v0.3 YAML one-to-one.
//!
//! Every struct denies unknown fields; the loader turns an unknown field into a warning (or an
//! error where upstream is strict) and retries, so leniency is a loader policy, not a type
//! property. Nothing here resolves names or checks cross-references: that is `build`'s job.
//! These types also serialise the *effective* config (`vllm-sr config show`).

mod providers;
mod routing;
mod signals;

pub use providers::*;
pub use routing::*;
pub use signals::*;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// `listeners[]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawListener {
    /// Listener name, e.g. `http-8899`.
    pub name: String,
    /// Bind address, e.g. `0.0.0.0`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    /// TCP port.
    pub port: u16,
    /// Request timeout as a duration string (`1200s`, `5m`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<String>,
}

/// `entrypoints[]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawEntrypoint {
    /// Virtual model names that select the recipe.
    #[serde(default)]
    pub model_names: Vec<String>,
    /// Recipe name.
    pub recipe: String,
}

/// A number or a string such as `"8K"`, kept as text (context `min_tokens`, durations).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NumOrStr(pub String);

impl<'de> Deserialize<'de> for NumOrStr {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Either {
            I(i64),
            F(f64),
            S(String),
        }
        match Either::deserialize(d)
            .map_err(|_| serde::de::Error::custom("expected a number or a string such as \"8K\""))?
        {
            Either::I(i) => Ok(Self(i.to_string())),
            Either::F(f) => Ok(Self(f.to_string())),
            Either::S(s) => Ok(Self(s)),
        }
    }
}

impl Serialize for NumOrStr {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

/// A string or a list of strings (`retry_on: "5xx,reset"` or `[5xx, reset]`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum StringOrList {
    /// One string, possibly comma separated.
    One(String),
    /// A list.
    Many(Vec<String>),
}

impl StringOrList {
    /// The items, splitting a single string on commas.
    pub fn items(&self) -> Vec<String> {
        match self {
            Self::One(s) => s
                .split(',')
                .map(|p| p.trim().to_string())
                .filter(|p| !p.is_empty())
                .collect(),
            Self::Many(v) => v.clone(),
        }
    }
}

/// `{gt, gte, lt, lte}` numeric predicate used by structure, conversation and rule leaves.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPredicate {
    /// Strictly greater than.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gt: Option<f64>,
    /// Greater than or equal.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gte: Option<f64>,
    /// Strictly less than.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lt: Option<f64>,
    /// Less than or equal.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lte: Option<f64>,
}

pub(crate) fn is_false(b: &bool) -> bool {
    !*b
}

/// `providers`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawProviders {
    /// `providers.defaults`.
    #[serde(default)]
    pub defaults: RawProviderDefaults,
    /// `providers.models[]`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub models: Vec<RawProviderModel>,
}

/// The whole document after normalisation: legacy shapes handled, environment expanded and
/// `global` laid over the defaults. Serialising it gives the effective config.
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct RawDocument {
    /// `version`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// `listeners`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub listeners: Vec<RawListener>,
    /// `providers`.
    pub providers: RawProviders,
    /// `routing`.
    pub routing: RawRouting,
    /// `entrypoints`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub entrypoints: Vec<RawEntrypoint>,
    /// `recipes`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub recipes: Vec<RawRecipe>,
    /// `global`, merged over the built-in defaults.
    pub global: serde_norway::Value,
    /// `setup` (bootstrap mode), kept as written.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub setup: Option<serde_norway::Value>,
}
