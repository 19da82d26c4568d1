#!/usr/bin/env bash
# Messaging scenarios for scripts/bench.sh (sourced by it, not run alone):
#
#   chat     one room, N members on one node, P of them publishing R msgs/s each; every
#            message reaches every member. Rows in <out>/chat.csv.
#   deflate  permessage-deflate: the single hub's ladder with plain clients (`tickcast`),
#            clients that negotiate deflate (`deflate`) and clients that also take runs as
#            one message (`deflate-batch`, `?batch=1`), for the natural tick and
#            a 1 KB payload: bytes on the wire and server CPU per delivery, sustainable
#            rate. <out>/payload-<bytes>/raw.csv (+ report) and <out>/deflate.md.
#   tls      TLS: the single hub's ladder with plain clients (`tickcast`) and, on the same
#            binary serving its port with --tls-cert/--tls-key, wss:// clients (`tls`), at
#            each client count, one after the other in one run: server CPU per delivery,
#            sustainable rate, handshake p99, RSS per connection. A throwaway CA and a
#            certificate for 127.0.0.1 are made with openssl. <out>/raw.csv (+ report) and
#            <out>/tls.md.
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

# The Bun release whose WebSocket server (uWebSockets) `--rooms --uws` compares against.
BUN_VERSION=${BENCH_BUN_VERSION:-1.4.5}

# ensure_bun: sets BUN to a `bun` binary: the one on PATH, else Bun $BUN_VERSION installed
# from the npm registry into target/bun (once). Fails loudly rather than skipping.
ensure_bun() {
    if command -v bun >/dev/null 2>&1; then BUN=$(command -v bun); return; fi
    BUN=$PWD/target/bun/node_modules/.bin/bun
    [[ -x $BUN ]] && return
    command -v npm >/dev/null 2>&1 || { echo "bench.sh: --uws needs Bun, and npm is missing to install it" >&2; exit 1; }
    echo "bench.sh: installing Bun $BUN_VERSION from the npm registry into target/bun" >&2
    npm install --prefix "$PWD/target/bun" --no-audit --no-fund "bun@$BUN_VERSION" >&2
    [[ -x $BUN ]] || { echo "bench.sh: Bun did not install" >&2; exit 1; }
}

# start_uws PORT LOG: starts the uWebSockets rooms server (benches/uws/rooms.js) on the
# server's CPUs, sets SERVER_PID.
start_uws() {
    local port=$1 log=$2
    taskset -c "$SERVER_CPUS" "$BUN" benches/uws/rooms.js "$port" 2>"$log" &
    SERVER_PID=$!
    wait_listening "$port" "$SERVER_PID" || { echo "bench.sh: uws on $port did not start (see $log)" >&2; exit 1; }
}

# rooms_point SHARDS ROOMS MEMBERS TOTAL [uws]: ROOMS rooms of MEMBERS members on one node,
# one publisher per room, TOTAL publishes/s in all. The load's row goes to rooms.csv (mode
# rooms-R-M, or uws-rooms-R-M against uWebSockets); tickcast's threads' CPU over the window
# to rooms-threads.csv. Sets VERDICT.
rooms_point() {
    local shards=$1 rooms=$2 members=$3 total=$4 server=${5:-tickcast}
    local port=$((BASE_PORT + 160 + POINT % 20)) log rate el t0 t1 mode
    local clients=$((rooms * members))
    POINT=$((POINT + 1))
    mode=rooms-$rooms-$members
    [[ $server == uws ]] && mode=uws-$mode
    log=$OUT/logs/$(printf '%03d' "$POINT")-$mode-s$shards-t$total
    rate=$(awk -v t="$total" -v r="$rooms" 'BEGIN { printf "%.4f", t / r }')
    if [[ $server == uws ]]; then
        start_uws "$port" "$log.server.log"
    else
        start_serve "$port" "$log.server.log" --shards "$shards"
    fi
    # The threads are sampled around the whole run, ramp included: a short ramp (at most
    # 10,000 clients at the connect rate) against warmup + window.
    thread_ticks "$SERVER_PID" >"$log.threads0"; t0=$(date +%s.%N)
    taskset -c "$LOAD_CPUS" "$BIN" load "ws://127.0.0.1:$port/ws?room=r-{r}" --rooms "$rooms" \
        -n "$clients" --publishers-per-room 1 --publish-rate "$rate" --publish-topic "r-{r}" \
        --connect-rate "$CONNECT_RATE" --source-ips "$SOURCE_IPS" \
        --warmup "$WARMUP" --duration "$DURATION" --server-pid "$SERVER_PID" \
        --csv "$OUT/rooms.csv" --quiet --mode "$mode" --shards "$shards" \
        --linger 0 --providers 0 --offered-rate "$rate" \
        --cpu-split "server:$SERVER_CPUS load:$LOAD_CPUS" >"$log.txt" 2>&1 || true
    thread_ticks "$SERVER_PID" >"$log.threads1"; t1=$(date +%s.%N)
    stop_server
    el=$(awk -v a="$t0" -v b="$t1" 'BEGIN { print b - a }')
    local summary
    if [[ $server == uws ]]; then
        # No threads of ours to sample: the process's CPU over the window, from the row.
        summary="server cpu $(awk -F, 'NR == 1 { for (i = 1; i <= NF; i++) if ($i == "server_cpu_pct") c = i; next }
            { v = $c } END { printf "%.1f %%", v }' "$OUT/rooms.csv")"
    else
        local threads=$OUT/rooms-threads.csv
        [[ -s $threads ]] || echo "point,shards,rooms,members,publishes_per_s,mixer_cpu_pct,shards_max_cpu_pct,acceptor_cpu_pct,busiest" >"$threads"
        awk -v p="$POINT" -v s="$shards" -v r="$rooms" -v m="$members" -v t="$total" -v el="$el" \
            -v hz="$(getconf CLK_TCK)" -v busy="$(busiest S "$log.threads0" "$log.threads1" "$el")" '
            NR == FNR { before[$1] = $3; next }
            { pct = 100 * ($3 - before[$1]) / hz / el }
            $2 ~ /mixer/ { mixer += pct }
            $2 ~ /shard/ { if (pct > shard) shard = pct }
            $2 ~ /acceptor/ { acc += pct }
            END { printf "%d,%d,%d,%d,%d,%.1f,%.1f,%.1f,%s\n", p, s, r, m, t, mixer, shard, acc, busy }' \
            "$log.threads0" "$log.threads1" >>"$threads"
        summary=$(tail -n1 "$threads" | cut -d, -f6-)
    fi
    read -r VERDICT _ _ < <("$BIN" report --verdict "$OUT/rooms.csv" || echo failed clear 1)
    printf '[%3d] %-8s shards=%s rooms=%-5s members=%-2s publishes/s=%-6s %-10s %s | %s\n' \
        "$POINT" "$server" "$shards" "$rooms" "$members" "$total" "$VERDICT" \
        "$(grep -m1 '^latency' "$log.txt" | awk '{print "p99", $9, $10}' | tr -d ,)" \
        "$summary" >&2
}

# Many rooms: for each ROOMS:MEMBERS case and shard count, total publishes/s rise until a
# point is not sustainable (the same bar as the sweep). With --uws, each case also runs
# against uWebSockets (one thread: shards=1 in its rows), right after tickcast's.
run_rooms() {
    local case rooms members shards total
    [[ ${UWS:-0} == 1 ]] && ensure_bun
    for case in ${ROOMS_CASES:-10:10 1000:2 1000:10 5000:2}; do
        rooms=${case%%:*}; members=${case##*:}
        for shards in ${SHARDS//,/ }; do
            for total in ${ROOMS_RATES:-1000 2000 5000 10000 20000 50000}; do
                rooms_point "$shards" "$rooms" "$members" "$total"
                [[ $VERDICT == ok ]] || break
            done
        done
        if [[ ${UWS:-0} == 1 ]]; then
            for total in ${ROOMS_RATES:-1000 2000 5000 10000 20000 50000}; do
                rooms_point 1 "$rooms" "$members" "$total" uws
                [[ $VERDICT == ok ]] || break
            done
        fi
    done
}

# run_deflate: for each payload, a ladder of plain clients and one of deflate clients at
# each client count, each in its own folder (the report keys points by mode, shards and
# clients, not payload); then the comparison table.
run_deflate() {
    local base=$OUT payload clients
    for payload in ${DEFLATE_PAYLOADS:-0 1024}; do
        PAYLOAD=$payload
        # The natural tick (~140 bytes) is under the default --deflate-min-bytes: compress it
        # anyway, to show what that would save and cost.
        if ((payload == 0)); then SERVE_EXTRA=(--deflate-min-bytes 0); else SERVE_EXTRA=(); fi
        OUT=$base/payload-$payload
        CSV=$OUT/raw.csv
        mkdir -p "$OUT/logs"
        for clients in $CLIENT_LIST; do
            ladder tickcast 1 "$clients"
            ladder deflate 1 "$clients"
            ladder deflate-batch 1 "$clients"
        done
        "$BIN" report "$CSV" --out "$OUT" >/dev/null
    done
    OUT=$base
    SERVE_EXTRA=()
    deflate_table >"$OUT/deflate.md"
    cat "$OUT/deflate.md" >&2
}

# deflate_table: per payload, client count and offered rate measured both ways, the bytes on
# the wire and the server CPU per delivery, plain against deflate, and each ladder's
# highest sustainable rate (`tickcast report --best-rate`).
deflate_table() {
    local payload clients dir best_plain best_deflate best_batch
    echo "# permessage-deflate against plain clients"
    echo
    echo "Command: \`$COMMAND_LINE\`, $(date -u '+%Y-%m-%d %H:%M UTC'), commit \`$COMMIT\`$DIRTY."
    echo "One shard; the same server for both (\`--deflate on\`, the default): \`tickcast\` rows are"
    echo "clients that do not offer the extension, \`deflate\` rows clients that negotiate it (as"
    echo "browsers do) and inflate every message, \`deflate-batch\` the same with \`?batch=1\` (a run of"
    echo "messages as one newline-delimited message, compressed once per run and shard). Bytes per"
    echo "delivery are what the clients read (frames and all) divided by the messages they got; CPU"
    echo "is the server's. \`(not sustained)\`, \`(ns)\`: the point missed the bar (see raw.csv's"
    echo "\`client_bound\`: the one-core load generator inflating every message is usually first)."
    echo
    for payload in ${DEFLATE_PAYLOADS:-0 1024}; do
        dir=$OUT/payload-$payload
        [[ -s $dir/raw.csv ]] || continue
        echo "## payload $payload bytes ($( ((payload == 0)) && echo 'the natural tick, compressed with --deflate-min-bytes 0' || echo 'a tick padded with order-book text'))"
        echo
        for clients in $CLIENT_LIST; do
            best_plain=$("$BIN" report "$dir/raw.csv" --best-rate "tickcast,1,$clients" || echo 0)
            best_deflate=$("$BIN" report "$dir/raw.csv" --best-rate "deflate,1,$clients" || echo 0)
            best_batch=$("$BIN" report "$dir/raw.csv" --best-rate "deflate-batch,1,$clients" || echo 0)
            echo "$clients clients: highest sustainable rate $best_plain msg/s plain, $best_deflate msg/s deflate, $best_batch msg/s deflate with ?batch=1."
            echo
        done
        echo "| clients | msg/s | bytes/delivery plain | deflate | ratio | batch | ratio | CPU ns/delivery plain | deflate | ratio | batch | ratio | RSS KiB/conn plain | deflate |"
        echo "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
        awk -F, '
            NR == 1 { for (i = 1; i <= NF; i++) col[$i] = i; next }
            {
                key = $col["clients"] "," $col["offered_rate"]
                m = $col["mode"]
                if ($col["messages"] == 0) next
                # The last run of a point counts (repeats near the bar append rows).
                bytes[key, m] = $col["bytes"] / $col["messages"]
                cpu[key, m] = $col["server_cpu_ns_per_msg"]
                rss[key, m] = $col["rss_kib_per_conn"]
                ok[key, m] = $col["sustainable"]
                if (!(key in seen)) { seen[key] = 1; order[++n] = key }
            }
            END {
                for (i = 1; i <= n; i++) {
                    k = order[i]
                    if (!((k, "tickcast") in bytes) || !((k, "deflate") in bytes)) continue
                    split(k, parts, ",")
                    mark = (ok[k, "tickcast"] == "true" && ok[k, "deflate"] == "true") ? "" : " (not sustained)"
                    hb = ((k, "deflate-batch") in bytes)
                    bb = hb ? sprintf("%.0f", bytes[k, "deflate-batch"]) : "-"
                    br = hb ? sprintf("%.2fx fewer%s", bytes[k, "tickcast"] / bytes[k, "deflate-batch"], ok[k, "deflate-batch"] == "true" ? "" : " (ns)") : "-"
                    cb = hb ? sprintf("%.0f", cpu[k, "deflate-batch"]) : "-"
                    cr = (hb && cpu[k, "tickcast"] > 0) ? sprintf("%.2fx", cpu[k, "deflate-batch"] / cpu[k, "tickcast"]) : "-"
                    printf "| %s | %s%s | %.0f | %.0f | %.2fx fewer | %s | %s | %.0f | %.0f | %.2fx | %s | %s | %s | %s |\n",
                        parts[1], parts[2], mark, bytes[k, "tickcast"], bytes[k, "deflate"],
                        bytes[k, "tickcast"] / bytes[k, "deflate"], bb, br,
                        cpu[k, "tickcast"], cpu[k, "deflate"],
                        (cpu[k, "tickcast"] > 0 ? cpu[k, "deflate"] / cpu[k, "tickcast"] : 0), cb, cr,
                        rss[k, "tickcast"], rss[k, "deflate"]
                }
            }' "$dir/raw.csv" | sort -t'|' -k2,2n -k3,3n
        echo
    done
}

# make_tls_certs DIR: a throwaway CA and a certificate for 127.0.0.1 it signed (ECDSA P-256,
# valid 2 days), with openssl; sets TLS_CA (the CA), TLS_CERT (the server's chain: its
# certificate, then the CA's) and TLS_KEY.
make_tls_certs() {
    local dir=$1
    command -v openssl >/dev/null 2>&1 || { echo "bench.sh: --tls needs openssl to make its certificates" >&2; exit 1; }
    mkdir -p "$dir"
    printf 'basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\nsubjectAltName=IP:127.0.0.1\n' >"$dir/server.ext"
    if ! {
        openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
            -subj "/CN=tickcast bench CA" -keyout "$dir/ca.key" -out "$dir/ca.pem" \
            -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" &&
        openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
            -subj "/CN=127.0.0.1" -keyout "$dir/server.key" -out "$dir/server.csr" &&
        openssl x509 -req -in "$dir/server.csr" -CA "$dir/ca.pem" -CAkey "$dir/ca.key" \
            -CAcreateserial -days 2 -extfile "$dir/server.ext" -out "$dir/server.pem"
    } >"$dir/openssl.log" 2>&1; then
        echo "bench.sh: openssl could not make the certificates (see $dir/openssl.log)" >&2
        exit 1
    fi
    cat "$dir/server.pem" "$dir/ca.pem" >"$dir/chain.pem"
    TLS_CA=$dir/ca.pem
    TLS_CERT=$dir/chain.pem
    TLS_KEY=$dir/server.key
}

# run_tls: at each client count, the single hub's ladder with plain clients, then the same
# ladder over TLS; then the comparison (tls.md). The throwaway certificates live in the
# output's tmp/ while the ladders run, and are removed after (nothing there is a result).
run_tls() {
    local clients
    make_tls_certs "$OUT/tmp/tls"
    for clients in $CLIENT_LIST; do
        ladder tickcast 1 "$clients"
        ladder tls 1 "$clients"
    done
    rm -rf "$OUT/tmp/tls"
    rmdir "$OUT/tmp" 2>/dev/null || true
    "$BIN" report "$CSV" --out "$OUT" >/dev/null
    tls_table >"$OUT/tls.md"
    cat "$OUT/tls.md" >&2
}

# tls_table: tls.md, the comparison `tickcast report --compare tickcast,tls` computes, with
# how it was measured.
tls_table() {
    echo "# TLS (wss://) against plain clients (ws://)"
    echo
    echo "Command: \`$COMMAND_LINE\`, $(date -u '+%Y-%m-%d %H:%M UTC'), commit \`$COMMIT\`$DIRTY."
    echo "One shard, the same binary for both: \`tickcast\` rows are the server on plain TCP and"
    echo "\`ws://\` clients, \`tls\` rows the server with \`--tls-cert/--tls-key\` (rustls, ring) and"
    echo "\`wss://\` clients (\`tickcast load --tls-ca\`: rustls, TLS 1.3, session resumption on),"
    echo "trusting a throwaway CA; the server's certificate is ECDSA P-256 for 127.0.0.1. Each"
    echo "client count runs the plain ladder, then the TLS one, in one run: compare the two as"
    echo "ratios. CPU is the server's, per delivered message; handshake p99 is TCP connect -> 101"
    echo "(TLS included) for every connection of the ramp, made while the server broadcast to the"
    echo "ones already connected; RSS per connection is the server's, once all were connected."
    echo "\`bytes\` in raw.csv are what the clients read from their sockets (ciphertext for \`tls\`)."
    echo "\`(cb)\`: the load generator was at >= 90 % CPU (it decrypts every message too, and is"
    echo "often the first to give out); \`(ns)\`: the point missed the bar; \`(≥)\`: the ladder never"
    echo "failed, so the ceiling was not reached."
    echo
    "$BIN" report "$CSV" --compare tickcast,tls
}

# shellcheck source=scripts/bench-cluster.sh
source "$(dirname "${BASH_SOURCE[0]}")/bench-cluster.sh"
