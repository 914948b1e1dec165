/*
 * vshm.h: the vshm C client for Valkey/Redis.
 *
 * Link with pkg-config: cc app.c $(pkg-config --cflags --libs vshm)
 *
 * OVERVIEW
 *   A vshm_client talks to the vshm core through shared memory: requests
 *   are written into a submission ring, replies come back in a completion
 *   ring. The core runs either as the vshmd daemon (vshm_connect) or on
 *   threads inside this process (vshm_open_embedded*). Both give the same
 *   vshm_client type and the same API.
 *
 * ERRORS
 *   Nearly every function returns a vshm_status: VSHM_OK (0) or a
 *   VSHM_ERR_* code. After an error, vshm_last_error_status() and
 *   vshm_last_error_message() (thread-local) tell what went wrong; for
 *   VSHM_ERR_REQUEST the message is the server's error ("WRONGTYPE ...").
 *   vshm_errstr() names a status. Bad arguments (NULL pointers, negative
 *   counts, oversized lengths, freed handles) are VSHM_ERR_INVALID_ARGUMENT,
 *   never a crash. Freed handles are detected as long as their memory has
 *   not been reused by a new handle of the same type (handle memory is
 *   recycled, never returned to the allocator). No panic crosses this API.
 *
 * WHO FREES WHAT (read this first)
 *   You free:
 *   - every vshm_reply* you receive, with vshm_reply_free: the *out of a
 *     synchronous call or of vshm_take, the `reply` argument of a
 *     completion callback (the callback owns it: free it there, or keep it
 *     and free it later), every pub/sub message (push callback,
 *     vshm_next_push). Error outcomes come with a NULL reply (nothing to
 *     free). A reply stays valid after its client is freed.
 *   - vshm_client* (vshm_free), vshm_batch* (vshm_batch_free), strings
 *     from vshm_value_strdup (vshm_string_free).
 *   You never free:
 *   - const vshm_value* (borrowed from its reply; valid until that reply
 *     is freed or detached), strings from vshm_value_string (borrowed
 *     like values, NOT NUL-terminated), the static strings of
 *     vshm_version/vshm_errstr/vshm_type_name, vshm_last_error_message()
 *     (thread-local, valid until the next failing call in the thread).
 *   Pointers passed in (argv, keys, option structs, strings) are only
 *     borrowed for the duration of the call.
 *   An unfreed reply is not just a leak: it pins completion-ring space
 *   (next section).
 *
 * ZERO-COPY REPLIES: WHAT HOLDING ONE COSTS
 *   A reply that fits in one ring record (the common case) is read in place
 *   from the shared completion ring: no copy, no decode. While you hold it,
 *   it pins its ring bytes AND everything the core wrote after it, until it
 *   is freed (ring space is returned up to the oldest reply still held).
 *   When the pinned span fills the completion ring, no further completion
 *   can be written for this client (other clients are not affected): each
 *   request still pending then completes at its deadline (its timeout, a
 *   blocking command's own bound, plus a transport margin) with
 *   VSHM_ERR_TIMEOUT, made by the client end without ring space, and its
 *   real completion is discarded if it comes later; nothing succeeds again
 *   until replies are freed. To keep a reply for long, call
 *   vshm_reply_detach(): it copies the reply to private memory and releases
 *   its ring space at once. Replies larger than one ring record arrive in
 *   fragments and are reassembled in private memory (vshm_reply_in_ring()
 *   says which).
 *
 * THREADS
 *   - One vshm_client may be used by any number of threads at once, for
 *     every function (sync calls, submits, vshm_poll/vshm_wait/vshm_take,
 *     vshm_fd). Calls in flight in other threads when vshm_free runs finish
 *     normally; do not use the handle after vshm_free returns.
 *   - Callbacks run in the thread that calls vshm_poll, vshm_wait,
 *     vshm_take or vshm_free, never in a library thread; several threads
 *     polling the same client may run callbacks concurrently.
 *   - A reply may be read from several threads at once and freed from any
 *     thread, but vshm_reply_free and vshm_reply_detach must not run
 *     concurrently with any other use of the same reply.
 *   - A vshm_batch is not meant to be shared while it is built (calls are
 *     serialized internally, so sharing is safe but pointless).
 *
 * FORK
 *   A client may be used in a child after fork() (with no other thread
 *   inside a vshm call at the moment of the fork). The child gets its own
 *   registration on first use: with the daemon, a new registration; with
 *   the in-process core, a new core in the child (the parent's core
 *   threads do not exist there). Asynchronous requests submitted before
 *   the fork complete in the child with VSHM_ERR_CONNECTION. A reply
 *   held from before the fork can be freed in the child; read there, it
 *   is a VSHM_ERR_CONNECTION error (vshm_reply_value returns NULL) when it
 *   was in the shared ring, whose memory the parent reuses once it frees
 *   its copy: vshm_reply_detach it before fork() to keep it readable.
 *
 * PUB/SUB
 *   vshm_subscribe/vshm_unsubscribe (exact, pattern, sharded); messages
 *   arrive as VSHM_TYPE_PUSH replies, to the push callback (from
 *   vshm_poll/vshm_wait) or through vshm_next_push. SUBSCRIBE and friends
 *   as plain commands are refused (VSHM_ERR_INVALID_REQUEST), as are
 *   MULTI/EXEC (use batches) and SELECT/AUTH/HELLO (use the options);
 *   docs/c-api.md lists every refused command.
 *
 * VERSIONS
 *   VSHM_VERSION_MAJOR/MINOR/PATCH: this header's version; vshm_version():
 *   the library's. The installed libvshm.so exports exactly the functions
 *   declared here, at symbol version VSHM_0.
 *
 * NOT PROVIDED (yet)
 *   Cancelling a request in flight.
 */
#ifndef VSHM_H
#define VSHM_H


/* Generated by cbindgen from client-c/src; do not edit (see client-c/cbindgen.toml). */

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The version of this header; vshm_version() is the library's. */
#define VSHM_VERSION_MAJOR 0
#define VSHM_VERSION_MINOR 1
#define VSHM_VERSION_PATCH 0

/* A length meaning "NUL-terminated string", for functions that take one
 * string as a pointer and a length (vshm_batch_watch). */
#define VSHM_NUL_TERMINATED ((size_t)-1)

#ifdef __cplusplus
extern "C" {
#endif


// Reads go to the primary (default).
#define VSHM_READ_FROM_PRIMARY 0

// Reads go to a random replica of the shard.
#define VSHM_READ_FROM_PREFER_REPLICA 1

// Reads rotate over the shard's replicas.
#define VSHM_READ_FROM_ROUND_ROBIN_REPLICAS 2

// By the command's keys (keyless commands: a random node, or every node
// where the command's policy says so). The default.
#define VSHM_ROUTE_AUTO 0

// Every node of the cluster.
#define VSHM_ROUTE_ALL_NODES 1

// Every primary of the cluster.
#define VSHM_ROUTE_ALL_PRIMARIES 2

// One random node.
#define VSHM_ROUTE_RANDOM 3

// The node serving `key`'s slot.
#define VSHM_ROUTE_SLOT_KEY 4

// The node serving `slot`.
#define VSHM_ROUTE_SLOT_ID 5

// The node at `host`:`port`.
#define VSHM_ROUTE_ADDRESS 6

// Batches: report the first failing command's error instead of an array
// with the errors in place.
#define VSHM_FLAG_RAISE_ON_ERROR 1

// SUBSCRIBE / PUBLISH channels.
#define VSHM_SUB_EXACT 0

// PSUBSCRIBE patterns.
#define VSHM_SUB_PATTERN 1

// SSUBSCRIBE / SPUBLISH sharded channels (cluster: the channel's slot).
#define VSHM_SUB_SHARDED 2

// Value types (`vshm_value_type`).
#define VSHM_TYPE_INVALID -1

#define VSHM_TYPE_NIL 0

#define VSHM_TYPE_INT 1

// Bulk string (binary safe).
#define VSHM_TYPE_STRING 2

// Simple string / status ("OK").
#define VSHM_TYPE_STATUS 3

// An error nested in an aggregate (pipeline or EXEC results).
#define VSHM_TYPE_ERROR 4

#define VSHM_TYPE_ARRAY 5

#define VSHM_TYPE_MAP 6

#define VSHM_TYPE_SET 7

#define VSHM_TYPE_DOUBLE 8

#define VSHM_TYPE_BOOL 9

// Big number: decimal digits as a string.
#define VSHM_TYPE_BIGNUM 10

// Verbatim string: text plus a 3-byte format.
#define VSHM_TYPE_VERBATIM 11

// Push message: kind plus elements.
#define VSHM_TYPE_PUSH 12

// A value with attributes: the data plus attribute pairs.
#define VSHM_TYPE_ATTRIBUTE 13

// A batch of commands (pipeline or transaction) being built. Owned by
// the caller until `vshm_batch_free`.
typedef struct vshm_batch vshm_batch;

// A client: one connection to the vshm core (daemon or in-process).
// Created by `vshm_connect`, `vshm_open_embedded` or
// `vshm_open_embedded_uri`; freed by `vshm_free`. Thread-safe: one handle
// may be used by any number of threads at once.
typedef struct vshm_client vshm_client;

// A reply: one completed request, owned by the caller until
// `vshm_reply_free`. Read it through `vshm_reply_value` and the
// `vshm_value_*` accessors.
typedef struct vshm_reply vshm_reply;

// A value inside a reply (the reply's root value or a nested one).
// Borrowed: valid until its reply is freed or detached; never freed on its
// own.
typedef struct vshm_value vshm_value;

// Status code returned by (nearly) every function: `VSHM_OK` (0) or one
// of the `VSHM_ERR_*` codes. After an error, `vshm_last_error_message()`
// in the same thread tells the details.
typedef int32_t vshm_status;

// Options of `vshm_connect`. Initialize with `vshm_connect_options_init`,
// then set fields. Strings are borrowed for the duration of the call only.
typedef struct vshm_connect_options {
  // Logical database; negative: the daemon's default. Default -1.
  int32_t database;
  // Client name shown in the daemon's logs and stats (no spaces);
  // NULL: none. Default NULL.
  const char *client_name;
  // One of the daemon's auth profiles; NULL: its default. Default NULL.
  const char *auth_profile;
  // Bound on registering with the daemon, in ms; 0: 5000.
  uint32_t connect_timeout_ms;
  // Timeout of requests that set none, in ms; 0: the daemon's default.
  uint32_t request_timeout_ms;
  // Ring capacities in bytes (powers of two); 0: the daemon's defaults.
  uint64_t sq_capacity;
  uint64_t cq_capacity;
} vshm_connect_options;

// Settings of the in-process core's connection to Valkey/Redis. All-zero
// (or `vshm_config_init`) means the defaults: a standalone server at
// 127.0.0.1:6379, RESP3, 250 ms request timeout. Strings are borrowed for
// the duration of the call only.
typedef struct vshm_config {
  // `naddresses` "host:port" strings (IPv6: "[::1]:6379"). Standalone:
  // the server (the first entry). Cluster: seed nodes. NULL/0: default.
  const char *const *addresses;
  size_t naddresses;
  // Nonzero: a cluster.
  uint32_t cluster;
  // Nonzero: TLS.
  uint32_t tls;
  // PEM file of the CA to trust (TLS only); NULL: system roots.
  const char *ca_file;
  // ACL user and password; NULL: none.
  const char *username;
  const char *password;
  // Sent with CLIENT SETNAME; NULL: none.
  const char *client_name;
  // Logical database; negative: the default (0). Default 0. (`int32_t`
  // like `vshm_connect_options.database`.)
  int32_t database;
  // Nonzero: speak RESP2 to the server (default RESP3).
  uint32_t resp2;
  // Timeout of requests that set none, ms; 0: 250.
  uint32_t request_timeout_ms;
  // Bound on establishing a connection, ms; 0: 2000.
  uint32_t connection_timeout_ms;
  // Most requests in flight for this client; 0: 1000.
  uint32_t max_inflight;
  // One of VSHM_READ_FROM_* (cluster only).
  uint32_t read_from;
  // Worker threads of the process's in-process core, used when the
  // core starts (the first embedded client of the process); 0: 1.
  uint32_t core_threads;
} vshm_config;

// Where a request goes. All-zero = VSHM_ROUTE_AUTO.
typedef struct vshm_route {
  // One of VSHM_ROUTE_*.
  uint32_t kind;
  // SLOT_KEY / SLOT_ID: nonzero to use a replica of the slot's shard.
  uint32_t replica;
  // SLOT_ID: the slot, 0..16383.
  uint32_t slot;
  // ADDRESS: the node's port.
  uint32_t port;
  // SLOT_KEY: the key (binary safe, `key_len` bytes). Borrowed for the
  // duration of the call.
  const char *key;
  size_t key_len;
  // ADDRESS: the node's host, NUL-terminated, as the cluster reports it.
  const char *host;
} vshm_route;

// Per-request options. All-zero = defaults.
typedef struct vshm_request_options {
  // Request timeout in ms; 0: the client's default. A blocking command
  // is bounded by its own timeout (see `vshm_command_argv`); with one
  // that blocks forever, a nonzero `timeout_ms` is its bound.
  uint32_t timeout_ms;
  // VSHM_FLAG_* bits.
  uint32_t flags;
  struct vshm_route route;
} vshm_request_options;

// Completion callback of an asynchronous request. Runs in the thread that
// calls `vshm_poll`, `vshm_wait`, `vshm_take` or `vshm_free` (never in a
// library thread). `reply` is OWNED BY THE CALLBACK: free it with
// `vshm_reply_free`, now or later (or `vshm_reply_detach` it to keep it
// long: a held reply pins completion-ring space, see ZERO-COPY REPLIES).
// It is NULL when `status` is not VSHM_OK; the error's message is then in
// `vshm_last_error_message()` during the callback. The callback may call
// any vshm function, including submitting more requests; what it submits
// is held back and handed to the core in batches (16 at most) when the
// callbacks of that call return, or earlier when the thread waits or
// polls through vshm. So a callback must not block on anything else (a
// condition variable, another thread) until a request it submitted
// completes. A callback that frees the client (`vshm_free`) must be the
// last thing that call does with it: later callbacks of the same
// `vshm_poll`/`vshm_wait` still receive the freed pointer and must not
// use it.
typedef void (*vshm_callback)(struct vshm_client *client,
                              uint64_t id,
                              vshm_status status,
                              struct vshm_reply *reply,
                              void *userdata);

// Receives one pub/sub message: `message` is a reply whose root value is
// of type VSHM_TYPE_PUSH: kind (`vshm_value_push_kind`) "message",
// "pmessage" or "smessage", elements [channel, payload] or, for
// "pmessage", [channel, pattern, payload]. The callback owns `message`
// (free it with `vshm_reply_free`). Runs in the thread that calls
// `vshm_poll`, `vshm_wait` or `vshm_take`.
typedef void (*vshm_push_callback)(struct vshm_client *client,
                                   struct vshm_reply *message,
                                   void *userdata);

// Success.
#define VSHM_OK 0

// The server answered with an error reply (WRONGTYPE, NOSCRIPT, ...).
#define VSHM_ERR_REQUEST 1

// The request did not complete within its timeout (or a wait ended).
#define VSHM_ERR_TIMEOUT 2

// The connection to the server, or to the vshm daemon, failed.
#define VSHM_ERR_CONNECTION 3

// The client or the core is shutting down.
#define VSHM_ERR_CLOSING 4

// A transaction was aborted (EXECABORT, or a WATCHed key changed).
#define VSHM_ERR_EXEC_ABORT 5

// The core refused the request before sending it (unsupported command
// such as SUBSCRIBE or MULTI, cross-slot transaction, bad route, ...).
#define VSHM_ERR_INVALID_REQUEST 6

// A per-client limit was hit (in-flight requests, ring space).
#define VSHM_ERR_OVERLOADED 7

// A bad argument from the caller: NULL pointer, negative count, freed
// or foreign handle, bad option value, malformed URI or format string.
#define VSHM_ERR_INVALID_ARGUMENT 8

// A value accessor was used on a value of another type.
#define VSHM_ERR_WRONG_TYPE 9

// An internal error (a bug in vshm, or out of memory); the message says
// more. Never a crash: panics are caught at the API boundary.
#define VSHM_ERR_INTERNAL 10

// `vshm_take`: the request has not completed yet (not an error).
#define VSHM_PENDING 11

// The library version, e.g. "0.1.0". Static storage: never free it.
const char *vshm_version(void);

// A static description of a status code ("VSHM_ERR_TIMEOUT: timed out").
// Never NULL; static storage: never free it.
const char *vshm_errstr(vshm_status status);

// The status of the last failed call made by this thread (VSHM_OK if
// none failed yet). Failed calls set it; successful calls leave it alone.
vshm_status vshm_last_error_status(void);

// The message of the last failed call made by this thread ("" if none).
// Owned by the library (thread-local): valid until the next failing call
// in this thread; copy it to keep it. Never NULL.
const char *vshm_last_error_message(void);

// Set `opts` to the defaults (see the fields). NULL is ignored.
void vshm_connect_options_init(struct vshm_connect_options *opts);

// Connect to the vshm daemon listening on the Unix socket `socket_path`.
//
// `opts` may be NULL (defaults). On success `*out` is a new client the
// caller owns (free with `vshm_free`); on failure `*out` is NULL.
// The registration is renewed transparently when the daemon restarts and
// in a forked child (requests in flight at that moment fail with
// VSHM_ERR_CONNECTION).
vshm_status vshm_connect(const char *socket_path,
                         const struct vshm_connect_options *opts,
                         struct vshm_client **out);

// Set `cfg` to the defaults (all zero). NULL is ignored.
void vshm_config_init(struct vshm_config *cfg);

// Open a client served by an in-process core (started on first use,
// shared by every embedded client of the process, stopped when the last
// one is freed). `cfg` may be NULL (defaults). Connects before returning:
// an unreachable server is VSHM_ERR_CONNECTION. On success `*out` is a
// new client the caller owns (free with `vshm_free`); else NULL.
//
// After fork(), a child using the handle starts its own core (the
// parent's core threads do not exist in the child).
vshm_status vshm_open_embedded(const struct vshm_config *cfg, struct vshm_client **out);

// Like `vshm_open_embedded`, configured by a URI:
// `valkey://[user[:password]@]host[:port][,host[:port]...][/db][?k=v&...]`
// (also `redis://`; `valkeys://` and `rediss://` for TLS). Keys:
// `cluster=0|1`, `db`, `name`, `timeout_ms`, `connect_timeout_ms`,
// `protocol=resp2|resp3`, `tls`, `ca_file`, `read_from`, `max_inflight`,
// `threads`. Example: `valkey://127.0.0.1:7000?cluster=1`.
vshm_status vshm_open_embedded_uri(const char *uri, struct vshm_client **out);

// Free a client. NULL is accepted (no-op, VSHM_OK). Asynchronous requests
// still pending get their callback, in this thread, with
// VSHM_ERR_CLOSING and a NULL reply (the client pointer passed to those
// callbacks must not be used); replies not yet taken with `vshm_take` are
// freed. Replies the caller holds stay valid and must still be freed.
// Calls running in other threads on this client finish normally; calls
// made after this one fail with VSHM_ERR_INVALID_ARGUMENT (the handle
// memory is kept for that, until a later client reuses it). Freeing a
// freed client is VSHM_ERR_INVALID_ARGUMENT.
vshm_status vshm_free(struct vshm_client *c);

// 1 if the client is served by the in-process core, 0 if by the daemon,
// -1 for an invalid handle.
int vshm_is_embedded(const struct vshm_client *c);

// Run one command (argv style, binary safe) and wait for its reply.
//
// `argc` > 0 arguments; `argv[i]` points at `argvlen[i]` bytes, or, when
// `argvlen` is NULL, at a NUL-terminated string. The arguments are
// serialized straight into the shared-memory ring (no intermediate copy)
// and only borrowed for the duration of the call.
//
// On VSHM_OK, `*out` is the reply (owned by the caller: free it with
// `vshm_reply_free`). On any error `*out` is NULL and the error (status
// and message, e.g. the server's "WRONGTYPE ..." for VSHM_ERR_REQUEST) is
// in `vshm_last_error_status()` / `vshm_last_error_message()`.
// The wait is bounded by the request's bound plus a transport margin
// (1 s): the request timeout, or for a blocking command (BLPOP, BRPOP,
// BLMOVE, BRPOPLPUSH, BLMPOP, BZPOPMIN, BZPOPMAX, BZMPOP, XREAD/XREADGROUP
// BLOCK, WAIT, WAITAOF) its own timeout plus 0.5 s (at least the request
// timeout); a command that blocks forever (`BLPOP q 0`) is bounded by
// `timeout_ms` if the request sets one, else by the core's
// `block_forever_limit_ms` (1 h). The core applies the same bound.
vshm_status vshm_command_argv(struct vshm_client *c,
                              int argc,
                              const char *const *argv,
                              const size_t *argvlen,
                              struct vshm_reply **out);

// `vshm_command_argv` with options (timeout, route, flags); `opts` may be
// NULL.
vshm_status vshm_command_argv_opts(struct vshm_client *c,
                                   int argc,
                                   const char *const *argv,
                                   const size_t *argvlen,
                                   const struct vshm_request_options *opts,
                                   struct vshm_reply **out);

// Submit one command without waiting. Returns at once (unless the
// submission ring is full: then it waits for space up to the request
// timeout, VSHM_ERR_OVERLOADED after that).
//
// `*id` (if `id` is not NULL) receives the request id (nonzero). With a
// callback, the completion is delivered to it (see `vshm_callback`) from
// `vshm_poll`/`vshm_wait`; with `cb` NULL, fetch it with `vshm_take(id)`.
// Every submitted request completes exactly once (reply or error).
vshm_status vshm_submit_argv(struct vshm_client *c,
                             int argc,
                             const char *const *argv,
                             const size_t *argvlen,
                             const struct vshm_request_options *opts,
                             vshm_callback cb,
                             void *userdata,
                             uint64_t *id);

// Deliver the completions that have arrived, without blocking: runs their
// callbacks in this thread, and keeps callback-less ones for `vshm_take`;
// with a push callback set, also delivers the pub/sub messages that have
// arrived. `*completed` (if not NULL) = how many requests completed (and
// messages were delivered) in this call. Also resets the `vshm_fd`
// descriptor. With a push callback set and no live registration (after a
// daemon restart, in a forked child), it opens one, so that the
// subscriptions are renewed (a system call or two to the local daemon);
// it fails with that error if it cannot.
vshm_status vshm_poll(struct vshm_client *c, size_t *completed);

// Like `vshm_poll`, but first waits up to `timeout_ms` (>= 0) for at
// least one asynchronous request to complete (or, with a push callback
// set, a pub/sub message to arrive). Returns VSHM_ERR_TIMEOUT if nothing
// came in time; VSHM_OK at once, with `*completed` = 0, if no
// asynchronous request is pending and no push callback is set.
vshm_status vshm_wait(struct vshm_client *c, int timeout_ms, size_t *completed);

// Fetch the outcome of a request submitted without a callback. Never
// blocks. VSHM_PENDING: not completed yet (`*out` NULL; wait with
// `vshm_wait` or `vshm_fd` and try again). Otherwise the request's own
// status, with `*out` its reply (owned by the caller) on VSHM_OK, NULL
// on errors; the id is then forgotten. An unknown id (never submitted,
// already taken, or submitted with a callback) is
// VSHM_ERR_INVALID_ARGUMENT. Like `vshm_poll`, may run callbacks of other
// requests that have completed.
vshm_status vshm_take(struct vshm_client *c, uint64_t id, struct vshm_reply **out);

// Asynchronous requests submitted and not yet completed (0 for an
// invalid handle).
size_t vshm_pending(const struct vshm_client *c);

// A descriptor for event loops (epoll, poll, libuv): it becomes readable
// when completions arrive for this client, when a pending request's
// deadline passes (`vshm_poll` then completes it with VSHM_ERR_TIMEOUT),
// or when the client's connection ends. Then call `vshm_poll`, which
// resets it. It can be readable
// spuriously (for instance after completions that a synchronous call in
// another thread already took); `vshm_poll` is cheap then.
//
// The first call starts a notifier thread (it sleeps on the completion
// ring's futex and writes this eventfd when the core publishes). The
// descriptor is owned by the client (do not close it); it stays the same
// for the client's lifetime, also after a reconnection or in a forked
// child. Returns -1 on error (see `vshm_last_error_message`).
int vshm_fd(struct vshm_client *c);

// Subscribe this client to `n` (> 0) channels (or patterns) of `kind`
// (VSHM_SUB_*); `lens` may be NULL for NUL-terminated names. Returns once
// the server confirmed every channel; `*count` (if not NULL) = this
// client's number of subscriptions. Messages are delivered to the push
// callback (`vshm_set_push_callback`, via `vshm_poll`/`vshm_wait`) or
// taken with `vshm_next_push`. Subscriptions are renewed transparently
// when the client re-registers (daemon restart, forked child) and when
// the core reconnects to the servers; delivery is at most once (messages
// published meanwhile are lost, as with Redis itself).
vshm_status vshm_subscribe(struct vshm_client *c,
                           uint32_t kind,
                           int n,
                           const char *const *channels,
                           const size_t *lens,
                           int64_t *count);

// Unsubscribe from `n` channels of `kind`; `n` = 0 (channels may be
// NULL): from every channel of that kind. Delivery stops at once;
// `*count` (if not NULL) = the subscriptions left.
vshm_status vshm_unsubscribe(struct vshm_client *c,
                             uint32_t kind,
                             int n,
                             const char *const *channels,
                             const size_t *lens,
                             int64_t *count);

// Set (or, with `cb` NULL, clear) the callback that receives pub/sub
// messages from `vshm_poll`/`vshm_wait`/`vshm_take`. Without one,
// messages queue up for `vshm_next_push`.
vshm_status vshm_set_push_callback(struct vshm_client *c, vshm_push_callback cb, void *userdata);

// Take the next pub/sub message, waiting up to `timeout_ms` (>= 0) for
// one: `*out` = the message (a VSHM_TYPE_PUSH reply, see
// `vshm_push_callback`; owned by the caller). VSHM_ERR_TIMEOUT if none
// arrived in time.
vshm_status vshm_next_push(struct vshm_client *c, int timeout_ms, struct vshm_reply **out);

// Run a Lua script: `code` (`code_len` bytes), `nkeys` keys and `nargs`
// arguments (argv style; the length arrays may be NULL for
// NUL-terminated strings). The core runs it by its SHA1 (EVALSHA) and
// loads it on NOSCRIPT, caching the hash. Routed by the first key
// (cluster). `opts` may be NULL. Results as for `vshm_command_argv`.
vshm_status vshm_script(struct vshm_client *c,
                        const char *code,
                        size_t code_len,
                        int nkeys,
                        const char *const *keys,
                        const size_t *keylens,
                        int nargs,
                        const char *const *args,
                        const size_t *arglens,
                        const struct vshm_request_options *opts,
                        struct vshm_reply **out);

// `vshm_script` without waiting (completion as for `vshm_submit_argv`).
vshm_status vshm_submit_script(struct vshm_client *c,
                               const char *code,
                               size_t code_len,
                               int nkeys,
                               const char *const *keys,
                               const size_t *keylens,
                               int nargs,
                               const char *const *args,
                               const size_t *arglens,
                               const struct vshm_request_options *opts,
                               vshm_callback cb,
                               void *userdata,
                               uint64_t *id);

// One step of a SCAN over the whole keyspace (every node of a cluster;
// the server's SCAN on a standalone server). Start with `cursor` 0 and
// pass back `*next_cursor` until it is 0. `pattern` (`pattern_len`
// bytes; NULL: all keys), `count` (a hint; 0: the server's default) and
// `type` (NUL-terminated, e.g. "string"; NULL: any) filter as for SCAN.
// On VSHM_OK `*out` is the reply `[next cursor (int), [keys...]]`. Keys
// may repeat after a failover or slot move. `opts` may be NULL.
vshm_status vshm_scan(struct vshm_client *c,
                      uint64_t cursor,
                      const char *pattern,
                      size_t pattern_len,
                      uint32_t count,
                      const char *type_,
                      const struct vshm_request_options *opts,
                      uint64_t *next_cursor,
                      struct vshm_reply **out);

// Create an empty batch: a pipeline (`atomic` = 0: the commands are sent
// together, each gets its own result, and the reply is an array of them,
// errors in place) or a transaction (`atomic` != 0: MULTI/EXEC, all keys
// in one slot). `*out` is owned by the caller: free it with
// `vshm_batch_free`. A batch is plain data: build it from one thread at a
// time; it can be executed any number of times.
vshm_status vshm_batch_new(int atomic, struct vshm_batch **out);

// Append one command (argv style, as `vshm_command_argv`; copied into the
// batch).
vshm_status vshm_batch_add_argv(struct vshm_batch *b,
                                int argc,
                                const char *const *argv,
                                const size_t *argvlen);

// Transactions: WATCH `key` (`len` bytes, copied) before MULTI; if a
// watched key changes before EXEC, the batch fails with
// VSHM_ERR_EXEC_ABORT. `len` = `VSHM_NUL_TERMINATED`: `key` is a
// NUL-terminated string.
vshm_status vshm_batch_watch(struct vshm_batch *b, const char *key, size_t len);

// Number of commands in the batch (0 for an invalid handle).
size_t vshm_batch_len(const struct vshm_batch *b);

// Remove every command and watched key (the kind stays).
vshm_status vshm_batch_clear(struct vshm_batch *b);

// Free a batch. NULL is accepted. Freeing it twice is
// VSHM_ERR_INVALID_ARGUMENT.
vshm_status vshm_batch_free(struct vshm_batch *b);

// Run a batch and wait: on VSHM_OK `*out` is an array reply with one
// element per command (a failed command's element is of type
// VSHM_TYPE_ERROR, unless VSHM_FLAG_RAISE_ON_ERROR is set: then the batch
// fails with the first error). `opts` may be NULL. Empty batches are
// VSHM_ERR_INVALID_ARGUMENT.
vshm_status vshm_batch_exec(struct vshm_client *c,
                            const struct vshm_batch *b,
                            const struct vshm_request_options *opts,
                            struct vshm_reply **out);

// Submit a batch without waiting (completion as for `vshm_submit_argv`).
vshm_status vshm_batch_submit(struct vshm_client *c,
                              const struct vshm_batch *b,
                              const struct vshm_request_options *opts,
                              vshm_callback cb,
                              void *userdata,
                              uint64_t *id);

// Free a reply, returning its ring space to the core. NULL is accepted.
// Every `vshm_value` of the reply becomes invalid. Freeing a freed reply
// is VSHM_ERR_INVALID_ARGUMENT (until the memory is reused by a later
// reply). Any thread may free a reply; not concurrently with other uses
// of the same reply.
vshm_status vshm_reply_free(struct vshm_reply *r);

// The reply's root value (borrowed: valid until the reply is freed or
// detached). NULL for an invalid reply.
const struct vshm_value *vshm_reply_value(const struct vshm_reply *r);

// Copy the reply out of the shared ring into private memory and release
// its ring space now; the reply stays valid (same handle) but every
// `vshm_value` obtained from it before is invalid (get them again).
// A no-op for replies already in private memory.
vshm_status vshm_reply_detach(struct vshm_reply *r);

// 1 while the reply is read in place from the shared completion ring
// (pinning ring space), 0 when it is in private memory (detached, or
// reassembled because it was larger than one ring record), -1 invalid.
int vshm_reply_in_ring(const struct vshm_reply *r);

// The id of the request this reply answers (as returned by the submit
// functions); 0 for an invalid reply.
uint64_t vshm_reply_id(const struct vshm_reply *r);

// The type of a value: one of VSHM_TYPE_*; VSHM_TYPE_INVALID for NULL.
int vshm_value_type(const struct vshm_value *v);

// A static name for a VSHM_TYPE_* ("string", "array", ...); "invalid"
// for anything else.
const char *vshm_type_name(int t);

// VSHM_TYPE_INT: `*out` = the integer. Else VSHM_ERR_WRONG_TYPE.
vshm_status vshm_value_integer(const struct vshm_value *v, int64_t *out);

// VSHM_TYPE_DOUBLE: `*out` = the double. Else VSHM_ERR_WRONG_TYPE.
vshm_status vshm_value_double(const struct vshm_value *v, double *out);

// VSHM_TYPE_BOOL: `*out` = the boolean. Else VSHM_ERR_WRONG_TYPE.
vshm_status vshm_value_bool(const struct vshm_value *v, bool *out);

// String-like values (STRING, STATUS, ERROR, BIGNUM, VERBATIM text):
// `*ptr` = the bytes, `*len` = their length. ZERO COPY: `*ptr` points into
// the reply (into the shared ring while the reply is in the ring), is NOT
// NUL-terminated, and is valid until the reply is freed or detached.
// Use `vshm_value_strdup` for an owned C string. Else VSHM_ERR_WRONG_TYPE.
vshm_status vshm_value_string(const struct vshm_value *v, const char **ptr, size_t *len);

// VSHM_TYPE_VERBATIM: the format (3 bytes, e.g. "txt"), as
// `vshm_value_string` (borrowed, not NUL-terminated).
vshm_status vshm_value_verbatim_format(const struct vshm_value *v, const char **ptr, size_t *len);

// VSHM_TYPE_PUSH: the push kind ("message", ...), as `vshm_value_string`.
vshm_status vshm_value_push_kind(const struct vshm_value *v, const char **ptr, size_t *len);

// An owned, NUL-terminated copy of a string-like value (see
// `vshm_value_string`; embedded NULs are kept, so use the length from
// there for binary data). Free it with `vshm_string_free` (or `free`).
// NULL on error (wrong type, or out of memory).
char *vshm_value_strdup(const struct vshm_value *v);

// Free a string from `vshm_value_strdup`. NULL is accepted.
void vshm_string_free(char *s);

// Elements of ARRAY, SET and PUSH values; pairs of MAP and ATTRIBUTE
// values (the attributes); bytes of string-like values; 0 otherwise and
// for NULL.
size_t vshm_value_len(const struct vshm_value *v);

// Element `i` of an ARRAY, SET or PUSH value (borrowed from the reply);
// NULL if `i` is out of range or the value has no elements (see
// `vshm_last_error_message`).
const struct vshm_value *vshm_value_element(const struct vshm_value *v, size_t i);

// Key of pair `i` of a MAP value (or of an ATTRIBUTE value's
// attributes); borrowed; NULL if out of range or not a map.
const struct vshm_value *vshm_value_map_key(const struct vshm_value *v, size_t i);

// Value of pair `i` of a MAP value (or of an ATTRIBUTE value's
// attributes); borrowed; NULL if out of range or not a map.
const struct vshm_value *vshm_value_map_value(const struct vshm_value *v, size_t i);

// The data of an ATTRIBUTE value (borrowed); NULL for other types.
const struct vshm_value *vshm_value_attribute_data(const struct vshm_value *v);

/* ---------------------------------------------------------------------------
 * printf-style commands (implemented in C: src/fmt.c)
 *
 * The format is split on spaces into arguments (like hiredis's
 * redisCommand); conversions interpolate into the current argument and
 * never split it:
 *   %s  a NUL-terminated string        %b  binary: const void *, size_t
 *   %d %i %u %x %X %o %c, with hh h l ll z j t length modifiers
 *   %f %e %g %a (double; L: long double)      %%  a literal '%'
 * Flags, width and precision are accepted ('*' is not). An unsupported
 * conversion or a NULL %s is VSHM_ERR_INVALID_ARGUMENT.
 */

/* vshm_command_argv with a format: vshm_command(c, &r, "SET %s %b", k, v, vlen). */
vshm_status vshm_command(vshm_client *client, vshm_reply **out, const char *format, ...);
vshm_status vshm_commandv(vshm_client *client, vshm_reply **out, const char *format, va_list ap);

/* vshm_command with options (timeout, route, flags; as for
 * vshm_command_argv_opts): vshm_command_opts(c, &o, &r, "BLPOP %s 0", q).
 * `opts` may be NULL (the defaults). */
vshm_status vshm_command_opts(vshm_client *client, const vshm_request_options *opts, vshm_reply **out,
                              const char *format, ...);
vshm_status vshm_commandv_opts(vshm_client *client, const vshm_request_options *opts, vshm_reply **out,
                               const char *format, va_list ap);

/* vshm_submit_argv with a format (default options). */
vshm_status vshm_submit_command(vshm_client *client, vshm_callback cb, void *userdata, uint64_t *id,
                                const char *format, ...);
vshm_status vshm_submit_commandv(vshm_client *client, vshm_callback cb, void *userdata, uint64_t *id,
                                 const char *format, va_list ap);

/* vshm_submit_command with options (as for vshm_submit_argv); `opts` may
 * be NULL. */
vshm_status vshm_submit_command_opts(vshm_client *client, const vshm_request_options *opts, vshm_callback cb,
                                     void *userdata, uint64_t *id, const char *format, ...);
vshm_status vshm_submit_commandv_opts(vshm_client *client, const vshm_request_options *opts, vshm_callback cb,
                                      void *userdata, uint64_t *id, const char *format, va_list ap);

/* vshm_batch_add_argv with a format. */
vshm_status vshm_batch_add_command(vshm_batch *batch, const char *format, ...);
vshm_status vshm_batch_add_commandv(vshm_batch *batch, const char *format, va_list ap);

#ifdef __cplusplus
}  /* extern "C" */
#endif

#endif /* VSHM_H */
