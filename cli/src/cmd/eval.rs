//! `vllm-sr eval`: run a probes.yaml conformance suite in process.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use indexmap::IndexMap;
use vllm_sr_engine::probes::{self, ProbeSuite, SuiteContext};
use vllm_sr_engine::RouteOptions;

use crate::output::out;
use crate::router::{ModelArgs, Router};

/// Run a probes.yaml suite against a recipe and report pass rates.
///
/// Every variant is routed in process with all signals evaluated (as the eval API does) and
/// checked against its expected decision, alias, algorithm, plugins and signals. Exit
/// status: 0 when the suite's `acceptance` minimums hold, 1 when they do not.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    #[command(flatten)]
    recipe: super::RecipeArg,

    /// The probes file.
    #[arg(long, short = 'p', value_name = "probes.yaml")]
    probes: PathBuf,

    /// Print the report as JSON.
    #[arg(long)]
    json: bool,

    #[command(flatten)]
    budget: super::classify::BudgetArg,

    #[command(flatten)]
    model: ModelArgs,
}

pub(crate) fn run(args: &Args) -> anyhow::Result<ExitCode> {
    let text = std::fs::read_to_string(&args.probes)
        .with_context(|| format!("reading {}", args.probes.display()))?;
    let suite: ProbeSuite = serde_norway::from_str(&text)
        .with_context(|| format!("{} is not a probes v1 file", args.probes.display()))?;
    let router = Router::load(&args.recipe.config, &args.model)?;
    let cfg = router.engine.config();
    let mut decisions = IndexMap::new();
    for r in &cfg.recipes {
        decisions.insert(
            r.name.clone(),
            r.decisions.iter().map(|d| d.name.clone()).collect(),
        );
    }
    let ctx = SuiteContext {
        auto_names: cfg.auto_model_names.clone(),
        decisions,
    };
    let report = probes::run(&suite, &ctx, &mut |req| {
        router.route(
            req,
            RouteOptions {
                evaluate_all: true,
                signal_budget: args.budget.signal_budget(),
            },
        )
    });
    if args.json {
        out(&serde_json::to_string_pretty(&report)?);
    } else {
        out(&format!(
            "{}: {}/{} probes passed ({:.1}%), decisions {:.1}%",
            suite.name, report.passed, report.probes, report.pass_rate, report.decision_pass_rate
        ));
        out("\nper decision:");
        for (id, r) in &report.decisions {
            out(&format!(
                "  {id:<36} {:>3}/{:<3} {:>6.1}%",
                r.passed, r.probes, r.pass_rate
            ));
        }
        out("\nper tag:");
        for (tag, r) in &report.tags {
            out(&format!(
                "  {tag:<36} {:>3}/{:<3} {:>6.1}%",
                r.passed, r.probes, r.pass_rate
            ));
        }
        if !report.failures.is_empty() {
            out("\nfailures:");
            for f in &report.failures {
                out(&format!(
                    "  {}/{}: expected {}, got {}",
                    f.group,
                    f.variant,
                    f.expected_decision,
                    if f.decision.is_empty() {
                        "(none)"
                    } else {
                        &f.decision
                    }
                ));
                for r in &f.reasons {
                    out(&format!("      - {r}"));
                }
                let sigs: Vec<String> = f
                    .matched_signals
                    .iter()
                    .map(|(k, v)| format!("{k}: {}", v.join(", ")))
                    .collect();
                out(&format!("      matched: {}", sigs.join(" | ")));
            }
        }
        for a in &report.acceptance_failures {
            out(&format!("\nnot accepted: {a}"));
        }
    }
    Ok(if report.accepted {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
