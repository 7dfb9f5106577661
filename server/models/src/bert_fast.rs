//! BERT encoder forward pass over plain f32 buffers (the CPU f32 fast path).
//!
//! Owns the fast path of [`crate::bert::Bert`]: the same maths as the candle path (fused QKV
//! with the attention scale folded into W_q, erf GELU, additive key mask), but written against
//! contiguous `Vec<f32>` buffers and a GEMM chosen by [`CpuKernel`] (the built-in packed kernel,
//! or OpenBLAS with the `openblas` feature), so that
//! - every linear layer is one GEMM whose output buffer is pre-filled with the bias
//!   (and the residual, for the two projections followed by a layer norm), with GELU or the
//!   layer norm applied to each finished row block while it is in cache;
//! - attention reads Q, K and V straight out of the fused QKV buffer through strided views
//!   (no permute or `.contiguous()` copies) and runs per (sequence, head) as two GEMMs around
//!   an in-place softmax that ignores padding keys past the last real token;
//! - the per-call buffers are allocated once per forward pass, not once per op.
//!
//! Work is split over the current rayon pool (row blocks of each GEMM, (sequence, head) pairs
//! of attention); the GEMM kernels themselves are single-threaded.

use candle_core::{Device, Tensor};
use rayon::prelude::*;

use crate::bert::Act;
use crate::gemm::{p_v, q_kt, CpuKernel, Weight};
use crate::layers::{LayerNorm, Linear};
use crate::rowops::{activate, layer_norm_rows, softmax_rows};

/// Layer norm parameters over the hidden dimension.
#[derive(Debug, Clone)]
pub(crate) struct Norm {
    weight: Vec<f32>,
    bias: Vec<f32>,
    eps: f32,
}

impl Norm {
    pub(crate) fn from_layer(n: &LayerNorm) -> candle_core::Result<Self> {
        let (weight, bias, eps) = n.parts()?;
        Ok(Self { weight, bias, eps })
    }

    /// Normalises every row of `xs` (rows of `weight.len()` values) in place.
    fn apply(&self, xs: &mut [f32]) {
        layer_norm_rows(xs, &self.weight, &self.bias, self.eps);
    }
}

/// A dense layer: weight `[in, out]` in the kernel's layout and bias `[out]` (zeros when absent).
#[derive(Debug, Clone)]
pub(crate) struct Dense {
    weight: Weight,
    bias: Vec<f32>,
    in_dim: usize,
    out_dim: usize,
}

impl Dense {
    pub(crate) fn from_linear(l: &Linear, kernel: CpuKernel) -> candle_core::Result<Self> {
        let (weight, bias, in_dim, out_dim) = l.dense_parts()?;
        Ok(Self {
            weight: Weight::new(weight, in_dim, out_dim, kernel)?,
            bias,
            in_dim,
            out_dim,
        })
    }

    /// `out = x W + b (+ residual)`, then `epilogue` on each finished row block.
    fn forward(
        &self,
        x: &[f32],
        residual: Option<&[f32]>,
        out: &mut Vec<f32>,
        epilogue: impl Fn(&mut [f32]) + Sync,
    ) -> candle_core::Result<()> {
        let rows = x.len() / self.in_dim;
        out.clear();
        out.reserve(rows * self.out_dim);
        match residual {
            Some(r) => {
                for rr in r.chunks_exact(self.out_dim) {
                    out.extend(rr.iter().zip(&self.bias).map(|(a, b)| a + b));
                }
            }
            None => (0..rows).for_each(|_| out.extend_from_slice(&self.bias)),
        }
        self.weight.gemm_rows(x, out, epilogue)
    }
}

/// One encoder layer.
#[derive(Debug, Clone)]
pub(crate) struct FastLayer {
    pub(crate) qkv: Dense,
    pub(crate) attn_out: Dense,
    pub(crate) attn_norm: Norm,
    pub(crate) inter: Dense,
    pub(crate) out: Dense,
    pub(crate) out_norm: Norm,
}

/// The whole encoder as plain buffers.
#[derive(Debug, Clone)]
pub(crate) struct FastBert {
    pub(crate) word: Vec<f32>,
    pub(crate) position: Vec<f32>,
    pub(crate) token_type0: Vec<f32>,
    pub(crate) emb_norm: Norm,
    pub(crate) layers: Vec<FastLayer>,
    pub(crate) heads: usize,
    pub(crate) head_dim: usize,
    pub(crate) hidden: usize,
    pub(crate) act: Act,
    pub(crate) kernel: CpuKernel,
}

/// Per-sequence key range and mask: keys past `len` are padding and skipped; inside it,
/// `bias`/`keep` mask any padding token (0 / 1 for real tokens).
struct Keys {
    len: usize,
    bias: Vec<f32>,
    keep: Vec<f32>,
    /// Whether some key inside `len` is padding (only then are `bias`/`keep` applied).
    holes: bool,
}

impl Keys {
    fn mask(&self) -> Option<(&[f32], &[f32])> {
        self.holes.then_some((&self.bias, &self.keep))
    }
}

fn keys_of(mask: &[u32]) -> Keys {
    let len = mask.iter().rposition(|&m| m != 0).map_or(0, |i| i + 1);
    if len == 0 {
        // No real token at all: attend to everything rather than divide by zero.
        return Keys {
            len: mask.len(),
            bias: vec![0.0; mask.len()],
            keep: vec![1.0; mask.len()],
            holes: false,
        };
    }
    let m = mask.get(..len).unwrap_or_default();
    Keys {
        len,
        bias: m
            .iter()
            .map(|&v| if v == 0 { -1e30 } else { 0.0 })
            .collect(),
        keep: m.iter().map(|&v| if v == 0 { 0.0 } else { 1.0 }).collect(),
        holes: m.contains(&0),
    }
}

impl FastBert {
    /// Token states `[b, s, h]` on CPU for ids and mask `[b, s]` (u32, 1 = real token).
    ///
    /// # Errors
    /// On shape mismatches, an id outside the vocabulary or a sequence longer than the
    /// position table.
    pub(crate) fn forward(&self, ids: &Tensor, mask: &Tensor) -> candle_core::Result<Tensor> {
        let (b, s) = ids.dims2()?;
        let h = self.hidden;
        let ids = ids.flatten_all()?.to_vec1::<u32>()?;
        let mask = mask.flatten_all()?.to_vec1::<u32>()?;
        if mask.len() != b * s {
            candle_core::bail!("mask has {} values for {b}x{s} ids", mask.len());
        }
        if s * h > self.position.len() {
            candle_core::bail!("sequence of {s} exceeds the position table");
        }
        let vocab = self.word.len() / h;
        let mut x = Vec::with_capacity(b * s * h);
        for (row, &id) in ids.iter().enumerate() {
            let id = id as usize;
            if id >= vocab {
                candle_core::bail!("token id {id} outside the vocabulary of {vocab}");
            }
            let t = row % s;
            let w = &self.word[id * h..(id + 1) * h];
            let p = &self.position[t * h..(t + 1) * h];
            x.extend(
                w.iter()
                    .zip(p)
                    .zip(&self.token_type0)
                    .map(|((a, b), c)| a + b + c),
            );
        }
        self.emb_norm.apply(&mut x);
        let keys: Vec<Keys> = mask.chunks_exact(s.max(1)).map(keys_of).collect();
        let mut bufs = Buffers::default();
        for layer in &self.layers {
            self.layer_forward(layer, &mut x, &keys, b, s, &mut bufs)?;
        }
        Tensor::from_vec(x, (b, s, h), &Device::Cpu)
    }

    fn layer_forward(
        &self,
        l: &FastLayer,
        x: &mut Vec<f32>,
        keys: &[Keys],
        b: usize,
        s: usize,
        bufs: &mut Buffers,
    ) -> candle_core::Result<()> {
        l.qkv.forward(x, None, &mut bufs.qkv, |_| {})?;
        self.attention(&bufs.qkv, keys, b, s, &mut bufs.heads, &mut bufs.ctx)?;
        l.attn_out
            .forward(&bufs.ctx, Some(x), &mut bufs.tmp, |blk| {
                l.attn_norm.apply(blk)
            })?;
        std::mem::swap(x, &mut bufs.tmp);
        let act = self.act;
        l.inter
            .forward(x, None, &mut bufs.inter, |blk| activate(act, blk))?;
        l.out.forward(&bufs.inter, Some(x), &mut bufs.tmp, |blk| {
            l.out_norm.apply(blk)
        })?;
        std::mem::swap(x, &mut bufs.tmp);
        Ok(())
    }

    /// Multi-head attention over the fused `qkv` rows (`[b·s, 3h]`, Q already scaled) into
    /// `ctx` (`[b·s, h]`), using `heads` as the head-major scratch `[b, heads, s, d]`.
    fn attention(
        &self,
        qkv: &[f32],
        keys: &[Keys],
        b: usize,
        s: usize,
        heads: &mut Vec<f32>,
        ctx: &mut Vec<f32>,
    ) -> candle_core::Result<()> {
        let (h, d, nh) = (self.hidden, self.head_dim, self.heads);
        let ld = 3 * h;
        let kernel = self.kernel;
        heads.clear();
        heads.resize(b * s * h, 0.0);
        let one_head = |scores: &mut Vec<f32>, (idx, out): (usize, &mut [f32])| {
            let (seq, head) = (idx / nh, idx % nh);
            let rows = &qkv[seq * s * ld..(seq + 1) * s * ld];
            let k = &keys[seq];
            let n = k.len;
            scores.clear();
            scores.resize(s * n, 0.0);
            let (q, kk) = (&rows[head * d..], &rows[h + head * d..]);
            q_kt(kernel, q, kk, ld, s, n, d, scores)?;
            softmax_rows(scores, n, k.mask());
            p_v(kernel, scores, &rows[2 * h + head * d..], ld, s, n, d, out)
        };
        // Short sequences are cheaper on the calling thread than handed to the pool (one
        // fork-join per layer otherwise, and a cross-thread hop when the caller is not a
        // pool thread).
        if rayon::current_num_threads() > 1 && b * s >= PARALLEL_MIN_ROWS {
            heads
                .par_chunks_mut(s * d)
                .enumerate()
                .try_for_each_init(Vec::new, one_head)?;
        } else {
            let mut scores = Vec::new();
            for item in heads.chunks_mut(s * d).enumerate() {
                one_head(&mut scores, item)?;
            }
        }
        ctx.clear();
        ctx.resize(b * s * h, 0.0);
        for (idx, block) in heads.chunks_exact(s * d).enumerate() {
            let (seq, head) = (idx / nh, idx % nh);
            for (r, src) in block.chunks_exact(d).enumerate() {
                let at = (seq * s + r) * h + head * d;
                ctx[at..at + d].copy_from_slice(src);
            }
        }
        Ok(())
    }
}

/// Fewest token rows (batch × sequence) for which attention is split over the rayon pool.
const PARALLEL_MIN_ROWS: usize = 32;

/// Scratch buffers reused across the layers of one forward pass.
#[derive(Default)]
struct Buffers {
    qkv: Vec<f32>,
    heads: Vec<f32>,
    ctx: Vec<f32>,
    tmp: Vec<f32>,
    inter: Vec<f32>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_stop_at_the_last_real_token() {
        let k = keys_of(&[1, 1, 0, 1, 0, 0]);
        assert_eq!(k.len, 4);
        assert_eq!(k.keep, vec![1.0, 1.0, 0.0, 1.0]);
        assert!(k.mask().is_some());
        assert!(keys_of(&[1, 1, 0]).mask().is_none());
        assert_eq!(keys_of(&[0, 0]).len, 2);
    }
}
