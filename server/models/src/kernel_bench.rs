//! Micro-benchmark of the GEMM kernels on MiniLM's linear-layer shapes (an ignored test):
//! `cargo test --release -p vllm-sr-models [--features openblas] kernel_bench -- --ignored --nocapture`
//! with `RAYON_NUM_THREADS=1`. Prints on-CPU µs per call and GFLOP/s for candle's matmul, the packed
//! kernel ([`crate::packed`]) and, with the feature, OpenBLAS `cblas_sgemm`.

#![allow(clippy::print_stderr, clippy::unwrap_used, reason = "benchmark output")]

use std::time::Instant;

use candle_core::{Device, Tensor};

/// On-CPU time of this thread in seconds (`/proc/thread-self/schedstat`), so that other
/// tenants of a loaded machine do not count; wall time where that file is missing.
fn cpu_now(start: Instant) -> f64 {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<f64>().ok())
        .map_or_else(|| start.elapsed().as_secs_f64(), |ns| ns / 1e9)
}

fn time(flops: f64, mut f: impl FnMut()) -> (f64, f64) {
    f();
    let reps = (2e9 / flops).ceil().clamp(3.0, 2000.0);
    let mut best = f64::MAX;
    let origin = Instant::now();
    for _ in 0..3 {
        let t = cpu_now(origin);
        #[expect(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        for _ in 0..reps as usize {
            f();
        }
        best = best.min((cpu_now(origin) - t) / reps);
    }
    (best * 1e6, flops / best / 1e9)
}

#[test]
#[ignore = "benchmark; run explicitly in release"]
fn kernel_bench() {
    let shapes = [(384, 1152), (384, 384), (384, 1536), (1536, 384)];
    for (k, n) in shapes {
        let w: Vec<f32> = (0..k * n).map(|i| ((i % 7) as f32) * 0.01).collect();
        let packed = crate::packed::PackedB::pack(&w, k, n, n).unwrap();
        let wt = Tensor::from_vec(w.clone(), (k, n), &Device::Cpu).unwrap();
        for m in [16usize, 64, 128, 256, 512] {
            let a: Vec<f32> = (0..m * k).map(|i| ((i % 5) as f32) * 0.01).collect();
            #[expect(clippy::cast_precision_loss)]
            let flops = 2.0 * (m * k * n) as f64;
            let at = Tensor::from_vec(a.clone(), (m, k), &Device::Cpu).unwrap();
            let (c_us, c_gf) = time(flops, || {
                let _ = at.matmul(&wt).unwrap();
            });
            let mut c = vec![0f32; m * n];
            let (p_us, p_gf) = time(flops, || {
                crate::packed::gemm_rows(&a, &packed, &mut c, |_| {}).unwrap();
            });
            #[cfg(feature = "openblas")]
            let blas = {
                let (b_us, b_gf) = time(flops, || {
                    crate::blas::gemm_rows(
                        &a,
                        k,
                        crate::blas::Mat::new(&w, k, n, n),
                        &mut c,
                        n,
                        |_| {},
                    )
                    .unwrap();
                });
                format!("  openblas {b_us:8.1} us {b_gf:5.1} GF/s")
            };
            #[cfg(not(feature = "openblas"))]
            let blas = String::new();
            eprintln!(
                "M={m:3} K={k:4} N={n:4}  candle {c_us:8.1} us {c_gf:5.1} GF/s  packed {p_us:8.1} us {p_gf:5.1} GF/s{blas}"
            );
        }
    }
}
