/* Latency histogram with a bounded relative error, after DDSketch (Masson, Rim and Lee, VLDB
 * 2019): a value v > 0 falls in the bucket of key k = ceil(log_gamma(v)), which covers
 * (gamma^(k-1), gamma^k] with gamma = (1 + alpha) / (1 - alpha); the bucket answers with
 * 2 gamma^k / (gamma + 1), which is within a relative error alpha of every value in it. So
 * every quantile is within alpha (relative) of the exact one — the exact one being the element
 * of rank floor(q * (count - 1)) in sorted order. Zero is counted apart and answered exactly;
 * count, sum, min and max are exact (min and max bound every answer).
 *
 * Values are durations (nanoseconds for spans): finite and >= 0. Sketches with the same
 * configuration merge exactly: merging gives the same buckets as adding every value to one.
 *
 * Buckets are a dense window of counters over a key range [base, base + cap) that grows as
 * keys arrive, with counters as narrow as the counts allow (1, 2, 4 or 8 bytes, widened on
 * overflow), so a sketch of a few values takes a few bytes. The key range is capped at
 * max_bins: past it, the lowest buckets collapse into the lowest one kept. A collapsed sketch
 * still answers within alpha every quantile whose exact value lies at or above that bucket;
 * quantiles that land in it are over-estimated (never below min). With alpha 0.01 and the
 * default 2048 buckets, one sketch spans a ratio of gamma^2048 ~ 6e17 between its smallest
 * and largest value (1 ns to 19 years) before anything collapses. */
#ifndef CN_TELEMETRY_SKETCH_H
#define CN_TELEMETRY_SKETCH_H

#include "base/base.h"

#define CN_SKETCH_ALPHA_DEFAULT    0.01
#define CN_SKETCH_ALPHA_MIN        1e-6 /* keeps every key of a double within int32 */
#define CN_SKETCH_ALPHA_MAX        0.5
#define CN_SKETCH_MAX_BINS_DEFAULT 2048
#define CN_SKETCH_MAX_BINS_LIMIT   65535

/* Shared by every sketch that is merged with another: not stored in each sketch. */
struct cn_sketch_cfg {
    double alpha;
    double gamma;
    double log_gamma;
    double inv_log_gamma;
    uint32_t max_bins;
};

/* States: all-zero is the empty sketch, so sketches in zeroed memory need no init.
 * Invariants: count = zero_count + the sum of the counters; when count > 0, min <= max are
 * the exact extremes and sum the exact total (as a double). When CN_SKETCH_KEYED is set, the
 * counters of keys lo and hi are nonzero, every nonzero counter lies in [lo, hi],
 * hi - lo < max_bins, and base <= lo <= hi < base + cap. Every counter fits 1 << wlog bytes. */
struct cn_sketch {
    uint64_t count;
    uint64_t zero_count;
    double sum, min, max;
    void *bins;           /* cap counters of 1 << wlog bytes; NULL until a value > 0 */
    int32_t base, lo, hi; /* key of bins[0]; range of nonzero counters */
    uint16_t cap;         /* counters allocated */
    uint8_t wlog;         /* log2 of the counter width */
    uint8_t flags;        /* cn_sketch_flags */
};

enum cn_sketch_flags {
    CN_SKETCH_KEYED = 1 << 0,     /* some value > 0 was added */
    CN_SKETCH_COLLAPSED = 1 << 1, /* keys below lo were folded into lo */
};

/* Fills c for relative accuracy alpha in [CN_SKETCH_ALPHA_MIN, CN_SKETCH_ALPHA_MAX] and a
 * bucket cap in [2, CN_SKETCH_MAX_BINS_LIMIT]. Returns 0 or CN_EINVAL. */
int cn_sketch_cfg_init(struct cn_sketch_cfg *c, double alpha, uint32_t max_bins);

static inline void cn_sketch_init(struct cn_sketch *s)
{
    memset(s, 0, sizeof(*s));
}

/* Frees the counters; s is empty afterwards. */
void cn_sketch_release(struct cn_sketch *s);
/* Empties s and keeps its counters' memory for reuse. */
void cn_sketch_clear(struct cn_sketch *s);

/* The bucket key of v > 0 (finite). Callers that add one value to several sketches compute
 * it once and use cn_sketch_add_key. */
int32_t cn_sketch_key(const struct cn_sketch_cfg *c, double v);
/* The value a bucket answers with. */
double cn_sketch_key_value(const struct cn_sketch_cfg *c, int32_t key);

/* Adds v. Returns 0, CN_EINVAL when v is negative, NaN or infinite, or CN_ENOMEM (then s is
 * unchanged). */
int cn_sketch_add(struct cn_sketch *s, const struct cn_sketch_cfg *c, double v);
/* Same, with key = cn_sketch_key(c, v) already computed (ignored when v == 0). */
int cn_sketch_add_key(struct cn_sketch *s, const struct cn_sketch_cfg *c, double v, int32_t key);
/* Adds every value of src to dst (same c). Returns 0 or CN_ENOMEM; on CN_ENOMEM dst holds
 * only part of src's buckets and its count, sum, min and max are unchanged: release it. */
int cn_sketch_merge(struct cn_sketch *dst, const struct cn_sketch_cfg *c,
                    const struct cn_sketch *src);

/* Trims the counters to the keys in use, at the narrowest width that holds them: for a sketch
 * that will take few values more. Returns 0 or CN_ENOMEM (s unchanged). */
int cn_sketch_shrink(struct cn_sketch *s);

/* The q-quantile, q in [0, 1]: q = 0 is min, q = 1 is max. Returns 0, CN_ENOENT when s is
 * empty, CN_EINVAL when q is outside [0, 1]. */
int cn_sketch_quantile(const struct cn_sketch *s, const struct cn_sketch_cfg *c, double *out_v,
                       double q);
/* num_qs quantiles in one pass; qs ascending. Same returns; out_vs is unchanged on failure. */
int cn_sketch_quantiles(const struct cn_sketch *s, const struct cn_sketch_cfg *c, double *out_vs,
                        const double *qs, size_t num_qs);

/* Heap bytes held by s (its counters), not counting struct cn_sketch itself. */
static inline size_t cn_sketch_bytes(const struct cn_sketch *s)
{
    return (size_t)s->cap << s->wlog;
}

#endif
