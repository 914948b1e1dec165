#!/usr/bin/env bash
# Build every cargo-fuzz target in fuzz/ and run each for a fixed time.
#
#   scripts/fuzz.sh [SECONDS_PER_TARGET]        # default 30
#   FUZZ_TARGETS="ring_consumer" scripts/fuzz.sh 60   # only some targets
#
# Each target starts from its committed seeds in fuzz/corpus/<target>/ (read
# only) plus the inputs it found on earlier runs in
# fuzz/target/corpus-work/<target>/ (not committed; delete it to start
# fresh). New inputs go to the latter, so the committed corpus never grows.
# Any crash, panic, sanitizer report, timeout (10 s per input) or
# out-of-memory fails the script; libFuzzer writes the input to
# fuzz/artifacts/<target>/ and the script prints the command that replays it.
#
# Builds use the machine's stable toolchain with RUSTC_BOOTSTRAP=1 (cargo-fuzz
# needs -Z flags for the sanitizer and the coverage instrumentation), in
# release mode with debug assertions, overflow checks and AddressSanitizer
# (cargo-fuzz's defaults). cargo-fuzz itself is installed from crates.io when
# missing.
set -euo pipefail

DURATION=${1:-30}
case $DURATION in
    '' | *[!0-9]*) echo "usage: $0 [SECONDS_PER_TARGET]" >&2; exit 2 ;;
esac

cd "$(dirname "$0")/.."
export RUSTC_BOOTSTRAP=1

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "fuzz.sh: installing cargo-fuzz" >&2
    cargo install cargo-fuzz --locked
fi

targets=${FUZZ_TARGETS:-$(cargo fuzz list)}
start=$(date +%s)
cargo fuzz build
built=$(date +%s)
echo "fuzz.sh: build took $((built - start)) s"

failed=()
for t in $targets; do
    work=fuzz/target/corpus-work/$t
    mkdir -p "$work" "fuzz/corpus/$t" "fuzz/artifacts/$t"
    log=fuzz/target/fuzz-$t.log
    echo "fuzz.sh: $t for ${DURATION}s"
    if cargo fuzz run "$t" "$work" "fuzz/corpus/$t" -- \
        -max_total_time="$DURATION" -timeout=10 -rss_limit_mb=4096 -print_final_stats=1 >"$log" 2>&1; then
        # The closing status line: runs, coverage, corpus size.
        grep -E '^#[0-9]+[[:space:]]+DONE' "$log" | tail -n 1 || true
    else
        echo "fuzz.sh: $t FAILED; log: $log" >&2
        grep -E 'panicked|ERROR|SUMMARY|Test unit written|assert' "$log" | head -n 20 >&2 || true
        for a in $(grep -oE "fuzz/artifacts/$t/[^ ]+" "$log" | sort -u); do
            echo "fuzz.sh: replay with: RUSTC_BOOTSTRAP=1 cargo fuzz run $t $a" >&2
        done
        failed+=("$t")
    fi
done

echo "fuzz.sh: total $(($(date +%s) - start)) s (build $((built - start)) s, ${DURATION}s per target)"
if ((${#failed[@]})); then
    echo "fuzz.sh: failed: ${failed[*]}" >&2
    exit 1
fi
echo "fuzz.sh: all targets ran ${DURATION}s without a crash"
