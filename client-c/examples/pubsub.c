/*
 * pubsub.c: subscribe to a channel and a pattern, publish a few messages
 * from a second client, and receive them through a push callback.
 *
 *   cc pubsub.c $(pkg-config --cflags --libs vshm) -o pubsub
 *   ./pubsub valkey://127.0.0.1:6379
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <vshm.h>

static int received;

/* A message: kind "message" [channel, payload] or "pmessage"
 * [channel, pattern, payload]. Runs inside vshm_wait(); we own it. */
static void on_message(vshm_client *c, vshm_reply *m, void *userdata) {
    (void)c;
    (void)userdata;
    const vshm_value *v = vshm_reply_value(m);
    const char *kind, *channel, *payload;
    size_t kind_len, channel_len, payload_len;
    size_t n = vshm_value_len(v);
    if (vshm_value_push_kind(v, &kind, &kind_len) == VSHM_OK &&
        vshm_value_string(vshm_value_element(v, 0), &channel, &channel_len) == VSHM_OK &&
        vshm_value_string(vshm_value_element(v, n - 1), &payload, &payload_len) == VSHM_OK) {
        printf("%.*s %.*s: %.*s\n", (int)kind_len, kind, (int)channel_len, channel, (int)payload_len, payload);
        received++;
    }
    vshm_reply_free(m);
}

static vshm_client *open_client(const char *uri) {
    const char *socket_path = getenv("VSHM_SOCKET");
    vshm_client *c = NULL;
    vshm_status st = socket_path && *socket_path ? vshm_connect(socket_path, NULL, &c)
                                                 : vshm_open_embedded_uri(uri, &c);
    if (st != VSHM_OK) {
        fprintf(stderr, "open: %s\n", vshm_last_error_message());
        exit(1);
    }
    return c;
}

int main(int argc, char **argv) {
    const char *uri = argc > 1 ? argv[1] : "valkey://127.0.0.1:6379";
    vshm_client *sub = open_client(uri);
    vshm_client *pub = open_client(uri);

    const char *channels[] = {"news"};
    const char *patterns[] = {"alerts.*"};
    int64_t count = 0;
    if (vshm_subscribe(sub, VSHM_SUB_EXACT, 1, channels, NULL, &count) != VSHM_OK ||
        vshm_subscribe(sub, VSHM_SUB_PATTERN, 1, patterns, NULL, &count) != VSHM_OK) {
        fprintf(stderr, "subscribe: %s\n", vshm_last_error_message());
        return 1;
    }
    printf("subscribed to %lld channels/patterns\n", (long long)count);
    vshm_set_push_callback(sub, on_message, NULL);

    const char *msgs[][2] = {{"news", "hello 1"}, {"news", "hello 2"}, {"alerts.disk", "90% full"}, {"other", "ignored"}};
    for (size_t i = 0; i < sizeof msgs / sizeof msgs[0]; i++) {
        vshm_reply *r = NULL;
        if (vshm_command(pub, &r, "PUBLISH %s %s", msgs[i][0], msgs[i][1]) == VSHM_OK) vshm_reply_free(r);
    }

    /* Deliver messages to the callback; every wait is bounded. */
    for (int rounds = 0; received < 3 && rounds < 50; rounds++) vshm_wait(sub, 100, NULL);
    printf("received %d messages\n", received);

    vshm_unsubscribe(sub, VSHM_SUB_EXACT, 0, NULL, NULL, NULL);
    vshm_unsubscribe(sub, VSHM_SUB_PATTERN, 0, NULL, NULL, NULL);
    vshm_free(pub);
    vshm_free(sub);
    return received == 3 ? 0 : 1;
}
