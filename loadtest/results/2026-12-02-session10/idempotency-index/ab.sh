#!/usr/bin/env bash
# Experiment: PostgreSQL's CPU with and without the (room_id, sender_id, client_id) unique index
# (dropped after migrations; the generator never resends), fixed rate, 1 GB buffers.
set -uo pipefail
cd /work/main
OUT=loadtest/results/2026-12-02-session10/idempotency-index
mkdir -p $OUT
LT=target/release/loadtest
RATE=${RATE:-4000}
source deploy/local/services.sh
cpu() { awk -v hz="$(getconf CLK_TCK)" '{print ($14 + $15 + $16 + $17) / hz}' "/proc/$1/stat" 2>/dev/null || echo 0; }
for v in ${VARIANTS:-keep drop keep drop}; do
  n=$((${n:-0}+1)); name="$n-$v"
  PG_SETTINGS="-c shared_buffers=1GB" start_postgres
  PG_PID=$(head -1 "$SERVICES_DIR/pg/data/postmaster.pid")
  for pid in $PG_PID $(pgrep -P "$PG_PID"); do taskset -a -cp 0 "$pid" >/dev/null; done
  BASE=${SWITCHBOARD_TEST_DATABASE_URL%/*}
  psql -q "$SWITCHBOARD_TEST_DATABASE_URL" -c "CREATE DATABASE sb_ab"
  taskset -c 1 env SWITCHBOARD_DATABASE_URL="$BASE/sb_ab" SWITCHBOARD_BIND=127.0.0.1:18281 SWITCHBOARD_RATE_PER_SEC=100000 SWITCHBOARD_RATE_BURST=100000 RUST_LOG=warn target/release/switchboard serve > $OUT/$name.server.log 2>&1 &
  SP=$!
  for _ in $(seq 100); do (echo > /dev/tcp/127.0.0.1/18281) 2>/dev/null && break; sleep 0.1; done
  [ "$v" = drop ] && psql "$BASE/sb_ab" -c "ALTER TABLE messages DROP CONSTRAINT messages_room_id_sender_id_client_id_key" > $OUT/$name.settings 2>&1
  taskset -c 0 $LT chat-mix --url ws://127.0.0.1:18281 --pairs 200 --groups 40 --group-size 5 --rates 1000 --step-secs 8 --step-warmup 0 --p99-limit-ms 100000 --connect-concurrency 96 >/dev/null 2>&1
  psql -q "$BASE/sb_ab" -c ANALYZE
  pg0=0; for p in $PG_PID $(pgrep -P "$PG_PID"); do pg0=$(echo "$pg0 + $(cpu $p)" | bc); done; s0=$(cpu $SP)
  taskset -c 0 $LT chat-mix --url ws://127.0.0.1:18281 --pairs 200 --groups 40 --group-size 5 --rates $RATE,$RATE,$RATE,$RATE --step-secs 30 --step-warmup 0 --p99-limit-ms 100000 --connect-concurrency 96 --label "$name" --out $OUT/$name.json > $OUT/$name.txt 2>&1
  pg1=0; for p in $PG_PID $(pgrep -P "$PG_PID"); do pg1=$(echo "$pg1 + $(cpu $p)" | bc); done; s1=$(cpu $SP)
  echo "server $(echo "$s1 - $s0" | bc) postgres $(echo "$pg1 - $pg0" | bc)" >> $OUT/$name.settings
  psql -At "$BASE/sb_ab" -c "select count(*) from messages" -c "select indexrelname, pg_size_pretty(pg_relation_size(indexrelid)) from pg_stat_user_indexes where relname='messages'" >> $OUT/$name.settings
  kill $SP; wait $SP 2>/dev/null
  stop_services
  echo "$name done: $(grep -c '^step' $OUT/$name.txt) steps" >&2
done
