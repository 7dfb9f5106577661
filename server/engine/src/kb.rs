//! Knowledge bases: label manifests embedded into prototype banks, scored per request into
//! label scores, group scores, the best label and group, and metrics (contract §3.16).
//!
//! A manifest path resolves against the recipe's directory, then its ancestors, then the
//! built-in copies of the default KBs carried by the binary.

use std::path::{Path, PathBuf};

use indexmap::IndexMap;
use serde::Deserialize;
use vllm_sr_config::model::global::KnowledgeBase;

use crate::bank::{BankOptions, PrototypeBank};
use crate::EngineError;

const BUILTIN: &[(&str, &str)] = &[
    (
        "knowledge_bases/privacy/labels.json",
        include_str!("../../../recipes/knowledge_bases/privacy/labels.json"),
    ),
    (
        "knowledge_bases/mmlu/labels.json",
        include_str!("../../../recipes/knowledge_bases/mmlu/labels.json"),
    ),
];

/// A label manifest.
#[derive(Debug, Clone, Deserialize)]
pub struct Manifest {
    /// Labels in file order.
    pub labels: IndexMap<String, ManifestLabel>,
}

/// One label of a manifest.
#[derive(Debug, Clone, Deserialize)]
pub struct ManifestLabel {
    /// Free text.
    #[serde(default)]
    pub description: String,
    /// Example texts.
    #[serde(default)]
    pub exemplars: Vec<String>,
}

pub(crate) fn parse_manifest(name: &str, text: &str) -> Result<Manifest, EngineError> {
    serde_json::from_str(text).map_err(|e| EngineError::KnowledgeBase {
        name: name.to_string(),
        message: format!("invalid manifest: {e}"),
    })
}

/// Finds and parses a KB's manifest.
pub(crate) fn load_manifest(
    kb: &KnowledgeBase,
    base_dir: &Path,
) -> Result<(Manifest, String), EngineError> {
    let rel = Path::new(&kb.source.path);
    let mut candidates: Vec<PathBuf> = Vec::new();
    if rel.is_absolute() {
        candidates.push(rel.to_path_buf());
    } else {
        let mut dir = Some(base_dir);
        for _ in 0..5 {
            let Some(d) = dir else { break };
            candidates.push(d.join(rel));
            dir = d.parent();
        }
    }
    for c in &candidates {
        if let Ok(text) = std::fs::read_to_string(c) {
            return Ok((parse_manifest(&kb.name, &text)?, c.display().to_string()));
        }
    }
    let normalized = kb.source.path.trim_start_matches("./");
    for (suffix, text) in BUILTIN {
        if normalized.ends_with(suffix) {
            return Ok((
                parse_manifest(&kb.name, text)?,
                format!("built-in {suffix}"),
            ));
        }
    }
    Err(EngineError::KnowledgeBase {
        name: kb.name.clone(),
        message: format!(
            "manifest {} not found (looked in {} and its parents)",
            kb.source.path,
            base_dir.display()
        ),
    })
}

/// A KB ready to score.
#[derive(Debug, Clone)]
pub struct KbBank {
    /// KB name.
    pub name: String,
    /// Label names in manifest order.
    pub labels: Vec<String>,
    banks: Vec<PrototypeBank>,
    thresholds: Vec<f64>,
    /// Groups: name and label indices.
    pub groups: Vec<(String, Vec<usize>)>,
    metrics: Vec<(String, usize, usize)>,
    /// Where the manifest came from.
    pub source: String,
}

/// A request's scores against one KB.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct KbScores {
    /// Score per label.
    pub label_scores: Vec<f64>,
    /// Label reached its threshold.
    pub label_matched: Vec<bool>,
    /// Score per group (max over its labels).
    pub group_scores: Vec<f64>,
    /// Any label of the group matched.
    pub group_matched: Vec<bool>,
    /// Best label (ties: smallest name).
    pub best_label: Option<usize>,
    /// Best group (ties: smallest name).
    pub best_group: Option<usize>,
    /// `best_score`, `best_matched_score` and declared metrics.
    pub metrics: IndexMap<String, f64>,
}

impl KbBank {
    /// Label texts to embed for this KB, grouped per label.
    pub(crate) fn exemplar_texts(manifest: &Manifest) -> Vec<Vec<String>> {
        manifest
            .labels
            .values()
            .map(|l| l.exemplars.clone())
            .collect()
    }

    /// Builds the banks from the exemplars' vectors (same nesting as `exemplar_texts`).
    pub(crate) fn build(
        kb: &KnowledgeBase,
        manifest: &Manifest,
        source: String,
        vectors: &[Vec<Vec<f32>>],
        opts: BankOptions,
    ) -> Result<Self, EngineError> {
        let labels: Vec<String> = manifest.labels.keys().cloned().collect();
        let banks = manifest
            .labels
            .values()
            .zip(vectors)
            .map(|(l, v)| PrototypeBank::build(&l.exemplars, v, opts))
            .collect();
        let thresholds = labels
            .iter()
            .map(|l| kb.label_thresholds.get(l).copied().unwrap_or(kb.threshold))
            .collect();
        let mut groups = Vec::new();
        for (g, members) in &kb.groups {
            let mut idx = Vec::new();
            for m in members {
                match labels.iter().position(|l| l == m) {
                    Some(i) => idx.push(i),
                    None => {
                        return Err(EngineError::KnowledgeBase {
                            name: kb.name.clone(),
                            message: format!(
                                "group {g} lists label {m}, which the manifest does not define"
                            ),
                        })
                    }
                }
            }
            groups.push((g.clone(), idx));
        }
        let group_index = |g: &str| groups.iter().position(|(n, _)| n == g);
        let metrics = kb
            .metrics
            .iter()
            .filter_map(|m| {
                Some((
                    m.name.clone(),
                    group_index(&m.positive_group)?,
                    group_index(&m.negative_group)?,
                ))
            })
            .collect();
        Ok(Self {
            name: kb.name.clone(),
            labels,
            banks,
            thresholds,
            groups,
            metrics,
            source,
        })
    }

    /// Scores a query vector.
    pub fn score(&self, query: &[f32], cal: crate::bank::Calibration) -> KbScores {
        let label_scores: Vec<f64> = self.banks.iter().map(|b| b.score(query).score).collect();
        let label_matched: Vec<bool> = label_scores
            .iter()
            .zip(&self.thresholds)
            .map(|(s, t)| cal.apply(*s) >= *t)
            .collect();
        let group_scores: Vec<f64> = self
            .groups
            .iter()
            .map(|(_, m)| {
                m.iter()
                    .map(|&i| label_scores[i])
                    .fold(f64::NEG_INFINITY, f64::max)
            })
            .map(|s| if s.is_finite() { s } else { 0.0 })
            .collect();
        let group_matched = self
            .groups
            .iter()
            .map(|(_, m)| m.iter().any(|&i| label_matched[i]))
            .collect();
        let best_label = best(&label_scores, |i| &self.labels[i]);
        let best_group = best(&group_scores, |i| &self.groups[i].0);
        let mut metrics = IndexMap::new();
        metrics.insert(
            "best_score".to_string(),
            best_label.map(|i| label_scores[i]).unwrap_or(0.0),
        );
        let best_matched = label_scores
            .iter()
            .zip(&label_matched)
            .filter(|(_, m)| **m)
            .map(|(s, _)| *s)
            .fold(0.0, f64::max);
        metrics.insert("best_matched_score".to_string(), best_matched);
        for (name, pos, neg) in &self.metrics {
            metrics.insert(name.clone(), group_scores[*pos] - group_scores[*neg]);
        }
        KbScores {
            label_scores,
            label_matched,
            group_scores,
            group_matched,
            best_label,
            best_group,
            metrics,
        }
    }
}

/// Index of the highest score; ties go to the lexicographically smallest name.
fn best<'a>(scores: &[f64], name: impl Fn(usize) -> &'a String) -> Option<usize> {
    (0..scores.len()).max_by(|&a, &b| {
        scores[a]
            .total_cmp(&scores[b])
            .then_with(|| name(b).cmp(name(a)))
    })
}
