//! The direct record writer against serde_json: the same text for every field, filled or not,
//! written as JSON or packed and unpacked.

#![allow(clippy::unwrap_used, reason = "tests")]

use std::collections::BTreeMap;

use super::{pack, write};
use crate::packed::{string, unpack};
use crate::rows::{Cost, LearningTrace, Lifecycle, RawJson, ReplayRecord, Timings, Usage};

#[track_caller]
fn same(r: &ReplayRecord) {
    let theirs = serde_json::to_string(r).unwrap();
    let mut ours = Vec::new();
    write(&mut ours, r).unwrap();
    assert_eq!(String::from_utf8(ours).unwrap(), theirs);
    let mut packed = Vec::new();
    pack(&mut packed, r).unwrap();
    let mut unpacked = Vec::new();
    unpack(&packed, &mut unpacked).unwrap();
    assert_eq!(String::from_utf8(unpacked).unwrap(), theirs, "packed");
}

/// Every field set, with text that needs escaping and numbers serde_json writes specially.
fn full(rng: &mut fastrand::Rng) -> ReplayRecord {
    let text = |rng: &mut fastrand::Rng| {
        [
            "plain",
            "quo\"te",
            "back\\slash",
            "new\nline\u{1}",
            "é😀",
            "",
        ][rng.usize(..6)]
        .to_string()
    };
    let float = |rng: &mut fastrand::Rng| {
        [
            0.0,
            -0.0,
            1.0,
            0.1 + 0.2,
            1e-7,
            2.5e21,
            f64::NAN,
            f64::INFINITY,
        ][rng.usize(..8)]
    };
    ReplayRecord {
        schema_version: 2,
        id: "01a201cc863c7c0b94a9ea78a6dfbbb0".into(),
        timestamp_ms: 1_795_326_510_652,
        ended_ms: Some(1_795_326_510_654),
        request_id: Some(text(rng)),
        session_hash: Some(text(rng)),
        conversation_hash: Some(text(rng)),
        requested_model: Some(text(rng)),
        recipe: Some(text(rng)),
        decision: Some(text(rng)),
        confidence: Some(float(rng)),
        base_model: Some(text(rng)),
        final_model: Some(text(rng)),
        backend: Some(text(rng)),
        status: Some(502),
        lifecycle: [
            Lifecycle::Completed,
            Lifecycle::Failed,
            Lifecycle::Aborted,
            Lifecycle::InProgress,
            Lifecycle::Unknown,
        ][rng.usize(..5)],
        streaming: true,
        signals: BTreeMap::from([(text(rng), vec![text(rng), text(rng)])]),
        signal_confidences: BTreeMap::from([(text(rng), float(rng))]),
        projection_scores: BTreeMap::from([(text(rng), float(rng))]),
        eval_trace: RawJson::of(&serde_json::json!([{"decision_name": text(rng)}])),
        learning: Some(LearningTrace {
            action: Some(text(rng)),
            reason: Some(text(rng)),
            scope: Some(text(rng)),
            mode: Some(text(rng)),
            switch_cost: Some(float(rng)),
            detail: Some(serde_json::json!({"turns": 3, "why": text(rng)})),
        }),
        plugins: vec![text(rng), text(rng)],
        use_reasoning: Some(rng.bool()),
        reasoning_effort: Some(text(rng)),
        timings: Timings {
            signals_ms: float(rng),
            routing_ms: float(rng),
            upstream_ttfb_ms: Some(float(rng)),
            total_ms: float(rng),
        },
        usage: Some(Usage {
            prompt_tokens: u64::MAX,
            cached_prompt_tokens: 0,
            completion_tokens: 4,
        }),
        cost: Some(Cost {
            actual: float(rng),
            baseline: float(rng),
            currency: text(rng),
            baseline_model: Some(text(rng)),
        }),
        cache_hit: true,
        terminal_reason: Some(text(rng)),
        request_body: Some(text(rng)),
        request_body_truncated: true,
        response_body: Some(text(rng)),
        response_body_truncated: true,
    }
}

/// `full` with each optional part left out at random (half the time each).
fn partial(rng: &mut fastrand::Rng) -> ReplayRecord {
    let mut r = full(rng);
    macro_rules! maybe_clear {
        ($($field:ident),*) => {
            $(if rng.bool() {
                r.$field = Default::default();
            })*
        };
    }
    maybe_clear!(
        id,
        ended_ms,
        request_id,
        session_hash,
        conversation_hash,
        requested_model,
        recipe,
        decision,
        confidence,
        base_model,
        final_model,
        backend,
        status,
        streaming,
        signals,
        signal_confidences,
        projection_scores,
        eval_trace,
        learning,
        plugins,
        use_reasoning,
        reasoning_effort,
        usage,
        cost,
        cache_hit,
        terminal_reason,
        request_body,
        request_body_truncated,
        response_body,
        response_body_truncated
    );
    if rng.bool() {
        r.timings.upstream_ttfb_ms = None;
    }
    if let Some(l) = &mut r.learning {
        if rng.bool() {
            *l = LearningTrace::default();
        }
    }
    if let Some(c) = &mut r.cost {
        if rng.bool() {
            c.baseline_model = None;
        }
    }
    r
}

#[test]
fn an_empty_record_matches() {
    same(&ReplayRecord::new(0));
    same(&ReplayRecord::default());
}

#[test]
fn full_and_partial_records_match() {
    let mut rng = fastrand::Rng::with_seed(7);
    for _ in 0..500 {
        same(&full(&mut rng));
        same(&partial(&mut rng));
    }
}

#[test]
fn what_it_writes_reads_back() {
    let mut rng = fastrand::Rng::with_seed(11);
    let mut r = full(&mut rng);
    r.sanitize();
    let mut out = Vec::new();
    write(&mut out, &r).unwrap();
    let back: ReplayRecord = serde_json::from_slice(&out).unwrap();
    assert_eq!(back, r);
}

#[test]
fn strings_match_serde_json_for_every_ascii_byte_anywhere() {
    for len in [0, 1, 15, 16, 17, 40] {
        for at in 0..len {
            for b in 0u8..=0x7F {
                let mut text = vec![b'a'; len];
                text[at] = b;
                let text = String::from_utf8(text).unwrap();
                let mut ours = Vec::new();
                string(&mut ours, &text);
                assert_eq!(ours, serde_json::to_vec(&text).unwrap(), "{text:?}");
            }
        }
    }
}
