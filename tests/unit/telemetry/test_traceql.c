#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "telemetry/traceql.h"

static char err[256];
static size_t off;

static struct cn_tql_query *parse_ok(const char *text)
{
    struct cn_tql_query *q = NULL;
    int rc = cn_tql_parse(&q, cn_slice_of(text), err, sizeof(err), &off);
    if (rc != 0)
        fail_msg("'%s' did not parse: %s", text, err);
    assert_non_null(q);
    return q;
}

/* Parses text expecting failure rc at byte offset at, with msg inside the message. */
static void parse_bad(const char *text, int rc, size_t at, const char *msg)
{
    struct cn_tql_query *q = (void *)1;
    off = 999;
    int got = cn_tql_parse(&q, cn_slice_of(text), err, sizeof(err), &off);
    if (got != rc || off != at || !strstr(err, msg))
        fail_msg("'%s': rc %d off %zu err '%s'; wanted rc %d off %zu '%s'", text, got, off, err, rc,
                 at, msg);
    assert_null(q);
    char prefix[32];
    snprintf(prefix, sizeof(prefix), "at offset %zu: ", at);
    assert_int_equal(strncmp(err, prefix, strlen(prefix)), 0);
}

/* A span of service "checkout" with a few attributes. */
static struct cn_kv span_kv[4];
static struct cn_kv res_kv[2];
static struct cn_resource res;
static struct cn_span span;

static int setup(void **state)
{
    (void)state;
    memset(&span, 0, sizeof(span));
    span_kv[0] = (struct cn_kv){CN_SLICE_LIT("http.route"),
                                {.type = CN_VAL_STR, .u.s = CN_SLICE_LIT("/api/cart/{id}")}};
    span_kv[1] =
        (struct cn_kv){CN_SLICE_LIT("http.response.status_code"), {.type = CN_VAL_INT, .u.i = 502}};
    span_kv[2] = (struct cn_kv){CN_SLICE_LIT("sample.rate"), {.type = CN_VAL_DOUBLE, .u.d = 0.25}};
    span_kv[3] = (struct cn_kv){CN_SLICE_LIT("retry"), {.type = CN_VAL_BOOL, .u.b = 1}};
    res_kv[0] = (struct cn_kv){CN_SLICE_LIT("service.name"),
                               {.type = CN_VAL_STR, .u.s = CN_SLICE_LIT("checkout")}};
    res_kv[1] = (struct cn_kv){CN_SLICE_LIT("deployment.environment"),
                               {.type = CN_VAL_STR, .u.s = CN_SLICE_LIT("staging")}};
    res.attrs = (struct cn_kvs){res_kv, 2, 0};
    res.service = CN_SLICE_LIT("checkout");
    span.attrs = (struct cn_kvs){span_kv, 4, 0};
    span.resource = &res;
    span.name = CN_SLICE_LIT("GET /api/cart/{id}");
    span.kind = CN_KIND_SERVER;
    span.status_code = CN_STATUS_ERROR;
    span.status_message = CN_SLICE_LIT("upstream failed");
    span.start_ns = 1000000000;
    span.end_ns = 1000000000 + 150000000; /* 150 ms */
    return 0;
}

static int matches(const char *text)
{
    struct cn_tql_query *q = parse_ok(text);
    unsigned bits = cn_tql_match_bits(q, &span);
    int m = bits == cn_tql_all_bits(q);
    cn_tql_free(q);
    return m;
}

static void test_matching(void **state)
{
    (void)state;
    assert_true(matches("{}"));
    assert_true(matches("{ span.http.route = \"/api/cart/{id}\" }"));
    assert_false(matches("{ span.http.route = \"/api/cart\" }"));
    assert_true(matches("{ span.http.route != \"/api/cart\" }"));
    /* != needs the attribute to exist. */
    assert_false(matches("{ span.missing != \"x\" }"));
    assert_true(matches("{ .http.route =~ \"/api/.*\" }"));
    /* Anchored: a substring alone does not match. */
    assert_false(matches("{ .http.route =~ \"cart\" }"));
    assert_true(matches("{ .http.route !~ \"cart\" }"));
    assert_true(matches("{ resource.service.name = \"checkout\" }"));
    assert_true(matches("{ .service.name = \"checkout\" }"));
    assert_false(matches("{ span.service.name = \"checkout\" }"));
    assert_true(matches("{ resource.deployment.environment =~ \"stag.*\" }"));
    assert_true(matches("{ span.http.response.status_code >= 500 }"));
    assert_false(matches("{ span.http.response.status_code < 500 }"));
    assert_true(matches("{ span.http.response.status_code = 502 }"));
    assert_true(matches("{ span.sample.rate < 0.5 && span.sample.rate > 0.2 }"));
    assert_true(matches("{ span.retry = true }"));
    assert_false(matches("{ span.retry = false }"));
    /* A string does not equal a number of the same digits. */
    assert_false(matches("{ span.http.response.status_code = \"502\" }"));
    assert_true(matches("{ duration > 100ms }"));
    assert_true(matches("{ duration >= 150ms && duration <= 0.15s }"));
    assert_false(matches("{ duration > 1.2s }"));
    assert_true(matches("{ duration = 150000us }"));
    assert_true(matches("{ status = error }"));
    assert_false(matches("{ status = ok }"));
    assert_true(matches("{ status != unset }"));
    assert_true(matches("{ kind = server }"));
    assert_true(matches("{ span:kind != client }"));
    assert_true(matches("{ name = \"GET /api/cart/{id}\" }"));
    assert_true(matches("{ span:name =~ \"GET .*\" }"));
    assert_true(matches("{ statusMessage = \"upstream failed\" }"));
    assert_true(matches("{ span.\"http.route\" = \"/api/cart/{id}\" }"));
    assert_true(matches("{ status = error } && { resource.service.name = \"checkout\" }"));
    assert_false(matches("{ status = error } && { resource.service.name = \"cart\" }"));
    assert_true(matches("{status=error&&kind=server}"));
}

static void test_trace_bits(void **state)
{
    (void)state;
    struct cn_tql_query *q = parse_ok("{ kind = server } && { kind = client }");
    assert_int_equal(q->num_spansets, 2);
    assert_int_equal(cn_tql_all_bits(q), 3);
    assert_int_equal(cn_tql_match_bits(q, &span), 1);
    struct cn_span client = span;
    client.kind = CN_KIND_CLIENT;
    assert_int_equal(cn_tql_match_bits(q, &client), 2);
    assert_int_equal(cn_tql_match_bits(q, &span) | cn_tql_match_bits(q, &client), 3);
    cn_tql_free(q);
}

static void test_values(void **state)
{
    (void)state;
    struct cn_tql_query *q = parse_ok("{ duration > 1.5s && .a = \"x\\\"y\\\\z\\n\" && .b = -7 }");
    assert_int_equal(q->spansets[0].num_conds, 3);
    assert_int_equal(q->spansets[0].conds[0].field, CN_TQL_DURATION);
    assert_int_equal(q->spansets[0].conds[0].op, CN_TQL_GT);
    assert_int_equal(q->spansets[0].conds[0].i, 1500000000);
    assert_string_equal(q->spansets[0].conds[1].key, "a");
    assert_string_equal(q->spansets[0].conds[1].str, "x\"y\\z\n");
    assert_int_equal(q->spansets[0].conds[2].vtype, CN_TQL_V_INT);
    assert_int_equal(q->spansets[0].conds[2].i, -7);
    cn_tql_free(q);
    q = parse_ok("{ duration < 2m && duration > 10ns && duration > 5\xc2\xb5s && duration < 1h }");
    assert_int_equal(q->spansets[0].conds[0].i, 120000000000LL);
    assert_int_equal(q->spansets[0].conds[1].i, 10);
    assert_int_equal(q->spansets[0].conds[2].i, 5000);
    assert_int_equal(q->spansets[0].conds[3].i, 3600000000000LL);
    cn_tql_free(q);
}

static void test_errors(void **state)
{
    (void)state;
    parse_bad("", CN_ESYNTAX, 0, "expected '{', found end of query");
    parse_bad("  span.a = 1", CN_ESYNTAX, 2, "expected '{'");
    parse_bad("{ span.a = 1", CN_ESYNTAX, 0, "'{' not closed");
    parse_bad("{ span.a 1 }", CN_ESYNTAX, 9, "expected an operator");
    parse_bad("{ span.a = }", CN_ESYNTAX, 11, "expected a value");
    parse_bad("{ span. = 1 }", CN_ESYNTAX, 7, "expected an attribute name");
    parse_bad("{ foo = 1 }", CN_ESYNTAX, 2, "unknown field 'foo'");
    parse_bad("{ .a = \"abc }", CN_ESYNTAX, 7, "string not closed");
    parse_bad("{ .a = \"a\\qb\" }", CN_ESYNTAX, 9, "unknown escape");
    parse_bad("{ .a =~ \"(unclosed\" }", CN_ESYNTAX, 8, "regular expression does not compile");
    parse_bad("{ .a =~ \"(x{40}){40}\" }", CN_ELIMIT, 8, "regular expression too large");
    parse_bad("{ .a =~ 5 }", CN_ESYNTAX, 8, "take a quoted regular expression");
    parse_bad("{ duration > 100 }", CN_ESYNTAX, 13, "duration takes a duration");
    parse_bad("{ duration > 100xs }", CN_ESYNTAX, 16, "unknown duration unit 'xs'");
    parse_bad("{ duration =~ \"1\" }", CN_ESYNTAX, 14, "duration takes a duration");
    parse_bad("{ status = bad }", CN_ESYNTAX, 11, "expected a value");
    parse_bad("{ status = \"error\" }", CN_ESYNTAX, 11, "status takes error, ok or unset");
    parse_bad("{ status > error }", CN_ESYNTAX, 9, "status takes = or !=");
    parse_bad("{ kind = error }", CN_ESYNTAX, 9, "kind takes server");
    parse_bad("{ name = 5 }", CN_ESYNTAX, 9, "name takes a quoted string");
    parse_bad("{ name > \"a\" }", CN_ESYNTAX, 7, "name takes =, !=, =~ or !~");
    parse_bad("{ .a = true && .b > false }", CN_ESYNTAX, 18, "booleans take = or !=");
    parse_bad("{ .a = 1 || .b = 2 }", CN_ESYNTAX, 9, "'||' is not supported");
    parse_bad("{ .a = 1 } || { .b = 2 }", CN_ESYNTAX, 11, "'||' is not supported");
    parse_bad("{ .a = 1 } | count() > 2", CN_ESYNTAX, 11, "pipelines");
    parse_bad("{ .a = 1 } { .b = 2 }", CN_ESYNTAX, 11, "expected '&&' or the end");
    parse_bad("{ .a = 1 } &&", CN_ESYNTAX, 13, "expected '{', found end of query");
    parse_bad("{ .a = 1 .b = 2 }", CN_ESYNTAX, 9, "expected '&&' or '}'");
    parse_bad("{ .a = 99999999999999999999 }", CN_ESYNTAX, 7, "integer out of range");
    parse_bad("{ .a = 1. }", CN_ESYNTAX, 7, "malformed number");
    parse_bad("{ .a = \"\x00\" }", CN_ESYNTAX, 7, "string not closed"); /* NUL ends the C string */

    /* Limits. */
    char big[CN_TQL_MAX_QUERY + 2];
    memset(big, ' ', sizeof(big) - 1);
    big[0] = '{';
    big[sizeof(big) - 2] = '}';
    big[sizeof(big) - 1] = '\0';
    parse_bad(big, CN_ELIMIT, CN_TQL_MAX_QUERY, "longer than 4096 bytes");
    char many[1024] = "";
    for (int i = 0; i <= CN_TQL_MAX_SPANSETS; i++)
        strcat(many, i ? " && {}" : "{}");
    parse_bad(many, CN_ELIMIT, 2 + 6 * CN_TQL_MAX_SPANSETS - 2, "more than 8 spansets");
    char conds[1024] = "{";
    for (int i = 0; i <= CN_TQL_MAX_CONDS; i++)
        strcat(conds, i ? " && .a = 1" : " .a = 1");
    strcat(conds, " }");
    parse_bad(conds, CN_ELIMIT, 1 + 7 + 10 * (CN_TQL_MAX_CONDS - 1) + 4, "more than 16 conditions");

    /* A NUL inside the slice is refused with its offset. */
    struct cn_tql_query *q = NULL;
    int rc = cn_tql_parse(&q, (struct cn_slice){"{ .a = \"\0\" }", 12}, err, sizeof(err), &off);
    assert_int_equal(rc, CN_ESYNTAX);
    assert_int_equal(off, 8);
    assert_null(q);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_matching, setup),
        cmocka_unit_test_setup(test_trace_bits, setup),
        cmocka_unit_test(test_values),
        cmocka_unit_test(test_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
