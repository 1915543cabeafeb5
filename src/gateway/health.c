/* Active health checks, on one control loop for the whole process (not per worker): every
 * cluster with a health_check gets a timer; each round sends "GET path" to each endpoint, at
 * most max_concurrent at a time, on a fresh connection (Connection: close), and reads the
 * status line. unhealthy_threshold failures in a row set the endpoint's UNHEALTHY bit, which
 * every worker's balancer reads (gw_lb_pick_up); healthy_threshold successes in a row clear
 * it. The checker follows reloads: cn_gw_publish wakes it, it rebuilds its rounds for the
 * new snapshot; checks in flight finish against the state they started with. */
#include "gateway/internal.h"

#include "base/log.h"

#define HC_READ_MAX 1024 /* enough for a status line */

struct gw_health;

/* The checks of one cluster of one snapshot. Freed when it is retired (a reload, stop) and
 * its timer and every check of it have closed (refs). */
struct hc_round {
    struct gw_health *h;
    struct cn_gw_snapshot *snap; /* a reference */
    const struct gw_cluster *cl;
    uv_timer_t timer;
    size_t next;       /* the next endpoint of this round */
    uint32_t inflight; /* checks running */
    int refs;          /* the timer + checks running */
    int retired;
    struct hc_round *next_round;
};

/* One check: connect, write, read the status line, close. */
struct hc_check {
    struct hc_round *round;
    uint32_t ep;
    uv_tcp_t tcp;
    uv_connect_t conn;
    uv_write_t wr;
    uv_timer_t timer;
    int handles;
    int done;
    struct hc_check *cnext, *cprev; /* the checker's running checks */
    char req[512];
    char buf[HC_READ_MAX];
    size_t len;
};

struct gw_health {
    struct cn_gw *gw;
    uv_loop_t *loop;
    uv_async_t wake;
    struct hc_round *rounds;
    struct hc_check *checks; /* running */
    struct cn_gw_snapshot *snap;
    int stopping;
    int handles; /* wake + rounds' timers + checks' handles; freed at 0 when stopping */
};

static void round_pump(struct hc_round *ru);

static void health_maybe_free(struct gw_health *h)
{
    if (h->stopping && h->handles == 0) {
        cn_gw_snapshot_unref(h->snap);
        free(h);
    }
}

static void round_unref(struct hc_round *ru)
{
    if (--ru->refs > 0)
        return;
    struct gw_health *h = ru->h;
    cn_gw_snapshot_unref(ru->snap);
    free(ru);
    health_maybe_free(h);
}

static void on_round_timer_closed(uv_handle_t *t)
{
    struct hc_round *ru = t->data;
    ru->h->handles--;
    round_unref(ru);
}

static void round_retire(struct hc_round *ru)
{
    if (ru->retired)
        return;
    ru->retired = 1;
    uv_close((uv_handle_t *)&ru->timer, on_round_timer_closed);
}

static int status_expected(const struct gw_health_cfg *hc, int status)
{
    if (hc->num_statuses == 0)
        return status >= 200 && status <= 299;
    for (size_t i = 0; i < hc->num_statuses; i++)
        if (hc->statuses[i] == status)
            return 1;
    return 0;
}

/* Applies one result to the endpoint's shared state. */
static void apply(struct hc_round *ru, uint32_t ep, int ok, const char *why)
{
    const struct gw_cluster *cl = ru->cl;
    const struct gw_health_cfg *hc = &cl->gov.health;
    struct gw_ep_state *st = cl->eps[ep].st;
    gw_gov_count(cl, 0, ok ? GW_C_HC_OK : GW_C_HC_FAIL);
    if (!st)
        return;
    unsigned f = atomic_load_explicit(&st->flags, memory_order_relaxed);
    if (ok) {
        st->hc_fail = 0;
        st->hc_ok++;
        if ((f & GW_EP_UNHEALTHY) && st->hc_ok >= hc->healthy_threshold) {
            atomic_fetch_and_explicit(&st->flags, ~(unsigned)GW_EP_UNHEALTHY, memory_order_relaxed);
            cn_info("gateway", "endpoint healthy", "cluster=%.*s endpoint=%.*s successes=%u",
                    (int)cl->name.len, cl->name.ptr, (int)cl->eps[ep].name.len,
                    cl->eps[ep].name.ptr, st->hc_ok);
        }
    } else {
        st->hc_ok = 0;
        st->hc_fail++;
        if (!(f & GW_EP_UNHEALTHY) && st->hc_fail >= hc->unhealthy_threshold) {
            atomic_fetch_or_explicit(&st->flags, GW_EP_UNHEALTHY, memory_order_relaxed);
            cn_warn("gateway", "endpoint unhealthy",
                    "cluster=%.*s endpoint=%.*s failures=%u error=\"%s\"", (int)cl->name.len,
                    cl->name.ptr, (int)cl->eps[ep].name.len, cl->eps[ep].name.ptr, st->hc_fail,
                    why);
        }
    }
}

static void on_check_closed(uv_handle_t *hd)
{
    struct hc_check *c = hd->data;
    struct hc_round *ru = c->round;
    ru->h->handles--;
    if (--c->handles)
        return;
    free(c);
    round_unref(ru);
}

/* Ends a check once: the result is applied (unless the checker stops), both handles close,
 * the round goes on. */
static void check_end(struct hc_check *c, int ok, const char *why)
{
    if (c->done)
        return;
    c->done = 1;
    struct hc_round *ru = c->round;
    struct gw_health *h = ru->h;
    if (c->cprev)
        c->cprev->cnext = c->cnext;
    else
        h->checks = c->cnext;
    if (c->cnext)
        c->cnext->cprev = c->cprev;
    if (!ru->h->stopping)
        apply(ru, c->ep, ok, why);
    uv_close((uv_handle_t *)&c->tcp, on_check_closed);
    uv_close((uv_handle_t *)&c->timer, on_check_closed);
    ru->inflight--;
    if (!ru->retired)
        round_pump(ru);
}

static void on_check_timeout(uv_timer_t *t)
{
    check_end(t->data, 0, "timeout");
}

static void on_check_alloc(uv_handle_t *hd, size_t suggested, uv_buf_t *buf)
{
    (void)suggested;
    struct hc_check *c = hd->data;
    *buf = uv_buf_init(c->buf + c->len, (unsigned)(sizeof(c->buf) - 1 - c->len));
}

static void on_check_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
    (void)buf;
    struct hc_check *c = s->data;
    if (c->done || n == 0)
        return;
    if (n < 0) {
        check_end(c, 0, "closed before a status line");
        return;
    }
    c->len += (size_t)n;
    c->buf[c->len] = '\0';
    char *eol = memchr(c->buf, '\n', c->len);
    if (!eol) {
        if (c->len >= sizeof(c->buf) - 1)
            check_end(c, 0, "status line too long");
        return;
    }
    /* "HTTP/1.x NNN ..." */
    int status = 0;
    if (c->len >= 12 && memcmp(c->buf, "HTTP/1.", 7) == 0 && c->buf[8] == ' ' && c->buf[9] >= '1' &&
        c->buf[9] <= '5' && c->buf[10] >= '0' && c->buf[10] <= '9' && c->buf[11] >= '0' &&
        c->buf[11] <= '9')
        status = (c->buf[9] - '0') * 100 + (c->buf[10] - '0') * 10 + (c->buf[11] - '0');
    if (!status) {
        check_end(c, 0, "malformed status line");
        return;
    }
    int ok = status_expected(&c->round->cl->gov.health, status);
    check_end(c, ok, ok ? "" : "unexpected status");
}

static void on_check_written(uv_write_t *w, int status)
{
    struct hc_check *c = w->data;
    if (status < 0)
        check_end(c, 0, "write failed");
}

static void on_check_connect(uv_connect_t *cr, int status)
{
    struct hc_check *c = cr->data;
    if (c->done)
        return;
    if (status < 0) {
        check_end(c, 0, uv_strerror(status));
        return;
    }
    uv_buf_t b = uv_buf_init(c->req, (unsigned)strlen(c->req));
    c->wr.data = c;
    if (uv_write(&c->wr, (uv_stream_t *)&c->tcp, &b, 1, on_check_written) != 0 ||
        uv_read_start((uv_stream_t *)&c->tcp, on_check_alloc, on_check_read) != 0)
        check_end(c, 0, "write failed");
}

static int check_start(struct hc_round *ru, uint32_t ep)
{
    struct gw_health *h = ru->h;
    const struct gw_cluster *cl = ru->cl;
    struct hc_check *c = calloc(1, sizeof(*c));
    if (!c)
        return CN_ENOMEM;
    c->round = ru;
    c->ep = ep;
    const struct gw_endpoint *e = &cl->eps[ep];
    snprintf(c->req, sizeof(c->req),
             "GET %.*s HTTP/1.1\r\nHost: %.*s\r\nUser-Agent: cairn-health-check\r\n"
             "Connection: close\r\n\r\n",
             (int)CN_MIN(cl->gov.health.path.len, 300), cl->gov.health.path.ptr,
             (int)CN_MIN(e->name.len, 150), e->name.ptr);
    uv_tcp_init(h->loop, &c->tcp);
    uv_timer_init(h->loop, &c->timer);
    c->tcp.data = c->timer.data = c;
    c->conn.data = c;
    c->handles = 2;
    h->handles += 2;
    c->cnext = h->checks;
    if (h->checks)
        h->checks->cprev = c;
    h->checks = c;
    ru->refs++;
    ru->inflight++;
    uv_timer_start(&c->timer, on_check_timeout, cl->gov.health.timeout_ms, 0);
    int rc = uv_tcp_connect(&c->conn, &c->tcp, (const struct sockaddr *)&e->addr, on_check_connect);
    if (rc)
        check_end(c, 0, uv_strerror(rc));
    return 0;
}

/* Starts checks while the round has endpoints left and room under max_concurrent. */
static void round_pump(struct hc_round *ru)
{
    const struct gw_cluster *cl = ru->cl;
    while (!ru->retired && ru->next < cl->num_eps && ru->inflight < cl->gov.health.max_concurrent) {
        if (check_start(ru, (uint32_t)ru->next++) != 0)
            break;
    }
}

static void on_round_timer(uv_timer_t *t)
{
    struct hc_round *ru = t->data;
    /* A round still running (slow checks) is not started over: the next tick will. */
    if (ru->next >= ru->cl->num_eps && ru->inflight == 0)
        ru->next = 0;
    round_pump(ru);
}

/* Rebuilds the rounds for the current snapshot. */
static void adopt(struct gw_health *h)
{
    uv_mutex_lock(&h->gw->lock);
    struct cn_gw_snapshot *s = h->gw->current ? cn_gw_snapshot_ref(h->gw->current) : NULL;
    uv_mutex_unlock(&h->gw->lock);
    if (s == h->snap) {
        cn_gw_snapshot_unref(s);
        return;
    }
    for (struct hc_round *ru = h->rounds, *next; ru; ru = next) {
        next = ru->next_round;
        round_retire(ru);
    }
    h->rounds = NULL;
    cn_gw_snapshot_unref(h->snap);
    h->snap = s;
    for (size_t i = 0; s && i < s->num_clusters; i++) {
        const struct gw_cluster *cl = &s->clusters[i];
        if (!cl->gov.health.enabled)
            continue;
        struct hc_round *ru = calloc(1, sizeof(*ru));
        if (!ru) {
            cn_error("gateway", "out of memory starting health checks", "cluster=%.*s",
                     (int)cl->name.len, cl->name.ptr);
            continue;
        }
        ru->h = h;
        ru->snap = cn_gw_snapshot_ref(s);
        ru->cl = cl;
        ru->refs = 1;
        uv_timer_init(h->loop, &ru->timer);
        ru->timer.data = ru;
        h->handles++;
        /* The first round at once: a dead endpoint is found within one timeout. */
        uv_timer_start(&ru->timer, on_round_timer, 0, cl->gov.health.interval_ms);
        ru->next_round = h->rounds;
        h->rounds = ru;
    }
}

static void on_wake(uv_async_t *a)
{
    struct gw_health *h = a->data;
    if (!h->stopping)
        adopt(h);
}

static void on_wake_closed(uv_handle_t *hd)
{
    struct gw_health *h = hd->data;
    h->handles--;
    health_maybe_free(h);
}

int cn_gw_health_start(struct cn_gw *gw, uv_loop_t *loop)
{
    struct gw_health *h = calloc(1, sizeof(*h));
    if (!h)
        return CN_ENOMEM;
    h->gw = gw;
    h->loop = loop;
    int rc = uv_async_init(loop, &h->wake, on_wake);
    if (rc) {
        free(h);
        return rc;
    }
    h->wake.data = h;
    h->handles = 1;
    uv_mutex_lock(&gw->lock);
    gw->health = h;
    uv_mutex_unlock(&gw->lock);
    adopt(h);
    return 0;
}

void cn_gw_health_stop(struct cn_gw *gw)
{
    uv_mutex_lock(&gw->lock);
    struct gw_health *h = gw->health;
    gw->health = NULL;
    uv_mutex_unlock(&gw->lock);
    if (!h)
        return;
    h->stopping = 1;
    for (struct hc_round *ru = h->rounds, *next; ru; ru = next) {
        next = ru->next_round;
        round_retire(ru);
    }
    h->rounds = NULL;
    while (h->checks)
        check_end(h->checks, 0, "stopping");
    uv_close((uv_handle_t *)&h->wake, on_wake_closed);
}

void gw_health_notify(struct gw_health *h)
{
    uv_async_send(&h->wake);
}
