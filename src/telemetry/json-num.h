/* Numbers in OTLP JSON and Zipkin JSON: an unsigned integer may come as a JSON number, a
 * whole double (bodies read with every number a double) or a decimal string. */
#ifndef CN_TELEMETRY_JSON_NUM_H
#define CN_TELEMETRY_JSON_NUM_H

#include "base/base.h"

#include <jansson.h>

/* Reads v as an unsigned integer of at most max into *out. Returns NULL, or the reason it is
 * not one ("not an integer", "out of range"); *out is then unchanged. */
const char *cn_json_u64(const json_t *v, uint64_t max, uint64_t *out);

#endif
