/* Compatibility query APIs on the API port, so that the Jaeger UI, Grafana's Jaeger and
 * Tempo data sources and the Zipkin UI read Cairn directly (docs/compat.md):
 *
 *   Jaeger  /api/services, /api/services/{service}/operations, /api/operations,
 *           /api/traces, /api/traces/{id}, /api/dependencies
 *   Zipkin  /api/v2/services, /api/v2/spans, /api/v2/remoteServices, /api/v2/traces,
 *           /api/v2/trace/{id}, /api/v2/dependencies
 *   Tempo   /api/echo, /api/search, /api/search/tags, /api/v2/search/tags,
 *           /api/search/tag/{tag}/values, /api/v2/search/tag/{tag}/values,
 *           /api/v2/traces/{id}, and /api/traces/{id} with Accept: application/protobuf
 *
 * Every API answers errors in its own shape: Jaeger's envelope with errors[{code, msg}],
 * Zipkin's and Tempo's plain text. Parameters are checked against the list each API's server
 * accepts; an unknown one is a 400 naming it.
 *
 * Small answers (services, operations, dependencies) come from the derived tables on the
 * loop. Anything that reads spans (search, trace by ID, tags) runs on the libuv threadpool
 * through cn_query_submit: the handler parses and checks the parameters on the loop, the
 * job renders the whole body in the pool, the loop sends it. */
#include "cli/api-compat.h"

#include "base/log.h"
#include "http/json.h"
#include "telemetry/query.h"
#include "telemetry/render-compat.h"
#include "telemetry/traceql.h"

#include <stdarg.h>
#include <time.h>

#define MS_NS  1000000ull
#define SEC_NS 1000000000ull

enum api { JAEGER, ZIPKIN, TEMPO };

/* Largest query parameter value taken (a TraceQL query is the longest). */
#define MAX_PARAM (CN_TQL_MAX_QUERY + 1)

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * SEC_NS + (uint64_t)ts.tv_nsec;
}

static void limits(struct cn_up *up, struct cn_query_limits *lim)
{
    (void)up;
    cn_query_limits_default(lim);
}

/* ---- replies ---------------------------------------------------------------------------- */

static json_t *jaeger_envelope(json_t *data, size_t total)
{
    json_t *j = json_object();
    json_object_set_new(j, "data", data);
    json_object_set_new(j, "total", json_integer((json_int_t)total));
    json_object_set_new(j, "limit", json_integer(0));
    json_object_set_new(j, "offset", json_integer(0));
    json_object_set_new(j, "errors", json_null());
    return j;
}

static json_t *jaeger_error(int status, const char *msg)
{
    json_t *j = json_object();
    json_t *errs = json_array();
    json_t *e = json_object();
    json_object_set_new(e, "code", json_integer(status));
    json_object_set_new(e, "msg", json_string(msg));
    json_array_append_new(errs, e);
    json_object_set_new(j, "data", json_null());
    json_object_set_new(j, "total", json_integer(0));
    json_object_set_new(j, "limit", json_integer(0));
    json_object_set_new(j, "offset", json_integer(0));
    json_object_set_new(j, "errors", errs);
    return j;
}

static void reply_error(struct cn_http_req *req, enum api api, int status, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void reply_error(struct cn_http_req *req, enum api api, int status, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (api == JAEGER) {
        cn_http_reply_json(req, status, jaeger_error(status, msg));
        return;
    }
    size_t n = strlen(msg);
    if (n + 1 < sizeof(msg))
        msg[n++] = '\n';
    cn_http_reply(req, status, "text/plain; charset=utf-8", msg, n, NULL, 0);
}

/* ---- query parameters ------------------------------------------------------------------ */

static int percent_decode(struct cn_slice s, char *dst, size_t dst_len)
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
    if (percent_decode(name, key, sizeof(key)) < 0 || strcmp(key, n->name) != 0)
        return 0;
    if (n->seen++ < n->want)
        return 0;
    n->rc = percent_decode(value, n->dst, n->dst_len);
    return 1;
}

/* The idx-th value of parameter name, decoded into dst. Returns its length, -1 when absent,
 * -2 when longer than dst. */
static int param_n(const struct cn_http_req *req, const char *name, size_t idx, char *dst,
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
    if (percent_decode(name, key, sizeof(key)) < 0) {
        snprintf(a->bad, sizeof(a->bad), "%.40s...", key);
        return 1;
    }
    for (const char *const *n = a->names; *n; n++)
        if (strcmp(*n, key) == 0)
            return 0;
    snprintf(a->bad, sizeof(a->bad), "%s", key);
    return 1;
}

/* Replies 400 and returns -1 when the query holds a parameter not in names (NULL-ended), 503
 * when there is no store. */
static int check_params(struct cn_http_req *req, struct cn_up *up, enum api api,
                        const char *const *names)
{
    if (!up->store) {
        reply_error(req, api, 503, "telemetry is not running");
        return -1;
    }
    struct allow a = {names, ""};
    if (each_param(req, allow_cb, &a) == 0)
        return 0;
    for (char *p = a.bad; *p; p++)
        if ((unsigned char)*p < 0x20 || (unsigned char)*p >= 0x7f)
            *p = '?';
    reply_error(req, api, 400, "unknown parameter '%s'", a.bad);
    return -1;
}

/* A single parameter: 1 and its value in dst when present and not empty, 0 when absent or
 * empty, -1 after replying 400 (too long). */
static int param(struct cn_http_req *req, enum api api, const char *name, char *dst, size_t dst_len)
{
    int n = param_n(req, name, 0, dst, dst_len);
    if (n == -2) {
        reply_error(req, api, 400, "parameter '%s' is longer than %zu bytes", name, dst_len - 1);
        return -1;
    }
    return n > 0;
}

/* An unsigned integer parameter in [min, max]: 1 with *out, 0 when absent, -1 after a 400. */
static int param_u64(struct cn_http_req *req, enum api api, const char *name, uint64_t min,
                     uint64_t max, uint64_t *out)
{
    char v[32];
    int rc = param(req, api, name, v, sizeof(v));
    if (rc <= 0)
        return rc;
    uint64_t x;
    if (cn_slice_to_u64(cn_slice_of(v), &x) != 0) {
        reply_error(req, api, 400, "unable to parse param '%s': '%s' is not an unsigned integer",
                    name, v);
        return -1;
    }
    if (x < min || x > max) {
        reply_error(req, api, 400, "parameter '%s' must be %llu..%llu", name,
                    (unsigned long long)min, (unsigned long long)max);
        return -1;
    }
    *out = x;
    return 1;
}

/* A duration with a unit ("1.2s", "100ms"): 1 with *out_ns, 0 when absent, -1 after a 400. */
static int param_duration(struct cn_http_req *req, enum api api, const char *name, uint64_t *out_ns)
{
    char v[64];
    int rc = param(req, api, name, v, sizeof(v));
    if (rc <= 0)
        return rc;
    if (cn_query_parse_duration(cn_slice_of(v), out_ns) != 0) {
        reply_error(req, api, 400,
                    "unable to parse param '%s': '%s' is not a duration (e.g. 1.2s, 100ms)", name,
                    v);
        return -1;
    }
    return 1;
}

/* Trace IDs: 1 to 32 hex digits, left-padded with zeros (Jaeger, Zipkin and Tempo all accept
 * the short 64-bit form); all zero is not an ID. */
static int parse_id(struct cn_slice hex, uint8_t id[16])
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

struct job;
typedef void (*job_cb)(struct job *j);

/* One request's work. States: queued (req set, abort_cb installed) -> worked (status, ctype,
 * body set by work) -> replied and freed on the loop. When the connection goes first,
 * abort_cb clears req and the loop only frees. */
struct job {
    struct cn_http_req *req;
    struct cn_up *up;
    enum api api;
    job_cb work;
    job_cb release; /* frees the endpoint's parameters; may be NULL */
    void *p;        /* the endpoint's parameters */
    int status;
    const char *ctype;
    struct cn_buf body;
};

static void job_abort(struct cn_http_req *req)
{
    struct job *j = req->data;
    j->req = NULL;
}

static void job_work(void *arg)
{
    struct job *j = arg;
    j->work(j);
}

static void job_done(void *arg)
{
    struct job *j = arg;
    if (j->req) {
        j->req->abort_cb = NULL;
        j->req->data = NULL;
        cn_http_reply(j->req, j->status, j->ctype, j->body.ptr ? j->body.ptr : "", j->body.len,
                      NULL, 0);
    }
    if (j->release)
        j->release(j);
    cn_buf_release(&j->body);
    free(j);
}

/* Queues work with params p (freed by release, also when queueing fails). */
static void submit(struct cn_http_req *req, struct cn_up *up, enum api api, job_cb work,
                   job_cb release, void *p)
{
    struct job *j = calloc(1, sizeof(*j));
    if (!j) {
        if (release) {
            struct job tmp = {.p = p};
            release(&tmp);
        }
        reply_error(req, api, 503, "out of memory");
        return;
    }
    *j = (struct job){.req = req, .up = up, .api = api, .work = work, .release = release, .p = p};
    cn_buf_init(&j->body, 256u << 20);
    req->data = j;
    req->abort_cb = job_abort;
    if (cn_query_submit(req->worker->loop, job_work, job_done, j) != 0) {
        req->abort_cb = NULL;
        req->data = NULL;
        if (release)
            release(j);
        free(j);
        reply_error(req, api, 503, "query could not be queued");
    }
}

static int dump_cb(const char *buf, size_t size, void *data)
{
    return cn_buf_append(data, buf, size) == 0 ? 0 : -1;
}

/* Sets the job's answer to j (JSON, reference taken). */
static void job_json(struct job *jb, int status, json_t *j)
{
    cn_buf_reset(&jb->body);
    if (!j || json_dump_callback(j, dump_cb, &jb->body, JSON_COMPACT) != 0 ||
        cn_buf_append(&jb->body, "\n", 1) != 0) {
        cn_buf_reset(&jb->body);
        cn_buf_puts(&jb->body, "answer could not be encoded\n");
        jb->status = 500;
        jb->ctype = "text/plain; charset=utf-8";
    } else {
        jb->status = status;
        jb->ctype = "application/json";
    }
    json_decref(j);
}

static void job_error(struct job *jb, int status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void job_error(struct job *jb, int status, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (jb->api == JAEGER) {
        job_json(jb, status, jaeger_error(status, msg));
        return;
    }
    cn_buf_reset(&jb->body);
    cn_buf_printf(&jb->body, "%s\n", msg);
    jb->status = status;
    jb->ctype = "text/plain; charset=utf-8";
}

static void free_p(struct job *j)
{
    free(j->p);
}

/* ---- reading whole traces -------------------------------------------------------------- */

static void add_jaeger(void *ctx, const struct cn_span *s)
{
    cn_jaeger_trace_add(ctx, s);
}

static void add_zipkin(void *ctx, const struct cn_span *s)
{
    json_array_append_new(ctx, cn_zipkin_render_span(s));
}

static void add_tempo(void *ctx, const struct cn_span *s)
{
    cn_tempo_trace_add(ctx, s);
}

/* The Jaeger trace object, NULL when the store has no span of it. */
static json_t *jaeger_trace(struct cn_store *st, const uint8_t id[16])
{
    struct cn_jaeger_trace t;
    cn_jaeger_trace_init(&t);
    if (cn_store_trace(st, id, add_jaeger, &t) == 0) {
        cn_jaeger_trace_release(&t);
        return NULL;
    }
    return cn_jaeger_trace_finish(&t, id);
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
    if (cn_store_trace(st, id, add_zipkin, spans) == 0) {
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

/* ---- trace by ID: Jaeger, Tempo (protobuf, v2), Zipkin ---------------------------------- */

enum trace_form {
    FORM_JAEGER,
    FORM_TEMPO_PB_V1,
    FORM_TEMPO_PB_V2,
    FORM_TEMPO_JSON_V2,
    FORM_ZIPKIN
};

struct trace_p {
    uint8_t id[16];
    enum trace_form form;
};

static void work_trace(struct job *jb)
{
    struct trace_p *p = jb->p;
    struct cn_store *st = jb->up->store;
    if (p->form == FORM_JAEGER) {
        json_t *t = jaeger_trace(st, p->id);
        if (!t) {
            job_error(jb, 404, "trace not found");
            return;
        }
        json_t *data = json_array();
        json_array_append_new(data, t);
        job_json(jb, 200, jaeger_envelope(data, 1));
        return;
    }
    if (p->form == FORM_ZIPKIN) {
        json_t *spans = zipkin_trace(st, p->id);
        if (!spans) {
            char hex[33];
            cn_hex_encode(hex, p->id, 16);
            job_error(jb, 404, "Cannot find trace %s", hex);
            return;
        }
        job_json(jb, 200, spans);
        return;
    }
    struct cn_tempo_trace t;
    cn_tempo_trace_init(&t);
    if (cn_store_trace(st, p->id, add_tempo, &t) == 0) {
        cn_tempo_trace_release(&t);
        job_error(jb, 404, "trace not found");
        return;
    }
    json_t *batches = cn_tempo_trace_finish(&t);
    if (p->form == FORM_TEMPO_JSON_V2) {
        json_t *j = json_object();
        json_t *trace = json_object();
        json_object_set_new(trace, "resourceSpans", batches);
        json_object_set_new(j, "trace", trace);
        json_object_set_new(j, "status", json_string("COMPLETE"));
        job_json(jb, 200, j);
        return;
    }
    /* tempopb.Trace{batches = 1}; v2 wraps it as TraceByIDResponse{trace = 1}. */
    int rc;
    if (p->form == FORM_TEMPO_PB_V1) {
        rc = cn_tempo_encode_pb(&jb->body, batches, 1);
    } else {
        struct cn_buf inner;
        cn_buf_init(&inner, jb->body.max);
        rc = cn_tempo_encode_pb(&inner, batches, 1);
        uint8_t key = 1 << 3 | 2, len[10];
        size_t n = 0;
        for (uint64_t v = inner.len;; v >>= 7) {
            len[n++] = (uint8_t)((v & 0x7f) | (v > 0x7f ? 0x80 : 0));
            if (v <= 0x7f)
                break;
        }
        if (rc == 0 && (rc = cn_buf_append(&jb->body, &key, 1)) == 0 &&
            (rc = cn_buf_append(&jb->body, len, n)) == 0)
            rc = cn_buf_append(&jb->body, inner.ptr ? inner.ptr : "", inner.len);
        cn_buf_release(&inner);
    }
    json_decref(batches);
    if (rc != 0) {
        job_error(jb, 500, "trace could not be encoded: %s", cn_strerror(rc));
        return;
    }
    jb->status = 200;
    jb->ctype = "application/protobuf";
}

/* 1 when the Accept header asks for protobuf (Grafana's Tempo data source). */
static int wants_protobuf(struct cn_http_req *req)
{
    const struct cn_slice *a = cn_http_req_header(req, "accept");
    if (!a)
        return 0;
    static const char pb[] = "application/protobuf";
    for (size_t i = 0; i + sizeof(pb) - 1 <= a->len; i++)
        if (strncasecmp(a->ptr + i, pb, sizeof(pb) - 1) == 0)
            return 1;
    return 0;
}

static void trace_by_id(struct cn_http_req *req, struct cn_up *up, enum api api,
                        enum trace_form form)
{
    static const char *const jaeger_params[] = {"prettyPrint", "raw", "start", "end", NULL};
    static const char *const zipkin_params[] = {NULL};
    if (check_params(req, up, api, api == ZIPKIN ? zipkin_params : jaeger_params) != 0)
        return;
    struct trace_p *p = calloc(1, sizeof(*p));
    if (!p) {
        reply_error(req, api, 503, "out of memory");
        return;
    }
    if (parse_id(req->params.values[0], p->id) != 0) {
        free(p);
        reply_error(req, api, 400,
                    api == JAEGER ? "malformed trace ID '%.*s': 1 to 32 hex digits, not all zero"
                                  : "invalid trace id '%.*s': 1 to 32 hex digits, not all zero",
                    (int)CN_MIN(req->params.values[0].len, 64), req->params.values[0].ptr);
        return;
    }
    p->form = form;
    submit(req, up, api, work_trace, free_p, p);
}

/* /api/traces/{id}: Jaeger's, unless the client asks for protobuf: that is Grafana's Tempo
 * data source, which gets tempopb.Trace (the rule of docs/compat.md). */
static void h_jaeger_trace(struct cn_http_req *req, void *ctx)
{
    int pb = wants_protobuf(req);
    trace_by_id(req, ctx, pb ? TEMPO : JAEGER, pb ? FORM_TEMPO_PB_V1 : FORM_JAEGER);
}

static void h_tempo_trace_v2(struct cn_http_req *req, void *ctx)
{
    trace_by_id(req, ctx, TEMPO, wants_protobuf(req) ? FORM_TEMPO_PB_V2 : FORM_TEMPO_JSON_V2);
}

static void h_zipkin_trace(struct cn_http_req *req, void *ctx)
{
    trace_by_id(req, ctx, ZIPKIN, FORM_ZIPKIN);
}

/* ---- services, operations, dependencies (derived tables, on the loop) ------------------- */

static json_t *service_names(struct cn_up *up)
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

/* Operation names of service (each once, sorted), optionally of one kind (-1: any). With
 * objects, [{name, spanKind}] per (name, kind) as Jaeger's /api/operations. */
static json_t *operations(struct cn_up *up, struct cn_slice service, int kind, int objects)
{
    json_t *a = json_array();
    struct cn_derive_op *ops = NULL;
    size_t n = 0;
    if (cn_derive_operations(cn_store_derive(up->store), &ops, &n, service) != 0)
        return a;
    for (size_t i = 0; i < n; i++) {
        if (kind >= 0 && ops[i].kind != kind)
            continue;
        if (objects) {
            json_t *o = json_object();
            json_object_set_new(o, "name", json_stringn(ops[i].name.ptr, ops[i].name.len));
            json_object_set_new(o, "spanKind",
                                json_string(ops[i].kind == CN_KIND_UNSPECIFIED
                                                ? ""
                                                : cn_query_kind_name(ops[i].kind)));
            json_array_append_new(a, o);
        } else {
            /* Sorted by name then kind: one name for all its kinds. */
            json_t *last = json_array_get(a, json_array_size(a) - 1);
            if (!last || json_string_length(last) != ops[i].name.len ||
                memcmp(json_string_value(last), ops[i].name.ptr, ops[i].name.len) != 0)
                json_array_append_new(a, json_stringn(ops[i].name.ptr, ops[i].name.len));
        }
    }
    free(ops);
    return a;
}

static const char *const pretty_only[] = {"prettyPrint", NULL};

static void h_jaeger_services(struct cn_http_req *req, void *ctx)
{
    if (check_params(req, ctx, JAEGER, pretty_only) != 0)
        return;
    json_t *a = service_names(ctx);
    cn_http_reply_json(req, 200, jaeger_envelope(a, json_array_size(a)));
}

static void h_jaeger_service_ops(struct cn_http_req *req, void *ctx)
{
    if (check_params(req, ctx, JAEGER, pretty_only) != 0)
        return;
    char svc[512];
    if (percent_decode(req->params.values[0], svc, sizeof(svc)) < 0) {
        reply_error(req, JAEGER, 400, "service name longer than %zu bytes", sizeof(svc) - 1);
        return;
    }
    json_t *a = operations(ctx, cn_slice_of(svc), -1, 0);
    cn_http_reply_json(req, 200, jaeger_envelope(a, json_array_size(a)));
}

static void h_jaeger_operations(struct cn_http_req *req, void *ctx)
{
    static const char *const names[] = {"service", "spanKind", "prettyPrint", NULL};
    if (check_params(req, ctx, JAEGER, names) != 0)
        return;
    char svc[512], kind_s[64];
    int rc = param(req, JAEGER, "service", svc, sizeof(svc));
    if (rc < 0)
        return;
    if (rc == 0) {
        reply_error(req, JAEGER, 400, "parameter 'service' is required");
        return;
    }
    int kind = -1;
    if ((rc = param(req, JAEGER, "spanKind", kind_s, sizeof(kind_s))) < 0)
        return;
    if (rc > 0 && cn_query_parse_kind(cn_slice_of(kind_s), &kind) != 0) {
        reply_error(req, JAEGER, 400,
                    "unable to parse param 'spanKind': unsupported span kind '%.40s'", kind_s);
        return;
    }
    json_t *a = operations(ctx, cn_slice_of(svc), kind, 1);
    cn_http_reply_json(req, 200, jaeger_envelope(a, json_array_size(a)));
}

/* Edges over [from, to) merged per (caller, callee): [{parent, child, callCount[,
 * errorCount]}]. */
static json_t *dependencies(struct cn_up *up, uint64_t from, uint64_t to, int zipkin)
{
    json_t *a = json_array();
    struct cn_derive_edge *e = NULL;
    size_t n = 0;
    struct cn_derive_edge_query q = {.from_ns = from, .to_ns = to};
    if (cn_derive_edges(cn_store_derive(up->store), &e, &n, &q) != 0)
        return a;
    json_t *last = NULL;
    for (size_t i = 0; i < n; i++) {
        if (last && cn_slice_eq(e[i].caller, e[i - 1].caller) &&
            cn_slice_eq(e[i].callee, e[i - 1].callee)) {
            json_object_set_new(
                last, "callCount",
                json_integer(json_integer_value(json_object_get(last, "callCount")) +
                             (json_int_t)e[i].count));
            if (zipkin)
                json_object_set_new(
                    last, "errorCount",
                    json_integer(json_integer_value(json_object_get(last, "errorCount")) +
                                 (json_int_t)e[i].errors));
            continue;
        }
        last = json_object();
        json_object_set_new(last, "parent", json_stringn(e[i].caller.ptr, e[i].caller.len));
        json_object_set_new(last, "child", json_stringn(e[i].callee.ptr, e[i].callee.len));
        json_object_set_new(last, "callCount", json_integer((json_int_t)e[i].count));
        if (zipkin)
            json_object_set_new(last, "errorCount", json_integer((json_int_t)e[i].errors));
        json_array_append_new(a, last);
    }
    free(e);
    return a;
}

/* endTs (ms, default now) and lookback (ms, default one day) into [from, to). */
static int end_lookback(struct cn_http_req *req, enum api api, struct cn_up *up, int end_required,
                        uint64_t *from, uint64_t *to)
{
    uint64_t end_ms = now_ns() / MS_NS, lookback_ms = 86400000;
    struct cn_query_limits lim;
    limits(up, &lim);
    int rc = param_u64(req, api, "endTs", 1, UINT64_MAX / MS_NS, &end_ms);
    if (rc < 0)
        return -1;
    if (rc == 0 && end_required) {
        reply_error(req, api, 400, "endTs is required");
        return -1;
    }
    if (param_u64(req, api, "lookback", 1, lim.max_range_ns / MS_NS, &lookback_ms) < 0)
        return -1;
    *to = end_ms * MS_NS;
    *from = lookback_ms < end_ms ? (end_ms - lookback_ms) * MS_NS : 0;
    return 0;
}

static void h_jaeger_dependencies(struct cn_http_req *req, void *ctx)
{
    static const char *const names[] = {"endTs", "lookback", "prettyPrint", NULL};
    uint64_t from, to;
    if (check_params(req, ctx, JAEGER, names) != 0 || end_lookback(req, JAEGER, ctx, 0, &from, &to))
        return;
    json_t *a = dependencies(ctx, from, to, 0);
    cn_http_reply_json(req, 200, jaeger_envelope(a, json_array_size(a)));
}

static void h_zipkin_services(struct cn_http_req *req, void *ctx)
{
    static const char *const none[] = {NULL};
    if (check_params(req, ctx, ZIPKIN, none) != 0)
        return;
    cn_http_reply_json(req, 200, service_names(ctx));
}

static void h_zipkin_spans(struct cn_http_req *req, void *ctx)
{
    static const char *const names[] = {"serviceName", NULL};
    char svc[512];
    int rc;
    if (check_params(req, ctx, ZIPKIN, names) != 0 ||
        (rc = param(req, ZIPKIN, "serviceName", svc, sizeof(svc))) < 0)
        return;
    if (rc == 0) {
        reply_error(req, ZIPKIN, 400, "serviceName is required");
        return;
    }
    cn_http_reply_json(req, 200, operations(ctx, cn_slice_of(svc), -1, 0));
}

/* Peers a service called over the buckets the derived tables keep. */
static void h_zipkin_remote(struct cn_http_req *req, void *ctx)
{
    static const char *const names[] = {"serviceName", NULL};
    struct cn_up *up = ctx;
    char svc[512];
    int rc;
    if (check_params(req, ctx, ZIPKIN, names) != 0 ||
        (rc = param(req, ZIPKIN, "serviceName", svc, sizeof(svc))) < 0)
        return;
    if (rc == 0) {
        reply_error(req, ZIPKIN, 400, "serviceName is required");
        return;
    }
    const struct cn_derive_opts *o = cn_derive_opts(cn_store_derive(up->store));
    uint64_t to = now_ns() + o->bucket_ns, span = o->bucket_ns * o->num_buckets;
    json_t *deps = dependencies(up, to > span ? to - span : 0, to, 1);
    json_t *a = json_array();
    size_t i;
    json_t *d;
    json_array_foreach(deps, i, d)
    {
        if (strcmp(json_string_value(json_object_get(d, "parent")), svc) == 0)
            json_array_append(a, json_object_get(d, "child"));
    }
    json_decref(deps);
    cn_http_reply_json(req, 200, a);
}

static void h_zipkin_dependencies(struct cn_http_req *req, void *ctx)
{
    static const char *const names[] = {"endTs", "lookback", NULL};
    uint64_t from, to;
    if (check_params(req, ctx, ZIPKIN, names) != 0 || end_lookback(req, ZIPKIN, ctx, 1, &from, &to))
        return;
    cn_http_reply_json(req, 200, dependencies(ctx, from, to, 1));
}

static void h_tempo_echo(struct cn_http_req *req, void *ctx)
{
    (void)ctx;
    cn_http_reply(req, 200, "text/plain; charset=utf-8", "echo", 4, NULL, 0);
}

/* ---- trace search: Jaeger and Zipkin through the query layer ---------------------------- */

struct search_p {
    struct cn_trace_query q;
    struct cn_pred preds[CN_QUERY_MAX_PREDS];
    size_t num_preds;
    char service[512], operation[512];
    uint8_t (*ids)[16]; /* Jaeger's traceID=: these traces, no search */
    size_t num_ids;
};

static void free_search(struct job *j)
{
    struct search_p *p = j->p;
    if (!p)
        return;
    for (size_t i = 0; i < p->num_preds; i++)
        cn_pred_release(&p->preds[i]);
    free(p->ids);
    free(p);
}

static void work_search(struct job *jb)
{
    struct search_p *p = jb->p;
    struct cn_store *st = jb->up->store;
    json_t *data = json_array();
    if (p->num_ids) {
        for (size_t i = 0; i < p->num_ids; i++) {
            json_t *t = jaeger_trace(st, p->ids[i]);
            if (t)
                json_array_append_new(data, t);
        }
        job_json(jb, 200, jaeger_envelope(data, json_array_size(data)));
        return;
    }
    struct cn_query_limits lim;
    limits(jb->up, &lim);
    struct cn_trace_result r;
    char err[256];
    p->q.preds = p->preds;
    p->q.num_preds = p->num_preds;
    int rc = cn_query_traces(st, &lim, &p->q, &r, err, sizeof(err));
    if (rc != 0) {
        json_decref(data);
        job_error(jb, rc == CN_EINVAL ? 400 : 503, "%s", err);
        cn_trace_result_release(&r);
        return;
    }
    for (size_t i = 0; i < r.num; i++) {
        json_t *t = jb->api == JAEGER ? jaeger_trace(st, r.traces[i].trace_id)
                                      : zipkin_trace(st, r.traces[i].trace_id);
        if (t)
            json_array_append_new(data, t);
    }
    cn_trace_result_release(&r);
    job_json(jb, 200, jb->api == JAEGER ? jaeger_envelope(data, json_array_size(data)) : data);
}

/* Adds predicate "key=value" (or "key=~^" for "key is set"). Returns 0, or -1 after a 400. */
static int add_pred(struct cn_http_req *req, enum api api, struct search_p *p, const char *pname,
                    const char *key, const char *value)
{
    if (p->num_preds == CN_QUERY_MAX_PREDS) {
        reply_error(req, api, 400, "parameter '%s': more than %d conditions", pname,
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
        snprintf(err, sizeof(err), "condition too long");
    cn_buf_release(&t);
    if (rc != 0) {
        reply_error(req, api, 400, "parameter '%s': %s", pname, err);
        return -1;
    }
    p->num_preds++;
    return 0;
}

/* A tag the way Jaeger's UI writes them: error=true, span.kind and otel.status_code are the
 * span's status and kind here, not attributes. */
static int jaeger_tag(struct cn_http_req *req, struct search_p *p, const char *pname,
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
    return add_pred(req, JAEGER, p, pname, key, value);
}

static int jaeger_tags(struct cn_http_req *req, struct search_p *p)
{
    char *v = malloc(MAX_PARAM);
    if (!v) {
        reply_error(req, JAEGER, 503, "out of memory");
        return -1;
    }
    int rc = 0;
    for (size_t i = 0; rc == 0; i++) {
        int n = param_n(req, "tags", i, v, MAX_PARAM);
        if (n == -1)
            break;
        json_error_t je;
        json_t *j = n >= 0 ? json_loads(v, 0, &je) : NULL;
        if (!json_is_object(j)) {
            json_decref(j);
            reply_error(req, JAEGER, 400,
                        "malformed 'tags' parameter, cannot unmarshal JSON: expected an object "
                        "of strings");
            rc = -1;
            break;
        }
        const char *k;
        json_t *x;
        json_object_foreach(j, k, x)
        {
            if (!json_is_string(x)) {
                reply_error(req, JAEGER, 400,
                            "malformed 'tags' parameter, cannot unmarshal JSON: value of '%.64s' "
                            "is not a string",
                            k);
                rc = -1;
                break;
            }
            if ((rc = jaeger_tag(req, p, "tags", k, json_string_value(x))) != 0)
                break;
        }
        json_decref(j);
    }
    for (size_t i = 0; rc == 0; i++) {
        int n = param_n(req, "tag", i, v, MAX_PARAM);
        if (n == -1)
            break;
        char *colon = n >= 0 ? strchr(v, ':') : NULL;
        if (!colon) {
            reply_error(req, JAEGER, 400,
                        "malformed 'tag' parameter, expecting key:value, received: %.64s",
                        n >= 0 ? v : "(too long)");
            rc = -1;
            break;
        }
        *colon = '\0';
        rc = jaeger_tag(req, p, "tag", v, colon + 1);
    }
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
        *out_ns = days * 86400 * SEC_NS;
        return 0;
    }
    return cn_query_parse_duration(cn_slice_of(v), out_ns);
}

static void h_jaeger_search(struct cn_http_req *req, void *ctx)
{
    static const char *const names[] = {
        "service",  "operation",   "tag",         "tags",    "start",       "end",      "limit",
        "lookback", "minDuration", "maxDuration", "traceID", "prettyPrint", "spanKind", NULL};
    struct cn_up *up = ctx;
    if (check_params(req, ctx, JAEGER, names) != 0)
        return;
    struct search_p *p = calloc(1, sizeof(*p));
    if (!p) {
        reply_error(req, JAEGER, 503, "out of memory");
        return;
    }
    struct job tmp = {.p = p};
    struct cn_query_limits lim;
    limits(up, &lim);
    char v[128];
    int rc;
    /* traceID=...: these traces (the UI's compare view), nothing else counts. */
    for (size_t i = 0;; i++) {
        int n = param_n(req, "traceID", i, v, sizeof(v));
        if (n == -1)
            break;
        uint8_t(*ids)[16] = realloc(p->ids, (p->num_ids + 1) * sizeof(*ids));
        if (!ids || n < 0 || parse_id((struct cn_slice){v, (size_t)n}, ids[p->num_ids]) != 0) {
            if (ids)
                p->ids = ids;
            reply_error(req, JAEGER, 400, "cannot parse traceID param: '%.40s'", n < 0 ? "" : v);
            goto fail;
        }
        p->ids = ids;
        if (++p->num_ids > lim.max_limit) {
            reply_error(req, JAEGER, 400, "more than %u traceID parameters", lim.max_limit);
            goto fail;
        }
    }
    p->q.status = -1;
    p->q.kind = -1;
    p->q.order = CN_ORDER_START;
    if ((rc = param(req, JAEGER, "service", p->service, sizeof(p->service))) < 0)
        goto fail;
    if (rc == 0 && p->num_ids == 0) {
        reply_error(req, JAEGER, 400, "parameter 'service' is required");
        goto fail;
    }
    if (rc > 0)
        p->q.service = cn_slice_of(p->service);
    if ((rc = param(req, JAEGER, "operation", p->operation, sizeof(p->operation))) < 0)
        goto fail;
    if (rc > 0)
        p->q.operation = cn_slice_of(p->operation);
    if ((rc = param(req, JAEGER, "spanKind", v, sizeof(v))) < 0)
        goto fail;
    if (rc > 0 && cn_query_parse_kind(cn_slice_of(v), &p->q.kind) != 0) {
        reply_error(req, JAEGER, 400, "unable to parse param 'spanKind': '%.40s'", v);
        goto fail;
    }
    uint64_t limit = 100, end_us = now_ns() / 1000, start_us = 0, lookback_ns = 2 * 86400 * SEC_NS;
    if (param_u64(req, JAEGER, "limit", 1, lim.max_limit, &limit) < 0 ||
        param_u64(req, JAEGER, "end", 1, UINT64_MAX / 1000, &end_us) < 0 ||
        (rc = param_u64(req, JAEGER, "start", 0, UINT64_MAX / 1000, &start_us)) < 0)
        goto fail;
    int has_start = rc > 0;
    int lrc = param(req, JAEGER, "lookback", v, sizeof(v));
    if (lrc < 0)
        goto fail;
    if (lrc > 0 && strcmp(v, "custom") != 0 && parse_lookback(v, &lookback_ns) != 0) {
        reply_error(req, JAEGER, 400,
                    "unable to parse param 'lookback': '%.40s' (e.g. 1h, 2d, custom)", v);
        goto fail;
    }
    if (!has_start)
        start_us = end_us > lookback_ns / 1000 ? end_us - lookback_ns / 1000 : 0;
    if (start_us >= end_us) {
        reply_error(req, JAEGER, 400, "'end' should be after 'start'");
        goto fail;
    }
    if ((end_us - start_us) * 1000 > lim.max_range_ns) {
        reply_error(req, JAEGER, 400, "'start' to 'end' is wider than %llu s (query.max_range)",
                    (unsigned long long)(lim.max_range_ns / SEC_NS));
        goto fail;
    }
    if (param_duration(req, JAEGER, "minDuration", &p->q.min_duration_ns) < 0 ||
        param_duration(req, JAEGER, "maxDuration", &p->q.max_duration_ns) < 0)
        goto fail;
    if (p->q.min_duration_ns && p->q.max_duration_ns &&
        p->q.max_duration_ns < p->q.min_duration_ns) {
        reply_error(req, JAEGER, 400, "'maxDuration' should be greater than 'minDuration'");
        goto fail;
    }
    if (jaeger_tags(req, p) != 0)
        goto fail;
    p->q.from_ns = start_us * 1000;
    p->q.to_ns = end_us * 1000;
    p->q.limit = (size_t)limit;
    submit(req, up, JAEGER, work_search, free_search, p);
    return;
fail:
    free_search(&tmp);
}

static void h_zipkin_search(struct cn_http_req *req, void *ctx)
{
    static const char *const names[] = {"serviceName", "remoteServiceName",
                                        "spanName",    "annotationQuery",
                                        "minDuration", "maxDuration",
                                        "endTs",       "lookback",
                                        "limit",       NULL};
    struct cn_up *up = ctx;
    if (check_params(req, ctx, ZIPKIN, names) != 0)
        return;
    struct search_p *p = calloc(1, sizeof(*p));
    char *aq = malloc(MAX_PARAM);
    if (!p || !aq) {
        free(p);
        free(aq);
        reply_error(req, ZIPKIN, 503, "out of memory");
        return;
    }
    struct job tmp = {.p = p};
    struct cn_query_limits lim;
    limits(up, &lim);
    p->q.status = -1;
    p->q.kind = -1;
    p->q.order = CN_ORDER_START;
    int rc;
    char v[512];
    if ((rc = param(req, ZIPKIN, "serviceName", p->service, sizeof(p->service))) < 0)
        goto fail;
    if (rc > 0)
        p->q.service = cn_slice_of(p->service);
    if ((rc = param(req, ZIPKIN, "spanName", p->operation, sizeof(p->operation))) < 0)
        goto fail;
    /* The Zipkin UI sends spanName=all for "any". */
    if (rc > 0 && strcmp(p->operation, "all") != 0)
        p->q.operation = cn_slice_of(p->operation);
    if ((rc = param(req, ZIPKIN, "remoteServiceName", v, sizeof(v))) < 0 ||
        (rc > 0 && strcmp(v, "all") != 0 &&
         add_pred(req, ZIPKIN, p, "remoteServiceName", "peer.service", v) != 0))
        goto fail;
    uint64_t min_us = 0, max_us = 0, limit = 10;
    if (param_u64(req, ZIPKIN, "minDuration", 1, UINT64_MAX / 1000, &min_us) < 0 ||
        param_u64(req, ZIPKIN, "maxDuration", 1, UINT64_MAX / 1000, &max_us) < 0 ||
        param_u64(req, ZIPKIN, "limit", 1, lim.max_limit, &limit) < 0)
        goto fail;
    if (min_us && max_us && max_us < min_us) {
        reply_error(req, ZIPKIN, 400, "maxDuration should be >= minDuration");
        goto fail;
    }
    p->q.min_duration_ns = min_us * 1000;
    p->q.max_duration_ns = max_us * 1000;
    if (end_lookback(req, ZIPKIN, up, 0, &p->q.from_ns, &p->q.to_ns) != 0)
        goto fail;
    /* annotationQuery: "error and http.method=GET": terms joined by " and "; a bare key means
     * "has this tag" (error: the span's status is ERROR). */
    if ((rc = param(req, ZIPKIN, "annotationQuery", aq, MAX_PARAM)) < 0)
        goto fail;
    for (char *t = rc > 0 ? aq : NULL; t && *t;) {
        char *next = strstr(t, " and ");
        if (next) {
            *next = '\0';
            next += 5;
        }
        while (*t == ' ')
            t++;
        if (*t) {
            char *eq = strchr(t, '=');
            if (eq) {
                *eq = '\0';
                if (add_pred(req, ZIPKIN, p, "annotationQuery", t, eq + 1) != 0)
                    goto fail;
            } else if (strcmp(t, "error") == 0) {
                p->q.status = CN_STATUS_ERROR;
            } else if (add_pred(req, ZIPKIN, p, "annotationQuery", t, NULL) != 0) {
                goto fail;
            }
        }
        t = next;
    }
    p->q.limit = (size_t)limit;
    free(aq);
    submit(req, up, ZIPKIN, work_search, free_search, p);
    return;
fail:
    free(aq);
    free_search(&tmp);
}

/* ---- Tempo search ----------------------------------------------------------------------- */

struct tempo_p {
    struct cn_tql_query *tql; /* NULL: the legacy tags search below */
    struct search_p legacy;
    uint64_t from_ns, to_ns;
    uint64_t min_dur_ns, max_dur_ns; /* of the whole trace; 0: no bound */
    size_t limit, spss;
};

static void free_tempo(struct job *j)
{
    struct tempo_p *p = j->p;
    if (!p)
        return;
    cn_tql_free(p->tql);
    for (size_t i = 0; i < p->legacy.num_preds; i++)
        cn_pred_release(&p->legacy.preds[i]);
    free(p);
}

static json_t *u64str(uint64_t v)
{
    char b[24];
    snprintf(b, sizeof(b), "%llu", (unsigned long long)v);
    return json_string(b);
}

/* One search result as Tempo's TraceSearchMetadata. */
static json_t *tempo_summary(const struct cn_derive_trace *t)
{
    char hex[33];
    cn_hex_encode(hex, t->trace_id, 16);
    json_t *j = json_object();
    json_object_set_new(j, "traceID", json_string(hex));
    if (t->has_root) {
        json_object_set_new(j, "rootServiceName",
                            json_stringn(t->root_service.ptr, t->root_service.len));
        json_object_set_new(j, "rootTraceName",
                            json_stringn(t->root_operation.ptr, t->root_operation.len));
    } else {
        json_object_set_new(j, "rootServiceName", json_string("<root span not yet received>"));
    }
    json_object_set_new(j, "startTimeUnixNano", u64str(t->start_ns));
    json_object_set_new(j, "durationMs", json_integer((json_int_t)(t->duration_ns / MS_NS)));
    return j;
}

static int duration_ok(const struct tempo_p *p, uint64_t d)
{
    return (!p->min_dur_ns || d >= p->min_dur_ns) && (!p->max_dur_ns || d <= p->max_dur_ns);
}

static json_t *tempo_metrics(uint64_t scanned, size_t traces, int truncated)
{
    json_t *m = json_object();
    json_object_set_new(m, "inspectedTraces", json_integer((json_int_t)traces));
    json_object_set_new(m, "inspectedSpans", u64str(scanned));
    json_object_set_new(m, "inspectedBytes", json_string("0"));
    json_object_set_new(m, "completedJobs", json_integer(1));
    json_object_set_new(m, "totalJobs", json_integer(1));
    if (truncated)
        json_object_set_new(m, "truncated", json_true());
    return m;
}

static void work_tempo_search(struct job *jb)
{
    struct tempo_p *p = jb->p;
    struct cn_store *st = jb->up->store;
    struct cn_query_limits lim;
    limits(jb->up, &lim);
    json_t *traces = json_array();
    json_t *j = json_object();
    if (!p->tql) {
        struct cn_trace_result r;
        char err[256];
        p->legacy.q.preds = p->legacy.preds;
        p->legacy.q.num_preds = p->legacy.num_preds;
        int rc = cn_query_traces(st, &lim, &p->legacy.q, &r, err, sizeof(err));
        if (rc != 0) {
            json_decref(traces);
            json_decref(j);
            cn_trace_result_release(&r);
            job_error(jb, rc == CN_EINVAL ? 400 : 503, "%s", err);
            return;
        }
        for (size_t i = 0; i < r.num && json_array_size(traces) < p->limit; i++)
            if (duration_ok(p, r.traces[i].duration_ns))
                json_array_append_new(traces, tempo_summary(&r.traces[i]));
        json_object_set_new(j, "traces", traces);
        json_object_set_new(j, "metrics", tempo_metrics(r.scanned, r.num, r.truncated));
        cn_trace_result_release(&r);
        job_json(jb, 200, j);
        return;
    }
    struct cn_tql_result r;
    int rc = cn_tql_search(st, p->tql, p->from_ns, p->to_ns, lim.max_scan_records, p->spss, &r);
    if (rc != 0) {
        json_decref(traces);
        json_decref(j);
        cn_tql_result_release(&r);
        job_error(jb, 503, "search failed: %s", cn_strerror(rc));
        return;
    }
    struct cn_arena names;
    cn_arena_init(&names, 16u << 10, 16u << 20);
    for (size_t i = 0; i < r.num && json_array_size(traces) < p->limit; i++) {
        const struct cn_tql_hit *h = &r.hits[i];
        struct cn_derive_trace t;
        if (cn_query_trace_summary(st, &t, h->trace_id, &names) != 0 ||
            !duration_ok(p, t.duration_ns))
            continue;
        json_t *s = tempo_summary(&t);
        json_t *spans = json_array();
        for (uint32_t k = 0; k < h->num_spans; k++) {
            char sid[17];
            cn_hex_encode(sid, h->spans[k].span_id, 8);
            json_t *sp = json_object();
            json_object_set_new(sp, "spanID", json_string(sid));
            json_t *nm = json_string(h->spans[k].name);
            json_object_set_new(sp, "name", nm ? nm : json_string(""));
            json_object_set_new(sp, "startTimeUnixNano", u64str(h->spans[k].start_ns));
            json_object_set_new(sp, "durationNanos", u64str(h->spans[k].duration_ns));
            json_array_append_new(spans, sp);
        }
        json_t *set = json_object();
        json_object_set_new(set, "spans", spans);
        json_object_set_new(set, "matched", json_integer(h->matched));
        json_object_set(s, "spanSet", set);
        json_t *sets = json_array();
        json_array_append_new(sets, set);
        json_object_set_new(s, "spanSets", sets);
        json_array_append_new(traces, s);
    }
    cn_arena_release(&names);
    json_object_set_new(j, "traces", traces);
    json_object_set_new(j, "metrics", tempo_metrics(r.scanned, r.num, r.truncated));
    cn_tql_result_release(&r);
    job_json(jb, 200, j);
}

/* Unix seconds start/end (default: the last hour) into [from, to). */
static int tempo_range(struct cn_http_req *req, struct cn_query_limits *lim, uint64_t *from,
                       uint64_t *to)
{
    uint64_t end_s = now_ns() / SEC_NS + 1, start_s = 0;
    int rc;
    if (param_u64(req, TEMPO, "end", 1, UINT64_MAX / SEC_NS - 1, &end_s) < 0 ||
        (rc = param_u64(req, TEMPO, "start", 0, UINT64_MAX / SEC_NS - 1, &start_s)) < 0)
        return -1;
    if (rc == 0)
        start_s = end_s > 3600 ? end_s - 3600 : 0;
    if (start_s >= end_s) {
        reply_error(req, TEMPO, 400, "invalid start: start must be before end");
        return -1;
    }
    if ((end_s - start_s) * SEC_NS > lim->max_range_ns) {
        reply_error(req, TEMPO, 400, "invalid start: range wider than %llu s (query.max_range)",
                    (unsigned long long)(lim->max_range_ns / SEC_NS));
        return -1;
    }
    *from = start_s * SEC_NS;
    *to = end_s * SEC_NS;
    return 0;
}

/* Tempo's legacy tags= (logfmt: k=v k2="v 2"): service.name, name and status are the span's
 * service, name and status; other keys attribute predicates. */
static int tempo_tags(struct cn_http_req *req, struct tempo_p *p, char *s)
{
    struct search_p *l = &p->legacy;
    while (*s) {
        while (*s == ' ')
            s++;
        if (!*s)
            break;
        char *k = s;
        while (*s && *s != '=' && *s != ' ')
            s++;
        if (*s != '=' || s == k) {
            reply_error(req, TEMPO, 400, "invalid tags: expected key=value at '%.40s'", k);
            return -1;
        }
        *s++ = '\0';
        char *v = s;
        if (*s == '"') {
            v = ++s;
            while (*s && *s != '"')
                s++;
            if (*s != '"') {
                reply_error(req, TEMPO, 400, "invalid tags: unclosed quote in value of '%.40s'", k);
                return -1;
            }
        } else {
            while (*s && *s != ' ')
                s++;
        }
        if (*s)
            *s++ = '\0';
        int x;
        if (strcmp(k, "service.name") == 0 && !l->q.service.ptr) {
            snprintf(l->service, sizeof(l->service), "%s", v);
            l->q.service = cn_slice_of(l->service);
        } else if (strcmp(k, "name") == 0 && !l->q.operation.ptr) {
            snprintf(l->operation, sizeof(l->operation), "%s", v);
            l->q.operation = cn_slice_of(l->operation);
        } else if (strcmp(k, "status") == 0 && cn_query_parse_status(cn_slice_of(v), &x) == 0) {
            l->q.status = x;
        } else if (add_pred(req, TEMPO, l, "tags", k, v) != 0) {
            return -1;
        }
    }
    return 0;
}

static void h_tempo_search(struct cn_http_req *req, void *ctx)
{
    static const char *const names[] = {"q",   "tags",  "minDuration", "maxDuration", "start",
                                        "end", "limit", "spss",        NULL};
    struct cn_up *up = ctx;
    if (check_params(req, ctx, TEMPO, names) != 0)
        return;
    struct tempo_p *p = calloc(1, sizeof(*p));
    char *v = malloc(MAX_PARAM);
    if (!p || !v) {
        free(p);
        free(v);
        reply_error(req, TEMPO, 503, "out of memory");
        return;
    }
    struct job tmp = {.p = p};
    struct cn_query_limits lim;
    limits(up, &lim);
    uint64_t limit = 20, spss = 3;
    int rc;
    if (param_u64(req, TEMPO, "limit", 1, lim.max_limit, &limit) < 0 ||
        param_u64(req, TEMPO, "spss", 1, CN_TQL_MAX_SPSS, &spss) < 0 ||
        tempo_range(req, &lim, &p->from_ns, &p->to_ns) != 0 ||
        param_duration(req, TEMPO, "minDuration", &p->min_dur_ns) < 0 ||
        param_duration(req, TEMPO, "maxDuration", &p->max_dur_ns) < 0)
        goto fail;
    if (p->min_dur_ns && p->max_dur_ns && p->max_dur_ns < p->min_dur_ns) {
        reply_error(req, TEMPO, 400, "invalid maxDuration: must be greater than minDuration");
        goto fail;
    }
    p->limit = (size_t)limit;
    p->spss = (size_t)spss;
    if ((rc = param(req, TEMPO, "q", v, MAX_PARAM)) < 0)
        goto fail;
    if (rc > 0) {
        char err[256];
        if (cn_tql_parse(&p->tql, cn_slice_of(v), err, sizeof(err), NULL) != 0) {
            reply_error(req, TEMPO, 400, "invalid TraceQL query: %s", err);
            goto fail;
        }
    } else {
        p->legacy.q.status = -1;
        p->legacy.q.kind = -1;
        p->legacy.q.order = CN_ORDER_START;
        p->legacy.q.from_ns = p->from_ns;
        p->legacy.q.to_ns = p->to_ns;
        /* Trace durations are checked on the summaries; ask for more to fill the limit. */
        p->legacy.q.limit = p->min_dur_ns || p->max_dur_ns ? lim.max_limit : p->limit;
        if ((rc = param(req, TEMPO, "tags", v, MAX_PARAM)) < 0 ||
            (rc > 0 && tempo_tags(req, p, v) != 0))
            goto fail;
    }
    free(v);
    submit(req, up, TEMPO, work_tempo_search, free_tempo, p);
    return;
fail:
    free(v);
    free_tempo(&tmp);
}

/* ---- Tempo tags and values ------------------------------------------------------------- */

struct tags_p {
    struct cn_tag_query q;
    char key[CN_QUERY_MAX_KEY_BYTES + 1];
    int v2;
};

/* The intrinsics Tempo lists, and those of them that have values here. */
static const char *const intrinsics[] = {"duration", "kind",          "name",
                                         "status",   "statusMessage", NULL};

static void work_tags(struct job *jb)
{
    struct tags_p *p = jb->p;
    struct cn_query_limits lim;
    limits(jb->up, &lim);
    struct cn_tag_result r;
    char err[256];
    int rc = cn_query_tags(jb->up->store, &lim, &p->q, &r, err, sizeof(err));
    if (rc != 0) {
        cn_tag_result_release(&r);
        job_error(jb, rc == CN_EINVAL ? 400 : 503, "%s", err);
        return;
    }
    json_t *a = json_array();
    for (size_t i = 0; i < r.num; i++) {
        json_t *s = json_string(r.items[i].name);
        if (!s)
            continue; /* not UTF-8 */
        if (p->v2 && p->q.key.ptr) {
            json_t *o = json_object();
            json_object_set_new(o, "type", json_string("string"));
            json_object_set_new(o, "value", s);
            s = o;
        }
        json_array_append_new(a, s);
    }
    cn_tag_result_release(&r);
    json_t *j = json_object();
    json_object_set_new(j, p->q.key.ptr ? "tagValues" : "tagNames", a);
    job_json(jb, 200, j);
}

static void tags(struct cn_http_req *req, struct cn_up *up, int values, int v2)
{
    static const char *const names[] = {"scope", "start", "end", "q", "limit", NULL};
    if (check_params(req, up, TEMPO, names) != 0)
        return;
    struct tags_p *p = calloc(1, sizeof(*p));
    if (!p) {
        reply_error(req, TEMPO, 503, "out of memory");
        return;
    }
    struct cn_query_limits lim;
    limits(up, &lim);
    uint64_t limit = lim.max_limit;
    char scope[32];
    int rc;
    if (param_u64(req, TEMPO, "limit", 1, lim.max_limit, &limit) < 0 ||
        tempo_range(req, &lim, &p->q.from_ns, &p->q.to_ns) != 0 ||
        (rc = param(req, TEMPO, "scope", scope, sizeof(scope))) < 0)
        goto fail;
    if (rc > 0 && strcmp(scope, "all") != 0 && strcmp(scope, "span") != 0 &&
        strcmp(scope, "resource") != 0 && strcmp(scope, "intrinsic") != 0) {
        reply_error(req, TEMPO, 400, "invalid scope: '%.20s' (all, span, resource, intrinsic)",
                    scope);
        goto fail;
    }
    p->q.limit = (size_t)limit;
    p->v2 = v2;
    if (!values && rc > 0 && strcmp(scope, "intrinsic") == 0) {
        json_t *a = json_array();
        for (const char *const *n = intrinsics; *n; n++)
            json_array_append_new(a, json_string(*n));
        json_t *j = json_object();
        json_object_set_new(j, "tagNames", a);
        cn_http_reply_json(req, 200, j);
        goto fail;
    }
    if (values) {
        char tag[CN_QUERY_MAX_KEY_BYTES + 16];
        if (percent_decode(req->params.values[0], tag, sizeof(tag)) < 0) {
            reply_error(req, TEMPO, 400, "tag name longer than %d bytes", CN_QUERY_MAX_KEY_BYTES);
            goto fail;
        }
        /* v2 names carry their scope: span.x, resource.x, .x; the intrinsics have none. */
        const char *key = tag;
        if (v2 && strncmp(tag, "span.", 5) == 0)
            key = tag + 5;
        else if (v2 && strncmp(tag, "resource.", 9) == 0)
            key = tag + 9;
        else if (v2 && tag[0] == '.')
            key = tag + 1;
        if (!*key || strlen(key) > CN_QUERY_MAX_KEY_BYTES) {
            reply_error(req, TEMPO, 400, "invalid tag name '%.64s'", tag);
            goto fail;
        }
        memcpy(p->key, key, strlen(key) + 1); /* fits: checked above */
        p->q.key = cn_slice_of(p->key);
    }
    submit(req, up, TEMPO, work_tags, free_p, p);
    return;
fail:
    free(p);
}

static void h_tempo_tags(struct cn_http_req *req, void *ctx)
{
    tags(req, ctx, 0, 0);
}

static void h_tempo_tag_values(struct cn_http_req *req, void *ctx)
{
    tags(req, ctx, 1, 0);
}

static void h_tempo_tag_values_v2(struct cn_http_req *req, void *ctx)
{
    tags(req, ctx, 1, 1);
}

/* ---- routes ----------------------------------------------------------------------------- */

int cn_api_compat_routes(struct cn_up *up, struct cn_router *r)
{
    static const struct {
        const char *pattern;
        cn_http_handler_cb handler;
    } routes[] = {
        {"/api/services", h_jaeger_services},
        {"/api/services/{service}/operations", h_jaeger_service_ops},
        {"/api/operations", h_jaeger_operations},
        {"/api/traces", h_jaeger_search},
        {"/api/traces/{id}", h_jaeger_trace},
        {"/api/dependencies", h_jaeger_dependencies},
        {"/api/v2/services", h_zipkin_services},
        {"/api/v2/spans", h_zipkin_spans},
        {"/api/v2/remoteServices", h_zipkin_remote},
        {"/api/v2/traces", h_zipkin_search},
        {"/api/v2/trace/{id}", h_zipkin_trace},
        {"/api/v2/dependencies", h_zipkin_dependencies},
        {"/api/echo", h_tempo_echo},
        {"/api/search", h_tempo_search},
        {"/api/search/tags", h_tempo_tags},
        {"/api/search/tag/{tag}/values", h_tempo_tag_values},
        {"/api/v2/search/tag/{tag}/values", h_tempo_tag_values_v2},
        {"/api/v2/traces/{id}", h_tempo_trace_v2},
    };
    for (size_t i = 0; i < CN_ARRAY_LEN(routes); i++) {
        int rc = cn_router_add(r, CN_M(HTTP_GET), routes[i].pattern, routes[i].handler, up);
        if (rc < 0)
            return rc;
    }
    return 0;
}
