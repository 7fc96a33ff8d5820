#!/usr/bin/env bash
# The one test command: starts real PostgreSQL, Redis and a Redis Cluster (installing them if
# missing), then runs every test of the workspace against them (the cluster tests on one Redis,
# then again on the Redis Cluster), then the TypeScript client's tests, the web
# demo in headless Chromium, and the short chaos run. Extra arguments go to the workspace's
# test runner.
set -euo pipefail
cd "$(dirname "$0")/../.."
source deploy/local/services.sh
trap stop_services EXIT
start_postgres
start_redis
start_redis_cluster
ensure_nginx
ensure_socketio_clients
ensure_schemathesis
ensure_chromium
# A one-shot build gains nothing from incremental state, which would take ~0.8 GB more disk.
if [[ -n "${CI:-}" ]]; then export CARGO_INCREMENTAL=0; fi

if cargo nextest --version >/dev/null 2>&1; then
    cargo nextest run --workspace --no-fail-fast "$@"
else
    cargo test --workspace --no-fail-fast "$@"
fi
# The cluster tests again, on a Redis Cluster of three masters (sharded pub/sub). The Redis
# fault tests that stop a single server of their own ran above; the Redis Cluster's own fault
# test (a master failing over) runs in both passes on a cluster of its own.
export SWITCHBOARD_TEST_REDIS_CLUSTER_NODES="$REDIS_CLUSTER_NODES"
if cargo nextest --version >/dev/null 2>&1; then
    cargo nextest run --test cluster --no-fail-fast \
        -E 'not test(/^faults::(redis_restart|after_a_redis_outage|a_hung_redis|a_node_cut_off)/)'
else
    cargo test --test cluster --no-fail-fast -- --skip faults::redis_restart \
        --skip faults::after_a_redis_outage --skip faults::a_hung_redis --skip faults::a_node_cut_off
fi
unset SWITCHBOARD_TEST_REDIS_CLUSTER_NODES
# The TypeScript client (clients/js): npm ci, tsc, then node --test against real nodes.
clients/js/test.sh
# The web demo (demo/): its copy of the SDK is fresh, and two pages chat, call and resync in
# headless Chromium against a real node.
demo/test.sh
# The fuzz targets (fuzz/run.sh runs them on nightly) must keep compiling against the server.
cargo check --manifest-path fuzz/Cargo.toml --bins --locked
# The server API's contract: schemathesis against a live node with every check, on the
# embedded default and on PostgreSQL (tests/contract/run.sh).
tests/contract/run.sh
tests/contract/run.sh "$SWITCHBOARD_TEST_DATABASE_URL"
# Chaos under load, short: three nodes in network namespaces behind the shipped nginx config,
# each fault for seconds (loadtest/README.md, `chaos`); fails if an acked message was lost,
# missing from history or duplicated, or a node panicked. Needs root for the namespaces.
if [ "$(id -u)" = 0 ]; then
    loadtest/chaos.sh --short --debug
else
    sudo -E loadtest/chaos.sh --short --debug
fi
