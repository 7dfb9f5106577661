//! Row-wise element kernels of the plain-buffer forward pass: layer norm, the feed-forward
//! activation and the masked softmax of attention (with a vectorisable `exp`).
//!
//! Each is written once as plain Rust over slices and compiled twice: for the baseline target
//! (SSE2 on x86-64) and, inside a `#[target_feature(enable = "avx2,fma")]` wrapper, for AVX2,
//! which doubles the vector width; the wrapper is chosen at run time. No `mul_add` is used, so
//! both builds compute the same per-element results.

#![allow(unsafe_code)]

use crate::bert::Act;

#[cfg(target_arch = "x86_64")]
fn avx2() -> bool {
    std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma")
}

/// Normalises every row of `xs` (rows of `weight.len()` values) in place.
pub(crate) fn layer_norm_rows(xs: &mut [f32], weight: &[f32], bias: &[f32], eps: f32) {
    #[cfg(target_arch = "x86_64")]
    if avx2() {
        // SAFETY: the CPU has AVX2 and FMA (checked just above).
        unsafe { wide::layer_norm_rows(xs, weight, bias, eps) };
        return;
    }
    layer_norm_rows_impl(xs, weight, bias, eps);
}

/// Applies the feed-forward activation in place.
pub(crate) fn activate(act: Act, xs: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if avx2() {
        // SAFETY: the CPU has AVX2 and FMA (checked just above).
        unsafe { wide::activate(act, xs) };
        return;
    }
    activate_impl(act, xs);
}

/// Softmax of each row of `scores` (rows of `n`). With `mask = Some((bias, keep))`, computes
/// `softmax(row + bias) * keep` normalised over the kept keys (padding inside the key range).
pub(crate) fn softmax_rows(scores: &mut [f32], n: usize, mask: Option<(&[f32], &[f32])>) {
    #[cfg(target_arch = "x86_64")]
    if avx2() {
        // SAFETY: the CPU has AVX2 and FMA (checked just above).
        unsafe { wide::softmax_rows(scores, n, mask) };
        return;
    }
    softmax_rows_impl(scores, n, mask);
}

#[cfg(target_arch = "x86_64")]
mod wide {
    use super::Act;

    #[target_feature(enable = "avx2,fma")]
    pub(super) fn layer_norm_rows(xs: &mut [f32], weight: &[f32], bias: &[f32], eps: f32) {
        super::layer_norm_rows_impl(xs, weight, bias, eps);
    }

    #[target_feature(enable = "avx2,fma")]
    pub(super) fn activate(act: Act, xs: &mut [f32]) {
        super::activate_impl(act, xs);
    }

    #[target_feature(enable = "avx2,fma")]
    pub(super) fn softmax_rows(scores: &mut [f32], n: usize, mask: Option<(&[f32], &[f32])>) {
        super::softmax_rows_impl(scores, n, mask);
    }
}

#[inline(always)]
fn layer_norm_rows_impl(xs: &mut [f32], weight: &[f32], bias: &[f32], eps: f32) {
    let h = weight.len();
    if h == 0 {
        return;
    }
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
        let inv = 1.0 / (var + eps).sqrt();
        for ((v, &w), &b) in row.iter_mut().zip(weight).zip(bias) {
            *v = (*v - mean) * inv * w + b;
        }
    }
}

#[inline(always)]
fn activate_impl(act: Act, xs: &mut [f32]) {
    match act {
        Act::GeluErf => xs.iter_mut().for_each(|v| *v = crate::ops::gelu(*v)),
        Act::GeluTanh => xs.iter_mut().for_each(|v| {
            let x = *v;
            *v = 0.5 * x * (1.0 + (0.797_884_6 * (x + 0.044_715 * x * x * x)).tanh());
        }),
        Act::Relu => xs.iter_mut().for_each(|v| *v = v.max(0.0)),
    }
}

#[inline(always)]
fn softmax_rows_impl(scores: &mut [f32], n: usize, mask: Option<(&[f32], &[f32])>) {
    if n == 0 {
        return;
    }
    for row in scores.chunks_exact_mut(n) {
        if let Some((bias, _)) = mask {
            for (v, &b) in row.iter_mut().zip(bias) {
                *v += b;
            }
        }
        let max = max8(row);
        for v in row.iter_mut() {
            *v = fast_exp(*v - max);
        }
        if let Some((_, keep)) = mask {
            for (v, &k) in row.iter_mut().zip(keep) {
                *v *= k;
            }
        }
        let sum = sum8(row);
        let inv = if sum > 0.0 { 1.0 / sum } else { 0.0 };
        row.iter_mut().for_each(|v| *v *= inv);
    }
}

/// Sum with 8 independent accumulators, so the compiler can vectorise it.
#[inline(always)]
pub(crate) fn sum8(xs: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    let mut chunks = xs.chunks_exact(8);
    for c in &mut chunks {
        for (a, &v) in acc.iter_mut().zip(c) {
            *a += v;
        }
    }
    acc.iter().sum::<f32>() + chunks.remainder().iter().sum::<f32>()
}

/// Maximum with 8 independent lanes.
#[inline(always)]
fn max8(xs: &[f32]) -> f32 {
    let mut acc = [f32::NEG_INFINITY; 8];
    let mut chunks = xs.chunks_exact(8);
    for c in &mut chunks {
        for (a, &v) in acc.iter_mut().zip(c) {
            *a = a.max(v);
        }
    }
    let tail = chunks
        .remainder()
        .iter()
        .fold(f32::NEG_INFINITY, |m, &v| m.max(v));
    acc.iter().fold(tail, |m, &v| m.max(v))
}

/// `exp(x)` for `x ≤ 0` (softmax after subtracting the max), relative error ~1e-7: Cody–Waite
/// range reduction to `r ∈ [-ln2/2, ln2/2]`, Cephes' degree-6 polynomial, and `2^k` built in the
/// exponent bits. Branch-free integer and float ops only, so the loop vectorises (libm's `expf`
/// was 5% of the candle profile).
#[inline(always)]
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
        let mut rows = vec![1.0, 2.0, 50.0, 0.5, 1.0, 2.0, 50.0, 0.5];
        let keep = [1.0, 1.0, 0.0, 1.0];
        let bias = [0.0, 0.0, -1e30, 0.0];
        softmax_rows(&mut rows, 4, Some((&bias, &keep)));
        let mut generic = vec![1.0, 2.0, 50.0, 0.5];
        softmax_rows_impl(&mut generic, 4, Some((&bias, &keep)));
        assert_eq!(rows[..4], generic[..]);
        let row = &rows[4..];
        assert!(row[2].abs() < f32::EPSILON);
        assert!((row.iter().sum::<f32>() - 1.0).abs() < 1e-6);
        let e: Vec<f32> = [1.0f32, 2.0, 0.5].iter().map(|v| v.exp()).collect();
        let z: f32 = e.iter().sum();
        assert!((row[1] - e[1] / z).abs() < 1e-6);
        // Unmasked rows: a plain softmax, same in both builds.
        let mut plain: Vec<f32> = (0..21).map(|i| f32::from(i as u8) * 0.3 - 2.0).collect();
        let mut generic = plain.clone();
        softmax_rows(&mut plain, 21, None);
        softmax_rows_impl(&mut generic, 21, None);
        assert_eq!(plain, generic);
        assert!((plain.iter().sum::<f32>() - 1.0).abs() < 1e-6);
    }

    #[test]
    fn wide_and_baseline_builds_agree() {
        let w: Vec<f32> = (0..20).map(|i| 1.0 + f32::from(i as u8) * 0.01).collect();
        let b: Vec<f32> = (0..20).map(|i| f32::from(i as u8) * -0.02).collect();
        let x: Vec<f32> = (0..60)
            .map(|i| (f32::from(i as u8) * 0.37).sin() * 3.0)
            .collect();
        let (mut n1, mut n2) = (x.clone(), x.clone());
        layer_norm_rows(&mut n1, &w, &b, 1e-12);
        layer_norm_rows_impl(&mut n2, &w, &b, 1e-12);
        assert_eq!(n1, n2);
        let mean: f32 = n2[..20]
            .iter()
            .zip(&w)
            .zip(&b)
            .map(|((v, w), b)| (v - b) / w)
            .sum();
        assert!(mean.abs() < 1e-4);
        for act in [Act::GeluErf, Act::GeluTanh, Act::Relu] {
            let (mut a1, mut a2) = (x.clone(), x.clone());
            activate(act, &mut a1);
            activate_impl(act, &mut a2);
            assert_eq!(a1, a2, "{act:?}");
        }
    }
}
