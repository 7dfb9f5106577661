//! A small f32 GEMM with the right-hand matrix packed once: `C += A · B`.
//!
//! Owns the matrix-product kernel of the plain-buffer BERT forward pass. Linear-layer weights
//! are packed at load into [`PackedB`] (column panels of 16, `k`-major), so a call only streams
//! the activations: no per-call packing of the large operand, which was ~14% of the time with
//! OpenBLAS (its API has no pre-packed sgemm) at 128 tokens, and a larger share at 16.
//!
//! The micro-kernel computes a 6×16 tile in 12 AVX2 registers with FMA (the Haswell/Zen shape),
//! broadcasting from a small copy of `A` packed per block of [`MC`] rows (6-row tiles,
//! `k`-major), so it reads both operands sequentially. It is chosen at run time with
//! `is_x86_feature_detected!`; other CPUs use a portable kernel of the same structure that
//! the compiler vectorises for the baseline target. `k` is blocked by [`KC`] so a 16-column
//! panel slice stays in L1 while all row tiles pass over it. Row blocks are split over the
//! current rayon pool by [`crate::gemm::for_row_blocks`].

#![allow(unsafe_code)]

use std::cell::RefCell;

/// Columns per packed panel (two AVX registers).
const NR: usize = 16;
/// Rows per micro-kernel tile.
const MR: usize = 6;
/// Most depth of one `k` block: a 384×16 panel slice is 24 KiB. `k` is split into equal
/// blocks of at most this, so `k = 384` is one pass over `C` and `k = 1536` four.
const KC: usize = 384;
/// Rows of one `A` block (`MC × KC` floats, 96 KiB, stays in L2 while every panel passes).
const MC: usize = 96;

/// `B` (`k × n`) packed as `ceil(n / 16)` panels of `k × 16` (zero-padded past `n`).
#[derive(Debug, Clone)]
pub(crate) struct PackedB {
    data: Vec<f32>,
    k: usize,
    n: usize,
}

impl PackedB {
    /// An empty matrix, to be filled by [`Self::pack_from`] or [`Self::pack_transposed_from`].
    pub(crate) fn empty() -> Self {
        Self {
            data: Vec::new(),
            k: 0,
            n: 0,
        }
    }

    /// Packs the row-major `k × n` matrix `b` (row stride `ld`).
    ///
    /// # Errors
    /// When `b` is too short for `k` rows at stride `ld`.
    pub(crate) fn pack(b: &[f32], k: usize, n: usize, ld: usize) -> candle_core::Result<Self> {
        let mut p = Self::empty();
        p.pack_from(b, k, n, ld)?;
        Ok(p)
    }

    fn reset(&mut self, k: usize, n: usize) {
        self.k = k;
        self.n = n;
        self.data.clear();
        self.data.resize(n.div_ceil(NR) * k * NR, 0.0);
    }

    /// Re-packs from the row-major `k × n` matrix `b` (row stride `ld`), reusing the buffer.
    ///
    /// # Errors
    /// When `b` is too short for `k` rows at stride `ld`.
    pub(crate) fn pack_from(
        &mut self,
        b: &[f32],
        k: usize,
        n: usize,
        ld: usize,
    ) -> candle_core::Result<()> {
        if k > 0 && n > 0 && (ld < n || b.len() < (k - 1) * ld + n) {
            candle_core::bail!(
                "pack: {k}x{n} at stride {ld} does not fit {} values",
                b.len()
            );
        }
        self.reset(k, n);
        for (p, panel) in self.data.chunks_exact_mut(k * NR).enumerate() {
            let c0 = p * NR;
            let width = NR.min(n - c0);
            for (kk, dst) in panel.chunks_exact_mut(NR).enumerate() {
                let row = kk * ld + c0;
                dst[..width].copy_from_slice(&b[row..row + width]);
            }
        }
        Ok(())
    }

    /// Re-packs `Bᵀ` where `bt` holds `n` rows of `k` values at stride `ld` (so `B` is
    /// `k × n`), reusing the buffer.
    ///
    /// # Errors
    /// When `bt` is too short for `n` rows at stride `ld`.
    pub(crate) fn pack_transposed_from(
        &mut self,
        bt: &[f32],
        n: usize,
        k: usize,
        ld: usize,
    ) -> candle_core::Result<()> {
        if k > 0 && n > 0 && (ld < k || bt.len() < (n - 1) * ld + k) {
            candle_core::bail!(
                "pack: {n}x{k} at stride {ld} does not fit {} values",
                bt.len()
            );
        }
        self.reset(k, n);
        for (p, panel) in self.data.chunks_exact_mut(k * NR).enumerate() {
            let c0 = p * NR;
            for (j, src_row) in (c0..n.min(c0 + NR)).enumerate() {
                let src = &bt[src_row * ld..src_row * ld + k];
                for (kk, &v) in src.iter().enumerate() {
                    panel[kk * NR + j] = v;
                }
            }
        }
        Ok(())
    }

    /// Slice `k0..k0+kc` of panel `p` (`kc × 16`).
    fn panel(&self, p: usize, k0: usize, kc: usize) -> &[f32] {
        let start = p * self.k * NR + k0 * NR;
        &self.data[start..start + kc * NR]
    }
}

thread_local! {
    /// Per-thread copy of the current block of `A` (see [`pack_a`]).
    static A_PACK: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

/// Which micro-kernel this CPU runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Isa {
    #[cfg(target_arch = "x86_64")]
    Avx2Fma,
    Portable,
}

fn isa() -> Isa {
    #[cfg(target_arch = "x86_64")]
    {
        if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
            return Isa::Avx2Fma;
        }
    }
    Isa::Portable
}

/// `C += A · B` for row-major `A` (`rows × k`, stride `lda`) and `C` (`rows × n`, stride `ldc`),
/// single-threaded.
///
/// # Errors
/// When `a` or `c` is too short for `rows` rows at its stride.
pub(crate) fn gemm_acc(
    a: &[f32],
    lda: usize,
    b: &PackedB,
    c: &mut [f32],
    ldc: usize,
    rows: usize,
) -> candle_core::Result<()> {
    let (k, n) = (b.k, b.n);
    if rows == 0 || n == 0 || k == 0 {
        return Ok(());
    }
    if lda < k || ldc < n || a.len() < (rows - 1) * lda + k || c.len() < (rows - 1) * ldc + n {
        candle_core::bail!("packed gemm: {rows}x{k} by {k}x{n} does not fit its buffers");
    }
    let isa = isa();
    let mut tile = [0f32; MR * NR];
    let kc_max = k.div_ceil(k.div_ceil(KC));
    // Packing a block of A pays off when many panels reuse it; with one or two panels (the
    // attention output, n = head size) the kernel reads A's rows in place instead.
    let pack = n > 2 * NR;
    A_PACK.with_borrow_mut(|a_pack| {
        a_pack.resize(if pack { MC * kc_max } else { 0 }, 0.0);
        for k0 in (0..k).step_by(kc_max) {
            let kc = kc_max.min(k - k0);
            for m0 in (0..rows).step_by(MC) {
                let m1 = rows.min(m0 + MC);
                if pack {
                    pack_a(a, lda, m0, m1, k0, kc, a_pack);
                }
                for p in 0..n.div_ceil(NR) {
                    let panel = b.panel(p, k0, kc);
                    let c0 = p * NR;
                    let width = NR.min(n - c0);
                    for (t, i0) in (m0..m1).step_by(MR).enumerate() {
                        let (src, offs, ks) = if pack {
                            (&a_pack[t * MR * kc..(t + 1) * MR * kc], PACKED_ROWS, MR)
                        } else {
                            // Rows past m1 re-read row i0; their results are not stored.
                            let offs = std::array::from_fn(|r| {
                                (if i0 + r < m1 { i0 + r } else { i0 }) * lda + k0
                            });
                            (a, offs, 1)
                        };
                        let rows = (m1 - i0).min(MR);
                        if width == NR {
                            let c_offs = std::array::from_fn(|r| (i0 + r.min(rows - 1)) * ldc + c0);
                            let dst = Dst::Acc {
                                c: &mut *c,
                                offs: c_offs,
                                rows,
                            };
                            kernel(isa, src, offs, ks, panel, kc, dst);
                        } else {
                            kernel(isa, src, offs, ks, panel, kc, Dst::Tile(&mut tile));
                            for (r, acc) in tile.chunks_exact(NR).take(rows).enumerate() {
                                let at = (i0 + r) * ldc + c0;
                                for (dst, &v) in c[at..at + width].iter_mut().zip(acc) {
                                    *dst += v;
                                }
                            }
                        }
                    }
                }
            }
        }
    });
    Ok(())
}

/// Copies rows `m0..m1`, columns `k0..k0+kc` of `a` into `out` as 6-row tiles, each `k`-major
/// (`out[t·6·kc + kk·6 + r]`), zero-filling the rows past `m1` of the last tile.
fn pack_a(a: &[f32], lda: usize, m0: usize, m1: usize, k0: usize, kc: usize, out: &mut [f32]) {
    for (t, i0) in (m0..m1).step_by(MR).enumerate() {
        let tile = &mut out[t * MR * kc..(t + 1) * MR * kc];
        if i0 + MR <= m1 {
            // Full tile: six row slices read in step, the tile written sequentially.
            let rows: [&[f32]; MR] = std::array::from_fn(|r| {
                let at = (i0 + r) * lda + k0;
                &a[at..at + kc]
            });
            for (kk, dst) in tile.chunks_exact_mut(MR).enumerate() {
                for (d, row) in dst.iter_mut().zip(&rows) {
                    *d = row[kk];
                }
            }
            continue;
        }
        for r in 0..MR {
            let i = i0 + r;
            if i < m1 {
                let row = &a[i * lda + k0..i * lda + k0 + kc];
                for (kk, &v) in row.iter().enumerate() {
                    tile[kk * MR + r] = v;
                }
            } else {
                for kk in 0..kc {
                    tile[kk * MR + r] = 0.0;
                }
            }
        }
    }
}

/// `C += A · B` with `A` and `C` densely packed (`rows × k`, `rows × n`), split by row blocks
/// over the current rayon pool; `epilogue` runs on each finished block of whole rows.
///
/// # Errors
/// When the buffer sizes do not match `b`.
pub(crate) fn gemm_rows(
    a: &[f32],
    b: &PackedB,
    c: &mut [f32],
    epilogue: impl Fn(&mut [f32]) + Sync,
) -> candle_core::Result<()> {
    let (k, n) = (b.k, b.n);
    let rows = a.len().checked_div(k).unwrap_or(0);
    if k == 0 || n == 0 || a.len() != rows * k || c.len() != rows * n {
        candle_core::bail!(
            "packed gemm: {} inputs / {} outputs for k={k}, n={n}",
            a.len(),
            c.len()
        );
    }
    // At least 16 rows per block; whole tiles per block, so no block ends in a partial tile
    // before the last one.
    let split = crate::gemm::RowSplit {
        min_rows: 16,
        align: MR,
    };
    crate::gemm::for_row_blocks(
        a,
        k,
        c,
        n,
        split,
        |ab, cb, m| gemm_acc(ab, k, b, cb, n, m),
        epilogue,
    )
}

/// Row offsets of a packed 6-row tile of `A` (see [`pack_a`]): element `(r, kk)` is at
/// `r + 6·kk`.
const PACKED_ROWS: [usize; MR] = [0, 1, 2, 3, 4, 5];

/// Where a micro-kernel puts its 6×16 result.
enum Dst<'a> {
    /// Overwrite this tile (row `r` at `[r*16..]`).
    Tile(&'a mut [f32; MR * NR]),
    /// Add rows `0..rows` to `c[offs[r]..offs[r]+16]`.
    Acc {
        c: &'a mut [f32],
        offs: [usize; MR],
        rows: usize,
    },
}

/// One 6×16 tile over depth `kc` into `dst`. Element `(r, kk)` of `A` is `a[offs[r] + kk·ks]`;
/// `b` is the `kc × 16` panel slice.
fn kernel(isa: Isa, a: &[f32], offs: [usize; MR], ks: usize, b: &[f32], kc: usize, dst: Dst<'_>) {
    let last = kc.saturating_sub(1) * ks;
    let dst_fits = match &dst {
        Dst::Tile(_) => true,
        Dst::Acc { c, offs, rows } => *rows <= MR && offs.iter().all(|&o| o + NR <= c.len()),
    };
    assert!(
        kc > 0 && dst_fits && b.len() >= kc * NR && offs.iter().all(|&o| o + last < a.len()),
        "packed gemm: tile outside its buffers"
    );
    match isa {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `isa()` returned Avx2Fma only after detecting both features on this CPU, and
        // the assertion above establishes the bounds `tile` requires.
        Isa::Avx2Fma => unsafe { avx2::tile(a, offs, ks, b, kc, dst) },
        Isa::Portable => portable_tile(a, offs, ks, b, kc, dst),
    }
}

fn portable_tile(a: &[f32], offs: [usize; MR], ks: usize, b: &[f32], kc: usize, dst: Dst<'_>) {
    let mut acc = [[0f32; NR]; MR];
    for (kk, bk) in b.chunks_exact(NR).take(kc).enumerate() {
        for (row, &o) in acc.iter_mut().zip(&offs) {
            let x = a[o + kk * ks];
            for (s, &w) in row.iter_mut().zip(bk) {
                *s += x * w;
            }
        }
    }
    match dst {
        Dst::Tile(out) => {
            for (d, row) in out.chunks_exact_mut(NR).zip(&acc) {
                d.copy_from_slice(row);
            }
        }
        Dst::Acc { c, offs, rows } => {
            for (row, &o) in acc.iter().zip(&offs).take(rows) {
                for (d, &v) in c[o..o + NR].iter_mut().zip(row) {
                    *d += v;
                }
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use std::arch::x86_64::{
        __m256, _mm256_add_ps, _mm256_broadcast_ss, _mm256_fmadd_ps, _mm256_loadu_ps,
        _mm256_setzero_ps, _mm256_storeu_ps,
    };

    use super::Dst;

    /// The 6×16 tile: 12 accumulators; per `k` two loads of `b` and six broadcasts of `a`.
    ///
    /// # Safety
    /// The CPU must support AVX2 and FMA; `b` must hold at least `kc·16` values,
    /// `offs[r] + (kc-1)·ks < a.len()` for every `r`, and for `Dst::Acc` `rows ≤ 6` and
    /// `offs[r] + 16 ≤ c.len()` for every `r`.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn tile(
        a: &[f32],
        offs: [usize; 6],
        ks: usize,
        b: &[f32],
        kc: usize,
        dst: Dst<'_>,
    ) {
        let mut acc: [[__m256; 2]; 6] = [[_mm256_setzero_ps(); 2]; 6];
        let rows = offs.map(|o| a[o..].as_ptr());
        let bp = b.as_ptr();
        for kk in 0..kc {
            // SAFETY: kk < kc, so `bp + kk*16 + 15` is inside `b` (len ≥ kc·16) and
            // `rows[r] + kk*ks` is inside `a` (offs[r] + (kc-1)·ks < a.len()).
            unsafe {
                let b0 = _mm256_loadu_ps(bp.add(kk * 16));
                let b1 = _mm256_loadu_ps(bp.add(kk * 16 + 8));
                for (row, &ap) in acc.iter_mut().zip(&rows) {
                    let x = _mm256_broadcast_ss(&*ap.add(kk * ks));
                    row[0] = _mm256_fmadd_ps(x, b0, row[0]);
                    row[1] = _mm256_fmadd_ps(x, b1, row[1]);
                }
            }
        }
        match dst {
            Dst::Tile(out) => {
                for (r, row) in acc.iter().enumerate() {
                    // SAFETY: r < 6, so `out[r*16 .. r*16+16]` is inside the 96-value array.
                    unsafe {
                        _mm256_storeu_ps(out.as_mut_ptr().add(r * 16), row[0]);
                        _mm256_storeu_ps(out.as_mut_ptr().add(r * 16 + 8), row[1]);
                    }
                }
            }
            Dst::Acc { c, offs, rows } => {
                for (row, &o) in acc.iter().zip(&offs).take(rows) {
                    // SAFETY: the caller guarantees `o + 16 ≤ c.len()`.
                    unsafe {
                        let p = c.as_mut_ptr().add(o);
                        _mm256_storeu_ps(p, _mm256_add_ps(_mm256_loadu_ps(p), row[0]));
                        let p = p.add(8);
                        _mm256_storeu_ps(p, _mm256_add_ps(_mm256_loadu_ps(p), row[1]));
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(len: usize, seed: u32) -> Vec<f32> {
        (0..len)
            .map(|i| {
                #[expect(clippy::cast_precision_loss)]
                let v = ((i as u32).wrapping_mul(2_654_435_761).wrapping_add(seed) % 1000) as f32;
                v / 500.0 - 1.0
            })
            .collect()
    }

    fn naive(a: &[f32], b: &[f32], m: usize, k: usize, n: usize) -> Vec<f32> {
        let mut c = vec![0f32; m * n];
        for i in 0..m {
            for j in 0..n {
                c[i * n + j] = (0..k).map(|p| a[i * k + p] * b[p * n + j]).sum();
            }
        }
        c
    }

    #[test]
    fn packed_gemm_matches_naive_for_odd_shapes_and_both_kernels() {
        for &(m, k, n) in &[
            (1, 1, 1),
            (7, 300, 21),
            (13, 513, 40),
            (6, 32, 16),
            (20, 5, 3),
        ] {
            let a = data(m * k, 1);
            let b = data(k * n, 2);
            let want = naive(&a, &b, m, k, n);
            let packed = PackedB::pack(&b, k, n, n).unwrap();
            let mut c = vec![1f32; m * n];
            gemm_acc(&a, k, &packed, &mut c, n, m).unwrap();
            for (x, y) in c.iter().zip(&want) {
                assert!((x - 1.0 - y).abs() < 1e-3, "{m}x{k}x{n}: {x} vs {y}");
            }
            // The portable kernel gives the same tile as the detected one.
            let mut t1 = [0f32; 96];
            let mut t2 = [0f32; 96];
            let kc = k.min(KC);
            let mut a_tile = vec![0f32; MR * kc];
            pack_a(&a, k, 0, m.min(MR), 0, kc, &mut a_tile);
            let panel = packed.panel(0, 0, kc);
            kernel(
                isa(),
                &a_tile,
                PACKED_ROWS,
                MR,
                panel,
                kc,
                Dst::Tile(&mut t1),
            );
            portable_tile(&a_tile, PACKED_ROWS, MR, panel, kc, Dst::Tile(&mut t2));
            assert!(t1.iter().zip(&t2).all(|(x, y)| (x - y).abs() < 1e-3));
            // Reading A in place (row offsets, unit k stride) gives the same tile.
            let offs = std::array::from_fn(|r| r.min(m.min(MR) - 1) * k);
            let mut t3 = [0f32; 96];
            kernel(isa(), &a, offs, 1, panel, kc, Dst::Tile(&mut t3));
            let rows = m.min(MR) * NR;
            assert!(t1[..rows]
                .iter()
                .zip(&t3)
                .all(|(x, y)| (x - y).abs() < 1e-3));
            // Accumulating into C directly matches the tile, for both kernels.
            let c_offs = std::array::from_fn(|r| r * NR);
            let (mut c1, mut c2) = (vec![1f32; MR * NR], vec![1f32; MR * NR]);
            let rows_n = m.min(MR);
            let dst1 = Dst::Acc {
                c: &mut c1,
                offs: c_offs,
                rows: rows_n,
            };
            kernel(isa(), &a_tile, PACKED_ROWS, MR, panel, kc, dst1);
            let dst2 = Dst::Acc {
                c: &mut c2,
                offs: c_offs,
                rows: rows_n,
            };
            portable_tile(&a_tile, PACKED_ROWS, MR, panel, kc, dst2);
            for (i, (x, y)) in c1.iter().zip(&c2).enumerate() {
                let want = if i < rows { t1[i] + 1.0 } else { 1.0 };
                assert!((x - want).abs() < 1e-3 && (y - want).abs() < 1e-3);
            }
        }
    }

    #[test]
    fn row_split_over_threads_equals_one_block() {
        let (m, k, n) = (50, 70, 33);
        let a = data(m * k, 3);
        let b = PackedB::pack(&data(k * n, 4), k, n, n).unwrap();
        let mut one = vec![0.25f32; m * n];
        gemm_acc(&a, k, &b, &mut one, n, m).unwrap();
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(3)
            .build()
            .unwrap();
        let mut split = vec![0.25f32; m * n];
        pool.install(|| gemm_rows(&a, &b, &mut split, |_| {}))
            .unwrap();
        assert!(one.iter().zip(&split).all(|(x, y)| (x - y).abs() < 1e-5));
        assert!(gemm_acc(&a[..10], k, &b, &mut one, n, m).is_err());
    }

    #[test]
    fn transposed_and_strided_packing_agree() {
        // A 5×7 matrix stored at stride 9, and its transpose stored at stride 6.
        let (k, n) = (5, 7);
        let src = data(k * 9, 5);
        let mut t = vec![0f32; n * 6];
        for kk in 0..k {
            for j in 0..n {
                t[j * 6 + kk] = src[kk * 9 + j];
            }
        }
        let a = PackedB::pack(&src, k, n, 9).unwrap();
        let mut b = PackedB::empty();
        b.pack_transposed_from(&t, n, k, 6).unwrap();
        assert_eq!(a.data, b.data);
        assert!(b.pack_transposed_from(&t[..10], n, k, 6).is_err());
    }
}
