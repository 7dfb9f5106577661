//! The evaluation trace as JSON text, written directly: the text serde_json makes of
//! `[DecisionTrace]` (tested against it), at a fraction of the cost.
//!
//! Router Replay stores the trace of every routed request. serde_json spends most of that
//! work escaping the trace's field names character by character; here the names and the
//! punctuation around them are literal bytes and only the recipe's own names (decisions,
//! signals, labels) go through serde_json's string escaping.

use crate::decide::TraceNode;
use crate::outcome::DecisionTrace;

/// `traces` as compact JSON, the same text as `serde_json::to_string(traces)`.
#[must_use]
pub fn eval_trace_json(traces: &[DecisionTrace]) -> String {
    let mut out = Vec::with_capacity(64 + traces.len() * 160);
    out.push(b'[');
    for (i, t) in traces.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(b"{\"decision_name\":");
        string(&mut out, &t.decision_name);
        out.extend_from_slice(b",\"matched\":");
        boolean(&mut out, t.matched);
        out.extend_from_slice(b",\"confidence\":");
        number(&mut out, t.confidence);
        out.extend_from_slice(b",\"root_trace\":");
        node(&mut out, &t.root_trace);
        out.push(b'}');
    }
    out.push(b']');
    // Only whole UTF-8 strings and ASCII were written.
    String::from_utf8(out).unwrap_or_default()
}

fn node(out: &mut Vec<u8>, n: &TraceNode) {
    out.extend_from_slice(b"{\"node_type\":");
    string(out, n.node_type);
    if let Some(t) = n.signal_type {
        out.extend_from_slice(b",\"signal_type\":");
        string(out, t);
    }
    if let Some(name) = &n.signal_name {
        out.extend_from_slice(b",\"signal_name\":");
        string(out, name);
    }
    if let Some(label) = &n.label {
        out.extend_from_slice(b",\"label\":");
        string(out, label);
    }
    out.extend_from_slice(b",\"matched\":");
    boolean(out, n.matched);
    out.extend_from_slice(b",\"confidence\":");
    number(out, n.confidence);
    if !n.children.is_empty() {
        out.extend_from_slice(b",\"children\":[");
        for (i, c) in n.children.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            node(out, c);
        }
        out.push(b']');
    }
    out.push(b'}');
}

/// A JSON string, escaped by serde_json.
fn string(out: &mut Vec<u8>, s: &str) {
    // Writing a `str` into a `Vec` cannot fail.
    let _ = serde_json::to_writer(&mut *out, s);
}

fn boolean(out: &mut Vec<u8>, b: bool) {
    out.extend_from_slice(if b { b"true" } else { b"false" });
}

/// A number as serde_json writes it (the same shortest form; `null` unless finite).
fn number(out: &mut Vec<u8>, x: f64) {
    if x.is_finite() {
        out.extend_from_slice(zmij::Buffer::new().format_finite(x).as_bytes());
    } else {
        out.extend_from_slice(b"null");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leaf(name: &str, label: Option<&str>, matched: bool, confidence: f64) -> TraceNode {
        TraceNode {
            node_type: "leaf",
            signal_type: Some("keyword"),
            signal_name: Some(name.into()),
            label: label.map(Into::into),
            matched,
            confidence,
            children: Vec::new(),
        }
    }

    fn composite(node_type: &'static str, children: Vec<TraceNode>) -> TraceNode {
        TraceNode {
            node_type,
            signal_type: None,
            signal_name: None,
            label: None,
            matched: children.iter().any(|c| c.matched),
            confidence: 0.5,
            children,
        }
    }

    #[track_caller]
    fn same(traces: &[DecisionTrace]) {
        let ours = eval_trace_json(traces);
        assert_eq!(ours, serde_json::to_string(traces).unwrap_or_default());
        assert!(serde_json::from_str::<serde_json::Value>(&ours).is_ok());
    }

    #[test]
    fn matches_serde_json_for_every_node_shape() {
        same(&[]);
        let tree = composite(
            "AND",
            vec![
                leaf("proof_keywords", None, true, 1.0),
                composite(
                    "NOT",
                    vec![leaf(
                        "a \"quoted\" \\ name\n\u{1}é",
                        Some("lab\tel"),
                        false,
                        0.0,
                    )],
                ),
                composite("OR", vec![]),
            ],
        );
        same(&[
            DecisionTrace {
                decision_name: "math \"fast\" path".into(),
                matched: true,
                confidence: 0.873_456_789_012_345_6,
                root_trace: tree,
            },
            DecisionTrace {
                decision_name: "fallback".into(),
                matched: false,
                confidence: 0.0,
                root_trace: TraceNode {
                    node_type: "fallback",
                    signal_type: None,
                    signal_name: None,
                    label: None,
                    matched: false,
                    confidence: -0.0,
                    children: Vec::new(),
                },
            },
        ]);
    }

    #[test]
    fn numbers_match_serde_json_including_non_finite_ones() {
        for x in [
            f64::NAN,
            f64::INFINITY,
            f64::NEG_INFINITY,
            1e-7,
            1e21,
            5e-324,
            f64::MAX,
            0.1 + 0.2,
            3.0,
        ] {
            same(&[DecisionTrace {
                decision_name: "d".into(),
                matched: false,
                confidence: x,
                root_trace: leaf("s", None, false, x),
            }]);
        }
    }
}
