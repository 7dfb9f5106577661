//! Raw document → validated [`RouterConfig`]: resolves every name, applies defaults and checks
//! the cross-references of contract §1.10. Problems go to the context; building continues so
//! that all of them are reported in one run.

mod decisions;
mod projections;
mod providers;
mod rules;
mod signal_rules;
mod signals;

pub use signals::{LINGUA_LANGUAGES, MMLU_CATEGORIES};

use std::collections::HashSet;
use std::path::PathBuf;

use indexmap::IndexMap;

use crate::ctx::Ctx;
use crate::env::EnvSource;
use crate::model::global::GlobalConfig;
use crate::model::*;
use crate::path::YamlPath;
use crate::raw::*;

use rules::{Resolver, TreeKind};

pub(crate) struct BuildInput<'a> {
    pub(crate) doc: &'a RawDocument,
    pub(crate) global: GlobalConfig,
    pub(crate) base_dir: PathBuf,
    pub(crate) env: &'a dyn EnvSource,
}

pub(crate) fn build(input: BuildInput<'_>, ctx: &mut Ctx<'_>) -> RouterConfig {
    let doc = input.doc;
    let root = YamlPath::root();
    let listeners = providers::listeners(&doc.listeners, &root.key("listeners"), ctx);
    let mut models = providers::model_cards(
        &doc.routing.model_cards,
        &root.key("routing").key("modelCards"),
        ctx,
    );
    let defaults = providers::provider_defaults(
        &doc.providers.defaults,
        &models,
        &root.key("providers").key("defaults"),
        ctx,
    );
    providers::provider_models(
        &doc.providers.models,
        &mut models,
        &defaults,
        input.env,
        &root.key("providers").key("models"),
        ctx,
    );

    let kbs = &input.global.model_catalog.kbs;
    let mut recipes = Vec::new();
    let top = &doc.routing;
    let bridged_default = doc.recipes.iter().position(|r| r.name == "default");
    let default_routing = match bridged_default {
        Some(i) if !top.has_profile_content() => {
            let r = &doc.recipes[i];
            (
                &r.routing,
                root.key("recipes").index(i).key("routing"),
                r.description.clone(),
            )
        }
        _ => (top, root.key("routing"), None),
    };
    let strategy = input.global.router.strategy.as_str();
    recipes.push(recipe(
        "default",
        default_routing.2.unwrap_or_default(),
        default_routing.0,
        &default_routing.1,
        strategy,
        &models,
        kbs,
        ctx,
    ));
    let mut names = HashSet::from(["default".to_string()]);
    for (i, r) in doc.recipes.iter().enumerate() {
        let rp = root.key("recipes").index(i);
        if r.name.trim().is_empty() || r.name.trim() != r.name {
            ctx.error(
                &rp.key("name"),
                "recipe names must be non-empty and free of surrounding whitespace",
            );
            continue;
        }
        if r.name == "default" {
            if top.has_profile_content() {
                ctx.error(&rp.key("name"), "a recipe named \"default\" is only allowed when the top-level routing declares no signals, projections, decisions or strategy");
            }
            continue;
        }
        if !names.insert(r.name.clone()) {
            ctx.error(
                &rp.key("name"),
                format!("duplicate recipe name \"{}\"", r.name),
            );
            continue;
        }
        if !r.routing.model_cards.is_empty() {
            ctx.error(
                &rp.key("routing").key("modelCards"),
                "recipes share the top-level routing.modelCards; remove modelCards from the recipe",
            );
        }
        let desc = r.description.clone().unwrap_or_default();
        recipes.push(recipe(
            &r.name,
            desc,
            &r.routing,
            &rp.key("routing"),
            strategy,
            &models,
            kbs,
            ctx,
        ));
    }

    let auto_model_names = match &input.global.router.auto_model_names {
        Some(list) => list.clone(),
        None => vec![
            "vllm-sr/auto".into(),
            "auto".into(),
            input.global.router.auto_model_name.clone(),
        ],
    };
    let entrypoints = entrypoints(
        doc,
        &recipes,
        &models,
        &auto_model_names,
        &input.global,
        ctx,
    );
    check_global(&input.global, ctx);

    RouterConfig {
        version: doc.version.clone().unwrap_or_default(),
        listeners,
        models,
        defaults,
        recipes,
        entrypoints,
        auto_model_names,
        global: input.global,
        base_dir: input.base_dir,
    }
}

#[expect(
    clippy::too_many_arguments,
    reason = "internal helper called from one place with distinct slices of the document"
)]
fn recipe(
    name: &str,
    description: String,
    routing: &RawRouting,
    path: &YamlPath,
    global_strategy: &str,
    models: &[Model],
    kbs: &[global::KnowledgeBase],
    ctx: &mut Ctx<'_>,
) -> Recipe {
    let mut domain_leaf_names = Vec::new();
    for d in &routing.decisions {
        if let Some(r) = &d.rules {
            rules::domain_leaf_names(r, &mut domain_leaf_names);
        }
    }
    let sig_input = signals::SignalInput {
        raw: &routing.signals,
        path: path.key("signals"),
        kbs,
        domain_leaf_names,
    };
    let mut sigs = signals::build_signals(&sig_input, ctx);
    let outputs = projections::outputs(&routing.projections, &path.key("projections"), ctx);

    // Complexity composers reference other signals, so they compile once all rules exist.
    let composers: Vec<Option<Condition>> = routing
        .signals
        .complexity
        .iter()
        .enumerate()
        .map(|(i, r)| {
            r.composer.as_ref().map(|c| {
                let resolver = Resolver {
                    signals: &sigs,
                    outputs: &outputs,
                };
                let cp = path
                    .key("signals")
                    .key("complexity")
                    .index(i)
                    .key("composer");
                resolver.compile_root(Some(c), &cp, TreeKind::Composer, ctx)
            })
        })
        .collect();
    for (rule, composer) in sigs.complexity.iter_mut().zip(composers) {
        rule.composer = composer;
    }

    let proj = projections::build(
        projections::ProjectionInput {
            raw: &routing.projections,
            path: path.key("projections"),
            signals: &sigs,
            kbs,
            outputs,
        },
        ctx,
    );
    let decisions = decisions::build(
        &decisions::DecisionInput {
            raw: &routing.decisions,
            path: path.key("decisions"),
            resolver: Resolver {
                signals: &sigs,
                outputs: &proj.outputs,
            },
            models,
        },
        ctx,
    );
    let strategy_name = routing.strategy.as_deref().unwrap_or(global_strategy);
    let strategy = match strategy_name {
        "" | "priority" => Strategy::Priority,
        "confidence" => Strategy::Confidence,
        other => {
            ctx.error(
                &path.key("strategy"),
                format!("strategy \"{other}\" is not one of priority, confidence"),
            );
            Strategy::Priority
        }
    };
    Recipe {
        name: name.to_string(),
        description,
        signals: sigs,
        projections: proj,
        decisions,
        strategy,
    }
}

fn entrypoints(
    doc: &RawDocument,
    recipes: &[Recipe],
    models: &[Model],
    auto: &[String],
    global: &GlobalConfig,
    ctx: &mut Ctx<'_>,
) -> IndexMap<String, usize> {
    let looper = &global.integrations.looper;
    let reserved: Vec<&str> = models
        .iter()
        .flat_map(|m| {
            std::iter::once(m.card.name.as_str()).chain(m.card.loras.iter().map(String::as_str))
        })
        .chain(auto.iter().map(String::as_str))
        .chain(
            looper
                .remom
                .model_names
                .iter()
                .chain(&looper.fusion.model_names)
                .chain(&looper.flow.model_names)
                .map(String::as_str),
        )
        .collect();
    let mut out = IndexMap::new();
    for (i, e) in doc.entrypoints.iter().enumerate() {
        let ep = YamlPath::root().key("entrypoints").index(i);
        let Some(r) = recipes.iter().position(|r| r.name == e.recipe) else {
            let names: Vec<&str> = recipes.iter().map(|r| r.name.as_str()).collect();
            ctx.error(
                &ep.key("recipe"),
                rules::unknown("recipe", &e.recipe, &names),
            );
            continue;
        };
        if e.model_names.is_empty() {
            ctx.error(
                &ep.key("model_names"),
                "an entrypoint needs at least one model name",
            );
        }
        for (j, name) in e.model_names.iter().enumerate() {
            let np = ep.key("model_names").index(j);
            if reserved.contains(&name.as_str()) {
                ctx.error(&np, format!("entrypoint name \"{name}\" collides with a model card, LoRA, auto name or looper name"));
            } else if out.insert(name.clone(), r).is_some() {
                ctx.error(&np, format!("entrypoint name \"{name}\" is used twice"));
            }
        }
    }
    out
}

fn check_global(g: &GlobalConfig, ctx: &mut Ctx<'_>) {
    let gp = YamlPath::root().key("global");
    let l = &g.router.learning;
    let lp = gp.key("router").key("learning");
    if !["decision", "tier", "global"].contains(&l.adaptation.candidate_set.as_str()) {
        ctx.error(
            &lp.key("adaptation").key("candidate_set"),
            format!(
                "candidate_set \"{}\" is not one of decision, tier, global",
                l.adaptation.candidate_set
            ),
        );
    }
    if l.adaptation.strategy != "routing_sampling" {
        ctx.error(
            &lp.key("adaptation").key("strategy"),
            format!(
                "strategy \"{}\" is not supported; use routing_sampling",
                l.adaptation.strategy
            ),
        );
    }
    if !["conversation", "session"].contains(&l.protection.scope.as_str()) {
        ctx.error(
            &lp.key("protection").key("scope"),
            format!(
                "scope \"{}\" is not one of conversation, session",
                l.protection.scope
            ),
        );
    }
    if !["local", "redis"].contains(&l.state_store.backend.as_str()) {
        ctx.error(
            &lp.key("state_store").key("backend"),
            format!(
                "backend \"{}\" is not one of local, redis",
                l.state_store.backend
            ),
        );
    }
    let t = &l.protection.tuning;
    if t.switch_margin < 0.0 || t.stability_weight < 0.0 {
        ctx.error(
            &lp.key("protection").key("tuning"),
            "switch_margin and stability_weight must not be negative",
        );
    }
    let strategy = &g.router.strategy;
    if !["", "priority", "confidence"].contains(&strategy.as_str()) {
        ctx.error(
            &gp.key("router").key("strategy"),
            format!("strategy \"{strategy}\" is not one of priority, confidence"),
        );
    }
    let auth = &g.services.management_api.auth;
    if !["disabled", "bearer"].contains(&auth.mode.as_str()) {
        ctx.error(
            &gp.key("services")
                .key("management_api")
                .key("auth")
                .key("mode"),
            format!("mode \"{}\" is not one of disabled, bearer", auth.mode),
        );
    }
    let emb = &g.model_catalog.embeddings.semantic.embedding_config;
    let ep = gp
        .key("model_catalog")
        .key("embeddings")
        .key("semantic")
        .key("embedding_config");
    unit_interval(
        ctx,
        &ep.key("min_score_threshold"),
        emb.min_score_threshold,
        "min_score_threshold",
    );
    unit_interval(
        ctx,
        &ep.key("prototype_scoring").key("best_weight"),
        emb.prototype_scoring.best_weight,
        "best_weight",
    );
    let mut kb_names = HashSet::new();
    for (i, kb) in g.model_catalog.kbs.iter().enumerate() {
        let kp = gp.key("model_catalog").key("kbs").index(i);
        if !kb_names.insert(kb.name.as_str()) {
            ctx.error(
                &kp.key("name"),
                format!("duplicate knowledge base \"{}\"", kb.name),
            );
        }
        unit_interval(ctx, &kp.key("threshold"), kb.threshold, "threshold");
        for (j, m) in kb.metrics.iter().enumerate() {
            let mp = kp.key("metrics").index(j);
            if m.kind != "group_margin" {
                ctx.error(
                    &mp.key("type"),
                    format!(
                        "metric type \"{}\" is not supported; use group_margin",
                        m.kind
                    ),
                );
            }
            for g in [&m.positive_group, &m.negative_group] {
                if !kb.groups.contains_key(g) {
                    ctx.error(
                        &mp,
                        format!("metric \"{}\" references unknown group \"{g}\"", m.name),
                    );
                }
            }
        }
    }
}

/// Builds a predicate and checks it is satisfiable.
pub(crate) fn predicate(ctx: &mut Ctx<'_>, path: &YamlPath, p: &RawPredicate) -> Predicate {
    if p.gt.is_none() && p.gte.is_none() && p.lt.is_none() && p.lte.is_none() {
        ctx.error(path, "a predicate needs at least one of gt, gte, lt, lte");
    }
    if p.gt.is_some() && p.gte.is_some() {
        ctx.error(path, "gt and gte are mutually exclusive");
    }
    if p.lt.is_some() && p.lte.is_some() {
        ctx.error(path, "lt and lte are mutually exclusive");
    }
    let lo = p.gt.or(p.gte);
    let hi = p.lt.or(p.lte);
    if let (Some(lo), Some(hi)) = (lo, hi) {
        if lo > hi {
            ctx.error(
                path,
                format!("the predicate can never hold: lower bound {lo} is above upper bound {hi}"),
            );
        }
    }
    Predicate {
        gt: p.gt,
        gte: p.gte,
        lt: p.lt,
        lte: p.lte,
    }
}

/// Reports a threshold outside [0, 1].
pub(crate) fn unit_interval(ctx: &mut Ctx<'_>, path: &YamlPath, v: f64, what: &str) {
    if !(0.0..=1.0).contains(&v) || v.is_nan() {
        ctx.error(path, format!("{what} must be between 0 and 1, found {v}"));
    }
}

/// Parses a token count such as `999`, `1K`, `8K`, `1.5M`.
pub(crate) fn token_count(ctx: &mut Ctx<'_>, path: &YamlPath, s: &str) -> Option<u64> {
    let t = s.trim();
    let (num, mult) = match t.chars().last() {
        Some('k' | 'K') => (&t[..t.len() - 1], 1_000.0),
        Some('m' | 'M') => (&t[..t.len() - 1], 1_000_000.0),
        _ => (t, 1.0),
    };
    match num.trim().parse::<f64>() {
        Ok(v) if v >= 0.0 && v.is_finite() => Some((v * mult).round() as u64),
        _ => {
            ctx.error(
                path,
                format!("\"{s}\" is not a token count (write e.g. 999, 8K or 1.5M)"),
            );
            None
        }
    }
}

/// Parses a duration such as `1200s`, `5m`, `500ms`, `1h` or a bare number of seconds.
pub(crate) fn duration(ctx: &mut Ctx<'_>, path: &YamlPath, s: &str) -> Option<f64> {
    match parse_duration(s) {
        Some(v) => Some(v),
        None => {
            ctx.error(
                path,
                format!("\"{s}\" is not a duration (write e.g. 30s, 500ms, 5m or 1h)"),
            );
            None
        }
    }
}

/// Parses a duration into seconds.
pub fn parse_duration(s: &str) -> Option<f64> {
    let t = s.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let v: f64 = num.parse().ok()?;
    let mult = match unit.trim() {
        "" | "s" => 1.0,
        "ms" => 0.001,
        "us" | "µs" => 0.000_001,
        "m" => 60.0,
        "h" => 3600.0,
        _ => return None,
    };
    Some(v * mult)
}
