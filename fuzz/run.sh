#!/usr/bin/env bash
# Runs every fuzz target in turn for a fixed time each, then prints one table: target,
# executions, crashes (artifacts written by this run), and the total. Exits non-zero if any
# target crashed or did not report its executions.
#
#   fuzz/run.sh [SECONDS_PER_TARGET]        (or SECONDS_PER_TARGET=… fuzz/run.sh; default 120)
#   TARGETS="jwt ws_frame" fuzz/run.sh 30   (a subset)
#
# Needs nightly and cargo-fuzz: `cargo install cargo-fuzz --locked`. Each target starts from
# its seed corpus (corpus/<target>/, committed) and the corpus grown by earlier runs
# (runs/corpus/<target>/, not committed); new inputs go to the latter. Crashing inputs land
# in artifacts/<target>/, logs in runs/logs/. Builds use one job (CARGO_BUILD_JOBS=1 unless
# set): the machine's two cores are shared.
set -euo pipefail

cd "$(dirname "$0")"
seconds="${1:-${SECONDS_PER_TARGET:-120}}"
if ! [[ "$seconds" =~ ^[0-9]+$ ]] || [ "$seconds" -eq 0 ]; then
    echo "seconds per target must be a positive integer, not '$seconds'" >&2
    exit 2
fi
export CARGO_BUILD_JOBS="${CARGO_BUILD_JOBS:-1}"

# Per input, not per run: the libFuzzer process's RSS ceiling, and the slowest input allowed.
RSS_LIMIT_MB=2048
TIMEOUT_SECS=10

# target: max input length in bytes. Frames and packets get a few KiB (the server's frame
# limit is 64 KiB, but no branch needs more than a few); a dialect event is a name and a
# small payload; a WebSocket stream a few frames (ws_frame also decodes with a 125-byte
# limit, so oversized frames are within reach).
declare -A MAX_LEN=(
    [native_frame]=4096
    [socketio_packet]=4096
    [dialect_inbound]=1024
    [jwt]=2048
    [ws_frame]=4096
)
ORDER=(native_frame socketio_packet jwt ws_frame dialect_inbound)
read -r -a targets <<<"${TARGETS:-${ORDER[*]}}"

# dialect_inbound keeps one node (actors, store, threads) for the whole process: memory it
# holds across inputs is state, not a leak.
extra_flags() {
    case "$1" in
        dialect_inbound) echo "-detect_leaks=0" ;;
        *) echo "" ;;
    esac
}

for target in "${targets[@]}"; do
    if [ -z "${MAX_LEN[$target]:-}" ]; then
        echo "unknown target '$target' (known: ${ORDER[*]})" >&2
        exit 2
    fi
done

cargo +nightly fuzz build

mkdir -p runs/logs
stamp="$(date -u +%Y%m%dT%H%M%SZ)"
declare -A EXECS CRASHES
failed=0
for target in "${targets[@]}"; do
    mkdir -p "runs/corpus/$target" "artifacts/$target"
    log="runs/logs/$stamp-$target.log"
    marker="runs/logs/$stamp-$target.start"
    touch "$marker"
    echo "== $target: ${seconds}s, max_len ${MAX_LEN[$target]} (log: fuzz/$log)"
    # shellcheck disable=SC2046 # extra_flags is empty or one word
    if cargo +nightly fuzz run "$target" "runs/corpus/$target" "corpus/$target" -- \
        -max_total_time="$seconds" -rss_limit_mb="$RSS_LIMIT_MB" -timeout="$TIMEOUT_SECS" \
        -max_len="${MAX_LEN[$target]}" -print_final_stats=1 \
        -artifact_prefix="artifacts/$target/" $(extra_flags "$target") >"$log" 2>&1; then
        status=0
    else
        status=$?
    fi
    execs="$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | tail -n 1 | grep -o '[0-9]*$' || true)"
    crashes="$(find "artifacts/$target" -type f -newer "$marker" | wc -l)"
    rm -f "$marker"
    EXECS[$target]="${execs:-?}"
    CRASHES[$target]="$crashes"
    if [ "$crashes" -gt 0 ] || [ -z "$execs" ] || [ "$status" -ne 0 ]; then
        failed=1
        echo "   $target: exit $status, $crashes new artifact(s); see fuzz/$log" >&2
    fi
done

total=0
printf '\n%-16s %14s %8s\n' target executions crashes
for target in "${targets[@]}"; do
    printf '%-16s %14s %8s\n' "$target" "${EXECS[$target]}" "${CRASHES[$target]}"
    if [[ "${EXECS[$target]}" =~ ^[0-9]+$ ]]; then
        total=$((total + EXECS[$target]))
    fi
done
printf '%-16s %14s\n' total "$total"
printf '(%ss per target, -rss_limit_mb=%s, %s UTC)\n' "$seconds" "$RSS_LIMIT_MB" "$stamp"
exit "$failed"
