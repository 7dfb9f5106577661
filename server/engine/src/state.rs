//! Per-request signal results, indexed by rule id (never by name).

use indexmap::IndexMap;
use vllm_sr_config::model::{ComplexityLevel, SignalFamily};

/// Results of one signal family: which rules matched, with confidences and raw values.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct FamilyResult {
    /// Matched rule indices, in emission order.
    pub matched: Vec<u32>,
    /// Confidence per rule (`None`: no entry, reads as 1.0 when matched).
    pub confidence: Vec<Option<f64>>,
    /// Raw value per rule (`type:name` in the contract's `SignalValues`).
    pub value: Vec<Option<f64>>,
}

impl FamilyResult {
    /// An empty result for `n` rules.
    pub fn new(n: usize) -> Self {
        Self {
            matched: Vec::new(),
            confidence: vec![None; n],
            value: vec![None; n],
        }
    }

    /// Records a match of rule `i`.
    pub fn hit(&mut self, i: usize, confidence: Option<f64>) {
        if !self.matched.contains(&(i as u32)) {
            self.matched.push(i as u32);
        }
        if let Some(c) = confidence {
            if let Some(slot) = self.confidence.get_mut(i) {
                *slot = Some(c);
            }
        }
    }

    /// Records a raw value of rule `i`.
    pub fn set_value(&mut self, i: usize, v: f64) {
        if let Some(slot) = self.value.get_mut(i) {
            *slot = Some(v);
        }
    }

    /// True when rule `i` matched.
    pub fn is_matched(&self, i: u32) -> bool {
        self.matched.contains(&i)
    }

    /// Drops rule `i` from the matched list and deletes its confidence.
    pub fn unmatch(&mut self, i: u32) {
        self.matched.retain(|m| *m != i);
        if let Some(slot) = self.confidence.get_mut(i as usize) {
            *slot = None;
        }
    }

    /// Confidence of a matched rule as decisions read it: the entry, or 1.0 when absent.
    pub fn read_confidence(&self, i: u32) -> f64 {
        self.confidence
            .get(i as usize)
            .copied()
            .flatten()
            .unwrap_or(1.0)
    }
}

/// The complexity output of one rule.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ComplexityResult {
    /// Level emitted.
    pub level: ComplexityLevel,
    /// |margin|.
    pub confidence: f64,
    /// Hard-bank score.
    pub hard: f64,
    /// Easy-bank score.
    pub easy: f64,
}

/// Everything the signal pass produced for one request.
#[derive(Debug, Clone, PartialEq)]
pub struct SignalState {
    /// One result per family, indexed by `SignalFamily as usize` order of `SignalFamily::ALL`.
    pub families: Vec<FamilyResult>,
    /// Complexity outputs per rule (`None` when dropped by a composer or not evaluated).
    pub complexity: Vec<Option<ComplexityResult>>,
    /// Raw domain labels detected with their probabilities (for `mmlu_categories` matching).
    pub domain_labels: Vec<(String, f64)>,
    /// Granted authz roles (index into `Signals::roles`).
    pub roles: Vec<bool>,
    /// Classifier scores per rule and label.
    pub classifier_scores: Vec<Vec<f64>>,
    /// Classifier rules whose inference failed.
    pub classifier_errors: Vec<bool>,
    /// KB metric values per KB index (`best_score`, `best_matched_score`, declared metrics).
    pub kb_metrics: Vec<IndexMap<String, f64>>,
    /// Extra raw values for display (`type:name:sub`).
    pub extra_values: IndexMap<String, f64>,
    /// Errors per family leaf type.
    pub errors: IndexMap<String, String>,
    /// Wall time per family in milliseconds (0 when not evaluated).
    pub timings_ms: [f64; FAMILIES],
    /// Families that were evaluated.
    pub evaluated: [bool; FAMILIES],
}

/// The number of signal families (the length of the per-family arrays).
pub const FAMILIES: usize = SignalFamily::ALL.len();

/// Position of a family in `SignalFamily::ALL` (and in the per-family vectors).
pub fn family_index(f: SignalFamily) -> usize {
    FAMILY_INDEX[f as usize]
}

/// `SignalFamily` discriminant → position in `SignalFamily::ALL`, computed at compile time
/// (every rule-tree leaf reads a family, so this must not be a search).
const FAMILY_INDEX: [usize; SignalFamily::ALL.len()] = {
    let mut index = [0; SignalFamily::ALL.len()];
    let mut i = 0;
    while i < SignalFamily::ALL.len() {
        index[SignalFamily::ALL[i] as usize] = i;
        i += 1;
    }
    index
};

impl SignalState {
    /// An empty state sized for a recipe's signals.
    pub fn new(signals: &vllm_sr_config::model::Signals, kb_count: usize) -> Self {
        Self {
            families: SignalFamily::ALL
                .iter()
                .map(|f| FamilyResult::new(signals.count(*f)))
                .collect(),
            complexity: vec![None; signals.complexity.len()],
            domain_labels: Vec::new(),
            roles: vec![false; signals.roles.len()],
            classifier_scores: signals
                .classifiers
                .iter()
                .map(|c| vec![0.0; c.labels.len()])
                .collect(),
            classifier_errors: vec![false; signals.classifiers.len()],
            kb_metrics: vec![IndexMap::new(); kb_count],
            extra_values: IndexMap::new(),
            errors: IndexMap::new(),
            timings_ms: [0.0; FAMILIES],
            evaluated: [false; FAMILIES],
        }
    }

    /// The result of one family.
    pub fn family(&self, f: SignalFamily) -> &FamilyResult {
        &self.families[family_index(f)]
    }

    /// The mutable result of one family.
    pub fn family_mut(&mut self, f: SignalFamily) -> &mut FamilyResult {
        &mut self.families[family_index(f)]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn family_index_is_the_position_in_all() {
        for (i, f) in SignalFamily::ALL.iter().enumerate() {
            assert_eq!(family_index(*f), i, "{f:?}");
        }
    }
}
