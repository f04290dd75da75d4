#!/usr/bin/env bash
# Forward-proxy benchmark: tunnelkit vs a direct connection, Squid and tinyproxy, in one run.
# Not a test. Usage: bench/proxy/run.sh [SECONDS_PER_RUN]   (default 10)
# Writes bench/results/proxy-<date>.md and prints the same table.
set -euo pipefail
cd "$(dirname "$0")/../.."
SECS="${1:-10}"
# 9000: the sandbox caps open files at 20000 per process and a tunnel costs the proxy two.
TUNNELS="${TUNNELS:-9000}"
need=()
for t in wrk:wrk iperf3:iperf3 squid:squid tinyproxy:tinyproxy nginx:nginx; do
  command -v "${t%%:*}" >/dev/null 2>&1 || need+=("${t##*:}")
done
if [ "${#need[@]}" -gt 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null; fi
cargo build --release --quiet --bin tunnelkit --example bench_proxy
TK=target/release/tunnelkit; BP=target/release/examples/bench_proxy
ulimit -n 65536 || true
work=$(mktemp -d); pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT
port() { python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/"$1") 2>/dev/null && return 0; sleep 0.1; done; echo "port $1 never opened" >&2; return 1; }

# Origin: nginx serving a 1 KiB file.
ORIGIN=$(port); mkdir -p "$work/www"; head -c 1024 /dev/zero | tr '\0' x > "$work/www/1k"
cat > "$work/nginx.conf" <<CONF
worker_processes 1; daemon off; pid $work/nginx.pid; error_log $work/nginx.err;
events { worker_connections 4096; }
http { access_log off; keepalive_requests 1000000;
  server { listen 127.0.0.1:$ORIGIN; root $work/www; } }
CONF
nginx -c "$work/nginx.conf" & pids+=($!)
SINK=$(port); $BP sink 127.0.0.1:$SINK >/dev/null & pids+=($!)

TKP=$(port); $TK proxy --listen 127.0.0.1:$TKP --allow 127.0.0.0/8 --connect-ports 1-65535 --tunnel-idle-timeout 10m 2>/dev/null & TKPID=$!; pids+=($TKPID)
SQP=$(port)
cat > "$work/squid.conf" <<CONF
http_port 127.0.0.1:$SQP
acl all src all
http_access allow all
acl CONNECT method CONNECT
cache deny all
access_log none
cache_log $work/squid-cache.log
pid_filename $work/squid.pid
coredump_dir $work
max_filedescriptors 65536
workers 1
CONF
squid -N -f "$work/squid.conf" 2>/dev/null & SQPID=$!; pids+=($SQPID)
TPP=$(port)
cat > "$work/tinyproxy.conf" <<CONF
Port $TPP
Listen 127.0.0.1
Timeout 600
MaxClients 20000
Allow 127.0.0.1
ConnectPort $SINK
ConnectPort $ORIGIN
LogLevel Critical
PidFile "$work/tinyproxy.pid"
CONF
tinyproxy -d -c "$work/tinyproxy.conf" 2>/dev/null & TPPID=$!; pids+=($TPPID)
for p in $ORIGIN $SINK $TKP $SQP $TPP; do wait_port "$p"; done

cat > "$work/abs.lua" <<LUA
wrk.path = "http://127.0.0.1:$ORIGIN/1k"
LUA
# wrk sends absolute-form when the path is a URL; pointing it at the proxy makes it a proxy client.
run_wrk() { # $1 = url base; $2 = optional lua
  local out
  if [ -n "${2:-}" ]; then out=$(wrk -t2 -c100 -d"${SECS}s" --latency -s "$2" "$1" 2>&1)
  else out=$(wrk -t2 -c100 -d"${SECS}s" --latency "$1" 2>&1); fi
  local rps p99
  rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
  p99=$(awk '$1=="99%" {print $2}' <<<"$out")
  echo "$rps $p99"
}
rss_kib() { awk '/VmRSS/ {print $2}' "/proc/$1/status"; }

echo "measuring GET 1 KiB (wrk -c100 -t2 -d${SECS}s)..." >&2
read -r d_rps d_p99 < <(run_wrk "http://127.0.0.1:$ORIGIN/1k")
read -r t_rps t_p99 < <(run_wrk "http://127.0.0.1:$TKP" "$work/abs.lua")
read -r s_rps s_p99 < <(run_wrk "http://127.0.0.1:$SQP" "$work/abs.lua")
read -r y_rps y_p99 < <(run_wrk "http://127.0.0.1:$TPP" "$work/abs.lua")

echo "measuring CONNECT throughput (${SECS}s each)..." >&2
d_tp=$($BP throughput 127.0.0.1:$SINK "$SECS")
t_tp=$($BP throughput 127.0.0.1:$SINK "$SECS" 127.0.0.1:$TKP)
s_tp=$($BP throughput 127.0.0.1:$SINK "$SECS" 127.0.0.1:$SQP || echo 0)
y_tp=$($BP throughput 127.0.0.1:$SINK "$SECS" 127.0.0.1:$TPP || echo 0)

idle_rss() { # $1 pid, $2 proxy port -> KiB per tunnel
  local before after
  before=$(rss_kib "$1")
  coproc IDLE { $BP idle 127.0.0.1:$SINK "$TUNNELS" 127.0.0.1:$2 2>/dev/null; }
  local ready=""
  read -r -t 120 ready <&"${IDLE[0]}" || true
  if [[ "$ready" != ready* ]]; then echo "n/a (${ready:-timeout})" | tr ' ' '_'; kill "$IDLE_PID" 2>/dev/null || true; return; fi
  sleep 2
  after=$(rss_kib "$1")
  kill "$IDLE_PID" 2>/dev/null; wait "$IDLE_PID" 2>/dev/null || true
  awk -v a="$after" -v b="$before" -v n="$TUNNELS" 'BEGIN {printf "%.1f", (a-b)/n}'
}
echo "measuring RSS per idle tunnel ($TUNNELS tunnels)..." >&2
t_rss=$(idle_rss $TKPID $TKP)
sleep 1
s_rss=$(idle_rss $SQPID $SQP)
sleep 1
y_rss=$(idle_rss $TPPID $TPP)

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b+0 == 0) print "n/a"; else printf "%.2f", a/b }'; }
date_tag=$(date -u +%Y-%m-%d)
mkdir -p bench/results
out="bench/results/proxy-$date_tag.md"
{
  echo "# Forward proxy benchmark ($date_tag)"
  echo
  echo "Machine: $(nproc) cores, $(awk -F: '/model name/ {print $2; exit}' /proc/cpuinfo | xargs), kernel $(uname -r)."
  echo "Versions: $($TK --version), $(squid -v | head -1), $(tinyproxy -v 2>&1 | head -1), $(nginx -v 2>&1), $(wrk -v 2>&1 | head -1 | cut -d' ' -f1-2)."
  echo
  echo "All on 127.0.0.1; each proxy with default-like settings, no caching, no logging. Origin: nginx, 1 KiB file."
  echo
  echo "## 1 KiB GETs, absolute-form (\`wrk -t2 -c100 -d${SECS}s --latency\`)"
  echo
  echo "| path | requests/s | p99 latency | vs direct | tunnelkit vs it |"
  echo "|---|---|---|---|---|"
  echo "| direct | $d_rps | $d_p99 | 1.00 | |"
  echo "| tunnelkit | $t_rps | $t_p99 | $(ratio "$t_rps" "$d_rps") | |"
  echo "| squid | $s_rps | $s_p99 | $(ratio "$s_rps" "$d_rps") | $(ratio "$t_rps" "$s_rps")x |"
  echo "| tinyproxy | $y_rps | $y_p99 | $(ratio "$y_rps" "$d_rps") | $(ratio "$t_rps" "$y_rps")x |"
  echo
  echo "## CONNECT bulk throughput (one stream, ${SECS}s, \`bench_proxy throughput\`)"
  echo
  echo "| path | Gbit/s | vs direct |"
  echo "|---|---|---|"
  echo "| direct | $d_tp | 1.00 |"
  echo "| tunnelkit | $t_tp | $(ratio "$t_tp" "$d_tp") |"
  echo "| squid | $s_tp | $(ratio "$s_tp" "$d_tp") |"
  echo "| tinyproxy | $y_tp | $(ratio "$y_tp" "$d_tp") |"
  echo
  echo "## Memory per idle CONNECT tunnel ($TUNNELS tunnels, VmRSS delta / tunnels)"
  echo
  echo "| proxy | KiB per tunnel |"
  echo "|---|---|"
  echo "| tunnelkit | $t_rss |"
  echo "| squid | $s_rss |"
  echo "| tinyproxy | $y_rss |"
  echo
  echo "Goals (issue 2): GETs >= 0.60x direct and >= 1.5x Squid; CONNECT >= 0.90x direct; <= 16 KiB per idle tunnel."
  echo
  echo "Commands: \`bench/proxy/run.sh $SECS\` (TUNNELS=$TUNNELS)."
} | tee "$out"
