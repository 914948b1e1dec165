#!/usr/bin/env bash
# Build every libFuzzer target in fuzz/ and run each for a fixed time.
#
#   scripts/fuzz.sh [SECONDS_PER_TARGET]               # default 30
#   FUZZ_TARGETS="ring_consumer" scripts/fuzz.sh 60    # only some targets
#   FUZZ_JOBS=1 scripts/fuzz.sh                        # one target at a time
#   FUZZ_TARGET_DIR=/tmp/cold scripts/fuzz.sh          # another build dir
#
# Each target starts from its committed corpus in fuzz/corpus/<target>/ (read
# only) plus the inputs it found on earlier runs in
# target/fuzz/corpus-work/<target>/ (not committed; delete it to start
# fresh). New inputs go to the latter, so the committed corpus never grows.
# Any crash, panic, sanitizer report, timeout (10 s per input) or
# out-of-memory fails the script; libFuzzer writes the input to
# fuzz/artifacts/<target>/ and the script prints the command that replays it.
#
# No cargo-fuzz needed: the targets are built with plain `cargo build` and
# the flags cargo-fuzz 0.13 passes by default (SanitizerCoverage with inline
# 8-bit counters, PC table, compare tracing and stack depth; --cfg fuzzing;
# AddressSanitizer; release with one codegen unit), plus debug assertions
# and overflow checks. The stable toolchain accepts the -Z flags with
# RUSTC_BOOTSTRAP=1. The binaries are libFuzzer's own command line: run
# target/fuzz/x86_64-unknown-linux-gnu/release/<target> -help=1.
# Targets run FUZZ_JOBS (default 2) at a time.
set -euo pipefail

DURATION=${1:-30}
case $DURATION in
    '' | *[!0-9]*) echo "usage: $0 [SECONDS_PER_TARGET]" >&2; exit 2 ;;
esac
JOBS=${FUZZ_JOBS:-2}

cd "$(dirname "$0")/.."
ROOT=$PWD
TRIPLE=x86_64-unknown-linux-gnu
TARGET_DIR=${FUZZ_TARGET_DIR:-$ROOT/target/fuzz}
BIN_DIR=$TARGET_DIR/$TRIPLE/release

# Every [[bin]] of fuzz/Cargo.toml.
all_targets=$(sed -n 's/^name = "\([a-z_]*\)"$/\1/p' fuzz/Cargo.toml | grep -vx vshm-fuzz || true)
targets=${FUZZ_TARGETS:-$all_targets}

export RUSTC_BOOTSTRAP=1
export RUSTFLAGS="-Cpasses=sancov-module \
 -Cllvm-args=-sanitizer-coverage-level=4 \
 -Cllvm-args=-sanitizer-coverage-inline-8bit-counters \
 -Cllvm-args=-sanitizer-coverage-pc-table \
 -Cllvm-args=-sanitizer-coverage-trace-compares \
 -Cllvm-args=-simplifycfg-branch-fold-threshold=0 \
 -Cllvm-args=-sanitizer-coverage-stack-depth \
 --cfg fuzzing -Zsanitizer=address \
 -Cdebug-assertions -Coverflow-checks -Ccodegen-units=1"
export ASAN_OPTIONS=${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_odr_violation=0

start=$(date +%s)
bins=()
for t in $targets; do bins+=(--bin "$t"); done
cargo build --manifest-path fuzz/Cargo.toml --locked --release \
    --config 'profile.release.debug="line-tables-only"' \
    --target "$TRIPLE" --target-dir "$TARGET_DIR" "${bins[@]}"
built=$(date +%s)
echo "fuzz.sh: build took $((built - start)) s"

# run_one TARGET: fuzz it for DURATION seconds; the log goes to
# target/fuzz/fuzz-TARGET.log.
run_one() {
    local t=$1 work=$TARGET_DIR/corpus-work/$1 log=$TARGET_DIR/fuzz-$1.log
    mkdir -p "$work" "fuzz/corpus/$t" "fuzz/artifacts/$t"
    if "$BIN_DIR/$t" "$work" "fuzz/corpus/$t" -artifact_prefix="fuzz/artifacts/$t/" \
        -max_total_time="$DURATION" -timeout=10 -rss_limit_mb=4096 \
        -print_final_stats=1 >"$log" 2>&1 &&
        ! grep -q -E '^(==[0-9]+==ERROR|SUMMARY: )' "$log"; then
        echo "fuzz.sh: $t: $(grep -E '^#[0-9]+[[:space:]]+DONE' "$log" | tail -n 1)"
    else
        echo "fuzz.sh: $t FAILED; log: $log" >&2
        grep -E 'panicked|ERROR|SUMMARY|Test unit written|assert' "$log" | head -n 20 >&2 || true
        for a in $(grep -oE "fuzz/artifacts/$t/[^ ]+" "$log" | sort -u); do
            echo "fuzz.sh: replay with: $BIN_DIR/$t $a" >&2
        done
        return 1
    fi
}

failed=()
set -- $targets
while (($#)); do
    pids=()
    names=()
    for _ in $(seq "$JOBS"); do
        (($#)) || break
        echo "fuzz.sh: $1 for ${DURATION}s"
        run_one "$1" &
        pids+=($!)
        names+=("$1")
        shift
    done
    for i in "${!pids[@]}"; do
        wait "${pids[$i]}" || failed+=("${names[$i]}")
    done
done

echo "fuzz.sh: total $(($(date +%s) - start)) s (build $((built - start)) s, ${DURATION}s per target, $JOBS at a time)"
if ((${#failed[@]})); then
    echo "fuzz.sh: failed: ${failed[*]}" >&2
    exit 1
fi
echo "fuzz.sh: all targets ran ${DURATION}s without a crash"
