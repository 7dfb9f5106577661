//! Prometheus metrics of the data plane, rendered as text on the metrics listener (`:9190`).
//!
//! Names follow upstream where it has one (`llm_model_requests_total`,
//! `llm_signal_extraction_latency_seconds`, …); the rest are `vsr_*`. Backend gauges are
//! refreshed from the live upstream state at scrape time.

use prometheus::{
    CounterVec, Encoder, Gauge, GaugeVec, Histogram, HistogramOpts, HistogramVec, IntCounterVec,
    IntGauge, Opts, Registry, TextEncoder,
};

use crate::upstream::{Health, Upstreams};

/// Buckets for in-process stages (100 µs … 10 s).
const FAST: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    10.0,
];
/// Buckets for upstream and total latency (1 ms … 20 min).
const SLOW: &[f64] = &[
    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0,
    1200.0,
];

/// Every metric the gateway exports.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    /// Requests by decision, model and HTTP status.
    pub requests: IntCounterVec,
    /// Requests per model (upstream name).
    pub model_requests: IntCounterVec,
    /// Errors by model and reason.
    pub errors: IntCounterVec,
    /// Signal extraction (embedding + every family) per request.
    pub signals_seconds: Histogram,
    /// Per-family extraction time.
    pub family_seconds: HistogramVec,
    /// Whole routing step (plan, embed, evaluate, rewrite).
    pub routing_seconds: Histogram,
    /// Upstream time to response head, per model.
    pub upstream_seconds: HistogramVec,
    /// Whole request, to the last byte of the response.
    pub total_seconds: HistogramVec,
    /// Decision matches.
    pub decisions: IntCounterVec,
    /// Retries by backend.
    pub retries: IntCounterVec,
    /// Outlier ejections by backend.
    pub ejections: IntCounterVec,
    /// Backend health (1 healthy or presumed, 0 unhealthy or ejected).
    pub backend_up: GaugeVec,
    /// Requests in flight per backend.
    pub backend_inflight: GaugeVec,
    /// Config reloads by result.
    pub reloads: CounterVec,
    /// Generation of the live config.
    pub generation: Gauge,
    /// Replay records dropped because the writer's queue was full.
    pub replay_dropped: IntGauge,
}

fn histogram(
    name: &str,
    help: &str,
    labels: &[&str],
    buckets: &[f64],
) -> prometheus::Result<HistogramVec> {
    HistogramVec::new(
        HistogramOpts::new(name, help).buckets(buckets.to_vec()),
        labels,
    )
}

impl Metrics {
    /// Creates and registers every metric.
    ///
    /// # Errors
    /// Only on a programming error (duplicate or invalid metric names).
    pub fn new() -> prometheus::Result<Self> {
        let registry = Registry::new();
        let m = Self {
            requests: IntCounterVec::new(
                Opts::new(
                    "vsr_requests_total",
                    "Requests by decision, model and status",
                ),
                &["decision", "model", "status"],
            )?,
            model_requests: IntCounterVec::new(
                Opts::new("llm_model_requests_total", "Requests forwarded per model"),
                &["model"],
            )?,
            errors: IntCounterVec::new(
                Opts::new(
                    "llm_request_errors_total",
                    "Failed requests by model and reason",
                ),
                &["model", "reason"],
            )?,
            signals_seconds: Histogram::with_opts(
                HistogramOpts::new(
                    "vsr_signal_extraction_seconds",
                    "Signal extraction per request (embedding batch and every family)",
                )
                .buckets(FAST.to_vec()),
            )?,
            family_seconds: histogram(
                "llm_signal_extraction_latency_seconds",
                "Signal extraction time per family",
                &["signal_type"],
                FAST,
            )?,
            routing_seconds: Histogram::with_opts(
                HistogramOpts::new(
                    "llm_model_routing_latency_seconds",
                    "The routing step: plan, embed, evaluate, rewrite",
                )
                .buckets(FAST.to_vec()),
            )?,
            upstream_seconds: histogram(
                "vsr_upstream_response_seconds",
                "Time from forwarding to the backend's response head",
                &["model"],
                SLOW,
            )?,
            total_seconds: histogram(
                "vsr_request_duration_seconds",
                "Whole request, to the last byte of the response",
                &["model"],
                SLOW,
            )?,
            decisions: IntCounterVec::new(
                Opts::new("llm_decision_match_total", "Matched decisions"),
                &["decision_name"],
            )?,
            retries: IntCounterVec::new(
                Opts::new(
                    "vsr_upstream_retries_total",
                    "Retried upstream attempts by backend",
                ),
                &["backend"],
            )?,
            ejections: IntCounterVec::new(
                Opts::new(
                    "vsr_backend_ejections_total",
                    "Passive outlier ejections by backend",
                ),
                &["backend"],
            )?,
            backend_up: GaugeVec::new(
                Opts::new("vsr_backend_up", "1 when the backend can take traffic"),
                &["backend", "model"],
            )?,
            backend_inflight: GaugeVec::new(
                Opts::new(
                    "vsr_backend_inflight_requests",
                    "Requests in flight per backend",
                ),
                &["backend"],
            )?,
            reloads: CounterVec::new(
                Opts::new("vsr_config_reloads_total", "Config reloads by result"),
                &["result"],
            )?,
            generation: Gauge::new(
                "vsr_config_generation",
                "Generation of the live config (1 = startup)",
            )?,
            replay_dropped: IntGauge::new(
                "replay_dropped_total",
                "Replay records dropped because the store's queue was full",
            )?,
            registry,
        };
        let r = &m.registry;
        r.register(Box::new(m.requests.clone()))?;
        r.register(Box::new(m.model_requests.clone()))?;
        r.register(Box::new(m.errors.clone()))?;
        r.register(Box::new(m.signals_seconds.clone()))?;
        r.register(Box::new(m.family_seconds.clone()))?;
        r.register(Box::new(m.routing_seconds.clone()))?;
        r.register(Box::new(m.upstream_seconds.clone()))?;
        r.register(Box::new(m.total_seconds.clone()))?;
        r.register(Box::new(m.decisions.clone()))?;
        r.register(Box::new(m.retries.clone()))?;
        r.register(Box::new(m.ejections.clone()))?;
        r.register(Box::new(m.backend_up.clone()))?;
        r.register(Box::new(m.backend_inflight.clone()))?;
        r.register(Box::new(m.reloads.clone()))?;
        r.register(Box::new(m.generation.clone()))?;
        r.register(Box::new(m.replay_dropped.clone()))?;
        Ok(m)
    }

    /// Prometheus text exposition, with backend gauges refreshed from `upstreams`.
    pub fn render(&self, upstreams: &Upstreams) -> String {
        let now = std::time::Instant::now();
        self.backend_up.reset();
        self.backend_inflight.reset();
        for b in upstreams.all() {
            let up = b.health() != Health::Unhealthy && !b.is_ejected(now);
            self.backend_up
                .with_label_values(&[b.name.as_str(), b.model.as_str()])
                .set(if up { 1.0 } else { 0.0 });
            self.backend_inflight
                .with_label_values(&[b.name.as_str()])
                .set(f64::from(b.inflight()));
        }
        let mut out = Vec::new();
        if let Err(e) = TextEncoder::new().encode(&self.registry.gather(), &mut out) {
            tracing::warn!("encoding metrics: {e}");
        }
        String::from_utf8(out).unwrap_or_default()
    }
}
