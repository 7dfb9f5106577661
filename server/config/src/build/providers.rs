//! Listeners, model cards and provider bindings: defaults, reasoning families, pricing,
//! reliability knobs and backend endpoints (contract §1.3–§1.5).

use std::collections::HashSet;

use indexmap::IndexMap;

use crate::ctx::Ctx;
use crate::env::EnvSource;
use crate::model::*;
use crate::path::YamlPath;
use crate::raw::*;

use super::{duration, rules, unit_interval};

pub(super) fn listeners(raw: &[RawListener], lp: &YamlPath, ctx: &mut Ctx<'_>) -> Vec<Listener> {
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

pub(super) fn model_cards(raw: &[RawModelCard], cp: &YamlPath, ctx: &mut Ctx<'_>) -> Vec<Model> {
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

pub(super) fn provider_defaults(
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

pub(super) fn provider_models(
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
