/*
 * hello.c: the smallest vshm program. Opens a client (the in-process core
 * by default, or the vshm daemon if VSHM_SOCKET is set), SETs a key, GETs
 * it back, and prints it.
 *
 *   cc hello.c $(pkg-config --cflags --libs vshm) -o hello
 *   ./hello valkey://127.0.0.1:6379
 */
#include <stdio.h>
#include <stdlib.h>

#include <vshm.h>

int main(int argc, char **argv) {
    const char *uri = argc > 1 ? argv[1] : "valkey://127.0.0.1:6379";
    const char *socket_path = getenv("VSHM_SOCKET");
    vshm_client *c = NULL;
    vshm_status st = socket_path && *socket_path ? vshm_connect(socket_path, NULL, &c)
                                                 : vshm_open_embedded_uri(uri, &c);
    if (st != VSHM_OK) {
        fprintf(stderr, "open: %s: %s\n", vshm_errstr(st), vshm_last_error_message());
        return 1;
    }

    vshm_reply *r = NULL;
    st = vshm_command(c, &r, "SET %s %s", "hello:key", "Hello, world!");
    if (st != VSHM_OK) {
        fprintf(stderr, "SET: %s\n", vshm_last_error_message());
        vshm_free(c);
        return 1;
    }
    vshm_reply_free(r);

    st = vshm_command(c, &r, "GET %s", "hello:key");
    if (st != VSHM_OK) {
        fprintf(stderr, "GET: %s\n", vshm_last_error_message());
        vshm_free(c);
        return 1;
    }
    /* Zero copy: the string points into the shared completion ring. */
    const char *s;
    size_t len;
    if (vshm_value_string(vshm_reply_value(r), &s, &len) == VSHM_OK) {
        printf("GET hello:key -> %.*s\n", (int)len, s);
    }
    vshm_reply_free(r);
    vshm_free(c);
    return 0;
}
