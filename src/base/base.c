#include "base/base.h"

#include <sys/stat.h>

void cn_bug(const char *file, int line, const char *expr)
{
    fprintf(stderr, "cairn: bug at %s:%d: %s\n", file, line, expr);
    abort();
}

int cn_u32_cmp(const void *pa, const void *pb)
{
    uint32_t a = *(const uint32_t *)pa, b = *(const uint32_t *)pb;
    return a < b ? -1 : a > b;
}

int cn_slice_case_eq(struct cn_slice a, struct cn_slice b)
{
    if (a.len != b.len)
        return 0;
    for (size_t i = 0; i < a.len; i++) {
        unsigned char x = (unsigned char)a.ptr[i], y = (unsigned char)b.ptr[i];
        if (x >= 'A' && x <= 'Z')
            x = (unsigned char)(x + 32);
        if (y >= 'A' && y <= 'Z')
            y = (unsigned char)(y + 32);
        if (x != y)
            return 0;
    }
    return 1;
}

int cn_slice_to_u64(struct cn_slice s, uint64_t *out_v)
{
    uint64_t v = 0;
    if (s.len == 0)
        return CN_ESYNTAX;
    for (size_t i = 0; i < s.len; i++) {
        unsigned d = (unsigned char)s.ptr[i] - '0';
        if (d > 9)
            return CN_ESYNTAX;
        if (v > (UINT64_MAX - d) / 10)
            return CN_ERANGE;
        v = v * 10 + d;
    }
    *out_v = v;
    return 0;
}

const char *cn_strerror(int err)
{
    switch (err) {
    case CN_OK:
        return "ok";
    case CN_ELIMIT:
        return "limit reached";
    case CN_ESYNTAX:
        return "malformed input";
    default:
        return err < 0 ? strerror(-err) : "unknown error";
    }
}

int cn_mkdirs(const char *dir)
{
    char tmp[4096];
    if (snprintf(tmp, sizeof(tmp), "%s", dir) >= (int)sizeof(tmp))
        return -ENAMETOOLONG;
    for (char *p = tmp + 1; *p; p++) {
        if (*p == '/') {
            *p = '\0';
            if (mkdir(tmp, 0750) != 0 && errno != EEXIST)
                return -errno;
            *p = '/';
        }
    }
    if (mkdir(tmp, 0750) != 0 && errno != EEXIST)
        return -errno;
    return 0;
}
