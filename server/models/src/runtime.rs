//! Execution: models on dedicated OS threads behind cheap cloneable handles.
//!
//! Owns the request path between an async (or plain) caller and a synchronous model:
//! - a **bounded** `std::sync::mpsc::sync_channel` of jobs; a full queue is an immediate
//!   [`ModelError::Overloaded`], never a wait;
//! - worker OS threads (never tokio workers) that take one job, then keep collecting queued
//!   jobs for up to `max_wait` or `max_batch` texts, run one batched inference (tokenisation
//!   included) and answer each job through its own reply channel;
//! - a per-request deadline: the caller stops waiting with [`ModelError::DeadlineExceeded`],
//!   and the worker skips jobs whose deadline has passed before spending a forward pass on them;
//! - an LRU cache keyed by a 128-bit hash of the text, consulted before queueing, so earlier
//!   turns of a conversation cost no forward pass.
//!
//! The async entry point needs a tokio runtime with the time driver enabled (for the deadline).

use std::hash::{Hash, Hasher};
use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use lru::LruCache;
use parking_lot::Mutex;
use tokio::sync::oneshot;

use crate::error::ModelError;

/// A synchronous model that a worker thread can own.
pub trait InferenceModel: Send + Clone + 'static {
    /// One result per input text.
    type Output: Clone + Send + Sync + 'static;
    /// Model id for errors and logs.
    fn model_id(&self) -> &str;
    /// Runs the model over `texts` (tokenisation included), one output per text in order.
    ///
    /// # Errors
    /// Any [`ModelError`]; it is sent to every caller whose texts were in the batch.
    fn infer(&mut self, texts: &[&str]) -> Result<Vec<Self::Output>, ModelError>;
}

/// How requests reach a model.
#[derive(Debug, Clone)]
pub struct RuntimeOptions {
    /// Jobs that may wait in the queue before callers get `Overloaded`.
    pub queue_capacity: usize,
    /// Most texts the worker gathers into one inference call.
    pub max_batch: usize,
    /// How long the worker waits for more jobs after the first one (zero: take only what is
    /// already queued).
    pub max_wait: Duration,
    /// Default deadline of a request.
    pub timeout: Duration,
    /// Entries in the result cache (0 disables it).
    pub cache_capacity: usize,
    /// Worker threads, each owning a clone of the model (weights are shared, not copied).
    pub workers: usize,
    /// Threads each worker's matmuls and fused kernels may use (a private rayon pool per
    /// worker). `None` uses rayon's global pool (`RAYON_NUM_THREADS`, else one per core).
    /// candle's element-wise pool is sized by `CANDLE_NUM_THREADS` separately.
    pub intra_op_threads: Option<usize>,
}

impl Default for RuntimeOptions {
    fn default() -> Self {
        Self {
            // Enough for a burst of a few hundred concurrent requests on a 2-core box; beyond
            // that, waiting would exceed any sane routing deadline anyway.
            queue_capacity: 256,
            max_batch: 32,
            max_wait: Duration::from_micros(500),
            timeout: Duration::from_secs(5),
            cache_capacity: 4096,
            workers: 1,
            intra_op_threads: None,
        }
    }
}

/// Counters of one model's request path.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RuntimeStats {
    /// Requests accepted (including those answered fully from cache).
    pub requests: u64,
    /// Texts answered from the cache.
    pub cache_hits: u64,
    /// Texts that went through a forward pass.
    pub texts_inferred: u64,
    /// Inference calls made by the workers.
    pub batches: u64,
    /// Requests refused because the queue was full.
    pub overloaded: u64,
    /// Requests that missed their deadline.
    pub deadline_exceeded: u64,
}

#[derive(Default)]
struct Counters {
    requests: AtomicU64,
    cache_hits: AtomicU64,
    texts_inferred: AtomicU64,
    batches: AtomicU64,
    overloaded: AtomicU64,
    deadline_exceeded: AtomicU64,
}

type Answer<T> = Result<Vec<T>, ModelError>;

enum Reply<T> {
    Async(oneshot::Sender<Answer<T>>),
    Blocking(SyncSender<Answer<T>>),
}

impl<T> Reply<T> {
    fn send(self, answer: Answer<T>) {
        // A caller that gave up (deadline) has dropped its receiver; nothing to do then.
        match self {
            Self::Async(tx) => {
                let _ = tx.send(answer);
            }
            Self::Blocking(tx) => {
                let _ = tx.try_send(answer);
            }
        }
    }
}

struct Job<T> {
    texts: Vec<String>,
    deadline: Instant,
    timeout: Duration,
    reply: Reply<T>,
}

struct Shared<T> {
    id: String,
    tx: SyncSender<Job<T>>,
    cache: Option<Mutex<LruCache<u128, T>>>,
    counters: Arc<Counters>,
    options: RuntimeOptions,
}

/// A cheap, cloneable handle to a model served by worker threads. The workers stop when the
/// last handle is dropped.
pub struct ModelHandle<T> {
    shared: Arc<Shared<T>>,
}

impl<T> Clone for ModelHandle<T> {
    fn clone(&self) -> Self {
        Self {
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<T> std::fmt::Debug for ModelHandle<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ModelHandle")
            .field("model", &self.shared.id)
            .field("options", &self.shared.options)
            .finish_non_exhaustive()
    }
}

/// 128-bit text key from two keyed SipHash-1-3 passes (deterministic within a process).
fn text_key(text: &str) -> u128 {
    let mut a = std::hash::DefaultHasher::new();
    0xA5u8.hash(&mut a);
    text.hash(&mut a);
    let mut b = std::hash::DefaultHasher::new();
    0x5Au8.hash(&mut b);
    text.hash(&mut b);
    (u128::from(a.finish()) << 64) | u128::from(b.finish())
}

/// A request split into cached answers and texts still to infer.
struct Plan<T> {
    results: Vec<Option<T>>,
    /// Distinct texts to infer, with every result slot each one fills.
    misses: Vec<(String, Vec<usize>, u128)>,
}

impl<T: Clone + Send + Sync + 'static> ModelHandle<T> {
    /// Starts `options.workers` threads serving `model`.
    ///
    /// # Errors
    /// [`ModelError::Unavailable`] if the OS refuses to start a thread.
    pub fn spawn<M>(model: M, options: RuntimeOptions) -> Result<Self, ModelError>
    where
        M: InferenceModel<Output = T>,
    {
        let id = model.model_id().to_owned();
        let (tx, rx) = mpsc::sync_channel::<Job<T>>(options.queue_capacity.max(1));
        let rx = Arc::new(Mutex::new(rx));
        let counters = Arc::new(Counters::default());
        for n in 0..options.workers.max(1) {
            let pool = match options.intra_op_threads {
                None => None,
                Some(threads) => Some(
                    rayon::ThreadPoolBuilder::new()
                        .num_threads(threads.max(1))
                        .thread_name(move |i| format!("model-{n}-op-{i}"))
                        .build()
                        .map_err(|e| ModelError::Unavailable {
                            model: id.clone(),
                            reason: format!("cannot start the intra-op thread pool: {e}"),
                        })?,
                ),
            };
            let worker = Worker {
                pool,
                model: model.clone(),
                rx: Arc::clone(&rx),
                counters: Arc::clone(&counters),
                max_batch: options.max_batch.max(1),
                max_wait: options.max_wait,
            };
            std::thread::Builder::new()
                .name(format!("model-{n}-{id}"))
                .spawn(move || worker.run())
                .map_err(|e| ModelError::Unavailable {
                    model: id.clone(),
                    reason: format!("cannot start worker thread: {e}"),
                })?;
        }
        let cache = NonZeroUsize::new(options.cache_capacity).map(|n| Mutex::new(LruCache::new(n)));
        Ok(Self {
            shared: Arc::new(Shared {
                id,
                tx,
                cache,
                counters,
                options,
            }),
        })
    }

    /// The model id.
    #[must_use]
    pub fn model_id(&self) -> &str {
        &self.shared.id
    }

    /// The options the handle was started with.
    #[must_use]
    pub fn options(&self) -> &RuntimeOptions {
        &self.shared.options
    }

    /// Counters so far.
    #[must_use]
    pub fn stats(&self) -> RuntimeStats {
        let c = &self.shared.counters;
        RuntimeStats {
            requests: c.requests.load(Ordering::Relaxed),
            cache_hits: c.cache_hits.load(Ordering::Relaxed),
            texts_inferred: c.texts_inferred.load(Ordering::Relaxed),
            batches: c.batches.load(Ordering::Relaxed),
            overloaded: c.overloaded.load(Ordering::Relaxed),
            deadline_exceeded: c.deadline_exceeded.load(Ordering::Relaxed),
        }
    }

    fn plan(&self, texts: Vec<String>) -> Plan<T> {
        self.shared
            .counters
            .requests
            .fetch_add(1, Ordering::Relaxed);
        let mut results: Vec<Option<T>> =
            std::iter::repeat_with(|| None).take(texts.len()).collect();
        let mut misses: Vec<(String, Vec<usize>, u128)> = Vec::new();
        let mut hits = 0u64;
        let mut cache = self.shared.cache.as_ref().map(|c| c.lock());
        for (i, text) in texts.into_iter().enumerate() {
            let key = text_key(&text);
            if let Some(hit) = cache.as_mut().and_then(|c| c.get(&key).cloned()) {
                if let Some(slot) = results.get_mut(i) {
                    *slot = Some(hit);
                }
                hits += 1;
            } else if let Some(m) = misses.iter_mut().find(|m| m.2 == key) {
                m.1.push(i);
            } else {
                misses.push((text, vec![i], key));
            }
        }
        drop(cache);
        self.shared
            .counters
            .cache_hits
            .fetch_add(hits, Ordering::Relaxed);
        Plan { results, misses }
    }

    fn submit(
        &self,
        texts: Vec<String>,
        timeout: Duration,
        reply: Reply<T>,
    ) -> Result<(), ModelError> {
        let job = Job {
            texts,
            deadline: Instant::now() + timeout,
            timeout,
            reply,
        };
        match self.shared.tx.try_send(job) {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(_)) => {
                self.shared
                    .counters
                    .overloaded
                    .fetch_add(1, Ordering::Relaxed);
                Err(ModelError::Overloaded {
                    model: self.shared.id.clone(),
                    capacity: self.shared.options.queue_capacity,
                })
            }
            Err(TrySendError::Disconnected(_)) => Err(self.unavailable()),
        }
    }

    fn unavailable(&self) -> ModelError {
        ModelError::Unavailable {
            model: self.shared.id.clone(),
            reason: "its worker threads have stopped".into(),
        }
    }

    fn deadline(&self, timeout: Duration) -> ModelError {
        self.shared
            .counters
            .deadline_exceeded
            .fetch_add(1, Ordering::Relaxed);
        ModelError::DeadlineExceeded {
            model: self.shared.id.clone(),
            timeout,
        }
    }

    fn finish(&self, mut plan: Plan<T>, answer: Vec<T>) -> Result<Vec<T>, ModelError> {
        if answer.len() != plan.misses.len() {
            return Err(ModelError::inference(
                &self.shared.id,
                "worker returned the wrong count",
            ));
        }
        let mut cache = self.shared.cache.as_ref().map(|c| c.lock());
        for ((_, slots, key), value) in plan.misses.into_iter().zip(answer) {
            if let Some(c) = cache.as_mut() {
                c.put(key, value.clone());
            }
            for i in slots {
                if let Some(slot) = plan.results.get_mut(i) {
                    *slot = Some(value.clone());
                }
            }
        }
        drop(cache);
        plan.results
            .into_iter()
            .map(|r| r.ok_or_else(|| ModelError::inference(&self.shared.id, "missing result")))
            .collect()
    }

    /// Runs `texts` with the default deadline.
    ///
    /// # Errors
    /// `Overloaded`, `DeadlineExceeded`, `Unavailable`, or the model's own error.
    pub async fn run(&self, texts: Vec<String>) -> Result<Vec<T>, ModelError> {
        self.run_with_timeout(texts, self.shared.options.timeout)
            .await
    }

    /// Runs `texts`, giving up after `timeout`.
    ///
    /// # Errors
    /// `Overloaded`, `DeadlineExceeded`, `Unavailable`, or the model's own error.
    pub async fn run_with_timeout(
        &self,
        texts: Vec<String>,
        timeout: Duration,
    ) -> Result<Vec<T>, ModelError> {
        let plan = self.plan(texts);
        if plan.misses.is_empty() {
            return self.finish(plan, Vec::new());
        }
        let (tx, rx) = oneshot::channel();
        let to_infer = plan.misses.iter().map(|m| m.0.clone()).collect();
        self.submit(to_infer, timeout, Reply::Async(tx))?;
        match tokio::time::timeout(timeout, rx).await {
            Err(_) => Err(self.deadline(timeout)),
            Ok(Err(_)) => Err(self.unavailable()),
            Ok(Ok(answer)) => self.finish(plan, answer?),
        }
    }

    /// Blocking variant for plain threads. Do not call it on an async worker thread.
    ///
    /// # Errors
    /// As [`ModelHandle::run_with_timeout`].
    pub fn run_blocking(
        &self,
        texts: Vec<String>,
        timeout: Duration,
    ) -> Result<Vec<T>, ModelError> {
        let plan = self.plan(texts);
        if plan.misses.is_empty() {
            return self.finish(plan, Vec::new());
        }
        let (tx, rx) = mpsc::sync_channel(1);
        let to_infer = plan.misses.iter().map(|m| m.0.clone()).collect();
        self.submit(to_infer, timeout, Reply::Blocking(tx))?;
        match rx.recv_timeout(timeout) {
            Err(RecvTimeoutError::Timeout) => Err(self.deadline(timeout)),
            Err(RecvTimeoutError::Disconnected) => Err(self.unavailable()),
            Ok(answer) => self.finish(plan, answer?),
        }
    }
}

struct Worker<M: InferenceModel> {
    pool: Option<rayon::ThreadPool>,
    model: M,
    rx: Arc<Mutex<Receiver<Job<M::Output>>>>,
    counters: Arc<Counters>,
    max_batch: usize,
    max_wait: Duration,
}

impl<M: InferenceModel> Worker<M> {
    fn run(mut self) {
        while let Some(jobs) = self.collect() {
            self.serve(jobs);
        }
        tracing::debug!(model = self.model.model_id(), "model worker stopped");
    }

    /// Blocks for one job, then gathers more until `max_batch` texts or `max_wait`.
    /// `None` when every handle is gone.
    fn collect(&self) -> Option<Vec<Job<M::Output>>> {
        let rx = self.rx.lock();
        let first = rx.recv().ok()?;
        let mut texts = first.texts.len();
        let mut jobs = vec![first];
        let until = Instant::now() + self.max_wait;
        while texts < self.max_batch {
            let next = match until.checked_duration_since(Instant::now()) {
                Some(left) if !left.is_zero() => rx.recv_timeout(left).ok(),
                _ => rx.try_recv().ok(),
            };
            match next {
                Some(job) => {
                    texts += job.texts.len();
                    jobs.push(job);
                }
                None => break,
            }
        }
        Some(jobs)
    }

    fn serve(&mut self, jobs: Vec<Job<M::Output>>) {
        let now = Instant::now();
        let (live, expired): (Vec<_>, Vec<_>) = jobs.into_iter().partition(|j| j.deadline > now);
        for job in expired {
            let err = ModelError::DeadlineExceeded {
                model: self.model.model_id().to_owned(),
                timeout: job.timeout,
            };
            job.reply.send(Err(err));
        }
        if live.is_empty() {
            return;
        }
        let texts: Vec<&str> = live
            .iter()
            .flat_map(|j| j.texts.iter().map(String::as_str))
            .collect();
        let count = texts.len() as u64;
        let model = &mut self.model;
        let result = match &self.pool {
            Some(pool) => pool.install(|| model.infer(&texts)),
            None => model.infer(&texts),
        };
        self.counters.batches.fetch_add(1, Ordering::Relaxed);
        self.counters
            .texts_inferred
            .fetch_add(count, Ordering::Relaxed);
        match result {
            Ok(outputs) if outputs.len() == texts.len() => {
                let mut outputs = outputs.into_iter();
                for job in live {
                    let part: Vec<M::Output> = outputs.by_ref().take(job.texts.len()).collect();
                    job.reply.send(Ok(part));
                }
            }
            Ok(_) => {
                let err =
                    ModelError::inference(self.model.model_id(), "model returned the wrong count");
                for job in live {
                    job.reply.send(Err(err.clone()));
                }
            }
            Err(err) => {
                for job in live {
                    job.reply.send(Err(err.clone()));
                }
            }
        }
    }
}
