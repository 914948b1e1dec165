/*
 * printf-style commands (like hiredis's redisCommand), for libvshm.
 *
 * The format is split on spaces into arguments; conversions interpolate
 * into the current argument and never split it:
 *   %s   a NUL-terminated string
 *   %b   binary data: a pointer and a size_t length (two arguments)
 *   %d %i %u %x %X %o %c with the length modifiers hh h l ll z j t
 *   %f %F %e %E %g %G %a %A (double; L: long double)
 *   %%   a literal '%'
 * Flags, field width and precision are allowed (not '*'). An argument that
 * consists only of interpolations that produced nothing is still an
 * argument (""), as in hiredis: "SET k %s" with "" sets k to "".
 *
 * Stable Rust cannot take a va_list, so this small part is C; it builds an
 * argv and hands it to the Rust functions (vshm_command_argv, ...).
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>

#include "vshm.h"

/* Defined in lib.rs (not in the public header, not exported by the
 * installed libvshm.so: see client-c/vshm.map). */
void vshmi_set_last_error(vshm_status status, const char *message);

typedef struct {
    char *data;      /* all argument bytes, back to back */
    size_t len, cap;
    size_t *ends;    /* end offset of each argument in data */
    int argc, argcap;
    int touched;     /* the current argument exists (even if empty) */
    size_t start;    /* start offset of the current argument */
    int oom;
} fmt_buf;

static void fb_reserve(fmt_buf *b, size_t more) {
    if (b->oom) return;
    if (b->len + more <= b->cap) return;
    size_t cap = b->cap ? b->cap : 64;
    while (cap < b->len + more) {
        if (cap > SIZE_MAX / 2) { b->oom = 1; return; }
        cap *= 2;
    }
    char *d = realloc(b->data, cap);
    if (!d) { b->oom = 1; return; }
    b->data = d;
    b->cap = cap;
}

static void fb_append(fmt_buf *b, const void *p, size_t n) {
    b->touched = 1;
    if (n == 0) return;
    fb_reserve(b, n);
    if (b->oom) return;
    memcpy(b->data + b->len, p, n);
    b->len += n;
}

static void fb_end_arg(fmt_buf *b) {
    if (!b->touched || b->oom) return;
    if (b->argc == b->argcap) {
        int cap = b->argcap ? b->argcap * 2 : 8;
        size_t *e = realloc(b->ends, (size_t)cap * sizeof *e);
        if (!e) { b->oom = 1; return; }
        b->ends = e;
        b->argcap = cap;
    }
    b->ends[b->argc++] = b->len;
    b->touched = 0;
    b->start = b->len;
}

static void fb_free(fmt_buf *b) {
    free(b->data);
    free(b->ends);
}

/* Interpolate one printf conversion `spec` (e.g. "%08llx") whose value is
 * the next argument of type chosen by `len_mod` and `conv`. */
static int fb_printf(fmt_buf *b, const char *spec, const char *len_mod, char conv, va_list *ap) {
    char tmp[512];
    int n;
    switch (conv) {
    case 'd': case 'i':
        if (!strcmp(len_mod, "ll")) n = snprintf(tmp, sizeof tmp, spec, va_arg(*ap, long long));
        else if (!strcmp(len_mod, "l")) n = snprintf(tmp, sizeof tmp, spec, va_arg(*ap, long));
        else if (!strcmp(len_mod, "z")) n = snprintf(tmp, sizeof tmp, spec, va_arg(*ap, ssize_t));
        else if (!strcmp(len_mod, "j")) n = snprintf(tmp, sizeof tmp, spec, va_arg(*ap, intmax_t));
        else if (!strcmp(len_mod, "t")) n = snprintf(tmp, sizeof tmp, spec, va_arg(*ap, ptrdiff_t));
        else n = snprintf(tmp, sizeof tmp, spec, va_arg(*ap, int)); /* "", h, hh: promoted */
        break;
    case 'u': case 'x': case 'X': case 'o':
        if (!strcmp(len_mod, "ll")) n = snprintf(tmp, sizeof tmp, spec, va_arg(*ap, unsigned long long));
        else if (!strcmp(len_mod, "l")) n = snprintf(tmp, sizeof tmp, spec, va_arg(*ap, unsigned long));
        else if (!strcmp(len_mod, "z")) n = snprintf(tmp, sizeof tmp, spec, va_arg(*ap, size_t));
        else if (!strcmp(len_mod, "j")) n = snprintf(tmp, sizeof tmp, spec, va_arg(*ap, uintmax_t));
        else if (!strcmp(len_mod, "t")) n = snprintf(tmp, sizeof tmp, spec, va_arg(*ap, ptrdiff_t));
        else n = snprintf(tmp, sizeof tmp, spec, va_arg(*ap, unsigned int));
        break;
    case 'c':
        n = snprintf(tmp, sizeof tmp, spec, va_arg(*ap, int));
        break;
    case 's': {
        const char *s = va_arg(*ap, const char *);
        if (!s || len_mod[0]) return -1;
        n = snprintf(tmp, sizeof tmp, spec, s);
        break;
    }
    case 'f': case 'F': case 'e': case 'E': case 'g': case 'G': case 'a': case 'A':
        if (!strcmp(len_mod, "L")) n = snprintf(tmp, sizeof tmp, spec, va_arg(*ap, long double));
        else n = snprintf(tmp, sizeof tmp, spec, va_arg(*ap, double));
        break;
    default:
        return -1;
    }
    if (n < 0 || (size_t)n >= sizeof tmp) return -1;
    fb_append(b, tmp, (size_t)n);
    return 0;
}

/* Parse `fmt` into b. Returns VSHM_OK or an error (with the last error set). */
static vshm_status fb_parse(fmt_buf *b, const char *fmt, va_list ap_in) {
    va_list ap;
    va_copy(ap, ap_in);
    const char *p = fmt;
    vshm_status st = VSHM_OK;
    char err[160];
    while (*p) {
        if (*p == ' ') {
            fb_end_arg(b);
            p++;
            continue;
        }
        if (*p != '%') {
            const char *q = p;
            while (*q && *q != ' ' && *q != '%') q++;
            fb_append(b, p, (size_t)(q - p));
            p = q;
            continue;
        }
        /* a conversion */
        const char *conv_start = p++;
        if (*p == '%') { fb_append(b, "%", 1); p++; continue; }
        if (*p == 's') {
            const char *s = va_arg(ap, const char *);
            if (!s) { snprintf(err, sizeof err, "format: %%s argument is NULL"); st = VSHM_ERR_INVALID_ARGUMENT; break; }
            fb_append(b, s, strlen(s));
            p++;
            continue;
        }
        if (*p == 'b') {
            const void *d = va_arg(ap, const void *);
            size_t n = va_arg(ap, size_t);
            if (!d && n) { snprintf(err, sizeof err, "format: %%b pointer is NULL"); st = VSHM_ERR_INVALID_ARGUMENT; break; }
            if (n > (size_t)512 * 1024 * 1024) { snprintf(err, sizeof err, "format: %%b length %zu is too large", n); st = VSHM_ERR_INVALID_ARGUMENT; break; }
            fb_append(b, d, n);
            p++;
            continue;
        }
        /* general printf conversion: flags, width, precision, length, conv */
        while (*p && strchr("-+ #0'", *p)) p++;
        while (*p >= '0' && *p <= '9') p++;
        if (*p == '.') { p++; while (*p >= '0' && *p <= '9') p++; }
        char len_mod[3] = {0};
        if ((p[0] == 'h' && p[1] == 'h') || (p[0] == 'l' && p[1] == 'l')) { len_mod[0] = p[0]; len_mod[1] = p[1]; p += 2; }
        else if (*p && strchr("hlzjtL", *p)) { len_mod[0] = *p; p++; }
        char conv = *p;
        size_t speclen = (size_t)(p - conv_start) + 1;
        char spec[32];
        if (!conv || speclen >= sizeof spec) {
            snprintf(err, sizeof err, "format: bad conversion at offset %zu", (size_t)(conv_start - fmt));
            st = VSHM_ERR_INVALID_ARGUMENT;
            break;
        }
        memcpy(spec, conv_start, speclen);
        spec[speclen] = 0;
        if (fb_printf(b, spec, len_mod, conv, &ap) != 0) {
            snprintf(err, sizeof err, "format: unsupported conversion \"%s\"", spec);
            st = VSHM_ERR_INVALID_ARGUMENT;
            break;
        }
        p++;
    }
    va_end(ap);
    if (st == VSHM_OK) fb_end_arg(b);
    if (st == VSHM_OK && b->oom) { snprintf(err, sizeof err, "format: out of memory"); st = VSHM_ERR_INTERNAL; }
    if (st == VSHM_OK && b->argc == 0) { snprintf(err, sizeof err, "format: no arguments"); st = VSHM_ERR_INVALID_ARGUMENT; }
    if (st != VSHM_OK) vshmi_set_last_error(st, err);
    return st;
}

/* Build argv/argvlen arrays pointing into b->data (freed by the caller). */
static vshm_status fb_argv(fmt_buf *b, const char ***argv, size_t **argvlen) {
    *argv = malloc((size_t)b->argc * sizeof **argv);
    *argvlen = malloc((size_t)b->argc * sizeof **argvlen);
    if (!*argv || !*argvlen) {
        free(*argv);
        free(*argvlen);
        vshmi_set_last_error(VSHM_ERR_INTERNAL, "format: out of memory");
        return VSHM_ERR_INTERNAL;
    }
    size_t start = 0;
    for (int i = 0; i < b->argc; i++) {
        (*argv)[i] = b->data ? b->data + start : "";
        (*argvlen)[i] = b->ends[i] - start;
        start = b->ends[i];
    }
    return VSHM_OK;
}

enum fmt_target { T_COMMAND, T_SUBMIT, T_BATCH };

typedef struct {
    enum fmt_target target;
    vshm_client *client;
    vshm_reply **out;
    vshm_callback cb;
    void *userdata;
    uint64_t *id;
    vshm_batch *batch;
    const vshm_request_options *opts; /* NULL: the defaults */
} fmt_call;

static vshm_status run(const fmt_call *c, const char *fmt, va_list ap) {
    if (c->out) *c->out = NULL;
    if (c->id) *c->id = 0;
    if (!fmt) {
        vshmi_set_last_error(VSHM_ERR_INVALID_ARGUMENT, "format is NULL");
        return VSHM_ERR_INVALID_ARGUMENT;
    }
    fmt_buf b;
    memset(&b, 0, sizeof b);
    vshm_status st = fb_parse(&b, fmt, ap);
    const char **argv = NULL;
    size_t *argvlen = NULL;
    if (st == VSHM_OK) st = fb_argv(&b, &argv, &argvlen);
    if (st == VSHM_OK) {
        switch (c->target) {
        case T_COMMAND:
            st = vshm_command_argv_opts(c->client, b.argc, argv, argvlen, c->opts, c->out);
            break;
        case T_SUBMIT:
            st = vshm_submit_argv(c->client, b.argc, argv, argvlen, c->opts, c->cb, c->userdata, c->id);
            break;
        case T_BATCH:
            st = vshm_batch_add_argv(c->batch, b.argc, argv, argvlen);
            break;
        }
    }
    free(argv);
    free(argvlen);
    fb_free(&b);
    return st;
}

vshm_status vshm_commandv_opts(vshm_client *client, const vshm_request_options *opts, vshm_reply **out,
                               const char *format, va_list ap) {
    if (!out) {
        vshmi_set_last_error(VSHM_ERR_INVALID_ARGUMENT, "out (the out-pointer) is NULL");
        return VSHM_ERR_INVALID_ARGUMENT;
    }
    fmt_call c = { T_COMMAND, client, out, NULL, NULL, NULL, NULL, opts };
    return run(&c, format, ap);
}

vshm_status vshm_command_opts(vshm_client *client, const vshm_request_options *opts, vshm_reply **out,
                              const char *format, ...) {
    va_list ap;
    va_start(ap, format);
    vshm_status st = vshm_commandv_opts(client, opts, out, format, ap);
    va_end(ap);
    return st;
}

vshm_status vshm_commandv(vshm_client *client, vshm_reply **out, const char *format, va_list ap) {
    return vshm_commandv_opts(client, NULL, out, format, ap);
}

vshm_status vshm_command(vshm_client *client, vshm_reply **out, const char *format, ...) {
    va_list ap;
    va_start(ap, format);
    vshm_status st = vshm_commandv_opts(client, NULL, out, format, ap);
    va_end(ap);
    return st;
}

vshm_status vshm_submit_commandv_opts(vshm_client *client, const vshm_request_options *opts, vshm_callback cb,
                                      void *userdata, uint64_t *id, const char *format, va_list ap) {
    fmt_call c = { T_SUBMIT, client, NULL, cb, userdata, id, NULL, opts };
    return run(&c, format, ap);
}

vshm_status vshm_submit_command_opts(vshm_client *client, const vshm_request_options *opts, vshm_callback cb,
                                     void *userdata, uint64_t *id, const char *format, ...) {
    va_list ap;
    va_start(ap, format);
    vshm_status st = vshm_submit_commandv_opts(client, opts, cb, userdata, id, format, ap);
    va_end(ap);
    return st;
}

vshm_status vshm_submit_commandv(vshm_client *client, vshm_callback cb, void *userdata, uint64_t *id,
                                 const char *format, va_list ap) {
    return vshm_submit_commandv_opts(client, NULL, cb, userdata, id, format, ap);
}

vshm_status vshm_submit_command(vshm_client *client, vshm_callback cb, void *userdata, uint64_t *id,
                                const char *format, ...) {
    va_list ap;
    va_start(ap, format);
    vshm_status st = vshm_submit_commandv_opts(client, NULL, cb, userdata, id, format, ap);
    va_end(ap);
    return st;
}

vshm_status vshm_batch_add_commandv(vshm_batch *batch, const char *format, va_list ap) {
    fmt_call c = { T_BATCH, NULL, NULL, NULL, NULL, NULL, batch, NULL };
    return run(&c, format, ap);
}

vshm_status vshm_batch_add_command(vshm_batch *batch, const char *format, ...) {
    va_list ap;
    va_start(ap, format);
    vshm_status st = vshm_batch_add_commandv(batch, format, ap);
    va_end(ap);
    return st;
}
