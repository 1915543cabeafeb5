/* Jaeger's HTTP query API as the Jaeger UI and Grafana's Jaeger data source call it
 * (docs/compat.md): /api/services, /api/services/{service}/operations, /api/operations,
 * /api/traces, /api/traces/{id}, /api/dependencies. Answers are in Jaeger's envelope
 * {data, total, limit, offset, errors}, errors too. /api/traces/{id} is Tempo's path as well:
 * a client asking for protobuf gets Tempo's answer (api-tempo.c). */
#include "cli/api-compat.h"

#include "http/json.h"
#include "telemetry/render-compat.h"

#define JAEGER CN_COMPAT_JAEGER

/* ---- traces ----------------------------------------------------------------------------- */

static void add_span(void *ctx, const struct cn_span *s)
{
    cn_jaeger_trace_add(ctx, s);
}

/* The Jaeger trace object, NULL when the store has no span of it. */
static json_t *jaeger_trace(struct cn_store *st, const uint8_t id[16])
{
    struct cn_jaeger_trace t;
    cn_jaeger_trace_init(&t);
    if (cn_store_trace(st, id, add_span, &t) == 0) {
        cn_jaeger_trace_release(&t);
        return NULL;
    }
    return cn_jaeger_trace_finish(&t, id);
}

static void work_trace(struct cn_compat_job *jb)
{
    struct cn_compat_trace_p *p = jb->p;
    json_t *t = jaeger_trace(jb->up->store, p->id);
    if (!t) {
        cn_compat_job_error(jb, 404, "trace not found");
        return;
    }
    json_t *data = json_array();
    json_array_append_new(data, t);
    cn_compat_job_json(jb, 200, cn_compat_jaeger_envelope(data, 1));
}

/* /api/traces/{id}: Jaeger's, unless the client asks for protobuf: that is Grafana's Tempo
 * data source, which gets tempopb.Trace (the rule of docs/compat.md). */
static void h_trace(struct cn_http_req *req, void *ctx)
{
    if (cn_compat_wants_protobuf(req))
        cn_api_tempo_trace_pb(req, ctx);
    else
        cn_compat_trace_by_id(req, ctx, JAEGER, work_trace, 0);
}

/* ---- services, operations, dependencies (derived tables, on the loop) ------------------- */

static const char *const pretty_only[] = {"prettyPrint", NULL};

static void reply_list(struct cn_http_req *req, json_t *a)
{
    cn_http_reply_json(req, 200, cn_compat_jaeger_envelope(a, json_array_size(a)));
}

static void h_services(struct cn_http_req *req, void *ctx)
{
    if (cn_compat_check(req, ctx, JAEGER, pretty_only) == 0)
        reply_list(req, cn_compat_services(ctx));
}

static void h_service_ops(struct cn_http_req *req, void *ctx)
{
    if (cn_compat_check(req, ctx, JAEGER, pretty_only) != 0)
        return;
    char svc[CN_COMPAT_MAX_NAME + 1];
    if (cn_compat_decode(req->params.values[0], svc, sizeof(svc)) < 0) {
        cn_compat_reply_error(req, JAEGER, 400, "service name longer than %d bytes",
                              CN_COMPAT_MAX_NAME);
        return;
    }
    reply_list(req, cn_compat_operations(ctx, cn_slice_of(svc), -1, 0));
}

static void h_operations(struct cn_http_req *req, void *ctx)
{
    static const char *const names[] = {"service", "spanKind", "prettyPrint", NULL};
    if (cn_compat_check(req, ctx, JAEGER, names) != 0)
        return;
    char svc[CN_COMPAT_MAX_NAME + 1], kind_s[64];
    int rc = cn_compat_param(req, JAEGER, "service", svc, sizeof(svc));
    if (rc < 0)
        return;
    if (rc == 0) {
        cn_compat_reply_error(req, JAEGER, 400, "parameter 'service' is required");
        return;
    }
    int kind = -1;
    if ((rc = cn_compat_param(req, JAEGER, "spanKind", kind_s, sizeof(kind_s))) < 0)
        return;
    if (rc > 0 && cn_query_parse_kind(cn_slice_of(kind_s), &kind) != 0) {
        cn_compat_reply_error(req, JAEGER, 400,
                              "unable to parse param 'spanKind': unsupported span kind '%.40s'",
                              kind_s);
        return;
    }
    reply_list(req, cn_compat_operations(ctx, cn_slice_of(svc), kind, 1));
}

static void h_dependencies(struct cn_http_req *req, void *ctx)
{
    static const char *const names[] = {"endTs", "lookback", "prettyPrint", NULL};
    uint64_t from, to;
    if (cn_compat_check(req, ctx, JAEGER, names) != 0 ||
        cn_compat_end_lookback(req, JAEGER, ctx, 0, &from, &to) != 0)
        return;
    reply_list(req, cn_compat_dependencies(ctx, from, to, 0));
}

/* ---- search ----------------------------------------------------------------------------- */

/* A tag the way Jaeger's UI writes them: error=true, span.kind and otel.status_code are the
 * span's status and kind here, not attributes. */
static int add_tag(struct cn_http_req *req, struct cn_compat_search *p, const char *pname,
                   const char *key, const char *value)
{
    int v;
    if (strcmp(key, "error") == 0 && strcmp(value, "true") == 0) {
        p->q.status = CN_STATUS_ERROR;
        return 0;
    }
    if (strcmp(key, "otel.status_code") == 0 &&
        cn_query_parse_status(cn_slice_of(value), &v) == 0) {
        p->q.status = v;
        return 0;
    }
    if (strcmp(key, "span.kind") == 0 && cn_query_parse_kind(cn_slice_of(value), &v) == 0) {
        p->q.kind = v;
        return 0;
    }
    return cn_compat_add_pred(req, JAEGER, p, pname, key, value);
}

/* tags={"k":"v",...} (repeatable) as the UI sends them. v: CN_COMPAT_MAX_PARAM bytes. */
static int tags_json(struct cn_http_req *req, struct cn_compat_search *p, char *v)
{
    for (size_t i = 0;; i++) {
        int n = cn_compat_param_n(req, "tags", i, v, CN_COMPAT_MAX_PARAM);
        if (n == -1)
            return 0;
        json_error_t je;
        json_t *j = n >= 0 ? json_loads(v, 0, &je) : NULL;
        if (!json_is_object(j)) {
            json_decref(j);
            cn_compat_reply_error(req, JAEGER, 400,
                                  "malformed 'tags' parameter, cannot unmarshal JSON: expected an "
                                  "object of strings (at most %d bytes)",
                                  CN_COMPAT_MAX_PARAM - 1);
            return -1;
        }
        const char *k;
        json_t *x;
        int rc = 0;
        json_object_foreach(j, k, x)
        {
            if (!json_is_string(x)) {
                cn_compat_reply_error(req, JAEGER, 400,
                                      "malformed 'tags' parameter, cannot unmarshal JSON: value "
                                      "of '%.64s' is not a string",
                                      k);
                rc = -1;
            } else {
                rc = add_tag(req, p, "tags", k, json_string_value(x));
            }
            if (rc != 0)
                break;
        }
        json_decref(j);
        if (rc != 0)
            return rc;
    }
}

/* tag=k:v (repeatable), the older form. */
static int tags_kv(struct cn_http_req *req, struct cn_compat_search *p, char *v)
{
    for (size_t i = 0;; i++) {
        int n = cn_compat_param_n(req, "tag", i, v, CN_COMPAT_MAX_PARAM);
        if (n == -1)
            return 0;
        char *colon = n >= 0 ? strchr(v, ':') : NULL;
        if (!colon) {
            cn_compat_reply_error(req, JAEGER, 400,
                                  "malformed 'tag' parameter, expecting key:value, received: "
                                  "%.64s",
                                  n >= 0 ? v : "(too long)");
            return -1;
        }
        *colon = '\0';
        if (add_tag(req, p, "tag", v, colon + 1) != 0)
            return -1;
    }
}

static int tags(struct cn_http_req *req, struct cn_compat_search *p)
{
    char *v = malloc(CN_COMPAT_MAX_PARAM);
    if (!v) {
        cn_compat_reply_error(req, JAEGER, 503, "out of memory");
        return -1;
    }
    int rc = tags_json(req, p, v);
    if (rc == 0)
        rc = tags_kv(req, p, v);
    free(v);
    return rc;
}

/* Jaeger's lookback: "1h", "2d", "custom" (then start/end say it all). */
static int parse_lookback(const char *v, uint64_t *out_ns)
{
    size_t n = strlen(v);
    if (n > 1 && v[n - 1] == 'd') {
        uint64_t days;
        if (cn_slice_to_u64((struct cn_slice){v, n - 1}, &days) != 0 || days > 36500)
            return CN_ESYNTAX;
        *out_ns = days * 86400 * CN_COMPAT_SEC_NS;
        return 0;
    }
    return cn_query_parse_duration(cn_slice_of(v), out_ns);
}

/* traceID=... (repeatable): these traces (the UI's compare view), nothing else counts. */
static int trace_ids(struct cn_http_req *req, struct cn_compat_search *p,
                     const struct cn_query_limits *lim)
{
    char v[128];
    for (size_t i = 0;; i++) {
        int n = cn_compat_param_n(req, "traceID", i, v, sizeof(v));
        if (n == -1)
            return 0;
        if (p->num_ids == lim->max_limit) {
            cn_compat_reply_error(req, JAEGER, 400,
                                  "more than %u traceID parameters (query.max_limit)",
                                  lim->max_limit);
            return -1;
        }
        uint8_t(*ids)[16] = realloc(p->ids, (p->num_ids + 1) * sizeof(*ids));
        if (!ids) {
            cn_compat_reply_error(req, JAEGER, 503, "out of memory");
            return -1;
        }
        p->ids = ids;
        if (n < 0 || cn_compat_parse_id((struct cn_slice){v, (size_t)n}, ids[p->num_ids]) != 0) {
            cn_compat_reply_error(req, JAEGER, 400, "cannot parse traceID param: '%.40s'",
                                  n < 0 ? "(too long)" : v);
            return -1;
        }
        p->num_ids++;
    }
}

/* start, end (µs) and lookback into the query's [from, to). */
static int time_range(struct cn_http_req *req, struct cn_compat_search *p,
                      const struct cn_query_limits *lim)
{
    uint64_t end_us = cn_compat_now_ns() / 1000, start_us = 0;
    uint64_t lookback_ns = CN_MIN(2 * 86400 * CN_COMPAT_SEC_NS, lim->max_range_ns);
    char v[64];
    int rc;
    if (cn_compat_param_u64(req, JAEGER, "end", 1, UINT64_MAX / 1000, &end_us) < 0 ||
        (rc = cn_compat_param_u64(req, JAEGER, "start", 0, UINT64_MAX / 1000, &start_us)) < 0)
        return -1;
    int has_start = rc > 0;
    if ((rc = cn_compat_param(req, JAEGER, "lookback", v, sizeof(v))) < 0)
        return -1;
    if (rc > 0 && strcmp(v, "custom") != 0 && parse_lookback(v, &lookback_ns) != 0) {
        cn_compat_reply_error(req, JAEGER, 400,
                              "unable to parse param 'lookback': '%.40s' (e.g. 1h, 2d, custom)", v);
        return -1;
    }
    if (!has_start)
        start_us = end_us > lookback_ns / 1000 ? end_us - lookback_ns / 1000 : 0;
    if (start_us >= end_us) {
        cn_compat_reply_error(req, JAEGER, 400, "'end' should be after 'start'");
        return -1;
    }
    if ((end_us - start_us) * 1000 > lim->max_range_ns) {
        cn_compat_reply_error(req, JAEGER, 400,
                              "'start' to 'end' is wider than %llu s (query.max_range)",
                              (unsigned long long)(lim->max_range_ns / CN_COMPAT_SEC_NS));
        return -1;
    }
    p->q.from_ns = start_us * 1000;
    p->q.to_ns = end_us * 1000;
    return 0;
}

static int search_params(struct cn_http_req *req, struct cn_compat_search *p,
                         const struct cn_query_limits *lim)
{
    char v[64];
    int rc;
    if (trace_ids(req, p, lim) != 0 ||
        (rc = cn_compat_param(req, JAEGER, "service", p->service, sizeof(p->service))) < 0)
        return -1;
    if (rc == 0 && p->num_ids == 0) {
        cn_compat_reply_error(req, JAEGER, 400, "parameter 'service' is required");
        return -1;
    }
    if (rc > 0)
        p->q.service = cn_slice_of(p->service);
    if ((rc = cn_compat_param(req, JAEGER, "operation", p->operation, sizeof(p->operation))) < 0)
        return -1;
    if (rc > 0)
        p->q.operation = cn_slice_of(p->operation);
    if ((rc = cn_compat_param(req, JAEGER, "spanKind", v, sizeof(v))) < 0)
        return -1;
    if (rc > 0 && cn_query_parse_kind(cn_slice_of(v), &p->q.kind) != 0) {
        cn_compat_reply_error(req, JAEGER, 400, "unable to parse param 'spanKind': '%.40s'", v);
        return -1;
    }
    uint64_t limit = CN_MIN(100u, lim->max_limit);
    if (cn_compat_param_u64(req, JAEGER, "limit", 1, lim->max_limit, &limit) < 0 ||
        time_range(req, p, lim) != 0 ||
        cn_compat_param_duration(req, JAEGER, "minDuration", &p->q.min_duration_ns) < 0 ||
        cn_compat_param_duration(req, JAEGER, "maxDuration", &p->q.max_duration_ns) < 0)
        return -1;
    if (p->q.min_duration_ns && p->q.max_duration_ns &&
        p->q.max_duration_ns < p->q.min_duration_ns) {
        cn_compat_reply_error(req, JAEGER, 400,
                              "'maxDuration' should be greater than 'minDuration'");
        return -1;
    }
    p->q.limit = (size_t)limit;
    return tags(req, p);
}

static void h_search(struct cn_http_req *req, void *ctx)
{
    static const char *const names[] = {
        "service",  "operation",   "tag",         "tags",    "start",       "end",      "limit",
        "lookback", "minDuration", "maxDuration", "traceID", "prettyPrint", "spanKind", NULL};
    struct cn_compat_search *p;
    if (cn_compat_check(req, ctx, JAEGER, names) != 0 || !(p = cn_compat_search_new(req, JAEGER)))
        return;
    struct cn_query_limits lim;
    cn_compat_limits(ctx, &lim);
    p->render = jaeger_trace;
    if (search_params(req, p, &lim) != 0) {
        cn_compat_search_free(p);
        return;
    }
    cn_compat_submit(req, ctx, JAEGER, cn_compat_work_search, cn_compat_search_release, p);
}

int cn_api_jaeger_routes(struct cn_up *up, struct cn_router *r)
{
    static const struct cn_compat_route routes[] = {
        {"/api/services", h_services},     {"/api/services/{service}/operations", h_service_ops},
        {"/api/operations", h_operations}, {"/api/traces", h_search},
        {"/api/traces/{id}", h_trace},     {"/api/dependencies", h_dependencies},
    };
    return cn_compat_add_routes(up, r, routes, CN_ARRAY_LEN(routes));
}
