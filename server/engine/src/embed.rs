//! The embedding interface the engine needs, and vector helpers.
//!
//! The engine never runs a model itself: prototype banks are embedded once at build time
//! through [`Embed`], and per-request vectors are computed by the caller (one batch per
//! request, on the model runtime's threads) and handed to `Engine::evaluate`.

use std::sync::mpsc::{self, RecvTimeoutError};
use std::time::{Duration, Instant};

use crate::EngineError;

/// A sentence embedder. Vectors are L2-normalised, so cosine similarity is a dot product.
pub trait Embed: Send + Sync {
    /// Embeds a batch of texts (blocking).
    fn embed(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, EngineError>;
    /// Embeds a batch within `budget` (blocking): `Ok(None)` when the budget ran out first.
    ///
    /// The default suits in-process embedders that cannot be interrupted: it embeds, then
    /// discards a result that arrived late. Embedders with their own threads stop waiting at
    /// the budget instead.
    fn embed_within(
        &self,
        texts: &[String],
        budget: Duration,
    ) -> Result<Option<Vec<Vec<f32>>>, EngineError> {
        let started = Instant::now();
        let vectors = self.embed(texts)?;
        Ok((started.elapsed() <= budget).then_some(vectors))
    }
    /// Vector dimension.
    fn dims(&self) -> usize;
    /// The model's id (selects a similarity calibration; see `bank::Calibration`).
    fn model_id(&self) -> &str {
        ""
    }
}

/// Whether any recipe of `config` declares a family that needs an embedding model (at build
/// time for its prototypes, per request for the query). Keyword-, structure- or header-only
/// recipes route without loading a model.
pub fn needs_embeddings(config: &vllm_sr_config::model::RouterConfig) -> bool {
    use vllm_sr_config::model::SignalFamily;
    config.recipes.iter().any(|r| {
        crate::engine::QUERY_FAMILIES
            .iter()
            .chain(&[SignalFamily::Jailbreak])
            .any(|f| r.signals.count(*f) > 0)
    })
}

/// Dot product of two equally long vectors (cosine similarity for unit vectors).
pub fn dot(a: &[f32], b: &[f32]) -> f64 {
    a.iter()
        .zip(b)
        .map(|(x, y)| f64::from(*x) * f64::from(*y))
        .sum()
}

/// Scales a vector to unit length (zero vectors stay zero).
pub fn normalize(v: &mut [f32]) {
    let n: f32 = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if n > 0.0 {
        v.iter_mut().for_each(|x| *x /= n);
    }
}

/// A deterministic, dependency-free embedder: hashed word and character-trigram counts,
/// L2-normalised. It captures lexical overlap only, not meaning; it exists so engine logic
/// can be tested without a model (and in debug builds). Never use it to route real traffic.
#[derive(Debug, Clone, Copy)]
pub struct LexicalEmbedder {
    dims: usize,
}

impl LexicalEmbedder {
    /// A lexical embedder with `dims` buckets.
    pub fn new(dims: usize) -> Self {
        Self { dims: dims.max(8) }
    }

    /// Embeds one text.
    pub fn embed_one(&self, text: &str) -> Vec<f32> {
        let mut v = vec![0f32; self.dims];
        let lower = text.to_lowercase();
        for word in lower
            .split(|c: char| !c.is_alphanumeric())
            .filter(|w| !w.is_empty())
        {
            v[bucket(word, self.dims)] += 1.0;
            let chars: Vec<char> = format!(" {word} ").chars().collect();
            for w in chars.windows(3) {
                let tri: String = w.iter().collect();
                v[bucket(&tri, self.dims)] += 0.5;
            }
        }
        normalize(&mut v);
        v
    }
}

fn bucket(s: &str, n: usize) -> usize {
    // FNV-1a: stable across runs and platforms.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in s.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    (h % n as u64) as usize
}

impl Embed for LexicalEmbedder {
    fn embed(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, EngineError> {
        Ok(texts.iter().map(|t| self.embed_one(t)).collect())
    }

    fn dims(&self) -> usize {
        self.dims
    }
}

/// The model runtime's embedder: the request blocks this thread (never a tokio worker)
/// until the model's own threads answer.
impl Embed for vllm_sr_models::Embedder {
    fn embed(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, EngineError> {
        let out = self
            .embed_blocking(texts.to_vec())
            .map_err(|e| EngineError::Embedding(e.to_string()))?;
        Ok(out.iter().map(|e| e.as_slice().to_vec()).collect())
    }

    /// Stops waiting at the budget. The model runtime's deadline is only reachable through its
    /// async API, so a short-lived waiter thread makes the blocking call and this thread waits
    /// on it with a timeout; a late result is dropped. (Async callers use `route::route`,
    /// which needs no extra thread.)
    fn embed_within(
        &self,
        texts: &[String],
        budget: Duration,
    ) -> Result<Option<Vec<Vec<f32>>>, EngineError> {
        let (tx, rx) = mpsc::sync_channel(1);
        let embedder = self.clone();
        let texts = texts.to_vec();
        std::thread::Builder::new()
            .name("vllm-sr-embed-wait".into())
            .spawn(move || {
                // The receiver is gone when the budget ran out; the result is then unused.
                let _ = tx.send(embedder.embed_blocking(texts));
            })
            .map_err(|e| EngineError::Embedding(format!("cannot start a waiter thread: {e}")))?;
        match rx.recv_timeout(budget) {
            Ok(Ok(out)) => Ok(Some(out.iter().map(|e| e.as_slice().to_vec()).collect())),
            Ok(Err(e)) => Err(EngineError::Embedding(e.to_string())),
            Err(RecvTimeoutError::Timeout) => Ok(None),
            Err(RecvTimeoutError::Disconnected) => Err(EngineError::Embedding(
                "the embedding waiter stopped without an answer".into(),
            )),
        }
    }

    fn dims(&self) -> usize {
        vllm_sr_models::Embedder::dims(self)
    }

    fn model_id(&self) -> &str {
        vllm_sr_models::Embedder::model_id(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lexical_embedder_is_unit_and_deterministic() {
        let e = LexicalEmbedder::new(256);
        let a = e.embed_one("What is the derivative of x^3?");
        let b = e.embed_one("What is the derivative of x^3?");
        assert_eq!(a, b);
        assert!((dot(&a, &a) - 1.0).abs() < 1e-5);
        let c = e.embed_one("derivative of a cubic");
        let d = e.embed_one("contract law indemnity");
        assert!(dot(&a, &c) > dot(&a, &d));
    }
}
