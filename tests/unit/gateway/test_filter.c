/* Filters: header modifier look-ups, hop-by-hop names, path rewrites, redirect locations. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "gateway/internal.h"

static void test_hop_by_hop(void **state)
{
    (void)state;
    const char *yes[] = {"Connection",       "keep-alive",         "TE",
                         "Trailer",          "Transfer-Encoding",  "Upgrade",
                         "Proxy-Connection", "proxy-authorization"};
    const char *no[] = {"Content-Length", "Host", "Proxy", "Trailers", "X-Connection", "te2"};
    for (size_t i = 0; i < sizeof(yes) / sizeof(yes[0]); i++)
        assert_true(gw_is_hop_by_hop(cn_slice_of(yes[i])));
    for (size_t i = 0; i < sizeof(no) / sizeof(no[0]); i++)
        assert_false(gw_is_hop_by_hop(cn_slice_of(no[i])));
}

static void test_header_mod(void **state)
{
    (void)state;
    struct gw_header_op set[] = {{CN_SLICE_LIT("X-Set"), CN_SLICE_LIT("1")}};
    struct cn_slice rm[] = {CN_SLICE_LIT("Server")};
    struct gw_header_mod hm = {set, 1, NULL, 0, rm, 1};
    assert_true(gw_header_mod_drops(&hm, CN_SLICE_LIT("x-set")));
    assert_true(gw_header_mod_drops(&hm, CN_SLICE_LIT("SERVER")));
    assert_false(gw_header_mod_drops(&hm, CN_SLICE_LIT("X-Add")));
}

static const char *rewrite(enum gw_path_mod mod, const char *prefix, const char *with,
                           const char *path)
{
    static char out[256];
    struct gw_filter f = {.kind = GW_F_URL_REWRITE};
    f.u.rewrite.path_mod = mod;
    f.u.rewrite.path = cn_slice_of(with);
    struct gw_match m = {.path_type = GW_PATH_PREFIX, .path = cn_slice_of(prefix)};
    int n = gw_rewrite_path(&f, &m, cn_slice_of(path), out, sizeof(out));
    if (n < 0)
        return "(too long)";
    out[n] = '\0';
    return out;
}

static void test_rewrite(void **state)
{
    (void)state;
    assert_string_equal(rewrite(GW_PM_PREFIX, "/foo", "/bar", "/foo/x"), "/bar/x");
    assert_string_equal(rewrite(GW_PM_PREFIX, "/foo", "/bar", "/foo"), "/bar");
    assert_string_equal(rewrite(GW_PM_PREFIX, "/foo", "/", "/foo/x"), "/x");
    assert_string_equal(rewrite(GW_PM_PREFIX, "/foo", "/", "/foo"), "/");
    assert_string_equal(rewrite(GW_PM_PREFIX, "/foo", "/bar/", "/foo/x"), "/bar/x");
    assert_string_equal(rewrite(GW_PM_PREFIX, "/", "/v2", "/x"), "/v2/x");
    assert_string_equal(rewrite(GW_PM_FULL, "/foo", "/only", "/foo/x"), "/only");
    assert_string_equal(rewrite(GW_PM_NONE, "/foo", "", "/foo/x"), "/foo/x");
    char big[300];
    memset(big, 'a', sizeof(big) - 1);
    big[0] = '/';
    big[299] = '\0';
    assert_string_equal(rewrite(GW_PM_NONE, "/", "", big), "(too long)");
}

static int req_tls; /* the request came over TLS */

static const char *redirect(const char *scheme, const char *host, int port, enum gw_path_mod pm,
                            const char *path_with, const char *req_host, const char *path,
                            const char *query)
{
    static char out[256];
    struct gw_filter f = {.kind = GW_F_REDIRECT};
    f.u.redirect.scheme = cn_slice_of(scheme);
    f.u.redirect.hostname = cn_slice_of(host);
    f.u.redirect.port = port;
    f.u.redirect.path_mod = pm;
    f.u.redirect.path = cn_slice_of(path_with);
    f.u.redirect.status = 302;
    struct gw_match m = {.path_type = GW_PATH_PREFIX, .path = CN_SLICE_LIT("/old")};
    int n = gw_redirect_location(&f, &m, req_tls, cn_slice_of(req_host), cn_slice_of(path),
                                 cn_slice_of(query), out, sizeof(out));
    if (n < 0)
        return "(too long)";
    out[n] = '\0';
    return out;
}

static void test_redirect(void **state)
{
    (void)state;
    assert_string_equal(redirect("", "", 0, GW_PM_NONE, "", "a.com:8080", "/old/x", "q=1"),
                        "http://a.com:8080/old/x?q=1");
    assert_string_equal(redirect("https", "", 0, GW_PM_NONE, "", "a.com:8080", "/x", ""),
                        "https://a.com/x");
    assert_string_equal(
        redirect("https", "b.com", 8443, GW_PM_PREFIX, "/new", "a.com", "/old/x", ""),
        "https://b.com:8443/new/x");
    assert_string_equal(redirect("", "", 80, GW_PM_FULL, "/", "a.com:81", "/old/x", ""),
                        "http://a.com/");
    assert_string_equal(redirect("", "", 0, GW_PM_NONE, "", "[::1]:9", "/x", ""),
                        "http://[::1]:9/x");
    /* Over TLS the request's scheme is https: kept when the filter sets none. */
    req_tls = 1;
    assert_string_equal(redirect("", "", 0, GW_PM_NONE, "", "a.com:8443", "/old/x", ""),
                        "https://a.com:8443/old/x");
    assert_string_equal(redirect("", "", 0, GW_PM_NONE, "", "a.com:443", "/x", ""),
                        "https://a.com/x");
    assert_string_equal(redirect("http", "", 0, GW_PM_NONE, "", "a.com:8443", "/x", ""),
                        "http://a.com/x");
    req_tls = 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hop_by_hop),
        cmocka_unit_test(test_header_mod),
        cmocka_unit_test(test_rewrite),
        cmocka_unit_test(test_redirect),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
