#!/usr/bin/env bash
# The server API's contract test: starts the built `switchboard` with the API on, over the
# database at $1 (default: a fresh SQLite file), and runs schemathesis (from PyPI, in a venv
# under target/) against its OpenAPI document with every check; the exceptions and their
# reasons are in schemathesis.toml beside this script. Fails on any failure (a 5xx, a response
# off its schema, an invalid request accepted) or a node panic. Run by deploy/local/test.sh.
set -euo pipefail
cd "$(dirname "$0")/../.."
source deploy/local/services.sh
database=${1:-}
node=""
work=$(mktemp -d)
trap 'kill "$node" 2>/dev/null || true; rm -rf "$work" "$SERVICES_DIR"' EXIT
[ -n "$database" ] || database="sqlite://$work/contract.db"
ensure_schemathesis

cargo build -q --bin switchboard
key="contract-test-api-key-$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')"
port=$(free_port)
SWITCHBOARD_API_KEY="$key" SWITCHBOARD_DATABASE_URL="$database" SWITCHBOARD_BIND="127.0.0.1:$port" \
    NO_COLOR=1 target/debug/switchboard >"$work/node.log" 2>&1 &
node=$!
for _ in $(seq 100); do
    python3 -c "import urllib.request as u; u.urlopen('http://127.0.0.1:$port/readyz', timeout=1)" 2>/dev/null && break
    sleep 0.2
done
echo "schemathesis against the server API on ${database%%://*} (node log: kept on failure)"
if ! (cd tests/contract && "$SCHEMATHESIS" --no-color run "http://127.0.0.1:$port/api/v1/openapi.json" \
    -H "Authorization: Bearer $key" --seed "${SCHEMATHESIS_SEED:-1}"); then
    tail -50 "$work/node.log"
    exit 1
fi
if grep -q "panicked" "$work/node.log"; then
    echo "the node panicked:"; grep -A5 "panicked" "$work/node.log"; exit 1
fi
