/* Growable byte buffer with a maximum set at creation. */
#ifndef CN_BUF_H
#define CN_BUF_H

#include "base/base.h"
#include <stdarg.h>

/* States: ptr == NULL and cap == 0 until the first append; len <= cap <= max always.
 * Appending past max fails with CN_ELIMIT and leaves the buffer unchanged. */
struct cn_buf {
    char *ptr;
    size_t len;
    size_t cap;
    size_t max;
};

static inline void cn_buf_init(struct cn_buf *b, size_t max)
{
    b->ptr = NULL;
    b->len = 0;
    b->cap = 0;
    b->max = max;
}

/* Frees the storage; the buffer can be reused after cn_buf_init. */
void cn_buf_release(struct cn_buf *b);

/* Makes room for n more bytes. Returns 0, CN_ELIMIT past max, CN_ENOMEM. */
int cn_buf_reserve(struct cn_buf *b, size_t n);
int cn_buf_append(struct cn_buf *b, const void *p, size_t n);
int cn_buf_append_slice(struct cn_buf *b, struct cn_slice s);
int cn_buf_puts(struct cn_buf *b, const char *s);
int cn_buf_printf(struct cn_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
int cn_buf_vprintf(struct cn_buf *b, const char *fmt, va_list ap);
/* Appends the decimal form of v. */
int cn_buf_append_u64(struct cn_buf *b, uint64_t v);
/* Drops the first n bytes, keeping the rest. */
void cn_buf_consume(struct cn_buf *b, size_t n);

static inline void cn_buf_reset(struct cn_buf *b)
{
    b->len = 0;
}

static inline struct cn_slice cn_buf_slice(const struct cn_buf *b)
{
    return (struct cn_slice){b->ptr, b->len};
}

/* Writes a decimal into dst (at least 21 bytes); returns the length. */
size_t cn_u64_to_dec(char *dst, uint64_t v);

#endif
