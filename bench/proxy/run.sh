#!/usr/bin/env bash
# Forward-proxy benchmark: tunnelkit vs a direct connection, Squid, tinyproxy and (SOCKS5)
# microsocks, in one run; HAProxy as a reverse proxy (GET) and a spliced TCP relay (bulk), which are not
# forward proxies but show what one proxy hop costs on this machine at best. Every cell is the median of ROUNDS rounds; each round measures the paths in
# a rotated order, so a slow moment of the shared machine does not always hit the same path.
# Not a test. Usage: bench/proxy/run.sh [SECONDS_PER_RUN (default 10)] [ROUNDS (default 3)]
# Writes bench/results/proxy-<date>.md and prints the same table.
set -euo pipefail
cd "$(dirname "$0")/../.."
SECS="${1:-10}"
ROUNDS="${2:-3}"
# 9000: the sandbox caps open files at 20000 per process and a tunnel costs the proxy two.
TUNNELS="${TUNNELS:-9000}"
need=()
for t in wrk:wrk squid:squid tinyproxy:tinyproxy nginx:nginx microsocks:microsocks haproxy:haproxy; do
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

TKP=$(port); TKS=$(port)
$TK proxy --listen 127.0.0.1:$TKP --socks 127.0.0.1:$TKS --allow 127.0.0.0/8 --connect-ports 1-65535 --tunnel-idle-timeout 10m 2>/dev/null & TKPID=$!; pids+=($TKPID)
# The same proxy with the buffered copy only (--no-splice): what splice(2) buys.
TKC=$(port); $TK proxy --listen 127.0.0.1:$TKC --no-splice --allow 127.0.0.0/8 --connect-ports 1-65535 2>/dev/null & pids+=($!)
MSP=$(port); microsocks -i 127.0.0.1 -p $MSP >/dev/null 2>&1 & pids+=($!)
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
# HAProxy: the same hop with no forward-proxy work. A reverse proxy to the origin (keep-alive both sides,
# connections to the origin reused) for GETs; a TCP relay to the sink with splice(2) for bulk bytes.
HAH=$(port); HAT=$(port)
cat > "$work/haproxy.cfg" <<CONF
global
  maxconn 4000
  # The same 1 MiB pipes tunnelkit asks for (--pipe-size); HAProxy's default is the kernel's 64 KiB.
  tune.pipesize 1048576
defaults
  timeout connect 5s
  timeout client 10m
  timeout server 10m
frontend get_in
  mode http
  bind 127.0.0.1:$HAH
  default_backend origin
backend origin
  mode http
  http-reuse always
  server o1 127.0.0.1:$ORIGIN
# splice-request/-response always splice: splice-auto waited for full buffers and measured half as fast.
frontend bulk_in
  mode tcp
  option splice-request
  option splice-response
  bind 127.0.0.1:$HAT
  default_backend sink
backend sink
  mode tcp
  option splice-request
  option splice-response
  server s1 127.0.0.1:$SINK
CONF
haproxy -f "$work/haproxy.cfg" -db >/dev/null 2>&1 & pids+=($!)
for p in $ORIGIN $SINK $TKP $TKS $TKC $SQP $TPP $MSP $HAH $HAT; do wait_port "$p"; done

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

# median VALUES...: the middle value (the lower middle for an even count).
median() { printf '%s\n' "$@" | sort -g | awk '{v[NR]=$1} END {print v[int((NR+1)/2)]}'; }
# rotate N ITEMS...: ITEMS starting at index N mod count.
rotate() { local n=$1; shift; local a=("$@"); local k=$(( n % ${#a[@]} )); echo "${a[@]:k}" "${a[@]:0:k}"; }

declare -A rps p99 tp
get_paths=(direct tunnelkit squid tinyproxy haproxy)
connect_paths=(direct tunnelkit tunnelkit_copy squid tinyproxy tunnelkit_socks microsocks haproxy)
get_base() { case $1 in direct) echo "http://127.0.0.1:$ORIGIN/1k";; haproxy) echo "http://127.0.0.1:$HAH/1k";; tunnelkit) echo "http://127.0.0.1:$TKP";;
  squid) echo "http://127.0.0.1:$SQP";; tinyproxy) echo "http://127.0.0.1:$TPP";; esac; }
via() { case $1 in direct) echo "";; tunnelkit) echo "127.0.0.1:$TKP";; tunnelkit_copy) echo "127.0.0.1:$TKC";;
  squid) echo "127.0.0.1:$SQP";; tinyproxy) echo "127.0.0.1:$TPP";; tunnelkit_socks) echo "socks5://127.0.0.1:$TKS";; haproxy) echo "";;
  microsocks) echo "socks5://127.0.0.1:$MSP";; esac; }
for round in $(seq "$ROUNDS"); do
  echo "round $round/$ROUNDS: GET 1 KiB (wrk -c100 -t2 -d${SECS}s)..." >&2
  for path in $(rotate "$round" "${get_paths[@]}"); do
    if [ "$path" = direct ] || [ "$path" = haproxy ]; then read -r r l < <(run_wrk "$(get_base "$path")")
    else read -r r l < <(run_wrk "$(get_base "$path")" "$work/abs.lua"); fi
    rps[$path]+="$r "; p99[$path]+="$l "
  done
  echo "round $round/$ROUNDS: CONNECT/SOCKS5 throughput (${SECS}s each)..." >&2
  for path in $(rotate "$round" "${connect_paths[@]}"); do
    # shellcheck disable=SC2046
    target=127.0.0.1:$SINK; [ "$path" = haproxy ] && target=127.0.0.1:$HAT
    t=$($BP throughput "$target" "$SECS" $(via "$path") || echo 0)
    tp[$path]+="$t "
  done
done
# p99 strings carry units (ms/us): keep the one of the median round by sorting on the number.
med() { median ${1}; }
for path in "${get_paths[@]}"; do rps[$path]=$(med "${rps[$path]}"); p99[$path]=$(printf '%s\n' ${p99[$path]} | sort -g | awk '{v[NR]=$1} END {print v[int((NR+1)/2)]}'); done
for path in "${connect_paths[@]}"; do tp[$path]=$(med "${tp[$path]}"); done
d_rps=${rps[direct]}; t_rps=${rps[tunnelkit]}; s_rps=${rps[squid]}; y_rps=${rps[tinyproxy]}
d_p99=${p99[direct]}; t_p99=${p99[tunnelkit]}; s_p99=${p99[squid]}; y_p99=${p99[tinyproxy]}
d_tp=${tp[direct]}; t_tp=${tp[tunnelkit]}; c_tp=${tp[tunnelkit_copy]}; s_tp=${tp[squid]}; y_tp=${tp[tinyproxy]}
k_tp=${tp[tunnelkit_socks]}; m_tp=${tp[microsocks]}; h_rps=${rps[haproxy]}; h_p99=${p99[haproxy]}; h_tp=${tp[haproxy]}

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
  echo "Versions: $($TK --version), $(squid -v | head -1), $(tinyproxy -v 2>&1 | head -1), $(haproxy -v | head -1 | cut -d' ' -f1-3), $(nginx -v 2>&1), $(wrk -v 2>&1 | head -1 | cut -d' ' -f1-2)."
  echo
  echo "All on 127.0.0.1; each proxy with default-like settings, no caching, no logging. Origin: nginx, 1 KiB file."
  echo "Each cell: median of $ROUNDS rounds, paths in rotated order per round."
  echo
  echo "## 1 KiB GETs, absolute-form (\`wrk -t2 -c100 -d${SECS}s --latency\`)"
  echo
  echo "| path | requests/s | p99 latency | vs direct | tunnelkit vs it |"
  echo "|---|---|---|---|---|"
  echo "| direct | $d_rps | $d_p99 | 1.00 | |"
  echo "| tunnelkit | $t_rps | $t_p99 | $(ratio "$t_rps" "$d_rps") | |"
  echo "| squid | $s_rps | $s_p99 | $(ratio "$s_rps" "$d_rps") | $(ratio "$t_rps" "$s_rps")x |"
  echo "| tinyproxy | $y_rps | $y_p99 | $(ratio "$y_rps" "$d_rps") | $(ratio "$t_rps" "$y_rps")x |"
  echo "| haproxy, reverse proxy (not absolute-form) | $h_rps | $h_p99 | $(ratio "$h_rps" "$d_rps") | $(ratio "$t_rps" "$h_rps")x |"
  echo
  echo "## CONNECT and SOCKS5 bulk throughput (one stream, ${SECS}s, \`bench_proxy throughput\`)"
  echo
  echo "| path | Gbit/s | vs direct |"
  echo "|---|---|---|"
  echo "| direct | $d_tp | 1.00 |"
  echo "| tunnelkit CONNECT (splice) | $t_tp | $(ratio "$t_tp" "$d_tp") |"
  echo "| tunnelkit CONNECT --no-splice | $c_tp | $(ratio "$c_tp" "$d_tp") |"
  echo "| squid CONNECT | $s_tp | $(ratio "$s_tp" "$d_tp") |"
  echo "| tinyproxy CONNECT | $y_tp | $(ratio "$y_tp" "$d_tp") |"
  echo "| tunnelkit SOCKS5 (splice) | $k_tp | $(ratio "$k_tp" "$d_tp") |"
  echo "| microsocks SOCKS5 | $m_tp | $(ratio "$m_tp" "$d_tp") |"
  echo "| haproxy TCP relay, splice (no CONNECT) | $h_tp | $(ratio "$h_tp" "$d_tp") |"
  echo
  echo "splice vs copy: $(ratio "$t_tp" "$c_tp")x. tunnelkit CONNECT vs HAProxy's spliced TCP relay: $(ratio "$t_tp" "$h_tp")x."
  echo
  echo "## Memory per idle CONNECT tunnel ($TUNNELS tunnels, VmRSS delta / tunnels)"
  echo
  echo "| proxy | KiB per tunnel |"
  echo "|---|---|"
  echo "| tunnelkit | $t_rss |"
  echo "| squid | $s_rss |"
  echo "| tinyproxy | $y_rss |"
  echo
  echo "Goals (issue 12): GETs >= 0.70x direct; CONNECT >= 0.90x direct; <= 4 KiB per idle tunnel."
  echo
  echo "Commands: \`bench/proxy/run.sh $SECS $ROUNDS\` (TUNNELS=$TUNNELS)."
} | tee "$out"
