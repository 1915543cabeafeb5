#include "base/utf8.h"

#include <string.h>

size_t cn_utf8_seq(const void *p, size_t len)
{
    const uint8_t *s = p;
    uint8_t c = s[0];
    if (c < 0x80)
        return 1;
    if (c >= 0xC2 && c <= 0xDF)
        return len >= 2 && (s[1] & 0xC0) == 0x80 ? 2 : 0;
    if (c >= 0xE0 && c <= 0xEF) {
        if (len < 3 || (s[1] & 0xC0) != 0x80 || (s[2] & 0xC0) != 0x80)
            return 0;
        if ((c == 0xE0 && s[1] < 0xA0) || (c == 0xED && s[1] >= 0xA0))
            return 0; /* overlong, surrogate */
        return 3;
    }
    if (c >= 0xF0 && c <= 0xF4) {
        if (len < 4 || (s[1] & 0xC0) != 0x80 || (s[2] & 0xC0) != 0x80 || (s[3] & 0xC0) != 0x80)
            return 0;
        if ((c == 0xF0 && s[1] < 0x90) || (c == 0xF4 && s[1] >= 0x90))
            return 0; /* overlong, past U+10FFFF */
        return 4;
    }
    return 0;
}

int cn_utf8_valid(const void *p, size_t len)
{
    const uint8_t *s = p;
    for (size_t i = 0; i < len;) {
        if (s[i] < 0x80) {
            i++;
            continue;
        }
        size_t n = cn_utf8_seq(s + i, len - i);
        if (!n)
            return 0;
        i += n;
    }
    return 1;
}

size_t cn_utf8_cut(const void *p, size_t len, size_t max)
{
    const uint8_t *s = p;
    if (len <= max)
        return len;
    if ((s[max] & 0xC0) != 0x80)
        return max;
    size_t n = max;
    while (n > 0 && max - n < 3 && (s[n] & 0xC0) == 0x80)
        n--;
    return s[n] >= 0xC0 ? n : max;
}

size_t cn_json_str(char *dst, const void *p, size_t len)
{
    static const char hex[] = "0123456789abcdef";
    const uint8_t *s = p;
    if (len == 0) { /* s may be NULL (an absent key) */
        if (dst)
            memcpy(dst, "\"\"", 2);
        return 2;
    }
    size_t o = 0;
#define OUT(src, n)                                                                                \
    do {                                                                                           \
        if (dst && (n))                                                                            \
            memcpy(dst + o, (src), (n));                                                           \
        o += (n);                                                                                  \
    } while (0)
    OUT("\"", 1);
    size_t run = 0, i = 0;
    while (i < len) {
        uint8_t c = s[i];
        if (c >= 0x20 && c < 0x80 && c != '"' && c != '\\') {
            i++;
            continue;
        }
        size_t seq = c >= 0x80 ? cn_utf8_seq(s + i, len - i) : 0;
        if (seq) {
            i += seq;
            continue;
        }
        OUT(s + run, i - run);
        char esc[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15]};
        size_t n = 2;
        switch (c) {
        case '"':
        case '\\':
            esc[1] = (char)c;
            break;
        case '\b':
            esc[1] = 'b';
            break;
        case '\f':
            esc[1] = 'f';
            break;
        case '\n':
            esc[1] = 'n';
            break;
        case '\r':
            esc[1] = 'r';
            break;
        case '\t':
            esc[1] = 't';
            break;
        default:
            if (c >= 0x80)
                memcpy(esc, "\\ufffd", 6);
            n = 6;
            break;
        }
        OUT(esc, n);
        run = ++i;
    }
    OUT(s + run, len - run);
    OUT("\"", 1);
#undef OUT
    return o;
}
