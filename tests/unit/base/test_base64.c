#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "base/base64.h"

#include <string.h>

/* RFC 4648 section 10. */
static const char *const vectors[][2] = {
    {"", ""},
    {"f", "Zg=="},
    {"fo", "Zm8="},
    {"foo", "Zm9v"},
    {"foob", "Zm9vYg=="},
    {"fooba", "Zm9vYmE="},
    {"foobar", "Zm9vYmFy"},
};

static void encode(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(vectors) / sizeof(vectors[0]); i++) {
        char out[16];
        size_t n = strlen(vectors[i][0]);
        assert_int_equal(cn_base64_encode(out, vectors[i][0], n), CN_BASE64_LEN(n));
        assert_int_equal(CN_BASE64_LEN(n), strlen(vectors[i][1]));
        assert_memory_equal(out, vectors[i][1], CN_BASE64_LEN(n));
    }
    char out[4];
    assert_int_equal(cn_base64_encode(out, "\xfb\xff", 2), 4);
    assert_memory_equal(out, "+/8=", 4);
    /* URL-safe, unpadded: the RFC 4648 vectors without '=' */
    for (size_t i = 0; i < sizeof(vectors) / sizeof(vectors[0]); i++) {
        char u[16];
        size_t n = strlen(vectors[i][0]), want = strcspn(vectors[i][1], "=");
        assert_int_equal(cn_base64url_encode(u, vectors[i][0], n), want);
        assert_memory_equal(u, vectors[i][1], want);
    }
    assert_int_equal(cn_base64url_encode(out, "\xfb\xff", 2), 3);
    assert_memory_equal(out, "-_8", 3);
}

static long dec(const char *s, uint8_t *out)
{
    return cn_base64_decode(out, s, strlen(s));
}

static void decode(void **state)
{
    (void)state;
    uint8_t out[16];
    for (size_t i = 0; i < sizeof(vectors) / sizeof(vectors[0]); i++) {
        assert_int_equal(dec(vectors[i][1], out), (long)strlen(vectors[i][0]));
        assert_memory_equal(out, vectors[i][0], strlen(vectors[i][0]));
    }
    /* Unpadded and URL-safe forms read the same bytes. */
    assert_int_equal(dec("Zm9vYg", out), 4);
    assert_memory_equal(out, "foob", 4);
    assert_int_equal(dec("-_8", out), 2);
    assert_memory_equal(out, "\xfb\xff", 2);
    assert_int_equal(dec("+/8=", out), 2);
    assert_memory_equal(out, "\xfb\xff", 2);
    /* Not base64: a stray character, one character too many, padding that does not fit. */
    assert_int_equal(dec("Zm9v!", out), -1);
    assert_int_equal(dec("Zm9vY", out), -1);
    assert_int_equal(dec("Zm9v=", out), -1);
    assert_int_equal(dec("Zg===", out), -1);
    assert_int_equal(dec("Z m9", out), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(encode),
        cmocka_unit_test(decode),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
