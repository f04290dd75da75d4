#!/usr/bin/env bash
# HTTPS interception benchmark: tunnelkit proxy --intercept vs mitmdump (no addons), against nginx over
# TLS on loopback, with a direct TLS connection to nginx as the physical limit, all in one run.
# Not a test. Usage: bench/intercept/run.sh [SECONDS_PER_RUN] [ROUNDS]   (defaults 5 and 3)
# Writes bench/results/intercept-<date>.md and prints the same table.
#
# Rows (medians of ROUNDS rotated rounds):
#   - GETs per second on one kept-alive intercepted connection, and over 50 connections;
#   - time to the first byte of a new connection whose SNI the proxy never saw (a certificate to make)
#     against one it has cached, and the difference;
#   - RSS of each proxy after it recorded 1000+ flows (tunnelkit with --inspect; mitmdump keeps flows too).
# Both proxies skip origin verification (--insecure-upstream, ssl_insecure) so neither pays for it alone.
set -euo pipefail
cd "$(dirname "$0")/../.."
SECS="${1:-5}"; ROUNDS="${2:-3}"
need=()
for t in nginx:nginx mitmdump:mitmproxy openssl:openssl; do
  command -v "${t%%:*}" >/dev/null 2>&1 || need+=("${t##*:}")
done
if [ "${#need[@]}" -gt 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null; fi
cargo build --release --quiet --bin tunnelkit --example bench_intercept
TK=target/release/tunnelkit; BI=target/release/examples/bench_intercept
work=$(mktemp -d); chmod 755 "$work"; pids=()  # nginx workers (not root) must read www/
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT
port() { python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 200); do (exec 3<>/dev/tcp/127.0.0.1/"$1") 2>/dev/null && return 0; sleep 0.1; done; echo "port $1 never opened" >&2; return 1; }
rss_kib() { awk '/VmRSS/ {print $2}' "/proc/$1/status"; }

# Origin: nginx over TLS with a self-signed P-256 certificate for *.bench.test, serving 1 KiB.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj /CN=bench.test \
  -addext "subjectAltName=DNS:bench.test,DNS:*.bench.test" -addext "basicConstraints=critical,CA:FALSE" -keyout "$work/origin.key" -out "$work/origin.pem" 2>/dev/null
ORIGIN=$(port); mkdir -p "$work/www"; head -c 1024 /dev/zero | tr '\0' x > "$work/www/1k"
cat > "$work/nginx.conf" <<CONF
worker_processes 1; daemon off; pid $work/nginx.pid; error_log $work/nginx.err;
events { worker_connections 4096; }
http { access_log off; keepalive_requests 1000000;
  server { listen 127.0.0.1:$ORIGIN ssl; ssl_certificate $work/origin.pem; ssl_certificate_key $work/origin.key;
           root $work/www; } }
CONF
nginx -c "$work/nginx.conf" & pids+=($!)

TKP=$(port); INS=$(port)
$TK proxy --listen 127.0.0.1:$TKP --allow 127.0.0.0/8 --connect-ports 1-65535 --intercept --insecure-upstream \
  --ca-dir "$work/tkca" --inspect 127.0.0.1:$INS 2>"$work/tk.err" & TKPID=$!; pids+=($TKPID)
MIP=$(port)
HOME="$work" mitmdump -q --listen-host 127.0.0.1 --listen-port "$MIP" --set confdir="$work/mitm" \
  --set ssl_insecure=true >/dev/null 2>&1 & MIPID=$!; pids+=($MIPID)
for p in $ORIGIN $TKP $MIP; do wait_port "$p"; done
for _ in $(seq 100); do [ -f "$work/mitm/mitmproxy-ca-cert.pem" ] && break; sleep 0.1; done
TKCA="$work/tkca/ca.pem"; MICA="$work/mitm/mitmproxy-ca-cert.pem"; T="127.0.0.1:$ORIGIN"

declare -A one many fresh warm
names=(direct tunnelkit mitmdump)
args_of() { case "$1" in direct) echo "direct $work/origin.pem";; tunnelkit) echo "127.0.0.1:$TKP $TKCA";; mitmdump) echo "127.0.0.1:$MIP $MICA";; esac; }
for r in $(seq "$ROUNDS"); do
  # Rotate the order each round so no one always runs first (or on a warmer machine).
  order=("${names[@]:$(( (r-1) % 3 ))}" "${names[@]:0:$(( (r-1) % 3 ))}")
  for n in "${order[@]}"; do
    read -r px ca <<<"$(args_of "$n")"
    one[$n]+="$($BI rate "$px" "$ca" "$T" bench.test 1 "$SECS" /1k) "
    many[$n]+="$($BI rate "$px" "$ca" "$T" bench.test 50 "$SECS" /1k) "
    if [ "$n" != direct ]; then
      read -r f w <<<"$($BI newhost "$px" "$ca" "$T" 30 /1k)"
      fresh[$n]+="$f "; warm[$n]+="$w "
    fi
  done
done
med() { tr ' ' '\n' <<<"$1" | grep -v '^$' | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2f", a/b}'; }
tk_rss=$(rss_kib $TKPID); mi_rss=$(rss_kib $MIPID)
flows=$(curl -s "http://127.0.0.1:$INS/api/flows" | python3 -c 'import json,sys; print(len(json.load(sys.stdin)))' 2>/dev/null || echo "?")

out="bench/results/intercept-$(date +%F).md"
{
  echo "# Interception benchmark, $(date +%F)"
  echo
  echo "\`bench/intercept/run.sh $SECS $ROUNDS\` on $(nproc) cores: medians of $ROUNDS rotated rounds of ${SECS} s; nginx over TLS (1 KiB body) as origin; $(mitmdump --version 2>/dev/null | head -1)."
  echo
  echo "| path | 1 connection req/s | 50 connections req/s | new host TTFB ms | cached host TTFB ms | new host extra ms |"
  echo "|---|---|---|---|---|---|"
  for n in "${names[@]}"; do
    o=$(med "${one[$n]}"); m=$(med "${many[$n]}")
    if [ "$n" = direct ]; then
      echo "| direct TLS to nginx | $o | $m | - | - | - |"
    else
      f=$(med "${fresh[$n]}"); w=$(med "${warm[$n]}")
      echo "| $n | $o ($(ratio "$o" "$(med "${one[direct]}")")× direct) | $m ($(ratio "$m" "$(med "${many[direct]}")")× direct) | $f | $w | $(awk -v f="$f" -v w="$w" 'BEGIN {printf "%.2f", f-w}') |"
    fi
  done
  echo
  o_tk=$(med "${one[tunnelkit]}"); o_mi=$(med "${one[mitmdump]}"); m_tk=$(med "${many[tunnelkit]}"); m_mi=$(med "${many[mitmdump]}")
  echo "tunnelkit / mitmdump: $(ratio "$o_tk" "$o_mi")× on one connection, $(ratio "$m_tk" "$m_mi")× over 50."
  echo
  echo "RSS after the run: tunnelkit ${tk_rss} KiB with ${flows} flows kept by the inspector (--inspect-flows 1000); mitmdump ${mi_rss} KiB."
} | tee "$out"
