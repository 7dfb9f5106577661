//! Probe suites (`probes.yaml`, contract §11.1): build each variant's request, route it, and
//! check the pass conditions of §11.2. Pure: the caller supplies the routing function.

use std::collections::BTreeSet;

use indexmap::IndexMap;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::outcome::Outcome;
use crate::request::RequestView;

/// A probe suite file.
#[derive(Debug, Clone, Deserialize)]
pub struct ProbeSuite {
    /// Suite name.
    #[serde(default)]
    pub name: String,
    /// Pass-rate minimums in percent.
    #[serde(default)]
    pub acceptance: Acceptance,
    /// Probe groups.
    pub decisions: Vec<ProbeGroup>,
}

/// `acceptance`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Acceptance {
    /// Minimum share of passing variants, percent.
    pub min_probe_pass_rate: Option<f64>,
    /// Minimum share of groups whose variants all pass, percent.
    pub min_decision_pass_rate: Option<f64>,
}

/// One `decisions[]` entry: an expected outcome and its variants.
#[derive(Debug, Clone, Deserialize)]
#[expect(missing_docs, reason = "fields named by the probes schema")]
pub struct ProbeGroup {
    pub id: String,
    pub expected_decision: String,
    #[serde(default)]
    pub model: Option<String>,
    #[serde(default)]
    pub expected_recipe: Option<String>,
    #[serde(default)]
    pub expected_algorithm: Option<String>,
    #[serde(default)]
    pub expected_plugins: Vec<String>,
    #[serde(default)]
    pub forbidden_plugins: Vec<String>,
    #[serde(default)]
    pub plugin_match: Option<String>,
    #[serde(default)]
    pub expected_alias: Option<String>,
    #[serde(default)]
    pub expected_signals: IndexMap<String, Vec<String>>,
    #[serde(default)]
    pub forbidden_signals: IndexMap<String, Vec<String>>,
    #[serde(default)]
    pub signal_match: Option<String>,
    pub variants: Vec<ProbeVariant>,
}

/// One request shape.
#[derive(Debug, Clone, Deserialize)]
#[expect(missing_docs, reason = "fields named by the probes schema")]
pub struct ProbeVariant {
    pub id: String,
    #[serde(default)]
    pub query: Option<String>,
    #[serde(default)]
    pub messages: Option<Vec<Value>>,
    #[serde(default)]
    pub tools: Option<Vec<Value>>,
    #[serde(default)]
    pub repeat: Option<usize>,
    #[serde(default)]
    pub padding: Option<Padding>,
    #[serde(default)]
    pub generated_text: Option<GeneratedText>,
    #[serde(default)]
    pub tags: Vec<String>,
    #[serde(default)]
    pub expected_signals: Option<IndexMap<String, Vec<String>>>,
}

/// `padding`.
#[derive(Debug, Clone, Deserialize)]
#[expect(missing_docs, reason = "fields named by the probes schema")]
pub struct Padding {
    pub text: String,
    #[serde(default)]
    pub repeat: Option<usize>,
    #[serde(default)]
    pub placement: Option<String>,
}

/// `generated_text`.
#[derive(Debug, Clone, Deserialize)]
#[expect(missing_docs, reason = "fields named by the probes schema")]
pub struct GeneratedText {
    pub message_index: usize,
    pub content_index: usize,
    pub target_text_bytes: usize,
    #[serde(default)]
    pub character: Option<String>,
}

/// Builds the chat request of a variant.
pub fn request_body(v: &ProbeVariant, model: &str) -> Value {
    let mut messages: Vec<Value> = match (&v.messages, &v.query) {
        (Some(m), _) => m.clone(),
        (None, Some(q)) => {
            let mut text = match v.repeat {
                Some(n) if n > 1 => vec![q.as_str(); n].join("\n"),
                _ => q.clone(),
            };
            if let Some(p) = &v.padding {
                let pad = vec![p.text.as_str(); p.repeat.unwrap_or(1).max(1)].join(" ");
                text = match p.placement.as_deref() {
                    Some("before") => format!("{pad}\n{text}"),
                    Some("around") => format!("{pad}\n{text}\n{pad}"),
                    _ => format!("{text}\n{pad}"),
                };
            }
            vec![json!({"role": "user", "content": text})]
        }
        (None, None) => Vec::new(),
    };
    if let Some(g) = &v.generated_text {
        let ch = g
            .character
            .as_deref()
            .and_then(|c| c.chars().next())
            .unwrap_or('x');
        let filler: String = std::iter::repeat_n(ch, g.target_text_bytes).collect();
        if let Some(msg) = messages.get_mut(g.message_index) {
            let part = json!({"type": "text", "text": filler});
            match msg.get_mut("content") {
                Some(Value::Array(parts)) => {
                    let at = g.content_index.min(parts.len());
                    parts.insert(at, part);
                }
                Some(content) => {
                    let existing = content.take();
                    let mut parts = vec![];
                    if let Value::String(s) = existing {
                        parts.push(json!({"type": "text", "text": s}));
                    }
                    let at = g.content_index.min(parts.len());
                    parts.insert(at, part);
                    *content = Value::Array(parts);
                }
                None => {}
            }
        }
    }
    let mut body = json!({"model": model, "messages": messages});
    if let Some(t) = &v.tools {
        body["tools"] = json!(t);
    }
    body
}

/// One variant's result.
#[derive(Debug, Clone, Serialize)]
pub struct ProbeResult {
    /// Group id.
    pub group: String,
    /// Variant id.
    pub variant: String,
    /// Tags.
    pub tags: Vec<String>,
    /// Expected decision.
    pub expected_decision: String,
    /// Decision that won (empty when none).
    pub decision: String,
    /// Selected or base model.
    pub model: Option<String>,
    /// Why it failed; empty when it passed.
    pub reasons: Vec<String>,
    /// Matched signals (for failure reports).
    pub matched_signals: IndexMap<String, Vec<String>>,
    /// Routing time in milliseconds.
    pub latency_ms: f64,
}

impl ProbeResult {
    /// True when every condition held.
    pub fn passed(&self) -> bool {
        self.reasons.is_empty()
    }
}

/// Pass rate of a slice.
#[derive(Debug, Clone, Serialize, Default)]
pub struct Rate {
    /// Variants.
    pub probes: usize,
    /// Passing variants.
    pub passed: usize,
    /// Percent.
    pub pass_rate: f64,
}

impl Rate {
    fn add(&mut self, ok: bool) {
        self.probes += 1;
        self.passed += usize::from(ok);
        self.pass_rate = 100.0 * self.passed as f64 / self.probes as f64;
    }
}

/// A suite's results.
#[derive(Debug, Clone, Serialize)]
pub struct SuiteReport {
    /// Variants run.
    pub probes: usize,
    /// Variants passed.
    pub passed: usize,
    /// Percent of variants passing.
    pub pass_rate: f64,
    /// Percent of groups whose variants all pass.
    pub decision_pass_rate: f64,
    /// Per group id.
    pub decisions: IndexMap<String, Rate>,
    /// Per tag.
    pub tags: IndexMap<String, Rate>,
    /// Failed variants.
    pub failures: Vec<ProbeResult>,
    /// The acceptance minimums hold.
    pub accepted: bool,
    /// Which minimum failed.
    pub acceptance_failures: Vec<String>,
}

/// What the checks need to know about the recipe.
#[derive(Debug, Clone)]
pub struct SuiteContext {
    /// Auto names, for probes that do not set `model`.
    pub auto_names: Vec<String>,
    /// Decision names per recipe name.
    pub decisions: IndexMap<String, Vec<String>>,
}

/// Runs every variant through `route` and checks the results.
pub fn run(
    suite: &ProbeSuite,
    ctx: &SuiteContext,
    route: &mut dyn FnMut(RequestView) -> Outcome,
) -> SuiteReport {
    let mut results = Vec::new();
    let mut rr = 0usize;
    for g in &suite.decisions {
        for v in &g.variants {
            let model = match &g.model {
                Some(m) => m.clone(),
                None if !ctx.auto_names.is_empty() => {
                    rr += 1;
                    ctx.auto_names[(rr - 1) % ctx.auto_names.len()].clone()
                }
                None => "vllm-sr/auto".to_string(),
            };
            let body = request_body(v, &model);
            let started = std::time::Instant::now();
            let outcome = match RequestView::from_json(&body) {
                Ok(req) => route(req),
                Err(e) => {
                    results.push(failed(g, v, format!("probe request is invalid: {e}")));
                    continue;
                }
            };
            let latency_ms = started.elapsed().as_secs_f64() * 1e3;
            let reasons = check(g, v, &model, ctx, &outcome);
            results.push(ProbeResult {
                group: g.id.clone(),
                variant: v.id.clone(),
                tags: v.tags.clone(),
                expected_decision: g.expected_decision.clone(),
                decision: outcome.decision.clone().unwrap_or_default(),
                model: outcome.model.clone(),
                reasons,
                matched_signals: outcome
                    .signals()
                    .matched_signals
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect(),
                latency_ms,
            });
        }
    }
    summarize(suite, results)
}

fn failed(g: &ProbeGroup, v: &ProbeVariant, reason: String) -> ProbeResult {
    ProbeResult {
        group: g.id.clone(),
        variant: v.id.clone(),
        tags: v.tags.clone(),
        expected_decision: g.expected_decision.clone(),
        decision: String::new(),
        model: None,
        reasons: vec![reason],
        matched_signals: IndexMap::new(),
        latency_ms: 0.0,
    }
}

fn set(v: &[String]) -> BTreeSet<&str> {
    v.iter().map(String::as_str).collect()
}

/// The §11.2 pass conditions; returns the reasons a probe failed.
pub fn check(
    g: &ProbeGroup,
    v: &ProbeVariant,
    model: &str,
    ctx: &SuiteContext,
    o: &Outcome,
) -> Vec<String> {
    let mut r = Vec::new();
    let decision = o.decision.clone().unwrap_or_default();
    if decision != g.expected_decision {
        r.push(format!(
            "decision: expected {}, got {}",
            g.expected_decision,
            if decision.is_empty() {
                "(none)"
            } else {
                &decision
            }
        ));
    }
    if o.requested_model != model {
        r.push(format!(
            "requested_model: expected {model}, got {}",
            o.requested_model
        ));
    }
    let recipe = g.expected_recipe.as_deref().unwrap_or("default");
    if o.recipe != recipe {
        r.push(format!("recipe: expected {recipe}, got {}", o.recipe));
    }
    if let Some(a) = &g.expected_algorithm {
        if &o.algorithm != a {
            r.push(format!("algorithm: expected {a}, got {}", o.algorithm));
        }
    }
    let plugins = set(&o.plugins);
    for p in &g.expected_plugins {
        if !plugins.contains(p.as_str()) {
            r.push(format!(
                "plugin {p} expected but not configured on the winner"
            ));
        }
    }
    for p in &g.forbidden_plugins {
        if plugins.contains(p.as_str()) {
            r.push(format!("plugin {p} is forbidden"));
        }
    }
    if g.plugin_match.as_deref() == Some("exact") && plugins != set(&g.expected_plugins) {
        r.push(format!(
            "plugins: expected exactly {:?}, got {:?}",
            g.expected_plugins, o.plugins
        ));
    }
    if let Some(alias) = &g.expected_alias {
        let ok = match o.recommended_models.as_slice() {
            [only] => only == alias,
            many => many.contains(alias),
        };
        if !ok {
            r.push(format!(
                "alias: expected {alias}, recommended {:?}",
                o.recommended_models
            ));
        }
    }
    let names: Vec<&str> = o
        .signals()
        .eval_trace
        .iter()
        .map(|t| t.decision_name.as_str())
        .collect();
    let unique: BTreeSet<&str> = names.iter().copied().collect();
    if names.is_empty() || unique.len() != names.len() {
        r.push("eval_trace is empty or has duplicate decisions".into());
    }
    if let Some(declared) = ctx.decisions.get(recipe) {
        if unique != declared.iter().map(String::as_str).collect() {
            r.push("eval_trace does not list exactly the recipe's decisions".into());
        }
    }
    if !o
        .signals()
        .eval_trace
        .iter()
        .any(|t| t.decision_name == g.expected_decision && t.matched)
    {
        r.push(format!("eval_trace: {} did not match", g.expected_decision));
    }
    if !o.signal_errors.is_empty() {
        r.push(format!("signal_errors: {:?}", o.signal_errors));
    }
    let status = &*o.selection_status;
    let status_ok = match &*o.algorithm {
        "static" | "multi_factor" | "latency_aware" => {
            matches!(status, "selected" | "execution_required")
        }
        "workflows" | "fusion" | "remom" => {
            matches!(status, "planned_final" | "execution_required")
        }
        "confidence" => status == "execution_required",
        _ => true,
    };
    if !status_ok {
        r.push(format!(
            "selection_status {status} is not valid for algorithm {}",
            o.algorithm
        ));
    }
    let method_ok = o.selection_method == o.algorithm
        || (o.algorithm == "static" && o.selection_method == "single");
    if !method_ok && status != "fallback" {
        r.push(format!(
            "selection_method {} does not match algorithm {}",
            o.selection_method, o.algorithm
        ));
    }
    if status == "selected"
        && !o
            .model
            .as_ref()
            .is_some_and(|m| o.recommended_models.contains(m))
    {
        r.push("selected model is not among the recommended models".into());
    }
    let expected = v.expected_signals.as_ref().unwrap_or(&g.expected_signals);
    let exact = g.signal_match.as_deref() == Some("exact");
    for (key, want) in expected {
        let got: BTreeSet<&str> = o
            .signals()
            .matched_signals
            .get(key)
            .map(|v| set(v))
            .unwrap_or_default();
        for w in want {
            if !got.contains(w.as_str()) {
                r.push(format!(
                    "signal {key}:{w} expected (matched {key}: {got:?})"
                ));
            }
        }
        if exact && got != set(want) {
            r.push(format!(
                "signals {key}: expected exactly {want:?}, got {got:?}"
            ));
        }
    }
    for (key, forbid) in &g.forbidden_signals {
        let got: BTreeSet<&str> = o
            .signals()
            .matched_signals
            .get(key)
            .map(|v| set(v))
            .unwrap_or_default();
        for f in forbid {
            if got.contains(f.as_str()) {
                r.push(format!("signal {key}:{f} is forbidden but matched"));
            }
        }
    }
    r
}

fn summarize(suite: &ProbeSuite, results: Vec<ProbeResult>) -> SuiteReport {
    let mut decisions: IndexMap<String, Rate> = IndexMap::new();
    let mut tags: IndexMap<String, Rate> = IndexMap::new();
    let mut total = Rate::default();
    for res in &results {
        let ok = res.passed();
        total.add(ok);
        decisions.entry(res.group.clone()).or_default().add(ok);
        for t in &res.tags {
            tags.entry(t.clone()).or_default().add(ok);
        }
    }
    tags.sort_keys();
    let groups_ok = decisions.values().filter(|r| r.passed == r.probes).count();
    let decision_pass_rate = if decisions.is_empty() {
        0.0
    } else {
        100.0 * groups_ok as f64 / decisions.len() as f64
    };
    let mut acceptance_failures = Vec::new();
    if let Some(min) = suite.acceptance.min_probe_pass_rate {
        if total.pass_rate + 1e-9 < min {
            acceptance_failures.push(format!(
                "probe pass rate {:.1}% is below the minimum {min}%",
                total.pass_rate
            ));
        }
    }
    if let Some(min) = suite.acceptance.min_decision_pass_rate {
        if decision_pass_rate + 1e-9 < min {
            acceptance_failures.push(format!(
                "decision pass rate {decision_pass_rate:.1}% is below the minimum {min}%"
            ));
        }
    }
    SuiteReport {
        probes: total.probes,
        passed: total.passed,
        pass_rate: total.pass_rate,
        decision_pass_rate,
        decisions,
        tags,
        failures: results.into_iter().filter(|r| !r.passed()).collect(),
        accepted: acceptance_failures.is_empty(),
        acceptance_failures,
    }
}
