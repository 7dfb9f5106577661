//! The read side: a small pool of read-only connections and the replay queries.
//!
//! Owns every `SELECT`. All methods block on SQLite; async callers run them in
//! `tokio::task::spawn_blocking` (SQLite never runs on a tokio worker). Reads see the last
//! committed batch (WAL readers never block the writer, nor the writer them).
//! Lists are newest first with keyset pagination on `(timestamp_ms, id)`: a cursor names the
//! last record of a page, so pages never repeat or skip a record even while the writer inserts
//! or retention deletes.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;
use rusqlite::types::Value;
use rusqlite::{params_from_iter, Connection, OptionalExtension};

use crate::error::{Result, StoreError};
use crate::insights::{Insights, InsightsBuilder, InsightsRow};
use crate::migrate::open_reader;
use crate::rows::{Lifecycle, ReplayRecord};
use crate::sessions::SessionRow;

/// Largest page [`ReplayReader::list`] returns; larger limits are clamped.
pub const MAX_PAGE: usize = 1000;

/// Which records a list, count or insights query covers; every set field must match.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReplayFilter {
    /// Winning decision name.
    pub decision: Option<String>,
    /// Final model.
    pub model: Option<String>,
    /// Session hash.
    pub session: Option<String>,
    /// HTTP status.
    pub status: Option<u16>,
    /// Lifecycle.
    pub lifecycle: Option<Lifecycle>,
    /// Records at or after this time (ms since the epoch).
    pub since_ms: Option<i64>,
    /// Records strictly before this time (ms since the epoch).
    pub until_ms: Option<i64>,
}

impl ReplayFilter {
    /// `WHERE …` (or the empty string) with its arguments appended to `args`.
    fn where_sql(&self, args: &mut Vec<Value>) -> String {
        let mut terms: Vec<&str> = Vec::new();
        let mut text = |column: &'static str, v: &Option<String>, args: &mut Vec<Value>| {
            if let Some(v) = v {
                terms.push(column);
                args.push(Value::Text(v.clone()));
            }
        };
        text("decision = ?", &self.decision, args);
        text("final_model = ?", &self.model, args);
        text("session_hash = ?", &self.session, args);
        if let Some(s) = self.status {
            terms.push("status = ?");
            args.push(Value::Integer(i64::from(s)));
        }
        if let Some(l) = self.lifecycle {
            terms.push("lifecycle = ?");
            args.push(Value::Text(l.as_str().to_owned()));
        }
        if let Some(t) = self.since_ms {
            terms.push("ts_ms >= ?");
            args.push(Value::Integer(t));
        }
        if let Some(t) = self.until_ms {
            terms.push("ts_ms < ?");
            args.push(Value::Integer(t));
        }
        if terms.is_empty() {
            String::new()
        } else {
            format!("WHERE {}", terms.join(" AND "))
        }
    }
}

/// One page of records, newest first.
#[derive(Debug, Clone, PartialEq)]
pub struct Page {
    /// The records.
    pub records: Vec<ReplayRecord>,
    /// Pass to the next `list` call for the following (older) page; `None` on the last page.
    pub next_cursor: Option<String>,
}

/// The position after a record: `"<timestamp_ms>_<id>"`. Opaque to callers.
fn cursor_of(record: &ReplayRecord) -> String {
    format!("{}_{}", record.timestamp_ms, record.id)
}

fn parse_cursor(cursor: &str) -> Result<(i64, String)> {
    let invalid = || StoreError::InvalidCursor(cursor.to_owned());
    let (ts, id) = cursor.split_once('_').ok_or_else(invalid)?;
    let ts: i64 = ts.parse().map_err(|_| invalid())?;
    if id.is_empty() {
        return Err(invalid());
    }
    Ok((ts, id.to_owned()))
}

#[derive(Debug)]
struct ReaderInner {
    path: PathBuf,
    conns: Vec<Mutex<Connection>>,
    next: AtomicUsize,
}

/// Read-only access to the replay table: cheap to clone, safe to share between threads.
#[derive(Debug, Clone)]
pub struct ReplayReader {
    inner: Arc<ReaderInner>,
}

impl ReplayReader {
    /// Opens `connections` (at least one) read-only connections to an existing database
    /// file. Usable without a writer (e.g. by a CLI inspecting a state directory), but the
    /// file must already be at this build's schema version.
    ///
    /// # Errors
    /// [`StoreError::Open`], [`StoreError::SchemaTooOld`], [`StoreError::SchemaTooNew`].
    pub fn open(path: &Path, connections: usize) -> Result<Self> {
        let conns = (0..connections.max(1))
            .map(|_| open_reader(path).map(Mutex::new))
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            inner: Arc::new(ReaderInner {
                path: path.to_owned(),
                conns,
                next: AtomicUsize::new(0),
            }),
        })
    }

    /// The database file.
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Runs `f` on a free connection (waiting for one if all are busy).
    fn with_conn<T>(&self, f: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
        let conns = &self.inner.conns;
        let start = self.inner.next.fetch_add(1, Ordering::Relaxed);
        for i in 0..conns.len() {
            if let Some(conn) = conns
                .get((start + i) % conns.len())
                .and_then(|m| m.try_lock())
            {
                return f(&conn);
            }
        }
        match conns.get(start % conns.len()) {
            Some(m) => f(&m.lock()),
            None => Err(StoreError::WriterStopped),
        }
    }

    /// Router Learning sessions active at or after `since_ms` (ms since the epoch), most
    /// recent first.
    ///
    /// # Errors
    /// SQLite errors.
    pub fn sessions(&self, since_ms: i64) -> Result<Vec<SessionRow>> {
        self.with_conn(|conn| crate::sessions::read(conn, since_ms))
    }

    /// The record with this id.
    ///
    /// # Errors
    /// SQLite errors; [`StoreError::CorruptRecord`] if its JSON does not decode.
    pub fn get(&self, id: &str) -> Result<Option<ReplayRecord>> {
        self.with_conn(|conn| {
            let json: Option<String> = conn
                .prepare_cached("SELECT record FROM replay WHERE id = ?1")?
                .query_row([id], |r| r.get(0))
                .optional()?;
            json.map(|j| decode(id, &j)).transpose()
        })
    }

    /// Up to `limit` (clamped to 1..=[`MAX_PAGE`]) records matching `filter`, newest first,
    /// starting after `cursor` (from the previous page's `next_cursor`).
    ///
    /// # Errors
    /// [`StoreError::InvalidCursor`], SQLite errors, [`StoreError::CorruptRecord`].
    pub fn list(&self, filter: &ReplayFilter, cursor: Option<&str>, limit: usize) -> Result<Page> {
        let limit = limit.clamp(1, MAX_PAGE);
        let mut args = Vec::new();
        let mut sql = format!(
            "SELECT id, record FROM replay {}",
            filter.where_sql(&mut args)
        );
        if let Some(cursor) = cursor {
            let (ts, id) = parse_cursor(cursor)?;
            sql.push_str(if args.is_empty() { " WHERE " } else { " AND " });
            sql.push_str("(ts_ms, id) < (?, ?)");
            args.push(Value::Integer(ts));
            args.push(Value::Text(id));
        }
        sql.push_str(" ORDER BY ts_ms DESC, id DESC LIMIT ?");
        // One more than asked tells whether another page exists.
        args.push(Value::Integer(limit as i64 + 1));
        let mut records = self.with_conn(|conn| {
            let mut stmt = conn.prepare_cached(&sql)?;
            let rows = stmt.query_map(params_from_iter(args.iter()), |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
            })?;
            let mut out = Vec::with_capacity(limit + 1);
            for row in rows {
                let (id, json) = row?;
                out.push(decode(&id, &json)?);
            }
            Ok(out)
        })?;
        let next_cursor = if records.len() > limit {
            records.truncate(limit);
            records.last().map(cursor_of)
        } else {
            None
        };
        Ok(Page {
            records,
            next_cursor,
        })
    }

    /// How many records match `filter`.
    ///
    /// # Errors
    /// SQLite errors.
    pub fn count(&self, filter: &ReplayFilter) -> Result<u64> {
        let mut args = Vec::new();
        let sql = format!(
            "SELECT count(*) FROM replay {}",
            filter.where_sql(&mut args)
        );
        self.with_conn(|conn| {
            let n: i64 = conn
                .prepare_cached(&sql)?
                .query_row(params_from_iter(args.iter()), |r| r.get(0))?;
            Ok(u64::try_from(n).unwrap_or(0))
        })
    }

    /// Cost, savings, token and latency aggregates over the records matching `filter`
    /// (usually just a time range), overall and by decision, model, day and hour (UTC).
    ///
    /// # Errors
    /// SQLite errors.
    pub fn insights(&self, filter: &ReplayFilter) -> Result<Insights> {
        let mut args = Vec::new();
        let sql = format!(
            "SELECT ts_ms, decision, final_model, status, lifecycle, prompt_tokens,
                    cached_prompt_tokens, completion_tokens, actual_cost, baseline_cost,
                    currency, total_ms, cache_hit
             FROM replay {}",
            filter.where_sql(&mut args)
        );
        self.with_conn(|conn| {
            let mut stmt = conn.prepare_cached(&sql)?;
            let mut rows = stmt.query(params_from_iter(args.iter()))?;
            let mut builder = InsightsBuilder::new(filter.since_ms, filter.until_ms);
            while let Some(r) = rows.next()? {
                let lifecycle: String = r.get(4)?;
                builder.add(&InsightsRow {
                    timestamp_ms: r.get(0)?,
                    decision: r.get(1)?,
                    model: r.get(2)?,
                    status: r.get(3)?,
                    lifecycle: Lifecycle::from_name(&lifecycle),
                    prompt_tokens: nonneg(r.get(5)?),
                    cached_prompt_tokens: nonneg(r.get(6)?),
                    completion_tokens: nonneg(r.get(7)?),
                    actual_cost: r.get(8)?,
                    baseline_cost: r.get(9)?,
                    currency: r.get(10)?,
                    total_ms: r.get(11)?,
                    cache_hit: r.get(12)?,
                });
            }
            Ok(builder.finish())
        })
    }
}

fn nonneg(v: Option<i64>) -> u64 {
    v.and_then(|v| u64::try_from(v).ok()).unwrap_or(0)
}

fn decode(id: &str, json: &str) -> Result<ReplayRecord> {
    serde_json::from_str(json).map_err(|source| StoreError::CorruptRecord {
        id: id.to_owned(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_garbage_is_rejected() {
        let mut r = ReplayRecord::new(1_700_000_000_123);
        r.id = "0a_b".into();
        assert_eq!(
            parse_cursor(&cursor_of(&r)).unwrap(),
            (1_700_000_000_123, "0a_b".into())
        );
        for bad in ["", "123", "x_abc", "123_", "_abc"] {
            assert!(
                matches!(parse_cursor(bad), Err(StoreError::InvalidCursor(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn filter_sql_binds_every_set_field() {
        let f = ReplayFilter {
            decision: Some("d".into()),
            status: Some(200),
            since_ms: Some(5),
            ..ReplayFilter::default()
        };
        let mut args = Vec::new();
        assert_eq!(
            f.where_sql(&mut args),
            "WHERE decision = ? AND status = ? AND ts_ms >= ?"
        );
        assert_eq!(args.len(), 3);
        assert_eq!(ReplayFilter::default().where_sql(&mut Vec::new()), "");
    }
}
