//! The post-signal pipeline (contract §4): partitions, complexity composers, the global
//! embedding `top_k`, then projection scores and mappings (§5).

use vllm_sr_config::model::*;

use crate::decide::{self, Facts, ProjectionState};
use crate::state::{family_index, FamilyResult, SignalState};

/// Runs every step in contract order and returns the projection results.
pub fn run(
    recipe: &Recipe,
    state: &mut SignalState,
    top_k: usize,
    kb_index_of: &dyn Fn(u32) -> usize,
) -> ProjectionState {
    partitions(recipe, state);
    composers(recipe, state);
    embedding_top_k(state, top_k);
    projections(recipe, state, kb_index_of)
}

fn partitions(recipe: &Recipe, state: &mut SignalState) {
    for p in &recipe.projections.partitions {
        for family in [SignalFamily::Domain, SignalFamily::Embedding] {
            // Members of this family, in member order (no allocation: this runs per request).
            let members = || {
                p.members
                    .iter()
                    .filter(|m| m.family == family)
                    .map(|m| m.index)
            };
            if members().nth(1).is_none() {
                continue;
            }
            let fam = &mut state.families[family_index(family)];
            // Contenders: matched members that carry a confidence entry, in member order.
            let confidence_of = |fam: &FamilyResult, m: u32| {
                fam.is_matched(m)
                    .then(|| fam.confidence.get(m as usize).copied().flatten())
                    .flatten()
            };
            let mut count = 0usize;
            let mut winner: Option<(u32, f64)> = None;
            for m in members() {
                if let Some(c) = confidence_of(fam, m) {
                    count += 1;
                    // The first maximum wins.
                    if winner.is_none_or(|(_, w)| c > w) {
                        winner = Some((m, c));
                    }
                }
            }
            match (count, winner) {
                (0, _) => {
                    // Quirk: the default joins the matched list without a confidence.
                    if p.default.family == family && !fam.is_matched(p.default.index) {
                        fam.matched.push(p.default.index);
                    }
                }
                (1, _) | (_, None) => {}
                (_, Some((win, win_conf))) => {
                    if let Some(t) = p.softmax_temperature {
                        // Every contender's confidence ≤ the winner's, so exp(·) ≤ 1.
                        let z: f64 = members()
                            .filter_map(|m| confidence_of(fam, m))
                            .map(|c| ((c - win_conf) / t).exp())
                            .sum();
                        fam.confidence[win as usize] = Some(1.0 / z);
                    }
                    for m in members() {
                        if m != win {
                            fam.unmatch(m);
                        }
                    }
                }
            }
        }
    }
}

fn composers(recipe: &Recipe, state: &mut SignalState) {
    let empty = ProjectionState::default();
    let drops: Vec<usize> = recipe
        .signals
        .complexity
        .iter()
        .enumerate()
        .filter(|(i, r)| {
            r.composer.as_ref().is_some_and(|c| {
                state.complexity[*i].is_some()
                    && !decide::eval(
                        Facts {
                            recipe,
                            state,
                            projections: &empty,
                        },
                        c,
                    )
                    .0
            })
        })
        .map(|(i, _)| i)
        .collect();
    for i in drops {
        state.complexity[i] = None;
    }
}

fn embedding_top_k(state: &mut SignalState, top_k: usize) {
    if top_k == 0 {
        return;
    }
    let fam = &mut state.families[family_index(SignalFamily::Embedding)];
    if fam.matched.len() > top_k {
        let dropped: Vec<u32> = fam.matched[top_k..].to_vec();
        for d in dropped {
            fam.unmatch(d);
        }
    }
}

fn projections(
    recipe: &Recipe,
    state: &SignalState,
    kb_index_of: &dyn Fn(u32) -> usize,
) -> ProjectionState {
    let proj = &recipe.projections;
    let mut out = ProjectionState {
        scores: vec![0.0; proj.scores.len()],
        outputs: vec![None; proj.outputs.len()],
    };
    if proj.scores.is_empty() || proj.mappings.is_empty() {
        return out;
    }
    // Mapping outputs may feed scores (confidence inputs), so emit them as each source score
    // is computed; the score order already respects those dependencies.
    for &si in &proj.score_order {
        let score = &proj.scores[si as usize];
        let mut total = 0.0;
        for input in &score.inputs {
            total += input.weight * input_value(recipe, state, &out, input, kb_index_of);
        }
        out.scores[si as usize] = total;
        emit_mappings(proj, si, total, &mut out);
    }
    out
}

fn emit_mappings(proj: &Projections, score: u32, value: f64, out: &mut ProjectionState) {
    for (mi, m) in proj.mappings.iter().enumerate() {
        if m.source != score {
            continue;
        }
        for (oi, band) in m.outputs.iter().enumerate() {
            if !band_holds(band, value) {
                continue;
            }
            let d = [band.lt, band.lte, band.gt, band.gte]
                .iter()
                .flatten()
                .map(|b| (value - b).abs())
                .fold(f64::INFINITY, f64::min);
            let conf = 1.0 / (1.0 + (-m.slope * d).exp());
            if let Some(flat) = proj
                .outputs
                .iter()
                .position(|o| o.mapping as usize == mi && o.output as usize == oi)
            {
                out.outputs[flat] = Some(conf);
            }
            if !m.multi_emit {
                break;
            }
        }
    }
}

/// True when every bound of a band holds.
pub fn band_holds(b: &Band, v: f64) -> bool {
    b.lt.is_none_or(|x| v < x)
        && b.lte.is_none_or(|x| v <= x)
        && b.gt.is_none_or(|x| v > x)
        && b.gte.is_none_or(|x| v >= x)
}

fn input_value(
    recipe: &Recipe,
    state: &SignalState,
    out: &ProjectionState,
    input: &ScoreInput,
    kb_index_of: &dyn Fn(u32) -> usize,
) -> f64 {
    let facts = Facts {
        recipe,
        state,
        projections: out,
    };
    let target = match &input.source {
        InputSource::KbMetric { kb, metric } => {
            return state
                .kb_metrics
                .get(kb_index_of(*kb))
                .and_then(|m| m.get(metric))
                .copied()
                .unwrap_or(0.0);
        }
        InputSource::Score(s) => return out.scores.get(*s as usize).copied().unwrap_or(0.0),
        InputSource::Output(o) => {
            return out
                .outputs
                .get(*o as usize)
                .copied()
                .flatten()
                .unwrap_or(0.0)
        }
        InputSource::Signal(r) if r.family == SignalFamily::Domain => LeafTarget::Domain(r.index),
        InputSource::Signal(r) => LeafTarget::Signal(*r),
        InputSource::Complexity { rule, level } => LeafTarget::Complexity {
            rule: *rule,
            level: *level,
        },
        InputSource::Role(r) => LeafTarget::Role(*r),
    };
    let (matched, confidence) = decide::leaf_match(facts, &target);
    match input.value {
        ValueSource::Binary => {
            if matched {
                input.match_value
            } else {
                input.miss_value
            }
        }
        ValueSource::Confidence => {
            if !matched {
                return 0.0;
            }
            // The confidence entry when present and positive, else 1.0.
            let entry = match &input.source {
                InputSource::Signal(r) if r.family != SignalFamily::Domain => state
                    .family(r.family)
                    .confidence
                    .get(r.index as usize)
                    .copied()
                    .flatten(),
                _ => Some(confidence),
            };
            entry.filter(|c| *c > 0.0).unwrap_or(1.0)
        }
        ValueSource::Raw => match &input.source {
            InputSource::Signal(r) => state
                .family(r.family)
                .value
                .get(r.index as usize)
                .copied()
                .flatten()
                .unwrap_or(0.0),
            _ => 0.0,
        },
        ValueSource::Score => 0.0,
    }
}
