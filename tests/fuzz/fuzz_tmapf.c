/* Fuzzes the trace map file reader (src/telemetry/tmapf.c) on arbitrary bytes, given as a
 * memory file, opened as a verified file and once more with the checksum skipped (so that
 * mutations reach the lookups). Properties:
 * - nothing crashes, leaks or reads out of bounds, whatever the bytes;
 * - a failed open says why;
 * - a file that opens lists its entries in strictly increasing order, none with key 0, and
 *   cn_tmapf_find returns exactly the seqs cn_tmapf_each lists under a key, for the first
 *   keys listed, and nothing for 0 and for a key below the first. */
#include "base/base.h"
#include "telemetry/tmapf.h"

#include <sys/mman.h>
#include <unistd.h>

#define KEYS 16

struct listed {
    struct cn_tmapf_entry prev, keys[KEYS];
    size_t n, nkeys, with_key[KEYS];
};

static void on_entry(void *ctx, const struct cn_tmapf_entry *e)
{
    struct listed *l = ctx;
    if (e->key == 0 ||
        (l->n && (e->key < l->prev.key || (e->key == l->prev.key && e->seq <= l->prev.seq))))
        __builtin_trap();
    for (size_t k = 0; k < l->nkeys; k++)
        if (l->keys[k].key == e->key)
            l->with_key[k]++;
    if (l->nkeys < KEYS && (!l->nkeys || l->keys[l->nkeys - 1].key != e->key)) {
        l->keys[l->nkeys] = *e;
        l->with_key[l->nkeys++] = 1;
    }
    l->prev = *e;
    l->n++;
}

struct found {
    uint32_t key;
    size_t n;
};

static void on_seq(void *ctx, uint32_t seq)
{
    (void)seq;
    ((struct found *)ctx)->n++;
}

static void run(const uint8_t *data, size_t size, unsigned flags)
{
    int fd = memfd_create("tmapf", MFD_CLOEXEC);
    if (fd < 0)
        return;
    if (size && write(fd, data, size) != (ssize_t)size) {
        close(fd);
        return;
    }
    struct cn_tmapf *f = NULL;
    char err[256] = "";
    int rc = cn_tmapf_open_fd(&f, fd, flags, err, sizeof(err));
    if (rc) {
        if (f || !err[0])
            __builtin_trap();
        return;
    }
    struct listed l = {.n = 0};
    if (cn_tmapf_each(f, on_entry, &l) != 0 || l.n != cn_tmapf_entries(f))
        __builtin_trap();
    for (size_t k = 0; k < l.nkeys; k++) {
        struct found fo = {l.keys[k].key, 0};
        if (cn_tmapf_find(f, fo.key, on_seq, &fo) != 0 || fo.n != l.with_key[k])
            __builtin_trap();
        (void)cn_tmapf_covers(f, l.keys[k].seq);
    }
    /* Keys listed nowhere: 0 (never a key) and, when there is one, a key below the first. */
    uint32_t absent[2] = {0, l.nkeys && l.keys[0].key > 1 ? l.keys[0].key - 1 : 0};
    for (size_t k = 0; k < 2; k++) {
        struct found fo = {absent[k], 0};
        if (cn_tmapf_find(f, fo.key, on_seq, &fo) != 0 || fo.n != 0)
            __builtin_trap();
    }
    cn_tmapf_close(f);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    run(data, size, 0);
    run(data, size, CN_TMAPF_OPEN_UNVERIFIED);
    return 0;
}
