/* Gateway configuration: every error names FILE:LINE:COL and the field; good files compile. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "gateway/internal.h"

#include <libgen.h>

/* The directory of this file, for the example's path. */
static char cn_dir_buf[4096];
#define CN_DIR (strncpy(cn_dir_buf, __FILE__, sizeof(cn_dir_buf) - 1), dirname(cn_dir_buf))

#define HEAD                                                                                       \
    "listeners:\n"                                                                                 \
    "  - address: 127.0.0.1:8080\n"                                                                \
    "clusters:\n"                                                                                  \
    "  - name: a\n"                                                                                \
    "    endpoints: [127.0.0.1:9001, {address: 127.0.0.1:9002, weight: 3}]\n"

static struct cn_gw_snapshot *load(const char *text, char *err)
{
    err[0] = '\0';
    return cn_gw_config_load_buffer("t.yaml", text, strlen(text), err, 512);
}

static void test_good(void **state)
{
    (void)state;
    char err[512];
    struct cn_gw_snapshot *s = load(
        HEAD "    policy: consistent_hash\n"
             "    hash_on: {cookie: sid}\n"
             "    timeouts: {connect: 250ms, first_byte: 2s, total: 1m, idle: 1h}\n"
             "routes:\n"
             "  - name: r\n"
             "    hostnames: [example.com, '*.example.org']\n"
             "    matches:\n"
             "      - path: {type: Exact, value: /x}\n"
             "        method: POST\n"
             "        headers: [{name: X-A, value: '^a+$', type: RegularExpression}]\n"
             "        queryParams: [{name: q, value: '1'}]\n"
             "    filters:\n"
             "      - type: URLRewrite\n"
             "        urlRewrite: {hostname: in.example, path: {type: ReplaceFullPath, "
             "replaceFullPath: /y}}\n"
             "      - type: ResponseHeaderModifier\n"
             "        responseHeaderModifier: {set: [{name: X-S, value: v}], remove: [Server]}\n"
             "    backendRefs: [{name: a, weight: 2}]\n"
             "    timeouts: {total: 5s}\n"
             "limits: {max_body_bytes: 1m, max_response_headers: 50}\n"
             "proxy: {via: true}\n",
        err);
    assert_non_null(s);
    assert_int_equal(s->num_routes, 1);
    assert_int_equal(s->num_clusters, 1);
    assert_int_equal(s->clusters[0].policy, GW_LB_HASH);
    assert_int_equal(s->clusters[0].hash_on, GW_HASH_COOKIE);
    assert_int_equal(s->clusters[0].timeouts.connect_ms, 250);
    assert_int_equal(s->clusters[0].timeouts.total_ms, 60000);
    assert_int_equal(s->clusters[0].timeouts.idle_ms, 3600000);
    assert_int_equal(s->clusters[0].ring_len, 4 * GW_RING_POINTS_PER_WEIGHT);
    assert_int_equal(s->routes[0].num_hostnames, 2);
    assert_int_equal(s->routes[0].timeouts_set, 4);
    assert_int_equal(s->limits.http.max_body_bytes, 1 << 20);
    assert_int_equal(s->limits.max_response_headers, 50);
    assert_int_equal(s->via, 1);
    assert_non_null(s->routes[0].rewrite);
    assert_int_equal(s->matches[0].method, HTTP_POST);
    cn_gw_snapshot_unref(s);
}

/* Each case: a file and the exact start of its error. */
static const struct {
    const char *text;
    const char *err;
} bad[] = {
    {"", "t.yaml: (top): the file is empty"},
    {"listeners: [", "t.yaml:2:1: did not find expected node content"},
    {"- a\n", "t.yaml:1:1: (top): must be a mapping"},
    {"foo: 1\n", "t.yaml:1:1: (top): unknown field 'foo'"},
    {"routes: []\n", "t.yaml:1:1: listeners: is required"},
    {"listeners: []\n", "t.yaml:1:12: listeners: must list 1 to 64 listeners"},
    {"listeners: [{address: nope}]\n",
     "t.yaml:1:23: listeners[0].address: 'nope' is not HOST:PORT"},
    {"listeners: [{address: \"a\\nb\"}]\n",
     "t.yaml:1:23: listeners[0].address: 'a b' is not HOST:PORT"},
    {"listeners: [{}]\n", "t.yaml:1:13: listeners[0].address: is required"},
    {"listeners: [{address: '1.2.3.4:1', port: 2}]\n",
     "t.yaml:1:36: listeners[0]: unknown field 'port'"},
    {"listeners: [{address: '1.2.3.4:1', address: '1.2.3.4:2'}]\n",
     "t.yaml:1:36: listeners[0]: field 'address' given twice"},
    {HEAD "  - name: a\n    endpoints: [127.0.0.1:1]\n",
     "t.yaml:6:11: clusters[1].name: a cluster named 'a' comes earlier"},
    {HEAD "  - name: b\n", "t.yaml:6:5: clusters[1].endpoints: is required"},
    {HEAD "  - name: b\n    endpoints: []\n",
     "t.yaml:7:16: clusters[1].endpoints: must list at least one endpoint"},
    {HEAD "  - name: b\n    endpoints: [127.0.0.1]\n",
     "t.yaml:7:17: clusters[1].endpoints[0].address: '127.0.0.1' is not HOST:PORT"},
    {HEAD "  - name: b\n    endpoints: [127.0.0.1:0]\n",
     "t.yaml:7:17: clusters[1].endpoints[0].address: port 0"},
    {HEAD "  - name: b\n    endpoints: [{address: 127.0.0.1:1, weight: 0}]\n",
     "t.yaml:7:48: clusters[1].endpoints[0].weight: 0 is out of range [1, 1000000]"},
    {HEAD "    policy: random\n",
     "t.yaml:6:13: clusters[0].policy: 'random' is not one of round_robin"},
    {HEAD "    policy: consistent_hash\n", "t.yaml:4:5: clusters[0].hash_on: is required"},
    {HEAD "    policy: consistent_hash\n    hash_on: {header: X, cookie: y}\n",
     "t.yaml:7:14: clusters[0].hash_on: give exactly one of header, cookie, client_ip"},
    {HEAD "    policy: consistent_hash\n    hash_on: {header: 'a b'}\n",
     "t.yaml:7:23: clusters[0].hash_on.header: 'a b' is not a valid header name"},
    {HEAD "    hash_on: {client_ip: true}\n",
     "t.yaml:6:14: clusters[0].hash_on: only applies to policy consistent_hash"},
    {HEAD "    timeouts: {connect: 5}\n",
     "t.yaml:6:25: clusters[0].timeouts.connect: '5' is not a duration"},
    {HEAD "    timeouts: {connect: 0}\n",
     "t.yaml:6:25: clusters[0].timeouts: connect timeout must be above 0"},
    {HEAD "    timeouts: {idle: 2d}\n", "t.yaml:6:22: clusters[0].timeouts.idle: '2d' is not"},
    {HEAD "    max_idle_per_worker: -1\n",
     "t.yaml:6:26: clusters[0].max_idle_per_worker: '-1' is not a whole number"},
    {HEAD "routes: [{name: r}]\n", "t.yaml:6:10: routes[0].backendRefs: is required"},
    {HEAD "routes: [{name: r, backendRefs: [{name: zz}]}]\n",
     "t.yaml:6:41: routes[0].backendRefs[0].name: no cluster named 'zz'"},
    {HEAD "routes: [{name: r, backendRefs: [{name: a, weight: 0}]}]\n",
     "t.yaml:6:33: routes[0].backendRefs: the weights add up to 0"},
    {HEAD "routes: [{name: r, backendRefs: [{name: a}]}, {name: r, backendRefs: [{name: a}]}]\n",
     "t.yaml:6:54: routes[1].name: a route named 'r' comes earlier"},
    {HEAD "routes: [{name: 'r r', backendRefs: [{name: a}]}]\n",
     "t.yaml:6:17: routes[0].name: 'r r': names use letters"},
    {HEAD "routes: [{name: r, hostnames: [Ex.com], backendRefs: [{name: a}]}]\n",
     "t.yaml:6:32: routes[0].hostnames[0]: 'Ex.com' is not a lower-case hostname"},
    {HEAD "routes: [{name: r, matches: [], backendRefs: [{name: a}]}]\n",
     "t.yaml:6:29: routes[0].matches: must not be empty"},
    {HEAD
     "routes: [{name: r, matches: [{path: {type: Glob, value: /}}], backendRefs: [{name: a}]}]\n",
     "t.yaml:6:44: routes[0].matches[0].path.type: 'Glob' is not one of Exact"},
    {HEAD "routes: [{name: r, matches: [{path: {value: x}}], backendRefs: [{name: a}]}]\n",
     "t.yaml:6:45: routes[0].matches[0].path.value: a path must start with '/'"},
    {HEAD "routes: [{name: r, matches: [{path: {type: RegularExpression, value: '('}}], "
          "backendRefs: [{name: a}]}]\n",
     "t.yaml:6:70: routes[0].matches[0].path.value: invalid regular expression (POSIX ERE)"},
    {HEAD "routes: [{name: r, matches: [{path: {type: RegularExpression, value: '/a{1000}'}}], "
          "backendRefs: [{name: a}]}]\n",
     "t.yaml:6:70: routes[0].matches[0].path.value: regular expression too large"},
    {HEAD "routes: [{name: r, matches: [{method: FETCH}], backendRefs: [{name: a}]}]\n",
     "t.yaml:6:39: routes[0].matches[0].method: 'FETCH' is not an HTTP method"},
    {HEAD "routes: [{name: r, matches: [{headers: [{name: 'a:b', value: x}]}], "
          "backendRefs: [{name: a}]}]\n",
     "t.yaml:6:48: routes[0].matches[0].headers[0].name: 'a:b' is not a valid header name"},
    {HEAD "routes: [{name: r, matches: [{queryParams: [{name: q}]}], backendRefs: [{name: a}]}]\n",
     "t.yaml:6:45: routes[0].matches[0].queryParams[0].value: is required"},
    {HEAD "routes: [{name: r, matches: [{headers: [{name: a, value: x, type: Prefix}]}], "
          "backendRefs: [{name: a}]}]\n",
     "t.yaml:6:67: routes[0].matches[0].headers[0].type: 'Prefix' is not one of Exact"},
    {HEAD "routes: [{name: r, filters: [{type: Mirror}], backendRefs: [{name: a}]}]\n",
     "t.yaml:6:37: routes[0].filters[0].type: 'Mirror' is not one of RequestHeaderModifier"},
    {HEAD "routes: [{name: r, filters: [{type: URLRewrite}], backendRefs: [{name: a}]}]\n",
     "t.yaml:6:30: routes[0].filters[0].urlRewrite: is required with type URLRewrite"},
    {HEAD "routes: [{name: r, filters: [{type: URLRewrite, requestRedirect: {}}], "
          "backendRefs: [{name: a}]}]\n",
     "t.yaml:6:66: routes[0].filters[0].requestRedirect: does not go with type URLRewrite"},
    {HEAD "routes: [{name: r, filters: [{type: RequestHeaderModifier, requestHeaderModifier: "
          "{set: [{name: X, value: \"a\\r\\nb\"}]}}], backendRefs: [{name: a}]}]\n",
     "t.yaml:6:107: routes[0].filters[0].requestHeaderModifier.set[0].value: a header value "
     "must not hold control characters"},
    {HEAD "routes: [{name: r, filters: [{type: RequestHeaderModifier, requestHeaderModifier: "
          "{remove: ['a b']}}], backendRefs: [{name: a}]}]\n",
     "t.yaml:6:93: routes[0].filters[0].requestHeaderModifier.remove[0]: 'a b' is not a valid "
     "header name"},
    {HEAD "routes: [{name: r, matches: [{path: {type: Exact, value: /x}}], filters: [{type: "
          "URLRewrite, urlRewrite: {path: {type: ReplacePrefixMatch, replacePrefixMatch: /y}}}], "
          "backendRefs: [{name: a}]}]\n",
     "t.yaml:6:75: routes[0].filters[0]: ReplacePrefixMatch needs every match"},
    {HEAD "routes: [{name: r, filters: [{type: URLRewrite, urlRewrite: {path: {type: "
          "ReplaceFullPath}}}], backendRefs: [{name: a}]}]\n",
     "t.yaml:6:68: routes[0].filters[0].urlRewrite.path.replaceFullPath: is required"},
    {HEAD "routes: [{name: r, filters: [{type: RequestRedirect, requestRedirect: {statusCode: "
          "304}}]}]\n",
     "t.yaml:6:84: routes[0].filters[0].requestRedirect.statusCode: must be 301, 302, 303, 307 "
     "or 308"},
    {HEAD
     "routes: [{name: r, filters: [{type: RequestRedirect, requestRedirect: {scheme: ftp}}]}]\n",
     "t.yaml:6:80: routes[0].filters[0].requestRedirect.scheme: must be http or https"},
    {HEAD
     "routes: [{name: r, filters: [{type: RequestRedirect, requestRedirect: {port: 70000}}]}]\n",
     "t.yaml:6:78: routes[0].filters[0].requestRedirect.port: 70000 is out of range"},
    {HEAD "routes: [{name: r, filters: [{type: RequestRedirect, requestRedirect: {}}], "
          "backendRefs: [{name: a}]}]\n",
     "t.yaml:6:90: routes[0].backendRefs: a route with a RequestRedirect filter has no backends"},
    {HEAD "routes: [{name: r, filters: [{type: RequestRedirect, requestRedirect: {}}, {type: "
          "URLRewrite, urlRewrite: {}}]}]\n",
     "t.yaml:6:76: routes[0].filters[1]: one RequestRedirect or URLRewrite filter per route"},
    {HEAD "limits: {max_body_bytes: 5x}\n",
     "t.yaml:6:26: limits.max_body_bytes: '5x' is not a size"},
    {HEAD "limits: {max_headers: 0}\n", "t.yaml:6:23: limits.max_headers: 0 is out of range"},
    {HEAD "limits: {max_url_bytes: 64k, max_header_bytes: 1k}\n",
     "t.yaml:6:9: limits: max_url_bytes is larger than max_header_bytes"},
    {HEAD "proxy: {via: yes}\n", "t.yaml:6:14: proxy.via: must be true or false"},
    {HEAD "admin: {address: x}\n", "t.yaml:6:18: admin.address: 'x' is not HOST:PORT"},
    {HEAD "workers: 2000\n", "t.yaml:6:10: workers: 2000 is out of range [0, 1024]"},
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
            continue;
        }
        assert_null(strchr(err, '\n'));
    }
    assert_int_equal(failed, 0);
}

static void test_file_errors(void **state)
{
    (void)state;
    char err[512];
    assert_null(cn_gw_config_load_file("/nonexistent/gw.yaml", err, sizeof(err)));
    assert_string_equal(err, "/nonexistent/gw.yaml: cannot open: No such file or directory");
}

/* The shipped example loads. */
static void test_example(void **state)
{
    (void)state;
    char err[512], path[4096];
    snprintf(path, sizeof(path), "%s/../../../examples/gateway.yaml", CN_DIR);
    struct cn_gw_snapshot *s = cn_gw_config_load_file(path, err, sizeof(err));
    if (!s)
        fprintf(stderr, "%s\n", err);
    assert_non_null(s);
    assert_int_equal(s->num_routes, 8);
    assert_int_equal(s->num_clusters, 4);
    /* the auth, CORS and tracing parts (with their files next to the example) */
    assert_true(s->tracing.enabled);
    const struct gw_route *orders = &s->routes[2];
    assert_true(cn_slice_eq(orders->name, CN_SLICE_LIT("orders")));
    assert_int_equal(orders->num_filters, 2);
    assert_int_equal(orders->filters[0].kind, GW_F_CORS);
    assert_int_equal(orders->filters[1].kind, GW_F_JWT);
    assert_int_equal(orders->filters[1].u.jwt->keys->num_keys, 1);
    assert_int_equal(s->routes[3].filters[0].kind, GW_F_KEY_AUTH);
    assert_int_equal(s->routes[3].filters[0].u.keyauth->num_keys, 1);
    cn_gw_snapshot_unref(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_good),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_file_errors),
        cmocka_unit_test(test_example),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
