/* Query layer: trace search, logs search, autocomplete, topology (query.h). */
#include "telemetry/query.h"

#include "telemetry/render.h"

#include <ctype.h>

#define SEC_NS     1000000000ull
#define WINDOW0_NS (60 * SEC_NS) /* first (newest) window of a scan; each next one doubles */
/* Distinct traces one search collects before it stops (truncated): bounds its memory. */
#define MAX_CANDIDATES 100000

void cn_query_limits_default(struct cn_query_limits *l)
{
    l->default_limit = 20;
    l->max_limit = 1000;
    l->max_scan_records = 2000000;
    l->max_range_ns = 7 * 86400 * SEC_NS;
    l->max_tag_values = 10000;
}

static void put_err(char *err, size_t err_len, const char *msg)
{
    if (err && err_len)
        snprintf(err, err_len, "%s", msg);
}

/* Checks the range and limit every scanning query shares. */
static int check_common(const struct cn_query_limits *lim, uint64_t from, uint64_t to, size_t limit,
                        char *err, size_t err_len)
{
    if (to <= from) {
        put_err(err, err_len, "end must be after start");
        return CN_EINVAL;
    }
    if (to - from > lim->max_range_ns) {
        snprintf(err, err_len, "time range wider than query.max_range (%llus)",
                 (unsigned long long)(lim->max_range_ns / SEC_NS));
        return CN_EINVAL;
    }
    if (limit < 1 || limit > lim->max_limit) {
        snprintf(err, err_len, "limit must be 1..%u (query.max_limit)", lim->max_limit);
        return CN_EINVAL;
    }
    return 0;
}

/* Calls fn on [lo, hi) windows from the newest backwards until it returns nonzero. */
static void each_window(uint64_t from, uint64_t to, int (*fn)(void *, uint64_t, uint64_t),
                        void *ctx)
{
    uint64_t w = WINDOW0_NS, hi = to;
    while (hi > from) {
        uint64_t lo = hi - from > w ? hi - w : from;
        if (fn(ctx, lo, hi))
            return;
        hi = lo;
        if (w < UINT64_MAX / 2)
            w *= 2;
    }
}

/* ---- bloom terms ----------------------------------------------------------------------- */

/* Segments skip by their token blooms (store.h), which hold string-like values only: a value
 * may prune only when no integer, double or boolean reads as it (cn_val_text). */
static int string_only_value(struct cn_slice v)
{
    if (v.len == 0 || (v.len == 4 && memcmp(v.ptr, "true", 4) == 0) ||
        (v.len == 5 && memcmp(v.ptr, "false", 5) == 0))
        return 0;
    char tmp[64];
    if (v.len >= sizeof(tmp))
        return 1; /* longer than any number's text */
    memcpy(tmp, v.ptr, v.len);
    tmp[v.len] = '\0';
    char *end;
    (void)strtod(tmp, &end);
    return *end != '\0'; /* strtod reads every text a number prints as, and more */
}

/* Adds the value of each k=v predicate that may prune to terms. */
static size_t pred_terms(const struct cn_pred *p, size_t n, struct cn_slice *terms, size_t num)
{
    for (size_t i = 0; i < n; i++)
        if (p[i].op == CN_PRED_EQ &&
            string_only_value((struct cn_slice){p[i].value, p[i].value_len}))
            terms[num++] = (struct cn_slice){p[i].value, p[i].value_len};
    return num;
}

/* ---- trace ID set ---------------------------------------------------------------------- */

/* Open addressing; a zero ID marks an empty cell (a zero trace ID never reaches the store). */
struct idset {
    uint8_t (*ids)[16];
    size_t cap, num;
};

static uint64_t id_hash(const uint8_t *id)
{
    uint64_t h;
    memcpy(&h, id + 8, 8);
    return h * 0x9E3779B97F4A7C15ull;
}

static int idset_add(struct idset *s, const uint8_t *id)
{
    if ((s->num + 1) * 2 > s->cap) {
        size_t ncap = s->cap ? s->cap * 2 : 256;
        uint8_t(*n)[16] = calloc(ncap, 16);
        if (!n)
            return CN_ENOMEM;
        for (size_t i = 0; i < s->cap; i++) {
            if (cn_id_is_zero(s->ids[i], 16))
                continue;
            size_t j = id_hash(s->ids[i]) & (ncap - 1);
            while (!cn_id_is_zero(n[j], 16))
                j = (j + 1) & (ncap - 1);
            memcpy(n[j], s->ids[i], 16);
        }
        free(s->ids);
        s->ids = n;
        s->cap = ncap;
    }
    size_t j = id_hash(id) & (s->cap - 1);
    while (!cn_id_is_zero(s->ids[j], 16)) {
        if (memcmp(s->ids[j], id, 16) == 0)
            return 0;
        j = (j + 1) & (s->cap - 1);
    }
    memcpy(s->ids[j], id, 16);
    s->num++;
    return 1;
}

/* ---- trace search ---------------------------------------------------------------------- */

static int span_matches(const struct cn_trace_query *q, const struct cn_span *s)
{
    if (q->service.ptr &&
        !(s->resource ? cn_slice_eq(s->resource->service, q->service) : q->service.len == 0))
        return 0;
    if (q->operation.ptr && !cn_slice_eq(s->name, q->operation))
        return 0;
    if (q->kind >= 0 && s->kind != q->kind)
        return 0;
    if (q->status >= 0 && s->status_code != q->status)
        return 0;
    uint64_t d = s->end_ns > s->start_ns ? s->end_ns - s->start_ns : 0;
    if (q->min_duration_ns && d < q->min_duration_ns)
        return 0;
    if (q->max_duration_ns && d > q->max_duration_ns)
        return 0;
    for (size_t i = 0; i < q->num_preds; i++)
        if (!cn_pred_match_span(&q->preds[i], s))
            return 0;
    return 1;
}

struct tsearch {
    struct cn_store *st;
    const struct cn_trace_query *q;
    uint64_t budget, scanned;
    struct idset ids;
    int truncated, failed;
    struct cn_store_filter f; /* the span-level conditions the store checks first */
    struct cn_slice terms[CN_QUERY_MAX_PREDS];
};

static void tsearch_span(void *ctx, const struct cn_span *s)
{
    struct tsearch *t = ctx;
    if (t->failed || t->ids.num >= MAX_CANDIDATES)
        return;
    if (!span_matches(t->q, s))
        return;
    int rc = idset_add(&t->ids, s->trace_id);
    if (rc < 0)
        t->failed = 1;
    else if (t->ids.num >= MAX_CANDIDATES)
        t->truncated = 1;
}

static int tsearch_window(void *ctx, uint64_t lo, uint64_t hi)
{
    struct tsearch *t = ctx;
    uint64_t left = t->budget - t->scanned;
    if (left == 0) { /* 0 would mean "no limit" to the store */
        t->truncated = 1;
        return 1;
    }
    size_t n = cn_store_scan_spans_where(t->st, lo, hi, left, &t->f, tsearch_span, t, NULL);
    t->scanned += n;
    if (n >= left) {
        t->truncated = 1;
        return 1;
    }
    if (t->failed || t->ids.num >= MAX_CANDIDATES)
        return 1;
    /* Newest first: once enough traces matched, older windows cannot rank higher. */
    return t->q->order == CN_ORDER_START && t->ids.num >= t->q->limit;
}

static int by_start_desc(const void *a, const void *b)
{
    const struct cn_derive_trace *x = a, *y = b;
    if (x->start_ns != y->start_ns)
        return x->start_ns < y->start_ns ? 1 : -1;
    return memcmp(x->trace_id, y->trace_id, 16);
}

static int by_duration_desc(const void *a, const void *b)
{
    const struct cn_derive_trace *x = a, *y = b;
    if (x->duration_ns != y->duration_ns)
        return x->duration_ns < y->duration_ns ? 1 : -1;
    return by_start_desc(a, b);
}

struct summ {
    struct cn_derive_trace *t;
    struct cn_arena *names;
    uint64_t end_ns;
    int failed;
};

static struct cn_slice keep(struct summ *m, struct cn_slice s)
{
    struct cn_slice c = cn_arena_dup(m->names, s.ptr ? s.ptr : "", s.len);
    if (!c.ptr)
        m->failed = 1;
    return c;
}

/* Runs under the store's read lock: names are copied into m->names at once. */
static void summ_span(void *ctx, const struct cn_span *s)
{
    struct summ *m = ctx;
    struct cn_derive_trace *t = m->t;
    if (m->failed)
        return;
    struct cn_slice svc = s->resource ? s->resource->service : CN_SLICE_LIT("unknown_service");
    int root = cn_id_is_zero(s->parent_id, 8);
    /* The root is the first span without a parent; until one, the earliest span. */
    if (t->num_spans == 0 || (root && !t->has_root) ||
        (!t->has_root && s->start_ns < t->start_ns)) {
        t->root_service = keep(m, svc);
        t->root_operation = keep(m, s->name);
        t->has_root |= root;
    }
    if (t->num_spans == 0 || s->start_ns < t->start_ns)
        t->start_ns = s->start_ns;
    if (s->end_ns > m->end_ns)
        m->end_ns = s->end_ns;
    t->num_spans++;
    t->num_errors += s->status_code == CN_STATUS_ERROR;
    for (uint32_t i = 0; i < t->num_services; i++)
        if (cn_slice_eq(t->services[i], svc))
            return;
    if (t->num_services < CN_DERIVE_TRACE_SERVICES_MAX)
        t->services[t->num_services++] = keep(m, svc);
    else
        t->services_truncated = 1;
}

int cn_query_trace_summary(struct cn_store *st, struct cn_derive_trace *out,
                           const uint8_t trace_id[16], struct cn_arena *names)
{
    struct cn_derive *d = cn_store_derive(st);
    if (d && cn_derive_trace(d, out, trace_id) == 0)
        return 0;
    if (!names)
        return CN_ENOENT;
    struct cn_derive_trace t;
    memset(&t, 0, sizeof(t));
    memcpy(t.trace_id, trace_id, 16);
    struct summ m = {&t, names, 0, 0};
    if (cn_store_trace(st, trace_id, summ_span, &m) == 0)
        return CN_ENOENT;
    if (m.failed)
        return CN_ENOMEM;
    t.duration_ns = m.end_ns > t.start_ns ? m.end_ns - t.start_ns : 0;
    *out = t;
    return 0;
}

int cn_query_traces(struct cn_store *st, const struct cn_query_limits *lim,
                    const struct cn_trace_query *q, struct cn_trace_result *out, char *err,
                    size_t err_len)
{
    memset(out, 0, sizeof(*out));
    cn_arena_init(&out->names, 64u << 10, 64u << 20);
    int rc = check_common(lim, q->from_ns, q->to_ns, q->limit, err, err_len);
    if (rc)
        return rc;
    if (q->min_duration_ns && q->max_duration_ns && q->max_duration_ns < q->min_duration_ns) {
        put_err(err, err_len, "maxDuration is below minDuration");
        return CN_EINVAL;
    }
    struct cn_derive *d = cn_store_derive(st);
    int any = !q->service.ptr && !q->operation.ptr && !q->num_preds && !q->min_duration_ns &&
              !q->max_duration_ns && q->status < 0 && q->kind < 0;
    if (any && d && q->order == CN_ORDER_START) {
        /* No span condition: the derived summaries answer without reading spans, when they
         * hold enough (they know only what was ingested or replayed since the start). */
        rc = cn_derive_traces(d, &out->traces, &out->num, q->from_ns, q->to_ns, q->limit);
        if (rc) {
            put_err(err, err_len, "out of memory");
            return rc;
        }
        if (out->num >= q->limit)
            return 0;
        free(out->traces);
        out->traces = NULL;
        out->num = 0;
    }
    struct tsearch t = {.st = st, .q = q, .budget = lim->max_scan_records};
    t.f = (struct cn_store_filter){.service = q->service,
                                   .name = q->operation,
                                   .kind = q->kind,
                                   .status = q->status,
                                   .min_duration_ns = q->min_duration_ns,
                                   .max_duration_ns = q->max_duration_ns,
                                   .terms = t.terms};
    t.f.num_terms = pred_terms(q->preds, CN_MIN(q->num_preds, CN_QUERY_MAX_PREDS), t.terms, 0);
    each_window(q->from_ns, q->to_ns, tsearch_window, &t);
    out->scanned = t.scanned;
    out->truncated = t.truncated;
    if (t.failed) {
        free(t.ids.ids);
        put_err(err, err_len, "out of memory");
        return CN_ENOMEM;
    }
    if (t.ids.num) {
        out->traces = malloc(t.ids.num * sizeof(*out->traces));
        if (!out->traces) {
            free(t.ids.ids);
            put_err(err, err_len, "out of memory");
            return CN_ENOMEM;
        }
    }
    for (size_t i = 0; i < t.ids.cap; i++) {
        if (cn_id_is_zero(t.ids.ids[i], 16))
            continue;
        if (cn_query_trace_summary(st, &out->traces[out->num], t.ids.ids[i], &out->names) == 0)
            out->num++;
    }
    free(t.ids.ids);
    if (out->num)
        qsort(out->traces, out->num, sizeof(*out->traces),
              q->order == CN_ORDER_DURATION ? by_duration_desc : by_start_desc);
    if (out->num > q->limit)
        out->num = q->limit;
    return 0;
}

void cn_trace_result_release(struct cn_trace_result *r)
{
    free(r->traces);
    cn_arena_release(&r->names);
    memset(r, 0, sizeof(*r));
}

/* ---- logs ------------------------------------------------------------------------------ */

static int is_tok(unsigned char c)
{
    return isalnum(c) || c == '_' || c >= 0x80;
}

/* The next token of s[*at..n): returns its start and sets *len; -1 at the end. */
static ptrdiff_t next_tok(const char *s, size_t n, size_t *at, size_t *len)
{
    size_t i = *at;
    while (i < n && !is_tok((unsigned char)s[i]))
        i++;
    if (i >= n) {
        *at = n;
        return -1;
    }
    size_t b = i;
    while (i < n && is_tok((unsigned char)s[i]))
        i++;
    *at = i;
    *len = i - b;
    return (ptrdiff_t)b;
}

static int tok_eq(const char *a, const char *b, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (tolower((unsigned char)a[i]) != tolower((unsigned char)b[i]))
            return 0;
    return 1;
}

/* 1 when s[0..n) holds tok[0..m) as a substring, ASCII case ignored as tok_eq does. */
static int ci_contains(const char *s, size_t n, const char *tok, size_t m)
{
    unsigned char lo = (unsigned char)tolower((unsigned char)tok[0]);
    unsigned char up = (unsigned char)toupper((unsigned char)tok[0]);
    for (size_t i = 0; i + m <= n; i++) {
        unsigned char c = (unsigned char)s[i];
        if ((c == lo || c == up) && tok_eq(s + i, tok, m))
            return 1;
    }
    return 0;
}

/* 1 when the tokens of term appear as a run among the tokens of text. */
static int has_term(const char *text, size_t n, struct cn_slice term)
{
    size_t tat = 0, tlen;
    ptrdiff_t t0 = next_tok(term.ptr, term.len, &tat, &tlen);
    if (t0 < 0)
        return 1; /* no token: nothing to require */
    /* A token of the text is a substring of it: most texts fail this byte loop for the
     * term's longest token (likely its rarest), far cheaper than cutting them into tokens. */
    size_t at_l = tat, len_l, best_len = tlen;
    ptrdiff_t best = t0;
    for (ptrdiff_t b; (b = next_tok(term.ptr, term.len, &at_l, &len_l)) >= 0;)
        if (len_l > best_len) {
            best = b;
            best_len = len_l;
        }
    if (!ci_contains(text, n, term.ptr + best, best_len))
        return 0;
    size_t at = 0, len;
    for (ptrdiff_t b; (b = next_tok(text, n, &at, &len)) >= 0;) {
        if (len != tlen || !tok_eq(text + b, term.ptr + t0, len))
            continue;
        /* Compare the following tokens of both. */
        size_t a2 = at, t2 = tat, l1, l2;
        int ok = 1;
        for (;;) {
            ptrdiff_t tb = next_tok(term.ptr, term.len, &t2, &l2);
            if (tb < 0)
                break;
            ptrdiff_t xb = next_tok(text, n, &a2, &l1);
            if (xb < 0 || l1 != l2 || !tok_eq(text + xb, term.ptr + tb, l1)) {
                ok = 0;
                break;
            }
        }
        if (ok)
            return 1;
    }
    return 0;
}

/* 1 when a token could be one of the text of a number or boolean body (cn_val_text:
 * "-12", "1.5e+20", "inf", "nan", "true", "false"): digits with at most a trailing 'e', or
 * one of those words. */
static int number_token(const char *t, size_t n)
{
    static const char *const words[] = {"inf", "nan", "true", "false", "infinity"};
    for (size_t i = 0; i < CN_ARRAY_LEN(words); i++)
        if (strlen(words[i]) == n && tok_eq(t, words[i], n))
            return 1;
    size_t i = 0;
    while (i < n && isdigit((unsigned char)t[i]))
        i++;
    if (i < n && (t[i] == 'e' || t[i] == 'E'))
        i++;
    return i == n;
}

/* 1 when only a string-like body can hold term: one of its tokens is no number's. Only such
 * terms may prune segments by their token blooms, which hold string-like bodies only. */
static int string_only_term(struct cn_slice term)
{
    size_t at = 0, len;
    for (ptrdiff_t b; (b = next_tok(term.ptr, term.len, &at, &len)) >= 0;)
        if (!number_token(term.ptr + b, len))
            return 1;
    return 0;
}

int cn_query_log_matches(const struct cn_log_query *q, const struct cn_log *l)
{
    if (q->service.ptr &&
        !(l->resource ? cn_slice_eq(l->resource->service, q->service) : q->service.len == 0))
        return 0;
    if (q->min_severity && l->severity_number < q->min_severity)
        return 0;
    if (!cn_id_is_zero(q->trace_id, 16) && memcmp(q->trace_id, l->trace_id, 16) != 0)
        return 0;
    if (q->num_terms) {
        const char *text;
        size_t n;
        char tmp[40];
        if (l->body.type == CN_VAL_STR || l->body.type == CN_VAL_ARRAY ||
            l->body.type == CN_VAL_KVLIST) {
            text = l->body.u.s.ptr;
            n = l->body.u.s.len;
        } else {
            int r = cn_val_text(&l->body, tmp, sizeof(tmp));
            text = tmp;
            n = r > 0 ? (size_t)r : 0;
        }
        for (size_t i = 0; i < q->num_terms; i++)
            if (!has_term(text ? text : "", n, q->terms[i]))
                return 0;
    }
    for (size_t i = 0; i < q->num_preds; i++)
        if (!cn_pred_match_log(&q->preds[i], l))
            return 0;
    return 1;
}

static void add_code_url(json_t *j, const struct cn_code_links *cl, const struct cn_resource *r,
                         const struct cn_kvs *attrs)
{
    char url[2048];
    int n = cn_code_url(cl, r, attrs, url, sizeof(url));
    if (n > 0)
        json_object_set_new(j, "codeUrl", json_stringn(url, (size_t)n));
}

json_t *cn_query_render_log(const struct cn_code_links *cl, const struct cn_log *l)
{
    json_t *j = cn_render_log(l);
    if (!j)
        return NULL;
    struct cn_slice svc = l->resource ? l->resource->service : CN_SLICE_LIT("");
    json_t *sv = json_stringn(svc.ptr ? svc.ptr : "", svc.len);
    json_object_set_new(j, "service", sv ? sv : json_string(""));
    if (!cn_id_is_zero(l->trace_id, 16)) {
        char link[64] = "/api/v1/traces/";
        cn_hex_encode(link + 15, l->trace_id, 16);
        json_object_set_new(j, "traceLink", json_string(link));
    }
    add_code_url(j, cl, l->resource, &l->attrs);
    return j;
}

json_t *cn_query_render_span(const struct cn_code_links *cl, const struct cn_span *s)
{
    json_t *j = cn_render_span(s);
    if (j)
        add_code_url(j, cl, s->resource, &s->attrs);
    return j;
}

/* A min-heap by time of the newest `cap` matches of the current window. */
struct hit {
    uint64_t t, seq;
    json_t *j;
};

struct lsearch {
    struct cn_store *st;
    const struct cn_log_query *q;
    const struct cn_code_links *cl;
    uint64_t budget, scanned, seq;
    struct hit *heap;
    size_t num, cap; /* cap: results still wanted */
    json_t *out;
    int truncated;
    struct cn_store_filter f; /* what the store checks first */
    struct cn_slice terms[CN_QUERY_MAX_TERMS + CN_QUERY_MAX_PREDS];
};

/* Older first; among equal times the later ingested is "newer". */
static int hit_less(const struct hit *a, const struct hit *b)
{
    return a->t != b->t ? a->t < b->t : a->seq < b->seq;
}

static void heap_down(struct hit *h, size_t n, size_t i)
{
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;
        if (l < n && hit_less(&h[l], &h[m]))
            m = l;
        if (r < n && hit_less(&h[r], &h[m]))
            m = r;
        if (m == i)
            return;
        struct hit t = h[i];
        h[i] = h[m];
        h[m] = t;
        i = m;
    }
}

static void heap_up(struct hit *h, size_t i)
{
    while (i && hit_less(&h[i], &h[(i - 1) / 2])) {
        struct hit t = h[i];
        h[i] = h[(i - 1) / 2];
        h[(i - 1) / 2] = t;
        i = (i - 1) / 2;
    }
}

static void lsearch_log(void *ctx, const struct cn_log *l)
{
    struct lsearch *s = ctx;
    if (!cn_query_log_matches(s->q, l))
        return;
    struct hit h = {l->time_ns, s->seq++, NULL};
    if (s->num == s->cap) {
        if (!hit_less(&s->heap[0], &h))
            return; /* older than every kept one */
        h.j = cn_query_render_log(s->cl, l);
        if (!h.j)
            return;
        json_decref(s->heap[0].j);
        s->heap[0] = h;
        heap_down(s->heap, s->num, 0);
        return;
    }
    h.j = cn_query_render_log(s->cl, l);
    if (!h.j)
        return;
    s->heap[s->num] = h;
    heap_up(s->heap, s->num++);
}

static int hit_desc(const void *a, const void *b)
{
    return hit_less(b, a) ? -1 : hit_less(a, b) ? 1 : 0;
}

static int lsearch_window(void *ctx, uint64_t lo, uint64_t hi)
{
    struct lsearch *s = ctx;
    uint64_t left = s->budget - s->scanned;
    if (left == 0) { /* 0 would mean "no limit" to the store */
        s->truncated = 1;
        return 1;
    }
    size_t n = cn_store_scan_logs_where(s->st, lo, hi, left, &s->f, lsearch_log, s, NULL);
    s->scanned += n;
    /* Windows are disjoint in time: this one's hits are all newer than the next one's. */
    qsort(s->heap, s->num, sizeof(*s->heap), hit_desc);
    for (size_t i = 0; i < s->num; i++)
        json_array_append_new(s->out, s->heap[i].j);
    s->cap -= s->num;
    s->num = 0;
    if (n >= left) {
        s->truncated = 1;
        return 1;
    }
    return s->cap == 0;
}

int cn_query_logs(struct cn_store *st, const struct cn_query_limits *lim,
                  const struct cn_code_links *cl, const struct cn_log_query *q,
                  struct cn_log_result *out, char *err, size_t err_len)
{
    memset(out, 0, sizeof(*out));
    int rc = check_common(lim, q->from_ns, q->to_ns, q->limit, err, err_len);
    if (rc)
        return rc;
    struct lsearch s = {
        .st = st, .q = q, .cl = cl, .budget = lim->max_scan_records, .cap = q->limit};
    s.f = (struct cn_store_filter){.service = q->service,
                                   .kind = -1,
                                   .status = -1,
                                   .min_severity = q->min_severity,
                                   .trace_id = cn_id_is_zero(q->trace_id, 16) ? NULL : q->trace_id,
                                   .terms = s.terms};
    size_t nt = 0;
    for (size_t i = 0; i < q->num_terms && nt < CN_QUERY_MAX_TERMS; i++)
        if (string_only_term(q->terms[i]))
            s.terms[nt++] = q->terms[i];
    s.f.num_terms = pred_terms(q->preds, CN_MIN(q->num_preds, CN_QUERY_MAX_PREDS), s.terms, nt);
    s.heap = malloc(q->limit * sizeof(*s.heap));
    s.out = json_array();
    if (!s.heap || !s.out) {
        free(s.heap);
        json_decref(s.out);
        put_err(err, err_len, "out of memory");
        return CN_ENOMEM;
    }
    each_window(q->from_ns, q->to_ns, lsearch_window, &s);
    free(s.heap);
    out->logs = s.out;
    out->scanned = s.scanned;
    out->truncated = s.truncated;
    return 0;
}

void cn_log_result_release(struct cn_log_result *r)
{
    json_decref(r->logs);
    memset(r, 0, sizeof(*r));
}

/* ---- autocomplete ---------------------------------------------------------------------- */

/* Counted names, open addressing on a string hash. */
struct counter {
    struct cn_tag_count *cells;
    size_t cap, num, max;
    int dropped, failed;
};

static uint64_t str_hash(const char *p, size_t n)
{
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++)
        h = (h ^ (unsigned char)p[i]) * 1099511628211ull;
    return h;
}

static void count_name(struct counter *c, const char *p, size_t n, uint8_t type)
{
    if (c->failed)
        return;
    if ((c->num + 1) * 2 > c->cap) {
        size_t ncap = c->cap ? c->cap * 2 : 64;
        struct cn_tag_count *cells = calloc(ncap, sizeof(*cells));
        if (!cells) {
            c->failed = 1;
            return;
        }
        for (size_t i = 0; i < c->cap; i++) {
            if (!c->cells[i].name)
                continue;
            size_t j = str_hash(c->cells[i].name, strlen(c->cells[i].name)) & (ncap - 1);
            while (cells[j].name)
                j = (j + 1) & (ncap - 1);
            cells[j] = c->cells[i];
        }
        free(c->cells);
        c->cells = cells;
        c->cap = ncap;
    }
    size_t j = str_hash(p, n) & (c->cap - 1);
    while (c->cells[j].name) {
        if (c->cells[j].type == type && strlen(c->cells[j].name) == n &&
            memcmp(c->cells[j].name, p, n) == 0) {
            c->cells[j].count++;
            return;
        }
        j = (j + 1) & (c->cap - 1);
    }
    if (c->num >= c->max) {
        c->dropped = 1;
        return;
    }
    char *name = malloc(n + 1);
    if (!name) {
        c->failed = 1;
        return;
    }
    memcpy(name, p, n);
    name[n] = '\0';
    c->cells[j] = (struct cn_tag_count){name, 1, type};
    c->num++;
}

struct tscan {
    struct cn_store *st;
    const struct cn_tag_query *q;
    struct counter c;
    uint64_t budget, scanned;
    int truncated;
};

static int seen_before(const struct cn_kvs *const *lists, size_t first, size_t li, uint32_t ki)
{
    struct cn_slice k = lists[li]->items[ki].key;
    for (size_t l = first; l <= li; l++) {
        uint32_t end = l == li ? ki : lists[l]->num;
        for (uint32_t i = 0; i < end; i++)
            if (cn_slice_eq(lists[l]->items[i].key, k))
                return 1;
    }
    return 0;
}

static void tscan_span(void *ctx, const struct cn_span *s)
{
    struct tscan *t = ctx;
    const struct cn_tag_query *q = t->q;
    if (q->service.ptr &&
        !(s->resource ? cn_slice_eq(s->resource->service, q->service) : q->service.len == 0))
        return;
    const struct cn_kvs *lists[2] = {&s->attrs, s->resource ? &s->resource->attrs : NULL};
    size_t first = q->scope == CN_TAG_SCOPE_RESOURCE;
    size_t nl = q->scope == CN_TAG_SCOPE_SPAN || !lists[1] ? 1 : 2;
    for (size_t li = first; li < nl; li++) {
        for (uint32_t ki = 0; ki < lists[li]->num; ki++) {
            const struct cn_kv *kv = &lists[li]->items[ki];
            if (!q->key.ptr) {
                if (!seen_before(lists, first, li, ki))
                    count_name(&t->c, kv->key.ptr ? kv->key.ptr : "", kv->key.len, 0);
                continue;
            }
            if (!cn_slice_eq(kv->key, q->key) || seen_before(lists, first, li, ki))
                continue;
            char buf[512];
            uint8_t type = q->typed ? kv->val.type : 0;
            int n = cn_val_text(&kv->val, buf, sizeof(buf));
            if (n >= 0 && (size_t)n < sizeof(buf))
                count_name(&t->c, buf, (size_t)n, type);
            else if (kv->val.type == CN_VAL_STR) /* long strings whole */
                count_name(&t->c, kv->val.u.s.ptr, kv->val.u.s.len, type);
        }
    }
}

static int tscan_window(void *ctx, uint64_t lo, uint64_t hi)
{
    struct tscan *t = ctx;
    uint64_t left = t->budget - t->scanned;
    if (left == 0) { /* 0 would mean "no limit" to the store */
        t->truncated = 1;
        return 1;
    }
    size_t n = cn_store_scan_spans(t->st, lo, hi, left, tscan_span, t);
    t->scanned += n;
    if (n >= left) {
        t->truncated = 1;
        return 1;
    }
    return t->c.failed;
}

static int by_count(const void *a, const void *b)
{
    const struct cn_tag_count *x = a, *y = b;
    if (x->count != y->count)
        return x->count < y->count ? 1 : -1;
    int c = strcmp(x->name, y->name);
    return c ? c : (int)x->type - (int)y->type;
}

int cn_query_tags(struct cn_store *st, const struct cn_query_limits *lim,
                  const struct cn_tag_query *q, struct cn_tag_result *out, char *err,
                  size_t err_len)
{
    memset(out, 0, sizeof(*out));
    int rc = check_common(lim, q->from_ns, q->to_ns, q->limit, err, err_len);
    if (rc)
        return rc;
    struct tscan t = {st, q, {NULL, 0, 0, lim->max_tag_values, 0, 0}, lim->max_scan_records, 0, 0};
    each_window(q->from_ns, q->to_ns, tscan_window, &t);
    if (t.c.failed) {
        for (size_t i = 0; i < t.c.cap; i++)
            free(t.c.cells[i].name);
        free(t.c.cells);
        put_err(err, err_len, "out of memory");
        return CN_ENOMEM;
    }
    /* Compact the table into a sorted array. */
    size_t n = 0;
    for (size_t i = 0; i < t.c.cap; i++)
        if (t.c.cells[i].name)
            t.c.cells[n++] = t.c.cells[i];
    if (n)
        qsort(t.c.cells, n, sizeof(*t.c.cells), by_count);
    for (size_t i = q->limit; i < n; i++)
        free(t.c.cells[i].name);
    out->items = t.c.cells;
    out->num = n < q->limit ? n : q->limit;
    out->scanned = t.scanned;
    out->truncated = t.truncated || t.c.dropped;
    return 0;
}

void cn_tag_result_release(struct cn_tag_result *r)
{
    for (size_t i = 0; i < r->num; i++)
        free(r->items[i].name);
    free(r->items);
    memset(r, 0, sizeof(*r));
}

/* ---- topology -------------------------------------------------------------------------- */

static int node_cmp(const void *a, const void *b)
{
    const struct cn_topo_node *x = a, *y = b;
    size_t n = CN_MIN(x->service.len, y->service.len);
    int c = n ? memcmp(x->service.ptr, y->service.ptr, n) : 0;
    return c ? c : (x->service.len > y->service.len) - (x->service.len < y->service.len);
}

static int add_node(struct cn_topology *t, size_t *cap, struct cn_slice svc)
{
    for (size_t i = 0; i < t->num_nodes; i++)
        if (cn_slice_eq(t->nodes[i].service, svc))
            return 0;
    if (t->num_nodes == *cap) {
        size_t nc = *cap ? *cap * 2 : 16;
        struct cn_topo_node *n = realloc(t->nodes, nc * sizeof(*n));
        if (!n)
            return CN_ENOMEM;
        t->nodes = n;
        *cap = nc;
    }
    memset(&t->nodes[t->num_nodes], 0, sizeof(t->nodes[0]));
    t->nodes[t->num_nodes++].service = svc;
    return 0;
}

int cn_query_topology(struct cn_derive *d, struct cn_topology *out, uint64_t from_ns,
                      uint64_t to_ns, struct cn_slice service, uint32_t depth)
{
    memset(out, 0, sizeof(*out));
    if (to_ns <= from_ns)
        return CN_EINVAL;
    uint64_t w = cn_derive_opts(d)->bucket_ns;
    uint64_t b_from = from_ns / w * w;
    uint64_t b_to = to_ns / w * w + (to_ns % w ? w : 0);
    if (b_to < to_ns)
        return CN_EINVAL; /* overflow at the end of time */
    out->from_ns = b_from;
    out->to_ns = b_to;
    struct cn_derive_edge_query eq = {from_ns, to_ns, service, depth};
    int rc = cn_derive_edges(d, &out->edges, &out->num_edges, &eq);
    if (rc)
        return rc;
    size_t cap = 0;
    if (service.ptr) {
        rc = add_node(out, &cap, service);
    } else {
        struct cn_slice *names = NULL;
        size_t num = 0;
        rc = cn_derive_services(d, &names, &num);
        for (size_t i = 0; rc == 0 && i < num; i++)
            rc = add_node(out, &cap, names[i]);
        free(names);
    }
    for (size_t i = 0; rc == 0 && i < out->num_edges; i++) {
        rc = add_node(out, &cap, out->edges[i].caller);
        if (rc == 0)
            rc = add_node(out, &cap, out->edges[i].callee);
    }
    /* RED over the whole range as one step. */
    size_t keep = 0;
    for (size_t i = 0; rc == 0 && i < out->num_nodes; i++) {
        struct cn_topo_node *n = &out->nodes[i];
        struct cn_derive_red_query rq = {n->service, {NULL, 0}, 0, b_from, b_to, b_to - b_from};
        struct cn_derive_red_point *pts = NULL;
        size_t np = 0;
        int r = cn_derive_red(d, &pts, &np, &rq);
        if (r == 0 && np) {
            n->count = pts[0].count;
            n->errors = pts[0].errors;
            n->rate = pts[0].rate;
            n->error_rate = pts[0].error_rate;
            n->p50_ns = pts[0].p50_ns;
            n->p95_ns = pts[0].p95_ns;
            n->p99_ns = pts[0].p99_ns;
        } else if (r != 0 && r != CN_ENOENT) {
            rc = r;
        }
        free(pts);
        /* Without a service filter, services with no traffic in the range and no edge stay
         * out; the filtered service always stays. */
        int in_edges = 0;
        for (size_t e = 0; e < out->num_edges && !in_edges; e++)
            in_edges = cn_slice_eq(out->edges[e].caller, n->service) ||
                       cn_slice_eq(out->edges[e].callee, n->service);
        if (n->count || in_edges || (service.ptr && cn_slice_eq(n->service, service)))
            out->nodes[keep++] = *n;
    }
    out->num_nodes = keep;
    if (rc) {
        cn_topology_release(out);
        return rc;
    }
    if (out->num_nodes)
        qsort(out->nodes, out->num_nodes, sizeof(*out->nodes), node_cmp);
    return 0;
}

void cn_topology_release(struct cn_topology *t)
{
    free(t->nodes);
    free(t->edges);
    memset(t, 0, sizeof(*t));
}

/* ---- threadpool ------------------------------------------------------------------------ */

struct job {
    uv_work_t w;
    cn_query_work_cb work, done;
    void *arg;
};

static void job_work(uv_work_t *w)
{
    struct job *j = w->data;
    j->work(j->arg);
}

static void job_after(uv_work_t *w, int status)
{
    (void)status; /* UV_ECANCELED never happens: jobs are not cancelled */
    struct job *j = w->data;
    cn_query_work_cb done = j->done;
    void *arg = j->arg;
    free(j);
    done(arg);
}

int cn_query_submit(uv_loop_t *loop, cn_query_work_cb work, cn_query_work_cb done, void *arg)
{
    struct job *j = malloc(sizeof(*j));
    if (!j)
        return CN_ENOMEM;
    j->work = work;
    j->done = done;
    j->arg = arg;
    j->w.data = j;
    int rc = uv_queue_work(loop, &j->w, job_work, job_after);
    if (rc) {
        free(j);
        return CN_EIO;
    }
    return 0;
}
