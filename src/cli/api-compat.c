/* What the Jaeger, Zipkin v2 and Tempo query APIs share (api-compat.h): error replies in
 * each API's shape, query parameters checked against each API's list, jobs on the libuv
 * threadpool, trace by ID, the derived-table lists and the query layer's trace search. The
 * endpoints are in api-jaeger.c, api-zipkin.c and api-tempo.c.
 *
 * Small answers (services, operations, dependencies) come from the derived tables on the
 * loop. Anything that reads spans (search, trace by ID, tags) runs on the threadpool through
 * cn_query_submit: the handler parses and checks the parameters on the loop, the job renders
 * the whole body in the pool, the loop sends it. */
#include "cli/api-compat.h"

#include "http/json.h"

#include <stdarg.h>
#include <time.h>

uint64_t cn_compat_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * CN_COMPAT_SEC_NS + (uint64_t)ts.tv_nsec;
}

void cn_compat_limits(struct cn_up *up, struct cn_query_limits *out)
{
    struct cn_config *cfg = cn_up_config(up);
    if (cfg)
        cn_config_query_limits(cfg, out);
    else
        cn_query_limits_default(out);
    cn_config_unref(cfg);
}

/* ---- replies ---------------------------------------------------------------------------- */

static json_t *envelope(json_t *data, size_t total, json_t *errors)
{
    json_t *j = json_object();
    json_object_set_new(j, "data", data);
    json_object_set_new(j, "total", json_integer((json_int_t)total));
    json_object_set_new(j, "limit", json_integer(0));
    json_object_set_new(j, "offset", json_integer(0));
    json_object_set_new(j, "errors", errors);
    return j;
}

json_t *cn_compat_jaeger_envelope(json_t *data, size_t total)
{
    return envelope(data, total, json_null());
}

static json_t *jaeger_error(int status, const char *msg)
{
    json_t *errs = json_array();
    json_t *e = json_object();
    json_object_set_new(e, "code", json_integer(status));
    json_object_set_new(e, "msg", json_string(msg));
    json_array_append_new(errs, e);
    return envelope(json_null(), 0, errs);
}

/* msg with control and non-ASCII bytes as '?': it may quote a client's bytes, and a JSON
 * string must be UTF-8. */
static void clean(char *msg)
{
    for (char *p = msg; *p; p++)
        if ((unsigned char)*p < 0x20 || (unsigned char)*p >= 0x7f)
            *p = '?';
}

void cn_compat_reply_error(struct cn_http_req *req, enum cn_compat_api api, int status,
                           const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    clean(msg);
    if (api == CN_COMPAT_JAEGER) {
        cn_http_reply_json(req, status, jaeger_error(status, msg));
        return;
    }
    size_t n = strlen(msg);
    if (n + 1 < sizeof(msg))
        msg[n++] = '\n';
    cn_http_reply(req, status, "text/plain; charset=utf-8", msg, n, NULL, 0);
}

/* ---- query parameters ------------------------------------------------------------------ */

int cn_compat_decode(struct cn_slice s, char *dst, size_t dst_len)
{
    size_t n = 0;
    for (size_t i = 0; i < s.len; i++) {
        char ch = s.ptr[i];
        if (ch == '+') {
            ch = ' ';
        } else if (ch == '%' && i + 2 < s.len + 0 && cn_hexval(s.ptr[i + 1]) >= 0 &&
                   cn_hexval(s.ptr[i + 2]) >= 0) {
            ch = (char)(cn_hexval(s.ptr[i + 1]) * 16 + cn_hexval(s.ptr[i + 2]));
            i += 2;
        }
        if (n + 1 >= dst_len)
            return -2;
        dst[n++] = ch;
    }
    dst[n] = '\0';
    return (int)n;
}

/* Calls fn for each name=value of the query (raw, not decoded). Stops when fn returns
 * nonzero and returns that. */
static int each_param(const struct cn_http_req *req,
                      int (*fn)(void *ctx, struct cn_slice name, struct cn_slice value), void *ctx)
{
    const char *p = req->query.ptr, *end = req->query.ptr + req->query.len;
    while (p && p < end) {
        const char *amp = memchr(p, '&', (size_t)(end - p));
        const char *e = amp ? amp : end;
        const char *eq = memchr(p, '=', (size_t)(e - p));
        struct cn_slice name = {p, (size_t)((eq ? eq : e) - p)};
        struct cn_slice value =
            eq ? (struct cn_slice){eq + 1, (size_t)(e - eq - 1)} : (struct cn_slice){e, 0};
        if (name.len) {
            int rc = fn(ctx, name, value);
            if (rc)
                return rc;
        }
        p = amp ? amp + 1 : end;
    }
    return 0;
}

struct nth {
    const char *name;
    size_t want, seen;
    char *dst;
    size_t dst_len;
    int rc;
};

static int nth_cb(void *ctx, struct cn_slice name, struct cn_slice value)
{
    struct nth *n = ctx;
    char key[64];
    if (cn_compat_decode(name, key, sizeof(key)) < 0 || strcmp(key, n->name) != 0)
        return 0;
    if (n->seen++ < n->want)
        return 0;
    n->rc = cn_compat_decode(value, n->dst, n->dst_len);
    return 1;
}

int cn_compat_param_n(const struct cn_http_req *req, const char *name, size_t idx, char *dst,
                      size_t dst_len)
{
    struct nth n = {name, idx, 0, dst, dst_len, -1};
    each_param(req, nth_cb, &n);
    return n.rc;
}

struct allow {
    const char *const *names;
    char bad[64];
};

static int allow_cb(void *ctx, struct cn_slice name, struct cn_slice value)
{
    (void)value;
    struct allow *a = ctx;
    char key[64];
    if (cn_compat_decode(name, key, sizeof(key)) < 0) {
        snprintf(a->bad, sizeof(a->bad), "%.40s...", key);
        return 1;
    }
    for (const char *const *n = a->names; *n; n++)
        if (strcmp(*n, key) == 0)
            return 0;
    snprintf(a->bad, sizeof(a->bad), "%s", key);
    return 1;
}

int cn_compat_check(struct cn_http_req *req, struct cn_up *up, enum cn_compat_api api,
                    const char *const *names)
{
    if (!up->store) {
        cn_compat_reply_error(req, api, 503, "telemetry is not running");
        return -1;
    }
    struct allow a = {names, ""};
    if (each_param(req, allow_cb, &a) == 0)
        return 0;
    cn_compat_reply_error(req, api, 400, "unknown parameter '%s'", a.bad);
    return -1;
}

int cn_compat_param(struct cn_http_req *req, enum cn_compat_api api, const char *name, char *dst,
                    size_t dst_len)
{
    int n = cn_compat_param_n(req, name, 0, dst, dst_len);
    if (n == -2) {
        cn_compat_reply_error(req, api, 400, "parameter '%s' is longer than %zu bytes", name,
                              dst_len - 1);
        return -1;
    }
    return n > 0;
}

int cn_compat_param_u64(struct cn_http_req *req, enum cn_compat_api api, const char *name,
                        uint64_t min, uint64_t max, uint64_t *out)
{
    char v[32];
    int rc = cn_compat_param(req, api, name, v, sizeof(v));
    if (rc <= 0)
        return rc;
    uint64_t x;
    if (cn_slice_to_u64(cn_slice_of(v), &x) != 0) {
        cn_compat_reply_error(
            req, api, 400, "unable to parse param '%s': '%s' is not an unsigned integer", name, v);
        return -1;
    }
    if (x < min || x > max) {
        cn_compat_reply_error(req, api, 400, "parameter '%s' must be %llu..%llu", name,
                              (unsigned long long)min, (unsigned long long)max);
        return -1;
    }
    *out = x;
    return 1;
}

int cn_compat_param_duration(struct cn_http_req *req, enum cn_compat_api api, const char *name,
                             uint64_t *out_ns)
{
    char v[64];
    int rc = cn_compat_param(req, api, name, v, sizeof(v));
    if (rc <= 0)
        return rc;
    if (cn_query_parse_duration(cn_slice_of(v), out_ns) != 0) {
        cn_compat_reply_error(
            req, api, 400, "unable to parse param '%s': '%s' is not a duration (e.g. 1.2s, 100ms)",
            name, v);
        return -1;
    }
    return 1;
}

int cn_compat_end_lookback(struct cn_http_req *req, enum cn_compat_api api, struct cn_up *up,
                           int end_required, uint64_t *from, uint64_t *to)
{
    uint64_t end_ms = cn_compat_now_ns() / CN_COMPAT_MS_NS, lookback_ms = 86400000;
    struct cn_query_limits lim;
    cn_compat_limits(up, &lim);
    lookback_ms = CN_MIN(lookback_ms, lim.max_range_ns / CN_COMPAT_MS_NS);
    int rc = cn_compat_param_u64(req, api, "endTs", 1, UINT64_MAX / CN_COMPAT_MS_NS, &end_ms);
    if (rc < 0)
        return -1;
    if (rc == 0 && end_required) {
        cn_compat_reply_error(req, api, 400, "endTs is required");
        return -1;
    }
    if (cn_compat_param_u64(req, api, "lookback", 1, lim.max_range_ns / CN_COMPAT_MS_NS,
                            &lookback_ms) < 0)
        return -1;
    *to = end_ms * CN_COMPAT_MS_NS;
    *from = lookback_ms < end_ms ? (end_ms - lookback_ms) * CN_COMPAT_MS_NS : 0;
    return 0;
}

int cn_compat_parse_id(struct cn_slice hex, uint8_t id[16])
{
    char full[33];
    if (hex.len == 0 || hex.len > 32)
        return CN_ESYNTAX;
    memset(full, '0', 32 - hex.len);
    memcpy(full + 32 - hex.len, hex.ptr, hex.len);
    if (cn_hex_decode(id, 16, (struct cn_slice){full, 32}) != 0 || cn_id_is_zero(id, 16))
        return CN_ESYNTAX;
    return 0;
}

/* ---- jobs on the threadpool ------------------------------------------------------------ */

static void job_abort(struct cn_http_req *req)
{
    struct cn_compat_job *j = req->data;
    j->req = NULL;
}

static void job_work(void *arg)
{
    struct cn_compat_job *j = arg;
    j->work(j);
}

static void job_done(void *arg)
{
    static const struct cn_http_header truncated = {CN_SLICE_LIT("X-Cairn-Truncated"),
                                                    CN_SLICE_LIT("true")};
    struct cn_compat_job *j = arg;
    if (j->req) {
        j->req->abort_cb = NULL;
        j->req->data = NULL;
        cn_http_reply(j->req, j->status, j->ctype, j->body.ptr ? j->body.ptr : "", j->body.len,
                      j->truncated ? &truncated : NULL, j->truncated ? 1 : 0);
    }
    if (j->release)
        j->release(j);
    cn_buf_release(&j->body);
    free(j);
}

void cn_compat_submit(struct cn_http_req *req, struct cn_up *up, enum cn_compat_api api,
                      cn_compat_job_cb work, cn_compat_job_cb release, void *p)
{
    struct cn_compat_job *j = calloc(1, sizeof(*j));
    if (!j) {
        if (release) {
            struct cn_compat_job tmp = {.p = p};
            release(&tmp);
        }
        cn_compat_reply_error(req, api, 503, "out of memory");
        return;
    }
    *j = (struct cn_compat_job){
        .req = req, .up = up, .api = api, .work = work, .release = release, .p = p};
    cn_compat_limits(up, &j->lim);
    cn_buf_init(&j->body, CN_COMPAT_MAX_BODY);
    req->data = j;
    req->abort_cb = job_abort;
    if (cn_query_submit(req->worker->loop, job_work, job_done, j) != 0) {
        req->abort_cb = NULL;
        req->data = NULL;
        if (release)
            release(j);
        free(j);
        cn_compat_reply_error(req, api, 503, "query could not be queued");
    }
}

static int dump_cb(const char *buf, size_t size, void *data)
{
    return cn_buf_append(data, buf, size) == 0 ? 0 : -1;
}

void cn_compat_job_json(struct cn_compat_job *jb, int status, json_t *j)
{
    cn_buf_reset(&jb->body);
    if (!j || json_dump_callback(j, dump_cb, &jb->body, JSON_COMPACT) != 0 ||
        cn_buf_append(&jb->body, "\n", 1) != 0) {
        cn_buf_reset(&jb->body);
        cn_buf_puts(&jb->body, "answer could not be encoded (larger than the body limit?)\n");
        jb->status = 500;
        jb->ctype = "text/plain; charset=utf-8";
    } else {
        jb->status = status;
        jb->ctype = "application/json";
    }
    json_decref(j);
}

void cn_compat_job_error(struct cn_compat_job *jb, int status, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    clean(msg);
    if (jb->api == CN_COMPAT_JAEGER) {
        cn_compat_job_json(jb, status, jaeger_error(status, msg));
        return;
    }
    cn_buf_reset(&jb->body);
    cn_buf_printf(&jb->body, "%s\n", msg);
    jb->status = status;
    jb->ctype = "text/plain; charset=utf-8";
}

void cn_compat_free_p(struct cn_compat_job *j)
{
    free(j->p);
}

/* ---- trace by ID ------------------------------------------------------------------------ */

int cn_compat_wants_protobuf(const struct cn_http_req *req)
{
    const struct cn_slice *a = cn_http_req_header(req, "accept");
    static const char pb[] = "application/protobuf";
    for (size_t i = 0; a && i + sizeof(pb) - 1 <= a->len; i++)
        if (strncasecmp(a->ptr + i, pb, sizeof(pb) - 1) == 0)
            return 1;
    return 0;
}

void cn_compat_trace_by_id(struct cn_http_req *req, struct cn_up *up, enum cn_compat_api api,
                           cn_compat_job_cb work, int form)
{
    static const char *const names[] = {"prettyPrint", "raw", "start", "end", NULL};
    static const char *const none[] = {NULL};
    if (cn_compat_check(req, up, api, api == CN_COMPAT_ZIPKIN ? none : names) != 0)
        return;
    struct cn_compat_trace_p *p = calloc(1, sizeof(*p));
    if (!p) {
        cn_compat_reply_error(req, api, 503, "out of memory");
        return;
    }
    if (cn_compat_parse_id(req->params.values[0], p->id) != 0) {
        free(p);
        cn_compat_reply_error(
            req, api, 400,
            api == CN_COMPAT_JAEGER ? "malformed trace ID '%.*s': 1 to 32 hex digits, not all zero"
                                    : "invalid trace id '%.*s': 1 to 32 hex digits, not all zero",
            (int)CN_MIN(req->params.values[0].len, 64), req->params.values[0].ptr);
        return;
    }
    p->form = form;
    cn_compat_submit(req, up, api, work, cn_compat_free_p, p);
}

/* ---- lists from the derived tables ------------------------------------------------------ */

json_t *cn_compat_services(struct cn_up *up)
{
    json_t *a = json_array();
    struct cn_slice *names = NULL;
    size_t n = 0;
    if (cn_derive_services(cn_store_derive(up->store), &names, &n) == 0)
        for (size_t i = 0; i < n; i++)
            json_array_append_new(a, json_stringn(names[i].ptr, names[i].len));
    free(names);
    return a;
}

json_t *cn_compat_operations(struct cn_up *up, struct cn_slice service, int kind, int objects)
{
    json_t *a = json_array();
    struct cn_derive_op *ops = NULL;
    size_t n = 0;
    if (cn_derive_span_names(cn_store_derive(up->store), &ops, &n, service) != 0)
        return a;
    for (size_t i = 0; i < n; i++) {
        if (kind >= 0 && ops[i].kind != kind)
            continue;
        json_t *name = json_stringn(ops[i].name.ptr, ops[i].name.len);
        if (!name)
            continue; /* not UTF-8: no JSON string can carry it */
        if (objects) {
            json_t *o = json_object();
            json_object_set_new(o, "name", name);
            json_object_set_new(o, "spanKind",
                                json_string(ops[i].kind == CN_KIND_UNSPECIFIED
                                                ? ""
                                                : cn_query_kind_name(ops[i].kind)));
            json_array_append_new(a, o);
            continue;
        }
        /* Sorted by name then kind: one name for all its kinds. */
        json_t *last = json_array_get(a, json_array_size(a) - 1);
        if (last && json_equal(last, name))
            json_decref(name);
        else
            json_array_append_new(a, name);
    }
    free(ops);
    return a;
}

static void add_count(json_t *o, const char *key, uint64_t v)
{
    json_object_set_new(o, key,
                        json_integer(json_integer_value(json_object_get(o, key)) + (json_int_t)v));
}

json_t *cn_compat_dependencies(struct cn_up *up, uint64_t from, uint64_t to, int errors)
{
    json_t *a = json_array();
    struct cn_derive_edge *e = NULL;
    size_t n = 0;
    struct cn_derive_edge_query q = {.from_ns = from, .to_ns = to};
    if (cn_derive_edges(cn_store_derive(up->store), &e, &n, &q) != 0)
        return a;
    json_t *last = NULL;
    for (size_t i = 0; i < n; i++) {
        if (!last || !cn_slice_eq(e[i].caller, e[i - 1].caller) ||
            !cn_slice_eq(e[i].callee, e[i - 1].callee)) {
            last = json_object();
            json_object_set_new(last, "parent", json_stringn(e[i].caller.ptr, e[i].caller.len));
            json_object_set_new(last, "child", json_stringn(e[i].callee.ptr, e[i].callee.len));
            json_array_append_new(a, last);
        }
        add_count(last, "callCount", e[i].count);
        if (errors)
            add_count(last, "errorCount", e[i].errors);
    }
    free(e);
    return a;
}

/* ---- trace search ----------------------------------------------------------------------- */

struct cn_compat_search *cn_compat_search_new(struct cn_http_req *req, enum cn_compat_api api)
{
    struct cn_compat_search *p = calloc(1, sizeof(*p));
    if (!p) {
        cn_compat_reply_error(req, api, 503, "out of memory");
        return NULL;
    }
    p->q.status = -1;
    p->q.kind = -1;
    p->q.order = CN_ORDER_START;
    return p;
}

void cn_compat_search_free(struct cn_compat_search *p)
{
    if (!p)
        return;
    for (size_t i = 0; i < p->num_preds; i++)
        cn_pred_release(&p->preds[i]);
    free(p->ids);
    free(p);
}

void cn_compat_search_release(struct cn_compat_job *j)
{
    cn_compat_search_free(j->p);
}

int cn_compat_add_pred(struct cn_http_req *req, enum cn_compat_api api, struct cn_compat_search *p,
                       const char *pname, const char *key, const char *value)
{
    if (p->num_preds == CN_QUERY_MAX_PREDS) {
        cn_compat_reply_error(req, api, 400, "parameter '%s': more than %d conditions", pname,
                              CN_QUERY_MAX_PREDS);
        return -1;
    }
    struct cn_buf t;
    cn_buf_init(&t, CN_QUERY_MAX_KEY_BYTES + CN_QUERY_MAX_VALUE_BYTES + 8);
    char err[256];
    int rc = value ? cn_buf_printf(&t, "%s=%s", key, value) : cn_buf_printf(&t, "%s=~^", key);
    if (rc == 0)
        rc = cn_pred_parse(&p->preds[p->num_preds], cn_buf_slice(&t), err, sizeof(err));
    else
        snprintf(err, sizeof(err), "condition longer than %d bytes",
                 CN_QUERY_MAX_KEY_BYTES + CN_QUERY_MAX_VALUE_BYTES);
    cn_buf_release(&t);
    if (rc != 0) {
        cn_compat_reply_error(req, api, 400, "parameter '%s': %s", pname, err);
        return -1;
    }
    p->num_preds++;
    return 0;
}

void cn_compat_work_search(struct cn_compat_job *jb)
{
    struct cn_compat_search *p = jb->p;
    struct cn_store *st = jb->up->store;
    json_t *data = json_array();
    if (!p->num_ids) {
        struct cn_trace_result r;
        char err[256];
        p->q.preds = p->preds;
        p->q.num_preds = p->num_preds;
        int rc = cn_query_traces(st, &jb->lim, &p->q, &r, err, sizeof(err));
        if (rc != 0) {
            json_decref(data);
            cn_trace_result_release(&r);
            cn_compat_job_error(jb, rc == CN_EINVAL ? 400 : 503, "%s", err);
            return;
        }
        for (size_t i = 0; i < r.num; i++) {
            json_t *t = p->render(st, r.traces[i].trace_id);
            if (t)
                json_array_append_new(data, t);
        }
        jb->truncated = r.truncated;
        cn_trace_result_release(&r);
    }
    for (size_t i = 0; i < p->num_ids; i++) {
        json_t *t = p->render(st, p->ids[i]);
        if (t)
            json_array_append_new(data, t);
    }
    if (jb->api == CN_COMPAT_JAEGER)
        data = cn_compat_jaeger_envelope(data, json_array_size(data));
    cn_compat_job_json(jb, 200, data);
}

/* ---- routes ----------------------------------------------------------------------------- */

int cn_compat_add_routes(struct cn_up *up, struct cn_router *r,
                         const struct cn_compat_route *routes, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        int rc = cn_router_add(r, CN_M(HTTP_GET), routes[i].pattern, routes[i].handler, up);
        if (rc < 0)
            return rc;
    }
    return 0;
}

int cn_api_compat_routes(struct cn_up *up, struct cn_router *r)
{
    int rc = cn_api_jaeger_routes(up, r);
    if (rc == 0)
        rc = cn_api_zipkin_routes(up, r);
    if (rc == 0)
        rc = cn_api_tempo_routes(up, r);
    return rc;
}
