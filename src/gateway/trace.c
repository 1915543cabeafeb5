/* W3C Trace Context (https://www.w3.org/TR/trace-context/): traceparent parsed strictly and
 * written for the next hop. */
#include "gateway/internal.h"

static int hex_nibble(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1; /* upper case is not allowed */
}

static int hex_bytes(uint8_t *dst, const char *p, size_t n)
{
    uint8_t any = 0;
    for (size_t i = 0; i < n; i++) {
        int a = hex_nibble(p[2 * i]), b = hex_nibble(p[2 * i + 1]);
        if (a < 0 || b < 0)
            return CN_ESYNTAX;
        dst[i] = (uint8_t)(a << 4 | b);
        any |= dst[i];
    }
    return any ? 0 : CN_ESYNTAX; /* all-zero IDs are invalid */
}

int gw_traceparent_parse(struct cn_slice v, struct gw_traceparent *out)
{
    /* version "00" has exactly 4 fields: 2-32-16-2 hex digits */
    if (v.len != 55 || v.ptr[2] != '-' || v.ptr[35] != '-' || v.ptr[52] != '-')
        return CN_ESYNTAX;
    if (v.ptr[0] != '0' || v.ptr[1] != '0')
        return CN_ESYNTAX;
    struct gw_traceparent t;
    if (hex_bytes(t.trace_id, v.ptr + 3, 16) || hex_bytes(t.span_id, v.ptr + 36, 8))
        return CN_ESYNTAX;
    int a = hex_nibble(v.ptr[53]), b = hex_nibble(v.ptr[54]);
    if (a < 0 || b < 0)
        return CN_ESYNTAX;
    t.flags = (uint8_t)(a << 4 | b);
    *out = t;
    return 0;
}

void gw_traceparent_format(char dst[56], const uint8_t trace_id[16], const uint8_t span_id[8],
                           uint8_t flags)
{
    static const char hex[] = "0123456789abcdef";
    char *p = dst;
    *p++ = '0';
    *p++ = '0';
    *p++ = '-';
    for (int i = 0; i < 16; i++) {
        *p++ = hex[trace_id[i] >> 4];
        *p++ = hex[trace_id[i] & 15];
    }
    *p++ = '-';
    for (int i = 0; i < 8; i++) {
        *p++ = hex[span_id[i] >> 4];
        *p++ = hex[span_id[i] & 15];
    }
    *p++ = '-';
    *p++ = hex[flags >> 4];
    *p++ = hex[flags & 15];
    *p = '\0';
}
