//! Schema and connection setup: pragmas, and ordered migrations keyed by `PRAGMA user_version`.
//!
//! Owns every `CREATE`/`ALTER` statement. Migration *n* (1-based) turns a version *n − 1*
//! database into version *n* inside one transaction that also bumps `user_version`, so a
//! crash mid-migration leaves the previous version intact. Opening a database newer than
//! [`SCHEMA_VERSION`] is an error, never a silent downgrade. Migrations are append-only:
//! once released, an entry never changes.

use std::path::Path;
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};

use crate::error::{Result, StoreError};

/// How long a connection waits for another connection's lock before `SQLITE_BUSY`.
/// The writer commits small batches, so readers and the writer normally wait microseconds;
/// the bound keeps a stuck peer from hanging a thread forever.
pub(crate) const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Page size of new database files. Replay rows are ~2–3 KB: with SQLite's default 4 KiB
/// pages only one fits per page (~4 KiB on disk and in the WAL per row); 16 KiB pages hold
/// six or seven (see scripts/bench/results/store-2026-11-21.md).
const PAGE_SIZE: u32 = 16_384;

/// One migration: SQL, or code for what SQL alone cannot do (it runs in the migration's
/// transaction all the same).
#[derive(Clone, Copy)]
enum Step {
    Sql(&'static str),
    Code(fn(&Connection) -> rusqlite::Result<()>),
}

/// Ordered migrations; index 0 produces version 1.
const MIGRATIONS: &[Step] = &[
    // v1: the replay table. Queryable fields are real columns, the whole record is JSON.
    Step::Sql("CREATE TABLE replay (
        id                   TEXT    NOT NULL PRIMARY KEY,
        ts_ms                INTEGER NOT NULL,
        decision             TEXT,
        final_model          TEXT,
        session_hash         TEXT,
        status               INTEGER,
        lifecycle            TEXT    NOT NULL,
        prompt_tokens        INTEGER,
        cached_prompt_tokens INTEGER,
        completion_tokens    INTEGER,
        actual_cost          REAL,
        baseline_cost        REAL,
        currency             TEXT,
        total_ms             REAL,
        cache_hit            INTEGER NOT NULL DEFAULT 0,
        record               TEXT    NOT NULL
    );
    CREATE INDEX replay_by_time     ON replay (ts_ms, id);
    CREATE INDEX replay_by_decision ON replay (decision, ts_ms);
    CREATE INDEX replay_by_model    ON replay (final_model, ts_ms);
    CREATE INDEX replay_by_session  ON replay (session_hash, ts_ms);"),
    // v2: Router Learning session snapshots (one row per learning key, the gateway's JSON).
    Step::Sql("CREATE TABLE learning_sessions (
        key          TEXT    NOT NULL PRIMARY KEY,
        last_seen_ms INTEGER NOT NULL,
        state        TEXT    NOT NULL
    );
    CREATE INDEX learning_sessions_by_time ON learning_sessions (last_seen_ms);"),
    // v3: cheaper writes. Decisions and models are few, so their filters walk the time index
    // newest first (a page fills fast); only sessions are selective enough for an index of
    // their own, and only rows that have one are in it. Each insert and each retention delete
    // now maintains three b-trees instead of five.
    Step::Sql("DROP INDEX replay_by_decision;
    DROP INDEX replay_by_model;
    DROP INDEX replay_by_session;
    CREATE INDEX replay_by_session ON replay (session_hash, ts_ms, id) WHERE session_hash IS NOT NULL;"),
    // v4: rows keyed by an integer taken from their id (`rows::record_key`: millisecond,
    // version, counter), so the table itself is in time order: no index on the text id and
    // none on time; an insert appends to one b-tree (plus the session index when it has a
    // session) and retention cuts from its front. Old rows get the key of their id's
    // millisecond plus their rank in it (ids that are not 32 hex digits: their `ts_ms`), so
    // the by-id lookup, which scans the id's millisecond, still finds them.
    Step::Sql("CREATE TABLE replay_v4 (
        seq                  INTEGER PRIMARY KEY,
        id                   TEXT    NOT NULL,
        ts_ms                INTEGER NOT NULL,
        decision             TEXT,
        final_model          TEXT,
        session_hash         TEXT,
        status               INTEGER,
        lifecycle            TEXT    NOT NULL,
        prompt_tokens        INTEGER,
        cached_prompt_tokens INTEGER,
        completion_tokens    INTEGER,
        actual_cost          REAL,
        baseline_cost        REAL,
        currency             TEXT,
        total_ms             REAL,
        cache_hit            INTEGER NOT NULL DEFAULT 0,
        record               TEXT    NOT NULL
    );
    INSERT INTO replay_v4 (seq, id, ts_ms, decision, final_model, session_hash, status,
        lifecycle, prompt_tokens, cached_prompt_tokens, completion_tokens, actual_cost,
        baseline_cost, currency, total_ms, cache_hit, record)
    SELECT (ms << 16) + row_number() OVER (PARTITION BY ms ORDER BY id) - 1,
        id, ts_ms, decision, final_model, session_hash, status, lifecycle, prompt_tokens,
        cached_prompt_tokens, completion_tokens, actual_cost, baseline_cost, currency,
        total_ms, cache_hit, record
    FROM (SELECT *, max(0, CASE WHEN length(id) = 32 AND lower(id) NOT GLOB '*[^0-9a-f]*'
                 THEN (instr('0123456789abcdef', substr(lower(id), 1, 1)) - 1) * 17592186044416 +
                     (instr('0123456789abcdef', substr(lower(id), 2, 1)) - 1) * 1099511627776 +
                     (instr('0123456789abcdef', substr(lower(id), 3, 1)) - 1) * 68719476736 +
                     (instr('0123456789abcdef', substr(lower(id), 4, 1)) - 1) * 4294967296 +
                     (instr('0123456789abcdef', substr(lower(id), 5, 1)) - 1) * 268435456 +
                     (instr('0123456789abcdef', substr(lower(id), 6, 1)) - 1) * 16777216 +
                     (instr('0123456789abcdef', substr(lower(id), 7, 1)) - 1) * 1048576 +
                     (instr('0123456789abcdef', substr(lower(id), 8, 1)) - 1) * 65536 +
                     (instr('0123456789abcdef', substr(lower(id), 9, 1)) - 1) * 4096 +
                     (instr('0123456789abcdef', substr(lower(id), 10, 1)) - 1) * 256 +
                     (instr('0123456789abcdef', substr(lower(id), 11, 1)) - 1) * 16 +
                     (instr('0123456789abcdef', substr(lower(id), 12, 1)) - 1) * 1
                 ELSE ts_ms END) AS ms
          FROM replay);
    DROP TABLE replay;
    ALTER TABLE replay_v4 RENAME TO replay;
    CREATE INDEX replay_by_session ON replay (session_hash, seq) WHERE session_hash IS NOT NULL;"),
    // v5: compressed segments (`segment`, `segments`): a batch of records is one row, so
    // the writer stores a few hundred records with one insert and a fraction of the bytes.
    // The rows of v4 are moved into segments in key order.
    Step::Code(segments_from_rows),
    // v6: new segments hold packed records (`segment::Format::Packed`). Nothing to change
    // in the file; the version tells builds that cannot read them to refuse it, not misread.
    Step::Code(packed_segments_follow),
];

/// v6 changes no table: from it on the writer stores packed segments, which v5 builds
/// cannot read.
fn packed_segments_follow(_: &Connection) -> rusqlite::Result<()> {
    Ok(())
}

/// The schema version this build writes and reads.
pub const SCHEMA_VERSION: u32 = MIGRATIONS.len() as u32;

/// Opens (creating if needed) the database for writing: WAL, `synchronous=NORMAL`, busy
/// timeout, then migrates it to [`SCHEMA_VERSION`].
///
/// With WAL and `synchronous=NORMAL` a committed transaction survives the process being
/// killed (the WAL is in the OS page cache); only an OS crash or power loss can lose the
/// last commits, never corrupt the file.
pub(crate) fn open_writer(path: &Path) -> Result<Connection> {
    let conn = Connection::open(path).map_err(|e| open_error(path, &e))?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    // Only takes effect on a new, empty file (before WAL is switched on); see PAGE_SIZE.
    conn.execute_batch(&format!("PRAGMA page_size = {PAGE_SIZE}"))?;
    let mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(StoreError::Open {
            path: path.to_owned(),
            reason: format!("cannot switch to WAL mode (journal_mode is {mode})"),
        });
    }
    conn.execute_batch("PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON;")?;
    migrate(&conn, path)?;
    Ok(conn)
}

/// Opens an existing, migrated database read-only.
pub(crate) fn open_reader(path: &Path) -> Result<Connection> {
    let flags = OpenFlags::SQLITE_OPEN_READ_ONLY
        | OpenFlags::SQLITE_OPEN_NO_MUTEX
        | OpenFlags::SQLITE_OPEN_URI;
    let conn = Connection::open_with_flags(path, flags).map_err(|e| open_error(path, &e))?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    let found = user_version(&conn)?;
    match found.cmp(&SCHEMA_VERSION) {
        std::cmp::Ordering::Equal => Ok(conn),
        std::cmp::Ordering::Greater => Err(StoreError::SchemaTooNew {
            path: path.to_owned(),
            found,
            supported: SCHEMA_VERSION,
        }),
        std::cmp::Ordering::Less => Err(StoreError::SchemaTooOld {
            path: path.to_owned(),
            found,
            supported: SCHEMA_VERSION,
        }),
    }
}

fn open_error(path: &Path, e: &rusqlite::Error) -> StoreError {
    StoreError::Open {
        path: path.to_owned(),
        reason: e.to_string(),
    }
}

/// `PRAGMA user_version`.
pub(crate) fn user_version(conn: &Connection) -> Result<u32> {
    let v: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    Ok(u32::try_from(v).unwrap_or(u32::MAX))
}

/// Applies every migration after the database's current version, each in its own
/// transaction.
pub(crate) fn migrate(conn: &Connection, path: &Path) -> Result<()> {
    migrate_with(conn, path, MIGRATIONS)
}

fn migrate_with(conn: &Connection, path: &Path, migrations: &[Step]) -> Result<()> {
    let found = user_version(conn)?;
    let supported = migrations.len() as u32;
    if found > supported {
        return Err(StoreError::SchemaTooNew {
            path: path.to_owned(),
            found,
            supported,
        });
    }
    for (i, step) in migrations.iter().enumerate().skip(found as usize) {
        let version = i as u32 + 1;
        apply(conn, *step, version).map_err(|source| StoreError::Migration { version, source })?;
        tracing::info!(path = %path.display(), version, "replay store schema migrated");
    }
    Ok(())
}

fn apply(conn: &Connection, step: Step, version: u32) -> rusqlite::Result<()> {
    // BEGIN IMMEDIATE: two processes opening the same file never run a migration twice.
    conn.execute_batch("BEGIN IMMEDIATE")?;
    let run = || -> rusqlite::Result<()> {
        // Another process may have migrated between our version read and the lock.
        let now: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
        if now >= i64::from(version) {
            return Ok(());
        }
        match step {
            Step::Sql(sql) => conn.execute_batch(sql)?,
            Step::Code(f) => f(conn)?,
        }
        conn.execute_batch(&format!("PRAGMA user_version = {version}"))
    };
    match run() {
        Ok(()) => conn.execute_batch("COMMIT"),
        Err(e) => {
            let _ = conn.execute_batch("ROLLBACK");
            Err(e)
        }
    }
}

/// Records per segment when v4 rows are moved (the writer's default batch).
const MIGRATED_SEGMENT_ROWS: usize = 256;

/// v5: creates the segment tables and moves every v4 row into them, whole records in key
/// order (a row whose JSON does not decode is kept as it is, so nothing is lost that was
/// readable before), then drops the row table.
fn segments_from_rows(conn: &Connection) -> rusqlite::Result<()> {
    conn.execute_batch(
        "CREATE TABLE replay_segments (
            seg       INTEGER PRIMARY KEY,
            first_key INTEGER NOT NULL,
            last_key  INTEGER NOT NULL,
            records   INTEGER NOT NULL,
            format    INTEGER NOT NULL,
            data      BLOB    NOT NULL
        );
        CREATE INDEX replay_segments_by_last_key ON replay_segments (last_key);
        CREATE TABLE replay_head (
            one  INTEGER PRIMARY KEY CHECK (one = 1),
            seg  INTEGER NOT NULL,
            skip INTEGER NOT NULL
        );",
    )?;
    let mut insert = conn.prepare(
        "INSERT INTO replay_segments (first_key, last_key, records, format, data)
         VALUES (?1, ?2, ?3, ?4, ?5)",
    )?;
    let mut select = conn.prepare(&format!(
        "SELECT {} FROM replay ORDER BY seq",
        crate::legacy::RECORD_COLUMNS
    ))?;
    let mut rows = select.query([])?;
    let mut raw = Vec::new();
    let mut keys: Vec<i64> = Vec::with_capacity(MIGRATED_SEGMENT_ROWS);
    let mut flush = |raw: &mut Vec<u8>, keys: &mut Vec<i64>| -> rusqlite::Result<()> {
        if let (Some(&first), Some(&last)) = (keys.first(), keys.last()) {
            insert.execute(rusqlite::params![
                first,
                last,
                keys.len() as i64,
                crate::segment::Format::Json.column(),
                crate::segment::compress(raw)
            ])?;
        }
        raw.clear();
        keys.clear();
        Ok(())
    };
    while let Some(row) = rows.next()? {
        let (key, id, json) = crate::legacy::whole_record(row)?;
        crate::segment::push_frame(&mut raw, key, &id, &json);
        keys.push(key);
        if keys.len() == MIGRATED_SEGMENT_ROWS {
            flush(&mut raw, &mut keys)?;
        }
    }
    flush(&mut raw, &mut keys)?;
    drop(rows);
    drop(select);
    conn.execute_batch("DROP TABLE replay")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_file_migrates_to_current_and_reopens_without_change() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.sqlite3");
        let conn = open_writer(&path).unwrap();
        assert_eq!(user_version(&conn).unwrap(), SCHEMA_VERSION);
        let mode: String = conn
            .query_row("PRAGMA journal_mode", [], |r| r.get(0))
            .unwrap();
        assert_eq!(mode, "wal");
        let sync: i64 = conn
            .query_row("PRAGMA synchronous", [], |r| r.get(0))
            .unwrap();
        assert_eq!(sync, 1, "NORMAL");
        let page: i64 = conn
            .query_row("PRAGMA page_size", [], |r| r.get(0))
            .unwrap();
        assert_eq!(page, i64::from(PAGE_SIZE));
        drop(conn);
        let conn = open_writer(&path).unwrap();
        assert_eq!(user_version(&conn).unwrap(), SCHEMA_VERSION);
        let reader = open_reader(&path).unwrap();
        let n: i64 = reader
            .query_row("SELECT count(*) FROM replay_segments", [], |r| r.get(0))
            .unwrap();
        assert_eq!(n, 0);
    }

    #[test]
    fn newer_schema_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.sqlite3");
        let conn = Connection::open(&path).unwrap();
        conn.execute_batch(&format!("PRAGMA user_version = {}", SCHEMA_VERSION + 7))
            .unwrap();
        drop(conn);
        let err = open_writer(&path).unwrap_err();
        assert!(
            matches!(err, StoreError::SchemaTooNew { found, .. } if found == SCHEMA_VERSION + 7)
        );
        assert!(
            err.to_string().contains("newer than this build supports"),
            "{err}"
        );
        assert!(matches!(
            open_reader(&path).unwrap_err(),
            StoreError::SchemaTooNew { .. }
        ));
    }

    #[test]
    fn reader_refuses_an_unmigrated_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.sqlite3");
        drop(Connection::open(&path).unwrap());
        assert!(matches!(
            open_reader(&path).unwrap_err(),
            StoreError::SchemaTooOld { found: 0, .. }
        ));
    }

    #[test]
    fn an_older_database_is_migrated_in_place_and_keeps_its_rows() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.sqlite3");
        let conn = open_writer(&path).unwrap();
        conn.execute(
            "INSERT INTO replay_segments (first_key, last_key, records, format, data)
             VALUES (7, 7, 1, 1, x'00')",
            [],
        )
        .unwrap();
        // A future build's list: today's migrations plus one more.
        let mut next: Vec<Step> = MIGRATIONS.to_vec();
        next.push(Step::Sql(
            "ALTER TABLE replay_segments ADD COLUMN tenant TEXT;",
        ));
        migrate_with(&conn, &path, &next).unwrap();
        assert_eq!(user_version(&conn).unwrap(), SCHEMA_VERSION + 1);
        let (key, tenant): (i64, Option<String>) = conn
            .query_row("SELECT first_key, tenant FROM replay_segments", [], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .unwrap();
        assert_eq!((key, tenant), (7, None));
        // Running it again is a no-op; this build now sees a newer file.
        migrate_with(&conn, &path, &next).unwrap();
        assert!(matches!(
            migrate(&conn, &path).unwrap_err(),
            StoreError::SchemaTooNew { .. }
        ));
    }

    #[test]
    fn v4_keys_old_rows_by_their_id_so_lookups_and_order_survive() {
        use crate::query::{ReplayFilter, ReplayReader};
        use crate::rows::ReplayRecord;

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.sqlite3");
        let conn = open_writer_at(&path, 3);
        // Ids as earlier builds wrote them (the uuid crate's v7: several per millisecond with
        // the same first 64 bits), one whose `ts_ms` is a millisecond after its id's, and one
        // that is not hex at all.
        let old = [
            ("019aa2b3c4d57123a1b2c3d4e5f60718", 0x019a_a2b3_c4d5),
            ("019aa2b3c4d57123a1b2c3d4e5f60719", 0x019a_a2b3_c4d5),
            ("019AA2B3C4D57123A1B2C3D4E5F6071A", 0x019a_a2b3_c4d5),
            ("019aa2b3c4d67000800000000000000b", 0x019a_a2b3_c4d7),
            ("legacy-id", 0x019a_a2b3_c4d4),
        ];
        for (id, ts) in old {
            let record = ReplayRecord {
                id: id.into(),
                timestamp_ms: ts,
                decision: Some(format!("d-{id}")),
                ..ReplayRecord::default()
            };
            conn.execute(
                "INSERT INTO replay (id, ts_ms, decision, lifecycle, record)
                 VALUES (?1, ?2, ?3, 'completed', ?4)",
                rusqlite::params![
                    id,
                    ts,
                    record.decision,
                    serde_json::to_string(&record).unwrap()
                ],
            )
            .unwrap();
        }
        migrate(&conn, &path).unwrap();
        assert_eq!(user_version(&conn).unwrap(), SCHEMA_VERSION);
        let reader = ReplayReader::open(&path, 1).unwrap();
        for (id, ts) in old {
            let back = reader
                .get(id)
                .unwrap()
                .unwrap_or_else(|| panic!("{id} lost"));
            assert_eq!((back.id.as_str(), back.timestamp_ms), (id, ts));
        }
        let listed: Vec<String> = reader
            .list(&ReplayFilter::default(), None, 10)
            .unwrap()
            .records
            .into_iter()
            .map(|r| r.id)
            .collect();
        assert_eq!(
            listed,
            [
                "019aa2b3c4d67000800000000000000b",
                "019aa2b3c4d57123a1b2c3d4e5f60719",
                "019aa2b3c4d57123a1b2c3d4e5f60718",
                "019AA2B3C4D57123A1B2C3D4E5F6071A",
                "legacy-id",
            ]
        );
    }

    #[test]
    fn v5_makes_version_2_rows_whole_and_keeps_unreadable_ones() {
        use crate::query::{ReplayFilter, ReplayReader};
        use crate::rows::{record_key, Lifecycle, ReplayRecord, Usage, RECORD_SCHEMA_VERSION};

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.sqlite3");
        let conn = open_writer_at(&path, 4);
        let whole: Vec<ReplayRecord> = (0..300)
            .map(|i| ReplayRecord {
                decision: Some(format!("d{}", i % 3)),
                final_model: Some("m".into()),
                session_hash: (i % 2 == 0).then(|| "s:1".into()),
                status: Some(200),
                usage: Some(Usage {
                    prompt_tokens: i,
                    cached_prompt_tokens: 1,
                    completion_tokens: 2,
                }),
                cache_hit: i % 5 == 0,
                lifecycle: Lifecycle::Completed,
                base_model: Some("b".into()),
                schema_version: RECORD_SCHEMA_VERSION,
                ..ReplayRecord::new(1_763_700_000_000 + i as i64)
            })
            .collect();
        for r in &whole {
            // Version 2: the JSON leaves out what the columns hold.
            let mut json = r.clone();
            json.schema_version = 2;
            json.id.clear();
            json.decision = None;
            json.final_model = None;
            json.session_hash = None;
            json.status = None;
            json.usage = None;
            json.cache_hit = false;
            let u = r.usage.unwrap();
            conn.execute(
                "INSERT INTO replay (seq, id, ts_ms, decision, final_model, session_hash, status,
                    lifecycle, prompt_tokens, cached_prompt_tokens, completion_tokens, cache_hit,
                    record)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 'completed', ?8, ?9, ?10, ?11, ?12)",
                rusqlite::params![
                    record_key(&r.id).unwrap(),
                    r.id,
                    r.timestamp_ms,
                    r.decision,
                    r.final_model,
                    r.session_hash,
                    r.status,
                    u.prompt_tokens as i64,
                    u.cached_prompt_tokens as i64,
                    u.completion_tokens as i64,
                    r.cache_hit,
                    serde_json::to_string(&json).unwrap(),
                ],
            )
            .unwrap();
        }
        conn.execute(
            "INSERT INTO replay (seq, id, ts_ms, lifecycle, record)
             VALUES (5, 'broken', 0, 'completed', '{not json')",
            [],
        )
        .unwrap();
        migrate(&conn, &path).unwrap();
        let segments: i64 = conn
            .query_row("SELECT count(*) FROM replay_segments", [], |r| r.get(0))
            .unwrap();
        assert_eq!(segments, 2, "301 rows in segments of 256");
        let reader = ReplayReader::open(&path, 1).unwrap();
        for r in &whole {
            assert_eq!(reader.get(&r.id).unwrap().as_ref(), Some(r));
        }
        assert!(matches!(
            reader.get("broken"),
            Err(StoreError::CorruptRecord { .. })
        ));
        let since = ReplayFilter {
            since_ms: Some(1),
            ..ReplayFilter::default()
        };
        assert_eq!(reader.count(&since).unwrap(), 300);
        assert_eq!(reader.count(&ReplayFilter::default()).unwrap(), 301);
    }

    /// A database migrated to `version` only.
    fn open_writer_at(path: &Path, version: usize) -> Connection {
        let conn = Connection::open(path).unwrap();
        conn.execute_batch(&format!("PRAGMA page_size = {PAGE_SIZE}"))
            .unwrap();
        migrate_with(&conn, path, &MIGRATIONS[..version]).unwrap();
        conn
    }

    #[test]
    fn failed_migration_leaves_the_previous_version() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.sqlite3");
        let conn = Connection::open(&path).unwrap();
        // A table in the way makes migration 1 fail halfway (its CREATE TABLE collides).
        conn.execute_batch("CREATE TABLE replay (x INTEGER)")
            .unwrap();
        let err = migrate(&conn, &path).unwrap_err();
        assert!(
            matches!(err, StoreError::Migration { version: 1, .. }),
            "{err}"
        );
        assert_eq!(user_version(&conn).unwrap(), 0);
    }
}
