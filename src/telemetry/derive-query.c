/* Queries over the derived tables, under the read lock. */
#include "telemetry/derive-internal.h"

static const double red_qs[] = {0.5, 0.95, 0.99};

static uint16_t find_service(const struct cn_derive *d, struct cn_slice name)
{
    uint32_t id = cn_derive__find_name(d, name);
    return id == NAME_NONE ? SVC_NONE : d->names.items[id].svc;
}

static struct cn_slice svc_slice(const struct cn_derive *d, uint16_t svc)
{
    return svc == SVC_NONE ? CN_SLICE_LIT(CN_DERIVE_OVERFLOW_NAME)
                           : cn_derive__name(d, d->services[svc].name);
}

static int slice_cmp(struct cn_slice a, struct cn_slice b)
{
    int c = a.len && b.len ? memcmp(a.ptr, b.ptr, CN_MIN(a.len, b.len)) : 0;
    if (c != 0)
        return c;
    return (a.len > b.len) - (a.len < b.len);
}

/* Bucket numbers [*b_from, *b_to) for [from, to): from rounded down, to rounded up. */
static void bucket_range(const struct cn_derive *d, uint64_t from, uint64_t to, uint64_t *b_from,
                         uint64_t *b_to)
{
    uint64_t w = d->o.bucket_ns;
    *b_from = from / w;
    *b_to = to / w + (to % w != 0);
}

/* The kept buckets among [b0, b1): *lo .. *hi inclusive; 0 when there are none. */
static int kept_range(const struct cn_derive *d, uint64_t b0, uint64_t b1, uint64_t *lo,
                      uint64_t *hi)
{
    if (!d->started || b1 == 0)
        return 0;
    *lo = CN_MAX(b0, d->ring_lo);
    *hi = CN_MIN(b1 - 1, d->ring_head);
    return *lo <= *hi;
}

/* ---- RED ---- */

static void fill_point(const struct cn_derive *d, struct cn_derive_red_point *pt,
                       const struct cn_sketch *acc, uint64_t errors, uint64_t step)
{
    double secs = (double)step / 1e9;
    pt->count = acc->count;
    pt->errors = errors;
    pt->rate = (double)acc->count / secs;
    pt->error_rate = (double)errors / secs;
    if (acc->count == 0)
        return;
    pt->min_ns = acc->min;
    pt->max_ns = acc->max;
    pt->mean_ns = acc->sum / (double)acc->count;
    double v[3];
    if (cn_sketch_quantiles(acc, &d->skc, v, red_qs, 3) == 0) {
        pt->p50_ns = v[0];
        pt->p95_ns = v[1];
        pt->p99_ns = v[2];
    }
}

/* The series a query reads into ids (at most NUM_KINDS). Returns how many, or CN_ENOENT. */
static int red_series(const struct cn_derive *d, uint32_t *ids, const struct cn_derive_red_query *q)
{
    uint16_t svc = find_service(d, q->service);
    if (svc == SVC_NONE)
        return CN_ENOENT;
    int n = 0;
    for (uint8_t k = 0; k < NUM_KINDS; k++) {
        if (q->kind_mask && !(q->kind_mask >> k & 1))
            continue;
        uint32_t id = q->operation.ptr ? cn_derive__find_series(d, svc, k, q->operation)
                                       : d->services[svc].series[k];
        if (id != IDX_NONE)
            ids[n++] = id;
    }
    if (q->operation.ptr && n == 0)
        return CN_ENOENT;
    return n;
}

/* One step of a RED query: the series ids[0..n) merged over the pieces of its range. */
struct red_acc {
    const struct cn_derive *d;
    const uint32_t *ids;
    int n;
    uint64_t errors;
    struct cn_sketch acc;
};

static int red_piece(void *ctx, const struct bucket *b)
{
    struct red_acc *ra = ctx;
    for (int i = 0; i < ra->n; i++) {
        const struct red_cell *c =
            cn_derive__find_cell(&b->red, sizeof(struct red_cell), ra->ids[i]);
        if (!c)
            continue;
        ra->errors += c->errors;
        if (cn_sketch_merge(&ra->acc, &ra->d->skc, &c->sk) != 0)
            return CN_ENOMEM;
    }
    return 0;
}

int cn_derive_red(struct cn_derive *d, struct cn_derive_red_point **out_points, size_t *out_num,
                  const struct cn_derive_red_query *q)
{
    *out_points = NULL;
    *out_num = 0;
    uint64_t w = d->o.bucket_ns;
    uint64_t step = q->step_ns ? q->step_ns : w;
    if (q->to_ns <= q->from_ns || step % w != 0)
        return CN_EINVAL;
    uint64_t k = step / w, b_from, b_to;
    bucket_range(d, q->from_ns, q->to_ns, &b_from, &b_to);
    uint64_t span = b_to - b_from;
    uint64_t npts = span / k + (span % k != 0);
    if (npts > CN_DERIVE_MAX_POINTS)
        return CN_ELIMIT;

    pthread_rwlock_rdlock(&d->lock);
    uint32_t ids[NUM_KINDS];
    int n = red_series(d, ids, q);
    int rc = n < 0 ? n : 0;
    struct cn_derive_red_point *pts = NULL;
    if (rc == 0) {
        pts = calloc(npts, sizeof(*pts));
        if (!pts)
            rc = CN_ENOMEM;
    }
    struct red_acc ra = {d, ids, n, 0, {0}};
    cn_sketch_init(&ra.acc);
    for (uint64_t p = 0; rc == 0 && p < npts; p++) {
        uint64_t b0 = b_from + p * k;
        uint64_t b1 = b_to - b0 > k ? b0 + k : b_to;
        uint64_t lo, hi;
        pts[p].t_ns = b0 * w;
        ra.errors = 0;
        if (kept_range(d, b0, b1, &lo, &hi))
            rc = cn_derive__each_piece(d, lo, hi, 0, red_piece, &ra);
        fill_point(d, &pts[p], &ra.acc, ra.errors, step);
        cn_sketch_clear(&ra.acc);
    }
    pthread_rwlock_unlock(&d->lock);
    cn_sketch_release(&ra.acc);
    if (rc != 0) {
        free(pts);
        return rc;
    }
    *out_points = pts;
    *out_num = npts;
    return 0;
}

/* ---- services and operations ---- */

static int cmp_slice_p(const void *a, const void *b)
{
    return slice_cmp(*(const struct cn_slice *)a, *(const struct cn_slice *)b);
}

int cn_derive_services(struct cn_derive *d, struct cn_slice **out_names, size_t *out_num)
{
    *out_names = NULL;
    *out_num = 0;
    pthread_rwlock_rdlock(&d->lock);
    size_t n = d->num_services;
    struct cn_slice *v = n ? malloc(n * sizeof(*v)) : NULL;
    for (size_t i = 0; v && i < n; i++)
        v[i] = svc_slice(d, (uint16_t)i);
    pthread_rwlock_unlock(&d->lock);
    if (n && !v)
        return CN_ENOMEM;
    if (n > 1)
        qsort(v, n, sizeof(*v), cmp_slice_p);
    *out_names = v;
    *out_num = n;
    return 0;
}

static int cmp_op(const void *a, const void *b)
{
    const struct cn_derive_op *x = a, *y = b;
    int c = slice_cmp(x->name, y->name);
    return c ? c : (int)x->kind - (int)y->kind;
}

int cn_derive_operations(struct cn_derive *d, struct cn_derive_op **out_ops, size_t *out_num,
                         struct cn_slice service)
{
    *out_ops = NULL;
    *out_num = 0;
    pthread_rwlock_rdlock(&d->lock);
    uint16_t svc = find_service(d, service);
    if (svc == SVC_NONE) {
        pthread_rwlock_unlock(&d->lock);
        return CN_ENOENT;
    }
    size_t n = 0;
    for (uint32_t i = 0; i < d->num_series; i++)
        n += d->series[i].svc == svc && d->series[i].op != NAME_NONE;
    struct cn_derive_op *v = n ? malloc(n * sizeof(*v)) : NULL;
    size_t j = 0;
    for (uint32_t i = 0; v && i < d->num_series; i++) {
        const struct series *se = &d->series[i];
        if (se->svc == svc && se->op != NAME_NONE)
            v[j++] = (struct cn_derive_op){cn_derive__name(d, se->op), se->kind};
    }
    pthread_rwlock_unlock(&d->lock);
    if (n && !v)
        return CN_ENOMEM;
    if (n > 1)
        qsort(v, n, sizeof(*v), cmp_op);
    *out_ops = v;
    *out_num = n;
    return 0;
}

int cn_derive_span_names(struct cn_derive *d, struct cn_derive_op **out_ops, size_t *out_num,
                         struct cn_slice service)
{
    *out_ops = NULL;
    *out_num = 0;
    pthread_rwlock_rdlock(&d->lock);
    uint16_t svc = service.ptr ? find_service(d, service) : SVC_NONE;
    if (service.ptr && svc == SVC_NONE) {
        pthread_rwlock_unlock(&d->lock);
        return CN_ENOENT;
    }
    size_t n = service.ptr ? d->services[svc].num_span_names : d->num_spnames;
    struct cn_derive_op *v = n ? malloc(n * sizeof(*v)) : NULL;
    size_t j = 0;
    for (uint32_t i = 0; v && i < d->num_spnames && j < n; i++) {
        const struct spname *e = &d->spnames[i];
        if (!service.ptr || e->svc == svc)
            v[j++] = (struct cn_derive_op){cn_derive__name(d, e->name), e->kind};
    }
    pthread_rwlock_unlock(&d->lock);
    if (n && !v)
        return CN_ENOMEM;
    if (j > 1)
        qsort(v, j, sizeof(*v), cmp_op);
    /* Every service's: the same pair from two services once. */
    size_t k = 0;
    for (size_t i = 0; i < j; i++)
        if (k == 0 || cmp_op(&v[k - 1], &v[i]) != 0)
            v[k++] = v[i];
    if (k == 0)
        cn_free(&v);
    *out_ops = v;
    *out_num = k;
    return 0;
}

/* ---- edges ---- */

struct eacc {
    uint64_t count, errors;
    struct cn_sketch server, client;
    int selected;
};

static int cmp_edge(const void *a, const void *b)
{
    const struct cn_derive_edge *x = a, *y = b;
    int c = slice_cmp(x->caller, y->caller);
    if (!c)
        c = slice_cmp(x->callee, y->callee);
    if (!c)
        c = (int)x->type - (int)y->type;
    return c ? c : (int)x->uninstrumented - (int)y->uninstrumented;
}

struct edges_acc {
    const struct cn_derive *d;
    struct eacc *acc;
};

static int edges_piece(void *ctx, const struct bucket *b)
{
    const struct edges_acc *x = ctx;
    const struct edge_cell *cells = b->edge.cells;
    for (uint32_t i = 0; i < b->edge.num; i++) {
        const struct edge_cell *c = &cells[i];
        struct eacc *a = &x->acc[c->edge];
        a->count += c->count;
        a->errors += c->errors;
        if (cn_sketch_merge(&a->server, &x->d->skc, &c->server) != 0 ||
            cn_sketch_merge(&a->client, &x->d->skc, &c->client) != 0)
            return CN_ENOMEM;
    }
    return 0;
}

/* Sums the edge cells of [from, to) into acc (num_edges entries). */
static int edges_sum(struct cn_derive *d, struct eacc *acc, uint64_t from, uint64_t to)
{
    uint64_t b_from, b_to, lo, hi;
    bucket_range(d, from, to, &b_from, &b_to);
    if (!kept_range(d, b_from, b_to, &lo, &hi))
        return 0;
    struct edges_acc x = {d, acc};
    return cn_derive__each_piece(d, lo, hi, 1, edges_piece, &x);
}

/* Selects the edges with traffic within depth hops of the name center (0: no limit). */
static int edges_around(const struct cn_derive *d, struct eacc *acc, uint32_t center,
                        uint32_t depth)
{
    uint32_t *dist = malloc((size_t)d->names.num * sizeof(*dist));
    if (!dist)
        return CN_ENOMEM;
    memset(dist, 0xff, (size_t)d->names.num * sizeof(*dist));
    dist[center] = 0;
    for (uint32_t hop = 1; depth == 0 || hop <= depth; hop++) {
        int grew = 0;
        for (uint32_t i = 0; i < d->num_edges; i++) {
            const struct edge *e = &d->edges[i];
            if (!acc[i].count || acc[i].selected)
                continue;
            uint32_t *a = &dist[e->caller], *b = &dist[e->callee];
            if (*a >= hop && *b >= hop)
                continue;
            acc[i].selected = 1;
            *a = CN_MIN(*a, hop);
            *b = CN_MIN(*b, hop);
            grew = 1;
        }
        if (!grew)
            break;
    }
    free(dist);
    return 0;
}

static void fill_edge(const struct cn_derive *d, struct cn_derive_edge *out, const struct edge *e,
                      const struct eacc *a)
{
    double v[3];
    out->caller = cn_derive__name(d, e->caller);
    out->callee = cn_derive__name(d, e->callee);
    out->type = e->type;
    out->uninstrumented = e->uninstrumented;
    out->count = a->count;
    out->errors = a->errors;
    if (cn_sketch_quantiles(&a->server, &d->skc, v, red_qs, 3) == 0) {
        out->server_p50_ns = v[0];
        out->server_p95_ns = v[1];
        out->server_p99_ns = v[2];
    }
    if (cn_sketch_quantiles(&a->client, &d->skc, v, red_qs, 3) == 0) {
        out->client_p50_ns = v[0];
        out->client_p95_ns = v[1];
        out->client_p99_ns = v[2];
    }
}

int cn_derive_edges(struct cn_derive *d, struct cn_derive_edge **out_edges, size_t *out_num,
                    const struct cn_derive_edge_query *q)
{
    *out_edges = NULL;
    *out_num = 0;
    if (q->to_ns <= q->from_ns)
        return CN_EINVAL;
    pthread_rwlock_rdlock(&d->lock);
    int rc = 0;
    uint32_t center = NAME_NONE;
    if (q->service.ptr && (center = cn_derive__find_name(d, q->service)) == NAME_NONE)
        rc = CN_ENOENT;
    uint32_t ne = d->num_edges;
    struct eacc *acc = NULL;
    if (rc == 0 && ne && !(acc = calloc(ne, sizeof(*acc))))
        rc = CN_ENOMEM;
    if (rc == 0 && ne)
        rc = edges_sum(d, acc, q->from_ns, q->to_ns);
    if (rc == 0 && ne && center != NAME_NONE)
        rc = edges_around(d, acc, center, q->depth);
    size_t n = 0;
    for (uint32_t i = 0; rc == 0 && i < ne; i++) {
        acc[i].selected = acc[i].count && (center == NAME_NONE || acc[i].selected);
        n += (size_t)acc[i].selected;
    }
    struct cn_derive_edge *out = NULL;
    if (rc == 0 && n && !(out = calloc(n, sizeof(*out))))
        rc = CN_ENOMEM;
    for (uint32_t i = 0, j = 0; rc == 0 && i < ne; i++) {
        if (acc[i].selected)
            fill_edge(d, &out[j++], &d->edges[i], &acc[i]);
    }
    pthread_rwlock_unlock(&d->lock);
    for (uint32_t i = 0; acc && i < ne; i++) {
        cn_sketch_release(&acc[i].server);
        cn_sketch_release(&acc[i].client);
    }
    free(acc);
    if (rc != 0) {
        free(out);
        return rc;
    }
    if (n > 1)
        qsort(out, n, sizeof(*out), cmp_edge);
    *out_edges = out;
    *out_num = n;
    return 0;
}

/* ---- trace summaries ---- */

static void fill_trace(const struct cn_derive *d, struct cn_derive_trace *out,
                       const struct tsum *ts)
{
    memset(out, 0, sizeof(*out));
    memcpy(out->trace_id, ts->trace_id, 16);
    out->root_service = svc_slice(d, ts->root_svc);
    out->root_operation = cn_derive__name(d, ts->root_op);
    out->has_root = (ts->flags & TS_ROOT) != 0;
    out->start_ns = ts->start_ns;
    out->duration_ns = ts->end_ns - ts->start_ns;
    out->num_spans = ts->spans;
    out->num_errors = ts->errors;
    out->num_services = ts->nsvc;
    out->services_truncated = (ts->flags & TS_SVC_TRUNC) != 0;
    const uint16_t *list = cn_derive__tsum_services(ts);
    for (uint32_t i = 0; i < ts->nsvc; i++)
        out->services[i] = svc_slice(d, list[i]);
}

int cn_derive_trace(struct cn_derive *d, struct cn_derive_trace *out, const uint8_t trace_id[16])
{
    pthread_rwlock_rdlock(&d->lock);
    const struct tsum *ts = cn_derive__find_trace(d, trace_id);
    if (ts)
        fill_trace(d, out, ts);
    pthread_rwlock_unlock(&d->lock);
    return ts ? 0 : CN_ENOENT;
}

/* A min-heap of ring positions by start time, then trace ID: the newest `limit` so far. */
struct theap {
    const struct tsum *ring;
    uint32_t *pos;
    size_t n, max;
};

static int older(const struct theap *h, uint32_t a, uint32_t b)
{
    const struct tsum *x = &h->ring[a], *y = &h->ring[b];
    if (x->start_ns != y->start_ns)
        return x->start_ns < y->start_ns;
    return memcmp(x->trace_id, y->trace_id, 16) < 0;
}

static void sift_down(struct theap *h, size_t i)
{
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;
        if (l < h->n && older(h, h->pos[l], h->pos[m]))
            m = l;
        if (r < h->n && older(h, h->pos[r], h->pos[m]))
            m = r;
        if (m == i)
            return;
        uint32_t t = h->pos[i];
        h->pos[i] = h->pos[m];
        h->pos[m] = t;
        i = m;
    }
}

static void heap_offer(struct theap *h, uint32_t p)
{
    if (h->n < h->max) {
        size_t i = h->n++;
        h->pos[i] = p;
        while (i > 0 && older(h, h->pos[i], h->pos[(i - 1) / 2])) {
            uint32_t t = h->pos[i];
            h->pos[i] = h->pos[(i - 1) / 2];
            h->pos[(i - 1) / 2] = t;
            i = (i - 1) / 2;
        }
    } else if (older(h, h->pos[0], p)) {
        h->pos[0] = p;
        sift_down(h, 0);
    }
}

int cn_derive_traces(struct cn_derive *d, struct cn_derive_trace **out_traces, size_t *out_num,
                     uint64_t from_ns, uint64_t to_ns, size_t limit)
{
    *out_traces = NULL;
    *out_num = 0;
    if (to_ns <= from_ns || limit == 0 || limit > CN_DERIVE_MAX_TRACES_PER_QUERY)
        return CN_EINVAL;
    struct theap h = {.max = limit, .pos = malloc(limit * sizeof(uint32_t))};
    if (!h.pos)
        return CN_ENOMEM;
    pthread_rwlock_rdlock(&d->lock);
    const struct traces *t = &d->tr;
    h.ring = t->ring;
    for (uint32_t bi = 0; bi < t->num_blocks; bi++) {
        const struct tblock *b = &t->blocks[bi];
        uint64_t lo = CN_MIN(b->cur_min, b->prev_min), hi = CN_MAX(b->cur_max, b->prev_max);
        if (lo >= to_ns || hi < from_ns || lo > hi)
            continue;
        if (h.n == h.max && hi < h.ring[h.pos[0]].start_ns)
            continue;
        uint32_t end = CN_MIN(t->hwm, (bi + 1) << TBLOCK_SHIFT);
        for (uint32_t p = bi << TBLOCK_SHIFT; p < end; p++) {
            const struct tsum *ts = &t->ring[p];
            if ((ts->flags & TS_USED) && ts->start_ns >= from_ns && ts->start_ns < to_ns)
                heap_offer(&h, p);
        }
    }
    struct cn_derive_trace *out = h.n ? malloc(h.n * sizeof(*out)) : NULL;
    size_t n = h.n;
    /* Popping the min-heap yields oldest first: fill from the end. */
    for (size_t i = n; out && i > 0; i--) {
        fill_trace(d, &out[i - 1], &t->ring[h.pos[0]]);
        h.pos[0] = h.pos[--h.n];
        sift_down(&h, 0);
    }
    pthread_rwlock_unlock(&d->lock);
    free(h.pos);
    if (n && !out)
        return CN_ENOMEM;
    *out_traces = out;
    *out_num = n;
    return 0;
}
