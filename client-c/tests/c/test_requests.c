/*
 * Request-level behaviour of the vshm C API, against a real server,
 * through the daemon or the in-process core (VSHM_TEST_MODE):
 * printf-style calls with options, the commands the core refuses.
 * Run plain, under AddressSanitizer and under valgrind by
 * scripts/test-c.sh.
 */
#include "api.h"

typedef struct {
    int calls;
    vshm_status status;
    uint64_t id;
    char value[64];
    char error[256];
} one_cb;

static void on_one(vshm_client *c, uint64_t id, vshm_status st, vshm_reply *r, void *ud) {
    (void)c;
    one_cb *s = ud;
    s->calls++;
    s->status = st;
    s->id = id;
    if (st == VSHM_OK) {
        if (!reply_str(r, s->value, sizeof s->value)) snprintf(s->value, sizeof s->value, "<%s>",
                                                                 vshm_type_name(vshm_value_type(vshm_reply_value(r))));
        vshm_reply_free(r);
    } else {
        snprintf(s->error, sizeof s->error, "%s", vshm_last_error_message());
    }
}

static void wait_one(one_cb *s, int timeout_ms) {
    double deadline = now_ms() + timeout_ms;
    while (s->calls == 0 && now_ms() < deadline) vshm_wait(C, 100, NULL);
}

/* vshm_command_opts / vshm_submit_command_opts (and their va_list forms):
 * the format as vshm_command, the options as vshm_command_argv_opts. */
static vshm_status command_optsv(const vshm_request_options *o, vshm_reply **r, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vshm_status st = vshm_commandv_opts(C, o, r, fmt, ap);
    va_end(ap);
    return st;
}

static vshm_status submit_optsv(const vshm_request_options *o, one_cb *s, uint64_t *id, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vshm_status st = vshm_submit_commandv_opts(C, o, on_one, s, id, fmt, ap);
    va_end(ap);
    return st;
}

static void test_format_with_options(void) {
    vshm_request_options o;
    memset(&o, 0, sizeof o);
    vshm_reply *r = NULL;
    /* NULL options and all-zero options are the defaults. */
    CHECK_OK(vshm_command_opts(C, NULL, &r, "SET fo:%s %b", "k", "v\0w", (size_t)3));
    vshm_reply_free(r);
    CHECK_OK(vshm_command_opts(C, &o, &r, "STRLEN fo:%s", "k"));
    int64_t n = -1;
    CHECK(r && vshm_value_integer(vshm_reply_value(r), &n) == VSHM_OK && n == 3);
    vshm_reply_free(r);
    CHECK_OK(command_optsv(&o, &r, "GET fo:%s", "k"));
    const char *p;
    size_t len;
    CHECK(r && vshm_value_string(vshm_reply_value(r), &p, &len) == VSHM_OK && len == 3 && memcmp(p, "v\0w", 3) == 0);
    vshm_reply_free(r);

    /* The timeout applies: the core's 100 ms, not the server's 0.5 s sleep. */
    o.timeout_ms = 100;
    double t0 = now_ms();
    r = (vshm_reply *)&o; /* set to NULL on every error */
    CHECK_ST(vshm_command_opts(C, &o, &r, "DEBUG SLEEP %.1f", 0.5), VSHM_ERR_TIMEOUT);
    CHECK(r == NULL);
    CHECK(now_ms() - t0 < 450);
    usleep(500 * 1000); /* let the server finish sleeping */

    /* The route applies: ADDRESS to the standalone server itself works,
     * to a node that is not part of the deployment is refused. */
    char host[64];
    snprintf(host, sizeof host, "%s", env_or("VSHM_TEST_STANDALONE", "127.0.0.1:6379"));
    char *colon = strrchr(host, ':');
    REQUIRE(colon);
    *colon = 0;
    memset(&o, 0, sizeof o);
    o.route.kind = VSHM_ROUTE_ADDRESS;
    o.route.host = host;
    o.route.port = (uint32_t)atoi(colon + 1);
    CHECK_OK(vshm_command_opts(C, &o, &r, "ECHO %s", "routed"));
    CHECK(r && value_is(vshm_reply_value(r), "routed"));
    vshm_reply_free(r);
    /* Bad options are reported as for the argv calls. */
    o.route.kind = 99;
    CHECK_ST(vshm_command_opts(C, &o, &r, "PING"), VSHM_ERR_INVALID_ARGUMENT);
    CHECK(strstr(vshm_last_error_message(), "route kind") != NULL);
    CHECK(r == NULL);
    memset(&o, 0, sizeof o);
    o.flags = 0x80;
    uint64_t id = 77;
    one_cb s;
    memset(&s, 0, sizeof s);
    CHECK_ST(vshm_submit_command_opts(C, &o, on_one, &s, &id, "PING"), VSHM_ERR_INVALID_ARGUMENT);
    CHECK(id == 0);
    /* Format errors come first, as for vshm_command. */
    CHECK_ST(vshm_command_opts(C, NULL, &r, "GET %q"), VSHM_ERR_INVALID_ARGUMENT);
    CHECK_ST(vshm_command_opts(C, NULL, NULL, "PING"), VSHM_ERR_INVALID_ARGUMENT);
    CHECK_ST(vshm_command_opts(NULL, NULL, &r, "PING"), VSHM_ERR_INVALID_ARGUMENT);

    /* Asynchronous: options and format, callback and take. */
    memset(&o, 0, sizeof o);
    o.timeout_ms = 3000;
    memset(&s, 0, sizeof s);
    CHECK_OK(vshm_submit_command_opts(C, &o, on_one, &s, &id, "ECHO %d-%s", 42, "async"));
    CHECK(id != 0);
    wait_one(&s, test_timeout_ms());
    CHECK(s.calls == 1 && s.status == VSHM_OK && s.id == id && strcmp(s.value, "42-async") == 0);
    memset(&s, 0, sizeof s);
    CHECK_OK(submit_optsv(NULL, &s, &id, "INCR %s", "fo:k"));
    wait_one(&s, test_timeout_ms());
    CHECK(s.calls == 1 && s.status == VSHM_ERR_REQUEST && strstr(s.error, "not an integer") != NULL);
    /* The per-request timeout of an asynchronous request. */
    o.timeout_ms = 100;
    memset(&s, 0, sizeof s);
    t0 = now_ms();
    CHECK_OK(vshm_submit_command_opts(C, &o, on_one, &s, &id, "DEBUG SLEEP %s", "0.5"));
    wait_one(&s, test_timeout_ms());
    CHECK(s.calls == 1 && s.status == VSHM_ERR_TIMEOUT);
    CHECK(now_ms() - t0 < 450);
    usleep(500 * 1000);
    /* Without a callback: vshm_take. */
    CHECK_OK(vshm_submit_command_opts(C, NULL, NULL, NULL, &id, "ECHO %s", "taken"));
    vshm_status st;
    double deadline = now_ms() + test_timeout_ms();
    while ((st = vshm_take(C, id, &r)) == VSHM_PENDING && now_ms() < deadline) vshm_wait(C, 100, NULL);
    CHECK_OK(st);
    CHECK(r && value_is(vshm_reply_value(r), "taken"));
    vshm_reply_free(r);
    vshm_reply_free(cmd("DEL fo:k"));
}

/* Every command the core refuses (core/src/commands.rs, `refusal`;
 * docs/c-api.md, "Refused commands"): VSHM_ERR_INVALID_REQUEST before
 * anything is sent, with a message that names what to use instead. */
static void test_refused_commands(void) {
    static const struct {
        const char *command;
        const char *message; /* a part of the message */
    } refused[] = {
        {"SELECT 1", "`database`"},
        {"SWAPDB 0 1", "`database`"},
        {"AUTH user pass", "`username`/`password`"},
        {"HELLO 3", "`protocol`"},
        {"CLIENT SETNAME x", "`client_name`"},
        {"client setname x", "`client_name`"},
        {"CLIENT TRACKING on", "not supported"},
        {"CLIENT CACHING yes", "not supported"},
        {"CLIENT REPLY OFF", "not supported"},
        {"CLIENT SETINFO LIB-NAME x", "not supported"},
        {"CLIENT NO-EVICT on", "not supported"},
        {"CLIENT NO-TOUCH on", "not supported"},
        {"MULTI", "batch API"},
        {"EXEC", "batch API"},
        {"DISCARD", "batch API"},
        {"WATCH k", "batch API"},
        {"UNWATCH", "batch API"},
        {"SUBSCRIBE ch", "pub/sub API"},
        {"PSUBSCRIBE ch*", "pub/sub API"},
        {"SSUBSCRIBE ch", "pub/sub API"},
        {"UNSUBSCRIBE", "pub/sub API"},
        {"PUNSUBSCRIBE", "pub/sub API"},
        {"SUNSUBSCRIBE", "pub/sub API"},
        {"MONITOR", "takes over the connection"},
        {"SYNC", "take over the connection"},
        {"PSYNC ? -1", "take over the connection"},
        {"RESET", "not supported"},
        {"QUIT", "close the client"},
        {"READONLY", "`read_from`"},
        {"READWRITE", "`read_from`"},
        {"ASKING", "redirections"},
    };
    for (size_t i = 0; i < sizeof refused / sizeof refused[0]; i++) {
        vshm_reply *r = NULL;
        vshm_status st = vshm_command(C, &r, refused[i].command);
        if (st != VSHM_ERR_INVALID_REQUEST || strstr(vshm_last_error_message(), refused[i].message) == NULL) {
            fprintf(stderr, "   %s: %s: \"%s\" (want VSHM_ERR_INVALID_REQUEST, \"...%s...\")\n", refused[i].command,
                    vshm_errstr(st), vshm_last_error_message(), refused[i].message);
            CHECK(!"refused as documented");
        }
        CHECK(r == NULL);
        vshm_reply_free(r);
    }
    /* Also asynchronously (the callback gets the refusal) and in batches. */
    one_cb s;
    memset(&s, 0, sizeof s);
    CHECK_OK(vshm_submit_command(C, on_one, &s, NULL, "CLIENT TRACKING on"));
    wait_one(&s, test_timeout_ms());
    CHECK(s.calls == 1 && s.status == VSHM_ERR_INVALID_REQUEST && strstr(s.error, "not supported") != NULL);
    vshm_batch *b = NULL;
    CHECK_OK(vshm_batch_new(0, &b));
    CHECK_OK(vshm_batch_add_command(b, "PING"));
    CHECK_OK(vshm_batch_add_command(b, "QUIT"));
    vshm_reply *r = NULL;
    vshm_status st = vshm_batch_exec(C, b, NULL, &r);
    CHECK(st == VSHM_ERR_INVALID_REQUEST && strstr(vshm_last_error_message(), "close the client") != NULL);
    vshm_reply_free(r);
    vshm_batch_free(b);
    /* Commands that merely look similar are not refused. */
    r = cmd("CLIENT GETNAME");
    CHECK(r != NULL);
    vshm_reply_free(r);
    r = cmd("CLIENT ID");
    CHECK(r != NULL);
    vshm_reply_free(r);
}


/* ---- blocking commands: the client waits as long as the core does ---- */

/* A client whose default request timeout is the library's default
 * (250 ms), so that a wait bounded by the request timeout shows. */
static vshm_client *open_short_timeout(void) {
    vshm_client *c = NULL;
    vshm_status st;
    if (is_daemon_mode()) {
        vshm_connect_options o;
        vshm_connect_options_init(&o);
        o.request_timeout_ms = 250;
        st = vshm_connect(env_or("VSHM_TEST_SOCKET", "/nonexistent"), &o, &c);
    } else {
        char uri[512];
        standalone_uri(uri, sizeof uri, NULL);
        st = vshm_open_embedded_uri(uri, &c);
    }
    if (st != VSHM_OK) fprintf(stderr, "   open: %s\n", vshm_last_error_message());
    return c;
}

typedef struct {
    const char *key;
    int delay_ms;
} push_later;

static void *push_after(void *arg) {
    push_later *p = arg;
    usleep((useconds_t)p->delay_ms * 1000);
    vshm_reply *r = NULL;
    if (vshm_command(C, &r, "RPUSH %s pushed", p->key) != VSHM_OK)
        fprintf(stderr, "   RPUSH %s: %s\n", p->key, vshm_last_error_message());
    vshm_reply_free(r);
    return NULL;
}

static int reply_is_pop(vshm_reply *r, const char *key, const char *value) {
    const vshm_value *v = r ? vshm_reply_value(r) : NULL;
    return v && vshm_value_type(v) == VSHM_TYPE_ARRAY && vshm_value_len(v) == 2 &&
           value_is(vshm_value_element(v, 0), key) && value_is(vshm_value_element(v, 1), value);
}

static void test_blocking_commands(void) {
    vshm_client *s = open_short_timeout();
    REQUIRE(s);
    vshm_reply_free(cmd("DEL bl:q0 bl:q1 bl:q3"));
    /* BLPOP q 0 (forever) with default options: returns when another
     * thread pushes 1 s later, well past the 250 ms request timeout. */
    pthread_t t;
    push_later p0 = {"bl:q0", 1000};
    REQUIRE(pthread_create(&t, NULL, push_after, &p0) == 0);
    vshm_reply *r = NULL;
    CHECK_OK(vshm_command(s, &r, "BLPOP %s 0", "bl:q0"));
    CHECK(reply_is_pop(r, "bl:q0", "pushed"));
    vshm_reply_free(r);
    pthread_join(t, NULL);
    /* The same asynchronously. */
    push_later p1 = {"bl:q1", 1000};
    one_cb cb;
    memset(&cb, 0, sizeof cb);
    uint64_t id = 0;
    CHECK_OK(vshm_submit_command(s, on_one, &cb, &id, "BLPOP %s 0", "bl:q1"));
    REQUIRE(pthread_create(&t, NULL, push_after, &p1) == 0);
    double deadline = now_ms() + 10000;
    while (cb.calls == 0 && now_ms() < deadline) vshm_wait(s, 100, NULL);
    pthread_join(t, NULL);
    CHECK(cb.calls == 1 && cb.status == VSHM_OK && cb.id == id);
    CHECK(strcmp(cb.value, "<array>") == 0);
    CHECK(vshm_pending(s) == 0);
    /* BLPOP q 3 on an empty list: the server's own timeout (a nil reply
     * after 3 s), not a client-side VSHM_ERR_TIMEOUT at 1.25 s. */
    double t0 = now_ms();
    CHECK_OK(vshm_command(s, &r, "BLPOP %s 3", "bl:q3"));
    CHECK(r && vshm_value_type(vshm_reply_value(r)) == VSHM_TYPE_NIL);
    CHECK(now_ms() - t0 > 2500); /* the server waited its 3 s */
    vshm_reply_free(r);
    memset(&cb, 0, sizeof cb);
    CHECK_OK(vshm_submit_command(s, on_one, &cb, &id, "BLPOP %s 3", "bl:q3"));
    deadline = now_ms() + 10000;
    while (cb.calls == 0 && now_ms() < deadline) vshm_wait(s, 100, NULL);
    CHECK(cb.calls == 1 && cb.status == VSHM_OK && strcmp(cb.value, "<nil>") == 0);
    /* Other blocking commands get their own bound too. */
    CHECK_OK(vshm_command(s, &r, "XREAD BLOCK %d STREAMS %s $", 1500, "bl:stream"));
    CHECK(r && vshm_value_type(vshm_reply_value(r)) == VSHM_TYPE_NIL);
    vshm_reply_free(r);
    CHECK_OK(vshm_command(s, &r, "BZPOPMIN %s %s", "bl:zset", "1.5"));
    CHECK(r && vshm_value_type(vshm_reply_value(r)) == VSHM_TYPE_NIL);
    vshm_reply_free(r);
    /* An explicit per-request timeout still bounds a block-forever
     * command (the caller asked for it). */
    vshm_request_options o;
    memset(&o, 0, sizeof o);
    o.timeout_ms = 300;
    CHECK_ST(vshm_command_opts(s, &o, &r, "BLPOP %s 0", "bl:q3"), VSHM_ERR_TIMEOUT);
    CHECK_OK(vshm_free(s));
    vshm_reply_free(cmd("DEL bl:q0 bl:q1 bl:q3"));
}

/* ---- a completion ring pinned by held replies ---- */

enum { PIN_MAX = 600 };

typedef struct {
    vshm_reply *held[PIN_MAX];
    int nheld;
    int ok, timeouts, other, calls;
    char other_error[256];
} pin_state;

/* Keeps every reply (the program "forgets" to free them). */
static void on_hold(vshm_client *c, uint64_t id, vshm_status st, vshm_reply *r, void *ud) {
    (void)c;
    (void)id;
    pin_state *p = ud;
    p->calls++;
    if (st == VSHM_OK) {
        p->ok++;
        if (p->nheld < PIN_MAX) p->held[p->nheld++] = r;
        else vshm_reply_free(r);
    } else if (st == VSHM_ERR_TIMEOUT) {
        p->timeouts++;
        CHECK(r == NULL);
    } else {
        p->other++;
        snprintf(p->other_error, sizeof p->other_error, "%s: %s", vshm_errstr(st), vshm_last_error_message());
    }
}

static void test_pinned_ring_deadlines(void) {
    /* 4 KB replies: the completion ring (1 MiB) holds about 250 of them. */
    enum { N = 500, SIZE = 4096 };
    char *val = malloc(SIZE);
    REQUIRE(val);
    memset(val, 'h', SIZE);
    vshm_reply *r = NULL;
    CHECK_OK(vshm_command(C, &r, "SET pr:k %b", val, (size_t)SIZE));
    vshm_reply_free(r);
    free(val);
    vshm_client *c = NULL;
    if (is_daemon_mode()) {
        vshm_connect_options o;
        vshm_connect_options_init(&o);
        o.request_timeout_ms = (uint32_t)test_timeout_ms();
        o.cq_capacity = 1 << 20;
        CHECK_OK(vshm_connect(env_or("VSHM_TEST_SOCKET", "/nonexistent"), &o, &c));
    } else {
        c = open_main();
    }
    REQUIRE(c);
    pin_state *p = calloc(1, sizeof *p);
    REQUIRE(p);
    vshm_request_options o;
    memset(&o, 0, sizeof o);
    o.timeout_ms = 500;
    double t0 = now_ms();
    for (int i = 0; i < N; i++) CHECK_OK(vshm_submit_command_opts(c, &o, on_hold, p, NULL, "GET %s", "pr:k"));
    /* Every request completes: the ones whose replies fit in the ring with
     * their reply (held), the others with VSHM_ERR_TIMEOUT at their
     * deadline although the ring has no room for a completion. Driven by
     * an event loop: the vshm_fd descriptor becomes readable when a
     * deadline passes (nothing is published in the pinned ring). */
    int fd = vshm_fd(c);
    CHECK(fd >= 0);
    double deadline = now_ms() + 30000;
    while (p->calls < N && now_ms() < deadline) {
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        int k = poll(&pfd, 1, 5000);
        if (k != 1) {
            fprintf(stderr, "   vshm_fd not readable within 5 s with %d requests pending\n", N - p->calls);
            break;
        }
        CHECK_OK(vshm_poll(c, NULL));
    }
    double took = now_ms() - t0;
    fprintf(stderr, "   %d held, %d timed out, %d other, in %.0f ms\n", p->ok, p->timeouts, p->other, took);
    CHECK(p->calls == N);
    CHECK(p->ok > 10 && p->ok < N);
    CHECK(p->timeouts == N - p->ok);
    CHECK(p->other == 0);
    if (p->other) fprintf(stderr, "   other: %s\n", p->other_error);
    CHECK(vshm_pending(c) == 0);
    /* Free the replies: the client works again (and the real completions
     * of the timed-out requests, when the core can write them, are
     * discarded: no second callback). */
    for (int i = 0; i < p->nheld; i++) vshm_reply_free(p->held[i]);
    int calls = p->calls;
    CHECK_OK(vshm_command(c, &r, "GET %s", "pr:k"));
    CHECK(r && vshm_value_len(vshm_reply_value(r)) == SIZE);
    vshm_reply_free(r);
    one_cb cb;
    memset(&cb, 0, sizeof cb);
    CHECK_OK(vshm_submit_command(c, on_one, &cb, NULL, "ECHO %s", "again"));
    deadline = now_ms() + test_timeout_ms();
    while (cb.calls == 0 && now_ms() < deadline) vshm_wait(c, 100, NULL);
    CHECK(cb.calls == 1 && cb.status == VSHM_OK && strcmp(cb.value, "again") == 0);
    vshm_poll(c, NULL);
    CHECK(p->calls == calls);
    free(p);
    CHECK_OK(vshm_free(c));
    vshm_reply_free(cmd("DEL pr:k"));
}

/* ---- a standalone server on a Unix socket ---- */

static void test_unix_socket_server(void) {
    const char *path = getenv("VSHM_TEST_UNIX_SOCKET");
    if (!path || !*path) SKIP("VSHM_TEST_UNIX_SOCKET not set");
    if (is_daemon_mode()) SKIP("in-process core only (vshm_open_embedded_uri)");
    char uri[512];
    snprintf(uri, sizeof uri, "unix://%s?timeout_ms=%d", path, test_timeout_ms());
    vshm_client *c = NULL;
    CHECK_OK(vshm_open_embedded_uri(uri, &c));
    REQUIRE(c);
    vshm_reply *r = NULL;
    CHECK_OK(vshm_command(c, &r, "SET %s %s", "ux:k", "over a unix socket"));
    vshm_reply_free(r);
    CHECK_OK(vshm_command(c, &r, "GET %s", "ux:k"));
    CHECK(r && value_is(vshm_reply_value(r), "over a unix socket"));
    vshm_reply_free(r);
    /* It is that server: its own configuration names the socket. */
    CHECK_OK(vshm_command(c, &r, "CONFIG GET %s", "unixsocket"));
    const vshm_value *v = r ? vshm_reply_value(r) : NULL;
    int found = 0;
    for (size_t i = 0; v && i < vshm_value_len(v); i++) {
        const vshm_value *x = vshm_value_type(v) == VSHM_TYPE_MAP ? vshm_value_map_value(v, i) : vshm_value_element(v, i);
        found |= value_is(x, path);
    }
    CHECK(found);
    vshm_reply_free(r);
    /* Asynchronous requests too. */
    one_cb cb;
    memset(&cb, 0, sizeof cb);
    CHECK_OK(vshm_submit_command(c, on_one, &cb, NULL, "ECHO %s", "async"));
    double deadline = now_ms() + test_timeout_ms();
    while (cb.calls == 0 && now_ms() < deadline) vshm_wait(c, 100, NULL);
    CHECK(cb.calls == 1 && cb.status == VSHM_OK && strcmp(cb.value, "async") == 0);
    /* The other spellings. */
    vshm_client *c2 = NULL;
    snprintf(uri, sizeof uri, "valkey+unix://%s", path);
    CHECK_OK(vshm_open_embedded_uri(uri, &c2));
    if (c2) CHECK_OK(vshm_free(c2));
    /* A socket that does not exist. */
    CHECK_ST(vshm_open_embedded_uri("unix:///nonexistent/vshm-test.sock?connect_timeout_ms=500", &c2),
             VSHM_ERR_CONNECTION);
    CHECK_OK(vshm_free(c));
}

int main(void) {
    C = open_main();
    fprintf(stderr, "vshm %s, mode %s\n", vshm_version(), is_daemon_mode() ? "daemon" : "embedded");
    RUN(test_format_with_options);
    RUN(test_refused_commands);
    RUN(test_blocking_commands);
    RUN(test_pinned_ring_deadlines);
    RUN(test_unix_socket_server);
    CHECK_OK(vshm_free(C));
    return h_summary();
}
