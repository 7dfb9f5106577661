//! Builds partitions, scores (ordered by their dependencies) and mappings (§4–§5).

use std::collections::HashSet;

use crate::ctx::Ctx;
use crate::model::global::KnowledgeBase;
use crate::model::*;
use crate::path::YamlPath;
use crate::raw::{RawProjections, RawScoreInput};

use super::rules::unknown;

/// First pass: mapping outputs, so decision leaves and score inputs can resolve them.
pub(crate) fn outputs(raw: &RawProjections, path: &YamlPath, ctx: &mut Ctx<'_>) -> Vec<OutputRef> {
    let mut out: Vec<OutputRef> = Vec::new();
    for (mi, m) in raw.mappings.iter().enumerate() {
        for (oi, o) in m.outputs.iter().enumerate() {
            if out.iter().any(|x| x.name == o.name) {
                ctx.error(
                    &path
                        .key("mappings")
                        .index(mi)
                        .key("outputs")
                        .index(oi)
                        .key("name"),
                    format!(
                        "duplicate mapping output \"{}\" (output names are unique within a recipe)",
                        o.name
                    ),
                );
                continue;
            }
            out.push(OutputRef {
                name: o.name.clone(),
                mapping: mi as u32,
                output: oi as u32,
            });
        }
    }
    out
}

pub(crate) struct ProjectionInput<'a> {
    pub(crate) raw: &'a RawProjections,
    pub(crate) path: YamlPath,
    pub(crate) signals: &'a Signals,
    pub(crate) kbs: &'a [KnowledgeBase],
    pub(crate) outputs: Vec<OutputRef>,
}

pub(crate) fn build(input: ProjectionInput<'_>, ctx: &mut Ctx<'_>) -> Projections {
    let raw = input.raw;
    let p = &input.path;
    let mut proj = Projections {
        outputs: input.outputs.clone(),
        ..Projections::default()
    };

    let mut names = HashSet::new();
    for (kind, list) in [
        (
            "partitions",
            raw.partitions
                .iter()
                .map(|x| x.name.as_str())
                .collect::<Vec<_>>(),
        ),
        (
            "scores",
            raw.scores.iter().map(|x| x.name.as_str()).collect(),
        ),
        (
            "mappings",
            raw.mappings.iter().map(|x| x.name.as_str()).collect(),
        ),
    ] {
        for (i, n) in list.into_iter().enumerate() {
            if n.trim().is_empty() {
                ctx.error(&p.key(kind).index(i).key("name"), "name must not be empty");
            } else if !names.insert((kind, n)) {
                ctx.error(
                    &p.key(kind).index(i).key("name"),
                    format!("duplicate {kind} name \"{n}\""),
                );
            }
        }
    }

    for (i, part) in raw.partitions.iter().enumerate() {
        let pp = p.key("partitions").index(i);
        let softmax_temperature = match part.semantics.as_str() {
            "exclusive" => None,
            "softmax_exclusive" => match part.temperature {
                Some(t) if t > 0.0 => Some(t),
                _ => {
                    ctx.error(
                        &pp.key("temperature"),
                        "softmax_exclusive needs a temperature greater than 0",
                    );
                    Some(1.0)
                }
            },
            other => {
                ctx.error(
                    &pp.key("semantics"),
                    format!("semantics \"{other}\" is not one of exclusive, softmax_exclusive"),
                );
                None
            }
        };
        let resolve = |name: &str| -> Option<SignalRef> {
            [SignalFamily::Domain, SignalFamily::Embedding]
                .into_iter()
                .find_map(|f| {
                    input
                        .signals
                        .names(f)
                        .iter()
                        .position(|n| *n == name)
                        .map(|i| SignalRef {
                            family: f,
                            index: i as u32,
                        })
                })
        };
        let mut members = Vec::new();
        for (j, m) in part.members.iter().enumerate() {
            match resolve(m) {
                Some(r) => members.push(r),
                None => ctx.error(
                    &pp.key("members").index(j),
                    format!(
                        "partition member \"{m}\" is not a declared domain or embedding signal"
                    ),
                ),
            }
        }
        if members.iter().any(|m| m.family != members[0].family) {
            ctx.error(
                &pp.key("members"),
                "partition members must all be domain signals or all be embedding signals",
            );
        }
        if part.default.is_empty() {
            ctx.error(&pp.key("default"), "a partition needs a default member");
            continue;
        }
        if !part.members.contains(&part.default) {
            ctx.error(
                &pp.key("default"),
                format!(
                    "default \"{}\" is not one of the partition's members",
                    part.default
                ),
            );
            continue;
        }
        if let Some(default) = resolve(&part.default) {
            proj.partitions.push(Partition {
                name: part.name.clone(),
                softmax_temperature,
                members,
                default,
            });
        }
    }

    let score_names: Vec<&str> = raw.scores.iter().map(|s| s.name.as_str()).collect();
    let mut deps: Vec<Vec<u32>> = Vec::new();
    for (i, score) in raw.scores.iter().enumerate() {
        let sp = p.key("scores").index(i);
        if score.method != "weighted_sum" {
            ctx.error(
                &sp.key("method"),
                format!(
                    "method \"{}\" is not supported; use weighted_sum",
                    score.method
                ),
            );
        }
        if score.inputs.is_empty() {
            ctx.error(&sp.key("inputs"), "a score needs at least one input");
        }
        let mut inputs = Vec::new();
        let mut d = Vec::new();
        for (j, inp) in score.inputs.iter().enumerate() {
            let ip = sp.key("inputs").index(j);
            if let Some(si) = score_input(inp, &ip, &input, &score_names, raw, ctx) {
                match si.source {
                    InputSource::Score(s) => d.push(s),
                    InputSource::Output(o) => {
                        let m = proj.outputs[o as usize].mapping as usize;
                        if let Some(src) = raw
                            .mappings
                            .get(m)
                            .and_then(|m| score_names.iter().position(|n| *n == m.source))
                        {
                            d.push(src as u32);
                        }
                    }
                    _ => {}
                }
                inputs.push(si);
            }
        }
        deps.push(d);
        proj.scores.push(Score {
            name: score.name.clone(),
            inputs,
        });
    }
    proj.score_order = topo_order(&deps, &score_names, p, ctx);

    for (i, m) in raw.mappings.iter().enumerate() {
        let mp = p.key("mappings").index(i);
        let Some(source) = score_names.iter().position(|n| *n == m.source) else {
            ctx.error(&mp.key("source"), unknown("score", &m.source, &score_names));
            continue;
        };
        let multi_emit = match m.method.as_deref() {
            None | Some("threshold_bands") => false,
            Some("multi_emit") => true,
            Some(other) => {
                ctx.error(
                    &mp.key("method"),
                    format!("method \"{other}\" is not one of threshold_bands, multi_emit"),
                );
                false
            }
        };
        if multi_emit && m.outputs.len() < 2 {
            ctx.error(&mp.key("outputs"), "multi_emit needs at least two outputs");
        }
        if m.outputs.is_empty() {
            ctx.error(&mp.key("outputs"), "a mapping needs at least one output");
        }
        let mut slope = 12.0;
        if let Some(c) = &m.calibration {
            if let Some(method) = c.method.as_deref().filter(|m| *m != "sigmoid_distance") {
                ctx.error(
                    &mp.key("calibration").key("method"),
                    format!(
                        "calibration method \"{method}\" is not supported; use sigmoid_distance"
                    ),
                );
            }
            if let Some(s) = c.slope.filter(|s| *s > 0.0) {
                slope = s;
            }
        }
        let mut bands = Vec::new();
        for (j, o) in m.outputs.iter().enumerate() {
            let op = mp.key("outputs").index(j);
            if o.lt.is_none() && o.lte.is_none() && o.gt.is_none() && o.gte.is_none() {
                ctx.error(
                    &op,
                    format!(
                        "output \"{}\" needs at least one bound (lt, lte, gt or gte)",
                        o.name
                    ),
                );
            }
            if o.gt.is_some() && o.gte.is_some() {
                ctx.error(&op, "gt and gte are mutually exclusive");
            }
            if o.lt.is_some() && o.lte.is_some() {
                ctx.error(&op, "lt and lte are mutually exclusive");
            }
            bands.push(Band {
                name: o.name.clone(),
                lt: o.lt,
                lte: o.lte,
                gt: o.gt,
                gte: o.gte,
            });
        }
        proj.mappings.push(Mapping {
            name: m.name.clone(),
            source: source as u32,
            multi_emit,
            slope,
            outputs: bands,
        });
    }
    proj
}

fn score_input(
    inp: &RawScoreInput,
    ip: &YamlPath,
    input: &ProjectionInput<'_>,
    score_names: &[&str],
    raw: &RawProjections,
    ctx: &mut Ctx<'_>,
) -> Option<ScoreInput> {
    let ty = inp.kind.trim().to_ascii_lowercase();
    let vs = inp.value_source.as_deref().unwrap_or("");
    let mut value = match vs {
        "" | "binary" => ValueSource::Binary,
        "confidence" => ValueSource::Confidence,
        "raw" => ValueSource::Raw,
        "score" => ValueSource::Score,
        other => {
            ctx.error(
                &ip.key("value_source"),
                format!("value_source \"{other}\" is not one of binary, confidence, raw, score"),
            );
            return None;
        }
    };
    let name = inp.name.clone().unwrap_or_default();
    let source = match ty.as_str() {
        "kb_metric" => {
            let (Some(kb), Some(metric)) = (&inp.kb, &inp.metric) else {
                ctx.error(ip, "a kb_metric input needs kb and metric");
                return None;
            };
            let Some(k) = input.kbs.iter().position(|x| &x.name == kb) else {
                let names: Vec<&str> = input.kbs.iter().map(|x| x.name.as_str()).collect();
                ctx.error(&ip.key("kb"), unknown("knowledge base", kb, &names));
                return None;
            };
            let mut metrics = vec!["best_score", "best_matched_score"];
            metrics.extend(input.kbs[k].metrics.iter().map(|m| m.name.as_str()));
            if !metrics.contains(&metric.as_str()) {
                ctx.error(
                    &ip.key("metric"),
                    unknown(
                        &format!("metric of knowledge base \"{kb}\""),
                        metric,
                        &metrics,
                    ),
                );
                return None;
            }
            if !matches!(vs, "" | "score") {
                ctx.error(
                    &ip.key("value_source"),
                    "a kb_metric input takes value_source score (or none)",
                );
            }
            value = ValueSource::Score;
            InputSource::KbMetric {
                kb: k as u32,
                metric: metric.clone(),
            }
        }
        "projection" => {
            if let Some(s) = score_names.iter().position(|n| *n == name) {
                if !matches!(vs, "" | "score") {
                    ctx.error(
                        &ip.key("value_source"),
                        "a projection input naming a score takes value_source score (or none)",
                    );
                }
                value = ValueSource::Score;
                InputSource::Score(s as u32)
            } else if let Some(o) = input.outputs.iter().position(|o| o.name == name) {
                value = ValueSource::Confidence;
                InputSource::Output(o as u32)
            } else {
                let mut names: Vec<&str> = score_names.to_vec();
                names.extend(
                    raw.mappings
                        .iter()
                        .flat_map(|m| m.outputs.iter().map(|o| o.name.as_str())),
                );
                ctx.error(ip, unknown("score or mapping output", &name, &names));
                return None;
            }
        }
        _ => {
            let Some(family) = SignalFamily::from_leaf_type(&ty) else {
                ctx.error(
                    &ip.key("type"),
                    format!(
                        "unknown input type \"{ty}\"; use a signal type, kb_metric or projection"
                    ),
                );
                return None;
            };
            if matches!(family, SignalFamily::Metadata | SignalFamily::Classifier) {
                ctx.error(
                    &ip.key("type"),
                    format!("{ty} signals cannot be projection inputs"),
                );
                return None;
            }
            if value == ValueSource::Score {
                ctx.error(
                    &ip.key("value_source"),
                    "value_source score is only for kb_metric and projection inputs",
                );
            }
            let s = input.signals;
            match family {
                SignalFamily::Complexity => {
                    let parsed = name
                        .rsplit_once(':')
                        .and_then(|(r, l)| Some((r, ComplexityLevel::parse(l)?)));
                    let Some((rule, level)) = parsed else {
                        ctx.error(&ip.key("name"), format!("complexity input \"{name}\" must be written rule:easy, rule:medium or rule:hard"));
                        return None;
                    };
                    let names = s.names(family);
                    let Some(r) = names.iter().position(|n| *n == rule) else {
                        ctx.error(&ip.key("name"), unknown("complexity signal", rule, &names));
                        return None;
                    };
                    InputSource::Complexity {
                        rule: r as u32,
                        level,
                    }
                }
                SignalFamily::Authz => {
                    let role = s.roles.iter().position(|r| *r == name).or_else(|| {
                        s.role_bindings
                            .iter()
                            .find(|b| b.name == name)
                            .and_then(|b| s.roles.iter().position(|r| *r == b.role))
                    });
                    let Some(r) = role else {
                        let roles: Vec<&str> = s.roles.iter().map(String::as_str).collect();
                        ctx.error(&ip.key("name"), unknown("authz role", &name, &roles));
                        return None;
                    };
                    InputSource::Role(r as u32)
                }
                _ => {
                    let names = s.names(family);
                    let Some(r) = names.iter().position(|n| *n == name) else {
                        ctx.error(
                            &ip.key("name"),
                            unknown(&format!("{ty} signal"), &name, &names),
                        );
                        return None;
                    };
                    InputSource::Signal(SignalRef {
                        family,
                        index: r as u32,
                    })
                }
            }
        }
    };
    // The contract reads an unset or zero `match` as 1.
    let match_value = inp.match_value.filter(|v| *v != 0.0).unwrap_or(1.0);
    Some(ScoreInput {
        source,
        weight: inp.weight,
        value,
        match_value,
        miss_value: inp.miss_value.unwrap_or(0.0),
    })
}

/// Kahn's algorithm, keeping declaration order among independent scores.
fn topo_order(deps: &[Vec<u32>], names: &[&str], p: &YamlPath, ctx: &mut Ctx<'_>) -> Vec<u32> {
    let n = deps.len();
    let mut done = vec![false; n];
    let mut order = Vec::with_capacity(n);
    while order.len() < n {
        let next = (0..n)
            .find(|&i| !done[i] && deps[i].iter().all(|&d| d as usize == i || done[d as usize]));
        match next {
            Some(i) if !deps[i].contains(&(i as u32)) => {
                done[i] = true;
                order.push(i as u32);
            }
            _ => {
                let cycle: Vec<&str> = (0..n).filter(|&i| !done[i]).map(|i| names[i]).collect();
                let first = (0..n).find(|&i| !done[i]).unwrap_or(0);
                ctx.error(
                    &p.key("scores").index(first),
                    format!(
                        "scores depend on each other in a cycle: {}",
                        cycle.join(" -> ")
                    ),
                );
                return (0..n as u32).collect();
            }
        }
    }
    order
}
