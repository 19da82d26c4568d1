#!/usr/bin/env bash
# Fuzzes every parser that reads network input (the targets in fuzz/fuzz_targets), bounded,
# and writes a report of executions, coverage and crashes per target.
#
#   scripts/fuzz.sh [--seconds N] [--runs N] [--jobs J] [--targets "a b"] [--out DIR]
#
# Each target runs until it has made --runs executions (default 10,000,000) or spent
# --seconds (default 3600), whichever comes first, --jobs at a time (default 1). The corpus
# grows in fuzz/corpus/<target> and is minimized at the end (commit it: scripts/test.sh
# replays it); a crash is saved in fuzz/artifacts/<target>/, and the script ends with status
# 1. Keep a crash as fuzz/regressions/<target>/<what-it-was> once it is fixed.
#
# Engine: cargo-fuzz (libFuzzer, coverage-guided) on the nightly toolchain it needs,
# installed from crates.io when missing. Without a nightly toolchain the script says so and
# runs the stable fallback (fuzz/examples/stable_fuzz.rs: random mutations of the corpus,
# blind to coverage). It never skips. Built with debug assertions (overflow checks) and
# without a sanitizer by default: no parser has unsafe code (the crate's few unsafe blocks
# are libc calls for thread scheduling and process figures), and AddressSanitizer costs two
# thirds of the executions; --sanitizer address turns it on.
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=3600
runs=10000000
jobs=1
targets="http_request ws_frames client_ops chat deflate token conn_state proxy"
out="results/$(date +%Y-%m-%d)-$(hostname -s)"
sanitizer=none
while (($#)); do
    case "$1" in
        --seconds) seconds="$2"; shift 2 ;;
        --runs) runs="$2"; shift 2 ;;
        --jobs) jobs="$2"; shift 2 ;;
        --targets) targets="$2"; shift 2 ;;
        --out) out="$2"; shift 2 ;;
        --sanitizer) sanitizer="$2"; shift 2 ;;
        -h|--help) sed -n '2,19p' "$0"; exit 0 ;;
        *) echo "fuzz.sh: unknown argument $1" >&2; exit 2 ;;
    esac
done
mkdir -p "$out" fuzz/corpus
logs="$(mktemp -d)"
touch "$logs/start"

engine=libfuzzer
if ! rustup toolchain list 2>/dev/null | grep -q '^nightly'; then
    echo "fuzz.sh: no nightly toolchain: trying to install one" >&2
    rustup toolchain install nightly --profile minimal >&2 || true
fi
if rustup toolchain list 2>/dev/null | grep -q '^nightly'; then
    if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
        echo "fuzz.sh: installing cargo-fuzz from crates.io" >&2
        cargo +nightly install cargo-fuzz --locked >&2
    fi
    cargo +nightly fuzz build -O -a -s "$sanitizer" >&2
else
    engine=stable
    echo "fuzz.sh: NO NIGHTLY TOOLCHAIN: cargo-fuzz cannot instrument; running the stable," \
        "coverage-blind fallback engine instead (fuzz/examples/stable_fuzz.rs)" >&2
    cargo build --release --manifest-path fuzz/Cargo.toml --example stable_fuzz >&2
fi

run_one() {
    local t="$1" start end status
    mkdir -p "fuzz/corpus/$t" "fuzz/artifacts/$t"
    start=$(date +%s)
    status=0
    if [ "$engine" = libfuzzer ]; then
        cargo +nightly fuzz run -O -a -s "$sanitizer" "$t" "fuzz/corpus/$t" "fuzz/seeds/$t" -- \
            -runs="$runs" -max_total_time="$seconds" -print_final_stats=1 \
            -dict="fuzz/dict/$(dict_of "$t")" \
            >"$logs/$t.log" 2>&1 || status=$?
    else
        "fuzz/target/release/examples/stable_fuzz" "$t" "$seconds" "$runs" \
            >"$logs/$t.log" 2>&1 || status=$?
    fi
    end=$(date +%s)
    echo "$t $status $((end - start))" >"$logs/$t.done"
    echo "fuzz.sh: $t finished (status $status, $((end - start)) s)" >&2
}
dict_of() {
    case "$1" in
        http_request|conn_state) echo http.dict ;;
        proxy) echo proxy.dict ;;
        *) echo json.dict ;;
    esac
}
export -f run_one dict_of
export engine sanitizer runs seconds logs
printf '%s\n' $targets | xargs -P "$jobs" -I{} bash -c 'run_one {}'

# Minimize each corpus (libFuzzer merge keeps one input per feature).
if [ "$engine" = libfuzzer ]; then
    for t in $targets; do
        cargo +nightly fuzz cmin -O -a -s "$sanitizer" "$t" "fuzz/corpus/$t" >/dev/null 2>&1 ||
            echo "fuzz.sh: cmin $t failed; the corpus is kept as it is" >&2
    done
fi

report="$out/fuzz.md"
failed=0
{
    echo "# Fuzzing run"
    echo
    echo "\`scripts/fuzz.sh --seconds $seconds --runs $runs --jobs $jobs\` on $(hostname -s)," \
        "$(nproc) cores, $(date -u +'%Y-%m-%d %H:%M UTC'), commit $(git rev-parse --short HEAD)."
    if [ "$engine" = libfuzzer ]; then
        echo "Engine: libFuzzer through cargo-fuzz $(cargo +nightly fuzz --version | awk '{print $2}')," \
            "$(rustc +nightly --version | awk '{print $2, $3}' | tr -d '('),"\
            "sanitizer: $sanitizer, debug assertions on."
    else
        echo "Engine: **the stable fallback** (no nightly toolchain): random mutations, no" \
            "coverage guidance; coverage is not measured."
    fi
    echo
    echo "| target | executions | seconds | exec/s | coverage (edges) | features | corpus (min.) | crashes |"
    echo "|---|---:|---:|---:|---:|---:|---:|---:|"
    for t in $targets; do
        read -r _ status secs <"$logs/$t.done"
        crashes=$(find "fuzz/artifacts/$t" -type f -newer "$logs/start" 2>/dev/null | wc -l)
        [ "$status" = 0 ] || failed=1
        corpus=$(find "fuzz/corpus/$t" -type f | wc -l)
        if [ "$engine" = libfuzzer ]; then
            execs=$(grep -o 'stat::number_of_executed_units: [0-9]*' "$logs/$t.log" | awk '{print $2}' | tail -1)
            done_line=$(grep -E '^#[0-9]+\s+DONE' "$logs/$t.log" | tail -1 || true)
            [ -n "$done_line" ] || done_line=$(grep -E '^#[0-9]+\s' "$logs/$t.log" | tail -1 || true)
            cov=$(sed -n 's/.* cov: \([0-9]*\).*/\1/p' <<<"$done_line")
            ft=$(sed -n 's/.* ft: \([0-9]*\).*/\1/p' <<<"$done_line")
        else
            execs=$(sed -n 's/.*: \([0-9]*\) runs.*/\1/p' "$logs/$t.log")
            cov="n/a"; ft="n/a"
        fi
        execs=${execs:-0}
        rate=$(( secs > 0 ? execs / secs : execs ))
        echo "| $t | $execs | $secs | $rate | ${cov:-?} | ${ft:-?} | $corpus | $crashes |"
    done
    echo
    echo "Crashes are saved in \`fuzz/artifacts/<target>/\`; once fixed, each is kept in"
    echo "\`fuzz/regressions/<target>/\`, which \`scripts/test.sh\` replays with the corpus."
} >"$report"
cat "$report"
for t in $targets; do
    if grep -qE 'panicked|ERROR: libFuzzer|crash after' "$logs/$t.log"; then
        echo "--- $t ---" >&2
        grep -E -A6 'panicked|ERROR: libFuzzer|crash after' "$logs/$t.log" | head -30 >&2
    fi
done
exit "$failed"
