/* Fuzzes the TraceQL parser and matcher. Properties: the result is 0, CN_ESYNTAX, CN_ELIMIT
 * or CN_ENOMEM; a failure gives a printable message that starts with its byte offset, the
 * offset lies within the input (or at the length limit), and no query comes back; a parsed
 * query keeps the limits and its invariants, and matching a span terminates with bits only
 * for spansets that exist. */
#include "telemetry/traceql.h"

static void check(int ok)
{
    if (!ok)
        __builtin_trap();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct cn_tql_query *q = (void *)1;
    char err[256];
    size_t off = (size_t)-1;
    int rc = cn_tql_parse(&q, (struct cn_slice){(const char *)data, size}, err, sizeof(err), &off);
    check(rc == 0 || rc == CN_ESYNTAX || rc == CN_ELIMIT || rc == CN_ENOMEM);
    if (rc != 0) {
        check(q == NULL);
        check(off <= size || off == CN_TQL_MAX_QUERY);
        char prefix[40];
        snprintf(prefix, sizeof(prefix), "at offset %zu: ", off);
        check(strncmp(err, prefix, strlen(prefix)) == 0);
        for (const char *p = err; *p; p++)
            check(*p >= 0x20 && *p <= 0x7e);
        return 0;
    }
    check(q != NULL && size <= CN_TQL_MAX_QUERY);
    check(q->num_spansets >= 1 && q->num_spansets <= CN_TQL_MAX_SPANSETS);
    for (size_t i = 0; i < q->num_spansets; i++) {
        check(q->spansets[i].num_conds <= CN_TQL_MAX_CONDS);
        for (size_t j = 0; j < q->spansets[i].num_conds; j++) {
            const struct cn_tql_cond *c = &q->spansets[i].conds[j];
            check((c->field <= CN_TQL_ATTR_RESOURCE) == (c->key != NULL));
            check(c->has_re == (c->op == CN_TQL_RE || c->op == CN_TQL_NRE));
            check(!c->has_re || c->vtype == CN_TQL_V_STR);
            check((c->vtype == CN_TQL_V_STR) == (c->str != NULL));
        }
    }
    /* Match against a span whose attributes are named after the query's own keys. */
    struct cn_kv kvs[3] = {
        {CN_SLICE_LIT("http.route"), {.type = CN_VAL_STR, .u.s = CN_SLICE_LIT("/a/b")}},
        {CN_SLICE_LIT("n"), {.type = CN_VAL_INT, .u.i = 500}},
        {CN_SLICE_LIT("d"), {.type = CN_VAL_DOUBLE, .u.d = 0.5}},
    };
    if (q->spansets[0].num_conds && q->spansets[0].conds[0].key) {
        kvs[0].key = cn_slice_of(q->spansets[0].conds[0].key);
        if (q->spansets[0].conds[0].str)
            kvs[0].val.u.s =
                (struct cn_slice){q->spansets[0].conds[0].str, q->spansets[0].conds[0].str_len};
    }
    struct cn_resource res = {.attrs = {kvs + 1, 2, 0}, .service = CN_SLICE_LIT("svc")};
    struct cn_span s = {.name = CN_SLICE_LIT("GET /"),
                        .kind = CN_KIND_SERVER,
                        .status_code = CN_STATUS_ERROR,
                        .start_ns = 1,
                        .end_ns = 1000001,
                        .attrs = {kvs, 3, 0},
                        .resource = &res};
    unsigned bits = cn_tql_match_bits(q, &s);
    check((bits & ~cn_tql_all_bits(q)) == 0);
    cn_tql_free(q);
    return 0;
}
