#!/usr/bin/env python3
"""Turns a scripts/bench/embed.sh run directory into a markdown section (stdout)."""
import glob
import json
import os
import sys

run = sys.argv[1]
print(f"\n## Run {os.path.basename(run)}\n")
for f in sorted(glob.glob(os.path.join(run, "state-*.txt"))):
    print(f"Machine state ({os.path.basename(f)[6:-4]}):\n")
    print("```\n" + open(f).read().strip() + "\n```\n")

rounds = sorted({os.path.basename(p).split("-")[0] for p in glob.glob(os.path.join(run, "r*-*.json"))})
for rnd in rounds:
    results = {}
    for p in sorted(glob.glob(os.path.join(run, f"{rnd}-*.json"))):
        name = os.path.basename(p)[len(rnd) + 1:-5]
        results[name] = json.load(open(p))
    lengths = [l["tokens"] for l in next(iter(results.values()))["latency"]]
    print(f"### {rnd}: single-text latency, p50 / p99 ms (CPU ms per call)\n")
    print("| backend | " + " | ".join(f"{n} tok" for n in lengths) + " | load ms | RSS MB |")
    print("|---|" + "---|" * (len(lengths) + 2))
    for name, r in results.items():
        cells = [f"{l['p50_ms']:.1f} / {l['p99_ms']:.1f} ({l.get('cpu_ms', float('nan')):.1f})" for l in r["latency"]]
        print(f"| {name} | " + " | ".join(cells) + f" | {r['load_ms']:.0f} | {r['rss_mb']:.0f} |")
    conc = [t["concurrency"] for t in next(iter(results.values()))["throughput"]]
    print(f"\n### {rnd}: throughput, texts/s (CPU ms per text), 12–51-token texts, one text per call\n")
    print("| backend | " + " | ".join(f"c={c}" for c in conc) + " |")
    print("|---|" + "---|" * len(conc))
    for name, r in results.items():
        cells = [f"{t['texts_per_s']:.1f} ({t.get('cpu_ms_per_text', float('nan')):.1f})" for t in r["throughput"]]
        print(f"| {name} | " + " | ".join(cells) + " |")
    base_name = "rust-f32" if "rust-f32" in results else "candle-f32"  # older runs: candle-f32
    base = results.get(base_name)
    if base:
        print(f"\n### {rnd}: {base_name} ratios ({base_name} ÷ other; < 1 means {base_name} is faster)\n")
        print("| vs | " + " | ".join(f"{n} tok p50" for n in lengths) + " | " + " | ".join(f"{n} tok CPU" for n in lengths) + " |")
        print("|---|" + "---|" * (2 * len(lengths)))
        for name, r in results.items():
            if name == base_name:
                continue
            p = [f"{b['p50_ms'] / o['p50_ms']:.2f}" for b, o in zip(base["latency"], r["latency"])]
            c = [f"{b.get('cpu_ms', 0) / o['cpu_ms']:.2f}" if o.get("cpu_ms") else "n/a" for b, o in zip(base["latency"], r["latency"])]
            print(f"| {name} | " + " | ".join(p) + " | " + " | ".join(c) + " |")
    print()
