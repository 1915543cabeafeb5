#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "telemetry/wal.h"
#include "../../common/tmpdir.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

static char dir[256];
/* Every test runs twice: with buffered writes, then with O_DIRECT (cn_wal_opts.direct). */
static int direct;
static uint32_t direct_align; /* cn_wal_opts.direct_align of the logs the tests open */

static int setup(void **state)
{
    (void)state;
    snprintf(dir, sizeof(dir), "/tmp/cairn-test-wal-XXXXXX");
    if (!mkdtemp(dir))
        return -1;
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    cn_test_remove_dir(dir);
    return 0;
}

static int spare_exists(void);

static struct cn_wal *open_wal_max(uint64_t segment_bytes, uint32_t max_record)
{
    struct cn_wal_opts o = {.dir = dir,
                            .segment_bytes = segment_bytes,
                            .max_record = max_record,
                            .fsync = CN_WAL_FSYNC_ALWAYS,
                            .direct = direct,
                            .direct_align = direct_align};
    struct cn_wal *w = NULL;
    char err[256];
    assert_int_equal(cn_wal_open(&w, &o, err, sizeof(err)), 0);
    return w;
}

static struct cn_wal *open_wal(uint64_t segment_bytes)
{
    return open_wal_max(segment_bytes, 1024);
}

struct seen {
    int n;
    char data[64][64];
    uint8_t types[64];
    uint64_t lsns[64];
};

static int collect(void *ctx, uint64_t lsn, uint8_t type, const uint8_t *data, size_t len)
{
    struct seen *s = ctx;
    if (s->n >= 64)
        return 1;
    snprintf(s->data[s->n], sizeof(s->data[0]), "%.*s", (int)len, (const char *)data);
    s->types[s->n] = type;
    s->lsns[s->n] = lsn;
    s->n++;
    return 0;
}

static void roundtrip_and_roll(void **state)
{
    (void)state;
    struct cn_wal *w = open_wal(64);
    struct seen s = {0};
    assert_int_equal(cn_wal_replay(w, collect, &s, NULL), 0);
    assert_int_equal(s.n, 0);
    uint64_t lsn[10];
    char recs[10][32]; /* appended records are referenced until the commit */
    for (int i = 0; i < 10; i++) {
        char *rec = recs[i];
        int n = snprintf(rec, sizeof(recs[i]), "record-%d-padding-padding", i);
        assert_int_equal(cn_wal_append(w, (uint8_t)(i % 3 + 1), rec, (size_t)n, &lsn[i]), 0);
        if (i % 2)
            assert_int_equal(cn_wal_commit(w), 0);
    }
    assert_int_equal(cn_wal_commit(w), 0);
    uint64_t end = cn_wal_end(w);
    cn_wal_close(w);

    w = open_wal(64);
    memset(&s, 0, sizeof(s));
    struct cn_wal_replay_stats st;
    assert_int_equal(cn_wal_replay(w, collect, &s, &st), 0);
    assert_int_equal(s.n, 10);
    assert_true(st.files > 1); /* 64-byte files rolled */
    for (int i = 0; i < 10; i++) {
        char rec[32];
        snprintf(rec, sizeof(rec), "record-%d-padding-padding", i);
        assert_string_equal(s.data[i], rec);
        assert_int_equal(s.types[i], i % 3 + 1);
        assert_int_equal(s.lsns[i], lsn[i]);
    }
    assert_int_equal(cn_wal_end(w), end);
    /* Dropping files before the 6th record keeps it and everything after. */
    assert_int_equal(cn_wal_truncate_before(w, lsn[5]), 0);
    cn_wal_close(w);
    w = open_wal(64);
    memset(&s, 0, sizeof(s));
    assert_int_equal(cn_wal_replay(w, collect, &s, NULL), 0);
    assert_true(s.n >= 5 && s.n < 10);
    assert_string_equal(s.data[s.n - 1], "record-9-padding-padding");
    cn_wal_close(w);
}

static void last_file_of(char *out, size_t len)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    char best[300] = "";
    while ((e = readdir(d)) != NULL)
        if (strstr(e->d_name, ".wal") && strcmp(e->d_name, best) > 0)
            snprintf(best, sizeof(best), "%s", e->d_name);
    closedir(d);
    snprintf(out, len, "%s/%s", dir, best);
}

static void torn_tail_is_cut(void **state)
{
    (void)state;
    struct cn_wal *w = open_wal(1 << 20);
    assert_int_equal(cn_wal_replay(w, NULL, NULL, NULL), 0);
    assert_int_equal(cn_wal_append(w, 1, "first", 5, NULL), 0);
    assert_int_equal(cn_wal_append(w, 1, "second", 6, NULL), 0);
    assert_int_equal(cn_wal_commit(w), 0);
    cn_wal_close(w);
    /* A crash in the middle of the second record. */
    char path[1024];
    last_file_of(path, sizeof(path));
    assert_int_equal(truncate(path, CN_WAL_HEADER + 5 + CN_WAL_HEADER + 3), 0);
    w = open_wal(1 << 20);
    struct seen s = {0};
    struct cn_wal_replay_stats st;
    assert_int_equal(cn_wal_replay(w, collect, &s, &st), 0);
    assert_int_equal(s.n, 1);
    assert_string_equal(s.data[0], "first");
    assert_int_equal(st.truncated, CN_WAL_HEADER + 3);
    /* Appends continue right after the good record. */
    assert_int_equal(cn_wal_append(w, 1, "third", 5, NULL), 0);
    assert_int_equal(cn_wal_commit(w), 0);
    cn_wal_close(w);
    w = open_wal(1 << 20);
    memset(&s, 0, sizeof(s));
    assert_int_equal(cn_wal_replay(w, collect, &s, NULL), 0);
    assert_int_equal(s.n, 2);
    assert_string_equal(s.data[1], "third");
    cn_wal_close(w);
}

static void flipped_byte_detected(void **state)
{
    (void)state;
    struct cn_wal *w = open_wal(48);
    assert_int_equal(cn_wal_replay(w, NULL, NULL, NULL), 0);
    for (int i = 0; i < 6; i++) {
        assert_int_equal(cn_wal_append(w, 2, "0123456789abcdef0123456789", 26, NULL), 0);
        assert_int_equal(cn_wal_commit(w), 0);
    }
    cn_wal_close(w);
    /* Corrupt the payload of the first file's record. */
    DIR *d = opendir(dir);
    struct dirent *e;
    char first[300] = "~";
    while ((e = readdir(d)) != NULL)
        if (strstr(e->d_name, ".wal") && strcmp(e->d_name, first) < 0)
            snprintf(first, sizeof(first), "%s", e->d_name);
    closedir(d);
    char path[1024];
    snprintf(path, sizeof(path), "%s/%s", dir, first);
    int fd = open(path, O_RDWR);
    assert_true(fd >= 0);
    assert_int_equal(pwrite(fd, "X", 1, CN_WAL_HEADER + 3), 1);
    close(fd);
    w = open_wal(48);
    struct seen s = {0};
    struct cn_wal_replay_stats st;
    assert_int_equal(cn_wal_replay(w, collect, &s, &st), 0);
    assert_int_equal(st.corrupt, 1);
    assert_int_equal(s.n, 5); /* everything else is served */
    cn_wal_close(w);
}

/* Once every file is removed behind a checkpoint, the log continues after it: new records
 * never reuse LSNs that segments already cover. */
static void continues_after_checkpoint(void **state)
{
    (void)state;
    struct cn_wal *w = open_wal(1 << 20);
    assert_int_equal(cn_wal_replay(w, NULL, NULL, NULL), 0);
    assert_int_equal(cn_wal_append(w, 1, "sealed", 6, NULL), 0);
    assert_int_equal(cn_wal_commit(w), 0);
    uint64_t end = cn_wal_end(w);
    assert_int_equal(cn_wal_truncate_before(w, end), 0);
    assert_int_equal(cn_wal_size(w), 0);
    assert_false(spare_exists()); /* a paused log keeps nothing on disk */
    cn_wal_close(w);
    struct cn_wal_opts o = {.dir = dir,
                            .segment_bytes = 1 << 20,
                            .max_record = 1024,
                            .fsync = CN_WAL_FSYNC_ALWAYS,
                            .min_lsn = end,
                            .direct = direct};
    char err[256];
    assert_int_equal(cn_wal_open(&w, &o, err, sizeof(err)), 0);
    struct seen s = {0};
    assert_int_equal(cn_wal_replay(w, collect, &s, NULL), 0);
    assert_int_equal(s.n, 0);
    uint64_t lsn;
    assert_int_equal(cn_wal_append(w, 1, "fresh", 5, &lsn), 0);
    assert_int_equal(lsn, end);
    assert_int_equal(cn_wal_commit(w), 0);
    cn_wal_close(w);
    assert_int_equal(cn_wal_open(&w, &o, err, sizeof(err)), 0);
    memset(&s, 0, sizeof(s));
    assert_int_equal(cn_wal_replay(w, collect, &s, NULL), 0);
    assert_int_equal(s.n, 1);
    assert_int_equal(s.lsns[0], end);
    assert_string_equal(s.data[0], "fresh");
    cn_wal_close(w);
}

static int spare_exists(void)
{
    char p[512];
    snprintf(p, sizeof(p), "%s/spare.wal", dir);
    return access(p, F_OK) == 0;
}

/* Appends and commits "<prefix>-<i>" padded to 40 bytes; returns its LSN. */
static uint64_t put_rec(struct cn_wal *w, char (*bufs)[48], const char *prefix, int i)
{
    uint64_t lsn;
    int n = snprintf(bufs[i], 48, "%s-%02d-padding-padding-padding-padding", prefix, i);
    assert_int_equal(cn_wal_append(w, 1, bufs[i], (size_t)CN_MIN(n, 40), &lsn), 0);
    assert_int_equal(cn_wal_commit(w), 0);
    return lsn;
}

/* A file whose records are all sealed becomes the spare, and the next file is the spare
 * written over: a restart without a clean close (kill -9) reads the new records up to the
 * stale ones of its earlier use, counts nothing corrupt, and appends after them. */
static void recycled_file_ends_at_its_records(void **state)
{
    (void)state;
    static char bufs[32][48];
    struct cn_wal *w = open_wal(200); /* 4 records of 50 bytes a file */
    assert_int_equal(cn_wal_replay(w, NULL, NULL, NULL), 0);
    uint64_t lsn[12];
    for (int i = 0; i < 12; i++)
        lsn[i] = put_rec(w, bufs, "old", i);
    /* The first two files are sealed: one is kept as the spare, the other unlinked. */
    assert_int_equal(cn_wal_truncate_before(w, lsn[8]), 0);
    assert_true(spare_exists());
    static char nbufs[32][48];
    put_rec(w, nbufs, "new", 0); /* the third file is full: the spare, renamed, holds it */
    assert_false(spare_exists());
    uint64_t l1 = put_rec(w, nbufs, "new", 1);

    /* kill -9: another process opens the log while this one never closed it. */
    struct cn_wal *w2 = open_wal(200);
    struct seen s = {0};
    struct cn_wal_replay_stats st;
    assert_int_equal(cn_wal_replay(w2, collect, &s, &st), 0);
    assert_int_equal(st.corrupt, 0);
    assert_int_equal(s.n, 6); /* old-08..old-11, new-00, new-01 */
    assert_string_equal(s.data[4], "new-00-padding-padding-padding-padding");
    assert_string_equal(s.data[5], "new-01-padding-padding-padding-padding");
    assert_int_equal(s.lsns[5], l1);
    assert_true(st.truncated > 0); /* the stale records of the spare's earlier use */
    cn_wal_close(w); /* the killed process's memory, gone: the file ends where w2 found */
    uint64_t l2;
    assert_int_equal(cn_wal_append(w2, 1, "after", 5, &l2), 0);
    assert_int_equal(cn_wal_commit(w2), 0);
    assert_int_equal(l2, l1 + CN_WAL_HEADER + strlen(nbufs[1]));
    cn_wal_close(w2);

    w = open_wal(200);
    memset(&s, 0, sizeof(s));
    assert_int_equal(cn_wal_replay(w, collect, &s, &st), 0);
    assert_int_equal(st.corrupt, 0);
    assert_int_equal(s.n, 7);
    assert_string_equal(s.data[6], "after");
    cn_wal_close(w);
}

/* In a recycled file, a damaged record followed by a good one is skipped and counted, not
 * taken for the end of the records. */
static void recycled_file_skips_a_damaged_record(void **state)
{
    (void)state;
    static char bufs[32][48], nbufs[32][48];
    struct cn_wal *w = open_wal(200);
    assert_int_equal(cn_wal_replay(w, NULL, NULL, NULL), 0);
    uint64_t lsn[8];
    for (int i = 0; i < 8; i++)
        lsn[i] = put_rec(w, bufs, "old", i);
    assert_int_equal(cn_wal_truncate_before(w, lsn[4]), 0);
    assert_true(spare_exists());
    for (int i = 0; i < 3; i++)
        put_rec(w, nbufs, "new", i); /* the second file is full: all three go to the spare */
    assert_false(spare_exists());
    cn_wal_close(w);
    char path[1024];
    last_file_of(path, sizeof(path));
    int fd = open(path, O_RDWR);
    assert_true(fd >= 0);
    assert_int_equal(pwrite(fd, "X", 1, CN_WAL_HEADER + 3), 1); /* new-00's payload */
    close(fd);
    w = open_wal(200);
    struct seen s = {0};
    struct cn_wal_replay_stats st;
    assert_int_equal(cn_wal_replay(w, collect, &s, &st), 0);
    assert_int_equal(st.corrupt, 1);
    assert_int_equal(s.n, 6); /* old-04..old-07, new-01, new-02 */
    assert_string_equal(s.data[5], "new-02-padding-padding-padding-padding");
    cn_wal_close(w);
}

static void record_limit(void **state)
{
    (void)state;
    struct cn_wal *w = open_wal(1 << 20);
    assert_int_equal(cn_wal_replay(w, NULL, NULL, NULL), 0);
    char big[1025];
    memset(big, 'x', sizeof(big));
    assert_int_equal(cn_wal_append(w, 1, big, 1024, NULL), 0);
    assert_int_equal(cn_wal_append(w, 1, big, 1025, NULL), CN_ELIMIT);
    assert_int_equal(cn_wal_commit(w), 0);
    cn_wal_close(w);
}

/* A group refused because one append failed leaves nothing queued for the next commit. */
static void abort_drops_the_queue(void **state)
{
    (void)state;
    struct cn_wal *w = open_wal(1 << 20);
    assert_int_equal(cn_wal_replay(w, NULL, NULL, NULL), 0);
    char big[1025];
    memset(big, 'x', sizeof(big));
    uint64_t lsn_a, lsn_c;
    assert_int_equal(cn_wal_append(w, 1, "refused-a", 9, &lsn_a), 0);
    assert_int_equal(cn_wal_append(w, 1, big, sizeof(big), NULL), CN_ELIMIT);
    cn_wal_abort(w);
    assert_int_equal(cn_wal_append(w, 2, "kept-c", 6, &lsn_c), 0);
    assert_int_equal(lsn_c, lsn_a); /* the refused record took no place in the log */
    assert_int_equal(cn_wal_commit(w), 0);
    cn_wal_close(w);
    w = open_wal(1 << 20);
    struct seen s = {0};
    assert_int_equal(cn_wal_replay(w, collect, &s, NULL), 0);
    assert_int_equal(s.n, 1);
    assert_string_equal(s.data[0], "kept-c");
    assert_int_equal(s.lsns[0], lsn_c);
    cn_wal_close(w);
}

static off_t file_size(const char *path)
{
    struct stat sb;
    assert_int_equal(stat(path, &sb), 0);
    return sb.st_size;
}

/* Fills rec with n bytes that depend on seed and position. */
static void fill_rec(uint8_t *rec, size_t n, unsigned seed)
{
    for (size_t i = 0; i < n; i++)
        rec[i] = (uint8_t)(seed * 31 + i * 7 + (i >> 9));
}

struct sizes {
    int n;
    size_t len[16];
    uint8_t ok[16];
};

static int check_recs(void *ctx, uint64_t lsn, uint8_t type, const uint8_t *data, size_t len)
{
    (void)lsn;
    struct sizes *s = ctx;
    if (s->n >= 16)
        return 1;
    static uint8_t want[3 << 20];
    fill_rec(want, len, type);
    s->len[s->n] = len;
    s->ok[s->n] = memcmp(want, data, len) == 0;
    s->n++;
    return 0;
}

/* Replays w and checks it returns the n records of lens, in order, each intact. */
static void replay_lens(struct cn_wal *w, const size_t *lens, int n, struct cn_wal_replay_stats *st)
{
    struct sizes s = {0};
    assert_int_equal(cn_wal_replay(w, check_recs, &s, st), 0);
    assert_int_equal(s.n, n);
    for (int i = 0; i < n; i++) {
        assert_int_equal(s.len[i], lens[i]);
        assert_true(s.ok[i]);
    }
}

/* Direct commits: each rewrites the block the last one ended in, pads to a whole block,
 * stages a commit larger than its buffer in several writes; a process killed leaves the
 * padding, which replay cuts as the end of the records, not as damage; a reopened log
 * reads its last partial block back before appending after it. */
static void direct_blocks_and_padding(void **state)
{
    (void)state;
    static uint8_t recs[6][3 << 20];
    /* 3000 and 5000 bytes share blocks with their neighbours; 2.5 MiB spans the 1 MiB
     * staging buffer three times; 1 byte ends a commit mid-block. */
    const size_t lens[6] = {3000, 5000, 1, (5u << 20) / 2 + 17, 4096 - CN_WAL_HEADER, 777};
    struct cn_wal *w = open_wal_max(64 << 20, 3 << 20);
    assert_int_equal(cn_wal_replay(w, NULL, NULL, NULL), 0);
    uint64_t end = 0;
    for (int i = 0; i < 5; i++) {
        fill_rec(recs[i], lens[i], (unsigned)i + 1);
        assert_int_equal(cn_wal_append(w, (uint8_t)(i + 1), recs[i], lens[i], NULL), 0);
        if (i != 3) /* records 4 and 5 go in one commit */
            assert_int_equal(cn_wal_commit(w), 0);
        end += CN_WAL_HEADER + lens[i];
    }
    assert_int_equal(cn_wal_end(w), end);
    assert_int_equal(cn_wal_direct(w), direct);
    char path[1024];
    last_file_of(path, sizeof(path));
    if (direct)
        assert_int_equal(file_size(path), (off_t)((end + 4095) & ~(uint64_t)4095));
    else
        assert_int_equal(file_size(path), (off_t)end);

    /* kill -9: another process opens the log; this one never closes it cleanly. */
    struct cn_wal *w2 = open_wal_max(64 << 20, 3 << 20);
    struct cn_wal_replay_stats st;
    replay_lens(w2, lens, 5, &st);
    assert_int_equal(st.corrupt, 0);
    assert_int_equal(st.truncated, direct ? ((end + 4095) & ~(uint64_t)4095) - end : 0);
    assert_int_equal(file_size(path), (off_t)end);
    /* The killed process's memory goes (its close cuts the file where w2 found its end). */
    cn_wal_close(w);
    fill_rec(recs[5], lens[5], 6);
    assert_int_equal(cn_wal_append(w2, 6, recs[5], lens[5], NULL), 0);
    assert_int_equal(cn_wal_commit(w2), 0);
    end += CN_WAL_HEADER + lens[5];
    cn_wal_close(w2);
    assert_int_equal(file_size(path), (off_t)end); /* a clean close cuts the padding */

    w = open_wal_max(64 << 20, 3 << 20);
    replay_lens(w, lens, 6, &st);
    assert_int_equal(st.truncated, 0);
    cn_wal_close(w);
}

/* The random test's log as it should read: every committed record's LSN, length, seed. */
#define RAND_MAX_RECS 4096
struct model {
    size_t n;
    uint64_t lsn[RAND_MAX_RECS];
    uint32_t len[RAND_MAX_RECS];
    size_t next; /* replay: the index the next record must have */
    int bad;     /* replay: a record out of order, of the wrong length or content */
};

static int check_model(void *ctx, uint64_t lsn, uint8_t type, const uint8_t *data, size_t len)
{
    (void)type;
    struct model *m = ctx;
    static uint8_t want[64 << 10];
    size_t i = m->next;
    if (m->bad == 0 && i > 0) { /* after the first record, each follows the one before */
        if (i >= m->n || m->lsn[i] != lsn)
            m->bad = 1;
    } else if (m->bad == 0) { /* the first: any record of the model (files were dropped) */
        while (i < m->n && m->lsn[i] != lsn)
            i++;
        if (i == m->n)
            m->bad = 2;
    }
    if (m->bad == 0) {
        fill_rec(want, len, (unsigned)i);
        if (len != m->len[i] || memcmp(want, data, len) != 0)
            m->bad = 3;
    }
    m->next = i + 1;
    return 0;
}

static uint64_t rnd(uint64_t *x)
{
    *x ^= *x << 13;
    *x ^= *x >> 7;
    *x ^= *x << 17;
    return *x;
}

/* Random records (1 byte to 40 KB) in random commits of 1-8, over 256 KiB files; now and then
 * a restart without a clean close (another process replays while this one never closed) or
 * files dropped behind a checkpoint. Every replay must read the records from some point on,
 * in order and intact, up to the last one committed. Run buffered and direct alike. */
static void random_commits_and_kills(void **state)
{
    (void)state;
    static struct model m;
    static uint8_t bufs[8][40000];
    memset(&m, 0, sizeof(m));
    uint64_t x = 0x9e3779b97f4a7c15ull;
    struct cn_wal *w = open_wal_max(256 << 10, 64 << 10);
    assert_int_equal(cn_wal_replay(w, NULL, NULL, NULL), 0);
    int kills = 0, drops = 0;
    for (int round = 0; round < 300 && m.n + 8 <= RAND_MAX_RECS; round++) {
        int k = 1 + (int)(rnd(&x) % 8);
        for (int j = 0; j < k; j++) {
            uint64_t r = rnd(&x);
            size_t len = r % 4 == 0 ? 1 + r % 13 : 1 + (r >> 8) % 40000;
            fill_rec(bufs[j], len, (unsigned)m.n);
            assert_int_equal(cn_wal_append(w, 1, bufs[j], len, &m.lsn[m.n]), 0);
            m.len[m.n++] = (uint32_t)len;
        }
        assert_int_equal(cn_wal_commit(w), 0);
        assert_int_equal(cn_wal_direct(w), direct);
        uint64_t r = rnd(&x) % 100;
        if (r < 10) { /* kill -9 and restart */
            struct cn_wal *w2 = open_wal_max(256 << 10, 64 << 10);
            struct cn_wal_replay_stats st;
            m.next = 0;
            m.bad = 0;
            assert_int_equal(cn_wal_replay(w2, check_model, &m, &st), 0);
            if (m.bad || m.next != m.n)
                fail_msg("round %d: replay bad=%d read up to %zu of %zu", round, m.bad, m.next,
                         m.n);
            assert_int_equal(st.corrupt, 0);
            cn_wal_close(w);
            w = w2;
            kills++;
        } else if (r < 15) { /* a checkpoint half way through the records */
            assert_int_equal(cn_wal_truncate_before(w, m.lsn[m.n / 2]), 0);
            drops++;
        }
    }
    cn_wal_close(w);
    w = open_wal_max(256 << 10, 64 << 10);
    struct cn_wal_replay_stats st;
    m.next = 0;
    m.bad = 0;
    assert_int_equal(cn_wal_replay(w, check_model, &m, &st), 0);
    assert_int_equal(m.bad, 0);
    assert_int_equal(m.next, m.n);
    assert_int_equal(st.corrupt, 0);
    assert_int_equal(st.truncated, 0); /* a clean close leaves nothing to cut */
    assert_true(kills > 10 && drops > 5);
    cn_wal_close(w);
}

/* Whether the file system under dir takes an O_DIRECT write of 256 bytes at offset 0. */
static int takes_256_byte_direct_writes(void)
{
    char path[512];
    snprintf(path, sizeof(path), "%s/probe", dir);
    int fd = open(path, O_RDWR | O_CREAT | O_DIRECT, 0600);
    if (fd < 0)
        return 0;
    void *p = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    assert_true(p != MAP_FAILED);
    int ok = pwrite(fd, p, 256, 0) == 256;
    munmap(p, 4096);
    close(fd);
    unlink(path);
    return ok;
}

/* A file system that takes O_DIRECT but refuses a write for its alignment (blocks of 256
 * bytes here: ext4 over 512-byte sectors says EINVAL): the commit is written buffered, and
 * so is every later one; a log opened again tries O_DIRECT again and falls back the same. */
static void direct_write_refused_falls_back(void **state)
{
    (void)state;
    if (!direct)
        skip(); /* a direct-only case */
    if (takes_256_byte_direct_writes())
        skip(); /* this file system has no alignment to refuse */
    direct_align = 256;
    static const size_t lens[4] = {100, 3000, 1, 700};
    static uint8_t recs[4][3000];
    struct cn_wal *w = open_wal_max(1 << 20, 4096);
    assert_int_equal(cn_wal_replay(w, NULL, NULL, NULL), 0);
    for (int i = 0; i < 4; i++) {
        if (i == 2) { /* a second process, the same way */
            cn_wal_close(w);
            w = open_wal_max(1 << 20, 4096);
            replay_lens(w, lens, 2, NULL);
        }
        fill_rec(recs[i], lens[i], (unsigned)i + 1);
        assert_int_equal(cn_wal_append(w, (uint8_t)(i + 1), recs[i], lens[i], NULL), 0);
        assert_int_equal(cn_wal_commit(w), 0);
        assert_int_equal(cn_wal_direct(w), 0);
    }
    cn_wal_close(w);
    direct_align = 0;
    w = open_wal_max(1 << 20, 4096);
    struct cn_wal_replay_stats st;
    replay_lens(w, lens, 4, &st);
    assert_int_equal(st.corrupt, 0);
    assert_int_equal(st.truncated, 0);
    cn_wal_close(w);
}

static int buffered(void **state)
{
    (void)state;
    direct = 0;
    return 0;
}

static int with_direct(void **state)
{
    (void)state;
    direct = 1;
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(roundtrip_and_roll, setup, teardown),
        cmocka_unit_test_setup_teardown(torn_tail_is_cut, setup, teardown),
        cmocka_unit_test_setup_teardown(flipped_byte_detected, setup, teardown),
        cmocka_unit_test_setup_teardown(record_limit, setup, teardown),
        cmocka_unit_test_setup_teardown(abort_drops_the_queue, setup, teardown),
        cmocka_unit_test_setup_teardown(continues_after_checkpoint, setup, teardown),
        cmocka_unit_test_setup_teardown(recycled_file_ends_at_its_records, setup, teardown),
        cmocka_unit_test_setup_teardown(recycled_file_skips_a_damaged_record, setup, teardown),
        cmocka_unit_test_setup_teardown(direct_blocks_and_padding, setup, teardown),
        cmocka_unit_test_setup_teardown(random_commits_and_kills, setup, teardown),
        cmocka_unit_test_setup_teardown(direct_write_refused_falls_back, setup, teardown),
    };
    int failed = cmocka_run_group_tests_name("buffered", tests, buffered, NULL);
    return failed + cmocka_run_group_tests_name("direct", tests, with_direct, NULL);
}
