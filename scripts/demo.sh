#!/usr/bin/env bash
# vshm in one command: a local 6-node cluster, vshmd in front of it, and
# ~32 worker processes running a mixed, self-checking workload through the
# daemon; then the same workers connected straight to the cluster. Prints
# ops/s and how many connections the servers hold in each case (the sum of
# CLIENT LIST over all nodes, counted while the workers are connected).
#
#   scripts/demo.sh                      # 32 processes x 2000 commands
#   VSHM_DEMO_PROCS=64 VSHM_DEMO_OPS=5000 scripts/demo.sh
#
# Needs cargo; installs redis-server/redis-cli if missing
# (scripts/install-redis.sh). Everything it starts is stopped and every file
# it makes is removed on exit, also on Ctrl-C or failure.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PROCS=${VSHM_DEMO_PROCS:-32}
OPS=${VSHM_DEMO_OPS:-2000}
BOUND=${VSHM_DEMO_TIMEOUT:-300}   # seconds for each workload run
# How a client waits for its reply: the library's default spins 5 us and
# then parks; with more processes than cores even that spin steals the
# daemon's CPU, so park at once (VSHM_DEMO_WAIT=default|park|spin overrides).
CPUS=$(nproc 2>/dev/null || echo 1)
if [ -z "${VSHM_DEMO_WAIT:-}" ]; then
    if [ "$PROCS" -gt "$CPUS" ]; then VSHM_DEMO_WAIT=park; else VSHM_DEMO_WAIT=default; fi
fi
export VSHM_DEMO_WAIT

WORK=""
DAEMON_PID=""
BENCH_PID=""

say() { printf '==> %s\n' "$*" >&2; }
die() { echo "demo.sh: $*" >&2; exit 1; }

cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    exec 3>&- || true
    # The workers die with their bench (PR_SET_PDEATHSIG).
    if [ -n "$BENCH_PID" ] && kill -0 "$BENCH_PID" 2>/dev/null; then
        kill -TERM "$BENCH_PID" 2>/dev/null || true
        sleep 0.2
        kill -KILL "$BENCH_PID" 2>/dev/null || true
    fi
    if [ -n "$DAEMON_PID" ] && kill -0 "$DAEMON_PID" 2>/dev/null; then
        kill -TERM "$DAEMON_PID" 2>/dev/null || true
        for _ in $(seq 1 100); do kill -0 "$DAEMON_PID" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$DAEMON_PID" 2>/dev/null || true
    fi
    if [ -n "$WORK" ] && [ -d "$WORK" ]; then
        if [ -d "$WORK/servers" ]; then
            "$ROOT/scripts/test-servers.sh" stop "$WORK/servers" >/dev/null 2>&1 || true
        fi
        rm -rf "$WORK"
    fi
    if [ $rc -ne 0 ]; then echo "demo.sh: failed or interrupted (exit $rc); cleaned up" >&2; fi
    exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

command -v cargo >/dev/null 2>&1 || die "cargo not found (install Rust: https://rustup.rs)"
bash "$ROOT/scripts/install-redis.sh"

say "building vshmd and the demo worker (release)"
(cd "$ROOT" && cargo build --release -p vshmd --bins)
TARGET=$(cd "$ROOT" && cargo metadata --format-version 1 --no-deps 2>/dev/null \
    | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')
TARGET=${TARGET:-$ROOT/target}
VSHMD="$TARGET/release/vshmd"
WORKER="$TARGET/release/vshm-demo-worker"
[ -x "$VSHMD" ] && [ -x "$WORKER" ] || die "binaries not found in $TARGET/release"

WORK=$(mktemp -d "${TMPDIR:-/tmp}/vshm-demo.XXXXXX")

say "starting a 6-node cluster (3 primaries + 3 replicas)"
"$ROOT/scripts/test-servers.sh" start "$WORK/servers"
# shellcheck disable=SC1091
. "$WORK/servers/env"
NODES=$VSHM_TEST_CLUSTER
addr_list=$(echo "$NODES" | sed 's/\([^,]*\)/"\1"/g')

cat >"$WORK/vshmd.toml" <<EOF
socket_path = "$WORK/vshmd.sock"
[server]
addresses = [$addr_list]
mode = "cluster"
request_timeout_ms = 2000
EOF

say "starting vshmd"
"$VSHMD" --config "$WORK/vshmd.toml" 2>"$WORK/vshmd.log" &
DAEMON_PID=$!
for i in $(seq 1 200); do
    if "$VSHMD" stats --socket "$WORK/vshmd.sock" --timeout-ms 1000 >/dev/null 2>&1; then break; fi
    kill -0 "$DAEMON_PID" 2>/dev/null || { cat "$WORK/vshmd.log" >&2; die "vshmd exited"; }
    [ "$i" = 200 ] && { cat "$WORK/vshmd.log" >&2; die "vshmd did not come up"; }
    sleep 0.1
done

# run_bench MODE OUTFILE [--socket S]: the workers run together and stay
# connected after the run until we have looked at the servers (and the
# daemon).
run_bench() {
    local mode=$1 out=$2 waited=0
    shift 2
    rm -f "$WORK/hold"
    mkfifo "$WORK/hold"
    timeout "$BOUND" "$WORKER" bench --mode "$mode" --procs "$PROCS" --ops "$OPS" \
        --nodes "$NODES" --hold "$@" <"$WORK/hold" >"$out" &
    BENCH_PID=$!
    exec 3>"$WORK/hold"
    until grep -q '^conns .* total ' "$out" 2>/dev/null; do
        if ! kill -0 "$BENCH_PID" 2>/dev/null; then
            cat "$out" >&2
            die "the $mode workload failed"
        fi
        sleep 0.1
        waited=$((waited + 1))
        [ $waited -lt $((BOUND * 10)) ] || die "the $mode workload took too long"
    done
    if [ "$mode" = daemon ]; then
        say "vshmd stats, with the $PROCS workers still connected"
        "$VSHMD" stats --socket "$WORK/vshmd.sock" | sed -n '1,10p;/^per node (/,$p'
        echo "   (... one row per client: $PROCS in all)"
    fi
    echo release >&3
    exec 3>&-
    if ! wait "$BENCH_PID"; then
        BENCH_PID=""
        cat "$out" >&2
        die "the $mode workload reported errors"
    fi
    BENCH_PID=""
    rm -f "$WORK/hold"
}

field() { # field NAME LINE
    echo "$2" | tr ' ' '\n' | sed -n "s/^$1=//p"
}

say "$PROCS worker processes x $OPS commands through vshmd ($CPUS CPUs; clients wait: $VSHM_DEMO_WAIT)"
run_bench daemon "$WORK/daemon.out" --socket "$WORK/vshmd.sock"
d_sum=$(grep '^bench ' "$WORK/daemon.out")
d_conns=$(grep '^conns .* total ' "$WORK/daemon.out")

say "stopping vshmd (SIGTERM: drain, exit 0)"
kill -TERM "$DAEMON_PID"
rc=0
wait "$DAEMON_PID" || rc=$?
DAEMON_PID=""
[ $rc -eq 0 ] || die "vshmd exited $rc"

say "the same $PROCS workers, each connected directly (redis crate cluster client)"
run_bench direct "$WORK/direct.out"
x_sum=$(grep '^bench ' "$WORK/direct.out")
x_conns=$(grep '^conns .* total ' "$WORK/direct.out")

echo
printf '%-36s %10s %9s %30s\n' "" "commands" "ops/s" "connections the servers hold"
printf '%-36s %10s %9s %30s\n' "$PROCS processes through vshmd" "$(field ops "$d_sum")" \
    "$(field ops_per_sec "$d_sum")" "$(field during "$d_conns")"
printf '%-36s %10s %9s %30s\n' "$PROCS processes connected directly" "$(field ops "$x_sum")" \
    "$(field ops_per_sec "$x_sum")" "$(field during "$x_conns")"
d_ops=$(field ops_per_sec "$d_sum")
x_ops=$(field ops_per_sec "$x_sum")
if [ -n "$d_ops" ] && [ -n "$x_ops" ]; then
    awk -v d="$d_ops" -v x="$x_ops" 'BEGIN { if (x > 0) printf "through vshmd / direct ops/s = %.2fx\n", d / x }'
fi
echo
echo "errors: vshmd $(field errors "$d_sum"), direct $(field errors "$x_sum");" \
    "wrong replies: vshmd $(field mismatches "$d_sum"), direct $(field mismatches "$x_sum")"
echo "connections per node while the workers were connected (CLIENT LIST, replication links excluded):"
paste -d' ' \
    <(grep '^conns .* node=' "$WORK/daemon.out" | sed 's/.*node=\([^ ]*\).*during=\([0-9]*\)/  \1  vshmd: \2/') \
    <(grep '^conns .* node=' "$WORK/direct.out" | sed 's/.*during=\([0-9]*\)/  direct: \1/')
