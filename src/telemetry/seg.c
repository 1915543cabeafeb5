/* Segment format pieces shared by the writer (seg-write.c) and the reader (seg-read.c):
 * checksums, bloom filters, the tokenizer, column names. */
#define CN_SEG_INTERNAL
#include "telemetry/seg.h"
#include "base/hash.h"

/* Short keys (IDs, tokens): the hash inlined, not a call into libxxhash. After base/hash.h,
 * whose long-input checksum keeps libxxhash's vector dispatch. */
#define XXH_INLINE_ALL
#include <xxhash.h>

/* Fixed seeds: changing one changes the file format. */
#define SEED_TRACE 0x43534547540001ull
#define SEED_TOKEN 0x43534547540002ull

static const char *const span_cols[CN_SEG__S_NUM] = {
    [CN_SEG__S_TRACE] = "trace",      [CN_SEG__S_SPAN_ID] = "span_id",
    [CN_SEG__S_PARENT] = "parent",    [CN_SEG__S_SERVICE] = "service",
    [CN_SEG__S_NAME] = "name",        [CN_SEG__S_KIND] = "kind",
    [CN_SEG__S_STATUS] = "status",    [CN_SEG__S_STATUS_MSG] = "status_message",
    [CN_SEG__S_START] = "start",      [CN_SEG__S_DURATION] = "duration",
    [CN_SEG__S_FLAGS] = "flags",      [CN_SEG__S_TRACE_STATE] = "trace_state",
    [CN_SEG__S_SCOPE] = "scope",      [CN_SEG__S_RESOURCE] = "resource",
    [CN_SEG__S_ATTRS] = "attributes", [CN_SEG__S_EVENTS] = "events",
    [CN_SEG__S_LINKS] = "links",
};

static const char *const log_cols[CN_SEG__L_NUM] = {
    [CN_SEG__L_TRACE] = "trace",
    [CN_SEG__L_SPAN_ID] = "span_id",
    [CN_SEG__L_SERVICE] = "service",
    [CN_SEG__L_TIME] = "time",
    [CN_SEG__L_OBSERVED] = "observed_time",
    [CN_SEG__L_SEV_NUM] = "severity_number",
    [CN_SEG__L_SEV_TEXT] = "severity_text",
    [CN_SEG__L_BODY] = "body",
    [CN_SEG__L_ATTRS] = "attributes",
    [CN_SEG__L_FLAGS] = "flags",
    [CN_SEG__L_EVENT_NAME] = "event_name",
    [CN_SEG__L_SCOPE] = "scope",
    [CN_SEG__L_RESOURCE] = "resource",
};

const char *cn_seg__col_name(unsigned kind, unsigned col)
{
    if (kind == CN_SEG_SPANS && col < CN_SEG__S_NUM)
        return span_cols[col];
    if (kind == CN_SEG_LOGS && col < CN_SEG__L_NUM)
        return log_cols[col];
    return "?";
}

uint64_t cn_seg__sum(const void *p, size_t len, uint64_t seed)
{
    return cn_hash_long(p, len, seed);
}

uint64_t cn_seg__bloom_nbits(uint64_t keys)
{
    uint64_t bits = keys * CN_SEG__BLOOM_BPK;
    if (bits < 64)
        bits = 64;
    return (bits + 63) & ~(uint64_t)63;
}

/* Double hashing (Kirsch-Mitzenmacher): probe i is h1 + i * h2 modulo nbits. h2 is odd so
 * the probes differ whenever nbits is a power of two too. */
static inline uint64_t probe(uint64_t h, unsigned i, uint64_t nbits)
{
    uint64_t h1 = h, h2 = (h >> 32 | h << 32) | 1;
    return (h1 + i * h2) % nbits;
}

void cn_seg__bloom_add(uint8_t *bits, uint64_t nbits, unsigned k, uint64_t h)
{
    for (unsigned i = 0; i < k; i++) {
        uint64_t b = probe(h, i, nbits);
        bits[b >> 3] |= (uint8_t)(1u << (b & 7));
    }
}

int cn_seg__bloom_has(const uint8_t *bits, uint64_t nbits, unsigned k, uint64_t h)
{
    for (unsigned i = 0; i < k; i++) {
        uint64_t b = probe(h, i, nbits);
        if (!(bits[b >> 3] & (1u << (b & 7))))
            return 0;
    }
    return 1;
}

uint64_t cn_seg__trace_hash(const uint8_t id[16])
{
    return XXH3_64bits_withSeed(id, 16, SEED_TRACE);
}

uint64_t cn_seg__token_hash(const void *p, size_t len)
{
    return XXH3_64bits_withSeed(p, len, SEED_TOKEN);
}

/* Token bytes: ASCII letters and digits map to their lowercase, every other byte to 0. */
static const unsigned char tok_byte[256] = {
    0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,
    0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,
    0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   48,  49,  50,  51,  52,  53,  54,  55,  56,
    57,  0,   0,   0,   0,   0,   0,   0,   97,  98,  99,  100, 101, 102, 103, 104, 105, 106, 107,
    108, 109, 110, 111, 112, 113, 114, 115, 116, 117, 118, 119, 120, 121, 122, 0,   0,   0,   0,
    0,   0,   97,  98,  99,  100, 101, 102, 103, 104, 105, 106, 107, 108, 109, 110, 111, 112, 113,
    114, 115, 116, 117, 118, 119, 120, 121, 122, 0,   0,   0,   0,   0,   0,   0,   0,   0,   0,
    0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,
    0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,
    0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,
    0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,
    0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,
    0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,
    0,   0,   0,   0,   0,   0,   0,   0,   0,
};

size_t cn_seg__tokens(const char *p, size_t len, cn_seg__token_cb cb, void *ctx)
{
    const unsigned char *u = (const unsigned char *)p;
    char tok[CN_SEG_MAX_TOKEN];
    size_t count = 0, i = 0;
    while (i < len) {
        if (!tok_byte[u[i]]) {
            i++;
            continue;
        }
        size_t j = i;
        unsigned upper = 0;
        for (unsigned char c; j < len && (c = tok_byte[u[j]]) != 0; j++)
            upper |= c != u[j];
        size_t n = j - i;
        if (n >= 2 && n <= CN_SEG_MAX_TOKEN) {
            /* Hashed in place unless a letter must be lowercased first. */
            const char *t = p + i;
            if (upper) {
                for (size_t k = 0; k < n; k++)
                    tok[k] = (char)tok_byte[u[i + k]];
                t = tok;
            }
            if (cb)
                cb(ctx, cn_seg__token_hash(t, n));
            count++;
        }
        i = j;
    }
    return count;
}

/* ---- decoding columns -------------------------------------------------------------------- */

uint64_t cn_seg__get_var_slow(struct cn_seg__cur *c)
{
    uint64_t v = 0;
    for (unsigned s = 0; s < 64; s += 7) {
        if (c->p >= c->e)
            break;
        uint8_t b = *c->p++;
        if (s == 63 && b > 1)
            break;
        v |= (uint64_t)(b & 0x7f) << s;
        if (!(b & 0x80))
            return v;
    }
    cn_seg__bad(c);
    return 0;
}

static void *alloc(struct cn_arena *a, uint64_t count, size_t size)
{
    if (count > (SIZE_MAX >> 1) / size)
        return NULL;
    return cn_arena_alloc(a, count ? count * size : 1);
}

static inline int want_row(const uint8_t *sel, uint64_t i)
{
    return !sel || sel[i];
}

/* "ints" (see seg.h), read in place: value i is at(v, i). */
struct ints {
    uint64_t g;
    uint8_t width;
    uint64_t n;
    const uint8_t *p;
};

static void get_ints(struct cn_seg__cur *c, uint64_t n, struct ints *v)
{
    v->g = cn_seg__get_var(c);
    v->width = cn_seg__get_u8(c);
    v->n = n;
    v->p = NULL;
    if (v->g == 0 || v->width > 8 || (v->width && n > cn_seg__left(c) / v->width)) {
        cn_seg__bad(c);
        v->width = 0;
        v->g = 1;
        return;
    }
    v->p = cn_seg__get_raw(c, n * v->width);
}

static inline int64_t ints_at(const struct ints *v, uint64_t i)
{
    uint64_t z = 0;
    for (uint8_t b = 0; b < v->width; b++)
        z |= (uint64_t)v->p[b * v->n + i] << (8 * b);
    return (int64_t)((uint64_t)cn_seg__unzigzag(z) * v->g);
}

/* Strings as a dictionary and ids: out[i] for the selected i. */
static int get_dict(struct cn_seg__cur *c, struct cn_arena *a, uint64_t n, const uint8_t *sel,
                    struct cn_slice **out)
{
    uint64_t nd = cn_seg__get_count(c);
    struct cn_slice *d = alloc(a, nd, sizeof(*d));
    *out = alloc(a, n, sizeof(**out));
    if (!d || !*out)
        return CN_ENOMEM;
    for (uint64_t k = 0; k < nd && !c->bad; k++)
        d[k] = cn_seg__get_str(c);
    for (uint64_t i = 0; i < n && !c->bad; i++) {
        uint64_t id = cn_seg__get_var(c);
        if (id >= nd)
            cn_seg__bad(c);
        else if (want_row(sel, i))
            (*out)[i] = d[id];
    }
    return 0;
}

static int get_u32s(struct cn_seg__cur *c, struct cn_arena *a, uint64_t n, const uint8_t *sel,
                    uint32_t **out)
{
    *out = alloc(a, n, sizeof(**out));
    if (!*out)
        return CN_ENOMEM;
    for (uint64_t i = 0; i < n && !c->bad; i++) {
        uint32_t v = cn_seg__get_u32(c);
        if (want_row(sel, i))
            (*out)[i] = v;
    }
    return 0;
}

/* A value wanted from a run of values: the v-th goes to *dst. */
struct want {
    uint64_t v;
    struct cn_val *dst;
};

/* n values of one type; those listed in want[0..nwant) (ascending v) are built, the others
 * parsed past. */
static int get_vals(struct cn_seg__cur *c, struct cn_arena *a, uint8_t type, uint64_t n,
                    const struct want *want, uint64_t nwant)
{
    for (uint64_t k = 0; k < nwant; k++)
        want[k].dst->type = type;
    if (type == CN_VAL_EMPTY)
        return 0;
    if (type == CN_VAL_BOOL) {
        const uint8_t *p = cn_seg__get_raw(c, n);
        for (uint64_t v = 0; p && v < n; v++)
            if (p[v] > 1)
                cn_seg__bad(c);
        for (uint64_t k = 0; p && k < nwant; k++)
            want[k].dst->u.b = p[want[k].v];
        return 0;
    }
    if (type == CN_VAL_DOUBLE) {
        const uint8_t *p = n <= cn_seg__left(c) / 8 ? cn_seg__get_raw(c, n * 8) : NULL;
        if (!p)
            cn_seg__bad(c);
        for (uint64_t k = 0; p && k < nwant; k++) {
            uint64_t bits = cn_seg__le64(p + 8 * want[k].v);
            memcpy(&want[k].dst->u.d, &bits, 8);
        }
        return 0;
    }
    if (type == CN_VAL_INT) {
        struct ints iv;
        get_ints(c, n, &iv);
        for (uint64_t k = 0; iv.p && k < nwant; k++)
            want[k].dst->u.i = ints_at(&iv, want[k].v);
        return 0;
    }
    uint8_t enc = cn_seg__get_u8(c);
    uint64_t k = 0;
    if (enc == CN_SEG__DICT) {
        uint64_t nd = cn_seg__get_count(c);
        struct cn_slice *d = alloc(a, nd, sizeof(*d));
        if (!d)
            return CN_ENOMEM;
        for (uint64_t i = 0; i < nd && !c->bad; i++)
            d[i] = cn_seg__get_str(c);
        for (uint64_t v = 0; v < n && !c->bad; v++) {
            uint64_t id = cn_seg__get_var(c);
            if (id >= nd)
                cn_seg__bad(c);
            else if (k < nwant && want[k].v == v)
                want[k++].dst->u.s = d[id];
        }
    } else if (enc == CN_SEG__INLINE) {
        for (uint64_t v = 0; v < n && !c->bad; v++) {
            struct cn_slice s = cn_seg__get_str(c);
            if (k < nwant && want[k].v == v)
                want[k++].dst->u.s = s;
        }
    } else {
        cn_seg__bad(c);
    }
    return 0;
}

/* Attribute sets of nrows rows; only the selected rows are built. */
static int get_kvs(struct cn_seg__cur *c, struct cn_arena *a, uint64_t nrows, const uint8_t *sel,
                   struct cn_seg__kvs *out)
{
    if (cn_seg__get_var(c) != nrows) {
        cn_seg__bad(c);
        return 0;
    }
    uint64_t npairs = cn_seg__get_count(c);
    struct cn_slice *keys = alloc(a, npairs, sizeof(*keys));
    uint8_t *types = alloc(a, npairs, 1);
    uint64_t *nvals = alloc(a, npairs, sizeof(*nvals));
    uint64_t *nwant = alloc(a, npairs, sizeof(*nwant));
    uint64_t *first = alloc(a, npairs, sizeof(*first));
    uint32_t *count = alloc(a, nrows, sizeof(*count));
    out->num = alloc(a, nrows, sizeof(*out->num));
    out->at = alloc(a, nrows, sizeof(*out->at));
    out->dropped = alloc(a, nrows, sizeof(*out->dropped));
    if (!keys || !types || !nvals || !nwant || !first || !count || !out->num || !out->at ||
        !out->dropped)
        return CN_ENOMEM;
    for (uint64_t p = 0; p < npairs && !c->bad; p++) {
        keys[p] = cn_seg__get_str(c);
        types[p] = cn_seg__get_u8(c);
        nvals[p] = nwant[p] = 0;
        if (types[p] > CN_VAL_KVLIST)
            cn_seg__bad(c);
    }
    uint64_t total = 0, built = 0;
    for (uint64_t r = 0; r < nrows && !c->bad; r++) {
        count[r] = cn_seg__get_u32(c);
        total += count[r];
        if (total > cn_seg__left(c))
            cn_seg__bad(c);
        if (want_row(sel, r)) {
            out->num[r] = count[r];
            out->at[r] = (uint32_t)built;
            built += count[r];
        }
    }
    for (uint64_t r = 0; r < nrows && !c->bad; r++) {
        uint32_t d = cn_seg__get_u32(c);
        if (want_row(sel, r))
            out->dropped[r] = d;
    }
    if (c->bad)
        return 0;
    /* Each item's pair; for the built items, their value number within the pair. */
    out->items = alloc(a, built, sizeof(*out->items));
    uint32_t *wpair = alloc(a, built, sizeof(*wpair));
    uint64_t *wv = alloc(a, built, sizeof(*wv));
    struct want *want = alloc(a, built, sizeof(*want));
    if (!out->items || !wpair || !wv || !want)
        return CN_ENOMEM;
    uint64_t b = 0;
    for (uint64_t r = 0; r < nrows && !c->bad; r++) {
        int keep = want_row(sel, r);
        for (uint32_t j = 0; j < count[r]; j++) {
            uint64_t p = cn_seg__get_var(c);
            if (p >= npairs) {
                cn_seg__bad(c);
                break;
            }
            if (keep) {
                out->items[b].key = keys[p];
                wpair[b] = (uint32_t)p;
                wv[b++] = nvals[p];
                nwant[p]++;
            }
            nvals[p]++;
        }
    }
    if (c->bad)
        return 0;
    uint64_t at = 0;
    for (uint64_t p = 0; p < npairs; p++) {
        first[p] = at;
        at += nwant[p];
        nwant[p] = 0;
    }
    for (uint64_t i = 0; i < built; i++) { /* ascending v within each pair */
        uint32_t p = wpair[i];
        want[first[p] + nwant[p]++] = (struct want){wv[i], &out->items[i].val};
    }
    for (uint64_t p = 0; p < npairs && !c->bad; p++)
        if (get_vals(c, a, types[p], nvals[p], want + first[p], nwant[p]))
            return CN_ENOMEM;
    return 0;
}

static struct cn_kvs kvs_at(const struct cn_seg__kvs *k, uint64_t r)
{
    return (struct cn_kvs){k->items + k->at[r], k->num[r], k->dropped[r]};
}

/* Resource (scope == 0) or scope table, then each row's entry. */
static int get_table(struct cn_seg__cur *c, struct cn_seg__group *d, int scope)
{
    struct cn_arena *a = &d->arena;
    uint64_t n = cn_seg__get_count(c);
    struct cn_slice *s1 = alloc(a, n, sizeof(*s1)), *s2 = alloc(a, n, sizeof(*s2));
    uint32_t *ids = alloc(a, d->rows, sizeof(*ids));
    if (!s1 || !s2 || !ids)
        return CN_ENOMEM;
    for (uint64_t k = 0; k < n && !c->bad; k++) {
        s1[k] = cn_seg__get_str(c);
        s2[k] = cn_seg__get_str(c);
    }
    struct cn_seg__kvs kv;
    if (c->bad)
        return 0;
    if (get_kvs(c, a, n, NULL, &kv))
        return CN_ENOMEM;
    for (uint32_t i = 0; i < d->rows && !c->bad; i++) {
        uint64_t id = cn_seg__get_var(c);
        if (id >= n)
            cn_seg__bad(c);
        else if (want_row(d->sel, i))
            ids[i] = (uint32_t)id;
    }
    if (c->bad)
        return 0;
    if (scope) {
        d->scope_tab = alloc(a, n, sizeof(*d->scope_tab));
        if (!d->scope_tab)
            return CN_ENOMEM;
        for (uint64_t k = 0; k < n; k++)
            d->scope_tab[k] = (struct cn_scope){s1[k], s2[k], kvs_at(&kv, k)};
        d->scope = ids;
        d->nscope = (uint32_t)n;
    } else {
        d->res_tab = alloc(a, n, sizeof(*d->res_tab));
        if (!d->res_tab)
            return CN_ENOMEM;
        for (uint64_t k = 0; k < n; k++)
            d->res_tab[k] = (struct cn_resource){kvs_at(&kv, k), s1[k], s2[k]};
        d->res = ids;
        d->nres = (uint32_t)n;
    }
    return 0;
}

/* Per-row counts of a nested list (events, links): off[0..rows], dropped[rows]; and the
 * selection of the nested items (NULL for all). unit: bytes each item takes at least. */
static int get_counts(struct cn_seg__cur *c, struct cn_seg__group *d, uint64_t unit, uint32_t **off,
                      uint32_t **dropped, uint64_t *total, const uint8_t **nsel)
{
    struct cn_arena *a = &d->arena;
    *off = alloc(a, (uint64_t)d->rows + 1, sizeof(**off));
    *dropped = alloc(a, d->rows, sizeof(**dropped));
    if (!*off || !*dropped)
        return CN_ENOMEM;
    uint64_t t = 0;
    (*off)[0] = 0;
    for (uint32_t r = 0; r < d->rows && !c->bad; r++) {
        t += cn_seg__get_var(c);
        if (t > cn_seg__left(c)) /* cheap bound inside the loop, the exact one after it */
            cn_seg__bad(c);
        (*off)[r + 1] = (uint32_t)t;
    }
    if (t > cn_seg__left(c) / unit)
        cn_seg__bad(c);
    for (uint32_t r = 0; r < d->rows && !c->bad; r++)
        (*dropped)[r] = cn_seg__get_u32(c);
    *total = c->bad ? 0 : t;
    *nsel = NULL;
    if (d->sel && !c->bad) {
        uint8_t *s = alloc(a, t, 1);
        if (!s)
            return CN_ENOMEM;
        for (uint32_t r = 0; r < d->rows; r++)
            memset(s + (*off)[r], d->sel[r], (*off)[r + 1] - (*off)[r]);
        *nsel = s;
    }
    return 0;
}

static int get_events(struct cn_seg__cur *c, struct cn_seg__group *d)
{
    struct cn_arena *a = &d->arena;
    uint64_t n;
    const uint8_t *sel;
    struct ints dt;
    struct cn_slice *names;
    struct cn_seg__kvs kv;
    if (get_counts(c, d, 1, &d->ev_off, &d->ev_dropped, &n, &sel))
        return CN_ENOMEM;
    get_ints(c, n, &dt);
    if (c->bad)
        return 0;
    if (get_dict(c, a, n, sel, &names))
        return CN_ENOMEM;
    if (c->bad)
        return 0;
    d->events = alloc(a, n, sizeof(*d->events));
    if (!d->events || get_kvs(c, a, n, sel, &kv))
        return CN_ENOMEM;
    if (c->bad)
        return 0;
    for (uint32_t r = 0; r < d->rows; r++)
        for (uint32_t j = d->ev_off[r]; j < d->ev_off[r + 1] && want_row(sel, j); j++)
            d->events[j] =
                (struct cn_event){d->time[r] + (uint64_t)ints_at(&dt, j), names[j], kvs_at(&kv, j)};
    return 0;
}

static int get_links(struct cn_seg__cur *c, struct cn_seg__group *d)
{
    struct cn_arena *a = &d->arena;
    uint64_t n;
    const uint8_t *sel;
    struct cn_slice *ts;
    struct cn_seg__kvs kv;
    if (get_counts(c, d, 25, &d->ln_off, &d->ln_dropped, &n, &sel))
        return CN_ENOMEM;
    const uint8_t *tids = cn_seg__get_raw(c, n * 16), *sids = cn_seg__get_raw(c, n * 8);
    uint32_t *flags;
    d->links = alloc(a, n, sizeof(*d->links));
    if (!d->links || get_u32s(c, a, n, sel, &flags))
        return CN_ENOMEM;
    if (c->bad)
        return 0;
    if (get_dict(c, a, n, sel, &ts) || (!c->bad && get_kvs(c, a, n, sel, &kv)))
        return CN_ENOMEM;
    for (uint64_t j = 0; j < n && !c->bad; j++) {
        if (!want_row(sel, j))
            continue;
        struct cn_link *l = &d->links[j];
        memcpy(l->trace_id, tids + 16 * j, 16);
        memcpy(l->span_id, sids + 8 * j, 8);
        l->trace_state = ts[j];
        l->attrs = kvs_at(&kv, j);
        l->flags = flags[j];
    }
    return 0;
}

/* Parent IDs: zero and raw ones are complete here; references to rows are kept in pref for
 * the reader to resolve (the row may be in another group). */
static int get_parents(struct cn_seg__cur *c, struct cn_seg__group *d)
{
    uint32_t n = d->rows;
    const uint8_t *codes = cn_seg__get_raw(c, n);
    d->parents = alloc(&d->arena, n, 8);
    d->pref = alloc(&d->arena, n, sizeof(*d->pref));
    if (!d->parents || !d->pref)
        return CN_ENOMEM;
    uint64_t nrefs = 0;
    for (uint32_t i = 0; codes && i < n && !c->bad; i++) {
        const uint8_t *raw = codes[i] == 1 ? cn_seg__get_raw(c, 8) : NULL;
        if (codes[i] > 2)
            cn_seg__bad(c);
        nrefs += codes[i] == 2;
        if (!want_row(d->sel, i))
            continue;
        d->pref[i] = UINT64_MAX;
        if (raw)
            memcpy(d->parents + 8 * (size_t)i, raw, 8);
        else
            memset(d->parents + 8 * (size_t)i, 0, 8);
    }
    struct ints refs;
    get_ints(c, nrefs, &refs);
    uint64_t ref = (uint64_t)d->g * d->group_rows;
    for (uint32_t i = 0, j = 0; codes && i < n && !c->bad; i++) {
        if (codes[i] != 2)
            continue;
        ref += (uint64_t)ints_at(&refs, j++);
        if (ref >= d->seg_rows)
            cn_seg__bad(c);
        else if (want_row(d->sel, i))
            d->pref[i] = ref;
    }
    return 0;
}

static int get_body(struct cn_seg__cur *c, struct cn_seg__group *d)
{
    uint32_t n = d->rows;
    const uint8_t *types = cn_seg__get_raw(c, n);
    d->body = alloc(&d->arena, n, sizeof(*d->body));
    struct want *want = alloc(&d->arena, n, sizeof(*want));
    if (!d->body || !want)
        return CN_ENOMEM;
    for (uint32_t i = 0; types && i < n; i++)
        if (types[i] > CN_VAL_KVLIST)
            cn_seg__bad(c);
    for (uint8_t t = CN_VAL_STR; types && t <= CN_VAL_KVLIST && !c->bad; t++) {
        uint64_t k = 0, nw = 0;
        for (uint32_t i = 0; i < n; i++) {
            if (types[i] != t)
                continue;
            if (want_row(d->sel, i))
                want[nw++] = (struct want){k, &d->body[i]};
            k++;
        }
        if (get_vals(c, &d->arena, t, k, want, nw))
            return CN_ENOMEM;
    }
    for (uint32_t i = 0; types && i < n && !c->bad; i++)
        if (types[i] == CN_VAL_EMPTY && want_row(d->sel, i))
            d->body[i] = (struct cn_val){.type = CN_VAL_EMPTY};
    return 0;
}

/* Times: ints of deltas, summed over every row, kept for the selected ones. */
static int get_times(struct cn_seg__cur *c, struct cn_seg__group *d)
{
    struct ints v;
    get_ints(c, d->rows, &v);
    d->time = alloc(&d->arena, d->rows, sizeof(*d->time));
    if (!d->time)
        return CN_ENOMEM;
    uint64_t t = 0;
    for (uint32_t i = 0; v.p && i < d->rows; i++) {
        t += (uint64_t)ints_at(&v, i);
        if (want_row(d->sel, i))
            d->time[i] = t;
    }
    return 0;
}

static int get_observed(struct cn_seg__cur *c, struct cn_seg__group *d)
{
    uint32_t n = d->rows;
    const uint8_t *has = cn_seg__get_raw(c, n);
    uint64_t k = 0;
    for (uint32_t i = 0; has && i < n; i++) {
        if (has[i] > 1)
            cn_seg__bad(c);
        k += has[i];
    }
    struct ints v;
    get_ints(c, k, &v);
    d->observed = alloc(&d->arena, n, sizeof(*d->observed));
    if (!d->observed)
        return CN_ENOMEM;
    for (uint32_t i = 0, j = 0; has && v.p && i < n; j += has[i++])
        if (want_row(d->sel, i))
            d->observed[i] = has[i] ? d->time[i] + (uint64_t)ints_at(&v, j) : 0;
    return 0;
}

static int get_log_span_ids(struct cn_seg__cur *c, struct cn_seg__group *d)
{
    uint32_t n = d->rows;
    const uint8_t *has = cn_seg__get_raw(c, n);
    uint8_t *ids = alloc(&d->arena, n, 8);
    if (!ids)
        return CN_ENOMEM;
    for (uint32_t i = 0; has && i < n && !c->bad; i++) {
        const uint8_t *p = has[i] == 1 ? cn_seg__get_raw(c, 8) : NULL;
        if (has[i] > 1)
            cn_seg__bad(c);
        if (!want_row(d->sel, i))
            continue;
        if (p)
            memcpy(ids + 8 * (size_t)i, p, 8);
        else
            memset(ids + 8 * (size_t)i, 0, 8);
    }
    d->span_ids = ids;
    return 0;
}

void cn_seg__group_init(struct cn_seg__group *d, unsigned kind, uint32_t g, uint32_t rows,
                        uint32_t group_rows, uint64_t seg_rows, uint64_t num_traces)
{
    memset(d, 0, sizeof(*d));
    cn_arena_init(&d->arena, 64 << 10, CN_SEG__GROUP_ARENA);
    d->kind = kind;
    d->g = g;
    d->rows = rows;
    d->group_rows = group_rows;
    d->seg_rows = seg_rows;
    d->num_traces = num_traces;
}

/* Columns both kinds have share a decoder; map each kind's numbers to it. */
enum {
    D_TRACE = 1,
    D_SPAN_ID,
    D_PARENT,
    D_SERVICE,
    D_NAME,
    D_KIND,
    D_STATUS,
    D_STATUS_MSG,
    D_START,
    D_DURATION,
    D_FLAGS,
    D_TRACE_STATE,
    D_SCOPE,
    D_RESOURCE,
    D_ATTRS,
    D_EVENTS,
    D_LINKS,
    D_LOG_SPAN_ID,
    D_OBSERVED,
    D_SEV_NUM,
    D_SEV_TEXT,
    D_BODY,
    D_EVENT_NAME,
};

static const uint8_t span_dec[CN_SEG__S_NUM] = {
    [CN_SEG__S_TRACE] = D_TRACE,   [CN_SEG__S_SPAN_ID] = D_SPAN_ID,
    [CN_SEG__S_PARENT] = D_PARENT, [CN_SEG__S_SERVICE] = D_SERVICE,
    [CN_SEG__S_NAME] = D_NAME,     [CN_SEG__S_KIND] = D_KIND,
    [CN_SEG__S_STATUS] = D_STATUS, [CN_SEG__S_STATUS_MSG] = D_STATUS_MSG,
    [CN_SEG__S_START] = D_START,   [CN_SEG__S_DURATION] = D_DURATION,
    [CN_SEG__S_FLAGS] = D_FLAGS,   [CN_SEG__S_TRACE_STATE] = D_TRACE_STATE,
    [CN_SEG__S_SCOPE] = D_SCOPE,   [CN_SEG__S_RESOURCE] = D_RESOURCE,
    [CN_SEG__S_ATTRS] = D_ATTRS,   [CN_SEG__S_EVENTS] = D_EVENTS,
    [CN_SEG__S_LINKS] = D_LINKS,
};

static const uint8_t log_dec[CN_SEG__L_NUM] = {
    [CN_SEG__L_TRACE] = D_TRACE,           [CN_SEG__L_SPAN_ID] = D_LOG_SPAN_ID,
    [CN_SEG__L_SERVICE] = D_SERVICE,       [CN_SEG__L_TIME] = D_START,
    [CN_SEG__L_OBSERVED] = D_OBSERVED,     [CN_SEG__L_SEV_NUM] = D_SEV_NUM,
    [CN_SEG__L_SEV_TEXT] = D_SEV_TEXT,     [CN_SEG__L_BODY] = D_BODY,
    [CN_SEG__L_ATTRS] = D_ATTRS,           [CN_SEG__L_FLAGS] = D_FLAGS,
    [CN_SEG__L_EVENT_NAME] = D_EVENT_NAME, [CN_SEG__L_SCOPE] = D_SCOPE,
    [CN_SEG__L_RESOURCE] = D_RESOURCE,
};

int cn_seg__decode(struct cn_seg__group *d, unsigned col)
{
    struct cn_seg__cur c = {d->buf[col], d->buf[col] + d->len[col], 0};
    struct cn_arena *a = &d->arena;
    uint32_t n = d->rows;
    const uint8_t *sel = d->sel;
    int rc = 0;
    unsigned what = d->kind == CN_SEG_SPANS ? (col < CN_SEG__S_NUM ? span_dec[col] : 0)
                                            : (col < CN_SEG__L_NUM ? log_dec[col] : 0);
    switch (what) {
    case D_TRACE:
        rc = get_u32s(&c, a, n, sel, &d->ord);
        for (uint32_t i = 0; rc == 0 && !c.bad && i < n; i++)
            if (want_row(sel, i) && d->ord[i] > d->num_traces)
                cn_seg__bad(&c);
        break;
    case D_SPAN_ID:
        d->span_ids = cn_seg__get_raw(&c, (uint64_t)n * 8);
        break;
    case D_LOG_SPAN_ID:
        rc = get_log_span_ids(&c, d);
        break;
    case D_PARENT:
        rc = get_parents(&c, d);
        break;
    case D_SERVICE:
        rc = get_dict(&c, a, n, sel, &d->service);
        break;
    case D_NAME:
    case D_EVENT_NAME:
        rc = get_dict(&c, a, n, sel, &d->name);
        break;
    case D_STATUS_MSG:
        rc = get_dict(&c, a, n, sel, &d->status_msg);
        break;
    case D_TRACE_STATE:
        rc = get_dict(&c, a, n, sel, &d->trace_state);
        break;
    case D_SEV_TEXT:
        rc = get_dict(&c, a, n, sel, &d->sev_text);
        break;
    case D_KIND:
        d->span_kind = cn_seg__get_raw(&c, n);
        break;
    case D_STATUS:
        d->status = cn_seg__get_raw(&c, n);
        break;
    case D_SEV_NUM:
        d->sev = cn_seg__get_raw(&c, n);
        break;
    case D_START:
        rc = get_times(&c, d);
        break;
    case D_DURATION: {
        struct ints v;
        get_ints(&c, n, &v);
        d->dur = alloc(a, n, sizeof(*d->dur));
        if (!d->dur)
            rc = CN_ENOMEM;
        for (uint32_t i = 0; rc == 0 && v.p && i < n; i++)
            if (want_row(sel, i))
                d->dur[i] = (uint64_t)ints_at(&v, i);
        break;
    }
    case D_OBSERVED:
        rc = get_observed(&c, d);
        break;
    case D_FLAGS:
        rc = get_u32s(&c, a, n, sel, &d->flags);
        break;
    case D_BODY:
        rc = get_body(&c, d);
        break;
    case D_ATTRS:
        rc = get_kvs(&c, a, n, sel, &d->attrs);
        break;
    case D_SCOPE:
        rc = get_table(&c, d, 1);
        break;
    case D_RESOURCE:
        rc = get_table(&c, d, 0);
        break;
    case D_EVENTS:
        rc = get_events(&c, d);
        break;
    case D_LINKS:
        rc = get_links(&c, d);
        break;
    default:
        cn_seg__bad(&c);
    }
    if (rc)
        return rc;
    return c.bad || c.p != c.e ? CN_ESYNTAX : 0;
}

void cn_seg__span_at(const struct cn_seg__group *d, uint32_t i, const uint8_t *trace_id,
                     struct cn_span *s)
{
    memcpy(s->trace_id, trace_id, 16);
    memcpy(s->span_id, d->span_ids + 8 * (size_t)i, 8);
    memcpy(s->parent_id, d->parents + 8 * (size_t)i, 8);
    s->trace_state = d->trace_state[i];
    s->name = d->name[i];
    s->kind = d->span_kind[i];
    s->status_code = d->status[i];
    s->status_message = d->status_msg[i];
    s->flags = d->flags[i];
    s->start_ns = d->time[i];
    s->end_ns = d->time[i] + d->dur[i];
    s->attrs = kvs_at(&d->attrs, i);
    s->events = d->events + d->ev_off[i];
    s->num_events = d->ev_off[i + 1] - d->ev_off[i];
    s->dropped_events = d->ev_dropped[i];
    s->links = d->links + d->ln_off[i];
    s->num_links = d->ln_off[i + 1] - d->ln_off[i];
    s->dropped_links = d->ln_dropped[i];
    s->resource = &d->res_tab[d->res[i]];
    s->scope = &d->scope_tab[d->scope[i]];
}

void cn_seg__log_at(const struct cn_seg__group *d, uint32_t i, const uint8_t *trace_id,
                    struct cn_log *l)
{
    l->time_ns = d->time[i];
    l->observed_ns = d->observed[i];
    l->severity_number = d->sev[i];
    l->severity_text = d->sev_text[i];
    l->body = d->body[i];
    l->attrs = kvs_at(&d->attrs, i);
    l->flags = d->flags[i];
    memcpy(l->trace_id, trace_id, 16);
    memcpy(l->span_id, d->span_ids + 8 * (size_t)i, 8);
    l->event_name = d->name[i];
    l->resource = &d->res_tab[d->res[i]];
    l->scope = &d->scope_tab[d->scope[i]];
}
