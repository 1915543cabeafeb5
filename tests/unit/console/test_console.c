/* src/console/console.c against the console actually embedded in this build: content
 * types, the paths answered with index.html, lookups, ETags and 304, gzip negotiation, the
 * routes (matched through the real router). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "console/console.h"
#include "http/router.h"

#define S(s) cn_slice_of(s)

static void content_types(void **state)
{
    (void)state;
    assert_string_equal(cn_console_content_type(S("/index.html")), "text/html; charset=utf-8");
    assert_string_equal(cn_console_content_type(S("/assets/index-AbC123.js")),
                        "text/javascript; charset=utf-8");
    assert_string_equal(cn_console_content_type(S("/assets/x.CSS")), "text/css; charset=utf-8");
    assert_string_equal(cn_console_content_type(S("/favicon.svg")), "image/svg+xml");
    assert_string_equal(cn_console_content_type(S("/a.woff2")), "font/woff2");
    assert_string_equal(cn_console_content_type(S("/a.png")), "image/png");
    assert_string_equal(cn_console_content_type(S("/a.json")), "application/json");
    /* No extension, an unknown one, a dot in a directory name only. */
    assert_string_equal(cn_console_content_type(S("/LICENSE")), "application/octet-stream");
    assert_string_equal(cn_console_content_type(S("/a.exe")), "application/octet-stream");
    assert_string_equal(cn_console_content_type(S("/v1.2/readme")), "application/octet-stream");
    assert_string_equal(cn_console_content_type(S("")), "application/octet-stream");
    /* The length is the slice's, not a NUL's: ".js" of ".json" is not JSON. */
    struct cn_slice cut = {"/a.json", 5};
    assert_string_equal(cn_console_content_type(cut), "text/javascript; charset=utf-8");
}

static void pages(void **state)
{
    (void)state;
    const char *yes[] = {"/",         "/services", "/topology",
                         "/traces",   "/traces/",  "/traces/0123456789abcdef0123456789abcdef",
                         "/logs",     "/rca",      "/traces/a/b/c",
                         "/registry", "/gateway",  "/demo"};
    const char *no[] = {
        "",         "/x", "/servicesx", "/Services", "/assets/x.js", "/api/v1/traces",
        "/metrics", "//", "/tracesx/y", "traces"};
    for (size_t i = 0; i < sizeof(yes) / sizeof(yes[0]); i++)
        assert_true(cn_console_is_page(S(yes[i])));
    for (size_t i = 0; i < sizeof(no) / sizeof(no[0]); i++)
        assert_false(cn_console_is_page(S(no[i])));
}

/* The embedded table: sorted, unique, index.html and at least a script and a style sheet
 * under /assets/, every ETag quoted hex, every gzip copy smaller. */
static void table(void **state)
{
    (void)state;
    assert_true(cn_console_num_assets >= 4);
    int js = 0, css = 0;
    for (size_t i = 0; i < cn_console_num_assets; i++) {
        const struct cn_console_asset *a = &cn_console_assets[i];
        assert_int_equal(a->path[0], '/');
        if (i)
            assert_true(strcmp(cn_console_assets[i - 1].path, a->path) < 0);
        assert_int_equal(strlen(a->etag), 18);
        assert_int_equal(a->etag[0], '"');
        assert_int_equal(a->etag[17], '"');
        for (int k = 1; k < 17; k++)
            assert_true(cn_hexval(a->etag[k]) >= 0);
        if (a->gz)
            assert_true(a->gz_len < a->len);
        js += strncmp(a->path, "/assets/", 8) == 0 && strstr(a->path, ".js") != NULL;
        css += strncmp(a->path, "/assets/", 8) == 0 && strstr(a->path, ".css") != NULL;
        assert_ptr_equal(cn_console_find(S(a->path)), a);
    }
    assert_true(js >= 1 && css >= 1);
    const struct cn_console_asset *index = cn_console_find(S("/index.html"));
    assert_non_null(index);
    assert_memory_equal(index->data, "<!doctype html>", 15);
    assert_null(cn_console_find(S("/index.htm")));
    assert_null(cn_console_find(S("/index.html2")));
    assert_null(cn_console_find(S("/")));
    assert_null(cn_console_find(S("")));
    assert_null(cn_console_find(S("/zzz")));
}

static const struct cn_console_asset *first_script(void)
{
    for (size_t i = 0; i < cn_console_num_assets; i++)
        if (strncmp(cn_console_assets[i].path, "/assets/", 8) == 0 &&
            strstr(cn_console_assets[i].path, ".js") && cn_console_assets[i].gz)
            return &cn_console_assets[i];
    return NULL;
}

static void resolve_fallback(void **state)
{
    (void)state;
    const struct cn_console_asset *index = cn_console_find(S("/index.html"));
    struct cn_console_reply r;
    const char *to_index[] = {"/", "/traces/abc", "/logs", "/index.html", "/rca/x/y"};
    for (size_t i = 0; i < sizeof(to_index) / sizeof(to_index[0]); i++) {
        cn_console_resolve(S(to_index[i]), NULL, NULL, &r);
        assert_int_equal(r.status, 200);
        assert_ptr_equal(r.asset, index);
        assert_string_equal(r.content_type, "text/html; charset=utf-8");
        assert_string_equal(r.cache_control, "no-cache");
        assert_string_equal(r.etag, index->etag);
        assert_false(r.gzip);
    }
    const char *missing[] = {"/nope", "/assets/nope.js", "/api/v1/services", "", "/assets/"};
    for (size_t i = 0; i < sizeof(missing) / sizeof(missing[0]); i++) {
        cn_console_resolve(S(missing[i]), NULL, NULL, &r);
        assert_int_equal(r.status, 404);
        assert_null(r.asset);
    }
}

static void resolve_asset_gzip_etag(void **state)
{
    (void)state;
    const struct cn_console_asset *js = first_script();
    assert_non_null(js);
    struct cn_console_reply r;
    cn_console_resolve(S(js->path), NULL, NULL, &r);
    assert_int_equal(r.status, 200);
    assert_ptr_equal(r.asset, js);
    assert_string_equal(r.cache_control, "public, max-age=31536000, immutable");
    assert_false(r.gzip);
    assert_string_equal(r.etag, js->etag);

    struct cn_slice ae = S("deflate, gzip;q=0.5");
    cn_console_resolve(S(js->path), &ae, NULL, &r);
    assert_true(r.gzip);
    char want[48];
    snprintf(want, sizeof(want), "%.17s-gz\"", js->etag);
    assert_string_equal(r.etag, want);

    /* 304 only for the representation's own ETag. */
    struct cn_slice inm = S(want);
    cn_console_resolve(S(js->path), &ae, &inm, &r);
    assert_int_equal(r.status, 304);
    cn_console_resolve(S(js->path), NULL, &inm, &r);
    assert_int_equal(r.status, 200);
    struct cn_slice plain = S(js->etag);
    cn_console_resolve(S(js->path), NULL, &plain, &r);
    assert_int_equal(r.status, 304);
}

static void accepts_gzip(void **state)
{
    (void)state;
    const char *yes[] = {
        "gzip",   "GZIP",   "deflate, gzip", "gzip;q=0.001", "gzip; q=1", "*", "br;q=1, *;q=0.1",
        " gzip ", "x-gzip", "gzip;q=0.5, br"};
    const char *no[] = {"",      "identity", "deflate, br", "gzip;q=0",  "gzip; q=0.000",
                        "gzipx", "*;q=0",    "xgzip",       "gzip;Q=0.", ","};
    for (size_t i = 0; i < sizeof(yes) / sizeof(yes[0]); i++)
        assert_true(cn_console_accepts_gzip(S(yes[i])));
    for (size_t i = 0; i < sizeof(no) / sizeof(no[0]); i++)
        assert_false(cn_console_accepts_gzip(S(no[i])));
}

static void etag_matches(void **state)
{
    (void)state;
    const char *e = "\"00112233aabbccdd\"";
    assert_true(cn_console_etag_matches(S("\"00112233aabbccdd\""), e));
    assert_true(cn_console_etag_matches(S("W/\"00112233aabbccdd\""), e));
    assert_true(cn_console_etag_matches(S("\"x\", \"00112233aabbccdd\""), e));
    assert_true(cn_console_etag_matches(S("*"), e));
    assert_false(cn_console_etag_matches(S("\"00112233aabbccde\""), e));
    assert_false(cn_console_etag_matches(S("00112233aabbccdd"), e));
    assert_false(cn_console_etag_matches(S(""), e));
    assert_false(cn_console_etag_matches(S("\"00112233aabbccdd"), e));
}

/* Through the real router: the console's routes beside an API route, and what stays 404. */
static void noop(struct cn_http_req *req, void *ctx)
{
    (void)req;
    (void)ctx;
}

static void routes(void **state)
{
    (void)state;
    struct cn_router *r = cn_router_new();
    assert_non_null(r);
    assert_true(cn_router_add(r, CN_M(HTTP_GET), "/api/v1/traces/{id}", noop, NULL) >= 0);
    assert_int_equal(cn_console_routes(r), 0);
    struct cn_route_params params;
    const struct cn_route *rt;
    unsigned allowed;
    const char *found[] = {"/",    "/services",   "/traces",      "/traces/abc/def",    "/logs",
                           "/rca", "/index.html", "/favicon.svg", "/assets/anything.js"};
    for (size_t i = 0; i < sizeof(found) / sizeof(found[0]); i++) {
        assert_int_equal(cn_router_match(r, HTTP_GET, S(found[i]), &rt, &params, &allowed),
                         CN_ROUTE_FOUND);
        assert_true(rt->flags & CN_ROUTE_PUBLIC);
    }
    assert_int_equal(cn_router_match(r, HTTP_GET, S("/api/v1/traces/abc"), &rt, &params, &allowed),
                     CN_ROUTE_FOUND);
    assert_string_equal(rt->pattern, "/api/v1/traces/{id}");
    const char *absent[] = {"/nope", "/api/v1/nope", "/no/such/path", "/servicesx"};
    for (size_t i = 0; i < sizeof(absent) / sizeof(absent[0]); i++)
        assert_int_equal(cn_router_match(r, HTTP_GET, S(absent[i]), &rt, &params, &allowed),
                         CN_ROUTE_NOT_FOUND);
    assert_int_equal(cn_router_match(r, HTTP_POST, S("/"), &rt, &params, &allowed),
                     CN_ROUTE_BAD_METHOD);
    cn_router_free(r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(content_types),
        cmocka_unit_test(pages),
        cmocka_unit_test(table),
        cmocka_unit_test(resolve_fallback),
        cmocka_unit_test(resolve_asset_gzip_etag),
        cmocka_unit_test(accepts_gzip),
        cmocka_unit_test(etag_matches),
        cmocka_unit_test(routes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
