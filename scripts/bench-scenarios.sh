#!/usr/bin/env bash
# Messaging scenarios for scripts/bench.sh (sourced by it, not run alone):
#
#   chat     one room, N members on one node, P of them publishing R msgs/s each; every
#            message reaches every member. Rows in <out>/chat.csv.
#   cluster  two tickcast nodes and a redis-server on this machine: P publishers on node A,
#            N subscribers on node B; the cross-node latency (publisher's sent_us to receipt
#            on B, Redis hop included) and throughput. Rows in <out>/cluster.csv.
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

run_cluster() {
    local redis_port=$((BASE_PORT + 170)) port_a=$((BASE_PORT + 171)) port_b=$((BASE_PORT + 172))
    local prefix="bench$$" subscribers publishers rate log pid_a pid_b redis_pid load_a
    command -v redis-server >/dev/null || { echo "bench.sh: --cluster needs redis-server" >&2; exit 1; }
    redis-server --port "$redis_port" --bind 127.0.0.1 --save '' --appendonly no \
        >"$OUT/logs/redis.log" 2>&1 &
    redis_pid=$!
    wait_listening "$redis_port" "$redis_pid" || { echo "bench.sh: redis-server did not start" >&2; exit 1; }
    for subscribers in ${CLUSTER_SUBSCRIBERS:-1000 5000}; do
        for publishers in ${CLUSTER_PUBLISHERS:-10}; do
            for rate in ${CLUSTER_RATES:-10 100}; do
                POINT=$((POINT + 1))
                log=$OUT/logs/$(printf '%03d' "$POINT")-cluster-n$subscribers-p$publishers-r$rate
                start_serve "$port_a" "$log.a.log" --shards 1 --redis "redis://127.0.0.1:$redis_port" --redis-prefix "$prefix"
                pid_a=$SERVER_PID
                start_serve "$port_b" "$log.b.log" --shards 1 --redis "redis://127.0.0.1:$redis_port" --redis-prefix "$prefix"
                pid_b=$SERVER_PID
                # Publishers on A start after B's subscribers are connected, and run longer.
                local ramp_s
                ramp_s=$(awk -v n="$subscribers" -v r="$CONNECT_RATE" 'BEGIN { printf "%d", n / r + 2 }')
                (sleep "$ramp_s"; taskset -c "$LOAD_CPUS" "$BIN" load "ws://127.0.0.1:$port_a/ws?room=bench.x" \
                    -n "$publishers" --publishers "$publishers" --publish-rate "$rate" \
                    --publish-topic bench.x --warmup 0 \
                    --duration "$(awk -v d="$DURATION" -v w="$WARMUP" 'BEGIN { print d + w + 2 }')" \
                    --quiet >"$log.publishers.txt" 2>&1) &
                load_a=$!
                taskset -c "$LOAD_CPUS" "$BIN" load "ws://127.0.0.1:$port_b/ws?room=bench.x" \
                    -n "$subscribers" --publish-latency --connect-rate "$CONNECT_RATE" \
                    --source-ips "$SOURCE_IPS" --warmup "$(awk -v w="$WARMUP" -v r="$ramp_s" 'BEGIN { print w + 1 }')" \
                    --duration "$DURATION" --server-pid "$pid_b" --csv "$OUT/cluster.csv" --quiet \
                    --mode cluster --shards 1 --linger 0 --providers 0 \
                    --offered-rate "$((publishers * rate))" \
                    --cpu-split "servers:$SERVER_CPUS load:$LOAD_CPUS redis:any" >"$log.txt" 2>&1 || true
                wait "$load_a" 2>/dev/null || true
                SERVER_PID=$pid_a; stop_server
                SERVER_PID=$pid_b; stop_server
                printf '[%3d] cluster subscribers=%-5s publishers=%-3s rate=%-5s %s %s\n' "$POINT" \
                    "$subscribers" "$publishers" "$rate" \
                    "$(grep -m1 '^delivered' "$log.txt" | awk '{print $2, $3}')" \
                    "$(grep -m1 '^publishing' "$log.txt" | sed 's/.*echo //')" >&2
            done
        done
    done
    kill "$redis_pid" 2>/dev/null || true
    wait "$redis_pid" 2>/dev/null || true
}
