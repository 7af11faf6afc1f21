#!/usr/bin/env bash
# What a policy plugin costs the data plane, in one run:
#  1. per hook call, in-process (benches/plugin_hooks.rs: the example plugins on warm instances);
#  2. HTTP/1.1 throughput per busy core through one weft node serving five services of the same
#     backend, one per policy: `builtin` (no plugin), `canary` (canary-router's `route` governs
#     every request, 0 % canary; its answer is kept, `reuse = same-headers`), `retry`
#     (retry-policy's `should-retry`: called on failures only, so ~free here), `picker`
#     (version-picker's `pick-endpoint` governs every request, x-version: v2 matching the
#     endpoint; answer kept) and `percall` (the route-to-config fixture: a `route` call on every
#     request, `reuse = none` — what a plugin whose answer cannot be kept costs). Each round on a
#     fresh process; each service's share of a round taken in SLICES loads of SLICE in turn with
#     the others' (lib.sh `sliced_round`: the host's speed drifts within seconds);
#  3. optionally (INSTR=1) user-space instructions per request under callgrind, each service in
#     turn (the same configs; INSTR_DURATION, 5 s by default): the figure that does not move with
#     the machine's other load.
#
#   bash plugins/build.sh && bash benches/plugin.sh     # ROUNDS=3 SLICES=8 SLICE=1s CONNS=50
#   WEFT_BIN=target/quick-release/weft bash benches/plugin.sh
#   INSTR=1 bash benches/plugin.sh                       # also instructions per request
#
# Goals (issue 13): per-core throughput with each plugin >= 0.98x the built-in policy; route and
# should-retry <= 500 ns per call, pick-endpoint over 8 candidates <= 1 us.
set -euo pipefail
SLICE="${SLICE:-1s}"
SLICES="${SLICES:-8}"
ROUNDS="${ROUNDS:-3}"
CONNS="${CONNS:-50}"
BENCH=plugin
source "$(dirname "$0")/lib.sh"

need wrk wrk
need nginx nginx-light
need python3 python3
need curl curl
REL="$ROOT/plugins/target/wasm32-wasip2/release"
for f in canary_router retry_policy version_picker; do
  [ -f "$REL/$f.wasm" ] || { echo "benches/plugin.sh: $REL/$f.wasm missing: run bash plugins/build.sh" >&2; exit 1; }
done

if [ "${HOOKS:-1}" = 1 ]; then # HOOKS=0: not the in-process figures (they build the benches)
  echo "== hook calls, in-process"
  (cd "$ROOT" && cargo bench --profile quick-release --bench plugin_hooks 2>/dev/null)
fi

if [ "$(nproc)" -ge 2 ] && command -v taskset >/dev/null 2>&1; then
  PROXY_CPU=(taskset -c 1); LOAD_CPU=(taskset -c 0); PIN_NOTE="weft on core 1; wrk and backend on core 0"
else
  PROXY_CPU=(); LOAD_CPU=(); PIN_NOTE="no pinning"
fi
start_backend
wait_http "http://127.0.0.1:$BACKEND_PORT/"
weft_binary

NAMES=(builtin canary retry picker percall)
declare -A VIP PID FILE CONFIG
FILE[canary]=canary_router; CONFIG[canary]='{"service":"backend-v2","percent":0}'
FILE[retry]=retry_policy; CONFIG[retry]='{"statuses":[429,503]}'
FILE[picker]=version_picker; CONFIG[picker]='{"header":"x-version","attribute":"version"}'
FILE[percall]=../../../fixtures/route-to-config; CONFIG[percall]=''
# One node serving five services, one per policy, each with its own VIP and an endpoint on the
# same backend: the services share the process, so what its code and heap placement does to its
# speed (a few percent, for the whole life of a process) falls on every policy alike; compared
# across processes, identical configurations read 0.92-1.04x round by round (2026-12-07).
ADMIN="127.0.0.1:$(free_port)"
{
  cat <<CONF
[node]
name = "plugin-bench"
data_dir = "$TMP/node-data"

[admin]
listen = "$ADMIN"

[dns]
enabled = false
vip_cidr = "127.255.191.0/24"

[[namespace]]
name = "bench.internal"
CONF
  for name in "${NAMES[@]}"; do
    printf '\n[[service]]\nnamespace = "bench.internal"\nname = "%s"\nprotocol = "http"\naliases = [{ dns_name = "%s.bench", port = 8080 }]\n' "$name" "$name"
    [ "$name" = builtin ] || printf 'policy = "%s"\n' "$name"
    printf '\n[[endpoint]]\nnamespace = "bench.internal"\nservice = "%s"\nid = "nginx-%s"\naddress = "127.0.0.1:%s"\nattributes = { version = "v2" }\n' "$name" "$name" "$BACKEND_PORT"
    [ "$name" = builtin ] || printf '\n[[plugin]]\nname = "%s"\npath = "%s/%s.wasm"\nconfig = %s\n' "$name" "$REL" "${FILE[$name]}" "'${CONFIG[$name]}'"
  done
} >"$TMP/node.toml"
start_node() { # [command prefix...]: the node on its config and data dir (its compiled plugins cached there)
  WEFT_LOG=warn XDG_STATE_HOME="$TMP/xdg" "${PROXY_CPU[@]}" "$@" "$WEFT" run -c "$TMP/node.toml" >>"$TMP/node.log" 2>&1 &
  NODE_PID=$!; PIDS+=("$NODE_PID")
  for name in "${NAMES[@]}"; do PID[$name]="$NODE_PID"; done
}
wait_node() {
  local name tries=60
  [ -n "${1:-}" ] && tries="$1"
  for _ in $(seq 1 "$tries"); do curl -fsS --max-time 2 -o /dev/null "http://$ADMIN/v1/status" 2>/dev/null && break; sleep 0.5; done
  for name in "${NAMES[@]}"; do
    VIP[$name]="$(healthy_vip "$ADMIN" 1 "$name.bench")" || { echo "benches/plugin.sh: no route to $name; see $TMP/node.log" >&2; KEEP_TMP=1; exit 1; }
  done
}
stop_node() { kill "$NODE_PID" 2>/dev/null || true; wait "$NODE_PID" 2>/dev/null || true; }

# The picker reads x-version on every request; the endpoint has that version (`among`).
cat >"$TMP/hdr.lua" <<'LUA'
wrk.headers["x-version"] = "v2"
LUA
WRK_ARGS=(-s "$TMP/hdr.lua")
# Every round on a fresh process, so the placement luck of one is a per-round draw the median
# evens out.
for round in $(seq 1 "$ROUNDS"); do
  start_node
  wait_node
  sliced_round "$round" "${NAMES[@]}"
  curl -fsS "http://$ADMIN/v1/plugins" >"$TMP/plugins.json"
  [ "$round" = "$ROUNDS" ] || stop_node
done

python3 - "$TMP" "$ROUNDS" "$HZ" "$SLICES x $SLICE" "$CONNS" "$PIN_NOTE" "$ROOT/benches" <<'PY'
import json, statistics, sys
tmp, rounds, hz, duration, conns, pin, benches = sys.argv[1:8]
sys.path.insert(0, benches)
from rounds import medians, per_cpu
names = ("builtin", "canary", "retry", "picker", "percall")
res = medians(tmp, names, int(rounds), int(hz), duration)
print(f"\nHTTP/1.1, wrk -t1 -c{conns}, {pin}; {rounds} rounds, each on a fresh process serving")
print(f"every policy as a service of its own, each service measured in {duration} slices in turn with the others';")
print("vs built-in: the median over the rounds of the service's req per CPU-second over the built-in")
print("service's in the same round (the same process, the same seconds)\n")
print(f"{'policy':10} {'req/s':>10} {'req per CPU-s':>14} {'busy cores':>11} {'vs built-in':>12}          per round")
base = per_cpu(tmp, "builtin", int(rounds), int(hz), duration)
for n, (r, pc, busy) in res.items():
    each = [x / b if b else 0 for x, b in zip(per_cpu(tmp, n, int(rounds), int(hz), duration), base)]
    ratio = statistics.median(each)
    verdict = "" if n in ("builtin", "percall") else (" met" if ratio >= 0.98 else " NOT met")
    print(f"{n:10} {r:10.0f} {pc:14.0f} {busy:11.2f} {ratio:11.3f}x{verdict:8}  {' '.join(f'{x:.3f}' for x in each)}")
for p in json.load(open(f"{tmp}/plugins.json")):
    for hook, f in p["calls"].items():
        print(f"{p['name']}: {hook} {f['calls']} calls, {f.get('reused', 0)} answers reused, {f['failures']} failures, {f['mean_ns']} ns/call in the node (last round)")
PY

[ "${INSTR:-0}" = 1 ] || exit 0
need valgrind valgrind
need callgrind_control valgrind
DURATION="${INSTR_DURATION:-5s}"
ROWS=()
# The same node again (same config and data dir, so its compiled plugins are cached), under
# callgrind, each service measured in turn (callgrind_measure zeroes and dumps the counters).
stop_node
start_node "${CALLGRIND[@]}" --callgrind-out-file="$TMP/callgrind.out"
wait_node 120
for name in "${NAMES[@]}"; do
  ROWS+=("$(callgrind_measure "$name" "$TMP/callgrind.out" "http://${VIP[$name]}:8080/" "$NODE_PID")")
done
stop_node
python3 - "${ROWS[@]}" <<'PY'
import sys
rows = [r.split() for r in sys.argv[1:]]
per = {name: int(ir) / int(n) for name, n, ir in rows}
print(f"\nuser-space instructions per HTTP/1.1 request (callgrind, one service at a time):\n")
print(f"{'policy':10} {'requests':>9} {'instr/request':>14} {'vs built-in':>12}")
for name, n, ir in rows:
    print(f"{name:10} {int(n):9d} {per[name]:14,.0f} {per[name] / per['builtin']:11.3f}x")
PY
