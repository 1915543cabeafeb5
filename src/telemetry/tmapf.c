/* Trace map files (see tmapf.h). */
#include "telemetry/tmapf.h"

#include "base/base.h"

#include <fcntl.h>
#include <stdarg.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

#define MAGIC      "CNTMAP01"
#define HEADER     32u
#define READ_CHUNK (CN_TMAPF_BLOCK * 8u * 32u) /* entries read at a time when opening */

struct cn_tmapf {
    int fd;
    uint64_t n, ncov, bytes;
    uint64_t entries_off;
    uint32_t *covered; /* ncov, increasing */
    uint32_t *first;   /* key of each block's first entry */
    size_t nblocks;
};

static void put_le32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static void put_le64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static uint32_t le32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint64_t le64(const uint8_t *p)
{
    return (uint64_t)le32(p) | (uint64_t)le32(p + 4) << 32;
}

static int failf(int rc, char *err, size_t err_len, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static int failf(int rc, char *err, size_t err_len, const char *fmt, ...)
{
    if (err && err_len) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, err_len, fmt, ap);
        va_end(ap);
    }
    return rc;
}

static int entry_cmp(const void *pa, const void *pb)
{
    const struct cn_tmapf_entry *a = pa, *b = pb;
    if (a->key != b->key)
        return a->key < b->key ? -1 : 1;
    return a->seq < b->seq ? -1 : a->seq > b->seq;
}

/* Byte d (0: the lowest) of an entry's (key, seq) as one 64-bit number. */
static unsigned entry_byte(const struct cn_tmapf_entry *x, unsigned d)
{
    return d < 4 ? (x->seq >> (8 * d)) & 0xff : (x->key >> (8 * (d - 4))) & 0xff;
}

/* Sorts by (key, seq): a radix sort, a byte a pass, skipping the bytes every entry shares
 * (those of seq, mostly). A day of a full store is millions of entries: qsort took 2.3 s
 * for 8 million, stalling the sealer for as long. qsort when the scratch copy cannot be
 * had. */
static void sort_entries(struct cn_tmapf_entry *e, size_t n)
{
    struct cn_tmapf_entry *tmp = n > 1 ? malloc(n * sizeof(*e)) : NULL;
    if (!tmp) {
        if (n > 1)
            qsort(e, n, sizeof(*e), entry_cmp);
        return;
    }
    struct cn_tmapf_entry *src = e, *dst = tmp;
    for (unsigned d = 0; d < 8; d++) {
        size_t count[256] = {0};
        for (size_t i = 0; i < n; i++)
            count[entry_byte(&src[i], d)]++;
        if (count[entry_byte(&src[0], d)] == n)
            continue; /* every entry has this byte: the order stays */
        size_t at = 0;
        for (unsigned b = 0; b < 256; b++) {
            size_t c = count[b];
            count[b] = at;
            at += c;
        }
        for (size_t i = 0; i < n; i++)
            dst[count[entry_byte(&src[i], d)]++] = src[i];
        struct cn_tmapf_entry *t = src;
        src = dst;
        dst = t;
    }
    if (src != e)
        memcpy(e, src, n * sizeof(*e));
    free(tmp);
}

/* Writes all of p at the descriptor's position. Returns 0 or -errno. */
static int write_all(int fd, const void *p, size_t n)
{
    const uint8_t *b = p;
    while (n) {
        ssize_t w = write(fd, b, n);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        b += w;
        n -= (size_t)w;
    }
    return 0;
}

/* Buffered output with the running checksum. */
struct out {
    int fd, rc;
    XXH3_state_t *h;
    uint8_t buf[64 * 1024];
    size_t len;
};

/* Hashes and writes what is buffered. */
static void out_flush(struct out *o)
{
    if (!o->rc && o->len) {
        XXH3_64bits_update(o->h, o->buf, o->len);
        o->rc = write_all(o->fd, o->buf, o->len);
    }
    o->len = 0;
}

/* Appends n bytes (at most the buffer's size). */
static void out_put(struct out *o, const void *p, size_t n)
{
    if (o->len + n > sizeof(o->buf))
        out_flush(o);
    memcpy(o->buf + o->len, p, n);
    o->len += n;
}

static int sync_parent(const char *path)
{
    char dir[4096];
    const char *slash = strrchr(path, '/');
    if (!slash)
        snprintf(dir, sizeof(dir), ".");
    else
        snprintf(dir, sizeof(dir), "%.*s", (int)(slash - path) + (slash == path), path);
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0 || fsync(fd) != 0) {
        int rc = -errno;
        if (fd >= 0)
            close(fd);
        return rc;
    }
    close(fd);
    return 0;
}

int cn_tmapf_write(const char *path, struct cn_tmapf_entry *e, size_t n, uint32_t *covered,
                   size_t ncov, char *err, size_t err_len)
{
    sort_entries(e, n);
    size_t m = 0;
    for (size_t i = 0; i < n; i++)
        if (m == 0 || entry_cmp(&e[m - 1], &e[i]) != 0)
            e[m++] = e[i];
    if (ncov)
        qsort(covered, ncov, sizeof(*covered), cn_u32_cmp);
    size_t c = 0;
    for (size_t i = 0; i < ncov; i++)
        if (c == 0 || covered[c - 1] != covered[i])
            covered[c++] = covered[i];

    char tmp[4200];
    if ((size_t)snprintf(tmp, sizeof(tmp), "%s.tmp", path) >= sizeof(tmp))
        return failf(CN_EINVAL, err, err_len, "path too long: %s", path);
    struct out *o = malloc(sizeof(*o));
    XXH3_state_t *h = XXH3_createState();
    if (!o || !h) {
        free(o);
        XXH3_freeState(h);
        return failf(CN_ENOMEM, err, err_len, "out of memory writing %s", path);
    }
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
        int rc = -errno;
        free(o);
        XXH3_freeState(h);
        return failf(rc, err, err_len, "cannot create %s: %s", tmp, strerror(-rc));
    }
    o->fd = fd;
    o->rc = 0;
    o->h = h;
    o->len = 0;
    XXH3_64bits_reset(h);
    uint8_t hdr[HEADER] = {0};
    memcpy(hdr, MAGIC, 8);
    put_le64(hdr + 8, m);
    put_le64(hdr + 16, c);
    out_put(o, hdr, sizeof(hdr));
    for (size_t i = 0; i < c; i++) {
        uint8_t b[4];
        put_le32(b, covered[i]);
        out_put(o, b, 4);
    }
    for (size_t i = 0; i < m; i++) {
        uint8_t b[8];
        put_le32(b, e[i].key);
        put_le32(b + 4, e[i].seq);
        out_put(o, b, 8);
    }
    out_flush(o);
    uint8_t sum[8];
    put_le64(sum, XXH3_64bits_digest(h));
    if (!o->rc)
        o->rc = write_all(fd, sum, 8);
    int rc = o->rc;
    free(o);
    XXH3_freeState(h);
    if (!rc && fsync(fd) != 0)
        rc = -errno;
    if (close(fd) != 0 && !rc)
        rc = -errno;
    if (!rc && rename(tmp, path) != 0)
        rc = -errno;
    if (!rc)
        rc = sync_parent(path);
    if (rc) {
        unlink(tmp);
        return failf(rc, err, err_len, "cannot write %s: %s", path, strerror(-rc));
    }
    return 0;
}

static int pread_all(int fd, void *p, size_t n, uint64_t off)
{
    uint8_t *b = p;
    while (n) {
        ssize_t r = pread(fd, b, n, (off_t)off);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return CN_EIO;
        b += r;
        n -= (size_t)r;
        off += (uint64_t)r;
    }
    return 0;
}

void cn_tmapf_close(struct cn_tmapf *f)
{
    if (!f)
        return;
    if (f->fd >= 0)
        close(f->fd);
    free(f->covered);
    free(f->first);
    free(f);
}

int cn_tmapf_open_fd(struct cn_tmapf **out, int fd, unsigned flags, char *err, size_t err_len)
{
    *out = NULL;
    struct cn_tmapf *f = calloc(1, sizeof(*f));
    uint8_t *chunk = malloc(READ_CHUNK);
    XXH3_state_t *h = XXH3_createState();
    int rc = 0;
    if (!f || !chunk || !h) {
        rc = failf(CN_ENOMEM, err, err_len, "out of memory");
        goto done;
    }
    f->fd = fd;
    struct stat sb;
    if (fstat(fd, &sb) != 0) {
        rc = failf(-errno, err, err_len, "cannot stat: %s", strerror(errno));
        goto done;
    }
    f->bytes = (uint64_t)sb.st_size;
    uint8_t hdr[HEADER];
    if (f->bytes < HEADER + 8 || pread_all(fd, hdr, HEADER, 0) != 0) {
        rc = failf(CN_EIO, err, err_len, "%llu bytes: shorter than a header",
                   (unsigned long long)f->bytes);
        goto done;
    }
    if (memcmp(hdr, MAGIC, 8) != 0 || le64(hdr + 24) != 0) {
        rc = failf(CN_EIO, err, err_len, "not a trace map file (magic or version)");
        goto done;
    }
    f->n = le64(hdr + 8);
    f->ncov = le64(hdr + 16);
    /* Sizes from the header must add up to the file's, which bounds both. */
    if (f->n > f->bytes / 8 || f->ncov > f->bytes / 4 ||
        HEADER + 4 * f->ncov + 8 * f->n + 8 != f->bytes) {
        rc = failf(
            CN_EIO, err, err_len, "%llu entries and %llu segments do not make its %llu bytes",
            (unsigned long long)f->n, (unsigned long long)f->ncov, (unsigned long long)f->bytes);
        goto done;
    }
    f->entries_off = HEADER + 4 * f->ncov;
    f->nblocks = (size_t)((f->n + CN_TMAPF_BLOCK - 1) / CN_TMAPF_BLOCK);
    f->covered = malloc(f->ncov ? f->ncov * 4 : 1);
    f->first = malloc(f->nblocks ? f->nblocks * 4 : 1);
    if (!f->covered || !f->first) {
        rc = failf(CN_ENOMEM, err, err_len, "out of memory");
        goto done;
    }
    XXH3_64bits_reset(h);
    XXH3_64bits_update(h, hdr, HEADER);
    /* The covered list, then the entries, a chunk at a time, checked for order. */
    for (uint64_t i = 0; i < f->ncov;) {
        size_t k = (size_t)CN_MIN(f->ncov - i, READ_CHUNK / 4);
        if (pread_all(fd, chunk, k * 4, HEADER + 4 * i) != 0) {
            rc = failf(CN_EIO, err, err_len, "read failed");
            goto done;
        }
        XXH3_64bits_update(h, chunk, k * 4);
        for (size_t j = 0; j < k; j++, i++) {
            f->covered[i] = le32(chunk + 4 * j);
            if (i && f->covered[i] <= f->covered[i - 1]) {
                rc = failf(CN_EIO, err, err_len, "segment list out of order at %llu",
                           (unsigned long long)i);
                goto done;
            }
        }
    }
    struct cn_tmapf_entry prev = {0, 0};
    for (uint64_t i = 0; i < f->n;) {
        size_t k = (size_t)CN_MIN(f->n - i, READ_CHUNK / 8);
        if (pread_all(fd, chunk, k * 8, f->entries_off + 8 * i) != 0) {
            rc = failf(CN_EIO, err, err_len, "read failed");
            goto done;
        }
        XXH3_64bits_update(h, chunk, k * 8);
        for (size_t j = 0; j < k; j++, i++) {
            struct cn_tmapf_entry e = {le32(chunk + 8 * j), le32(chunk + 8 * j + 4)};
            if (e.key == 0 || (i && entry_cmp(&prev, &e) >= 0)) {
                rc = failf(CN_EIO, err, err_len, "entry %llu out of order or empty",
                           (unsigned long long)i);
                goto done;
            }
            if (i % CN_TMAPF_BLOCK == 0)
                f->first[i / CN_TMAPF_BLOCK] = e.key;
            prev = e;
        }
    }
    uint8_t sum[8];
    if (pread_all(fd, sum, 8, f->bytes - 8) != 0 ||
        (!(flags & CN_TMAPF_OPEN_UNVERIFIED) && le64(sum) != XXH3_64bits_digest(h))) {
        rc = failf(CN_EIO, err, err_len, "checksum mismatch");
        goto done;
    }
done:
    free(chunk);
    XXH3_freeState(h);
    if (rc) {
        if (f)
            cn_tmapf_close(f);
        else
            close(fd);
        return rc;
    }
    *out = f;
    return 0;
}

int cn_tmapf_open(struct cn_tmapf **out, const char *path, char *err, size_t err_len)
{
    *out = NULL;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        int rc = -errno;
        return failf(rc, err, err_len, "cannot open %s: %s", path, strerror(-rc));
    }
    char why[256];
    int rc = cn_tmapf_open_fd(out, fd, 0, why, sizeof(why));
    if (rc)
        return failf(rc, err, err_len, "%s: %s", path, why);
    return 0;
}

int cn_tmapf_find(const struct cn_tmapf *f, uint32_t key, void (*fn)(void *ctx, uint32_t seq),
                  void *ctx)
{
    if (!f->nblocks || key < f->first[0])
        return 0;
    /* The last block whose first key is below key: the key's entries may begin in it. */
    size_t lo = 0, hi = f->nblocks;
    while (hi - lo > 1) {
        size_t mid = lo + (hi - lo) / 2;
        if (f->first[mid] < key)
            lo = mid;
        else
            hi = mid;
    }
    uint8_t b[CN_TMAPF_BLOCK * 8];
    for (size_t blk = lo; blk < f->nblocks; blk++) {
        uint64_t first = (uint64_t)blk * CN_TMAPF_BLOCK;
        size_t k = (size_t)CN_MIN(f->n - first, CN_TMAPF_BLOCK);
        if (pread_all(f->fd, b, k * 8, f->entries_off + first * 8) != 0)
            return CN_EIO;
        for (size_t j = 0; j < k; j++) {
            uint32_t kj = le32(b + 8 * j);
            if (kj > key)
                return 0;
            if (kj == key)
                fn(ctx, le32(b + 8 * j + 4));
        }
    }
    return 0;
}

int cn_tmapf_each(const struct cn_tmapf *f, void (*fn)(void *ctx, const struct cn_tmapf_entry *e),
                  void *ctx)
{
    uint8_t *chunk = malloc(READ_CHUNK);
    if (!chunk)
        return CN_ENOMEM;
    for (uint64_t i = 0; i < f->n;) {
        size_t k = (size_t)CN_MIN(f->n - i, READ_CHUNK / 8);
        if (pread_all(f->fd, chunk, k * 8, f->entries_off + 8 * i) != 0) {
            free(chunk);
            return CN_EIO;
        }
        for (size_t j = 0; j < k; j++, i++) {
            struct cn_tmapf_entry e = {le32(chunk + 8 * j), le32(chunk + 8 * j + 4)};
            fn(ctx, &e);
        }
    }
    free(chunk);
    return 0;
}

int cn_tmapf_covers(const struct cn_tmapf *f, uint32_t seq)
{
    size_t lo = 0, hi = (size_t)f->ncov;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (f->covered[mid] == seq)
            return 1;
        if (f->covered[mid] < seq)
            lo = mid + 1;
        else
            hi = mid;
    }
    return 0;
}

size_t cn_tmapf_entries(const struct cn_tmapf *f)
{
    return (size_t)f->n;
}

size_t cn_tmapf_num_covered(const struct cn_tmapf *f)
{
    return (size_t)f->ncov;
}

uint64_t cn_tmapf_file_bytes(const struct cn_tmapf *f)
{
    return f->bytes;
}

size_t cn_tmapf_mem_bytes(const struct cn_tmapf *f)
{
    return sizeof(*f) + (size_t)f->ncov * 4 + f->nblocks * 4;
}
