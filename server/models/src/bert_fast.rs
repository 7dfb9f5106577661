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

/// Applies the feed-forward activation in place.
fn activate(act: Act, xs: &mut [f32]) {
    match act {
        Act::GeluErf => xs.iter_mut().for_each(|v| *v = crate::ops::gelu(*v)),
        Act::GeluTanh => xs.iter_mut().for_each(|v| {
            let x = *v;
            *v = 0.5 * x * (1.0 + (0.797_884_6 * (x + 0.044_715 * x * x * x)).tanh());
        }),
        Act::Relu => xs.iter_mut().for_each(|v| *v = v.max(0.0)),
    }
}

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
        let h = self.weight.len();
        #[expect(clippy::cast_precision_loss, reason = "hidden sizes are small")]
        let inv_h = 1.0 / h as f32;
        for row in xs.chunks_exact_mut(h) {
            let mean = sum8(row) * inv_h;
            let mut acc = [0f32; 8];
            let mut chunks = row.chunks_exact(8);
            for c in &mut chunks {
                for (a, &v) in acc.iter_mut().zip(c) {
                    *a += (v - mean) * (v - mean);
                }
            }
            let tail: f32 = chunks
                .remainder()
                .iter()
                .map(|&v| (v - mean) * (v - mean))
                .sum();
            let var = (acc.iter().sum::<f32>() + tail) * inv_h;
            let inv = 1.0 / (var + self.eps).sqrt();
            for ((v, &w), &b) in row.iter_mut().zip(&self.weight).zip(&self.bias) {
                *v = (*v - mean) * inv * w + b;
            }
        }
    }
}

/// Sum with 8 independent accumulators, so the compiler can vectorise it.
fn sum8(xs: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    let mut chunks = xs.chunks_exact(8);
    for c in &mut chunks {
        for (a, &v) in acc.iter_mut().zip(c) {
            *a += v;
        }
    }
    acc.iter().sum::<f32>() + chunks.remainder().iter().sum::<f32>()
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
}

fn keys_of(mask: &[u32]) -> Keys {
    let len = mask.iter().rposition(|&m| m != 0).map_or(0, |i| i + 1);
    if len == 0 {
        // No real token at all: attend to everything rather than divide by zero.
        return Keys {
            len: mask.len(),
            bias: vec![0.0; mask.len()],
            keep: vec![1.0; mask.len()],
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
        heads.par_chunks_mut(s * d).enumerate().try_for_each_init(
            Vec::new,
            |scores: &mut Vec<f32>, (idx, out)| {
                let (seq, head) = (idx / nh, idx % nh);
                let rows = &qkv[seq * s * ld..(seq + 1) * s * ld];
                let k = &keys[seq];
                let n = k.len;
                scores.clear();
                scores.resize(s * n, 0.0);
                let (q, kk) = (&rows[head * d..], &rows[h + head * d..]);
                q_kt(kernel, q, kk, ld, s, n, d, scores)?;
                for row in scores.chunks_exact_mut(n) {
                    softmax_masked(row, &k.bias, &k.keep);
                }
                p_v(kernel, scores, &rows[2 * h + head * d..], ld, s, n, d, out)
            },
        )?;
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

/// Scratch buffers reused across the layers of one forward pass.
#[derive(Default)]
struct Buffers {
    qkv: Vec<f32>,
    heads: Vec<f32>,
    ctx: Vec<f32>,
    tmp: Vec<f32>,
    inter: Vec<f32>,
}

/// `softmax(row + bias) * keep`, normalised over the kept keys.
fn softmax_masked(row: &mut [f32], bias: &[f32], keep: &[f32]) {
    for (v, &b) in row.iter_mut().zip(bias) {
        *v += b;
    }
    let max = row.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v));
    for (v, &k) in row.iter_mut().zip(keep) {
        *v = fast_exp(*v - max) * k;
    }
    let sum = sum8(row);
    let inv = if sum > 0.0 { 1.0 / sum } else { 0.0 };
    row.iter_mut().for_each(|v| *v *= inv);
}

/// `exp(x)` for `x ≤ 0` (softmax after subtracting the max), relative error ~1e-7: Cody–Waite
/// range reduction to `r ∈ [-ln2/2, ln2/2]`, Cephes' degree-6 polynomial, and `2^k` built in the
/// exponent bits. Branch-free integer and float ops only, so the loop vectorises (libm's `expf`
/// was 5% of the candle profile).
#[inline]
fn fast_exp(x: f32) -> f32 {
    const MAGIC: f32 = 12_582_912.0; // 1.5·2^23: adding it rounds to an integer in the low bits
    let x = x.clamp(-87.0, 88.0);
    let t = x * std::f32::consts::LOG2_E + MAGIC;
    let k = t - MAGIC;
    let r = x - k * 0.693_359_4 - k * -2.121_944_4e-4;
    let mut p = 1.987_569_1e-4_f32;
    p = p * r + 1.398_2e-3;
    p = p * r + 8.333_452e-3;
    p = p * r + 4.166_579_6e-2;
    p = p * r + 0.166_666_65;
    p = p * r + 0.5;
    let e = p * r * r + r + 1.0;
    // The low bits of `t` hold k (two's complement); k + 127 is in [1, 254] after the clamp.
    let bits = t
        .to_bits()
        .wrapping_sub(MAGIC.to_bits())
        .wrapping_add(127)
        .wrapping_shl(23);
    e * f32::from_bits(bits)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fast_exp_is_close_to_libm() {
        let mut worst = 0f32;
        for i in 0..=100_000 {
            #[expect(clippy::cast_precision_loss)]
            let x = -(i as f32) / 1000.0;
            let want = x.exp();
            if want > 1e-30 {
                worst = worst.max((fast_exp(x) - want).abs() / want);
            }
        }
        assert!(worst < 5e-7, "max relative error {worst}");
        assert!(fast_exp(-1e30) < 1e-37);
    }

    #[test]
    fn softmax_masks_padding_and_sums_to_one() {
        let mut row = vec![1.0, 2.0, 50.0, 0.5];
        let keep = [1.0, 1.0, 0.0, 1.0];
        let bias = [0.0, 0.0, -1e30, 0.0];
        softmax_masked(&mut row, &bias, &keep);
        assert!(row[2].abs() < f32::EPSILON);
        assert!((row.iter().sum::<f32>() - 1.0).abs() < 1e-6);
        let e: Vec<f32> = [1.0f32, 2.0, 0.5].iter().map(|v| v.exp()).collect();
        let z: f32 = e.iter().sum();
        assert!((row[1] - e[1] / z).abs() < 1e-6);
    }

    #[test]
    fn keys_stop_at_the_last_real_token() {
        let k = keys_of(&[1, 1, 0, 1, 0, 0]);
        assert_eq!(k.len, 4);
        assert_eq!(k.keep, vec![1.0, 1.0, 0.0, 1.0]);
        assert_eq!(keys_of(&[0, 0]).len, 2);
    }
}
