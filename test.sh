#!/usr/bin/env bash
# The one test command: installs what the tests need when it is missing, then runs `cargo test`.
#
#   ./test.sh              # everything
#   ./test.sh --test proxy # extra arguments go to cargo test
#
# Needs: apt (Debian packages listed in tests/apt-packages.txt), node + npm (packages of each
# tests/node/*/package.json). Tests start their own servers (origins, Redis, Socket.IO backends) on
# ephemeral loopback ports and stop them when done.
set -euo pipefail
cd "$(dirname "$0")"

missing=()
while read -r pkg; do
  pkg="${pkg%%#*}"; pkg="${pkg// /}"
  [ -n "$pkg" ] || continue
  dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
done < tests/apt-packages.txt
if [ "${#missing[@]}" -gt 0 ]; then
  echo "test.sh: installing Debian packages: ${missing[*]}"
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# Daemons from apt must not keep running as services: the tests start their own instances.
for svc in redis-server tinyproxy squid haproxy nginx; do
  if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet "$svc" 2>/dev/null; then
    systemctl stop "$svc" >/dev/null 2>&1 || true
  fi
done

for dir in tests/node/*/; do
  [ -f "$dir/package.json" ] || continue
  stamp="$dir/node_modules/.tunnelkit-stamp"
  if [ ! -f "$stamp" ] || [ "$dir/package.json" -nt "$stamp" ] || { [ -f "$dir/package-lock.json" ] && [ "$dir/package-lock.json" -nt "$stamp" ]; }; then
    echo "test.sh: installing npm packages in $dir"
    if [ -f "$dir/package-lock.json" ]; then
      (cd "$dir" && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error)
    else
      (cd "$dir" && npm install --ignore-scripts --no-audit --no-fund --loglevel=error)
    fi
    touch "$stamp"
  fi
done

exec cargo test "$@"
