#!/usr/bin/env python3
"""Turns the JSON lines written by scripts/bench/proxy.sh into the markdown result table.

Per round, "added" = target - direct from the same round; the table shows the median over
rounds: c=1 latency p50/p99 (probe.py latency), RPS at c=64 (wrk), wrk's c=1 request rate as
mean time per request (cross-check), and the streaming time-to-first-chunk (probe.py ttfc).

usage: report.py RESULTS.jsonl
"""

import json
import statistics
import sys

TARGETS = ["direct", "vllm-sr", "nginx", "litellm"]
LABEL = {
    "direct": "direct → mock",
    "vllm-sr": "vllm-sr (keyword recipe)",
    "nginx": "nginx `proxy_pass`",
    "litellm": "LiteLLM proxy",
}


def med(xs):
    return statistics.median(xs) if xs else None


def fmt(x, digits=0):
    if x is None:
        return "–"
    return f"{x:,.{digits}f}".replace(",", " ")


def main():
    rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
    wrk = [r for r in rows if r["kind"] == "wrk"]
    lat = [r for r in rows if r["kind"] == "latency"]
    ttfc = {r["target"]: r for r in rows if r["kind"] == "ttfc"}
    targets = [t for t in TARGETS if any(r["target"] == t for r in wrk)]
    rounds = sorted({r["round"] for r in wrk})

    def get(t, conc, key, rnd):
        if conc == 1 and key != "rps":
            for r in lat:
                if r["target"] == t and r["round"] == rnd:
                    return r[key]
            return None
        for r in wrk:
            if r["target"] == t and r["conc"] == conc and r["round"] == rnd:
                return r[key]
        return None

    s = {}
    for t in targets:
        d = {}
        for key in ("p50_us", "p99_us"):
            vals = [get(t, 1, key, r) for r in rounds]
            base = [get("direct", 1, key, r) for r in rounds]
            d[key] = med([v for v in vals if v is not None])
            d["added_" + key] = med(
                [v - b for v, b in zip(vals, base) if v is not None and b is not None]
            )
        d["rps"] = med([v for v in (get(t, 64, "rps", r) for r in rounds) if v is not None])
        d["n"] = sum(r["n"] for r in lat if r["target"] == t)
        w1 = [get(t, 1, "rps", r) for r in rounds]
        b1 = [get("direct", 1, "rps", r) for r in rounds]
        d["wrk1"] = med([1e6 / v for v in w1 if v])
        d["wrk1_added"] = med([1e6 / v - 1e6 / b for v, b in zip(w1, b1) if v and b])
        d["errors"] = sum(r["errors"] for r in wrk if r["target"] == t)
        tt = ttfc.get(t)
        d["ttfc_p50"] = tt["p50_us"] if tt else None
        d["ttfc_p99"] = tt["p99_us"] if tt else None
        if tt and "direct" in ttfc:
            d["ttfc_add_p50"] = tt["p50_us"] - ttfc["direct"]["p50_us"]
            d["ttfc_add_p99"] = tt["p99_us"] - ttfc["direct"]["p99_us"]
        else:
            d["ttfc_add_p50"] = d["ttfc_add_p99"] = None
        s[t] = d

    out = []
    out.append(
        "| target | c=1 p50 µs | c=1 p99 µs | added p50 µs | added p99 µs | c=1 samples "
        "| wrk c=1 µs/req (added) | c=64 RPS "
        "| stream TTFC p50 µs | TTFC p99 µs | added TTFC p50 µs | added TTFC p99 µs | wrk errors |"
    )
    out.append("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for t in targets:
        d = s[t]
        added = (lambda x: "0" if t == "direct" else fmt(x))
        out.append(
            f"| {LABEL[t]} | {fmt(d['p50_us'])} | {fmt(d['p99_us'])} | {added(d['added_p50_us'])} "
            f"| {added(d['added_p99_us'])} | {d['n']} | {fmt(d['wrk1'])} ({added(d['wrk1_added'])}) "
            f"| {fmt(d['rps'])} | {fmt(d['ttfc_p50'])} "
            f"| {fmt(d['ttfc_p99'])} | {added(d['ttfc_add_p50'])} | {added(d['ttfc_add_p99'])} "
            f"| {d['errors']} |"
        )
    out.append("")
    out.append(f"Medians over {len(rounds)} round(s); added = target − direct within a round.")

    if "vllm-sr" in s:
        v = s["vllm-sr"]
        n = s.get("nginx")
        checks = [
            ("added p50 ≤ 100 µs at c=1", v["added_p50_us"], v["added_p50_us"] is not None and v["added_p50_us"] <= 100),
            ("added p99 ≤ 250 µs at c=1", v["added_p99_us"], v["added_p99_us"] is not None and v["added_p99_us"] <= 250),
            ("≥ 15 000 RPS at c=64 on 2 cores", v["rps"], v["rps"] is not None and v["rps"] >= 15000),
        ]
        if n and n["added_p50_us"]:
            r50 = v["added_p50_us"] / n["added_p50_us"]
            checks.append(("added p50 ≤ 1.5× nginx's", r50, r50 <= 1.5))
        if n and n["added_p99_us"] and n["added_p99_us"] > 0:
            r99 = v["added_p99_us"] / n["added_p99_us"]
            checks.append(("added p99 ≤ 1.5× nginx's", r99, r99 <= 1.5))
        out.append("")
        out.append("| vllm-sr target | measured | met |")
        out.append("|---|---:|---|")
        for name, val, ok in checks:
            shown = f"{val:.2f}×" if "nginx" in name else fmt(val)
            out.append(f"| {name} | {shown} | {'yes' if ok else '**no**'} |")

    out.append("")
    out.append("<details><summary>per-round numbers</summary>")
    out.append("")
    out.append("| round | target | probe c=1 n | p50 µs | p90 µs | p99 µs | mean µs |")
    out.append("|---:|---|---:|---:|---:|---:|---:|")
    for r in lat:
        out.append(
            f"| {r['round']} | {r['target']} | {r['n']} | {fmt(r['p50_us'])} | {fmt(r['p90_us'])} "
            f"| {fmt(r['p99_us'])} | {fmt(r['mean_us'])} |"
        )
    out.append("")
    out.append("wrk (its latency columns are shown raw; see the note above):")
    out.append("")
    out.append("| round | target | c | p50 µs | p99 µs | RPS | requests | errors |")
    out.append("|---:|---|---:|---:|---:|---:|---:|---:|")
    for r in wrk:
        out.append(
            f"| {r['round']} | {r['target']} | {r['conc']} | {r['p50_us']} | {r['p99_us']} "
            f"| {fmt(r['rps'])} | {r['requests']} | {r['errors']} |"
        )
    out.append("")
    out.append("</details>")
    print("\n".join(out))


if __name__ == "__main__":
    main()
