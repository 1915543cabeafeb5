#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "http/head.h"

static struct cn_http_limits lim = {
    .max_url_bytes = 16,
    .max_header_bytes = 64,
    .max_headers = 3,
};

static enum cn_head_result scan_all(const char *s, struct cn_head_scan *st)
{
    cn_head_scan_init(st);
    return cn_head_scan(st, s, strlen(s), &lim);
}

/* Feeding one byte at a time gives the same answer as feeding everything. */
static enum cn_head_result scan_bytewise(const char *s, struct cn_head_scan *st)
{
    cn_head_scan_init(st);
    size_t n = strlen(s);
    enum cn_head_result r = CN_HEAD_MORE;
    for (size_t i = 1; i <= n && r == CN_HEAD_MORE; i++)
        r = cn_head_scan(st, s, i, &lim);
    return r;
}

static void accepts_valid(void **state)
{
    (void)state;
    struct cn_head_scan st;
    const char *req = "GET /a?b=c HTTP/1.1\r\nHost: x\r\nA: \t1\r\n\r\nBODY";
    assert_int_equal(scan_all(req, &st), CN_HEAD_DONE);
    assert_int_equal(st.pos, strlen(req) - 4);
    assert_int_equal(scan_bytewise(req, &st), CN_HEAD_DONE);
    assert_int_equal(st.pos, strlen(req) - 4);
    assert_int_equal(scan_all("GET / HTTP/1.1\r\nHost: x\r\n", &st), CN_HEAD_MORE);
    /* Empty lines before the request line are skipped, not counted. */
    assert_int_equal(scan_all("\r\n\r\nGET / HTTP/1.1\r\n\r\n", &st), CN_HEAD_DONE);
    assert_int_equal(st.skip, 4);
}

static void rejects_smuggling_shapes(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "GET / HTTP/1.1\nHost: x\r\n\r\n",       /* bare LF after the request line */
        "GET / HTTP/1.1\r\nHost: x\n\r\n",       /* bare LF after a field */
        "GET / HTTP/1.1\r\nHost: x\r\n\n",       /* bare LF ending the head */
        "GET / HTTP/1.1\r\nA: 1\r\n  2\r\n\r\n", /* obs-fold */
        "GET / HTTP/1.1\r\nA: 1\r\n\t2\r\n\r\n", /* obs-fold with a tab */
        "GET / HTTP/1.1\r\nHost : x\r\n\r\n",    /* space before the colon */
        "GET / HTTP/1.1\r\nX Y: 1\r\n\r\n",      /* space in a name */
        "GET / HTTP/1.1\r\nX(: 1\r\n\r\n",       /* separator in a name */
        "GET / HTTP/1.1\r\n: 1\r\n\r\n",         /* empty name */
        "GET / HTTP/1.1\r\nA: 1\x01\r\n\r\n",    /* control character in a value */
        "GET / HTTP/1.1\r\nA: 1\rB: 2\r\n\r\n",  /* CR without LF */
        "GET  / HTTP/1.1\r\n\r\n",               /* two spaces */
        "GET / HTTP/1.1 x\r\n\r\n",              /* three parts and more */
        "GET /\x7f HTTP/1.1\r\n\r\n",            /* DEL in the target */
        "\nGET / HTTP/1.1\r\n\r\n",              /* bare LF before the request line */
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct cn_head_scan st;
        enum cn_head_result r = scan_all(bad[i], &st);
        if (r != CN_HEAD_BAD)
            fail_msg("case %zu: got %d", i, (int)r);
        assert_non_null(st.reason);
        assert_int_equal(scan_bytewise(bad[i], &st), CN_HEAD_BAD);
    }
}

static void url_limit_edge(void **state)
{
    (void)state;
    struct cn_head_scan st;
    /* 16 bytes of target: accepted. */
    assert_int_equal(scan_all("GET /234567890123456 HTTP/1.1\r\n\r\n", &st), CN_HEAD_DONE);
    /* 17: 414, even before the line ends. */
    assert_int_equal(scan_all("GET /2345678901234567", &st), CN_HEAD_URL_TOO_LONG);
    assert_int_equal(scan_bytewise("GET /2345678901234567 HTTP/1.1\r\n\r\n", &st),
                     CN_HEAD_URL_TOO_LONG);
}

static void header_limits_edge(void **state)
{
    (void)state;
    struct cn_head_scan st;
    /* Exactly 64 bytes of head: accepted; 65: 431. */
    char head[128];
    const char *pre = "GET / HTTP/1.1\r\nA: ";
    size_t fill = 64 - strlen(pre) - 4;
    snprintf(head, sizeof(head), "%s%.*s\r\n\r\n", pre, (int)fill,
             "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx");
    assert_int_equal(strlen(head), 64);
    assert_int_equal(scan_all(head, &st), CN_HEAD_DONE);
    snprintf(head, sizeof(head), "%s%.*s\r\n\r\n", pre, (int)fill + 1,
             "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx");
    assert_int_equal(scan_all(head, &st), CN_HEAD_TOO_LARGE);
    /* The same with empty lines skipped first (they do not count), and with the limit met
     * inside a field name: whole or byte by byte, the same answers. */
    const char *xs = "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx";
    snprintf(head, sizeof(head), "\r\n\r\n%s%.*s\r\n\r\n", pre, (int)fill, xs);
    assert_int_equal(scan_all(head, &st), CN_HEAD_DONE);
    assert_int_equal(st.pos, 4 + 64);
    assert_int_equal(scan_bytewise(head, &st), CN_HEAD_DONE);
    snprintf(head, sizeof(head), "\r\n\r\n%s%.*s\r\n\r\n", pre, (int)fill + 1, xs);
    assert_int_equal(scan_all(head, &st), CN_HEAD_TOO_LARGE);
    assert_int_equal(scan_bytewise(head, &st), CN_HEAD_TOO_LARGE);
    snprintf(head, sizeof(head), "GET / HTTP/1.1\r\n%.*s: 1\r\n\r\n", 64 - 16 - 7, xs);
    assert_int_equal(scan_all(head, &st), CN_HEAD_DONE);
    snprintf(head, sizeof(head), "GET / HTTP/1.1\r\n%.*s: 1\r\n\r\n", 64 - 16 - 6, xs);
    assert_int_equal(scan_all(head, &st), CN_HEAD_TOO_LARGE);
    assert_int_equal(scan_bytewise(head, &st), CN_HEAD_TOO_LARGE);
    snprintf(head, sizeof(head), "GET / HTTP/1.1\r\n%.*s", 64 - 16 + 1, xs);
    assert_int_equal(scan_all(head, &st), CN_HEAD_TOO_LARGE);
    assert_int_equal(st.pos, 64);
    /* Three fields: accepted; four: 431. */
    assert_int_equal(scan_all("GET / HTTP/1.1\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n", &st), CN_HEAD_DONE);
    assert_int_equal(scan_all("GET / HTTP/1.1\r\nA: 1\r\nB: 2\r\nC: 3\r\nD: 4\r\n\r\n", &st),
                     CN_HEAD_TOO_LARGE);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(accepts_valid),
        cmocka_unit_test(rejects_smuggling_shapes),
        cmocka_unit_test(url_limit_edge),
        cmocka_unit_test(header_limits_edge),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
