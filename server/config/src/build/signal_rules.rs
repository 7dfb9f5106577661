//! Builders for the signal rules with structure of their own: keyword matching methods,
//! structure features and sources, KB targets and conversation sources (contract §3).

use crate::ctx::Ctx;
use crate::model::global::KnowledgeBase;
use crate::model::*;
use crate::path::YamlPath;
use crate::raw::*;

use super::signals::check_regex;
use super::{predicate, unit_interval};

pub(super) fn keyword(r: &RawKeywordRule, rp: &YamlPath, ctx: &mut Ctx<'_>) -> Option<KeywordRule> {
    let operator = match r.operator.as_str() {
        "AND" | "and" => KeywordOperator::And,
        "OR" | "or" => KeywordOperator::Or,
        "NOR" | "nor" => KeywordOperator::Nor,
        "" => {
            ctx.error(&rp.key("operator"), "operator is required: AND, OR or NOR");
            return None;
        }
        other => {
            ctx.error(
                &rp.key("operator"),
                format!("operator \"{other}\" is not one of AND, OR, NOR"),
            );
            return None;
        }
    };
    let method = match r.method.as_deref() {
        None => KeywordMethod::Literal,
        Some("regex") => KeywordMethod::Regex,
        Some("bm25") => KeywordMethod::Bm25 {
            threshold: r.bm25_threshold.unwrap_or(0.1),
        },
        Some("ngram") => {
            let threshold = r.ngram_threshold.unwrap_or(0.4);
            unit_interval(
                ctx,
                &rp.key("ngram_threshold"),
                threshold,
                "ngram_threshold",
            );
            KeywordMethod::Ngram {
                threshold,
                arity: r.ngram_arity.unwrap_or(3).max(1),
            }
        }
        Some(other) => {
            ctx.error(
                &rp.key("method"),
                format!("method \"{other}\" is not one of regex, bm25, ngram"),
            );
            return None;
        }
    };
    if r.keywords.is_empty() && operator != KeywordOperator::Nor {
        ctx.error(
            &rp.key("keywords"),
            "a keyword rule needs at least one keyword",
        );
    }
    for (j, k) in r.keywords.iter().enumerate() {
        if k.is_empty() {
            ctx.error(&rp.key("keywords").index(j), "empty keyword");
        } else if method == KeywordMethod::Regex {
            check_regex(ctx, &rp.key("keywords").index(j), k, !r.case_sensitive);
        }
    }
    Some(KeywordRule {
        name: r.name.clone(),
        operator,
        keywords: r.keywords.clone(),
        case_sensitive: r.case_sensitive,
        method,
        fuzzy_threshold: r.fuzzy_match.then(|| r.fuzzy_threshold.unwrap_or(2)),
    })
}

pub(super) fn structure(
    r: &RawStructureRule,
    rp: &YamlPath,
    ctx: &mut Ctx<'_>,
) -> Option<StructureRule> {
    let fp = rp.key("feature");
    let sp = fp.key("source");
    let src = &r.feature.source;
    let feature = match r.feature.kind.as_str() {
        "exists" => StructureFeature::Exists,
        "count" => StructureFeature::Count,
        "density" => StructureFeature::Density,
        "sequence" => StructureFeature::Sequence,
        other => {
            ctx.error(
                &fp.key("type"),
                format!("feature type \"{other}\" is not one of exists, count, density, sequence"),
            );
            return None;
        }
    };
    let source = match src.kind.as_str() {
        "regex" => {
            let Some(pattern) = src.pattern.clone().filter(|p| !p.is_empty()) else {
                ctx.error(&sp.key("pattern"), "a regex source needs a pattern");
                return None;
            };
            check_regex(ctx, &sp.key("pattern"), &pattern, !src.case_sensitive);
            StructureSource::Regex {
                pattern,
                case_sensitive: src.case_sensitive,
            }
        }
        "keyword_set" => {
            if src.keywords.is_empty() {
                ctx.error(&sp.key("keywords"), "a keyword_set source needs keywords");
            }
            StructureSource::KeywordSet {
                keywords: src.keywords.clone(),
                case_sensitive: src.case_sensitive,
            }
        }
        "sequence" => {
            if feature != StructureFeature::Sequence {
                ctx.error(
                    &sp.key("type"),
                    "a sequence source requires feature.type: sequence",
                );
            }
            if src.sequences.is_empty() {
                ctx.error(&sp.key("sequences"), "a sequence source needs sequences");
            }
            for (j, seq) in src.sequences.iter().enumerate() {
                if seq.len() < 2 {
                    ctx.error(
                        &sp.key("sequences").index(j),
                        "each sequence needs at least two markers",
                    );
                }
            }
            StructureSource::Sequence {
                sequences: src.sequences.clone(),
                case_sensitive: src.case_sensitive,
            }
        }
        "text_bytes" => {
            if feature != StructureFeature::Count {
                ctx.error(
                    &sp.key("type"),
                    "a text_bytes source requires feature.type: count",
                );
            }
            StructureSource::TextBytes
        }
        other => {
            ctx.error(&sp.key("type"), format!("source type \"{other}\" is not one of regex, keyword_set, sequence, text_bytes"));
            return None;
        }
    };
    if feature == StructureFeature::Sequence && !matches!(source, StructureSource::Sequence { .. })
    {
        ctx.error(
            &sp.key("type"),
            "feature.type: sequence requires source.type: sequence",
        );
    }
    let predicate = r
        .predicate
        .as_ref()
        .map(|pr| predicate(ctx, &rp.key("predicate"), pr));
    Some(StructureRule {
        name: r.name.clone(),
        feature,
        source,
        predicate,
    })
}

pub(super) fn kb_rule(
    r: &RawKbRule,
    rp: &YamlPath,
    kbs: &[KnowledgeBase],
    ctx: &mut Ctx<'_>,
) -> Option<KbRule> {
    let Some(kb_index) = kbs.iter().position(|k| k.name == r.kb) else {
        let names: Vec<&str> = kbs.iter().map(|k| k.name.as_str()).collect();
        ctx.error(
            &rp.key("kb"),
            format!(
                "unknown knowledge base \"{}\"; declared: {}",
                r.kb,
                names.join(", ")
            ),
        );
        return None;
    };
    let kb = &kbs[kb_index];
    let target = match r.target.kind.as_str() {
        "label" => KbTarget::Label(r.target.value.clone()),
        "group" => {
            if !kb.groups.contains_key(&r.target.value) {
                let groups: Vec<&str> = kb.groups.keys().map(String::as_str).collect();
                ctx.error(
                    &rp.key("target").key("value"),
                    format!(
                        "knowledge base \"{}\" has no group \"{}\"; groups: {}",
                        kb.name,
                        r.target.value,
                        groups.join(", ")
                    ),
                );
            }
            KbTarget::Group(r.target.value.clone())
        }
        other => {
            ctx.error(
                &rp.key("target").key("kind"),
                format!("target kind \"{other}\" is not one of label, group"),
            );
            return None;
        }
    };
    let best = match r.match_mode.as_deref() {
        None | Some("threshold") => false,
        Some("best") => true,
        Some(other) => {
            ctx.error(
                &rp.key("match"),
                format!("match \"{other}\" is not one of threshold, best"),
            );
            false
        }
    };
    Some(KbRule {
        name: r.name.clone(),
        kb: kb_index as u32,
        target,
        best,
    })
}

pub(super) fn conversation(
    r: &RawConversationRule,
    rp: &YamlPath,
    ctx: &mut Ctx<'_>,
) -> Option<ConversationRule> {
    let fp = rp.key("feature");
    let exists = match r.feature.kind.as_str() {
        "exists" => true,
        "count" => false,
        other => {
            ctx.error(
                &fp.key("type"),
                format!("feature type \"{other}\" is not one of count, exists"),
            );
            return None;
        }
    };
    let src = &r.feature.source;
    let source = match src.kind.as_str() {
        "message" => {
            if let Some(role) = &src.role {
                if ![
                    "user",
                    "assistant",
                    "system",
                    "developer",
                    "tool",
                    "non_user",
                    "",
                ]
                .contains(&role.as_str())
                {
                    ctx.error(
                        &fp.key("source").key("role"),
                        format!("role \"{role}\" is not one of user, assistant, system, developer, tool, non_user"),
                    );
                }
            }
            ConversationSource::Message(src.role.clone().filter(|r| !r.is_empty()))
        }
        "tool_definition" => ConversationSource::ToolDefinition,
        "assistant_tool_call" => ConversationSource::AssistantToolCall,
        "assistant_tool_cycle" => ConversationSource::AssistantToolCycle,
        "active_tool_loop" => ConversationSource::ActiveToolLoop,
        "image_content" => ConversationSource::ImageContent,
        other => {
            ctx.error(
                &fp.key("source").key("type"),
                format!(
                    "source type \"{other}\" is not one of message, tool_definition, assistant_tool_call, \
                     assistant_tool_cycle, active_tool_loop, image_content"
                ),
            );
            return None;
        }
    };
    if exists && r.predicate.is_some() {
        ctx.error(
            &rp.key("predicate"),
            "feature.type: exists does not take a predicate",
        );
    }
    let predicate = r
        .predicate
        .as_ref()
        .map(|pr| predicate(ctx, &rp.key("predicate"), pr));
    Some(ConversationRule {
        name: r.name.clone(),
        exists,
        source,
        predicate,
    })
}
