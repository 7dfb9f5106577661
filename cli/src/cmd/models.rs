//! `vllm-sr models …`: list, pull, locate and try embedding models.
//!
//! A thin layer over `vllm_sr_models`: argument parsing and output formatting only. Model
//! references (REF) are Hugging Face repo ids (`org/name`), local directories, or `default`.

use std::io::Write;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::Context;
use vllm_sr_models::{
    DeviceSpec, EmbeddingModel, LoadOptions, ModelRegistry, Precision, DEFAULT_EMBEDDING_MODEL,
};

/// `vllm-sr models` subcommands.
#[derive(Debug, clap::Subcommand)]
pub(crate) enum Command {
    /// List installed models (every directory searched, primary first).
    List(ListArgs),
    /// Download a model from the Hugging Face hub into the models directory.
    Pull(PullArgs),
    /// Print the local directory a model reference resolves to.
    Path(PathArgs),
    /// Embed texts and print dimensions, norm and timing (or JSON).
    Embed(EmbedArgs),
}

/// Arguments of `models list`.
#[derive(Debug, clap::Args)]
pub(crate) struct ListArgs {
    /// Print JSON instead of a table.
    #[arg(long)]
    pub(crate) json: bool,
}

/// Arguments of `models pull`.
#[derive(Debug, clap::Args)]
pub(crate) struct PullArgs {
    /// Repo id, e.g. sentence-transformers/all-MiniLM-L6-v2.
    pub(crate) reference: String,
    /// Branch, tag or commit.
    #[arg(long, default_value = "main")]
    pub(crate) revision: String,
    /// Hub endpoint.
    #[arg(long, env = "HF_ENDPOINT", default_value = "https://huggingface.co")]
    pub(crate) endpoint: String,
    /// Hide progress bars.
    #[arg(long)]
    pub(crate) quiet: bool,
}

/// Arguments of `models path`.
#[derive(Debug, clap::Args)]
pub(crate) struct PathArgs {
    /// Repo id, local directory, or `default`.
    #[arg(default_value = "default")]
    pub(crate) reference: String,
}

/// Arguments of `models embed`.
#[derive(Debug, clap::Args)]
pub(crate) struct EmbedArgs {
    /// Model: repo id, local directory, or `default`.
    #[arg(long, default_value = DEFAULT_EMBEDDING_MODEL)]
    pub(crate) model: String,
    /// Device: cpu, cuda[:N] or metal[:N].
    #[arg(long, default_value = "cpu", env = "VLLM_SR_DEVICE")]
    pub(crate) device: String,
    /// Linear-layer precision: f32 or q8.
    #[arg(long, default_value = "f32")]
    pub(crate) precision: String,
    /// Keep only the first N dimensions (Matryoshka models).
    #[arg(long)]
    pub(crate) truncate_dim: Option<usize>,
    /// Print `{"model","dims","vectors","ms"}` as JSON.
    #[arg(long)]
    pub(crate) json: bool,
    /// Texts to embed.
    #[arg(required = true)]
    pub(crate) texts: Vec<String>,
}

/// Runs one `models` subcommand.
pub(crate) fn run(command: &Command) -> anyhow::Result<ExitCode> {
    let registry = ModelRegistry::from_env();
    let mut out = std::io::stdout().lock();
    match command {
        Command::List(args) => {
            let models = registry.list();
            if args.json {
                let rows: Vec<serde_json::Value> = models
                    .iter()
                    .map(|m| {
                        serde_json::json!({
                            "id": m.id, "path": m.dir, "model_type": m.model_type,
                            "size_bytes": m.size_bytes,
                        })
                    })
                    .collect();
                writeln!(out, "{}", serde_json::Value::Array(rows))?;
                return Ok(ExitCode::SUCCESS);
            }
            let dirs: Vec<String> = registry
                .search_dirs()
                .iter()
                .map(|d| d.display().to_string())
                .collect();
            writeln!(out, "models directories: {}", dirs.join(", "))?;
            if models.is_empty() {
                writeln!(
                    out,
                    "no models installed; run scripts/fetch-models.sh for the default model"
                )?;
            }
            for m in &models {
                #[expect(clippy::cast_precision_loss, reason = "display only")]
                let mb = m.size_bytes as f64 / 1e6;
                writeln!(
                    out,
                    "{:<48} {:<10} {:>8.1} MB  {}",
                    m.id,
                    m.model_type.as_deref().unwrap_or("?"),
                    mb,
                    m.dir.display()
                )?;
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Pull(args) => pull(&registry, args, &mut out),
        Command::Path(args) => {
            let resolved = registry.resolve(&args.reference)?;
            writeln!(out, "{}", resolved.dir.display())?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Embed(args) => embed(&registry, args, &mut out),
    }
}

fn pull(
    registry: &ModelRegistry,
    args: &PullArgs,
    out: &mut impl Write,
) -> anyhow::Result<ExitCode> {
    let options = vllm_sr_models::PullOptions {
        endpoint: args.endpoint.clone(),
        revision: args.revision.clone(),
        token: std::env::var("HF_TOKEN").ok().filter(|t| !t.is_empty()),
        progress: !args.quiet,
    };
    let resolved = registry.pull(&args.reference, &options)?;
    writeln!(out, "{} -> {}", resolved.id, resolved.dir.display())?;
    Ok(ExitCode::SUCCESS)
}

fn embed(
    registry: &ModelRegistry,
    args: &EmbedArgs,
    out: &mut impl Write,
) -> anyhow::Result<ExitCode> {
    let resolved = registry.resolve(&args.model)?;
    let options = LoadOptions {
        device: args.device.parse::<DeviceSpec>()?,
        precision: args.precision.parse::<Precision>()?,
        truncate_dim: args.truncate_dim,
        ..LoadOptions::default()
    };
    let t0 = Instant::now();
    let model = EmbeddingModel::load(&resolved.id, &resolved.dir, &options)
        .with_context(|| format!("loading {}", resolved.id))?;
    let load_ms = t0.elapsed().as_secs_f64() * 1e3;
    let texts: Vec<&str> = args.texts.iter().map(String::as_str).collect();
    let t1 = Instant::now();
    let vectors = model.embed(&texts)?;
    let ms = t1.elapsed().as_secs_f64() * 1e3;
    if args.json {
        // Written by hand to keep the documented key order {"model","dims","vectors","ms"}.
        let vectors: Vec<&[f32]> = vectors.iter().map(|v| v.as_slice()).collect();
        writeln!(
            out,
            "{{\"model\":{},\"dims\":{},\"vectors\":{},\"ms\":{}}}",
            serde_json::Value::from(resolved.id.as_str()),
            model.dims(),
            serde_json::to_string(&vectors)?,
            serde_json::Value::from(ms)
        )?;
        return Ok(ExitCode::SUCCESS);
    }
    writeln!(
        out,
        "model {} ({} dims), loaded in {load_ms:.0} ms, {} text(s) embedded in {ms:.1} ms",
        resolved.id,
        model.dims(),
        vectors.len()
    )?;
    for (text, v) in texts.iter().zip(&vectors) {
        let head: Vec<String> = v.iter().take(4).map(|x| format!("{x:+.4}")).collect();
        writeln!(
            out,
            "  dims {} norm {:.4} [{} …]  {text:?}",
            v.dims(),
            v.norm(),
            head.join(", ")
        )?;
    }
    if vectors.len() > 1 {
        writeln!(out, "cosine similarity:")?;
        for (i, a) in vectors.iter().enumerate() {
            let row: Vec<String> = vectors
                .iter()
                .map(|b| format!("{:.3}", a.cosine(b)))
                .collect();
            writeln!(out, "  [{i}] {}", row.join("  "))?;
        }
    }
    Ok(ExitCode::SUCCESS)
}
