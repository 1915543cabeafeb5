/* Fuzzes request parameters as the Nacos API reads them: the input split at its first NUL
 * into a query string and a form body, parsed into one parameter set, then the metadata
 * parameter (JSON or k=v,k2=v2) canonicalised. Properties: parse returns 0 or an error; every
 * lookup finds the first value; canonical metadata is a JSON object that parses back to itself
 * and stays within CN_REG_MAX_METADATA_BYTES. */
#include "registry/registry.h"
#include "registry/util.h"

#include <jansson.h>

static void check(int ok)
{
    if (!ok)
        __builtin_trap();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *p = (const char *)data;
    const char *nul = memchr(p, '\0', size);
    struct cn_slice query = {p, nul ? (size_t)(nul - p) : size};
    struct cn_slice body = {nul ? nul + 1 : p + size, nul ? size - query.len - 1 : 0};
    struct cn_form f;
    cn_form_init(&f, size + 16);
    int rc = cn_form_parse(&f, query);
    check(rc == 0 || rc == CN_ESYNTAX || rc == CN_ELIMIT);
    if (rc == 0) {
        rc = cn_form_parse(&f, body);
        check(rc == 0 || rc == CN_ESYNTAX || rc == CN_ELIMIT);
    }
    check(f.num <= CN_FORM_MAX_PARAMS);
    struct cn_slice v;
    static const char *const names[] = {"serviceName",       "ip",  "port", "metadata",
                                        "Listening-Configs", "beat"};
    for (size_t i = 0; i < CN_ARRAY_LEN(names); i++)
        if (cn_form_get(&f, names[i], &v))
            check(v.len <= f.text.len);
    struct cn_slice meta = cn_form_get(&f, "metadata", &v) ? v : query;
    struct cn_buf out;
    cn_buf_init(&out, 2 * CN_REG_MAX_METADATA_BYTES);
    rc = cn_reg_parse_metadata(meta, &out);
    check(rc == 0 || rc == CN_EINVAL || rc == CN_ELIMIT);
    if (rc == 0) {
        check(out.len <= CN_REG_MAX_METADATA_BYTES);
        json_t *j = json_loadb(out.ptr, out.len, 0, NULL);
        check(json_is_object(j));
        struct cn_buf again;
        cn_buf_init(&again, 2 * CN_REG_MAX_METADATA_BYTES);
        check(cn_reg_parse_metadata(cn_buf_slice(&out), &again) == 0);
        check(again.len == out.len && memcmp(again.ptr, out.ptr, out.len) == 0);
        cn_buf_release(&again);
        json_decref(j);
    }
    cn_buf_release(&out);
    cn_form_release(&f);
    return 0;
}
