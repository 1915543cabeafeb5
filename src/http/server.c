/* HTTP/1.1 server connections: reading, the strict head scan, llhttp, dispatch, replies,
 * timeouts, draining. See internal.h for the connection's phases and invariants. */
#include "http/internal.h"

#include "base/log.h"
#include "ev/ev.h"
#include "ev/tls.h"

#include <sys/socket.h>
#include <time.h>

#define OUT_MAX        (64u << 20)  /* largest reply a handler may build in memory */
#define OUT_HIGH_WATER (256u << 10) /* stop parsing pipelined requests above this */
#define LINGER_MS      2000
#define RBUF_POOL_MAX  64
#define BODY_KEEP_CAP  (64u << 10)

const double cn_http_lat_bounds[CN_HTTP_LAT_BUCKETS] = {
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 5};

const char *const cn_http_proto_err_names[CN_PE_COUNT] = {
    "bad_request", "url_too_long", "header_too_large", "body_too_large", "timeout",
    "idle_close",  "send_timeout", "overload",         "unsupported"};

static void conn_process(struct cn_http_conn *c);
static void conn_flush(struct cn_http_conn *c);
static void conn_close(struct cn_http_conn *c);
static void conn_read_start(struct cn_http_conn *c);

static uint64_t next_conn_id = 1; /* only touched through atomics */

const char *cn_http_status_text(int status)
{
    switch (status) {
    case 100:
        return "Continue";
    case 101:
        return "Switching Protocols";
    case 200:
        return "OK";
    case 201:
        return "Created";
    case 202:
        return "Accepted";
    case 204:
        return "No Content";
    case 206:
        return "Partial Content";
    case 301:
        return "Moved Permanently";
    case 302:
        return "Found";
    case 304:
        return "Not Modified";
    case 307:
        return "Temporary Redirect";
    case 308:
        return "Permanent Redirect";
    case 400:
        return "Bad Request";
    case 401:
        return "Unauthorized";
    case 403:
        return "Forbidden";
    case 404:
        return "Not Found";
    case 405:
        return "Method Not Allowed";
    case 408:
        return "Request Timeout";
    case 409:
        return "Conflict";
    case 411:
        return "Length Required";
    case 413:
        return "Content Too Large";
    case 414:
        return "URI Too Long";
    case 415:
        return "Unsupported Media Type";
    case 417:
        return "Expectation Failed";
    case 422:
        return "Unprocessable Content";
    case 429:
        return "Too Many Requests";
    case 431:
        return "Request Header Fields Too Large";
    case 500:
        return "Internal Server Error";
    case 501:
        return "Not Implemented";
    case 502:
        return "Bad Gateway";
    case 503:
        return "Service Unavailable";
    case 504:
        return "Gateway Timeout";
    case 505:
        return "HTTP Version Not Supported";
    case 507:
        return "Insufficient Storage";
    default:
        return "Unknown";
    }
}

/* ---- timers ---------------------------------------------------------------------------- */

static void on_timer(uv_timer_t *t);

static void timer_arm(struct cn_http_conn *c)
{
    uint64_t d = c->deadline;
    if (c->wdeadline && (!d || c->wdeadline < d))
        d = c->wdeadline;
    if (!d) {
        return; /* a timer that fires early re-checks and stays quiet */
    }
    if (c->timer_due && c->timer_due <= d)
        return;
    uint64_t now = uv_now(c->w->loop);
    uv_timer_start(&c->timer, on_timer, d > now ? d - now : 0, 0);
    c->timer_due = d;
}

/* Deadlines are lazy: moving one later leaves the armed timer alone; when it fires early it
 * re-arms for the real deadline. So the common request costs no timer operation. */
static void set_deadline_at(struct cn_http_conn *c, uint64_t at)
{
    c->deadline = at;
    timer_arm(c);
}

static void set_deadline(struct cn_http_conn *c, uint64_t timeout_ms)
{
    set_deadline_at(c, timeout_ms ? uv_now(c->w->loop) + timeout_ms : 0);
}

/* ---- output ---------------------------------------------------------------------------- */

static void update_date(struct cn_http_worker *w)
{
    time_t now = time(NULL);
    if ((uint64_t)now == w->date_sec)
        return;
    struct tm tm;
    gmtime_r(&now, &tm);
    w->date_len = strftime(w->date, sizeof(w->date), "Date: %a, %d %b %Y %H:%M:%S GMT\r\n", &tm);
    w->date_sec = (uint64_t)now;
}

/* Appends the status line and the common headers. content_length < 0 means chunked. */
static int put_head(struct cn_http_conn *c, struct cn_http_req *req, int status,
                    const char *content_type, int64_t content_length,
                    const struct cn_http_header *extra, size_t num_extra)
{
    struct cn_buf *o = &c->out;
    struct cn_http_worker *w = c->w;
    update_date(w);
    char line[64];
    int n;
    if (CN_LIKELY(status == 200)) {
        memcpy(line, "HTTP/1.1 200 OK\r\n", 17);
        n = 17;
    } else {
        n = snprintf(line, sizeof(line), "HTTP/1.1 %d %s\r\n", status, cn_http_status_text(status));
    }
    int rc = cn_buf_reserve(o, (size_t)n + 128 + w->date_len);
    if (rc)
        return rc;
    cn_buf_append(o, line, (size_t)n);
    cn_buf_append(o, "Server: cairn\r\n", 15);
    cn_buf_append(o, w->date, w->date_len);
    if (content_type && status != 204 && status != 304) {
        cn_buf_append(o, "Content-Type: ", 14);
        rc = cn_buf_puts(o, content_type);
        if (!rc)
            rc = cn_buf_append(o, "\r\n", 2);
    }
    if (!rc && content_length >= 0 && status != 204 && status != 304 && status >= 200) {
        cn_buf_append(o, "Content-Length: ", 16);
        cn_buf_append_u64(o, (uint64_t)content_length);
        rc = cn_buf_append(o, "\r\n", 2);
    } else if (!rc && content_length == CN_HTTP_LEN_CHUNKED) {
        rc = cn_buf_append(o, "Transfer-Encoding: chunked\r\n", 28);
    }
    for (size_t i = 0; !rc && i < num_extra; i++) {
        rc = cn_buf_append_slice(o, extra[i].name);
        if (!rc)
            rc = cn_buf_append(o, ": ", 2);
        if (!rc)
            rc = cn_buf_append_slice(o, extra[i].value);
        if (!rc)
            rc = cn_buf_append(o, "\r\n", 2);
    }
    if (rc)
        return rc;
    if (status == 101) /* the caller's fields say Connection: upgrade */
        return cn_buf_append(o, "\r\n", 2);
    if (req->close || c->close_after || w->draining) {
        req->close = 1;
        rc = cn_buf_append(o, "Connection: close\r\n\r\n", 21);
    } else if (req->http_minor == 0) {
        rc = cn_buf_append(o, "Connection: keep-alive\r\n\r\n", 26);
    } else {
        rc = cn_buf_append(o, "\r\n", 2);
    }
    return rc;
}

static void on_tunnel_shut(uv_shutdown_t *sr, int status)
{
    struct cn_http_conn *c = sr->data;
    if (status < 0 && !c->closing)
        conn_close(c);
}

/* A tunnel's write side ends (everything queued is written): TLS's close_notify first. */
static void tunnel_shut(struct cn_http_conn *c)
{
    if (c->wr_shut || c->closing)
        return;
    if (CN_UNLIKELY(c->tls) && cn_http__tls_half_close(c))
        return; /* close_notify is being written: after_written comes again */
    c->wr_shut = 1;
    c->sreq.data = c;
    if (uv_shutdown(&c->sreq, (uv_stream_t *)&c->tcp, on_tunnel_shut) != 0)
        conn_close(c);
}

static void after_written(struct cn_http_conn *c)
{
    if (c->closing)
        return;
    if (c->phase == P_TUNNEL && c->close_after) {
        conn_close(c);
        return;
    }
    if (c->phase == P_TUNNEL && c->tun_shut && !c->wr_shut) {
        tunnel_shut(c);
        if (c->closing)
            return;
    }
    if (c->req.drain_cb && c->req.replied && !c->req.done) {
        c->req.drain_cb(&c->req);
        if (c->closing)
            return;
    }
    if (c->close_after && c->phase != P_WAIT) {
        /* Lingering close: shut our side, drain what the peer still sends, then close, so a
         * client still uploading gets to read the reply instead of a reset. */
        if (c->phase != P_LINGER) {
            if (CN_UNLIKELY(c->tls) && cn_http__tls_close_notify(c))
                return; /* written first; this runs again */
            c->phase = P_LINGER;
            c->wdeadline = 0;
            set_deadline(c, LINGER_MS);
            if (uv_shutdown(&c->sreq, (uv_stream_t *)&c->tcp, NULL) != 0) {
                conn_close(c);
                return;
            }
            c->rlen = c->rpos = 0;
            if (!c->read_eof)
                conn_read_start(c);
            else
                conn_close(c);
        }
        return;
    }
    if (!c->reading && !c->read_eof) {
        conn_read_start(c);
        conn_process(c);
        conn_flush(c);
    }
}

static void on_write(uv_write_t *wr, int status)
{
    struct cn_http_conn *c = wr->data;
    c->writing = 0;
    c->wdeadline = 0;
    c->wout.len = 0;
    if (c->wout.cap > OUT_HIGH_WATER)
        cn_buf_release(&c->wout);
    if (status < 0) {
        conn_close(c);
        return;
    }
    if (c->out.len || (CN_UNLIKELY(c->tls) && cn_http__tls_out_pending(c))) {
        conn_flush(c);
        return;
    }
    after_written(c);
}

/* TLS: the plaintext in out is sealed into wout, which is written as is (no swap). */
static void tls_flush(struct cn_http_conn *c)
{
    if (c->writing || c->closing)
        return;
    if (cn_http__tls_seal(c) != 0) {
        conn_close(c);
        return;
    }
    if (c->out.cap > OUT_HIGH_WATER)
        cn_buf_release(&c->out);
    if (c->wout.len == 0)
        return;
    ssize_t sent = send(c->fd, c->wout.ptr, c->wout.len, MSG_DONTWAIT | MSG_NOSIGNAL);
    if (sent < 0 && errno != EAGAIN && errno != EWOULDBLOCK) {
        conn_close(c);
        return;
    }
    size_t n = sent > 0 ? (size_t)sent : 0;
    if (n == c->wout.len) {
        c->wout.len = 0;
        if (c->wout.cap > OUT_HIGH_WATER)
            cn_buf_release(&c->wout);
        after_written(c);
        return;
    }
    uv_buf_t b = uv_buf_init(c->wout.ptr + n, (unsigned)(c->wout.len - n));
    c->wreq.data = c;
    if (uv_write(&c->wreq, (uv_stream_t *)&c->tcp, &b, 1, on_write) != 0) {
        conn_close(c);
        return;
    }
    c->writing = 1;
    if (c->lim.send_timeout_ms) {
        c->wdeadline = uv_now(c->w->loop) + c->lim.send_timeout_ms;
        timer_arm(c);
    }
}

static void conn_flush(struct cn_http_conn *c)
{
    if (CN_UNLIKELY(c->tls)) {
        tls_flush(c);
        return;
    }
    if (c->writing || c->closing || c->out.len == 0)
        return;
    uv_buf_t b;
    /* send(2) rather than uv_try_write's write(2): the socket call skips the VFS layer
     * (measurably cheaper per reply); no uv_write is in flight here, so order holds. */
    ssize_t sent = send(c->fd, c->out.ptr, c->out.len, MSG_DONTWAIT | MSG_NOSIGNAL);
    int n = sent >= 0 ? (int)sent : (errno == EAGAIN || errno == EWOULDBLOCK) ? UV_EAGAIN : -errno;
    if (n == (int)c->out.len) {
        c->out.len = 0;
        if (c->out.cap > OUT_HIGH_WATER)
            cn_buf_release(&c->out);
        after_written(c);
        return;
    }
    if (n < 0 && n != UV_EAGAIN) {
        conn_close(c);
        return;
    }
    if (n < 0)
        n = 0;
    struct cn_buf t = c->wout;
    c->wout = c->out;
    c->out = t;
    c->out.len = 0;
    b = uv_buf_init(c->wout.ptr + n, (unsigned)(c->wout.len - (size_t)n));
    c->wreq.data = c;
    if (uv_write(&c->wreq, (uv_stream_t *)&c->tcp, &b, 1, on_write) != 0) {
        conn_close(c);
        return;
    }
    c->writing = 1;
    if (c->lim.send_timeout_ms) {
        c->wdeadline = uv_now(c->w->loop) + c->lim.send_timeout_ms;
        timer_arm(c);
    }
}

/* ---- request lifecycle ----------------------------------------------------------------- */

static void req_reset(struct cn_http_conn *c)
{
    struct cn_http_req *r = &c->req;
    struct cn_buf body = r->body;
    body.len = 0;
    if (body.cap > BODY_KEEP_CAP)
        cn_buf_release(&body);
    body.max = c->lim.max_body_bytes;
    memset(r, 0, sizeof(*r));
    r->body = body;
    r->conn = c;
    r->worker = c->w;
    r->headers = c->hdrs;
}

static void record(struct cn_http_conn *c, int route_id, int status, uint64_t start_ns)
{
    struct cn_http_worker *w = c->w;
    struct cn_http_route_stats *rs = &w->route_stats[route_id];
    int cls = status / 100;
    if (cls < 1 || cls > 5)
        cls = 5;
    atomic_fetch_add_explicit(&rs->by_class[cls], 1, memory_order_relaxed);
    uint64_t us = (uv_hrtime() - start_ns) / 1000;
    double s = (double)us / 1e6;
    size_t b = 0;
    while (b < CN_HTTP_LAT_BUCKETS && s > cn_http_lat_bounds[b])
        b++;
    atomic_fetch_add_explicit(&rs->lat[b], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&rs->lat_sum_us, us, memory_order_relaxed);
    atomic_fetch_add_explicit(&w->stats.requests, 1, memory_order_relaxed);
}

/* The reply of the current request is complete (queued in out). */
static void req_finished(struct cn_http_conn *c)
{
    struct cn_http_req *r = &c->req;
    r->done = 1;
    record(c, r->route_id, r->status, r->start_ns);
    if (c->streaming_body) {
        /* Answered before the body was all read: the rest is not parsed as requests. */
        c->streaming_body = 0;
        c->body_paused = 0;
        c->close_after = 1;
    }
    if (r->close || c->w->draining)
        c->close_after = 1;
    int was_wait = c->phase == P_WAIT;
    c->phase = P_IDLE;
    req_reset(c);
    if (c->close_after) {
        /* Nothing more is parsed; the reply is flushed then the connection lingers. */
        c->deadline = 0;
    } else {
        set_deadline(c, c->lim.idle_timeout_ms);
    }
    if (was_wait && !c->in_process) {
        /* An asynchronous reply: pick up pipelined requests waiting in rbuf. */
        if (!c->close_after) {
            conn_process(c);
            if (!c->reading && !c->read_eof && !c->closing)
                conn_read_start(c);
        }
        conn_flush(c);
    }
}

void cn_http_reply(struct cn_http_req *req, int status, const char *content_type, const void *body,
                   size_t body_len, const struct cn_http_header *extra, size_t num_extra)
{
    struct cn_http_conn *c = req->conn;
    CN_BUG_ON(req->replied);
    req->replied = 1;
    req->status = status;
    int rc = put_head(c, req, status, content_type, (int64_t)body_len, extra, num_extra);
    if (!rc && !req->head && body_len)
        rc = cn_buf_append(&c->out, body, body_len);
    if (rc) {
        /* The reply does not fit the output buffer: answer 500 instead. */
        cn_error("http", "reply too large", "conn=%llu status=%d len=%zu",
                 (unsigned long long)c->id, status, body_len);
        c->out.len = 0;
        req->status = 500;
        req->close = 1;
        static const char msg[] = "reply too large\n";
        put_head(c, req, 500, "text/plain", sizeof(msg) - 1, NULL, 0);
        cn_buf_append(&c->out, msg, sizeof(msg) - 1);
    }
    req_finished(c);
}

void cn_http_reply_text(struct cn_http_req *req, int status, const char *text)
{
    char buf[512];
    int n = snprintf(buf, sizeof(buf), "%s\n", text);
    if (n < 0)
        n = 0;
    if ((size_t)n >= sizeof(buf))
        n = sizeof(buf) - 1;
    cn_http_reply(req, status, "text/plain; charset=utf-8", buf, (size_t)n, NULL, 0);
}

void cn_http_reply_start(struct cn_http_req *req, int status, const char *content_type,
                         const struct cn_http_header *extra, size_t num_extra)
{
    struct cn_http_conn *c = req->conn;
    CN_BUG_ON(req->replied);
    req->replied = 1;
    req->streaming = 1;
    req->status = status;
    req->chunked_out = req->http_minor == 1;
    /* HTTP/1.0 has no chunked coding: stream until close. */
    if (req->http_minor == 0)
        req->close = 1;
    put_head(c, req, status, content_type, req->http_minor == 0 ? INT64_MAX : -1, extra, num_extra);
    if (req->http_minor == 0) {
        /* put_head wrote a bogus length for INT64_MAX: rewrite without Content-Length. */
        char *p = memmem(c->out.ptr, c->out.len, "Content-Length: ", 16);
        if (p) {
            char *e = memmem(p, (size_t)(c->out.ptr + c->out.len - p), "\r\n", 2);
            size_t cut = (size_t)(e + 2 - p);
            memmove(p, e + 2, (size_t)(c->out.ptr + c->out.len - (e + 2)));
            c->out.len -= cut;
        }
    }
    if (!c->in_process)
        conn_flush(c);
}

void cn_http_reply_chunk(struct cn_http_req *req, const void *data, size_t len)
{
    struct cn_http_conn *c = req->conn;
    CN_BUG_ON(!req->streaming || req->done);
    if (len == 0 || req->head)
        return;
    int rc = 0;
    if (req->chunked_out) {
        char hex[24];
        int n = snprintf(hex, sizeof(hex), "%zx\r\n", len);
        rc = cn_buf_append(&c->out, hex, (size_t)n);
        if (!rc)
            rc = cn_buf_append(&c->out, data, len);
        if (!rc)
            rc = cn_buf_append(&c->out, "\r\n", 2);
    } else {
        rc = cn_buf_append(&c->out, data, len);
    }
    if (rc) {
        cn_error("http", "streamed reply overflow", "conn=%llu", (unsigned long long)c->id);
        c->close_after = 1;
        req->close = 1;
    }
    if (!c->in_process)
        conn_flush(c);
}

void cn_http_reply_end(struct cn_http_req *req)
{
    struct cn_http_conn *c = req->conn;
    CN_BUG_ON(!req->streaming || req->done);
    if (req->chunked_out && !req->head)
        cn_buf_append(&c->out, "0\r\n\r\n", 5);
    req_finished(c);
    if (!c->in_process)
        conn_flush(c);
}

/* ---- streaming replies, tunnels --------------------------------------------------------- */

void cn_http_reply_head(struct cn_http_req *req, int status, const struct cn_http_header *hdrs,
                        size_t num_hdrs, int64_t content_length)
{
    struct cn_http_conn *c = req->conn;
    CN_BUG_ON(req->replied);
    req->replied = 1;
    req->streaming = 1;
    req->status = status;
    if (content_length == CN_HTTP_LEN_CHUNKED && req->http_minor == 0)
        content_length = CN_HTTP_LEN_CLOSE;
    int bodyless = req->head || status == 204 || status == 304 || status < 200;
    if (content_length == CN_HTTP_LEN_CHUNKED)
        req->chunked_out = !bodyless;
    else if (content_length == CN_HTTP_LEN_CLOSE && !bodyless)
        req->close = 1;
    if (put_head(c, req, status, NULL, content_length, hdrs, num_hdrs) != 0) {
        cn_error("http", "reply head too large", "conn=%llu status=%d", (unsigned long long)c->id,
                 status);
        c->close_after = 1;
        req->close = 1;
    }
}

void cn_http_reply_data(struct cn_http_req *req, const void *data, size_t len)
{
    struct cn_http_conn *c = req->conn;
    CN_BUG_ON(!req->streaming || req->done);
    if (len == 0 || req->head)
        return;
    int rc = 0;
    if (req->chunked_out) {
        char hex[24];
        int n = snprintf(hex, sizeof(hex), "%zx\r\n", len);
        rc = cn_buf_reserve(&c->out, (size_t)n + len + 2);
        if (!rc) {
            cn_buf_append(&c->out, hex, (size_t)n);
            cn_buf_append(&c->out, data, len);
            cn_buf_append(&c->out, "\r\n", 2);
        }
    } else {
        rc = cn_buf_append(&c->out, data, len);
    }
    if (rc) {
        cn_error("http", "streamed reply overflow", "conn=%llu", (unsigned long long)c->id);
        c->close_after = 1;
        req->close = 1;
    }
}

void cn_http_req_flush(struct cn_http_req *req)
{
    struct cn_http_conn *c = req->conn;
    if (!c->in_process)
        conn_flush(c);
}

struct cn_sendq *cn_http_req_sendq(const struct cn_http_req *req)
{
    struct cn_http_worker *w = req->conn->w;
    if (CN_UNLIKELY(w->sendq_state == 0)) {
        /* Set up at first use: only the gateway's workers send on other sockets. */
        w->sendq_state = !w->draining && cn_sendq_init(&w->sendq, w->loop) == 0 ? 1 : 2;
        if (w->sendq_state == 2)
            cn_debug("http", "batched sends unavailable, sending directly", "worker=%d", w->id);
    }
    /* (a queue that turned itself off: cn_sendq_active 0) */
    return w->sendq_state == 1 && cn_sendq_active(&w->sendq) ? &w->sendq : NULL;
}

size_t cn_http_req_out_pending(const struct cn_http_req *req)
{
    const struct cn_http_conn *c = req->conn;
    return c->out.len + c->wout.len;
}

void cn_http_req_reset(struct cn_http_req *req)
{
    struct cn_http_conn *c = req->conn;
    req->done = 1;
    c->streaming_body = 0;
    conn_close(c);
}

void cn_http_req_body_pause(struct cn_http_req *req)
{
    struct cn_http_conn *c = req->conn;
    c->body_paused = 1;
    if (c->reading) {
        uv_read_stop((uv_stream_t *)&c->tcp);
        c->reading = 0;
    }
}

void cn_http_req_body_resume(struct cn_http_req *req)
{
    struct cn_http_conn *c = req->conn;
    if (!c->body_paused)
        return;
    c->body_paused = 0;
    if (c->closing)
        return;
    if (!c->read_eof)
        conn_read_start(c);
    if (!c->in_process && c->phase == P_BODY) {
        conn_process(c);
        conn_flush(c);
    }
}

int cn_http_tunnel_start(struct cn_http_req *req, cn_http_tunnel_cb cb, struct cn_slice *out_early)
{
    struct cn_http_conn *c = req->conn;
    CN_BUG_ON(c->phase != P_WAIT || c->streaming_body);
    c->phase = P_TUNNEL;
    c->deadline = 0;
    req->tunnel_cb = cb;
    *out_early = (struct cn_slice){c->rbuf + c->rpos, c->rlen - c->rpos};
    c->rpos = c->rlen = 0;
    if (!c->read_eof) {
        conn_read_start(c);
        return 0;
    }
    if (c->eof_in_wait && !req->close && !c->w->draining) {
        /* Only the client's half-close meant to close: the tunnel carries it instead. */
        c->close_after = 0;
        return 1;
    }
    return 0;
}

int cn_http_req_tls(const struct cn_http_req *req)
{
    return req->conn->tls != NULL;
}

const char *cn_http_req_peer_ip(const struct cn_http_req *req)
{
    struct cn_http_conn *c = req->conn;
    if (c->peer_ip[0])
        return c->peer_ip;
    struct sockaddr_storage ss;
    int len = sizeof(ss);
    if (uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&ss, &len) != 0)
        return "";
    if (ss.ss_family == AF_INET)
        uv_ip4_name((struct sockaddr_in *)&ss, c->peer_ip, sizeof(c->peer_ip));
    else if (ss.ss_family == AF_INET6)
        uv_ip6_name((struct sockaddr_in6 *)&ss, c->peer_ip, sizeof(c->peer_ip));
    return c->peer_ip;
}

void cn_http_tunnel_end(struct cn_http_req *req)
{
    struct cn_http_conn *c = req->conn;
    req->done = 1;
    c->close_after = 1;
    if (c->reading) {
        uv_read_stop((uv_stream_t *)&c->tcp);
        c->reading = 0;
    }
    if (!c->writing && c->out.len == 0)
        conn_close(c);
    else
        conn_flush(c);
}

void cn_http_tunnel_shutdown(struct cn_http_req *req)
{
    struct cn_http_conn *c = req->conn;
    CN_BUG_ON(c->phase != P_TUNNEL);
    if (c->closing || c->tun_shut)
        return;
    c->tun_shut = 1;
    if (c->writing || c->out.len || (CN_UNLIKELY(c->tls) && cn_http__tls_out_pending(c)))
        conn_flush(c); /* after_written shuts it */
    else
        tunnel_shut(c);
}

#define CORE_ERROR_BODY 4096

/* The body of an error the core answers by itself: the server's renderer's, once the head
 * was read and when it has one, else "REASON\n". */
static size_t error_body(struct cn_http_conn *c, const struct cn_http_req *r, int status,
                         const char *reason, char body[CORE_ERROR_BODY], const char **type)
{
    const struct cn_http_server *srv = c->w->srv;
    size_t n = 0;
    if (srv->error_body && r->path.ptr)
        n = srv->error_body(srv->error_ctx, r, status, reason, body, CORE_ERROR_BODY, type);
    if (n == 0 || n > CORE_ERROR_BODY) {
        *type = "text/plain; charset=utf-8";
        int k = snprintf(body, CORE_ERROR_BODY, "%s\n", reason);
        n = k < 0 ? 0 : CN_MIN((size_t)k, (size_t)CORE_ERROR_BODY - 1);
    }
    return n;
}

/* An error found while reading a request: reply with a one-line reason and close. */
static void protocol_error(struct cn_http_conn *c, int status, const char *reason, int kind)
{
    struct cn_http_worker *w = c->w;
    atomic_fetch_add_explicit(&w->stats.proto_errs[kind], 1, memory_order_relaxed);
    cn_debug("http", "request rejected", "conn=%llu status=%d reason=\"%s\"",
             (unsigned long long)c->id, status, reason);
    if (c->phase == P_WAIT) {
        /* The current request is still being answered: just stop reading more. */
        c->close_after = 1;
        return;
    }
    c->close_after = 1;
    struct cn_http_req *r = &c->req;
    if (!r->start_ns)
        r->start_ns = uv_hrtime();
    r->close = 1;
    r->head = 0;
    r->replied = 1;
    r->status = status;
    r->route_id = (int)cn_router_num_routes(w->srv->router);
    char body[CORE_ERROR_BODY];
    const char *type = "text/plain; charset=utf-8";
    size_t n = error_body(c, r, status, reason, body, &type);
    put_head(c, r, status, type, n, NULL, 0);
    cn_buf_append(&c->out, body, n);
    req_finished(c);
}

/* ---- llhttp callbacks ------------------------------------------------------------------ */

static struct cn_http_conn *conn_of(llhttp_t *p)
{
    return p->data;
}

static void extend(struct cn_slice *s, const char *at, size_t len)
{
    if (!s->ptr)
        *s = (struct cn_slice){at, len};
    else
        s->len = (size_t)(at + len - s->ptr);
}

static int on_url(llhttp_t *p, const char *at, size_t len)
{
    extend(&conn_of(p)->req.target, at, len);
    return 0;
}

static int on_header_field(llhttp_t *p, const char *at, size_t len)
{
    struct cn_http_conn *c = conn_of(p);
    struct cn_http_req *r = &c->req;
    if (c->last_cb != 1) {
        if (r->num_headers == c->hdr_cap) {
            size_t cap = c->hdr_cap ? c->hdr_cap * 2 : 16;
            if (cap > c->lim.max_headers)
                cap = c->lim.max_headers;
            if (cap <= r->num_headers) {
                c->err_status = 431;
                c->err_reason = "too many header fields (http.max_headers)";
                c->err_kind = CN_PE_HEADER_TOO_LARGE;
                return -1;
            }
            struct cn_http_header *h = realloc(c->hdrs, cap * sizeof(*h));
            if (!h) {
                c->err_status = 503;
                c->err_reason = "out of memory";
                c->err_kind = CN_PE_OVERLOAD;
                return -1;
            }
            c->hdrs = h;
            c->hdr_cap = cap;
            r->headers = h;
        }
        r->headers[r->num_headers++] = (struct cn_http_header){{NULL, 0}, {NULL, 0}};
        c->last_cb = 1;
    }
    extend(&r->headers[r->num_headers - 1].name, at, len);
    return 0;
}

static int on_header_value(llhttp_t *p, const char *at, size_t len)
{
    struct cn_http_conn *c = conn_of(p);
    struct cn_http_req *r = &c->req;
    c->last_cb = 2;
    if (r->num_headers)
        extend(&r->headers[r->num_headers - 1].value, at, len);
    return 0;
}

/* "WHAT (SETTING)" naming the body limit of this connection's server. */
static const char *body_limit_reason(struct cn_http_conn *c, const char *what)
{
    const char *name = c->w->srv->body_limit_name;
    snprintf(c->err_buf, sizeof(c->err_buf), "%s (%s)", what, name ? name : "http.max_body_bytes");
    return c->err_buf;
}

static int fail(struct cn_http_conn *c, int status, const char *reason, int kind)
{
    c->err_status = status;
    c->err_reason = reason;
    c->err_kind = kind;
    return -1;
}

static int on_headers_complete(llhttp_t *p)
{
    struct cn_http_conn *c = conn_of(p);
    struct cn_http_req *r = &c->req;
    r->method = p->method;
    r->method_name = cn_slice_of(llhttp_method_name((llhttp_method_t)p->method));
    r->http_minor = p->http_major == 1 ? p->http_minor : 0;
    if (p->http_major != 1)
        return fail(c, 505, "only HTTP/1.0 and HTTP/1.1 are supported", CN_PE_UNSUPPORTED);
    r->head = p->method == HTTP_HEAD;
    const char *q = memchr(r->target.ptr, '?', r->target.len);
    if (q) {
        r->path = (struct cn_slice){r->target.ptr, (size_t)(q - r->target.ptr)};
        r->query = (struct cn_slice){q + 1, (size_t)(r->target.ptr + r->target.len - q - 1)};
    } else {
        r->path = r->target;
        r->query = (struct cn_slice){r->target.ptr + r->target.len, 0};
    }
    if (r->path.len == 0 || (r->path.ptr[0] != '/' && !(r->path.len == 1 && r->path.ptr[0] == '*')))
        return fail(c, 400, "request target must be an absolute path", CN_PE_BAD_REQUEST);
    int hosts = 0, expect_continue = 0, tes = 0;
    c->gzip = 0;
    for (size_t i = 0; i < r->num_headers; i++) {
        struct cn_http_header *h = &r->headers[i];
        h->value = cn_slice_trim_ows(h->value);
        if (cn_slice_case_eq(h->name, CN_SLICE_LIT("host"))) {
            hosts++;
        } else if (cn_slice_case_eq(h->name, CN_SLICE_LIT("transfer-encoding"))) {
            if (r->http_minor == 0)
                return fail(c, 400, "Transfer-Encoding is not allowed in HTTP/1.0",
                            CN_PE_BAD_REQUEST);
            if (++tes > 1)
                return fail(c, 400, "more than one Transfer-Encoding header", CN_PE_BAD_REQUEST);
            if (h->value.len == 0)
                return fail(c, 400, "empty Transfer-Encoding", CN_PE_BAD_REQUEST);
            if (!cn_slice_case_eq(h->value, CN_SLICE_LIT("chunked")))
                return fail(c, 501, "unsupported Transfer-Encoding (only chunked is)",
                            CN_PE_UNSUPPORTED);
        } else if (cn_slice_case_eq(h->name, CN_SLICE_LIT("expect"))) {
            if (cn_slice_case_eq(h->value, CN_SLICE_LIT("100-continue")))
                expect_continue = 1;
            else
                return fail(c, 417, "unsupported Expect value", CN_PE_UNSUPPORTED);
        } else if (!c->w->srv->stream_handler &&
                   cn_slice_case_eq(h->name, CN_SLICE_LIT("content-encoding"))) {
            if (cn_slice_case_eq(h->value, CN_SLICE_LIT("gzip")) ||
                cn_slice_case_eq(h->value, CN_SLICE_LIT("x-gzip")))
                c->gzip = 1;
            else if (!cn_slice_case_eq(h->value, CN_SLICE_LIT("identity")))
                return fail(c, 415, "unsupported Content-Encoding (gzip and identity are)",
                            CN_PE_UNSUPPORTED);
        }
    }
    if (hosts > 1)
        return fail(c, 400, "more than one Host header", CN_PE_BAD_REQUEST);
    if (hosts == 0 && r->http_minor == 1)
        return fail(c, 400, "missing Host header", CN_PE_BAD_REQUEST);
    if ((p->flags & F_CONTENT_LENGTH) && p->content_length > c->lim.max_body_bytes)
        return fail(c, 413, body_limit_reason(c, "request body too large"), CN_PE_BODY_TOO_LARGE);
    c->body_mode = BODY_NONE;
    if (p->flags & F_CHUNKED) {
        c->body_mode = BODY_CHUNKED;
        cn_chunked_init(&c->chunked);
    } else if ((p->flags & F_CONTENT_LENGTH) && p->content_length) {
        c->body_mode = BODY_LENGTH;
        c->body_left = p->content_length;
        /* The size is known: one allocation instead of a doubling series of copies. */
        if (cn_buf_reserve(&r->body, (size_t)p->content_length) != 0)
            return fail(c, 503, "out of memory", CN_PE_OVERLOAD);
    }
    if (expect_continue && c->body_mode != BODY_NONE && r->http_minor == 1 && !c->w->draining) {
        cn_buf_append(&c->out, "HTTP/1.1 100 Continue\r\n\r\n", 25);
        conn_flush(c);
    }
    if (!llhttp_should_keep_alive(p))
        r->close = 1;
    /* Upgrade is not offered: the request is answered as plain HTTP (RFC 9110 7.8), and
     * llhttp must not hand the rest of the connection over as another protocol. */
    p->upgrade = 0;
    /* The body is framed by Cairn (see chunked.h): llhttp ends the message at the head. */
    return 1;
}

static int on_message_complete(llhttp_t *p)
{
    struct cn_http_conn *c = conn_of(p);
    c->msg_complete = 1;
    return HPE_PAUSED;
}

static const llhttp_settings_t parser_settings = {
    .on_url = on_url,
    .on_header_field = on_header_field,
    .on_header_value = on_header_value,
    .on_headers_complete = on_headers_complete,
    .on_message_complete = on_message_complete,
};

/* ---- gzip request bodies --------------------------------------------------------------- */

/* Inflates body in place (through a second buffer); every gzip member is decoded. Returns 0,
 * or an HTTP status with *reason set. */
static int gunzip_body(struct cn_http_conn *c, const char **reason)
{
    struct cn_buf *in = &c->req.body;
    struct cn_buf out;
    cn_buf_init(&out, c->lim.max_body_bytes);
    z_stream z;
    memset(&z, 0, sizeof(z));
    if (inflateInit2(&z, 16 + MAX_WBITS) != Z_OK) {
        *reason = "out of memory";
        return 503;
    }
    z.next_in = (unsigned char *)in->ptr;
    z.avail_in = (unsigned)in->len;
    int status = 0;
    while (z.avail_in > 0) {
        size_t room = out.cap - out.len;
        if (room < 4096) {
            size_t want = out.cap ? out.cap : 4096;
            if (want > out.max - out.len)
                want = out.max - out.len;
            if (want == 0 || cn_buf_reserve(&out, want) != 0) {
                status = 413;
                *reason = body_limit_reason(c, "decoded request body too large");
                break;
            }
            room = out.cap - out.len;
        }
        z.next_out = (unsigned char *)out.ptr + out.len;
        z.avail_out = (unsigned)room;
        int zr = inflate(&z, Z_NO_FLUSH);
        out.len = out.cap - z.avail_out;
        if (zr == Z_STREAM_END) {
            if (z.avail_in > 0 && inflateReset(&z) != Z_OK) {
                status = 400;
                *reason = "malformed gzip request body";
                break;
            }
            continue;
        }
        if (zr == Z_BUF_ERROR && z.avail_out == 0)
            continue;
        if (zr != Z_OK) {
            status = 400;
            *reason = "malformed gzip request body";
            break;
        }
        if (z.avail_in == 0) {
            status = 400;
            *reason = "truncated gzip request body";
        }
    }
    if (!status && in->len == 0)
        status = 0;
    inflateEnd(&z);
    if (status) {
        cn_buf_release(&out);
        return status;
    }
    cn_buf_release(in);
    *in = out;
    return 0;
}

/* ---- dispatch -------------------------------------------------------------------------- */

/* Checks "Authorization: Bearer TOKEN" in time independent of where the values differ. */
static int bearer_ok(const struct cn_http_req *r, const char *token)
{
    const struct cn_slice *v = cn_http_req_header(r, "authorization");
    size_t tlen = strlen(token);
    if (!v || v->len < 7 || !cn_slice_case_eq((struct cn_slice){v->ptr, 6}, CN_SLICE_LIT("bearer")))
        return 0;
    size_t at = 6;
    if (v->ptr[at] != ' ' && v->ptr[at] != '\t')
        return 0;
    while (at < v->len && (v->ptr[at] == ' ' || v->ptr[at] == '\t'))
        at++; /* RFC 9110 11.4: one or more spaces */
    if (v->len - at != tlen)
        return 0;
    unsigned char diff = 0;
    for (size_t i = 0; i < tlen; i++)
        diff |= (unsigned char)(v->ptr[at + i] ^ token[i]);
    return diff == 0;
}

static void dispatch(struct cn_http_conn *c)
{
    struct cn_http_worker *w = c->w;
    struct cn_http_req *r = &c->req;
    c->phase = P_WAIT;
    c->deadline = 0;
    r->route_id = (int)cn_router_num_routes(w->srv->router);
    if (c->gzip) {
        const char *reason = NULL;
        int st = gunzip_body(c, &reason);
        if (st) {
            atomic_fetch_add_explicit(
                &w->stats.proto_errs[st == 413 ? CN_PE_BODY_TOO_LARGE : CN_PE_BAD_REQUEST], 1,
                memory_order_relaxed);
            char body[CORE_ERROR_BODY];
            const char *type;
            size_t n = error_body(c, r, st, reason, body, &type);
            cn_http_reply(r, st, type, body, n, NULL, 0);
            return;
        }
    }
    const struct cn_route *rt = NULL;
    unsigned allowed = 0;
    enum cn_route_match m =
        cn_router_match(w->srv->router, r->method, r->path, &rt, &r->params, &allowed);
    if (m == CN_ROUTE_BAD_METHOD && r->method == HTTP_HEAD) {
        unsigned allowed2;
        m = cn_router_match(w->srv->router, HTTP_GET, r->path, &rt, &r->params, &allowed2);
    }
    if (m == CN_ROUTE_NOT_FOUND) {
        cn_http_reply_text(r, 404, "not found");
        return;
    }
    if (m == CN_ROUTE_BAD_METHOD) {
        char allow[256];
        size_t n = 0;
        for (int i = 0; i < 32 && n < sizeof(allow) - 16; i++) {
            if (allowed & CN_M(i)) {
                int k = snprintf(allow + n, sizeof(allow) - n, "%s%s", n ? ", " : "",
                                 llhttp_method_name((llhttp_method_t)i));
                n += (size_t)k;
            }
        }
        struct cn_http_header h = {CN_SLICE_LIT("Allow"), {allow, n}};
        static const char msg[] = "method not allowed\n";
        cn_http_reply(r, 405, "text/plain; charset=utf-8", msg, sizeof(msg) - 1, &h, 1);
        return;
    }
    r->route_id = rt->id;
    if (w->srv->token && !(rt->flags & CN_ROUTE_PUBLIC) && !bearer_ok(r, w->srv->token)) {
        static const struct cn_http_header h = {CN_SLICE_LIT("WWW-Authenticate"),
                                                CN_SLICE_LIT("Bearer realm=\"cairn\"")};
        static const char msg[] = "missing or wrong bearer token (api.token)\n";
        cn_http_reply(r, 401, "text/plain; charset=utf-8", msg, sizeof(msg) - 1, &h, 1);
        return;
    }
    rt->handler(r, rt->ctx);
    /* A handler that did not reply answers later (phase stays WAIT). */
}

/* Compacts rbuf so the unprocessed bytes start at 0. Only between requests. */
static void compact(struct cn_http_conn *c)
{
    if (c->rpos == 0)
        return;
    if (c->rpos < c->rlen)
        memmove(c->rbuf, c->rbuf + c->rpos, c->rlen - c->rpos);
    c->rlen -= c->rpos;
    c->rpos = 0;
}

static void parse_error(struct cn_http_conn *c, llhttp_errno_t err)
{
    if (c->err_status) {
        protocol_error(c, c->err_status, c->err_reason, c->err_kind);
        return;
    }
    const char *reason = llhttp_get_error_reason(&c->parser);
    char msg[160];
    snprintf(msg, sizeof(msg), "malformed request: %s", reason ? reason : llhttp_errno_name(err));
    /* Smuggling cases (CL with TE, duplicate CL, bad TE) all arrive here. */
    protocol_error(c, 400, msg, CN_PE_BAD_REQUEST);
}

/* Streaming servers: the handler gets the request at its head. */
static void stream_dispatch(struct cn_http_conn *c)
{
    struct cn_http_server *srv = c->w->srv;
    struct cn_http_req *r = &c->req;
    c->deadline = 0;
    r->route_id = (int)cn_router_num_routes(srv->router);
    r->content_length = c->body_mode == BODY_LENGTH    ? (int64_t)c->body_left
                        : c->body_mode == BODY_CHUNKED ? -1
                                                       : 0;
    c->streaming_body = c->body_mode != BODY_NONE;
    c->body_paused = 0;
    c->body_streamed = 0;
    c->phase = c->streaming_body ? P_BODY : P_WAIT;
    srv->stream_handler(r, srv->stream_ctx);
}

/* A malformed streamed body: the handler drops the request, the client gets the error. */
static void stream_body_error(struct cn_http_conn *c, int status, const char *reason, int kind)
{
    struct cn_http_req *r = &c->req;
    c->streaming_body = 0;
    if (r->abort_cb)
        r->abort_cb(r);
    r->abort_cb = NULL;
    r->body_cb = NULL;
    r->drain_cb = NULL;
    if (r->replied) {
        atomic_fetch_add_explicit(&c->w->stats.proto_errs[kind], 1, memory_order_relaxed);
        r->done = 1;
        conn_close(c);
        return;
    }
    protocol_error(c, status, reason, kind);
}

/* Hands the body bytes in rbuf to the handler. Returns 1 to stop processing (more input
 * needed, or the connection is closing), 0 to go on (the phase changed). */
static int stream_body(struct cn_http_conn *c)
{
    struct cn_http_req *r = &c->req;
    const char *start = c->rbuf + c->rpos;
    size_t avail = c->rlen - c->rpos, used;
    int done;
    const char *data = start;
    size_t len;
    if (c->body_mode == BODY_LENGTH) {
        used = avail < c->body_left ? avail : (size_t)c->body_left;
        c->body_left -= used;
        len = used;
        done = c->body_left == 0;
    } else {
        struct cn_buf *scratch = &r->body;
        scratch->len = 0;
        scratch->max = (size_t)(c->lim.max_body_bytes - c->body_streamed);
        enum cn_chunked_result cr =
            cn_chunked_decode(&c->chunked, start, avail, scratch, &c->lim, &used);
        if (cr >= CN_CHUNKED_BAD) {
            int kind = cr == CN_CHUNKED_TOO_LARGE            ? CN_PE_BODY_TOO_LARGE
                       : cr == CN_CHUNKED_TRAILERS_TOO_LARGE ? CN_PE_HEADER_TOO_LARGE
                                                             : CN_PE_BAD_REQUEST;
            stream_body_error(c, (int)cr,
                              cr == CN_CHUNKED_TOO_LARGE
                                  ? body_limit_reason(c, "request body too large")
                                  : c->chunked.reason,
                              kind);
            return 1;
        }
        data = scratch->ptr;
        len = scratch->len;
        c->body_streamed += len;
        done = cr == CN_CHUNKED_DONE;
    }
    c->rpos += used;
    if (done) {
        c->streaming_body = 0;
        c->phase = P_WAIT;
    } else if (c->rpos == c->rlen) {
        /* Every byte was handed over: reuse the space after the head. */
        c->rpos = c->rlen = c->head_end;
    }
    if (len || done) {
        if (r->body_cb)
            r->body_cb(r, data, len, done);
    }
    if (c->closing)
        return 1;
    if (c->phase == P_BODY)
        return 1; /* more body to come */
    return c->phase == P_WAIT;
}

static void conn_process(struct cn_http_conn *c)
{
    if (c->in_process)
        return;
    c->in_process = 1;
    while (!c->closing) {
        if (c->phase == P_WAIT || c->phase == P_LINGER || c->phase == P_TUNNEL)
            break;
        if (c->out.len + c->wout.len > OUT_HIGH_WATER) {
            /* The peer reads slower than it pipelines: stop reading until we flushed. */
            if (c->reading) {
                uv_read_stop((uv_stream_t *)&c->tcp);
                c->reading = 0;
            }
            break;
        }
        if (c->phase == P_IDLE) {
            if (c->close_after)
                break; /* no new request on a closing connection */
            if (c->rpos == c->rlen) {
                c->rpos = c->rlen = 0;
                break;
            }
            if (c->rcap - c->rpos < c->lim.max_header_bytes + 64)
                compact(c);
            c->phase = P_HEAD;
            cn_head_scan_init(&c->scan);
            c->req.start_ns = uv_hrtime();
            /* The header deadline is armed only when the head does not arrive whole. */
            c->phase_start = uv_now(c->w->loop);
            c->phase_timer = 0;
        }
        if (c->phase == P_HEAD) {
            enum cn_head_result hr =
                cn_head_scan(&c->scan, c->rbuf + c->rpos, c->rlen - c->rpos, &c->lim);
            if (hr == CN_HEAD_MORE) {
                if (c->rlen == c->rcap)
                    compact(c);
                if (!c->phase_timer) {
                    c->phase_timer = 1;
                    set_deadline_at(c, c->phase_start + c->lim.header_timeout_ms);
                }
                break;
            }
            if (hr != CN_HEAD_DONE) {
                int kind = hr == CN_HEAD_URL_TOO_LONG ? CN_PE_URL_TOO_LONG
                           : hr == CN_HEAD_TOO_LARGE  ? CN_PE_HEADER_TOO_LARGE
                                                      : CN_PE_BAD_REQUEST;
                protocol_error(c, (int)hr, c->scan.reason, kind);
                break;
            }
            size_t head_len = c->scan.pos;
            c->head_start = c->rpos;
            c->head_end = c->rpos + head_len;
            c->last_cb = 0;
            c->msg_complete = 0;
            c->err_status = 0;
            llhttp_errno_t err = llhttp_execute(&c->parser, c->rbuf + c->rpos, head_len);
            if (err != HPE_PAUSED || !c->msg_complete) {
                /* on_headers_complete ends every message at its head, so anything but a
                 * pause at message completion is an error. */
                parse_error(c, err == HPE_PAUSED ? HPE_INTERNAL : err);
                break;
            }
            llhttp_resume(&c->parser);
            c->rpos = c->head_end;
            if (c->w->srv->stream_handler) {
                stream_dispatch(c);
                continue;
            }
            if (c->body_mode == BODY_NONE) {
                dispatch(c);
                continue;
            }
            c->phase = P_BODY;
            c->phase_start = uv_now(c->w->loop);
            c->phase_timer = 0;
        }
        if (c->phase == P_BODY && c->streaming_body) {
            if (c->body_paused || stream_body(c))
                break;
            continue;
        }
        if (c->phase == P_BODY) {
            const char *start = c->rbuf + c->rpos;
            size_t avail = c->rlen - c->rpos, used;
            int done;
            if (c->body_mode == BODY_LENGTH) {
                used = avail < c->body_left ? avail : (size_t)c->body_left;
                if (cn_buf_append(&c->req.body, start, used) != 0) {
                    protocol_error(c, 503, "out of memory", CN_PE_OVERLOAD);
                    break;
                }
                c->body_left -= used;
                done = c->body_left == 0;
            } else {
                enum cn_chunked_result cr =
                    cn_chunked_decode(&c->chunked, start, avail, &c->req.body, &c->lim, &used);
                if (cr >= CN_CHUNKED_BAD) {
                    int kind = cr == CN_CHUNKED_TOO_LARGE            ? CN_PE_BODY_TOO_LARGE
                               : cr == CN_CHUNKED_TRAILERS_TOO_LARGE ? CN_PE_HEADER_TOO_LARGE
                                                                     : CN_PE_BAD_REQUEST;
                    protocol_error(c, (int)cr,
                                   cr == CN_CHUNKED_TOO_LARGE
                                       ? body_limit_reason(c, "request body too large")
                                       : c->chunked.reason,
                                   kind);
                    break;
                }
                done = cr == CN_CHUNKED_DONE;
            }
            c->rpos += used;
            if (done) {
                dispatch(c);
                continue;
            }
            /* Every byte was taken into the body: reuse the space after the head. */
            c->rpos = c->rlen = c->head_end;
            if (!c->phase_timer) {
                c->phase_timer = 1;
                set_deadline_at(c, c->phase_start + c->lim.body_timeout_ms);
            }
            break;
        }
    }
    c->in_process = 0;
}

/* ---- reading --------------------------------------------------------------------------- */

static void *rbuf_get(struct cn_http_worker *w, size_t *out_cap)
{
    *out_cap = w->rbuf_size;
    if (w->rbuf_pool_len)
        return w->rbuf_pool[--w->rbuf_pool_len];
    return malloc(w->rbuf_size);
}

static void rbuf_put(struct cn_http_worker *w, struct cn_http_conn *c)
{
    if (!c->rbuf)
        return;
    if (c->rcap == w->rbuf_size && w->rbuf_pool_len < RBUF_POOL_MAX)
        w->rbuf_pool[w->rbuf_pool_len++] = c->rbuf;
    else
        free(c->rbuf);
    c->rbuf = NULL;
    c->rcap = c->rlen = c->rpos = 0;
}

/* Inlined into the plain read path, which was one function before TLS came. */
#define HOT static inline __attribute__((always_inline))

HOT void room(struct cn_http_conn *c, char **out_ptr, size_t *out_len)
{
    if (!c->rbuf) {
        c->rbuf = rbuf_get(c->w, &c->rcap);
        c->rlen = c->rpos = 0;
        if (!c->rbuf) {
            *out_ptr = NULL;
            *out_len = 0;
            return;
        }
    }
    if (c->phase == P_LINGER)
        c->rlen = c->rpos = 0;
    else if (c->rlen == c->rcap && (c->phase == P_IDLE || c->phase == P_HEAD))
        compact(c);
    *out_ptr = c->rbuf + c->rlen;
    *out_len = c->rcap - c->rlen;
}

void cn_http__room(struct cn_http_conn *c, char **out_ptr, size_t *out_len)
{
    room(c, out_ptr, out_len);
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    (void)suggested;
    struct cn_http_conn *c = h->data;
    if (CN_UNLIKELY(c->tls)) {
        cn_http__tls_alloc(c, buf);
        return;
    }
    c->read_into_body = 0;
    if (c->rbuf && c->phase == P_BODY && !c->streaming_body && c->body_mode == BODY_LENGTH &&
        c->rpos == c->rlen && c->body_left >= 4096 &&
        c->req.body.cap - c->req.body.len >= c->body_left) {
        /* The rest of a Content-Length body goes straight into the request's body buffer
         * (sized at the head): no copy, and never past the body into a next request. */
        c->read_into_body = 1;
        size_t want = c->body_left < (1u << 30) ? (size_t)c->body_left : (1u << 30);
        *buf = uv_buf_init(c->req.body.ptr + c->req.body.len, (unsigned)want);
        return;
    }
    char *p;
    size_t n;
    room(c, &p, &n);
    *buf = uv_buf_init(p, (unsigned)n);
}

HOT void input(struct cn_http_conn *c, ssize_t nread)
{
    uv_stream_t *s = (uv_stream_t *)&c->tcp;
    if (c->phase == P_TUNNEL) {
        if (nread < 0) {
            c->read_eof = 1;
            uv_read_stop(s);
            c->reading = 0;
        } else {
            c->rlen = c->rpos = 0;
            c->w->activity++;
        }
        if (nread != 0 && c->req.tunnel_cb && !c->req.done)
            c->req.tunnel_cb(&c->req, c->rbuf, nread);
        return;
    }
    if (nread == UV_ENOBUFS) {
        /* rbuf is full while a request is being answered: wait for it. */
        uv_read_stop(s);
        c->reading = 0;
        return;
    }
    if (nread < 0) {
        c->read_into_body = 0;
        c->read_eof = 1;
        uv_read_stop(s);
        c->reading = 0;
        if ((c->phase == P_WAIT || c->streaming_body) && !c->req.done && nread != UV_EOF) {
            conn_close(c);
            return;
        }
        if (c->phase == P_WAIT && !c->req.done) {
            /* Half-closed by the client: the reply can still go out; nothing more comes. */
            c->eof_in_wait = !c->close_after;
            c->close_after = 1;
            return;
        }
        if (c->phase == P_HEAD && c->rlen > c->rpos && nread == UV_EOF) {
            /* The peer gave up mid-request: nothing to answer. */
            conn_close(c);
            return;
        }
        if (c->phase == P_BODY && nread == UV_EOF) {
            conn_close(c);
            return;
        }
        if (!c->writing && c->out.len == 0)
            conn_close(c);
        else
            c->close_after = 1;
        return;
    }
    if (nread == 0)
        return;
    if (c->phase == P_LINGER) {
        c->rlen = c->rpos = 0;
        return;
    }
    if (c->read_into_body) {
        c->read_into_body = 0;
        c->req.body.len += (size_t)nread;
        c->body_left -= (uint64_t)nread;
        c->w->activity++;
        conn_process(c);
        conn_flush(c);
        return;
    }
    c->rlen += (size_t)nread;
    c->w->activity++;
    conn_process(c);
    conn_flush(c);
    if (c->phase == P_IDLE && c->rpos == c->rlen && !c->closing && c->rbuf)
        rbuf_put(c->w, c);
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    (void)buf;
    struct cn_http_conn *c = s->data;
    if (CN_UNLIKELY(c->tls)) {
        cn_http__tls_read(c, nread);
        return;
    }
    input(c, nread);
}

void cn_http__input(struct cn_http_conn *c, ssize_t nread)
{
    input(c, nread);
}

static void conn_read_start(struct cn_http_conn *c)
{
    if (c->reading || c->closing || c->body_paused)
        return;
    if (CN_UNLIKELY(c->tls)) {
        c->reading = 1;
        cn_http__tls_read_started(c);
        return;
    }
    if (uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read) == 0)
        c->reading = 1;
}

void cn_http__sock_read(struct cn_http_conn *c, int on)
{
    if (on)
        uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
    else
        uv_read_stop((uv_stream_t *)&c->tcp);
}

void cn_http__flush(struct cn_http_conn *c)
{
    conn_flush(c);
}

void cn_http__close(struct cn_http_conn *c)
{
    conn_close(c);
}

void cn_http__end(struct cn_http_conn *c)
{
    c->close_after = 1;
    if (c->writing || c->closing)
        return;
    if (c->out.len || (c->tls && cn_http__tls_out_pending(c)))
        conn_flush(c);
    else
        after_written(c);
}

void cn_http__set_deadline(struct cn_http_conn *c, uint64_t timeout_ms)
{
    set_deadline(c, timeout_ms);
}

/* ---- connection lifecycle -------------------------------------------------------------- */

static void conn_free(struct cn_http_conn *c)
{
    struct cn_http_worker *w = c->w;
    if ((c->phase == P_WAIT || c->phase == P_TUNNEL || c->streaming_body) && !c->req.done &&
        c->req.abort_cb)
        c->req.abort_cb(&c->req);
    rbuf_put(w, c);
    if (c->tls)
        cn_http__tls_free(c);
    cn_buf_release(&c->out);
    cn_buf_release(&c->wout);
    cn_buf_release(&c->req.body);
    free(c->hdrs);
    if (c->prev)
        c->prev->next = c->next;
    else
        w->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    w->num_conns--;
    atomic_fetch_sub_explicit(&w->stats.open, 1, memory_order_relaxed);
    atomic_fetch_sub_explicit(&w->srv->open_total, 1, memory_order_relaxed);
    free(c);
    if (w->draining && w->num_conns == 0 && w->on_drained)
        w->on_drained(w);
}

static void on_handle_closed(uv_handle_t *h)
{
    struct cn_http_conn *c = h->data;
    if (--c->handles == 0)
        conn_free(c);
}

static void conn_close(struct cn_http_conn *c)
{
    if (c->closing)
        return;
    c->closing = 1;
    uv_close((uv_handle_t *)&c->tcp, on_handle_closed);
    uv_close((uv_handle_t *)&c->timer, on_handle_closed);
    if (c->tls)
        uv_close(cn_http__tls_handle(c), on_handle_closed);
}

static void on_timer(uv_timer_t *t)
{
    struct cn_http_conn *c = t->data;
    c->timer_due = 0;
    uint64_t now = uv_now(c->w->loop);
    if (c->wdeadline && now >= c->wdeadline) {
        atomic_fetch_add_explicit(&c->w->stats.proto_errs[CN_PE_SEND_TIMEOUT], 1,
                                  memory_order_relaxed);
        cn_debug("http", "send timeout", "conn=%llu", (unsigned long long)c->id);
        conn_close(c);
        return;
    }
    if (c->deadline && now >= c->deadline) {
        c->deadline = 0;
        switch (c->phase) {
        case P_IDLE:
            if (c->tls && cn_http__tls_handshaking(c)) {
                cn_http__tls_timeout(c);
                return;
            }
            if (!c->writing && c->out.len == 0) {
                atomic_fetch_add_explicit(&c->w->stats.proto_errs[CN_PE_IDLE_CLOSE], 1,
                                          memory_order_relaxed);
                conn_close(c);
            } else {
                set_deadline(c, c->lim.idle_timeout_ms);
            }
            return;
        case P_HEAD:
            protocol_error(c, 408, "request header timeout (http.header_timeout)", CN_PE_TIMEOUT);
            conn_flush(c);
            return;
        case P_BODY:
            protocol_error(c, 408, "request body timeout (http.body_timeout)", CN_PE_TIMEOUT);
            conn_flush(c);
            return;
        case P_LINGER:
            conn_close(c);
            return;
        case P_WAIT:
        case P_TUNNEL:
            return;
        }
    }
    timer_arm(c);
}

static void on_connection(uv_stream_t *ls, int status)
{
    struct cn_http_worker *w = ls->data;
    if (status < 0) {
        cn_warn("http", "accept failed", "worker=%d error=\"%s\"", w->id, uv_strerror(status));
        return;
    }
    struct cn_http_conn *c = calloc(1, sizeof(*c));
    if (!c)
        return;
    c->w = w;
    c->lim = w->limits;
    uv_tcp_init(w->loop, &c->tcp);
    uv_timer_init(w->loop, &c->timer);
    c->tcp.data = c;
    c->timer.data = c;
    c->handles = 2;
    c->id = __atomic_fetch_add(&next_conn_id, 1, __ATOMIC_RELAXED);
    c->next = w->conns;
    if (w->conns)
        w->conns->prev = c;
    w->conns = c;
    w->num_conns++;
    atomic_fetch_add_explicit(&w->stats.open, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&w->stats.accepted, 1, memory_order_relaxed);
    int64_t open = atomic_fetch_add_explicit(&w->srv->open_total, 1, memory_order_relaxed) + 1;
    cn_buf_init(&c->out, OUT_MAX);
    cn_buf_init(&c->wout, OUT_MAX);
    cn_buf_init(&c->req.body, c->lim.max_body_bytes);
    llhttp_init(&c->parser, HTTP_REQUEST, &parser_settings);
    c->parser.data = c;
    req_reset(c);
    if (uv_accept(ls, (uv_stream_t *)&c->tcp) != 0) {
        conn_close(c);
        return;
    }
    uv_tcp_nodelay(&c->tcp, 1);
    uv_os_fd_t fd;
    c->fd = uv_fileno((uv_handle_t *)&c->tcp, &fd) == 0 ? fd : -1;
    if (CN_UNLIKELY(w->srv->tls_get)) {
        /* TLS listener: no plaintext 503 when over the limit (the client expects a
         * handshake); the connection is closed. */
        if ((uint64_t)open > c->lim.max_connections || cn_http__tls_accept(c) != 0) {
            atomic_fetch_add_explicit(&w->stats.proto_errs[CN_PE_OVERLOAD], 1,
                                      memory_order_relaxed);
            conn_close(c);
            return;
        }
        c->wout.max = OUT_MAX + OUT_MAX / 32; /* the reply's ciphertext: records add bytes */
        c->phase = P_IDLE;
        conn_read_start(c);
        return;
    }
    if ((uint64_t)open > c->lim.max_connections) {
#define OVERLOAD_BODY "too many open connections (http.max_connections)\n"
        static const char msg[] = "HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\n"
                                  "Content-Length: 49\r\nConnection: close\r\n\r\n" OVERLOAD_BODY;
        _Static_assert(sizeof(OVERLOAD_BODY) - 1 == 49, "Content-Length of the 503 body");
        uv_buf_t b = uv_buf_init((char *)msg, sizeof(msg) - 1);
        uv_try_write((uv_stream_t *)&c->tcp, &b, 1);
        atomic_fetch_add_explicit(&w->stats.proto_errs[CN_PE_OVERLOAD], 1, memory_order_relaxed);
        conn_close(c);
        return;
    }
    c->phase = P_IDLE;
    set_deadline(c, c->lim.idle_timeout_ms);
    conn_read_start(c);
}

/* ---- worker ---------------------------------------------------------------------------- */

static size_t rbuf_size_for(const struct cn_http_limits *l)
{
    size_t n = (size_t)l->max_header_bytes + 4096;
    return n < 16384 ? 16384 : n;
}

/* Adaptive polling: after an iteration with I/O, poll without blocking for up to spin_us
 * before sleeping in epoll_wait, so a busy worker does not pay a wake-up per batch. */
static void spin_noop(uv_idle_t *h)
{
    (void)h;
}

static void spin_check(uv_check_t *h)
{
    struct cn_http_worker *w = h->data;
    uint64_t now = uv_hrtime();
    if (w->activity != w->last_activity) {
        w->last_activity = w->activity;
        w->last_active_ns = now;
        if (!uv_is_active((uv_handle_t *)&w->spin_idle))
            uv_idle_start(&w->spin_idle, spin_noop);
    } else if (now - w->last_active_ns > w->spin_ns) {
        uv_idle_stop(&w->spin_idle);
    }
}

static void set_busy_poll(struct cn_http_worker *w, uint64_t us)
{
    w->spin_ns = us * 1000;
    if (!w->spin_handles)
        return;
    if (w->spin_ns && !uv_is_active((uv_handle_t *)&w->spin_check)) {
        uv_check_start(&w->spin_check, spin_check);
    } else if (!w->spin_ns) {
        uv_check_stop(&w->spin_check);
        uv_idle_stop(&w->spin_idle);
    }
}

int cn_http_worker_init(struct cn_http_worker *w, struct cn_http_server *srv, uv_loop_t *loop,
                        int id, const struct cn_http_limits *limits)
{
    memset(w, 0, sizeof(*w));
    w->srv = srv;
    w->loop = loop;
    w->id = id;
    w->limits = *limits;
    w->rbuf_size = rbuf_size_for(limits);
    w->rbuf_pool = calloc(RBUF_POOL_MAX, sizeof(void *));
    w->route_stats = calloc(cn_router_num_routes(srv->router) + 1, sizeof(*w->route_stats));
    if (!w->rbuf_pool || !w->route_stats)
        return CN_ENOMEM;
    /* Workers start one after the other: the first bind fills in a kernel-chosen port. */
    int fd = cn_ev_listen_socket(&srv->addr, 1024);
    if (fd < 0)
        return fd;
    int rc = uv_tcp_init(loop, &w->listener);
    if (!rc)
        rc = uv_tcp_open(&w->listener, fd);
    w->listener.data = w;
    if (!rc)
        rc = uv_listen((uv_stream_t *)&w->listener, 1024, on_connection);
    if (rc) {
        uv_close((uv_handle_t *)&w->listener, NULL);
        return rc;
    }
    w->listening = 1;
    uv_idle_init(loop, &w->spin_idle);
    uv_check_init(loop, &w->spin_check);
    w->spin_check.data = w;
    uv_unref((uv_handle_t *)&w->spin_check);
    uv_unref((uv_handle_t *)&w->spin_idle);
    w->spin_handles = 1;
    set_busy_poll(w, limits->busy_poll_us);
    return 0;
}

void cn_http_worker_set_limits(struct cn_http_worker *w, const struct cn_http_limits *limits,
                               uint64_t generation)
{
    w->limits = *limits;
    size_t size = rbuf_size_for(limits);
    if (size != w->rbuf_size) {
        while (w->rbuf_pool_len)
            free(w->rbuf_pool[--w->rbuf_pool_len]);
        w->rbuf_size = size;
    }
    set_busy_poll(w, limits->busy_poll_us);
    w->generation = generation;
    atomic_store_explicit(&w->stats.config_generation, generation, memory_order_relaxed);
}

void cn_http_worker_drain(struct cn_http_worker *w)
{
    w->draining = 1;
    if (w->sendq_state == 1) {
        /* What is queued goes now; sockets send directly from here on. */
        cn_sendq_close(&w->sendq);
    }
    w->sendq_state = 2;
    if (w->spin_handles) {
        w->spin_handles = 0;
        w->spin_ns = 0;
        uv_close((uv_handle_t *)&w->spin_idle, NULL);
        uv_close((uv_handle_t *)&w->spin_check, NULL);
    }
    if (w->listening) {
        uv_close((uv_handle_t *)&w->listener, NULL);
        w->listening = 0;
    }
    struct cn_http_conn *next;
    for (struct cn_http_conn *c = w->conns; c; c = next) {
        next = c->next;
        c->close_after = 1;
        if (c->phase == P_IDLE && !c->writing && c->out.len == 0)
            conn_close(c);
    }
    if (w->num_conns == 0 && w->on_drained)
        w->on_drained(w);
}

void cn_http_worker_close_all(struct cn_http_worker *w)
{
    for (struct cn_http_conn *c = w->conns; c; c = c->next)
        conn_close(c);
}

void cn_http_worker_release(struct cn_http_worker *w)
{
    if (w->sendq_state == 1)
        cn_sendq_close(&w->sendq);
    w->sendq_state = 2;
    while (w->rbuf_pool_len)
        free(w->rbuf_pool[--w->rbuf_pool_len]);
    cn_free(&w->rbuf_pool);
    cn_free(&w->route_stats);
    cn_tls_ctx_unref(w->tls);
    w->tls = NULL;
    cn_free(&w->tls_rbuf);
}

/* ---- request helpers ------------------------------------------------------------------- */

const struct cn_slice *cn_http_req_header(const struct cn_http_req *req, const char *name)
{
    struct cn_slice n = cn_slice_of(name);
    for (size_t i = 0; i < req->num_headers; i++)
        if (cn_slice_case_eq(req->headers[i].name, n))
            return &req->headers[i].value;
    return NULL;
}

/* Percent-decodes s ('+' as space) into dst. Returns the length or -1. */
static int unescape(struct cn_slice s, char *dst, size_t dst_len)
{
    size_t n = 0;
    for (size_t i = 0; i < s.len; i++) {
        char ch = s.ptr[i];
        if (ch == '+') {
            ch = ' ';
        } else if (ch == '%' && i + 2 < s.len && cn_hexval(s.ptr[i + 1]) >= 0 &&
                   cn_hexval(s.ptr[i + 2]) >= 0) {
            ch = (char)(cn_hexval(s.ptr[i + 1]) * 16 + cn_hexval(s.ptr[i + 2]));
            i += 2;
        }
        if (n + 1 >= dst_len)
            return -1;
        dst[n++] = ch;
    }
    dst[n] = '\0';
    return (int)n;
}

int cn_http_req_query(const struct cn_http_req *req, const char *name, char *dst, size_t dst_len)
{
    size_t nlen = strlen(name);
    const char *p = req->query.ptr, *end = req->query.ptr + req->query.len;
    while (p && p < end) {
        const char *amp = memchr(p, '&', (size_t)(end - p));
        const char *e = amp ? amp : end;
        const char *eq = memchr(p, '=', (size_t)(e - p));
        const char *ke = eq ? eq : e;
        if ((size_t)(ke - p) == nlen && memcmp(p, name, nlen) == 0) {
            struct cn_slice v =
                eq ? (struct cn_slice){eq + 1, (size_t)(e - eq - 1)} : (struct cn_slice){e, 0};
            return unescape(v, dst, dst_len);
        }
        p = amp ? amp + 1 : end;
    }
    return -1;
}
