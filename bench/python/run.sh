#!/usr/bin/env bash
# Python client benchmark (bench/python/bench.py): vshm in process and through vshmd against
# redis-py (pure-Python parser and hiredis) and valkey-glide (async and sync).
#
#   bench/python/run.sh [--quick] [bench.py options...]
#
# Builds the vshm module into target/pyenv (scripts/build-python.sh, release), installs
# redis[hiredis], valkey-glide and valkey-glide-sync there from PyPI, builds vshmd, starts a
# private redis-server and a vshmd serving it on loopback, runs the benchmark and stops both.
# Results: target/bench-python/results.json, results.md and results.svg (OUT=dir to change).
# Every wait is bounded; the servers are stopped on exit.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$ROOT"
OUT=${OUT:-$ROOT/target/bench-python}
mkdir -p "$OUT"
PROFILE=${VSHM_PY_PROFILE:-release}

PY=$(VSHM_PY_PROFILE=$PROFILE bash scripts/build-python.sh | tail -n 1)
"$PY" -m pip install --quiet "redis[hiredis]" valkey-glide valkey-glide-sync ||
    "$PY" -m pip install --quiet "redis[hiredis]" # glide is reported as skipped if missing
flag=
[ "$PROFILE" = release ] && flag=--release
cargo build $flag -p vshmd >&2
VSHMD=${CARGO_TARGET_DIR:-$ROOT/target}/$PROFILE/vshmd

WORK=$(mktemp -d /tmp/vshm-pybench-XXXXXX)
REDIS_PID=
VSHMD_PID=
cleanup() {
    [ -n "$VSHMD_PID" ] && kill "$VSHMD_PID" 2>/dev/null || true
    [ -n "$REDIS_PID" ] && kill "$REDIS_PID" 2>/dev/null || true
    wait 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT

free_port() { "$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

PORT=$(free_port)
redis-server --port "$PORT" --bind 127.0.0.1 --save '' --appendonly no --dir "$WORK" \
    --maxclients 10000 >"$WORK/redis.log" 2>&1 &
REDIS_PID=$!
for _ in $(seq 1 200); do
    redis-cli -p "$PORT" ping >/dev/null 2>&1 && break
    sleep 0.05
done
redis-cli -p "$PORT" ping >/dev/null

SOCK=$WORK/vshmd.sock
cat >"$WORK/vshmd.toml" <<EOF
socket_path = "$SOCK"
log_level = "warn"
[server]
addresses = ["127.0.0.1:$PORT"]
EOF
"$VSHMD" --config "$WORK/vshmd.toml" >"$WORK/vshmd.log" 2>&1 &
VSHMD_PID=$!
for _ in $(seq 1 200); do
    [ -S "$SOCK" ] && break
    sleep 0.05
done
[ -S "$SOCK" ] || { cat "$WORK/vshmd.log" >&2; exit 1; }
sleep 0.2 # listening, not only bound

"$PY" bench/python/bench.py --redis "127.0.0.1:$PORT" --vshmd "$SOCK" \
    --json "$OUT/results.json" --md "$OUT/results.md" "$@"
"$PY" bench/python/plot.py "$OUT/results.json" "$OUT/results.svg"
echo "wrote $OUT/results.json, results.md, results.svg" >&2
