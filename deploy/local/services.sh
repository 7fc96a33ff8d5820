#!/usr/bin/env bash
# Throwaway PostgreSQL and Redis servers for tests and local clusters, on free loopback
# ports under one temporary folder. Source it, then call:
#   start_postgres   exports SWITCHBOARD_TEST_DATABASE_URL (an admin URL; tests create a database each);
#                    PG_SETTINGS adds server settings, e.g. PG_SETTINGS="-c shared_buffers=1GB"
#   start_redis      exports SWITCHBOARD_TEST_REDIS_URL, REDIS_PORT, REDIS_DIR
#   start_redis_cluster  a Redis Cluster of three masters; exports REDIS_CLUSTER_NODES (seeds)
#   ensure_schemathesis  installs the API tester in a venv; exports SCHEMATHESIS
#   ensure_chromium  installs Debian's Chromium (the demo's browser test) where missing
#   stop_services    stops whatever was started
# Installs the servers with apt-get when they are missing (PostgreSQL 15 is usually there).

SERVICES_DIR="${SERVICES_DIR:-$(mktemp -d /tmp/switchboard-services.XXXXXX)}"
_started_pg=""
_started_redis=""
_started_redis_cluster=""

_as_root() {
    if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else
        echo "need root to run: $*" >&2; return 1; fi
}

_apt_install() {
    echo "installing $* with apt-get" >&2
    _as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2
    _as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >&2
}

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

_pg_bin() {
    if command -v pg_ctl >/dev/null 2>&1; then dirname "$(command -v pg_ctl)"; return; fi
    local dir
    dir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
    if [ -n "$dir" ]; then echo "$dir"; return; fi
    _apt_install postgresql
    ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1
}

start_postgres() {
    local bin port data run
    bin=$(_pg_bin)
    port=$(free_port)
    data="$SERVICES_DIR/pg"
    run=()
    if [ "$(id -u)" = 0 ]; then
        id postgres >/dev/null 2>&1 || useradd --system --no-create-home postgres
        run=(runuser -u postgres --)
    fi
    mkdir -p "$data"
    [ "$(id -u)" = 0 ] && chown postgres "$SERVICES_DIR" "$data"
    chmod 700 "$data"
    "${run[@]}" "$bin/initdb" -D "$data/data" -U postgres -A trust --no-sync -E UTF8 --locale=C >"$SERVICES_DIR/initdb.log" 2>&1 \
        || { cat "$SERVICES_DIR/initdb.log" >&2; return 1; }
    "${run[@]}" "$bin/pg_ctl" -D "$data/data" -l "$data/pg.log" -w -t 60 \
        -o "-p $port -h 127.0.0.1 -k $data -c fsync=off -c max_connections=500 ${PG_SETTINGS:-}" start >/dev/null \
        || { cat "$data/pg.log" >&2; return 1; }
    _started_pg="$data/data"
    PG_BIN="$bin"
    export SWITCHBOARD_TEST_DATABASE_URL="postgres://postgres@127.0.0.1:$port/postgres"
    echo "PostgreSQL on 127.0.0.1:$port" >&2
}

start_redis() {
    command -v redis-server >/dev/null 2>&1 || _apt_install redis-server
    REDIS_PORT=$(free_port)
    REDIS_DIR="$SERVICES_DIR/redis"
    mkdir -p "$REDIS_DIR"
    redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --daemonize yes --save '' --appendonly no \
        --dir "$REDIS_DIR" --pidfile "$REDIS_DIR/redis.pid" --logfile "$REDIS_DIR/redis.log"
    for _ in $(seq 50); do
        redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1 && break
        sleep 0.1
    done
    _started_redis="$REDIS_DIR/redis.pid"
    export SWITCHBOARD_TEST_REDIS_URL="redis://127.0.0.1:$REDIS_PORT"
    export REDIS_PORT REDIS_DIR
    echo "Redis on 127.0.0.1:$REDIS_PORT" >&2
}

# A Redis Cluster of three masters (no replicas: the failover test starts a cluster of its
# own), joined with `redis-cli --cluster create`.
start_redis_cluster() {
    command -v redis-server >/dev/null 2>&1 || _apt_install redis-server
    local dir="$SERVICES_DIR/redis-cluster" ports=() port addresses=()
    for _ in 1 2 3; do
        port=$(free_port)
        mkdir -p "$dir/$port"
        redis-server --port "$port" --bind 127.0.0.1 --daemonize yes --save '' --appendonly no \
            --cluster-enabled yes --cluster-port "$(free_port)" --cluster-config-file nodes.conf \
            --cluster-node-timeout 2000 \
            --dir "$dir/$port" --pidfile "$dir/$port/redis.pid" --logfile "$dir/$port/redis.log"
        ports+=("$port")
        addresses+=("127.0.0.1:$port")
        _started_redis_cluster+=" $dir/$port/redis.pid"
    done
    for port in "${ports[@]}"; do
        for _ in $(seq 50); do
            redis-cli -p "$port" ping >/dev/null 2>&1 && break
            sleep 0.1
        done
    done
    redis-cli --cluster create "${addresses[@]}" --cluster-yes >"$dir/create.log" 2>&1 \
        || { cat "$dir/create.log" >&2; return 1; }
    for _ in $(seq 100); do
        redis-cli -p "${ports[0]}" cluster info | grep -q '^cluster_state:ok' && break
        sleep 0.1
    done
    REDIS_CLUSTER_NODES=$(printf 'redis://%s,' "${addresses[@]}")
    export REDIS_CLUSTER_NODES=${REDIS_CLUSTER_NODES%,}
    echo "Redis Cluster on ${addresses[*]}" >&2
}

# nginx is only run by the tests that check the shipped config; install it if missing.
ensure_nginx() {
    command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || _apt_install nginx
}

# Stock Socket.IO clients (v4 and v2) for the Socket.IO tests, pinned by package-lock.json.
ensure_socketio_clients() {
    command -v npm >/dev/null 2>&1 || _apt_install nodejs npm
    (cd tests/socketio && npm ci --no-audit --no-fund --loglevel=error >&2)
}

# schemathesis (PyPI) in a venv under target/, for tests/contract/run.sh; exports SCHEMATHESIS.
ensure_schemathesis() {
    local venv="$PWD/target/schemathesis"
    if [ ! -x "$venv/bin/schemathesis" ]; then
        python3 -m venv "$venv" 2>/dev/null || { _apt_install python3-venv && python3 -m venv "$venv"; }
        "$venv/bin/pip" install -q --disable-pip-version-check 'schemathesis>=4.3,<5' >&2
    fi
    export SCHEMATHESIS="$venv/bin/schemathesis"
}

# Debian's Chromium, driven headless by the demo's browser test (demo/test.sh).
ensure_chromium() {
    [ -x /usr/bin/chromium ] || _apt_install chromium
}

stop_services() {
    if [ -n "$_started_pg" ]; then
        local run=()
        [ "$(id -u)" = 0 ] && run=(runuser -u postgres --)
        "${run[@]}" "$PG_BIN/pg_ctl" -D "$_started_pg" -m immediate stop >/dev/null 2>&1 || true
        _started_pg=""
    fi
    if [ -n "$_started_redis" ] && [ -f "$_started_redis" ]; then
        kill "$(cat "$_started_redis")" 2>/dev/null || true
        _started_redis=""
    fi
    local pidfile
    for pidfile in $_started_redis_cluster; do
        [ -f "$pidfile" ] && kill "$(cat "$pidfile")" 2>/dev/null || true
    done
    _started_redis_cluster=""
    rm -rf "$SERVICES_DIR"
}
