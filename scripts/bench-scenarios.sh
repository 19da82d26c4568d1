#!/usr/bin/env bash
# Messaging scenarios for scripts/bench.sh (sourced by it, not run alone):
#
#   chat     one room, N members on one node, P of them publishing R msgs/s each; every
#            message reaches every member. Rows in <out>/chat.csv.
#   cluster  two tickcast nodes sharing rooms through Redis (scripts/bench-cluster.sh):
#            cross-node latency and throughput (cluster.csv), a resume on the other node
#            (resume.csv), and publishes/s through one redis-server against a 3-master
#            Redis Cluster, with what each publish costs Redis (bus.csv).
#
# Both use the same `tickcast load` as the sweep; the publisher-to-subscriber latency is in
# the `pub_lat_p50_us`/`pub_lat_p99_us` columns, throughput in `delivered_per_s`.

# start_serve PORT LOG ARGS...: starts `tickcast serve` in the background, sets SERVER_PID.
start_serve() {
    local port=$1 log=$2
    shift 2
    RUST_LOG=warn taskset -c "$SERVER_CPUS" "$BIN" serve --listen "127.0.0.1:$port" \
        --providers 0 --telemetry-interval 0s --publish-rate 0 --drain-timeout 1s \
        --presence-list-max 100 "$@" 2>"$log" &
    SERVER_PID=$!
    wait_listening "$port" "$SERVER_PID" || { echo "bench.sh: server on $port did not start (see $log)" >&2; exit 1; }
}

chat_point() {
    local members=$1 publishers=$2 rate=$3 shards=$4
    local port=$((BASE_PORT + 150)) log
    POINT=$((POINT + 1))
    log=$OUT/logs/$(printf '%03d' "$POINT")-chat-s$shards-m$members-p$publishers-r$rate
    start_serve "$port" "$log.server.log" --shards "$shards"
    taskset -c "$LOAD_CPUS" "$BIN" load "ws://127.0.0.1:$port/ws?room=bench.chat" \
        -n "$members" --publishers "$publishers" --publish-rate "$rate" \
        --publish-topic bench.chat --connect-rate "$CONNECT_RATE" --source-ips "$SOURCE_IPS" \
        --warmup "$WARMUP" --duration "$DURATION" --server-pid "$SERVER_PID" \
        --csv "$OUT/chat.csv" --quiet --mode chat --shards "$shards" --linger 0 \
        --providers 0 --offered-rate "$((publishers * rate))" \
        --cpu-split "server:$SERVER_CPUS load:$LOAD_CPUS" >"$log.txt" 2>&1 || true
    stop_server
    printf '[%3d] chat    shards=%s members=%-5s publishers=%-3s rate=%-5s %s\n' "$POINT" "$shards" \
        "$members" "$publishers" "$rate" "$(grep -m1 '^delivered' "$log.txt" | awk '{print $2, $3}')" >&2
}

run_chat() {
    local members publishers rate
    for members in ${CHAT_MEMBERS:-100 1000}; do
        for publishers in ${CHAT_PUBLISHERS:-1 10}; do
            for rate in ${CHAT_RATES:-10 100}; do
                chat_point "$members" "$publishers" "$rate" 1
            done
        done
    done
}

# shellcheck source=scripts/bench-cluster.sh
source "$(dirname "${BASH_SOURCE[0]}")/bench-cluster.sh"
