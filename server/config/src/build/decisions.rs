//! Builds decisions: rule trees, model refs, algorithm, plugins and learning modes (§6–§8).

use std::collections::HashSet;

use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_norway::Value;

use crate::ctx::{Ctx, Unknown};
use crate::model::*;
use crate::path::YamlPath;
use crate::raw::{RawAdaptations, RawAlgorithm, RawDecision, RawModelRef, RawPlugin};

use super::rules::{unknown, Resolver, TreeKind};

const EFFORTS: [&str; 7] = ["none", "minimal", "low", "medium", "high", "xhigh", "max"];

pub(crate) struct DecisionInput<'a> {
    pub(crate) raw: &'a [RawDecision],
    pub(crate) path: YamlPath,
    pub(crate) resolver: Resolver<'a>,
    pub(crate) models: &'a [Model],
}

pub(crate) fn build(input: &DecisionInput<'_>, ctx: &mut Ctx<'_>) -> Vec<Decision> {
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for (i, d) in input.raw.iter().enumerate() {
        let dp = input.path.index(i);
        if d.name.trim().is_empty() {
            ctx.error(&dp.key("name"), "decision name must not be empty");
        } else if !seen.insert(d.name.as_str()) {
            ctx.error(
                &dp.key("name"),
                format!("duplicate decision name \"{}\"", d.name),
            );
        }
        let tier = match d.tier {
            None => 0,
            Some(t) if t < 0 => {
                ctx.error(
                    &dp.key("tier"),
                    format!("tier must not be negative, found {t}"),
                );
                0
            }
            Some(t) => u32::try_from(t).unwrap_or(u32::MAX),
        };
        let rules = input.resolver.compile_root(
            d.rules.as_ref(),
            &dp.key("rules"),
            TreeKind::Decision,
            ctx,
        );
        let model_refs = d
            .model_refs
            .iter()
            .enumerate()
            .filter_map(|(j, r)| model_ref(r, &dp.key("modelRefs").index(j), input.models, ctx))
            .collect();
        let algorithm = match &d.algorithm {
            None => Algorithm::static_default(),
            Some(a) => algorithm(a, &dp.key("algorithm"), ctx),
        };
        let plugins = plugins(&d.plugins, &dp.key("plugins"), ctx);
        let adaptations = adaptations(d.adaptations.as_ref(), &dp.key("adaptations"), ctx);
        if d.annotations.len() > 32 {
            ctx.error(
                &dp.key("annotations"),
                format!(
                    "at most 32 annotations are allowed, found {}",
                    d.annotations.len()
                ),
            );
        }
        if serde_json::to_string(&d.annotations)
            .map(|s| s.len())
            .unwrap_or(0)
            > 4096
        {
            ctx.error(
                &dp.key("annotations"),
                "annotations must serialise to at most 4096 bytes of JSON",
            );
        }
        out.push(Decision {
            name: d.name.clone(),
            description: d.description.clone().unwrap_or_default(),
            priority: d.priority,
            tier,
            rules,
            model_refs,
            algorithm,
            plugins,
            adaptations,
            annotations: d.annotations.clone(),
        });
    }
    out
}

fn model_ref(
    r: &RawModelRef,
    rp: &YamlPath,
    models: &[Model],
    ctx: &mut Ctx<'_>,
) -> Option<ModelRef> {
    let by_card = models.iter().position(|m| m.card.name == r.model);
    let by_lora = || models.iter().position(|m| m.card.loras.contains(&r.model));
    let Some(id) = by_card.or_else(by_lora) else {
        let names: Vec<&str> = models.iter().map(|m| m.card.name.as_str()).collect();
        ctx.error(
            &rp.key("model"),
            unknown("model", &r.model, &names) + " (declare it in routing.modelCards)",
        );
        return None;
    };
    if let Some(lora) = &r.lora_name {
        if !models[id].card.loras.contains(lora) {
            ctx.error(
                &rp.key("lora_name"),
                format!(
                    "model \"{}\" has no LoRA \"{lora}\" in its card's loras",
                    models[id].card.name
                ),
            );
        }
    }
    if let Some(e) = &r.reasoning_effort {
        if !EFFORTS.contains(&e.as_str()) {
            ctx.warn(
                &rp.key("reasoning_effort"),
                format!(
                    "reasoning_effort \"{e}\" is not one of {}; it is forwarded as written",
                    EFFORTS.join(", ")
                ),
            );
        }
    }
    if let Some(w) = r.weight.filter(|w| *w < 0.0) {
        ctx.error(
            &rp.key("weight"),
            format!("weight must not be negative, found {w}"),
        );
    }
    Some(ModelRef {
        model: ModelId(id as u32),
        model_name: r.model.clone(),
        lora_name: r.lora_name.clone(),
        weight: r.weight,
        use_reasoning: r.use_reasoning,
        reasoning_effort: r.reasoning_effort.clone(),
        reasoning_description: r.reasoning_description.clone(),
    })
}

fn algorithm(a: &RawAlgorithm, ap: &YamlPath, ctx: &mut Ctx<'_>) -> Algorithm {
    if a.kind != a.kind.to_ascii_lowercase() {
        ctx.error(
            &ap.key("type"),
            format!(
                "algorithm type must be lowercase: write \"{}\"",
                a.kind.to_ascii_lowercase()
            ),
        );
    }
    let Some(kind) = AlgorithmKind::parse(&a.kind.to_ascii_lowercase()) else {
        let names: Vec<&str> = AlgorithmKind::TABLE.iter().map(|(_, n, _)| *n).collect();
        ctx.error(&ap.key("type"), unknown("algorithm type", &a.kind, &names));
        return Algorithm::static_default();
    };
    let mut block = None;
    for (key, value) in a.blocks() {
        if Some(key) == kind.block_key() {
            block = Some(value.clone());
        } else {
            let allowed = match kind.block_key() {
                Some(k) => format!("only the \"{k}\" block"),
                None => "no configuration block".to_string(),
            };
            ctx.error(
                &ap.key(key),
                format!(
                    "algorithm type \"{}\" takes {allowed}, found \"{key}\"",
                    kind.as_str()
                ),
            );
        }
    }
    Algorithm {
        kind,
        on_error: a.on_error.clone(),
        block,
    }
}

fn mode(ctx: &mut Ctx<'_>, path: &YamlPath, m: Option<&str>) -> Option<LearningMode> {
    let m = m?;
    match LearningMode::parse(m) {
        Some(mode) => Some(mode),
        None => {
            ctx.error(
                path,
                format!("mode \"{m}\" is not one of apply, observe, bypass"),
            );
            None
        }
    }
}

fn adaptations(a: Option<&RawAdaptations>, ap: &YamlPath, ctx: &mut Ctx<'_>) -> Adaptations {
    let Some(a) = a else {
        return Adaptations::default();
    };
    let top = mode(ctx, &ap.key("mode"), a.mode.as_deref()).unwrap_or(LearningMode::Apply);
    let adaptation = a.adaptation.as_ref();
    let mut protection = a.protection.clone();
    if let Some(sa) = &a.session_aware {
        if protection.is_some() {
            ctx.error(&ap.key("session_aware"), "adaptations.session_aware and adaptations.protection are both set; keep protection");
        } else {
            ctx.warn(&ap.key("session_aware"), "adaptations.session_aware is the blog-era spelling; it was read as adaptations.protection (rename the key)");
            protection = Some(sa.clone());
        }
    }
    let sub = |ctx: &mut Ctx<'_>, key: &str, m: Option<&str>| {
        // A sub-mode can only weaken the decision-wide mode.
        mode(ctx, &ap.key(key).key("mode"), m)
            .unwrap_or(top)
            .max(top)
    };
    let adaptation_mode = sub(
        ctx,
        "adaptation",
        adaptation.and_then(|x| x.mode.as_deref()),
    );
    let protection_mode = sub(
        ctx,
        "protection",
        protection.as_ref().and_then(|x| x.mode.as_deref()),
    );
    let candidate_set = adaptation.and_then(|x| x.candidate_set.clone());
    if let Some(cs) = candidate_set
        .as_deref()
        .filter(|c| !["decision", "tier", "global"].contains(c))
    {
        ctx.error(
            &ap.key("adaptation").key("candidate_set"),
            format!("candidate_set \"{cs}\" is not one of decision, tier, global"),
        );
    }
    Adaptations {
        mode: top,
        adaptation: adaptation_mode,
        candidate_set,
        protection: protection_mode,
        stability_weight: protection.as_ref().and_then(|p| p.stability_weight),
        switch_margin: protection.as_ref().and_then(|p| p.switch_margin),
    }
}

fn plugins(raw: &[RawPlugin], pp: &YamlPath, ctx: &mut Ctx<'_>) -> Vec<Plugin> {
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for (i, p) in raw.iter().enumerate() {
        let ip = pp.index(i);
        let Some((kind, deprecated)) = PluginKind::parse(&p.kind) else {
            let names: Vec<&str> = PluginKind::TABLE.iter().map(|(_, n)| *n).collect();
            ctx.error(&ip.key("type"), unknown("plugin type", &p.kind, &names));
            continue;
        };
        if deprecated {
            ctx.warn(
                &ip.key("type"),
                format!(
                    "plugin type \"{}\" is a deprecated alias; write \"{}\"",
                    p.kind,
                    kind.as_str()
                ),
            );
        }
        if !seen.insert(kind) {
            ctx.error(
                &ip.key("type"),
                format!(
                    "plugin \"{}\" appears more than once in this decision",
                    kind.as_str()
                ),
            );
            continue;
        }
        let Some(cfg) = &p.configuration else {
            ctx.error(
                &ip.key("configuration"),
                format!("plugin \"{}\" needs a configuration block", kind.as_str()),
            );
            continue;
        };
        if let Some(plugin) = plugin(kind, cfg, &ip.key("configuration"), ctx) {
            out.push(plugin);
        }
    }
    out
}

fn de<T: DeserializeOwned>(
    ctx: &mut Ctx<'_>,
    cfg: &Value,
    path: &YamlPath,
    how: Unknown,
) -> Option<T> {
    ctx.de(cfg, path, how)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SystemPromptCfg {
    enabled: Option<bool>,
    system_prompt: Option<String>,
    mode: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NameValue {
    name: String,
    value: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct HeaderMutationCfg {
    #[serde(default)]
    add: Vec<NameValue>,
    #[serde(default)]
    update: Vec<NameValue>,
    #[serde(default)]
    delete: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RouterReplayCfg {
    enabled: Option<bool>,
    max_records: Option<u64>,
    #[serde(default)]
    capture_request_body: bool,
    #[serde(default)]
    capture_response_body: bool,
    max_body_bytes: Option<u64>,
    max_tool_trace_bytes: Option<u64>,
    max_tool_trace_steps: Option<u64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ToolsCfg {
    enabled: Option<bool>,
    mode: Option<String>,
    semantic_selection: Option<bool>,
    #[serde(default)]
    allow_tools: Vec<String>,
    #[serde(default)]
    block_tools: Vec<String>,
    #[serde(default)]
    strip_tool_history: bool,
    strategy: Option<String>,
    dynamic_retrieval: Option<Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RequestParamsCfg {
    #[serde(default)]
    blocked_params: Vec<String>,
    max_tokens_limit: Option<u64>,
    max_n: Option<u64>,
    #[serde(default)]
    strip_unknown: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FastResponseCfg {
    #[serde(default)]
    message: String,
}

/// Keys accepted by the plugins that upstream decodes strictly.
const RESPONSE_CACHE_KEYS: &[&str] = &[
    "enabled",
    "mode",
    "scope",
    "semantic",
    "ttl_seconds",
    "request_controls",
    "personalized",
    "revision",
    "similarity_threshold",
    "allow_request_controls",
    "control_header",
];
const RESPONSE_JAILBREAK_KEYS: &[&str] = &["enabled", "threshold", "action"];
const CONTEXT_COMPRESSION_KEYS: &[&str] = &[
    "enabled",
    "mode",
    "budget",
    "targets",
    "scoring",
    "recovery",
    "request_controls",
    "failure_mode",
];

fn plugin(kind: PluginKind, cfg: &Value, cp: &YamlPath, ctx: &mut Ctx<'_>) -> Option<Plugin> {
    if !cfg.is_mapping() && !cfg.is_null() {
        ctx.error(cp, "plugin configuration must be a mapping");
        return None;
    }
    let empty = Value::Mapping(Default::default());
    let cfg = if cfg.is_null() { &empty } else { cfg };
    let enabled_flag = cfg.get("enabled").and_then(Value::as_bool);
    match kind {
        PluginKind::SystemPrompt => {
            let c: SystemPromptCfg = de(ctx, cfg, cp, Unknown::Warn)?;
            let prompt = c.system_prompt.unwrap_or_default();
            let replace = match c.mode.as_deref() {
                None | Some("insert") => false,
                Some("replace") => true,
                Some(other) => {
                    ctx.error(
                        &cp.key("mode"),
                        format!("mode \"{other}\" is not one of insert, replace"),
                    );
                    false
                }
            };
            let enabled = c.enabled.unwrap_or(!prompt.is_empty());
            if enabled && prompt.is_empty() {
                ctx.error(
                    &cp.key("system_prompt"),
                    "an enabled system_prompt plugin needs system_prompt text",
                );
            }
            Some(Plugin::SystemPrompt(SystemPrompt {
                enabled,
                prompt,
                replace,
            }))
        }
        PluginKind::HeaderMutation => {
            let c: HeaderMutationCfg = de(ctx, cfg, cp, Unknown::Warn)?;
            for (key, list) in [("add", &c.add), ("update", &c.update)] {
                for (i, nv) in list.iter().enumerate() {
                    if nv.name.trim().is_empty()
                        || !nv.name.bytes().all(|b| b.is_ascii_graphic() && b != b':')
                    {
                        ctx.error(
                            &cp.key(key).index(i).key("name"),
                            format!("\"{}\" is not a valid header name", nv.name),
                        );
                    }
                }
            }
            let pairs = |v: Vec<NameValue>| v.into_iter().map(|nv| (nv.name, nv.value)).collect();
            Some(Plugin::HeaderMutation(HeaderMutation {
                add: pairs(c.add),
                update: pairs(c.update),
                delete: c.delete,
            }))
        }
        PluginKind::RouterReplay => {
            let c: RouterReplayCfg = de(ctx, cfg, cp, Unknown::Warn)?;
            let _ = (c.max_tool_trace_bytes, c.max_tool_trace_steps);
            Some(Plugin::RouterReplay(RouterReplay {
                enabled: c.enabled.unwrap_or(true),
                max_records: c.max_records,
                capture_request_body: c.capture_request_body,
                capture_response_body: c.capture_response_body,
                max_body_bytes: c.max_body_bytes,
            }))
        }
        PluginKind::Tools => {
            let c: ToolsCfg = de(ctx, cfg, cp, Unknown::Warn)?;
            let _ = (&c.strategy, &c.dynamic_retrieval);
            let mode = match c.mode.as_deref() {
                None | Some("passthrough") => ToolsMode::Passthrough,
                Some("none") => ToolsMode::None,
                Some("filtered") => ToolsMode::Filtered,
                Some(other) => {
                    ctx.error(
                        &cp.key("mode"),
                        format!("mode \"{other}\" is not one of passthrough, none, filtered"),
                    );
                    ToolsMode::Passthrough
                }
            };
            if mode != ToolsMode::Filtered
                && (!c.allow_tools.is_empty() || !c.block_tools.is_empty())
            {
                ctx.error(
                    cp,
                    "allow_tools and block_tools only apply with mode: filtered",
                );
            }
            if mode == ToolsMode::Filtered && c.allow_tools.is_empty() && c.block_tools.is_empty() {
                ctx.error(cp, "mode: filtered needs allow_tools or block_tools");
            }
            if c.strip_tool_history && mode != ToolsMode::None {
                ctx.error(
                    &cp.key("strip_tool_history"),
                    "strip_tool_history only applies with mode: none",
                );
            }
            Some(Plugin::Tools(Tools {
                enabled: c.enabled.unwrap_or(true),
                mode,
                semantic_selection: c.semantic_selection.unwrap_or(true),
                allow_tools: c.allow_tools,
                block_tools: c.block_tools,
                strip_tool_history: c.strip_tool_history,
            }))
        }
        PluginKind::FastResponse => {
            let c: FastResponseCfg = de(ctx, cfg, cp, Unknown::Warn)?;
            if c.message.trim().is_empty() {
                ctx.error(
                    &cp.key("message"),
                    "fast_response needs a non-empty message",
                );
            }
            Some(Plugin::FastResponse { message: c.message })
        }
        PluginKind::RequestParams => {
            let c: RequestParamsCfg = de(ctx, cfg, cp, Unknown::Warn)?;
            Some(Plugin::RequestParams(RequestParams {
                blocked_params: c.blocked_params,
                max_tokens_limit: c.max_tokens_limit,
                max_n: c.max_n,
                strip_unknown: c.strip_unknown,
            }))
        }
        other => {
            let strict = match other {
                PluginKind::ResponseCache => Some(RESPONSE_CACHE_KEYS),
                PluginKind::ResponseJailbreak => Some(RESPONSE_JAILBREAK_KEYS),
                PluginKind::ContextCompression => Some(CONTEXT_COMPRESSION_KEYS),
                _ => None,
            };
            if let (Some(keys), Some(map)) = (strict, cfg.as_mapping()) {
                ctx.check_keys(map, cp, keys, Unknown::Error);
            }
            if other == PluginKind::ResponseJailbreak {
                if let Some(t) = cfg.get("threshold").and_then(Value::as_f64) {
                    super::unit_interval(ctx, &cp.key("threshold"), t, "threshold");
                }
                if let Some(a) = cfg
                    .get("action")
                    .and_then(Value::as_str)
                    .filter(|a| !["header", "block", "none"].contains(a))
                {
                    ctx.error(
                        &cp.key("action"),
                        format!("action \"{a}\" is not one of header, block, none"),
                    );
                }
            }
            if other == PluginKind::ResponseCache {
                if let Some(m) = cfg
                    .get("mode")
                    .and_then(Value::as_str)
                    .filter(|m| !["semantic", "exact", "exact_then_semantic"].contains(m))
                {
                    ctx.error(
                        &cp.key("mode"),
                        format!("mode \"{m}\" is not one of semantic, exact, exact_then_semantic"),
                    );
                }
            }
            Some(Plugin::Other {
                kind: other,
                enabled: enabled_flag.unwrap_or(true),
                configuration: cfg.clone(),
            })
        }
    }
}
