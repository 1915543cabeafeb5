/* Per-trace summaries, updated span by span as a trace arrives across batches; a ring of at
 * most max_traces, evicted first in first out, indexed by trace ID and, coarsely, by start
 * time (struct tblock). */
#include "telemetry/derive-internal.h"

#define XXH_INLINE_ALL /* short keys: the hash inlined, not a call into libxxhash */
#include <xxhash.h>

#define TBLOCK (1u << TBLOCK_SHIFT)

static const struct tblock empty_block = {UINT64_MAX, 0, UINT64_MAX, 0};

int cn_derive__traces_init(struct traces *t, uint32_t max, uint32_t svc_cap)
{
    memset(t, 0, sizeof(*t));
    t->max = max;
    t->svc_cap = svc_cap;
    t->num_blocks = (max + TBLOCK - 1) >> TBLOCK_SHIFT;
    t->blocks = malloc((size_t)t->num_blocks * sizeof(*t->blocks));
    if (!t->blocks)
        return CN_ENOMEM;
    for (uint32_t i = 0; i < t->num_blocks; i++)
        t->blocks[i] = empty_block;
    return 0;
}

static void tsum_clear(struct traces *t, struct tsum *ts)
{
    if (ts->nsvc > TS_INLINE) {
        free(ts->sv.ext);
        t->ext_bytes -= (size_t)t->svc_cap * sizeof(uint16_t);
    }
    memset(ts, 0, sizeof(*ts));
}

void cn_derive__traces_release(struct traces *t)
{
    for (uint32_t i = 0; t->ring && i < t->hwm; i++) {
        if (t->ring[i].flags & TS_USED)
            tsum_clear(t, &t->ring[i]);
    }
    cn_free(&t->ring);
    cn_free(&t->idx.slots);
    cn_free(&t->blocks);
    t->cap = t->num = t->hwm = 0;
}

size_t cn_derive__traces_bytes(const struct traces *t)
{
    return (size_t)t->cap * sizeof(struct tsum) +
           (t->idx.slots ? ((size_t)t->idx.mask + 1) * sizeof(*t->idx.slots) : 0) +
           (size_t)t->num_blocks * sizeof(struct tblock) + t->ext_bytes;
}

static uint64_t id_hash(const uint8_t id[16])
{
    return XXH3_64bits(id, 16);
}

static uint32_t find_pos(const struct traces *t, const uint8_t id[16], uint64_t h)
{
    if (!t->idx.slots)
        return IDX_NONE;
    for (uint32_t i = (uint32_t)h & t->idx.mask; t->idx.slots[i]; i = (i + 1) & t->idx.mask) {
        if (ITAB_TAG(t->idx.slots[i]) != (uint32_t)h)
            continue;
        uint32_t pos = ITAB_ITEM(t->idx.slots[i]);
        if (memcmp(t->ring[pos].trace_id, id, 16) == 0)
            return pos;
    }
    return IDX_NONE;
}

/* Fetches the index slot a lookup of hash h starts at. */
static inline void slot_prefetch(const struct traces *t, uint64_t h)
{
    if (t->idx.slots)
        __builtin_prefetch(&t->idx.slots[(uint32_t)h & t->idx.mask]);
}

void cn_derive__trace_prefetch(const struct cn_derive *d, const uint8_t id[16])
{
    slot_prefetch(&d->tr, id_hash(id));
}

const struct tsum *cn_derive__find_trace(const struct cn_derive *d, const uint8_t id[16])
{
    uint32_t pos = find_pos(&d->tr, id, id_hash(id));
    return pos == IDX_NONE ? NULL : &d->tr.ring[pos];
}

void cn_derive_trace_spans(struct cn_derive *d, const uint8_t *const *ids, size_t n,
                           uint32_t *spans)
{
    enum { AHEAD = 8 };
    uint64_t h[AHEAD];
    pthread_rwlock_rdlock(&d->lock);
    const struct traces *t = &d->tr;
    /* The index is far larger than the caches and each ID lands at random in it: the slot
     * of the ID AHEAD places on is fetched while this one is looked up. */
    for (size_t i = 0; i < n + AHEAD; i++) {
        if (i >= AHEAD) { /* first the ID whose hash takes the place of i's */
            size_t k = i - AHEAD;
            uint32_t pos = find_pos(t, ids[k], h[k % AHEAD]);
            spans[k] = pos == IDX_NONE ? 0 : t->ring[pos].spans;
        }
        if (i < n) {
            h[i % AHEAD] = id_hash(ids[i]);
            slot_prefetch(t, h[i % AHEAD]);
        }
    }
    pthread_rwlock_unlock(&d->lock);
}

/* Drops the summary at pos (the oldest). */
static void evict(struct cn_derive *d, uint32_t pos)
{
    struct traces *t = &d->tr;
    uint32_t i = (uint32_t)id_hash(t->ring[pos].trace_id) & t->idx.mask;
    while (ITAB_ITEM(t->idx.slots[i]) != pos)
        i = (i + 1) & t->idx.mask;
    cn_derive__itab_del(&t->idx, i);
    tsum_clear(t, &t->ring[pos]);
    t->num--;
    d->st.traces_evicted++;
}

/* The position for a new summary: the next in the ring, evicting its summary when the ring
 * is full. Returns IDX_NONE when memory runs out (counted). */
static uint32_t new_pos(struct cn_derive *d)
{
    struct traces *t = &d->tr;
    uint32_t pos = t->head;
    if (t->num == t->max) {
        evict(d, pos);
    } else if (pos == t->cap) {
        /* Still filling: positions 0 .. num - 1 are used, head == num. */
        uint32_t cap = CN_MIN(t->cap ? t->cap * 2 : 1024, t->max);
        struct tsum *ring = realloc(t->ring, (size_t)cap * sizeof(*ring));
        if (!ring)
            goto nomem;
        t->ring = ring;
        t->cap = cap;
    }
    if (cn_derive__itab_reserve(&t->idx, 1024) != 0)
        goto nomem;
    if ((pos & (TBLOCK - 1)) == 0) {
        /* Entering a block: what it held is "prev" until overwritten; the block left behind
         * holds only summaries written in this pass now. */
        uint32_t b = pos >> TBLOCK_SHIFT;
        t->blocks[b].prev_min = t->blocks[b].cur_min;
        t->blocks[b].prev_max = t->blocks[b].cur_max;
        t->blocks[b].cur_min = UINT64_MAX;
        t->blocks[b].cur_max = 0;
        uint32_t left = b ? b - 1 : t->num_blocks - 1;
        if (left != b) {
            t->blocks[left].prev_min = UINT64_MAX;
            t->blocks[left].prev_max = 0;
        }
    }
    if (pos >= t->hwm) { /* first use of this position: zeroed now, not when allocated */
        memset(&t->ring[pos], 0, sizeof(t->ring[pos]));
        t->hwm = pos + 1;
    }
    t->head = pos + 1 == t->max ? 0 : pos + 1;
    t->num++;
    return pos;
nomem:
    d->st.alloc_failures++;
    return IDX_NONE;
}

static void add_service(struct cn_derive *d, struct tsum *ts, uint16_t svc)
{
    const uint16_t *list = cn_derive__tsum_services(ts);
    for (uint32_t i = 0; i < ts->nsvc; i++) {
        if (list[i] == svc)
            return;
    }
    if (ts->nsvc >= d->tr.svc_cap) {
        ts->flags |= TS_SVC_TRUNC;
        return;
    }
    if (ts->nsvc < TS_INLINE) {
        ts->sv.in[ts->nsvc++] = svc;
        return;
    }
    if (ts->nsvc == TS_INLINE) {
        uint16_t *ext = malloc((size_t)d->tr.svc_cap * sizeof(*ext));
        if (!ext) {
            d->st.alloc_failures++;
            ts->flags |= TS_SVC_TRUNC;
            return;
        }
        memcpy(ext, ts->sv.in, sizeof(ts->sv.in));
        ts->sv.ext = ext;
        d->tr.ext_bytes += (size_t)d->tr.svc_cap * sizeof(*ext);
    }
    ts->sv.ext[ts->nsvc++] = svc;
}

static void set_root(struct cn_derive *d, struct tsum *ts, const struct cn_span *s, uint16_t svc)
{
    ts->root_svc = svc;
    ts->root_op = cn_derive__intern(d, s->name);
}

/* A span of the trace summarised at pos. */
static void trace_update(struct cn_derive *d, struct tsum *ts, uint32_t pos,
                         const struct cn_span *s, uint16_t svc, int err)
{
    int root = cn_id_is_zero(s->parent_id, 8);
    uint64_t end = CN_MAX(s->end_ns, s->start_ns);
    if (root && !(ts->flags & TS_ROOT)) {
        ts->flags |= TS_ROOT;
        set_root(d, ts, s, svc);
    } else if (!(ts->flags & TS_ROOT) && s->start_ns < ts->start_ns) {
        set_root(d, ts, s, svc);
    }
    ts->start_ns = CN_MIN(ts->start_ns, s->start_ns);
    ts->end_ns = CN_MAX(ts->end_ns, end);
    struct tblock *b = &d->tr.blocks[pos >> TBLOCK_SHIFT];
    b->cur_min = CN_MIN(b->cur_min, ts->start_ns);
    ts->spans++;
    ts->errors += (uint32_t)err;
    if (svc != SVC_NONE)
        add_service(d, ts, svc);
}

void cn_derive__trace_add(struct cn_derive *d, const struct cn_span *s, uint16_t svc, int err,
                          struct cn_derive__last_trace *last)
{
    struct traces *t = &d->tr;
    /* Exporters send a trace's spans together: the previous span's trace is found without
     * hashing. Its position cannot have changed since: only adding a new trace evicts. */
    if (last->valid && memcmp(last->id, s->trace_id, 16) == 0) {
        trace_update(d, &t->ring[last->pos], last->pos, s, svc, err);
        return;
    }
    uint64_t h = id_hash(s->trace_id);
    uint32_t pos = find_pos(t, s->trace_id, h);
    int root = cn_id_is_zero(s->parent_id, 8);
    uint64_t end = CN_MAX(s->end_ns, s->start_ns);
    struct tsum *ts;
    if (pos == IDX_NONE) {
        pos = new_pos(d);
        if (pos == IDX_NONE)
            return;
        ts = &t->ring[pos];
        memcpy(ts->trace_id, s->trace_id, 16);
        ts->start_ns = s->start_ns;
        ts->end_ns = end;
        ts->flags = TS_USED | (root ? TS_ROOT : 0);
        set_root(d, ts, s, svc);
        cn_derive__itab_put(&t->idx, h, pos);
        struct tblock *b = &t->blocks[pos >> TBLOCK_SHIFT];
        b->cur_max = CN_MAX(b->cur_max, s->start_ns);
        b->cur_min = CN_MIN(b->cur_min, ts->start_ns);
        ts->spans++;
        ts->errors += (uint32_t)err;
        if (svc != SVC_NONE)
            add_service(d, ts, svc);
    } else {
        trace_update(d, &t->ring[pos], pos, s, svc, err);
    }
    memcpy(last->id, s->trace_id, 16);
    last->pos = pos;
    last->valid = 1;
}
