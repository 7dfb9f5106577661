//! Which matrix-product kernel the plain-buffer BERT forward pass uses, and weights prepared
//! for it.
//!
//! Owns [`CpuKernel`] (the public choice in [`crate::LoadOptions`]), its resolution at load
//! time, [`Weight`] (a linear layer's matrix in the kernel's layout), the two per-head
//! attention products, and [`for_row_blocks`], the split of a product's rows over the rayon
//! pool that both GEMMs use. The packed kernel ([`crate::packed`]) is always available; OpenBLAS
//! ([`crate::blas`]) only with the `openblas` feature.

use std::cell::RefCell;

use crate::error::ModelError;
use crate::packed::PackedB;

/// How [`for_row_blocks`] splits a product's rows over the rayon pool.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RowSplit {
    /// Fewest rows per block: below it a fork-join costs more than the split saves.
    pub(crate) min_rows: usize,
    /// Blocks hold a multiple of this many rows (a kernel's tile height), the last excepted.
    pub(crate) align: usize,
}

/// Runs `block(a_rows, c_rows, rows)` over row blocks of a densely packed `A` (`rows × k`) and
/// `C` (`rows × n`) — on this thread when the product is small or the pool has one thread,
/// otherwise one block per pool thread — and `epilogue` on each finished block of `C` while
/// it is still in cache.
pub(crate) fn for_row_blocks(
    a: &[f32],
    k: usize,
    c: &mut [f32],
    n: usize,
    split: RowSplit,
    block: impl Fn(&[f32], &mut [f32], usize) -> candle_core::Result<()> + Sync,
    epilogue: impl Fn(&mut [f32]) + Sync,
) -> candle_core::Result<()> {
    use rayon::prelude::*;
    let rows = a.len() / k;
    let threads = rayon::current_num_threads().max(1);
    let blocks = threads.min(rows / split.min_rows.max(1)).max(1);
    if blocks == 1 {
        block(a, c, rows)?;
        epilogue(c);
        return Ok(());
    }
    let align = split.align.max(1);
    let per = rows.div_ceil(blocks).div_ceil(align) * align;
    a.par_chunks(per * k)
        .zip(c.par_chunks_mut(per * n))
        .try_for_each(|(ab, cb)| {
            block(ab, cb, ab.len() / k)?;
            epilogue(cb);
            Ok(())
        })
}

/// Kernel for the f32 CPU forward pass of BERT encoders.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CpuKernel {
    /// [`CpuKernel::Packed`]: needs nothing installed; 1.1–1.25× onnxruntime at 128 tokens on
    /// the 2-core test box (candle's path: 1.58×), and faster than OpenBLAS for short texts.
    #[default]
    Auto,
    /// candle's tensor ops (the original path; also what q8 and GPU devices always use).
    Candle,
    /// Our forward pass over plain buffers with the built-in GEMM (weights packed at load,
    /// AVX2+FMA micro-kernel chosen at run time, portable fallback).
    Packed,
    /// Our forward pass over plain buffers with OpenBLAS `sgemm`; needs the `openblas` feature.
    OpenBlas,
}

impl std::str::FromStr for CpuKernel {
    type Err = ModelError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "auto" => Ok(Self::Auto),
            "candle" => Ok(Self::Candle),
            "packed" => Ok(Self::Packed),
            "openblas" | "blas" => Ok(Self::OpenBlas),
            other => Err(ModelError::Invalid(format!(
                "unknown CPU kernel {other:?}: expected auto, candle, packed or openblas"
            ))),
        }
    }
}

impl CpuKernel {
    /// The concrete kernel `Auto` stands for in this build.
    #[must_use]
    pub fn resolve(self) -> Self {
        match self {
            Self::Auto => Self::Packed,
            k => k,
        }
    }

    /// Whether this build can run the kernel.
    #[must_use]
    pub fn available(self) -> bool {
        !matches!(self, Self::OpenBlas) || cfg!(feature = "openblas")
    }
}

/// A linear layer's weight `[k, n]` in the layout its kernel wants.
#[derive(Debug, Clone)]
pub(crate) enum Weight {
    Packed(PackedB),
    /// Row-major `[k, n]`, as `cblas_sgemm` reads it.
    #[cfg(feature = "openblas")]
    Blas {
        data: Vec<f32>,
        k: usize,
        n: usize,
    },
}

impl Weight {
    /// Prepares the row-major `[k, n]` matrix for `kernel` (`Packed` or `OpenBlas`).
    pub(crate) fn new(
        data: Vec<f32>,
        k: usize,
        n: usize,
        kernel: CpuKernel,
    ) -> candle_core::Result<Self> {
        match kernel.resolve() {
            #[cfg(feature = "openblas")]
            CpuKernel::OpenBlas => Ok(Self::Blas { data, k, n }),
            CpuKernel::Packed => Ok(Self::Packed(PackedB::pack(&data, k, n, n)?)),
            other => candle_core::bail!("kernel {other:?} has no plain-buffer weights"),
        }
    }

    /// `C += A · W` for `A` `[rows, k]` and `C` `[rows, n]`, split by rows over the current rayon
    /// pool, with `epilogue` on each finished block of whole rows.
    pub(crate) fn gemm_rows(
        &self,
        a: &[f32],
        c: &mut [f32],
        epilogue: impl Fn(&mut [f32]) + Sync,
    ) -> candle_core::Result<()> {
        match self {
            Self::Packed(p) => crate::packed::gemm_rows(a, p, c, epilogue),
            #[cfg(feature = "openblas")]
            Self::Blas { data, k, n } => crate::blas::gemm_rows(
                a,
                *k,
                crate::blas::Mat::new(data, *k, *n, *n),
                c,
                *n,
                epilogue,
            ),
        }
    }
}

thread_local! {
    /// Per-thread scratch for packing the right-hand side of attention products.
    static SCRATCH: RefCell<PackedB> = RefCell::new(PackedB::empty());
}

/// Attention scores `out[s × n] = Q · Kᵀ` for one head: `q` holds `s` rows and `k` holds `n`
/// rows of `d` values, both at row stride `ld`.
#[expect(clippy::too_many_arguments, reason = "a GEMM call: shapes and strides")]
pub(crate) fn q_kt(
    kernel: CpuKernel,
    q: &[f32],
    k: &[f32],
    ld: usize,
    s: usize,
    n: usize,
    d: usize,
    out: &mut [f32],
) -> candle_core::Result<()> {
    match kernel.resolve() {
        #[cfg(feature = "openblas")]
        CpuKernel::OpenBlas => {
            use crate::blas::{gemm, Mat};
            gemm(
                Mat::new(q, s, d, ld),
                Mat::new(k, n, d, ld).t(),
                0.0,
                out,
                n,
            )
        }
        _ => SCRATCH.with_borrow_mut(|b| {
            b.pack_transposed_from(k, n, d, ld)?;
            out.iter_mut().for_each(|v| *v = 0.0);
            crate::packed::gemm_acc(q, ld, b, out, n, s)
        }),
    }
}

/// Attention output `out[s × d] = P · V` for one head: `p` is `s × n` (dense) and `v` holds `n`
/// rows of `d` values at stride `ld`.
#[expect(clippy::too_many_arguments, reason = "a GEMM call: shapes and strides")]
pub(crate) fn p_v(
    kernel: CpuKernel,
    p: &[f32],
    v: &[f32],
    ld: usize,
    s: usize,
    n: usize,
    d: usize,
    out: &mut [f32],
) -> candle_core::Result<()> {
    match kernel.resolve() {
        #[cfg(feature = "openblas")]
        CpuKernel::OpenBlas => {
            use crate::blas::{gemm, Mat};
            gemm(Mat::new(p, s, n, n), Mat::new(v, n, d, ld), 0.0, out, d)
        }
        _ => SCRATCH.with_borrow_mut(|b| {
            b.pack_from(v, n, d, ld)?;
            out.iter_mut().for_each(|x| *x = 0.0);
            crate::packed::gemm_acc(p, n, b, out, d, s)
        }),
    }
}
