#!/usr/bin/env bash
# Replication convergence at 50 nodes: 50 real weft processes on loopback (one registry, 49
# proxies, one CA), each with its own data dir, admin port, gossip address 127.0.1.x and VIP
# range, DNS off, every node joining the same two seeds. Once every node lists all 50 alive, the
# registry creates a service and then proxies register or change an endpoint, WRITES times, one
# write at a time; for each write, each other node's log says when it merged the record
# (WEFT_LOG=weft::node::mesh=debug logs every merged record). Reports p50/p99 of "a node has it"
# and of "all 50 have it", in ms; the goal is all 50 within 0.5 s at p99.
#
#   bash benches/convergence.sh                    # NODES=50 WRITES=100 (~2 min after the build)
#   WEFT_BIN=target/release/weft bash benches/convergence.sh   # skip the build, use this binary
#   NODES=20 WRITES=10 bash benches/convergence.sh
#
# The measuring is benches/convergence.py. Memory: ~10 MB per process. No pinning: 50 processes
# share the machine's cores, as they would share nothing on 50 hosts — so the figure includes
# scheduling delay on a loaded box (see BENCHMARKS.md).
set -euo pipefail

NODES="${NODES:-50}"
WRITES="${WRITES:-100}"
BENCH=convergence
source "$(dirname "$0")/lib.sh"

command -v python3 >/dev/null 2>&1 || { echo "benches/convergence.sh: needs python3" >&2; exit 1; }
command -v curl >/dev/null 2>&1 || { echo "benches/convergence.sh: needs curl" >&2; exit 1; }
[ "$NODES" -ge 3 ] && [ "$NODES" -le 200 ] || { echo "benches/convergence.sh: NODES must be 3..200" >&2; exit 1; }

weft_binary

# Ports: admin on 127.0.0.1, gossip (UDP) on the node's own 127.0.1.x (127.0.0.x is left to the tests), both picked free here.
# The picking is done in one python process for speed; a port taken between the pick and the
# start shows as a node that does not come up (its log says so).
python3 - "$NODES" >"$TMP/ports.txt" <<'PY'
import socket, sys
n = int(sys.argv[1])
keep = []
for i in range(n):
    ip = f"127.0.{1 + i // 250}.{i % 250 + 2}"
    a = socket.socket(); a.bind(("127.0.0.1", 0))
    g = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); g.bind((ip, 0))
    keep += [a, g]
    print(i, ip, a.getsockname()[1], g.getsockname()[1])
PY

"$WEFT" ca init --dir "$TMP/ca" --cluster bench >/dev/null
name_of() { if [ "$1" -eq 0 ]; then echo reg; else printf 'p%02d' "$1"; fi; }
SEEDS=""
while read -r i ip admin gport; do
  n="$(name_of "$i")"
  [ "$i" -lt 2 ] && SEEDS="$SEEDS${SEEDS:+, }\"$ip:$gport\""
  echo "$i $n $ip $admin $gport"
done <"$TMP/ports.txt" >"$TMP/nodes.txt"

: >"$TMP/manifest.jsonl"
echo "starting $NODES weft nodes (seeds: $SEEDS) ..." >&2
export START_TS="$(date +%s.%N)"
while read -r i n ip admin gport; do
  "$WEFT" ca issue --dir "$TMP/ca" --node "$n" --out "$TMP/certs" >/dev/null
  mode=proxy; [ "$i" -eq 0 ] && mode=registry
  # Every node joins both seeds (a seed listing itself is harmless); VIPs: one /24 per node.
  mesh_node_toml "$n" "$mode" "$admin" "127.253.$((i % 250)).0/24" "$ip:$gport" "$SEEDS"
  [ "$mode" = registry ] && printf '\n[[namespace]]\nname = "bench"\n' >>"$TMP/$n/weft.toml"
  # WEFT_LOG is weft's log filter; RUST_LOG is set too in case a build reads that one.
  WEFT_LOG="info,weft::node::mesh=debug" RUST_LOG="info,weft::node::mesh=debug" \
    "$WEFT" run -c "$TMP/$n/weft.toml" >"$TMP/$n/weft.log" 2>&1 &
  PIDS+=($!)
  printf '{"name":"%s","mode":"%s","admin":"127.0.0.1:%s","gossip":"%s:%s","log":"%s","pid":%d}\n' \
    "$n" "$mode" "$admin" "$ip" "$gport" "$TMP/$n/weft.log" "$!" >>"$TMP/manifest.jsonl"
done <"$TMP/nodes.txt"
export LAST_START_TS="$(date +%s.%N)"

# Every admin API up (a node that failed to start says why in its log).
while read -r i n ip admin gport; do
  ok=""
  for _ in $(seq 1 200); do
    if curl -fsS --noproxy '*' -o /dev/null --max-time 1 "http://127.0.0.1:$admin/v1/status" 2>/dev/null; then ok=1; break; fi
    sleep 0.05
  done
  [ -n "$ok" ] || { echo "benches/convergence.sh: $n did not come up; its log:" >&2; tail -5 "$TMP/$n/weft.log" >&2; KEEP_TMP=1; exit 1; }
done <"$TMP/nodes.txt"

set +e
python3 "$ROOT/benches/convergence.py" "$TMP/manifest.jsonl" "$WRITES" bench conv
rc=$?
set -e
if [ "$rc" -ne 0 ]; then
  echo "benches/convergence.sh: the measurement failed (rc $rc); logs in $TMP" >&2
  KEEP_TMP=1
fi
exit "$rc"
