/* Fuzzes the Nacos listener path: Listening-Configs decoded a second time as Nacos does, then
 * split into records. Properties: parsing returns a count within bounds or an error; every
 * key's slices lie inside the decoded text; a changed-keys answer encoded with Java's
 * URLEncoder decodes back to the same bytes. */
#include "registry/util.h"

static void check(int ok)
{
    if (!ok)
        __builtin_trap();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct cn_slice in = {(const char *)data, size};
    struct cn_buf dec;
    cn_buf_init(&dec, size + 1);
    int rc = cn_url_decode(&dec, in, 1);
    check(rc == 0 || rc == CN_ESYNTAX);
    struct cn_slice text = rc == 0 ? cn_buf_slice(&dec) : in;
    struct cn_listen_key keys[16];
    long n = cn_listen_parse(text, keys, 16);
    check(n == CN_ESYNTAX || n == CN_ELIMIT || (n >= 0 && n <= 16));
    for (long i = 0; i < n; i++) {
        const struct cn_slice *s[] = {&keys[i].data_id, &keys[i].group, &keys[i].md5,
                                      &keys[i].tenant};
        for (int k = 0; k < 4; k++)
            check(s[k]->len == 0 ||
                  (s[k]->ptr >= text.ptr && s[k]->ptr + s[k]->len <= text.ptr + text.len));
        check(keys[i].data_id.len > 0 && keys[i].group.len > 0);
    }
    /* Round trip of the answer's encoding. */
    struct cn_buf enc, back;
    cn_buf_init(&enc, 3 * size + 1);
    cn_buf_init(&back, 3 * size + 1); /* the decoder reserves its input's length */
    check(cn_url_encode_java(&enc, in) == 0);
    check(cn_url_decode(&back, cn_buf_slice(&enc), 1) == 0);
    check(back.len == size && (size == 0 || memcmp(back.ptr, data, size) == 0));
    cn_buf_release(&enc);
    cn_buf_release(&back);
    cn_buf_release(&dec);
    return 0;
}
