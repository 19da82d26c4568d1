# Sourced by bench.sh and k6.sh: stop_server stops the server whose pid is in SERVER_PID
# (nothing when it is empty): SIGTERM, then SIGKILL after 10 s; SERVER_PID is then empty.
stop_server() {
    [[ -n ${SERVER_PID:-} ]] || return 0
    kill -TERM "$SERVER_PID" 2>/dev/null || true
    for _ in $(seq 1 100); do
        kill -0 "$SERVER_PID" 2>/dev/null || break
        sleep 0.1
    done
    kill -KILL "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
    SERVER_PID=""
}
