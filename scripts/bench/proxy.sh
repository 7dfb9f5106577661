#!/usr/bin/env bash
# Proxy-overhead benchmark (issue #5): one instant mock OpenAI upstream, measured
#   direct → mock, through vllm-sr (keyword-only recipe: no model runs), through nginx
#   proxy_pass (1 worker, keepalive upstream: the floor of a proxy hop) and through the
#   LiteLLM proxy (PyPI, 1 worker: the popular peer),
# all in the same run on the same machine. Reports c=1 latency p50/p99 and added latency
# (target − direct, per round) from scripts/bench/proxy/probe.py (raw keep-alive sockets,
# targets interleaved request by request: wrk 4.1's c=1 latency histogram on this VM reports
# a mean above the wall-clock time per request, so only its request rate is used), max RPS at
# c=64 (wrk, 2 threads), wrk's c=1 request rate as a cross-check, and the streaming
# time-to-first-chunk (probe.py ttfc).
#
# usage: scripts/bench/proxy.sh
# env:   DURATION=10      seconds per wrk run (c=1 and c=64)
#        WARMUP=2         seconds of wrk warm-up per target before the measured runs
#        ROUNDS=3         measured rounds (targets interleaved within a round)
#        STREAM_N=2000    rounds of the TTFC probe (one streamed request per target a round;
#                         LiteLLM only every LITELLM_EVERY-th, as in the latency probe)
#        LITELLM_EVERY=50 the c=1 probe measures LiteLLM (~30 ms a request) every Nth round
#        TARGETS="direct vllm-sr nginx litellm"
#        VSR_LOG=warn     vllm-sr --log-level (e.g. info to measure the cost of request logs)
#        PROFILE=release-lto  cargo profile of the vllm-sr and mock binaries (the shipped
#                         profile: fat LTO, one codegen unit; `release` builds in a third
#                         of the time and costs the proxy ~15-25% more user CPU)
#        SKIP_BUILD=1     use the existing target/$PROFILE binaries
#        RESULTS=scripts/bench/results/proxy-2026-11-21.md (appended)
#        NO_RESULTS=1     print only, write nothing
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
HERE="$ROOT/scripts/bench/proxy"
DURATION="${DURATION:-10}"
WARMUP="${WARMUP:-2}"
ROUNDS="${ROUNDS:-3}"
STREAM_N="${STREAM_N:-2000}"
LITELLM_EVERY="${LITELLM_EVERY:-50}"
TARGETS="${TARGETS:-direct vllm-sr nginx litellm}"
VSR_LOG="${VSR_LOG:-warn}"
PROFILE="${PROFILE:-release-lto}"
RESULTS="${RESULTS:-$ROOT/scripts/bench/results/proxy-2026-11-21.md}"
VENV="$ROOT/.cache/bench/venv-litellm"   # .cache/ is git-ignored
MASTER_KEY="sk-vllm-sr-bench"

log() { printf '[proxy.sh %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
has_target() { [[ " $TARGETS " == *" $1 "* ]]; }

# --- processes: every child is recorded and stopped on exit -----------------------------
TMP="$(mktemp -d -t vsr-proxy-bench.XXXXXX)"
PIDS=()
cleanup() {
  local pid
  for pid in "${PIDS[@]}"; do
    # each child runs in its own session (setsid): stop its whole group, then the pid
    kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
  done
  for pid in "${PIDS[@]}"; do
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

start() { # start NAME CMD... : background, own session, logs in $TMP/NAME.log
  local name="$1"; shift
  setsid "$@" >"$TMP/$name.log" 2>&1 &
  PIDS+=("$!")
  log "started $name (pid $!)"
}

wait_http() { # wait_http NAME URL [curl args...]
  local name="$1" url="$2"; shift 2
  for _ in $(seq 600); do
    if curl -fsS -o /dev/null --max-time 2 "$@" "$url" 2>/dev/null; then
      log "$name ready"; return 0
    fi
    sleep 0.1
  done
  log "$name did not become ready at $url; its log:"; tail -n 40 "$TMP/$name.log" >&2
  exit 1
}

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# --- build and install (idempotent) -----------------------------------------------------
if [[ "${SKIP_BUILD:-0}" != 1 ]]; then
  log "cargo build --profile $PROFILE -p vllm-sr -p vllm-sr-testkit"
  (cd "$ROOT" && cargo build --profile "$PROFILE" -p vllm-sr -p vllm-sr-testkit)
fi
for b in vllm-sr mock-openai; do
  [[ -x "$ROOT/target/$PROFILE/$b" ]] || { log "missing target/$PROFILE/$b"; exit 1; }
  # private copies: a concurrent cargo build cannot swap the binaries mid-run
  cp "$ROOT/target/$PROFILE/$b" "$TMP/$b"
done
VSR="$TMP/vllm-sr"
MOCK="$TMP/mock-openai"

missing=()
command -v wrk >/dev/null || missing+=(wrk)
has_target nginx && { command -v nginx >/dev/null || [[ -x /usr/sbin/nginx ]] || missing+=(nginx); }
if ((${#missing[@]})); then
  log "apt-get install -y ${missing[*]}"
  apt-get install -y "${missing[@]}" >/dev/null 2>&1 \
    || { apt-get update >/dev/null && apt-get install -y "${missing[@]}" >/dev/null; }
fi
NGINX="$(command -v nginx || echo /usr/sbin/nginx)"
if has_target litellm && [[ ! -x "$VENV/bin/litellm" ]]; then
  log "installing litellm[proxy] into $VENV"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q 'litellm[proxy]'
fi

# --- machine state ----------------------------------------------------------------------
machine_state() {
  echo "- nproc: $(nproc); CPU: $(lscpu | sed -n 's/^Model name: *//p' | head -1)"
  echo "- uptime: $(uptime)"
  echo "- top processes by CPU (ps -eo pcpu,comm --sort=-pcpu):"
  echo '```'
  ps -eo pcpu,etime,comm --sort=-pcpu | head -8
  echo '```'
}
STATE_BEFORE="$(machine_state)"

# --- servers ----------------------------------------------------------------------------
MOCK_PORT="$(free_port)"
start mock "$MOCK" --listen "127.0.0.1:$MOCK_PORT" --name mock
wait_http mock "http://127.0.0.1:$MOCK_PORT/health"
declare -A URL
URL[direct]="http://127.0.0.1:$MOCK_PORT/v1/chat/completions"

if has_target vllm-sr; then
  VSR_PORT="$(free_port)"
  start vllm-sr env MOCK_ENDPOINT="127.0.0.1:$MOCK_PORT" \
    "$VSR" --log-level "$VSR_LOG" serve --config "$HERE/recipe.yaml" \
    --listen "127.0.0.1:$VSR_PORT" --no-metrics --no-management --state-dir "$TMP/vsr-state" \
    --watch-interval-ms 0
  wait_http vllm-sr "http://127.0.0.1:$VSR_PORT/ready"
  URL[vllm-sr]="http://127.0.0.1:$VSR_PORT/v1/chat/completions"
fi

if has_target nginx; then
  NGINX_PORT="$(free_port)"
  mkdir -p "$TMP/nginx/tmp"
  sed -e "s|@PREFIX@|$TMP/nginx|g" -e "s|@PORT@|$NGINX_PORT|g" -e "s|@MOCK_PORT@|$MOCK_PORT|g" \
    "$HERE/nginx.conf.in" >"$TMP/nginx/nginx.conf"
  "$NGINX" -t -q -p "$TMP/nginx" -c "$TMP/nginx/nginx.conf" -e "$TMP/nginx/error.log"
  start nginx "$NGINX" -p "$TMP/nginx" -c "$TMP/nginx/nginx.conf" -e "$TMP/nginx/error.log"
  wait_http nginx "http://127.0.0.1:$NGINX_PORT/health"
  URL[nginx]="http://127.0.0.1:$NGINX_PORT/v1/chat/completions"
fi

if has_target litellm; then
  LITELLM_PORT="$(free_port)"
  sed -e "s|@MOCK_PORT@|$MOCK_PORT|g" -e "s|@MASTER_KEY@|$MASTER_KEY|g" \
    "$HERE/litellm.yaml.in" >"$TMP/litellm.yaml"
  start litellm env LITELLM_MASTER_KEY="$MASTER_KEY" LITELLM_LOCAL_MODEL_COST_MAP=True \
    LITELLM_TELEMETRY=False LITELLM_LOG=ERROR DISABLE_SCHEMA_UPDATE=true \
    "$VENV/bin/litellm" --config "$TMP/litellm.yaml" --host 127.0.0.1 \
    --port "$LITELLM_PORT" --num_workers 1
  wait_http litellm "http://127.0.0.1:$LITELLM_PORT/health/liveliness"
  URL[litellm]="http://127.0.0.1:$LITELLM_PORT/v1/chat/completions"
fi

auth_for() { [[ "$1" == litellm ]] && echo "$MASTER_KEY" || true; }

# sanity: each target answers the bench body with a chat completion
for t in $TARGETS; do
  a="$(auth_for "$t")"
  body="$(curl -fsS --max-time 10 -H 'Content-Type: application/json' \
    ${a:+-H "Authorization: Bearer $a"} \
    -d '{"model":"auto","messages":[{"role":"user","content":"hello"}]}' "${URL[$t]}")" \
    || { log "$t failed the sanity request"; tail -n 40 "$TMP/$t.log" >&2 || true; exit 1; }
  [[ "$body" == *'"chat.completion"'* ]] || { log "$t: unexpected body: $body"; exit 1; }
done
log "all targets answer: $TARGETS"

# --- measurements -----------------------------------------------------------------------
JSONL="$TMP/results.jsonl"
: >"$JSONL"
run_wrk() { # run_wrk ROUND TARGET CONC THREADS SECONDS
  local round="$1" t="$2" c="$3" th="$4" secs="$5" line
  line="$(BENCH_AUTH="$(auth_for "$t")" wrk -t"$th" -c"$c" -d"${secs}s" --timeout 10s \
    -s "$HERE/post.lua" "${URL[$t]}" | grep '^BENCH ')" || { log "wrk failed on $t"; exit 1; }
  [[ "$round" == warmup ]] && return 0
  python3 - "$round" "$t" "$c" "$line" >>"$JSONL" <<'PY'
import json, sys
rnd, t, c, line = sys.argv[1:]
kv = dict(x.split("=") for x in line.split()[1:])
r = {k: float(v) for k, v in kv.items()}
print(json.dumps({"kind": "wrk", "round": int(rnd), "target": t, "conc": int(c),
                  "p50_us": int(r["p50_us"]), "p99_us": int(r["p99_us"]),
                  "mean_us": r["mean_us"], "requests": int(r["requests"]),
                  "errors": int(r["errors"]),
                  "rps": r["requests"] / (r["duration_us"] / 1e6)}))
PY
  log "round $round $t c=$c: $line"
}

specs=()
for t in $TARGETS; do
  a="$(auth_for "$t")"
  every=1; [[ "$t" == litellm ]] && every="$LITELLM_EVERY"
  specs+=("$t=${URL[$t]}${a:+|$a}@$every")
done

for t in $TARGETS; do run_wrk warmup "$t" 8 1 "$WARMUP"; done
for round in $(seq "$ROUNDS"); do
  log "round $round: c=1 latency probe, ${DURATION}s, targets interleaved"
  python3 "$HERE/probe.py" latency "${DURATION}s" 200 "--round=$round" "${specs[@]}" \
    | tee -a "$JSONL" >&2
  for t in $TARGETS; do
    run_wrk "$round" "$t" 1 1 "$DURATION"
    run_wrk "$round" "$t" 64 2 "$DURATION"
  done
done

log "streaming time-to-first-chunk, $STREAM_N rounds"
# LiteLLM's ~10 ms requests leave background work behind them: measured every round, they
# made the fast targets' TTFC depend on how often they followed one (200 rounds, 2026-11-23).
python3 "$HERE/probe.py" ttfc "$STREAM_N" 20 "${specs[@]}" >>"$JSONL"

STATE_AFTER="$(machine_state)"
TABLE="$(python3 "$HERE/report.py" "$JSONL")"

nginx_version="$("$NGINX" -v 2>&1 | sed 's/^nginx version: //' || true)"
litellm_version="$([[ -x "$VENV/bin/python" ]] && "$VENV/bin/python" -c 'import importlib.metadata as m; print(m.version("litellm"))' 2>/dev/null || echo -)"
REPORT="$(cat <<EOF

## Run $(date -u '+%Y-%m-%d %H:%M UTC') — commit $(git -C "$ROOT" rev-parse --short HEAD)$(git -C "$ROOT" diff --quiet HEAD -- server cli 2>/dev/null || echo ' (+ uncommitted changes)'), profile \`$PROFILE\`

Command: \`DURATION=$DURATION WARMUP=$WARMUP ROUNDS=$ROUNDS STREAM_N=$STREAM_N LITELLM_EVERY=$LITELLM_EVERY VSR_LOG=$VSR_LOG TARGETS="$TARGETS" scripts/bench/proxy.sh\`

Tools: $(wrk -v 2>&1 | head -1 | awk '{print $1, $2}'), $nginx_version, litellm $litellm_version, Python $(python3 -c 'import platform; print(platform.python_version())').
c=1 latency: \`scripts/bench/proxy/probe.py latency\` (raw keep-alive sockets, one request at a
time, targets interleaved request by request in an order shuffled every round (fixed seed), ${DURATION}s a round; LiteLLM measured every
${LITELLM_EVERY}th round); wrk c=1 (\`wrk -t1 -c1 -d${DURATION}s\`) is kept only as a request-rate cross-check,
since its latency histogram on this VM is inconsistent with its own request rate.
c=64: \`wrk -t2 -c64 -d${DURATION}s\`. The client shares the 2 cores with the mock and the proxy
under test, so compare within one run. TTFC: \`probe.py ttfc\`, $STREAM_N rounds of
interleaved \`"stream": true\` requests after 20 warm-ups (LiteLLM every ${LITELLM_EVERY}th round),
time from request written to the first \`data:\` bytes read.

$TABLE

Machine state before the run:
$STATE_BEFORE

Machine state after the run:
$STATE_AFTER
EOF
)"
printf '%s\n' "$REPORT"
if [[ "${NO_RESULTS:-0}" != 1 ]]; then
  mkdir -p "$(dirname "$RESULTS")"
  if [[ ! -s "$RESULTS" ]]; then
    printf '# Proxy overhead: direct vs vllm-sr vs nginx vs LiteLLM (issue #5)\n\nWritten by `scripts/bench/proxy.sh`; each run is appended.\n' >"$RESULTS"
  fi
  printf '%s\n' "$REPORT" >>"$RESULTS"
  log "appended to ${RESULTS#"$ROOT/"}"
fi
