/* Reads of the telemetry store while it ingests and seals: a read takes what it reads under
 * the store's lock and reads it without, so a callback that takes its time holds back
 * neither the writer nor the sealer, and still sees what was there when the read began.
 * And trace lookups through the partitions' trace map files (tmapf.h), which the sealer
 * writes, merges, replaces and removes meanwhile. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "ev/mailbox.h"
#include "telemetry/otlp-json.h"
#include "telemetry/seg.h"
#include "telemetry/store.h"
#include "telemetry/tmapf.h"

#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static char dir[256];
static int32_t map_mem_days;  /* open_store's telemetry.trace_map_mem_days */
static uint64_t disk_budget;  /* and disk budget */
static uint64_t footer_cache; /* and footer cache (0: the default) */

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static int setup(void **state)
{
    (void)state;
    map_mem_days = 0;
    disk_budget = 0;
    footer_cache = 0;
    snprintf(dir, sizeof(dir), "/tmp/cairn-test-store-read-XXXXXX");
    return mkdtemp(dir) ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    return nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static uint64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* ---- submitting, from the test thread's loop ---- */

static uv_loop_t loop;
static struct cn_mailbox mailbox;
static int answered, answered_status;
static atomic_int acked; /* answered, for other threads */

static void on_answer(struct cn_mail *m)
{
    struct cn_store_sub *sub = (struct cn_store_sub *)m;
    answered++;
    atomic_store(&acked, answered);
    answered_status = sub->status;
    cn_store_sub_free(sub);
}

/* Submits one trace of n spans (trace ID: byte tid, then serial's 30 decimal digits as hex,
 * service svc) and returns at once. */
static void submit_serial(struct cn_store *st, uint8_t tid, unsigned serial, const char *svc, int n)
{
    char *json = malloc(64 * 1024);
    assert_non_null(json);
    uint64_t t0 = now_ns();
    int k = snprintf(json, 64 * 1024,
                     "{\"resourceSpans\":[{\"resource\":{\"attributes\":[{\"key\":\"service."
                     "name\",\"value\":{\"stringValue\":\"%s\"}}]},\"scopeSpans\":[{\"spans\":[",
                     svc);
    for (int i = 0; i < n; i++)
        k += snprintf(json + k, 64 * 1024 - (size_t)k,
                      "%s{\"traceId\":\"%02x%030u\",\"spanId\":\"%016x\",\"name\":\"op\","
                      "\"kind\":2,\"startTimeUnixNano\":\"%llu\",\"endTimeUnixNano\":\"%llu\"}",
                      i ? "," : "", tid, serial, i + 1, (unsigned long long)(t0 + (uint64_t)i),
                      (unsigned long long)(t0 + (uint64_t)i + 1000));
    k += snprintf(json + k, 64 * 1024 - (size_t)k, "]}]}]}");
    struct cn_store_sub *sub = calloc(1, sizeof(*sub));
    assert_non_null(sub);
    sub->body = (uint8_t *)json;
    sub->len = (size_t)k;
    sub->kind = CN_BODY_TRACES_JSON;
    sub->mail.cb = on_answer;
    cn_tel_batch_init(&sub->batch, 1u << 20);
    struct cn_tel_limits lim = {128, 4096, 128, 128};
    char err[256];
    assert_int_equal(
        cn_otlp_json_decode_traces(&sub->batch, json, (size_t)k, &lim, err, sizeof(err)), 0);
    assert_int_equal((int)sub->batch.num_spans, n);
    assert_int_equal(cn_store_submit(st, sub, &mailbox), 0);
}

static void submit(struct cn_store *st, uint8_t tid, const char *svc, int n)
{
    submit_serial(st, tid, 1, svc, n);
}

/* The binary trace ID submit_serial gives. */
static void trace_id(uint8_t tid, unsigned serial, uint8_t id[16])
{
    char hex[33];
    snprintf(hex, sizeof(hex), "%02x%030u", tid, serial);
    for (int i = 0; i < 16; i++) {
        unsigned v;
        sscanf(hex + 2 * i, "%2x", &v);
        id[i] = (uint8_t)v;
    }
}

/* Runs the loop until `want` submissions were answered, or ms pass. Returns the count. */
static int wait_answers(int want, uint64_t ms)
{
    uint64_t until = mono_ms() + ms;
    while (answered < want && mono_ms() < until) {
        uv_run(&loop, UV_RUN_NOWAIT);
        usleep(1000);
    }
    return answered;
}

/* The loop the answers come to, then a store (heads sealed past seal_interval_ms). */
static struct cn_store *open_store(uint64_t seal_interval_ms, enum cn_wal_fsync fsync)
{
    assert_int_equal(uv_loop_init(&loop), 0);
    assert_int_equal(cn_mailbox_init(&mailbox, &loop), 0);
    answered = 0;
    atomic_store(&acked, 0);
    struct cn_store_opts o = {
        .dir = dir,
        .head_max_bytes = 64u << 20,
        .queue_max_bytes = 64u << 20,
        .wal_segment_bytes = 1u << 20,
        .max_body_bytes = 1u << 20,
        .fsync = fsync,
        .seal_interval_ms = seal_interval_ms,
        .disk_budget = disk_budget,
        .trace_map_mem_days = map_mem_days,
        .footer_cache_bytes = footer_cache,
    };
    struct cn_store *st = NULL;
    char err[512];
    assert_int_equal(cn_store_open(&st, &o, err, sizeof(err)), 0);
    return st;
}

/* ---- a read that waits in its callback ---- */

struct slow_read {
    struct cn_store *st;
    uv_mutex_t lock;
    uv_cond_t cond;
    int started, go;   /* the callback is waiting; it may return */
    size_t spans[256]; /* by the first byte of the trace ID */
    size_t total;
    int trace; /* 0: a time-range scan; else trace-by-ID of this first byte */
};

static void slow_span(void *ctx, const struct cn_span *s)
{
    struct slow_read *r = ctx;
    uv_mutex_lock(&r->lock);
    if (!r->started) {
        r->started = 1;
        uv_cond_broadcast(&r->cond);
        uint64_t until = mono_ms() + 20000; /* the test fails long before */
        while (!r->go && mono_ms() < until)
            uv_cond_timedwait(&r->cond, &r->lock, 10 * 1000000ull);
    }
    r->spans[s->trace_id[0]]++;
    uv_mutex_unlock(&r->lock);
}

static void slow_main(void *arg)
{
    struct slow_read *r = arg;
    if (r->trace) {
        uint8_t id[16] = {0};
        id[0] = (uint8_t)r->trace;
        id[15] = 1;
        r->total = cn_store_trace(r->st, id, slow_span, r);
    } else {
        r->total = cn_store_scan_spans(r->st, 0, UINT64_MAX, 0, slow_span, r);
    }
}

static void slow_start(struct slow_read *r, uv_thread_t *th)
{
    uv_mutex_init(&r->lock);
    uv_cond_init(&r->cond);
    assert_int_equal(uv_thread_create(th, slow_main, r), 0);
    uv_mutex_lock(&r->lock);
    while (!r->started)
        uv_cond_wait(&r->cond, &r->lock);
    uv_mutex_unlock(&r->lock);
}

static void slow_finish(struct slow_read *r, uv_thread_t *th)
{
    uv_mutex_lock(&r->lock);
    r->go = 1;
    uv_cond_broadcast(&r->cond);
    uv_mutex_unlock(&r->lock);
    uv_thread_join(th);
    uv_cond_destroy(&r->cond);
    uv_mutex_destroy(&r->lock);
}

static void seal_main(void *arg)
{
    assert_int_equal(cn_store_seal(arg), 0);
}

/* A loop for the answers and a store holding one trace of an spans (ID byte a) sealed in a
 * segment and one of bn spans (ID byte b) in the head. */
static struct cn_store *begin(uint8_t a, int an, uint8_t b, int bn)
{
    struct cn_store *st = open_store(3600 * 1000, CN_WAL_FSYNC_ALWAYS); /* sealed when asked */
    submit(st, a, "sealed", an);
    assert_int_equal(wait_answers(1, 10000), 1);
    assert_int_equal(cn_store_seal(st), 0);
    assert_int_equal((int)atomic_load(&cn_store_stats(st)->segments), 1);
    submit(st, b, "head", bn);
    assert_int_equal(wait_answers(2, 10000), 2);
    return st;
}

/* Starts r; while it waits in its first record (one of the segment's), a trace of cn spans
 * (ID byte c) is submitted and answered, and a seal swaps the head for its segment and
 * finishes; the sealed head's memory stays, counted, until r is done. Then lets r finish. */
static void ingest_and_seal_during(struct cn_store *st, struct slow_read *r, uint8_t c, int cn)
{
    uv_thread_t th, sealer;
    slow_start(r, &th);
    submit(st, c, "late", cn);
    assert_int_equal(wait_answers(3, 5000), 3); /* the writer was not held back */
    assert_int_equal(answered_status, 0);
    assert_int_equal(uv_thread_create(&sealer, seal_main, st), 0);
    uv_thread_join(&sealer); /* nor the sealer */
    const struct cn_store_stats *stats = cn_store_stats(st);
    assert_int_equal((int)atomic_load(&stats->segments), 2);
    assert_true(atomic_load(&stats->head_bytes) > 0); /* the head r may still read */
    slow_finish(r, &th);
    uint64_t until = mono_ms() + 5000;
    while (atomic_load(&stats->head_bytes) > 0 && mono_ms() < until)
        usleep(1000);
    assert_int_equal((int)atomic_load(&stats->head_bytes), 0); /* freed once r was done */
}

static void end(struct cn_store *st)
{
    cn_store_close(st);
    cn_mailbox_close(&mailbox);
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&loop), 0);
}

/* A read that does not wait, into r (zeroed first). */
static size_t read_now(struct cn_store *st, struct slow_read *r, int trace)
{
    *r = (struct slow_read){.st = st, .go = 1, .started = 1, .trace = trace};
    uv_mutex_init(&r->lock);
    uv_cond_init(&r->cond);
    slow_main(r);
    uv_cond_destroy(&r->cond);
    uv_mutex_destroy(&r->lock);
    return r->total;
}

/* While a scan waits in its callback, a submission is answered and a seal swaps the head for
 * its segment; the scan then still returns the head's spans of the moment it began (freed only
 * after it returned: ASan checks), and none submitted after. */
static void test_scan_holds_back_neither_ingest_nor_sealing(void **state)
{
    (void)state;
    struct cn_store *st = begin(0xa1, 5, 0xb2, 7);
    struct slow_read r = {.st = st};
    ingest_and_seal_during(st, &r, 0xc3, 3);
    assert_int_equal((int)r.total, 12);
    assert_int_equal((int)r.spans[0xa1], 5);
    assert_int_equal((int)r.spans[0xb2], 7);
    assert_int_equal((int)r.spans[0xc3], 0);
    /* After the read, the sealed head's spans come from its segment. */
    struct slow_read r2;
    assert_int_equal((int)read_now(st, &r2, 0), 15);
    assert_int_equal((int)r2.spans[0xc3], 3);
    end(st);
}

/* The same for a lookup by trace ID whose spans lie in a segment and in the head. */
static void test_trace_lookup_holds_back_neither_ingest_nor_sealing(void **state)
{
    (void)state;
    struct cn_store *st = begin(0xd4, 4, 0xd4, 6);
    struct slow_read r = {.st = st, .trace = 0xd4};
    ingest_and_seal_during(st, &r, 0xd4, 2);
    assert_int_equal((int)r.total, 10);
    struct slow_read r2;
    assert_int_equal((int)read_now(st, &r2, 0xd4), 12);
    end(st);
}

/* Five seals while one read waits: each sealed head (and each segment merged away) waits in
 * turn for the read, then all are freed, oldest first. */
static void test_seals_queue_behind_a_read(void **state)
{
    (void)state;
    uint64_t day = now_ns() / (86400 * 1000000000ull);
    struct cn_store *st = begin(0xe5, 3, 0xe6, 4);
    const struct cn_store_stats *stats = cn_store_stats(st);
    struct slow_read r = {.st = st};
    uv_thread_t th;
    slow_start(&r, &th);
    for (int i = 0; i < 5; i++) {
        submit(st, (uint8_t)(0x10 + i), "late", 2);
        assert_int_equal(wait_answers(3 + i, 5000), 3 + i);
        assert_int_equal(cn_store_seal(st), 0);
    }
    assert_int_equal((int)atomic_load(&stats->seals), 6);
    /* The small segments were merged meanwhile (the read's one too: closed after it), unless
     * they lie in two days' partitions (the test ran across midnight UTC). */
    if (now_ns() / (86400 * 1000000000ull) == day)
        assert_true(atomic_load(&stats->compactions) > 0);
    assert_true(atomic_load(&stats->head_bytes) > 0);
    slow_finish(&r, &th);
    uint64_t until = mono_ms() + 5000;
    while (atomic_load(&stats->head_bytes) > 0 && mono_ms() < until)
        usleep(1000);
    assert_int_equal((int)atomic_load(&stats->head_bytes), 0);
    assert_int_equal((int)r.total, 7);
    struct slow_read r2;
    assert_int_equal((int)read_now(st, &r2, 0), 17);
    end(st);
}

/* Readers on two threads while batches stream in and heads are sealed (and small segments
 * merged) every few batches: each scan sees at least every span answered before it began and
 * at most those submitted, and every answered trace comes back whole by its ID. Under ASan
 * this is the race test of the epochs: a record or segment freed under a reader fails it. */
enum { STRESS_SPANS = 20, STRESS_TID = 0x77 };
static atomic_int stress_stop, stress_submitted, stress_reads;
static atomic_int stress_bad;
static char stress_why[256];

static void stress_fail(const char *fmt, long a, long b)
{
    if (atomic_fetch_add(&stress_bad, 1) == 0)
        snprintf(stress_why, sizeof(stress_why), fmt, a, b);
}

static void count_ours(void *ctx, const struct cn_span *s)
{
    if (s->trace_id[0] == STRESS_TID)
        ++*(long *)ctx;
}

static void stress_reader(void *arg)
{
    struct cn_store *st = arg;
    unsigned k = 0;
    while (!atomic_load(&stress_stop)) {
        long before = atomic_load(&acked), n = 0;
        cn_store_scan_spans(st, 0, UINT64_MAX, 0, count_ours, &n);
        long most = atomic_load(&stress_submitted);
        if (n < before * STRESS_SPANS)
            stress_fail("a scan saw %ld spans, %ld were answered before it", n,
                        before * STRESS_SPANS);
        if (n > most * STRESS_SPANS)
            stress_fail("a scan saw %ld spans, %ld were submitted", n, most * STRESS_SPANS);
        if (before > 0) {
            uint8_t id[16];
            unsigned serial = (k++ * 7919u) % (unsigned)before;
            trace_id(STRESS_TID, serial, id);
            long m = 0;
            cn_store_trace(st, id, count_ours, &m);
            if (m != STRESS_SPANS)
                stress_fail("trace %ld came back with %ld spans", (long)serial, m);
        }
        atomic_fetch_add(&stress_reads, 1);
    }
}

static void reads_race_ingest_and_sealing(void)
{
    /* Small heads: small segments, merged. */
    struct cn_store *st = open_store(20, CN_WAL_FSYNC_NEVER);
    uv_thread_t readers[2];
    for (int i = 0; i < 2; i++)
        assert_int_equal(uv_thread_create(&readers[i], stress_reader, st), 0);
    /* 1.5 s, and on (up to 15 s) until there were 5 seals and a merge at least. */
    const struct cn_store_stats *stats = cn_store_stats(st);
    uint64_t t0 = mono_ms();
    int sent = 0;
    while (mono_ms() < t0 + 1500 ||
           ((atomic_load(&stats->seals) < 5 || atomic_load(&stats->compactions) < 1) &&
            mono_ms() < t0 + 15000)) {
        while (sent - answered < 8) {
            atomic_store(&stress_submitted, sent + 1); /* before it can be seen */
            submit_serial(st, STRESS_TID, (unsigned)sent, "stress", STRESS_SPANS);
            sent++;
        }
        uv_run(&loop, UV_RUN_NOWAIT);
        usleep(200);
    }
    assert_int_equal(wait_answers(sent, 10000), sent);
    atomic_store(&stress_stop, 1);
    for (int i = 0; i < 2; i++)
        uv_thread_join(&readers[i]);
    print_message("%d batches, %d reads, %d seals, %d merges\n", sent, atomic_load(&stress_reads),
                  (int)atomic_load(&stats->seals), (int)atomic_load(&stats->compactions));
    if (atomic_load(&stress_bad))
        fail_msg("%d failed checks; the first: %s", atomic_load(&stress_bad), stress_why);
    assert_true(atomic_load(&stats->seals) >= 5);
    assert_true(atomic_load(&stats->compactions) >= 1);
    assert_true(atomic_load(&stress_reads) >= 4);
    if (map_mem_days < 0)
        assert_true(atomic_load(&stats->trace_map_files) >= 1);
    if (footer_cache == 1) {
        struct cn_seg_cache_stats fc;
        cn_seg_footer_cache_stats(&fc);
        assert_true(fc.loads > 0);
        assert_true(fc.evictions > 0);
    }
    end(st);
    cn_seg_set_footer_cache(CN_SEG_FOOTER_CACHE);
}

static void test_reads_race_ingest_and_sealing(void **state)
{
    (void)state;
    reads_race_ingest_and_sealing();
}

/* The same with every seal moving the trace map into today's file (merged with the file
 * before, which is replaced under the lookups: ASan checks it is closed after them), and a
 * footer cache of one byte: every read of a segment reads its footer's tables again, and
 * drops them after, while other reads and the merges use the same segments. */
static void test_reads_race_trace_map_files(void **state)
{
    (void)state;
    map_mem_days = -1;
    footer_cache = 1;
    stress_stop = stress_submitted = stress_reads = stress_bad = 0;
    reads_race_ingest_and_sealing();
}

/* ---- trace map files ---- */

/* The partition directory of the day ago days before today (UTC). */
static void day_path(char *dst, size_t len, int ago)
{
    time_t t = (time_t)(now_ns() / 1000000000ull) - (time_t)ago * 86400;
    struct tm tm;
    gmtime_r(&t, &tm);
    snprintf(dst, len, "%s/parts/%04d-%02d-%02d", dir, tm.tm_year + 1900, tm.tm_mon + 1,
             tm.tm_mday);
}

/* Its trace map file. */
static void day_map(char *dst, size_t len, int ago)
{
    day_path(dst, len, ago);
    size_t n = strlen(dst);
    snprintf(dst + n, len - n, "/traces.map");
}

/* The partition tests skip the last minute of a UTC day: the partition would change under
 * them. */
static void skip_near_midnight(void)
{
    if (now_ns() % (86400 * 1000000000ull) > 86340 * 1000000000ull)
        skip();
}

/* Spans of the trace submit() gave ID byte tid. */
static int trace_spans(struct cn_store *st, uint8_t tid)
{
    struct slow_read r;
    return (int)read_now(st, &r, tid);
}

/* Submits a trace of n spans (ID byte tid) and seals it into a segment of its own. */
static void seal_trace(struct cn_store *st, uint8_t tid, int n)
{
    int want = answered + 1;
    submit(st, tid, "svc", n);
    assert_int_equal(wait_answers(want, 10000), want);
    assert_int_equal(answered_status, 0);
    assert_int_equal(cn_store_seal(st), 0);
}

/* Reopens the store (same loop and mailbox). */
static struct cn_store *reopen(struct cn_store *st)
{
    end(st);
    return open_store(3600 * 1000, CN_WAL_FSYNC_ALWAYS);
}

/* A store whose every partition, today's too, keeps its trace IDs in its file (not near
 * midnight, when today's partition would change under the test). */
static struct cn_store *open_filed_store(void)
{
    skip_near_midnight();
    map_mem_days = -1;
    return open_store(3600 * 1000, CN_WAL_FSYNC_ALWAYS);
}

/* A partition past trace_map_mem_days has its trace IDs in its file, not in memory: each seal
 * merges the new segment's into it; lookups find every trace through it, before and after a
 * restart (which reads the file, not the segments' IDs); a damaged file is reported, removed,
 * and its segments indexed from their own trace indexes. */
static void test_trace_map_files(void **state)
{
    (void)state;
    struct cn_store *st = open_filed_store();
    const struct cn_store_stats *stats = cn_store_stats(st);
    seal_trace(st, 0x31, 3);
    assert_int_equal((int)atomic_load(&stats->trace_map_files), 1);
    assert_int_equal((int)atomic_load(&stats->trace_map_entries), 0);
    assert_true(atomic_load(&stats->trace_map_file_bytes) > 0);
    char path[512];
    day_map(path, sizeof(path), 0);
    assert_int_equal(access(path, F_OK), 0);
    uint64_t one = atomic_load(&stats->trace_map_file_bytes);
    seal_trace(st, 0x32, 4);
    assert_int_equal((int)atomic_load(&stats->trace_map_files), 1);
    assert_int_equal((int)atomic_load(&stats->trace_map_entries), 0);
    assert_true(atomic_load(&stats->trace_map_file_bytes) > one); /* merged: both traces */
    assert_int_equal(trace_spans(st, 0x31), 3);
    assert_int_equal(trace_spans(st, 0x32), 4);
    assert_int_equal(trace_spans(st, 0x33), 0);

    /* A restart takes the file: nothing of the partition goes to memory. */
    st = reopen(st);
    stats = cn_store_stats(st);
    assert_int_equal((int)atomic_load(&stats->trace_map_files), 1);
    assert_int_equal((int)atomic_load(&stats->trace_map_entries), 0);
    assert_int_equal(trace_spans(st, 0x31), 3);
    assert_int_equal(trace_spans(st, 0x32), 4);

    /* With the default (today and yesterday in memory), the file still serves what it holds,
     * and a new segment of today's goes to memory. */
    map_mem_days = 0;
    st = reopen(st);
    stats = cn_store_stats(st);
    seal_trace(st, 0x34, 2);
    assert_int_equal((int)atomic_load(&stats->trace_map_files), 1);
    assert_int_equal((int)atomic_load(&stats->trace_map_entries), 1);
    assert_int_equal(trace_spans(st, 0x31), 3);
    assert_int_equal(trace_spans(st, 0x34), 2);

    /* A byte flipped in the file: reported, removed, and the segments indexed instead. */
    end(st);
    int fd = open(path, O_RDWR);
    assert_true(fd >= 0);
    uint8_t b;
    assert_int_equal(pread(fd, &b, 1, 40), 1);
    b ^= 0x40;
    assert_int_equal(pwrite(fd, &b, 1, 40), 1);
    close(fd);
    st = open_store(3600 * 1000, CN_WAL_FSYNC_ALWAYS);
    stats = cn_store_stats(st);
    assert_int_equal((int)atomic_load(&stats->read_errors), 1);
    assert_int_equal((int)atomic_load(&stats->trace_map_files), 0);
    assert_int_equal(access(path, F_OK), -1);
    assert_int_equal((int)atomic_load(&stats->trace_map_entries), 3);
    assert_int_equal(trace_spans(st, 0x31), 3);
    assert_int_equal(trace_spans(st, 0x32), 4);
    assert_int_equal(trace_spans(st, 0x34), 2);
    end(st);
}

/* telemetry.trace_map_days at its edge. A partition is the day its segments were sealed:
 * yesterday's is made by renaming today's directory while the store is closed. With 2 its
 * trace IDs stay in memory; with 1 (only today's) the first seal moves them to its file. */
static void test_trace_map_days(void **state)
{
    (void)state;
    skip_near_midnight();
    struct cn_store *st = open_store(3600 * 1000, CN_WAL_FSYNC_ALWAYS);
    seal_trace(st, 0x51, 3);
    end(st);
    char today[512], yesterday[512];
    day_path(today, sizeof(today), 0);
    day_path(yesterday, sizeof(yesterday), 1);
    assert_int_equal(rename(today, yesterday), 0);

    map_mem_days = 2;
    st = open_store(3600 * 1000, CN_WAL_FSYNC_ALWAYS);
    const struct cn_store_stats *stats = cn_store_stats(st);
    seal_trace(st, 0x52, 2);
    assert_int_equal((int)atomic_load(&stats->trace_map_files), 0);
    assert_int_equal((int)atomic_load(&stats->trace_map_entries), 2);
    assert_int_equal(trace_spans(st, 0x51), 3);

    map_mem_days = 1;
    st = reopen(st);
    stats = cn_store_stats(st);
    seal_trace(st, 0x53, 4);
    assert_int_equal((int)atomic_load(&stats->trace_map_files), 1);
    assert_int_equal((int)atomic_load(&stats->trace_map_entries), 2);
    char map[512];
    day_map(map, sizeof(map), 1);
    assert_int_equal(access(map, F_OK), 0);
    assert_int_equal(trace_spans(st, 0x51), 3);
    assert_int_equal(trace_spans(st, 0x52), 2);
    assert_int_equal(trace_spans(st, 0x53), 4);
    end(st);
}

/* Compaction merges filed segments: the file then lists the merged one only, so each trace
 * comes back once. Retention removing a partition's last segment removes its file, and the
 * partition's directory. */
static void test_trace_map_files_follow_compaction_and_retention(void **state)
{
    (void)state;
    struct cn_store *st = open_filed_store();
    const struct cn_store_stats *stats = cn_store_stats(st);
    for (int i = 0; i < 4; i++)
        seal_trace(st, (uint8_t)(0x41 + i), 2 + i);
    assert_true(atomic_load(&stats->compactions) >= 1);
    assert_int_equal((int)atomic_load(&stats->segments), 1);
    assert_int_equal((int)atomic_load(&stats->trace_map_files), 1);
    assert_int_equal((int)atomic_load(&stats->trace_map_entries), 0);
    for (int i = 0; i < 4; i++)
        assert_int_equal(trace_spans(st, (uint8_t)(0x41 + i)), 2 + i);

    /* Over a one-byte disk budget at the next start: everything goes, the file too. */
    char path[512];
    day_map(path, sizeof(path), 0);
    assert_int_equal(access(path, F_OK), 0);
    disk_budget = 1;
    st = reopen(st);
    stats = cn_store_stats(st);
    char part[512];
    snprintf(part, sizeof(part), "%s", path);
    *strrchr(part, '/') = '\0';
    /* The counts drop under the store's lock; the files go after it: wait for all. */
    uint64_t until = mono_ms() + 10000;
    while ((atomic_load(&stats->segments) > 0 || atomic_load(&stats->trace_map_files) > 0 ||
            access(part, F_OK) == 0) &&
           mono_ms() < until)
        usleep(1000);
    assert_int_equal((int)atomic_load(&stats->segments), 0);
    assert_int_equal((int)atomic_load(&stats->trace_map_files), 0);
    assert_int_equal(access(path, F_OK), -1);
    assert_int_equal(access(part, F_OK), -1); /* the partition's directory */
    assert_int_equal(trace_spans(st, 0x41), 0);
    end(st);
}

/* Retention removing one segment at a time (the disk budget, in the only partition) leaves
 * its entries in the partition's file until they are a quarter of the segments it lists:
 * then the file is written again without them, smaller, and still finds every trace left. */
static void test_trace_map_file_drops_removed_segments(void **state)
{
    (void)state;
    struct cn_store *st = open_filed_store();
    const struct cn_store_stats *stats = cn_store_stats(st);
    /* Three segments: one fewer than compaction takes. */
    for (int i = 0; i < 3; i++)
        seal_trace(st, (uint8_t)(0x61 + i), 20);
    assert_int_equal((int)atomic_load(&stats->segments), 3);
    assert_int_equal((int)atomic_load(&stats->trace_map_files), 1);
    uint64_t seg_bytes = atomic_load(&stats->segment_bytes);
    uint64_t map_bytes = atomic_load(&stats->trace_map_file_bytes);
    assert_true(map_bytes > 0);

    /* One byte over the budget: the oldest segment goes, 1 of the 3 the file lists. */
    disk_budget = seg_bytes + map_bytes - 1;
    st = reopen(st);
    stats = cn_store_stats(st);
    uint64_t until = mono_ms() + 10000;
    while ((atomic_load(&stats->segments) > 2 ||
            atomic_load(&stats->trace_map_file_bytes) >= map_bytes) &&
           mono_ms() < until)
        usleep(1000);
    assert_int_equal((int)atomic_load(&stats->segments), 2);
    assert_int_equal((int)atomic_load(&stats->trace_map_files), 1);
    assert_true(atomic_load(&stats->trace_map_file_bytes) < map_bytes);
    assert_int_equal(trace_spans(st, 0x61), 0);
    assert_int_equal(trace_spans(st, 0x62), 20);
    assert_int_equal(trace_spans(st, 0x63), 20);

    /* The file read at the next start lists the two segments left. */
    disk_budget = 0;
    st = reopen(st);
    stats = cn_store_stats(st);
    assert_int_equal((int)atomic_load(&stats->trace_map_entries), 0);
    assert_int_equal(trace_spans(st, 0x62), 20);
    assert_int_equal(trace_spans(st, 0x63), 20);
    char path[512];
    day_map(path, sizeof(path), 0);
    struct cn_tmapf *f = NULL;
    char err[256];
    assert_int_equal(cn_tmapf_open(&f, path, err, sizeof(err)), 0);
    assert_int_equal((int)cn_tmapf_num_covered(f), 2);
    cn_tmapf_close(f);
    end(st);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_scan_holds_back_neither_ingest_nor_sealing, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_trace_lookup_holds_back_neither_ingest_nor_sealing,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_seals_queue_behind_a_read, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reads_race_ingest_and_sealing, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reads_race_trace_map_files, setup, teardown),
        cmocka_unit_test_setup_teardown(test_trace_map_files, setup, teardown),
        cmocka_unit_test_setup_teardown(test_trace_map_days, setup, teardown),
        cmocka_unit_test_setup_teardown(test_trace_map_files_follow_compaction_and_retention, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_trace_map_file_drops_removed_segments, setup,
                                        teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
