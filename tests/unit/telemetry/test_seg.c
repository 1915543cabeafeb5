#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "base/buf.h"
#include "base/log.h"
#include "telemetry/otlp-pb.h"
#include "telemetry/seg.h"
#include "../../common/tmpdir.h"

#include <fcntl.h>
#include <math.h>
#include <pthread.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static char dir[256];
static char path[512];

static int setup(void **state)
{
    (void)state;
    snprintf(dir, sizeof(dir), "/tmp/cairn-test-seg-XXXXXX");
    if (!mkdtemp(dir))
        return -1;
    snprintf(path, sizeof(path), "%s/1.seg", dir);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    cn_test_remove_dir(dir);
    return 0;
}

/* ---- deterministic randomness ------------------------------------------------------------ */

struct rng {
    uint64_t s;
};

static uint64_t rnd(struct rng *r)
{
    r->s ^= r->s << 13;
    r->s ^= r->s >> 7;
    r->s ^= r->s << 17;
    return r->s * 0x2545F4914F6CDD1Dull;
}

static uint32_t rndn(struct rng *r, uint32_t n)
{
    return (uint32_t)(rnd(r) % n);
}

static void rnd_bytes(struct rng *r, uint8_t *dst, size_t n)
{
    for (size_t i = 0; i < n; i++)
        dst[i] = (uint8_t)rnd(r);
    if (cn_id_is_zero(dst, n))
        dst[0] = 1;
}

/* ---- building records by hand ------------------------------------------------------------ */

static struct cn_slice S(struct cn_arena *a, const char *s) {
    return cn_arena_dup(a, s, strlen(s));
}

static struct cn_val
vstr(struct cn_arena *a, const char *s)
{
    struct cn_val v = {.type = CN_VAL_STR};
    v.u.s = S(a, s);
    return v;
}

static struct cn_val vint(int64_t i)
{
    struct cn_val v = {.type = CN_VAL_INT};
    v.u.i = i;
    return v;
}

static struct cn_val vdbl(double d)
{
    struct cn_val v = {.type = CN_VAL_DOUBLE};
    v.u.d = d;
    return v;
}

static struct cn_val vbool(int b)
{
    struct cn_val v = {.type = CN_VAL_BOOL};
    v.u.b = b;
    return v;
}

static struct cn_val vraw(struct cn_arena *a, uint8_t type, const void *p, size_t n)
{
    struct cn_val v = {.type = type};
    v.u.s = cn_arena_dup(a, p, n);
    return v;
}

/* Every value type, with edge values. */
static struct cn_kvs all_types(struct cn_arena *a, int variant)
{
    struct cn_kvs k = {0};
    k.num = 12;
    k.items = cn_arena_calloc(a, k.num, sizeof(*k.items));
    k.dropped = (uint32_t)variant;
    static const uint8_t bytes[] = {0, 1, 2, 0xff, 0, 'x'};
    k.items[0] = (struct cn_kv){S(a, "s"), vstr(a, variant % 2 ? "odd" : "even")};
    k.items[1] = (struct cn_kv){S(a, "empty.string"), vstr(a, "")};
    k.items[2] = (struct cn_kv){S(a, "b"), vbool(variant % 3 == 0)};
    k.items[3] = (struct cn_kv){S(a, "i.min"), vint(INT64_MIN)};
    k.items[4] = (struct cn_kv){S(a, "i.max"), vint(INT64_MAX - variant)};
    k.items[5] = (struct cn_kv){S(a, "i.neg"), vint(-1000 * (variant + 1))};
    k.items[6] = (struct cn_kv){S(a, "d"), vdbl(variant % 2 ? -0.0 : 3.25e-300)};
    k.items[7] = (struct cn_kv){S(a, "d.nan"), vdbl(variant % 2 ? NAN : INFINITY)};
    k.items[8] = (struct cn_kv){S(a, "bytes"), vraw(a, CN_VAL_BYTES, bytes, sizeof(bytes))};
    const char *arr =
        "{\"arrayValue\":{\"values\":[{\"stringValue\":\"a\"},{\"intValue\":\"1\"}]}}";
    k.items[9] = (struct cn_kv){S(a, "arr"), vraw(a, CN_VAL_ARRAY, arr, strlen(arr))};
    const char *kvl = "{\"kvlistValue\":{\"values\":[{\"key\":\"k\",\"value\":{}}]}}";
    k.items[10] = (struct cn_kv){S(a, "kvl"), vraw(a, CN_VAL_KVLIST, kvl, strlen(kvl))};
    k.items[11] = (struct cn_kv){S(a, "nothing"), (struct cn_val){.type = CN_VAL_EMPTY}};
    /* The same key with another type in some rows. */
    if (variant % 4 == 1)
        k.items[0].val = vint(variant);
    return k;
}

static struct cn_kvs one_attr(struct cn_arena *a, const char *key, const char *val)
{
    struct cn_kvs k = {0};
    k.num = 1;
    k.items = cn_arena_calloc(a, 1, sizeof(*k.items));
    k.items[0] = (struct cn_kv){S(a, key), vstr(a, val)};
    return k;
}

static struct cn_resource *resource(struct cn_arena *a, const char *service, int n)
{
    struct cn_resource *r = cn_arena_calloc(a, 1, sizeof(*r));
    r->service = S(a, service);
    r->schema_url = S(a, n % 2 ? "https://opentelemetry.io/schemas/1.24.0" : "");
    r->attrs.num = 2;
    r->attrs.items = cn_arena_calloc(a, 2, sizeof(*r->attrs.items));
    r->attrs.items[0] = (struct cn_kv){S(a, "service.name"), vstr(a, service)};
    r->attrs.items[1] = (struct cn_kv){S(a, "host.index"), vint(n)};
    r->attrs.dropped = (uint32_t)n;
    return r;
}

static struct cn_scope *scope(struct cn_arena *a, const char *name, const char *version)
{
    struct cn_scope *s = cn_arena_calloc(a, 1, sizeof(*s));
    s->name = S(a, name);
    s->version = S(a, version);
    if (version[0])
        s->attrs = one_attr(a, "scope.attr", version);
    return s;
}

/* ---- comparing records ------------------------------------------------------------------- */

static int val_eq(const struct cn_val *a, const struct cn_val *b)
{
    if (a->type != b->type)
        return 0;
    switch (a->type) {
    case CN_VAL_EMPTY:
        return 1;
    case CN_VAL_BOOL:
        return (a->u.b != 0) == (b->u.b != 0);
    case CN_VAL_INT:
        return a->u.i == b->u.i;
    case CN_VAL_DOUBLE:
        return memcmp(&a->u.d, &b->u.d, sizeof(double)) == 0;
    default:
        return cn_slice_eq(a->u.s, b->u.s);
    }
}

static int kvs_eq(const struct cn_kvs *a, const struct cn_kvs *b)
{
    if (a->num != b->num || a->dropped != b->dropped)
        return 0;
    for (uint32_t i = 0; i < a->num; i++)
        if (!cn_slice_eq(a->items[i].key, b->items[i].key) ||
            !val_eq(&a->items[i].val, &b->items[i].val))
            return 0;
    return 1;
}

static int res_eq(const struct cn_resource *a, const struct cn_resource *b)
{
    return cn_slice_eq(a->service, b->service) && cn_slice_eq(a->schema_url, b->schema_url) &&
           kvs_eq(&a->attrs, &b->attrs);
}

static int scope_eq(const struct cn_scope *a, const struct cn_scope *b)
{
    return cn_slice_eq(a->name, b->name) && cn_slice_eq(a->version, b->version) &&
           kvs_eq(&a->attrs, &b->attrs);
}

static int span_eq(const struct cn_span *a, const struct cn_span *b)
{
    if (memcmp(a->trace_id, b->trace_id, 16) || memcmp(a->span_id, b->span_id, 8) ||
        memcmp(a->parent_id, b->parent_id, 8) || !cn_slice_eq(a->trace_state, b->trace_state) ||
        !cn_slice_eq(a->name, b->name) || a->kind != b->kind || a->status_code != b->status_code ||
        !cn_slice_eq(a->status_message, b->status_message) || a->flags != b->flags ||
        a->start_ns != b->start_ns || a->end_ns != b->end_ns || !kvs_eq(&a->attrs, &b->attrs) ||
        a->num_events != b->num_events || a->dropped_events != b->dropped_events ||
        a->num_links != b->num_links || a->dropped_links != b->dropped_links ||
        !res_eq(a->resource, b->resource) || !scope_eq(a->scope, b->scope))
        return 0;
    for (uint32_t i = 0; i < a->num_events; i++)
        if (a->events[i].time_ns != b->events[i].time_ns ||
            !cn_slice_eq(a->events[i].name, b->events[i].name) ||
            !kvs_eq(&a->events[i].attrs, &b->events[i].attrs))
            return 0;
    for (uint32_t i = 0; i < a->num_links; i++)
        if (memcmp(a->links[i].trace_id, b->links[i].trace_id, 16) ||
            memcmp(a->links[i].span_id, b->links[i].span_id, 8) ||
            !cn_slice_eq(a->links[i].trace_state, b->links[i].trace_state) ||
            a->links[i].flags != b->links[i].flags ||
            !kvs_eq(&a->links[i].attrs, &b->links[i].attrs))
            return 0;
    return 1;
}

static int log_eq(const struct cn_log *a, const struct cn_log *b)
{
    return a->time_ns == b->time_ns && a->observed_ns == b->observed_ns &&
           a->severity_number == b->severity_number &&
           cn_slice_eq(a->severity_text, b->severity_text) && val_eq(&a->body, &b->body) &&
           kvs_eq(&a->attrs, &b->attrs) && a->flags == b->flags &&
           memcmp(a->trace_id, b->trace_id, 16) == 0 && memcmp(a->span_id, b->span_id, 8) == 0 &&
           cn_slice_eq(a->event_name, b->event_name) && res_eq(a->resource, b->resource) &&
           scope_eq(a->scope, b->scope);
}

/* ---- a hand-made span set with every field used ------------------------------------------ */

#define NTRACES 40

struct spanset {
    struct cn_arena a;
    struct cn_span *spans;
    const struct cn_span **ptrs;
    size_t n;
    uint8_t tids[NTRACES][16];
};

static void spanset_build(struct spanset *ss, size_t n)
{
    struct rng r = {42};
    struct cn_arena *a = &ss->a;
    cn_arena_init(a, 1 << 20, SIZE_MAX);
    ss->n = n;
    ss->spans = cn_arena_calloc(a, n, sizeof(*ss->spans));
    ss->ptrs = cn_arena_calloc(a, n, sizeof(*ss->ptrs));
    for (int t = 0; t < NTRACES; t++)
        rnd_bytes(&r, ss->tids[t], 16);
    static const char *const services[] = {"frontend", "cart", "checkout", "payment"};
    struct cn_resource *res[8];
    for (int i = 0; i < 8; i++)
        res[i] = resource(a, services[i % 4], i / 4); /* two per service */
    /* Equal content behind another pointer: must come back equal too. */
    struct cn_resource *twin = resource(a, "cart", 0);
    struct cn_scope *scopes[3] = {scope(a, "io.opentelemetry.http", "1.2.0"),
                                  scope(a, "manual", ""), scope(a, "", "")};
    uint64_t base = 1700000000000000000ull;
    for (size_t i = 0; i < n; i++) {
        struct cn_span *s = &ss->spans[i];
        int t = (int)(i % NTRACES);
        memcpy(s->trace_id, ss->tids[t], 16);
        rnd_bytes(&r, s->span_id, 8);
        if (i >= NTRACES) { /* parent: the span of the same trace NTRACES before (or remote) */
            if (i % 7 == 0)
                rnd_bytes(&r, s->parent_id, 8);
            else
                memcpy(s->parent_id, ss->spans[i - NTRACES].span_id, 8);
        }
        s->trace_state = i % 5 == 0 ? S(a, "rojo=00f067aa0ba902b7,congo=t61rcWkgMzE") : S(a, "");
        char name[32];
        snprintf(name, sizeof(name), "op-%zu", i % 6);
        s->name = S(a, name);
        s->kind = (uint8_t)(i % 6);
        s->status_code = (uint8_t)(i % 3);
        s->status_message =
            s->status_code == CN_STATUS_ERROR ? S(a, "boom: Connection refused") : S(a, "");
        s->flags = i % 2 ? 0x301 : 0x100;
        s->start_ns = base + i * 1000003 + (i % 3 ? 0 : 17);
        s->end_ns = s->start_ns + (i % 4 ? 123456789 * (i % 5) : 0);
        if (i % 9 == 0)
            s->attrs = all_types(a, (int)i);
        else
            s->attrs = one_attr(a, "http.route", i % 2 ? "/api/cart" : "/api/products/{id}");
        s->dropped_events = (uint32_t)(i % 2);
        s->num_events = (uint32_t)(i % 3);
        s->events = cn_arena_calloc(a, s->num_events + 1, sizeof(*s->events));
        for (uint32_t k = 0; k < s->num_events; k++) {
            s->events[k].time_ns = s->start_ns + k * 1000 - (k == 1 ? 5000 : 0);
            s->events[k].name = S(a, k ? "exception" : "message");
            s->events[k].attrs = k ? all_types(a, (int)(i + k)) : one_attr(a, "m", "sent");
        }
        s->num_links = i % 4 == 3 ? 2 : 0;
        s->dropped_links = (uint32_t)(i % 4 == 2);
        s->links = cn_arena_calloc(a, s->num_links + 1, sizeof(*s->links));
        for (uint32_t k = 0; k < s->num_links; k++) {
            struct cn_link *l = &s->links[k];
            rnd_bytes(&r, l->trace_id, 16);
            rnd_bytes(&r, l->span_id, 8);
            l->trace_state = S(a, k ? "a=b" : "");
            l->attrs = k ? one_attr(a, "link.kind", "follows") : (struct cn_kvs){0};
            l->flags = k;
        }
        s->resource = i % 11 == 5 ? twin : res[i % 8];
        s->scope = scopes[i % 3];
        ss->ptrs[i] = s;
    }
}

static void spanset_release(struct spanset *ss)
{
    cn_arena_release(&ss->a);
}

/* Expected spans of trace t. */
static size_t spans_of(const struct spanset *ss, const uint8_t *tid, const struct cn_span **out)
{
    size_t k = 0;
    for (size_t i = 0; i < ss->n; i++)
        if (memcmp(ss->spans[i].trace_id, tid, 16) == 0)
            out[k++] = &ss->spans[i];
    return k;
}

static const struct cn_span *find_span(const struct spanset *ss, const struct cn_span *s)
{
    for (size_t i = 0; i < ss->n; i++)
        if (memcmp(ss->spans[i].span_id, s->span_id, 8) == 0)
            return &ss->spans[i];
    return NULL;
}

struct collect {
    const struct spanset *ss;
    size_t n;
    size_t matched;
    uint64_t last_row;
    uint8_t *seen; /* by input index */
    uint64_t *starts;
};

static int collect_span(void *ctx, const struct cn_span *s, const struct cn_log *l)
{
    struct collect *c = ctx;
    assert_null(l);
    const struct cn_span *want = find_span(c->ss, s);
    assert_non_null(want);
    assert_true(span_eq(s, want));
    size_t idx = (size_t)(want - c->ss->spans);
    assert_int_equal(c->seen[idx], 0);
    c->seen[idx] = 1;
    if (c->starts)
        c->starts[c->n] = s->start_ns;
    c->n++;
    return 0;
}

static struct cn_seg *open_ok(const char *p)
{
    struct cn_seg *seg = NULL;
    char err[256];
    int rc = cn_seg_open(&seg, p, err, sizeof(err));
    if (rc)
        fail_msg("open: %s", err);
    return seg;
}

static void write_spans(const struct spanset *ss, uint32_t group_rows, struct cn_seg_info *info)
{
    struct cn_seg_write_opts o = {.group_rows = group_rows};
    char err[256];
    int rc = cn_seg_write_spans_opts(path, ss->ptrs, ss->n, &o, info, err, sizeof(err));
    if (rc)
        fail_msg("write: %s", err);
}

static void check_all_traces(struct cn_seg *seg, const struct spanset *ss)
{
    const struct cn_span **want = malloc(ss->n * sizeof(*want));
    for (int t = 0; t < NTRACES; t++) {
        struct cn_tel_batch b;
        cn_tel_batch_init(&b, 64 << 20);
        assert_int_equal(cn_seg_may_contain_trace(seg, ss->tids[t]), 1);
        assert_int_equal(cn_seg_trace(seg, ss->tids[t], &b), 0);
        size_t nw = spans_of(ss, ss->tids[t], want);
        assert_int_equal(b.num_spans, nw);
        for (size_t i = 0; i < b.num_spans; i++) {
            const struct cn_span *w = find_span(ss, &b.spans[i]);
            assert_non_null(w);
            assert_true(span_eq(&b.spans[i], w));
            /* Strings live in the batch's arena, not in the segment's buffers. */
            assert_true(b.spans[i].name.ptr[b.spans[i].name.len] == '\0');
        }
        cn_tel_batch_release(&b);
    }
    free(want);
}

static void check_scan_all(struct cn_seg *seg, const struct spanset *ss)
{
    struct collect c = {.ss = ss, .seen = calloc(ss->n, 1)};
    assert_int_equal(cn_seg_scan(seg, 0, UINT64_MAX, NULL, collect_span, &c), 0);
    assert_int_equal(c.n, ss->n);
    free(c.seen);
}

/* ---- filtered scans (cn_seg_scan_where) -------------------------------------------------- */

struct where_pred {
    struct cn_slice service;
    uint64_t min_dur;
};

static uint64_t dur_of(const struct cn_span *s)
{
    return s->end_ns >= s->start_ns ? s->end_ns - s->start_ns : 0;
}

static const struct where_pred *where_want;

static int where_check(void *ctx, const struct cn_seg_row *r)
{
    (void)ctx;
    return (!where_want->service.ptr || cn_slice_eq(r->service, where_want->service)) &&
           r->duration_ns >= where_want->min_dur;
}

/* Runs a filtered scan; checks that no row the filter should keep is lost, and returns how
 * many rows came back (with pred: exactly the rows it keeps). */
static size_t scan_where(struct cn_seg *seg, const struct spanset *ss,
                         const struct cn_seg_filter *f, int with_pred, size_t *out_want)
{
    struct collect c = {.ss = ss, .seen = calloc(ss->n, 1)};
    struct where_pred w = {f->service, f->min_stat};
    where_want = &w;
    assert_int_equal(
        cn_seg_scan_where(seg, 0, UINT64_MAX, f, with_pred ? where_check : NULL, collect_span, &c),
        0);
    size_t want = 0;
    for (size_t i = 0; i < ss->n; i++) {
        const struct cn_span *s = &ss->spans[i];
        int keep = (!f->service.ptr || cn_slice_eq(s->resource->service, f->service)) &&
                   dur_of(s) >= f->min_stat && dur_of(s) <= f->max_stat;
        want += (size_t)keep;
        if (keep)
            assert_int_equal(c.seen[i], 1); /* never lost to a skipped group */
        else if (with_pred && f->max_stat == UINT64_MAX)
            assert_int_equal(c.seen[i], 0);
    }
    free(c.seen);
    *out_want = want;
    return c.n;
}

static void scan_filtered(void **state)
{
    (void)state;
    struct spanset ss;
    spanset_build(&ss, 2000);
    write_spans(&ss, 64, NULL); /* 32 groups, sorted by service: about 8 per service */
    struct cn_seg *seg = open_ok(path);
    size_t want;
    /* No filter: everything. */
    assert_int_equal(
        scan_where(seg, &ss, &(struct cn_seg_filter){{NULL, 0}, 0, UINT64_MAX}, 0, &want), ss.n);
    assert_int_equal(want, ss.n);
    /* A service: the groups without it are skipped (at most the two groups at its edges
     * hold other services' rows), none of its rows is lost. */
    struct cn_seg_filter f = {cn_slice_of("payment"), 0, UINT64_MAX};
    size_t got = scan_where(seg, &ss, &f, 0, &want);
    assert_true(want > 0 && got >= want && got <= want + 2 * 64);
    assert_int_equal(scan_where(seg, &ss, &f, 1, &want), want); /* pred: exactly those */
    f.service = cn_slice_of("nobody");
    assert_int_equal(scan_where(seg, &ss, &f, 0, &want), 0);
    assert_int_equal(want, 0);
    /* Duration bounds from the footer's per-group min/max: nothing lost at the edges. */
    f = (struct cn_seg_filter){{NULL, 0}, 493827156, UINT64_MAX}; /* the longest duration */
    got = scan_where(seg, &ss, &f, 1, &want);
    assert_true(want > 0 && got == want);
    f.min_stat = 493827157; /* longer than every span: every group skipped */
    assert_int_equal(scan_where(seg, &ss, &f, 0, &want), 0);
    f = (struct cn_seg_filter){cn_slice_of("cart"), 0, 0}; /* zero durations of cart */
    got = scan_where(seg, &ss, &f, 0, &want);
    assert_true(want > 0 && got >= want && got < ss.n);
    cn_seg_close(seg);
    spanset_release(&ss);
}

static void spans_roundtrip(void **state)
{
    (void)state;
    struct spanset ss;
    spanset_build(&ss, 400);
    uint32_t sizes[] = {0, 7, 64};
    for (size_t k = 0; k < CN_ARRAY_LEN(sizes); k++) {
        struct cn_seg_info info;
        write_spans(&ss, sizes[k], &info);
        uint32_t gr = sizes[k] ? sizes[k] : CN_SEG_GROUP_ROWS;
        assert_int_equal(info.rows, 400);
        assert_int_equal(info.num_traces, NTRACES);
        assert_int_equal(info.num_groups, (400 + gr - 1) / gr);
        assert_int_equal(info.min_ns, ss.spans[0].start_ns);
        assert_int_equal(info.max_ns, ss.spans[399].start_ns);
        struct stat st;
        assert_int_equal(stat(path, &st), 0);
        assert_int_equal(info.bytes, (uint64_t)st.st_size);
        char tmp[600];
        snprintf(tmp, sizeof(tmp), "%s.tmp", path);
        assert_int_equal(access(tmp, F_OK), -1);

        struct cn_seg *seg = open_ok(path);
        const struct cn_seg_info *ri = cn_seg_info(seg);
        assert_int_equal(ri->rows, info.rows);
        assert_int_equal(ri->bytes, info.bytes);
        assert_int_equal(ri->num_groups, info.num_groups);
        assert_int_equal(ri->created_ns, info.created_ns);
        assert_int_equal(ri->kind, CN_SEG_SPANS);
        check_all_traces(seg, &ss);
        check_scan_all(seg, &ss);
        struct cn_seg_check chk;
        assert_int_equal(cn_seg_check(seg, &chk), 0);
        assert_string_equal(chk.msg, "");
        assert_int_equal(chk.rows, 400);
        assert_int_equal(chk.bad_blocks, 0);
        assert_int_equal(cn_seg_corrupt_blocks(seg), 0);
        cn_seg_close(seg);
    }
    /* Uncompressed blocks read the same. */
    struct cn_seg_write_opts o = {.group_rows = 50, .uncompressed = 1};
    char err[256];
    assert_int_equal(cn_seg_write_spans_opts(path, ss.ptrs, ss.n, &o, NULL, err, sizeof(err)), 0);
    struct cn_seg *seg = open_ok(path);
    struct cn_seg_block b;
    for (size_t i = 0; cn_seg_block(seg, i, &b) == 0; i++) {
        assert_int_equal(b.codec, 0);
        assert_int_equal(b.raw + 8, b.len);
    }
    check_all_traces(seg, &ss);
    check_scan_all(seg, &ss);
    cn_seg_close(seg);
    spanset_release(&ss);
}

/* Rows come out sorted by (service, name, start), across row groups. */
static struct cn_slice last_service, last_name;
static uint64_t last_start;
static int sorted_ok;

static int check_order(void *ctx, const struct cn_span *s, const struct cn_log *l)
{
    (void)ctx;
    (void)l;
    struct cn_slice svc = s->resource->service;
    int c = 0;
    if (last_service.ptr) {
        size_t n = CN_MIN(last_service.len, svc.len);
        c = memcmp(last_service.ptr, svc.ptr, n);
        if (c == 0)
            c = last_service.len < svc.len ? -1 : last_service.len > svc.len;
        if (c == 0) {
            n = CN_MIN(last_name.len, s->name.len);
            c = memcmp(last_name.ptr, s->name.ptr, n);
            if (c == 0)
                c = last_name.len < s->name.len ? -1 : last_name.len > s->name.len;
        }
        if (c > 0 || (c == 0 && last_start > s->start_ns))
            sorted_ok = 0;
    }
    /* The record lives until we return: keep copies. */
    static char sbuf[64], nbuf[64];
    memcpy(sbuf, svc.ptr, svc.len);
    memcpy(nbuf, s->name.ptr, s->name.len);
    last_service = (struct cn_slice){sbuf, svc.len};
    last_name = (struct cn_slice){nbuf, s->name.len};
    last_start = s->start_ns;
    return 0;
}

/* Rows of one (service, name) that arrive as several ascending runs of start times, runs 0
 * and 2 (and 1 and 3) with the same times: they come out by start time, equal times in input
 * order (span IDs here are the input index + 1, big-endian). */
struct run_check {
    uint64_t last_start, last_idx;
    size_t rows;
    int ok;
};

static int check_time_runs(void *ctx, const struct cn_span *s, const struct cn_log *l)
{
    (void)l;
    struct run_check *c = ctx;
    uint64_t idx = 0;
    for (int i = 0; i < 8; i++)
        idx = idx << 8 | s->span_id[i];
    if (c->rows &&
        (s->start_ns < c->last_start || (s->start_ns == c->last_start && idx <= c->last_idx)))
        c->ok = 0;
    c->last_start = s->start_ns;
    c->last_idx = idx;
    c->rows++;
    return 0;
}

static void time_runs_order(void **state)
{
    (void)state;
    enum { RUNS = 4, PER_RUN = 750, N = RUNS * PER_RUN };
    struct cn_arena a;
    cn_arena_init(&a, 1 << 20, SIZE_MAX);
    struct cn_resource res = {.service = S(&a, "svc")};
    struct cn_scope scope = {.name = S(&a, "lib")};
    struct cn_span *spans = calloc(N, sizeof(*spans));
    const struct cn_span **ptrs = malloc(N * sizeof(*ptrs));
    for (size_t i = 0; i < N; i++) {
        size_t run = i / PER_RUN, j = i % PER_RUN;
        struct cn_span *sp = &spans[i];
        for (int b = 0; b < 8; b++) {
            sp->span_id[7 - b] = (uint8_t)((i + 1) >> (8 * b));
            sp->trace_id[15 - b] = (uint8_t)((i + 1) >> (8 * b));
        }
        sp->name = S(&a, "op");
        sp->start_ns = 1700000000000000000ull + (j * 2 + run % 2) * 1000;
        sp->end_ns = sp->start_ns + 500;
        sp->resource = &res;
        sp->scope = &scope;
        ptrs[i] = sp;
    }
    struct cn_seg_info info;
    char err[256];
    int rc = cn_seg_write_spans(path, ptrs, N, &info, err, sizeof(err));
    if (rc)
        fail_msg("write: %s", err);
    struct cn_seg *seg = open_ok(path);
    struct run_check c = {.ok = 1};
    assert_int_equal(cn_seg_scan(seg, 0, UINT64_MAX, NULL, check_time_runs, &c), 0);
    assert_int_equal(c.rows, N);
    assert_true(c.ok);
    cn_seg_close(seg);
    free(ptrs);
    free(spans);
    cn_arena_release(&a);
}

static int count_rows(void *ctx, const struct cn_span *s, const struct cn_log *l)
{
    (void)s;
    (void)l;
    (*(size_t *)ctx)++;
    return 0;
}

static void row_groups(void **state)
{
    (void)state;
    struct spanset ss;
    spanset_build(&ss, 9000);
    struct cn_seg_info info;
    write_spans(&ss, 0, &info);
    assert_int_equal(info.num_groups, 3); /* 4096 + 4096 + 808 */
    struct cn_seg *seg = open_ok(path);
    last_service = (struct cn_slice){NULL, 0};
    sorted_ok = 1;
    assert_int_equal(cn_seg_scan(seg, 0, UINT64_MAX, NULL, check_order, NULL), 0);
    assert_true(sorted_ok);
    check_all_traces(seg, &ss);
    /* Every group has its own blocks. */
    struct cn_seg_block b;
    int groups_seen = 0;
    for (size_t i = 0; cn_seg_block(seg, i, &b) == 0; i++)
        if (strncmp(b.name, "group:", 6) == 0 && strcmp(strchr(b.name, '/'), "/trace") == 0)
            groups_seen++;
    assert_int_equal(groups_seen, 3);
    /* A callback's nonzero value stops the scan and comes back. */
    size_t n = 0;
    assert_int_equal(cn_seg_scan(seg, 0, UINT64_MAX, NULL, count_rows, &n), 0);
    assert_int_equal(n, 9000);
    cn_seg_close(seg);
    spanset_release(&ss);
}

/* Columns the same in every row of a group (after a small header or table) are stored as
 * their head and the repeated byte (the run codec, 2), and read back the same; the others
 * are not. */
static void run_blocks(void **state)
{
    (void)state;
    struct spanset ss;
    spanset_build(&ss, 3000);
    for (size_t i = 0; i < ss.n; i++) {
        struct cn_span *s = &ss.spans[i];
        s->flags = 1; /* sampled, in every row */
        s->trace_state = (struct cn_slice){"", 0};
        s->num_links = s->dropped_links = 0;
    }
    struct cn_seg_info info;
    write_spans(&ss, 1024, &info);
    struct cn_seg *seg = open_ok(path);
    struct cn_seg_block b;
    int runs = 0, flags = 0, links = 0;
    for (size_t i = 0; cn_seg_block(seg, i, &b) == 0; i++) {
        if (b.codec != 2) /* the run codec */
            continue;
        runs++;
        assert_true(b.len - 8 <= 1 + 64 && b.raw >= 128);
        flags += strstr(b.name, "/flags") != NULL;
        links += strstr(b.name, "/links") != NULL;
        assert_null(strstr(b.name, "/attributes"));
        assert_null(strstr(b.name, "/kind"));
    }
    assert_int_equal(flags, 3);
    assert_int_equal(links, 3);
    assert_true(runs >= 9); /* trace state too */
    check_all_traces(seg, &ss);
    check_scan_all(seg, &ss);
    struct cn_seg_check chk;
    assert_int_equal(cn_seg_check(seg, &chk), 0);
    assert_int_equal(chk.bad_blocks, 0);
    cn_seg_close(seg);
    spanset_release(&ss);
}

static void *scan_on_a_thread(void *seg)
{
    size_t n = 0;
    int rc = cn_seg_scan(seg, 0, UINT64_MAX, NULL, count_rows, &n);
    return (void *)(uintptr_t)(rc == 0 && n == 300);
}

/* Reading many segments leaves one decompression context (~94 KiB) per thread, not one in
 * each segment read for as long as it stays open; a thread's goes when it exits. */
static void dctx_per_thread(void **state)
{
    (void)state;
    struct spanset ss;
    spanset_build(&ss, 300);
    struct cn_seg_info info;
    write_spans(&ss, 64, &info);
    enum { NSEGS = 40 };
    struct cn_seg *segs[NSEGS];
    size_t before = cn_seg_dctx_live();
    for (int i = 0; i < NSEGS; i++) {
        segs[i] = open_ok(path);
        size_t n = 0;
        assert_int_equal(cn_seg_scan(segs[i], 0, UINT64_MAX, NULL, count_rows, &n), 0);
        assert_int_equal(n, 300);
        struct cn_tel_batch b;
        cn_tel_batch_init(&b, 64 << 20);
        assert_int_equal(cn_seg_trace(segs[i], ss.tids[i % NTRACES], &b), 0);
        assert_true(b.num_spans > 0);
        cn_tel_batch_release(&b);
    }
    assert_in_range(cn_seg_dctx_live(), before, before + 1);
    pthread_t t;
    void *ok = NULL;
    assert_int_equal(pthread_create(&t, NULL, scan_on_a_thread, segs[NSEGS - 1]), 0);
    assert_int_equal(pthread_join(t, &ok), 0);
    assert_non_null(ok);
    assert_in_range(cn_seg_dctx_live(), before, before + 1);
    for (int i = 0; i < NSEGS; i++)
        cn_seg_close(segs[i]);
    spanset_release(&ss);
}

/* The footers' tables of open segments are kept within the footer cache's budget: read at
 * open, dropped least recently used first when no read uses them, read and checked again by
 * the next read; a footer damaged on disk meanwhile fails that read (counted, logged once),
 * never a wrong answer. */
static void flip_byte(const char *p, uint64_t off);

static void footer_cache_budget(void **state)
{
    (void)state;
    struct spanset ss;
    spanset_build(&ss, 3000);
    write_spans(&ss, 64, NULL);
    struct cn_seg_cache_stats st, st0;
    cn_seg_footer_cache_stats(&st0);
    assert_int_equal(st0.bytes, 0); /* no segment open */
    enum { NSEGS = 8 };
    struct cn_seg *segs[NSEGS];
    segs[0] = open_ok(path);
    cn_seg_footer_cache_stats(&st);
    size_t one = st.bytes; /* read at open */
    assert_true(one > 0);
    for (int i = 1; i < NSEGS; i++)
        segs[i] = open_ok(path);
    cn_seg_footer_cache_stats(&st);
    assert_int_equal(st.bytes, NSEGS * one);
    /* Room for three: the three opened last stay. */
    cn_seg_set_footer_cache(3 * one);
    cn_seg_footer_cache_stats(&st);
    assert_int_equal(st.bytes, 3 * one);
    assert_int_equal(st.evictions, st0.evictions + NSEGS - 3);
    for (int i = 0; i < NSEGS; i++) {
        size_t n = 0;
        assert_int_equal(cn_seg_scan(segs[i], 0, UINT64_MAX, NULL, count_rows, &n), 0);
        assert_int_equal(n, 3000);
        struct cn_tel_batch b;
        cn_tel_batch_init(&b, 64u << 20);
        assert_int_equal(cn_seg_trace(segs[i], ss.tids[i], &b), 0);
        assert_int_equal((int)b.num_spans, 3000 / NTRACES);
        cn_tel_batch_release(&b);
        cn_seg_footer_cache_stats(&st);
        assert_int_equal(st.bytes, 3 * one);
    }
    /* Each was read again (the least recently used dropped at the start, then each one three
     * reads after its own). */
    assert_int_equal(st.loads, st0.loads + NSEGS);
    assert_int_equal(st.evictions, st0.evictions + (NSEGS - 3) + NSEGS);
    /* The edge: a budget of 0 keeps only the tables in use, here none. */
    cn_seg_set_footer_cache(0);
    cn_seg_footer_cache_stats(&st);
    assert_int_equal(st.bytes, 0);
    struct cn_seg_check chk;
    assert_int_equal(cn_seg_check(segs[1], &chk), 0);
    assert_int_equal((int)chk.rows, 3000);
    struct cn_seg_block blk;
    assert_int_equal(cn_seg_block(segs[1], 0, &blk), 0);
    assert_true(blk.len > 0);
    /* The footer damaged on disk while its tables were out: the next read fails, once logged. */
    const struct cn_seg_info *info = cn_seg_info(segs[2]);
    flip_byte(path, info->bytes - CN_SEG_TRAILER - 3);
    size_t n = 0;
    assert_int_equal(cn_seg_scan(segs[2], 0, UINT64_MAX, NULL, count_rows, &n), CN_EIO);
    assert_int_equal(n, 0);
    assert_int_equal((int)cn_seg_corrupt_blocks(segs[2]), 1);
    uint8_t absent[16] = {9, 9, 9};
    assert_int_equal(cn_seg_may_contain_trace(segs[2], absent), 0); /* its bloom still serves */
    assert_int_equal(cn_seg_check(segs[2], &chk), CN_EIO);
    assert_int_equal((int)cn_seg_corrupt_blocks(segs[2]), 1);
    cn_seg_set_footer_cache(CN_SEG_FOOTER_CACHE);
    for (int i = 0; i < NSEGS; i++)
        cn_seg_close(segs[i]);
    cn_seg_footer_cache_stats(&st);
    assert_int_equal(st.bytes, 0);
    assert_int_equal(st.budget, CN_SEG_FOOTER_CACHE);
    spanset_release(&ss);
}

/* The blooms of open segments are kept within the bloom cache's budget: read at their first
 * check, dropped least recently used first, read again when checked after. */
static void bloom_cache_budget(void **state)
{
    (void)state;
    struct spanset ss;
    spanset_build(&ss, 300);
    write_spans(&ss, 64, NULL);
    enum { NSEGS = 12 };
    struct cn_seg *segs[NSEGS];
    for (int i = 0; i < NSEGS; i++)
        segs[i] = open_ok(path);
    struct cn_seg_cache_stats st, st0;
    cn_seg_bloom_cache_stats(&st0);
    assert_int_equal(st0.bytes, 0); /* opening reads none */
    /* One segment's two blooms: their bytes. */
    assert_int_equal(cn_seg_may_contain_trace(segs[0], ss.tids[0]), 1);
    assert_int_equal(cn_seg_may_contain_token(segs[0], "cart"), 1);
    cn_seg_bloom_cache_stats(&st);
    assert_int_equal(st.loads, st0.loads + 2);
    size_t one = st.bytes;
    assert_true(one > 0);
    /* Room for three segments' blooms: the twelve checked keep three in memory. */
    cn_seg_set_bloom_cache(3 * one);
    for (int i = 0; i < NSEGS; i++) {
        assert_int_equal(cn_seg_may_contain_trace(segs[i], ss.tids[i % NTRACES]), 1);
        assert_int_equal(cn_seg_may_contain_token(segs[i], "cart"), 1);
        cn_seg_bloom_cache_stats(&st);
        assert_true(st.bytes <= 3 * one);
    }
    assert_int_equal(st.bytes, 3 * one);
    assert_int_equal(st.loads, st0.loads + 2 * NSEGS);
    assert_int_equal(st.evictions, st0.evictions + 2 * (NSEGS - 3));
    /* The most recent are kept; the first was dropped and is read again, rightly. */
    assert_int_equal(cn_seg_may_contain_token(segs[NSEGS - 1], "cart"), 1);
    cn_seg_bloom_cache_stats(&st0);
    assert_int_equal(st0.loads, st.loads);
    uint8_t absent[16] = {9, 9, 9};
    assert_int_equal(cn_seg_may_contain_trace(segs[0], absent), 0);
    assert_int_equal(cn_seg_may_contain_token(segs[0], "kangaroo"), 0);
    cn_seg_bloom_cache_stats(&st);
    assert_int_equal(st.loads, st0.loads + 2);
    assert_true(st.bytes <= 3 * one);
    /* The edge: a budget of 0 keeps only the bloom being checked. */
    cn_seg_set_bloom_cache(0);
    cn_seg_bloom_cache_stats(&st);
    assert_int_equal(st.bytes, 0);
    assert_int_equal(cn_seg_may_contain_trace(segs[1], ss.tids[1]), 1);
    cn_seg_bloom_cache_stats(&st);
    assert_true(st.bytes > 0 && st.bytes < one);
    assert_int_equal(cn_seg_may_contain_trace(segs[1], absent), 0);
    /* Closing a segment frees its blooms. */
    cn_seg_set_bloom_cache(CN_SEG_BLOOM_CACHE);
    for (int i = 0; i < NSEGS; i++)
        cn_seg_close(segs[i]);
    cn_seg_bloom_cache_stats(&st);
    assert_int_equal(st.bytes, 0);
    assert_int_equal(st.budget, CN_SEG_BLOOM_CACHE);
    spanset_release(&ss);
}

static int stop_at_3(void *ctx, const struct cn_span *s, const struct cn_log *l)
{
    (void)s;
    (void)l;
    return ++*(int *)ctx == 3 ? 77 : 0;
}

static int only_cart(void *ctx, const struct cn_seg_row *row)
{
    (void)ctx;
    return cn_slice_eq(row->service, CN_SLICE_LIT("cart")) && row->duration_ns > 0;
}

static void time_scan_bounds(void **state)
{
    (void)state;
    struct spanset ss;
    spanset_build(&ss, 400);
    write_spans(&ss, 16, NULL);
    struct cn_seg *seg = open_ok(path);
    /* [from, to): the span starting at from is in, the one starting at to is out. */
    uint64_t from = ss.spans[100].start_ns, to = ss.spans[150].start_ns;
    uint64_t starts[400];
    struct collect c = {.ss = &ss, .seen = calloc(ss.n, 1), .starts = starts};
    assert_int_equal(cn_seg_scan(seg, from, to, NULL, collect_span, &c), 0);
    assert_int_equal(c.n, 50);
    for (size_t i = 0; i < ss.n; i++)
        assert_int_equal(c.seen[i], i >= 100 && i < 150);
    free(c.seen);
    /* Empty and inverted ranges. */
    c = (struct collect){.ss = &ss, .seen = calloc(ss.n, 1)};
    assert_int_equal(cn_seg_scan(seg, from, from, NULL, collect_span, &c), 0);
    assert_int_equal(cn_seg_scan(seg, to, from, NULL, collect_span, &c), 0);
    assert_int_equal(
        cn_seg_scan(seg, ss.spans[399].start_ns + 1, UINT64_MAX, NULL, collect_span, &c), 0);
    assert_int_equal(c.n, 0);
    /* A predicate sees cheap columns; only what it keeps is materialised. */
    assert_int_equal(cn_seg_scan(seg, 0, UINT64_MAX, only_cart, collect_span, &c), 0);
    size_t want = 0;
    for (size_t i = 0; i < ss.n; i++)
        want += cn_slice_eq(ss.spans[i].resource->service, CN_SLICE_LIT("cart")) &&
                ss.spans[i].end_ns > ss.spans[i].start_ns;
    assert_true(want > 0);
    assert_int_equal(c.n, want);
    free(c.seen);
    int calls = 0;
    assert_int_equal(cn_seg_scan(seg, 0, UINT64_MAX, NULL, stop_at_3, &calls), 77);
    assert_int_equal(calls, 3);
    cn_seg_close(seg);
    spanset_release(&ss);
}

struct idlist {
    uint8_t ids[4096][16];
    size_t n;
};

static void add_id(void *ctx, const uint8_t id[16])
{
    struct idlist *l = ctx;
    memcpy(l->ids[l->n++], id, 16);
}

static void trace_index_and_bloom(void **state)
{
    (void)state;
    /* 3000 traces of 1 to 5 spans: three index pages. */
    struct cn_arena a;
    cn_arena_init(&a, 1 << 20, SIZE_MAX);
    struct rng r = {7};
    size_t n = 0, cap = 3000 * 5;
    struct cn_span *spans = cn_arena_calloc(&a, cap, sizeof(*spans));
    const struct cn_span **ptrs = cn_arena_calloc(&a, cap, sizeof(*ptrs));
    uint8_t(*tids)[16] = cn_arena_calloc(&a, 3000, 16);
    uint32_t *counts = cn_arena_calloc(&a, 3000, sizeof(*counts));
    struct cn_resource *res = resource(&a, "svc", 0);
    struct cn_scope *sc = scope(&a, "s", "1");
    for (int t = 0; t < 3000; t++) {
        rnd_bytes(&r, tids[t], 16);
        counts[t] = 1 + rndn(&r, 5);
        for (uint32_t k = 0; k < counts[t]; k++, n++) {
            memcpy(spans[n].trace_id, tids[t], 16);
            rnd_bytes(&r, spans[n].span_id, 8);
            spans[n].name = S(&a, k ? "child" : "root");
            spans[n].start_ns = 1000 + rndn(&r, 1000000);
            spans[n].end_ns = spans[n].start_ns + 10;
            spans[n].resource = res;
            spans[n].scope = sc;
            ptrs[n] = &spans[n];
        }
    }
    struct idlist *cbids = calloc(1, sizeof(*cbids));
    struct cn_seg_write_opts o = {.group_rows = 1000, .trace_cb = add_id, .trace_ctx = cbids};
    struct cn_seg_info info;
    char err[256];
    assert_int_equal(cn_seg_write_spans_opts(path, ptrs, n, &o, &info, err, sizeof(err)), 0);
    assert_int_equal(info.num_traces, 3000);
    assert_int_equal(cbids->n, 3000);
    for (size_t i = 1; i < cbids->n; i++)
        assert_true(memcmp(cbids->ids[i - 1], cbids->ids[i], 16) < 0);
    struct cn_seg *seg = open_ok(path);
    struct idlist *rdids = calloc(1, sizeof(*rdids));
    assert_int_equal(cn_seg_trace_ids(seg, add_id, rdids), 0);
    assert_int_equal(rdids->n, 3000);
    assert_memory_equal(rdids->ids, cbids->ids, 3000 * 16);

    for (int t = 0; t < 3000; t++) {
        assert_int_equal(cn_seg_may_contain_trace(seg, tids[t]), 1); /* never a false negative */
        if (t % 10)
            continue;
        struct cn_tel_batch b;
        cn_tel_batch_init(&b, 16 << 20);
        assert_int_equal(cn_seg_trace(seg, tids[t], &b), 0);
        assert_int_equal(b.num_spans, counts[t]);
        for (size_t i = 0; i < b.num_spans; i++)
            assert_memory_equal(b.spans[i].trace_id, tids[t], 16);
        /* A second lookup appends to the same batch. */
        assert_int_equal(cn_seg_trace(seg, tids[t], &b), 0);
        assert_int_equal(b.num_spans, 2 * counts[t]);
        cn_tel_batch_release(&b);
    }
    size_t fp = 0, absent = 20000;
    for (size_t i = 0; i < absent; i++) {
        uint8_t id[16];
        rnd_bytes(&r, id, 16);
        if (cn_seg_may_contain_trace(seg, id)) {
            fp++;
            struct cn_tel_batch b;
            cn_tel_batch_init(&b, 1 << 20);
            assert_int_equal(cn_seg_trace(seg, id, &b), 0);
            assert_int_equal(b.num_spans, 0);
            cn_tel_batch_release(&b);
        }
    }
    print_message("trace bloom: %zu false positives in %zu absent IDs (%.2f%%)\n", fp, absent,
                  100.0 * (double)fp / (double)absent);
    assert_true(fp < absent * 2 / 100);
    uint8_t zero[16] = {0};
    assert_int_equal(cn_seg_may_contain_trace(seg, zero), 0);
    cn_seg_close(seg);
    free(cbids);
    free(rdids);
    cn_arena_release(&a);
}

/* ---- logs -------------------------------------------------------------------------------- */

struct logset {
    struct cn_arena a;
    struct cn_log *logs;
    const struct cn_log **ptrs;
    size_t n;
    uint8_t tids[8][16];
};

static void logset_build(struct logset *ls, size_t n)
{
    struct rng r = {99};
    struct cn_arena *a = &ls->a;
    cn_arena_init(a, 1 << 20, SIZE_MAX);
    ls->n = n;
    ls->logs = cn_arena_calloc(a, n, sizeof(*ls->logs));
    ls->ptrs = cn_arena_calloc(a, n, sizeof(*ls->ptrs));
    for (int t = 0; t < 8; t++)
        rnd_bytes(&r, ls->tids[t], 16);
    struct cn_resource *res[3] = {resource(a, "api", 0), resource(a, "worker", 1),
                                  resource(a, "api", 2)};
    struct cn_scope *sc[2] = {scope(a, "logger.main", "2.0"), scope(a, "", "")};
    static const uint8_t blob[] = {0xde, 0xad, 0, 0xbe, 0xef};
    const char *arr = "{\"arrayValue\":{\"values\":[{\"stringValue\":\"Disk Full\"}]}}";
    const char *kvl = "{\"kvlistValue\":{\"values\":[{\"key\":\"Order\",\"value\":{}}]}}";
    for (size_t i = 0; i < n; i++) {
        struct cn_log *l = &ls->logs[i];
        l->time_ns = i % 13 == 0 ? 0 : 1700000000000000000ull + i * 1000 * 1000;
        l->observed_ns = i % 4 == 0 ? 0 : l->time_ns + 5000 + i;
        l->severity_number = (uint8_t)(i % 25);
        l->severity_text = S(a, i % 3 ? "INFO" : "ERROR");
        switch (i % 9) {
        case 0:
            l->body = (struct cn_val){.type = CN_VAL_EMPTY};
            break;
        case 1:
            l->body = vstr(a, "user 42 logged in from 10.0.0.1");
            break;
        case 2:
            l->body = vint(-(int64_t)i);
            break;
        case 3:
            l->body = vdbl(0.5 * (double)i);
            break;
        case 4:
            l->body = vbool(1);
            break;
        case 5:
            l->body = vraw(a, CN_VAL_BYTES, blob, sizeof(blob));
            break;
        case 6:
            l->body = vraw(a, CN_VAL_ARRAY, arr, strlen(arr));
            break;
        case 7:
            l->body = vraw(a, CN_VAL_KVLIST, kvl, strlen(kvl));
            break;
        default: {
            char msg[64];
            snprintf(msg, sizeof(msg), "Payment FAILED for order #%zu: card declined", i);
            l->body = vstr(a, msg);
        }
        }
        l->attrs = i % 5 == 0 ? all_types(a, (int)i) : one_attr(a, "code.function", "handle");
        l->flags = (uint32_t)(i % 2);
        if (i % 3 != 2)
            memcpy(l->trace_id, ls->tids[i % 8], 16);
        if (i % 6 == 1)
            rnd_bytes(&r, l->span_id, 8);
        l->event_name = S(a, i % 10 == 0 ? "app.login" : "");
        l->resource = res[i % 3];
        l->scope = sc[i % 2];
        ls->ptrs[i] = l;
    }
}

static const struct cn_log *find_log(const struct logset *ls, const struct cn_log *l)
{
    for (size_t i = 0; i < ls->n; i++)
        if (log_eq(&ls->logs[i], l))
            return &ls->logs[i];
    return NULL;
}

struct lcollect {
    const struct logset *ls;
    size_t n;
};

static int collect_log(void *ctx, const struct cn_span *s, const struct cn_log *l)
{
    struct lcollect *c = ctx;
    assert_null(s);
    assert_non_null(find_log(c->ls, l));
    c->n++;
    return 0;
}

static void logs_roundtrip(void **state)
{
    (void)state;
    struct logset ls;
    logset_build(&ls, 300);
    uint32_t sizes[] = {0, 11};
    for (size_t k = 0; k < CN_ARRAY_LEN(sizes); k++) {
        struct cn_seg_write_opts o = {.group_rows = sizes[k], .level = 19};
        struct cn_seg_info info;
        char err[256];
        assert_int_equal(cn_seg_write_logs_opts(path, ls.ptrs, ls.n, &o, &info, err, sizeof(err)),
                         0);
        assert_int_equal(info.kind, CN_SEG_LOGS);
        assert_int_equal(info.num_traces, 8);
        assert_int_equal(info.min_ns, 0);
        struct cn_seg *seg = open_ok(path);
        struct lcollect c = {&ls, 0};
        assert_int_equal(cn_seg_scan(seg, 0, UINT64_MAX, NULL, collect_log, &c), 0);
        assert_int_equal(c.n, ls.n);
        for (int t = 0; t < 8; t++) {
            struct cn_tel_batch b;
            cn_tel_batch_init(&b, 16 << 20);
            assert_int_equal(cn_seg_trace(seg, ls.tids[t], &b), 0);
            size_t want = 0;
            for (size_t i = 0; i < ls.n; i++)
                want += memcmp(ls.logs[i].trace_id, ls.tids[t], 16) == 0;
            assert_int_equal(b.num_logs, want);
            assert_int_equal(b.num_spans, 0);
            for (size_t i = 0; i < b.num_logs; i++)
                assert_non_null(find_log(&ls, &b.logs[i]));
            cn_tel_batch_release(&b);
        }
        /* Tokens of bodies (lowercased) and of attribute values. */
        assert_int_equal(cn_seg_may_contain_token(seg, "payment"), 1);
        assert_int_equal(cn_seg_may_contain_token(seg, "Declined"), 1);
        assert_int_equal(cn_seg_may_contain_token(seg, "card declined"), 1);
        assert_int_equal(cn_seg_may_contain_token(seg, "logged"), 1);
        assert_int_equal(cn_seg_may_contain_token(seg, "disk"), 1);   /* array body text */
        assert_int_equal(cn_seg_may_contain_token(seg, "order"), 1);  /* kvlist body text */
        assert_int_equal(cn_seg_may_contain_token(seg, "handle"), 1); /* attribute */
        assert_int_equal(cn_seg_may_contain_token(seg, "kangaroo"), 0);
        assert_int_equal(cn_seg_may_contain_token(seg, "payment kangaroo"), 0);
        struct cn_seg_check chk;
        assert_int_equal(cn_seg_check(seg, &chk), 0);
        assert_int_equal(chk.rows, ls.n);
        cn_seg_close(seg);
    }
    cn_arena_release(&ls.a);
}

static void token_bloom(void **state)
{
    (void)state;
    struct spanset ss;
    spanset_build(&ss, 200);
    /* A few distinctive attribute values. */
    struct cn_arena *a = &ss.a;
    ss.spans[3].attrs = one_attr(a, "db.statement", "SELECT * FROM Orders WHERE id = $1");
    ss.spans[4].attrs = one_attr(a, "http.method", "GET");
    ss.spans[5].attrs = one_attr(a, "url", "https://shop.example.com/api/v2/checkout?x=1");
    char longv[200];
    memset(longv, 'q', sizeof(longv) - 1);
    longv[sizeof(longv) - 1] = '\0';
    ss.spans[6].attrs = one_attr(a, "long", longv);
    /* Bytes values are not indexed. */
    ss.spans[7].attrs.num = 1;
    ss.spans[7].attrs.items = cn_arena_calloc(a, 1, sizeof(struct cn_kv));
    ss.spans[7].attrs.items[0] =
        (struct cn_kv){S(a, "blob"), vraw(a, CN_VAL_BYTES, "zygomorphic", 11)};
    write_spans(&ss, 0, NULL);
    struct cn_seg *seg = open_ok(path);
    const char *const hits[] = {
        "select",           "ORDERS", "orders where", "GET",  "get", "/api/cart", "api", "cart",
        "shop.example.com", "v2",     "checkout",     "even", "odd", "odd even",  ""};
    for (size_t i = 0; i < CN_ARRAY_LEN(hits); i++)
        if (!cn_seg_may_contain_token(seg, hits[i]))
            fail_msg("term \"%s\" should be found", hits[i]);
    /* Absent tokens; bytes values and status messages are not indexed. */
    const char *const misses[] = {"zygomorphic", "kangaroo",        "Orders WHERE idx",
                                  "12345",       "select kangaroo", "refused"};
    for (size_t i = 0; i < CN_ARRAY_LEN(misses); i++)
        if (cn_seg_may_contain_token(seg, misses[i]))
            fail_msg("term \"%s\" should be skipped", misses[i]);
    /* Runs longer than 64 bytes are not tokens and long values are not indexed whole: a
     * term made only of such a run cannot be ruled out. */
    assert_int_equal(cn_seg_may_contain_token(seg, longv), 1);
    assert_int_equal(cn_seg_may_contain_token(seg, "x"), 0);
    /* False positives on absent words stay near 1%. */
    struct rng r = {5};
    size_t fp = 0, absent = 20000;
    for (size_t i = 0; i < absent; i++) {
        char w[16];
        snprintf(w, sizeof(w), "zz%llx", (unsigned long long)rnd(&r));
        fp += (size_t)cn_seg_may_contain_token(seg, w);
    }
    print_message("token bloom: %zu false positives in %zu absent tokens (%.2f%%)\n", fp, absent,
                  100.0 * (double)fp / (double)absent);
    assert_true(fp < absent * 2 / 100);
    cn_seg_close(seg);
    spanset_release(&ss);
}

/* A string column whose values are nearly all distinct is written inline without a
 * dictionary past its first values: every value still reads back, and every value's tokens
 * (those of values after the first ones too, repeated or not) are in the token bloom. */
static void distinct_values(void **state)
{
    (void)state;
    struct spanset ss;
    spanset_build(&ss, 3000);
    struct cn_arena *a = &ss.a;
    for (size_t i = 0; i < ss.n; i++) {
        /* Distinct up to 1000, then each value twice: next to its twin from 2000 on. */
        size_t k = i < 1000 ? i : i < 2000 ? i - 1000 : 1000 + (i - 2000) / 2;
        char v[64];
        snprintf(v, sizeof(v), "req-%05zu-tok%zux", k, k);
        ss.spans[i].attrs = one_attr(a, "request.id", v);
    }
    for (uint32_t gr = 4096; gr >= 512; gr /= 8) {
        write_spans(&ss, gr, NULL);
        struct cn_seg *seg = open_ok(path);
        check_all_traces(seg, &ss);
        check_scan_all(seg, &ss);
        for (size_t k = 0; k < 1500; k += 7) {
            char whole[64], tok[32];
            snprintf(whole, sizeof(whole), "req-%05zu-tok%zux", k, k);
            snprintf(tok, sizeof(tok), "tok%zux", k);
            if (!cn_seg_may_contain_token(seg, whole) || !cn_seg_may_contain_token(seg, tok))
                fail_msg("value %zu not in the token bloom (group rows %u)", k, gr);
        }
        cn_seg_close(seg);
    }
    spanset_release(&ss);
}

static void empty_segment(void **state)
{
    (void)state;
    struct cn_seg_info info;
    char err[256];
    struct idlist *ids = calloc(1, sizeof(*ids));
    struct cn_seg_write_opts o = {.trace_cb = add_id, .trace_ctx = ids};
    assert_int_equal(cn_seg_write_spans_opts(path, NULL, 0, &o, &info, err, sizeof(err)), 0);
    assert_int_equal(info.rows, 0);
    assert_int_equal(info.num_groups, 0);
    assert_int_equal(info.num_traces, 0);
    assert_int_equal(ids->n, 0);
    struct cn_seg *seg = open_ok(path);
    assert_int_equal(cn_seg_info(seg)->rows, 0);
    assert_int_equal(cn_seg_info(seg)->min_ns, 0);
    size_t n = 0;
    assert_int_equal(cn_seg_scan(seg, 0, UINT64_MAX, NULL, count_rows, &n), 0);
    assert_int_equal(n, 0);
    uint8_t id[16] = {1, 2, 3};
    assert_int_equal(cn_seg_may_contain_trace(seg, id), 0);
    struct cn_tel_batch b;
    cn_tel_batch_init(&b, 1 << 20);
    assert_int_equal(cn_seg_trace(seg, id, &b), 0);
    assert_int_equal(b.num_spans, 0);
    cn_tel_batch_release(&b);
    assert_int_equal(cn_seg_trace_ids(seg, add_id, ids), 0);
    assert_int_equal(ids->n, 0);
    assert_int_equal(cn_seg_may_contain_token(seg, "anything"), 0);
    struct cn_seg_check chk;
    assert_int_equal(cn_seg_check(seg, &chk), 0);
    cn_seg_close(seg);
    assert_int_equal(cn_seg_write_logs(path, NULL, 0, &info, err, sizeof(err)), 0);
    struct cn_seg_check v;
    assert_int_equal(cn_seg_validate(path, &v), 0);
    free(ids);
}

static void bad_input(void **state)
{
    (void)state;
    struct spanset ss;
    spanset_build(&ss, 10);
    char err[256];
    ss.spans[4].resource = NULL;
    assert_int_equal(cn_seg_write_spans(path, ss.ptrs, ss.n, NULL, err, sizeof(err)), CN_EINVAL);
    assert_non_null(strstr(err, "record 4 has no resource"));
    assert_non_null(strstr(err, path));
    assert_int_equal(access(path, F_OK), -1);
    ss.spans[4].resource = ss.spans[3].resource;
    ss.spans[0].attrs = one_attr(&ss.a, "weird", "x");
    ss.spans[0].attrs.items[0].val.type = 42;
    assert_int_equal(cn_seg_write_spans(path, ss.ptrs, ss.n, NULL, err, sizeof(err)), CN_EINVAL);
    assert_non_null(strstr(err, "attribute \"weird\" has unknown value type 42"));
    char tmp[600];
    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    assert_int_equal(access(tmp, F_OK), -1);
    assert_int_equal(access(path, F_OK), -1);
    struct cn_seg_write_opts o = {.group_rows = CN_SEG_MAX_GROUP + 1};
    assert_int_equal(cn_seg_write_spans_opts(path, ss.ptrs, ss.n, &o, NULL, err, sizeof(err)),
                     CN_EINVAL);
    snprintf(tmp, sizeof(tmp), "%s/no/such/dir/x.seg", dir);
    ss.spans[0].attrs.num = 0;
    assert_int_equal(cn_seg_write_spans(tmp, ss.ptrs, ss.n, NULL, err, sizeof(err)), -ENOENT);
    assert_non_null(strstr(err, "cannot create"));
    spanset_release(&ss);
}

/* ---- damage ------------------------------------------------------------------------------ */

static void flip_byte(const char *p, uint64_t off)
{
    int fd = open(p, O_RDWR);
    assert_true(fd >= 0);
    uint8_t c;
    assert_int_equal(pread(fd, &c, 1, (off_t)off), 1);
    c ^= 0x40;
    assert_int_equal(pwrite(fd, &c, 1, (off_t)off), 1);
    close(fd);
}

static int find_block(struct cn_seg *seg, const char *name, struct cn_seg_block *out)
{
    for (size_t i = 0; cn_seg_block(seg, i, out) == 0; i++)
        if (strcmp(out->name, name) == 0)
            return 0;
    return -1;
}

static char *read_all(const char *p, size_t *out_len)
{
    FILE *f = fopen(p, "rb");
    assert_non_null(f);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = malloc((size_t)n + 1);
    assert_int_equal(fread(buf, 1, (size_t)n, f), (size_t)n);
    buf[n] = '\0';
    fclose(f);
    *out_len = (size_t)n;
    return buf;
}

static void corrupt_group_block(void **state)
{
    (void)state;
    struct spanset ss;
    spanset_build(&ss, 300);
    write_spans(&ss, 100, NULL); /* three row groups */
    struct cn_seg *seg = open_ok(path);
    struct cn_seg_block b;
    assert_int_equal(find_block(seg, "group:1/attributes", &b), 0);
    assert_int_equal(b.codec, 1);
    cn_seg_close(seg);
    flip_byte(path, b.off + b.len / 2);

    char logp[600];
    snprintf(logp, sizeof(logp), "%s/log.txt", dir);
    int logfd = open(logp, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    cn_log_set_fd(logfd);
    seg = open_ok(path); /* the footer is intact */
    struct collect c = {.ss = &ss, .seen = calloc(ss.n, 1)};
    assert_int_equal(cn_seg_scan(seg, 0, UINT64_MAX, NULL, collect_span, &c), CN_EIO);
    assert_int_equal(c.n, 200); /* groups 0 and 2, intact and exact */
    assert_int_equal(cn_seg_corrupt_blocks(seg), 1);
    /* Again: the same answer, counted and logged once. */
    memset(c.seen, 0, ss.n);
    c.n = 0;
    assert_int_equal(cn_seg_scan(seg, 0, UINT64_MAX, NULL, collect_span, &c), CN_EIO);
    assert_int_equal(c.n, 200);
    assert_int_equal(cn_seg_corrupt_blocks(seg), 1);
    /* Traces: spans in intact groups come back, with CN_EIO when one was in group 1 (those
     * the scan did not return). */
    size_t total = 0;
    int eio = 0;
    for (int t = 0; t < NTRACES; t++) {
        struct cn_tel_batch bt;
        cn_tel_batch_init(&bt, 16 << 20);
        int rc = cn_seg_trace(seg, ss.tids[t], &bt);
        int lost = 0;
        for (size_t i = 0; i < ss.n; i++)
            lost |= memcmp(ss.spans[i].trace_id, ss.tids[t], 16) == 0 && !c.seen[i];
        assert_int_equal(rc, lost ? CN_EIO : 0);
        eio += rc == CN_EIO;
        for (size_t i = 0; i < bt.num_spans; i++)
            assert_true(span_eq(&bt.spans[i], find_span(&ss, &bt.spans[i])));
        total += bt.num_spans;
        cn_tel_batch_release(&bt);
    }
    assert_int_equal(total, 200);
    assert_true(eio > 0);
    struct cn_seg_check chk;
    assert_int_equal(cn_seg_check(seg, &chk), CN_EIO);
    assert_int_equal(chk.bad_blocks, 1);
    assert_int_equal(chk.bad_groups, 1);
    assert_int_equal(chk.groups, 3);
    assert_int_equal(chk.rows, 200);
    assert_string_equal(chk.msg, "row group 1, column attributes: damaged");
    cn_seg_close(seg);
    cn_log_set_fd(2);
    close(logfd);
    size_t len;
    char *log = read_all(logp, &len);
    assert_non_null(strstr(log, "corrupt segment block"));
    assert_non_null(strstr(log, "block=group:1/attributes"));
    assert_non_null(strstr(log, "checksum mismatch"));
    assert_non_null(strstr(log, path));
    assert_null(strstr(strstr(log, "corrupt segment block") + 1, "corrupt segment block"));
    free(log);

    struct cn_seg_check v;
    assert_int_equal(cn_seg_validate(path, &v), CN_EIO);
    assert_int_equal(v.bad_groups, 1);

    /* Span IDs are also how rows of other groups find their parents: with group 1's span
     * IDs damaged, group 1 is lost and so are the rows whose parent was there; the rest
     * still comes back exact. */
    write_spans(&ss, 100, NULL);
    seg = open_ok(path);
    assert_int_equal(find_block(seg, "group:1/span_id", &b), 0);
    cn_seg_close(seg);
    flip_byte(path, b.off + 9);
    logfd = open("/dev/null", O_WRONLY);
    cn_log_set_fd(logfd);
    seg = open_ok(path);
    memset(c.seen, 0, ss.n);
    c.n = 0;
    assert_int_equal(cn_seg_scan(seg, 0, UINT64_MAX, NULL, collect_span, &c), CN_EIO);
    size_t with_parent_lost = c.n;
    assert_true(with_parent_lost > 0 && with_parent_lost < 200);
    assert_int_equal(cn_seg_corrupt_blocks(seg), 1);
    cn_seg_close(seg);
    cn_log_set_fd(2);
    close(logfd);
    free(c.seen);
    spanset_release(&ss);
}

static void corrupt_index_and_blooms(void **state)
{
    (void)state;
    struct spanset ss;
    spanset_build(&ss, 300);
    write_spans(&ss, 100, NULL);
    struct cn_seg *seg = open_ok(path);
    struct cn_seg_block ids, tb, kb;
    assert_int_equal(find_block(seg, "trace-ids:0", &ids), 0);
    assert_int_equal(find_block(seg, "trace-bloom", &tb), 0);
    assert_int_equal(find_block(seg, "token-bloom", &kb), 0);
    cn_seg_close(seg);
    flip_byte(path, ids.off + 3);
    flip_byte(path, tb.off + 1);
    flip_byte(path, kb.off);
    cn_log_set_fd(open("/dev/null", O_WRONLY));
    seg = open_ok(path); /* blooms are read at their first check */
    assert_int_equal(cn_seg_corrupt_blocks(seg), 0);
    /* Without blooms every answer is "may contain". */
    uint8_t absent[16] = {9, 9, 9};
    assert_int_equal(cn_seg_may_contain_trace(seg, absent), 1);
    assert_int_equal(cn_seg_may_contain_token(seg, "kangaroo"), 1);
    assert_int_equal(cn_seg_corrupt_blocks(seg), 2);
    /* Known damaged: not read again. */
    struct cn_seg_cache_stats bs0, bs1;
    cn_seg_bloom_cache_stats(&bs0);
    assert_int_equal(cn_seg_may_contain_trace(seg, absent), 1);
    assert_int_equal(cn_seg_may_contain_token(seg, "kangaroo"), 1);
    cn_seg_bloom_cache_stats(&bs1);
    assert_int_equal(bs1.loads, bs0.loads);
    struct cn_tel_batch b;
    cn_tel_batch_init(&b, 1 << 20);
    assert_int_equal(cn_seg_trace(seg, ss.tids[0], &b), CN_EIO);
    assert_int_equal(b.num_spans, 0);
    cn_tel_batch_release(&b);
    /* A scan still decodes rows, but none has a known trace ID. */
    size_t n = 0;
    assert_int_equal(cn_seg_scan(seg, 0, UINT64_MAX, NULL, count_rows, &n), CN_EIO);
    assert_int_equal(n, 0);
    struct cn_seg_check chk;
    assert_int_equal(cn_seg_check(seg, &chk), CN_EIO);
    assert_int_equal(chk.bad_blocks, 3);
    assert_int_equal(chk.bad_groups, 0);
    assert_int_equal(cn_seg_corrupt_blocks(seg), 3);
    cn_seg_close(seg);
    int fd = dup(2);
    cn_log_set_fd(2);
    close(fd);
    spanset_release(&ss);
}

static void corrupt_footer(void **state)
{
    (void)state;
    struct spanset ss;
    spanset_build(&ss, 100);
    struct cn_seg_info info;
    write_spans(&ss, 0, &info);
    /* The footer sits just before the 32-byte trailer. */
    flip_byte(path, info.bytes - CN_SEG_TRAILER - 5);
    struct cn_seg *seg = NULL;
    char err[256];
    assert_int_equal(cn_seg_open(&seg, path, err, sizeof(err)), CN_EIO);
    assert_null(seg);
    char want[700];
    snprintf(want, sizeof(want), "%s: footer checksum mismatch (stored ", path);
    assert_memory_equal(err, want, strlen(want));
    struct cn_seg_check v;
    assert_int_equal(cn_seg_validate(path, &v), CN_EIO);
    assert_memory_equal(v.msg, want, strlen(want));
    /* A trailer pointing elsewhere. */
    write_spans(&ss, 0, &info);
    flip_byte(path, info.bytes - CN_SEG_TRAILER + 1);
    assert_int_equal(cn_seg_open(&seg, path, err, sizeof(err)), CN_EIO);
    assert_non_null(strstr(err, "footer out of bounds"));
    /* Not a segment at all. */
    write_spans(&ss, 0, &info);
    flip_byte(path, 2);
    assert_int_equal(cn_seg_open(&seg, path, err, sizeof(err)), CN_ESYNTAX);
    assert_non_null(strstr(err, "not a segment file"));
    assert_int_equal(cn_seg_open(&seg, "/nonexistent/x.seg", err, sizeof(err)), -ENOENT);
    assert_string_equal(err, "/nonexistent/x.seg: cannot open: No such file or directory");
    spanset_release(&ss);
}

static void truncated(void **state)
{
    (void)state;
    struct spanset ss;
    spanset_build(&ss, 100);
    struct cn_seg_info info;
    write_spans(&ss, 0, &info);
    uint64_t cuts[] = {1, 16, 33, info.bytes / 2}; /* bytes cut from the end */
    for (size_t k = 0; k < CN_ARRAY_LEN(cuts); k++) {
        write_spans(&ss, 0, &info);
        assert_int_equal(truncate(path, (off_t)(info.bytes - cuts[k])), 0);
        struct cn_seg *seg = NULL;
        char err[256];
        assert_int_equal(cn_seg_open(&seg, path, err, sizeof(err)), CN_EIO);
        assert_null(seg);
        assert_non_null(strstr(err, path));
        assert_non_null(strstr(err, "trailer magic missing: file truncated"));
    }
    assert_int_equal(truncate(path, 20), 0);
    struct cn_seg *seg = NULL;
    char err[256];
    assert_int_equal(cn_seg_open(&seg, path, err, sizeof(err)), CN_EIO);
    assert_non_null(strstr(err, "too short for a segment (20 bytes)"));
    spanset_release(&ss);
}

static void open_mem(void **state)
{
    (void)state;
    struct spanset ss;
    spanset_build(&ss, 120);
    write_spans(&ss, 50, NULL);
    size_t len;
    char *img = read_all(path, &len);
    struct cn_seg *seg;
    char err[256];
    assert_int_equal(cn_seg_open_mem(&seg, img, len, 0, err, sizeof(err)), 0);
    assert_string_equal(cn_seg_path(seg), "<memory>");
    check_all_traces(seg, &ss);
    check_scan_all(seg, &ss);
    cn_seg_close(seg);
    free(img);
    spanset_release(&ss);
}

/* Writes small valid and damaged segments into $CAIRN_SEG_CORPUS (the fuzz corpus). */
static void make_corpus(void **state)
{
    (void)state;
    const char *out = getenv("CAIRN_SEG_CORPUS");
    if (!out)
        skip();
    struct spanset ss;
    spanset_build(&ss, 24);
    struct logset ls;
    logset_build(&ls, 20);
    char err[256], p[1024];
    struct cn_seg_write_opts o = {.group_rows = 10};
    struct cn_seg_info info;
    const char *names[] = {"spans",    "logs",  "spans-footer", "spans-block",
                           "logs-cut", "empty", "spans-raw",    "logs-raw"};
    for (int k = 0; k < 8; k++) {
        snprintf(p, sizeof(p), "%s/%s.seg", out, names[k]);
        o.uncompressed = k >= 6; /* mutations reach the decoders behind zstd */
        if (k == 1 || k == 4 || k == 7)
            assert_int_equal(cn_seg_write_logs_opts(p, ls.ptrs, ls.n, &o, &info, err, 256), 0);
        else
            assert_int_equal(
                cn_seg_write_spans_opts(p, ss.ptrs, k == 5 ? 0 : ss.n, &o, &info, err, 256), 0);
        print_message("%s: %llu bytes\n", p, (unsigned long long)info.bytes);
        assert_true(info.bytes < 8192);
        if (k == 2)
            flip_byte(p, info.bytes - 40);
        if (k == 3)
            flip_byte(p, 40);
        if (k == 4)
            assert_int_equal(truncate(p, (off_t)info.bytes - 7), 0);
    }
    /* Groups long enough for the run codec (columns the same in every row). */
    struct spanset rs;
    spanset_build(&rs, 140);
    for (size_t i = 0; i < rs.n; i++) {
        rs.spans[i].flags = 1;
        rs.spans[i].trace_state = (struct cn_slice){"", 0};
        rs.spans[i].num_links = rs.spans[i].dropped_links = 0;
        rs.spans[i].attrs = (struct cn_kvs){0};
        rs.spans[i].num_events = rs.spans[i].dropped_events = 0;
    }
    snprintf(p, sizeof(p), "%s/spans-run.seg", out);
    o = (struct cn_seg_write_opts){.group_rows = 140};
    assert_int_equal(cn_seg_write_spans_opts(p, rs.ptrs, rs.n, &o, &info, err, 256), 0);
    print_message("%s: %llu bytes\n", p, (unsigned long long)info.bytes);
    assert_true(info.bytes < 8192);
    spanset_release(&rs);
    cn_arena_release(&ls.a);
    spanset_release(&ss);
}

/* ---- a realistic span set, through real OTLP ---------------------------------------------
 *
 * Traces of a microservice shop (the services and calls of the OpenTelemetry demo): an HTTP
 * front end calling gRPC services, which call Redis and PostgreSQL. Attributes follow the
 * semantic conventions, with the cardinalities such systems have (routes and methods
 * repeat; product, user, session and order IDs, peer ports and sizes vary). Timestamps have
 * nanosecond precision. The spans are encoded as OTLP/protobuf requests the way an SDK
 * batches them (per service instance and scope, up to 512 spans), decoded with the real
 * decoder, and written to a segment. */

static void pb_var(struct cn_buf *b, uint64_t v)
{
    uint8_t t[10];
    size_t n = 0;
    while (v >= 0x80) {
        t[n++] = (uint8_t)(v | 0x80);
        v >>= 7;
    }
    t[n++] = (uint8_t)v;
    cn_buf_append(b, t, n);
}

static void pb_tag(struct cn_buf *b, uint32_t field, uint32_t wt)
{
    pb_var(b, field << 3 | wt);
}

static void pb_bytes(struct cn_buf *b, uint32_t field, const void *p, size_t n)
{
    pb_tag(b, field, 2);
    pb_var(b, n);
    cn_buf_append(b, p, n);
}

static void pb_str(struct cn_buf *b, uint32_t field, const char *s)
{
    pb_bytes(b, field, s, strlen(s));
}

static void pb_u64(struct cn_buf *b, uint32_t field, uint64_t v)
{
    pb_tag(b, field, 0);
    pb_var(b, v);
}

static void pb_fixed(struct cn_buf *b, uint32_t field, uint64_t v, int bytes)
{
    pb_tag(b, field, bytes == 8 ? 1 : 5);
    for (int i = 0; i < bytes; i++) {
        uint8_t c = (uint8_t)(v >> (8 * i));
        cn_buf_append(b, &c, 1);
    }
}

/* KeyValue (as field `field` of the enclosing message) with an AnyValue of one kind. */
static void pb_attr(struct cn_buf *b, uint32_t field, const char *key, int kind, const char *s,
                    int64_t i, double d)
{
    struct cn_buf any, kv;
    cn_buf_init(&any, 1 << 20);
    cn_buf_init(&kv, 1 << 20);
    if (kind == 's')
        pb_str(&any, 1, s);
    else if (kind == 'b')
        pb_u64(&any, 2, (uint64_t)i);
    else if (kind == 'i')
        pb_u64(&any, 3, (uint64_t)i);
    else {
        uint64_t bits;
        memcpy(&bits, &d, 8);
        pb_fixed(&any, 4, bits, 8);
    }
    pb_str(&kv, 1, key);
    pb_bytes(&kv, 2, any.ptr, any.len);
    pb_bytes(b, field, kv.ptr, kv.len);
    cn_buf_release(&any);
    cn_buf_release(&kv);
}

#define ATTR_S(b, f, k, v) pb_attr((b), (f), (k), 's', (v), 0, 0)
#define ATTR_I(b, f, k, v) pb_attr((b), (f), (k), 'i', NULL, (v), 0)
#define ATTR_B(b, f, k, v) pb_attr((b), (f), (k), 'b', NULL, (v), 0)
#define ATTR_D(b, f, k, v) pb_attr((b), (f), (k), 'd', NULL, 0, (v))

enum {
    SVC_FRONTEND,
    SVC_CART,
    SVC_CATALOG,
    SVC_CURRENCY,
    SVC_RECO,
    SVC_AD,
    SVC_CHECKOUT,
    SVC_PAYMENT,
    SVC_SHIPPING,
    SVC_EMAIL,
    NSVC
};

static const struct {
    const char *name, *lang, *rpc_service;
    int port;
} svcs[NSVC] = {
    {"frontend", "nodejs", "", 8080},
    {"cart", "dotnet", "oteldemo.CartService", 7070},
    {"product-catalog", "go", "oteldemo.ProductCatalogService", 3550},
    {"currency", "cpp", "oteldemo.CurrencyService", 7001},
    {"recommendation", "python", "oteldemo.RecommendationService", 9001},
    {"ad", "java", "oteldemo.AdService", 9555},
    {"checkout", "go", "oteldemo.CheckoutService", 5050},
    {"payment", "nodejs", "oteldemo.PaymentService", 50051},
    {"shipping", "rust", "oteldemo.ShippingService", 50050},
    {"email", "ruby", "oteldemo.EmailService", 6060},
};

#define NINST 2

struct gspan {
    uint8_t tid[16], sid[8], pid[8];
    int svc, inst, scope, kind, status;
    const char *name, *status_msg;
    uint64_t start, end;
    struct cn_buf body; /* attributes (field 9) and events (field 11), encoded */
};

struct gen {
    struct rng r;
    struct gspan *spans;
    size_t n, cap;
    char users[1000][40];
    char sessions[3000][40];
    char products[60][16];
};

static void uuid(struct rng *r, char *dst)
{
    uint8_t b[16];
    rnd_bytes(r, b, 16);
    char h[33];
    cn_hex_encode(h, b, 16);
    snprintf(dst, 40, "%.8s-%.4s-%.4s-%.4s-%.12s", h, h + 8, h + 12, h + 16, h + 20);
}

static struct gspan *gspan_new(struct gen *g, const uint8_t *tid, const struct gspan *parent,
                               int svc, int kind, const char *name, uint64_t start)
{
    /* Never reallocated: spans point at their parents. */
    assert_true(g->n < g->cap);
    struct gspan *s = &g->spans[g->n++];
    memset(s, 0, sizeof(*s));
    memcpy(s->tid, tid, 16);
    rnd_bytes(&g->r, s->sid, 8);
    if (parent)
        memcpy(s->pid, parent->sid, 8);
    s->svc = svc;
    s->inst = parent && parent->svc == svc ? parent->inst : (int)rndn(&g->r, NINST);
    s->kind = kind;
    s->name = name;
    s->start = start;
    s->scope = kind == CN_KIND_SERVER ? 0 : kind == CN_KIND_CLIENT ? 1 : 2;
    cn_buf_init(&s->body, 1 << 20);
    return s;
}

static uint64_t dur(struct rng *r, uint64_t lo, uint64_t spread)
{
    return lo + rnd(r) % spread + (rnd(r) % 8 == 0 ? rnd(r) % (spread * 8) : 0);
}

static char ipbuf[64][20];

static const char *ip(struct rng *r)
{
    return ipbuf[rndn(r, 64)];
}

/* A Redis or PostgreSQL call from span parent. Returns its end. */
static uint64_t db_call(struct gen *g, const struct gspan *parent, uint64_t t, int redis, int op)
{
    static const char *const redis_ops[] = {"HGET", "HMSET", "EXPIRE", "DEL"};
    static const char *const sql[] = {
        "SELECT id, name, description, picture, price_usd, categories FROM products",
        "SELECT id, name, description, picture, price_usd, categories FROM products WHERE id = $1",
        "SELECT id, name FROM products WHERE categories @> $1 LIMIT 10",
    };
    const char *name = redis ? redis_ops[op % 4] : op == 0 ? "SELECT products" : "SELECT products";
    struct gspan *s = gspan_new(g, parent->tid, parent, parent->svc, CN_KIND_CLIENT, name, t);
    s->scope = 3;
    s->end = t + dur(&g->r, 80000, 900000);
    struct cn_buf *b = &s->body;
    ATTR_S(b, 9, "db.system", redis ? "redis" : "postgresql");
    if (redis) {
        char stmt[96];
        snprintf(stmt, sizeof(stmt), "%s %s", redis_ops[op % 4], g->users[rndn(&g->r, 1000)]);
        ATTR_S(b, 9, "db.statement", stmt);
        ATTR_I(b, 9, "db.redis.database_index", 0);
        ATTR_S(b, 9, "server.address", "valkey-cart");
        ATTR_I(b, 9, "server.port", 6379);
    } else {
        ATTR_S(b, 9, "db.statement", sql[op % 3]);
        ATTR_S(b, 9, "db.name", "otel");
        ATTR_S(b, 9, "db.user", "otelu");
        ATTR_S(b, 9, "db.operation", "SELECT");
        ATTR_S(b, 9, "db.sql.table", "products");
        ATTR_S(b, 9, "server.address", "postgresql");
        ATTR_I(b, 9, "server.port", 5432);
        ATTR_I(b, 9, "db.rows_returned", (int64_t)rndn(&g->r, 12));
    }
    ATTR_S(b, 9, "network.peer.address", ip(&g->r));
    ATTR_I(b, 9, "network.peer.port", redis ? 6379 : 5432);
    return s->end;
}

static uint64_t rpc(struct gen *g, const struct gspan *parent, int callee, const char *method,
                    uint64_t t, int depth);

/* What a service does when one of its RPC methods is called. Returns the end. */
static uint64_t serve(struct gen *g, struct gspan *srv, const char *method, uint64_t t, int depth)
{
    struct rng *r = &g->r;
    struct cn_buf *b = &srv->body;
    switch (srv->svc) {
    case SVC_CART:
        ATTR_S(b, 9, "app.user.id", g->users[rndn(r, 1000)]);
        t = db_call(g, srv, t + 20000, 1, strcmp(method, "AddItem") == 0 ? 1 : 0);
        if (strcmp(method, "AddItem") == 0) {
            ATTR_S(b, 9, "app.product.id", g->products[rndn(r, 60)]);
            ATTR_I(b, 9, "app.product.quantity", 1 + rndn(r, 5));
            t = db_call(g, srv, t + 5000, 1, 2);
        } else if (strcmp(method, "EmptyCart") == 0) {
            t = db_call(g, srv, t + 5000, 1, 3);
        } else {
            ATTR_I(b, 9, "app.cart.items.count", rndn(r, 8));
        }
        break;
    case SVC_CATALOG:
        if (strcmp(method, "GetProduct") == 0) {
            ATTR_S(b, 9, "app.product.id", g->products[rndn(r, 60)]);
            ATTR_S(b, 9, "app.product.name", "Roof Binoculars");
            t = db_call(g, srv, t + 10000, 0, 1);
        } else {
            ATTR_I(b, 9, "app.products.count", 10);
            t = db_call(g, srv, t + 10000, 0, rndn(r, 4) ? 0 : 2);
        }
        break;
    case SVC_CURRENCY: {
        static const char *const cur[] = {"USD", "EUR", "CAD", "JPY", "GBP", "TRY"};
        if (strcmp(method, "Convert") == 0) {
            ATTR_S(b, 9, "app.currency.conversion.from", "USD");
            ATTR_S(b, 9, "app.currency.conversion.to", cur[rndn(r, 6)]);
        }
        t += dur(r, 20000, 100000);
        break;
    }
    case SVC_RECO: {
        ATTR_B(b, 9, "app.cache_hit", rndn(r, 3) == 0);
        ATTR_I(b, 9, "app.products_recommended.count", 5);
        struct gspan *in =
            gspan_new(g, srv->tid, srv, srv->svc, CN_KIND_INTERNAL, "get_product_list", t + 8000);
        ATTR_S(&in->body, 9, "code.function", "get_product_list");
        ATTR_S(&in->body, 9, "code.namespace", "recommendation_server");
        ATTR_I(&in->body, 9, "code.lineno", 88);
        in->end = rpc(g, in, SVC_CATALOG, "ListProducts", t + 12000, depth + 1) + 9000;
        t = in->end;
        break;
    }
    case SVC_AD:
        ATTR_S(b, 9, "app.ads.contextKeys", "[binoculars]");
        ATTR_I(b, 9, "app.ads.count", 1);
        ATTR_S(b, 9, "app.ads.ad_request_type", rndn(r, 2) ? "TARGETED" : "NOT_TARGETED");
        ATTR_S(b, 9, "app.ads.ad_response_type", "RANDOM");
        ATTR_I(b, 9, "thread.id", 20 + rndn(r, 16));
        ATTR_S(b, 9, "thread.name", "grpc-default-executor-1");
        t += dur(r, 100000, 500000);
        break;
    case SVC_CHECKOUT: {
        char order[40];
        uuid(r, order);
        ATTR_S(b, 9, "app.user.id", g->users[rndn(r, 1000)]);
        ATTR_S(b, 9, "app.user.currency", "USD");
        ATTR_S(b, 9, "app.order.id", order);
        t = rpc(g, srv, SVC_CART, "GetCart", t + 30000, depth + 1);
        t = rpc(g, srv, SVC_CATALOG, "GetProduct", t + 20000, depth + 1);
        t = rpc(g, srv, SVC_CURRENCY, "Convert", t + 10000, depth + 1);
        t = rpc(g, srv, SVC_SHIPPING, "GetQuote", t + 10000, depth + 1);
        t = rpc(g, srv, SVC_PAYMENT, "Charge", t + 10000, depth + 1);
        t = rpc(g, srv, SVC_SHIPPING, "ShipOrder", t + 10000, depth + 1);
        t = rpc(g, srv, SVC_CART, "EmptyCart", t + 10000, depth + 1);
        t = rpc(g, srv, SVC_EMAIL, "SendOrderConfirmation", t + 10000, depth + 1);
        ATTR_D(b, 9, "app.shipping.amount", (double)rndn(r, 5000) / 100.0);
        ATTR_I(b, 9, "app.order.items.count", 1 + rndn(r, 4));
        break;
    }
    case SVC_PAYMENT: {
        static const char *const cards[] = {"visa", "mastercard", "amex"};
        ATTR_S(b, 9, "app.payment.card_type", cards[rndn(r, 3)]);
        ATTR_B(b, 9, "app.payment.card_valid", 1);
        ATTR_B(b, 9, "app.loyalty.level", rndn(r, 4) == 0);
        ATTR_D(b, 9, "app.payment.amount", (double)rndn(r, 100000) / 100.0);
        char tx[40];
        uuid(r, tx);
        ATTR_S(b, 9, "app.payment.transaction.id", tx);
        t += dur(r, 200000, 2000000);
        if (rndn(r, 50) == 0) { /* a declined card: an exception event */
            srv->status = CN_STATUS_ERROR;
            srv->status_msg = "Payment request failed. Invalid token. app.loyalty.level=gold";
            struct cn_buf ev, at;
            cn_buf_init(&ev, 1 << 20);
            cn_buf_init(&at, 1 << 20);
            pb_fixed(&ev, 1, t - 1000, 8);
            pb_str(&ev, 2, "exception");
            ATTR_S(&ev, 3, "exception.type", "Error");
            ATTR_S(&ev, 3, "exception.message",
                   "Payment request failed. Invalid token. app.loyalty.level=gold");
            ATTR_S(&ev, 3, "exception.stacktrace",
                   "Error: Payment request failed. Invalid token. app.loyalty.level=gold\n"
                   "    at module.exports.charge (/usr/src/app/charge.js:37:13)\n"
                   "    at async Object.chargeServiceHandler [as charge] "
                   "(/usr/src/app/index.js:21:20)");
            pb_bytes(b, 11, ev.ptr, ev.len);
            cn_buf_release(&ev);
            cn_buf_release(&at);
        }
        break;
    }
    case SVC_SHIPPING: {
        if (strcmp(method, "ShipOrder") == 0) {
            char tracking[40];
            uuid(r, tracking);
            ATTR_S(b, 9, "app.shipping.tracking.id", tracking);
        } else {
            ATTR_S(b, 9, "app.shipping.zip_code", rndn(r, 2) ? "94043" : "10001");
            struct gspan *q =
                gspan_new(g, srv->tid, srv, srv->svc, CN_KIND_CLIENT, "POST", t + 15000);
            ATTR_S(&q->body, 9, "http.request.method", "POST");
            ATTR_S(&q->body, 9, "url.full", "http://quote:8090/getquote");
            ATTR_S(&q->body, 9, "server.address", "quote");
            ATTR_I(&q->body, 9, "server.port", 8090);
            ATTR_I(&q->body, 9, "http.response.status_code", 200);
            q->end = q->start + dur(r, 300000, 1500000);
            t = q->end;
        }
        t += dur(r, 10000, 50000);
        break;
    }
    case SVC_EMAIL:
        ATTR_S(b, 9, "app.email.recipient", "someone@example.com");
        t += dur(r, 500000, 3000000);
        break;
    default:
        break;
    }
    return t + dur(r, 5000, 40000);
}

/* A gRPC call: a client span at the caller, a server span at the callee. Returns the end. */
static uint64_t rpc(struct gen *g, const struct gspan *parent, int callee, const char *method,
                    uint64_t t, int depth)
{
    struct rng *r = &g->r;
    char full[96];
    snprintf(full, sizeof(full), "%s/%s", svcs[callee].rpc_service, method);
    const char *name = NULL;
    /* Names are interned: spans point at them. */
    static char names[64][96];
    static int nnames;
    for (int i = 0; i < nnames && !name; i++)
        if (strcmp(names[i], full) == 0)
            name = names[i];
    if (!name) {
        snprintf(names[nnames], sizeof(names[0]), "%s", full);
        name = names[nnames++];
    }
    struct gspan *cl = gspan_new(g, parent->tid, parent, parent->svc, CN_KIND_CLIENT, name, t);
    struct gspan *srv =
        gspan_new(g, parent->tid, cl, callee, CN_KIND_SERVER, name, t + dur(r, 100000, 400000));
    size_t cli = (size_t)(cl - g->spans), srvi = (size_t)(srv - g->spans);
    struct cn_buf *b = &g->spans[cli].body;
    ATTR_S(b, 9, "rpc.system", "grpc");
    ATTR_S(b, 9, "rpc.service", svcs[callee].rpc_service);
    ATTR_S(b, 9, "rpc.method", method);
    ATTR_S(b, 9, "server.address", svcs[callee].name);
    ATTR_I(b, 9, "server.port", svcs[callee].port);
    ATTR_S(b, 9, "network.peer.address", ip(r));
    ATTR_S(b, 9, "network.transport", "tcp");
    ATTR_S(b, 9, "network.type", "ipv4");
    ATTR_I(b, 9, "rpc.grpc.status_code", 0);
    b = &g->spans[srvi].body;
    ATTR_S(b, 9, "rpc.system", "grpc");
    ATTR_S(b, 9, "rpc.service", svcs[callee].rpc_service);
    ATTR_S(b, 9, "rpc.method", method);
    ATTR_S(b, 9, "network.peer.address", ip(r));
    ATTR_I(b, 9, "network.peer.port", 30000 + rndn(r, 30000));
    ATTR_I(b, 9, "server.port", svcs[callee].port);
    ATTR_I(b, 9, "rpc.grpc.status_code", 0);
    char thread[48];
    int tno = 1 + (int)rndn(r, 24);
    snprintf(thread, sizeof(thread), "grpc-default-executor-%d", tno);
    ATTR_I(b, 9, "thread.id", 30 + tno);
    ATTR_S(b, 9, "thread.name", thread);
    uint64_t end = serve(g, &g->spans[srvi], method, g->spans[srvi].start, depth);
    g->spans[srvi].end = end;
    g->spans[cli].end = end + dur(r, 50000, 300000);
    return g->spans[cli].end;
}

static void gen_trace(struct gen *g, uint64_t t)
{
    static const char *const routes[] = {"/",
                                         "/api/products/{productId}",
                                         "/api/cart",
                                         "/api/cart",
                                         "/api/checkout",
                                         "/api/recommendations",
                                         "/api/data"};
    static const char *const names[] = {"GET /",
                                        "GET /api/products/{productId}",
                                        "GET /api/cart",
                                        "POST /api/cart",
                                        "POST /api/checkout",
                                        "GET /api/recommendations",
                                        "GET /api/data"};
    static const char *const agents[] = {
        ("Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
         "HeadlessChrome/120.0.6099.28 Safari/537.36"),
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:121.0) Gecko/20100101 Firefox/121.0",
        "python-requests/2.31.0",
    };
    struct rng *r = &g->r;
    static const int weights[] = {15, 35, 12, 12, 8, 8, 10};
    int pick = (int)rndn(r, 100), route = 0;
    while (pick >= weights[route])
        pick -= weights[route++];
    uint8_t tid[16];
    rnd_bytes(r, tid, 16);
    struct gspan *root = gspan_new(g, tid, NULL, SVC_FRONTEND, CN_KIND_SERVER, names[route], t);
    size_t rooti = (size_t)(root - g->spans);
    struct cn_buf *b = &root->body;
    const char *method = names[route][0] == 'G' ? "GET" : "POST";
    ATTR_S(b, 9, "http.request.method", method);
    ATTR_S(b, 9, "http.route", routes[route]);
    char target[96];
    if (route == 1)
        snprintf(target, sizeof(target), "/api/products/%s", g->products[rndn(r, 60)]);
    else
        snprintf(target, sizeof(target), "%s", routes[route]);
    ATTR_S(b, 9, "url.path", target);
    ATTR_S(b, 9, "url.scheme", "http");
    ATTR_S(b, 9, "server.address", "frontend-proxy");
    ATTR_I(b, 9, "server.port", 8080);
    ATTR_S(b, 9, "client.address", ip(r));
    ATTR_S(b, 9, "user_agent.original", agents[rndn(r, 3)]);
    ATTR_S(b, 9, "network.protocol.version", "1.1");
    ATTR_S(b, 9, "app.session.id", g->sessions[rndn(r, 3000)]);
    uint64_t e = t + 40000;
    switch (route) {
    case 0:
        e = rpc(g, &g->spans[rooti], SVC_CATALOG, "ListProducts", e, 1);
        e = rpc(g, &g->spans[rooti], SVC_CURRENCY, "GetSupportedCurrencies", e + 5000, 1);
        e = rpc(g, &g->spans[rooti], SVC_AD, "GetAds", e + 5000, 1);
        break;
    case 1:
        e = rpc(g, &g->spans[rooti], SVC_CATALOG, "GetProduct", e, 1);
        e = rpc(g, &g->spans[rooti], SVC_CURRENCY, "Convert", e + 5000, 1);
        e = rpc(g, &g->spans[rooti], SVC_RECO, "ListRecommendations", e + 5000, 1);
        break;
    case 2:
        e = rpc(g, &g->spans[rooti], SVC_CART, "GetCart", e, 1);
        e = rpc(g, &g->spans[rooti], SVC_CURRENCY, "Convert", e + 5000, 1);
        break;
    case 3:
        e = rpc(g, &g->spans[rooti], SVC_CART, "AddItem", e, 1);
        break;
    case 4:
        e = rpc(g, &g->spans[rooti], SVC_CHECKOUT, "PlaceOrder", e, 1);
        break;
    case 5:
        e = rpc(g, &g->spans[rooti], SVC_RECO, "ListRecommendations", e, 1);
        break;
    default:
        e = rpc(g, &g->spans[rooti], SVC_AD, "GetAds", e, 1);
    }
    root = &g->spans[rooti];
    int status = rndn(r, 200) == 0 ? 500 : 200;
    ATTR_I(&root->body, 9, "http.response.status_code", status);
    ATTR_I(&root->body, 9, "http.response.body.size", 200 + rndn(r, 20000));
    if (status == 500)
        root->status = CN_STATUS_ERROR;
    root->end = e + dur(r, 20000, 200000);
}

static void pb_resource(struct cn_buf *b, int svc, int inst, struct rng *r)
{
    char v[96];
    ATTR_S(b, 1, "service.name", svcs[svc].name);
    ATTR_S(b, 1, "service.namespace", "opentelemetry-demo");
    ATTR_S(b, 1, "service.version", "1.11.1");
    snprintf(v, sizeof(v), "%s-%d-7f9c4d5b8-%c%c%c%c%c", svcs[svc].name, inst, 'a' + svc,
             'k' + inst, 'q', 'z', 'x');
    ATTR_S(b, 1, "service.instance.id", v);
    ATTR_S(b, 1, "k8s.pod.name", v);
    ATTR_S(b, 1, "host.name", v);
    ATTR_S(b, 1, "k8s.namespace.name", "otel-demo");
    snprintf(v, sizeof(v), "gke-prod-pool-%d", (svc + inst) % 3);
    ATTR_S(b, 1, "k8s.node.name", v);
    ATTR_S(b, 1, "deployment.environment", "production");
    ATTR_S(b, 1, "host.arch", "amd64");
    ATTR_S(b, 1, "os.type", "linux");
    ATTR_S(b, 1, "os.description", "Debian GNU/Linux 12 (bookworm)");
    ATTR_I(b, 1, "process.pid", 1 + (int64_t)rndn(r, 60000));
    ATTR_S(b, 1, "process.runtime.name", svcs[svc].lang);
    ATTR_S(b, 1, "telemetry.sdk.name", "opentelemetry");
    ATTR_S(b, 1, "telemetry.sdk.language", svcs[svc].lang);
    ATTR_S(b, 1, "telemetry.sdk.version", "1.21.0");
    uint8_t cid[32];
    char hex[65];
    rnd_bytes(r, cid, 32);
    cn_hex_encode(hex, cid, 32);
    ATTR_S(b, 1, "container.id", hex);
}

struct corpus {
    struct cn_tel_batch *batches;
    uint8_t **bodies;
    size_t nbatches;
    const struct cn_span **ptrs;
    size_t nspans;
    uint64_t otlp_bytes;
    size_t ntraces;
};

/* Generates traces for `seconds` of traffic at `rate` traces/s and decodes them. */
static void realistic(struct corpus *c, size_t target_spans, uint64_t t0)
{
    struct gen *g = calloc(1, sizeof(*g));
    g->r.s = 1234567;
    for (int i = 0; i < 1000; i++)
        uuid(&g->r, g->users[i]);
    for (int i = 0; i < 3000; i++)
        uuid(&g->r, g->sessions[i]);
    for (int i = 0; i < 60; i++)
        snprintf(g->products[i], sizeof(g->products[i]), "%c%c%08X", 'A' + i % 26, '0' + i % 10,
                 (unsigned)rnd(&g->r));
    for (int i = 0; i < 64; i++)
        snprintf(ipbuf[i], sizeof(ipbuf[i]), "10.%u.%u.%u", 8 + rndn(&g->r, 4), rndn(&g->r, 256),
                 2 + rndn(&g->r, 250));
    g->cap = target_spans + 4096;
    g->spans = calloc(g->cap, sizeof(*g->spans));
    /* About 10000 spans/s: a trace starts every ~1 ms. */
    uint64_t t = t0;
    while (g->n < target_spans) {
        gen_trace(g, t);
        c->ntraces++;
        t += 400000 + rnd(&g->r) % 1600000;
    }
    /* SDK batches: per (service, instance, scope), up to 512 spans, in start order. */
    static const char *const scopes[] = {"io.opentelemetry.grpc-1.6", "io.opentelemetry.http",
                                         "manual", "io.opentelemetry.db"};
    c->batches = calloc(g->n / 16 + NSVC * NINST * 4, sizeof(*c->batches));
    c->bodies = calloc(g->n / 16 + NSVC * NINST * 4, sizeof(*c->bodies));
    c->ptrs = calloc(g->n, sizeof(*c->ptrs));
    struct rng rr = {99};
    for (int svc = 0; svc < NSVC; svc++)
        for (int inst = 0; inst < NINST; inst++)
            for (int sc = 0; sc < 4; sc++) {
                size_t i = 0;
                while (i < g->n) {
                    struct cn_buf spans;
                    cn_buf_init(&spans, 64 << 20);
                    size_t k = 0;
                    for (; i < g->n && k < 512; i++) {
                        struct gspan *s = &g->spans[i];
                        if (s->svc != svc || s->inst != inst || s->scope != sc)
                            continue;
                        struct cn_buf m;
                        cn_buf_init(&m, 1 << 20);
                        pb_bytes(&m, 1, s->tid, 16);
                        pb_bytes(&m, 2, s->sid, 8);
                        if (!cn_id_is_zero(s->pid, 8))
                            pb_bytes(&m, 4, s->pid, 8);
                        pb_str(&m, 5, s->name);
                        pb_u64(&m, 6, (uint64_t)s->kind);
                        pb_fixed(&m, 7, s->start, 8);
                        pb_fixed(&m, 8, s->end, 8);
                        cn_buf_append(&m, s->body.ptr, s->body.len);
                        if (s->status) {
                            struct cn_buf st;
                            cn_buf_init(&st, 1 << 10);
                            if (s->status_msg)
                                pb_str(&st, 2, s->status_msg);
                            pb_u64(&st, 3, (uint64_t)s->status);
                            pb_bytes(&m, 15, st.ptr, st.len);
                            cn_buf_release(&st);
                        }
                        pb_fixed(&m, 16, s->kind == CN_KIND_SERVER ? 0x301 : 0x101, 4);
                        pb_bytes(&spans, 2, m.ptr, m.len);
                        cn_buf_release(&m);
                        k++;
                    }
                    if (k == 0) {
                        cn_buf_release(&spans);
                        break;
                    }
                    struct cn_buf res, scope, ss, rs, req;
                    cn_buf_init(&res, 1 << 20);
                    cn_buf_init(&scope, 1 << 20);
                    cn_buf_init(&ss, 64 << 20);
                    cn_buf_init(&rs, 64 << 20);
                    cn_buf_init(&req, 64 << 20);
                    struct rng rres = {(uint64_t)(svc * 10 + inst + 1)};
                    pb_resource(&res, svc, inst, &rres);
                    pb_str(&scope, 1, scopes[sc]);
                    pb_str(&scope, 2, "1.32.0-alpha");
                    pb_bytes(&ss, 1, scope.ptr, scope.len);
                    cn_buf_append(&ss, spans.ptr, spans.len);
                    pb_bytes(&rs, 1, res.ptr, res.len);
                    pb_bytes(&rs, 2, ss.ptr, ss.len);
                    pb_str(&rs, 3, "https://opentelemetry.io/schemas/1.24.0");
                    pb_bytes(&req, 1, rs.ptr, rs.len);
                    struct cn_tel_batch *bt = &c->batches[c->nbatches];
                    cn_tel_batch_init(bt, 256 << 20);
                    char err[256];
                    if (cn_otlp_pb_decode_traces(bt, (const uint8_t *)req.ptr, req.len, NULL, err,
                                                 sizeof(err)) != 0)
                        fail_msg("decode: %s", err);
                    assert_int_equal(bt->num_spans, k);
                    for (size_t j = 0; j < bt->num_spans; j++)
                        c->ptrs[c->nspans++] = &bt->spans[j];
                    c->otlp_bytes += req.len;
                    c->bodies[c->nbatches++] = (uint8_t *)req.ptr; /* the batch points into it */
                    cn_buf_release(&res);
                    cn_buf_release(&scope);
                    cn_buf_release(&ss);
                    cn_buf_release(&rs);
                    cn_buf_release(&spans);
                }
            }
    (void)rr;
    assert_int_equal(c->nspans, g->n);
    for (size_t i = 0; i < g->n; i++)
        cn_buf_release(&g->spans[i].body);
    free(g->spans);
    free(g);
}

static void corpus_release(struct corpus *c)
{
    for (size_t i = 0; i < c->nbatches; i++) {
        cn_tel_batch_release(&c->batches[i]);
        free(c->bodies[i]);
    }
    free(c->batches);
    free(c->bodies);
    free(c->ptrs);
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts); /* CPU time: the machine may be busy */
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int cmp_span_id(const void *a, const void *b)
{
    return memcmp((*(const struct cn_span *const *)a)->span_id,
                  (*(const struct cn_span *const *)b)->span_id, 8);
}

/* The original of a span read back, by span ID (the realistic set's are distinct). */
struct originals {
    const struct cn_span **by_id;
    size_t n;
    size_t matched;
};

static void match_original(struct originals *o, const struct cn_span *s)
{
    const struct cn_span *key = s;
    const struct cn_span **w = bsearch(&key, o->by_id, o->n, sizeof(*o->by_id), cmp_span_id);
    assert_non_null(w);
    assert_true(span_eq(s, *w));
    o->matched++;
}

static int match_cb(void *ctx, const struct cn_span *s, const struct cn_log *l)
{
    (void)l;
    match_original(ctx, s);
    return 0;
}

/* Bytes per span on disk for realistic data; the bound below is set from the measurement
 * (see the printed figures) with a little room, so a format change that costs space fails
 * here. */
#define MAX_BYTES_PER_SPAN 28.0

static void bytes_per_span(void **state)
{
    (void)state;
    struct corpus c = {0};
    const size_t target = 50000;
    realistic(&c, target, 1700000000123456789ull);
    size_t attrs = 0;
    for (size_t i = 0; i < c.nspans; i++)
        attrs += c.ptrs[i]->attrs.num;
    struct originals orig = {malloc(c.nspans * sizeof(*orig.by_id)), c.nspans, 0};
    memcpy(orig.by_id, c.ptrs, c.nspans * sizeof(*orig.by_id));
    qsort(orig.by_id, c.nspans, sizeof(*orig.by_id), cmp_span_id);

    double t0 = now_s();
    struct cn_seg_info info;
    char err[256];
    assert_int_equal(cn_seg_write_spans(path, c.ptrs, c.nspans, &info, err, sizeof(err)), 0);
    double t1 = now_s();
    struct cn_seg *seg = open_ok(path);
    size_t n = 0;
    assert_int_equal(cn_seg_scan(seg, 0, UINT64_MAX, NULL, count_rows, &n), 0);
    double t2 = now_s();
    assert_int_equal(n, c.nspans);
    /* Trace lookups: 50 traces spread over the index (few enough for sanitizer builds). */
    size_t lookups = 0, found = 0;
    for (size_t i = 0; i < c.nspans && lookups < 50; i += c.nspans / 50) {
        struct cn_tel_batch b;
        cn_tel_batch_init(&b, 64 << 20);
        assert_int_equal(cn_seg_trace(seg, c.ptrs[i]->trace_id, &b), 0);
        assert_true(b.num_spans > 0);
        found += b.num_spans;
        lookups++;
        cn_tel_batch_release(&b);
    }
    double t3 = now_s();
    assert_true(found >= lookups);
    /* Exactly what was written, every field (outside the timed part). */
    assert_int_equal(cn_seg_scan(seg, 0, UINT64_MAX, NULL, match_cb, &orig), 0);
    assert_int_equal(orig.matched, c.nspans);
    for (size_t i = 7; i < c.nspans; i += c.nspans / 10) {
        struct cn_tel_batch b;
        cn_tel_batch_init(&b, 64 << 20);
        assert_int_equal(cn_seg_trace(seg, c.ptrs[i]->trace_id, &b), 0);
        for (size_t k = 0; k < b.num_spans; k++)
            match_original(&orig, &b.spans[k]);
        cn_tel_batch_release(&b);
    }

    double bps = (double)info.bytes / (double)c.nspans;
    print_message("realistic set: %zu spans, %zu traces (%.1f spans/trace), %.1f attributes/span, "
                  "%.0f bytes of OTLP/protobuf per span\n",
                  c.nspans, c.ntraces, (double)c.nspans / (double)c.ntraces,
                  (double)attrs / (double)c.nspans, (double)c.otlp_bytes / (double)c.nspans);
    print_message("segment: %llu bytes, %.2f bytes/span (%.0fx smaller than OTLP), %u groups\n",
                  (unsigned long long)info.bytes, bps, (double)c.otlp_bytes / (double)info.bytes,
                  info.num_groups);
    print_message("CPU time: write %.0f spans/s, full scan %.0f spans/s, %zu trace lookups at "
                  "%.0f/s\n",
                  (double)c.nspans / (t1 - t0), (double)c.nspans / (t2 - t1), lookups,
                  (double)lookups / (t3 - t2));
    /* Where the bytes go, by column. */
    struct {
        char name[48];
        uint64_t bytes;
    } cols[32] = {{{0}, 0}};
    size_t ncols = 0;
    struct cn_seg_block blk;
    for (size_t i = 0; cn_seg_block(seg, i, &blk) == 0; i++) {
        const char *n = strchr(blk.name, '/');
        char key[48];
        snprintf(key, sizeof(key), "%s", n ? n + 1 : blk.name);
        char *colon = strchr(key, ':');
        if (colon)
            *colon = '\0';
        size_t k = 0;
        while (k < ncols && strcmp(cols[k].name, key) != 0)
            k++;
        if (k == ncols)
            snprintf(cols[ncols++].name, sizeof(cols[0].name), "%s", key);
        cols[k].bytes += blk.len;
    }
    for (size_t k = 0; k < ncols; k++)
        print_message("  %-16s %6.2f bytes/span\n", cols[k].name,
                      (double)cols[k].bytes / (double)c.nspans);
    assert_true(bps < MAX_BYTES_PER_SPAN);
    cn_seg_close(seg);
    free(orig.by_id);
    corpus_release(&c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(spans_roundtrip, setup, teardown),
        cmocka_unit_test_setup_teardown(logs_roundtrip, setup, teardown),
        cmocka_unit_test_setup_teardown(row_groups, setup, teardown),
        cmocka_unit_test_setup_teardown(run_blocks, setup, teardown),
        cmocka_unit_test_setup_teardown(dctx_per_thread, setup, teardown),
        cmocka_unit_test_setup_teardown(bloom_cache_budget, setup, teardown),
        cmocka_unit_test_setup_teardown(footer_cache_budget, setup, teardown),
        cmocka_unit_test_setup_teardown(time_runs_order, setup, teardown),
        cmocka_unit_test_setup_teardown(time_scan_bounds, setup, teardown),
        cmocka_unit_test_setup_teardown(scan_filtered, setup, teardown),
        cmocka_unit_test_setup_teardown(trace_index_and_bloom, setup, teardown),
        cmocka_unit_test_setup_teardown(token_bloom, setup, teardown),
        cmocka_unit_test_setup_teardown(distinct_values, setup, teardown),
        cmocka_unit_test_setup_teardown(empty_segment, setup, teardown),
        cmocka_unit_test_setup_teardown(bad_input, setup, teardown),
        cmocka_unit_test_setup_teardown(corrupt_group_block, setup, teardown),
        cmocka_unit_test_setup_teardown(corrupt_index_and_blooms, setup, teardown),
        cmocka_unit_test_setup_teardown(corrupt_footer, setup, teardown),
        cmocka_unit_test_setup_teardown(truncated, setup, teardown),
        cmocka_unit_test_setup_teardown(open_mem, setup, teardown),
        cmocka_unit_test_setup_teardown(bytes_per_span, setup, teardown),
        cmocka_unit_test(make_corpus),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
