#!/usr/bin/env bash
# The C client's test stage: build libvshm, install it into a temporary
# prefix, compile the C tests and examples against the *installed* library
# with the system C compiler and pkg-config, and run them against real
# servers: plain, under AddressSanitizer, and under valgrind; through the
# in-process core and (when vshmd is available) through the daemon.
#
#   scripts/test-c.sh            # everything
#
# Environment:
#   VSHM_TEST_STANDALONE, VSHM_TEST_CLUSTER   use these servers (else this
#                                script starts its own with test-servers.sh)
#   VSHM_C_PROFILE=release|debug   which build to install and run (default
#                                $VSHM_TEST_PROFILE, else release: the
#                                multi-threaded test runs
#                                400,000 commands per mode, and an
#                                unoptimized core is several times slower)
#   VSHM_C_DAEMON=0              skip the daemon runs
#   VSHM_C_VALGRIND=0            skip the valgrind runs
#   CC                           the C compiler (default cc)
#
# Exits non-zero if anything fails; prints one summary line per program
# ("N passed, N failed") and a final "N passed, N failed" over programs.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
CC=${CC:-cc}
PROFILE=${VSHM_C_PROFILE:-${VSHM_TEST_PROFILE:-release}}
WORK=$(mktemp -d "${TMPDIR:-/tmp}/vshm-c-test.XXXXXX")
PREFIX=$WORK/prefix
BIN=$WORK/bin
mkdir -p "$BIN"
SERVERS_DIR=
DAEMON_STARTED=
PASSED=0
FAILED=0
CASES_PASSED=0
CASES_FAILED=0
PENDING_NOTES=()

log() { echo "test-c.sh: [$(date +%T)] $*" >&2; }

cleanup() {
    local rc=$?
    if [ -s "$WORK/redis-unix.pid" ]; then
        kill "$(cat "$WORK/redis-unix.pid")" 2>/dev/null || true
    fi
    if [ -n "$DAEMON_STARTED" ]; then
        bash "$ROOT/client-c/tests/vshmd-ctl.sh" stop "$WORK" || true
    fi
    if [ -n "$SERVERS_DIR" ]; then
        bash "$ROOT/scripts/test-servers.sh" stop "$SERVERS_DIR" || true
    fi
    rm -rf "$WORK"
    exit $rc
}
trap cleanup EXIT

# ---------------------------------------------------------------------------
# build and install

log "building libvshm ($PROFILE)"
# --workspace, not -p vshm: one feature resolution for every stage of scripts/test.sh (a -p build
# resolves dependency features differently and recompiles much of the dependency tree).
if [ "$PROFILE" = release ]; then
    cargo build --release --workspace
    INSTALL_FLAGS=()
else
    cargo build --workspace
    INSTALL_FLAGS=(--debug)
fi
bash scripts/install-c.sh "$PREFIX" "${INSTALL_FLAGS[@]+"${INSTALL_FLAGS[@]}"}"
export PKG_CONFIG_PATH=$PREFIX/lib/pkgconfig
pkg-config --exists vshm || { log "pkg-config cannot find the installed vshm.pc"; exit 1; }
log "pkg-config: $(pkg-config --cflags --libs vshm)"

CFLAGS=(-std=c11 -Wall -Wextra -Werror -Wno-unused-function -Wno-unused-variable -g -O1 -pthread)
RPATH=(-Wl,-rpath,"$PREFIX/lib")

build() { # build OUT SRC [extra flags...]
    local out=$1 src=$2; shift 2
    # shellcheck disable=SC2046
    "$CC" "${CFLAGS[@]}" "$@" "$src" -o "$BIN/$out" $(pkg-config --cflags --libs vshm) "${RPATH[@]}" -lpthread
}

# The functions the header declares.
HEADER_FUNCTIONS=$(grep -E '^[a-zA-Z].*\bvshm_[a-z0-9_]+\(' "$PREFIX/include/vshm.h" | grep -v '^typedef' |
    sed -E 's/^[^(]*\b(vshm_[a-z0-9_]+)\(.*/\1/' | sort -u)

# Every function of the header must be exercised by the C test suite.
missing=()
for f in $HEADER_FUNCTIONS; do
    grep -qw "$f" client-c/tests/c/*.c client-c/tests/c/harness.h || missing+=("$f")
done
if [ ${#missing[@]} -gt 0 ]; then
    log "functions of vshm.h not covered by client-c/tests/c: ${missing[*]}"
    exit 1
fi

# The installed libvshm.so exports exactly the header's functions, each at
# version VSHM_0 (client-c/vshm.map), and nothing else (the VSHM_0 entry
# is the version definition itself).
SO=$(readlink -f "$PREFIX/lib/libvshm.so")
exports=$(nm -D --defined-only "$SO" | awk '$3 != "VSHM_0" { print $3 }' | sort)
unversioned=$(echo "$exports" | grep -v '@@VSHM_0$' || true)
if [ -n "$unversioned" ]; then
    log "libvshm.so exports symbols without the @@VSHM_0 version:" $unversioned
    exit 1
fi
exported=$(echo "$exports" | sed 's/@@VSHM_0$//' | sort -u)
if [ "$exported" != "$HEADER_FUNCTIONS" ]; then
    log "libvshm.so's exports differ from vshm.h's functions (< exported, > declared):"
    diff <(echo "$exported") <(echo "$HEADER_FUNCTIONS") >&2 || true
    exit 1
fi
[ "$(readelf -d "$SO" | sed -n 's/.*(SONAME).*\[\(.*\)\]/\1/p')" = libvshm.so.0 ] ||
    { log "libvshm.so's SONAME is not libvshm.so.0"; exit 1; }
log "libvshm.so exports the header's $(echo "$HEADER_FUNCTIONS" | wc -l) functions at VSHM_0 ($(stat -c %s "$SO") bytes)"

log "compiling tests and examples against the installed library"
build test_api client-c/tests/c/test_api.c
build test_features client-c/tests/c/test_features.c
build test_threads client-c/tests/c/test_threads.c
build test_requests client-c/tests/c/test_requests.c
for ex in hello async_epoll batch pubsub; do build "$ex" "client-c/examples/$ex.c"; done
# The static library, linked the pkg-config way: a static-only install
# (where -lvshm can only be libvshm.a) and `pkg-config --static`.
bash scripts/install-c.sh "$WORK/static-prefix" --static-only "${INSTALL_FLAGS[@]+"${INSTALL_FLAGS[@]}"}"
# shellcheck disable=SC2046
"$CC" "${CFLAGS[@]}" client-c/examples/hello.c -o "$BIN/hello_static" \
    $(PKG_CONFIG_PATH=$WORK/static-prefix/lib/pkgconfig pkg-config --cflags --static --libs vshm)
if readelf -d "$BIN/hello_static" | grep -q 'NEEDED.*libvshm'; then
    log "hello_static is linked with libvshm.so, not libvshm.a"
    exit 1
fi
ASAN=(-fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined)
build test_api_asan client-c/tests/c/test_api.c "${ASAN[@]}"
build test_features_asan client-c/tests/c/test_features.c "${ASAN[@]}"
build test_threads_asan client-c/tests/c/test_threads.c "${ASAN[@]}"
build test_requests_asan client-c/tests/c/test_requests.c "${ASAN[@]}"
build async_epoll_asan client-c/examples/async_epoll.c "${ASAN[@]}"
# A C++ compiler must accept the header too (extern "C").
if command -v c++ >/dev/null 2>&1; then
    echo '#include <vshm.h>
int main() { return vshm_version() == nullptr; }' >"$WORK/cxx.cc"
    # shellcheck disable=SC2046
    c++ -std=c++11 -Wall -Werror "$WORK/cxx.cc" -o "$BIN/cxx" $(pkg-config --cflags --libs vshm) "${RPATH[@]}"
    "$BIN/cxx"
fi

# ---------------------------------------------------------------------------
# servers

if [ -z "${VSHM_TEST_STANDALONE:-}" ]; then
    SERVERS_DIR=$WORK/servers
    bash scripts/test-servers.sh start "$SERVERS_DIR"
    set -a
    # shellcheck disable=SC1091
    . "$SERVERS_DIR/env"
    set +a
fi
export VSHM_TEST_STANDALONE VSHM_TEST_CLUSTER="${VSHM_TEST_CLUSTER:-}"
# A standalone server on a Unix socket only (port 0: no TCP), for
# test_unix_socket_server (unix:///path URIs).
start_unix_server() {
    local sock=$WORK/redis-unix.sock deadline=$((SECONDS + 30))
    redis-server --port 0 --unixsocket "$sock" --unixsocketperm 700 --dir "$WORK" \
        --daemonize yes --pidfile "$WORK/redis-unix.pid" --logfile "$WORK/redis-unix.log" \
        --save '' --appendonly no >/dev/null 2>&1 || return 1
    while [ $SECONDS -lt $deadline ]; do
        if [ -S "$sock" ] && [ "$(timeout 5 redis-cli -s "$sock" PING 2>/dev/null)" = PONG ]; then
            export VSHM_TEST_UNIX_SOCKET=$sock
            return 0
        fi
        sleep 0.1
    done
    return 1
}
start_unix_server || PENDING_NOTES+=("the Unix-socket redis-server did not start: test_unix_socket_server skipped")
# Generous request timeouts: the machine may be busy (examples submit
# thousands of requests at once; the default is 250 ms).
URI="valkey://$VSHM_TEST_STANDALONE?timeout_ms=5000"

# ---------------------------------------------------------------------------
# running

# run NAME EXPECT_REGEX CMD...: run with a bound, print its output, check the
# exit status and (if EXPECT_REGEX is not empty) that the output matches.
run() {
    local name=$1 expect=$2; shift 2
    local out=$WORK/$name.out rc=0
    local t0=$SECONDS
    timeout 600 "$@" >"$out" 2>&1 || rc=$?
    sed "s/^/    [$name] /" "$out" | grep -v '^    \[[^]]*\] -- ' >&2 || true
    # Test cases: a program's own "N passed, N failed" line, else the
    # program counts as one case.
    local cp cf
    read -r cp cf < <(sed -n 's/^\([0-9]*\) passed, \([0-9]*\) failed.*/\1 \2/p' "$out" | tail -n 1) || true
    if [ $rc -eq 0 ] && { [ -z "$expect" ] || grep -Eq "$expect" "$out"; }; then
        PASSED=$((PASSED + 1))
        CASES_PASSED=$((CASES_PASSED + ${cp:-1}))
        CASES_FAILED=$((CASES_FAILED + ${cf:-0}))
        log "ok   $name ($((SECONDS - t0)) s)"
    else
        FAILED=$((FAILED + 1))
        CASES_PASSED=$((CASES_PASSED + ${cp:-0}))
        CASES_FAILED=$((CASES_FAILED + ${cf:-1}))
        [ "${cf:-1}" -gt 0 ] || CASES_FAILED=$((CASES_FAILED + 1))
        log "FAIL $name (exit $rc$([ -n "$expect" ] && echo ", expected /$expect/"); $((SECONDS - t0)) s)"
    fi
}

VALGRIND=(valgrind --error-exitcode=99 --leak-check=full --show-leak-kinds=definite,indirect,possible
    --errors-for-leak-kinds=definite --fair-sched=yes --child-silent-after-fork=yes --num-callers=30)
VG_CHECK='ERROR SUMMARY: 0 errors from 0 contexts'
# LeakSanitizer reports leaks as errors (exit 23); UBSan aborts on errors.
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=0:exitcode=23
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1

suite() { # suite MODE: everything against one kind of core
    local mode=$1
    export VSHM_TEST_MODE=$mode
    run "hello-$mode" '^GET hello:key -> Hello, world!$' "$BIN/hello" "$URI"
    run "async_epoll-$mode" '^completed 2000 of 2000 requests, 0 failed, counter = 2000$' "$BIN/async_epoll" "$URI" 2000
    run "batch-$mode" '^  2\) \(integer\) 70$' "$BIN/batch" "$URI"
    run "pubsub-$mode" '^pmessage alerts.disk: 90% full$' "$BIN/pubsub" "$URI"
    run "test_api-$mode" '^[0-9]+ passed, 0 failed' "$BIN/test_api"
    run "test_features-$mode" '^[0-9]+ passed, 0 failed' "$BIN/test_features"
    run "test_threads-$mode" '^9 passed, 0 failed$' "$BIN/test_threads"
    run "test_requests-$mode" '^[0-9]+ passed, 0 failed' "$BIN/test_requests"
    run "test_api-asan-$mode" '^[0-9]+ passed, 0 failed' "$BIN/test_api_asan"
    run "test_features-asan-$mode" '^[0-9]+ passed, 0 failed' "$BIN/test_features_asan"
    run "test_requests-asan-$mode" '^[0-9]+ passed, 0 failed' "$BIN/test_requests_asan"
    VSHM_TEST_SCALE=10 run "test_threads-asan-$mode" '^9 passed, 0 failed$' "$BIN/test_threads_asan"
    run "async_epoll-asan-$mode" '^completed 500 of 500' "$BIN/async_epoll_asan" "$URI" 500
    if [ "${VSHM_C_VALGRIND:-1}" != 0 ] && command -v valgrind >/dev/null 2>&1; then
        VSHM_TEST_TIMEOUT_MS=30000 run "test_api-valgrind-$mode" "$VG_CHECK" "${VALGRIND[@]}" "$BIN/test_api"
        VSHM_TEST_TIMEOUT_MS=30000 run "test_features-valgrind-$mode" "$VG_CHECK" "${VALGRIND[@]}" "$BIN/test_features"
        VSHM_TEST_TIMEOUT_MS=30000 run "test_requests-valgrind-$mode" "$VG_CHECK" "${VALGRIND[@]}" "$BIN/test_requests"
        VSHM_TEST_TIMEOUT_MS=30000 VSHM_TEST_SCALE=100 \
            run "test_threads-valgrind-$mode" "$VG_CHECK" "${VALGRIND[@]}" "$BIN/test_threads"
    fi
}

run "hello-static" '^GET hello:key -> Hello, world!$' "$BIN/hello_static" "$URI"
suite embedded

# The daemon: build vshmd and serve the standalone server through it.
start_daemon() {
    log "building vshmd ($PROFILE)"
    local flag=
    [ "$PROFILE" = release ] && flag=--release
    if ! cargo build $flag --workspace >"$WORK/vshmd-build.log" 2>&1; then
        PENDING_NOTES+=("vshmd does not build: daemon-mode C tests not run (see the build log below)")
        tail -n 20 "$WORK/vshmd-build.log" >&2
        return 1
    fi
    local vshmd=${CARGO_TARGET_DIR:-$ROOT/target}/$PROFILE/vshmd
    [ -x "$vshmd" ] || { PENDING_NOTES+=("vshmd binary not found at $vshmd"); return 1; }
    export VSHM_TEST_SOCKET=$WORK/vshmd.sock
    {
        echo "socket_path = \"$VSHM_TEST_SOCKET\""
        echo "shutdown_grace_ms = 1000"
        echo "[server]"
        echo "addresses = [\"$VSHM_TEST_STANDALONE\"]"
        echo "request_timeout_ms = 5000"
    } >"$WORK/vshmd.toml"
    export VSHMD=$vshmd
    if bash client-c/tests/vshmd-ctl.sh start "$WORK"; then
        DAEMON_STARTED=1
        # test_daemon_restart restarts it through this command.
        export VSHM_TEST_DAEMON_RESTART="bash $ROOT/client-c/tests/vshmd-ctl.sh restart $WORK"
        return 0
    fi
    PENDING_NOTES+=("vshmd did not come up: daemon-mode C tests not run")
    return 1
}

if [ "${VSHM_C_DAEMON:-1}" != 0 ]; then
    if start_daemon; then
        export VSHM_SOCKET=$VSHM_TEST_SOCKET # the examples use the daemon when this is set
        suite daemon
        unset VSHM_SOCKET
    fi
fi

# Every C block of docs/c-api.md, compiled and run (after the daemon
# started, so that the daemon snippet runs too).
export VSHM_TEST_CLUSTER
VSHM_TEST_SOCKET=${DAEMON_STARTED:+${VSHM_TEST_SOCKET:-}} \
    run "doc-snippets" '^[0-9]+ passed, 0 failed' bash scripts/c-doc-snippets.sh "$WORK/snippets"

for n in "${PENDING_NOTES[@]+"${PENDING_NOTES[@]}"}"; do log "PENDING: $n"; done
log "C programs: $PASSED passed, $FAILED failed"
# In cargo's format, so that scripts/test.sh counts the C test cases too.
if [ "$FAILED" -eq 0 ]; then result=ok; else result=FAILED; fi
echo "test result: $result. $CASES_PASSED passed; $CASES_FAILED failed; 0 ignored (C tests: $PASSED programs passed, $FAILED failed)"
echo "$CASES_PASSED passed, $CASES_FAILED failed"
[ "$FAILED" -eq 0 ]
