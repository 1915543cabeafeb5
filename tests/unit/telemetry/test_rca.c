/* Root cause analysis (telemetry/rca.h) on hand-built span sets served by a fake source:
 * error origins, self-time and critical path with overlapping children, baseline comparison
 * (latency, new error with a version change, traffic), determinism, limits at their edges,
 * log evidence, bad queries. */
#include "telemetry/rca.h"

#include <setjmp.h>
#include <stdarg.h>
#include <math.h>
#include <stddef.h>
#include <stdlib.h>

#include <cmocka.h>

#define MS  1000000ull
#define SEC 1000000000ull
#define T0                                                                                         \
    (1700000000ull * SEC) /* the window is [T0, T0 + 60 s), the baseline the minute before         \
                           */

/* ---- the fake source ------------------------------------------------------------------- */

#define MAX_SPANS 8192
#define MAX_LOGS  64
#define MAX_RES   16

static struct {
    struct cn_span spans[MAX_SPANS];
    size_t n;
    struct cn_log logs[MAX_LOGS];
    size_t nlogs;
    struct cn_resource res[MAX_RES];
    struct cn_kv reskv[MAX_RES][2];
    char names[MAX_RES][2][32];
    size_t nres;
    int reverse; /* serve records in reverse order */
    uint64_t spans_served;
} F;

static void reset(void)
{
    memset(&F, 0, sizeof(F));
}

static const struct cn_resource *R(const char *svc, const char *version)
{
    for (size_t i = 0; i < F.nres; i++)
        if (strcmp(F.names[i][0], svc) == 0 && strcmp(F.names[i][1], version) == 0)
            return &F.res[i];
    assert_true(F.nres < MAX_RES);
    size_t i = F.nres++;
    snprintf(F.names[i][0], 32, "%s", svc);
    snprintf(F.names[i][1], 32, "%s", version);
    F.reskv[i][0] = (struct cn_kv){CN_SLICE_LIT("service.name"),
                                   {CN_VAL_STR, {.s = cn_slice_of(F.names[i][0])}}};
    F.reskv[i][1] = (struct cn_kv){CN_SLICE_LIT("service.version"),
                                   {CN_VAL_STR, {.s = cn_slice_of(F.names[i][1])}}};
    F.res[i].attrs = (struct cn_kvs){F.reskv[i], 2, 0};
    F.res[i].service = cn_slice_of(F.names[i][0]);
    return &F.res[i];
}

static void trace_id(uint8_t id[16], unsigned t)
{
    memset(id, 0, 16);
    id[0] = 0x7a;
    id[14] = (uint8_t)(t >> 8);
    id[15] = (uint8_t)t;
}

static void span_id(uint8_t id[8], unsigned t, unsigned s)
{
    memset(id, 0, 8);
    if (!s)
        return;
    id[0] = 0x51;
    id[1] = (uint8_t)(t >> 8);
    id[2] = (uint8_t)t;
    id[3] = (uint8_t)(s >> 8);
    id[4] = (uint8_t)s;
}

static char *hex_trace(unsigned t)
{
    static char buf[8][33];
    static int k;
    uint8_t id[16];
    trace_id(id, t);
    char *b = buf[k++ % 8];
    cn_hex_encode(b, id, 16);
    return b;
}

static char *hex_span(unsigned t, unsigned s)
{
    static char buf[8][17];
    static int k;
    uint8_t id[8];
    span_id(id, t, s);
    char *b = buf[k++ % 8];
    cn_hex_encode(b, id, 8);
    return b;
}

/* Span s of trace t under parent (0: a root), [start, end) absolute. */
static struct cn_span *S(unsigned t, unsigned s, unsigned parent, const struct cn_resource *r,
                         const char *name, uint64_t start, uint64_t end, const char *err)
{
    assert_true(F.n < MAX_SPANS);
    struct cn_span *x = &F.spans[F.n++];
    memset(x, 0, sizeof(*x));
    trace_id(x->trace_id, t);
    span_id(x->span_id, t, s);
    span_id(x->parent_id, t, parent);
    x->name = cn_slice_of(name);
    x->kind = parent ? CN_KIND_INTERNAL : CN_KIND_SERVER;
    x->start_ns = start;
    x->end_ns = end;
    x->resource = r;
    if (err) {
        x->status_code = CN_STATUS_ERROR;
        x->status_message = cn_slice_of(err);
    }
    return x;
}

static struct cn_log *L(unsigned t, unsigned s, const struct cn_resource *r, uint64_t when,
                        const char *body)
{
    assert_true(F.nlogs < MAX_LOGS);
    struct cn_log *l = &F.logs[F.nlogs++];
    memset(l, 0, sizeof(*l));
    l->time_ns = when;
    l->severity_number = 17;
    l->severity_text = CN_SLICE_LIT("ERROR");
    l->body.type = CN_VAL_STR;
    l->body.u.s = cn_slice_of(body);
    if (t)
        trace_id(l->trace_id, t);
    span_id(l->span_id, t, s);
    l->resource = r;
    return l;
}

static size_t at(size_t i, size_t n)
{
    return F.reverse ? n - 1 - i : i;
}

static size_t f_scan_spans(void *ctx, uint64_t from, uint64_t to, size_t limit, cn_store_span_cb cb,
                           void *cb_ctx)
{
    (void)ctx;
    size_t k = 0;
    for (size_t i = 0; i < F.n && (limit == 0 || k < limit); i++) {
        const struct cn_span *s = &F.spans[at(i, F.n)];
        if (s->start_ns >= from && s->start_ns < to) {
            cb(cb_ctx, s);
            k++;
        }
    }
    F.spans_served += k;
    return k;
}

static size_t f_trace(void *ctx, const uint8_t id[16], cn_store_span_cb cb, void *cb_ctx)
{
    (void)ctx;
    size_t k = 0;
    for (size_t i = 0; i < F.n; i++) {
        const struct cn_span *s = &F.spans[at(i, F.n)];
        if (memcmp(s->trace_id, id, 16) == 0) {
            cb(cb_ctx, s);
            k++;
        }
    }
    F.spans_served += k;
    return k;
}

static size_t f_scan_logs(void *ctx, uint64_t from, uint64_t to, size_t limit, cn_store_log_cb cb,
                          void *cb_ctx)
{
    (void)ctx;
    size_t k = 0;
    for (size_t i = 0; i < F.nlogs && (limit == 0 || k < limit); i++) {
        const struct cn_log *l = &F.logs[at(i, F.nlogs)];
        if (l->time_ns >= from && l->time_ns < to) {
            cb(cb_ctx, l);
            k++;
        }
    }
    return k;
}

static size_t f_trace_logs(void *ctx, const uint8_t id[16], cn_store_log_cb cb, void *cb_ctx)
{
    (void)ctx;
    size_t k = 0;
    for (size_t i = 0; i < F.nlogs; i++) {
        const struct cn_log *l = &F.logs[at(i, F.nlogs)];
        if (memcmp(l->trace_id, id, 16) == 0) {
            cb(cb_ctx, l);
            k++;
        }
    }
    return k;
}

static const struct cn_rca_source SRC = {NULL, f_scan_spans, f_trace, f_scan_logs, f_trace_logs};

/* ---- a small shop: frontend -> checkout -> inventory, payments ------------------------- */

struct shop {
    const char *inv_err, *pay_err; /* an error in the leaf */
    uint64_t checkout_extra;       /* checkout's own time before calling, ms */
    const char *pay_version;
    int pay_calls; /* payments called this many times (0: once) */
};

/* One request of trace t starting at start. Returns the trace's duration. */
static uint64_t shop(unsigned t, uint64_t start, const struct shop *o)
{
    const struct cn_resource *fe = R("frontend", "1.0.0"), *co = R("checkout", "1.0.0"),
                             *inv = R("inventory", "1.0.0"),
                             *pay = R("payments", o->pay_version ? o->pay_version : "1.0.0");
    uint64_t c0 = start + 1 * MS, c = c0 + (1 + o->checkout_extra) * MS;
    S(t, 3, 2, inv, "GET /stock", c, c + 5 * MS, o->inv_err);
    c += 5 * MS;
    const char *up = o->inv_err;
    if (!o->inv_err) {
        int n = o->pay_calls ? o->pay_calls : 1;
        for (int i = 0; i < n; i++) {
            S(t, 4 + (unsigned)i, 2, pay, "POST /pay", c, c + 5 * MS, o->pay_err);
            c += 5 * MS;
        }
        up = o->pay_err;
    }
    S(t, 2, 1, co, "POST /checkout", c0, c + 1 * MS, up ? "upstream failed" : NULL);
    S(t, 1, 0, fe, "GET /checkout", start, c + 2 * MS, up ? "answered 502" : NULL);
    return c + 2 * MS - start;
}

/* ---- running --------------------------------------------------------------------------- */

static struct cn_rca_limits LIM;

static void setup_limits(void)
{
    cn_rca_limits_default(&LIM);
}

static struct cn_rca_query svc_query(const char *svc)
{
    struct cn_rca_query q = {0};
    q.service = cn_slice_of(svc);
    q.from_ns = T0;
    q.to_ns = T0 + 60 * SEC;
    q.limit = CN_RCA_DEFAULT_SUSPECTS;
    return q;
}

static json_t *run(const struct cn_rca_query *q)
{
    json_t *out = NULL;
    const char *param = NULL;
    char err[256] = "";
    int rc = cn_rca_run(&SRC, &LIM, q, &out, &param, err, sizeof(err));
    if (rc != 0)
        fail_msg("cn_rca_run: %d %s (%s)", rc, err, param ? param : "-");
    assert_non_null(out);
    return out;
}

static void run_err(const struct cn_rca_query *q, int want, const char *want_param)
{
    json_t *out = NULL;
    const char *param = NULL;
    char err[256] = "";
    assert_int_equal(cn_rca_run(&SRC, &LIM, q, &out, &param, err, sizeof(err)), want);
    assert_null(out);
    assert_true(err[0] != '\0');
    if (want_param)
        assert_string_equal(param ? param : "(null)", want_param);
}

static json_t *sus(json_t *out, size_t i)
{
    json_t *s = json_array_get(json_object_get(out, "suspects"), i);
    if (!s)
        fail_msg("no suspect %zu in %s", i, json_dumps(out, JSON_INDENT(1)));
    return s;
}

static const char *str(json_t *o, const char *k)
{
    const char *s = json_string_value(json_object_get(o, k));
    return s ? s : "";
}

static double num(json_t *o, const char *k)
{
    return json_number_value(json_object_get(o, k));
}

static json_t *path(json_t *o, const char *a, const char *b)
{
    return json_object_get(json_object_get(o, a), b);
}

static void is(json_t *s, const char *svc, const char *op, const char *kind, double score)
{
    if (!s)
        fail_msg("want %s %s %s %.4f, got no such suspect", svc, op, kind, score);
    if (strcmp(str(s, "service"), svc) || strcmp(str(s, "operation"), op) ||
        strcmp(str(s, "kind"), kind) || fabs(num(s, "score") - score) > 1e-4) {
        char *d = json_dumps(s, JSON_INDENT(1));
        fail_msg("want %s %s %s %.4f, got %s", svc, op, kind, score, d);
    }
}

/* The suspect (service, operation, kind), or NULL. */
static json_t *find(json_t *out, const char *svc, const char *op, const char *kind)
{
    size_t i;
    json_t *s;
    json_array_foreach(json_object_get(out, "suspects"), i, s)
    {
        if (!strcmp(str(s, "service"), svc) && !strcmp(str(s, "operation"), op) &&
            !strcmp(str(s, "kind"), kind))
            return s;
    }
    return NULL;
}

/* ---- tests ----------------------------------------------------------------------------- */

static void test_error_origin(void **state)
{
    (void)state;
    reset();
    setup_limits();
    struct shop ok = {0}, inv = {.inv_err = "out of stock"}, pay = {.pay_err = "declined"};
    shop(1, T0 + 1 * SEC, &ok);
    shop(2, T0 + 2 * SEC, &inv);
    shop(3, T0 + 3 * SEC, &inv);
    shop(4, T0 + 4 * SEC, &pay);
    struct cn_rca_query q = svc_query("frontend");
    json_t *out = run(&q);
    assert_int_equal(json_integer_value(path(out, "window", "requests")), 4);
    assert_int_equal(json_integer_value(path(out, "window", "errorRequests")), 3);
    assert_int_equal(json_integer_value(path(out, "baseline", "requests")), 0);
    /* The deepest erroring spans whose children succeed: the leaves, not their callers. */
    json_t *s = sus(out, 0);
    is(s, "inventory", "GET /stock", "error_origin", 0.5);
    is(find(out, "payments", "POST /pay", "error_origin"), "payments", "POST /pay", "error_origin",
       0.25);
    assert_null(find(out, "checkout", "POST /checkout", "error_origin"));
    assert_null(find(out, "frontend", "GET /checkout", "error_origin"));
    /* No baseline: nothing is "new" and traffic is not compared. */
    assert_null(find(out, "inventory", "GET /stock", "new_error"));
    json_t *ev = json_object_get(s, "evidence");
    json_t *traces = json_object_get(ev, "traces");
    assert_int_equal(json_array_size(traces), 2);
    assert_string_equal(json_string_value(json_array_get(traces, 0)), hex_trace(3)); /* newest */
    assert_string_equal(json_string_value(json_array_get(traces, 1)), hex_trace(2));
    json_t *sp = json_object_get(ev, "span");
    assert_string_equal(str(sp, "traceId"), hex_trace(3));
    assert_string_equal(str(sp, "spanId"), hex_span(3, 3));
    assert_string_equal(str(sp, "message"), "out of stock");
    assert_string_equal(str(sp, "status"), "error");
    json_t *after = json_object_get(ev, "after");
    assert_int_equal(json_integer_value(json_object_get(after, "count")), 4);
    assert_int_equal(json_integer_value(json_object_get(after, "errors")), 2);
    assert_true(fabs(num(after, "p50Ms") - 5.0) < 0.1);
    json_t *m = json_array_get(json_object_get(ev, "errorMessages"), 0);
    assert_string_equal(str(m, "message"), "out of stock");
    json_decref(out);
}

static void test_two_origins_tie(void **state)
{
    (void)state;
    reset();
    setup_limits();
    /* Parallel failing leaves share the request (1/2 each). The baseline holds the same
     * requests without errors, so nothing but the errors changed: equal scores rank by kind
     * (new_error first), then by service name. */
    const struct cn_resource *a = R("api", "1"), *z = R("zeta", "1"), *b = R("beta", "1");
    for (int w = 0; w < 2; w++) {
        uint64_t t = w ? T0 + SEC : T0 - 30 * SEC;
        unsigned id = w ? 1 : 2;
        S(id, 1, 0, a, "GET /", t, t + 10 * MS, w ? "failed" : NULL);
        S(id, 2, 1, z, "work", t + 1 * MS, t + 5 * MS, w ? "boom" : NULL);
        S(id, 3, 1, b, "work", t + 1 * MS, t + 5 * MS, w ? "bang" : NULL);
    }
    struct cn_rca_query q = svc_query("api");
    json_t *out = run(&q);
    assert_int_equal(json_array_size(json_object_get(out, "suspects")), 4);
    is(sus(out, 0), "beta", "work", "new_error", 0.5);
    is(sus(out, 1), "zeta", "work", "new_error", 0.5);
    is(sus(out, 2), "beta", "work", "error_origin", 0.5);
    is(sus(out, 3), "zeta", "work", "error_origin", 0.5);
    json_decref(out);
}

static void test_self_time_overlap(void **state)
{
    (void)state;
    reset();
    setup_limits();
    /* parent [0, 100) with A [10, 50), B [30, 70), C [90, 120) (past its end): the children
     * cover [10, 70) and [90, 100) of it, so its self-time is 30 ms. Critical path backwards
     * from 100: C [90, 100), gap 20 (parent), B [30, 70), A [10, 30), gap 10 (parent). */
    const struct cn_resource *r = R("svc", "1");
    uint64_t b = T0 + SEC;
    S(1, 1, 0, r, "parent", b, b + 100 * MS, NULL);
    S(1, 2, 1, r, "A", b + 10 * MS, b + 50 * MS, NULL);
    S(1, 3, 1, r, "B", b + 30 * MS, b + 70 * MS, NULL);
    S(1, 4, 1, r, "C", b + 90 * MS, b + 120 * MS, NULL);
    struct cn_rca_query q = svc_query("svc");
    json_t *out = run(&q);
    /* No baseline: latency is the share of the critical path. */
    is(sus(out, 0), "svc", "B", "latency", 0.4);
    is(sus(out, 1), "svc", "parent", "latency", 0.3);
    is(sus(out, 2), "svc", "A", "latency", 0.2);
    is(sus(out, 3), "svc", "C", "latency", 0.1);
    json_t *ev = json_object_get(sus(out, 1), "evidence");
    assert_true(fabs(num(json_object_get(ev, "after"), "selfMs") - 30.0) < 1e-6);
    assert_true(fabs(num(json_object_get(ev, "after"), "criticalPathShare") - 0.3) < 1e-6);
    assert_true(fabs(num(json_object_get(ev, "span"), "selfMs") - 30.0) < 1e-6);
    /* A's self-time is its whole duration (no children), 40 ms; only 20 on the path. */
    ev = json_object_get(sus(out, 2), "evidence");
    assert_true(fabs(num(json_object_get(ev, "after"), "selfMs") - 40.0) < 1e-6);
    assert_true(fabs(num(json_object_get(ev, "after"), "criticalPathShare") - 0.2) < 1e-6);
    assert_true(fabs(num(json_object_get(out, "window"), "slowThresholdMs") - 100.0) < 1e-6);
    json_decref(out);
}

static void test_baseline_latency(void **state)
{
    (void)state;
    reset();
    setup_limits();
    struct shop ok = {0}, slow = {.checkout_extra = 100};
    for (unsigned i = 0; i < 10; i++) {
        shop(100 + i, T0 - 60 * SEC + i * SEC, &ok);
        shop(200 + i, T0 + i * SEC, &slow);
    }
    struct cn_rca_query q = svc_query("frontend");
    json_t *out = run(&q);
    assert_int_equal(json_integer_value(path(out, "baseline", "requests")), 10);
    json_t *s = sus(out, 0);
    assert_string_equal(str(s, "service"), "checkout");
    assert_string_equal(str(s, "operation"), "POST /checkout");
    assert_string_equal(str(s, "kind"), "latency");
    assert_true(num(s, "score") > 0.8);
    json_t *ev = json_object_get(s, "evidence");
    assert_true(fabs(num(json_object_get(ev, "before"), "selfMs") - 2.0) < 1e-6);
    assert_true(fabs(num(json_object_get(ev, "after"), "selfMs") - 102.0) < 1e-6);
    assert_int_equal(json_array_size(json_object_get(ev, "traces")), 3);
    /* Nothing else changed enough to rank near it. */
    if (json_array_size(json_object_get(out, "suspects")) > 1)
        assert_true(num(sus(out, 1), "score") < 0.1);
    json_decref(out);
}

static void build_new_error(void)
{
    struct shop ok = {0}, declined = {.pay_err = "card declined"};
    struct shop v2 = {.pay_version = "2.0.0"},
                v2bad = {.pay_version = "2.0.0", .pay_err = "schema mismatch: currency"},
                v2declined = {.pay_version = "2.0.0", .pay_err = "card declined"};
    for (unsigned i = 0; i < 10; i++) {
        shop(100 + i, T0 - 60 * SEC + i * SEC, i < 2 ? &declined : &ok);
        shop(200 + i, T0 + i * SEC, i < 5 ? &v2bad : i == 5 ? &v2declined : &v2);
    }
}

static void test_new_error_version(void **state)
{
    (void)state;
    reset();
    setup_limits();
    build_new_error();
    struct cn_rca_query q = svc_query("frontend");
    json_t *out = run(&q);
    json_t *s = sus(out, 0);
    /* 5 of 10 requests fail at payments with a message the baseline never had. */
    is(s, "payments", "POST /pay", "new_error", 0.5);
    /* Origins 6/10 now against 2/10 before. */
    is(sus(out, 1), "payments", "POST /pay", "error_origin", 0.4);
    json_t *ev = json_object_get(s, "evidence");
    assert_true(json_is_true(json_object_get(ev, "versionChanged")));
    assert_string_equal(json_string_value(json_array_get(json_object_get(ev, "versionsBefore"), 0)),
                        "1.0.0");
    assert_string_equal(json_string_value(json_array_get(json_object_get(ev, "versionsAfter"), 0)),
                        "2.0.0");
    assert_string_equal(str(json_object_get(ev, "span"), "message"), "schema mismatch: currency");
    assert_string_equal(str(json_object_get(ev, "span"), "serviceVersion"), "2.0.0");
    json_t *msgs = json_object_get(ev, "errorMessages");
    assert_int_equal(json_array_size(msgs), 2);
    assert_string_equal(str(json_array_get(msgs, 0), "message"), "schema mismatch: currency");
    assert_true(json_is_true(json_object_get(json_array_get(msgs, 0), "new")));
    assert_string_equal(str(json_array_get(msgs, 1), "message"), "card declined");
    assert_true(json_is_false(json_object_get(json_array_get(msgs, 1), "new")));
    assert_int_equal(json_integer_value(path(ev, "before", "errors")), 2);
    assert_int_equal(json_integer_value(path(ev, "after", "errors")), 6);
    assert_non_null(strstr(str(s, "reason"), "service.version changed"));
    json_decref(out);
}

static void test_traffic(void **state)
{
    (void)state;
    reset();
    setup_limits();
    struct shop once = {0}, thrice = {.pay_calls = 3};
    for (unsigned i = 0; i < 10; i++) {
        shop(100 + i, T0 - 60 * SEC + i * SEC, &once);
        shop(200 + i, T0 + i * SEC, &thrice);
    }
    struct cn_rca_query q = svc_query("frontend");
    json_t *out = run(&q);
    /* 3 calls per request instead of 1: 0.5 * (3 - 1) / 3. */
    is(sus(out, 0), "payments", "POST /pay", "traffic_change", 0.3333);
    json_t *ev = json_object_get(sus(out, 0), "evidence");
    assert_true(fabs(num(json_object_get(ev, "after"), "callsPerRequest") - 3.0) < 1e-9);
    assert_true(fabs(num(json_object_get(ev, "before"), "callsPerRequest") - 1.0) < 1e-9);
    json_decref(out);
}

static uint64_t ns_of(json_t *out, const char *win, const char *k)
{
    const char *v = json_string_value(path(out, win, k));
    assert_non_null(v);
    return strtoull(v, NULL, 10);
}

/* A fresh shop: one request a second over the baseline's last 10 s, then now_n requests
 * evenly over the window's 60 s. */
static void late_baseline(unsigned now_n)
{
    struct shop once = {0};
    reset();
    setup_limits();
    for (unsigned i = 0; i < 10; i++)
        shop(100 + i, T0 - 10 * SEC + i * SEC, &once);
    for (unsigned i = 0; i < now_n; i++)
        shop(1000 + i, T0 + i * (60 * SEC / now_n), &once);
}

/* An entry operation's request rate is measured over the part of each window that holds
 * spans: a store that started 10 s before the window has no data for the baseline's first
 * 50 s, which is not a quiet minute. Only a scan that read all of its window moves the start. */
static void test_traffic_rate_data_start(void **state)
{
    (void)state;
    /* 1 request/s in the baseline's data and in the window: no traffic change. */
    late_baseline(60);
    struct cn_rca_query q = svc_query("frontend");
    json_t *out = run(&q);
    assert_int_equal(ns_of(out, "baseline", "dataStart"), T0 - 10 * SEC);
    assert_int_equal(ns_of(out, "baseline", "start"), T0 - 60 * SEC);
    assert_int_equal(ns_of(out, "window", "dataStart"), T0);
    assert_null(find(out, "frontend", "GET /checkout", "traffic_change"));
    json_decref(out);

    /* 3 requests/s in the window: 0.5 * (3 - 1) / 3, the baseline's rate over its 10 s. */
    late_baseline(180);
    out = run(&q);
    json_t *s = find(out, "frontend", "GET /checkout", "traffic_change");
    is(s, "frontend", "GET /checkout", "traffic_change", 0.3333);
    assert_string_equal(str(s, "reason"), "request rate 3.000/s (baseline 1.000/s)");
    json_decref(out);

    /* A scan cut by its span budget did not see where its window's data starts: the whole
     * window counts. A third of max_spans is each window's scan budget: 40 is the baseline's
     * 40 spans exactly, one too few to know that the scan ended; 41 is enough. */
    late_baseline(60);
    LIM.max_spans = 3 * 40;
    out = run(&q);
    assert_true(json_is_true(path(out, "examined", "truncated")));
    assert_int_equal(ns_of(out, "baseline", "dataStart"), T0 - 60 * SEC);
    json_decref(out);
    LIM.max_spans = 3 * 41;
    out = run(&q);
    assert_int_equal(ns_of(out, "baseline", "dataStart"), T0 - 10 * SEC);
    json_decref(out);
}

static void test_determinism(void **state)
{
    (void)state;
    reset();
    setup_limits();
    build_new_error();
    struct shop slow = {.checkout_extra = 7, .pay_version = "2.0.0"};
    for (unsigned i = 0; i < 5; i++)
        shop(300 + i, T0 + 30 * SEC + i * SEC, &slow);
    struct cn_rca_query q = svc_query("frontend");
    q.limit = CN_RCA_MAX_SUSPECTS;
    json_t *a = run(&q), *b = run(&q);
    F.reverse = 1; /* the same records in another order */
    json_t *c = run(&q);
    char *da = json_dumps(a, JSON_SORT_KEYS | JSON_COMPACT);
    char *db = json_dumps(b, JSON_SORT_KEYS | JSON_COMPACT);
    char *dc = json_dumps(c, JSON_SORT_KEYS | JSON_COMPACT);
    assert_string_equal(da, db);
    assert_string_equal(da, dc);
    assert_true(json_array_size(json_object_get(a, "suspects")) >= 3);
    /* Ranked by score, then kind, service, operation. */
    size_t i;
    json_t *s, *prev = NULL;
    json_array_foreach(json_object_get(a, "suspects"), i, s)
    {
        assert_int_equal(json_integer_value(json_object_get(s, "rank")), (json_int_t)i + 1);
        if (prev)
            assert_true(num(prev, "score") >= num(s, "score"));
        prev = s;
    }
    free(da);
    free(db);
    free(dc);
    json_decref(a);
    json_decref(b);
    json_decref(c);
}

static void test_limit_traces(void **state)
{
    (void)state;
    reset();
    setup_limits();
    struct shop ok = {0}, inv = {.inv_err = "out of stock"};
    for (unsigned i = 0; i < 10; i++)
        shop(1 + i, T0 + i * SEC, i < 3 ? &inv : &ok);
    struct cn_rca_query q = svc_query("frontend");
    /* At the edge: every trace fits. */
    LIM.max_traces = 10;
    json_t *out = run(&q);
    assert_int_equal(json_integer_value(path(out, "window", "tracesSeen")), 10);
    assert_int_equal(json_integer_value(path(out, "window", "tracesExamined")), 10);
    assert_true(json_is_false(path(out, "examined", "sampled")));
    is(find(out, "inventory", "GET /stock", "error_origin"), "inventory", "GET /stock",
       "error_origin", 0.3);
    json_decref(out);
    /* One less: sampled, and the weights keep the estimate. */
    LIM.max_traces = 9;
    out = run(&q);
    assert_int_equal(json_integer_value(path(out, "window", "tracesExamined")), 9);
    assert_true(json_is_true(path(out, "examined", "sampled")));
    assert_int_equal(json_integer_value(path(out, "window", "requests")), 10);
    is(find(out, "inventory", "GET /stock", "error_origin"), "inventory", "GET /stock",
       "error_origin", 0.3);
    json_decref(out);
    /* Two: one erroring trace (weight 3) and one of the others (weight 7). */
    LIM.max_traces = 2;
    out = run(&q);
    assert_int_equal(json_integer_value(path(out, "window", "tracesExamined")), 2);
    assert_int_equal(json_integer_value(path(out, "window", "requests")), 10);
    assert_int_equal(json_integer_value(path(out, "window", "errorRequests")), 3);
    is(find(out, "inventory", "GET /stock", "error_origin"), "inventory", "GET /stock",
       "error_origin", 0.3);
    json_decref(out);
    LIM.max_traces = 1;
    out = run(&q);
    assert_int_equal(json_integer_value(path(out, "window", "tracesExamined")), 1);
    json_decref(out);
    LIM.max_traces = 0;
    run_err(&q, CN_EINVAL, NULL);
}

static void test_limit_spans(void **state)
{
    (void)state;
    reset();
    setup_limits();
    struct shop ok = {0};
    for (unsigned i = 0; i < 10; i++)
        shop(1 + i, T0 + i * SEC, &ok); /* 4 spans each, 40 in the window */
    struct cn_rca_query q = svc_query("frontend");
    /* A third of the budget is the window's scan: 41 reads all 40 and knows it. */
    LIM.max_spans = 3 * 41;
    json_t *out = run(&q);
    assert_true(json_is_false(path(out, "examined", "truncated")));
    assert_int_equal(json_integer_value(path(out, "window", "tracesExamined")), 10);
    assert_int_equal(json_integer_value(path(out, "examined", "spansRead")), 80);
    json_decref(out);
    /* 40: the scan stops at its budget, which might have hidden more. */
    LIM.max_spans = 3 * 40;
    out = run(&q);
    assert_true(json_is_true(path(out, "examined", "truncated")));
    assert_int_equal(json_integer_value(path(out, "window", "tracesExamined")), 10);
    json_decref(out);
    /* Tight: the scan sees 20 spans (5 traces), fetching stops at the budget. */
    LIM.max_spans = 60;
    F.spans_served = 0;
    out = run(&q);
    assert_true(json_is_true(path(out, "examined", "truncated")));
    assert_true(json_integer_value(path(out, "examined", "spansRead")) <= 60);
    assert_true(F.spans_served <= 60);
    assert_true(json_integer_value(path(out, "window", "tracesExamined")) <= 5);
    json_decref(out);
    LIM.max_spans = 3;
    out = run(&q);
    json_decref(out);
    LIM.max_spans = 2;
    run_err(&q, CN_EINVAL, NULL);
}

static void test_limit_trace_spans(void **state)
{
    (void)state;
    reset();
    setup_limits();
    struct shop two = {.pay_calls = 2};
    shop(1, T0 + SEC, &two); /* 5 spans */
    struct cn_rca_query q = svc_query("frontend");
    LIM.max_trace_spans = 5;
    json_t *out = run(&q);
    assert_int_equal(json_integer_value(path(out, "examined", "tracesCut")), 0);
    json_decref(out);
    LIM.max_trace_spans = 4;
    out = run(&q);
    assert_int_equal(json_integer_value(path(out, "examined", "tracesCut")), 1);
    json_decref(out);
}

static void test_limit_suspects(void **state)
{
    (void)state;
    reset();
    setup_limits();
    build_new_error();
    struct cn_rca_query q = svc_query("frontend");
    q.limit = 1;
    json_t *out = run(&q);
    assert_int_equal(json_array_size(json_object_get(out, "suspects")), 1);
    json_decref(out);
    q.limit = CN_RCA_MAX_SUSPECTS;
    out = run(&q);
    json_decref(out);
    q.limit = 0;
    run_err(&q, CN_EINVAL, "limit");
    q.limit = CN_RCA_MAX_SUSPECTS + 1;
    run_err(&q, CN_EINVAL, "limit");
}

static void test_bad_query(void **state)
{
    (void)state;
    reset();
    setup_limits();
    shop(1, T0 + SEC, &(struct shop){.inv_err = "x"});
    struct cn_rca_query q = svc_query("frontend");
    q.service = (struct cn_slice){NULL, 0};
    run_err(&q, CN_EINVAL, "service");
    q = svc_query("frontend");
    q.to_ns = q.from_ns;
    run_err(&q, CN_EINVAL, "start");
    q = svc_query("frontend");
    q.base_from_ns = T0;
    q.base_to_ns = T0 - SEC;
    run_err(&q, CN_EINVAL, "baseline_start");
    q = svc_query("frontend");
    q.service = (struct cn_slice){NULL, 0};
    q.by_trace = 1;
    trace_id(q.trace_id, 99);
    run_err(&q, CN_ENOENT, "trace");
    trace_id(q.trace_id, 1);
    q.service = cn_slice_of("nosuch");
    run_err(&q, CN_ENOENT, "service");
    /* A service without requests in the window: an empty answer. */
    q = svc_query("nosuch");
    json_t *out = run(&q);
    assert_int_equal(json_array_size(json_object_get(out, "suspects")), 0);
    assert_int_equal(json_integer_value(path(out, "window", "requests")), 0);
    json_decref(out);
}

static void test_trace_mode(void **state)
{
    (void)state;
    reset();
    setup_limits();
    struct shop inv = {.inv_err = "out of stock"},
                slowinv = {.inv_err = "out of stock", .checkout_extra = 50};
    for (unsigned i = 0; i < 5; i++)
        shop(100 + i, T0 - 60 * SEC + i * SEC, &inv);
    shop(7, T0 + SEC, &slowinv);
    struct cn_rca_query q = {0};
    q.by_trace = 1;
    trace_id(q.trace_id, 7);
    q.limit = 10;
    json_t *out = run(&q);
    assert_string_equal(str(out, "mode"), "trace");
    assert_string_equal(str(out, "service"), "frontend");
    assert_string_equal(str(out, "traceId"), hex_trace(7));
    assert_int_equal(json_integer_value(path(out, "window", "requests")), 1);
    /* The default baseline, the 15 minutes before the trace, holds the same failures: the
     * origin still ranks (one trace: why did it fail), the message is not new. */
    assert_int_equal(json_integer_value(path(out, "baseline", "requests")), 5);
    is(sus(out, 0), "inventory", "GET /stock", "error_origin", 1.0);
    assert_null(find(out, "inventory", "GET /stock", "new_error"));
    /* checkout's 50 ms of extra self-time: all new against the baseline's 2 ms. */
    json_t *lat = find(out, "checkout", "POST /checkout", "latency");
    assert_non_null(lat);
    assert_true(num(lat, "score") > 0.6);
    assert_null(find(out, "frontend", "GET /checkout", "traffic_change"));
    json_decref(out);
    /* The service given: its requests in the trace. */
    q.service = cn_slice_of("checkout");
    out = run(&q);
    assert_string_equal(str(out, "service"), "checkout");
    is(sus(out, 0), "inventory", "GET /stock", "error_origin", 1.0);
    json_decref(out);
}

static void test_logs(void **state)
{
    (void)state;
    reset();
    setup_limits();
    shop(1, T0 + SEC, &(struct shop){.inv_err = "out of stock"});
    const struct cn_resource *inv = R("inventory", "1.0.0"), *co = R("checkout", "1.0.0"),
                             *pay = R("payments", "1.0.0");
    uint64_t t = T0 + SEC + 2 * MS;                           /* the inventory span starts here */
    L(0, 0, inv, t + 1 * SEC, "pool exhausted");              /* nearby, 1 s after */
    L(0, 0, inv, t + 20 * SEC, "much later");                 /* outside +-5 s */
    L(0, 0, pay, t + 1 * SEC, "other service");               /* another service */
    L(1, 2, co, t + 6 * MS, "checkout saw the failure");      /* the trace, another service */
    L(1, 3, inv, t + 4 * MS, "sku 42 not found");             /* the span itself */
    L(1, 1, inv, t + 5 * MS, "inventory, trace-linked");      /* the trace, same service */
    L(0, 0, inv, t - 3 * SEC, "earlier warning");             /* nearby, 3 s before */
    L(0, 0, inv, t + 2 * MS, "chatter")->severity_number = 9; /* nearby but INFO: after them */
    struct cn_rca_query q = svc_query("frontend");
    json_t *out = run(&q);
    json_t *s = sus(out, 0);
    is(s, "inventory", "GET /stock", "error_origin", 1.0);
    json_t *logs = path(s, "evidence", "logs");
    static const char *const want[][2] = {
        {"span", "sku 42 not found"},          {"trace", "inventory, trace-linked"},
        {"trace", "checkout saw the failure"}, {"nearby", "pool exhausted"},
        {"nearby", "earlier warning"},         {"nearby", "chatter"}};
    if (json_array_size(logs) != CN_ARRAY_LEN(want))
        fail_msg("logs: %s", json_dumps(logs, JSON_INDENT(1)));
    for (size_t i = 0; i < CN_ARRAY_LEN(want); i++) {
        json_t *l = json_array_get(logs, i);
        assert_string_equal(str(l, "relation"), want[i][0]);
        assert_string_equal(str(json_object_get(l, "body"), "stringValue"), want[i][1]);
    }
    assert_string_equal(str(json_array_get(logs, 0), "spanId"), hex_span(1, 3));
    assert_string_equal(str(json_array_get(logs, 0), "traceId"), hex_trace(1));
    json_decref(out);
    /* The cap keeps the first lines in that order. */
    LIM.max_logs = 2;
    out = run(&q);
    logs = path(sus(out, 0), "evidence", "logs");
    assert_int_equal(json_array_size(logs), 2);
    assert_string_equal(str(json_array_get(logs, 1), "relation"), "trace");
    json_decref(out);
    LIM.max_logs = 0;
    out = run(&q);
    assert_int_equal(json_array_size(path(sus(out, 0), "evidence", "logs")), 0);
    json_decref(out);
}

/* The span and log evidence come from the best example whose span has a log line of its
 * own: the newest failing trace's lines may not have come yet. It is listed first. */
static void test_example_with_log(void **state)
{
    (void)state;
    reset();
    setup_limits();
    struct shop oos = {.inv_err = "out of stock"};
    for (unsigned i = 0; i < 3; i++)
        shop(1 + i, T0 + (1 + i) * SEC, &oos); /* trace 3 is the newest */
    const struct cn_resource *inv = R("inventory", "1.0.0");
    L(1, 3, inv, T0 + 1 * SEC + 4 * MS, "sku 1 not found"); /* the oldest's span */
    L(2, 1, inv, T0 + 2 * SEC + 5 * MS, "trace 2, not its span");
    struct cn_rca_query q = svc_query("frontend");
    json_t *out = run(&q);
    json_t *s = sus(out, 0);
    is(s, "inventory", "GET /stock", "error_origin", 1.0);
    json_t *ids = path(s, "evidence", "traces");
    assert_int_equal(json_array_size(ids), 3);
    assert_string_equal(json_string_value(json_array_get(ids, 0)), hex_trace(1));
    assert_string_equal(json_string_value(json_array_get(ids, 1)), hex_trace(3));
    assert_string_equal(json_string_value(json_array_get(ids, 2)), hex_trace(2));
    assert_string_equal(str(path(s, "evidence", "span"), "traceId"), hex_trace(1));
    json_t *l0 = json_array_get(path(s, "evidence", "logs"), 0);
    assert_string_equal(str(l0, "relation"), "span");
    assert_string_equal(str(json_object_get(l0, "body"), "stringValue"), "sku 1 not found");
    json_decref(out);

    /* No example's span has a line: the newest, in order. */
    F.nlogs = 0;
    out = run(&q);
    s = sus(out, 0);
    ids = path(s, "evidence", "traces");
    assert_string_equal(json_string_value(json_array_get(ids, 0)), hex_trace(3));
    assert_string_equal(json_string_value(json_array_get(ids, 1)), hex_trace(2));
    assert_string_equal(str(path(s, "evidence", "span"), "traceId"), hex_trace(3));
    json_decref(out);
}

static void test_cycles_and_orphans(void **state)
{
    (void)state;
    reset();
    setup_limits();
    const struct cn_resource *r = R("svc", "1"), *o = R("other", "1");
    uint64_t b = T0 + SEC;
    /* 2 and 3 are each other's parent; 4 is its own; 5's parent is missing. */
    S(1, 2, 3, r, "a", b, b + 10 * MS, "x");
    S(1, 3, 2, o, "b", b + 1 * MS, b + 5 * MS, "y");
    S(1, 4, 4, r, "self", b, b + 3 * MS, NULL);
    S(1, 5, 9, r, "orphan", b + 2 * MS, b + 4 * MS, NULL);
    /* A span ending before it starts counts as 0 long. */
    S(1, 6, 5, o, "backwards", b + 3 * MS, b + 1 * MS, NULL);
    struct cn_rca_query q = svc_query("svc");
    json_t *out = run(&q);
    /* The cycle is cut where the walk from a meets a again: a is a root, b its erroring
     * child; "self" and "orphan" are roots too. */
    assert_int_equal(json_integer_value(path(out, "window", "requests")), 3);
    is(find(out, "other", "b", "error_origin"), "other", "b", "error_origin", 0.3333);
    assert_null(find(out, "svc", "a", "error_origin"));
    /* Critical path of the slowest request, a [0, 10): b covers [1, 5). */
    is(find(out, "svc", "a", "latency"), "svc", "a", "latency", 0.6);
    json_decref(out);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_error_origin),
        cmocka_unit_test(test_two_origins_tie),
        cmocka_unit_test(test_self_time_overlap),
        cmocka_unit_test(test_baseline_latency),
        cmocka_unit_test(test_new_error_version),
        cmocka_unit_test(test_traffic),
        cmocka_unit_test(test_traffic_rate_data_start),
        cmocka_unit_test(test_determinism),
        cmocka_unit_test(test_limit_traces),
        cmocka_unit_test(test_limit_spans),
        cmocka_unit_test(test_limit_trace_spans),
        cmocka_unit_test(test_limit_suspects),
        cmocka_unit_test(test_bad_query),
        cmocka_unit_test(test_trace_mode),
        cmocka_unit_test(test_logs),
        cmocka_unit_test(test_example_with_log),
        cmocka_unit_test(test_cycles_and_orphans),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
