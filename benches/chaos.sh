#!/usr/bin/env bash
# Chaos soak (issue 16 item 6): five weft nodes in network namespaces (two registries, three
# proxies with endpoints), 100 clients over HTTP/1.1, HTTP/2 and TCP, and every 10 s a random node
# killed (SIGKILL), frozen (SIGSTOP) or cut off (link down) for 5-15 s. Prints one table of figures:
# failed idempotent / non-idempotent requests, requests executed twice or after their caller gave
# up, registrations lost, false down declarations of live nodes, convergence after each heal, peak
# RSS per node.
#
#   sudo bash benches/chaos.sh            # 600 s (10 minutes)
#   sudo bash benches/chaos.sh 120        # the length CI runs (tests/chaos.rs)
#   WEFT_CHAOS_SEED=42 sudo bash benches/chaos.sh   # the same fault schedule again
#
# One implementation: this runs tests/chaos.rs (the harness and its analysis) with
# WEFT_CHAOS_SECS set, built with the quick-release profile (release code without fat LTO). Other
# knobs, all read by tests/chaos.rs: WEFT_CHAOS_EVERY_S (10), WEFT_CHAOS_FAULT_MIN_S (5),
# WEFT_CHAOS_FAULT_MAX_S (15), WEFT_CHAOS_CLIENTS (100), WEFT_CHAOS_RATE (200 req/s in all),
# WEFT_CHAOS_HEAL_GRACE_S (5), WEFT_CHAOS_CLIENT_TIMEOUT_S (20), WEFT_CHAOS_OUT (where the details
# go: every fault, false declaration, late or doubled request, failed request, the weft logs).
#
# Needs root (ip netns), nginx (Debian: nginx-light) and python3. Exits non-zero when a goal is
# missed (the table is printed either way).
set -euo pipefail
cd "$(dirname "$0")/.."

secs="${1:-${WEFT_CHAOS_SECS:-600}}"
profile="${PROFILE:-quick-release}"   # PROFILE=dev: the debug build the test suite uses (no extra build)
[ "$(id -u)" = 0 ] || { echo "benches/chaos.sh needs root (network namespaces)" >&2; exit 1; }
for p in nginx python3 ip; do
  command -v "$p" >/dev/null || { echo "benches/chaos.sh needs $p on PATH" >&2; exit 1; }
done
export WEFT_CHAOS_OUT="${WEFT_CHAOS_OUT:-$PWD/target/chaos-bench}"

echo "== building (profile $profile)" >&2
nice -n 19 cargo test --profile "$profile" --test chaos --no-run >&2
echo "== soak: $secs s; details in $WEFT_CHAOS_OUT" >&2
WEFT_CHAOS_SECS="$secs" cargo test --profile "$profile" --test chaos -- --nocapture --test-threads 1
