#!/usr/bin/env bash
# Sticky-balancer benchmark: handshakes/s, polling requests/s and WebSocket acks/s through tunnelkit
# (memory and Redis stores), HAProxy sticking on the sid URL parameter, NGINX ip_hash and the seed
# socket.io-proxy2 (bench/sticky/seed: rebuilt from its README on node http-proxy + Redis), against the
# same 3 Socket.IO backends, in one run. Not a test. Usage: bench/sticky/run.sh [SECONDS] [CONCURRENCY] [ROUNDS]
# Each cell is measured ROUNDS times, the balancers in a rotated order each round and "direct" last (the node
# backends slow down while sessions from earlier cells linger, so a fixed order would favour whoever goes
# first); the median is reported (the upper one for an even count).
set -euo pipefail
cd "$(dirname "$0")/../.."
SECS="${1:-5}"; CONC="${2:-32}"; ROUNDS="${3:-4}"
need=()
for t in haproxy:haproxy nginx:nginx redis-server:redis-server; do command -v "${t%%:*}" >/dev/null 2>&1 || need+=("${t##*:}"); done
if [ "${#need[@]}" -gt 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null; fi
[ -d tests/node/sticky/node_modules/socket.io ] || (cd tests/node/sticky && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error)
# TK=/path/to/tunnelkit measures that binary instead (a baseline build); otherwise the one built here, in
# CARGO_TARGET_DIR when that is set.
if [ -z "${TK:-}" ]; then
  cargo build --release --quiet --bin tunnelkit
  TK=${CARGO_TARGET_DIR:-$PWD/target}/release/tunnelkit
fi
work=$(mktemp -d); pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT
port() { python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/"$1") 2>/dev/null && return 0; sleep 0.1; done; echo "port $1 never opened" >&2; return 1; }

B=(); for n in A B C; do p=$(port); (cd tests/node/sticky && exec node backend.js "$n" "$p" >/dev/null) & pids+=($!); B+=("$p"); done
RP=$(port); redis-server --port "$RP" --bind 127.0.0.1 --save "" --appendonly no >/dev/null & pids+=($!); RPID=$!
for p in "${B[@]}" "$RP"; do wait_port "$p"; done
backs=(); for p in "${B[@]}"; do backs+=(--backend "127.0.0.1:$p"); done
# One worker thread, as NGINX below has one worker process (TK_ARGS="" for a binary without --workers).
read -r -a tk_args <<<"${TK_ARGS---workers 1}"
TM=$(port); $TK sticky --listen 127.0.0.1:$TM "${backs[@]}" "${tk_args[@]}" 2>/dev/null & pids+=($!); TMPID=$!
TR=$(port); $TK sticky --listen 127.0.0.1:$TR "${backs[@]}" "${tk_args[@]}" --redis redis://127.0.0.1:$RP 2>/dev/null & pids+=($!); TRPID=$!
HP=$(port)
cat > "$work/haproxy.cfg" <<CONF
global
  maxconn 8000
defaults
  mode http
  timeout connect 5s
  timeout client 60s
  timeout server 60s
  timeout tunnel 1h
frontend fe
  bind 127.0.0.1:$HP
  default_backend be
backend be
  balance roundrobin
  stick-table type string len 64 size 1m expire 60s
  stick on url_param(sid)
  server a 127.0.0.1:${B[0]}
  server b 127.0.0.1:${B[1]}
  server c 127.0.0.1:${B[2]}
CONF
haproxy -f "$work/haproxy.cfg" -db >/dev/null 2>&1 & pids+=($!); HPID=$!
NP=$(port)
cat > "$work/nginx.conf" <<CONF
worker_processes 1; daemon off; pid $work/nginx.pid; error_log $work/nginx.err;
events { worker_connections 8192; }
http { access_log off;
  upstream io { ip_hash; server 127.0.0.1:${B[0]}; server 127.0.0.1:${B[1]}; server 127.0.0.1:${B[2]}; keepalive 64; }
  server { listen 127.0.0.1:$NP;
    location /socket.io/ { proxy_pass http://io; proxy_http_version 1.1;
      proxy_set_header Upgrade \$http_upgrade; proxy_set_header Connection "upgrade"; proxy_set_header Host \$host; } } }
CONF
nginx -c "$work/nginx.conf" & pids+=($!); NPID=$!
# The seed, socket.io-proxy2 (node http-proxy + Redis), rebuilt from its README: it is no longer on npm.
[ -d bench/sticky/seed/node_modules/http-proxy ] || (cd bench/sticky/seed && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error)
SP=$(port); node bench/sticky/seed/proxy.js "$SP" "$RP" "${B[@]}" & pids+=($!); SPID=$!
for p in $TM $TR $HP $NP $SP; do wait_port "$p"; done

measure() { (cd tests/node/sticky && node ../../../bench/sticky/load.js "http://127.0.0.1:$1" "$2" "$CONC" "$SECS"); }
# CPU time (user + system, clock ticks) of a balancer's processes: on a shared machine the rates move with the
# neighbours' load, the balancer's own CPU per request much less.
declare -A PROCS=([tunnelkit-memory]="$TMPID" [tunnelkit-redis]="$TRPID $RPID" [haproxy]="$HPID"
  [nginx-ip_hash]="$NPID $(pgrep -P "$NPID" | xargs)" [socket.io-proxy2]="$SPID $RPID")
# ticks PATH: "user system" clock ticks of the path's processes.
ticks() { local u=0 s=0 p; for p in ${PROCS[$1]:-}; do read -r a b < <(awk '{print $14, $15}' "/proc/$p/stat"); u=$((u + a)); s=$((s + b)); done; echo "$u $s"; }
HZ=$(getconf CLK_TCK)
declare -A CPU
declare -A RUNS
paths=(tunnelkit-memory:$TM tunnelkit-redis:$TR haproxy:$HP nginx-ip_hash:$NP socket.io-proxy2:$SP)
for round in $(seq "$ROUNDS"); do
  for mode in handshake poll ws; do
    # "direct" loads one backend alone, which slows whatever comes next: it goes last in every round.
    for k in $(seq 0 "${#paths[@]}"); do
      if [ "$k" -lt "${#paths[@]}" ]; then name=${paths[$(( (k + round - 1) % ${#paths[@]} ))]}; else name=direct:${B[0]}; fi
      label=${name%%:*}; p=${name##*:}
      echo "round $round: measuring $label $mode..." >&2
      read -r u0 s0 <<<"$(ticks "$label")"
      run=$(measure "$p" "$mode")
      read -r u1 s1 <<<"$(ticks "$label")"
      RUNS[$label.$mode]+="$run"$'\n'
      # µs per request: total, user, system (one line per round).
      CPU[$label.$mode]+="$(awk -v u=$((u1 - u0)) -v k=$((s1 - s0)) -v hz="$HZ" -v r="$(sed -E 's/.*"rate":([0-9]+).*/\1/' <<<"$run")" -v s="$SECS" \
        'BEGIN { if (r + 0 == 0) print "n/a n/a n/a"; else { f = 1e6 / hz / (r * s); printf "%.1f %.1f %.1f", (u + k) * f, u * f, k * f } }')"$'\n'
    done
  done
done
# The run with the median rate of each cell, and the median CPU cost.
declare -A R C
for key in "${!RUNS[@]}"; do
  R[$key]=$(grep . <<<"${RUNS[$key]}" | sort -t: -k2 -n | sed -n "$(( ROUNDS / 2 + 1 ))p")
  # The round with the median total, and its user / system split.
  C[$key]=$(grep . <<<"${CPU[$key]}" | sort -n -k1,1 | sed -n "$(( ROUNDS / 2 + 1 ))p")
done
val() { sed -E 's/.*"rate":([0-9]+).*/\1/' <<<"$1"; }
err() { sed -E 's/.*"errors":([0-9]+).*/\1/' <<<"$1"; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b+0 == 0) print "n/a"; else printf "%.2f", a/b }'; }
mkdir -p bench/results
out="bench/results/sticky-$(date -u +%Y-%m-%d).md"
{
  echo "# Sticky balancer benchmark ($(date -u +%Y-%m-%d))"
  echo
  echo "Machine: $(nproc) cores, $(awk -F: '/model name/ {print $2; exit}' /proc/cpuinfo | xargs), kernel $(uname -r)."
  echo "Versions: $($TK --version), $(haproxy -v | head -1), $(nginx -v 2>&1), $(redis-server --version | cut -d' ' -f1-3), node $(node --version), socket.io $(node -p "require('./tests/node/sticky/node_modules/socket.io/package.json').version")."
  echo
  echo "3 Socket.IO 4 backends (node, tests/node/sticky/backend.js); load: bench/sticky/load.js, $CONC concurrent loops, ${SECS}s per cell;"
  echo "each cell is the median of $ROUNDS rounds (upper median for an even count), the balancers in a rotated order each round, direct last."
  echo "\"direct\" is one backend without a balancer (the limit). Errors are non-200 answers / failed acks: a balancer that"
  echo "sends a session's request to the wrong backend gets Engine.IO's 400."
  echo
  echo "| path | handshakes/s (errors) | polling POSTs/s (errors) | WebSocket acks/s (errors) | tunnelkit-memory vs it (handshake / poll / ws) |"
  echo "|---|---|---|---|---|"
  for label in direct tunnelkit-memory tunnelkit-redis haproxy nginx-ip_hash socket.io-proxy2; do
    h=${R[$label.handshake]}; p=${R[$label.poll]}; w=${R[$label.ws]}
    echo "| $label | $(val "$h") ($(err "$h")) | $(val "$p") ($(err "$p")) | $(val "$w") ($(err "$w")) | $(ratio "$(val "${R[tunnelkit-memory.handshake]}")" "$(val "$h")") / $(ratio "$(val "${R[tunnelkit-memory.poll]}")" "$(val "$p")") / $(ratio "$(val "${R[tunnelkit-memory.ws]}")" "$(val "$w")") |"
  done
  echo
  echo "Balancer CPU per request (user + system time of its processes / requests served, µs, median; lower is better;"
  echo "tunnelkit-redis and socket.io-proxy2 include redis-server, nginx its worker). Each cell is the total, then"
  echo "(user / system) of the same round: the system part is the kernel's socket work, the user part the balancer's own."
  echo
  echo "| path | handshake | polling POST | WebSocket ack |"
  echo "|---|---|---|---|"
  cell() { awk '{ printf "%s (%s / %s)", $1, $2, $3 }' <<<"$1"; }
  for label in tunnelkit-memory tunnelkit-redis haproxy nginx-ip_hash socket.io-proxy2; do
    echo "| $label | $(cell "${C[$label.handshake]}") | $(cell "${C[$label.poll]}") | $(cell "${C[$label.ws]}") |"
  done
  echo
  echo "Goal (issue 5): >= HAProxy's rates with the memory store, within 20% of them with Redis."
  le() { awk -v a="${1%% *}" -v b="${2%% *}" 'BEGIN { if (a == "" || b == "") print "not measured"; else printf "%s vs %s (%s)", a, b, (a+0 <= b+0 ? "met" : "NOT met") }'; }
  echo "Goals (issue 12): tunnelkit-memory CPU per handshake <= nginx's: $(le "${C[tunnelkit-memory.handshake]}" "${C[nginx-ip_hash.handshake]}");"
  echo "per polling POST <= nginx's: $(le "${C[tunnelkit-memory.poll]}" "${C[nginx-ip_hash.poll]}");"
  echo "WebSocket acks/s >= socket.io-proxy2's: $(ratio "$(val "${R[tunnelkit-memory.ws]}")" "$(val "${R[socket.io-proxy2.ws]}")")x."
  echo "Configs: HAProxy \`balance roundrobin\` + \`stick on url_param(sid)\`; NGINX \`ip_hash\` with WebSocket headers,"
  echo "\`worker_processes 1\`; tunnelkit \`${tk_args[*]:-(defaults)}\`."
  echo "Command: \`bench/sticky/run.sh $SECS $CONC $ROUNDS\`."
} | tee "$out"
