#!/usr/bin/env python3
"""Fixed-rate HTTP/1.1 load with per-request latency in microseconds (benches/mesh_latency.sh).

    python3 benches/fixed_rate.py --url http://127.0.0.1:8080/ --rate 2000 --conns 20 \
        --duration 10 --warmup 2 [--json OUT]

Requests are scheduled at a fixed rate (request i at t0 + i/rate) and handed round-robin to CONNS
keep-alive connections, so the offered load does not depend on how fast the target answers (an
open loop, like wrk2). A request whose connection is still busy at its scheduled time waits for
it; such requests are counted as `queued` (with 20 connections at 2,000 req/s each connection is
idle 99 % of the time, so a non-zero count means the target or this process stalled).

Latency is measured from the moment the request is written to the moment its whole response has
been read (time.perf_counter_ns), not from the scheduled time: a single-threaded Python loop wakes
up late now and then (scheduling, GC), and that lateness must not be charged to the target.
hey's distribution has a 0.1 ms resolution, too coarse for differences of 0.15 ms.

One thread, one select loop, no parsing beyond the status line and Content-Length (the benchmark
backend answers a fixed body); anything other than a 200 counts as an error.
"""

import argparse
import json
import resource
import selectors
import socket
import sys
import time
from urllib.parse import urlsplit


class Conn:
    __slots__ = ("sock", "buf", "busy", "sent_ns", "want", "pending", "idx")

    def __init__(self, host, port, idx):
        self.sock = socket.create_connection((host, port), timeout=5)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock.setblocking(False)
        self.buf = b""
        self.busy = False
        self.sent_ns = 0
        self.want = None  # total response length once the head is parsed
        self.pending = 0  # scheduled requests waiting for this connection
        self.idx = idx


def percentile(sorted_us, q):
    if not sorted_us:
        return float("nan")
    k = max(0, min(len(sorted_us) - 1, int(round(q * len(sorted_us) + 0.5)) - 1))
    return sorted_us[k]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--url", required=True)
    ap.add_argument("--rate", type=float, default=2000)
    ap.add_argument("--conns", type=int, default=20)
    ap.add_argument("--duration", type=float, default=10)
    ap.add_argument("--warmup", type=float, default=2)
    ap.add_argument("--json", help="write the result here too")
    ap.add_argument("--dump", help="write every measured request here: send time (s since the measured window began), latency (us)")
    a = ap.parse_args()

    u = urlsplit(a.url)
    host, port = u.hostname, u.port or 80
    req = f"GET {u.path or '/'} HTTP/1.1\r\nHost: {u.netloc}\r\nUser-Agent: weft-bench\r\n\r\n".encode()

    # select(2) takes a timeval (microseconds); epoll rounds timeouts up to whole milliseconds.
    sel = selectors.SelectSelector()
    conns = [Conn(host, port, i) for i in range(a.conns)]
    for c in conns:
        sel.register(c.sock, selectors.EVENT_READ, c)

    lat_us = []
    errors = 0
    queued = 0
    late_max_ns = 0
    interval_ns = int(1e9 / a.rate)
    t0 = time.perf_counter_ns() + 10_000_000
    measure_from = t0 + int(a.warmup * 1e9)
    end = measure_from + int(a.duration * 1e9)
    next_i = 0  # next request to schedule
    sent_measured = 0
    done_at = None
    dump = [] if a.dump else None

    def send(c, now):
        c.busy = True
        c.buf = b""
        c.want = None
        c.sent_ns = now
        c.sock.send(req)  # ~60 bytes: fits the empty socket buffer of an idle connection

    while True:
        now = time.perf_counter_ns()
        # Hand every request that is due to its connection.
        while next_i < (1 << 62):
            due = t0 + next_i * interval_ns
            if due > now or due >= end:
                break
            c = conns[next_i % len(conns)]
            if due >= measure_from:
                sent_measured += 1
            late_max_ns = max(late_max_ns, now - due) if due >= measure_from else late_max_ns
            if c.busy:
                c.pending += 1
                if due >= measure_from:
                    queued += 1
            else:
                send(c, now)
            next_i += 1
        if t0 + next_i * interval_ns >= end and all(not c.busy for c in conns):
            done_at = now
            break
        due = t0 + next_i * interval_ns
        timeout = max(0.0, (due - now) / 1e9) if due < end else 0.05
        for key, _ in sel.select(timeout):
            c = key.data
            try:
                chunk = c.sock.recv(65536)
            except BlockingIOError:
                continue
            t = time.perf_counter_ns()
            if not chunk:
                print(f"fixed_rate: connection {c.idx} closed by the target", file=sys.stderr)
                return 2
            c.buf += chunk
            if c.want is None:
                head_end = c.buf.find(b"\r\n\r\n")
                if head_end < 0:
                    continue
                head = c.buf[:head_end].decode("latin-1")
                status = head.split(" ", 2)[1]
                length = 0
                for line in head.split("\r\n")[1:]:
                    name, _, value = line.partition(":")
                    if name.strip().lower() == "content-length":
                        length = int(value.strip())
                if status != "200":
                    errors += 1
                c.want = head_end + 4 + length
            if len(c.buf) < c.want:
                continue
            if c.sent_ns >= measure_from:
                lat_us.append((t - c.sent_ns) / 1000)
                if dump is not None:
                    dump.append(((c.sent_ns - measure_from) / 1e9, (t - c.sent_ns) / 1000))
            c.busy = False
            if c.pending:
                c.pending -= 1
                send(c, time.perf_counter_ns())

    for c in conns:
        c.sock.close()
    if dump is not None:
        with open(a.dump, "w") as f:
            f.writelines(f"{t:.6f} {l:.1f}\n" for t, l in dump)
    lat_us.sort()
    elapsed = (min(done_at, end) - measure_from) / 1e9 if done_at else a.duration
    res = {
        "url": a.url,
        "target_rate": a.rate,
        "conns": a.conns,
        "duration_s": a.duration,
        "requests": len(lat_us),
        "rate": round(len(lat_us) / max(elapsed, 1e-9), 1),
        "errors": errors,
        "queued": queued,
        "late_max_ms": round(late_max_ns / 1e6, 3),
        "p50_us": percentile(lat_us, 0.50),
        "p90_us": percentile(lat_us, 0.90),
        "p99_us": percentile(lat_us, 0.99),
        "p999_us": percentile(lat_us, 0.999),
        "max_us": lat_us[-1] if lat_us else float("nan"),
        # this process's own CPU time (the benchmark subtracts it from the machine's busy time)
        "cpu_s": round(sum(resource.getrusage(resource.RUSAGE_SELF)[:2]), 3),
    }
    line = json.dumps(res)
    print(line)
    if a.json:
        with open(a.json, "w") as f:
            f.write(line + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
