//! `StoreError`: every way opening, writing or reading the store can fail.
//!
//! The store never decides what a failure means for a client (no HTTP status here); the
//! gateway maps these to its own errors.

use std::path::PathBuf;

/// An error from the replay store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The state directory could not be created or the database file could not be opened.
    #[error("cannot open the store at {path}: {reason}")]
    Open {
        /// The database file (or its directory).
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// The database was written by a newer vllm-sr whose schema this build does not know.
    #[error(
        "the store at {path} has schema version {found}, newer than this build supports \
         ({supported}); upgrade vllm-sr or point it at another state directory"
    )]
    SchemaTooNew {
        /// The database file.
        path: PathBuf,
        /// `PRAGMA user_version` found in the file.
        found: u32,
        /// The newest version this build knows.
        supported: u32,
    },
    /// A read-only handle was opened on a database that still needs a migration (only the
    /// writer migrates).
    #[error(
        "the store at {path} has schema version {found}, this build needs {supported}; \
         open it once with the writer to migrate it"
    )]
    SchemaTooOld {
        /// The database file.
        path: PathBuf,
        /// `PRAGMA user_version` found in the file.
        found: u32,
        /// The version this build needs.
        supported: u32,
    },
    /// A schema migration failed; the database is left at the version before it.
    #[error("schema migration to version {version} failed: {source}")]
    Migration {
        /// The version the failed migration would have produced.
        version: u32,
        /// The SQLite error.
        #[source]
        source: rusqlite::Error,
    },
    /// Any other SQLite error.
    #[error("sqlite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// A stored record's JSON column could not be decoded.
    #[error("stored replay record {id} is unreadable: {source}")]
    CorruptRecord {
        /// The record id.
        id: String,
        /// The decoding error.
        #[source]
        source: serde_json::Error,
    },
    /// A stored segment (a batch of records) could not be decompressed or unframed.
    #[error("stored replay segment {seg} is unreadable: {reason}")]
    CorruptSegment {
        /// The segment's row id.
        seg: i64,
        /// What is wrong with it.
        reason: String,
    },
    /// A pagination cursor that this store did not produce.
    #[error("invalid replay cursor {0:?}")]
    InvalidCursor(String),
    /// The writer thread could not be started.
    #[error("cannot start the replay writer thread: {0}")]
    Spawn(#[source] std::io::Error),
    /// The writer thread has stopped (after `shutdown`, or it panicked).
    #[error("the replay writer has stopped")]
    WriterStopped,
}

/// Shorthand for results of this crate.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;
