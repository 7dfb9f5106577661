//! A short, serialisable summary of a validated recipe for `vllm-sr validate`.

use serde::Serialize;

use crate::model::{RouterConfig, SignalFamily};

/// What a recipe declares, in numbers and names.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Summary {
    /// `version`.
    pub version: String,
    /// `name address:port`.
    pub listeners: Vec<String>,
    /// Logical model names.
    pub models: Vec<String>,
    /// The default model.
    pub default_model: Option<String>,
    /// Auto-routing model names.
    pub auto_model_names: Vec<String>,
    /// One entry per routing profile.
    pub recipes: Vec<RecipeSummary>,
    /// Entrypoint model names.
    pub entrypoints: Vec<String>,
}

/// One routing profile.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RecipeSummary {
    /// Recipe name.
    pub name: String,
    /// Decision names in declaration order.
    pub decisions: Vec<String>,
    /// Rule count per signal family (YAML list name), only families with rules.
    pub signals: indexmap::IndexMap<String, usize>,
    /// Number of projection partitions, scores and mappings.
    pub projections: usize,
}

impl Summary {
    /// Summarises a config.
    pub fn of(c: &RouterConfig) -> Self {
        Self {
            version: c.version.clone(),
            listeners: c
                .listeners
                .iter()
                .map(|l| format!("{} {}:{}", l.name, l.address, l.port))
                .collect(),
            models: c.models.iter().map(|m| m.card.name.clone()).collect(),
            default_model: c
                .defaults
                .default_model
                .map(|id| c.model(id).card.name.clone()),
            auto_model_names: c.auto_model_names.clone(),
            entrypoints: c.entrypoints.keys().cloned().collect(),
            recipes: c
                .recipes
                .iter()
                .map(|r| RecipeSummary {
                    name: r.name.clone(),
                    decisions: r.decisions.iter().map(|d| d.name.clone()).collect(),
                    signals: SignalFamily::ALL
                        .iter()
                        .map(|f| (f.yaml_key().to_string(), r.signals.count(*f)))
                        .filter(|(_, n)| *n > 0)
                        .collect(),
                    projections: r.projections.partitions.len()
                        + r.projections.scores.len()
                        + r.projections.mappings.len(),
                })
                .collect(),
        }
    }
}
