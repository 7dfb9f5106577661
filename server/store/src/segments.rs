//! The writer's SQL over `replay_segments`: inserting a batch as segments, and retention.
//!
//! Retention deletes whole segments from the oldest (by write order). When fewer records must
//! go than the oldest segment holds, the `replay_head` row marks its first `skip` records
//! (in key order) as deleted instead of rewriting it; readers skip them. So `max_records`
//! is exact while every write stays one row, and a trim is one small row update.
//! The TTL sweep deletes every segment whose newest key is past the cutoff, then skips the
//! expired prefix of the oldest one left; an expired record in a newer segment (a long
//! stream that ended late) goes when its segment does.

use rusqlite::{params, Connection, OptionalExtension, Transaction};

use crate::error::Result;
use crate::intake::Shard;
use crate::segment::{compress, decompress, frames, Format};

/// Which records of the oldest segment retention has deleted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Head {
    /// The segment (if it still exists, it is the oldest).
    pub seg: i64,
    /// Its first `skip` records are deleted.
    pub skip: u64,
}

impl Head {
    /// What is skipped of segment `seg`.
    pub(crate) fn skip_of(self, seg: i64) -> u64 {
        if seg == self.seg {
            self.skip
        } else {
            0
        }
    }
}

/// Reads the head row (zero when there is none).
pub(crate) fn read_head(conn: &Connection) -> Result<Head> {
    let head = conn
        .prepare_cached("SELECT seg, skip FROM replay_head WHERE one = 1")?
        .query_row([], |r| {
            Ok(Head {
                seg: r.get(0)?,
                skip: u64::try_from(r.get::<_, i64>(1)?).unwrap_or(0),
            })
        })
        .optional()?;
    Ok(head.unwrap_or_default())
}

fn write_head(conn: &Connection, head: Head) -> Result<()> {
    conn.prepare_cached("INSERT OR REPLACE INTO replay_head (one, seg, skip) VALUES (1, ?1, ?2)")?
        .execute(params![
            head.seg,
            i64::try_from(head.skip).unwrap_or(i64::MAX)
        ])?;
    Ok(())
}

/// Live records: every segment's records less the head's skip.
pub(crate) fn count_live(conn: &Connection, head: Head) -> Result<u64> {
    let total: i64 = conn.query_row(
        "SELECT coalesce(sum(records), 0) FROM replay_segments",
        [],
        |r| r.get(0),
    )?;
    let skipped: Option<i64> = conn
        .query_row(
            "SELECT records FROM replay_segments WHERE seg = ?1",
            [head.seg],
            |r| r.get(0),
        )
        .optional()?;
    let skipped = skipped.map_or(0, |r| head.skip.min(u64::try_from(r).unwrap_or(0)));
    Ok(u64::try_from(total).unwrap_or(0).saturating_sub(skipped))
}

/// A batch ready to store: frames sorted by key, a later record replacing an earlier one
/// with the same id.
pub(crate) struct Batch<'a> {
    /// `(key, shard, entry)` of each record kept.
    order: Vec<(i64, usize, usize)>,
    shards: &'a [Shard],
}

impl<'a> Batch<'a> {
    /// Orders the records taken from `shards`.
    pub(crate) fn new(shards: &'a [Shard]) -> Self {
        let mut order: Vec<(i64, usize, usize)> = shards
            .iter()
            .enumerate()
            .flat_map(|(s, shard)| {
                shard
                    .index
                    .iter()
                    .enumerate()
                    .map(move |(i, e)| (e.0, s, i))
            })
            .collect();
        // Stable: a record recorded twice keeps its arrival order, so the later one wins.
        order.sort_by_key(|e| e.0);
        let mut batch = Self { order, shards };
        batch.drop_replaced();
        batch
    }

    /// Records in the batch.
    pub(crate) fn len(&self) -> usize {
        self.order.len()
    }

    fn frame(&self, e: (i64, usize, usize)) -> &'a [u8] {
        self.shards.get(e.1).map_or(&[], |s| s.frame(e.2))
    }

    fn id(&self, e: (i64, usize, usize)) -> &'a str {
        frames(0, Format::Packed, self.frame(e))
            .next()
            .and_then(Result::ok)
            .map_or("", |f| f.id)
    }

    /// Keeps only the last of records with the same key and id.
    fn drop_replaced(&mut self) {
        let mut kept: Vec<(i64, usize, usize)> = Vec::with_capacity(self.order.len());
        for &e in &self.order {
            match kept.last_mut() {
                Some(last) if last.0 == e.0 && self.id(*last) == self.id(e) => *last = e,
                _ => kept.push(e),
            }
        }
        self.order = kept;
    }

    /// Inserts the batch as segments of at most `max_rows` records; returns their count.
    pub(crate) fn insert(
        &self,
        tx: &Transaction<'_>,
        max_rows: usize,
        raw: &mut Vec<u8>,
    ) -> Result<usize> {
        let mut insert = tx.prepare_cached(
            "INSERT INTO replay_segments (first_key, last_key, records, format, data)
             VALUES (?1, ?2, ?3, ?4, ?5)",
        )?;
        let mut segments = 0;
        for chunk in self.order.chunks(max_rows.max(1)) {
            raw.clear();
            for &e in chunk {
                raw.extend_from_slice(self.frame(e));
            }
            let (Some(first), Some(last)) = (chunk.first(), chunk.last()) else {
                continue;
            };
            insert.execute(params![
                first.0,
                last.0,
                chunk.len() as i64,
                Format::Packed.column(),
                compress(raw)
            ])?;
            segments += 1;
        }
        Ok(segments)
    }
}

/// Deletes the `n` oldest live records (by write order, then key): whole segments while
/// they fit, then a skip in the next. Returns how many were deleted (fewer when the table
/// holds fewer) and the new head.
pub(crate) fn delete_oldest(conn: &Connection, head: Head, n: u64) -> Result<(u64, Head)> {
    let mut left = n;
    let mut head = head;
    let mut deleted = 0;
    while left > 0 {
        let oldest: Vec<(i64, u64)> = conn
            .prepare_cached("SELECT seg, records FROM replay_segments ORDER BY seg LIMIT 64")?
            .query_map([], |r| {
                Ok((r.get(0)?, u64::try_from(r.get::<_, i64>(1)?).unwrap_or(0)))
            })?
            .collect::<rusqlite::Result<_>>()?;
        if oldest.is_empty() {
            break;
        }
        for (seg, records) in oldest {
            let skipped = head.skip_of(seg).min(records);
            let live = records - skipped;
            if live <= left {
                conn.prepare_cached("DELETE FROM replay_segments WHERE seg = ?1")?
                    .execute([seg])?;
                left -= live;
                deleted += live;
            } else {
                head = Head {
                    seg,
                    skip: skipped + left,
                };
                write_head(conn, head)?;
                deleted += left;
                left = 0;
            }
            if left == 0 {
                break;
            }
        }
    }
    Ok((deleted, head))
}

/// Deletes records with a key below `cutoff` (see the module docs for what may stay);
/// returns how many and the new head.
pub(crate) fn delete_before(conn: &Connection, head: Head, cutoff: i64) -> Result<(u64, Head)> {
    let mut deleted = 0;
    {
        let mut stmt = conn.prepare_cached(
            "DELETE FROM replay_segments WHERE last_key < ?1 RETURNING seg, records",
        )?;
        let mut rows = stmt.query([cutoff])?;
        while let Some(r) = rows.next()? {
            let seg: i64 = r.get(0)?;
            let records = u64::try_from(r.get::<_, i64>(1)?).unwrap_or(0);
            deleted += records - head.skip_of(seg).min(records);
        }
    }
    let oldest: Option<(i64, i64, i64, Vec<u8>)> = conn
        .prepare_cached(
            "SELECT seg, first_key, format, data FROM replay_segments ORDER BY seg LIMIT 1",
        )?
        .query_row([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
        .optional()?;
    let Some((seg, _, format, data)) = oldest.filter(|o| o.1 < cutoff) else {
        return Ok((deleted, head));
    };
    let format = Format::of_column(seg, format)?;
    let raw = decompress(seg, &data)?;
    let mut expired = 0u64;
    for frame in frames(seg, format, &raw) {
        if frame?.key >= cutoff {
            break;
        }
        expired += 1;
    }
    let skipped = head.skip_of(seg);
    if expired > skipped {
        let head = Head { seg, skip: expired };
        write_head(conn, head)?;
        return Ok((deleted + expired - skipped, head));
    }
    Ok((deleted, head))
}
