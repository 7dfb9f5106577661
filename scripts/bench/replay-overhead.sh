#!/usr/bin/env bash
# What Router Replay costs the proxy: the same keyword-only recipe served twice, with a state
# directory (a replay record per request, SQLite writer thread) and without one, against one
# instant mock backend; wrk at c=64 alternates between the two for ROUNDS rounds.
#
# usage: scripts/bench/replay-overhead.sh     env: DURATION=8 ROUNDS=3 SKIP_BUILD=1
# Appends a table with the machine state to scripts/bench/results/replay-2026-11-21.md.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
DURATION="${DURATION:-8}"
ROUNDS="${ROUNDS:-3}"
RESULTS="${RESULTS:-$ROOT/scripts/bench/results/replay-2026-11-21.md}"
TMP="$(mktemp -d -t vsr-replay-bench.XXXXXX)"
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$TMP"
}
trap cleanup EXIT

command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk; }
if [[ -z "${SKIP_BUILD:-}" ]]; then
  (cd "$ROOT" && cargo build -q --release -p vllm-sr -p vllm-sr-testkit)
fi
cp "$ROOT/target/release/vllm-sr" "$ROOT/target/release/mock-openai" "$TMP/"

MOCK=19580; ON=19581; OFF=19582
"$TMP/mock-openai" --listen "127.0.0.1:$MOCK" >/dev/null & PIDS+=($!)
common=(serve --config "$ROOT/scripts/bench/proxy/recipe.yaml" --no-metrics --no-management --watch-interval-ms 0)
MOCK_ENDPOINT="127.0.0.1:$MOCK" "$TMP/vllm-sr" --log-level warn "${common[@]}" \
  --listen "127.0.0.1:$ON" --state-dir "$TMP/state" >/dev/null & PIDS+=($!)
MOCK_ENDPOINT="127.0.0.1:$MOCK" "$TMP/vllm-sr" --log-level warn "${common[@]}" \
  --listen "127.0.0.1:$OFF" --no-replay >/dev/null & PIDS+=($!)
for port in $MOCK $ON $OFF; do
  for _ in $(seq 100); do curl -sf "http://127.0.0.1:$port/health" >/dev/null && break; sleep 0.1; done
done

lua="$ROOT/scripts/bench/proxy/post.lua"
run() { wrk -t2 -c64 -d"${DURATION}s" -s "$lua" "http://127.0.0.1:$1/v1/chat/completions" | awk '/Requests\/sec/{print int($2)}'; }
declare -a on off
for r in $(seq "$ROUNDS"); do
  run $OFF >/dev/null 2>&1 || true   # warm-up
  off+=("$(run $OFF)"); on+=("$(run $ON)")
  echo "round $r: without replay ${off[-1]} RPS, with replay ${on[-1]} RPS" >&2
done
median() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END{print a[int((NR+1)/2)]}'; }
m_off=$(median "${off[@]}"); m_on=$(median "${on[@]}")
cost=$(awk -v a="$m_off" -v b="$m_on" 'BEGIN{printf "%.1f", (a-b)*100/a}')
records=$(sqlite3 "$TMP/state/vllm-sr.sqlite3" 'select count(*) from replay' 2>/dev/null || echo "?")
{
  echo
  echo "## Run $(date -u '+%Y-%m-%d %H:%M UTC') — commit $(git -C "$ROOT" rev-parse --short HEAD)"
  echo
  echo "wrk -t2 -c64 -d${DURATION}s, ${ROUNDS} rounds alternating; keyword-only recipe, instant mock."
  echo
  echo "| | RPS per round | median |"
  echo "|---|---|---:|"
  echo "| without replay (\`--no-replay\`) | ${off[*]} | $m_off |"
  echo "| with replay (SQLite under \`--state-dir\`) | ${on[*]} | $m_on |"
  echo
  echo "Replay costs **${cost}%** of proxy throughput (target ≤ 10%); records written: $records."
  echo
  echo "Machine: $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg) after the run."
} | tee -a "$RESULTS"
