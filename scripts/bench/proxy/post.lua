-- wrk script for scripts/bench/proxy.sh: POST a small chat body, optional bearer token
-- (BENCH_AUTH), and print one machine-readable line with exact microsecond percentiles.
wrk.method = "POST"
wrk.body = os.getenv("BENCH_BODY") or '{"model":"auto","messages":[{"role":"user","content":"hello"}]}'
wrk.headers["Content-Type"] = "application/json"
local auth = os.getenv("BENCH_AUTH")
if auth and auth ~= "" then
  wrk.headers["Authorization"] = "Bearer " .. auth
end

done = function(summary, latency, requests)
  local e = summary.errors
  local errors = e.connect + e.read + e.write + e.timeout + e.status
  io.write(string.format(
    "BENCH requests=%d duration_us=%d errors=%d p50_us=%d p90_us=%d p99_us=%d max_us=%d mean_us=%.1f\n",
    summary.requests, summary.duration, errors,
    latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency.max, latency.mean))
end
