/* Key auth: a request must carry one of the configured keys in a header or a query
 * parameter. Keys are compared in constant time with respect to their bytes. */
#include "gateway/internal.h"

#include <openssl/crypto.h>

int gw_keyauth_check(const struct gw_keyauth *ka, struct cn_slice key)
{
    int found = 0;
    if (key.len == 0)
        return 0;
    /* Every key is compared (no early exit), each over the longer of the two lengths. */
    for (size_t i = 0; i < ka->num_keys; i++) {
        const struct cn_slice k = ka->keys[i];
        unsigned diff = (unsigned)(k.len ^ key.len);
        size_t n = CN_MAX(k.len, key.len);
        for (size_t b = 0; b < n; b++) {
            unsigned char x = b < k.len ? (unsigned char)k.ptr[b] : 0;
            unsigned char y = b < key.len ? (unsigned char)key.ptr[b] : 0;
            diff |= (unsigned)(x ^ y);
        }
        found |= diff == 0;
    }
    return found;
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    c = (char)(c | 0x20);
    return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

int gw_keyauth_find(const struct gw_keyauth *ka, const struct cn_http_req *creq,
                    struct cn_slice *out, char *buf, size_t buf_len)
{
    if (ka->header.len) {
        for (size_t i = 0; i < creq->num_headers; i++)
            if (cn_slice_case_eq(creq->headers[i].name, ka->header)) {
                *out = creq->headers[i].value;
                return 0;
            }
        return CN_ENOENT;
    }
    /* The first query parameter of that name, percent-decoded. */
    const char *p = creq->query.ptr, *end = p + creq->query.len;
    while (p && p < end) {
        const char *amp = memchr(p, '&', (size_t)(end - p));
        const char *e = amp ? amp : end;
        const char *eq = memchr(p, '=', (size_t)(e - p));
        const char *ne = eq ? eq : e;
        if ((size_t)(ne - p) == ka->query.len && memcmp(p, ka->query.ptr, ka->query.len) == 0) {
            size_t n = 0;
            for (const char *v = eq ? eq + 1 : e; v < e; v++) {
                if (n >= buf_len)
                    return CN_ELIMIT;
                int h1, h2;
                if (*v == '%' && e - v >= 3 && (h1 = hexval(v[1])) >= 0 &&
                    (h2 = hexval(v[2])) >= 0) {
                    buf[n++] = (char)(h1 * 16 + h2);
                    v += 2;
                } else {
                    buf[n++] = *v == '+' ? ' ' : *v;
                }
            }
            *out = (struct cn_slice){buf, n};
            return 0;
        }
        p = amp ? amp + 1 : NULL;
    }
    return CN_ENOENT;
}
