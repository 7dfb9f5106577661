//! `vllm-sr validate`: check a recipe and report every problem.

use std::process::ExitCode;

use serde::Serialize;
use vllm_sr_config::{Diagnostic, Diagnostics, Summary};

use crate::output::{diagnostic, err, out};

/// Check a recipe against the v0.3 contract.
///
/// Every error is reported at once with its YAML path and line:column, followed by the
/// warnings (unknown keys, deprecated spellings, unset environment variables). Exit status:
/// 0 when the recipe is valid, 1 when it has errors.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    #[command(flatten)]
    recipe: super::RecipeArg,

    /// Treat warnings (unknown keys, deprecated spellings, unset variables) as errors.
    #[arg(long)]
    strict: bool,

    /// Print one JSON object: {"valid", "errors", "warnings", "summary"}.
    #[arg(long)]
    json: bool,
}

#[derive(Serialize)]
struct JsonDiag<'a> {
    path: &'a str,
    line: Option<usize>,
    column: Option<usize>,
    message: &'a str,
}

impl<'a> From<&'a Diagnostic> for JsonDiag<'a> {
    fn from(d: &'a Diagnostic) -> Self {
        Self {
            path: &d.path,
            line: d.line,
            column: d.column,
            message: &d.message,
        }
    }
}

#[derive(Serialize)]
struct JsonReport<'a> {
    valid: bool,
    errors: Vec<JsonDiag<'a>>,
    warnings: Vec<JsonDiag<'a>>,
    summary: Option<Summary>,
}

pub(crate) fn run(args: &Args) -> anyhow::Result<ExitCode> {
    let file = args.recipe.config.display().to_string();
    let (diags, summary) = match super::load(&args.recipe.config, args.strict) {
        Ok(loaded) => (loaded.diagnostics, Some(Summary::of(&loaded.config))),
        Err(e) => (e.diagnostics(), None),
    };
    let valid = summary.is_some();
    if args.json {
        let report = JsonReport {
            valid,
            errors: diags.errors().map(JsonDiag::from).collect(),
            warnings: diags.warnings().map(JsonDiag::from).collect(),
            summary,
        };
        out(&serde_json::to_string_pretty(&report)?);
    } else {
        print_human(&file, &diags, summary.as_ref());
    }
    Ok(if valid {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn print_human(file: &str, diags: &Diagnostics, summary: Option<&Summary>) {
    for d in diags.errors() {
        err(&diagnostic(file, d));
    }
    for d in diags.warnings() {
        err(&diagnostic(file, d));
    }
    let (errors, warnings) = (diags.errors().count(), diags.warnings().count());
    let Some(s) = summary else {
        err(&format!(
            "{file}: invalid: {errors} error(s), {warnings} warning(s)"
        ));
        return;
    };
    out(&format!(
        "{file}: valid ({}, {warnings} warning(s))",
        s.version
    ));
    for l in &s.listeners {
        out(&format!("  listener  {l}"));
    }
    out(&format!(
        "  models    {} ({})",
        s.models.len(),
        s.models.join(", ")
    ));
    if let Some(d) = &s.default_model {
        out(&format!("  default   {d}"));
    }
    if !s.auto_model_names.is_empty() {
        out(&format!("  auto      {}", s.auto_model_names.join(", ")));
    }
    for r in &s.recipes {
        out(&format!(
            "  recipe    {}: {} decision(s), {} projection(s)",
            r.name,
            r.decisions.len(),
            r.projections
        ));
        if !r.signals.is_empty() {
            let counts: Vec<String> = r.signals.iter().map(|(k, n)| format!("{k} {n}")).collect();
            out(&format!("    signals   {}", counts.join(", ")));
        }
        if !r.decisions.is_empty() {
            out(&format!("    decisions {}", r.decisions.join(", ")));
        }
    }
    if !s.entrypoints.is_empty() {
        out(&format!("  entrypoints {}", s.entrypoints.join(", ")));
    }
}
