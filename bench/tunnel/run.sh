#!/usr/bin/env bash
# Tunnel benchmark (issue 4): bulk throughput (1 stream each way, 64 streams) and 1-byte ping-pong under a
# saturating stream, through a direct TCP connection, tunnelkit ws-server/ws-client, rusty-penguin and the
# seed ws-stream-tunnel, in one run. Not a test.
# Usage: bench/tunnel/run.sh [SECONDS_PER_MEASUREMENT (default 5)] [ROUNDS (default 3; each cell is the median)]
# BENCH_PATHS picks paths (default: direct relay2 tunnelkit penguin seed; also: baseline, with BENCH_BASELINE).
# Writes bench/results/tunnel-<date>.md and prints the same table. A path that does not come up (answer an
# echo probe through its entry port) is skipped with the reason, and the run goes on.
set -euo pipefail
cd "$(dirname "$0")/../.."
SECS="${1:-5}"
ROUNDS="${2:-3}"
PENGUIN_VERSION=0.8.4
TOOLS=$PWD/bench/.tools
SEED_DIR=bench/tunnel/seed

# --- tools: installed once, cached in bench/.tools (gitignored) and bench/tunnel/seed/node_modules ---
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm >/dev/null
fi
if [ "$("$TOOLS/bin/penguin" --version 2>/dev/null | awk '{print $2}')" != "$PENGUIN_VERSION" ]; then
  echo "installing rusty-penguin $PENGUIN_VERSION into $TOOLS (one time, a few minutes)..." >&2
  # ring instead of the default aws-lc-rs: no C toolchain surprises, and TLS is not used here (ws://).
  cargo install --quiet --locked --root "$TOOLS" "rusty-penguin@$PENGUIN_VERSION" \
    --no-default-features --features penguin-binary,ring,rustls-native-roots
fi
# The seed's optional native bufferutil@3 does not build on current node: --ignore-scripts (ws falls back to JS).
[ -d "$SEED_DIR/node_modules/ws-stream-tunnel" ] \
  || (cd "$SEED_DIR" && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error)
cargo build --release --quiet --bin tunnelkit --example bench_tunnel
TK=$PWD/target/release/tunnelkit; BT=$PWD/target/release/examples/bench_tunnel; PG=$TOOLS/bin/penguin

work=$(mktemp -d); pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT
port() { python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }
# wait_up PORT PID...: the port accepts connections while every PID is alive; 10 s at most.
wait_up() {
  local p=$1; shift
  for _ in $(seq 100); do
    for pid in "$@"; do kill -0 "$pid" 2>/dev/null || return 1; done
    (exec 3<>/dev/tcp/127.0.0.1/"$p") 2>/dev/null && return 0
    sleep 0.1
  done
  return 1
}

LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
SINK=$(port); $BT serve 127.0.0.1:$SINK >/dev/null & pids+=($!)
wait_up "$SINK" "${pids[0]}" || { echo "bench_tunnel serve did not start" >&2; exit 1; }

# start_PATH: starts the path's processes (pids in path_pids) and sets ENTRY, the port the load tool uses.
path_pids=()
start_direct() { ENTRY=$SINK; }
# Two plain TCP relays in a row (tunnelkit's net::relay, no framing, no masking, no protocol): the
# ceiling of any tunnel made of a client process and a server process, since every byte crosses three
# TCP connections and two user-space copies instead of one connection.
start_relay2() {
  local mid; mid=$(port); ENTRY=$(port)
  "$BT" relay 127.0.0.1:$mid 127.0.0.1:$SINK 2>"$work/relay2.log" & path_pids+=($!)
  wait_up "$mid" "${path_pids[@]}" || return 1
  "$BT" relay 127.0.0.1:$ENTRY 127.0.0.1:$mid 2>>"$work/relay2.log" & path_pids+=($!)
}
start_tunnelkit() {
  local ws; ws=$(port); ENTRY=$(port)
  "$TK" ws-server --listen 127.0.0.1:$ws --allow 127.0.0.0/8 --connect-ports 1-65535 2>"$work/tunnelkit.log" & path_pids+=($!)
  wait_up "$ws" "${path_pids[@]}" || return 1
  "$TK" ws-client ws://127.0.0.1:$ws/tunnel -L 127.0.0.1:$ENTRY:127.0.0.1:$SINK 2>>"$work/tunnelkit.log" & path_pids+=($!)
}
# An older tunnelkit binary (BENCH_BASELINE=PATH, with "baseline" in BENCH_PATHS) beside this one, for A/B.
start_baseline() { TK="${BENCH_BASELINE:?set BENCH_BASELINE to a tunnelkit binary}" start_tunnelkit; }
start_penguin() {
  local ws; ws=$(port); ENTRY=$(port)
  "$PG" -q server --host 127.0.0.1 --port $ws 2>"$work/penguin.log" & path_pids+=($!)
  wait_up "$ws" "${path_pids[@]}" || return 1
  "$PG" -q client ws://127.0.0.1:$ws/ws 127.0.0.1:$ENTRY:127.0.0.1:$SINK 2>>"$work/penguin.log" & path_pids+=($!)
}
start_seed() {
  local ws; ws=$(port); ENTRY=$(port)
  (cd "$SEED_DIR" && exec node server.js $ws 127.0.0.1:$SINK) >/dev/null 2>"$work/seed.log" & path_pids+=($!)
  wait_up "$ws" "${path_pids[@]}" || return 1
  (cd "$SEED_DIR" && exec node client.js ws://127.0.0.1:$ws/ $ENTRY) >/dev/null 2>>"$work/seed.log" & path_pids+=($!)
}
stop_path() { for p in "${path_pids[@]}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done; path_pids=(); }

# measure PATH KEY ARGS...: one bench_tunnel run, appended to V[PATH.KEY] (one line per round); a failed
# run is noted (the reason goes to NOTES) and leaves no value.
declare -A V R; NOTES=()
# CPU time (user + system, clock ticks) of the path's own processes: on a shared machine a path's rate moves
# with the neighbours' load, its CPU per byte much less.
ticks() { local t=0 p; for p in "${path_pids[@]}"; do t=$((t + $(awk '{print $14 + $15}' "/proc/$p/stat" 2>/dev/null || echo 0))); done; echo "$t"; }
HZ=$(getconf CLK_TCK)
measure() {
  local path=$1 key=$2 out t0; shift 2
  t0=$(ticks)
  if out=$("$BT" "$@" 127.0.0.1:$ENTRY 2>"$work/err"); then
    V[$path.$key]+="$out"$'\n'
    # Bytes moved ~ rate x (window + 0.75 s warm-up); ms of CPU per GB (decimal) of them.
    if [ "${#path_pids[@]}" -gt 0 ] && [[ $key == up1 || $key == down1 ]]; then
      V[$path.$key.cpu]+="$(awk -v g="$out" -v s="$SECS" -v c=$(($(ticks) - t0)) -v hz="$HZ" \
        'BEGIN { gb = g * (s + 0.75) / 8; if (gb > 0) printf "%.0f", c * 1000 / hz / gb; else print 0 }')"$'\n'
    fi
    return
  fi
  NOTES+=("$path (round $round): \`bench_tunnel $*\` failed: $(tr '\n' ' ' <"$work/err")")
  echo "  $path: bench_tunnel $* failed: $(cat "$work/err")" >&2
}
# median LINES: the per-column median of whitespace-separated numbers (upper median for an even count).
median() {
  local lines cols i out=""
  lines=$(grep -v '^\s*$' <<<"$1")
  cols=$(head -n1 <<<"$lines" | wc -w)
  for ((i = 1; i <= cols; i++)); do
    out+="${out:+ }$(awk -v c=$i '{ print $c }' <<<"$lines" | sort -g | awk '{ v[NR] = $1 } END { print v[int(NR / 2) + 1] }')"
  done
  echo "$out"
}

# Rounds with the paths in a rotated order each round: the machine is shared, and a neighbour's burst
# then lands on different paths in different rounds instead of on one path's whole measurement.
PATHS=(${BENCH_PATHS:-direct relay2 tunnelkit penguin seed})
declare -A SKIP
for ((round = 0; round < ROUNDS; round++)); do
  for ((i = 0; i < ${#PATHS[@]}; i++)); do
    path=${PATHS[$(((i + round) % ${#PATHS[@]}))]}
    [ -n "${SKIP[$path]:-}" ] && continue
    echo "round $((round + 1))/$ROUNDS: path $path..." >&2
    ENTRY=""; : >"$work/err"
    if ! "start_$path" || ! wait_up "$ENTRY" "${path_pids[@]}" || ! "$BT" probe 127.0.0.1:$ENTRY 2>"$work/err"; then
      why=$( (cat "$work/err" 2>/dev/null; cat "$work/$path.log" 2>/dev/null) | grep -v '^\s*$' | tail -n 3 | tr '\n' ' ')
      echo "  $path: skipped, the path did not come up: ${why:-entry port never opened}" >&2
      NOTES+=("$path: skipped, the path did not come up: ${why:-entry port never opened}")
      SKIP[$path]=1; stop_path; continue
    fi
    measure "$path" up1 throughput --streams 1 --secs "$SECS"
    measure "$path" down1 throughput --streams 1 --secs "$SECS" --down
    measure "$path" stalled throughput --streams 1 --secs "$SECS" --down --stalled
    measure "$path" up64 throughput --streams 64 --secs "$SECS"
    measure "$path" idle pingpong --secs 1
    measure "$path" ping pingpong --secs "$SECS" --saturate
    stop_path
  done
done
for path in "${PATHS[@]}"; do
  [ -n "${SKIP[$path]:-}" ] && { R[$path.skip]=1; continue; }
  for key in up1 down1 stalled up64 idle ping up1.cpu down1.cpu; do
    if [ -n "${V[$path.$key]:-}" ]; then R[$path.$key]=$(median "${V[$path.$key]}"); else R[$path.$key]=fail; fi
  done
done

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a+0 == 0 || b+0 == 0) print "n/a"; else printf "%.2f", a/b }'; }
# cell PATH KEY: the value, "skipped" or "fail".
cell() { if [ -n "${R[$1.skip]:-}" ]; then echo skipped; else echo "${R[$1.$2]:-fail}"; fi; }
lat() { # PATH KEY -> "p50 / p99" in µs
  local v; v=$(cell "$1" "$2")
  case "$v" in skipped|fail) echo "$v" ;; *) awk '{printf "%d / %d", $1, $2}' <<<"$v" ;; esac
}
goal() { # LABEL VALUE TARGET
  awk -v l="$1" -v v="$2" -v t="$3" 'BEGIN { if (v == "n/a") printf "- %s >= %s: not measured\n", l, t;
    else printf "- %s >= %s: %s (%s)\n", l, t, v, (v+0 >= t+0 ? "met" : "NOT met") }'
}
label() { case "$1" in penguin) echo rusty-penguin ;; baseline) echo "tunnelkit baseline ($BENCH_BASELINE)" ;; relay2) echo "two plain relays (ceiling)" ;; *) echo "$1" ;; esac; }

date_tag=$(date -u +%Y-%m-%d)
mkdir -p bench/results
out="bench/results/tunnel-$date_tag.md"
tk1=$(cell tunnelkit up1); d1=$(cell direct up1)
{
  echo "# Tunnel benchmark ($date_tag)"
  echo
  echo "Machine: $(nproc) cores, $(awk -F: '/model name/ {print $2; exit}' /proc/cpuinfo | xargs), kernel $(uname -r), load average before the run: $LOAD_BEFORE."
  echo "Versions: $($TK --version), $($PG --version), ws-stream-tunnel $(node -p "require('./$SEED_DIR/node_modules/ws-stream-tunnel/package.json').version") on node $(node --version)."
  echo
  echo "Each cell is the median of $ROUNDS rounds; each round runs the paths in a rotated order."
  echo "Everything on 127.0.0.1. Each tunnel forwards one local port to \`bench_tunnel serve\`; all connections to that"
  echo "port share one tunnel (one WebSocket). Plain \`ws://\`, no TLS, no compression. Throughput counts the bytes that"
  echo "arrived at the receiving end inside a ${SECS}s window opened after a 0.75s warm-up; \"up\" is client → server"
  echo "(the direction of an \`-L\` upload, WebSocket-masked), \"down\" the reverse. Ping-pong: 1-byte round trips on one"
  echo "stream, idle (1s) and while a second stream of the same tunnel uploads as fast as it can (${SECS}s). Head-of-line:"
  echo "1 stream down while another download stream on the same tunnel is never read (its data fills its window"
  echo "and waits), as a ratio to the same path's plain 1-stream download. \"two plain relays\" is two \`bench_tunnel relay\`"
  echo "processes in a row (tunnelkit's \`net::relay\` copy, no framing, no masking): what any tunnel with a client and a"
  echo "server process could reach on this machine with zero protocol cost."
  echo
  echo "| path | 1 stream up Gbit/s | vs direct | 1 stream down Gbit/s | 64 streams up Gbit/s | vs direct | ping-pong idle p50 / p99 µs | ping-pong under load p50 / p99 µs | down beside a stalled stream | tunnelkit 1-stream vs it |"
  echo "|---|---|---|---|---|---|---|---|---|---|"
  for p in "${PATHS[@]}"; do
    vs_tk=""; case $p in relay2|penguin|seed|baseline) vs_tk=$(ratio "$tk1" "$(cell $p up1)"); [ "$vs_tk" = n/a ] || vs_tk="${vs_tk}x" ;; esac
    echo "| $(label $p) | $(cell $p up1) | $(ratio "$(cell $p up1)" "$d1") | $(cell $p down1) | $(cell $p up64) | $(ratio "$(cell $p up64)" "$(cell direct up64)") | $(lat $p idle) | $(lat $p ping) | $(cell $p stalled) ($(ratio "$(cell $p stalled)" "$(cell $p down1)")) | $vs_tk |"
  done
  echo
  echo "CPU per byte (user + system time of the path's client and server processes, ms per GB moved, 1 stream; lower is"
  echo "better; the machine is shared, and this moves much less than the rates):"
  echo
  echo "| path | up ms/GB | down ms/GB | two plain relays vs it (up / down) |"
  echo "|---|---|---|---|"
  for p in "${PATHS[@]}"; do
    [ "$p" = direct ] && continue
    echo "| $(label $p) | $(cell $p up1.cpu) | $(cell $p down1.cpu) | $(ratio "$(cell relay2 up1.cpu)" "$(cell $p up1.cpu)") / $(ratio "$(cell relay2 down1.cpu)" "$(cell $p down1.cpu)") |"
  done
  echo
  echo "Goals (issue 4), single stream up:"
  goal "tunnelkit vs direct" "$(ratio "$tk1" "$d1")" 0.8
  echo "  (the ceiling of a two-process tunnel here, two plain relays, is $(ratio "$(cell relay2 up1)" "$d1") of direct; tunnelkit reaches $(ratio "$tk1" "$(cell relay2 up1)") of that ceiling)"
  goal "tunnelkit vs rusty-penguin" "$(ratio "$tk1" "$(cell penguin up1)")" 1.5
  goal "tunnelkit vs seed" "$(ratio "$tk1" "$(cell seed up1)")" 5
  echo
  echo "Goals (issue 12):"
  goal "tunnelkit vs two plain relays, 1 stream up" "$(ratio "$tk1" "$(cell relay2 up1)")" 1.0
  goal "tunnelkit vs two plain relays, 1 stream down" "$(ratio "$(cell tunnelkit down1)" "$(cell relay2 down1)")" 1.0
  goal "two plain relays' CPU per GB vs tunnelkit's, up" "$(ratio "$(cell relay2 up1.cpu)" "$(cell tunnelkit up1.cpu)")" 1.0
  goal "two plain relays' CPU per GB vs tunnelkit's, down" "$(ratio "$(cell relay2 down1.cpu)" "$(cell tunnelkit down1.cpu)")" 1.0
  goal "tunnelkit vs rusty-penguin" "$(ratio "$tk1" "$(cell penguin up1)")" 2.0
  if [ "${#NOTES[@]}" -gt 0 ]; then
    echo
    echo "Notes:"
    for n in "${NOTES[@]}"; do echo "- $n"; done
  fi
  echo
  echo "Commands: \`bench/tunnel/run.sh $SECS $ROUNDS\`; tunnelkit \`ws-server --listen 127.0.0.1:P --allow 127.0.0.0/8 --connect-ports 1-65535\` +"
  echo "\`ws-client ws://127.0.0.1:P/tunnel -L 127.0.0.1:LP:127.0.0.1:SINK\`; rusty-penguin \`server --host 127.0.0.1 --port P\` +"
  echo "\`client ws://127.0.0.1:P/ws 127.0.0.1:LP:127.0.0.1:SINK\` (built with \`--no-default-features --features penguin-binary,ring,rustls-native-roots\`);"
  echo "seed: \`bench/tunnel/seed/server.js\` + \`client.js\` (subStream mode)."
} | tee "$out"
