#!/usr/bin/env bash
# Embedding speed comparison on one machine, same texts, same thread count:
#   candle (this crate, examples/embed_bench) vs onnxruntime vs sentence-transformers/PyTorch.
#
#   scripts/bench/embed.sh                      # THREADS=2 ITERS=40 BENCH_SECONDS=4 ROUNDS=1
#   VARIANTS="candle openblas q8 nobucket t1 candle1 lto" scripts/bench/embed.sh  # extra rows:
#     candle = the candle tensor-op forward pass (--kernel candle, the path before the packed
#     GEMM); openblas = plain-buffer forward on OpenBLAS (builds with --features openblas; needs
#     libopenblas-pthread-dev); q8 = q8_0 linear layers (candle path); nobucket = no length
#     bucketing; t1 = 1 thread everywhere; candle1 = candle's element-wise pool off
#     (CANDLE_NUM_THREADS=1); lto = fat LTO, 1 CGU
# The main row, rust-f32, is this crate's default (--kernel auto: plain-buffer forward on the
# built-in packed GEMM).
#
# Creates scripts/bench/.venv (PyPI: numpy tokenizers onnxruntime onnx sentence-transformers
# torch) on first use, installs the default model if missing, writes raw JSON under
# .cache/bench/run-<stamp>/ and a markdown table with machine state to stdout and to
# scripts/bench/results/embed-<date>.md (append mode when a file for the day exists).
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
THREADS="${THREADS:-2}"
ITERS="${ITERS:-40}"
BENCH_SECONDS="${BENCH_SECONDS:-4}"
ROUNDS="${ROUNDS:-1}"
VARIANTS="${VARIANTS:-}"
PROFILE="${PROFILE:-release}"
VENV="$REPO/scripts/bench/.venv"
MODEL_DIR="${VLLM_SR_MODELS_DIR:-$REPO/.cache/models}/sentence-transformers/all-MiniLM-L6-v2"
STAMP="$(date -u +%Y%m%dT%H%M%SZ)"
OUT="$REPO/.cache/bench/run-$STAMP"
mkdir -p "$OUT" "$REPO/scripts/bench/results"

say() { printf 'bench: %s\n' "$*" >&2; }

if [[ ! -x "$VENV/bin/python" ]] || ! "$VENV/bin/python" -c "import onnxruntime, sentence_transformers, torch" 2>/dev/null; then
  say "creating $VENV (onnxruntime, sentence-transformers, torch from PyPI; several GB)"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q --disable-pip-version-check numpy tokenizers onnxruntime onnx \
      sentence-transformers torch
fi
[[ -f "$MODEL_DIR/model.safetensors" ]] || "$REPO/scripts/fetch-models.sh"

say "building the candle bench ($PROFILE)"
(cd "$REPO" && cargo build -q --profile "$PROFILE" -p vllm-sr-models --example embed_bench)
BIN="$REPO/target/$PROFILE/examples/embed_bench"
[[ "$PROFILE" == "dev" ]] && BIN="$REPO/target/debug/examples/embed_bench"

state() {
  {
    echo "date: $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
    echo "commit: $(git -C "$REPO" rev-parse --short HEAD)$(git -C "$REPO" diff --quiet || echo ' (dirty)')"
    echo "nproc: $(nproc --all)"
    echo "cpu: $(lscpu | sed -n 's/^Model name: *//p')"
    echo "load (1/5/15 min): $(cut -d' ' -f1-3 /proc/loadavg)"
    echo "memory: $(free -g | awk '/Mem:/ {print $2" GiB total, "$7" GiB available"}')"
    echo "threads: $THREADS, iters: $ITERS, throughput seconds: $BENCH_SECONDS, profile: $PROFILE"
  } > "$OUT/state-$1.txt"
}

export OMP_NUM_THREADS="$THREADS" MKL_NUM_THREADS="$THREADS"
for round in $(seq 1 "$ROUNDS"); do
  state "r$round"
  say "round $round: rust f32 (default kernel)"
  RAYON_NUM_THREADS="$THREADS" "$BIN" --iters "$ITERS" --seconds "$BENCH_SECONDS" \
      --write-texts "$OUT/texts.json" --json "$OUT/r$round-rust-f32.json" >&2
  say "round $round: onnxruntime"
  "$VENV/bin/python" "$REPO/scripts/bench/embed_py.py" --backend ort --model "$MODEL_DIR" \
      --texts "$OUT/texts.json" --threads "$THREADS" --iters "$ITERS" --seconds "$BENCH_SECONDS" \
      --onnx "$REPO/.cache/bench/minilm.onnx" --json "$OUT/r$round-onnxruntime.json" >&2 2>"$OUT/ort.log" \
      || { cat "$OUT/ort.log" >&2; exit 1; }
  say "round $round: pytorch"
  "$VENV/bin/python" "$REPO/scripts/bench/embed_py.py" --backend torch --model "$MODEL_DIR" \
      --texts "$OUT/texts.json" --threads "$THREADS" --iters "$ITERS" --seconds "$BENCH_SECONDS" \
      --json "$OUT/r$round-pytorch.json" >&2 2>"$OUT/torch.log" \
      || { cat "$OUT/torch.log" >&2; exit 1; }
  for v in $VARIANTS; do
    say "round $round: candle variant $v"
    case "$v" in
      candle) RAYON_NUM_THREADS="$THREADS" "$BIN" --kernel candle --iters "$ITERS" --seconds "$BENCH_SECONDS" --json "$OUT/r$round-rust-candle.json" >&2 ;;
      openblas)
        (cd "$REPO" && cargo build -q --profile "$PROFILE" -p vllm-sr-models --features openblas --example embed_bench)
        cp "$BIN" "$OUT/embed_bench-openblas"
        (cd "$REPO" && cargo build -q --profile "$PROFILE" -p vllm-sr-models --example embed_bench)
        RAYON_NUM_THREADS="$THREADS" "$OUT/embed_bench-openblas" --kernel openblas --iters "$ITERS" --seconds "$BENCH_SECONDS" --json "$OUT/r$round-rust-openblas.json" >&2
        rm -f "$OUT/embed_bench-openblas" ;;
      q8) RAYON_NUM_THREADS="$THREADS" "$BIN" --precision q8 --iters "$ITERS" --seconds "$BENCH_SECONDS" --json "$OUT/r$round-rust-q8.json" >&2 ;;
      nobucket) RAYON_NUM_THREADS="$THREADS" "$BIN" --no-bucketing --iters "$ITERS" --seconds "$BENCH_SECONDS" --json "$OUT/r$round-rust-nobucket.json" >&2 ;;
      t1) RAYON_NUM_THREADS=1 CANDLE_NUM_THREADS=1 "$BIN" --iters "$ITERS" --seconds "$BENCH_SECONDS" --json "$OUT/r$round-rust-t1.json" >&2 ;;
      candle1) RAYON_NUM_THREADS="$THREADS" CANDLE_NUM_THREADS=1 "$BIN" --iters "$ITERS" --seconds "$BENCH_SECONDS" --json "$OUT/r$round-rust-ew1.json" >&2 ;;
      lto)
        (cd "$REPO" && cargo build -q --profile release-lto -p vllm-sr-models --example embed_bench)
        RAYON_NUM_THREADS="$THREADS" "$REPO/target/release-lto/examples/embed_bench" --iters "$ITERS" --seconds "$BENCH_SECONDS" --json "$OUT/r$round-rust-lto.json" >&2 ;;
      *) say "unknown variant $v"; exit 1 ;;
    esac
  done
  state "r$round-end"
done

RESULT="$REPO/scripts/bench/results/embed-$(date -u +%Y-%m-%d).md"
python3 "$REPO/scripts/bench/summarize.py" "$OUT" | tee -a "$RESULT"
say "raw results in $OUT; table appended to $RESULT"
