//! Tokenisation into padded id/mask matrices.
//!
//! Owns the `tokenizers::Tokenizer` set-up: whatever padding and truncation `tokenizer.json`
//! ships with (all-MiniLM's says `Fixed(128)`), we pad to the longest text of each batch and
//! truncate at the model's `max_seq_length`. Runs on the model's worker thread, never on an
//! async worker.

use std::path::Path;

use tokenizers::{Encoding, Tokenizer, TruncationDirection, TruncationParams, TruncationStrategy};

use crate::error::ModelError;

/// A tokenizer configured for batched inference.
#[derive(Debug, Clone)]
pub struct TextTokenizer {
    inner: Tokenizer,
    max_len: usize,
    pad_id: u32,
}

/// One tokenised text, unpadded.
#[derive(Debug, Clone)]
pub struct Tokens {
    /// Token ids including special tokens.
    pub ids: Vec<u32>,
    /// Byte offsets of each token in the original text (`(0, 0)` for special tokens).
    pub offsets: Vec<(usize, usize)>,
    /// True for tokens that the tokenizer marks as special (`[CLS]`, `[SEP]`, ...).
    pub special: Vec<bool>,
    /// Word index per token, `None` for special tokens.
    pub words: Vec<Option<u32>>,
}

/// A padded batch, row-major `(rows, seq)`.
#[derive(Debug, Clone)]
pub struct PaddedBatch {
    /// Number of rows.
    pub rows: usize,
    /// Padded length.
    pub seq: usize,
    /// Token ids, `rows * seq`.
    pub ids: Vec<u32>,
    /// 1 for real tokens, 0 for padding, `rows * seq`.
    pub mask: Vec<u32>,
}

impl TextTokenizer {
    /// Loads `tokenizer.json`, replacing its padding/truncation with ours.
    ///
    /// # Errors
    /// [`ModelError::Load`] if the file cannot be parsed.
    pub fn from_file(path: &Path, max_len: usize) -> Result<Self, ModelError> {
        let mut inner = Tokenizer::from_file(path).map_err(|e| ModelError::load(path, e))?;
        let pad_id = inner
            .get_padding()
            .map(|p| p.pad_id)
            .or_else(|| inner.token_to_id("[PAD]"))
            .or_else(|| inner.token_to_id("<pad>"))
            .unwrap_or(0);
        // We pad ourselves (per bucket) so the tokenizer must not.
        inner.with_padding(None);
        inner
            .with_truncation(Some(TruncationParams {
                max_length: max_len,
                strategy: TruncationStrategy::LongestFirst,
                stride: 0,
                direction: TruncationDirection::Right,
            }))
            .map_err(|e| ModelError::load(path, e))?;
        Ok(Self {
            inner,
            max_len,
            pad_id,
        })
    }

    /// Longest input in tokens, special tokens included.
    #[must_use]
    pub fn max_len(&self) -> usize {
        self.max_len
    }

    /// Tokenises texts without padding.
    ///
    /// # Errors
    /// [`ModelError::Inference`] if the tokenizer fails.
    pub fn encode(&self, texts: &[&str]) -> Result<Vec<Tokens>, ModelError> {
        texts
            .iter()
            .map(|t| {
                self.inner
                    .encode(*t, true)
                    .map(|e| to_tokens(&e))
                    .map_err(|e| ModelError::inference("tokenizer", e))
            })
            .collect()
    }

    /// Pads a group of tokenised texts to their longest member.
    #[must_use]
    pub fn pad(&self, group: &[&Tokens]) -> PaddedBatch {
        let seq = group.iter().map(|t| t.ids.len()).max().unwrap_or(0).max(1);
        let rows = group.len();
        let mut ids = Vec::with_capacity(rows * seq);
        let mut mask = Vec::with_capacity(rows * seq);
        for t in group {
            ids.extend_from_slice(&t.ids);
            mask.extend(std::iter::repeat_n(1u32, t.ids.len()));
            let pad = seq - t.ids.len();
            ids.extend(std::iter::repeat_n(self.pad_id, pad));
            mask.extend(std::iter::repeat_n(0u32, pad));
        }
        PaddedBatch {
            rows,
            seq,
            ids,
            mask,
        }
    }

    /// Number of tokens of `text` (special tokens included, after truncation).
    ///
    /// # Errors
    /// [`ModelError::Inference`] if the tokenizer fails.
    pub fn count(&self, text: &str) -> Result<usize, ModelError> {
        Ok(self.encode(&[text])?.first().map_or(0, |t| t.ids.len()))
    }

    /// The underlying tokenizer (for tools that build inputs of a given length).
    #[must_use]
    pub fn inner(&self) -> &Tokenizer {
        &self.inner
    }
}

fn to_tokens(e: &Encoding) -> Tokens {
    Tokens {
        ids: e.get_ids().to_vec(),
        offsets: e.get_offsets().to_vec(),
        special: e
            .get_special_tokens_mask()
            .iter()
            .map(|&m| m != 0)
            .collect(),
        words: e.get_word_ids().to_vec(),
    }
}
