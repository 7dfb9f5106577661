//! The read side: a small pool of read-only connections and the replay queries.
//!
//! Owns every `SELECT`. All methods block on SQLite; async callers run them in
//! `tokio::task::spawn_blocking` (SQLite never runs on a tokio worker). Reads see the last
//! committed batch (WAL readers never block the writer, nor the writer them).
//! Records live in compressed segments (`segment`); a query selects the segments whose key
//! range overlaps its time range, decompresses them and decodes only the records it needs.
//! Lists are newest first in key order (see `rows::record_key`: the time in the id, then
//! its counter; ids break ties) with keyset pagination: a cursor names the last record of a
//! page, so pages never repeat or skip a record even while the writer inserts or retention
//! deletes. Filters other than time are applied to decoded records.

use std::collections::{BTreeMap, HashSet};
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;
use rusqlite::{params, Connection};

use crate::error::{Result, StoreError};
use crate::insights::{Insights, InsightsBuilder};
use crate::migrate::open_reader;
use crate::rows::{first_key_of_ms, keys_of_same_ms, record_key, Lifecycle, ReplayRecord};
use crate::segment::{decompress, frames, Format, Frame};
use crate::segments::{read_head, Head};
use crate::sessions::SessionRow;
use crate::view::View;

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
    /// The inclusive key range the time bounds allow.
    fn key_range(&self) -> (i64, i64) {
        let lo = self.since_ms.map_or(i64::MIN, first_key_of_ms);
        let hi = self
            .until_ms
            .map_or(i64::MAX, |t| first_key_of_ms(t).saturating_sub(1));
        (lo, hi)
    }

    /// Whether the fields other than time match (what [`View::matches`] decides from a
    /// view; the tests hold the two to each other).
    #[cfg(test)]
    pub(crate) fn matches(&self, r: &ReplayRecord) -> bool {
        fn same(want: Option<&String>, got: Option<&String>) -> bool {
            want.is_none_or(|w| got == Some(w))
        }
        same(self.decision.as_ref(), r.decision.as_ref())
            && same(self.model.as_ref(), r.final_model.as_ref())
            && same(self.session.as_ref(), r.session_hash.as_ref())
            && self.status.is_none_or(|s| r.status == Some(s))
            && self.lifecycle.is_none_or(|l| r.lifecycle == l)
    }

    /// Whether only time bounds are set (every record in the key range matches).
    fn is_time_only(&self) -> bool {
        self.decision.is_none()
            && self.model.is_none()
            && self.session.is_none()
            && self.status.is_none()
            && self.lifecycle.is_none()
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

/// The position after a record: its key and id (`key.id`). Opaque to callers; a bare key
/// (as earlier builds wrote) means "before every record with that key".
fn parse_cursor(cursor: &str) -> Result<(i64, String)> {
    let (key, id) = cursor.split_once('.').unwrap_or((cursor, ""));
    Some(key)
        .filter(|k| !k.is_empty() && k.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|k| k.parse::<i64>().ok())
        .map(|key| (key, id.to_owned()))
        .ok_or_else(|| StoreError::InvalidCursor(cursor.to_owned()))
}

fn cursor_of(key: i64, id: &str) -> String {
    format!("{key}.{id}")
}

#[derive(Debug)]
struct ReaderInner {
    path: PathBuf,
    conns: Vec<Mutex<Connection>>,
    next: AtomicUsize,
}

/// Read-only access to the replay records: cheap to clone, safe to share between threads.
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
    /// SQLite errors; [`StoreError::CorruptSegment`] or [`StoreError::CorruptRecord`] if
    /// what holds it does not decode.
    pub fn get(&self, id: &str) -> Result<Option<ReplayRecord>> {
        // Its key's millisecond (rows moved from files written before ids were keys got a
        // key in their id's millisecond); an id that is not hex can only be such a row.
        let (lo, hi) = record_key(id).map_or((i64::MIN, i64::MAX), keys_of_same_ms);
        self.with_conn(|conn| {
            let mut found = None;
            scan(conn, lo, hi, |frame| {
                if frame.id != id {
                    return Ok(ControlFlow::Continue(()));
                }
                found = Some(decode(&frame)?);
                Ok(ControlFlow::Break(()))
            })?;
            Ok(found)
        })
    }

    /// Up to `limit` (clamped to 1..=[`MAX_PAGE`]) records matching `filter`, newest first,
    /// starting after `cursor` (from the previous page's `next_cursor`).
    ///
    /// Segments are read newest key first; a record is final once no segment still to be
    /// read can hold a newer key (records that end out of order, like long streams, sit in
    /// a later segment than their key), and the newest segment's copy of an id wins.
    ///
    /// # Errors
    /// [`StoreError::InvalidCursor`], SQLite errors, [`StoreError::CorruptSegment`],
    /// [`StoreError::CorruptRecord`].
    pub fn list(&self, filter: &ReplayFilter, cursor: Option<&str>, limit: usize) -> Result<Page> {
        let limit = limit.clamp(1, MAX_PAGE);
        let (lo, mut hi) = filter.key_range();
        let after = cursor.map(parse_cursor).transpose()?;
        if let Some((key, _)) = &after {
            hi = hi.min(*key);
        }
        let before_cursor = |key: i64, id: &str| {
            after
                .as_ref()
                .is_none_or(|(k, i)| (key, id) < (*k, i.as_str()))
        };
        let mut out: Vec<(i64, String, ReplayRecord)> = Vec::with_capacity(limit + 1);
        self.with_conn(|conn| {
            let head = read_head(conn)?;
            let mut stmt = conn.prepare_cached(
                "SELECT seg, last_key, format, data FROM replay_segments
                 WHERE last_key >= ?1 AND first_key <= ?2 ORDER BY last_key DESC, seg DESC",
            )?;
            let mut rows = stmt.query(params![lo, hi])?;
            // Records read but not yet final: (key, id) → (segment, its format, payload).
            let mut pending: BTreeMap<(i64, String), (i64, Format, Vec<u8>)> = BTreeMap::new();
            let emit = |pending: BTreeMap<(i64, String), (i64, Format, Vec<u8>)>,
                        out: &mut Vec<(i64, String, ReplayRecord)>|
             -> Result<()> {
                for ((key, id), (seg, format, payload)) in pending.into_iter().rev() {
                    if out.len() > limit {
                        break;
                    }
                    let frame = Frame {
                        key,
                        id: &id,
                        payload: &payload,
                        seg,
                        format,
                    };
                    let json = frame.json()?;
                    if filter.is_time_only() || view(&id, &json)?.matches(filter) {
                        out.push((key, id.clone(), decode_json(&id, &json)?));
                    }
                }
                Ok(())
            };
            while let Some(row) = rows.next()? {
                let (seg, last_key, format, data): (i64, i64, i64, Vec<u8>) =
                    (row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?);
                let newer = pending.split_off(&(last_key.saturating_add(1), String::new()));
                emit(newer, &mut out)?;
                if out.len() > limit {
                    return Ok(());
                }
                let format = Format::of_column(seg, format)?;
                let raw = decompress(seg, &data)?;
                for frame in live_frames(seg, format, &raw, head) {
                    let frame = frame?;
                    if !(lo..=hi).contains(&frame.key) || !before_cursor(frame.key, frame.id) {
                        continue;
                    }
                    let entry = pending.entry((frame.key, frame.id.to_owned())).or_insert((
                        i64::MIN,
                        format,
                        Vec::new(),
                    ));
                    if seg > entry.0 {
                        *entry = (seg, format, frame.payload.to_vec());
                    }
                }
            }
            emit(pending, &mut out)
        })?;
        let next_cursor = if out.len() > limit {
            out.truncate(limit);
            out.last().map(|(key, id, _)| cursor_of(*key, id))
        } else {
            None
        };
        Ok(Page {
            records: out.into_iter().map(|(_, _, r)| r).collect(),
            next_cursor,
        })
    }

    /// Calls `f` with the [`View`] of every live record in `filter`'s time range once (the
    /// newest copy of each id), newest segment first; `f` sees records that match the other
    /// fields only.
    fn for_each(&self, filter: &ReplayFilter, mut f: impl FnMut(View<'_>)) -> Result<()> {
        let (lo, hi) = filter.key_range();
        self.with_conn(|conn| {
            scan_unique(conn, lo, hi, |frame| {
                let json = frame.json()?;
                let record = view(frame.id, &json)?;
                if record.matches(filter) {
                    f(record);
                }
                Ok(())
            })
        })
    }

    /// How many records match `filter`.
    ///
    /// # Errors
    /// SQLite errors, [`StoreError::CorruptSegment`], [`StoreError::CorruptRecord`].
    pub fn count(&self, filter: &ReplayFilter) -> Result<u64> {
        if filter.is_time_only() {
            let (lo, hi) = filter.key_range();
            return self.with_conn(|conn| count_in(conn, lo, hi));
        }
        let mut n = 0;
        self.for_each(filter, |_| n += 1)?;
        Ok(n)
    }

    /// Cost, savings, token and latency aggregates over the records matching `filter`
    /// (usually just a time range), overall and by decision, model, day and hour (UTC).
    ///
    /// # Errors
    /// SQLite errors, [`StoreError::CorruptSegment`], [`StoreError::CorruptRecord`].
    pub fn insights(&self, filter: &ReplayFilter) -> Result<Insights> {
        let mut builder = InsightsBuilder::new(filter.since_ms, filter.until_ms);
        self.for_each(filter, |r| builder.add(&r.insights_row()))?;
        Ok(builder.finish())
    }
}

/// Live records with a key in `lo..=hi`, each id once: reads only the frames' keys and ids.
fn count_in(conn: &Connection, lo: i64, hi: i64) -> Result<u64> {
    let mut n = 0u64;
    scan_unique(conn, lo, hi, |_| {
        n += 1;
        Ok(())
    })?;
    Ok(n)
}

/// Calls `f` with every live frame with a key in `lo..=hi`, newest segment first, until it
/// breaks.
fn scan(
    conn: &Connection,
    lo: i64,
    hi: i64,
    mut f: impl FnMut(Frame<'_>) -> Result<ControlFlow<()>>,
) -> Result<()> {
    let head = read_head(conn)?;
    let mut stmt = conn.prepare_cached(
        "SELECT seg, format, data FROM replay_segments
         WHERE last_key >= ?1 AND first_key <= ?2 ORDER BY seg DESC",
    )?;
    let mut rows = stmt.query(params![lo, hi])?;
    while let Some(row) = rows.next()? {
        let (seg, format, data): (i64, i64, Vec<u8>) = (row.get(0)?, row.get(1)?, row.get(2)?);
        let format = Format::of_column(seg, format)?;
        let raw = decompress(seg, &data)?;
        for frame in live_frames(seg, format, &raw, head) {
            let frame = frame?;
            if (lo..=hi).contains(&frame.key) && f(frame)?.is_break() {
                return Ok(());
            }
        }
    }
    Ok(())
}

/// [`scan`] that sees each id once: its copy in the newest segment.
fn scan_unique(
    conn: &Connection,
    lo: i64,
    hi: i64,
    mut f: impl FnMut(Frame<'_>) -> Result<()>,
) -> Result<()> {
    let mut seen: HashSet<(i64, u64)> = HashSet::new();
    scan(conn, lo, hi, |frame| {
        if seen.insert((frame.key, id_hash(frame.id))) {
            f(frame)?;
        }
        Ok(ControlFlow::Continue(()))
    })
}

/// The frames of a segment that retention has not deleted.
fn live_frames(
    seg: i64,
    format: Format,
    raw: &[u8],
    head: Head,
) -> impl Iterator<Item = Result<Frame<'_>>> {
    let skip = usize::try_from(head.skip_of(seg)).unwrap_or(usize::MAX);
    frames(seg, format, raw).skip(skip)
}

/// A 64-bit hash of an id, to tell ids apart without keeping them (with the key alongside, a
/// collision would need two ids of the same key and hash).
fn id_hash(id: &str) -> u64 {
    use std::hash::{BuildHasher, BuildHasherDefault, DefaultHasher};
    BuildHasherDefault::<DefaultHasher>::default().hash_one(id)
}

fn decode(frame: &Frame<'_>) -> Result<ReplayRecord> {
    decode_json(frame.id, &frame.json()?)
}

fn view<'a>(id: &str, json: &'a [u8]) -> Result<View<'a>> {
    serde_json::from_slice(json).map_err(|source| StoreError::CorruptRecord {
        id: id.to_owned(),
        source,
    })
}

fn decode_json(id: &str, json: &[u8]) -> Result<ReplayRecord> {
    let mut record: ReplayRecord =
        serde_json::from_slice(json).map_err(|source| StoreError::CorruptRecord {
            id: id.to_owned(),
            source,
        })?;
    if record.id.is_empty() {
        id.clone_into(&mut record.id);
    }
    Ok(record)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_are_keys_with_ids_and_garbage_is_rejected() {
        let key = 117_661_175_398_297_600;
        let id = "01a2b3c4d5e67000800000000000000b";
        assert_eq!(
            parse_cursor(&cursor_of(key, id)).unwrap(),
            (key, id.to_owned())
        );
        // A bare key (earlier builds) is before every record of that key.
        assert_eq!(
            parse_cursor("117661175398297600").unwrap(),
            (key, String::new())
        );
        for bad in ["", "-1", "x", "1_abc", "+5", ".5", "99999999999999999999"] {
            assert!(
                matches!(parse_cursor(bad), Err(StoreError::InvalidCursor(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn filters_match_every_set_field_and_bound_keys_by_time() {
        let f = ReplayFilter {
            decision: Some("d".into()),
            status: Some(200),
            since_ms: Some(5),
            until_ms: Some(7),
            ..ReplayFilter::default()
        };
        assert_eq!(f.key_range(), (5 << 16, (7 << 16) - 1));
        assert!(!f.is_time_only());
        let mut r = ReplayRecord {
            decision: Some("d".into()),
            status: Some(200),
            ..ReplayRecord::default()
        };
        assert!(f.matches(&r));
        r.status = Some(500);
        assert!(!f.matches(&r));
        r.status = Some(200);
        r.decision = None;
        assert!(!f.matches(&r));
        assert!(ReplayFilter::default().matches(&r));
        assert_eq!(ReplayFilter::default().key_range(), (i64::MIN, i64::MAX));
    }
}
