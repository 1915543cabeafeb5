/* Small helpers of the registry: names, hashes, MD5, metadata. */
#include "registry/internal.h"
#include "registry/util.h"

#include <jansson.h>
#include <openssl/evp.h>
/* Inlined: the registry hashes short names on every request. */
#define XXH_INLINE_ALL
#include <xxhash.h>

uint64_t reg_hash(const char *parts[], const size_t lens[], size_t n)
{
    /* Each part seeds the next, with its length mixed in: "ab"+"c" differs from "a"+"bc". */
    uint64_t h = 0x9e3779b97f4a7c15ull;
    for (size_t i = 0; i < n; i++)
        h = XXH3_64bits_withSeed(parts[i], lens[i], h ^ (lens[i] * 0xff51afd7ed558ccdull));
    return h;
}

char *reg_strdup(struct cn_slice s)
{
    char *p = malloc(s.len + 1);
    if (!p)
        return NULL;
    if (s.len)
        memcpy(p, s.ptr, s.len);
    p[s.len] = '\0';
    return p;
}

void cn_reg_md5_hex(const void *data, size_t len, char out[33])
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int n = 0;
    static const char hex[] = "0123456789abcdef";
    if (EVP_Digest(data, len, md, &n, EVP_md5(), NULL) != 1 || n != 16) {
        out[0] = '\0';
        return;
    }
    for (unsigned i = 0; i < 16; i++) {
        out[2 * i] = hex[md[i] >> 4];
        out[2 * i + 1] = hex[md[i] & 15];
    }
    out[32] = '\0';
}

struct cn_slice cn_reg_ns(struct cn_slice ns)
{
    if (ns.len == 0)
        return CN_SLICE_LIT(CN_REG_DEFAULT_NAMESPACE);
    return ns;
}

int cn_reg_check_name(struct cn_slice s)
{
    if (s.len == 0 || s.len > CN_REG_MAX_NAME_BYTES)
        return CN_EINVAL;
    int bad = 0;
    for (size_t i = 0; i < s.len; i++) { /* no early exit: the loop vectorises */
        unsigned char c = (unsigned char)s.ptr[i];
        bad |= c < 0x20 || c == 0x7f;
    }
    for (const char *at = memchr(s.ptr, '@', s.len); at && !bad;
         at = memchr(at + 1, '@', (size_t)(s.ptr + s.len - at - 1)))
        bad = at + 1 < s.ptr + s.len && at[1] == '@';
    return bad ? CN_EINVAL : 0;
}

int cn_reg_json_str(struct cn_buf *b, const char *s, size_t len)
{
    static const char hex[] = "0123456789abcdef";
    if (cn_buf_reserve(b, len + 2) != 0)
        return CN_ELIMIT;
    b->ptr[b->len++] = '"';
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        char esc[6];
        size_t n = 0;
        if (c == '"' || c == '\\') {
            esc[0] = '\\';
            esc[1] = (char)c;
            n = 2;
        } else if (c < 0x20) {
            esc[0] = '\\';
            switch (c) {
            case '\n':
                esc[1] = 'n';
                n = 2;
                break;
            case '\r':
                esc[1] = 'r';
                n = 2;
                break;
            case '\t':
                esc[1] = 't';
                n = 2;
                break;
            default:
                memcpy(esc, "\\u00", 4);
                esc[4] = hex[c >> 4];
                esc[5] = hex[c & 15];
                n = 6;
            }
        }
        if (n) {
            if (cn_buf_append(b, esc, n) != 0)
                return CN_ELIMIT;
        } else if (b->len < b->cap) {
            b->ptr[b->len++] = (char)c;
        } else if (cn_buf_append(b, &c, 1) != 0) {
            return CN_ELIMIT;
        }
    }
    return cn_buf_append(b, "\"", 1) == 0 ? 0 : CN_ELIMIT;
}

int cn_reg_json_double(struct cn_buf *b, double v)
{
    /* As Java's Double.toString prints the values Nacos clients send: 1.0, 0.5, 2.25. */
    char t[64];
    if (v > -1e15 && v < 1e15 && v == (double)(int64_t)v) /* in range before the cast */
        snprintf(t, sizeof(t), "%lld.0", (long long)v);
    else
        snprintf(t, sizeof(t), "%.15g", v);
    return cn_buf_puts(b, t) == 0 ? 0 : CN_ELIMIT;
}

static int dump_cb(const char *buf, size_t size, void *data)
{
    return cn_buf_append(data, buf, size) == 0 ? 0 : -1;
}

int cn_reg_parse_metadata(struct cn_slice in, struct cn_buf *out)
{
    size_t start = out->len;
    /* Trim, as Nacos' UtilsAndCommons.parseMetadata does. */
    while (in.len && (in.ptr[0] == ' ' || in.ptr[0] == '\t'))
        in.ptr++, in.len--;
    while (in.len && (in.ptr[in.len - 1] == ' ' || in.ptr[in.len - 1] == '\t'))
        in.len--;
    if (in.len > CN_REG_MAX_METADATA_BYTES)
        return CN_ELIMIT;
    if (in.len == 0 || (in.len == 2 && in.ptr[0] == '{' && in.ptr[1] == '}'))
        return cn_buf_append(out, "{}", 2) == 0 ? 0 : CN_ELIMIT; /* the common case */
    json_t *obj = NULL;
    if (in.len == 0) {
        obj = json_object();
    } else if (in.ptr[0] == '{') {
        json_error_t je;
        json_t *j = json_loadb(in.ptr, in.len, JSON_REJECT_DUPLICATES, &je);
        if (!j || !json_is_object(j)) {
            json_decref(j);
            return CN_EINVAL;
        }
        obj = json_object();
        const char *k;
        json_t *v;
        json_object_foreach(j, k, v)
        {
            char num[64];
            const char *sv = NULL;
            if (json_is_string(v))
                sv = json_string_value(v);
            else if (json_is_integer(v))
                snprintf(num, sizeof(num), "%lld", (long long)json_integer_value(v)), sv = num;
            else if (json_is_real(v))
                snprintf(num, sizeof(num), "%.17g", json_real_value(v)), sv = num;
            else if (json_is_true(v))
                sv = "true";
            else if (json_is_false(v))
                sv = "false";
            else if (json_is_null(v))
                continue;
            else {
                json_decref(j);
                json_decref(obj);
                return CN_EINVAL; /* nested objects and arrays are not metadata */
            }
            json_object_set_new(obj, k, json_string(sv));
        }
        json_decref(j);
    } else {
        /* "k=v,k2=v2"; a NUL byte could not come back out of the JSON text */
        if (memchr(in.ptr, '\0', in.len))
            return CN_EINVAL;
        obj = json_object();
        size_t i = 0;
        while (i < in.len) {
            size_t e = i;
            while (e < in.len && in.ptr[e] != ',')
                e++;
            const char *eq = memchr(in.ptr + i, '=', e - i);
            if (!eq || eq == in.ptr + i) {
                json_decref(obj);
                return CN_EINVAL;
            }
            char *k = reg_strdup((struct cn_slice){in.ptr + i, (size_t)(eq - (in.ptr + i))});
            json_t *v = json_stringn(eq + 1, (size_t)(in.ptr + e - eq - 1));
            if (!k || !v || json_object_set_new(obj, k, v) != 0) {
                free(k);
                json_decref(obj);
                return CN_EINVAL;
            }
            free(k);
            i = e + 1;
        }
    }
    int rc = json_dump_callback(obj, dump_cb, out, JSON_COMPACT | JSON_SORT_KEYS);
    json_decref(obj);
    if (rc != 0 || out->len - start > CN_REG_MAX_METADATA_BYTES) {
        out->len = start;
        return CN_ELIMIT;
    }
    return 0;
}

/* Reads a metadata value that must be a positive number of milliseconds. */
uint64_t cn_reg_meta_ms(const char *metadata, const char *key, uint64_t def)
{
    json_t *j = json_loads(metadata, 0, NULL);
    const char *v = json_string_value(json_object_get(j, key));
    uint64_t out = def;
    if (v) {
        uint64_t x;
        if (cn_slice_to_u64(cn_slice_of(v), &x) == 0 && x > 0 && x < (1ull << 40))
            out = x;
    }
    json_decref(j);
    return out;
}

char *cn_reg_meta_str(const char *metadata, const char *key)
{
    json_t *j = json_loads(metadata, 0, NULL);
    const char *v = json_string_value(json_object_get(j, key));
    char *out = reg_strdup(cn_slice_of(v ? v : ""));
    json_decref(j);
    return out;
}
