/* The hiredis side of the `seq` and `values` benchmarks: one blocking
 * hiredis connection (the system's libhiredis) running commands one at a
 * time, each timed on its own.
 *
 *   hiredis_peer HOST PORT OP KEY SIZE WARM N
 *
 * OP: "setget" (SET then GET, alternating, each timed), "set" or "get"
 * (the key is SET once, untimed, before a "get" run). Every reply is
 * checked (a GET returns SIZE bytes). Output on stdout: the first line is
 * "elapsed_ns cpu_ns" (wall time of the N measured commands; user + system
 * CPU of this process over them), then one latency in ns per line. Exit
 * status 1 with a message on stderr on any error. Every wait is bounded by
 * a 30 s socket timeout. */
#include <hiredis/hiredis.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/time.h>
#include <time.h>

static uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static uint64_t cpu_ns(void) {
    struct rusage ru;
    if (getrusage(RUSAGE_SELF, &ru) != 0) return 0;
    return ((uint64_t)ru.ru_utime.tv_sec + (uint64_t)ru.ru_stime.tv_sec) * 1000000000ull +
           ((uint64_t)ru.ru_utime.tv_usec + (uint64_t)ru.ru_stime.tv_usec) * 1000ull;
}

static void die(const char *what, redisContext *c) {
    fprintf(stderr, "hiredis_peer: %s: %s\n", what, c && c->err ? c->errstr : "unexpected reply");
    exit(1);
}

/* Run one command; check the reply; return 0 or exit. */
static void run(redisContext *c, int is_set, const char *key, const char *val, size_t size) {
    const char *argv[3];
    size_t lens[3];
    argv[0] = is_set ? "SET" : "GET";
    lens[0] = 3;
    argv[1] = key;
    lens[1] = strlen(key);
    argv[2] = val;
    lens[2] = size;
    redisReply *r = redisCommandArgv(c, is_set ? 3 : 2, argv, lens);
    if (!r) die(is_set ? "SET" : "GET", c);
    int ok = is_set ? (r->type == REDIS_REPLY_STATUS && strcmp(r->str, "OK") == 0)
                    : (r->type == REDIS_REPLY_STRING && r->len == size);
    if (!ok) {
        fprintf(stderr, "hiredis_peer: %s: reply type %d len %zu (want %zu)\n", argv[0], r->type,
                (size_t)r->len, size);
        exit(1);
    }
    freeReplyObject(r);
}

int main(int argc, char **argv) {
    if (argc != 8) {
        fprintf(stderr, "usage: hiredis_peer HOST PORT setget|set|get KEY SIZE WARM N\n");
        return 2;
    }
    const char *host = argv[1];
    int port = atoi(argv[2]);
    const char *op = argv[3];
    const char *key = argv[4];
    size_t size = strtoull(argv[5], NULL, 10);
    long warm = atol(argv[6]);
    long n = atol(argv[7]);
    int mode = strcmp(op, "setget") == 0 ? 0 : strcmp(op, "set") == 0 ? 1 : strcmp(op, "get") == 0 ? 2 : -1;
    if (mode < 0 || n <= 0 || warm < 0) {
        fprintf(stderr, "hiredis_peer: bad arguments\n");
        return 2;
    }
    char *val = malloc(size ? size : 1);
    uint64_t *lat = malloc(sizeof(uint64_t) * (size_t)n);
    if (!val || !lat) {
        fprintf(stderr, "hiredis_peer: out of memory\n");
        return 1;
    }
    for (size_t i = 0; i < size; i++) val[i] = (char)('a' + i % 26);
    struct timeval tv = {30, 0};
    redisContext *c = redisConnectWithTimeout(host, port, tv);
    if (!c || c->err) die("connect", c);
    if (redisSetTimeout(c, tv) != REDIS_OK) die("set timeout", c);
    if (mode == 2) run(c, 1, key, val, size);
    for (long i = 0; i < warm; i++) run(c, mode == 1 || (mode == 0 && i % 2 == 0), key, val, size);
    uint64_t cpu0 = cpu_ns();
    uint64_t t0 = now_ns();
    for (long i = 0; i < n; i++) {
        uint64_t s = now_ns();
        run(c, mode == 1 || (mode == 0 && i % 2 == 0), key, val, size);
        lat[i] = now_ns() - s;
    }
    uint64_t elapsed = now_ns() - t0;
    uint64_t cpu = cpu_ns() - cpu0;
    redisFree(c);
    printf("%llu %llu\n", (unsigned long long)elapsed, (unsigned long long)cpu);
    for (long i = 0; i < n; i++) printf("%llu\n", (unsigned long long)lat[i]);
    free(val);
    free(lat);
    return fflush(stdout) == 0 ? 0 : 1;
}
