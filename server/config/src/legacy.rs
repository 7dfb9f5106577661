//! Legacy and removed shapes (contract §1.9): renamed with a deprecation warning where
//! upstream still accepts them, rejected with an error that says what to write instead where
//! it does not. Runs on the raw YAML tree before anything is typed; rejected keys are removed
//! so later stages do not report them twice.

use serde_norway::{Mapping, Value};

use crate::ctx::{Ctx, Unknown};
use crate::path::YamlPath;

/// Flat pre-v0.3 top-level keys and where they live now.
const FLAT_KEYS: &[(&str, &str)] = &[
    ("decisions", "routing.decisions"),
    ("signals", "routing.signals"),
    ("keyword_rules", "routing.signals.keywords"),
    ("embedding_rules", "routing.signals.embeddings"),
    ("categories", "routing.signals.domains"),
    ("fact_check_rules", "routing.signals.fact_check"),
    ("user_feedback_rules", "routing.signals.user_feedbacks"),
    ("reask_rules", "routing.signals.reasks"),
    ("preference_rules", "routing.signals.preferences"),
    ("language_rules", "routing.signals.language"),
    ("context_rules", "routing.signals.context"),
    ("structure_rules", "routing.signals.structure"),
    ("complexity_rules", "routing.signals.complexity"),
    ("modality_rules", "routing.signals.modality"),
    ("jailbreak_rules", "routing.signals.jailbreak"),
    ("pii_rules", "routing.signals.pii"),
    ("model_config", "providers.models[] with backend_refs"),
    ("vllm_endpoints", "providers.models[].backend_refs"),
    ("provider_profiles", "providers.models[].backend_refs"),
];

const PROVIDER_KEYS: &[(&str, &str)] = &[
    ("default_model", "providers.defaults.default_model"),
    (
        "reasoning_families",
        "providers.defaults.reasoning_families",
    ),
    (
        "default_reasoning_effort",
        "providers.defaults.default_reasoning_effort",
    ),
    ("model_targets", "providers.models[].backend_refs"),
    ("backends", "providers.models[].backend_refs"),
    (
        "auth_profiles",
        "providers.models[].backend_refs[] (api_key, auth_header, auth_prefix)",
    ),
];

const PROVIDER_MODEL_KEYS: &[(&str, &str)] = &[
    ("access", "backend_refs[]"),
    ("endpoints", "backend_refs[] (endpoint, protocol, weight)"),
    ("access_key", "backend_refs[].api_key (or api_key_env)"),
    ("param_size", "routing.modelCards[].param_size"),
    (
        "context_window_size",
        "routing.modelCards[].context_window_size",
    ),
    ("description", "routing.modelCards[].description"),
    ("capabilities", "routing.modelCards[].capabilities"),
    ("loras", "routing.modelCards[].loras"),
    ("quality_score", "routing.modelCards[].quality_score"),
    ("modality", "routing.modelCards[].modality"),
    ("tags", "routing.modelCards[].tags"),
];

const REMOVED_SELECTORS: &[&str] = &[
    "session_aware",
    "elo",
    "rl_driven",
    "gmtrouter",
    "bandit",
    "personalization",
];

const REMOVED_MODEL_SELECTION: &[&str] = &[
    "session_aware",
    "model_switch_gate",
    "lookup_tables",
    "elo",
    "rl_driven",
    "gmtrouter",
    "bandit",
    "personalization",
];

/// Keys of `routing.decisions[].adaptations` and its sub-blocks; upstream rejects any other.
const ADAPTATION_KEYS: &[&str] = &["mode", "adaptation", "protection", "session_aware"];
const ADAPTATION_SUB_KEYS: &[(&str, &[&str])] = &[
    ("adaptation", &["mode", "candidate_set"]),
    ("protection", &["mode", "stability_weight", "switch_margin"]),
    (
        "session_aware",
        &["mode", "stability_weight", "switch_margin"],
    ),
];

const LEARNING_HINT: &str = "Router Learning is configured under global.router.learning \
(enabled, adaptation, protection{scope, identity, tuning}, state_store)";

/// Applies the rename and rejection rules to the document root.
pub(crate) fn normalize(root: &mut Mapping, ctx: &mut Ctx<'_>) {
    let top = YamlPath::root();
    for (key, to) in FLAT_KEYS {
        if root.remove(*key).is_some() {
            ctx.error(
                &top.key(key),
                format!(
                    "the flat pre-v0.3 key \"{key}\" is no longer accepted; move it to {to} \
                     (`vllm-sr config migrate` does this)"
                ),
            );
        }
    }
    if let Some(Value::Mapping(routing)) = root.get_mut("routing") {
        normalize_routing(routing, &top.key("routing"), ctx, true);
    }
    if let Some(Value::Sequence(recipes)) = root.get_mut("recipes") {
        for (i, r) in recipes.iter_mut().enumerate() {
            if let Some(Value::Mapping(routing)) = r.get_mut("routing") {
                let p = top.key("recipes").index(i).key("routing");
                normalize_routing(routing, &p, ctx, false);
            }
        }
    }
    if let Some(Value::Mapping(providers)) = root.get_mut("providers") {
        normalize_providers(providers, &top.key("providers"), ctx);
    }
    if let Some(Value::Mapping(global)) = root.get_mut("global") {
        normalize_global(global, &top.key("global"), ctx);
    }
}

fn normalize_routing(routing: &mut Mapping, path: &YamlPath, ctx: &mut Ctx<'_>, top: bool) {
    if top && routing.contains_key("models") {
        routing.remove("models");
        ctx.error(
            &path.key("models"),
            "routing.models was renamed; declare the models as routing.modelCards",
        );
    }
    if let Some(Value::Mapping(signals)) = routing.get_mut("signals") {
        let sp = path.key("signals");
        for key in ["category_kb", "taxonomy"] {
            if signals.remove(key).is_some() {
                ctx.error(
                    &sp.key(key),
                    format!(
                        "routing.signals.{key} was removed; declare the knowledge base in \
                         global.model_catalog.kbs and reference it from routing.signals.kb"
                    ),
                );
            }
        }
        if let Some(Value::Sequence(rules)) = signals.get_mut("structure") {
            for (i, rule) in rules.iter_mut().enumerate() {
                if let Some(Value::Mapping(feature)) = rule.get_mut("feature") {
                    if feature.remove("normalize_by").is_some() {
                        ctx.error(
                            &sp.key("structure")
                                .index(i)
                                .key("feature")
                                .key("normalize_by"),
                            "feature.normalize_by was removed; use feature.type: density, which \
                             divides the count by the text's word/character units",
                        );
                    }
                }
            }
        }
    }
    if let Some(Value::Sequence(decisions)) = routing.get_mut("decisions") {
        for (i, d) in decisions.iter_mut().enumerate() {
            if let Value::Mapping(d) = d {
                normalize_decision(d, &path.key("decisions").index(i), ctx);
            }
        }
    }
}

fn normalize_decision(d: &mut Mapping, path: &YamlPath, ctx: &mut Ctx<'_>) {
    if d.remove("modelSelectionAlgorithm").is_some() {
        ctx.error(
            &path.key("modelSelectionAlgorithm"),
            "modelSelectionAlgorithm was removed; write algorithm: {type: <name>, <name>: {...}}",
        );
    }
    for key in ["tool_scope", "allow_tools", "block_tools"] {
        if d.remove(key).is_some() {
            ctx.error(
                &path.key(key),
                format!(
                    "decision-level {key} was removed; configure a tools plugin: \
                     {{type: tools, configuration: {{mode: filtered, allow_tools: [...]}}}}"
                ),
            );
        }
    }
    if let Some(Value::Mapping(a)) = d.get_mut("adaptations") {
        let ap = path.key("adaptations");
        reject_unknown(a, &ap, ADAPTATION_KEYS, ctx);
        for (key, known) in ADAPTATION_SUB_KEYS {
            if let Some(Value::Mapping(sub)) = a.get_mut(*key) {
                reject_unknown(sub, &ap.key(key), known, ctx);
            }
        }
    }
    if let Some(Value::Mapping(alg)) = d.get_mut("algorithm") {
        let ap = path.key("algorithm");
        if let Some(t) = alg.get("type").and_then(Value::as_str) {
            if REMOVED_SELECTORS.contains(&t) {
                let t = t.to_string();
                ctx.error(
                    &ap.key("type"),
                    format!("algorithm type \"{t}\" was removed; {LEARNING_HINT}"),
                );
                alg.insert(Value::from("type"), Value::from("static"));
            }
        }
        for key in REMOVED_SELECTORS {
            if alg.remove(*key).is_some() {
                ctx.error(
                    &ap.key(key),
                    format!("algorithm.{key} was removed; {LEARNING_HINT}"),
                );
            }
        }
    }
}

/// Reports keys of a strict mapping that are not in `known` as errors and removes them, so
/// the typed stage does not report them again as warnings.
fn reject_unknown(m: &mut Mapping, path: &YamlPath, known: &[&str], ctx: &mut Ctx<'_>) {
    let unknown: Vec<String> = m
        .keys()
        .filter_map(Value::as_str)
        .filter(|k| !known.contains(k))
        .map(str::to_string)
        .collect();
    for key in unknown {
        ctx.unknown_key(path, &key, known, Unknown::Error);
        m.remove(key.as_str());
    }
}

fn normalize_providers(p: &mut Mapping, path: &YamlPath, ctx: &mut Ctx<'_>) {
    for (key, to) in PROVIDER_KEYS {
        if p.remove(*key).is_some() {
            ctx.error(
                &path.key(key),
                format!("providers.{key} moved; write it as {to}"),
            );
        }
    }
    if let Some(Value::Sequence(models)) = p.get_mut("models") {
        for (i, m) in models.iter_mut().enumerate() {
            if let Value::Mapping(m) = m {
                for (key, to) in PROVIDER_MODEL_KEYS {
                    if m.remove(*key).is_some() {
                        ctx.error(
                            &path.key("models").index(i).key(key),
                            format!("providers.models[].{key} moved; write it as {to}"),
                        );
                    }
                }
            }
        }
    }
}

fn normalize_global(g: &mut Mapping, path: &YamlPath, ctx: &mut Ctx<'_>) {
    if g.remove("modules").is_some() {
        ctx.error(
            &path.key("modules"),
            "global.modules was re-layered; move its parts to global.router, global.services, \
             global.stores, global.integrations and global.model_catalog.modules",
        );
    }
    if let Some(Value::Mapping(stores)) = g.get_mut("stores") {
        if let Some(old) = stores.remove("semantic_cache") {
            let sp = path.key("stores");
            if stores.contains_key("response_cache") {
                ctx.error(
                    &sp.key("semantic_cache"),
                    "global.stores.semantic_cache and global.stores.response_cache are both set; \
                     keep only response_cache",
                );
            } else {
                ctx.warn(
                    &sp.key("semantic_cache"),
                    "global.stores.semantic_cache is deprecated; it was read as \
                     global.stores.response_cache (rename the key)",
                );
                stores.insert(Value::from("response_cache"), old);
            }
        }
    }
    if let Some(Value::Mapping(catalog)) = g.get_mut("model_catalog") {
        let cp = path.key("model_catalog");
        if catalog.remove("classifiers").is_some() {
            ctx.error(
                &cp.key("classifiers"),
                "global.model_catalog.classifiers was removed; declare knowledge bases in \
                 global.model_catalog.kbs and reference them from routing.signals.kb",
            );
        }
        if let Some(Value::Mapping(emb)) = catalog.get_mut("embeddings") {
            if emb.remove("bert").is_some() {
                ctx.error(
                    &cp.key("embeddings").key("bert"),
                    "model_catalog.embeddings.bert was removed; set \
                     model_catalog.embeddings.semantic.bert_model_path",
                );
            }
        }
    }
    if let Some(Value::Mapping(router)) = g.get_mut("router") {
        let rp = path.key("router");
        if let Some(Value::Mapping(ms)) = router.get_mut("model_selection") {
            let mp = rp.key("model_selection");
            for key in REMOVED_MODEL_SELECTION {
                if ms.remove(*key).is_some() {
                    ctx.error(
                        &mp.key(key),
                        format!("model_selection.{key} was removed; {LEARNING_HINT}"),
                    );
                }
            }
            if let Some(m) = ms.get("method").and_then(Value::as_str) {
                if REMOVED_MODEL_SELECTION.contains(&m) {
                    let m = m.to_string();
                    ctx.error(
                        &mp.key("method"),
                        format!("model_selection.method \"{m}\" was removed; {LEARNING_HINT}"),
                    );
                    ms.remove("method");
                }
            }
        }
        if let Some(Value::Mapping(learning)) = router.get_mut("learning") {
            let lp = rp.key("learning");
            if learning.remove("adaptations").is_some() {
                ctx.error(
                    &lp.key("adaptations"),
                    "global.router.learning.adaptations.session_aware is not part of the v0.3 \
                     contract; write global.router.learning.protection: {enabled, scope, \
                     identity: {headers: {session, conversation}}, tuning: {...}}",
                );
            }
        }
    }
}
