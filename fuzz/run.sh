#!/usr/bin/env bash
# Builds the fuzz targets and runs each for a bounded time from its committed seeds
# (fuzz/corpus/<target>, copied to a temp dir so a run leaves the tree as it was). Fails on the
# first crash, timeout or out-of-memory, printing the end of libFuzzer's log; the input that did
# it is kept as fuzz/artifacts/<target>/crash-* (reproduce: RELIABILITY.md).
#
#   bash fuzz/run.sh [SECONDS] [TARGET...]     # default: 30 s each, every target
#
# FUZZ_TOOLCHAIN picks the toolchain (default nightly). Without a sanitizer cargo fuzz needs no
# nightly flag, so `stable` builds the same targets where no nightly can be installed.
set -euo pipefail
cd "$(dirname "$0")"

secs="${1:-30}"
shift || true
# One build for the bounded runs and the long ones in RELIABILITY.md: optimised, overflow checks
# and debug assertions on (an overflow is a bug to find), no AddressSanitizer (weft has no
# unsafe code; without ASan the targets run about twice as fast).
flags=(-O -a -s none)
tc="${FUZZ_TOOLCHAIN:-nightly}"
cargo "+$tc" fuzz build "${flags[@]}"
bin="target/x86_64-unknown-linux-gnu/release"

if [ "$#" -gt 0 ]; then targets=("$@"); else mapfile -t targets < <(cargo "+$tc" fuzz list); fi
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
for t in "${targets[@]}"; do
  mkdir -p "$work/$t" "artifacts/$t"
  cp -R "corpus/$t/." "$work/$t/"
  echo "== fuzz $t: ${secs}s from $(ls "corpus/$t" | wc -l) seeds"
  # -timeout: one input taking 10 s is a hang; -rss_limit_mb: libFuzzer's default, stated.
  if ! "$bin/$t" "$work/$t" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 \
      -artifact_prefix="artifacts/$t/" -print_final_stats=1 >"$work/$t.log" 2>&1; then
    tail -n 60 "$work/$t.log"
    echo "FAILED: fuzz target $t found a crash; input in fuzz/artifacts/$t/" >&2
    exit 1
  fi
  # The final figures: executions, their rate, and coverage.
  grep -E '^#[0-9]+ +DONE|^stat::(number_of_executed_units|average_exec_per_sec|peak_rss_mb)' "$work/$t.log" | tr '\n' ' '
  echo
done
echo "fuzz: ${#targets[@]} targets ran ${secs}s each without a crash"
