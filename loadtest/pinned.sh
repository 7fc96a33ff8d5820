# What compare.sh, fixed-rate.sh, cluster-cost.sh, cost.sh, live.sh and storm.sh share (source
# it from the repository's root): the cores, the chat mix's warm-up, PostgreSQL and Redis started and
# pinned to the load core, a trap that stops them and the server on exit, and the CPU seconds
# of processes.
#
# CPU sharing (2 cores): the server under test alone on core $SERVER_CPU (1); the generator,
# PostgreSQL and Redis together on core $LOAD_CPU (0). PostgreSQL runs with fsync=off (what is
# measured is CPU, not this machine's disk) and PG_SETTINGS (default: shared_buffers=1GB, as
# a production database would be sized: the chat mix stores ~580 bytes of table and index per
# message, so a ramp outgrows the default 128 MB after ~200,000 messages; at a fixed rate 1 GB
# spared PostgreSQL's backends their own evictions and 2-9 % of its CPU, 2026-12-02: see
# "Tried and measured" in loadtest/README.md).

# shellcheck source=../deploy/local/services.sh
source deploy/local/services.sh
SERVER_CPU=${SERVER_CPU:-1}
LOAD_CPU=${LOAD_CPU:-0}
# The cores PostgreSQL and Redis may use (a taskset list).
DB_CPUS=${DB_CPUS:-$LOAD_CPU}
# The unmeasured warm-up before each measured run, followed by ANALYZE.
WARMUP_ARGS=${WARMUP_ARGS:---pairs 200 --groups 40 --group-size 5 --rates 1000 --step-secs 8 --step-warmup 0 --p99-limit-ms 100000 --connect-concurrency 96}

# The server under test (its pid, once started), stopped with the services on exit.
SERVER_PID=""
cleanup() {
    [ -n "$SERVER_PID" ] && kill "$SERVER_PID" 2>/dev/null || true
    stop_services
}
trap cleanup EXIT

# start_pinned_services: PostgreSQL and Redis on $DB_CPUS (the postmaster's backends inherit
# it); sets PG_PID and PG_BASE (the server's URL without a database name).
start_pinned_services() {
    PG_SETTINGS=${PG_SETTINGS:--c shared_buffers=1GB} start_postgres
    start_redis
    PG_PID=$(head -1 "$SERVICES_DIR/pg/data/postmaster.pid")
    local pid
    for pid in $PG_PID $(pgrep -P "$PG_PID"); do taskset -a -cp "$DB_CPUS" "$pid" >/dev/null; done
    taskset -a -cp "$DB_CPUS" "$(cat "$REDIS_DIR/redis.pid")" >/dev/null
    PG_BASE=${SWITCHBOARD_TEST_DATABASE_URL%/*}
}

# The nodes of a run of several (their pids, appended as they start), stopped by stop_nodes.
NODE_PIDS=()
stop_nodes() {
    local pid
    for pid in "${NODE_PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${NODE_PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
    NODE_PIDS=()
}

# start_cluster_run OUT: what a run of cluster nodes needs first (live.sh, storm.sh): OUT/logs,
# the release builds ($LT: the generator), the file limit raised for ~20,000 sockets,
# PostgreSQL (with PG_SETTINGS) and Redis unpinned, a trap that stops the nodes and them on
# exit; sets PG_BASE and PG_PID.
start_cluster_run() {
    mkdir -p "$1/logs"
    cargo build --release -q -p switchboard -p loadtest
    LT="$ROOT/target/release/loadtest"
    ulimit -n 20000
    trap 'stop_nodes; stop_services' EXIT
    start_postgres
    start_redis
    PG_BASE=${SWITCHBOARD_TEST_DATABASE_URL%/*}
    PG_PID=$(head -1 "$SERVICES_DIR/pg/data/postmaster.pid")
}

# start_cluster_node I PORT DB LOG [VAR=VALUE ...]: node nI of a cluster run, unpinned, on
# PostgreSQL ($PG_BASE/DB) and Redis (prefix DB), the rate and per-address caps out of the
# generator's way, the extra settings given; its pid appended to NODE_PIDS once it listens.
# The binary is $SB if set.
start_cluster_node() {
    local i=$1 port=$2 db=$3 log=$4
    shift 4
    env SWITCHBOARD_DATABASE_URL="$PG_BASE/$db" SWITCHBOARD_REDIS_URL="$SWITCHBOARD_TEST_REDIS_URL" \
        SWITCHBOARD_REDIS_PREFIX="$db" SWITCHBOARD_NODE_ID="n$i" SWITCHBOARD_BIND="127.0.0.1:$port" \
        SWITCHBOARD_JWT_SECRET="$JWT_SECRET" SWITCHBOARD_RATE_PER_SEC=100000 SWITCHBOARD_RATE_BURST=100000 \
        SWITCHBOARD_MAX_CONNECTIONS_PER_IP=1000000 RUST_LOG=warn "$@" \
        "${SB:-$ROOT/target/release/switchboard}" serve >"$log" 2>&1 &
    NODE_PIDS+=($!)
    wait_port "$port"
}

cpu_secs() { # utime + stime of a process and its children so far, in seconds
    awk -v hz="$(getconf CLK_TCK)" '{print ($14 + $15 + $16 + $17) / hz}' "/proc/$1/stat" 2>/dev/null || echo 0
}

pg_cpu() { # all of PostgreSQL's processes
    local s=0 p
    for p in $PG_PID $(pgrep -P "$PG_PID"); do s=$(echo "$s + $(cpu_secs "$p")" | bc); done
    echo "$s"
}

wait_port() {
    for _ in $(seq 100); do (echo > "/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.1; done
    echo "nothing listens on port $1" >&2; return 1
}
