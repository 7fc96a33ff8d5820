#!/usr/bin/env bash
# Chaos under load: three Switchboard nodes behind the shipped nginx config, sharing one
# PostgreSQL and one Redis, while `loadtest chaos` drives the chat mix through nginx and runs
# a fault schedule: a node SIGKILLed and restarted, a node SIGSTOPped for 20 s, Redis
# restarted, PostgreSQL stopped fast and crashed (immediate), a node's back-end link taken
# down, and a node's back-end link turned into a silent blackhole (the link stays up).
#
#   loadtest/chaos.sh [--short] [--debug] [--out FILE.json] [--keep] [-- extra loadtest chaos flags]
#
# --debug runs debug builds (the test command's, already built) instead of release ones.
# --short: seconds per fault and a few dozen clients (about 4 minutes in all); the default
# runs a minute or more per fault with a few hundred clients (about 11 minutes). Needs root
# (network namespaces, veth, tc). Each node runs in its own namespace with two links: a front
# one (10.201.N.0/24) that nginx reaches it on, and a back one (10.202.N.0/24) on which it
# reaches PostgreSQL and Redis, which listen in the root namespace on every back link's
# address. Cutting a back link leaves the node's clients connected. Exits non-zero when the
# run found an acked message lost, missing from history or duplicated, or a node panicked.
# Everything it starts is stopped on exit; --keep keeps the work folder (logs) afterwards.
# The JSON report (and the HTML next to it) goes to --out, by default
# /tmp/switchboard-chaos-last.json.
#
# Internal: `chaos.sh --ctl DIR ACTION [N]` is how the fault commands act on the cluster.

set -euo pipefail

SELF="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/$(basename "${BASH_SOURCE[0]}")"
ROOT="$(dirname "$(dirname "$SELF")")"
NODES=3
NODE_PORT=8080
JWT_SECRET="chaos-run-secret-0123456789abcdef"
# A locally administered MAC address no interface has: the blackhole's destination.
NOWHERE_MAC=02:00:00:00:de:ad

node_ns() { echo "sbchaos$1"; }
front_if() { echo "sbcf$1"; }
back_if() { echo "sbcb$1"; }
back_host() { echo "10.202.$1.1"; }
node_addr() { echo "10.201.$1.2"; }

# ---- actions on the cluster; they read the settings saved in $DIR/env ----

pg_run() { runuser -u postgres -- "$@"; }

pg_start() {
    pg_run "$PG_BIN/pg_ctl" -D "$DIR/pg/data" -l "$DIR/pg/pg.log" -w -t 60 -o "$PG_OPTS" start >/dev/null
}

pg_stop() { pg_run "$PG_BIN/pg_ctl" -D "$DIR/pg/data" -m "$1" -w stop >/dev/null; }

redis_start() {
    redis-server --port "$REDIS_PORT" --bind "$REDIS_BIND" --protected-mode no --daemonize yes --save '' \
        --appendonly no --dir "$DIR/redis" --pidfile "$DIR/redis/redis.pid" --logfile "$DIR/redis/redis.log"
    for _ in $(seq 50); do
        redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1 && return 0
        sleep 0.1
    done
    echo "Redis did not answer" >&2
    return 1
}

redis_stop() { redis-cli -p "$REDIS_PORT" shutdown nosave >/dev/null 2>&1 || true; }

# Starts node N in its namespace (same id and port on every start) and waits until ready.
node_start() {
    local n=$1 host
    host=$(back_host "$n")
    ip netns exec "$(node_ns "$n")" env \
        SWITCHBOARD_DATABASE_URL="postgres://postgres@$host:$PG_PORT/postgres" \
        SWITCHBOARD_REDIS_URL="redis://$host:$REDIS_PORT" \
        SWITCHBOARD_NODE_ID="node$n" \
        SWITCHBOARD_BIND="$(node_addr "$n"):$NODE_PORT" \
        SWITCHBOARD_JWT_SECRET="$JWT_SECRET" \
        SWITCHBOARD_NODE_TTL_SECS="$NODE_TTL" \
        SWITCHBOARD_RATE_PER_SEC=100000 SWITCHBOARD_RATE_BURST=100000 \
        SWITCHBOARD_MAX_CONNECTIONS_PER_IP=1000000 \
        "$BIN/switchboard" serve >>"$DIR/node$n.log" 2>&1 &
    echo $! >"$DIR/node$n.pid"
    disown
    for _ in $(seq 300); do
        curl -fsS -o /dev/null -m 1 "http://$(node_addr "$n"):$NODE_PORT/readyz" 2>/dev/null && return 0
        kill -0 "$(cat "$DIR/node$n.pid")" 2>/dev/null || { echo "node$n exited" >&2; tail -5 "$DIR/node$n.log" >&2; return 1; }
        sleep 0.1
    done
    echo "node$n not ready after 30 s" >&2
    return 1
}

node_signal() { kill "-$2" "$(cat "$DIR/node$1.pid")"; }

ctl() {
    local action=$1 n=${2:-}
    case "$action" in
        node-start) node_start "$n" ;;
        node-kill) node_signal "$n" KILL ;;
        node-stop) node_signal "$n" STOP ;;
        node-cont) node_signal "$n" CONT ;;
        redis-stop) redis_stop ;;
        redis-start) redis_start ;;
        pg-stop) pg_stop "$n" ;;
        pg-start) pg_start ;;
        link-down) ip link set "$(back_if "$n")" down ;;
        link-up) ip link set "$(back_if "$n")" up ;;
        # Both directions, link up: each side's frames go to a MAC address nobody has, so
        # every packet vanishes without an error. (`tc qdisc … netem loss 100%` would do the
        # same, but this machine's kernel has no netem: "Specified qdisc kind is unknown".)
        blackhole)
            ip -n "$(node_ns "$n")" neigh replace "$(back_host "$n")" lladdr "$NOWHERE_MAC" dev eth1 nud permanent
            ip neigh replace "10.202.$n.2" lladdr "$NOWHERE_MAC" dev "$(back_if "$n")" nud permanent
            ;;
        unblackhole)
            ip -n "$(node_ns "$n")" neigh del "$(back_host "$n")" dev eth1
            ip neigh del "10.202.$n.2" dev "$(back_if "$n")"
            ;;
        *) echo "unknown action $action" >&2; return 2 ;;
    esac
}

if [ "${1:-}" = "--ctl" ]; then
    DIR=$2
    # shellcheck disable=SC1091
    source "$DIR/env"
    shift 2
    ctl "$@"
    exit
fi

# ---- the run ----

SHORT=0
KEEP=0
PROFILE=release
OUT=""
EXTRA=()
while [ $# -gt 0 ]; do
    case "$1" in
        --short) SHORT=1 ;;
        --keep) KEEP=1 ;;
        --debug) PROFILE=debug ;;
        --out) OUT=$2; shift ;;
        --) shift; EXTRA=("$@"); break ;;
        *) echo "usage: $0 [--short] [--debug] [--out FILE.json] [--keep] [-- loadtest chaos flags]" >&2; exit 2 ;;
    esac
    shift
done
[ "$(id -u)" = 0 ] || { echo "chaos.sh needs root (namespaces, veth)" >&2; exit 1; }

cd "$ROOT"
SERVICES_DIR=$(mktemp -d /tmp/switchboard-chaos.XXXXXX)
# shellcheck source=deploy/local/services.sh
source deploy/local/services.sh
DIR=$SERVICES_DIR
command -v ip >/dev/null 2>&1 || _apt_install iproute2
command -v curl >/dev/null 2>&1 || _apt_install curl
command -v redis-server >/dev/null 2>&1 || _apt_install redis-server
ensure_nginx
for n in $(seq "$NODES"); do
    if ip netns list | grep -qw "$(node_ns "$n")"; then
        echo "namespace $(node_ns "$n") exists: another chaos run is under way (or left it; ip netns del it)" >&2
        exit 1
    fi
done

cleanup() {
    set +e
    for n in $(seq "$NODES"); do
        if [ -f "$DIR/node$n.pid" ]; then
            kill -CONT "$(cat "$DIR/node$n.pid")" 2>/dev/null
            kill -KILL "$(cat "$DIR/node$n.pid")" 2>/dev/null
        fi
    done
    [ -f "$DIR/nginx/nginx.pid" ] && kill "$(cat "$DIR/nginx/nginx.pid")" 2>/dev/null
    [ -n "${REDIS_PORT:-}" ] && redis_stop
    [ -n "${PG_BIN:-}" ] && pg_stop immediate 2>/dev/null
    for n in $(seq "$NODES"); do ip netns del "$(node_ns "$n")" 2>/dev/null; done
    if [ "$KEEP" = 1 ]; then echo "work folder kept: $DIR" >&2; else rm -rf "$DIR"; fi
}
trap cleanup EXIT

echo "building ($PROFILE)" >&2
BIN="$ROOT/target/$PROFILE"
if [ "$PROFILE" = release ]; then
    cargo build --release -q -p switchboard -p loadtest
else
    cargo build -q -p switchboard -p loadtest
fi

# Namespaces: a front link (nginx → node) and a back link (node → PostgreSQL, Redis) each.
for n in $(seq "$NODES"); do
    ns=$(node_ns "$n")
    ip netns add "$ns"
    ip -n "$ns" link set lo up
    ip link add "$(front_if "$n")" type veth peer name eth0 netns "$ns"
    ip addr add "10.201.$n.1/24" dev "$(front_if "$n")"
    ip link set "$(front_if "$n")" up
    ip -n "$ns" addr add "$(node_addr "$n")/24" dev eth0
    ip -n "$ns" link set eth0 up
    ip link add "$(back_if "$n")" type veth peer name eth1 netns "$ns"
    ip addr add "$(back_host "$n")/24" dev "$(back_if "$n")"
    ip link set "$(back_if "$n")" up
    ip -n "$ns" addr add "10.202.$n.2/24" dev eth1
    ip -n "$ns" link set eth1 up
done

# PostgreSQL and Redis in the root namespace, listening on loopback and every back link.
BACK_HOSTS=$(for n in $(seq "$NODES"); do back_host "$n"; done | paste -sd, -)
PG_BIN=$(_pg_bin)
PG_PORT=$(free_port)
PG_OPTS="-p $PG_PORT -h 127.0.0.1,$BACK_HOSTS -k $DIR/pg -c fsync=off -c max_connections=500"
REDIS_PORT=$(free_port)
REDIS_BIND="127.0.0.1 ${BACK_HOSTS//,/ }"
if [ "$SHORT" = 1 ]; then NODE_TTL=6; else NODE_TTL=15; fi
id postgres >/dev/null 2>&1 || useradd --system --no-create-home postgres
mkdir -p "$DIR/pg" "$DIR/redis" "$DIR/nginx"
chown postgres "$DIR/pg"
chmod 700 "$DIR/pg"
chmod 755 "$DIR"
pg_run "$PG_BIN/initdb" -D "$DIR/pg/data" -U postgres -A trust --no-sync -E UTF8 --locale=C >"$DIR/initdb.log" 2>&1
echo "host all all 10.202.0.0/16 trust" >>"$DIR/pg/data/pg_hba.conf"
cat >"$DIR/env" <<EOF
BIN='$BIN'
PG_BIN='$PG_BIN'
PG_PORT='$PG_PORT'
PG_OPTS='$PG_OPTS'
REDIS_PORT='$REDIS_PORT'
REDIS_BIND='$REDIS_BIND'
NODE_TTL='$NODE_TTL'
EOF
pg_start
redis_start
echo "PostgreSQL on port $PG_PORT and Redis on port $REDIS_PORT, on 127.0.0.1 and $BACK_HOSTS" >&2

# Migrations once, then the nodes.
SWITCHBOARD_DATABASE_URL="postgres://postgres@127.0.0.1:$PG_PORT/postgres" "$BIN/switchboard" migrate \
    >"$DIR/migrate.log" 2>&1
for n in $(seq "$NODES"); do node_start "$n"; done
echo "nodes ready: $(for n in $(seq "$NODES"); do echo -n "node$n=$(node_addr "$n"):$NODE_PORT "; done)" >&2

# The shipped nginx template in front, as tests/cluster/nginx.rs renders it.
NGINX_PORT=$(free_port)
servers=$(for n in $(seq "$NODES"); do printf '    server %s:%s;\\n' "$(node_addr "$n")" "$NODE_PORT"; done)
site=$(python3 - "$ROOT/deploy/nginx/switchboard.conf.template" "$servers" "127.0.0.1:$NGINX_PORT" <<'PY'
import sys
template, servers, listen = open(sys.argv[1]).read(), sys.argv[2].replace("\\n", "\n"), sys.argv[3]
print(template.replace("    # UPSTREAM_SERVERS\n", servers).replace("LISTEN_PORT", listen))
PY
)
d="$DIR/nginx"
cat >"$d/nginx.conf" <<EOF
worker_processes 1;
worker_rlimit_nofile 20000;
pid $d/nginx.pid;
error_log $d/error.log warn;
events { worker_connections 16384; }
http {
  access_log off;
  client_body_temp_path $d/body;
  proxy_temp_path $d/proxy;
  fastcgi_temp_path $d/fastcgi;
  uwsgi_temp_path $d/uwsgi;
  scgi_temp_path $d/scgi;
$site
}
EOF
nginx -p "$d" -c "$d/nginx.conf"
for _ in $(seq 50); do curl -fsS -o /dev/null -m 1 "http://127.0.0.1:$NGINX_PORT/healthz" && break; sleep 0.1; done
echo "nginx on 127.0.0.1:$NGINX_PORT" >&2

# The fault schedule: each fault opens a period of WINDOW seconds (the node frozen 20 s gets
# 10 s more), its heal comes DOWN seconds in.
CTL="$SELF --ctl $DIR"
if [ "$SHORT" = 1 ]; then
    BASE=8; WINDOW=22; DOWN=4; CUT=10
    LOAD=(--pairs 12 --groups 4 --group-size 5 --rate 60 --probes 12 --grace 15)
else
    BASE=15; WINDOW=75; DOWN=20; CUT=40
    LOAD=(--pairs 100 --groups 20 --group-size 5 --rate 200 --probes 30 --grace 30)
fi
FAULTS=()
t=$BASE
fault() { # NAME FAULT_ACTION HEAL_ACTION HEAL_AFTER WINDOW
    FAULTS+=(--fault "$t:$1:$CTL $2" --heal "$(($t + $4)):$1:$CTL $3")
    t=$(($t + $5))
}
fault kill-node1 "node-kill 1" "node-start 1" "$DOWN" "$WINDOW"
fault stop-node2 "node-stop 2" "node-cont 2" 20 $(($WINDOW + 10))
fault redis-restart "redis-stop" "redis-start" "$DOWN" "$WINDOW"
fault pg-stop-fast "pg-stop fast" "pg-start" "$DOWN" "$WINDOW"
fault pg-stop-immediate "pg-stop immediate" "pg-start" "$DOWN" "$WINDOW"
fault cut-link-node3 "link-down 3" "link-up 3" "$CUT" $(($WINDOW + $CUT / 2))
fault blackhole-node2 "blackhole 2" "unblackhole 2" "$CUT" $(($WINDOW + $CUT / 2))
DURATION=$(($t + 5))

OUT=${OUT:-/tmp/switchboard-chaos-last.json}
set +e
"$BIN/loadtest" chaos --url "ws://127.0.0.1:$NGINX_PORT" --jwt-secret "$JWT_SECRET" \
    --duration "$DURATION" --node-ttl-secs "$NODE_TTL" "${LOAD[@]}" "${FAULTS[@]}" --out "$OUT" "${EXTRA[@]}"
status=$?
set -e
panics=$(grep -l "panicked" "$DIR"/node*.log 2>/dev/null || true)
[ -n "$panics" ] && { echo "a node panicked: $panics" >&2; status=1; }
if [ "$status" = 0 ] && ! python3 -c 'import json,sys; sys.exit(0 if json.load(open(sys.argv[1]))["ok"] else 1)' "$OUT"; then
    echo "acked messages were lost, missing from history or duplicated: see $OUT" >&2
    status=1
fi
exit "$status"
