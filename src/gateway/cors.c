/* CORS (Fetch standard): which origins, methods and headers a route allows. The preflight
 * is answered by the gateway (ext.c); here are the matching rules. */
#include "gateway/internal.h"

int gw_cors_origin_allowed(const struct gw_cors *c, struct cn_slice origin)
{
    if (origin.len == 0)
        return 0;
    for (size_t i = 0; i < c->num_origins; i++) {
        struct cn_slice o = c->origins[i];
        if (o.len == 1 && o.ptr[0] == '*')
            return 1;
        if (o.len > 2 && o.ptr[0] == '*' && o.ptr[1] == '.') {
            /* "*.example.com": scheme://one-or-more-labels.example.com[:port]? The pattern
             * names the host suffix (with its port, if any); the scheme is any. */
            const char *sep = NULL;
            for (size_t k = 0; k + 2 < origin.len; k++)
                if (origin.ptr[k] == ':' && origin.ptr[k + 1] == '/' && origin.ptr[k + 2] == '/') {
                    sep = origin.ptr + k + 3;
                    break;
                }
            if (!sep)
                continue;
            struct cn_slice host = {sep, (size_t)(origin.ptr + origin.len - sep)};
            struct cn_slice suffix = {o.ptr + 1, o.len - 1}; /* ".example.com" */
            if (host.len > suffix.len &&
                cn_slice_case_eq((struct cn_slice){host.ptr + host.len - suffix.len, suffix.len},
                                 suffix) &&
                host.ptr[0] != '.')
                return 1;
            continue;
        }
        if (cn_slice_case_eq(o, origin))
            return 1;
    }
    return 0;
}

static int in_list(const struct cn_slice *list, size_t n, struct cn_slice v, int nocase)
{
    for (size_t i = 0; i < n; i++)
        if (nocase ? cn_slice_case_eq(list[i], v) : cn_slice_eq(list[i], v))
            return 1;
    return 0;
}

int gw_cors_preflight_ok(const struct gw_cors *c, struct cn_slice method, struct cn_slice headers)
{
    if (method.len == 0 || !in_list(c->methods_list, c->num_methods, method, 0))
        return 0;
    const char *p = headers.ptr, *end = headers.ptr + headers.len;
    while (p && p < end) {
        const char *comma = memchr(p, ',', (size_t)(end - p));
        const char *e = comma ? comma : end;
        while (p < e && (*p == ' ' || *p == '\t'))
            p++;
        const char *t = e;
        while (t > p && (t[-1] == ' ' || t[-1] == '\t'))
            t--;
        struct cn_slice h = {p, (size_t)(t - p)};
        if (h.len && !in_list(c->headers_list, c->num_headers, h, 1))
            return 0;
        p = comma ? comma + 1 : NULL;
    }
    return 1;
}
