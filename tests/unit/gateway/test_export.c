/* The gateway's own telemetry encoding (src/gateway/export.c): a batch of request records
 * encoded as OTLP protobuf and read back with the telemetry decoder, as the receiver of an
 * export (cairn up's store, or any OTLP collector) reads it. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "gateway/internal.h"
#include "telemetry/store.h"

#define SET(r, field, s)                                                                           \
    do {                                                                                           \
        size_t n_ = strlen(s);                                                                     \
        memcpy((r)->field, (s), n_);                                                               \
        (r)->field##_len = (uint8_t)n_;                                                            \
    } while (0)

static struct gw_batch *batch3(char *long_path)
{
    struct gw_batch *b = calloc(1, sizeof(*b) + 3 * sizeof(b->recs[0]));
    assert_non_null(b);
    b->n = b->cap = 3;
    for (int i = 0; i < 3; i++) {
        struct gw_rec *r = &b->recs[i];
        memset(r->trace_id, 0x10 + i, 16);
        memset(r->span_id, 0x20 + i, 8);
        r->start_ns = 1700000000000000000ull + (uint64_t)i;
        SET(r, method, "GET");
        SET(r, route, "all");
    }
    /* 0: sampled, with a parent, answered 200 in 1.2345 ms */
    struct gw_rec *r = &b->recs[0];
    r->sampled = r->flags = 1;
    r->has_parent = 1;
    memset(r->parent_id, 0x30, 8);
    r->status = 200;
    r->end_ns = r->start_ns + 1234500;
    SET(r, path, "/shop/items");
    SET(r, host, "example.com");
    SET(r, ip, "127.0.0.1");
    SET(r, cluster, "shop");
    SET(r, endpoint, "127.0.0.1:8080");
    /* 1: not sampled (an access-log record only), 502 after 17 s */
    r = &b->recs[1];
    r->status = 502;
    r->end_ns = r->start_ns + 17000000000ull;
    SET(r, method, "POST");
    SET(r, path, "/pay");
    SET(r, cluster, "pay");
    /* 2: sampled, aborted, no cluster; the longest path and route kept (192 bytes) */
    r = &b->recs[2];
    r->sampled = r->flags = 1;
    r->end_ns = r->start_ns + 999;
    memset(long_path, 'p', GW_REC_STR);
    long_path[0] = '/';
    long_path[GW_REC_STR] = '\0';
    SET(r, path, long_path);
    memset(r->route, 'r', GW_REC_STR);
    r->route_len = GW_REC_STR;
    return b;
}

static const struct cn_val *attr(const struct cn_kvs *kvs, const char *key)
{
    for (uint32_t i = 0; i < kvs->num; i++)
        if (cn_slice_eq(kvs->items[i].key, cn_slice_of(key)))
            return &kvs->items[i].val;
    return NULL;
}

static void assert_str_attr(const struct cn_kvs *kvs, const char *key, const char *want)
{
    const struct cn_val *v = attr(kvs, key);
    assert_non_null(v);
    assert_int_equal(v->type, CN_VAL_STR);
    assert_int_equal(v->u.s.len, strlen(want));
    assert_memory_equal(v->u.s.ptr, want, strlen(want));
}

static void decode(struct cn_tel_batch *tb, struct cn_buf *body, enum cn_body_kind kind)
{
    char err[256] = "";
    cn_tel_batch_init(tb, 1u << 20);
    int rc = cn_tel_decode(tb, kind, (const uint8_t *)body->ptr, body->len, NULL, err, sizeof(err));
    if (rc)
        fail_msg("decode: %s", err);
    assert_int_equal(tb->rejected, 0);
}

static void test_spans(void **state)
{
    (void)state;
    char long_path[GW_REC_STR + 1];
    struct gw_batch *b = batch3(long_path);
    struct cn_buf body;
    cn_buf_init(&body, 1u << 20);
    assert_int_equal(gw_tel_encode(&body, b, CN_SLICE_LIT("edge-gw"), 0), 2);
    struct cn_tel_batch tb;
    decode(&tb, &body, CN_BODY_TRACES_PB);
    assert_int_equal(tb.num_spans, 2); /* the unsampled record is no span */
    const struct cn_span *s = &tb.spans[0];
    assert_memory_equal(s->trace_id, b->recs[0].trace_id, 16);
    assert_memory_equal(s->span_id, b->recs[0].span_id, 8);
    assert_memory_equal(s->parent_id, b->recs[0].parent_id, 8);
    assert_true(cn_slice_eq(s->name, CN_SLICE_LIT("GET all")));
    assert_int_equal(s->kind, CN_KIND_SERVER);
    assert_int_equal(s->status_code, CN_STATUS_UNSET);
    assert_int_equal(s->start_ns, b->recs[0].start_ns);
    assert_int_equal(s->end_ns, b->recs[0].end_ns);
    assert_int_equal(s->flags, 1);
    assert_true(cn_slice_eq(s->resource->service, CN_SLICE_LIT("edge-gw")));
    assert_true(cn_slice_eq(s->scope->name, CN_SLICE_LIT("cairn-gateway")));
    assert_int_equal(s->attrs.num, 8);
    assert_str_attr(&s->attrs, "http.request.method", "GET");
    assert_str_attr(&s->attrs, "url.path", "/shop/items");
    assert_str_attr(&s->attrs, "server.address", "example.com");
    assert_str_attr(&s->attrs, "client.address", "127.0.0.1");
    assert_str_attr(&s->attrs, "http.route", "all");
    assert_str_attr(&s->attrs, "cairn.gateway.cluster", "shop");
    assert_str_attr(&s->attrs, "cairn.gateway.endpoint", "127.0.0.1:8080");
    const struct cn_val *code = attr(&s->attrs, "http.response.status_code");
    assert_non_null(code);
    assert_int_equal(code->type, CN_VAL_INT);
    assert_int_equal(code->u.i, 200);

    s = &tb.spans[1]; /* aborted, root, longest strings */
    assert_memory_equal(s->trace_id, b->recs[2].trace_id, 16);
    static const uint8_t zero[8];
    assert_memory_equal(s->parent_id, zero, 8);
    assert_int_equal(s->name.len, 3 + 1 + GW_REC_STR);
    assert_int_equal(s->attrs.num, 4);
    assert_str_attr(&s->attrs, "url.path", long_path);
    assert_str_attr(&s->attrs, "cairn.gateway.outcome", "aborted");
    assert_null(attr(&s->attrs, "http.response.status_code"));
    assert_null(attr(&s->attrs, "cairn.gateway.cluster"));
    cn_tel_batch_release(&tb);

    /* A 5xx is an error span with its status message. */
    b->recs[0].status = 503;
    cn_buf_reset(&body);
    assert_int_equal(gw_tel_encode(&body, b, CN_SLICE_LIT("edge-gw"), 0), 2);
    decode(&tb, &body, CN_BODY_TRACES_PB);
    assert_int_equal(tb.spans[0].status_code, CN_STATUS_ERROR);
    assert_true(cn_slice_eq(tb.spans[0].status_message, CN_SLICE_LIT("HTTP 503")));
    cn_tel_batch_release(&tb);

    /* Nothing sampled: nothing written. */
    b->recs[0].sampled = b->recs[2].sampled = 0;
    cn_buf_reset(&body);
    assert_int_equal(gw_tel_encode(&body, b, CN_SLICE_LIT("edge-gw"), 0), 0);
    assert_int_equal(body.len, 0);
    /* A body past the buffer's maximum is refused. */
    struct cn_buf small;
    cn_buf_init(&small, 64);
    assert_int_equal(gw_tel_encode(&small, b, CN_SLICE_LIT("edge-gw"), 1), CN_ELIMIT);
    cn_buf_release(&small);
    cn_buf_release(&body);
    free(b);
}

static void test_logs(void **state)
{
    (void)state;
    char long_path[GW_REC_STR + 1];
    struct gw_batch *b = batch3(long_path);
    struct cn_buf body;
    cn_buf_init(&body, 1u << 20);
    assert_int_equal(gw_tel_encode(&body, b, CN_SLICE_LIT("edge-gw"), 1), 3);
    struct cn_tel_batch tb;
    decode(&tb, &body, CN_BODY_LOGS_PB);
    assert_int_equal(tb.num_logs, 3); /* sampled or not, every request is logged */
    static const char *lines[3] = {"GET /shop/items 200 1.235ms", "POST /pay 502 17000.000ms",
                                   NULL};
    char last[512];
    snprintf(last, sizeof(last), "GET %s aborted 0.001ms", long_path);
    lines[2] = last;
    static const uint8_t sev[3] = {9, 13, 13};
    for (int i = 0; i < 3; i++) {
        const struct cn_log *l = &tb.logs[i];
        assert_int_equal(l->body.type, CN_VAL_STR);
        assert_int_equal(l->body.u.s.len, strlen(lines[i]));
        assert_memory_equal(l->body.u.s.ptr, lines[i], strlen(lines[i]));
        assert_int_equal(l->severity_number, sev[i]);
        assert_true(cn_slice_eq(l->severity_text,
                                sev[i] == 9 ? CN_SLICE_LIT("INFO") : CN_SLICE_LIT("WARN")));
        assert_int_equal(l->time_ns, b->recs[i].end_ns);
        assert_int_equal(l->observed_ns, b->recs[i].end_ns);
        assert_memory_equal(l->trace_id, b->recs[i].trace_id, 16);
        assert_memory_equal(l->span_id, b->recs[i].span_id, 8);
        assert_int_equal(l->flags, b->recs[i].flags);
        assert_true(cn_slice_eq(l->resource->service, CN_SLICE_LIT("edge-gw")));
        assert_true(cn_slice_eq(l->scope->name, CN_SLICE_LIT("cairn-gateway.access")));
    }
    assert_int_equal(tb.logs[0].attrs.num, 8);
    assert_str_attr(&tb.logs[1].attrs, "http.request.method", "POST");
    assert_str_attr(&tb.logs[1].attrs, "cairn.gateway.cluster", "pay");
    assert_int_equal(attr(&tb.logs[1].attrs, "http.response.status_code")->u.i, 502);
    cn_tel_batch_release(&tb);
    cn_buf_release(&body);
    free(b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_spans),
        cmocka_unit_test(test_logs),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
