/* The gateway's process root: the current snapshot and its generation, statistics kept by
 * route and cluster name across reloads, each worker's view of the snapshot, /metrics. */
#include "gateway/internal.h"

#include "base/log.h"
#include "gateway/discovery.h"
#include "gateway/tls.h"

struct gw_disc *gw_disc_new(struct cn_gw *gw);

void gw_worker_close_all(struct gw_worker *w);
void gw_worker_free_all(struct gw_worker *w);

struct cn_gw *cn_gw_new(int nworkers)
{
    struct cn_gw *gw = calloc(1, sizeof(*gw));
    if (!gw)
        return NULL;
    gw->nworkers = nworkers;
    gw->workers = calloc((size_t)nworkers, sizeof(*gw->workers));
    if (!gw->workers) {
        free(gw);
        return NULL;
    }
    uv_mutex_init(&gw->lock);
    uv_mutex_init(&gw->publish_lock);
    gw->disc = gw_disc_new(gw);
    if (!gw->disc) {
        cn_gw_free(gw);
        return NULL;
    }
    return gw;
}

void cn_gw_free(struct cn_gw *gw)
{
    if (!gw)
        return;
    cn_gw_discovery_stop(gw);
    gw_tel_free(gw);
    cn_gw_snapshot_unref(gw->current);
    cn_gw_snapshot_unref(gw->tmpl);
    gw_tls_root_free(gw);
    gw_disc_free(gw->disc);
    uv_mutex_destroy(&gw->publish_lock);
    struct gw_stats *s = gw->stats, *next;
    for (; s; s = next) {
        next = s->next;
        free(s->name);
        free(s);
    }
    uv_mutex_destroy(&gw->lock);
    for (int i = 0; i < gw->nworkers; i++)
        gw_worker_free_all(&gw->workers[i]);
    free(gw->workers);
    free(gw);
}

/* Under gw->lock. */
static struct gw_stats *stats_for(struct cn_gw *gw, int kind, struct cn_slice name)
{
    for (struct gw_stats *s = gw->stats; s; s = s->next)
        if (s->kind == kind && cn_slice_eq(cn_slice_of(s->name), name))
            return s;
    struct gw_stats *s = calloc(1, sizeof(*s) + (size_t)gw->nworkers * sizeof(s->w[0]));
    if (!s)
        return NULL;
    s->name = strndup(name.ptr, name.len);
    if (!s->name) {
        free(s);
        return NULL;
    }
    s->kind = kind;
    s->nworkers = gw->nworkers;
    /* Appended in order: /metrics lists routes and clusters as first configured. */
    struct gw_stats **pp = &gw->stats;
    while (*pp)
        pp = &(*pp)->next;
    *pp = s;
    return s;
}

/* Under publish_lock: makes snap current; tmpl (NULL: unchanged) becomes the template. */
static uint64_t swap(struct cn_gw *gw, struct cn_gw_snapshot *snap, struct cn_gw_snapshot *tmpl,
                     int reload, uint64_t since_ns)
{
    uv_mutex_lock(&gw->lock);
    struct cn_gw_snapshot *old_tmpl = NULL;
    if (tmpl) {
        old_tmpl = gw->tmpl;
        gw->tmpl = cn_gw_snapshot_ref(tmpl);
    }
    for (size_t i = 0; i < snap->num_routes; i++)
        snap->routes[i].stats = stats_for(gw, 0, snap->routes[i].name);
    for (size_t i = 0; i < snap->num_clusters; i++)
        snap->clusters[i].stats = stats_for(gw, 1, snap->clusters[i].name);
    gw_tel_configure(gw, snap);
    struct cn_gw_snapshot *old = gw->current;
    if (old != snap)
        gw_gov_inherit(snap, old); /* health, ejections, breaker counts, rate limit buckets */
    gw->current = cn_gw_snapshot_ref(snap);
    snap->generation = ++gw->generation;
    /* A discovered change counts from when the registry changed, so the workers' adopt lag
     * covers reading and deriving it too. */
    uint64_t now = uv_hrtime();
    snap->published_ns = since_ns && since_ns < now ? since_ns : now;
    uint64_t gen = gw->generation;
    if (old && reload)
        atomic_fetch_add_explicit(&gw->reloads, 1, memory_order_relaxed);
    if (gw->health)
        gw_health_notify(gw->health);
    uv_mutex_unlock(&gw->lock);
    cn_gw_snapshot_unref(old);
    cn_gw_snapshot_unref(old_tmpl);
    return gen;
}

uint64_t cn_gw_publish(struct cn_gw *gw, struct cn_gw_snapshot *snap)
{
    uv_mutex_lock(&gw->publish_lock);
    /* snap is the configuration; what runs is snap with the discovered endpoints applied
     * (snap itself when no cluster discovers). Out of memory: snap as it is. */
    struct cn_gw_snapshot *tmpl = snap->base ? snap->base : snap;
    struct cn_gw_snapshot *eff = gw_disc_apply(gw, tmpl);
    if (!eff)
        cn_error("gateway", "out of memory applying discovered endpoints", "generation=%llu",
                 (unsigned long long)gw->generation + 1);
    uint64_t gen = swap(gw, eff ? eff : snap, tmpl, 1, 0);
    cn_gw_snapshot_unref(eff);
    uv_mutex_unlock(&gw->publish_lock);
    return gen;
}

/* A discovered set changed (the discovery thread): the template again with the sets. */
void gw_republish(struct cn_gw *gw, uint64_t since_ns);
void gw_republish(struct cn_gw *gw, uint64_t since_ns)
{
    uv_mutex_lock(&gw->publish_lock);
    uv_mutex_lock(&gw->lock);
    struct cn_gw_snapshot *tmpl = gw->tmpl ? cn_gw_snapshot_ref(gw->tmpl) : NULL;
    uv_mutex_unlock(&gw->lock);
    struct cn_gw_snapshot *eff = tmpl ? gw_disc_apply(gw, tmpl) : NULL;
    if (eff)
        swap(gw, eff, NULL, 0, since_ns);
    else if (tmpl)
        cn_error("gateway", "out of memory applying discovered endpoints, the old ones stay", NULL);
    cn_gw_snapshot_unref(eff);
    cn_gw_snapshot_unref(tmpl);
    uv_mutex_unlock(&gw->publish_lock);
}

void cn_gw_set_store(struct cn_gw *gw, struct cn_store *store)
{
    gw->store = store;
}

void cn_gw_reload_failed(struct cn_gw *gw)
{
    atomic_fetch_add_explicit(&gw->reload_failures, 1, memory_order_relaxed);
}

/* ---- views --------------------------------------------------------------------------------- */

void gw_view_unref(struct gw_view *v)
{
    if (--v->refs > 0)
        return;
    struct cn_gw_snapshot *s = v->snap;
    for (size_t i = 0; i < s->num_clusters; i++) {
        free(v->lb[i].current);
        free(v->lb[i].active);
    }
    for (size_t i = 0; i < s->num_routes; i++)
        free(v->route_current[i]);
    free(v->lb);
    free(v->route_current);
    free(v->pools);
    free(v);
    cn_gw_snapshot_unref(s);
}

static struct gw_pool *pool_for(struct gw_worker *w, const struct sockaddr_storage *addr)
{
    size_t len =
        addr->ss_family == AF_INET6 ? sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in);
    for (struct gw_pool *p = w->pools; p; p = p->next)
        if (p->addr.ss_family == addr->ss_family && memcmp(&p->addr, addr, len) == 0)
            return p;
    struct gw_pool *p = calloc(1, sizeof(*p));
    if (!p)
        return NULL;
    p->addr = *addr;
    p->next = w->pools;
    w->pools = p;
    return p;
}

static struct gw_view *view_new(struct gw_worker *w, struct cn_gw_snapshot *s)
{
    struct gw_view *v = calloc(1, sizeof(*v));
    if (!v)
        return NULL;
    v->snap = s;
    v->refs = 1;
    v->lb = calloc(s->num_clusters ? s->num_clusters : 1, sizeof(*v->lb));
    v->route_current = calloc(s->num_routes ? s->num_routes : 1, sizeof(*v->route_current));
    v->pools = calloc(s->num_eps ? s->num_eps : 1, sizeof(*v->pools));
    int ok = v->lb && v->route_current && v->pools;
    for (size_t i = 0; ok && i < s->num_clusters; i++) {
        const struct gw_cluster *cl = &s->clusters[i];
        /* A discovering cluster may have no endpoint (calloc(0) may give NULL). */
        v->lb[i].current = calloc(cl->num_eps ? cl->num_eps : 1, sizeof(int64_t));
        v->lb[i].active = calloc(cl->num_eps ? cl->num_eps : 1, sizeof(uint32_t));
        /* Workers start round robin at different places so N workers do not all hit the
         * first endpoint together. */
        v->lb[i].rr = (uint64_t)w->id;
        ok = v->lb[i].current && v->lb[i].active;
        for (size_t e = 0; ok && e < cl->num_eps; e++)
            ok = (v->pools[cl->eps[e].global] = pool_for(w, &cl->eps[e].addr)) != NULL;
    }
    for (size_t i = 0; ok && i < s->num_routes; i++)
        ok = (v->route_current[i] = calloc(s->routes[i].num_backends + 1, sizeof(int64_t))) != NULL;
    if (!ok) {
        cn_gw_snapshot_ref(s);
        gw_view_unref(v);
        return NULL;
    }
    return v;
}

/* ---- workers -------------------------------------------------------------------------------- */

int cn_gw_worker_init(struct cn_gw *gw, int id, uv_loop_t *loop)
{
    struct gw_worker *w = &gw->workers[id];
    memset(w, 0, sizeof(*w));
    w->gw = gw;
    w->id = id;
    w->loop = loop;
    w->rng = 0x9E3779B97F4A7C15ULL ^ ((uint64_t)(id + 1) * 0xBF58476D1CE4E5B9ULL) ^ uv_hrtime();
    if (!w->rng)
        w->rng = 1;
    cn_buf_init(&w->scratch, SIZE_MAX / 2);
    cn_gw_worker_adopt(gw, id);
    return w->view && gw_tel_worker_init(w) == 0 ? 0 : CN_ENOMEM;
}

void cn_gw_worker_adopt(struct cn_gw *gw, int id)
{
    struct gw_worker *w = &gw->workers[id];
    uv_mutex_lock(&gw->lock);
    struct cn_gw_snapshot *s = gw->current ? cn_gw_snapshot_ref(gw->current) : NULL;
    uv_mutex_unlock(&gw->lock);
    if (!s)
        return;
    if (w->view && w->view->snap == s) {
        cn_gw_snapshot_unref(s);
        return;
    }
    struct gw_view *v = view_new(w, s);
    if (!v) {
        cn_error("gateway", "out of memory adopting a configuration, the old one stays",
                 "worker=%d generation=%llu", id, (unsigned long long)s->generation);
        cn_gw_snapshot_unref(s);
        return;
    }
    struct gw_view *old = w->view;
    w->view = v;
    atomic_store_explicit(&w->generation, s->generation, memory_order_relaxed);
    uint64_t lag = uv_hrtime() - s->published_ns;
    atomic_store_explicit(&w->adopt_lag_last_ns, lag, memory_order_relaxed);
    if (old && lag > atomic_load_explicit(&w->adopt_lag_max_ns, memory_order_relaxed))
        atomic_store_explicit(&w->adopt_lag_max_ns, lag, memory_order_relaxed);
    if (old)
        gw_view_unref(old); /* in-flight requests keep it until they finish */
}

const struct cn_http_limits *cn_gw_worker_limits(struct cn_gw *gw, int id)
{
    struct gw_worker *w = &gw->workers[id];
    return w->view ? &w->view->snap->limits.http : NULL;
}

uint64_t cn_gw_worker_generation(struct cn_gw *gw, int id)
{
    return atomic_load_explicit(&gw->workers[id].generation, memory_order_relaxed);
}

void cn_gw_worker_release(struct cn_gw *gw, int id)
{
    struct gw_worker *w = &gw->workers[id];
    gw_tel_worker_release(w);
    gw_worker_close_all(w);
    if (w->view)
        gw_view_unref(w->view);
    w->view = NULL;
}

/* ---- metrics ------------------------------------------------------------------------------- */

#define LD(x) ((unsigned long long)atomic_load_explicit(&(x), memory_order_relaxed))

static void write_family(struct cn_buf *b, struct cn_gw *gw, int kind)
{
    const char *what = kind ? "cluster" : "route";
    static const char *const cls[6] = {"aborted", "1xx", "2xx", "3xx", "4xx", "5xx"};
    cn_buf_printf(b,
                  "# HELP cairn_gateway_%s_requests_total Requests by %s and status class "
                  "(aborted: the client went away first).\n"
                  "# TYPE cairn_gateway_%s_requests_total counter\n",
                  what, what, what);
    for (struct gw_stats *s = gw->stats; s; s = s->next) {
        if (s->kind != kind)
            continue;
        for (int c = 0; c < 6; c++) {
            unsigned long long n = 0;
            for (int i = 0; i < s->nworkers; i++)
                n += LD(s->w[i].by_class[c]);
            cn_buf_printf(b, "cairn_gateway_%s_requests_total{%s=\"%s\",code=\"%s\"} %llu\n", what,
                          what, s->name, cls[c], n);
        }
    }
    cn_buf_printf(b,
                  "# HELP cairn_gateway_%s_request_duration_seconds Time from the request head "
                  "to the end of the reply.\n"
                  "# TYPE cairn_gateway_%s_request_duration_seconds histogram\n",
                  what, what);
    for (struct gw_stats *s = gw->stats; s; s = s->next) {
        if (s->kind != kind)
            continue;
        unsigned long long cum = 0, sum_us = 0;
        for (int k = 0; k <= GW_LAT_BUCKETS; k++) {
            for (int i = 0; i < s->nworkers; i++)
                cum += LD(s->w[i].lat[k]);
            if (k < GW_LAT_BUCKETS)
                cn_buf_printf(
                    b,
                    "cairn_gateway_%s_request_duration_seconds_bucket{%s=\"%s\",le=\"%g\"} "
                    "%llu\n",
                    what, what, s->name, cn_http_lat_bounds[k], cum);
            else
                cn_buf_printf(
                    b,
                    "cairn_gateway_%s_request_duration_seconds_bucket{%s=\"%s\",le=\"+Inf\"} "
                    "%llu\n",
                    what, what, s->name, cum);
        }
        for (int i = 0; i < s->nworkers; i++)
            sum_us += LD(s->w[i].lat_sum_us);
        cn_buf_printf(b, "cairn_gateway_%s_request_duration_seconds_sum{%s=\"%s\"} %.6f\n", what,
                      what, s->name, (double)sum_us / 1e6);
        cn_buf_printf(b, "cairn_gateway_%s_request_duration_seconds_count{%s=\"%s\"} %llu\n", what,
                      what, s->name, cum);
    }
}

int cn_gw_metrics_write(struct cn_buf *b, struct cn_gw *gw)
{
    uv_mutex_lock(&gw->lock);
    write_family(b, gw, 0);
    write_family(b, gw, 1);
    static const char *const errs[4] = {"connect", "reset", "timeout", "bad_response"};
    cn_buf_puts(b, "# HELP cairn_gateway_upstream_errors_total Upstream failures by cluster.\n"
                   "# TYPE cairn_gateway_upstream_errors_total counter\n");
    for (struct gw_stats *s = gw->stats; s; s = s->next) {
        if (s->kind != 1)
            continue;
        for (int e = 0; e < 4; e++) {
            unsigned long long n = 0;
            for (int i = 0; i < s->nworkers; i++)
                n += LD(s->w[i].upstream_errors[e]);
            cn_buf_printf(b,
                          "cairn_gateway_upstream_errors_total{cluster=\"%s\",kind=\"%s\"} %llu\n",
                          s->name, errs[e], n);
        }
    }
    cn_buf_puts(b, "# HELP cairn_gateway_upstream_connections_total Upstream connections "
                   "opened.\n# TYPE cairn_gateway_upstream_connections_total counter\n");
    for (struct gw_stats *s = gw->stats; s; s = s->next) {
        if (s->kind != 1)
            continue;
        unsigned long long n = 0;
        for (int i = 0; i < s->nworkers; i++)
            n += LD(s->w[i].connects);
        cn_buf_printf(b, "cairn_gateway_upstream_connections_total{cluster=\"%s\"} %llu\n", s->name,
                      n);
    }
    gw_gov_metrics_write(b, gw);
    gw_disc_metrics_write(b, gw);
    gw_tls_metrics_write(b, gw);
    uint64_t gen = gw->generation;
    gw_tel_metrics_write(b, gw);
    uv_mutex_unlock(&gw->lock);
    cn_buf_printf(b,
                  "# HELP cairn_gateway_config_generation Configuration generation published.\n"
                  "# TYPE cairn_gateway_config_generation gauge\n"
                  "cairn_gateway_config_generation %llu\n"
                  "# HELP cairn_gateway_worker_config_generation Generation each worker runs.\n"
                  "# TYPE cairn_gateway_worker_config_generation gauge\n",
                  (unsigned long long)gen);
    for (int i = 0; i < gw->nworkers; i++)
        cn_buf_printf(b, "cairn_gateway_worker_config_generation{worker=\"%d\"} %llu\n", i,
                      LD(gw->workers[i].generation));
    static const char *const lag_names[2] = {"last", "max"};
    for (int k = 0; k < 2; k++) {
        cn_buf_printf(b,
                      "# HELP cairn_gateway_worker_config_adopt_%s_seconds From a configuration's "
                      "publication (for endpoints discovered in the registry: from the registry's "
                      "change) to the worker running it: the %s (reloads only).\n"
                      "# TYPE cairn_gateway_worker_config_adopt_%s_seconds gauge\n",
                      lag_names[k], k ? "longest so far" : "last one", lag_names[k]);
        for (int i = 0; i < gw->nworkers; i++)
            cn_buf_printf(b, "cairn_gateway_worker_config_adopt_%s_seconds{worker=\"%d\"} %.6f\n",
                          lag_names[k], i,
                          (double)(k ? LD(gw->workers[i].adopt_lag_max_ns)
                                     : LD(gw->workers[i].adopt_lag_last_ns)) /
                              1e9);
    }
    cn_buf_printf(b,
                  "# HELP cairn_gateway_reloads_total Configurations applied after the first.\n"
                  "# TYPE cairn_gateway_reloads_total counter\n"
                  "cairn_gateway_reloads_total %llu\n"
                  "# HELP cairn_gateway_reload_failures_total Configurations rejected.\n"
                  "# TYPE cairn_gateway_reload_failures_total counter\n"
                  "cairn_gateway_reload_failures_total %llu\n",
                  LD(gw->reloads), LD(gw->reload_failures));
    return 0;
}
