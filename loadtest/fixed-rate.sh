#!/usr/bin/env bash
# Switchboard's chat mix at a fixed offered rate, pinned as compare.sh pins it: the A/B of two
# builds or two database settings, which compare only when their runs alternate on the same
# machine (its speed varies by the hour). Usage (from anywhere):
#
#   loadtest/fixed-rate.sh OUT_DIR
#
# A fresh PostgreSQL and database, the server on core $SERVER_CPU, compare.sh's warm-up and
# ANALYZE, then STEPS steps of STEP_SECS seconds at RATE events/s. Writes OUT_DIR/run.json,
# run.txt, server.log, cpu.txt (the CPU seconds of the server, PostgreSQL and the generator
# over the steps, the generator's with its connecting; PostgreSQL's WAL statistics and those
# of `rooms` and `messages`) and metrics-step1.txt (the server's /metrics late in step 1).
#
# Knobs (env): RATE (4000), STEPS (2), STEP_SECS (30), SB (the server binary, default
# target/release/switchboard, not rebuilt), PG_SETTINGS (see pinned.sh), AFTER_MIGRATE (SQL
# run on the database once the server has migrated it), PERF=1 (also a perf profile of
# PostgreSQL over 10 s of the first step: perf.txt), GEN_NICE (the generator's nice level),
# SERVER_CPU, LOAD_CPU, DB_CPUS (see pinned.sh).
#
# An A/B of two server builds, alternating:
#   for v in new old new old; do n=$((n + 1)); SB=/tmp/sb-$v loadtest/fixed-rate.sh out/$n-$v; done
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
OUT=${1:?usage: loadtest/fixed-rate.sh OUT_DIR}
RATE=${RATE:-4000} STEPS=${STEPS:-2} STEP_SECS=${STEP_SECS:-30}
SB=${SB:-$ROOT/target/release/switchboard}
LT="$ROOT/target/release/loadtest"
PORT=18281
mkdir -p "$OUT"

# shellcheck source=pinned.sh
source loadtest/pinned.sh
start_pinned_services
psql -q "$SWITCHBOARD_TEST_DATABASE_URL" -c "CREATE DATABASE sb_fixed"
DB="$PG_BASE/sb_fixed"

taskset -c "$SERVER_CPU" env SWITCHBOARD_DATABASE_URL="$DB" SWITCHBOARD_BIND="127.0.0.1:$PORT" \
    SWITCHBOARD_RATE_PER_SEC=100000 SWITCHBOARD_RATE_BURST=100000 SWITCHBOARD_MAX_CONNECTIONS_PER_IP=1000000 RUST_LOG=warn "$SB" serve >"$OUT/server.log" 2>&1 &
SERVER_PID=$!
wait_port "$PORT"
[ -n "${AFTER_MIGRATE:-}" ] && psql -q "$DB" -c "$AFTER_MIGRATE"
taskset -c "$LOAD_CPU" "$LT" chat-mix --url "ws://127.0.0.1:$PORT" $WARMUP_ARGS >/dev/null 2>&1 || true
psql -q "$DB" -c "ANALYZE" -c "SELECT pg_stat_reset_shared('wal')" >/dev/null

rates=$(printf "$RATE,%.0s" $(seq "$STEPS")); rates=${rates%,}
s0=$(cpu_secs "$SERVER_PID"); p0=$(pg_cpu)
taskset -c "$LOAD_CPU" nice -n "${GEN_NICE:-0}" "$LT" chat-mix --url "ws://127.0.0.1:$PORT" \
    --pairs 200 --groups 40 --group-size 5 --rates "$rates" --step-secs "$STEP_SECS" --step-warmup 0 --p99-limit-ms 100000 --connect-concurrency 96 \
    --label "$(basename "$OUT")" --out "$OUT/run.json" >"$OUT/run.txt" 2>&1 &
gen=$!
if [ -n "${PERF:-}" ]; then
    (sleep $((STEP_SECS / 2)); perf record -F 999 -g -o "$OUT/perf.data" -p "$(echo $PG_PID $(pgrep -P "$PG_PID") | tr ' ' ,)" \
        -- sleep 10 >/dev/null 2>&1) &
    perf_pid=$!
fi
gcpu=0
metrics_at=$((SECONDS + STEP_SECS + 5))
while kill -0 "$gen" 2>/dev/null; do
    gcpu=$(cpu_secs "$gen")
    # The writer's histograms once, late in the first step.
    [ "$SECONDS" -ge "$metrics_at" ] && [ ! -f "$OUT/metrics-step1.txt" ] \
        && curl -s "http://127.0.0.1:$PORT/metrics" >"$OUT/metrics-step1.txt"
    sleep 1
done
wait "$gen" || echo "the generator failed, see $OUT/run.txt" >&2
[ -n "${perf_pid:-}" ] && wait "$perf_pid"
s1=$(cpu_secs "$SERVER_PID"); p1=$(pg_cpu)
{
    echo "cpu-s over the steps: server $(echo "$s1 - $s0" | bc) postgres $(echo "$p1 - $p0" | bc) generator $gcpu"
    psql -q "$DB" -c "SELECT wal_records, wal_fpi, wal_bytes, wal_write FROM pg_stat_wal" \
        -c "SELECT relname, n_live_tup, n_dead_tup, n_tup_hot_upd, pg_relation_size(relid) / 8192 AS pages, autovacuum_count, autoanalyze_count
            FROM pg_stat_user_tables WHERE relname IN ('rooms', 'messages')"
} >"$OUT/cpu.txt"
if [ -n "${PERF:-}" ]; then # (head ends perf's output early: not a failure)
    perf report -i "$OUT/perf.data" --no-children --sort sym --stdio -g none 2>/dev/null | grep '%' | head -40 >"$OUT/perf.txt" || true
    perf report -i "$OUT/perf.data" --children --sort sym --stdio -g none 2>/dev/null | grep '%' | head -60 >>"$OUT/perf.txt" || true
    rm -f "$OUT/perf.data"
fi
cat "$OUT/cpu.txt" >&2
grep '^step' "$OUT/run.txt" >&2 || true
