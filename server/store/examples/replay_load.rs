//! Replay write load: the CPU the replay path costs per record, for comparing with the
//! proxy's CPU per request (the store must cost ≤ 10% of proxy throughput).
//!
//! One producer builds ~2 KB records and hands them to `ReplaySink::record`; the writer
//! thread commits them. The process CPU time (user + system, from `/proc/self/stat`) of a
//! run that only builds and drops the same records is subtracted, so what is left is the cost
//! of `record` plus everything the writer thread does (compression, SQLite, retention).
//!
//! `cargo run --release -p vllm-sr-store --example replay_load -- [records] [rate/s] [batch]`
//! (rate 0, the default: as fast as the writer commits; otherwise an open loop at that rate,
//! reporting drops).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout,
    reason = "a benchmark report: prints, and any failure should stop it"
)]

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::{Duration, Instant};

use vllm_sr_store::{Store, StoreOptions};

/// Process user + system CPU time (Linux).
fn cpu_time() -> Duration {
    stat_cpu("/proc/self/stat")
}

/// CPU time of this process's thread named `name` (Linux `comm`, at most 15 bytes).
fn thread_cpu_time(name: &str) -> Duration {
    for task in std::fs::read_dir("/proc/self/task").unwrap() {
        let dir = task.unwrap().path();
        let comm = std::fs::read_to_string(dir.join("comm")).unwrap_or_default();
        if comm.trim_end() == name {
            return stat_cpu(dir.join("stat").to_str().unwrap());
        }
    }
    Duration::ZERO
}

/// utime + stime of a `/proc/.../stat` file.
fn stat_cpu(path: &str) -> Duration {
    let stat = std::fs::read_to_string(path).unwrap();
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap();
    // USER_HZ is 100 on every Linux this runs on.
    Duration::from_millis(ticks * 10)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let n: i64 = args.get(1).map_or(200_000, |a| a.parse().unwrap());
    let rate: u64 = args.get(2).map_or(0, |a| a.parse().unwrap());
    let batch: usize = args
        .get(3)
        .map_or(StoreOptions::default().batch_max_rows, |a| {
            a.parse().unwrap()
        });
    let size = serde_json::to_string(&common::realistic_record(0))
        .unwrap()
        .len();

    // Baseline: building and dropping the records, no store.
    let cpu0 = cpu_time();
    let t0 = Instant::now();
    for i in 0..n {
        std::hint::black_box(common::realistic_record(i));
    }
    let build_cpu = cpu_time() - cpu0;
    let build_wall = t0.elapsed();

    let dir = tempfile::tempdir().unwrap();
    let opts = StoreOptions {
        // Steady state of a full store: every batch also trims the oldest rows.
        max_records: Some(100_000),
        ttl: None,
        batch_max_rows: batch,
        ..StoreOptions::default()
    };
    let store = Store::open(dir.path(), &opts).unwrap();
    let sink = store.sink();
    let mut call_time = Duration::ZERO;
    let cpu1 = cpu_time();
    let t1 = Instant::now();
    for i in 0..n {
        let rec = common::realistic_record(i);
        if rate > 0 {
            let due = Duration::from_secs_f64(i as f64 / rate as f64);
            if let Some(wait) = due.checked_sub(t1.elapsed()) {
                std::thread::sleep(wait);
            }
        } else {
            while sink.queued() as usize >= sink.capacity() {
                std::thread::yield_now();
            }
        }
        let c = Instant::now();
        sink.record(rec);
        call_time += c.elapsed();
    }
    sink.flush().unwrap();
    let wall = t1.elapsed();
    // The writer thread is named "vsr-replay-writer"; Linux keeps 15 bytes of it.
    let writer_cpu = thread_cpu_time("vsr-replay-writ");
    let store_cpu = (cpu_time() - cpu1).saturating_sub(build_cpu);
    let stats = sink.stats();
    store.shutdown().unwrap();
    let db_bytes = std::fs::metadata(store.path()).map_or(0, |m| m.len());

    let per = |d: Duration| d.as_secs_f64() * 1e6 / n as f64;
    println!(
        "records: {n} of {size} B JSON; rate: {}",
        if rate == 0 {
            "closed loop".to_owned()
        } else {
            format!("{rate}/s")
        }
    );
    println!(
        "build only: {:.2} µs CPU/record ({:.2} µs wall)",
        per(build_cpu),
        per(build_wall)
    );
    println!(
        "store: {:.0} records/s wall; {:.2} µs CPU/record (record + writer, build subtracted); record() {:.0} ns/call avg",
        n as f64 / wall.as_secs_f64(),
        per(store_cpu),
        call_time.as_secs_f64() * 1e9 / n as f64
    );
    println!("writer thread alone: {:.2} µs CPU/record", per(writer_cpu));
    println!(
        "written {} dropped {} batches {} (avg {:.0} rows) deleted {}; db file {:.1} MB",
        stats.written,
        stats.dropped,
        stats.batches,
        stats.written as f64 / stats.batches.max(1) as f64,
        stats.deleted,
        db_bytes as f64 / 1e6
    );
}
