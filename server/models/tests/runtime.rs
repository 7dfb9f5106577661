//! The execution layer with a scripted fake model: bounded queue → Overloaded, deadlines,
//! dynamic batching, the LRU cache, the blocking variant and worker shutdown.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stderr,
    clippy::disallowed_methods,
    reason = "tests: fail loudly, print skip notes, and join every task they spawn"
)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use vllm_sr_models::{InferenceModel, ModelError, ModelHandle, RuntimeOptions};

/// Returns each text's length after sleeping; records batch sizes.
#[derive(Clone)]
struct Fake {
    delay: Duration,
    calls: Arc<AtomicUsize>,
    largest: Arc<AtomicUsize>,
}

impl InferenceModel for Fake {
    type Output = usize;
    fn model_id(&self) -> &str {
        "fake"
    }
    fn infer(&mut self, texts: &[&str]) -> Result<Vec<usize>, ModelError> {
        std::thread::sleep(self.delay);
        self.calls.fetch_add(1, Ordering::SeqCst);
        self.largest.fetch_max(texts.len(), Ordering::SeqCst);
        if texts.contains(&"boom") {
            return Err(ModelError::Invalid("boom".into()));
        }
        Ok(texts.iter().map(|t| t.len()).collect())
    }
}

fn fake(delay_ms: u64) -> Fake {
    Fake {
        delay: Duration::from_millis(delay_ms),
        calls: Arc::new(AtomicUsize::new(0)),
        largest: Arc::new(AtomicUsize::new(0)),
    }
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn results_come_back_in_order_and_errors_propagate() {
    let h = ModelHandle::spawn(fake(0), RuntimeOptions::default()).unwrap();
    let r = rt()
        .block_on(h.run(vec!["a".into(), "bbb".into(), "cc".into()]))
        .unwrap();
    assert_eq!(r, vec![1, 3, 2]);
    let err = rt().block_on(h.run(vec!["boom".into()])).unwrap_err();
    assert!(matches!(err, ModelError::Invalid(_)), "{err}");
    assert_eq!(
        h.run_blocking(vec!["four".into()], Duration::from_secs(1))
            .unwrap(),
        vec![4]
    );
}

#[test]
fn full_queue_is_overloaded_not_a_hang() {
    let model = fake(300);
    let h = ModelHandle::spawn(
        model,
        RuntimeOptions {
            queue_capacity: 1,
            max_batch: 1,
            max_wait: Duration::ZERO,
            cache_capacity: 0,
            ..RuntimeOptions::default()
        },
    )
    .unwrap();
    let results = rt().block_on(async {
        let mut tasks = Vec::new();
        for i in 0..6 {
            let h = h.clone();
            tasks.push(tokio::task::spawn(async move {
                h.run(vec![format!("t{i}")]).await
            }));
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let mut out = Vec::new();
        for t in tasks {
            out.push(t.await.unwrap());
        }
        out
    });
    let overloaded = results
        .iter()
        .filter(|r| matches!(r, Err(ModelError::Overloaded { .. })))
        .count();
    assert!(overloaded >= 3, "{results:?}");
    assert!(results.iter().filter(|r| r.is_ok()).count() >= 1);
    assert_eq!(h.stats().overloaded as usize, overloaded);
}

#[test]
fn deadline_is_an_error_and_expired_jobs_are_skipped() {
    let model = fake(200);
    let calls = Arc::clone(&model.calls);
    let h = ModelHandle::spawn(
        model,
        RuntimeOptions {
            max_batch: 1,
            max_wait: Duration::ZERO,
            cache_capacity: 0,
            ..RuntimeOptions::default()
        },
    )
    .unwrap();
    let runtime = rt();
    let (a, b) = runtime.block_on(async {
        let h2 = h.clone();
        let first = tokio::task::spawn(async move {
            h2.run_with_timeout(vec!["slow".into()], Duration::from_secs(5))
                .await
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        // Queued behind a 200 ms job with a 50 ms budget.
        let second = h
            .run_with_timeout(vec!["late".into()], Duration::from_millis(50))
            .await;
        (first.await.unwrap(), second)
    });
    assert_eq!(a.unwrap(), vec![4]);
    assert!(
        matches!(b, Err(ModelError::DeadlineExceeded { .. })),
        "{b:?}"
    );
    std::thread::sleep(Duration::from_millis(300));
    // The expired job never reached the model.
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert!(h.stats().deadline_exceeded >= 1);
    let blocking = h.run_blocking(vec!["x".into()], Duration::from_millis(10));
    assert!(matches!(blocking, Err(ModelError::DeadlineExceeded { .. })));
}

#[test]
fn concurrent_requests_are_batched() {
    let model = fake(30);
    let calls = Arc::clone(&model.calls);
    let largest = Arc::clone(&model.largest);
    let h = ModelHandle::spawn(
        model,
        RuntimeOptions {
            max_batch: 16,
            max_wait: Duration::from_millis(5),
            cache_capacity: 0,
            ..RuntimeOptions::default()
        },
    )
    .unwrap();
    rt().block_on(async {
        let mut tasks = Vec::new();
        for i in 0..48 {
            let h = h.clone();
            tasks.push(tokio::task::spawn(async move {
                h.run(vec![format!("text {i}")]).await
            }));
        }
        for t in tasks {
            assert_eq!(t.await.unwrap().unwrap().len(), 1);
        }
    });
    let calls = calls.load(Ordering::SeqCst);
    assert!(calls < 48 / 2, "48 requests took {calls} model calls");
    assert!(largest.load(Ordering::SeqCst) > 1);
    assert!(largest.load(Ordering::SeqCst) <= 16);
    assert_eq!(h.stats().texts_inferred, 48);
}

#[test]
fn cache_answers_repeated_texts_without_a_forward_pass() {
    let model = fake(0);
    let calls = Arc::clone(&model.calls);
    let h = ModelHandle::spawn(model, RuntimeOptions::default()).unwrap();
    let runtime = rt();
    let turn1 = vec!["system prompt".to_owned(), "first question".to_owned()];
    assert_eq!(runtime.block_on(h.run(turn1)).unwrap(), vec![13, 14]);
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    // Next turn repeats both earlier texts (and one twice) and adds one.
    let turn2 = vec![
        "system prompt".to_owned(),
        "first question".to_owned(),
        "follow-up".to_owned(),
        "follow-up".to_owned(),
    ];
    assert_eq!(runtime.block_on(h.run(turn2)).unwrap(), vec![13, 14, 9, 9]);
    let s = h.stats();
    assert_eq!(s.cache_hits, 2);
    assert_eq!(s.texts_inferred, 3, "only the new text (once) was inferred");
    // Fully cached: no model call at all.
    runtime.block_on(h.run(vec!["follow-up".into()])).unwrap();
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}

#[test]
fn workers_stop_when_handles_are_dropped() {
    let model = fake(0);
    let probe = Arc::clone(&model.calls);
    let h = ModelHandle::spawn(
        model,
        RuntimeOptions {
            workers: 2,
            ..RuntimeOptions::default()
        },
    )
    .unwrap();
    h.run_blocking(vec!["a".into()], Duration::from_secs(1))
        .unwrap();
    // Two worker clones + the test hold the counter.
    assert_eq!(Arc::strong_count(&probe), 3);
    drop(h);
    let t0 = std::time::Instant::now();
    while Arc::strong_count(&probe) > 1 && t0.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(Arc::strong_count(&probe), 1, "worker threads did not exit");
}

/// Reports the size of the rayon pool it runs in.
#[derive(Clone)]
struct PoolProbe;

impl InferenceModel for PoolProbe {
    type Output = usize;
    fn model_id(&self) -> &str {
        "probe"
    }
    fn infer(&mut self, texts: &[&str]) -> Result<Vec<usize>, ModelError> {
        Ok(vec![rayon::current_num_threads(); texts.len()])
    }
}

#[test]
fn intra_op_threads_confine_the_model_to_its_own_pool() {
    for threads in [1, 3] {
        let h = ModelHandle::spawn(
            PoolProbe,
            RuntimeOptions {
                intra_op_threads: Some(threads),
                ..RuntimeOptions::default()
            },
        )
        .unwrap();
        let got = h
            .run_blocking(vec!["x".into()], Duration::from_secs(5))
            .unwrap();
        assert_eq!(got, vec![threads]);
    }
}
