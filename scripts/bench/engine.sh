#!/usr/bin/env bash
# Engine benchmarks with the machine state next to the numbers (markdown on stdout):
#   decide  — criterion: decision evaluation on the balance recipe with precomputed signals
#   signals — full signal pass vs one embedding forward pass, p50/p99, per-family breakdown
#   fuzz    — the "no panic on any request shape" property test with FUZZ_CASES cases
#
#   scripts/bench/engine.sh                 # decide + signals
#   WHAT="fuzz" FUZZ_CASES=200000 scripts/bench/engine.sh
#
# Needs the default model (scripts/fetch-models.sh) for real signals; see
# scripts/bench/results/engine-*.md for recorded runs.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$REPO"
WHAT="${WHAT:-decide signals}"
FUZZ_CASES="${FUZZ_CASES:-20000}"
export VLLM_SR_MODELS_DIR="${VLLM_SR_MODELS_DIR:-$REPO/.cache/models}"

state() {
    echo '```'
    echo "date: $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
    echo "commit: $(git rev-parse --short HEAD)$(git diff --quiet || echo ' (dirty)')"
    echo "nproc: $(nproc --all)"
    echo "load (1/5/15 min): $(cut -d' ' -f1-3 /proc/loadavg)"
    echo "other rustc/cargo processes: $(pgrep -c -x 'rustc|cargo' || true)"
    echo '```'
}

for w in $WHAT; do
    echo "## $w"
    echo
    echo "Before:"
    state
    case "$w" in
        decide)
            echo '```'
            cargo bench -q -p vllm-sr-engine --bench decide 2>&1 | grep -E 'time:|decide bench' || true
            echo '```'
            ;;
        signals)
            cargo bench -q -p vllm-sr-engine --bench signals 2>&1 | grep -v -E '^\s*(Compiling|Finished|Running)' || true
            ;;
        fuzz)
            cargo build -q --release -p vllm-sr-engine --tests
            echo '```'
            start=$(date +%s)
            VLLM_SR_FUZZ_CASES="$FUZZ_CASES" cargo test -q --release -p vllm-sr-engine --test engine \
                any_request_shape_routes 2>&1 | grep -E 'test result|panicked|FAILED' || true
            echo "$FUZZ_CASES cases in $(( $(date +%s) - start )) s"
            echo '```'
            ;;
        *) echo "unknown benchmark: $w" >&2; exit 2 ;;
    esac
    echo
    echo "After:"
    state
    echo
done
