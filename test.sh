#!/usr/bin/env bash
# The one test command: installs what the tests need when it is missing, then runs `cargo test`.
# It never stops or reconfigures services already running on this machine.
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
  echo "test.sh: installing Debian packages the tests need (apt-get install --no-install-recommends): ${missing[*]}"
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# Services the user runs (a system redis-server, nginx...) are left alone: every test starts its own
# instances on ports of its own and never needs the system ones stopped.

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

# --no-fail-fast: one failing test target must not hide the results of the others.
if [ "$#" -gt 0 ]; then
  exec cargo test --no-fail-fast "$@"
fi
status=0
cargo test --no-fail-fast || status=$?
# The relay splices plain sockets by default: the suites that relay tunnels run again with the
# buffered copy only (TUNNELKIT_NO_SPLICE is --no-splice for proxy and forward), so both
# strategies pass the same tests.
echo "test.sh: again with TUNNELKIT_NO_SPLICE=1 (the relay's buffered copy)"
TUNNELKIT_NO_SPLICE=1 cargo test --no-fail-fast --test proxy --test proxy_hardening \
  --test proxy_tls --test client --test client_kinds --test client_pool --test cli_errors || status=$?
exit "$status"
