#include "base/base64.h"

/* Encodes with alphabet t; a short last group is padded with '=' when pad, else cut. */
static size_t encode(char *dst, const void *src, size_t n, const char *t, int pad)
{
    const uint8_t *p = src;
    size_t o = 0;
    for (size_t i = 0; i < n; i += 3) {
        uint32_t v = (uint32_t)p[i] << 16 | (i + 1 < n ? (uint32_t)p[i + 1] << 8 : 0) |
                     (i + 2 < n ? p[i + 2] : 0);
        dst[o++] = t[v >> 18];
        dst[o++] = t[v >> 12 & 63];
        if (i + 1 < n || pad)
            dst[o++] = i + 1 < n ? t[v >> 6 & 63] : '=';
        if (i + 2 < n || pad)
            dst[o++] = i + 2 < n ? t[v & 63] : '=';
    }
    return o;
}

size_t cn_base64_encode(char *dst, const void *src, size_t n)
{
    return encode(dst, src, n, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/",
                  1);
}

size_t cn_base64url_encode(char *dst, const void *src, size_t n)
{
    return encode(dst, src, n, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_",
                  0);
}

static int b64_val(unsigned char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '+' || c == '-')
        return 62;
    if (c == '/' || c == '_')
        return 63;
    return -1;
}

long cn_base64_decode(uint8_t *dst, const char *s, size_t n)
{
    size_t pad = 0;
    while (n > 0 && s[n - 1] == '=' && pad < 2) {
        n--;
        pad++;
    }
    if (n % 4 == 1 || (pad && (n + pad) % 4 != 0))
        return -1;
    uint32_t acc = 0;
    int bits = 0;
    long o = 0;
    for (size_t i = 0; i < n; i++) {
        int v = b64_val((unsigned char)s[i]);
        if (v < 0)
            return -1;
        acc = (acc << 6 | (uint32_t)v) & 0xffffff;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            dst[o++] = (uint8_t)(acc >> bits);
        }
    }
    return o;
}
