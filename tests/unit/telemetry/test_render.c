#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "telemetry/render.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static void value_is(const struct cn_val *v, const char *want)
{
    json_t *j = cn_render_value(v);
    assert_non_null(j);
    char *text = json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS);
    assert_non_null(text);
    assert_string_equal(text, want);
    free(text);
    json_decref(j);
}

static struct cn_val dbl(double d)
{
    struct cn_val v = {.type = CN_VAL_DOUBLE};
    v.u.d = d;
    return v;
}

/* The OTLP JSON mapping: 64-bit integers as strings, non-finite doubles as "NaN",
 * "Infinity", "-Infinity" (JSON numbers cannot say them), bytes in base64. */
static void values(void **state)
{
    (void)state;
    struct cn_val v = dbl(1.5);
    value_is(&v, "{\"doubleValue\":1.5}");
    v = dbl(NAN);
    value_is(&v, "{\"doubleValue\":\"NaN\"}");
    v = dbl(INFINITY);
    value_is(&v, "{\"doubleValue\":\"Infinity\"}");
    v = dbl(-INFINITY);
    value_is(&v, "{\"doubleValue\":\"-Infinity\"}");
    v = (struct cn_val){.type = CN_VAL_INT};
    v.u.i = INT64_MIN;
    value_is(&v, "{\"intValue\":\"-9223372036854775808\"}");
    v = (struct cn_val){.type = CN_VAL_BYTES};
    v.u.s = (struct cn_slice){"\x00\xff", 2};
    value_is(&v, "{\"bytesValue\":\"AP8=\"}");
    v = (struct cn_val){.type = CN_VAL_STR};
    v.u.s = (struct cn_slice){"a\xff", 2};
    value_is(&v, "{\"stringValue\":\"a\xef\xbf\xbd\"}"); /* U+FFFD */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(values),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
