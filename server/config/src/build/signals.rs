//! Builds typed signal rules of one recipe and checks each family's own constraints (§3).

use std::collections::HashSet;

use crate::ctx::Ctx;
use crate::model::global::KnowledgeBase;
use crate::model::*;
use crate::path::YamlPath;
use crate::raw::*;

use super::signal_rules::{conversation, kb_rule, keyword, structure};
use super::{token_count, unit_interval};

/// The 14 MMLU-Pro categories the domain classifier emits.
pub const MMLU_CATEGORIES: [&str; 14] = [
    "biology",
    "business",
    "chemistry",
    "computer science",
    "economics",
    "engineering",
    "health",
    "history",
    "law",
    "math",
    "other",
    "philosophy",
    "physics",
    "psychology",
];

/// ISO 639-1 codes of the languages lingua detects.
pub const LINGUA_LANGUAGES: [&str; 75] = [
    "af", "ar", "az", "be", "bg", "bn", "bs", "ca", "cs", "cy", "da", "de", "el", "en", "eo", "es",
    "et", "eu", "fa", "fi", "fr", "ga", "gu", "he", "hi", "hr", "hu", "hy", "id", "is", "it", "ja",
    "ka", "kk", "ko", "la", "lg", "lt", "lv", "mi", "mk", "mn", "mr", "ms", "nb", "nl", "nn", "pa",
    "pl", "pt", "ro", "ru", "sk", "sl", "sn", "so", "sq", "sr", "st", "sv", "sw", "ta", "te", "th",
    "tl", "tn", "tr", "ts", "uk", "ur", "vi", "xh", "yo", "zh", "zu",
];

pub(crate) struct SignalInput<'a> {
    pub(crate) raw: &'a RawSignals,
    pub(crate) path: YamlPath,
    pub(crate) kbs: &'a [KnowledgeBase],
    /// Names used by `domain` leaves, for auto-generated domains when none are declared.
    pub(crate) domain_leaf_names: Vec<String>,
}

/// Reports duplicate names within one family.
fn unique_names<'n>(
    ctx: &mut Ctx<'_>,
    path: &YamlPath,
    names: impl Iterator<Item = &'n str>,
    case_insensitive: bool,
) {
    let mut seen = HashSet::new();
    for (i, n) in names.enumerate() {
        let key = if case_insensitive {
            n.to_lowercase()
        } else {
            n.to_string()
        };
        if n.trim().is_empty() {
            ctx.error(&path.index(i).key("name"), "name must not be empty");
        } else if n.trim() != n {
            ctx.error(
                &path.index(i).key("name"),
                format!("name \"{n}\" has surrounding whitespace"),
            );
        } else if !seen.insert(key) {
            ctx.error(
                &path.index(i).key("name"),
                format!("duplicate name \"{n}\""),
            );
        }
    }
}

pub(super) fn check_regex(
    ctx: &mut Ctx<'_>,
    path: &YamlPath,
    pattern: &str,
    case_insensitive: bool,
) {
    let full = if case_insensitive {
        format!("(?i){pattern}")
    } else {
        pattern.to_string()
    };
    if let Err(e) = regex::RegexBuilder::new(&full).size_limit(1 << 22).build() {
        let first = e
            .to_string()
            .lines()
            .last()
            .unwrap_or_default()
            .trim()
            .to_string();
        ctx.error(path, format!("invalid regex \"{pattern}\": {first}"));
    }
}

pub(crate) fn build_signals(input: &SignalInput<'_>, ctx: &mut Ctx<'_>) -> Signals {
    let raw = input.raw;
    let p = &input.path;
    let mut s = Signals::default();

    let kp = p.key("keywords");
    unique_names(
        ctx,
        &kp,
        raw.keywords.iter().map(|r| r.name.as_str()),
        false,
    );
    for (i, r) in raw.keywords.iter().enumerate() {
        if let Some(rule) = keyword(r, &kp.index(i), ctx) {
            s.keywords.push(rule);
        }
    }

    let ep = p.key("embeddings");
    unique_names(
        ctx,
        &ep,
        raw.embeddings.iter().map(|r| r.name.as_str()),
        false,
    );
    for (i, r) in raw.embeddings.iter().enumerate() {
        let rp = ep.index(i);
        unit_interval(ctx, &rp.key("threshold"), r.threshold, "threshold");
        if r.candidates.iter().all(|c| c.trim().is_empty()) {
            ctx.error(
                &rp.key("candidates"),
                "an embedding rule needs at least one candidate text",
            );
        }
        let aggregation = match r.aggregation_method.as_deref() {
            None | Some("max") => Aggregation::Max,
            Some("mean") => Aggregation::Mean,
            Some("any") => Aggregation::Any,
            Some(other) => {
                ctx.error(
                    &rp.key("aggregation_method"),
                    format!("aggregation_method \"{other}\" is not one of max, mean, any"),
                );
                Aggregation::Max
            }
        };
        let image_query = match r.query_modality.as_deref() {
            None | Some("text") => false,
            Some("image") => true,
            Some("audio") => {
                ctx.error(
                    &rp.key("query_modality"),
                    "query_modality \"audio\" is not supported; use text or image",
                );
                false
            }
            Some(other) => {
                ctx.error(
                    &rp.key("query_modality"),
                    format!("query_modality \"{other}\" is not one of text, image"),
                );
                false
            }
        };
        s.embeddings.push(EmbeddingRule {
            name: r.name.clone(),
            threshold: r.threshold,
            candidates: r.candidates.clone(),
            aggregation,
            image_query,
        });
    }

    let dp = p.key("domains");
    unique_names(ctx, &dp, raw.domains.iter().map(|r| r.name.as_str()), false);
    for (i, r) in raw.domains.iter().enumerate() {
        for (j, c) in r.mmlu_categories.iter().enumerate() {
            if !MMLU_CATEGORIES.contains(&c.as_str()) {
                ctx.error(
                    &dp.index(i).key("mmlu_categories").index(j),
                    format!(
                        "\"{c}\" is not an MMLU category; use one of: {}",
                        MMLU_CATEGORIES.join(", ")
                    ),
                );
            }
        }
        s.domains.push(DomainRule {
            name: r.name.clone(),
            description: r.description.clone().unwrap_or_default(),
            mmlu_categories: r.mmlu_categories.clone(),
            model_scores: r
                .model_scores
                .iter()
                .map(|m| (m.model.clone(), m.score, m.use_reasoning))
                .collect(),
        });
    }
    if raw.domains.is_empty() {
        // Upstream quirk (§1.5): domains referenced by decisions but not declared are generated
        // with mmlu_categories [other].
        for name in &input.domain_leaf_names {
            if !s.domains.iter().any(|d| &d.name == name) {
                s.domains.push(DomainRule {
                    name: name.clone(),
                    description: name.clone(),
                    mmlu_categories: vec!["other".into()],
                    model_scores: Vec::new(),
                });
            }
        }
    }

    s.fact_check = named(
        ctx,
        &p.key("fact_check"),
        &raw.fact_check,
        Some(&["needs_fact_check", "no_fact_check_needed"]),
    );
    s.user_feedbacks = named(
        ctx,
        &p.key("user_feedbacks"),
        &raw.user_feedbacks,
        Some(&[
            "satisfied",
            "need_clarification",
            "wrong_answer",
            "want_different",
        ]),
    );
    s.modality = named(ctx, &p.key("modality"), &raw.modality, None);
    for (i, r) in raw.modality.iter().enumerate() {
        if !["AR", "DIFFUSION", "BOTH"].contains(&r.name.as_str()) {
            ctx.error(
                &p.key("modality").index(i).key("name"),
                format!("modality \"{}\" is not one of AR, DIFFUSION, BOTH", r.name),
            );
        }
    }

    let rp = p.key("reasks");
    unique_names(ctx, &rp, raw.reasks.iter().map(|r| r.name.as_str()), false);
    for (i, r) in raw.reasks.iter().enumerate() {
        let threshold = r.threshold.unwrap_or(0.8);
        unit_interval(ctx, &rp.index(i).key("threshold"), threshold, "threshold");
        let lookback_turns = r.lookback_turns.unwrap_or(1);
        if lookback_turns < 1 {
            ctx.error(
                &rp.index(i).key("lookback_turns"),
                "lookback_turns must be at least 1",
            );
        }
        s.reasks.push(ReaskRule {
            name: r.name.clone(),
            threshold,
            lookback_turns,
        });
    }

    let pp = p.key("preferences");
    unique_names(
        ctx,
        &pp,
        raw.preferences.iter().map(|r| r.name.as_str()),
        false,
    );
    for (i, r) in raw.preferences.iter().enumerate() {
        let threshold = r.threshold.unwrap_or(0.0);
        unit_interval(ctx, &pp.index(i).key("threshold"), threshold, "threshold");
        if r.examples.is_empty() && r.description.as_deref().unwrap_or("").trim().is_empty() {
            ctx.error(
                &pp.index(i),
                "a preference rule needs a description or examples to compare against",
            );
        }
        s.preferences.push(PreferenceRule {
            name: r.name.clone(),
            description: r.description.clone().unwrap_or_default(),
            examples: r.examples.clone(),
            threshold,
        });
    }

    let lp = p.key("language");
    unique_names(
        ctx,
        &lp,
        raw.language.iter().map(|r| r.name.as_str()),
        false,
    );
    for (i, r) in raw.language.iter().enumerate() {
        if !LINGUA_LANGUAGES.contains(&r.name.as_str()) {
            ctx.error(
                &lp.index(i).key("name"),
                format!(
                    "\"{}\" is not a lowercase ISO 639-1 language code known to the detector",
                    r.name
                ),
            );
        }
        let threshold = r.threshold.unwrap_or(0.0);
        unit_interval(ctx, &lp.index(i).key("threshold"), threshold, "threshold");
        s.language.push(LanguageRule {
            name: r.name.clone(),
            threshold,
        });
    }

    let cp = p.key("context");
    unique_names(ctx, &cp, raw.context.iter().map(|r| r.name.as_str()), false);
    for (i, r) in raw.context.iter().enumerate() {
        let min = token_count(ctx, &cp.index(i).key("min_tokens"), &r.min_tokens.0);
        let max = token_count(ctx, &cp.index(i).key("max_tokens"), &r.max_tokens.0);
        if let (Some(min), Some(max)) = (min, max) {
            if min > max {
                ctx.error(
                    &cp.index(i),
                    format!("min_tokens ({min}) is greater than max_tokens ({max})"),
                );
            }
            s.context.push(ContextRule {
                name: r.name.clone(),
                min_tokens: min,
                max_tokens: max,
            });
        }
    }

    let sp = p.key("structure");
    unique_names(
        ctx,
        &sp,
        raw.structure.iter().map(|r| r.name.as_str()),
        false,
    );
    for (i, r) in raw.structure.iter().enumerate() {
        if let Some(rule) = structure(r, &sp.index(i), ctx) {
            s.structure.push(rule);
        }
    }

    let xp = p.key("complexity");
    unique_names(
        ctx,
        &xp,
        raw.complexity.iter().map(|r| r.name.as_str()),
        false,
    );
    for (i, r) in raw.complexity.iter().enumerate() {
        let rp = xp.index(i);
        if r.name.contains(':') {
            ctx.error(
                &rp.key("name"),
                "a complexity rule name must not contain ':' (leaves use name:level)",
            );
        }
        if r.threshold < 0.0 {
            ctx.error(&rp.key("threshold"), "threshold must not be negative");
        }
        if r.hard.candidates.is_empty() && r.hard.image_candidates.is_empty() {
            ctx.error(&rp.key("hard"), "a complexity rule needs hard candidates");
        }
        if r.easy.candidates.is_empty() && r.easy.image_candidates.is_empty() {
            ctx.error(&rp.key("easy"), "a complexity rule needs easy candidates");
        }
        s.complexity.push(ComplexityRule {
            name: r.name.clone(),
            threshold: r.threshold,
            hard: r.hard.candidates.clone(),
            hard_images: r.hard.image_candidates.clone(),
            easy: r.easy.candidates.clone(),
            easy_images: r.easy.image_candidates.clone(),
            composer: None, // compiled after all signals are known
        });
    }

    let ap = p.key("role_bindings");
    unique_names(
        ctx,
        &ap,
        raw.role_bindings.iter().map(|r| r.name.as_str()),
        false,
    );
    for (i, r) in raw.role_bindings.iter().enumerate() {
        let rp = ap.index(i);
        if r.role.trim().is_empty() {
            ctx.error(&rp.key("role"), "a role binding needs a role");
        }
        if r.subjects.is_empty() {
            ctx.error(
                &rp.key("subjects"),
                "a role binding needs at least one subject",
            );
        }
        let (mut users, mut groups) = (Vec::new(), Vec::new());
        for (j, subj) in r.subjects.iter().enumerate() {
            match subj.kind.as_str() {
                "User" => users.push(subj.name.clone()),
                "Group" => groups.push(subj.name.clone()),
                other => ctx.error(
                    &rp.key("subjects").index(j).key("kind"),
                    format!("subject kind \"{other}\" is not User or Group"),
                ),
            }
        }
        if !s.roles.contains(&r.role) {
            s.roles.push(r.role.clone());
        }
        s.role_bindings.push(RoleBinding {
            name: r.name.clone(),
            role: r.role.clone(),
            users,
            groups,
        });
    }

    let jp = p.key("jailbreak");
    unique_names(
        ctx,
        &jp,
        raw.jailbreak.iter().map(|r| r.name.as_str()),
        false,
    );
    for (i, r) in raw.jailbreak.iter().enumerate() {
        let rp = jp.index(i);
        let method = match r.method.as_deref() {
            None | Some("classifier") => JailbreakMethod::Classifier,
            Some("contrastive") => JailbreakMethod::Contrastive,
            Some(other) => {
                ctx.error(
                    &rp.key("method"),
                    format!("method \"{other}\" is not one of classifier, contrastive"),
                );
                JailbreakMethod::Classifier
            }
        };
        let default = if method == JailbreakMethod::Contrastive {
            0.10
        } else {
            0.5
        };
        let threshold = r.threshold.unwrap_or(default);
        unit_interval(ctx, &rp.key("threshold"), threshold, "threshold");
        if method == JailbreakMethod::Contrastive
            && (r.jailbreak_patterns.is_empty() || r.benign_patterns.is_empty())
        {
            ctx.error(
                &rp,
                "a contrastive jailbreak rule needs jailbreak_patterns and benign_patterns",
            );
        }
        s.jailbreak.push(JailbreakRule {
            name: r.name.clone(),
            method,
            threshold,
            include_history: r.include_history,
            jailbreak_patterns: r.jailbreak_patterns.clone(),
            benign_patterns: r.benign_patterns.clone(),
        });
    }

    let ip = p.key("pii");
    unique_names(ctx, &ip, raw.pii.iter().map(|r| r.name.as_str()), false);
    for (i, r) in raw.pii.iter().enumerate() {
        let threshold = r.threshold.unwrap_or(0.5);
        unit_interval(ctx, &ip.index(i).key("threshold"), threshold, "threshold");
        s.pii.push(PiiRule {
            name: r.name.clone(),
            threshold,
            pii_types_allowed: r
                .pii_types_allowed
                .iter()
                .map(|t| t.to_uppercase())
                .collect(),
            include_history: r.include_history,
        });
    }

    let bp = p.key("kb");
    unique_names(ctx, &bp, raw.kb.iter().map(|r| r.name.as_str()), false);
    for (i, r) in raw.kb.iter().enumerate() {
        if let Some(rule) = kb_rule(r, &bp.index(i), input.kbs, ctx) {
            s.kb.push(rule);
        }
    }

    let vp = p.key("conversation");
    unique_names(
        ctx,
        &vp,
        raw.conversation.iter().map(|r| r.name.as_str()),
        false,
    );
    for (i, r) in raw.conversation.iter().enumerate() {
        if let Some(rule) = conversation(r, &vp.index(i), ctx) {
            s.conversation.push(rule);
        }
    }

    let evp = p.key("events");
    unique_names(ctx, &evp, raw.events.iter().map(|r| r.name.as_str()), false);
    for (i, r) in raw.events.iter().enumerate() {
        for (j, sev) in r.severities.iter().enumerate() {
            if !["critical", "high", "medium", "low"].contains(&sev.as_str()) {
                ctx.error(
                    &evp.index(i).key("severities").index(j),
                    format!("severity \"{sev}\" is not one of critical, high, medium, low"),
                );
            }
        }
        if r.event_types.is_empty()
            && r.severities.is_empty()
            && r.action_codes.is_empty()
            && !r.temporal
        {
            ctx.error(&evp.index(i), "an event rule needs at least one criterion (event_types, severities, action_codes or temporal)");
        }
        s.events.push(EventRule {
            name: r.name.clone(),
            event_types: r.event_types.clone(),
            severities: r.severities.clone(),
            action_codes: r.action_codes.clone(),
            temporal: r.temporal,
        });
    }

    let mp = p.key("metadata");
    unique_names(ctx, &mp, raw.metadata.iter().map(|r| r.name.as_str()), true);
    for (i, r) in raw.metadata.iter().enumerate() {
        let rp = mp.index(i);
        let pr = &r.predicate;
        let set = [
            pr.equals.is_some(),
            pr.one_of.is_some(),
            pr.exists.is_some(),
        ]
        .iter()
        .filter(|b| **b)
        .count();
        if set != 1 {
            ctx.error(
                &rp.key("predicate"),
                "a metadata predicate needs exactly one of equals, in, exists",
            );
            continue;
        }
        if r.key.trim().is_empty() || r.key.len() > 128 {
            ctx.error(&rp.key("key"), "metadata key must be 1 to 128 bytes");
        }
        let predicate = if let Some(v) = &pr.equals {
            MetadataPredicate::Equals(v.clone())
        } else if let Some(v) = &pr.one_of {
            MetadataPredicate::In(v.clone())
        } else {
            MetadataPredicate::Exists(pr.exists.unwrap_or(true))
        };
        s.metadata.push(MetadataRule {
            name: r.name.clone(),
            key: r.key.clone(),
            predicate,
        });
    }

    let clp = p.key("classifiers");
    unique_names(
        ctx,
        &clp,
        raw.classifiers.iter().map(|r| r.name.as_str()),
        false,
    );
    for (i, r) in raw.classifiers.iter().enumerate() {
        let rp = clp.index(i);
        let llm = match r.kind.as_deref() {
            None | Some("local") => false,
            Some("llm") => true,
            Some(other) => {
                ctx.error(
                    &rp.key("type"),
                    format!("classifier type \"{other}\" is not one of local, llm"),
                );
                false
            }
        };
        if r.labels.is_empty() {
            ctx.error(&rp.key("labels"), "a classifier needs at least one label");
        }
        if llm && r.model.is_none() {
            ctx.error(
                &rp.key("model"),
                "an llm classifier needs model (an external model name)",
            );
        }
        if !llm && r.model_path.is_none() {
            ctx.error(&rp.key("model_path"), "a local classifier needs model_path");
        }
        s.classifiers.push(ClassifierRule {
            name: r.name.clone(),
            llm,
            model: r.model.clone(),
            model_path: r.model_path.clone(),
            labels: r.labels.clone(),
            instructions: r.instructions.clone(),
        });
    }
    s
}

/// Builds name-only rules. With `emitted`, a rule whose name the detector never emits is
/// reported, since it can never match.
fn named(
    ctx: &mut Ctx<'_>,
    path: &YamlPath,
    rules: &[RawNamedRule],
    emitted: Option<&[&str]>,
) -> Vec<NamedRule> {
    unique_names(ctx, path, rules.iter().map(|r| r.name.as_str()), false);
    rules
        .iter()
        .enumerate()
        .map(|(i, r)| {
            if let Some(emitted) = emitted.filter(|e| !e.contains(&r.name.as_str())) {
                ctx.warn(
                    &path.index(i).key("name"),
                    format!("\"{}\" is never emitted by this detector (it emits {}); the rule can never match", r.name, emitted.join(", ")),
                );
            }
            NamedRule { name: r.name.clone(), description: r.description.clone().unwrap_or_default() }
        })
        .collect()
}
