/*
 * Many threads, one client: 8 threads x 50,000 commands (VSHM_MT_THREADS,
 * VSHM_MT_COMMANDS override), every reply checked against its request.
 * Even requests are ECHO with a unique payload; odd ones INCR a per-thread
 * counter, whose replies must count up 1, 2, 3, ... in order.
 */
#define _GNU_SOURCE
#include <inttypes.h>
#include <pthread.h>
#include <stdint.h>
#include <time.h>

#include "harness.h"

static vshm_client *C;
static long n_commands;

typedef struct {
    int t;
    long mismatches;
    long errors;
    long done;
    char first_problem[256];
} worker;

static void problem(worker *w, const char *fmt, long i) {
    if (!w->first_problem[0])
        snprintf(w->first_problem, sizeof w->first_problem, "%s at %ld (%s)", fmt, i, vshm_last_error_message());
}

static void *run(void *arg) {
    worker *w = arg;
    char key[64], payload[64];
    snprintf(key, sizeof key, "mt:ctr:%d", w->t);
    const char *del[] = {"DEL", key};
    vshm_reply *r = NULL;
    if (vshm_command_argv(C, 2, del, NULL, &r) != VSHM_OK) w->errors++;
    vshm_reply_free(r);
    int64_t expect = 0;
    for (long i = 0; i < n_commands; i++) {
        r = NULL;
        if (i % 2 == 0) {
            int n = snprintf(payload, sizeof payload, "t%d:%ld", w->t, i);
            const char *argv[] = {"ECHO", payload};
            size_t argvlen[] = {4, (size_t)n};
            if (vshm_command_argv(C, 2, argv, argvlen, &r) != VSHM_OK) {
                w->errors++;
                problem(w, "ECHO failed", i);
                continue;
            }
            const char *p;
            size_t len;
            if (vshm_value_string(vshm_reply_value(r), &p, &len) != VSHM_OK || len != (size_t)n ||
                memcmp(p, payload, len) != 0) {
                w->mismatches++;
                problem(w, "ECHO mismatch", i);
            }
        } else {
            const char *argv[] = {"INCR", key};
            if (vshm_command_argv(C, 2, argv, NULL, &r) != VSHM_OK) {
                w->errors++;
                problem(w, "INCR failed", i);
                continue;
            }
            int64_t v = -1;
            expect++;
            if (vshm_value_integer(vshm_reply_value(r), &v) != VSHM_OK || v != expect) {
                w->mismatches++;
                problem(w, "INCR out of sequence", i);
                expect = v;
            }
        }
        vshm_reply_free(r);
        w->done++;
    }
    if (vshm_command_argv(C, 2, del, NULL, &r) == VSHM_OK) vshm_reply_free(r);
    return NULL;
}

int main(void) {
    int threads = atoi(env_or("VSHM_MT_THREADS", "8"));
    n_commands = atol(env_or("VSHM_MT_COMMANDS", "50000")) / test_scale();
    if (threads < 1 || n_commands < 1) return 2;
    C = open_main();
    fprintf(stderr, "vshm %s, mode %s: %d threads x %ld commands on one client\n", vshm_version(),
            is_daemon_mode() ? "daemon" : "embedded", threads, n_commands);
    pthread_t *tid = calloc((size_t)threads, sizeof *tid);
    worker *w = calloc((size_t)threads, sizeof *w);
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (int t = 0; t < threads; t++) {
        w[t].t = t;
        pthread_create(&tid[t], NULL, run, &w[t]);
    }
    for (int t = 0; t < threads; t++) pthread_join(tid[t], NULL);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double secs = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
    long total = 0;
    for (int t = 0; t < threads; t++) {
        h_case = "worker";
        h_case_failed = 0;
        total += w[t].done;
        if (w[t].done != n_commands || w[t].mismatches || w[t].errors) {
            fprintf(stderr, "FAIL thread %d: done %ld/%ld, %ld mismatches, %ld errors; first: %s\n", t, w[t].done,
                    n_commands, w[t].mismatches, w[t].errors, w[t].first_problem);
            h_failed++;
        } else {
            h_passed++;
        }
    }
    fprintf(stderr, "%ld commands in %.2f s: %.0f commands/s, %.1f us per command per thread\n", total, secs,
            (double)total / secs, secs * 1e6 * threads / (double)(total ? total : 1));
    h_case = "free";
    if (vshm_free(C) == VSHM_OK) h_passed++; else h_failed++;
    free(tid);
    free(w);
    return h_summary();
}
