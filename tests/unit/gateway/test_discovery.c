/* Registry discovery (src/gateway/discovery.c): the discovery block of a cluster (errors name
 * FILE:LINE:COL and the field), instance lists parsed into endpoint sets (health, enabled,
 * weight, protection), set diffs, and snapshots derived from a template. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "gateway/discovery.h"
#include "gateway/internal.h"

#define HEAD                                                                                       \
    "listeners:\n"                                                                                 \
    "  - address: 127.0.0.1:8080\n"                                                                \
    "clusters:\n"                                                                                  \
    "  - name: a\n"

static struct cn_gw_snapshot *load(const char *text, char *err)
{
    err[0] = '\0';
    return cn_gw_config_load_buffer("t.yaml", text, strlen(text), err, 512);
}

static void test_config_defaults_and_fields(void **state)
{
    (void)state;
    char err[512];
    struct cn_gw_snapshot *s = load(HEAD "    discovery: {service: shop}\n", err);
    assert_non_null(s);
    const struct gw_disc_cfg *d = s->clusters[0].disc;
    assert_non_null(d);
    assert_int_equal(s->clusters[0].num_eps, 0);
    assert_string_equal(d->service.ptr, "shop");
    assert_string_equal(d->ns.ptr, "public");
    assert_string_equal(d->group.ptr, "DEFAULT_GROUP");
    assert_string_equal(d->clusters.ptr, "");
    assert_true(d->local);
    assert_int_equal(d->interval_ms, 1000);
    assert_int_equal(d->timeout_ms, 2000);
    assert_int_equal(d->max_endpoints, 1024);
    assert_int_equal(d->max_response_bytes, 8u << 20);
    assert_true(d->protect);
    assert_string_equal(d->where.ptr, "t.yaml:5:16: cluster 'a' discovery");
    cn_gw_snapshot_unref(s);

    s = load(HEAD "    policy: consistent_hash\n"
                  "    hash_on: {header: X-K}\n"
                  "    discovery:\n"
                  "      service: shop\n"
                  "      namespace: dev\n"
                  "      group: G1\n"
                  "      cluster: east\n"
                  "      registry: 'http://10.0.0.1:8848//'\n"
                  "      interval: 10ms\n"
                  "      timeout: 1m\n"
                  "      max_endpoints: 100000\n"
                  "      max_response_bytes: 1k\n"
                  "      protect: false\n",
             err);
    assert_non_null(s);
    d = s->clusters[0].disc;
    assert_string_equal(d->ns.ptr, "dev");
    assert_string_equal(d->group.ptr, "G1");
    assert_string_equal(d->clusters.ptr, "east");
    assert_false(d->local);
    assert_string_equal(d->registry.ptr, "http://10.0.0.1:8848"); /* trailing '/' dropped */
    assert_int_equal(d->interval_ms, 10);
    assert_int_equal(d->timeout_ms, 60000);
    assert_int_equal(d->max_endpoints, 100000);
    assert_int_equal(d->max_response_bytes, 1024);
    assert_false(d->protect);
    assert_int_equal(s->clusters[0].ring_len, 0);
    cn_gw_snapshot_unref(s);
}

static const struct {
    const char *text;
    const char *err;
} bad[] = {
    {HEAD "    endpoints: [127.0.0.1:1]\n    discovery: {service: s}\n",
     "t.yaml:6:16: clusters[0].discovery: give endpoints or discovery, not both"},
    {HEAD, "t.yaml:4:5: clusters[0].endpoints: is required (a list of HOST:PORT, or a discovery"},
    {HEAD "    discovery: {}\n", "t.yaml:5:16: clusters[0].discovery.service: is required"},
    {HEAD "    discovery: shop\n", "t.yaml:5:16: clusters[0].discovery: must be a mapping"},
    {HEAD "    discovery: {service: s, port: 1}\n",
     "t.yaml:5:29: clusters[0].discovery: unknown field 'port'"},
    {HEAD "    discovery: {service: 'a@@b'}\n",
     "t.yaml:5:26: clusters[0].discovery.service: must not hold '@@'"},
    {HEAD "    discovery: {service: ''}\n",
     "t.yaml:5:26: clusters[0].discovery.service: must be 1 to 512 bytes"},
    {HEAD "    discovery: {service: s, group: \"a\\tb\"}\n",
     "t.yaml:5:36: clusters[0].discovery.group: must not hold control characters"},
    {HEAD "    discovery: {service: s, cluster: 'a,b'}\n",
     "t.yaml:5:38: clusters[0].discovery.cluster: must not hold ','"},
    {HEAD "    discovery: {service: s, registry: 'ftp://x'}\n",
     "t.yaml:5:39: clusters[0].discovery.registry: 'ftp://x' is not local or an http:// or "
     "https:// URL"},
    {HEAD "    discovery: {service: s, registry: 'http://x/?a'}\n",
     "t.yaml:5:39: clusters[0].discovery.registry: must not hold spaces"},
    {HEAD "    discovery: {service: s, interval: 9ms}\n",
     "t.yaml:5:39: clusters[0].discovery.interval: must be at least 10ms"},
    {HEAD "    discovery: {service: s, interval: 2h}\n",
     "t.yaml:5:39: clusters[0].discovery.interval: "},
    {HEAD "    discovery: {service: s, timeout: 5ms}\n",
     "t.yaml:5:38: clusters[0].discovery.timeout: must be at least 10ms"},
    {HEAD "    discovery: {service: s, max_endpoints: 0}\n",
     "t.yaml:5:44: clusters[0].discovery.max_endpoints: 0 is out of range [1, 100000]"},
    {HEAD "    discovery: {service: s, max_endpoints: 100001}\n",
     "t.yaml:5:44: clusters[0].discovery.max_endpoints: 100001 is out of range [1, 100000]"},
    {HEAD "    discovery: {service: s, max_response_bytes: 1023}\n",
     "t.yaml:5:49: clusters[0].discovery.max_response_bytes: "},
    {HEAD "    discovery: {service: s, protect: maybe}\n",
     "t.yaml:5:38: clusters[0].discovery.protect: "},
};

static void test_config_errors(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char err[512];
        struct cn_gw_snapshot *s = load(bad[i].text, err);
        if (s || strncmp(err, bad[i].err, strlen(bad[i].err)) != 0)
            fail_msg("case %zu: got '%s', want '%s...'", i, s ? "(loaded)" : err, bad[i].err);
    }
}

/* ---- instance lists ------------------------------------------------------------------------ */

#define HOST(ip, port, w, healthy, enabled)                                                        \
    "{\"ip\":\"" ip "\",\"port\":" #port ",\"weight\":" #w ",\"healthy\":" #healthy                \
    ",\"enabled\":" #enabled ",\"clusterName\":\"DEFAULT\"}"

static void test_parse(void **state)
{
    (void)state;
    const char *j = "{\"name\":\"DEFAULT_GROUP@@s\",\"hosts\":[" HOST("10.0.0.2", 80, 1.0, true, true) "," HOST(
        "10.0.0.1", 81, 0.5, true,
        true) "," HOST("10.0.0.3", 80, 1.0, false,
                       true) "," HOST("10.0.0.4", 80, 1.0, true,
                                      false) "," HOST("10.0.0.5", 80, 0, true,
                                                      true) "," HOST("db.local", 80, 1.0, true,
                                                                     true) "," HOST("10.0.0.6", 0,
                                                                                    1.0, true,
                                                                                    true) "," HOST("::1",
                                                                                                   90,
                                                                                                   0.001,
                                                                                                   true,
                                                                                                   true) "," HOST("10.0.0.2",
                                                                                                                  80,
                                                                                                                  2.0,
                                                                                                                  true,
                                                                                                                  true) "]}";
    struct gw_disc_set s = {0};
    char err[256];
    assert_int_equal(gw_disc_parse(j, strlen(j), 1, &s, err, sizeof(err)), 0);
    /* 10.0.0.2 twice (two Nacos clusters): one endpoint, the first one's weight */
    assert_int_equal(s.num, 3);
    assert_string_equal(s.eps[0].ip, "10.0.0.1");
    assert_int_equal(s.eps[0].port, 81);
    assert_int_equal(s.eps[0].weight, 50);
    assert_string_equal(s.eps[1].ip, "10.0.0.2");
    assert_int_equal(s.eps[1].weight, 100);
    assert_string_equal(s.eps[2].ip, "::1");
    assert_int_equal(s.eps[2].weight, 1); /* 0.001 x 100 rounds to 0: at least 1 */
    assert_int_equal(s.skipped, 2);       /* a host name, port 0 */
    assert_int_equal(s.excluded, 3);      /* unhealthy, disabled, weight 0 */
    assert_false(s.protected_);
    gw_disc_set_release(&s);
}

static void test_parse_protect(void **state)
{
    (void)state;
    const char *j = "{\"hosts\":[" HOST("10.0.0.1", 80, 1, false, true) "," HOST(
        "10.0.0.2", 80, 1, false, true) "," HOST("10.0.0.3", 80, 1, false, false) "]}";
    struct gw_disc_set s = {0};
    char err[256];
    /* nothing healthy: every enabled instance (Nacos' protection) */
    assert_int_equal(gw_disc_parse(j, strlen(j), 1, &s, err, sizeof(err)), 0);
    assert_int_equal(s.num, 2);
    assert_true(s.protected_);
    /* protect off: none */
    assert_int_equal(gw_disc_parse(j, strlen(j), 0, &s, err, sizeof(err)), 0);
    assert_int_equal(s.num, 0);
    assert_false(s.protected_);
    assert_int_equal(s.excluded, 3);
    /* no instance at all: empty, not protected */
    assert_int_equal(gw_disc_parse("{\"hosts\":[]}", 12, 1, &s, err, sizeof(err)), 0);
    assert_int_equal(s.num, 0);
    assert_false(s.protected_);
    gw_disc_set_release(&s);
}

static void test_parse_errors(void **state)
{
    (void)state;
    static const char *const cases[] = {
        "", "nope", "[]", "{\"hosts\":{}}", "{\"name\":\"x\"}", "{\"hosts\":[1,2]}x"};
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct gw_disc_set s = {0};
        char err[256] = "";
        assert_int_equal(gw_disc_parse(cases[i], strlen(cases[i]), 1, &s, err, sizeof(err)),
                         CN_ESYNTAX);
        assert_true(err[0] != '\0');
        assert_int_equal(s.num, 0);
        assert_null(s.eps);
    }
    /* malformed hosts are skipped, not fatal */
    const char *j = "{\"hosts\":[1,{\"ip\":5},{\"ip\":\"1.2.3.4\",\"port\":\"80\"},"
                    "{\"ip\":\"1.2.3.4\",\"port\":80,\"weight\":10001},"
                    "{\"ip\":\"1.2.3.4\",\"port\":80,\"healthy\":\"yes\"}]}";
    struct gw_disc_set s = {0};
    char err[256];
    assert_int_equal(gw_disc_parse(j, strlen(j), 1, &s, err, sizeof(err)), 0);
    assert_int_equal(s.num, 0);
    assert_int_equal(s.skipped, 5);
    gw_disc_set_release(&s);
}

static void parse_ok(const char *j, struct gw_disc_set *s)
{
    char err[256];
    assert_int_equal(gw_disc_parse(j, strlen(j), 1, s, err, sizeof(err)), 0);
}

static void test_diff(void **state)
{
    (void)state;
    struct gw_disc_set a = {0}, b = {0};
    size_t add, rem, rew;
    parse_ok("{\"hosts\":[" HOST("10.0.0.1", 80, 1, true, true) "," HOST(
                 "10.0.0.2", 80, 1, true, true) "," HOST("10.0.0.3", 80, 1, true, true) "]}",
             &a);
    /* the same instances in another order: equal */
    parse_ok("{\"hosts\":[" HOST("10.0.0.3", 80, 1, true, true) "," HOST(
                 "10.0.0.1", 80, 1, true, true) "," HOST("10.0.0.2", 80, 1, true, true) "]}",
             &b);
    assert_true(gw_disc_set_diff(&a, &b, &add, &rem, &rew));
    assert_int_equal(add + rem + rew, 0);
    /* one leaves, one joins, one is reweighted, one turns unhealthy */
    parse_ok("{\"hosts\":[" HOST("10.0.0.1", 80, 2, true, true) "," HOST(
                 "10.0.0.2", 80, 1, false, true) "," HOST("10.0.0.4", 80, 1, true, true) "]}",
             &b);
    assert_false(gw_disc_set_diff(&a, &b, &add, &rem, &rew));
    assert_int_equal(add, 1); /* 10.0.0.4 */
    assert_int_equal(rem, 2); /* 10.0.0.2 (unhealthy), 10.0.0.3 */
    assert_int_equal(rew, 1); /* 10.0.0.1 */
    /* the same port on another address, another port on the same address */
    parse_ok("{\"hosts\":[" HOST("10.0.0.1", 81, 1, true, true) "]}", &b);
    assert_false(gw_disc_set_diff(&a, &b, &add, &rem, &rew));
    assert_int_equal(add, 1);
    assert_int_equal(rem, 3);
    /* protection alone is a change */
    parse_ok("{\"hosts\":[" HOST("10.0.0.1", 80, 1, false, true) "]}", &a);
    parse_ok("{\"hosts\":[" HOST("10.0.0.1", 80, 1, true, true) "]}", &b);
    assert_true(a.protected_);
    assert_false(gw_disc_set_diff(&a, &b, &add, &rem, &rew));
    assert_int_equal(add + rem + rew, 0);
    gw_disc_set_release(&a);
    gw_disc_set_release(&b);
}

/* ---- derived snapshots ------------------------------------------------------------------ */

static void test_derive(void **state)
{
    (void)state;
    char err[512];
    struct cn_gw_snapshot *t = load("listeners: [{address: 127.0.0.1:8080}]\n"
                                    "clusters:\n"
                                    "  - name: fixed\n"
                                    "    endpoints: [127.0.0.1:9001, 127.0.0.1:9002]\n"
                                    "  - name: shop\n"
                                    "    policy: weighted\n"
                                    "    discovery: {service: shop, max_endpoints: 2}\n"
                                    "  - name: ring\n"
                                    "    policy: consistent_hash\n"
                                    "    hash_on: {client_ip: true}\n"
                                    "    discovery: {service: shop}\n"
                                    "routes:\n"
                                    "  - name: old\n"
                                    "    hostnames: [old.example]\n"
                                    "    filters: [{type: RequestRedirect, requestRedirect: "
                                    "{hostname: new.example}}]\n"
                                    "  - name: r\n"
                                    "    matches: [{path: {type: PathPrefix, value: /api}}]\n"
                                    "    filters: [{type: RateLimit, rateLimit: {rate: 10/s}}]\n"
                                    "    backendRefs: [{name: shop, weight: 3}, {name: fixed}]\n"
                                    "  - name: h\n"
                                    "    backendRefs: [{name: ring}]\n",
                                    err);
    if (!t)
        fail_msg("%s", err);
    struct gw_disc_set set = {0};
    parse_ok("{\"hosts\":[" HOST("10.0.0.3", 80, 3, true, true) "," HOST(
                 "10.0.0.1", 80, 1, true, true) "," HOST("10.0.0.2", 80, 3, true, true) "]}",
             &set);
    const struct gw_disc_set *sets[3] = {NULL, &set, &set};
    struct cn_gw_snapshot *d = gw_disc_derive(t, sets);
    assert_non_null(d);
    assert_ptr_equal(d->base, t);
    /* the static cluster as configured; the discovering one at most max_endpoints (sorted by
     * address), weights reduced (300 and 100 -> 3 and 1) */
    assert_int_equal(d->clusters[0].num_eps, 2);
    assert_true(cn_slice_eq(d->clusters[0].eps[1].name, CN_SLICE_LIT("127.0.0.1:9002")));
    assert_int_equal(d->clusters[1].num_eps, 2);
    assert_true(cn_slice_eq(d->clusters[1].eps[0].name, CN_SLICE_LIT("10.0.0.1:80")));
    assert_true(cn_slice_eq(d->clusters[1].eps[1].name, CN_SLICE_LIT("10.0.0.2:80")));
    assert_int_equal(d->clusters[1].eps[0].weight, 1);
    assert_int_equal(d->clusters[1].eps[1].weight, 3);
    assert_int_equal(d->clusters[2].num_eps, 3);
    assert_int_equal(d->clusters[2].ring_len, (1 + 3 + 3) * GW_RING_POINTS_PER_WEIGHT);
    assert_int_equal(d->num_eps, 2 + 2 + 3);
    for (size_t c = 0, g = 0; c < 3; c++)
        for (size_t e = 0; e < d->clusters[c].num_eps; e++) {
            assert_int_equal(d->clusters[c].eps[e].global, g++);
            assert_non_null(d->clusters[c].eps[e].st); /* fresh governance state */
        }
    /* the template is untouched: no endpoint for the discovering clusters */
    assert_int_equal(t->clusters[1].num_eps, 0);
    assert_int_equal(t->num_eps, 2);
    /* routes point at the derived clusters and filters; the route table finds them */
    assert_ptr_equal(d->routes[1].backends[0].cluster, &d->clusters[1]);
    assert_ptr_equal(d->routes[1].backends[1].cluster, &d->clusters[0]);
    assert_ptr_equal(d->routes[0].redirect, &d->routes[0].filters[0]);
    assert_non_null(d->routes[1].filters[0].u.ratelimit.table);
    assert_ptr_not_equal(d->routes[1].filters[0].u.ratelimit.table,
                         t->routes[1].filters[0].u.ratelimit.table);
    struct gw_req_view rv = {
        CN_SLICE_LIT("x.example"), CN_SLICE_LIT("/api/v1"), CN_SLICE_LIT(""), HTTP_GET, NULL, 0};
    const struct gw_match *m = gw_match_request(d, &rv);
    assert_non_null(m);
    assert_ptr_equal(m->route, &d->routes[1]);
    rv.host = CN_SLICE_LIT("old.example");
    m = gw_match_request(d, &rv);
    assert_non_null(m);
    assert_ptr_equal(m->route, &d->routes[0]);
    /* nothing read yet: no endpoint */
    const struct gw_disc_set *none[3] = {NULL, NULL, NULL};
    struct cn_gw_snapshot *e = gw_disc_derive(t, none);
    assert_non_null(e);
    assert_int_equal(e->clusters[1].num_eps, 0);
    assert_int_equal(e->clusters[2].ring_len, 0);
    assert_int_equal(e->num_eps, 2);
    /* the derived snapshots hold the template: it goes last */
    cn_gw_snapshot_unref(t);
    assert_true(cn_slice_eq(d->routes[1].name, CN_SLICE_LIT("r")));
    cn_gw_snapshot_unref(d);
    cn_gw_snapshot_unref(e);
    gw_disc_set_release(&set);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_config_defaults_and_fields),
        cmocka_unit_test(test_config_errors),
        cmocka_unit_test(test_parse),
        cmocka_unit_test(test_parse_protect),
        cmocka_unit_test(test_parse_errors),
        cmocka_unit_test(test_diff),
        cmocka_unit_test(test_derive),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
