/* TraceQL search over the store (traceql.h): one scan of the range, a table of the traces
 * that have a matching span, with the spansets each has satisfied so far. TraceQL's
 * semantics (typed comparisons, anchored regexes, one span per spanset, several spansets per
 * trace) are not those of the query layer's trace search (query.h), hence a scan of its
 * own; it shares the store's scan and the query limits. */
#include "telemetry/traceql.h"

struct search {
    const struct cn_tql_query *q;
    size_t spss;
    struct cn_tql_hit *tab; /* open addressing; a zero trace ID marks a free cell */
    size_t cap, num;
    int full, nomem;
};

static uint64_t id_hash(const uint8_t *id)
{
    uint64_t h;
    memcpy(&h, id + 8, 8);
    return h * 0x9E3779B97F4A7C15ull;
}

static struct cn_tql_hit *slot(struct cn_tql_hit *tab, size_t cap, const uint8_t *id)
{
    size_t i = (size_t)(id_hash(id) & (cap - 1));
    while (!cn_id_is_zero(tab[i].trace_id, 16) && memcmp(tab[i].trace_id, id, 16) != 0)
        i = (i + 1) & (cap - 1);
    return &tab[i];
}

static int grow(struct search *s)
{
    size_t cap = s->cap ? s->cap * 2 : 1024;
    struct cn_tql_hit *tab = calloc(cap, sizeof(*tab));
    if (!tab)
        return CN_ENOMEM;
    for (size_t i = 0; i < s->cap; i++)
        if (!cn_id_is_zero(s->tab[i].trace_id, 16))
            *slot(tab, cap, s->tab[i].trace_id) = s->tab[i];
    free(s->tab);
    s->tab = tab;
    s->cap = cap;
    return 0;
}

/* Copies name into dst, cut at a UTF-8 boundary. */
static void copy_name(char *dst, struct cn_slice name)
{
    size_t n = CN_MIN(name.len, (size_t)CN_TQL_MAX_NAME - 1);
    while (n < name.len && n > 0 && ((unsigned char)name.ptr[n] & 0xC0) == 0x80)
        n--;
    if (n)
        memcpy(dst, name.ptr, n);
    dst[n] = '\0';
}

static void on_span(void *ctx, const struct cn_span *sp)
{
    struct search *s = ctx;
    if (s->nomem)
        return;
    unsigned bits = cn_tql_match_bits(s->q, sp);
    if (!bits)
        return;
    struct cn_tql_hit *h = s->cap ? slot(s->tab, s->cap, sp->trace_id) : NULL;
    if (!h || cn_id_is_zero(h->trace_id, 16)) {
        if (s->num >= CN_TQL_MAX_PARTIALS) {
            s->full = 1;
            return;
        }
        if ((s->num + 1) * 2 > s->cap) {
            if (grow(s) != 0) {
                s->nomem = 1;
                return;
            }
        }
        h = slot(s->tab, s->cap, sp->trace_id);
        memcpy(h->trace_id, sp->trace_id, 16);
        s->num++;
    }
    h->bits |= bits;
    h->matched++;
    if (sp->start_ns > h->newest_ns)
        h->newest_ns = sp->start_ns;
    if (h->num_spans < s->spss) {
        struct cn_tql_span *m = &h->spans[h->num_spans++];
        memcpy(m->span_id, sp->span_id, 8);
        m->start_ns = sp->start_ns;
        m->duration_ns = sp->end_ns > sp->start_ns ? sp->end_ns - sp->start_ns : 0;
        copy_name(m->name, sp->name);
    }
}

static int newest_first(const void *a, const void *b)
{
    const struct cn_tql_hit *x = a, *y = b;
    if (x->newest_ns != y->newest_ns)
        return x->newest_ns > y->newest_ns ? -1 : 1;
    return memcmp(x->trace_id, y->trace_id, 16);
}

int cn_tql_search(struct cn_store *st, const struct cn_tql_query *q, uint64_t from_ns,
                  uint64_t to_ns, uint64_t max_scan, size_t spss, struct cn_tql_result *out)
{
    memset(out, 0, sizeof(*out));
    if (to_ns <= from_ns || spss < 1 || spss > CN_TQL_MAX_SPSS)
        return CN_EINVAL;
    struct search s = {.q = q, .spss = spss};
    out->scanned = cn_store_scan_spans(st, from_ns, to_ns, (size_t)max_scan, on_span, &s);
    out->truncated = s.full || (max_scan && out->scanned >= max_scan);
    if (s.nomem) {
        free(s.tab);
        return CN_ENOMEM;
    }
    unsigned all = cn_tql_all_bits(q);
    size_t n = 0;
    for (size_t i = 0; i < s.cap; i++)
        if (!cn_id_is_zero(s.tab[i].trace_id, 16) && s.tab[i].bits == all)
            s.tab[n++] = s.tab[i];
    if (n == 0) {
        free(s.tab);
        return 0;
    }
    qsort(s.tab, n, sizeof(*s.tab), newest_first);
    /* Give back what the empty cells held. */
    struct cn_tql_hit *hits = realloc(s.tab, n * sizeof(*hits));
    out->hits = hits ? hits : s.tab;
    out->num = n;
    return 0;
}

void cn_tql_result_release(struct cn_tql_result *r)
{
    cn_free(&r->hits);
    r->num = 0;
}
