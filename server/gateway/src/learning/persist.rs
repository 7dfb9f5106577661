//! Mirroring Router Learning's per-key state to the state directory's database, so a restart
//! does not move running agents off their model.
//!
//! [`Sessions::snapshot`] takes the keys changed since the previous snapshot (a periodic task
//! and the shutdown path call it, never the request path) as [`SessionRow`]s for the store's
//! writer thread; [`Sessions::restore`] puts rows read at startup back. Instants become wall
//! time on the way out and back on the way in, so idle timeouts keep counting across the
//! restart. Rows idle past the idle timeout are useless (the next request would reset them)
//! and are expired by the snapshot that follows.

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use vllm_sr_store::{now_ms, SessionRow, SessionSnapshot};

use super::{KeyState, Sessions, TokenTotals};

/// How often the serve loop snapshots changed sessions.
pub const SNAPSHOT_INTERVAL: Duration = Duration::from_secs(5);

/// The stored form of one key (the store keeps it as opaque JSON).
#[derive(Debug, Serialize, Deserialize)]
struct Stored {
    model: String,
    confidence: f64,
    turns: u32,
    #[serde(default)]
    switches: Vec<(String, String)>,
    #[serde(default)]
    tool_loop: bool,
    #[serde(default)]
    totals: TokenTotals,
    #[serde(default)]
    last_usage: Option<(u64, u64)>,
}

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

impl Sessions {
    /// Keys changed since the previous snapshot, marked clean, and a cutoff that expires
    /// stored keys idle longer than `idle`.
    pub fn snapshot(&self, idle: Duration) -> SessionSnapshot {
        let (now, wall) = (Instant::now(), now_ms());
        let changed: Vec<(String, KeyState)> = {
            let mut map = self.map.lock();
            map.iter_mut()
                .filter(|(_, s)| s.dirty)
                .map(|(k, s)| {
                    s.dirty = false;
                    (k.clone(), s.clone())
                })
                .collect()
        };
        let rows = changed
            .into_iter()
            .filter_map(|(key, s)| {
                let stored = Stored {
                    model: s.model,
                    confidence: s.confidence,
                    turns: s.turns,
                    switches: s.switches,
                    tool_loop: s.tool_loop,
                    totals: s.totals,
                    last_usage: s.last_usage,
                };
                let state = serde_json::to_string(&stored).ok()?;
                Some(SessionRow {
                    key,
                    last_seen_ms: wall - ms(now.saturating_duration_since(s.last_seen)),
                    state,
                })
            })
            .collect();
        SessionSnapshot {
            rows,
            expire_before_ms: wall - ms(idle),
        }
    }

    /// Puts stored keys back (keys already held win: they are newer). Returns how many were
    /// restored; unreadable rows are skipped with a warning.
    pub fn restore(&self, rows: Vec<SessionRow>) -> usize {
        let (now, wall) = (Instant::now(), now_ms());
        let mut map = self.map.lock();
        let mut restored = 0;
        for row in rows {
            let stored: Stored = match serde_json::from_str(&row.state) {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(error = %e, "unreadable learning session snapshot skipped");
                    continue;
                }
            };
            let age = Duration::from_millis(u64::try_from(wall - row.last_seen_ms).unwrap_or(0));
            let Some(last_seen) = now.checked_sub(age) else {
                continue;
            };
            map.entry(row.key).or_insert_with(|| {
                restored += 1;
                KeyState {
                    model: stored.model,
                    confidence: stored.confidence,
                    turns: stored.turns,
                    last_seen,
                    switches: stored.switches,
                    tool_loop: stored.tool_loop,
                    totals: stored.totals,
                    last_usage: stored.last_usage,
                    dirty: false,
                }
            });
        }
        restored
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(model: &str, last_seen: Instant) -> KeyState {
        KeyState {
            model: model.into(),
            confidence: 0.8,
            turns: 3,
            last_seen,
            switches: vec![("a".into(), model.into())],
            tool_loop: true,
            totals: TokenTotals {
                responses: 3,
                prompt: 900,
                cached: 400,
                completion: 60,
            },
            last_usage: Some((300, 200)),
            dirty: true,
        }
    }

    #[test]
    fn snapshots_take_changed_keys_once_and_restore_them_with_their_age() {
        let idle = Duration::from_secs(300);
        let s = Sessions::default();
        let ten_seconds_ago = Instant::now() - Duration::from_secs(10);
        s.map
            .lock()
            .insert("k1".into(), state("big", ten_seconds_ago));
        let snap = s.snapshot(idle);
        assert_eq!(snap.rows.len(), 1);
        let age = now_ms() - snap.rows[0].last_seen_ms;
        assert!((9_900..11_000).contains(&age), "{age}");
        assert!(snap.expire_before_ms <= now_ms() - 299_000);
        assert!(s.snapshot(idle).rows.is_empty(), "nothing changed since");
        s.record_usage(
            "k1",
            "big",
            &vllm_sr_store::Usage {
                prompt_tokens: 10,
                cached_prompt_tokens: 0,
                completion_tokens: 1,
            },
        );
        let rows = s.snapshot(idle).rows;
        assert_eq!(rows.len(), 1, "usage marks the key changed");

        let restored = Sessions::default();
        restored
            .map
            .lock()
            .insert("k2".into(), state("small", Instant::now()));
        let mut bad = rows[0].clone();
        bad.key = "broken".into();
        bad.state = "{".into();
        let mut newer = rows[0].clone();
        newer.key = "k2".into();
        assert_eq!(restored.restore(vec![rows[0].clone(), bad, newer]), 1);
        let map = restored.map.lock();
        let k1 = &map["k1"];
        assert_eq!(k1.model, "big");
        assert_eq!(k1.turns, 3);
        assert!(k1.tool_loop);
        assert_eq!(k1.totals.prompt, 910);
        assert_eq!(k1.last_usage, Some((10, 0)));
        let age = k1.last_seen.elapsed();
        assert!(
            age >= Duration::from_secs(9) && age < Duration::from_secs(12),
            "{age:?}"
        );
        assert_eq!(map["k2"].model, "small", "a key already held is newer");
        assert!(!map.contains_key("broken"));
    }
}
