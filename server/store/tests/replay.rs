//! The store end to end through its public API: write, read back, list, retention,
//! back-pressure and shutdown.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stdout,
    clippy::print_stderr,
    reason = "tests (and, in crash.rs, the child process a test runs)"
)]

mod common;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use common::{full_record, options, random_record};
use vllm_sr_store::{
    now_ms, record_key, Lifecycle, ReplayFilter, ReplayReader, ReplayRecord, Store, StoreError,
    StoreOptions, DB_FILE_NAME, RECORD_SCHEMA_VERSION,
};

fn open(dir: &std::path::Path, options: &StoreOptions) -> Store {
    Store::open(dir, options).unwrap()
}

#[test]
fn a_full_record_round_trips() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir.path().join("state"), &options());
    let rec = full_record(1_763_700_000_000);
    assert!(store.sink().record(rec.clone()));
    store.sink().flush().unwrap();
    let back = store.reader().get(&rec.id).unwrap().unwrap();
    assert_eq!(back, rec);
    assert!(store.reader().get("missing").unwrap().is_none());
    assert_eq!(store.path(), dir.path().join("state").join(DB_FILE_NAME));
}

#[test]
fn the_database_is_in_wal_mode_and_a_batch_is_stored_as_compressed_segments() {
    let dir = tempfile::tempdir().unwrap();
    let opts = options();
    let store = open(dir.path(), &opts);
    let records: Vec<ReplayRecord> = (0..150).map(|i| full_record(1_000 + i)).collect();
    for r in &records {
        assert!(store.sink().record(r));
    }
    store.shutdown().unwrap();
    let conn = rusqlite::Connection::open(store.path()).unwrap();
    let mode: String = conn
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
    let segments: Vec<(i64, i64, i64, i64, Vec<u8>)> = conn
        .prepare(
            "SELECT first_key, last_key, records, format, data FROM replay_segments ORDER BY seg",
        )
        .unwrap()
        .query_map([], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
        })
        .unwrap()
        .map(Result::unwrap)
        .collect();
    // However the records were batched, no segment holds more than `batch_max_rows`, every
    // record is in one, and each segment knows its key range.
    let total: i64 = segments.iter().map(|s| s.2).sum();
    assert_eq!(total, 150);
    // Format 2: packed records.
    assert!(segments
        .iter()
        .all(|s| s.2 as usize <= opts.batch_max_rows && s.3 == 2));
    let mut keys = Vec::new();
    let mut packed_bytes = 0;
    let mut stored_bytes = 0;
    for (first, last, n, _, data) in &segments {
        stored_bytes += data.len();
        let raw = lz4_flex::block::decompress_size_prepended(data).unwrap();
        let mut rest = &raw[..];
        let mut seg_keys = Vec::new();
        while !rest.is_empty() {
            // key, id length, id, payload length, payload
            let key = i64::from_le_bytes(rest[..8].try_into().unwrap());
            let id_len = usize::from(rest[8]);
            let id = std::str::from_utf8(&rest[9..9 + id_len]).unwrap();
            let at = 9 + id_len;
            let len = u32::from_le_bytes(rest[at..at + 4].try_into().unwrap()) as usize;
            let payload = &rest[at + 4..at + 4 + len];
            assert_eq!(Some(key), record_key(id));
            // The whole record, packed: an object whose first members are field 0
            // (schema_version, an unsigned varint) and field 1 (id, a string of 32 bytes).
            let version = u8::try_from(RECORD_SCHEMA_VERSION).unwrap();
            let mut head = vec![8, 0x80, 5, version, 0x81, 6, 32];
            head.extend_from_slice(id.as_bytes());
            assert_eq!(&payload[..head.len()], &head[..]);
            assert_eq!(payload.last(), Some(&10), "the object's end");
            assert!(payload.windows(15).any(|w| w == b"code_generation"));
            packed_bytes += len;
            seg_keys.push(key);
            rest = &rest[at + 4 + len..];
        }
        assert_eq!(seg_keys.len() as i64, *n);
        assert!(seg_keys.is_sorted(), "frames in key order");
        assert_eq!((seg_keys[0], *seg_keys.last().unwrap()), (*first, *last));
        keys.extend(seg_keys);
    }
    keys.sort_unstable();
    let mut want: Vec<i64> = records.iter().map(|r| record_key(&r.id).unwrap()).collect();
    want.sort_unstable();
    assert_eq!(keys, want);
    let json_bytes: usize = records
        .iter()
        .map(|r| serde_json::to_vec(r).unwrap().len())
        .sum();
    assert!(
        packed_bytes * 3 < json_bytes * 2 && stored_bytes * 8 < json_bytes,
        "{packed_bytes} bytes packed and {stored_bytes} stored for {json_bytes} bytes of JSON"
    );
    // What the reader returns is what was recorded.
    let reader = ReplayReader::open(store.path(), 1).unwrap();
    for r in records.iter().step_by(37) {
        assert_eq!(reader.get(&r.id).unwrap().as_ref(), Some(r));
    }
}

/// Segments that migrations made (format 1: JSON payloads) and the writer's packed ones
/// (format 2) read back side by side; a format this build does not know is a clear error.
#[test]
fn json_and_packed_segments_read_back_together() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), &options());
    let mut rng = fastrand::Rng::with_seed(5);
    let packed: Vec<ReplayRecord> = (0..10)
        .map(|i| random_record(&mut rng, 1_763_700_000_000 + i * 2))
        .collect();
    for r in &packed {
        assert!(store.sink().record(r));
    }
    store.shutdown().unwrap();
    let json: Vec<ReplayRecord> = (0..5)
        .map(|i| random_record(&mut rng, 1_763_700_000_001 + i * 2))
        .collect();
    let mut raw = Vec::new();
    for r in &json {
        let text = serde_json::to_vec(r).unwrap();
        raw.extend_from_slice(&record_key(&r.id).unwrap().to_le_bytes());
        raw.push(32);
        raw.extend_from_slice(r.id.as_bytes());
        raw.extend_from_slice(&(text.len() as u32).to_le_bytes());
        raw.extend_from_slice(&text);
    }
    let keys = |rs: &[ReplayRecord]| {
        rs.iter()
            .map(|r| record_key(&r.id).unwrap())
            .collect::<Vec<_>>()
    };
    let conn = rusqlite::Connection::open(store.path()).unwrap();
    conn.execute(
        "INSERT INTO replay_segments (first_key, last_key, records, format, data)
         VALUES (?1, ?2, 5, 1, ?3)",
        rusqlite::params![
            keys(&json)[0],
            keys(&json)[4],
            lz4_flex::block::compress_prepend_size(&raw)
        ],
    )
    .unwrap();
    let reader = ReplayReader::open(store.path(), 1).unwrap();
    for r in packed.iter().chain(&json) {
        assert_eq!(reader.get(&r.id).unwrap().as_ref(), Some(r));
    }
    let mut all: Vec<&ReplayRecord> = packed.iter().chain(&json).collect();
    all.sort_by_key(|r| std::cmp::Reverse(record_key(&r.id).unwrap()));
    let page = reader.list(&ReplayFilter::default(), None, 100).unwrap();
    assert_eq!(page.records.iter().collect::<Vec<_>>(), all);
    let failed = ReplayFilter {
        lifecycle: Some(Lifecycle::Failed),
        ..ReplayFilter::default()
    };
    let want = all
        .iter()
        .filter(|r| r.lifecycle == Lifecycle::Failed)
        .count();
    assert_eq!(reader.count(&failed).unwrap(), want as u64);
    assert_eq!(
        reader
            .insights(&ReplayFilter::default())
            .unwrap()
            .totals
            .requests,
        15
    );
    conn.execute("UPDATE replay_segments SET format = 3 WHERE format = 1", [])
        .unwrap();
    let err = reader
        .list(&ReplayFilter::default(), None, 100)
        .unwrap_err();
    assert!(
        err.to_string().contains("unknown segment format 3"),
        "{err}"
    );
}

#[test]
fn a_trickle_of_records_waits_for_one_batch() {
    let dir = tempfile::tempdir().unwrap();
    // The first record opens a batch that collects until `flush_interval` or a flush.
    let opts = StoreOptions {
        flush_interval: Duration::from_secs(5),
        ..options()
    };
    let store = open(dir.path(), &opts);
    for i in 0..10 {
        assert!(store.sink().record(full_record(1_000 + i)));
        std::thread::sleep(Duration::from_millis(5));
    }
    store.sink().flush().unwrap();
    let conn = rusqlite::Connection::open(store.path()).unwrap();
    let (segments, records): (i64, i64) = conn
        .query_row(
            "SELECT count(*), sum(records) FROM replay_segments",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!(
        (segments, records),
        (1, 10),
        "one segment for the whole trickle"
    );
    store.shutdown().unwrap();
}

#[test]
fn reopening_keeps_records_and_a_standalone_reader_sees_them() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), &options());
    let rec = full_record(7);
    store.sink().record(rec.clone());
    store.shutdown().unwrap();
    drop(store);
    let reader = ReplayReader::open(&dir.path().join(DB_FILE_NAME), 1).unwrap();
    assert_eq!(reader.get(&rec.id).unwrap().as_ref(), Some(&rec));
    drop(reader);
    let store = open(dir.path(), &options());
    assert_eq!(store.reader().count(&ReplayFilter::default()).unwrap(), 1);
}

#[test]
fn recording_an_existing_id_replaces_the_record() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), &options());
    let mut rec = full_record(100);
    rec.lifecycle = Lifecycle::InProgress;
    rec.usage = None;
    store.sink().record(rec.clone());
    store.sink().flush().unwrap();
    rec.lifecycle = Lifecycle::Aborted;
    rec.terminal_reason = Some("client_disconnect".into());
    store.sink().record(rec.clone());
    store.sink().flush().unwrap();
    let reader = store.reader();
    assert_eq!(reader.count(&ReplayFilter::default()).unwrap(), 1);
    assert_eq!(reader.get(&rec.id).unwrap().unwrap(), rec);
    let aborted = ReplayFilter {
        lifecycle: Some(Lifecycle::Aborted),
        ..ReplayFilter::default()
    };
    assert_eq!(reader.count(&aborted).unwrap(), 1);
}

#[test]
fn ids_sharing_a_key_are_kept_apart_and_replaced_by_id_and_bad_ids_are_counted() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), &options());
    let first = full_record(1_763_700_000_000);
    // Same first 64 bits (millisecond and counter), another random half: e.g. a second
    // process writing the same file, or the counter wrapping within one millisecond.
    let mut twin = full_record(1_763_700_000_000);
    twin.id = format!("{}{}", &first.id[..16], "8000000000000001");
    assert_eq!(record_key(&twin.id), record_key(&first.id));
    let mut third = twin.clone();
    third.id = format!("{}{}", &first.id[..16], "8000000000000002");
    let mut bad = full_record(1_763_700_000_001);
    bad.id = "not-a-record-id".into();
    for r in [&first, &twin, &third] {
        assert!(store.sink().record(r));
    }
    assert!(!store.sink().record(&bad), "refused, not queued");
    store.sink().flush().unwrap();
    let reader = store.reader();
    for r in [&first, &twin, &third] {
        assert_eq!(reader.get(&r.id).unwrap().as_ref(), Some(r));
    }
    assert_eq!(reader.count(&ReplayFilter::default()).unwrap(), 3);
    let stats = store.sink().stats();
    assert_eq!((stats.written, stats.failed), (3, 1));
    // Recording the twin's id again replaces it, and only it.
    twin.lifecycle = Lifecycle::Aborted;
    store.sink().record(twin.clone());
    store.sink().flush().unwrap();
    assert_eq!(reader.get(&twin.id).unwrap().as_ref(), Some(&twin));
    assert_eq!(reader.count(&ReplayFilter::default()).unwrap(), 3);
    // Ids break the tie between equal keys, and pages split between them neither repeat
    // nor skip one.
    let listed: Vec<String> = all_pages(&reader, &ReplayFilter::default(), 2);
    let mut want = vec![first.id.clone(), twin.id.clone(), third.id.clone()];
    want.sort_unstable_by(|a, b| b.cmp(a));
    assert_eq!(listed, want);
    store.shutdown().unwrap();
}

/// Newest first by (timestamp, id): the order pages must follow.
fn expected_order(records: &[ReplayRecord], filter: &ReplayFilter) -> Vec<String> {
    let mut v: Vec<&ReplayRecord> = records
        .iter()
        .filter(|r| {
            filter
                .decision
                .as_ref()
                .is_none_or(|d| r.decision.as_ref() == Some(d))
                && filter
                    .model
                    .as_ref()
                    .is_none_or(|m| r.final_model.as_ref() == Some(m))
                && filter
                    .session
                    .as_ref()
                    .is_none_or(|s| r.session_hash.as_ref() == Some(s))
                && filter.status.is_none_or(|s| r.status == Some(s))
                && filter.lifecycle.is_none_or(|l| r.lifecycle == l)
                && filter.since_ms.is_none_or(|t| r.timestamp_ms >= t)
                && filter.until_ms.is_none_or(|t| r.timestamp_ms < t)
        })
        .collect();
    v.sort_by(|a, b| (b.timestamp_ms, &b.id).cmp(&(a.timestamp_ms, &a.id)));
    v.into_iter().map(|r| r.id.clone()).collect()
}

fn all_pages(reader: &ReplayReader, filter: &ReplayFilter, limit: usize) -> Vec<String> {
    let mut ids = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let page = reader.list(filter, cursor.as_deref(), limit).unwrap();
        assert!(page.records.len() <= limit);
        ids.extend(page.records.into_iter().map(|r| r.id));
        match page.next_cursor {
            Some(c) => cursor = Some(c),
            None => return ids,
        }
    }
}

#[test]
fn list_filters_and_paginates_without_duplicates_or_gaps() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), &options());
    let mut rng = fastrand::Rng::with_seed(7);
    // Many records share a timestamp, so the id tiebreak matters.
    let records: Vec<ReplayRecord> = (0..157)
        .map(|i| random_record(&mut rng, 1_000 + i / 4))
        .collect();
    for r in &records {
        assert!(store.sink().record(r.clone()));
    }
    store.sink().flush().unwrap();
    let reader = store.reader();
    let filters = [
        ReplayFilter::default(),
        ReplayFilter {
            decision: Some("code".into()),
            ..ReplayFilter::default()
        },
        ReplayFilter {
            model: Some("large".into()),
            ..ReplayFilter::default()
        },
        ReplayFilter {
            session: Some("s3".into()),
            ..ReplayFilter::default()
        },
        ReplayFilter {
            status: Some(502),
            ..ReplayFilter::default()
        },
        ReplayFilter {
            lifecycle: Some(Lifecycle::Failed),
            ..ReplayFilter::default()
        },
        ReplayFilter {
            since_ms: Some(1_010),
            until_ms: Some(1_030),
            ..ReplayFilter::default()
        },
        ReplayFilter {
            decision: Some("math".into()),
            model: Some("small".into()),
            since_ms: Some(1_005),
            ..ReplayFilter::default()
        },
    ];
    for filter in &filters {
        let expected = expected_order(&records, filter);
        for limit in [1, 7, 50, 1000] {
            let got = all_pages(&reader, filter, limit);
            assert_eq!(got, expected, "{filter:?} limit {limit}");
        }
        assert_eq!(
            reader.count(filter).unwrap(),
            expected.len() as u64,
            "{filter:?}"
        );
    }
    assert!(
        expected_order(&records, &filters[1]).len() > 10,
        "the filters select something"
    );
    // Newer records written between pages do not shift the older pages.
    let first = reader.list(&ReplayFilter::default(), None, 20).unwrap();
    for i in 0..30 {
        store.sink().record(random_record(&mut rng, 5_000 + i));
    }
    store.sink().flush().unwrap();
    let mut rest = Vec::new();
    let mut cursor = first.next_cursor.clone();
    while let Some(c) = cursor {
        let page = reader.list(&ReplayFilter::default(), Some(&c), 20).unwrap();
        rest.extend(page.records.into_iter().map(|r| r.id));
        cursor = page.next_cursor;
    }
    let mut ids: Vec<String> = first.records.into_iter().map(|r| r.id).collect();
    ids.extend(rest);
    assert_eq!(ids, expected_order(&records, &ReplayFilter::default()));
    assert!(matches!(
        reader.list(&ReplayFilter::default(), Some("not-a-cursor"), 5),
        Err(StoreError::InvalidCursor(_))
    ));
}

#[test]
fn retention_keeps_the_newest_max_records() {
    let dir = tempfile::tempdir().unwrap();
    let opts = StoreOptions {
        max_records: Some(10),
        batch_max_rows: 3,
        ..options()
    };
    let store = open(dir.path(), &opts);
    let mut rng = fastrand::Rng::with_seed(1);
    let records: Vec<ReplayRecord> = (0..25)
        .map(|i| random_record(&mut rng, 1_000 + i))
        .collect();
    for r in &records {
        store.sink().record(r.clone());
    }
    store.sink().flush().unwrap();
    let kept = all_pages(&store.reader(), &ReplayFilter::default(), 100);
    let newest: Vec<String> = expected_order(&records, &ReplayFilter::default())
        .into_iter()
        .take(10)
        .collect();
    assert_eq!(kept, newest);
    assert_eq!(store.sink().stats().deleted, 15);
    // Reopening counts what is there: the limit still holds on the next write.
    store.shutdown().unwrap();
    drop(store);
    let store = open(dir.path(), &opts);
    store.sink().record(random_record(&mut rng, 2_000));
    store.sink().flush().unwrap();
    assert_eq!(store.reader().count(&ReplayFilter::default()).unwrap(), 10);
}

#[test]
fn a_lower_limit_on_reopening_trims_the_oldest_records() {
    let dir = tempfile::tempdir().unwrap();
    let unlimited = StoreOptions {
        max_records: None,
        ..options()
    };
    let store = open(dir.path(), &unlimited);
    let mut rng = fastrand::Rng::with_seed(3);
    let records: Vec<ReplayRecord> = (0..30)
        .map(|i| random_record(&mut rng, 5_000 + i))
        .collect();
    for r in &records {
        store.sink().record(r.clone());
    }
    store.shutdown().unwrap();
    drop(store);
    let limited = StoreOptions {
        max_records: Some(7),
        ..options()
    };
    let store = open(dir.path(), &limited);
    let newer = random_record(&mut rng, 9_000);
    store.sink().record(newer.clone());
    store.sink().flush().unwrap();
    let mut all = records.clone();
    all.push(newer);
    let newest: Vec<String> = expected_order(&all, &ReplayFilter::default())
        .into_iter()
        .take(7)
        .collect();
    assert_eq!(
        all_pages(&store.reader(), &ReplayFilter::default(), 100),
        newest
    );
    assert_eq!(store.sink().stats().deleted, 24);
}

#[test]
fn replaced_records_leave_their_newest_copy_within_max_records() {
    let dir = tempfile::tempdir().unwrap();
    let opts = StoreOptions {
        max_records: Some(5),
        ..options()
    };
    let store = open(dir.path(), &opts);
    let records: Vec<ReplayRecord> = (0..5).map(full_record).collect();
    for round in 0..3 {
        for r in &records {
            let mut r = r.clone();
            r.status = Some(200 + round);
            store.sink().record(r);
        }
        store.sink().flush().unwrap();
    }
    let page = store
        .reader()
        .list(&ReplayFilter::default(), None, 10)
        .unwrap();
    assert_eq!(page.records.len(), 5);
    assert!(page.records.iter().all(|r| r.status == Some(202)));
    assert_eq!(store.reader().count(&ReplayFilter::default()).unwrap(), 5);
    // Older copies count until retention deletes them, oldest first: here the two rounds
    // the last one replaced.
    assert_eq!(store.sink().stats().deleted, 10);
}

#[test]
fn retention_deletes_records_older_than_the_ttl() {
    let dir = tempfile::tempdir().unwrap();
    let opts = StoreOptions {
        ttl: Some(Duration::from_secs(3600)),
        ..options()
    };
    let store = open(dir.path(), &opts);
    let now = now_ms();
    let mut rng = fastrand::Rng::with_seed(2);
    let old: Vec<ReplayRecord> = (0..5)
        .map(|i| random_record(&mut rng, now - 7_200_000 + i))
        .collect();
    let fresh: Vec<ReplayRecord> = (0..5)
        .map(|i| random_record(&mut rng, now - 1_000 + i))
        .collect();
    for r in old.iter().chain(&fresh) {
        store.sink().record(r.clone());
    }
    store.sink().flush().unwrap();
    let kept: HashSet<String> = all_pages(&store.reader(), &ReplayFilter::default(), 100)
        .into_iter()
        .collect();
    assert_eq!(kept, fresh.iter().map(|r| r.id.clone()).collect());
}

#[test]
fn the_ttl_sweep_also_runs_while_idle() {
    let dir = tempfile::tempdir().unwrap();
    let opts = StoreOptions {
        ttl: Some(Duration::from_millis(300)),
        retention_interval: Duration::from_millis(20),
        ..options()
    };
    let store = open(dir.path(), &opts);
    store.sink().record(full_record(now_ms()));
    store.sink().flush().unwrap();
    assert_eq!(store.reader().count(&ReplayFilter::default()).unwrap(), 1);
    let start = Instant::now();
    while store.reader().count(&ReplayFilter::default()).unwrap() > 0 {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "the idle sweep never ran"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(store.sink().stats().deleted, 1);
}

#[test]
fn a_full_queue_drops_and_counts_instead_of_blocking() {
    let dir = tempfile::tempdir().unwrap();
    let opts = StoreOptions {
        queue_capacity: 4,
        batch_max_rows: 1,
        flush_interval: Duration::ZERO,
        ..options()
    };
    let store = open(dir.path(), &opts);
    let sink = store.sink();
    // Another connection holds the write lock: the writer stalls on its first insert.
    let blocker = rusqlite::Connection::open(store.path()).unwrap();
    blocker.execute_batch("BEGIN IMMEDIATE").unwrap();
    assert!(sink.record(full_record(1)));
    let start = Instant::now();
    while sink.queued() > 0 && start.elapsed() < Duration::from_millis(200) {
        // Wait until the writer has taken it off the queue (it stays "queued" until
        // committed, so this just gives the writer time to block).
        std::thread::sleep(Duration::from_millis(10));
    }
    let mut accepted = 1;
    let started = Instant::now();
    for i in 0..100 {
        if sink.record(full_record(2 + i)) {
            accepted += 1;
        }
    }
    // Never blocks: 100 refused sends take microseconds, not the 5 s busy timeout.
    assert!(started.elapsed() < Duration::from_secs(1));
    assert!(
        accepted <= 1 + opts.queue_capacity as u64,
        "accepted {accepted}"
    );
    assert_eq!(sink.dropped(), 101 - accepted);
    assert!(sink.dropped() >= 95);
    blocker.execute_batch("COMMIT").unwrap();
    sink.flush().unwrap();
    let stats = sink.stats();
    assert_eq!(
        (stats.accepted, stats.written, stats.failed),
        (accepted, accepted, 0)
    );
    assert_eq!(sink.queued(), 0);
    assert_eq!(
        store.reader().count(&ReplayFilter::default()).unwrap(),
        accepted
    );
}

#[test]
fn shutdown_commits_the_queue_and_later_records_are_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let opts = StoreOptions {
        flush_interval: Duration::from_secs(60),
        batch_max_rows: 10_000,
        ..options()
    };
    let store = open(dir.path(), &opts);
    let sink = store.sink();
    for i in 0..500 {
        assert!(sink.record(full_record(i)));
    }
    // The batch would wait a minute; shutdown commits it now.
    let started = Instant::now();
    store.shutdown().unwrap();
    assert!(started.elapsed() < Duration::from_secs(10));
    assert_eq!(store.reader().count(&ReplayFilter::default()).unwrap(), 500);
    assert!(sink.is_closed());
    assert!(!sink.record(full_record(1)));
    assert_eq!(sink.dropped(), 1);
    assert!(matches!(sink.flush(), Err(StoreError::WriterStopped)));
    store.shutdown().unwrap();
}

#[test]
fn a_newer_database_is_refused_at_open() {
    let dir = tempfile::tempdir().unwrap();
    let conn = rusqlite::Connection::open(dir.path().join(DB_FILE_NAME)).unwrap();
    conn.execute_batch("PRAGMA user_version = 999").unwrap();
    drop(conn);
    let err = Store::open(dir.path(), &options()).unwrap_err();
    assert!(
        matches!(err, StoreError::SchemaTooNew { found: 999, .. }),
        "{err}"
    );
}

#[test]
fn queries_find_segments_by_key_range_through_one_index() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), &options());
    let conn = rusqlite::Connection::open(store.path()).unwrap();
    let plan = |sql: &str| -> String {
        let mut stmt = conn.prepare(&format!("EXPLAIN QUERY PLAN {sql}")).unwrap();
        let rows = stmt.query_map([], |r| r.get::<_, String>(3)).unwrap();
        rows.map(Result::unwrap).collect::<Vec<_>>().join("; ")
    };
    let p = plan("SELECT seg, data FROM replay_segments WHERE last_key >= 5 AND first_key <= 9");
    assert!(p.contains("USING INDEX replay_segments_by_last_key"), "{p}");
    let p = plan("SELECT seg, records FROM replay_segments ORDER BY seg LIMIT 64");
    assert!(
        p.contains("SCAN replay_segments") && !p.contains("TEMP B-TREE"),
        "{p}"
    );
    let indexes: Vec<String> = conn
        .prepare(
            "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'replay_segments'",
        )
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(
        indexes,
        ["replay_segments_by_last_key"],
        "one index entry per segment"
    );
    store.shutdown().unwrap();
}
