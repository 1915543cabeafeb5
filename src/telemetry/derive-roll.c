/* Rollups of the bucket ring (derive-internal.h, struct rollups): queries over long ranges
 * read a merged block of buckets instead of each bucket. */
#include "telemetry/derive-internal.h"

static const uint32_t roll_span[ROLL_LEVELS] = {ROLL_SPAN_0, ROLL_SPAN_1};

int cn_derive__rollups_init(struct cn_derive *d)
{
    struct rollups *r = &d->roll;
    memset(r, 0, sizeof(*r));
    pthread_mutex_init(&r->lock, NULL);
    r->inited = 1;
    r->max_bytes = d->o.max_rollup_bytes;
    for (unsigned l = 0; l < ROLL_LEVELS; l++) {
        /* One slot per block the ring can hold, plus the two it may straddle. */
        uint64_t n = CN_MIN((uint64_t)d->o.num_buckets / roll_span[l] + 2, (uint64_t)ROLL_SLOTS);
        r->slots[l] = calloc(n, sizeof(*r->slots[l]));
        if (!r->slots[l])
            return CN_ENOMEM;
        r->nslots[l] = (uint32_t)n;
    }
    return 0;
}

static void roll_clear(struct rollups *r, struct rollup *e)
{
    size_t bytes = cn_derive__bucket_release(&e->b);
    CN_BUG_ON(r->bytes < bytes);
    r->bytes -= bytes;
    memset(e, 0, sizeof(*e));
}

void cn_derive__rollups_release(struct cn_derive *d)
{
    struct rollups *r = &d->roll;
    for (unsigned l = 0; l < ROLL_LEVELS; l++) {
        for (uint32_t i = 0; r->slots[l] && i < r->nslots[l]; i++)
            roll_clear(r, &r->slots[l][i]);
        cn_free(&r->slots[l]);
    }
    if (r->inited)
        pthread_mutex_destroy(&r->lock);
    r->inited = 0;
}

size_t cn_derive__rollups_bytes(struct cn_derive *d)
{
    struct rollups *r = &d->roll;
    pthread_mutex_lock(&r->lock);
    size_t n = r->bytes;
    for (unsigned l = 0; l < ROLL_LEVELS; l++)
        n += (size_t)r->nslots[l] * sizeof(struct rollup);
    pthread_mutex_unlock(&r->lock);
    return n;
}

/* Merges the cells of src into the rollup being built. */
static int roll_add(void *ctx, const struct bucket *src)
{
    struct cn_derive *d = ((void **)ctx)[0];
    struct bucket *dst = ((void **)ctx)[1];
    const struct red_cell *rs = src->red.cells;
    for (uint32_t i = 0; i < src->red.num; i++) {
        struct red_cell *c =
            (struct red_cell *)cn_derive__find_cell(&dst->red, sizeof(*c), rs[i].series);
        if (!c && !(c = cn_derive__ctab_add(&dst->red, sizeof(*c), rs[i].series)))
            return CN_ENOMEM;
        c->errors += rs[i].errors; /* a block's errors fit 32 bits as its buckets' do */
        if (cn_sketch_merge(&c->sk, &d->skc, &rs[i].sk) != 0)
            return CN_ENOMEM;
    }
    const struct edge_cell *es = src->edge.cells;
    for (uint32_t i = 0; i < src->edge.num; i++) {
        struct edge_cell *c =
            (struct edge_cell *)cn_derive__find_cell(&dst->edge, sizeof(*c), es[i].edge);
        if (!c && !(c = cn_derive__ctab_add(&dst->edge, sizeof(*c), es[i].edge)))
            return CN_ENOMEM;
        c->count += es[i].count;
        c->errors += es[i].errors;
        if (cn_sketch_merge(&c->server, &d->skc, &es[i].server) != 0 ||
            cn_sketch_merge(&c->client, &d->skc, &es[i].client) != 0)
            return CN_ENOMEM;
    }
    return 0;
}

static size_t roll_bytes(const struct bucket *b)
{
    size_t n = cn_derive__ctab_bytes(&b->red, sizeof(struct red_cell)) +
               cn_derive__ctab_bytes(&b->edge, sizeof(struct edge_cell));
    const struct red_cell *rc = b->red.cells;
    for (uint32_t i = 0; i < b->red.num; i++)
        n += cn_sketch_bytes(&rc[i].sk);
    const struct edge_cell *ec = b->edge.cells;
    for (uint32_t i = 0; i < b->edge.num; i++)
        n += cn_sketch_bytes(&ec[i].server) + cn_sketch_bytes(&ec[i].client);
    return n;
}

/* Trims every sketch to its keys, at the narrowest counter width: a rollup takes no more
 * values, and merged windows grew by doubling. */
static void roll_shrink(struct bucket *b)
{
    struct red_cell *rc = b->red.cells;
    for (uint32_t i = 0; i < b->red.num; i++)
        cn_sketch_shrink(&rc[i].sk); /* on failure it stays as it was */
    struct edge_cell *ec = b->edge.cells;
    for (uint32_t i = 0; i < b->edge.num; i++) {
        cn_sketch_shrink(&ec[i].server);
        cn_sketch_shrink(&ec[i].client);
    }
}

/* No bucket of [first, last] written since e was built. */
static int fresh(const struct cn_derive *d, const struct rollup *e, uint64_t first, uint64_t last)
{
    for (uint64_t bno = first; bno <= last; bno++) {
        const struct bucket *b = cn_derive__bucket_at(d, bno);
        if (b && b->mod > e->built)
            return 0;
    }
    return 1;
}

/* Frees the least recently used rollups other than keep until bytes fit max_bytes.
 * Returns 0 when they do. */
static int roll_room(struct rollups *r, const struct rollup *keep)
{
    while (r->bytes > r->max_bytes) {
        struct rollup *old = NULL;
        for (unsigned l = 0; l < ROLL_LEVELS; l++) {
            for (uint32_t i = 0; i < r->nslots[l]; i++) {
                struct rollup *e = &r->slots[l][i];
                if (e->used && e != keep && (!old || e->tick < old->tick))
                    old = e;
            }
        }
        if (!old)
            return -1;
        roll_clear(r, old);
    }
    return 0;
}

static int pieces(struct cn_derive *d, uint64_t lo, uint64_t hi, int top, int build,
                  cn_derive__piece_cb cb, void *ctx);

/* The rollup of block k of level l, built if needed and build is set; NULL when the block
 * is not whole in the ring or not yet behind its newest two buckets, or does not fit. */
static const struct bucket *rollup_get(struct cn_derive *d, unsigned l, uint64_t k, int build)
{
    struct rollups *r = &d->roll;
    uint64_t first = k * roll_span[l], last = first + roll_span[l] - 1;
    /* The newest two buckets still take most writes: a block holding one would be stale at
     * once. */
    if (!r->max_bytes || !d->started || first < d->ring_lo || last + 2 > d->ring_head)
        return NULL;
    struct rollup *e = &r->slots[l][k % r->nslots[l]];
    if (e->used && e->block == k && fresh(d, e, first, last)) {
        e->tick = ++r->tick;
        return &e->b;
    }
    if (!build)
        return NULL;
    if (e->used)
        roll_clear(r, e);
    e->used = 1;
    e->block = k;
    e->built = d->mod_seq;
    e->tick = ++r->tick;
    void *ctx[2] = {d, &e->b};
    /* From the fresh rollups of the level below where there are some, without building more
     * of them (a ten-minute block would otherwise leave ten minute rollups behind). */
    int rc = pieces(d, first, last, (int)l - 1, 0, roll_add, ctx);
    roll_shrink(&e->b);
    e->b.bytes = roll_bytes(&e->b);
    r->bytes += e->b.bytes;
    if (rc != 0 || roll_room(r, e) != 0) {
        roll_clear(r, e);
        r->refused++;
        return NULL;
    }
    r->builds++;
    return &e->b;
}

/* cn_derive__each_piece with rollups of levels up to top (-1: buckets only). */
static int pieces(struct cn_derive *d, uint64_t lo, uint64_t hi, int top, int build,
                  cn_derive__piece_cb cb, void *ctx)
{
    for (uint64_t bno = lo; bno <= hi;) {
        const struct bucket *b = NULL;
        uint64_t step = 1;
        for (int l = top; l >= 0 && !b; l--) {
            uint64_t span = roll_span[l];
            if (bno % span == 0 && hi - bno >= span - 1 &&
                (b = rollup_get(d, (unsigned)l, bno / span, build)))
                step = span;
        }
        if (b)
            d->roll.hits++;
        else
            b = cn_derive__bucket_at(d, bno);
        if (b) {
            int rc = cb(ctx, b);
            if (rc != 0)
                return rc;
        }
        if (hi - bno < step)
            break;
        bno += step;
    }
    return 0;
}

int cn_derive__each_piece(struct cn_derive *d, uint64_t lo, uint64_t hi, int build,
                          cn_derive__piece_cb cb, void *ctx)
{
    pthread_mutex_lock(&d->roll.lock);
    int rc = pieces(d, lo, hi, ROLL_LEVELS - 1, build, cb, ctx);
    pthread_mutex_unlock(&d->roll.lock);
    return rc;
}

/* Block k of level 1 holds spans, all written long enough ago, and has no fresh rollup. */
static int block_due(const struct cn_derive *d, uint64_t k)
{
    uint64_t first = k * ROLL_SPAN_1, last = first + ROLL_SPAN_1 - 1;
    int any = 0;
    for (uint64_t bno = first; bno <= last; bno++) {
        const struct bucket *b = cn_derive__bucket_at(d, bno);
        if (!b)
            continue;
        if (b->mod_ns + CN_DERIVE_ROLLUP_SETTLE_NS > d->now)
            return 0;
        any = 1;
    }
    const struct rollup *e = &d->roll.slots[1][k % d->roll.nslots[1]];
    return any && !(e->used && e->block == k && fresh(d, e, first, last));
}

int cn_derive_rollup_step(struct cn_derive *d)
{
    pthread_rwlock_rdlock(&d->lock);
    struct rollups *r = &d->roll;
    pthread_mutex_lock(&r->lock);
    int built = 0;
    if (d->started && r->max_bytes) {
        /* Blocks whole in the ring whose buckets all lie at least two behind the newest (as
         * rollup_get wants). */
        uint64_t k = (d->ring_lo + ROLL_SPAN_1 - 1) / ROLL_SPAN_1;
        for (; (k + 1) * ROLL_SPAN_1 + 1 <= d->ring_head && r->bytes < r->max_bytes / 2; k++) {
            if (block_due(d, k)) {
                built = rollup_get(d, 1, k, 1) != NULL;
                break;
            }
        }
    }
    pthread_mutex_unlock(&r->lock);
    pthread_rwlock_unlock(&d->lock);
    return built;
}
