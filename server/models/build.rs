//! Build script: links OpenBLAS statically when the `openblas` feature is on.
//!
//! The library is Debian's `libopenblas-pthread-dev` (`libopenblas.a`). We call it from several
//! rayon threads at once with its own threading set to 1 (`openblas_set_num_threads`), which
//! needs a thread-safe build: Debian's *serial* variant is built without `USE_LOCKING` and gives
//! wrong results under concurrent calls (seen here as batched-vs-single cosines of 0.97), so it
//! is not searched. The search order is `$VLLM_SR_OPENBLAS_LIB_DIR` (must hold a threaded or
//! `USE_LOCKING=1` build), then Debian's multiarch pthread directory, then `/usr/local/lib`. A
//! missing library is a build error that says which package to install, never a silent
//! fallback.

use std::path::{Path, PathBuf};

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=VLLM_SR_OPENBLAS_LIB_DIR");
    if std::env::var_os("CARGO_FEATURE_OPENBLAS").is_none() {
        return;
    }
    let arch = std::env::var("CARGO_CFG_TARGET_ARCH").unwrap_or_default();
    let os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    let env = std::env::var("CARGO_CFG_TARGET_ENV").unwrap_or_default();
    let multiarch = format!("/usr/lib/{arch}-{os}-{env}");
    let mut candidates: Vec<PathBuf> = Vec::new();
    if let Some(dir) = std::env::var_os("VLLM_SR_OPENBLAS_LIB_DIR") {
        candidates.push(PathBuf::from(dir));
    }
    candidates.push(Path::new(&multiarch).join("openblas-pthread"));
    candidates.push(PathBuf::from("/usr/local/lib"));
    let Some(dir) = candidates
        .iter()
        .find(|d| d.join("libopenblas.a").is_file())
    else {
        let searched: Vec<String> = candidates.iter().map(|d| d.display().to_string()).collect();
        // A build script reports failure by panicking; the message is what the user sees.
        #[expect(clippy::panic, reason = "a build script fails by panicking")]
        {
            panic!(
                "feature `openblas` needs the static OpenBLAS library libopenblas.a, not found in: {}.\n\
                 On Debian/Ubuntu: apt-get install libopenblas-pthread-dev \
                 (scripts/test.sh does this), or set VLLM_SR_OPENBLAS_LIB_DIR, \
                 or build without the feature.",
                searched.join(", ")
            );
        }
    };
    println!(
        "cargo:rerun-if-changed={}",
        dir.join("libopenblas.a").display()
    );
    println!("cargo:rustc-link-search=native={}", dir.display());
    println!("cargo:rustc-link-lib=static=openblas");
    // libopenblas needs libpthread (in libc since glibc 2.34, separate before) and libm.
    println!("cargo:rustc-link-lib=dylib=pthread");
    println!("cargo:rustc-link-lib=dylib=m");
}
