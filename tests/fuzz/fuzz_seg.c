/* Fuzzes the segment reader on arbitrary bytes: open (as a verified segment, and once more
 * with checksums skipped so that mutations reach every decoder), full check, scans with and
 * without a predicate, trace-ID listing, lookups of each listed trace, bloom queries and the
 * block listing. Properties:
 * - nothing crashes, leaks or reads out of bounds, whatever the bytes;
 * - every status is one the header documents, and a failed open says why;
 * - rows passed to callbacks are well formed (types, counts, pointers);
 * - a segment that passes cn_seg_check is served whole: the scan returns every row, each
 *   listed trace is found, its records carry its ID, and the trace bloom admits it. */
#include "base/log.h"
#include "telemetry/seg.h"

#define MAX_LOOKUPS 64

static void check_kvs(const struct cn_kvs *kvs)
{
    for (uint32_t i = 0; i < kvs->num; i++) {
        const struct cn_kv *kv = &kvs->items[i];
        if (kv->val.type > CN_VAL_KVLIST || (kv->key.len && !kv->key.ptr))
            __builtin_trap();
        if (kv->val.type == CN_VAL_STR && kv->val.u.s.len && !kv->val.u.s.ptr)
            __builtin_trap();
        /* Touch the bytes: ASan reports a slice past its buffer. */
        volatile char sink = kv->key.len ? kv->key.ptr[kv->key.len - 1] : 0;
        (void)sink;
    }
}

static void check_span(const struct cn_span *s)
{
    if (!s->resource || !s->scope || (s->num_events && !s->events) || (s->num_links && !s->links))
        __builtin_trap();
    check_kvs(&s->attrs);
    check_kvs(&s->resource->attrs);
    check_kvs(&s->scope->attrs);
    for (uint32_t k = 0; k < s->num_events; k++)
        check_kvs(&s->events[k].attrs);
    for (uint32_t k = 0; k < s->num_links; k++)
        check_kvs(&s->links[k].attrs);
    volatile char sink = s->name.len ? s->name.ptr[s->name.len - 1] : 0;
    (void)sink;
}

static void check_log(const struct cn_log *l)
{
    if (!l->resource || !l->scope || l->body.type > CN_VAL_KVLIST)
        __builtin_trap();
    check_kvs(&l->attrs);
    check_kvs(&l->resource->attrs);
    check_kvs(&l->scope->attrs);
}

struct scan_state {
    uint64_t rows;
    int pred_calls;
};

static int rec_cb(void *ctx, const struct cn_span *span, const struct cn_log *log)
{
    struct scan_state *st = ctx;
    if (!span == !log)
        __builtin_trap();
    if (span)
        check_span(span);
    else
        check_log(log);
    st->rows++;
    return 0;
}

static int pred_cb(void *ctx, const struct cn_seg_row *row)
{
    struct scan_state *st = ctx;
    st->pred_calls++;
    if (!row->trace_id || !row->span_id)
        __builtin_trap();
    return (row->time_ns & 1) == 0;
}

struct ids {
    uint8_t id[MAX_LOOKUPS][16];
    size_t n, total;
};

static void id_cb(void *ctx, const uint8_t id[16])
{
    struct ids *ids = ctx;
    if (ids->n < MAX_LOOKUPS)
        memcpy(ids->id[ids->n++], id, 16);
    ids->total++;
}

static int status_ok(int rc)
{
    return rc == 0 || rc == CN_EIO || rc == CN_ENOMEM;
}

static void run(const uint8_t *data, size_t size, unsigned flags)
{
    struct cn_seg *seg = NULL;
    char err[256];
    int rc = cn_seg_open_mem(&seg, data, size, flags, err, sizeof(err));
    if (rc) {
        if (seg || !err[0] || (rc != CN_EIO && rc != CN_ESYNTAX && rc != CN_ENOMEM))
            __builtin_trap();
        return;
    }
    const struct cn_seg_info *info = cn_seg_info(seg);
    if (info->kind != CN_SEG_SPANS && info->kind != CN_SEG_LOGS)
        __builtin_trap();
    if (info->num_traces > info->rows || info->bytes != size)
        __builtin_trap();

    struct cn_seg_block b;
    size_t nblocks = 0;
    while (cn_seg_block(seg, nblocks, &b) == 0) {
        if (b.off + b.len > size || b.codec > 2 || (b.codec == 0 && b.len != b.raw + 8) ||
            (b.codec == 2 && (b.len < 9 || b.len > b.raw + 9)))
            __builtin_trap();
        nblocks++;
    }

    struct cn_seg_check chk;
    int crc = cn_seg_check(seg, &chk);
    if (!status_ok(crc) || (crc == CN_EIO && !chk.msg[0]) || chk.rows > info->rows)
        __builtin_trap();
    int intact = crc == 0 && !(flags & CN_SEG_OPEN_UNVERIFIED);

    struct scan_state st = {0, 0};
    rc = cn_seg_scan(seg, 0, UINT64_MAX, NULL, rec_cb, &st);
    if (!status_ok(rc) || (intact && (rc != 0 || st.rows != info->rows)))
        __builtin_trap();
    struct scan_state st2 = {0, 0};
    rc = cn_seg_scan(seg, info->min_ns, info->max_ns / 2 + info->min_ns / 2 + 1, pred_cb, rec_cb,
                     &st2);
    if (!status_ok(rc) || (intact && (rc != 0 || st2.rows > st.rows)))
        __builtin_trap();

    struct ids ids = {.n = 0};
    rc = cn_seg_trace_ids(seg, id_cb, &ids);
    if (!status_ok(rc) || (intact && (rc != 0 || ids.total != info->num_traces)))
        __builtin_trap();
    for (size_t i = 0; i < ids.n; i++) {
        if (intact && !cn_seg_may_contain_trace(seg, ids.id[i]))
            __builtin_trap();
        struct cn_tel_batch batch;
        cn_tel_batch_init(&batch, 64u << 20);
        rc = cn_seg_trace(seg, ids.id[i], &batch);
        if (!status_ok(rc) || (intact && rc != 0))
            __builtin_trap();
        size_t n = batch.num_spans + batch.num_logs;
        if (intact && n == 0)
            __builtin_trap();
        for (size_t k = 0; k < batch.num_spans; k++) {
            if (memcmp(batch.spans[k].trace_id, ids.id[i], 16) != 0)
                __builtin_trap();
            check_span(&batch.spans[k]);
        }
        for (size_t k = 0; k < batch.num_logs; k++) {
            if (memcmp(batch.logs[k].trace_id, ids.id[i], 16) != 0)
                __builtin_trap();
            check_log(&batch.logs[k]);
        }
        cn_tel_batch_release(&batch);
    }
    if (size >= 16)
        (void)cn_seg_may_contain_trace(seg, data);
    (void)cn_seg_may_contain_token(seg, "error");
    (void)cn_seg_may_contain_token(seg, "GET /api/cart");
    (void)cn_seg_corrupt_blocks(seg);
    cn_seg_close(seg);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    cn_log_threshold = CN_LOG_OFF; /* corrupt blocks are expected here */
    run(data, size, 0);
    run(data, size, CN_SEG_OPEN_UNVERIFIED);
    return 0;
}
