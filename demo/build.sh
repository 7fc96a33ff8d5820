#!/usr/bin/env bash
# Rebuilds the copy of the TypeScript SDK (clients/js) that the demo serves, in
# demo/assets/vendor/switchboard/: plain ES modules, no source maps or type declarations.
# With --check, builds into a temporary folder instead and fails if the committed copy differs.
set -euo pipefail
cd "$(dirname "$0")/.."
sdk=clients/js
vendor=demo/assets/vendor/switchboard
command -v npm >/dev/null 2>&1 || { echo "demo/build.sh needs node and npm" >&2; exit 1; }
(cd "$sdk" && npm ci --no-audit --no-fund --loglevel=error >&2)
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
"$sdk/node_modules/.bin/tsc" -p "$sdk/tsconfig.json" --outDir "$out" \
    --declaration false --declarationMap false --sourceMap false
if [ "${1:-}" = --check ]; then
    if ! diff -r "$vendor" "$out" >&2; then
        echo "demo/assets/vendor/switchboard is not the build of clients/js: run demo/build.sh and commit" >&2
        exit 1
    fi
    echo "the demo's copy of the SDK is up to date" >&2
else
    rm -rf "$vendor"
    mkdir -p "$vendor"
    cp "$out"/*.js "$vendor"/
    echo "rebuilt $vendor" >&2
fi
