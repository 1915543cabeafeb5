/* TLS on the HTTP server's connections (listeners with cn_http_server.tls_get). The session
 * (ev/tls.h, memory BIOs) sits between the socket and the connection's buffers: ciphertext
 * read from the socket is fed to it and decrypted into rbuf, where the plain code path finds
 * it as if the socket had put it there; the plaintext accumulated in out is sealed into wout
 * and written as is. Plain listeners never reach this file: their connections have no tls.
 *
 * Reading is level-triggered on a plain socket (unread bytes stay in the kernel and wake the
 * loop again); here they may stay in the session, decrypted or not, so whenever reading
 * starts again with something buffered, an idle handle delivers it on the next iteration.
 * The end of the socket's input is delivered only after every byte before it. */
#include "http/internal.h"

#include "base/log.h"
#include "ev/tls.h"

#define TLS_RBUF             (16u << 10) /* ciphertext read from the socket at once */
#define TLS_IN_MAX           (32u << 10) /* buffered ciphertext above which the socket rests */
#define SEAL_PIECE           (16u << 10) /* plaintext sealed and moved out at once */
#define DEFAULT_HANDSHAKE_MS 10000

_Static_assert(CN_HTTP_TLS_FAILS == CN_TLS_FAIL_COUNT, "stats slots per handshake failure");

/* States: handshaking (neither flag) -> established, or -> failed (the connection then
 * closes, lingering when an alert is to be written). raw_eof: the socket's end was read
 * (UV_EOF or an error code); eof_delivered: it was handed to the plain path. */
struct http_tls {
    struct cn_tls_conn *s;
    uv_idle_t idle;
    ssize_t raw_eof;
    unsigned established : 1;
    unsigned failed : 1;
    unsigned notify_sent : 1;
    unsigned eof_delivered : 1;
};

int cn_http__tls_accept(struct cn_http_conn *c)
{
    struct cn_http_worker *w = c->w;
    struct cn_tls_ctx *cur = w->srv->tls_get(w->srv->tls_arg, w->id);
    if (cur && cur != w->tls) {
        cn_tls_ctx_unref(w->tls);
        w->tls = cur;
    } else {
        cn_tls_ctx_unref(cur);
    }
    if (!w->tls)
        return CN_EINVAL;
    if (!w->tls_rbuf && !(w->tls_rbuf = malloc(TLS_RBUF)))
        return CN_ENOMEM;
    struct http_tls *t = calloc(1, sizeof(*t));
    if (!t)
        return CN_ENOMEM;
    t->s = cn_tls_conn_new(w->tls);
    if (!t->s) {
        free(t);
        return CN_ENOMEM;
    }
    uv_idle_init(w->loop, &t->idle);
    t->idle.data = c;
    c->handles++;
    c->tls = t;
    uint64_t ms = cn_tls_ctx_handshake_timeout(w->tls);
    cn_http__set_deadline(c, ms ? ms : DEFAULT_HANDSHAKE_MS);
    return 0;
}

uv_handle_t *cn_http__tls_handle(struct cn_http_conn *c)
{
    return (uv_handle_t *)&c->tls->idle;
}

void cn_http__tls_free(struct cn_http_conn *c)
{
    cn_tls_conn_free(c->tls->s);
    cn_free(&c->tls);
}

void cn_http__tls_alloc(struct cn_http_conn *c, uv_buf_t *buf)
{
    size_t room = TLS_RBUF;
    if (c->phase != P_LINGER) {
        size_t pend = cn_tls_conn_in_pending(c->tls->s);
        room = pend < TLS_IN_MAX ? CN_MIN(TLS_IN_MAX - pend, (size_t)TLS_RBUF) : 0;
    }
    *buf = uv_buf_init(room ? c->w->tls_rbuf : NULL, (unsigned)room);
}

/* The socket is read while the connection wants input, the session can take it and the
 * socket has not ended. */
static void sock_sync(struct cn_http_conn *c)
{
    struct http_tls *t = c->tls;
    int want =
        c->reading && !c->closing && !t->raw_eof && cn_tls_conn_in_pending(t->s) < TLS_IN_MAX;
    cn_http__sock_read(c, want);
}

static void deliver_eof(struct cn_http_conn *c)
{
    struct http_tls *t = c->tls;
    if (t->eof_delivered)
        return;
    t->eof_delivered = 1;
    cn_http__input(c, t->raw_eof ? t->raw_eof : UV_EOF);
}

static void fail(struct cn_http_conn *c, enum cn_tls_fail why)
{
    struct http_tls *t = c->tls;
    t->failed = 1;
    atomic_fetch_add_explicit(&c->w->stats.tls_failures[why], 1, memory_order_relaxed);
    cn_debug("http", "tls handshake failed", "conn=%llu reason=%s error=\"%s\"",
             (unsigned long long)c->id, cn_tls_fail_names[why], cn_tls_conn_error(t->s));
    cn_tls_conn_drop_input(t->s);
    if (why == CN_TLS_FAIL_TIMEOUT || why == CN_TLS_FAIL_CLOSED) {
        cn_http__close(c);
        return;
    }
    /* The alert (if OpenSSL wrote one) goes out, then the lingering close: the peer reads an
     * orderly end rather than a reset, even a plain HTTP client whose request we read. */
    cn_http__end(c);
}

/* Runs the handshake, then decrypts into rbuf while the connection reads. */
static void pump(struct cn_http_conn *c)
{
    struct http_tls *t = c->tls;
    if (c->closing || t->failed)
        return;
    if (c->phase == P_LINGER) {
        cn_tls_conn_drop_input(t->s);
        if (t->raw_eof)
            deliver_eof(c);
        return;
    }
    if (!t->established) {
        enum cn_tls_fail why = CN_TLS_FAIL_MALFORMED;
        int rc = cn_tls_conn_handshake(t->s, &why);
        if (rc == CN_EIO) {
            fail(c, why);
            return;
        }
        if (rc == CN_EAGAIN) {
            if (t->raw_eof) {
                fail(c, CN_TLS_FAIL_CLOSED);
                return;
            }
            cn_http__flush(c); /* our flight of the handshake */
            if (!c->closing)
                sock_sync(c);
            return;
        }
        t->established = 1;
        atomic_fetch_add_explicit(&c->w->stats.tls_handshakes, 1, memory_order_relaxed);
        if (cn_log_threshold <= CN_LOG_DEBUG) {
            char alpn[32];
            cn_debug("http", "tls handshake", "conn=%llu sni=\"%s\" version=%s cipher=%s alpn=%s",
                     (unsigned long long)c->id, cn_tls_conn_servername(t->s),
                     cn_tls_conn_version(t->s), cn_tls_conn_cipher(t->s),
                     cn_tls_conn_alpn(t->s, alpn, sizeof(alpn)));
        }
        cn_http__set_deadline(c, c->lim.idle_timeout_ms);
    }
    while (c->reading && !c->closing && c->phase != P_LINGER) {
        char *p;
        size_t room;
        cn_http__room(c, &p, &room);
        if (room == 0) {
            cn_http__input(c, UV_ENOBUFS); /* as a socket read into a full rbuf: wait */
            break;
        }
        size_t n;
        int rc = cn_tls_conn_read(t->s, p, room, &n);
        if (rc == 0 && n > 0) {
            cn_http__input(c, (ssize_t)n);
            continue;
        }
        if (rc == CN_EAGAIN) {
            if (t->raw_eof)
                deliver_eof(c); /* every byte before the end was delivered */
            break;
        }
        if (rc == 0) { /* close_notify: the client's end of input */
            if (!t->raw_eof)
                t->raw_eof = UV_EOF;
            deliver_eof(c);
            break;
        }
        cn_debug("http", "tls record error", "conn=%llu error=\"%s\"", (unsigned long long)c->id,
                 cn_tls_conn_error(t->s));
        cn_http__close(c);
        return;
    }
    if (!c->closing) {
        cn_http__flush(c);
        if (!c->closing && c->phase != P_LINGER)
            sock_sync(c);
    }
}

void cn_http__tls_read(struct cn_http_conn *c, ssize_t nread)
{
    struct http_tls *t = c->tls;
    if (nread == 0)
        return;
    if (c->phase == P_LINGER) {
        /* The answer is out: what the peer still sends is dropped, its end closes. */
        if (nread < 0)
            t->eof_delivered = 1;
        cn_http__input(c, nread == UV_ENOBUFS ? 0 : nread);
        return;
    }
    if (nread == UV_ENOBUFS) {
        /* TLS_IN_MAX bytes wait in the session: the socket rests until they are taken. */
        cn_http__sock_read(c, 0);
        pump(c);
        return;
    }
    if (nread < 0) {
        t->raw_eof = nread;
        cn_http__sock_read(c, 0);
    } else {
        c->w->activity++;
        if (cn_tls_conn_feed(t->s, c->w->tls_rbuf, (size_t)nread) != 0) {
            cn_http__close(c);
            return;
        }
    }
    pump(c);
}

static void on_idle(uv_idle_t *h)
{
    struct cn_http_conn *c = h->data;
    uv_idle_stop(h);
    if (!c->closing && c->reading)
        pump(c);
}

void cn_http__tls_read_started(struct cn_http_conn *c)
{
    struct http_tls *t = c->tls;
    if (c->phase == P_LINGER) {
        cn_tls_conn_drop_input(t->s);
        if (t->raw_eof)
            deliver_eof(c);
        else
            cn_http__sock_read(c, 1);
        return;
    }
    sock_sync(c);
    if (t->established && (cn_tls_conn_readable(t->s) || (t->raw_eof && !t->eof_delivered)))
        uv_idle_start(&t->idle, on_idle);
}

int cn_http__tls_seal(struct cn_http_conn *c)
{
    struct http_tls *t = c->tls;
    if (c->out.len) {
        if (CN_NEVER(!t->established))
            return CN_EINVAL;
        for (size_t off = 0; off < c->out.len;) {
            size_t n = CN_MIN(c->out.len - off, (size_t)SEAL_PIECE);
            int rc = cn_tls_conn_write(t->s, c->out.ptr + off, n);
            if (!rc)
                rc = cn_tls_conn_take(t->s, &c->wout);
            if (rc)
                return rc;
            off += n;
        }
        c->out.len = 0;
    }
    return cn_tls_conn_take(t->s, &c->wout);
}

size_t cn_http__tls_out_pending(const struct cn_http_conn *c)
{
    return cn_tls_conn_out_pending(c->tls->s);
}

int cn_http__tls_close_notify(struct cn_http_conn *c)
{
    struct http_tls *t = c->tls;
    if (cn_http__tls_half_close(c))
        return 1;
    /* Entering the lingering close: input not yet read is dropped, the socket read (and
     * dropped) until its end, which may have come already. */
    cn_tls_conn_drop_input(t->s);
    if (t->raw_eof) {
        cn_http__close(c);
        return 1;
    }
    cn_http__sock_read(c, 1);
    return 0;
}

int cn_http__tls_half_close(struct cn_http_conn *c)
{
    struct http_tls *t = c->tls;
    if (t->established && !t->notify_sent) {
        t->notify_sent = 1;
        cn_tls_conn_close_notify(t->s);
        if (cn_tls_conn_out_pending(t->s)) {
            cn_http__flush(c);
            return 1;
        }
    }
    return 0;
}

int cn_http__tls_handshaking(const struct cn_http_conn *c)
{
    return !c->tls->established && !c->tls->failed;
}

void cn_http__tls_timeout(struct cn_http_conn *c)
{
    fail(c, CN_TLS_FAIL_TIMEOUT);
}
