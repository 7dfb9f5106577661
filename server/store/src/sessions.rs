//! Router Learning session snapshots: the per-key protection state the gateway keeps in
//! memory, mirrored to the `learning_sessions` table so a restart does not break running
//! agents.
//!
//! The store does not interpret a session: a [`SessionRow`] is the key, its last activity and
//! the gateway's own JSON. Snapshots travel through the writer thread like replay records
//! ([`crate::ReplaySink::snapshot_sessions`]) and are upserted in one transaction together
//! with the expiry of rows idle past the caller's cutoff; [`crate::ReplayReader::sessions`]
//! reads them back at startup.

use rusqlite::{params, Connection};

use crate::error::Result;

/// One session's state as the gateway serialised it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionRow {
    /// The learning key (opaque to the store).
    pub key: String,
    /// Last activity, ms since the epoch.
    pub last_seen_ms: i64,
    /// The gateway's JSON for this key.
    pub state: String,
}

/// A batch of changed sessions and the cutoff below which stored sessions are deleted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SessionSnapshot {
    /// Sessions changed since the previous snapshot.
    pub rows: Vec<SessionRow>,
    /// Rows whose `last_seen_ms` is older than this are removed (0 keeps everything).
    pub expire_before_ms: i64,
}

/// Upserts `snapshot.rows` and expires old rows, in one transaction.
pub(crate) fn write(conn: &mut Connection, snapshot: &SessionSnapshot) -> Result<()> {
    let tx = conn.transaction()?;
    {
        let mut upsert = tx.prepare_cached(
            "INSERT INTO learning_sessions (key, last_seen_ms, state) VALUES (?1, ?2, ?3)
             ON CONFLICT (key) DO UPDATE SET last_seen_ms = excluded.last_seen_ms,
                                             state = excluded.state",
        )?;
        for r in &snapshot.rows {
            upsert.execute(params![r.key, r.last_seen_ms, r.state])?;
        }
        tx.execute(
            "DELETE FROM learning_sessions WHERE last_seen_ms < ?1",
            [snapshot.expire_before_ms],
        )?;
    }
    tx.commit()?;
    Ok(())
}

/// Sessions active at or after `since_ms`, most recent first.
pub(crate) fn read(conn: &Connection, since_ms: i64) -> Result<Vec<SessionRow>> {
    let mut stmt = conn.prepare_cached(
        "SELECT key, last_seen_ms, state FROM learning_sessions
         WHERE last_seen_ms >= ?1 ORDER BY last_seen_ms DESC",
    )?;
    let rows = stmt
        .query_map([since_ms], |r| {
            Ok(SessionRow {
                key: r.get(0)?,
                last_seen_ms: r.get(1)?,
                state: r.get(2)?,
            })
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Store, StoreOptions};

    fn row(key: &str, last_seen_ms: i64, state: &str) -> SessionRow {
        SessionRow {
            key: key.into(),
            last_seen_ms,
            state: state.into(),
        }
    }

    #[test]
    fn snapshots_upsert_expire_and_survive_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), &StoreOptions::default()).unwrap();
        let sink = store.sink();
        assert!(sink.snapshot_sessions(SessionSnapshot {
            rows: vec![row("a", 1_000, "{\"v\":1}"), row("b", 2_000, "{}")],
            expire_before_ms: 0,
        }));
        // `a` changes, `b` is idle past the cutoff, `c` is new.
        assert!(sink.snapshot_sessions(SessionSnapshot {
            rows: vec![row("a", 3_000, "{\"v\":2}"), row("c", 2_500, "{}")],
            expire_before_ms: 2_100,
        }));
        sink.flush().unwrap();
        let got = store.reader().sessions(0).unwrap();
        assert_eq!(
            got,
            vec![row("a", 3_000, "{\"v\":2}"), row("c", 2_500, "{}")]
        );
        assert_eq!(store.reader().sessions(2_600).unwrap().len(), 1);
        store.shutdown().unwrap();
        assert!(!sink.snapshot_sessions(SessionSnapshot::default()));
        drop(store);
        let reopened = Store::open(dir.path(), &StoreOptions::default()).unwrap();
        assert_eq!(reopened.reader().sessions(0).unwrap().len(), 2);
        reopened.shutdown().unwrap();
    }
}
