/* Governance (src/gateway/gov.c): the token bucket, the rate limit table's bound, the retry
 * budget's arithmetic, outlier ejection backoff and cap, the balancer skipping endpoints that
 * are down, and the configuration's errors (FILE:LINE:COL). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "gateway/internal.h"

#include <libgen.h>

static char cn_dir_buf[4096];
#define CN_DIR (strncpy(cn_dir_buf, __FILE__, sizeof(cn_dir_buf) - 1), dirname(cn_dir_buf))

static struct cn_gw_snapshot *load(const char *text, char *err)
{
    err[0] = '\0';
    return cn_gw_config_load_buffer("g.yaml", text, strlen(text), err, 512);
}

#define HEAD "listeners: [{address: 127.0.0.1:8080}]\nclusters:\n"

static void test_token_bucket(void **state)
{
    (void)state;
    /* 2 per second, burst 3: exactly 3 at once, then one every 500 ms. */
    double tokens = 3, rate = 2.0 / 1000;
    uint64_t last = 1000, wait = 0;
    for (int i = 0; i < 3; i++)
        assert_int_equal(gw_tb_take(&tokens, &last, rate, 3, 1000, &wait), 1);
    assert_int_equal(gw_tb_take(&tokens, &last, rate, 3, 1000, &wait), 0);
    assert_int_equal(wait, 500);
    assert_int_equal(gw_tb_take(&tokens, &last, rate, 3, 1499, &wait), 0);
    assert_int_equal(wait, 1);
    assert_int_equal(gw_tb_take(&tokens, &last, rate, 3, 1500, &wait), 1);
    assert_int_equal(gw_tb_take(&tokens, &last, rate, 3, 1500, &wait), 0);
    /* A long pause refills to the burst, not past it. */
    for (int i = 0; i < 3; i++)
        assert_int_equal(gw_tb_take(&tokens, &last, rate, 3, 100000, &wait), 1);
    assert_int_equal(gw_tb_take(&tokens, &last, rate, 3, 100000, &wait), 0);
    /* A clock read earlier on another loop does not take tokens back. */
    assert_int_equal(gw_tb_take(&tokens, &last, rate, 3, 99000, &wait), 0);
    assert_int_equal(last, 100000);
    /* 1 per minute: Retry-After is the whole minute. */
    tokens = 0;
    last = 0;
    assert_int_equal(gw_tb_take(&tokens, &last, 1.0 / 60000, 1, 0, &wait), 0);
    assert_int_equal(wait, 60000);
}

static void test_rl_table_bound(void **state)
{
    (void)state;
    struct gw_rl_table *t = gw_rl_table_new(1.0 / 3600, 2, 3); /* 1/h, burst 2, 3 keys */
    assert_non_null(t);
    uint64_t wait;
    int ev;
    for (uint64_t k = 1; k <= 3; k++) {
        assert_int_equal(gw_rl_take(t, k, 0, &wait, &ev), 1);
        assert_int_equal(ev, 0);
        assert_int_equal(gw_rl_take(t, k, 0, &wait, &ev), 1);
        assert_int_equal(gw_rl_take(t, k, 0, &wait, &ev), 0);
        assert_int_equal(wait, 3600000);
    }
    assert_int_equal(gw_rl_len(t), 3);
    /* Key 1 used most recently: key 2 is the least recent and goes for key 4. */
    assert_int_equal(gw_rl_take(t, 1, 0, &wait, &ev), 0);
    assert_int_equal(gw_rl_take(t, 4, 0, &wait, &ev), 1);
    assert_int_equal(ev, 1);
    assert_int_equal(gw_rl_len(t), 3);
    assert_int_equal(gw_rl_take(t, 1, 0, &wait, &ev), 0); /* kept, still empty */
    assert_int_equal(ev, 0);
    assert_int_equal(gw_rl_take(t, 3, 0, &wait, &ev), 0); /* kept */
    assert_int_equal(gw_rl_take(t, 2, 0, &wait, &ev), 1); /* forgotten: a full bucket */
    assert_int_equal(ev, 1);                              /* ... evicting key 4 */
    /* Colliding bucket chains (keys equal modulo the table size) stay apart. */
    for (uint64_t k = 0; k < 64; k++)
        gw_rl_take(t, 1000 + k * 1024, 0, &wait, &ev);
    assert_int_equal(gw_rl_len(t), 3);
    gw_rl_table_unref(t);
}

static void test_budget(void **state)
{
    (void)state;
    struct gw_budget b = {0};
    /* 20% of 10 requests in flight: 2 may retry at once. */
    b.inflight = 10;
    assert_int_equal(gw_budget_allow(&b, 20, 0, 0), 1);
    b.retrying = 1;
    assert_int_equal(gw_budget_allow(&b, 20, 0, 0), 1);
    b.retrying = 2;
    assert_int_equal(gw_budget_allow(&b, 20, 0, 0), 0);
    /* One request alone: a retry would be 100% of it. */
    b = (struct gw_budget){.inflight = 1};
    assert_int_equal(gw_budget_allow(&b, 99, 0, 0), 0);
    assert_int_equal(gw_budget_allow(&b, 100, 0, 0), 1);
    /* The floor: min_per_s tokens a second whatever the ratio. */
    b = (struct gw_budget){.inflight = 1, .floor_ms = 0};
    int ok = 0;
    for (int i = 0; i < 10; i++)
        ok += gw_budget_allow(&b, 0, 5, 1000);
    assert_int_equal(ok, 5);
    assert_int_equal(gw_budget_allow(&b, 0, 5, 1199), 0);
    assert_int_equal(gw_budget_allow(&b, 0, 5, 1200), 1);
}

static void test_backoff_and_cap(void **state)
{
    (void)state;
    assert_int_equal(gw_outlier_backoff_ms(1000, 30000, 0), 1000);
    assert_int_equal(gw_outlier_backoff_ms(1000, 30000, 1), 2000);
    assert_int_equal(gw_outlier_backoff_ms(1000, 30000, 4), 16000);
    assert_int_equal(gw_outlier_backoff_ms(1000, 30000, 5), 30000);
    assert_int_equal(gw_outlier_backoff_ms(1000, 30000, 4000000000u), 30000);
    assert_int_equal(gw_outlier_cap(3, 34), 1);
    assert_int_equal(gw_outlier_cap(3, 33), 0);
    assert_int_equal(gw_outlier_cap(10, 10), 1);
    assert_int_equal(gw_outlier_cap(10, 100), 10);
    assert_int_equal(gw_outlier_cap(1, 50), 0);
}

static void test_ejection(void **state)
{
    (void)state;
    char err[512];
    struct cn_gw_snapshot *s =
        load(HEAD "  - name: c\n    endpoints: [127.0.0.1:1, 127.0.0.1:2, 127.0.0.1:3, "
                  "127.0.0.1:4]\n    outlier: {consecutive_errors: 2, base_ejection: 1s, "
                  "max_ejection: 5s, max_ejected_percent: 50}\n",
             err);
    if (!s)
        fprintf(stderr, "%s\n", err);
    assert_non_null(s);
    const struct gw_cluster *cl = &s->clusters[0];
    uint64_t now = 10000;
    /* A success between failures starts the count over. */
    assert_int_equal(gw_outlier_result(cl, 0, 1, now, 0), 0);
    assert_int_equal(gw_outlier_result(cl, 0, 0, now, 0), 0);
    assert_int_equal(gw_outlier_result(cl, 0, 1, now, 0), 0);
    assert_int_equal(gw_outlier_result(cl, 0, 1, now, 0), 1);
    assert_true(gw_ep_down(cl, 0, now));
    assert_true(gw_ep_down(cl, 0, now + 999));
    /* The cap: 50% of 4 is 2 ejected at once. */
    gw_outlier_result(cl, 1, 1, now, 0);
    assert_int_equal(gw_outlier_result(cl, 1, 1, now, 0), 1);
    gw_outlier_result(cl, 2, 1, now, 0);
    assert_int_equal(gw_outlier_result(cl, 2, 1, now, 0), 0);
    assert_false(gw_ep_down(cl, 2, now));
    /* The balancer skips the ejected ones. */
    struct gw_lb_state lb = {0};
    uint64_t rng = 1;
    int64_t cur[4] = {0};
    uint32_t act[4] = {0};
    lb.current = cur;
    lb.active = act;
    for (int i = 0; i < 16; i++) {
        uint32_t e = gw_lb_pick_up(cl, &lb, &rng, NULL, 0, now, -1);
        assert_true(e == 2 || e == 3);
    }
    /* ... and the endpoint to avoid when another is up. */
    for (int i = 0; i < 8; i++)
        assert_int_equal(gw_lb_pick_up(cl, &lb, &rng, NULL, 0, now, 2), 3);
    /* Back after 1 s; ejected again: 2 s (backoff), then 4 s. */
    now += 1000;
    assert_false(gw_ep_down(cl, 0, now));
    gw_outlier_result(cl, 0, 1, now, 0);
    assert_int_equal(gw_outlier_result(cl, 0, 1, now, 0), 1);
    assert_true(gw_ep_down(cl, 0, now + 1999));
    assert_false(gw_ep_down(cl, 0, now + 2000));
    now += 2000;
    gw_outlier_result(cl, 0, 1, now, 0);
    gw_outlier_result(cl, 0, 1, now, 0);
    assert_true(gw_ep_down(cl, 0, now + 3999));
    assert_false(gw_ep_down(cl, 0, now + 4000));
    now += 4000;
    /* Then 5 s (the maximum). */
    gw_outlier_result(cl, 0, 1, now, 0);
    gw_outlier_result(cl, 0, 1, now, 0);
    assert_true(gw_ep_down(cl, 0, now + 4999));
    assert_false(gw_ep_down(cl, 0, now + 5000));
    /* Back for longer than max_ejection: the backoff starts over at 1 s. */
    now += 5000 + 5001;
    gw_outlier_result(cl, 0, 1, now, 0);
    gw_outlier_result(cl, 0, 1, now, 0);
    assert_true(gw_ep_down(cl, 0, now + 999));
    assert_false(gw_ep_down(cl, 0, now + 1000));
    /* All down: the policy's pick is used anyway. */
    atomic_store(&cl->eps[2].st->flags, GW_EP_UNHEALTHY);
    atomic_store(&cl->eps[3].st->flags, GW_EP_UNHEALTHY);
    atomic_store(&cl->eps[0].st->flags, GW_EP_UNHEALTHY);
    atomic_store(&cl->eps[1].st->flags, GW_EP_UNHEALTHY);
    assert_true(gw_lb_pick_up(cl, &lb, &rng, NULL, 0, now, -1) < 4);
    cn_gw_snapshot_unref(s);
}

static void test_inherit(void **state)
{
    (void)state;
    char err[512];
    const char *a = HEAD "  - name: c\n    endpoints: [127.0.0.1:1, 127.0.0.1:2]\n"
                         "    outlier: {consecutive_errors: 1, max_ejected_percent: 50}\n"
                         "routes: [{name: r, backendRefs: [{name: c}], filters: [{type: "
                         "RateLimit, rateLimit: {rate: 1/h, burst: 1}}]}]\n";
    struct cn_gw_snapshot *s1 = load(a, err), *s2 = load(a, err);
    assert_non_null(s1);
    assert_non_null(s2);
    gw_gov_inherit(s1, NULL);
    assert_int_equal(gw_outlier_result(&s1->clusters[0], 1, 1, 100, 0), 1);
    uint64_t wait;
    int ev;
    assert_int_equal(gw_rl_take(s1->routes[0].filters[0].u.ratelimit.table, 7, 0, &wait, &ev), 1);
    gw_gov_inherit(s2, s1);
    cn_gw_snapshot_unref(s1);
    /* The ejection and the emptied bucket carry over to the new snapshot. */
    assert_true(gw_ep_down(&s2->clusters[0], 1, 200));
    assert_false(gw_ep_down(&s2->clusters[0], 0, 200));
    assert_int_equal(gw_rl_take(s2->routes[0].filters[0].u.ratelimit.table, 7, 0, &wait, &ev), 0);
    /* Outlier detection turned off by a reload: the ejection no longer holds. */
    struct cn_gw_snapshot *s3 =
        load(HEAD "  - name: c\n    endpoints: [127.0.0.1:1, 127.0.0.1:2]\n", err);
    assert_non_null(s3);
    gw_gov_inherit(s3, s2);
    assert_false(gw_ep_down(&s3->clusters[0], 1, 200));
    cn_gw_snapshot_unref(s2);
    cn_gw_snapshot_unref(s3);
}

static void test_config(void **state)
{
    (void)state;
    char err[512];
    struct cn_gw_snapshot *s =
        load(HEAD "  - name: c\n    endpoints: [127.0.0.1:1]\n"
                  "    health_check: {path: /healthz, interval: 2s, timeout: 500ms, "
                  "healthy_threshold: 3, unhealthy_threshold: 4, expected_statuses: [200, 204], "
                  "max_concurrent: 5}\n"
                  "    retry: {attempts: 3, on: [connect-failure, '503'], per_try_timeout: 1s, "
                  "budget_percent: 25, min_retries_per_second: 3, attempts_header: true}\n"
                  "    circuit_breaker: {max_connections: 10, max_pending: 2, max_requests: 7}\n"
                  "routes: [{name: r, backendRefs: [{name: c}], filters: [{type: RateLimit, "
                  "rateLimit: {rate: 30/m, burst: 5, key: 'header:X-User', max_keys: 100}}]}]\n",
             err);
    if (!s)
        fprintf(stderr, "%s\n", err);
    assert_non_null(s);
    const struct gw_cluster_gov *g = &s->clusters[0].gov;
    assert_int_equal(g->health.interval_ms, 2000);
    assert_int_equal(g->health.timeout_ms, 500);
    assert_int_equal(g->health.healthy_threshold, 3);
    assert_int_equal(g->health.unhealthy_threshold, 4);
    assert_int_equal(g->health.num_statuses, 2);
    assert_int_equal(g->health.statuses[1], 204);
    assert_int_equal(g->health.max_concurrent, 5);
    assert_int_equal(g->retry.attempts, 3);
    assert_int_equal(g->retry.on, GW_RETRY_CONNECT | GW_RETRY_503);
    assert_int_equal(g->retry.per_try_ms, 1000);
    assert_int_equal(g->retry.budget_percent, 25);
    assert_int_equal(g->retry.min_per_s, 3);
    assert_int_equal(g->retry.max_body_bytes, 65536);
    assert_int_equal(g->breaker.max_connections, 10);
    assert_int_equal(g->breaker.max_pending, 2);
    assert_int_equal(g->breaker.max_requests, 7);
    assert_false(g->outlier.enabled);
    const struct gw_ratelimit *rl = &s->routes[0].filters[0].u.ratelimit;
    assert_true(s->routes[0].has_ratelimit);
    assert_true(rl->rate_per_s > 0.4999 && rl->rate_per_s < 0.5001);
    assert_int_equal(rl->burst, 5);
    assert_int_equal(rl->key, GW_RL_HEADER);
    assert_true(cn_slice_eq(rl->key_name, CN_SLICE_LIT("X-User")));
    assert_true(cn_slice_eq(rl->rate_text, CN_SLICE_LIT("30/m")));
    assert_int_equal(rl->max_keys, 100);
    cn_gw_snapshot_unref(s);
}

#define C1    HEAD "  - name: c\n    endpoints: [127.0.0.1:1]\n"
#define RT(f) C1 "routes: [{name: r, backendRefs: [{name: c}], filters: [" f "]}]\n"

static const struct {
    const char *text, *err;
} bad[] = {
    {C1 "    health_check: {interval: 1s}\n",
     "g.yaml:5:19: clusters[0].health_check.path: is required"},
    {C1 "    health_check: {path: x}\n",
     "g.yaml:5:26: clusters[0].health_check.path: a path must start with '/'"},
    {C1 "    health_check: {path: /h, interval: 5ms}\n",
     "g.yaml:5:40: clusters[0].health_check: interval must be at least 10ms"},
    {C1 "    health_check: {path: /h, expected_statuses: [200, 700]}\n",
     "g.yaml:5:55: clusters[0].health_check.expected_statuses[1]: 700 is out of range [100, 599]"},
    {C1 "    health_check: {path: /h, healthy_threshold: 0}\n",
     "g.yaml:5:49: clusters[0].health_check.healthy_threshold: 0 is out of range [1, 1000]"},
    {C1 "    outlier: {base_ejection: 10s, max_ejection: 5s}\n",
     "g.yaml:5:49: clusters[0].outlier: max_ejection is shorter than base_ejection"},
    {C1 "    outlier: {max_ejected_percent: 101}\n",
     "g.yaml:5:36: clusters[0].outlier.max_ejected_percent: 101 is out of range [0, 100]"},
    {C1 "    retry: {on: [connect-failure, 500]}\n",
     "g.yaml:5:35: clusters[0].retry.on[1]: '500' is not one of connect-failure, reset, 502, 503, "
     "504"},
    {C1 "    retry: {attempts: 11}\n",
     "g.yaml:5:23: clusters[0].retry.attempts: 11 is out of range [1, 10]"},
    {C1 "    retry: {tries: 2}\n", "g.yaml:5:13: clusters[0].retry: unknown field 'tries'"},
    {C1 "    circuit_breaker: {max_requests: -1}\n",
     "g.yaml:5:37: clusters[0].circuit_breaker.max_requests: '-1' is not a whole number"},
    {RT("{type: RateLimit, rateLimit: {burst: 3}}"),
     "g.yaml:5:85: routes[0].filters[0].rateLimit.rate: is required (100, 100/s"},
    {RT("{type: RateLimit, rateLimit: {rate: 10/d}}"),
     "g.yaml:5:92: routes[0].filters[0].rateLimit.rate: '10/d' is not a rate"},
    {RT("{type: RateLimit, rateLimit: {rate: 10, burst: 0}}"),
     "g.yaml:5:103: routes[0].filters[0].rateLimit.burst: 0 is out of range"},
    {RT("{type: RateLimit, rateLimit: {rate: 10, key: cookie}}"),
     "g.yaml:5:101: routes[0].filters[0].rateLimit.key: 'cookie' is not one of client_ip, "
     "header:NAME, jwt_claim:NAME"},
    {RT("{type: RateLimit, rateLimit: {rate: 10, key: 'header:a b'}}"),
     "g.yaml:5:101: routes[0].filters[0].rateLimit.key: 'a b' is not a valid header name"},
    {RT("{type: RateLimit, rateLimit: {rate: 10, max_keys: 0}}"),
     "g.yaml:5:106: routes[0].filters[0].rateLimit.max_keys: 0 is out of range"},
};

static void test_errors(void **state)
{
    (void)state;
    int failed = 0;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char err[512];
        struct cn_gw_snapshot *s = load(bad[i].text, err);
        if (s || strncmp(err, bad[i].err, strlen(bad[i].err)) != 0) {
            fprintf(stderr, "case %zu:\n%s\nwant: %s\ngot:  %s\n", i, bad[i].text, bad[i].err,
                    s ? "(accepted)" : err);
            cn_gw_snapshot_unref(s);
            failed++;
        }
    }
    assert_int_equal(failed, 0);
}

/* The shipped example shows every governance section. */
static void test_example(void **state)
{
    (void)state;
    char err[512], path[4096];
    snprintf(path, sizeof(path), "%s/../../../examples/gateway.yaml", CN_DIR);
    struct cn_gw_snapshot *s = cn_gw_config_load_file(path, err, sizeof(err));
    if (!s)
        fprintf(stderr, "%s\n", err);
    assert_non_null(s);
    const struct gw_cluster_gov *g = &s->clusters[0].gov;
    assert_true(g->health.enabled && g->outlier.enabled && g->retry.enabled && g->breaker.enabled);
    assert_true(cn_slice_eq(g->health.path, CN_SLICE_LIT("/healthz")));
    assert_int_equal(g->outlier.max_percent, 50);
    assert_int_equal(g->retry.on, GW_RETRY_CONNECT | GW_RETRY_RESET | GW_RETRY_503);
    assert_int_equal(g->breaker.max_requests, 1000);
    assert_true(s->routes[0].has_ratelimit);
    assert_int_equal(s->routes[0].filters[1].kind, GW_F_RATE_LIMIT);
    assert_int_equal(s->routes[0].filters[1].u.ratelimit.burst, 200);
    cn_gw_snapshot_unref(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_token_bucket), cmocka_unit_test(test_rl_table_bound),
        cmocka_unit_test(test_budget),       cmocka_unit_test(test_backoff_and_cap),
        cmocka_unit_test(test_ejection),     cmocka_unit_test(test_inherit),
        cmocka_unit_test(test_config),       cmocka_unit_test(test_errors),
        cmocka_unit_test(test_example),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
