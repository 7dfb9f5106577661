//! The write side: one OS thread owning the write connection, fed through the intake.
//!
//! Owns everything that modifies rows: batched inserts and retention. The request path only
//! ever calls [`ReplaySink::record`], which frames the record into the calling thread's
//! intake shard (`intake`) and never blocks on the writer: when `queue_capacity` records
//! are already waiting, the record is dropped and counted ([`ReplaySink::dropped`], exported
//! by the gateway as `replay_dropped_total`). The writer thread parks until a record
//! arrives, then polls the shards (so producers never pay for waking it while a batch is
//! open) until it has `batch_max_rows` records or `flush_interval` has passed, and commits
//! the batch as one compressed segment (`segment`) in one transaction; a crash loses at most
//! the batch being collected.
//! The same transaction deletes as many of the oldest records as the batch added beyond
//! `max_records`; an older excess (a lower limit than the file was written with) is trimmed
//! after the batch. Every `retention_interval` it deletes records older than `ttl`
//! (`segments`).
//!
//! This module must not be reached from an async task for anything but `record`, `dropped`,
//! `queued` and `stats`: `flush` and `shutdown` block (use `spawn_blocking`).

use std::borrow::Borrow;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TryRecvError};
use std::sync::{Arc, OnceLock};
use std::thread::{JoinHandle, Thread};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use rusqlite::Connection;

use crate::error::{Result, StoreError};
use crate::intake::{Intake, Shard};
use crate::rows::{first_key_of_ms, now_ms, record_key, ReplayRecord};
use crate::segments::{count_live, delete_before, delete_oldest, read_head, Batch, Head};
use crate::sessions::SessionSnapshot;

/// Most records one retention step deletes before the writer goes back to inserting.
pub const RETENTION_CHUNK: u64 = 10_000;

/// Control messages waiting for the writer (flush, shutdown, session snapshots).
const CONTROL_CAPACITY: usize = 64;

/// How long the writer sleeps between looks at the intake while a batch is open. At 8 192
/// queue slots, only a burst of over 800 000 records/s could fill the queue in one tick; a
/// shorter tick costs wake-ups (at 2 ms they were ~8% of the writer's CPU under load).
const POLL_TICK: Duration = Duration::from_millis(10);

/// How the writer batches and what it keeps.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// Records that may wait for the writer; beyond that `record` drops and counts.
    pub queue_capacity: usize,
    /// Most records in one segment (a batch larger than this is stored as several).
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
            // Large enough that the per-transaction cost (SQLite rewrites a few whole 16 KiB
            // pages per commit) is amortised: 1024 costs the writer 1.1–1.35 µs per record,
            // 256 cost 1.95–2.05 (scripts/bench/results/replay-2026-11-21.md); small enough to
            // commit in a few ms.
            batch_max_rows: 1024,
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
    /// Records lost: their batch failed to commit (logged once per batch), or their id is
    /// not a record id.
    pub failed: u64,
    /// Transactions committed.
    pub batches: u64,
    /// Records deleted by retention.
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

impl Counters {
    /// Accepted records not yet committed or lost.
    fn queued(&self) -> u64 {
        let done = self.written.load(Ordering::SeqCst) + self.failed.load(Ordering::SeqCst);
        self.accepted.load(Ordering::SeqCst).saturating_sub(done)
    }
}

enum Msg {
    Sessions(SessionSnapshot),
    Flush(SyncSender<Result<()>>),
    Shutdown(SyncSender<Result<()>>),
}

/// What the sink and the writer thread share.
#[derive(Debug)]
struct Shared {
    intake: Intake,
    counters: Counters,
    /// The writer is parked (or about to park) waiting for records.
    idle: AtomicBool,
    /// Every sink handle is gone: commit what is left and stop.
    detached: AtomicBool,
    /// The writer thread, to unpark it; set as soon as it is spawned.
    thread: OnceLock<Thread>,
}

impl Shared {
    fn wake(&self) {
        if let Some(t) = self.thread.get() {
            t.unpark();
        }
    }
}

#[derive(Debug)]
struct SinkInner {
    shared: Arc<Shared>,
    tx: SyncSender<Msg>,
    closed: AtomicBool,
    capacity: usize,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl Drop for SinkInner {
    fn drop(&mut self) {
        self.shared.detached.store(true, Ordering::SeqCst);
        self.shared.wake();
    }
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
        let (tx, rx) = mpsc::sync_channel(CONTROL_CAPACITY);
        let shared = Arc::new(Shared {
            intake: Intake::default(),
            counters: Counters::default(),
            idle: AtomicBool::new(false),
            detached: AtomicBool::new(false),
            thread: OnceLock::new(),
        });
        let head = read_head(&conn)?;
        let rows = count_live(&conn, head)?;
        let writer = Writer {
            conn,
            rx,
            shared: Arc::clone(&shared),
            batch: Vec::new(),
            batch_len: 0,
            spares: Vec::new(),
            raw: Vec::new(),
            batch_max_rows: options.batch_max_rows.max(1),
            flush_interval: options.flush_interval,
            max_records: options.max_records,
            ttl_ms: options
                .ttl
                .map(|t| i64::try_from(t.as_millis()).unwrap_or(i64::MAX)),
            retention_interval: options.retention_interval.max(Duration::from_millis(1)),
            rows,
            head,
            last_sweep: None,
        };
        let handle = std::thread::Builder::new()
            .name("vsr-replay-writer".into())
            .spawn(move || writer.run())
            .map_err(StoreError::Spawn)?;
        // Before any handle exists: every later wake-up finds the thread (an unpark before
        // the writer parks makes its park return at once).
        let _ = shared.thread.set(handle.thread().clone());
        Ok(Self {
            inner: Arc::new(SinkInner {
                shared,
                tx,
                closed: AtomicBool::new(false),
                capacity,
                thread: Mutex::new(Some(handle)),
            }),
        })
    }

    /// Stores `record` (a record, a reference, a `Box` or an `Arc` of one) without blocking:
    /// it is packed on the calling thread into that thread's intake shard. Returns
    /// `false` if it was dropped (queue full, writer stopped, or an id that is not a record
    /// id); a full queue or a stopped writer counts in [`ReplaySink::dropped`], a bad id in
    /// `failed`. Recording an id that is already stored replaces the stored record.
    pub fn record(&self, record: impl Borrow<ReplayRecord>) -> bool {
        let record = record.borrow();
        let shared = &self.inner.shared;
        let c = &shared.counters;
        if self.inner.closed.load(Ordering::Acquire) {
            c.dropped.fetch_add(1, Ordering::Relaxed);
            return false;
        }
        // Counted before it is pushed, so the writer never sees a record it has not counted
        // and `queued` never sees a write before its acceptance.
        let before = c.accepted.fetch_add(1, Ordering::SeqCst);
        let done = c.written.load(Ordering::Relaxed) + c.failed.load(Ordering::Relaxed);
        if before.saturating_sub(done) >= self.inner.capacity as u64 {
            c.accepted.fetch_sub(1, Ordering::SeqCst);
            c.dropped.fetch_add(1, Ordering::Relaxed);
            return false;
        }
        let pushed = match record_key(&record.id) {
            None => {
                tracing::warn!(id = %record.id, "replay record lost: its id is not 32 hex digits");
                false
            }
            Some(key) if record.has_non_finite() => {
                let mut clean = record.clone();
                clean.sanitize();
                push(shared, key, &clean)
            }
            Some(key) => push(shared, key, record),
        };
        if !pushed {
            c.failed.fetch_add(1, Ordering::SeqCst);
            return false;
        }
        if shared.idle.load(Ordering::SeqCst) && shared.idle.swap(false, Ordering::SeqCst) {
            shared.wake();
        }
        true
    }

    /// Sends a control message and wakes the writer.
    fn control(&self, msg: Msg) -> bool {
        let sent = self.inner.tx.send(msg).is_ok();
        self.inner.shared.wake();
        sent
    }

    /// Queues a Router Learning session snapshot. Unlike a record it waits for queue space
    /// (snapshots are rare and small in count, and losing one would lose sessions), so call
    /// it off the request path. Returns `false` once the writer has stopped.
    pub fn snapshot_sessions(&self, snapshot: SessionSnapshot) -> bool {
        !self.inner.closed.load(Ordering::Acquire) && self.control(Msg::Sessions(snapshot))
    }

    /// Records dropped so far (`replay_dropped_total`).
    #[must_use]
    pub fn dropped(&self) -> u64 {
        self.inner.shared.counters.dropped.load(Ordering::Relaxed)
    }

    /// Records accepted but not yet committed (or failed).
    #[must_use]
    pub fn queued(&self) -> u64 {
        self.inner.shared.counters.queued()
    }

    /// The queue's capacity.
    #[must_use]
    pub fn capacity(&self) -> usize {
        self.inner.capacity
    }

    /// All counters.
    #[must_use]
    pub fn stats(&self) -> SinkStats {
        let c = &self.inner.shared.counters;
        SinkStats {
            accepted: c.accepted.load(Ordering::Relaxed),
            dropped: c.dropped.load(Ordering::Relaxed),
            written: c.written.load(Ordering::Relaxed),
            failed: c.failed.load(Ordering::Relaxed),
            batches: c.batches.load(Ordering::Relaxed),
            deleted: c.deleted.load(Ordering::Relaxed),
        }
    }

    /// Blocks until every record recorded before this call is committed and retention has
    /// run. Async callers use `spawn_blocking`.
    ///
    /// # Errors
    /// [`StoreError::WriterStopped`] after shutdown; the SQLite error if the final commit
    /// or the retention step failed.
    pub fn flush(&self) -> Result<()> {
        let (reply, answer) = mpsc::sync_channel(1);
        if !self.control(Msg::Flush(reply)) {
            return Err(StoreError::WriterStopped);
        }
        answer.recv().map_err(|_| StoreError::WriterStopped)?
    }

    /// Stops accepting records, commits everything already recorded, and joins the writer
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
        let result = if self.control(Msg::Shutdown(reply)) {
            answer.recv().unwrap_or(Err(StoreError::WriterStopped))
        } else {
            Err(StoreError::WriterStopped)
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

/// Frames `record` into this thread's shard; `false` (logged) if it cannot be serialised.
fn push(shared: &Shared, key: i64, record: &ReplayRecord) -> bool {
    match shared.intake.push(key, record) {
        Ok(()) => true,
        Err(e) => {
            tracing::warn!(id = %record.id, error = %e, "replay record lost: it cannot be serialised");
            false
        }
    }
}

/// How long a shutdown waits for records that were being recorded as it began.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(1);

struct Writer {
    conn: Connection,
    rx: Receiver<Msg>,
    shared: Arc<Shared>,
    /// Shards taken from the intake for the open batch.
    batch: Vec<Shard>,
    /// Records in `batch`.
    batch_len: u64,
    /// Emptied shard buffers, handed back to the intake.
    spares: Vec<Shard>,
    /// Scratch for a segment's uncompressed frames.
    raw: Vec<u8>,
    batch_max_rows: usize,
    flush_interval: Duration,
    max_records: Option<u64>,
    ttl_ms: Option<i64>,
    retention_interval: Duration,
    /// Live records: counted at open and at every TTL sweep (in case another process
    /// writes the same file), kept exact in between.
    rows: u64,
    /// What retention has skipped of the oldest segment.
    head: Head,
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
            if self.waiting() == 0 {
                self.park();
            }
            // A record opens a batch that collects for up to `flush_interval`.
            let control = match self.next_control() {
                Some(c) => Some(c),
                None if self.waiting() > 0 => self.collect(),
                None => None,
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
                Some(Control::Disconnected) => {
                    let _ = self.drain();
                    return;
                }
            }
        }
    }

    /// Records recorded but not yet taken into the batch.
    fn waiting(&self) -> u64 {
        self.shared.counters.queued().saturating_sub(self.batch_len)
    }

    /// Parks until a record or a control message arrives, or the TTL sweep is due.
    fn park(&self) {
        self.shared.idle.store(true, Ordering::SeqCst);
        // A record counted before `idle` was set is seen here; one counted after finds
        // `idle` set and unparks us (an unpark before the park makes it return at once).
        if self.waiting() == 0 && !self.shared.detached.load(Ordering::SeqCst) {
            std::thread::park_timeout(self.retention_interval);
        }
        self.shared.idle.store(false, Ordering::SeqCst);
    }

    /// Handles queued session snapshots; returns the first flush, shutdown or disconnect.
    fn next_control(&mut self) -> Option<Control> {
        loop {
            match self.rx.try_recv() {
                Ok(Msg::Sessions(s)) => self.sessions(&s),
                Ok(Msg::Flush(reply)) => return Some(Control::Flush(reply)),
                Ok(Msg::Shutdown(reply)) => return Some(Control::Shutdown(reply)),
                Err(TryRecvError::Empty) => {
                    return self
                        .shared
                        .detached
                        .load(Ordering::SeqCst)
                        .then_some(Control::Disconnected)
                }
                Err(TryRecvError::Disconnected) => return Some(Control::Disconnected),
            }
        }
    }

    /// Takes everything waiting in the intake into the batch.
    fn take(&mut self) {
        let n = self.shared.intake.take(&mut self.batch, &mut self.spares);
        self.batch_len += n as u64;
    }

    /// Gathers records until the batch is full, `flush_interval` passes, or a control
    /// message arrives.
    ///
    /// Polls (take what is waiting, then sleep up to [`POLL_TICK`]) instead of being woken
    /// per record: a wake-up per record costs the request path a system call and the writer
    /// a context switch, more than storing the record.
    fn collect(&mut self) -> Option<Control> {
        let deadline = Instant::now() + self.flush_interval;
        loop {
            self.take();
            if let Some(control) = self.next_control() {
                return Some(control);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if self.batch_len >= self.batch_max_rows as u64 || left.is_zero() {
                return None;
            }
            std::thread::sleep(left.min(POLL_TICK));
        }
    }

    /// At shutdown: commits records that were being recorded as it began.
    fn drain(&mut self) -> Result<()> {
        let start = Instant::now();
        let mut result = Ok(());
        loop {
            while let Ok(msg) = self.rx.try_recv() {
                match msg {
                    Msg::Sessions(s) => self.sessions(&s),
                    Msg::Flush(reply) | Msg::Shutdown(reply) => {
                        let _ = reply.send(Err(StoreError::WriterStopped));
                    }
                }
            }
            result = result.and(self.commit());
            if self.waiting() == 0 || start.elapsed() > SHUTDOWN_GRACE {
                return result;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// Writes a session snapshot in its own transaction; a failure is logged (the next
    /// snapshot carries the same keys again only if they change, so say how many were lost).
    fn sessions(&mut self, snapshot: &SessionSnapshot) {
        if let Err(e) = crate::sessions::write(&mut self.conn, snapshot) {
            tracing::warn!(error = %e, sessions = snapshot.rows.len(), "session snapshot lost");
        }
    }

    /// Takes what is waiting and commits the batch: its segments and, beyond
    /// `max_records`, the trim of as many old records, in one transaction (every touched page
    /// is written to the WAL once). On failure the batch is dropped and counted in `failed`;
    /// the error is logged here, once, and returned for `flush`.
    fn commit(&mut self) -> Result<()> {
        self.take();
        if self.batch_len == 0 {
            return Ok(());
        }
        let n = self.batch_len;
        let result = self.insert_batch();
        for mut shard in self.batch.drain(..) {
            // Keep buffers for reuse, unless a burst grew one far past the usual.
            if shard.frames.capacity() <= 8 << 20 {
                shard.clear();
                self.spares.push(shard);
            }
        }
        self.batch_len = 0;
        let c = &self.shared.counters;
        match result {
            Ok((inserted, trimmed, head)) => {
                self.head = head;
                c.written.fetch_add(n, Ordering::SeqCst);
                c.batches.fetch_add(1, Ordering::Relaxed);
                self.rows = self.rows.saturating_add(inserted);
                self.deleted(trimmed);
                Ok(())
            }
            Err(e) => {
                c.failed.fetch_add(n, Ordering::SeqCst);
                tracing::warn!(error = %e, records = n, "replay batch lost");
                Err(e)
            }
        }
    }

    /// Inserts the batch; returns the records added (one per distinct id), those trimmed
    /// and the new head.
    fn insert_batch(&mut self) -> Result<(u64, u64, Head)> {
        let tx = self.conn.transaction()?;
        let batch = Batch::new(&self.batch);
        let inserted = batch.len() as u64;
        batch.insert(&tx, self.batch_max_rows, &mut self.raw)?;
        let room = self.max_records.map(|max| max.saturating_sub(self.rows));
        let excess = room.map_or(0, |r| inserted.saturating_sub(r));
        let (trimmed, head) = if excess > 0 {
            delete_oldest(&tx, self.head, excess)?
        } else {
            (0, self.head)
        };
        tx.commit()?;
        Ok((inserted, trimmed, head))
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
            let (n, head) = delete_oldest(&self.conn, self.head, excess.min(RETENTION_CHUNK))?;
            self.head = head;
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
        let cutoff = first_key_of_ms(now_ms().saturating_sub(ttl_ms));
        let tx = self.conn.transaction()?;
        let (n, head) = delete_before(&tx, self.head, cutoff)?;
        let rows = count_live(&tx, head)?;
        tx.commit()?;
        self.head = head;
        self.rows = rows;
        self.shared.counters.deleted.fetch_add(n, Ordering::Relaxed);
        self.last_sweep = Some(Instant::now());
        Ok(())
    }

    fn deleted(&mut self, n: u64) {
        self.rows = self.rows.saturating_sub(n);
        self.shared.counters.deleted.fetch_add(n, Ordering::Relaxed);
    }
}
