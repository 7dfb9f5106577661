//! Build script: links OpenBLAS statically when the `openblas` feature is on.
//!
//! The library is Debian's `libopenblas-serial-dev` (`libopenblas.a`, single-threaded: we split
//! work across our own rayon threads, so OpenBLAS must not start a thread pool of its own). The
//! search order is `$VLLM_SR_OPENBLAS_LIB_DIR`, then the multiarch directories Debian uses for
//! the serial, pthread and default variants. A missing library is a build error that says which
//! package to install, never a silent fallback.

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
    for sub in ["openblas-serial", "openblas-pthread", ""] {
        candidates.push(Path::new(&multiarch).join(sub));
    }
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
                 On Debian/Ubuntu: apt-get install libopenblas-serial-dev \
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
    // The pthread variant needs libpthread; glibc >= 2.34 has it in libc, older ones do not.
    println!("cargo:rustc-link-lib=dylib=pthread");
    println!("cargo:rustc-link-lib=dylib=m");
}
