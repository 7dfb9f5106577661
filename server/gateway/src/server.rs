//! The gateway's lifecycle: load the recipe, bind one listener per `listeners[]` entry and the
//! metrics listener, start health checks and the config watcher, reload on demand, and drain
//! on shutdown.
//!
//! Every background task runs on one `TaskTracker` and stops on one `CancellationToken`;
//! shutdown stops accepting, lets in-flight requests finish within the grace period, then
//! returns.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use axum::routing::get;
use axum::Router;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::http::{AppState, Limits};
use crate::live::{BuildError, LiveState, ModelSource};
use crate::metrics::Metrics;
use crate::replay::Replay;
use crate::shards::{ShardedListener, Shards};
use crate::upstream::client::UpstreamClient;
use crate::upstream::health::spawn_checks;

/// Listener used when the recipe declares none (upstream's default).
const DEFAULT_LISTENER: &str = "0.0.0.0:8899";

/// Everything `serve` needs.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// The recipe file.
    pub config_path: PathBuf,
    /// Listen here instead of the recipe's `listeners[]` (tests, benchmarks).
    pub listen: Option<Vec<SocketAddr>>,
    /// Prometheus listener (`None`: off).
    pub metrics_addr: Option<SocketAddr>,
    /// Embedding model reference (`None`: the offline default).
    pub embedding_model: Option<String>,
    /// Request limits.
    pub limits: Limits,
    /// Poll the recipe file for changes this often (`None`: only explicit reloads).
    pub watch_interval: Option<Duration>,
    /// Runtime state (the replay database, learning session snapshots); `None` keeps
    /// neither.
    pub state_dir: Option<PathBuf>,
    /// Price every request's baseline cost at this model (it must have pricing in the
    /// recipe); `None`: the dearest priced model for the request's tokens.
    pub baseline_model: Option<String>,
    /// The management API (`None`: off).
    pub management: Option<ManagementOptions>,
    /// Data-plane I/O threads (0: one per available core).
    pub io_threads: usize,
}

impl ServeOptions {
    /// Serving `config_path` with `limits` on the recipe's listeners, and nothing else:
    /// no metrics, no state directory, no management API, no file watching, the offline
    /// default embedding model.
    pub fn new(config_path: PathBuf, limits: Limits) -> Self {
        Self {
            config_path,
            listen: None,
            metrics_addr: None,
            embedding_model: None,
            limits,
            watch_interval: None,
            state_dir: None,
            baseline_model: None,
            management: None,
            io_threads: 0,
        }
    }
}

/// Where the management API listens and what it requires.
#[derive(Debug, Clone)]
pub struct ManagementOptions {
    /// Bind address; `None`: the recipe's `global.services.management_api.bind_address`.
    pub bind: Option<std::net::IpAddr>,
    /// Port; `None`: the recipe's `global.services.management_api.port` (0 picks a free one).
    pub port: Option<u16>,
    /// Bearer token; when `None`, the first set `management_api.auth.tokens[].env` variable.
    pub token: Option<String>,
}

/// Why the gateway could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The recipe or its model.
    #[error(transparent)]
    Build(#[from] BuildError),
    /// A listener could not be bound.
    #[error("cannot listen on {addr} ({name}): {source}")]
    Bind {
        /// Listener name.
        name: String,
        /// Address.
        addr: String,
        /// Cause.
        source: std::io::Error,
    },
    /// The HTTP client or metrics could not be set up.
    #[error("{0}")]
    Setup(String),
}

/// A bound listener.
#[derive(Debug, Clone)]
pub struct BoundListener {
    /// Recipe listener name.
    pub name: String,
    /// Bound address.
    pub addr: SocketAddr,
}

/// A running gateway.
#[derive(Debug)]
pub struct Gateway {
    state: Arc<AppState>,
    config_path: PathBuf,
    models: Arc<ModelSource>,
    listeners: Vec<BoundListener>,
    metrics_addr: Option<SocketAddr>,
    management_addr: Option<SocketAddr>,
    cancel: CancellationToken,
    tracker: TaskTracker,
    reload_lock: Arc<tokio::sync::Mutex<()>>,
    shards: Shards,
}

impl Gateway {
    /// Loads the recipe, binds every listener and starts serving.
    ///
    /// # Errors
    /// An invalid recipe, a missing model, or an address that cannot be bound.
    pub async fn start(opts: ServeOptions) -> Result<Self, StartError> {
        let models = Arc::new(ModelSource::new(opts.embedding_model.clone()));
        let path = opts.config_path.clone();
        let m = models.clone();
        let live = tokio::task::spawn_blocking(move || LiveState::load(&path, &m, None, 1))
            .await
            .map_err(|e| StartError::Setup(format!("loading task failed: {e}")))??;
        let cancel = CancellationToken::new();
        let tracker = TaskTracker::new();
        let mut live = live;
        live.cancel = cancel.child_token();
        // Several crates may race to install a provider; any installed one is fine.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let client = UpstreamClient::new()?;
        spawn_checks(&live.upstreams, &client, &tracker, &live.cancel);
        let metrics =
            Arc::new(Metrics::new().map_err(|e| StartError::Setup(format!("metrics: {e}")))?);
        metrics.generation.set(1.0);
        let wanted: Vec<(String, String, Option<f64>)> = match &opts.listen {
            Some(addrs) => addrs
                .iter()
                .enumerate()
                .map(|(i, a)| (format!("listen-{i}"), a.to_string(), None))
                .collect(),
            None if live.config.listeners.is_empty() => {
                vec![("default".into(), DEFAULT_LISTENER.into(), None)]
            }
            None => live
                .config
                .listeners
                .iter()
                .map(|l| {
                    (
                        l.name.clone(),
                        format!("{}:{}", l.address, l.port),
                        l.timeout_secs,
                    )
                })
                .collect(),
        };
        if let Some(b) = &opts.baseline_model {
            check_baseline(b, &live.prices).map_err(StartError::Setup)?;
        }
        let sessions = Arc::new(crate::learning::Sessions::default());
        let replay = match opts.state_dir.clone() {
            Some(dir) => {
                let baseline = opts.baseline_model.clone();
                let idle = crate::learning::idle_timeout(&live.config);
                let s = sessions.clone();
                let replay = tokio::task::spawn_blocking(move || {
                    let replay = Replay::open(&dir, baseline)?;
                    let since = vllm_sr_store::now_ms()
                        - i64::try_from(idle.as_millis()).unwrap_or(i64::MAX);
                    let restored = s.restore(replay.reader.sessions(since)?);
                    if restored > 0 {
                        tracing::info!(
                            restored,
                            "learning sessions restored from the state directory"
                        );
                    }
                    Ok::<_, vllm_sr_store::StoreError>(replay)
                })
                .await
                .map_err(|e| StartError::Setup(format!("replay store task failed: {e}")))?
                .map_err(|e| StartError::Setup(format!("replay store: {e}")))?;
                Some(Arc::new(replay))
            }
            None => None,
        };
        let state = Arc::new(AppState {
            live: ArcSwap::from_pointee(live),
            client,
            metrics,
            limits: opts.limits,
            semaphore: opts
                .limits
                .max_concurrency
                .map(|n| Arc::new(Semaphore::new(n))),
            draining: AtomicBool::new(false),
            sessions,
            replay,
        });
        spawn_snapshots(&state, &tracker, &cancel);
        let mut bound = Vec::new();
        let mut sharded = Vec::new();
        for (name, addr, timeout) in wanted {
            let listener = TcpListener::bind(&addr)
                .await
                .map_err(|source| StartError::Bind {
                    name: name.clone(),
                    addr: addr.clone(),
                    source,
                })?;
            let local = listener
                .local_addr()
                .map_err(|e| StartError::Setup(format!("listener {name}: {e}")))?;
            let timeout = timeout
                .filter(|t| t.is_finite() && *t > 0.0)
                .map_or(opts.limits.default_timeout, Duration::from_secs_f64);
            tracing::info!(listener = %name, addr = %local, "listening");
            bound.push(BoundListener {
                name: name.clone(),
                addr: local,
            });
            sharded.push(ShardedListener {
                name,
                listener,
                timeout,
            });
        }
        let shards = Shards::start(opts.io_threads, sharded, &state, &tracker, &cancel)?;
        let management_addr = match &opts.management {
            Some(m) => Some(serve_management(m, &state, &tracker, &cancel).await?),
            None => None,
        };
        let metrics_addr = match opts.metrics_addr {
            Some(addr) => Some(serve_metrics(addr, &state, &tracker, &cancel).await?),
            None => None,
        };
        let gw = Self {
            state,
            config_path: opts.config_path.clone(),
            models,
            listeners: bound,
            metrics_addr,
            management_addr,
            cancel,
            tracker,
            reload_lock: Arc::new(tokio::sync::Mutex::new(())),
            shards,
        };
        if let Some(every) = opts.watch_interval {
            gw.watch(every);
        }
        Ok(gw)
    }

    /// The bound data-plane listeners.
    pub fn listeners(&self) -> &[BoundListener] {
        &self.listeners
    }

    /// Data-plane I/O threads serving the listeners.
    pub fn io_threads(&self) -> usize {
        self.shards.count()
    }

    /// The bound metrics address.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_addr
    }

    /// The bound management API address.
    pub fn management_addr(&self) -> Option<SocketAddr> {
        self.management_addr
    }

    /// Router Replay, when a state directory was given.
    pub fn replay(&self) -> Option<Arc<Replay>> {
        self.state.replay.clone()
    }

    /// The live state now.
    pub fn live(&self) -> Arc<LiveState> {
        self.state.live.load_full()
    }

    /// Reloads the recipe: validate, build, swap atomically. An invalid file keeps the old
    /// state running; every error is logged and returned.
    ///
    /// # Errors
    /// The new recipe's problems.
    pub async fn reload(&self) -> Result<u64, Arc<BuildError>> {
        reload(&self.reload_ctx()).await
    }

    fn reload_ctx(&self) -> ReloadCtx {
        ReloadCtx {
            state: self.state.clone(),
            path: self.config_path.clone(),
            models: self.models.clone(),
            cancel: self.cancel.clone(),
            tracker: self.tracker.clone(),
            lock: self.reload_lock.clone(),
        }
    }

    fn watch(&self, every: Duration) {
        let ctx = self.reload_ctx();
        let cancel = self.cancel.clone();
        // The baseline is the file as loaded, taken before the task first runs.
        let mut last = std::fs::metadata(&ctx.path)
            .ok()
            .and_then(|m| Some((m.modified().ok()?, m.len())));
        self.tracker.spawn(async move {
            loop {
                tokio::select! {
                    () = cancel.cancelled() => break,
                    () = tokio::time::sleep(every) => {}
                }
                let now = stamp(&ctx.path).await;
                if now != last {
                    last = now;
                    tracing::info!(path = %ctx.path.display(), "recipe file changed; reloading");
                    let _ = reload(&ctx).await;
                }
            }
        });
    }

    /// Stops accepting, waits up to `grace` for in-flight requests, then stops every
    /// background task. Returns false when the grace period ran out.
    pub async fn shutdown(self, grace: Duration) -> bool {
        self.state.draining.store(true, Ordering::Relaxed);
        self.cancel.cancel();
        self.tracker.close();
        let drained = tokio::time::timeout(grace, self.tracker.wait())
            .await
            .is_ok();
        let shards = self.shards;
        let _ = tokio::task::spawn_blocking(move || shards.stop()).await;
        if let Some(r) = self.state.replay.clone() {
            // The last session snapshot, then the records still queued (blocking: the
            // writer thread joins).
            let state = self.state.clone();
            let _ = tokio::task::spawn_blocking(move || {
                snapshot_sessions(&state, &r);
                r.shutdown();
            })
            .await;
        }
        if drained {
            tracing::info!("shut down cleanly");
        } else {
            tracing::warn!(?grace, "grace period over; closing remaining connections");
        }
        drained
    }
}

#[derive(Debug)]
struct ReloadCtx {
    state: Arc<AppState>,
    path: PathBuf,
    models: Arc<ModelSource>,
    cancel: CancellationToken,
    tracker: TaskTracker,
    lock: Arc<tokio::sync::Mutex<()>>,
}

async fn stamp(path: &std::path::Path) -> Option<(SystemTime, u64)> {
    let m = tokio::fs::metadata(path).await.ok()?;
    Some((m.modified().ok()?, m.len()))
}

async fn reload(ctx: &ReloadCtx) -> Result<u64, Arc<BuildError>> {
    let _one_at_a_time = ctx.lock.lock().await;
    let previous = ctx.state.live.load_full();
    let generation = previous.generation + 1;
    let path = ctx.path.clone();
    let models = ctx.models.clone();
    let prev = previous.clone();
    let built = tokio::task::spawn_blocking(move || {
        LiveState::load(&path, &models, Some(&prev), generation)
    })
    .await
    .unwrap_or_else(|e| {
        Err(BuildError::Invalid {
            path: ctx.path.clone(),
            errors: vec![format!("reload task failed: {e}")],
        })
    });
    let metrics = &ctx.state.metrics;
    match built {
        Ok(mut live) => {
            if live.config.listeners != previous.config.listeners {
                tracing::warn!(
                    "listeners changed in the recipe; restart vllm-sr to bind the new ones"
                );
            }
            if let Some(b) = ctx.state.replay.as_ref().and_then(|r| r.baseline_model()) {
                if let Err(e) = check_baseline(b, &live.prices) {
                    tracing::warn!(
                        "{e}; baselines fall back to the dearest model until it is priced again"
                    );
                }
            }
            live.cancel = ctx.cancel.child_token();
            spawn_checks(
                &live.upstreams,
                &ctx.state.client,
                &ctx.tracker,
                &live.cancel,
            );
            ctx.state.live.store(Arc::new(live));
            previous.cancel.cancel();
            metrics.reloads.with_label_values(&["success"]).inc();
            metrics.generation.set(generation as f64);
            tracing::info!(generation, path = %ctx.path.display(), "config reloaded");
            Ok(generation)
        }
        Err(e) => {
            metrics.reloads.with_label_values(&["failure"]).inc();
            tracing::error!(
                "reload rejected; generation {} keeps serving. {e}",
                previous.generation
            );
            Err(Arc::new(e))
        }
    }
}

/// A fixed baseline model must be priced, or every saving would be computed against nothing.
fn check_baseline(model: &str, prices: &vllm_sr_store::PriceTable) -> Result<(), String> {
    if prices.get(model).is_some() {
        return Ok(());
    }
    let priced: Vec<&str> = prices.models().collect();
    Err(format!(
        "--baseline-model {model}: the recipe has no pricing for it (priced models: {})",
        if priced.is_empty() {
            "none".to_string()
        } else {
            priced.join(", ")
        }
    ))
}

/// Mirrors changed learning sessions to the store every
/// [`SNAPSHOT_INTERVAL`](crate::learning::persist::SNAPSHOT_INTERVAL) until shutdown (which
/// writes the last one itself).
fn spawn_snapshots(state: &Arc<AppState>, tracker: &TaskTracker, cancel: &CancellationToken) {
    let Some(replay) = state.replay.clone() else {
        return;
    };
    let (state, cancel) = (state.clone(), cancel.clone());
    tracker.spawn(async move {
        loop {
            tokio::select! {
                () = cancel.cancelled() => break,
                () = tokio::time::sleep(crate::learning::persist::SNAPSHOT_INTERVAL) => {}
            }
            let (s, r) = (state.clone(), replay.clone());
            let _ = tokio::task::spawn_blocking(move || snapshot_sessions(&s, &r)).await;
        }
    });
}

/// One snapshot of the changed learning sessions (blocking: it may wait for queue space).
fn snapshot_sessions(state: &AppState, replay: &Replay) {
    let idle = crate::learning::idle_timeout(&state.live.load().config);
    let snapshot = state.sessions.snapshot(idle);
    let n = snapshot.rows.len();
    // Nothing changed: nothing to write (idle rows expire with the next real snapshot).
    if n > 0 && !replay.sink.snapshot_sessions(snapshot) {
        tracing::warn!(
            sessions = n,
            "learning session snapshot not written: the store is closed"
        );
    }
}

async fn serve_management(
    opts: &ManagementOptions,
    state: &Arc<AppState>,
    tracker: &TaskTracker,
    cancel: &CancellationToken,
) -> Result<SocketAddr, StartError> {
    let api = &state.live.load().config.global.services.management_api;
    let from_config = api
        .auth
        .tokens
        .iter()
        .find_map(|t| std::env::var(&t.env).ok().filter(|v| !v.is_empty()));
    let token = opts.token.clone().filter(|t| !t.is_empty()).or(from_config);
    let ip = match opts.bind {
        Some(ip) => ip,
        None => api.bind_address.parse().map_err(|e| {
            StartError::Setup(format!(
                "global.services.management_api.bind_address {:?}: {e}",
                api.bind_address
            ))
        })?,
    };
    let addr = SocketAddr::new(ip, opts.port.unwrap_or(api.port));
    let required = !ip.is_loopback() || api.auth.mode == "bearer";
    if required && token.is_none() {
        return Err(StartError::Setup(format!(
            "the management API on {} needs a bearer token: set VLLM_SR_MANAGEMENT_TOKEN (or --management-token), or list one in global.services.management_api.auth.tokens",
            addr
        )));
    }
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|source| StartError::Bind {
            name: "management".into(),
            addr: addr.to_string(),
            source,
        })?;
    let local = listener
        .local_addr()
        .map_err(|e| StartError::Setup(format!("management listener: {e}")))?;
    let app = crate::mgmt::router(crate::mgmt::MgmtState {
        app: state.clone(),
        token: token.filter(|_| required).map(Arc::from),
    });
    let token = cancel.clone();
    tracker.spawn(async move {
        let _ = axum::serve(listener, app)
            .with_graceful_shutdown(async move { token.cancelled().await })
            .await;
    });
    tracing::info!(addr = %local, auth = required, "management API listening");
    Ok(local)
}

async fn serve_metrics(
    addr: SocketAddr,
    state: &Arc<AppState>,
    tracker: &TaskTracker,
    cancel: &CancellationToken,
) -> Result<SocketAddr, StartError> {
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|source| StartError::Bind {
            name: "metrics".into(),
            addr: addr.to_string(),
            source,
        })?;
    let local = listener
        .local_addr()
        .map_err(|e| StartError::Setup(format!("metrics listener: {e}")))?;
    let s = state.clone();
    let app = Router::new().route(
        "/metrics",
        get(move || {
            let s = s.clone();
            async move {
                let live = s.live.load();
                if let Some(r) = &s.replay {
                    s.metrics.replay_dropped.set(r.sink.dropped() as i64);
                }
                (
                    [("content-type", "text/plain; version=0.0.4")],
                    s.metrics.render(&live.upstreams),
                )
            }
        }),
    );
    let token = cancel.clone();
    tracker.spawn(async move {
        let _ = axum::serve(listener, app)
            .with_graceful_shutdown(async move { token.cancelled().await })
            .await;
    });
    tracing::info!(addr = %local, "metrics listening");
    Ok(local)
}
