#!/usr/bin/env bash
# Benchmark sweep: tickcast (single hub and each shard count) and the baseline loop, at
# rising offered rates until saturation, for several client counts; plus a linger sweep.
#
#   scripts/bench.sh                 # full default sweep (about 15-25 minutes on 2 cores)
#   scripts/bench.sh --quick         # small sweep, under 2 minutes
#   scripts/bench.sh --smoke         # a handful of points, for the test suite
#   scripts/bench.sh --chat          # chat rooms: N members, P publishers (chat.csv)
#   scripts/bench.sh --cluster       # two nodes + Redis: cross-node latency, resume, bus (cluster.csv...)
#   scripts/bench.sh --rooms         # many rooms, a publisher each: which thread saturates (rooms.csv)
#   scripts/bench.sh --rooms --uws   # ... and the same points against uWebSockets (Bun, from npm)
#   scripts/bench.sh --deflate       # permessage-deflate against plain clients (deflate.md)
#   scripts/bench.sh --tls           # wss:// (server TLS) against plain ws://, same server (tls.md)
#   scripts/bench.sh --out DIR --clients 1000,5000 --shards 1,2 --duration 5 --warmup 2
#   scripts/bench.sh --repeat 3      # runs per point near the bar (full sweep default: 3)
#
# Each point: start the server (taskset to its CPUs), run `tickcast load` (taskset to the
# other CPUs) which ramps the clients, warms up, measures for --duration, samples the
# server's CPU and RSS from /proc and appends one row to raw.csv; stop the server. A rate
# ladder doubles the offered deliveries/s until a point is not sustainable (delivery < 99 %
# or p99 > 100 ms, every client connected), then refines between the last good and the
# first bad rate. A point whose run lands near the bar (p99 within 1.35x of 100 ms, or
# delivery within 0.7 % of 99 %) is run again, up to --repeat runs, and the ladder and every
# table go by its median run. Rows where the load generator was at >= 90 % CPU are flagged
# client-bound.
# Everything computed (verdicts, saturation table, charts) is `tickcast report`.
#
# Output: results/<date>-<host>/{raw.csv, summary.md, README.md, *.svg, logs/}.
set -euo pipefail
cd "$(dirname "$0")/.."

MODE=full
SCENARIO=""
OUT=""
CLIENTS=""
SHARDS=""
DURATION=""
WARMUP=""
REPEAT=""
BUILD=1
UWS=0
PAYLOAD=${BENCH_PAYLOAD:-0}
CONNECT_RATE=${BENCH_CONNECT_RATE:-2000}
SOURCE_IPS=${BENCH_SOURCE_IPS:-127.0.0.1-127.0.0.8}
BASE_PORT=${BENCH_PORT:-18100}
COMMAND_LINE="scripts/bench.sh $*"

usage() {
    sed -n '2,22p' "$0" | sed 's/^# \{0,1\}//'
    exit "${1:-0}"
}

while (($#)); do
    case "$1" in
        --quick) MODE=quick ;;
        --smoke) MODE=smoke ;;
        --chat) SCENARIO=chat ;;
        --cluster) SCENARIO=cluster ;;
        --rooms) SCENARIO=rooms ;;
        --deflate) SCENARIO=deflate ;;
        --tls) SCENARIO=tls ;;
        --uws) UWS=1 ;;
        --out) OUT=$2; shift ;;
        --clients) CLIENTS=$2; shift ;;
        --shards) SHARDS=$2; shift ;;
        --duration) DURATION=$2; shift ;;
        --warmup) WARMUP=$2; shift ;;
        --repeat) REPEAT=$2; shift ;;
        --no-build) BUILD=0 ;;
        -h|--help) usage 0 ;;
        *) echo "bench.sh: unknown option $1" >&2; usage 2 ;;
    esac
    shift
done

CORES=$(nproc)
# Shard counts: 1, 2, 4, ... up to the core count, and the core count itself.
default_shards() {
    local s=1 out=""
    while ((s <= CORES)); do out+="$s,"; s=$((s * 2)); done
    [[ ",$out" == *",$CORES,"* ]] || out+="$CORES,"
    echo "${out%,}"
}

# permessage-deflate is measured at 1,000 and 5,000 clients unless told otherwise, TLS at
# 1,000, 5,000 and 10,000.
if [[ $SCENARIO == deflate ]]; then CLIENTS=${CLIENTS:-1000,5000}; fi
if [[ $SCENARIO == tls ]]; then CLIENTS=${CLIENTS:-1000,5000,10000}; fi

# Ladder: start (deliveries/s), growth factor, refinement steps, most points per ladder,
# highest deliveries/s tried.
case $MODE in
    full)
        CLIENTS=${CLIENTS:-1000,5000,10000}; SHARDS=${SHARDS:-$(default_shards)}
        DURATION=${DURATION:-5}; WARMUP=${WARMUP:-2}
        START=200000; FACTOR=2; REFINE=2; MAX_POINTS=9; MAX_D=32000000
        LINGERS="0 1ms 5ms"; LINGER_RATES=${BENCH_LINGER_RATES:-"10 saturation"}
        REPEAT=${REPEAT:-3}
        ;;
    quick)
        CLIENTS=${CLIENTS:-1000}; SHARDS=${SHARDS:-$(default_shards | cut -d, -f1-2)}
        DURATION=${DURATION:-2}; WARMUP=${WARMUP:-1}
        START=250000; FACTOR=4; REFINE=0; MAX_POINTS=3; MAX_D=16000000
        LINGERS="0 1ms"; LINGER_RATES=${BENCH_LINGER_RATES:-"20"}
        REPEAT=${REPEAT:-1}
        ;;
    smoke)
        CLIENTS=${CLIENTS:-200}; SHARDS=${SHARDS:-1}
        DURATION=${DURATION:-1}; WARMUP=${WARMUP:-0.5}
        START=20000; FACTOR=2; REFINE=0; MAX_POINTS=1; MAX_D=20000
        LINGERS="1ms"; LINGER_RATES=${BENCH_LINGER_RATES:-"50"}
        REPEAT=${REPEAT:-1}
        ;;
esac
[[ $REPEAT =~ ^[1-9][0-9]*$ ]] || { echo "bench.sh: --repeat wants a count >= 1" >&2; exit 2; }

# Open files: the server holds one descriptor per client, and so does the load generator.
HARD_NOFILE=$(ulimit -Hn)
[[ $HARD_NOFILE == unlimited ]] && HARD_NOFILE=1048576
ulimit -n "$HARD_NOFILE" 2>/dev/null || true
MAX_CLIENTS=$((HARD_NOFILE - 200))
capped=""
for c in ${CLIENTS//,/ }; do
    if ((c > MAX_CLIENTS)); then
        echo "bench.sh: capping $c clients to $MAX_CLIENTS: the open-file limit is $HARD_NOFILE" \
             "and the server and the load generator each hold one descriptor per client" >&2
        c=$MAX_CLIENTS
    fi
    capped+="$c "
done
CLIENT_LIST=$capped

# CPU split: the load generator gets the upper half of the CPUs (the last one on 2-3
# cores), the server the rest. A server with more shards than its CPUs gets every CPU and
# shares the load generator's: on 2 cores, 2 shards compete with the load generator.
# shellcheck source=scripts/cpu-split.sh
source "$(dirname "$0")/cpu-split.sh"
ALL_CPUS="0-$((CORES - 1))"

if ((BUILD)); then
    echo "bench.sh: cargo build --release" >&2
    cargo build --release --quiet
fi
# BENCH_BIN: measure another build (e.g. the commit before a change) with --no-build.
BIN=${BENCH_BIN:-$PWD/target/release/tickcast}
# The source tree as the sweep starts (the binary was just built from it, unless --no-build):
# edits made while the sweep runs are not in the binary.
COMMIT=$(git rev-parse HEAD 2>/dev/null || echo unknown)
DIRTY=$(git diff --quiet HEAD 2>/dev/null || echo ' with uncommitted changes')
if ((BUILD)); then BUILT_FROM="when the binary was built"; else BUILT_FROM="at the start; not rebuilt (--no-build)"; fi

OUT=${OUT:-results/$(date +%Y-%m-%d)-$(hostname -s)}
mkdir -p "$OUT/logs"
CSV=$OUT/raw.csv
if [[ -s $CSV ]]; then
    echo "bench.sh: $CSV exists; rows are appended to it" >&2
fi

# Extra `tickcast serve` options of every point (a scenario may set them).
SERVE_EXTRA=()

SERVER_PID=""
cleanup() {
    if [[ -n $SERVER_PID ]] && kill -0 "$SERVER_PID" 2>/dev/null; then
        kill -KILL "$SERVER_PID" 2>/dev/null || true
    fi
}
trap cleanup EXIT
trap 'echo "bench.sh: interrupted" >&2; exit 130' INT TERM

POINT=0
SWEEP_START=$(date +%s)

# Waits until 127.0.0.1:$1 accepts connections (or the process $2 died). 0 when up.
wait_listening() {
    local port=$1 pid=$2 i
    for i in $(seq 1 100); do
        kill -0 "$pid" 2>/dev/null || return 1
        if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then return 0; fi
        sleep 0.05
    done
    return 1
}

source "$(dirname "$0")/stop-server.sh"

# run_point MODE SHARDS CLIENTS RATE LINGER: measures one run of a point, appends its row,
# and sets VERDICT (ok, saturated, client-bound, failed: of the point's median run so far),
# NEAR (near when that run is close to the bar, else clear) and RUNS (runs of the point).
run_point() {
    local mode=$1 shards=$2 clients=$3 rate=$4 linger=$5
    local scpus split port log attempt rows_before rows_after
    POINT=$((POINT + 1))
    if ((shards <= SERVER_NCPU)); then
        scpus=$SERVER_CPUS; split="server:$SERVER_CPUS load:$LOAD_CPUS"
    else
        scpus=$ALL_CPUS; split="server:$ALL_CPUS load:$LOAD_CPUS (shared)"
    fi
    log=$OUT/logs/$(printf '%03d' "$POINT")-$mode-s$shards-c$clients-r$rate-l$linger
    # `tls`: the same server with TLS on its port (certificates from run_tls), clients on
    # wss:// trusting the run's throwaway CA.
    local scheme=ws serve_tls=() extra=()
    if [[ $mode == tls* ]]; then
        scheme=wss
        serve_tls=(--tls-cert "$TLS_CERT" --tls-key "$TLS_KEY")
        extra+=(--tls-ca "$TLS_CA")
    fi
    for attempt in 1 2 3; do
        port=$((BASE_PORT + (POINT * 3 + attempt) % 200))
        if [[ $mode == baseline ]]; then
            RUST_LOG=warn taskset -c "$scpus" "$BIN" baseline --listen "127.0.0.1:$port" \
                --rate "$rate" --payload-bytes "$PAYLOAD" 2>"$log.server.log" &
        else
            RUST_LOG=warn taskset -c "$scpus" "$BIN" serve --listen "127.0.0.1:$port" \
                --shards "$shards" --providers 1 --rate "$rate" --linger "$linger" \
                --payload-bytes "$PAYLOAD" --drain-timeout 1s "${SERVE_EXTRA[@]}" \
                ${serve_tls[@]+"${serve_tls[@]}"} 2>"$log.server.log" &
        fi
        SERVER_PID=$!
        wait_listening "$port" "$SERVER_PID" && break
        stop_server
    done
    if [[ -z $SERVER_PID ]]; then
        echo "bench.sh: the server did not start (see $log.server.log):" >&2
        { grep -m1 '^error' "$log.server.log" || tail -n 3 "$log.server.log"; } | sed 's/^/    /' >&2
        if ((${#serve_tls[@]})) && grep -q "unexpected argument '--tls-cert'" "$log.server.log"; then
            echo "bench.sh: this tickcast ($BIN) does not take --tls-cert/--tls-key:" \
                 "--tls needs a server built with TLS" >&2
        fi
        exit 1
    fi
    if [[ $mode != baseline ]]; then extra+=(--scrape-metrics --pinned); fi
    # `deflate`: the same server, with clients that negotiate permessage-deflate;
    # `deflate-batch`: ... that also take runs of messages as one message (`?batch=1`).
    local query=topics=ticks
    if [[ $mode == deflate* ]]; then extra+=(--deflate); fi
    if [[ $mode == *batch ]]; then query+="&batch=1"; fi
    rows_before=$( [[ -f $CSV ]] && wc -l <"$CSV" || echo 0)
    taskset -c "$LOAD_CPUS" "$BIN" load "$scheme://127.0.0.1:$port/ws?$query" \
        -n "$clients" --connect-rate "$CONNECT_RATE" --source-ips "$SOURCE_IPS" \
        --warmup "$WARMUP" --duration "$DURATION" --server-pid "$SERVER_PID" \
        --csv "$CSV" --quiet --mode "$mode" --shards "$shards" --linger "$linger" \
        --payload-bytes "$PAYLOAD" --providers 1 --offered-rate "$rate" \
        --cpu-split "$split" "${extra[@]}" >"$log.txt" 2>&1 || true
    stop_server
    rows_after=$( [[ -f $CSV ]] && wc -l <"$CSV" || echo 0)
    if ((rows_after == rows_before)); then
        VERDICT=failed; NEAR=clear; RUNS=1
        echo "bench.sh: no row written (see $log.txt)" >&2
    else
        read -r VERDICT NEAR RUNS < <("$BIN" report --verdict "$CSV" || echo failed clear 1)
    fi
    printf '[%3d %4ds] %-8s shards=%s clients=%-5s rate=%-7s linger=%-4s run %s %-12s %s\n' \
        "$POINT" $(($(date +%s) - SWEEP_START)) "$mode" "$shards" "$clients" "$rate" "$linger" \
        "$RUNS" "$VERDICT" "$(grep -m1 '^delivered' "$log.txt" | awk '{print $2, $3}') $(grep -m1 '^latency' "$log.txt" | awk '{print "p99", $9, $10}' | tr -d ,)" >&2
}

# ladder MODE SHARDS CLIENTS: climbs by FACTOR until a point is not ok (stepping down
# instead when the first point already fails), then refines between the last good and the
# first bad rate. Rates are whole messages/s (at least 1); a rate already measured in this
# ladder ends it.
ladder() {
    local mode=$1 shards=$2 clients=$3
    local d=$START lo=0 hi=0 points=0 refined=0 rate measured=" "
    while ((points < MAX_POINTS)); do
        rate=$(awk -v d="$d" -v c="$clients" 'BEGIN { r = int(d / c + 0.5); if (r < 1) r = 1; print r }')
        [[ $measured == *" $rate "* ]] && break
        measured+="$rate "
        run_point "$mode" "$shards" "$clients" "$rate" 0
        # Close to the bar, one run cannot decide: measure it REPEAT times in all and go by
        # the median run (whatever the second run says: one outlier must not decide).
        if [[ $NEAR == near ]]; then
            while ((RUNS < REPEAT)); do
                run_point "$mode" "$shards" "$clients" "$rate" 0
                [[ $VERDICT != failed ]] || break
            done
        fi
        points=$((points + 1))
        # ok: sustained (possibly with a busy client, flagged in the row); anything else
        # (saturated, client-bound, failed) is the upper end of the search.
        case $VERDICT in
            ok) lo=$d ;;
            *) if ((hi == 0 || d < hi)); then hi=$d; fi ;;
        esac
        if ((hi == 0)); then
            d=$(awk -v d="$d" -v f="$FACTOR" 'BEGIN { printf "%d", d * f }')
            ((d <= MAX_D)) || break
        elif ((lo == 0)); then
            d=$(awk -v d="$d" -v f="$FACTOR" 'BEGIN { printf "%d", d / f }')
        else
            ((refined < REFINE)) || break
            refined=$((refined + 1))
            d=$(awk -v a="$lo" -v b="$hi" 'BEGIN { printf "%d", sqrt(a * b) }')
        fi
    done
}

if [[ -n $SCENARIO ]]; then
    # shellcheck source=scripts/bench-scenarios.sh
    source "$(dirname "$0")/bench-scenarios.sh"
    echo "bench.sh: $SCENARIO scenario into $OUT (${DURATION}s windows after ${WARMUP}s warmup)" >&2
    "run_$SCENARIO"
    echo "bench.sh: done in $(($(date +%s) - SWEEP_START)) s: $OUT" >&2
    exit 0
fi

echo "bench.sh: $MODE sweep into $OUT: clients {$CLIENT_LIST}, shards {$SHARDS}, baseline;" \
     "${DURATION}s windows after ${WARMUP}s warmup; server CPUs $SERVER_CPUS, load CPUs $LOAD_CPUS" >&2
LOADAVG_START=$(cut -d' ' -f1-3 /proc/loadavg)

for clients in $CLIENT_LIST; do
    ladder baseline 1 "$clients"
    for shards in ${SHARDS//,/ }; do
        ladder tickcast "$shards" "$clients"
    done
done

# Linger: the single hub at a low rate and at its saturation rate (found above), at the
# middle client count.
read -r -a client_array <<<"$CLIENT_LIST"
LINGER_CLIENTS=${BENCH_LINGER_CLIENTS:-${client_array[$(((${#client_array[@]} - 1) / 2))]}}
SAT_RATE=""
if [[ $LINGER_RATES == *saturation* ]]; then
    best=$("$BIN" report "$CSV" --best-rate "tickcast,1,$LINGER_CLIENTS" || true)
    SAT_RATE=${best%.*}
    LINGER_RATES=${LINGER_RATES/saturation/$SAT_RATE}
fi
for rate in $LINGER_RATES; do
    for linger in $LINGERS; do
        # The main sweep measured linger 0 at the saturation rate already; another run there
        # would count as one more run of that point and could move it.
        if [[ $linger == 0 && -n $SAT_RATE && $rate == "$SAT_RATE" ]]; then continue; fi
        run_point tickcast 1 "$LINGER_CLIENTS" "$rate" "$linger"
    done
done

"$BIN" report "$CSV" --out "$OUT" >/dev/null

# README: how this folder was made.
{
    echo "# Benchmark run $(basename "$OUT")"
    echo
    echo "Command: \`$COMMAND_LINE\` ($MODE sweep), $(date -u '+%Y-%m-%d %H:%M UTC'), took $(($(date +%s) - SWEEP_START)) s."
    echo
    echo "| | |"
    echo "|---|---|"
    echo "| git commit | \`$COMMIT\`$DIRTY ($BUILT_FROM) |"
    echo "| CPU | $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//') |"
    echo "| cores | $CORES |"
    echo "| kernel | $(uname -sr) |"
    echo "| rustc | $(rustc --version 2>/dev/null || echo unknown) |"
    echo "| open files (soft/hard) | $(ulimit -Sn) / $HARD_NOFILE |"
    echo "| somaxconn | $(cat /proc/sys/net/core/somaxconn 2>/dev/null || echo ?) |"
    echo "| ephemeral ports | $(tr '\t' '-' </proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || echo ?) |"
    echo "| load average at start | $LOADAVG_START |"
    echo "| clients | $CLIENT_LIST |"
    echo "| shards | $SHARDS |"
    echo "| window | ${WARMUP} s warmup, ${DURATION} s measured; connect rate ${CONNECT_RATE}/s from $SOURCE_IPS |"
    echo "| payload | $PAYLOAD bytes (0 = natural tick, ~100 bytes); 1 provider thread |"
    echo
    echo "## CPU split"
    echo
    echo "The server runs under \`taskset -c $SERVER_CPUS\` and \`tickcast load\` under \`taskset -c $LOAD_CPUS\`."
    echo "A server with more shards than its $SERVER_NCPU CPU(s) gets all CPUs ($ALL_CPUS) and shares"
    echo "the load generator's: such rows say \`(shared)\` in \`cpu_split\`. On a 2-core machine the"
    echo "2-shard server and the load generator compete for a core, so that row understates sharding."
    echo "Every row carries the load generator's own CPU (\`load_cpu_pct\`); a row at >= 90 % is"
    echo "marked \`client_bound\`: if it failed the bar, the failure may be the client's, not the"
    echo "server's. The client pays about what the server pays per socket read/write: when the"
    echo "server writes each message on its own (low rates, many clients), one load-generator"
    echo "core saturates near the rate one server core does."
    echo "\`loadavg_1m\` records how busy the machine was when each point started."
    echo
    echo "## Files"
    echo
    echo "- \`raw.csv\`: one row per point (schema below); \`summary.md\`: saturation tables;"
    echo "- \`p99_vs_offered.svg\` (where each line crosses the 100 / 250 ms bars is its saturation point),"
    echo "  \`saturation.svg\` (the saturation table as bars), \`delivered_vs_offered.svg\`,"
    echo "  \`p99_vs_clients.svg\`, \`cpu_ns_per_msg.svg\`, \`rss_per_conn.svg\`;"
    echo "- \`logs/\`: each point's load summary and server log."
    echo
    echo "## raw.csv schema"
    echo
    "$BIN" report --schema
} >"$OUT/README.md"

echo "bench.sh: done in $(($(date +%s) - SWEEP_START)) s: $OUT/summary.md" >&2
