#!/usr/bin/env python3
"""Concurrency-1 latency probe for scripts/bench/proxy.sh.

Keeps one keep-alive HTTP/1.1 connection per target (raw sockets, no client library in the
timed path) and sends the small chat body one request at a time, targets interleaved request
by request, in an order shuffled every round (a fixed seed, so every run uses the same
orders), so machine drift and each target's after-effects hit all of them alike. Two modes:

  latency  non-streaming body; time from the request written to the whole response read
  ttfc     `"stream": true`; time from the request written to the first SSE `data:` bytes

The client's own cost is the same for every target, so target − direct is the proxy's added
time. (wrk 4.1's c=1 latency histogram is not usable on this VM: its mean exceeds the
wall-clock time per request, e.g. 485 µs mean at 8 949 req/s on one connection.)

usage: probe.py MODE SECONDS_OR_N WARMUP NAME=URL[|BEARER][@EVERY] ...
  SECONDS_OR_N  "10s": run for 10 seconds; "200": 200 measured rounds
  EVERY         measure this target only every EVERY-th round (slow peers such as LiteLLM)
"""

import json
import random
import socket
import sys
import time
from urllib.parse import urlsplit

import gc

MESSAGES = [{"role": "user", "content": "hello"}]


class Conn:
    def __init__(self, url: str, bearer: str | None, stream: bool):
        body = {"model": "auto", "messages": MESSAGES}
        if stream:
            body["stream"] = True
        BODY = json.dumps(body, separators=(",", ":")).encode()
        self.stream = stream
        u = urlsplit(url)
        self.addr = (u.hostname, u.port or 80)
        self.path = u.path or "/"
        auth = f"Authorization: Bearer {bearer}\r\n" if bearer else ""
        self.request = (
            f"POST {self.path} HTTP/1.1\r\nHost: {u.netloc}\r\n"
            f"Content-Type: application/json\r\n{auth}"
            f"Content-Length: {len(BODY)}\r\n\r\n"
        ).encode() + BODY
        self.sock = None
        self.buf = b""

    def connect(self):
        self.sock = socket.create_connection(self.addr)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""

    def recv(self):
        data = self.sock.recv(65536)
        if not data:
            raise ConnectionError("connection closed")
        self.buf += data

    def once(self) -> float:
        """One streamed request; returns seconds to the first `data:` bytes."""
        if self.sock is None:
            self.connect()
        self.sock.sendall(self.request)
        t0 = time.perf_counter()
        while b"\r\n\r\n" not in self.buf:
            self.recv()
        head, _, rest = self.buf.partition(b"\r\n\r\n")
        self.buf = rest
        status = head.split(b" ", 2)[1]
        if status != b"200":
            raise RuntimeError(f"HTTP {status.decode()}: {head[:200]!r} {rest[:300]!r}")
        if self.stream:
            while b"data:" not in self.buf:
                self.recv()
        ttfc = time.perf_counter() - t0
        lower = head.lower()
        if b"transfer-encoding: chunked" in lower:
            while not self.buf.endswith(b"0\r\n\r\n"):
                self.recv()
        elif b"content-length:" in lower:
            n = int(lower.split(b"content-length:")[1].split(b"\r\n")[0])
            while len(self.buf) < n:
                self.recv()
        else:  # close-delimited
            try:
                while True:
                    self.recv()
            except ConnectionError:
                pass
            self.sock.close()
            self.sock = None
        if self.stream and b"[DONE]" not in self.buf:
            raise RuntimeError(f"stream without [DONE]: {self.buf[-200:]!r}")
        if not self.stream:
            ttfc = time.perf_counter() - t0  # the whole response
        self.buf = b""
        if b"connection: close" in lower and self.sock is not None:
            self.sock.close()
            self.sock = None
        return ttfc


def pct(xs, p):
    xs = sorted(xs)
    k = max(0, min(len(xs) - 1, round(p / 100 * len(xs) + 0.5) - 1))
    return xs[k]


def main():
    mode, amount, warmup = sys.argv[1], sys.argv[2], int(sys.argv[3])
    extra = dict(a.split("=", 1) for a in sys.argv[4:] if a.startswith("--"))
    stream = mode == "ttfc"
    targets = []
    for spec in sys.argv[4:]:
        if spec.startswith("--"):
            continue
        name, _, url = spec.partition("=")
        url, _, every = url.partition("@")
        url, _, bearer = url.partition("|")
        targets.append((name, Conn(url, bearer or None, stream), int(every or 1)))
    seconds = float(amount[:-1]) if amount.endswith("s") else None
    n = None if seconds else int(amount)
    samples = {name: [] for name, _, _ in targets}
    for i in range(warmup):
        for _, c, _ in targets:
            c.once()
    gc.collect()
    gc.disable()
    end = time.perf_counter() + (seconds or 1e9)
    rng = random.Random(20261123)
    order = list(targets)
    i = 0
    while (n is None or i < n) and time.perf_counter() < end:
        # A new order every round, so each target follows each other one equally often: a
        # target's after-effects (a slow peer's background work after its response) must not
        # always land on the same neighbour. (A rotation did that for a target measured every
        # Nth round: with 4 targets and N = 50, LiteLLM's rounds all had offset 0 or 2, so the
        # request right after each LiteLLM one was always vllm-sr's or direct's, never
        # nginx's: 1 % of vllm-sr's samples, exactly the p99.)
        rng.shuffle(order)
        for name, c, every in order:
            if i % every == 0:
                samples[name].append(c.once() * 1e6)
        i += 1
    gc.enable()
    for name, xs in samples.items():
        row = {"kind": mode, "target": name, "n": len(xs),
               "p50_us": pct(xs, 50), "p90_us": pct(xs, 90), "p99_us": pct(xs, 99),
               "mean_us": sum(xs) / len(xs)}
        row.update({k[2:]: (int(v) if v.isdigit() else v) for k, v in extra.items()})
        print(json.dumps(row))


if __name__ == "__main__":
    main()
