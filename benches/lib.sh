# Shared by the benchmark scripts: temp dir and process cleanup, tool checks, free ports, waiting
# for HTTP, and the weft binary (built, or WEFT_BIN). Source it after setting BENCH (the script's
# short name, used in messages and the temp dir).
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TMP="$(mktemp -d -t "weft-bench-$BENCH.XXXXXX")"
PIDS=()

cleanup() {
  local pid
  uncap_all
  for pid in "${PIDS[@]:-}"; do
    [ -n "$pid" ] && kill "$pid" 2>/dev/null || true
  done
  for pid in "${PIDS[@]:-}"; do
    [ -n "$pid" ] && wait "$pid" 2>/dev/null || true
  done
  if [ -n "${KEEP_TMP:-}" ]; then echo "kept $TMP" >&2; else rm -rf "$TMP"; fi
}
trap cleanup EXIT INT TERM

# CPU-quota cgroups, so that a proxy is the bottleneck at a known share of a core and throughput is
# throughput per CPU without reading its ticks (needs root and the cgroup `cpu` controller, v1 or
# v2). cap_pid NAME PID: a cgroup of its own with CAP % of one core (10 ms period), PID (all its
# threads) in it; fails when no such cgroup can be made. uncap_all (also on exit): every process
# back to the root group, the groups removed.
CGROUPS=()
cap_pid() { # name pid
  local dir quota=$((CAP * 100))
  if [ -d /sys/fs/cgroup/cpu ] && [ -w /sys/fs/cgroup/cpu ]; then
    dir="/sys/fs/cgroup/cpu/weft-bench-$1-$$"
    mkdir -p "$dir" && echo 10000 >"$dir/cpu.cfs_period_us" && echo "$quota" >"$dir/cpu.cfs_quota_us" || return 1
  elif grep -qw cpu /sys/fs/cgroup/cgroup.controllers 2>/dev/null; then
    echo +cpu >/sys/fs/cgroup/cgroup.subtree_control 2>/dev/null || true
    dir="/sys/fs/cgroup/weft-bench-$1-$$"
    mkdir -p "$dir" && echo "$quota 10000" >"$dir/cpu.max" || return 1
  else
    return 1
  fi
  CGROUPS+=("$dir")
  echo "$2" >"$dir/cgroup.procs"
}
uncap_all() {
  local dir root pid
  for dir in "${CGROUPS[@]:-}"; do
    [ -n "$dir" ] || continue
    root="$(dirname "$dir")"
    for pid in $(cat "$dir/cgroup.procs" 2>/dev/null); do echo "$pid" >"$root/cgroup.procs" 2>/dev/null || true; done
    rmdir "$dir" 2>/dev/null || true
  done
  CGROUPS=()
}

need() { command -v "$1" >/dev/null 2>&1 || { echo "benches/$BENCH.sh: needs $1 on PATH (apt-get install $2)" >&2; exit 1; }; }

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

wait_http() { # url
  local i
  for i in $(seq 1 200); do
    if curl -fsS --noproxy '*' -o /dev/null --max-time 1 "$1" 2>/dev/null; then return 0; fi
    sleep 0.05
  done
  echo "benches/$BENCH.sh: $1 did not answer" >&2
  return 1
}

# Sets WEFT: WEFT_BIN if given, else a build with PROFILE (release by default: what operators run;
# PROFILE=quick-release builds faster).
weft_binary() {
  if [ -n "${WEFT_BIN:-}" ]; then
    WEFT="$WEFT_BIN"
  else
    PROFILE="${PROFILE:-release}"
    echo "building weft (cargo build --profile $PROFILE) ..." >&2
    (cd "$ROOT" && cargo build --quiet --profile "$PROFILE" --bin weft)
    WEFT="$ROOT/target/$PROFILE/weft"
  fi
}

# HAProxy in front of 127.0.0.1:$1 (one thread, keep-alive both sides, connection reuse), pinned
# like the proxy under test (PROXY_CPU); sets HAPROXY_PORT and HAPROXY_PID. $2 is appended to the
# bind and server lines (` proto h2` for HTTP/2 on both sides).
start_haproxy() { # backend-port [bind/server options]
  HAPROXY_PORT="$(free_port)"
  cat >"$TMP/haproxy.cfg" <<CONF
global
  nbthread 1
  maxconn 4000
defaults
  mode http
  timeout connect 1s
  timeout client 30s
  timeout server 30s
  option http-keep-alive
  http-reuse always
frontend fe
  bind 127.0.0.1:$HAPROXY_PORT${2:-}
  default_backend be
backend be
  server s1 127.0.0.1:$1${2:-}
CONF
  # HAPROXY_WRAP: a command to run HAProxy under (instructions.sh: valgrind).
  "${PROXY_CPU[@]}" ${HAPROXY_WRAP[@]+"${HAPROXY_WRAP[@]}"} haproxy -db -f "$TMP/haproxy.cfg" >"$TMP/haproxy.log" 2>&1 &
  HAPROXY_PID=$!
  PIDS+=($HAPROXY_PID)
}

# Samples a process's resident memory every 0.2 s while a command runs; after it, prints
# "max_VmRSS_kB VmHWM_kB" (the largest sample, and the kernel's high-water mark at the end) to the
# file given. The command's own exit status is returned.
rss_while() { # pid out-file command...
  local pid="$1" out="$2" max=0 v rc
  shift 2
  "$@" &
  local cmd=$!
  while kill -0 "$cmd" 2>/dev/null; do
    v="$(awk '/^VmRSS/ {print $2}' "/proc/$pid/status" 2>/dev/null || echo 0)"
    [ "${v:-0}" -gt "$max" ] && max="$v"
    sleep 0.2
  done
  wait "$cmd" && rc=0 || rc=$?
  echo "$max $(awk '/^VmHWM/ {print $2}' "/proc/$pid/status" 2>/dev/null || echo 0)" >"$out"
  return "$rc"
}

# An nginx config with one worker and every temp path inside DIR; the http block's own lines follow
# (and, optionally, more lines for the main context, e.g. "master_process off;").
nginx_conf() { # dir http-block-lines [main-lines]
  local dir="$1" body="$2" main="${3:-}"
  mkdir -p "$dir"
  cat >"$dir/nginx.conf" <<CONF
$main
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

# One line about the machine's other load: the load average and any compiler running (a benchmark
# measured next to a build measures the build). Printed at the start and the end of a run.
machine_note() {
  local busy
  busy="$( (pgrep -x 'cargo|rustc|cc1|cc1plus|ld|ld.lld|mold' 2>/dev/null || true) | wc -l)"
  echo "machine: load average $(cut -d' ' -f1-3 /proc/loadavg), $busy compiler/linker processes running$([ "$busy" -gt 0 ] && echo ' (figures are not quiet-machine figures)')"
}

# The backend every benchmark proxies to: nginx, one worker, a fixed 33-byte body, keep-alive,
# on the load side's core (LOAD_CPU). $1: options for its `listen` (` http2` for h2c); $2: more
# http-block lines. Sets BACKEND_PORT and BACKEND_PID.
start_backend() { # [listen-options] [http-lines]
  BACKEND_PORT="$(free_port)"
  nginx_conf "$TMP/backend" "
  keepalive_timeout 300s;
  ${2:-}
  server {
    listen 127.0.0.1:$BACKEND_PORT${1:-};
    location / { default_type text/plain; return 200 \"hello from the benchmark backend\\n\"; }
  }"
  "${LOAD_CPU[@]}" nginx -p "$TMP/backend" -e "$TMP/backend/error.log" -c "$TMP/backend/nginx.conf" &
  BACKEND_PID=$!
  PIDS+=($BACKEND_PID)
}

# A weft config: node $1 with its admin API at $2, the `[dns]` line $3 (a `listen = ...` or
# `enabled = false`), VIPs from $4, and the benchmark service ($5: its protocol) with the backend
# as its one endpoint.
bench_weft_toml() { # name admin-addr dns-line vip-cidr protocol [service-extra-lines]
  cat <<CONF
[node]
name = "$1"
data_dir = "$TMP/$1-data"

[admin]
listen = "$2"

[dns]
$3
vip_cidr = "$4"

$(bench_service_toml "$5" "${6:-}")

[[endpoint]]
namespace = "bench.internal"
service = "backend"
id = "nginx-1"
address = "127.0.0.1:$BACKEND_PORT"
CONF
}

# The benchmarks' one service: namespace bench.internal, service `backend`, alias
# backend.bench:8080. Extra lines (an `lb = ...`, `[service.*]` tables) follow the service.
bench_service_toml() { # protocol [extra-lines]
  cat <<CONF
[[namespace]]
name = "bench.internal"

[[service]]
namespace = "bench.internal"
name = "backend"
protocol = "$1"
aliases = [{ dns_name = "backend.bench", port = 8080 }]
${2:-}
CONF
}

# The VIP of backend.bench on the weft node whose admin API is at $1, once its route has at least
# $2 healthy endpoints; waits up to 30 s, prints nothing (and returns 1) if that never happens.
healthy_vip() { # admin-addr min-healthy [dns-name, backend.bench by default]
  local v i
  for i in $(seq 1 300); do
    v="$(curl -fsS --noproxy '*' --max-time 2 "http://$1/v1/routes" 2>/dev/null | python3 -c '
import json, sys
for r in json.load(sys.stdin):
    if r.get("dns_name") == sys.argv[2] and (r.get("healthy_endpoints") or 0) >= int(sys.argv[1]):
        print(r["vip"].split(":")[0]); break' "$2" "${3:-backend.bench}" 2>/dev/null || true)"
    [ -n "$v" ] && { echo "$v"; return 0; }
    sleep 0.1
  done
  return 1
}

# A mesh node's config on loopback, written to $TMP/$1/weft.toml: node $1 in mode $2, admin API
# on 127.0.0.1:$3, VIPs from $4, gossip on $5 joining the seeds $6 (a TOML list body, e.g.
# `"127.0.3.1:7946"`), DNS off, certificates from $TMP/ca and $TMP/certs (`weft ca init --dir
# $TMP/ca`, `weft ca issue --dir $TMP/ca --node NAME --out $TMP/certs`).
mesh_node_toml() { # name mode admin-port vip-cidr gossip-addr seeds
  mkdir -p "$TMP/$1"
  cat >"$TMP/$1/weft.toml" <<CONF
[node]
name = "$1"
mode = "$2"
data_dir = "$TMP/$1/data"

[admin]
listen = "127.0.0.1:$3"

[dns]
enabled = false
vip_cidr = "$4"

[tls]
ca = "$TMP/ca/ca.pem"
cert = "$TMP/certs/$1.pem"
key = "$TMP/certs/$1-key.pem"

[gossip]
listen = "$5"
join = [$6]
CONF
}

# CPU time (utime + stime, in clock ticks) a process has used so far.
ticks() { awk '{print $14 + $15}' "/proc/$1/stat" 2>/dev/null || echo 0; }
HZ="$(getconf CLK_TCK)"

# Interleaved rounds of the same load against several weft nodes, for throughput per busy core:
# a 2 s warm-up each, then ROUNDS rounds of `wrk -t1 -cCONNS -dDURATION` on each node (LOAD_CPU
# pinning; even rounds in reverse order, so no node always goes first). Reads the nodes' PID[name]
# and VIP[name] (port 8080) and WRK_ARGS (more wrk arguments, e.g. `-s script.lua`); writes
# $TMP/wrk-NAME-ROUND.txt and $TMP/cpu-NAME-ROUND.txt (the CPU ticks the node used in the round).
# With LOAD_PROTO=h2 the load is `h2load -t1 -cCONNS -mSTREAMS` (h2c prior knowledge) instead.
load_once() { # url duration(e.g. 10s)
  if [ "${LOAD_PROTO:-http1}" = h2 ]; then
    "${LOAD_CPU[@]}" h2load -t1 -c"$CONNS" -m"${STREAMS:-10}" -D "${2%s}" "$1"
  else
    "${LOAD_CPU[@]}" wrk -t1 -c"$CONNS" -d"$2" ${WRK_ARGS[@]+"${WRK_ARGS[@]}"} "$1"
  fi
}

interleaved_rounds() { # name...
  local names=("$@") order=() name round i t0 t1
  for name in "${names[@]}"; do
    load_once "http://${VIP[$name]}:8080/" 2s >/dev/null
  done
  for round in $(seq 1 "$ROUNDS"); do
    order=("${names[@]}")
    if [ $((round % 2)) -eq 0 ]; then
      order=()
      for ((i = ${#names[@]} - 1; i >= 0; i--)); do order+=("${names[$i]}"); done
    fi
    for name in "${order[@]}"; do
      t0="$(ticks "${PID[$name]}")"
      load_once "http://${VIP[$name]}:8080/" "$DURATION" >"$TMP/wrk-$name-$round.txt"
      t1="$(ticks "${PID[$name]}")"
      echo "$((t1 - t0))" >"$TMP/cpu-$name-$round.txt"
    done
  done
}

# One round as SLICES short loads per node (`load_once` for SLICE each), the nodes in turn
# slice by slice, so every node is measured across the same stretch of time: on a shared host the
# machine's speed drifts by more than the few percent a comparison looks for within the seconds
# a node's whole round takes (2026-12-07: per-round ratios of 0.87-1.20 between identical
# configurations in 8 s rounds). Writes the same files as interleaved_rounds for round ROUND:
# wrk-NAME-ROUND.txt ("Requests/sec:" over all its slices) and cpu-NAME-ROUND.txt (its ticks).
sliced_round() { # round name...
  local round="$1" name i k t0 t1 out n d; shift
  local names=("$@")
  declare -A REQS=() SECS=() TICKS=()
  for name in "$@"; do
    load_once "http://${VIP[$name]}:8080/" 2s >/dev/null
    REQS[$name]=0; SECS[$name]=0; TICKS[$name]=0
  done
  for ((i = 0; i < SLICES; i++)); do
    # Each pass starts at another node (and rounds start at another one still), so no node
    # always follows the same one: in a fixed order the first service read 2-3 % slower than an
    # identical one (2026-12-07).
    for ((k = 0; k < ${#names[@]}; k++)); do
      name="${names[$(((i + round + k) % ${#names[@]}))]}"
      t0="$(ticks "${PID[$name]}")"
      out="$(load_once "http://${VIP[$name]}:8080/" "$SLICE")"
      t1="$(ticks "${PID[$name]}")"
      read -r n d < <(awk '/requests in/ {sub(",", "", $4); print $1, $4}' <<<"$out")
      REQS[$name]=$((REQS[$name] + n)); SECS[$name]="$(awk -v a="${SECS[$name]}" -v b="$d" 'BEGIN {u = b ~ /ms$/ ? 0.001 : 1; sub(/m?s$/, "", b); print a + b * u}')"
      TICKS[$name]=$((TICKS[$name] + t1 - t0))
    done
  done
  for name in "$@"; do
    awk -v n="${REQS[$name]}" -v s="${SECS[$name]}" 'BEGIN {printf "%d requests in %.2fs\nRequests/sec: %.2f\n", n, s, n / s}' >"$TMP/wrk-$name-$round.txt"
    echo "${TICKS[$name]}" >"$TMP/cpu-$name-$round.txt"
  done
}

# A proxy under callgrind, for instructions per request (the figure that does not move with the
# machine's other load): prefix its command with CALLGRIND and --callgrind-out-file=FILE.
CALLGRIND=(valgrind --tool=callgrind --compress-strings=no --compress-pos=no)

# Instructions per request of a process under callgrind writing FILE.*: a 3 s wrk warm-up,
# counters zeroed, `wrk -t1 -cCONNS -dDURATION` (WRK_ARGS), counters dumped. Prints
# "NAME requests instructions".
callgrind_measure() { # name callgrind-out-file url pid
  local name="$1" file="$2" url="$3" pid="$4" out n ir f
  "${LOAD_CPU[@]}" wrk -t1 -c"$CONNS" -d3s ${WRK_ARGS[@]+"${WRK_ARGS[@]}"} "$url" >/dev/null
  callgrind_control -z "$pid" >/dev/null 2>&1
  out="$("${LOAD_CPU[@]}" wrk -t1 -c"$CONNS" -d"$DURATION" ${WRK_ARGS[@]+"${WRK_ARGS[@]}"} "$url")"
  callgrind_control -d "$pid" >/dev/null 2>&1
  n="$(awk '/requests in/ {print $1}' <<<"$out")"
  sleep 1
  f="$(ls -t "$file".* | head -1)"
  ir="$(callgrind_annotate "$f" 2>/dev/null | awk '/PROGRAM TOTALS/ {gsub(",", "", $1); print $1}')"
  echo "$name $n $ir"
}
