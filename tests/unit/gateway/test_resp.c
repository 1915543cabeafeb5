/* Upstream response heads (src/gateway/resp.c): each head parsed whole and fed one byte at a
 * time (as reads may bring it) gives the same answer: status, keep-alive, head length, the
 * fields; malformed and oversized heads refused. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "gateway/internal.h"

#define MAX_HEAD 256
#define MAX_HDRS 4

struct got {
    int rc, status, keep_alive;
    size_t head_len, num_hdrs;
    struct cn_http_header hdrs[MAX_HDRS];
};

/* Parses s whole (bytewise = 0) or growing one byte at a time from the same start. */
static void parse(const char *s, int bytewise, struct got *g)
{
    struct gw_resp r;
    gw_resp_init(&r, g->hdrs, MAX_HDRS, MAX_HEAD);
    size_t n = strlen(s);
    const char *reason = NULL;
    g->rc = CN_EAGAIN;
    for (size_t k = bytewise ? 1 : n; k <= n && g->rc == CN_EAGAIN; k++)
        g->rc = gw_resp_head(&r, s, k, &reason);
    if (g->rc != 0 && g->rc != CN_EAGAIN)
        assert_non_null(reason);
    g->status = r.status;
    g->keep_alive = r.keep_alive;
    g->head_len = r.head_len;
    g->num_hdrs = r.num_hdrs;
}

/* Both ways agree; returns the whole parse. */
static struct got both(const char *s)
{
    struct got a, b;
    parse(s, 0, &a);
    parse(s, 1, &b);
    assert_int_equal(a.rc, b.rc);
    if (a.rc == 0) {
        assert_int_equal(a.status, b.status);
        assert_int_equal(a.keep_alive, b.keep_alive);
        assert_int_equal(a.head_len, b.head_len);
        assert_int_equal(a.num_hdrs, b.num_hdrs);
    }
    return a;
}

static void assert_field(const struct got *g, size_t i, const char *name, const char *value)
{
    assert_true(i < g->num_hdrs);
    assert_true(cn_slice_eq(g->hdrs[i].name, cn_slice_of(name)));
    assert_true(cn_slice_eq(g->hdrs[i].value, cn_slice_of(value)));
}

static void test_valid(void **state)
{
    (void)state;
    const char *h = "HTTP/1.1 200 OK\r\nServer: x\r\nContent-Length:\t 6 \r\nX-E:\r\n\r\nhello\n";
    struct got g = both(h);
    assert_int_equal(g.rc, 0);
    assert_int_equal(g.status, 200);
    assert_int_equal(g.keep_alive, 1);
    assert_int_equal(g.head_len, strlen(h) - 6);
    assert_int_equal(g.num_hdrs, 3);
    assert_field(&g, 0, "Server", "x");
    assert_field(&g, 1, "Content-Length", "6"); /* OWS trimmed */
    assert_field(&g, 2, "X-E", "");
    /* An empty reason phrase, obs-text and HTAB in it. */
    assert_int_equal(both("HTTP/1.1 204 \r\n\r\n").rc, 0);
    assert_int_equal(both("HTTP/1.1 404 Not\tF\xc3\xa9und\r\n\r\n").status, 404);
    /* Without its empty line a head is not complete. */
    assert_int_equal(both("HTTP/1.1 200 OK\r\nA: b\r\n").rc, CN_EAGAIN);
}

static void test_keep_alive(void **state)
{
    (void)state;
    assert_int_equal(both("HTTP/1.1 200 OK\r\nConnection: foo, Close\r\n\r\n").keep_alive, 0);
    assert_int_equal(both("HTTP/1.1 200 OK\r\nProxy-Connection: close\r\n\r\n").keep_alive, 0);
    assert_int_equal(both("HTTP/1.1 200 OK\r\nConnection: closed\r\n\r\n").keep_alive, 1);
    assert_int_equal(both("HTTP/1.0 200 OK\r\n\r\n").keep_alive, 0);
    assert_int_equal(both("HTTP/1.0 200 OK\r\nConnection: Keep-Alive\r\n\r\n").keep_alive, 1);
}

static void test_refused(void **state)
{
    (void)state;
    static const char *bad[] = {
        "HTTP/1.1 200 OK\r\nA: b\r\n c\r\n\r\n", /* obs-fold */
        "HTTP/1.1 200 OK\r\nA : b\r\n\r\n",      /* space before the colon */
        "HTTP/1.1 200 OK\r\nA: b\nC: d\r\n\r\n", /* bare LF */
        "HTTP/1.1 200 OK\r\nA: b\rC: d\r\n\r\n", /* bare CR */
        "HTTP/1.1 200 OK\r\nA: \x01\r\n\r\n",    /* control byte in a value */
        "HTTP/1.1 200 OK\r\nA: \x7f\r\n\r\n",    /* DEL */
        "HTTP/1.1 200 OK\r\n:b\r\n\r\n",         /* empty name */
        "HTTP/1.1 200 OK\r\nA\r\n\r\n",          /* no colon */
        "HTTP/1.1 200 OK\r\nA(: b\r\n\r\n",      /* not a token */
        "HTTP/1.1 200 O\x01K\r\n\r\n",           /* control byte in the reason */
        "\r\nHTTP/1.1 200 OK\r\n\r\n",           /* empty line first */
        "HTTP/1.1 0200 OK\r\n\r\n",              /* four digits */
        "HTTP/1.1 20 OK\r\n\r\n",                /* two */
        "HTTP/1.1 099 x\r\n\r\n",                /* under 100 */
        "HTTP/1.1 600 x\r\n\r\n",                /* over 599 */
        "HTTP/1.1 200\r\n\r\n",                  /* no space after the code */
        "HTTP/2.0 200 OK\r\n\r\n",               /* not 1.x */
        "HTTP/1.2 200 OK\r\n\r\n",               /* no such version */
        "http/1.1 200 OK\r\n\r\n",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct got g = both(bad[i]);
        if (g.rc != CN_ESYNTAX)
            fail_msg("accepted or not refused as malformed: %zu", i);
    }
}

static void test_limits(void **state)
{
    (void)state;
    /* MAX_HEAD bytes of head: accepted; one more: refused, whole or while arriving. */
    char h[MAX_HEAD + 64];
    const char *pre = "HTTP/1.1 200 OK\r\nA: ";
    size_t fill = MAX_HEAD - strlen(pre) - 4;
    memcpy(h, pre, strlen(pre));
    memset(h + strlen(pre), 'v', fill);
    strcpy(h + strlen(pre) + fill, "\r\n\r\n");
    assert_int_equal(strlen(h), MAX_HEAD);
    assert_int_equal(both(h).rc, 0);
    memset(h + strlen(pre), 'v', fill + 1);
    strcpy(h + strlen(pre) + fill + 1, "\r\n\r\n");
    assert_int_equal(both(h).rc, CN_ELIMIT);
    h[MAX_HEAD + 1] = '\0'; /* not ended yet, already past the limit */
    assert_int_equal(both(h).rc, CN_ELIMIT);
    /* MAX_HDRS fields: accepted; one more: refused. */
    assert_int_equal(both("HTTP/1.1 200 OK\r\nA: 1\r\nB: 2\r\nC: 3\r\nD: 4\r\n\r\n").rc, 0);
    assert_int_equal(both("HTTP/1.1 200 OK\r\nA: 1\r\nB: 2\r\nC: 3\r\nD: 4\r\nE: 5\r\n\r\n").rc,
                     CN_ELIMIT);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_valid),
        cmocka_unit_test(test_keep_alive),
        cmocka_unit_test(test_refused),
        cmocka_unit_test(test_limits),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
