#!/usr/bin/env bash
# A live session at the scale of a popular stream: two Switchboard nodes on PostgreSQL and
# Redis, one host on node 1, VIEWERS viewers split over both nodes, then `loadtest live` at
# each comment rate in RATES. Prints per rate: joins per second, the comment ack and delivery
# p50/p99, deliveries per second, and the nodes' CPU per join and per delivery. Usage (from
# anywhere):
#
#   loadtest/live.sh [OUT_DIR]          # default loadtest/results/live-<date>
#
# Knobs (env): VIEWERS (19980: the generator holds every viewer's socket, < 20,000 here),
# RATES ("10": comments/s; one run each, every run on a fresh database and Redis prefix),
# DURATION (20), WARMUP (2), GRACE (10), CONCURRENCY (200 viewers joining at a time),
# LIVE_ARGS (more flags for the generator). Nothing is pinned: the two nodes, PostgreSQL,
# Redis and the generator share the machine's cores, as in the figures the README gives.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
OUT=${1:-loadtest/results/live-$(date +%F)}
VIEWERS=${VIEWERS:-19980} RATES=${RATES:-10} DURATION=${DURATION:-20} WARMUP=${WARMUP:-2}
GRACE=${GRACE:-10} CONCURRENCY=${CONCURRENCY:-200} LIVE_ARGS=${LIVE_ARGS:-}
JWT_SECRET="live-run-secret-0123456789abcdef0123"
PORT1=18381 PORT2=18382

# shellcheck source=pinned.sh
source loadtest/pinned.sh
start_cluster_run "$OUT"

for rate in $RATES; do
    db="live_${VIEWERS}_r${rate//./_}"
    psql -q "$SWITCHBOARD_TEST_DATABASE_URL" -c "DROP DATABASE IF EXISTS $db" -c "CREATE DATABASE $db"
    start_cluster_node 1 $PORT1 "$db" "$OUT/logs/$db.n1.log" SWITCHBOARD_LIVE_COMMENT_RATE=1000
    start_cluster_node 2 $PORT2 "$db" "$OUT/logs/$db.n2.log" SWITCHBOARD_LIVE_COMMENT_RATE=1000
    echo "== $VIEWERS viewers, $rate comments/s" >&2
    # shellcheck disable=SC2086
    "$LT" live --jwt-secret "$JWT_SECRET" --url ws://127.0.0.1:$PORT1 \
        --viewer-url ws://127.0.0.1:$PORT1 --viewer-url ws://127.0.0.1:$PORT2 \
        --viewers "$VIEWERS" --rate "$rate" --duration "$DURATION" --warmup "$WARMUP" --grace "$GRACE" \
        --connect-concurrency "$CONCURRENCY" --server-pid "${NODE_PIDS[0]}" --server-pid "${NODE_PIDS[1]}" \
        --out "$OUT/$db.json" $LIVE_ARGS >"$OUT/$db.txt" 2>&1 || { cat "$OUT/$db.txt" >&2; exit 1; }
    grep -v '^\s*$' "$OUT/$db.txt" | grep -v '^report written' >&2 || true
    sleep 2
    stop_nodes
done
echo "results in $OUT (per rate: JSON and generator output; logs/: the nodes)" >&2
