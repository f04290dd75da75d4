#!/usr/bin/env bash
# Proxy-client benchmark: 1 KiB HTTPS GETs through `tunnelkit proxy` (CONNECT), in one run:
# tunnelkit::client with persistent tunnels, the same with a fresh tunnel per request, Node's
# https-proxy-agent with keepAlive, and curl reusing one tunnel. Not a test.
# Usage: bench/client/run.sh [REQUESTS]   (default 2000)
set -euo pipefail
cd "$(dirname "$0")/../.."
N="${1:-2000}"
command -v curl >/dev/null || { apt-get update -qq && apt-get install -y -qq curl >/dev/null; }
[ -d tests/node/client/node_modules/https-proxy-agent ] || (cd tests/node/client && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error)
cargo build --release --quiet --bin tunnelkit --example bench_client
TK=target/release/tunnelkit; BC=target/release/examples/bench_client
work=$(mktemp -d); pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT
first_addr() { # $1 = file; waits for "listening on ADDR"
  for _ in $(seq 100); do grep -m1 -o 'listening on [0-9.:]*' "$1" 2>/dev/null | cut -d' ' -f3 && return 0; sleep 0.1; done; return 1
}
$BC origin "$work/ca.pem" > "$work/origin.out" & pids+=($!)
ORIGIN=$(first_addr "$work/origin.out"); OPORT=${ORIGIN##*:}
$TK proxy --listen 127.0.0.1:0 --allow 127.0.0.0/8 --connect-ports 1-65535 --access-log "$work/access.log" 2> "$work/proxy.err" & pids+=($!)
PROXY=$(first_addr "$work/proxy.err")
URL="https://localhost:$OPORT/"
connects() { grep -c ' CONNECT ' "$work/access.log" 2>/dev/null || true; }
per1000() { awk -v c="$1" -v n="$2" 'BEGIN {printf "%.1f", c*1000/n}'; }

c0=$(connects); keep=$($BC run "http://$PROXY" "$URL" "$N" "$work/ca.pem"); sleep 0.5; c_keep=$(( $(connects) - c0 ))
NF=$(( N / 4 ))
c0=$(connects); fresh=$($BC run "http://$PROXY" "$URL" "$NF" "$work/ca.pem" fresh); sleep 0.5; c_fresh=$(( $(connects) - c0 ))
c0=$(connects)
start=$(date +%s.%N)
(cd tests/node/client && node agent.js http "http://$PROXY" "$URL" "$N" "$work/ca.pem") > "$work/node.out"
end=$(date +%s.%N); sleep 0.5; c_node=$(( $(connects) - c0 ))
node=$(awk -v n="$N" -v s="$start" -v e="$end" 'BEGIN {printf "%.0f", n/(e-s)}')
for i in $(seq "$N"); do echo "url = \"$URL\""; echo "output = \"/dev/null\""; done > "$work/curl.cfg"
c0=$(connects)
start=$(date +%s.%N)
curl -s -p -x "http://$PROXY" --cacert "$work/ca.pem" -K "$work/curl.cfg"
end=$(date +%s.%N); sleep 0.5; c_curl=$(( $(connects) - c0 ))
curlr=$(awk -v n="$N" -v s="$start" -v e="$end" 'BEGIN {printf "%.0f", n/(e-s)}')

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b+0 == 0) print "n/a"; else printf "%.2f", a/b }'; }
mkdir -p bench/results
out="bench/results/client-$(date -u +%Y-%m-%d).md"
{
  echo "# Proxy client benchmark ($(date -u +%Y-%m-%d))"
  echo
  echo "Machine: $(nproc) cores, $(awk -F: '/model name/ {print $2; exit}' /proc/cpuinfo | xargs), kernel $(uname -r)."
  echo "Versions: $($TK --version), node $(node --version), $(curl --version | head -1 | cut -d' ' -f1-2)."
  echo
  echo "Sequential 1 KiB HTTPS GETs through \`tunnelkit proxy\` (CONNECT) to an in-process rustls origin, all on 127.0.0.1."
  echo
  echo "| client | requests | requests/s | CONNECTs per 1000 requests | tunnelkit persistent vs it |"
  echo "|---|---|---|---|---|"
  echo "| tunnelkit::client, persistent tunnels | $N | $keep | $(per1000 "$c_keep" "$N") | 1.00 |"
  echo "| tunnelkit::client, fresh tunnel per request | $NF | $fresh | $(per1000 "$c_fresh" "$NF") | $(ratio "$keep" "$fresh")x |"
  echo "| node https-proxy-agent, keepAlive | $N | $node | $(per1000 "$c_node" "$N") | $(ratio "$keep" "$node")x |"
  echo "| curl, one process reusing one tunnel | $N | $curlr | $(per1000 "$c_curl" "$N") | $(ratio "$keep" "$curlr")x |"
  echo
  echo "Goals (issue 3): >= 5x the fresh-tunnel rate, >= 3x the node agent's rate."
  echo "Node's rate includes its start-up (about 50 ms). Command: \`bench/client/run.sh $N\`."
} | tee "$out"
