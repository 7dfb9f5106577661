#!/usr/bin/env bash
# What Router Replay costs the proxy: the same keyword-only recipe served twice, with a state
# directory (a replay record per request, SQLite writer thread) and without one, against one
# instant mock backend; wrk at c=64 alternates between the two for ROUNDS rounds.
#
# usage: scripts/bench/replay-overhead.sh     env: DURATION=8 ROUNDS=3 SKIP_BUILD=1
#                                                 PROFILE=release-lto (cargo profile; shipped)
# Appends a table with the machine state to scripts/bench/results/replay-2026-11-21.md.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
DURATION="${DURATION:-8}"
ROUNDS="${ROUNDS:-3}"
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
# The proxy's own CPU time (user + system, all threads) per request: much less sensitive to
# other tenants of a shared machine than RPS.
ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
HZ=$(getconf CLK_TCK)
# run PORT PID → "RPS CPU-µs-per-request"
run() {
  local before after out
  before=$(ticks "$2")
  out=$(wrk -t2 -c64 -d"${DURATION}s" -s "$lua" "http://127.0.0.1:$1/v1/chat/completions")
  after=$(ticks "$2")
  awk -v b="$before" -v a="$after" -v hz="$HZ" '
    /requests in/ {n=$1} /Requests\/sec/ {rps=int($2)}
    END {printf "%d %.0f\n", rps, (a-b)/hz*1e6/n}' <<<"$out"
}
declare -a on off on_cpu off_cpu
measure_off() { read -r rps cpu < <(run $OFF $PID_OFF); off+=("$rps"); off_cpu+=("$cpu"); }
measure_on() { read -r rps cpu < <(run $ON $PID_ON); on+=("$rps"); on_cpu+=("$cpu"); }
# Warm both up once, then alternate which goes first: a fixed order put the same server
# third in every burst of load, where this VM was measurably slower.
run $OFF $PID_OFF >/dev/null 2>&1 || true
run $ON $PID_ON >/dev/null 2>&1 || true
for r in $(seq "$ROUNDS"); do
  if (( r % 2 )); then measure_off; measure_on; else measure_on; measure_off; fi
  echo "round $r: without replay ${off[-1]} RPS (${off_cpu[-1]} µs CPU/req), with replay ${on[-1]} RPS (${on_cpu[-1]} µs CPU/req)" >&2
done
median() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END{print a[int((NR+1)/2)]}'; }
m_off=$(median "${off[@]}"); m_on=$(median "${on[@]}")
c_off=$(median "${off_cpu[@]}"); c_on=$(median "${on_cpu[@]}")
cost=$(awk -v a="$m_off" -v b="$m_on" 'BEGIN{printf "%.1f", (a-b)*100/a}')
# Each round's own ratio, then their median: robust to the VM's speed changing between rounds.
pair_costs=()
for i in "${!off[@]}"; do
  pair_costs+=("$(awk -v a="${off[$i]}" -v b="${on[$i]}" 'BEGIN{printf "%.1f", (a-b)*100/a}')")
done
pair_cost=$(printf '%s\n' "${pair_costs[@]}" | sort -g | awk '{a[NR]=$1} END{print a[int((NR+1)/2)]}')
cpu_cost=$(awk -v a="$c_off" -v b="$c_on" 'BEGIN{printf "%.1f", (b-a)*100/b}')
records=$(sqlite3 "$TMP/state/vllm-sr.sqlite3" 'select coalesce(sum(records), 0) - coalesce((select skip from replay_head), 0) from replay_segments' 2>/dev/null || echo "?")
{
  echo
  echo "## Run $(date -u '+%Y-%m-%d %H:%M UTC') — commit $(git -C "$ROOT" rev-parse --short HEAD), profile \`$PROFILE\`"
  echo
  echo "wrk -t2 -c64 -d${DURATION}s, ${ROUNDS} rounds, the first of each pair alternating; keyword-only recipe, instant mock."
  echo
  echo "| | RPS per round | median | proxy CPU µs/request per round | median |"
  echo "|---|---|---:|---|---:|"
  echo "| without replay (\`--no-replay\`) | ${off[*]} | $m_off | ${off_cpu[*]} | $c_off |"
  echo "| with replay (SQLite under \`--state-dir\`) | ${on[*]} | $m_on | ${on_cpu[*]} | $c_on |"
  echo
  echo "Replay costs **${cost}%** of proxy throughput by RPS (target ≤ 10%; median of the rounds'"
  echo "own ratios: ${pair_cost}%, rounds: ${pair_costs[*]}) and **${cpu_cost}%** by proxy CPU per request"
  echo "(the throughput share a CPU-bound proxy loses); records kept: $records."
  echo
  echo "Machine: $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg) after the run."
} | tee -a "$RESULTS"
