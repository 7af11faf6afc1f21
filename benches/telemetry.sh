#!/usr/bin/env bash
# What OTLP export costs the data plane: the same weft build twice, in one run, on loopback —
# `weft-off` with `[telemetry] enabled = false` and `weft-on` exporting every second over
# HTTP/protobuf to a local receiver (tests/support/otlp_receiver.py; needs pip's
# opentelemetry-proto, tests/requirements.txt).
#
#   bash benches/telemetry.sh          # DURATION=10s CONNS=50 ROUNDS=3
#   WEFT_BIN=target/quick-release/weft bash benches/telemetry.sh
#   PROTO=h2 bash benches/telemetry.sh # HTTP/2: h2load -t1 -cCONNS(10) -mSTREAMS(10), a protocol =
#                                      # "http2" service and an h2c backend; no memory phase
#
# Both get the same `wrk -t1 -cCONNS -dDURATION` in interleaved rounds (medians), pinned to core 1
# with wrk and the backend (nginx) on core 0. The figure is throughput per busy core: req/s divided
# by the CPU the weft process used in the round (utime+stime), as a ratio on/off; plain req/s too.
# Then a memory phase: weft-on serves RSS_RATE req/s (benches/fixed_rate.py) for RSS_DURATION s
# while its VmRSS is sampled. Goals (issue 14): per-core throughput >= 0.98x, RSS <= 25 MB at
# 2,000 req/s with export on.
set -euo pipefail

DURATION="${DURATION:-10s}"
ROUNDS="${ROUNDS:-3}"
PROTO="${PROTO:-http1}"
if [ "$PROTO" = h2 ]; then CONNS="${CONNS:-10}"; STREAMS="${STREAMS:-10}"; LOAD_PROTO=h2; else CONNS="${CONNS:-50}"; fi
RSS_RATE="${RSS_RATE:-2000}"
RSS_DURATION="${RSS_DURATION:-10}"
BENCH=telemetry
source "$(dirname "$0")/lib.sh"

need wrk wrk
[ "$PROTO" = h2 ] && need h2load nghttp2-client
need nginx nginx-light
need python3 python3
need curl curl

if [ "$(nproc)" -ge 2 ] && command -v taskset >/dev/null 2>&1; then
  PROXY_CPU=(taskset -c 1); LOAD_CPU=(taskset -c 0); PIN_NOTE="weft on core 1; wrk, backend and receiver on core 0"
else
  PROXY_CPU=(); LOAD_CPU=(); PIN_NOTE="no pinning"
fi
MACHINE_START="$(machine_note)"; echo "$MACHINE_START (start)"

if [ "$PROTO" = h2 ]; then
  start_backend " http2" "http2_max_concurrent_streams 256;"
  SERVICE_PROTO=http2
  sleep 0.5
else
  start_backend
  wait_http "http://127.0.0.1:$BACKEND_PORT/"
  SERVICE_PROTO=http
fi

OTLP_PORT="$(free_port)"
"${LOAD_CPU[@]}" python3 "$ROOT/tests/support/otlp_receiver.py" http "$OTLP_PORT" "$TMP/otlp.jsonl" >"$TMP/receiver.log" 2>&1 &
PIDS+=($!)

weft_binary
declare -A ADMIN VIP PID
for name in weft-off weft-on; do
  admin="127.0.0.1:$(free_port)"
  net=$([ "$name" = weft-on ] && echo 201 || echo 202)
  {
    bench_weft_toml "$name" "$admin" "enabled = false" "127.255.$net.0/24" "$SERVICE_PROTO"
    if [ "$name" = weft-on ]; then
      printf '\n[telemetry]\nendpoint = "http://127.0.0.1:%s"\nprotocol = "http/protobuf"\ninterval_ms = 1000\n' "$OTLP_PORT"
    else
      printf '\n[telemetry]\nenabled = false\n'
    fi
  } >"$TMP/$name.toml"
  WEFT_LOG=warn XDG_STATE_HOME="$TMP/xdg-$name" "${PROXY_CPU[@]}" "$WEFT" run -c "$TMP/$name.toml" >"$TMP/$name.log" 2>&1 &
  PID[$name]=$!
  PIDS+=(${PID[$name]})
  ADMIN[$name]="$admin"
  wait_http "http://$admin/v1/status"
  VIP[$name]="$(healthy_vip "$admin" 1)" || { echo "benches/telemetry.sh: $name has no route; see $TMP/$name.log" >&2; KEEP_TMP=1; exit 1; }
done

interleaved_rounds weft-off weft-on

if [ "$PROTO" = h2 ]; then
  echo "0 0" >"$TMP/mem.txt"
else
  rss_while "${PID[weft-on]}" "$TMP/mem.txt" "${LOAD_CPU[@]}" python3 "$ROOT/benches/fixed_rate.py" --url "http://${VIP[weft-on]}:8080/" \
    --rate "$RSS_RATE" --conns 50 --duration "$RSS_DURATION" --warmup 2 >"$TMP/fixed.txt" 2>&1 || true
fi
exports="$(curl -fsS "http://${ADMIN[weft-on]}/metrics" | awk '/^weft_telemetry_exports_total\{outcome="ok"\}/ {print $2}')"

python3 - "$TMP" "$ROUNDS" "$HZ" "$DURATION" "$CONNS" "$PIN_NOTE" "$RSS_RATE" "${exports:-0}" "$ROOT/benches" "$PROTO" "${STREAMS:-}" <<'PY'
import sys
tmp, rounds, hz, duration, conns, pin, rate, exports, benches, proto, streams = sys.argv[1:12]
sys.path.insert(0, benches)
from rounds import medians
res = medians(tmp, ("weft-off", "weft-on"), int(rounds), int(hz), duration)
load = f"HTTP/2, h2load -t1 -c{conns} -m{streams}" if proto == "h2" else f"HTTP/1.1, wrk -t1 -c{conns}"
print(f"\n{load} -d{duration}, {pin}; medians of {rounds} interleaved rounds\n")
print(f"{'target':10} {'req/s':>10} {'req per CPU-s':>14} {'busy cores':>11}")
for n, (r, pc, busy) in res.items():
    print(f"{n:10} {r:10.0f} {pc:14.0f} {busy:11.2f}")
ratio = res["weft-on"][1] / res["weft-off"][1]
print(f"\nexport on / off, throughput per busy core: {ratio:.3f}x (goal >= 0.98: {'met' if ratio >= 0.98 else 'NOT met'}); "
      f"req/s {res['weft-on'][0] / res['weft-off'][0]:.3f}x; {exports} exports made")
mx, hwm = (int(x) for x in open(f"{tmp}/mem.txt").read().split())
if proto != "h2":
    print(f"weft-on RSS at {rate} req/s: max {mx / 1024:.1f} MB, VmHWM {hwm / 1024:.1f} MB (goal <= 25 MB: {'met' if mx <= 25 * 1024 else 'NOT met'})")
PY
MACHINE_END="$(machine_note)"; echo "$MACHINE_END (end)"
