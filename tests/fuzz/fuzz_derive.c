/* Fuzzes the derived tables (derive.h): the input is a script of span batches, clock moves
 * and queries, run against tiny limits so that every cap, eviction and expiry path is hit.
 * Spans carry whatever the network may send: any times (0, the far future, end before start),
 * any kind and status numbers, zero IDs, peer attributes, links. Properties: every limit holds
 * in the stats; queries return 0 or their documented errors, and what they return is
 * consistent (errors <= count, p50 <= p95 <= p99 within [min, max], summaries newest first
 * inside the range, at most limit of them).
 *
 * Script: one byte of options, then operations chosen by a byte:
 *   0 batch:   n = 1 + b % 8, then n spans of 10 bytes (see read_span)
 *   1 clock:   now += b * 100 ms, then cn_derive_expire
 *   2 RED:     service, operation (0xff: whole service), kind mask, from, length, step
 *   3 edges and summaries: service (0xff: all), depth, from, length, limit */
#include "telemetry/derive.h"

#include <math.h>

#define SEC 1000000000ull
#define MS  1000000ull
#define T0  (1700000000ull * SEC)

static void check(int ok)
{
    if (!ok)
        __builtin_trap();
}

struct in {
    const uint8_t *p;
    size_t n;
};

static int get(struct in *in, uint8_t *out)
{
    if (in->n == 0)
        return 0;
    *out = *in->p++;
    in->n--;
    return 1;
}

static uint8_t byte(struct in *in)
{
    uint8_t b = 0;
    get(in, &b);
    return b;
}

static const char *services[] = {"gateway", "api", "db", "a-very-long-service-name", "", "api"};
static const char *names[] = {"GET /", "POST /x", "", "caf\xc3\xa9-op", "SELECT", "x"};
static const char *peer_keys[] = {"peer.service", "server.address", "net.peer.name"};
static const char *peers[] = {"postgres", "10.0.0.1", "cache", "db"};

static struct cn_resource resources[CN_ARRAY_LEN(services)];

static void put_id(uint8_t *dst, size_t n, uint8_t v)
{
    memset(dst, 0, n);
    dst[n - 1] = v;
}

/* 10 bytes: trace | kind << 3 | status << 6; span ID; parent ID (0: root); service | name << 3
 * | attribute << 6; start in ms (2 bytes; 0xffff: far future, 0: time 0); duration in us (2
 * bytes; 0xff.. : ends before it starts); links | link trace << 2; link span ID. */
static void read_span(struct in *in, struct cn_span *s, struct cn_kv *kv, struct cn_link *links,
                      uint64_t now)
{
    uint8_t b[10];
    for (int i = 0; i < 10; i++)
        b[i] = byte(in);
    memset(s, 0, sizeof(*s));
    put_id(s->trace_id, 16, (uint8_t)(1 + (b[0] & 7)));
    s->kind = (uint8_t)(b[0] >> 3 & 7);
    s->status_code = (uint8_t)(b[0] >> 6);
    put_id(s->span_id, 8, b[1]);
    put_id(s->parent_id, 8, b[2]);
    size_t svc = (b[3] & 7) % (CN_ARRAY_LEN(services) + 1);
    s->resource = svc < CN_ARRAY_LEN(services) ? &resources[svc] : NULL;
    s->name = cn_slice_of(names[(b[3] >> 3 & 7) % CN_ARRAY_LEN(names)]);
    if (b[3] >> 6) {
        kv->key = cn_slice_of(peer_keys[(b[3] >> 6) - 1]);
        kv->val.type = CN_VAL_STR;
        kv->val.u.s = cn_slice_of(peers[b[1] % CN_ARRAY_LEN(peers)]);
        s->attrs.items = kv;
        s->attrs.num = 1;
    }
    uint16_t start = (uint16_t)(b[4] << 8 | b[5]), dur = (uint16_t)(b[6] << 8 | b[7]);
    if (start == 0xffff)
        s->start_ns = UINT64_MAX - dur;
    else if (start == 0)
        s->start_ns = 0;
    else
        s->start_ns = now - 30 * SEC + start * MS;
    if (b[6] == 0xff)
        s->end_ns = s->start_ns ? s->start_ns - 1 : 0;
    else
        s->end_ns = s->start_ns + dur * 1000ull;
    if (s->end_ns < s->start_ns && b[6] != 0xff)
        s->end_ns = UINT64_MAX; /* overflowed: the longest span there is */
    s->num_links = b[8] & 3;
    for (uint32_t i = 0; i < s->num_links; i++) {
        memset(&links[i], 0, sizeof(links[i]));
        put_id(links[i].trace_id, 16, (uint8_t)(1 + (b[8] >> 2 & 7)));
        put_id(links[i].span_id, 8, (uint8_t)(b[9] + i));
    }
    s->links = links;
}

static void check_stats(struct cn_derive *d, const struct cn_derive_opts *o)
{
    struct cn_derive_stats st;
    cn_derive_stats(d, &st);
    check(st.pending <= o->max_pending);
    check(st.traces <= o->max_traces);
    check(st.services <= o->max_services);
    check(st.operations <= o->max_operations);
    check(st.edges <= o->max_edges);
    check(st.names <= o->max_names);
    check(st.red_spans <= st.spans);
    check(st.alloc_failures == 0);
    /* Cells refuse new rows past the budget; rows already there may grow by a sketch each. */
    check(st.bucket_bytes <= o->max_bucket_bytes + 64 * 1024);
    check(st.memory_bytes == cn_derive_memory(d));
}

static void check_quantiles(double min, double max, double p50, double p95, double p99)
{
    check(min <= p50 && p50 <= p95 && p95 <= p99 && p99 <= max);
}

static uint64_t range_from(uint8_t b, uint64_t now)
{
    return b == 0xff ? 0 : now - 60 * SEC + b * SEC / 2;
}

static void query_red(struct cn_derive *d, struct in *in, uint64_t now, uint64_t bucket)
{
    uint8_t svc = byte(in), op = byte(in), mask = byte(in), from = byte(in), len = byte(in),
            step = byte(in);
    struct cn_derive_red_query q = {
        .service = cn_slice_of(services[svc % CN_ARRAY_LEN(services)]),
        .operation =
            op == 0xff ? (struct cn_slice){NULL, 0} : cn_slice_of(names[op % CN_ARRAY_LEN(names)]),
        .kind_mask = mask,
        .from_ns = range_from(from, now),
        .step_ns = step == 0xff ? bucket + 1 : step * bucket,
    };
    q.to_ns = len == 0xff ? UINT64_MAX : q.from_ns + len * SEC;
    struct cn_derive_red_point *p;
    size_t n;
    int rc = cn_derive_red(d, &p, &n, &q);
    check(rc == 0 || rc == CN_ENOENT || rc == CN_EINVAL || rc == CN_ELIMIT);
    check(rc == 0 || (p == NULL && n == 0));
    for (size_t i = 0; i < n; i++) {
        check(p[i].errors <= p[i].count);
        check(i == 0 || p[i].t_ns > p[i - 1].t_ns);
        if (p[i].count)
            check_quantiles(p[i].min_ns, p[i].max_ns, p[i].p50_ns, p[i].p95_ns, p[i].p99_ns);
        else
            check(p[i].p99_ns == 0 && p[i].rate == 0);
    }
    free(p);
}

static void query_graph(struct cn_derive *d, struct in *in, uint64_t now)
{
    uint8_t svc = byte(in), depth = byte(in), from = byte(in), len = byte(in), limit = byte(in);
    struct cn_derive_edge_query q = {
        .service = svc == 0xff ? (struct cn_slice){NULL, 0}
                               : cn_slice_of(services[svc % CN_ARRAY_LEN(services)]),
        .depth = depth % 5,
        .from_ns = range_from(from, now),
    };
    q.to_ns = len == 0xff ? UINT64_MAX : q.from_ns + len * SEC;
    struct cn_derive_edge *e;
    size_t n;
    int rc = cn_derive_edges(d, &e, &n, &q);
    check(rc == 0 || rc == CN_ENOENT || rc == CN_EINVAL);
    for (size_t i = 0; i < n; i++) {
        check(e[i].count > 0 && e[i].errors <= e[i].count);
        check(e[i].server_p50_ns <= e[i].server_p95_ns && e[i].server_p95_ns <= e[i].server_p99_ns);
        check(e[i].client_p50_ns <= e[i].client_p95_ns && e[i].client_p95_ns <= e[i].client_p99_ns);
        check(!e[i].uninstrumented || e[i].server_p99_ns == 0);
    }
    free(e);

    struct cn_derive_trace *t;
    rc = cn_derive_traces(d, &t, &n, q.from_ns, q.to_ns, limit);
    check(rc == 0 || (rc == CN_EINVAL && (limit == 0 || q.to_ns <= q.from_ns)));
    for (size_t i = 0; i < n; i++) {
        check(n <= limit);
        check(t[i].start_ns >= q.from_ns && t[i].start_ns < q.to_ns);
        check(i == 0 || t[i].start_ns <= t[i - 1].start_ns);
        check(t[i].num_errors <= t[i].num_spans && t[i].num_spans > 0);
    }
    free(t);
    for (uint8_t i = 1; i <= 8; i++) {
        uint8_t id[16];
        struct cn_derive_trace one;
        put_id(id, 16, i);
        if (cn_derive_trace(d, &one, id) == 0)
            check(one.num_services <= CN_DERIVE_TRACE_SERVICES_MAX && one.num_spans > 0);
    }
    struct cn_slice *s;
    check(cn_derive_services(d, &s, &n) == 0);
    for (size_t i = 1; i < n; i++)
        check(s[i].len > 0 || s[i - 1].len == 0);
    free(s);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct in in = {data, size};
    for (size_t i = 0; i < CN_ARRAY_LEN(services); i++)
        resources[i].service = cn_slice_of(services[i]);
    uint8_t opt = byte(&in);
    struct cn_derive_opts o;
    cn_derive_opts_default(&o);
    o.sketch_alpha = opt & 1 ? 0.05 : 0.01;
    o.sketch_max_bins = opt & 2 ? 8 : 64;
    o.bucket_ns = SEC;
    o.num_buckets = 4 + (opt >> 2 & 3);
    o.max_future_ns = 5 * SEC;
    o.max_bucket_bytes = 16 << 10;
    o.red_roots = opt >> 4 & 1;
    o.uninstrumented_edges = opt >> 5 & 1;
    o.max_services = 4;
    o.max_operations = 6;
    o.max_edges = 5;
    o.max_names = 12;
    o.max_name_bytes = 5;
    o.pair_window_ns = 3 * SEC;
    o.max_pending = 4;
    o.max_traces = opt >> 6 ? 3 : 6;
    o.max_trace_services = 3;
    struct cn_derive *d = cn_derive_new(&o);
    check(d != NULL);

    uint64_t now = T0 + 10 * SEC;
    struct cn_span spans[8];
    struct cn_kv kvs[8];
    struct cn_link links[8][3];
    uint8_t op;
    for (int ops = 0; ops < 256 && get(&in, &op); ops++) {
        switch (op % 4) {
        case 0: {
            size_t n = 1 + byte(&in) % 8;
            for (size_t i = 0; i < n; i++)
                read_span(&in, &spans[i], &kvs[i], links[i], now);
            cn_derive_add_spans(d, spans, n, now);
            break;
        }
        case 1:
            now += byte(&in) * 100 * MS;
            cn_derive_expire(d, now);
            break;
        case 2:
            query_red(d, &in, now, o.bucket_ns);
            break;
        default:
            query_graph(d, &in, now);
            break;
        }
        check_stats(d, &o);
    }
    cn_derive_free(d);
    return 0;
}
