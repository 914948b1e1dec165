/*
 * The vshm C API test suite, part 1: the synchronous API (every function,
 * invalid arguments, freed handles, value types, large values, pinned
 * replies, timeouts), threads, and the client's lifecycle (free with
 * requests pending, fork). Part 2 is test_features.c. Against a real
 * server, through the daemon or the in-process core (VSHM_TEST_MODE).
 * Run under AddressSanitizer and valgrind by scripts/test-c.sh.
 */
#include "api.h"

/* ------------------------------------------------------------------------ */

static void test_version_and_names(void) {
    CHECK(vshm_version() != NULL && strlen(vshm_version()) > 0);
    /* The header's version macros match the library this program runs with. */
    char want[64];
    snprintf(want, sizeof want, "%d.%d.%d", VSHM_VERSION_MAJOR, VSHM_VERSION_MINOR, VSHM_VERSION_PATCH);
    if (strcmp(vshm_version(), want) != 0) {
        fprintf(stderr, "   vshm_version() = \"%s\", header says %s\n", vshm_version(), want);
        CHECK(strcmp(vshm_version(), want) == 0);
    }
#if VSHM_VERSION_MAJOR < 0 || VSHM_VERSION_MINOR < 0 || VSHM_VERSION_PATCH < 0
#error "the version macros must be usable in #if"
#endif
    CHECK(strstr(vshm_errstr(VSHM_OK), "VSHM_OK") != NULL);
    const vshm_status all[] = {VSHM_ERR_REQUEST, VSHM_ERR_TIMEOUT, VSHM_ERR_CONNECTION, VSHM_ERR_CLOSING,
                               VSHM_ERR_EXEC_ABORT, VSHM_ERR_INVALID_REQUEST, VSHM_ERR_OVERLOADED,
                               VSHM_ERR_INVALID_ARGUMENT, VSHM_ERR_WRONG_TYPE, VSHM_ERR_INTERNAL, VSHM_PENDING};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) {
        CHECK(strncmp(vshm_errstr(all[i]), "VSHM_", 5) == 0);
    }
    CHECK(strcmp(vshm_errstr(12345), "unknown vshm status") == 0);
    CHECK(strcmp(vshm_type_name(VSHM_TYPE_STRING), "string") == 0);
    CHECK(strcmp(vshm_type_name(VSHM_TYPE_ATTRIBUTE), "attribute") == 0);
    CHECK(strcmp(vshm_type_name(VSHM_TYPE_INVALID), "invalid") == 0);
    CHECK(strcmp(vshm_type_name(99), "invalid") == 0);
}

static void test_invalid_arguments(void) {
    vshm_reply *r = (vshm_reply *)0x1;
    const char *argv[] = {"PING"};
    size_t badlen[] = {(size_t)-1};
    uint64_t id = 77;
    size_t n = 99;

    CHECK_ST(vshm_command_argv(NULL, 1, argv, NULL, &r), VSHM_ERR_INVALID_ARGUMENT);
    CHECK(r == NULL);
    CHECK(vshm_last_error_status() == VSHM_ERR_INVALID_ARGUMENT);
    CHECK(strstr(vshm_last_error_message(), "NULL") != NULL);
    CHECK_ST(vshm_command_argv(C, 1, argv, NULL, NULL), VSHM_ERR_INVALID_ARGUMENT);
    CHECK_ST(vshm_command_argv(C, 0, argv, NULL, &r), VSHM_ERR_INVALID_ARGUMENT);
    CHECK_ST(vshm_command_argv(C, -3, argv, NULL, &r), VSHM_ERR_INVALID_ARGUMENT);
    CHECK(strstr(vshm_last_error_message(), "-3") != NULL);
    CHECK_ST(vshm_command_argv(C, 1, NULL, NULL, &r), VSHM_ERR_INVALID_ARGUMENT);
    const char *nullarg[] = {NULL};
    CHECK_ST(vshm_command_argv(C, 1, nullarg, NULL, &r), VSHM_ERR_INVALID_ARGUMENT);
    CHECK_ST(vshm_command_argv(C, 1, argv, badlen, &r), VSHM_ERR_INVALID_ARGUMENT);
    CHECK(strstr(vshm_last_error_message(), "too large") != NULL);
    CHECK_ST(vshm_command_argv_opts(NULL, 1, argv, NULL, NULL, &r), VSHM_ERR_INVALID_ARGUMENT);
    CHECK_ST(vshm_command(NULL, &r, "PING"), VSHM_ERR_INVALID_ARGUMENT);
    CHECK_ST(vshm_command(C, NULL, "PING"), VSHM_ERR_INVALID_ARGUMENT);
    CHECK_ST(vshm_command(C, &r, NULL), VSHM_ERR_INVALID_ARGUMENT);
    CHECK_ST(vshm_command(C, &r, ""), VSHM_ERR_INVALID_ARGUMENT);
    CHECK_ST(vshm_command(C, &r, "GET %s", (const char *)NULL), VSHM_ERR_INVALID_ARGUMENT);
    CHECK_ST(vshm_command(C, &r, "GET %q"), VSHM_ERR_INVALID_ARGUMENT);
    CHECK(strstr(vshm_last_error_message(), "%q") != NULL);
    CHECK_ST(vshm_command(C, &r, "GET %"), VSHM_ERR_INVALID_ARGUMENT);
    CHECK_ST(vshm_submit_argv(NULL, 1, argv, NULL, NULL, NULL, NULL, &id), VSHM_ERR_INVALID_ARGUMENT);
    CHECK(id == 0);
    CHECK_ST(vshm_submit_argv(C, 0, argv, NULL, NULL, NULL, NULL, &id), VSHM_ERR_INVALID_ARGUMENT);
    CHECK_ST(vshm_submit_command(NULL, NULL, NULL, &id, "PING"), VSHM_ERR_INVALID_ARGUMENT);
    CHECK_ST(vshm_poll(NULL, &n), VSHM_ERR_INVALID_ARGUMENT);
    CHECK(n == 0);
    CHECK_ST(vshm_wait(NULL, 0, NULL), VSHM_ERR_INVALID_ARGUMENT);
    CHECK_ST(vshm_wait(C, -1, NULL), VSHM_ERR_INVALID_ARGUMENT);
    CHECK_ST(vshm_take(NULL, 1, &r), VSHM_ERR_INVALID_ARGUMENT);
    CHECK_ST(vshm_take(C, 1, NULL), VSHM_ERR_INVALID_ARGUMENT);
    CHECK_ST(vshm_take(C, 123456789, &r), VSHM_ERR_INVALID_ARGUMENT);
    CHECK(vshm_pending(NULL) == 0);
    CHECK(vshm_fd(NULL) == -1);
    CHECK(vshm_is_embedded(NULL) == -1);
    CHECK_OK(vshm_free(NULL));

    /* options */
    vshm_request_options o;
    memset(&o, 0, sizeof o);
    o.flags = 0x80;
    CHECK_ST(vshm_command_argv_opts(C, 1, argv, NULL, &o, &r), VSHM_ERR_INVALID_ARGUMENT);
    memset(&o, 0, sizeof o);
    o.route.kind = 42;
    CHECK_ST(vshm_command_argv_opts(C, 1, argv, NULL, &o, &r), VSHM_ERR_INVALID_ARGUMENT);
    o.route.kind = VSHM_ROUTE_SLOT_ID;
    o.route.slot = 16384;
    CHECK_ST(vshm_command_argv_opts(C, 1, argv, NULL, &o, &r), VSHM_ERR_INVALID_ARGUMENT);
    o.route.kind = VSHM_ROUTE_SLOT_KEY;
    o.route.key = NULL;
    o.route.key_len = 3;
    CHECK_ST(vshm_command_argv_opts(C, 1, argv, NULL, &o, &r), VSHM_ERR_INVALID_ARGUMENT);
    o.route.kind = VSHM_ROUTE_ADDRESS;
    o.route.host = NULL;
    CHECK_ST(vshm_command_argv_opts(C, 1, argv, NULL, &o, &r), VSHM_ERR_INVALID_ARGUMENT);
    o.route.host = "127.0.0.1";
    o.route.port = 70000;
    CHECK_ST(vshm_command_argv_opts(C, 1, argv, NULL, &o, &r), VSHM_ERR_INVALID_ARGUMENT);

    /* replies and values */
    CHECK_OK(vshm_reply_free(NULL));
    CHECK(vshm_reply_value(NULL) == NULL);
    CHECK_ST(vshm_reply_detach(NULL), VSHM_ERR_INVALID_ARGUMENT);
    CHECK(vshm_reply_in_ring(NULL) == -1);
    CHECK(vshm_reply_id(NULL) == 0);
    int64_t i64;
    double d;
    bool b;
    const char *p;
    size_t len;
    CHECK(vshm_value_type(NULL) == VSHM_TYPE_INVALID);
    CHECK_ST(vshm_value_integer(NULL, &i64), VSHM_ERR_INVALID_ARGUMENT);
    CHECK_ST(vshm_value_double(NULL, &d), VSHM_ERR_INVALID_ARGUMENT);
    CHECK_ST(vshm_value_bool(NULL, &b), VSHM_ERR_INVALID_ARGUMENT);
    CHECK_ST(vshm_value_string(NULL, &p, &len), VSHM_ERR_INVALID_ARGUMENT);
    CHECK_ST(vshm_value_verbatim_format(NULL, &p, &len), VSHM_ERR_INVALID_ARGUMENT);
    CHECK_ST(vshm_value_push_kind(NULL, &p, &len), VSHM_ERR_INVALID_ARGUMENT);
    CHECK(vshm_value_strdup(NULL) == NULL);
    vshm_string_free(NULL);
    CHECK(vshm_value_len(NULL) == 0);
    CHECK(vshm_value_element(NULL, 0) == NULL);
    CHECK(vshm_value_map_key(NULL, 0) == NULL);
    CHECK(vshm_value_map_value(NULL, 0) == NULL);
    CHECK(vshm_value_attribute_data(NULL) == NULL);

    /* batches */
    vshm_batch *bt = (vshm_batch *)0x1;
    CHECK_ST(vshm_batch_new(0, NULL), VSHM_ERR_INVALID_ARGUMENT);
    CHECK_ST(vshm_batch_add_argv(NULL, 1, argv, NULL), VSHM_ERR_INVALID_ARGUMENT);
    CHECK_ST(vshm_batch_add_command(NULL, "PING"), VSHM_ERR_INVALID_ARGUMENT);
    CHECK_ST(vshm_batch_watch(NULL, "k", 1), VSHM_ERR_INVALID_ARGUMENT);
    CHECK(vshm_batch_len(NULL) == 0);
    CHECK_ST(vshm_batch_clear(NULL), VSHM_ERR_INVALID_ARGUMENT);
    CHECK_OK(vshm_batch_free(NULL));
    CHECK_ST(vshm_batch_exec(C, NULL, NULL, &r), VSHM_ERR_INVALID_ARGUMENT);
    CHECK_ST(vshm_batch_submit(C, NULL, NULL, NULL, NULL, &id), VSHM_ERR_INVALID_ARGUMENT);
    CHECK_OK(vshm_batch_new(0, &bt));
    CHECK_ST(vshm_batch_exec(C, bt, NULL, &r), VSHM_ERR_INVALID_ARGUMENT); /* empty */
    CHECK_ST(vshm_batch_exec(NULL, bt, NULL, &r), VSHM_ERR_INVALID_ARGUMENT);
    CHECK_ST(vshm_batch_add_argv(bt, -1, argv, NULL), VSHM_ERR_INVALID_ARGUMENT);
    CHECK_ST(vshm_batch_watch(bt, "k", 1), VSHM_ERR_INVALID_ARGUMENT); /* not atomic */
    CHECK_OK(vshm_batch_free(bt));

    /* opening */
    vshm_client *c2 = (vshm_client *)0x1;
    CHECK_ST(vshm_open_embedded_uri(NULL, &c2), VSHM_ERR_INVALID_ARGUMENT);
    CHECK(c2 == NULL);
    CHECK_ST(vshm_open_embedded_uri("valkey://127.0.0.1:6379", NULL), VSHM_ERR_INVALID_ARGUMENT);
    CHECK_ST(vshm_open_embedded_uri("http://x", &c2), VSHM_ERR_INVALID_ARGUMENT);
    CHECK_ST(vshm_open_embedded_uri("valkey://h?bogus=1", &c2), VSHM_ERR_INVALID_ARGUMENT);
    CHECK_ST(vshm_open_embedded_uri("valkey://:hunter2@h:notaport", &c2), VSHM_ERR_INVALID_ARGUMENT);
    CHECK(strstr(vshm_last_error_message(), "hunter2") == NULL);
    vshm_config cfg;
    vshm_config_init(&cfg);
    vshm_config_init(NULL);
    cfg.read_from = 99;
    CHECK_ST(vshm_open_embedded(&cfg, &c2), VSHM_ERR_INVALID_ARGUMENT);
    vshm_config_init(&cfg);
    const char *addrs[] = {NULL};
    cfg.addresses = addrs;
    cfg.naddresses = 1;
    CHECK_ST(vshm_open_embedded(&cfg, &c2), VSHM_ERR_INVALID_ARGUMENT);
    const char *bad_addr[] = {"no-port-here"};
    cfg.addresses = bad_addr;
    CHECK_ST(vshm_open_embedded(&cfg, &c2), VSHM_ERR_INVALID_ARGUMENT);
    CHECK_ST(vshm_open_embedded(&cfg, NULL), VSHM_ERR_INVALID_ARGUMENT);
    /* nothing listens on port 1 */
    const char *closed_port[] = {"127.0.0.1:1"};
    cfg.addresses = closed_port;
    cfg.connection_timeout_ms = 500;
    CHECK_ST(vshm_open_embedded(&cfg, &c2), VSHM_ERR_CONNECTION);
    CHECK(c2 == NULL);
    vshm_connect_options co;
    vshm_connect_options_init(&co);
    vshm_connect_options_init(NULL);
    CHECK(co.database == -1);
    CHECK_ST(vshm_connect(NULL, &co, &c2), VSHM_ERR_INVALID_ARGUMENT);
    CHECK_ST(vshm_connect("/nonexistent/vshmd.sock", &co, NULL), VSHM_ERR_INVALID_ARGUMENT);
    CHECK_ST(vshm_connect("/nonexistent/vshmd.sock", &co, &c2), VSHM_ERR_CONNECTION);
    CHECK_ST(vshm_connect("/nonexistent/vshmd.sock", NULL, &c2), VSHM_ERR_CONNECTION);
    CHECK(c2 == NULL);
}

static void test_freed_handles(void) {
    vshm_client *c = open_main();
    vshm_reply *r = NULL;
    CHECK_OK(vshm_command(c, &r, "PING"));
    CHECK_OK(vshm_free(c));
    /* Use after free and double free are reported, not crashes. */
    vshm_reply *r2 = NULL;
    CHECK_ST(vshm_command(c, &r2, "PING"), VSHM_ERR_INVALID_ARGUMENT);
    CHECK(strstr(vshm_last_error_message(), "freed") != NULL);
    CHECK_ST(vshm_free(c), VSHM_ERR_INVALID_ARGUMENT);
    CHECK(vshm_fd(c) == -1);
    CHECK(vshm_is_embedded(c) == -1);
    /* The reply outlives its client. */
    CHECK(r != NULL && value_is(vshm_reply_value(r), "PONG"));
    CHECK_OK(vshm_reply_free(r));
    CHECK_ST(vshm_reply_free(r), VSHM_ERR_INVALID_ARGUMENT);
    CHECK(vshm_reply_value(r) == NULL);
    CHECK_ST(vshm_reply_detach(r), VSHM_ERR_INVALID_ARGUMENT);
    CHECK(vshm_reply_in_ring(r) == -1);
    vshm_batch *b = NULL;
    CHECK_OK(vshm_batch_new(1, &b));
    CHECK_OK(vshm_batch_free(b));
    CHECK_ST(vshm_batch_free(b), VSHM_ERR_INVALID_ARGUMENT);
    CHECK_ST(vshm_batch_add_command(b, "PING"), VSHM_ERR_INVALID_ARGUMENT);
    /* Not a handle at all: misaligned pointers are caught. */
    char junk[16] = {0};
    CHECK_ST(vshm_reply_free((vshm_reply *)(junk + 1)), VSHM_ERR_INVALID_ARGUMENT);
}

static void test_sync_commands(void) {
    /* argv, binary safe */
    const char key[] = "c:bin\0key";
    const char val[] = "v\0a\r\nl\xff";
    const char *argv[] = {"SET", key, val};
    size_t argvlen[] = {3, sizeof key - 1, sizeof val - 1};
    vshm_reply *r = NULL;
    CHECK_OK(vshm_command_argv(C, 3, argv, argvlen, &r));
    REQUIRE(r != NULL);
    CHECK(vshm_value_type(vshm_reply_value(r)) == VSHM_TYPE_STATUS);
    CHECK(value_is(vshm_reply_value(r), "OK"));
    CHECK(vshm_reply_id(r) != 0);
    CHECK_OK(vshm_reply_free(r));

    const char *get[] = {"GET", key};
    size_t getlen[] = {3, sizeof key - 1};
    CHECK_OK(vshm_command_argv(C, 2, get, getlen, &r));
    REQUIRE(r != NULL);
    const vshm_value *v = vshm_reply_value(r);
    const char *p;
    size_t len;
    CHECK(vshm_value_type(v) == VSHM_TYPE_STRING);
    CHECK_OK(vshm_value_string(v, &p, &len));
    CHECK(len == sizeof val - 1 && memcmp(p, val, len) == 0);
    CHECK(vshm_value_len(v) == sizeof val - 1);
    CHECK(vshm_reply_in_ring(r) == 1); /* zero copy */
    char *dup = vshm_value_strdup(v);
    CHECK(dup != NULL && memcmp(dup, val, sizeof val) == 0);
    vshm_string_free(dup);
    CHECK_OK(vshm_reply_free(r));

    /* NUL-terminated argv (argvlen NULL) and options */
    const char *set2[] = {"SET", "c:plain", "x"};
    vshm_request_options o;
    memset(&o, 0, sizeof o);
    o.timeout_ms = 2000;
    CHECK_OK(vshm_command_argv_opts(C, 3, set2, NULL, &o, &r));
    vshm_reply_free(r);

    /* printf-style */
    CHECK_OK(vshm_command(C, &r, "SET c:fmt %s:%d:%lld:%u:%zu:%x:%%:%b", "s", -7, (long long)1 << 40, 9u, (size_t)5,
                          255u, "bi\0n", (size_t)4));
    vshm_reply_free(r);
    char buf[128];
    r = cmd("GET c:fmt");
    CHECK(r && memcmp(reply_str(r, buf, sizeof buf), "s:-7:1099511627776:9:5:ff:%:bi", 31) == 0);
    CHECK(r && vshm_value_len(vshm_reply_value(r)) == 32);
    vshm_reply_free(r);
    CHECK_OK(vshm_command(C, &r, "SET c:fmt2 %.2f|%5s|%03d|%c", 3.14159, "ab", 7, 'z'));
    vshm_reply_free(r);
    r = cmd("GET c:fmt2");
    CHECK(r && strcmp(reply_str(r, buf, sizeof buf), "3.14|   ab|007|z") == 0);
    vshm_reply_free(r);
    /* An interpolation that yields nothing is still an argument. */
    CHECK_OK(vshm_command(C, &r, "SET c:empty %s", ""));
    vshm_reply_free(r);
    r = cmd("STRLEN c:empty");
    CHECK(reply_int(r) == 0);
    vshm_reply_free(r);
    /* Spaces inside an interpolated value do not split it. */
    CHECK_OK(vshm_command(C, &r, "SET c:sp %s", "a b  c"));
    vshm_reply_free(r);
    r = cmd("GET c:sp");
    CHECK(r && strcmp(reply_str(r, buf, sizeof buf), "a b  c") == 0);
    vshm_reply_free(r);

    /* server errors: status, NULL reply, message */
    r = (vshm_reply *)0x1;
    CHECK_ST(vshm_command(C, &r, "INCR c:sp"), VSHM_ERR_REQUEST);
    CHECK(r == NULL);
    CHECK(vshm_last_error_status() == VSHM_ERR_REQUEST);
    CHECK(strstr(vshm_last_error_message(), "not an integer") != NULL);
    CHECK_ST(vshm_command(C, &r, "NOSUCHCOMMAND x"), VSHM_ERR_REQUEST);
    /* connection-state commands are refused by the core */
    CHECK_ST(vshm_command(C, &r, "SUBSCRIBE ch"), VSHM_ERR_INVALID_REQUEST);
    CHECK(strstr(vshm_last_error_message(), "pub/sub") != NULL);
    CHECK_ST(vshm_command(C, &r, "MULTI"), VSHM_ERR_INVALID_REQUEST);
    CHECK_ST(vshm_command(C, &r, "SELECT 1"), VSHM_ERR_INVALID_REQUEST);
}

static vshm_status commandv_wrapper(vshm_reply **r, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vshm_status st = vshm_commandv(C, r, fmt, ap);
    va_end(ap);
    return st;
}

static void test_commandv(void) {
    vshm_reply *r = NULL;
    CHECK_OK(commandv_wrapper(&r, "ECHO %s-%d", "va", 42));
    char buf[32];
    CHECK(r && strcmp(reply_str(r, buf, sizeof buf), "va-42") == 0);
    vshm_reply_free(r);
}

static void test_value_types(void) {
    char buf[256];
    vshm_reply *r;
    const vshm_value *v;
    int64_t i;
    double d;
    bool b;
    const char *p;
    size_t len;

    vshm_reply_free(cmd("DEL t:n t:l t:h t:s t:z"));
    r = cmd("GET t:n");
    CHECK(r && vshm_value_type(vshm_reply_value(r)) == VSHM_TYPE_NIL);
    CHECK(r && vshm_value_len(vshm_reply_value(r)) == 0);
    CHECK_ST(vshm_value_string(vshm_reply_value(r), &p, &len), VSHM_ERR_WRONG_TYPE);
    CHECK(strstr(vshm_last_error_message(), "nil") != NULL);
    vshm_reply_free(r);

    r = cmd("INCRBY t:i %d", 41);
    vshm_reply_free(r);
    r = cmd("INCR t:i");
    REQUIRE(r);
    v = vshm_reply_value(r);
    CHECK(vshm_value_type(v) == VSHM_TYPE_INT);
    CHECK_OK(vshm_value_integer(v, &i));
    CHECK(i >= 42);
    CHECK_ST(vshm_value_integer(v, NULL), VSHM_ERR_INVALID_ARGUMENT);
    CHECK_ST(vshm_value_double(v, &d), VSHM_ERR_WRONG_TYPE);
    CHECK_ST(vshm_value_bool(v, &b), VSHM_ERR_WRONG_TYPE);
    CHECK(vshm_value_element(v, 0) == NULL);
    CHECK(vshm_last_error_status() == VSHM_ERR_WRONG_TYPE);
    CHECK(vshm_value_strdup(v) == NULL);
    vshm_reply_free(r);
    vshm_reply_free(cmd("DEL t:i"));

    /* array */
    vshm_reply_free(cmd("RPUSH t:l a bb ccc"));
    r = cmd("LRANGE t:l 0 -1");
    REQUIRE(r);
    v = vshm_reply_value(r);
    CHECK(vshm_value_type(v) == VSHM_TYPE_ARRAY);
    CHECK(vshm_value_len(v) == 3);
    CHECK(value_is(vshm_value_element(v, 0), "a"));
    CHECK(value_is(vshm_value_element(v, 2), "ccc"));
    CHECK(vshm_value_element(v, 3) == NULL);
    CHECK(vshm_last_error_status() == VSHM_ERR_INVALID_ARGUMENT);
    CHECK(vshm_value_map_key(v, 0) == NULL);
    vshm_reply_free(r);

    /* map (RESP3) */
    vshm_reply_free(cmd("HSET t:h f1 v1 f2 v2"));
    r = cmd("HGETALL t:h");
    REQUIRE(r);
    v = vshm_reply_value(r);
    CHECK(vshm_value_type(v) == VSHM_TYPE_MAP);
    CHECK(vshm_value_len(v) == 2);
    int seen = 0;
    for (size_t k = 0; k < vshm_value_len(v); k++) {
        if (value_is(vshm_value_map_key(v, k), "f1") && value_is(vshm_value_map_value(v, k), "v1")) seen |= 1;
        if (value_is(vshm_value_map_key(v, k), "f2") && value_is(vshm_value_map_value(v, k), "v2")) seen |= 2;
    }
    CHECK(seen == 3);
    CHECK(vshm_value_map_key(v, 2) == NULL);
    CHECK(vshm_value_map_value(v, 2) == NULL);
    CHECK(vshm_value_element(v, 0) == NULL);
    vshm_reply_free(r);

    /* set (RESP3) */
    vshm_reply_free(cmd("SADD t:s x y"));
    r = cmd("SMEMBERS t:s");
    REQUIRE(r);
    v = vshm_reply_value(r);
    CHECK(vshm_value_type(v) == VSHM_TYPE_SET);
    CHECK(vshm_value_len(v) == 2);
    CHECK(vshm_value_type(vshm_value_element(v, 1)) == VSHM_TYPE_STRING);
    vshm_reply_free(r);

    /* double (RESP3) */
    vshm_reply_free(cmd("ZADD t:z 2.5 m"));
    r = cmd("ZSCORE t:z m");
    REQUIRE(r);
    v = vshm_reply_value(r);
    CHECK(vshm_value_type(v) == VSHM_TYPE_DOUBLE);
    CHECK_OK(vshm_value_double(v, &d));
    CHECK(d == 2.5);
    vshm_reply_free(r);

    /* The remaining RESP3 types, from DEBUG PROTOCOL (test servers enable
     * the DEBUG command). */
    r = cmd("DEBUG PROTOCOL true");
    REQUIRE(r);
    v = vshm_reply_value(r);
    CHECK(vshm_value_type(v) == VSHM_TYPE_BOOL);
    b = false;
    CHECK_OK(vshm_value_bool(v, &b));
    CHECK(b == true);
    vshm_reply_free(r);
    r = cmd("DEBUG PROTOCOL false");
    CHECK(r && vshm_value_bool(vshm_reply_value(r), &b) == VSHM_OK && b == false);
    vshm_reply_free(r);

    r = cmd("DEBUG PROTOCOL bignum");
    REQUIRE(r);
    v = vshm_reply_value(r);
    CHECK(vshm_value_type(v) == VSHM_TYPE_BIGNUM);
    CHECK(strcmp(reply_str(r, buf, sizeof buf), "1234567999999999999999999999999999999") == 0);
    vshm_reply_free(r);

    r = cmd("DEBUG PROTOCOL verbatim");
    REQUIRE(r);
    v = vshm_reply_value(r);
    CHECK(vshm_value_type(v) == VSHM_TYPE_VERBATIM);
    CHECK_OK(vshm_value_verbatim_format(v, &p, &len));
    CHECK(len == 3 && memcmp(p, "txt", 3) == 0);
    CHECK(strstr(reply_str(r, buf, sizeof buf), "verbatim") != NULL);
    CHECK_ST(vshm_value_push_kind(v, &p, &len), VSHM_ERR_WRONG_TYPE);
    vshm_reply_free(r);

    r = cmd("DEBUG PROTOCOL attrib");
    REQUIRE(r);
    v = vshm_reply_value(r);
    if (vshm_value_type(v) == VSHM_TYPE_ATTRIBUTE) {
        CHECK(vshm_value_len(v) >= 1);
        CHECK(vshm_value_map_key(v, 0) != NULL);
        const vshm_value *data = vshm_value_attribute_data(v);
        CHECK(data != NULL && vshm_value_type(data) == VSHM_TYPE_STRING);
    } else {
        /* The server (or the redis crate) may fold attributes away: then
         * the data itself arrives. */
        CHECK(vshm_value_type(v) == VSHM_TYPE_STRING);
        CHECK(vshm_value_attribute_data(v) == NULL);
        CHECK(vshm_last_error_status() == VSHM_ERR_WRONG_TYPE);
    }
    CHECK_ST(vshm_value_verbatim_format(v, &p, &len), VSHM_ERR_WRONG_TYPE);
    vshm_reply_free(r);

    r = cmd("DEBUG PROTOCOL double");
    CHECK(r && vshm_value_double(vshm_reply_value(r), &d) == VSHM_OK && d > 3.14 && d < 3.15);
    vshm_reply_free(r);

    /* Errors nested in an aggregate are values of type ERROR. */
    r = cmd("EVAL %s 0", "return {1, redis.error_reply('MYERR nested')}");
    REQUIRE(r);
    v = vshm_reply_value(r);
    CHECK(vshm_value_type(v) == VSHM_TYPE_ARRAY);
    const vshm_value *e = vshm_value_element(v, 1);
    CHECK(vshm_value_type(e) == VSHM_TYPE_ERROR);
    CHECK_OK(vshm_value_string(e, &p, &len));
    CHECK(len >= 5 && memmem(p, len, "MYERR", 5) != NULL);
    vshm_reply_free(r);
    vshm_reply_free(cmd("DEL t:n t:l t:h t:s t:z"));
}

static void test_scripts(void) {
    vshm_reply *r;
    char buf[64];
    r = cmd("EVAL %s 1 %s %s", "return {KEYS[1], ARGV[1]}", "sk", "sa");
    CHECK(r && vshm_value_len(vshm_reply_value(r)) == 2);
    CHECK(r && value_is(vshm_value_element(vshm_reply_value(r), 1), "sa"));
    vshm_reply_free(r);
    r = cmd("SCRIPT LOAD %s", "return 'loaded'");
    REQUIRE(r);
    char sha[64];
    CHECK(reply_str(r, sha, sizeof sha) && strlen(sha) == 40);
    vshm_reply_free(r);
    r = cmd("EVALSHA %s 0", sha);
    CHECK(r && strcmp(reply_str(r, buf, sizeof buf), "loaded") == 0);
    vshm_reply_free(r);
    CHECK_ST(vshm_command(C, &r, "EVALSHA %s 0", "0000000000000000000000000000000000000000"), VSHM_ERR_REQUEST);
    CHECK(strstr(vshm_last_error_message(), "NOSCRIPT") != NULL);
}

static void test_detach(void) {
    vshm_reply_free(cmd("SET d:k detached-value"));
    vshm_reply *r = cmd("GET d:k");
    REQUIRE(r);
    CHECK(vshm_reply_in_ring(r) == 1);
    uint64_t id = vshm_reply_id(r);
    CHECK_OK(vshm_reply_detach(r));
    CHECK(vshm_reply_in_ring(r) == 0);
    CHECK(vshm_reply_id(r) == id);
    CHECK(value_is(vshm_reply_value(r), "detached-value"));
    CHECK_OK(vshm_reply_detach(r)); /* no-op */
    /* The ring space was released: later commands still flow. */
    vshm_reply *r2 = cmd("GET d:k");
    CHECK(r2 && value_is(vshm_reply_value(r2), "detached-value"));
    vshm_reply_free(r2);
    CHECK_OK(vshm_reply_free(r));
}

static void test_large_values(void) {
    size_t sizes[] = {0, 100, 100 * 1000, 3 * 1000 * 1000};
    for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++) {
        size_t n = sizes[k];
        char *big = malloc(n + 1);
        for (size_t j = 0; j < n; j++) big[j] = (char)('a' + (j * 7) % 26);
        vshm_reply *r = NULL;
        CHECK_OK(vshm_command(C, &r, "SET big:k %b", big, n));
        vshm_reply_free(r);
        r = cmd("GET big:k");
        const char *p;
        size_t len = 0;
        CHECK(r && vshm_value_string(vshm_reply_value(r), &p, &len) == VSHM_OK);
        CHECK(len == n && (n == 0 || memcmp(p, big, n) == 0));
        /* Small replies are read in place; large ones are reassembled. */
        if (r && n <= 100) CHECK(vshm_reply_in_ring(r) == 1);
        if (r && n >= 3 * 1000 * 1000) CHECK(vshm_reply_in_ring(r) == 0);
        vshm_reply_free(r);
        free(big);
    }
    vshm_reply_free(cmd("DEL big:k"));
}

/* Hold replies without freeing them: the held span grows, later replies
 * cannot be written, and freeing the oldest lets everything flow again. */
static void test_pinned_replies_hold_the_ring(void) {
    size_t n = 60 * 1000;
    char *val = malloc(n);
    memset(val, 'p', n);
    vshm_reply *r = NULL;
    CHECK_OK(vshm_command(C, &r, "SET pin:k %b", val, n));
    vshm_reply_free(r);
    free(val);
    enum { MAX_HELD = 400 };
    vshm_reply *held[MAX_HELD];
    int nheld = 0;
    vshm_status st = VSHM_OK;
    const char *argv[] = {"GET", "pin:k"};
    vshm_request_options o;
    memset(&o, 0, sizeof o);
    o.timeout_ms = 300;
    while (nheld < MAX_HELD) {
        vshm_reply *x = NULL;
        st = vshm_command_argv_opts(C, 2, argv, NULL, &o, &x);
        if (st != VSHM_OK) break;
        held[nheld++] = x;
    }
    /* The completion ring (1 MiB in-process; the daemon's default in daemon
     * mode) fills with pinned replies: the next request times out. */
    CHECK(st == VSHM_ERR_TIMEOUT);
    CHECK(nheld > 2 && nheld < MAX_HELD);
    for (int k = 0; k < nheld; k++) CHECK(vshm_reply_in_ring(held[k]) == 1);
    /* Free the newest ones first: the oldest still pins everything. */
    for (int k = nheld - 1; k >= 1; k--) vshm_reply_free(held[k]);
    /* The oldest is still readable and intact. */
    const char *p;
    size_t len;
    CHECK(vshm_value_string(vshm_reply_value(held[0]), &p, &len) == VSHM_OK && len == n && p[n - 1] == 'p');
    CHECK_OK(vshm_reply_detach(held[0]));
    /* Now the ring is free again. */
    CHECK_OK(vshm_command_argv(C, 2, argv, NULL, &r));
    vshm_reply_free(r);
    vshm_reply_free(held[0]);
    vshm_reply_free(cmd("DEL pin:k"));
}

static void test_out_of_order_free(void) {
    enum { N = 500 };
    vshm_reply *rs[N];
    for (int k = 0; k < N; k++) {
        rs[k] = NULL;
        CHECK_OK(vshm_command(C, &rs[k], "ECHO %d", k));
    }
    /* free in a scrambled order; check each value first */
    for (int k = 0; k < N; k++) {
        int j = (k * 7919) % N;
        char buf[16], want[16];
        snprintf(want, sizeof want, "%d", j);
        CHECK(rs[j] && strcmp(reply_str(rs[j], buf, sizeof buf), want) == 0);
        vshm_reply_free(rs[j]);
    }
    vshm_reply *r = cmd("PING");
    CHECK(r != NULL);
    vshm_reply_free(r);
}

static void test_timeouts(void) {
    vshm_request_options o;
    memset(&o, 0, sizeof o);
    o.timeout_ms = 100;
    const char *argv[] = {"DEBUG", "SLEEP", "0.5"};
    vshm_reply *r = NULL;
    double t0 = now_ms();
    CHECK_ST(vshm_command_argv_opts(C, 3, argv, NULL, &o, &r), VSHM_ERR_TIMEOUT);
    double took = now_ms() - t0;
    CHECK(r == NULL);
    CHECK(took < 450); /* the core's timeout, not the server's sleep */
    /* The client is fine afterwards. */
    r = cmd("PING");
    CHECK(r != NULL);
    vshm_reply_free(r);
    usleep(500 * 1000); /* let the server finish sleeping */
}


/* ---- threads ---- */

static void *error_in_thread(void *arg) {
    (void)arg;
    vshm_reply *r = NULL;
    vshm_command(C, &r, "NOSUCHCMD");
    return (void *)(intptr_t)vshm_last_error_status();
}

/* One reply read by several threads at once, then freed by another. */
static vshm_reply *shared_reply;

static void *read_shared(void *arg) {
    (void)arg;
    long ok = 0;
    for (int round = 0; round < 200; round++) {
        const vshm_value *v = vshm_reply_value(shared_reply);
        for (size_t i = 0; i < vshm_value_len(v); i++) {
            char want[32];
            snprintf(want, sizeof want, "e%zu", i);
            ok += value_is(vshm_value_element(v, i), want);
        }
    }
    return (void *)ok;
}

static void *free_shared(void *arg) {
    return (void *)(intptr_t)vshm_reply_free((vshm_reply *)arg);
}

static void test_reply_shared_between_threads(void) {
    vshm_reply_free(cmd("DEL sh:l"));
    for (int i = 0; i < 50; i++) vshm_reply_free(cmd("RPUSH sh:l e%d", i));
    shared_reply = cmd("LRANGE sh:l 0 -1");
    REQUIRE(shared_reply);
    pthread_t t[4];
    for (int i = 0; i < 4; i++) pthread_create(&t[i], NULL, read_shared, NULL);
    for (int i = 0; i < 4; i++) {
        void *ok;
        pthread_join(t[i], &ok);
        CHECK((long)ok == 200 * 50);
    }
    pthread_t f;
    pthread_create(&f, NULL, free_shared, shared_reply);
    void *st;
    pthread_join(f, &st);
    CHECK((intptr_t)st == VSHM_OK);
    vshm_reply_free(cmd("DEL sh:l"));
}

static void test_last_error_is_thread_local(void) {
    vshm_reply *r = NULL;
    vshm_command_argv(C, 0, NULL, NULL, &r); /* INVALID_ARGUMENT here */
    pthread_t t;
    pthread_create(&t, NULL, error_in_thread, NULL);
    void *ret;
    pthread_join(t, &ret);
    CHECK((intptr_t)ret == VSHM_ERR_REQUEST);
    CHECK(vshm_last_error_status() == VSHM_ERR_INVALID_ARGUMENT);
}

/* ---- lifecycle ---- */

static int closing_calls, closing_other;

static void on_closing(vshm_client *c, uint64_t id, vshm_status st, vshm_reply *r, void *ud) {
    (void)c;
    (void)id;
    (void)ud;
    if (st == VSHM_ERR_CLOSING && r == NULL)
        closing_calls++;
    else
        closing_other++;
    vshm_reply_free(r);
}

static void test_free_with_pending_requests(void) {
    vshm_client *c = open_main();
    closing_calls = closing_other = 0;
    for (int k = 0; k < 10; k++) CHECK_OK(vshm_submit_command(c, on_closing, NULL, NULL, "DEBUG SLEEP 0"));
    uint64_t taken_id;
    CHECK_OK(vshm_submit_command(c, NULL, NULL, &taken_id, "PING"));
    CHECK_OK(vshm_free(c));
    /* Every callback ran exactly once, in vshm_free, with CLOSING. */
    CHECK(closing_calls == 10);
    CHECK(closing_other == 0);
}

static void test_fork(void) {
    vshm_reply_free(cmd("SET fk:k parent"));
    /* an asynchronous request in flight across the fork */
    cb_state s;
    memset(&s, 0, sizeof s);
    CHECK_OK(vshm_submit_command(C, on_reply, &s, NULL, "DEBUG SLEEP 0.2"));
    vshm_reply *held = cmd("GET fk:k");
    vshm_reply *kept = cmd("GET fk:k");
    CHECK(vshm_reply_in_ring(held) == 1 && vshm_reply_in_ring(kept) == 1);
    CHECK_OK(vshm_reply_detach(kept));
    /* The child reports through a pipe, not its exit status: under
     * valgrind the child's exit status is valgrind's (the child inherits
     * the parent's heap, including the thread-local blocks of threads that
     * do not exist in it, which memcheck reports as lost there). */
    int pfd[2];
    REQUIRE(pipe(pfd) == 0);
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        close(pfd[0]);
        int rc = 0;
        /* The child gets its own registration (a new core in-process). */
        vshm_reply *r = NULL;
        if (vshm_command(C, &r, "SET fk:child yes") != VSHM_OK) rc |= 1;
        vshm_reply_free(r);
        if (vshm_command(C, &r, "GET fk:k") != VSHM_OK || !value_is(vshm_reply_value(r), "parent")) rc |= 2;
        vshm_reply_free(r);
        /* The parent's request fails here, not hangs. */
        double deadline = now_ms() + test_timeout_ms();
        while (s.calls == 0 && now_ms() < deadline) vshm_wait(C, 100, NULL);
        if (s.calls != 1 || s.last_status != VSHM_ERR_CONNECTION) rc |= 4;
        /* A reply held in the shared ring from before the fork reads as a
         * CONNECTION error here (its ring memory is the parent's to reuse)
         * and is freeable; a reply detached before the fork is private
         * memory and stays readable. */
        if (vshm_reply_value(held) != NULL || vshm_last_error_status() != VSHM_ERR_CONNECTION) rc |= 8;
        vshm_reply_free(held);
        if (!value_is(vshm_reply_value(kept), "parent")) rc |= 64;
        vshm_reply_free(kept);
        /* async in the child */
        cb_state cs;
        memset(&cs, 0, sizeof cs);
        if (vshm_submit_command(C, on_reply, &cs, NULL, "INCR fk:ctr") != VSHM_OK) rc |= 16;
        deadline = now_ms() + test_timeout_ms();
        while (cs.calls == 0 && now_ms() < deadline) vshm_wait(C, 100, NULL);
        if (cs.ok != 1) rc |= 32;
        unsigned char b = (unsigned char)rc;
        if (write(pfd[1], &b, 1) != 1) _exit(100);
        _exit(0);
    }
    close(pfd[1]);
    REQUIRE(pid > 0);
    int status = 0;
    /* The parent keeps working meanwhile. */
    for (int k = 0; k < 50; k++) {
        vshm_reply *r = cmd("INCR fk:pctr");
        CHECK(r != NULL);
        vshm_reply_free(r);
    }
    wait_all(C, &s, 1, test_timeout_ms());
    CHECK(s.calls == 1 && s.ok == 1);
    unsigned char child_rc = 255;
    CHECK(read(pfd[0], &child_rc, 1) == 1);
    close(pfd[0]);
    CHECK(waitpid(pid, &status, 0) == pid);
    CHECK(WIFEXITED(status));
    if (child_rc != 0) fprintf(stderr, "   child rc %d\n", child_rc);
    CHECK(child_rc == 0);
    vshm_reply *r = cmd("GET fk:child");
    CHECK(r && value_is(vshm_reply_value(r), "yes"));
    vshm_reply_free(r);
    CHECK(value_is(vshm_reply_value(held), "parent"));
    vshm_reply_free(held);
    CHECK(value_is(vshm_reply_value(kept), "parent"));
    vshm_reply_free(kept);
    vshm_reply_free(cmd("DEL fk:k fk:child fk:ctr fk:pctr"));
}


int main(void) {
    C = open_main();
    fprintf(stderr, "vshm %s, mode %s\n", vshm_version(), is_daemon_mode() ? "daemon" : "embedded");
    RUN(test_version_and_names);
    RUN(test_invalid_arguments);
    RUN(test_freed_handles);
    RUN(test_sync_commands);
    RUN(test_commandv);
    RUN(test_value_types);
    RUN(test_scripts);
    RUN(test_detach);
    RUN(test_large_values);
    RUN(test_pinned_replies_hold_the_ring);
    RUN(test_out_of_order_free);
    RUN(test_timeouts);
    RUN(test_last_error_is_thread_local);
    RUN(test_reply_shared_between_threads);
    RUN(test_free_with_pending_requests);
    if (getenv("VSHM_TEST_NO_FORK") == NULL) RUN(test_fork);
    CHECK_OK(vshm_free(C));
    return h_summary();
}
