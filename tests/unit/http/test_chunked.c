#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "http/chunked.h"

static const struct cn_http_limits lim = {.max_header_bytes = 64, .max_headers = 2};

static enum cn_chunked_result decode(const char *s, size_t max, struct cn_buf *out, size_t *used,
                                     const char **reason)
{
    struct cn_chunked st;
    cn_chunked_init(&st);
    cn_buf_init(out, max);
    enum cn_chunked_result r = cn_chunked_decode(&st, s, strlen(s), out, &lim, used);
    *reason = st.reason;
    return r;
}

/* The same input fed one byte at a time gives the same result and data. */
static enum cn_chunked_result decode_bytewise(const char *s, size_t max, struct cn_buf *out)
{
    struct cn_chunked st;
    cn_chunked_init(&st);
    cn_buf_init(out, max);
    enum cn_chunked_result r = CN_CHUNKED_MORE;
    for (size_t i = 0; s[i] && r == CN_CHUNKED_MORE; i++) {
        size_t used;
        r = cn_chunked_decode(&st, s + i, 1, out, &lim, &used);
    }
    return r;
}

static void decodes(void **state)
{
    (void)state;
    static const char *const ok[] = {
        "5\r\nhello\r\n0\r\n\r\nNEXT",
        "5;a=1;b\r\nhello\r\n0\r\n\r\nNEXT",
        "5 ; a=\"q;\\\"x\" ;b=c\r\nhello\r\n0\r\n\r\nNEXT",
        "2\r\nhe\r\n3\r\nllo\r\n0\r\nX-T: v\r\nY: \r\n\r\nNEXT",
        "00005\r\nhello\r\n000\r\n\r\nNEXT",
    };
    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
        struct cn_buf out;
        size_t used;
        const char *reason;
        assert_int_equal(decode(ok[i], 100, &out, &used, &reason), CN_CHUNKED_DONE);
        assert_int_equal(out.len, 5);
        assert_memory_equal(out.ptr, "hello", 5);
        assert_int_equal(used, strlen(ok[i]) - 4); /* stops right before "NEXT" */
        cn_buf_release(&out);
        assert_int_equal(decode_bytewise(ok[i], 100, &out), CN_CHUNKED_DONE);
        assert_memory_equal(out.ptr, "hello", 5);
        cn_buf_release(&out);
    }
}

static void rejects(void **state)
{
    (void)state;
    static const char *const badin[] = {
        "5\r\nhelloXX0\r\n\r\n",  /* data not followed by CRLF */
        "5\r\nhello\rX0\r\n\r\n", /* CR then not LF */
        "5\r\nhelloX\n0\r\n\r\n", /* X LF */
        "5\nhello\r\n0\r\n\r\n",  /* bare LF after the size */
        "5\r\nhello\r\n0\r\n\n",  /* bare LF at the end */
        "\r\nhello\r\n0\r\n\r\n", /* no size */
        "x\r\n",                  /* not hex */
        "-5\r\n",                 /* sign */
        "0x5\r\n",                /* prefix */
        "11111111111111111\r\n",  /* 17 hex digits */
        "5;a\x01\r\n",            /* control in an extension */
        "5;a@b\r\n",              /* not a token character */
        "0\r\n X: 1\r\n\r\n",     /* obs-fold in trailers */
        "0\r\nX : 1\r\n\r\n",     /* space before the colon */
        "0\r\nX: 1\n\r\n",        /* bare LF in a trailer */
    };
    for (size_t i = 0; i < sizeof(badin) / sizeof(badin[0]); i++) {
        struct cn_buf out;
        size_t used;
        const char *reason;
        enum cn_chunked_result r = decode(badin[i], 100, &out, &used, &reason);
        if (r != CN_CHUNKED_BAD)
            fail_msg("case %zu: got %d", i, (int)r);
        assert_non_null(reason);
        cn_buf_release(&out);
        assert_int_equal(decode_bytewise(badin[i], 100, &out), CN_CHUNKED_BAD);
        cn_buf_release(&out);
    }
}

static void limits(void **state)
{
    (void)state;
    struct cn_buf out;
    size_t used;
    const char *reason;
    /* Exactly the body limit: fine; one byte more: 413 as soon as the size is read. */
    assert_int_equal(decode("5\r\nhello\r\n0\r\n\r\n", 5, &out, &used, &reason), CN_CHUNKED_DONE);
    cn_buf_release(&out);
    assert_int_equal(decode("3\r\nhel\r\n3\r\n", 5, &out, &used, &reason), CN_CHUNKED_TOO_LARGE);
    cn_buf_release(&out);
    /* Two trailers pass, a third is over max_headers; a trailer section past 64 bytes too. */
    assert_int_equal(decode("0\r\nA: 1\r\nB: 2\r\n\r\n", 5, &out, &used, &reason), CN_CHUNKED_DONE);
    cn_buf_release(&out);
    assert_int_equal(decode("0\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n", 5, &out, &used, &reason),
                     CN_CHUNKED_TRAILERS_TOO_LARGE);
    cn_buf_release(&out);
    assert_int_equal(decode("0\r\nA: 0123456789012345678901234567890123456789012345678901234567890"
                            "\r\n\r\n",
                            5, &out, &used, &reason),
                     CN_CHUNKED_TRAILERS_TOO_LARGE);
    cn_buf_release(&out);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(decodes),
        cmocka_unit_test(rejects),
        cmocka_unit_test(limits),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
