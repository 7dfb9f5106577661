//! `vllm-sr serve`: run the router in process as an OpenAI-compatible proxy.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use tokio::signal::unix::{signal, SignalKind};
use vllm_sr_gateway::{Gateway, Limits, ManagementOptions, ServeOptions};

use crate::output::out;
use crate::router::ModelArgs;

/// Run the router as an OpenAI-compatible proxy in front of the recipe's backends.
///
/// One HTTP listener per recipe `listeners[]` entry (default 0.0.0.0:8899) serves
/// `POST /v1/chat/completions` (JSON and SSE), `GET /v1/models`, `GET /health` and
/// `GET /ready`; Prometheus metrics are on `--metrics-port`. Requests whose `model` is an
/// auto name (`auto`, `MoM`, `vllm-sr/auto`, `global.router.auto_model_names`) are routed by
/// the recipe; a logical model name goes straight to it. SIGHUP or a change to the recipe file
/// reloads it (an invalid file keeps the old one running); Ctrl-C or SIGTERM drains in-flight
/// requests for up to `--grace-secs`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    #[command(flatten)]
    recipe: super::RecipeArg,

    /// Listen on ADDR instead of the recipe's listeners (repeatable; port 0 picks a free one).
    #[arg(long, value_name = "ADDR")]
    listen: Vec<SocketAddr>,

    /// Prometheus metrics port (0 picks a free one).
    #[arg(long, default_value_t = 9190, value_name = "N")]
    metrics_port: u16,

    /// Address the metrics listener binds.
    #[arg(long, default_value = "0.0.0.0", value_name = "IP")]
    metrics_bind: IpAddr,

    /// Do not serve metrics.
    #[arg(long)]
    no_metrics: bool,

    /// Management API port (default: the recipe's global.services.management_api.port, 8080;
    /// 0 picks a free one).
    #[arg(long, value_name = "N")]
    management_port: Option<u16>,

    /// Management API bind address (default: the recipe's, 127.0.0.1). Anything but loopback
    /// requires a bearer token.
    #[arg(long, value_name = "IP")]
    management_bind: Option<IpAddr>,

    /// Bearer token the management API requires.
    #[arg(
        long,
        env = "VLLM_SR_MANAGEMENT_TOKEN",
        value_name = "TOKEN",
        hide_env_values = true
    )]
    management_token: Option<String>,

    /// Do not serve the management API.
    #[arg(long)]
    no_management: bool,

    /// Keep no Router Replay records and no Router Learning session snapshots (no database
    /// in the state directory; learning state then lives only in memory).
    #[arg(long)]
    no_replay: bool,

    /// Price every request's baseline cost (insights savings) at MODEL, a priced model of the
    /// recipe, instead of the dearest priced model for that request's tokens.
    #[arg(long, value_name = "MODEL", conflicts_with = "no_replay")]
    baseline_model: Option<String>,

    /// Directory for runtime state (default: `.vllm-sr/` beside the recipe).
    #[arg(long, env = "VLLM_SR_STATE_DIR", value_name = "DIR")]
    state_dir: Option<PathBuf>,

    /// Largest accepted request body in bytes (larger: 413).
    #[arg(long, default_value_t = 32 * 1024 * 1024, value_name = "BYTES")]
    max_body_bytes: usize,

    /// Concurrent chat requests before new ones get 429 (0: unlimited).
    #[arg(long, default_value_t = 1024, value_name = "N")]
    max_concurrency: usize,

    /// Deadline of a request's embedding pass; after it, embedding-backed signals count as
    /// unmatched and the request is routed on the rest.
    #[arg(long, default_value_t = 500, value_name = "MS")]
    signal_budget_ms: u64,

    /// Upstream timeout for listeners whose recipe entry sets no `timeout`.
    #[arg(long, default_value_t = 600, value_name = "SECS")]
    timeout_secs: u64,

    /// How long a client may pause while sending a request (inside its head, or between
    /// pieces of its body) before it gets a 408 and its connection is closed.
    #[arg(long, default_value_t = 30, value_name = "SECS")]
    request_read_timeout_secs: u64,

    /// How long an HTTP/1.1 keep-alive client connection may sit idle between requests
    /// before it is closed (0: never).
    #[arg(long, default_value_t = 60, value_name = "SECS")]
    idle_timeout_secs: u64,

    /// How long shutdown waits for in-flight requests.
    #[arg(long, default_value_t = 30, value_name = "SECS")]
    grace_secs: u64,

    /// Data-plane I/O threads (0: one per available core). Each accepted connection lives
    /// on one of them, with its own pool of upstream connections.
    #[arg(
        long,
        env = "VLLM_SR_IO_THREADS",
        default_value_t = 0,
        value_name = "N"
    )]
    io_threads: usize,

    /// How often the recipe file is checked for changes (0: only on SIGHUP).
    #[arg(long, default_value_t = 1000, value_name = "MS")]
    watch_interval_ms: u64,

    #[command(flatten)]
    model: ModelArgs,
}

pub(crate) fn run(args: &Args) -> anyhow::Result<ExitCode> {
    let config = &args.recipe.config;
    let state_dir = match &args.state_dir {
        Some(d) => d.clone(),
        None => config
            .parent()
            .map_or_else(|| PathBuf::from(".vllm-sr"), |p| p.join(".vllm-sr")),
    };
    std::fs::create_dir_all(&state_dir)
        .with_context(|| format!("creating the state directory {}", state_dir.display()))?;
    let opts = ServeOptions {
        config_path: config.clone(),
        listen: (!args.listen.is_empty()).then(|| args.listen.clone()),
        metrics_addr: (!args.no_metrics)
            .then(|| SocketAddr::new(args.metrics_bind, args.metrics_port)),
        embedding_model: args.model.embedding_model.clone(),
        limits: Limits {
            max_body_bytes: args.max_body_bytes,
            max_concurrency: (args.max_concurrency > 0).then_some(args.max_concurrency),
            signal_budget: Duration::from_millis(args.signal_budget_ms),
            default_timeout: Duration::from_secs(args.timeout_secs),
            request_read_timeout: Duration::from_secs(args.request_read_timeout_secs.max(1)),
            idle_timeout: (args.idle_timeout_secs > 0)
                .then(|| Duration::from_secs(args.idle_timeout_secs)),
        },
        state_dir: (!args.no_replay).then(|| state_dir.clone()),
        baseline_model: args.baseline_model.clone(),
        management: (!args.no_management).then(|| ManagementOptions {
            bind: args.management_bind,
            port: args.management_port,
            token: args.management_token.clone(),
        }),
        io_threads: args.io_threads,
        watch_interval: (args.watch_interval_ms > 0)
            .then(|| Duration::from_millis(args.watch_interval_ms)),
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("vllm-sr-io")
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(serve(opts, state_dir, Duration::from_secs(args.grace_secs)))
}

async fn serve(
    opts: ServeOptions,
    state_dir: PathBuf,
    grace: Duration,
) -> anyhow::Result<ExitCode> {
    let file = opts.config_path.display().to_string();
    let gateway = Gateway::start(opts)
        .await
        .with_context(|| format!("starting vllm-sr serve with {file}"))?;
    let live = gateway.live();
    out(&format!("vllm-sr serving {file}"));
    for l in gateway.listeners() {
        out(&format!(
            "  listener {}: http://{}/v1/chat/completions",
            l.name, l.addr
        ));
    }
    if let Some(m) = gateway.management_addr() {
        out(&format!("  management: http://{m}/api/v1"));
    }
    if let Some(m) = gateway.metrics_addr() {
        out(&format!("  metrics: http://{m}/metrics"));
    }
    out(&format!("  I/O threads: {}", gateway.io_threads()));
    out(&format!("  models: {}", live.model_names().join(", ")));
    out(&format!("  state dir: {}", state_dir.display()));
    drop(live);
    let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut hup = signal(SignalKind::hangup()).context("installing the SIGHUP handler")?;
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => break,
            _ = term.recv() => break,
            _ = hup.recv() => {
                tracing::info!("SIGHUP: reloading {file}");
                let _ = gateway.reload().await;
            }
        }
    }
    tracing::info!(?grace, "shutting down: draining in-flight requests");
    let drained = gateway.shutdown(grace).await;
    Ok(if drained {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
