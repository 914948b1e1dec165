#!/usr/bin/env bash
# Install the vshm C library (after `cargo build [--release] -p vshm`):
#
#   scripts/install-c.sh PREFIX [--debug] [--target-dir DIR] [--libdir DIR] [--static-only]
#
# installs
#   PREFIX/include/vshm.h
#   LIBDIR/libvshm.so.VERSION, libvshm.so.0 and libvshm.so (symlinks)
#   LIBDIR/libvshm.a
#   LIBDIR/pkgconfig/vshm.pc
# LIBDIR defaults to PREFIX/lib. Builds from target/release unless --debug.
# --static-only: no shared library (then -lvshm, and so
# `pkg-config --static --libs vshm`, links libvshm.a).
# Then: cc app.c $(PKG_CONFIG_PATH=LIBDIR/pkgconfig pkg-config --cflags --libs vshm)
# (add -Wl,-rpath,LIBDIR, or set LD_LIBRARY_PATH, when LIBDIR is not a
# system library directory).
#
# The shared library is linked here from libvshm.a with the version script
# client-c/vshm.map (exactly the vshm_* functions, at version VSHM_0), not
# copied from cargo's cdylib: rustc links a cdylib with its own anonymous
# version script, which GNU ld refuses to combine with a named one and
# lld lets take precedence over it. Then it is stripped (strip
# --strip-unneeded); libvshm.a is installed as built. CC (default cc)
# links it.
set -euo pipefail

usage() { echo "usage: $0 PREFIX [--debug] [--target-dir DIR] [--libdir DIR] [--static-only]" >&2; exit 2; }

[ $# -ge 1 ] || usage
PREFIX=$1; shift
PROFILE=release
ROOT=$(cd "$(dirname "$0")/.." && pwd)
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
LIBDIR=
STATIC_ONLY=
while [ $# -gt 0 ]; do
    case $1 in
        --debug) PROFILE=debug ;;
        --target-dir) TARGET_DIR=$2; shift ;;
        --libdir) LIBDIR=$2; shift ;;
        --static-only) STATIC_ONLY=1 ;;
        *) usage ;;
    esac
    shift
done
case $PREFIX in /*) ;; *) PREFIX=$(pwd)/$PREFIX ;; esac
LIBDIR=${LIBDIR:-$PREFIX/lib}

BUILD=$TARGET_DIR/$PROFILE
[ -f "$BUILD/libvshm.a" ] || { echo "install-c.sh: $BUILD/libvshm.a not found; run: cargo build $([ $PROFILE = release ] && echo --release) -p vshm" >&2; exit 1; }

VERSION=$(sed -n 's/^version = "\(.*\)"/\1/p' "$ROOT/Cargo.toml" | head -n 1)
[ -n "$VERSION" ] || { echo "install-c.sh: cannot read the version from Cargo.toml" >&2; exit 1; }

# The system libraries libvshm.a needs (rustc --print native-static-libs),
# kept in one place: vshm.pc's Libs.private.
NATIVE_LIBS=$(sed -n 's/^Libs.private: *//p' "$ROOT/client-c/vshm.pc.in")
[ -n "$NATIVE_LIBS" ] || { echo "install-c.sh: no Libs.private in client-c/vshm.pc.in" >&2; exit 1; }

install -d "$PREFIX/include" "$LIBDIR/pkgconfig"
install -m 0644 "$ROOT/client-c/include/vshm.h" "$PREFIX/include/vshm.h"
install -m 0644 "$BUILD/libvshm.a" "$LIBDIR/libvshm.a"
if [ -z "$STATIC_ONLY" ]; then
    TMP_SO=$(mktemp "${TMPDIR:-/tmp}/libvshm.so.XXXXXX")
    trap 'rm -f "$TMP_SO"' EXIT
    # The flags rustc uses for a cdylib, plus the version script; the
    # whole archive, of which --gc-sections keeps what the exports reach.
    # shellcheck disable=SC2086
    "${CC:-cc}" -shared -o "$TMP_SO" \
        -Wl,--whole-archive "$BUILD/libvshm.a" -Wl,--no-whole-archive \
        -Wl,--version-script="$ROOT/client-c/vshm.map" -Wl,-soname,libvshm.so.0 \
        -Wl,--eh-frame-hdr -Wl,-z,noexecstack -Wl,-z,relro,-z,now -Wl,--gc-sections -Wl,--as-needed \
        $NATIVE_LIBS
    before=$(stat -c %s "$TMP_SO")
    strip --strip-unneeded "$TMP_SO"
    echo "install-c.sh: libvshm.so: $before bytes linked, $(stat -c %s "$TMP_SO") stripped" >&2
    install -m 0755 "$TMP_SO" "$LIBDIR/libvshm.so.$VERSION"
    ln -sfn "libvshm.so.$VERSION" "$LIBDIR/libvshm.so.0"
    ln -sfn "libvshm.so.0" "$LIBDIR/libvshm.so"
fi
sed -e "s|@PREFIX@|$PREFIX|g" -e "s|@LIBDIR@|$LIBDIR|g" -e "s|@VERSION@|$VERSION|g" \
    "$ROOT/client-c/vshm.pc.in" >"$LIBDIR/pkgconfig/vshm.pc"
echo "install-c.sh: installed vshm $VERSION ($PROFILE$([ -n "$STATIC_ONLY" ] && echo ", static only")) into $PREFIX (libraries in $LIBDIR)" >&2
