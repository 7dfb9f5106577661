//! Active health checks: for every model whose `reliability.health_check_path` is set, a loop
//! GETs `<backend base>/<path>` on each backend every `health_check_interval` with
//! `health_check_timeout`; 2xx marks the backend healthy, anything else unhealthy.
//!
//! One loop per pool, spawned on the gateway's task tracker and stopped by the token of the
//! live state it belongs to (a reload starts new loops and stops the old ones).

use std::sync::Arc;
use std::time::Duration;

use futures_util::future::join_all;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::client::UpstreamClient;
use super::{BackendState, Health, Upstreams};

/// Starts the check loops of `upstreams`.
pub(crate) fn spawn_checks(
    upstreams: &Arc<Upstreams>,
    client: &UpstreamClient,
    tracker: &TaskTracker,
    cancel: &CancellationToken,
) {
    for (pi, pool) in upstreams.pools().enumerate() {
        let Some(path) = pool.reliability.health_check_path.clone() else {
            continue;
        };
        let interval = secs(pool.reliability.health_check_interval_secs, 10.0);
        let timeout = secs(pool.reliability.health_check_timeout_secs, 2.0);
        let backends: Vec<Arc<BackendState>> = pool.backends.clone();
        let client = client.clone();
        let cancel = cancel.clone();
        tracing::debug!(model = %pool.model, %path, ?interval, "health checks on (pool {pi})");
        tracker.spawn(async move {
            loop {
                join_all(backends.iter().map(|b| check(&client, b, &path, timeout))).await;
                tokio::select! {
                    () = cancel.cancelled() => break,
                    () = tokio::time::sleep(interval) => {}
                }
            }
        });
    }
}

fn secs(v: f64, default: f64) -> Duration {
    let v = if v.is_finite() && v > 0.0 { v } else { default };
    Duration::from_secs_f64(v.max(0.05))
}

async fn check(client: &UpstreamClient, b: &BackendState, path: &str, timeout: Duration) {
    let sep = if path.starts_with('/') { "" } else { "/" };
    let url = format!("{}{sep}{path}", b.base_url);
    let result = match url.parse() {
        Ok(uri) => client.get_status(uri, timeout).await,
        Err(e) => Err(format!("invalid URL: {e}")),
    };
    let now = match &result {
        Ok(status) if (200..300).contains(status) => Health::Healthy,
        _ => Health::Unhealthy,
    };
    let before = b.health();
    b.set_health(now);
    if before != now {
        match (&result, now) {
            (_, Health::Healthy) => {
                tracing::info!(backend = %b.name, "health check passed; backend is healthy")
            }
            (Ok(status), _) => {
                tracing::warn!(backend = %b.name, %url, status, "health check failed; backend marked unhealthy")
            }
            (Err(e), _) => {
                tracing::warn!(backend = %b.name, %url, error = %e, "health check failed; backend marked unhealthy")
            }
        }
    }
}
