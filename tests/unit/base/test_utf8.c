#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "base/utf8.h"

#include <string.h>

#define SEQ(lit) cn_utf8_seq((lit), sizeof(lit) - 1)

static void sequences(void **state)
{
    (void)state;
    assert_int_equal(SEQ("a"), 1);
    assert_int_equal(SEQ("\xc2\x80"), 2);         /* U+0080, the first of two bytes */
    assert_int_equal(SEQ("\xc1\xbf"), 0);         /* overlong U+007F */
    assert_int_equal(SEQ("\xc2"), 0);             /* cut short */
    assert_int_equal(SEQ("\xe0\xa0\x80"), 3);     /* U+0800 */
    assert_int_equal(SEQ("\xe0\x9f\xbf"), 0);     /* overlong U+07FF */
    assert_int_equal(SEQ("\xed\x9f\xbf"), 3);     /* U+D7FF */
    assert_int_equal(SEQ("\xed\xa0\x80"), 0);     /* U+D800, a surrogate */
    assert_int_equal(SEQ("\xf0\x90\x80\x80"), 4); /* U+10000 */
    assert_int_equal(SEQ("\xf0\x8f\xbf\xbf"), 0); /* overlong U+FFFF */
    assert_int_equal(SEQ("\xf4\x8f\xbf\xbf"), 4); /* U+10FFFF */
    assert_int_equal(SEQ("\xf4\x90\x80\x80"), 0); /* U+110000 */
    assert_int_equal(SEQ("\xf5\x80\x80\x80"), 0);
    assert_int_equal(SEQ("\x80"), 0); /* a lone continuation byte */
    assert_int_equal(SEQ("\xe2\x82"), 0);
    assert_true(cn_utf8_valid("", 0));
    assert_true(cn_utf8_valid("h\xc3\xa9llo \xe2\x82\xac", 11));
    assert_false(cn_utf8_valid("h\xc3llo", 5));
    assert_false(cn_utf8_valid("\xe2\x82\xac\xe2\x82", 5));
}

static void cuts(void **state)
{
    (void)state;
    const char *euro = "ab\xe2\x82\xac"; /* 5 bytes */
    assert_int_equal(cn_utf8_cut(euro, 5, 5), 5);
    assert_int_equal(cn_utf8_cut(euro, 5, 9), 5);
    assert_int_equal(cn_utf8_cut(euro, 5, 4), 2); /* not inside the euro sign */
    assert_int_equal(cn_utf8_cut(euro, 5, 3), 2);
    assert_int_equal(cn_utf8_cut(euro, 5, 2), 2);
    assert_int_equal(cn_utf8_cut(euro, 5, 0), 0);
    /* Bytes that are not UTF-8 are cut where the limit says. */
    assert_int_equal(cn_utf8_cut("\x80\x80\x80\x80\x80", 5, 3), 3);
}

static void json_str_is(const void *in, size_t len, const char *want)
{
    char out[256];
    size_t n = cn_json_str(NULL, in, len);
    assert_int_equal(n, strlen(want));
    assert_true(n <= 2 + 6 * len);
    memset(out, 'x', sizeof(out));
    assert_int_equal(cn_json_str(out, in, len), n);
    assert_memory_equal(out, want, n);
    assert_int_equal(out[n], 'x'); /* nothing written past it */
}

static void json_strings(void **state)
{
    (void)state;
    json_str_is(NULL, 0, "\"\"");
    json_str_is("plain", 5, "\"plain\"");
    json_str_is("a\"b\\c", 5, "\"a\\\"b\\\\c\"");
    json_str_is("\n\r\t\b\f", 5, "\"\\n\\r\\t\\b\\f\"");
    json_str_is("\x01\x1f", 2, "\"\\u0001\\u001f\"");
    json_str_is("\0", 1, "\"\\u0000\"");
    json_str_is("\x7f", 1, "\"\x7f\"");
    json_str_is("caf\xc3\xa9", 5, "\"caf\xc3\xa9\"");
    json_str_is("\xff", 1, "\"\\ufffd\"");
    json_str_is("a\xe2\x82", 3, "\"a\\ufffd\\ufffd\"");          /* a cut-short sequence */
    json_str_is("\xed\xa0\x80", 3, "\"\\ufffd\\ufffd\\ufffd\""); /* a surrogate */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(sequences),
        cmocka_unit_test(cuts),
        cmocka_unit_test(json_strings),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
