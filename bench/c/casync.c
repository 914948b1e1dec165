/*
 * The "casync" client of vshm-bench: one C process keeping INFLIGHT
 * requests in flight for a fixed time through an asynchronous API. Built
 * twice from this file:
 *   -DCASYNC_VSHM     libvshm (vshm_submit_argv with a callback, driven by
 *                     vshm_wait), against the in-process core or vshmd;
 *   -DCASYNC_HIREDIS  hiredis's redisAsyncContext, driven by a minimal
 *                     poll() adapter defined below (no event library).
 *
 *   casync_vshm embedded URI|daemon SOCKET  DURATION_MS INFLIGHT OP KEYS VALUE_BYTES
 *   casync_hiredis hiredis HOST:PORT        DURATION_MS INFLIGHT OP KEYS VALUE_BYTES
 *
 * OP: "mixed" (GET/SET 50/50 of VALUE_BYTES values over KEYS keys, random
 * keys, the same sequence as the other scenarios' workers) or "incr"
 * (INCR over 8 counters). Every completion submits the next request until
 * the window ends, then the last ones are drained. Protocol with the
 * benchmark as bench/c/hiredis_worker.c: prefill (mixed: SET every key),
 * "ready\n", wait for EOF on stdin, run, then
 *   "result ops=N errors=E cpu_ns=C elapsed_ns=T samples=S\n"
 * and S native-endian uint64 latencies (submit to callback) in ns.
 * Fatal errors (connection, timeouts) exit with status 2.
 */
#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#if defined(CASYNC_VSHM)
#include "vshm.h"
#elif defined(CASYNC_HIREDIS)
#include <hiredis/async.h>
#include <hiredis/hiredis.h>
#else
#error "define CASYNC_VSHM or CASYNC_HIREDIS"
#endif

#define MAX_INFLIGHT 4096
#define INCR_KEYS 8

static void die(const char *what, const char *detail)
{
    fprintf(stderr, "casync: %s: %s\n", what, detail ? detail : "");
    exit(2);
}

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static uint64_t cpu_ns(void)
{
    struct rusage ru;
    if (getrusage(RUSAGE_SELF, &ru) != 0)
        return 0;
    return ((uint64_t)ru.ru_utime.tv_sec + (uint64_t)ru.ru_stime.tv_sec) * 1000000000ull +
           ((uint64_t)ru.ru_utime.tv_usec + (uint64_t)ru.ru_stime.tv_usec) * 1000ull;
}

/* ------------------------------------------------------------------------ */
/* The workload (shared by both builds) */

enum { KIND_SET, KIND_GET, KIND_INCR };

/* One request slot: INFLIGHT of them, each always holding one request. */
struct slot {
    uint64_t start;
    int kind;
    char key[32];
    size_t klen;
};

static struct slot slots[MAX_INFLIGHT];
static int incr_op;
static long keys;
static char *val;
static size_t vlen;
static uint64_t rng = 0x9E3779B97F4A7C15ull ^ 0xBF58476D1CE4E5B9ull;

/* Phase state: prefilling (next_prefill < keys) or measuring. */
static int measuring;
static long next_prefill;
static uint64_t end_ns;
static uint64_t pending;
static uint64_t ops, errors, last_done;
static uint64_t *samples;
static size_t cap, len;

static uint64_t next_rand(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

/* Fill `s` with the next request; 0 when there is none (phase over). */
static int next_request(struct slot *s)
{
    if (!measuring) {
        if (next_prefill >= keys)
            return 0;
        s->kind = KIND_SET;
        s->klen = (size_t)snprintf(s->key, sizeof s->key, "bench:key:%06ld", next_prefill++);
        return 1;
    }
    uint64_t t = now_ns();
    if (t >= end_ns)
        return 0;
    uint64_t x = next_rand();
    if (incr_op) {
        s->kind = KIND_INCR;
        s->klen = (size_t)snprintf(s->key, sizeof s->key, "bench:ctr:%d", (int)(x % INCR_KEYS));
    } else {
        s->kind = (x & 1) ? KIND_SET : KIND_GET;
        s->klen = (size_t)snprintf(s->key, sizeof s->key, "bench:key:%06ld",
                                   (long)((x >> 8) % (uint64_t)keys));
    }
    s->start = t;
    return 1;
}

static int fill_argv(const struct slot *s, const char **argv, size_t *argvlen)
{
    static const char *names[] = {"SET", "GET", "INCR"};
    argv[0] = names[s->kind];
    argvlen[0] = strlen(argv[0]);
    argv[1] = s->key;
    argvlen[1] = s->klen;
    if (s->kind == KIND_SET) {
        argv[2] = val;
        argvlen[2] = vlen;
        return 3;
    }
    return 2;
}

/* A completion of slot `s`; `ok`: the reply had the expected type. */
static void completed(struct slot *s, int ok)
{
    pending--;
    if (!measuring) {
        if (!ok)
            die("prefill", "SET failed");
        return;
    }
    uint64_t t = now_ns();
    if (!ok)
        errors++;
    if (len == cap) {
        cap = cap ? cap * 2 : 1 << 18;
        samples = realloc(samples, cap * sizeof *samples);
        if (!samples)
            die("realloc", NULL);
    }
    samples[len++] = t - s->start;
    ops++;
    last_done = t;
}

static void wait_start(void)
{
    printf("ready\n");
    fflush(stdout);
    char b;
    for (;;) {
        ssize_t n = read(0, &b, 1);
        if (n == 0)
            break;
        if (n < 0 && errno != EINTR)
            die("barrier", strerror(errno));
    }
}

static void submit(struct slot *s);
static void drive(void);

/* Run one phase: fill every slot, then drive completions until none is
 * pending (each completion resubmits its slot while the phase lasts). */
static void run_phase(int inflight)
{
    for (int i = 0; i < inflight; i++)
        if (next_request(&slots[i]))
            submit(&slots[i]);
    while (pending > 0)
        drive();
}

/* ------------------------------------------------------------------------ */
#if defined(CASYNC_VSHM)

static vshm_client *client;

static void on_reply(vshm_client *c, uint64_t id, vshm_status st, vshm_reply *r, void *ud)
{
    (void)c;
    (void)id;
    struct slot *s = ud;
    int ok = 0;
    if (st == VSHM_OK) {
        int t = vshm_value_type(vshm_reply_value(r));
        switch (s->kind) {
        case KIND_SET: ok = t == VSHM_TYPE_STATUS; break;
        case KIND_GET: ok = t == VSHM_TYPE_STRING || t == VSHM_TYPE_NIL; break;
        default: ok = t == VSHM_TYPE_INT; break;
        }
        vshm_reply_free(r);
    } else if (st == VSHM_ERR_CONNECTION || st == VSHM_ERR_CLOSING || st == VSHM_ERR_TIMEOUT) {
        die("request", vshm_last_error_message());
    }
    completed(s, ok);
    if (next_request(s))
        submit(s);
}

static void submit(struct slot *s)
{
    const char *argv[3];
    size_t argvlen[3];
    int argc = fill_argv(s, argv, argvlen);
    pending++;
    if (vshm_submit_argv(client, argc, argv, argvlen, NULL, on_reply, s, NULL) != VSHM_OK)
        die("vshm_submit_argv", vshm_last_error_message());
}

static void drive(void)
{
    size_t n;
    vshm_status st = vshm_wait(client, 5000, &n);
    if (st != VSHM_OK)
        die("vshm_wait", vshm_last_error_message());
}

static void open_client(const char *mode, const char *where)
{
    vshm_status st;
    if (strcmp(mode, "embedded") == 0) {
        st = vshm_open_embedded_uri(where, &client);
    } else if (strcmp(mode, "daemon") == 0) {
        vshm_connect_options o;
        vshm_connect_options_init(&o);
        o.client_name = "bench-casync";
        o.request_timeout_ms = 5000;
        st = vshm_connect(where, &o, &client);
    } else {
        die("unknown mode", mode);
        return;
    }
    if (st != VSHM_OK)
        die("connect", vshm_last_error_message());
}

static void close_client(void)
{
    vshm_free(client);
}

/* ------------------------------------------------------------------------ */
#else /* CASYNC_HIREDIS */

static redisAsyncContext *ac;
static int want_read, want_write;

/* The poll() adapter: hiredis tells which events it wants; drive() polls
 * the socket and hands readiness back. */
static void ev_add_read(void *p) { (void)p; want_read = 1; }
static void ev_del_read(void *p) { (void)p; want_read = 0; }
static void ev_add_write(void *p) { (void)p; want_write = 1; }
static void ev_del_write(void *p) { (void)p; want_write = 0; }
static void ev_cleanup(void *p) { (void)p; want_read = want_write = 0; }

static void on_reply(redisAsyncContext *c, void *reply, void *ud)
{
    struct slot *s = ud;
    redisReply *r = reply;
    if (r == NULL)
        die("request", c->errstr[0] ? c->errstr : "no reply");
    int ok;
    switch (s->kind) {
    case KIND_SET: ok = r->type == REDIS_REPLY_STATUS; break;
    case KIND_GET: ok = r->type == REDIS_REPLY_STRING || r->type == REDIS_REPLY_NIL; break;
    default: ok = r->type == REDIS_REPLY_INTEGER; break;
    }
    completed(s, ok); /* hiredis frees the reply after the callback */
    if (next_request(s))
        submit(s);
}

static void submit(struct slot *s)
{
    const char *argv[3];
    size_t argvlen[3];
    int argc = fill_argv(s, argv, argvlen);
    pending++;
    if (redisAsyncCommandArgv(ac, on_reply, s, argc, argv, argvlen) != REDIS_OK)
        die("redisAsyncCommandArgv", ac->errstr);
}

static void drive(void)
{
    struct pollfd p = {.fd = ac->c.fd, .events = 0, .revents = 0};
    if (want_read)
        p.events |= POLLIN;
    if (want_write)
        p.events |= POLLOUT;
    int n = poll(&p, 1, 5000);
    if (n < 0 && errno != EINTR)
        die("poll", strerror(errno));
    if (n == 0)
        die("poll", "no progress for 5 s");
    if (n > 0 && (p.revents & (POLLIN | POLLERR | POLLHUP)))
        redisAsyncHandleRead(ac);
    if (n > 0 && (p.revents & POLLOUT) && ac != NULL)
        redisAsyncHandleWrite(ac);
}

static int connected;

static void on_connect(const redisAsyncContext *c, int status)
{
    if (status != REDIS_OK)
        die("connect", c->errstr);
    connected = 1;
}

static void open_client(const char *mode, const char *where)
{
    if (strcmp(mode, "hiredis") != 0)
        die("unknown mode", mode);
    char host[64];
    const char *colon = strrchr(where, ':');
    if (!colon || (size_t)(colon - where) >= sizeof host)
        die("bad address", where);
    memcpy(host, where, (size_t)(colon - where));
    host[colon - where] = 0;
    ac = redisAsyncConnect(host, atoi(colon + 1));
    if (ac == NULL || ac->err)
        die("connect", ac ? ac->errstr : "out of memory");
    ac->ev.data = NULL;
    ac->ev.addRead = ev_add_read;
    ac->ev.delRead = ev_del_read;
    ac->ev.addWrite = ev_add_write;
    ac->ev.delWrite = ev_del_write;
    ac->ev.cleanup = ev_cleanup;
    redisAsyncSetConnectCallback(ac, on_connect);
    /* Non-blocking connect: completes on the first writable event. */
    want_write = 1;
    while (!connected)
        drive();
}

static void close_client(void)
{
    /* Frees the context (no callbacks pending). */
    redisAsyncFree(ac);
    ac = NULL;
}

#endif

/* ------------------------------------------------------------------------ */

int main(int argc, char **argv)
{
    if (argc != 8) {
        fprintf(stderr,
                "usage: %s embedded|daemon|hiredis URI|SOCKET|HOST:PORT DURATION_MS INFLIGHT "
                "mixed|incr KEYS VALUE_BYTES\n",
                argv[0]);
        return 1;
    }
    uint64_t duration_ns = strtoull(argv[3], NULL, 10) * 1000000ull;
    int inflight = atoi(argv[4]);
    incr_op = strcmp(argv[5], "incr") == 0;
    if (!incr_op && strcmp(argv[5], "mixed") != 0)
        die("bad OP", argv[5]);
    keys = atol(argv[6]);
    vlen = (size_t)atol(argv[7]);
    if (inflight <= 0 || inflight > MAX_INFLIGHT || keys <= 0)
        die("bad arguments", NULL);
    val = malloc(vlen + 1);
    if (!val)
        die("malloc", NULL);
    memset(val, 'v', vlen);

    open_client(argv[1], argv[2]);
    if (!incr_op)
        run_phase(inflight);
    wait_start();

    measuring = 1;
    uint64_t cpu0 = cpu_ns(), t0 = now_ns();
    end_ns = t0 + duration_ns;
    last_done = t0;
    run_phase(inflight);
    uint64_t elapsed = last_done - t0, cpu = cpu_ns() - cpu0;

    printf("result ops=%" PRIu64 " errors=%" PRIu64 " cpu_ns=%" PRIu64 " elapsed_ns=%" PRIu64
           " samples=%zu\n",
           ops, errors, cpu, elapsed, len);
    if (fwrite(samples, sizeof *samples, len, stdout) != len || fflush(stdout) != 0)
        die("write", strerror(errno));
    close_client();
    free(samples);
    free(val);
    return 0;
}
