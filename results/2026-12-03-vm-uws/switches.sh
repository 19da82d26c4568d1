#!/bin/bash
# switches.sh BIN [SERVER ARGS...]: one many-rooms point (1,000 rooms of 2, one publisher
# each, 50,000 publishes/s in all, clients connecting at 2,000/s as bench.sh does), the
# server on CPU 0 and the load generator on CPU 1. Prints the load's summary lines and, for
# each server thread over 4 s of the window, its CPU and its voluntary and involuntary
# context switches per publish (from /proc/PID/task/TID/{stat,status}).
set -u
BIN=$1; shift
PORT=${PORT:-18190}; TOTAL=${TOTAL:-50000}; ROOMS=1000; MEMBERS=2
ulimit -n 20000
snapshot() {
    for t in /proc/$1/task/*; do
        printf '%s %s %s %s\n' "$(tr -d ' ' <"$t/comm")" \
            "$(awk '{print $14 + $15}' "$t/stat")" \
            "$(awk '/^voluntary_ctxt/ {print $2}' "$t/status")" \
            "$(awk '/^nonvoluntary_ctxt/ {print $2}' "$t/status")"
    done
}
RUST_LOG=warn taskset -c 0 "$BIN" serve --listen "127.0.0.1:$PORT" --providers 0 \
    --telemetry-interval 0s --publish-rate 0 --presence-list-max 100 --shards 1 "$@" 2>/dev/null &
SP=$!
sleep 0.5
rate=$(awk -v t="$TOTAL" -v r="$ROOMS" 'BEGIN { printf "%.4f", t / r }')
taskset -c 1 "$(dirname "$BIN")/tickcast" load "ws://127.0.0.1:$PORT/ws?room=r-{r}" \
    --rooms "$ROOMS" -n $((ROOMS * MEMBERS)) --publishers-per-room 1 --publish-rate "$rate" \
    --publish-topic "r-{r}" --connect-rate 2000 --warmup 2 --duration 6 --server-pid "$SP" \
    --quiet --providers 0 --offered-rate "$rate" >/tmp/switches-load.txt 2>&1 &
LP=$!
sleep 4
snapshot "$SP" >/tmp/switches.0; t0=$(date +%s.%N)
sleep 4
snapshot "$SP" >/tmp/switches.1; t1=$(date +%s.%N)
wait "$LP"
kill "$SP"; wait "$SP" 2>/dev/null
grep -E '^(delivered|latency|server) ' /tmp/switches-load.txt
hz=$(getconf CLK_TCK)
awk -v el="$(awk -v a="$t0" -v b="$t1" 'BEGIN { print b - a }')" -v n="$TOTAL" -v hz="$hz" '
    NR == FNR { c[$1] = $2; v[$1] = $3; i[$1] = $4; next }
    $1 ~ /shard|mixer/ {
        printf "%-16s CPU %5.1f %%  switches per publish: voluntary %.2f, involuntary %.2f\n",
            $1, 100 * ($2 - c[$1]) / hz / el, ($3 - v[$1]) / el / n, ($4 - i[$1]) / el / n
    }' /tmp/switches.0 /tmp/switches.1
