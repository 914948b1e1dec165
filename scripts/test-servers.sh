#!/usr/bin/env bash
# Test servers for vshm: one standalone redis-server and a 6-node cluster
# (3 primaries + 3 replicas) on free loopback ports.
#
#   scripts/test-servers.sh start DIR   # start everything in DIR, write DIR/env
#   scripts/test-servers.sh stop DIR    # kill by the pid files in DIR, remove DIR
#
# DIR/env (source it, or read it) holds:
#   VSHM_TEST_STANDALONE=127.0.0.1:PORT
#   VSHM_TEST_CLUSTER=127.0.0.1:P1,...,127.0.0.1:P6
# The vshm-tests helpers (shared_standalone/shared_cluster) use these servers
# instead of starting their own when the variables are exported.
#
# Every wait is bounded (VSHM_TEST_SERVERS_TIMEOUT seconds, default 30).
set -euo pipefail

TIMEOUT=${VSHM_TEST_SERVERS_TIMEOUT:-30}
MARKER=.vshm-test-servers
NODES=6

die() { echo "test-servers.sh: $*" >&2; exit 1; }

usage() { echo "usage: $0 start DIR | stop DIR" >&2; exit 2; }

cli() { # cli PORT ARGS... (bounded)
    local port=$1; shift
    timeout 5 redis-cli -h 127.0.0.1 -p "$port" "$@" 2>/dev/null
}

port_in_use() { # true if something accepts on 127.0.0.1:$1
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

random_port() { # a port P such that P and P+10000 (cluster bus) look free
    local p i
    for i in $(seq 1 200); do
        p=$((20000 + RANDOM % 10000))
        if ! port_in_use "$p" && ! port_in_use $((p + 10000)); then
            echo "$p"; return 0
        fi
    done
    die "no free port pair found in 20000-29999"
}

# start_server NAME EXTRA_ARGS... : starts a daemonized redis-server in $DIR/NAME,
# retrying on another port if it cannot start; prints the port.
start_server() {
    local name=$1; shift
    local sdir="$DIR/$name" port attempt deadline pid
    mkdir -p "$sdir"
    for attempt in 1 2 3 4 5; do
        port=$(random_port)
        rm -f "$DIR/$name.pid" "$sdir/redis.log"
        redis-server --port "$port" --bind 127.0.0.1 --protected-mode no \
            --dir "$sdir" --daemonize yes --pidfile "$DIR/$name.pid" \
            --logfile "$sdir/redis.log" --save '' --appendonly no \
            --enable-debug-command yes "$@" >/dev/null 2>&1 || true
        deadline=$((SECONDS + TIMEOUT))
        while [ $SECONDS -lt $deadline ]; do
            if [ -s "$DIR/$name.pid" ]; then
                pid=$(cat "$DIR/$name.pid")
                if ! kill -0 "$pid" 2>/dev/null; then break; fi
                # make sure the server answering is ours
                if [ "$(cli "$port" info server | tr -d '\r' | sed -n 's/^process_id://p')" = "$pid" ]; then
                    echo "$port"; return 0
                fi
            elif grep -q "Address already in use\|Could not create server TCP\|Failed listening" "$sdir/redis.log" 2>/dev/null; then
                break
            fi
            sleep 0.05
        done
        # failed: make sure nothing is left, then retry elsewhere
        if [ -s "$DIR/$name.pid" ]; then kill -9 "$(cat "$DIR/$name.pid")" 2>/dev/null || true; fi
        rm -f "$DIR/$name.pid"
        echo "test-servers.sh: $name did not start on port $port (attempt $attempt), retrying" >&2
    done
    tail -n 20 "$sdir/redis.log" >&2 2>/dev/null || true
    die "could not start redis-server $name"
}

stop_all() { # kill every server with a pid file in $DIR: TERM, then KILL after a bound
    local f pid deadline
    local pids=()
    for f in "$DIR"/*.pid; do
        [ -e "$f" ] || continue
        pid=$(cat "$f" 2>/dev/null || true)
        [ -n "$pid" ] || continue
        # only kill it if it still is a redis-server (pid files can be stale)
        if [ "$(cat "/proc/$pid/comm" 2>/dev/null || true)" = redis-server ]; then
            kill -TERM "$pid" 2>/dev/null || true
            pids+=("$pid")
        fi
    done
    deadline=$((SECONDS + 10))
    for pid in "${pids[@]+"${pids[@]}"}"; do
        while kill -0 "$pid" 2>/dev/null && [ $SECONDS -lt $deadline ]; do sleep 0.05; done
        kill -KILL "$pid" 2>/dev/null || true
    done
}

cmd_start() {
    command -v redis-server >/dev/null 2>&1 || die "redis-server not found (run scripts/install-redis.sh)"
    if [ -e "$DIR" ] && [ -n "$(ls -A "$DIR" 2>/dev/null)" ] && [ ! -e "$DIR/$MARKER" ]; then
        die "$DIR exists, is not empty and was not made by this script"
    fi
    if [ -e "$DIR/$MARKER" ]; then stop_all; rm -rf "$DIR"; fi # left from an earlier start
    mkdir -p "$DIR"
    touch "$DIR/$MARKER"
    trap 'echo "test-servers.sh: start failed, stopping what was started" >&2; stop_all' ERR

    local t0=$SECONDS standalone i ports=() addrs=() p
    standalone=$(start_server standalone)

    for i in $(seq 1 $NODES); do
        p=$(start_server "node$i" --cluster-enabled yes --cluster-config-file nodes.conf \
            --cluster-node-timeout 2000 --cluster-replica-validity-factor 0 \
            --repl-diskless-sync-delay 0)
        ports+=("$p")
        addrs+=("127.0.0.1:$p")
    done

    if ! timeout $((TIMEOUT * 2)) redis-cli --cluster create "${addrs[@]}" \
        --cluster-replicas 1 --cluster-yes >"$DIR/cluster-create.log" 2>&1; then
        cat "$DIR/cluster-create.log" >&2
        stop_all
        die "redis-cli --cluster create failed"
    fi

    # Wait: every node cluster_state:ok, every replica linked to its primary.
    local deadline=$((SECONDS + TIMEOUT)) ready role view
    while :; do
        ready=1
        for p in "${ports[@]}"; do
            if ! cli "$p" cluster info | grep -q '^cluster_state:ok'; then ready=0; break; fi
            # every node sees the same healthy 6 nodes: 3 primaries with slots, 3 replicas
            view=$(cli "$p" cluster nodes || true)
            if [ "$(grep -c . <<<"$view")" -ne $NODES ] \
                || [ "$(grep -cE ' (myself,)?slave ' <<<"$view")" -ne 3 ] \
                || grep -qE 'fail|handshake|noaddr' <<<"$view"; then
                ready=0; break
            fi
            role=$(cli "$p" role | head -n 1)
            if [ "$role" = slave ] && ! cli "$p" info replication | grep -q '^master_link_status:up'; then
                ready=0; break
            fi
        done
        [ $ready = 1 ] && break
        if [ $SECONDS -ge $deadline ]; then
            for p in "${ports[@]}"; do
                echo "--- 127.0.0.1:$p" >&2
                cli "$p" cluster info | grep cluster_state >&2 || true
                cli "$p" info replication | grep -E '^(role|master_link_status)' >&2 || true
            done
            stop_all
            die "cluster not ready after ${TIMEOUT}s"
        fi
        sleep 0.1
    done
    trap - ERR

    local cluster
    cluster=$(IFS=,; echo "${addrs[*]}")
    {
        echo "VSHM_TEST_STANDALONE=127.0.0.1:$standalone"
        echo "VSHM_TEST_CLUSTER=$cluster"
    } >"$DIR/env"
    echo "test-servers.sh: standalone 127.0.0.1:$standalone, cluster $cluster (ready in $((SECONDS - t0))s)" >&2
}

cmd_stop() {
    [ -e "$DIR" ] || return 0
    [ -e "$DIR/$MARKER" ] || die "$DIR was not made by this script; not touching it"
    stop_all
    rm -rf "$DIR"
}

[ $# -eq 2 ] || usage
DIR=$2
case $1 in
    start) cmd_start ;;
    stop) cmd_stop ;;
    *) usage ;;
esac
