/* Traffic governance on the data path: passive outlier detection (consecutive failures eject an
 * endpoint for base * 2^k, capped, never more than a share of the cluster), the retry budget,
 * circuit breaker limits, local rate limits (token buckets by key in a bounded LRU table), and
 * the state behind them, which lives outside the immutable snapshot and is handed from one
 * snapshot to the next on reload. docs/gateway.md. */
#include "gateway/internal.h"

#include "base/log.h"

#include <math.h>

/* ---- token bucket ------------------------------------------------------------------------- */

int gw_tb_take(double *tokens, uint64_t *last_ms, double rate_per_ms, double burst, uint64_t now_ms,
               uint64_t *out_wait_ms)
{
    /* Loops' clocks are read at slightly different moments: time never runs backwards here. */
    if (now_ms > *last_ms) {
        *tokens += (double)(now_ms - *last_ms) * rate_per_ms;
        if (*tokens > burst)
            *tokens = burst;
        *last_ms = now_ms;
    }
    if (*tokens >= 1.0) {
        *tokens -= 1.0;
        return 1;
    }
    /* ceil, forgiving the rounding of the refill sums (1e-6 ms) */
    double wait = rate_per_ms > 0 ? ceil((1.0 - *tokens) / rate_per_ms - 1e-6) : 1e12;
    *out_wait_ms = wait < 1 ? 1 : (uint64_t)wait;
    return 0;
}

/* ---- rate limit table --------------------------------------------------------------------- */

#define RL_NONE UINT32_MAX

struct rl_entry {
    uint64_t hash;
    double tokens;
    uint64_t last_ms;
    uint32_t prev, next; /* LRU list, most recent first */
    uint32_t chain;      /* next in the hash bucket */
};

/* Entries [0, len) are in use (a full table reuses its least recently used one). States of
 * an entry: in its bucket chain and in the LRU list, always both. */
struct gw_rl_table {
    atomic_int refs;
    uv_mutex_t lock;
    double rate_per_ms, burst;
    uint32_t cap, len;
    uint32_t head, tail;
    uint32_t mask;
    uint32_t *buckets;  /* [mask + 1] */
    struct rl_entry *e; /* [cap] */
};

struct gw_rl_table *gw_rl_table_new(double rate_per_s, uint64_t burst, uint64_t max_keys)
{
    struct gw_rl_table *t = calloc(1, sizeof(*t));
    if (!t)
        return NULL;
    uint32_t nb = 16;
    while (nb < max_keys && nb < (1u << 30))
        nb <<= 1;
    t->buckets = malloc(nb * sizeof(*t->buckets));
    t->e = malloc((size_t)max_keys * sizeof(*t->e));
    if (!t->buckets || !t->e) {
        free(t->buckets);
        free(t->e);
        free(t);
        return NULL;
    }
    for (uint32_t i = 0; i < nb; i++)
        t->buckets[i] = RL_NONE;
    atomic_init(&t->refs, 1);
    uv_mutex_init(&t->lock);
    t->rate_per_ms = rate_per_s / 1000.0;
    t->burst = (double)burst;
    t->cap = (uint32_t)max_keys;
    t->mask = nb - 1;
    t->head = t->tail = RL_NONE;
    return t;
}

static struct gw_rl_table *rl_ref(struct gw_rl_table *t)
{
    atomic_fetch_add_explicit(&t->refs, 1, memory_order_relaxed);
    return t;
}

void gw_rl_table_unref(struct gw_rl_table *t)
{
    if (!t || atomic_fetch_sub_explicit(&t->refs, 1, memory_order_acq_rel) != 1)
        return;
    uv_mutex_destroy(&t->lock);
    free(t->buckets);
    free(t->e);
    free(t);
}

static void lru_unlink(struct gw_rl_table *t, uint32_t i)
{
    struct rl_entry *x = &t->e[i];
    if (x->prev != RL_NONE)
        t->e[x->prev].next = x->next;
    else
        t->head = x->next;
    if (x->next != RL_NONE)
        t->e[x->next].prev = x->prev;
    else
        t->tail = x->prev;
}

static void lru_front(struct gw_rl_table *t, uint32_t i)
{
    struct rl_entry *x = &t->e[i];
    x->prev = RL_NONE;
    x->next = t->head;
    if (t->head != RL_NONE)
        t->e[t->head].prev = i;
    t->head = i;
    if (t->tail == RL_NONE)
        t->tail = i;
}

static void chain_remove(struct gw_rl_table *t, uint32_t i)
{
    uint32_t *pp = &t->buckets[t->e[i].hash & t->mask];
    while (*pp != RL_NONE && *pp != i)
        pp = &t->e[*pp].chain;
    if (*pp == i)
        *pp = t->e[i].chain;
}

int gw_rl_take(struct gw_rl_table *t, uint64_t key_hash, uint64_t now_ms, uint64_t *out_wait_ms,
               int *out_evicted)
{
    *out_evicted = 0;
    uv_mutex_lock(&t->lock);
    uint32_t i = t->buckets[key_hash & t->mask];
    while (i != RL_NONE && t->e[i].hash != key_hash)
        i = t->e[i].chain;
    if (i != RL_NONE) {
        lru_unlink(t, i);
    } else {
        if (t->len < t->cap) {
            i = t->len++;
        } else {
            i = t->tail; /* the least recently used key goes */
            lru_unlink(t, i);
            chain_remove(t, i);
            *out_evicted = 1;
        }
        t->e[i] = (struct rl_entry){.hash = key_hash, .tokens = t->burst, .last_ms = now_ms};
        uint32_t *b = &t->buckets[key_hash & t->mask];
        t->e[i].chain = *b;
        *b = i;
    }
    lru_front(t, i);
    int ok = gw_tb_take(&t->e[i].tokens, &t->e[i].last_ms, t->rate_per_ms, t->burst, now_ms,
                        out_wait_ms);
    uv_mutex_unlock(&t->lock);
    return ok;
}

size_t gw_rl_len(struct gw_rl_table *t)
{
    uv_mutex_lock(&t->lock);
    size_t n = t->len;
    uv_mutex_unlock(&t->lock);
    return n;
}

/* ---- counters ---------------------------------------------------------------------------- */

void gw_gov_count(const struct gw_cluster *cl, int worker, enum gw_gov_counter c)
{
    if (cl && cl->stats)
        atomic_fetch_add_explicit(&cl->stats->w[worker].gov[c], 1, memory_order_relaxed);
}

static void route_count(const struct gw_route *rt, int worker, enum gw_gov_counter c)
{
    if (rt->stats)
        atomic_fetch_add_explicit(&rt->stats->w[worker].gov[c], 1, memory_order_relaxed);
}

/* ---- outlier detection -------------------------------------------------------------------- */

uint64_t gw_outlier_backoff_ms(uint64_t base_ms, uint64_t max_ms, uint32_t k)
{
    uint64_t d = base_ms;
    for (uint32_t i = 0; i < k && d < max_ms; i++)
        d = d > UINT64_MAX / 2 ? UINT64_MAX : d * 2;
    return d < max_ms ? d : max_ms;
}

size_t gw_outlier_cap(size_t num_eps, uint32_t percent)
{
    return num_eps * percent / 100;
}

int gw_ep_down(const struct gw_cluster *cl, uint32_t ep, uint64_t now_ms)
{
    struct gw_ep_state *st = cl->eps[ep].st;
    if (!st)
        return 0;
    unsigned f = atomic_load_explicit(&st->flags, memory_order_relaxed);
    if (f == 0)
        return 0;
    if (f & GW_EP_UNHEALTHY)
        return 1;
    if (now_ms < atomic_load_explicit(&st->ejected_until, memory_order_relaxed))
        return 1;
    /* The ejection is over: back in rotation (whoever sees it first clears the bit). */
    atomic_fetch_and_explicit(&st->flags, ~(unsigned)GW_EP_EJECTED, memory_order_relaxed);
    return 0;
}

static int ejected_now(const struct gw_ep_state *st, uint64_t now_ms)
{
    return (atomic_load_explicit(&st->flags, memory_order_relaxed) & GW_EP_EJECTED) &&
           now_ms < atomic_load_explicit(&st->ejected_until, memory_order_relaxed);
}

int gw_outlier_result(const struct gw_cluster *cl, uint32_t ep, int failed, uint64_t now_ms,
                      int worker)
{
    const struct gw_outlier_cfg *oc = &cl->gov.outlier;
    struct gw_ep_state *st = cl->eps[ep].st;
    if (!oc->enabled || !st)
        return 0;
    if (!failed) {
        if (atomic_load_explicit(&st->consec_errors, memory_order_relaxed))
            atomic_store_explicit(&st->consec_errors, 0, memory_order_relaxed);
        return 0;
    }
    unsigned n = atomic_fetch_add_explicit(&st->consec_errors, 1, memory_order_relaxed) + 1;
    if (n < oc->consecutive_errors || !cl->gov.st)
        return 0;
    struct gw_cl_state *cs = cl->gov.st;
    int ejected = 0;
    uv_mutex_lock(&cs->lock);
    if (!ejected_now(st, now_ms)) {
        size_t out = 0;
        for (size_t i = 0; i < cl->num_eps; i++)
            if (cl->eps[i].st && ejected_now(cl->eps[i].st, now_ms))
                out++;
        if (out >= gw_outlier_cap(cl->num_eps, oc->max_percent)) {
            gw_gov_count(cl, worker, GW_C_EJECTIONS_CAPPED);
        } else {
            /* Back for longer than the longest ejection: the backoff starts over. */
            uint64_t prev = atomic_load_explicit(&st->ejected_until, memory_order_relaxed);
            if (prev && now_ms > prev + oc->max_ms)
                atomic_store_explicit(&st->ejections, 0, memory_order_relaxed);
            unsigned k = atomic_fetch_add_explicit(&st->ejections, 1, memory_order_relaxed);
            uint64_t d = gw_outlier_backoff_ms(oc->base_ms, oc->max_ms, k);
            atomic_store_explicit(&st->ejected_until, now_ms + d, memory_order_relaxed);
            atomic_fetch_or_explicit(&st->flags, GW_EP_EJECTED, memory_order_relaxed);
            gw_gov_count(cl, worker, GW_C_EJECTIONS);
            ejected = 1;
            cn_info("gateway", "endpoint ejected",
                    "cluster=%.*s endpoint=%.*s consecutive_errors=%u ejection_ms=%llu",
                    (int)cl->name.len, cl->name.ptr, (int)cl->eps[ep].name.len,
                    cl->eps[ep].name.ptr, n, (unsigned long long)d);
        }
    }
    atomic_store_explicit(&st->consec_errors, 0, memory_order_relaxed);
    uv_mutex_unlock(&cs->lock);
    return ejected;
}

/* ---- retry budget ------------------------------------------------------------------------- */

int gw_budget_allow(struct gw_budget *b, uint32_t budget_percent, uint32_t min_per_s,
                    uint64_t now_ms)
{
    if ((uint64_t)(b->retrying + 1) * 100 <= (uint64_t)b->inflight * budget_percent)
        return 1;
    if (!min_per_s)
        return 0;
    uint64_t wait;
    return gw_tb_take(&b->floor_tokens, &b->floor_ms, (double)min_per_s / 1000.0, (double)min_per_s,
                      now_ms, &wait);
}

/* ---- circuit breaker ---------------------------------------------------------------------- */

const char *gw_breaker_conn_check(const struct gw_cluster *cl)
{
    const struct gw_breaker_cfg *b = &cl->gov.breaker;
    struct gw_cl_state *cs = cl->gov.st;
    if (!b->enabled || !cs)
        return NULL;
    if (b->max_connections &&
        atomic_load_explicit(&cs->connections, memory_order_relaxed) >= b->max_connections)
        return "max_connections";
    if (b->max_pending &&
        atomic_load_explicit(&cs->pending, memory_order_relaxed) >= b->max_pending)
        return "max_pending";
    return NULL;
}

void gw_breaker_reply(struct cn_http_req *creq, const struct gw_cluster *cl, const char *limit)
{
    const struct gw_breaker_cfg *b = &cl->gov.breaker;
    uint32_t v = strcmp(limit, "max_connections") == 0 ? b->max_connections
                 : strcmp(limit, "max_pending") == 0   ? b->max_pending
                                                       : b->max_requests;
    char msg[256];
    int n = snprintf(msg, sizeof(msg), "circuit breaker open: %s %u reached (cluster %.*s)\n",
                     limit, v, (int)cl->name.len, cl->name.ptr);
    struct cn_http_header h = {CN_SLICE_LIT("X-Cairn-Circuit-Breaker"), cn_slice_of(limit)};
    cn_http_reply(creq, 503, "text/plain; charset=utf-8", msg,
                  n > 0 ? CN_MIN((size_t)n, sizeof(msg) - 1) : 0, &h, 1);
}

/* ---- rate limit filter -------------------------------------------------------------------- */

/* The bucket key of a request. Requests without the key (no such header, no verified claim)
 * share one bucket: leaving the header out must not escape the limit. */
static uint64_t rl_key_hash(const struct gw_ratelimit *rl, struct cn_http_req *creq,
                            const struct gw_ext_state *ext)
{
    switch (rl->key) {
    case GW_RL_CLIENT_IP: {
        const char *ip = cn_http_req_peer_ip(creq);
        return gw_hash(ip, strlen(ip));
    }
    case GW_RL_HEADER:
        for (size_t i = 0; i < creq->num_headers; i++)
            if (cn_slice_case_eq(creq->headers[i].name, rl->key_name)) {
                /* "h:" keeps a header value apart from the empty key */
                uint64_t h = gw_hash(creq->headers[i].value.ptr, creq->headers[i].value.len);
                return h ^ 0x9E3779B97F4A7C15ULL;
            }
        return 0;
    case GW_RL_JWT_CLAIM: {
        /* The claim verified by the route's JWT filter (request filters run first). */
        char buf[64];
        struct cn_slice v;
        if (!ext || gw_jwt_claim(ext->claims, rl->key_name, buf, sizeof(buf), &v) != 0)
            return 0;
        return gw_hash(v.ptr, v.len) ^ 0x9E3779B97F4A7C15ULL;
    }
    }
    return 0;
}

int gw_ratelimit_check(const struct gw_route *rt, struct cn_http_req *creq,
                       const struct gw_ext_state *ext, int worker, uint64_t now_ms)
{
    for (size_t i = 0; i < rt->num_filters; i++) {
        const struct gw_filter *f = &rt->filters[i];
        if (f->kind != GW_F_RATE_LIMIT || !f->u.ratelimit.table)
            continue;
        const struct gw_ratelimit *rl = &f->u.ratelimit;
        uint64_t wait_ms = 0;
        int evicted = 0;
        int ok = gw_rl_take(rl->table, rl_key_hash(rl, creq, ext), now_ms, &wait_ms, &evicted);
        if (evicted)
            route_count(rt, worker, GW_C_RL_EVICTIONS);
        if (ok)
            continue;
        route_count(rt, worker, GW_C_RATE_LIMITED);
        uint64_t secs = (wait_ms + 999) / 1000;
        char ra[24], body[512];
        size_t ral = cn_u64_to_dec(ra, secs);
        int n =
            snprintf(body, sizeof(body),
                     "{\"error\":\"rate limited\",\"route\":\"%.*s\",\"limit\":{\"rate\":\"%.*s\","
                     "\"burst\":%llu,\"key\":\"%.*s\"},\"retry_after\":%llu}\n",
                     (int)rt->name.len, rt->name.ptr, (int)rl->rate_text.len, rl->rate_text.ptr,
                     (unsigned long long)rl->burst, (int)rl->key_text.len, rl->key_text.ptr,
                     (unsigned long long)secs);
        struct cn_http_header h[1 + GW_EXT_MAX_REPLY_HEADERS];
        h[0] = (struct cn_http_header){CN_SLICE_LIT("Retry-After"), {ra, ral}};
        size_t nh = 1 + (ext ? gw_ext_reply_headers(ext, h + 1) : 0);
        cn_http_reply(creq, 429, "application/json", body,
                      n > 0 ? CN_MIN((size_t)n, sizeof(body) - 1) : 0, h, nh);
        gw_stats_record(rt->stats, worker, 429, 0);
        return 1;
    }
    return 0;
}

/* ---- state across snapshots --------------------------------------------------------------- */

struct gw_cl_state *gw_cl_state_ref(struct gw_cl_state *st)
{
    atomic_fetch_add_explicit(&st->refs, 1, memory_order_relaxed);
    return st;
}

void gw_cl_state_unref(struct gw_cl_state *st)
{
    if (!st || atomic_fetch_sub_explicit(&st->refs, 1, memory_order_acq_rel) != 1)
        return;
    uv_mutex_destroy(&st->lock);
    free(st);
}

static void ep_state_unref(struct gw_ep_state *st)
{
    if (st && atomic_fetch_sub_explicit(&st->refs, 1, memory_order_acq_rel) == 1)
        free(st);
}

int gw_gov_prepare(struct cn_gw_snapshot *s)
{
    for (size_t c = 0; c < s->num_clusters; c++) {
        struct gw_cluster *cl = &s->clusters[c];
        cl->gov.st = calloc(1, sizeof(*cl->gov.st));
        if (!cl->gov.st)
            return CN_ENOMEM;
        atomic_init(&cl->gov.st->refs, 1);
        uv_mutex_init(&cl->gov.st->lock);
        for (size_t e = 0; e < cl->num_eps; e++) {
            cl->eps[e].st = calloc(1, sizeof(*cl->eps[e].st));
            if (!cl->eps[e].st)
                return CN_ENOMEM;
            atomic_init(&cl->eps[e].st->refs, 1);
        }
    }
    for (size_t r = 0; r < s->num_routes; r++) {
        struct gw_route *rt = &s->routes[r];
        for (size_t i = 0; i < rt->num_filters; i++) {
            struct gw_ratelimit *rl = &rt->filters[i].u.ratelimit;
            if (rt->filters[i].kind != GW_F_RATE_LIMIT)
                continue;
            rl->table = gw_rl_table_new(rl->rate_per_s, rl->burst, rl->max_keys);
            if (!rl->table)
                return CN_ENOMEM;
        }
    }
    return 0;
}

void gw_gov_release(struct cn_gw_snapshot *s)
{
    for (size_t c = 0; c < s->num_clusters; c++) {
        struct gw_cluster *cl = &s->clusters[c];
        gw_cl_state_unref(cl->gov.st);
        cl->gov.st = NULL;
        for (size_t e = 0; e < cl->num_eps; e++) {
            ep_state_unref(cl->eps[e].st);
            cl->eps[e].st = NULL;
        }
    }
    for (size_t r = 0; r < s->num_routes; r++) {
        struct gw_route *rt = &s->routes[r];
        for (size_t i = 0; i < rt->num_filters; i++)
            if (rt->filters[i].kind == GW_F_RATE_LIMIT) {
                gw_rl_table_unref(rt->filters[i].u.ratelimit.table);
                rt->filters[i].u.ratelimit.table = NULL;
            }
    }
}

static const struct gw_ratelimit *old_ratelimit(const struct cn_gw_snapshot *old,
                                                const struct gw_route *rt,
                                                const struct gw_ratelimit *rl)
{
    for (size_t r = 0; r < old->num_routes; r++) {
        const struct gw_route *o = &old->routes[r];
        if (!cn_slice_eq(o->name, rt->name))
            continue;
        for (size_t i = 0; i < o->num_filters; i++) {
            const struct gw_ratelimit *x = &o->filters[i].u.ratelimit;
            if (o->filters[i].kind == GW_F_RATE_LIMIT && x->ordinal == rl->ordinal &&
                x->rate_per_s == rl->rate_per_s && x->burst == rl->burst &&
                x->max_keys == rl->max_keys && x->key == rl->key &&
                cn_slice_case_eq(x->key_name, rl->key_name) && x->table)
                return x;
        }
    }
    return NULL;
}

void gw_gov_inherit(struct cn_gw_snapshot *s, const struct cn_gw_snapshot *old)
{
    for (size_t c = 0; old && c < s->num_clusters; c++) {
        struct gw_cluster *cl = &s->clusters[c];
        const struct gw_cluster *oc = NULL;
        for (size_t k = 0; k < old->num_clusters && !oc; k++)
            if (cn_slice_eq(old->clusters[k].name, cl->name))
                oc = &old->clusters[k];
        if (!oc)
            continue;
        if (oc->gov.st && cl->gov.st) {
            gw_cl_state_unref(cl->gov.st);
            cl->gov.st = gw_cl_state_ref(oc->gov.st);
        }
        for (size_t e = 0; e < cl->num_eps; e++)
            for (size_t k = 0; k < oc->num_eps; k++)
                if (oc->eps[k].st && cn_slice_eq(oc->eps[k].name, cl->eps[e].name)) {
                    ep_state_unref(cl->eps[e].st);
                    atomic_fetch_add_explicit(&oc->eps[k].st->refs, 1, memory_order_relaxed);
                    cl->eps[e].st = oc->eps[k].st;
                    break;
                }
    }
    for (size_t c = 0; c < s->num_clusters; c++) {
        struct gw_cluster *cl = &s->clusters[c];
        for (size_t e = 0; e < cl->num_eps; e++) {
            struct gw_ep_state *st = cl->eps[e].st;
            if (!st)
                continue;
            /* Turned off: what they decided no longer holds. */
            if (!cl->gov.health.enabled) {
                atomic_fetch_and_explicit(&st->flags, ~(unsigned)GW_EP_UNHEALTHY,
                                          memory_order_relaxed);
                st->hc_ok = st->hc_fail = 0;
            }
            if (!cl->gov.outlier.enabled)
                atomic_fetch_and_explicit(&st->flags, ~(unsigned)GW_EP_EJECTED,
                                          memory_order_relaxed);
        }
    }
    for (size_t r = 0; old && r < s->num_routes; r++) {
        struct gw_route *rt = &s->routes[r];
        for (size_t i = 0; i < rt->num_filters; i++) {
            struct gw_ratelimit *rl = &rt->filters[i].u.ratelimit;
            if (rt->filters[i].kind != GW_F_RATE_LIMIT)
                continue;
            const struct gw_ratelimit *o = old_ratelimit(old, rt, rl);
            if (o) {
                gw_rl_table_unref(rl->table);
                rl->table = rl_ref(o->table);
            }
        }
    }
}

/* ---- /metrics ----------------------------------------------------------------------------- */

#define LD(x) ((unsigned long long)atomic_load_explicit(&(x), memory_order_relaxed))

static unsigned long long sum(const struct gw_stats *s, enum gw_gov_counter c)
{
    unsigned long long n = 0;
    for (int i = 0; i < s->nworkers; i++)
        n += LD(s->w[i].gov[c]);
    return n;
}

static void family(struct cn_buf *b, struct cn_gw *gw, int kind, const char *name, const char *help,
                   const char *label, const enum gw_gov_counter *cs, const char *const *values,
                   size_t n)
{
    cn_buf_printf(b, "# HELP %s %s\n# TYPE %s counter\n", name, help, name);
    for (struct gw_stats *s = gw->stats; s; s = s->next) {
        if (s->kind != kind)
            continue;
        for (size_t i = 0; i < n; i++) {
            if (label)
                cn_buf_printf(b, "%s{%s=\"%s\",%s=\"%s\"} %llu\n", name, kind ? "cluster" : "route",
                              s->name, label, values[i], sum(s, cs[i]));
            else
                cn_buf_printf(b, "%s{%s=\"%s\"} %llu\n", name, kind ? "cluster" : "route", s->name,
                              sum(s, cs[i]));
        }
    }
}

void gw_gov_metrics_write(struct cn_buf *b, struct cn_gw *gw)
{
    static const enum gw_gov_counter ej[] = {GW_C_EJECTIONS, GW_C_EJECTIONS_CAPPED};
    static const char *const ejv[] = {"ejected", "capped"};
    family(b, gw, 1, "cairn_gateway_outlier_ejections_total",
           "Outlier ejections (capped: refused by max_ejected_percent).", "result", ej, ejv, 2);
    static const enum gw_gov_counter rt[] = {GW_C_RETRIES, GW_C_RETRY_BUDGET};
    static const char *const rtv[] = {"retried", "budget_exhausted"};
    family(b, gw, 1, "cairn_gateway_retries_total",
           "Retries made, and refused by the retry budget.", "result", rt, rtv, 2);
    static const enum gw_gov_counter cb[] = {GW_C_CB_CONNECTIONS, GW_C_CB_PENDING,
                                             GW_C_CB_REQUESTS};
    static const char *const cbv[] = {"max_connections", "max_pending", "max_requests"};
    family(b, gw, 1, "cairn_gateway_circuit_breaker_rejections_total",
           "Requests answered 503 by an open circuit breaker.", "limit", cb, cbv, 3);
    static const enum gw_gov_counter hc[] = {GW_C_HC_OK, GW_C_HC_FAIL};
    static const char *const hcv[] = {"ok", "failed"};
    family(b, gw, 1, "cairn_gateway_health_checks_total", "Active health checks by result.",
           "result", hc, hcv, 2);
    static const enum gw_gov_counter rl[] = {GW_C_RATE_LIMITED};
    family(b, gw, 0, "cairn_gateway_rate_limited_total", "Requests answered 429.", NULL, rl, NULL,
           1);
    static const enum gw_gov_counter rle[] = {GW_C_RL_EVICTIONS};
    family(b, gw, 0, "cairn_gateway_rate_limit_evictions_total",
           "Keys evicted from a full rate limit table (max_keys).", NULL, rle, NULL, 1);
    struct cn_gw_snapshot *s = gw->current;
    if (!s)
        return;
    uint64_t now = uv_hrtime() / 1000000;
    cn_buf_puts(b, "# HELP cairn_gateway_endpoint_healthy 0 while active health checks hold "
                   "the endpoint unhealthy.\n# TYPE cairn_gateway_endpoint_healthy gauge\n");
    for (size_t c = 0; c < s->num_clusters; c++) {
        const struct gw_cluster *cl = &s->clusters[c];
        for (size_t e = 0; e < cl->num_eps; e++) {
            unsigned f = cl->eps[e].st
                             ? atomic_load_explicit(&cl->eps[e].st->flags, memory_order_relaxed)
                             : 0;
            cn_buf_printf(b,
                          "cairn_gateway_endpoint_healthy{cluster=\"%.*s\",endpoint=\"%.*s\"} %d\n",
                          (int)cl->name.len, cl->name.ptr, (int)cl->eps[e].name.len,
                          cl->eps[e].name.ptr, (f & GW_EP_UNHEALTHY) ? 0 : 1);
        }
    }
    cn_buf_puts(b, "# HELP cairn_gateway_endpoint_ejected 1 while outlier detection ejects the "
                   "endpoint.\n# TYPE cairn_gateway_endpoint_ejected gauge\n");
    for (size_t c = 0; c < s->num_clusters; c++) {
        const struct gw_cluster *cl = &s->clusters[c];
        for (size_t e = 0; e < cl->num_eps; e++)
            cn_buf_printf(
                b, "cairn_gateway_endpoint_ejected{cluster=\"%.*s\",endpoint=\"%.*s\"} %d\n",
                (int)cl->name.len, cl->name.ptr, (int)cl->eps[e].name.len, cl->eps[e].name.ptr,
                cl->eps[e].st && ejected_now(cl->eps[e].st, now) ? 1 : 0);
    }
}
