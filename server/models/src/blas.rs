//! Safe access to OpenBLAS's single-precision GEMM (feature `openblas`).
//!
//! Owns the crate's FFI declarations (`cblas_sgemm`, `openblas_set_num_threads`; the library is
//! linked statically by `build.rs`) and the checks that make calling them sound: every matrix
//! is described by a [`Mat`] view over a Rust slice, and its extent is checked against the slice
//! before the call. OpenBLAS's own threading is set to 1 before the first call; [`gemm_rows`]
//! splits a product by output rows over the current rayon pool instead, so the thread count is
//! whatever the model worker's pool has. Concurrent calls from those threads need OpenBLAS's
//! thread-safe (pthread) build; see `build.rs`.

#![allow(unsafe_code)]

use std::os::raw::c_int;

const ROW_MAJOR: c_int = 101;
const NO_TRANS: c_int = 111;
const TRANS: c_int = 112;

extern "C" {
    fn openblas_set_num_threads(n: c_int);
    fn cblas_sgemm(
        order: c_int,
        trans_a: c_int,
        trans_b: c_int,
        m: c_int,
        n: c_int,
        k: c_int,
        alpha: f32,
        a: *const f32,
        lda: c_int,
        b: *const f32,
        ldb: c_int,
        beta: f32,
        c: *mut f32,
        ldc: c_int,
    );
}

/// A read-only row-major matrix view: logically `rows × cols`; when `trans` is set the slice
/// holds its transpose (`cols × rows`), row stride `ld` either way.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Mat<'a> {
    pub(crate) data: &'a [f32],
    pub(crate) rows: usize,
    pub(crate) cols: usize,
    pub(crate) ld: usize,
    pub(crate) trans: bool,
}

impl<'a> Mat<'a> {
    /// A plain row-major `rows × cols` matrix with stride `ld`.
    pub(crate) fn new(data: &'a [f32], rows: usize, cols: usize, ld: usize) -> Self {
        Self {
            data,
            rows,
            cols,
            ld,
            trans: false,
        }
    }

    /// The logical transpose of this view (no copy).
    pub(crate) fn t(self) -> Self {
        Self {
            rows: self.cols,
            cols: self.rows,
            trans: !self.trans,
            ..self
        }
    }

    /// Stored rows and columns (the transpose's when `trans`).
    fn stored(&self) -> (usize, usize) {
        if self.trans {
            (self.cols, self.rows)
        } else {
            (self.rows, self.cols)
        }
    }

    /// Whether `data` covers every element the view addresses.
    fn fits(&self) -> bool {
        let (r, c) = self.stored();
        r == 0 || c == 0 || (self.ld >= c && (r - 1) * self.ld + c <= self.data.len())
    }
}

fn int(v: usize) -> candle_core::Result<c_int> {
    c_int::try_from(v).map_err(|_| candle_core::Error::Msg(format!("sgemm: {v} exceeds c_int")))
}

/// `C = A·B + beta·C` for `C` row-major `a.rows × b.cols` with stride `ldc`.
///
/// # Errors
/// When the shapes disagree or a view does not fit its slice.
pub(crate) fn gemm(
    a: Mat<'_>,
    b: Mat<'_>,
    beta: f32,
    c: &mut [f32],
    ldc: usize,
) -> candle_core::Result<()> {
    let (m, k, n) = (a.rows, a.cols, b.cols);
    if b.rows != k {
        candle_core::bail!("sgemm: inner dimensions {k} and {} differ", b.rows);
    }
    if !a.fits() || !b.fits() {
        candle_core::bail!("sgemm: an input view is larger than its buffer");
    }
    if m == 0 || n == 0 {
        return Ok(());
    }
    if ldc < n || (m - 1) * ldc + n > c.len() {
        candle_core::bail!("sgemm: output {m}x{n} (ld {ldc}) does not fit {}", c.len());
    }
    if k == 0 {
        c.iter_mut().for_each(|v| *v *= beta);
        return Ok(());
    }
    static SINGLE_THREADED: std::sync::Once = std::sync::Once::new();
    // SAFETY: a plain setter of OpenBLAS's global thread count, taking an int by value.
    SINGLE_THREADED.call_once(|| unsafe { openblas_set_num_threads(1) });
    let flag = |t: bool| if t { TRANS } else { NO_TRANS };
    let (lda, ldb, ldc_i) = (int(a.ld.max(1))?, int(b.ld.max(1))?, int(ldc)?);
    let (mi, ni, ki) = (int(m)?, int(n)?, int(k)?);
    // SAFETY: the pointers come from live slices borrowed for the whole call (`c` mutably, so it
    // does not alias `a` or `b`). `fits()` checked above that every element OpenBLAS reads from
    // `a` and `b` (stored rows × stored cols at stride ld, ld ≥ stored cols) lies inside its
    // slice, and the check on `c` does the same for the `m × n` output at stride `ldc ≥ n`.
    // All dimensions were converted to c_int without truncation, and none is zero.
    unsafe {
        cblas_sgemm(
            ROW_MAJOR,
            flag(a.trans),
            flag(b.trans),
            mi,
            ni,
            ki,
            1.0,
            a.data.as_ptr(),
            lda,
            b.data.as_ptr(),
            ldb,
            beta,
            c.as_mut_ptr(),
            ldc_i,
        );
    }
    Ok(())
}

/// `C = A·W + C` for a row-major, densely packed `A` (`rows × k`) and `C` (`rows × n`), split
/// by row blocks over the current rayon pool; `epilogue` then runs on each finished block (for
/// example an activation) while it is still in cache. `C` usually holds the bias (and a
/// residual) on entry.
///
/// # Errors
/// When the buffer sizes do not match `k`, `n` and `w`.
pub(crate) fn gemm_rows(
    a: &[f32],
    k: usize,
    w: Mat<'_>,
    c: &mut [f32],
    n: usize,
    epilogue: impl Fn(&mut [f32]) + Sync,
) -> candle_core::Result<()> {
    if k == 0 || n == 0 || w.rows != k || w.cols != n {
        candle_core::bail!("sgemm: weight is {}x{}, expected {k}x{n}", w.rows, w.cols);
    }
    let rows = a.len() / k;
    if a.len() != rows * k || c.len() != rows * n {
        candle_core::bail!(
            "sgemm: {} inputs / {} outputs for {rows} rows",
            a.len(),
            c.len()
        );
    }
    // Below ~32 rows per thread the duplicated weight packing costs more than it saves.
    let split = crate::gemm::RowSplit {
        min_rows: 32,
        align: 1,
    };
    crate::gemm::for_row_blocks(
        a,
        k,
        c,
        n,
        split,
        |ab, cb, m| gemm(Mat::new(ab, m, k, k), w, 1.0, cb, n),
        epilogue,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive(a: &[f32], b: &[f32], m: usize, k: usize, n: usize) -> Vec<f32> {
        let mut c = vec![0f32; m * n];
        for i in 0..m {
            for j in 0..n {
                c[i * n + j] = (0..k).map(|p| a[i * k + p] * b[p * n + j]).sum();
            }
        }
        c
    }

    fn data(len: usize, seed: u32) -> Vec<f32> {
        (0..len)
            .map(|i| {
                #[expect(clippy::cast_precision_loss)]
                let v = ((i as u32).wrapping_mul(2_654_435_761).wrapping_add(seed) % 1000) as f32;
                v / 500.0 - 1.0
            })
            .collect()
    }

    #[test]
    fn gemm_matches_naive_with_transposes_and_strides() {
        let (m, k, n) = (7, 13, 5);
        let a = data(m * k, 1);
        let b = data(k * n, 2);
        let want = naive(&a, &b, m, k, n);
        let mut c = vec![0f32; m * n];
        gemm(Mat::new(&a, m, k, k), Mat::new(&b, k, n, n), 0.0, &mut c, n).unwrap();
        assert!(c.iter().zip(&want).all(|(x, y)| (x - y).abs() < 1e-4));
        // B stored transposed (n × k).
        let bt: Vec<f32> = (0..n * k).map(|i| b[(i % k) * n + i / k]).collect();
        let mut c2 = vec![0f32; m * n];
        gemm(
            Mat::new(&a, m, k, k),
            Mat::new(&bt, n, k, k).t(),
            0.0,
            &mut c2,
            n,
        )
        .unwrap();
        assert!(c2.iter().zip(&want).all(|(x, y)| (x - y).abs() < 1e-4));
        // Output into a wider matrix, accumulating.
        let mut wide = vec![1f32; m * (n + 3)];
        gemm(
            Mat::new(&a, m, k, k),
            Mat::new(&b, k, n, n),
            1.0,
            &mut wide,
            n + 3,
        )
        .unwrap();
        for i in 0..m {
            for j in 0..n {
                assert!((wide[i * (n + 3) + j] - 1.0 - want[i * n + j]).abs() < 1e-4);
            }
            assert!((wide[i * (n + 3) + n] - 1.0).abs() < f32::EPSILON);
        }
    }

    #[test]
    fn gemm_rejects_views_larger_than_their_buffers() {
        let a = vec![0f32; 10];
        let mut c = vec![0f32; 4];
        assert!(gemm(Mat::new(&a, 2, 6, 6), Mat::new(&a, 6, 2, 2), 0.0, &mut c, 2).is_err());
        assert!(gemm(
            Mat::new(&a, 2, 5, 5),
            Mat::new(&a, 5, 2, 2),
            0.0,
            &mut c[..3],
            2
        )
        .is_err());
        assert!(gemm(Mat::new(&a, 2, 5, 5), Mat::new(&a, 4, 2, 2), 0.0, &mut c, 2).is_err());
    }

    #[test]
    fn gemm_rows_splits_over_threads_like_one_call() {
        let (m, k, n) = (100, 24, 9);
        let a = data(m * k, 3);
        let w = data(k * n, 4);
        let want: Vec<f32> = naive(&a, &w, m, k, n)
            .iter()
            .map(|v| (v + 0.5).max(0.0))
            .collect();
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(3)
            .build()
            .unwrap();
        let mut c = vec![0.5f32; m * n];
        pool.install(|| {
            gemm_rows(&a, k, Mat::new(&w, k, n, n), &mut c, n, |b| {
                b.iter_mut().for_each(|v| *v = v.max(0.0));
            })
        })
        .unwrap();
        assert!(c.iter().zip(&want).all(|(x, y)| (x - y).abs() < 1e-4));
    }
}
