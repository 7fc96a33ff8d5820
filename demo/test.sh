#!/usr/bin/env bash
# The web demo's browser test: builds target/debug/switchboard if needed, installs the locked
# dev dependencies (playwright-core), checks that the demo's copy of the SDK is the build of
# clients/js, then drives two pages in Debian's headless Chromium (CHROMIUM, default
# /usr/bin/chromium) against a real node. Screenshots go to target/demo-screenshots/.
# Extra arguments go to `node --test`.
set -euo pipefail
cd "$(dirname "$0")"
root=..
if [ -z "${SWITCHBOARD_BIN:-}" ]; then
    (cd "$root" && cargo build --bin switchboard --quiet)
    export SWITCHBOARD_BIN="$PWD/$root/target/debug/switchboard"
fi
command -v npm >/dev/null 2>&1 || { echo "demo/test.sh needs node and npm" >&2; exit 1; }
[ -x "${CHROMIUM:-/usr/bin/chromium}" ] || { echo "demo/test.sh needs Chromium: apt-get install chromium" >&2; exit 1; }
npm ci --no-audit --no-fund --loglevel=error >&2
./build.sh --check
node --test --test-reporter=spec "$@" test/demo.test.mjs
