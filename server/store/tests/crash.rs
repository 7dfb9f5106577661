//! Crash safety: `kill -9` of a process writing under load leaves a database that opens,
//! passes `PRAGMA integrity_check`, and holds every record the writer had reported committed
//! (at most the batch being collected is lost).
//!
//! The test re-executes its own binary as the writing child (selected by an environment
//! variable), so no extra binary or script is needed.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stdout,
    clippy::print_stderr,
    reason = "tests (and, in crash.rs, the child process a test runs)"
)]

mod common;

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::{full_record, options};
use vllm_sr_store::{ReplayFilter, Store, StoreOptions};

const CHILD_DIR: &str = "VSR_STORE_CRASH_CHILD_DIR";
const TEST_NAME: &str = "kill_9_during_load_loses_at_most_the_unflushed_batch";
/// Committed records the parent waits for before killing the child.
const KILL_AFTER: u64 = 3_000;

/// The child: records continuously (retrying when the queue is full, so the committed
/// records are always a prefix of the sequence), and prints the committed count.
fn child(dir: &Path) {
    let opts = StoreOptions {
        queue_capacity: 512,
        batch_max_rows: 100,
        flush_interval: Duration::from_millis(10),
        ..options()
    };
    let store = Store::open(dir, &opts).unwrap();
    let sink = store.sink();
    let body = "x".repeat(1500);
    let started = Instant::now();
    let mut seq: u64 = 0;
    // Bounded, in case the parent dies without killing us.
    while started.elapsed() < Duration::from_secs(120) {
        let mut rec = full_record(1_763_700_000_000 + seq as i64);
        rec.request_id = Some(seq.to_string());
        rec.request_body = Some(body.clone());
        while !sink.record(rec.clone()) {
            std::thread::sleep(Duration::from_micros(200));
        }
        seq += 1;
        if seq.is_multiple_of(50) {
            println!("written {}", sink.stats().written);
        }
    }
}

#[test]
fn kill_9_during_load_loses_at_most_the_unflushed_batch() {
    if let Some(dir) = std::env::var_os(CHILD_DIR) {
        child(Path::new(&dir));
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut proc = Command::new(std::env::current_exe().unwrap())
        .args([TEST_NAME, "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD_DIR, dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = proc.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel::<u64>();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if let Some(n) = line.strip_prefix("written ").and_then(|n| n.parse().ok()) {
                if tx.send(n).is_err() {
                    break;
                }
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(90);
    let mut reported = 0;
    while reported < KILL_AFTER {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(n) => reported = reported.max(n),
            Err(e) => {
                let _ = proc.kill();
                panic!("child reported only {reported} committed records: {e}");
            }
        }
    }
    // SIGKILL: no destructor, no shutdown, no final commit.
    proc.kill().unwrap();
    let status = proc.wait().unwrap();
    assert!(!status.success());
    // Lines already in the pipe were printed before the kill: also committed.
    reader.join().unwrap();
    while let Ok(n) = rx.try_recv() {
        reported = reported.max(n);
    }

    let store = Store::open(dir.path(), &options()).unwrap();
    let conn = rusqlite::Connection::open(store.path()).unwrap();
    let check: String = conn
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(check, "ok");
    let count = store.reader().count(&ReplayFilter::default()).unwrap();
    eprintln!("reported committed before the kill: {reported}; rows after reopening: {count}");
    assert!(
        count >= reported,
        "{count} rows < {reported} reported committed"
    );
    // Every row decodes, and the rows are exactly the first `count` of the sequence.
    let mut seqs = BTreeSet::new();
    let mut cursor: Option<String> = None;
    loop {
        let page = store
            .reader()
            .list(&ReplayFilter::default(), cursor.as_deref(), 1000)
            .unwrap();
        for r in &page.records {
            seqs.insert(r.request_id.as_deref().unwrap().parse::<u64>().unwrap());
        }
        match page.next_cursor {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    assert_eq!(seqs.len() as u64, count);
    assert_eq!(
        seqs.last().copied(),
        count.checked_sub(1),
        "committed rows form a prefix"
    );
    // The store keeps working after the crash.
    assert!(store.sink().record(full_record(1)));
    store.sink().flush().unwrap();
    assert_eq!(
        store.reader().count(&ReplayFilter::default()).unwrap(),
        count + 1
    );
}
