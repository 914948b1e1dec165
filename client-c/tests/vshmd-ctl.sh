#!/usr/bin/env bash
# Start, restart or stop the vshmd used by the C tests (scripts/test-c.sh).
#
#   vshmd-ctl.sh start|restart|stop DIR
#
# DIR holds vshmd.toml (written by the caller), and gets vshmd.pid and
# vshmd.log. The socket path is read from vshmd.toml. VSHMD names the
# binary (start/restart). Every wait is bounded.
set -euo pipefail

[ $# -eq 2 ] || { echo "usage: $0 start|restart|stop DIR" >&2; exit 2; }
cmd=$1
dir=$2
pidfile=$dir/vshmd.pid
sock=$(sed -n 's/^socket_path = "\(.*\)"$/\1/p' "$dir/vshmd.toml")
[ -n "$sock" ] || { echo "vshmd-ctl.sh: no socket_path in $dir/vshmd.toml" >&2; exit 1; }

stop() {
    [ -s "$pidfile" ] || return 0
    local pid
    pid=$(cat "$pidfile")
    if [ "$(cat "/proc/$pid/comm" 2>/dev/null || true)" = vshmd ]; then
        kill -TERM "$pid" 2>/dev/null || true
        for _ in $(seq 1 200); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.05
        done
        kill -KILL "$pid" 2>/dev/null || true
    fi
    rm -f "$pidfile"
}

start() {
    : "${VSHMD:?set VSHMD to the vshmd binary}"
    rm -f "$sock"
    "$VSHMD" --config "$dir/vshmd.toml" >>"$dir/vshmd.log" 2>&1 &
    local pid=$!
    echo "$pid" >"$pidfile"
    for _ in $(seq 1 200); do
        [ -S "$sock" ] && return 0
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.05
    done
    echo "vshmd-ctl.sh: vshmd did not come up; its log:" >&2
    tail -n 20 "$dir/vshmd.log" >&2 || true
    return 1
}

case $cmd in
    start) start ;;
    restart) stop; start ;;
    stop) stop ;;
    *) echo "usage: $0 start|restart|stop DIR" >&2; exit 2 ;;
esac
