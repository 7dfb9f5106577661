//! One module per subcommand.

pub(crate) mod classify;
pub(crate) mod config;
pub(crate) mod eval;
pub(crate) mod models;
pub(crate) mod serve;
pub(crate) mod validate;

use std::path::{Path, PathBuf};

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

/// The `--config` argument every recipe command takes.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct RecipeArg {
    /// The recipe file.
    #[arg(
        long,
        short = 'c',
        default_value = "config.yaml",
        env = "VLLM_SR_CONFIG"
    )]
    pub(crate) config: PathBuf,
}
