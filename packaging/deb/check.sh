#!/usr/bin/env bash
# Installs weft's .deb on this machine (root), checks what it put where, runs the unit's own
# ExecStartPre and ExecStart lines the way systemd would (as the unit's user, with a
# NOTIFY_SOCKET: CI has no systemd), waits for READY=1 and the admin API, stops it with SIGTERM
# (STOPPING=1, clean exit), then removes and purges the package and checks nothing is left.
#
#   bash packaging/deb/check.sh target/debian/weft_*.deb
set -euo pipefail
deb="${1:?usage: packaging/deb/check.sh PACKAGE.deb}"
[ "$(id -u)" -eq 0 ] || { echo "packaging/deb/check.sh: must run as root (dpkg -i)" >&2; exit 1; }
fail() { echo "packaging/deb/check.sh: $*" >&2; exit 1; }
tmp="$(mktemp -d)"
pid=""
cleanup() {
  [ -n "$pid" ] && kill "$pid" 2>/dev/null || true
  [ -n "${listener:-}" ] && kill "$listener" 2>/dev/null || true
  rm -rf "$tmp"
}
trap cleanup EXIT

echo "== install"
dpkg -i "$deb"
unit=/lib/systemd/system/weft.service
for f in /usr/bin/weft "$unit" /etc/weft/weft.toml /usr/share/man/man1/weft.1.gz \
  /usr/share/bash-completion/completions/weft /usr/share/zsh/vendor-completions/_weft \
  /usr/share/fish/vendor_completions.d/weft.fish /usr/share/doc/weft/copyright; do
  [ -e "$f" ] || fail "$f is missing"
done
getent passwd weft >/dev/null || fail "no weft user"
[ "$(stat -c %U:%G /var/lib/weft)" = "weft:weft" ] || fail "/var/lib/weft is $(stat -c %U:%G /var/lib/weft), not weft:weft"
dpkg-query -W -f='${Conffiles}\n' weft | grep -q '/etc/weft/weft.toml' || fail "/etc/weft/weft.toml is not a conffile"
man -l /usr/share/man/man1/weft.1.gz 2>/dev/null | grep -q "weft - Service-connect mesh" || fail "the man page does not render"
MANPATH=/usr/share/man man weft >/dev/null 2>&1 || fail "man weft fails"
bash -c 'source /usr/share/bash-completion/completions/weft && complete -p weft' >/dev/null || fail "bash completions do not load"
weft --version

echo "== run the unit's ExecStartPre and ExecStart as its user"
user="$(sed -n 's/^User=//p' "$unit")"
pre="$(sed -n 's/^ExecStartPre=//p' "$unit")"
start="$(sed -n 's/^ExecStart=//p' "$unit")"
[ "$user" = weft ] && [ -n "$pre" ] && [ -n "$start" ] || fail "unexpected unit: User=$user ExecStartPre=$pre ExecStart=$start"
runuser -u "$user" -- $pre
sock="$tmp/notify.sock"
python3 - "$sock" >"$tmp/notify.log" <<'PY' &
import os, socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(sys.argv[1])
os.chmod(sys.argv[1], 0o777)
while True:
    print(s.recv(4096).decode().replace("\n", " "), flush=True)
PY
listener=$!
for _ in $(seq 1 50); do [ -S "$sock" ] && break; sleep 0.1; done
chmod 755 "$tmp"
runuser -u "$user" -- env NOTIFY_SOCKET="$sock" $start >"$tmp/weft.log" 2>&1 &
pid=$!
for _ in $(seq 1 300); do grep -q "READY=1" "$tmp/notify.log" && break; sleep 0.1; done
grep -q "READY=1" "$tmp/notify.log" || { cat "$tmp/weft.log" >&2; fail "no READY=1 within 30 s"; }
curl -fsS --noproxy '*' http://127.0.0.1:9901/v1/status >/dev/null || fail "the admin API does not answer"
[ "$(ps -o user= -p "$(pgrep -u weft -x weft | head -1)")" = weft ] || fail "weft does not run as the weft user"
kill -TERM "$(pgrep -u weft -x weft | head -1)"
wait "$pid" || { cat "$tmp/weft.log" >&2; fail "weft exited with an error after SIGTERM"; }
pid=""
grep -q "STOPPING=1" "$tmp/notify.log" || fail "no STOPPING=1"
grep -q "weft stopped" "$tmp/weft.log" || fail "no clean stop in the log"
[ -e /var/lib/weft/weft.redb ] || fail "no catalog in /var/lib/weft"

echo "== remove, then purge"
dpkg -r weft
[ ! -e /usr/bin/weft ] || fail "/usr/bin/weft left after remove"
[ -e /etc/weft/weft.toml ] || fail "the conffile must survive a remove"
dpkg -P weft
[ ! -e /etc/weft/weft.toml ] || fail "/etc/weft/weft.toml left after purge"
[ ! -e /var/lib/weft ] || fail "/var/lib/weft left after purge"
echo "packaging/deb/check.sh: the package installs, runs as its unit would, and purges cleanly"
