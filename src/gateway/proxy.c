/* The reverse proxy on a worker loop: route, balance, forward the request head (rewritten
 * into one buffer) and stream the body to a pooled keep-alive upstream connection; parse the
 * response head strictly, stream its body back; tunnels after 101. Backpressure both ways:
 * a side whose output is past GW_HIGH_WATER stops the other side's reading. */
#include "gateway/internal.h"

#include "base/log.h"
#include "http/chunked.h"
#include "http/head.h"

#include <llhttp.h>
#include <stdarg.h>
#include <sys/socket.h>

#define GW_HIGH_WATER   (256u << 10) /* queued bytes that stop the other side's reading */
#define GW_LOW_WATER    (64u << 10)  /* ... and that let it read again */
#define UP_OUT_MAX      (64u << 20)
#define MAX_CONN_TOKENS 16

/* An upstream connection. States: connecting (req set, !connected) -> active (req set) ->
 * idle (in its pool, req NULL, idle set) -> ... -> closing (uv_close called; freed when both
 * handles closed). Invariants: at most one uv_write in flight (wout); response head slices
 * point into rbuf[rpos..] until the client reply head is written. */
struct gw_upconn {
    uv_tcp_t tcp;
    uv_connect_t connect_req;
    uv_timer_t timer;
    uv_write_t wreq;
    uv_shutdown_t sreq; /* a tunnel's half-close */
    struct gw_worker *w;
    struct gw_pool *pool;
    struct gw_upconn *next_idle;
    struct gw_upconn *anext, *aprev;
    struct gw_req *req;
    int handles;
    int fd;
    struct cn_sendq_ent sqe; /* out queued on the client worker's sendq */
    unsigned connected : 1, reading : 1, writing : 1, closing : 1, idle : 1, pending : 1, shut : 1;
    struct gw_cl_state *cst; /* circuit breaker counts (connections, pending) */
    uint64_t served;         /* responses completed on this connection */
    uint64_t idle_until;     /* loop ms: idle connection expires */
    uint64_t timer_due;
    struct gw_resp resp;
    struct cn_http_header *hdrs; /* the response head's fields (resp.hdrs) */
    char *rbuf;
    size_t rcap, rlen, rpos;
    struct cn_buf out, wout;
};

/* One proxied request. Lives from the head's dispatch until the reply is finished, the
 * client goes away, or the tunnel ends. creq is NULL once the client is gone. */
struct gw_req {
    struct gw_worker *w;
    struct gw_view *view;
    const struct gw_route *route;
    const struct gw_match *match;
    const struct gw_cluster *cl;
    uint32_t ep;
    struct cn_http_req *creq;
    struct cn_slice host; /* the request's Host value (into creq), "" when none */
    struct gw_upconn *up;
    uint64_t start_ns;
    struct gw_timeouts t;
    uint64_t connect_at, fb_at, total_at, idle_at; /* loop ms deadlines, 0: none */
    int status;
    unsigned upgrade : 1, body_done : 1, resp_started : 1, head_seen : 1, tunnel : 1,
        client_paused : 1, up_paused : 1, retried : 1, req_chunked : 1, head_req : 1, no_reuse : 1,
        has_cl : 1, client_eof : 1, cb_counted : 1, retrying : 1, up_eof : 1;
    uint32_t attempts;     /* upstream attempts so far (retries) */
    size_t head_out;       /* bytes of the upstream head in up->out (a retry resends the rest) */
    const char *cb_reason; /* the circuit breaker limit that refused a connection */
    enum gw_resp_mode resp_mode;
    uint64_t resp_left;
    struct cn_chunked chunked;
    struct gw_ext_state ext; /* auth, CORS, trace context (ext.c) */
    struct gw_req *next_free;
};

static void up_close(struct gw_upconn *up);
static void up_flush(struct gw_upconn *up);
static void up_read_start(struct gw_upconn *up);
static void up_arm(struct gw_upconn *up);
static void up_fail(struct gw_upconn *up, enum gw_up_err kind, const char *what);
static int start_upstream(struct gw_req *r, int fresh);
static int retry_allowed(const struct gw_req *r, const struct gw_upconn *old, unsigned cond);
static int retry_budget(struct gw_req *r);
static int retry_start(struct gw_req *r, struct gw_upconn *old);
static int retry_on_status(struct gw_req *r, struct gw_upconn *up, int status);
static void tunnel_finish(struct gw_req *r);
static void tunnel_step(struct gw_req *r);

static uint64_t now_ms(struct gw_worker *w)
{
    return uv_now(w->loop);
}

/* ---- statistics ---------------------------------------------------------------------------- */

void gw_stats_record(struct gw_stats *s, int worker, int status, uint64_t us)
{
    if (!s)
        return;
    struct gw_stats_w *sw = &s->w[worker];
    int cls = status / 100;
    if (cls < 0 || cls > 5)
        cls = 5;
    atomic_fetch_add_explicit(&sw->by_class[cls], 1, memory_order_relaxed);
    double sec = (double)us / 1e6;
    size_t b = 0;
    while (b < GW_LAT_BUCKETS && sec > cn_http_lat_bounds[b])
        b++;
    atomic_fetch_add_explicit(&sw->lat[b], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&sw->lat_sum_us, us, memory_order_relaxed);
}

static void count_err(struct gw_req *r, enum gw_up_err kind)
{
    if (r->cl->stats)
        atomic_fetch_add_explicit(&r->cl->stats->w[r->w->id].upstream_errors[kind], 1,
                                  memory_order_relaxed);
}

static void record(struct gw_req *r, int status)
{
    uint64_t us = (uv_hrtime() - r->start_ns) / 1000;
    gw_stats_record(r->route->stats, r->w->id, status, us);
    if (r->cl)
        gw_stats_record(r->cl->stats, r->w->id, status, us);
    if (r->ext.traced) {
        const struct gw_endpoint *ep = r->cl ? &r->cl->eps[r->ep] : NULL;
        struct gw_req_done d = {&r->ext,
                                r->creq,
                                r->host,
                                r->route->name,
                                r->cl ? r->cl->name : CN_SLICE_LIT(""),
                                ep ? ep->name : CN_SLICE_LIT(""),
                                status,
                                us * 1000};
        gw_tel_record(r->w, &d);
    }
}

/* ---- request objects ------------------------------------------------------------------------ */

static struct gw_req *req_new(struct gw_worker *w)
{
    struct gw_req *r = w->free_reqs;
    if (r)
        w->free_reqs = r->next_free;
    else if (!(r = malloc(sizeof(*r))))
        return NULL;
    memset(r, 0, sizeof(*r));
    r->w = w;
    return r;
}

static void req_free(struct gw_req *r)
{
    struct gw_worker *w = r->w;
    if (r->cb_counted)
        atomic_fetch_sub_explicit(&r->cl->gov.st->requests, 1, memory_order_relaxed);
    if (r->cl && r->view) {
        struct gw_lb_state *lb = &r->view->lb[r->cl->index];
        lb->active[r->ep]--;
        lb->budget.inflight--;
        if (r->retrying)
            lb->budget.retrying--;
    }
    if (r->view)
        gw_view_unref(r->view);
    r->view = NULL;
    gw_ext_release(&r->ext);
    r->next_free = w->free_reqs;
    w->free_reqs = r;
}

/* Detaches the request from its client request (no callback will come). */
static void client_detach(struct gw_req *r)
{
    if (!r->creq)
        return;
    r->creq->data = NULL;
    r->creq->abort_cb = NULL;
    r->creq->body_cb = NULL;
    r->creq->drain_cb = NULL;
    r->creq->tunnel_cb = NULL;
}

/* ---- upstream connections ---------------------------------------------------------------- */

/* The connection is no longer waiting to connect (circuit breaker's max_pending). */
static void up_unpend(struct gw_upconn *up)
{
    if (up->pending) {
        up->pending = 0;
        atomic_fetch_sub_explicit(&up->cst->pending, 1, memory_order_relaxed);
    }
}

static void on_up_closed(uv_handle_t *h)
{
    struct gw_upconn *up = h->data;
    if (--up->handles)
        return;
    up_unpend(up);
    if (up->cst) {
        atomic_fetch_sub_explicit(&up->cst->connections, 1, memory_order_relaxed);
        gw_cl_state_unref(up->cst);
    }
    struct gw_worker *w = up->w;
    if (up->aprev)
        up->aprev->anext = up->anext;
    else
        w->conns = up->anext;
    if (up->anext)
        up->anext->aprev = up->aprev;
    free(up->rbuf);
    free(up->hdrs);
    cn_buf_release(&up->out);
    cn_buf_release(&up->wout);
    free(up);
}

static void pool_remove(struct gw_upconn *up)
{
    if (!up->idle)
        return;
    struct gw_upconn **pp = &up->pool->idle;
    while (*pp && *pp != up)
        pp = &(*pp)->next_idle;
    if (*pp) {
        *pp = up->next_idle;
        up->pool->num_idle--;
    }
    up->idle = 0;
}

static void up_close(struct gw_upconn *up)
{
    if (up->closing)
        return;
    pool_remove(up);
    cn_sendq_cancel(&up->sqe);
    up->closing = 1;
    up->req = NULL;
    uv_close((uv_handle_t *)&up->tcp, on_up_closed);
    uv_close((uv_handle_t *)&up->timer, on_up_closed);
}

static void on_up_timer(uv_timer_t *t);

static void up_arm(struct gw_upconn *up)
{
    uint64_t d = 0;
    struct gw_req *r = up->req;
#define EARLIER(x)                                                                                 \
    do {                                                                                           \
        if ((x) && (!d || (x) < d))                                                                \
            d = (x);                                                                               \
    } while (0)
    if (r) {
        if (!up->connected)
            EARLIER(r->connect_at);
        if (!r->head_seen)
            EARLIER(r->fb_at);
        EARLIER(r->total_at);
        EARLIER(r->idle_at);
    } else if (up->idle) {
        EARLIER(up->idle_until);
    }
#undef EARLIER
    if (!d)
        return;
    if (up->timer_due && up->timer_due <= d)
        return; /* lazy: an early wake-up re-arms */
    uint64_t now = now_ms(up->w);
    uv_timer_start(&up->timer, on_up_timer, d > now ? d - now : 0, 0);
    up->timer_due = d;
}

static void on_up_timer(uv_timer_t *t)
{
    struct gw_upconn *up = t->data;
    up->timer_due = 0;
    uint64_t now = now_ms(up->w);
    struct gw_req *r = up->req;
    if (!r) {
        if (up->idle && now >= up->idle_until)
            up_close(up);
        else
            up_arm(up);
        return;
    }
    if (!up->connected && r->connect_at && now >= r->connect_at) {
        up_fail(up, GW_ERR_TIMEOUT, "upstream connect timeout");
        return;
    }
    if (!r->head_seen && r->fb_at && now >= r->fb_at) {
        up_fail(up, GW_ERR_TIMEOUT, "upstream first byte timeout");
        return;
    }
    if (r->total_at && now >= r->total_at) {
        up_fail(up, GW_ERR_TIMEOUT, "upstream total timeout");
        return;
    }
    if (r->idle_at && now >= r->idle_at) {
        up_fail(up, GW_ERR_TIMEOUT, "upstream idle timeout");
        return;
    }
    up_arm(up);
}

static void touch(struct gw_req *r)
{
    if (r->t.idle_ms)
        r->idle_at = now_ms(r->w) + r->t.idle_ms;
}

static size_t up_pending(const struct gw_upconn *up)
{
    return up->out.len + up->wout.len;
}

static void client_resume_if_drained(struct gw_req *r)
{
    if (r->client_paused && r->creq && up_pending(r->up) <= GW_LOW_WATER) {
        r->client_paused = 0;
        cn_http_req_body_resume(r->creq);
    }
}

static void on_up_write(uv_write_t *wr, int status)
{
    struct gw_upconn *up = wr->data;
    up->writing = 0;
    up->wout.len = 0;
    if (up->closing)
        return;
    if (status < 0) {
        up_fail(up, GW_ERR_RESET, "upstream write failed");
        return;
    }
    if (up->out.len)
        up_flush(up);
    struct gw_req *r = up->req;
    if (!r || up->closing)
        return;
    if (r->tunnel && r->client_eof) {
        tunnel_step(r);
        return;
    }
    client_resume_if_drained(r);
}

/* What a send of out did (bytes, or a negative errno): all gone, the rest handed to
 * uv_write, or the connection failed. Bytes appended after a queued send was submitted
 * stay in out and go next. */
static void up_sent(struct gw_upconn *up, ssize_t sent, size_t sub_len)
{
    if (sent > 0 && (size_t)sent == sub_len && up->out.len > sub_len) {
        /* More was appended after the queued send was submitted: it goes next. */
        cn_buf_consume(&up->out, sub_len);
        up_flush(up);
        return;
    }
    if (sent < 0 && sent != -EAGAIN && sent != -EWOULDBLOCK) {
        up_fail(up, GW_ERR_RESET, "upstream write failed");
        return;
    }
    size_t n = sent > 0 ? (size_t)sent : 0;
    if (n == up->out.len) {
        up->out.len = 0;
        if (up->req)
            client_resume_if_drained(up->req);
        return;
    }
    struct cn_buf t = up->wout;
    up->wout = up->out;
    up->out = t;
    up->out.len = 0;
    uv_buf_t b = uv_buf_init(up->wout.ptr + n, (unsigned)(up->wout.len - n));
    up->wreq.data = up;
    if (uv_write(&up->wreq, (uv_stream_t *)&up->tcp, &b, 1, on_up_write) != 0) {
        up_fail(up, GW_ERR_RESET, "upstream write failed");
        return;
    }
    up->writing = 1;
}

static void on_up_queued_sent(struct cn_sendq_ent *e, ssize_t res)
{
    struct gw_upconn *up = (struct gw_upconn *)((char *)e - offsetof(struct gw_upconn, sqe));
    if (up->writing || up->closing)
        return;
    up_sent(up, res, e->sub_len);
}

/* A request's head and body are queued on the client worker's send queue and go out with
 * the other upstream sends of the loop iteration, in one io_uring_enter after the poll phase
 * (ev/sendq.h): the upstream, when it shares the core, is woken once for all instead of
 * preempting the proxy at every send. Tunnels, and requests whose client is gone, send at
 * once. */
static void up_flush(struct gw_upconn *up)
{
    if (up->writing || up->closing || !up->connected || up->out.len == 0 || up->sqe.state)
        return;
    struct gw_req *r = up->req;
    struct cn_sendq *q = r && !r->tunnel && r->creq && r->view->snap->limits.batch_upstream_sends
                             ? cn_http_req_sendq(r->creq)
                             : NULL;
    if (q) {
        up->sqe.fd = up->fd;
        up->sqe.buf = &up->out;
        up->sqe.done = on_up_queued_sent;
        cn_sendq_add(q, &up->sqe);
        return;
    }
    ssize_t sent = send(up->fd, up->out.ptr, up->out.len, MSG_DONTWAIT | MSG_NOSIGNAL);
    up_sent(up, sent >= 0 ? sent : -errno, up->out.len);
}

/* ---- the response ------------------------------------------------------------------------ */

/* Splits a Connection value into its tokens (lower case compare later). Returns the count. */
static size_t conn_tokens(struct cn_slice v, struct cn_slice *out, size_t max, size_t n)
{
    const char *p = v.ptr, *end = v.ptr + v.len;
    while (p < end && n < max) {
        const char *c = memchr(p, ',', (size_t)(end - p));
        const char *e = c ? c : end;
        struct cn_slice t = cn_slice_trim_ows((struct cn_slice){p, (size_t)(e - p)});
        if (t.len)
            out[n++] = t;
        p = c ? c + 1 : end;
    }
    return n;
}

static int named_by(struct cn_slice name, const struct cn_slice *toks, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (cn_slice_case_eq(name, toks[i]))
            return 1;
    return 0;
}

static int has_token(struct cn_slice v, const char *tok)
{
    struct cn_slice toks[MAX_CONN_TOKENS];
    size_t n = conn_tokens(v, toks, MAX_CONN_TOKENS, 0);
    return named_by(cn_slice_of(tok), toks, n);
}

static int ensure_hdr_cap(struct gw_worker *w, size_t n)
{
    if (n <= w->hdr_cap)
        return 0;
    struct cn_http_header *h = realloc(w->hdrs, n * sizeof(*h));
    if (!h)
        return CN_ENOMEM;
    w->hdrs = h;
    w->hdr_cap = n;
    return 0;
}

/* The client reply head from the upstream's: hop-by-hop fields, Date and Server (ours are
 * written) and framing fields dropped, response filters applied. */
static int reply_head(struct gw_req *r, int status, int64_t length)
{
    struct gw_upconn *up = r->up;
    struct gw_worker *w = r->w;
    const struct gw_route *rt = r->route;
    size_t extra = 3 + GW_EXT_MAX_REPLY_HEADERS;
    for (size_t i = 0; i < rt->num_filters; i++)
        if (rt->filters[i].kind == GW_F_RESPONSE_HEADERS)
            extra += rt->filters[i].u.headers.num_set + rt->filters[i].u.headers.num_add;
    if (ensure_hdr_cap(w, up->resp.num_hdrs + extra) != 0)
        return CN_ENOMEM;
    struct cn_slice toks[MAX_CONN_TOKENS];
    size_t nt = 0;
    for (size_t i = 0; i < up->resp.num_hdrs; i++)
        if (gw_lit_eq(up->hdrs[i].name, CN_SLICE_LIT("connection")))
            nt = conn_tokens(up->hdrs[i].value, toks, MAX_CONN_TOKENS, nt);
    size_t n = 0;
    for (size_t i = 0; i < up->resp.num_hdrs; i++) {
        struct cn_http_header h = up->hdrs[i];
        h.value = cn_slice_trim_ows(h.value);
        struct cn_slice nm = h.name;
        int keep_upgrade = status == 101 && gw_lit_eq(nm, CN_SLICE_LIT("upgrade"));
        if (gw_is_hop_by_hop(nm)) {
            if (!keep_upgrade)
                continue;
        } else if ((nm.len == 14 && gw_lit_eq(nm, CN_SLICE_LIT("content-length"))) ||
                   (nm.len == 4 && gw_lit_eq(nm, CN_SLICE_LIT("date"))) ||
                   (nm.len == 6 && gw_lit_eq(nm, CN_SLICE_LIT("server")))) {
            continue;
        }
        if (nt && !keep_upgrade && named_by(nm, toks, nt))
            continue;
        int drop = 0;
        for (size_t f = 0; f < rt->num_filters && !drop; f++)
            if (rt->filters[f].kind == GW_F_RESPONSE_HEADERS)
                drop = gw_header_mod_drops(&rt->filters[f].u.headers, nm);
        if (!drop)
            w->hdrs[n++] = h;
    }
    for (size_t f = 0; f < rt->num_filters; f++) {
        if (rt->filters[f].kind != GW_F_RESPONSE_HEADERS)
            continue;
        const struct gw_header_mod *hm = &rt->filters[f].u.headers;
        for (size_t i = 0; i < hm->num_set; i++)
            w->hdrs[n++] = (struct cn_http_header){hm->set[i].name, hm->set[i].value};
        for (size_t i = 0; i < hm->num_add; i++)
            w->hdrs[n++] = (struct cn_http_header){hm->add[i].name, hm->add[i].value};
    }
    if (status == 101)
        w->hdrs[n++] = (struct cn_http_header){CN_SLICE_LIT("Connection"), CN_SLICE_LIT("upgrade")};
    n += gw_ext_reply_headers(&r->ext, w->hdrs + n);
    char att[16];
    if (r->cl->gov.retry.attempts_header)
        w->hdrs[n++] = (struct cn_http_header){CN_SLICE_LIT("X-Cairn-Attempts"),
                                               {att, cn_u64_to_dec(att, r->attempts)}};
    cn_http_reply_head(r->creq, status, w->hdrs, n, length);
    return 0;
}

/* The response is complete: the connection goes back to its pool when it can carry another
 * request, the client reply ends. */
static void finish(struct gw_req *r, int reusable)
{
    struct gw_upconn *up = r->up;
    struct gw_worker *w = r->w;
    struct cn_http_req *creq = r->creq;
    r->up = NULL;
    if (up) {
        up->req = NULL;
        up->served++;
        if (reusable && !r->no_reuse && r->body_done && up->rpos == up->rlen && !w->stopping &&
            !up->closing && up->pool->num_idle < r->cl->max_idle) {
            up->rpos = up->rlen = 0;
            up->idle = 1;
            up->next_idle = up->pool->idle;
            up->pool->idle = up;
            up->pool->num_idle++;
            up->idle_until = now_ms(w) + r->cl->pool_idle_ms;
            up_arm(up);
            if (!up->reading)
                up_read_start(up); /* notice the peer closing it */
        } else {
            up_close(up);
        }
    }
    record(r, r->status);
    if (creq) {
        client_detach(r);
        cn_http_reply_end(creq);
    }
    req_free(r);
}

static void on_client_drain(struct cn_http_req *creq)
{
    struct gw_req *r = creq->data;
    if (!r || !r->up || !r->up_paused)
        return;
    if (cn_http_req_out_pending(creq) <= GW_LOW_WATER) {
        r->up_paused = 0;
        up_read_start(r->up);
    }
}

/* After body bytes went to the client: write them, stop reading the upstream if the client
 * does not keep up. */
static void client_push(struct gw_req *r)
{
    struct cn_http_req *creq = r->creq;
    cn_http_req_flush(creq);
    if (cn_http_req_out_pending(creq) > GW_HIGH_WATER && r->up) {
        r->up_paused = 1;
        creq->drain_cb = on_client_drain;
        if (r->up->reading) {
            uv_read_stop((uv_stream_t *)&r->up->tcp);
            r->up->reading = 0;
        }
    }
}

static void tunnel_finish(struct gw_req *r)
{
    struct gw_upconn *up = r->up;
    r->up = NULL;
    if (up)
        up_close(up);
    record(r, 101);
    if (r->creq) {
        struct cn_http_req *creq = r->creq;
        client_detach(r);
        cn_http_tunnel_end(creq);
    }
    req_free(r);
}

static void on_up_shutdown(uv_shutdown_t *sr, int status)
{
    struct gw_upconn *up = sr->data;
    if (status < 0 && !up->closing)
        up_fail(up, GW_ERR_RESET, "upstream shutdown failed");
}

/* Half-close. Each direction ends with its reader's EOF: the client's shuts the upstream's
 * write side once what the client sent is written (here), the upstream's shuts the client's
 * once what the upstream sent is written (the server core, cn_http_tunnel_shutdown). The
 * tunnel ends when both have; a reset or a timeout ends it at once. */
static void tunnel_step(struct gw_req *r)
{
    struct gw_upconn *up = r->up;
    if (!up || !r->client_eof || up_pending(up) != 0)
        return;
    if (r->up_eof) {
        tunnel_finish(r); /* what is queued for the client is written before it closes */
        return;
    }
    if (!up->shut) {
        up->shut = 1;
        up->sreq.data = up;
        if (uv_shutdown(&up->sreq, (uv_stream_t *)&up->tcp, on_up_shutdown) != 0)
            up_fail(up, GW_ERR_RESET, "upstream shutdown failed");
    }
}

static void on_client_tunnel(struct cn_http_req *creq, const char *data, ssize_t len)
{
    struct gw_req *r = creq->data;
    if (!r)
        return;
    struct gw_upconn *up = r->up;
    if (len < 0) {
        if (len != UV_EOF) {
            tunnel_finish(r); /* a reset or read error: both sides close */
            return;
        }
        r->client_eof = 1;
        tunnel_step(r);
        return;
    }
    if (!up)
        return;
    touch(r);
    if (cn_buf_append(&up->out, data, (size_t)len) != 0) {
        tunnel_finish(r);
        return;
    }
    up_flush(up);
    if (!up->closing && up_pending(up) > GW_HIGH_WATER) { /* (closing: r is gone) */
        r->client_paused = 1;
        cn_http_req_body_pause(creq);
    }
}

static void start_tunnel(struct gw_req *r, size_t head_len)
{
    struct gw_upconn *up = r->up;
    if (r->creq->content_length != 0 || !r->body_done) {
        up_fail(up, GW_ERR_BAD_RESPONSE, "upstream switched protocols during a request body");
        return;
    }
    if (reply_head(r, 101, CN_HTTP_LEN_CLOSE) != 0) {
        up_fail(up, GW_ERR_BAD_RESPONSE, "out of memory");
        return;
    }
    r->head_seen = r->resp_started = r->tunnel = 1;
    r->status = 101;
    r->fb_at = 0;
    up->rpos += head_len;
    struct cn_slice early;
    /* 1: the client half-closed before the 101; its early bytes go first, then its end */
    r->client_eof = cn_http_tunnel_start(r->creq, on_client_tunnel, &early);
    r->creq->drain_cb = on_client_drain;
    int rc = early.len ? cn_buf_append(&up->out, early.ptr, early.len) : 0;
    if (up->rpos < up->rlen)
        cn_http_reply_data(r->creq, up->rbuf + up->rpos, up->rlen - up->rpos);
    up->rpos = up->rlen = 0;
    client_push(r);
    if (rc) {
        up_fail(up, GW_ERR_RESET, "tunnel overflow");
        return;
    }
    up_flush(up);
    if (!up->closing) /* (else r is gone) */
        tunnel_step(r);
}

/* Parses what the upstream sent. */
static void up_process(struct gw_upconn *up)
{
    struct gw_req *r = up->req;
    struct gw_worker *w = up->w;
    if (r->tunnel) {
        if (up->rlen > up->rpos)
            cn_http_reply_data(r->creq, up->rbuf + up->rpos, up->rlen - up->rpos);
        up->rpos = up->rlen = 0;
        client_push(r);
        return;
    }
    while (!r->head_seen) {
        if (up->rpos == up->rlen)
            return;
        const char *reason = NULL;
        int rc = gw_resp_head(&up->resp, up->rbuf + up->rpos, up->rlen - up->rpos, &reason);
        if (rc == CN_EAGAIN)
            return;
        if (rc) {
            up_fail(up, GW_ERR_BAD_RESPONSE, reason);
            return;
        }
        size_t head_len = up->resp.head_len;
        int status = up->resp.status;
        if (status < 200) {
            if (status == 101) {
                if (!r->upgrade) {
                    up_fail(up, GW_ERR_BAD_RESPONSE,
                            "upstream switched protocols without an Upgrade request");
                    return;
                }
                start_tunnel(r, head_len);
                return;
            }
            /* Interim responses (100, 102, 103) are not passed on. */
            up->rpos += head_len;
            continue;
        }
        if (r->cl->gov.outlier.enabled)
            gw_outlier_result(r->cl, r->ep, status >= 500, now_ms(w), w->id);
        if (status >= 502 && status <= 504 && retry_on_status(r, up, status))
            return;
        int64_t len;
        const char *bad =
            gw_resp_framing(&up->resp, r->head_req, &r->resp_mode, &r->resp_left, &len);
        if (bad) {
            up_fail(up, GW_ERR_BAD_RESPONSE, bad);
            return;
        }
        if (r->resp_mode == GW_RM_CHUNKED)
            cn_chunked_init(&r->chunked);
        if (!up->resp.keep_alive || r->resp_mode == GW_RM_CLOSE)
            r->no_reuse = 1;
        r->status = status;
        if (reply_head(r, status, len) != 0) {
            up_fail(up, GW_ERR_BAD_RESPONSE, "out of memory");
            return;
        }
        r->head_seen = r->resp_started = 1;
        up->rpos += head_len;
    }
    int done = 0;
    size_t avail = up->rlen - up->rpos;
    const char *p = up->rbuf + up->rpos;
    switch (r->resp_mode) {
    case GW_RM_NONE:
        done = 1;
        break;
    case GW_RM_LENGTH: {
        size_t n = avail < r->resp_left ? avail : (size_t)r->resp_left;
        cn_http_reply_data(r->creq, p, n);
        r->resp_left -= n;
        up->rpos += n;
        done = r->resp_left == 0;
        break;
    }
    case GW_RM_CHUNKED: {
        size_t used;
        cn_buf_reset(&w->scratch);
        enum cn_chunked_result cr =
            cn_chunked_decode(&r->chunked, p, avail, &w->scratch, &up->resp.lim, &used);
        if (cr >= CN_CHUNKED_BAD) {
            cn_debug("gateway", "bad upstream chunked body", "reason=\"%s\"", r->chunked.reason);
            up_fail(up, GW_ERR_BAD_RESPONSE, "upstream sent a malformed chunked body");
            return;
        }
        cn_http_reply_data(r->creq, w->scratch.ptr, w->scratch.len);
        up->rpos += used;
        done = cr == CN_CHUNKED_DONE;
        break;
    }
    case GW_RM_CLOSE:
        cn_http_reply_data(r->creq, p, avail);
        up->rpos += avail;
        break;
    }
    if (done) {
        if (up->rpos != up->rlen)
            r->no_reuse = 1; /* bytes past the response: never reuse */
        finish(r, 1);
        return;
    }
    up->rpos = up->rlen = 0;
    client_push(r);
}

static void on_up_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    (void)suggested;
    struct gw_upconn *up = h->data;
    if (!up->rbuf) {
        up->rbuf = malloc(up->rcap);
        if (!up->rbuf) {
            *buf = uv_buf_init(NULL, 0);
            return;
        }
    }
    if (up->rlen == up->rcap && up->rpos) {
        memmove(up->rbuf, up->rbuf + up->rpos, up->rlen - up->rpos);
        up->rlen -= up->rpos;
        up->rpos = 0;
    }
    *buf = uv_buf_init(up->rbuf + up->rlen, (unsigned)(up->rcap - up->rlen));
}

static void on_up_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    (void)buf;
    struct gw_upconn *up = s->data;
    struct gw_req *r = up->req;
    if (nread == 0)
        return;
    if (!r) {
        /* An idle connection: the peer closed it or sent bytes nobody asked for. */
        up_close(up);
        return;
    }
    if (nread < 0) {
        uv_read_stop(s);
        up->reading = 0;
        if (r->tunnel) {
            if (nread != UV_EOF) {
                up_fail(up, GW_ERR_RESET, "upstream reset the tunnel");
                return;
            }
            r->up_eof = 1;
            cn_http_tunnel_shutdown(r->creq);
            if (r->client_eof)
                tunnel_step(r);
            return;
        }
        if (nread == UV_EOF && r->head_seen && r->resp_mode == GW_RM_CLOSE) {
            r->no_reuse = 1;
            finish(r, 0);
            return;
        }
        up_fail(up, nread == UV_EOF || nread == UV_ECONNRESET ? GW_ERR_RESET : GW_ERR_RESET,
                "upstream closed the connection before the response was complete");
        return;
    }
    up->rlen += (size_t)nread;
    if (r->creq)
        r->creq->worker->activity++; /* keeps the worker's busy-poll going (server.h) */
    touch(r);
    up_process(up);
}

static void up_read_start(struct gw_upconn *up)
{
    if (up->reading || up->closing || !up->connected)
        return;
    if (uv_read_start((uv_stream_t *)&up->tcp, on_up_alloc, on_up_read) == 0)
        up->reading = 1;
}

/* An upstream failure: a fresh retry for a reused connection that closed before answering
 * (a keep-alive race), else 502/504 before the response started, else a cut reply. */
static void up_fail(struct gw_upconn *up, enum gw_up_err kind, const char *what)
{
    struct gw_req *r = up->req;
    if (!r) {
        up_close(up);
        return;
    }
    r->up = NULL;
    up_close(up);
    count_err(r, kind);
    if (!r->creq) {
        req_free(r);
        return;
    }
    int race = kind == GW_ERR_RESET && up->served > 0 && !r->head_seen && up->rlen == 0;
    if (!race && !r->head_seen) {
        gw_outlier_result(r->cl, r->ep, 1, now_ms(r->w), r->w->id);
        unsigned cond = !up->connected           ? GW_RETRY_CONNECT
                        : kind == GW_ERR_TIMEOUT ? GW_RETRY_504
                        : kind == GW_ERR_RESET   ? GW_RETRY_RESET
                                                 : 0;
        if (cond && retry_allowed(r, up, cond) && retry_budget(r) && retry_start(r, up) == 0)
            return;
    }
    if (kind == GW_ERR_RESET && up->served > 0 && !r->head_seen && !r->retried &&
        r->creq->content_length == 0 && up->rlen == 0) {
        r->retried = 1;
        if (start_upstream(r, 1) == 0)
            return;
    }
    struct cn_http_req *creq = r->creq;
    client_detach(r);
    if (r->tunnel) {
        record(r, 101);
        cn_http_tunnel_end(creq);
        req_free(r);
        return;
    }
    if (r->resp_started) {
        cn_warn("gateway", "upstream failed mid-response, client connection reset",
                "route=%.*s cluster=%.*s endpoint=%.*s error=\"%s\"", (int)r->route->name.len,
                r->route->name.ptr, (int)r->cl->name.len, r->cl->name.ptr,
                (int)r->cl->eps[r->ep].name.len, r->cl->eps[r->ep].name.ptr, what);
        record(r, 502);
        cn_http_req_reset(creq);
        req_free(r);
        return;
    }
    int status = kind == GW_ERR_TIMEOUT ? 504 : 502;
    cn_info("gateway", "upstream failed",
            "route=%.*s cluster=%.*s endpoint=%.*s status=%d error=\"%s\"", (int)r->route->name.len,
            r->route->name.ptr, (int)r->cl->name.len, r->cl->name.ptr,
            (int)r->cl->eps[r->ep].name.len, r->cl->eps[r->ep].name.ptr, status, what);
    record(r, status);
    char msg[256];
    snprintf(msg, sizeof(msg), "%s (cluster %.*s, endpoint %.*s)", what, (int)r->cl->name.len,
             r->cl->name.ptr, (int)r->cl->eps[r->ep].name.len, r->cl->eps[r->ep].name.ptr);
    cn_http_reply_text(creq, status, msg);
    req_free(r);
}

static void on_up_connect(uv_connect_t *cr, int status)
{
    struct gw_upconn *up = cr->data;
    up_unpend(up);
    if (up->closing)
        return;
    if (status < 0) {
        char what[160];
        snprintf(what, sizeof(what), "upstream connect failed: %s", uv_strerror(status));
        up_fail(up, GW_ERR_CONNECT, what);
        return;
    }
    up->connected = 1;
    uv_tcp_nodelay(&up->tcp, 1);
    uv_os_fd_t fd;
    up->fd = uv_fileno((uv_handle_t *)&up->tcp, &fd) == 0 ? fd : -1;
    up_flush(up);
    if (!up->closing)
        up_read_start(up);
}

static struct gw_upconn *up_new(struct gw_worker *w, struct gw_pool *pool,
                                const struct gw_limits *lim)
{
    struct gw_upconn *up = calloc(1, sizeof(*up));
    if (!up)
        return NULL;
    up->w = w;
    up->pool = pool;
    up->rcap = CN_MAX((size_t)lim->max_response_header_bytes + 4096, (size_t)16384);
    up->hdrs = calloc((size_t)lim->max_response_headers, sizeof(*up->hdrs));
    if (!up->hdrs) {
        free(up);
        return NULL;
    }
    gw_resp_init(&up->resp, up->hdrs, (size_t)lim->max_response_headers,
                 lim->max_response_header_bytes);
    cn_buf_init(&up->out, UP_OUT_MAX);
    cn_buf_init(&up->wout, UP_OUT_MAX);
    uv_tcp_init(w->loop, &up->tcp);
    uv_timer_init(w->loop, &up->timer);
    up->tcp.data = up;
    up->timer.data = up;
    up->handles = 2;
    up->anext = w->conns;
    if (w->conns)
        w->conns->aprev = up;
    w->conns = up;
    return up;
}

/* A connection for the request: the pool's most recent idle one, or a new one. */
static struct gw_upconn *up_get(struct gw_req *r, int fresh)
{
    struct gw_worker *w = r->w;
    struct gw_pool *pool = r->view->pools[r->cl->eps[r->ep].global];
    const struct gw_limits *lim = &r->view->snap->limits;
    while (!fresh && pool->idle) {
        struct gw_upconn *up = pool->idle;
        pool->idle = up->next_idle;
        pool->num_idle--;
        up->idle = 0;
        if (up->closing)
            continue;
        /* Limits may have changed with a reload: apply the current ones. */
        up->resp.lim.max_header_bytes = CN_MIN(lim->max_response_header_bytes, up->rcap - 4096);
        up->resp.lim.max_headers = CN_MIN(lim->max_response_headers, up->resp.hdr_cap);
        return up;
    }
    const char *full = gw_breaker_conn_check(r->cl);
    if (full) {
        r->cb_reason = full;
        return NULL;
    }
    struct gw_upconn *up = up_new(w, pool, lim);
    if (!up)
        return NULL;
    if ((up->cst = r->cl->gov.st ? gw_cl_state_ref(r->cl->gov.st) : NULL)) {
        atomic_fetch_add_explicit(&up->cst->connections, 1, memory_order_relaxed);
        atomic_fetch_add_explicit(&up->cst->pending, 1, memory_order_relaxed);
        up->pending = 1;
    }
    const struct gw_endpoint *ep = &r->cl->eps[r->ep];
    up->connect_req.data = up;
    if (r->cl->stats)
        atomic_fetch_add_explicit(&r->cl->stats->w[w->id].connects, 1, memory_order_relaxed);
    int rc = uv_tcp_connect(&up->connect_req, &up->tcp, (const struct sockaddr *)&ep->addr,
                            on_up_connect);
    if (rc) {
        up_close(up);
        return NULL;
    }
    return up;
}

/* ---- the request ------------------------------------------------------------------------- */

static void on_client_abort(struct cn_http_req *creq)
{
    struct gw_req *r = creq->data;
    if (!r)
        return;
    r->creq = NULL;
    struct gw_upconn *up = r->up;
    r->up = NULL;
    if (up)
        up_close(up);               /* mid-request: the connection cannot carry another */
    record(r, r->tunnel ? 101 : 0); /* "aborted" */
    req_free(r);
}

static void on_client_body(struct cn_http_req *creq, const char *data, size_t len, int last)
{
    struct gw_req *r = creq->data;
    if (!r || !r->up)
        return;
    struct gw_upconn *up = r->up;
    int rc = 0;
    if (r->req_chunked) {
        if (len) {
            char hex[24];
            int n = snprintf(hex, sizeof(hex), "%zx\r\n", len);
            rc = cn_buf_reserve(&up->out, (size_t)n + len + 2);
            if (!rc) {
                cn_buf_append(&up->out, hex, (size_t)n);
                cn_buf_append(&up->out, data, len);
                cn_buf_append(&up->out, "\r\n", 2);
            }
        }
        if (!rc && last)
            rc = cn_buf_append(&up->out, "0\r\n\r\n", 5);
    } else {
        rc = cn_buf_append(&up->out, data, len);
    }
    if (rc) {
        up_fail(up, GW_ERR_RESET, "request body overflow");
        return;
    }
    touch(r);
    if (last) {
        r->body_done = 1;
        if (r->t.first_byte_ms)
            r->fb_at = now_ms(r->w) + r->t.first_byte_ms;
        up_arm(up);
    }
    up_flush(up);
    if (r->up && up_pending(r->up) > GW_HIGH_WATER && !last) {
        r->client_paused = 1;
        cn_http_req_body_pause(creq);
    }
}

static void put(struct cn_buf *o, const char *p, size_t n)
{
    memcpy(o->ptr + o->len, p, n);
    o->len += n;
}

#define PUT_LIT(o, s) put((o), (s), sizeof(s) - 1)

static void put_header(struct cn_buf *o, struct cn_slice name, struct cn_slice value)
{
    put(o, name.ptr, name.len);
    PUT_LIT(o, ": ");
    put(o, value.ptr, value.len);
    PUT_LIT(o, "\r\n");
}

/* Writes the upstream request head into up->out. Returns 0 or CN_ENOMEM/CN_ELIMIT. */
static int build_head(struct gw_req *r, struct gw_upconn *up)
{
    struct cn_http_req *creq = r->creq;
    const struct gw_route *rt = r->route;
    const struct cn_gw_snapshot *s = r->view->snap;
    struct cn_slice host = {NULL, 0}, xff = {NULL, 0}, upgrade = {NULL, 0};
    int has_rid = 0;
    struct cn_slice toks[MAX_CONN_TOKENS];
    size_t nt = 0, total = 0;
    r->has_cl = 0;
    for (size_t i = 0; i < creq->num_headers; i++) {
        const struct cn_http_header *h = &creq->headers[i];
        total += h->name.len + h->value.len + 4;
        switch (h->name.len) {
        case 4:
            if (gw_lit_eq(h->name, CN_SLICE_LIT("host")))
                host = h->value;
            break;
        case 7:
            if (gw_lit_eq(h->name, CN_SLICE_LIT("upgrade")))
                upgrade = h->value;
            break;
        case 10:
            if (gw_lit_eq(h->name, CN_SLICE_LIT("connection")))
                nt = conn_tokens(h->value, toks, MAX_CONN_TOKENS, nt);
            break;
        case 12:
            if (gw_lit_eq(h->name, CN_SLICE_LIT("x-request-id")))
                has_rid = 1;
            break;
        case 14:
            if (gw_lit_eq(h->name, CN_SLICE_LIT("content-length")))
                r->has_cl = 1;
            break;
        case 15:
            if (gw_lit_eq(h->name, CN_SLICE_LIT("x-forwarded-for")))
                xff = h->value;
            break;
        default:
            break;
        }
    }
    /* Path: rewritten or as sent. */
    char pathbuf[8192];
    struct cn_slice path = creq->path;
    struct cn_slice send_host = host;
    if (rt->rewrite) {
        if (rt->rewrite->u.rewrite.path_mod != GW_PM_NONE) {
            int n = gw_rewrite_path(rt->rewrite, r->match, creq->path, pathbuf, sizeof(pathbuf));
            if (n < 0)
                return CN_ELIMIT;
            path = (struct cn_slice){pathbuf, (size_t)n};
        }
        if (rt->rewrite->u.rewrite.hostname.len)
            send_host = rt->rewrite->u.rewrite.hostname;
    }
    if (!send_host.len)
        send_host = r->cl->eps[r->ep].name;
    const char *ip = cn_http_req_peer_ip(creq);
    size_t iplen = strlen(ip);
    size_t filt = 0;
    for (size_t f = 0; f < rt->num_filters; f++)
        if (rt->filters[f].kind == GW_F_REQUEST_HEADERS) {
            const struct gw_header_mod *hm = &rt->filters[f].u.headers;
            for (size_t i = 0; i < hm->num_set; i++)
                filt += hm->set[i].name.len + hm->set[i].value.len + 4;
            for (size_t i = 0; i < hm->num_add; i++)
                filt += hm->add[i].name.len + hm->add[i].value.len + 4;
        }
    size_t need = creq->method_name.len + path.len + creq->query.len + 16 + send_host.len + 8 +
                  total + xff.len + iplen + host.len + upgrade.len + filt + 256 +
                  gw_ext_upstream_size(&r->ext);
    struct cn_buf *o = &up->out;
    int rc = cn_buf_reserve(o, need);
    if (rc)
        return rc;
    put(o, creq->method_name.ptr, creq->method_name.len);
    PUT_LIT(o, " ");
    put(o, path.ptr, path.len);
    if (creq->query.len) {
        PUT_LIT(o, "?");
        put(o, creq->query.ptr, creq->query.len);
    }
    PUT_LIT(o, " HTTP/1.1\r\nHost: ");
    put(o, send_host.ptr, send_host.len);
    PUT_LIT(o, "\r\n");
    for (size_t i = 0; i < creq->num_headers; i++) {
        const struct cn_http_header *h = &creq->headers[i];
        struct cn_slice nm = h->name;
        if (gw_is_hop_by_hop(nm))
            continue;
        switch (nm.len) {
        case 4:
            if (gw_lit_eq(nm, CN_SLICE_LIT("host")))
                continue;
            break;
        case 6:
            if (gw_lit_eq(nm, CN_SLICE_LIT("expect")))
                continue; /* 100-continue was answered by us */
            break;
        case 14:
            if (gw_lit_eq(nm, CN_SLICE_LIT("content-length")))
                continue;
            break;
        case 15:
            if (gw_lit_eq(nm, CN_SLICE_LIT("x-forwarded-for")))
                continue;
            break;
        case 16:
            if (gw_lit_eq(nm, CN_SLICE_LIT("x-forwarded-host")))
                continue;
            break;
        case 17:
            if (gw_lit_eq(nm, CN_SLICE_LIT("x-forwarded-proto")))
                continue;
            break;
        default:
            break;
        }
        if (nt && named_by(nm, toks, nt))
            continue;
        if (gw_ext_drops(&r->ext, s, nm))
            continue;
        int drop = 0;
        for (size_t f = 0; f < rt->num_filters && !drop; f++)
            if (rt->filters[f].kind == GW_F_REQUEST_HEADERS)
                drop = gw_header_mod_drops(&rt->filters[f].u.headers, nm);
        if (!drop)
            put_header(o, nm, h->value);
    }
    PUT_LIT(o, "X-Forwarded-For: ");
    if (xff.len) {
        put(o, xff.ptr, xff.len);
        PUT_LIT(o, ", ");
    }
    put(o, ip, iplen);
    if (CN_UNLIKELY(cn_http_req_tls(creq)))
        PUT_LIT(o, "\r\nX-Forwarded-Proto: https\r\n");
    else
        PUT_LIT(o, "\r\nX-Forwarded-Proto: http\r\n");
    if (host.len)
        put_header(o, CN_SLICE_LIT("X-Forwarded-Host"), host);
    if (!has_rid && s->request_id) {
        static const char hex[] = "0123456789abcdef";
        char id[32];
        uint64_t a = gw_rand(&r->w->rng), b = gw_rand(&r->w->rng);
        for (int i = 0; i < 16; i++) {
            id[i] = hex[(a >> (i * 4)) & 15];
            id[16 + i] = hex[(b >> (i * 4)) & 15];
        }
        PUT_LIT(o, "X-Request-Id: ");
        put(o, id, 32);
        PUT_LIT(o, "\r\n");
    }
    if (s->via)
        PUT_LIT(o, "Via: 1.1 cairn\r\n");
    gw_ext_upstream_headers(&r->ext, o);
    for (size_t f = 0; f < rt->num_filters; f++) {
        if (rt->filters[f].kind != GW_F_REQUEST_HEADERS)
            continue;
        const struct gw_header_mod *hm = &rt->filters[f].u.headers;
        for (size_t i = 0; i < hm->num_set; i++)
            put_header(o, hm->set[i].name, hm->set[i].value);
        for (size_t i = 0; i < hm->num_add; i++)
            put_header(o, hm->add[i].name, hm->add[i].value);
    }
    if (r->upgrade) {
        PUT_LIT(o, "Connection: upgrade\r\n");
        put_header(o, CN_SLICE_LIT("Upgrade"), upgrade);
    }
    if (creq->content_length > 0 || (r->has_cl && creq->content_length == 0)) {
        char num[24];
        size_t n = cn_u64_to_dec(num, (uint64_t)creq->content_length);
        PUT_LIT(o, "Content-Length: ");
        put(o, num, n);
        PUT_LIT(o, "\r\n");
    } else if (creq->content_length < 0) {
        r->req_chunked = 1;
        PUT_LIT(o, "Transfer-Encoding: chunked\r\n");
    }
    PUT_LIT(o, "\r\n");
    return 0;
}

/* Connects (or takes a pooled connection) and sends the head. Returns 0, or a negative code
 * when no connection could be had (nothing was sent, the caller answers). */
static int start_upstream(struct gw_req *r, int fresh)
{
    struct gw_upconn *up = up_get(r, fresh);
    if (!up)
        return CN_EIO;
    r->up = up;
    up->req = r;
    up->rpos = up->rlen = 0;
    gw_resp_reset(&up->resp);
    if (build_head(r, up) != 0) {
        r->up = NULL;
        up_close(up);
        return CN_ELIMIT;
    }
    r->head_out = up->out.len;
    uint64_t now = now_ms(r->w);
    r->connect_at = up->connected ? 0 : now + r->t.connect_ms;
    if (r->body_done && r->t.first_byte_ms)
        r->fb_at = now + r->t.first_byte_ms;
    touch(r);
    up_arm(up);
    if (up->connected) {
        up_flush(up);
        if (r->up == up)
            up_read_start(up);
    }
    return 0;
}

static const struct gw_cluster *pick_backend(struct gw_view *v, const struct gw_route *rt)
{
    if (rt->num_backends == 1)
        return rt->backends[0].cluster;
    size_t i = gw_swrr(v->route_current[rt->index], &rt->backends[0].weight,
                       sizeof(rt->backends[0]), rt->num_backends, rt->total_weight);
    return rt->backends[i].cluster;
}

/* The hash key of a request for a consistent-hash cluster, NULL when it has none. */
static const char *hash_key(const struct gw_cluster *cl, struct cn_http_req *creq, size_t *out_len)
{
    if (cl->hash_on == GW_HASH_CLIENT_IP) {
        const char *ip = cn_http_req_peer_ip(creq);
        *out_len = strlen(ip);
        return *out_len ? ip : NULL;
    }
    for (size_t i = 0; i < creq->num_headers; i++) {
        const struct cn_http_header *h = &creq->headers[i];
        if (cl->hash_on == GW_HASH_HEADER) {
            if (cn_slice_case_eq(h->name, cl->hash_key)) {
                *out_len = h->value.len;
                return h->value.ptr;
            }
            continue;
        }
        if (!gw_lit_eq(h->name, CN_SLICE_LIT("cookie")))
            continue;
        /* Cookie: a=1; b=2 */
        const char *p = h->value.ptr, *end = p + h->value.len;
        while (p < end) {
            while (p < end && (*p == ' ' || *p == ';'))
                p++;
            const char *semi = memchr(p, ';', (size_t)(end - p));
            const char *e = semi ? semi : end;
            const char *eq = memchr(p, '=', (size_t)(e - p));
            if (eq && (size_t)(eq - p) == cl->hash_key.len &&
                memcmp(p, cl->hash_key.ptr, cl->hash_key.len) == 0) {
                *out_len = (size_t)(e - eq - 1);
                return eq + 1;
            }
            p = e;
        }
    }
    return NULL;
}

static void reply_error(struct cn_http_req *creq, int status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* ---- governance hooks (policy in gov.c) ------------------------------------------------------ */

/* Counts the request against the cluster's max_requests; answers 503 past it (returns 1). */
static int breaker_requests(struct gw_req *r)
{
    const struct gw_cluster *cl = r->cl;
    struct gw_cl_state *cs = cl->gov.st;
    if (atomic_fetch_add_explicit(&cs->requests, 1, memory_order_relaxed) <
        cl->gov.breaker.max_requests) {
        r->cb_counted = 1;
        return 0;
    }
    atomic_fetch_sub_explicit(&cs->requests, 1, memory_order_relaxed);
    gw_gov_count(cl, r->w->id, GW_C_CB_REQUESTS);
    record(r, 503);
    struct cn_http_req *creq = r->creq;
    r->creq = NULL;
    r->cl = NULL; /* nothing was taken from the balancer */
    req_free(r);
    gw_breaker_reply(creq, cl, "max_requests");
    return 1;
}

/* Answers 503 for a cluster without endpoints (discovery found none). */
static void no_endpoints(struct gw_req *r)
{
    const struct gw_cluster *cl = r->cl;
    record(r, 503);
    struct cn_http_req *creq = r->creq;
    r->creq = NULL;
    r->cl = NULL; /* nothing was taken from the balancer */
    req_free(r);
    reply_error(creq, 503,
                "no endpoint for cluster %.*s (its registry service has no healthy "
                "instance)",
                (int)cl->name.len, cl->name.ptr);
}

static int idempotent(int method)
{
    return method == HTTP_GET || method == HTTP_HEAD || method == HTTP_OPTIONS ||
           method == HTTP_PUT || method == HTTP_DELETE || method == HTTP_TRACE;
}

/* Whether the cluster's retry policy covers this failure of this request: attempts left, the
 * condition listed, and a request that can be sent again. A connection that never connected
 * sent nothing: its head and the body bytes so far (up to retry.max_body_bytes) are resent.
 * Otherwise the request may have reached the upstream: only idempotent methods without a
 * body. */
static int retry_allowed(const struct gw_req *r, const struct gw_upconn *old, unsigned cond)
{
    const struct gw_retry_cfg *rc = &r->cl->gov.retry;
    if (!rc->enabled || !(rc->on & cond) || r->attempts >= rc->attempts || !r->creq || r->upgrade ||
        r->resp_started || r->w->stopping)
        return 0;
    if (!old->connected && old->wout.len == 0)
        return old->out.len - r->head_out <= rc->max_body_bytes;
    return r->creq->content_length == 0 && idempotent(r->creq->method);
}

/* The retry budget (per worker and cluster); a refusal is counted. */
static int retry_budget(struct gw_req *r)
{
    const struct gw_retry_cfg *rc = &r->cl->gov.retry;
    struct gw_budget *b = &r->view->lb[r->cl->index].budget;
    if (!r->retrying && !gw_budget_allow(b, rc->budget_percent, rc->min_per_s, now_ms(r->w))) {
        gw_gov_count(r->cl, r->w->id, GW_C_RETRY_BUDGET);
        return 0;
    }
    if (!r->retrying) {
        r->retrying = 1;
        b->retrying++;
    }
    return 1;
}

/* The next attempt, on another endpoint when there is one. old (closed, detached) may hold
 * the head and body bytes never sent. Returns 0, or a negative code when no connection could
 * be had (the caller answers). */
static int retry_start(struct gw_req *r, struct gw_upconn *old)
{
    struct gw_lb_state *lb = &r->view->lb[r->cl->index];
    gw_gov_count(r->cl, r->w->id, GW_C_RETRIES);
    size_t klen = 0;
    const char *key = r->cl->policy == GW_LB_HASH ? hash_key(r->cl, r->creq, &klen) : NULL;
    uint32_t prev = r->ep;
    lb->active[prev]--;
    r->ep = gw_lb_pick_up(r->cl, lb, &r->w->rng, key, klen, now_ms(r->w), prev);
    lb->active[r->ep]++;
    r->attempts++;
    cn_debug("gateway", "retrying", "cluster=%.*s from=%.*s to=%.*s attempt=%u",
             (int)r->cl->name.len, r->cl->name.ptr, (int)r->cl->eps[prev].name.len,
             r->cl->eps[prev].name.ptr, (int)r->cl->eps[r->ep].name.len, r->cl->eps[r->ep].name.ptr,
             r->attempts);
    struct cn_buf unsent = {0};
    size_t skip = r->head_out;
    if (!old->connected && old->out.len > skip) {
        unsent = old->out; /* its connection is closing: the buffer moves here */
        cn_buf_init(&old->out, UP_OUT_MAX);
    }
    r->head_seen = 0;
    r->no_reuse = 0;
    r->fb_at = 0;
    r->cb_reason = NULL;
    int rc = start_upstream(r, 0);
    if (rc == 0 && unsent.len > skip && r->up) {
        if (cn_buf_append(&r->up->out, unsent.ptr + skip, unsent.len - skip) == 0)
            up_flush(r->up);
        else
            rc = CN_ENOMEM;
    }
    cn_buf_release(&unsent);
    return rc;
}

/* A 502/503/504 head from the upstream that the policy retries: the response is dropped with
 * its connection. Returns 1 when the request was taken over (retried or answered). */
static int retry_on_status(struct gw_req *r, struct gw_upconn *up, int status)
{
    unsigned cond = status == 502 ? GW_RETRY_502 : status == 503 ? GW_RETRY_503 : GW_RETRY_504;
    if (!retry_allowed(r, up, cond) || !retry_budget(r))
        return 0;
    r->up = NULL;
    up->req = NULL;
    up_close(up);
    if (retry_start(r, up) == 0)
        return 1;
    struct cn_http_req *creq = r->creq;
    client_detach(r);
    record(r, 502);
    reply_error(creq, 502, "upstream connect failed on retry (cluster %.*s, endpoint %.*s)",
                (int)r->cl->name.len, r->cl->name.ptr, (int)r->cl->eps[r->ep].name.len,
                r->cl->eps[r->ep].name.ptr);
    req_free(r);
    return 1;
}

static void reply_error(struct cn_http_req *creq, int status, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    cn_http_reply_text(creq, status, msg);
}

void cn_gw_handle(struct cn_http_req *creq, void *ctx)
{
    struct cn_gw *gw = ctx;
    struct gw_worker *w = &gw->workers[creq->worker->id];
    struct gw_view *v = w->view;
    if (CN_NEVER(!v)) {
        cn_http_reply_text(creq, 503, "no configuration");
        return;
    }
    const struct cn_gw_snapshot *s = v->snap;
    /* Host, Upgrade and Connection in one pass over the fields (the first of each, as
     * cn_http_req_header finds them). */
    const struct cn_slice *hostv = NULL, *upg = NULL, *conn = NULL;
    for (size_t i = 0; i < creq->num_headers; i++) {
        const struct cn_http_header *h = &creq->headers[i];
        if (!hostv && gw_lit_eq(h->name, CN_SLICE_LIT("host")))
            hostv = &h->value;
        else if (!upg && gw_lit_eq(h->name, CN_SLICE_LIT("upgrade")))
            upg = &h->value;
        else if (!conn && gw_lit_eq(h->name, CN_SLICE_LIT("connection")))
            conn = &h->value;
    }
    char host[GW_MAX_HOST + 1];
    int hl = hostv ? gw_host_normalize(*hostv, host) : 0;
    struct gw_req_view rv = {
        .host = {host, hl > 0 ? (size_t)hl : 0},
        .path = creq->path,
        .query = creq->query,
        .method = creq->method,
        .headers = creq->headers,
        .num_headers = creq->num_headers,
    };
    const struct gw_match *m = gw_match_request(s, &rv);
    if (!m) {
        reply_error(creq, 404, "no route matches host '%.*s' path '%.*s'", (int)rv.host.len,
                    rv.host.ptr, (int)CN_MIN(creq->path.len, 200), creq->path.ptr);
        return;
    }
    const struct gw_route *rt = m->route;
    struct gw_ext_state ext;
    int answered = gw_ext_request(w, s, rt, creq, &ext);
    if (answered) {
        gw_stats_record(rt->stats, w->id, answered, 0);
        return;
    }
    if (rt->has_ratelimit && gw_ratelimit_check(rt, creq, &ext, w->id, now_ms(w))) {
        gw_ext_release(&ext);
        return;
    }
    if (rt->redirect) {
        gw_ext_release(&ext);
        char loc[8192];
        int n = gw_redirect_location(rt->redirect, m, cn_http_req_tls(creq),
                                     hostv ? *hostv : CN_SLICE_LIT(""), creq->path, creq->query,
                                     loc, sizeof(loc));
        uint64_t t0 = uv_hrtime();
        if (n < 0) {
            reply_error(creq, 500, "redirect location too long (route %.*s)", (int)rt->name.len,
                        rt->name.ptr);
            gw_stats_record(rt->stats, w->id, 500, 0);
            return;
        }
        struct cn_http_header h = {CN_SLICE_LIT("Location"), {loc, (size_t)n}};
        int st = rt->redirect->u.redirect.status;
        cn_http_reply(creq, st, NULL, NULL, 0, &h, 1);
        gw_stats_record(rt->stats, w->id, st, (uv_hrtime() - t0) / 1000);
        return;
    }
    int upgrade = upg && conn && has_token(*conn, "upgrade");
    if (upgrade && creq->content_length != 0) {
        gw_ext_release(&ext);
        cn_http_reply_text(creq, 400, "an Upgrade request must not carry a body");
        return;
    }
    struct gw_req *r = req_new(w);
    if (!r) {
        gw_ext_release(&ext);
        cn_http_reply_text(creq, 503, "out of memory");
        return;
    }
    r->ext = ext;
    r->start_ns = creq->start_ns ? creq->start_ns : uv_hrtime();
    r->view = v;
    v->refs++;
    r->route = rt;
    r->match = m;
    r->creq = creq;
    r->host = hostv ? *hostv : CN_SLICE_LIT("");
    r->upgrade = upgrade;
    r->head_req = creq->method == HTTP_HEAD;
    r->body_done = creq->content_length == 0;
    const struct gw_cluster *cl = pick_backend(v, rt);
    r->cl = cl;
    if (CN_UNLIKELY(cl->num_eps == 0)) {
        no_endpoints(r); /* a discovering cluster whose service has no instance up */
        return;
    }
    if (cl->gov.breaker.max_requests && breaker_requests(r))
        return;
    size_t klen = 0;
    const char *key = cl->policy == GW_LB_HASH ? hash_key(cl, creq, &klen) : NULL;
    struct gw_lb_state *lb = &v->lb[cl->index];
    r->ep = gw_lb_pick_up(cl, lb, &w->rng, key, klen, now_ms(w), -1);
    lb->active[r->ep]++;
    lb->budget.inflight++;
    r->attempts = 1;
    /* Timeouts: the route's set fields over the cluster's. */
    r->t = cl->timeouts;
    if (rt->timeouts_set & 1)
        r->t.connect_ms = rt->timeouts.connect_ms;
    if (rt->timeouts_set & 2)
        r->t.first_byte_ms = rt->timeouts.first_byte_ms;
    if (rt->timeouts_set & 4)
        r->t.total_ms = rt->timeouts.total_ms;
    if (rt->timeouts_set & 8)
        r->t.idle_ms = rt->timeouts.idle_ms;
    uint64_t per_try = cl->gov.retry.enabled ? cl->gov.retry.per_try_ms : 0;
    if (per_try && (!r->t.first_byte_ms || per_try < r->t.first_byte_ms))
        r->t.first_byte_ms = per_try;
    if (r->t.total_ms)
        r->total_at = now_ms(w) + r->t.total_ms;
    creq->data = r;
    creq->abort_cb = on_client_abort;
    if (creq->content_length != 0)
        creq->body_cb = on_client_body;
    int rc = start_upstream(r, 0);
    if (rc && r->cb_reason) {
        const char *limit = r->cb_reason;
        gw_gov_count(cl, w->id,
                     !strcmp(limit, "max_pending") ? GW_C_CB_PENDING : GW_C_CB_CONNECTIONS);
        record(r, 503);
        client_detach(r);
        r->creq = NULL;
        req_free(r);
        gw_breaker_reply(creq, cl, limit);
        return;
    }
    if (rc) {
        count_err(r, GW_ERR_CONNECT);
        record(r, 502);
        client_detach(r);
        r->creq = NULL;
        req_free(r);
        reply_error(
            creq, 502, "%s (cluster %.*s, endpoint %.*s)",
            rc == CN_ELIMIT ? "request head too large for the upstream" : "upstream connect failed",
            (int)cl->name.len, cl->name.ptr, (int)cl->eps[r->ep].name.len, cl->eps[r->ep].name.ptr);
    }
}

/* ---- worker lifecycle --------------------------------------------------------------------- */

void cn_gw_worker_stop(struct cn_gw *gw, int id)
{
    struct gw_worker *w = &gw->workers[id];
    w->stopping = 1;
    for (struct gw_pool *p = w->pools; p; p = p->next)
        while (p->idle)
            up_close(p->idle);
}

/* Closes every upstream connection (the loop is ending). */
void gw_worker_close_all(struct gw_worker *w)
{
    for (struct gw_upconn *up = w->conns; up; up = up->anext)
        if (!up->closing) {
            struct gw_req *r = up->req;
            if (r) {
                r->up = NULL;
                up->req = NULL;
            }
            up_close(up);
        }
}

/* Frees the worker's pools, request objects and buffers after its loop ended (after the
 * connections' close callbacks ran). */
void gw_worker_free_all(struct gw_worker *w)
{
    while (w->free_reqs) {
        struct gw_req *r = w->free_reqs;
        w->free_reqs = r->next_free;
        free(r);
    }
    while (w->pools) {
        struct gw_pool *p = w->pools;
        w->pools = p->next;
        free(p);
    }
    cn_buf_release(&w->scratch);
    cn_free(&w->hdrs);
    w->hdr_cap = 0;
}
