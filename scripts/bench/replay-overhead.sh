#!/usr/bin/env bash
# What Router Replay costs the proxy: the same keyword-only recipe served twice, with a state
# directory (a replay record per request, SQLite writer thread) and without one, against one
# instant mock backend, loaded in turn by wrk at c=64.
#
# This VM's speed swings by a third from one few-second stretch to the next, with either
# server, so long rounds compared across minutes mostly measure the VM. The bench therefore
# runs QUADS quads of short WINDOW-second runs in ABBA order (without, with, with, without):
# a quad's cost is 1 - (with₁ + with₂) / (without₁ + without₂), which cancels any drift that
# is linear across the quad. It reports the mean of the quads' costs with a 95% confidence
# interval (t-distribution), their median, and the proxies' pooled CPU time per request.
#
# usage: scripts/bench/replay-overhead.sh     env: QUADS=40 WINDOW=1 SKIP_BUILD=1
#                                                 PROFILE=release-lto (cargo profile; shipped)
# Appends a table with the machine state to scripts/bench/results/replay-2026-11-21.md.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
QUADS="${QUADS:-40}"
WINDOW="${WINDOW:-1}"
PROFILE="${PROFILE:-release-lto}"
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
  (cd "$ROOT" && cargo build -q --profile "$PROFILE" -p vllm-sr -p vllm-sr-testkit)
fi
cp "$ROOT/target/$PROFILE/vllm-sr" "$ROOT/target/$PROFILE/mock-openai" "$TMP/"

MOCK=19580; ON=19581; OFF=19582
"$TMP/mock-openai" --listen "127.0.0.1:$MOCK" >/dev/null & PIDS+=($!)
common=(serve --config "$ROOT/scripts/bench/proxy/recipe.yaml" --no-metrics --no-management --watch-interval-ms 0)
MOCK_ENDPOINT="127.0.0.1:$MOCK" "$TMP/vllm-sr" --log-level warn "${common[@]}" \
  --listen "127.0.0.1:$ON" --state-dir "$TMP/state" >/dev/null & PIDS+=($!); PID_ON=$!
MOCK_ENDPOINT="127.0.0.1:$MOCK" "$TMP/vllm-sr" --log-level warn "${common[@]}" \
  --listen "127.0.0.1:$OFF" --no-replay >/dev/null & PIDS+=($!); PID_OFF=$!
for port in $MOCK $ON $OFF; do
  for _ in $(seq 100); do curl -sf "http://127.0.0.1:$port/health" >/dev/null && break; sleep 0.1; done
done

lua="$ROOT/scripts/bench/proxy/post.lua"
# The proxy's own CPU time (user + system, all threads), in clock ticks.
ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
# run PORT PID → one line "requests RPS CPU-ticks"
run() {
  local before after out
  before=$(ticks "$2")
  out=$(wrk -t2 -c64 -d"${WINDOW}s" -s "$lua" "http://127.0.0.1:$1/v1/chat/completions")
  after=$(ticks "$2")
  awk -v t=$((after - before)) '/requests in/ {n=$1} /Requests\/sec/ {rps=$2} END {print n, rps, t}' <<<"$out"
}
# Warm both up, then the quads: without, with, with, without.
run $OFF $PID_OFF >/dev/null; run $ON $PID_ON >/dev/null
: >"$TMP/quads"
for q in $(seq "$QUADS"); do
  a1=$(run $OFF $PID_OFF); b1=$(run $ON $PID_ON); b2=$(run $ON $PID_ON); a2=$(run $OFF $PID_OFF)
  echo "$a1 $b1 $b2 $a2" >>"$TMP/quads"
done
read -r summary table < <(python3 - "$TMP/quads" "$(getconf CLK_TCK)" <<'EOF'
import statistics as st, sys
rows = [list(map(float, line.split())) for line in open(sys.argv[1])]
hz = float(sys.argv[2])
# Each row: (requests, RPS, CPU ticks) for without₁, with₁, with₂, without₂.
costs = [100 * (1 - (r[4] + r[7]) / (r[1] + r[10])) for r in rows]
n = len(costs)
mean, sd = st.mean(costs), (st.stdev(costs) if n > 1 else 0.0)
# Two-sided 95% t quantiles; 1.96 beyond the table.
t = {1: 12.71, 2: 4.30, 3: 3.18, 4: 2.78, 5: 2.57, 6: 2.45, 7: 2.36, 8: 2.31, 9: 2.26,
     10: 2.23, 15: 2.13, 20: 2.09, 25: 2.06, 30: 2.04, 40: 2.02, 60: 2.00, 120: 1.98}
df = max(n - 1, 1)
q = next((v for k, v in sorted(t.items()) if k >= df), 1.96)
half = q * sd / n ** 0.5
off_rps = [r[1] for r in rows] + [r[10] for r in rows]
on_rps = [r[4] for r in rows] + [r[7] for r in rows]
cpu = lambda reqs, ticks: sum(ticks) / hz * 1e6 / sum(reqs)
off_cpu = cpu([r[0] for r in rows] + [r[9] for r in rows], [r[2] for r in rows] + [r[11] for r in rows])
on_cpu = cpu([r[3] for r in rows] + [r[6] for r in rows], [r[5] for r in rows] + [r[8] for r in rows])
print(f"{mean:.1f} {mean - half:.1f} {mean + half:.1f} {st.median(costs):.1f} {n}"
      f" {st.median(off_rps):.0f} {min(off_rps):.0f} {max(off_rps):.0f}"
      f" {st.median(on_rps):.0f} {min(on_rps):.0f} {max(on_rps):.0f}"
      f" {off_cpu:.1f} {on_cpu:.1f} {100 * (on_cpu - off_cpu) / on_cpu:.1f}"
      f" {','.join(f'{c:.1f}' for c in sorted(costs))}")
EOF
)
read -r mean lo hi median n off_med off_min off_max on_med on_min on_max off_cpu on_cpu cpu_cost costs <<<"$summary $table"
records=$(sqlite3 "$TMP/state/vllm-sr.sqlite3" 'select coalesce(sum(records), 0) - coalesce((select skip from replay_head), 0) from replay_segments' 2>/dev/null || echo "?")
{
  echo
  echo "## Run $(date -u '+%Y-%m-%d %H:%M UTC') — commit $(git -C "$ROOT" rev-parse --short HEAD), profile \`$PROFILE\`"
  echo
  echo "wrk -t2 -c64, $n ABBA quads of ${WINDOW}-second runs (without, with, with, without); keyword-only recipe, instant mock."
  echo
  echo "| | RPS per run: median (min–max) | proxy CPU µs/request, pooled |"
  echo "|---|---:|---:|"
  echo "| without replay (\`--no-replay\`) | $off_med ($off_min–$off_max) | $off_cpu |"
  echo "| with replay (SQLite under \`--state-dir\`) | $on_med ($on_min–$on_max) | $on_cpu |"
  echo
  echo "Replay costs **${mean}%** of proxy throughput (mean of the quads' costs; 95% confidence"
  echo "interval ${lo}% to ${hi}%; median ${median}%; target ≤ 10%) and ${cpu_cost}% of the proxy's CPU"
  echo "time per request; records kept: $records."
  echo
  echo "Quad costs, sorted (%): ${costs//,/ }."
  echo
  echo "Machine: $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg) after the run."
} | tee -a "$RESULTS"
