//! The evaluation trace, packed for Router Replay (`vllm_sr_store::JsonPacker`): the same
//! JSON text as serde_json makes of `[DecisionTrace]` when read (tested against it), at a
//! fraction of the cost of writing that text on the request path, and a quarter of its
//! bytes to store. Every field name of the trace is one byte in the packed form.

use vllm_sr_engine::decide::TraceNode;
use vllm_sr_engine::outcome::DecisionTrace;
use vllm_sr_store::{FieldName, JsonPacker, RawJson};

const DECISION_NAME: FieldName = FieldName::new("decision_name");
const MATCHED: FieldName = FieldName::new("matched");
const CONFIDENCE: FieldName = FieldName::new("confidence");
const ROOT_TRACE: FieldName = FieldName::new("root_trace");
const NODE_TYPE: FieldName = FieldName::new("node_type");
const SIGNAL_TYPE: FieldName = FieldName::new("signal_type");
const SIGNAL_NAME: FieldName = FieldName::new("signal_name");
const LABEL: FieldName = FieldName::new("label");
const CHILDREN: FieldName = FieldName::new("children");

/// `traces` packed; reads as the text of `serde_json::to_string(traces)`.
#[must_use]
pub fn packed_trace(traces: &[DecisionTrace]) -> RawJson {
    let mut p = JsonPacker::with_capacity(16 + traces.len() * 48);
    p.begin_array();
    for t in traces {
        p.begin_object();
        p.field(DECISION_NAME);
        p.str(&t.decision_name);
        p.field(MATCHED);
        p.bool(t.matched);
        p.field(CONFIDENCE);
        p.f64(t.confidence);
        p.field(ROOT_TRACE);
        node(&mut p, &t.root_trace);
        p.end_object();
    }
    p.end_array();
    p.finish()
}

fn node(p: &mut JsonPacker, n: &TraceNode) {
    p.begin_object();
    p.field(NODE_TYPE);
    p.str(n.node_type);
    if let Some(t) = n.signal_type {
        p.field(SIGNAL_TYPE);
        p.str(t);
    }
    if let Some(name) = &n.signal_name {
        p.field(SIGNAL_NAME);
        p.str(name);
    }
    if let Some(label) = &n.label {
        p.field(LABEL);
        p.str(label);
    }
    p.field(MATCHED);
    p.bool(n.matched);
    p.field(CONFIDENCE);
    p.f64(n.confidence);
    if !n.children.is_empty() {
        p.field(CHILDREN);
        p.begin_array();
        for c in &n.children {
            node(p, c);
        }
        p.end_array();
    }
    p.end_object();
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
        let ours = packed_trace(traces).get().into_owned();
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
