//! Sentence embedding: encoder states → pooled, truncated, normalised vectors.
//!
//! [`EmbeddingModel`] is the synchronous model (owned by one worker thread); the async handle
//! is [`crate::Embedder`]. Pooling and normalisation follow the sentence-transformers config
//! of the model directory; padding never leaks into mean pooling because the mask weights it out.

use std::path::Path;
use std::sync::Arc;

use candle_core::{DType, Tensor, D};

use crate::error::ModelError;
use crate::forward::{Core, LoadOptions};
use crate::layers::l2_normalize;
use crate::runtime::InferenceModel;
use crate::spec::{ModelSpec, Pooling};

/// One sentence vector. Cheap to clone (shared storage).
#[derive(Debug, Clone, PartialEq)]
pub struct Embedding(Arc<[f32]>);

impl Embedding {
    /// Wraps a vector.
    #[must_use]
    pub fn new(values: Vec<f32>) -> Self {
        Self(values.into())
    }

    /// The values.
    #[must_use]
    pub fn as_slice(&self) -> &[f32] {
        &self.0
    }

    /// Number of dimensions.
    #[must_use]
    pub fn dims(&self) -> usize {
        self.0.len()
    }

    /// Euclidean norm (1.0 for normalised models).
    #[must_use]
    pub fn norm(&self) -> f32 {
        self.0.iter().map(|v| v * v).sum::<f32>().sqrt()
    }

    /// Dot product (equals cosine for normalised vectors); 0 when lengths differ.
    #[must_use]
    pub fn dot(&self, other: &Self) -> f32 {
        if self.0.len() != other.0.len() {
            return 0.0;
        }
        self.0.iter().zip(other.0.iter()).map(|(a, b)| a * b).sum()
    }

    /// Cosine similarity; 0 when either vector is zero or lengths differ.
    #[must_use]
    pub fn cosine(&self, other: &Self) -> f32 {
        let denom = self.norm() * other.norm();
        if denom == 0.0 {
            0.0
        } else {
            self.dot(other) / denom
        }
    }
}

impl std::ops::Deref for Embedding {
    type Target = [f32];
    fn deref(&self) -> &[f32] {
        &self.0
    }
}

/// A loaded sentence-embedding model (synchronous; not shared between threads).
#[derive(Debug, Clone)]
pub struct EmbeddingModel {
    core: Core,
    pooling: Pooling,
    normalize: bool,
    dims: usize,
}

impl EmbeddingModel {
    /// Loads the model in `dir`, naming it `id`.
    ///
    /// # Errors
    /// [`ModelError::Load`] for missing or invalid files, [`ModelError::Invalid`] for a bad
    /// truncation size.
    pub fn load(id: &str, dir: &Path, options: &LoadOptions) -> Result<Self, ModelError> {
        let spec = ModelSpec::read(dir)?;
        let hidden = spec.hidden_size;
        let dims = match options.truncate_dim {
            Some(d) if d == 0 || d > hidden => {
                return Err(ModelError::Invalid(format!(
                    "truncate_dim {d} must be between 1 and the model's {hidden} dimensions"
                )))
            }
            Some(d) => d,
            None => hidden,
        };
        let pooling = spec.pooling;
        let normalize = spec.normalize;
        let (core, _vb) = Core::load(id, spec, options)?;
        Ok(Self {
            core,
            pooling,
            normalize,
            dims,
        })
    }

    /// Output dimensions (after Matryoshka truncation).
    #[must_use]
    pub fn dims(&self) -> usize {
        self.dims
    }

    /// The model id.
    #[must_use]
    pub fn id(&self) -> &str {
        &self.core.id
    }

    /// Max tokens per text (specials included).
    #[must_use]
    pub fn max_seq_length(&self) -> usize {
        self.core.tokenizer.max_len()
    }

    /// The tokenizer (for tools that need token counts).
    #[must_use]
    pub fn tokenizer(&self) -> &crate::tokenize::TextTokenizer {
        &self.core.tokenizer
    }

    /// Embeds `texts`, one vector per text in order.
    ///
    /// # Errors
    /// [`ModelError::Inference`] if tokenisation or the forward pass fails.
    pub fn embed(&self, texts: &[&str]) -> Result<Vec<Embedding>, ModelError> {
        if texts.is_empty() {
            return Ok(Vec::new());
        }
        let (pooling, normalize, dims) = (self.pooling, self.normalize, self.dims);
        self.core.run(texts, |_, batch, states| {
            let pooled = match pooling {
                Pooling::Cls => states.narrow(1, 0, 1)?.squeeze(1)?,
                Pooling::Mean => {
                    let device = states.device();
                    let mask = Tensor::from_slice(&batch.mask, (batch.rows, batch.seq), device)?
                        .to_dtype(DType::F32)?;
                    let summed = states.broadcast_mul(&mask.unsqueeze(D::Minus1)?)?.sum(1)?;
                    let counts = mask.sum_keepdim(1)?.clamp(1.0, f32::MAX)?;
                    summed.broadcast_div(&counts)?
                }
            };
            let pooled = if dims < pooled.dim(1)? {
                pooled.narrow(1, 0, dims)?
            } else {
                pooled
            };
            let pooled = if normalize {
                l2_normalize(&pooled)?
            } else {
                pooled
            };
            Ok(pooled
                .to_vec2::<f32>()?
                .into_iter()
                .map(Embedding::new)
                .collect())
        })
    }
}

impl InferenceModel for EmbeddingModel {
    type Output = Embedding;

    fn model_id(&self) -> &str {
        self.id()
    }

    fn infer(&mut self, texts: &[&str]) -> Result<Vec<Embedding>, ModelError> {
        self.embed(texts)
    }
}
