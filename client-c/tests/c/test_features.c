/*
 * The vshm C API test suite, part 2: asynchronous requests (callbacks,
 * take, the notification fd with epoll), batches, pub/sub, the script and
 * scan helpers, the ways to open a client, routes, and a daemon restart.
 * Part 1 is test_api.c. Against a real server, through the daemon or the
 * in-process core (VSHM_TEST_MODE). Run under AddressSanitizer and
 * valgrind by scripts/test-c.sh.
 */
#include "api.h"

/* ---- asynchronous ---- */

static void test_async_callbacks(void) {
    vshm_reply_free(cmd("DEL a:ctr"));
    cb_state s;
    memset(&s, 0, sizeof s);
    enum { N = 200 };
    uint64_t ids[N];
    for (int k = 0; k < N; k++) {
        const char *argv[] = {"INCR", "a:ctr"};
        ids[k] = 0;
        CHECK_OK(vshm_submit_argv(C, 2, argv, NULL, NULL, on_reply, &s, &ids[k]));
        CHECK(ids[k] != 0);
    }
    CHECK(vshm_pending(C) <= N);
    wait_all(C, &s, N, 2 * test_timeout_ms());
    CHECK(s.calls == N);
    CHECK(s.ok == N);
    CHECK(s.errors == 0);
    CHECK(s.sum == (int64_t)N * (N + 1) / 2); /* every INCR result exactly once */
    CHECK(s.client == C);
    CHECK(vshm_pending(C) == 0);
    /* Nothing pending: poll and wait return at once. */
    size_t n = 99;
    CHECK_OK(vshm_poll(C, &n));
    CHECK(n == 0);
    double t0 = now_ms();
    CHECK_OK(vshm_wait(C, 5000, &n));
    CHECK(n == 0 && now_ms() - t0 < 1000);
    /* An error is delivered to the callback with a NULL reply. */
    vshm_reply_free(cmd("SET a:str x"));
    memset(&s, 0, sizeof s);
    uint64_t id = 0;
    CHECK_OK(vshm_submit_command(C, on_reply, &s, &id, "INCR a:str"));
    wait_all(C, &s, 1, test_timeout_ms());
    CHECK(s.calls == 1 && s.last_status == VSHM_ERR_REQUEST && s.errors == 0);
    CHECK(strstr(s.last_error, "not an integer") != NULL);
    CHECK(s.last_id == id);
    /* A timeout while waiting for nothing that completes. */
    memset(&s, 0, sizeof s);
    CHECK_OK(vshm_submit_command(C, on_reply, &s, &id, "DEBUG SLEEP 0.3"));
    CHECK_ST(vshm_wait(C, 10, &n), VSHM_ERR_TIMEOUT);
    CHECK(n == 0);
    wait_all(C, &s, 1, test_timeout_ms());
    CHECK(s.calls == 1);
    vshm_reply_free(cmd("DEL a:ctr a:str"));
}

/* Callbacks that submit more requests. The library holds what they submit
 * back while the callbacks run and sends it in batches; anything that
 * waits or polls inside a callback must send it first, or it would wait
 * for requests the core never saw. */
typedef struct {
    int left; /* requests still to submit */
    int calls;
    int ok;
    int submit_failed;
} chain_state;

static void on_chain(vshm_client *c, uint64_t id, vshm_status st, vshm_reply *r, void *ud) {
    chain_state *s = ud;
    (void)id;
    s->calls++;
    if (st == VSHM_OK) {
        s->ok++;
        vshm_reply_free(r);
    }
    if (s->left > 0) {
        s->left--;
        const char *argv[] = {"INCR", "cb:chain"};
        if (vshm_submit_argv(c, 2, argv, NULL, NULL, on_chain, s, NULL) != VSHM_OK) s->submit_failed++;
    }
}

typedef struct {
    int calls;
    int sync_ok;     /* a synchronous command in the callback succeeded */
    int taken_ok;    /* a callback-less request submitted in it was taken */
    int polled_done; /* a request submitted in it completed while it polled */
} nested_state;

static void on_nested(vshm_client *c, uint64_t id, vshm_status st, vshm_reply *r, void *ud) {
    nested_state *s = ud;
    (void)id;
    s->calls++;
    if (st == VSHM_OK) vshm_reply_free(r);
    /* Submit without a callback, then run a synchronous command. */
    uint64_t sid = 0;
    CHECK_OK(vshm_submit_command(c, NULL, NULL, &sid, "INCR cb:taken"));
    vshm_reply *got = NULL;
    if (vshm_command(c, &got, "INCR cb:sync") == VSHM_OK) {
        s->sync_ok++;
        vshm_reply_free(got);
    }
    /* Take the first one's outcome. */
    vshm_reply *taken = NULL;
    vshm_status tst;
    double deadline = now_ms() + test_timeout_ms();
    while ((tst = vshm_take(c, sid, &taken)) == VSHM_PENDING && now_ms() < deadline) vshm_poll(c, NULL);
    if (tst == VSHM_OK) {
        s->taken_ok++;
        vshm_reply_free(taken);
    }
    /* Submit with a callback, then poll until it has run. */
    cb_state inner;
    memset(&inner, 0, sizeof inner);
    CHECK_OK(vshm_submit_command(c, on_reply, &inner, NULL, "INCR cb:polled"));
    deadline = now_ms() + test_timeout_ms();
    while (inner.calls == 0 && now_ms() < deadline) vshm_poll(c, NULL);
    if (inner.calls == 1 && inner.ok == 1) s->polled_done++;
}

static void test_callbacks_that_submit(void) {
    vshm_reply_free(cmd("DEL cb:chain cb:taken cb:sync cb:polled"));
    enum { CHAINS = 20, TOTAL = 500 };
    chain_state s;
    memset(&s, 0, sizeof s);
    s.left = TOTAL - CHAINS;
    for (int k = 0; k < CHAINS; k++) {
        const char *argv[] = {"INCR", "cb:chain"};
        CHECK_OK(vshm_submit_argv(C, 2, argv, NULL, NULL, on_chain, &s, NULL));
    }
    double deadline = now_ms() + 4 * test_timeout_ms();
    while (s.calls < TOTAL && now_ms() < deadline) vshm_wait(C, 200, NULL);
    CHECK(s.calls == TOTAL);
    CHECK(s.ok == TOTAL);
    CHECK(s.submit_failed == 0);
    {
        vshm_reply *r = cmd("INCRBY cb:chain 0");
        CHECK(reply_int(r) == TOTAL);
        vshm_reply_free(r);
    }
    CHECK(vshm_pending(C) == 0);

    nested_state n;
    memset(&n, 0, sizeof n);
    for (int k = 0; k < 3; k++) CHECK_OK(vshm_submit_command(C, on_nested, &n, NULL, "PING"));
    deadline = now_ms() + 4 * test_timeout_ms();
    while (n.calls < 3 && now_ms() < deadline) vshm_wait(C, 200, NULL);
    CHECK(n.calls == 3);
    CHECK(n.sync_ok == 3);
    CHECK(n.taken_ok == 3);
    CHECK(n.polled_done == 3);
    {
        vshm_reply *r = cmd("INCRBY cb:taken 0");
        CHECK(reply_int(r) == 3);
        vshm_reply_free(r);
    }
    {
        vshm_reply *r = cmd("INCRBY cb:polled 0");
        CHECK(reply_int(r) == 3);
        vshm_reply_free(r);
    }
    vshm_reply_free(cmd("DEL cb:chain cb:taken cb:sync cb:polled"));
}

static vshm_status submitv_wrapper(cb_state *s, uint64_t *id, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vshm_status st = vshm_submit_commandv(C, on_reply, s, id, fmt, ap);
    va_end(ap);
    return st;
}

static void test_async_take(void) {
    uint64_t id = 0, id_err = 0, id_cb = 0;
    cb_state s;
    memset(&s, 0, sizeof s);
    CHECK_OK(vshm_submit_command(C, NULL, NULL, &id, "ECHO %s", "taken"));
    vshm_reply_free(cmd("SET tk:str x"));
    CHECK_OK(vshm_submit_command(C, NULL, NULL, &id_err, "INCR tk:str"));
    CHECK_OK(submitv_wrapper(&s, &id_cb, "INCRBY tk:n %d", 5));
    CHECK(id != 0 && id_err != 0 && id_cb != 0 && id != id_err);
    /* A request with a callback cannot be taken. */
    vshm_reply *r = NULL;
    CHECK_ST(vshm_take(C, id_cb, &r), VSHM_ERR_INVALID_ARGUMENT);
    vshm_status st;
    double deadline = now_ms() + test_timeout_ms();
    while ((st = vshm_take(C, id, &r)) == VSHM_PENDING && now_ms() < deadline) vshm_wait(C, 100, NULL);
    CHECK_OK(st);
    char buf[16];
    CHECK(r && strcmp(reply_str(r, buf, sizeof buf), "taken") == 0);
    CHECK(r && vshm_reply_id(r) == id);
    vshm_reply_free(r);
    CHECK_ST(vshm_take(C, id, &r), VSHM_ERR_INVALID_ARGUMENT); /* already taken */
    deadline = now_ms() + test_timeout_ms();
    while ((st = vshm_take(C, id_err, &r)) == VSHM_PENDING && now_ms() < deadline) vshm_wait(C, 100, NULL);
    CHECK_ST(st, VSHM_ERR_REQUEST);
    CHECK(r == NULL);
    wait_all(C, &s, 1, test_timeout_ms());
    CHECK(s.calls == 1 && s.sum >= 5);
    vshm_reply_free(cmd("DEL tk:str tk:n"));
}

static void test_fd_epoll(void) {
    int fd = vshm_fd(C);
    REQUIRE(fd >= 0);
    CHECK(vshm_fd(C) == fd); /* stable */
    int ep = epoll_create1(EPOLL_CLOEXEC);
    struct epoll_event ev = {.events = EPOLLIN, .data.fd = fd};
    CHECK(epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) == 0);
    /* drain anything signalled so far */
    vshm_poll(C, NULL);
    cb_state s;
    memset(&s, 0, sizeof s);
    enum { N = 50 };
    for (int k = 0; k < N; k++) CHECK_OK(vshm_submit_command(C, on_reply, &s, NULL, "INCRBY fd:ctr 1"));
    double deadline = now_ms() + 2 * test_timeout_ms();
    int wakeups = 0;
    while (s.calls < N && now_ms() < deadline) {
        struct epoll_event out;
        int k = epoll_wait(ep, &out, 1, 500);
        if (k == 1) {
            wakeups++;
            CHECK(out.data.fd == fd);
            size_t n = 0;
            CHECK_OK(vshm_poll(C, &n));
        }
    }
    CHECK(s.calls == N && s.ok == N);
    CHECK(wakeups >= 1);
    /* Once everything was delivered and vshm_poll reset it, the
     * descriptor stays quiet (it may be signalled spuriously once more
     * for the last completions: retry a few times). */
    struct pollfd pfd = {.fd = fd, .events = POLLIN};
    int quiet = 0;
    for (int k = 0; k < 5 && !quiet; k++) {
        usleep(20 * 1000);
        vshm_poll(C, NULL);
        quiet = poll(&pfd, 1, 50) == 0;
    }
    CHECK(quiet);
    /* What callbacks submit reaches the core when they return: a chain
     * of requests driven only by the descriptor never stalls (an epoll
     * wait that times out would mean a request sat unsent). */
    chain_state ch;
    memset(&ch, 0, sizeof ch);
    enum { CHAIN = 100 };
    ch.left = CHAIN - 1;
    {
        const char *argv[] = {"INCR", "cb:chain"};
        CHECK_OK(vshm_submit_argv(C, 2, argv, NULL, NULL, on_chain, &ch, NULL));
    }
    int stalls = 0;
    deadline = now_ms() + 4 * test_timeout_ms();
    while (ch.calls < CHAIN && now_ms() < deadline) {
        struct epoll_event out;
        int k = epoll_wait(ep, &out, 1, test_timeout_ms());
        if (k == 1)
            CHECK_OK(vshm_poll(C, NULL));
        else if (!(k < 0 && errno == EINTR))
            stalls++;
    }
    CHECK(ch.calls == CHAIN && ch.ok == CHAIN && ch.submit_failed == 0);
    CHECK(stalls == 0);
    close(ep);
    vshm_reply_free(cmd("DEL fd:ctr cb:chain"));
}

/* ---- batches ---- */

static vshm_status batch_addv(vshm_batch *b, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vshm_status st = vshm_batch_add_commandv(b, fmt, ap);
    va_end(ap);
    return st;
}

static void test_batches(void) {
    vshm_batch *b = NULL;
    CHECK_OK(vshm_batch_new(0, &b));
    REQUIRE(b);
    const char *argv[] = {"SET", "bt:k", "v1"};
    CHECK_OK(vshm_batch_add_argv(b, 3, argv, NULL));
    CHECK_OK(vshm_batch_add_command(b, "INCR %s", "bt:n"));
    CHECK_OK(vshm_batch_add_command(b, "INCR %s", "bt:k")); /* an error in place */
    CHECK_OK(batch_addv(b, "GET %s", "bt:k"));
    CHECK(vshm_batch_len(b) == 4);
    vshm_reply_free(cmd("DEL bt:n"));
    vshm_reply *r = NULL;
    vshm_status st = vshm_batch_exec(C, b, NULL, &r);
    CHECK_OK(st);
    REQUIRE(r);
    const vshm_value *v = vshm_reply_value(r);
    CHECK(vshm_value_type(v) == VSHM_TYPE_ARRAY && vshm_value_len(v) == 4);
    CHECK(value_is(vshm_value_element(v, 0), "OK"));
    int64_t i = 0;
    CHECK(vshm_value_integer(vshm_value_element(v, 1), &i) == VSHM_OK && i == 1);
    CHECK(vshm_value_type(vshm_value_element(v, 2)) == VSHM_TYPE_ERROR);
    CHECK(value_is(vshm_value_element(v, 3), "v1"));
    vshm_reply_free(r);
    /* raise on error */
    vshm_request_options o;
    memset(&o, 0, sizeof o);
    o.flags = VSHM_FLAG_RAISE_ON_ERROR;
    CHECK_ST(vshm_batch_exec(C, b, &o, &r), VSHM_ERR_REQUEST);
    CHECK(r == NULL);
    /* submit */
    cb_state s;
    memset(&s, 0, sizeof s);
    uint64_t id = 0;
    CHECK_OK(vshm_batch_submit(C, b, NULL, on_reply, &s, &id));
    wait_all(C, &s, 1, test_timeout_ms());
    CHECK(s.calls == 1 && s.ok == 1);
    CHECK_OK(vshm_batch_clear(b));
    CHECK(vshm_batch_len(b) == 0);
    CHECK_OK(vshm_batch_free(b));

    /* a transaction with WATCH */
    CHECK_OK(vshm_batch_new(1, &b));
    CHECK_OK(vshm_batch_watch(b, "{bt}w", 5));
    CHECK_OK(vshm_batch_add_command(b, "SET {bt}w 1"));
    CHECK_OK(vshm_batch_add_command(b, "INCR {bt}w"));
    CHECK_OK(vshm_batch_exec(C, b, NULL, &r));
    CHECK(r && vshm_value_len(vshm_reply_value(r)) == 2);
    vshm_reply_free(r);
    CHECK_OK(vshm_batch_free(b));

    /* WATCH with a NUL-terminated key */
    CHECK_OK(vshm_batch_new(1, &b));
    CHECK_ST(vshm_batch_watch(b, NULL, VSHM_NUL_TERMINATED), VSHM_ERR_INVALID_ARGUMENT);
    CHECK_OK(vshm_batch_watch(b, "{bt}w", VSHM_NUL_TERMINATED));
    CHECK_OK(vshm_batch_add_command(b, "INCR {bt}w"));
    CHECK_OK(vshm_batch_exec(C, b, NULL, &r));
    REQUIRE(r);
    CHECK(vshm_value_len(vshm_reply_value(r)) == 1);
    i = 0;
    CHECK(vshm_value_integer(vshm_value_element(vshm_reply_value(r), 0), &i) == VSHM_OK && i == 3);
    vshm_reply_free(r);
    CHECK_OK(vshm_batch_free(b));
    vshm_reply_free(cmd("DEL bt:k bt:n {bt}w"));
}

/* ---- opening variants ---- */

static void test_open_variants(void) {
    const char *addr = getenv("VSHM_TEST_STANDALONE");
    vshm_config cfg;
    vshm_config_init(&cfg);
    cfg.addresses = &addr;
    cfg.naddresses = 1;
    /* One type for `database` in every struct of the header. */
    CHECK(_Generic(cfg.database, int32_t: 1, default: 0));
    CHECK(_Generic(((vshm_connect_options *)0)->database, int32_t: 1, default: 0));
    cfg.database = 3;
    cfg.client_name = "vshm-c-test";
    cfg.request_timeout_ms = 3000;
    cfg.core_threads = 1;
    vshm_client *c3 = NULL;
    CHECK_OK(vshm_open_embedded(&cfg, &c3));
    REQUIRE(c3);
    CHECK(vshm_is_embedded(c3) == 1);
    vshm_reply *r = NULL;
    CHECK_OK(vshm_command(c3, &r, "SET ov:db3 three"));
    vshm_reply_free(r);
    /* The main client (db 0, or the daemon's default) does not see it. */
    if (!is_daemon_mode()) {
        r = cmd("EXISTS ov:db3");
        CHECK(r && vshm_value_integer(vshm_reply_value(r), &(int64_t){0}) == VSHM_OK);
        int64_t e = -1;
        vshm_value_integer(vshm_reply_value(r), &e);
        CHECK(e == 0);
        vshm_reply_free(r);
    }
    /* A URI client on db 3 sees it. */
    char uri[512];
    standalone_uri(uri, sizeof uri, "db=3&name=uri-client&timeout_ms=3000");
    vshm_client *u = NULL;
    CHECK_OK(vshm_open_embedded_uri(uri, &u));
    REQUIRE(u);
    CHECK_OK(vshm_command(u, &r, "GET ov:db3"));
    CHECK(r && value_is(vshm_reply_value(r), "three"));
    vshm_reply_free(r);
    CHECK_OK(vshm_command(u, &r, "CLIENT GETNAME"));
    CHECK(r && value_is(vshm_reply_value(r), "uri-client"));
    vshm_reply_free(r);
    CHECK_OK(vshm_command(c3, &r, "DEL ov:db3"));
    vshm_reply_free(r);
    CHECK_OK(vshm_free(u));
    CHECK_OK(vshm_free(c3));
    /* NULL config: the default address (127.0.0.1:6379) — nothing there in
     * the test environment unless a server runs on 6379; either outcome
     * is a status, not a crash. */
    vshm_client *d = NULL;
    vshm_status st = vshm_open_embedded(NULL, &d);
    CHECK(st == VSHM_OK || st == VSHM_ERR_CONNECTION || st == VSHM_ERR_TIMEOUT);
    vshm_free(d);
    CHECK(vshm_is_embedded(C) == (is_daemon_mode() ? 0 : 1));
}

static void test_daemon_connect(void) {
    if (!is_daemon_mode()) SKIP("daemon mode only (VSHM_TEST_MODE=daemon)");
    vshm_connect_options o;
    vshm_connect_options_init(&o);
    o.database = 4;
    o.client_name = "c-daemon-test";
    o.connect_timeout_ms = 3000;
    o.request_timeout_ms = 3000;
    vshm_client *c = NULL;
    CHECK_OK(vshm_connect(env_or("VSHM_TEST_SOCKET", ""), &o, &c));
    REQUIRE(c);
    CHECK(vshm_is_embedded(c) == 0);
    vshm_reply *r = NULL;
    CHECK_OK(vshm_command(c, &r, "SET dc:k four"));
    vshm_reply_free(r);
    /* db 4 through an embedded client */
    char uri[512];
    standalone_uri(uri, sizeof uri, "db=4");
    vshm_client *e = NULL;
    CHECK_OK(vshm_open_embedded_uri(uri, &e));
    CHECK_OK(vshm_command(e, &r, "GET dc:k"));
    CHECK(r && value_is(vshm_reply_value(r), "four"));
    vshm_reply_free(r);
    vshm_reply_free(cmd("PING"));
    CHECK_OK(vshm_command(c, &r, "DEL dc:k"));
    vshm_reply_free(r);
    vshm_free(e);
    vshm_free(c);
}

/* ---- pub/sub ---- */

typedef struct {
    int messages;
    char last_kind[16];
    char last_channel[64];
    char last_payload[64];
    int bad;
} push_state;

static void record_push(push_state *ps, vshm_reply *m) {
    const vshm_value *v = vshm_reply_value(m);
    const char *p;
    size_t len;
    if (vshm_value_type(v) != VSHM_TYPE_PUSH || vshm_value_push_kind(v, &p, &len) != VSHM_OK) {
        ps->bad++;
        return;
    }
    snprintf(ps->last_kind, sizeof ps->last_kind, "%.*s", (int)len, p);
    size_t n = vshm_value_len(v);
    /* [channel, payload], or [channel, pattern, payload] for pmessage */
    if (n < 2 || vshm_value_string(vshm_value_element(v, 0), &p, &len) != VSHM_OK) {
        ps->bad++;
        return;
    }
    snprintf(ps->last_channel, sizeof ps->last_channel, "%.*s", (int)len, p);
    if (vshm_value_string(vshm_value_element(v, n - 1), &p, &len) != VSHM_OK) {
        ps->bad++;
        return;
    }
    snprintf(ps->last_payload, sizeof ps->last_payload, "%.*s", (int)len, p);
    ps->messages++;
}

static void on_push(vshm_client *c, vshm_reply *m, void *ud) {
    (void)c;
    record_push(ud, m);
    vshm_reply_free(m);
}

static void publish(const char *cmdname, const char *ch, const char *msg) {
    vshm_reply *r = NULL;
    CHECK_OK(vshm_command(C, &r, "%s %s %s", cmdname, ch, msg));
    vshm_reply_free(r);
}

static void test_pubsub(void) {
    vshm_client *sub = open_main();
    const char *chans[] = {"ps:news", "ps:sport"};
    int64_t count = -1;
    CHECK_OK(vshm_subscribe(sub, VSHM_SUB_EXACT, 2, chans, NULL, &count));
    CHECK(count == 2);
    const char *pat[] = {"ps:p.*"};
    size_t patlen[] = {6};
    CHECK_OK(vshm_subscribe(sub, VSHM_SUB_PATTERN, 1, pat, patlen, &count));
    CHECK(count == 3);
    const char *sh[] = {"ps:{s}1"};
    CHECK_OK(vshm_subscribe(sub, VSHM_SUB_SHARDED, 1, sh, NULL, &count));
    CHECK(count == 4);

    /* pull: vshm_next_push */
    publish("PUBLISH", "ps:news", "hello");
    vshm_reply *m = NULL;
    CHECK_OK(vshm_next_push(sub, test_timeout_ms(), &m));
    push_state ps;
    memset(&ps, 0, sizeof ps);
    if (m) record_push(&ps, m);
    vshm_reply_free(m);
    CHECK(ps.messages == 1 && ps.bad == 0);
    CHECK(strcmp(ps.last_kind, "message") == 0);
    CHECK(strcmp(ps.last_channel, "ps:news") == 0);
    CHECK(strcmp(ps.last_payload, "hello") == 0);
    publish("PUBLISH", "ps:p.x", "patterned");
    CHECK_OK(vshm_next_push(sub, test_timeout_ms(), &m));
    memset(&ps, 0, sizeof ps);
    if (m) {
        record_push(&ps, m);
        CHECK(vshm_value_len(vshm_reply_value(m)) == 3); /* channel, pattern, payload */
        CHECK(value_is(vshm_value_element(vshm_reply_value(m), 1), "ps:p.*"));
    }
    vshm_reply_free(m);
    CHECK(strcmp(ps.last_kind, "pmessage") == 0 && strcmp(ps.last_channel, "ps:p.x") == 0);
    publish("SPUBLISH", "ps:{s}1", "sharded");
    CHECK_OK(vshm_next_push(sub, test_timeout_ms(), &m));
    memset(&ps, 0, sizeof ps);
    if (m) record_push(&ps, m);
    vshm_reply_free(m);
    CHECK(strcmp(ps.last_kind, "smessage") == 0 && strcmp(ps.last_payload, "sharded") == 0);
    CHECK_ST(vshm_next_push(sub, 50, &m), VSHM_ERR_TIMEOUT);
    CHECK(m == NULL);

    /* push callback through vshm_wait */
    memset(&ps, 0, sizeof ps);
    CHECK_OK(vshm_set_push_callback(sub, on_push, &ps));
    for (int k = 0; k < 5; k++) publish("PUBLISH", "ps:sport", "goal");
    double deadline = now_ms() + test_timeout_ms();
    while (ps.messages < 5 && now_ms() < deadline) vshm_wait(sub, 100, NULL);
    CHECK(ps.messages == 5 && ps.bad == 0);
    CHECK(strcmp(ps.last_channel, "ps:sport") == 0);
    /* with a push callback set, vshm_wait waits for messages too */
    double t0 = now_ms();
    CHECK_ST(vshm_wait(sub, 100, NULL), VSHM_ERR_TIMEOUT);
    CHECK(now_ms() - t0 >= 90);

    /* unsubscribe: delivery stops */
    CHECK_OK(vshm_unsubscribe(sub, VSHM_SUB_EXACT, 1, chans, NULL, &count));
    CHECK(count == 3);
    CHECK_OK(vshm_unsubscribe(sub, VSHM_SUB_PATTERN, 0, NULL, NULL, &count));
    CHECK(count == 2);
    CHECK_OK(vshm_set_push_callback(sub, NULL, NULL));
    publish("PUBLISH", "ps:news", "nobody");
    publish("PUBLISH", "ps:p.y", "nobody");
    publish("PUBLISH", "ps:sport", "still");
    CHECK_OK(vshm_next_push(sub, test_timeout_ms(), &m));
    memset(&ps, 0, sizeof ps);
    if (m) record_push(&ps, m);
    vshm_reply_free(m);
    CHECK(strcmp(ps.last_payload, "still") == 0);
    CHECK_ST(vshm_next_push(sub, 100, &m), VSHM_ERR_TIMEOUT);

    /* bad arguments */
    CHECK_ST(vshm_subscribe(sub, 7, 1, chans, NULL, &count), VSHM_ERR_INVALID_ARGUMENT);
    CHECK_ST(vshm_subscribe(sub, VSHM_SUB_EXACT, 0, chans, NULL, &count), VSHM_ERR_INVALID_ARGUMENT);
    CHECK_ST(vshm_subscribe(NULL, VSHM_SUB_EXACT, 1, chans, NULL, &count), VSHM_ERR_INVALID_ARGUMENT);
    CHECK_ST(vshm_unsubscribe(sub, VSHM_SUB_EXACT, -1, chans, NULL, &count), VSHM_ERR_INVALID_ARGUMENT);
    CHECK_ST(vshm_next_push(sub, -1, &m), VSHM_ERR_INVALID_ARGUMENT);
    CHECK_ST(vshm_next_push(sub, 0, NULL), VSHM_ERR_INVALID_ARGUMENT);
    CHECK_ST(vshm_set_push_callback(NULL, on_push, NULL), VSHM_ERR_INVALID_ARGUMENT);
    CHECK_OK(vshm_free(sub));
}

/* ---- scripts and scan ---- */

/* A forked child whose only use of a subscribed client is vshm_wait (or
 * vshm_poll) with a push callback: that call opens the child's
 * registration (the subscription is replayed there) instead of spinning
 * until its timeout (or returning nothing forever). */
static void push_in_forked_child(int use_poll) {
    vshm_client *sub = open_main();
    const char *ch[] = {"pf:chan"};
    CHECK_OK(vshm_subscribe(sub, VSHM_SUB_EXACT, 1, ch, NULL, NULL));
    int pfd[2];
    REQUIRE(pipe(pfd) == 0);
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        close(pfd[0]);
        push_state ps;
        memset(&ps, 0, sizeof ps);
        int rc = 0;
        if (vshm_set_push_callback(sub, on_push, &ps) != VSHM_OK) rc |= 1;
        double deadline = now_ms() + test_timeout_ms();
        while (ps.messages == 0 && now_ms() < deadline) {
            if (use_poll) {
                if (vshm_poll(sub, NULL) != VSHM_OK) rc |= 2;
                usleep(10 * 1000);
            } else {
                vshm_status st = vshm_wait(sub, 100, NULL);
                if (st != VSHM_OK && st != VSHM_ERR_TIMEOUT) rc |= 2;
            }
        }
        if (ps.messages == 0 || strcmp(ps.last_channel, "pf:chan") != 0) rc |= 4;
        unsigned char b = (unsigned char)rc;
        if (write(pfd[1], &b, 1) != 1) _exit(100);
        _exit(0);
    }
    close(pfd[1]);
    REQUIRE(pid > 0);
    /* Publish until the child reports (its subscription exists only once
     * its wait or poll has registered). */
    struct pollfd p = {pfd[0], POLLIN, 0};
    double deadline = now_ms() + test_timeout_ms() + 2000;
    while (now_ms() < deadline) {
        publish("PUBLISH", "pf:chan", "to-the-child");
        if (poll(&p, 1, 50) > 0) break;
    }
    unsigned char child_rc = 255;
    CHECK(read(pfd[0], &child_rc, 1) == 1);
    close(pfd[0]);
    int status = 0;
    CHECK(waitpid(pid, &status, 0) == pid);
    if (child_rc != 0) fprintf(stderr, "   child rc %d (%s)\n", child_rc, use_poll ? "poll" : "wait");
    CHECK(child_rc == 0);
    vshm_free(sub);
}

static void test_pushes_in_forked_child(void) {
    if (getenv("VSHM_TEST_NO_FORK") != NULL) SKIP("VSHM_TEST_NO_FORK");
    push_in_forked_child(0);
    push_in_forked_child(1);
}

static void test_script_api(void) {
    const char *code = "redis.call('SET', KEYS[1], ARGV[1]); return redis.call('GET', KEYS[1]) .. ARGV[2]";
    const char *keys[] = {"sc:k"};
    const char *args[] = {"value", "!"};
    vshm_reply *r = NULL;
    CHECK_OK(vshm_script(C, code, strlen(code), 1, keys, NULL, 2, args, NULL, NULL, &r));
    CHECK(r && value_is(vshm_reply_value(r), "value!"));
    vshm_reply_free(r);
    /* again (cached hash), asynchronously */
    cb_state s;
    memset(&s, 0, sizeof s);
    const char *incr = "return redis.call('INCRBY', KEYS[1], ARGV[1])";
    const char *nkey[] = {"sc:n"};
    const char *five[] = {"5"};
    size_t fivelen[] = {1};
    uint64_t id = 0;
    for (int k = 0; k < 3; k++)
        CHECK_OK(vshm_submit_script(C, incr, strlen(incr), 1, nkey, NULL, 1, five, fivelen, NULL, on_reply, &s, &id));
    CHECK(id != 0);
    wait_all(C, &s, 3, test_timeout_ms());
    CHECK(s.ok == 3 && s.sum == 5 + 10 + 15);
    /* script errors and bad arguments */
    const char *bad = "return redis.error_reply('SCRIPTERR boom')";
    CHECK_ST(vshm_script(C, bad, strlen(bad), 0, NULL, NULL, 0, NULL, NULL, NULL, &r), VSHM_ERR_REQUEST);
    CHECK(strstr(vshm_last_error_message(), "boom") != NULL);
    CHECK_ST(vshm_script(C, NULL, 3, 0, NULL, NULL, 0, NULL, NULL, NULL, &r), VSHM_ERR_INVALID_ARGUMENT);
    CHECK_ST(vshm_script(C, code, strlen(code), -1, keys, NULL, 0, NULL, NULL, NULL, &r), VSHM_ERR_INVALID_ARGUMENT);
    CHECK_ST(vshm_submit_script(NULL, code, strlen(code), 0, NULL, NULL, 0, NULL, NULL, NULL, NULL, NULL, &id),
             VSHM_ERR_INVALID_ARGUMENT);
    vshm_reply_free(cmd("DEL sc:k sc:n"));
}

/* Scan the whole keyspace of client c for keys matching pattern. */
static int scan_count(vshm_client *c, const char *pattern, const char *type) {
    uint64_t cursor = 0;
    int found = 0, steps = 0;
    do {
        vshm_reply *r = NULL;
        uint64_t next = 0;
        vshm_status st = vshm_scan(c, cursor, pattern, pattern ? strlen(pattern) : 0, 100, type, NULL, &next, &r);
        if (st != VSHM_OK) return -1;
        const vshm_value *keys = vshm_value_element(vshm_reply_value(r), 1);
        found += (int)vshm_value_len(keys);
        vshm_reply_free(r);
        cursor = next;
    } while (cursor != 0 && ++steps < 10000);
    return found;
}

static void test_scan(void) {
    for (int k = 0; k < 30; k++) vshm_reply_free(cmd("SET scan:%d x", k));
    vshm_reply_free(cmd("RPUSH scan:list a"));
    CHECK(scan_count(C, "scan:*", NULL) >= 31);
    CHECK(scan_count(C, "scan:*", "list") == 1);
    CHECK(scan_count(C, "scan:nothing*", NULL) == 0);
    vshm_reply *r = NULL;
    uint64_t next;
    CHECK_ST(vshm_scan(C, 0, NULL, 0, 10, NULL, NULL, NULL, &r), VSHM_ERR_INVALID_ARGUMENT);
    CHECK_ST(vshm_scan(C, 0, NULL, 5, 10, NULL, NULL, &next, &r), VSHM_ERR_INVALID_ARGUMENT);
    CHECK_ST(vshm_scan(NULL, 0, NULL, 0, 10, NULL, NULL, &next, &r), VSHM_ERR_INVALID_ARGUMENT);
    for (int k = 0; k < 30; k++) vshm_reply_free(cmd("DEL scan:%d", k));
    vshm_reply_free(cmd("DEL scan:list"));
}

/* The stage script passes a command that restarts vshmd: the client must
 * re-register by itself; a request in flight ends (no hang). */
static void test_daemon_restart(void) {
    const char *restart = getenv("VSHM_TEST_DAEMON_RESTART");
    if (!is_daemon_mode() || !restart || !*restart) SKIP("needs daemon mode and VSHM_TEST_DAEMON_RESTART");
    vshm_client *c = open_main();
    vshm_reply *r = NULL;
    CHECK_OK(vshm_command(c, &r, "SET dr:k before"));
    vshm_reply_free(r);
    const char *ch[] = {"dr:chan"};
    CHECK_OK(vshm_subscribe(c, VSHM_SUB_EXACT, 1, ch, NULL, NULL));
    cb_state s;
    memset(&s, 0, sizeof s);
    CHECK_OK(vshm_submit_command(c, on_reply, &s, NULL, "DEBUG SLEEP 0.3"));
    fflush(NULL);
    CHECK(system(restart) == 0);
    wait_all(c, &s, 1, test_timeout_ms());
    CHECK(s.calls == 1);
    /* New requests go through a new registration (a few may fail while
     * the old one is found dead). */
    vshm_status st = VSHM_ERR_CONNECTION;
    int failures = 0;
    double deadline = now_ms() + test_timeout_ms();
    while (now_ms() < deadline) {
        st = vshm_command(c, &r, "GET dr:k");
        if (st == VSHM_OK) break;
        failures++;
        CHECK(st == VSHM_ERR_CONNECTION || st == VSHM_ERR_CLOSING);
        usleep(20 * 1000);
    }
    CHECK_OK(st);
    CHECK(r && value_is(vshm_reply_value(r), "before"));
    vshm_reply_free(r);
    CHECK(failures <= 3);
    /* the subscription was renewed on the new registration */
    publish("PUBLISH", "dr:chan", "after-restart");
    vshm_reply *m = NULL;
    CHECK_OK(vshm_next_push(c, test_timeout_ms(), &m));
    push_state ps;
    memset(&ps, 0, sizeof ps);
    if (m) record_push(&ps, m);
    vshm_reply_free(m);
    CHECK(strcmp(ps.last_payload, "after-restart") == 0);
    memset(&s, 0, sizeof s);
    CHECK_OK(vshm_submit_command(c, on_reply, &s, NULL, "INCR dr:n"));
    wait_all(c, &s, 1, test_timeout_ms());
    CHECK(s.ok == 1);
    CHECK_OK(vshm_command(c, &r, "DEL dr:k dr:n"));
    vshm_reply_free(r);
    vshm_free(c);
    /* the shared client re-registers too */
    r = cmd("PING");
    CHECK(r != NULL);
    vshm_reply_free(r);
}

static void test_routes(void) {
    const char *cluster = getenv("VSHM_TEST_CLUSTER");
    if (!cluster || !*cluster) SKIP("VSHM_TEST_CLUSTER not set");
    char first[64];
    snprintf(first, sizeof first, "%s", cluster);
    char *comma = strchr(first, ',');
    if (comma) *comma = 0;
    char uri[256];
    snprintf(uri, sizeof uri, "valkey://%s?cluster=1&timeout_ms=3000", first);
    vshm_client *c = NULL;
    CHECK_OK(vshm_open_embedded_uri(uri, &c));
    REQUIRE(c);
    vshm_reply *r = NULL;
    /* auto routing by key */
    for (int k = 0; k < 20; k++) {
        CHECK_OK(vshm_command(c, &r, "SET rt:%d %d", k, k));
        vshm_reply_free(r);
    }
    CHECK_OK(vshm_command(c, &r, "GET rt:7"));
    CHECK(r && value_is(vshm_reply_value(r), "7"));
    vshm_reply_free(r);
    vshm_request_options o;
    const char *dbsize[] = {"DBSIZE"};
    /* all primaries: DBSIZE sums over the shards */
    memset(&o, 0, sizeof o);
    o.route.kind = VSHM_ROUTE_ALL_PRIMARIES;
    CHECK_OK(vshm_command_argv_opts(c, 1, dbsize, NULL, &o, &r));
    int64_t total = -1;
    CHECK(r && vshm_value_integer(vshm_reply_value(r), &total) == VSHM_OK && total >= 20);
    vshm_reply_free(r);
    /* all nodes */
    const char *ping[] = {"PING"};
    o.route.kind = VSHM_ROUTE_ALL_NODES;
    CHECK_OK(vshm_command_argv_opts(c, 1, ping, NULL, &o, &r));
    vshm_reply_free(r);
    o.route.kind = VSHM_ROUTE_RANDOM;
    CHECK_OK(vshm_command_argv_opts(c, 1, ping, NULL, &o, &r));
    vshm_reply_free(r);
    /* slot key: a keyless command sent to the node of rt:7 */
    o.route.kind = VSHM_ROUTE_SLOT_KEY;
    o.route.key = "rt:7";
    o.route.key_len = 4;
    const char *myid[] = {"CLUSTER", "MYID"};
    CHECK_OK(vshm_command_argv_opts(c, 2, myid, NULL, &o, &r));
    char id_by_key[64] = "";
    CHECK(r && reply_str(r, id_by_key, sizeof id_by_key) && strlen(id_by_key) == 40);
    vshm_reply_free(r);
    /* slot id: the same slot must land on the same node */
    CHECK_OK(vshm_command(c, &r, "CLUSTER KEYSLOT rt:7"));
    int64_t slot = -1;
    vshm_value_integer(vshm_reply_value(r), &slot);
    vshm_reply_free(r);
    memset(&o, 0, sizeof o);
    o.route.kind = VSHM_ROUTE_SLOT_ID;
    o.route.slot = (uint32_t)slot;
    CHECK_OK(vshm_command_argv_opts(c, 2, myid, NULL, &o, &r));
    char id_by_slot[64] = "";
    CHECK(r && reply_str(r, id_by_slot, sizeof id_by_slot) && strcmp(id_by_key, id_by_slot) == 0);
    vshm_reply_free(r);
    /* address: CONFIG GET port answers with that node's port */
    char host[64];
    snprintf(host, sizeof host, "%s", first);
    char *colon = strrchr(host, ':');
    REQUIRE(colon);
    *colon = 0;
    int port = atoi(colon + 1);
    memset(&o, 0, sizeof o);
    o.route.kind = VSHM_ROUTE_ADDRESS;
    o.route.host = host;
    o.route.port = (uint32_t)port;
    const char *cfgport[] = {"CONFIG", "GET", "port"};
    CHECK_OK(vshm_command_argv_opts(c, 3, cfgport, NULL, &o, &r));
    if (r) {
        const vshm_value *v = vshm_reply_value(r);
        char want[16];
        snprintf(want, sizeof want, "%d", port);
        const vshm_value *pv =
            vshm_value_type(v) == VSHM_TYPE_MAP ? vshm_value_map_value(v, 0) : vshm_value_element(v, 1);
        CHECK(value_is(pv, want));
    }
    vshm_reply_free(r);
    /* a scan covers every node */
    CHECK(scan_count(c, "rt:*", NULL) >= 20);
    for (int k = 0; k < 20; k++) {
        CHECK_OK(vshm_command(c, &r, "DEL rt:%d", k));
        vshm_reply_free(r);
    }
    CHECK_OK(vshm_free(c));
}


int main(void) {
    C = open_main();
    fprintf(stderr, "vshm %s, mode %s\n", vshm_version(), is_daemon_mode() ? "daemon" : "embedded");
    RUN(test_async_callbacks);
    RUN(test_callbacks_that_submit);
    RUN(test_async_take);
    RUN(test_fd_epoll);
    RUN(test_batches);
    RUN(test_pubsub);
    RUN(test_pushes_in_forked_child);
    RUN(test_script_api);
    RUN(test_scan);
    RUN(test_open_variants);
    RUN(test_daemon_connect);
    RUN(test_routes);
    RUN(test_daemon_restart);
    CHECK_OK(vshm_free(C));
    return h_summary();
}
