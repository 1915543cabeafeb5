/* Fuzzes the strict chunked decoder. Property: feeding the input whole or split at any point
 * gives the same result, the same bytes consumed and the same decoded data. */
#include "http/chunked.h"

static const struct cn_http_limits lim = {.max_header_bytes = 256, .max_headers = 8};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    size_t split = data[0] % size;
    const char *in = (const char *)data + 1;
    size_t len = size - 1;
    if (split > len)
        split = len;

    struct cn_chunked a, b;
    struct cn_buf oa, ob;
    cn_chunked_init(&a);
    cn_chunked_init(&b);
    cn_buf_init(&oa, 4096);
    cn_buf_init(&ob, 4096);
    size_t ua = 0, ub1 = 0, ub2 = 0;
    enum cn_chunked_result ra = cn_chunked_decode(&a, in, len, &oa, &lim, &ua);
    enum cn_chunked_result rb = cn_chunked_decode(&b, in, split, &ob, &lim, &ub1);
    if (rb == CN_CHUNKED_MORE) {
        rb = cn_chunked_decode(&b, in + split, len - split, &ob, &lim, &ub2);
        ub1 += ub2;
    }
    if (ra != rb || oa.len != ob.len || (oa.len && memcmp(oa.ptr, ob.ptr, oa.len) != 0))
        __builtin_trap();
    if (ra == CN_CHUNKED_DONE && ua != ub1)
        __builtin_trap();
    if (ua > len)
        __builtin_trap();
    cn_buf_release(&oa);
    cn_buf_release(&ob);
    return 0;
}
