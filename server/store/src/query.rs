//! The read side: a small pool of read-only connections and the replay queries.
//!
//! Owns every `SELECT`. All methods block on SQLite; async callers run them in
//! `tokio::task::spawn_blocking` (SQLite never runs on a tokio worker). Reads see the last
//! committed batch (WAL readers never block the writer, nor the writer them).
//! Lists are newest first in id order (the table's key, see `rows::record_key`: the time in
//! the id, then its counter) with keyset pagination: a cursor names the last record of a
//! page, so pages never repeat or skip a record even while the writer inserts or retention
//! deletes. Time filters are key ranges.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;
use rusqlite::types::Value;
use rusqlite::{params, params_from_iter, Connection};

use crate::error::{Result, StoreError};
use crate::insights::{Insights, InsightsBuilder, InsightsRow};
use crate::migrate::open_reader;
use crate::rows::{
    first_key_of_ms, keys_of_same_ms, record_key, Columns, Lifecycle, ReplayRecord, Usage,
};
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
    /// Records at or after this time (ms since the epoch, the time in the record's id).
    pub since_ms: Option<i64>,
    /// Records strictly before this time (ms since the epoch, the time in the record's id).
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
            terms.push("seq >= ?");
            args.push(Value::Integer(first_key_of_ms(t)));
        }
        if let Some(t) = self.until_ms {
            terms.push("seq < ?");
            args.push(Value::Integer(first_key_of_ms(t)));
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

/// The column list [`read_row`] expects, in order: the key, the [`Columns`], `record`.
const RECORD_COLUMNS: &str = "seq, id, decision, final_model, session_hash, status, \
    prompt_tokens, cached_prompt_tokens, completion_tokens, cache_hit, record";

/// Reads a row selected with [`RECORD_COLUMNS`]: its key and the decoded record.
fn read_row(row: &rusqlite::Row<'_>) -> Result<(i64, ReplayRecord)> {
    let key: i64 = row.get(0)?;
    let tokens: [Option<i64>; 3] = [row.get(6)?, row.get(7)?, row.get(8)?];
    let columns = Columns {
        id: row.get(1)?,
        decision: row.get(2)?,
        final_model: row.get(3)?,
        session_hash: row.get(4)?,
        status: row
            .get::<_, Option<i64>>(5)?
            .and_then(|s| u16::try_from(s).ok()),
        usage: tokens[0].map(|prompt| Usage {
            prompt_tokens: nonneg(Some(prompt)),
            cached_prompt_tokens: nonneg(tokens[1]),
            completion_tokens: nonneg(tokens[2]),
        }),
        cache_hit: row.get(9)?,
    };
    let json: String = row.get(10)?;
    let mut record = decode(&columns.id, &json)?;
    columns.restore(&mut record);
    Ok((key, record))
}

/// The position after a record: its key, in decimal. Opaque to callers.
fn parse_cursor(cursor: &str) -> Result<i64> {
    cursor
        .parse::<i64>()
        .ok()
        .filter(|&key| key >= 0)
        .ok_or_else(|| StoreError::InvalidCursor(cursor.to_owned()))
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
            let found = match record_key(id) {
                // The id's millisecond: its own key, or the next free one after a clash.
                Some(key) => {
                    let (first, last) = keys_of_same_ms(key);
                    let sql = format!(
                        "SELECT {RECORD_COLUMNS} FROM replay WHERE seq BETWEEN ?2 AND ?3 AND id = ?1"
                    );
                    first_row(conn, &sql, params![id, first, last])?
                }
                // Only rows migrated from a file written before ids were keys can have such
                // an id; no index covers them.
                None => {
                    let sql = format!("SELECT {RECORD_COLUMNS} FROM replay WHERE id = ?1");
                    first_row(conn, &sql, params![id])?
                }
            };
            Ok(found.map(|(_, record)| record))
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
            "SELECT {RECORD_COLUMNS} FROM replay {}",
            filter.where_sql(&mut args)
        );
        if let Some(cursor) = cursor {
            let key = parse_cursor(cursor)?;
            sql.push_str(if args.is_empty() { " WHERE " } else { " AND " });
            sql.push_str("seq < ?");
            args.push(Value::Integer(key));
        }
        sql.push_str(" ORDER BY seq DESC LIMIT ?");
        // One more than asked tells whether another page exists.
        args.push(Value::Integer(limit as i64 + 1));
        let mut records = self.with_conn(|conn| {
            let mut stmt = conn.prepare_cached(&sql)?;
            let mut rows = stmt.query(params_from_iter(args.iter()))?;
            let mut out = Vec::with_capacity(limit + 1);
            while let Some(row) = rows.next()? {
                out.push(read_row(row)?);
            }
            Ok(out)
        })?;
        let next_cursor = if records.len() > limit {
            records.truncate(limit);
            records.last().map(|(key, _)| key.to_string())
        } else {
            None
        };
        let records = records.into_iter().map(|(_, r)| r).collect();
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

/// The first row of a query selecting [`RECORD_COLUMNS`].
fn first_row(
    conn: &Connection,
    sql: &str,
    params: impl rusqlite::Params,
) -> Result<Option<(i64, ReplayRecord)>> {
    let mut stmt = conn.prepare_cached(sql)?;
    let mut rows = stmt.query(params)?;
    rows.next()?.map(read_row).transpose()
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
    fn cursors_are_keys_and_garbage_is_rejected() {
        assert_eq!(
            parse_cursor("117661175398297600").unwrap(),
            117_661_175_398_297_600
        );
        for bad in ["", "-1", "x", "1_abc", "1.5", "99999999999999999999"] {
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
            "WHERE decision = ? AND status = ? AND seq >= ?"
        );
        assert_eq!(args.len(), 3);
        assert_eq!(ReplayFilter::default().where_sql(&mut Vec::new()), "");
    }
}
