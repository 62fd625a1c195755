#!/usr/bin/env bash
# Run the main job again and again (not part of .ci/run; it takes ~30 minutes):
#   FRESH runs, each against a brand-new broker and PostgreSQL (a fresh SL_STACK_DIR and
#   ports of its own, stopped and deleted afterwards), then SAME runs against the
#   default stack, which stays up (the demo resets its namespace each time).
# Every run's console output and service logs are kept apart in OUT/<run>.
#
#   deploy/demo-repeat.sh [FRESH=5] [SAME=10]      OUT: $SL_REPEAT_DIR or /tmp/sl-demo-repeat-<time>
set -uo pipefail
cd "$(dirname "$0")/.."
FRESH=${1:-5}
SAME=${2:-10}
OUT=${SL_REPEAT_DIR:-/tmp/sl-demo-repeat-$(date +%s)}
mkdir -p "$OUT"
passed=0
total=0

run_one() {
    local label=$1 started status
    shift
    started=$(date +%s)
    total=$((total + 1))
    if env -u KAFKA_BOOTSTRAP_SERVERS -u DATABASE_URL "$@" ./run demo --exit-when-done \
        >"$OUT/$label.out" 2>&1; then
        passed=$((passed + 1))
        status=pass
    else
        status=FAIL
    fi
    mkdir -p "$OUT/$label"
    local stack=deploy/.local arg
    for arg in "$@"; do  # the demo keeps its logs next to the stack it ran on
        case $arg in SL_STACK_DIR=*) stack=${arg#SL_STACK_DIR=} ;; esac
    done
    cp -r "$stack/demo/logs" "$OUT/$label/" 2>/dev/null || true
    printf '%-8s %-4s %4ss\n' "$label" "$status" "$(($(date +%s) - started))" | tee -a "$OUT/summary.txt"
}

for i in $(seq 1 "$FRESH"); do
    dir=$(mktemp -d /tmp/sl-fresh-stack-XXXXXX)
    base=$((31000 + i * 10))
    run_one "fresh-$i" SL_STACK_DIR="$dir" SL_KAFKA_PORT="$base" \
        SL_KAFKA_CONTROLLER_PORT="$((base + 1))" SL_POSTGRES_PORT="$((base + 2))"
    SL_STACK_DIR="$dir" ./run stack stop >/dev/null 2>&1
    rm -rf "$dir"
done
for i in $(seq 1 "$SAME"); do
    run_one "same-$i"
done
echo "$passed of $total demo runs passed; outputs and logs in $OUT" | tee -a "$OUT/summary.txt"
[ "$passed" = "$total" ]
