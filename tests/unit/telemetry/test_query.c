/* Query layer parsers and matchers: predicates, times, durations, names, full-text terms. */
#include "telemetry/query.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

static char err[256];

static struct cn_pred pred(const char *text)
{
    struct cn_pred p;
    if (cn_pred_parse(&p, cn_slice_of(text), err, sizeof(err)) != 0)
        fail_msg("parse %s: %s", text, err);
    return p;
}

static void pred_err(const char *text, int want, const char *msg)
{
    struct cn_pred p;
    assert_int_equal(cn_pred_parse(&p, cn_slice_of(text), err, sizeof(err)), want);
    if (strncmp(err, msg, strlen(msg)) != 0)
        fail_msg("%s: got '%s', want '%s...'", text, err, msg);
}

#define KV_S(k, v)                                                                                 \
    {                                                                                              \
        CN_SLICE_LIT(k),                                                                           \
        {                                                                                          \
            CN_VAL_STR,                                                                            \
            {                                                                                      \
                .s = CN_SLICE_LIT(v)                                                               \
            }                                                                                      \
        }                                                                                          \
    }
#define KV_I(k, v)                                                                                 \
    {                                                                                              \
        CN_SLICE_LIT(k),                                                                           \
        {                                                                                          \
            CN_VAL_INT,                                                                            \
            {                                                                                      \
                .i = (v)                                                                           \
            }                                                                                      \
        }                                                                                          \
    }
#define KV_D(k, v)                                                                                 \
    {                                                                                              \
        CN_SLICE_LIT(k),                                                                           \
        {                                                                                          \
            CN_VAL_DOUBLE,                                                                         \
            {                                                                                      \
                .d = (v)                                                                           \
            }                                                                                      \
        }                                                                                          \
    }
#define KV_B(k, v)                                                                                 \
    {                                                                                              \
        CN_SLICE_LIT(k),                                                                           \
        {                                                                                          \
            CN_VAL_BOOL,                                                                           \
            {                                                                                      \
                .b = (v)                                                                           \
            }                                                                                      \
        }                                                                                          \
    }

static struct cn_kv span_kv[] = {KV_S("http.method", "GET"), KV_I("http.status_code", 503),
                                 KV_D("ratio", 0.25),        KV_B("retry", 1),
                                 KV_S("num.str", "42"),      KV_S("env", "span")};
static struct cn_kv res_kv[] = {KV_S("service.name", "checkout"), KV_S("env", "prod")};
static struct cn_kvs span_attrs = {span_kv, CN_ARRAY_LEN(span_kv), 0};
static struct cn_kvs res_attrs = {res_kv, CN_ARRAY_LEN(res_kv), 0};

static int matches(const char *text)
{
    struct cn_pred p = pred(text);
    const struct cn_kvs *lists[] = {&span_attrs, &res_attrs};
    int m = cn_pred_match(&p, lists, 2);
    cn_pred_release(&p);
    return m;
}

static void test_pred_parse(void **state)
{
    (void)state;
    struct cn_pred p = pred("a=b=c");
    assert_int_equal(p.op, CN_PRED_EQ);
    assert_string_equal(p.key, "a");
    assert_string_equal(p.value, "b=c");
    cn_pred_release(&p);
    p = pred("k!=v");
    assert_int_equal(p.op, CN_PRED_NE);
    assert_string_equal(p.key, "k");
    cn_pred_release(&p);
    p = pred("k=~^a.*$");
    assert_int_equal(p.op, CN_PRED_RE);
    assert_string_equal(p.value, "^a.*$");
    cn_pred_release(&p);
    p = pred("n>-1.5e3");
    assert_int_equal(p.op, CN_PRED_GT);
    assert_true(p.num == -1500.0);
    cn_pred_release(&p);
    p = pred("n<7");
    assert_int_equal(p.op, CN_PRED_LT);
    cn_pred_release(&p);
    p = pred("k="); /* an empty value is a value */
    assert_int_equal(p.value_len, 0);
    cn_pred_release(&p);
    pred_err("", CN_ESYNTAX, "a predicate needs a key");
    pred_err("=v", CN_ESYNTAX, "a predicate needs a key");
    pred_err("novalue", CN_ESYNTAX, "a predicate needs an operator");
    pred_err("n>abc", CN_ESYNTAX, "the value of a > or < predicate must be a number");
    pred_err("n>inf", CN_ESYNTAX, "the value of a > or < predicate");
    pred_err("n<1e999", CN_ESYNTAX, "the value of a > or < predicate");
    pred_err("k=~(", CN_ESYNTAX, "regular expression does not compile");
    /* Refused before regcomp (base/regex.h): 2^10 elements, and a back-reference. */
    pred_err("k=~a++++++++++", CN_ELIMIT, "regular expression too large");
    pred_err("k=~(a)\\1", CN_ESYNTAX, "back-references");
    cn_pred_release(&p);
}

static void test_pred_limits(void **state)
{
    (void)state;
    char buf[CN_QUERY_MAX_VALUE_BYTES + 16];
    /* The regex length limit at its edge. */
    memcpy(buf, "k=~", 3);
    memset(buf + 3, 'x', CN_QUERY_MAX_REGEX_BYTES);
    buf[3 + CN_QUERY_MAX_REGEX_BYTES] = '\0';
    struct cn_pred p = pred(buf);
    cn_pred_release(&p);
    buf[3 + CN_QUERY_MAX_REGEX_BYTES] = 'x';
    buf[4 + CN_QUERY_MAX_REGEX_BYTES] = '\0';
    pred_err(buf, CN_ELIMIT, "regular expression too long");
    /* Key length at its edge. */
    memset(buf, 'k', CN_QUERY_MAX_KEY_BYTES);
    strcpy(buf + CN_QUERY_MAX_KEY_BYTES, "=v");
    p = pred(buf);
    cn_pred_release(&p);
    memset(buf, 'k', CN_QUERY_MAX_KEY_BYTES + 1);
    strcpy(buf + CN_QUERY_MAX_KEY_BYTES + 1, "=v");
    pred_err(buf, CN_ELIMIT, "predicate key or value too long");
    /* A NUL inside is refused. */
    struct cn_slice s = {"a=b\0c", 5};
    assert_int_equal(cn_pred_parse(&p, s, err, sizeof(err)), CN_ESYNTAX);
}

static void test_pred_match(void **state)
{
    (void)state;
    assert_true(matches("http.method=GET"));
    assert_false(matches("http.method=get"));
    assert_true(matches("http.status_code=503")); /* ints as decimal text */
    assert_true(matches("ratio=0.25"));           /* doubles in shortest form */
    assert_true(matches("retry=true"));
    assert_true(matches("service.name=checkout")); /* resource attributes */
    assert_true(matches("env=span"));              /* the span's own wins */
    assert_false(matches("env=prod"));
    assert_true(matches("http.method!=POST"));
    assert_true(matches("absent!=x")); /* absent: != holds */
    assert_false(matches("http.method!=GET"));
    assert_true(matches("http.method=~^G"));
    assert_true(matches("http.method=~E")); /* unanchored */
    assert_false(matches("http.method=~^E"));
    assert_true(matches("http.status_code=~^5[0-9]{2}$"));
    assert_false(matches("absent=~.*"));
    assert_true(matches("http.status_code>500"));
    assert_false(matches("http.status_code>503"));
    assert_true(matches("http.status_code<504"));
    assert_true(matches("ratio<0.3"));
    assert_true(matches("num.str>41.9")); /* a string that reads whole as a number */
    assert_false(matches("http.method>1"));
    assert_false(matches("absent<1"));
}

static void test_val_text(void **state)
{
    (void)state;
    char b[64];
    struct cn_val v = {CN_VAL_DOUBLE, {.d = 0.1}};
    assert_int_equal(cn_val_text(&v, b, sizeof(b)), 3);
    assert_string_equal(b, "0.1");
    v.u.d = 1e21;
    cn_val_text(&v, b, sizeof(b));
    assert_string_equal(b, "1e+21");
    v = (struct cn_val){CN_VAL_INT, {.i = -9223372036854775807LL - 1}};
    cn_val_text(&v, b, sizeof(b));
    assert_string_equal(b, "-9223372036854775808");
    v = (struct cn_val){CN_VAL_BYTES, {.s = CN_SLICE_LIT("x")}};
    assert_int_equal(cn_val_text(&v, b, sizeof(b)), -1);
    v = (struct cn_val){CN_VAL_STR, {.s = CN_SLICE_LIT("abcdef")}};
    assert_int_equal(cn_val_text(&v, b, 4), 6); /* cut, length of the whole */
    assert_string_equal(b, "abc");
}

static uint64_t t_ok(const char *s)
{
    uint64_t v = 0;
    if (cn_query_parse_time(cn_slice_of(s), &v) != 0)
        fail_msg("time %s refused", s);
    return v;
}

static void t_bad(const char *s)
{
    uint64_t v;
    if (cn_query_parse_time(cn_slice_of(s), &v) == 0)
        fail_msg("time %s accepted", s);
}

static void test_time(void **state)
{
    (void)state;
    assert_int_equal(t_ok("1714564800s"), 1714564800000000000ull);
    assert_int_equal(t_ok("1714564800123ms"), 1714564800123000000ull);
    assert_int_equal(t_ok("1714564800123456us"), 1714564800123456000ull);
    assert_int_equal(t_ok("1714564800123456789ns"), 1714564800123456789ull);
    assert_int_equal(t_ok("2024-05-01T12:00:00Z"), 1714564800000000000ull);
    assert_int_equal(t_ok("2024-05-01t12:00:00z"), 1714564800000000000ull);
    assert_int_equal(t_ok("2024-05-01T12:00:00.5Z"), 1714564800500000000ull);
    assert_int_equal(t_ok("2024-05-01T12:00:00.123456789123Z"), 1714564800123456789ull);
    assert_int_equal(t_ok("2024-05-01T14:00:00+02:00"), 1714564800000000000ull);
    assert_int_equal(t_ok("2024-05-01T07:30:00-04:30"), 1714564800000000000ull);
    assert_int_equal(t_ok("2024-02-29T00:00:00Z"), 1709164800000000000ull); /* leap day */
    assert_int_equal(t_ok("1970-01-01T00:00:00Z"), 0);
    assert_int_equal(t_ok("0s"), 0);
    assert_int_equal(t_ok("18446744073s"), 18446744073000000000ull); /* the edge */
    t_bad("18446744074s");                                           /* past 2^64 ns */
    t_bad("18446744073709551616ns");
    t_bad("1714564800"); /* no unit */
    t_bad("1714564800m");
    t_bad("s");
    t_bad("");
    t_bad("-5s");
    t_bad("2023-02-29T00:00:00Z");
    t_bad("2024-13-01T00:00:00Z");
    t_bad("2024-05-01T24:00:00Z");
    t_bad("2024-05-01T12:00:00");   /* no zone */
    t_bad("2024-05-01T12:00:00.Z"); /* no fraction digits */
    t_bad("2024-05-01T12:00:00+2:00");
    t_bad("2024-05-01 12:00:00Z");
    t_bad("1969-12-31T23:59:59Z"); /* before the epoch */
}

static uint64_t d_ok(const char *s)
{
    uint64_t v = 0;
    if (cn_query_parse_duration(cn_slice_of(s), &v) != 0)
        fail_msg("duration %s refused", s);
    return v;
}

static void d_bad(const char *s)
{
    uint64_t v;
    if (cn_query_parse_duration(cn_slice_of(s), &v) == 0)
        fail_msg("duration %s accepted", s);
}

static void test_duration(void **state)
{
    (void)state;
    assert_int_equal(d_ok("10ns"), 10);
    assert_int_equal(d_ok("1.5us"), 1500);
    assert_int_equal(d_ok("2\xc2\xb5s"), 2000);
    assert_int_equal(d_ok("250ms"), 250000000);
    assert_int_equal(d_ok("1.5s"), 1500000000);
    assert_int_equal(d_ok(".5s"), 500000000);
    assert_int_equal(d_ok("2m"), 120000000000ull);
    assert_int_equal(d_ok("1h"), 3600000000000ull);
    assert_int_equal(d_ok("0s"), 0);
    assert_int_equal(d_ok("18446744073709551615ns"), UINT64_MAX);
    d_bad("18446744073709551616ns");
    d_bad("5124096h"); /* past 2^64 ns */
    d_bad("5");
    d_bad("1x");
    d_bad("1.s");
    d_bad("ms");
    d_bad("-1s");
    d_bad("1 s");
    d_bad("");
}

static void test_names(void **state)
{
    (void)state;
    int v;
    uint8_t sev;
    assert_int_equal(cn_query_parse_status(cn_slice_of("ERROR"), &v), 0);
    assert_int_equal(v, CN_STATUS_ERROR);
    assert_int_equal(cn_query_parse_status(cn_slice_of("STATUS_CODE_OK"), &v), 0);
    assert_int_equal(v, CN_STATUS_OK);
    assert_int_equal(cn_query_parse_status(cn_slice_of("fine"), &v), CN_ESYNTAX);
    assert_int_equal(cn_query_parse_kind(cn_slice_of("Server"), &v), 0);
    assert_int_equal(v, CN_KIND_SERVER);
    assert_int_equal(cn_query_parse_kind(cn_slice_of("SPAN_KIND_CONSUMER"), &v), 0);
    assert_int_equal(v, CN_KIND_CONSUMER);
    assert_int_equal(cn_query_parse_kind(cn_slice_of("SPAN_KIND_"), &v), CN_ESYNTAX);
    assert_string_equal(cn_query_kind_name(3), "client");
    assert_string_equal(cn_query_kind_name(99), "unspecified");
    assert_int_equal(cn_query_parse_severity(cn_slice_of("warning"), &sev), 0);
    assert_int_equal(sev, 13);
    assert_int_equal(cn_query_parse_severity(cn_slice_of("24"), &sev), 0);
    assert_int_equal(sev, 24);
    assert_int_equal(cn_query_parse_severity(cn_slice_of("25"), &sev), CN_ESYNTAX);
    assert_int_equal(cn_query_parse_severity(cn_slice_of("0"), &sev), CN_ESYNTAX);
}

static int log_has(const char *body, const char *const *terms, size_t n)
{
    struct cn_slice t[8];
    for (size_t i = 0; i < n; i++)
        t[i] = cn_slice_of(terms[i]);
    struct cn_log l;
    memset(&l, 0, sizeof(l));
    l.body.type = CN_VAL_STR;
    l.body.u.s = cn_slice_of(body);
    struct cn_log_query q;
    memset(&q, 0, sizeof(q));
    q.terms = t;
    q.num_terms = n;
    return cn_query_log_matches(&q, &l);
}

static void test_terms(void **state)
{
    (void)state;
    const char *body = "Payment FAILED: connection refused (host=db-1, retry_count=3)";
    assert_true(log_has(body, (const char *[]){"failed"}, 1));
    assert_true(log_has(body, (const char *[]){"connection refused"}, 1));
    assert_true(log_has(body, (const char *[]){"CONNECTION", "db"}, 2));
    assert_true(log_has(body, (const char *[]){"retry_count"}, 1));
    assert_true(log_has(body, (const char *[]){"db-1"}, 1)); /* tokens db, 1 in a run */
    assert_false(log_has(body, (const char *[]){"refused connection"}, 1));
    assert_false(log_has(body, (const char *[]){"conn"}, 1)); /* whole tokens only */
    assert_false(log_has(body, (const char *[]){"failed", "timeout"}, 2));
    assert_true(log_has(body, (const char *[]){"  "}, 1)); /* no token: nothing required */
    assert_true(log_has("caf\xc3\xa9 ouvert", (const char *[]){"caf\xc3\xa9"}, 1));
    assert_false(log_has("", (const char *[]){"x"}, 1));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_pred_parse), cmocka_unit_test(test_pred_limits),
        cmocka_unit_test(test_pred_match), cmocka_unit_test(test_val_text),
        cmocka_unit_test(test_time),       cmocka_unit_test(test_duration),
        cmocka_unit_test(test_names),      cmocka_unit_test(test_terms),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
