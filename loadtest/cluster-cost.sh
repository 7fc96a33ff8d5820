#!/usr/bin/env bash
# The cost of a message, side by side: Switchboard on 1, 2 and 3 nodes, then the Socket.IO
# peer (@socket.io/redis-adapter) on 1, 2 and 3 nodes, each driven by `loadtest cluster-cost`
# with the same rooms and rate; prints a markdown table per node: bus messages received ÷
# messages addressed to the node's users, bus bytes received and published, CPU per delivery.
# Usage (from anywhere):
#
#   loadtest/cluster-cost.sh [--redis single|cluster] [--out DIR]
#
#   --redis single    one Redis 7 under both servers (default): Switchboard with
#                     SWITCHBOARD_REDIS_URL, the peer with createAdapter (PUBLISH/PSUBSCRIBE)
#   --redis cluster   a Redis Cluster of three masters (deploy/local/services.sh's
#                     start_redis_cluster): Switchboard with SWITCHBOARD_REDIS_CLUSTER_NODES
#                     (SSUBSCRIBE/SPUBLISH), the peer with createShardedAdapter on node-redis's
#                     cluster client
#   --out DIR         default loadtest/results/cluster-cost-<date>-<redis>
#
# Cores as loadtest/pinned.sh sets them: the nodes under test on core $SERVER_CPU (1), the
# generator, PostgreSQL and Redis on core $LOAD_CPU (0). One server's nodes run at a time, each
# configuration on a fresh database; an unmeasured run of WARMUP_SECS (10) comes first, so
# that the measured one finds Node's JIT and both servers' caches warm.
#
# Knobs (env): RATE (messages/s, 200), DURATION (measured seconds, 30), WARMUP_SECS,
# NODE_COUNTS ("1 2 3"), SERVERS ("switchboard socketio-peer"), COST_ARGS (more flags for the
# generator, e.g. "--spanning-share 0.3"), RUNS (1: the whole sequence that many times, files
# suffixed -runN; the table gives each figure's median over the runs and CPU per delivery's
# range: the bus figures repeat exactly, CPU time on a shared 2-core machine does not),
# SERVER_CPU, LOAD_CPU, DB_CPUS, PG_SETTINGS.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
REDIS_MODE=single
OUT=""
while [ $# -gt 0 ]; do
    case "$1" in
        --redis) REDIS_MODE=${2:?--redis needs single or cluster}; shift 2 ;;
        --out) OUT=${2:?--out needs a folder}; shift 2 ;;
        *) echo "usage: $0 [--redis single|cluster] [--out DIR]" >&2; exit 2 ;;
    esac
done
case "$REDIS_MODE" in single | cluster) ;; *) echo "--redis: single or cluster" >&2; exit 2 ;; esac
OUT=${OUT:-loadtest/results/cluster-cost-$(date +%F)-$REDIS_MODE}
RATE=${RATE:-200} DURATION=${DURATION:-30} WARMUP_SECS=${WARMUP_SECS:-10}
NODE_COUNTS=${NODE_COUNTS:-1 2 3}
SERVERS=${SERVERS:-switchboard socketio-peer}
COST_ARGS=${COST_ARGS:-}
RUNS=${RUNS:-1}
JWT_SECRET="cluster-cost-run-secret-0123456789abcdef"
SB_BASE_PORT=18280 SIO_BASE_PORT=18290
mkdir -p "$OUT/logs"

cargo build --release -q -p switchboard -p loadtest
LT="$ROOT/target/release/loadtest"
(cd loadtest/peers/socketio && npm ci --no-audit --no-fund --loglevel=error)

# shellcheck source=pinned.sh
source loadtest/pinned.sh
trap 'stop_nodes; stop_services' EXIT

start_pinned_services
if [ "$REDIS_MODE" = cluster ]; then
    if ! declare -F start_redis_cluster >/dev/null; then
        echo "deploy/local/services.sh has no start_redis_cluster: --redis cluster needs it" >&2
        exit 1
    fi
    start_redis_cluster
    for pidfile in "$SERVICES_DIR"/redis-cluster/*/redis.pid; do
        taskset -a -cp "$DB_CPUS" "$(cat "$pidfile")" >/dev/null
    done
fi
PG_ADMIN=$SWITCHBOARD_TEST_DATABASE_URL

# start_node SERVER I PORT DB LOG: one node, pinned; its pid appended to NODE_PIDS.
start_node() {
    local server=$1 i=$2 port=$3 db=$4 log=$5 redis=()
    if [ "$server" = switchboard ]; then
        if [ "$REDIS_MODE" = cluster ]; then
            redis=(SWITCHBOARD_REDIS_CLUSTER_NODES="$REDIS_CLUSTER_NODES")
        else
            redis=(SWITCHBOARD_REDIS_URL="$SWITCHBOARD_TEST_REDIS_URL")
        fi
        taskset -c "$SERVER_CPU" env "${redis[@]}" SWITCHBOARD_DATABASE_URL="$PG_BASE/$db" \
            SWITCHBOARD_REDIS_PREFIX="$db" SWITCHBOARD_NODE_ID="n$i" SWITCHBOARD_BIND="127.0.0.1:$port" \
            SWITCHBOARD_JWT_SECRET="$JWT_SECRET" SWITCHBOARD_RATE_PER_SEC=100000 SWITCHBOARD_RATE_BURST=100000 \
            SWITCHBOARD_MAX_CONNECTIONS_PER_IP=1000000 RUST_LOG=warn \
            "$ROOT/target/release/switchboard" serve >"$log" 2>&1 &
    else
        if [ "$REDIS_MODE" = cluster ]; then
            redis=(REDIS_CLUSTER_NODES="$REDIS_CLUSTER_NODES")
        else
            redis=(REDIS_URL="$SWITCHBOARD_TEST_REDIS_URL")
        fi
        taskset -c "$SERVER_CPU" env "${redis[@]}" PORT="$port" DATABASE_URL="$PG_BASE/$db" \
            JWT_SECRET="$JWT_SECRET" BUS_METRICS=1 node loadtest/peers/socketio/server.js >"$log" 2>&1 &
    fi
    NODE_PIDS+=($!)
    # The first node creates the schema (migrations, or the peer's tables) before the others.
    wait_port "$port"
}

# measure SERVER N [SUFFIX]: N nodes on a fresh database, a warm-up run, the measured run
# (SERVER-N[SUFFIX].json), nodes stopped.
measure() {
    local server=$1 n=$2 name="$1-$2${3:-}" base framing db urls=() pids=() i
    if [ "$server" = switchboard ]; then base=$SB_BASE_PORT framing=native; else base=$SIO_BASE_PORT framing=socketio; fi
    db="cc_${server//-/_}_$n"
    psql -q "$PG_ADMIN" -c "DROP DATABASE IF EXISTS $db" -c "CREATE DATABASE $db"
    echo "== $name" >&2
    for i in $(seq "$n"); do
        start_node "$server" "$i" $((base + i)) "$db" "$OUT/logs/$name.node$i.log"
        urls+=(--node-url "ws://127.0.0.1:$((base + i))") pids+=(--server-pid "${NODE_PIDS[-1]}")
    done
    urls[0]=--url
    local common=(--framing "$framing" --jwt-secret "$JWT_SECRET" "${urls[@]}" --rate "$RATE" --connect-concurrency 96)
    # shellcheck disable=SC2086
    taskset -c "$LOAD_CPU" "$LT" cluster-cost "${common[@]}" --duration "$WARMUP_SECS" $COST_ARGS \
        >"$OUT/logs/$name.warmup.txt" 2>&1 || { echo "$name: the warm-up failed, see $OUT/logs/$name.warmup.txt" >&2; exit 1; }
    # shellcheck disable=SC2086
    taskset -c "$LOAD_CPU" "$LT" cluster-cost "${common[@]}" "${pids[@]}" --duration "$DURATION" $COST_ARGS \
        --label "$name" --out "$OUT/$name.json" >"$OUT/$name.txt" 2>&1 \
        || { echo "$name: the run failed, see $OUT/$name.txt" >&2; exit 1; }
    rm -f "$OUT/$name.html"
    grep -v '^\s*$' "$OUT/$name.txt" | grep -v '^report written' >&2 || true
    # The generator's users have just closed: let their offline work finish before the stop.
    sleep 2
    stop_nodes
}

files=()
for run in $(seq "$RUNS"); do
    suffix=""; [ "$RUNS" -gt 1 ] && suffix="-run$run"
    for server in $SERVERS; do
        for n in $NODE_COUNTS; do
            measure "$server" "$n" "$suffix"
            files+=("$OUT/$server-$n$suffix.json")
        done
    done
done

{
    echo "$(date +%F), \`loadtest/cluster-cost.sh --redis $REDIS_MODE\` (RATE=$RATE DURATION=$DURATION RUNS=$RUNS${COST_ARGS:+ COST_ARGS=\"$COST_ARGS\"})"
    echo
    python3 loadtest/cluster-cost-table.py "${files[@]}"
} | tee "$OUT/table.md"
echo "results in $OUT (table.md; per configuration: JSON and generator output; logs/: warm-ups, nodes)" >&2
