//! The write side: one OS thread owning the write connection, fed by a bounded queue.
//!
//! Owns everything that modifies rows: batched inserts and retention. The request path only
//! ever calls [`ReplaySink::record`], a `try_send` that never blocks: when the queue is full
//! the record is dropped and counted ([`ReplaySink::dropped`], exported by the gateway as
//! `replay_dropped_total`). The writer thread blocks for the first queued record, then polls
//! the queue (so producers never pay for waking it) until it has `batch_max_rows` records or
//! `flush_interval` has passed, and inserts the batch in one transaction; a crash loses at
//! most the batch being collected.
//! The same transaction deletes as many of the oldest rows as the batch added beyond
//! `max_records` (one WAL write per touched page); an older excess (a lower limit than the
//! file was written with) is trimmed after the batch. Every `retention_interval` it deletes
//! rows older than `ttl`. Retention deletes at most
//! [`RETENTION_CHUNK`] rows per step so a large backlog never stalls inserts for long.
//!
//! This module must not be reached from an async task for anything but `record`, `dropped`,
//! `queued` and `stats`: `flush` and `shutdown` block (use `spawn_blocking`).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use rusqlite::{params, Connection};

use crate::error::{Result, StoreError};
use crate::rows::{first_key_of_ms, keys_of_same_ms, now_ms, record_key, Columns, ReplayRecord};
use crate::sessions::SessionSnapshot;

/// Most rows one retention step deletes before the writer goes back to inserting.
pub const RETENTION_CHUNK: u64 = 10_000;

/// How long the writer sleeps between looks at the queue while a batch is open. At 8 192
/// queue slots, only a burst of over 800 000 records/s could fill the queue in one tick; a
/// shorter tick costs wake-ups (at 2 ms they were ~8% of the writer's CPU under load).
const POLL_TICK: Duration = Duration::from_millis(10);

/// How the writer batches and what it keeps.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// Records that may wait for the writer; beyond that `record` drops and counts.
    pub queue_capacity: usize,
    /// Most records inserted in one transaction.
    pub batch_max_rows: usize,
    /// Longest a record waits for its batch to fill before it is committed (zero: commit
    /// whatever is queued at once).
    pub flush_interval: Duration,
    /// Keep at most this many records (oldest deleted first); `None`: no limit.
    pub max_records: Option<u64>,
    /// Delete records older than this (by `timestamp_ms`); `None`: keep forever.
    pub ttl: Option<Duration>,
    /// How often the TTL sweep runs (also when idle).
    pub retention_interval: Duration,
    /// Read-only connections of the [`crate::ReplayReader`] (at least one).
    pub read_connections: usize,
}

impl Default for StoreOptions {
    fn default() -> Self {
        Self {
            // ~4 s of a 2 000 req/s burst while the writer is stalled (checkpoint, TTL
            // sweep); a record is ~2–6 KB, so the worst case is ~50 MB of memory.
            queue_capacity: 8192,
            // Large enough that the per-transaction cost is amortised (see
            // scripts/bench/results/store-2026-11-21.md), small enough to commit in a few ms.
            batch_max_rows: 256,
            flush_interval: Duration::from_millis(100),
            // Upstream's router_replay default.
            max_records: Some(10_000),
            // Upstream's router_replay ttl_seconds default: 30 days.
            ttl: Some(Duration::from_secs(2_592_000)),
            retention_interval: Duration::from_secs(10),
            read_connections: 2,
        }
    }
}

/// Counters of the write path since the store was opened.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SinkStats {
    /// Records accepted into the queue.
    pub accepted: u64,
    /// Records refused (queue full, or the writer has stopped): `replay_dropped_total`.
    pub dropped: u64,
    /// Records committed to the database.
    pub written: u64,
    /// Records lost because their batch failed to commit (logged once per batch).
    pub failed: u64,
    /// Transactions committed.
    pub batches: u64,
    /// Rows deleted by retention.
    pub deleted: u64,
}

#[derive(Debug, Default)]
struct Counters {
    accepted: AtomicU64,
    dropped: AtomicU64,
    written: AtomicU64,
    failed: AtomicU64,
    batches: AtomicU64,
    deleted: AtomicU64,
}

enum Msg {
    Record(Box<ReplayRecord>),
    Sessions(SessionSnapshot),
    Flush(SyncSender<Result<()>>),
    Shutdown(SyncSender<Result<()>>),
}

#[derive(Debug)]
struct SinkInner {
    tx: SyncSender<Msg>,
    counters: Arc<Counters>,
    closed: AtomicBool,
    capacity: usize,
    thread: Mutex<Option<JoinHandle<()>>>,
}

/// The request path's handle to the writer: cheap to clone, `record` never blocks.
///
/// The writer thread stops on [`ReplaySink::shutdown`] (from any clone), or once every
/// clone is dropped; only `shutdown` waits for the last batch to be committed, so call it
/// before the process exits.
#[derive(Debug, Clone)]
pub struct ReplaySink {
    inner: Arc<SinkInner>,
}

impl std::fmt::Debug for Msg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Record(_) => "Record",
            Self::Sessions(_) => "Sessions",
            Self::Flush(_) => "Flush",
            Self::Shutdown(_) => "Shutdown",
        })
    }
}

impl ReplaySink {
    /// Starts the writer thread that owns `conn` (already migrated).
    pub(crate) fn spawn(conn: Connection, options: &StoreOptions) -> Result<Self> {
        let capacity = options.queue_capacity.max(1);
        let (tx, rx) = mpsc::sync_channel(capacity);
        let counters = Arc::new(Counters::default());
        let rows: i64 = conn.query_row("SELECT count(*) FROM replay", [], |r| r.get(0))?;
        let writer = Writer {
            conn,
            rx,
            counters: Arc::clone(&counters),
            batch: Vec::with_capacity(options.batch_max_rows.max(1)),
            batch_max_rows: options.batch_max_rows.max(1),
            flush_interval: options.flush_interval,
            max_records: options.max_records,
            ttl_ms: options
                .ttl
                .map(|t| i64::try_from(t.as_millis()).unwrap_or(i64::MAX)),
            retention_interval: options.retention_interval.max(Duration::from_millis(1)),
            rows: u64::try_from(rows).unwrap_or(0),
            last_sweep: None,
        };
        let handle = std::thread::Builder::new()
            .name("vsr-replay-writer".into())
            .spawn(move || writer.run())
            .map_err(StoreError::Spawn)?;
        Ok(Self {
            inner: Arc::new(SinkInner {
                tx,
                counters,
                closed: AtomicBool::new(false),
                capacity,
                thread: Mutex::new(Some(handle)),
            }),
        })
    }

    /// Queues `record` for the writer without blocking. Returns `false` if it was dropped
    /// (queue full or writer stopped); the drop is counted in [`ReplaySink::dropped`].
    /// A record built in a `Box` (it is large, and callers that keep it across awaits move
    /// it less that way) is queued as it is.
    pub fn record(&self, record: impl Into<Box<ReplayRecord>>) -> bool {
        let c = &self.inner.counters;
        if self.inner.closed.load(Ordering::Acquire) {
            c.dropped.fetch_add(1, Ordering::Relaxed);
            return false;
        }
        // Counted before sending so `queued` never sees a write before its acceptance.
        c.accepted.fetch_add(1, Ordering::Relaxed);
        match self.inner.tx.try_send(Msg::Record(record.into())) {
            Ok(()) => true,
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                c.accepted.fetch_sub(1, Ordering::Relaxed);
                c.dropped.fetch_add(1, Ordering::Relaxed);
                false
            }
        }
    }

    /// Queues a Router Learning session snapshot. Unlike a record it waits for queue space
    /// (snapshots are rare and small in count, and losing one would lose sessions), so call
    /// it off the request path. Returns `false` once the writer has stopped.
    pub fn snapshot_sessions(&self, snapshot: SessionSnapshot) -> bool {
        !self.inner.closed.load(Ordering::Acquire)
            && self.inner.tx.send(Msg::Sessions(snapshot)).is_ok()
    }

    /// Records dropped so far (`replay_dropped_total`).
    #[must_use]
    pub fn dropped(&self) -> u64 {
        self.inner.counters.dropped.load(Ordering::Relaxed)
    }

    /// Records accepted but not yet committed (or failed).
    #[must_use]
    pub fn queued(&self) -> u64 {
        let c = &self.inner.counters;
        let done = c.written.load(Ordering::Relaxed) + c.failed.load(Ordering::Relaxed);
        c.accepted.load(Ordering::Relaxed).saturating_sub(done)
    }

    /// The queue's capacity.
    #[must_use]
    pub fn capacity(&self) -> usize {
        self.inner.capacity
    }

    /// All counters.
    #[must_use]
    pub fn stats(&self) -> SinkStats {
        let c = &self.inner.counters;
        SinkStats {
            accepted: c.accepted.load(Ordering::Relaxed),
            dropped: c.dropped.load(Ordering::Relaxed),
            written: c.written.load(Ordering::Relaxed),
            failed: c.failed.load(Ordering::Relaxed),
            batches: c.batches.load(Ordering::Relaxed),
            deleted: c.deleted.load(Ordering::Relaxed),
        }
    }

    /// Blocks until every record queued before this call is committed and retention has
    /// run. Async callers use `spawn_blocking`.
    ///
    /// # Errors
    /// [`StoreError::WriterStopped`] after shutdown; the SQLite error if the final commit
    /// or the retention step failed.
    pub fn flush(&self) -> Result<()> {
        let (reply, answer) = mpsc::sync_channel(1);
        self.inner
            .tx
            .send(Msg::Flush(reply))
            .map_err(|_| StoreError::WriterStopped)?;
        answer.recv().map_err(|_| StoreError::WriterStopped)?
    }

    /// Stops accepting records, commits everything already queued, and joins the writer
    /// thread. Idempotent; blocks (async callers use `spawn_blocking`).
    ///
    /// # Errors
    /// The SQLite error of the last commit; [`StoreError::WriterStopped`] if the writer
    /// thread had died (it panicked).
    pub fn shutdown(&self) -> Result<()> {
        self.inner.closed.store(true, Ordering::Release);
        let Some(handle) = self.inner.thread.lock().take() else {
            return Ok(());
        };
        let (reply, answer) = mpsc::sync_channel(1);
        let result = match self.inner.tx.send(Msg::Shutdown(reply)) {
            Ok(()) => answer.recv().unwrap_or(Err(StoreError::WriterStopped)),
            Err(_) => Err(StoreError::WriterStopped),
        };
        if handle.join().is_err() {
            return Err(StoreError::WriterStopped);
        }
        result
    }

    /// Whether `shutdown` has been called.
    #[must_use]
    pub fn is_closed(&self) -> bool {
        self.inner.closed.load(Ordering::Acquire)
    }
}

/// A new id is inserted at its key ([`record_key`]); `changes() == 0` tells the writer the
/// key is taken, and then [`UPDATE`] replaces the record with the same id in that
/// millisecond or, if the key belongs to another id, [`INSERT_NEXT_FREE`] stores it at the
/// next free key of the millisecond. Knowing which rows are new keeps the row count exact
/// without a `count(*)` per batch.
const INSERT: &str = "INSERT INTO replay (seq, id, ts_ms, decision, final_model, session_hash,
        status, lifecycle, prompt_tokens, cached_prompt_tokens, completion_tokens, actual_cost,
        baseline_cost, currency, total_ms, cache_hit, record)
    VALUES (?17, ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16)
    ON CONFLICT (seq) DO NOTHING";

/// `?18`/`?19`: the first and last key of the id's millisecond.
const UPDATE: &str = "UPDATE replay SET ts_ms = ?2, decision = ?3, final_model = ?4,
        session_hash = ?5, status = ?6, lifecycle = ?7, prompt_tokens = ?8,
        cached_prompt_tokens = ?9, completion_tokens = ?10, actual_cost = ?11,
        baseline_cost = ?12, currency = ?13, total_ms = ?14, cache_hit = ?15, record = ?16
    WHERE seq BETWEEN ?18 AND ?19 AND id = ?1 AND ?17 IS NOT NULL";

/// After a key clash with another id: one past the largest key in use in the millisecond,
/// if that is still inside it.
const INSERT_NEXT_FREE: &str = "INSERT INTO replay (seq, id, ts_ms, decision, final_model,
        session_hash, status, lifecycle, prompt_tokens, cached_prompt_tokens, completion_tokens,
        actual_cost, baseline_cost, currency, total_ms, cache_hit, record)
    SELECT next, ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16
    FROM (SELECT max(seq) + 1 AS next FROM replay WHERE seq BETWEEN ?18 AND ?19)
    WHERE next <= ?19 AND ?17 IS NOT NULL";

struct Writer {
    conn: Connection,
    rx: Receiver<Msg>,
    counters: Arc<Counters>,
    batch: Vec<ReplayRecord>,
    batch_max_rows: usize,
    flush_interval: Duration,
    max_records: Option<u64>,
    ttl_ms: Option<i64>,
    retention_interval: Duration,
    /// Rows in the table: counted at open and at every TTL sweep (in case another process
    /// writes the same file), kept exact in between.
    rows: u64,
    /// When the TTL sweep last finished a full pass; `None`: never (sweep on first batch).
    last_sweep: Option<Instant>,
}

/// What ended a batch besides size or time.
enum Control {
    Flush(SyncSender<Result<()>>),
    Shutdown(SyncSender<Result<()>>),
    /// Every sender is gone.
    Disconnected,
}

impl Writer {
    fn run(mut self) {
        loop {
            let control = match self.rx.recv_timeout(self.retention_interval) {
                Ok(Msg::Record(r)) => {
                    self.batch.push(*r);
                    self.collect()
                }
                Ok(Msg::Sessions(s)) => {
                    self.sessions(&s);
                    None
                }
                Ok(Msg::Flush(reply)) => Some(Control::Flush(reply)),
                Ok(Msg::Shutdown(reply)) => Some(Control::Shutdown(reply)),
                Err(RecvTimeoutError::Timeout) => None,
                Err(RecvTimeoutError::Disconnected) => Some(Control::Disconnected),
            };
            let committed = self.commit();
            let retained = self.retain(matches!(control, Some(Control::Flush(_))));
            match control {
                None => {}
                Some(Control::Flush(reply)) => {
                    let _ = reply.send(committed.and(retained));
                }
                Some(Control::Shutdown(reply)) => {
                    let _ = reply.send(committed.and(self.drain()));
                    return;
                }
                Some(Control::Disconnected) => return,
            }
        }
    }

    /// Gathers records after the first until the batch is full, `flush_interval` passes, or
    /// a control message arrives.
    ///
    /// Polls (drain what is queued, then sleep up to [`POLL_TICK`]) instead of blocking on
    /// the channel: a receiver blocked in `recv` makes every `try_send` a futex wake-up and
    /// the writer a context switch per record, which costs more CPU than the insert itself.
    /// While the writer sleeps, `record` is a plain lock-free push.
    fn collect(&mut self) -> Option<Control> {
        let deadline = Instant::now() + self.flush_interval;
        loop {
            while self.batch.len() < self.batch_max_rows {
                match self.rx.try_recv() {
                    Ok(Msg::Record(r)) => self.batch.push(*r),
                    Ok(Msg::Sessions(s)) => self.sessions(&s),
                    Ok(Msg::Flush(reply)) => return Some(Control::Flush(reply)),
                    Ok(Msg::Shutdown(reply)) => return Some(Control::Shutdown(reply)),
                    Err(mpsc::TryRecvError::Empty) => break,
                    Err(mpsc::TryRecvError::Disconnected) => return Some(Control::Disconnected),
                }
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if self.batch.len() >= self.batch_max_rows || left.is_zero() {
                return None;
            }
            std::thread::sleep(left.min(POLL_TICK));
        }
    }

    /// After shutdown: commits records that raced in behind the shutdown message.
    fn drain(&mut self) -> Result<()> {
        let mut result = Ok(());
        while let Ok(msg) = self.rx.try_recv() {
            match msg {
                Msg::Record(r) => {
                    self.batch.push(*r);
                    if self.batch.len() >= self.batch_max_rows {
                        result = result.and(self.commit());
                    }
                }
                Msg::Sessions(s) => self.sessions(&s),
                Msg::Flush(reply) | Msg::Shutdown(reply) => {
                    let _ = reply.send(Err(StoreError::WriterStopped));
                }
            }
        }
        result.and(self.commit())
    }

    /// Writes a session snapshot in its own transaction; a failure is logged (the next
    /// snapshot carries the same keys again only if they change, so say how many were lost).
    fn sessions(&mut self, snapshot: &SessionSnapshot) {
        if let Err(e) = crate::sessions::write(&mut self.conn, snapshot) {
            tracing::warn!(error = %e, sessions = snapshot.rows.len(), "session snapshot lost");
        }
    }

    /// Inserts the batch in one transaction. On failure the batch is dropped and counted in
    /// `failed`; the error is logged here, once, and returned for `flush`.
    fn commit(&mut self) -> Result<()> {
        if self.batch.is_empty() {
            return Ok(());
        }
        let n = self.batch.len() as u64;
        let room = self.max_records.map(|max| max.saturating_sub(self.rows));
        let result = insert_batch(&mut self.conn, &mut self.batch, room);
        self.batch.clear();
        match result {
            Ok(done) => {
                self.counters
                    .written
                    .fetch_add(n - done.lost, Ordering::Relaxed);
                self.counters.failed.fetch_add(done.lost, Ordering::Relaxed);
                self.counters.batches.fetch_add(1, Ordering::Relaxed);
                self.rows = self.rows.saturating_add(done.inserted);
                self.deleted(done.trimmed);
                Ok(())
            }
            Err(e) => {
                self.counters.failed.fetch_add(n, Ordering::Relaxed);
                tracing::warn!(error = %e, records = n, "replay batch lost");
                Err(e)
            }
        }
    }

    /// Trims to `max_records` (cheap unless over the limit), then the TTL sweep when due or
    /// `force`d.
    fn retain(&mut self, force: bool) -> Result<()> {
        let result = self.trim_to_max().and_then(|()| self.sweep_ttl(force));
        if let Err(e) = &result {
            tracing::warn!(error = %e, "replay retention failed");
        }
        result
    }

    fn trim_to_max(&mut self) -> Result<()> {
        let Some(max) = self.max_records else {
            return Ok(());
        };
        let excess = self.rows.saturating_sub(max);
        if excess > 0 {
            let n = self
                .conn
                .prepare_cached(DELETE_OLDEST)?
                .execute(params![i64::MAX, excess.min(RETENTION_CHUNK) as i64])?
                as u64;
            self.deleted(n);
        }
        Ok(())
    }

    fn sweep_ttl(&mut self, force: bool) -> Result<()> {
        let Some(ttl_ms) = self.ttl_ms else {
            return Ok(());
        };
        let due = self
            .last_sweep
            .is_none_or(|t| t.elapsed() >= self.retention_interval);
        if !(due || force) {
            return Ok(());
        }
        let rows: i64 = self
            .conn
            .query_row("SELECT count(*) FROM replay", [], |r| r.get(0))?;
        self.rows = u64::try_from(rows).unwrap_or(0);
        let cutoff = first_key_of_ms(now_ms().saturating_sub(ttl_ms));
        let n = self
            .conn
            .prepare_cached(DELETE_OLDEST)?
            .execute(params![cutoff, RETENTION_CHUNK as i64])? as u64;
        self.deleted(n);
        // A full chunk means more may be left: stay due so the next pass continues.
        if n < RETENTION_CHUNK {
            self.last_sweep = Some(Instant::now());
        }
        Ok(())
    }

    fn deleted(&mut self, n: u64) {
        self.rows = self.rows.saturating_sub(n);
        self.counters.deleted.fetch_add(n, Ordering::Relaxed);
    }
}

/// Deletes the `?2` oldest rows with a key below `?1` (all of them when there are no more;
/// `?1` = `i64::MAX` for the oldest rows of all): every key below that of the first row
/// `?2` places into that range, one range delete walking the table (which is in time order)
/// from its front, and the subquery stops at `?1`, so a TTL sweep with nothing expired stops
/// at once. `seq IN (SELECT … LIMIT n)` collected the keys into a temporary b-tree and then
/// sought each one: a quarter of what retention cost the writer at steady-state trimming,
/// where retention was 38% of its instructions per record.
const DELETE_OLDEST: &str = "DELETE FROM replay WHERE seq < coalesce(
    (SELECT seq FROM replay WHERE seq < ?1 ORDER BY seq ASC LIMIT 1 OFFSET ?2), ?1)";

/// Inserts (or replaces) every record and, when the new rows exceed `room` (what
/// `max_records` leaves), deletes as many of the oldest, all in one transaction so every
/// touched page is written to the WAL once.
fn insert_batch(
    conn: &mut Connection,
    batch: &mut [ReplayRecord],
    room: Option<u64>,
) -> Result<BatchOutcome> {
    let tx = conn.transaction()?;
    let mut inserted: u64 = 0;
    let mut lost: u64 = 0;
    // One buffer for every record's JSON (records are ~1–3 KB).
    let mut json: Vec<u8> = Vec::with_capacity(4096);
    {
        let mut insert = tx.prepare_cached(INSERT)?;
        for record in batch.iter_mut() {
            let Some(key) = record_key(&record.id) else {
                tracing::warn!(id = %record.id, "replay record lost: its id is not 32 hex digits");
                lost += 1;
                continue;
            };
            record.sanitize();
            // What the row's columns hold stays out of the JSON (RECORD_SCHEMA_VERSION 2);
            // readers put it back (`rows::Columns`).
            let kept = Columns::take(record);
            json.clear();
            crate::record_json::write(&mut json, record).map_err(|source| {
                StoreError::CorruptRecord {
                    id: kept.id.clone(),
                    source,
                }
            })?;
            // The JSON is UTF-8 (`record_json` writes whole strings and ASCII); checking it is
            // cheaper than a fresh string per record.
            let text = std::str::from_utf8(&json).unwrap_or_default();
            let usage = kept.usage;
            let cost = record.cost.as_ref();
            let (first, last) = keys_of_same_ms(key);
            let values = params![
                kept.id,
                record.timestamp_ms,
                kept.decision,
                kept.final_model,
                kept.session_hash,
                kept.status,
                record.lifecycle.as_str(),
                usage.map(|u| u.prompt_tokens as i64),
                usage.map(|u| u.cached_prompt_tokens as i64),
                usage.map(|u| u.completion_tokens as i64),
                cost.map(|c| c.actual),
                cost.map(|c| c.baseline),
                cost.map(|c| c.currency.as_str()),
                record.timings.total_ms,
                kept.cache_hit,
                text,
                key,
                first,
                last,
            ];
            if insert.execute(&values[..17])? == 1 {
                inserted += 1;
            } else if tx.prepare_cached(UPDATE)?.execute(values)? == 0 {
                if tx.prepare_cached(INSERT_NEXT_FREE)?.execute(values)? == 1 {
                    inserted += 1;
                } else {
                    tracing::warn!(id = %kept.id, "replay record lost: its millisecond is full");
                    lost += 1;
                }
            }
        }
    }
    let excess = room.map_or(0, |r| inserted.saturating_sub(r));
    let trimmed = if excess > 0 {
        tx.prepare_cached(DELETE_OLDEST)?
            .execute(params![i64::MAX, excess as i64])? as u64
    } else {
        0
    };
    tx.commit()?;
    Ok(BatchOutcome {
        inserted,
        trimmed,
        lost,
    })
}

/// What one committed batch did.
struct BatchOutcome {
    /// Rows added (not replacing a stored id).
    inserted: u64,
    /// Oldest rows deleted to stay within `max_records`.
    trimmed: u64,
    /// Records that could not be stored (an id that is not a record id).
    lost: u64,
}
