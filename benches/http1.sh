#!/usr/bin/env bash
# HTTP/1.1 proxy benchmark: weft side by side with HAProxy and nginx, in one run, on loopback.
#
#   bash benches/http1.sh            # DURATION=10s CONNS=50 by default
#   DURATION=30s CONNS=100 bash benches/http1.sh
#   WEFT_BIN=/path/to/weft bash benches/http1.sh   # skip the build, use this binary
#   RSS_RATE=2000 RSS_CONNS=50 RSS_DURATION=10     # the memory phase (below); RSS_RATE=0 skips it
#   WEFT_BASE_BIN=/path/to/older/weft bash benches/http1.sh   # also measure that build, as weft-base
#   CAP=50 CAP_ROUNDS=10 CAP_DURATION=5s   # the capped rounds (below): each proxy gets 50 % of a core; CAP=0 skips
#
# One backend (nginx, 1 worker, fixed small body) and, in turn, each proxy in front of it:
# HAProxy (nbthread 1), nginx as reverse proxy (1 worker, keepalive upstream), and weft (one `http`
# alias; built with `cargo build --release`, or PROFILE=quick-release). Every one gets the same warm-up and the
# same `wrk -t1 -cCONNS -dDURATION --latency`. With 2+ cores the proxy under test is pinned to core 1
# and wrk + backend to core 0, so every proxy gets the same single core. Absolute numbers on a shared
# machine are noise; the ratios from one run are the figure (see BENCHMARKS.md).
#
# Before the throughput rounds, a memory phase: each proxy in turn serves a fixed RSS_RATE req/s
# (benches/fixed_rate.py, open loop, RSS_CONNS keep-alive connections) for RSS_DURATION s while its
# VmRSS is sampled every 0.2 s; the table shows the largest sample and VmHWM right after (before the
# saturating wrk load, so the high-water mark is that of the fixed rate). Issue-4 goals: weft's
# throughput >= 1.2x HAProxy's on one core, weft's RSS <= 25 MB at 2,000 req/s.
#
# After the open rounds, capped rounds: each proxy in turn runs under the same CPU quota (CAP % of
# one core, a cgroup each, 10 ms period) while wrk and the backend keep a whole core. On a 2-core
# machine the load side cannot saturate a whole proxy core (see "direct"), so this is the one way
# here to make every proxy the bottleneck: req/s under the cap is throughput per CPU at saturation,
# and the ratio is the one-core throughput ratio. Needs root (cgroup v1 `cpu` or v2 `cpu.max`).
set -euo pipefail

DURATION="${DURATION:-10s}"
# Rounds measure every target once each, interleaved, so a burst of load from a neighbour on a
# shared machine hits one round of all targets rather than all rounds of one; medians are reported.
ROUNDS="${ROUNDS:-3}"
WARMUP="${WARMUP:-3s}"
CONNS="${CONNS:-50}"
RSS_RATE="${RSS_RATE:-2000}"
RSS_CONNS="${RSS_CONNS:-50}"
RSS_DURATION="${RSS_DURATION:-10}"
# Share of one core each proxy gets in the capped rounds (cgroup CPU quota); 0 skips them. More
# and shorter rounds than the open ones: a median of many resists the VM's bursts better.
CAP="${CAP:-50}"
CAP_ROUNDS="${CAP_ROUNDS:-10}"
CAP_DURATION="${CAP_DURATION:-5s}"
BENCH=http1
source "$(dirname "$0")/lib.sh"

need wrk wrk
need nginx nginx-light
need haproxy haproxy
need python3 python3
need curl curl


CORES="$(nproc)"
if [ "$CORES" -ge 2 ] && command -v taskset >/dev/null 2>&1; then
  PROXY_CPU=(taskset -c 1)
  LOAD_CPU=(taskset -c 0)
  PIN_NOTE="proxy under test on core 1; wrk and backend on core 0"
else
  PROXY_CPU=()
  LOAD_CPU=()
  PIN_NOTE="no pinning ($CORES core(s))"
fi


# ---------------------------------------------------------------- backend: nginx, fixed body

start_backend
wait_http "http://127.0.0.1:$BACKEND_PORT/"

# ---------------------------------------------------------------- HAProxy
start_haproxy "$BACKEND_PORT"

# ---------------------------------------------------------------- nginx reverse proxy
NGINX_PORT="$(free_port)"
nginx_conf "$TMP/proxy" "
  upstream backend { server 127.0.0.1:$BACKEND_PORT; keepalive 128; keepalive_requests 1000000; }
  server {
    listen 127.0.0.1:$NGINX_PORT;
    location / {
      proxy_pass http://backend;
      proxy_http_version 1.1;
      proxy_set_header Connection \"\";
    }
  }"
"${PROXY_CPU[@]}" nginx -p "$TMP/proxy" -e "$TMP/proxy/error.log" -c "$TMP/proxy/nginx.conf" &
NGINX_PID=$!
PIDS+=($NGINX_PID)

# ---------------------------------------------------------------- weft
weft_binary
WEFT_ADMIN_PORT="$(free_port)"
bench_weft_toml bench "127.0.0.1:$WEFT_ADMIN_PORT" "listen = \"127.0.0.1:$(free_port)\"" 127.255.200.0/24 http >"$TMP/weft.toml"
WEFT_LOG=warn XDG_STATE_HOME="$TMP/xdg" "${PROXY_CPU[@]}" "$WEFT" run -c "$TMP/weft.toml" >"$TMP/weft.log" 2>&1 &
WEFT_PID=$!
PIDS+=($WEFT_PID)
wait_http "http://127.0.0.1:$WEFT_ADMIN_PORT/v1/status"
WEFT_VIP="$(healthy_vip "127.0.0.1:$WEFT_ADMIN_PORT" 1)" || { echo "benches/http1.sh: weft has no healthy route for backend.bench; see $TMP/weft.log" >&2; KEEP_TMP=1; exit 1; }

TARGETS=(
  "direct|http://127.0.0.1:$BACKEND_PORT/"
  "haproxy|http://127.0.0.1:$HAPROXY_PORT/"
  "nginx|http://127.0.0.1:$NGINX_PORT/"
  "weft|http://$WEFT_VIP:8080/"
)

# WEFT_BASE_BIN: a second weft binary (e.g. a build of an older commit) measured as target
# `weft-base` in the same rounds, same config but its own admin port, VIP range and data dir, so a
# change's cost on the data path is a ratio from one run (weft/weft-base) rather than two runs.
WEFT_BASE_PID=""
if [ -n "${WEFT_BASE_BIN:-}" ]; then
  BASE_ADMIN="127.0.0.1:$(free_port)"
  bench_weft_toml bench-base "$BASE_ADMIN" "listen = \"127.0.0.1:$(free_port)\"" 127.255.199.0/24 http >"$TMP/weft-base.toml"
  WEFT_LOG=warn XDG_STATE_HOME="$TMP/xdg-base" "${PROXY_CPU[@]}" "$WEFT_BASE_BIN" run -c "$TMP/weft-base.toml" >"$TMP/weft-base.log" 2>&1 &
  WEFT_BASE_PID=$!
  PIDS+=($WEFT_BASE_PID)
  wait_http "http://$BASE_ADMIN/v1/status"
  BASE_VIP="$(curl -fsS --noproxy '*' "http://$BASE_ADMIN/v1/routes" |
    python3 -c 'import json,sys; r=[x for x in json.load(sys.stdin) if x["dns_name"]=="backend.bench"][0]; print(r["vip"].split(":")[0])')"
  TARGETS+=("weft-base|http://$BASE_VIP:8080/")
fi
for t in "${TARGETS[@]}"; do wait_http "${t#*|}"; done

MACHINE_START="$(machine_note)"; echo "$MACHINE_START (start)" >&2
# ---------------------------------------------------------------- memory at a fixed rate
# nginx's proxy is a master and one worker: the worker is the one that serves.
NGINX_WORKER="$(cat "/proc/$NGINX_PID/task/$NGINX_PID/children" 2>/dev/null | awk '{print $1}')"
: "${NGINX_WORKER:=$NGINX_PID}"
if [ "$RSS_RATE" != 0 ]; then
  echo "memory: $RSS_RATE req/s over $RSS_CONNS connections for ${RSS_DURATION}s per proxy (VmRSS sampled every 0.2 s)" >&2
  for t in "weft|$WEFT_PID|http://$WEFT_VIP:8080/" "haproxy|$HAPROXY_PID|http://127.0.0.1:$HAPROXY_PORT/" \
           "nginx|$NGINX_WORKER|http://127.0.0.1:$NGINX_PORT/"; do
    IFS='|' read -r name pid url <<<"$t"
    echo "  memory: $name ..." >&2
    rss_while "$pid" "$TMP/mem-$name.txt" "${LOAD_CPU[@]}" python3 "$ROOT/benches/fixed_rate.py" --url "$url" \
      --rate "$RSS_RATE" --conns "$RSS_CONNS" --duration "$RSS_DURATION" --warmup 2 --json "$TMP/memrate-$name.json" >/dev/null
  done
fi

# ---------------------------------------------------------------- measure
# CPU time (utime + stime, clock ticks, all threads) of the process that does the target's work:
# the proxy under test; for `direct`, the backend's worker. Busy share of its core = ticks / wall.
# With wrk and the backend sharing core 0, the load side can saturate before the proxy does (then
# direct's req/s is the ceiling for everyone and the proxy's core is not 100 % busy); req/s divided
# by the proxy's busy share estimates what one fully used core would carry, independent of that.
BACKEND_WORKER="$(awk '{print $1}' "/proc/$BACKEND_PID/task/$BACKEND_PID/children" 2>/dev/null)"
: "${BACKEND_WORKER:=$BACKEND_PID}"
declare -A WORK_PID=([direct]="$BACKEND_WORKER" [haproxy]="$HAPROXY_PID" [nginx]="$NGINX_WORKER" [weft]="$WEFT_PID" [weft-base]="$WEFT_BASE_PID")
ticks() { awk '{print $14 + $15}' "/proc/$1/stat" 2>/dev/null || echo 0; }
run_wrk() { # name url round [duration warm-up]
  local name="$1" url="$2" round="$3" c0 c1 t0 t1
  "${LOAD_CPU[@]}" wrk -t1 -c"$CONNS" -d"${5:-$WARMUP}" "$url" >/dev/null
  c0="$(ticks "${WORK_PID[$name]}")"; t0="$(date +%s.%N)"
  "${LOAD_CPU[@]}" wrk -t1 -c"$CONNS" -d"${4:-$DURATION}" --latency "$url" >"$TMP/wrk-$name-$round.txt"
  c1="$(ticks "${WORK_PID[$name]}")"; t1="$(date +%s.%N)"
  echo "$c0 $c1 $t0 $t1" >"$TMP/cpu-$name-$round.txt"
}
echo "wrk -t1 -c$CONNS -d$DURATION --latency (warm-up $WARMUP), $ROUNDS rounds; $PIN_NOTE; $CORES cores" >&2
# Every other round goes through the targets in reverse, so no target always follows the same one.
in_order() { # round -> the targets, reversed on even rounds
  local i n=${#TARGETS[@]}
  for i in $(seq 0 $((n - 1))); do
    if [ $(($1 % 2)) = 0 ]; then echo "${TARGETS[$((n - 1 - i))]}"; else echo "${TARGETS[$i]}"; fi
  done
}
for round in $(seq 1 "$ROUNDS"); do
  while read -r t; do
    echo "  round $round: measuring ${t%%|*} ..." >&2
    run_wrk "${t%%|*}" "${t#*|}" "$round"
  done < <(in_order "$round")
done

# ---------------------------------------------------------------- capped rounds
CAPPED=()
if [ "$CAP" != 0 ]; then
  capped_ok=1
  for n in haproxy nginx weft weft-base; do
    [ -n "${WORK_PID[$n]}" ] || continue
    cap_pid "$n" "${WORK_PID[$n]}" || { capped_ok=0; break; }
    CAPPED+=("$n")
  done
  if [ "$capped_ok" = 1 ]; then
    echo "capped rounds: each proxy limited to $CAP % of one core (cgroup quota), $CAP_ROUNDS rounds of $CAP_DURATION" >&2
    for round in $(seq 1 "$CAP_ROUNDS"); do
      while read -r t; do
        name="${t%%|*}"
        [ "$name" = direct ] && continue
        echo "  capped round $round: measuring $name ..." >&2
        run_wrk "$name" "${t#*|}" "capped-$round" "$CAP_DURATION" 1s
      done < <(in_order "$round")
    done
  else
    echo "capped rounds NOT run: cannot make a CPU-quota cgroup here (needs root and the cgroup cpu controller)" >&2
    echo "capped rounds not run: no CPU-quota cgroup here (root and the cgroup cpu controller needed)" >"$TMP/capped-note.txt"
    CAPPED=()
  fi
  uncap_all
fi

# Resident memory of each proxy after the load (the high-water mark, as the kernel reports it).
rss() { awk '/VmHWM/ {printf "%.1f MB", $2/1024}' "/proc/$1/status" 2>/dev/null || echo "?"; }
echo "peak RSS (VmHWM) after the saturating load: weft $(rss "$WEFT_PID"), haproxy $(rss "$HAPROXY_PID"), nginx worker $(rss "$NGINX_WORKER")" >"$TMP/rss.txt"

MACHINE_END="$(machine_note)"
{ echo "$MACHINE_START (start)"; echo "$MACHINE_END (end)"; } >"$TMP/machine.txt"
python3 - "$TMP" "$CONNS" "$DURATION" "$PIN_NOTE" "$ROUNDS" "$RSS_RATE" "$RSS_CONNS" "$RSS_DURATION" "${WEFT_BASE_BIN:-}" "$CAP" "${CAPPED[*]:-}" "$CAP_ROUNDS" "$CAP_DURATION" <<'PY'
import json, os, re, statistics, sys
tmp, conns, duration, pin, rounds, rss_rate, rss_conns, rss_dur, base_bin, cap, capped, cap_rounds, cap_dur = sys.argv[1:14]
cap_rounds = int(cap_rounds)
capped = capped.split()
rounds = int(rounds)
names = ["direct", "haproxy", "nginx", "weft"] + (["weft-base"] if base_bin else [])

def ms(v):
    m = re.match(r"([\d.]+)(us|ms|s)", v)
    x, u = float(m.group(1)), m.group(2)
    return x / 1000 if u == "us" else x * 1000 if u == "s" else x

def parse(path):
    text = open(path).read()
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))
    p50 = ms(re.search(r"^\s+50%\s+(\S+)", text, re.M).group(1))
    p99 = ms(re.search(r"^\s+99%\s+(\S+)", text, re.M).group(1))
    errs = []
    m = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", text)
    if m:
        errs.append(f"{m.group(1)} non-2xx")
    m = re.search(r"Socket errors:(.*)", text)
    if m:
        errs.append("socket errors:" + m.group(1).strip())
    return rps, p50, p99, "; ".join(errs)

hz = os.sysconf("SC_CLK_TCK")
def busy(n, r):  # share of one core the target's worker process used while measured
    c0, c1, t0, t1 = map(float, open(f"{tmp}/cpu-{n}-{r}.txt").read().split())
    return (c1 - c0) / hz / (t1 - t0)
runs = {n: [parse(f"{tmp}/wrk-{n}-{r}.txt") for r in range(1, rounds + 1)] for n in names}
cpu = {n: [busy(n, r) for r in range(1, rounds + 1)] for n in names}
# req/s per fully busy core: each round's req/s over its busy share, median of rounds
per_core = {n: statistics.median([runs[n][r][0] / max(cpu[n][r], 1e-3) for r in range(rounds)]) for n in names}
med = lambda xs: statistics.median(xs)
res = {n: (med([x[0] for x in v]), med([x[1] for x in v]), med([x[2] for x in v]), "; ".join(x[3] for x in v if x[3]) or "-") for n, v in runs.items()}
print(f"\nHTTP/1.1, wrk -t1 -c{conns} -d{duration} --latency, 1 backend (nginx), {pin}; medians of {rounds} rounds\n")
print(f"| {'target':9} | {'req/s':>10} | {'p50 ms':>8} | {'p99 ms':>8} | {'CPU':>5} | {'req/s per core':>14} | errors |")
print(f"|{'-'*11}|{'-'*12}|{'-'*10}|{'-'*10}|{'-'*7}|{'-'*16}|--------|")
for n in names:
    rps, p50, p99, e = res[n]
    print(f"| {n:9} | {rps:>10.0f} | {p50:>8.3f} | {p99:>8.3f} | {statistics.median(cpu[n]):>5.0%} | {per_core[n]:>14.0f} | {e} |")
print("\nCPU = busy share of its core of the process doing the work (the proxy; for direct: the backend's")
print("worker); req/s per core = req/s / CPU (what one fully busy core would carry at this efficiency)")
w = res["weft"]
print()
if base_bin:
    print(f"weft-base = {base_bin}")
for peer in ("haproxy", "nginx") + (("weft-base",) if base_bin else ()):
    p = res[peer]
    per_round = [runs["weft"][r][0] / runs[peer][r][0] for r in range(rounds)]
    print(f"weft/{peer}: throughput {w[0]/p[0]:.2f}x (per round: {', '.join(f'{x:.2f}' for x in per_round)}), p50 {w[1]/p[1]:.2f}x, p99 {w[2]/p[2]:.2f}x")
for peer in ("haproxy", "nginx") + (("weft-base",) if base_bin else ()):
    per_round = [(runs["weft"][r][0] / cpu["weft"][r]) / (runs[peer][r][0] / cpu[peer][r]) for r in range(rounds)]
    print(f"weft/{peer}: req/s per busy core {per_core['weft']/per_core[peer]:.2f}x (per round: {', '.join(f'{x:.2f}' for x in per_round)})")
for n in ("haproxy", "nginx", "weft"):
    print(f"{n}/direct: throughput {res[n][0]/res['direct'][0]:.2f}x")
ratio = res["weft"][0] / res["haproxy"][0]
eff = per_core["weft"] / per_core["haproxy"]
print(f"\ngoal weft >= 1.2x HAProxy throughput on one core: measured req/s {ratio:.2f}x, {'met' if ratio >= 1.2 else 'NOT met'}; "
      f"req/s per busy core {eff:.2f}x, {'met' if eff >= 1.2 else 'NOT met'}")
if max(cpu["weft"]) < 0.9 or max(cpu["haproxy"]) < 0.9:
    print(f"  (a proxy's core was not saturated: weft {statistics.median(cpu['weft']):.0%}, haproxy {statistics.median(cpu['haproxy']):.0%} busy, so its "
          f"req/s was limited elsewhere: by the load side (wrk + backend share core 0; direct gave {res['direct'][0]:.0f} req/s) "
          f"or by other processes on the machine; req/s per busy core is then the better figure)")
if capped:
    cr = {n: [parse(f"{tmp}/wrk-{n}-capped-{r}.txt") for r in range(1, cap_rounds + 1)] for n in capped}
    cc = {n: [busy(n, f"capped-{r}") for r in range(1, cap_rounds + 1)] for n in capped}
    print(f"\ncapped rounds: each proxy limited to {cap} % of one core (cgroup CPU quota), so the proxy is the bottleneck; wrk -d{cap_dur}, medians of {cap_rounds} rounds\n")
    print(f"| {'proxy':9} | {'req/s':>10} | {'p50 ms':>8} | {'p99 ms':>8} | {'CPU':>5} | errors |")
    print(f"|{'-'*11}|{'-'*12}|{'-'*10}|{'-'*10}|{'-'*7}|--------|")
    for n in capped:
        v = cr[n]
        errs = "; ".join(x[3] for x in v if x[3]) or "-"
        print(f"| {n:9} | {med([x[0] for x in v]):>10.0f} | {med([x[1] for x in v]):>8.3f} | {med([x[2] for x in v]):>8.3f} | {med(cc[n]):>5.0%} | {errs} |")
    print()
    for peer in [p for p in ("haproxy", "nginx", "weft-base") if p in capped]:
        per_round = [cr["weft"][r][0] / cr[peer][r][0] for r in range(cap_rounds)]
        print(f"weft/{peer} at {cap} % of a core: throughput {med([x[0] for x in cr['weft']]) / med([x[0] for x in cr[peer]]):.2f}x (per round: {', '.join(f'{x:.2f}' for x in per_round)})")
    capped_ratio = med([x[0] for x in cr["weft"]]) / med([x[0] for x in cr["haproxy"]])
    print(f"goal weft >= 1.2x HAProxy throughput on one core, with both saturated at the same CPU: {capped_ratio:.2f}x, {'met' if capped_ratio >= 1.2 else 'NOT met'}")
elif os.path.exists(f"{tmp}/capped-note.txt"):
    print("\n" + open(f"{tmp}/capped-note.txt").read().strip())
if rss_rate != "0":
    print(f"\nmemory while serving a fixed {rss_rate} req/s over {rss_conns} keep-alive connections for {rss_dur} s:\n")
    print(f"| {'proxy':8} | {'req/s':>6} | {'p50 ms':>7} | {'p99 ms':>7} | errors | max VmRSS | VmHWM |")
    print(f"|{'-'*10}|{'-'*8}|{'-'*9}|{'-'*9}|--------|-----------|-------|")
    for n in ("haproxy", "nginx", "weft"):
        if not os.path.exists(f"{tmp}/mem-{n}.txt"):
            continue
        mx, hwm = (int(x) / 1024 for x in open(f"{tmp}/mem-{n}.txt").read().split())
        r = json.load(open(f"{tmp}/memrate-{n}.json"))
        print(f"| {n:8} | {r['rate']:>6.0f} | {r['p50_us']/1000:>7.3f} | {r['p99_us']/1000:>7.3f} | {r['errors']:>6} | {mx:>6.1f} MB | {hwm:.1f} MB |")
    mx = int(open(f"{tmp}/mem-weft.txt").read().split()[0]) / 1024
    print(f"(nginx: its worker process.)\ngoal weft RSS <= 25 MB at {rss_rate} req/s: {mx:.1f} MB, {'met' if mx <= 25 else 'NOT met'}")
print(open(f"{tmp}/rss.txt").read().strip())
print(open(f"{tmp}/machine.txt").read().strip())
PY
