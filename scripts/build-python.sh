#!/usr/bin/env bash
# Build the Python client (client-python: the native module vshm._native
# plus the pure-Python layer) and install it into the venv target/pyenv.
# Prints the venv's python path on the last line.
#
#   scripts/build-python.sh            release build (maturin develop --release)
#   VSHM_PY_PROFILE=debug scripts/build-python.sh    debug build (faster to compile)
#   PYTHON=python3.11 scripts/build-python.sh         interpreter for the venv
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
venv="$root/target/pyenv"
py="${PYTHON:-python3}"
if [ ! -x "$venv/bin/python" ]; then
    "$py" -m venv "$venv" >&2
fi
vpy="$venv/bin/python"
if ! "$venv/bin/maturin" --version >/dev/null 2>&1; then
    "$vpy" -m pip install --quiet --upgrade pip >&2
    "$vpy" -m pip install --quiet "maturin>=1.5,<2" >&2
fi
profile_flag=(--release)
if [ "${VSHM_PY_PROFILE:-release}" = debug ]; then
    profile_flag=()
fi
# The workspace target dir (shared with the other crates' builds).
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$root/target}"
(
    cd "$root/client-python"
    VIRTUAL_ENV="$venv" PATH="$venv/bin:$PATH" \
        "$venv/bin/maturin" develop --quiet "${profile_flag[@]}" >&2
)
"$vpy" -c "import vshm._native as n; assert n.NativeClient" >&2
echo "$vpy"
