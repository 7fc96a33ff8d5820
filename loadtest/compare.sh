#!/usr/bin/env bash
# The chat mix against Switchboard, the Socket.IO peer and the bare relay, one after the other
# on the same cores, then the ratios. Usage (from anywhere):
#
#   loadtest/compare.sh [OUT_DIR]          default OUT_DIR: loadtest/results/compare-<date>
#
# CPU sharing (2 cores), as loadtest/pinned.sh sets it up: the server under test alone on core
# $SERVER_CPU (1); the generator, PostgreSQL and Redis together on core $LOAD_CPU (0). Each
# server gets the same core in turn; none runs while another is measured. Per run, the CPU
# seconds used by the server, the generator and PostgreSQL are added to the JSON report
# (`cpu_secs`). PostgreSQL runs with fsync=off and PG_SETTINGS (default: 1 GB of
# shared_buffers, for both servers that persist; see pinned.sh).
#
# Knobs (env): CHAT_MIX_ARGS (the generator's chat-mix flags), SERVER_CPU, LOAD_CPU, DB_CPUS,
# PG_SETTINGS, WARMUP_ARGS (the unmeasured warm-up before each measured run, followed by
# ANALYZE; see pinned.sh), SKIP_SIO_FRAMING=1 (skip Switchboard driven over Socket.IO
# framing), RUNS (default 1: run the whole sequence that many times, so that the servers
# alternate, each run on a fresh database; files get a -N suffix, and the median of each
# server's runs is printed: one run of a server on a shared 2-core machine can be a step above
# or below its usual).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
OUT=${1:-loadtest/results/compare-$(date +%F)}
CHAT_MIX_ARGS=${CHAT_MIX_ARGS:---pairs 200 --groups 40 --group-size 5 --start-rate 1000 --step-factor 1.15 --step-secs 10 --step-warmup 2 --steps-past-limit 2 --connect-concurrency 96}
RUNS=${RUNS:-1}
SB_PORT=18181 SIO_PORT=18195 BARE_PORT=18190
mkdir -p "$OUT"

cargo build --release -q --workspace
LT="$ROOT/target/release/loadtest"
(cd loadtest/peers/socketio && npm ci --no-audit --no-fund --loglevel=error)

# shellcheck source=pinned.sh
source loadtest/pinned.sh
start_pinned_services
PG_ADMIN=$SWITCHBOARD_TEST_DATABASE_URL

# run NAME FRAMING PORT DB -- SERVER COMMAND…: start the server pinned, warm up, ANALYZE,
# measure, stop.
run() {
    local name=$1 framing=$2 port=$3 db=$4; shift 5
    echo "== $name" >&2
    taskset -c "$SERVER_CPU" "$@" >"$OUT/$name.server.log" 2>&1 &
    SERVER_PID=$!
    wait_port "$port"
    taskset -c "$LOAD_CPU" "$LT" chat-mix --url "ws://127.0.0.1:$port" --framing "$framing" $WARMUP_ARGS \
        >/dev/null 2>&1 || true
    [ -n "$db" ] && psql -q "$PG_BASE/$db" -c "ANALYZE" >/dev/null
    local s0 p0 g
    s0=$(cpu_secs "$SERVER_PID"); p0=$(pg_cpu)
    local start=$SECONDS
    taskset -c "$LOAD_CPU" "$LT" chat-mix --url "ws://127.0.0.1:$port" --framing "$framing" --label "$name" \
        $CHAT_MIX_ARGS --out "$OUT/$name.json" > "$OUT/$name.txt" 2>&1 &
    local gen=$!
    local gcpu=0
    while kill -0 "$gen" 2>/dev/null; do gcpu=$(cpu_secs "$gen"); sleep 1; done
    wait "$gen" || { echo "$name: the generator failed, see $OUT/$name.txt" >&2; }
    local wall=$((SECONDS - start))
    s=$(cpu_secs "$SERVER_PID"); p=$(pg_cpu)
    python3 - "$OUT/$name.json" "$(echo "$s - $s0" | bc)" "$gcpu" "$(echo "$p - $p0" | bc)" "$wall" <<'PY'
import json, sys
path, server, gen, pg, wall = sys.argv[1], *map(float, sys.argv[2:])
r = json.load(open(path))
r["cpu_secs"] = {"server": round(server, 2), "generator": round(gen, 2), "postgres": round(pg, 2), "wall": wall}
json.dump(r, open(path, "w"), indent=2)
PY
    kill "$SERVER_PID"; wait "$SERVER_PID" 2>/dev/null || true; SERVER_PID=""
    tail -n +2 "$OUT/$name.txt" | grep -E "^step|max rate" >&2 || true
}

files=()
for i in $(seq "$RUNS"); do
    suffix=""; [ "$RUNS" -gt 1 ] && suffix="-$i"
    for db in sb_compare sio_compare; do
        psql -q "$PG_ADMIN" -c "DROP DATABASE IF EXISTS $db" -c "CREATE DATABASE $db"
    done
    SB_ENV=(SWITCHBOARD_DATABASE_URL="$PG_BASE/sb_compare" SWITCHBOARD_BIND="127.0.0.1:$SB_PORT"
            SWITCHBOARD_RATE_PER_SEC=100000 SWITCHBOARD_RATE_BURST=100000 SWITCHBOARD_MAX_CONNECTIONS_PER_IP=1000000 RUST_LOG=warn)
    run "switchboard$suffix" native $SB_PORT sb_compare -- env "${SB_ENV[@]}" "$ROOT/target/release/switchboard" serve
    files+=("$OUT/switchboard$suffix.json")
    if [ -z "${SKIP_SIO_FRAMING:-}" ]; then
        run "switchboard-socketio-framing$suffix" socketio $SB_PORT sb_compare -- \
            env "${SB_ENV[@]}" "$ROOT/target/release/switchboard" serve
        files+=("$OUT/switchboard-socketio-framing$suffix.json")
    fi
    run "socket.io$suffix" socketio $SIO_PORT sio_compare -- env PORT=$SIO_PORT DATABASE_URL="$PG_BASE/sio_compare" \
        node loadtest/peers/socketio/server.js
    run "bare-relay$suffix" native $BARE_PORT "" -- "$ROOT/target/release/bare-relay" "127.0.0.1:$BARE_PORT"
    files+=("$OUT/socket.io$suffix.json" "$OUT/bare-relay$suffix.json")
done

"$LT" report --out "$OUT/compare.html" "${files[@]}"
echo "results in $OUT (compare.html; one JSON, log and HTML per server)" >&2
if [ "$RUNS" -gt 1 ]; then
    # Each server's runs and their median (of the highest rate within the limit), and the
    # ratios of the medians.
    python3 - "${files[@]}" <<'PY'
import json, statistics, sys
runs = {}
for path in sys.argv[1:]:
    r = json.load(open(path))
    runs.setdefault(r["label"].rsplit("-", 1)[0], []).append(r["max_rate_within_limit"] or 0)
medians = {name: statistics.median(rates) for name, rates in runs.items()}
for name, rates in runs.items():
    print(f"{name:32} runs {', '.join(f'{x:,.0f}' for x in rates):40} median {medians[name]:,.0f}")
sb = medians.get("switchboard")
for peer in ("socket.io", "bare-relay"):
    if sb and medians.get(peer):
        print(f"switchboard / {peer}: {sb / medians[peer]:.2f} (medians)")
PY
fi
