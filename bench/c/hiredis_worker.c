/*
 * One "prefork" worker of vshm-bench: a process with its own hiredis
 * connection(s) doing blocking sequential GET/SET requests, the way a
 * PHP-FPM or gunicorn worker does.
 *
 *   hiredis_worker standalone|cluster HOST:PORT DURATION_MS INDEX WORKERS KEYS VALUE_BYTES
 *
 * Against a cluster it reads CLUSTER SLOTS at start from HOST:PORT, keeps
 * one connection per primary and routes each key by its CRC16 slot (what
 * a per-process cluster client does). Protocol with the benchmark (stdout
 * and stdin are pipes):
 *   1. connect, write its share of the keys (prefill), print "ready\n";
 *   2. wait for EOF on stdin (the start barrier: the benchmark closes the
 *      pipe for every worker at once);
 *   3. run DURATION_MS, then print
 *      "result ops=N errors=E cpu_ns=C elapsed_ns=T samples=S\n"
 *      followed by S native-endian uint64 latencies in nanoseconds.
 * Every socket operation has a 5 s timeout; any connection error exits
 * with status 2.
 */
#include <errno.h>
#include <hiredis/hiredis.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#define SLOTS 16384
#define MAX_NODES 64

static const struct timeval TIMEOUT = {5, 0};

static redisContext *nodes[MAX_NODES];
static char node_addr[MAX_NODES][64];
static int n_nodes;
static uint8_t slot_node[SLOTS];
static int cluster;

static void die(const char *what, const char *detail)
{
    fprintf(stderr, "hiredis_worker: %s: %s\n", what, detail ? detail : "");
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

/* CRC16-XMODEM (polynomial 0x1021), as the cluster specification. */
static uint16_t crc16(const char *buf, size_t len)
{
    uint16_t crc = 0;
    for (size_t i = 0; i < len; i++) {
        crc ^= (uint16_t)((uint8_t)buf[i]) << 8;
        for (int b = 0; b < 8; b++)
            crc = (crc & 0x8000) ? (uint16_t)((crc << 1) ^ 0x1021) : (uint16_t)(crc << 1);
    }
    return crc;
}

static unsigned key_slot(const char *key, size_t len)
{
    const char *open = memchr(key, '{', len);
    if (open) {
        size_t rest = len - (size_t)(open - key) - 1;
        const char *close = memchr(open + 1, '}', rest);
        if (close && close > open + 1)
            return crc16(open + 1, (size_t)(close - open - 1)) % SLOTS;
    }
    return crc16(key, len) % SLOTS;
}

static redisContext *connect_addr(const char *host, int port)
{
    redisContext *c = redisConnectWithTimeout(host, port, TIMEOUT);
    if (c == NULL || c->err)
        die("connect", c ? c->errstr : "out of memory");
    if (redisSetTimeout(c, TIMEOUT) != REDIS_OK)
        die("set timeout", c->errstr);
    return c;
}

static void split_addr(const char *addr, char *host, size_t host_len, int *port)
{
    const char *colon = strrchr(addr, ':');
    if (!colon || (size_t)(colon - addr) >= host_len)
        die("bad address", addr);
    memcpy(host, addr, (size_t)(colon - addr));
    host[colon - addr] = 0;
    *port = atoi(colon + 1);
}

static void close_nodes(void)
{
    for (int i = 0; i < n_nodes; i++)
        if (nodes[i])
            redisFree(nodes[i]);
    n_nodes = 0;
}

/* Read CLUSTER SLOTS through `seed` and connect to every primary. */
static void load_slots(const char *seed)
{
    char host[64];
    int port;
    split_addr(seed, host, sizeof host, &port);
    redisContext *c = connect_addr(host, port);
    redisReply *r = redisCommand(c, "CLUSTER SLOTS");
    if (r == NULL)
        die("CLUSTER SLOTS", c->errstr);
    if (r->type != REDIS_REPLY_ARRAY)
        die("CLUSTER SLOTS", "not an array");
    close_nodes();
    memset(slot_node, 0xff, sizeof slot_node);
    for (size_t i = 0; i < r->elements; i++) {
        redisReply *range = r->element[i];
        if (range->type != REDIS_REPLY_ARRAY || range->elements < 3)
            die("CLUSTER SLOTS", "bad range");
        redisReply *primary = range->element[2];
        if (primary->type != REDIS_REPLY_ARRAY || primary->elements < 2 ||
            primary->element[0]->type != REDIS_REPLY_STRING)
            die("CLUSTER SLOTS", "bad node");
        char addr[64];
        snprintf(addr, sizeof addr, "%s:%lld", primary->element[0]->str,
                 primary->element[1]->integer);
        int n = -1;
        for (int k = 0; k < n_nodes; k++)
            if (strcmp(node_addr[k], addr) == 0)
                n = k;
        if (n < 0) {
            if (n_nodes == MAX_NODES)
                die("CLUSTER SLOTS", "too many nodes");
            n = n_nodes++;
            snprintf(node_addr[n], sizeof node_addr[n], "%s", addr);
            nodes[n] = connect_addr(primary->element[0]->str, (int)primary->element[1]->integer);
        }
        long long lo = range->element[0]->integer, hi = range->element[1]->integer;
        for (long long s = lo; s <= hi && s < SLOTS; s++)
            if (s >= 0)
                slot_node[s] = (uint8_t)n;
    }
    freeReplyObject(r);
    redisFree(c);
    for (int s = 0; s < SLOTS; s++)
        if (slot_node[s] == 0xff)
            die("CLUSTER SLOTS", "slot not covered");
}

static redisContext *route(const char *key, size_t len)
{
    return cluster ? nodes[slot_node[key_slot(key, len)]] : nodes[0];
}

static uint64_t rng;

static uint64_t next_rand(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

static const char *seed_addr;
static long reloads;

/* One request; returns 1 when it succeeded, 0 on a reply error. */
static int request(int set, const char *key, size_t klen, const char *val, size_t vlen)
{
    redisContext *c = route(key, klen);
    redisReply *r = set ? redisCommand(c, "SET %b %b", key, klen, val, vlen)
                        : redisCommand(c, "GET %b", key, klen);
    if (r == NULL)
        die("request", c->errstr);
    int ok;
    if (set)
        ok = r->type == REDIS_REPLY_STATUS;
    else
        ok = r->type == REDIS_REPLY_STRING || r->type == REDIS_REPLY_NIL;
    if (r->type == REDIS_REPLY_ERROR && cluster &&
        (strncmp(r->str, "MOVED", 5) == 0 || strncmp(r->str, "ASK", 3) == 0)) {
        if (++reloads > 100)
            die("request", "too many MOVED/ASK redirections");
        load_slots(seed_addr);
    }
    freeReplyObject(r);
    return ok;
}

int main(int argc, char **argv)
{
    if (argc != 8) {
        fprintf(stderr,
                "usage: %s standalone|cluster HOST:PORT DURATION_MS INDEX WORKERS KEYS VALUE_BYTES\n",
                argv[0]);
        return 1;
    }
    cluster = strcmp(argv[1], "cluster") == 0;
    seed_addr = argv[2];
    uint64_t duration_ns = strtoull(argv[3], NULL, 10) * 1000000ull;
    long index = atol(argv[4]), workers = atol(argv[5]), keys = atol(argv[6]);
    size_t vlen = (size_t)atol(argv[7]);
    if (workers <= 0 || keys <= 0 || index < 0)
        die("bad arguments", NULL);
    char *val = malloc(vlen + 1);
    if (!val)
        die("malloc", NULL);
    memset(val, 'v', vlen);
    rng = 0x9E3779B97F4A7C15ull ^ ((uint64_t)index + 1) * 0xBF58476D1CE4E5B9ull;

    if (cluster) {
        load_slots(seed_addr);
    } else {
        char host[64];
        int port;
        split_addr(seed_addr, host, sizeof host, &port);
        nodes[0] = connect_addr(host, port);
        n_nodes = 1;
    }

    char key[32];
    for (long k = index; k < keys; k += workers) {
        int klen = snprintf(key, sizeof key, "bench:key:%06ld", k);
        if (!request(1, key, (size_t)klen, val, vlen))
            die("prefill", "SET failed");
    }
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

    size_t cap = 1 << 16, len = 0;
    uint64_t *samples = malloc(cap * sizeof *samples);
    if (!samples)
        die("malloc", NULL);
    uint64_t errors = 0;
    uint64_t cpu0 = cpu_ns(), t0 = now_ns(), end = t0 + duration_ns, t = t0;
    while (t < end) {
        uint64_t x = next_rand();
        int klen = snprintf(key, sizeof key, "bench:key:%06ld", (long)((x >> 8) % (uint64_t)keys));
        int set = (int)(x & 1);
        int ok = request(set, key, (size_t)klen, val, vlen);
        uint64_t t1 = now_ns();
        if (!ok)
            errors++;
        if (len == cap) {
            cap *= 2;
            samples = realloc(samples, cap * sizeof *samples);
            if (!samples)
                die("realloc", NULL);
        }
        samples[len++] = t1 - t;
        t = t1;
    }
    uint64_t elapsed = t - t0, cpu = cpu_ns() - cpu0;
    printf("result ops=%zu errors=%" PRIu64 " cpu_ns=%" PRIu64 " elapsed_ns=%" PRIu64
           " samples=%zu\n",
           len, errors, cpu, elapsed, len);
    if (fwrite(samples, sizeof *samples, len, stdout) != len || fflush(stdout) != 0)
        die("write", strerror(errno));
    free(samples);
    free(val);
    close_nodes();
    return 0;
}
