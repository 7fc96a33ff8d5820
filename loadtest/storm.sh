#!/usr/bin/env bash
# A reconnect storm: two Switchboard nodes on PostgreSQL and Redis, CLIENTS clients chatting in
# pairs (each pair on one node) drop their connections at the same instant, reconnect and
# resync by history; `loadtest reconnect-storm` reports how long they took to be back and
# whether anything was lost or stored twice, and this script the CPU the nodes, PostgreSQL and
# Redis spent over the storm's first WINDOW seconds (with the commands Redis ran and the reads
# they came in), and how soon the nodes' Redis subscriptions (their users' and rooms' channels,
# which cross-node pushes need) were all back. RUNS runs, each on a fresh database and Redis
# prefix. Usage (from anywhere):
#
#   loadtest/storm.sh [OUT_DIR]          # default loadtest/results/storm-<date>
#
# Knobs (env): CLIENTS (19980: the generator holds every socket, < 20,000 here), RATE (2000
# msg/s over all clients), RUNS (1), RECONNECT_CONCURRENCY (2000), STORM_ARGS (more flags for
# the generator), NODE_ENV (settings for both nodes, VAR=VALUE words), WINDOW (10), SB (the
# server binary; default this checkout's release build). Nothing is pinned: the nodes,
# PostgreSQL, Redis and the generator share the machine's cores.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
OUT=${1:-loadtest/results/storm-$(date +%F)}
CLIENTS=${CLIENTS:-19980} RATE=${RATE:-2000} RUNS=${RUNS:-1}
RECONNECT_CONCURRENCY=${RECONNECT_CONCURRENCY:-2000} STORM_ARGS=${STORM_ARGS:-} NODE_ENV=${NODE_ENV:-}
WINDOW=${WINDOW:-10} BEFORE=5
JWT_SECRET="storm-run-secret-0123456789abcdef0123"
PORT1=18391 PORT2=18392

# shellcheck source=pinned.sh
source loadtest/pinned.sh
# Autovacuum looks every second (default: a minute), so that the planner has statistics for
# the tables the set-up has just filled, as a database that has lived longer than a minute does.
PG_SETTINGS=${PG_SETTINGS:--c autovacuum_naptime=1} start_cluster_run "$OUT"
nodes_cpu() { echo "$(cpu_secs "${NODE_PIDS[0]}") + $(cpu_secs "${NODE_PIDS[1]}")" | bc; }
REDIS_PID=$(cat "$REDIS_DIR/redis.pid")
# redis_requests: the commands Redis has run and the socket reads they came in, so far.
redis_requests() {
    redis-cli -p "$REDIS_PORT" info stats | awk -F: '/^total_commands_processed/ { c = $2 + 0 }
        /^total_reads_processed/ { r = $2 + 0 } END { print c, r }'
}
# sample_subscriptions PREFIX: every half second, the seconds since it started and how many
# Redis channels under PREFIX the nodes are subscribed to; until killed.
sample_subscriptions() {
    local t0
    t0=$(date +%s.%N)
    while :; do
        echo "$(echo "$(date +%s.%N) - $t0" | bc) $(redis-cli -p "$REDIS_PORT" pubsub channels "$1:*" | wc -l)"
        sleep 0.5
    done
}
# subscriptions_summary FILE STORM_AT: the count at the storm, the fewest after it, and when
# the count was back (seconds after the storm).
subscriptions_summary() {
    awk -v at="$2" '$1 < at { before = $2; next }
        { if (fewest == "" || $2 < fewest) fewest = $2; if (back == "" && fewest < before && $2 >= before) back = $1 - at }
        END { printf "Redis subscriptions: %d at the storm, fewest %d, all back %s\n", before, fewest,
              back == "" ? "not within the run" : sprintf("%.1f s after it", back) }' "$1"
}

for run in $(seq "$RUNS"); do
    db="storm_${CLIENTS}_$run"
    psql -q "$SWITCHBOARD_TEST_DATABASE_URL" -c "DROP DATABASE IF EXISTS $db" -c "CREATE DATABASE $db"
    # shellcheck disable=SC2086
    start_cluster_node 1 $PORT1 "$db" "$OUT/logs/$db.n1.log" $NODE_ENV
    # shellcheck disable=SC2086
    start_cluster_node 2 $PORT2 "$db" "$OUT/logs/$db.n2.log" $NODE_ENV
    echo "== run $run: $CLIENTS clients, $RATE msg/s" >&2
    txt="$OUT/$db.txt"
    # shellcheck disable=SC2086
    "$LT" reconnect-storm --jwt-secret "$JWT_SECRET" --url ws://127.0.0.1:$PORT1 \
        --node-url ws://127.0.0.1:$PORT2 --clients "$CLIENTS" --rate "$RATE" --before $BEFORE --after 30 \
        --grace 15 --connect-concurrency 200 --reconnect-concurrency "$RECONNECT_CONCURRENCY" \
        --out "$OUT/$db.json" $STORM_ARGS >"$txt" 2>&1 &
    lt=$!
    # The generator starts its clock 0.2 s after saying it has set up; the storm comes BEFORE s later.
    until grep -q '^set up' "$txt" || ! kill -0 $lt 2>/dev/null; do sleep 0.1; done
    sample_subscriptions "$db" >"$OUT/$db.subscriptions" &
    sampler=$!
    sleep "$(echo "$BEFORE + 0.2" | bc)"
    n0=$(nodes_cpu) p0=$(pg_cpu) r0=$(cpu_secs "$REDIS_PID") q0=$(redis_requests)
    sleep "$WINDOW"
    n1=$(nodes_cpu) p1=$(pg_cpu) r1=$(cpu_secs "$REDIS_PID") q1=$(redis_requests)
    wait $lt || { cat "$txt" >&2; exit 1; }
    kill $sampler
    echo "CPU over the storm's first $WINDOW s: nodes $(echo "$n1 - $n0" | bc) s, PostgreSQL $(echo "$p1 - $p0" | bc) s, Redis $(echo "$r1 - $r0" | bc) s ($((${q1% *} - ${q0% *})) commands in $((${q1#* } - ${q0#* })) reads)" >>"$txt"
    subscriptions_summary "$OUT/$db.subscriptions" "$(echo "$BEFORE + 0.2" | bc)" >>"$txt"
    grep -E 'reconnect-storm +run|lost|back|^CPU' "$OUT/$db.txt" >&2 || true
    sleep 2
    stop_nodes
done
echo "results in $OUT (per run: JSON and generator output; logs/: the nodes)" >&2
