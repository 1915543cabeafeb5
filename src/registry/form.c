/* Form and query-string parameters, Java-style URL encoding, Nacos listener records. */
#include "registry/util.h"

void cn_form_init(struct cn_form *f, size_t max_bytes)
{
    f->num = 0;
    cn_buf_init(&f->text, max_bytes);
}

void cn_form_release(struct cn_form *f)
{
    cn_buf_release(&f->text);
    f->num = 0;
}

/* Percent-decodes n bytes at p into dst (room for n); '+' is a space when plus_space.
 * Returns the bytes written, or -1 for a malformed escape. Locals only in the loop: a store
 * through a char pointer into a buffer struct would make the compiler reload it every byte. */
static long decode(char *dst, const char *p, size_t n, int plus_space)
{
    const char *e = p + n;
    char *d = dst;
    const uint64_t ones = 0x0101010101010101ull, highs = 0x8080808080808080ull;
    while (p < e) {
        /* Eight bytes at a time while none is '%' or '+' (a zero byte of w ^ pattern marks
         * one: the classic has-zero-byte test); */
        while (e - p >= 8) {
            uint64_t w, x, y;
            memcpy(&w, p, 8);
            x = w ^ (ones * '%');
            y = w ^ (ones * '+');
            if (((x - ones) & ~x & highs) | ((y - ones) & ~y & highs))
                break;
            memcpy(d, p, 8);
            d += 8;
            p += 8;
        }
        /* then byte by byte up to and through the next escape. */
        while (p < e) {
            char c = *p++;
            if (c == '%') {
                if (e - p < 2)
                    return -1;
                int h = cn_hexval(p[0]), l = cn_hexval(p[1]);
                if (h < 0 || l < 0)
                    return -1;
                *d++ = (char)(h * 16 + l);
                p += 2;
                break;
            }
            if (c == '+' && plus_space) {
                *d++ = ' ';
                break;
            }
            *d++ = c;
        }
    }
    return d - dst;
}

int cn_url_decode(struct cn_buf *out, struct cn_slice s, int plus_space)
{
    if (s.len == 0) /* out->ptr and s.ptr may be NULL: no pointer arithmetic on them */
        return 0;
    if (cn_buf_reserve(out, s.len) != 0)
        return CN_ELIMIT;
    long n = decode(out->ptr + out->len, s.ptr, s.len, plus_space);
    if (n < 0)
        return CN_ESYNTAX;
    out->len += (size_t)n;
    return 0;
}

int cn_form_parse(struct cn_form *f, struct cn_slice s)
{
    size_t base = f->text.len;
    if (s.len == 0) /* f->text.ptr and s.ptr may be NULL */
        return 0;
    if (s.len > UINT32_MAX || cn_buf_reserve(&f->text, s.len) != 0)
        return CN_ELIMIT;
    /* Decoding never grows: the reserve above holds every parameter. */
    char *text = f->text.ptr;
    size_t len = f->text.len;
    const char *p = s.ptr, *end = s.ptr + s.len;
    int rc = 0;
    while (p < end) {
        const char *amp = memchr(p, '&', (size_t)(end - p));
        const char *e = amp ? amp : end;
        if (e > p) {
            const char *eq = memchr(p, '=', (size_t)(e - p));
            const char *ne = eq ? eq : e;
            long nl = decode(text + len, p, (size_t)(ne - p), 1);
            long vl = nl < 0 ? -1
                      : eq   ? decode(text + len + nl, eq + 1, (size_t)(e - eq - 1), 1)
                             : 0;
            if (vl < 0) {
                rc = CN_ESYNTAX;
                break;
            }
            const char *dn = text + len;
            int dup = 0;
            for (size_t k = 0; k < f->num && !dup; k++)
                dup = f->nlen[k] == (uint32_t)nl &&
                      (nl == 0 || (text[f->noff[k]] == dn[0] &&
                                   memcmp(text + f->noff[k], dn, (size_t)nl) == 0));
            if (!dup) {
                if (f->num >= CN_FORM_MAX_PARAMS) {
                    rc = CN_ELIMIT;
                    break;
                }
                f->noff[f->num] = (uint32_t)len;
                f->nlen[f->num] = (uint32_t)nl;
                f->voff[f->num] = (uint32_t)(len + (size_t)nl);
                f->vlen[f->num] = (uint32_t)vl;
                f->num++;
                len += (size_t)(nl + vl);
            }
        }
        p = e + 1;
    }
    f->text.len = len;
    CN_BUG_ON(f->text.len - base > s.len);
    return rc;
}

int cn_form_get(const struct cn_form *f, const char *name, struct cn_slice *out)
{
    size_t n = strlen(name);
    const char *text = f->text.ptr;
    for (size_t i = 0; i < f->num; i++)
        if (f->nlen[i] == n &&
            (n == 0 || (text[f->noff[i]] == name[0] && memcmp(text + f->noff[i], name, n) == 0))) {
            *out = (struct cn_slice){text + f->voff[i], f->vlen[i]};
            return 1;
        }
    return 0;
}

int cn_url_encode_java(struct cn_buf *out, struct cn_slice s)
{
    static const char hex[] = "0123456789ABCDEF";
    for (size_t i = 0; i < s.len; i++) {
        unsigned char c = (unsigned char)s.ptr[i];
        char t[3];
        size_t n = 1;
        if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
            c == '.' || c == '-' || c == '*' || c == '_') {
            t[0] = (char)c;
        } else if (c == ' ') {
            t[0] = '+';
        } else {
            t[0] = '%';
            t[1] = hex[c >> 4];
            t[2] = hex[c & 15];
            n = 3;
        }
        if (cn_buf_append(out, t, n) != 0)
            return CN_ELIMIT;
    }
    return 0;
}

long cn_listen_parse(struct cn_slice s, struct cn_listen_key *out, size_t max_keys)
{
    size_t n = 0, start = 0, nf = 0;
    struct cn_slice fields[3];
    for (size_t i = 0; i < s.len; i++) {
        char c = s.ptr[i];
        if (c == '\x02') {
            if (nf >= 3)
                return CN_ESYNTAX; /* "invalid protocol,too much key" */
            fields[nf++] = (struct cn_slice){s.ptr + start, i - start};
            start = i + 1;
        } else if (c == '\x01') {
            struct cn_slice end = {s.ptr + start, i - start};
            start = i + 1;
            if (nf < 2 || fields[0].len == 0 || fields[1].len == 0)
                return CN_ESYNTAX;
            if (n >= max_keys)
                return CN_ELIMIT;
            struct cn_listen_key *k = &out[n++];
            k->data_id = fields[0];
            k->group = fields[1];
            if (nf == 2) {
                k->md5 = end;
                k->tenant = (struct cn_slice){"", 0};
                k->has_tenant = 0;
            } else {
                k->md5 = fields[2];
                k->tenant = end;
                k->has_tenant = 1;
            }
            nf = 0;
        }
    }
    return (long)n;
}
