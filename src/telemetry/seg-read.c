/* Segment reader: open (trailer, footer), blooms, trace lookup, time scans and the full
 * check. Blocks are read with pread (the cheap columns of a row group in one read, the
 * others in another), checked, and decoded into a per-row-group arena (seg.c); nothing but
 * the footer's tables stays in memory between calls, and the blooms that the bloom cache
 * keeps. */
#define CN_SEG_INTERNAL
#include "telemetry/seg.h"

#include "base/log.h"

#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zstd.h>

#define WINDOW_MAX (64u << 20) /* largest read of a row group's blocks at once */

/* 16 bytes: an open segment keeps one per block (~17 per 1024 spans), so they are most of
 * what it holds in memory besides its blooms. get_ref checks the bounds that make the
 * fields fit (a block decodes to at most CN_SEG__MAX_BLOCK). */
struct bref {
    uint64_t off;
    uint32_t len; /* stored, checksum included */
    unsigned raw : 30;
    unsigned codec : 2;
};
_Static_assert(CN_SEG__MAX_BLOCK < (1u << 30) && CN_SEG__RUN <= 3, "struct bref's widths");

struct rgroup {
    uint32_t rows;
    uint64_t tmin, tmax, amin, amax;
};

struct rpage {
    uint8_t first[16];
    uint32_t count;
};

/* A cache of what segments read from their files (blooms, footer tables): a list, most
 * recently used first, of what is in memory, and its bytes within a budget. */
struct lru_node {
    struct lru_node *prev, *next;
};

struct lru {
    pthread_mutex_t lock;
    struct lru_node *head, *tail;
    size_t bytes, budget;
    uint64_t loads, evictions;
};

#define LRU_INIT(budget)                                                                           \
    {                                                                                              \
        PTHREAD_MUTEX_INITIALIZER, NULL, NULL, 0, (budget), 0, 0                                   \
    }
#define LRU_ENTRY(n, type, member) ((type *)((char *)(n)-offsetof(type, member)))

/* The cache's lock held, here and below. */
static void lru_unlink(struct lru *c, struct lru_node *n)
{
    *(n->prev ? &n->prev->next : &c->head) = n->next;
    *(n->next ? &n->next->prev : &c->tail) = n->prev;
    n->prev = n->next = NULL;
}

static void lru_push(struct lru *c, struct lru_node *n)
{
    n->prev = NULL;
    n->next = c->head;
    *(c->head ? &c->head->prev : &c->tail) = n;
    c->head = n;
}

/* n becomes the most recently used. */
static void lru_touch(struct lru *c, struct lru_node *n)
{
    if (c->head != n) {
        lru_unlink(c, n);
        lru_push(c, n);
    }
}

static void lru_stats(struct lru *c, struct cn_seg_cache_stats *out)
{
    pthread_mutex_lock(&c->lock);
    out->bytes = c->bytes;
    out->budget = c->budget;
    out->loads = c->loads;
    out->evictions = c->evictions;
    pthread_mutex_unlock(&c->lock);
}

/* A bloom of an open segment: read at its first check, kept while the bloom cache has room.
 * Guarded by the cache's lock. */
struct sbloom {
    struct cn_arena mem;  /* the bits, when in memory (mem.used: the bytes counted) */
    const uint8_t *bits;  /* NULL: not in memory */
    struct lru_node node; /* in the cache's list while in memory */
    int damaged;          /* failed its check: every answer is "may" */
};

/* After open everything here is read-only but the atomic flags and counter and the blooms
 * (under the bloom cache's lock), so reads may run concurrently. Blocks are numbered: column c of
 * group g is g * ncols + c, then the IDs and postings blocks of each page (two per page), then the
 * trace bloom and the token bloom. */
struct cn_seg {
    char *path;
    int fd;             /* -1 for an image in memory */
    const uint8_t *mem; /* the image, or NULL */
    unsigned flags;
    struct cn_seg_info info;
    uint32_t ncols;
    uint32_t group_rows;
    uint32_t npages;
    /* The footer's tables: in memory while a read uses them (ft_users), and after it while
     * the footer cache has room (see foot_get). Always for an image in memory. */
    struct rgroup *groups;
    struct rpage *pages;
    struct bref *refs;
    size_t nblocks;
    uint64_t tbits, kbits;
    unsigned tk, kk;
    struct bref bloom_refs[2]; /* kept: a bloom is read without the footer's tables */
    uint64_t foff, fsum;       /* the footer, to read it again */
    uint32_t flen, fraw;
    /* Guarded by the footer cache's lock: */
    size_t ft_bytes;             /* the tables' bytes */
    unsigned ft_users;           /* reads using them now */
    struct lru_node ft_node;     /* in the cache's list while in memory, not an image */
    int ft_in;                   /* the tables are in the cache (counted, listed) */
    int ft_failed;               /* reading them again failed (logged once) */
    struct sbloom bl[2];         /* the trace bloom, the token bloom */
    _Atomic(atomic_uchar *) bad; /* per block: found damaged (and logged); NULL until one is */
    atomic_uint_fast64_t corrupt;
};

/* Decompression contexts (~94 KiB each) are kept between calls per thread, not per segment:
 * one kept in each segment a search had read stayed for as long as the segment was open,
 * 94 KiB times every segment of the retention. A thread keeps one; a second one in use at
 * once (two cursors) is freed when put back. */
static pthread_key_t dctx_key;
static pthread_once_t dctx_once = PTHREAD_ONCE_INIT;
static int dctx_key_ok;
static atomic_size_t dctx_live;

static void dctx_free(void *p)
{
    if (p) {
        ZSTD_freeDCtx(p);
        atomic_fetch_sub(&dctx_live, 1);
    }
}

static void dctx_key_init(void)
{
    dctx_key_ok = pthread_key_create(&dctx_key, dctx_free) == 0;
}

static ZSTD_DCtx *dctx_get(void)
{
    pthread_once(&dctx_once, dctx_key_init);
    ZSTD_DCtx *dc = dctx_key_ok ? pthread_getspecific(dctx_key) : NULL;
    if (dc) {
        pthread_setspecific(dctx_key, NULL);
        return dc;
    }
    dc = ZSTD_createDCtx();
    if (dc)
        atomic_fetch_add(&dctx_live, 1);
    return dc;
}

static void dctx_put(ZSTD_DCtx *dc)
{
    if (!dc)
        return;
    if (dctx_key_ok && !pthread_getspecific(dctx_key) && pthread_setspecific(dctx_key, dc) == 0)
        return;
    dctx_free(dc);
}

size_t cn_seg_dctx_live(void)
{
    return atomic_load(&dctx_live);
}

static void *alloc(struct cn_arena *a, uint64_t count, size_t size)
{
    if (count > (SIZE_MAX >> 1) / size)
        return NULL;
    return cn_arena_alloc(a, count ? count * size : 1);
}

/* ---- blocks ------------------------------------------------------------------------------ */

static size_t group_block(const struct cn_seg *seg, uint32_t g, unsigned c)
{
    return (size_t)g * seg->ncols + c;
}

static size_t page_block(const struct cn_seg *seg, uint32_t p, int postings)
{
    return (size_t)seg->info.num_groups * seg->ncols + 2 * (size_t)p + (postings ? 1 : 0);
}

static size_t bloom_block(const struct cn_seg *seg, int token)
{
    return (size_t)seg->info.num_groups * seg->ncols + 2 * (size_t)seg->npages + (token ? 1 : 0);
}

/* Block b's place: the blooms' are kept apart from the footer's tables. */
static const struct bref *ref_of(const struct cn_seg *seg, size_t b)
{
    size_t first = bloom_block(seg, 0);
    return b >= first ? &seg->bloom_refs[b - first] : &seg->refs[b];
}

/* The damaged-block flags, made at the first damaged block. NULL: out of memory. */
static atomic_uchar *bad_flags(struct cn_seg *seg)
{
    atomic_uchar *f = atomic_load(&seg->bad);
    if (f)
        return f;
    atomic_uchar *n = calloc(seg->nblocks ? seg->nblocks : 1, sizeof(*n));
    atomic_uchar *none = NULL;
    if (n && !atomic_compare_exchange_strong(&seg->bad, &none, n)) {
        free(n);
        return none; /* another thread's */
    }
    return n;
}

static int is_bad(const struct cn_seg *seg, size_t b)
{
    atomic_uchar *f = atomic_load(&((struct cn_seg *)seg)->bad);
    return f && atomic_load(&f[b]);
}

static uint64_t block_seed(const struct cn_seg *seg, size_t b)
{
    size_t ng = (size_t)seg->info.num_groups * seg->ncols;
    if (b < ng)
        return cn_seg__seed(CN_SEG__SEC_GROUP, b / seg->ncols, (unsigned)(b % seg->ncols));
    b -= ng;
    if (b < 2 * (size_t)seg->npages)
        return cn_seg__seed(b % 2 ? CN_SEG__SEC_POSTINGS : CN_SEG__SEC_IDS, b / 2, 0);
    b -= 2 * (size_t)seg->npages;
    return cn_seg__seed(b == 0 ? CN_SEG__SEC_TRACE_BLOOM : CN_SEG__SEC_TOKEN_BLOOM, 0, 0);
}

static void block_name(const struct cn_seg *seg, size_t b, char *dst, size_t len)
{
    size_t ng = (size_t)seg->info.num_groups * seg->ncols;
    if (b < ng) {
        snprintf(dst, len, "group:%zu/%s", b / seg->ncols,
                 cn_seg__col_name(seg->info.kind, (unsigned)(b % seg->ncols)));
        return;
    }
    b -= ng;
    if (b < 2 * (size_t)seg->npages) {
        snprintf(dst, len, "%s:%zu", b % 2 ? "postings" : "trace-ids", b / 2);
        return;
    }
    b -= 2 * (size_t)seg->npages;
    snprintf(dst, len, "%s", b == 0 ? "trace-bloom" : "token-bloom");
}

/* Marks block b damaged: counted and logged the first time. Returns CN_EIO. */
static int damaged(struct cn_seg *seg, size_t b, const char *why)
{
    atomic_uchar *f = bad_flags(seg); /* without it (out of memory), counted each time */
    if (!f || atomic_exchange(&f[b], 1) == 0) {
        atomic_fetch_add(&seg->corrupt, 1);
        char name[64];
        block_name(seg, b, name, sizeof(name));
        cn_error("telemetry", "corrupt segment block", "file=%s block=%s offset=%llu error=\"%s\"",
                 seg->path, name, (unsigned long long)ref_of(seg, b)->off, why);
    }
    return CN_EIO;
}

static int pread_all(int fd, void *dst, size_t n, uint64_t off)
{
    uint8_t *p = dst;
    while (n) {
        ssize_t k = pread(fd, p, n, (off_t)off);
        if (k < 0 && errno == EINTR)
            continue;
        if (k < 0)
            return -errno;
        if (k == 0)
            return CN_EIO;
        p += k;
        n -= (size_t)k;
        off += (uint64_t)k;
    }
    return 0;
}

/* Bytes of the file already read: [off, off + len) at p. */
struct window {
    const uint8_t *p;
    uint64_t off, len;
};

/* Reads, checks and decodes block b into a's memory: *out_p / *out_len. The stored bytes
 * come from the image, from win when it covers them, or from a pread. Returns 0, CN_EIO
 * (damaged, now or before), CN_ENOMEM. */
static int load_block(struct cn_seg *seg, size_t b, ZSTD_DCtx *dc, struct cn_arena *a,
                      const struct window *win, const uint8_t **out_p, size_t *out_len)
{
    if (is_bad(seg, b))
        return CN_EIO;
    const struct bref *r = ref_of(seg, b);
    const uint8_t *stored;
    uint8_t *tmp = NULL;
    if (seg->mem) {
        stored = seg->mem + r->off;
    } else if (win && win->p && r->off >= win->off && r->off + r->len <= win->off + win->len) {
        stored = win->p + (r->off - win->off);
    } else {
        /* Raw blocks are used where they are read: straight into the arena. */
        tmp = r->codec == CN_SEG__RAW ? cn_arena_alloc(a, r->len) : malloc(r->len);
        if (!tmp)
            return CN_ENOMEM;
        int rc = pread_all(seg->fd, tmp, r->len, r->off);
        if (rc) {
            if (r->codec != CN_SEG__RAW)
                free(tmp);
            return damaged(seg, b, rc == CN_EIO ? "short read" : cn_strerror(rc));
        }
        stored = tmp;
    }
    size_t plen = r->len - 8;
    int rc = 0;
    const char *why = NULL;
    if (!(seg->flags & CN_SEG_OPEN_UNVERIFIED) &&
        cn_seg__le64(stored + plen) != cn_seg__sum(stored, plen, block_seed(seg, b))) {
        why = "checksum mismatch";
    } else if (r->codec == CN_SEG__RAW) {
        *out_p = stored; /* the image, the window and tmp all outlive the caller's use */
        *out_len = plen;
        return 0;
    } else if (r->codec == CN_SEG__RUN) {
        /* The bytes before the run, then the run's byte up to the decoded size (get_ref
         * checked that 1 <= plen <= raw + 1). */
        uint8_t *dst = cn_arena_alloc(a, r->raw ? r->raw : 1);
        if (!dst) {
            rc = CN_ENOMEM;
        } else {
            memcpy(dst, stored, plen - 1);
            memset(dst + plen - 1, stored[plen - 1], r->raw - (plen - 1));
            *out_p = dst;
            *out_len = r->raw;
        }
    } else {
        uint8_t *dst = cn_arena_alloc(a, r->raw ? r->raw : 1);
        if (!dst) {
            rc = CN_ENOMEM;
        } else {
            size_t n = ZSTD_decompressDCtx(dc, dst, r->raw, stored, plen);
            if (ZSTD_isError(n))
                why = ZSTD_getErrorName(n);
            else if (n != r->raw)
                why = "decoded size differs from the footer's";
            *out_p = dst;
            *out_len = r->raw;
        }
    }
    if (tmp && r->codec != CN_SEG__RAW)
        free(tmp);
    if (why)
        return damaged(seg, b, why);
    return rc;
}

/* ---- open -------------------------------------------------------------------------------- */

static int open_fail(char *err, size_t err_len, int rc, const char *path, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));

static int open_fail(char *err, size_t err_len, int rc, const char *path, const char *fmt, ...)
{
    if (err && err_len) {
        int n = snprintf(err, err_len, "%s: ", path);
        if (n >= 0 && (size_t)n < err_len) {
            va_list ap;
            va_start(ap, fmt);
            vsnprintf(err + n, err_len - (size_t)n, fmt, ap);
            va_end(ap);
        }
    }
    return rc;
}

static int get_ref(struct cn_seg__cur *c, uint64_t limit, struct bref *r)
{
    uint64_t off = cn_seg__get_var(c), len = cn_seg__get_var(c), raw = cn_seg__get_var(c);
    uint8_t codec = cn_seg__get_u8(c);
    /* Stored bytes are at most the decoded ones (a block compressed is written only when
     * that made it smaller; a run block holds at least its last byte and at most one byte
     * more than it decodes to), so both fit the widths of struct bref. */
    if (c->bad || off < CN_SEG_HEADER || len < 8 || off > limit || len > limit - off ||
        raw > CN_SEG__MAX_BLOCK || len - 8 > CN_SEG__MAX_BLOCK || codec > CN_SEG__RUN ||
        (codec == CN_SEG__RAW && raw != len - 8) ||
        (codec == CN_SEG__RUN && (len - 8 < 1 || len - 8 > raw + 1)))
        return -1;
    *r = (struct bref){off, (uint32_t)len, (unsigned)raw, codec};
    return 0;
}

/* Parses the footer; returns NULL or what is wrong. */
static const char *parse_footer(struct cn_seg *seg, const uint8_t *p, size_t len, uint64_t limit,
                                unsigned kind)
{
    struct cn_seg__cur c = {p, p + len, 0};
    struct cn_seg_info *in = &seg->info;
    if (cn_seg__get_u8(&c) != kind)
        return "kind differs from the header's";
    if (cn_seg__get_var(&c) != CN_SEG_VERSION)
        return "version differs from the header's";
    in->kind = (uint8_t)kind;
    in->created_ns = cn_seg__get_var(&c);
    in->rows = cn_seg__get_var(&c);
    in->num_traces = cn_seg__get_var(&c);
    in->min_ns = cn_seg__get_var(&c);
    in->max_ns = cn_seg__get_var(&c);
    uint64_t group_rows = cn_seg__get_var(&c);
    uint64_t ncols = cn_seg__get_var(&c);
    uint64_t ngroups = cn_seg__get_var(&c);
    if (c.bad)
        return "truncated";
    if (in->rows > CN_SEG_MAX_ROWS || in->num_traces > in->rows || in->min_ns > in->max_ns)
        return "bad row or trace count";
    if (group_rows == 0 || group_rows > CN_SEG_MAX_GROUP)
        return "bad row group size";
    if (ncols != (kind == CN_SEG_SPANS ? CN_SEG__S_NUM : CN_SEG__L_NUM))
        return "bad column count";
    seg->group_rows = (uint32_t)group_rows;
    seg->ncols = (uint32_t)ncols;
    /* Each row group takes at least 5 + 4 * ncols bytes here, each index page 25: claims
     * past that are refused before anything is allocated for them. */
    uint64_t npages = (in->num_traces + CN_SEG__PAGE_IDS - 1) / CN_SEG__PAGE_IDS;
    if (ngroups != (in->rows + seg->group_rows - 1) / seg->group_rows ||
        ngroups > cn_seg__left(&c) / (5 + 4 * ncols) || npages > cn_seg__left(&c) / 25)
        return "bad row group count";
    in->num_groups = (uint32_t)ngroups;
    seg->npages = (uint32_t)npages;
    seg->nblocks = ngroups * seg->ncols + 2 * npages + 2;
    seg->groups = calloc(ngroups ? ngroups : 1, sizeof(*seg->groups));
    seg->pages = calloc(npages ? npages : 1, sizeof(*seg->pages));
    seg->refs = calloc(seg->nblocks, sizeof(*seg->refs));
    if (!seg->groups || !seg->pages || !seg->refs)
        return "out of memory";
    seg->ft_bytes = (ngroups ? ngroups : 1) * sizeof(*seg->groups) +
                    (npages ? npages : 1) * sizeof(*seg->pages) + seg->nblocks * sizeof(*seg->refs);
    for (uint32_t g = 0; g < ngroups; g++) {
        struct rgroup *gr = &seg->groups[g];
        uint64_t rows = cn_seg__get_var(&c);
        uint64_t want =
            g + 1 < ngroups ? seg->group_rows : in->rows - (uint64_t)g * seg->group_rows;
        if (rows != want)
            return "row group sizes do not add up";
        gr->rows = (uint32_t)rows;
        gr->tmin = cn_seg__get_var(&c);
        uint64_t dt = cn_seg__get_var(&c);
        gr->amin = cn_seg__get_var(&c);
        uint64_t da = cn_seg__get_var(&c);
        if (dt > UINT64_MAX - gr->tmin || da > UINT64_MAX - gr->amin)
            return "bad row group statistics";
        gr->tmax = gr->tmin + dt;
        gr->amax = gr->amin + da;
        if (gr->tmin < in->min_ns || gr->tmax > in->max_ns)
            return "row group time outside the segment's";
        for (unsigned col = 0; col < seg->ncols; col++)
            if (get_ref(&c, limit, &seg->refs[group_block(seg, g, col)]))
                return "bad block reference";
    }
    if (cn_seg__get_var(&c) != npages)
        return "bad index page count";
    for (uint32_t p = 0; p < npages; p++) {
        const uint8_t *first = cn_seg__get_raw(&c, 16);
        uint64_t count = cn_seg__get_var(&c);
        uint64_t want =
            p + 1 < npages ? CN_SEG__PAGE_IDS : in->num_traces - (uint64_t)p * CN_SEG__PAGE_IDS;
        if (!first || count != want)
            return "index page sizes do not add up";
        memcpy(seg->pages[p].first, first, 16);
        seg->pages[p].count = (uint32_t)count;
        if (p && memcmp(seg->pages[p - 1].first, first, 16) >= 0)
            return "index pages out of order";
        struct bref *ids = &seg->refs[page_block(seg, p, 0)];
        if (get_ref(&c, limit, ids) || get_ref(&c, limit, &seg->refs[page_block(seg, p, 1)]))
            return "bad block reference";
        if (ids->raw != count * 16)
            return "bad trace-id page size";
    }
    for (int t = 0; t < 2; t++) {
        struct bref *r = &seg->refs[bloom_block(seg, t)];
        if (get_ref(&c, limit, r))
            return "bad block reference";
        uint64_t bits = cn_seg__get_var(&c);
        unsigned k = cn_seg__get_u8(&c);
        if (bits == 0 || bits % 64 || r->raw != bits / 8 || k == 0 || k > 16)
            return "bad bloom filter";
        seg->bloom_refs[t] = *r;
        if (t) {
            seg->kbits = bits;
            seg->kk = k;
            cn_seg__get_var(&c); /* distinct tokens: informative */
        } else {
            seg->tbits = bits;
            seg->tk = k;
        }
    }
    if (c.bad)
        return "truncated";
    if (c.p != c.e)
        return "trailing bytes";
    return NULL;
}

/* Reads, checks and parses the footer that src's trailer points to (src->foff...) into dst
 * (src itself at open; a scratch segment when the tables are read again). */
static int read_footer(const struct cn_seg *src, struct cn_seg *dst, char *err, size_t err_len)
{
    const char *path = src->path;
    uint32_t flen = src->flen, fraw = src->fraw;
    int rc = 0;
    uint8_t *fz = NULL, *fd = malloc(fraw ? fraw : 1);
    const uint8_t *stored;
    if (src->mem) {
        stored = src->mem + src->foff;
    } else {
        fz = malloc(flen);
        rc = fz ? pread_all(src->fd, fz, flen, src->foff) : CN_ENOMEM;
        stored = fz;
    }
    if (!fd)
        rc = CN_ENOMEM;
    if (rc) {
        free(fz);
        free(fd);
        return open_fail(err, err_len, rc, path, "cannot read the footer: %s", cn_strerror(rc));
    }
    uint64_t sum = cn_seg__sum(stored, flen, cn_seg__seed(CN_SEG__SEC_FOOTER, 0, 0));
    if (!(src->flags & CN_SEG_OPEN_UNVERIFIED) && sum != src->fsum) {
        free(fz);
        free(fd);
        return open_fail(err, err_len, CN_EIO, path,
                         "footer checksum mismatch (stored %016llx, computed %016llx)",
                         (unsigned long long)src->fsum, (unsigned long long)sum);
    }
    ZSTD_DCtx *dc = dctx_get();
    size_t n = dc ? ZSTD_decompressDCtx(dc, fd, fraw, stored, flen) : 0;
    free(fz);
    dctx_put(dc);
    if (!dc || ZSTD_isError(n) || n != fraw) {
        free(fd);
        return open_fail(err, err_len, dc ? CN_EIO : CN_ENOMEM, path,
                         "footer cannot be decoded%s%s", dc && ZSTD_isError(n) ? ": " : "",
                         dc && ZSTD_isError(n) ? ZSTD_getErrorName(n) : "");
    }
    const char *why = parse_footer(dst, fd, fraw, src->foff, src->info.kind);
    free(fd);
    if (why)
        return open_fail(err, err_len, strcmp(why, "out of memory") ? CN_EIO : CN_ENOMEM, path,
                         "footer malformed: %s", why);
    return 0;
}

static void foot_cached(struct cn_seg *seg);

static int open_any(struct cn_seg *seg, uint64_t size, char *err, size_t err_len)
{
    const char *path = seg->path;
    uint8_t hdr[CN_SEG_HEADER], tr[CN_SEG_TRAILER];
    if (size < CN_SEG_HEADER + CN_SEG_TRAILER)
        return open_fail(err, err_len, CN_EIO, path, "too short for a segment (%llu bytes)",
                         (unsigned long long)size);
    int rc = 0;
    if (seg->mem) {
        memcpy(hdr, seg->mem, sizeof(hdr));
        memcpy(tr, seg->mem + size - CN_SEG_TRAILER, sizeof(tr));
    } else {
        rc = pread_all(seg->fd, hdr, sizeof(hdr), 0);
        if (rc == 0)
            rc = pread_all(seg->fd, tr, sizeof(tr), size - CN_SEG_TRAILER);
        if (rc)
            return open_fail(err, err_len, rc, path, "cannot read: %s", cn_strerror(rc));
    }
    if (memcmp(hdr, CN_SEG__MAGIC, 8) != 0)
        return open_fail(err, err_len, CN_ESYNTAX, path, "not a segment file (bad magic)");
    unsigned version = hdr[8] | (unsigned)hdr[9] << 8, kind = hdr[10];
    if (version != CN_SEG_VERSION)
        return open_fail(err, err_len, CN_ESYNTAX, path, "unsupported segment version %u", version);
    if (kind != CN_SEG_SPANS && kind != CN_SEG_LOGS)
        return open_fail(err, err_len, CN_ESYNTAX, path, "unknown segment kind %u", kind);
    if (memcmp(tr + 24, CN_SEG__END_MAGIC, 8) != 0)
        return open_fail(err, err_len, CN_EIO, path,
                         "trailer magic missing: file truncated or not fully written");
    uint64_t foff = cn_seg__le64(tr);
    uint32_t flen = cn_seg__le32(tr + 8), fraw = cn_seg__le32(tr + 12);
    uint64_t limit = size - CN_SEG_TRAILER;
    if (foff < CN_SEG_HEADER || foff > limit || limit - foff != flen || flen == 0 ||
        flen > CN_SEG__MAX_FOOTER || fraw > CN_SEG__MAX_FOOTER)
        return open_fail(err, err_len, CN_EIO, path,
                         "footer out of bounds (offset %llu, %u bytes, file %llu bytes)",
                         (unsigned long long)foff, flen, (unsigned long long)size);
    seg->foff = foff;
    seg->flen = flen;
    seg->fraw = fraw;
    seg->fsum = cn_seg__le64(tr + 16);
    seg->info.kind = (uint8_t)kind;
    rc = read_footer(seg, seg, err, err_len);
    if (rc)
        return rc;
    seg->info.bytes = size;
    foot_cached(seg);
    return 0;
}

/* ---- footer cache ------------------------------------------------------------------------ */

/* The footer's tables of every open segment (not images in memory), most recently used
 * first: read at open, then dropped past the budget when no read uses them, and read again
 * (checked as at open) by the next read that needs them. */
static struct lru fcache = LRU_INIT(CN_SEG_FOOTER_CACHE);

static void ft_free_tables(struct cn_seg *s)
{
    free(s->groups);
    free(s->pages);
    free(s->refs);
    s->groups = NULL;
    s->pages = NULL;
    s->refs = NULL;
}

/* Cache lock held: drops the least recently used tables no read uses until the budget holds. */
static void ft_trim(void)
{
    for (struct lru_node *n = fcache.tail, *prev; n && fcache.bytes > fcache.budget; n = prev) {
        prev = n->prev;
        struct cn_seg *s = LRU_ENTRY(n, struct cn_seg, ft_node);
        if (s->ft_users)
            continue;
        lru_unlink(&fcache, n);
        fcache.bytes -= s->ft_bytes;
        s->ft_in = 0;
        ft_free_tables(s);
        fcache.evictions++;
    }
}

/* At open: the tables just read join the cache. */
static void foot_cached(struct cn_seg *seg)
{
    if (seg->mem)
        return;
    pthread_mutex_lock(&fcache.lock);
    fcache.bytes += seg->ft_bytes;
    seg->ft_in = 1;
    lru_push(&fcache, &seg->ft_node);
    ft_trim();
    pthread_mutex_unlock(&fcache.lock);
}

/* Makes the footer's tables of seg usable until foot_put: reads them again when they were
 * dropped. Returns 0, CN_EIO (the footer no longer reads as at open: logged once, counted),
 * CN_ENOMEM. */
static int foot_get(struct cn_seg *seg)
{
    if (seg->mem)
        return 0;
    pthread_mutex_lock(&fcache.lock);
    if (seg->refs) {
        seg->ft_users++;
        lru_touch(&fcache, &seg->ft_node);
        pthread_mutex_unlock(&fcache.lock);
        return 0;
    }
    pthread_mutex_unlock(&fcache.lock);
    /* Read without the lock; another thread may read them meanwhile: the first one in stays. */
    struct cn_seg *tmp = calloc(1, sizeof(*tmp));
    char err[512] = "";
    int rc = tmp ? read_footer(seg, tmp, err, sizeof(err)) : CN_ENOMEM;
    if (rc == 0 && (tmp->nblocks != seg->nblocks || tmp->info.rows != seg->info.rows ||
                    tmp->npages != seg->npages)) {
        snprintf(err, sizeof(err), "%s: footer differs from the one read at open", seg->path);
        rc = CN_EIO;
    }
    pthread_mutex_lock(&fcache.lock);
    if (rc == 0 && !seg->refs) {
        seg->groups = tmp->groups;
        seg->pages = tmp->pages;
        seg->refs = tmp->refs;
        tmp->groups = NULL;
        tmp->pages = NULL;
        tmp->refs = NULL;
        fcache.bytes += seg->ft_bytes;
        fcache.loads++;
        seg->ft_in = 1;
        lru_push(&fcache, &seg->ft_node);
    }
    int log = rc == CN_EIO && !seg->ft_failed;
    if (rc == CN_EIO)
        seg->ft_failed = 1;
    if (rc == 0 || seg->refs) {
        rc = 0;
        seg->ft_users++;
        ft_trim();
    }
    pthread_mutex_unlock(&fcache.lock);
    if (tmp)
        ft_free_tables(tmp);
    free(tmp);
    if (log) {
        atomic_fetch_add(&seg->corrupt, 1);
        cn_error("telemetry", "segment footer unreadable, segment not read", "error=\"%s\"", err);
    }
    return rc;
}

static void foot_put(struct cn_seg *seg)
{
    if (seg->mem)
        return;
    pthread_mutex_lock(&fcache.lock);
    seg->ft_users--;
    ft_trim();
    pthread_mutex_unlock(&fcache.lock);
}

/* At close: the tables leave the cache. */
static void foot_forget(struct cn_seg *seg)
{
    if (seg->mem)
        return;
    pthread_mutex_lock(&fcache.lock);
    if (seg->ft_in) {
        lru_unlink(&fcache, &seg->ft_node);
        fcache.bytes -= seg->ft_bytes;
        seg->ft_in = 0;
    }
    pthread_mutex_unlock(&fcache.lock);
}

void cn_seg_set_footer_cache(size_t bytes)
{
    pthread_mutex_lock(&fcache.lock);
    fcache.budget = bytes;
    ft_trim();
    pthread_mutex_unlock(&fcache.lock);
}

void cn_seg_footer_cache_stats(struct cn_seg_cache_stats *out)
{
    lru_stats(&fcache, out);
}

static void bloom_forget(struct cn_seg *seg);

static struct cn_seg *seg_new(const char *path)
{
    struct cn_seg *seg = calloc(1, sizeof(*seg));
    if (!seg)
        return NULL;
    seg->fd = -1;
    seg->path = strdup(path);
    atomic_init(&seg->corrupt, 0);
    if (!seg->path) {
        free(seg);
        return NULL;
    }
    return seg;
}

int cn_seg_open(struct cn_seg **out_seg, const char *path, char *err, size_t err_len)
{
    if (err && err_len)
        err[0] = '\0';
    struct cn_seg *seg = seg_new(path);
    if (!seg)
        return open_fail(err, err_len, CN_ENOMEM, path, "out of memory");
    seg->fd = open(path, O_RDONLY | O_CLOEXEC);
    struct stat st;
    if (seg->fd < 0 || fstat(seg->fd, &st) != 0) {
        int rc = -errno;
        cn_seg_close(seg);
        return open_fail(err, err_len, rc, path, "cannot open: %s", cn_strerror(rc));
    }
    int rc = open_any(seg, (uint64_t)st.st_size, err, err_len);
    if (rc) {
        cn_seg_close(seg);
        return rc;
    }
    *out_seg = seg;
    return 0;
}

int cn_seg_open_mem(struct cn_seg **out_seg, const void *data, size_t len, unsigned flags,
                    char *err, size_t err_len)
{
    if (err && err_len)
        err[0] = '\0';
    struct cn_seg *seg = seg_new("<memory>");
    if (!seg)
        return open_fail(err, err_len, CN_ENOMEM, "<memory>", "out of memory");
    seg->mem = data;
    seg->flags = flags;
    int rc = open_any(seg, len, err, err_len);
    if (rc) {
        cn_seg_close(seg);
        return rc;
    }
    *out_seg = seg;
    return 0;
}

void cn_seg_close(struct cn_seg *seg)
{
    if (!seg)
        return;
    if (seg->fd >= 0)
        close(seg->fd);
    bloom_forget(seg);
    foot_forget(seg);
    free(seg->path);
    ft_free_tables(seg);
    free(atomic_load(&seg->bad));
    free(seg);
}

const struct cn_seg_info *cn_seg_info(const struct cn_seg *seg)
{
    return &seg->info;
}

const char *cn_seg_path(const struct cn_seg *seg)
{
    return seg->path;
}

uint64_t cn_seg_corrupt_blocks(const struct cn_seg *seg)
{
    return atomic_load(&((struct cn_seg *)seg)->corrupt);
}

static int foot_get(struct cn_seg *seg);
static void foot_put(struct cn_seg *seg);

int cn_seg_block(const struct cn_seg *cseg, size_t i, struct cn_seg_block *out)
{
    struct cn_seg *seg = (struct cn_seg *)cseg;
    if (i >= seg->nblocks)
        return CN_ENOENT;
    int rc = foot_get(seg);
    if (rc)
        return rc;
    block_name(seg, i, out->name, sizeof(out->name));
    const struct bref *r = ref_of(seg, i);
    out->off = r->off;
    out->len = r->len;
    out->raw = r->raw;
    out->codec = r->codec;
    foot_put(seg);
    return 0;
}

/* ---- blooms ------------------------------------------------------------------------------ */

/* The blooms in memory, of every open segment: a segment's two are read at their first
 * check and kept, most recently used first, while their bytes stay within the budget; past
 * it the least recently used go (read again when next checked). One lock, held for a check's
 * few probes too. */
static struct lru bcache = LRU_INIT(CN_SEG_BLOOM_CACHE);

static void bloom_drop(struct sbloom *b)
{
    lru_unlink(&bcache, &b->node);
    bcache.bytes -= b->mem.used;
    cn_arena_release(&b->mem);
    b->bits = NULL;
}

/* Cache lock held: drops the least recently used until the budget holds, but keep. */
static void bloom_trim(const struct sbloom *keep)
{
    while (bcache.bytes > bcache.budget && bcache.tail && (!keep || bcache.tail != &keep->node)) {
        bloom_drop(LRU_ENTRY(bcache.tail, struct sbloom, node));
        bcache.evictions++;
    }
}

static void bloom_forget(struct cn_seg *seg)
{
    pthread_mutex_lock(&bcache.lock);
    for (int t = 0; t < 2; t++)
        if (seg->bl[t].bits)
            bloom_drop(&seg->bl[t]);
    pthread_mutex_unlock(&bcache.lock);
}

void cn_seg_set_bloom_cache(size_t bytes)
{
    pthread_mutex_lock(&bcache.lock);
    bcache.budget = bytes;
    bloom_trim(NULL);
    pthread_mutex_unlock(&bcache.lock);
}

void cn_seg_bloom_cache_stats(struct cn_seg_cache_stats *out)
{
    lru_stats(&bcache, out);
}

/* Returns with the cache's lock held and bloom t of seg in memory, or NULL when it is damaged
 * or cannot be read now (out of memory): "may contain". */
static const struct sbloom *bloom_lock(const struct cn_seg *cseg, int t)
{
    struct cn_seg *seg = (struct cn_seg *)cseg;
    struct sbloom *b = &seg->bl[t];
    pthread_mutex_lock(&bcache.lock);
    if (b->bits) {
        lru_touch(&bcache, &b->node);
        return b;
    }
    if (b->damaged)
        return NULL;
    pthread_mutex_unlock(&bcache.lock);
    /* Read without the lock; another thread may read it meanwhile: the first one in stays. */
    size_t blk = bloom_block(seg, t);
    const struct bref *r = ref_of(seg, blk);
    size_t need = (r->codec == CN_SEG__RAW ? r->len : r->raw) + 16;
    struct cn_arena mem;
    cn_arena_init(&mem, need, SIZE_MAX);
    const uint8_t *bits = NULL;
    size_t len = 0;
    ZSTD_DCtx *dc = r->codec == CN_SEG__ZSTD ? dctx_get() : NULL;
    int rc = r->codec != CN_SEG__ZSTD || dc ? load_block(seg, blk, dc, &mem, NULL, &bits, &len)
                                            : CN_ENOMEM;
    dctx_put(dc);
    pthread_mutex_lock(&bcache.lock);
    if (rc == 0 && !b->bits) {
        b->mem = mem;
        b->bits = bits;
        bcache.bytes += mem.used; /* 0 for an image in memory: the bits are the image's */
        bcache.loads++;
        lru_push(&bcache, &b->node);
        bloom_trim(b);
        return b;
    }
    cn_arena_release(&mem);
    if (b->bits)
        return b;
    if (rc != CN_ENOMEM)
        b->damaged = 1; /* counted and logged by load_block */
    return NULL;
}

int cn_seg_may_contain_trace(const struct cn_seg *seg, const uint8_t id[16])
{
    if (cn_id_is_zero(id, 16) || seg->info.num_traces == 0)
        return 0;
    const struct sbloom *b = bloom_lock(seg, 0);
    int may = !b || cn_seg__bloom_has(b->bits, seg->tbits, seg->tk, cn_seg__trace_hash(id));
    pthread_mutex_unlock(&bcache.lock);
    return may;
}

struct tokq {
    const struct cn_seg *seg;
    const uint8_t *bits;
    int missing;
};

static void token_probe(void *ctx, uint64_t h)
{
    struct tokq *q = ctx;
    if (!cn_seg__bloom_has(q->bits, q->seg->kbits, q->seg->kk, h))
        q->missing = 1;
}

static int token_may(const struct cn_seg *seg, const uint8_t *bits, const char *token, size_t len)
{
    if (len <= CN_SEG_MAX_TOKEN &&
        cn_seg__bloom_has(bits, seg->kbits, seg->kk, cn_seg__token_hash(token, len)))
        return 1;
    struct tokq q = {seg, bits, 0};
    size_t n = cn_seg__tokens(token, len, token_probe, &q);
    if (n)
        return !q.missing;
    /* No token to test: only a whole value could match, and those past CN_SEG_MAX_TOKEN
     * bytes are not in the filter. */
    return len > CN_SEG_MAX_TOKEN;
}

int cn_seg_may_contain_token(const struct cn_seg *seg, const char *token)
{
    size_t len = strlen(token);
    if (len == 0)
        return 1; /* every row holds the empty term */
    const struct sbloom *b = bloom_lock(seg, 1);
    int may = !b || token_may(seg, b->bits, token, len);
    pthread_mutex_unlock(&bcache.lock);
    return may;
}

/* ---- row groups -------------------------------------------------------------------------- */

/* Cheap columns, in decoding order (later ones may use earlier ones). */
static const uint8_t span_cheap[] = {CN_SEG__S_TRACE, CN_SEG__S_SPAN_ID, CN_SEG__S_SERVICE,
                                     CN_SEG__S_NAME,  CN_SEG__S_KIND,    CN_SEG__S_STATUS,
                                     CN_SEG__S_START, CN_SEG__S_DURATION};
static const uint8_t span_rest[] = {CN_SEG__S_PARENT,      CN_SEG__S_STATUS_MSG, CN_SEG__S_FLAGS,
                                    CN_SEG__S_TRACE_STATE, CN_SEG__S_SCOPE,      CN_SEG__S_RESOURCE,
                                    CN_SEG__S_ATTRS,       CN_SEG__S_EVENTS,     CN_SEG__S_LINKS};
static const uint8_t log_cheap[] = {CN_SEG__L_TRACE, CN_SEG__L_SPAN_ID, CN_SEG__L_SERVICE,
                                    CN_SEG__L_TIME,  CN_SEG__L_SEV_NUM, CN_SEG__L_EVENT_NAME};
static const uint8_t log_rest[] = {CN_SEG__L_OBSERVED, CN_SEG__L_SEV_TEXT, CN_SEG__L_BODY,
                                   CN_SEG__L_ATTRS,    CN_SEG__L_FLAGS,    CN_SEG__L_SCOPE,
                                   CN_SEG__L_RESOURCE};

static void group_init(struct cn_seg__group *d, const struct cn_seg *seg, uint32_t g)
{
    cn_seg__group_init(d, seg->info.kind, g, seg->groups[g].rows, seg->group_rows, seg->info.rows,
                       seg->info.num_traces);
}

/* Loads and decodes the cheap columns (rest == 0) or the others (rest == 1) of d. When a
 * block is damaged the stage's other blocks are still read, so all damage is found at
 * once. Returns 0, CN_EIO, CN_ENOMEM. */
static int group_stage(struct cn_seg *seg, ZSTD_DCtx *dc, struct cn_seg__group *d, int rest)
{
    int spans = seg->info.kind == CN_SEG_SPANS;
    const uint8_t *cols = spans ? (rest ? span_rest : span_cheap) : (rest ? log_rest : log_cheap);
    size_t ncols = spans ? (rest ? sizeof(span_rest) : sizeof(span_cheap))
                         : (rest ? sizeof(log_rest) : sizeof(log_cheap));
    /* The stage's blocks are contiguous in the file (cheap columns first): one read. A
     * failed read falls back to reading block by block, which tells which is damaged. */
    struct window win = {NULL, 0, 0};
    if (!seg->mem) {
        const struct bref *lo = &seg->refs[group_block(seg, d->g, cols[0])];
        const struct bref *hi = &seg->refs[group_block(seg, d->g, cols[ncols - 1])];
        if (hi->off + hi->len > lo->off && hi->off + hi->len - lo->off <= WINDOW_MAX) {
            uint8_t *p = cn_arena_alloc(&d->arena, hi->off + hi->len - lo->off);
            if (!p)
                return CN_ENOMEM;
            win = (struct window){p, lo->off, hi->off + hi->len - lo->off};
            if (pread_all(seg->fd, p, win.len, win.off) != 0)
                win.p = NULL;
        }
    }
    int eio = 0;
    for (size_t i = 0; i < ncols; i++) {
        int rc = load_block(seg, group_block(seg, d->g, cols[i]), dc, &d->arena, &win,
                            &d->buf[cols[i]], &d->len[cols[i]]);
        if (rc == CN_EIO)
            eio = 1;
        else if (rc)
            return rc;
    }
    if (eio)
        return CN_EIO;
    for (size_t i = 0; i < ncols; i++) {
        int rc = cn_seg__decode(d, cols[i]);
        if (rc == CN_ESYNTAX)
            return damaged(seg, group_block(seg, d->g, cols[i]), "malformed column");
        if (rc)
            return rc;
    }
    return 0;
}

/* ---- the trace-ID table ------------------------------------------------------------------ */

/* What one read call loads besides row groups: trace-ID pages (for the trace IDs of rows)
 * and span-ID blocks of other groups (for parents referenced there), kept until the call
 * ends. */
struct rctx {
    struct cn_seg *seg;
    ZSTD_DCtx *dc;
    struct cn_arena arena;
    const uint8_t **pages; /* NULL: not loaded */
    uint8_t *pages_failed;
    const uint8_t **sids; /* span-ID block per group */
    uint8_t *sids_failed;
};

static int rctx_init(struct rctx *x, struct cn_seg *seg)
{
    memset(x, 0, sizeof(*x));
    x->seg = seg;
    cn_arena_init(&x->arena, 64 << 10, SIZE_MAX);
    x->dc = dctx_get();
    x->pages = calloc(seg->npages + 1, sizeof(*x->pages));
    x->pages_failed = calloc(seg->npages + 1, 1);
    x->sids = calloc(seg->info.num_groups + 1, sizeof(*x->sids));
    x->sids_failed = calloc(seg->info.num_groups + 1, 1);
    return x->dc && x->pages && x->pages_failed && x->sids && x->sids_failed ? 0 : CN_ENOMEM;
}

static void rctx_release(struct rctx *x)
{
    dctx_put(x->dc);
    cn_arena_release(&x->arena);
    free(x->pages);
    free(x->pages_failed);
    free(x->sids);
    free(x->sids_failed);
}

/* Loads the IDs of page p and checks they are sorted and start as the footer says. */
static int load_ids(struct cn_seg *seg, ZSTD_DCtx *dc, struct cn_arena *a, uint32_t p,
                    const uint8_t **out)
{
    size_t len;
    int rc = load_block(seg, page_block(seg, p, 0), dc, a, NULL, out, &len);
    if (rc)
        return rc;
    const uint8_t *ids = *out;
    if (memcmp(ids, seg->pages[p].first, 16) != 0)
        return damaged(seg, page_block(seg, p, 0), "first ID differs from the footer's");
    for (uint32_t k = 1; k < seg->pages[p].count; k++)
        if (memcmp(ids + 16 * (k - 1), ids + 16 * k, 16) >= 0)
            return damaged(seg, page_block(seg, p, 0), "IDs out of order");
    return 0;
}

static const uint8_t zero_id[16];

/* The trace ID of ordinal ord (0: none). */
static int trace_of(struct rctx *x, uint32_t ord, const uint8_t **out)
{
    if (ord == 0) {
        *out = zero_id;
        return 0;
    }
    uint32_t p = (ord - 1) / CN_SEG__PAGE_IDS;
    if (x->pages_failed[p])
        return CN_EIO;
    if (!x->pages[p]) {
        int rc = load_ids(x->seg, x->dc, &x->arena, p, &x->pages[p]);
        if (rc == CN_EIO)
            x->pages_failed[p] = 1;
        if (rc)
            return rc;
    }
    *out = x->pages[p] + 16 * (size_t)((ord - 1) % CN_SEG__PAGE_IDS);
    return 0;
}

/* Completes the parent ID of row i of d when it references another row. */
static int fill_parent(struct rctx *x, const struct cn_seg__group *d, uint32_t i)
{
    uint64_t ref = d->pref[i];
    if (ref == UINT64_MAX)
        return 0;
    struct cn_seg *seg = x->seg;
    uint32_t h = (uint32_t)(ref / seg->group_rows), k = (uint32_t)(ref % seg->group_rows);
    const uint8_t *ids = h == d->g ? d->span_ids : x->sids[h];
    if (!ids) {
        if (x->sids_failed[h])
            return CN_EIO;
        size_t len;
        size_t b = group_block(seg, h, CN_SEG__S_SPAN_ID);
        int rc = load_block(seg, b, x->dc, &x->arena, NULL, &ids, &len);
        if (rc == 0 && len != (size_t)seg->groups[h].rows * 8)
            rc = damaged(seg, b, "malformed column");
        if (rc == CN_EIO)
            x->sids_failed[h] = 1;
        if (rc)
            return rc;
        x->sids[h] = ids;
    }
    memcpy(d->parents + 8 * (size_t)i, ids + 8 * (size_t)k, 8);
    return 0;
}

/* Finds id: *out_page and *out_k (index in the page), or CN_ENOENT. */
static int find_trace(struct cn_seg *seg, ZSTD_DCtx *dc, struct cn_arena *a, const uint8_t *id,
                      uint32_t *out_page, uint32_t *out_k)
{
    uint32_t lo = 0, hi = seg->npages;
    while (lo < hi) { /* first page whose first ID is > id */
        uint32_t mid = lo + (hi - lo) / 2;
        if (memcmp(seg->pages[mid].first, id, 16) <= 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    if (lo == 0)
        return CN_ENOENT;
    uint32_t p = lo - 1;
    const uint8_t *ids;
    int rc = load_ids(seg, dc, a, p, &ids);
    if (rc)
        return rc;
    lo = 0;
    hi = seg->pages[p].count;
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        int c = memcmp(ids + 16 * (size_t)mid, id, 16);
        if (c == 0) {
            *out_page = p;
            *out_k = mid;
            return 0;
        }
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return CN_ENOENT;
}

/* Rows of trace k of page p: *out_rows (in a) and *out_n. A list that is not ascending or
 * points past the rows damages the page. */
static int postings(struct cn_seg *seg, ZSTD_DCtx *dc, struct cn_arena *a, uint32_t p, uint32_t k,
                    uint64_t **out_rows, uint64_t *out_n)
{
    const uint8_t *buf;
    size_t len;
    size_t b = page_block(seg, p, 1);
    int rc = load_block(seg, b, dc, a, NULL, &buf, &len);
    if (rc)
        return rc;
    struct cn_seg__cur c = {buf, buf + len, 0};
    for (uint32_t i = 0; i <= k; i++) {
        uint64_t n = cn_seg__get_count(&c);
        if (n == 0)
            c.bad = 1;
        uint64_t *rows = i == k ? alloc(a, n, sizeof(*rows)) : NULL;
        if (i == k && !rows)
            return CN_ENOMEM;
        uint64_t row = 0;
        for (uint64_t j = 0; j < n && !c.bad; j++) {
            uint64_t delta = cn_seg__get_var(&c);
            if ((j && delta == 0) || delta >= seg->info.rows - row ||
                (!j && delta >= seg->info.rows))
                c.bad = 1;
            row += delta;
            if (rows)
                rows[j] = row;
        }
        if (c.bad)
            return damaged(seg, b, "malformed postings");
        *out_rows = rows;
        *out_n = n;
    }
    return 0;
}

/* ---- copying records out ----------------------------------------------------------------- */

static int dup_str(struct cn_arena *a, struct cn_slice *s)
{
    struct cn_slice d = cn_arena_dup(a, s->ptr, s->len);
    if (!d.ptr)
        return CN_ENOMEM;
    *s = d;
    return 0;
}

static int copy_kvs(struct cn_arena *a, struct cn_kvs *kvs)
{
    struct cn_kv *items = alloc(a, kvs->num, sizeof(*items));
    if (!items)
        return CN_ENOMEM;
    for (uint32_t i = 0; i < kvs->num; i++) {
        items[i] = kvs->items[i];
        if (dup_str(a, &items[i].key))
            return CN_ENOMEM;
        uint8_t t = items[i].val.type;
        if (t == CN_VAL_STR || t == CN_VAL_BYTES || t == CN_VAL_ARRAY || t == CN_VAL_KVLIST)
            if (dup_str(a, &items[i].val.u.s))
                return CN_ENOMEM;
    }
    kvs->items = items;
    return 0;
}

/* Resources and scopes copied for the current group, by table entry. */
struct copies {
    struct cn_resource **res;
    struct cn_scope **scope;
};

static int copy_res(struct cn_arena *a, const struct cn_seg__group *d, struct copies *cp,
                    uint32_t k, const struct cn_resource **out)
{
    if (!cp->res[k]) {
        struct cn_resource *r = cn_arena_alloc(a, sizeof(*r));
        if (!r)
            return CN_ENOMEM;
        *r = d->res_tab[k];
        if (dup_str(a, &r->service) || dup_str(a, &r->schema_url) || copy_kvs(a, &r->attrs))
            return CN_ENOMEM;
        cp->res[k] = r;
    }
    *out = cp->res[k];
    return 0;
}

static int copy_scope(struct cn_arena *a, const struct cn_seg__group *d, struct copies *cp,
                      uint32_t k, const struct cn_scope **out)
{
    if (!cp->scope[k]) {
        struct cn_scope *s = cn_arena_alloc(a, sizeof(*s));
        if (!s)
            return CN_ENOMEM;
        *s = d->scope_tab[k];
        if (dup_str(a, &s->name) || dup_str(a, &s->version) || copy_kvs(a, &s->attrs))
            return CN_ENOMEM;
        cp->scope[k] = s;
    }
    *out = cp->scope[k];
    return 0;
}

static int copy_span(struct cn_arena *a, const struct cn_seg__group *d, struct copies *cp,
                     uint32_t i, struct cn_span *s)
{
    if (dup_str(a, &s->trace_state) || dup_str(a, &s->name) || dup_str(a, &s->status_message) ||
        copy_kvs(a, &s->attrs) || copy_res(a, d, cp, d->res[i], &s->resource) ||
        copy_scope(a, d, cp, d->scope[i], &s->scope))
        return CN_ENOMEM;
    struct cn_event *ev = alloc(a, s->num_events, sizeof(*ev));
    struct cn_link *ln = alloc(a, s->num_links, sizeof(*ln));
    if (!ev || !ln)
        return CN_ENOMEM;
    for (uint32_t k = 0; k < s->num_events; k++) {
        ev[k] = s->events[k];
        if (dup_str(a, &ev[k].name) || copy_kvs(a, &ev[k].attrs))
            return CN_ENOMEM;
    }
    for (uint32_t k = 0; k < s->num_links; k++) {
        ln[k] = s->links[k];
        if (dup_str(a, &ln[k].trace_state) || copy_kvs(a, &ln[k].attrs))
            return CN_ENOMEM;
    }
    s->events = ev;
    s->links = ln;
    return 0;
}

static int copy_log(struct cn_arena *a, const struct cn_seg__group *d, struct copies *cp,
                    uint32_t i, struct cn_log *l)
{
    uint8_t t = l->body.type;
    if (dup_str(a, &l->severity_text) || dup_str(a, &l->event_name) || copy_kvs(a, &l->attrs) ||
        copy_res(a, d, cp, d->res[i], &l->resource) || copy_scope(a, d, cp, d->scope[i], &l->scope))
        return CN_ENOMEM;
    if (t == CN_VAL_STR || t == CN_VAL_BYTES || t == CN_VAL_ARRAY || t == CN_VAL_KVLIST)
        return dup_str(a, &l->body.u.s);
    return 0;
}

/* ---- trace lookup ------------------------------------------------------------------------ */

/* Decodes group g fully (d is initialised here and released by the caller). */
static int group_full(struct cn_seg *seg, ZSTD_DCtx *dc, struct cn_seg__group *d, uint32_t g)
{
    group_init(d, seg, g);
    int rc = group_stage(seg, dc, d, 0);
    if (rc == 0)
        rc = group_stage(seg, dc, d, 1);
    return rc;
}

static int seg_trace(struct cn_seg *seg, const uint8_t id[16], struct cn_tel_batch *out)
{
    if (!cn_seg_may_contain_trace(seg, id))
        return 0;
    int spans = seg->info.kind == CN_SEG_SPANS;
    struct rctx x;
    int rc = rctx_init(&x, seg);
    uint32_t p = 0, k = 0;
    uint64_t *rows = NULL, nrows = 0;
    if (rc == 0)
        rc = find_trace(seg, x.dc, &x.arena, id, &p, &k);
    if (rc == 0)
        rc = postings(seg, x.dc, &x.arena, p, k, &rows, &nrows);
    if (rc) {
        rctx_release(&x);
        return rc == CN_ENOENT ? 0 : rc;
    }
    uint32_t ord = p * CN_SEG__PAGE_IDS + k + 1;
    size_t rsize = spans ? sizeof(struct cn_span) : sizeof(struct cn_log);
    uint8_t *recs = alloc(&x.arena, nrows, rsize);
    size_t got = 0;
    int eio = 0;
    rc = recs ? 0 : CN_ENOMEM;
    for (uint64_t j = 0; j < nrows && rc == 0;) {
        uint32_t g = (uint32_t)(rows[j] / seg->group_rows);
        uint64_t j1 = j;
        while (j1 < nrows && rows[j1] / seg->group_rows == g)
            j1++;
        struct cn_seg__group d;
        group_init(&d, seg, g);
        uint8_t *sel = alloc(&d.arena, d.rows, 1);
        if (sel) { /* build only this trace's rows */
            memset(sel, 0, d.rows);
            for (uint64_t r = j; r < j1; r++)
                sel[rows[r] - (uint64_t)g * seg->group_rows] = 1;
            d.sel = sel;
        }
        rc = sel ? group_stage(seg, x.dc, &d, 0) : CN_ENOMEM;
        if (rc == 0)
            rc = group_stage(seg, x.dc, &d, 1);
        struct copies cp = {alloc(&d.arena, d.nres, sizeof(*cp.res)),
                            alloc(&d.arena, d.nscope, sizeof(*cp.scope))};
        if (rc == 0 && (!cp.res || !cp.scope))
            rc = CN_ENOMEM;
        if (rc == 0) {
            memset(cp.res, 0, d.nres * sizeof(*cp.res));
            memset(cp.scope, 0, d.nscope * sizeof(*cp.scope));
        }
        for (uint64_t r = j; r < j1 && rc == 0; r++) {
            uint32_t i = (uint32_t)(rows[r] - (uint64_t)g * seg->group_rows);
            if (d.ord[i] != ord) {
                rc = damaged(seg, page_block(seg, p, 1), "postings disagree with the rows");
                break;
            }
            if (spans) {
                int prc = fill_parent(&x, &d, i);
                if (prc == CN_EIO) { /* this row only: its parent's group is damaged */
                    eio = 1;
                    continue;
                }
                struct cn_span *s = (struct cn_span *)(recs + got * rsize);
                cn_seg__span_at(&d, i, id, s);
                rc = prc ? prc : copy_span(&out->arena, &d, &cp, i, s);
            } else {
                struct cn_log *l = (struct cn_log *)(recs + got * rsize);
                cn_seg__log_at(&d, i, id, l);
                rc = copy_log(&out->arena, &d, &cp, i, l);
            }
            got += rc == 0;
        }
        cn_arena_release(&d.arena);
        if (rc == CN_EIO) {
            eio = 1;
            rc = 0;
        }
        j = j1;
    }
    if (rc == 0 && got) {
        size_t have = spans ? out->num_spans : out->num_logs;
        uint8_t *all = alloc(&out->arena, have + got, rsize);
        if (!all) {
            rc = CN_ENOMEM;
        } else {
            if (have)
                memcpy(all, spans ? (void *)out->spans : (void *)out->logs, have * rsize);
            memcpy(all + have * rsize, recs, got * rsize);
            if (spans) {
                out->spans = (struct cn_span *)all;
                out->num_spans = have + got;
            } else {
                out->logs = (struct cn_log *)all;
                out->num_logs = have + got;
            }
        }
    }
    rctx_release(&x);
    return rc ? rc : eio ? CN_EIO : 0;
}

static int seg_trace_ids(struct cn_seg *seg, cn_seg_trace_id_cb cb, void *ctx)
{
    ZSTD_DCtx *dc = dctx_get();
    if (!dc)
        return CN_ENOMEM;
    int rc = 0, eio = 0;
    for (uint32_t p = 0; p < seg->npages && rc == 0; p++) {
        struct cn_arena a;
        cn_arena_init(&a, 64 << 10, SIZE_MAX);
        const uint8_t *ids;
        rc = load_ids(seg, dc, &a, p, &ids);
        for (uint32_t k = 0; rc == 0 && k < seg->pages[p].count; k++)
            cb(ctx, ids + 16 * (size_t)k);
        cn_arena_release(&a);
        if (rc == CN_EIO) {
            eio = 1;
            rc = 0;
        }
    }
    dctx_put(dc);
    return rc ? rc : eio ? CN_EIO : 0;
}

/* ---- scan -------------------------------------------------------------------------------- */

static uint64_t clamp_dur(uint64_t d)
{
    return (int64_t)d < 0 ? 0 : d;
}

static void row_view(const struct cn_seg *seg, const struct cn_seg__group *d, uint32_t i,
                     const uint8_t *tid, struct cn_seg_row *r)
{
    int spans = seg->info.kind == CN_SEG_SPANS;
    *r = (struct cn_seg_row){
        .row = (uint64_t)d->g * seg->group_rows + i,
        .trace_id = tid,
        .span_id = d->span_ids + 8 * (size_t)i,
        .service = d->service[i],
        .name = d->name[i],
        .time_ns = d->time[i],
        .duration_ns = spans ? clamp_dur(d->dur[i]) : 0,
        .kind = spans ? d->span_kind[i] : 0,
        .status_code = spans ? d->status[i] : 0,
        .severity = spans ? 0 : d->sev[i],
    };
}

/* 1 when row group g may hold a row that f lets through, from the footer's statistics. */
static int group_may_pass(const struct cn_seg *seg, uint32_t g, const struct cn_seg_filter *f)
{
    const struct rgroup *gr = &seg->groups[g];
    return !f || (gr->amax >= f->min_stat && gr->amin <= f->max_stat);
}

/* Decodes only the service column of d (loaded alone) and tells whether a row of it is
 * service. Returns 1 (or an error: the caller's full read then meets and reports the
 * damage) when it may hold one, 0 when it surely does not. */
static int group_has_service(struct cn_seg *seg, ZSTD_DCtx *dc, struct cn_seg__group *d,
                             struct cn_slice service)
{
    unsigned col = seg->info.kind == CN_SEG_SPANS ? CN_SEG__S_SERVICE : CN_SEG__L_SERVICE;
    if (load_block(seg, group_block(seg, d->g, col), dc, &d->arena, NULL, &d->buf[col],
                   &d->len[col]) != 0 ||
        cn_seg__decode(d, col) != 0)
        return 1;
    for (uint32_t i = 0; i < d->rows; i++)
        if (cn_slice_eq(d->service[i], service))
            return 1;
    return 0;
}

int cn_seg_scan(struct cn_seg *seg, uint64_t from_ns, uint64_t to_ns, cn_seg_pred_cb pred,
                cn_seg_rec_cb cb, void *ctx)
{
    return cn_seg_scan_where(seg, from_ns, to_ns, NULL, pred, cb, ctx);
}

static int seg_scan_where(struct cn_seg *seg, uint64_t from_ns, uint64_t to_ns,
                          const struct cn_seg_filter *f, cn_seg_pred_cb pred, cn_seg_rec_cb cb,
                          void *ctx)
{
    int spans = seg->info.kind == CN_SEG_SPANS;
    struct rctx x;
    int rc = rctx_init(&x, seg);
    int eio = 0, stop = 0;
    for (uint32_t g = 0; g < seg->info.num_groups && rc == 0 && stop == 0; g++) {
        const struct rgroup *gr = &seg->groups[g];
        if (gr->tmax < from_ns || gr->tmin >= to_ns || !group_may_pass(seg, g, f))
            continue;
        struct cn_seg__group d;
        group_init(&d, seg, g);
        if (f && f->service.ptr && !group_has_service(seg, x.dc, &d, f->service)) {
            cn_arena_release(&d.arena);
            continue;
        }
        const uint8_t **tids = alloc(&d.arena, d.rows, sizeof(*tids));
        uint8_t *keep = alloc(&d.arena, d.rows, 1);
        rc = tids && keep ? group_stage(seg, x.dc, &d, 0) : CN_ENOMEM;
        size_t kept = 0;
        for (uint32_t i = 0; rc == 0 && i < d.rows; i++) {
            keep[i] = 0;
            if (d.time[i] < from_ns || d.time[i] >= to_ns)
                continue;
            int trc = trace_of(&x, d.ord[i], &tids[i]);
            if (trc == CN_EIO) { /* this row only: its trace-ID page is damaged */
                eio = 1;
                continue;
            }
            if (trc) {
                rc = trc;
                break;
            }
            if (pred) {
                struct cn_seg_row r;
                row_view(seg, &d, i, tids[i], &r);
                if (!pred(ctx, &r))
                    continue;
            }
            keep[i] = 1;
            kept++;
        }
        d.sel = keep;
        if (rc == 0 && kept)
            rc = group_stage(seg, x.dc, &d, 1);
        if (rc == CN_EIO) {
            eio = 1;
            rc = 0;
            kept = 0;
        }
        for (uint32_t i = 0; rc == 0 && kept && i < d.rows && stop == 0; i++) {
            if (!keep[i])
                continue;
            if (spans) {
                int prc = fill_parent(&x, &d, i);
                if (prc == CN_EIO) {
                    eio = 1;
                    continue;
                }
                if ((rc = prc) != 0)
                    break;
                struct cn_span s;
                cn_seg__span_at(&d, i, tids[i], &s);
                stop = cb(ctx, &s, NULL);
            } else {
                struct cn_log l;
                cn_seg__log_at(&d, i, tids[i], &l);
                stop = cb(ctx, NULL, &l);
            }
        }
        cn_arena_release(&d.arena);
    }
    rctx_release(&x);
    return stop ? stop : rc ? rc : eio ? CN_EIO : 0;
}

/* ---- full check -------------------------------------------------------------------------- */

static void note(struct cn_seg_check *out, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void note(struct cn_seg_check *out, const char *fmt, ...)
{
    if (out->msg[0])
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(out->msg, sizeof(out->msg), fmt, ap);
    va_end(ap);
}

static int slice_cmp(struct cn_slice a, struct cn_slice b)
{
    size_t n = CN_MIN(a.len, b.len);
    int c = n ? memcmp(a.ptr, b.ptr, n) : 0;
    if (c)
        return c;
    return a.len < b.len ? -1 : a.len > b.len;
}

/* Row-level invariants of a decoded group: sort order, footer statistics, services. */
static const char *check_rows(const struct cn_seg *seg, const struct cn_seg__group *d)
{
    const struct rgroup *gr = &seg->groups[d->g];
    int spans = seg->info.kind == CN_SEG_SPANS;
    for (uint32_t i = 0; i < d->rows; i++) {
        uint64_t a = spans ? (d->dur[i] <= (uint64_t)INT64_MAX ? d->dur[i] : 0) : d->sev[i];
        if (d->time[i] < gr->tmin || d->time[i] > gr->tmax || a < gr->amin || a > gr->amax)
            return "a row lies outside the footer's min/max";
        if (!cn_slice_eq(d->service[i], d->res_tab[d->res[i]].service))
            return "a row's service differs from its resource's";
        if (i == 0)
            continue;
        int c = slice_cmp(d->service[i - 1], d->service[i]);
        if (c == 0 && spans)
            c = slice_cmp(d->name[i - 1], d->name[i]);
        if (c > 0 || (c == 0 && d->time[i - 1] > d->time[i]))
            return "rows out of order";
    }
    return NULL;
}

/* Checks the postings of page p against the rows' ordinals (ords, UINT32_MAX for rows of
 * damaged groups); adds the postings into intact groups to *linked. */
static int check_page(struct cn_seg *seg, ZSTD_DCtx *dc, uint32_t p, const uint32_t *ords,
                      uint64_t *linked, struct cn_seg_check *out)
{
    struct cn_arena a;
    cn_arena_init(&a, 64 << 10, CN_SEG__GROUP_ARENA);
    const uint8_t *ids, *buf;
    size_t len;
    int rc = load_ids(seg, dc, &a, p, &ids);
    if (rc == CN_EIO) {
        out->bad_blocks++;
        note(out, "trace-id page %u: damaged", p);
    }
    int prc = load_block(seg, page_block(seg, p, 1), dc, &a, NULL, &buf, &len);
    if (prc == CN_EIO) {
        out->bad_blocks++;
        note(out, "postings page %u: damaged", p);
    }
    if (rc == CN_ENOMEM || prc == CN_ENOMEM) {
        cn_arena_release(&a);
        return CN_ENOMEM;
    }
    struct cn_seg__cur c =
        prc == 0 ? (struct cn_seg__cur){buf, buf + len, 0} : (struct cn_seg__cur){NULL, NULL, 1};
    const char *why = NULL;
    for (uint32_t k = 0; prc == 0 && k < seg->pages[p].count && !why; k++) {
        uint32_t ord = p * CN_SEG__PAGE_IDS + k + 1;
        uint64_t n = cn_seg__get_count(&c), row = 0;
        if (n == 0)
            c.bad = 1;
        for (uint64_t j = 0; j < n && !c.bad; j++) {
            uint64_t delta = cn_seg__get_var(&c);
            if ((j && delta == 0) || delta >= seg->info.rows - row ||
                (!j && delta >= seg->info.rows)) {
                c.bad = 1;
                break;
            }
            row += delta;
            if (ords[row] == UINT32_MAX)
                continue;
            if (ords[row] != ord)
                why = "postings disagree with the rows";
            (*linked)++;
        }
        if (c.bad)
            why = "malformed postings";
        if (!why && rc == 0 && !cn_seg_may_contain_trace(seg, ids + 16 * (size_t)k))
            why = "trace bloom misses a trace of the index";
    }
    if (prc == 0 && !why && c.p != c.e)
        why = "trailing bytes in postings";
    if (why) {
        damaged(seg, page_block(seg, p, 1), why);
        out->bad_blocks++;
        note(out, "postings page %u: %s", p, why);
    }
    cn_arena_release(&a);
    return 0;
}

static int seg_check(struct cn_seg *seg, struct cn_seg_check *out)
{
    memset(out, 0, sizeof(*out));
    out->blocks = 1 + seg->nblocks; /* the footer was checked by the open */
    out->groups = seg->info.num_groups;
    ZSTD_DCtx *dc = dctx_get();
    uint32_t *ords = malloc((seg->info.rows ? seg->info.rows : 1) * sizeof(*ords));
    struct pref {
        uint64_t row, ref;
    } *prefs = malloc((seg->info.rows ? seg->info.rows : 1) * sizeof(*prefs));
    uint64_t prefs_n = 0;
    if (!dc || !ords || !prefs) {
        dctx_put(dc);
        free(ords);
        free(prefs);
        return CN_ENOMEM;
    }
    uint64_t with_trace = 0, linked = 0;
    int rc = 0;
    for (uint32_t g = 0; g < seg->info.num_groups && rc != CN_ENOMEM; g++) {
        struct cn_seg__group d;
        rc = group_full(seg, dc, &d, g);
        uint64_t r0 = (uint64_t)g * seg->group_rows;
        const char *why = rc == 0 ? check_rows(seg, &d) : NULL;
        for (uint32_t i = 0; rc == 0 && !why && d.pref && i < d.rows; i++)
            if (d.pref[i] != UINT64_MAX && prefs_n < seg->info.rows) {
                prefs[prefs_n].row = r0 + i;
                prefs[prefs_n++].ref = d.pref[i];
            }
        if (rc == 0 && !why) {
            for (uint32_t i = 0; i < d.rows; i++) {
                ords[r0 + i] = d.ord[i];
                with_trace += d.ord[i] != 0;
            }
            out->rows += d.rows;
        } else {
            for (uint32_t i = 0; i < d.rows; i++)
                ords[r0 + i] = UINT32_MAX;
            out->bad_groups++;
            /* A damaged cheap column stops the decoding early: read the rest too, so every
             * damaged block is found. */
            for (unsigned col = 0; col < seg->ncols && rc == CN_EIO; col++) {
                const uint8_t *p;
                size_t len;
                if (load_block(seg, group_block(seg, g, col), dc, &d.arena, NULL, &p, &len) ==
                    CN_ENOMEM)
                    rc = CN_ENOMEM;
            }
            for (unsigned col = 0; col < seg->ncols; col++) {
                if (is_bad(seg, group_block(seg, g, col))) {
                    out->bad_blocks++;
                    note(out, "row group %u, column %s: damaged", g,
                         cn_seg__col_name(seg->info.kind, col));
                }
            }
            if (why)
                note(out, "row group %u: %s", g, why);
        }
        cn_arena_release(&d.arena);
    }
    /* A parent referenced in another row belongs to the same trace. */
    for (uint64_t i = 0; i < prefs_n; i++) {
        uint32_t a = ords[prefs[i].row], b = ords[prefs[i].ref];
        if (a != UINT32_MAX && b != UINT32_MAX && a != b) {
            note(out, "row %llu: its parent (row %llu) is in another trace",
                 (unsigned long long)prefs[i].row, (unsigned long long)prefs[i].ref);
            out->bad_groups++;
            break;
        }
    }
    for (uint32_t p = 0; p < seg->npages && rc != CN_ENOMEM; p++)
        rc = check_page(seg, dc, p, ords, &linked, out);
    if (rc != CN_ENOMEM && out->bad_blocks == 0 && linked != with_trace)
        note(out, "%llu rows belong to a trace, the index lists %llu",
             (unsigned long long)with_trace, (unsigned long long)linked);
    for (int t = 0; t < 2; t++) {
        int ok = bloom_lock(seg, t) != NULL;
        pthread_mutex_unlock(&bcache.lock);
        if (!ok) {
            out->bad_blocks++;
            note(out, "%s bloom: damaged", t ? "token" : "trace");
        }
    }
    dctx_put(dc);
    free(ords);
    free(prefs);
    if (rc == CN_ENOMEM)
        return rc;
    return out->bad_blocks || out->bad_groups || out->msg[0] ? CN_EIO : 0;
}

/* ---- entry points that read the footer's tables ------------------------------------------ */

int cn_seg_trace(struct cn_seg *seg, const uint8_t id[16], struct cn_tel_batch *out)
{
    if (!cn_seg_may_contain_trace(seg, id))
        return 0;
    int rc = foot_get(seg);
    if (rc == 0) {
        rc = seg_trace(seg, id, out);
        foot_put(seg);
    }
    return rc;
}

int cn_seg_trace_ids(struct cn_seg *seg, cn_seg_trace_id_cb cb, void *ctx)
{
    int rc = foot_get(seg);
    if (rc == 0) {
        rc = seg_trace_ids(seg, cb, ctx);
        foot_put(seg);
    }
    return rc;
}

int cn_seg_scan_where(struct cn_seg *seg, uint64_t from_ns, uint64_t to_ns,
                      const struct cn_seg_filter *f, cn_seg_pred_cb pred, cn_seg_rec_cb cb,
                      void *ctx)
{
    if (seg->info.rows == 0 || seg->info.max_ns < from_ns || seg->info.min_ns >= to_ns)
        return 0; /* nothing in the range: the tables are not needed */
    int rc = foot_get(seg);
    if (rc == 0) {
        rc = seg_scan_where(seg, from_ns, to_ns, f, pred, cb, ctx);
        foot_put(seg);
    }
    return rc;
}

int cn_seg_check(struct cn_seg *seg, struct cn_seg_check *out)
{
    int rc = foot_get(seg);
    if (rc) {
        memset(out, 0, sizeof(*out));
        snprintf(out->msg, sizeof(out->msg), "%s: footer cannot be read again", seg->path);
        return rc;
    }
    rc = seg_check(seg, out);
    foot_put(seg);
    return rc;
}

int cn_seg_validate(const char *path, struct cn_seg_check *out)
{
    struct cn_seg *seg;
    memset(out, 0, sizeof(*out));
    int rc = cn_seg_open(&seg, path, out->msg, sizeof(out->msg));
    if (rc)
        return rc;
    rc = cn_seg_check(seg, out);
    cn_seg_close(seg);
    return rc;
}
