#!/usr/bin/env bash
# Install the vshm C library (after `cargo build [--release] -p vshm`):
#
#   scripts/install-c.sh PREFIX [--debug] [--target-dir DIR] [--libdir DIR]
#
# installs
#   PREFIX/include/vshm.h
#   LIBDIR/libvshm.so.VERSION, libvshm.so.0 and libvshm.so (symlinks)
#   LIBDIR/libvshm.a
#   LIBDIR/pkgconfig/vshm.pc
# LIBDIR defaults to PREFIX/lib. Builds from target/release unless --debug.
# Then: cc app.c $(PKG_CONFIG_PATH=LIBDIR/pkgconfig pkg-config --cflags --libs vshm)
# (add -Wl,-rpath,LIBDIR, or set LD_LIBRARY_PATH, when LIBDIR is not a
# system library directory; `pkg-config --static --libs vshm` for libvshm.a).
set -euo pipefail

usage() { echo "usage: $0 PREFIX [--debug] [--target-dir DIR] [--libdir DIR]" >&2; exit 2; }

[ $# -ge 1 ] || usage
PREFIX=$1; shift
PROFILE=release
ROOT=$(cd "$(dirname "$0")/.." && pwd)
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
LIBDIR=
while [ $# -gt 0 ]; do
    case $1 in
        --debug) PROFILE=debug ;;
        --target-dir) TARGET_DIR=$2; shift ;;
        --libdir) LIBDIR=$2; shift ;;
        *) usage ;;
    esac
    shift
done
case $PREFIX in /*) ;; *) PREFIX=$(pwd)/$PREFIX ;; esac
LIBDIR=${LIBDIR:-$PREFIX/lib}

BUILD=$TARGET_DIR/$PROFILE
for f in libvshm.so libvshm.a; do
    [ -f "$BUILD/$f" ] || { echo "install-c.sh: $BUILD/$f not found; run: cargo build $([ $PROFILE = release ] && echo --release) -p vshm" >&2; exit 1; }
done

VERSION=$(sed -n 's/^version = "\(.*\)"/\1/p' "$ROOT/Cargo.toml" | head -n 1)
[ -n "$VERSION" ] || { echo "install-c.sh: cannot read the version from Cargo.toml" >&2; exit 1; }
URL=$(sed -n 's/^repository = "\(.*\)"/\1/p' "$ROOT/Cargo.toml" | head -n 1)

install -d "$PREFIX/include" "$LIBDIR/pkgconfig"
install -m 0644 "$ROOT/client-c/include/vshm.h" "$PREFIX/include/vshm.h"
install -m 0755 "$BUILD/libvshm.so" "$LIBDIR/libvshm.so.$VERSION"
ln -sfn "libvshm.so.$VERSION" "$LIBDIR/libvshm.so.0"
ln -sfn "libvshm.so.0" "$LIBDIR/libvshm.so"
install -m 0644 "$BUILD/libvshm.a" "$LIBDIR/libvshm.a"
sed -e "s|@PREFIX@|$PREFIX|g" -e "s|@LIBDIR@|$LIBDIR|g" -e "s|@VERSION@|$VERSION|g" -e "s|@URL@|$URL|g" \
    "$ROOT/client-c/vshm.pc.in" >"$LIBDIR/pkgconfig/vshm.pc"
echo "install-c.sh: installed vshm $VERSION ($PROFILE) into $PREFIX (libraries in $LIBDIR)" >&2
