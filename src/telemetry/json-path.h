/* The JSON path a decoder is at, for error messages: "resourceSpans[0].scopeSpans[1].name".
 * Used by the OTLP JSON and Zipkin decoders. depth counts every step pushed; only the first
 * CN_JPATH_MAX are kept and a deeper path prints with "...". */
#ifndef CN_TELEMETRY_JSON_PATH_H
#define CN_TELEMETRY_JSON_PATH_H

#include "base/base.h"

#define CN_JPATH_MAX 64

struct cn_jpath {
    struct {
        const char *key; /* "" for an element of a top-level array */
        size_t idx;
        int has_idx;
    } steps[CN_JPATH_MAX];
    unsigned depth;
};

static inline void cn_jpath_push(struct cn_jpath *p, const char *key)
{
    if (p->depth < CN_JPATH_MAX) {
        p->steps[p->depth].key = key;
        p->steps[p->depth].idx = 0;
        p->steps[p->depth].has_idx = 0;
    }
    p->depth++;
}

/* Makes the top step name element i of its array. */
static inline void cn_jpath_at(struct cn_jpath *p, size_t i)
{
    if (p->depth - 1 < CN_JPATH_MAX) {
        p->steps[p->depth - 1].idx = i;
        p->steps[p->depth - 1].has_idx = 1;
    }
}

static inline void cn_jpath_pop(struct cn_jpath *p)
{
    p->depth--;
}

/* Writes the path ("top level" when empty) into dst; returns its length (< cap). */
size_t cn_jpath_format(const struct cn_jpath *p, char *dst, size_t cap);

#endif
