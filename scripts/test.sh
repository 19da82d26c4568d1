#!/usr/bin/env bash
# Sets up everything the test suite needs on a fresh Debian/Ubuntu machine, then runs it:
# formatting and lint checks, unit and integration tests (real sockets, real clients,
# real redis-server, real headless Chromium), and the benchmark smoke run.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v redis-server >/dev/null 2>&1 || need_apt+=(redis-server)
# The dashboard test drives headless Chromium (tests/browser/mod.rs looks for the same names,
# or $TICKCAST_CHROMIUM).
want_chromium=0
if [ -z "${TICKCAST_CHROMIUM:-}" ] && ! command -v chromium >/dev/null 2>&1 \
    && ! command -v chromium-browser >/dev/null 2>&1 && ! command -v google-chrome >/dev/null 2>&1 \
    && ! command -v google-chrome-stable >/dev/null 2>&1; then
    want_chromium=1
fi
command -v perf >/dev/null 2>&1 || true  # only scripts/flamegraph.sh needs perf
if ((${#need_apt[@]})) || ((want_chromium)); then
    SUDO=""
    [ "$(id -u)" -ne 0 ] && SUDO="sudo"
    $SUDO apt-get update -qq
    if ((want_chromium)); then
        # Debian calls the package `chromium`; Ubuntu `chromium-browser`.
        if [ -n "$(apt-cache policy chromium 2>/dev/null | grep -v '(none)' | grep 'Candidate:')" ]; then
            need_apt+=(chromium)
        else
            need_apt+=(chromium-browser)
        fi
    fi
    echo "test.sh: installing ${need_apt[*]}"
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_apt[@]}"
fi

echo "test.sh: cargo fmt --check"
cargo fmt --all -- --check
echo "test.sh: cargo clippy"
cargo clippy --all-targets --quiet -- -D warnings
echo "test.sh: cargo test"
# Integration tests start real servers; two at a time keeps a 2-core machine responsive.
cargo test --release --quiet -- --test-threads=2
if [ -x scripts/bench.sh ]; then
    # A few real points end to end (server, load generator, report); checks that the
    # results are produced, not what the numbers are.
    echo "test.sh: bench smoke run"
    bench_out=$(mktemp -d)
    scripts/bench.sh --smoke --out "$bench_out"
    rows=$(($(wc -l <"$bench_out/raw.csv") - 1))
    if [ "$rows" -lt 3 ]; then
        echo "test.sh: bench smoke run wrote $rows rows to raw.csv (expected 3)" >&2
        exit 1
    fi
    for f in summary.md README.md delivered_vs_offered.svg p99_vs_clients.svg \
             cpu_ns_per_msg.svg rss_per_conn.svg; do
        if [ ! -s "$bench_out/$f" ]; then
            echo "test.sh: bench smoke run did not produce $f" >&2
            exit 1
        fi
    done
    grep -q '^<svg' "$bench_out/delivered_vs_offered.svg"
    rm -rf "$bench_out"
fi
echo "test.sh: all tests passed"
