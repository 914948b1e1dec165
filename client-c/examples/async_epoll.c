/*
 * async_epoll.c: asynchronous requests driven by an epoll event loop.
 *
 * vshm_fd() gives a descriptor that becomes readable when completions
 * arrive; the loop waits on it (next to whatever else the program
 * watches) and calls vshm_poll(), which runs the completion callbacks in
 * this thread.
 *
 *   cc async_epoll.c $(pkg-config --cflags --libs vshm) -o async_epoll
 *   ./async_epoll valkey://127.0.0.1:6379 [requests]
 */
#include <stdio.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <unistd.h>

#include <vshm.h>

struct state {
    int completed;
    int failed;
    long long last_counter;
};

/* Runs inside vshm_poll(). The reply belongs to us: free it. */
static void on_incr(vshm_client *c, uint64_t id, vshm_status st, vshm_reply *reply, void *userdata) {
    (void)c;
    (void)id;
    struct state *s = userdata;
    s->completed++;
    if (st != VSHM_OK) {
        s->failed++;
        fprintf(stderr, "INCR failed: %s\n", vshm_last_error_message());
        return;
    }
    int64_t v;
    if (vshm_value_integer(vshm_reply_value(reply), &v) == VSHM_OK && v > s->last_counter) s->last_counter = v;
    vshm_reply_free(reply);
}

int main(int argc, char **argv) {
    const char *uri = argc > 1 ? argv[1] : "valkey://127.0.0.1:6379";
    int n = argc > 2 ? atoi(argv[2]) : 1000;
    const char *socket_path = getenv("VSHM_SOCKET");
    vshm_client *c = NULL;
    vshm_status st = socket_path && *socket_path ? vshm_connect(socket_path, NULL, &c)
                                                 : vshm_open_embedded_uri(uri, &c);
    if (st != VSHM_OK) {
        fprintf(stderr, "open: %s\n", vshm_last_error_message());
        return 1;
    }
    vshm_reply *r = NULL;
    if (vshm_command(c, &r, "DEL %s", "async:counter") == VSHM_OK) vshm_reply_free(r);

    int fd = vshm_fd(c);
    int ep = epoll_create1(EPOLL_CLOEXEC);
    struct epoll_event ev = {.events = EPOLLIN, .data.fd = fd};
    if (fd < 0 || ep < 0 || epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) != 0) {
        fprintf(stderr, "epoll setup failed\n");
        return 1;
    }

    struct state s = {0, 0, 0};
    /* Submit everything at once: each call returns immediately. */
    for (int i = 0; i < n; i++) {
        st = vshm_submit_command(c, on_incr, &s, NULL, "INCR %s", "async:counter");
        if (st != VSHM_OK) {
            fprintf(stderr, "submit: %s\n", vshm_last_error_message());
            return 1;
        }
    }

    /* The event loop: wait for the descriptor, then let vshm_poll run the
     * callbacks. Every wait is bounded. */
    int idle_rounds = 0;
    while (s.completed < n && idle_rounds < 20) {
        struct epoll_event out[4];
        int k = epoll_wait(ep, out, 4, 500);
        if (k <= 0) {
            idle_rounds++;
            continue;
        }
        size_t done = 0;
        vshm_poll(c, &done);
    }
    printf("completed %d of %d requests, %d failed, counter = %lld\n", s.completed, n, s.failed, s.last_counter);
    close(ep);
    vshm_free(c);
    return s.completed == n && s.failed == 0 ? 0 : 1;
}
