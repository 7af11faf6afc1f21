#!/usr/bin/env bash
# Proxied latency while the catalog is being written (issue 16: "no disk wait on the data plane").
# p99 of requests through one weft at a fixed rate, quiet and while 1,000 catalog writes arrive,
# interleaved rounds, in one run:
#
#   bash benches/catalog_writes.sh            # RATE=2000 CONNS=20 DURATION=10 WRITES=1000 ROUNDS=3
#   WEFT_BIN=target/release/weft bash benches/catalog_writes.sh
#
# Two mesh nodes on loopback: a registry `r` and a proxy `p` on one core (PROXY_CPU: weft then
# runs its single-threaded runtime, the case where a disk wait on a runtime thread stalls every
# request); the registry, the load and the writing client run on the other core. `p` owns the benchmark endpoint (nginx). The load (benches/fixed_rate.py, open loop)
# calls the alias on `p`. The writes: WRITES endpoint registrations, half to `p`'s own admin API
# (durable commits on `p`) and half to `r` as services (replicated to `p`, merged by its gossip
# task), 8 at a time. Goal: p99 during the writes <= 1.5x the quiet p99.
set -euo pipefail

RATE="${RATE:-2000}"
CONNS="${CONNS:-20}"
DURATION="${DURATION:-10}"
WRITES="${WRITES:-1000}"
ROUNDS="${ROUNDS:-3}"
BENCH=catalog_writes
source "$(dirname "$0")/lib.sh"

need nginx nginx-light
need python3 python3
need curl curl

if [ "$(nproc)" -ge 2 ] && command -v taskset >/dev/null 2>&1; then
  PROXY_CPU=(taskset -c 1); LOAD_CPU=(taskset -c 0)
else
  PROXY_CPU=(); LOAD_CPU=()
fi
free_udp_port() { python3 -c 'import socket,sys; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind((sys.argv[1],0)); print(s.getsockname()[1])' "$1"; }

start_backend
wait_http "http://127.0.0.1:$BACKEND_PORT/"
weft_binary
"$WEFT" ca init --dir "$TMP/ca" --cluster bench >/dev/null
for n in r p; do "$WEFT" ca issue --dir "$TMP/ca" --node "$n" --out "$TMP/certs" >/dev/null; done
R_ADMIN="$(free_port)"; P_ADMIN="$(free_port)"
R_GOSSIP="127.0.0.41:$(free_udp_port 127.0.0.41)"; P_GOSSIP="127.0.0.42:$(free_udp_port 127.0.0.42)"
mesh_node_toml r registry "$R_ADMIN" "127.254.41.0/24" "$R_GOSSIP" ""
bench_service_toml http >>"$TMP/r/weft.toml"
mesh_node_toml p proxy "$P_ADMIN" "127.254.42.0/24" "$P_GOSSIP" "\"$R_GOSSIP\""
cat >>"$TMP/p/weft.toml" <<CONF

[[endpoint]]
namespace = "bench.internal"
service = "backend"
id = "nginx-1"
address = "127.0.0.1:$BACKEND_PORT"
CONF
WEFT_LOG=warn "${LOAD_CPU[@]}" "$WEFT" run -c "$TMP/r/weft.toml" >"$TMP/r/weft.log" 2>&1 &
PIDS+=($!)
WEFT_LOG=warn "${PROXY_CPU[@]}" "$WEFT" run -c "$TMP/p/weft.toml" >"$TMP/p/weft.log" 2>&1 &
P_PID=$!
PIDS+=($P_PID)
wait_http "http://127.0.0.1:$R_ADMIN/v1/status"
wait_http "http://127.0.0.1:$P_ADMIN/v1/status"
VIP="$(healthy_vip "127.0.0.1:$P_ADMIN" 1)" || { echo "benches/catalog_writes.sh: no healthy route on p; see $TMP/p/weft.log" >&2; KEEP_TMP=1; exit 1; }
URL="http://$VIP:8080/"
wait_http "$URL"

# WRITES registrations, 8 at a time: even ones to p (endpoints of a service of their own, so the
# measured traffic never goes to them), odd ones to r (services, replicated to p).
writes() { # round
  "${LOAD_CPU[@]}" python3 - "$1" "$WRITES" "$P_ADMIN" "$R_ADMIN" <<'PY'
import json, sys, threading, urllib.request
rnd, total, p, r = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4]
def post(port, path, body):
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=json.dumps(body).encode(), method="POST", headers={"content-type": "application/json"})
    urllib.request.urlopen(req, timeout=30).read()
post(r, "/v1/services", {"namespace": "bench.internal", "name": f"other{rnd}", "protocol": "http"})
left = list(range(total))
lock = threading.Lock()
def work():
    while True:
        with lock:
            if not left: return
            i = left.pop()
        if i % 2 == 0:
            post(p, "/v1/endpoints", {"namespace": "bench.internal", "service": f"other{rnd}", "id": f"e{i}", "address": f"127.0.0.1:{1 + i % 60000}"})
        else:
            post(r, "/v1/services", {"namespace": "bench.internal", "name": f"s{rnd}-{i}", "protocol": "tcp"})
ts = [threading.Thread(target=work) for _ in range(8)]
for t in ts: t.start()
for t in ts: t.join()
PY
}

measure() { # label round
  "${LOAD_CPU[@]}" python3 "$ROOT/benches/fixed_rate.py" --url "$URL" --rate "$RATE" --conns "$CONNS" --duration "$DURATION" --warmup 2 --json "$TMP/$1-$2.json" >/dev/null
}

echo "weft catalog_writes: $RATE req/s over $CONNS connections for ${DURATION}s per measurement, $WRITES writes per burst, $ROUNDS rounds"
machine_note
for round in $(seq 1 "$ROUNDS"); do
  measure quiet "$round"
  started=$(date +%s.%N)
  ( sleep 2.5; writes "$round" ; echo "$(date +%s.%N)" >"$TMP/writes-done-$round" ) &
  wpid=$!
  measure burst "$round"
  wait "$wpid"
  took=$(python3 -c "print(f'{float(open(\"$TMP/writes-done-$round\").read()) - $started - 2.5:.1f}')")
  echo "round $round: quiet p99 $(python3 -c "import json;print(json.load(open('$TMP/quiet-$round.json'))['p99_us'])") us, burst p99 $(python3 -c "import json;print(json.load(open('$TMP/burst-$round.json'))['p99_us'])") us (writes took ${took}s)"
done
python3 - "$TMP" "$ROUNDS" <<'PY'
import json, statistics, sys
tmp, rounds = sys.argv[1], int(sys.argv[2])
def fig(label, key):
    return [json.load(open(f"{tmp}/{label}-{r}.json"))[key] for r in range(1, rounds + 1)]
q50, b50 = statistics.median(fig("quiet", "p50_us")), statistics.median(fig("burst", "p50_us"))
q99, b99 = statistics.median(fig("quiet", "p99_us")), statistics.median(fig("burst", "p99_us"))
errs = sum(fig("burst", "errors")) + sum(fig("quiet", "errors"))
print(f"| | p50 us | p99 us |\n|---|---|---|\n| quiet | {q50} | {q99} |\n| 1,000 writes | {b50} | {b99} |")
print(f"ratio p99 burst/quiet: {b99 / q99:.2f}x (goal <= 1.5x: {'met' if b99 <= 1.5 * q99 else 'NOT met'}); errors {errs}")
PY
