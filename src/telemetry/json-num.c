#include "telemetry/json-num.h"

#include <math.h>

const char *cn_json_u64(const json_t *v, uint64_t max, uint64_t *out)
{
    uint64_t x;
    if (json_is_integer(v)) {
        json_int_t i = json_integer_value(v);
        if (i < 0)
            return "out of range";
        x = (uint64_t)i;
    } else if (json_is_real(v)) {
        double r = json_real_value(v);
        if (r != floor(r))
            return "not an integer";
        if (r < 0 || r >= 18446744073709551616.0)
            return "out of range";
        x = (uint64_t)r;
    } else if (json_is_string(v)) {
        int rc =
            cn_slice_to_u64((struct cn_slice){json_string_value(v), json_string_length(v)}, &x);
        if (rc == CN_ERANGE)
            return "out of range";
        if (rc)
            return "not an integer";
    } else {
        return "not an integer";
    }
    if (x > max)
        return "out of range";
    *out = x;
    return NULL;
}
