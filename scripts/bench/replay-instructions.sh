#!/usr/bin/env bash
# What Router Replay costs per request in instructions (callgrind), a count that the noise of a
# shared machine does not move: the same keyword-only recipe served with and without a state
# directory, N sequential requests on one keep-alive connection after a warm-up, the
# counters zeroed in between. Reports instructions per request of the I/O thread that served
# them and of the replay writer thread, and the functions whose share grew most.
#
# usage: scripts/bench/replay-instructions.sh      env: N=2000 SKIP_BUILD=1
#                                                       PROFILE=release-lto (cargo profile)
#                                                       KEEP_TMP=1 (keep the callgrind files,
#                                                       e.g. for callgrind_annotate --tree)
# Needs valgrind (Debian package; installed when missing). Prints only; the caller records.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
N="${N:-2000}"
PROFILE="${PROFILE:-release-lto}"
command -v valgrind >/dev/null || { apt-get update -qq && apt-get install -y -qq valgrind; }
if [[ -z "${SKIP_BUILD:-}" ]]; then
  (cd "$ROOT" && cargo build -q --profile "$PROFILE" -p vllm-sr -p vllm-sr-testkit)
fi
TMP=$(mktemp -d)
PIDS=()
cleanup() {
  kill "${PIDS[@]}" 2>/dev/null || true
  wait 2>/dev/null || true
  if [[ -n "${KEEP_TMP:-}" ]]; then echo "callgrind files kept in $TMP" >&2; else rm -rf "$TMP"; fi
}
trap cleanup EXIT

MOCK=19590; PORT=19591
"$ROOT/target/$PROFILE/mock-openai" --listen "127.0.0.1:$MOCK" >/dev/null & PIDS+=($!)
cat >"$TMP/client.py" <<'EOF'
import http.client, json, sys
port, n = int(sys.argv[1]), int(sys.argv[2])
conn = http.client.HTTPConnection("127.0.0.1", port)
body = json.dumps({"model": "auto", "messages": [{"role": "user", "content": "hello there, summarize this"}]})
for _ in range(n):
    conn.request("POST", "/v1/chat/completions", body, {"content-type": "application/json"})
    resp = conn.getresponse()
    resp.read()
    assert resp.status == 200, resp.status
EOF

# measure NAME FLAGS... → callgrind files $TMP/cg.NAME.1-<thread>
measure() {
  local name=$1 vpid
  shift
  MOCK_ENDPOINT="127.0.0.1:$MOCK" valgrind --tool=callgrind --separate-threads=yes \
    --callgrind-out-file="$TMP/cg.$name" "$ROOT/target/$PROFILE/vllm-sr" --log-level warn \
    serve --config "$ROOT/scripts/bench/proxy/recipe.yaml" --no-metrics --no-management \
    --watch-interval-ms 0 --listen "127.0.0.1:$PORT" "$@" >"$TMP/$name.log" 2>&1 &
  vpid=$!
  for _ in $(seq 600); do curl -fs -o /dev/null "http://127.0.0.1:$PORT/health" && break; sleep 0.2; done
  python3 "$TMP/client.py" "$PORT" 300
  callgrind_control -z "$vpid" >/dev/null
  python3 "$TMP/client.py" "$PORT" "$N"
  sleep 1   # the writer's next poll picks up the last records
  callgrind_control -d "$vpid" >/dev/null
  kill -INT "$vpid"
  wait "$vpid" || true
}
measure off --no-replay
measure on --state-dir "$TMP/state"

# The thread that served the requests: the one with most instructions among those that ran
# our HTTP/1.1 server (h1_server); the writer: the one that ran SQLite (nothing else writes
# or reads it meanwhile).
summary() { grep -h '^summary:' "$1" | awk '{print $2}'; }
io_file() {
  local best="" most=0 f n
  for f in "$TMP"/cg."$1".1-*; do
    grep -q 'h1_server' "$f" || continue
    n=$(summary "$f")
    if (( n > most )); then most=$n; best=$f; fi
  done
  echo "$best"
}
writer_file() { grep -l 'sqlite3VdbeExec' "$TMP"/cg.on.1-* | head -1; }
off=$(io_file off); on=$(io_file on); writer=$(writer_file)
per() { awk -v n="$(summary "$1")" -v r="$N" 'BEGIN{printf "%.0f", n / r}'; }
echo "commit $(git -C "$ROOT" rev-parse --short HEAD), profile $PROFILE, $N sequential requests"
echo "I/O thread, instructions per request: without replay $(per "$off"), with replay $(per "$on")"
echo "replay writer thread, instructions per record: $(per "$writer")"
self() { callgrind_annotate --threshold=100 "$1" 2>/dev/null | grep -E '^ *[0-9,]+ ' | sed 's/ *([ 0-9.]*%)//'; }
echo "I/O thread functions that grew most (instructions per request, self):"
python3 - "$N" <(self "$off") <(self "$on") <<'EOF'
import sys
n = int(sys.argv[1])
def load(path):
    d = {}
    for line in open(path):
        count, name = line.split(None, 1)
        name = name.strip().split(" [")[0].removeprefix("???:")
        d[name] = d.get(name, 0) + int(count.replace(",", "")) / n
    d.pop("PROGRAM TOTALS", None)
    return d
a, b = load(sys.argv[2]), load(sys.argv[3])
for delta, name in sorted(((b.get(k, 0) - a.get(k, 0), k) for k in set(a) | set(b)), reverse=True)[:15]:
    if delta > 0 and "::call_once" not in name and "block_on" not in name and "thread_start" not in name \
            and "start_thread" not in name and "clone" not in name and "begin_short_backtrace" not in name:
        print(f"  {delta:+8.0f}  {name[:110]}")
EOF
echo "writer thread, top functions (instructions per record, self):"
self "$writer" | grep -vE 'PROGRAM TOTALS|clone\.S|start_thread|thread_start|call_once|begin_short_backtrace' |
  awk -v n="$N" 'NR <= 10 {c=$1; gsub(",", "", c); $1=""; sub(/ \[.*/, ""); sub(/\?\?\?:/, ""); printf "  %8.0f %s\n", c / n, substr($0, 1, 110)}'
