/* Balancers: distributions of round robin, weighted, least request, and the consistent-hash
 * ring's stability when an endpoint leaves. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "gateway/internal.h"

static struct cn_gw_snapshot *load(const char *cluster)
{
    char text[2048], err[512];
    snprintf(text, sizeof(text),
             "listeners: [{address: 127.0.0.1:8080}]\nclusters:\n  - name: c\n%s", cluster);
    struct cn_gw_snapshot *s = cn_gw_config_load_buffer("b.yaml", text, strlen(text), err, 512);
    if (!s)
        fprintf(stderr, "%s\n", err);
    return s;
}

struct st {
    int64_t cur[8];
    uint32_t active[8];
    struct gw_lb_state lb;
};

static void st_init(struct st *s)
{
    memset(s, 0, sizeof(*s));
    s->lb.current = s->cur;
    s->lb.active = s->active;
}

static void test_round_robin(void **state)
{
    (void)state;
    struct cn_gw_snapshot *s =
        load("    endpoints: [127.0.0.1:1, 127.0.0.1:2, {address: 127.0.0.1:3, weight: 5}]\n");
    assert_non_null(s);
    struct st st;
    st_init(&st);
    uint64_t rng = 1;
    for (int i = 0; i < 9; i++)
        assert_int_equal(gw_lb_pick(&s->clusters[0], &st.lb, &rng, NULL, 0), i % 3);
    cn_gw_snapshot_unref(s);
}

static void test_weighted(void **state)
{
    (void)state;
    struct cn_gw_snapshot *s =
        load("    policy: weighted\n    endpoints: [{address: 127.0.0.1:1, "
             "weight: 5}, 127.0.0.1:2, {address: 127.0.0.1:3, weight: 2}]\n");
    assert_non_null(s);
    struct st st;
    st_init(&st);
    uint64_t rng = 1;
    int counts[3] = {0};
    char seq[9];
    for (int i = 0; i < 800; i++) {
        uint32_t e = gw_lb_pick(&s->clusters[0], &st.lb, &rng, NULL, 0);
        counts[e]++;
        if (i < 8)
            seq[i] = (char)('a' + e);
    }
    seq[8] = '\0';
    assert_int_equal(counts[0], 500);
    assert_int_equal(counts[1], 100);
    assert_int_equal(counts[2], 200);
    /* smooth: the heavy endpoint is interleaved, not picked 5 times in a row */
    assert_string_equal(seq, "acaabaca");
    cn_gw_snapshot_unref(s);
}

static void test_least_request(void **state)
{
    (void)state;
    struct cn_gw_snapshot *s =
        load("    policy: least_request\n    endpoints: [127.0.0.1:1, 127.0.0.1:2, 127.0.0.1:3]\n");
    assert_non_null(s);
    struct st st;
    st_init(&st);
    uint64_t rng = 12345;
    /* endpoint 0 is busy: of two random choices the idle one wins, so 0 is picked only when
     * both choices... never, choices are distinct */
    st.active[0] = 100;
    int counts[3] = {0};
    for (int i = 0; i < 3000; i++)
        counts[gw_lb_pick(&s->clusters[0], &st.lb, &rng, NULL, 0)]++;
    assert_int_equal(counts[0], 0);
    assert_in_range(counts[1], 1300, 1700);
    assert_in_range(counts[2], 1300, 1700);
    /* picks follow the load: requests held open spread evenly */
    st_init(&st);
    for (int i = 0; i < 300; i++)
        st.active[gw_lb_pick(&s->clusters[0], &st.lb, &rng, NULL, 0)]++;
    for (int e = 0; e < 3; e++)
        assert_in_range(st.active[e], 95, 105);
    cn_gw_snapshot_unref(s);
}

static void test_hash_stability(void **state)
{
    (void)state;
    struct cn_gw_snapshot *s4 = load("    policy: consistent_hash\n    hash_on: {header: X-User}\n"
                                     "    endpoints: [127.0.0.1:1, 127.0.0.1:2, 127.0.0.1:3, "
                                     "127.0.0.1:4]\n");
    /* the same cluster without its third endpoint, listed in another order */
    struct cn_gw_snapshot *s3 = load("    policy: consistent_hash\n    hash_on: {header: X-User}\n"
                                     "    endpoints: [127.0.0.1:4, 127.0.0.1:1, 127.0.0.1:2]\n");
    assert_non_null(s4);
    assert_non_null(s3);
    struct st st;
    st_init(&st);
    uint64_t rng = 1;
    int counts[4] = {0}, moved = 0, n = 4000;
    for (int i = 0; i < n; i++) {
        char key[32];
        int kl = snprintf(key, sizeof(key), "user-%d", i);
        uint32_t a = gw_lb_pick(&s4->clusters[0], &st.lb, &rng, key, (size_t)kl);
        uint32_t b = gw_lb_pick(&s3->clusters[0], &st.lb, &rng, key, (size_t)kl);
        /* the same key always goes to the same endpoint */
        assert_int_equal(a, gw_lb_pick(&s4->clusters[0], &st.lb, &rng, key, (size_t)kl));
        counts[a]++;
        struct cn_slice na = s4->clusters[0].eps[a].name, nb = s3->clusters[0].eps[b].name;
        if (!cn_slice_eq(na, nb)) {
            moved++;
            /* only keys of the removed endpoint move */
            assert_true(cn_slice_eq(na, CN_SLICE_LIT("127.0.0.1:3")));
        }
    }
    for (int e = 0; e < 4; e++)
        assert_in_range(counts[e], n / 4 - n / 10, n / 4 + n / 10);
    assert_int_equal(moved, counts[2]);
    cn_gw_snapshot_unref(s4);
    cn_gw_snapshot_unref(s3);
}

static void test_swrr_backends(void **state)
{
    (void)state;
    uint32_t w[3] = {80, 20, 0};
    int64_t cur[3] = {0};
    int counts[3] = {0};
    for (int i = 0; i < 1000; i++)
        counts[gw_swrr(cur, w, sizeof(w[0]), 3, 100)]++;
    assert_int_equal(counts[0], 800);
    assert_int_equal(counts[1], 200);
    assert_int_equal(counts[2], 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_robin),   cmocka_unit_test(test_weighted),
        cmocka_unit_test(test_least_request), cmocka_unit_test(test_hash_stability),
        cmocka_unit_test(test_swrr_backends),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
