//! `vllm-sr-models`: the model runtime of vllm-sr, and the only crate that knows candle.
//!
//! It turns text into sentence vectors and class scores on CPU in milliseconds without ever
//! blocking an async worker:
//! - [`Embedder`] — sentence embeddings for BERT-family encoders and ModernBERT, with the
//!   model's own pooling (mean/CLS), L2 normalisation, Matryoshka truncation and max length;
//! - [`SequenceClassifier`] — `*ForSequenceClassification` heads (softmax or multi-label sigmoid);
//! - [`TokenClassifier`] — `*ForTokenClassification` heads folded into BIO entity spans;
//! - [`ModelRegistry`] — model references (repo ids or directories) to local directories, and
//!   `pull` from the hub (feature `hub`).
//!
//! Architecture invariants:
//! - Every loaded model is owned by dedicated OS threads fed by a bounded queue
//!   ([`runtime`]); callers hold cheap `Clone + Send + Sync` handles and get
//!   [`ModelError::Overloaded`] or [`ModelError::DeadlineExceeded`] instead of waiting forever.
//! - Tokenisation runs on those threads too, never on a tokio worker.
//! - CPU is the default device; `cuda`/`metal` features pass through to candle and nothing in
//!   the default build or tests needs a GPU or a network.
//!
//! The offline default model and the choice behind it are described in `README.md` next to
//! this crate's `Cargo.toml`.

mod bert;
mod bert_fast;
#[cfg(feature = "openblas")]
mod blas;
mod classify;
mod device;
mod embed;
mod encoder;
mod error;
mod forward;
mod gemm;
mod handles;
#[cfg(feature = "hub")]
mod hub;
#[cfg(test)]
mod kernel_bench;
mod layers;
mod ops;
mod packed;
mod registry;
mod rowops;
pub mod runtime;
mod spec;
mod tokenize;

pub use classify::{ClassScores, Entity, SequenceClassificationModel, TokenClassificationModel};
pub use device::DeviceSpec;
pub use embed::{Embedding, EmbeddingModel};
pub use error::ModelError;
pub use forward::LoadOptions;
pub use gemm::CpuKernel;
pub use handles::{Embedder, SequenceClassifier, TokenClassifier};
#[cfg(feature = "hub")]
pub use hub::{PullOptions, DEFAULT_ENDPOINT};
pub use layers::Precision;
pub use registry::{
    is_repo_id, repo_models_dir, InstalledModel, ModelRegistry, ResolvedModel,
    DEFAULT_EMBEDDING_MODEL, MODELS_DIR_ENV,
};
pub use runtime::{InferenceModel, ModelHandle, RuntimeOptions, RuntimeStats};
pub use spec::{Architecture, ModelSpec, Pooling, ProblemType};
pub use tokenize::{TextTokenizer, Tokens};
