#!/usr/bin/env bash
# THE test command of vshm: runs every test stage and prints a summary line per stage.
#
#   scripts/test.sh            # all stages
#   scripts/test.sh rust loom  # only the named stages
#
# Stages (one function each, below): deps, rust, loom, c, python, sanitizers, fuzz, soak,
# bench.
# Every stage runs even if an earlier one failed (except deps); the exit status is
# non-zero if any stage failed. Logs go to target/test-logs/<stage>.log.
set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
LOGS="$ROOT/target/test-logs"
mkdir -p "$LOGS"

# Build profile of the rust stage: VSHM_TEST_PROFILE=release (default) or debug.
# Measured on the 2-core dev machine (fresh target dir, `cargo test --workspace --no-run`):
# release 1237 CPU-s to build vs debug 463 CPU-s, but the tests then run faster in release
# (87 s vs 142 s), the benchmark stage needs a release build of the workspace anyway, and
# developers' target/release is already warm. The loom stage is always release.
case ${VSHM_TEST_PROFILE:-release} in
    release) CARGO_PROFILE_FLAGS=(--release) ;;
    debug) CARGO_PROFILE_FLAGS=() ;;
    *) echo "test.sh: VSHM_TEST_PROFILE must be release or debug" >&2; exit 2 ;;
esac

# ---------------------------------------------------------------------------------------------
# stages: each returns 0 on success; output is tee'd to target/test-logs/<stage>.log

stage_deps() {
    # redis-server/redis-cli, hiredis, pkg-config, valgrind (Debian packages), if missing.
    bash scripts/install-redis.sh
}

stage_rust() {
    # Unit, integration and doc tests of every crate, against real redis-server processes
    # (the vshm-tests helpers start them).
    # --no-fail-fast: run every test binary, so the summary counts them all.
    cargo test --workspace --no-fail-fast "${CARGO_PROFILE_FLAGS[@]+"${CARGO_PROFILE_FLAGS[@]}"}" &&
        # The daemon-only libvshm (no in-process core linked) keeps building; then the default
        # one again, so that target/<profile>/libvshm.so (which `vshm-bench casync` links) has
        # the in-process core.
        cargo build -p vshm --no-default-features "${CARGO_PROFILE_FLAGS[@]+"${CARGO_PROFILE_FLAGS[@]}"}" &&
        cargo build -p vshm "${CARGO_PROFILE_FLAGS[@]+"${CARGO_PROFILE_FLAGS[@]}"}"
}

stage_loom() {
    # loom model checks; own target dir so that the --cfg does not invalidate the main build.
    RUSTFLAGS="${RUSTFLAGS:-} --cfg vshm_loom" \
        cargo test --release --no-fail-fast -p vshm-loom-tests --target-dir target/loom
}

stage_c() {
    # The C client (scripts/test-c.sh): builds libvshm, installs it into a temp prefix,
    # compiles the C tests and examples against the installed library (pkg-config), and runs
    # them against real servers through the in-process core and through vshmd: plain, under
    # AddressSanitizer+UBSan and under valgrind. Uses VSHM_TEST_PROFILE's build.
    bash scripts/test-c.sh
}

stage_python() {
    # The Python client (client-python, docs/python.md): builds the native module into the
    # venv target/pyenv (scripts/build-python.sh, VSHM_TEST_PROFILE's build), installs pytest
    # and redis-py (the differential test's reference) from PyPI, builds vshmd, and runs the
    # pytest suite against real servers: a standalone redis-server and a 6-node cluster
    # (scripts/test-servers.sh, unless VSHM_TEST_STANDALONE/VSHM_TEST_CLUSTER are given), in
    # process and through vshmd.
    local profile=${VSHM_TEST_PROFILE:-release} py
    py=$(VSHM_PY_PROFILE=$profile bash scripts/build-python.sh | tail -n 1) || return 1
    "$py" -m pip install --quiet pytest redis || return 1
    cargo build --workspace "${CARGO_PROFILE_FLAGS[@]+"${CARGO_PROFILE_FLAGS[@]}"}" || return 1
    VSHMD_BIN="${CARGO_TARGET_DIR:-$ROOT/target}/$profile/vshmd" \
        "$py" -m pytest -p no:cacheprovider -q -rfEx client-python/tests
}

stage_sanitizers() {
    # The ring and client code under AddressSanitizer and ThreadSanitizer (stable toolchain
    # with RUSTC_BOOTSTRAP=1 -Zsanitizer=...), own target dirs; any report fails the run.
    bash scripts/sanitizers.sh
}

stage_fuzz() {
    # Every cargo-fuzz target for a short fixed time from the committed corpus.
    bash scripts/fuzz.sh "${VSHM_FUZZ_SECONDS:-30}"
}

stage_soak() {
    # Soak + chaos through vshmd: client processes submit mixed commands while faults are
    # injected; every submission must complete and every acknowledged write read back.
    bash scripts/soak.sh "${VSHM_SOAK_SECONDS:-60}"
}

stage_bench() {
    # Every benchmark scenario in its quick form, so the benchmarks cannot rot (no speed
    # assertions: the figures are printed, not checked).
    # The workspace build the other stages use (a `cargo run -p vshm-bench` would resolve
    # dependency features for vshm-bench alone and recompile them), then the binary itself.
    cargo build --release --workspace &&
        "${CARGO_TARGET_DIR:-target}/release/vshm-bench" all --quick --out target/bench-quick
}

# Order in which stages run. Add new stages here.
ALL_STAGES=(deps rust loom c python sanitizers fuzz soak bench)

# ---------------------------------------------------------------------------------------------

# The run is one function, read whole before it starts: editing this file while it runs
# (e.g. a git checkout) cannot derail it.
main() {
    if [ $# -gt 0 ]; then STAGES=("$@"); else STAGES=("${ALL_STAGES[@]}"); fi

    summary=()
    failed=0
    total_passed=0
    total_failed=0

    for stage in "${STAGES[@]}"; do
        if ! declare -F "stage_$stage" >/dev/null; then
            echo "test.sh: unknown stage '$stage' (stages: ${ALL_STAGES[*]})" >&2
            exit 2
        fi
        log="$LOGS/$stage.log"
        echo "=== test.sh: stage $stage ==="
        start=$SECONDS
        "stage_$stage" 2>&1 | tee "$log"
        rc=${PIPESTATUS[0]}
        secs=$((SECONDS - start))
        # cargo test's "test result: ok. N passed; M failed; ..." lines, and pytest's closing
        # line ("N failed, M passed, ... in 12.3s")
        read -r p f < <({
            sed -n 's/^test result: [A-Za-z]*\. \([0-9]*\) passed; \([0-9]*\) failed.*/\1 \2/p' "$log"
            grep -aE '^(=+ )?[0-9]+ [a-z]+.* in [0-9.]+s' "$log" |
                awk '{p = 0; f = 0; for (i = 2; i <= NF; i++) { if ($i ~ /^passed/) p = $(i-1); if ($i ~ /^failed/) f = $(i-1) } print p, f}'
        } | awk '{p += $1; f += $2} END {print p + 0, f + 0}')
        total_passed=$((total_passed + p))
        total_failed=$((total_failed + f))
        if [ "$rc" -eq 0 ]; then
            status=PASS
        else
            status="FAIL (exit $rc)"
            failed=1
        fi
        counts=""
        if [ "$p" -gt 0 ] || [ "$f" -gt 0 ]; then counts=", $p tests passed, $f failed"; fi
        summary+=("$(printf 'test.sh: %-11s %s in %ss%s' "$stage" "$status" "$secs" "$counts")")
        if [ "$stage" = deps ] && [ "$rc" -ne 0 ]; then
            echo "test.sh: cannot install the test dependencies; stopping" >&2
            break
        fi
    done

    echo
    echo "=== test.sh summary (logs in target/test-logs/) ==="
    printf '%s\n' "${summary[@]}"
    echo "tests: $total_passed passed, $total_failed failed"
    return "$failed"
}

main "$@"; exit $?
