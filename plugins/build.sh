#!/usr/bin/env bash
# Builds the example plugins into components and prints their sizes:
#   plugins/target/wasm32-wasip2/release/{canary_router,retry_policy,version_picker}.wasm
# CI (.ci/run) runs it before `cargo test`; the plugin tests load those files, so run it before
# running them yourself. The output path does not depend on CARGO_TARGET_DIR.
set -euo pipefail
cd "$(dirname "$0")"
if command -v rustup >/dev/null 2>&1; then
  rustup target list --installed | grep -qx wasm32-wasip2 || rustup target add wasm32-wasip2
fi
start=$(date +%s)
cargo build --target wasm32-wasip2 --release --locked --target-dir "$PWD/target"
echo "plugins built in $(($(date +%s) - start)) s:"
for f in target/wasm32-wasip2/release/*.wasm; do
  printf '  plugins/%-50s %8d bytes\n' "$f" "$(stat -c %s "$f")"
done
