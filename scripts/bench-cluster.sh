#!/usr/bin/env bash
# The cluster scenario of scripts/bench.sh (sourced by bench-scenarios.sh, not run alone):
# two tickcast nodes, A and B, sharing rooms through Redis on this machine.
#
#   1. Cross-node latency: P publishers on A, N subscribers of one room on B, through one
#      redis-server; publisher's sent_us to receipt on B (Redis hop included). cluster.csv.
#   2. Resume on the other node: `tickcast probe-resume` publishes a gap on A and times a
#      client reconnecting to B with since= until the last replayed message, from Redis (B
#      never followed the room: a client whose node died) and from B's ring. resume.csv.
#   3. Bus throughput: 100 rooms, one publisher each on A and one subscriber each on B, at
#      rising publish rates, through one redis-server and through a 3-master Redis Cluster
#      (no replicas). Each row: delivered/offered and latency on B, and what each publish cost
#      Redis (CPU, commands, bytes in and out, from INFO) and node A. bus.csv; the load's own
#      rows go to cluster.csv as modes bus-single / bus-cluster.
#
# Every Redis here is started by the scenario on 127.0.0.1 and stopped at its end.

REDIS_PIDS=()
REDIS_PORTS=()
REDIS_URL=""

# redis_start single|cluster: one redis-server, or three cluster-enabled ones joined as a
# 3-master cluster. Sets REDIS_URL, REDIS_PORTS, REDIS_PIDS.
redis_start() {
    local kind=$1 base=$((BASE_PORT + 180)) port n=1 dir=$OUT/logs/redis-$1
    command -v redis-server >/dev/null || { echo "bench.sh: --cluster needs redis-server" >&2; exit 1; }
    [[ $kind == cluster ]] && n=3
    rm -rf "$dir"; mkdir -p "$dir"
    REDIS_PIDS=(); REDIS_PORTS=()
    for ((i = 0; i < n; i++)); do
        port=$((base + i))
        local extra=()
        [[ $kind == cluster ]] && extra=(--cluster-enabled yes --cluster-config-file "nodes-$port.conf" --cluster-node-timeout 5000)
        (cd "$dir" && exec redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no \
            "${extra[@]}" >"redis-$port.log" 2>&1) &
        REDIS_PIDS+=($!); REDIS_PORTS+=("$port")
        wait_listening "$port" "${REDIS_PIDS[-1]}" || { echo "bench.sh: redis-server on $port did not start" >&2; exit 1; }
    done
    if [[ $kind == cluster ]]; then
        local addrs=()
        for port in "${REDIS_PORTS[@]}"; do addrs+=("127.0.0.1:$port"); done
        redis-cli --cluster create "${addrs[@]}" --cluster-replicas 0 --cluster-yes >"$dir/create.log" 2>&1 \
            || { echo "bench.sh: redis-cli --cluster create failed (see $dir/create.log)" >&2; exit 1; }
        for port in "${REDIS_PORTS[@]}"; do
            for _ in $(seq 1 100); do
                redis-cli -p "$port" cluster info | grep -q 'cluster_state:ok' && break
                sleep 0.1
            done
        done
    fi
    REDIS_URL="redis://127.0.0.1:${REDIS_PORTS[0]}"
}

redis_stop() {
    local pid
    for pid in "${REDIS_PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${REDIS_PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
    REDIS_PIDS=(); REDIS_PORTS=()
}

# redis_totals: "cpu_seconds commands in_bytes out_bytes" summed over every Redis.
redis_totals() {
    local port
    for port in "${REDIS_PORTS[@]}"; do
        redis-cli -p "$port" info all | tr -d '\r'
    done | awk -F: '
        $1 == "used_cpu_sys" || $1 == "used_cpu_user" { cpu += $2 }
        $1 == "total_commands_processed" { cmds += $2 }
        $1 == "total_net_input_bytes" { inb += $2 }
        $1 == "total_net_output_bytes" { outb += $2 }
        $1 == "used_memory" { mem += $2 }
        $1 ~ /^db[0-9]+$/ { split($2, kv, /[=,]/); keys += kv[2] }
        END { printf "%.6f %d %d %d %d %d\n", cpu, cmds, inb, outb, mem, keys }'
}

# thread_ticks PID: one line per thread: "tid name cpu_ticks".
thread_ticks() {
    local t
    for t in /proc/"$1"/task/*; do
        printf '%s %s %s\n' "${t##*/}" "$(tr ' ' _ <"$t/comm")" \
            "$(awk '{ sub(/.*\) /, ""); print $12 + $13 }' "$t/stat")"
    done 2>/dev/null
}

# busiest LABEL BEFORE AFTER SECONDS: the two busiest threads between two thread_ticks
# samples, as "LABEL:name NN%" joined by spaces.
busiest() {
    awk -v label="$1" -v el="$4" -v hz="$(getconf CLK_TCK)" '
        NR == FNR { before[$1] = $3; next }
        { pct[$2 "#" $1] = 100 * ($3 - before[$1]) / hz / el }
        END {
            for (k = 0; k < 2; k++) {
                best = ""; for (t in pct) if (best == "" || pct[t] > pct[best]) best = t
                if (best == "") break
                name = best; sub(/#.*/, "", name)
                printf "%s%s:%s %.0f%%", (k ? " " : ""), label, name, pct[best]; delete pct[best]
            }
        }' "$2" "$3"
}

# proc_cpu_s PID: CPU seconds (user + system) the process has used.
proc_cpu_s() {
    awk -v hz="$(getconf CLK_TCK)" '{ sub(/.*\) /, ""); print ($12 + $13) / hz }' "/proc/$1/stat"
}

# metric PORT NAME: a counter of a node's /metrics (0 when absent).
metric() {
    curl -s "http://127.0.0.1:$1/metrics" | awk -v n="$2" '$1 == n { v = $2 } END { print v + 0 }'
}

# nodes_start LOG ARGS...: nodes A and B on REDIS_URL; sets PID_A, PID_B, PORT_A, PORT_B.
nodes_start() {
    local log=$1 prefix="bench$$-$POINT"
    shift
    PORT_A=$((BASE_PORT + 171)); PORT_B=$((BASE_PORT + 172))
    start_serve "$PORT_A" "$log.a.log" --shards 1 --redis "$REDIS_URL" --redis-prefix "$prefix" "$@"
    PID_A=$SERVER_PID
    start_serve "$PORT_B" "$log.b.log" --shards 1 --redis "$REDIS_URL" --redis-prefix "$prefix" "$@"
    PID_B=$SERVER_PID
    for _ in $(seq 1 100); do
        [[ $(curl -s "http://127.0.0.1:$PORT_A/healthz") == ok && $(curl -s "http://127.0.0.1:$PORT_B/healthz") == ok ]] && return 0
        sleep 0.1
    done
    echo "bench.sh: the nodes did not report Redis healthy (see $log.*.log)" >&2
}

nodes_stop() {
    SERVER_PID=$PID_A; stop_server
    SERVER_PID=$PID_B; stop_server
}

# 1. Cross-node latency through one redis-server.
cluster_latency() {
    local subscribers publishers rate log load_a ramp_s
    for subscribers in ${CLUSTER_SUBSCRIBERS:-1000 5000}; do
        for publishers in ${CLUSTER_PUBLISHERS:-10}; do
            for rate in ${CLUSTER_RATES:-10 100}; do
                POINT=$((POINT + 1))
                log=$OUT/logs/$(printf '%03d' "$POINT")-cluster-n$subscribers-p$publishers-r$rate
                nodes_start "$log"
                # Publishers on A start after B's subscribers are connected, and run longer.
                ramp_s=$(awk -v n="$subscribers" -v r="$CONNECT_RATE" 'BEGIN { printf "%d", n / r + 2 }')
                (sleep "$ramp_s"; taskset -c "$LOAD_CPUS" "$BIN" load "ws://127.0.0.1:$PORT_A/ws?room=bench.x" \
                    -n "$publishers" --publishers "$publishers" --publish-rate "$rate" \
                    --publish-topic bench.x --warmup 0 \
                    --duration "$(awk -v d="$DURATION" -v w="$WARMUP" 'BEGIN { print d + w + 2 }')" \
                    --quiet >"$log.publishers.txt" 2>&1) &
                load_a=$!
                taskset -c "$LOAD_CPUS" "$BIN" load "ws://127.0.0.1:$PORT_B/ws?room=bench.x" \
                    -n "$subscribers" --publish-latency --connect-rate "$CONNECT_RATE" \
                    --source-ips "$SOURCE_IPS" --warmup "$(awk -v w="$WARMUP" 'BEGIN { print w + 1 }')" \
                    --duration "$DURATION" --server-pid "$PID_B" --csv "$OUT/cluster.csv" --quiet \
                    --mode cluster --shards 1 --linger 0 --providers 0 \
                    --offered-rate "$((publishers * rate))" \
                    --cpu-split "servers:$SERVER_CPUS load:$LOAD_CPUS redis:any" >"$log.txt" 2>&1 || true
                wait "$load_a" 2>/dev/null || true
                nodes_stop
                printf '[%3d] cluster subscribers=%-5s publishers=%-3s rate=%-5s %s %s\n' "$POINT" \
                    "$subscribers" "$publishers" "$rate" \
                    "$(grep -m1 '^delivered' "$log.txt" | awk '{print $2, $3}')" \
                    "$(grep -m1 '^publishing' "$log.txt" | sed 's/.*echo //')" >&2
            done
        done
    done
}

# 2. A resume on the other node, from Redis and from the ring.
cluster_resume() {
    local backend=$1 gap log csv=$OUT/resume.csv
    [[ -s $csv ]] || echo "backend,source,gap,rounds,p50_ms,p99_ms,max_ms,ok" >"$csv"
    for gap in ${RESUME_GAPS:-100 1000}; do
        for followed in "" --followed; do
            POINT=$((POINT + 1))
            log=$OUT/logs/$(printf '%03d' "$POINT")-resume-$backend-g$gap${followed:+-ring}
            nodes_start "$log"
            taskset -c "$LOAD_CPUS" "$BIN" probe-resume --publish-on "127.0.0.1:$PORT_A" \
                --resume-on "127.0.0.1:$PORT_B" --gap "$gap" --rounds "${RESUME_ROUNDS:-30}" \
                --room-prefix "probe-$POINT" $followed >"$log.json" 2>"$log.txt" || true
            nodes_stop
            jq -r --arg b "$backend" '[$b, .source, .gap, .rounds, .p50_ms, .p99_ms, .max_ms, .ok] | @csv' \
                "$log.json" | tr -d '"' >>"$csv" || echo "bench.sh: no probe result (see $log.txt)" >&2
            printf '[%3d] resume  %-7s gap=%-5s %s\n' "$POINT" "$backend" "$gap" \
                "$(jq -c '{source, p50_ms, p99_ms, ok}' "$log.json" 2>/dev/null)" >&2
        done
    done
}

# 3. Publishes/s through the bus: 100 rooms, a publisher each on A, a subscriber each on B.
cluster_bus() {
    local backend=$1 rooms=${BUS_ROOMS:-100} rate log load_a csv=$OUT/bus.csv
    local before after a_before a_after b_before b_after pub_before pub_after t0 t1
    [[ -s $csv ]] || echo "backend,masters,rooms,publishers,rate_per_publisher,offered_per_s,delivered_per_s,delivery_ratio,pub_lat_p50_us,pub_lat_p99_us,published_per_s,redis_cpu_pct,redis_cpu_us_per_publish,redis_cmds_per_publish,redis_in_bytes_per_publish,redis_out_bytes_per_publish,redis_used_mb,redis_keys,node_a_cpu_pct,node_b_cpu_pct,busiest_threads" >"$csv"
    for rate in ${BUS_RATES:-100 200 400 600 800}; do
        POINT=$((POINT + 1))
        log=$OUT/logs/$(printf '%03d' "$POINT")-bus-$backend-r$rate
        nodes_start "$log"
        (taskset -c "$LOAD_CPUS" "$BIN" load "ws://127.0.0.1:$PORT_A/ws?room=bus-{r}" --rooms "$rooms" \
            -n "$rooms" --publishers "$rooms" --publish-rate "$rate" --publish-topic "bus-{r}" \
            --warmup 0 --duration "$(awk -v d="$DURATION" -v w="$WARMUP" 'BEGIN { print d + w + 3 }')" \
            --quiet >"$log.publishers.txt" 2>&1) &
        load_a=$!
        sleep 1
        # The window: from the subscribers' warmup end to their end (sampled around the run).
        t0=$(date +%s.%N); before=$(redis_totals); a_before=$(proc_cpu_s "$PID_A")
        b_before=$(proc_cpu_s "$PID_B")
        thread_ticks "$PID_A" >"$log.a.threads0"; thread_ticks "$PID_B" >"$log.b.threads0"
        pub_before=$(metric "$PORT_A" tickcast_bus_published_total)
        taskset -c "$LOAD_CPUS" "$BIN" load "ws://127.0.0.1:$PORT_B/ws?room=bus-{r}" --rooms "$rooms" \
            -n "$rooms" --publish-latency --warmup "$WARMUP" --duration "$DURATION" \
            --server-pid "$PID_B" --csv "$OUT/cluster.csv" --json --quiet --mode "bus-$backend" \
            --shards 1 --linger 0 --providers 0 --offered-rate "$rate" \
            --cpu-split "servers:$SERVER_CPUS load:$LOAD_CPUS redis:any" >"$log.json" 2>"$log.txt" || true
        t1=$(date +%s.%N); after=$(redis_totals); a_after=$(proc_cpu_s "$PID_A")
        b_after=$(proc_cpu_s "$PID_B")
        thread_ticks "$PID_A" >"$log.a.threads1"; thread_ticks "$PID_B" >"$log.b.threads1"
        local el threads
        el=$(awk -v a="$t0" -v b="$t1" 'BEGIN { print b - a }')
        threads="$(busiest A "$log.a.threads0" "$log.a.threads1" "$el") $(busiest B "$log.b.threads0" "$log.b.threads1" "$el")"
        pub_after=$(metric "$PORT_A" tickcast_bus_published_total)
        wait "$load_a" 2>/dev/null || true
        nodes_stop
        jq -r 'del(.latency_histogram) | [.delivered_per_s, .delivery_ratio, .pub_lat_p50_us, .pub_lat_p99_us] | @tsv' \
            "$log.json" 2>/dev/null | {
            read -r delivered ratio p50 p99 || { echo "bench.sh: no load result (see $log.txt)" >&2; return; }
            awk -v be="$backend" -v m="${#REDIS_PORTS[@]}" -v rooms="$rooms" -v rate="$rate" \
                -v d="$delivered" -v ratio="$ratio" -v p50="$p50" -v p99="$p99" \
                -v t0="$t0" -v t1="$t1" -v b="$before" -v a="$after" -v ab="$a_before" -v aa="$a_after" \
                -v bb="$b_before" -v ba="$b_after" -v th="$threads" \
                -v pb="$pub_before" -v pa="$pub_after" 'BEGIN {
                    split(b, x, " "); split(a, y, " "); el = t1 - t0; n = pa - pb; if (n < 1) n = 1
                    printf "%s,%d,%d,%d,%d,%d,%.0f,%.4f,%s,%s,%.0f,%.1f,%.2f,%.2f,%.0f,%.0f,%.1f,%d,%.1f,%.1f,%s\n",
                        be, m, rooms, rooms, rate, rooms * rate, d, ratio, p50, p99, n / el,
                        100 * (y[1] - x[1]) / el, 1e6 * (y[1] - x[1]) / n, (y[2] - x[2]) / n,
                        (y[3] - x[3]) / n, (y[4] - x[4]) / n, y[5] / 1048576, y[6],
                        100 * (aa - ab) / el, 100 * (ba - bb) / el, th }' >>"$csv"
        }
        printf '[%3d] bus     %-7s rate=%-4s x %s rooms: %s\n' "$POINT" "$backend" "$rate" "$rooms" \
            "$(tail -n1 "$csv" | cut -d, -f7-12,22)" >&2
    done
}

run_cluster() {
    trap 'SERVER_PID=${PID_A:-}; stop_server; SERVER_PID=${PID_B:-}; stop_server; redis_stop' EXIT
    command -v jq >/dev/null || { echo "bench.sh: --cluster needs jq" >&2; exit 1; }
    command -v curl >/dev/null || { echo "bench.sh: --cluster needs curl" >&2; exit 1; }
    # CLUSTER_PARTS picks parts: latency, resume, bus (default: all three).
    local parts=" ${CLUSTER_PARTS:-latency resume bus} " backend
    for backend in single cluster; do
        [[ $backend == cluster && $parts != *" resume "* && $parts != *" bus "* ]] && continue
        redis_start "$backend"
        [[ $backend == single && $parts == *" latency "* ]] && cluster_latency
        [[ $parts == *" resume "* ]] && cluster_resume "$backend"
        [[ $parts == *" bus "* ]] && cluster_bus "$backend"
        redis_stop
    done
}
