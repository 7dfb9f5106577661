//! `pull`: downloading a model directory from the Hugging Face hub.
//!
//! Fetches the files a sentence-transformers / transformers checkpoint needs into
//! `<models_dir>/<org>/<name>` with an indicatif progress bar per file. Each file is written to
//! a `.part` file and renamed when complete, so an interrupted pull never leaves a half-written
//! weights file that `resolve` would accept. Only compiled with the `hub` feature; nothing in the
//! tests or the offline install uses the network (tests point it at a local HTTP server).

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};

use crate::error::ModelError;
use crate::registry::{is_repo_id, ModelRegistry, ResolvedModel};

/// The default hub endpoint (`HF_ENDPOINT` overrides it in [`PullOptions::from_env`]).
pub const DEFAULT_ENDPOINT: &str = "https://huggingface.co";

/// Files that must exist for a usable model.
const REQUIRED: &[&str] = &["config.json", "tokenizer.json"];
/// Weights, first one found wins.
const WEIGHTS: &[&str] = &["model.safetensors", "pytorch_model.bin"];
/// Sentence-transformers and tokenizer extras, fetched when present.
const OPTIONAL: &[&str] = &[
    "modules.json",
    "sentence_bert_config.json",
    "config_sentence_transformers.json",
    "1_Pooling/config.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "vocab.txt",
];

/// Where and how to download from.
#[derive(Debug, Clone)]
pub struct PullOptions {
    /// Hub base URL.
    pub endpoint: String,
    /// Revision (branch, tag or commit).
    pub revision: String,
    /// Bearer token for gated or private repos.
    pub token: Option<String>,
    /// Show progress bars on stderr.
    pub progress: bool,
}

impl PullOptions {
    /// Options from `HF_ENDPOINT` and `HF_TOKEN`, revision `main`, progress on.
    #[must_use]
    pub fn from_env() -> Self {
        let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        Self {
            endpoint: var("HF_ENDPOINT").unwrap_or_else(|| DEFAULT_ENDPOINT.to_owned()),
            revision: "main".to_owned(),
            token: var("HF_TOKEN"),
            progress: true,
        }
    }
}

impl ModelRegistry {
    /// Downloads `repo_id` into the models directory (skipping files already there) and
    /// returns where it is.
    ///
    /// # Errors
    /// [`ModelError::Download`] with the HTTP status or I/O failure; [`ModelError::Invalid`]
    /// for a malformed repo id.
    pub fn pull(&self, repo_id: &str, options: &PullOptions) -> Result<ResolvedModel, ModelError> {
        if !is_repo_id(repo_id) {
            return Err(ModelError::Invalid(format!(
                "{repo_id:?} is not a repo id like org/name"
            )));
        }
        let dest = self.models_dir().join(repo_id);
        std::fs::create_dir_all(&dest)
            .map_err(|e| dl_err(repo_id, format!("{}: {e}", dest.display())))?;
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_connect(Some(Duration::from_secs(15)))
            .build()
            .into();
        let fetch = |file: &str| fetch_file(&agent, options, repo_id, file, &dest);
        for file in REQUIRED {
            if !fetch(file)? {
                return Err(dl_err(
                    repo_id,
                    format!("{file} not found in the repository"),
                ));
            }
        }
        let mut have_weights = false;
        for file in WEIGHTS {
            if fetch(file)? {
                have_weights = true;
                break;
            }
        }
        if !have_weights {
            return Err(dl_err(
                repo_id,
                "no model.safetensors or pytorch_model.bin in the repository",
            ));
        }
        for file in OPTIONAL {
            fetch(file)?;
        }
        Ok(ResolvedModel {
            id: repo_id.to_owned(),
            dir: dest,
        })
    }
}

fn dl_err(repo_id: &str, reason: impl std::fmt::Display) -> ModelError {
    ModelError::Download {
        reference: repo_id.to_owned(),
        reason: reason.to_string(),
    }
}

/// Downloads one file; `Ok(false)` when the hub says it does not exist (404).
fn fetch_file(
    agent: &ureq::Agent,
    options: &PullOptions,
    repo_id: &str,
    file: &str,
    dest: &Path,
) -> Result<bool, ModelError> {
    let target: PathBuf = dest.join(file);
    if target.is_file() {
        return Ok(true);
    }
    let url = format!(
        "{}/{repo_id}/resolve/{}/{file}",
        options.endpoint.trim_end_matches('/'),
        options.revision
    );
    let mut request = agent.get(&url);
    if let Some(token) = &options.token {
        request = request.header("Authorization", &format!("Bearer {token}"));
    }
    let response = request
        .call()
        .map_err(|e| dl_err(repo_id, format!("{url}: {e}")))?;
    let status = response.status().as_u16();
    if status == 404 {
        return Ok(false);
    }
    if !(200..300).contains(&status) {
        let hint = if status == 401 || status == 403 {
            " (gated or private: set HF_TOKEN)"
        } else {
            ""
        };
        return Err(dl_err(repo_id, format!("{url}: HTTP {status}{hint}")));
    }
    let body = response.into_body();
    let total = body.content_length();
    if let Some(parent) = target.parent() {
        std::fs::create_dir_all(parent).map_err(|e| dl_err(repo_id, e))?;
    }
    let part = target.with_extension("part");
    let bar = if options.progress {
        let bar = total.map_or_else(ProgressBar::new_spinner, ProgressBar::new);
        if let Ok(style) = ProgressStyle::with_template(
            "{msg:32!} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
        ) {
            bar.set_style(style.progress_chars("=> "));
        }
        bar.set_message(file.to_owned());
        bar
    } else {
        ProgressBar::hidden()
    };
    let mut reader = body.into_reader();
    let mut out = std::fs::File::create(&part)
        .map_err(|e| dl_err(repo_id, format!("{}: {e}", part.display())))?;
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = reader
            .read(&mut buf)
            .map_err(|e| dl_err(repo_id, format!("{url}: {e}")))?;
        if n == 0 {
            break;
        }
        out.write_all(buf.get(..n).unwrap_or_default())
            .map_err(|e| dl_err(repo_id, format!("{}: {e}", part.display())))?;
        bar.inc(n as u64);
    }
    out.flush().map_err(|e| dl_err(repo_id, e))?;
    drop(out);
    bar.finish();
    std::fs::rename(&part, &target).map_err(|e| dl_err(repo_id, e))?;
    Ok(true)
}
