//! Raw document → validated [`RouterConfig`]: resolves every name, applies defaults and checks
//! the cross-references of contract §1.10. Problems go to the context; building continues so
//! that all of them are reported in one run.

mod decisions;
mod projections;
mod rules;
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
    let listeners = listeners(&doc.listeners, &root.key("listeners"), ctx);
    let mut models = model_cards(
        &doc.routing.model_cards,
        &root.key("routing").key("modelCards"),
        ctx,
    );
    let defaults = provider_defaults(
        &doc.providers.defaults,
        &models,
        &root.key("providers").key("defaults"),
        ctx,
    );
    provider_models(
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

fn listeners(raw: &[RawListener], lp: &YamlPath, ctx: &mut Ctx<'_>) -> Vec<Listener> {
    let mut names = HashSet::new();
    let mut ports = HashSet::new();
    let mut out = Vec::new();
    for (i, l) in raw.iter().enumerate() {
        let p = lp.index(i);
        if !names.insert(l.name.clone()) {
            ctx.error(
                &p.key("name"),
                format!("duplicate listener name \"{}\"", l.name),
            );
        }
        let address = l.address.clone().unwrap_or_else(|| "0.0.0.0".into());
        if !ports.insert((address.clone(), l.port)) {
            ctx.error(
                &p.key("port"),
                format!("two listeners bind {address}:{}", l.port),
            );
        }
        if l.port == 0 {
            ctx.warn(&p.key("port"), "port 0 binds a random free port");
        }
        let timeout_secs = l
            .timeout
            .as_deref()
            .and_then(|t| duration(ctx, &p.key("timeout"), t));
        out.push(Listener {
            name: l.name.clone(),
            address,
            port: l.port,
            timeout_secs,
        });
    }
    out
}

fn model_cards(raw: &[RawModelCard], cp: &YamlPath, ctx: &mut Ctx<'_>) -> Vec<Model> {
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for (i, c) in raw.iter().enumerate() {
        let p = cp.index(i);
        if c.name.trim().is_empty() {
            ctx.error(&p.key("name"), "model card name must not be empty");
            continue;
        }
        if !seen.insert(c.name.clone()) {
            ctx.error(
                &p.key("name"),
                format!("duplicate model card \"{}\"", c.name),
            );
            continue;
        }
        if let Some(q) = c.quality_score {
            unit_interval(ctx, &p.key("quality_score"), q, "quality_score");
        }
        out.push(Model {
            card: ModelCard {
                name: c.name.clone(),
                param_size: c.param_size.clone(),
                context_window_size: c.context_window_size,
                description: c.description.clone().unwrap_or_default(),
                capabilities: c.capabilities.clone(),
                loras: c.loras.iter().map(|l| l.name.clone()).collect(),
                quality_score: c.quality_score,
                modality: c.modality.clone(),
                tags: c.tags.clone(),
            },
            provider: None,
        });
    }
    out
}

fn provider_defaults(
    raw: &RawProviderDefaults,
    models: &[Model],
    dp: &YamlPath,
    ctx: &mut Ctx<'_>,
) -> ProviderDefaults {
    let default_model = raw.default_model.as_ref().and_then(|name| {
        let id = models
            .iter()
            .position(|m| &m.card.name == name)
            .or_else(|| models.iter().position(|m| m.card.loras.contains(name)));
        if id.is_none() {
            let names: Vec<&str> = models.iter().map(|m| m.card.name.as_str()).collect();
            ctx.error(
                &dp.key("default_model"),
                rules::unknown("model", name, &names)
                    + " (default_model must name a routing.modelCards entry or a LoRA)",
            );
        }
        id.map(|i| ModelId(i as u32))
    });
    let mut reasoning_families = IndexMap::new();
    for (name, f) in &raw.reasoning_families {
        let fp = dp.key("reasoning_families").key(name);
        if f.parameter.trim().is_empty() {
            ctx.error(&fp.key("parameter"), "a reasoning family needs a parameter");
        }
        let family = match f.kind.as_str() {
            "chat_template_kwargs" => ReasoningFamily::ChatTemplateKwargs(f.parameter.clone()),
            "reasoning_effort" => ReasoningFamily::ReasoningEffort(f.parameter.clone()),
            "top_level_reasoning_effort" => {
                if f.parameter != "reasoning_effort" {
                    ctx.error(
                        &fp.key("parameter"),
                        "type top_level_reasoning_effort requires parameter: reasoning_effort",
                    );
                }
                ReasoningFamily::TopLevelReasoningEffort
            }
            other => {
                ctx.error(&fp.key("type"), format!("type \"{other}\" is not one of chat_template_kwargs, reasoning_effort, top_level_reasoning_effort"));
                continue;
            }
        };
        reasoning_families.insert(name.clone(), family);
    }
    ProviderDefaults {
        default_model,
        reasoning_families,
        default_reasoning_effort: raw.default_reasoning_effort.clone(),
    }
}

fn provider_models(
    raw: &[RawProviderModel],
    models: &mut [Model],
    defaults: &ProviderDefaults,
    env: &dyn EnvSource,
    mp: &YamlPath,
    ctx: &mut Ctx<'_>,
) {
    let mut seen = HashSet::new();
    for (i, m) in raw.iter().enumerate() {
        let p = mp.index(i);
        let Some(id) = models.iter().position(|c| c.card.name == m.name) else {
            let names: Vec<&str> = models.iter().map(|m| m.card.name.as_str()).collect();
            ctx.error(&p.key("name"), rules::unknown("model", &m.name, &names) + " (every providers.models entry needs a routing.modelCards entry of the same name)");
            continue;
        };
        if !seen.insert(m.name.clone()) {
            ctx.error(
                &p.key("name"),
                format!("duplicate provider binding for \"{}\"", m.name),
            );
            continue;
        }
        if let Some(f) = &m.reasoning_family {
            if !defaults.reasoning_families.contains_key(f) {
                let names: Vec<&str> = defaults
                    .reasoning_families
                    .keys()
                    .map(String::as_str)
                    .collect();
                ctx.error(
                    &p.key("reasoning_family"),
                    rules::unknown("reasoning family", f, &names),
                );
            }
        }
        let api_format = match m.api_format.as_deref() {
            None | Some("openai") => ApiFormat::Openai,
            Some("anthropic") => ApiFormat::Anthropic,
            Some(other) => {
                ctx.error(
                    &p.key("api_format"),
                    format!("api_format \"{other}\" is not one of openai, anthropic"),
                );
                ApiFormat::Openai
            }
        };
        let has_metadata = m.reasoning_family.is_some()
            || m.provider_model_id.is_some()
            || m.api_format.is_some()
            || !m.external_model_ids.is_empty()
            || m.pricing.is_some()
            || m.reliability.is_some();
        if m.backend_refs.is_empty() && !has_metadata {
            ctx.error(
                &p.key("backend_refs"),
                "a provider model needs backend_refs (or model metadata such as provider_model_id)",
            );
        }
        let pricing = m
            .pricing
            .as_ref()
            .map(|pr| pricing(pr, &p.key("pricing"), ctx))
            .unwrap_or_default();
        let reliability = m
            .reliability
            .as_ref()
            .map(|r| reliability(r, &p.key("reliability"), ctx))
            .unwrap_or_default();
        let mut backends = Vec::new();
        for (j, b) in m.backend_refs.iter().enumerate() {
            if let Some(be) = backend(&m.name, b, j, env, &p.key("backend_refs").index(j), ctx) {
                backends.push(be);
            }
        }
        let mut external_model_ids = m.external_model_ids.clone();
        if external_model_ids.is_empty() {
            if let Some(pid) = &m.provider_model_id {
                if backends.is_empty() {
                    external_model_ids.insert("default".into(), pid.clone());
                }
                for b in &backends {
                    external_model_ids
                        .entry(b.kind.clone())
                        .or_insert_with(|| pid.clone());
                }
            }
        }
        models[id].provider = Some(ProviderModel {
            reasoning_family: m.reasoning_family.clone(),
            provider_model_id: m.provider_model_id.clone(),
            external_model_ids,
            api_format,
            pricing,
            reliability,
            backends,
        });
    }
}

fn pricing(raw: &RawPricing, pp: &YamlPath, ctx: &mut Ctx<'_>) -> Pricing {
    let mut get = |key: &str, v: Option<f64>| {
        let v = v.unwrap_or(0.0);
        if v < 0.0 || !v.is_finite() {
            ctx.error(
                &pp.key(key),
                format!("{key} must be a non-negative number, found {v}"),
            );
        }
        v
    };
    Pricing {
        currency: raw.currency.clone().unwrap_or_else(|| "USD".into()),
        prompt_per_1m: get("prompt_per_1m", raw.prompt_per_1m),
        completion_per_1m: get("completion_per_1m", raw.completion_per_1m),
        cached_input_per_1m: get("cached_input_per_1m", raw.cached_input_per_1m),
        cache_write_per_1m: get("cache_write_per_1m", raw.cache_write_per_1m),
    }
}

fn reliability(raw: &RawReliability, rp: &YamlPath, ctx: &mut Ctx<'_>) -> Reliability {
    let d = Reliability::default();
    let lb_policy = match raw.lb_policy.as_deref() {
        None | Some("least_request") => LbPolicy::LeastRequest,
        Some("round_robin") => LbPolicy::RoundRobin,
        Some("random") => LbPolicy::Random,
        Some(other) => {
            ctx.error(
                &rp.key("lb_policy"),
                format!("lb_policy \"{other}\" is not one of least_request, round_robin, random"),
            );
            LbPolicy::LeastRequest
        }
    };
    if let Some(p) = raw.max_ejection_percent.filter(|p| *p > 100) {
        ctx.error(
            &rp.key("max_ejection_percent"),
            format!("max_ejection_percent must be at most 100, found {p}"),
        );
    }
    let dur = |ctx: &mut Ctx<'_>, key: &str, v: &Option<String>, default: f64| {
        v.as_deref()
            .and_then(|s| duration(ctx, &rp.key(key), s))
            .unwrap_or(default)
    };
    Reliability {
        lb_policy,
        retry_count: raw.retry_count.unwrap_or(d.retry_count),
        retry_on: raw
            .retry_on
            .as_ref()
            .map(StringOrList::items)
            .unwrap_or(d.retry_on),
        consecutive_5xx: raw.consecutive_5xx.unwrap_or(d.consecutive_5xx),
        base_ejection_secs: dur(
            ctx,
            "base_ejection_time",
            &raw.base_ejection_time,
            d.base_ejection_secs,
        ),
        max_ejection_percent: raw.max_ejection_percent.unwrap_or(d.max_ejection_percent),
        health_check_path: raw.health_check_path.clone(),
        health_check_interval_secs: dur(
            ctx,
            "health_check_interval",
            &raw.health_check_interval,
            d.health_check_interval_secs,
        ),
        health_check_timeout_secs: dur(
            ctx,
            "health_check_timeout",
            &raw.health_check_timeout,
            d.health_check_timeout_secs,
        ),
    }
}

fn backend(
    model: &str,
    b: &RawBackendRef,
    index: usize,
    env: &dyn EnvSource,
    bp: &YamlPath,
    ctx: &mut Ctx<'_>,
) -> Option<Backend> {
    let ref_name = b.name.clone().unwrap_or_else(|| {
        if index == 0 {
            "primary".into()
        } else {
            format!("backend-{index}")
        }
    });
    let target = match (&b.endpoint, &b.base_url) {
        (Some(e), _) if !e.trim().is_empty() => e.trim().to_string(),
        (_, Some(u)) if !u.trim().is_empty() => u.trim().to_string(),
        _ => {
            ctx.error(bp, "a backend_ref needs endpoint or base_url");
            return None;
        }
    };
    let protocol = b.protocol.clone().unwrap_or_else(|| "http".into());
    if protocol != "http" && protocol != "https" {
        ctx.error(
            &bp.key("protocol"),
            format!("protocol \"{protocol}\" is not one of http, https"),
        );
    }
    let (scheme, rest) = match target.split_once("://") {
        Some((s, r)) => (s.to_ascii_lowercase(), r.to_string()),
        None => (protocol, target.clone()),
    };
    let (hostport, path) = match rest.find('/') {
        Some(i) => (
            rest[..i].to_string(),
            rest[i..].trim_end_matches('/').to_string(),
        ),
        None => (rest.clone(), String::new()),
    };
    let default_port = if scheme == "https" { 443 } else { 80 };
    let (host, port) = match hostport.rsplit_once(':') {
        Some((h, p)) if !h.ends_with(']') || hostport.starts_with('[') => match p.parse::<u16>() {
            Ok(p) => (h.trim_matches(['[', ']']).to_string(), p),
            Err(_) => {
                ctx.error(
                    &bp.key("endpoint"),
                    format!("\"{target}\" has an invalid port \"{p}\""),
                );
                return None;
            }
        },
        _ => (hostport.trim_matches(['[', ']']).to_string(), default_port),
    };
    if host.is_empty() {
        ctx.error(
            &bp.key("endpoint"),
            format!("\"{target}\" has no host (an unset environment variable?)"),
        );
        return None;
    }
    let api_key = match (&b.api_key, &b.api_key_env) {
        (Some(k), _) if !k.is_empty() => Some(k.clone()),
        (_, Some(var)) => {
            let v = env.get(var).filter(|v| !v.is_empty());
            if v.is_none() {
                ctx.warn(&bp.key("api_key_env"), format!("environment variable {var} is not set; requests to this backend carry no API key"));
            }
            v
        }
        _ => None,
    };
    let kind = b.kind.clone().unwrap_or_else(|| {
        if b.provider.is_some() {
            "provider".into()
        } else {
            "vllm".into()
        }
    });
    if let Some(p) = &b.provider {
        let known = [
            "openai",
            "anthropic",
            "azure-openai",
            "bedrock",
            "gemini",
            "vertex-ai",
            "minimax",
        ];
        if !known.contains(&p.as_str()) {
            ctx.error(
                &bp.key("provider"),
                format!("provider \"{p}\" is not one of {}", known.join(", ")),
            );
        }
    }
    let chat_path = b
        .chat_path
        .clone()
        .unwrap_or_else(|| "/v1/chat/completions".into());
    let base_path = if path.ends_with("/v1") && chat_path.starts_with("/v1/") {
        path[..path.len() - 3].to_string()
    } else {
        path
    };
    Some(Backend {
        name: format!("{model}_{ref_name}"),
        scheme,
        host,
        port,
        base_path,
        chat_path,
        weight: b.weight.unwrap_or(1),
        kind,
        provider: b.provider.clone(),
        auth_header: b
            .auth_header
            .clone()
            .unwrap_or_else(|| "Authorization".into()),
        auth_prefix: b.auth_prefix.clone().unwrap_or_else(|| "Bearer ".into()),
        api_key,
        extra_headers: b.extra_headers.clone(),
    })
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
