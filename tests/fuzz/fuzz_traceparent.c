/* Fuzzes the W3C traceparent parser (src/gateway/trace.c). Properties: an accepted value
 * is exactly 55 bytes, its IDs are not zero, and formatting what was parsed gives back the
 * input byte for byte (only lower-case hex is accepted, so there is one spelling). */
#include "gateway/internal.h"
#include "telemetry/model.h"

#include <stdint.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct gw_traceparent t;
    if (gw_traceparent_parse((struct cn_slice){(const char *)data, size}, &t) != 0)
        return 0;
    CN_BUG_ON(size != 55);
    CN_BUG_ON(cn_id_is_zero(t.trace_id, 16) || cn_id_is_zero(t.span_id, 8));
    char out[56];
    gw_traceparent_format(out, t.trace_id, t.span_id, t.flags);
    CN_BUG_ON(memcmp(out, data, 55) != 0);
    return 0;
}
