/* Root cause analysis (rca.h, docs/rca.md). */
#include "telemetry/rca.h"

#include <math.h>
#include <xxhash.h>

#define SEC_NS      1000000000ull
#define WINDOW0_NS  (60 * SEC_NS) /* first (newest) window of a scan; each next one doubles */
#define NOW         0
#define BASE        1
#define MAX_KEY     200 /* bytes of an error message kept */
#define MAX_MSGS    64  /* distinct error messages kept per operation and window */
#define MAX_VERS    8   /* service.version values kept per service and window */
#define SCORE_ROUND 1e4

void cn_rca_limits_default(struct cn_rca_limits *l)
{
    l->max_traces = CN_RCA_MAX_TRACES;
    l->max_spans = CN_RCA_MAX_SPANS;
    l->max_trace_spans = CN_RCA_MAX_TRACE_SPANS;
    l->max_logs = CN_RCA_MAX_LOGS;
    l->max_log_scan = CN_RCA_MAX_LOG_SCAN;
    l->log_window_ns = CN_RCA_LOG_WINDOW_NS;
}

/* ---- the store as a source ------------------------------------------------------------- */

static size_t st_scan_spans(void *ctx, uint64_t from, uint64_t to, size_t limit,
                            cn_store_span_cb cb, void *cb_ctx)
{
    return cn_store_scan_spans(ctx, from, to, limit, cb, cb_ctx);
}

static size_t st_trace(void *ctx, const uint8_t id[16], cn_store_span_cb cb, void *cb_ctx)
{
    return cn_store_trace(ctx, id, cb, cb_ctx);
}

static size_t st_scan_logs(void *ctx, uint64_t from, uint64_t to, size_t limit, cn_store_log_cb cb,
                           void *cb_ctx)
{
    return cn_store_scan_logs(ctx, from, to, limit, cb, cb_ctx);
}

static size_t st_trace_logs(void *ctx, const uint8_t id[16], cn_store_log_cb cb, void *cb_ctx)
{
    return cn_store_trace_logs(ctx, id, cb, cb_ctx);
}

void cn_rca_source_store(struct cn_rca_source *src, struct cn_store *st)
{
    src->ctx = st;
    src->scan_spans = st_scan_spans;
    src->trace = st_trace;
    src->scan_logs = st_scan_logs;
    src->trace_logs = st_trace_logs;
}

/* ---- interned strings ------------------------------------------------------------------ */

struct str {
    char *p;
    uint32_t len;
};

/* Id 0 is "" (no value). */
struct strtab {
    struct str *v;
    size_t num, cap;
    uint32_t *idx; /* open addressing over ids; 0 empty */
    size_t icap;
};

static uint64_t bytes_hash(const void *p, size_t n)
{
    return XXH64(p, n, 0);
}

static int strtab_grow_idx(struct strtab *t)
{
    size_t ncap = t->icap ? t->icap * 2 : 256;
    uint32_t *n = calloc(ncap, sizeof(*n));
    if (!n)
        return CN_ENOMEM;
    for (size_t i = 1; i < t->num; i++) {
        size_t j = bytes_hash(t->v[i].p, t->v[i].len) & (ncap - 1);
        while (n[j])
            j = (j + 1) & (ncap - 1);
        n[j] = (uint32_t)i;
    }
    free(t->idx);
    t->idx = n;
    t->icap = ncap;
    return 0;
}

/* The id of p[0..n); 0 for the empty string; UINT32_MAX when memory runs out. */
static uint32_t intern(struct strtab *t, const char *p, size_t n)
{
    if (n == 0 || !p)
        return 0;
    if (t->num == 0) {
        t->v = calloc(64, sizeof(*t->v));
        if (!t->v)
            return UINT32_MAX;
        t->cap = 64;
        t->v[0] = (struct str){NULL, 0};
        t->num = 1;
    }
    if ((t->num + 1) * 2 > t->icap && strtab_grow_idx(t) != 0)
        return UINT32_MAX;
    size_t j = bytes_hash(p, n) & (t->icap - 1);
    while (t->idx[j]) {
        const struct str *s = &t->v[t->idx[j]];
        if (s->len == n && memcmp(s->p, p, n) == 0)
            return t->idx[j];
        j = (j + 1) & (t->icap - 1);
    }
    if (t->num == t->cap) {
        struct str *nv = realloc(t->v, t->cap * 2 * sizeof(*nv));
        if (!nv)
            return UINT32_MAX;
        t->v = nv;
        t->cap *= 2;
    }
    char *c = malloc(n + 1);
    if (!c)
        return UINT32_MAX;
    memcpy(c, p, n);
    c[n] = '\0';
    uint32_t id = (uint32_t)t->num;
    t->v[t->num++] = (struct str){c, (uint32_t)n};
    t->idx[j] = id;
    return id;
}

static void strtab_free(struct strtab *t)
{
    for (size_t i = 1; i < t->num; i++)
        free(t->v[i].p);
    free(t->v);
    free(t->idx);
}

/* ---- trace ID map (phase 1) ------------------------------------------------------------ */

#define F_SERVICE 1 /* a span of the service started in the window */
#define F_ERROR   2 /* a span with status ERROR started in the window */

struct tent {
    uint8_t id[16];
    uint8_t flags;
};

struct tmap {
    struct tent *cells;
    size_t cap, num;
    int failed;
};

static uint64_t id_hash(const uint8_t *id)
{
    return bytes_hash(id, 16);
}

static void tmap_add(struct tmap *m, const uint8_t *id, uint8_t flags)
{
    if (m->failed)
        return;
    if ((m->num + 1) * 2 > m->cap) {
        size_t ncap = m->cap ? m->cap * 2 : 256;
        struct tent *n = calloc(ncap, sizeof(*n));
        if (!n) {
            m->failed = 1;
            return;
        }
        for (size_t i = 0; i < m->cap; i++) {
            if (cn_id_is_zero(m->cells[i].id, 16))
                continue;
            size_t j = id_hash(m->cells[i].id) & (ncap - 1);
            while (!cn_id_is_zero(n[j].id, 16))
                j = (j + 1) & (ncap - 1);
            n[j] = m->cells[i];
        }
        free(m->cells);
        m->cells = n;
        m->cap = ncap;
    }
    size_t j = id_hash(id) & (m->cap - 1);
    while (!cn_id_is_zero(m->cells[j].id, 16)) {
        if (memcmp(m->cells[j].id, id, 16) == 0) {
            m->cells[j].flags |= flags;
            return;
        }
        j = (j + 1) & (m->cap - 1);
    }
    memcpy(m->cells[j].id, id, 16);
    m->cells[j].flags = flags;
    m->num++;
}

/* ---- analysis state -------------------------------------------------------------------- */

struct rspan {
    uint8_t span_id[8], parent_id[8];
    uint64_t start, end;
    uint32_t svc, op, msg, version;
    uint8_t kind, status, err_child;
    int32_t parent; /* index within the trace; -1: a root */
    uint32_t kid0, nkids;
    uint64_t self;
};

struct rtrace {
    uint8_t id[16];
    double w;
    int win;
    size_t first, n;
};

struct sample {
    uint64_t v;
    double w;
};

struct samples {
    struct sample *v;
    size_t num, cap;
};

struct msgcount {
    uint32_t key;
    double w;
};

struct example {
    uint32_t trace; /* index in traces */
    uint32_t span;  /* global span index */
    double metric;
};

enum { EX_ERR, EX_NEW, EX_LAT, EX_TRAFFIC, EX_KINDS };

struct opstat {
    uint32_t svc, op;
    int is_entry;
    double calls[2], errors[2], self_sum[2], origin[2];
    double cp_slow, new_err;
    struct samples dur[2], self[2];
    struct msgcount msgs[2][MAX_MSGS];
    uint32_t nmsgs[2];
    struct msgcount newmsgs[MAX_MSGS];
    uint32_t nnew;
    struct example ex[EX_KINDS][CN_RCA_EXAMPLES];
    uint32_t nex[EX_KINDS];
};

struct svstat {
    uint32_t svc;
    uint32_t vers[2][MAX_VERS];
    uint32_t nvers[2];
};

/* An error origin of a request in the window, judged new or not once the baseline is read. */
struct orec {
    uint32_t op; /* index in ops */
    uint32_t key;
    double share;
    uint32_t trace, span;
};

struct rca {
    const struct cn_rca_source *src;
    const struct cn_rca_limits *lim;
    const struct cn_rca_query *q;
    struct strtab strs;
    uint32_t svc; /* the service analysed */
    int trace_mode;
    uint64_t from[2], to[2];
    /* Where each window's data starts: the first span its scan read, when the scan read all
     * of the window and that span starts after the window does; else from. */
    uint64_t data_from[2];
    /* Reading. */
    uint64_t spans_read, span_budget;
    int truncated, sampled, failed;
    uint64_t traces_seen[2], traces_examined[2], traces_cut;
    /* Spans of every examined trace. */
    struct rspan *spans;
    size_t nspans, capspans;
    uint32_t *kids;
    struct rtrace *traces;
    size_t ntraces, captraces;
    /* Fetching one trace. */
    size_t cur_n;
    int cur_cut;
    /* Aggregates. */
    double n_req[2], n_err_req[2];
    struct opstat *ops;
    size_t nops, capops;
    uint32_t *opidx; /* open addressing over op indexes + 1 */
    size_t capidx;
    struct svstat *svs;
    size_t nsvs, capsvs;
    struct orec *orecs;
    size_t norecs, caporecs;
    double slow_total, slow_threshold;
    /* Scratch. */
    struct tmap tm;
};

/* Makes room for one more element in *arr (num used of *cap); sets r->failed on failure. */
static int more(struct rca *r, void *arr, size_t num, size_t *cap, size_t size)
{
    void **p = arr;
    if (num < *cap)
        return 0;
    size_t n = *cap ? *cap * 2 : 16;
    void *np = realloc(*p, n * size);
    if (!np) {
        r->failed = 1;
        return CN_ENOMEM;
    }
    *p = np;
    *cap = n;
    return 0;
}

#define GROW(r, arr, num, cap) more((r), &(arr), (num), &(cap), sizeof(*(arr)))

static void samples_add(struct rca *r, struct samples *s, uint64_t v, double w)
{
    if (s->num == s->cap) {
        size_t nc = s->cap ? s->cap * 2 : 8;
        struct sample *n = realloc(s->v, nc * sizeof(*n));
        if (!n) {
            r->failed = 1;
            return;
        }
        s->v = n;
        s->cap = nc;
    }
    s->v[s->num++] = (struct sample){v, w};
}

static int sample_cmp(const void *a, const void *b)
{
    const struct sample *x = a, *y = b;
    return (x->v > y->v) - (x->v < y->v);
}

/* The weighted q-quantile (the smallest value whose cumulative weight reaches q of the
 * total); 0 when empty. Sorts s. */
static double wquant(struct samples *s, double q)
{
    if (!s->num)
        return 0;
    qsort(s->v, s->num, sizeof(*s->v), sample_cmp);
    double total = 0;
    for (size_t i = 0; i < s->num; i++)
        total += s->v[i].w;
    double cum = 0, target = q * total * (1 - 1e-12);
    for (size_t i = 0; i < s->num; i++) {
        cum += s->v[i].w;
        if (cum >= target)
            return (double)s->v[i].v;
    }
    return (double)s->v[s->num - 1].v;
}

/* ---- reading spans --------------------------------------------------------------------- */

static struct cn_slice svc_of(const struct cn_span *s)
{
    return s->resource ? s->resource->service : CN_SLICE_LIT("");
}

static const struct cn_val *attr(const struct cn_kvs *kv, const char *key)
{
    size_t n = strlen(key);
    for (uint32_t i = 0; i < kv->num; i++)
        if (kv->items[i].key.len == n && memcmp(kv->items[i].key.ptr, key, n) == 0)
            return &kv->items[i].val;
    return NULL;
}

static uint32_t intern_cut(struct rca *r, const char *p, size_t n)
{
    if (n > MAX_KEY) {
        n = MAX_KEY;
        while (n > 0 && ((unsigned char)p[n] & 0xC0) == 0x80)
            n--; /* at a UTF-8 boundary */
    }
    uint32_t id = intern(&r->strs, p, n);
    if (id == UINT32_MAX) {
        r->failed = 1;
        return 0;
    }
    return id;
}

/* The message of an erroring span: its status message, else its exception event's type and
 * message, else its HTTP or gRPC status code, else "(no message)". */
static uint32_t error_key(struct rca *r, const struct cn_span *s)
{
    if (s->status_code != CN_STATUS_ERROR)
        return 0;
    if (s->status_message.len)
        return intern_cut(r, s->status_message.ptr, s->status_message.len);
    char buf[MAX_KEY + 1], v1[MAX_KEY + 1], v2[MAX_KEY + 1];
    for (uint32_t i = 0; i < s->num_events; i++) {
        const struct cn_event *e = &s->events[i];
        if (!cn_slice_eq(e->name, CN_SLICE_LIT("exception")))
            continue;
        const struct cn_val *t = attr(&e->attrs, "exception.type");
        const struct cn_val *m = attr(&e->attrs, "exception.message");
        int n1 = t ? cn_val_text(t, v1, sizeof(v1)) : -1;
        int n2 = m ? cn_val_text(m, v2, sizeof(v2)) : -1;
        if (n1 <= 0 && n2 <= 0)
            continue;
        int n = snprintf(buf, sizeof(buf), "%s%s%s", n1 > 0 ? v1 : "", n1 > 0 && n2 > 0 ? ": " : "",
                         n2 > 0 ? v2 : "");
        return intern_cut(r, buf, CN_MIN((size_t)n, sizeof(buf) - 1));
    }
    static const char *const codes[][2] = {{"http.response.status_code", "HTTP "},
                                           {"http.status_code", "HTTP "},
                                           {"rpc.grpc.status_code", "gRPC status "}};
    for (size_t i = 0; i < CN_ARRAY_LEN(codes); i++) {
        const struct cn_val *v = attr(&s->attrs, codes[i][0]);
        if (v && cn_val_text(v, v1, 32) > 0) {
            int n = snprintf(buf, sizeof(buf), "%s%s", codes[i][1], v1);
            return intern_cut(r, buf, (size_t)n);
        }
    }
    return intern_cut(r, "(no message)", 12);
}

static void fetch_span(void *ctx, const struct cn_span *s)
{
    struct rca *r = ctx;
    r->spans_read++;
    if (r->failed)
        return;
    if (r->cur_n >= r->lim->max_trace_spans) {
        r->cur_cut = 1;
        return;
    }
    if (GROW(r, r->spans, r->nspans, r->capspans) != 0)
        return;
    struct rspan *o = &r->spans[r->nspans];
    memset(o, 0, sizeof(*o));
    memcpy(o->span_id, s->span_id, 8);
    memcpy(o->parent_id, s->parent_id, 8);
    o->start = s->start_ns;
    o->end = s->end_ns > s->start_ns ? s->end_ns : s->start_ns;
    struct cn_slice svc = svc_of(s);
    o->svc = intern_cut(r, svc.ptr, svc.len);
    o->op = intern_cut(r, s->name.ptr, s->name.len);
    o->kind = s->kind;
    o->status = s->status_code;
    o->msg = error_key(r, s);
    const struct cn_val *v = s->resource ? attr(&s->resource->attrs, "service.version") : NULL;
    if (v && v->type == CN_VAL_STR)
        o->version = intern_cut(r, v->u.s.ptr, v->u.s.len);
    o->parent = -1;
    r->nspans++;
    r->cur_n++;
}

/* Fetches one trace into the span arrays as window win with weight w. Returns the number of
 * spans kept. */
static size_t fetch_trace(struct rca *r, const uint8_t id[16], int win, double w)
{
    if (GROW(r, r->traces, r->ntraces, r->captraces) != 0)
        return 0;
    size_t first = r->nspans;
    r->cur_n = 0;
    r->cur_cut = 0;
    r->src->trace(r->src->ctx, id, fetch_span, r);
    if (r->failed || r->cur_n == 0) {
        r->nspans = first;
        return 0;
    }
    if (r->cur_cut)
        r->traces_cut++;
    struct rtrace *t = &r->traces[r->ntraces++];
    memcpy(t->id, id, 16);
    t->w = w;
    t->win = win;
    t->first = first;
    t->n = r->cur_n;
    r->traces_examined[win]++;
    return t->n;
}

/* ---- phase 1: which traces hold requests of the service -------------------------------- */

struct scan1 {
    struct rca *r;
    struct cn_slice svc;
    uint64_t first; /* the earliest start read */
    int cut;        /* the span budget ended the scan */
};

static void scan1_span(void *ctx, const struct cn_span *s)
{
    struct scan1 *c = ctx;
    c->first = CN_MIN(c->first, s->start_ns);
    uint8_t f = 0;
    if (cn_slice_eq(svc_of(s), c->svc))
        f |= F_SERVICE;
    if (s->status_code == CN_STATUS_ERROR)
        f |= F_ERROR;
    if (f)
        tmap_add(&c->r->tm, s->trace_id, f);
}

/* Reads spans of [from, to), newest window first, at most budget; returns spans read. */
static uint64_t scan_range(struct rca *r, uint64_t from, uint64_t to, uint64_t budget,
                           struct scan1 *c)
{
    uint64_t w = WINDOW0_NS, hi = to, read = 0;
    while (hi > from) {
        uint64_t lo = hi - from > w ? hi - w : from;
        uint64_t left = budget - read;
        if (left == 0) {
            r->truncated = c->cut = 1;
            break;
        }
        size_t n = r->src->scan_spans(r->src->ctx, lo, hi, left, scan1_span, c);
        read += n;
        if (n >= left) {
            r->truncated = c->cut = 1;
            break;
        }
        if (r->tm.failed)
            break;
        hi = lo;
        if (w < UINT64_MAX / 2)
            w *= 2;
    }
    return read;
}

struct cand {
    uint8_t id[16];
    uint64_t h;
    int err;
};

static int cand_by_hash(const void *a, const void *b)
{
    const struct cand *x = a, *y = b;
    if (x->h != y->h)
        return x->h < y->h ? -1 : 1;
    return memcmp(x->id, y->id, 16);
}

static int cand_by_id(const void *a, const void *b)
{
    return memcmp(((const struct cand *)a)->id, ((const struct cand *)b)->id, 16);
}

/* Scans window win for traces with a span of the service, chooses at most max_traces of them
 * (erroring ones and the others sampled apart) and fetches them. skip: a trace not to take
 * (trace mode's own), or NULL. */
static void collect_window(struct rca *r, int win, struct cn_slice svc, const uint8_t *skip)
{
    memset(&r->tm, 0, sizeof(r->tm));
    struct scan1 c = {r, svc, UINT64_MAX, 0};
    uint64_t third = r->lim->max_spans / 3 ? r->lim->max_spans / 3 : 1;
    uint64_t left = r->span_budget > r->spans_read ? r->span_budget - r->spans_read : 0;
    uint64_t budget = CN_MIN(third, left);
    if (budget == 0) {
        r->truncated = 1;
        return;
    }
    r->spans_read += scan_range(r, r->from[win], r->to[win], budget, &c);
    if (!c.cut && !r->tm.failed && c.first != UINT64_MAX && c.first > r->from[win] &&
        c.first < r->to[win])
        r->data_from[win] = c.first;
    if (r->tm.failed) {
        r->failed = 1;
        free(r->tm.cells);
        return;
    }
    size_t n = 0, nerr = 0;
    struct cand *cands = r->tm.num ? malloc(r->tm.num * sizeof(*cands)) : NULL;
    if (r->tm.num && !cands) {
        r->failed = 1;
        free(r->tm.cells);
        return;
    }
    for (size_t i = 0; i < r->tm.cap; i++) {
        const struct tent *e = &r->tm.cells[i];
        if (cn_id_is_zero(e->id, 16) || !(e->flags & F_SERVICE))
            continue;
        if (skip && memcmp(skip, e->id, 16) == 0)
            continue;
        struct cand *cd = &cands[n++];
        memcpy(cd->id, e->id, 16);
        cd->h = id_hash(e->id);
        cd->err = (e->flags & F_ERROR) != 0;
        nerr += cd->err;
    }
    free(r->tm.cells);
    memset(&r->tm, 0, sizeof(r->tm));
    r->traces_seen[win] = n;
    /* Erroring traces first, each group by hash: then the chosen ones of each group are a
     * prefix of it. */
    size_t nok = n - nerr;
    size_t max = r->lim->max_traces;
    size_t kerr = CN_MIN(nerr, CN_MAX((max + 1) / 2, max > nok ? max - nok : 0));
    size_t kok = CN_MIN(nok, max - kerr);
    if (kerr < nerr || kok < nok)
        r->sampled = 1;
    struct cand *errs = cands, *oks = cands ? cands + nerr : NULL;
    /* Partition: errors to the front. */
    size_t a = 0;
    for (size_t i = 0; i < n; i++)
        if (cands[i].err) {
            struct cand t = cands[a];
            cands[a++] = cands[i];
            cands[i] = t;
        }
    if (nerr)
        qsort(errs, nerr, sizeof(*errs), cand_by_hash);
    if (nok)
        qsort(oks, nok, sizeof(*oks), cand_by_hash);
    double werr = kerr ? (double)nerr / (double)kerr : 0;
    double wok = kok ? (double)nok / (double)kok : 0;
    /* Chosen ones in trace ID order, so that sums are made in the same order every time. */
    struct cand *chosen = (kerr + kok) ? malloc((kerr + kok) * sizeof(*chosen)) : NULL;
    if ((kerr + kok) && !chosen) {
        r->failed = 1;
        free(cands);
        return;
    }
    if (kerr)
        memcpy(chosen, errs, kerr * sizeof(*chosen));
    if (kok)
        memcpy(chosen + kerr, oks, kok * sizeof(*chosen));
    size_t k = kerr + kok;
    if (k)
        qsort(chosen, k, sizeof(*chosen), cand_by_id);
    for (size_t i = 0; i < k && !r->failed; i++) {
        if (r->spans_read >= r->span_budget) {
            r->truncated = 1;
            break;
        }
        fetch_trace(r, chosen[i].id, win, chosen[i].err ? werr : wok);
    }
    free(chosen);
    free(cands);
}

/* ---- per-trace structure --------------------------------------------------------------- */

static int span_cmp(const void *a, const void *b)
{
    const struct rspan *x = a, *y = b;
    if (x->start != y->start)
        return x->start < y->start ? -1 : 1;
    int c = memcmp(x->span_id, y->span_id, 8);
    if (c)
        return c;
    return (x->end > y->end) - (x->end < y->end);
}

struct idpos {
    uint8_t id[8];
    int32_t pos;
};

static int idpos_cmp(const void *a, const void *b)
{
    const struct idpos *x = a, *y = b;
    int c = memcmp(x->id, y->id, 8);
    return c ? c : (x->pos > y->pos) - (x->pos < y->pos);
}

/* Orders the trace's spans, links parents (a missing parent makes a root; cycles are cut
 * where found), builds child lists in start order and computes every span's self-time. */
static void build_trace(struct rca *r, struct rtrace *t)
{
    struct rspan *sp = r->spans + t->first;
    size_t n = t->n;
    qsort(sp, n, sizeof(*sp), span_cmp);
    struct idpos *ip = malloc(n * sizeof(*ip));
    uint8_t *state = calloc(n, 1);
    if (!ip || !state) {
        free(ip);
        free(state);
        r->failed = 1;
        return;
    }
    for (size_t i = 0; i < n; i++) {
        memcpy(ip[i].id, sp[i].span_id, 8);
        ip[i].pos = (int32_t)i;
    }
    qsort(ip, n, sizeof(*ip), idpos_cmp);
    for (size_t i = 0; i < n; i++) {
        sp[i].parent = -1;
        if (cn_id_is_zero(sp[i].parent_id, 8))
            continue;
        /* The first span with that ID (duplicates: the earliest). */
        size_t lo = 0, hi = n;
        while (lo < hi) {
            size_t m = (lo + hi) / 2;
            if (memcmp(ip[m].id, sp[i].parent_id, 8) < 0)
                lo = m + 1;
            else
                hi = m;
        }
        if (lo < n && memcmp(ip[lo].id, sp[i].parent_id, 8) == 0 && ip[lo].pos != (int32_t)i)
            sp[i].parent = ip[lo].pos;
    }
    free(ip);
    /* Cut cycles: walk up from each span; meeting the walk's own path is a cycle. */
    int32_t *path = malloc(n * sizeof(*path));
    if (!path) {
        free(state);
        r->failed = 1;
        return;
    }
    for (size_t i = 0; i < n; i++) {
        if (state[i])
            continue;
        size_t np = 0;
        int32_t v = (int32_t)i;
        while (v >= 0 && state[v] == 0) {
            state[v] = 1;
            path[np++] = v;
            v = sp[v].parent;
        }
        if (v >= 0 && state[v] == 1)
            sp[v].parent = -1;
        for (size_t k = 0; k < np; k++)
            state[path[k]] = 2;
    }
    free(path);
    free(state);
    /* Children, in start order. */
    /* kids has one slot per span: a trace's child lists fill its own range of it. */
    for (size_t i = 0; i < n; i++)
        sp[i].nkids = 0;
    for (size_t i = 0; i < n; i++)
        if (sp[i].parent >= 0)
            sp[sp[i].parent].nkids++;
    uint32_t off = (uint32_t)t->first;
    for (size_t i = 0; i < n; i++) {
        sp[i].kid0 = off;
        off += sp[i].nkids;
        sp[i].nkids = 0;
    }
    for (size_t i = 0; i < n; i++) {
        int32_t p = sp[i].parent;
        if (p < 0)
            continue;
        r->kids[sp[p].kid0 + sp[p].nkids++] = (uint32_t)(t->first + i);
        if (sp[i].status == CN_STATUS_ERROR)
            sp[p].err_child = 1;
    }
    /* Self-time: the duration less the union of the children's intervals within it. */
    for (size_t i = 0; i < n; i++) {
        struct rspan *s = &sp[i];
        uint64_t covered = 0, lo = 0, hi = 0;
        int open = 0;
        for (uint32_t k = 0; k < s->nkids; k++) {
            const struct rspan *c = &r->spans[r->kids[s->kid0 + k]];
            uint64_t a = CN_MAX(c->start, s->start), b = CN_MIN(c->end, s->end);
            if (b <= a)
                continue;
            if (open && a <= hi) {
                if (b > hi)
                    hi = b;
                continue;
            }
            if (open)
                covered += hi - lo;
            lo = a;
            hi = b;
            open = 1;
        }
        if (open)
            covered += hi - lo;
        s->self = (s->end - s->start) - covered;
    }
}

/* ---- aggregates ------------------------------------------------------------------------ */

static struct opstat *opstat_get(struct rca *r, uint32_t svc, uint32_t op, uint32_t *out_idx)
{
    if ((r->nops + 1) * 2 > r->capidx) {
        size_t nc = r->capidx ? r->capidx * 2 : 64;
        uint32_t *n = calloc(nc, sizeof(*n));
        if (!n) {
            r->failed = 1;
            return NULL;
        }
        for (size_t i = 0; i < r->nops; i++) {
            uint64_t key = (uint64_t)r->ops[i].svc << 32 | r->ops[i].op;
            size_t j = (key * 0x9E3779B97F4A7C15ull >> 20) & (nc - 1);
            while (n[j])
                j = (j + 1) & (nc - 1);
            n[j] = (uint32_t)i + 1;
        }
        free(r->opidx);
        r->opidx = n;
        r->capidx = nc;
    }
    uint64_t key = (uint64_t)svc << 32 | op;
    size_t j = (key * 0x9E3779B97F4A7C15ull >> 20) & (r->capidx - 1);
    while (r->opidx[j]) {
        struct opstat *o = &r->ops[r->opidx[j] - 1];
        if (o->svc == svc && o->op == op) {
            if (out_idx)
                *out_idx = r->opidx[j] - 1;
            return o;
        }
        j = (j + 1) & (r->capidx - 1);
    }
    if (GROW(r, r->ops, r->nops, r->capops) != 0)
        return NULL;
    struct opstat *o = &r->ops[r->nops];
    memset(o, 0, sizeof(*o));
    o->svc = svc;
    o->op = op;
    r->opidx[j] = (uint32_t)r->nops + 1;
    if (out_idx)
        *out_idx = (uint32_t)r->nops;
    r->nops++;
    return o;
}

static void msg_add(struct msgcount *m, uint32_t *n, uint32_t key, double w)
{
    for (uint32_t i = 0; i < *n; i++)
        if (m[i].key == key) {
            m[i].w += w;
            return;
        }
    if (*n < MAX_MSGS)
        m[(*n)++] = (struct msgcount){key, w};
}

static int msg_has(const struct msgcount *m, uint32_t n, uint32_t key)
{
    for (uint32_t i = 0; i < n; i++)
        if (m[i].key == key)
            return 1;
    return 0;
}

static void version_add(struct rca *r, uint32_t svc, int win, uint32_t v)
{
    if (!v)
        return;
    struct svstat *s = NULL;
    for (size_t i = 0; i < r->nsvs && !s; i++)
        if (r->svs[i].svc == svc)
            s = &r->svs[i];
    if (!s) {
        if (GROW(r, r->svs, r->nsvs, r->capsvs) != 0)
            return;
        s = &r->svs[r->nsvs++];
        memset(s, 0, sizeof(*s));
        s->svc = svc;
    }
    for (uint32_t i = 0; i < s->nvers[win]; i++)
        if (s->vers[win][i] == v)
            return;
    if (s->nvers[win] < MAX_VERS)
        s->vers[win][s->nvers[win]++] = v;
}

static const struct svstat *svstat_find(const struct rca *r, uint32_t svc)
{
    for (size_t i = 0; i < r->nsvs; i++)
        if (r->svs[i].svc == svc)
            return &r->svs[i];
    return NULL;
}

static int example_before(const struct rca *r, const struct example *a, const struct example *b)
{
    if (a->metric != b->metric)
        return a->metric > b->metric;
    int c = memcmp(r->traces[a->trace].id, r->traces[b->trace].id, 16);
    return c ? c < 0 : a->span < b->span;
}

/* Keeps the CN_RCA_EXAMPLES examples of the highest metric (ties: smaller trace ID, then
 * earlier span), one per trace, best first. */
static void example_add(struct rca *r, struct opstat *o, int kind, uint32_t trace, uint32_t span,
                        double metric)
{
    struct example *ex = o->ex[kind], n = {trace, span, metric};
    uint32_t *num = &o->nex[kind], at = *num;
    for (uint32_t i = 0; i < *num; i++)
        if (ex[i].trace == trace) {
            if (!example_before(r, &n, &ex[i]))
                return;
            at = i;
            break;
        }
    if (at == *num) {
        if (*num < CN_RCA_EXAMPLES) {
            (*num)++;
        } else {
            at = *num - 1;
            if (!example_before(r, &n, &ex[at]))
                return;
        }
    }
    ex[at] = n;
    for (uint32_t i = at; i > 0 && example_before(r, &ex[i], &ex[i - 1]); i--) {
        struct example t = ex[i];
        ex[i] = ex[i - 1];
        ex[i - 1] = t;
    }
}

struct req {
    uint32_t trace, span;
    double w;
    int win;
    uint64_t dur;
};

static int kid_by_end_desc(const void *a, const void *b, void *ctx)
{
    const struct rspan *sp = ctx;
    const struct rspan *x = &sp[*(const uint32_t *)a], *y = &sp[*(const uint32_t *)b];
    if (x->end != y->end)
        return x->end > y->end ? -1 : 1;
    if (x->start != y->start)
        return x->start < y->start ? -1 : 1;
    return memcmp(x->span_id, y->span_id, 8);
}

struct cpframe {
    uint32_t span;
    uint64_t lo, hi;
};

/* Critical path of the subtree of span root: adds each span's time on it to its operation's
 * cp_slow (times w) and keeps latency examples. */
static void critical_path(struct rca *r, uint32_t trace, uint32_t root, double w,
                          struct cpframe *frames, uint32_t *sorted)
{
    size_t nf = 0;
    const struct rspan *rs = &r->spans[root];
    frames[nf++] = (struct cpframe){root, rs->start, rs->end};
    while (nf) {
        struct cpframe f = frames[--nf];
        const struct rspan *s = &r->spans[f.span];
        memcpy(sorted, &r->kids[s->kid0], s->nkids * sizeof(*sorted));
        qsort_r(sorted, s->nkids, sizeof(*sorted), kid_by_end_desc, r->spans);
        uint64_t cursor = f.hi, own = 0;
        for (uint32_t k = 0; k < s->nkids && cursor > f.lo; k++) {
            const struct rspan *c = &r->spans[sorted[k]];
            if (c->start >= cursor)
                continue;
            if (c->end <= f.lo)
                break;
            uint64_t e = CN_MIN(c->end, cursor);
            own += cursor - e;
            uint64_t clo = CN_MAX(c->start, f.lo);
            frames[nf++] = (struct cpframe){sorted[k], clo, e};
            cursor = clo;
        }
        if (cursor > f.lo)
            own += cursor - f.lo;
        if (own) {
            struct opstat *o = opstat_get(r, s->svc, s->op, NULL);
            if (!o)
                return;
            o->cp_slow += w * (double)own;
            example_add(r, o, EX_LAT, trace, f.span, (double)own);
        }
    }
}

/* Walks the subtree of request q: per-operation figures, error origins. */
static void walk_request(struct rca *r, const struct req *q, uint32_t *stack, uint32_t *origins)
{
    size_t ns = 0, no = 0;
    stack[ns++] = q->span;
    while (ns) {
        uint32_t v = stack[--ns];
        const struct rspan *s = &r->spans[v];
        struct opstat *o = opstat_get(r, s->svc, s->op, NULL);
        if (!o)
            return;
        int win = q->win;
        o->calls[win] += q->w;
        samples_add(r, &o->dur[win], s->end - s->start, q->w);
        samples_add(r, &o->self[win], s->self, q->w);
        o->self_sum[win] += q->w * (double)s->self;
        version_add(r, s->svc, win, s->version);
        if (s->status == CN_STATUS_ERROR) {
            o->errors[win] += q->w;
            msg_add(o->msgs[win], &o->nmsgs[win], s->msg, q->w);
            if (!s->err_child)
                origins[no++] = v;
        }
        if (win == NOW)
            example_add(r, o, EX_TRAFFIC, q->trace, v, (double)s->start);
        for (uint32_t k = s->nkids; k > 0; k--)
            stack[ns++] = r->kids[s->kid0 + k - 1];
    }
    if (!no)
        return;
    r->n_err_req[q->win] += q->w;
    double share = 1.0 / (double)no;
    for (size_t i = 0; i < no; i++) {
        const struct rspan *s = &r->spans[origins[i]];
        uint32_t idx;
        struct opstat *o = opstat_get(r, s->svc, s->op, &idx);
        if (!o)
            return;
        o->origin[q->win] += q->w * share;
        if (q->win != NOW)
            continue;
        example_add(r, o, EX_ERR, q->trace, origins[i], (double)s->start);
        if (GROW(r, r->orecs, r->norecs, r->caporecs) != 0)
            return;
        r->orecs[r->norecs++] = (struct orec){idx, s->msg, q->w * share, q->trace, origins[i]};
    }
}

static int req_in_window(const struct rca *r, const struct rtrace *t, const struct rspan *s)
{
    if (r->trace_mode && t->win == NOW)
        return 1;
    return s->start >= r->from[t->win] && s->start < r->to[t->win];
}

/* Builds every trace, finds the requests, aggregates. */
static void analyse(struct rca *r)
{
    r->kids = malloc((r->nspans ? r->nspans : 1) * sizeof(*r->kids));
    if (!r->kids) {
        r->failed = 1;
        return;
    }
    for (size_t i = 0; i < r->ntraces && !r->failed; i++)
        build_trace(r, &r->traces[i]);
    if (r->failed)
        return;
    /* Requests: topmost spans of the service (no ancestor of it). */
    struct req *reqs = NULL;
    size_t nreq = 0, capreq = 0;
    uint8_t *under = malloc(r->nspans ? r->nspans : 1);
    uint32_t *order = malloc((r->nspans ? r->nspans : 1) * sizeof(*order));
    if (!under || !order) {
        free(under);
        free(order);
        r->failed = 1;
        return;
    }
    for (size_t ti = 0; ti < r->ntraces && !r->failed; ti++) {
        const struct rtrace *t = &r->traces[ti];
        /* Breadth-first from the roots: parents before children. */
        size_t no = 0;
        for (size_t i = 0; i < t->n; i++)
            if (r->spans[t->first + i].parent < 0)
                order[no++] = (uint32_t)(t->first + i);
        for (size_t h = 0; h < no; h++) {
            const struct rspan *s = &r->spans[order[h]];
            for (uint32_t k = 0; k < s->nkids; k++)
                order[no++] = r->kids[s->kid0 + k];
        }
        for (size_t h = 0; h < no; h++) {
            uint32_t v = order[h];
            const struct rspan *s = &r->spans[v];
            int32_t p = s->parent;
            under[v] = p >= 0 && (under[t->first + p] || r->spans[t->first + p].svc == r->svc);
            if (s->svc != r->svc || under[v] || !req_in_window(r, t, s))
                continue;
            if (GROW(r, reqs, nreq, capreq) != 0)
                break;
            reqs[nreq++] = (struct req){(uint32_t)ti, v, t->w, t->win, s->end - s->start};
            struct opstat *o = opstat_get(r, s->svc, s->op, NULL);
            if (o)
                o->is_entry = 1;
        }
    }
    free(under);
    struct samples durs = {0};
    for (size_t i = 0; i < nreq; i++) {
        r->n_req[reqs[i].win] += reqs[i].w;
        if (reqs[i].win == NOW)
            samples_add(r, &durs, reqs[i].dur, reqs[i].w);
    }
    r->slow_threshold = wquant(&durs, CN_RCA_SLOW_QUANTILE);
    free(durs.v);
    uint32_t *stack = malloc((r->nspans ? r->nspans : 1) * sizeof(*stack));
    uint32_t *origins = malloc((r->nspans ? r->nspans : 1) * sizeof(*origins));
    struct cpframe *frames = malloc((r->nspans ? r->nspans : 1) * sizeof(*frames));
    if (!stack || !origins || !frames)
        r->failed = 1;
    for (size_t i = 0; i < nreq && !r->failed; i++) {
        walk_request(r, &reqs[i], stack, origins);
        if (reqs[i].win == NOW && (double)reqs[i].dur >= r->slow_threshold) {
            r->slow_total += reqs[i].w * (double)reqs[i].dur;
            critical_path(r, reqs[i].trace, reqs[i].span, reqs[i].w, frames, order);
        }
    }
    free(stack);
    free(origins);
    free(frames);
    free(order);
    free(reqs);
    if (r->failed || r->n_req[BASE] <= 0)
        return;
    /* New errors: an origin's message never seen erroring on that operation before. */
    for (size_t i = 0; i < r->norecs; i++) {
        const struct orec *e = &r->orecs[i];
        struct opstat *o = &r->ops[e->op];
        if (msg_has(o->msgs[BASE], o->nmsgs[BASE], e->key))
            continue;
        o->new_err += e->share;
        msg_add(o->newmsgs, &o->nnew, e->key, e->share);
        example_add(r, o, EX_NEW, e->trace, e->span, (double)r->spans[e->span].start);
    }
}

/* ---- scoring --------------------------------------------------------------------------- */

enum kind { K_NEW_ERROR, K_ERROR_ORIGIN, K_LATENCY, K_TRAFFIC, K_NUM };
static const char *const kind_names[] = {"new_error", "error_origin", "latency", "traffic_change"};
static const int kind_example[] = {EX_NEW, EX_ERR, EX_LAT, EX_TRAFFIC};

struct suspect {
    uint32_t op; /* index in ops */
    int kind;
    double score; /* rounded */
};

static int str_cmp(const struct rca *r, uint32_t a, uint32_t b)
{
    const struct str *x = &r->strs.v[a], *y = &r->strs.v[b];
    size_t n = CN_MIN(x->len, y->len);
    int c = n ? memcmp(x->p, y->p, n) : 0;
    return c ? c : (x->len > y->len) - (x->len < y->len);
}

static int suspect_cmp(const void *a, const void *b, void *ctx)
{
    const struct rca *r = ctx;
    const struct suspect *x = a, *y = b;
    if (x->score != y->score)
        return x->score > y->score ? -1 : 1;
    if (x->kind != y->kind)
        return x->kind < y->kind ? -1 : 1;
    const struct opstat *ox = &r->ops[x->op], *oy = &r->ops[y->op];
    int c = str_cmp(r, ox->svc, oy->svc);
    return c ? c : str_cmp(r, ox->op, oy->op);
}

static double clamp01(double v)
{
    return v < 0 ? 0 : v > 1 ? 1 : v;
}

static double per_call(double sum, double calls)
{
    return calls > 0 ? sum / calls : 0;
}

/* Calls per second of window win, over the part of it that holds data (a store started
 * during the baseline knows nothing of the time before: that is no data, not no traffic). */
static double rate(const struct rca *r, const struct opstat *o, int win)
{
    double len = (double)(r->to[win] - r->data_from[win]) / 1e9;
    return len > 0 ? o->calls[win] / len : 0;
}

static void scores(const struct rca *r, const struct opstat *o, double out[K_NUM])
{
    int has_base = r->n_req[BASE] > 0;
    double nn = r->n_req[NOW], nb = r->n_req[BASE];
    for (int k = 0; k < K_NUM; k++)
        out[k] = 0;
    if (nn <= 0)
        return;
    double e_now = o->origin[NOW] / nn, e_base = has_base ? o->origin[BASE] / nb : 0;
    out[K_ERROR_ORIGIN] = r->trace_mode ? e_now : e_now - e_base;
    if (has_base)
        out[K_NEW_ERROR] = o->new_err / nn;
    double c = r->slow_total > 0 ? o->cp_slow / r->slow_total : 0;
    double g = 1;
    if (has_base && o->calls[BASE] > 0) {
        double sn = per_call(o->self_sum[NOW], o->calls[NOW]);
        double sb = per_call(o->self_sum[BASE], o->calls[BASE]);
        g = sn > 0 ? clamp01((sn - sb) / sn) : 0;
    }
    out[K_LATENCY] = c * g;
    if (has_base && !r->trace_mode) {
        if (o->is_entry) {
            double rn = rate(r, o, NOW), rb = rate(r, o, BASE);
            if (rn > rb)
                out[K_TRAFFIC] = CN_RCA_TRAFFIC_WEIGHT * (rn - rb) / rn;
        } else {
            double kn = o->calls[NOW] / nn, kb = o->calls[BASE] / nb;
            double m = CN_MAX(kn, kb);
            if (m > 0)
                out[K_TRAFFIC] = CN_RCA_TRAFFIC_WEIGHT * fabs(kn - kb) / m;
        }
    }
    for (int k = 0; k < K_NUM; k++)
        out[k] = round(clamp01(out[k]) * SCORE_ROUND) / SCORE_ROUND;
}

/* ---- rendering ------------------------------------------------------------------------- */

static json_t *ns_str(uint64_t v)
{
    char b[24];
    snprintf(b, sizeof(b), "%llu", (unsigned long long)v);
    return json_string(b);
}

static json_t *str_json(const struct rca *r, uint32_t id)
{
    const struct str *s = &r->strs.v[id];
    json_t *j = json_stringn(s->p ? s->p : "", s->len);
    return j ? j : json_string("");
}

static const char *cstr(const struct rca *r, uint32_t id)
{
    return r->strs.v[id].p ? r->strs.v[id].p : "";
}

static double ms(double ns)
{
    return round(ns / 1e3) / 1e3; /* milliseconds to the microsecond */
}

static json_t *figures(struct rca *r, struct opstat *o, int win)
{
    json_t *j = json_object();
    double n = r->n_req[win];
    json_object_set_new(j, "count", json_integer((json_int_t)llround(o->calls[win])));
    json_object_set_new(j, "errors", json_integer((json_int_t)llround(o->errors[win])));
    json_object_set_new(j, "p50Ms", json_real(ms(wquant(&o->dur[win], 0.5))));
    json_object_set_new(j, "p99Ms", json_real(ms(wquant(&o->dur[win], 0.99))));
    json_object_set_new(j, "selfMs", json_real(ms(per_call(o->self_sum[win], o->calls[win]))));
    json_object_set_new(j, "selfP99Ms", json_real(ms(wquant(&o->self[win], 0.99))));
    json_object_set_new(j, "callsPerRequest",
                        json_real(n > 0 ? round(o->calls[win] / n * 1e4) / 1e4 : 0));
    json_object_set_new(j, "errorOriginShare",
                        json_real(n > 0 ? round(o->origin[win] / n * 1e4) / 1e4 : 0));
    return j;
}

static json_t *versions(const struct rca *r, uint32_t svc, int win)
{
    json_t *a = json_array();
    const struct svstat *s = svstat_find(r, svc);
    if (!s)
        return a;
    /* Sorted by name. */
    uint32_t v[MAX_VERS];
    uint32_t n = s->nvers[win];
    memcpy(v, s->vers[win], n * sizeof(*v));
    for (uint32_t i = 1; i < n; i++)
        for (uint32_t k = i; k > 0 && str_cmp(r, v[k - 1], v[k]) > 0; k--) {
            uint32_t t = v[k];
            v[k] = v[k - 1];
            v[k - 1] = t;
        }
    for (uint32_t i = 0; i < n; i++)
        json_array_append_new(a, str_json(r, v[i]));
    return a;
}

static int version_changed(const struct rca *r, uint32_t svc)
{
    const struct svstat *s = svstat_find(r, svc);
    if (!s || !s->nvers[NOW] || !s->nvers[BASE])
        return 0;
    for (uint32_t i = 0; i < s->nvers[NOW]; i++) {
        int found = 0;
        for (uint32_t k = 0; k < s->nvers[BASE] && !found; k++)
            found = s->vers[BASE][k] == s->vers[NOW][i];
        if (!found)
            return 1;
    }
    return 0;
}

static json_t *span_json(const struct rca *r, uint32_t trace, uint32_t span)
{
    const struct rspan *s = &r->spans[span];
    char hex[33];
    json_t *j = json_object();
    cn_hex_encode(hex, r->traces[trace].id, 16);
    json_object_set_new(j, "traceId", json_string(hex));
    cn_hex_encode(hex, s->span_id, 8);
    json_object_set_new(j, "spanId", json_string(hex));
    json_object_set_new(j, "service", str_json(r, s->svc));
    json_object_set_new(j, "operation", str_json(r, s->op));
    json_object_set_new(j, "kind", json_string(cn_query_kind_name(s->kind)));
    json_object_set_new(j, "startTimeUnixNano", ns_str(s->start));
    json_object_set_new(j, "durationMs", json_real(ms((double)(s->end - s->start))));
    json_object_set_new(j, "selfMs", json_real(ms((double)s->self)));
    json_object_set_new(j, "status",
                        json_string(s->status == CN_STATUS_ERROR ? "error"
                                    : s->status == CN_STATUS_OK  ? "ok"
                                                                 : "unset"));
    if (s->msg)
        json_object_set_new(j, "message", str_json(r, s->msg));
    if (s->version)
        json_object_set_new(j, "serviceVersion", str_json(r, s->version));
    char link[64];
    cn_hex_encode(hex, r->traces[trace].id, 16);
    snprintf(link, sizeof(link), "/api/v1/traces/%s", hex);
    json_object_set_new(j, "link", json_string(link));
    return j;
}

/* Log evidence: the trace's logs of the span, of its service, of the others; then the
 * service's logs within log_window of the span: warnings and errors first, each the nearest
 * first. */
#define WARN_SEVERITY 13 /* OTLP's WARN: nearby lines at or above it come first */

struct lline {
    int group; /* 0 span, 1 trace (same service), 2 trace (other service), 3 nearby warnings
                  and errors, 4 other nearby lines */
    uint64_t t, seq, dist;
    json_t *j;
};

struct lcollect {
    const struct rca *r;
    const struct rspan *s;
    const uint8_t *trace_id;
    struct cn_slice svc;
    struct lline *v;
    size_t num, cap, max;
    uint64_t seq;
    int nearby;
};

static int lline_cmp(const void *a, const void *b)
{
    const struct lline *x = a, *y = b;
    if (x->group != y->group)
        return x->group < y->group ? -1 : 1;
    if (x->group >= 3 && x->dist != y->dist)
        return x->dist < y->dist ? -1 : 1;
    if (x->t != y->t)
        return x->t < y->t ? -1 : 1;
    return (x->seq > y->seq) - (x->seq < y->seq);
}

static void lcollect_add(struct lcollect *c, const struct cn_log *l, int group)
{
    static const char *const rel[] = {"span", "trace", "trace", "nearby", "nearby"};
    struct lline n = {group, l->time_ns, c->seq++, 0, NULL};
    if (group >= 3) {
        uint64_t t = l->time_ns;
        n.dist = t < c->s->start ? c->s->start - t : t > c->s->end ? t - c->s->end : 0;
    }
    size_t at = c->num;
    if (c->num == c->max) {
        /* Full: n replaces the worst line kept when it ranks before it. */
        at = 0;
        for (size_t i = 1; i < c->num; i++)
            if (lline_cmp(&c->v[i], &c->v[at]) > 0)
                at = i;
        if (lline_cmp(&n, &c->v[at]) >= 0)
            return;
    }
    n.j = cn_query_render_log(c->r->q->cl, l);
    if (!n.j)
        return;
    json_object_set_new(n.j, "relation", json_string(rel[group]));
    if (at == c->num)
        c->num++;
    else
        json_decref(c->v[at].j);
    c->v[at] = n;
}

static void lc_trace_log(void *ctx, const struct cn_log *l)
{
    struct lcollect *c = ctx;
    struct cn_slice svc = l->resource ? l->resource->service : CN_SLICE_LIT("");
    int group = memcmp(l->span_id, c->s->span_id, 8) == 0 ? 0 : cn_slice_eq(svc, c->svc) ? 1 : 2;
    lcollect_add(c, l, group);
}

static void lc_near_log(void *ctx, const struct cn_log *l)
{
    struct lcollect *c = ctx;
    struct cn_slice svc = l->resource ? l->resource->service : CN_SLICE_LIT("");
    if (!cn_slice_eq(svc, c->svc) || memcmp(l->trace_id, c->trace_id, 16) == 0)
        return;
    lcollect_add(c, l, l->severity_number >= WARN_SEVERITY ? 3 : 4);
}

static json_t *logs_json(struct rca *r, uint32_t trace, uint32_t span)
{
    json_t *arr = json_array();
    if (!r->lim->max_logs)
        return arr;
    const struct rspan *s = &r->spans[span];
    const struct str *svc = &r->strs.v[s->svc];
    struct lcollect c = {
        r, s, r->traces[trace].id, {svc->p ? svc->p : "", svc->len}, NULL, 0, 0, r->lim->max_logs,
        0, 0};
    c.v = calloc(c.max, sizeof(*c.v));
    if (!c.v)
        return arr;
    if (r->src->trace_logs)
        r->src->trace_logs(r->src->ctx, r->traces[trace].id, lc_trace_log, &c);
    if (r->src->scan_logs && r->lim->max_log_scan) {
        uint64_t w = r->lim->log_window_ns;
        uint64_t from = s->start > w ? s->start - w : 0;
        uint64_t to = s->end < UINT64_MAX - w - 1 ? s->end + w + 1 : UINT64_MAX;
        r->src->scan_logs(r->src->ctx, from, to, r->lim->max_log_scan, lc_near_log, &c);
    }
    qsort(c.v, c.num, sizeof(*c.v), lline_cmp);
    for (size_t i = 0; i < c.num; i++)
        if (c.v[i].j)
            json_array_append_new(arr, c.v[i].j);
    free(c.v);
    return arr;
}

struct has_log {
    const uint8_t *span_id;
    int found;
};

static void has_log_cb(void *ctx, const struct cn_log *l)
{
    struct has_log *h = ctx;
    h->found |= memcmp(l->span_id, h->span_id, 8) == 0;
}

/* Which of the examples the span and log evidence come from: the first whose span has a log
 * line of its own. Services export logs apart from spans, so the newest trace's lines may not
 * have come yet; the first example when none has one. */
static uint32_t example_with_log(const struct rca *r, const struct example *ex, uint32_t n)
{
    if (!r->src->trace_logs || !r->lim->max_logs)
        return 0;
    for (uint32_t i = 0; i < n; i++) {
        struct has_log h = {r->spans[ex[i].span].span_id, 0};
        r->src->trace_logs(r->src->ctx, r->traces[ex[i].trace].id, has_log_cb, &h);
        if (h.found)
            return i;
    }
    return 0;
}

static void pct(char *dst, size_t n, double v)
{
    snprintf(dst, n, "%.1f%%", 100 * v);
}

static json_t *reason(const struct rca *r, const struct opstat *o, int kind)
{
    char b[512], x[32], y[32];
    double nn = r->n_req[NOW], nb = r->n_req[BASE];
    const char *svc = cstr(r, r->svc);
    switch (kind) {
    case K_ERROR_ORIGIN:
        pct(x, sizeof(x), nn > 0 ? o->origin[NOW] / nn : 0);
        pct(y, sizeof(y), nb > 0 ? o->origin[BASE] / nb : 0);
        snprintf(b, sizeof(b), "errors of %s of %s's requests start here%s%s%s", x, svc,
                 nb > 0 ? " (baseline " : "", nb > 0 ? y : "", nb > 0 ? ")" : "");
        break;
    case K_NEW_ERROR: {
        uint32_t best = 0;
        for (uint32_t i = 1; i < o->nnew; i++)
            if (o->newmsgs[i].w > o->newmsgs[best].w)
                best = i;
        pct(x, sizeof(x), nn > 0 ? o->new_err / nn : 0);
        int n = snprintf(b, sizeof(b),
                         "error \"%s\", never seen in the baseline, starts here in "
                         "%s of %s's requests",
                         o->nnew ? cstr(r, o->newmsgs[best].key) : "", x, svc);
        if (version_changed(r, o->svc) && n > 0 && (size_t)n < sizeof(b))
            snprintf(b + n, sizeof(b) - (size_t)n, "; service.version changed");
        break;
    }
    case K_LATENCY:
        pct(x, sizeof(x), r->slow_total > 0 ? o->cp_slow / r->slow_total : 0);
        if (nb > 0 && o->calls[BASE] > 0)
            snprintf(b, sizeof(b),
                     "%s of the slow requests' critical path; self-time %.3f ms per call "
                     "(baseline %.3f ms)",
                     x, ms(per_call(o->self_sum[NOW], o->calls[NOW])),
                     ms(per_call(o->self_sum[BASE], o->calls[BASE])));
        else
            snprintf(b, sizeof(b),
                     "%s of the slow requests' critical path; self-time %.3f ms "
                     "per call",
                     x, ms(per_call(o->self_sum[NOW], o->calls[NOW])));
        break;
    default:
        if (o->is_entry) {
            snprintf(b, sizeof(b), "request rate %.3f/s (baseline %.3f/s)", rate(r, o, NOW),
                     rate(r, o, BASE));
        } else {
            snprintf(b, sizeof(b), "%.3f calls per %s request (baseline %.3f)",
                     nn > 0 ? o->calls[NOW] / nn : 0, svc, nb > 0 ? o->calls[BASE] / nb : 0);
        }
    }
    return json_string(b);
}

static json_t *messages(const struct rca *r, const struct opstat *o)
{
    json_t *a = json_array();
    struct msgcount m[MAX_MSGS];
    uint32_t n = o->nmsgs[NOW];
    memcpy(m, o->msgs[NOW], n * sizeof(*m));
    for (uint32_t i = 1; i < n; i++)
        for (uint32_t k = i; k > 0; k--) {
            int sw = m[k].w > m[k - 1].w ||
                     (m[k].w == m[k - 1].w && str_cmp(r, m[k].key, m[k - 1].key) < 0);
            if (!sw)
                break;
            struct msgcount t = m[k];
            m[k] = m[k - 1];
            m[k - 1] = t;
        }
    for (uint32_t i = 0; i < n; i++) {
        json_t *e = json_object();
        json_object_set_new(e, "message", str_json(r, m[i].key));
        json_object_set_new(e, "count", json_integer((json_int_t)llround(m[i].w)));
        json_object_set_new(
            e, "new",
            json_boolean(r->n_req[BASE] > 0 && !msg_has(o->msgs[BASE], o->nmsgs[BASE], m[i].key)));
        json_array_append_new(a, e);
    }
    return a;
}

static json_t *suspect_json(struct rca *r, const struct suspect *sp, size_t rank)
{
    struct opstat *o = &r->ops[sp->op];
    json_t *j = json_object();
    json_object_set_new(j, "rank", json_integer((json_int_t)rank));
    json_object_set_new(j, "service", str_json(r, o->svc));
    json_object_set_new(j, "operation", str_json(r, o->op));
    json_object_set_new(j, "kind", json_string(kind_names[sp->kind]));
    json_object_set_new(j, "score", json_real(sp->score));
    json_object_set_new(j, "reason", reason(r, o, sp->kind));
    json_t *ev = json_object();
    int exk = kind_example[sp->kind];
    /* The example the evidence comes from goes first; the others keep their order. */
    uint32_t first = example_with_log(r, o->ex[exk], o->nex[exk]);
    json_t *ids = json_array();
    char hex[33];
    for (uint32_t k = 0; k < o->nex[exk]; k++) {
        uint32_t i = k == 0 ? first : k <= first ? k - 1 : k;
        cn_hex_encode(hex, r->traces[o->ex[exk][i].trace].id, 16);
        json_array_append_new(ids, json_string(hex));
    }
    json_object_set_new(ev, "traces", ids);
    if (o->nex[exk]) {
        const struct example *e = &o->ex[exk][first];
        json_object_set_new(ev, "span", span_json(r, e->trace, e->span));
        json_object_set_new(ev, "logs", logs_json(r, e->trace, e->span));
    } else {
        json_object_set_new(ev, "logs", json_array());
    }
    json_object_set_new(ev, "before", figures(r, o, BASE));
    json_t *after = figures(r, o, NOW);
    json_object_set_new(
        after, "criticalPathShare",
        json_real(r->slow_total > 0 ? round(o->cp_slow / r->slow_total * 1e4) / 1e4 : 0));
    json_object_set_new(ev, "after", after);
    json_object_set_new(ev, "errorMessages", messages(r, o));
    json_object_set_new(ev, "versionsBefore", versions(r, o->svc, BASE));
    json_object_set_new(ev, "versionsAfter", versions(r, o->svc, NOW));
    json_object_set_new(ev, "versionChanged", json_boolean(version_changed(r, o->svc)));
    json_object_set_new(j, "evidence", ev);
    return j;
}

static json_t *window_json(const struct rca *r, int win)
{
    json_t *j = json_object();
    json_object_set_new(j, "start", ns_str(r->from[win]));
    json_object_set_new(j, "end", ns_str(r->to[win]));
    json_object_set_new(j, "dataStart", ns_str(r->data_from[win]));
    json_object_set_new(j, "requests", json_integer((json_int_t)llround(r->n_req[win])));
    json_object_set_new(j, "errorRequests", json_integer((json_int_t)llround(r->n_err_req[win])));
    json_object_set_new(j, "tracesSeen", json_integer((json_int_t)r->traces_seen[win]));
    json_object_set_new(j, "tracesExamined", json_integer((json_int_t)r->traces_examined[win]));
    return j;
}

static json_t *render(struct rca *r)
{
    struct suspect *sus = malloc((r->nops ? r->nops : 1) * K_NUM * sizeof(*sus));
    if (!sus)
        return NULL;
    size_t ns = 0;
    for (size_t i = 0; i < r->nops; i++) {
        double sc[K_NUM];
        scores(r, &r->ops[i], sc);
        for (int k = 0; k < K_NUM; k++)
            if (sc[k] >= CN_RCA_MIN_SCORE)
                sus[ns++] = (struct suspect){(uint32_t)i, k, sc[k]};
    }
    if (ns)
        qsort_r(sus, ns, sizeof(*sus), suspect_cmp, r);
    json_t *out = json_object();
    json_object_set_new(out, "service", str_json(r, r->svc));
    json_object_set_new(out, "mode", json_string(r->trace_mode ? "trace" : "service"));
    if (r->trace_mode) {
        char hex[33];
        cn_hex_encode(hex, r->q->trace_id, 16);
        json_object_set_new(out, "traceId", json_string(hex));
    }
    json_t *w = window_json(r, NOW);
    json_object_set_new(w, "slowThresholdMs", json_real(ms(r->slow_threshold)));
    json_object_set_new(out, "window", w);
    json_object_set_new(out, "baseline", window_json(r, BASE));
    json_t *ex = json_object();
    json_object_set_new(ex, "spansRead", json_integer((json_int_t)r->spans_read));
    json_object_set_new(ex, "maxSpans", json_integer((json_int_t)r->span_budget));
    json_object_set_new(ex, "maxTraces", json_integer((json_int_t)r->lim->max_traces));
    json_object_set_new(ex, "tracesCut", json_integer((json_int_t)r->traces_cut));
    json_object_set_new(ex, "sampled", json_boolean(r->sampled));
    json_object_set_new(ex, "truncated", json_boolean(r->truncated));
    json_object_set_new(out, "examined", ex);
    json_t *arr = json_array();
    size_t limit = r->q->limit;
    for (size_t i = 0; i < ns && i < limit; i++)
        json_array_append_new(arr, suspect_json(r, &sus[i], i + 1));
    json_object_set_new(out, "suspects", arr);
    free(sus);
    return out;
}

/* ---- entry ----------------------------------------------------------------------------- */

static void rca_free(struct rca *r)
{
    strtab_free(&r->strs);
    free(r->spans);
    free(r->kids);
    free(r->traces);
    for (size_t i = 0; i < r->nops; i++)
        for (int w = 0; w < 2; w++) {
            free(r->ops[i].dur[w].v);
            free(r->ops[i].self[w].v);
        }
    free(r->ops);
    free(r->opidx);
    free(r->svs);
    free(r->orecs);
    free(r->tm.cells);
}

static int fail(const char **err_param, const char *param, char *err, size_t err_len,
                const char *msg, int rc)
{
    if (err_param)
        *err_param = param;
    if (err && err_len)
        snprintf(err, err_len, "%s", msg);
    return rc;
}

int cn_rca_run(const struct cn_rca_source *src, const struct cn_rca_limits *lim,
               const struct cn_rca_query *q, json_t **out, const char **err_param, char *err,
               size_t err_len)
{
    *out = NULL;
    if (err_param)
        *err_param = NULL;
    if (q->limit < 1 || q->limit > CN_RCA_MAX_SUSPECTS)
        return fail(err_param, "limit", err, err_len, "limit must be 1..50", CN_EINVAL);
    if (!q->by_trace && !q->service.ptr)
        return fail(err_param, "service", err, err_len, "service or trace is required", CN_EINVAL);
    if (!q->by_trace && q->to_ns <= q->from_ns)
        return fail(err_param, "start", err, err_len, "start must be before end", CN_EINVAL);
    int base_given = q->base_from_ns || q->base_to_ns;
    if (base_given && q->base_to_ns <= q->base_from_ns)
        return fail(err_param, "baseline_start", err, err_len,
                    "baseline_start must be before baseline_end", CN_EINVAL);
    if (lim->max_traces < 1 || lim->max_spans < 3 || lim->max_trace_spans < 1)
        return fail(err_param, NULL, err, err_len, "bad RCA limits", CN_EINVAL);
    struct rca *r = calloc(1, sizeof(*r));
    if (!r)
        return fail(err_param, NULL, err, err_len, "out of memory", CN_ENOMEM);
    r->src = src;
    r->lim = lim;
    r->q = q;
    r->span_budget = lim->max_spans;
    int rc = 0;
    if (q->by_trace) {
        r->trace_mode = 1;
        if (fetch_trace(r, q->trace_id, NOW, 1.0) == 0) {
            rc = r->failed ? fail(err_param, NULL, err, err_len, "out of memory", CN_ENOMEM)
                           : fail(err_param, "trace", err, err_len, "trace not found", CN_ENOENT);
            goto out;
        }
        r->traces_seen[NOW] = 1;
        /* The trace's extent and its root service (the first root in start order). */
        struct rtrace *t = &r->traces[0];
        uint64_t lo = UINT64_MAX, hi = 0;
        const struct rspan *root = NULL;
        for (size_t i = 0; i < t->n; i++) {
            const struct rspan *s = &r->spans[t->first + i];
            lo = CN_MIN(lo, s->start);
            hi = CN_MAX(hi, s->end);
            if (cn_id_is_zero(s->parent_id, 8) && (!root || span_cmp(s, root) < 0))
                root = s;
        }
        if (!root) /* no root stored: the earliest span */
            for (size_t i = 0; i < t->n; i++)
                if (!root || span_cmp(&r->spans[t->first + i], root) < 0)
                    root = &r->spans[t->first + i];
        r->from[NOW] = lo;
        r->to[NOW] = hi > lo ? hi : lo + 1;
        if (q->service.ptr) {
            r->svc = intern_cut(r, q->service.ptr, q->service.len);
            int found = 0;
            for (size_t i = 0; i < t->n && !found; i++)
                found = r->spans[t->first + i].svc == r->svc && r->svc;
            if (!found) {
                rc = fail(err_param, "service", err, err_len,
                          "the service has no span in the trace", CN_ENOENT);
                goto out;
            }
        } else {
            r->svc = root->svc;
        }
        r->from[BASE] = base_given
                            ? q->base_from_ns
                            : (lo > CN_RCA_TRACE_BASELINE_NS ? lo - CN_RCA_TRACE_BASELINE_NS : 0);
        r->to[BASE] = base_given ? q->base_to_ns : lo;
    } else {
        r->svc = intern_cut(r, q->service.ptr, q->service.len);
        r->from[NOW] = q->from_ns;
        r->to[NOW] = q->to_ns;
        uint64_t len = q->to_ns - q->from_ns;
        r->from[BASE] = base_given ? q->base_from_ns : (q->from_ns > len ? q->from_ns - len : 0);
        r->to[BASE] = base_given ? q->base_to_ns : q->from_ns;
    }
    if (r->failed) {
        rc = fail(err_param, NULL, err, err_len, "out of memory", CN_ENOMEM);
        goto out;
    }
    r->data_from[NOW] = r->from[NOW];
    r->data_from[BASE] = r->from[BASE];
    const struct str *sv = &r->strs.v[r->svc];
    struct cn_slice svc = {sv->p ? sv->p : "", sv->len};
    if (!r->trace_mode)
        collect_window(r, NOW, svc, NULL);
    if (r->to[BASE] > r->from[BASE] && !r->failed)
        collect_window(r, BASE, svc, r->trace_mode ? q->trace_id : NULL);
    if (!r->failed)
        analyse(r);
    if (r->failed) {
        rc = fail(err_param, NULL, err, err_len, "out of memory", CN_ENOMEM);
        goto out;
    }
    *out = render(r);
    if (!*out)
        rc = fail(err_param, NULL, err, err_len, "out of memory", CN_ENOMEM);
out:
    rca_free(r);
    free(r);
    return rc;
}
