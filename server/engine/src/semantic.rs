//! Embedding-backed signal families: embedding, domain, fact_check, user_feedback, reask,
//! preference, complexity, jailbreak and kb. Every one reads vectors computed once per
//! request; none runs a model.
//!
//! Upstream runs fine-tuned classifiers for domain, fact_check, user_feedback and jailbreak.
//! Here each is a [`LabelModel`]: one prototype bank per label from an exemplar manifest,
//! turned into probabilities with a softmax over bank scores.

use indexmap::IndexMap;
use vllm_sr_config::model::global::{EmbeddingConfig, GlobalConfig};
use vllm_sr_config::model::*;

use crate::bank::{BankScore, Calibration, PrototypeBank};
use crate::embed::dot;
use crate::kb::KbBank;
use crate::state::{ComplexityResult, FamilyResult, SignalState};

/// Softmax temperature that turns bank scores (cosine scale) into label probabilities.
pub const LABEL_TEMPERATURE: f64 = 0.04;

/// Labels scored by prototype banks and normalised into probabilities.
///
/// `probs = softmax(score / T + ln prior)`: the bank scores act as likelihoods, the prior
/// encodes how common a label is in real traffic (jailbreaks are rare; a near tie between
/// "jailbreak" and "benign" exemplars must not read as a 50% risk).
#[derive(Debug, Clone)]
pub struct LabelModel {
    /// Label names.
    pub labels: Vec<String>,
    /// One bank per label.
    pub banks: Vec<PrototypeBank>,
    /// Natural log of each label's prior (0 for a uniform prior).
    pub log_prior: Vec<f64>,
}

impl LabelModel {
    /// A model with a uniform prior.
    pub fn new(labels: Vec<String>, banks: Vec<PrototypeBank>) -> Self {
        let log_prior = vec![0.0; labels.len()];
        Self {
            labels,
            banks,
            log_prior,
        }
    }

    /// Sets the prior of one label (the rest share the remaining mass evenly).
    pub fn with_prior(mut self, label: &str, p: f64) -> Self {
        if let Some(i) = self.index(label) {
            let n = self.labels.len().max(2) as f64;
            let rest = ((1.0 - p) / (n - 1.0)).max(f64::MIN_POSITIVE);
            self.log_prior = (0..self.labels.len())
                .map(|j| {
                    if j == i {
                        p.max(f64::MIN_POSITIVE).ln()
                    } else {
                        rest.ln()
                    }
                })
                .collect();
        }
        self
    }

    /// Raw bank scores per label.
    pub fn scores(&self, q: &[f32]) -> Vec<f64> {
        self.banks.iter().map(|b| b.score(q).score).collect()
    }

    /// Probabilities per label.
    pub fn probs(&self, q: &[f32]) -> Vec<f64> {
        let logits: Vec<f64> = self
            .scores(q)
            .iter()
            .zip(&self.log_prior)
            .map(|(s, lp)| s / LABEL_TEMPERATURE + lp)
            .collect();
        softmax(&logits, 1.0)
    }

    /// The most probable label and its probability.
    pub fn top(&self, q: &[f32]) -> Option<(usize, f64)> {
        let p = self.probs(q);
        (0..p.len())
            .max_by(|a, b| p[*a].total_cmp(&p[*b]))
            .map(|i| (i, p[i]))
    }

    /// Index of a label.
    pub fn index(&self, label: &str) -> Option<usize> {
        self.labels.iter().position(|l| l == label)
    }
}

/// Softmax of `scores / t`.
pub fn softmax(scores: &[f64], t: f64) -> Vec<f64> {
    let max = scores.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let e: Vec<f64> = scores.iter().map(|s| ((s - max) / t).exp()).collect();
    let z: f64 = e.iter().sum();
    e.iter().map(|x| x / z).collect()
}

/// The vectors a request supplies.
#[derive(Debug, Clone, Copy)]
pub struct Vectors<'a> {
    /// The bounded current text.
    pub query: Option<&'a [f32]>,
    /// Prior user turns, newest first.
    pub prior: &'a [&'a [f32]],
    /// Chunks of the full text (and history when asked) for jailbreak scanning.
    pub chunks: &'a [&'a [f32]],
}

/// `embeddings[]`: hard then soft matching, sorted by score then name (§3.2).
pub fn embeddings(
    rules: &[EmbeddingRule],
    banks: &[PrototypeBank],
    q: &[f32],
    cfg: &EmbeddingConfig,
    cal: Calibration,
    out: &mut FamilyResult,
    extra: &mut IndexMap<String, f64>,
) {
    let scores: Vec<BankScore> = banks
        .iter()
        .map(|b| {
            let raw = b.score(q);
            BankScore {
                score: cal.apply(raw.score),
                ..raw
            }
        })
        .collect();
    for (i, r) in rules.iter().enumerate() {
        let s = scores[i];
        out.set_value(i, s.score);
        extra.insert(format!("embedding:{}:best", r.name), s.best);
        extra.insert(format!("embedding:{}:support", r.name), s.support);
        extra.insert(
            format!("embedding:{}:prototype_count", r.name),
            banks[i].len() as f64,
        );
    }
    let mut cands: Vec<usize> = (0..rules.len())
        .filter(|&i| scores[i].score >= rules[i].threshold)
        .collect();
    if cands.is_empty() && cfg.enable_soft_matching {
        cands = (0..rules.len())
            .filter(|&i| scores[i].score >= cfg.min_score_threshold)
            .collect();
    }
    cands.sort_by(|&a, &b| {
        scores[b]
            .score
            .total_cmp(&scores[a].score)
            .then_with(|| rules[a].name.cmp(&rules[b].name))
    });
    for i in cands {
        out.hit(i, Some(scores[i].score));
    }
}

/// `domains[]` (§3.3): entropy-gated labels mapped onto the declared domains.
pub fn domains(
    rules: &[DomainRule],
    model: &LabelModel,
    q: &[f32],
    threshold: f64,
    state: &mut SignalState,
) {
    let p = model.probs(q);
    let n = p.len().max(2) as f64;
    let entropy: f64 = -p
        .iter()
        .filter(|x| **x > 0.0)
        .map(|x| x * x.log2())
        .sum::<f64>()
        / n.log2();
    let mut order: Vec<usize> = (0..p.len()).collect();
    order.sort_by(|a, b| p[*b].total_cmp(&p[*a]));
    let detected: Vec<usize> = if entropy < 0.4 {
        order
            .iter()
            .copied()
            .take(1)
            .filter(|&i| p[i] >= threshold)
            .collect()
    } else {
        order
            .iter()
            .copied()
            .filter(|&i| p[i] >= threshold)
            .collect()
    };
    state.extra_values.insert("domain:entropy".into(), entropy);
    for &i in order.iter().take(3) {
        state
            .extra_values
            .insert(format!("domain:label:{}", model.labels[i]), p[i]);
    }
    let fam = state.family_mut(SignalFamily::Domain);
    let mut labels = Vec::new();
    for i in detected {
        let label = &model.labels[i];
        labels.push((label.clone(), p[i]));
        for (ri, r) in rules.iter().enumerate() {
            let maps = r.mmlu_categories.contains(label)
                || (r.mmlu_categories.is_empty() && &r.name == label);
            if maps && fam.confidence[ri].is_none_or(|c| c < p[i]) {
                fam.hit(ri, Some(p[i]));
            }
        }
    }
    state.domain_labels = labels;
}

/// `fact_check[]` (§3.4).
pub fn fact_check(
    rules: &[NamedRule],
    model: &LabelModel,
    q: &[f32],
    threshold: f64,
    out: &mut FamilyResult,
) {
    let Some(needs) = model.index("needs_fact_check") else {
        return;
    };
    let p = model.probs(q);
    let predicted_needs = p[needs] >= 0.5 && p[needs] >= threshold;
    let name = if predicted_needs {
        "needs_fact_check"
    } else {
        "no_fact_check_needed"
    };
    if let Some(i) = rules.iter().position(|r| r.name == name) {
        out.hit(i, None);
    }
}

/// `user_feedbacks[]` (§3.5): only after an assistant turn.
pub fn user_feedback(
    rules: &[NamedRule],
    model: &LabelModel,
    q: &[f32],
    threshold: f64,
    out: &mut FamilyResult,
) {
    let Some((top, p)) = model.top(q) else { return };
    let label = if p < threshold {
        "satisfied"
    } else {
        model.labels[top].as_str()
    };
    if let Some(i) = rules.iter().position(|r| r.name == label) {
        out.hit(i, None);
    }
}

/// `reasks[]` (§3.6).
pub fn reask(rules: &[ReaskRule], q: &[f32], prior: &[&[f32]], out: &mut FamilyResult) {
    if prior.is_empty() {
        return;
    }
    let sims: Vec<f64> = prior.iter().map(|p| dot(q, p)).collect();
    let mut matched: Vec<(usize, f64, usize)> = Vec::new();
    for (i, r) in rules.iter().enumerate() {
        let streak = sims.iter().take_while(|s| **s >= r.threshold).count();
        let look = r.lookback_turns as usize;
        if streak >= look && look >= 1 {
            let conf = sims[..look].iter().copied().fold(f64::INFINITY, f64::min);
            matched.push((i, conf, streak));
        }
    }
    let max_look = matched
        .iter()
        .map(|(i, ..)| rules[*i].lookback_turns)
        .max()
        .unwrap_or(0);
    for (i, conf, streak) in matched {
        if rules[i].lookback_turns == max_look {
            out.hit(i, Some(conf));
            out.set_value(i, streak as f64);
        }
    }
}

/// `preferences[]` (§3.7), contrastive: the best rule if it clears its threshold and margin.
pub fn preferences(
    rules: &[PreferenceRule],
    banks: &[PrototypeBank],
    q: &[f32],
    margin_threshold: f64,
    out: &mut FamilyResult,
) {
    let scores: Vec<f64> = banks.iter().map(|b| b.score(q).score).collect();
    for (i, s) in scores.iter().enumerate() {
        out.set_value(i, *s);
    }
    let mut order: Vec<usize> = (0..rules.len()).collect();
    order.sort_by(|&a, &b| {
        scores[b]
            .total_cmp(&scores[a])
            .then_with(|| rules[a].name.cmp(&rules[b].name))
    });
    let Some(&best) = order.first() else { return };
    if scores[best] < rules[best].threshold {
        return;
    }
    if margin_threshold > 0.0 {
        if let Some(&second) = order.get(1) {
            if scores[best] - scores[second] < margin_threshold {
                return;
            }
        }
    }
    out.hit(best, Some(scores[best]));
}

/// `complexity[]` (§3.11): every rule emits exactly one level.
pub fn complexity(
    rules: &[ComplexityRule],
    banks: &[(PrototypeBank, PrototypeBank)],
    q: &[f32],
    state: &mut SignalState,
) {
    for (i, r) in rules.iter().enumerate() {
        let (hard, easy) = &banks[i];
        let (h, e) = (hard.score(q).score, easy.score(q).score);
        let margin = h - e;
        let level = if margin > r.threshold {
            ComplexityLevel::Hard
        } else if margin < -r.threshold {
            ComplexityLevel::Easy
        } else {
            ComplexityLevel::Medium
        };
        state.complexity[i] = Some(ComplexityResult {
            level,
            confidence: margin.abs(),
            hard: h,
            easy: e,
        });
        state
            .extra_values
            .insert(format!("complexity:{}:text_hard_score", r.name), h);
        state
            .extra_values
            .insert(format!("complexity:{}:text_easy_score", r.name), e);
        state
            .extra_values
            .insert(format!("complexity:{}:text_margin", r.name), margin);
    }
}

/// How one jailbreak rule scores chunks.
#[derive(Debug, Clone)]
pub enum JailbreakScorer {
    /// Probability of the `jailbreak` label of the built-in model.
    Classifier,
    /// `score(jailbreak patterns) − score(benign patterns)`.
    Contrastive(PrototypeBank, PrototypeBank),
}

/// `jailbreak[]` (§3.14): the maximum qualifying risk over chunks.
pub fn jailbreak(
    rules: &[JailbreakRule],
    scorers: &[JailbreakScorer],
    model: Option<&LabelModel>,
    chunks: &[&[f32]],
    out: &mut FamilyResult,
) {
    for (i, r) in rules.iter().enumerate() {
        let risk = chunks
            .iter()
            .map(|c| match &scorers[i] {
                JailbreakScorer::Classifier => model
                    .and_then(|m| m.index("jailbreak").map(|j| m.probs(c)[j]))
                    .unwrap_or(0.0),
                JailbreakScorer::Contrastive(jb, benign) => {
                    jb.score(c).score - benign.score(c).score
                }
            })
            .fold(f64::NEG_INFINITY, f64::max);
        if risk.is_finite() {
            out.set_value(i, risk);
            if risk >= r.threshold {
                out.hit(i, Some(risk));
            }
        }
    }
}

/// `kb[]` (§3.16) and the KB metrics.
pub fn kb(
    rules: &[KbRule],
    kbs: &[Option<KbBank>],
    q: &[f32],
    cal: Calibration,
    state: &mut SignalState,
) {
    let mut scored: Vec<Option<crate::kb::KbScores>> = vec![None; kbs.len()];
    for (k, bank) in kbs.iter().enumerate() {
        if let Some(bank) = bank {
            let s = bank.score(q, cal);
            state.kb_metrics[k] = s.metrics.clone();
            scored[k] = Some(s);
        }
    }
    let fam = state.family_mut(SignalFamily::Kb);
    for (i, r) in rules.iter().enumerate() {
        let (Some(Some(s)), Some(Some(bank))) = (scored.get(r.kb as usize), kbs.get(r.kb as usize))
        else {
            continue;
        };
        let hit = match &r.target {
            KbTarget::Label(v) => bank.labels.iter().position(|l| l == v).and_then(|li| {
                let ok = if r.best {
                    s.best_label == Some(li)
                } else {
                    s.label_matched[li]
                };
                ok.then_some(s.label_scores[li])
            }),
            KbTarget::Group(v) => bank.groups.iter().position(|(g, _)| g == v).and_then(|gi| {
                let ok = if r.best {
                    s.best_group == Some(gi)
                } else {
                    s.group_matched[gi]
                };
                ok.then_some(s.group_scores[gi])
            }),
        };
        if let Some(conf) = hit {
            fam.hit(i, Some(conf));
        }
    }
}

/// Thresholds the families read from `global`.
#[derive(Debug, Clone, Copy)]
pub struct Thresholds {
    /// Domain classifier threshold.
    pub domain: f64,
    /// Fact-check threshold.
    pub fact_check: f64,
    /// Feedback threshold.
    pub feedback: f64,
    /// Preference margin threshold.
    pub preference_margin: f64,
}

impl Thresholds {
    /// Reads them from the global config (0 fact-check threshold falls back to 0.7).
    pub fn from_global(g: &GlobalConfig) -> Self {
        let fc = g
            .model_catalog
            .modules
            .hallucination_mitigation
            .fact_check
            .threshold;
        Self {
            domain: g.model_catalog.modules.classifier.domain.threshold,
            fact_check: if fc > 0.0 { fc } else { 0.7 },
            feedback: g.model_catalog.modules.feedback_detector.threshold,
            preference_margin: g
                .model_catalog
                .embeddings
                .semantic
                .embedding_config
                .prototype_scoring
                .margin_threshold,
        }
    }
}
