#!/usr/bin/env python3
"""The measuring half of benches/convergence.sh (which starts the nodes; run that, not this).

Reads the node list the script wrote (one JSON object per node: name, mode, admin, log, pid),
waits until every node lists every node alive, writes records and times how long each other node
takes to merge each one, from its own log: with `WEFT_LOG=weft::node::mesh=debug` a node logs a
line per record it merges from peers,

    2026-11-23T14:20:01.123456Z DEBUG weft::node::mesh: merged key=endpoint bench/conv/ep-p07 writer=p07 hlc=...

The write time is taken on this host's clock right before the API call to the writer; every
node runs on this host, so the log timestamps are on the same clock. A node has a write when it
merged that key with a version at or above the write's (HLC = wall-clock ms << 16 | counter, so
hlc >> 16 >= the write's wall-clock ms; a later version of the key counts too).
"""

import json
import os
import random
import re
import statistics
import sys
import time
import urllib.error
import urllib.request
from datetime import datetime

SLOW = 0.15  # s: beyond the push wave
MERGED = re.compile(r"^(\S+)\s+DEBUG\s.*\bmerged key=(\w+) (\S+) writer=(\S+) hlc=(\d+)")


def api(admin, path, body=None, method=None):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(f"http://{admin}{path}", data=data, method=method or ("POST" if data else "GET"))
    if data:
        req.add_header("content-type", "application/json")
    with urllib.request.urlopen(req, timeout=5) as r:
        return json.loads(r.read() or b"null")


def ts(s):
    # RFC 3339 with microseconds and a Z, as tracing-subscriber prints it.
    return datetime.fromisoformat(s.replace("Z", "+00:00")).timestamp()


class Logs:
    """Tails every node's log and keeps, per node, the merged lines: (time, kind, key, hlc)."""

    def __init__(self, nodes):
        self.nodes = nodes
        self.pos = {n["name"]: 0 for n in nodes}
        self.rest = {n["name"]: "" for n in nodes}
        self.merged = {n["name"]: [] for n in nodes}
        self.panics = []

    def poll(self):
        for n in self.nodes:
            name = n["name"]
            with open(n["log"], "r", errors="replace") as f:
                f.seek(self.pos[name])
                chunk = f.read()
                self.pos[name] = f.tell()
            lines = (self.rest[name] + chunk).split("\n")
            self.rest[name] = lines.pop()
            for line in lines:
                m = MERGED.match(line)
                if m:
                    self.merged[name].append((ts(m.group(1)), m.group(2), m.group(3), int(m.group(5))))
                elif "panicked" in line:
                    self.panics.append(f"{name}: {line}")

    def first(self, name, kind, key, min_hlc, not_before):
        for t, k, key2, hlc in self.merged[name]:
            if k == kind and key2 == key and hlc >= min_hlc and t >= not_before:
                return t
        return None


def pct(xs, q):
    xs = sorted(xs)
    if not xs:
        return float("nan")
    return xs[max(0, min(len(xs) - 1, int(round(q * len(xs) + 0.5)) - 1))]


def cpu_seconds(pids):
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in pids:
        try:
            fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime
        except OSError:
            pass
    return total / tick


def machine_busy_seconds():
    for line in open("/proc/stat"):
        if line.startswith("cpu "):
            f = [int(x) for x in line.split()[1:]]
            return (sum(f) - f[3] - f[4]) / os.sysconf("SC_CLK_TCK")  # minus idle, iowait
    return 0.0


def rss_mb(pid, field="VmRSS"):
    try:
        for line in open(f"/proc/{pid}/status"):
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


def main():
    manifest, writes, ns, svc = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
    timeout = float(os.environ.get("WRITE_TIMEOUT", "30"))
    nodes = [json.loads(line) for line in open(manifest) if line.strip()]
    N = len(nodes)
    registry = next(n for n in nodes if n["mode"] == "registry")
    proxies = [n for n in nodes if n["mode"] == "proxy"]
    logs = Logs(nodes)
    t_start = float(os.environ.get("START_TS") or time.time())  # when the first node was started

    # ------------------------------------------------------------ membership
    def alive_count(n):
        try:
            members = api(n["admin"], "/v1/members")
        except (OSError, urllib.error.URLError, ValueError):
            return 0
        names = {m["name"] for m in members if m.get("state") == "alive"}
        names.add(n["name"])
        return len(names)

    deadline = time.time() + float(os.environ.get("JOIN_TIMEOUT", "180"))
    full_at = {}
    while time.time() < deadline and len(full_at) < N:
        for n in nodes:
            if n["name"] not in full_at and alive_count(n) == N:
                full_at[n["name"]] = time.time()
        time.sleep(0.2)
    if len(full_at) < N:
        for n in nodes:
            if n["name"] not in full_at:
                print(f"  {n['name']} sees {alive_count(n)} of {N} alive", file=sys.stderr)
        print(f"convergence: not every node sees {N} alive members after the join timeout", file=sys.stderr)
        return 1
    join_s = max(full_at.values()) - t_start
    print(f"every node sees {N} alive members {join_s:.1f} s after the first node was started", file=sys.stderr)
    # Membership must hold while we measure: settle, then check once more.
    time.sleep(float(os.environ.get("SETTLE", "5")))
    short = [(n["name"], c) for n in nodes if (c := alive_count(n)) != N]
    if short:
        print(f"convergence: membership flapped after settling: {short}", file=sys.stderr)

    pids = [n["pid"] for n in nodes]
    cpu0, wall0, busy0, self0 = cpu_seconds(pids), time.time(), machine_busy_seconds(), time.process_time()
    rss_joined = [rss_mb(p) for p in pids]

    def measure(writer, kind, key, do_write):
        """Runs do_write() against `writer`; returns {node: seconds} for every other node."""
        logs.poll()
        t_w = time.time()
        do_write()
        min_hlc = int(t_w * 1000) << 16
        others = [n["name"] for n in nodes if n["name"] != writer]
        seen = {}
        end = time.time() + timeout
        while time.time() < end:
            logs.poll()
            for o in others:
                if o not in seen:
                    t = logs.first(o, kind, key, min_hlc, t_w - 1.0)
                    if t is not None:
                        seen[o] = t - t_w
            if len(seen) == len(others):
                break
            time.sleep(0.05)
        missing = [o for o in others if o not in seen]
        return seen, missing

    # ------------------------------------------------------------ the service (a registry write)
    service = {"namespace": ns, "name": svc, "protocol": "http", "aliases": [{"dns_name": f"{svc}.bench", "port": 8080}]}
    seen, missing = measure(registry["name"], "service", f"{ns}/{svc}", lambda: api(registry["admin"], "/v1/services", service))
    if missing:
        print(f"convergence: the service never reached {missing} within {timeout} s", file=sys.stderr)
        return 1
    svc_lat = sorted(seen.values())
    print(f"service create on {registry['name']}: all {N} have it after {max(svc_lat) * 1000:.0f} ms "
          f"(p50 per node {pct(svc_lat, .5) * 1000:.0f} ms)", file=sys.stderr)
    time.sleep(1)

    # ------------------------------------------------------------ endpoint writes on proxies
    rng = random.Random(int(os.environ.get("SEED", "1")))
    per_node = []  # every (write, other node) latency, s
    all_have = []  # per write: when the last node had it, s
    rows = []
    failures = []
    for k in range(writes):
        w = proxies[(k // 2) % len(proxies)]
        ep_id = f"ep-{w['name']}-{k // (2 * len(proxies))}"
        change = k % 2 == 1  # even: register a new endpoint; odd: change it (a new address)
        port = 20000 + k
        body = {"namespace": ns, "service": svc, "id": ep_id, "address": f"127.0.0.1:{port}"}
        seen, missing = measure(w["name"], "endpoint", f"{ns}/{svc}/{ep_id}", lambda: api(w["admin"], "/v1/endpoints", body))
        lat = sorted(seen.values())
        per_node.extend(lat)
        if missing:
            failures.append((k, w["name"], missing))
            print(f"  write {k + 1}: {'change' if change else 'register'} {ep_id} on {w['name']}: "
                  f"{len(missing)} node(s) never merged it within {timeout} s: {missing[:8]}", file=sys.stderr)
        else:
            all_have.append(lat[-1])
        rows.append((k + 1, "change" if change else "register", w["name"], pct(lat, .5), pct(lat, .99), lat[-1] if lat else float("nan"), len(missing)))
        print(f"  write {k + 1:2}: {rows[-1][1]:8} {ep_id} on {w['name']}: p50 {rows[-1][3] * 1000:6.1f} ms, "
              f"last of {N - 1} at {rows[-1][5] * 1000:6.1f} ms", file=sys.stderr)
        time.sleep(rng.uniform(0.2, 0.6))  # spread the writes over the timers' phases

    cpu1, wall1, busy1, self1 = cpu_seconds(pids), time.time(), machine_busy_seconds(), time.process_time()
    others = max(0.0, (busy1 - busy0) - (cpu1 - cpu0) - (self1 - self0)) / (wall1 - wall0)
    # ------------------------------------------------------------ catalog check through the API
    want = sorted(f"ep-{proxies[(k // 2) % len(proxies)]['name']}-{k // (2 * len(proxies))}" for k in range(0, writes, 2))
    stale = []
    for n in nodes:
        try:
            eps = api(n["admin"], f"/v1/endpoints?namespace={ns}&service={svc}")
            got = sorted(e["id"] for e in eps)
        except Exception as e:  # noqa: BLE001 — report, do not stop
            got = [f"error: {e}"]
        if got != want:
            stale.append((n["name"], got))
    rss = [rss_mb(p) for p in pids]
    anon = [rss_mb(p, "RssAnon") for p in pids]
    logs.poll()

    ms = lambda s: s * 1000
    print()
    print(f"{N} weft processes on loopback (1 registry + {len(proxies)} proxies), one CA; {writes} endpoint writes "
          f"on proxies (half registrations, half changes), each timed on the {N - 1} other nodes\n")
    print("| figure | p50 ms | p99 ms | max ms | samples |")
    print("|--------|-------:|-------:|-------:|--------:|")
    print(f"| a node has the write (per node) | {ms(pct(per_node, .5)):.0f} | {ms(pct(per_node, .99)):.0f} | "
          f"{ms(max(per_node)) if per_node else float('nan'):.0f} | {len(per_node)} |")
    print(f"| all {N} have the write | {ms(pct(all_have, .5)):.0f} | {ms(pct(all_have, .99)):.0f} | "
          f"{ms(max(all_have)) if all_have else float('nan'):.0f} | {len(all_have)} |")
    print(f"| service create on the registry: all {N} | {ms(max(svc_lat)):.0f} | | | 1 |")
    print()
    # The delta push (fanout 6, each node forwards what is new to it) reaches a node within tens of
    # ms; a node it missed gets the record from anti-entropy (one pull a second per node).
    slow = [r for r in rows if r[5] > SLOW]
    print(f"writes where some node merged it only after {ms(SLOW):.0f} ms (missed by the push wave, repaired by "
          f"anti-entropy, or a stalled node): {len(slow)} of {len(rows)}; their last node at "
          + (", ".join(f"{ms(r[5]):.0f}" for r in sorted(slow, key=lambda r: r[5])) or "-") + " ms")
    print(f"samples per node above {ms(SLOW):.0f} ms: {sum(1 for x in per_node if x > SLOW)} of {len(per_node)}")
    p99 = pct(all_have, .99)
    print(f"goal: all {N} within 0.5 s at p99: {'met' if p99 <= 0.5 and not failures else 'NOT met'} "
          f"(p99 of per-node visibility {ms(pct(per_node, .99)):.0f} ms, of all-{N} {ms(p99):.0f} ms)")
    if failures:
        print(f"writes some node never merged within {timeout} s: {failures}")
    last = float(os.environ.get("LAST_START_TS") or t_start)
    print(f"membership: every node saw all {N} alive {join_s:.1f} s after the first node was started, "
          f"{max(full_at.values()) - last:.1f} s after the last (nodes start one after another, with a "
          f"`weft ca issue` each; polled every 0.2 s per node)")
    print(f"CPU of all {N} weft processes during the writes: {(cpu1 - cpu0) / (wall1 - wall0):.2f} cores "
          f"({cpu1 - cpu0:.1f} s over {wall1 - wall0:.1f} s); other processes on this machine meanwhile: "
          f"{others:.2f} cores of {os.cpu_count()}")
    print(f"RSS: total {sum(rss):.0f} MB, per process median {statistics.median(rss):.1f} MB (anonymous "
          f"{statistics.median(anon):.1f} MB), max {max(rss):.1f} MB; median when all had joined "
          f"{statistics.median(rss_joined):.1f} MB")
    if stale:
        print(f"API check: {len(stale)} node(s) list other endpoints than expected: {stale[:3]}")
    else:
        print(f"API check: every node lists the {len(want)} registered endpoints")
    if logs.panics:
        print(f"PANICS: {logs.panics[:3]}")
    print("\nper write (ms): " + ", ".join(f"{r[0]}:{r[1][0]}@{r[2]} p50 {ms(r[3]):.0f}/last {ms(r[5]):.0f}" for r in rows))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
