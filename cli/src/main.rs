//! The `vllm-sr` binary: command-line parsing and glue only.
//!
//! Each subcommand lives in `cmd/<name>.rs` as a small `run` function that calls into the
//! library crates under `server/`. Nothing here knows how a recipe is validated or how a
//! request is routed; it only parses flags, calls a library, and prints the result.

mod alloc;
mod cmd;
mod output;
mod router;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// mimalloc: per-request allocations are cheaper than with glibc malloc under concurrency.
#[global_allocator]
static GLOBAL: alloc::Allocator = alloc::Allocator;

/// vllm-sr routes OpenAI-compatible requests across a fleet of LLM backends.
///
/// Clients call one endpoint with `"model": "auto"`; vllm-sr reads the request, extracts
/// signals (keywords, embeddings, domain, complexity, PII, jailbreak, language, context
/// length, ...), evaluates the recipe's decisions and forwards the request to the chosen
/// model lane.
#[derive(Debug, Parser)]
#[command(
    name = "vllm-sr",
    version,
    propagate_version = true,
    max_term_width = 100
)]
struct Cli {
    /// Log filter (error, warn, info, debug, trace, or a tracing EnvFilter directive).
    /// Default: info for `serve`, warn otherwise.
    #[arg(long, global = true, env = "VLLM_SR_LOG")]
    log_level: Option<String>,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Check a recipe (config.yaml) against the v0.3 contract and report every problem.
    Validate(cmd::validate::Args),
    /// Inspect a recipe as the router sees it.
    #[command(subcommand)]
    Config(cmd::config::Command),
    /// Route prompts through a recipe in process and show decision, model and signals.
    Classify(cmd::classify::Args),
    /// Run a probes.yaml conformance suite against a recipe.
    Eval(cmd::eval::Args),
    /// Manage and try embedding models: list, pull, path, embed.
    #[command(subcommand)]
    Models(cmd::models::Command),
    /// Run the router as an OpenAI-compatible proxy in front of the recipe's backends.
    Serve(cmd::serve::Args),
}

fn main() -> ExitCode {
    single_threaded_kernels();
    let cli = Cli::parse();
    let default_level = match cli.command {
        Command::Serve(_) => "info",
        _ => "warn",
    };
    init_logging(cli.log_level.as_deref().unwrap_or(default_level));
    let result = match cli.command {
        Command::Validate(args) => cmd::validate::run(&args),
        Command::Config(command) => cmd::config::run(&command),
        Command::Classify(args) => cmd::classify::run(&args),
        Command::Eval(args) => cmd::eval::run(&args),
        Command::Models(command) => cmd::models::run(&command),
        Command::Serve(args) => cmd::serve::run(&args),
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            output::error(&err);
            ExitCode::from(2)
        }
    }
}

/// Model inference runs on the model runtime's own worker threads; candle's kernels should not
/// spin up a second pool per forward pass on top of them (measured on 2 cores: 256-token
/// latency 280 ms with candle's default threads vs 126 ms with one; see
/// scripts/bench/results). Explicit settings in the environment win.
#[expect(
    clippy::disallowed_methods,
    reason = "set once in main, before any thread exists"
)]
fn single_threaded_kernels() {
    for var in ["CANDLE_NUM_THREADS", "RAYON_NUM_THREADS"] {
        if std::env::var_os(var).is_none() {
            std::env::set_var(var, "1");
        }
    }
}

fn init_logging(filter: &str) {
    let filter = tracing_subscriber::EnvFilter::try_new(filter)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .with_target(false)
        .init();
}
