#!/usr/bin/env python3
"""Python side of scripts/bench/embed.sh: the same texts through onnxruntime or
sentence-transformers/PyTorch on CPU with a fixed thread count.

Measures what the Rust bench measures: single-text latency (tokenise + forward + mean pooling +
L2) p50/p99 per token length, and throughput with C concurrent callers (Python threads, one text
per call, a shared session/model) for a few seconds.

  embed_py.py --backend ort|torch --model DIR --texts texts.json --threads 2 --json out.json
"""
import argparse
import json
import os
import resource
import threading
import time

import numpy as np


def cpu_ms():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return (r.ru_utime + r.ru_stime) * 1e3


def percentile(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round((len(xs) - 1) * p)))]


def make_ort(model_dir, threads, onnx_path):
    import onnxruntime as ort
    from tokenizers import Tokenizer

    if not os.path.exists(onnx_path):
        export_onnx(model_dir, onnx_path)
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    sess = ort.InferenceSession(onnx_path, so, providers=["CPUExecutionProvider"])
    tok = Tokenizer.from_file(os.path.join(model_dir, "tokenizer.json"))
    tok.no_padding()
    tok.enable_truncation(512)

    def embed(texts):
        encs = tok.encode_batch(texts)
        n = max(len(e.ids) for e in encs)
        ids = np.zeros((len(encs), n), dtype=np.int64)
        mask = np.zeros((len(encs), n), dtype=np.int64)
        for i, e in enumerate(encs):
            ids[i, : len(e.ids)] = e.ids
            mask[i, : len(e.ids)] = 1
        out = sess.run(None, {"input_ids": ids, "attention_mask": mask,
                              "token_type_ids": np.zeros_like(ids)})[0]
        m = mask[:, :, None].astype(np.float32)
        pooled = (out * m).sum(1) / m.sum(1)
        return pooled / np.linalg.norm(pooled, axis=1, keepdims=True)

    return embed, f"onnxruntime {ort.__version__}"


def export_onnx(model_dir, onnx_path):
    import torch
    from transformers import AutoModel

    class Wrap(torch.nn.Module):
        def __init__(self, m):
            super().__init__()
            self.m = m

        def forward(self, input_ids, attention_mask, token_type_ids):
            return self.m(input_ids=input_ids, attention_mask=attention_mask,
                          token_type_ids=token_type_ids).last_hidden_state

    model = Wrap(AutoModel.from_pretrained(model_dir, attn_implementation="eager")).eval()
    ids = torch.ones((1, 16), dtype=torch.long)
    os.makedirs(os.path.dirname(onnx_path), exist_ok=True)
    with torch.no_grad():
        torch.onnx.export(
            model, (ids, torch.ones_like(ids), torch.zeros_like(ids)), onnx_path,
            input_names=["input_ids", "attention_mask", "token_type_ids"],
            output_names=["last_hidden_state"],
            dynamic_axes={k: {0: "b", 1: "s"} for k in ["input_ids", "attention_mask", "token_type_ids", "last_hidden_state"]},
            opset_version=17, dynamo=False)


def make_torch(model_dir, threads):
    import torch
    from sentence_transformers import SentenceTransformer

    torch.set_num_threads(threads)
    model = SentenceTransformer(model_dir, device="cpu")
    model.max_seq_length = 512

    def embed(texts):
        with torch.inference_mode():
            return model.encode(texts, normalize_embeddings=True, batch_size=32,
                                show_progress_bar=False)

    return embed, f"torch {torch.__version__} eager (sentence-transformers)"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--backend", choices=["ort", "torch"], required=True)
    ap.add_argument("--model", required=True)
    ap.add_argument("--texts", required=True)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--iters", type=int, default=40)
    ap.add_argument("--seconds", type=float, default=4.0)
    ap.add_argument("--concurrency", default="1,4,16")
    ap.add_argument("--onnx", default="")
    ap.add_argument("--json", default="")
    a = ap.parse_args()
    texts = json.load(open(a.texts))
    t0 = time.perf_counter()
    if a.backend == "ort":
        embed, name = make_ort(a.model, a.threads, a.onnx)
    else:
        embed, name = make_torch(a.model, a.threads)
    load_ms = (time.perf_counter() - t0) * 1e3
    print(f"{name}: threads {a.threads}, load {load_ms:.0f} ms")
    latency = []
    for n, text in sorted(texts["lengths"].items(), key=lambda kv: int(kv[0])):
        ms = []
        cpu0 = cpu_ms()
        for i in range(a.iters + 3):
            if i == 3:
                cpu0 = cpu_ms()
            t = time.perf_counter()
            v = embed([text])
            dt = (time.perf_counter() - t) * 1e3
            assert v.shape[0] == 1
            if i >= 3:
                ms.append(dt)
        cpu = (cpu_ms() - cpu0) / a.iters
        p50, p99 = percentile(ms, 0.5), percentile(ms, 0.99)
        print(f"latency {int(n):>4} tok: p50 {p50:8.2f} ms  p99 {p99:8.2f} ms  cpu {cpu:8.2f} ms/call")
        latency.append({"tokens": int(n), "p50_ms": p50, "p99_ms": p99, "cpu_ms": cpu})
    short = texts["throughput"]
    throughput = []
    for c in [int(x) for x in a.concurrency.split(",")]:
        counts = [0] * c
        cpu0 = cpu_ms()
        start = time.perf_counter()

        def worker(w):
            i = w
            while time.perf_counter() - start < a.seconds:
                embed([short[i % len(short)]])
                counts[w] += 1
                i += c

        threads = [threading.Thread(target=worker, args=(w,)) for w in range(c)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        rate = sum(counts) / (time.perf_counter() - start)
        cpu = (cpu_ms() - cpu0) / max(1, sum(counts))
        print(f"throughput c={c:>2}: {rate:8.1f} texts/s  cpu {cpu:6.2f} ms/text")
        throughput.append({"concurrency": c, "texts_per_s": rate, "cpu_ms_per_text": cpu})
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    if a.json:
        json.dump({"backend": name, "threads": a.threads, "load_ms": load_ms, "rss_mb": rss,
                   "latency": latency, "throughput": throughput}, open(a.json, "w"), indent=1)


if __name__ == "__main__":
    main()
