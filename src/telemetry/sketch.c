#include "telemetry/sketch.h"

#include <math.h>

/* Counters of a new sketch: enough for a typical 10 s bucket of one operation without a
 * second allocation; the window doubles from there. */
#define INIT_BINS 16

int cn_sketch_cfg_init(struct cn_sketch_cfg *c, double alpha, uint32_t max_bins)
{
    if (!(alpha >= CN_SKETCH_ALPHA_MIN && alpha <= CN_SKETCH_ALPHA_MAX))
        return CN_EINVAL;
    if (max_bins < 2 || max_bins > CN_SKETCH_MAX_BINS_LIMIT)
        return CN_EINVAL;
    c->alpha = alpha;
    c->gamma = (1 + alpha) / (1 - alpha);
    /* log1p keeps the precision that log(gamma) would lose for a small alpha. */
    c->log_gamma = log1p(2 * alpha / (1 - alpha));
    c->inv_log_gamma = 1 / c->log_gamma;
    c->max_bins = max_bins;
    return 0;
}

void cn_sketch_release(struct cn_sketch *s)
{
    free(s->bins);
    cn_sketch_init(s);
}

void cn_sketch_clear(struct cn_sketch *s)
{
    if (s->bins)
        memset(s->bins, 0, cn_sketch_bytes(s));
    s->count = s->zero_count = 0;
    s->sum = s->min = s->max = 0;
    s->flags = 0;
}

int32_t cn_sketch_key(const struct cn_sketch_cfg *c, double v)
{
    return (int32_t)ceil(log(v) * c->inv_log_gamma);
}

double cn_sketch_key_value(const struct cn_sketch_cfg *c, int32_t key)
{
    return 2 * exp(key * c->log_gamma) / (c->gamma + 1);
}

static uint64_t wmax(unsigned wlog)
{
    return wlog == 3 ? UINT64_MAX : ((uint64_t)1 << (8u << wlog)) - 1;
}

static unsigned wlog_for(uint64_t v)
{
    return v <= UINT8_MAX ? 0 : v <= UINT16_MAX ? 1 : v <= UINT32_MAX ? 2 : 3;
}

static uint64_t get(const void *bins, unsigned wlog, size_t i)
{
    switch (wlog) {
    case 0:
        return ((const uint8_t *)bins)[i];
    case 1:
        return ((const uint16_t *)bins)[i];
    case 2:
        return ((const uint32_t *)bins)[i];
    default:
        return ((const uint64_t *)bins)[i];
    }
}

static void put(void *bins, unsigned wlog, size_t i, uint64_t v)
{
    switch (wlog) {
    case 0:
        ((uint8_t *)bins)[i] = (uint8_t)v;
        break;
    case 1:
        ((uint16_t *)bins)[i] = (uint16_t)v;
        break;
    case 2:
        ((uint32_t *)bins)[i] = (uint32_t)v;
        break;
    default:
        ((uint64_t *)bins)[i] = v;
        break;
    }
}

static uint64_t count_at(const struct cn_sketch *s, int64_t key)
{
    return get(s->bins, s->wlog, (size_t)(key - s->base));
}

/* Moves the counters into a window [base, base + cap) of 1 << wlog-byte counters (wlog at
 * least the current one), folding the counters of keys below floor into floor. */
static int relayout(struct cn_sketch *s, int64_t base, uint32_t cap, unsigned wlog, int64_t floor)
{
    int keyed = s->flags & CN_SKETCH_KEYED;
    if (keyed && s->lo < floor) {
        uint64_t folded = 0;
        for (int64_t k = s->lo; k <= CN_MIN(floor, (int64_t)s->hi); k++)
            folded += count_at(s, k);
        wlog = CN_MAX(wlog, wlog_for(folded));
    }
    void *nb = calloc(cap, (size_t)1 << wlog);
    if (!nb)
        return CN_ENOMEM;
    if (keyed) {
        for (int64_t k = s->lo; k <= s->hi; k++) {
            uint64_t v = count_at(s, k);
            if (v == 0)
                continue;
            size_t i = (size_t)(CN_MAX(k, floor) - base);
            put(nb, wlog, i, get(nb, wlog, i) + v);
        }
        if (s->lo < floor) {
            s->lo = (int32_t)floor;
            s->flags |= CN_SKETCH_COLLAPSED;
        }
    }
    free(s->bins);
    s->bins = nb;
    s->base = (int32_t)base;
    s->cap = (uint16_t)cap;
    s->wlog = (uint8_t)wlog;
    return 0;
}

/* Adds n to the counter of key, growing the window (and collapsing its lowest keys past
 * max_bins) as needed. On CN_ENOMEM no count changed. */
static int add_count(struct cn_sketch *s, const struct cn_sketch_cfg *c, int64_t key, uint64_t n)
{
    int keyed = s->flags & CN_SKETCH_KEYED;
    int64_t lo = keyed ? CN_MIN((int64_t)s->lo, key) : key;
    int64_t hi = keyed ? CN_MAX((int64_t)s->hi, key) : key;
    if (hi - lo + 1 > (int64_t)c->max_bins) {
        lo = hi - c->max_bins + 1;
        if (key < lo) {
            key = lo;
            s->flags |= CN_SKETCH_COLLAPSED;
        }
    }
    if (!s->bins || lo < s->base || hi >= (int64_t)s->base + s->cap) {
        /* The window doubles only when the range outgrew it; otherwise it moves. Either way
         * the spare counters go half below, half above: ranges grow at both ends. */
        uint32_t need = (uint32_t)(hi - lo + 1);
        uint32_t cap = s->cap ? s->cap : INIT_BINS;
        if (need > cap)
            cap = CN_MAX(need, 2 * cap);
        cap = CN_MIN(cap, c->max_bins);
        int64_t base = lo - (cap - need) / 2;
        int rc = relayout(s, base, cap, s->wlog, lo);
        if (rc != 0)
            return rc;
    }
    size_t i = (size_t)(key - s->base);
    uint64_t v = get(s->bins, s->wlog, i) + n;
    if (v > wmax(s->wlog)) {
        int rc = relayout(s, s->base, s->cap, wlog_for(v), s->lo);
        if (rc != 0)
            return rc;
    }
    put(s->bins, s->wlog, i, v);
    s->lo = (int32_t)(keyed ? CN_MIN((int64_t)s->lo, key) : key);
    s->hi = (int32_t)hi;
    s->flags |= CN_SKETCH_KEYED;
    return 0;
}

static void add_stats(struct cn_sketch *s, uint64_t n, double sum, double min, double max)
{
    if (s->count == 0) {
        s->min = min;
        s->max = max;
    } else {
        s->min = CN_MIN(s->min, min);
        s->max = CN_MAX(s->max, max);
    }
    s->count += n;
    s->sum += sum;
}

int cn_sketch_add_key(struct cn_sketch *s, const struct cn_sketch_cfg *c, double v, int32_t key)
{
    if (!(v >= 0) || isinf(v))
        return CN_EINVAL;
    if (v == 0) {
        s->zero_count++;
    } else {
        int rc = add_count(s, c, key, 1);
        if (rc != 0)
            return rc;
    }
    add_stats(s, 1, v, v, v);
    return 0;
}

int cn_sketch_add(struct cn_sketch *s, const struct cn_sketch_cfg *c, double v)
{
    if (!(v >= 0) || isinf(v))
        return CN_EINVAL;
    return cn_sketch_add_key(s, c, v, v > 0 ? cn_sketch_key(c, v) : 0);
}

/* Adds the counters of src's keys strictly between its lo and hi to dst (whose window
 * already holds src's lo and hi): in place when a key lies in dst's [lo, hi] and its sum
 * fits dst's counter width, through add_count otherwise. The counter type T of src is a
 * parameter so that the loop over src's window, zeros included, reads it directly. */
#define MERGE_INNER(name, T)                                                                       \
    static int name(struct cn_sketch *dst, const struct cn_sketch_cfg *c,                          \
                    const struct cn_sketch *src)                                                   \
    {                                                                                              \
        const T *sb = src->bins;                                                                   \
        for (int64_t k = (int64_t)src->lo + 1; k < src->hi; k++) {                                 \
            uint64_t v = sb[k - src->base];                                                        \
            if (v == 0)                                                                            \
                continue;                                                                          \
            if (k >= dst->lo && k <= dst->hi) {                                                    \
                size_t i = (size_t)(k - dst->base);                                                \
                uint64_t sum = get(dst->bins, dst->wlog, i) + v;                                   \
                if (sum <= wmax(dst->wlog)) {                                                      \
                    put(dst->bins, dst->wlog, i, sum);                                             \
                    continue;                                                                      \
                }                                                                                  \
            }                                                                                      \
            int rc = add_count(dst, c, k, v);                                                      \
            if (rc != 0)                                                                           \
                return rc;                                                                         \
        }                                                                                          \
        return 0;                                                                                  \
    }
MERGE_INNER(merge_inner8, uint8_t)
MERGE_INNER(merge_inner16, uint16_t)
MERGE_INNER(merge_inner32, uint32_t)
MERGE_INNER(merge_inner64, uint64_t)

int cn_sketch_merge(struct cn_sketch *dst, const struct cn_sketch_cfg *c,
                    const struct cn_sketch *src)
{
    if (src->count == 0)
        return 0;
    if (src->flags & CN_SKETCH_KEYED) {
        /* Both ends first: the window then grows at most twice. */
        int rc = add_count(dst, c, src->hi, count_at(src, src->hi));
        if (rc == 0 && src->lo != src->hi)
            rc = add_count(dst, c, src->lo, count_at(src, src->lo));
        /* With both ends in, the keys between go through merge_inner: in place while they
         * fit dst's window and counter width (topology merges thousands of sketches). */
        if (rc == 0 && src->hi - src->lo > 1) {
            switch (src->wlog) {
            case 0:
                rc = merge_inner8(dst, c, src);
                break;
            case 1:
                rc = merge_inner16(dst, c, src);
                break;
            case 2:
                rc = merge_inner32(dst, c, src);
                break;
            default:
                rc = merge_inner64(dst, c, src);
                break;
            }
        }
        if (rc != 0)
            return rc;
        if (src->flags & CN_SKETCH_COLLAPSED)
            dst->flags |= CN_SKETCH_COLLAPSED;
    }
    dst->zero_count += src->zero_count;
    add_stats(dst, src->count, src->sum, src->min, src->max);
    return 0;
}

int cn_sketch_shrink(struct cn_sketch *s)
{
    if (!(s->flags & CN_SKETCH_KEYED)) {
        cn_free(&s->bins);
        s->cap = 0;
        s->wlog = 0;
        return 0;
    }
    uint64_t top = 0;
    for (int64_t k = s->lo; k <= s->hi; k++)
        top = CN_MAX(top, count_at(s, k));
    uint32_t need = (uint32_t)(s->hi - s->lo + 1);
    unsigned wlog = wlog_for(top);
    if (need == s->cap && wlog == s->wlog)
        return 0;
    void *nb = calloc(need, (size_t)1 << wlog);
    if (!nb)
        return CN_ENOMEM;
    for (int64_t k = s->lo; k <= s->hi; k++)
        put(nb, wlog, (size_t)(k - s->lo), count_at(s, k));
    free(s->bins);
    s->bins = nb;
    s->base = s->lo;
    s->cap = (uint16_t)need;
    s->wlog = (uint8_t)wlog;
    return 0;
}

int cn_sketch_quantiles(const struct cn_sketch *s, const struct cn_sketch_cfg *c, double *out_vs,
                        const double *qs, size_t num_qs)
{
    for (size_t i = 0; i < num_qs; i++) {
        if (!(qs[i] >= 0 && qs[i] <= 1) || (i > 0 && qs[i] < qs[i - 1]))
            return CN_EINVAL;
    }
    if (s->count == 0)
        return CN_ENOENT;
    /* cum counts the values below key k; the answer for rank r is the bucket holding the
     * value of rank floor(r), the first where cum + count > r. */
    uint64_t cum = s->zero_count;
    int64_t k = s->lo;
    double last = (double)(s->count - 1);
    for (size_t i = 0; i < num_qs; i++) {
        double rank = qs[i] * last, v;
        if (rank <= 0) {
            v = s->min;
        } else if (rank >= last) {
            v = s->max;
        } else if (rank < (double)s->zero_count) {
            v = 0;
        } else {
            while (k < s->hi) {
                uint64_t b = count_at(s, k);
                if ((double)(cum + b) > rank)
                    break;
                cum += b;
                k++;
            }
            v = cn_sketch_key_value(c, (int32_t)k);
            v = CN_MAX(s->min, CN_MIN(s->max, v));
        }
        out_vs[i] = v;
    }
    return 0;
}

int cn_sketch_quantile(const struct cn_sketch *s, const struct cn_sketch_cfg *c, double *out_v,
                       double q)
{
    return cn_sketch_quantiles(s, c, out_v, &q, 1);
}
