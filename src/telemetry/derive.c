/* Derived tables at ingest: options, names, services, RED series, the bucket ring and the
 * ingest loop. Pairing lives in derive-pair.c, trace summaries in derive-trace.c, queries in
 * derive-query.c. */
#include "telemetry/derive-internal.h"

#define XXH_INLINE_ALL /* short keys: the hash inlined, not a call into libxxhash */
#include <xxhash.h>

/* How far ahead cn_derive_add_spans fetches what a span will need. */
#define PAIR_AHEAD 8
/* Name bytes are allocated in chunks of this size. */
#define NAME_CHUNK           (64 << 10)
#define MAX_NAME_BYTES_LIMIT 4096

static const struct cn_slice unknown_service = CN_SLICE_LIT("unknown_service");

void cn_derive_opts_default(struct cn_derive_opts *o)
{
    memset(o, 0, sizeof(*o));
    o->sketch_alpha = CN_SKETCH_ALPHA_DEFAULT;
    o->sketch_max_bins = CN_SKETCH_MAX_BINS_DEFAULT;
    o->bucket_ns = 10ull * 1000000000;
    o->num_buckets = 8640;
    o->max_future_ns = 600ull * 1000000000;
    o->max_bucket_bytes = 256ull << 20;
    o->max_rollup_bytes = 64ull << 20;
    o->red_kinds = CN_DERIVE_KIND_MASK(CN_KIND_SERVER) | CN_DERIVE_KIND_MASK(CN_KIND_CONSUMER);
    o->red_roots = 1;
    o->max_services = 1000;
    o->max_operations = 20000;
    o->max_edges = 10000;
    o->max_names = 100000;
    o->max_name_bytes = 256;
    o->pair_window_ns = 30ull * 1000000000;
    o->max_pending = 100000;
    o->uninstrumented_edges = 1;
    o->max_traces = 1000000;
    o->max_trace_services = 32;
    o->max_span_names = 1000;
}

/* The integer options and their ranges. The upper bounds keep every table index within 32
 * bits and every allocation sane. */
static const struct {
    const char *name;
    size_t off, size;
    uint64_t min, max;
} limits[] = {
#define LIMIT(field, lo, hi)                                                                       \
    {                                                                                              \
#field, offsetof(struct cn_derive_opts, field),                                            \
            sizeof(((struct cn_derive_opts *)0)->field), lo, hi                                    \
    }
    LIMIT(sketch_max_bins, 2, CN_SKETCH_MAX_BINS_LIMIT),
    LIMIT(bucket_ns, 1, UINT64_MAX),
    LIMIT(num_buckets, 1, 1u << 24),
    LIMIT(max_future_ns, 0, UINT64_MAX),
    LIMIT(max_bucket_bytes, 1, UINT64_MAX),
    LIMIT(max_rollup_bytes, 0, UINT64_MAX),
    LIMIT(red_kinds, 0, (1u << NUM_KINDS) - 1),
    LIMIT(max_services, 1, CN_DERIVE_MAX_SERVICES_LIMIT),
    LIMIT(max_operations, 1, 1u << 24),
    LIMIT(max_edges, 1, 1u << 24),
    LIMIT(max_names, 1, 1u << 26),
    LIMIT(max_name_bytes, 1, MAX_NAME_BYTES_LIMIT),
    LIMIT(pair_window_ns, 0, UINT64_MAX),
    LIMIT(max_pending, 1, 1u << 26),
    LIMIT(max_traces, 1, 1u << 28),
    LIMIT(max_trace_services, 1, CN_DERIVE_TRACE_SERVICES_MAX),
    LIMIT(max_span_names, 1, CN_DERIVE_MAX_SPAN_NAMES_LIMIT),
#undef LIMIT
};

int cn_derive_opts_check(const struct cn_derive_opts *o, char *err, size_t err_len)
{
    if (!(o->sketch_alpha >= CN_SKETCH_ALPHA_MIN && o->sketch_alpha <= CN_SKETCH_ALPHA_MAX)) {
        snprintf(err, err_len, "derive: sketch_alpha must be in [%g, %g]", CN_SKETCH_ALPHA_MIN,
                 CN_SKETCH_ALPHA_MAX);
        return CN_EINVAL;
    }
    for (size_t i = 0; i < CN_ARRAY_LEN(limits); i++) {
        const char *p = (const char *)o + limits[i].off;
        uint64_t v;
        CN_ASSERT(limits[i].size == sizeof(uint64_t) || limits[i].size == sizeof(uint32_t));
        if (limits[i].size == sizeof(uint64_t)) {
            memcpy(&v, p, sizeof(v));
        } else {
            uint32_t v32;
            memcpy(&v32, p, sizeof(v32));
            v = v32;
        }
        if (v < limits[i].min || v > limits[i].max) {
            snprintf(err, err_len, "derive: %s must be in [%llu, %llu]", limits[i].name,
                     (unsigned long long)limits[i].min, (unsigned long long)limits[i].max);
            return CN_EINVAL;
        }
    }
    if (err_len)
        err[0] = '\0';
    return 0;
}

/* ---- linear-probing index ---- */

int cn_derive__itab_reserve(struct itab *t, uint32_t init_slots)
{
    uint32_t n = t->slots ? t->mask + 1 : 0;
    if ((uint64_t)(t->num + 1) * 2 <= n)
        return 0;
    uint32_t nn = n ? n * 2 : init_slots;
    if (CN_NEVER(nn < n))
        return CN_ENOMEM;
    uint64_t *ns = calloc(nn, sizeof(*ns));
    if (!ns)
        return CN_ENOMEM;
    for (uint32_t i = 0; i < n; i++) {
        if (!t->slots[i])
            continue;
        uint32_t j = ITAB_TAG(t->slots[i]) & (nn - 1);
        while (ns[j])
            j = (j + 1) & (nn - 1);
        ns[j] = t->slots[i];
    }
    free(t->slots);
    t->slots = ns;
    t->mask = nn - 1;
    return 0;
}

void cn_derive__itab_put(struct itab *t, uint64_t h, uint32_t item)
{
    uint32_t i = (uint32_t)h & t->mask;
    while (t->slots[i])
        i = (i + 1) & t->mask;
    t->slots[i] = (uint64_t)(uint32_t)h << 32 | (item + 1);
    t->num++;
}

void cn_derive__itab_del(struct itab *t, uint32_t pos)
{
    uint32_t i = pos, j = pos;
    t->slots[i] = 0;
    t->num--;
    for (;;) {
        j = (j + 1) & t->mask;
        if (!t->slots[j])
            return;
        uint32_t home = ITAB_TAG(t->slots[j]) & t->mask;
        /* The entry at j may move to the hole at i unless its home lies cyclically in
         * (i, j]. */
        int stays = i <= j ? (home > i && home <= j) : (home > i || home <= j);
        if (stays)
            continue;
        t->slots[i] = t->slots[j];
        t->slots[j] = 0;
        i = j;
    }
}

static size_t itab_bytes(const struct itab *t)
{
    return t->slots ? ((size_t)t->mask + 1) * sizeof(*t->slots) : 0;
}

static uint64_t mix32(uint32_t k)
{
    return ((uint64_t)k * 0x9E3779B97F4A7C15ull) >> 32;
}

/* ---- names ---- */

/* Cuts s to max_name_bytes, before the UTF-8 character that straddles the cut (a character
 * has at most 3 continuation bytes; bytes that are not UTF-8 are cut where they fall). */
static struct cn_slice cut(const struct cn_derive *d, struct cn_slice s)
{
    if (s.len <= d->o.max_name_bytes)
        return s;
    size_t n = d->o.max_name_bytes, stop = n > 3 ? n - 3 : 0;
    while (n > stop && ((unsigned char)s.ptr[n] & 0xC0) == 0x80)
        n--;
    if (((unsigned char)s.ptr[n] & 0xC0) == 0x80)
        n = d->o.max_name_bytes;
    return (struct cn_slice){s.ptr, n};
}

struct cn_slice cn_derive__cut(const struct cn_derive *d, struct cn_slice s)
{
    return cut(d, s);
}

static uint32_t lookup_name(const struct names *nm, struct cn_slice s, uint64_t h)
{
    if (!nm->idx.slots)
        return NAME_NONE;
    for (uint32_t i = (uint32_t)h & nm->idx.mask; nm->idx.slots[i]; i = (i + 1) & nm->idx.mask) {
        if (ITAB_TAG(nm->idx.slots[i]) != (uint32_t)h)
            continue;
        uint32_t id = ITAB_ITEM(nm->idx.slots[i]);
        const struct name *n = &nm->items[id];
        if (n->hash == h && n->len == s.len && (s.len == 0 || memcmp(n->ptr, s.ptr, s.len) == 0))
            return id;
    }
    return NAME_NONE;
}

uint32_t cn_derive__find_name(const struct cn_derive *d, struct cn_slice s)
{
    s = cut(d, s);
    return lookup_name(&d->names, s, XXH3_64bits(s.ptr, s.len));
}

static char *name_bytes(struct names *nm, size_t n)
{
    struct name_chunk *c = nm->chunks;
    if (!c || c->size - c->used < n) {
        size_t size = CN_MAX((size_t)NAME_CHUNK, n);
        c = malloc(sizeof(*c) + size);
        if (!c)
            return NULL;
        c->used = 0;
        c->size = size;
        c->next = nm->chunks;
        nm->chunks = c;
        nm->chunk_bytes += sizeof(*c) + size;
    }
    char *p = c->data + c->used;
    c->used += n;
    return p;
}

uint32_t cn_derive__intern(struct cn_derive *d, struct cn_slice raw)
{
    struct names *nm = &d->names;
    struct cn_slice s = cut(d, raw);
    uint64_t h = XXH3_64bits(s.ptr, s.len);
    uint32_t id = lookup_name(nm, s, h);
    if (id != NAME_NONE)
        return id;
    if (nm->num >= d->o.max_names) {
        d->st.names_dropped++;
        return NAME_NONE;
    }
    if (nm->num == nm->cap) {
        uint32_t cap = nm->cap ? nm->cap * 2 : 256;
        struct name *items = realloc(nm->items, (size_t)cap * sizeof(*items));
        if (!items)
            goto nomem;
        nm->items = items;
        nm->cap = cap;
    }
    if (cn_derive__itab_reserve(&nm->idx, 512) != 0)
        goto nomem;
    char *p = name_bytes(nm, s.len + 1);
    if (!p)
        goto nomem;
    if (s.len)
        memcpy(p, s.ptr, s.len);
    p[s.len] = '\0';
    id = nm->num++;
    nm->items[id] = (struct name){.hash = h, .ptr = p, .len = (uint32_t)s.len, .svc = SVC_NONE};
    cn_derive__itab_put(&nm->idx, h, id);
    if (s.len < raw.len)
        d->st.names_truncated++;
    return id;
nomem:
    d->st.alloc_failures++;
    return NAME_NONE;
}

struct cn_slice cn_derive__name(const struct cn_derive *d, uint32_t id)
{
    if (id == NAME_NONE)
        return CN_SLICE_LIT(CN_DERIVE_OVERFLOW_NAME);
    const struct name *n = &d->names.items[id];
    return (struct cn_slice){n->ptr, n->len};
}

static void names_release(struct names *nm)
{
    while (nm->chunks) {
        struct name_chunk *c = nm->chunks;
        nm->chunks = c->next;
        free(c);
    }
    cn_free(&nm->items);
    cn_free(&nm->idx.slots);
}

/* ---- services and series ---- */

/* Per call of cn_derive_add_spans: spans of one resource share its service. */
struct svc_cache {
    const struct cn_resource *res;
    uint16_t svc;
    int valid;
    struct cn_derive__last_trace trace; /* reset with each chunk (the lock was let go) */
};

static uint16_t new_service(struct cn_derive *d, uint32_t name)
{
    if (d->num_services >= d->o.max_services)
        return SVC_NONE;
    uint16_t svc = (uint16_t)d->num_services++;
    struct service *sv = &d->services[svc];
    sv->name = name;
    sv->num_span_names = 0;
    for (int k = 0; k < NUM_KINDS; k++)
        sv->series[k] = IDX_NONE;
    d->names.items[name].svc = svc;
    return svc;
}

static uint16_t service_of(struct cn_derive *d, const struct cn_resource *res, struct svc_cache *c)
{
    if (c->valid && c->res == res)
        return c->svc;
    struct cn_slice name = res ? res->service : unknown_service;
    uint32_t id = cn_derive__intern(d, name);
    uint16_t svc = SVC_NONE;
    if (id != NAME_NONE) {
        svc = d->names.items[id].svc;
        if (svc == SVC_NONE)
            svc = new_service(d, id);
    }
    c->res = res;
    c->svc = svc;
    c->valid = 1;
    return svc;
}

static uint64_t op_hash(uint16_t svc, uint8_t kind, struct cn_slice op)
{
    return cn_derive__span_name_hash(svc, kind, op);
}

static uint32_t lookup_series(const struct cn_derive *d, uint16_t svc, uint8_t kind,
                              struct cn_slice op, uint64_t h)
{
    const struct itab *t = &d->series_idx;
    if (!t->slots)
        return IDX_NONE;
    for (uint32_t i = (uint32_t)h & t->mask; t->slots[i]; i = (i + 1) & t->mask) {
        if (ITAB_TAG(t->slots[i]) != (uint32_t)h)
            continue;
        uint32_t idx = ITAB_ITEM(t->slots[i]);
        const struct series *se = &d->series[idx];
        if (se->hash == h && se->svc == svc && se->kind == kind &&
            cn_slice_eq(cn_derive__name(d, se->op), op))
            return idx;
    }
    return IDX_NONE;
}

uint32_t cn_derive__find_series(const struct cn_derive *d, uint16_t svc, uint8_t kind,
                                struct cn_slice op)
{
    op = cut(d, op);
    return lookup_series(d, svc, kind, op, op_hash(svc, kind, op));
}

static uint32_t new_series(struct cn_derive *d, uint16_t svc, uint8_t kind, uint32_t op, uint64_t h)
{
    if (d->num_series == d->cap_series) {
        uint32_t cap = d->cap_series ? d->cap_series * 2 : 256;
        struct series *se = realloc(d->series, (size_t)cap * sizeof(*se));
        if (!se) {
            d->st.alloc_failures++;
            return IDX_NONE;
        }
        d->series = se;
        d->cap_series = cap;
    }
    uint32_t idx = d->num_series++;
    d->series[idx] = (struct series){.hash = h, .op = op, .svc = svc, .kind = kind};
    return idx;
}

static uint32_t service_series(struct cn_derive *d, uint16_t svc, uint8_t kind)
{
    uint32_t *slot = &d->services[svc].series[kind];
    if (*slot == IDX_NONE)
        *slot = new_series(d, svc, kind, NAME_NONE, 0);
    return *slot;
}

/* op is raw cut, h its op_hash. */
static uint32_t op_series(struct cn_derive *d, uint16_t svc, uint8_t kind, struct cn_slice raw,
                          struct cn_slice op, uint64_t h)
{
    uint32_t idx = lookup_series(d, svc, kind, op, h);
    if (idx != IDX_NONE)
        return idx;
    if (d->num_ops >= d->o.max_operations) {
        d->st.operations_dropped++;
        return IDX_NONE;
    }
    uint32_t name = cn_derive__intern(d, raw);
    if (name == NAME_NONE) {
        d->st.operations_dropped++;
        return IDX_NONE;
    }
    if (cn_derive__itab_reserve(&d->series_idx, 512) != 0) {
        d->st.alloc_failures++;
        return IDX_NONE;
    }
    idx = new_series(d, svc, kind, name, h);
    if (idx == IDX_NONE)
        return IDX_NONE;
    cn_derive__itab_put(&d->series_idx, h, idx);
    d->num_ops++;
    return idx;
}

/* ---- bucket ring ---- */

static size_t ctab_bytes(const struct ctab *t, size_t size)
{
    return (size_t)t->cap * size + itab_bytes(&t->idx);
}

size_t cn_derive__ctab_bytes(const struct ctab *t, size_t size)
{
    return ctab_bytes(t, size);
}

void *cn_derive__ctab_add(struct ctab *t, size_t size, uint32_t key)
{
    if (t->num == t->cap) {
        uint32_t cap = t->cap ? t->cap * 2 : 4;
        void *cells = realloc(t->cells, (size_t)cap * size);
        if (!cells)
            return NULL;
        t->cells = cells;
        t->cap = cap;
    }
    if (cn_derive__itab_reserve(&t->idx, 8) != 0)
        return NULL;
    void *cell = (char *)t->cells + (size_t)t->num * size;
    memset(cell, 0, size);
    memcpy(cell, &key, sizeof(key));
    cn_derive__itab_put(&t->idx, mix32(key), t->num++);
    return cell;
}

size_t cn_derive__bucket_release(struct bucket *b)
{
    struct red_cell *rc = b->red.cells;
    for (uint32_t i = 0; i < b->red.num; i++)
        cn_sketch_release(&rc[i].sk);
    struct edge_cell *ec = b->edge.cells;
    for (uint32_t i = 0; i < b->edge.num; i++) {
        cn_sketch_release(&ec[i].server);
        cn_sketch_release(&ec[i].client);
    }
    free(b->red.cells);
    free(b->red.idx.slots);
    free(b->edge.cells);
    free(b->edge.idx.slots);
    size_t bytes = b->bytes;
    memset(b, 0, sizeof(*b));
    return bytes;
}

static void bucket_free(struct cn_derive *d, struct bucket *b)
{
    size_t bytes = cn_derive__bucket_release(b);
    CN_BUG_ON(d->bucket_bytes < bytes);
    d->bucket_bytes -= bytes;
}

struct bucket *cn_derive__bucket_at(const struct cn_derive *d, uint64_t bno)
{
    if (!d->started || bno < d->ring_lo || bno > d->ring_head)
        return NULL;
    struct bucket *b = &d->ring[bno % d->o.num_buckets];
    return b->used && b->bno == bno ? b : NULL;
}

/* Frees buckets below lo and makes lo the oldest bucket number kept. */
static void raise_floor(struct cn_derive *d, uint64_t lo)
{
    if (lo <= d->ring_lo)
        return;
    uint64_t n = d->o.num_buckets;
    if (lo - d->ring_lo >= n) {
        for (uint64_t i = 0; i < n; i++) {
            if (d->ring[i].used)
                bucket_free(d, &d->ring[i]);
        }
    } else {
        for (uint64_t bno = d->ring_lo; bno < lo; bno++) {
            struct bucket *b = &d->ring[bno % n];
            if (b->used && b->bno == bno)
                bucket_free(d, b);
        }
    }
    d->ring_lo = lo;
}

static void shrink_sketch(struct cn_derive *d, struct bucket *b, struct cn_sketch *sk)
{
    size_t before = cn_sketch_bytes(sk);
    if (cn_sketch_shrink(sk) != 0)
        return; /* kept as it was: nothing lost */
    b->bytes -= before - cn_sketch_bytes(sk);
    d->bucket_bytes -= before - cn_sketch_bytes(sk);
}

static void shrink_cells(struct cn_derive *d, struct bucket *b, struct ctab *t, size_t size)
{
    if (t->num == t->cap || t->num == 0)
        return;
    void *cells = realloc(t->cells, (size_t)t->num * size);
    if (!cells)
        return;
    b->bytes -= (size_t)(t->cap - t->num) * size;
    d->bucket_bytes -= (size_t)(t->cap - t->num) * size;
    t->cells = cells;
    t->cap = t->num;
}

/* A bucket the ring has moved past takes few updates more (late spans): its sketches and
 * cell arrays are trimmed to what they hold, which about halves its memory. Late updates
 * grow them again as usual. */
static void bucket_seal(struct cn_derive *d, struct bucket *b)
{
    struct red_cell *rc = b->red.cells;
    for (uint32_t i = 0; i < b->red.num; i++)
        shrink_sketch(d, b, &rc[i].sk);
    struct edge_cell *ec = b->edge.cells;
    for (uint32_t i = 0; i < b->edge.num; i++) {
        shrink_sketch(d, b, &ec[i].server);
        shrink_sketch(d, b, &ec[i].client);
    }
    shrink_cells(d, b, &b->red, sizeof(struct red_cell));
    shrink_cells(d, b, &b->edge, sizeof(struct edge_cell));
}

/* Buckets this far behind the newest are sealed. */
#define SEAL_LAG 2

/* Moves the newest bucket to head, dropping what falls out of the ring and sealing what the
 * ring moved past. */
static void advance_ring(struct cn_derive *d, uint64_t head)
{
    uint64_t n = d->o.num_buckets;
    if (!d->started) {
        d->started = 1;
        d->ring_head = head;
        d->ring_lo = head >= n ? head - n + 1 : 0;
        d->seal_next = d->ring_lo;
        return;
    }
    if (head <= d->ring_head)
        return;
    d->ring_head = head;
    if (head >= n)
        raise_floor(d, head - n + 1);
    if (head < SEAL_LAG)
        return;
    uint64_t bno = CN_MAX(d->seal_next, d->ring_lo);
    for (; bno <= head - SEAL_LAG; bno++) {
        struct bucket *b = cn_derive__bucket_at(d, bno);
        if (b)
            bucket_seal(d, b);
    }
    d->seal_next = bno;
}

struct bucket *cn_derive__bucket_for(struct cn_derive *d, uint64_t t)
{
    if (t > d->now && t - d->now > d->o.max_future_ns)
        return NULL;
    uint64_t bno = t / d->o.bucket_ns;
    advance_ring(d, bno);
    if (bno < d->ring_lo)
        return NULL;
    struct bucket *b = &d->ring[bno % d->o.num_buckets];
    if (!b->used || b->bno != bno) {
        /* The slot's bucket fell below ring_lo, and raise_floor freed it then. */
        if (CN_NEVER(b->used))
            bucket_free(d, b);
        b->bno = bno;
        b->used = 1;
    }
    b->mod = ++d->mod_seq; /* the caller writes into it: rollups over it are stale */
    b->mod_ns = d->now;
    return b;
}

/* Makes room for `need` more bytes under max_bucket_bytes by dropping buckets older than
 * keep. Returns 0, or CN_ELIMIT when only keep and newer buckets are left. */
static int make_room(struct cn_derive *d, uint64_t keep, size_t need)
{
    while (d->bucket_bytes + need > d->o.max_bucket_bytes) {
        uint64_t bno = d->ring_lo;
        while (bno < keep && !cn_derive__bucket_at(d, bno))
            bno++;
        if (bno >= keep)
            return CN_ELIMIT;
        raise_floor(d, bno + 1);
        d->st.buckets_dropped++;
    }
    return 0;
}

const void *cn_derive__find_cell(const struct ctab *t, size_t size, uint32_t key)
{
    if (!t->idx.slots)
        return NULL;
    uint32_t h = (uint32_t)mix32(key);
    for (uint32_t i = h & t->idx.mask; t->idx.slots[i]; i = (i + 1) & t->idx.mask) {
        if (ITAB_TAG(t->idx.slots[i]) != h)
            continue;
        const char *cell = (const char *)t->cells + (size_t)ITAB_ITEM(t->idx.slots[i]) * size;
        uint32_t k;
        memcpy(&k, cell, sizeof(k));
        if (k == key)
            return cell;
    }
    return NULL;
}

void *cn_derive__cell(struct cn_derive *d, struct bucket *b, struct ctab *t, size_t size,
                      uint32_t key)
{
    void *cell = (void *)cn_derive__find_cell(t, size, key);
    if (cell)
        return cell;
    /* Room for what adding the cell allocates: the cell array and the index when they
     * double, and the first counters of a sketch. */
    size_t need = 16;
    if (t->num == t->cap)
        need += (size_t)(t->cap ? t->cap : 4) * size;
    if (!t->idx.slots || (uint64_t)(t->idx.num + 1) * 2 > (uint64_t)t->idx.mask + 1)
        need += itab_bytes(&t->idx) ? itab_bytes(&t->idx) : 8 * sizeof(*t->idx.slots);
    if (make_room(d, b->bno, need) != 0) {
        d->st.cells_dropped++;
        return NULL;
    }
    /* make_room frees buckets older than b only. */
    CN_ASSERT(cn_derive__bucket_at(d, b->bno) == b);
    size_t before = ctab_bytes(t, size);
    int rc = 0;
    if (t->num == t->cap) {
        uint32_t cap = t->cap ? t->cap * 2 : 4;
        void *cells = realloc(t->cells, (size_t)cap * size);
        if (cells) {
            t->cells = cells;
            t->cap = cap;
        } else {
            rc = CN_ENOMEM;
        }
    }
    if (rc == 0)
        rc = cn_derive__itab_reserve(&t->idx, 8);
    if (rc == 0) {
        cell = (char *)t->cells + (size_t)t->num * size;
        memset(cell, 0, size);
        memcpy(cell, &key, sizeof(key));
        cn_derive__itab_put(&t->idx, mix32(key), t->num++);
    } else {
        d->st.alloc_failures++;
    }
    size_t grown = ctab_bytes(t, size) - before;
    b->bytes += grown;
    d->bucket_bytes += grown;
    return cell;
}

void cn_derive__sketch_add(struct cn_derive *d, struct bucket *b, struct cn_sketch *sk, double v,
                           int32_t k)
{
    size_t before = cn_sketch_bytes(sk);
    if (cn_sketch_add_key(sk, &d->skc, v, k) != 0)
        d->st.alloc_failures++;
    size_t after = cn_sketch_bytes(sk);
    b->bytes += after - before;
    d->bucket_bytes += after - before;
}

/* ---- ingest ---- */

static void red_add(struct cn_derive *d, struct bucket *b, uint32_t series, double v, int32_t k,
                    int err)
{
    if (series == IDX_NONE || !b)
        return;
    struct red_cell *c = cn_derive__cell(d, b, &b->red, sizeof(*c), series);
    if (!c)
        return;
    c->errors += (uint32_t)err;
    cn_derive__sketch_add(d, b, &c->sk, v, k);
}

static void add_span(struct cn_derive *d, const struct cn_span *s, struct svc_cache *cache,
                     uint64_t pair_key)
{
    uint16_t svc = service_of(d, s->resource, cache);
    uint8_t kind = s->kind < NUM_KINDS ? s->kind : CN_KIND_UNSPECIFIED;
    int err = s->status_code == CN_STATUS_ERROR;
    int root = cn_id_is_zero(s->parent_id, 8);
    uint64_t dur = 0;
    if (s->end_ns >= s->start_ns)
        dur = s->end_ns - s->start_ns;
    else
        d->st.bad_durations++;

    if (svc == SVC_NONE) {
        d->st.services_dropped++;
    } else {
        struct cn_slice op = cut(d, s->name);
        uint64_t oh = op_hash(svc, kind, op);
        if ((d->o.red_kinds >> kind & 1) || (root && d->o.red_roots)) {
            struct bucket *b = NULL;
            if (s->start_ns > d->now && s->start_ns - d->now > d->o.max_future_ns)
                d->st.spans_too_new++;
            else if (!(b = cn_derive__bucket_for(d, s->start_ns)))
                d->st.spans_too_old++;
            uint32_t ss = service_series(d, svc, kind);
            uint32_t os = op_series(d, svc, kind, s->name, op, oh);
            /* One logarithm for both sketches. */
            int32_t key = dur ? cn_sketch_key(&d->skc, (double)dur) : 0;
            red_add(d, b, ss, (double)dur, key, err);
            red_add(d, b, os, (double)dur, key, err);
            d->st.red_spans++;
        }
        cn_derive__pair(d, s, svc, dur, err, pair_key);
        cn_derive__span_name(d, svc, kind, s->name, op, oh);
    }
    cn_derive__trace_add(d, s, svc, err, &cache->trace);
}

/* What span s will need, fetched ahead. Inlined by force: gcc takes a function that only
 * prefetches for one without effects, and drops the calls to it when it is not inlined.
 * Four spans on: its name's bytes (hashed for its operation) and, for a CLIENT span, which
 * may look through its attributes for the peer it names, its attributes. */
__attribute__((always_inline)) static inline void span_prefetch(const struct cn_span *s)
{
    __builtin_prefetch(s->name.ptr);
    if (s->kind == CN_KIND_CLIENT && s->attrs.num) {
        const char *p = (const char *)s->attrs.items;
        const char *end = p + CN_MIN(s->attrs.num, 16u) * sizeof(*s->attrs.items);
        for (; p < end; p += 64)
            __builtin_prefetch(p);
    }
}

/* Write lock held. Moves time forward to now: rotates the ring, then expires halves (whose
 * edges then land in the ring as it is now). */
static void advance(struct cn_derive *d, uint64_t now)
{
    if (now > d->now)
        d->now = now;
    advance_ring(d, d->now / d->o.bucket_ns);
    cn_derive__expire_halves(d);
}

void cn_derive_add_spans(struct cn_derive *d, const struct cn_span *spans, size_t n,
                         uint64_t now_ns)
{
    struct svc_cache cache = {0};
    size_t i = 0;
    do {
        size_t m = CN_MIN((size_t)CHUNK_SPANS, n - i);
        pthread_rwlock_wrlock(&d->lock);
        advance(d, now_ns);
        cache.trace.valid = 0;
        /* The pairing keys' hashes of the 8 spans ahead (0: computed when used). */
        uint64_t keys[PAIR_AHEAD] = {0};
        for (size_t j = 0; j < m; j++) {
            uint64_t key = keys[j % PAIR_AHEAD];
            /* Sixteen spans on, the span's record; eight on, what lies at random in large
             * indexes: its trace's summary (when it is not the trace of the span before it)
             * and its pairing key's slot among the waiting halves. */
            if (j + 2 * PAIR_AHEAD < m) {
                const char *rec = (const char *)&spans[i + j + 2 * PAIR_AHEAD];
                __builtin_prefetch(rec);
                __builtin_prefetch(rec + 64);
                __builtin_prefetch(rec + sizeof(*spans) - 1);
            }
            const struct cn_span *ahead = j + PAIR_AHEAD < m ? &spans[i + j + PAIR_AHEAD] : NULL;
            keys[j % PAIR_AHEAD] = ahead ? cn_derive__pair_key(ahead) : 0;
            if (ahead) {
                if (memcmp(ahead->trace_id, ahead[-1].trace_id, 16) != 0)
                    cn_derive__trace_prefetch(d, ahead->trace_id);
                uint64_t k = keys[j % PAIR_AHEAD];
                if (k && d->pend.idx.slots)
                    __builtin_prefetch(&d->pend.idx.slots[(uint32_t)k & d->pend.idx.mask]);
            }
            if (j + 4 < m)
                span_prefetch(&spans[i + j + 4]);
            add_span(d, &spans[i + j], &cache, key);
        }
        cn_derive__resolve_peers(d);
        d->st.spans += m;
        pthread_rwlock_unlock(&d->lock);
        i += m;
    } while (i < n);
}

void cn_derive_expire(struct cn_derive *d, uint64_t now_ns)
{
    pthread_rwlock_wrlock(&d->lock);
    advance(d, now_ns);
    pthread_rwlock_unlock(&d->lock);
}

/* ---- lifecycle, stats ---- */

struct cn_derive *cn_derive_new(const struct cn_derive_opts *o)
{
    struct cn_derive_opts def;
    char err[160];
    if (!o) {
        cn_derive_opts_default(&def);
        o = &def;
    }
    if (cn_derive_opts_check(o, err, sizeof(err)) != 0)
        return NULL;
    struct cn_derive *d = calloc(1, sizeof(*d));
    if (!d)
        return NULL;
    d->o = *o;
    cn_sketch_cfg_init(&d->skc, o->sketch_alpha, o->sketch_max_bins);
    d->pend.free_head = d->pend.oldest = d->pend.newest = IDX_NONE;
    d->services = calloc(o->max_services, sizeof(*d->services));
    d->ring = calloc(o->num_buckets, sizeof(*d->ring));
    if (!d->services || !d->ring ||
        cn_derive__traces_init(&d->tr, o->max_traces, o->max_trace_services) != 0 ||
        cn_derive__rollups_init(d) != 0) {
        free(d->services);
        free(d->ring);
        cn_derive__traces_release(&d->tr);
        cn_derive__rollups_release(d);
        free(d);
        return NULL;
    }
    /* Writers first: a steady stream of queries must not starve ingest. */
    pthread_rwlockattr_t attr;
    pthread_rwlockattr_init(&attr);
    pthread_rwlockattr_setkind_np(&attr, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
    pthread_rwlock_init(&d->lock, &attr);
    pthread_rwlockattr_destroy(&attr);
    return d;
}

void cn_derive_free(struct cn_derive *d)
{
    if (!d)
        return;
    for (uint32_t i = 0; i < d->o.num_buckets; i++) {
        if (d->ring[i].used)
            bucket_free(d, &d->ring[i]);
    }
    free(d->ring);
    cn_derive__rollups_release(d);
    names_release(&d->names);
    free(d->services);
    free(d->series);
    free(d->series_idx.slots);
    free(d->edges);
    free(d->edge_idx.slots);
    cn_derive__pending_release(&d->pend);
    cn_derive__traces_release(&d->tr);
    cn_derive__span_names_release(d);
    pthread_rwlock_destroy(&d->lock);
    free(d);
}

const struct cn_derive_opts *cn_derive_opts(const struct cn_derive *d)
{
    return &d->o;
}

static size_t memory_locked(const struct cn_derive *d)
{
    size_t n = sizeof(*d);
    n += (size_t)d->names.cap * sizeof(struct name) + itab_bytes(&d->names.idx) +
         d->names.chunk_bytes;
    n += (size_t)d->o.max_services * sizeof(struct service);
    n += (size_t)d->cap_series * sizeof(struct series) + itab_bytes(&d->series_idx);
    n += (size_t)d->o.num_buckets * sizeof(struct bucket) + d->bucket_bytes;
    n += (size_t)d->cap_edges * sizeof(struct edge) + itab_bytes(&d->edge_idx);
    n += cn_derive__pending_bytes(&d->pend);
    n += cn_derive__traces_bytes(&d->tr);
    n += cn_derive__span_names_bytes(d);
    n += cn_derive__rollups_bytes((struct cn_derive *)d); /* under its own lock */
    return n;
}

size_t cn_derive_memory(struct cn_derive *d)
{
    pthread_rwlock_rdlock(&d->lock);
    size_t n = memory_locked(d);
    pthread_rwlock_unlock(&d->lock);
    return n;
}

void cn_derive_stats(struct cn_derive *d, struct cn_derive_stats *out)
{
    pthread_rwlock_rdlock(&d->lock);
    *out = d->st;
    out->services = d->num_services;
    out->operations = d->num_ops;
    out->names = d->names.num;
    out->edges = d->num_edges;
    out->pending = d->pend.used;
    out->traces = d->tr.num;
    out->span_names = d->num_spnames;
    out->memory_bytes = memory_locked(d);
    out->bucket_bytes = d->bucket_bytes;
    pthread_mutex_lock(&d->roll.lock);
    out->rollup_bytes = d->roll.bytes;
    out->rollup_hits = d->roll.hits;
    out->rollup_builds = d->roll.builds;
    out->rollups_refused = d->roll.refused;
    pthread_mutex_unlock(&d->roll.lock);
    pthread_rwlock_unlock(&d->lock);
}
