/* Fuzzes the query layer's parsers: the input's first byte picks one (attribute predicate,
 * time, duration, status/kind/severity name, code link template, full-text term match), the
 * rest is its text. Properties: a parser returns 0 or a negative code and, on failure, a
 * NUL-terminated message; a parsed predicate matches without crashing and releases cleanly;
 * a time round-trips through its "ns" form; a checked template gives URLs within bounds. */
#include "telemetry/query.h"

static void check(int ok)
{
    if (!ok)
        __builtin_trap();
}

static struct cn_kv kv[] = {
    {CN_SLICE_LIT("k"), {CN_VAL_STR, {.s = CN_SLICE_LIT("value 42")}}},
    {CN_SLICE_LIT("n"), {CN_VAL_INT, {.i = 42}}},
    {CN_SLICE_LIT("d"), {CN_VAL_DOUBLE, {.d = -0.5}}},
    {CN_SLICE_LIT("code.filepath"), {CN_VAL_STR, {.s = CN_SLICE_LIT("a/b c.go")}}},
    {CN_SLICE_LIT("code.lineno"), {CN_VAL_INT, {.i = 7}}},
};
static struct cn_kvs kvs = {kv, 5, 0};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    struct cn_slice t = {(const char *)data + 1, size - 1};
    char err[256];
    err[0] = '\0';
    switch (data[0] % 6) {
    case 0: {
        struct cn_pred p;
        int rc = cn_pred_parse(&p, t, err, sizeof(err));
        check(rc == 0 || rc == CN_ESYNTAX || rc == CN_ELIMIT || rc == CN_ENOMEM);
        if (rc == 0) {
            const struct cn_kvs *lists[] = {&kvs};
            int m = cn_pred_match(&p, lists, 1);
            check(m == 0 || m == 1);
            check(p.key_len >= 1 && p.key_len <= CN_QUERY_MAX_KEY_BYTES);
            cn_pred_release(&p);
        } else {
            check(memchr(err, '\0', sizeof(err)) != NULL && err[0]);
        }
        break;
    }
    case 1: {
        uint64_t v;
        if (cn_query_parse_time(t, &v) == 0) {
            char b[32];
            int n = snprintf(b, sizeof(b), "%lluns", (unsigned long long)v);
            uint64_t w;
            check(cn_query_parse_time((struct cn_slice){b, (size_t)n}, &w) == 0 && w == v);
        }
        break;
    }
    case 2: {
        uint64_t v;
        int rc = cn_query_parse_duration(t, &v);
        check(rc == 0 || rc == CN_ESYNTAX || rc == CN_ERANGE);
        break;
    }
    case 3: {
        int v;
        uint8_t s;
        if (cn_query_parse_status(t, &v) == 0)
            check(v >= 0 && v <= 2);
        if (cn_query_parse_kind(t, &v) == 0)
            check(v >= 0 && v <= 5);
        if (cn_query_parse_severity(t, &s) == 0)
            check(s >= 1 && s <= 24);
        break;
    }
    case 4: {
        char tmpl[512];
        size_t n = t.len < sizeof(tmpl) - 1 ? t.len : sizeof(tmpl) - 1;
        memcpy(tmpl, t.ptr, n);
        tmpl[n] = '\0';
        struct cn_code_links *cl = cn_code_links_new();
        if (!cl)
            return 0;
        if (cn_code_links_add(cl, "*", tmpl, err, sizeof(err)) == 0) {
            struct cn_kv rkv[] = {
                {CN_SLICE_LIT("service.version"), {CN_VAL_STR, {.s = CN_SLICE_LIT("1.0 \"x\"")}}}};
            struct cn_resource r = {{rkv, 1, 0}, CN_SLICE_LIT("svc"), {NULL, 0}};
            char url[64];
            int len = cn_code_url(cl, &r, &kvs, url, sizeof(url));
            check(len == CN_ERANGE || (len >= 0 && len < (int)sizeof(url)));
            if (len > 0)
                check(strlen(url) == (size_t)len && !strchr(url, '"') && !strchr(url, ' '));
        } else {
            check(err[0] != '\0');
        }
        cn_code_links_free(cl);
        break;
    }
    case 5: {
        /* The first half is the body, the second the term. */
        size_t half = t.len / 2;
        struct cn_slice term = {t.ptr + half, t.len - half};
        struct cn_log l;
        memset(&l, 0, sizeof(l));
        l.body.type = CN_VAL_STR;
        l.body.u.s = (struct cn_slice){t.ptr, half};
        struct cn_log_query q;
        memset(&q, 0, sizeof(q));
        q.terms = &term;
        q.num_terms = 1;
        int m = cn_query_log_matches(&q, &l);
        check(m == 0 || m == 1);
        break;
    }
    }
    return 0;
}
