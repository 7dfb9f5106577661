//! Router Replay from the data plane: one record per routed request, started when routing is
//! done and finished when the response ends (completed, aborted by the client, or failed),
//! then handed to the store's bounded intake (never blocking the request) and broadcast to live
//! subscribers (`/api/v1/events`).

use std::cell::RefCell;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use tokio::sync::{broadcast, Notify};
use vllm_sr_config::model::{Plugin, RouterConfig, RouterReplay};
use vllm_sr_engine::Outcome;
use vllm_sr_store::{
    cap_body, now_ms, record_time_ms, LearningTrace as StoredLearning, Lifecycle, PriceTable,
    Pricing, ReplayReader, ReplayRecord, ReplaySink, Store, StoreError, StoreOptions, Usage,
};

use crate::learning::{short_hash, LearningTrace};
use crate::live::LiveState;
use crate::service::Routed;

/// Events kept for slow subscribers before they start losing the oldest.
const EVENT_BACKLOG: usize = 1024;

/// The replay store and its live feed.
#[derive(Debug)]
pub struct Replay {
    store: Store,
    /// Write handle (bounded, non-blocking).
    pub sink: ReplaySink,
    /// Read side for the management API (blocking: use `spawn_blocking`).
    pub reader: ReplayReader,
    /// Finished records, for `/api/v1/events`.
    pub events: broadcast::Sender<Arc<ReplayRecord>>,
    /// Price every request's baseline at this model instead of the dearest one.
    baseline_model: Option<String>,
}

impl Replay {
    /// Opens (or creates) the database under `state_dir` and starts its writer thread.
    /// `baseline_model` fixes the model every request's baseline cost is priced at (`None`:
    /// the dearest priced model for that request's tokens).
    ///
    /// # Errors
    /// The database cannot be created, opened or migrated.
    pub fn open(state_dir: &Path, baseline_model: Option<String>) -> Result<Self, StoreError> {
        let store = Store::open(state_dir, &StoreOptions::default())?;
        let (events, _) = broadcast::channel(EVENT_BACKLOG);
        Ok(Self {
            sink: store.sink(),
            reader: store.reader(),
            store,
            events,
            baseline_model,
        })
    }

    /// The fixed baseline model, if one was given.
    pub fn baseline_model(&self) -> Option<&str> {
        self.baseline_model.as_deref()
    }

    /// Flushes queued records and stops the writer (blocking).
    pub fn shutdown(&self) {
        if let Err(e) = self.store.shutdown() {
            tracing::warn!("closing the replay store: {e}");
        }
    }

    /// Stores and broadcasts a finished record.
    pub fn submit(&self, record: Box<ReplayRecord>) {
        // The store serialises the record on this thread and keeps none of it, so the
        // record is freed here, by the thread that built it; subscribers share it.
        let stored = if self.events.receiver_count() > 0 {
            let shared: Arc<ReplayRecord> = Arc::from(record);
            let stored = self.sink.record(&*shared);
            let _ = self.events.send(shared);
            stored
        } else {
            self.sink.record(&*record)
        };
        if !stored {
            tracing::debug!("replay queue full; record dropped");
        }
    }
}

/// Prices of every priced model of a recipe.
pub fn price_table(config: &RouterConfig) -> PriceTable {
    PriceTable::new(config.models.iter().filter_map(|m| {
        let p = &m.provider.as_ref()?.pricing;
        let priced = p.prompt_per_1m > 0.0 || p.completion_per_1m > 0.0;
        priced.then(|| {
            (
                m.card.name.clone(),
                Pricing {
                    currency: if p.currency.is_empty() {
                        "USD".into()
                    } else {
                        p.currency.clone()
                    },
                    prompt_per_million: p.prompt_per_1m,
                    cached_prompt_per_million: p.cached_input_per_1m,
                    completion_per_million: p.completion_per_1m,
                },
            )
        })
    }))
}

/// A record in the making: the request's own facts and the response's are written as they
/// happen; the routing half (names, signals, trace) is copied out of the shared outcome only
/// once the response is out ([`drain_deferred`]), off the request's path.
#[derive(Debug)]
pub struct Pending {
    /// The record so far (boxed: the pending record rides along the response body, which is
    /// moved a few times).
    pub record: Box<ReplayRecord>,
    /// Keep up to this many response bytes.
    pub capture_response: Option<usize>,
    routing: Routing,
    prices: Arc<PriceTable>,
    replay: Arc<Replay>,
    started: Instant,
}

/// What routing decided, kept as the router left it until the record is filled in.
#[derive(Debug)]
struct Routing {
    outcome: Arc<Outcome>,
    learning: Option<Box<LearningTrace>>,
    /// Reasoning as the rewrite applied it.
    use_reasoning: bool,
    routing_ms: f64,
}

impl Routing {
    /// Writes the routing half into the record, and prices it.
    fn fill(self, r: &mut ReplayRecord, prices: &PriceTable, baseline: Option<&str>) {
        let o = &*self.outcome;
        r.requested_model = Some(o.requested_model.clone());
        r.recipe = Some(o.recipe.clone());
        r.decision = o.decision.clone();
        r.confidence = Some(o.confidence);
        r.base_model = Some(self.learning.as_ref().map_or_else(
            || o.model.clone().unwrap_or_default(),
            |l| l.base_model.clone(),
        ));
        r.final_model = o.model.clone();
        // Built here, after the response, on first read.
        let signals = o.signals();
        r.signals = signals
            .matched_signals
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        r.signal_confidences = signals
            .signal_confidences
            .iter()
            .map(|(k, v)| (k.clone(), *v))
            .collect();
        r.projection_scores = signals
            .projection_scores
            .iter()
            .map(|(k, v)| (k.clone(), *v))
            .collect();
        // Packed (the same text as serde_json's when read, at a fraction of the cost).
        r.eval_trace = Some(crate::trace_pack::packed_trace(&signals.eval_trace));
        r.learning = self.learning.map(|l| StoredLearning {
            action: Some(l.action.as_str().to_string()),
            reason: Some(l.reason.clone()),
            scope: Some(l.scope.clone()),
            mode: Some(l.mode.to_string()),
            switch_cost: Some(l.switch_cost),
            detail: serde_json::to_value(&*l).ok(),
        });
        r.plugins = o.plugins.clone();
        r.use_reasoning = Some(self.use_reasoning);
        r.reasoning_effort = Some(o.reasoning_effort.clone());
        r.timings.signals_ms = to_micros(o.timings.embed_ms + o.timings.signals_ms);
        r.timings.routing_ms = to_micros(self.routing_ms);
        if let (Some(u), Some(model)) = (&r.usage, &r.final_model) {
            r.cost = prices.cost(model, u, baseline);
        }
    }
}

/// What the request carried, for the record.
#[derive(Debug, Clone)]
pub struct RequestInfo<'a> {
    /// The record's id (`x-vsr-replay-id`): made when the record is, after the request has
    /// been sent upstream.
    pub record_id: String,
    /// `x-request-id`.
    pub request_id: &'a str,
    /// Request headers.
    pub headers: &'a [(&'a str, &'a str)],
    /// The raw request body.
    pub body: &'a [u8],
    /// When the request arrived.
    pub started: Instant,
}

impl Pending {
    /// Starts the record of a routed request: what only the request knows is taken now, the
    /// outcome is shared (see [`Pending`]).
    pub fn start(
        replay: &Arc<Replay>,
        live: &LiveState,
        routed: &Routed,
        req: RequestInfo<'_>,
    ) -> Self {
        let o = &routed.outcome;
        let ids = &live
            .config
            .global
            .router
            .learning
            .protection
            .identity
            .headers;
        let header = |name: &str| {
            req.headers
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(name))
                .map(|(_, v)| short_hash(&[v]))
        };
        let capture = o
            .decision
            .as_deref()
            .and_then(|d| live.decision(&o.recipe, d))
            .and_then(|d| {
                d.plugins.iter().find_map(|p| match p {
                    Plugin::RouterReplay(r) if r.enabled => Some(r),
                    _ => None,
                })
            });
        let cap = |enabled: fn(&RouterReplay) -> bool| {
            capture
                .filter(|r| enabled(r))
                .map(|r| r.max_body_bytes.unwrap_or(4096) as usize)
        };
        let mut record = Box::new(ReplayRecord {
            // The store orders and filters by the time in the id; keep the two equal.
            timestamp_ms: record_time_ms(&req.record_id).unwrap_or_else(now_ms),
            id: req.record_id,
            ..ReplayRecord::default()
        });
        record.request_id = Some(req.request_id.to_string());
        record.session_hash = header(&ids.session);
        record.conversation_hash = header(&ids.conversation);
        record.streaming = routed.stream;
        record.lifecycle = Lifecycle::InProgress;
        if let Some(max) = cap(|r| r.capture_request_body) {
            let (body, truncated) = cap_body(&String::from_utf8_lossy(req.body), max);
            record.request_body = Some(body);
            record.request_body_truncated = truncated;
        }
        Self {
            record,
            capture_response: cap(|r| r.capture_response_body),
            routing: Routing {
                outcome: o.clone(),
                learning: routed.learning.clone().map(Box::new),
                use_reasoning: routed.applied.reasoning.unwrap_or(o.use_reasoning),
                routing_ms: routed.routing.as_secs_f64() * 1e3,
            },
            prices: live.prices.clone(),
            replay: replay.clone(),
            started: req.started,
        }
    }

    /// Notes the backend and its response head.
    pub fn upstream(&mut self, backend: &str, status: u16, ttfb_ms: f64) {
        if self.record.backend.as_deref() != Some(backend) {
            self.record.backend = Some(backend.to_string());
        }
        self.record.status = Some(status);
        self.record.timings.upstream_ttfb_ms = Some(to_micros(ttfb_ms));
    }

    /// Finishes the record and submits it once the response is out.
    pub fn finish(mut self, end: End) {
        let r = &mut self.record;
        r.ended_ms = Some(now_ms());
        r.timings.total_ms = to_micros(self.started.elapsed().as_secs_f64() * 1e3);
        r.lifecycle = end.lifecycle;
        r.terminal_reason = end.reason;
        if let Some(s) = end.status {
            r.status = Some(s);
        }
        if let Some((body, truncated)) = end.response_body {
            r.response_body = Some(body);
            r.response_body_truncated = truncated;
        }
        r.usage = end.usage;
        r.cache_hit = end.cache_hit;
        submit_after_response(Finished {
            record: self.record,
            routing: self.routing,
            prices: self.prices,
            replay: self.replay,
        });
    }
}

/// A finished record whose routing half is still to be written.
struct Finished {
    record: Box<ReplayRecord>,
    routing: Routing,
    prices: Arc<PriceTable>,
    replay: Arc<Replay>,
}

impl Finished {
    fn submit(self) {
        let Finished {
            mut record,
            routing,
            prices,
            replay,
        } = self;
        routing.fill(&mut record, &prices, replay.baseline_model());
        replay.submit(record);
    }
}

thread_local! {
    /// Records this I/O thread finished, waiting for its [`drain_deferred`] task.
    static DEFERRED: RefCell<Vec<Finished>> =
        const { RefCell::new(Vec::new()) };
    /// Wakes this thread's [`drain_deferred`] task; `None` where none runs.
    static DRAIN: RefCell<Option<Arc<Notify>>> = const { RefCell::new(None) };
}

/// Stores a finished record once the task that finished it has yielded, so filling in its
/// routing half and serialising it never delay a response: a stream ends inside the relay
/// before the server writes its last chunk, and the connection's next request waits for
/// whatever runs on its task. On a thread without a drain task (tests, any non-I/O thread)
/// it is stored at once.
fn submit_after_response(finished: Finished) {
    let mut item = Some(finished);
    DRAIN.with_borrow(|drain| {
        if let Some(notify) = drain {
            DEFERRED.with_borrow_mut(|q| q.extend(item.take()));
            notify.notify_one();
        }
    });
    if let Some(finished) = item {
        finished.submit();
    }
}

/// An I/O thread's drain task: stores the records its requests finished, each time they
/// have yielded (a wake-up on the same thread: no system call). When the task is dropped
/// (the thread stops serving), it stores what is left and later records go straight in.
pub(crate) async fn drain_deferred() {
    /// Unregisters the task and stores what is left, however the task ends.
    struct Registered;
    impl Drop for Registered {
        fn drop(&mut self) {
            let _ = DRAIN.try_with(|d| d.borrow_mut().take());
            drain_now();
        }
    }
    let notify = Arc::new(Notify::new());
    DRAIN.with_borrow_mut(|d| *d = Some(notify.clone()));
    let _registered = Registered;
    loop {
        notify.notified().await;
        drain_now();
    }
}

/// Stores every deferred record of this thread (keeping the queue's buffer).
fn drain_now() {
    let Ok(mut items) = DEFERRED.try_with(|q| std::mem::take(&mut *q.borrow_mut())) else {
        return;
    };
    for finished in items.drain(..) {
        finished.submit();
    }
    let _ = DEFERRED.try_with(|q| {
        let mut q = q.borrow_mut();
        if q.is_empty() {
            *q = items;
        }
    });
}

/// Milliseconds rounded to the microsecond: finer digits are noise, and the shortest
/// decimal of a rounded value is a few bytes of JSON instead of up to 18.
fn to_micros(ms: f64) -> f64 {
    (ms * 1e3).round() / 1e3
}

/// How a request ended.
#[derive(Debug, Default)]
pub struct End {
    /// Completed, aborted or failed.
    pub lifecycle: Lifecycle,
    /// Why, when not completed.
    pub reason: Option<String>,
    /// Final HTTP status, when it changed (router errors).
    pub status: Option<u16>,
    /// Backend-reported usage.
    pub usage: Option<Usage>,
    /// Captured response body.
    pub response_body: Option<(String, bool)>,
    /// Answered without a backend (fast response).
    pub cache_hit: bool,
}
