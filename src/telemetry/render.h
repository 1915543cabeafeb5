/* JSON renderings of stored records (OTLP JSON field names, IDs in hex, times as strings of
 * nanoseconds) for the query API and the CLI. */
#ifndef CN_TELEMETRY_RENDER_H
#define CN_TELEMETRY_RENDER_H

#include "telemetry/model.h"

#include <jansson.h>

/* New references; NULL on allocation failure. */
json_t *cn_render_value(const struct cn_val *v);
json_t *cn_render_attrs(const struct cn_kvs *kvs);
json_t *cn_render_span(const struct cn_span *s);
json_t *cn_render_log(const struct cn_log *l);

#endif
