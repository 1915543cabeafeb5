#include "telemetry/model.h"

#include <stdarg.h>

void cn_tel_batch_init(struct cn_tel_batch *b, size_t arena_max)
{
    memset(b, 0, sizeof(*b));
    cn_arena_init(&b->arena, 64 << 10, arena_max);
}

void cn_tel_batch_release(struct cn_tel_batch *b)
{
    cn_arena_release(&b->arena);
    b->spans = NULL;
    b->logs = NULL;
    b->num_spans = b->num_logs = 0;
}

void cn_tel_batch_reject(struct cn_tel_batch *b, const char *fmt, ...)
{
    if (b->rejected++ == 0) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(b->reject_msg, sizeof(b->reject_msg), fmt, ap);
        va_end(ap);
    }
}

void cn_hex_encode(char *dst, const uint8_t *src, size_t n)
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        dst[2 * i] = digits[src[i] >> 4];
        dst[2 * i + 1] = digits[src[i] & 15];
    }
    dst[2 * n] = '\0';
}

int cn_hex_decode(uint8_t *dst, size_t n, struct cn_slice hex)
{
    if (hex.len != 2 * n)
        return CN_ESYNTAX;
    for (size_t i = 0; i < n; i++) {
        int hi = cn_hexval(hex.ptr[2 * i]), lo = cn_hexval(hex.ptr[2 * i + 1]);
        if (hi < 0 || lo < 0)
            return CN_ESYNTAX;
        dst[i] = (uint8_t)(hi << 4 | lo);
    }
    return 0;
}
