#!/usr/bin/env bash
# Compile and run every C snippet of docs/c-api.md (part of the C test
# stage: scripts/test-c.sh calls it with the installed library and the
# servers it started).
#
#   scripts/c-doc-snippets.sh WORKDIR      # needs PKG_CONFIG_PATH (vshm.pc),
#                                          # VSHM_TEST_STANDALONE; optional
#                                          # VSHM_TEST_CLUSTER, VSHM_TEST_SOCKET
#
# Convention: every ```c block of the page is a snippet. An HTML comment on
# the line just before the fence says what kind (default: a fragment):
#
#   (none)                        a fragment: statements (and `static`
#                                 function definitions, which are moved to
#                                 file scope) run in a main() that has an
#                                 open client `c` (the standalone server,
#                                 in-process core); helpers the prose
#                                 assumes (die, use, print, handle,
#                                 handle_other, keep_for_later, on_reply;
#                                 placeholder data blob, name, png, ...)
#                                 come from the prelude below. Compiled
#                                 with -Werror and ASan/UBSan/LeakSanitizer
#                                 and run: it must exit 0, without leaks.
#   <!-- snippet: main -->        a whole program (compiled as is, run).
#   <!-- snippet: decl -->        declarations: compiled after
#                                 #include <vshm.h> (so they must match the
#                                 header), not run.
#   <!-- snippet: listing -->     a struct listing: compiled on its own
#                                 (C99 types only), not run.
#   ... expect: TEXT -->          (after the kind, or alone) the program's
#                                 output must contain TEXT.
#
# Addresses in the snippets are the documentation's; they are replaced by
# the test servers': 127.0.0.1:6379 -> VSHM_TEST_STANDALONE (also in
# host/port form, "10.0.0.3" and 7002), 10.0.0.1:7000,10.0.0.2:7000 -> the
# first two VSHM_TEST_CLUSTER nodes, /run/vshm/vshmd.sock ->
# VSHM_TEST_SOCKET. A snippet that needs a cluster or the daemon when there
# is none is skipped (and reported).
#
# Prints one line per snippet and "N passed, N failed, N skipped".
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
DOC=${VSHM_DOC:-$ROOT/docs/c-api.md}
WORK=${1:?usage: c-doc-snippets.sh WORKDIR}
mkdir -p "$WORK"
CC=${CC:-cc}
: "${VSHM_TEST_STANDALONE:?VSHM_TEST_STANDALONE is not set}"
CLUSTER=${VSHM_TEST_CLUSTER:-}
SOCKET=${VSHM_TEST_SOCKET:-}
SA_HOST=${VSHM_TEST_STANDALONE%:*}
SA_PORT=${VSHM_TEST_STANDALONE##*:}
CLUSTER2=$(echo "$CLUSTER" | cut -d, -f1-2)

# shellcheck disable=SC2207
PKG=($(pkg-config --cflags --libs vshm))
# shellcheck disable=SC2207
PKG_CFLAGS=($(pkg-config --cflags vshm))
LIBDIR=$(pkg-config --variable=libdir vshm)
CFLAGS=(-std=c11 -Wall -Wextra -Werror -Wno-unused-function -Wno-unused-variable -Wno-unused-parameter
    -Wno-unused-but-set-variable -g -O1 -pthread -fsanitize=address,undefined -fno-omit-frame-pointer
    -fno-sanitize-recover=undefined)
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=0:exitcode=23
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1

cat >"$WORK/prelude.h" <<'EOF'
/* Prelude of the docs/c-api.md fragments (scripts/c-doc-snippets.sh):
 * the helpers and placeholder data the prose assumes. */
#define _GNU_SOURCE
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>

#include <vshm.h>

static void die(const char *msg) {
    fprintf(stderr, "die: %s\n", msg);
    exit(1);
}
static void print(const vshm_value *v) {
    const char *p;
    size_t len;
    int64_t i;
    if (vshm_value_string(v, &p, &len) == VSHM_OK) printf("%.*s\n", (int)len, p);
    else if (vshm_value_integer(v, &i) == VSHM_OK) printf("(integer) %lld\n", (long long)i);
    else printf("(%s)\n", vshm_type_name(vshm_value_type(v)));
}
static void use(const vshm_value *v) { print(v); }
static void handle(const vshm_value *v) { print(v); }
static void handle_other(struct epoll_event e) { (void)e; }
/* Replies the snippet keeps: freed when main() ends. */
static vshm_reply *kept[64];
static int nkept;
static void keep_for_later(vshm_reply *r) { if (nkept < 64) kept[nkept++] = r; }
/* A callback for asynchronous requests: prints and frees the reply. */
static void on_reply(vshm_client *c, uint64_t id, vshm_status st, vshm_reply *r, void *ud) {
    (void)c; (void)ud;
    if (st == VSHM_OK) { print(vshm_reply_value(r)); vshm_reply_free(r); }
    else fprintf(stderr, "request %llu: %s\n", (unsigned long long)id, vshm_last_error_message());
}
/* Placeholder data. */
static const char blob[] = "binary\0data";
static const size_t blob_len = sizeof blob - 1;
static const unsigned char png[] = {0x89, 'P', 'N', 'G', 0, 1, 2};
static const size_t png_len = sizeof png;
static const char *name = "Ada";
static int id = 42;
static int n = 10;
static void *ctx = NULL;
static vshm_client *snippet_open(void) {
    vshm_client *c = NULL;
    if (vshm_open_embedded_uri(getenv("VSHM_SNIPPET_URI"), &c) != VSHM_OK) die(vshm_last_error_message());
    return c;
}
EOF

# Split the page into snippets: $WORK/sNNN.{c,kind,expect,line}.
awk -v dir="$WORK" '
    function flush() {
        close(file)
        printf "%s\n", kind > (dir "/" base ".kind"); close(dir "/" base ".kind")
        printf "%s\n", expect > (dir "/" base ".expect"); close(dir "/" base ".expect")
        printf "%d\n", start > (dir "/" base ".line"); close(dir "/" base ".line")
    }
    /^```c[ \t]*$/ {
        n++; base = sprintf("s%03d", n); file = dir "/" base ".c"; start = NR
        kind = "fragment"; expect = ""
        if (prev ~ /^<!-- snippet:/) {
            m = prev; sub(/^<!-- snippet:[ \t]*/, "", m); sub(/[ \t]*-->[ \t]*$/, "", m)
            if (match(m, /expect:[ \t]*/)) { expect = substr(m, RSTART + RLENGTH); m = substr(m, 1, RSTART - 1) }
            gsub(/[ \t;,]+$/, "", m)
            if (m != "") kind = m
        }
        printf "" > file; inside = 1; prev = $0; next
    }
    inside && /^```[ \t]*$/ { inside = 0; flush(); prev = $0; next }
    inside { print >> file }
    { prev = $0 }
' "$DOC"

subst() { # subst FILE: the test servers instead of the documentation's addresses
    sed -i -e "s|127\.0\.0\.1:6379|$VSHM_TEST_STANDALONE|g" \
        -e "s|\"10\.0\.0\.3\"|\"$SA_HOST\"|g" -e "s|= 7002;|= $SA_PORT;|g" \
        -e "s|10\.0\.0\.1:7000,10\.0\.0\.2:7000|$CLUSTER2|g" \
        -e "s|/run/vshm/vshmd\.sock|$SOCKET|g" "$1"
}

PASSED=0 FAILED=0 SKIPPED=0
export VSHM_SNIPPET_URI="valkey://$VSHM_TEST_STANDALONE?timeout_ms=5000"
for src in "$WORK"/s[0-9][0-9][0-9].c; do
    base=${src%.c}
    kind=$(cat "$base.kind") expect=$(cat "$base.expect") line=$(cat "$base.line")
    label="docs/c-api.md:$line ($kind)"
    if grep -q '10\.0\.0\.[12]:7000' "$src" && [ -z "$CLUSTER" ]; then
        echo "skip $label: needs a cluster (VSHM_TEST_CLUSTER)"; SKIPPED=$((SKIPPED + 1)); continue
    fi
    if grep -q '/run/vshm/vshmd\.sock' "$src" && [ -z "$SOCKET" ]; then
        echo "skip $label: needs the daemon (VSHM_TEST_SOCKET)"; SKIPPED=$((SKIPPED + 1)); continue
    fi
    prog=$base.prog
    case $kind in
    decl)
        { echo '#include <vshm.h>'; echo "#line 1 \"$label\""; cat "$src"; } >"$base.full.c"
        run=0 ;;
    listing)
        { echo '#include <stddef.h>'; echo '#include <stdint.h>'; echo "#line 1 \"$label\""; cat "$src"; } >"$base.full.c"
        run=0 ;;
    main)
        subst "$src"
        { echo "#line 1 \"$label\""; cat "$src"; } >"$base.full.c"
        run=1 ;;
    fragment)
        subst "$src"
        {
            echo '#include "prelude.h"'
            # `static` function definitions (from a column-0 `static` line to
            # the next column-0 `}`) go to file scope, the rest into main.
            echo "#line 1 \"$label\""
            awk '/^static /{d=1} d{print; if ($0 ~ /^}/) d=0; next} {print ""}' "$src"
            echo 'int main(void) {'
            echo '    vshm_client *c = snippet_open();'
            echo '    {'
            echo "#line 1 \"$label\""
            awk '/^static /{d=1} d{print ""; if ($0 ~ /^}/) d=0; next} {print}' "$src"
            echo '    }'
            echo '    for (int i = 0; i < nkept; i++) vshm_reply_free(kept[i]);'
            echo '    if (vshm_free(c) != VSHM_OK) return 1;'
            echo '    return 0;'
            echo '}'
        } >"$base.full.c"
        run=1 ;;
    *)
        echo "FAIL $label: unknown snippet kind \"$kind\""; FAILED=$((FAILED + 1)); continue ;;
    esac
    if [ $run = 0 ]; then
        if "$CC" "${CFLAGS[@]}" -fsyntax-only -I"$WORK" "$base.full.c" "${PKG_CFLAGS[@]+"${PKG_CFLAGS[@]}"}" >"$base.out" 2>&1; then
            echo "ok   $label: compiles"; PASSED=$((PASSED + 1))
        else
            echo "FAIL $label: does not compile:"; sed 's/^/    /' "$base.out"; FAILED=$((FAILED + 1))
        fi
        continue
    fi
    if ! "$CC" "${CFLAGS[@]}" -I"$WORK" "$base.full.c" -o "$prog" "${PKG[@]}" -Wl,-rpath,"$LIBDIR" >"$base.out" 2>&1; then
        echo "FAIL $label: does not compile:"; sed 's/^/    /' "$base.out"; FAILED=$((FAILED + 1))
        continue
    fi
    rc=0
    timeout 60 "$prog" >"$base.out" 2>&1 || rc=$?
    if [ $rc -ne 0 ]; then
        echo "FAIL $label: exit $rc:"; sed 's/^/    /' "$base.out"; FAILED=$((FAILED + 1))
    elif [ -n "$expect" ] && ! grep -qF -- "$expect" "$base.out"; then
        echo "FAIL $label: the output lacks \"$expect\":"; sed 's/^/    /' "$base.out"; FAILED=$((FAILED + 1))
    else
        echo "ok   $label: runs${expect:+ (output has \"$expect\")}"; PASSED=$((PASSED + 1))
    fi
done
echo "$PASSED passed, $FAILED failed, $SKIPPED skipped"
[ "$FAILED" -eq 0 ]
