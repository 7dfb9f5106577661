//! Turning a list of texts into encoder forward passes.
//!
//! Owns the loading options shared by every model kind ([`LoadOptions`]) and the grouping of a
//! batch into forward passes: texts are tokenised once, optionally sorted into length buckets so
//! short texts are not padded to the longest one, padded per group, and the per-row results are
//! put back in the caller's order.

use candle_core::Tensor;

use crate::device::DeviceSpec;
use crate::encoder::Encoder;
use crate::error::ModelError;
use crate::gemm::CpuKernel;
use crate::layers::Precision;
use crate::spec::ModelSpec;
use crate::tokenize::{PaddedBatch, TextTokenizer, Tokens};

/// How a model is loaded and how its forward passes are shaped.
#[derive(Debug, Clone)]
pub struct LoadOptions {
    /// Device to run on.
    pub device: DeviceSpec,
    /// Weight precision of the linear layers.
    pub precision: Precision,
    /// Kernel of the f32 CPU forward pass of BERT encoders (ignored for q8, GPUs and
    /// ModernBERT, which always run on candle).
    pub cpu_kernel: CpuKernel,
    /// Override of the model's max sequence length (tokens, specials included). It may exceed the
    /// sentence-transformers setting (the model was trained at that length, so quality may
    /// drop) but never the position table.
    pub max_seq_length: Option<usize>,
    /// Matryoshka truncation: keep the first N dimensions of each embedding (then re-normalise).
    pub truncate_dim: Option<usize>,
    /// Group texts of similar length into separate forward passes.
    pub length_bucketing: bool,
    /// Most rows in one forward pass.
    pub max_rows_per_forward: usize,
}

impl Default for LoadOptions {
    fn default() -> Self {
        Self {
            device: DeviceSpec::Cpu,
            precision: Precision::F32,
            cpu_kernel: CpuKernel::Auto,
            max_seq_length: None,
            truncate_dim: None,
            length_bucketing: true,
            max_rows_per_forward: 32,
        }
    }
}

/// The loaded pieces every model kind shares.
#[derive(Debug, Clone)]
pub(crate) struct Core {
    pub(crate) id: String,
    pub(crate) spec: ModelSpec,
    pub(crate) tokenizer: TextTokenizer,
    pub(crate) encoder: Encoder,
    pub(crate) bucketing: bool,
    pub(crate) max_rows: usize,
}

impl Core {
    pub(crate) fn load(
        id: &str,
        spec: ModelSpec,
        options: &LoadOptions,
    ) -> Result<(Self, candle_nn::VarBuilder<'static>), ModelError> {
        let device = options.device.to_device()?;
        let max_len = options
            .max_seq_length
            .map_or(spec.max_seq_length, |m| m.min(spec.max_positions))
            .max(2);
        let tokenizer = TextTokenizer::from_file(&spec.tokenizer, max_len)?;
        if !options.cpu_kernel.available() {
            return Err(ModelError::Invalid(format!(
                "CPU kernel {:?} is not in this build (cargo feature `openblas` of vllm-sr-models)",
                options.cpu_kernel
            )));
        }
        let (encoder, vb) = Encoder::load(&spec, &device, options.precision, options.cpu_kernel)?;
        Ok((
            Self {
                id: id.to_owned(),
                spec,
                tokenizer,
                encoder,
                bucketing: options.length_bucketing,
                max_rows: options.max_rows_per_forward.max(1),
            },
            vb,
        ))
    }

    pub(crate) fn err(&self, e: impl std::fmt::Display) -> ModelError {
        ModelError::inference(&self.id, e)
    }

    /// Tokenises `texts`, runs the encoder per group, and calls `per_group` with the group's
    /// token lists, its padded batch and its token states `[rows, seq, h]`. Returns one output
    /// per text, in the order of `texts`.
    pub(crate) fn run<T>(
        &self,
        texts: &[&str],
        mut per_group: impl FnMut(&[&Tokens], &PaddedBatch, &Tensor) -> candle_core::Result<Vec<T>>,
    ) -> Result<Vec<T>, ModelError> {
        let tokens = self.tokenizer.encode(texts)?;
        let groups = plan_groups(&tokens, self.max_rows, self.bucketing);
        let mut out: Vec<Option<T>> = std::iter::repeat_with(|| None).take(texts.len()).collect();
        let device = self.encoder.device();
        for group in groups {
            let members: Vec<&Tokens> = group.iter().filter_map(|&i| tokens.get(i)).collect();
            let batch = self.tokenizer.pad(&members);
            let ids = Tensor::from_slice(&batch.ids, (batch.rows, batch.seq), device)
                .map_err(|e| self.err(e))?;
            let mask = Tensor::from_slice(&batch.mask, (batch.rows, batch.seq), device)
                .map_err(|e| self.err(e))?;
            let states = self.encoder.forward(&ids, &mask).map_err(|e| self.err(e))?;
            let results = per_group(&members, &batch, &states).map_err(|e| self.err(e))?;
            if results.len() != group.len() {
                return Err(self.err("head returned the wrong number of rows"));
            }
            for (i, r) in group.into_iter().zip(results) {
                if let Some(slot) = out.get_mut(i) {
                    *slot = Some(r);
                }
            }
        }
        out.into_iter()
            .map(|o| o.ok_or_else(|| self.err("a text got no result")))
            .collect()
    }
}

/// Splits indices into forward-pass groups of at most `max_rows`. With bucketing, texts are
/// sorted by length and a group closes when the next text would be padded by more than a
/// quarter (short texts, up to 32 tokens, always share).
pub(crate) fn plan_groups(tokens: &[Tokens], max_rows: usize, bucketing: bool) -> Vec<Vec<usize>> {
    let mut order: Vec<usize> = (0..tokens.len()).collect();
    if !bucketing {
        return order
            .chunks(max_rows.max(1))
            .map(<[usize]>::to_vec)
            .collect();
    }
    let len = |i: usize| tokens.get(i).map_or(0, |t| t.ids.len());
    order.sort_by_key(|&i| std::cmp::Reverse(len(i)));
    let mut groups: Vec<Vec<usize>> = Vec::new();
    let mut current: Vec<usize> = Vec::new();
    let mut longest = 0;
    for i in order {
        let l = len(i);
        let fits = current.len() < max_rows && (longest <= 32 || l * 4 >= longest * 3);
        if !current.is_empty() && !fits {
            groups.push(std::mem::take(&mut current));
        }
        if current.is_empty() {
            longest = l;
        }
        current.push(i);
    }
    if !current.is_empty() {
        groups.push(current);
    }
    groups
}

#[cfg(test)]
mod tests {
    use super::*;

    fn toks(n: usize) -> Tokens {
        Tokens {
            ids: vec![1; n],
            offsets: vec![(0, 0); n],
            special: vec![false; n],
            words: vec![None; n],
        }
    }

    #[test]
    fn groups_cover_every_index_once() {
        let lens = [5, 300, 7, 120, 100, 8, 64, 250];
        let t: Vec<Tokens> = lens.iter().map(|&n| toks(n)).collect();
        for bucketing in [false, true] {
            for max_rows in [1, 2, 3, 32] {
                let groups = plan_groups(&t, max_rows, bucketing);
                let mut all: Vec<usize> = groups.iter().flatten().copied().collect();
                all.sort_unstable();
                assert_eq!(all, (0..lens.len()).collect::<Vec<_>>());
                assert!(groups.iter().all(|g| !g.is_empty() && g.len() <= max_rows));
            }
        }
        // Bucketing keeps 300 and 5 apart.
        let groups = plan_groups(&t, 32, true);
        let with_300 = groups.iter().find(|g| g.contains(&1)).unwrap();
        assert!(!with_300.contains(&0));
        assert_eq!(plan_groups(&t, 32, false).len(), 1);
    }
}
