#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <math.h>
#include <pthread.h>
#include <stdatomic.h>

#include "telemetry/derive.h"

#define SEC 1000000000ull
#define MS  1000000ull
#define T0  (1700000000ull * SEC) /* a multiple of the 10 s bucket */

/* ---- building spans ---- */

static struct cn_resource resources[32];
static size_t num_resources;

static const struct cn_resource *res(const char *svc)
{
    for (size_t i = 0; i < num_resources; i++) {
        if (cn_slice_eq(resources[i].service, cn_slice_of(svc)))
            return &resources[i];
    }
    assert_true(num_resources < CN_ARRAY_LEN(resources));
    resources[num_resources].service = cn_slice_of(svc);
    return &resources[num_resources++];
}

static void put_id(uint8_t *dst, size_t n, uint64_t v)
{
    memset(dst, 0, n);
    for (size_t i = 0; i < 8 && v; i++)
        dst[n - 1 - i] = (uint8_t)(v >> (8 * i));
    if (n == 16 && v)
        dst[0] = 0xab;
}

static struct cn_span span(const char *svc, uint64_t trace, uint64_t id, uint64_t parent, int kind,
                           const char *name, uint64_t start, uint64_t dur, int status)
{
    struct cn_span s;
    memset(&s, 0, sizeof(s));
    put_id(s.trace_id, 16, trace);
    put_id(s.span_id, 8, id);
    put_id(s.parent_id, 8, parent);
    s.kind = (uint8_t)kind;
    s.name = cn_slice_of(name);
    s.start_ns = start;
    s.end_ns = start + dur;
    s.status_code = (uint8_t)status;
    s.resource = res(svc);
    return s;
}

static void set_attr(struct cn_span *s, struct cn_kv *kv, size_t n)
{
    s->attrs.items = kv;
    s->attrs.num = (uint32_t)n;
}

static struct cn_kv str_kv(const char *k, const char *v)
{
    struct cn_kv kv = {.key = cn_slice_of(k)};
    kv.val.type = CN_VAL_STR;
    kv.val.u.s = cn_slice_of(v);
    return kv;
}

static struct cn_derive *derive_with(const struct cn_derive_opts *o)
{
    struct cn_derive *d = cn_derive_new(o);
    assert_non_null(d);
    return d;
}

static void add1(struct cn_derive *d, struct cn_span s, uint64_t now)
{
    cn_derive_add_spans(d, &s, 1, now);
}

static void assert_near(double got, double want)
{
    if (fabs(got - want) > 0.01 * want * (1 + 1e-9))
        fail_msg("got %.6g, want %.6g within 1%%", got, want);
}

static int slice_is(struct cn_slice s, const char *want)
{
    return cn_slice_eq(s, cn_slice_of(want));
}

static struct cn_derive_stats stats_of(struct cn_derive *d)
{
    struct cn_derive_stats st;
    cn_derive_stats(d, &st);
    return st;
}

/* ---- RED ---- */

static void red_counts_quantiles_and_steps(void **state)
{
    (void)state;
    struct cn_derive *d = derive_with(NULL);
    struct cn_span b[32];
    size_t n = 0;
    /* Bucket 0: ten GETs of 10..100 ms, two errors; three POSTs of 5 ms. */
    for (int i = 0; i < 10; i++)
        b[n++] = span("api", 1 + i, 100 + i, 7, CN_KIND_SERVER, "GET /users", T0 + i * 100 * MS,
                      (uint64_t)(i + 1) * 10 * MS, i < 2 ? CN_STATUS_ERROR : CN_STATUS_OK);
    for (int i = 0; i < 3; i++)
        b[n++] = span("api", 20 + i, 200 + i, 7, CN_KIND_SERVER, "POST /users", T0 + 2 * SEC,
                      5 * MS, CN_STATUS_UNSET);
    /* Bucket 1: five GETs of 200 ms, one error. */
    for (int i = 0; i < 5; i++)
        b[n++] = span("api", 30 + i, 300 + i, 7, CN_KIND_SERVER, "GET /users", T0 + 12 * SEC,
                      200 * MS, i == 0 ? CN_STATUS_ERROR : CN_STATUS_OK);
    /* Not requests: a CLIENT and an INTERNAL span with parents. */
    b[n++] = span("api", 40, 400, 100, CN_KIND_CLIENT, "SELECT", T0, 1 * MS, CN_STATUS_OK);
    b[n++] = span("api", 40, 401, 100, CN_KIND_INTERNAL, "render", T0, 1 * MS, CN_STATUS_OK);
    /* Requests: a root INTERNAL span, a CONSUMER span with a parent. */
    b[n++] =
        span("cron", 50, 500, 0, CN_KIND_INTERNAL, "tick", T0 + 1 * SEC, 3 * SEC, CN_STATUS_OK);
    b[n++] = span("worker", 51, 501, 9, CN_KIND_CONSUMER, "process", T0, 7 * MS, CN_STATUS_OK);
    cn_derive_add_spans(d, b, n, T0 + 30 * SEC);

    struct cn_derive_red_point *p;
    size_t np;
    struct cn_derive_red_query q = {.service = cn_slice_of("api"),
                                    .operation = cn_slice_of("GET /users"),
                                    .from_ns = T0,
                                    .to_ns = T0 + 20 * SEC};
    assert_int_equal(cn_derive_red(d, &p, &np, &q), 0);
    assert_int_equal(np, 2);
    assert_true(p[0].t_ns == T0 && p[1].t_ns == T0 + 10 * SEC);
    assert_int_equal(p[0].count, 10);
    assert_int_equal(p[0].errors, 2);
    assert_true(p[0].rate == 1.0 && p[0].error_rate == 0.2);
    assert_true(p[0].min_ns == 10 * MS && p[0].max_ns == 100 * MS);
    assert_true(p[0].mean_ns == 55 * MS);
    /* Exact: rank floor(q * 9) of 10, 20, ..., 100 ms. */
    assert_near(p[0].p50_ns, 50 * MS);
    assert_near(p[0].p95_ns, 90 * MS);
    assert_near(p[0].p99_ns, 90 * MS);
    assert_int_equal(p[1].count, 5);
    assert_int_equal(p[1].errors, 1);
    assert_true(p[1].rate == 0.5);
    assert_near(p[1].p50_ns, 200 * MS);
    free(p);

    /* One 20 s step merges both buckets: rank floor(q * 14) of the 15 values. */
    q.step_ns = 20 * SEC;
    q.from_ns = T0 + 3 * SEC; /* rounded down to the bucket */
    assert_int_equal(cn_derive_red(d, &p, &np, &q), 0);
    assert_int_equal(np, 1);
    assert_true(p[0].t_ns == T0);
    assert_int_equal(p[0].count, 15);
    assert_int_equal(p[0].errors, 3);
    assert_true(p[0].rate == 0.75);
    assert_near(p[0].p50_ns, 80 * MS);
    assert_near(p[0].p95_ns, 200 * MS);
    free(p);

    /* The whole service: both operations, every kind. */
    q.operation = (struct cn_slice){NULL, 0};
    assert_int_equal(cn_derive_red(d, &p, &np, &q), 0);
    assert_int_equal(p[0].count, 18);
    free(p);
    q.service = cn_slice_of("cron");
    assert_int_equal(cn_derive_red(d, &p, &np, &q), 0);
    assert_int_equal(p[0].count, 1);
    assert_near(p[0].p99_ns, 3 * SEC);
    free(p);
    q.service = cn_slice_of("worker");
    q.kind_mask = CN_DERIVE_KIND_MASK(CN_KIND_SERVER);
    assert_int_equal(cn_derive_red(d, &p, &np, &q), 0);
    assert_int_equal(p[0].count, 0); /* its requests are CONSUMER spans */
    assert_true(p[0].p50_ns == 0);
    free(p);
    q.kind_mask = CN_DERIVE_KIND_MASK(CN_KIND_CONSUMER);
    assert_int_equal(cn_derive_red(d, &p, &np, &q), 0);
    assert_int_equal(p[0].count, 1);
    free(p);

    /* Errors of the query itself. */
    q.service = cn_slice_of("api");
    q.kind_mask = 0;
    q.operation = cn_slice_of("SELECT"); /* a CLIENT span: not a request */
    assert_int_equal(cn_derive_red(d, &p, &np, &q), CN_ENOENT);
    assert_null(p);
    assert_int_equal(np, 0);
    q.operation = cn_slice_of("GET /users");
    q.kind_mask = CN_DERIVE_KIND_MASK(CN_KIND_CLIENT);
    assert_int_equal(cn_derive_red(d, &p, &np, &q), CN_ENOENT);
    q.kind_mask = 0;
    q.service = cn_slice_of("nope");
    assert_int_equal(cn_derive_red(d, &p, &np, &q), CN_ENOENT);
    q.service = cn_slice_of("api");
    q.step_ns = 15 * SEC;
    assert_int_equal(cn_derive_red(d, &p, &np, &q), CN_EINVAL);
    q.step_ns = 0;
    q.to_ns = q.from_ns;
    assert_int_equal(cn_derive_red(d, &p, &np, &q), CN_EINVAL);
    q.to_ns = q.from_ns + (uint64_t)(CN_DERIVE_MAX_POINTS + 1) * 10 * SEC;
    assert_int_equal(cn_derive_red(d, &p, &np, &q), CN_ELIMIT);
    /* A huge range in few steps is cheap: only kept buckets are read. */
    q.from_ns = 0;
    q.to_ns = UINT64_MAX;
    q.step_ns = 10 * SEC * 1000000000ull;
    assert_int_equal(cn_derive_red(d, &p, &np, &q), 0);
    uint64_t total = 0;
    for (size_t i = 0; i < np; i++)
        total += p[i].count;
    assert_int_equal(total, 15);
    free(p);

    /* Lists. */
    struct cn_slice *svcs;
    size_t ns;
    assert_int_equal(cn_derive_services(d, &svcs, &ns), 0);
    assert_int_equal(ns, 3);
    assert_true(slice_is(svcs[0], "api") && slice_is(svcs[1], "cron") &&
                slice_is(svcs[2], "worker"));
    free(svcs);
    struct cn_derive_op *ops;
    assert_int_equal(cn_derive_operations(d, &ops, &ns, cn_slice_of("api")), 0);
    assert_int_equal(ns, 2);
    assert_true(slice_is(ops[0].name, "GET /users") && ops[0].kind == CN_KIND_SERVER);
    assert_true(slice_is(ops[1].name, "POST /users") && ops[1].kind == CN_KIND_SERVER);
    free(ops);
    assert_int_equal(cn_derive_operations(d, &ops, &ns, cn_slice_of("nope")), CN_ENOENT);

    /* A late span into a bucket the ring has moved past (and trimmed). */
    add1(d, span("api", 60, 600, 7, CN_KIND_SERVER, "GET /users", T0 + 5 * SEC, 1000 * MS, 0),
         T0 + 40 * SEC);
    q.from_ns = T0;
    q.to_ns = T0 + 10 * SEC;
    q.step_ns = 0;
    assert_int_equal(cn_derive_red(d, &p, &np, &q), 0);
    assert_int_equal(p[0].count, 11);
    assert_near(p[0].p50_ns, 60 * MS);
    assert_true(p[0].max_ns == 1000 * MS);
    free(p);

    struct cn_derive_stats st = stats_of(d);
    assert_int_equal(st.spans, n + 1);
    assert_int_equal(st.red_spans, 21);
    assert_int_equal(st.services, 3);
    assert_int_equal(st.operations, 4); /* GET, POST, tick, process */
    cn_derive_free(d);
}

static void red_kinds_configurable(void **state)
{
    (void)state;
    struct cn_derive_opts o;
    cn_derive_opts_default(&o);
    o.red_kinds = CN_DERIVE_KIND_MASK(CN_KIND_CLIENT);
    o.red_roots = 0;
    struct cn_derive *d = derive_with(&o);
    assert_int_equal(cn_derive_opts(d)->red_kinds, CN_DERIVE_KIND_MASK(CN_KIND_CLIENT));
    struct cn_span b[] = {
        span("api", 1, 1, 0, CN_KIND_SERVER, "GET /", T0, MS, CN_STATUS_OK),
        span("api", 1, 2, 1, CN_KIND_CLIENT, "SELECT", T0, MS, CN_STATUS_ERROR),
    };
    cn_derive_add_spans(d, b, 2, T0 + SEC);
    struct cn_derive_op *ops;
    size_t n;
    assert_int_equal(cn_derive_operations(d, &ops, &n, cn_slice_of("api")), 0);
    assert_int_equal(n, 1);
    assert_true(slice_is(ops[0].name, "SELECT") && ops[0].kind == CN_KIND_CLIENT);
    free(ops);
    struct cn_derive_red_point *p;
    struct cn_derive_red_query q = {
        .service = cn_slice_of("api"), .from_ns = T0, .to_ns = T0 + 10 * SEC};
    assert_int_equal(cn_derive_red(d, &p, &n, &q), 0);
    assert_int_equal(p[0].count, 1);
    assert_int_equal(p[0].errors, 1);
    free(p);
    cn_derive_free(d);
}

static void red_ring_drops_old_buckets(void **state)
{
    (void)state;
    struct cn_derive_opts o;
    cn_derive_opts_default(&o);
    o.num_buckets = 6;
    struct cn_derive *d = derive_with(&o);
    uint64_t now = T0 + 55 * SEC; /* buckets T0 .. T0 + 50 s are kept */
    struct cn_span b[] = {
        span("api", 1, 1, 0, CN_KIND_SERVER, "GET /", T0, MS, CN_STATUS_OK),
        span("api", 2, 2, 0, CN_KIND_SERVER, "GET /", T0 + 50 * SEC, MS, CN_STATUS_OK),
        span("api", 3, 3, 0, CN_KIND_SERVER, "GET /", T0 - 1, MS, CN_STATUS_OK),
        span("api", 4, 4, 0, CN_KIND_SERVER, "GET /", now + 601 * SEC, MS, CN_STATUS_OK),
    };
    cn_derive_add_spans(d, b, 4, now);
    struct cn_derive_stats st = stats_of(d);
    assert_int_equal(st.spans_too_old, 1);
    assert_int_equal(st.spans_too_new, 1);
    struct cn_derive_red_point *p;
    size_t n;
    struct cn_derive_red_query q = {
        .service = cn_slice_of("api"), .from_ns = T0, .to_ns = T0 + 60 * SEC};
    assert_int_equal(cn_derive_red(d, &p, &n, &q), 0);
    assert_int_equal(n, 6);
    assert_int_equal(p[0].count, 1);
    assert_int_equal(p[5].count, 1);
    free(p);
    /* Twenty seconds later the first two buckets are gone. */
    cn_derive_expire(d, now + 20 * SEC);
    assert_int_equal(cn_derive_red(d, &p, &n, &q), 0);
    assert_int_equal(p[0].count, 0);
    assert_int_equal(p[5].count, 1);
    free(p);
    /* A jump past the whole ring empties it. */
    cn_derive_expire(d, now + 1000 * SEC);
    assert_int_equal(cn_derive_red(d, &p, &n, &q), 0);
    assert_int_equal(p[5].count, 0);
    free(p);
    assert_int_equal(stats_of(d).bucket_bytes, 0);
    cn_derive_free(d);
}

static void red_memory_budget(void **state)
{
    (void)state;
    struct cn_derive_opts o;
    cn_derive_opts_default(&o);
    o.max_bucket_bytes = 256 << 10;
    struct cn_derive *d = derive_with(&o);
    size_t base = cn_derive_memory(d);
    char names[40][16];
    for (int i = 0; i < 40; i++)
        snprintf(names[i], sizeof(names[i]), "op-%d", i);
    struct cn_span b[400];
    uint64_t now = T0 + 2000 * SEC;
    for (int bucket = 0; bucket < 200; bucket++) {
        for (int i = 0; i < 400; i++)
            b[i] = span("api", 1 + (uint64_t)bucket * 400 + (uint64_t)i, 1 + (uint64_t)i, 0,
                        CN_KIND_SERVER, names[i % 40], T0 + (uint64_t)bucket * 10 * SEC,
                        (uint64_t)(1 + i) * 997 * 1000, CN_STATUS_OK);
        cn_derive_add_spans(d, b, 400, now);
    }
    struct cn_derive_stats st = stats_of(d);
    assert_true(st.buckets_dropped > 0);
    assert_int_equal(st.alloc_failures, 0);
    /* The cells stay under the budget, but for counters added to cells already there. */
    assert_true(st.bucket_bytes <= o.max_bucket_bytes + (16 << 10));
    assert_true(st.bucket_bytes >= o.max_bucket_bytes / 2);
    assert_true(st.memory_bytes > base + st.bucket_bytes);
    assert_int_equal(st.memory_bytes, cn_derive_memory(d));
    /* The newest bucket is whole; the oldest is gone. */
    struct cn_derive_red_point *p;
    size_t n;
    struct cn_derive_red_query q = {.service = cn_slice_of("api"),
                                    .from_ns = T0 + 199 * 10 * SEC,
                                    .to_ns = T0 + 200 * 10 * SEC};
    assert_int_equal(cn_derive_red(d, &p, &n, &q), 0);
    assert_int_equal(p[0].count, 400);
    free(p);
    q.from_ns = T0;
    q.to_ns = T0 + 10 * SEC;
    assert_int_equal(cn_derive_red(d, &p, &n, &q), 0);
    assert_int_equal(p[0].count, 0);
    free(p);
    assert_int_equal(st.cells_dropped, 0);
    cn_derive_free(d);

    /* A budget the newest bucket alone outgrows: new cells there are refused. */
    o.max_bucket_bytes = 2048;
    d = derive_with(&o);
    for (int i = 0; i < 40; i++)
        b[i] = span("api", 1 + (uint64_t)i, 1, 0, CN_KIND_SERVER, names[i], T0, MS, 0);
    cn_derive_add_spans(d, b, 40, T0 + SEC);
    st = stats_of(d);
    assert_true(st.cells_dropped > 0);
    assert_true(st.bucket_bytes <= o.max_bucket_bytes);
    assert_int_equal(st.buckets_dropped, 0);
    cn_derive_free(d);
}

/* ---- edges ---- */

static struct cn_derive_edge *edges_of(struct cn_derive *d, size_t *n, uint64_t from, uint64_t to)
{
    struct cn_derive_edge *e;
    struct cn_derive_edge_query q = {.from_ns = from, .to_ns = to};
    assert_int_equal(cn_derive_edges(d, &e, n, &q), 0);
    return e;
}

static void edges_pairs_in_any_order(void **state)
{
    (void)state;
    struct cn_derive *d = derive_with(NULL);
    uint64_t now = T0 + 5 * SEC;
    /* One batch. */
    struct cn_span b[] = {
        span("frontend", 1, 0x11, 0x10, CN_KIND_CLIENT, "GET /api", T0 + SEC, 30 * MS,
             CN_STATUS_OK),
        span("api", 1, 0x12, 0x11, CN_KIND_SERVER, "GET /api", T0 + SEC + MS, 25 * MS,
             CN_STATUS_ERROR),
    };
    cn_derive_add_spans(d, b, 2, now);
    size_t n;
    struct cn_derive_edge *e = edges_of(d, &n, T0, T0 + 60 * SEC);
    assert_int_equal(n, 1);
    assert_true(slice_is(e[0].caller, "frontend") && slice_is(e[0].callee, "api"));
    assert_int_equal(e[0].type, CN_DERIVE_EDGE_RPC);
    assert_int_equal(e[0].uninstrumented, 0);
    assert_int_equal(e[0].count, 1);
    assert_int_equal(e[0].errors, 1);
    assert_near(e[0].server_p50_ns, 25 * MS);
    assert_near(e[0].client_p99_ns, 30 * MS);
    free(e);
    assert_int_equal(stats_of(d).pending, 0);

    /* Client first, server one batch later. */
    add1(d, span("frontend", 2, 0x21, 0x20, CN_KIND_CLIENT, "GET /api", T0 + 2 * SEC, 40 * MS, 0),
         now);
    assert_int_equal(stats_of(d).pending, 1);
    add1(d, span("api", 2, 0x22, 0x21, CN_KIND_SERVER, "GET /api", T0 + 2 * SEC, 35 * MS, 0),
         now + SEC);
    /* Server first. */
    add1(d, span("api", 3, 0x32, 0x31, CN_KIND_SERVER, "GET /api", T0 + 3 * SEC, 45 * MS, 0),
         now + 2 * SEC);
    assert_int_equal(stats_of(d).pending, 1);
    add1(d, span("frontend", 3, 0x31, 0x30, CN_KIND_CLIENT, "GET /api", T0 + 3 * SEC, 50 * MS, 0),
         now + 3 * SEC);
    e = edges_of(d, &n, T0, T0 + 60 * SEC);
    assert_int_equal(n, 1);
    assert_int_equal(e[0].count, 3);
    assert_int_equal(e[0].errors, 1);
    assert_near(e[0].server_p50_ns, 35 * MS); /* rank 1 of 25, 35, 45 */
    assert_near(e[0].client_p50_ns, 40 * MS);
    free(e);
    struct cn_derive_stats st = stats_of(d);
    assert_int_equal(st.pairs, 3);
    assert_int_equal(st.pending, 0);
    assert_int_equal(st.expired_callers + st.expired_callees, 0);

    /* Edges are bucketed in time, at the server's start. */
    e = edges_of(d, &n, T0 + 10 * SEC, T0 + 20 * SEC);
    assert_int_equal(n, 0);
    assert_null(e);
    struct cn_derive_edge_query q = {.from_ns = T0, .to_ns = T0};
    assert_int_equal(cn_derive_edges(d, &e, &n, &q), CN_EINVAL);
    cn_derive_free(d);
}

static void edges_window_expiry(void **state)
{
    (void)state;
    struct cn_derive *d = derive_with(NULL);
    uint64_t now = T0 + 5 * SEC;
    add1(d, span("frontend", 4, 0x41, 0x40, CN_KIND_CLIENT, "GET /api", T0, 30 * MS, 0), now);
    /* 31 s of ingest time later the client's window is over. */
    add1(d, span("api", 4, 0x42, 0x41, CN_KIND_SERVER, "GET /api", T0, 25 * MS, 0), now + 31 * SEC);
    struct cn_derive_stats st = stats_of(d);
    assert_int_equal(st.expired_callers, 1);
    assert_int_equal(st.pending, 1);
    assert_int_equal(st.pairs, 0);
    cn_derive_expire(d, now + 61 * SEC);
    st = stats_of(d);
    assert_int_equal(st.expired_callees, 1);
    assert_int_equal(st.pending, 0);
    size_t n;
    struct cn_derive_edge *e = edges_of(d, &n, T0, T0 + 60 * SEC);
    assert_int_equal(n, 0);
    free(e);

    /* Within the window, just: 30 s is still in. */
    add1(d, span("frontend", 5, 0x51, 0x50, CN_KIND_CLIENT, "GET /api", T0, 30 * MS, 0),
         now + 100 * SEC);
    add1(d, span("api", 5, 0x52, 0x51, CN_KIND_SERVER, "GET /api", T0, 25 * MS, 0),
         now + 129 * SEC);
    assert_int_equal(stats_of(d).pairs, 1);
    cn_derive_free(d);
}

static void edges_uninstrumented_peers(void **state)
{
    (void)state;
    struct cn_derive *d = derive_with(NULL);
    uint64_t now = T0 + 5 * SEC;
    struct cn_kv kv1[] = {str_kv("server.address", "10.0.0.7"), str_kv("db.system", "postgresql"),
                          str_kv("peer.service", "postgres")};
    struct cn_kv kv2[] = {str_kv("net.peer.name", "cache.local")};
    struct cn_kv kv3[] = {str_kv("peer.service", "billing")};
    struct cn_span b[] = {
        span("api", 6, 0x61, 0x60, CN_KIND_CLIENT, "SELECT", T0 + SEC, 4 * MS, CN_STATUS_ERROR),
        span("api", 6, 0x62, 0x60, CN_KIND_CLIENT, "GET", T0 + SEC, 2 * MS, 0),
        span("api", 6, 0x63, 0x60, CN_KIND_CLIENT, "POST /bill", T0 + SEC, 9 * MS, 0),
        span("api", 6, 0x64, 0x60, CN_KIND_CLIENT, "no peer", T0 + SEC, 9 * MS, 0),
        span("billing", 6, 0x65, 0x63, CN_KIND_SERVER, "POST /bill", T0 + SEC, 8 * MS, 0),
    };
    set_attr(&b[0], kv1, 3);
    set_attr(&b[1], kv2, 1);
    set_attr(&b[2], kv3, 1);
    cn_derive_add_spans(d, b, 5, now);
    size_t n;
    struct cn_derive_edge *e = edges_of(d, &n, T0, T0 + 60 * SEC);
    assert_int_equal(n, 1); /* only the pair so far */
    free(e);
    cn_derive_expire(d, now + 30 * SEC);
    e = edges_of(d, &n, T0, T0 + 60 * SEC);
    assert_int_equal(n, 3);
    /* Sorted by caller, callee: billing (paired), cache.local, postgres. */
    assert_true(slice_is(e[0].callee, "billing") && !e[0].uninstrumented);
    assert_near(e[0].server_p50_ns, 8 * MS);
    assert_true(slice_is(e[1].callee, "cache.local") && e[1].uninstrumented);
    assert_true(slice_is(e[2].callee, "postgres") && e[2].uninstrumented);
    assert_int_equal(e[2].count, 1);
    assert_int_equal(e[2].errors, 1);
    assert_true(e[2].server_p50_ns == 0);
    assert_near(e[2].client_p50_ns, 4 * MS);
    free(e);
    struct cn_derive_stats st = stats_of(d);
    assert_int_equal(st.uninstrumented, 2);
    assert_int_equal(st.expired_callers, 1);
    cn_derive_free(d);

    /* Turned off: the same halves are only counted. */
    struct cn_derive_opts o;
    cn_derive_opts_default(&o);
    o.uninstrumented_edges = 0;
    d = derive_with(&o);
    cn_derive_add_spans(d, b, 5, now);
    cn_derive_expire(d, now + 30 * SEC);
    e = edges_of(d, &n, T0, T0 + 60 * SEC);
    assert_int_equal(n, 1);
    free(e);
    assert_int_equal(stats_of(d).expired_callers, 3);
    cn_derive_free(d);
}

static void edges_producer_consumer(void **state)
{
    (void)state;
    struct cn_derive *d = derive_with(NULL);
    uint64_t now = T0 + 5 * SEC;
    struct cn_span prod =
        span("orders", 7, 0x71, 0x70, CN_KIND_PRODUCER, "send", T0 + SEC, 2 * MS, 0);
    struct cn_span c1 =
        span("billing", 7, 0x72, 0x71, CN_KIND_CONSUMER, "receive", T0 + 2 * SEC, 6 * MS, 0);
    /* A consumer in a trace of its own, linked to the producer. */
    struct cn_span c2 =
        span("shipping", 8, 0x81, 0, CN_KIND_CONSUMER, "receive", T0 + 2 * SEC, 7 * MS, 0);
    struct cn_link link;
    memset(&link, 0, sizeof(link));
    put_id(link.trace_id, 16, 7);
    put_id(link.span_id, 8, 0x71);
    c2.links = &link;
    c2.num_links = 1;
    add1(d, c2, now); /* before the producer */
    add1(d, prod, now + SEC);
    add1(d, c1, now + 2 * SEC); /* after it paired once: fan-out */
    size_t n;
    struct cn_derive_edge *e = edges_of(d, &n, T0, T0 + 60 * SEC);
    assert_int_equal(n, 2);
    assert_true(slice_is(e[0].caller, "orders") && slice_is(e[0].callee, "billing"));
    assert_true(slice_is(e[1].caller, "orders") && slice_is(e[1].callee, "shipping"));
    assert_int_equal(e[0].type, CN_DERIVE_EDGE_MESSAGING);
    assert_int_equal(e[1].type, CN_DERIVE_EDGE_MESSAGING);
    assert_near(e[1].server_p50_ns, 7 * MS);
    assert_near(e[1].client_p50_ns, 2 * MS);
    free(e);
    /* The producer waits out its window for more consumers, then leaves quietly. */
    assert_int_equal(stats_of(d).pending, 1);
    cn_derive_expire(d, now + 60 * SEC);
    struct cn_derive_stats st = stats_of(d);
    assert_int_equal(st.pending, 0);
    assert_int_equal(st.pairs, 2);
    assert_int_equal(st.expired_callers + st.expired_callees + st.uninstrumented, 0);
    /* A producer sent twice is one half. */
    add1(d, prod, now + 61 * SEC);
    add1(d, prod, now + 61 * SEC);
    assert_int_equal(stats_of(d).duplicate_halves, 1);
    cn_derive_free(d);

    /* Seventy consumers wait for one producer: more than one pass of matching. */
    d = derive_with(NULL);
    static struct cn_span many[70];
    for (uint64_t i = 0; i < 70; i++)
        many[i] =
            span("billing", 9, 0x1000 + i, 0x90, CN_KIND_CONSUMER, "receive", T0 + 2 * SEC, MS, 0);
    cn_derive_add_spans(d, many, 70, now);
    assert_int_equal(stats_of(d).pending, 70);
    add1(d, span("orders", 9, 0x90, 0, CN_KIND_PRODUCER, "send", T0 + SEC, MS, 0), now);
    struct cn_derive_stats st2 = stats_of(d);
    assert_int_equal(st2.pairs, 70);
    assert_int_equal(st2.pending, 1); /* the producer, for consumers still to come */
    /* A consumer whose parent and link name the same producer pairs once; one linking two
     * producers pairs twice. */
    struct cn_span p2 = span("orders", 10, 0xb0, 0, CN_KIND_PRODUCER, "send", T0 + SEC, MS, 0);
    struct cn_span p3 = span("orders", 11, 0xc0, 0, CN_KIND_PRODUCER, "send", T0 + SEC, MS, 0);
    cn_derive_add_spans(d, (struct cn_span[]){p2, p3}, 2, now);
    struct cn_span c3 =
        span("billing", 10, 0xb1, 0xb0, CN_KIND_CONSUMER, "receive", T0 + 2 * SEC, MS, 0);
    struct cn_link l3[2];
    memset(l3, 0, sizeof(l3));
    put_id(l3[0].trace_id, 16, 10);
    put_id(l3[0].span_id, 8, 0xb0);
    c3.links = l3;
    c3.num_links = 1;
    add1(d, c3, now);
    assert_int_equal(stats_of(d).pairs, 71);
    struct cn_span c4 =
        span("billing", 12, 0xd1, 0, CN_KIND_CONSUMER, "receive batch", T0 + 2 * SEC, MS, 0);
    put_id(l3[1].trace_id, 16, 11);
    put_id(l3[1].span_id, 8, 0xc0);
    c4.links = l3;
    c4.num_links = 2;
    add1(d, c4, now);
    st2 = stats_of(d);
    assert_int_equal(st2.pairs, 73);
    assert_int_equal(st2.pending, 3); /* the three producers */
    size_t n2;
    e = edges_of(d, &n2, T0, T0 + 60 * SEC);
    assert_int_equal(n2, 1);
    assert_int_equal(e[0].count, 73);
    free(e);
    cn_derive_free(d);
}

static void edges_self_duplicates_and_cap(void **state)
{
    (void)state;
    struct cn_derive_opts o;
    cn_derive_opts_default(&o);
    o.max_pending = 2;
    struct cn_derive *d = derive_with(&o);
    uint64_t now = T0 + 5 * SEC;
    /* A self-edge, with the client sent twice. */
    struct cn_span cl = span("api", 9, 0x91, 0x90, CN_KIND_CLIENT, "GET /x", T0, 3 * MS, 0);
    add1(d, cl, now);
    add1(d, cl, now);
    add1(d, span("api", 9, 0x92, 0x91, CN_KIND_SERVER, "GET /x", T0, 2 * MS, 0), now);
    size_t n;
    struct cn_derive_edge *e = edges_of(d, &n, T0, T0 + 60 * SEC);
    assert_int_equal(n, 1);
    assert_true(slice_is(e[0].caller, "api") && slice_is(e[0].callee, "api"));
    assert_int_equal(e[0].count, 1);
    free(e);
    assert_int_equal(stats_of(d).duplicate_halves, 1);
    /* Three halves waiting with room for two: the oldest goes. */
    for (uint64_t i = 0; i < 3; i++)
        add1(d, span("api", 10 + i, 0xa1, 0xa0, CN_KIND_CLIENT, "GET /y", T0, MS, 0), now);
    struct cn_derive_stats st = stats_of(d);
    assert_int_equal(st.pending_evicted, 1);
    assert_int_equal(st.pending, 2);
    /* The evicted one finds no client; the kept ones do. */
    add1(d, span("b", 10, 0xa2, 0xa1, CN_KIND_SERVER, "GET /y", T0, MS, 0), now);
    add1(d, span("b", 12, 0xa2, 0xa1, CN_KIND_SERVER, "GET /y", T0, MS, 0), now);
    st = stats_of(d);
    assert_int_equal(st.pairs, 2);
    assert_int_equal(st.pending, 1);
    cn_derive_free(d);
}

static void edges_limits(void **state)
{
    (void)state;
    struct cn_derive_opts o;
    cn_derive_opts_default(&o);
    o.max_edges = 2;
    o.num_buckets = 6;
    struct cn_derive *d = derive_with(&o);
    uint64_t now = T0 + 5 * SEC;
    const char *callee[] = {"a", "b", "c"};
    for (uint64_t i = 0; i < 3; i++) {
        struct cn_span b[] = {
            span("api", 30 + i, 0x301, 1, CN_KIND_CLIENT, "call", T0, MS, 0),
            span(callee[i], 30 + i, 0x302, 0x301, CN_KIND_SERVER, "call", T0, MS, 0),
        };
        cn_derive_add_spans(d, b, 2, now);
    }
    struct cn_derive_stats st = stats_of(d);
    assert_int_equal(st.pairs, 3);
    assert_int_equal(st.edges, 2);
    assert_int_equal(st.edges_dropped, 1);
    /* A pair older than the ring (60 s) is matched and counted, but has no bucket. */
    struct cn_span old[] = {
        span("api", 40, 0x401, 1, CN_KIND_CLIENT, "call", T0 - 100 * SEC, MS, 0),
        span("a", 40, 0x402, 0x401, CN_KIND_SERVER, "call", T0 - 100 * SEC, MS, 0),
    };
    cn_derive_add_spans(d, old, 2, now);
    st = stats_of(d);
    assert_int_equal(st.pairs, 4);
    assert_int_equal(st.pairs_out_of_range, 1);
    assert_int_equal(st.spans_too_old, 1); /* the SERVER span, for RED */
    size_t n;
    struct cn_derive_edge *e = edges_of(d, &n, 0, UINT64_MAX);
    assert_int_equal(n, 2);
    assert_int_equal(e[0].count + e[1].count, 2);
    free(e);
    cn_derive_free(d);
}

static void edges_around_a_service(void **state)
{
    (void)state;
    struct cn_derive *d = derive_with(NULL);
    const char *chain[][2] = {{"a", "b"}, {"b", "c"}, {"c", "d"}, {"x", "y"}};
    for (uint64_t i = 0; i < 4; i++) {
        struct cn_span b[] = {
            span(chain[i][0], 20 + i, 0x100 + i, 1, CN_KIND_CLIENT, "call", T0, MS, 0),
            span(chain[i][1], 20 + i, 0x200 + i, 0x100 + i, CN_KIND_SERVER, "call", T0, MS, 0),
        };
        cn_derive_add_spans(d, b, 2, T0 + SEC);
    }
    struct cn_derive_edge *e;
    size_t n;
    struct cn_derive_edge_query q = {
        .from_ns = T0, .to_ns = T0 + 10 * SEC, .service = cn_slice_of("b"), .depth = 1};
    assert_int_equal(cn_derive_edges(d, &e, &n, &q), 0);
    assert_int_equal(n, 2);
    assert_true(slice_is(e[0].caller, "a") && slice_is(e[1].caller, "b"));
    free(e);
    q.depth = 2;
    assert_int_equal(cn_derive_edges(d, &e, &n, &q), 0);
    assert_int_equal(n, 3);
    assert_true(slice_is(e[2].caller, "c") && slice_is(e[2].callee, "d"));
    free(e);
    q.depth = 0;
    assert_int_equal(cn_derive_edges(d, &e, &n, &q), 0);
    assert_int_equal(n, 3); /* x -> y is not connected */
    free(e);
    q.service = cn_slice_of("y");
    assert_int_equal(cn_derive_edges(d, &e, &n, &q), 0);
    assert_int_equal(n, 1);
    free(e);
    q.service = (struct cn_slice){NULL, 0};
    assert_int_equal(cn_derive_edges(d, &e, &n, &q), 0);
    assert_int_equal(n, 4);
    free(e);
    q.service = cn_slice_of("nope");
    assert_int_equal(cn_derive_edges(d, &e, &n, &q), CN_ENOENT);
    cn_derive_free(d);
}

/* ---- rollups ---- */

static const char *const roll_svcs[] = {"web", "api", "db", "cache"};

/* n client/server pairs from start over secs seconds, the same for every seed. */
static void roll_feed(struct cn_derive *const *ds, size_t nd, uint64_t seed, uint64_t start,
                      uint64_t secs, size_t n, uint64_t now)
{
    struct cn_span b[256];
    size_t k = 0;
    uint64_t x = seed;
    for (size_t i = 0; i < n; i++) {
        x = x * 6364136223846793005ull + 1442695040888963407ull;
        uint64_t t = start + (x >> 11) % (secs * SEC);
        uint64_t dur = 1 * MS + (x >> 7) % (300 * MS);
        const char *from = roll_svcs[(x >> 40) % 4], *to = roll_svcs[(x >> 44) % 4];
        int err = (x >> 50) % 10 == 0 ? CN_STATUS_ERROR : CN_STATUS_OK;
        uint64_t trace = seed * 1000000 + i + 1, id = 2 * (seed * 1000000 + i) + 2;
        b[k++] = span(from, trace, id, 0, CN_KIND_CLIENT, "call", t, dur + MS, CN_STATUS_OK);
        b[k++] = span(to, trace, id + 1, id, CN_KIND_SERVER, "serve", t + MS / 2, dur, err);
        if (k == CN_ARRAY_LEN(b) || i + 1 == n) {
            for (size_t j = 0; j < nd; j++)
                cn_derive_add_spans(ds[j], b, k, now);
            k = 0;
        }
    }
}

static void assert_same_edges(struct cn_derive *a, struct cn_derive *b, uint64_t from, uint64_t to)
{
    size_t na, nb;
    struct cn_derive_edge *ea = edges_of(a, &na, from, to), *eb = edges_of(b, &nb, from, to);
    assert_int_equal(na, nb);
    for (size_t i = 0; i < na; i++) {
        assert_true(cn_slice_eq(ea[i].caller, eb[i].caller));
        assert_true(cn_slice_eq(ea[i].callee, eb[i].callee));
        assert_int_equal(ea[i].count, eb[i].count);
        assert_int_equal(ea[i].errors, eb[i].errors);
        assert_true(ea[i].server_p50_ns == eb[i].server_p50_ns);
        assert_true(ea[i].server_p95_ns == eb[i].server_p95_ns);
        assert_true(ea[i].server_p99_ns == eb[i].server_p99_ns);
        assert_true(ea[i].client_p50_ns == eb[i].client_p50_ns);
        assert_true(ea[i].client_p99_ns == eb[i].client_p99_ns);
    }
    free(ea);
    free(eb);
}

/* A batch pairs exactly as its spans one call each: cn_derive_add_spans works out the
 * pairing keys of spans ahead of the one it adds (past its first 8, and across its chunks
 * of 1024), and looks up the peers of CLIENTs still waiting at the end of each chunk; a
 * call of one span does both at once. Pairs in both orders, within and across traces,
 * fan-out, duplicates, CLIENTs naming an uninstrumented peer, roots. */
static void batched_as_one_by_one(uint32_t max_pending)
{
    enum { N = 2600 };
    static struct cn_span b[N];
    static struct cn_kv peer[N];
    static struct cn_link links[N];
    struct cn_derive_opts o;
    cn_derive_opts_default(&o);
    if (max_pending)
        o.max_pending = max_pending;
    struct cn_derive *whole = derive_with(&o), *single = derive_with(&o);
    uint64_t x = 42, now = T0 + 5 * SEC;
    size_t n = 0, want_pairs = 0;
    while (n + 4 <= N) {
        x = x * 6364136223846793005ull + 1442695040888963407ull;
        uint64_t trace = n + 1, id = 4 * (uint64_t)n + 2, t = T0 + (x >> 20) % (9 * SEC);
        const char *from = roll_svcs[(x >> 40) % 4], *to = roll_svcs[(x >> 44) % 4];
        switch ((x >> 50) % 7) {
        case 0: /* CLIENT then its SERVER */
        case 1: /* SERVER first */ {
            struct cn_span c = span(from, trace, id, 0, CN_KIND_CLIENT, "call", t, 3 * MS, 0);
            struct cn_span v = span(to, trace, id + 1, id, CN_KIND_SERVER, "serve", t, MS, 0);
            b[n++] = (x >> 50) % 7 ? v : c;
            b[n++] = (x >> 50) % 7 ? c : v;
            want_pairs++;
            break;
        }
        case 2: /* a CLIENT naming a peer that never answers, and a root SERVER */
            b[n] = span(from, trace, id, 0, CN_KIND_CLIENT, "call", t, 2 * MS, 0);
            peer[n] = str_kv("server.address", "ledger");
            set_attr(&b[n], &peer[n], 1);
            n++;
            b[n++] = span(to, trace + 1000000, id + 1, 0, CN_KIND_SERVER, "root", t, MS, 0);
            break;
        case 3: /* a producer, its consumer, and one linked from a trace of its own */
            b[n++] = span(from, trace, id, 0, CN_KIND_PRODUCER, "send", t, MS, 0);
            b[n++] = span(to, trace, id + 1, id, CN_KIND_CONSUMER, "receive", t, MS, 0);
            b[n] = span(to, trace + 2000000, id + 2, 0, CN_KIND_CONSUMER, "receive", t, MS, 0);
            memset(&links[n], 0, sizeof(links[n]));
            put_id(links[n].trace_id, 16, trace);
            put_id(links[n].span_id, 8, id);
            b[n].links = &links[n];
            b[n].num_links = 1;
            n++;
            want_pairs += 2;
            break;
        case 4: /* a CLIENT sent twice, then its SERVER */
            b[n++] = span(from, trace, id, 0, CN_KIND_CLIENT, "call", t, 3 * MS, 0);
            b[n++] = span(from, trace, id, 0, CN_KIND_CLIENT, "call", t, 3 * MS, 0);
            b[n++] = span(to, trace, id + 1, id, CN_KIND_SERVER, "serve", t, MS, 0);
            want_pairs++;
            break;
        case 5: /* a CLIENT, its SERVER, then the CLIENT again naming another peer */
            b[n] = span(from, trace, id, 0, CN_KIND_CLIENT, "call", t, 3 * MS, 0);
            peer[n] = str_kv("server.address", "ledger");
            set_attr(&b[n], &peer[n], 1);
            n++;
            b[n++] = span(to, trace, id + 1, id, CN_KIND_SERVER, "serve", t, MS, 0);
            b[n] = span(from, trace, id, 0, CN_KIND_CLIENT, "call", t, 3 * MS, 0);
            peer[n] = str_kv("peer.service", "vault");
            set_attr(&b[n], &peer[n], 1);
            n++;
            want_pairs++;
            break;
        default: /* an INTERNAL span, paired with nothing */
            b[n++] = span(from, trace, id, 0, CN_KIND_INTERNAL, "work", t, MS, 0);
            break;
        }
    }
    cn_derive_add_spans(whole, b, n, now);
    for (size_t i = 0; i < n; i++)
        add1(single, b[i], now);
    cn_derive_expire(whole, now + 600 * SEC);
    cn_derive_expire(single, now + 600 * SEC);
    struct cn_derive_stats sw = stats_of(whole), ss = stats_of(single);
    if (!max_pending) {
        assert_int_equal(sw.pairs, want_pairs);
        assert_int_equal(ss.pairs, want_pairs);
        assert_true(sw.uninstrumented > 0 && sw.duplicate_halves > 0);
        assert_int_equal(sw.pending_evicted, 0);
    } else {
        assert_true(sw.pending_evicted > 0);
    }
    assert_int_equal(sw.pairs, ss.pairs);
    assert_int_equal(sw.pending_evicted, ss.pending_evicted);
    assert_int_equal(sw.uninstrumented, ss.uninstrumented);
    assert_int_equal(sw.duplicate_halves, ss.duplicate_halves);
    assert_int_equal(sw.expired_callers, ss.expired_callers);
    assert_int_equal(sw.expired_callees, ss.expired_callees);
    assert_int_equal(sw.pending, 0);
    assert_int_equal(ss.pending, 0);
    assert_same_edges(whole, single, T0, T0 + 60 * SEC);
    /* The peer of a CLIENT sent again after its pair is the later span's. */
    size_t ne;
    struct cn_derive_edge *e = edges_of(whole, &ne, T0, T0 + 60 * SEC);
    size_t ledger = 0, vault = 0;
    for (size_t i = 0; i < ne; i++) {
        ledger += slice_is(e[i].callee, "ledger");
        vault += slice_is(e[i].callee, "vault");
    }
    free(e);
    assert_true(ledger > 0 && vault > 0);
    cn_derive_free(whole);
    cn_derive_free(single);
}

/* ... and when the cap on waiting halves ends windows inside the batch. */
static void edges_batched_as_one_by_one(void **state)
{
    (void)state;
    batched_as_one_by_one(0);
    batched_as_one_by_one(8);
}

static uint64_t assert_same_red(struct cn_derive *a, struct cn_derive *b, const char *svc,
                                uint64_t from, uint64_t to, uint64_t step)
{
    struct cn_derive_red_query q = {
        .service = cn_slice_of(svc), .from_ns = from, .to_ns = to, .step_ns = step};
    struct cn_derive_red_point *pa, *pb;
    size_t na, nb;
    assert_int_equal(cn_derive_red(a, &pa, &na, &q), 0);
    assert_int_equal(cn_derive_red(b, &pb, &nb, &q), 0);
    assert_int_equal(na, nb);
    uint64_t total = 0;
    for (size_t i = 0; i < na; i++) {
        assert_int_equal(pa[i].count, pb[i].count);
        assert_int_equal(pa[i].errors, pb[i].errors);
        assert_true(pa[i].p50_ns == pb[i].p50_ns && pa[i].p95_ns == pb[i].p95_ns &&
                    pa[i].p99_ns == pb[i].p99_ns);
        assert_true(pa[i].mean_ns == pb[i].mean_ns && pa[i].min_ns == pb[i].min_ns &&
                    pa[i].max_ns == pb[i].max_ns);
        total += pa[i].count;
    }
    free(pa);
    free(pb);
    return total;
}

/* Queries over long ranges read minute and ten-minute rollups: the answers are those of
 * merging every bucket, also after late spans land in a block already rolled up, and under a
 * rollup budget too small to keep them. */
static void rollups_same_answers(void **state)
{
    (void)state;
    struct cn_derive_opts o;
    cn_derive_opts_default(&o);
    struct cn_derive *a = derive_with(&o); /* rollups (default budget) */
    o.max_rollup_bytes = 0;
    struct cn_derive *plain = derive_with(&o); /* none */
    o.max_rollup_bytes = 16 << 10;
    struct cn_derive *tight = derive_with(&o); /* a few at a time */
    struct cn_derive *all[] = {a, plain, tight};
    uint64_t h = 3600 * SEC, now = T0 + 2 * h + 60 * SEC;
    roll_feed(all, 3, 1, T0, 2 * 3600, 6000, now);
    const uint64_t ranges[][2] = {
        {T0, T0 + 2 * h},
        {T0 + 7 * SEC, T0 + h + 13 * SEC},
        {T0 + 600 * SEC, T0 + 1800 * SEC},
        {T0 + 59 * SEC, T0 + 61 * SEC},
        {T0 + 1234 * SEC, T0 + 2 * h - 17 * SEC},
    };
    for (int pass = 0; pass < 2; pass++) {
        for (size_t r = 0; r < CN_ARRAY_LEN(ranges); r++) {
            uint64_t from = ranges[r][0], to = ranges[r][1];
            assert_same_edges(a, plain, from, to); /* edges build rollups */
            assert_same_edges(tight, plain, from, to);
            for (size_t s = 0; s < 4; s++) {
                uint64_t w = (to - from + 10 * SEC - 1) / (10 * SEC) * 10 * SEC;
                assert_same_red(a, plain, roll_svcs[s], from, to, w);
                assert_same_red(tight, plain, roll_svcs[s], from, to, w);
                assert_same_red(a, plain, roll_svcs[s], from, to, 60 * SEC);
            }
        }
    }
    struct cn_derive_stats st = stats_of(a);
    assert_true(st.rollup_builds > 0);
    assert_true(st.rollup_hits > st.rollup_builds); /* reused on the second pass */
    assert_true(st.rollup_bytes > 0 && st.rollup_bytes <= 64 << 20);
    assert_int_equal(stats_of(plain).rollup_hits, 0);
    assert_int_equal(stats_of(plain).rollup_bytes, 0);
    st = stats_of(tight);
    assert_true(st.rollup_bytes <= 16 << 10);
    assert_true(st.rollups_refused > 0 || st.rollup_builds > stats_of(a).rollup_builds);

    /* Late spans in the first half hour: the rollups holding it are stale, rebuilt. */
    uint64_t before = assert_same_red(a, plain, "api", T0, T0 + 2 * h, 2 * h);
    uint64_t builds = stats_of(a).rollup_builds;
    roll_feed(all, 3, 2, T0, 1800, 400, now);
    uint64_t after = assert_same_red(a, plain, "api", T0, T0 + 2 * h, 2 * h);
    assert_true(after > before); /* RED does not build: it merged buckets */
    assert_same_edges(a, plain, T0, T0 + 2 * h);
    assert_true(stats_of(a).rollup_builds > builds);
    assert_same_red(a, plain, "api", T0, T0 + 2 * h, 2 * h);
    for (size_t r = 0; r < CN_ARRAY_LEN(ranges); r++)
        assert_same_edges(tight, plain, ranges[r][0], ranges[r][1]);
    cn_derive_free(a);
    cn_derive_free(plain);
    cn_derive_free(tight);
}

/* While ingest is idle, the ten-minute rollups of settled blocks are built one a call, so the
 * first query finds them; a late span makes its block due again. */
static void rollups_built_when_idle(void **state)
{
    (void)state;
    struct cn_derive_opts o;
    cn_derive_opts_default(&o);
    struct cn_derive *a = derive_with(&o);
    o.max_rollup_bytes = 0;
    struct cn_derive *plain = derive_with(&o);
    struct cn_derive *all[] = {a, plain};
    uint64_t h = 3600 * SEC, now = T0 + h + 420 * SEC; /* past the last block's end */
    roll_feed(all, 2, 3, T0, 3600, 3000, now);
    assert_int_equal(cn_derive_rollup_step(a), 0); /* written just now: not settled */
    assert_int_equal(cn_derive_rollup_step(plain), 0);
    now += CN_DERIVE_ROLLUP_SETTLE_NS;
    cn_derive_expire(a, now);
    cn_derive_expire(plain, now);
    int n = 0;
    while (cn_derive_rollup_step(a))
        n++;
    /* T0 is 200 s past a ten-minute boundary: the hour's spans lie in 7 blocks. */
    assert_int_equal(n, 7);
    assert_int_equal(stats_of(a).rollup_builds, 7);
    assert_int_equal(cn_derive_rollup_step(plain), 0);
    uint64_t hits = stats_of(a).rollup_hits;
    assert_same_edges(a, plain, T0 - 200 * SEC, T0 + h + 400 * SEC); /* the 7 blocks whole */
    assert_int_equal(stats_of(a).rollup_builds, 7);
    assert_int_equal(stats_of(a).rollup_hits, hits + 7);
    /* A late span: its block is stale, due again once settled. */
    roll_feed(all, 2, 4, T0 + 700 * SEC, 10, 1, now);
    assert_int_equal(cn_derive_rollup_step(a), 0);
    now += CN_DERIVE_ROLLUP_SETTLE_NS;
    cn_derive_expire(a, now);
    cn_derive_expire(plain, now);
    assert_int_equal(cn_derive_rollup_step(a), 1);
    assert_int_equal(cn_derive_rollup_step(a), 0);
    assert_int_equal(stats_of(a).rollup_builds, 8);
    assert_same_edges(a, plain, T0 - 200 * SEC, T0 + h + 400 * SEC);
    assert_same_red(a, plain, "db", T0 - 200 * SEC, T0 + h + 400 * SEC, 600 * SEC);
    cn_derive_free(a);
    cn_derive_free(plain);
}

/* ---- trace summaries ---- */

static void summaries_across_batches(void **state)
{
    (void)state;
    struct cn_derive *d = derive_with(NULL);
    uint8_t id[16];
    put_id(id, 16, 100);
    struct cn_derive_trace t;
    assert_int_equal(cn_derive_trace(d, &t, id), CN_ENOENT);
    struct cn_span b1[] = {
        span("db", 100, 3, 1, CN_KIND_SERVER, "query", T0 + 10 * MS, 5 * MS, 0),
        span("cache", 100, 4, 1, CN_KIND_SERVER, "get", T0 + 5 * MS, 1 * MS, CN_STATUS_ERROR),
    };
    cn_derive_add_spans(d, b1, 2, T0 + SEC);
    assert_int_equal(cn_derive_trace(d, &t, id), 0);
    assert_false(t.has_root);
    assert_true(slice_is(t.root_service, "cache") && slice_is(t.root_operation, "get"));
    assert_true(t.start_ns == T0 + 5 * MS);
    assert_true(t.duration_ns == 10 * MS);
    assert_int_equal(t.num_spans, 2);
    assert_int_equal(t.num_errors, 1);
    assert_int_equal(t.num_services, 2);
    assert_true(slice_is(t.services[0], "db") && slice_is(t.services[1], "cache"));

    add1(d, span("gateway", 100, 1, 0, CN_KIND_SERVER, "GET /", T0, 50 * MS, 0), T0 + 2 * SEC);
    assert_int_equal(cn_derive_trace(d, &t, id), 0);
    assert_true(t.has_root);
    assert_true(slice_is(t.root_service, "gateway") && slice_is(t.root_operation, "GET /"));
    assert_true(t.start_ns == T0 && t.duration_ns == 50 * MS);
    assert_int_equal(t.num_spans, 3);
    assert_int_equal(t.num_services, 3);
    assert_true(slice_is(t.services[2], "gateway"));

    /* An earlier child (clock skew) moves the start, not the root. */
    add1(d, span("db", 100, 5, 1, CN_KIND_CLIENT, "connect", T0 - MS, 100 * MS, 0), T0 + 3 * SEC);
    assert_int_equal(cn_derive_trace(d, &t, id), 0);
    assert_true(slice_is(t.root_service, "gateway"));
    assert_true(t.start_ns == T0 - MS && t.duration_ns == 100 * MS);
    assert_int_equal(t.num_services, 3);

    /* Past four services the list moves out of line; past the cap it is cut. */
    put_id(id, 16, 101);
    const char *many[] = {"s1", "s2", "s3", "s4", "s5", "s6", "s1"};
    for (uint64_t i = 0; i < 7; i++)
        add1(d, span(many[i], 101, 10 + i, i ? 10 : 0, CN_KIND_SERVER, "x", T0 + i, 1, 0),
             T0 + 4 * SEC);
    assert_int_equal(cn_derive_trace(d, &t, id), 0);
    assert_int_equal(t.num_spans, 7);
    assert_int_equal(t.num_services, 6);
    assert_false(t.services_truncated);
    assert_true(slice_is(t.services[5], "s6"));
    cn_derive_free(d);

    struct cn_derive_opts o;
    cn_derive_opts_default(&o);
    o.max_trace_services = 2;
    d = derive_with(&o);
    for (uint64_t i = 0; i < 7; i++)
        add1(d, span(many[i], 101, 10 + i, i ? 10 : 0, CN_KIND_SERVER, "x", T0 + i, 1, 0),
             T0 + 4 * SEC);
    assert_int_equal(cn_derive_trace(d, &t, id), 0);
    assert_int_equal(t.num_services, 2);
    assert_true(t.services_truncated);
    cn_derive_free(d);
}

static void summaries_evicted_at_cap(void **state)
{
    (void)state;
    struct cn_derive_opts o;
    cn_derive_opts_default(&o);
    o.max_traces = 3;
    struct cn_derive *d = derive_with(&o);
    for (uint64_t i = 1; i <= 4; i++)
        add1(d, span("api", i, 1, 0, CN_KIND_SERVER, "GET /", T0 + i * SEC, MS, 0), T0 + 9 * SEC);
    uint8_t id[16];
    struct cn_derive_trace t;
    put_id(id, 16, 1);
    assert_int_equal(cn_derive_trace(d, &t, id), CN_ENOENT);
    for (uint64_t i = 2; i <= 4; i++) {
        put_id(id, 16, i);
        assert_int_equal(cn_derive_trace(d, &t, id), 0);
        assert_true(t.start_ns == T0 + i * SEC);
    }
    struct cn_derive_stats st = stats_of(d);
    assert_int_equal(st.traces, 3);
    assert_int_equal(st.traces_evicted, 1);
    /* The trace that comes back is a new summary. */
    add1(d, span("api", 1, 2, 1, CN_KIND_SERVER, "late", T0, MS, 0), T0 + 9 * SEC);
    put_id(id, 16, 1);
    assert_int_equal(cn_derive_trace(d, &t, id), 0);
    assert_int_equal(t.num_spans, 1);
    put_id(id, 16, 2);
    assert_int_equal(cn_derive_trace(d, &t, id), CN_ENOENT);
    cn_derive_free(d);
}

/* Span counts of many traces at once, as the spans-per-trace limit asks them: the same as
 * one cn_derive_trace each, 0 for traces without a summary, fewer and more IDs than the
 * lookups run ahead, an ID asked twice, none at all. */
static void summaries_span_counts(void **state)
{
    (void)state;
    struct cn_derive_opts o;
    cn_derive_opts_default(&o);
    struct cn_derive *d = derive_with(&o);
    for (uint64_t t = 1; t <= 40; t++)
        for (uint64_t k = 0; k < t % 7; k++)
            add1(d, span("api", t, k + 1, k, CN_KIND_SERVER, "GET /", T0 + k, MS, 0), T0);
    uint8_t ids[50][16];
    const uint8_t *ptrs[50];
    uint32_t spans[50];
    for (size_t n = 0; n <= 50; n += n < 10 ? 1 : 20) {
        for (size_t i = 0; i < n; i++) {
            put_id(ids[i], 16, i == 7 ? 3 : 50 - i); /* 41 to 50 have none; 3 twice */
            ptrs[i] = ids[i];
            spans[i] = 12345;
        }
        cn_derive_trace_spans(d, ptrs, n, spans);
        for (size_t i = 0; i < n; i++) {
            struct cn_derive_trace t;
            uint32_t want = cn_derive_trace(d, &t, ids[i]) == 0 ? t.num_spans : 0;
            assert_int_equal(spans[i], want);
            uint64_t v = i == 7 ? 3 : 50 - i;
            assert_int_equal(spans[i], v <= 40 ? v % 7 : 0);
        }
    }
    cn_derive_free(d);
}

struct rec {
    uint64_t start;
    uint64_t id;
};

static int rec_newest_first(const void *a, const void *b)
{
    const struct rec *x = a, *y = b;
    if (x->start != y->start)
        return x->start < y->start ? 1 : -1;
    return x->id < y->id ? 1 : -1;
}

static void summaries_by_time_range(void **state)
{
    (void)state;
    enum { TRACES = 5000, KEEP = 3000 };
    struct cn_derive_opts o;
    cn_derive_opts_default(&o);
    o.max_traces = KEEP;
    struct cn_derive *d = derive_with(&o);
    static struct rec recs[TRACES];
    uint64_t x = 12345;
    for (uint64_t i = 0; i < TRACES; i++) {
        x = x * 6364136223846793005ull + 1442695040888963407ull;
        recs[i].id = 1 + i;
        recs[i].start = T0 + (x >> 33) % (TRACES * SEC);
        add1(d, span("api", recs[i].id, 1, 0, CN_KIND_SERVER, "GET /", recs[i].start, MS, 0), T0);
        /* Now and then an earlier span of a kept trace moves its start back. */
        if (i >= 100 && i % 7 == 0) {
            struct rec *r = &recs[i - 100];
            r->start -= 500 * SEC;
            add1(d, span("api", r->id, 2, 1, CN_KIND_CLIENT, "x", r->start, MS, 0), T0);
        }
    }
    /* Kept: the last KEEP summaries created. */
    static struct rec want[TRACES];
    uint64_t from = T0 + 1000 * SEC, to = T0 + 4000 * SEC;
    size_t nw = 0;
    for (size_t i = TRACES - KEEP; i < TRACES; i++) {
        if (recs[i].start >= from && recs[i].start < to)
            want[nw++] = recs[i];
    }
    qsort(want, nw, sizeof(*want), rec_newest_first);
    size_t limits[] = {1, 50, 2999};
    for (size_t li = 0; li < CN_ARRAY_LEN(limits); li++) {
        struct cn_derive_trace *t;
        size_t n;
        assert_int_equal(cn_derive_traces(d, &t, &n, from, to, limits[li]), 0);
        assert_int_equal(n, CN_MIN(limits[li], nw));
        for (size_t i = 0; i < n; i++) {
            uint8_t id[16];
            put_id(id, 16, want[i].id);
            assert_memory_equal(t[i].trace_id, id, 16);
            assert_true(t[i].start_ns == want[i].start);
        }
        free(t);
    }
    struct cn_derive_trace *t;
    size_t n;
    assert_int_equal(cn_derive_traces(d, &t, &n, from, to, 0), CN_EINVAL);
    assert_int_equal(cn_derive_traces(d, &t, &n, to, from, 5), CN_EINVAL);
    assert_int_equal(cn_derive_traces(d, &t, &n, 0, T0 - 10000 * SEC, 5), 0);
    assert_int_equal(n, 0);
    cn_derive_free(d);
}

static size_t count_in(struct cn_derive *d, uint64_t from, uint64_t to)
{
    struct cn_derive_trace *t;
    size_t n;
    assert_int_equal(cn_derive_traces(d, &t, &n, from, to, CN_DERIVE_MAX_TRACES_PER_QUERY), 0);
    free(t);
    return n;
}

/* Traces arriving in time order, as they do: the blocks of 1024 summaries get disjoint time
 * ranges and queries skip most of them, so these cases check that skipping never loses one. */
static void summaries_time_blocks(void **state)
{
    (void)state;
    struct cn_derive_opts o;
    cn_derive_opts_default(&o);
    o.max_traces = 2048; /* two blocks */
    struct cn_derive *d = derive_with(&o);
    for (uint64_t i = 0; i < 2048; i++)
        add1(d, span("api", 1 + i, 1, 0, CN_KIND_SERVER, "GET /", T0 + i * SEC, MS, 0), T0);
    assert_int_equal(count_in(d, T0, T0 + 100 * SEC), 100);
    struct cn_derive_trace *t;
    size_t n;
    assert_int_equal(cn_derive_traces(d, &t, &n, T0, T0 + 6000 * SEC, 3), 0);
    assert_int_equal(n, 3); /* the newest three are all in the second block */
    assert_true(t[0].start_ns == T0 + 2047 * SEC && t[2].start_ns == T0 + 2045 * SEC);
    free(t);
    /* A late span moves a trace of the second block to the first block's time. */
    add1(d, span("api", 1 + 2000, 2, 1, CN_KIND_CLIENT, "x", T0 + 10 * SEC, MS, 0), T0);
    assert_int_equal(count_in(d, T0, T0 + 100 * SEC), 101);
    /* Wrapping: 100 new summaries overwrite the start of block 0; its other 924 are still
     * there and must still be found. */
    for (uint64_t i = 0; i < 100; i++)
        add1(d, span("api", 5000 + i, 1, 0, CN_KIND_SERVER, "GET /", T0 + (5000 + i) * SEC, MS, 0),
             T0);
    assert_int_equal(count_in(d, T0, T0 + 1024 * SEC), 924 + 1);
    assert_int_equal(count_in(d, T0 + 5000 * SEC, T0 + 6000 * SEC), 100);
    assert_int_equal(cn_derive_traces(d, &t, &n, T0, T0 + 6000 * SEC, 3), 0);
    assert_int_equal(n, 3);
    assert_true(t[0].start_ns == T0 + 5099 * SEC && t[2].start_ns == T0 + 5097 * SEC);
    free(t);
    cn_derive_free(d);
}

/* ---- limits ---- */

static void names_services_and_limits(void **state)
{
    (void)state;
    struct cn_derive_opts o;
    cn_derive_opts_default(&o);
    o.max_name_bytes = 8;
    o.max_services = 2;
    o.max_operations = 2;
    struct cn_derive *d = derive_with(&o);
    /* "abcdefg" then a two-byte character across the cut: cut before it. */
    struct cn_span b[] = {
        span("api", 1, 1, 0, CN_KIND_SERVER, "abcdefg\xc3\xa9tail", T0, MS, 0),
        span("api", 2, 1, 0, CN_KIND_SERVER, "second", T0, MS, 0),
        span("api", 3, 1, 0, CN_KIND_SERVER, "third", T0, MS, 0),
        span("web", 4, 1, 0, CN_KIND_SERVER, "x", T0, MS, 0),
        span("extra", 5, 1, 0, CN_KIND_SERVER, "root op", T0, MS, 0),
    };
    cn_derive_add_spans(d, b, 5, T0 + SEC);
    struct cn_derive_op *ops;
    size_t n;
    assert_int_equal(cn_derive_operations(d, &ops, &n, cn_slice_of("api")), 0);
    assert_int_equal(n, 2);
    assert_true(slice_is(ops[0].name, "abcdefg"));
    free(ops);
    struct cn_derive_red_point *p;
    struct cn_derive_red_query q = {.service = cn_slice_of("api"),
                                    .operation = cn_slice_of("abcdefg\xc3\xa9tail"),
                                    .from_ns = T0,
                                    .to_ns = T0 + 10 * SEC};
    assert_int_equal(cn_derive_red(d, &p, &n, &q), 0);
    assert_int_equal(p[0].count, 1);
    free(p);
    struct cn_derive_stats st = stats_of(d);
    assert_int_equal(st.names_truncated, 1);
    assert_int_equal(st.operations_dropped, 2); /* "third", and web's "x" */
    assert_int_equal(st.services, 2);
    assert_int_equal(st.services_dropped, 1);
    /* The summary of the dropped service's trace says so. */
    uint8_t id[16];
    put_id(id, 16, 5);
    struct cn_derive_trace t;
    assert_int_equal(cn_derive_trace(d, &t, id), 0);
    assert_true(slice_is(t.root_service, CN_DERIVE_OVERFLOW_NAME));
    assert_true(slice_is(t.root_operation, "root op"));
    assert_int_equal(t.num_services, 0);
    cn_derive_free(d);

    cn_derive_opts_default(&o);
    o.max_names = 3;
    d = derive_with(&o);
    cn_derive_add_spans(d, b, 5, T0 + SEC);
    st = stats_of(d);
    assert_int_equal(st.names, 3);
    assert_true(st.names_dropped > 0);
    put_id(id, 16, 4);
    assert_int_equal(cn_derive_trace(d, &t, id), 0);
    assert_true(slice_is(t.root_operation, CN_DERIVE_OVERFLOW_NAME));
    cn_derive_free(d);
}

/* ---- span names ---- */

static void span_names_every_kind_capped(void **state)
{
    (void)state;
    struct cn_derive_opts o;
    cn_derive_opts_default(&o);
    o.max_span_names = 3;
    struct cn_derive *d = derive_with(&o);
    struct cn_span b[] = {
        span("web", 1, 1, 0, CN_KIND_SERVER, "GET /", T0, MS, 0),
        span("web", 1, 2, 1, CN_KIND_CLIENT, "GET /cart", T0, MS, 0),
        span("web", 1, 3, 1, CN_KIND_INTERNAL, "render", T0, MS, 0),
        span("web", 2, 4, 0, CN_KIND_SERVER, "GET /", T0, MS, 0),  /* known: no new entry */
        span("web", 2, 5, 4, CN_KIND_CLIENT, "GET /", T0, MS, 0),  /* 4th pair: over the cap */
        span("web", 2, 6, 4, CN_KIND_PRODUCER, "send", T0, MS, 0), /* 5th: over the cap */
        span("cart", 1, 7, 2, CN_KIND_SERVER, "GET /cart", T0, MS, 0),
        span("cart", 1, 8, 7, CN_KIND_CLIENT, "SELECT", T0, MS, 0),
        span("cart", 1, 9, 7, 77, "odd kind", T0, MS, 0), /* out of range: UNSPECIFIED */
    };
    cn_derive_add_spans(d, b, CN_ARRAY_LEN(b), T0 + SEC);
    struct cn_derive_op *ops;
    size_t n;
    assert_int_equal(cn_derive_span_names(d, &ops, &n, cn_slice_of("web")), 0);
    assert_int_equal(n, 3);
    assert_true(slice_is(ops[0].name, "GET /") && ops[0].kind == CN_KIND_SERVER);
    assert_true(slice_is(ops[1].name, "GET /cart") && ops[1].kind == CN_KIND_CLIENT);
    assert_true(slice_is(ops[2].name, "render") && ops[2].kind == CN_KIND_INTERNAL);
    free(ops);
    /* RED still lists only what it counts. */
    assert_int_equal(cn_derive_operations(d, &ops, &n, cn_slice_of("web")), 0);
    assert_int_equal(n, 1);
    free(ops);
    assert_int_equal(cn_derive_span_names(d, &ops, &n, cn_slice_of("cart")), 0);
    assert_int_equal(n, 3);
    assert_true(slice_is(ops[0].name, "GET /cart") && ops[0].kind == CN_KIND_SERVER);
    assert_true(slice_is(ops[1].name, "SELECT") && ops[1].kind == CN_KIND_CLIENT);
    assert_true(slice_is(ops[2].name, "odd kind") && ops[2].kind == CN_KIND_UNSPECIFIED);
    free(ops);
    /* Every service's: "GET /cart"/CLIENT (web) and "GET /cart"/SERVER (cart) both; no pair
     * twice. */
    assert_int_equal(cn_derive_span_names(d, &ops, &n, (struct cn_slice){NULL, 0}), 0);
    assert_int_equal(n, 6);
    assert_true(slice_is(ops[1].name, "GET /cart") && ops[1].kind == CN_KIND_SERVER);
    assert_true(slice_is(ops[2].name, "GET /cart") && ops[2].kind == CN_KIND_CLIENT);
    free(ops);
    assert_int_equal(cn_derive_span_names(d, &ops, &n, cn_slice_of("nope")), CN_ENOENT);
    assert_null(ops);
    struct cn_derive_stats st = stats_of(d);
    assert_int_equal(st.span_names, 6);
    assert_int_equal(st.span_names_dropped, 2);
    /* Seen again: still dropped, counted per span. */
    add1(d, b[5], T0 + 2 * SEC);
    assert_int_equal(stats_of(d).span_names_dropped, 3);
    /* The cap's edge: exactly max_span_names fit (web has 3). */
    assert_int_equal(stats_of(d).span_names, 6);
    cn_derive_free(d);

    /* Names past max_name_bytes are cut and listed once; past max_names dropped. */
    cn_derive_opts_default(&o);
    o.max_name_bytes = 4;
    o.max_names = 3; /* "web", "abcd", and one more */
    d = derive_with(&o);
    struct cn_span c[] = {
        span("web", 1, 1, 0, CN_KIND_SERVER, "abcdef", T0, MS, 0),
        span("web", 1, 2, 1, CN_KIND_SERVER, "abcdxy", T0, MS, 0), /* same cut name */
        span("web", 1, 3, 1, CN_KIND_INTERNAL, "zz", T0, MS, 0),
        span("web", 1, 4, 1, CN_KIND_INTERNAL, "yy", T0, MS, 0), /* max_names reached */
    };
    cn_derive_add_spans(d, c, CN_ARRAY_LEN(c), T0 + SEC);
    assert_int_equal(cn_derive_span_names(d, &ops, &n, cn_slice_of("web")), 0);
    assert_int_equal(n, 2);
    assert_true(slice_is(ops[0].name, "abcd") && slice_is(ops[1].name, "zz"));
    free(ops);
    assert_int_equal(stats_of(d).span_names_dropped, 1);
    cn_derive_free(d);

    cn_derive_opts_default(&o);
    assert_int_equal(o.max_span_names, 1000);
    o.max_span_names = 0;
    assert_null(cn_derive_new(&o));
    o.max_span_names = CN_DERIVE_MAX_SPAN_NAMES_LIMIT + 1;
    assert_null(cn_derive_new(&o));
}

static void bad_options(void **state)
{
    (void)state;
    struct cn_derive_opts o;
    char err[160];
    cn_derive_opts_default(&o);
    assert_int_equal(cn_derive_opts_check(&o, err, sizeof(err)), 0);
    assert_string_equal(err, "");
    o.bucket_ns = 0;
    assert_int_equal(cn_derive_opts_check(&o, err, sizeof(err)), CN_EINVAL);
    assert_non_null(strstr(err, "bucket_ns"));
    assert_null(cn_derive_new(&o));
    cn_derive_opts_default(&o);
    o.sketch_alpha = 0.9;
    assert_int_equal(cn_derive_opts_check(&o, err, sizeof(err)), CN_EINVAL);
    assert_non_null(strstr(err, "sketch_alpha"));
    cn_derive_opts_default(&o);
    o.max_trace_services = 65;
    assert_int_equal(cn_derive_opts_check(&o, err, sizeof(err)), CN_EINVAL);
    cn_derive_opts_default(&o);
    o.red_kinds = 1u << 6;
    assert_int_equal(cn_derive_opts_check(&o, err, sizeof(err)), CN_EINVAL);
    cn_derive_opts_default(&o);
    o.max_rollup_bytes = 0; /* no rollups: allowed */
    assert_int_equal(cn_derive_opts_check(&o, err, sizeof(err)), 0);
    cn_derive_free(NULL);
}

static void odd_spans(void **state)
{
    (void)state;
    struct cn_derive *d = derive_with(NULL);
    struct cn_span b[] = {
        span("api", 1, 1, 0, CN_KIND_SERVER, "", T0, 0, 0), /* empty name, 0 ns */
        span("api", 2, 1, 0, 77, "bad kind", T0, MS, 9),    /* unknown kind, status */
        span("api", 3, 1, 0, CN_KIND_SERVER, "back", T0 + MS, 0, 0),
    };
    b[2].end_ns = T0; /* ends before it starts */
    b[0].resource = NULL;
    cn_derive_add_spans(d, b, 3, T0 + SEC);
    cn_derive_add_spans(d, NULL, 0, T0 + 2 * SEC);
    struct cn_derive_stats st = stats_of(d);
    assert_int_equal(st.spans, 3);
    assert_int_equal(st.bad_durations, 1);
    struct cn_derive_red_point *p;
    size_t n;
    struct cn_derive_red_query q = {.service = cn_slice_of("unknown_service"),
                                    .operation = cn_slice_of(""),
                                    .from_ns = T0,
                                    .to_ns = T0 + 10 * SEC};
    assert_int_equal(cn_derive_red(d, &p, &n, &q), 0);
    assert_int_equal(p[0].count, 1);
    assert_true(p[0].p99_ns == 0 && p[0].max_ns == 0);
    free(p);
    q.service = cn_slice_of("api");
    q.operation = (struct cn_slice){NULL, 0};
    assert_int_equal(cn_derive_red(d, &p, &n, &q), 0);
    assert_int_equal(p[0].count, 2); /* the unknown kind counts as a root */
    free(p);
    cn_derive_free(d);
}

/* ---- threads ---- */

struct smoke {
    struct cn_derive *d;
    atomic_int done;
    uint64_t queries;
};

#define SMOKE_BATCHES 200
#define SMOKE_SPANS   500

static void *writer(void *arg)
{
    struct smoke *sm = arg;
    static struct cn_span b[SMOKE_SPANS];
    const char *svcs[] = {"gw", "api", "db", "cache", "auth"};
    for (uint64_t k = 0; k < SMOKE_BATCHES; k++) {
        for (uint64_t i = 0; i < SMOKE_SPANS; i += 2) {
            uint64_t tr = k * SMOKE_SPANS + i + 1, t = T0 + k * SEC + i * MS;
            const char *a = svcs[i % 5], *c = svcs[(i + 1) % 5];
            b[i] = span(a, tr, 1, 0, CN_KIND_CLIENT, "call", t, (i % 50 + 1) * MS, 0);
            b[i + 1] = span(c, tr, 2, 1, CN_KIND_SERVER, "call", t, (i % 40 + 1) * MS,
                            i % 10 == 0 ? CN_STATUS_ERROR : 0);
        }
        cn_derive_add_spans(sm->d, b, SMOKE_SPANS, T0 + k * SEC);
    }
    atomic_store(&sm->done, 1);
    return NULL;
}

static void *reader(void *arg)
{
    struct smoke *sm = arg;
    uint64_t q = 0;
    while (!atomic_load(&sm->done) || q < 10) {
        struct cn_derive_red_point *p;
        struct cn_derive_edge *e;
        struct cn_derive_trace *t;
        struct cn_slice *s;
        size_t n;
        struct cn_derive_red_query rq = {
            .service = cn_slice_of("api"), .from_ns = T0, .to_ns = T0 + 300 * SEC};
        int rc = cn_derive_red(sm->d, &p, &n, &rq);
        assert_true(rc == 0 || rc == CN_ENOENT);
        free(p);
        struct cn_derive_edge_query eq = {.from_ns = T0, .to_ns = T0 + 300 * SEC};
        assert_int_equal(cn_derive_edges(sm->d, &e, &n, &eq), 0);
        free(e);
        assert_int_equal(cn_derive_traces(sm->d, &t, &n, T0, T0 + 300 * SEC, 20), 0);
        free(t);
        assert_int_equal(cn_derive_services(sm->d, &s, &n), 0);
        free(s);
        struct cn_derive_stats st;
        cn_derive_stats(sm->d, &st);
        q++;
    }
    return NULL;
}

static void threads_smoke(void **state)
{
    (void)state;
    struct smoke sm = {.d = derive_with(NULL)};
    atomic_init(&sm.done, 0);
    pthread_t w, r[3];
    for (int i = 0; i < 3; i++)
        assert_int_equal(pthread_create(&r[i], NULL, reader, &sm), 0);
    assert_int_equal(pthread_create(&w, NULL, writer, &sm), 0);
    pthread_join(w, NULL);
    for (int i = 0; i < 3; i++)
        pthread_join(r[i], NULL);
    struct cn_derive_stats st = stats_of(sm.d);
    assert_int_equal(st.spans, SMOKE_BATCHES * SMOKE_SPANS);
    assert_int_equal(st.pairs, SMOKE_BATCHES * SMOKE_SPANS / 2);
    assert_int_equal(st.traces, SMOKE_BATCHES * SMOKE_SPANS / 2);
    size_t n;
    struct cn_derive_edge *e = edges_of(sm.d, &n, T0, T0 + 300 * SEC);
    uint64_t total = 0;
    for (size_t i = 0; i < n; i++)
        total += e[i].count;
    assert_int_equal(total, SMOKE_BATCHES * SMOKE_SPANS / 2);
    free(e);
    cn_derive_free(sm.d);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(red_counts_quantiles_and_steps),
        cmocka_unit_test(red_kinds_configurable),
        cmocka_unit_test(red_ring_drops_old_buckets),
        cmocka_unit_test(red_memory_budget),
        cmocka_unit_test(edges_pairs_in_any_order),
        cmocka_unit_test(edges_window_expiry),
        cmocka_unit_test(edges_uninstrumented_peers),
        cmocka_unit_test(edges_producer_consumer),
        cmocka_unit_test(edges_self_duplicates_and_cap),
        cmocka_unit_test(edges_limits),
        cmocka_unit_test(edges_around_a_service),
        cmocka_unit_test(edges_batched_as_one_by_one),
        cmocka_unit_test(rollups_same_answers),
        cmocka_unit_test(rollups_built_when_idle),
        cmocka_unit_test(summaries_across_batches),
        cmocka_unit_test(summaries_evicted_at_cap),
        cmocka_unit_test(summaries_span_counts),
        cmocka_unit_test(summaries_by_time_range),
        cmocka_unit_test(summaries_time_blocks),
        cmocka_unit_test(names_services_and_limits),
        cmocka_unit_test(span_names_every_kind_capped),
        cmocka_unit_test(bad_options),
        cmocka_unit_test(odd_spans),
        cmocka_unit_test(threads_smoke),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
