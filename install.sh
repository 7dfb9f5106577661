#!/usr/bin/env bash
# Installs vllm-sr from this checkout: builds the release binary and puts `vllm-sr` on the PATH.
# Idempotent: a second run only rebuilds what changed. Fails loudly with the reason.
#
#   ./install.sh                 # install into cargo's bin directory (~/.cargo/bin)
#   VLLM_SR_INSTALL_ROOT=/opt/vllm-sr ./install.sh   # install into /opt/vllm-sr/bin
#   VLLM_SR_PROFILE=release-lto ./install.sh          # fat-LTO build for production: ~15-25% less
#                                                     # proxy CPU per request, ~3x the build time
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$ROOT"

say() { printf 'install.sh: %s\n' "$*"; }
die() { printf 'install.sh: error: %s\n' "$*" >&2; exit 1; }

command -v cargo >/dev/null 2>&1 || die "cargo is not installed; install Rust from your package manager or rustup, then re-run"

root_args=()
if [ -n "${VLLM_SR_INSTALL_ROOT:-}" ]; then
    root_args=(--root "$VLLM_SR_INSTALL_ROOT")
    bindir="$VLLM_SR_INSTALL_ROOT/bin"
else
    bindir="${CARGO_HOME:-$HOME/.cargo}/bin"
fi

profile="${VLLM_SR_PROFILE:-release}"
say "building the $profile binary (first build takes several minutes)"
# Reuse the workspace's target directory so tests and install share one release build.
CARGO_TARGET_DIR="$ROOT/target" cargo install --path cli --locked --force --quiet \
    --profile "$profile" "${root_args[@]}" \
    || die "cargo install failed (see the compiler output above)"
say "installed $bindir/vllm-sr ($("$bindir/vllm-sr" --version))"

say "installing the offline default embedding model"
# Into the user model cache, which the installed binary searches first.
VLLM_SR_MODELS_DIR="${VLLM_SR_MODELS_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/vllm-sr/models}" \
    bash "$ROOT/scripts/fetch-models.sh" || die "could not install the default embedding model (see above)"

case ":$PATH:" in
    *":$bindir:"*) ;;
    *) say "note: $bindir is not on your PATH; add it with: export PATH=\"$bindir:\$PATH\"" ;;
esac
