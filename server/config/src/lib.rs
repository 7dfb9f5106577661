//! The v0.3 recipe contract: everything between a `config.yaml` on disk and a validated
//! [`RouterConfig`].
//!
//! Loading runs in two stages. [`raw`] types mirror the YAML one-to-one (and serialise the
//! effective config); [`model`] types are what the router runs on: names resolved to ids,
//! rule trees compiled, defaults applied. Every problem found on the way becomes a
//! [`Diagnostic`] with its YAML path and `line:column`, and all of them are reported at once.
//!
//! This crate does no network I/O and knows nothing of HTTP, models or SQLite.

mod build;
mod ctx;
mod defaults;
mod diag;
pub mod effective;
pub mod env;
mod legacy;
mod load;
pub mod model;
pub mod path;
mod position;
pub mod raw;
mod summary;

pub use build::{parse_duration, LINGUA_LANGUAGES, MMLU_CATEGORIES};
pub use defaults::default_global;
pub use diag::{Diagnostic, Diagnostics, Severity};
pub use effective::{to_yaml as effective_yaml, Secrets};
pub use env::{EnvSource, ProcessEnv};
pub use load::{load_bytes, load_path, LoadError, LoadOptions, Loaded, MAX_CONFIG_BYTES};
pub use model::RouterConfig;
pub use summary::{RecipeSummary, Summary};
