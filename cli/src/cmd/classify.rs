//! `vllm-sr classify`: route prompts in process and print the outcome, without forwarding.

use std::io::BufRead;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context};
use serde_json::{json, Value};
use vllm_sr_engine::{Outcome, RequestView, RouteOptions};

use crate::output::out;
use crate::router::{ModelArgs, Router};

/// Route prompts through a recipe and show the decision, model and signals.
///
/// Each input is one prompt argument, or one line of a JSONL file: `{"query": "..."}` or
/// `{"messages": [...]}`, with optional `"model"` (default: the recipe's first auto name)
/// and `"headers"`. Nothing is forwarded to a backend.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    #[command(flatten)]
    recipe: super::RecipeArg,

    /// Prompts to classify.
    #[arg(value_name = "PROMPT")]
    prompts: Vec<String>,

    /// A JSONL file of requests (`-` for standard input).
    #[arg(long, value_name = "FILE.jsonl")]
    input: Option<PathBuf>,

    /// Print one JSON object per input.
    #[arg(long)]
    json: bool,

    /// Include the per-decision evaluation trace in JSON output.
    #[arg(long)]
    trace: bool,

    #[command(flatten)]
    budget: BudgetArg,

    #[command(flatten)]
    model: ModelArgs,
}

/// The `--signal-budget-ms` argument of `classify` and `eval`.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct BudgetArg {
    /// Per-request signal budget in milliseconds: embedding-backed signals whose embeddings
    /// have not arrived by then count as unmatched (and are listed as skipped). Default: the
    /// model runtime's deadline.
    #[arg(long, value_name = "MS", env = "VLLM_SR_SIGNAL_BUDGET_MS")]
    signal_budget_ms: Option<u64>,
}

impl BudgetArg {
    /// The budget as a duration.
    pub(crate) fn signal_budget(&self) -> Option<Duration> {
        self.signal_budget_ms.map(Duration::from_millis)
    }
}

pub(crate) fn run(args: &Args) -> anyhow::Result<ExitCode> {
    if args.prompts.is_empty() && args.input.is_none() {
        bail!("nothing to classify: pass a PROMPT or --input FILE.jsonl");
    }
    let router = Router::load(&args.recipe.config, &args.model)?;
    let auto = router
        .engine
        .config()
        .auto_model_names
        .first()
        .cloned()
        .unwrap_or_else(|| "auto".into());
    let mut inputs: Vec<Value> = args.prompts.iter().map(|p| json!({"query": p})).collect();
    if let Some(path) = &args.input {
        inputs.extend(read_jsonl(path)?);
    }
    for (i, input) in inputs.iter().enumerate() {
        let request = to_request(input, &auto).with_context(|| format!("input {}", i + 1))?;
        let outcome = router.route(
            request,
            RouteOptions {
                evaluate_all: false,
                signal_budget: args.budget.signal_budget(),
            },
        );
        if args.json {
            out(&serde_json::to_string(&summary(&outcome, args.trace))?);
        } else {
            print_human(input, &outcome);
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn read_jsonl(path: &PathBuf) -> anyhow::Result<Vec<Value>> {
    let reader: Box<dyn BufRead> = if path.as_os_str() == "-" {
        Box::new(std::io::stdin().lock())
    } else {
        Box::new(std::io::BufReader::new(
            std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?,
        ))
    };
    let mut out = Vec::new();
    for (n, line) in reader.lines().enumerate() {
        let line = line.with_context(|| format!("reading {}", path.display()))?;
        if line.trim().is_empty() {
            continue;
        }
        let v: Value = serde_json::from_str(&line)
            .with_context(|| format!("{}:{}: invalid JSON", path.display(), n + 1))?;
        out.push(v);
    }
    Ok(out)
}

fn to_request(input: &Value, auto: &str) -> anyhow::Result<RequestView> {
    let model = input.get("model").and_then(Value::as_str).unwrap_or(auto);
    let mut body = match (input.get("messages"), input.get("query")) {
        (Some(m), _) => json!({"messages": m}),
        (None, Some(Value::String(q))) => json!({"messages": [{"role": "user", "content": q}]}),
        _ => bail!("each input needs \"query\" (a string) or \"messages\" (a list)"),
    };
    body["model"] = json!(model);
    for key in ["tools", "metadata", "max_tokens", "max_completion_tokens"] {
        if let Some(v) = input.get(key) {
            body[key] = v.clone();
        }
    }
    let mut request = RequestView::from_json(&body)?;
    if let Some(h) = input.get("headers").and_then(Value::as_object) {
        let pairs: Vec<(String, String)> = h
            .iter()
            .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
            .collect();
        request = request.with_headers(pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    }
    Ok(request)
}

fn summary(o: &Outcome, trace: bool) -> Value {
    let mut v = json!({
        "decision": o.decision,
        "model": o.model,
        "confidence": o.confidence,
        "use_reasoning": o.use_reasoning,
        "reasoning_effort": o.reasoning_effort,
        "plugins": o.plugins,
        "signals": o.signals().matched_signals,
        "projection_scores": o.signals().projection_scores,
        "selection_status": o.selection_status,
        "latency_ms": o.timings.total_ms,
        "timings": o.timings,
    });
    if trace {
        v["eval_trace"] = json!(o.signals().eval_trace);
        v["signal_confidences"] = json!(o.signals().signal_confidences);
        v["signal_values"] = json!(o.signals().signal_values);
    }
    if !o.skipped_signals.is_empty() {
        v["skipped_signals"] = json!(o.skipped_signals);
    }
    if let Some(why) = &o.skip_reason {
        v["skip_reason"] = json!(why);
    }
    v
}

fn print_human(input: &Value, o: &Outcome) {
    let label = input
        .get("query")
        .and_then(Value::as_str)
        .map(|q| q.chars().take(60).collect::<String>())
        .unwrap_or_else(|| "(messages)".into());
    out(&format!(
        "{label:<60}  → {} · {} · conf {:.2} · {:.1} ms",
        o.decision.as_deref().unwrap_or("(default)"),
        o.model.as_deref().unwrap_or("-"),
        o.confidence,
        o.timings.total_ms
    ));
    let sigs: Vec<String> = o
        .signals()
        .matched_signals
        .iter()
        .map(|(k, v)| format!("{k}: {}", v.join(", ")))
        .collect();
    if !sigs.is_empty() {
        out(&format!("    signals  {}", sigs.join(" | ")));
    }
    if !o.skipped_signals.is_empty() {
        out(&format!(
            "    skipped  {} ({})",
            o.skipped_signals.join(", "),
            o.skip_reason.as_deref().unwrap_or("no vectors")
        ));
    }
}
