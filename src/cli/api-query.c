/* The native query API under /api/v1 (docs/query.md): trace by ID and its logs, trace
 * search, services and operations, autocomplete, RED series, topology, logs search and
 * live tail. Searches run on the libuv threadpool and answer from its after-callback, so a
 * worker's loop never waits for a scan. */
#include "base/log.h"
#include "cli/up.h"
#include "http/json.h"
#include "telemetry/query.h"
#include "telemetry/render.h"
#include "telemetry/tail.h"

#include <time.h>

#define MAX_PARAMS        64
#define DEFAULT_RANGE_NS  (3600ull * 1000000000ull) /* start defaults to end - 1 h */
#define TAIL_TICK_MS      1000
#define TAIL_HEARTBEAT_MS 10000
#define TAIL_PENDING      (1u << 20) /* records waiting for a slow tail reader */

/* ---- query string ---------------------------------------------------------------------- */

struct param {
    const char *name; /* NUL-terminated, in the decoded buffer */
    char *value;
    size_t len;
};

/* Every parameter of a request, percent-decoded ('+' is a space) into one buffer. */
struct params {
    struct param items[MAX_PARAMS];
    size_t num;
    char *buf;
};

static int unhex(char c)
{
    return cn_hexval(c);
}

/* Decodes src into dst (NUL-terminated); returns the length or -1 for a bad escape. */
static long decode(char *dst, const char *src, size_t n)
{
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        if (src[i] == '%') {
            if (i + 2 >= n)
                return -1;
            int h = unhex(src[i + 1]), l = unhex(src[i + 2]);
            if (h < 0 || l < 0)
                return -1;
            dst[o++] = (char)(h * 16 + l);
            i += 2;
        } else {
            dst[o++] = src[i] == '+' ? ' ' : src[i];
        }
    }
    dst[o] = '\0';
    return (long)o;
}

static void params_release(struct params *p)
{
    cn_free(&p->buf);
}

/* Splits req's query into p and checks every name against allowed (NULL-terminated).
 * Replies 400 and returns -1 on an unknown name, a bad escape, too many parameters. */
static int params_parse(struct cn_http_req *req, struct params *p, const char *const *allowed)
{
    memset(p, 0, sizeof(*p));
    p->buf = malloc(req->query.len * 2 + 2);
    if (!p->buf) {
        cn_http_reply_json_error(req, 503, NULL, "out of memory");
        return -1;
    }
    char *o = p->buf;
    const char *s = req->query.ptr, *end = s + req->query.len;
    while (s && s < end) {
        const char *amp = memchr(s, '&', (size_t)(end - s));
        const char *e = amp ? amp : end;
        if (e > s) {
            const char *eq = memchr(s, '=', (size_t)(e - s));
            const char *ne = eq ? eq : e;
            long nl = decode(o, s, (size_t)(ne - s));
            if (nl < 0) {
                cn_http_reply_json_error(req, 400, NULL, "malformed percent-escape in the query");
                params_release(p);
                return -1;
            }
            char *name = o;
            o += nl + 1;
            long vl = eq ? decode(o, eq + 1, (size_t)(e - eq - 1)) : (*o = '\0', 0);
            if (vl < 0) {
                cn_http_reply_json_error(req, 400, name, "malformed percent-escape");
                params_release(p);
                return -1;
            }
            int known = 0;
            for (size_t i = 0; allowed[i] && !known; i++)
                known = strcmp(allowed[i], name) == 0;
            if (!known) {
                cn_http_reply_json_error(req, 400, name, "unknown parameter");
                params_release(p);
                return -1;
            }
            if (p->num == MAX_PARAMS) {
                cn_http_reply_json_error(req, 400, name, "too many parameters (64 at most)");
                params_release(p);
                return -1;
            }
            p->items[p->num++] = (struct param){name, o, (size_t)vl};
            o += vl + 1;
        }
        s = amp ? amp + 1 : end;
    }
    return 0;
}

/* The last value of name, or NULL. Repeating a single-valued parameter: the last counts. */
static const struct param *get(const struct params *p, const char *name)
{
    const struct param *r = NULL;
    for (size_t i = 0; i < p->num; i++)
        if (strcmp(p->items[i].name, name) == 0)
            r = &p->items[i];
    return r;
}

static struct cn_slice sl(const struct param *v)
{
    return (struct cn_slice){v->value, v->len};
}

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* start/end with their defaults (end: now, start: end - 1 h). Replies 400 on failure. */
static int get_range(struct cn_http_req *req, const struct params *p,
                     const struct cn_query_limits *lim, uint64_t *from, uint64_t *to)
{
    const struct param *s = get(p, "start"), *e = get(p, "end");
    *to = now_ns();
    if (e && cn_query_parse_time(sl(e), to) != 0) {
        cn_http_reply_json_error(req, 400, "end",
                                 "not a time: use RFC 3339 or an integer with a unit suffix "
                                 "(s, ms, us, ns)");
        return -1;
    }
    *from = *to > DEFAULT_RANGE_NS ? *to - DEFAULT_RANGE_NS : 0;
    if (s && cn_query_parse_time(sl(s), from) != 0) {
        cn_http_reply_json_error(req, 400, "start",
                                 "not a time: use RFC 3339 or an integer with a unit suffix "
                                 "(s, ms, us, ns)");
        return -1;
    }
    if (*to <= *from) {
        cn_http_reply_json_error(req, 400, "start", "start must be before end");
        return -1;
    }
    if (lim && *to - *from > lim->max_range_ns) {
        char msg[128];
        snprintf(msg, sizeof(msg), "time range wider than query.max_range (%llus)",
                 (unsigned long long)(lim->max_range_ns / 1000000000ull));
        cn_http_reply_json_error(req, 400, "start", msg);
        return -1;
    }
    return 0;
}

static int get_limit(struct cn_http_req *req, const struct params *p,
                     const struct cn_query_limits *lim, size_t *out)
{
    const struct param *v = get(p, "limit");
    uint64_t n = lim->default_limit;
    if (v && (cn_slice_to_u64(sl(v), &n) != 0 || n < 1 || n > lim->max_limit)) {
        char msg[96];
        snprintf(msg, sizeof(msg), "limit must be a number from 1 to %u (query.max_limit)",
                 lim->max_limit);
        cn_http_reply_json_error(req, 400, "limit", msg);
        return -1;
    }
    *out = (size_t)n;
    return 0;
}

static int get_duration(struct cn_http_req *req, const struct params *p, const char *name,
                        uint64_t *out)
{
    const struct param *v = get(p, name);
    *out = 0;
    if (v && cn_query_parse_duration(sl(v), out) != 0) {
        cn_http_reply_json_error(req, 400, name,
                                 "not a duration: a number with a unit (ns, us, ms, s, m, h), "
                                 "e.g. 250ms or 1.5s");
        return -1;
    }
    return 0;
}

static int parse_hex_id(struct cn_http_req *req, const char *param, struct cn_slice hex,
                        uint8_t id[16])
{
    if (cn_hex_decode(id, 16, hex) != 0 || cn_id_is_zero(id, 16)) {
        cn_http_reply_json_error(req, 400, param, "trace id must be 32 hex digits, not all zero");
        return -1;
    }
    return 0;
}

static json_t *ns_str(uint64_t v)
{
    char b[24];
    snprintf(b, sizeof(b), "%llu", (unsigned long long)v);
    return json_string(b);
}

static json_t *slice_str(struct cn_slice s)
{
    json_t *j = json_stringn(s.ptr ? s.ptr : "", s.len);
    return j ? j : json_string("");
}

static double ms(double ns)
{
    return ns / 1e6;
}

/* The settings a query reads, taken once per request from the configuration in force. */
struct qcfg {
    struct cn_query_limits lim;
    struct cn_code_links *cl; /* NULL when telemetry.code_links is empty */
};

static int qcfg_get(struct cn_up *up, struct qcfg *q, int want_links)
{
    struct cn_config *cfg = cn_up_config(up);
    cn_config_query_limits(cfg, &q->lim);
    q->cl = NULL;
    int rc = 0;
    if (want_links && cfg->telemetry.code_links && strcmp(cfg->telemetry.code_links, "{}") != 0) {
        char err[256];
        q->cl = cn_config_code_links(cfg, err, sizeof(err));
        if (!q->cl) {
            cn_error("query", "code links unusable", "error=\"%s\"", err);
            rc = -1;
        }
    }
    cn_config_unref(cfg);
    return rc;
}

/* ---- asynchronous jobs ----------------------------------------------------------------- */

enum job_kind { J_TRACES, J_LOGS, J_TAGS, J_TOPO, J_TRACE, J_TRACE_LOGS };

/* A query handed to the threadpool. req is NULL once the client went away; the job then
 * finishes its work and frees itself without replying. */
struct job {
    enum job_kind kind;
    struct cn_http_req *req;
    struct cn_up *up;
    struct params params;
    struct qcfg cfg;
    struct cn_pred preds[CN_QUERY_MAX_PREDS];
    size_t num_preds;
    struct cn_slice terms[CN_QUERY_MAX_TERMS];
    struct cn_trace_query tq;
    struct cn_log_query lq;
    struct cn_tag_query gq;
    uint64_t from_ns, to_ns;
    uint32_t depth;
    uint8_t id[16];
    char *key; /* decoded path segment of /tags/{key}/values */
    /* Results. */
    json_t *out;
    int status;
    const char *err_param;
    char err[256];
};

static void job_free(struct job *j)
{
    for (size_t i = 0; i < j->num_preds; i++)
        cn_pred_release(&j->preds[i]);
    params_release(&j->params);
    free(j->key);
    cn_code_links_free(j->cfg.cl);
    json_decref(j->out);
    free(j);
}

static void job_abort(struct cn_http_req *req)
{
    struct job *j = req->data;
    j->req = NULL;
}

static json_t *trace_summary_json(const struct cn_derive_trace *t)
{
    json_t *o = json_object();
    char hex[33];
    cn_hex_encode(hex, t->trace_id, 16);
    json_object_set_new(o, "traceId", json_string(hex));
    json_object_set_new(o, "rootService", slice_str(t->root_service));
    json_object_set_new(o, "rootOperation", slice_str(t->root_operation));
    json_object_set_new(o, "hasRoot", json_boolean(t->has_root));
    json_object_set_new(o, "startTimeUnixNano", ns_str(t->start_ns));
    json_object_set_new(o, "durationNano", ns_str(t->duration_ns));
    json_object_set_new(o, "durationMs", json_real(ms((double)t->duration_ns)));
    json_object_set_new(o, "spanCount", json_integer(t->num_spans));
    json_object_set_new(o, "errorCount", json_integer(t->num_errors));
    json_t *svcs = json_array();
    for (uint32_t i = 0; i < t->num_services; i++)
        json_array_append_new(svcs, slice_str(t->services[i]));
    json_object_set_new(o, "services", svcs);
    json_object_set_new(o, "servicesTruncated", json_boolean(t->services_truncated));
    char link[64];
    snprintf(link, sizeof(link), "/api/v1/traces/%s", hex);
    json_object_set_new(o, "link", json_string(link));
    return o;
}

static void edge_json(json_t *arr, const struct cn_derive_edge *e)
{
    json_t *o = json_object();
    json_object_set_new(o, "caller", slice_str(e->caller));
    json_object_set_new(o, "callee", slice_str(e->callee));
    json_object_set_new(o, "type",
                        json_string(e->type == CN_DERIVE_EDGE_MESSAGING ? "messaging" : "rpc"));
    json_object_set_new(o, "uninstrumented", json_boolean(e->uninstrumented));
    json_object_set_new(o, "count", json_integer((json_int_t)e->count));
    json_object_set_new(o, "errors", json_integer((json_int_t)e->errors));
    json_object_set_new(o, "errorRatio",
                        json_real(e->count ? (double)e->errors / (double)e->count : 0));
    json_object_set_new(o, "p50Ms", json_real(ms(e->server_p50_ns)));
    json_object_set_new(o, "p95Ms", json_real(ms(e->server_p95_ns)));
    json_object_set_new(o, "p99Ms", json_real(ms(e->server_p99_ns)));
    json_object_set_new(o, "clientP50Ms", json_real(ms(e->client_p50_ns)));
    json_object_set_new(o, "clientP95Ms", json_real(ms(e->client_p95_ns)));
    json_object_set_new(o, "clientP99Ms", json_real(ms(e->client_p99_ns)));
    json_array_append_new(arr, o);
}

static void collect_span(void *ctx, const struct cn_span *s);
static void collect_log(void *ctx, const struct cn_log *l);

struct collect {
    json_t *arr;
    const struct cn_code_links *cl;
};

static int by_start(const void *a, const void *b)
{
    const char *x = json_string_value(json_object_get(*(json_t *const *)a, "startTimeUnixNano"));
    const char *y = json_string_value(json_object_get(*(json_t *const *)b, "startTimeUnixNano"));
    size_t lx = strlen(x), ly = strlen(y);
    return lx != ly ? (lx < ly ? -1 : 1) : strcmp(x, y);
}

static void job_work(void *arg)
{
    struct job *j = arg;
    j->status = 200;
    switch (j->kind) {
    case J_TRACES: {
        struct cn_trace_result r;
        int rc = cn_query_traces(j->up->store, &j->cfg.lim, &j->tq, &r, j->err, sizeof(j->err));
        if (rc) {
            j->status = rc == CN_EINVAL ? 400 : 503;
            j->err_param = rc == CN_EINVAL ? "start" : NULL;
            return;
        }
        json_t *arr = json_array();
        for (size_t i = 0; i < r.num; i++)
            json_array_append_new(arr, trace_summary_json(&r.traces[i]));
        j->out = json_object();
        json_object_set_new(j->out, "traces", arr);
        json_object_set_new(j->out, "limit", json_integer((json_int_t)j->tq.limit));
        json_object_set_new(j->out, "scanned", json_integer((json_int_t)r.scanned));
        json_object_set_new(j->out, "truncated", json_boolean(r.truncated));
        cn_trace_result_release(&r);
        return;
    }
    case J_LOGS: {
        struct cn_log_result r;
        int rc =
            cn_query_logs(j->up->store, &j->cfg.lim, j->cfg.cl, &j->lq, &r, j->err, sizeof(j->err));
        if (rc) {
            j->status = rc == CN_EINVAL ? 400 : 503;
            j->err_param = rc == CN_EINVAL ? "start" : NULL;
            return;
        }
        j->out = json_object();
        json_object_set_new(j->out, "logs", json_incref(r.logs));
        json_object_set_new(j->out, "limit", json_integer((json_int_t)j->lq.limit));
        json_object_set_new(j->out, "scanned", json_integer((json_int_t)r.scanned));
        json_object_set_new(j->out, "truncated", json_boolean(r.truncated));
        cn_log_result_release(&r);
        return;
    }
    case J_TAGS: {
        struct cn_tag_result r;
        int rc = cn_query_tags(j->up->store, &j->cfg.lim, &j->gq, &r, j->err, sizeof(j->err));
        if (rc) {
            j->status = rc == CN_EINVAL ? 400 : 503;
            j->err_param = rc == CN_EINVAL ? "start" : NULL;
            return;
        }
        json_t *arr = json_array();
        for (size_t i = 0; i < r.num; i++) {
            json_t *o = json_object();
            json_object_set_new(o, j->gq.key.ptr ? "value" : "key",
                                slice_str(cn_slice_of(r.items[i].name)));
            json_object_set_new(o, "count", json_integer((json_int_t)r.items[i].count));
            json_array_append_new(arr, o);
        }
        j->out = json_object();
        if (j->gq.key.ptr)
            json_object_set_new(j->out, "key", slice_str(j->gq.key));
        json_object_set_new(j->out, j->gq.key.ptr ? "values" : "keys", arr);
        json_object_set_new(j->out, "scanned", json_integer((json_int_t)r.scanned));
        json_object_set_new(j->out, "truncated", json_boolean(r.truncated));
        cn_tag_result_release(&r);
        return;
    }
    case J_TOPO: {
        struct cn_topology t;
        struct cn_derive *d = cn_store_derive(j->up->store);
        int rc =
            d ? cn_query_topology(d, &t, j->from_ns, j->to_ns, j->tq.service, j->depth) : CN_ENOENT;
        if (rc == CN_ENOENT) {
            j->status = 404;
            j->err_param = "service";
            snprintf(j->err, sizeof(j->err), "service not found");
            return;
        }
        if (rc) {
            j->status = rc == CN_EINVAL ? 400 : 503;
            j->err_param = rc == CN_EINVAL ? "start" : NULL;
            snprintf(j->err, sizeof(j->err), "%s", cn_strerror(rc));
            return;
        }
        double secs = (double)(t.to_ns - t.from_ns) / 1e9;
        json_t *nodes = json_array(), *edges = json_array();
        for (size_t i = 0; i < t.num_nodes; i++) {
            const struct cn_topo_node *n = &t.nodes[i];
            json_t *o = json_object();
            json_object_set_new(o, "service", slice_str(n->service));
            json_object_set_new(o, "count", json_integer((json_int_t)n->count));
            json_object_set_new(o, "errors", json_integer((json_int_t)n->errors));
            json_object_set_new(o, "rate", json_real(secs > 0 ? (double)n->count / secs : 0));
            json_object_set_new(o, "errorRate", json_real(secs > 0 ? (double)n->errors / secs : 0));
            json_object_set_new(o, "errorRatio",
                                json_real(n->count ? (double)n->errors / (double)n->count : 0));
            json_object_set_new(o, "p50Ms", json_real(ms(n->p50_ns)));
            json_object_set_new(o, "p95Ms", json_real(ms(n->p95_ns)));
            json_object_set_new(o, "p99Ms", json_real(ms(n->p99_ns)));
            json_array_append_new(nodes, o);
        }
        for (size_t i = 0; i < t.num_edges; i++)
            edge_json(edges, &t.edges[i]);
        j->out = json_object();
        json_object_set_new(j->out, "start", ns_str(t.from_ns));
        json_object_set_new(j->out, "end", ns_str(t.to_ns));
        json_object_set_new(j->out, "nodes", nodes);
        json_object_set_new(j->out, "edges", edges);
        cn_topology_release(&t);
        return;
    }
    case J_TRACE: {
        struct collect c = {json_array(), j->cfg.cl};
        size_t n = cn_store_trace(j->up->store, j->id, collect_span, &c);
        if (n == 0) {
            json_decref(c.arr);
            j->status = 404;
            j->err_param = "id";
            snprintf(j->err, sizeof(j->err), "trace not found");
            return;
        }
        /* Order by start time (ties keep ingest order). */
        size_t len = json_array_size(c.arr);
        json_t **items = malloc(len * sizeof(*items));
        if (items) {
            for (size_t i = 0; i < len; i++)
                items[i] = json_incref(json_array_get(c.arr, i));
            qsort(items, len, sizeof(*items), by_start);
            json_array_clear(c.arr);
            for (size_t i = 0; i < len; i++)
                json_array_append_new(c.arr, items[i]);
            free(items);
        }
        char hex[33];
        cn_hex_encode(hex, j->id, 16);
        j->out = json_object();
        json_object_set_new(j->out, "traceId", json_string(hex));
        json_object_set_new(j->out, "spans", c.arr);
        return;
    }
    case J_TRACE_LOGS: {
        struct collect c = {json_array(), j->cfg.cl};
        cn_store_trace_logs(j->up->store, j->id, collect_log, &c);
        char hex[33];
        cn_hex_encode(hex, j->id, 16);
        j->out = json_object();
        json_object_set_new(j->out, "traceId", json_string(hex));
        json_object_set_new(j->out, "logs", c.arr);
        return;
    }
    }
}

static void collect_span(void *ctx, const struct cn_span *s)
{
    struct collect *c = ctx;
    json_array_append_new(c->arr, cn_query_render_span(c->cl, s));
}

/* A trace's logs keep the plain OTLP shape (the trace is known): only "codeUrl" is added. */
static void collect_log(void *ctx, const struct cn_log *l)
{
    struct collect *c = ctx;
    json_t *j = cn_render_log(l);
    char url[2048];
    int n = j ? cn_code_url(c->cl, l->resource, &l->attrs, url, sizeof(url)) : 0;
    if (n > 0)
        json_object_set_new(j, "codeUrl", json_stringn(url, (size_t)n));
    json_array_append_new(c->arr, j);
}

static void job_done(void *arg)
{
    struct job *j = arg;
    struct cn_http_req *req = j->req;
    if (req) {
        req->abort_cb = NULL;
        req->data = NULL;
        if (j->status == 200 && j->out) {
            cn_http_reply_json(req, 200, j->out);
            j->out = NULL;
        } else {
            cn_http_reply_json_error(req, j->status == 200 ? 503 : j->status, j->err_param,
                                     j->err[0] ? j->err : "query failed");
        }
    }
    job_free(j);
}

/* A new job for req with its parameters parsed against allowed; replies and returns NULL on
 * failure. */
static struct job *job_new(struct cn_http_req *req, struct cn_up *up, enum job_kind kind,
                           const char *const *allowed, int want_links)
{
    struct job *j = calloc(1, sizeof(*j));
    if (!j) {
        cn_http_reply_json_error(req, 503, NULL, "out of memory");
        return NULL;
    }
    j->kind = kind;
    j->up = up;
    j->tq.status = j->tq.kind = -1;
    if (params_parse(req, &j->params, allowed) != 0) {
        free(j);
        return NULL;
    }
    if (qcfg_get(up, &j->cfg, want_links) != 0) {
        cn_http_reply_json_error(req, 500, NULL, "telemetry.code_links is unusable");
        job_free(j);
        return NULL;
    }
    return j;
}

static void job_start(struct cn_http_req *req, struct job *j)
{
    j->req = req;
    if (cn_query_submit(req->worker->loop, job_work, job_done, j) != 0) {
        cn_http_reply_json_error(req, 503, NULL, "cannot start the query");
        job_free(j);
        return;
    }
    req->data = j;
    req->abort_cb = job_abort;
}

/* Parses every "tag" parameter into j->preds. */
static int get_preds(struct cn_http_req *req, struct job *j, const char *name)
{
    for (size_t i = 0; i < j->params.num; i++) {
        const struct param *v = &j->params.items[i];
        if (strcmp(v->name, name) != 0)
            continue;
        if (j->num_preds == CN_QUERY_MAX_PREDS) {
            cn_http_reply_json_error(req, 400, name, "too many predicates (32 at most)");
            return -1;
        }
        char err[256], msg[300];
        if (cn_pred_parse(&j->preds[j->num_preds], sl(v), err, sizeof(err)) != 0) {
            snprintf(msg, sizeof(msg), "%s: %s", name, err);
            cn_http_reply_json_error(req, 400, name, msg);
            return -1;
        }
        j->num_preds++;
    }
    return 0;
}

/* ---- handlers -------------------------------------------------------------------------- */

static void h_trace(struct cn_http_req *req, void *ctx)
{
    static const char *const allowed[] = {NULL};
    struct job *j = job_new(req, ctx, J_TRACE, allowed, 1);
    if (!j)
        return;
    if (parse_hex_id(req, "id", req->params.values[0], j->id) != 0) {
        job_free(j);
        return;
    }
    job_start(req, j);
}

static void h_trace_logs(struct cn_http_req *req, void *ctx)
{
    static const char *const allowed[] = {NULL};
    struct job *j = job_new(req, ctx, J_TRACE_LOGS, allowed, 1);
    if (!j)
        return;
    if (parse_hex_id(req, "id", req->params.values[0], j->id) != 0) {
        job_free(j);
        return;
    }
    job_start(req, j);
}

static void h_traces(struct cn_http_req *req, void *ctx)
{
    static const char *const allowed[] = {"service",     "operation", "tag",   "minDuration",
                                          "maxDuration", "status",    "kind",  "start",
                                          "end",         "limit",     "order", NULL};
    struct job *j = job_new(req, ctx, J_TRACES, allowed, 0);
    if (!j)
        return;
    struct cn_trace_query *q = &j->tq;
    const struct param *v;
    if ((v = get(&j->params, "service")))
        q->service = sl(v);
    if ((v = get(&j->params, "operation")))
        q->operation = sl(v);
    if (get_preds(req, j, "tag") != 0 ||
        get_duration(req, &j->params, "minDuration", &q->min_duration_ns) != 0 ||
        get_duration(req, &j->params, "maxDuration", &q->max_duration_ns) != 0)
        goto fail;
    if (q->min_duration_ns && q->max_duration_ns && q->max_duration_ns < q->min_duration_ns) {
        cn_http_reply_json_error(req, 400, "maxDuration", "maxDuration is below minDuration");
        goto fail;
    }
    if ((v = get(&j->params, "status")) && cn_query_parse_status(sl(v), &q->status) != 0) {
        cn_http_reply_json_error(req, 400, "status", "status must be ok, error or unset");
        goto fail;
    }
    if ((v = get(&j->params, "kind")) && cn_query_parse_kind(sl(v), &q->kind) != 0) {
        cn_http_reply_json_error(req, 400, "kind",
                                 "kind must be server, client, producer, consumer, internal or "
                                 "unspecified");
        goto fail;
    }
    if ((v = get(&j->params, "order"))) {
        if (cn_slice_eq(sl(v), CN_SLICE_LIT("start"))) {
            q->order = CN_ORDER_START;
        } else if (cn_slice_eq(sl(v), CN_SLICE_LIT("duration"))) {
            q->order = CN_ORDER_DURATION;
        } else {
            cn_http_reply_json_error(req, 400, "order", "order must be start or duration");
            goto fail;
        }
    }
    if (get_range(req, &j->params, &j->cfg.lim, &q->from_ns, &q->to_ns) != 0 ||
        get_limit(req, &j->params, &j->cfg.lim, &q->limit) != 0)
        goto fail;
    q->preds = j->preds;
    q->num_preds = j->num_preds;
    job_start(req, j);
    return;
fail:
    job_free(j);
}

/* Fills j->lq from the parameters (shared by the search and the tail). */
static int log_query(struct cn_http_req *req, struct job *j)
{
    struct cn_log_query *q = &j->lq;
    const struct param *v;
    if ((v = get(&j->params, "service")))
        q->service = sl(v);
    if ((v = get(&j->params, "severity")) && cn_query_parse_severity(sl(v), &q->min_severity)) {
        cn_http_reply_json_error(req, 400, "severity",
                                 "severity must be trace, debug, info, warn, error, fatal or "
                                 "1..24");
        return -1;
    }
    if ((v = get(&j->params, "traceId")) && parse_hex_id(req, "traceId", sl(v), q->trace_id))
        return -1;
    for (size_t i = 0; i < j->params.num; i++) {
        const struct param *t = &j->params.items[i];
        if (strcmp(t->name, "q") != 0)
            continue;
        if (q->num_terms == CN_QUERY_MAX_TERMS) {
            cn_http_reply_json_error(req, 400, "q", "too many search terms (16 at most)");
            return -1;
        }
        if (t->len > CN_QUERY_MAX_TERM_BYTES) {
            cn_http_reply_json_error(req, 400, "q", "search term too long (256 bytes at most)");
            return -1;
        }
        j->terms[q->num_terms++] = sl(t);
    }
    if (get_preds(req, j, "attr") != 0)
        return -1;
    q->terms = j->terms;
    q->preds = j->preds;
    q->num_preds = j->num_preds;
    return 0;
}

static void h_logs(struct cn_http_req *req, void *ctx)
{
    static const char *const allowed[] = {"service", "severity", "q",     "attr", "traceId",
                                          "start",   "end",      "limit", NULL};
    struct job *j = job_new(req, ctx, J_LOGS, allowed, 1);
    if (!j)
        return;
    if (log_query(req, j) != 0 ||
        get_range(req, &j->params, &j->cfg.lim, &j->lq.from_ns, &j->lq.to_ns) != 0 ||
        get_limit(req, &j->params, &j->cfg.lim, &j->lq.limit) != 0) {
        job_free(j);
        return;
    }
    job_start(req, j);
}

static void h_tags(struct cn_http_req *req, void *ctx)
{
    static const char *const allowed[] = {"service", "start", "end", "limit", NULL};
    int values = req->params.num > 0;
    struct job *j = job_new(req, ctx, J_TAGS, allowed, 0);
    if (!j)
        return;
    const struct param *v;
    if ((v = get(&j->params, "service")))
        j->gq.service = sl(v);
    if (values) {
        /* The router gives the raw segment: decode it into the job's buffer. */
        struct cn_slice raw = req->params.values[0];
        j->key = malloc(raw.len + 1);
        long n = j->key ? decode(j->key, raw.ptr, raw.len) : -1;
        if (n <= 0 || n > CN_QUERY_MAX_KEY_BYTES) {
            cn_http_reply_json_error(req, 400, "key",
                                     "attribute key must be 1..256 bytes, percent-encoded");
            job_free(j);
            return;
        }
        j->gq.key = (struct cn_slice){j->key, (size_t)n};
    }
    if (get_range(req, &j->params, &j->cfg.lim, &j->gq.from_ns, &j->gq.to_ns) != 0 ||
        get_limit(req, &j->params, &j->cfg.lim, &j->gq.limit) != 0) {
        job_free(j);
        return;
    }
    job_start(req, j);
}

static void h_topology(struct cn_http_req *req, void *ctx)
{
    static const char *const allowed[] = {"service", "depth", "start", "end", NULL};
    struct job *j = job_new(req, ctx, J_TOPO, allowed, 0);
    if (!j)
        return;
    const struct param *v;
    if ((v = get(&j->params, "service")))
        j->tq.service = sl(v);
    uint64_t depth = 0;
    if ((v = get(&j->params, "depth")) &&
        (cn_slice_to_u64(sl(v), &depth) != 0 || depth > 100 || !j->tq.service.ptr)) {
        cn_http_reply_json_error(req, 400, "depth",
                                 j->tq.service.ptr ? "depth must be 0..100 (0: no limit)"
                                                   : "depth needs a service");
        job_free(j);
        return;
    }
    j->depth = (uint32_t)depth;
    if (get_range(req, &j->params, &j->cfg.lim, &j->from_ns, &j->to_ns) != 0) {
        job_free(j);
        return;
    }
    job_start(req, j);
}

/* Services and operations read the derived tables' small name lists: answered inline. */
static void h_services(struct cn_http_req *req, void *ctx)
{
    struct cn_up *up = ctx;
    static const char *const allowed[] = {NULL};
    struct params p;
    if (params_parse(req, &p, allowed) != 0)
        return;
    params_release(&p);
    struct cn_derive *d = cn_store_derive(up->store);
    struct cn_slice *names = NULL;
    size_t n = 0;
    if (d && cn_derive_services(d, &names, &n) != 0) {
        cn_http_reply_json_error(req, 503, NULL, "out of memory");
        return;
    }
    json_t *arr = json_array();
    for (size_t i = 0; i < n; i++)
        json_array_append_new(arr, slice_str(names[i]));
    free(names);
    json_t *o = json_object();
    json_object_set_new(o, "services", arr);
    cn_http_reply_json(req, 200, o);
}

static void h_operations(struct cn_http_req *req, void *ctx)
{
    struct cn_up *up = ctx;
    static const char *const allowed[] = {"kind", NULL};
    struct params p;
    if (params_parse(req, &p, allowed) != 0)
        return;
    int kind = -1;
    const struct param *v = get(&p, "kind");
    if (v && cn_query_parse_kind(sl(v), &kind) != 0) {
        params_release(&p);
        cn_http_reply_json_error(req, 400, "kind",
                                 "kind must be server, client, producer, consumer, internal or "
                                 "unspecified");
        return;
    }
    params_release(&p);
    struct cn_slice raw = req->params.values[0];
    char svc[512];
    long sn = raw.len < sizeof(svc) ? decode(svc, raw.ptr, raw.len) : -1;
    if (sn < 0) {
        cn_http_reply_json_error(req, 400, "service", "malformed service name");
        return;
    }
    struct cn_derive *d = cn_store_derive(up->store);
    struct cn_derive_op *ops = NULL;
    size_t n = 0;
    /* Every span name the service emitted, whatever its kind (not only what RED counts). */
    int rc = d ? cn_derive_span_names(d, &ops, &n, (struct cn_slice){svc, (size_t)sn}) : 0;
    if (rc != 0 && rc != CN_ENOENT) {
        cn_http_reply_json_error(req, 503, NULL, "out of memory");
        return;
    }
    json_t *arr = json_array();
    for (size_t i = 0; i < n; i++) {
        if (kind >= 0 && ops[i].kind != kind)
            continue;
        json_t *o = json_object();
        json_object_set_new(o, "name", slice_str(ops[i].name));
        json_object_set_new(o, "kind", json_string(cn_query_kind_name(ops[i].kind)));
        json_array_append_new(arr, o);
    }
    free(ops);
    json_t *o = json_object();
    json_object_set_new(o, "service", slice_str((struct cn_slice){svc, (size_t)sn}));
    json_object_set_new(o, "operations", arr);
    cn_http_reply_json(req, 200, o);
}

/* RED reads at most CN_DERIVE_MAX_POINTS steps of the derived table: answered inline. */
static void h_red(struct cn_http_req *req, void *ctx)
{
    struct cn_up *up = ctx;
    static const char *const allowed[] = {"service", "operation", "kind", "start",
                                          "end",     "step",      NULL};
    struct params p;
    if (params_parse(req, &p, allowed) != 0)
        return;
    struct cn_derive_red_query q = {0};
    const struct param *v;
    struct cn_derive *d = cn_store_derive(up->store);
    uint64_t w = d ? cn_derive_opts(d)->bucket_ns : 10000000000ull;
    if (!(v = get(&p, "service"))) {
        cn_http_reply_json_error(req, 400, "service", "service is required");
        goto out;
    }
    q.service = sl(v);
    if ((v = get(&p, "operation")))
        q.operation = sl(v);
    int kind = -1;
    if ((v = get(&p, "kind"))) {
        if (cn_query_parse_kind(sl(v), &kind) != 0) {
            cn_http_reply_json_error(req, 400, "kind", "kind must be a span kind name");
            goto out;
        }
        q.kind_mask = CN_DERIVE_KIND_MASK(kind);
    }
    if (get_range(req, &p, NULL, &q.from_ns, &q.to_ns) != 0 ||
        get_duration(req, &p, "step", &q.step_ns) != 0)
        goto out;
    if (!get(&p, "step"))
        q.step_ns = (q.to_ns - q.from_ns) / 60 / w * w; /* about 60 points */
    if (q.step_ns == 0)
        q.step_ns = w;
    if (q.step_ns % w != 0) {
        char msg[128];
        snprintf(msg, sizeof(msg), "step must be a multiple of the RED bucket width (%llus)",
                 (unsigned long long)(w / 1000000000ull));
        cn_http_reply_json_error(req, 400, "step", msg);
        goto out;
    }
    struct cn_derive_red_point *pts = NULL;
    size_t n = 0;
    int rc = d ? cn_derive_red(d, &pts, &n, &q) : CN_ENOENT;
    if (rc == CN_ENOENT) {
        cn_http_reply_json_error(req, 404, q.operation.ptr ? "operation" : "service",
                                 q.operation.ptr ? "operation not found" : "service not found");
        goto out;
    }
    if (rc == CN_ELIMIT) {
        cn_http_reply_json_error(req, 400, "step", "too many points: use a larger step");
        goto out;
    }
    if (rc) {
        cn_http_reply_json_error(req, rc == CN_EINVAL ? 400 : 503, rc == CN_EINVAL ? "step" : NULL,
                                 cn_strerror(rc));
        goto out;
    }
    json_t *arr = json_array();
    for (size_t i = 0; i < n; i++) {
        json_t *o = json_object();
        json_object_set_new(o, "timeUnixNano", ns_str(pts[i].t_ns));
        json_object_set_new(o, "count", json_integer((json_int_t)pts[i].count));
        json_object_set_new(o, "errors", json_integer((json_int_t)pts[i].errors));
        json_object_set_new(o, "rate", json_real(pts[i].rate));
        json_object_set_new(o, "errorRate", json_real(pts[i].error_rate));
        json_object_set_new(
            o, "errorRatio",
            json_real(pts[i].count ? (double)pts[i].errors / (double)pts[i].count : 0));
        json_object_set_new(o, "p50Ms", json_real(ms(pts[i].p50_ns)));
        json_object_set_new(o, "p95Ms", json_real(ms(pts[i].p95_ns)));
        json_object_set_new(o, "p99Ms", json_real(ms(pts[i].p99_ns)));
        json_array_append_new(arr, o);
    }
    free(pts);
    json_t *o = json_object();
    json_object_set_new(o, "service", slice_str(q.service));
    if (q.operation.ptr)
        json_object_set_new(o, "operation", slice_str(q.operation));
    json_object_set_new(o, "stepNano", ns_str(q.step_ns));
    json_object_set_new(o, "points", arr);
    cn_http_reply_json(req, 200, o);
out:
    params_release(&p);
}

/* ---- live tail ------------------------------------------------------------------------- */

/* A tail in progress. States: running (sub set, timer armed) until the client goes away
 * (abort) or the worker drains (the reply ends); then stopped, freed when the timer closed. */
struct tail {
    struct cn_http_req *req; /* NULL once aborted or ended */
    struct job *job;         /* its filter; owned by the subscription */
    struct cn_tail_sub *sub;
    uv_timer_t timer;
    uint64_t quiet_ms; /* since the last bytes sent */
    uint64_t dropped;
};

static void tail_free_job(void *arg)
{
    job_free(arg);
}

static void tail_closed(uv_handle_t *h)
{
    free(h->data);
}

static void tail_stop(struct tail *t)
{
    if (t->sub) {
        cn_tail_unsubscribe(t->sub);
        t->sub = NULL;
    }
    uv_timer_stop(&t->timer);
    uv_close((uv_handle_t *)&t->timer, tail_closed);
}

static void tail_flush(struct tail *t)
{
    struct cn_buf out;
    cn_buf_init(&out, 256u << 10);
    uint64_t dropped = 0;
    cn_tail_take(t->sub, &out, &dropped);
    t->dropped += dropped;
    if (dropped) {
        char line[96];
        int n = snprintf(line, sizeof(line), "{\"dropped\":%llu}\n", (unsigned long long)dropped);
        cn_buf_append(&out, line, (size_t)n);
    }
    if (out.len) {
        cn_http_reply_chunk(t->req, out.ptr, out.len);
        t->quiet_ms = 0;
    }
    cn_buf_release(&out);
}

static void tail_ready(struct cn_tail_sub *s, void *data)
{
    (void)s;
    struct tail *t = data;
    if (t->req)
        tail_flush(t);
}

static void tail_abort(struct cn_http_req *req)
{
    struct tail *t = req->data;
    t->req = NULL;
    tail_stop(t);
}

static void tail_tick(uv_timer_t *tm)
{
    struct tail *t = tm->data;
    struct cn_http_req *req = t->req;
    if (!req)
        return;
    tail_flush(t); /* what a full take left behind */
    t->quiet_ms += TAIL_TICK_MS;
    if (atomic_load(&req->worker->srv->draining) || req->worker->draining) {
        req->abort_cb = NULL;
        req->data = NULL;
        t->req = NULL;
        cn_http_reply_end(req);
        tail_stop(t);
        return;
    }
    if (t->quiet_ms >= TAIL_HEARTBEAT_MS) {
        /* An empty line: keeps proxies from timing the stream out and finds a client that
         * went away (the write fails). NDJSON readers skip it. */
        cn_http_reply_chunk(req, "\n", 1);
        t->quiet_ms = 0;
    }
}

static void h_tail(struct cn_http_req *req, void *ctx)
{
    struct cn_up *up = ctx;
    static const char *const allowed[] = {"service", "severity", "q", "attr", "traceId", NULL};
    struct job *j = job_new(req, ctx, J_LOGS, allowed, 1);
    if (!j)
        return;
    if (log_query(req, j) != 0) {
        job_free(j);
        return;
    }
    if (!up->tail) {
        cn_http_reply_json_error(req, 503, NULL, "live tail unavailable");
        job_free(j);
        return;
    }
    struct tail *t = calloc(1, sizeof(*t));
    if (!t) {
        cn_http_reply_json_error(req, 503, NULL, "out of memory");
        job_free(j);
        return;
    }
    struct cn_code_links *cl = j->cfg.cl;
    j->cfg.cl = NULL; /* the subscription owns it */
    t->sub = cn_tail_subscribe(up->tail, req->worker->loop, &j->lq, tail_free_job, j, cl,
                               TAIL_PENDING, tail_ready, t);
    if (!t->sub) {
        cn_code_links_free(cl);
        job_free(j);
        free(t);
        cn_http_reply_json_error(req, 503, NULL, "out of memory");
        return;
    }
    t->req = req;
    t->job = j;
    uv_timer_init(req->worker->loop, &t->timer);
    t->timer.data = t;
    uv_timer_start(&t->timer, tail_tick, TAIL_TICK_MS, TAIL_TICK_MS);
    req->data = t;
    req->abort_cb = tail_abort;
    cn_http_reply_start(req, 200, "application/x-ndjson", NULL, 0);
}

int cn_api_query_routes(struct cn_up *up, struct cn_router *r)
{
    const unsigned get = CN_M(HTTP_GET);
    int rc;
    if ((rc = cn_router_add(r, get, "/api/v1/traces", h_traces, up)) < 0 ||
        (rc = cn_router_add(r, get, "/api/v1/traces/{id}", h_trace, up)) < 0 ||
        (rc = cn_router_add(r, get, "/api/v1/traces/{id}/logs", h_trace_logs, up)) < 0 ||
        (rc = cn_router_add(r, get, "/api/v1/services", h_services, up)) < 0 ||
        (rc = cn_router_add(r, get, "/api/v1/services/{service}/operations", h_operations, up)) <
            0 ||
        (rc = cn_router_add(r, get, "/api/v1/tags", h_tags, up)) < 0 ||
        (rc = cn_router_add(r, get, "/api/v1/tags/{key}/values", h_tags, up)) < 0 ||
        (rc = cn_router_add(r, get, "/api/v1/red", h_red, up)) < 0 ||
        (rc = cn_router_add(r, get, "/api/v1/topology", h_topology, up)) < 0 ||
        (rc = cn_router_add(r, get, "/api/v1/logs", h_logs, up)) < 0 ||
        (rc = cn_router_add(r, get, "/api/v1/logs/tail", h_tail, up)) < 0)
        return rc;
    return 0;
}
