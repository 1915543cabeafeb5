/* Fuzzes what the registry reads from etcd: the JSON gateway's answers (cn_etcd_parse, every
 * kind) and, in cluster mode, its own keys and values (cn_etcd_key_parse,
 * cn_etcd_value_parse). The first byte picks: below 8 an answer kind, otherwise a key, a NUL,
 * and a value. Properties: no crash, a bounded result; every slice lies inside the parse's
 * storage; a parsed key encodes back to the same bytes. */
#include "registry/etcd-layout.h"
#include "registry/etcd.h"

#include <string.h>

static void check(int ok)
{
    if (!ok)
        __builtin_trap();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    const char *p = (const char *)data + 1;
    size_t n = size - 1;
    if (data[0] < 8) {
        struct cn_etcd_resp r;
        cn_etcd_resp_init(&r);
        int rc = cn_etcd_parse((enum cn_etcd_kind)data[0], p, n, 1 << 16, &r);
        check(rc == 0 || rc == CN_ESYNTAX || rc == CN_ELIMIT || rc == CN_EIO || rc == CN_ENOMEM);
        for (size_t i = 0; i < r.num_kvs; i++) {
            const struct cn_slice *s[] = {&r.kvs[i].key, &r.kvs[i].value};
            for (int k = 0; k < 2; k++)
                check(s[k]->len == 0 || (s[k]->ptr >= r.store.ptr &&
                                         s[k]->ptr + s[k]->len <= r.store.ptr + r.store.len));
        }
        check(memchr(r.error, '\0', sizeof(r.error)) != NULL);
        cn_etcd_resp_release(&r);
        return 0;
    }
    const char *nul = memchr(p, '\0', n);
    struct cn_slice key = {p, nul ? (size_t)(nul - p) : n};
    struct cn_slice val =
        nul ? (struct cn_slice){nul + 1, n - key.len - 1} : (struct cn_slice){"", 0};
    struct cn_etcd_key k;
    check(cn_etcd_key_parse(key, CN_SLICE_LIT("/cairn"), &k) == 0);
    if (k.kind == CN_EK_INSTANCE || k.kind == CN_EK_SERVICE || k.kind == CN_EK_CONFIG) {
        struct cn_buf b;
        cn_buf_init(&b, 1 << 16);
        int rc = k.kind == CN_EK_INSTANCE
                     ? cn_etcd_key_instance(&b, CN_SLICE_LIT("/cairn"), k.ns, k.group, k.service,
                                            k.cluster, k.ip, k.port)
                 : k.kind == CN_EK_SERVICE
                     ? cn_etcd_key_service(&b, CN_SLICE_LIT("/cairn"), k.ns, k.group, k.service)
                     : cn_etcd_key_config(&b, CN_SLICE_LIT("/cairn"), k.ns, k.group, k.service);
        check(rc == 0);
        /* Equal up to the case of %2f and leading zeros of the port: parse again. */
        struct cn_etcd_key k2;
        check(cn_etcd_key_parse(cn_buf_slice(&b), CN_SLICE_LIT("/cairn"), &k2) == 0);
        check(k2.kind == k.kind && strcmp(k2.ns, k.ns) == 0 && strcmp(k2.group, k.group) == 0 &&
              strcmp(k2.service, k.service) == 0 && k2.port == k.port);
        cn_buf_release(&b);
    }
    if (k.kind != CN_EK_NONE) {
        struct cn_etcd_value v;
        const char *why = NULL;
        if (cn_etcd_value_parse(k.kind, val, &v, &why) == 0) {
            check(v.content.len <= val.len);
            cn_etcd_value_release(&v);
        } else {
            check(why != NULL);
        }
    }
    return 0;
}
