#!/usr/bin/env bash
# The CPU cost of a message, side by side: Switchboard (native framing, PostgreSQL), the
# Socket.IO 4 peer (PostgreSQL) and the bare relay, each driven by the chat mix at one fixed
# offered rate that every one of them sustains; per delivery, the server's CPU, PostgreSQL's
# CPU, their total and (where this machine's perf counts them) the server's instructions.
# Usage (from anywhere):
#
#   loadtest/cost.sh [OUT_DIR]          default OUT_DIR: loadtest/results/cost-<date>
#
# Cores as loadtest/pinned.sh sets them: the server alone on core $SERVER_CPU (1); the
# generator, PostgreSQL and Redis on core $LOAD_CPU (0). One server runs at a time. Each
# measurement starts the server on a fresh database, runs compare.sh's unmeasured warm-up
# (WARMUP_ARGS) and ANALYZE, then one chat-mix step of DURATION seconds at RATE events/s.
#
# The window: from the moment the generator has connected every user and created every room
# ("set up … connections" on its output) to the end of its step ("step …": DURATION seconds
# of sending plus the generator's 1 s settle), so connecting and closing are not counted.
# Over it: the CPU seconds (utime + stime, children included) of the server's process tree,
# of all PostgreSQL processes, of the generator and of Redis; each core's busy share and what
# the rest of the machine used (busy time of both cores minus those four); `perf stat -p` on
# the server for its task-clock and, where the VM exposes the counter, its instructions.
# Deliveries are the step's: every `message.new` and `typing` push the generator received
# for the events of the step by the end of the window.
#
# Knobs (env): RATE (events/s, 800), HIGH_RATE (unset: none; e.g. 3000: a second measurement
# of HIGH_SERVERS at that rate in every run), HIGH_SERVERS ("switchboard bare-relay": the
# Socket.IO peer does not sustain much above 1,000), DURATION (40), RUNS (3: the whole
# sequence that many times, so that the servers alternate; the table gives medians and the
# lowest–highest run), SERVERS ("switchboard socket.io bare-relay"), ROOMS_ARGS (the chat
# mix's rooms: "--pairs 200 --groups 40 --group-size 5"), WARMUP_ARGS, SERVER_CPU, LOAD_CPU,
# DB_CPUS, PG_SETTINGS (see pinned.sh), SB (the Switchboard binary, target/release/switchboard)
# and SB_ALT (another build, measured as the server `switchboard-alt`: name it in SERVERS to
# set one build against another in alternating runs). IDLE ("0"): idle connections held on
# Switchboard through its window, a list: each run measures Switchboard once per count
# (named `switchboard+N idle`), so the cost of a delivery is read against the connections a
# node holds; they answer pings, at the server's default heartbeat. PROFILE=1: `perf record`
# (call graphs) of the server over the window, to runs/NAME.perf.data.
#
# Writes OUT_DIR/table.md (the date and command at its top), OUT_DIR/cost.json (the table's
# figures), and per measurement runs/NAME.cost.json (the window's readings), runs/NAME.txt
# (the generator's output) and runs/NAME.server.log.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
OUT=${1:-loadtest/results/cost-$(date +%F)}
RATE=${RATE:-800} DURATION=${DURATION:-40} RUNS=${RUNS:-3}
HIGH_RATE=${HIGH_RATE:-} HIGH_SERVERS=${HIGH_SERVERS:-switchboard bare-relay}
DEFAULT_SERVERS="switchboard socket.io bare-relay"
SERVERS=${SERVERS:-$DEFAULT_SERVERS}
SB=${SB:-$ROOT/target/release/switchboard} SB_ALT=${SB_ALT:-}
ROOMS_ARGS=${ROOMS_ARGS:---pairs 200 --groups 40 --group-size 5}
IDLE=${IDLE:-0} PROFILE=${PROFILE:-}
SB_PORT=18381 SIO_PORT=18395 BARE_PORT=18390
mkdir -p "$OUT/runs"
# A node with IDLE connections, the generator's idle sockets and the chat mix's.
ulimit -n 20000

cargo build --release -q --workspace
LT="$ROOT/target/release/loadtest"
(cd loadtest/peers/socketio && npm ci --no-audit --no-fund --loglevel=error)

# shellcheck source=pinned.sh
source loadtest/pinned.sh
start_pinned_services
PG_ADMIN=$SWITCHBOARD_TEST_DATABASE_URL
REDIS_PID=$(cat "$REDIS_DIR/redis.pid")

# perf_events: the events `perf stat` counts on the server: instructions where this machine
# counts them (a VM without a virtual PMU answers "<not supported>"), system calls where the
# kernel's tracepoints count (they need no PMU), always task-clock.
perf_events() {
    local event events=""
    for event in instructions raw_syscalls:sys_enter; do
        if perf stat -x, -e "$event" -- true 2>&1 >/dev/null | grep -q '^[0-9]'; then events+="$event,"; fi
    done
    echo "${events}task-clock"
}
PERF_EVENTS=$(perf_events)
echo "perf stat counts: $PERF_EVENTS" >&2

# tree_ticks ROOT…: for each ROOT pid, one line: the CPU clock ticks (utime + stime +
# waited-for children's) of it and all its descendants, read in one pass over /proc. The name
# in /proc/PID/stat may hold spaces and ')': fields are counted after the last ')'.
tree_ticks() {
    # cat skips what ends between the glob and the read; awk then reads one line per process.
    { cat /proc/[0-9]*/stat 2>/dev/null || true; } | awk -v roots="$*" '
        {
            line = $0; pid = $1
            sub(/^.*\) /, "", line); split(line, f, " ")    # f[1] is the state, f[2] the parent
            parent[pid] = f[2]; ticks[pid] = f[12] + f[13] + f[14] + f[15]
        }
        END {
            n = split(roots, r, " ")
            for (i = 1; i <= n; i++) {
                s = 0
                for (p in ticks) {
                    q = p
                    while (q != "" && q != 0 && q != r[i]) q = parent[q]
                    if (q == r[i]) s += ticks[p]
                }
                print s
            }
        }'
}

# snapshot FILE GEN_PID: the instant, the CPU ticks of the server, PostgreSQL, the generator
# and Redis, and each core's busy and total ticks (busy: all but idle and iowait).
snapshot() {
    {
        echo "time $(date +%s.%N)"
        tree_ticks "$SERVER_PID" "$PG_PID" "$2" "$REDIS_PID" | paste -d' ' <(printf '%s\n' server postgres generator redis) -
        awk '/^cpu[0-9]/ { t = 0; for (i = 2; i <= 9; i++) t += $i; print $1, t - $5 - $6, t }' /proc/stat
    } >"$1"
}

# wait_for_line FILE PATTERN PID: until a line of FILE matches PATTERN (extended regex);
# fails when process PID ends first.
wait_for_line() {
    until grep -qE "$2" "$1" 2>/dev/null; do
        kill -0 "$3" 2>/dev/null || return 1
        sleep 0.02
    done
}

# start_server SERVER PORT DB LOG: the server on its own core, SERVER_PID set; returns once
# it listens.
start_server() {
    local server=$1 port=$2 db=$3 log=$4
    case "$server" in
        switchboard | switchboard-alt)
            local bin=$SB
            [ "$server" = switchboard-alt ] && bin=${SB_ALT:?SB_ALT names the other build}
            # One node on its own: no Redis, whatever the caller's environment names.
            taskset -c "$SERVER_CPU" env -u SWITCHBOARD_REDIS_URL -u SWITCHBOARD_REDIS_CLUSTER_NODES \
                SWITCHBOARD_DATABASE_URL="$PG_BASE/$db" SWITCHBOARD_BIND="127.0.0.1:$port" \
                SWITCHBOARD_RATE_PER_SEC=100000 SWITCHBOARD_RATE_BURST=100000 \
                SWITCHBOARD_MAX_CONNECTIONS=19500 SWITCHBOARD_MAX_CONNECTIONS_PER_IP=1000000 RUST_LOG=warn \
                "$bin" serve >"$log" 2>&1 & ;;
        socket.io)
            taskset -c "$SERVER_CPU" env -u REDIS_URL -u REDIS_CLUSTER_NODES PORT="$port" DATABASE_URL="$PG_BASE/$db" \
                node loadtest/peers/socketio/server.js >"$log" 2>&1 & ;;
        bare-relay)
            taskset -c "$SERVER_CPU" "$ROOT/target/release/bare-relay" "127.0.0.1:$port" >"$log" 2>&1 & ;;
    esac
    SERVER_PID=$!
    wait_port "$port"
}

# run_name SERVER RATE RUN [IDLE]: a measurement's name, its files' stem.
run_name() {
    if [ "${4:-0}" -gt 0 ]; then echo "$1-idle$4-$2-run$3"; else echo "$1-$2-run$3"; fi
}

# measure SERVER RATE RUN [IDLE]: one measurement on a fresh database (none for the relay):
# server, warm-up, ANALYZE, IDLE idle connections opened, the window, server stopped; writes
# runs/NAME.cost.json.
measure() {
    local server=$1 rate=$2 run=$3 idle=${4:-0} framing=native port db="" name label=$1 idler=""
    name=$(run_name "$@")
    [ "$idle" -eq 0 ] || label="$server+$idle idle"
    case "$server" in
        switchboard | switchboard-alt) port=$SB_PORT db=cost_sb ;;
        socket.io) port=$SIO_PORT db=cost_sio framing=socketio ;;
        bare-relay) port=$BARE_PORT ;;
        *) echo "unknown server $server" >&2; exit 2 ;;
    esac
    echo "== $name" >&2
    [ -n "$db" ] && psql -q "$PG_ADMIN" -c "DROP DATABASE IF EXISTS $db" -c "CREATE DATABASE $db"
    start_server "$server" "$port" "$db" "$OUT/runs/$name.server.log"
    local url="ws://127.0.0.1:$port"
    # shellcheck disable=SC2086
    taskset -c "$LOAD_CPU" "$LT" chat-mix --url "$url" --framing "$framing" $WARMUP_ARGS >/dev/null 2>&1 || true
    [ -n "$db" ] && psql -q "$PG_BASE/$db" -c "ANALYZE"
    if [ "$idle" -gt 0 ]; then
        taskset -c "$LOAD_CPU" "$LT" connect --url "$url" --connections "$idle" --processes 1 --source-ips 2 \
            --connect-concurrency 200 --hold 100000 >"$OUT/runs/$name.idle.txt" 2>&1 &
        idler=$!
        wait_for_line "$OUT/runs/$name.idle.txt" 'connected, [0-9]+ failed' "$idler" || {
            echo "$name: the idle connections failed, see $OUT/runs/$name.idle.txt" >&2
            kill "$SERVER_PID"; wait "$SERVER_PID" 2>/dev/null || true; SERVER_PID=""
            return 1
        }
    fi

    local txt="$OUT/runs/$name.txt" report="$OUT/runs/$name.json" gen perf_pid ok=1
    # shellcheck disable=SC2086
    taskset -c "$LOAD_CPU" "$LT" chat-mix --url "$url" --framing "$framing" --label "$name" $ROOMS_ARGS \
        --rates "$rate" --step-secs "$DURATION" --step-warmup 0 --connect-concurrency 96 \
        --out "$report" >"$txt" 2>&1 &
    gen=$!
    if wait_for_line "$txt" '^set up [0-9]+ connections' "$gen"; then
        snapshot "$OUT/runs/$name.start" "$gen"
        taskset -c "$LOAD_CPU" perf stat -x, -e "$PERF_EVENTS" -o "$OUT/runs/$name.perf" -p "$SERVER_PID" &
        perf_pid=$!
        if [ -n "$PROFILE" ]; then
            taskset -c "$LOAD_CPU" perf record -q -e cpu-clock -F 499 --call-graph dwarf,16384 \
                -o "$OUT/runs/$name.perf.data" -p "$SERVER_PID" 2>/dev/null &
            perf_pid="$perf_pid $!"
        fi
        wait_for_line "$txt" '^step .*offered' "$gen" || ok=""
        snapshot "$OUT/runs/$name.end" "$gen"
        # shellcheck disable=SC2086
        kill -INT $perf_pid; for p in $perf_pid; do wait "$p" || true; done
    else
        ok=""
    fi
    wait "$gen" || ok=""
    [ -z "$idler" ] || { kill "$idler"; wait "$idler" 2>/dev/null || true; }
    kill "$SERVER_PID"; wait "$SERVER_PID" 2>/dev/null || true; SERVER_PID=""
    if [ -z "$ok" ]; then
        echo "$name: the generator failed, see $txt" >&2
        return 1
    fi
    python3 loadtest/cost-table.py record --name "$name" --server "$label" --rate "$rate" --run "$run" \
        --ticks-per-sec "$(getconf CLK_TCK)" --start "$OUT/runs/$name.start" --end "$OUT/runs/$name.end" \
        --perf "$OUT/runs/$name.perf" --report "$report" --out "$OUT/runs/$name.cost.json" || return 1
    rm -f "$OUT/runs/$name".{start,end,perf,html}
    grep -E '^step' "$txt" >&2 || true
}

files=() failed=()
# measure_or_note SERVER RATE RUN [IDLE]: measures; a failed measurement is named in the table.
measure_or_note() {
    local name
    name=$(run_name "$@")
    if measure "$@"; then files+=("$OUT/runs/$name.cost.json"); else failed+=("$name"); fi
}
for run in $(seq "$RUNS"); do
    for server in $SERVERS; do
        case "$server" in
            switchboard | switchboard-alt) for idle in $IDLE; do measure_or_note "$server" "$RATE" "$run" "$idle"; done ;;
            *) measure_or_note "$server" "$RATE" "$run" ;;
        esac
    done
    if [ -n "$HIGH_RATE" ]; then
        for server in $HIGH_SERVERS; do measure_or_note "$server" "$HIGH_RATE" "$run"; done
    fi
done
[ ${#files[@]} -gt 0 ] || { echo "every measurement failed" >&2; exit 1; }

busy=$(awk '{print $1, $2, $3}' /proc/loadavg)
{
    echo "$(date +%F), \`$([ "$SERVERS" = "$DEFAULT_SERVERS" ] || echo "SERVERS=\"$SERVERS\" ")RATE=$RATE${HIGH_RATE:+ HIGH_RATE=$HIGH_RATE}$([ "$IDLE" = 0 ] || echo " IDLE=\"$IDLE\"") DURATION=$DURATION RUNS=$RUNS loadtest/cost.sh $OUT\`, $(nproc) cores, load average at the end $busy"
    echo
    [ ${#failed[@]} -eq 0 ] || { echo "Failed, left out (see runs/NAME.txt): ${failed[*]}"; echo; }
    python3 loadtest/cost-table.py table --json "$OUT/cost.json" "${files[@]}"
} | tee "$OUT/table.md"
echo "results in $OUT (table.md, cost.json; runs/: per measurement)" >&2
