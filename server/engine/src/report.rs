//! Turns signal state, projections and the ranked decisions into an [`Outcome`]: model
//! selection (§6.4), reasoning settings, and the eval API's signal maps.

use std::borrow::Cow;
use std::sync::Arc;

use indexmap::IndexMap;
use vllm_sr_config::model::*;

use crate::decide::{Candidate, ProjectionState, TraceNode};
use crate::outcome::{
    DecisionTrace, FamilyMetric, FamilyMetrics, NameMap, Outcome, RouteKind, Timings,
};
use crate::state::{family_index, SignalState};

pub(crate) struct AutoInput<'a> {
    pub(crate) config: &'a RouterConfig,
    pub(crate) recipe: &'a Recipe,
    pub(crate) request_model: &'a str,
    pub(crate) state: &'a SignalState,
    pub(crate) projections: &'a ProjectionState,
    pub(crate) winner: Option<Candidate>,
    pub(crate) traces: Vec<(usize, TraceNode)>,
    pub(crate) families: &'a [bool],
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
    let AutoInput {
        config,
        recipe,
        state,
        projections,
        ..
    } = input;
    let mut out = Outcome {
        recipe: recipe.name.clone(),
        model: config
            .defaults
            .default_model
            .map(|m| config.model(m).card.name.clone()),
        algorithm: Cow::Borrowed("static"),
        selection_status: Cow::Borrowed("fallback"),
        selection_method: Cow::Borrowed("default"),
        selection_reason: Cow::Borrowed(
            "no decision matched; using providers.defaults.default_model",
        ),
        used_signals: input.used_signals,
        signal_errors: state.errors.clone(),
        skipped_signals: input.skipped,
        skip_reason: input.skip_reason,
        context_token_count: input.context_tokens,
        timings: input.timings,
        ..empty(config, input.request_model, RouteKind::Auto)
    };
    if let Some(w) = input.winner {
        let d = &recipe.decisions[w.index];
        out.decision = Some(d.name.clone());
        out.confidence = w.confidence;
        out.algorithm = Cow::Borrowed(d.algorithm.kind.as_str());
        out.plugins = d
            .plugins
            .iter()
            .map(|p| p.kind().as_str().to_string())
            .collect();
        out.recommended_models = d.model_refs.iter().map(|r| r.model_name.clone()).collect();
        let chosen = d.model_refs.first();
        match chosen {
            Some(r) => {
                out.model = Some(config.model(r.model).card.name.clone());
                out.lora = r.lora_name.clone().or_else(|| {
                    (r.model_name != config.model(r.model).card.name).then(|| r.model_name.clone())
                });
                out.use_reasoning = r.use_reasoning;
                out.reasoning_effort = effort(config, Some(r));
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
    let kb_names: Vec<&str> = config
        .global
        .model_catalog
        .kbs
        .iter()
        .map(|k| k.name.as_str())
        .collect();
    fill_signals(
        &mut out,
        recipe,
        state,
        projections,
        input.families,
        &kb_names,
    );
    out.eval_trace = input
        .traces
        .into_iter()
        .map(|(i, node)| DecisionTrace {
            decision_name: recipe.decisions[i].name.clone(),
            matched: node.matched,
            confidence: node.confidence,
            root_trace: node,
        })
        .collect();
    out
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
        ..empty(config, model, kind)
    }
}

/// An outcome with nothing decided and nothing measured; callers fill in what they know.
fn empty(config: &RouterConfig, requested_model: &str, kind: RouteKind) -> Outcome {
    Outcome {
        requested_model: requested_model.to_string(),
        kind,
        recipe: String::new(),
        decision: None,
        confidence: 0.0,
        model: None,
        lora: None,
        use_reasoning: false,
        reasoning_effort: effort(config, None),
        recommended_models: Vec::new(),
        algorithm: Cow::Borrowed(""),
        selection_status: Cow::Borrowed(""),
        selection_method: Cow::Borrowed(""),
        selection_reason: Cow::Borrowed(""),
        plugins: Vec::new(),
        matched_signals: NameMap::default(),
        used_signals: Arc::default(),
        unmatched_signals: NameMap::default(),
        signal_confidences: NameMap::default(),
        signal_values: NameMap::default(),
        signal_errors: IndexMap::new(),
        skipped_signals: Vec::new(),
        skip_reason: None,
        projection_scores: NameMap::default(),
        eval_trace: Vec::new(),
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

fn fill_signals(
    out: &mut Outcome,
    recipe: &Recipe,
    state: &SignalState,
    projections: &ProjectionState,
    families: &[bool],
    kb_names: &[&str],
) {
    let s = &recipe.signals;
    out.metrics.0.reserve(SignalFamily::ALL.len());
    for f in SignalFamily::ALL {
        let fi = family_index(f);
        let metric = |confidence| FamilyMetric {
            execution_time_ms: state.timings_ms[fi],
            confidence,
            evaluated: state.evaluated[fi],
        };
        // Most recipes use a few families: the others only get their (empty) metric.
        if s.count(f) == 0 && f != SignalFamily::Authz {
            out.metrics.0.push((f.leaf_type(), metric(0.0)));
            continue;
        }
        let fam = &state.families[fi];
        let names = s.names(f);
        let mut matched: Vec<String> = Vec::new();
        let mut best = 0.0f64;
        match f {
            SignalFamily::Complexity => {
                for (i, c) in state.complexity.iter().enumerate() {
                    if let Some(c) = c {
                        let n = format!("{}:{}", names[i], c.level.as_str());
                        out.signal_confidences
                            .insert(format!("complexity:{n}"), c.confidence);
                        best = best.max(c.confidence);
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
                    best = best.max(c.unwrap_or(1.0));
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
        out.metrics.0.push((f.leaf_type(), metric(best)));
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
