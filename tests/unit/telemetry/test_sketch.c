#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <math.h>

#include "telemetry/sketch.h"

/* ---- deterministic values ---- */

static uint64_t rng = 0x9E3779B97F4A7C15ull;

static uint64_t next_u64(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

static double next_unit(void) /* (0, 1] */
{
    return (double)((next_u64() >> 11) + 1) / 9007199254740992.0;
}

static double next_normal(void)
{
    return sqrt(-2 * log(next_unit())) * cos(2 * M_PI * next_unit());
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static const double qs[] = {0,   0.001, 0.01, 0.1,   0.25,   0.5, 0.75,
                            0.9, 0.95,  0.99, 0.999, 0.9999, 1};

/* Every quantile of s within alpha (relative) of the exact one over sorted vs. */
static void check_quantiles(const struct cn_sketch *s, const struct cn_sketch_cfg *c,
                            const double *sorted, size_t n)
{
    for (size_t i = 0; i < CN_ARRAY_LEN(qs); i++) {
        double got;
        assert_int_equal(cn_sketch_quantile(s, c, &got, qs[i]), 0);
        double exact = sorted[(size_t)floor(qs[i] * (double)(n - 1))];
        double err = fabs(got - exact);
        if (err > c->alpha * exact * (1 + 1e-9)) {
            fail_msg("q=%g exact=%.17g got=%.17g relative error %.3g > %g", qs[i], exact, got,
                     exact ? err / exact : err, c->alpha);
        }
    }
}

static void check_exact_stats(const struct cn_sketch *s, const double *vs, size_t n)
{
    double sum = 0, min = vs[0], max = vs[0];
    for (size_t i = 0; i < n; i++) {
        sum += vs[i];
        min = CN_MIN(min, vs[i]);
        max = CN_MAX(max, vs[i]);
    }
    assert_int_equal(s->count, n);
    assert_true(s->min == min);
    assert_true(s->max == max);
    assert_true(fabs(s->sum - sum) <= 1e-12 * sum);
}

/* Adds vs to a sketch, checks its stats and quantiles (vs ends up sorted). */
static void run_distribution(double alpha, uint32_t max_bins, double *vs, size_t n)
{
    struct cn_sketch_cfg c;
    assert_int_equal(cn_sketch_cfg_init(&c, alpha, max_bins), 0);
    struct cn_sketch s;
    cn_sketch_init(&s);
    for (size_t i = 0; i < n; i++)
        assert_int_equal(cn_sketch_add(&s, &c, vs[i]), 0);
    check_exact_stats(&s, vs, n);
    qsort(vs, n, sizeof(*vs), cmp_double);
    check_quantiles(&s, &c, vs, n);
    assert_false(s.flags & CN_SKETCH_COLLAPSED);
    cn_sketch_release(&s);
}

#define N 100000

static void uniform(void **state)
{
    (void)state;
    double *vs = malloc(N * sizeof(*vs));
    for (size_t i = 0; i < N; i++)
        vs[i] = (double)(1000 + next_u64() % 1000000000); /* 1 us .. 1 s in ns */
    run_distribution(0.01, CN_SKETCH_MAX_BINS_DEFAULT, vs, N);
    free(vs);
}

static void lognormal(void **state)
{
    (void)state;
    double *vs = malloc(N * sizeof(*vs));
    for (size_t i = 0; i < N; i++)
        vs[i] = round(exp(log(2e6) + 1.5 * next_normal())); /* median 2 ms, heavy tail */
    for (size_t i = 0; i < N; i++)
        vs[i] = CN_MAX(vs[i], 1.0);
    run_distribution(0.01, CN_SKETCH_MAX_BINS_DEFAULT, vs, N);
    free(vs);
}

static void constant(void **state)
{
    (void)state;
    double *vs = malloc(1000 * sizeof(*vs));
    for (size_t i = 0; i < 1000; i++)
        vs[i] = 123456789;
    struct cn_sketch_cfg c;
    cn_sketch_cfg_init(&c, 0.01, CN_SKETCH_MAX_BINS_DEFAULT);
    struct cn_sketch s;
    cn_sketch_init(&s);
    for (size_t i = 0; i < 1000; i++)
        assert_int_equal(cn_sketch_add(&s, &c, vs[i]), 0);
    /* One bucket, and min == max pins every answer to the value itself. */
    for (size_t i = 0; i < CN_ARRAY_LEN(qs); i++) {
        double v;
        assert_int_equal(cn_sketch_quantile(&s, &c, &v, qs[i]), 0);
        assert_true(v == 123456789);
    }
    assert_int_equal(s.lo, s.hi);
    assert_int_equal(cn_sketch_bytes(&s), 32); /* the first window: 16 two-byte counters */
    free(vs);
    cn_sketch_release(&s);
}

static void with_zeros(void **state)
{
    (void)state;
    double *vs = malloc(N * sizeof(*vs));
    for (size_t i = 0; i < N; i++)
        vs[i] = next_u64() % 10 < 3 ? 0 : round(exp(log(5e4) + next_normal()));
    run_distribution(0.01, CN_SKETCH_MAX_BINS_DEFAULT, vs, N);

    /* Only zeros. */
    struct cn_sketch_cfg c;
    cn_sketch_cfg_init(&c, 0.01, CN_SKETCH_MAX_BINS_DEFAULT);
    struct cn_sketch s;
    cn_sketch_init(&s);
    for (int i = 0; i < 10; i++)
        assert_int_equal(cn_sketch_add(&s, &c, 0), 0);
    double v = -1;
    assert_int_equal(cn_sketch_quantile(&s, &c, &v, 0.99), 0);
    assert_true(v == 0);
    assert_int_equal(s.zero_count, 10);
    assert_null(s.bins);
    cn_sketch_release(&s);
    free(vs);
}

static void wide_range_and_other_alpha(void **state)
{
    (void)state;
    /* 1 ns to ~1000 s: 12 decades in one sketch. */
    double *vs = malloc(N * sizeof(*vs));
    for (size_t i = 0; i < N; i++)
        vs[i] = round(pow(10, 12 * next_unit()));
    run_distribution(0.01, CN_SKETCH_MAX_BINS_DEFAULT, vs, N);
    for (size_t i = 0; i < N; i++)
        vs[i] = round(exp(log(1e7) + 2 * next_normal())) + 1;
    run_distribution(0.05, CN_SKETCH_MAX_BINS_DEFAULT, vs, N);
    /* At 0.1 %, five decades take ln(1e5) / 0.002 = 5757 buckets: past the default cap. */
    for (size_t i = 0; i < N; i++)
        vs[i] = 1 + next_u64() % 100000;
    run_distribution(0.001, 8192, vs, N);
    free(vs);
}

static void merge_equals_combined(void **state)
{
    (void)state;
    struct cn_sketch_cfg c;
    cn_sketch_cfg_init(&c, 0.01, CN_SKETCH_MAX_BINS_DEFAULT);
    struct cn_sketch all, part[3], merged;
    cn_sketch_init(&all);
    cn_sketch_init(&merged);
    for (int i = 0; i < 3; i++)
        cn_sketch_init(&part[i]);
    double *vs = malloc(N * sizeof(*vs));
    for (size_t i = 0; i < N; i++) {
        /* Parts with different ranges, so the merge has to grow the window both ways. */
        size_t p = next_u64() % 3;
        double v = p == 0 ? 0 : round(exp(log(p == 1 ? 1e3 : 1e8) + next_normal()));
        vs[i] = v;
        assert_int_equal(cn_sketch_add(&all, &c, v), 0);
        assert_int_equal(cn_sketch_add(&part[p], &c, v), 0);
    }
    for (int i = 2; i >= 0; i--)
        assert_int_equal(cn_sketch_merge(&merged, &c, &part[i]), 0);
    assert_int_equal(merged.count, all.count);
    assert_int_equal(merged.zero_count, all.zero_count);
    assert_true(merged.min == all.min && merged.max == all.max);
    assert_true(fabs(merged.sum - all.sum) <= 1e-9 * all.sum);
    assert_int_equal(merged.lo, all.lo);
    assert_int_equal(merged.hi, all.hi);
    for (int q = 0; q <= 1000; q++) {
        double a, b;
        assert_int_equal(cn_sketch_quantile(&all, &c, &a, q / 1000.0), 0);
        assert_int_equal(cn_sketch_quantile(&merged, &c, &b, q / 1000.0), 0);
        assert_true(a == b);
    }
    qsort(vs, N, sizeof(*vs), cmp_double);
    check_quantiles(&merged, &c, vs, N);
    /* Merging an empty sketch changes nothing; merging into an empty one copies. */
    struct cn_sketch empty;
    cn_sketch_init(&empty);
    assert_int_equal(cn_sketch_merge(&merged, &c, &empty), 0);
    assert_int_equal(merged.count, N);
    assert_int_equal(cn_sketch_merge(&empty, &c, &merged), 0);
    assert_int_equal(empty.count, N);
    double a, b;
    cn_sketch_quantile(&empty, &c, &a, 0.42);
    cn_sketch_quantile(&all, &c, &b, 0.42);
    assert_true(a == b);
    cn_sketch_release(&empty);
    cn_sketch_release(&all);
    cn_sketch_release(&merged);
    for (int i = 0; i < 3; i++)
        cn_sketch_release(&part[i]);
    free(vs);
}

static void counters_widen(void **state)
{
    (void)state;
    struct cn_sketch_cfg c;
    cn_sketch_cfg_init(&c, 0.01, CN_SKETCH_MAX_BINS_DEFAULT);
    struct cn_sketch s, t;
    cn_sketch_init(&s);
    cn_sketch_init(&t);
    for (int i = 0; i < 300; i++)
        cn_sketch_add(&s, &c, 1000);
    assert_int_equal(s.wlog, 1); /* 300 needs two bytes */
    for (int i = 0; i < 70000; i++)
        cn_sketch_add(&s, &c, 1000);
    assert_int_equal(s.wlog, 2);
    cn_sketch_add(&s, &c, 5e9);
    /* Double by merging a copy until counts pass 2^32. */
    while (s.count < (1ull << 33)) {
        cn_sketch_clear(&t);
        assert_int_equal(cn_sketch_merge(&t, &c, &s), 0);
        assert_int_equal(cn_sketch_merge(&s, &c, &t), 0);
    }
    assert_int_equal(s.wlog, 3);
    double v;
    cn_sketch_quantile(&s, &c, &v, 0.5);
    assert_true(fabs(v - 1000) <= 10);
    cn_sketch_quantile(&s, &c, &v, 1);
    assert_true(v == 5e9);
    cn_sketch_release(&s);
    cn_sketch_release(&t);
}

static void collapse_lowest(void **state)
{
    (void)state;
    struct cn_sketch_cfg c;
    cn_sketch_cfg_init(&c, 0.01, 64); /* 64 buckets span a ratio of ~3.6 */
    struct cn_sketch s;
    cn_sketch_init(&s);
    double *vs = malloc(10000 * sizeof(*vs));
    for (size_t i = 0; i < 10000; i++) {
        vs[i] = (double)(1 + next_u64() % 1000);
        assert_int_equal(cn_sketch_add(&s, &c, vs[i]), 0);
    }
    assert_true(s.flags & CN_SKETCH_COLLAPSED);
    assert_true(s.cap <= 64);
    assert_true(s.hi - s.lo < 64);
    check_exact_stats(&s, vs, 10000);
    qsort(vs, 10000, sizeof(*vs), cmp_double);
    /* The lowest kept bucket covers (gamma^(lo-1), gamma^lo]: quantiles whose exact value is
     * above it keep the bound; those below are over-estimated, never below min. */
    double floor_v = exp((s.lo - 1) * c.log_gamma);
    for (int q = 0; q <= 100; q++) {
        double got, exact = vs[(size_t)floor(q / 100.0 * 9999)];
        cn_sketch_quantile(&s, &c, &got, q / 100.0);
        if (exact > floor_v)
            assert_true(fabs(got - exact) <= 0.01 * exact * (1 + 1e-9));
        else
            assert_true(got >= exact && got >= s.min && got <= floor_v * c.gamma * 1.01);
    }
    /* A value far below the window folds into the lowest bucket. */
    int32_t lo = s.lo;
    assert_int_equal(cn_sketch_add(&s, &c, 1e-3), 0);
    assert_int_equal(s.lo, lo);
    assert_true(s.min == 1e-3);
    /* Merging collapsed sketches keeps the cap too. */
    struct cn_sketch m;
    cn_sketch_init(&m);
    cn_sketch_add(&m, &c, 1e9);
    assert_int_equal(cn_sketch_merge(&m, &c, &s), 0);
    assert_true(m.hi - m.lo < 64 && m.cap <= 64);
    assert_int_equal(m.count, s.count + 1);
    double top;
    cn_sketch_quantile(&m, &c, &top, 1);
    assert_true(top == 1e9);
    cn_sketch_release(&m);
    cn_sketch_release(&s);
    free(vs);
}

static void shrink_keeps_answers(void **state)
{
    (void)state;
    struct cn_sketch_cfg c;
    cn_sketch_cfg_init(&c, 0.01, CN_SKETCH_MAX_BINS_DEFAULT);
    struct cn_sketch s, ref;
    cn_sketch_init(&s);
    cn_sketch_init(&ref);
    for (int i = 0; i < 5000; i++) {
        double v = round(exp(log(1e6) + next_normal()));
        cn_sketch_add(&s, &c, v);
        cn_sketch_add(&ref, &c, v);
    }
    assert_true(s.cap > s.hi - s.lo + 1); /* slack from doubling */
    assert_int_equal(cn_sketch_shrink(&s), 0);
    assert_int_equal(s.cap, s.hi - s.lo + 1);
    assert_int_equal(cn_sketch_bytes(&s), (size_t)(s.hi - s.lo + 1) << s.wlog);
    /* Values after the shrink, inside and far outside the trimmed range. */
    for (int i = 0; i < 100; i++) {
        double v = i % 2 ? 1e6 : 1e11 + i;
        cn_sketch_add(&s, &c, v);
        cn_sketch_add(&ref, &c, v);
    }
    for (int q = 0; q <= 100; q++) {
        double a, b;
        cn_sketch_quantile(&s, &c, &a, q / 100.0);
        cn_sketch_quantile(&ref, &c, &b, q / 100.0);
        assert_true(a == b);
    }
    cn_sketch_release(&ref);
    cn_sketch_release(&s);
    /* Only zeros: no counters at all. */
    cn_sketch_add(&s, &c, 0);
    assert_int_equal(cn_sketch_shrink(&s), 0);
    assert_null(s.bins);
    assert_int_equal(s.count, 1);
}

static void bad_input(void **state)
{
    (void)state;
    struct cn_sketch_cfg c;
    assert_int_equal(cn_sketch_cfg_init(&c, 0, 100), CN_EINVAL);
    assert_int_equal(cn_sketch_cfg_init(&c, 0.6, 100), CN_EINVAL);
    assert_int_equal(cn_sketch_cfg_init(&c, NAN, 100), CN_EINVAL);
    assert_int_equal(cn_sketch_cfg_init(&c, 0.01, 1), CN_EINVAL);
    assert_int_equal(cn_sketch_cfg_init(&c, 0.01, 65536), CN_EINVAL);
    assert_int_equal(cn_sketch_cfg_init(&c, 0.01, 2048), 0);
    assert_true(fabs(c.gamma - 1.01 / 0.99) < 1e-15);
    struct cn_sketch s;
    cn_sketch_init(&s);
    double v = 7;
    assert_int_equal(cn_sketch_quantile(&s, &c, &v, 0.5), CN_ENOENT);
    assert_true(v == 7);
    assert_int_equal(cn_sketch_add(&s, &c, -1), CN_EINVAL);
    assert_int_equal(cn_sketch_add(&s, &c, NAN), CN_EINVAL);
    assert_int_equal(cn_sketch_add(&s, &c, INFINITY), CN_EINVAL);
    assert_int_equal(s.count, 0);
    cn_sketch_add(&s, &c, 10);
    assert_int_equal(cn_sketch_quantile(&s, &c, &v, 1.5), CN_EINVAL);
    assert_int_equal(cn_sketch_quantile(&s, &c, &v, -0.1), CN_EINVAL);
    double qv[2], bad[2] = {0.9, 0.5};
    assert_int_equal(cn_sketch_quantiles(&s, &c, qv, bad, 2), CN_EINVAL);
    /* Extremes of a double stay within the key range. */
    assert_int_equal(cn_sketch_add(&s, &c, 1.79e308), 0);
    assert_int_equal(cn_sketch_add(&s, &c, 5e-324), 0);
    assert_int_equal(s.count, 3);
    cn_sketch_release(&s);
    assert_null(s.bins);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(uniform),
        cmocka_unit_test(lognormal),
        cmocka_unit_test(constant),
        cmocka_unit_test(with_zeros),
        cmocka_unit_test(wide_range_and_other_alpha),
        cmocka_unit_test(merge_equals_combined),
        cmocka_unit_test(counters_widen),
        cmocka_unit_test(collapse_lowest),
        cmocka_unit_test(shrink_keeps_answers),
        cmocka_unit_test(bad_input),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
