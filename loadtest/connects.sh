#!/usr/bin/env bash
# What a connection costs the nodes of a cluster: two nodes on PostgreSQL and Redis, N
# connections opened over both (200 at a time), held HOLD seconds and closed; the CPU the nodes,
# Redis and PostgreSQL spent from before the first to after the last close, per connection.
# Each build of BUILDS (server binaries, space-separated; default this checkout's release
# build) is run in turn, ROUNDS times, alternating. Usage (from anywhere):
#
#   loadtest/connects.sh [OUT_DIR]       # default loadtest/results/connects-<date>
#
# Knobs (env): N (19000: the generator holds every socket, < 20,000 here), HOLD (3), ROUNDS
# (2), BUILDS. Nothing is pinned.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
OUT=${1:-loadtest/results/connects-$(date +%F)}
N=${N:-19000} HOLD=${HOLD:-3} ROUNDS=${ROUNDS:-2} BUILDS=${BUILDS:-$ROOT/target/release/switchboard}
JWT_SECRET="connects-run-secret-0123456789abcdef01"
PORT1=18491 PORT2=18492

# shellcheck source=pinned.sh
source loadtest/pinned.sh
start_cluster_run "$OUT"
REDIS_PID=$(cat "$REDIS_DIR/redis.pid")
# cpu: the nodes', Redis's and PostgreSQL's CPU seconds so far.
cpu() { echo "$(cpu_secs "${NODE_PIDS[0]}") + $(cpu_secs "${NODE_PIDS[1]}")" | bc; cpu_secs "$REDIS_PID"; pg_cpu; }
per_connection() { echo "($2 - $1) * 1000000 / $N" | bc; }

run=0
for _ in $(seq "$ROUNDS"); do
    for build in $BUILDS; do
        run=$((run + 1)) db="connects_$run"
        psql -q "$SWITCHBOARD_TEST_DATABASE_URL" -c "DROP DATABASE IF EXISTS $db" -c "CREATE DATABASE $db"
        SB=$build start_cluster_node 1 $PORT1 "$db" "$OUT/logs/$db.n1.log"
        SB=$build start_cluster_node 2 $PORT2 "$db" "$OUT/logs/$db.n2.log"
        sleep 2
        mapfile -t before < <(cpu)
        "$LT" connect --jwt-secret "$JWT_SECRET" --url ws://127.0.0.1:$PORT1 --node-url ws://127.0.0.1:$PORT2 \
            --connections "$N" --hold "$HOLD" --connect-concurrency 200 --source-ips 2 >"$OUT/$db.txt" 2>&1
        sleep 4 # the closes reach Redis and PostgreSQL
        mapfile -t after < <(cpu)
        echo "run $run, $build: µs of CPU per connection: nodes $(per_connection "${before[0]}" "${after[0]}"), Redis $(per_connection "${before[1]}" "${after[1]}"), PostgreSQL $(per_connection "${before[2]}" "${after[2]}"); $(grep -m1 -o '[0-9]* connected.*/s)' "$OUT/$db.txt")" | tee -a "$OUT/summary.txt"
        stop_nodes
    done
done
echo "results in $OUT (summary.txt; per run the generator's output; logs/: the nodes)" >&2
