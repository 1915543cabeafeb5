/* Shared basics: error codes, asserts, slices. Depends on libc only. */
#ifndef CN_BASE_H
#define CN_BASE_H

#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Status codes: 0 is success, failures are negative. System errors reuse errno values. */
enum cn_err {
    CN_OK = 0,
    CN_ENOMEM = -ENOMEM,
    CN_EINVAL = -EINVAL,
    CN_EAGAIN = -EAGAIN,
    CN_ERANGE = -ERANGE,
    CN_EIO = -EIO,
    CN_ENOENT = -ENOENT,
    CN_ELIMIT = -10001, /* an explicit limit was reached */
    CN_ESYNTAX = -10002 /* malformed input */
};

#define CN_LIKELY(x)    __builtin_expect(!!(x), 1)
#define CN_UNLIKELY(x)  __builtin_expect(!!(x), 0)
#define CN_ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))
#define CN_MIN(a, b)    ((a) < (b) ? (a) : (b))
#define CN_MAX(a, b)    ((a) > (b) ? (a) : (b))

void cn_bug(const char *file, int line, const char *expr) __attribute__((noreturn));

/* Always on: a broken invariant aborts with file:line. */
#define CN_BUG_ON(x)                                                                               \
    do {                                                                                           \
        if (CN_UNLIKELY(x))                                                                        \
            cn_bug(__FILE__, __LINE__, #x);                                                        \
    } while (0)

/* Debug builds only. */
#ifdef NDEBUG
#define CN_ASSERT(x) ((void)0)
#else
#define CN_ASSERT(x) CN_BUG_ON(!(x))
#endif

/* Defensive branch: `if (CN_NEVER(x)) return CN_EINVAL;` aborts in debug builds, is taken in
 * release builds. */
#ifdef NDEBUG
#define CN_NEVER(x) CN_UNLIKELY(x)
#else
#define CN_NEVER(x) (CN_UNLIKELY(x) ? (cn_bug(__FILE__, __LINE__, #x), 1) : 0)
#endif

/* A byte string that does not rely on a NUL. */
struct cn_slice {
    const char *ptr;
    size_t len;
};

#define CN_SLICE_LIT(s) ((struct cn_slice){(s), sizeof(s) - 1})

static inline struct cn_slice cn_slice_of(const char *s)
{
    return (struct cn_slice){s, s ? strlen(s) : 0};
}

static inline int cn_slice_eq(struct cn_slice a, struct cn_slice b)
{
    return a.len == b.len && (a.len == 0 || memcmp(a.ptr, b.ptr, a.len) == 0);
}

/* Without the spaces and tabs at either end (HTTP's optional whitespace, OWS). */
static inline struct cn_slice cn_slice_trim_ows(struct cn_slice s)
{
    while (s.len && (s.ptr[0] == ' ' || s.ptr[0] == '\t')) {
        s.ptr++;
        s.len--;
    }
    while (s.len && (s.ptr[s.len - 1] == ' ' || s.ptr[s.len - 1] == '\t'))
        s.len--;
    return s;
}

/* ASCII case-insensitive equality, as header names need. */
int cn_slice_case_eq(struct cn_slice a, struct cn_slice b);

/* Parses a decimal unsigned integer that fills the whole slice; no sign, no spaces.
 * Returns 0, or CN_ESYNTAX / CN_ERANGE. */
int cn_slice_to_u64(struct cn_slice s, uint64_t *out_v);

/* qsort/bsearch order of uint32_t values. */
int cn_u32_cmp(const void *a, const void *b);

/* Frees *p and sets it to NULL. */
#define cn_free(pp)                                                                                \
    do {                                                                                           \
        free(*(pp));                                                                               \
        *(pp) = NULL;                                                                              \
    } while (0)

/* The value of a hex digit, or -1. */
static inline int cn_hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* mkdir -p with mode 0750. Returns 0 or -errno. */
int cn_mkdirs(const char *dir);

/* Allocation that aborts on failure is not used: callers handle NULL. */
const char *cn_strerror(int err);

#endif
