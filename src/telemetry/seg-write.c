/* Segment writer: sorts the records, encodes the columns of each row group, the trace-ID
 * index and the bloom filters, and writes the file atomically (see seg.h for the layout). */
#define CN_SEG_INTERNAL
#include "telemetry/seg.h"

#include "base/arena.h"
#include "base/buf.h"

#include <fcntl.h>
#include <stdarg.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#define XXH_INLINE_ALL /* short keys: the hash inlined, not a call into libxxhash */
#include <xxhash.h>
#include <zstd.h>

#define FLUSH_BYTES (1u << 20)

/* Output with a sticky error: encoders append without checking each call; the block is
 * checked once, when it is emitted. */
struct enc {
    struct cn_buf b;
    int err;
};

static void enc_init(struct enc *e)
{
    cn_buf_init(&e->b, CN_SEG__MAX_BLOCK);
    e->err = 0;
}

static void put_slow(struct enc *e, const void *p, size_t n)
{
    if (!e->err && n)
        e->err = cn_buf_append(&e->b, p, n);
}

/* Encoders append a few bytes at a time: the common case (room in the buffer) inline. */
static inline void put(struct enc *e, const void *p, size_t n)
{
    if (e->b.cap - e->b.len >= n && !e->err) {
        if (n)
            memcpy(e->b.ptr + e->b.len, p, n);
        e->b.len += n;
        return;
    }
    put_slow(e, p, n);
}

static inline void put_u8(struct enc *e, uint8_t v)
{
    if (e->b.len < e->b.cap && !e->err) {
        e->b.ptr[e->b.len++] = (char)v;
        return;
    }
    put_slow(e, &v, 1);
}

static inline void put_var(struct enc *e, uint64_t v)
{
    if (e->b.cap - e->b.len >= 10 && !e->err) {
        e->b.len += cn_seg__var_put((uint8_t *)e->b.ptr + e->b.len, v);
        return;
    }
    uint8_t t[10];
    put_slow(e, t, cn_seg__var_put(t, v));
}

/* put_var of each of a[0..n): room for the largest reserved once, then no check per value.
 * Near the block's limit, where that room is not there, each value as put_var puts it. */
static void put_vars(struct enc *e, const uint32_t *a, size_t n)
{
    if (!e->err && cn_buf_reserve(&e->b, n * 5) == 0) {
        uint8_t *d0 = (uint8_t *)e->b.ptr + e->b.len, *d = d0;
        for (size_t i = 0; i < n; i++) {
            if (a[i] < 0x80) /* most: ids and counts */
                *d++ = (uint8_t)a[i];
            else
                d += cn_seg__var_put(d, a[i]);
        }
        e->b.len += (size_t)(d - d0);
        return;
    }
    for (size_t i = 0; i < n; i++)
        put_var(e, a[i]);
}

static void put_str(struct enc *e, struct cn_slice s)
{
    put_var(e, s.len);
    put(e, s.ptr, s.len);
}

static void put_le64(struct enc *e, uint64_t v)
{
    uint8_t t[8];
    cn_seg__put_le64(t, v);
    put(e, t, 8);
}

static size_t var_len(uint64_t v)
{
    size_t n = 1;
    while (v >= 0x80) {
        v >>= 7;
        n++;
    }
    return n;
}

/* a[0..n) == b[0..n), inline: most strings compared here are short, and most unequal ones
 * differ in their first or last 8 bytes, so no call to memcmp. */
static inline int same_bytes(const void *a, const void *b, size_t n)
{
    const unsigned char *x = a, *y = b;
    if (x == y)
        return 1;
    if (n >= 8) {
        uint64_t u, v, p, q;
        memcpy(&u, x, 8);
        memcpy(&v, y, 8);
        memcpy(&p, x + n - 8, 8);
        memcpy(&q, y + n - 8, 8);
        if (u != v || p != q)
            return 0;
        return n <= 16 || memcmp(x + 8, y + 8, n - 16) == 0;
    }
    if (n >= 4) {
        uint32_t u, v, p, q;
        memcpy(&u, x, 4);
        memcpy(&v, y, 4);
        memcpy(&p, x + n - 4, 4);
        memcpy(&q, y + n - 4, 4);
        return u == v && p == q;
    }
    for (size_t i = 0; i < n; i++)
        if (x[i] != y[i])
            return 0;
    return 1;
}

/* Open-addressing map from byte strings to dense ids 0..n-1. Keys are not copied: they must
 * outlive the map. States: tab == NULL (mask 0) until the first add; n * 2 <= mask + 1. */
struct smap {
    uint32_t *tab; /* id + 1, 0 for an empty slot */
    uint32_t mask;
    uint32_t n;
    uint32_t cap;
    struct cn_slice *keys;
    uint64_t *hashes;
};

static void smap_release(struct smap *m)
{
    free(m->tab);
    free(m->keys);
    free(m->hashes);
    memset(m, 0, sizeof(*m));
}

/* Empties m, keeping its memory for the next use: only the slots in use are cleared unless
 * they are many. */
static void smap_clear(struct smap *m)
{
    if (m->n * 8 > m->mask + 1) {
        memset(m->tab, 0, ((size_t)m->mask + 1) * sizeof(*m->tab));
    } else {
        for (uint32_t id = 0; id < m->n; id++) {
            uint32_t i = (uint32_t)m->hashes[id] & m->mask;
            while (m->tab[i] != id + 1) /* present: the probe ends */
                i = (i + 1) & m->mask;
            m->tab[i] = 0;
        }
    }
    m->n = 0;
}

static int smap_rehash(struct smap *m)
{
    uint32_t size = m->mask ? (m->mask + 1) * 2 : 16;
    uint32_t *t = calloc(size, sizeof(*t));
    if (!t)
        return CN_ENOMEM;
    for (uint32_t id = 0; id < m->n; id++) {
        uint32_t i = (uint32_t)m->hashes[id] & (size - 1);
        while (t[i])
            i = (i + 1) & (size - 1);
        t[i] = id + 1;
    }
    free(m->tab);
    m->tab = t;
    m->mask = size - 1;
    return 0;
}

/* Finds p[0..len), whose XXH3_64bits is h, or adds it. Returns 1 when added, 0 when found,
 * CN_ENOMEM. */
static int smap_add_hashed(struct smap *m, const void *p, size_t len, uint64_t h, uint32_t *out_id)
{
    if (!m->tab || (m->n + 1) * 2 > m->mask + 1) {
        int rc = smap_rehash(m);
        if (rc)
            return rc;
    }
    uint32_t i = (uint32_t)h & m->mask;
    for (; m->tab[i]; i = (i + 1) & m->mask) {
        uint32_t id = m->tab[i] - 1;
        if (m->hashes[id] == h && m->keys[id].len == len && same_bytes(m->keys[id].ptr, p, len)) {
            *out_id = id;
            return 0;
        }
    }
    if (m->n == m->cap) {
        uint32_t cap = m->cap ? m->cap * 2 : 16;
        struct cn_slice *k = realloc(m->keys, cap * sizeof(*k));
        if (!k)
            return CN_ENOMEM;
        m->keys = k;
        uint64_t *hs = realloc(m->hashes, cap * sizeof(*hs));
        if (!hs)
            return CN_ENOMEM;
        m->hashes = hs;
        m->cap = cap;
    }
    m->keys[m->n] = (struct cn_slice){p, len};
    m->hashes[m->n] = h;
    m->tab[i] = m->n + 1;
    *out_id = m->n++;
    return 1;
}

/* Finds p[0..len) or adds it. Returns 1 when added, 0 when found, CN_ENOMEM. */
static int smap_add(struct smap *m, const void *p, size_t len, uint32_t *out_id)
{
    return smap_add_hashed(m, p, len, XXH3_64bits(p, len), out_id);
}

/* Set of 64-bit hashes (the distinct tokens); 0 is kept aside as the empty-slot marker. */
struct hset {
    uint64_t *tab;
    size_t mask;
    size_t n;
    int zero;
};

static int hset_add(struct hset *s, uint64_t h)
{
    if (h == 0) {
        s->zero = 1;
        return 0;
    }
    if (!s->tab || (s->n + 1) * 2 > s->mask + 1) {
        size_t size = s->tab ? (s->mask + 1) * 2 : 1024;
        uint64_t *t = calloc(size, sizeof(*t));
        if (!t)
            return CN_ENOMEM;
        for (size_t i = 0; s->tab && i <= s->mask; i++) {
            if (!s->tab[i])
                continue;
            size_t j = s->tab[i] & (size - 1);
            while (t[j])
                j = (j + 1) & (size - 1);
            t[j] = s->tab[i];
        }
        free(s->tab);
        s->tab = t;
        s->mask = size - 1;
    }
    size_t i = h & s->mask;
    for (; s->tab[i]; i = (i + 1) & s->mask)
        if (s->tab[i] == h)
            return 0;
    s->tab[i] = h;
    s->n++;
    return 0;
}

/* A set of values known by two independent 64-bit hashes of each: equal pairs are taken for
 * equal values (for n values a false match has a probability of about n^2 / 2^128). One
 * slot holds a value, so a lookup reads one cache line, however large the set. */
struct hset2 {
    uint64_t (*tab)[2]; /* tab[i][0] == 0 for an empty slot */
    size_t mask;
    size_t n;
};

/* Adds the value hashed (a, b). Returns 1 when added, 0 when it was there, CN_ENOMEM. */
static int hset2_add(struct hset2 *s, uint64_t a, uint64_t b)
{
    a |= 1; /* never 0 */
    if (!s->tab || (s->n + 1) * 2 > s->mask + 1) {
        size_t size = s->tab ? (s->mask + 1) * 2 : 1024;
        uint64_t(*t)[2] = calloc(size, sizeof(*t));
        if (!t)
            return CN_ENOMEM;
        for (size_t i = 0; s->tab && i <= s->mask; i++) {
            if (!s->tab[i][0])
                continue;
            size_t j = s->tab[i][0] & (size - 1);
            while (t[j][0])
                j = (j + 1) & (size - 1);
            t[j][0] = s->tab[i][0];
            t[j][1] = s->tab[i][1];
        }
        free(s->tab);
        s->tab = t;
        s->mask = size - 1;
    }
    size_t i = a & s->mask;
    for (; s->tab[i][0]; i = (i + 1) & s->mask)
        if (s->tab[i][0] == a && s->tab[i][1] == b)
            return 0;
    s->tab[i][0] = a;
    s->tab[i][1] = b;
    s->n++;
    return 1;
}

struct bref {
    uint64_t off;
    uint64_t len; /* stored, checksum included */
    uint64_t raw;
    uint8_t codec;
};

/* Open-addressing map from non-NULL pointers to ids, hashed by a multiply: rows sorted for
 * search come from many batches, so nearly every row looks its resource and scope up here.
 * States: keys == NULL (mask 0) until the first put; n * 2 <= mask + 1. */
struct pmap {
    const void **keys; /* NULL for an empty slot */
    uint32_t *vals;
    uint32_t mask, n;
};

static inline uint32_t pmap_slot(const struct pmap *m, const void *p)
{
    return (uint32_t)(((uint64_t)(uintptr_t)p * 0x9e3779b97f4a7c15ull) >> 32) & m->mask;
}

/* The id of p, or -1. */
static inline int64_t pmap_get(const struct pmap *m, const void *p)
{
    if (!m->keys)
        return -1;
    for (uint32_t i = pmap_slot(m, p); m->keys[i]; i = (i + 1) & m->mask)
        if (m->keys[i] == p)
            return m->vals[i];
    return -1;
}

/* Adds p (not in m) with id v. Returns 0 or CN_ENOMEM (m unchanged). */
static int pmap_put(struct pmap *m, const void *p, uint32_t v)
{
    if (!m->keys || (m->n + 1) * 2 > m->mask + 1) {
        struct pmap g = {NULL, NULL, m->mask ? m->mask * 2 + 1 : 63, m->n};
        g.keys = calloc((size_t)g.mask + 1, sizeof(*g.keys));
        g.vals = malloc(((size_t)g.mask + 1) * sizeof(*g.vals));
        if (!g.keys || !g.vals) {
            free(g.keys);
            free(g.vals);
            return CN_ENOMEM;
        }
        for (uint32_t k = 0; m->keys && k <= m->mask; k++) {
            if (!m->keys[k])
                continue;
            uint32_t i = pmap_slot(&g, m->keys[k]);
            while (g.keys[i])
                i = (i + 1) & g.mask;
            g.keys[i] = m->keys[k];
            g.vals[i] = m->vals[k];
        }
        free(m->keys);
        free(m->vals);
        *m = g;
    }
    uint32_t i = pmap_slot(m, p);
    while (m->keys[i])
        i = (i + 1) & m->mask;
    m->keys[i] = p;
    m->vals[i] = v;
    m->n++;
    return 0;
}

static void pmap_release(struct pmap *m)
{
    free(m->keys);
    free(m->vals);
    memset(m, 0, sizeof(*m));
}

/* The distinct resources (or scopes) of a segment, found once per segment rather than once
 * per row group: each record's pointer maps to a content id (equal content, equal id), kept
 * with the first pointer seen for it; a group maps content ids to its own entries. */
struct ptab {
    struct pmap byptr; /* pointer -> content id */
    struct smap bycontent;
    struct cn_arena keys;  /* the serialized contents bycontent points to */
    const void **rep;      /* content id -> a pointer with that content */
    uint32_t *loc, *stamp; /* content id -> entry in the group being written, while stamped */
    uint32_t cap_cids, gen;
};

/* A value without its type, copied out of its record: the values of a column are read
 * from one array rather than through a pointer each into the records' scattered memory. */
union vu {
    struct cn_slice s;
    int64_t i;
    double d;
    int b;
};
_Static_assert(sizeof(union vu) == sizeof(((struct cn_val *)0)->u), "union vu is cn_val's u");

/* Grows the array whose pointer is at pp, *cap elements of elem bytes, to hold need; the
 * pointer is read and written with memcpy, whatever its type. Returns 0 or CN_ENOMEM (the
 * array unchanged). */
static int grow(void *pp, size_t *cap, size_t need, size_t elem)
{
    if (need <= *cap)
        return 0;
    size_t c = CN_MAX(need, *cap * 2);
    void *p;
    memcpy(&p, pp, sizeof(p));
    p = realloc(p, c * elem);
    if (!p)
        return CN_ENOMEM;
    memcpy(pp, &p, sizeof(p));
    *cap = c;
    return 0;
}

/* A (key, type) pair of an attribute column and its values in row order. The values'
 * array stays with the slot between calls, reused by the pair that takes the slot next. */
struct pair {
    uint32_t key;
    uint8_t type;
    uint32_t nvals, cap;
    union vu *vals;
};

/* Scratch of put_kvs (kv_) and of put_vals and put_dict (v_), which run for every column
 * of every row group: kept from call to call rather than allocated and freed each time.
 * Maps are empty and kv_kpair all zero between calls. */
struct cols {
    struct smap kv_keys;
    uint32_t *kv_kpair; /* key id * 8 + type -> pair + 1 */
    struct pair *kv_pairs;
    uint32_t *kv_item_pair;
    uint32_t *kv_rows; /* each row's num, then each row's dropped */
    size_t kv_kpair_cap, kv_pairs_cap, kv_items_cap;
    size_t kv_rows_cap;
    struct smap v_map;
    uint32_t *v_ids;
    int64_t *v_iv;
    size_t v_ids_cap, v_iv_cap;
};

static void cols_release(struct cols *c)
{
    smap_release(&c->kv_keys);
    free(c->kv_kpair);
    for (size_t p = 0; p < c->kv_pairs_cap; p++)
        free(c->kv_pairs[p].vals);
    free(c->kv_pairs);
    free(c->kv_item_pair);
    free(c->kv_rows);
    smap_release(&c->v_map);
    free(c->v_ids);
    free(c->v_iv);
    memset(c, 0, sizeof(*c));
}

/* A row's trace ID, for building the index. */
struct tref {
    const uint8_t *id;
    uint32_t row;
};

struct w {
    unsigned kind;
    const struct cn_span *const *spans;
    const struct cn_log *const *logs;
    size_t n;
    uint32_t group_rows;
    int level;
    int uncompressed;
    uint32_t *order; /* row -> input index */
    /* Spans: each row's (service rank, name rank) as service rank * nnames + name rank, and
     * the strings by rank, so the service and name columns need no string compared or
     * hashed again (see put_ranked). */
    uint64_t *grp;
    uint64_t nnames;
    struct cn_slice *svc_by_rank, *name_by_rank;
    uint32_t *rank_loc, *rank_stamp; /* per group: rank -> local id while stamped */
    uint32_t rank_gen, nranks;
    uint32_t *ord; /* row -> trace ordinal + 1, 0 for none */
    struct tref *trefs;
    uint8_t (*tids)[16]; /* the distinct trace IDs, ascending; each tref points at its own */
    size_t ntrefs;
    uint32_t *tstart; /* distinct trace k occupies trefs[tstart[k]..tstart[k+1]) */
    size_t ntids;
    ZSTD_CCtx *zc;
    uint8_t *zbuf;
    size_t zcap;
    int fd;
    uint64_t off;       /* file offset of the next byte emitted */
    struct cn_buf out;  /* emitted, not yet written */
    struct enc blk;     /* the block being encoded */
    struct enc foot;    /* the footer being built */
    struct hset tokens; /* token hashes for the token bloom */
    /* Tokens not yet in tokens: added 64 at a time, each one's slot fetched ahead (the set
     * is large: a lookup is a cache miss). */
    uint64_t tokq[64];
    unsigned ntokq;
    /* String attribute values whose tokens are in tokens already: a value repeated in many
     * row groups (a route, a user ID over a trace's spans) is tokenized once. Known by two
     * hashes: a lookup reads one slot, not a map's slot, hash, key and the value's bytes. */
    struct hset2 indexed;
    struct ptab resources, scopes;
    struct cols cols;
    uint64_t tmin, tmax; /* of the records' times */
    /* Spans: the row of each row's parent when it is a span of this segment (its trace's span
     * of that ID, the first row of duplicates), NO_ROW otherwise. */
    uint32_t *parent_row;
    const char *path;
    char *err;
    size_t err_len;
};

#define NO_ROW UINT32_MAX

static int fail(struct w *w, int rc, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static int fail(struct w *w, int rc, const char *fmt, ...)
{
    if (w->err && w->err_len) {
        int n = snprintf(w->err, w->err_len, "%s: ", w->path);
        if (n >= 0 && (size_t)n < w->err_len) {
            va_list ap;
            va_start(ap, fmt);
            vsnprintf(w->err + n, w->err_len - (size_t)n, fmt, ap);
            va_end(ap);
        }
    }
    return rc;
}

static int write_all(struct w *w, const void *p, size_t n)
{
    const char *c = p;
    while (n) {
        ssize_t k = write(w->fd, c, n);
        if (k < 0) {
            if (errno == EINTR)
                continue;
            int rc = -errno;
            return fail(w, rc, "write failed: %s", cn_strerror(rc));
        }
        c += k;
        n -= (size_t)k;
    }
    return 0;
}

static int flush(struct w *w)
{
    int rc = write_all(w, w->out.ptr, w->out.len);
    w->out.len = 0;
    return rc;
}

static int out_bytes(struct w *w, const void *p, size_t n)
{
    if (n >= FLUSH_BYTES) {
        int rc = flush(w);
        if (rc == 0)
            rc = write_all(w, p, n);
        w->off += n;
        return rc;
    }
    /* Flushed before it would pass FLUSH_BYTES: the buffer reserved for it never grows. */
    int rc = w->out.len + n > FLUSH_BYTES ? flush(w) : 0;
    if (rc)
        return rc;
    rc = cn_buf_append(&w->out, p, n);
    if (rc)
        return fail(w, rc, "out of memory");
    w->off += n;
    return 0;
}

static int enc_check(struct w *w, struct enc *e, const char *what)
{
    if (e->err == CN_ELIMIT)
        return fail(w, CN_ELIMIT, "%s block would pass %u MiB: use smaller row groups", what,
                    CN_SEG__MAX_BLOCK >> 20);
    if (e->err)
        return fail(w, e->err, "out of memory encoding %s", what);
    return 0;
}

/* A block whose bytes past its first RUN_MAX_HEAD end in one byte repeated is stored as the
 * run codec (seg.h): its head and the run's byte. Such blocks are the columns the same in
 * every row of a group (flags, trace state, links, the service of a group of one, ...) after
 * a small header or table. zstd made them hardly smaller, at ~2 us a call (a 1 KiB block on
 * this VM): ~5% of the sealer's zstd time with 1024-row groups. */
#define RUN_MAX_HEAD 64

/* How many bytes p[0..n) ends with that equal its last one (n > 0). */
static size_t trailing_run(const uint8_t *p, size_t n)
{
    uint8_t c = p[n - 1];
    uint64_t all = 0x0101010101010101ull * c;
    size_t k = n;
    while (k >= 8) {
        uint64_t x;
        memcpy(&x, p + k - 8, 8);
        if (x != all)
            break;
        k -= 8;
    }
    while (k && p[k - 1] == c)
        k--;
    return n - k;
}

/* Writes the encoded block e (in the run codec or compressed when that makes it smaller and
 * compress is set) with its checksum, and resets e. */
static int emit(struct w *w, struct enc *e, int compress, uint64_t seed, const char *what,
                struct bref *out)
{
    int rc = enc_check(w, e, what);
    if (rc)
        return rc;
    const void *payload = e->b.ptr;
    size_t len = e->b.len;
    uint8_t codec = CN_SEG__RAW;
    size_t head = compress && !w->uncompressed && len > 16
                      ? len - trailing_run((const uint8_t *)e->b.ptr, len)
                      : len;
    if (head <= RUN_MAX_HEAD && len - head >= 2 * RUN_MAX_HEAD) {
        len = head + 1; /* the head, then the run's byte: e->b.ptr[head] */
        codec = CN_SEG__RUN;
    } else if (compress && !w->uncompressed && len > 16) {
        size_t bound = ZSTD_compressBound(len);
        if (bound > w->zcap) {
            uint8_t *z = realloc(w->zbuf, bound);
            if (!z)
                return fail(w, CN_ENOMEM, "out of memory compressing %s", what);
            w->zbuf = z;
            w->zcap = bound;
        }
        size_t zn = ZSTD_compressCCtx(w->zc, w->zbuf, w->zcap, e->b.ptr, len, w->level);
        if (ZSTD_isError(zn))
            return fail(w, CN_EIO, "zstd: %s", ZSTD_getErrorName(zn));
        if (zn < len) {
            payload = w->zbuf;
            len = zn;
            codec = CN_SEG__ZSTD;
        }
    }
    uint8_t sum[8];
    cn_seg__put_le64(sum, cn_seg__sum(payload, len, seed));
    out->off = w->off;
    out->len = len + 8;
    out->raw = e->b.len;
    out->codec = codec;
    rc = out_bytes(w, payload, len);
    if (rc == 0)
        rc = out_bytes(w, sum, 8);
    e->b.len = 0;
    e->err = 0;
    return rc;
}

static void put_ref(struct enc *e, const struct bref *r)
{
    put_var(e, r->off);
    put_var(e, r->len);
    put_var(e, r->raw);
    put_u8(e, r->codec);
}

static uint64_t gcd(uint64_t a, uint64_t b)
{
    while (b) {
        uint64_t t = a % b;
        a = b;
        b = t;
    }
    return a;
}

static uint64_t zz_div(int64_t v, uint64_t g)
{
    uint64_t a = v < 0 ? 0 - (uint64_t)v : (uint64_t)v;
    uint64_t q = a / g;
    return v < 0 ? 2 * q - 1 : 2 * q;
}

/* Signed integers: their greatest common divisor g (1 when all are 0), the byte width w of
 * the largest v / g zigzagged, then w byte planes (all low bytes, then all second bytes...).
 * Timestamps with microsecond precision lose their three zero digits; planes put the
 * random low bytes and the repetitive high bytes in separate runs, which zstd compresses
 * better than interleaved varints. The caller's v[0..n) is scratch: it is overwritten with
 * the zigzagged quotients. */
static void put_ints(struct enc *e, int64_t *v, size_t n)
{
    uint64_t g = 0;
    for (size_t i = 0; i < n && g != 1; i++)
        g = gcd(v[i] < 0 ? 0 - (uint64_t)v[i] : (uint64_t)v[i], g);
    if (g == 0)
        g = 1;
    /* The zigzagged quotients, computed once (a division each unless g is 1), in place. */
    uint64_t *zz = (uint64_t *)v; /* same size and alignment; read as uint64_t below only */
    uint64_t max = 0;
    for (size_t i = 0; i < n; i++) {
        zz[i] = g == 1 ? cn_seg__zigzag(v[i]) : zz_div(v[i], g);
        max |= zz[i];
    }
    uint8_t width = 0;
    while (width < 8 && (max >> (8 * width)))
        width++;
    put_var(e, g);
    put_u8(e, width);
    if (e->err || cn_buf_reserve(&e->b, n * width) != 0) {
        e->err = e->err ? e->err : CN_ELIMIT;
        return;
    }
    uint8_t *dst = (uint8_t *)e->b.ptr + e->b.len;
    for (uint8_t p = 0; p < width; p++, dst += n)
        for (size_t i = 0; i < n; i++)
            dst[i] = (uint8_t)(zz[i] >> (8 * p));
    e->b.len += n * width;
}

/* Strings as a dictionary (first-occurrence order) and one id per value. */
static int put_dict(struct w *w, struct enc *e, const struct cn_slice *vals, size_t n)
{
    struct cols *c = &w->cols;
    struct smap *m = &c->v_map;
    int rc = grow(&c->v_ids, &c->v_ids_cap, n, sizeof(*c->v_ids));
    uint32_t *ids = c->v_ids;
    for (size_t i = 0; i < n && rc >= 0; i++) {
        /* Sorted rows mostly repeat the previous row's service, name, status message. */
        if (i && vals[i].len == vals[i - 1].len &&
            same_bytes(vals[i].ptr, vals[i - 1].ptr, vals[i].len)) {
            ids[i] = ids[i - 1];
            continue;
        }
        rc = smap_add(m, vals[i].ptr, vals[i].len, &ids[i]);
    }
    if (rc < 0) {
        smap_clear(m);
        return fail(w, rc, "out of memory");
    }
    put_var(e, m->n);
    for (uint32_t k = 0; k < m->n; k++)
        put_str(e, m->keys[k]);
    put_vars(e, ids, n);
    smap_clear(m);
    return 0;
}

/* The service (names 0) or name (names 1) column of rows [r0, r0 + n) of a span segment:
 * the bytes put_dict writes for them, from the ranks plan gave each row. */
static void put_ranked(struct w *w, struct enc *e, size_t r0, size_t n, int names, uint32_t *ids)
{
    const struct cn_slice *by_rank = names ? w->name_by_rank : w->svc_by_rank;
    uint32_t gen = ++w->rank_gen, m = 0;
    if (gen == 0) { /* wrapped: no stale stamp may match */
        memset(w->rank_stamp, 0, (size_t)CN_MAX(w->nranks, 1) * sizeof(*w->rank_stamp));
        gen = w->rank_gen = 1;
    }
    for (size_t i = 0; i < n; i++) {
        uint64_t g = w->grp[r0 + i];
        uint32_t rank = (uint32_t)(names ? g % w->nnames : g / w->nnames);
        if (w->rank_stamp[rank] != gen) {
            w->rank_stamp[rank] = gen;
            w->rank_loc[rank] = m++;
        }
        ids[i] = rank;
    }
    put_var(e, m);
    /* The dictionary in first-occurrence order: walk the rows again for each new rank. */
    uint32_t next = 0;
    for (size_t i = 0; i < n && next < m; i++) {
        if (w->rank_loc[ids[i]] == next) {
            put_str(e, by_rank[ids[i]]);
            next++;
        }
    }
    for (size_t i = 0; i < n; i++)
        ids[i] = w->rank_loc[ids[i]];
    put_vars(e, ids, n);
}

/* Moves the queued tokens into w->tokens. */
static void flush_tokens(struct w *w)
{
    struct hset *t = &w->tokens;
    for (unsigned k = 0; k < w->ntokq; k++) {
        if (k + 8 < w->ntokq && t->tab)
            __builtin_prefetch(&t->tab[w->tokq[k + 8] & t->mask]);
        if (hset_add(t, w->tokq[k]) != 0)
            w->blk.err = CN_ENOMEM; /* reported with the block */
    }
    w->ntokq = 0;
}

static void add_token(void *ctx, uint64_t h)
{
    struct w *w = ctx;
    w->tokq[w->ntokq++] = h;
    if (w->ntokq == CN_ARRAY_LEN(w->tokq))
        flush_tokens(w);
}

/* Adds the tokens of a string-like value to the token bloom's set (which drops repeats).
 * whole: its whole value is a token too. */
static void index_tokens(struct w *w, uint8_t type, struct cn_slice s, int whole)
{
    if (type == CN_VAL_BYTES)
        return;
    cn_seg__tokens(s.ptr, s.len, add_token, w);
    if (whole && type == CN_VAL_STR && s.len > 0 && s.len <= CN_SEG_MAX_TOKEN)
        add_token(w, cn_seg__token_hash(s.ptr, s.len));
}

/* Seed of the second hash of w->indexed; the first is XXH3_64bits, the dictionaries' hash. */
#define INDEXED_SEED 0x696e646578656432ull

/* Indexes a distinct string-like value for the token bloom, tokenizing each whole string
 * value once per segment (the values of a dictionary recur in every row group). h: its
 * XXH3_64bits. */
static void index_value(struct w *w, uint8_t type, struct cn_slice s, int whole, uint64_t h)
{
    if (type == CN_VAL_STR && whole) {
        int rc = hset2_add(&w->indexed, h, XXH3_64bits_withSeed(s.ptr, s.len, INDEXED_SEED));
        if (rc < 0)
            w->blk.err = CN_ENOMEM; /* reported with the block */
        if (rc <= 0)
            return;
    }
    index_tokens(w, type, s, whole);
}

/* Values of a string column hashed into its dictionary before deciding whether the
 * dictionary pays (more than 7 in 8 distinct by then: it does not). */
#define DICT_PROBE_VALUES 256

static inline union vu val_u(const struct cn_val *v)
{
    union vu u;
    memcpy(&u, &v->u, sizeof(u));
    return u;
}

/* The values of one type, in order (see seg.h). attr: they are attribute values (whole
 * short strings go into the token bloom too). */
static int put_vals(struct w *w, struct enc *e, uint8_t type, const union vu *v, size_t n, int attr)
{
    switch (type) {
    case CN_VAL_EMPTY:
        return 0;
    case CN_VAL_BOOL:
        for (size_t i = 0; i < n; i++)
            put_u8(e, v[i].b != 0);
        return 0;
    case CN_VAL_DOUBLE:
        for (size_t i = 0; i < n; i++) {
            uint64_t bits;
            memcpy(&bits, &v[i].d, 8);
            put_le64(e, bits);
        }
        return 0;
    case CN_VAL_INT: {
        if (grow(&w->cols.v_iv, &w->cols.v_iv_cap, n, sizeof(*w->cols.v_iv)))
            return fail(w, CN_ENOMEM, "out of memory");
        int64_t *iv = w->cols.v_iv;
        for (size_t i = 0; i < n; i++)
            iv[i] = v[i].i;
        put_ints(e, iv, n);
        return 0;
    }
    default:
        break;
    }
    /* String-like: a dictionary when it is smaller than the values inline. */
    struct cols *c = &w->cols;
    struct smap *m = &c->v_map;
    int rc = grow(&c->v_ids, &c->v_ids_cap, n, sizeof(*c->v_ids));
    uint32_t *ids = c->v_ids;
    uint64_t all = 0, distinct = 0;
    size_t i = 0;
    for (; i < n && rc >= 0; i++) {
        /* Values nearly all distinct (request IDs, user IDs): the dictionary cannot pay, so
         * stop hashing them for it and write them inline. Every value is still tokenized for
         * the token bloom (its set of tokens is the same as the distinct values'), without
         * the segment's map of values already tokenized: they would nearly all be new. */
        if (i == DICT_PROBE_VALUES && m->n * 8 > i * 7)
            break;
        /* The values' bytes are scattered over the batches' memory: fetch ahead. */
        if (i + 4 < n)
            __builtin_prefetch(v[i + 4].s.ptr);
        struct cn_slice s = v[i].s;
        /* Rows sorted by service and name often repeat the previous value: no hashing. */
        if (i && s.len == v[i - 1].s.len && same_bytes(s.ptr, v[i - 1].s.ptr, s.len)) {
            ids[i] = ids[i - 1];
            all += s.len + var_len(s.len);
            continue;
        }
        uint64_t h = XXH3_64bits(s.ptr, s.len);
        rc = smap_add_hashed(m, s.ptr, s.len, h, &ids[i]);
        all += s.len + var_len(s.len);
        if (rc == 1)
            distinct += s.len + var_len(s.len);
    }
    if (rc < 0) {
        smap_clear(m);
        return fail(w, rc, "out of memory");
    }
    /* The distinct values go to the token bloom now that they are known, each one's slot in
     * the segment's set of values already tokenized (a cache miss each: the set is large)
     * fetched eight values ahead. */
    for (uint32_t k = 0; k < m->n; k++) {
        if (k + 8 < m->n && w->indexed.tab)
            __builtin_prefetch(&w->indexed.tab[(m->hashes[k + 8] | 1) & w->indexed.mask]);
        index_value(w, type, m->keys[k], attr, m->hashes[k]);
    }
    if (i < n) {
        for (size_t k = i; k < n; k++) {
            if (k + 4 < n)
                __builtin_prefetch(v[k + 4].s.ptr);
            struct cn_slice s = v[k].s;
            if (!(s.len == v[k - 1].s.len && same_bytes(s.ptr, v[k - 1].s.ptr, s.len)))
                index_tokens(w, type, s, attr);
        }
        put_u8(e, CN_SEG__INLINE);
        for (size_t k = 0; k < n; k++)
            put_str(e, v[k].s);
    } else if (distinct + n * var_len(m->n) < all) {
        put_u8(e, CN_SEG__DICT);
        put_var(e, m->n);
        for (uint32_t k = 0; k < m->n; k++)
            put_str(e, m->keys[k]);
        put_vars(e, ids, n);
    } else {
        put_u8(e, CN_SEG__INLINE);
        for (size_t i = 0; i < n; i++)
            put_str(e, v[i].s);
    }
    smap_clear(m);
    return 0;
}

/* Appends v to p's values, which grow from room for hint. Returns 0 or CN_ENOMEM. */
static inline int pair_push(struct pair *p, union vu v, size_t hint)
{
    if (CN_UNLIKELY(p->nvals == p->cap)) {
        size_t cap = p->cap ? (size_t)p->cap * 2 : CN_MAX(hint, 16);
        union vu *vals = cap <= UINT32_MAX ? realloc(p->vals, cap * sizeof(*vals)) : NULL;
        if (!vals)
            return CN_ENOMEM;
        p->vals = vals;
        p->cap = (uint32_t)cap;
    }
    p->vals[p->nvals++] = v;
    return 0;
}

/* Attribute sets rows[0..n): (key, type) pairs, count and dropped per row, pair per item,
 * then each pair's values. */
static int put_kvs(struct w *w, struct enc *e, const struct cn_kvs *const *rows, size_t n)
{
    struct cols *c = &w->cols;
    struct smap *keys = &c->kv_keys;
    enum { KSEEN = 32 };
    struct kseen {
        struct cn_slice key;
        uint32_t id;
        uint32_t pair; /* of key and type */
        uint8_t type;
    } seen[KSEEN] = {0}; /* the key (and type) last seen at each position of a row */
    uint32_t npairs = 0, *kpair = c->kv_kpair;
    size_t kpair_cap = c->kv_kpair_cap;
    struct pair *pairs = c->kv_pairs;
    /* Each row's count and dropped, each item's pair, and each value appended to its pair's
     * values: the rows are read once, in the loop below, not again for counts or for each
     * pair's values. */
    int rc = grow(&c->kv_rows, &c->kv_rows_cap, 2 * n, sizeof(*c->kv_rows));
    uint32_t *rnum = rc ? NULL : c->kv_rows, *rdropped = rc ? NULL : c->kv_rows + n;
    size_t j = 0;
    for (size_t r = 0; r < n && rc >= 0; r++) {
        /* Rows are scattered over the batches: fetch a row's count and items pointer
         * sixteen rows ahead, its items (several cache lines) eight rows ahead, and the body
         * bytes its keys point into four rows ahead. */
        if (r + 16 < n)
            __builtin_prefetch(rows[r + 16]);
        if (r + 8 < n) {
            const struct cn_kvs *k8 = rows[r + 8];
            const char *p = (const char *)k8->items, *end = p + k8->num * sizeof(*k8->items);
            for (; p < end; p += 64)
                __builtin_prefetch(p);
        }
        if (r + 4 < n && rows[r + 4]->num) {
            const struct cn_kvs *k4 = rows[r + 4];
            const char *p = k4->items[0].key.ptr, *end = k4->items[k4->num - 1].key.ptr;
            if (p && end > p && end - p <= 1024)
                for (; p <= end; p += 64)
                    __builtin_prefetch(p);
        }
        uint32_t num = rows[r]->num;
        rnum[r] = num;
        rdropped[r] = rows[r]->dropped;
        if (j + num > c->kv_items_cap &&
            grow(&c->kv_item_pair, &c->kv_items_cap, j + num, sizeof(*c->kv_item_pair))) {
            rc = CN_ENOMEM;
            break;
        }
        uint32_t *item_pair = c->kv_item_pair;
        for (uint32_t i = 0; i < num && rc >= 0; i++, j++) {
            const struct cn_kv *kv = &rows[r]->items[i];
            if (kv->val.type > CN_VAL_KVLIST) {
                rc = fail(w, CN_EINVAL, "attribute \"%.*s\" has unknown value type %u",
                          (int)CN_MIN(kv->key.len, 64), kv->key.ptr ? kv->key.ptr : "",
                          kv->val.type);
                break;
            }
            /* Rows mostly list the same keys with the same types in the same order as the
             * row before. */
            uint32_t kid;
            struct kseen *ks = i < KSEEN ? &seen[i] : NULL;
            if (ks && ks->key.len == kv->key.len && ks->key.ptr &&
                same_bytes(ks->key.ptr, kv->key.ptr, kv->key.len)) {
                if (ks->type == kv->val.type) {
                    item_pair[j] = ks->pair;
                    if (pair_push(&pairs[ks->pair], val_u(&kv->val), n)) {
                        rc = CN_ENOMEM;
                        break;
                    }
                    continue;
                }
                kid = ks->id;
            } else {
                rc = smap_add(keys, kv->key.ptr, kv->key.len, &kid);
                if (rc < 0)
                    break;
            }
            if ((size_t)kid * 8 + 8 > kpair_cap) {
                if (grow(&c->kv_kpair, &c->kv_kpair_cap, CN_MAX((size_t)kid * 8 + 8, 128),
                         sizeof(*c->kv_kpair))) {
                    rc = CN_ENOMEM;
                    break;
                }
                kpair = c->kv_kpair;
                memset(kpair + kpair_cap, 0, (c->kv_kpair_cap - kpair_cap) * sizeof(*kpair));
                kpair_cap = c->kv_kpair_cap;
            }
            uint32_t *slot = &kpair[(size_t)kid * 8 + kv->val.type];
            if (!*slot) {
                size_t had = c->kv_pairs_cap;
                if (grow(&c->kv_pairs, &c->kv_pairs_cap, (size_t)npairs + 1,
                         sizeof(*c->kv_pairs))) {
                    rc = CN_ENOMEM;
                    break;
                }
                pairs = c->kv_pairs;
                memset(pairs + had, 0, (c->kv_pairs_cap - had) * sizeof(*pairs));
                pairs[npairs].key = kid;
                pairs[npairs].type = kv->val.type;
                pairs[npairs].nvals = 0;
                *slot = ++npairs;
            }
            item_pair[j] = *slot - 1;
            if (pair_push(&pairs[*slot - 1], val_u(&kv->val), n)) {
                rc = CN_ENOMEM;
                break;
            }
            if (ks)
                *ks = (struct kseen){kv->key, kid, *slot - 1, kv->val.type};
        }
    }
    size_t total = j;
    if (rc >= 0) {
        put_var(e, n);
        put_var(e, npairs);
        for (uint32_t p = 0; p < npairs; p++) {
            put_str(e, keys->keys[pairs[p].key]);
            put_u8(e, pairs[p].type);
        }
        put_vars(e, rnum, n);
        put_vars(e, rdropped, n);
        put_vars(e, c->kv_item_pair, total);
        for (uint32_t p = 0; p < npairs && rc >= 0; p++)
            rc = put_vals(w, e, pairs[p].type, pairs[p].vals, pairs[p].nvals, 1);
    } else if (rc == CN_ENOMEM) {
        rc = fail(w, rc, "out of memory");
    }
    /* Back to all zero for the next call: the slots of this call's keys. */
    for (uint32_t k = 0; k < keys->n && (size_t)k * 8 < c->kv_kpair_cap; k++)
        memset(c->kv_kpair + (size_t)k * 8, 0, 8 * sizeof(*c->kv_kpair));
    smap_clear(keys);
    return rc < 0 ? rc : 0;
}

/* Canonical bytes of an attribute set, to find equal resources and scopes. */
static void ser_kvs(struct enc *e, const struct cn_kvs *kvs)
{
    put_var(e, kvs->num);
    put_var(e, kvs->dropped);
    for (uint32_t i = 0; i < kvs->num; i++) {
        const struct cn_kv *kv = &kvs->items[i];
        put_str(e, kv->key);
        put_u8(e, kv->val.type);
        switch (kv->val.type) {
        case CN_VAL_BOOL:
            put_u8(e, kv->val.u.b != 0);
            break;
        case CN_VAL_INT:
            put_le64(e, (uint64_t)kv->val.u.i);
            break;
        case CN_VAL_DOUBLE: {
            uint64_t bits;
            memcpy(&bits, &kv->val.u.d, 8);
            put_le64(e, bits);
            break;
        }
        case CN_VAL_EMPTY:
            break;
        default:
            put_str(e, kv->val.u.s);
        }
    }
}

static void ptab_release(struct ptab *t)
{
    pmap_release(&t->byptr);
    smap_release(&t->bycontent);
    cn_arena_release(&t->keys);
    free(t->rep);
    free(t->loc);
    free(t->stamp);
    memset(t, 0, sizeof(*t));
}

/* Grows *arr (elem bytes each, *cap of them) to hold index i. Returns 0 or CN_ENOMEM. */
static int ptab_room(void **arr, uint32_t cap, uint32_t i, size_t elem)
{
    if (i < cap)
        return 0;
    void *p = realloc(*arr, (size_t)(cap ? cap * 2 : 64) * elem);
    if (!p)
        return CN_ENOMEM;
    *arr = p;
    return 0;
}

/* The content id of the resource (scope) at ptr, found or made. Returns it, or a negative
 * CN_E* code. */
static int64_t ptab_cid(struct ptab *t, struct enc *ser, const void *ptr, int scope)
{
    int64_t known = pmap_get(&t->byptr, ptr);
    if (known >= 0)
        return known;
    ser->b.len = 0;
    if (scope) {
        const struct cn_scope *s = ptr;
        put_str(ser, s->name);
        put_str(ser, s->version);
        ser_kvs(ser, &s->attrs);
    } else {
        const struct cn_resource *r = ptr;
        put_str(ser, r->service);
        put_str(ser, r->schema_url);
        ser_kvs(ser, &r->attrs);
    }
    if (ser->err)
        return ser->err;
    struct cn_slice key = cn_arena_dup(&t->keys, ser->b.ptr, ser->b.len);
    if (!key.ptr)
        return CN_ENOMEM;
    uint32_t cid;
    int rc = smap_add(&t->bycontent, key.ptr, key.len, &cid);
    if (rc < 0)
        return rc;
    if (pmap_put(&t->byptr, ptr, cid))
        return CN_ENOMEM;
    if (rc == 1) {
        if (ptab_room((void **)&t->rep, t->cap_cids, cid, sizeof(*t->rep)) ||
            ptab_room((void **)&t->loc, t->cap_cids, cid, sizeof(*t->loc)) ||
            ptab_room((void **)&t->stamp, t->cap_cids, cid, sizeof(*t->stamp)))
            return CN_ENOMEM;
        if (cid >= t->cap_cids) {
            uint32_t old = t->cap_cids;
            t->cap_cids = old ? old * 2 : 64;
            memset(t->stamp + old, 0, (t->cap_cids - old) * sizeof(*t->stamp));
        }
        t->rep[cid] = ptr;
    }
    return cid;
}

/* A table of the distinct resources (kind 0) or scopes (kind 1) of rows, then the entry of
 * each row. Equal content, not only equal pointers, shares an entry; entries are in the
 * order of their first row. */
static int put_table(struct w *w, struct enc *e, const void *const *ptrs, size_t n, int scope)
{
    struct ptab *t = scope ? &w->scopes : &w->resources;
    struct enc ser;
    enc_init(&ser);
    uint32_t *ids = malloc((n ? n : 1) * sizeof(*ids));
    const void **ents = malloc((n ? n : 1) * sizeof(*ents));
    int64_t rc = ids && ents ? 0 : CN_ENOMEM;
    uint32_t nent = 0, gen = ++t->gen;
    if (gen == 0) { /* wrapped: no stale stamp may match */
        memset(t->stamp, 0, (size_t)t->cap_cids * sizeof(*t->stamp));
        gen = t->gen = 1;
    }
    for (size_t i = 0; i < n && rc >= 0; i++) {
        /* Rows of one batch share their resource and scope: no lookup for a repeat. */
        if (i && ptrs[i] == ptrs[i - 1]) {
            ids[i] = ids[i - 1];
            continue;
        }
        rc = ptab_cid(t, &ser, ptrs[i], scope);
        if (rc < 0)
            break;
        uint32_t cid = (uint32_t)rc;
        if (t->stamp[cid] != gen) {
            t->stamp[cid] = gen;
            t->loc[cid] = nent;
            ents[nent++] = t->rep[cid];
        }
        ids[i] = t->loc[cid];
    }
    if (rc >= 0) {
        rc = 0;
        put_var(e, nent);
        const struct cn_kvs **attrs = malloc((nent ? nent : 1) * sizeof(*attrs));
        if (!attrs)
            rc = CN_ENOMEM;
        for (uint32_t k = 0; k < nent && rc >= 0; k++) {
            if (scope) {
                const struct cn_scope *s = ents[k];
                put_str(e, s->name);
                put_str(e, s->version);
                attrs[k] = &s->attrs;
            } else {
                const struct cn_resource *r = ents[k];
                put_str(e, r->service);
                put_str(e, r->schema_url);
                attrs[k] = &r->attrs;
            }
        }
        if (rc >= 0)
            rc = put_kvs(w, e, attrs, nent);
        free(attrs);
        if (rc >= 0)
            put_vars(e, ids, n);
    }
    if (rc == CN_ENOMEM)
        rc = fail(w, (int)rc, "out of memory");
    free(ids);
    free(ents);
    cn_buf_release(&ser.b);
    return rc < 0 ? (int)rc : 0;
}

/* Per-group scratch, sized for group_rows. spans: copies of a span group's records. */
struct scratch {
    struct cn_slice *sl;
    int64_t *iv;
    const void **ptrs;
    const struct cn_kvs **kvs;
    struct cn_span *spans;
};

static int scratch_init(struct scratch *s, size_t rows, int spans)
{
    s->sl = malloc(rows * sizeof(*s->sl));
    s->iv = malloc(rows * sizeof(*s->iv));
    s->ptrs = malloc(rows * sizeof(*s->ptrs));
    s->kvs = malloc(rows * sizeof(*s->kvs));
    s->spans = spans ? malloc(rows * sizeof(*s->spans)) : NULL;
    return s->sl && s->iv && s->ptrs && s->kvs && (s->spans || !spans) ? 0 : CN_ENOMEM;
}

static void scratch_release(struct scratch *s)
{
    free(s->sl);
    free(s->iv);
    free(s->ptrs);
    free(s->kvs);
    free(s->spans);
}

struct gstats {
    uint64_t tmin, tmax, amin, amax;
};

#define EMIT(col, compress)                                                                        \
    do {                                                                                           \
        int rc_ = emit(w, e, (compress), cn_seg__seed(CN_SEG__SEC_GROUP, g, (col)),                \
                       cn_seg__col_name(w->kind, (col)), &refs[(col)]);                            \
        if (rc_)                                                                                   \
            return rc_;                                                                            \
    } while (0)

#define CHECK(expr)                                                                                \
    do {                                                                                           \
        int rc_ = (expr);                                                                          \
        if (rc_)                                                                                   \
            return rc_;                                                                            \
    } while (0)

/* Parent of each span: a code per row (0 none, 1 raw, 2 a span of this segment), the raw
 * IDs, then the rows of the referenced parents as deltas from the previous reference. Most
 * parents are in the segment, and two runs of rows sorted by time point at each other in
 * order, so the deltas are small. */
static int put_parents(struct w *w, struct enc *e, const struct cn_span *const *sp, size_t r0,
                       size_t n)
{
    int64_t *refs = malloc((n ? n : 1) * sizeof(*refs));
    uint8_t *codes = malloc(n ? n : 1);
    if (!refs || !codes) {
        free(refs);
        free(codes);
        return fail(w, CN_ENOMEM, "out of memory");
    }
    size_t nrefs = 0;
    uint64_t prev = r0;
    for (size_t i = 0; i < n; i++) {
        if (cn_id_is_zero(sp[i]->parent_id, 8)) {
            codes[i] = 0;
            continue;
        }
        int64_t r = w->parent_row[r0 + i] == NO_ROW ? -1 : (int64_t)w->parent_row[r0 + i];
        codes[i] = r >= 0 ? 2 : 1;
        if (r >= 0) {
            refs[nrefs++] = (int64_t)((uint64_t)r - prev);
            prev = (uint64_t)r;
        }
    }
    put(e, codes, n);
    for (size_t i = 0; i < n; i++)
        if (codes[i] == 1)
            put(e, sp[i]->parent_id, 8);
    put_ints(e, refs, nrefs);
    free(refs);
    free(codes);
    return 0;
}

static int put_events(struct w *w, struct enc *e, const struct cn_span *const *sp, size_t n)
{
    size_t total = 0;
    for (size_t i = 0; i < n; i++) {
        put_var(e, sp[i]->num_events);
        total += sp[i]->num_events;
    }
    for (size_t i = 0; i < n; i++)
        put_var(e, sp[i]->dropped_events);
    int64_t *dt = malloc((total ? total : 1) * sizeof(*dt));
    struct cn_slice *names = malloc((total ? total : 1) * sizeof(*names));
    const struct cn_kvs **attrs = malloc((total ? total : 1) * sizeof(*attrs));
    int rc = dt && names && attrs ? 0 : fail(w, CN_ENOMEM, "out of memory");
    if (rc == 0) {
        size_t j = 0;
        for (size_t i = 0; i < n; i++)
            for (uint32_t k = 0; k < sp[i]->num_events; k++, j++) {
                const struct cn_event *ev = &sp[i]->events[k];
                dt[j] = (int64_t)(ev->time_ns - sp[i]->start_ns);
                names[j] = ev->name;
                attrs[j] = &ev->attrs;
            }
        put_ints(e, dt, total);
        rc = put_dict(w, e, names, total);
        if (rc == 0)
            rc = put_kvs(w, e, attrs, total);
    }
    free(dt);
    free(names);
    free(attrs);
    return rc;
}

static int put_links(struct w *w, struct enc *e, const struct cn_span *const *sp, size_t n)
{
    size_t total = 0;
    for (size_t i = 0; i < n; i++) {
        put_var(e, sp[i]->num_links);
        total += sp[i]->num_links;
    }
    for (size_t i = 0; i < n; i++)
        put_var(e, sp[i]->dropped_links);
    struct cn_slice *ts = malloc((total ? total : 1) * sizeof(*ts));
    const struct cn_kvs **attrs = malloc((total ? total : 1) * sizeof(*attrs));
    int rc = ts && attrs ? 0 : fail(w, CN_ENOMEM, "out of memory");
    if (rc == 0) {
        size_t j = 0;
        for (size_t i = 0; i < n; i++)
            for (uint32_t k = 0; k < sp[i]->num_links; k++)
                put(e, sp[i]->links[k].trace_id, 16);
        for (size_t i = 0; i < n; i++)
            for (uint32_t k = 0; k < sp[i]->num_links; k++)
                put(e, sp[i]->links[k].span_id, 8);
        for (size_t i = 0; i < n; i++)
            for (uint32_t k = 0; k < sp[i]->num_links; k++, j++) {
                put_var(e, sp[i]->links[k].flags);
                ts[j] = sp[i]->links[k].trace_state;
                attrs[j] = &sp[i]->links[k].attrs;
            }
        rc = put_dict(w, e, ts, total);
        if (rc == 0)
            rc = put_kvs(w, e, attrs, total);
    }
    free(ts);
    free(attrs);
    return rc;
}

static int span_group(struct w *w, uint32_t g, size_t r0, size_t n, struct scratch *s,
                      struct bref *refs, struct gstats *st)
{
    const struct cn_span **sp = (const struct cn_span **)s->ptrs;
    struct enc *e = &w->blk;
    /* The group's records lie scattered over the batches, in sort order, and each column
     * below reads them again: they are copied end to end once (fetched ahead), and read
     * from there. */
    for (size_t i = 0; i < n; i++) {
        if (i + 8 < n) {
            const char *p = (const char *)w->spans[w->order[r0 + i + 8]];
            for (size_t k = 0; k < sizeof(struct cn_span); k += 64)
                __builtin_prefetch(p + k);
            __builtin_prefetch(p + sizeof(struct cn_span) - 1);
        }
        s->spans[i] = *w->spans[w->order[r0 + i]];
        sp[i] = &s->spans[i];
    }

    *st = (struct gstats){UINT64_MAX, 0, UINT64_MAX, 0};
    for (size_t i = 0; i < n; i++) {
        uint64_t t = sp[i]->start_ns;
        uint64_t d = sp[i]->end_ns >= t ? sp[i]->end_ns - t : 0;
        st->tmin = CN_MIN(st->tmin, t);
        st->tmax = CN_MAX(st->tmax, t);
        st->amin = CN_MIN(st->amin, d);
        st->amax = CN_MAX(st->amax, d);
    }

    put_vars(e, w->ord + r0, n);
    EMIT(CN_SEG__S_TRACE, 1);
    for (size_t i = 0; i < n; i++)
        put(e, sp[i]->span_id, 8);
    /* Span IDs are random (W3C trace context): zstd never shrank them (1.00 on bench/otlpgen's
     * spans), and trying cost ~1% of sealing. Stored raw, as emit stored them already. */
    EMIT(CN_SEG__S_SPAN_ID, 0);
    put_ranked(w, e, r0, n, 0, (uint32_t *)s->iv);
    EMIT(CN_SEG__S_SERVICE, 1);
    put_ranked(w, e, r0, n, 1, (uint32_t *)s->iv);
    EMIT(CN_SEG__S_NAME, 1);
    for (size_t i = 0; i < n; i++)
        put_u8(e, sp[i]->kind);
    EMIT(CN_SEG__S_KIND, 1);
    for (size_t i = 0; i < n; i++)
        put_u8(e, sp[i]->status_code);
    EMIT(CN_SEG__S_STATUS, 1);
    for (size_t i = 0; i < n; i++)
        s->iv[i] = (int64_t)(sp[i]->start_ns - (i ? sp[i - 1]->start_ns : 0));
    put_ints(e, s->iv, n);
    EMIT(CN_SEG__S_START, 1);
    for (size_t i = 0; i < n; i++)
        s->iv[i] = (int64_t)(sp[i]->end_ns - sp[i]->start_ns);
    put_ints(e, s->iv, n);
    EMIT(CN_SEG__S_DURATION, 1);
    CHECK(put_parents(w, e, sp, r0, n));
    EMIT(CN_SEG__S_PARENT, 1);
    for (size_t i = 0; i < n; i++)
        s->sl[i] = sp[i]->status_message;
    CHECK(put_dict(w, e, s->sl, n));
    EMIT(CN_SEG__S_STATUS_MSG, 1);
    for (size_t i = 0; i < n; i++)
        put_var(e, sp[i]->flags);
    EMIT(CN_SEG__S_FLAGS, 1);
    for (size_t i = 0; i < n; i++)
        s->sl[i] = sp[i]->trace_state;
    CHECK(put_dict(w, e, s->sl, n));
    EMIT(CN_SEG__S_TRACE_STATE, 1);

    const void **ptrs = calloc(n ? n : 1, sizeof(*ptrs));
    if (!ptrs)
        return fail(w, CN_ENOMEM, "out of memory");
    for (size_t i = 0; i < n; i++)
        ptrs[i] = sp[i]->scope;
    int rc = put_table(w, e, ptrs, n, 1);
    if (rc == 0)
        rc = emit(w, e, 1, cn_seg__seed(CN_SEG__SEC_GROUP, g, CN_SEG__S_SCOPE), "scope",
                  &refs[CN_SEG__S_SCOPE]);
    for (size_t i = 0; i < n; i++)
        ptrs[i] = sp[i]->resource;
    if (rc == 0)
        rc = put_table(w, e, ptrs, n, 0);
    free(ptrs);
    CHECK(rc);
    EMIT(CN_SEG__S_RESOURCE, 1);
    for (size_t i = 0; i < n; i++)
        s->kvs[i] = &sp[i]->attrs;
    CHECK(put_kvs(w, e, s->kvs, n));
    EMIT(CN_SEG__S_ATTRS, 1);
    CHECK(put_events(w, e, sp, n));
    EMIT(CN_SEG__S_EVENTS, 1);
    CHECK(put_links(w, e, sp, n));
    EMIT(CN_SEG__S_LINKS, 1);
    return 0;
}

/* A typed value per row (log bodies): the type of each row, then the values of each type. */
static int put_body(struct w *w, struct enc *e, const struct cn_log *const *lg, size_t n)
{
    union vu *v = malloc((n ? n : 1) * sizeof(*v));
    if (!v)
        return fail(w, CN_ENOMEM, "out of memory");
    int rc = 0;
    for (size_t i = 0; i < n && rc == 0; i++) {
        if (lg[i]->body.type > CN_VAL_KVLIST)
            rc = fail(w, CN_EINVAL, "log body has unknown value type %u", lg[i]->body.type);
        else
            put_u8(e, lg[i]->body.type);
    }
    for (uint8_t t = CN_VAL_STR; t <= CN_VAL_KVLIST && rc == 0; t++) {
        size_t k = 0;
        for (size_t i = 0; i < n; i++)
            if (lg[i]->body.type == t)
                v[k++] = val_u(&lg[i]->body);
        rc = put_vals(w, e, t, v, k, 0);
    }
    free(v);
    return rc;
}

static int log_group(struct w *w, uint32_t g, size_t r0, size_t n, struct scratch *s,
                     struct bref *refs, struct gstats *st)
{
    const struct cn_log **lg = (const struct cn_log **)s->ptrs;
    struct enc *e = &w->blk;
    for (size_t i = 0; i < n; i++)
        lg[i] = w->logs[w->order[r0 + i]];

    *st = (struct gstats){UINT64_MAX, 0, UINT64_MAX, 0};
    for (size_t i = 0; i < n; i++) {
        st->tmin = CN_MIN(st->tmin, lg[i]->time_ns);
        st->tmax = CN_MAX(st->tmax, lg[i]->time_ns);
        st->amin = CN_MIN(st->amin, lg[i]->severity_number);
        st->amax = CN_MAX(st->amax, lg[i]->severity_number);
    }

    put_vars(e, w->ord + r0, n);
    EMIT(CN_SEG__L_TRACE, 1);
    for (size_t i = 0; i < n; i++)
        put_u8(e, !cn_id_is_zero(lg[i]->span_id, 8));
    for (size_t i = 0; i < n; i++)
        if (!cn_id_is_zero(lg[i]->span_id, 8))
            put(e, lg[i]->span_id, 8);
    EMIT(CN_SEG__L_SPAN_ID, 1);
    for (size_t i = 0; i < n; i++)
        s->sl[i] = lg[i]->resource->service;
    CHECK(put_dict(w, e, s->sl, n));
    EMIT(CN_SEG__L_SERVICE, 1);
    for (size_t i = 0; i < n; i++)
        s->iv[i] = (int64_t)(lg[i]->time_ns - (i ? lg[i - 1]->time_ns : 0));
    put_ints(e, s->iv, n);
    EMIT(CN_SEG__L_TIME, 1);
    for (size_t i = 0; i < n; i++)
        put_u8(e, lg[i]->severity_number);
    EMIT(CN_SEG__L_SEV_NUM, 1);
    for (size_t i = 0; i < n; i++)
        s->sl[i] = lg[i]->event_name;
    CHECK(put_dict(w, e, s->sl, n));
    EMIT(CN_SEG__L_EVENT_NAME, 1);
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        put_u8(e, lg[i]->observed_ns != 0);
        if (lg[i]->observed_ns)
            s->iv[k++] = (int64_t)(lg[i]->observed_ns - lg[i]->time_ns);
    }
    put_ints(e, s->iv, k);
    EMIT(CN_SEG__L_OBSERVED, 1);
    for (size_t i = 0; i < n; i++)
        s->sl[i] = lg[i]->severity_text;
    CHECK(put_dict(w, e, s->sl, n));
    EMIT(CN_SEG__L_SEV_TEXT, 1);
    CHECK(put_body(w, e, lg, n));
    EMIT(CN_SEG__L_BODY, 1);
    for (size_t i = 0; i < n; i++)
        s->kvs[i] = &lg[i]->attrs;
    CHECK(put_kvs(w, e, s->kvs, n));
    EMIT(CN_SEG__L_ATTRS, 1);
    for (size_t i = 0; i < n; i++)
        put_var(e, lg[i]->flags);
    EMIT(CN_SEG__L_FLAGS, 1);

    const void **ptrs = calloc(n ? n : 1, sizeof(*ptrs));
    if (!ptrs)
        return fail(w, CN_ENOMEM, "out of memory");
    for (size_t i = 0; i < n; i++)
        ptrs[i] = lg[i]->scope;
    int rc = put_table(w, e, ptrs, n, 1);
    if (rc == 0)
        rc = emit(w, e, 1, cn_seg__seed(CN_SEG__SEC_GROUP, g, CN_SEG__L_SCOPE), "scope",
                  &refs[CN_SEG__L_SCOPE]);
    for (size_t i = 0; i < n; i++)
        ptrs[i] = lg[i]->resource;
    if (rc == 0)
        rc = put_table(w, e, ptrs, n, 0);
    free(ptrs);
    CHECK(rc);
    EMIT(CN_SEG__L_RESOURCE, 1);
    return 0;
}

static int slice_cmp(struct cn_slice a, struct cn_slice b)
{
    size_t n = CN_MIN(a.len, b.len);
    int c = n ? memcmp(a.ptr, b.ptr, n) : 0;
    if (c)
        return c;
    return a.len < b.len ? -1 : a.len > b.len;
}

static int rank_cmp(const void *pa, const void *pb, void *arg)
{
    const struct smap *m = arg;
    return slice_cmp(m->keys[*(const uint32_t *)pa], m->keys[*(const uint32_t *)pb]);
}

/* Interns s, the string of row i, into m: ids[i] = its dense id. prev: the string last
 * hashed, whose id is ids[i - 1] (rows of one batch repeat the previous row's string most of
 * the time: the same resource's service; span names equal but apart in the body). Returns
 * 0 or CN_ENOMEM. */
static inline int intern(struct smap *m, struct cn_slice s, struct cn_slice *prev, uint32_t *ids,
                         size_t i)
{
    if (i && s.len == prev->len && same_bytes(s.ptr, prev->ptr, s.len)) {
        ids[i] = ids[i - 1];
        return 0;
    }
    *prev = s;
    return smap_add(m, s.ptr, s.len, &ids[i]) < 0 ? CN_ENOMEM : 0;
}

/* Replaces each of ids[0..n), dense ids in m, by the rank of its string in byte order, so
 * rows compare by integers instead of memcmp; *out_by_rank (when wanted, freed by the
 * caller) gets the strings by rank. Returns 0 or CN_ENOMEM. */
static int rank_ids(const struct smap *m, uint32_t *ids, size_t n, struct cn_slice **out_by_rank)
{
    uint32_t *by = malloc((m->n ? m->n : 1) * sizeof(*by));
    uint32_t *rank = malloc((m->n ? m->n : 1) * sizeof(*rank));
    if (!by || !rank) {
        free(by);
        free(rank);
        return CN_ENOMEM;
    }
    for (uint32_t k = 0; k < m->n; k++)
        by[k] = k;
    qsort_r(by, m->n, sizeof(*by), rank_cmp, (void *)m);
    for (uint32_t k = 0; k < m->n; k++)
        rank[by[k]] = k;
    for (size_t i = 0; i < n; i++)
        ids[i] = rank[ids[i]];
    int rc = 0;
    if (out_by_rank) {
        *out_by_rank = malloc((m->n ? m->n : 1) * sizeof(**out_by_rank));
        if (*out_by_rank) {
            for (uint32_t k = 0; k < m->n; k++)
                (*out_by_rank)[k] = m->keys[by[k]];
        } else {
            rc = CN_ENOMEM;
        }
    }
    free(by);
    free(rank);
    return rc;
}

/* Sort key of a row: (service rank, name rank) as one integer, then time, then input index
 * (which makes the order total and the output reproducible). */
struct skey {
    uint64_t g;
    uint64_t t;
    uint32_t idx;
};

static int skey_cmp(const void *pa, const void *pb)
{
    const struct skey *a = pa, *b = pb;
    if (a->g != b->g)
        return a->g < b->g ? -1 : 1;
    if (a->t != b->t)
        return a->t < b->t ? -1 : 1;
    return a->idx < b->idx ? -1 : a->idx > b->idx;
}

/* Sorts k[0..n), whose idx ascend, by (t, idx): a bottom-up merge of its ascending runs of t.
 * A group's rows come from batches that each arrive in time order, so the runs are few and
 * long (a qsort of the whole group ignored them). tmp has room for n keys. */
static void sort_by_time(struct skey *k, size_t n, struct skey *tmp)
{
    struct skey *src = k, *dst = tmp;
    for (size_t merges = 2; merges > 1;) {
        merges = 0;
        for (size_t a = 0; a < n; merges++) {
            /* Two adjacent ascending runs, src[a..m) and src[m..b). Each run covers whole
             * runs of the previous pass, so every idx of the left one is below the right's. */
            size_t m = a + 1, b;
            while (m < n && src[m].t >= src[m - 1].t)
                m++;
            for (b = m < n ? m + 1 : m; b < n && src[b].t >= src[b - 1].t;)
                b++;
            size_t i = a, j = m, o = a;
            while (i < m && j < b) /* on equal t the left key first: its idx is smaller */
                dst[o++] = src[j].t < src[i].t ? src[j++] : src[i++];
            while (i < m)
                dst[o++] = src[i++];
            while (j < b)
                dst[o++] = src[j++];
            a = b;
        }
        struct skey *t = src;
        src = dst;
        dst = t;
    }
    if (src != k)
        memcpy(k, src, n * sizeof(*k));
}

/* Sorts keys[0..n) by (g, t, idx). Groups (service, name) are few: a counting sort by g
 * (stable, so each group stays in input order), then each group by time, which is usually
 * sorted already or made of a few sorted runs (batches arrive roughly in time order). */
static int sort_rows(struct skey *keys, size_t n, uint64_t ngroups)
{
    if (ngroups > 4 * (uint64_t)n + 1024) {
        qsort(keys, n, sizeof(*keys), skey_cmp);
        return 0;
    }
    uint32_t *start = calloc(ngroups + 1, sizeof(*start));
    struct skey *tmp = malloc((n ? n : 1) * sizeof(*tmp));
    if (!start || !tmp) {
        free(start);
        free(tmp);
        return CN_ENOMEM;
    }
    for (size_t i = 0; i < n; i++)
        start[keys[i].g + 1]++;
    for (uint64_t g = 0; g < ngroups; g++)
        start[g + 1] += start[g];
    for (size_t i = 0; i < n; i++)
        tmp[start[keys[i].g]++] = keys[i];
    memcpy(keys, tmp, n * sizeof(*keys));
    for (size_t a = 0; a < n;) {
        size_t b = a + 1, sorted = 1;
        for (; b < n && keys[b].g == keys[a].g; b++)
            if (keys[b].t < keys[b - 1].t)
                sorted = 0;
        if (!sorted) /* indices ascend within the group, so (t, idx) order is total */
            sort_by_time(keys + a, b - a, tmp);
        a = b;
    }
    free(tmp);
    free(start);
    return 0;
}

static uint64_t be64(const uint8_t *p)
{
    uint64_t v;
    memcpy(&v, p, 8);
    return __builtin_bswap64(v);
}

/* A row's trace ID as two integers, for sorting. */
struct tkey {
    uint64_t hi, lo;
    uint32_t row;
    uint32_t idx; /* input index of the row */
};

/* Whether tk[i] (sorted) starts a trace: its ID is not the one before it. */
static inline int new_trace(const struct tkey *tk, size_t i)
{
    return i == 0 || tk[i].hi != tk[i - 1].hi || tk[i].lo != tk[i - 1].lo;
}

static int tkey_cmp(const void *pa, const void *pb)
{
    const struct tkey *a = pa, *b = pb;
    if (a->hi != b->hi)
        return a->hi < b->hi ? -1 : 1;
    if (a->lo != b->lo)
        return a->lo < b->lo ? -1 : 1;
    return a->row < b->row ? -1 : a->row > b->row;
}

/* Sorts k[0..n) (in any order on entry) by (hi, lo, row): a stable LSD radix sort
 * on the top 32 bits of hi, a byte per pass (256 counters: a segment's keys are far fewer
 * than the 65536 of 16-bit digits, which cost more to clear and sum than the keys to
 * move), then each run of equal top bits (mostly the spans of one trace) by the whole key. */
static int sort_trace_keys(struct tkey *k, size_t n)
{
    struct tkey *tmp = malloc((n ? n : 1) * sizeof(*tmp));
    if (!tmp)
        return CN_ENOMEM;
    uint32_t cnt[4][256] = {{0}};
    for (size_t i = 0; i < n; i++) /* the counts of all four digits in one pass */
        for (unsigned d = 0; d < 4; d++)
            cnt[d][(k[i].hi >> (32 + 8 * d)) & 0xff]++;
    struct tkey *src = k, *dst = tmp;
    for (unsigned d = 0; d < 4; d++) {
        uint32_t sum = 0;
        for (size_t b = 0; b < 256; b++) {
            uint32_t c = cnt[d][b];
            cnt[d][b] = sum;
            sum += c;
        }
        unsigned shift = 32 + 8 * d;
        for (size_t i = 0; i < n; i++)
            dst[cnt[d][(src[i].hi >> shift) & 0xff]++] = src[i];
        struct tkey *t = src;
        src = dst;
        dst = t;
    }
    /* Four passes: the result is back in k. */
    free(tmp);
    for (size_t a = 0; a < n;) {
        size_t b = a + 1;
        while (b < n && k[b].hi >> 32 == k[a].hi >> 32)
            b++;
        if (b - a > 1) {
            if (b - a <= 16) {
                for (size_t i = a + 1; i < b; i++) /* insertion sort: stable, short */
                    for (size_t j = i; j > a && tkey_cmp(&k[j - 1], &k[j]) > 0; j--) {
                        struct tkey t = k[j];
                        k[j] = k[j - 1];
                        k[j - 1] = t;
                    }
            } else {
                qsort(k + a, b - a, sizeof(*k), tkey_cmp);
            }
        }
        a = b;
    }
    return 0;
}

/* A span's ID as the key of find_parents' sort. */
struct pkey {
    uint64_t sid;
    uint32_t row;
};

static int pkey_cmp(const void *pa, const void *pb)
{
    const struct pkey *a = pa, *b = pb;
    if (a->sid != b->sid)
        return a->sid < b->sid ? -1 : 1;
    return a->row < b->row ? -1 : a->row > b->row;
}

/* Fills w->parent_row, trace by trace: a parent is looked for among the spans of its own
 * trace (the rows of tk[tstart[k] .. tstart[k + 1]), in row order), whose records lie close
 * together in the batches, rather than in a map of every span of the segment. A trace of
 * up to 32 spans is searched directly; a larger one through its span IDs sorted. */
static int find_parents(struct w *w, const struct tkey *tk)
{
    size_t n1 = w->n ? w->n : 1;
    w->parent_row = malloc(n1 * sizeof(*w->parent_row));
    struct pkey *keys = NULL;
    size_t keys_cap = 0;
    if (!w->parent_row)
        return fail(w, CN_ENOMEM, "out of memory");
    for (size_t r = 0; r < w->n; r++)
        w->parent_row[r] = NO_ROW;
    for (size_t k = 0; k < w->ntids; k++) {
        uint32_t a = w->tstart[k], b = w->tstart[k + 1];
        if (b - a <= 32) {
            /* The trace's span and parent IDs read once, then compared as integers. */
            uint64_t sid[32], pid[32];
            for (uint32_t i = a; i < b; i++) {
                const struct cn_span *sp = w->spans[tk[i].idx];
                if (i + 8 < w->ntrefs) /* fetch ahead, over the next traces too */
                    __builtin_prefetch(w->spans[tk[i + 8].idx]->span_id);
                memcpy(&sid[i - a], sp->span_id, 8);
                memcpy(&pid[i - a], sp->parent_id, 8);
            }
            for (uint32_t i = 0; i < b - a; i++) {
                if (pid[i] == 0) /* a root */
                    continue;
                for (uint32_t j = 0; j < b - a; j++) {
                    if (sid[j] == pid[i]) {
                        w->parent_row[tk[a + i].row] = tk[a + j].row;
                        break;
                    }
                }
            }
            continue;
        }
        if (b - a > keys_cap) {
            free(keys);
            keys_cap = b - a;
            keys = malloc(keys_cap * sizeof(*keys));
            if (!keys)
                return fail(w, CN_ENOMEM, "out of memory");
        }
        for (uint32_t j = a; j < b; j++) {
            keys[j - a].row = tk[j].row;
            memcpy(&keys[j - a].sid, w->spans[tk[j].idx]->span_id, 8);
        }
        qsort(keys, b - a, sizeof(*keys), pkey_cmp);
        for (uint32_t i = a; i < b; i++) {
            const uint8_t *pid = w->spans[tk[i].idx]->parent_id;
            if (cn_id_is_zero(pid, 8))
                continue;
            uint64_t want;
            memcpy(&want, pid, 8);
            size_t lo = 0, hi = b - a; /* the first key >= want */
            while (lo < hi) {
                size_t mid = lo + (hi - lo) / 2;
                if (keys[mid].sid < want)
                    lo = mid + 1;
                else
                    hi = mid;
            }
            if (lo < b - a && keys[lo].sid == want)
                w->parent_row[tk[i].row] = keys[lo].row;
        }
    }
    free(keys);
    return 0;
}

/* Sorts the rows, then builds the trace-ID table and every row's ordinal. */
static int plan(struct w *w)
{
    size_t n1 = w->n ? w->n : 1;
    int spans = w->kind == CN_SEG_SPANS;
    struct skey *keys = malloc(n1 * sizeof(*keys));
    uint32_t *sr = malloc(n1 * sizeof(*sr)), *nr = malloc(n1 * sizeof(*nr));
    struct tkey *tk = malloc(n1 * sizeof(*tk));
    w->order = malloc(n1 * sizeof(*w->order));
    w->ord = calloc(n1, sizeof(*w->ord));
    w->trefs = malloc(n1 * sizeof(*w->trefs));
    struct smap svc = {0}, names = {0};
    int rc = keys && sr && nr && tk && w->order && w->ord && w->trefs ? 0 : CN_ENOMEM;
    /* Everything plan needs of the records but the span IDs (find_parents), in one pass in
     * input order, where they lie in memory: they are scattered over the batches, and a
     * pass per field missed the cache on every record each time. Services and names are
     * interned on the way, then replaced by their ranks. */
    struct cn_slice psvc = {NULL, 0}, pname = {NULL, 0};
    size_t nt = 0;
    w->tmin = w->n ? UINT64_MAX : 0;
    w->tmax = 0;
    for (size_t i = 0; i < w->n && rc == 0; i++) {
        if (spans && i + 8 < w->n) { /* fetch ahead: the lines of a span read below */
            const char *p = (const char *)w->spans[i + 8];
            __builtin_prefetch(p);
            __builtin_prefetch(p + 64);
            __builtin_prefetch(p + sizeof(struct cn_span) - 1);
        }
        if (spans && i + 4 < w->n) /* and its name's bytes, once the span is here */
            __builtin_prefetch(w->spans[i + 4]->name.ptr);
        const struct cn_resource *res;
        const void *scope;
        const uint8_t *tid;
        struct cn_slice name = {NULL, 0};
        uint64_t t;
        if (spans) {
            const struct cn_span *sp = w->spans[i];
            res = sp->resource;
            scope = sp->scope;
            tid = sp->trace_id;
            name = sp->name;
            t = sp->start_ns;
        } else {
            const struct cn_log *lg = w->logs[i];
            res = lg->resource;
            scope = lg->scope;
            tid = lg->trace_id;
            t = lg->time_ns;
        }
        if (!res || !scope) {
            rc = fail(w, CN_EINVAL, "record %zu has no %s", i, res ? "scope" : "resource");
            break;
        }
        rc = intern(&svc, res->service, &psvc, sr, i);
        if (rc == 0)
            rc = intern(&names, name, &pname, nr, i);
        keys[i].t = t;
        keys[i].idx = (uint32_t)i;
        w->tmin = CN_MIN(w->tmin, t);
        w->tmax = CN_MAX(w->tmax, t);
        if (!cn_id_is_zero(tid, 16))
            tk[nt++] = (struct tkey){be64(tid), be64(tid + 8), 0, (uint32_t)i};
    }
    if (rc == 0 && (rank_ids(&svc, sr, w->n, spans ? &w->svc_by_rank : NULL) != 0 ||
                    rank_ids(&names, nr, w->n, spans ? &w->name_by_rank : NULL) != 0))
        rc = CN_ENOMEM;
    uint64_t nnames = names.n ? names.n : 1;
    if (rc == 0) {
        for (size_t i = 0; i < w->n; i++)
            keys[i].g = sr[i] * nnames + nr[i];
        rc = sort_rows(keys, w->n, (svc.n ? svc.n : 1) * nnames);
    }
    free(sr);
    free(nr);
    uint32_t nranks = CN_MAX(svc.n, names.n);
    smap_release(&svc);
    smap_release(&names);
    if (rc) {
        free(keys);
        free(tk);
        return rc == CN_ENOMEM ? fail(w, rc, "out of memory") : rc;
    }
    for (size_t r = 0; r < w->n; r++)
        w->order[r] = keys[r].idx;
    if (spans) {
        w->nnames = nnames;
        w->nranks = nranks;
        w->grp = malloc(n1 * sizeof(*w->grp));
        w->rank_loc = malloc((nranks ? nranks : 1) * sizeof(*w->rank_loc));
        w->rank_stamp = calloc(nranks ? nranks : 1, sizeof(*w->rank_stamp));
        if (!w->grp || !w->rank_loc || !w->rank_stamp) {
            free(keys);
            free(tk);
            return fail(w, CN_ENOMEM, "out of memory");
        }
        for (size_t r = 0; r < w->n; r++)
            w->grp[r] = keys[r].g;
    }
    free(keys);

    /* The trace keys were taken in input order; each gets its row now. */
    uint32_t *rowof = malloc(n1 * sizeof(*rowof));
    if (!rowof) {
        free(tk);
        return fail(w, CN_ENOMEM, "out of memory");
    }
    for (size_t r = 0; r < w->n; r++)
        rowof[w->order[r]] = (uint32_t)r;
    for (size_t k = 0; k < nt; k++)
        tk[k].row = rowof[tk[k].idx];
    free(rowof);
    if (sort_trace_keys(tk, nt) != 0) {
        free(tk);
        return fail(w, CN_ENOMEM, "out of memory");
    }
    /* The distinct IDs are written back from their keys, not read again from the records
     * (a cache miss each, in trace order). */
    size_t nd = 0;
    for (size_t i = 0; i < nt; i++)
        nd += new_trace(tk, i);
    w->tids = malloc((nd ? nd : 1) * sizeof(*w->tids));
    if (!w->tids) {
        free(tk);
        return fail(w, CN_ENOMEM, "out of memory");
    }
    for (size_t i = 0, k = 0; i < nt; i++) {
        if (new_trace(tk, i)) {
            uint64_t hi = __builtin_bswap64(tk[i].hi), lo = __builtin_bswap64(tk[i].lo);
            memcpy(w->tids[k], &hi, 8);
            memcpy(w->tids[k] + 8, &lo, 8);
            k++;
        }
        w->trefs[i] = (struct tref){w->tids[k - 1], tk[i].row};
    }
    w->ntrefs = nt;
    w->tstart = malloc((w->ntrefs + 1) * sizeof(*w->tstart));
    if (!w->tstart) {
        free(tk);
        return fail(w, CN_ENOMEM, "out of memory");
    }
    for (size_t i = 0; i < w->ntrefs; i++) {
        if (new_trace(tk, i))
            w->tstart[w->ntids++] = (uint32_t)i;
        w->ord[w->trefs[i].row] = (uint32_t)w->ntids;
    }
    w->tstart[w->ntids] = (uint32_t)w->ntrefs;
    int rc2 = spans ? find_parents(w, tk) : 0;
    free(tk);
    return rc2;
}

static int index_pages(struct w *w)
{
    struct enc *e = &w->blk;
    size_t npages = (w->ntids + CN_SEG__PAGE_IDS - 1) / CN_SEG__PAGE_IDS;
    put_var(&w->foot, npages);
    for (size_t p = 0; p < npages; p++) {
        size_t k0 = p * CN_SEG__PAGE_IDS, k1 = CN_MIN(w->ntids, k0 + CN_SEG__PAGE_IDS);
        struct bref ids, post;
        for (size_t k = k0; k < k1; k++)
            put(e, w->trefs[w->tstart[k]].id, 16);
        CHECK(emit(w, e, 0, cn_seg__seed(CN_SEG__SEC_IDS, p, 0), "trace-id page", &ids));
        for (size_t k = k0; k < k1; k++) {
            uint32_t a = w->tstart[k], b = w->tstart[k + 1];
            put_var(e, b - a);
            uint32_t prev = 0;
            for (uint32_t i = a; i < b; i++) {
                put_var(e, w->trefs[i].row - prev);
                prev = w->trefs[i].row;
            }
        }
        CHECK(emit(w, e, 1, cn_seg__seed(CN_SEG__SEC_POSTINGS, p, 0), "postings page", &post));
        put(&w->foot, w->trefs[w->tstart[k0]].id, 16);
        put_var(&w->foot, k1 - k0);
        put_ref(&w->foot, &ids);
        put_ref(&w->foot, &post);
    }
    return 0;
}

static int blooms(struct w *w)
{
    struct enc *e = &w->blk;
    struct bref ref;
    uint64_t nbits = cn_seg__bloom_nbits(w->ntids);
    uint8_t *bits = calloc(nbits / 8, 1);
    if (!bits)
        return fail(w, CN_ENOMEM, "out of memory");
    for (size_t k = 0; k < w->ntids; k++)
        cn_seg__bloom_add(bits, nbits, CN_SEG__BLOOM_K,
                          cn_seg__trace_hash(w->trefs[w->tstart[k]].id));
    put(e, bits, nbits / 8);
    free(bits);
    CHECK(emit(w, e, 0, cn_seg__seed(CN_SEG__SEC_TRACE_BLOOM, 0, 0), "trace bloom", &ref));
    put_ref(&w->foot, &ref);
    put_var(&w->foot, nbits);
    put_u8(&w->foot, CN_SEG__BLOOM_K);

    flush_tokens(w);
    uint64_t ntok = w->tokens.n + (uint64_t)w->tokens.zero;
    nbits = cn_seg__bloom_nbits(ntok);
    bits = calloc(nbits / 8, 1);
    if (!bits)
        return fail(w, CN_ENOMEM, "out of memory");
    for (size_t i = 0; w->tokens.tab && i <= w->tokens.mask; i++)
        if (w->tokens.tab[i])
            cn_seg__bloom_add(bits, nbits, CN_SEG__BLOOM_K, w->tokens.tab[i]);
    if (w->tokens.zero)
        cn_seg__bloom_add(bits, nbits, CN_SEG__BLOOM_K, 0);
    put(e, bits, nbits / 8);
    free(bits);
    CHECK(emit(w, e, 0, cn_seg__seed(CN_SEG__SEC_TOKEN_BLOOM, 0, 0), "token bloom", &ref));
    put_ref(&w->foot, &ref);
    put_var(&w->foot, nbits);
    put_u8(&w->foot, CN_SEG__BLOOM_K);
    put_var(&w->foot, ntok);
    return 0;
}

static int footer_and_trailer(struct w *w)
{
    int rc = enc_check(w, &w->foot, "footer");
    if (rc)
        return rc;
    size_t raw = w->foot.b.len;
    size_t bound = ZSTD_compressBound(raw);
    uint8_t *z = malloc(bound);
    if (!z)
        return fail(w, CN_ENOMEM, "out of memory");
    size_t zn = ZSTD_compressCCtx(w->zc, z, bound, w->foot.b.ptr, raw, w->level);
    if (ZSTD_isError(zn) || zn > CN_SEG__MAX_FOOTER || raw > CN_SEG__MAX_FOOTER) {
        free(z);
        return fail(w, CN_ELIMIT, "footer too large (%zu bytes)", raw);
    }
    uint8_t t[CN_SEG_TRAILER];
    cn_seg__put_le64(t, w->off);
    for (int i = 0; i < 4; i++) {
        t[8 + i] = (uint8_t)(zn >> (8 * i));
        t[12 + i] = (uint8_t)(raw >> (8 * i));
    }
    cn_seg__put_le64(t + 16, cn_seg__sum(z, zn, cn_seg__seed(CN_SEG__SEC_FOOTER, 0, 0)));
    memcpy(t + 24, CN_SEG__END_MAGIC, 8);
    rc = out_bytes(w, z, zn);
    free(z);
    if (rc == 0)
        rc = out_bytes(w, t, sizeof(t));
    if (rc == 0)
        rc = flush(w);
    return rc;
}

static int sync_dir(struct w *w, const char *path)
{
    char dir[4096];
    const char *slash = strrchr(path, '/');
    if (!slash)
        snprintf(dir, sizeof(dir), ".");
    else if (slash == path)
        snprintf(dir, sizeof(dir), "/");
    else
        snprintf(dir, sizeof(dir), "%.*s", (int)(slash - path), path);
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0 || fsync(fd) != 0) {
        int rc = -errno;
        if (fd >= 0)
            close(fd);
        return fail(w, rc, "cannot sync directory %s: %s", dir, cn_strerror(rc));
    }
    close(fd);
    return 0;
}

static int write_groups(struct w *w)
{
    size_t ngroups = (w->n + w->group_rows - 1) / w->group_rows;
    unsigned ncols = w->kind == CN_SEG_SPANS ? CN_SEG__S_NUM : CN_SEG__L_NUM;
    put_var(&w->foot, w->group_rows);
    put_var(&w->foot, ncols);
    put_var(&w->foot, ngroups);
    struct scratch s;
    int rc = scratch_init(&s, CN_MIN(w->n, (size_t)w->group_rows) + 1, w->kind == CN_SEG_SPANS);
    if (rc)
        rc = fail(w, rc, "out of memory");
    for (size_t g = 0; g < ngroups && rc == 0; g++) {
        size_t r0 = g * w->group_rows, n = CN_MIN((size_t)w->group_rows, w->n - r0);
        struct bref refs[CN_SEG__S_NUM];
        struct gstats st;
        rc = w->kind == CN_SEG_SPANS ? span_group(w, (uint32_t)g, r0, n, &s, refs, &st)
                                     : log_group(w, (uint32_t)g, r0, n, &s, refs, &st);
        if (rc)
            break;
        put_var(&w->foot, n);
        put_var(&w->foot, st.tmin);
        put_var(&w->foot, st.tmax - st.tmin);
        put_var(&w->foot, st.amin);
        put_var(&w->foot, st.amax - st.amin);
        for (unsigned c = 0; c < ncols; c++)
            put_ref(&w->foot, &refs[c]);
    }
    scratch_release(&s);
    return rc;
}

static int write_seg(unsigned kind, const char *path, const void *const *recs, size_t n,
                     const struct cn_seg_write_opts *opts, struct cn_seg_info *out_info, char *err,
                     size_t err_len)
{
    struct w w0 = {0}, *w = &w0;
    w->kind = kind;
    w->n = n;
    w->path = path;
    w->err = err;
    w->err_len = err_len;
    w->fd = -1;
    if (err && err_len)
        err[0] = '\0';
    if (kind == CN_SEG_SPANS)
        w->spans = (const struct cn_span *const *)recs;
    else
        w->logs = (const struct cn_log *const *)recs;
    w->level = opts && opts->level ? opts->level : CN_SEG_LEVEL;
    w->group_rows = opts && opts->group_rows ? opts->group_rows : CN_SEG_GROUP_ROWS;
    w->uncompressed = opts && opts->uncompressed;
    if (w->group_rows > CN_SEG_MAX_GROUP)
        return fail(w, CN_EINVAL, "group_rows %u above %u", w->group_rows, CN_SEG_MAX_GROUP);
    if (w->level < ZSTD_minCLevel() || w->level > ZSTD_maxCLevel())
        return fail(w, CN_EINVAL, "zstd level %d out of range", w->level);
    if (n > CN_SEG_MAX_ROWS)
        return fail(w, CN_EINVAL, "%zu records: more than %u per segment", n, CN_SEG_MAX_ROWS);

    char tmp[4096];
    if ((size_t)snprintf(tmp, sizeof(tmp), "%s.tmp", path) >= sizeof(tmp))
        return fail(w, CN_EINVAL, "path too long");
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    uint64_t created = (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
    enc_init(&w->blk);
    enc_init(&w->foot);
    cn_arena_init(&w->resources.keys, 16 << 10, SIZE_MAX);
    cn_arena_init(&w->scopes.keys, 16 << 10, SIZE_MAX);
    cn_buf_init(&w->out, FLUSH_BYTES * 2);
    /* Blocks gather here until a flush: room for them all up front, not grown (and copied)
     * by doubling. */
    int oom = cn_buf_reserve(&w->out, FLUSH_BYTES);
    w->zc = oom ? NULL : ZSTD_createCCtx();
    int made_tmp = 0;
    /* plan reads the records first: a record without a resource or scope fails there. */
    int rc = w->zc ? plan(w) : fail(w, CN_ENOMEM, "out of memory");
    if (rc)
        goto done;
    w->fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0640);
    if (w->fd < 0) {
        rc = -errno;
        fail(w, rc, "cannot create %s: %s", tmp, cn_strerror(rc));
        goto done;
    }
    made_tmp = 1;
    uint8_t hdr[CN_SEG_HEADER] = {0};
    memcpy(hdr, CN_SEG__MAGIC, 8);
    hdr[8] = CN_SEG_VERSION & 0xff;
    hdr[9] = CN_SEG_VERSION >> 8;
    hdr[10] = (uint8_t)kind;
    rc = out_bytes(w, hdr, sizeof(hdr));

    uint64_t tmin = w->tmin, tmax = w->tmax; /* found by plan */
    put_u8(&w->foot, (uint8_t)kind);
    put_var(&w->foot, CN_SEG_VERSION);
    put_var(&w->foot, created);
    put_var(&w->foot, n);
    put_var(&w->foot, w->ntids);
    put_var(&w->foot, tmin);
    put_var(&w->foot, tmax);
    if (rc == 0)
        rc = write_groups(w);
    if (rc == 0)
        rc = index_pages(w);
    if (rc == 0)
        rc = blooms(w);
    if (rc == 0)
        rc = footer_and_trailer(w);
    if (rc == 0 && fsync(w->fd) != 0) {
        rc = -errno;
        fail(w, rc, "fsync failed: %s", cn_strerror(rc));
    }
    if (close(w->fd) != 0 && rc == 0) {
        rc = -errno;
        fail(w, rc, "close failed: %s", cn_strerror(rc));
    }
    w->fd = -1;
    if (rc == 0 && rename(tmp, path) != 0) {
        rc = -errno;
        fail(w, rc, "cannot rename %s into place: %s", tmp, cn_strerror(rc));
    }
    if (rc == 0) {
        made_tmp = 0;
        /* Not durable unless the directory is: then it is not there at all. */
        if ((rc = sync_dir(w, path)) != 0)
            unlink(path);
    }
    if (rc == 0 && out_info) {
        *out_info = (struct cn_seg_info){
            .kind = (uint8_t)kind,
            .rows = n,
            .bytes = w->off,
            .min_ns = tmin,
            .max_ns = tmax,
            .num_traces = w->ntids,
            .num_groups = (uint32_t)((n + w->group_rows - 1) / w->group_rows),
            .created_ns = created,
        };
    }
    if (rc == 0 && opts && opts->trace_cb)
        for (size_t k = 0; k < w->ntids; k++)
            opts->trace_cb(opts->trace_ctx, w->trefs[w->tstart[k]].id);
done:
    if (w->fd >= 0)
        close(w->fd);
    if (rc != 0 && made_tmp)
        unlink(tmp);
    ZSTD_freeCCtx(w->zc);
    free(w->zbuf);
    free(w->order);
    free(w->grp);
    free(w->svc_by_rank);
    free(w->name_by_rank);
    free(w->rank_loc);
    free(w->rank_stamp);
    free(w->ord);
    free(w->trefs);
    free(w->tids);
    free(w->tstart);
    free(w->tokens.tab);
    free(w->indexed.tab);
    cols_release(&w->cols);
    ptab_release(&w->resources);
    ptab_release(&w->scopes);
    free(w->parent_row);
    cn_buf_release(&w->blk.b);
    cn_buf_release(&w->foot.b);
    cn_buf_release(&w->out);
    return rc;
}

int cn_seg_write_spans_opts(const char *path, const struct cn_span *const *spans, size_t n,
                            const struct cn_seg_write_opts *opts, struct cn_seg_info *out_info,
                            char *err, size_t err_len)
{
    return write_seg(CN_SEG_SPANS, path, (const void *const *)spans, n, opts, out_info, err,
                     err_len);
}

int cn_seg_write_logs_opts(const char *path, const struct cn_log *const *logs, size_t n,
                           const struct cn_seg_write_opts *opts, struct cn_seg_info *out_info,
                           char *err, size_t err_len)
{
    return write_seg(CN_SEG_LOGS, path, (const void *const *)logs, n, opts, out_info, err, err_len);
}

int cn_seg_write_spans(const char *path, const struct cn_span *const *spans, size_t n,
                       struct cn_seg_info *out_info, char *err, size_t err_len)
{
    return cn_seg_write_spans_opts(path, spans, n, NULL, out_info, err, err_len);
}

int cn_seg_write_logs(const char *path, const struct cn_log *const *logs, size_t n,
                      struct cn_seg_info *out_info, char *err, size_t err_len)
{
    return cn_seg_write_logs_opts(path, logs, n, NULL, out_info, err, err_len);
}
