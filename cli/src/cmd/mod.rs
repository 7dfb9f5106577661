//! One module per subcommand.

pub(crate) mod classify;
pub(crate) mod config;
pub(crate) mod eval;
pub(crate) mod models;
pub(crate) mod validate;

use std::path::Path;

use vllm_sr_config::{load_path, LoadError, LoadOptions, Loaded, ProcessEnv};

/// Loads a recipe from disk with the process environment.
pub(crate) fn load(path: &Path, strict: bool) -> Result<Loaded, LoadError> {
    load_path(
        path,
        &LoadOptions {
            strict,
            env: &ProcessEnv,
            base_dir: None,
        },
    )
}
