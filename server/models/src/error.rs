//! The crate's one error type, [`ModelError`].
//!
//! Every public fallible function returns it. Variants are chosen by what a caller does next:
//! `Overloaded` and `DeadlineExceeded` are load-shedding signals (retry later or use a fallback),
//! `NotFound` carries the instruction to install the model, and `Load`/`Inference` wrap the
//! underlying candle or tokenizer failure as text.

use std::path::PathBuf;
use std::time::Duration;

/// Errors from loading, resolving or running a model.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum ModelError {
    /// The model's request queue is full; the request was not accepted.
    #[error("model {model} is overloaded: its queue of {capacity} requests is full")]
    Overloaded {
        /// Model id.
        model: String,
        /// Queue capacity that was exceeded.
        capacity: usize,
    },
    /// The request was not answered before its deadline.
    #[error("model {model} did not answer within {timeout:?}")]
    DeadlineExceeded {
        /// Model id.
        model: String,
        /// The time budget the request had.
        timeout: Duration,
    },
    /// A model reference did not resolve to a usable local directory.
    #[error("model {reference:?} is not installed (looked in: {searched}); {how_to_get}")]
    NotFound {
        /// The reference as given (repo id or path).
        reference: String,
        /// The places that were searched, joined for display.
        searched: String,
        /// One sentence saying how to obtain the model.
        how_to_get: String,
    },
    /// The model directory exists but a file in it is missing or invalid.
    #[error("cannot load model from {path}: {reason}")]
    Load {
        /// Directory or file involved.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// Tokenisation or the forward pass failed.
    #[error("inference failed in {model}: {reason}")]
    Inference {
        /// Model id.
        model: String,
        /// What went wrong.
        reason: String,
    },
    /// The worker thread that owns the model is gone (it failed or was shut down).
    #[error("model {model} is not running: {reason}")]
    Unavailable {
        /// Model id.
        model: String,
        /// Why.
        reason: String,
    },
    /// The caller asked for something the model cannot do (bad option, wrong device, ...).
    #[error("invalid request: {0}")]
    Invalid(String),
    /// Downloading a model failed.
    #[error("download of {reference} failed: {reason}")]
    Download {
        /// Repo id.
        reference: String,
        /// What went wrong.
        reason: String,
    },
}

impl ModelError {
    /// Builds a [`ModelError::Load`] from any displayable error.
    pub(crate) fn load(path: impl Into<PathBuf>, reason: impl std::fmt::Display) -> Self {
        Self::Load {
            path: path.into(),
            reason: reason.to_string(),
        }
    }

    /// Builds a [`ModelError::Inference`] from any displayable error.
    pub(crate) fn inference(model: &str, reason: impl std::fmt::Display) -> Self {
        Self::Inference {
            model: model.to_owned(),
            reason: reason.to_string(),
        }
    }

    /// True for the load-shedding errors a caller may retry later.
    #[must_use]
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            Self::Overloaded { .. } | Self::DeadlineExceeded { .. }
        )
    }
}
