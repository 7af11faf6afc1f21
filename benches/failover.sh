#!/usr/bin/env bash
# Failover benchmark: what clients see when one of three endpoints dies mid-run, with weft in the
# path and without it, measured by the same load client, in one run.
#
#   bash benches/failover.sh                       # DURATION=40 KILL_AT=10 RESTART_AT=20 WORKERS=100 RATE=4000
#   SETTINGS=tuned bash benches/failover.sh        # faster health check, shorter ejection (see below)
#   RESTART_AT=0 bash benches/failover.sh          # kill only, no restart
#   WEFT_BIN=/path/to/weft bash benches/failover.sh
#   MESH=1 bash benches/failover.sh                # weft as two nodes (+ registry) over QUIC, see below
#
# Three backends: nginx processes (`master_process off`, so the one process that serves is the one
# SIGKILLed), each answering 200 with its name in `x-backend`. Two runs, each DURATION s with
# WORKERS concurrent clients (threads of benches/loadgen.rs, i.e. tests/common/load.rs: keep-alive,
# no client retries, a failure pauses the worker FAIL_PAUSE_MS), paced to RATE req/s in total
# (RATE=0: closed loop, as fast as answers come); at KILL_AT s backend b2 gets SIGKILL, at
# RESTART_AT s it is started again (same port):
#   weft    every client calls weft's alias (one VIP:port); weft's service has the three endpoints,
#           with health checks, retries and outlier ejection (issue 4; SETTINGS, below);
#   static  every client round-robins over the static list of the three backend addresses, the
#           way a client that resolved a DNS name to three A records does (DNS-based discovery):
#           nothing takes the dead address out of its list, so it sees the errors.
# Reported per run: total / failed requests, p50 / p99 / p99.9 / max latency of the successful
# ones, failures per second around the events, and for weft the endpoint's health and ejection as
# weft's API showed them (sampled every 0.25 s), plus weft's retry / ejection counters. During the
# weft run a probe (benches/fixed_rate.py, PROBE_RATE req/s over 10 connections, outside the
# WORKERS clients) records every request's latency with its send time, so stalls can be placed on
# the timeline next to the events (the load client only reports per-second counts).
#
# MESH=1: the clients call proxy node p1's alias; the endpoints are owned (registered, health
# checked) by proxy node p2, and p1 reaches them over its QUIC connection to p2; a registry node r
# holds the service. Certificates come from `weft ca init` / `weft ca issue`.
#
# Pinning (2+ cores): weft on core 1; load client and backends on core 0 in both runs, so both
# runs give the clients and backends the same CPU.
set -euo pipefail

DURATION="${DURATION:-40}"
KILL_AT="${KILL_AT:-10}"
RESTART_AT="${RESTART_AT:-20}"
WORKERS="${WORKERS:-100}"
RATE="${RATE:-4000}"
FAIL_PAUSE_MS="${FAIL_PAUSE_MS:-10}"
TIMEOUT_MS="${TIMEOUT_MS:-5000}"    # the client's whole-request timeout
HC_INTERVAL_MS="${HC_INTERVAL_MS:-1000}"
PROBE_RATE="${PROBE_RATE:-200}"    # weft run: a separate fixed-rate probe (req/s, 0 = none), see below
MESH="${MESH:-0}"
RUNS="${RUNS:-weft static}"
BENCH=failover
source "$(dirname "$0")/lib.sh"

need nginx nginx-light
need python3 python3
need curl curl
need rustc "rustc (rustup)"

CORES="$(nproc)"
if [ "$CORES" -ge 2 ] && command -v taskset >/dev/null 2>&1 && [ "${PIN:-1}" != 0 ]; then
  PROXY_CPU=(taskset -c 1)
  LOAD_CPU=(taskset -c 0)
  PIN_NOTE="weft on core 1; load client and backends on core 0"
else
  PROXY_CPU=()
  LOAD_CPU=()
  PIN_NOTE="no pinning ($CORES core(s))"
fi

# ---------------------------------------------------------------- the load client
echo "building benches/loadgen.rs (rustc -O) ..." >&2
rustc -O --edition 2024 "$ROOT/benches/loadgen.rs" -o "$TMP/loadgen"

# ---------------------------------------------------------------- three backends
declare -A BPORT BPID
for b in b1 b2 b3; do
  BPORT[$b]="$(free_port)"
  nginx_conf "$TMP/$b" "
  keepalive_timeout 300s;
  server {
    listen 127.0.0.1:${BPORT[$b]};
    location / { default_type text/plain; add_header x-backend $b always; return 200 \"hello from $b\\n\"; }
  }" "master_process off;"
done
start_backend() { # name
  "${LOAD_CPU[@]}" nginx -p "$TMP/$1" -e "$TMP/$1/error.log" -c "$TMP/$1/nginx.conf" &
  BPID[$1]=$!
  PIDS+=(${BPID[$1]})
  disown "${BPID[$1]}"  # no "Killed" notice from bash for the one we SIGKILL
}
backend_up() { kill -0 "${BPID[$1]}" 2>/dev/null; }
for b in b1 b2 b3; do start_backend $b; done
for b in b1 b2 b3; do wait_http "http://127.0.0.1:${BPORT[$b]}/"; done

# ---------------------------------------------------------------- weft
weft_binary
api() { curl -fsS --noproxy '*' --max-time 2 "http://$1$2"; }

# The service's issue-4 settings. SETTINGS=default: none given, i.e. weft's defaults (p2c, TCP
# health check every 5 s, 2 to fail / 2 to pass, 2 retries, ejection after 5 failures in a row for
# 30 s). SETTINGS=tuned: an HTTP check every HC_INTERVAL_MS, ejection for 10 s, lb round-robin
# (the same rotation as the static list). A build from before issue 4 refuses unknown keys, so
# `weft validate` decides; the weft run then measures the old behaviour.
SETTINGS="${SETTINGS:-default}"
case "$SETTINGS" in
  default)
    SERVICE_LB=""
    SERVICE_EXTRA=""
    WEFT_NOTE="weft's default service settings (lb p2c, tcp health check every 5 s, 2 to fail / 2 to pass, retries 2, outlier 5 in a row -> 30 s ejection)" ;;
  tuned)
    SERVICE_LB='lb = "round-robin"'
    SERVICE_EXTRA="
[service.health_check]
kind = \"http\"
path = \"/\"
interval_ms = $HC_INTERVAL_MS
timeout_ms = 500
healthy_threshold = 2
unhealthy_threshold = 2

[service.retry]
max_retries = 2

[service.outlier]
consecutive_failures = 5
base_ejection_s = 10"
    WEFT_NOTE="SETTINGS=tuned: lb round-robin, http health check GET / every ${HC_INTERVAL_MS} ms (2 to fail, 2 to pass), retries 2, outlier 5 in a row -> 10 s ejection" ;;
  *) echo "benches/failover.sh: SETTINGS is default or tuned" >&2; exit 2 ;;
esac
service_toml() { # lb-line extra
  bench_service_toml http "$1
$2"
}
endpoints_toml() {
  local b
  for b in b1 b2 b3; do
    printf '\n[[endpoint]]\nnamespace = "bench.internal"\nservice = "backend"\nid = "%s"\naddress = "127.0.0.1:%s"\n' "$b" "${BPORT[$b]}"
  done
}
mkdir -p "$TMP/check"
service_toml "$SERVICE_LB" "$SERVICE_EXTRA" >"$TMP/check/weft.toml"
if ! "$WEFT" validate "$TMP/check/weft.toml" >"$TMP/check/validate.txt" 2>&1; then
  WEFT_NOTE="this weft build rejects the issue-4 settings ($(head -1 "$TMP/check/validate.txt")): measured without them"
  service_toml "" "" >"$TMP/check/weft.toml"
fi
SERVICE_BLOCK="$(cat "$TMP/check/weft.toml")"
echo "weft: $WEFT_NOTE" >&2

WEFT_PIDS=()
if [ "$MESH" = 1 ]; then
  free_udp_port() { python3 -c 'import socket,sys; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind((sys.argv[1],0)); print(s.getsockname()[1])' "$1"; }
  "$WEFT" ca init --dir "$TMP/ca" --cluster bench >/dev/null
  declare -A ADMIN GOSSIP
  IPS=(r:127.0.0.41 p1:127.0.0.42 p2:127.0.0.43)
  for i in 0 1 2; do
    n="${IPS[$i]%%:*}"; ip="${IPS[$i]#*:}"
    "$WEFT" ca issue --dir "$TMP/ca" --node "$n" --out "$TMP/certs" >/dev/null
    ADMIN[$n]="127.0.0.1:$(free_port)"
    GOSSIP[$n]="$ip:$(free_udp_port "$ip")"
  done
  node_toml() { # name mode vipnet join
    cat <<CONF
[node]
name = "$1"
mode = "$2"
data_dir = "$TMP/$1/data"

[admin]
listen = "${ADMIN[$1]}"

[dns]
enabled = false
vip_cidr = "127.254.$3.0/24"

[tls]
ca = "$TMP/ca/ca.pem"
cert = "$TMP/certs/$1.pem"
key = "$TMP/certs/$1-key.pem"

[gossip]
listen = "${GOSSIP[$1]}"
join = [$4]
CONF
  }
  mkdir -p "$TMP/r" "$TMP/p1" "$TMP/p2"
  { node_toml r registry 21 ""; echo; echo "$SERVICE_BLOCK"; } >"$TMP/r/weft.toml"
  node_toml p1 proxy 22 "\"${GOSSIP[r]}\"" >"$TMP/p1/weft.toml"
  { node_toml p2 proxy 23 "\"${GOSSIP[r]}\""; endpoints_toml; } >"$TMP/p2/weft.toml"
  for n in r p1 p2; do
    WEFT_LOG=warn XDG_STATE_HOME="$TMP/xdg-$n" "${PROXY_CPU[@]}" "$WEFT" run -c "$TMP/$n/weft.toml" >"$TMP/$n/weft.log" 2>&1 &
    WEFT_PIDS+=($!)
    PIDS+=($!)
  done
  for n in r p1 p2; do wait_http "http://${ADMIN[$n]}/v1/status"; done
  CLIENT_ADMIN="${ADMIN[p1]}"   # the node the clients call: retries, ejection, stats
  OWNER_ADMIN="${ADMIN[p2]}"    # the node that owns the endpoints: health checks
  WEFT_SHAPE="mesh: clients -> p1's alias -> QUIC -> p2 -> backends (p2 owns and checks the endpoints)"
  WEFT_LOGS="$TMP/p1/weft.log $TMP/p2/weft.log"
else
  mkdir -p "$TMP/weft"
  cat >"$TMP/weft/weft.toml" <<CONF
[node]
name = "bench"
data_dir = "$TMP/weft/data"

[admin]
listen = "127.0.0.1:$(free_port)"

[dns]
enabled = false
vip_cidr = "127.255.204.0/24"

$SERVICE_BLOCK
$(endpoints_toml)
CONF
  CLIENT_ADMIN="$(sed -n 's/^listen = "\(.*\)"/\1/p' "$TMP/weft/weft.toml" | head -1)"
  OWNER_ADMIN="$CLIENT_ADMIN"
  WEFT_LOG=warn XDG_STATE_HOME="$TMP/xdg" "${PROXY_CPU[@]}" "$WEFT" run -c "$TMP/weft/weft.toml" >"$TMP/weft/weft.log" 2>&1 &
  WEFT_PIDS+=($!)
  PIDS+=($!)
  wait_http "http://$CLIENT_ADMIN/v1/status"
  WEFT_SHAPE="single node: clients -> weft's alias -> backends"
  WEFT_LOGS="$TMP/weft/weft.log"
fi

# The alias's VIP on the calling node once all three endpoints are healthy there.
WEFT_VIP="$(healthy_vip "$CLIENT_ADMIN" 3)" || { echo "benches/failover.sh: weft has no route with 3 healthy endpoints after 30 s; see $WEFT_LOGS" >&2; KEEP_TMP=1; exit 1; }
wait_http "http://$WEFT_VIP:8080/"

# ---------------------------------------------------------------- one run
# Samples weft's view every 0.25 s while a run lasts: per endpoint health / draining (owner's
# /v1/endpoints) and the calling node's per-service and per-endpoint figures (/v1/stats).
poll_weft() { # out-file stop-file
  python3 - "$CLIENT_ADMIN" "$OWNER_ADMIN" "$1" "$2" <<'PY'
import json, os, sys, time, urllib.request
client, owner, out, stop = sys.argv[1:5]
opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
def get(addr, path):
    try:
        return json.load(opener.open(f"http://{addr}{path}", timeout=1))
    except Exception as e:
        return {"error": str(e)}
with open(out, "w") as f:
    while not os.path.exists(stop):
        t = time.time()
        f.write(json.dumps({"t": t, "endpoints": get(owner, "/v1/endpoints"), "stats": get(client, "/v1/stats")}) + "\n")
        f.flush()
        time.sleep(max(0, 0.25 - (time.time() - t)))
PY
}

run_one() { # name target-list
  local name="$1" targets="$2" now
  for b in b1 b2 b3; do backend_up $b || start_backend $b; done
  for b in b1 b2 b3; do wait_http "http://127.0.0.1:${BPORT[$b]}/"; done
  : >"$TMP/events-$name.txt"
  if [ "$name" = weft ]; then
    # let the restarted backend of a previous run be healthy and un-ejected again
    healthy_vip "$CLIENT_ADMIN" 3 >/dev/null || true
    rm -f "$TMP/poll-stop"
    poll_weft "$TMP/poll-$name.jsonl" "$TMP/poll-stop" &
    POLL_PID=$!
    PIDS+=($POLL_PID)
    PROBE_PID=""
    if [ "$PROBE_RATE" != 0 ]; then
      "${LOAD_CPU[@]}" python3 "$ROOT/benches/fixed_rate.py" --url "http://$WEFT_VIP:8080/" --rate "$PROBE_RATE" --conns 10 \
        --duration "$DURATION" --warmup 0 --json "$TMP/probe.json" --dump "$TMP/probe-dump.txt" >/dev/null 2>"$TMP/probe.err" &
      PROBE_PID=$!
      PIDS+=($PROBE_PID)
      echo "$(date +%s.%N)" >"$TMP/probe-start.txt"
    fi
  fi
  local rate_args=()
  [ "$RATE" != 0 ] && rate_args=(--rate "$RATE")
  echo "  run $name: $WORKERS clients for ${DURATION}s -> $targets" >&2
  "${LOAD_CPU[@]}" "$TMP/loadgen" --target "$targets" --workers "$WORKERS" --duration "$DURATION" "${rate_args[@]}" \
    --timeout-ms "$TIMEOUT_MS" --fail-pause-ms "$FAIL_PAUSE_MS" --tally x-backend --label "$name" \
    --json "$TMP/res-$name.json" 2>"$TMP/loadgen-$name.txt" &
  local lg=$!
  local t0
  t0="$(date +%s.%N)"
  sleep "$(python3 -c "print(max(0, $KILL_AT - 0.0))")"
  kill -9 "${BPID[b2]}"
  now="$(date +%s.%N)"; echo "$now kill -9 b2" >>"$TMP/events-$name.txt"
  echo "    $(python3 -c "print(f'{$now - $t0:.2f}')")s: kill -9 b2 (pid ${BPID[b2]})" >&2
  if [ "$RESTART_AT" != 0 ]; then
    sleep "$(python3 -c "print(max(0, $t0 + $RESTART_AT - $(date +%s.%N)))")"
    wait "${BPID[b2]}" 2>/dev/null || true
    start_backend b2
    now="$(date +%s.%N)"; echo "$now restart b2" >>"$TMP/events-$name.txt"
    echo "    $(python3 -c "print(f'{$now - $t0:.2f}')")s: b2 started again (pid ${BPID[b2]})" >&2
  fi
  wait "$lg" || { echo "benches/failover.sh: the load client failed; see $TMP/loadgen-$name.txt" >&2; cat "$TMP/loadgen-$name.txt" >&2; KEEP_TMP=1; exit 1; }
  if [ "$name" = weft ]; then
    touch "$TMP/poll-stop"
    [ -n "$PROBE_PID" ] && { wait "$PROBE_PID" || echo "    (the probe failed: $(tail -1 "$TMP/probe.err"))" >&2; }
    wait "$POLL_PID" 2>/dev/null || true
  fi
  sed 's/^/    /' "$TMP/loadgen-$name.txt" >&2
}

STATIC_TARGETS="127.0.0.1:${BPORT[b1]},127.0.0.1:${BPORT[b2]},127.0.0.1:${BPORT[b3]}"
MACHINE_START="$(machine_note)"; echo "$MACHINE_START (start)" >&2
echo "failover: $WORKERS clients, ${DURATION}s per run, rate ${RATE} req/s (0 = closed loop), kill -9 b2 at ${KILL_AT}s, restart at ${RESTART_AT}s (0 = never); $PIN_NOTE" >&2
for run in $RUNS; do
  case "$run" in
    weft) run_one weft "$WEFT_VIP:8080" ;;
    static) run_one static "$STATIC_TARGETS" ;;
    *) echo "benches/failover.sh: unknown run $run" >&2; exit 2 ;;
  esac
done
WEFT_RSS="$(for p in "${WEFT_PIDS[@]}"; do awk '/VmHWM/ {printf "%.1f MB ", $2/1024}' "/proc/$p/status" 2>/dev/null; done)"

MACHINE_END="$(machine_note)"
{ echo "$MACHINE_START (start)"; echo "$MACHINE_END (end)"; } >"$TMP/machine.txt"
python3 - "$TMP" "$WORKERS" "$DURATION" "$RATE" "$KILL_AT" "$RESTART_AT" "$PIN_NOTE" "$WEFT_SHAPE" "$WEFT_NOTE" "$RUNS" "$WEFT_RSS" <<'PY'
import json, os, sys
tmp, workers, duration, rate, kill_at, restart_at, pin, shape, note, runs, rss = sys.argv[1:12]
runs = runs.split()
res = {r: json.load(open(f"{tmp}/res-{r}.json")) for r in runs}
events = {}
for r in runs:
    events[r] = [(float(l.split()[0]) - res[r]["start_epoch"], l.split(None, 1)[1].strip()) for l in open(f"{tmp}/events-{r}.txt")]

print(f"\nFailover: {workers} clients, {duration} s per run, "
      f"{'closed loop' if rate == '0' else rate + ' req/s paced'}, backend b2 SIGKILLed at {kill_at} s"
      f"{'' if restart_at == '0' else f' and started again at {restart_at} s'}; {pin}")
if "weft" in runs:
    print(f"weft: {shape}; {note}")
print()
cols = ["run", "total", "failed", "failed %", "req/s", "p50 ms", "p99 ms", "p99.9 ms", "max ms"]
print("| " + " | ".join(cols) + " |")
print("|" + "|".join("-" * (len(c) + 2) for c in cols) + "|")
for r in runs:
    x = res[r]
    pct = 100 * x["failed"] / max(1, x["total"])
    print(f"| {r} | {x['total']} | {x['failed']} | {pct:.3f} | {x['rps']:.0f} | {x['p50_ms']:.2f} | {x['p99_ms']:.2f} | {x['p999_ms']:.2f} | {x['max_ms']:.1f} |")
print()
for r in runs:
    x = res[r]
    print(f"{r}: events " + ", ".join(f"{t:.2f}s {e}" for t, e in events[r]))
    errs = ", ".join(f"{k} x{v}" for k, v in sorted(x["errors"].items(), key=lambda kv: -kv[1])) or "none"
    print(f"  errors: {errs}")
    tl = x["timeline"]
    print("  requests/failures per second: " + " ".join(f"{i}:{n}" + (f"/{f}" if f else "") for i, (n, f) in enumerate(tl)))
    fails = [i for i, (_, f) in enumerate(tl) if f]
    if fails:
        print(f"  failing seconds: {fails[0]}..{fails[-1]} ({len(fails)} s with failures)")
    print(f"  answered by: {x['tally']}; connections opened: {x['connects']}")

if "weft" in runs and os.path.exists(f"{tmp}/poll-weft.jsonl"):
    t0 = res["weft"]["start_epoch"]
    samples = [json.loads(l) for l in open(f"{tmp}/poll-weft.jsonl")]
    def ep_state(s, ep):
        health = draining = None
        if isinstance(s.get("endpoints"), list):
            for e in s["endpoints"]:
                if e.get("id") == ep:
                    health, draining = e.get("health"), e.get("draining")
        ejected = None
        st = s.get("stats")
        if isinstance(st, dict):
            svc = st.get("bench.internal/backend") or {}
            for e in svc.get("endpoints", []):
                if e.get("id") == ep:
                    ejected = e.get("ejected")
                    health = health or e.get("health")
        return health, ejected
    print("\nweft's view of b2 (changes only; t = s since the weft run's start):")
    last = None
    for s in samples:
        st = ep_state(s, "b2")
        if st != last:
            print(f"  {s['t'] - t0:6.2f}s  health={st[0]} ejected={st[1]}")
            last = st
    final = samples[-1].get("stats", {}) if samples else {}
    svc = final.get("bench.internal/backend", {}) if isinstance(final, dict) else {}
    keys = ["requests", "retries", "retry_budget_exhausted", "ejections", "connect_failures", "upstream_errors", "timeouts", "no_endpoint", "responses"]
    print("  calling node's figures for the service at the end: " + ", ".join(f"{k}={svc.get(k)}" for k in keys if k in svc))
    for e in svc.get("endpoints", []):
        print("    endpoint " + ", ".join(f"{k}={v}" for k, v in e.items()))
    print(f"  weft peak RSS (VmHWM): {rss.strip()}")
    if os.path.exists(f"{tmp}/probe-dump.txt") and os.path.getsize(f"{tmp}/probe-dump.txt"):
        p0 = float(open(f"{tmp}/probe-start.txt").read()) - t0  # probe start on the weft run's clock (~10 ms early)
        pj = json.load(open(f"{tmp}/probe.json"))
        per = {}
        for line in open(f"{tmp}/probe-dump.txt"):
            ts, lat = line.split()
            sec = int(float(ts) + p0)
            per.setdefault(sec, []).append(float(lat) / 1000)
        print(f"  probe ({pj['target_rate']:.0f} req/s through weft, 10 connections): {pj['requests']} requests, {pj['errors']} non-200, "
              f"p50 {pj['p50_us']/1000:.2f} ms, p99 {pj['p99_us']/1000:.2f} ms, max {pj['max_us']/1000:.1f} ms; "
              "slowest request per second: " + " ".join(f"{s}:{max(v):.1f}" for s, v in sorted(per.items())))

if "weft" in runs and "static" in runs:
    w, s = res["weft"], res["static"]
    print(f"\nweft vs static list: failed {w['failed']} vs {s['failed']}, p50 {w['p50_ms']:.2f} vs {s['p50_ms']:.2f} ms, "
          f"p99 {w['p99_ms']:.2f} vs {s['p99_ms']:.2f} ms")
print(open(f"{tmp}/machine.txt").read().strip())
PY
