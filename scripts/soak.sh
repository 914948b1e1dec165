#!/usr/bin/env bash
# Soak + chaos run through vshmd (issue 8, "no lost request"): client processes submit mixed
# commands while faults are injected (client processes SIGKILLed / SIGSTOPped, a primary
# SIGKILLed and failed over, CLIENT KILL on one node or on all, CLIENT PAUSE, slot migrations,
# vshmd SIGKILLed and restarted). Fails on any lost request, submission/completion mismatch,
# acknowledged write not read back, availability bound missed after a fault (issue 12: every
# live worker must succeed again within the fault kind's bound), or driver failure.
#
#   scripts/soak.sh [SECONDS]        # default 60; the test command runs it (stage soak)
#
# Environment: VSHM_SOAK_SEED (replay a run), VSHM_SOAK_WORKERS (default 6),
# VSHM_SOAK_STRICT=1 (fail on any missed recovery bound; without it only a wedge, a recovery
# more than 10 s past its bound or none, fails the run and misses are reported),
# VSHM_SOAK_MIN_EACH (every fault kind at least N times; the run goes on past SECONDS until
# it has: the 30-minute run uses 20), VSHM_SOAK_ARGS (more vshm-soak run options, e.g.
# "--rate 500").
# Figures: target/soak/soak-<SECONDS>s.json; see docs/reliability.md.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
SECONDS_ARG=${1:-60}
case $SECONDS_ARG in
    '' | *[!0-9]*) echo "soak.sh: SECONDS must be a number" >&2; exit 2 ;;
esac

bash scripts/install-redis.sh
# --workspace: the same build (feature resolution) as the other stages of scripts/test.sh.
cargo build --release --workspace

args=(run --seconds "$SECONDS_ARG" --workers "${VSHM_SOAK_WORKERS:-6}"
    --json "target/soak/soak-${SECONDS_ARG}s.json")
if [ -n "${VSHM_SOAK_SEED:-}" ]; then args+=(--seed "$VSHM_SOAK_SEED"); fi
# shellcheck disable=SC2206
if [ -n "${VSHM_SOAK_ARGS:-}" ]; then args+=($VSHM_SOAK_ARGS); fi

start=$(date +%s)
status=0
VSHMD_BIN="$ROOT/target/release/vshmd" target/release/vshm-soak "${args[@]}" || status=$?
echo "soak.sh: ${SECONDS_ARG} s soak took $(( $(date +%s) - start )) s (exit $status)"
exit "$status"
