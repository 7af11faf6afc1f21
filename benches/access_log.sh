#!/usr/bin/env bash
# Access logs' cost on the HTTP/1.1 path: two weft nodes in front of the same backend, one with
# access logs off (the default) and one logging every request as JSON lines to a file, measured in
# interleaved rounds of the same wrk load (as benches/http1.sh does its proxies); the ratio of the
# medians is the figure (BENCHMARKS.md).
#
#   bash benches/access_log.sh                 # DURATION=10s CONNS=50 ROUNDS=3
#   WEFT_BIN=target/release/weft bash benches/access_log.sh
#
# With 2+ cores each weft in turn runs pinned to core 1, wrk and the backend to core 0 (the two
# nodes share core 1 but only the one under load is busy). The log file is on the temp dir's disk.
# As root, each node runs under a CPU quota (CAP % of one core, a cgroup of its own, as in
# benches/http1.sh's capped rounds): then weft, writer thread included, is the bottleneck rather
# than wrk, and req/s is throughput per CPU. CAP=0 runs uncapped.
set -euo pipefail
DURATION="${DURATION:-10s}"
ROUNDS="${ROUNDS:-3}"
WARMUP="${WARMUP:-3s}"
CONNS="${CONNS:-50}"
CAP="${CAP:-50}"
BENCH=access_log
source "$(dirname "$0")/lib.sh"

need wrk wrk
need nginx nginx-light
need python3 python3
need curl curl

if [ "$(nproc)" -ge 2 ] && command -v taskset >/dev/null 2>&1; then PROXY_CPU=(taskset -c 1); LOAD_CPU=(taskset -c 0); else PROXY_CPU=(); LOAD_CPU=(); fi

start_backend
wait_http "http://127.0.0.1:$BACKEND_PORT/"
weft_binary

start_node() { # name vip-cidr extra-toml -> sets NODE_ADMIN NODE_VIP
  local admin="127.0.0.1:$(free_port)"
  { printf '%s\n' "$3"; bench_weft_toml "$1" "$admin" "listen = \"127.0.0.1:$(free_port)\"" "$2" http; } >"$TMP/$1.toml"
  WEFT_LOG=warn XDG_STATE_HOME="$TMP/xdg-$1" "${PROXY_CPU[@]}" "$WEFT" run -c "$TMP/$1.toml" >"$TMP/$1.log" 2>&1 &
  PIDS+=($!)
  NODE_PID=$!
  wait_http "http://$admin/v1/status"
  NODE_ADMIN="$admin"
  NODE_VIP="$(healthy_vip "$admin" 1)" || { echo "benches/access_log.sh: $1 has no healthy route; see $TMP/$1.log" >&2; KEEP_TMP=1; exit 1; }
}

start_node logs-off 127.255.197.0/24 ""
OFF_URL="http://$NODE_VIP:8080/"
OFF_PID="$NODE_PID"
start_node logs-on 127.255.198.0/24 "[access_log]
enabled = true
path = \"$TMP/access.log\"
format = \"json\""
ON_URL="http://$NODE_VIP:8080/"
ON_ADMIN="$NODE_ADMIN"
ON_PID="$NODE_PID"

CAP_NOTE="uncapped (wrk may be the bottleneck)"
if [ "$CAP" != 0 ]; then
  if cap_pid off "$OFF_PID" && cap_pid on "$ON_PID"; then CAP_NOTE="each node capped at $CAP % of one core"; else uncap_all; CGROUPS=(); fi
fi
echo "$CAP_NOTE" >&2
wait_http "$OFF_URL"; wait_http "$ON_URL"

echo "$(machine_note) (start)" >&2
rps() { # url
  "${LOAD_CPU[@]}" wrk -t1 -c"$CONNS" -d"$DURATION" --latency "$1" | awk '/^Requests\/sec:/ {print $2}'
}
OFF=(); ON=()
for r in $(seq 1 "$ROUNDS"); do
  for t in "off|$OFF_URL" "on|$ON_URL"; do
    IFS='|' read -r name url <<<"$t"
    "${LOAD_CPU[@]}" wrk -t1 -c"$CONNS" -d"$WARMUP" "$url" >/dev/null
    v="$(rps "$url")"
    echo "  round $r: logs $name: $v req/s" >&2
    if [ "$name" = off ]; then OFF+=("$v"); else ON+=("$v"); fi
  done
done
median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
MOFF="$(median "${OFF[@]}")"; MON="$(median "${ON[@]}")"
FIG="$(curl -fsS --noproxy '*' "http://$ON_ADMIN/v1/stats/access-log")"
LINES="$(wc -l <"$TMP/access.log")"
echo "$(machine_note) (end)" >&2
echo "$CAP_NOTE"
printf 'access logs off: %s req/s (median of %s)\naccess logs on (JSON lines to a file): %s req/s\nratio on/off: %s\nlog lines written: %s; writer figures: %s\n' \
  "$MOFF" "$ROUNDS" "$MON" "$(python3 -c "print(f'{$MON/$MOFF:.3f}')")" "$LINES" "$FIG"
