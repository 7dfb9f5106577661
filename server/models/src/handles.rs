//! The typed handles the router holds: [`Embedder`], [`SequenceClassifier`] and
//! [`TokenClassifier`]. Each is `Clone + Send + Sync`, costs an `Arc` clone, and forwards to a
//! [`ModelHandle`] whose worker threads own the model.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use crate::classify::{ClassScores, Entity, SequenceClassificationModel, TokenClassificationModel};
use crate::embed::{Embedding, EmbeddingModel};
use crate::error::ModelError;
use crate::forward::LoadOptions;
use crate::runtime::{ModelHandle, RuntimeOptions, RuntimeStats};

/// Sentence embeddings from a model on its own threads.
#[derive(Debug, Clone)]
pub struct Embedder {
    handle: ModelHandle<Embedding>,
    dims: usize,
    max_seq_length: usize,
}

impl Embedder {
    /// Loads the model in `dir` (blocking, ~0.1–0.3 s for MiniLM) and starts its workers.
    ///
    /// # Errors
    /// Load errors, or [`ModelError::Unavailable`] if threads cannot start.
    pub fn load(
        id: &str,
        dir: &Path,
        load: &LoadOptions,
        runtime: RuntimeOptions,
    ) -> Result<Self, ModelError> {
        Self::serve(EmbeddingModel::load(id, dir, load)?, runtime)
    }

    /// Serves an already loaded model.
    ///
    /// # Errors
    /// [`ModelError::Unavailable`] if threads cannot start.
    pub fn serve(model: EmbeddingModel, runtime: RuntimeOptions) -> Result<Self, ModelError> {
        let dims = model.dims();
        let max_seq_length = model.max_seq_length();
        Ok(Self {
            handle: ModelHandle::spawn(model, runtime)?,
            dims,
            max_seq_length,
        })
    }

    /// Embeds `texts` (one vector per text, in order) within the default deadline.
    ///
    /// # Errors
    /// `Overloaded`, `DeadlineExceeded`, `Unavailable` or `Inference`.
    pub async fn embed(&self, texts: Vec<String>) -> Result<Vec<Embedding>, ModelError> {
        self.handle.run(texts).await
    }

    /// As [`Embedder::embed`] with an explicit deadline.
    ///
    /// # Errors
    /// As [`Embedder::embed`].
    pub async fn embed_with_timeout(
        &self,
        texts: Vec<String>,
        timeout: Duration,
    ) -> Result<Vec<Embedding>, ModelError> {
        self.handle.run_with_timeout(texts, timeout).await
    }

    /// Blocking variant for non-async threads (never call it on a tokio worker).
    ///
    /// # Errors
    /// As [`Embedder::embed`].
    pub fn embed_blocking(&self, texts: Vec<String>) -> Result<Vec<Embedding>, ModelError> {
        self.handle
            .run_blocking(texts, self.handle.options().timeout)
    }

    /// Output dimensions.
    #[must_use]
    pub fn dims(&self) -> usize {
        self.dims
    }

    /// Max tokens per text; longer texts are truncated.
    #[must_use]
    pub fn max_seq_length(&self) -> usize {
        self.max_seq_length
    }

    /// Model id.
    #[must_use]
    pub fn model_id(&self) -> &str {
        self.handle.model_id()
    }

    /// Request-path counters.
    #[must_use]
    pub fn stats(&self) -> RuntimeStats {
        self.handle.stats()
    }
}

/// Whole-text classification (domain, jailbreak, fact-check, feedback, ...).
#[derive(Debug, Clone)]
pub struct SequenceClassifier {
    handle: ModelHandle<ClassScores>,
    labels: Arc<[String]>,
}

impl SequenceClassifier {
    /// Loads a `*ForSequenceClassification` checkpoint and starts its workers.
    ///
    /// # Errors
    /// Load errors, or [`ModelError::Unavailable`].
    pub fn load(
        id: &str,
        dir: &Path,
        load: &LoadOptions,
        runtime: RuntimeOptions,
    ) -> Result<Self, ModelError> {
        let model = SequenceClassificationModel::load(id, dir, load)?;
        let labels: Arc<[String]> = model.labels().to_vec().into();
        Ok(Self {
            handle: ModelHandle::spawn(model, runtime)?,
            labels,
        })
    }

    /// Scores each text over the labels.
    ///
    /// # Errors
    /// `Overloaded`, `DeadlineExceeded`, `Unavailable` or `Inference`.
    pub async fn classify(&self, texts: Vec<String>) -> Result<Vec<ClassScores>, ModelError> {
        self.handle.run(texts).await
    }

    /// As [`SequenceClassifier::classify`] with an explicit deadline.
    ///
    /// # Errors
    /// As [`SequenceClassifier::classify`].
    pub async fn classify_with_timeout(
        &self,
        texts: Vec<String>,
        timeout: Duration,
    ) -> Result<Vec<ClassScores>, ModelError> {
        self.handle.run_with_timeout(texts, timeout).await
    }

    /// Blocking variant for non-async threads.
    ///
    /// # Errors
    /// As [`SequenceClassifier::classify`].
    pub fn classify_blocking(&self, texts: Vec<String>) -> Result<Vec<ClassScores>, ModelError> {
        self.handle
            .run_blocking(texts, self.handle.options().timeout)
    }

    /// Label names by class index.
    #[must_use]
    pub fn labels(&self) -> &[String] {
        &self.labels
    }

    /// Model id.
    #[must_use]
    pub fn model_id(&self) -> &str {
        self.handle.model_id()
    }

    /// Request-path counters.
    #[must_use]
    pub fn stats(&self) -> RuntimeStats {
        self.handle.stats()
    }
}

/// Token classification into entity spans (PII and similar).
#[derive(Debug, Clone)]
pub struct TokenClassifier {
    handle: ModelHandle<Arc<[Entity]>>,
    labels: Arc<[String]>,
}

impl TokenClassifier {
    /// Loads a `*ForTokenClassification` checkpoint and starts its workers.
    ///
    /// # Errors
    /// Load errors, or [`ModelError::Unavailable`].
    pub fn load(
        id: &str,
        dir: &Path,
        load: &LoadOptions,
        runtime: RuntimeOptions,
    ) -> Result<Self, ModelError> {
        let model = TokenClassificationModel::load(id, dir, load)?;
        let labels: Arc<[String]> = model.labels().to_vec().into();
        Ok(Self {
            handle: ModelHandle::spawn(model, runtime)?,
            labels,
        })
    }

    /// Entities per text, with byte offsets into that text.
    ///
    /// # Errors
    /// `Overloaded`, `DeadlineExceeded`, `Unavailable` or `Inference`.
    pub async fn extract(&self, texts: Vec<String>) -> Result<Vec<Arc<[Entity]>>, ModelError> {
        self.handle.run(texts).await
    }

    /// Blocking variant for non-async threads.
    ///
    /// # Errors
    /// As [`TokenClassifier::extract`].
    pub fn extract_blocking(&self, texts: Vec<String>) -> Result<Vec<Arc<[Entity]>>, ModelError> {
        self.handle
            .run_blocking(texts, self.handle.options().timeout)
    }

    /// Tag names by class index.
    #[must_use]
    pub fn labels(&self) -> &[String] {
        &self.labels
    }

    /// Model id.
    #[must_use]
    pub fn model_id(&self) -> &str {
        self.handle.model_id()
    }

    /// Request-path counters.
    #[must_use]
    pub fn stats(&self) -> RuntimeStats {
        self.handle.stats()
    }
}
