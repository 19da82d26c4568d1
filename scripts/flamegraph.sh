#!/usr/bin/env bash
# Profiles the server while `tickcast load` drives it, and renders a flamegraph.
#
#   scripts/flamegraph.sh [--shards N] [--clients N] [--rate R] [--mode tickcast|baseline]
#                         [--linger D] [--duration S] [--out DIR]
#   scripts/flamegraph.sh --mode rooms --rooms 1000:2 --rate 20000   # R rooms of M members,
#                         # a publisher each, --rate publishes/s in all (bench.sh --rooms)
#
# Builds with `--profile profiling` (release speed, full symbols), starts the server on its
# CPUs (taskset, the same split as scripts/bench.sh), ramps the clients, then records the
# server with `perf record -g` (DWARF call graphs, since release code has no frame pointers;
# the cpu-clock event where hardware counters are missing, as in most VMs) for --duration
# seconds, and folds the stacks with inferno into
# results/<date>-<host>/flamegraph-<mode>-s<shards>-c<clients>-r<rate>.svg.
# Missing tools are installed: perf with apt-get (linux-perf or linux-tools), inferno with
# `cargo install inferno`.
set -euo pipefail
cd "$(dirname "$0")/.."

SHARDS=1
CLIENTS=1000
RATE=500
ROOMS=1000:2
MODE=tickcast
LINGER=0
DURATION=10
WARMUP=2
OUT=""
PORT=${FLAMEGRAPH_PORT:-18390}

while (($#)); do
    case "$1" in
        --shards) SHARDS=$2; shift ;;
        --clients) CLIENTS=$2; shift ;;
        --rate) RATE=$2; shift ;;
        --mode) MODE=$2; shift ;;
        --rooms) ROOMS=$2; shift ;;
        --linger) LINGER=$2; shift ;;
        --duration) DURATION=$2; shift ;;
        --out) OUT=$2; shift ;;
        -h|--help) sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "flamegraph.sh: unknown option $1" >&2; exit 2 ;;
    esac
    shift
done
case $MODE in tickcast|baseline|rooms) ;; *) echo "flamegraph.sh: --mode tickcast|baseline|rooms" >&2; exit 2 ;; esac
N_ROOMS=${ROOMS%%:*}; MEMBERS=${ROOMS##*:}
if [[ $MODE == rooms ]]; then CLIENTS=$((N_ROOMS * MEMBERS)); fi

# Tools.
if ! perf --version >/dev/null 2>&1; then
    echo "flamegraph.sh: installing perf" >&2
    SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
    $SUDO apt-get update -qq || true
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq linux-perf \
        || DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "linux-tools-$(uname -r)" linux-tools-common \
        || { echo "flamegraph.sh: could not install perf" >&2; exit 1; }
fi
if ! command -v inferno-collapse-perf >/dev/null 2>&1 || ! command -v inferno-flamegraph >/dev/null 2>&1; then
    echo "flamegraph.sh: cargo install inferno" >&2
    cargo install inferno --quiet
fi
export PATH="$HOME/.cargo/bin:$PATH"

# Hardware counters are often missing in VMs: fall back to the cpu-clock software event.
EVENT=cycles
if perf stat -x, -e cycles true 2>&1 | grep -qi "not supported\|not counted\|<not"; then
    EVENT=cpu-clock
fi

echo "flamegraph.sh: cargo build --profile profiling" >&2
cargo build --profile profiling --quiet
BIN=$PWD/target/profiling/tickcast

# shellcheck source=scripts/cpu-split.sh
source "$(dirname "$0")/cpu-split.sh"
((SHARDS <= SERVER_NCPU)) || SERVER_CPUS="0-$((CORES - 1))"

OUT=${OUT:-results/$(date +%Y-%m-%d)-$(hostname -s)}
mkdir -p "$OUT"
CONFIG="$MODE-s$SHARDS-c$CLIENTS-r$RATE$([[ $LINGER == 0 ]] || echo "-l$LINGER")"
[[ $MODE != rooms ]] || CONFIG="rooms-$N_ROOMS-$MEMBERS-s$SHARDS-t$RATE"
WORK=$(mktemp -d)
SERVER_PID=""
LOAD_PID=""
cleanup() {
    for pid in $LOAD_PID $SERVER_PID; do
        kill -KILL "$pid" 2>/dev/null || true
    done
    rm -rf "$WORK"
}
trap cleanup EXIT

if [[ $MODE == baseline ]]; then
    RUST_LOG=warn taskset -c "$SERVER_CPUS" "$BIN" baseline --listen "127.0.0.1:$PORT" \
        --rate "$RATE" 2>"$WORK/server.log" &
elif [[ $MODE == rooms ]]; then
    RUST_LOG=warn taskset -c "$SERVER_CPUS" "$BIN" serve --listen "127.0.0.1:$PORT" \
        --shards "$SHARDS" --providers 0 --telemetry-interval 0s --publish-rate 0 \
        --drain-timeout 1s 2>"$WORK/server.log" &
else
    RUST_LOG=warn taskset -c "$SERVER_CPUS" "$BIN" serve --listen "127.0.0.1:$PORT" \
        --shards "$SHARDS" --providers 1 --rate "$RATE" --linger "$LINGER" \
        --drain-timeout 1s 2>"$WORK/server.log" &
fi
SERVER_PID=$!
for _ in $(seq 1 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && break
    kill -0 "$SERVER_PID" 2>/dev/null || { cat "$WORK/server.log" >&2; exit 1; }
    sleep 0.05
done

# The load runs for ramp + warmup + the recording + a margin; perf attaches after the
# ramp and warmup.
RAMP=$(awk -v c="$CLIENTS" 'BEGIN { printf "%d", c / 2000 + 1 }')
LOAD_ARGS=("ws://127.0.0.1:$PORT/ws?topics=ticks")
if [[ $MODE == rooms ]]; then
    LOAD_ARGS=("ws://127.0.0.1:$PORT/ws?room=r-{r}" --rooms "$N_ROOMS" --publishers-per-room 1
        --publish-topic "r-{r}"
        --publish-rate "$(awk -v t="$RATE" -v r="$N_ROOMS" 'BEGIN { printf "%.4f", t / r }')")
fi
taskset -c "$LOAD_CPUS" "$BIN" load "${LOAD_ARGS[@]}" -n "$CLIENTS" \
    --connect-rate 2000 --source-ips 127.0.0.1-127.0.0.8 --warmup "$WARMUP" \
    --duration $((DURATION + 2)) --quiet >"$WORK/load.txt" 2>&1 &
LOAD_PID=$!
sleep $((RAMP + WARMUP))
echo "flamegraph.sh: perf record -g -e $EVENT on the server for ${DURATION}s ($CONFIG)" >&2
perf record -e "$EVENT" -F 499 -g --call-graph dwarf,16384 -p "$SERVER_PID" \
    -o "$WORK/perf.data" -- sleep "$DURATION" 2>"$WORK/perf.log" \
    || { cat "$WORK/perf.log" >&2; exit 1; }
wait "$LOAD_PID" || true
LOAD_PID=""
kill -TERM "$SERVER_PID" 2>/dev/null || true
wait "$SERVER_PID" 2>/dev/null || true
SERVER_PID=""

SVG=$OUT/flamegraph-$CONFIG.svg
perf script -i "$WORK/perf.data" 2>/dev/null \
    | inferno-collapse-perf \
    | inferno-flamegraph --title "tickcast: $CONFIG ($EVENT)" >"$SVG"
cp "$WORK/load.txt" "$OUT/flamegraph-$CONFIG.load.txt"
echo "flamegraph.sh: $SVG" >&2
