/* Fuzzes the write-ahead log's replay (src/telemetry/wal.c) on arbitrary files: what a crash,
 * a torn write or a damaged disk can leave. The first byte picks buffered or O_DIRECT
 * appends and where the rest is cut into two files (the second named by the LSN the first
 * ends at, as the log names them). Properties:
 * - nothing crashes, leaks or reads out of bounds, whatever the bytes;
 * - replay hands out records in increasing LSN order, none longer than max_record;
 * - after replay the log takes an append, and a second replay reads exactly the same records
 *   (LSNs, lengths, bytes) followed by the appended one: replay leaves a consistent log
 *   whatever it found, and never loses what it once read. */
#include "base/base.h"
#include "base/log.h"
#include "telemetry/wal.h"
#include "../common/tmpdir.h"

#include <fcntl.h>
#include <stdio.h>
#include <unistd.h>
#include <xxhash.h>

#define MAX_RECORD 4096
#define MAX_SEEN   512

struct seen {
    size_t n;
    int over; /* more than MAX_SEEN records: only their number is compared */
    uint64_t lsn[MAX_SEEN];
    uint32_t len[MAX_SEEN];
    uint64_t hash[MAX_SEEN];
    uint64_t last_lsn;
};

static int on_record(void *ctx, uint64_t lsn, uint8_t type, const uint8_t *data, size_t len)
{
    (void)type;
    struct seen *s = ctx;
    if (len > MAX_RECORD || (s->n && lsn <= s->last_lsn))
        __builtin_trap();
    if (s->n < MAX_SEEN) {
        s->lsn[s->n] = lsn;
        s->len[s->n] = (uint32_t)len;
        s->hash[s->n] = XXH3_64bits(data, len);
    } else {
        s->over = 1;
    }
    s->last_lsn = lsn;
    s->n++;
    return 0;
}

static char dir[64];

static void remove_dir(void)
{
    cn_test_remove_dir(dir);
}

static void put_file(uint64_t start, const uint8_t *p, size_t n)
{
    char path[128];
    snprintf(path, sizeof(path), "%s/%016llx.wal", dir, (unsigned long long)start);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0)
        return;
    if (n && write(fd, p, n) != (ssize_t)n)
        __builtin_trap();
    close(fd);
}

static struct cn_wal *open_log(int direct)
{
    struct cn_wal_opts o = {.dir = dir,
                            .segment_bytes = 1 << 20,
                            .max_record = MAX_RECORD,
                            .fsync = CN_WAL_FSYNC_NEVER,
                            .min_lsn = 0,
                            .direct = direct};
    struct cn_wal *w = NULL;
    char err[256];
    if (cn_wal_open(&w, &o, err, sizeof(err)) != 0 || !w)
        __builtin_trap();
    return w;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!dir[0]) {
        snprintf(dir, sizeof(dir), "/tmp/cairn-fuzz-wal-XXXXXX");
        if (!mkdtemp(dir))
            __builtin_trap();
        atexit(remove_dir);
        cn_log_threshold = CN_LOG_OFF;
    }
    if (size < 1)
        return 0;
    int direct = data[0] & 1;
    size_t rest = size - 1, cut = rest ? (size_t)(data[0] >> 1) * rest / 127 : 0;
    cut = CN_MIN(cut, rest);
    cn_test_clear_dir(dir);
    put_file(0, data + 1, cut);
    if (cut < rest)
        put_file(cut, data + 1 + cut, rest - cut);

    static struct seen a, b;
    memset(&a, 0, sizeof(a));
    memset(&b, 0, sizeof(b));
    struct cn_wal *w = open_log(direct);
    if (cn_wal_replay(w, on_record, &a, NULL) != 0)
        __builtin_trap();
    static const char tail[] = "appended after replay";
    uint64_t lsn;
    if (cn_wal_append(w, 7, tail, sizeof(tail), &lsn) != 0 || cn_wal_commit(w) != 0)
        __builtin_trap();
    if (a.n && lsn <= a.last_lsn)
        __builtin_trap();
    cn_wal_close(w);

    w = open_log(direct);
    if (cn_wal_replay(w, on_record, &b, NULL) != 0)
        __builtin_trap();
    cn_wal_close(w);
    /* The same records, then the appended one. */
    if (b.n != a.n + 1 || b.last_lsn != lsn)
        __builtin_trap();
    for (size_t i = 0; i < a.n && i < MAX_SEEN; i++)
        if (a.lsn[i] != b.lsn[i] || a.len[i] != b.len[i] || a.hash[i] != b.hash[i])
            __builtin_trap();
    if (!b.over && (b.len[a.n] != sizeof(tail) || b.hash[a.n] != XXH3_64bits(tail, sizeof(tail))))
        __builtin_trap();
    return 0;
}
