/* Expiry tick and persistent-instance health checks on the control-plane loop. */
#include "registry/health.h"

#include "base/log.h"

#include <time.h>

struct check;

struct cn_reg_ctl {
    struct cn_reg *reg;
    struct cn_reg_ctl_opts opts;
    uv_loop_t *loop;
    uv_timer_t tick, round;
    int stopping, open_handles;
    /* The round in progress: the list, the next to start, how many are in flight. */
    struct cn_reg_check *list;
    long num, next, inflight;
    struct check *checks; /* in flight, to cancel on stop */
};

/* One check: a TCP connection, a timer, and for HTTP the request and the answer's start. */
struct check {
    struct check *next, *prev;
    struct cn_reg_ctl *c;
    long idx;
    uv_tcp_t tcp;
    uv_connect_t conn;
    uv_write_t wr;
    uv_timer_t timer;
    int handles, done;
    char req[600];
    char resp[16];
    size_t resp_len;
};

static uint64_t wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static void start_more(struct cn_reg_ctl *c);

static void ctl_maybe_free(struct cn_reg_ctl *c)
{
    if (c->stopping && c->open_handles == 0 && c->inflight == 0) {
        cn_reg_checks_free(c->list, c->num);
        free(c);
    }
}

static void on_ctl_closed(uv_handle_t *h)
{
    struct cn_reg_ctl *c = h->data;
    c->open_handles--;
    ctl_maybe_free(c);
}

static void on_check_closed(uv_handle_t *h)
{
    struct check *k = h->data;
    if (--k->handles)
        return;
    struct cn_reg_ctl *c = k->c;
    free(k);
    c->inflight--;
    if (c->stopping)
        ctl_maybe_free(c);
    else
        start_more(c);
}

/* Records the result once and closes the check's handles. */
static void finish(struct check *k, int healthy)
{
    if (k->done)
        return;
    k->done = 1;
    struct cn_reg_ctl *c = k->c;
    if (!c->stopping)
        cn_reg_set_health(c->reg, &c->list[k->idx], healthy, wall_ms());
    if (k->prev)
        k->prev->next = k->next;
    else
        c->checks = k->next;
    if (k->next)
        k->next->prev = k->prev;
    uv_close((uv_handle_t *)&k->tcp, on_check_closed);
    uv_close((uv_handle_t *)&k->timer, on_check_closed);
}

static void on_timeout(uv_timer_t *t)
{
    finish(t->data, 0);
}

static void on_alloc(uv_handle_t *h, size_t size, uv_buf_t *buf)
{
    (void)size;
    struct check *k = h->data;
    buf->base = k->resp + k->resp_len;
    buf->len = sizeof(k->resp) - k->resp_len;
}

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
    (void)buf;
    struct check *k = s->data;
    if (n < 0) {
        finish(k, 0);
        return;
    }
    k->resp_len += (size_t)n;
    if (k->resp_len >= 12 || k->resp_len == sizeof(k->resp)) {
        /* "HTTP/1.x 2xx" or 3xx */
        int ok = k->resp_len >= 12 && memcmp(k->resp, "HTTP/1.", 7) == 0 &&
                 (k->resp[9] == '2' || k->resp[9] == '3');
        finish(k, ok);
    }
}

static void on_written(uv_write_t *w, int status)
{
    struct check *k = w->data;
    if (status < 0)
        finish(k, 0);
    else if (!k->done && uv_read_start((uv_stream_t *)&k->tcp, on_alloc, on_read) != 0)
        finish(k, 0);
}

static void on_connect(uv_connect_t *r, int status)
{
    struct check *k = r->data;
    if (k->done)
        return;
    if (status < 0) {
        finish(k, 0);
        return;
    }
    const char *path = k->c->list[k->idx].health_path;
    if (!path[0]) {
        finish(k, 1);
        return;
    }
    int n = snprintf(k->req, sizeof(k->req),
                     "GET %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: cairn-registry\r\nConnection: "
                     "close\r\n\r\n",
                     path, k->c->list[k->idx].ip);
    if (n <= 0 || n >= (int)sizeof(k->req)) {
        finish(k, 0);
        return;
    }
    uv_buf_t b = uv_buf_init(k->req, (unsigned)n);
    k->wr.data = k;
    if (uv_write(&k->wr, (uv_stream_t *)&k->tcp, &b, 1, on_written) != 0)
        finish(k, 0);
}

static void start_one(struct cn_reg_ctl *c, long idx)
{
    const struct cn_reg_check *ck = &c->list[idx];
    struct sockaddr_storage sa;
    if (uv_ip4_addr(ck->ip, ck->port, (struct sockaddr_in *)&sa) != 0 &&
        uv_ip6_addr(ck->ip, ck->port, (struct sockaddr_in6 *)&sa) != 0) {
        /* Not an address literal: no resolver on this path; report unhealthy. */
        cn_reg_set_health(c->reg, ck, 0, wall_ms());
        return;
    }
    struct check *k = calloc(1, sizeof(*k));
    if (!k)
        return;
    k->c = c;
    k->idx = idx;
    uv_tcp_init(c->loop, &k->tcp);
    uv_timer_init(c->loop, &k->timer);
    k->tcp.data = k->timer.data = k->conn.data = k;
    k->handles = 2;
    c->inflight++;
    k->next = c->checks;
    if (c->checks)
        c->checks->prev = k;
    c->checks = k;
    uv_timer_start(&k->timer, on_timeout, c->opts.check_timeout_ms, 0);
    if (uv_tcp_connect(&k->conn, &k->tcp, (struct sockaddr *)&sa, on_connect) != 0)
        finish(k, 0);
}

static void start_more(struct cn_reg_ctl *c)
{
    while (!c->stopping && c->next < c->num && (uint64_t)c->inflight < c->opts.max_concurrent)
        start_one(c, c->next++);
}

static void on_round(uv_timer_t *t)
{
    struct cn_reg_ctl *c = t->data;
    if (c->inflight || c->next < c->num)
        return; /* the last round has not finished: skip this one */
    cn_reg_checks_free(c->list, c->num);
    c->list = NULL;
    c->num = c->next = 0;
    struct cn_reg_check *l;
    long n = cn_reg_checks(c->reg, &l);
    if (n <= 0)
        return;
    c->list = l;
    c->num = n;
    start_more(c);
}

static void on_tick(uv_timer_t *t)
{
    struct cn_reg_ctl *c = t->data;
    cn_reg_tick(c->reg, wall_ms());
}

struct cn_reg_ctl *cn_reg_ctl_start(struct cn_reg *reg, uv_loop_t *loop,
                                    const struct cn_reg_ctl_opts *opts)
{
    struct cn_reg_ctl *c = calloc(1, sizeof(*c));
    if (!c)
        return NULL;
    c->reg = reg;
    c->opts = *opts;
    c->loop = loop;
    uv_timer_init(loop, &c->tick);
    uv_timer_init(loop, &c->round);
    c->tick.data = c->round.data = c;
    c->open_handles = 2;
    uv_timer_start(&c->tick, on_tick, opts->tick_ms, opts->tick_ms);
    uv_timer_start(&c->round, on_round, opts->check_interval_ms, opts->check_interval_ms);
    return c;
}

void cn_reg_ctl_stop(struct cn_reg_ctl *c)
{
    if (!c || c->stopping)
        return;
    c->stopping = 1;
    while (c->checks)
        finish(c->checks, 0);
    uv_close((uv_handle_t *)&c->tick, on_ctl_closed);
    uv_close((uv_handle_t *)&c->round, on_ctl_closed);
}
