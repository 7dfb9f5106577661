//! A replay record's JSON shape, written directly: the text serde_json makes of a
//! [`ReplayRecord`] (tested against it), or the same fields packed (`packed`), without
//! going through serde. Field names are [`Key`]s (one literal each in JSON, one byte packed);
//! values that are strings are escaped only when they need it, and the rarely filled
//! learning detail goes through serde_json. The record is destructured field by field, so a
//! field added to [`ReplayRecord`] does not compile until it is written here too.

use crate::packed::{JsonText, Key, Packer, Sink};
use crate::rows::{Cost, LearningTrace, ReplayRecord, Timings, Usage};

/// Appends `record` as compact JSON: the same text as `serde_json::to_writer`.
///
/// # Errors
/// A nested value serde_json refuses (none of the record's types can fail today).
pub(crate) fn write(out: &mut Vec<u8>, record: &ReplayRecord) -> Result<(), serde_json::Error> {
    walk(&mut JsonText::new(out), record)
}

/// Appends `record` packed (`packed::unpack` gives back the text of [`write`]).
///
/// # Errors
/// As [`write`].
pub(crate) fn pack(out: &mut Vec<u8>, record: &ReplayRecord) -> Result<(), serde_json::Error> {
    walk(&mut Packer::new(out), record)
}

/// Writes `record`'s fields into `s` in serde's order, leaving out what serde skips.
fn walk(s: &mut impl Sink, record: &ReplayRecord) -> Result<(), serde_json::Error> {
    let ReplayRecord {
        schema_version,
        id,
        timestamp_ms,
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
        lifecycle,
        streaming,
        signals,
        signal_confidences,
        projection_scores,
        eval_trace,
        learning,
        plugins,
        use_reasoning,
        reasoning_effort,
        timings,
        usage,
        cost,
        cache_hit,
        terminal_reason,
        request_body,
        request_body_truncated,
        response_body,
        response_body_truncated,
    } = record;
    s.begin_object();
    s.key(Key::SchemaVersion);
    s.u64(u64::from(*schema_version));
    if !id.is_empty() {
        s.key(Key::Id);
        s.str(id);
    }
    s.key(Key::TimestampMs);
    s.i64(*timestamp_ms);
    if let Some(ms) = ended_ms {
        s.key(Key::EndedMs);
        s.i64(*ms);
    }
    opt_str(s, Key::RequestId, request_id);
    opt_str(s, Key::SessionHash, session_hash);
    opt_str(s, Key::ConversationHash, conversation_hash);
    opt_str(s, Key::RequestedModel, requested_model);
    opt_str(s, Key::Recipe, recipe);
    opt_str(s, Key::Decision, decision);
    opt_f64(s, Key::Confidence, *confidence);
    opt_str(s, Key::BaseModel, base_model);
    opt_str(s, Key::FinalModel, final_model);
    opt_str(s, Key::Backend, backend);
    if let Some(status) = status {
        s.key(Key::Status);
        s.u64(u64::from(*status));
    }
    s.key(Key::Lifecycle);
    s.str(lifecycle.as_str());
    flag(s, Key::Streaming, *streaming);
    if !signals.is_empty() {
        s.key(Key::Signals);
        s.begin_object();
        for (family, rules) in signals {
            s.name(family);
            strings(s, rules);
        }
        s.end_object();
    }
    scores(s, Key::SignalConfidences, signal_confidences);
    scores(s, Key::ProjectionScores, projection_scores);
    if let Some(t) = eval_trace {
        s.key(Key::EvalTrace);
        match t.packed_bytes() {
            Some(bytes) => s.packed(bytes),
            None => s.raw(&t.get()),
        }
    }
    if let Some(l) = learning {
        s.key(Key::Learning);
        walk_learning(s, l)?;
    }
    if !plugins.is_empty() {
        s.key(Key::Plugins);
        strings(s, plugins);
    }
    if let Some(on) = use_reasoning {
        s.key(Key::UseReasoning);
        s.bool(*on);
    }
    opt_str(s, Key::ReasoningEffort, reasoning_effort);
    s.key(Key::Timings);
    walk_timings(s, timings);
    if let Some(u) = usage {
        s.key(Key::Usage);
        walk_usage(s, u);
    }
    if let Some(c) = cost {
        s.key(Key::Cost);
        walk_cost(s, c);
    }
    flag(s, Key::CacheHit, *cache_hit);
    opt_str(s, Key::TerminalReason, terminal_reason);
    opt_str(s, Key::RequestBody, request_body);
    flag(s, Key::RequestBodyTruncated, *request_body_truncated);
    opt_str(s, Key::ResponseBody, response_body);
    flag(s, Key::ResponseBodyTruncated, *response_body_truncated);
    s.end_object();
    Ok(())
}

fn walk_timings(s: &mut impl Sink, t: &Timings) {
    let Timings {
        signals_ms,
        routing_ms,
        upstream_ttfb_ms,
        total_ms,
    } = t;
    s.begin_object();
    s.key(Key::SignalsMs);
    s.f64(*signals_ms);
    s.key(Key::RoutingMs);
    s.f64(*routing_ms);
    opt_f64(s, Key::UpstreamTtfbMs, *upstream_ttfb_ms);
    s.key(Key::TotalMs);
    s.f64(*total_ms);
    s.end_object();
}

fn walk_usage(s: &mut impl Sink, u: &Usage) {
    let Usage {
        prompt_tokens,
        cached_prompt_tokens,
        completion_tokens,
    } = u;
    s.begin_object();
    s.key(Key::PromptTokens);
    s.u64(*prompt_tokens);
    s.key(Key::CachedPromptTokens);
    s.u64(*cached_prompt_tokens);
    s.key(Key::CompletionTokens);
    s.u64(*completion_tokens);
    s.end_object();
}

fn walk_cost(s: &mut impl Sink, c: &Cost) {
    let Cost {
        actual,
        baseline,
        currency,
        baseline_model,
    } = c;
    s.begin_object();
    s.key(Key::Actual);
    s.f64(*actual);
    s.key(Key::Baseline);
    s.f64(*baseline);
    s.key(Key::Currency);
    s.str(currency);
    opt_str(s, Key::BaselineModel, baseline_model);
    s.end_object();
}

fn walk_learning(s: &mut impl Sink, l: &LearningTrace) -> Result<(), serde_json::Error> {
    let LearningTrace {
        action,
        reason,
        scope,
        mode,
        switch_cost,
        detail,
    } = l;
    s.begin_object();
    opt_str(s, Key::Action, action);
    opt_str(s, Key::Reason, reason);
    opt_str(s, Key::Scope, scope);
    opt_str(s, Key::Mode, mode);
    opt_f64(s, Key::SwitchCost, *switch_cost);
    if let Some(d) = detail {
        s.key(Key::Detail);
        s.raw(&serde_json::to_string(d)?);
    }
    s.end_object();
    Ok(())
}

fn opt_str(s: &mut impl Sink, key: Key, value: &Option<String>) {
    if let Some(v) = value {
        s.key(key);
        s.str(v);
    }
}

fn opt_f64(s: &mut impl Sink, key: Key, value: Option<f64>) {
    if let Some(v) = value {
        s.key(key);
        s.f64(v);
    }
}

/// A `bool` serde leaves out when `false`.
fn flag(s: &mut impl Sink, key: Key, value: bool) {
    if value {
        s.key(key);
        s.bool(true);
    }
}

/// A list of strings, as a `Vec<String>`.
fn strings(s: &mut impl Sink, items: &[String]) {
    s.begin_array();
    for item in items {
        s.str(item);
    }
    s.end_array();
}

/// A map of scores by name, left out when empty.
fn scores(s: &mut impl Sink, key: Key, entries: &std::collections::BTreeMap<String, f64>) {
    if entries.is_empty() {
        return;
    }
    s.key(key);
    s.begin_object();
    for (name, x) in entries {
        s.name(name);
        s.f64(*x);
    }
    s.end_object();
}

#[cfg(test)]
#[path = "record_json_tests.rs"]
mod tests;
