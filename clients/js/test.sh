#!/usr/bin/env bash
# The TypeScript client's tests: builds the server binary if needed, installs the locked dev
# dependencies, builds the client and runs its tests (node --test) against real nodes.
# Extra arguments go to `node --test`.
set -euo pipefail
cd "$(dirname "$0")"
root=../..
if [ -z "${SWITCHBOARD_BIN:-}" ]; then
    (cd "$root" && cargo build --bin switchboard --quiet)
    export SWITCHBOARD_BIN="$PWD/$root/target/debug/switchboard"
fi
command -v npm >/dev/null 2>&1 || { echo "clients/js/test.sh needs node and npm" >&2; exit 1; }
npm ci --no-audit --no-fund --loglevel=error >&2
npm run --silent build
npm test -- "$@"
