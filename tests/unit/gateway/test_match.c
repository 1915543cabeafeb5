/* Route matching precedence: host (exact > longest wildcard > any), path (exact > longest
 * prefix > regex), then method, headers, query parameters, then order. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "gateway/internal.h"

static const char conf[] =
    "listeners: [{address: 127.0.0.1:8080}]\n"
    "clusters: [{name: c, endpoints: [127.0.0.1:9000]}]\n"
    "routes:\n"
    "  - {name: any-root, backendRefs: [{name: c}]}\n"
    "  - {name: any-api, matches: [{path: {value: /api}}], backendRefs: [{name: c}]}\n"
    "  - {name: any-api-v1, matches: [{path: {value: /api/v1/}}], backendRefs: [{name: c}]}\n"
    "  - {name: any-exact, matches: [{path: {type: Exact, value: /api/v1/users}}],"
    "     backendRefs: [{name: c}]}\n"
    "  - {name: any-regex, matches: [{path: {type: RegularExpression, value: "
    "'/api/v[0-9]+/items/[0-9]+'}}],"
    "     backendRefs: [{name: c}]}\n"
    "  - {name: any-post, matches: [{path: {value: /api/v1}, method: POST}], backendRefs: [{name: "
    "c}]}\n"
    "  - {name: any-hdr, matches: [{path: {value: /api/v1}, headers: [{name: X-Canary, value: "
    "'yes'}]}],"
    "     backendRefs: [{name: c}]}\n"
    "  - {name: any-hdr2, matches: [{path: {value: /api/v1}, headers: [{name: X-Canary, value: "
    "'yes'},"
    "     {name: X-Beta, value: 'b.*', type: RegularExpression}]}], backendRefs: [{name: c}]}\n"
    "  - {name: any-query, matches: [{path: {value: /q}, queryParams: [{name: v, value: 'a b'}]}],"
    "     backendRefs: [{name: c}]}\n"
    "  - {name: exact-host, hostnames: [shop.example.com], matches: [{path: {value: /api}}],"
    "     backendRefs: [{name: c}]}\n"
    "  - {name: wild, hostnames: ['*.example.com'], backendRefs: [{name: c}]}\n"
    "  - {name: wild-long, hostnames: ['*.eu.example.com'], backendRefs: [{name: c}]}\n";

static struct cn_gw_snapshot *snap;

static int setup(void **state)
{
    (void)state;
    char err[512];
    snap = cn_gw_config_load_buffer("m.yaml", conf, sizeof(conf) - 1, err, sizeof(err));
    if (!snap)
        fprintf(stderr, "%s\n", err);
    return snap ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    cn_gw_snapshot_unref(snap);
    return 0;
}

static const char *route(const char *host, int method, const char *target,
                         const struct cn_http_header *h, size_t nh)
{
    char hb[GW_MAX_HOST + 1];
    int hl = gw_host_normalize(cn_slice_of(host), hb);
    const char *q = strchr(target, '?');
    struct gw_req_view rv = {
        .host = {hb, (size_t)hl},
        .path = {target, q ? (size_t)(q - target) : strlen(target)},
        .query = q ? cn_slice_of(q + 1) : (struct cn_slice){"", 0},
        .method = method,
        .headers = h,
        .num_headers = nh,
    };
    const struct gw_match *m = gw_match_request(snap, &rv);
    return m ? m->route->name.ptr : "none";
}

#define H(n, v)                                                                                    \
    {                                                                                              \
        CN_SLICE_LIT(n), CN_SLICE_LIT(v)                                                           \
    }

static void test_paths(void **state)
{
    (void)state;
    assert_string_equal(route("x", HTTP_GET, "/", NULL, 0), "any-root");
    assert_string_equal(route("x", HTTP_GET, "/apix", NULL, 0), "any-root"); /* segments */
    assert_string_equal(route("x", HTTP_GET, "/api", NULL, 0), "any-api");
    assert_string_equal(route("x", HTTP_GET, "/api/", NULL, 0), "any-api");
    assert_string_equal(route("x", HTTP_GET, "/api/v2", NULL, 0), "any-api");
    assert_string_equal(route("x", HTTP_GET, "/api/v1", NULL, 0), "any-api-v1");
    assert_string_equal(route("x", HTTP_GET, "/api/v1/x/y", NULL, 0), "any-api-v1");
    /* exact beats any prefix */
    assert_string_equal(route("x", HTTP_GET, "/api/v1/users", NULL, 0), "any-exact");
    assert_string_equal(route("x", HTTP_GET, "/api/v1/users/", NULL, 0), "any-api-v1");
    /* a matching prefix beats a regex */
    assert_string_equal(route("x", HTTP_GET, "/api/v1/items/7", NULL, 0), "any-api-v1");
    /* regex is whole-path */
    assert_string_equal(route("x", HTTP_GET, "/api/v22/items/7?x", NULL, 0), "any-api");
}

static void test_conditions(void **state)
{
    (void)state;
    struct cn_http_header canary[] = {H("x-canary", "yes")};
    struct cn_http_header both[] = {H("X-Beta", "beta"), H("X-Canary", "yes")};
    struct cn_http_header wrong[] = {H("X-Canary", "YES")};
    /* a method beats headers at the same path */
    assert_string_equal(route("x", HTTP_POST, "/api/v1/a", canary, 1), "any-post");
    assert_string_equal(route("x", HTTP_GET, "/api/v1/a", canary, 1), "any-hdr");
    /* more headers win */
    assert_string_equal(route("x", HTTP_GET, "/api/v1/a", both, 2), "any-hdr2");
    /* values are case-sensitive, names are not */
    assert_string_equal(route("x", HTTP_GET, "/api/v1/a", wrong, 1), "any-api-v1");
    assert_string_equal(route("x", HTTP_GET, "/q?v=a+b", NULL, 0), "any-query");
    assert_string_equal(route("x", HTTP_GET, "/q?w=1&v=a%20b", NULL, 0), "any-query");
    assert_string_equal(route("x", HTTP_GET, "/q?v=ab", NULL, 0), "any-root");
    assert_string_equal(route("x", HTTP_GET, "/q?vv=a+b", NULL, 0), "any-root");
}

static void test_hosts(void **state)
{
    (void)state;
    assert_string_equal(route("shop.example.com", HTTP_GET, "/api/x", NULL, 0), "exact-host");
    assert_string_equal(route("SHOP.Example.com:8080", HTTP_GET, "/api", NULL, 0), "exact-host");
    /* the exact host's routes do not match: the wildcard's do */
    assert_string_equal(route("shop.example.com", HTTP_GET, "/other", NULL, 0), "wild");
    assert_string_equal(route("a.b.example.com", HTTP_GET, "/", NULL, 0), "wild");
    assert_string_equal(route("x.eu.example.com", HTTP_GET, "/", NULL, 0), "wild-long");
    /* the wildcard does not match the bare suffix */
    assert_string_equal(route("example.com", HTTP_GET, "/", NULL, 0), "any-root");
    assert_string_equal(route("example.com.", HTTP_GET, "/api", NULL, 0), "any-api");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_paths),
        cmocka_unit_test(test_conditions),
        cmocka_unit_test(test_hosts),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
