//! vllm-sr's store: Router Replay records, the insights computed from them and Router Learning
//! session snapshots, in one SQLite file under the state directory. The only crate that knows SQL.
//!
//! - [`Store::open`] creates or migrates `vllm-sr.sqlite3` (WAL) and starts one writer thread.
//! - [`ReplaySink::record`] is what the request path calls: it packs the record into
//!   the calling thread's intake shard and never blocks; past the queue's capacity it drops
//!   the record and counts it ([`ReplaySink::dropped`] is `replay_dropped_total`). The
//!   writer stores each batch as one compressed segment.
//! - [`ReplayReader`] answers the replay API (`get`, `list` with cursor pagination, `count`)
//!   and [`ReplayReader::insights`]; its methods block, so async callers use
//!   `spawn_blocking`.
//! - [`ReplaySink::snapshot_sessions`] and [`ReplayReader::sessions`] mirror Router
//!   Learning's per-session state (`learning_sessions`), so a restart keeps running agents on
//!   their model.
//! - [`PriceTable`] turns backend-reported usage into the actual and baseline [`Cost`] the
//!   gateway puts in each record.
//!
//! The crate knows nothing of HTTP, the recipe types or the engine: callers convert their
//! own types into a [`ReplayRecord`].

mod cost;
mod error;
mod insights;
mod intake;
mod legacy;
mod migrate;
mod packed;
mod query;
mod record_json;
mod rows;
mod segment;
mod segments;
mod sessions;
mod store;
mod view;
mod writer;

pub use cost::{PriceTable, Pricing};
pub use error::{Result, StoreError};
pub use insights::{Group, GroupStats, Insights, Percentiles, TimeBucket};
pub use migrate::SCHEMA_VERSION;
pub use packed::{FieldName, JsonPacker};
pub use query::{Page, ReplayFilter, ReplayReader, MAX_PAGE};
pub use rows::{
    cap_body, new_record_id, now_ms, record_id_at, record_key, record_time_ms, Cost, LearningTrace,
    Lifecycle, RawJson, ReplayRecord, Timings, Usage, RECORD_SCHEMA_VERSION,
};
pub use sessions::{SessionRow, SessionSnapshot};
pub use store::{Store, DB_FILE_NAME};
pub use writer::{ReplaySink, SinkStats, StoreOptions, RETENTION_CHUNK};
