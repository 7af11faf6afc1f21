#!/usr/bin/env bash
# HTTP/1.1 proxy benchmark: weft side by side with HAProxy and nginx, in one run, on loopback.
#
#   bash benches/http1.sh            # DURATION=10s CONNS=50 by default
#   DURATION=30s CONNS=100 bash benches/http1.sh
#   WEFT_BIN=/path/to/weft bash benches/http1.sh   # skip the build, use this binary
#
# One backend (nginx, 1 worker, fixed small body) and, in turn, each proxy in front of it:
# HAProxy (nbthread 1), nginx as reverse proxy (1 worker, keepalive upstream), and weft (one `http`
# alias; built with `cargo build --release`, or PROFILE=quick-release). Every one gets the same warm-up and the
# same `wrk -t1 -cCONNS -dDURATION --latency`. With 2+ cores the proxy under test is pinned to core 1
# and wrk + backend to core 0, so every proxy gets the same single core. Absolute numbers on a shared
# machine are noise; the ratios from one run are the figure (see BENCHMARKS.md).
set -euo pipefail

DURATION="${DURATION:-10s}"
# Rounds measure every target once each, interleaved, so a burst of load from a neighbour on a
# shared machine hits one round of all targets rather than all rounds of one; medians are reported.
ROUNDS="${ROUNDS:-3}"
WARMUP="${WARMUP:-3s}"
CONNS="${CONNS:-50}"
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
# An nginx config with one worker and every temp path inside DIR; the http block's own lines follow.
nginx_conf() { # dir http-block-lines
  local dir="$1" body="$2"
  mkdir -p "$dir"
  cat >"$dir/nginx.conf" <<CONF
worker_processes 1;
daemon off;
pid $dir/nginx.pid;
error_log $dir/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path $dir/body;
  proxy_temp_path $dir/proxy;
  fastcgi_temp_path $dir/fastcgi;
  uwsgi_temp_path $dir/uwsgi;
  scgi_temp_path $dir/scgi;
  keepalive_requests 1000000;
$body
}
CONF
}

BACKEND_PORT="$(free_port)"
nginx_conf "$TMP/backend" "
  keepalive_timeout 300s;
  server {
    listen 127.0.0.1:$BACKEND_PORT;
    location / { default_type text/plain; return 200 \"hello from the benchmark backend\\n\"; }
  }"
"${LOAD_CPU[@]}" nginx -p "$TMP/backend" -e "$TMP/backend/error.log" -c "$TMP/backend/nginx.conf" &
PIDS+=($!)
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
PIDS+=($!)

# ---------------------------------------------------------------- weft
weft_binary
WEFT_ADMIN_PORT="$(free_port)"
WEFT_DNS_PORT="$(free_port)"
cat >"$TMP/weft.toml" <<CONF
[node]
name = "bench"
data_dir = "$TMP/weft-data"

[admin]
listen = "127.0.0.1:$WEFT_ADMIN_PORT"

[dns]
listen = "127.0.0.1:$WEFT_DNS_PORT"
vip_cidr = "127.255.200.0/24"

[[namespace]]
name = "bench.internal"

[[service]]
namespace = "bench.internal"
name = "backend"
protocol = "http"
aliases = [{ dns_name = "backend.bench", port = 8080 }]

[[endpoint]]
namespace = "bench.internal"
service = "backend"
id = "nginx-1"
address = "127.0.0.1:$BACKEND_PORT"
CONF
WEFT_LOG=warn XDG_STATE_HOME="$TMP/xdg" "${PROXY_CPU[@]}" "$WEFT" run -c "$TMP/weft.toml" >"$TMP/weft.log" 2>&1 &
WEFT_PID=$!
PIDS+=($WEFT_PID)
wait_http "http://127.0.0.1:$WEFT_ADMIN_PORT/v1/status"
WEFT_VIP="$(curl -fsS --noproxy '*' "http://127.0.0.1:$WEFT_ADMIN_PORT/v1/routes" |
  python3 -c 'import json,sys; r=[x for x in json.load(sys.stdin) if x["dns_name"]=="backend.bench"][0]; print(r["vip"].split(":")[0])')"

TARGETS=(
  "direct|http://127.0.0.1:$BACKEND_PORT/"
  "haproxy|http://127.0.0.1:$HAPROXY_PORT/"
  "nginx|http://127.0.0.1:$NGINX_PORT/"
  "weft|http://$WEFT_VIP:8080/"
)
for t in "${TARGETS[@]}"; do wait_http "${t#*|}"; done

# ---------------------------------------------------------------- measure
run_wrk() { # name url round
  local name="$1" url="$2" round="$3"
  "${LOAD_CPU[@]}" wrk -t1 -c"$CONNS" -d"$WARMUP" "$url" >/dev/null
  "${LOAD_CPU[@]}" wrk -t1 -c"$CONNS" -d"$DURATION" --latency "$url" >"$TMP/wrk-$name-$round.txt"
}
echo "wrk -t1 -c$CONNS -d$DURATION --latency (warm-up $WARMUP), $ROUNDS rounds; $PIN_NOTE; $CORES cores" >&2
for round in $(seq 1 "$ROUNDS"); do
  for t in "${TARGETS[@]}"; do
    echo "  round $round: measuring ${t%%|*} ..." >&2
    run_wrk "${t%%|*}" "${t#*|}" "$round"
  done
done

# Resident memory of each proxy after the load (the high-water mark, as the kernel reports it).
rss() { awk '/VmHWM/ {printf "%.1f MB", $2/1024}' "/proc/$1/status" 2>/dev/null || echo "?"; }
echo "peak RSS after load: weft $(rss "$WEFT_PID"), haproxy $(rss "$HAPROXY_PID")" >"$TMP/rss.txt"

python3 - "$TMP" "$CONNS" "$DURATION" "$PIN_NOTE" "$ROUNDS" <<'PY'
import re, statistics, sys
tmp, conns, duration, pin, rounds = sys.argv[1:6]
rounds = int(rounds)
names = ["direct", "haproxy", "nginx", "weft"]

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

runs = {n: [parse(f"{tmp}/wrk-{n}-{r}.txt") for r in range(1, rounds + 1)] for n in names}
med = lambda xs: statistics.median(xs)
res = {n: (med([x[0] for x in v]), med([x[1] for x in v]), med([x[2] for x in v]), "; ".join(x[3] for x in v if x[3]) or "-") for n, v in runs.items()}
print(f"\nHTTP/1.1, wrk -t1 -c{conns} -d{duration} --latency, 1 backend (nginx), {pin}; medians of {rounds} rounds\n")
print(f"| {'target':8} | {'req/s':>10} | {'p50 ms':>8} | {'p99 ms':>8} | errors |")
print(f"|{'-'*10}|{'-'*12}|{'-'*10}|{'-'*10}|--------|")
for n in names:
    rps, p50, p99, e = res[n]
    print(f"| {n:8} | {rps:>10.0f} | {p50:>8.3f} | {p99:>8.3f} | {e} |")
w = res["weft"]
print()
for peer in ("haproxy", "nginx"):
    p = res[peer]
    per_round = [runs["weft"][r][0] / runs[peer][r][0] for r in range(rounds)]
    print(f"weft/{peer}: throughput {w[0]/p[0]:.2f}x (per round: {', '.join(f'{x:.2f}' for x in per_round)}), p50 {w[1]/p[1]:.2f}x, p99 {w[2]/p[2]:.2f}x")
print(open(f"{tmp}/rss.txt").read().strip())
PY
