//! Prometheus metrics of the data plane, rendered as text on the metrics listener (`:9190`).
//!
//! Names follow upstream where it has one (`llm_model_requests_total`,
//! `llm_signal_extraction_latency_seconds`, …); the rest are `vsr_*`. Backend gauges are
//! refreshed from the live upstream state at scrape time.
//!
//! [`SeriesCache`] keeps the handles of the series a live state's names use, so a request
//! does not look each one up by its labels.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::OnceLock;

use prometheus::{
    CounterVec, Encoder, Gauge, GaugeVec, Histogram, HistogramOpts, HistogramVec, IntCounter,
    IntCounterVec, IntGauge, Opts, Registry, TextEncoder,
};
use vllm_sr_config::model::{ModelId, RouterConfig, SignalFamily};

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

/// A model's per-request series.
#[derive(Debug, Clone)]
pub struct ModelSeries {
    /// `llm_model_requests_total{model}`.
    pub requests: IntCounter,
    /// `vsr_upstream_response_seconds{model}`.
    pub upstream_seconds: Histogram,
    /// `vsr_request_duration_seconds{model}`.
    pub total_seconds: Histogram,
}

/// Handles of the labelled series that every routed request updates, per live state.
///
/// A labelled lookup hashes each label and takes the vector's lock, several times per request;
/// a handle is looked up once, on first use (a series appears when first used, as before), and
/// kept until the next reload replaces the live state.
#[derive(Debug, Default)]
pub struct SeriesCache {
    models: Vec<OnceLock<ModelSeries>>,
    families: [OnceLock<Histogram>; SignalFamily::ALL.len()],
    decisions: HashMap<Box<str>, OnceLock<IntCounter>, foldhash::fast::RandomState>,
}

impl SeriesCache {
    /// Empty slots for `config`'s models and decisions.
    pub fn new(config: &RouterConfig) -> Self {
        Self {
            models: config.models.iter().map(|_| OnceLock::new()).collect(),
            families: Default::default(),
            decisions: config
                .recipes
                .iter()
                .flat_map(|r| &r.decisions)
                .map(|d| (Box::from(d.name.as_str()), OnceLock::new()))
                .collect(),
        }
    }

    /// The series of `model`, named `name` (looked up by label if `model` is not one of this
    /// config's).
    pub fn model(&self, m: &Metrics, model: ModelId, name: &str) -> Cow<'_, ModelSeries> {
        let lookup = || ModelSeries {
            requests: m.model_requests.with_label_values(&[name]),
            upstream_seconds: m.upstream_seconds.with_label_values(&[name]),
            total_seconds: m.total_seconds.with_label_values(&[name]),
        };
        match self.models.get(model.0 as usize) {
            Some(slot) => Cow::Borrowed(slot.get_or_init(lookup)),
            None => Cow::Owned(lookup()),
        }
    }

    /// Observes the extraction time of the `index`th family of [`SignalFamily::ALL`].
    pub fn observe_family(&self, m: &Metrics, index: usize, seconds: f64) {
        match (self.families.get(index), SignalFamily::ALL.get(index)) {
            (Some(slot), Some(f)) => slot
                .get_or_init(|| m.family_seconds.with_label_values(&[f.leaf_type()]))
                .observe(seconds),
            _ => tracing::warn!(index, "no signal family at this index"),
        }
    }

    /// Counts a match of the decision `name`.
    pub fn count_decision(&self, m: &Metrics, name: &str) {
        match self.decisions.get(name) {
            Some(slot) => slot
                .get_or_init(|| m.decisions.with_label_values(&[name]))
                .inc(),
            None => m.decisions.with_label_values(&[name]).inc(),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::panic, reason = "tests")]

    use super::*;

    #[test]
    fn cached_series_are_the_labelled_ones_and_unknown_names_still_count() {
        let m = match Metrics::new() {
            Ok(m) => m,
            Err(e) => panic!("{e}"),
        };
        let cache = SeriesCache::new(&crate::test_support::one_decision_config("d"));
        // No series exists before its first use.
        assert!(!m
            .render(&Upstreams::default())
            .contains("llm_model_requests_total{"));
        assert_eq!(m.decisions.with_label_values(&["d"]).get(), 0);
        for _ in 0..3 {
            cache.count_decision(&m, "d");
            cache.model(&m, ModelId(0), "m").requests.inc();
            cache.model(&m, ModelId(0), "m").total_seconds.observe(0.5);
            cache.observe_family(&m, 0, 0.25);
        }
        // Names the config does not have go through a labelled lookup.
        cache.count_decision(&m, "other");
        cache.model(&m, ModelId(7), "elsewhere").requests.inc();
        cache.observe_family(&m, SignalFamily::ALL.len(), 1.0);

        assert_eq!(m.decisions.with_label_values(&["d"]).get(), 3);
        assert_eq!(m.decisions.with_label_values(&["other"]).get(), 1);
        assert_eq!(m.model_requests.with_label_values(&["m"]).get(), 3);
        assert_eq!(m.model_requests.with_label_values(&["elsewhere"]).get(), 1);
        let total = m.total_seconds.with_label_values(&["m"]);
        assert_eq!((total.get_sample_count(), total.get_sample_sum()), (3, 1.5));
        let family = m
            .family_seconds
            .with_label_values(&[SignalFamily::ALL[0].leaf_type()]);
        assert_eq!(family.get_sample_count(), 3);
    }
}
