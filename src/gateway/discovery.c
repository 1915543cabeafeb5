/* Registry discovery: a cluster names a registry service; its healthy, enabled instances
 * (Nacos v1 instance lists) become the cluster's endpoints. The configuration snapshot given
 * to cn_gw_publish is a template: what is published is a snapshot derived from it with each
 * discovering cluster's endpoints replaced, and every change of a discovered set derives and
 * publishes again, so the workers see it through the same atomic swap as a reload.
 *
 * One thread per gateway reads the sets: from the registry in the same process (cairn up,
 * woken by its change callback) or over HTTP with libcurl (woken by the registry's UDP push,
 * else polled every interval). A failed read keeps the last good set. docs/gateway.md. */
#include "gateway/discovery.h"

#include "base/log.h"
#include "ev/ev.h"
#include "gateway/config-ld.h"
#include "gateway/internal.h"

#include <arpa/inet.h>
#include <curl/curl.h>
#include <jansson.h>
#include <math.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

/* ---- configuration ---------------------------------------------------------------------------
 */

/* As the registry checks names: 1..512 bytes, no control characters, no "@@" (the group
 * separator); a cluster name also has no ',' (lists are comma-separated). */
static int check_name(struct ld *l, const yaml_node_t *n, struct cn_slice s, int cluster)
{
    if (s.len == 0 || s.len > GW_DISC_MAX_NAME)
        return gw_ld_fail(l, n, "must be 1 to %d bytes", GW_DISC_MAX_NAME);
    for (size_t i = 0; i < s.len; i++) {
        unsigned char c = (unsigned char)s.ptr[i];
        if (c < 0x20 || c == 0x7f)
            return gw_ld_fail(l, n, "must not hold control characters");
        if (c == '@' && i + 1 < s.len && s.ptr[i + 1] == '@')
            return gw_ld_fail(l, n, "must not hold '@@'");
        if (cluster && c == ',')
            return gw_ld_fail(l, n, "must not hold ','");
    }
    return 0;
}

static int load_name(struct ld *l, const yaml_node_t *map, const char *key, int required,
                     int cluster, struct cn_slice *out)
{
    yaml_node_t *v = gw_ld_get(l, map, key);
    if (!v) {
        if (!required)
            return 0;
        size_t o = gw_ld_push(l, key);
        int rc = gw_ld_fail(l, map, "is required (the registry's service name)");
        gw_ld_pop(l, o);
        return rc;
    }
    size_t o = gw_ld_push(l, key);
    int rc = gw_ld_str(l, v, out);
    if (!rc)
        rc = check_name(l, v, *out, cluster);
    if (!rc)
        gw_ld_pop(l, o);
    return rc;
}

int gw_disc_load(struct ld *l, const yaml_node_t *map, struct gw_cluster *cl)
{
    static const char *const keys[] = {"service",
                                       "namespace",
                                       "group",
                                       "cluster",
                                       "registry",
                                       "interval",
                                       "timeout",
                                       "max_endpoints",
                                       "max_response_bytes",
                                       "protect",
                                       NULL};
    int rc = gw_ld_map(l, map, keys);
    if (rc)
        return rc;
    struct cn_gw_snapshot *s = gw_ld_snap(l);
    struct gw_disc_cfg *d = cn_arena_calloc(&s->arena, 1, sizeof(*d));
    if (!d)
        return gw_ld_fail(l, map, "out of memory");
    d->ns = CN_SLICE_LIT("public");
    d->group = CN_SLICE_LIT("DEFAULT_GROUP");
    d->clusters = CN_SLICE_LIT("");
    d->registry = CN_SLICE_LIT("local");
    d->local = 1;
    d->interval_ms = 1000;
    d->timeout_ms = 2000;
    d->max_endpoints = 1024;
    d->max_response_bytes = 8u << 20;
    d->protect = 1;
    if ((rc = load_name(l, map, "service", 1, 0, &d->service)) ||
        (rc = load_name(l, map, "namespace", 0, 0, &d->ns)) ||
        (rc = load_name(l, map, "group", 0, 0, &d->group)) ||
        (rc = load_name(l, map, "cluster", 0, 1, &d->clusters)))
        return rc;
    yaml_node_t *v;
    size_t o;
    if ((v = gw_ld_get(l, map, "registry"))) {
        o = gw_ld_push(l, "registry");
        if ((rc = gw_ld_str(l, v, &d->registry)))
            return rc;
        struct cn_slice r = d->registry;
        if (cn_slice_eq(r, CN_SLICE_LIT("local"))) {
            d->local = 1;
        } else {
            d->local = 0;
            int http = r.len > 7 && memcmp(r.ptr, "http://", 7) == 0;
            int https = r.len > 8 && memcmp(r.ptr, "https://", 8) == 0;
            if (!http && !https)
                return gw_ld_fail(l, v, "'%.*s' is not local or an http:// or https:// URL",
                                  (int)CN_MIN(r.len, 64), r.ptr);
            if (r.len > GW_DISC_MAX_URL)
                return gw_ld_fail(l, v, "is longer than %d bytes", GW_DISC_MAX_URL);
            for (size_t i = 0; i < r.len; i++) {
                unsigned char c = (unsigned char)r.ptr[i];
                if (c <= 0x20 || c == 0x7f || c == '?' || c == '#')
                    return gw_ld_fail(l, v,
                                      "must not hold spaces, control characters, '?' or '#' "
                                      "(the registry's base URL)");
            }
            /* The API path is appended: a trailing '/' would double it. */
            while (d->registry.len && d->registry.ptr[d->registry.len - 1] == '/')
                ((char *)d->registry.ptr)[--d->registry.len] = '\0';
        }
        gw_ld_pop(l, o);
    }
    const yaml_node_t *m = map;
#define DOPT(key, call)                                                                            \
    if ((v = gw_ld_get(l, m, key))) {                                                              \
        o = gw_ld_push(l, key);                                                                    \
        if ((rc = (call)))                                                                         \
            return rc;                                                                             \
        gw_ld_pop(l, o);                                                                           \
    }
    DOPT("interval", gw_ld_duration(l, v, 3600000, &d->interval_ms));
    if (d->interval_ms < 10) {
        o = gw_ld_push(l, "interval");
        return gw_ld_fail(l, gw_ld_get(l, m, "interval"), "must be at least 10ms");
    }
    DOPT("timeout", gw_ld_duration(l, v, 60000, &d->timeout_ms));
    if (d->timeout_ms < 10) {
        o = gw_ld_push(l, "timeout");
        return gw_ld_fail(l, gw_ld_get(l, m, "timeout"), "must be at least 10ms");
    }
    DOPT("max_endpoints", gw_ld_u64(l, v, 1, 100000, &d->max_endpoints));
    DOPT("max_response_bytes", gw_ld_size(l, v, 1024, 256u << 20, &d->max_response_bytes));
    DOPT("protect", gw_ld_bool(l, v, &d->protect));
#undef DOPT
    char where[512];
    int n = snprintf(where, sizeof(where), "%s:%zu:%zu: cluster '%.*s' discovery", gw_ld_file(l),
                     map->start_mark.line + 1, map->start_mark.column + 1,
                     (int)CN_MIN(cl->name.len, 128), cl->name.ptr);
    d->where = cn_arena_dup(&s->arena, where, (size_t)CN_MIN(n, (int)sizeof(where) - 1));
    if (!d->where.ptr)
        return gw_ld_fail(l, map, "out of memory");
    cl->disc = d;
    return 0;
}

/* ---- instance lists ------------------------------------------------------------------------ */

void gw_disc_set_release(struct gw_disc_set *s)
{
    free(s->eps);
    memset(s, 0, sizeof(*s));
}

static int cmp_ep(const void *pa, const void *pb)
{
    const struct gw_disc_ep *a = pa, *b = pb;
    int c = strcmp(a->ip, b->ip);
    if (c)
        return c;
    return (a->port > b->port) - (a->port < b->port);
}

static int parse_fail(struct gw_disc_set *out, char *err, size_t err_len, const char *why)
{
    gw_disc_set_release(out);
    snprintf(err, err_len, "%s", why);
    return CN_ESYNTAX;
}

int gw_disc_parse(const char *json, size_t len, int protect, struct gw_disc_set *out, char *err,
                  size_t err_len)
{
    gw_disc_set_release(out);
    json_error_t je;
    json_t *root = json_loadb(json, len, JSON_REJECT_DUPLICATES, &je);
    if (!root) {
        snprintf(err, err_len, "the instance list is not JSON: %s", je.text);
        return CN_ESYNTAX;
    }
    json_t *hosts = json_is_object(root) ? json_object_get(root, "hosts") : NULL;
    if (!json_is_array(hosts)) {
        json_decref(root);
        return parse_fail(out, err, err_len, "the instance list has no hosts array");
    }
    size_t n = json_array_size(hosts);
    out->eps = calloc(n ? n : 1, sizeof(*out->eps));
    unsigned char *healthy = calloc(n ? n : 1, 1);
    if (!out->eps || !healthy) {
        free(healthy);
        json_decref(root);
        gw_disc_set_release(out);
        return CN_ENOMEM;
    }
    size_t num_healthy = 0;
    for (size_t i = 0; i < n; i++) {
        json_t *h = json_array_get(hosts, i);
        json_t *ip = json_object_get(h, "ip"), *port = json_object_get(h, "port");
        json_t *wt = json_object_get(h, "weight"), *he = json_object_get(h, "healthy");
        json_t *en = json_object_get(h, "enabled");
        if (!json_is_object(h) || !json_is_string(ip) || !json_is_integer(port) ||
            (wt && !json_is_number(wt)) || (he && !json_is_boolean(he)) ||
            (en && !json_is_boolean(en))) {
            out->skipped++;
            continue;
        }
        const char *ips = json_string_value(ip);
        size_t ipl = json_string_length(ip);
        json_int_t p = json_integer_value(port);
        double w = wt ? json_number_value(wt) : 1.0;
        unsigned char a6[16];
        if (ipl == 0 || ipl >= GW_DISC_IP_LEN || strlen(ips) != ipl || p < 1 || p > 65535 ||
            !isfinite(w) || w < 0 || w > 10000 ||
            (inet_pton(AF_INET, ips, a6) != 1 && inet_pton(AF_INET6, ips, a6) != 1)) {
            out->skipped++; /* a host name, an out-of-range port or weight */
            continue;
        }
        if ((en && !json_is_true(en)) || w <= 0) {
            out->excluded++;
            continue;
        }
        struct gw_disc_ep *e = &out->eps[out->num];
        memcpy(e->ip, ips, ipl + 1);
        e->port = (uint16_t)p;
        double sw = round(w * GW_DISC_WEIGHT_SCALE);
        e->weight = sw < 1 ? 1 : (uint32_t)sw;
        healthy[out->num] = !he || json_is_true(he);
        num_healthy += healthy[out->num];
        out->num++;
    }
    json_decref(root);
    if (num_healthy == 0 && out->num && protect) {
        out->protected_ = 1;
    } else {
        size_t k = 0;
        for (size_t i = 0; i < out->num; i++)
            if (healthy[i])
                out->eps[k++] = out->eps[i];
            else
                out->excluded++;
        out->num = k;
    }
    free(healthy);
    qsort(out->eps, out->num, sizeof(*out->eps), cmp_ep);
    /* The same address in two Nacos clusters: one endpoint (its state is kept by address). */
    size_t k = 0;
    for (size_t i = 0; i < out->num; i++)
        if (k == 0 || cmp_ep(&out->eps[k - 1], &out->eps[i]) != 0)
            out->eps[k++] = out->eps[i];
    out->num = k;
    return 0;
}

int gw_disc_set_diff(const struct gw_disc_set *a, const struct gw_disc_set *b, size_t *out_added,
                     size_t *out_removed, size_t *out_reweighted)
{
    size_t i = 0, j = 0, add = 0, rem = 0, rew = 0;
    while (i < a->num || j < b->num) {
        int c = i == a->num ? 1 : j == b->num ? -1 : cmp_ep(&a->eps[i], &b->eps[j]);
        if (c < 0) {
            rem++;
            i++;
        } else if (c > 0) {
            add++;
            j++;
        } else {
            rew += a->eps[i].weight != b->eps[j].weight;
            i++;
            j++;
        }
    }
    if (out_added)
        *out_added = add;
    if (out_removed)
        *out_removed = rem;
    if (out_reweighted)
        *out_reweighted = rew;
    return add == 0 && rem == 0 && rew == 0 && a->protected_ == b->protected_;
}

/* ---- derived snapshots ----------------------------------------------------------------------- */

static uint32_t gcd32(uint32_t a, uint32_t b)
{
    while (b) {
        uint32_t t = a % b;
        a = b;
        b = t;
    }
    return a;
}

/* The cluster's endpoints from a discovered set, into s's arena. */
static int fill_eps(struct cn_gw_snapshot *s, struct gw_cluster *cl, const struct gw_disc_set *set)
{
    size_t n = set ? CN_MIN(set->num, (size_t)cl->disc->max_endpoints) : 0;
    cl->eps = cn_arena_calloc(&s->arena, n ? n : 1, sizeof(*cl->eps));
    if (!cl->eps)
        return CN_ENOMEM;
    cl->num_eps = n;
    uint32_t g = 0, maxw = 0;
    for (size_t i = 0; i < n; i++) {
        const struct gw_disc_ep *d = &set->eps[i];
        char name[GW_DISC_IP_LEN + 16];
        int six = strchr(d->ip, ':') != NULL;
        int len = snprintf(name, sizeof(name), six ? "[%s]:%u" : "%s:%u", d->ip, d->port);
        struct gw_endpoint *e = &cl->eps[i];
        e->name = cn_arena_dup(&s->arena, name, (size_t)len);
        if (!e->name.ptr)
            return CN_ENOMEM;
        if (CN_NEVER(cn_ev_parse_addr(e->name.ptr, &e->addr) != 0))
            return CN_EINVAL; /* gw_disc_parse let only numeric addresses through */
        e->weight = d->weight;
        g = gcd32(g, d->weight);
        maxw = CN_MAX(maxw, d->weight);
    }
    /* Weights relative to each other: 1.0 and 0.5 in the registry balance as 2 and 1, and
     * the consistent-hash ring stays small (GW_RING_POINTS_PER_WEIGHT per unit). */
    uint64_t total = 0;
    for (size_t i = 0; i < n; i++)
        total += cl->eps[i].weight /= g;
    if (cl->policy == GW_LB_HASH && total > 1000)
        for (size_t i = 0; i < n; i++) {
            uint64_t w = (uint64_t)cl->eps[i].weight * 100 * g / maxw;
            cl->eps[i].weight = w ? (uint32_t)w : 1;
        }
    cl->ring = NULL;
    cl->ring_len = 0;
    if (cl->policy == GW_LB_HASH && n)
        return gw_ring_build(s, cl);
    return 0;
}

struct cn_gw_snapshot *gw_disc_derive(struct cn_gw_snapshot *tpl,
                                      const struct gw_disc_set *const *sets)
{
    struct cn_gw_snapshot *s = malloc(sizeof(*s));
    if (!s)
        return NULL;
    /* Every field is tpl's (listeners, limits, tracing and what later parts add); what tpl
     * owns outside its arena (regexes, key sets, fetchers) stays tpl's to free. */
    memcpy(s, tpl, sizeof(*s));
    atomic_init(&s->refs, 1);
    cn_arena_init(&s->arena, 64 << 10, 256u << 20);
    s->base = cn_gw_snapshot_ref(tpl);
    s->generation = 0;
    s->regexes = NULL;
    s->num_regexes = 0;
    s->jwks = NULL;
    s->num_jwks = s->cap_jwks = 0;
    s->remotes = NULL;
    s->num_remotes = s->cap_remotes = 0;
    memset(&s->hosts, 0, sizeof(s->hosts));
    memset(&s->any, 0, sizeof(s->any));
    s->wild = NULL;
    s->num_wild = 0;
    struct cn_arena *a = &s->arena;
    int ok = 1;
    s->clusters =
        cn_arena_calloc(a, tpl->num_clusters ? tpl->num_clusters : 1, sizeof(*s->clusters));
    s->routes = cn_arena_calloc(a, tpl->num_routes ? tpl->num_routes : 1, sizeof(*s->routes));
    s->matches = cn_arena_calloc(a, tpl->num_matches ? tpl->num_matches : 1, sizeof(*s->matches));
    s->num_eps = 0;
    s->num_clusters = s->clusters ? tpl->num_clusters : 0;
    s->num_routes = s->routes ? tpl->num_routes : 0;
    s->num_matches = s->matches ? tpl->num_matches : 0;
    ok = s->clusters && s->routes && s->matches;
    for (size_t c = 0; ok && c < s->num_clusters; c++) {
        struct gw_cluster *cl = &s->clusters[c];
        *cl = tpl->clusters[c];
        cl->stats = NULL;
        cl->gov.st = NULL;
        if (cl->disc) {
            ok = fill_eps(s, cl, sets[c]) == 0;
        } else {
            cl->eps = cn_arena_alloc(a, (cl->num_eps ? cl->num_eps : 1) * sizeof(*cl->eps));
            ok = cl->eps != NULL;
            if (ok)
                memcpy(cl->eps, tpl->clusters[c].eps, cl->num_eps * sizeof(*cl->eps));
        }
        for (size_t e = 0; ok && e < cl->num_eps; e++) {
            cl->eps[e].st = NULL;
            cl->eps[e].global = s->num_eps++;
        }
    }
    for (size_t r = 0; ok && r < s->num_routes; r++) {
        const struct gw_route *tr = &tpl->routes[r];
        struct gw_route *rt = &s->routes[r];
        *rt = *tr;
        rt->stats = NULL;
        rt->backends = cn_arena_calloc(a, tr->num_backends + 1, sizeof(*rt->backends));
        rt->filters = cn_arena_calloc(a, tr->num_filters + 1, sizeof(*rt->filters));
        ok = rt->backends && rt->filters;
        for (size_t i = 0; ok && i < tr->num_backends; i++) {
            rt->backends[i] = tr->backends[i];
            rt->backends[i].cluster = &s->clusters[tr->backends[i].cluster->index];
        }
        for (size_t i = 0; ok && i < tr->num_filters; i++) {
            rt->filters[i] = tr->filters[i];
            if (rt->filters[i].kind == GW_F_RATE_LIMIT)
                rt->filters[i].u.ratelimit.table = NULL; /* gw_gov_prepare, then inherited */
        }
        if (ok) {
            rt->redirect = tr->redirect ? rt->filters + (tr->redirect - tr->filters) : NULL;
            rt->rewrite = tr->rewrite ? rt->filters + (tr->rewrite - tr->filters) : NULL;
        }
    }
    for (size_t i = 0; ok && i < s->num_matches; i++) {
        s->matches[i] = tpl->matches[i];
        s->matches[i].route = &s->routes[tpl->matches[i].route->index];
    }
    if (ok)
        ok = gw_matcher_build(s) == 0 && gw_gov_prepare(s) == 0;
    if (!ok) {
        gw_disc_snapshot_free(s);
        return NULL;
    }
    return s;
}

void gw_disc_snapshot_free(struct cn_gw_snapshot *s)
{
    gw_matcher_free(s);
    gw_gov_release(s);
    cn_arena_release(&s->arena);
    cn_gw_snapshot_unref(s->base);
    free(s);
}

/* ---- the runtime ----------------------------------------------------------------------------- */

/* One registry service read for the template's clusters (several clusters naming the same
 * service with the same options share it). Created and marked by gw_disc_apply (under mu);
 * read and freed (once unused) only by the thread, or by gw_disc_free after it: the thread
 * reads its strings without mu. */
struct gw_watch {
    struct gw_watch *next;
    uint64_t id;
    char *registry, *ns, *group, *service, *clusters;
    int local, protect;
    uint64_t interval_ms, timeout_ms, max_bytes;
    int used;          /* by the current template */
    int dirty;         /* read it now */
    uint64_t dirty_ns; /* uv_hrtime() of the registry change that set dirty (0: none) */
    uint64_t next_ms;  /* monotonic: the next read */
    struct gw_disc_set set;
    int have; /* set holds a successful read */
    uint64_t updates, unreachable, bad_response;
    uint64_t last_ok_ms; /* monotonic */
    int failing;         /* the last read failed (logged once per streak) */
};

struct gw_disc {
    uv_mutex_t mu; /* watches, source, wake */
    struct gw_watch *watches;
    uint64_t next_id;
    struct cn_gw_ep_source source;
    void (*wake)(void *ctx);
    void *wake_ctx;
    struct cn_gw *gw;
    int efd;    /* eventfd: a change or a new watch wakes the thread */
    int udp_fd; /* Nacos UDP pushes of remote registries, -1 when none */
    uint16_t udp_port;
    uv_thread_t thread;
    int running;
    atomic_int stop;
    CURL *curl;
    struct cn_buf body;
};

static uint64_t mono_ms(void)
{
    return uv_hrtime() / 1000000u;
}

struct gw_disc *gw_disc_new(struct cn_gw *gw)
{
    struct gw_disc *d = calloc(1, sizeof(*d));
    if (!d)
        return NULL;
    uv_mutex_init(&d->mu);
    d->gw = gw;
    d->efd = -1;
    d->udp_fd = -1;
    return d;
}

static void watch_free(struct gw_watch *w)
{
    free(w->registry);
    free(w->ns);
    free(w->group);
    free(w->service);
    free(w->clusters);
    gw_disc_set_release(&w->set);
    free(w);
}

void gw_disc_free(struct gw_disc *d)
{
    if (!d)
        return;
    for (struct gw_watch *w = d->watches, *next; w; w = next) {
        next = w->next;
        watch_free(w);
    }
    if (d->efd >= 0)
        close(d->efd);
    if (d->udp_fd >= 0)
        close(d->udp_fd);
    if (d->curl)
        curl_easy_cleanup(d->curl);
    cn_buf_release(&d->body);
    uv_mutex_destroy(&d->mu);
    free(d);
}

static int same(const char *a, struct cn_slice b)
{
    return cn_slice_eq(cn_slice_of(a), b);
}

/* Under mu: the watch reading cfg's service with cfg's options. */
static struct gw_watch *find_watch(struct gw_disc *d, const struct gw_disc_cfg *c)
{
    for (struct gw_watch *w = d->watches; w; w = w->next)
        if (same(w->registry, c->registry) && same(w->ns, c->ns) && same(w->group, c->group) &&
            same(w->service, c->service) && same(w->clusters, c->clusters) &&
            w->protect == c->protect && w->local == c->local)
            return w;
    return NULL;
}

static void wake_thread(struct gw_disc *d)
{
    uint64_t one = 1;
    if (d->efd >= 0 && write(d->efd, &one, sizeof(one)) < 0) {
        /* The counter is full: the thread is awake anyway. */
    }
}

/* Under mu: the template's discovering clusters each have a watch; others are marked unused
 * (the thread frees them). Returns 1 when a watch was created (to read at once). */
static int sync_watches(struct gw_disc *d, const struct cn_gw_snapshot *tpl)
{
    int created = 0;
    for (struct gw_watch *w = d->watches; w; w = w->next) {
        w->used = 0;
        w->interval_ms = w->timeout_ms = UINT64_MAX;
        w->max_bytes = 0;
    }
    for (size_t c = 0; c < tpl->num_clusters; c++) {
        const struct gw_disc_cfg *cfg = tpl->clusters[c].disc;
        if (!cfg)
            continue;
        struct gw_watch *w = find_watch(d, cfg);
        if (!w) {
            w = calloc(1, sizeof(*w));
            if (!w)
                continue; /* no endpoint for it: logged by the caller's metrics as never read */
            w->registry = strdup(cfg->registry.ptr);
            w->ns = strdup(cfg->ns.ptr);
            w->group = strdup(cfg->group.ptr);
            w->service = strdup(cfg->service.ptr);
            w->clusters = strdup(cfg->clusters.ptr);
            if (!w->registry || !w->ns || !w->group || !w->service || !w->clusters) {
                watch_free(w);
                continue;
            }
            w->local = cfg->local;
            w->protect = cfg->protect;
            w->id = ++d->next_id;
            w->dirty = 1;
            w->interval_ms = w->timeout_ms = UINT64_MAX;
            w->next = d->watches;
            d->watches = w;
            created = 1;
        }
        w->used = 1;
        w->interval_ms = CN_MIN(w->interval_ms, cfg->interval_ms);
        w->timeout_ms = CN_MIN(w->timeout_ms, cfg->timeout_ms);
        w->max_bytes = CN_MAX(w->max_bytes, cfg->max_response_bytes);
    }
    return created;
}

struct cn_gw_snapshot *gw_disc_apply(struct cn_gw *gw, struct cn_gw_snapshot *tpl)
{
    struct gw_disc *d = gw->disc;
    if (tpl->base)
        tpl = tpl->base; /* a derived snapshot published again: its template */
    size_t n = tpl->num_clusters, num_disc = 0;
    for (size_t c = 0; c < n; c++)
        num_disc += tpl->clusters[c].disc != NULL;
    if (!d || num_disc == 0) {
        if (d) {
            uv_mutex_lock(&d->mu);
            sync_watches(d, tpl);
            uv_mutex_unlock(&d->mu);
        }
        return cn_gw_snapshot_ref(tpl);
    }
    /* Copies of the sets, so that deriving (a copy of the routes and a matcher build) does not
     * hold mu, which the registry's change callback takes under the registry's writer lock. */
    struct gw_disc_set *copies = calloc(n, sizeof(*copies));
    const struct gw_disc_set **sets = calloc(n, sizeof(*sets));
    if (!copies || !sets) {
        free(copies);
        free(sets);
        return NULL;
    }
    uv_mutex_lock(&d->mu);
    int created = sync_watches(d, tpl);
    int ok = 1;
    for (size_t c = 0; c < n && ok; c++) {
        const struct gw_disc_cfg *cfg = tpl->clusters[c].disc;
        struct gw_watch *w = cfg ? find_watch(d, cfg) : NULL;
        if (!w || !w->have)
            continue;
        copies[c] = w->set;
        copies[c].eps = malloc((w->set.num ? w->set.num : 1) * sizeof(*w->set.eps));
        ok = copies[c].eps != NULL;
        if (ok)
            memcpy(copies[c].eps, w->set.eps, w->set.num * sizeof(*w->set.eps));
        sets[c] = &copies[c];
    }
    uv_mutex_unlock(&d->mu);
    if (created)
        wake_thread(d);
    struct cn_gw_snapshot *s = ok ? gw_disc_derive(tpl, sets) : NULL;
    for (size_t c = 0; c < n; c++)
        free(copies[c].eps);
    free(copies);
    free(sets);
    return s;
}

void cn_gw_set_endpoint_source(struct cn_gw *gw, const struct cn_gw_ep_source *src)
{
    struct gw_disc *d = gw->disc;
    uv_mutex_lock(&d->mu);
    if (src)
        d->source = *src;
    else
        memset(&d->source, 0, sizeof(d->source));
    uv_mutex_unlock(&d->mu);
}

void cn_gw_endpoints_changed(struct cn_gw *gw, const char *ns, const char *group,
                             const char *service)
{
    struct gw_disc *d = gw->disc;
    int any = 0;
    uv_mutex_lock(&d->mu);
    for (struct gw_watch *w = d->watches; w; w = w->next)
        if (w->local && w->used && strcmp(w->service, service) == 0 &&
            strcmp(w->group, group) == 0 && strcmp(w->ns, ns) == 0) {
            if (!w->dirty)
                w->dirty_ns = uv_hrtime();
            w->dirty = any = 1;
        }
    uv_mutex_unlock(&d->mu);
    if (any)
        wake_thread(d);
}

int cn_gw_discovery_check(struct cn_gw *gw, const struct cn_gw_snapshot *s, char *err,
                          size_t err_len)
{
    struct gw_disc *d = gw->disc;
    uv_mutex_lock(&d->mu);
    int has_source = d->source.list != NULL;
    uv_mutex_unlock(&d->mu);
    for (size_t c = 0; c < s->num_clusters; c++) {
        const struct gw_disc_cfg *cfg = s->clusters[c].disc;
        if (cfg && cfg->local && !has_source) {
            snprintf(err, err_len,
                     "%s: registry: local needs the registry in the same process (cairn up); "
                     "give the registry's URL (registry: http://HOST:8848)",
                     cfg->where.ptr);
            return CN_EINVAL;
        }
    }
    return 0;
}

/* ---- reading ----------------------------------------------------------------------------------
 */

static size_t on_body(char *p, size_t size, size_t n, void *ud)
{
    struct cn_buf *b = ud;
    return cn_buf_append(b, p, size * n) == 0 ? size * n : 0; /* past the maximum: aborted */
}

static int on_progress(void *ud, curl_off_t a, curl_off_t b, curl_off_t c, curl_off_t e)
{
    (void)a, (void)b, (void)c, (void)e;
    struct gw_disc *d = ud;
    return atomic_load(&d->stop) ? 1 : 0;
}

static int add_param(struct cn_buf *u, CURL *c, const char *key, const char *val)
{
    char *esc = curl_easy_escape(c, val, 0);
    if (!esc)
        return CN_ENOMEM;
    int rc = cn_buf_printf(u, "&%s=%s", key, esc);
    curl_free(esc);
    return rc;
}

/* What a read needs from its watch: the strings (stable while the thread runs) and copies of
 * the options a reload may change under mu. */
struct job {
    const struct gw_watch *w;
    uint64_t timeout_ms, max_bytes;
};

/* GET REGISTRY/nacos/v1/ns/instance/list into d->body. 0, or CN_EIO with err. */
static int fetch_remote(struct gw_disc *d, const struct job *j, char *err, size_t err_len)
{
    const struct gw_watch *w = j->w;
    if (!d->curl && !(d->curl = curl_easy_init())) {
        snprintf(err, err_len, "out of memory");
        return CN_EIO;
    }
    CURL *c = d->curl;
    struct cn_buf url;
    cn_buf_init(&url, 4 * GW_DISC_MAX_URL + 8 * GW_DISC_MAX_NAME);
    char grouped[2 * GW_DISC_MAX_NAME + 3];
    snprintf(grouped, sizeof(grouped), "%s@@%s", w->group, w->service);
    int rc = cn_buf_printf(&url, "%s/nacos/v1/ns/instance/list?healthyOnly=false", w->registry);
    rc = rc ?: add_param(&url, c, "serviceName", grouped);
    rc = rc ?: add_param(&url, c, "groupName", w->group);
    rc = rc ?: add_param(&url, c, "namespaceId", w->ns);
    if (!rc && w->clusters[0])
        rc = add_param(&url, c, "clusters", w->clusters);
    if (!rc && d->udp_port)
        rc = cn_buf_printf(&url, "&udpPort=%u", d->udp_port);
    rc = rc ?: cn_buf_append(&url, "", 1);
    if (rc) {
        cn_buf_release(&url);
        snprintf(err, err_len, "out of memory");
        return CN_EIO;
    }
    cn_buf_release(&d->body);
    cn_buf_init(&d->body, j->max_bytes);
    curl_easy_reset(c);
    curl_easy_setopt(c, CURLOPT_URL, url.ptr);
    curl_easy_setopt(c, CURLOPT_HTTPGET, 1L);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, (long)j->timeout_ms);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, (long)j->timeout_ms);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &d->body);
    curl_easy_setopt(c, CURLOPT_NOPROGRESS, 0L);
    curl_easy_setopt(c, CURLOPT_XFERINFOFUNCTION, on_progress);
    curl_easy_setopt(c, CURLOPT_XFERINFODATA, d);
    curl_easy_setopt(c, CURLOPT_USERAGENT, "cairn-gateway");
    CURLcode cc = curl_easy_perform(c);
    cn_buf_release(&url);
    long status = 0;
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    if (cc == CURLE_WRITE_ERROR) {
        snprintf(err, err_len, "the instance list is larger than max_response_bytes (%llu)",
                 (unsigned long long)j->max_bytes);
        return CN_ELIMIT;
    }
    if (cc != CURLE_OK) {
        snprintf(err, err_len, "%s", curl_easy_strerror(cc));
        return CN_EIO;
    }
    if (status != 200) {
        snprintf(err, err_len, "the registry answered %ld: %.*s", status,
                 (int)CN_MIN(d->body.len, 120), d->body.ptr ? d->body.ptr : "");
        for (char *p = err; *p; p++)
            if ((unsigned char)*p < 0x20)
                *p = ' ';
        return CN_EIO;
    }
    return 0;
}

static int fetch_local(struct gw_disc *d, const struct job *j, char *err, size_t err_len)
{
    const struct gw_watch *w = j->w;
    uv_mutex_lock(&d->mu);
    struct cn_gw_ep_source src = d->source;
    uv_mutex_unlock(&d->mu);
    if (!src.list) {
        snprintf(err, err_len, "registry: local needs the registry in the same process");
        return CN_EIO;
    }
    cn_buf_release(&d->body);
    cn_buf_init(&d->body, j->max_bytes);
    int rc = src.list(src.ctx, w->ns, w->group, w->service, w->clusters, &d->body);
    if (rc == CN_ELIMIT) {
        snprintf(err, err_len, "the instance list is larger than max_response_bytes (%llu)",
                 (unsigned long long)j->max_bytes);
        return CN_ELIMIT;
    }
    if (rc) {
        snprintf(err, err_len, "the registry's list failed: %s", cn_strerror(rc));
        return CN_EIO;
    }
    return 0;
}

/* Reads one watch (the thread only; w's strings are stable). Under mu afterwards: records the
 * result. Returns 1 when its set changed. */
static int read_watch(struct gw_disc *d, const struct job *j)
{
    struct gw_watch *w = (struct gw_watch *)j->w;
    char err[256] = "";
    int rc = w->local ? fetch_local(d, j, err, sizeof(err)) : fetch_remote(d, j, err, sizeof(err));
    struct gw_disc_set set = {0};
    if (!rc)
        rc = gw_disc_parse(d->body.ptr ? d->body.ptr : "", d->body.len, w->protect, &set, err,
                           sizeof(err));
    uint64_t now = mono_ms();
    int changed = 0;
    size_t add = 0, rem = 0, rew = 0;
    uv_mutex_lock(&d->mu);
    if (rc) {
        if (rc == CN_EIO)
            w->unreachable++;
        else
            w->bad_response++;
        if (!w->failing)
            cn_warn("gateway", "discovery read failed, the last endpoints stay",
                    "registry=%s service=%s/%s/%s error=\"%s\"", w->registry, w->ns, w->group,
                    w->service, err);
        w->failing = 1;
    } else {
        if (w->failing)
            cn_info("gateway", "discovery read again", "registry=%s service=%s/%s/%s", w->registry,
                    w->ns, w->group, w->service);
        w->failing = 0;
        w->last_ok_ms = now;
        if (!w->have || !gw_disc_set_diff(&w->set, &set, &add, &rem, &rew)) {
            if (!w->have)
                add = set.num;
            gw_disc_set_release(&w->set);
            w->set = set;
            memset(&set, 0, sizeof(set));
            w->have = 1;
            w->updates++;
            changed = 1;
        }
    }
    size_t num = w->set.num;
    int prot = w->set.protected_;
    uv_mutex_unlock(&d->mu);
    gw_disc_set_release(&set);
    if (changed)
        cn_info("gateway", "discovered endpoints changed",
                "registry=%s service=%s/%s/%s endpoints=%zu added=%zu removed=%zu "
                "reweighted=%zu protected=%d",
                w->registry, w->ns, w->group, w->service, num, add, rem, rew, prot);
    return changed;
}

/* One round: frees unused watches, reads the due ones (new watches are due at once). Returns
 * 1 when a set changed. */
/* *since: the earliest change among the watches read because of one (0: none). */
static int round_once(struct gw_disc *d, uint64_t *since)
{
    uint64_t now = mono_ms();
    int changed = 0;
    for (;;) {
        struct gw_watch *due = NULL;
        struct job j = {0};
        uv_mutex_lock(&d->mu);
        for (struct gw_watch **pp = &d->watches; *pp;) {
            struct gw_watch *w = *pp;
            if (!w->used) {
                *pp = w->next;
                watch_free(w);
                continue;
            }
            if (!due && (w->dirty || w->next_ms <= now)) {
                due = w;
                if (w->dirty && w->dirty_ns && (!*since || w->dirty_ns < *since))
                    *since = w->dirty_ns;
                w->dirty = 0;
                w->dirty_ns = 0;
            }
            pp = &w->next;
        }
        if (due) {
            due->next_ms = mono_ms() + due->interval_ms;
            j = (struct job){due, due->timeout_ms, due->max_bytes};
        }
        uv_mutex_unlock(&d->mu);
        if (!due || atomic_load(&d->stop))
            break;
        changed |= read_watch(d, &j);
    }
    return changed;
}

/* Milliseconds until the next read is due (-1: none). */
static int next_wait(struct gw_disc *d)
{
    uint64_t now = mono_ms(), next = UINT64_MAX;
    uv_mutex_lock(&d->mu);
    for (struct gw_watch *w = d->watches; w; w = w->next) {
        if (w->dirty || !w->used)
            next = now;
        else
            next = CN_MIN(next, w->next_ms);
    }
    uv_mutex_unlock(&d->mu);
    if (next == UINT64_MAX)
        return -1;
    return next <= now ? 0 : (int)CN_MIN(next - now, (uint64_t)3600000);
}

void gw_republish(struct cn_gw *gw, uint64_t since_ns);

static void publish_and_wake(struct gw_disc *d, uint64_t since_ns)
{
    gw_republish(d->gw, since_ns);
    uv_mutex_lock(&d->mu);
    void (*wake)(void *) = d->wake;
    void *ctx = d->wake_ctx;
    uv_mutex_unlock(&d->mu);
    if (wake)
        wake(ctx);
}

/* A Nacos UDP push: acknowledged as the clients do, then every remote watch is read again
 * (the push names the service but not its namespace; a read costs one request each). */
static void on_push(struct gw_disc *d)
{
    for (int i = 0; i < 64; i++) {
        char buf[65536];
        struct sockaddr_storage from;
        socklen_t fl = sizeof(from);
        ssize_t n =
            recvfrom(d->udp_fd, buf, sizeof(buf), MSG_DONTWAIT, (struct sockaddr *)&from, &fl);
        if (n <= 0)
            break;
        json_t *j = json_loadb(buf, (size_t)n, 0, NULL);
        const char *type = j ? json_string_value(json_object_get(j, "type")) : NULL;
        if (type && strcmp(type, "dom") == 0) {
            json_t *lr = json_object_get(j, "lastRefTime");
            char ack[160];
            int al = snprintf(ack, sizeof(ack),
                              "{\"type\":\"push-ack\",\"lastRefTime\":\"%lld\",\"data\":\"\"}",
                              json_is_integer(lr) ? (long long)json_integer_value(lr) : 0LL);
            if (sendto(d->udp_fd, ack, (size_t)al, MSG_DONTWAIT, (struct sockaddr *)&from, fl) <
                0) {
                /* An ack that cannot go: the registry pushes again or the poll catches up. */
            }
            uv_mutex_lock(&d->mu);
            for (struct gw_watch *w = d->watches; w; w = w->next)
                if (!w->local && w->used) {
                    if (!w->dirty)
                        w->dirty_ns = uv_hrtime();
                    w->dirty = 1;
                }
            uv_mutex_unlock(&d->mu);
        }
        json_decref(j);
    }
}

static void disc_main(void *arg)
{
    struct gw_disc *d = arg;
    while (!atomic_load(&d->stop)) {
        uint64_t since = 0;
        if (round_once(d, &since))
            publish_and_wake(d, since);
        struct pollfd p[2] = {{d->efd, POLLIN, 0}, {d->udp_fd, POLLIN, 0}};
        int np = d->udp_fd >= 0 ? 2 : 1;
        int rc = poll(p, (nfds_t)np, next_wait(d));
        if (rc > 0 && (p[0].revents & POLLIN)) {
            uint64_t v;
            if (read(d->efd, &v, sizeof(v)) < 0) {
                /* EAGAIN: another read took it */
            }
        }
        if (rc > 0 && np == 2 && (p[1].revents & POLLIN))
            on_push(d);
    }
}

/* A UDP socket for Nacos pushes: IPv6 with IPv4 mapped, else IPv4. */
static void open_udp(struct gw_disc *d)
{
    int fd = socket(AF_INET6, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof(ss));
    socklen_t sl;
    if (fd >= 0) {
        int off = 0;
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &off, sizeof(off));
        struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
        a->sin6_family = AF_INET6;
        a->sin6_addr = in6addr_any;
        sl = sizeof(*a);
    } else {
        fd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        struct sockaddr_in *a = (struct sockaddr_in *)&ss;
        a->sin_family = AF_INET;
        a->sin_addr.s_addr = htonl(INADDR_ANY);
        sl = sizeof(*a);
    }
    if (fd < 0)
        return;
    if (bind(fd, (struct sockaddr *)&ss, sl) != 0 ||
        getsockname(fd, (struct sockaddr *)&ss, &sl) != 0) {
        close(fd);
        return;
    }
    d->udp_fd = fd;
    d->udp_port = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
                                                 : ((struct sockaddr_in *)&ss)->sin_port);
}

int cn_gw_discovery_start(struct cn_gw *gw)
{
    struct gw_disc *d = gw->disc;
    if (d->running)
        return 0;
    d->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (d->efd < 0)
        return CN_EIO;
    open_udp(d); /* also when no remote registry yet: a reload may add one */
    atomic_store(&d->stop, 0);
    /* The first reads before the workers start: they begin with the discovered endpoints. */
    uint64_t since = 0;
    if (round_once(d, &since))
        gw_republish(gw, 0);
    if (uv_thread_create(&d->thread, disc_main, d) != 0)
        return CN_EIO;
    d->running = 1;
    return 0;
}

void cn_gw_discovery_set_wake(struct cn_gw *gw, void (*wake)(void *ctx), void *ctx)
{
    struct gw_disc *d = gw->disc;
    uv_mutex_lock(&d->mu);
    d->wake = wake;
    d->wake_ctx = ctx;
    uv_mutex_unlock(&d->mu);
    if (wake)
        wake(ctx); /* a change published between the workers' start and now */
}

void cn_gw_discovery_stop(struct cn_gw *gw)
{
    struct gw_disc *d = gw ? gw->disc : NULL;
    if (!d)
        return;
    uv_mutex_lock(&d->mu);
    d->wake = NULL;
    d->wake_ctx = NULL;
    uv_mutex_unlock(&d->mu);
    if (!d->running)
        return;
    atomic_store(&d->stop, 1);
    wake_thread(d);
    uv_thread_join(&d->thread);
    d->running = 0;
}

/* ---- /metrics ----------------------------------------------------------------------------- */

void gw_disc_metrics_write(struct cn_buf *b, struct cn_gw *gw)
{
    struct gw_disc *d = gw->disc;
    const struct cn_gw_snapshot *t = gw->tmpl, *cur = gw->current;
    if (!d || !t)
        return;
    size_t num_disc = 0;
    for (size_t c = 0; c < t->num_clusters; c++)
        num_disc += t->clusters[c].disc != NULL;
    if (!num_disc)
        return;
    uint64_t now = mono_ms();
    static const char *const names[] = {
        "cairn_gateway_discovery_endpoints",
        "cairn_gateway_discovery_updates_total",
        "cairn_gateway_discovery_last_update_age_seconds",
        "cairn_gateway_discovery_errors_total",
        "cairn_gateway_discovery_protected",
        "cairn_gateway_discovery_left_out",
    };
    static const char *const help[] = {
        "Endpoints of the discovering cluster in the published configuration.",
        "Changes of the discovered endpoint set applied.",
        "Seconds since the registry was last read successfully (-1: never).",
        "Failed reads (unreachable: no answer or not 200; bad_response: not an instance list "
        "or too large).",
        "1 while no instance is healthy and every enabled one is used (protect).",
        "Instances left out: malformed (a host name, a bad port or weight) or past "
        "max_endpoints.",
    };
    static const char *const types[] = {"gauge", "counter", "gauge", "counter", "gauge", "gauge"};
    uv_mutex_lock(&d->mu);
    for (int k = 0; k < 6; k++) {
        cn_buf_printf(b, "# HELP %s %s\n# TYPE %s %s\n", names[k], help[k], names[k], types[k]);
        for (size_t c = 0; c < t->num_clusters; c++) {
            const struct gw_cluster *cl = &t->clusters[c];
            if (!cl->disc)
                continue;
            const struct gw_watch *w = find_watch(d, cl->disc);
            int nl = (int)cl->name.len;
            const char *np = cl->name.ptr;
            switch (k) {
            case 0: {
                size_t n = 0;
                for (size_t i = 0; cur && i < cur->num_clusters; i++)
                    if (cn_slice_eq(cur->clusters[i].name, cl->name))
                        n = cur->clusters[i].num_eps;
                cn_buf_printf(b, "%s{cluster=\"%.*s\"} %zu\n", names[k], nl, np, n);
                break;
            }
            case 1:
                cn_buf_printf(b, "%s{cluster=\"%.*s\"} %llu\n", names[k], nl, np,
                              w ? (unsigned long long)w->updates : 0ULL);
                break;
            case 2:
                if (w && w->last_ok_ms)
                    cn_buf_printf(b, "%s{cluster=\"%.*s\"} %.3f\n", names[k], nl, np,
                                  (double)(now - w->last_ok_ms) / 1000.0);
                else
                    cn_buf_printf(b, "%s{cluster=\"%.*s\"} -1\n", names[k], nl, np);
                break;
            case 3:
                cn_buf_printf(b, "%s{cluster=\"%.*s\",kind=\"unreachable\"} %llu\n", names[k], nl,
                              np, w ? (unsigned long long)w->unreachable : 0ULL);
                cn_buf_printf(b, "%s{cluster=\"%.*s\",kind=\"bad_response\"} %llu\n", names[k], nl,
                              np, w ? (unsigned long long)w->bad_response : 0ULL);
                break;
            case 4:
                cn_buf_printf(b, "%s{cluster=\"%.*s\"} %d\n", names[k], nl, np,
                              w ? w->set.protected_ : 0);
                break;
            case 5: {
                size_t over = w && w->set.num > cl->disc->max_endpoints
                                  ? w->set.num - (size_t)cl->disc->max_endpoints
                                  : 0;
                cn_buf_printf(b, "%s{cluster=\"%.*s\",reason=\"malformed\"} %zu\n", names[k], nl,
                              np, w ? w->set.skipped : 0);
                cn_buf_printf(b, "%s{cluster=\"%.*s\",reason=\"max_endpoints\"} %zu\n", names[k],
                              nl, np, over);
                break;
            }
            }
        }
    }
    uv_mutex_unlock(&d->mu);
}
