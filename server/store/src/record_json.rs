//! The replay record as JSON text, written directly: the text serde_json makes of a
//! [`ReplayRecord`] (tested against it), without serde_json's byte-by-byte escaping of every
//! field name, which was the writer thread's largest cost after SQLite itself.
//!
//! Field names and punctuation are literal bytes; values that are strings go through
//! serde_json's escaping, and the rarely filled nested values (signal maps, the learning
//! detail) through serde_json itself. The record is destructured field by field, so a field
//! added to [`ReplayRecord`] does not compile until it is written here too.

use serde::Serialize;

use crate::rows::{Cost, LearningTrace, RawJson, ReplayRecord, Timings, Usage};

/// Appends `record` as compact JSON: the same text as `serde_json::to_writer`.
///
/// # Errors
/// A nested value serde_json refuses (none of the record's types can fail today).
pub(crate) fn write(out: &mut Vec<u8>, record: &ReplayRecord) -> Result<(), serde_json::Error> {
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
    let mut o = Object::open(out);
    o.int(k!("schema_version"), *schema_version);
    if !id.is_empty() {
        o.str(k!("id"), id);
    }
    o.int(k!("timestamp_ms"), *timestamp_ms);
    if let Some(ms) = ended_ms {
        o.int(k!("ended_ms"), *ms);
    }
    o.opt_str(k!("request_id"), request_id);
    o.opt_str(k!("session_hash"), session_hash);
    o.opt_str(k!("conversation_hash"), conversation_hash);
    o.opt_str(k!("requested_model"), requested_model);
    o.opt_str(k!("recipe"), recipe);
    o.opt_str(k!("decision"), decision);
    if let Some(c) = confidence {
        o.float(k!("confidence"), *c);
    }
    o.opt_str(k!("base_model"), base_model);
    o.opt_str(k!("final_model"), final_model);
    o.opt_str(k!("backend"), backend);
    if let Some(s) = status {
        o.int(k!("status"), *s);
    }
    o.str(k!("lifecycle"), lifecycle.as_str());
    o.flag(k!("streaming"), *streaming);
    if !signals.is_empty() {
        o.key(k!("signals"));
        map(o.out, signals, |out, rules| strings(out, rules));
    }
    if !signal_confidences.is_empty() {
        o.key(k!("signal_confidences"));
        map(o.out, signal_confidences, |out, x| number(out, *x));
    }
    if !projection_scores.is_empty() {
        o.key(k!("projection_scores"));
        map(o.out, projection_scores, |out, x| number(out, *x));
    }
    if let Some(t) = eval_trace {
        o.raw(k!("eval_trace"), t);
    }
    if let Some(l) = learning {
        o.key(k!("learning"));
        write_learning(o.out, l)?;
    }
    if !plugins.is_empty() {
        o.key(k!("plugins"));
        strings(o.out, plugins);
    }
    if let Some(on) = use_reasoning {
        o.key(k!("use_reasoning"));
        o.out
            .extend_from_slice(if *on { b"true" } else { b"false" });
    }
    o.opt_str(k!("reasoning_effort"), reasoning_effort);
    o.key(k!("timings"));
    write_timings(o.out, timings);
    if let Some(u) = usage {
        o.key(k!("usage"));
        write_usage(o.out, u);
    }
    if let Some(c) = cost {
        o.key(k!("cost"));
        write_cost(o.out, c);
    }
    o.flag(k!("cache_hit"), *cache_hit);
    o.opt_str(k!("terminal_reason"), terminal_reason);
    o.opt_str(k!("request_body"), request_body);
    o.flag(k!("request_body_truncated"), *request_body_truncated);
    o.opt_str(k!("response_body"), response_body);
    o.flag(k!("response_body_truncated"), *response_body_truncated);
    o.close();
    Ok(())
}

fn write_timings(out: &mut Vec<u8>, t: &Timings) {
    let Timings {
        signals_ms,
        routing_ms,
        upstream_ttfb_ms,
        total_ms,
    } = t;
    let mut o = Object::open(out);
    o.float(k!("signals_ms"), *signals_ms);
    o.float(k!("routing_ms"), *routing_ms);
    if let Some(ms) = upstream_ttfb_ms {
        o.float(k!("upstream_ttfb_ms"), *ms);
    }
    o.float(k!("total_ms"), *total_ms);
    o.close();
}

fn write_usage(out: &mut Vec<u8>, u: &Usage) {
    let Usage {
        prompt_tokens,
        cached_prompt_tokens,
        completion_tokens,
    } = u;
    let mut o = Object::open(out);
    o.int(k!("prompt_tokens"), *prompt_tokens);
    o.int(k!("cached_prompt_tokens"), *cached_prompt_tokens);
    o.int(k!("completion_tokens"), *completion_tokens);
    o.close();
}

fn write_cost(out: &mut Vec<u8>, c: &Cost) {
    let Cost {
        actual,
        baseline,
        currency,
        baseline_model,
    } = c;
    let mut o = Object::open(out);
    o.float(k!("actual"), *actual);
    o.float(k!("baseline"), *baseline);
    o.str(k!("currency"), currency);
    o.opt_str(k!("baseline_model"), baseline_model);
    o.close();
}

fn write_learning(out: &mut Vec<u8>, l: &LearningTrace) -> Result<(), serde_json::Error> {
    let LearningTrace {
        action,
        reason,
        scope,
        mode,
        switch_cost,
        detail,
    } = l;
    let mut o = Object::open(out);
    o.opt_str(k!("action"), action);
    o.opt_str(k!("reason"), reason);
    o.opt_str(k!("scope"), scope);
    o.opt_str(k!("mode"), mode);
    if let Some(c) = switch_cost {
        o.float(k!("switch_cost"), *c);
    }
    if let Some(d) = detail {
        o.value(k!("detail"), d)?;
    }
    o.close();
    Ok(())
}

/// A field name as it is written: quoted, with its colon (`"name":`), one literal.
macro_rules! k {
    ($name:literal) => {
        concat!("\"", $name, "\":")
    };
}
use k;

/// A JSON object being written: `{`, then `"name":value` pairs separated by commas. Every
/// `name` below is a [`k!`] literal: the quoted field name and its colon.
struct Object<'a> {
    out: &'a mut Vec<u8>,
    first: bool,
}

impl<'a> Object<'a> {
    fn open(out: &'a mut Vec<u8>) -> Self {
        out.push(b'{');
        Self { out, first: true }
    }

    /// `name` is a [`k!`] literal of one of this module's field names (plain ASCII, nothing
    /// to escape).
    fn key(&mut self, name: &str) {
        if !std::mem::replace(&mut self.first, false) {
            self.out.push(b',');
        }
        self.out.extend_from_slice(name.as_bytes());
    }

    fn str(&mut self, name: &str, value: &str) {
        self.key(name);
        string(self.out, value);
    }

    fn opt_str(&mut self, name: &str, value: &Option<String>) {
        if let Some(v) = value {
            self.str(name, v);
        }
    }

    fn int(&mut self, name: &str, value: impl itoa::Integer) {
        self.key(name);
        self.out
            .extend_from_slice(itoa::Buffer::new().format(value).as_bytes());
    }

    fn float(&mut self, name: &str, value: f64) {
        self.key(name);
        number(self.out, value);
    }

    /// A `bool` serde leaves out when `false`.
    fn flag(&mut self, name: &str, value: bool) {
        if value {
            self.key(name);
            self.out.extend_from_slice(b"true");
        }
    }

    fn raw(&mut self, name: &str, json: &RawJson) {
        self.key(name);
        self.out.extend_from_slice(json.get().as_bytes());
    }

    fn value<T: Serialize + ?Sized>(
        &mut self,
        name: &str,
        value: &T,
    ) -> Result<(), serde_json::Error> {
        self.key(name);
        serde_json::to_writer(&mut *self.out, value)
    }

    fn close(self) {
        self.out.push(b'}');
    }
}

/// An `f64` as serde_json writes it: its shortest form, `null` unless finite.
fn number(out: &mut Vec<u8>, value: f64) {
    if value.is_finite() {
        out.extend_from_slice(zmij::Buffer::new().format_finite(value).as_bytes());
    } else {
        out.extend_from_slice(b"null");
    }
}

/// A list of strings as serde_json writes a `Vec<String>`.
fn strings(out: &mut Vec<u8>, items: &[String]) {
    out.push(b'[');
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        string(out, item);
    }
    out.push(b']');
}

/// A map with string keys as serde_json writes a `BTreeMap<String, V>`, each value by
/// `value`.
fn map<V>(
    out: &mut Vec<u8>,
    entries: &std::collections::BTreeMap<String, V>,
    value: impl Fn(&mut Vec<u8>, &V),
) {
    out.push(b'{');
    for (i, (k, v)) in entries.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        string(out, k);
        out.push(b':');
        value(out, v);
    }
    out.push(b'}');
}

/// The bytes serde_json escapes in a string: `"`, `\` and the control characters.
static ESCAPED: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 0x20 {
        table[b] = true;
        b += 1;
    }
    table[b'"' as usize] = true;
    table[b'\\' as usize] = true;
    table
};

/// A JSON string as serde_json writes it. Ids and names rarely need escaping: those are
/// copied whole after one table lookup per byte; the rest go through serde_json's escaper.
fn string(out: &mut Vec<u8>, s: &str) {
    if s.bytes().any(|b| ESCAPED[usize::from(b)]) {
        // Writing a `str` into a `Vec` cannot fail.
        let _ = serde_json::to_writer(&mut *out, s);
    } else {
        out.reserve(s.len() + 2);
        out.push(b'"');
        out.extend_from_slice(s.as_bytes());
        out.push(b'"');
    }
}

#[cfg(test)]
#[path = "record_json_tests.rs"]
mod tests;
