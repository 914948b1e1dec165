/*
 * What the vshm C API tests share (test_api.c, test_features.c,
 * test_requests.c): the shared client, command helpers, and an
 * asynchronous callback that records what it was given.
 */
#ifndef VSHM_TEST_API_H
#define VSHM_TEST_API_H

#define _GNU_SOURCE
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdint.h>
#include <sys/epoll.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"

static vshm_client *C; /* the shared client */

static double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

/* Run a command given as a format; return the reply (NULL on error). */
static vshm_reply *cmd(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vshm_reply *r = NULL;
    vshm_status st = vshm_commandv(C, &r, fmt, ap);
    va_end(ap);
    if (st != VSHM_OK) fprintf(stderr, "   (command \"%s\": %s: %s)\n", fmt, vshm_errstr(st), vshm_last_error_message());
    return r;
}

static int64_t reply_int(vshm_reply *r) {
    int64_t v = INT64_MIN;
    if (r) vshm_value_integer(vshm_reply_value(r), &v);
    return v;
}

static int value_is(const vshm_value *v, const char *s) {
    const char *p;
    size_t len;
    if (vshm_value_string(v, &p, &len) != VSHM_OK) return 0;
    return len == strlen(s) && memcmp(p, s, len) == 0;
}

/* ---- asynchronous callbacks ---- */

typedef struct {
    int calls;
    int ok;
    int errors;
    int64_t sum;
    vshm_status last_status;
    char last_error[128];
    vshm_client *client;
    uint64_t last_id;
} cb_state;

static void on_reply(vshm_client *c, uint64_t id, vshm_status st, vshm_reply *r, void *ud) {
    cb_state *s = ud;
    s->calls++;
    s->last_id = id;
    s->last_status = st;
    s->client = c;
    if (st == VSHM_OK) {
        s->ok++;
        int64_t v = 0;
        if (vshm_value_integer(vshm_reply_value(r), &v) == VSHM_OK) s->sum += v;
        if (vshm_reply_id(r) != id) s->errors++;
        vshm_reply_free(r);
    } else {
        if (r != NULL) s->errors++;
        snprintf(s->last_error, sizeof s->last_error, "%s", vshm_last_error_message());
    }
}

static void wait_all(vshm_client *c, cb_state *s, int want, int timeout_ms) {
    double deadline = now_ms() + timeout_ms;
    while (s->calls < want && now_ms() < deadline) {
        size_t n = 0;
        vshm_status st = vshm_wait(c, 200, &n);
        if (st != VSHM_OK && st != VSHM_ERR_TIMEOUT) break;
    }
}

#endif
