#include "base/buf.h"

void cn_buf_release(struct cn_buf *b)
{
    cn_free(&b->ptr);
    b->len = 0;
    b->cap = 0;
}

int cn_buf_reserve(struct cn_buf *b, size_t n)
{
    if (CN_LIKELY(b->cap - b->len >= n))
        return 0;
    if (n > b->max - b->len)
        return CN_ELIMIT;
    size_t need = b->len + n;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < need)
        cap = cap > SIZE_MAX / 2 ? need : cap * 2;
    if (cap > b->max)
        cap = b->max;
    char *p = realloc(b->ptr, cap);
    if (!p)
        return CN_ENOMEM;
    b->ptr = p;
    b->cap = cap;
    return 0;
}

int cn_buf_append(struct cn_buf *b, const void *p, size_t n)
{
    int rc = cn_buf_reserve(b, n);
    if (rc)
        return rc;
    if (n)
        memcpy(b->ptr + b->len, p, n);
    b->len += n;
    return 0;
}

int cn_buf_append_slice(struct cn_buf *b, struct cn_slice s)
{
    return cn_buf_append(b, s.ptr, s.len);
}

int cn_buf_puts(struct cn_buf *b, const char *s)
{
    return cn_buf_append(b, s, strlen(s));
}

int cn_buf_vprintf(struct cn_buf *b, const char *fmt, va_list ap)
{
    va_list cp;
    va_copy(cp, ap);
    char tmp[256];
    int n = vsnprintf(tmp, sizeof(tmp), fmt, cp);
    va_end(cp);
    if (n < 0)
        return CN_EINVAL;
    if ((size_t)n < sizeof(tmp))
        return cn_buf_append(b, tmp, (size_t)n);
    int rc = cn_buf_reserve(b, (size_t)n + 1);
    if (rc)
        return rc;
    vsnprintf(b->ptr + b->len, (size_t)n + 1, fmt, ap);
    b->len += (size_t)n;
    return 0;
}

int cn_buf_printf(struct cn_buf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int rc = cn_buf_vprintf(b, fmt, ap);
    va_end(ap);
    return rc;
}

size_t cn_u64_to_dec(char *dst, uint64_t v)
{
    char tmp[21];
    size_t n = 0;
    do {
        tmp[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    for (size_t i = 0; i < n; i++)
        dst[i] = tmp[n - 1 - i];
    return n;
}

int cn_buf_append_u64(struct cn_buf *b, uint64_t v)
{
    char tmp[21];
    return cn_buf_append(b, tmp, cn_u64_to_dec(tmp, v));
}

void cn_buf_consume(struct cn_buf *b, size_t n)
{
    if (n >= b->len) {
        b->len = 0;
        return;
    }
    memmove(b->ptr, b->ptr + n, b->len - n);
    b->len -= n;
}
