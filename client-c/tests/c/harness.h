/*
 * A tiny test harness for the vshm C tests: test cases are functions;
 * CHECK records failures; the summary line is "N passed, N failed".
 *
 * Environment:
 *   VSHM_TEST_STANDALONE  host:port of a standalone server (required)
 *   VSHM_TEST_CLUSTER     comma-separated cluster nodes (optional)
 *   VSHM_TEST_MODE        "embedded" (default) or "daemon"
 *   VSHM_TEST_SOCKET      the daemon's socket (daemon mode)
 *   VSHM_TEST_SCALE       divides iteration counts (valgrind runs)
 *   VSHM_TEST_TIMEOUT_MS  request timeout and bound of the tests' own waits
 *                         (default 5000; raised for valgrind runs)
 *   VSHM_TEST_DAEMON_RESTART  a shell command that restarts the daemon
 *                         (test_daemon_restart; set by scripts/test-c.sh)
 */
#ifndef VSHM_TEST_HARNESS_H
#define VSHM_TEST_HARNESS_H

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <vshm.h>

static int h_passed, h_failed, h_skipped, h_case_failed;
static const char *h_case;

#define CHECK(cond)                                                                              \
    do {                                                                                         \
        if (!(cond)) {                                                                           \
            h_case_failed = 1;                                                                   \
            fprintf(stderr, "FAIL %s:%d [%s]: %s (last error: %s)\n", __FILE__, __LINE__, h_case, \
                    #cond, vshm_last_error_message());                                           \
        }                                                                                        \
    } while (0)

#define CHECK_ST(expr, want)                                                                     \
    do {                                                                                         \
        vshm_status h_st_ = (expr);                                                              \
        if (h_st_ != (want)) {                                                                   \
            h_case_failed = 1;                                                                   \
            fprintf(stderr, "FAIL %s:%d [%s]: %s = %d (%s), want %d; last error: %s\n", __FILE__, \
                    __LINE__, h_case, #expr, h_st_, vshm_errstr(h_st_), (int)(want),             \
                    vshm_last_error_message());                                                  \
        }                                                                                        \
    } while (0)

#define CHECK_OK(expr) CHECK_ST(expr, VSHM_OK)

/* Abort the current case (after a failure that makes the rest moot). */
#define REQUIRE(cond)        \
    do {                     \
        if (!(cond)) {       \
            CHECK(cond);     \
            return;          \
        }                    \
    } while (0)

#define RUN(fn)                                                   \
    do {                                                          \
        h_case = #fn;                                             \
        h_case_failed = 0;                                        \
        h_skip_reason = NULL;                                     \
        fprintf(stderr, "-- %s\n", #fn);                          \
        fn();                                                     \
        if (h_skip_reason) {                                      \
            h_skipped++;                                          \
            fprintf(stderr, "   skipped: %s\n", h_skip_reason);   \
        } else if (h_case_failed) {                               \
            h_failed++;                                           \
        } else {                                                  \
            h_passed++;                                           \
        }                                                         \
    } while (0)

static const char *h_skip_reason;
#define SKIP(why)              \
    do {                       \
        h_skip_reason = (why); \
        return;                \
    } while (0)

static int h_summary(void) {
    if (h_skipped)
        printf("%d passed, %d failed, %d skipped\n", h_passed, h_failed, h_skipped);
    else
        printf("%d passed, %d failed\n", h_passed, h_failed);
    fflush(stdout);
    return h_failed ? 1 : 0;
}

static const char *env_or(const char *name, const char *dflt) {
    const char *v = getenv(name);
    return v && *v ? v : dflt;
}

static inline int test_scale(void) {
    int s = atoi(env_or("VSHM_TEST_SCALE", "1"));
    return s > 0 ? s : 1;
}

/* Bound of the tests' own waits (ms); raised for valgrind runs. */
static inline int test_timeout_ms(void) {
    int t = atoi(env_or("VSHM_TEST_TIMEOUT_MS", "5000"));
    return t > 0 ? t : 5000;
}

static int is_daemon_mode(void) { return strcmp(env_or("VSHM_TEST_MODE", "embedded"), "daemon") == 0; }

/* The URI of the standalone server, with extra query parameters. */
static void standalone_uri(char *buf, size_t n, const char *query) {
    const char *addr = getenv("VSHM_TEST_STANDALONE");
    if (!addr || !*addr) {
        fprintf(stderr, "VSHM_TEST_STANDALONE is not set\n");
        exit(2);
    }
    snprintf(buf, n, "valkey://%s%s%s", addr, query && *query ? "?" : "", query ? query : "");
}

/* Open the client the tests use: the daemon or the in-process core. */
static vshm_client *open_main(void) {
    vshm_client *c = NULL;
    vshm_status st;
    if (is_daemon_mode()) {
        vshm_connect_options o;
        vshm_connect_options_init(&o);
        o.request_timeout_ms = (uint32_t)test_timeout_ms();
        st = vshm_connect(env_or("VSHM_TEST_SOCKET", "/nonexistent"), &o, &c);
    } else {
        char uri[512], q[64];
        snprintf(q, sizeof q, "timeout_ms=%d", test_timeout_ms());
        standalone_uri(uri, sizeof uri, q);
        st = vshm_open_embedded_uri(uri, &c);
    }
    if (st != VSHM_OK) {
        fprintf(stderr, "cannot open the test client: %s: %s\n", vshm_errstr(st), vshm_last_error_message());
        exit(2);
    }
    return c;
}

/* The string of a reply's root value as a NUL-terminated copy in buf. */
static const char *reply_str(vshm_reply *r, char *buf, size_t n) {
    const char *p;
    size_t len;
    if (!r || vshm_value_string(vshm_reply_value(r), &p, &len) != VSHM_OK) return NULL;
    if (len >= n) len = n - 1;
    memcpy(buf, p, len);
    buf[len] = 0;
    return buf;
}

#endif
