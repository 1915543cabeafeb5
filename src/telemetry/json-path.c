#include "telemetry/json-path.h"

size_t cn_jpath_format(const struct cn_jpath *p, char *dst, size_t cap)
{
    size_t n = 0;
    if (p->depth == 0)
        return (size_t)snprintf(dst, cap, "top level");
    for (unsigned i = 0; i < p->depth && i < CN_JPATH_MAX && n < cap; i++) {
        const char *key = p->steps[i].key;
        const char *dot = i && key[0] ? "." : "";
        int w = p->steps[i].has_idx
                    ? snprintf(dst + n, cap - n, "%s%s[%zu]", dot, key, p->steps[i].idx)
                    : snprintf(dst + n, cap - n, "%s%s", dot, key);
        n += (size_t)w;
    }
    if (p->depth > CN_JPATH_MAX && n < cap)
        n += (size_t)snprintf(dst + n, cap - n, "...");
    return CN_MIN(n, cap ? cap - 1 : 0);
}
