#!/usr/bin/env bash
# Installs what the vshm tests, C client tests and benchmarks need from Debian:
# redis-server, redis-cli, libhiredis-dev, pkg-config, valgrind.
# Idempotent: silent and quick when everything is already there.
# Never leaves the Debian redis service running (the tests start their own servers).
set -euo pipefail

need=()
command -v redis-server >/dev/null 2>&1 || need+=(redis-server)
command -v redis-cli >/dev/null 2>&1 || need+=(redis-tools)
command -v pkg-config >/dev/null 2>&1 || need+=(pkg-config)
command -v valgrind >/dev/null 2>&1 || need+=(valgrind)
command -v openssl >/dev/null 2>&1 || need+=(openssl)
if ! pkg-config --exists hiredis 2>/dev/null && [ ! -e /usr/include/hiredis/hiredis.h ]; then
    need+=(libhiredis-dev)
fi

if [ ${#need[@]} -eq 0 ]; then
    exit 0
fi

SUDO=()
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then
        SUDO=(sudo -n)
    else
        echo "install-redis.sh: missing ${need[*]} and not root (no sudo); install them by hand" >&2
        exit 1
    fi
fi

echo "install-redis.sh: installing ${need[*]}" >&2

# Keep the package's post-install from starting the system redis service:
# policy-rc.d exit 101 forbids service starts while we install (only if none exists).
policy=/usr/sbin/policy-rc.d
made_policy=0
if [ ! -e "$policy" ]; then
    if printf '#!/bin/sh\nexit 101\n' | "${SUDO[@]}" tee "$policy" >/dev/null 2>&1 \
        && "${SUDO[@]}" chmod 755 "$policy"; then
        made_policy=1
    fi
fi
cleanup() {
    if [ "$made_policy" = 1 ]; then "${SUDO[@]}" rm -f "$policy" || true; fi
}
trap cleanup EXIT

export DEBIAN_FRONTEND=noninteractive
log=$(mktemp)
if ! { "${SUDO[@]}" apt-get update -qq && "${SUDO[@]}" apt-get install -y -qq --no-install-recommends \
    redis-server redis-tools libhiredis-dev pkg-config valgrind openssl; } >"$log" 2>&1; then
    cat "$log" >&2
    rm -f "$log"
    echo "install-redis.sh: apt-get failed" >&2
    exit 1
fi
rm -f "$log"

# In case the service got started anyway (e.g. a policy-rc.d already existed and allowed it).
"${SUDO[@]}" service redis-server stop >/dev/null 2>&1 || true
if command -v systemctl >/dev/null 2>&1; then
    "${SUDO[@]}" systemctl disable --now redis-server >/dev/null 2>&1 || true
fi

for bin in redis-server redis-cli; do
    command -v "$bin" >/dev/null 2>&1 || { echo "install-redis.sh: $bin still missing after install" >&2; exit 1; }
done
echo "install-redis.sh: installed $(redis-server --version | cut -d' ' -f3)" >&2
