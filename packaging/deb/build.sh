#!/usr/bin/env bash
# Builds weft's Debian package: the binary (PROFILE, default release), its man page and shell
# completions generated from the binary itself, then `cargo deb` with the metadata in
# Cargo.toml ([package.metadata.deb]). Prints the .deb's path last.
#
#   bash packaging/deb/build.sh                   # needs cargo-deb (cargo install cargo-deb --locked)
#   PROFILE=quick-release bash packaging/deb/build.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
PROFILE="${PROFILE:-release}"
command -v cargo-deb >/dev/null || { echo "packaging/deb/build.sh: needs cargo-deb (cargo install cargo-deb --locked)" >&2; exit 1; }

cargo build --locked --profile "$PROFILE" --bin weft >&2
bin="target/$PROFILE/weft"
assets=target/deb-assets
rm -rf "$assets" && mkdir -p "$assets"
"$bin" man | gzip -9n > "$assets/weft.1.gz"
"$bin" completions bash > "$assets/weft.bash"
"$bin" completions zsh > "$assets/_weft"
"$bin" completions fish > "$assets/weft.fish"
cargo deb --no-build --profile "$PROFILE" --locked --output target/debian/ >&2
ls -t target/debian/weft_*.deb | head -1
