//! `Store`: opening the one database file under a state directory and handing out the write
//! handle ([`ReplaySink`]) and the read handle ([`ReplayReader`]).
//!
//! Opening runs on the caller's thread so every setup error (directory, file, schema
//! version, migration) is returned synchronously; after that the writer thread owns the write
//! connection and the reader owns its read-only pool.

use std::path::{Path, PathBuf};

use crate::error::{Result, StoreError};
use crate::migrate::open_writer;
use crate::query::ReplayReader;
use crate::writer::{ReplaySink, StoreOptions};

/// File name of the database inside the state directory.
pub const DB_FILE_NAME: &str = "vllm-sr.sqlite3";

/// An open store: the writer thread and the read pool over one SQLite file.
#[derive(Debug, Clone)]
pub struct Store {
    path: PathBuf,
    sink: ReplaySink,
    reader: ReplayReader,
}

impl Store {
    /// Opens (creating the directory and file if needed, migrating an older schema)
    /// `dir/`[`DB_FILE_NAME`] and starts the writer thread. Blocking: async callers use
    /// `spawn_blocking`.
    ///
    /// # Errors
    /// [`StoreError::Open`], [`StoreError::SchemaTooNew`], [`StoreError::Migration`],
    /// [`StoreError::Spawn`], SQLite errors.
    pub fn open(dir: &Path, options: &StoreOptions) -> Result<Self> {
        std::fs::create_dir_all(dir).map_err(|e| StoreError::Open {
            path: dir.to_owned(),
            reason: e.to_string(),
        })?;
        let path = dir.join(DB_FILE_NAME);
        let conn = open_writer(&path)?;
        let reader = ReplayReader::open(&path, options.read_connections)?;
        let sink = ReplaySink::spawn(conn, options)?;
        Ok(Self { path, sink, reader })
    }

    /// The database file.
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A write handle for the request path.
    #[must_use]
    pub fn sink(&self) -> ReplaySink {
        self.sink.clone()
    }

    /// A read handle for the replay API and insights.
    #[must_use]
    pub fn reader(&self) -> ReplayReader {
        self.reader.clone()
    }

    /// Commits everything queued and stops the writer (see [`ReplaySink::shutdown`]); reads
    /// keep working.
    ///
    /// # Errors
    /// As [`ReplaySink::shutdown`].
    pub fn shutdown(&self) -> Result<()> {
        self.sink.shutdown()
    }
}
