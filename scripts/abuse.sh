#!/usr/bin/env bash
# Reliability suite: hostile scenarios against a fresh server each, on 127.0.0.1 only.
#
#   scripts/abuse.sh                      # full run (a few minutes; at most ~15)
#   scripts/abuse.sh --quick              # small counts, under ~90 s (for scripts/test.sh)
#   scripts/abuse.sh --out DIR            # where to write (default: results/<date>-<host>;
#                                         #   with --quick a fresh temporary folder)
#   scripts/abuse.sh --scenarios churn,slowloris    # only these
#   scripts/abuse.sh --no-build           # use the binary already built
#
# For each scenario: start `tickcast serve --listen 127.0.0.1:PORT` with default settings
# and the scenario's own (see `prepare`: stalled_readers a faster ticker, history_fill a
# 16 MiB --history-budget, forged_headers nginx in front, abandoned_rooms a private
# redis-server behind; the sidecars are stopped after the scenario, and on exit), sample it from
# outside (VmRSS, open fds, /proc/net/sockstat TCP mem, a /metrics scrape before and after),
# run `tickcast abuse --scenario NAME` (the client side; it prints one JSON line with its
# checks and verdict), stop the server with SIGTERM (the shutdown scenario's SIGTERM comes
# while its clients are connected) and record the exit code and time. A row passes only if
# the tool's checks pass and the server was alive at the end, exited 0, within 5.5 s of
# SIGTERM (the 5 s drain timeout, plus process exit); an undecided check stays undecided.
#
# Output: DIR/reliability.md (scenario | expectation | measured | verdict, command, commit,
# machine), DIR/reliability.csv (the same plus raw figures), DIR/logs/ (each scenario's JSON
# line, server log, /metrics before and after). Exit 0 only when every scenario passed.
set -euo pipefail
cd "$(dirname "$0")/.."

MODE=full
OUT=""
BUILD=1
ONLY=""
BASE_PORT=${ABUSE_PORT:-18300}
COMMAND_LINE="scripts/abuse.sh $*"
ALL=(churn rst_churn slowloris pending_sockets stalled_readers echo_hold malformed_frames
     malformed_http publish_flood error_flood oversized_burst shutdown reconnect_storm
     label_churn history_fill presence_churn forged_headers abandoned_rooms)
# history_fill's node-wide history budget: small, so that the clients can pass it many times.
HISTORY_BUDGET=$((16 << 20))
# Longest the server may take to exit after SIGTERM: --drain-timeout (5 s) + process exit.
EXIT_LIMIT=5.5

usage() {
    sed -n '2,24p' "$0" | sed 's/^# \{0,1\}//'
    exit "${1:-0}"
}

while (($#)); do
    case "$1" in
        --quick) MODE=quick ;;
        --out) OUT=$2; shift ;;
        --scenarios) ONLY=$2; shift ;;
        --no-build) BUILD=0 ;;
        -h|--help) usage 0 ;;
        *) echo "abuse.sh: unknown option $1" >&2; usage 2 ;;
    esac
    shift
done

SCENARIOS=("${ALL[@]}")
if [ -n "$ONLY" ]; then
    IFS=, read -r -a SCENARIOS <<<"$ONLY"
    for s in "${SCENARIOS[@]}"; do
        [[ " ${ALL[*]} " == *" $s "* ]] || { echo "abuse.sh: unknown scenario $s" >&2; exit 2; }
    done
fi

# jq reads the tool's JSON lines; curl scrapes /metrics; nginx and redis-server are the
# sidecars of forged_headers and abandoned_rooms. Installed when missing (Debian).
selected() { [[ " ${SCENARIOS[*]} " == *" $1 "* ]]; }
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
need=()
command -v jq >/dev/null 2>&1 || need+=(jq)
command -v curl >/dev/null 2>&1 || need+=(curl)
if selected forged_headers && [ ! -x "$NGINX" ]; then need+=(nginx-light); fi
if selected abandoned_rooms; then
    command -v redis-server >/dev/null 2>&1 || need+=(redis-server)
    command -v redis-cli >/dev/null 2>&1 || need+=(redis-tools)
fi
if ((${#need[@]})); then
    as_root=()
    if [ "$(id -u)" -ne 0 ]; then
        command -v sudo >/dev/null 2>&1 || { echo "abuse.sh: needs ${need[*]} (no root, no sudo)" >&2; exit 1; }
        as_root=(sudo)
    fi
    echo "abuse.sh: installing ${need[*]}"
    ${as_root[@]+"${as_root[@]}"} apt-get update -qq
    ${as_root[@]+"${as_root[@]}"} env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}"
fi

TARGET_DIR=${CARGO_TARGET_DIR:-target}
BIN="$TARGET_DIR/release/tickcast"
if ((BUILD)); then
    echo "abuse.sh: cargo build --release"
    cargo build --release --quiet
fi
[ -x "$BIN" ] || { echo "abuse.sh: $BIN not found (build first)" >&2; exit 1; }

if [ -z "$OUT" ]; then
    if [ "$MODE" = quick ]; then
        OUT=$(mktemp -d /tmp/abuse-quick.XXXXXX)
    else
        OUT="results/$(date +%F)-$(hostname -s)"
    fi
fi
mkdir -p "$OUT/logs"
CSV="$OUT/reliability.csv"
MD="$OUT/reliability.md"
QUICK_FLAG=()
[ "$MODE" = quick ] && QUICK_FLAG=(--quick)

echo "scenario,verdict,expectation,measured,tool_verdict,tool_secs,server_args,server_alive_after,server_exit_code,server_exit_secs,server_rss_before_kib,server_rss_after_kib,server_rss_peak_kib,server_fds_before,server_fds_after,tcp_mem_pages_before,tcp_mem_pages_after,tcp_mem_pages_peak,checks" >"$CSV"

rss_of() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status" 2>/dev/null || true; }
fds_of() { [ -d "/proc/$1/fd" ] || return 0; ls "/proc/$1/fd" 2>/dev/null | wc -l || true; }
tcp_mem() { awk '$1 == "TCP:" { for (i = 2; i < NF; i++) if ($i == "mem") print $(i + 1) }' /proc/net/sockstat; }
now() { date +%s.%N; }
secs_since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.2f", b - a }'; }

# Samples the server's RSS and the host's TCP memory every 0.25 s; prints the peaks at the end.
sampler() {
    local pid=$1 file=$2 rss mem peak_rss=0 peak_mem=0
    while kill -0 "$pid" 2>/dev/null && [ ! -e "$file.stop" ]; do
        rss=$(rss_of "$pid"); mem=$(tcp_mem)
        [ -n "$rss" ] && ((rss > peak_rss)) && peak_rss=$rss
        [ -n "$mem" ] && ((mem > peak_mem)) && peak_mem=$mem
        echo "$peak_rss $peak_mem" >"$file"
        sleep 0.25
    done
}

# Stops server $1 with SIGTERM; sets EXIT_CODE and EXIT_SECS (SIGKILL after 20 s: "killed").
stop_server() {
    local pid=$1 t0
    t0=$(now)
    kill -TERM "$pid" 2>/dev/null || true
    local i=0
    while kill -0 "$pid" 2>/dev/null && ((i < 400)); do sleep 0.05; i=$((i + 1)); done
    EXIT_SECS=$(secs_since "$t0")
    if kill -0 "$pid" 2>/dev/null; then
        kill -KILL "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
        EXIT_CODE=killed
    else
        EXIT_CODE=0
        wait "$pid" 2>/dev/null || EXIT_CODE=$?
    fi
}

# The sidecars running for the current scenario (pids), stopped after it and on any exit.
SIDECARS=()
stop_sidecars() {
    local p
    for p in ${SIDECARS[@]+"${SIDECARS[@]}"}; do
        kill -TERM "$p" 2>/dev/null || true
        for _ in $(seq 100); do kill -0 "$p" 2>/dev/null || break; sleep 0.05; done
        kill -KILL "$p" 2>/dev/null || true
        wait "$p" 2>/dev/null || true
    done
    SIDECARS=()
}
trap stop_sidecars EXIT
trap 'exit 130' INT TERM

# Waits (at most 10 s) until 127.0.0.1:$1 accepts connections.
wait_port() {
    for _ in $(seq 100); do
        (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
        sleep 0.1
    done
    return 1
}

# nginx on 127.0.0.1:$1 in front of the server on $2, with deploy/nginx.conf's proxy settings
# (X-Forwarded-For appended, Forwarded cleared) over plain HTTP; files under $3.*.
start_nginx() {
    local front=$1 back=$2 base dir
    base=$(cd "$(dirname "$3")" && pwd)/$(basename "$3")
    dir=$(mktemp -d "${base}.nginx.XXXXXX")
    sed -e "s|listen 127.0.0.1:8443 ssl;|listen 127.0.0.1:$front;|" \
        -e '/ssl_certificate/d' \
        -e "s|127.0.0.1:8080|127.0.0.1:$back|" \
        -e "s|/var/log/nginx/tickcast.access.log|$base.nginx-access.log|" \
        deploy/nginx.conf >"$base.nginx.conf"
    grep -q "listen 127.0.0.1:$front;" "$base.nginx.conf" || { echo "abuse.sh: deploy/nginx.conf changed shape" >&2; return 1; }
    "$NGINX" -p "$dir" -c "$base.nginx.conf" -e stderr \
        -g "daemon off; pid $dir/nginx.pid; error_log stderr;" 2>"$base.nginx.log" &
    SIDECARS+=($!)
    wait_port "$front"
}

# A private redis-server on 127.0.0.1:$1, persisting nothing; its log in $2.redis.log.
start_redis() {
    redis-server --port "$1" --bind 127.0.0.1 --save '' --appendonly no \
        >"$2.redis.log" 2>&1 &
    SIDECARS+=($!)
    for _ in $(seq 100); do
        [ "$(redis-cli -p "$1" ping 2>/dev/null)" = PONG ] && return 0
        sleep 0.1
    done
    return 1
}

# What scenario $1 (server port $2, files $3.*) needs besides the defaults: sets SERVER_EXTRA
# (options of `tickcast serve`) and TOOL_EXTRA (of `tickcast abuse`), and starts its sidecars.
prepare() {
    local s=$1 port=$2 base=$3
    SERVER_EXTRA=(); TOOL_EXTRA=()
    case "$s" in
        stalled_readers) SERVER_EXTRA=(--rate 2000 --payload-bytes 512) ;;
        history_fill) SERVER_EXTRA=(--history-budget "$HISTORY_BUDGET") ;;
        forged_headers)
            SERVER_EXTRA=(--trusted-proxy 127.0.0.1/32 --max-connections-per-ip 1 --log-level debug)
            TOOL_EXTRA=(--via "127.0.0.1:$((port + 100))" --server-log "$base.server.log")
            start_nginx $((port + 100)) "$port" "$base" ;;
        abandoned_rooms)
            SERVER_EXTRA=(--redis "redis://127.0.0.1:$((port + 200))")
            TOOL_EXTRA=(--redis "127.0.0.1:$((port + 200))")
            start_redis $((port + 200)) "$base" ;;
    esac
}

ROWS=()
ALL_PASS=1
SUITE_T0=$(now)
index=0
for s in "${SCENARIOS[@]}"; do
    port=$((BASE_PORT + index)); index=$((index + 1))
    log="$OUT/logs/$s"
    sidecar_ok=1
    prepare "$s" "$port" "$log" || sidecar_ok=0
    server_args=(--listen "127.0.0.1:$port" ${SERVER_EXTRA[@]+"${SERVER_EXTRA[@]}"})
    echo "abuse.sh: $s (server: tickcast serve ${server_args[*]})"
    "$BIN" serve "${server_args[@]}" >"$log.server.log" 2>&1 &
    pid=$!
    up=0
    for _ in $(seq 100); do
        if curl -s -o /dev/null --max-time 1 "http://127.0.0.1:$port/healthz"; then up=1; break; fi
        sleep 0.1
    done
    rss_before=$(rss_of "$pid"); fds_before=$(fds_of "$pid"); mem_before=$(tcp_mem)
    curl -s --max-time 5 "http://127.0.0.1:$port/metrics" >"$log.metrics-before.txt" || true
    rm -f "$log.peaks" "$log.peaks.stop" "$log.ready"
    sampler "$pid" "$log.peaks" &
    sampler_pid=$!

    tool=("$BIN" abuse --target "127.0.0.1:$port" --scenario "$s" --server-pid "$pid"
          ${QUICK_FLAG[@]+"${QUICK_FLAG[@]}"} ${TOOL_EXTRA[@]+"${TOOL_EXTRA[@]}"})
    t0=$(now)
    alive=yes
    EXIT_CODE=""; EXIT_SECS=""
    if ((sidecar_ok == 0)); then
        echo '{"verdict":"fail","measured":"the scenario'"'"'s sidecar (nginx or redis-server) did not start: see its log"}' >"$log.json"
    elif ((up == 0)); then
        echo '{"verdict":"fail","measured":"the server did not answer /healthz within 10 s"}' >"$log.json"
    elif [ "$s" = shutdown ]; then
        # The tool connects everyone and says when; the SIGTERM is sent from here.
        "${tool[@]}" --ready-file "$log.ready" >"$log.json" 2>"$log.stderr" &
        tool_pid=$!
        for _ in $(seq 1200); do
            [ -e "$log.ready" ] && break
            kill -0 "$tool_pid" 2>/dev/null || break
            sleep 0.05
        done
        kill -0 "$pid" 2>/dev/null || alive=no
        stop_server "$pid"
        wait "$tool_pid" || true
    else
        "${tool[@]}" >"$log.json" 2>"$log.stderr" || true
        kill -0 "$pid" 2>/dev/null || alive=no
    fi
    tool_secs=$(secs_since "$t0")
    rss_after=$(rss_of "$pid"); fds_after=$(fds_of "$pid"); mem_after=$(tcp_mem)
    if [ "$s" != shutdown ]; then
        curl -s --max-time 5 "http://127.0.0.1:$port/metrics" >"$log.metrics-after.txt" || true
        stop_server "$pid"
    fi
    stop_sidecars
    touch "$log.peaks.stop"
    wait "$sampler_pid" 2>/dev/null || true
    read -r rss_peak mem_peak <"$log.peaks" 2>/dev/null || { rss_peak=""; mem_peak=""; }

    # The tool's verdict and lines; a tool that printed nothing cannot decide.
    line=$(tail -n 1 "$log.json" 2>/dev/null || true)
    if ! jq -e . >/dev/null 2>&1 <<<"$line"; then
        line=$(jq -cn --arg e "$(tail -n 3 "$log.stderr" 2>/dev/null | tr '\n' ' ')" \
            '{verdict:"undecided",measured:("the tool printed no result: " + $e),expectation:"",checks:[]}')
    fi
    tool_verdict=$(jq -r '.verdict // "undecided"' <<<"$line")
    expectation=$(jq -r '.expectation // ""' <<<"$line")
    measured=$(jq -r '.measured // ""' <<<"$line")
    checks=$(jq -c '[.checks[]? | {(.name): .verdict}] | add // {}' <<<"$line")

    # The server's part: alive at the end, exit 0, within the drain timeout.
    server_ok=1
    notes="server exit ${EXIT_CODE} after ${EXIT_SECS} s"
    [ "$alive" = yes ] || { server_ok=0; notes="server died during the scenario; $notes"; }
    [ "$EXIT_CODE" = 0 ] || server_ok=0
    awk -v t="$EXIT_SECS" -v l="$EXIT_LIMIT" 'BEGIN { exit !(t <= l) }' || server_ok=0
    ((server_ok)) || notes="$notes [server exit fail]"
    if [ "$tool_verdict" = fail ] || ((server_ok == 0)); then
        verdict=fail
    elif [ "$tool_verdict" = pass ]; then
        verdict=pass
    else
        verdict=undecided
    fi
    [ "$verdict" = pass ] || ALL_PASS=0
    measured="$measured; $notes"
    echo "abuse.sh: $s: $verdict: $measured"

    jq -rn --arg s "$s" --arg v "$verdict" --arg e "$expectation" --arg m "$measured" \
        --arg tv "$tool_verdict" --arg ts "$tool_secs" --arg sa "${server_args[*]:2}" \
        --arg al "$alive" --arg ec "$EXIT_CODE" --arg es "$EXIT_SECS" \
        --arg rb "$rss_before" --arg ra "$rss_after" --arg rp "$rss_peak" \
        --arg fb "$fds_before" --arg fa "$fds_after" \
        --arg mb "$mem_before" --arg ma "$mem_after" --arg mp "$mem_peak" --arg c "$checks" \
        '[$s,$v,$e,$m,$tv,$ts,$sa,$al,$ec,$es,$rb,$ra,$rp,$fb,$fa,$mb,$ma,$mp,$c] | @csv' >>"$CSV"
    ROWS+=("$(jq -rn --arg s "$s" --arg e "$expectation" --arg m "$measured" --arg v "$verdict" \
        '[$s,$e,$m,$v] | map(gsub("\\|"; "\\\\|")) | "| " + join(" | ") + " |"')")
done
SUITE_SECS=$(secs_since "$SUITE_T0")

commit=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
git diff --quiet HEAD 2>/dev/null || commit="$commit (with uncommitted changes)"
cpu=$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)
passed=$(printf '%s\n' "${ROWS[@]}" | grep -c ' | pass |$' || true)
{
    echo "# Reliability: hostile scenarios against tickcast"
    echo
    echo "$(date -u +'%F %H:%M UTC'), ${MODE} run, ${SUITE_SECS} s: ${passed} of ${#ROWS[@]} scenarios pass."
    echo
    echo "| scenario | expectation | measured | verdict |"
    echo "|---|---|---|---|"
    printf '%s\n' "${ROWS[@]}"
    echo
    echo "- Command: \`$COMMAND_LINE\`"
    echo "- Commit: $commit"
    echo "- Machine: $(hostname -s), $(nproc) cores ($cpu), $(awk '/^MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo), Linux $(uname -r); tcp_mem $(tr '\t' ' ' </proc/sys/net/ipv4/tcp_mem) pages"
    echo "- Server: \`tickcast serve --listen 127.0.0.1:PORT\` with default settings, a fresh one per scenario; stalled_readers adds \`--rate 2000 --payload-bytes 512\` (4 feeds: about 8,000 ticks/s) so that stalled sockets fill up; history_fill \`--history-budget $HISTORY_BUDGET\`; forged_headers \`--trusted-proxy 127.0.0.1/32 --max-connections-per-ip 1 --log-level debug\` behind nginx (deploy/nginx.conf's proxy settings, plain HTTP); abandoned_rooms \`--redis\` to a private redis-server (no persistence). No CPU pinning: the server (one shard per core) and the tool share the cores."
    echo "- Client: \`tickcast abuse --scenario NAME --server-pid PID${QUICK_FLAG[*]:+ --quick}\`, whose checks decide each row together with the server's exit (alive at the end, exit 0 within ${EXIT_LIMIT} s of SIGTERM). \`undecided\` means a figure was missing (e.g. a metric absent on this server), never a pass."
    echo "- Raw figures: \`reliability.csv\`; each scenario's JSON line, server log and /metrics before and after: \`logs/\`."
} >"$MD"
echo "abuse.sh: wrote $MD and $CSV (${SUITE_SECS} s)"
((ALL_PASS)) && exit 0
exit 1
