#include "telemetry/wal.h"

#include "base/hash.h"
#include "base/log.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <limits.h>
#include <sys/uio.h>
#include <unistd.h>
#include <xxhash.h>

struct wal_file {
    uint64_t start; /* LSN of its first byte */
    uint64_t size;  /* bytes of records; a recycled file may be longer (stale bytes after) */
    int ours;       /* created or recycled by this process: holds version-2 records only */
    int padded;     /* a direct commit left zeros past its records: cut them when leaving */
};

/* Direct writes (opts.direct): blocks of DIO_ALIGN bytes (a multiple of every logical block
 * size Linux has; opts.direct_align may make them smaller), staged in a buffer of DIO_BUF
 * bytes; a larger commit takes several writes. */
#define DIO_ALIGN 4096
#define DIO_BUF   (2u << 20)
/* The staging buffer is one transparent huge page where the system gives them: the kernel
 * then maps and hands the device a 2 MiB write as one piece rather than 512 pages. */
#define DIO_HUGE (2u << 20)
/* Mapped for dbuf: room to align DIO_BUF + DIO_ALIGN bytes at DIO_HUGE. */
#define DIO_MAP (DIO_BUF + DIO_ALIGN + DIO_HUGE)

/* The spare: a file whose records are all in segments, kept to be reused by the next roll
 * instead of being unlinked (see roll). Its name does not match the log's files. */
#define SPARE_NAME "spare.wal"

/* States: files[] sorted by start, the last one open for append as fd, its end == end.
 * Queued records wait in q until cn_wal_commit. */
struct cn_wal {
    struct cn_wal_opts opts;
    char *dir;
    int dirfd;
    int fd;
    struct wal_file *files;
    size_t num_files;
    uint64_t end;
    /* Queued records: headers in hdrs, payloads referenced in place (the caller keeps them
     * alive until cn_wal_commit), written with one pwritev per IOV_MAX pieces. */
    uint8_t (*hdrs)[CN_WAL_HEADER];
    struct iovec *iov;
    size_t q_num, q_cap; /* records */
    uint64_t q_bytes;
    uint64_t q_lsn; /* LSN of the first queued byte */
    int replayed;
    int spare; /* DIR/SPARE_NAME exists, one of ours */
    /* Direct writes: fd_direct when fd has O_DIRECT; dbuf stages a commit's blocks and tail
     * holds the open file's last partial block (its size mod align bytes), written again
     * at the head of the next commit. direct_refused once the file system said no. */
    int fd_direct;
    int direct_refused;
    uint32_t align; /* block size of direct writes, a power of two up to DIO_ALIGN */
    uint8_t *dbuf;  /* DIO_BUF + DIO_ALIGN bytes: the staging buffer, then tail */
    uint8_t *tail;
    void *dmap; /* DIO_MAP bytes mapped, dbuf within them */
};

static void wal_path(const struct cn_wal *w, uint64_t start, char *dst, size_t len)
{
    snprintf(dst, len, "%s/%016llx.wal", w->dir, (unsigned long long)start);
}

static int cmp_files(const void *a, const void *b)
{
    const struct wal_file *x = a, *y = b;
    return x->start < y->start ? -1 : x->start > y->start;
}

static int open_file(struct cn_wal *w, uint64_t start, int create)
{
    char path[4096];
    wal_path(w, start, path, sizeof(path));
    int fd = open(path, O_RDWR | O_CLOEXEC | (create ? O_CREAT | O_EXCL : 0), 0640);
    if (fd < 0)
        return -errno;
    if (create && fsync(w->dirfd) != 0) {
        int e = -errno;
        close(fd);
        return e;
    }
    return fd;
}

/* Makes fd, a file holding size bytes of records, the one commits go to: with O_DIRECT when
 * asked for and the file system takes it, its last partial block read into tail first. */
static int use_fd(struct cn_wal *w, int fd, uint64_t size)
{
    w->fd = fd;
    w->fd_direct = 0;
    if (!w->opts.direct || w->direct_refused)
        return 0;
    if (!w->dbuf) {
        /* Pages of its own (aligned, as O_DIRECT needs), returned to the system at close. */
        void *p = mmap(NULL, DIO_MAP, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (p == MAP_FAILED)
            return CN_ENOMEM;
        w->dmap = p;
        w->dbuf = (uint8_t *)(((uintptr_t)p + DIO_HUGE - 1) & ~(uintptr_t)(DIO_HUGE - 1));
        w->tail = w->dbuf + DIO_BUF;
        (void)madvise(w->dbuf, DIO_BUF, MADV_HUGEPAGE); /* a hint: 4 KiB pages work too */
    }
    size_t part = (size_t)(size & (w->align - 1));
    if (part && pread(fd, w->tail, part, (off_t)(size - part)) != (ssize_t)part)
        return errno ? -errno : CN_EIO;
    int fl = fcntl(fd, F_GETFL);
    if (fl < 0)
        return -errno;
    if (fcntl(fd, F_SETFL, fl | O_DIRECT) != 0) {
        if (errno != EINVAL)
            return -errno;
        w->direct_refused = 1;
        cn_warn("wal", "the file system refuses O_DIRECT: buffered writes", "dir=%s", w->dir);
        return 0;
    }
    w->fd_direct = 1;
    return 0;
}

int cn_wal_open(struct cn_wal **out_wal, const struct cn_wal_opts *opts, char *err, size_t err_len)
{
    struct cn_wal *w = calloc(1, sizeof(*w));
    if (!w)
        return CN_ENOMEM;
    w->opts = *opts;
    uint32_t a = opts->direct_align;
    w->align = a && a <= DIO_ALIGN && !(a & (a - 1)) ? a : DIO_ALIGN;
    w->fd = -1;
    w->dirfd = -1;
    w->dir = strdup(opts->dir);
    int rc = w->dir ? cn_mkdirs(w->dir) : CN_ENOMEM;
    if (rc) {
        snprintf(err, err_len, "%s: cannot create: %s", opts->dir, cn_strerror(rc));
        goto fail;
    }
    w->dirfd = open(w->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    DIR *d = opendir(w->dir);
    if (w->dirfd < 0 || !d) {
        rc = -errno;
        snprintf(err, err_len, "%s: cannot open: %s", opts->dir, cn_strerror(rc));
        if (d)
            closedir(d);
        goto fail;
    }
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        unsigned long long start;
        char tail[8];
        if (strlen(e->d_name) != 20 || sscanf(e->d_name, "%16llx%7s", &start, tail) != 2 ||
            strcmp(tail, ".wal") != 0)
            continue;
        char path[4096];
        wal_path(w, start, path, sizeof(path));
        struct stat st;
        if (stat(path, &st) != 0)
            continue;
        struct wal_file *f = realloc(w->files, (w->num_files + 1) * sizeof(*f));
        if (!f) {
            closedir(d);
            rc = CN_ENOMEM;
            goto fail;
        }
        w->files = f;
        w->files[w->num_files++] = (struct wal_file){start, (uint64_t)st.st_size, 0, 0};
    }
    closedir(d);
    /* A spare left by an earlier run: unlinked, as its content is not known here. */
    unlinkat(w->dirfd, SPARE_NAME, 0);
    if (w->num_files > 1)
        qsort(w->files, w->num_files, sizeof(*w->files), cmp_files);
    if (w->num_files) {
        struct wal_file *last = &w->files[w->num_files - 1];
        w->end = last->start + last->size;
    }
    if (w->end < opts->min_lsn) {
        if (w->num_files) {
            /* Files behind the checkpoint only: their records are in segments already. */
            cn_wal_truncate_before(w, opts->min_lsn);
        }
        if (w->end < opts->min_lsn)
            w->end = opts->min_lsn;
    }
    *out_wal = w;
    return 0;
fail:
    cn_wal_close(w);
    return rc;
}

void cn_wal_close(struct cn_wal *w)
{
    if (!w)
        return;
    if (w->fd >= 0) {
        /* A recycled file's stale bytes past the records go, and a direct commit's padding:
         * a clean start finds none. */
        if (w->num_files && (w->files[w->num_files - 1].ours || w->files[w->num_files - 1].padded))
            (void)ftruncate(w->fd, (off_t)w->files[w->num_files - 1].size);
        close(w->fd);
    }
    if (w->dirfd >= 0) {
        if (w->spare)
            unlinkat(w->dirfd, SPARE_NAME, 0); /* never reused by another run */
        close(w->dirfd);
    }
    free(w->hdrs);
    free(w->iov);
    if (w->dmap)
        munmap(w->dmap, DIO_MAP);
    free(w->files);
    free(w->dir);
    free(w);
}

/* Record formats, byte 9 of the header. Version 1 (0): the checksum is seeded with the
 * type. Version 2 (1): seeded with the type and the record's LSN, so that a record left in
 * a recycled file by its earlier use (another LSN) fails its check and ends the log. */
enum { FORMAT_1 = 0, FORMAT_2 = 1 };

static uint32_t checksum(uint8_t format, uint8_t type, uint64_t lsn, const void *p, size_t n)
{
    uint64_t seed = format == FORMAT_2 ? lsn << 8 | type : type;
    return (uint32_t)cn_hash_long(p, n, seed);
}

static void put_u32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
    p[2] = (uint8_t)(v >> 16);
    p[3] = (uint8_t)(v >> 24);
}

static uint32_t get_u32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* Whether the record at off of fd (LSN lsn) is whole and verifies: the test that tells a
 * corrupt record in the middle of the log (the next one verifies) from the end of the
 * records in a recycled file (what follows is stale and does not). buf holds max_record. */
static int record_ok_at(const struct cn_wal *w, int fd, uint64_t off, uint64_t lsn, uint8_t *buf)
{
    uint8_t h[CN_WAL_HEADER];
    if (pread(fd, h, sizeof(h), (off_t)off) != (ssize_t)sizeof(h))
        return 0;
    uint32_t len = get_u32(h);
    if (len > w->opts.max_record || h[9] > FORMAT_2 || h[10] || h[11])
        return 0;
    if (pread(fd, buf, len, (off_t)(off + CN_WAL_HEADER)) != (ssize_t)len)
        return 0;
    return checksum(h[9], h[8], lsn, buf, len) == get_u32(h + 4);
}

/* Reads exactly n bytes unless the file ends; returns bytes read or -errno. */
static ssize_t read_full(int fd, void *buf, size_t n)
{
    size_t got = 0;
    while (got < n) {
        ssize_t r = read(fd, (char *)buf + got, n - got);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        if (r == 0)
            break;
        got += (size_t)r;
    }
    return (ssize_t)got;
}

int cn_wal_replay(struct cn_wal *w, cn_wal_replay_cb cb, void *ctx,
                  struct cn_wal_replay_stats *out_stats)
{
    struct cn_wal_replay_stats st = {0};
    uint8_t *buf = malloc((size_t)w->opts.max_record + 1);
    int rc = buf ? 0 : CN_ENOMEM;
    for (size_t i = 0; !rc && i < w->num_files; i++) {
        struct wal_file *f = &w->files[i];
        int last = i + 1 == w->num_files;
        char path[4096];
        wal_path(w, f->start, path, sizeof(path));
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0) {
            rc = -errno;
            break;
        }
        st.files++;
        uint64_t off = 0;
        int seen2 = 0; /* a version-2 record was read from this file */
        for (;;) {
            uint8_t h[CN_WAL_HEADER];
            ssize_t n = read_full(fd, h, sizeof(h));
            if (n == 0)
                break;
            const char *bad = NULL;
            uint32_t len = 0;
            if (n < (ssize_t)sizeof(h)) {
                /* Zeros: a direct commit's padding, shorter than a header. */
                bad = "end of records";
                for (ssize_t k = 0; k < n; k++)
                    if (h[k])
                        bad = "torn header";
            } else {
                len = get_u32(h);
                if (len > w->opts.max_record || h[9] > FORMAT_2 || h[10] || h[11])
                    bad = "bad header";
                else if (read_full(fd, buf, len) != (ssize_t)len)
                    bad = "torn record";
                else if (checksum(h[9], h[8], f->start + off, buf, len) != get_u32(h + 4))
                    bad = "checksum mismatch";
            }
            /* In the last file written in version 2, a record failing its check ends the log
             * unless the record after it verifies: past the last record of a recycled file
             * lie the stale bytes of its earlier use. */
            if (bad && bad[0] == 'c' && last && (h[9] == FORMAT_2 || seen2) &&
                !record_ok_at(w, fd, off + CN_WAL_HEADER + len,
                              f->start + off + CN_WAL_HEADER + len, buf))
                bad = "end of records";
            else if (bad && bad[0] == 'c' && !(last && off + CN_WAL_HEADER + len == f->size)) {
                /* The framing held: skip this one record, keep the rest of the file. */
                cn_error("wal", "corrupt record skipped", "file=%s offset=%llu bytes=%u", path,
                         (unsigned long long)off, (unsigned)(CN_WAL_HEADER + len));
                st.corrupt++;
                off += CN_WAL_HEADER + len;
                continue;
            }
            if (bad) {
                uint64_t rest = f->size - off;
                if (last) {
                    /* A crash mid-append leaves a torn tail: cut it so appends follow the
                     * last good record. Past the last record of a recycled file or of a
                     * direct commit (its padding) is no tear: cut as well, quietly. */
                    if (bad[0] == 'e')
                        cn_info("wal", "cutting the bytes after the last record",
                                "file=%s offset=%llu bytes=%llu", path, (unsigned long long)off,
                                (unsigned long long)rest);
                    else
                        cn_warn("wal", "cutting a torn tail",
                                "file=%s offset=%llu bytes=%llu reason=\"%s\"", path,
                                (unsigned long long)off, (unsigned long long)rest, bad);
                    if (truncate(path, (off_t)off) != 0)
                        rc = -errno;
                    st.truncated += rest;
                    f->size = off;
                    w->end = f->start + off;
                } else {
                    cn_error("wal", "corrupt record, rest of file skipped",
                             "file=%s offset=%llu bytes=%llu reason=\"%s\"", path,
                             (unsigned long long)off, (unsigned long long)rest, bad);
                    st.corrupt++;
                }
                break;
            }
            seen2 |= h[9] == FORMAT_2;
            st.records++;
            st.bytes += len;
            int r = cb ? cb(ctx, f->start + off, h[8], buf, len) : 0;
            off += CN_WAL_HEADER + len;
            if (r) {
                rc = r;
                break;
            }
        }
        close(fd);
    }
    free(buf);
    w->replayed = 1;
    if (out_stats)
        *out_stats = st;
    return rc;
}

int cn_wal_append(struct cn_wal *w, uint8_t type, const void *data, size_t len, uint64_t *out_lsn)
{
    if (len > w->opts.max_record)
        return CN_ELIMIT;
    if (w->q_num == w->q_cap) {
        size_t n = w->q_cap ? w->q_cap * 2 : 64;
        uint8_t(*h)[CN_WAL_HEADER] = realloc(w->hdrs, n * sizeof(*h));
        if (!h)
            return CN_ENOMEM;
        w->hdrs = h;
        struct iovec *v = realloc(w->iov, 2 * n * sizeof(*v));
        if (!v)
            return CN_ENOMEM;
        w->iov = v;
        w->q_cap = n;
    }
    if (w->q_num == 0) {
        w->q_lsn = w->end;
        w->q_bytes = 0;
    }
    uint8_t *h = w->hdrs[w->q_num];
    uint64_t lsn = w->q_lsn + w->q_bytes;
    memset(h, 0, CN_WAL_HEADER);
    put_u32(h, (uint32_t)len);
    put_u32(h + 4, checksum(FORMAT_2, type, lsn, data, len));
    h[8] = type;
    h[9] = FORMAT_2;
    if (out_lsn)
        *out_lsn = lsn;
    w->iov[2 * w->q_num] = (struct iovec){h, CN_WAL_HEADER};
    w->iov[2 * w->q_num + 1] = (struct iovec){(void *)data, len};
    w->q_num++;
    w->q_bytes += CN_WAL_HEADER + len;
    return 0;
}

/* Writes iov[0, n) at off, whole. Returns 0 or -errno. */
static int pwrite_all(int fd, struct iovec *iov, size_t n, uint64_t off)
{
    while (n) {
        int cnt = n > IOV_MAX ? IOV_MAX : (int)n;
        ssize_t w = pwritev(fd, iov, cnt, (off_t)off);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        off += (uint64_t)w;
        /* Skip what was written; a partial write leaves the rest of one piece. */
        size_t left = (size_t)w;
        while (n && left >= iov->iov_len) {
            left -= iov->iov_len;
            iov++;
            n--;
        }
        if (n && left) {
            iov->iov_base = (char *)iov->iov_base + left;
            iov->iov_len -= left;
        }
    }
    return 0;
}

/* Writes buf[0, n) at off, whole. Returns 0 or -errno. */
static int pwrite_buf(int fd, const uint8_t *buf, size_t n, uint64_t off)
{
    struct iovec v = {(void *)buf, n};
    return pwrite_all(fd, &v, 1, off);
}

/* A direct write refused with EINVAL although the file took O_DIRECT: the file system wants
 * an alignment it did not say. Buffered from then on; the commit is written again so. */
static int drop_direct(struct cn_wal *w)
{
    int fl = fcntl(w->fd, F_GETFL);
    if (fl < 0 || fcntl(w->fd, F_SETFL, fl & ~O_DIRECT) != 0)
        return -errno;
    w->fd_direct = 0;
    w->direct_refused = 1;
    cn_warn("wal", "the file system refuses O_DIRECT writes: buffered writes", "dir=%s align=%u",
            w->dir, (unsigned)w->align);
    return 0;
}

#if defined(__SSE2__)
#include <emmintrin.h>
/* memcpy into the staging buffer with non-temporal stores: its bytes go to the device, not
 * back to this CPU, so they need not push what the other threads work on out of the cache. */
static void stage_copy(uint8_t *dst, const uint8_t *src, size_t n)
{
    size_t head = (size_t)(-(uintptr_t)dst & 15);
    if (n < 256) {
        memcpy(dst, src, n);
        return;
    }
    memcpy(dst, src, head);
    dst += head;
    src += head;
    n -= head;
    for (; n >= 64; n -= 64, dst += 64, src += 64) {
        __m128i a = _mm_loadu_si128((const __m128i *)src);
        __m128i b = _mm_loadu_si128((const __m128i *)(src + 16));
        __m128i c = _mm_loadu_si128((const __m128i *)(src + 32));
        __m128i d = _mm_loadu_si128((const __m128i *)(src + 48));
        _mm_stream_si128((__m128i *)dst, a);
        _mm_stream_si128((__m128i *)(dst + 16), b);
        _mm_stream_si128((__m128i *)(dst + 32), c);
        _mm_stream_si128((__m128i *)(dst + 48), d);
    }
    memcpy(dst, src, n);
}
static void stage_fence(void)
{
    _mm_sfence();
}
#else
static void stage_copy(uint8_t *dst, const uint8_t *src, size_t n)
{
    memcpy(dst, src, n);
}
static void stage_fence(void) {}
#endif

/* Writes the queue at size (the open file's end) through dbuf in whole blocks: the file's
 * last partial block (tail) first, the records, zeros to the block's end. out_fill: the bytes
 * of the last buffer written, whose last partial block is the next tail once committed. */
static int write_direct(struct cn_wal *w, uint64_t size, size_t *out_fill)
{
    size_t fill = (size_t)(size & (w->align - 1));
    uint64_t off = size - fill;
    memcpy(w->dbuf, w->tail, fill);
    for (size_t i = 0; i < 2 * w->q_num; i++) {
        const uint8_t *p = w->iov[i].iov_base;
        size_t n = w->iov[i].iov_len;
        while (n) {
            size_t k = DIO_BUF - fill < n ? DIO_BUF - fill : n;
            stage_copy(w->dbuf + fill, p, k);
            fill += k;
            p += k;
            n -= k;
            if (fill == DIO_BUF) {
                stage_fence();
                int rc = pwrite_buf(w->fd, w->dbuf, DIO_BUF, off);
                if (rc)
                    return rc;
                off += DIO_BUF;
                fill = 0;
            }
        }
    }
    *out_fill = fill;
    if (!fill)
        return 0;
    size_t whole = (fill + w->align - 1) & ~(size_t)(w->align - 1);
    memset(w->dbuf + fill, 0, whole - fill);
    stage_fence();
    return pwrite_buf(w->fd, w->dbuf, whole, off);
}

/* Starts a new file at the log's end. It is the spare when there is one: renamed into
 * place and written over from its start, so that the commits into it write data only, not
 * the file's size or new blocks (fdatasync then has no metadata to write), and the file left
 * behind is first cut to its records, so that only the last file can hold stale bytes. */
static int roll(struct cn_wal *w)
{
    if (w->fd >= 0) {
        struct wal_file *cur = &w->files[w->num_files - 1];
        if (w->opts.fsync == CN_WAL_FSYNC_ALWAYS && fdatasync(w->fd) != 0)
            return -errno;
        if ((cur->ours || cur->padded) &&
            (ftruncate(w->fd, (off_t)cur->size) != 0 ||
             (w->opts.fsync == CN_WAL_FSYNC_ALWAYS && fsync(w->fd) != 0)))
            return -errno;
        close(w->fd);
        w->fd = -1;
    }
    struct wal_file *f = realloc(w->files, (w->num_files + 1) * sizeof(*f));
    if (!f)
        return CN_ENOMEM;
    w->files = f;
    int fd = -1;
    if (w->spare) {
        char name[32];
        snprintf(name, sizeof(name), "%016llx.wal", (unsigned long long)w->end);
        w->spare = 0;
        if (renameat(w->dirfd, SPARE_NAME, w->dirfd, name) == 0) {
            fd = open_file(w, w->end, 0);
            if (fd >= 0 && fsync(w->dirfd) != 0) {
                close(fd);
                fd = -errno;
            }
            if (fd < 0)
                return fd;
        } else {
            unlinkat(w->dirfd, SPARE_NAME, 0);
        }
    }
    if (fd < 0)
        fd = open_file(w, w->end, 1);
    if (fd < 0)
        return fd;
    w->files[w->num_files++] = (struct wal_file){w->end, 0, 1, 0};
    return use_fd(w, fd, 0);
}

void cn_wal_abort(struct cn_wal *w)
{
    w->q_num = 0; /* nothing of the queue is written before cn_wal_commit */
}

int cn_wal_commit(struct cn_wal *w)
{
    CN_BUG_ON(!w->replayed);
    if (w->q_num == 0)
        return 0;
    int rc = 0;
    struct wal_file *cur = w->num_files ? &w->files[w->num_files - 1] : NULL;
    if (!cur || cur->size >= w->opts.segment_bytes) {
        rc = roll(w);
        cur = rc ? NULL : &w->files[w->num_files - 1];
    } else if (w->fd < 0) {
        rc = open_file(w, cur->start, 0);
        if (rc >= 0)
            rc = use_fd(w, rc, cur->size);
    }
    size_t fill = 0;
    int wrote = 0;
    if (!rc && w->fd_direct) {
        rc = write_direct(w, cur->size, &fill);
        if (rc == -EINVAL) {
            cur->padded = 1; /* a block before the refused one may have gone through */
            rc = drop_direct(w);
        } else {
            wrote = 1;
            cur->padded |= (fill & (w->align - 1)) != 0;
        }
    }
    if (!rc && !wrote)
        rc = pwrite_all(w->fd, w->iov, 2 * w->q_num, cur->size);
    if (!rc && w->opts.fsync == CN_WAL_FSYNC_ALWAYS && fdatasync(w->fd) != 0)
        rc = -errno;
    if (rc) {
        /* Keep the log whole: drop what this commit may have half-written. */
        if (w->fd >= 0 && cur && ftruncate(w->fd, (off_t)cur->size) != 0) {
            close(w->fd);
            w->fd = -1;
        }
        w->q_num = 0;
        return rc;
    }
    cur->size += w->q_bytes;
    w->end += w->q_bytes;
    w->q_num = 0;
    if (w->fd_direct) {
        size_t part = fill & (w->align - 1);
        memcpy(w->tail, w->dbuf + fill - part, part);
    }
    return 0;
}

/* Removes the file at start, or keeps it as the spare when it is one of ours and there is
 * none yet. Returns 0 or -errno. */
static int drop_file(struct cn_wal *w, const struct wal_file *f)
{
    char path[4096];
    wal_path(w, f->start, path, sizeof(path));
    if (f->ours && !w->spare) {
        char name[32];
        snprintf(name, sizeof(name), "%016llx.wal", (unsigned long long)f->start);
        if (renameat(w->dirfd, name, w->dirfd, SPARE_NAME) == 0) {
            w->spare = 1;
            return 0;
        }
    }
    if (unlink(path) != 0 && errno != ENOENT)
        return -errno;
    return 0;
}

int cn_wal_truncate_before(struct cn_wal *w, uint64_t lsn)
{
    size_t keep = 0;
    while (keep + 1 < w->num_files && w->files[keep + 1].start <= lsn) {
        int rc = drop_file(w, &w->files[keep]);
        if (rc)
            return rc;
        keep++;
    }
    if (keep) {
        memmove(w->files, w->files + keep, (w->num_files - keep) * sizeof(*w->files));
        w->num_files -= keep;
    }
    /* Everything written is covered: the last file goes too, and the next commit starts a
     * new one at the same LSN, so a quiet store keeps no log behind its segments. */
    if (w->num_files == 1 && lsn >= w->end && w->q_num == 0 && w->files[0].size > 0) {
        if (w->fd >= 0) {
            close(w->fd);
            w->fd = -1;
        }
        /* Nor a spare: ingest has paused, and the next file is made when it resumes. */
        char path[4096];
        wal_path(w, w->files[0].start, path, sizeof(path));
        if (unlink(path) != 0 && errno != ENOENT)
            return -errno;
        if (w->spare && unlinkat(w->dirfd, SPARE_NAME, 0) == 0)
            w->spare = 0;
        w->num_files = 0;
        keep = 1;
    }
    if (keep)
        fsync(w->dirfd);
    return 0;
}

int cn_wal_direct(const struct cn_wal *w)
{
    return w->fd_direct;
}

uint64_t cn_wal_end(const struct cn_wal *w)
{
    return w->end;
}

uint64_t cn_wal_size(const struct cn_wal *w)
{
    uint64_t n = 0;
    for (size_t i = 0; i < w->num_files; i++)
        n += w->files[i].size;
    return n;
}
