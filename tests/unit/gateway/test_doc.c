/* The admin API's document (src/gateway/doc.c): YAML to JSON with scalars typed so the
 * compiler reads the same text back, errors with positions, limits at their edges, and the
 * edits of one route or cluster by name. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "gateway/admin.h"
#include "gateway/internal.h"

static json_t *conv(const char *text, char *err)
{
    err[0] = '\0';
    return cn_gw_doc_from_yaml("t", text, strlen(text), err, 512);
}

static void test_scalars(void **state)
{
    (void)state;
    char err[512];
    json_t *j = conv("a: 1\nb: '1'\nc: true\nd: ~\ne: 007\nf: -0\ng: 1.5\n"
                     "h: 1234567890123456789\ni: -42\nj:\nk: null\nl: \"null\"\nm: yes\n"
                     "n: 123456789012345678\n",
                     err);
    assert_non_null(j);
    assert_int_equal(json_integer_value(json_object_get(j, "a")), 1);
    assert_string_equal(json_string_value(json_object_get(j, "b")), "1");
    assert_true(json_is_true(json_object_get(j, "c")));
    assert_true(json_is_null(json_object_get(j, "d")));
    assert_string_equal(json_string_value(json_object_get(j, "e")), "007");
    assert_string_equal(json_string_value(json_object_get(j, "f")), "-0");
    assert_string_equal(json_string_value(json_object_get(j, "g")), "1.5");
    /* 19 digits: past the canonical integers, kept as text */
    assert_string_equal(json_string_value(json_object_get(j, "h")), "1234567890123456789");
    assert_int_equal(json_integer_value(json_object_get(j, "i")), -42);
    assert_true(json_is_null(json_object_get(j, "j")));
    assert_true(json_is_null(json_object_get(j, "k")));
    assert_string_equal(json_string_value(json_object_get(j, "l")), "null");
    assert_string_equal(json_string_value(json_object_get(j, "m")), "yes");
    assert_int_equal(json_integer_value(json_object_get(j, "n")), 123456789012345678LL);
    /* key order is the document's */
    const char *k;
    json_t *v;
    const char *order = "abcdefghijklmn";
    size_t i = 0;
    json_object_foreach(j, k, v) assert_int_equal(k[0], order[i++]);
    json_decref(j);
}

/* A configuration converted and dumped as JSON compiles to the same routes and clusters. */
static void test_round_trip_compiles(void **state)
{
    (void)state;
    const char *yaml = "listeners: [{name: main, address: '127.0.0.1:0'}]\n"
                       "clusters:\n"
                       "  - name: a\n"
                       "    endpoints: [127.0.0.1:9001, {address: 127.0.0.1:9002, weight: 3}]\n"
                       "    timeouts: {connect: 250ms}\n"
                       "routes:\n"
                       "  - name: r\n"
                       "    hostnames: ['*.example.org']\n"
                       "    matches: [{path: {type: Exact, value: /x}, headers: [{name: v, "
                       "value: '2'}]}]\n"
                       "    filters: [{type: RequestHeaderModifier, requestHeaderModifier: "
                       "{set: [{name: X-A, value: \"tab\\there \\u00e9\"}]}}]\n"
                       "    backendRefs: [{name: a, weight: 2}]\n";
    char err[512];
    json_t *j = conv(yaml, err);
    assert_non_null(j);
    char *text = json_dumps(j, JSON_INDENT(1));
    struct cn_gw_snapshot *s = cn_gw_config_load_buffer("t", text, strlen(text), err, 512);
    if (!s)
        fail_msg("%s", err);
    assert_int_equal(s->num_routes, 1);
    assert_int_equal(s->clusters[0].num_eps, 2);
    assert_int_equal(s->clusters[0].eps[1].weight, 3);
    assert_int_equal(s->routes[0].backends[0].weight, 2);
    assert_int_equal(s->clusters[0].timeouts.connect_ms, 250);
    const struct gw_header_op *op = &s->routes[0].filters[0].u.headers.set[0];
    assert_int_equal(op->value.len, strlen("tab\there \xc3\xa9"));
    assert_memory_equal(op->value.ptr, "tab\there \xc3\xa9", op->value.len);
    cn_gw_snapshot_unref(s);
    /* and converting the dump again gives the same value */
    json_t *k = conv(text, err);
    assert_true(json_equal(j, k));
    json_decref(k);
    free(text);
    json_decref(j);
}

static void test_errors(void **state)
{
    (void)state;
    char err[512];
    assert_null(conv("a: 1\nb:\n  c: 1\n  c: 2\n", err));
    assert_string_equal(err, "t:4:3: repeated key 'c'");
    assert_null(conv("? [a]\n: 1\n", err));
    assert_string_equal(err, "t:1:3: a key must be a scalar");
    assert_null(conv("a: [1\n", err));
    assert_true(strncmp(err, "t:2:1: ", 7) == 0);
    assert_null(conv("", err));
    assert_string_equal(err, "t: empty document");
    assert_null(conv("a: \"x\\x7fy\"\n", err));
    assert_true(strstr(err, "t:1:4: a character YAML cannot carry unescaped") == err);
    assert_null(conv("a: \"\\u2028\"\n", err));
    assert_null(conv("\"\\x85\": 1\n", err));
    assert_true(strstr(err, "a key holds") != NULL);
}

/* Nesting: 64 levels pass, 65 do not. */
static void test_depth_limit(void **state)
{
    (void)state;
    char text[300], err[512];
    for (int depth = CN_GW_DOC_MAX_DEPTH; depth <= CN_GW_DOC_MAX_DEPTH + 1; depth++) {
        int n = 0;
        for (int i = 0; i < depth; i++) /* the scalar is at depth `depth` */
            text[n++] = '[';
        text[n++] = '1';
        for (int i = 0; i < depth; i++)
            text[n++] = ']';
        text[n] = '\0';
        json_t *j = conv(text, err);
        if (depth == CN_GW_DOC_MAX_DEPTH) {
            assert_non_null(j);
        } else {
            assert_null(j);
            assert_true(strstr(err, "nested more than 64 levels") != NULL);
        }
        json_decref(j);
    }
}

/* Keys up to CN_GW_DOC_MAX_KEY bytes, control characters included, read back from their JSON;
 * one more byte is refused (found by fuzz_gateway_doc: a longer key dumped as JSON did not
 * read back). */
static void test_key_limit(void **state)
{
    (void)state;
    char text[1024], err[512];
    for (int len = CN_GW_DOC_MAX_KEY; len <= CN_GW_DOC_MAX_KEY + 1; len++) {
        int n = 0;
        text[n++] = '{';
        text[n++] = '"';
        for (int i = 0; i < len; i++) {
            memcpy(text + n, "\\u0001", 6); /* 6 characters of JSON each */
            n += 6;
        }
        memcpy(text + n, "\": 1}", 5);
        text[n + 5] = '\0';
        json_t *j = conv(text, err);
        if (len == CN_GW_DOC_MAX_KEY) {
            assert_non_null(j);
            char *dumped = json_dumps(j, JSON_INDENT(1));
            json_t *k = conv(dumped, err);
            assert_non_null(k);
            assert_true(json_equal(j, k));
            json_decref(k);
            free(dumped);
        } else {
            assert_null(j);
            assert_non_null(strstr(err, "a key longer than 128 bytes"));
        }
        json_decref(j);
    }
}

/* Aliases count each time they are used: a billion laughs stops at the node limit. */
static void test_alias_limit(void **state)
{
    (void)state;
    char err[512];
    const char *bomb = "a: &a [x, x, x, x, x, x, x, x, x, x]\n"
                       "b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]\n"
                       "c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]\n"
                       "d: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c, *c]\n"
                       "e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d, *d]\n"
                       "f: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e, *e]\n";
    json_t *j = conv(bomb, err); /* ~1.2M nodes */
    assert_null(j);
    assert_true(strstr(err, "more than 1000000 nodes") != NULL);
    /* one level less (~111k nodes) is within the limit */
    char small[400];
    snprintf(small, sizeof(small), "%.*s", (int)(strstr(bomb, "f:") - bomb), bomb);
    j = conv(small, err);
    assert_non_null(j);
    json_decref(j);
}

static void test_put_delete(void **state)
{
    (void)state;
    char err[512];
    json_t *doc = conv("routes:\n  - {name: a, x: 1}\n  - {name: b, x: 2}\n", err);
    /* replace keeps the position; name goes first when absent */
    json_t *o = json_pack("{s:i}", "x", 3);
    assert_int_equal(cn_gw_doc_put(doc, "routes", "a", o, err, sizeof(err)), 1);
    json_decref(o);
    size_t at = 9;
    json_t *a = cn_gw_doc_find(doc, "routes", "a", &at);
    assert_int_equal(at, 0);
    assert_int_equal(json_integer_value(json_object_get(a, "x")), 3);
    assert_string_equal(json_object_iter_key(json_object_iter(a)), "name");
    /* append */
    o = json_pack("{s:s,s:i}", "name", "c", "x", 4);
    assert_int_equal(cn_gw_doc_put(doc, "routes", "c", o, err, sizeof(err)), 0);
    json_decref(o);
    assert_non_null(cn_gw_doc_find(doc, "routes", "c", &at));
    assert_int_equal(at, 2);
    /* the body's name must be the URL's */
    o = json_pack("{s:s}", "name", "z");
    assert_int_equal(cn_gw_doc_put(doc, "routes", "c", o, err, sizeof(err)), CN_EINVAL);
    assert_string_equal(err, "name: must be 'c' as in the URL, or absent");
    json_decref(o);
    o = json_pack("[i]", 1);
    assert_int_equal(cn_gw_doc_put(doc, "routes", "c", o, err, sizeof(err)), CN_EINVAL);
    assert_string_equal(err, "body: must be a mapping (one route)");
    json_decref(o);
    /* a list that is absent or null is created */
    o = json_object();
    assert_int_equal(cn_gw_doc_put(doc, "clusters", "k", o, err, sizeof(err)), 0);
    json_decref(o);
    assert_int_equal(json_array_size(json_object_get(doc, "clusters")), 1);
    /* delete */
    assert_int_equal(cn_gw_doc_delete(doc, "routes", "b"), 0);
    assert_int_equal(cn_gw_doc_delete(doc, "routes", "b"), CN_ENOENT);
    assert_null(cn_gw_doc_find(doc, "routes", "b", NULL));
    assert_int_equal(json_array_size(json_object_get(doc, "routes")), 2);
    json_decref(doc);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_scalars),     cmocka_unit_test(test_round_trip_compiles),
        cmocka_unit_test(test_errors),      cmocka_unit_test(test_depth_limit),
        cmocka_unit_test(test_alias_limit), cmocka_unit_test(test_put_delete),
        cmocka_unit_test(test_key_limit),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
