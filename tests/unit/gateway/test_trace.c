/* W3C traceparent: strict parsing and formatting; CORS origin, method and header matching;
 * key comparison. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "gateway/internal.h"

static void test_traceparent_valid(void **state)
{
    (void)state;
    const char *v = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    struct gw_traceparent t;
    assert_int_equal(gw_traceparent_parse(cn_slice_of(v), &t), 0);
    assert_int_equal(t.trace_id[0], 0x4b);
    assert_int_equal(t.trace_id[15], 0x36);
    assert_int_equal(t.span_id[0], 0x00);
    assert_int_equal(t.span_id[7], 0xb7);
    assert_int_equal(t.flags, 1);
    char out[56];
    gw_traceparent_format(out, t.trace_id, t.span_id, t.flags);
    assert_string_equal(out, v);
    const char *unsampled = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00";
    assert_int_equal(gw_traceparent_parse(cn_slice_of(unsampled), &t), 0);
    assert_int_equal(t.flags, 0);
    /* Unknown flag bits parse (the gateway keeps only "sampled" when it propagates). */
    assert_int_equal(
        gw_traceparent_parse(cn_slice_of("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-ff"),
                             &t),
        0);
    assert_int_equal(t.flags, 0xff);
}

static void test_traceparent_invalid(void **state)
{
    (void)state;
    const char *bad[] = {
        "",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0",    /* short */
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-011",  /* long */
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-x", /* more fields for 00 */
        "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",   /* version */
        "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01", /* upper case */
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00F067AA0BA902B7-01",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0A",
        "00-00000000000000000000000000000000-00f067aa0ba902b7-01", /* zero trace */
        "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01", /* zero span */
        "00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", /* separators */
        "00-4bf92f3577b34da6a3ce929d0e0e4736_00f067aa0ba902b7-01",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7_01",
        "00-4bf92f3577b34da6a3ce929d0e0e473g-00f067aa0ba902b7-01", /* not hex */
        " 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct gw_traceparent t;
        if (gw_traceparent_parse(cn_slice_of(bad[i]), &t) != CN_ESYNTAX)
            fail_msg("accepted '%s'", bad[i]);
    }
}

static void test_cors(void **state)
{
    (void)state;
    struct cn_slice origins[] = {CN_SLICE_LIT("https://app.example.com"),
                                 CN_SLICE_LIT("*.shop.example")};
    struct cn_slice methods[] = {CN_SLICE_LIT("GET"), CN_SLICE_LIT("PUT")};
    struct cn_slice headers[] = {CN_SLICE_LIT("Content-Type"), CN_SLICE_LIT("X-Token")};
    struct gw_cors c = {.origins = origins,
                        .num_origins = 2,
                        .methods_list = methods,
                        .num_methods = 2,
                        .headers_list = headers,
                        .num_headers = 2};
    const char *yes[] = {"https://app.example.com", "HTTPS://APP.EXAMPLE.COM",
                         "https://a.shop.example", "http://a.b.shop.example"};
    const char *no[] = {"https://app.example.com.evil",
                        "https://evil.com",
                        "https://shop.example",
                        "https://.shop.example",
                        "https://ashop.example",
                        "null",
                        "",
                        "https://app.example.com:8443",
                        "https://a.shop.example:8443"};
    for (size_t i = 0; i < sizeof(yes) / sizeof(yes[0]); i++)
        if (!gw_cors_origin_allowed(&c, cn_slice_of(yes[i])))
            fail_msg("refused '%s'", yes[i]);
    for (size_t i = 0; i < sizeof(no) / sizeof(no[0]); i++)
        if (gw_cors_origin_allowed(&c, cn_slice_of(no[i])))
            fail_msg("allowed '%s'", no[i]);
    struct cn_slice star[] = {CN_SLICE_LIT("*")};
    struct gw_cors any = {.origins = star, .num_origins = 1};
    assert_true(gw_cors_origin_allowed(&any, CN_SLICE_LIT("https://x.y")));
    assert_false(gw_cors_origin_allowed(&any, CN_SLICE_LIT("")));
    /* Preflight: the method exactly (methods are case-sensitive), headers by name in any
     * case, a list with blanks. */
    assert_true(gw_cors_preflight_ok(&c, CN_SLICE_LIT("PUT"), CN_SLICE_LIT("")));
    assert_false(gw_cors_preflight_ok(&c, CN_SLICE_LIT("put"), CN_SLICE_LIT("")));
    assert_false(gw_cors_preflight_ok(&c, CN_SLICE_LIT("DELETE"), CN_SLICE_LIT("")));
    assert_false(gw_cors_preflight_ok(&c, CN_SLICE_LIT(""), CN_SLICE_LIT("")));
    assert_true(
        gw_cors_preflight_ok(&c, CN_SLICE_LIT("GET"), CN_SLICE_LIT("content-type , x-token")));
    assert_false(
        gw_cors_preflight_ok(&c, CN_SLICE_LIT("GET"), CN_SLICE_LIT("content-type, x-other")));
}

static void test_keyauth(void **state)
{
    (void)state;
    struct cn_slice keys[] = {CN_SLICE_LIT("k-123"), CN_SLICE_LIT("longer-key-456")};
    struct gw_keyauth ka = {.header = CN_SLICE_LIT("X-Api-Key"), .keys = keys, .num_keys = 2};
    assert_true(gw_keyauth_check(&ka, CN_SLICE_LIT("k-123")));
    assert_true(gw_keyauth_check(&ka, CN_SLICE_LIT("longer-key-456")));
    assert_false(gw_keyauth_check(&ka, CN_SLICE_LIT("k-12")));
    assert_false(gw_keyauth_check(&ka, CN_SLICE_LIT("k-1234")));
    assert_false(gw_keyauth_check(&ka, CN_SLICE_LIT("K-123")));
    assert_false(gw_keyauth_check(&ka, CN_SLICE_LIT("")));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_traceparent_valid),
        cmocka_unit_test(test_traceparent_invalid),
        cmocka_unit_test(test_cors),
        cmocka_unit_test(test_keyauth),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
