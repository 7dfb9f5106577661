//! Turns signal state, projections and the ranked decisions into an [`Outcome`]: model
//! selection (§6.4), reasoning settings, and the eval API's signal maps.

use std::borrow::Cow;
use std::sync::Arc;

use indexmap::IndexMap;
use vllm_sr_config::model::*;

use crate::decide::{self, Candidate, Facts, ProjectionState};
use crate::outcome::{
    DecisionTrace, FamilyMetric, FamilyMetrics, LazyReport, Outcome, RouteKind, SignalReport,
    Timings,
};
use crate::state::{family_index, SignalState, FAMILIES};

pub(crate) struct AutoInput<'a> {
    pub(crate) config: &'a Arc<RouterConfig>,
    pub(crate) recipe: usize,
    pub(crate) request_model: &'a str,
    pub(crate) state: SignalState,
    pub(crate) projections: ProjectionState,
    pub(crate) winner: Option<Candidate>,
    pub(crate) families: [bool; FAMILIES],
    /// The recipe's [`used_signals`], computed when the engine was built.
    pub(crate) used_signals: Arc<IndexMap<String, Vec<String>>>,
    pub(crate) skipped: Vec<String>,
    pub(crate) skip_reason: Option<String>,
    pub(crate) context_tokens: u64,
    pub(crate) timings: Timings,
}

fn learning_active(config: &RouterConfig) -> bool {
    let l = &config.global.router.learning;
    l.enabled && (l.adaptation.enabled || l.protection.enabled)
}

/// The reasoning effort of a chosen ref (§9 effort resolution).
fn effort(config: &RouterConfig, r: Option<&ModelRef>) -> String {
    r.and_then(|r| r.reasoning_effort.clone())
        .or_else(|| config.defaults.default_reasoning_effort.clone())
        .unwrap_or_else(|| "medium".into())
}

pub(crate) fn auto(input: AutoInput<'_>) -> Outcome {
    let AutoInput { config, state, .. } = input;
    let recipe = &config.recipes[input.recipe];
    let winner = input.winner.map(|w| (w, &recipe.decisions[w.index]));
    // The winner's first modelRef, when it has one: the model and effort are then its own,
    // and the defaults are never named (each name is an allocation).
    let chosen = winner.and_then(|(_, d)| d.model_refs.first());
    let mut out = Outcome {
        recipe: recipe.name.clone(),
        model: match chosen {
            Some(r) => Some(config.model(r.model).card.name.clone()),
            None => config
                .defaults
                .default_model
                .map(|m| config.model(m).card.name.clone()),
        },
        reasoning_effort: effort(config, chosen),
        algorithm: Cow::Borrowed("static"),
        selection_status: Cow::Borrowed("fallback"),
        selection_method: Cow::Borrowed("default"),
        selection_reason: Cow::Borrowed(
            "no decision matched; using providers.defaults.default_model",
        ),
        used_signals: input.used_signals,
        signal_errors: state.errors.clone(),
        metrics: metrics(recipe, &state),
        signals: LazyReport::deferred(ReportSource {
            config: Arc::clone(config),
            recipe: input.recipe,
            state,
            projections: input.projections,
            families: input.families,
        }),
        skipped_signals: input.skipped,
        skip_reason: input.skip_reason,
        context_token_count: input.context_tokens,
        timings: input.timings,
        ..empty(input.request_model, RouteKind::Auto)
    };
    if let Some((w, d)) = winner {
        out.decision = Some(d.name.clone());
        out.confidence = w.confidence;
        out.algorithm = Cow::Borrowed(d.algorithm.kind.as_str());
        out.plugins = d
            .plugins
            .iter()
            .map(|p| p.kind().as_str().to_string())
            .collect();
        out.recommended_models = d.model_refs.iter().map(|r| r.model_name.clone()).collect();
        match chosen {
            Some(r) => {
                out.lora = r.lora_name.clone().or_else(|| {
                    (r.model_name != config.model(r.model).card.name).then(|| r.model_name.clone())
                });
                out.use_reasoning = r.use_reasoning;
                out.selection_method = if d.model_refs.len() == 1 {
                    Cow::Borrowed("single")
                } else {
                    out.algorithm.clone()
                };
                // Per request: `concat` allocates once, where `format!` costs several times more.
                out.selection_reason = [
                    "decision ",
                    &d.name,
                    " selects its first modelRef (",
                    &r.model_name,
                    ")",
                ]
                .concat()
                .into();
            }
            None => {
                out.selection_method = Cow::Borrowed("default");
                out.selection_reason = format!(
                    "decision {} has no modelRefs; using providers.defaults.default_model",
                    d.name
                )
                .into();
            }
        }
        out.selection_status =
            if learning_active(config) && d.adaptations.mode != LearningMode::Bypass {
                "execution_required".into()
            } else if chosen.is_some() {
                "selected".into()
            } else {
                "fallback".into()
            };
    }
    out
}

/// What an auto outcome's [`SignalReport`] is built from: the request's signal state, kept
/// until something reads the report (or the outcome is dropped).
#[derive(Clone)]
pub(crate) struct ReportSource {
    config: Arc<RouterConfig>,
    recipe: usize,
    state: SignalState,
    projections: ProjectionState,
    families: [bool; FAMILIES],
}

impl ReportSource {
    /// Names every matched and unmatched signal and traces every decision.
    pub(crate) fn build(&self) -> SignalReport {
        let recipe = &self.config.recipes[self.recipe];
        let kb_names: Vec<&str> = self
            .config
            .global
            .model_catalog
            .kbs
            .iter()
            .map(|k| k.name.as_str())
            .collect();
        let mut out = SignalReport::default();
        fill_signals(
            &mut out,
            recipe,
            &self.state,
            &self.projections,
            &self.families,
            &kb_names,
        );
        let facts = Facts {
            recipe,
            state: &self.state,
            projections: &self.projections,
        };
        out.eval_trace = recipe
            .decisions
            .iter()
            .map(|d| {
                let node = decide::trace(facts, &d.rules);
                DecisionTrace {
                    decision_name: d.name.clone(),
                    matched: node.matched,
                    confidence: node.confidence,
                    root_trace: node,
                }
            })
            .collect();
        out
    }
}

/// An explicit or unknown model: no routing, the model is kept.
pub(crate) fn direct(
    config: &RouterConfig,
    model: &str,
    kind: RouteKind,
    explicit: Option<ModelId>,
) -> Outcome {
    Outcome {
        model: explicit.map(|m| config.model(m).card.name.clone()),
        selection_status: if explicit.is_some() {
            "selected".into()
        } else {
            "unavailable".into()
        },
        selection_method: "explicit".into(),
        selection_reason: if explicit.is_some() {
            "the request named a logical model; routing is bypassed".into()
        } else {
            format!("model \"{model}\" is neither an auto name, an entrypoint nor a logical model")
                .into()
        },
        reasoning_effort: effort(config, None),
        ..empty(model, kind)
    }
}

/// An outcome with nothing decided and nothing measured; callers fill in what they know.
fn empty(requested_model: &str, kind: RouteKind) -> Outcome {
    Outcome {
        requested_model: requested_model.to_string(),
        kind,
        recipe: String::new(),
        decision: None,
        confidence: 0.0,
        model: None,
        lora: None,
        use_reasoning: false,
        reasoning_effort: String::new(),
        recommended_models: Vec::new(),
        algorithm: Cow::Borrowed(""),
        selection_status: Cow::Borrowed(""),
        selection_method: Cow::Borrowed(""),
        selection_reason: Cow::Borrowed(""),
        plugins: Vec::new(),
        used_signals: Arc::default(),
        signal_errors: IndexMap::new(),
        skipped_signals: Vec::new(),
        skip_reason: None,
        signals: LazyReport::empty(),
        metrics: FamilyMetrics::default(),
        context_token_count: 0,
        timings: Timings::default(),
    }
}

/// Every signal name the recipe's decisions reference, per family (eval key). Depends on the
/// recipe only: the engine computes it once per recipe at build time, not per request.
pub(crate) fn used_signals(recipe: &Recipe) -> IndexMap<String, Vec<String>> {
    let mut used: IndexMap<String, Vec<String>> = IndexMap::new();
    for d in &recipe.decisions {
        d.rules.for_each_leaf(&mut |l| {
            let (key, name) = match &l.target {
                LeafTarget::Signal(r) => {
                    (r.family.eval_key(), recipe.signals.name_of(*r).to_string())
                }
                LeafTarget::Domain(i) => {
                    ("domains", recipe.signals.domains[*i as usize].name.clone())
                }
                LeafTarget::Complexity { rule, level } => (
                    "complexity",
                    format!(
                        "{}:{}",
                        recipe.signals.complexity[*rule as usize].name,
                        level.as_str()
                    ),
                ),
                LeafTarget::Role(i) => ("authz", recipe.signals.roles[*i as usize].clone()),
                LeafTarget::Classifier { rule, label } => {
                    let c = &recipe.signals.classifiers[*rule as usize];
                    (
                        "classifier",
                        format!("{}:{}", c.name, c.labels[*label as usize]),
                    )
                }
                LeafTarget::Projection(o) => (
                    "projection",
                    recipe.projections.outputs[*o as usize].name.clone(),
                ),
            };
            let list = used.entry(key.to_string()).or_default();
            if !list.contains(&name) {
                list.push(name);
            }
        });
    }
    used
}

/// Each family's time, whether it ran, and its best matched confidence (the eval API's
/// `metrics`; the gateway's per-family histograms read it for every request).
fn metrics(recipe: &Recipe, state: &SignalState) -> FamilyMetrics {
    let s = &recipe.signals;
    let mut metrics = Vec::with_capacity(SignalFamily::ALL.len());
    for f in SignalFamily::ALL {
        let fi = family_index(f);
        let best = match f {
            // Roles carry no confidence.
            SignalFamily::Authz => 0.0,
            _ if s.count(f) == 0 => 0.0,
            SignalFamily::Complexity => state
                .complexity
                .iter()
                .flatten()
                .fold(0.0, |best: f64, c| best.max(c.confidence)),
            _ => {
                let fam = &state.families[fi];
                fam.matched.iter().fold(0.0, |best: f64, &m| {
                    let c = fam.confidence.get(m as usize).copied().flatten();
                    best.max(c.unwrap_or(1.0))
                })
            }
        };
        metrics.push((
            f.leaf_type(),
            FamilyMetric {
                execution_time_ms: state.timings_ms[fi],
                confidence: best,
                evaluated: state.evaluated[fi],
            },
        ));
    }
    FamilyMetrics(metrics)
}

fn fill_signals(
    out: &mut SignalReport,
    recipe: &Recipe,
    state: &SignalState,
    projections: &ProjectionState,
    families: &[bool],
    kb_names: &[&str],
) {
    let s = &recipe.signals;
    for f in SignalFamily::ALL {
        // Most recipes use a few families: the others have nothing to name.
        if s.count(f) == 0 && f != SignalFamily::Authz {
            continue;
        }
        let fi = family_index(f);
        let fam = &state.families[fi];
        let names = s.names(f);
        let mut matched: Vec<String> = Vec::new();
        match f {
            SignalFamily::Complexity => {
                for (i, c) in state.complexity.iter().enumerate() {
                    if let Some(c) = c {
                        let n = format!("{}:{}", names[i], c.level.as_str());
                        out.signal_confidences
                            .insert(format!("complexity:{n}"), c.confidence);
                        matched.push(n);
                    }
                }
            }
            SignalFamily::Authz => {
                for (i, granted) in state.roles.iter().enumerate() {
                    if *granted {
                        matched.push(s.roles[i].clone());
                    }
                }
            }
            _ => {
                for &m in &fam.matched {
                    let name = names.get(m as usize).copied().unwrap_or("");
                    let c = fam.confidence.get(m as usize).copied().flatten();
                    if let Some(c) = c {
                        out.signal_confidences
                            .insert(format!("{}:{name}", f.leaf_type()), c);
                    }
                    matched.push(name.to_string());
                }
            }
        }
        for (i, v) in fam.value.iter().enumerate() {
            if let Some(v) = v {
                out.signal_values.insert(
                    format!("{}:{}", f.leaf_type(), names.get(i).copied().unwrap_or("")),
                    *v,
                );
            }
        }
        let evaluated = families.get(fi).copied().unwrap_or(false);
        if evaluated {
            let unmatched: Vec<String> = names
                .iter()
                .filter(|n| {
                    !matched
                        .iter()
                        .any(|m| m == *n || m.starts_with(&format!("{n}:")))
                })
                .map(|n| n.to_string())
                .collect();
            if !unmatched.is_empty() {
                out.unmatched_signals
                    .insert(f.eval_key().to_string(), unmatched);
            }
        }
        if !matched.is_empty() {
            out.matched_signals
                .insert(f.eval_key().to_string(), matched);
        }
    }
    for (k, v) in &state.extra_values {
        out.signal_values.insert(k.clone(), *v);
    }
    for (k, metrics) in state.kb_metrics.iter().enumerate() {
        let kb = kb_names.get(k).copied().unwrap_or("");
        for (name, v) in metrics {
            out.signal_values
                .insert(format!("kb_metric:{kb}:{name}"), *v);
        }
    }
    let proj = &recipe.projections;
    let mut emitted = Vec::new();
    for (o, conf) in projections.outputs.iter().enumerate() {
        if let Some(c) = conf {
            let name = proj.outputs[o].name.clone();
            out.signal_confidences
                .insert(format!("projection:{name}"), *c);
            emitted.push(name);
        }
    }
    if !emitted.is_empty() {
        out.matched_signals.insert("projection".into(), emitted);
    }
    for (i, sc) in proj.scores.iter().enumerate() {
        out.projection_scores
            .insert(sc.name.clone(), projections.scores[i]);
    }
}
