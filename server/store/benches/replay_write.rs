//! Replay write path: what `ReplaySink::record` costs the request path, and how many ~2 KB
//! records per second the writer thread commits. Results: scripts/bench/results/store-*.md.
//!
//! `cargo bench -p vllm-sr-store --bench replay_write`

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a benchmark: any failure should stop it"
)]

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use vllm_sr_store::{ReplayRecord, Store, StoreOptions};

fn bench_options() -> StoreOptions {
    StoreOptions {
        max_records: None,
        ttl: None,
        ..StoreOptions::default()
    }
}

fn record_call(c: &mut Criterion) {
    let size = serde_json::to_string(&common::realistic_record(0))
        .unwrap()
        .len();
    let mut g = c.benchmark_group(format!("record_call_{size}B"));
    // Accepted: the writer keeps up (the queue is drained between measured chunks).
    g.bench_function("accepted", |b| {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), &bench_options()).unwrap();
        let sink = store.sink();
        let chunk = 4096usize;
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            let mut left = iters;
            while left > 0 {
                let n = left.min(chunk as u64);
                let records: Vec<ReplayRecord> =
                    (0..n as i64).map(common::realistic_record).collect();
                let start = Instant::now();
                for r in records {
                    assert!(sink.record(r));
                }
                total += start.elapsed();
                sink.flush().unwrap();
                left -= n;
            }
            total
        });
        store.shutdown().unwrap();
    });
    // Refused: the writer is stalled on a lock, the queue is full; the call drops the record.
    g.bench_function("dropped_queue_full", |b| {
        let dir = tempfile::tempdir().unwrap();
        let opts = StoreOptions {
            queue_capacity: 1,
            batch_max_rows: 1,
            flush_interval: Duration::ZERO,
            ..bench_options()
        };
        let store = Store::open(dir.path(), &opts).unwrap();
        let blocker = rusqlite::Connection::open(store.path()).unwrap();
        blocker.execute_batch("BEGIN IMMEDIATE").unwrap();
        let sink = store.sink();
        while sink.record(common::realistic_record(0)) {}
        b.iter_batched(
            || common::realistic_record(1),
            |r| sink.record(r),
            BatchSize::SmallInput,
        );
        blocker.execute_batch("COMMIT").unwrap();
        store.shutdown().unwrap();
    });
    g.finish();
}

/// Records through `record` (waiting while the queue is full) and a final `flush`.
fn write_all(store: &Store, records: Vec<ReplayRecord>) {
    let sink = store.sink();
    for r in records {
        // `queued` counts the writer's open batch too, so below capacity the channel has
        // room and, with this single producer, `record` cannot be refused.
        while sink.queued() as usize >= sink.capacity() {
            std::thread::yield_now();
        }
        assert!(sink.record(r));
    }
    sink.flush().unwrap();
}

fn sustained(c: &mut Criterion) {
    const N: usize = 10_000;
    let mut g = c.benchmark_group("sustained_write");
    g.throughput(Throughput::Elements(N as u64));
    g.sample_size(10);
    g.measurement_time(Duration::from_secs(20));
    for (name, max_records) in [("unbounded", None), ("max_records_10k", Some(10_000))] {
        g.bench_function(name, |b| {
            let dir = tempfile::tempdir().unwrap();
            let opts = StoreOptions {
                max_records,
                ..bench_options()
            };
            let store = Store::open(dir.path(), &opts).unwrap();
            let mut seq = 0i64;
            b.iter_batched(
                || {
                    let records: Vec<ReplayRecord> = (seq..seq + N as i64)
                        .map(common::realistic_record)
                        .collect();
                    seq += N as i64;
                    records
                },
                |records| write_all(&store, records),
                BatchSize::PerIteration,
            );
            store.shutdown().unwrap();
        });
    }
    g.finish();
}

criterion_group!(benches, record_call, sustained);
criterion_main!(benches);
