/*
 * batch.c: a pipeline (several commands sent together, one reply each)
 * and a transaction (MULTI/EXEC with WATCH) through the batch API.
 *
 *   cc batch.c $(pkg-config --cflags --libs vshm) -o batch
 *   ./batch valkey://127.0.0.1:6379
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <vshm.h>

static void print_value(const vshm_value *v) {
    const char *p;
    size_t len;
    int64_t i;
    switch (vshm_value_type(v)) {
    case VSHM_TYPE_INT:
        vshm_value_integer(v, &i);
        printf("(integer) %lld\n", (long long)i);
        break;
    case VSHM_TYPE_ERROR:
        vshm_value_string(v, &p, &len);
        printf("(error) %.*s\n", (int)len, p);
        break;
    case VSHM_TYPE_NIL:
        printf("(nil)\n");
        break;
    default:
        if (vshm_value_string(v, &p, &len) == VSHM_OK)
            printf("\"%.*s\"\n", (int)len, p);
        else
            printf("(%s)\n", vshm_type_name(vshm_value_type(v)));
    }
}

static int run(vshm_client *c, vshm_batch *b, const char *what) {
    vshm_reply *r = NULL;
    vshm_status st = vshm_batch_exec(c, b, NULL, &r);
    if (st != VSHM_OK) {
        printf("%s: %s: %s\n", what, vshm_errstr(st), vshm_last_error_message());
        return 1;
    }
    const vshm_value *v = vshm_reply_value(r);
    printf("%s: %zu results\n", what, vshm_value_len(v));
    for (size_t i = 0; i < vshm_value_len(v); i++) {
        printf("  %zu) ", i + 1);
        print_value(vshm_value_element(v, i));
    }
    vshm_reply_free(r);
    return 0;
}

int main(int argc, char **argv) {
    const char *uri = argc > 1 ? argv[1] : "valkey://127.0.0.1:6379";
    const char *socket_path = getenv("VSHM_SOCKET");
    vshm_client *c = NULL;
    vshm_status st = socket_path && *socket_path ? vshm_connect(socket_path, NULL, &c)
                                                 : vshm_open_embedded_uri(uri, &c);
    if (st != VSHM_OK) {
        fprintf(stderr, "open: %s\n", vshm_last_error_message());
        return 1;
    }
    int rc = 0;

    /* A pipeline: errors stay in place (element 3). */
    vshm_batch *p = NULL;
    vshm_batch_new(0, &p);
    vshm_batch_add_command(p, "SET %s %s", "batch:name", "vshm");
    vshm_batch_add_command(p, "INCR %s", "batch:hits");
    vshm_batch_add_command(p, "INCR %s", "batch:name");
    vshm_batch_add_command(p, "GET %s", "batch:name");
    rc |= run(c, p, "pipeline");
    vshm_batch_free(p);

    /* A transaction: all keys in one slot ({batch} hash tag). */
    vshm_batch *t = NULL;
    vshm_batch_new(1, &t);
    vshm_batch_watch(t, "{batch}balance", strlen("{batch}balance"));
    vshm_batch_add_command(t, "SET %s %d", "{batch}balance", 100);
    vshm_batch_add_command(t, "DECRBY %s %d", "{batch}balance", 30);
    rc |= run(c, t, "transaction");
    vshm_batch_free(t);

    vshm_reply *r = NULL;
    if (vshm_command(c, &r, "DEL batch:name batch:hits {batch}balance") == VSHM_OK) vshm_reply_free(r);
    vshm_free(c);
    return rc;
}
