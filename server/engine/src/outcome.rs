//! The routing outcome: what was decided and why, serialisable for the CLI, the eval API
//! (contract §11.2), response headers and replay.

use std::borrow::Cow;
use std::fmt;
use std::sync::{Arc, OnceLock};

use indexmap::IndexMap;
use serde::Serialize;
use serde_json::{json, Value};

use crate::decide::TraceNode;
use crate::report::ReportSource;

/// How the request's `model` was interpreted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RouteKind {
    /// An auto name or entrypoint: the recipe chose.
    Auto,
    /// A logical model named explicitly: routing was bypassed.
    Explicit,
    /// A model the recipe does not know.
    Unknown,
}

/// Per-family timing and confidence (the eval API's `metrics`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct FamilyMetric {
    /// Wall time of the family in milliseconds.
    pub execution_time_ms: f64,
    /// Highest confidence among matched rules (0 when none).
    pub confidence: f64,
    /// The family ran for this request (not part of the eval shape).
    #[serde(skip)]
    pub evaluated: bool,
}

/// One decision's evaluation.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DecisionTrace {
    /// Decision name.
    pub decision_name: String,
    /// Whether its rules matched.
    pub matched: bool,
    /// Rule-tree confidence.
    pub confidence: f64,
    /// The evaluated tree.
    pub root_trace: TraceNode,
}

/// Stage timings in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize)]
pub struct Timings {
    /// The request's embedding batch (measured by the caller).
    pub embed_ms: f64,
    /// All signal families.
    pub signals_ms: f64,
    /// Partitions, projections, decisions and selection.
    pub decide_ms: f64,
    /// Everything inside the engine plus the embedding.
    pub total_ms: f64,
}

/// The outcome's maps. Their keys are names from the recipe, never request data, so they
/// hash with foldhash instead of the std default (SipHash), which cost more per request than
/// the rest of building the outcome.
pub type NameMap<K, V> = IndexMap<K, V, foldhash::fast::RandomState>;

/// Per-family metrics in family order; written as a map, leaf type → metric.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct FamilyMetrics(pub Vec<(&'static str, FamilyMetric)>);

impl FamilyMetrics {
    /// Leaf type and metric of every family, in family order.
    pub fn iter(&self) -> impl Iterator<Item = (&'static str, &FamilyMetric)> {
        self.0.iter().map(|(k, m)| (*k, m))
    }
}

impl Serialize for FamilyMetrics {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_map(self.0.iter().map(|(k, v)| (k, v)))
    }
}

/// The result of routing one request.
///
/// Text fixed by the code (algorithm, selection status, method and most reasons) is borrowed,
/// not allocated per request.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Outcome {
    /// The request's `model`.
    pub requested_model: String,
    /// How it was interpreted.
    pub kind: RouteKind,
    /// Recipe name (`default` unless an entrypoint chose another).
    pub recipe: String,
    /// Winning decision (`None`: no match, the default model is used).
    pub decision: Option<String>,
    /// Its rule-tree confidence.
    pub confidence: f64,
    /// Final logical model (card name), when one is known.
    pub model: Option<String>,
    /// LoRA forwarded instead of the card.
    pub lora: Option<String>,
    /// Reasoning on for the chosen model.
    pub use_reasoning: bool,
    /// Effort for reasoning families that take one.
    pub reasoning_effort: String,
    /// The winner's modelRefs.
    pub recommended_models: Vec<String>,
    /// `static` unless the decision names another algorithm.
    pub algorithm: Cow<'static, str>,
    /// `selected`, `execution_required`, `fallback`, ...
    pub selection_status: Cow<'static, str>,
    /// `single` or the algorithm name.
    pub selection_method: Cow<'static, str>,
    /// Why this model.
    pub selection_reason: Cow<'static, str>,
    /// Normalised plugin types of the winner.
    pub plugins: Vec<String>,
    /// Families the decisions reference (the recipe's, shared: computed once per engine).
    pub used_signals: Arc<IndexMap<String, Vec<String>>>,
    /// Family → error.
    pub signal_errors: IndexMap<String, String>,
    /// Families left unfinished (signal budget or missing vectors).
    pub skipped_signals: Vec<String>,
    /// Why families were skipped (the signal budget ran out, the embedding failed, ...).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub skip_reason: Option<String>,
    /// Matched and unmatched names, confidences, values and the eval trace: built on first
    /// read ([`Outcome::signals`]); serialised as the outcome's own fields.
    #[serde(flatten)]
    pub(crate) signals: LazyReport,
    /// Per-family metrics.
    pub metrics: FamilyMetrics,
    /// Estimated request tokens (context family).
    pub context_token_count: u64,
    /// Stage timings.
    pub timings: Timings,
}

/// What the signals said, by name: the eval API's maps and every decision's trace.
///
/// Naming every signal allocates a string per name, and tracing every decision a node per
/// rule: most routed requests read none of it (only the eval API, debug headers and replay
/// do), so an auto outcome keeps the request's signal state and builds this on first read.
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct SignalReport {
    /// Matched names per family (eval keys, complexity with level, `projection`).
    pub matched_signals: NameMap<String, Vec<String>>,
    /// Declared but unmatched names per family.
    pub unmatched_signals: NameMap<String, Vec<String>>,
    /// `type:name` → confidence.
    pub signal_confidences: NameMap<String, f64>,
    /// `type:name[:sub]` → raw value.
    pub signal_values: NameMap<String, f64>,
    /// Score name → value.
    pub projection_scores: NameMap<String, f64>,
    /// Every decision in declaration order.
    pub eval_trace: Vec<DecisionTrace>,
}

/// A [`SignalReport`] built on first read from the state it is computed from.
///
/// One pointer in the outcome: the report (a few hundred bytes of maps) and what it is built
/// from live behind it, so moving an outcome does not copy them.
#[derive(Clone)]
pub(crate) struct LazyReport(Option<Box<Deferred>>);

/// The report once built, and what it is built from.
#[derive(Clone)]
struct Deferred {
    report: OnceLock<SignalReport>,
    source: ReportSource,
}

impl LazyReport {
    /// A report built from `source` when first read.
    pub(crate) fn deferred(source: ReportSource) -> Self {
        Self(Some(Box::new(Deferred {
            report: OnceLock::new(),
            source,
        })))
    }

    /// The empty report of an outcome that evaluated no signals.
    pub(crate) fn empty() -> Self {
        Self(None)
    }

    fn get(&self) -> &SignalReport {
        static EMPTY: OnceLock<SignalReport> = OnceLock::new();
        match &self.0 {
            Some(d) => d.report.get_or_init(|| d.source.build()),
            None => EMPTY.get_or_init(SignalReport::default),
        }
    }
}

impl PartialEq for LazyReport {
    fn eq(&self, other: &Self) -> bool {
        self.get() == other.get()
    }
}

impl fmt::Debug for LazyReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.get().fmt(f)
    }
}

impl Serialize for LazyReport {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.get().serialize(serializer)
    }
}

impl Outcome {
    /// The signals by name and the decision traces, built on the first call.
    pub fn signals(&self) -> &SignalReport {
        self.signals.get()
    }

    /// The eval API response body (contract §11.2).
    pub fn eval_response(&self, original_text: &str) -> Value {
        let signals = self.signals();
        let mut decision_result = json!({
            "decision_name": self.decision.clone().unwrap_or_default(),
            "algorithm": self.algorithm,
            "plugins": self.plugins,
            "used_signals": self.used_signals,
            "matched_signals": signals.matched_signals,
            "unmatched_signals": signals.unmatched_signals,
        });
        if self.decision.is_none() {
            decision_result["decision_name"] = json!("");
        }
        let mut v = json!({
            "original_text": original_text,
            "requested_model": self.requested_model,
            "recipe": self.recipe,
            "decision_result": decision_result,
            "eval_trace": signals.eval_trace,
            "selection_status": self.selection_status,
            "selection_method": self.selection_method,
            "selection_reason": self.selection_reason,
            "metrics": self.metrics,
            "signal_confidences": signals.signal_confidences,
            "signal_values": signals.signal_values,
            "signal_errors": self.signal_errors,
            "projection_scores": signals.projection_scores,
        });
        if !self.recommended_models.is_empty() {
            v["recommended_models"] = json!(self.recommended_models);
            v["routing_decision"] = json!(self.decision.clone().unwrap_or_default());
        }
        if self.selection_status != "execution_required" {
            if let Some(m) = &self.model {
                v["selected_model"] = json!(m);
            }
        }
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn family_metrics_are_written_as_a_map_in_family_order() {
        let metric = |ms, confidence| FamilyMetric {
            execution_time_ms: ms,
            confidence,
            evaluated: true,
        };
        let metrics = FamilyMetrics(vec![
            ("keyword", metric(0.5, 1.0)),
            ("embedding", metric(2.0, 0.25)),
        ]);
        assert_eq!(
            serde_json::to_string(&metrics).unwrap_or_default(),
            r#"{"keyword":{"execution_time_ms":0.5,"confidence":1.0},"embedding":{"execution_time_ms":2.0,"confidence":0.25}}"#
        );
        assert_eq!(
            metrics.iter().map(|(k, _)| k).collect::<Vec<_>>(),
            ["keyword", "embedding"]
        );
    }
}
