//! `vllm-sr config ...`: show a recipe as the router sees it.

use std::process::ExitCode;

use anyhow::Context;
use vllm_sr_config::{effective_yaml, Secrets};

use crate::output::{diagnostic, err, out};

#[derive(Debug, clap::Subcommand)]
pub(crate) enum Command {
    /// Print the effective config: environment substituted, `global` laid over the built-in
    /// defaults, legacy spellings normalised, secrets redacted.
    ///
    /// The output is itself a valid recipe that loads to the same routing config.
    Show(ShowArgs),
}

#[derive(Debug, clap::Args)]
pub(crate) struct ShowArgs {
    #[command(flatten)]
    recipe: super::RecipeArg,

    /// Print API keys and passwords instead of `<redacted>`.
    #[arg(long)]
    show_secrets: bool,
}

pub(crate) fn run(command: &Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Show(args) => show(args),
    }
}

fn show(args: &ShowArgs) -> anyhow::Result<ExitCode> {
    let file = args.recipe.config.display().to_string();
    let loaded = match super::load(&args.recipe.config, false) {
        Ok(l) => l,
        Err(e) => {
            for d in e.diagnostics().all() {
                err(&diagnostic(&file, d));
            }
            err(&format!(
                "{file}: invalid; fix the errors above (see `vllm-sr validate`)"
            ));
            return Ok(ExitCode::FAILURE);
        }
    };
    for d in loaded.diagnostics.warnings() {
        err(&diagnostic(&file, d));
    }
    let secrets = if args.show_secrets {
        Secrets::Reveal
    } else {
        Secrets::Redact
    };
    let yaml =
        effective_yaml(&loaded.document, secrets).context("serialising the effective config")?;
    out(&format!(
        "# Effective config of {file} (sha256 {})",
        loaded.document_hash
    ));
    out(yaml.trim_end());
    Ok(ExitCode::SUCCESS)
}
