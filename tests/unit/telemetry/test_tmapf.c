/* Trace map files (tmapf.h): written sorted and without duplicates, found by key across
 * block boundaries, listed whole, and refused when damaged. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "base/base.h"
#include "telemetry/tmapf.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

static char dir[256], path[512];

static int setup(void **state)
{
    (void)state;
    snprintf(dir, sizeof(dir), "/tmp/cairn-test-tmapf-XXXXXX");
    if (!mkdtemp(dir))
        return -1;
    snprintf(path, sizeof(path), "%s/traces.map", dir);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    unlink(path);
    return rmdir(dir);
}

struct seqs {
    uint32_t seq[4096];
    size_t n;
};

static void add_seq(void *ctx, uint32_t seq)
{
    struct seqs *s = ctx;
    if (s->n < CN_ARRAY_LEN(s->seq))
        s->seq[s->n++] = seq;
}

struct all {
    struct cn_tmapf_entry prev;
    size_t n;
    int unordered;
};

static void each_entry(void *ctx, const struct cn_tmapf_entry *e)
{
    struct all *a = ctx;
    if (a->n && (e->key < a->prev.key || (e->key == a->prev.key && e->seq <= a->prev.seq)))
        a->unordered = 1;
    a->prev = *e;
    a->n++;
}

static struct cn_tmapf *open_ok(void)
{
    struct cn_tmapf *f = NULL;
    char err[256];
    int rc = cn_tmapf_open(&f, path, err, sizeof(err));
    if (rc)
        fail_msg("open: %s", err);
    return f;
}

/* Keys 1..3000 (key k in segments k % 7 and, for k % 3 == 0, also 100 + k % 5), given out of
 * order and twice; key 1500 in 1200 segments, so that its entries span three blocks. */
static void test_write_find_each(void **state)
{
    (void)state;
    size_t cap = 20000, n = 0;
    struct cn_tmapf_entry *e = malloc(cap * sizeof(*e));
    assert_non_null(e);
    for (int pass = 0; pass < 2; pass++)
        for (uint32_t k = 3000; k >= 1; k--) {
            if (k == 1500)
                continue;
            e[n++] = (struct cn_tmapf_entry){k, k % 7};
            if (k % 3 == 0)
                e[n++] = (struct cn_tmapf_entry){k, 100 + k % 5};
        }
    for (uint32_t s = 0; s < 1200; s++)
        e[n++] = (struct cn_tmapf_entry){1500, 5000 - s};
    uint32_t cov[] = {9, 3, 3, 100, 1, 5000};
    char err[256];
    assert_int_equal(cn_tmapf_write(path, e, n, cov, CN_ARRAY_LEN(cov), err, sizeof(err)), 0);
    free(e);
    struct cn_tmapf *f = open_ok();
    size_t distinct = 3000 - 1 + 1000 - 1 + 1200; /* 1500 is a multiple of 3: left out too */
    assert_int_equal(cn_tmapf_entries(f), distinct);
    struct stat sb;
    assert_int_equal(stat(path, &sb), 0);
    assert_int_equal((uint64_t)sb.st_size, cn_tmapf_file_bytes(f));
    assert_int_equal(cn_tmapf_file_bytes(f), 32 + 5 * 4 + distinct * 8 + 8);

    struct seqs s = {.n = 0};
    assert_int_equal(cn_tmapf_find(f, 1500, add_seq, &s), 0);
    assert_int_equal((int)s.n, 1200);
    for (size_t i = 0; i < s.n; i++)
        assert_int_equal(s.seq[i], 5000 - 1199 + i); /* increasing */
    for (uint32_t k = 1; k <= 3000; k += 97) {
        if (k == 1500)
            continue;
        s.n = 0;
        assert_int_equal(cn_tmapf_find(f, k, add_seq, &s), 0);
        assert_int_equal((int)s.n, k % 3 == 0 ? 2 : 1);
        assert_int_equal(s.seq[0], k % 7);
        if (k % 3 == 0)
            assert_int_equal(s.seq[1], 100 + k % 5);
    }
    /* Keys not there: below the first, past the last, between. */
    uint32_t none[] = {0, 3001, 0xffffffffu};
    for (size_t i = 0; i < CN_ARRAY_LEN(none); i++) {
        s.n = 0;
        assert_int_equal(cn_tmapf_find(f, none[i], add_seq, &s), 0);
        assert_int_equal((int)s.n, 0);
    }
    struct all a = {.n = 0};
    assert_int_equal(cn_tmapf_each(f, each_entry, &a), 0);
    assert_int_equal(a.n, distinct);
    assert_int_equal(a.unordered, 0);
    assert_true(cn_tmapf_covers(f, 1));
    assert_true(cn_tmapf_covers(f, 3));
    assert_true(cn_tmapf_covers(f, 5000));
    assert_false(cn_tmapf_covers(f, 2));
    assert_false(cn_tmapf_covers(f, 5001));
    assert_true(cn_tmapf_mem_bytes(f) < 200); /* 5 segments, 12 block keys */
    cn_tmapf_close(f);
}

/* No entries, no segments: a valid file that finds nothing. */
static void test_empty(void **state)
{
    (void)state;
    char err[256];
    assert_int_equal(cn_tmapf_write(path, NULL, 0, NULL, 0, err, sizeof(err)), 0);
    struct cn_tmapf *f = open_ok();
    assert_int_equal(cn_tmapf_entries(f), 0);
    struct seqs s = {.n = 0};
    assert_int_equal(cn_tmapf_find(f, 7, add_seq, &s), 0);
    assert_int_equal((int)s.n, 0);
    assert_false(cn_tmapf_covers(f, 0));
    cn_tmapf_close(f);
}

static void write_sample(void)
{
    struct cn_tmapf_entry e[600];
    for (uint32_t i = 0; i < 600; i++)
        e[i] = (struct cn_tmapf_entry){i + 1, 7};
    uint32_t cov[] = {7};
    char err[256];
    assert_int_equal(cn_tmapf_write(path, e, 600, cov, 1, err, sizeof(err)), 0);
}

static void expect_refused(const char *why)
{
    struct cn_tmapf *f = NULL;
    char err[256] = "";
    assert_int_equal(cn_tmapf_open(&f, path, err, sizeof(err)), CN_EIO);
    assert_null(f);
    if (!strstr(err, why))
        fail_msg("error \"%s\" does not say \"%s\"", err, why);
}

static void patch(off_t off, const void *p, size_t n)
{
    int fd = open(path, O_RDWR);
    assert_true(fd >= 0);
    assert_int_equal(pwrite(fd, p, n, off), (ssize_t)n);
    close(fd);
}

/* Every byte is covered by the checksum; sizes and order are checked too. */
static void test_damaged(void **state)
{
    (void)state;
    write_sample();
    off_t size = 32 + 4 + 600 * 8 + 8;
    for (off_t off = 0; off < size; off += 331) {
        write_sample();
        int fd = open(path, O_RDWR);
        uint8_t b;
        assert_int_equal(pread(fd, &b, 1, off), 1);
        b ^= 0x10;
        assert_int_equal(pwrite(fd, &b, 1, off), 1);
        close(fd);
        struct cn_tmapf *f = NULL;
        char err[256];
        assert_int_equal(cn_tmapf_open(&f, path, err, sizeof(err)), CN_EIO);
    }
    write_sample();
    assert_int_equal(truncate(path, size - 1), 0);
    expect_refused("do not make");
    write_sample();
    patch(0, "CNTMAP99", 8);
    expect_refused("magic");
    /* Two entries swapped (checksum aside, the order is checked first). */
    write_sample();
    uint8_t two[16];
    int fd = open(path, O_RDWR);
    assert_int_equal(pread(fd, two, 16, 36 + 8 * 100), 16);
    close(fd);
    uint8_t swapped[16];
    memcpy(swapped, two + 8, 8);
    memcpy(swapped + 8, two, 8);
    patch(36 + 8 * 100, swapped, 16);
    expect_refused("out of order");
    write_sample();
    uint8_t zero[4] = {0};
    patch(36, zero, 4); /* the first key: 0 is never one */
    expect_refused("out of order or empty");
    struct cn_tmapf *f = NULL;
    char err[256];
    assert_int_equal(cn_tmapf_open(&f, "/nonexistent/traces.map", err, sizeof(err)), CN_ENOENT);
}

/* A write that cannot land leaves nothing behind and says why. */
static void test_write_fails_cleanly(void **state)
{
    (void)state;
    char bad[600], err[256] = "";
    snprintf(bad, sizeof(bad), "%s/missing/traces.map", dir);
    struct cn_tmapf_entry e = {1, 1};
    uint32_t cov = 1;
    assert_int_equal(cn_tmapf_write(bad, &e, 1, &cov, 1, err, sizeof(err)), CN_ENOENT);
    assert_non_null(strstr(err, "missing/traces.map.tmp"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_write_find_each, setup, teardown),
        cmocka_unit_test_setup_teardown(test_empty, setup, teardown),
        cmocka_unit_test_setup_teardown(test_damaged, setup, teardown),
        cmocka_unit_test_setup_teardown(test_write_fails_cleanly, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
