#!/usr/bin/env bash
# HTTP/2 (h2c, prior knowledge) proxy benchmark: weft side by side with nghttpx and HAProxy, and
# direct to the backend, in one run, on loopback.
#
#   bash benches/h2.sh                             # CONNS=10 STREAMS=10 DURATION=10 WARMUP=3 ROUNDS=3
#   WEFT_BIN=/path/to/weft bash benches/h2.sh      # skip the build, use this binary
#   PROFILE=quick-release bash benches/h2.sh       # a faster build
#
# One backend: nginx, 1 worker, `listen ... http2` on a cleartext port (h2c prior knowledge only),
# `return 200` of a 33-byte body. In front of it, in turn, each h2c-to-h2c proxy:
#   nghttpx  (nghttp2's proxy: one worker, --single-thread, backend `proto=h2`)
#   haproxy  (nbthread 1, `bind ... proto h2`, `server ... proto h2`, http-reuse always)
#   weft     (a service with protocol = "http2": h2c listener on its alias VIP, h2c to the endpoint)
# and `direct` (h2load straight to nginx) as the ceiling. Load: `h2load -t1 -cCONNS -mSTREAMS`
# (CONNS connections, STREAMS concurrent streams each) for DURATION s after WARMUP s, the same for
# every target; every request's latency comes from h2load's --log-file (p50 / p99 in the table).
# Rounds measure every target once each, interleaved; tables show medians. With 2+ cores the proxy
# under test is pinned to core 1, h2load and the backend to core 0; the busy share of each proxy's
# core is measured too (its CPU time / wall time), and req/s per busy core = req/s / that share.
# Requirements (Debian 12): apt-get install nghttp2-client nghttp2-proxy nginx-light haproxy curl.
set -euo pipefail

CONNS="${CONNS:-10}"
STREAMS="${STREAMS:-10}"
DURATION="${DURATION:-10}"   # seconds
WARMUP="${WARMUP:-3}"        # seconds
ROUNDS="${ROUNDS:-3}"
BENCH=h2
source "$(dirname "$0")/lib.sh"

need h2load nghttp2-client
need nghttpx nghttp2-proxy
need nginx nginx-light
need haproxy haproxy
need python3 python3
need curl curl

CORES="$(nproc)"
if [ "$CORES" -ge 2 ] && command -v taskset >/dev/null 2>&1; then
  PROXY_CPU=(taskset -c 1)
  LOAD_CPU=(taskset -c 0)
  PIN_NOTE="proxy under test on core 1; h2load and backend on core 0"
else
  PROXY_CPU=()
  LOAD_CPU=()
  PIN_NOTE="no pinning ($CORES core(s))"
fi

wait_h2() { # url
  local i
  for i in $(seq 1 200); do
    if curl -fsS --noproxy '*' --http2-prior-knowledge -o /dev/null --max-time 1 "$1" 2>/dev/null; then return 0; fi
    sleep 0.05
  done
  echo "benches/h2.sh: $1 did not answer over h2c" >&2
  return 1
}
first_child() { awk '{print $1}' "/proc/$1/task/$1/children" 2>/dev/null; }

# ---------------------------------------------------------------- backend: nginx, h2c
start_backend " http2" "http2_max_concurrent_streams 256;"
wait_h2 "http://127.0.0.1:$BACKEND_PORT/"
BACKEND_WORKER="$(first_child "$BACKEND_PID")"
: "${BACKEND_WORKER:=$BACKEND_PID}"

# ---------------------------------------------------------------- nghttpx
NGHTTPX_PORT="$(free_port)"
"${PROXY_CPU[@]}" nghttpx --conf=/dev/null --frontend="127.0.0.1,$NGHTTPX_PORT;no-tls" \
  --backend="127.0.0.1,$BACKEND_PORT;;proto=h2" --workers=1 --single-thread --no-via \
  --errorlog-file="$TMP/nghttpx.log" --pid-file="$TMP/nghttpx.pid" &
NGHTTPX_PID=$!
PIDS+=($NGHTTPX_PID)

# ---------------------------------------------------------------- HAProxy, h2 both sides
start_haproxy "$BACKEND_PORT" " proto h2"

# ---------------------------------------------------------------- weft
weft_binary
WEFT_ADMIN_PORT="$(free_port)"
bench_weft_toml bench "127.0.0.1:$WEFT_ADMIN_PORT" "enabled = false" 127.255.202.0/24 http2 >"$TMP/weft.toml"
WEFT_LOG=warn XDG_STATE_HOME="$TMP/xdg" "${PROXY_CPU[@]}" "$WEFT" run -c "$TMP/weft.toml" >"$TMP/weft.log" 2>&1 &
WEFT_PID=$!
PIDS+=($WEFT_PID)
wait_http "http://127.0.0.1:$WEFT_ADMIN_PORT/v1/status"
WEFT_VIP="$(healthy_vip "127.0.0.1:$WEFT_ADMIN_PORT" 1)" || { echo "benches/h2.sh: weft has no healthy route for backend.bench; see $TMP/weft.log" >&2; KEEP_TMP=1; exit 1; }

TARGETS=(
  "direct|http://127.0.0.1:$BACKEND_PORT/"
  "nghttpx|http://127.0.0.1:$NGHTTPX_PORT/"
  "haproxy|http://127.0.0.1:$HAPROXY_PORT/"
  "weft|http://$WEFT_VIP:8080/"
)
for t in "${TARGETS[@]}"; do wait_h2 "${t#*|}"; done
# nghttpx serves from a worker process forked by its master; that worker does the work.
NGHTTPX_WORKER="$(first_child "$NGHTTPX_PID")"
: "${NGHTTPX_WORKER:=$NGHTTPX_PID}"
declare -A WORK_PID=([direct]="$BACKEND_WORKER" [nghttpx]="$NGHTTPX_WORKER" [haproxy]="$HAPROXY_PID" [weft]="$WEFT_PID")

# ---------------------------------------------------------------- measure
ticks() { awk '{print $14 + $15}' "/proc/$1/stat" 2>/dev/null || echo 0; }
run_h2load() { # name url round
  local name="$1" url="$2" round="$3" c0 c1 t0 t1
  # The warm-up is h2load's own (--warm-up-time): requests in it are neither counted nor logged.
  # The CPU window is the whole h2load run, warm-up included (same load throughout).
  c0="$(ticks "${WORK_PID[$name]}")"; t0="$(date +%s.%N)"
  "${LOAD_CPU[@]}" h2load -t1 -c"$CONNS" -m"$STREAMS" -D "$DURATION" --warm-up-time="$WARMUP" \
    --log-file="$TMP/log-$name-$round.txt" "$url" >"$TMP/h2load-$name-$round.txt" 2>&1
  c1="$(ticks "${WORK_PID[$name]}")"; t1="$(date +%s.%N)"
  echo "$c0 $c1 $t0 $t1" >"$TMP/cpu-$name-$round.txt"
}
MACHINE_START="$(machine_note)"; echo "$MACHINE_START (start)" >&2
echo "h2load -t1 -c$CONNS -m$STREAMS -D $DURATION --warm-up-time=$WARMUP, $ROUNDS rounds; $PIN_NOTE; $CORES cores" >&2
for round in $(seq 1 "$ROUNDS"); do
  for t in "${TARGETS[@]}"; do
    echo "  round $round: measuring ${t%%|*} ..." >&2
    run_h2load "${t%%|*}" "${t#*|}" "$round"
  done
done

rss() { awk '/VmHWM/ {printf "%.1f MB", $2/1024}' "/proc/$1/status" 2>/dev/null || echo "?"; }
echo "peak RSS (VmHWM) after the load: weft $(rss "$WEFT_PID"), haproxy $(rss "$HAPROXY_PID"), nghttpx worker $(rss "$NGHTTPX_WORKER")" >"$TMP/rss.txt"

MACHINE_END="$(machine_note)"
{ echo "$MACHINE_START (start)"; echo "$MACHINE_END (end)"; } >"$TMP/machine.txt"
python3 - "$TMP" "$CONNS" "$STREAMS" "$DURATION" "$PIN_NOTE" "$ROUNDS" <<'PY'
import os, re, statistics, sys
tmp, conns, streams, duration, pin, rounds = sys.argv[1:7]
rounds = int(rounds)
names = ["direct", "nghttpx", "haproxy", "weft"]
hz = os.sysconf("SC_CLK_TCK")
med = statistics.median

def parse(name, r):
    text = open(f"{tmp}/h2load-{name}-{r}.txt").read()
    rps = float(re.search(r"finished in [\d.]+\w+, ([\d.]+) req/s", text).group(1))
    m = re.search(r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, (\d+) errored, (\d+) timeout", text)
    failed = int(m.group(5)) + int(m.group(6)) + int(m.group(7))
    codes = re.search(r"status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx", text)
    non2xx = sum(int(codes.group(i)) for i in (2, 3, 4)) if codes else 0
    lat = []
    for line in open(f"{tmp}/log-{name}-{r}.txt"):
        f = line.split("\t")
        if len(f) >= 3:
            lat.append(int(f[2]))
    lat.sort()
    pct = lambda q: lat[min(len(lat) - 1, int(q * len(lat)))] / 1000 if lat else float("nan")
    c0, c1, t0, t1 = map(float, open(f"{tmp}/cpu-{name}-{r}.txt").read().split())
    busy = (c1 - c0) / hz / (t1 - t0)
    return {"rps": rps, "p50": pct(0.50), "p99": pct(0.99), "errors": failed + non2xx, "busy": busy}

runs = {n: [parse(n, r) for r in range(1, rounds + 1)] for n in names}
res = {n: {k: med([x[k] for x in v]) for k in ("rps", "p50", "p99", "busy")} for n, v in runs.items()}
for n in names:
    res[n]["errors"] = sum(x["errors"] for x in runs[n])
    res[n]["per_core"] = med([x["rps"] / max(x["busy"], 1e-3) for x in runs[n]])

print(f"\nHTTP/2 (h2c prior knowledge), h2load -t1 -c{conns} -m{streams} -D {duration}, 1 backend (nginx, h2c), {pin}; medians of {rounds} rounds\n")
print(f"| {'target':8} | {'req/s':>8} | {'p50 ms':>7} | {'p99 ms':>7} | {'CPU':>5} | {'req/s per core':>14} | errors |")
print(f"|{'-'*10}|{'-'*10}|{'-'*9}|{'-'*9}|{'-'*7}|{'-'*16}|--------|")
for n in names:
    r = res[n]
    print(f"| {n:8} | {r['rps']:>8.0f} | {r['p50']:>7.3f} | {r['p99']:>7.3f} | {r['busy']:>5.0%} | {r['per_core']:>14.0f} | {r['errors']:>6} |")
print("\nCPU = busy share of its core of the process doing the work (the proxy, nghttpx's worker; for direct:")
print("the backend's worker); req/s per core = req/s / CPU; errors = failed/errored/timed-out + non-2xx, all rounds\n")
w = res["weft"]
for peer in ("nghttpx", "haproxy"):
    p = res[peer]
    per_round = [runs["weft"][i]["rps"] / runs[peer][i]["rps"] for i in range(rounds)]
    print(f"weft/{peer}: throughput {w['rps']/p['rps']:.2f}x (per round: {', '.join(f'{x:.2f}' for x in per_round)}), "
          f"p50 {w['p50']/p['p50']:.2f}x, p99 {w['p99']/p['p99']:.2f}x, req/s per busy core {w['per_core']/p['per_core']:.2f}x")
for n in ("nghttpx", "haproxy", "weft"):
    print(f"{n}/direct: throughput {res[n]['rps']/res['direct']['rps']:.2f}x, p50 {res[n]['p50']-res['direct']['p50']:+.3f} ms")
for n in names:
    for r in range(1, rounds + 1):
        if runs[n][r - 1]["errors"]:
            text = open(f"{tmp}/h2load-{n}-{r}.txt").read()
            lines = [l.strip() for l in text.splitlines() if l.startswith(("requests:", "status codes:")) or "error" in l.lower() or "fail" in l.lower()]
            print(f"errors of {n}, round {r}: " + " | ".join(dict.fromkeys(lines)))
print(open(f"{tmp}/rss.txt").read().strip())
print(open(f"{tmp}/machine.txt").read().strip())
PY
