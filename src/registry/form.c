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

int cn_url_decode(struct cn_buf *out, struct cn_slice s, int plus_space)
{
    if (cn_buf_reserve(out, s.len) != 0)
        return CN_ELIMIT;
    for (size_t i = 0; i < s.len; i++) {
        char c = s.ptr[i];
        if (c == '%') {
            if (i + 2 >= s.len)
                return CN_ESYNTAX;
            int h = cn_hexval(s.ptr[i + 1]), l = cn_hexval(s.ptr[i + 2]);
            if (h < 0 || l < 0)
                return CN_ESYNTAX;
            c = (char)(h * 16 + l);
            i += 2;
        } else if (c == '+' && plus_space) {
            c = ' ';
        }
        out->ptr[out->len++] = c;
    }
    return 0;
}

int cn_form_parse(struct cn_form *f, struct cn_slice s)
{
    size_t base = f->text.len;
    if (s.len > UINT32_MAX || cn_buf_reserve(&f->text, s.len) != 0)
        return CN_ELIMIT;
    size_t i = 0;
    while (i < s.len) {
        size_t e = i;
        while (e < s.len && s.ptr[e] != '&')
            e++;
        if (e > i) {
            const char *eq = memchr(s.ptr + i, '=', e - i);
            size_t nlen = eq ? (size_t)(eq - (s.ptr + i)) : e - i;
            struct cn_slice n = {s.ptr + i, nlen};
            struct cn_slice v = eq ? (struct cn_slice){eq + 1, (size_t)(s.ptr + e - eq - 1)}
                                   : (struct cn_slice){s.ptr + e, 0};
            size_t n0 = f->text.len;
            int rc = cn_url_decode(&f->text, n, 1);
            if (rc)
                return rc;
            size_t v0 = f->text.len;
            rc = cn_url_decode(&f->text, v, 1);
            if (rc)
                return rc;
            struct cn_slice dn = {f->text.ptr + n0, v0 - n0};
            int dup = 0;
            for (size_t k = 0; k < f->num && !dup; k++)
                dup = cn_slice_eq((struct cn_slice){f->text.ptr + f->noff[k], f->nlen[k]}, dn);
            if (!dup) {
                if (f->num >= CN_FORM_MAX_PARAMS)
                    return CN_ELIMIT;
                f->noff[f->num] = (uint32_t)n0;
                f->nlen[f->num] = (uint32_t)(v0 - n0);
                f->voff[f->num] = (uint32_t)v0;
                f->vlen[f->num] = (uint32_t)(f->text.len - v0);
                f->num++;
            }
        }
        i = e + 1;
    }
    CN_BUG_ON(f->text.len - base > s.len);
    return 0;
}

int cn_form_get(const struct cn_form *f, const char *name, struct cn_slice *out)
{
    struct cn_slice n = cn_slice_of(name);
    for (size_t i = 0; i < f->num; i++)
        if (cn_slice_eq((struct cn_slice){f->text.ptr + f->noff[i], f->nlen[i]}, n)) {
            *out = (struct cn_slice){f->text.ptr + f->voff[i], f->vlen[i]};
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
