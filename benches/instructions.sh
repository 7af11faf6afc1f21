#!/usr/bin/env bash
# User-space instructions per HTTP/1.1 request: weft and HAProxy, each under valgrind's callgrind,
# in front of the same backend, under the same wrk load. Unlike req/s on a shared VM, this figure
# is the same from run to run (within ~1 %), so it shows what a change to the request path costs.
# Kernel work (the TCP stack: most of a proxy's CPU on loopback) is not counted; it is the same
# for both (two reads, two writes per request; see ARCHITECTURE.md).
#
#   bash benches/instructions.sh                       # builds weft --release
#   WEFT_BIN=target/release/weft bash benches/instructions.sh
#   WEFT_BASE_BIN=/path/to/older/weft bash ...          # also count that build, as weft-base
#   DURATION=5s CONNS=50                                 # the measured wrk run (after a 3 s warm-up)
#   PROFILE_OUT=/dir                                     # keep the callgrind files there
#
# Each proxy runs pinned to core 1 (one CPU: weft picks its single-threaded runtime), wrk and the
# backend to core 0. Counters are zeroed after the warm-up and dumped right after the measured run
# (`callgrind_control`), so start-up is not counted. Under valgrind a proxy runs ~50x slower, so
# the request rate is low; instructions per request hardly depend on it.
set -euo pipefail
DURATION="${DURATION:-5s}"
CONNS="${CONNS:-50}"
BENCH=instructions
source "$(dirname "$0")/lib.sh"

need valgrind valgrind
need callgrind_control valgrind
need wrk wrk
need nginx nginx-light
need haproxy haproxy
need python3 python3
need curl curl

if [ "$(nproc)" -ge 2 ]; then PROXY_CPU=(taskset -c 1); LOAD_CPU=(taskset -c 0); else PROXY_CPU=(); LOAD_CPU=(); fi

start_backend
wait_http "http://127.0.0.1:$BACKEND_PORT/"
weft_binary
OUT="${PROFILE_OUT:-$TMP}"
mkdir -p "$OUT"

# measure NAME URL PID: instructions per request of NAME (benches/lib.sh callgrind_measure).
measure() { callgrind_measure "$1" "$OUT/callgrind-$1.out" "$2" "$3"; }

# weft (and weft-base): the benchmark service in front of the backend, under callgrind.
start_weft() { # name binary vip-third-octet
  local name="$1" bin="$2" net="$3" admin
  admin="127.0.0.1:$(free_port)"
  bench_weft_toml "$name" "$admin" "listen = \"127.0.0.1:$(free_port)\"" "127.255.$net.0/24" http >"$TMP/$name.toml"
  WEFT_LOG=warn XDG_STATE_HOME="$TMP/xdg-$name" "${PROXY_CPU[@]}" "${CALLGRIND[@]}" \
    --callgrind-out-file="$OUT/callgrind-$name.out" "$bin" run -c "$TMP/$name.toml" >"$TMP/$name.log" 2>&1 &
  PIDS+=($!)
  WEFT_PID=$!
  wait_http "http://$admin/v1/status" || sleep 5
  WEFT_VIP="$(healthy_vip "$admin" 1)" || { echo "benches/instructions.sh: $name has no healthy route; see $TMP/$name.log" >&2; KEEP_TMP=1; exit 1; }
}

RESULTS=()
start_weft weft "$WEFT" 198
RESULTS+=("$(measure weft "http://$WEFT_VIP:8080/" "$WEFT_PID")")
kill "$WEFT_PID"
if [ -n "${WEFT_BASE_BIN:-}" ]; then
  start_weft weft-base "$WEFT_BASE_BIN" 197
  RESULTS+=("$(measure weft-base "http://$WEFT_VIP:8080/" "$WEFT_PID")")
  kill "$WEFT_PID"
fi

HAPROXY_WRAP=("${CALLGRIND[@]}" --callgrind-out-file="$OUT/callgrind-haproxy.out")
start_haproxy "$BACKEND_PORT"
wait_http "http://127.0.0.1:$HAPROXY_PORT/" || true
RESULTS+=("$(measure haproxy "http://127.0.0.1:$HAPROXY_PORT/" "$HAPROXY_PID")")

python3 - "${RESULTS[@]}" <<'PY'
import sys
rows = [r.split() for r in sys.argv[1:]]
per = {name: int(ir) / int(n) for name, n, ir in rows}
print(f"\nuser-space instructions per HTTP/1.1 request (callgrind; wrk -c{__import__('os').environ.get('CONNS', '50')}, one backend):\n")
print("| proxy     | requests | instructions/request |")
print("|-----------|---------:|---------------------:|")
for name, n, ir in rows:
    print(f"| {name:9} | {int(n):>8} | {per[name]:>20,.0f} |")
print()
for name in per:
    if name != "haproxy":
        print(f"{name}/haproxy: {per[name] / per['haproxy']:.2f}x the instructions")
if "weft-base" in per:
    print(f"weft/weft-base: {per['weft'] / per['weft-base']:.2f}x")
PY
