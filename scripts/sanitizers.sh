#!/usr/bin/env bash
# The ring and client code (vshm-protocol, vshm-client without the
# embedded core) under AddressSanitizer and
# ThreadSanitizer. Any sanitizer report fails the script.
#
#   scripts/sanitizers.sh            # both
#   scripts/sanitizers.sh asan       # one of them
#   scripts/sanitizers.sh tsan
#
# Stable toolchain with RUSTC_BOOTSTRAP=1 for -Zsanitizer (no -Zbuild-std:
# the CI toolchain has no rust-src, so the standard library stays
# uninstrumented). Own target dirs: target/asan, target/tsan.
#
# ASan (+ LeakSanitizer): every vshm-protocol and vshm-client test (unit
# tests of the frame, msg, layout, register and client code;
# shm-protocol/tests/ring_model.rs, client/tests/hostile*.rs,
# client/tests/cross_process.rs, whose child process is the same
# instrumented binary) and the client/examples/tsan_echo.rs three-thread echo.
#
# TSan: client/examples/tsan_echo.rs only: a client sender, a core and a client
# receiver on three threads over one segment; then the real `Client` (one
# thread: submit, wait, zero-copy replies pinned in the ring) against a core
# thread. The threads synchronize through nothing but our ring and wake
# atomics (and pthread_create/join, which TSan intercepts). The libtest harness and std's Mutex/Condvar/OnceLock/channels
# synchronize through futexes inside the precompiled std, which TSan cannot
# see: run over the unit tests, it reports races on data those locks
# protect (false reports; see docs/reliability.md, "Sanitizers"). We do not
# suppress them; we run TSan where it is sound. First a self-test: a
# deliberate race on segment memory must be reported, which proves that the
# detector sees our accesses and that a report fails the run.
set -euo pipefail

cd "$(dirname "$0")/.."
TRIPLE=x86_64-unknown-linux-gnu
# SANITIZERS_TARGET_ROOT: where target/asan and target/tsan go (default
# target; set it to time a cold build).
TR=${SANITIZERS_TARGET_ROOT:-target}
LOGS=$TR/sanitizer-logs
mkdir -p "$LOGS"
export RUSTC_BOOTSTRAP=1
# Line tables are enough for symbolized reports and link much faster.
export CARGO_PROFILE_DEV_DEBUG=line-tables-only CARGO_PROFILE_TEST_DEBUG=line-tables-only

what=${1:-all}
start=$(date +%s)

# check LOG: fail when a sanitizer reported anything in LOG.
check() {
    if grep -E -q 'ERROR: (AddressSanitizer|LeakSanitizer)|WARNING: ThreadSanitizer|SUMMARY: (Address|Thread|Leak|UndefinedBehavior)Sanitizer' "$1"; then
        echo "sanitizers.sh: sanitizer report in $1:" >&2
        grep -E -A30 'ERROR: (AddressSanitizer|LeakSanitizer)|WARNING: ThreadSanitizer' "$1" | head -n 80 >&2
        exit 1
    fi
}

if [[ $what == all || $what == asan ]]; then
    t0=$(date +%s)
    export ASAN_OPTIONS="halt_on_error=1:detect_leaks=1:exitcode=86"
    log=$LOGS/asan.log
    echo "sanitizers.sh: AddressSanitizer: vshm-protocol and vshm-client tests (log: $log)"
    if ! RUSTFLAGS="-Zsanitizer=address" cargo test -p vshm-protocol -p vshm-client --no-default-features --target "$TRIPLE" \
        --target-dir "$TR/asan" >"$log" 2>&1; then
        check "$log"
        tail -n 40 "$log" >&2
        echo "sanitizers.sh: ASan tests failed" >&2
        exit 1
    fi
    check "$log"
    grep -E '^test result' "$log" | sed 's/^/  /'
    for args in 20000 "--client 5000"; do
        elog=$LOGS/asan-echo-${args// /}.log
        # shellcheck disable=SC2086 # two words on purpose
        $TR/asan/$TRIPLE/debug/examples/tsan_echo $args >"$elog" 2>&1 || {
            check "$elog"
            cat "$elog" >&2
            exit 1
        }
        check "$elog"
        echo "  $(tail -n 1 "$elog")"
    done
    unset ASAN_OPTIONS
    echo "sanitizers.sh: ASan clean ($(($(date +%s) - t0)) s)"
fi

if [[ $what == all || $what == tsan ]]; then
    t0=$(date +%s)
    # The flag acknowledges that std was built without TSan (no
    # -Zbuild-std); see the header.
    if ! RUSTFLAGS="-Zsanitizer=thread -Cunsafe-allow-abi-mismatch=sanitizer" \
        cargo build -p vshm-client --no-default-features --example tsan_echo --target "$TRIPLE" \
        --target-dir "$TR/tsan" >"$LOGS/tsan-build.log" 2>&1; then
        tail -n 30 "$LOGS/tsan-build.log" >&2
        exit 1
    fi
    bin=$TR/tsan/$TRIPLE/debug/examples/tsan_echo
    # Self-test: the deliberate race must be reported and fail.
    if TSAN_OPTIONS="halt_on_error=1:exitcode=66" "$bin" --race >"$LOGS/tsan-selftest.log" 2>&1 ||
        ! grep -q 'WARNING: ThreadSanitizer: data race' "$LOGS/tsan-selftest.log"; then
        echo "sanitizers.sh: TSan self-test failed: a deliberate race went unreported" >&2
        exit 1
    fi
    echo "  TSan self-test: deliberate race reported (as it must be)"
    for args in 20000 "--client 5000"; do
        log=$LOGS/tsan-echo-${args// /}.log
        # shellcheck disable=SC2086 # two words on purpose
        if ! TSAN_OPTIONS="halt_on_error=1:exitcode=66" "$bin" $args >"$log" 2>&1; then
            check "$log"
            cat "$log" >&2
            exit 1
        fi
        check "$log"
        echo "  $(tail -n 1 "$log")"
    done
    echo "sanitizers.sh: TSan clean ($(($(date +%s) - t0)) s)"
fi

echo "sanitizers.sh: total $(($(date +%s) - start)) s"
