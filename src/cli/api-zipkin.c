/* Zipkin's v2 read API (zipkin2-api.yaml) as the Zipkin UI calls it (docs/compat.md):
 * /api/v2/services, /api/v2/spans, /api/v2/remoteServices, /api/v2/traces,
 * /api/v2/trace/{id}, /api/v2/dependencies. Errors are plain text. */
#include "cli/api-compat.h"

#include "http/json.h"
#include "telemetry/render-compat.h"

#define ZIPKIN CN_COMPAT_ZIPKIN

static void add_span(void *ctx, const struct cn_span *s)
{
    json_array_append_new(ctx, cn_zipkin_render_span(s));
}

static int by_timestamp(const void *a, const void *b)
{
    json_int_t x = json_integer_value(json_object_get(*(json_t *const *)a, "timestamp"));
    json_int_t y = json_integer_value(json_object_get(*(json_t *const *)b, "timestamp"));
    return x < y ? -1 : x > y;
}

/* The Zipkin span list of a trace (by timestamp), NULL when the store has none. */
static json_t *zipkin_trace(struct cn_store *st, const uint8_t id[16])
{
    json_t *spans = json_array();
    if (cn_store_trace(st, id, add_span, spans) == 0) {
        json_decref(spans);
        return NULL;
    }
    size_t n = json_array_size(spans);
    json_t **items = malloc(n * sizeof(*items));
    if (items) {
        for (size_t i = 0; i < n; i++)
            items[i] = json_incref(json_array_get(spans, i));
        qsort(items, n, sizeof(*items), by_timestamp);
        json_array_clear(spans);
        for (size_t i = 0; i < n; i++)
            json_array_append_new(spans, items[i]);
        free(items);
    }
    return spans;
}

static void work_trace(struct cn_compat_job *jb)
{
    struct cn_compat_trace_p *p = jb->p;
    json_t *spans = zipkin_trace(jb->up->store, p->id);
    if (!spans) {
        char hex[33];
        cn_hex_encode(hex, p->id, 16);
        cn_compat_job_error(jb, 404, "Cannot find trace %s", hex);
        return;
    }
    cn_compat_job_json(jb, 200, spans);
}

static void h_trace(struct cn_http_req *req, void *ctx)
{
    cn_compat_trace_by_id(req, ctx, ZIPKIN, work_trace, 0);
}

static void h_services(struct cn_http_req *req, void *ctx)
{
    static const char *const none[] = {NULL};
    if (cn_compat_check(req, ctx, ZIPKIN, none) == 0)
        cn_http_reply_json(req, 200, cn_compat_services(ctx));
}

/* serviceName (required) into svc: 0, or -1 after a 400. */
static int service_name(struct cn_http_req *req, struct cn_up *up, char *svc, size_t svc_len)
{
    static const char *const names[] = {"serviceName", NULL};
    int rc;
    if (cn_compat_check(req, up, ZIPKIN, names) != 0 ||
        (rc = cn_compat_param(req, ZIPKIN, "serviceName", svc, svc_len)) < 0)
        return -1;
    if (rc == 0) {
        cn_compat_reply_error(req, ZIPKIN, 400, "serviceName is required");
        return -1;
    }
    return 0;
}

/* Every span name of the service, any kind. */
static void h_spans(struct cn_http_req *req, void *ctx)
{
    char svc[CN_COMPAT_MAX_NAME + 1];
    if (service_name(req, ctx, svc, sizeof(svc)) == 0)
        cn_http_reply_json(req, 200, cn_compat_operations(ctx, cn_slice_of(svc), -1, 0));
}

/* Peers the service called over the buckets the derived tables keep. */
static void h_remote(struct cn_http_req *req, void *ctx)
{
    struct cn_up *up = ctx;
    char svc[CN_COMPAT_MAX_NAME + 1];
    if (service_name(req, ctx, svc, sizeof(svc)) != 0)
        return;
    const struct cn_derive_opts *o = cn_derive_opts(cn_store_derive(up->store));
    uint64_t to = cn_compat_now_ns() + o->bucket_ns, span = o->bucket_ns * o->num_buckets;
    json_t *deps = cn_compat_dependencies(up, to > span ? to - span : 0, to, 0);
    json_t *a = json_array();
    size_t i;
    json_t *d;
    json_array_foreach(deps, i, d)
    {
        const char *parent = json_string_value(json_object_get(d, "parent"));
        json_t *child = json_object_get(d, "child");
        if (parent && child && strcmp(parent, svc) == 0)
            json_array_append(a, child);
    }
    json_decref(deps);
    cn_http_reply_json(req, 200, a);
}

static void h_dependencies(struct cn_http_req *req, void *ctx)
{
    static const char *const names[] = {"endTs", "lookback", NULL};
    uint64_t from, to;
    if (cn_compat_check(req, ctx, ZIPKIN, names) != 0 ||
        cn_compat_end_lookback(req, ZIPKIN, ctx, 1, &from, &to) != 0)
        return;
    cn_http_reply_json(req, 200, cn_compat_dependencies(ctx, from, to, 1));
}

/* annotationQuery: "error and http.method=GET": terms joined by " and "; a bare key means
 * "has this tag" (error: the span's status is ERROR). aq is modified. */
static int annotation_query(struct cn_http_req *req, struct cn_compat_search *p, char *aq)
{
    for (char *t = aq; t && *t;) {
        char *next = strstr(t, " and ");
        if (next) {
            *next = '\0';
            next += 5;
        }
        while (*t == ' ')
            t++;
        char *eq = strchr(t, '=');
        if (eq) {
            *eq = '\0';
            if (cn_compat_add_pred(req, ZIPKIN, p, "annotationQuery", t, eq + 1) != 0)
                return -1;
        } else if (strcmp(t, "error") == 0) {
            p->q.status = CN_STATUS_ERROR;
        } else if (*t && cn_compat_add_pred(req, ZIPKIN, p, "annotationQuery", t, NULL) != 0) {
            return -1;
        }
        t = next;
    }
    return 0;
}

static int search_params(struct cn_http_req *req, struct cn_up *up, struct cn_compat_search *p,
                         char *v)
{
    struct cn_query_limits lim;
    cn_compat_limits(up, &lim);
    int rc;
    if ((rc = cn_compat_param(req, ZIPKIN, "serviceName", p->service, sizeof(p->service))) < 0)
        return -1;
    if (rc > 0)
        p->q.service = cn_slice_of(p->service);
    if ((rc = cn_compat_param(req, ZIPKIN, "spanName", p->operation, sizeof(p->operation))) < 0)
        return -1;
    /* The Zipkin UI sends spanName=all for "any". */
    if (rc > 0 && strcmp(p->operation, "all") != 0)
        p->q.operation = cn_slice_of(p->operation);
    if ((rc = cn_compat_param(req, ZIPKIN, "remoteServiceName", v, CN_COMPAT_MAX_NAME + 1)) < 0 ||
        (rc > 0 && strcmp(v, "all") != 0 &&
         cn_compat_add_pred(req, ZIPKIN, p, "remoteServiceName", "peer.service", v) != 0))
        return -1;
    uint64_t min_us = 0, max_us = 0, limit = CN_MIN(10u, lim.max_limit);
    if (cn_compat_param_u64(req, ZIPKIN, "minDuration", 1, UINT64_MAX / 1000, &min_us) < 0 ||
        cn_compat_param_u64(req, ZIPKIN, "maxDuration", 1, UINT64_MAX / 1000, &max_us) < 0 ||
        cn_compat_param_u64(req, ZIPKIN, "limit", 1, lim.max_limit, &limit) < 0)
        return -1;
    if (min_us && max_us && max_us < min_us) {
        cn_compat_reply_error(req, ZIPKIN, 400, "maxDuration should be >= minDuration");
        return -1;
    }
    p->q.min_duration_ns = min_us * 1000;
    p->q.max_duration_ns = max_us * 1000;
    p->q.limit = (size_t)limit;
    if (cn_compat_end_lookback(req, ZIPKIN, up, 0, &p->q.from_ns, &p->q.to_ns) != 0 ||
        (rc = cn_compat_param(req, ZIPKIN, "annotationQuery", v, CN_COMPAT_MAX_PARAM)) < 0)
        return -1;
    return rc > 0 ? annotation_query(req, p, v) : 0;
}

static void h_search(struct cn_http_req *req, void *ctx)
{
    static const char *const names[] = {"serviceName", "remoteServiceName",
                                        "spanName",    "annotationQuery",
                                        "minDuration", "maxDuration",
                                        "endTs",       "lookback",
                                        "limit",       NULL};
    struct cn_compat_search *p;
    if (cn_compat_check(req, ctx, ZIPKIN, names) != 0 || !(p = cn_compat_search_new(req, ZIPKIN)))
        return;
    char *v = malloc(CN_COMPAT_MAX_PARAM);
    if (!v) {
        cn_compat_search_free(p);
        cn_compat_reply_error(req, ZIPKIN, 503, "out of memory");
        return;
    }
    p->render = zipkin_trace;
    int rc = search_params(req, ctx, p, v);
    free(v);
    if (rc != 0) {
        cn_compat_search_free(p);
        return;
    }
    cn_compat_submit(req, ctx, ZIPKIN, cn_compat_work_search, cn_compat_search_release, p);
}

int cn_api_zipkin_routes(struct cn_up *up, struct cn_router *r)
{
    static const struct cn_compat_route routes[] = {
        {"/api/v2/services", h_services},     {"/api/v2/spans", h_spans},
        {"/api/v2/remoteServices", h_remote}, {"/api/v2/traces", h_search},
        {"/api/v2/trace/{id}", h_trace},      {"/api/v2/dependencies", h_dependencies},
    };
    return cn_compat_add_routes(up, r, routes, CN_ARRAY_LEN(routes));
}
