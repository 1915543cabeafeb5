#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <math.h>

#include "telemetry/otlp-pb.h"

/* ---- a tiny protobuf writer: messages are built inside out ---- */

struct pb {
    uint8_t *d;
    size_t n, cap;
};

static struct pb pb_new(void)
{
    return (struct pb){NULL, 0, 0};
}

static void pb_free(struct pb *m)
{
    free(m->d);
    *m = pb_new();
}

static void pb_raw(struct pb *m, const void *p, size_t n)
{
    if (m->n + n > m->cap) {
        size_t cap = m->cap ? m->cap : 64;
        while (cap < m->n + n)
            cap *= 2;
        m->d = realloc(m->d, cap);
        assert_non_null(m->d);
        m->cap = cap;
    }
    if (n)
        memcpy(m->d + m->n, p, n);
    m->n += n;
}

static void pb_varint(struct pb *m, uint64_t v)
{
    uint8_t t[10];
    size_t n = 0;
    while (v >= 0x80) {
        t[n++] = (uint8_t)(v | 0x80);
        v >>= 7;
    }
    t[n++] = (uint8_t)v;
    pb_raw(m, t, n);
}

static void pb_tag(struct pb *m, uint32_t field, unsigned wire)
{
    pb_varint(m, (uint64_t)field << 3 | wire);
}

static void pb_u(struct pb *m, uint32_t field, uint64_t v)
{
    pb_tag(m, field, 0);
    pb_varint(m, v);
}

static void pb_bytes(struct pb *m, uint32_t field, const void *p, size_t n)
{
    pb_tag(m, field, 2);
    pb_varint(m, n);
    pb_raw(m, p, n);
}

static void pb_str(struct pb *m, uint32_t field, const char *s)
{
    pb_bytes(m, field, s, strlen(s));
}

static void pb_f64(struct pb *m, uint32_t field, uint64_t v)
{
    uint8_t t[8];
    for (int i = 0; i < 8; i++)
        t[i] = (uint8_t)(v >> 8 * i);
    pb_tag(m, field, 1);
    pb_raw(m, t, 8);
}

static void pb_f32(struct pb *m, uint32_t field, uint32_t v)
{
    uint8_t t[4];
    for (int i = 0; i < 4; i++)
        t[i] = (uint8_t)(v >> 8 * i);
    pb_tag(m, field, 5);
    pb_raw(m, t, 4);
}

/* Appends sub as a length-delimited field and frees it. */
static void pb_msg(struct pb *m, uint32_t field, struct pb *sub)
{
    pb_bytes(m, field, sub->d, sub->n);
    pb_free(sub);
}

/* ---- OTLP builders ---- */

static struct pb av_str(const char *s)
{
    struct pb a = pb_new();
    pb_str(&a, 1, s);
    return a;
}

static struct pb av_strn(const void *s, size_t n)
{
    struct pb a = pb_new();
    pb_bytes(&a, 1, s, n);
    return a;
}

static struct pb av_bool(int v)
{
    struct pb a = pb_new();
    pb_u(&a, 2, (uint64_t)v);
    return a;
}

static struct pb av_int(int64_t v)
{
    struct pb a = pb_new();
    pb_u(&a, 3, (uint64_t)v);
    return a;
}

static struct pb av_double(double v)
{
    struct pb a = pb_new();
    uint64_t u;
    memcpy(&u, &v, 8);
    pb_f64(&a, 4, u);
    return a;
}

static struct pb av_bytes(const void *p, size_t n)
{
    struct pb a = pb_new();
    pb_bytes(&a, 7, p, n);
    return a;
}

/* An array AnyValue of n items, consumed. */
static struct pb av_array(struct pb *items, size_t n)
{
    struct pb arr = pb_new(), a = pb_new();
    for (size_t i = 0; i < n; i++)
        pb_msg(&arr, 1, &items[i]);
    pb_msg(&a, 5, &arr);
    return a;
}

static struct pb av_array1(struct pb item)
{
    return av_array(&item, 1);
}

/* A KeyValue field (number field) of m; val is consumed. */
static void pb_kv(struct pb *m, uint32_t field, const char *key, struct pb val)
{
    struct pb kv = pb_new();
    pb_str(&kv, 1, key);
    pb_msg(&kv, 2, &val);
    pb_msg(m, field, &kv);
}

/* A kvlist AnyValue from a KeyValueList body built with pb_kv(&list, 1, ...). */
static struct pb av_kvlist(struct pb *list)
{
    struct pb a = pb_new();
    pb_msg(&a, 6, list);
    return a;
}

static const uint8_t TID[16] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16};
static const uint8_t TID2[16] = {0xa0, 0xa1, 0xa2, 0xa3, 0xa4, 0xa5, 0xa6, 0xa7,
                                 0xa8, 0xa9, 0xaa, 0xab, 0xac, 0xad, 0xae, 0xaf};
static const uint8_t SID[8] = {0x21, 0x22, 0x23, 0x24, 0x25, 0x26, 0x27, 0x28};
static const uint8_t SID2[8] = {0xb1, 0xb2, 0xb3, 0xb4, 0xb5, 0xb6, 0xb7, 0xb8};
static const uint8_t PID[8] = {0x31, 0x32, 0x33, 0x34, 0x35, 0x36, 0x37, 0x38};
static const uint8_t ZERO[16];

enum { NO_TID = 1, NO_SID = 2, NO_KIND = 4, NO_TIMES = 8 };

/* A valid span: IDs, the name, kind SERVER, 1000..2000 ns; omit leaves some of them out. */
static struct pb span_new(const char *name, unsigned omit)
{
    struct pb s = pb_new();
    if (!(omit & NO_TID))
        pb_bytes(&s, 1, TID, 16);
    if (!(omit & NO_SID))
        pb_bytes(&s, 2, SID, 8);
    pb_str(&s, 5, name);
    if (!(omit & NO_KIND))
        pb_u(&s, 6, 2);
    if (!(omit & NO_TIMES)) {
        pb_f64(&s, 7, 1000);
        pb_f64(&s, 8, 2000);
    }
    return s;
}

/* ScopeSpans { scope { name: scope_name }, spans... }, consuming the spans. */
static struct pb scope_spans(const char *scope_name, struct pb *spans, size_t n)
{
    struct pb ss = pb_new(), sc = pb_new();
    pb_str(&sc, 1, scope_name);
    pb_msg(&ss, 1, &sc);
    for (size_t i = 0; i < n; i++)
        pb_msg(&ss, 2, &spans[i]);
    return ss;
}

/* ExportTraceServiceRequest with one ResourceSpans (service.name "svc") and one ScopeSpans
 * ("lib") holding the spans, which are consumed. */
static struct pb traces_req(struct pb *spans, size_t n)
{
    struct pb req = pb_new(), rs = pb_new(), res = pb_new();
    pb_kv(&res, 1, "service.name", av_str("svc"));
    pb_msg(&rs, 1, &res);
    struct pb ss = scope_spans("lib", spans, n);
    pb_msg(&rs, 2, &ss);
    pb_msg(&req, 1, &rs);
    return req;
}

static struct pb traces_req1(struct pb span)
{
    return traces_req(&span, 1);
}

/* ExportLogsServiceRequest with one ResourceLogs ("worker") and one ScopeLogs ("jobs"). */
static struct pb logs_req(struct pb *logs, size_t n)
{
    struct pb req = pb_new(), rl = pb_new(), res = pb_new(), sl = pb_new(), sc = pb_new();
    pb_kv(&res, 1, "service.name", av_str("worker"));
    pb_msg(&rl, 1, &res);
    pb_str(&sc, 1, "jobs");
    pb_str(&sc, 2, "1.0");
    pb_msg(&sl, 1, &sc);
    for (size_t i = 0; i < n; i++)
        pb_msg(&sl, 2, &logs[i]);
    pb_msg(&rl, 2, &sl);
    pb_msg(&req, 1, &rl);
    return req;
}

/* ---- decoding and checking ---- */

static char err[2048];

static int traces(struct cn_tel_batch *b, const struct pb *req, const struct cn_tel_limits *lim)
{
    cn_tel_batch_init(b, 4 << 20);
    return cn_otlp_pb_decode_traces(b, req->d, req->n, lim, err, sizeof(err));
}

static int logs(struct cn_tel_batch *b, const struct pb *req, const struct cn_tel_limits *lim)
{
    cn_tel_batch_init(b, 4 << 20);
    return cn_otlp_pb_decode_logs(b, req->d, req->n, lim, err, sizeof(err));
}

static void slice_is(struct cn_slice s, const char *want)
{
    char *tmp = malloc(s.len + 1);
    assert_non_null(tmp);
    if (s.len)
        memcpy(tmp, s.ptr, s.len);
    tmp[s.len] = '\0';
    assert_string_equal(tmp, want);
    free(tmp);
}

static const struct cn_kv *attr(const struct cn_kvs *kvs, const char *key)
{
    for (uint32_t i = 0; i < kvs->num; i++)
        if (cn_slice_eq(kvs->items[i].key, cn_slice_of(key)))
            return &kvs->items[i];
    fail_msg("attribute %s not found", key);
    return NULL;
}

static void str_attr_is(const struct cn_kvs *kvs, const char *key, const char *want)
{
    const struct cn_kv *kv = attr(kvs, key);
    assert_int_equal(kv->val.type, CN_VAL_STR);
    slice_is(kv->val.u.s, want);
}

static void json_attr_is(const struct cn_kvs *kvs, const char *key, int type, const char *want)
{
    const struct cn_kv *kv = attr(kvs, key);
    assert_int_equal(kv->val.type, type);
    slice_is(kv->val.u.s, want);
}

static void hex_is(const uint8_t *id, size_t n, const char *want)
{
    char hex[33];
    cn_hex_encode(hex, id, n);
    assert_string_equal(hex, want);
}

/* POSTed by @opentelemetry/exporter-trace-otlp-proto 0.223 for one server span (375 bytes). */
static const uint8_t js_trace[] = {
    0x0a, 0xf4, 0x02, 0x0a, 0x36, 0x0a, 0x16, 0x0a, 0x0c, 0x73, 0x65, 0x72, 0x76, 0x69, 0x63, 0x65,
    0x2e, 0x6e, 0x61, 0x6d, 0x65, 0x12, 0x06, 0x0a, 0x04, 0x63, 0x61, 0x72, 0x74, 0x0a, 0x1a, 0x0a,
    0x0f, 0x73, 0x65, 0x72, 0x76, 0x69, 0x63, 0x65, 0x2e, 0x76, 0x65, 0x72, 0x73, 0x69, 0x6f, 0x6e,
    0x12, 0x07, 0x0a, 0x05, 0x31, 0x2e, 0x34, 0x2e, 0x32, 0x10, 0x00, 0x12, 0xb9, 0x02, 0x0a, 0x15,
    0x0a, 0x0c, 0x63, 0x61, 0x72, 0x74, 0x2d, 0x68, 0x61, 0x6e, 0x64, 0x6c, 0x65, 0x72, 0x12, 0x05,
    0x30, 0x2e, 0x33, 0x2e, 0x31, 0x12, 0x9f, 0x02, 0x0a, 0x10, 0x5b, 0x8e, 0xff, 0xf7, 0x98, 0x03,
    0x81, 0x03, 0xd2, 0x69, 0xb6, 0x33, 0x81, 0x3f, 0xc6, 0x0c, 0x12, 0x08, 0xee, 0xe1, 0x9b, 0x7e,
    0xc3, 0xc1, 0xb1, 0x71, 0x2a, 0x0d, 0x47, 0x45, 0x54, 0x20, 0x2f, 0x61, 0x70, 0x69, 0x2f, 0x63,
    0x61, 0x72, 0x74, 0x30, 0x02, 0x39, 0x15, 0xcd, 0x85, 0x3d, 0xfe, 0x9c, 0x97, 0x17, 0x41, 0x15,
    0x51, 0x5d, 0x55, 0xfe, 0x9c, 0x97, 0x17, 0x4a, 0x1c, 0x0a, 0x13, 0x68, 0x74, 0x74, 0x70, 0x2e,
    0x72, 0x65, 0x71, 0x75, 0x65, 0x73, 0x74, 0x2e, 0x6d, 0x65, 0x74, 0x68, 0x6f, 0x64, 0x12, 0x05,
    0x0a, 0x03, 0x47, 0x45, 0x54, 0x4a, 0x20, 0x0a, 0x19, 0x68, 0x74, 0x74, 0x70, 0x2e, 0x72, 0x65,
    0x73, 0x70, 0x6f, 0x6e, 0x73, 0x65, 0x2e, 0x73, 0x74, 0x61, 0x74, 0x75, 0x73, 0x5f, 0x63, 0x6f,
    0x64, 0x65, 0x12, 0x03, 0x18, 0xf7, 0x03, 0x4a, 0x18, 0x0a, 0x0b, 0x72, 0x65, 0x74, 0x72, 0x79,
    0x2e, 0x72, 0x61, 0x74, 0x69, 0x6f, 0x12, 0x09, 0x21, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0xd0,
    0x3f, 0x4a, 0x0f, 0x0a, 0x09, 0x63, 0x61, 0x63, 0x68, 0x65, 0x2e, 0x68, 0x69, 0x74, 0x12, 0x02,
    0x10, 0x00, 0x4a, 0x20, 0x0a, 0x0a, 0x75, 0x73, 0x65, 0x72, 0x2e, 0x72, 0x6f, 0x6c, 0x65, 0x73,
    0x12, 0x12, 0x2a, 0x10, 0x0a, 0x07, 0x0a, 0x05, 0x61, 0x64, 0x6d, 0x69, 0x6e, 0x0a, 0x05, 0x0a,
    0x03, 0x6f, 0x70, 0x73, 0x50, 0x00, 0x5a, 0x2f, 0x09, 0x00, 0xc2, 0x15, 0x42, 0xfe, 0x9c, 0x97,
    0x17, 0x12, 0x0a, 0x63, 0x61, 0x63, 0x68, 0x65, 0x2e, 0x6d, 0x69, 0x73, 0x73, 0x1a, 0x16, 0x0a,
    0x09, 0x63, 0x61, 0x63, 0x68, 0x65, 0x2e, 0x6b, 0x65, 0x79, 0x12, 0x09, 0x0a, 0x07, 0x63, 0x61,
    0x72, 0x74, 0x3a, 0x34, 0x32, 0x20, 0x00, 0x60, 0x00, 0x70, 0x00, 0x7a, 0x14, 0x12, 0x10, 0x75,
    0x70, 0x73, 0x74, 0x72, 0x65, 0x61, 0x6d, 0x20, 0x74, 0x69, 0x6d, 0x65, 0x6f, 0x75, 0x74, 0x18,
    0x02, 0x85, 0x01, 0x01, 0x01, 0x00, 0x00,
};

/* @opentelemetry/otlp-transformer 0.223 ProtobufLogsSerializer, two log records (303 bytes). */
static const uint8_t js_logs[] = {
    0x0a, 0xac, 0x02, 0x0a, 0x1c, 0x0a, 0x18, 0x0a, 0x0c, 0x73, 0x65, 0x72, 0x76, 0x69, 0x63, 0x65,
    0x2e, 0x6e, 0x61, 0x6d, 0x65, 0x12, 0x08, 0x0a, 0x06, 0x77, 0x6f, 0x72, 0x6b, 0x65, 0x72, 0x10,
    0x00, 0x12, 0x8b, 0x02, 0x0a, 0x0d, 0x0a, 0x04, 0x6a, 0x6f, 0x62, 0x73, 0x12, 0x05, 0x31, 0x2e,
    0x30, 0x2e, 0x30, 0x12, 0x6f, 0x09, 0x05, 0xca, 0xc4, 0x71, 0xfe, 0x9c, 0x97, 0x17, 0x10, 0x09,
    0x1a, 0x04, 0x49, 0x4e, 0x46, 0x4f, 0x2a, 0x0d, 0x0a, 0x0b, 0x6a, 0x6f, 0x62, 0x20, 0x31, 0x37,
    0x20, 0x64, 0x6f, 0x6e, 0x65, 0x32, 0x0c, 0x0a, 0x06, 0x6a, 0x6f, 0x62, 0x2e, 0x69, 0x64, 0x12,
    0x02, 0x18, 0x11, 0x32, 0x13, 0x0a, 0x09, 0x6a, 0x6f, 0x62, 0x2e, 0x71, 0x75, 0x65, 0x75, 0x65,
    0x12, 0x06, 0x0a, 0x04, 0x6d, 0x61, 0x69, 0x6c, 0x38, 0x00, 0x45, 0x01, 0x00, 0x00, 0x00, 0x4a,
    0x10, 0x5b, 0x8e, 0xff, 0xf7, 0x98, 0x03, 0x81, 0x03, 0xd2, 0x69, 0xb6, 0x33, 0x81, 0x3f, 0xc6,
    0x0c, 0x52, 0x08, 0xee, 0xe1, 0x9b, 0x7e, 0xc3, 0xc1, 0xb1, 0x74, 0x59, 0x80, 0x30, 0x5e, 0x8b,
    0x9b, 0x7a, 0xeb, 0x18, 0x12, 0x88, 0x01, 0x09, 0x80, 0x30, 0x5e, 0x8b, 0x9b, 0x7a, 0xeb, 0x18,
    0x10, 0x11, 0x1a, 0x05, 0x45, 0x52, 0x52, 0x4f, 0x52, 0x2a, 0x40, 0x32, 0x3e, 0x0a, 0x0f, 0x0a,
    0x03, 0x6d, 0x73, 0x67, 0x12, 0x08, 0x0a, 0x06, 0x66, 0x61, 0x69, 0x6c, 0x65, 0x64, 0x0a, 0x13,
    0x0a, 0x05, 0x63, 0x6f, 0x64, 0x65, 0x73, 0x12, 0x0a, 0x2a, 0x08, 0x0a, 0x02, 0x18, 0x01, 0x0a,
    0x02, 0x18, 0x02, 0x0a, 0x16, 0x0a, 0x06, 0x6e, 0x65, 0x73, 0x74, 0x65, 0x64, 0x12, 0x0c, 0x32,
    0x0a, 0x0a, 0x08, 0x0a, 0x02, 0x6f, 0x6b, 0x12, 0x02, 0x10, 0x00, 0x32, 0x1b, 0x0a, 0x0e, 0x65,
    0x78, 0x63, 0x65, 0x70, 0x74, 0x69, 0x6f, 0x6e, 0x2e, 0x74, 0x79, 0x70, 0x65, 0x12, 0x09, 0x0a,
    0x07, 0x49, 0x4f, 0x45, 0x72, 0x72, 0x6f, 0x72, 0x38, 0x00, 0x59, 0x80, 0x30, 0x5e, 0x8b, 0x9b,
    0x7a, 0xeb, 0x18, 0x62, 0x0a, 0x6a, 0x6f, 0x62, 0x2e, 0x66, 0x61, 0x69, 0x6c, 0x65, 0x64,
};

/* ---- spans ---- */

static void span_fields(void **state)
{
    (void)state;
    struct pb s = pb_new();
    pb_bytes(&s, 1, TID, 16);
    pb_bytes(&s, 2, SID, 8);
    pb_str(&s, 3, "vendor=1");
    pb_bytes(&s, 4, PID, 8);
    pb_f32(&s, 16, 0x301);
    pb_str(&s, 5, "GET /x");
    pb_u(&s, 6, CN_KIND_CLIENT);
    pb_f64(&s, 7, 1700000000000000000ull);
    pb_f64(&s, 8, 1700000000005000000ull);
    pb_kv(&s, 9, "s", av_str("str"));
    pb_kv(&s, 9, "b", av_bool(1));
    pb_kv(&s, 9, "i", av_int(-42));
    pb_kv(&s, 9, "d", av_double(2.5));
    pb_kv(&s, 9, "by", av_bytes("\x00\x01\xff", 3));
    pb_kv(&s, 9, "e", pb_new());
    struct pb items[2] = {av_str("a"), av_int(3)};
    pb_kv(&s, 9, "arr", av_array(items, 2));
    struct pb list = pb_new();
    pb_kv(&list, 1, "k", av_str("v"));
    pb_kv(&list, 1, "n", av_array1(av_bool(1)));
    pb_kv(&s, 9, "kvl", av_kvlist(&list));
    pb_u(&s, 10, 2);
    struct pb ev = pb_new();
    pb_f64(&ev, 1, 1700000000000001000ull);
    pb_str(&ev, 2, "exception");
    pb_kv(&ev, 3, "exception.message", av_str("boom"));
    pb_u(&ev, 4, 1);
    pb_msg(&s, 11, &ev);
    ev = pb_new();
    pb_str(&ev, 2, "tick");
    pb_msg(&s, 11, &ev);
    pb_u(&s, 12, 4);
    struct pb lk = pb_new();
    pb_bytes(&lk, 1, TID2, 16);
    pb_bytes(&lk, 2, SID2, 8);
    pb_str(&lk, 3, "ts=1");
    pb_kv(&lk, 4, "l", av_int(1));
    pb_u(&lk, 5, 7);
    pb_f32(&lk, 6, 1);
    pb_msg(&s, 13, &lk);
    pb_u(&s, 14, 5);
    struct pb st = pb_new();
    pb_str(&st, 2, "bad");
    pb_u(&st, 3, CN_STATUS_ERROR);
    pb_msg(&s, 15, &st);

    /* Resource with a schema URL, two scopes, three spans. */
    struct pb res = pb_new();
    pb_kv(&res, 1, "service.name", av_str("checkout"));
    pb_kv(&res, 1, "host.name", av_str("h1"));
    pb_u(&res, 2, 1);
    struct pb sc = pb_new();
    pb_str(&sc, 1, "io.cairn.test");
    pb_str(&sc, 2, "2.0");
    pb_kv(&sc, 3, "scope.attr", av_bool(1));
    pb_u(&sc, 4, 6);
    struct pb ss1 = pb_new();
    pb_msg(&ss1, 1, &sc);
    pb_msg(&ss1, 2, &s);
    struct pb b2 = span_new("second", 0);
    pb_msg(&ss1, 2, &b2);
    struct pb c = span_new("third", 0);
    struct pb ss2 = scope_spans("other", &c, 1);
    struct pb rs = pb_new(), req = pb_new();
    pb_msg(&rs, 1, &res);
    pb_msg(&rs, 2, &ss1);
    pb_msg(&rs, 2, &ss2);
    pb_str(&rs, 3, "https://opentelemetry.io/schemas/1.24.0");
    pb_msg(&req, 1, &rs);

    struct cn_tel_batch b;
    assert_int_equal(traces(&b, &req, NULL), 0);
    assert_string_equal(err, "");
    assert_int_equal(b.num_spans, 3);
    assert_int_equal(b.rejected, 0);
    assert_int_equal(
        b.truncated_attrs + b.truncated_values + b.truncated_events + b.truncated_links, 0);

    const struct cn_span *a = &b.spans[0];
    assert_memory_equal(a->trace_id, TID, 16);
    assert_memory_equal(a->span_id, SID, 8);
    assert_memory_equal(a->parent_id, PID, 8);
    slice_is(a->trace_state, "vendor=1");
    slice_is(a->name, "GET /x");
    assert_int_equal(a->kind, CN_KIND_CLIENT);
    assert_int_equal(a->flags, 0x301);
    assert_int_equal(a->start_ns, 1700000000000000000ull);
    assert_int_equal(a->end_ns, 1700000000005000000ull);
    /* Zero copy: the name points into the request body. */
    assert_true((const uint8_t *)a->name.ptr > req.d &&
                (const uint8_t *)a->name.ptr + a->name.len <= req.d + req.n);

    assert_int_equal(a->attrs.num, 8);
    assert_int_equal(a->attrs.dropped, 2);
    slice_is(a->attrs.items[0].key, "s");
    str_attr_is(&a->attrs, "s", "str");
    assert_int_equal(attr(&a->attrs, "b")->val.type, CN_VAL_BOOL);
    assert_int_equal(attr(&a->attrs, "b")->val.u.b, 1);
    assert_int_equal(attr(&a->attrs, "i")->val.type, CN_VAL_INT);
    assert_true(attr(&a->attrs, "i")->val.u.i == -42);
    assert_int_equal(attr(&a->attrs, "d")->val.type, CN_VAL_DOUBLE);
    assert_true(attr(&a->attrs, "d")->val.u.d == 2.5);
    const struct cn_kv *by = attr(&a->attrs, "by");
    assert_int_equal(by->val.type, CN_VAL_BYTES);
    assert_int_equal(by->val.u.s.len, 3);
    assert_memory_equal(by->val.u.s.ptr, "\x00\x01\xff", 3);
    assert_int_equal(attr(&a->attrs, "e")->val.type, CN_VAL_EMPTY);
    json_attr_is(&a->attrs, "arr", CN_VAL_ARRAY,
                 "{\"arrayValue\":{\"values\":[{\"stringValue\":\"a\"},{\"intValue\":\"3\"}]}}");
    json_attr_is(&a->attrs, "kvl", CN_VAL_KVLIST,
                 "{\"kvlistValue\":{\"values\":[{\"key\":\"k\",\"value\":{\"stringValue\":\"v\"}},"
                 "{\"key\":\"n\",\"value\":{\"arrayValue\":{\"values\":[{\"boolValue\":true}]}}}]"
                 "}}");

    assert_int_equal(a->num_events, 2);
    assert_int_equal(a->dropped_events, 4);
    assert_int_equal(a->events[0].time_ns, 1700000000000001000ull);
    slice_is(a->events[0].name, "exception");
    assert_int_equal(a->events[0].attrs.num, 1);
    assert_int_equal(a->events[0].attrs.dropped, 1);
    str_attr_is(&a->events[0].attrs, "exception.message", "boom");
    slice_is(a->events[1].name, "tick");
    assert_int_equal(a->events[1].time_ns, 0);
    assert_int_equal(a->events[1].attrs.num, 0);

    assert_int_equal(a->num_links, 1);
    assert_int_equal(a->dropped_links, 5);
    assert_memory_equal(a->links[0].trace_id, TID2, 16);
    assert_memory_equal(a->links[0].span_id, SID2, 8);
    slice_is(a->links[0].trace_state, "ts=1");
    assert_int_equal(a->links[0].flags, 1);
    assert_int_equal(a->links[0].attrs.num, 1);
    assert_int_equal(a->links[0].attrs.dropped, 7);
    assert_true(attr(&a->links[0].attrs, "l")->val.u.i == 1);

    assert_int_equal(a->status_code, CN_STATUS_ERROR);
    slice_is(a->status_message, "bad");

    const struct cn_resource *r = a->resource;
    slice_is(r->service, "checkout");
    slice_is(r->schema_url, "https://opentelemetry.io/schemas/1.24.0");
    assert_int_equal(r->attrs.num, 2);
    assert_int_equal(r->attrs.dropped, 1);
    str_attr_is(&r->attrs, "host.name", "h1");
    slice_is(a->scope->name, "io.cairn.test");
    slice_is(a->scope->version, "2.0");
    assert_int_equal(a->scope->attrs.num, 1);
    assert_int_equal(a->scope->attrs.dropped, 6);

    /* One resource object per ResourceSpans, one scope object per ScopeSpans. */
    slice_is(b.spans[1].name, "second");
    assert_ptr_equal(b.spans[1].resource, r);
    assert_ptr_equal(b.spans[1].scope, a->scope);
    assert_true(cn_id_is_zero(b.spans[1].parent_id, 8));
    assert_int_equal(b.spans[1].kind, CN_KIND_SERVER);
    assert_int_equal(b.spans[1].status_code, CN_STATUS_UNSET);
    assert_int_equal(b.spans[1].trace_state.len, 0);
    slice_is(b.spans[2].name, "third");
    assert_ptr_equal(b.spans[2].resource, r);
    assert_ptr_not_equal(b.spans[2].scope, a->scope);
    slice_is(b.spans[2].scope->name, "other");
    assert_int_equal(b.spans[2].scope->version.len, 0);

    cn_tel_batch_release(&b);
    pb_free(&req);
}

static void json_values(void **state)
{
    (void)state;
    static const struct {
        const char *name;
        const char *json;
    } want[] = {
        {"doubles", "{\"arrayValue\":{\"values\":[{\"doubleValue\":1.5},{\"doubleValue\":0.1},"
                    "{\"doubleValue\":0.30000000000000004},{\"doubleValue\":1e+21},"
                    "{\"doubleValue\":-0},{\"doubleValue\":\"NaN\"},"
                    "{\"doubleValue\":\"Infinity\"},{\"doubleValue\":\"-Infinity\"}]}}"},
        {"ints", "{\"arrayValue\":{\"values\":[{\"intValue\":\"0\"},{\"intValue\":\"-1\"},"
                 "{\"intValue\":\"-9223372036854775808\"},"
                 "{\"intValue\":\"9223372036854775807\"}]}}"},
        {"bytes", "{\"arrayValue\":{\"values\":[{\"bytesValue\":\"\"},{\"bytesValue\":\"AA==\"},"
                  "{\"bytesValue\":\"YWI=\"},{\"bytesValue\":\"YWJj\"},"
                  "{\"bytesValue\":\"+/8=\"}]}}"},
        {"strings", "{\"arrayValue\":{\"values\":[{\"stringValue\":\"\"},"
                    "{\"stringValue\":\"q\\\"\\\\\\n\\t\\r\\b\\f\\u0001\\u001f\xc3\xa9\\ufffd/"
                    "\x7f\xf0\x9f\x98\x80\\ufffd\\ufffd\\ufffd\"}]}}"},
        {"misc", "{\"arrayValue\":{\"values\":[{\"boolValue\":false},{},"
                 "{\"arrayValue\":{\"values\":[]}},{\"kvlistValue\":{\"values\":[]}},"
                 "{\"intValue\":\"5\"}]}}"},
        {"kv", "{\"kvlistValue\":{\"values\":[{\"key\":\"\",\"value\":{}},"
               "{\"key\":\"k\\\"\",\"value\":{\"intValue\":\"2\"}}]}}"},
    };
    struct pb s = span_new("op", 0);
    struct pb d[] = {av_double(1.5),  av_double(0.1), av_double(0.1 + 0.2), av_double(1e21),
                     av_double(-0.0), av_double(NAN), av_double(INFINITY),  av_double(-INFINITY)};
    pb_kv(&s, 9, "doubles", av_array(d, CN_ARRAY_LEN(d)));
    struct pb i[] = {av_int(0), av_int(-1), av_int(INT64_MIN), av_int(INT64_MAX)};
    pb_kv(&s, 9, "ints", av_array(i, CN_ARRAY_LEN(i)));
    struct pb by[] = {av_bytes("", 0), av_bytes("\0", 1), av_bytes("ab", 2), av_bytes("abc", 3),
                      av_bytes("\xfb\xff", 2)};
    pb_kv(&s, 9, "bytes", av_array(by, CN_ARRAY_LEN(by)));
    /* Escapes, UTF-8 kept, a stray byte, an encoded surrogate (ED A0 80). */
    static const char raw[] = "q\"\\\n\t\r\b\f\x01\x1f\xc3\xa9\xff/\x7f\xf0\x9f\x98\x80"
                              "\xed\xa0\x80";
    struct pb st[] = {av_str(""), av_strn(raw, sizeof(raw) - 1)};
    pb_kv(&s, 9, "strings", av_array(st, CN_ARRAY_LEN(st)));
    /* Last member of a oneof wins: a string then an int is the int. */
    struct pb two = av_str("x");
    pb_u(&two, 3, 5);
    struct pb empty_list = pb_new();
    struct pb misc[] = {av_bool(0), pb_new(), av_array(NULL, 0), av_kvlist(&empty_list), two};
    pb_kv(&s, 9, "misc", av_array(misc, CN_ARRAY_LEN(misc)));
    struct pb list = pb_new(), nokey = pb_new();
    pb_msg(&list, 1, &nokey);
    pb_kv(&list, 1, "k\"", av_int(2));
    pb_kv(&s, 9, "kv", av_kvlist(&list));
    /* Top level: a string then an array is the array; an array then an int is the int. */
    struct pb sa = av_str("x"), arr = av_array1(av_int(1));
    pb_raw(&sa, arr.d, arr.n);
    pb_free(&arr);
    pb_kv(&s, 9, "str-then-array", sa);
    struct pb as = av_array1(av_int(1));
    pb_u(&as, 3, 9);
    pb_kv(&s, 9, "array-then-int", as);
    struct pb req = traces_req1(s);

    struct cn_tel_batch b;
    assert_int_equal(traces(&b, &req, NULL), 0);
    assert_int_equal(b.num_spans, 1);
    const struct cn_kvs *kvs = &b.spans[0].attrs;
    for (size_t k = 0; k < CN_ARRAY_LEN(want); k++) {
        const struct cn_kv *kv = attr(kvs, want[k].name);
        assert_true(kv->val.type == CN_VAL_ARRAY || kv->val.type == CN_VAL_KVLIST);
        slice_is(kv->val.u.s, want[k].json);
    }
    json_attr_is(kvs, "str-then-array", CN_VAL_ARRAY,
                 "{\"arrayValue\":{\"values\":[{\"intValue\":\"1\"}]}}");
    assert_int_equal(attr(kvs, "array-then-int")->val.type, CN_VAL_INT);
    assert_true(attr(kvs, "array-then-int")->val.u.i == 9);
    cn_tel_batch_release(&b);
    pb_free(&req);
}

/* An attribute whose value is `levels` arrays around a string. */
static struct pb nested_req(int levels)
{
    struct pb v = av_str("x");
    for (int k = 0; k < levels; k++)
        v = av_array1(v);
    struct pb s = span_new("deep", 0);
    pb_kv(&s, 9, "deep", v);
    return traces_req1(s);
}

static void depth_limit(void **state)
{
    (void)state;
    struct cn_tel_batch b;
    /* 15 arrays: the string is the 16th level, the most allowed. */
    struct pb req = nested_req(15);
    assert_int_equal(traces(&b, &req, NULL), 0);
    const struct cn_kv *kv = attr(&b.spans[0].attrs, "deep");
    char want[1024] = "", tail[128] = "";
    for (int k = 0; k < 15; k++) {
        strcat(want, "{\"arrayValue\":{\"values\":[");
        strcat(tail, "]}}");
    }
    strcat(want, "{\"stringValue\":\"x\"}");
    strcat(want, tail);
    slice_is(kv->val.u.s, want);
    cn_tel_batch_release(&b);
    pb_free(&req);

    req = nested_req(16);
    assert_int_equal(traces(&b, &req, NULL), CN_ESYNTAX);
    strcpy(want, "resource_spans[0].scope_spans[0].spans[0].attributes[0].value");
    for (int k = 0; k < 16; k++)
        strcat(want, ".array_value.values[0]");
    strcat(want, ": nesting too deep (more than 16 levels)");
    assert_string_equal(err, want);
    assert_int_equal(b.num_spans, 0);
    assert_null(b.spans);
    cn_tel_batch_release(&b);
    pb_free(&req);

    /* kvlists count the same way. */
    struct pb v = av_str("x");
    for (int k = 0; k < 16; k++) {
        struct pb list = pb_new();
        pb_kv(&list, 1, "k", v);
        v = av_kvlist(&list);
    }
    struct pb s = span_new("deep", 0);
    pb_kv(&s, 9, "deep", v);
    req = traces_req1(s);
    assert_int_equal(traces(&b, &req, NULL), CN_ESYNTAX);
    assert_non_null(strstr(err, ".kvlist_value.values[0].value: nesting too deep"));
    cn_tel_batch_release(&b);
    pb_free(&req);
}

/* ---- partial success ---- */

static struct pb bad_tid_len(void)
{
    struct pb s = span_new("bad", NO_TID);
    pb_bytes(&s, 1, TID, 15);
    return s;
}

static struct pb bad_tid_missing(void)
{
    return span_new("bad", NO_TID);
}

static struct pb bad_tid_zero(void)
{
    struct pb s = span_new("bad", NO_TID);
    pb_bytes(&s, 1, ZERO, 16);
    return s;
}

static struct pb bad_tid_last(void)
{
    /* A repeated scalar: the last occurrence wins. */
    struct pb s = span_new("bad", 0);
    pb_bytes(&s, 1, "0123456789abcdefg", 17);
    return s;
}

static struct pb bad_sid_len(void)
{
    struct pb s = span_new("bad", NO_SID);
    pb_bytes(&s, 2, SID, 7);
    return s;
}

static struct pb bad_sid_zero(void)
{
    struct pb s = span_new("bad", NO_SID);
    pb_bytes(&s, 2, ZERO, 8);
    return s;
}

static struct pb bad_parent(void)
{
    struct pb s = span_new("bad", 0);
    pb_bytes(&s, 4, PID, 4);
    return s;
}

static struct pb bad_kind(void)
{
    struct pb s = span_new("bad", NO_KIND);
    pb_u(&s, 6, 6);
    return s;
}

static struct pb bad_kind_negative(void)
{
    struct pb s = span_new("bad", NO_KIND);
    pb_u(&s, 6, (uint64_t)-1);
    return s;
}

static struct pb bad_status(void)
{
    struct pb s = span_new("bad", 0), st = pb_new();
    pb_u(&st, 3, 3);
    pb_msg(&s, 15, &st);
    return s;
}

static struct pb bad_times(void)
{
    struct pb s = span_new("bad", NO_TIMES);
    pb_f64(&s, 7, 1000);
    pb_f64(&s, 8, 999);
    return s;
}

static struct pb bad_link_tid(void)
{
    struct pb s = span_new("bad", 0), lk = pb_new();
    pb_bytes(&lk, 1, TID, 3);
    pb_bytes(&lk, 2, SID, 8);
    pb_msg(&s, 13, &lk);
    return s;
}

static struct pb bad_link_sid(void)
{
    struct pb s = span_new("bad", 0), lk = pb_new();
    pb_msg(&s, 13, &lk); /* empty IDs are fine */
    lk = pb_new();
    pb_bytes(&lk, 1, TID, 16);
    pb_bytes(&lk, 2, "012345678", 9);
    pb_msg(&s, 13, &lk);
    return s;
}

static void rejects(void **state)
{
    (void)state;
    static const struct {
        struct pb (*build)(void);
        const char *why;
    } cases[] = {
        {bad_tid_len, "trace_id is 15 bytes, want 16"},
        {bad_tid_missing, "trace_id is 0 bytes, want 16"},
        {bad_tid_zero, "trace_id is all zero"},
        {bad_tid_last, "trace_id is 17 bytes, want 16"},
        {bad_sid_len, "span_id is 7 bytes, want 8"},
        {bad_sid_zero, "span_id is all zero"},
        {bad_parent, "parent_span_id is 4 bytes, want 8"},
        {bad_kind, "kind 6 is not a SpanKind (0..5)"},
        {bad_kind_negative, "kind 18446744073709551615 is not a SpanKind (0..5)"},
        {bad_status, "status code 3 is not a StatusCode (0..2)"},
        {bad_times, "end_time_unix_nano 999 is before start_time_unix_nano 1000"},
        {bad_link_tid, "links[0]: trace_id is 3 bytes, want 0 or 16"},
        {bad_link_sid, "links[1]: span_id is 9 bytes, want 0 or 8"},
    };
    /* Limits that the refused span passes: its truncations must not be counted. */
    const struct cn_tel_limits lim = {.max_attrs = 1, .max_attr_value_bytes = 3};
    for (size_t k = 0; k < CN_ARRAY_LEN(cases); k++) {
        struct pb spans[3] = {span_new("ok1", 0), cases[k].build(), span_new("ok2", 0)};
        pb_kv(&spans[1], 9, "a", av_str("long value"));
        pb_kv(&spans[1], 9, "b", av_str("dropped"));
        struct pb req = traces_req(spans, 3);
        struct cn_tel_batch b;
        assert_int_equal(traces(&b, &req, &lim), 0);
        assert_int_equal(b.num_spans, 2);
        slice_is(b.spans[0].name, "ok1");
        slice_is(b.spans[1].name, "ok2");
        assert_int_equal(b.rejected, 1);
        char want[256];
        snprintf(want, sizeof(want), "resource_spans[0].scope_spans[0].spans[1]: %s", cases[k].why);
        assert_string_equal(b.reject_msg, want);
        assert_int_equal(b.truncated_attrs, 0);
        assert_int_equal(b.truncated_values, 0);
        cn_tel_batch_release(&b);
        pb_free(&req);
    }
}

static void accepts_edges(void **state)
{
    (void)state;
    /* Empty parent and trace state are "none"; kind 5 and status 2 are the last valid ones;
     * end == start is fine; the first of several refusals is the one reported. */
    struct pb s = span_new("edge", NO_KIND);
    pb_bytes(&s, 4, "", 0);
    pb_bytes(&s, 3, "", 0);
    pb_u(&s, 6, 5);
    struct pb st = pb_new();
    pb_u(&st, 3, 2);
    pb_msg(&s, 15, &st);
    struct pb same = span_new("same", NO_TIMES);
    pb_f64(&same, 7, 5);
    pb_f64(&same, 8, 5);
    struct pb spans[4] = {s, bad_kind(), same, bad_tid_zero()};
    struct pb req = traces_req(spans, 4);
    struct cn_tel_batch b;
    assert_int_equal(traces(&b, &req, NULL), 0);
    assert_int_equal(b.num_spans, 2);
    assert_true(cn_id_is_zero(b.spans[0].parent_id, 8));
    assert_int_equal(b.spans[0].trace_state.len, 0);
    assert_int_equal(b.spans[0].kind, CN_KIND_CONSUMER);
    assert_int_equal(b.spans[0].status_code, CN_STATUS_ERROR);
    slice_is(b.spans[1].name, "same");
    assert_int_equal(b.rejected, 2);
    assert_string_equal(b.reject_msg,
                        "resource_spans[0].scope_spans[0].spans[1]: kind 6 is not a SpanKind "
                        "(0..5)");
    cn_tel_batch_release(&b);
    pb_free(&req);
}

/* ---- limits ---- */

static void add_attrs(struct pb *m, uint32_t field, const char *prefix, int n)
{
    for (int k = 0; k < n; k++) {
        char key[32];
        snprintf(key, sizeof(key), "%s%d", prefix, k);
        pb_kv(m, field, key, av_int(k));
    }
}

static void limit_attrs(void **state)
{
    (void)state;
    const struct cn_tel_limits lim = {.max_attrs = 3};
    struct pb res = pb_new(), sc = pb_new(), ss = pb_new(), rs = pb_new(), req = pb_new();
    /* Resource: 4 attributes, service.name the dropped fourth; it still names the service. */
    add_attrs(&res, 1, "r", 3);
    pb_kv(&res, 1, "service.name", av_str("late"));
    pb_str(&sc, 1, "lib");
    add_attrs(&sc, 3, "s", 3);
    pb_msg(&ss, 1, &sc);
    struct pb exact = span_new("exact", 0);
    add_attrs(&exact, 9, "a", 3);
    struct pb over = span_new("over", 0);
    add_attrs(&over, 9, "a", 4);
    pb_u(&over, 10, 2); /* the sender dropped 2 */
    struct pb ev = pb_new();
    add_attrs(&ev, 3, "e", 4);
    pb_msg(&over, 11, &ev);
    struct pb lk = pb_new();
    add_attrs(&lk, 4, "l", 4);
    pb_msg(&over, 13, &lk);
    pb_msg(&ss, 2, &exact);
    pb_msg(&ss, 2, &over);
    pb_msg(&rs, 1, &res);
    pb_msg(&rs, 2, &ss);
    pb_msg(&req, 1, &rs);

    struct cn_tel_batch b;
    assert_int_equal(traces(&b, &req, &lim), 0);
    assert_int_equal(b.num_spans, 2);
    const struct cn_span *e = &b.spans[0], *o = &b.spans[1];
    assert_int_equal(e->attrs.num, 3);
    assert_int_equal(e->attrs.dropped, 0);
    assert_int_equal(o->attrs.num, 3);
    assert_int_equal(o->attrs.dropped, 3);
    slice_is(o->attrs.items[0].key, "a0");
    slice_is(o->attrs.items[2].key, "a2");
    assert_int_equal(o->events[0].attrs.num, 3);
    assert_int_equal(o->events[0].attrs.dropped, 1);
    assert_int_equal(o->links[0].attrs.num, 3);
    assert_int_equal(o->links[0].attrs.dropped, 1);
    assert_int_equal(e->resource->attrs.num, 3);
    assert_int_equal(e->resource->attrs.dropped, 1);
    slice_is(e->resource->service, "late");
    assert_int_equal(e->scope->attrs.num, 3);
    assert_int_equal(e->scope->attrs.dropped, 0);
    assert_int_equal(b.truncated_attrs, 4); /* resource, span, event, link */
    assert_int_equal(b.truncated_values, 0);
    cn_tel_batch_release(&b);

    /* No limits: NULL and all-zero limits keep everything. */
    const struct cn_tel_limits zero = {0};
    assert_int_equal(traces(&b, &req, NULL), 0);
    assert_int_equal(b.spans[1].attrs.num, 4);
    assert_int_equal(b.spans[1].attrs.dropped, 2);
    assert_int_equal(b.truncated_attrs, 0);
    cn_tel_batch_release(&b);
    assert_int_equal(traces(&b, &req, &zero), 0);
    assert_int_equal(b.spans[0].resource->attrs.num, 4);
    assert_int_equal(b.truncated_attrs, 0);
    cn_tel_batch_release(&b);
    pb_free(&req);
}

static void limit_values(void **state)
{
    (void)state;
    const struct cn_tel_limits lim = {.max_attrs = 9, .max_attr_value_bytes = 4};
    struct pb s = span_new("v", 0);
    pb_kv(&s, 9, "exact", av_str("abcd"));
    pb_kv(&s, 9, "over", av_str("abcde"));
    pb_kv(&s, 9, "utf8-2", av_str("abc\xc3\xa9"));      /* é would straddle the cut */
    pb_kv(&s, 9, "utf8-3", av_str("ab\xe2\x82\xac"));   /* so would € */
    pb_kv(&s, 9, "utf8-fits", av_str("a\xe2\x82\xac")); /* exactly 4 bytes */
    pb_kv(&s, 9, "bytes", av_bytes("\x01\x02\x03\x04\x05", 5));
    struct pb items[] = {av_str("abcdef"), av_str("ab"), av_bytes("abcde", 5)};
    pb_kv(&s, 9, "array", av_array(items, 3));
    pb_kv(&s, 9, "long-key-is-not-cut", av_str("x"));
    pb_kv(&s, 9, "a8", av_int(1));
    pb_kv(&s, 9, "dropped", av_str("a long value of a dropped attribute"));
    struct pb req = traces_req1(s);

    struct cn_tel_batch b;
    assert_int_equal(traces(&b, &req, &lim), 0);
    const struct cn_kvs *kvs = &b.spans[0].attrs;
    str_attr_is(kvs, "exact", "abcd");
    str_attr_is(kvs, "over", "abcd");
    str_attr_is(kvs, "utf8-2", "abc");
    str_attr_is(kvs, "utf8-3", "ab");
    str_attr_is(kvs, "utf8-fits", "a\xe2\x82\xac");
    assert_int_equal(attr(kvs, "bytes")->val.u.s.len, 4);
    json_attr_is(kvs, "array", CN_VAL_ARRAY,
                 "{\"arrayValue\":{\"values\":[{\"stringValue\":\"abcd\"},{\"stringValue\":\"ab\"},"
                 "{\"bytesValue\":\"YWJjZA==\"}]}}");
    str_attr_is(kvs, "long-key-is-not-cut", "x");
    assert_int_equal(kvs->num, 9);
    assert_int_equal(kvs->dropped, 1);
    /* over, utf8-2, utf8-3, bytes, and two array items; not the dropped attribute. */
    assert_int_equal(b.truncated_values, 6);
    assert_int_equal(b.truncated_attrs, 1);
    cn_tel_batch_release(&b);
    pb_free(&req);
}

/* Attributes are read a run at a time (one after another in the span): runs broken by other
 * fields, a KeyValue or key of 128 bytes or more, other value types, the decode buffer
 * growing inside a run, and the attribute limit reached inside one. */
static void attribute_runs(void **state)
{
    (void)state;
    char long_val[201], long_key[131];
    memset(long_val, 'v', sizeof(long_val) - 1);
    long_val[sizeof(long_val) - 1] = '\0';
    memset(long_key, 'k', sizeof(long_key) - 1);
    long_key[sizeof(long_key) - 1] = '\0';
    struct pb s = pb_new();
    pb_kv(&s, 9, "first", av_str("1"));
    pb_bytes(&s, 1, TID, 16);
    pb_kv(&s, 9, "a", av_str(""));
    pb_kv(&s, 9, "long", av_str(long_val));
    pb_kv(&s, 9, long_key, av_str("x"));
    pb_kv(&s, 9, "n", av_int(-5));
    pb_kv(&s, 9, "b", av_str("after"));
    pb_bytes(&s, 2, SID, 8);
    pb_str(&s, 5, "runs");
    add_attrs(&s, 9, "g", 40); /* past the first 32 of the decode buffer */
    pb_f64(&s, 7, 1000);
    pb_f64(&s, 8, 2000);
    pb_kv(&s, 9, "last", av_str("end")); /* the span's last bytes */
    struct pb req = traces_req1(s);

    struct cn_tel_batch b;
    assert_int_equal(traces(&b, &req, NULL), 0);
    assert_int_equal(b.num_spans, 1);
    const struct cn_kvs *kvs = &b.spans[0].attrs;
    assert_int_equal(kvs->num, 47);
    slice_is(kvs->items[0].key, "first");
    slice_is(kvs->items[0].val.u.s, "1");
    slice_is(kvs->items[1].key, "a");
    assert_int_equal(kvs->items[1].val.type, CN_VAL_STR);
    assert_int_equal(kvs->items[1].val.u.s.len, 0);
    slice_is(kvs->items[2].val.u.s, long_val);
    slice_is(kvs->items[3].key, long_key);
    assert_int_equal(kvs->items[4].val.type, CN_VAL_INT);
    assert_int_equal(kvs->items[4].val.u.i, -5);
    slice_is(kvs->items[5].val.u.s, "after");
    for (int k = 0; k < 40; k++) {
        char key[8];
        snprintf(key, sizeof(key), "g%d", k);
        slice_is(kvs->items[6 + k].key, key);
        assert_int_equal(kvs->items[6 + k].val.u.i, k);
    }
    slice_is(kvs->items[46].key, "last");
    slice_is(kvs->items[46].val.u.s, "end");
    assert_int_equal(b.truncated_attrs, 0);
    cn_tel_batch_release(&b);

    /* The limit reached inside a run: the rest of it is counted, not kept. */
    const struct cn_tel_limits lim = {.max_attrs = 4, .max_attr_value_bytes = 100};
    assert_int_equal(traces(&b, &req, &lim), 0);
    kvs = &b.spans[0].attrs;
    assert_int_equal(kvs->num, 4);
    assert_int_equal(kvs->dropped, 43);
    slice_is(kvs->items[2].val.u.s, long_val + 100); /* 100 'v's: cut, not dropped */
    slice_is(kvs->items[3].key, long_key);
    assert_int_equal(b.truncated_attrs, 43);
    assert_int_equal(b.truncated_values, 1);
    cn_tel_batch_release(&b);
    pb_free(&req);
}

/* The usual leading fields are read by a fast path when they come in field order at their
 * usual sizes; in any other order, repeated (the last wins) or at other sizes they read the
 * same as the general loop reads them. */
static void span_field_order(void **state)
{
    (void)state;
    struct pb spans[4];
    spans[0] = pb_new(); /* field order */
    pb_bytes(&spans[0], 1, TID, 16);
    pb_bytes(&spans[0], 2, SID, 8);
    pb_bytes(&spans[0], 4, PID, 8);
    pb_str(&spans[0], 5, "op");
    pb_u(&spans[0], 6, 3);
    pb_f64(&spans[0], 7, 1000);
    pb_f64(&spans[0], 8, 2000);
    spans[1] = pb_new(); /* reversed */
    pb_f64(&spans[1], 8, 2000);
    pb_f64(&spans[1], 7, 1000);
    pb_u(&spans[1], 6, 3);
    pb_str(&spans[1], 5, "op");
    pb_bytes(&spans[1], 4, PID, 8);
    pb_bytes(&spans[1], 2, SID, 8);
    pb_bytes(&spans[1], 1, TID, 16);
    spans[2] = pb_new(); /* each leading field twice, the first value overwritten */
    pb_bytes(&spans[2], 1, TID2, 16);
    pb_bytes(&spans[2], 1, TID, 16);
    pb_bytes(&spans[2], 2, SID2, 8);
    pb_bytes(&spans[2], 2, SID, 8);
    pb_bytes(&spans[2], 4, SID2, 8);
    pb_bytes(&spans[2], 4, PID, 8);
    pb_str(&spans[2], 5, "first");
    pb_str(&spans[2], 5, "op");
    pb_u(&spans[2], 6, 1);
    pb_u(&spans[2], 6, 3);
    pb_f64(&spans[2], 7, 5);
    pb_f64(&spans[2], 7, 1000);
    pb_f64(&spans[2], 8, 6);
    pb_f64(&spans[2], 8, 2000);
    spans[3] = pb_new(); /* a trace_state between span_id and parent_span_id */
    pb_bytes(&spans[3], 1, TID, 16);
    pb_bytes(&spans[3], 2, SID, 8);
    pb_str(&spans[3], 3, "k=v");
    pb_bytes(&spans[3], 4, PID, 8);
    pb_str(&spans[3], 5, "op");
    pb_u(&spans[3], 6, 3);
    pb_f64(&spans[3], 7, 1000);
    pb_f64(&spans[3], 8, 2000);
    struct pb req = traces_req(spans, 4);

    struct cn_tel_batch b;
    assert_int_equal(traces(&b, &req, NULL), 0);
    assert_int_equal(b.num_spans, 4);
    for (size_t i = 0; i < 4; i++) {
        const struct cn_span *sp = &b.spans[i];
        assert_memory_equal(sp->trace_id, TID, 16);
        assert_memory_equal(sp->span_id, SID, 8);
        assert_memory_equal(sp->parent_id, PID, 8);
        slice_is(sp->name, "op");
        assert_int_equal(sp->kind, 3);
        assert_int_equal(sp->start_ns, 1000);
        assert_int_equal(sp->end_ns, 2000);
    }
    slice_is(b.spans[3].trace_state, "k=v");
    cn_tel_batch_release(&b);
    pb_free(&req);

    /* A parent_span_id of 7 bytes is not the usual size: the loop reads it and refuses the
     * span, naming the field. */
    struct pb bad = span_new("bad-parent", 0);
    struct pb fixed = pb_new();
    pb_bytes(&fixed, 1, TID, 16);
    pb_bytes(&fixed, 2, SID, 8);
    pb_bytes(&fixed, 4, PID, 7);
    pb_raw(&fixed, bad.d, bad.n);
    pb_free(&bad);
    req = traces_req1(fixed);
    assert_int_equal(traces(&b, &req, NULL), 0);
    assert_int_equal(b.num_spans, 0);
    assert_int_equal(b.rejected, 1);
    assert_non_null(strstr(b.reject_msg, "parent_span_id is 7 bytes"));
    cn_tel_batch_release(&b);
    pb_free(&req);
}

static void limit_events_links(void **state)
{
    (void)state;
    const struct cn_tel_limits lim = {.max_events = 2, .max_links = 1, .max_attrs = 1};
    struct pb exact = span_new("exact", 0), over = span_new("over", 0);
    for (int k = 0; k < 2; k++) {
        struct pb ev = pb_new();
        pb_str(&ev, 2, k ? "e1" : "e0");
        pb_msg(&exact, 11, &ev);
    }
    struct pb lk = pb_new();
    pb_bytes(&lk, 1, TID2, 16);
    pb_msg(&exact, 13, &lk);
    for (int k = 0; k < 3; k++) {
        struct pb ev = pb_new();
        pb_str(&ev, 2, k == 2 ? "e2" : "e");
        /* The dropped third event has attributes past the limit: not counted. */
        add_attrs(&ev, 3, "x", k == 2 ? 3 : 0);
        pb_msg(&over, 11, &ev);
    }
    for (int k = 0; k < 2; k++) {
        lk = pb_new();
        add_attrs(&lk, 4, "y", k == 1 ? 3 : 0);
        pb_msg(&over, 13, &lk);
    }
    pb_u(&over, 12, 10);
    pb_u(&over, 14, 20);
    struct pb spans[2] = {exact, over};
    struct pb req = traces_req(spans, 2);

    struct cn_tel_batch b;
    assert_int_equal(traces(&b, &req, &lim), 0);
    const struct cn_span *e = &b.spans[0], *o = &b.spans[1];
    assert_int_equal(e->num_events, 2);
    assert_int_equal(e->dropped_events, 0);
    slice_is(e->events[1].name, "e1");
    assert_int_equal(e->num_links, 1);
    assert_int_equal(e->dropped_links, 0);
    assert_memory_equal(e->links[0].trace_id, TID2, 16);
    assert_true(cn_id_is_zero(e->links[0].span_id, 8));
    assert_int_equal(o->num_events, 2);
    assert_int_equal(o->dropped_events, 11);
    assert_int_equal(o->num_links, 1);
    assert_int_equal(o->dropped_links, 21);
    assert_int_equal(b.truncated_events, 1);
    assert_int_equal(b.truncated_links, 1);
    assert_int_equal(b.truncated_attrs, 0);
    cn_tel_batch_release(&b);

    /* A dropped event is still checked: a malformed one fails the request. */
    struct pb bad = span_new("bad", 0);
    for (int k = 0; k < 3; k++) {
        struct pb ev = pb_new();
        if (k == 2)
            pb_u(&ev, 2, 1);
        pb_msg(&bad, 11, &ev);
    }
    pb_free(&req);
    req = traces_req1(bad);
    assert_int_equal(traces(&b, &req, &lim), CN_ESYNTAX);
    assert_string_equal(err, "resource_spans[0].scope_spans[0].spans[0].events[2]: field 2 "
                             "(name): wire type 0, want 2");
    cn_tel_batch_release(&b);
    pb_free(&req);
}

/* ---- resources, forward compatibility ---- */

static void resources(void **state)
{
    (void)state;
    /* No resource; a resource after its scope_spans, sent twice (merged); a service.name
     * that is not a string; an empty one. */
    struct pb req = pb_new();
    struct pb sp = span_new("a", 0);
    struct pb ss = scope_spans("lib", &sp, 1), rs = pb_new();
    pb_msg(&rs, 2, &ss);
    pb_msg(&req, 1, &rs);

    sp = span_new("b", 0);
    ss = scope_spans("lib", &sp, 1);
    rs = pb_new();
    pb_msg(&rs, 2, &ss);
    struct pb res = pb_new();
    pb_kv(&res, 1, "k1", av_int(1));
    pb_msg(&rs, 1, &res);
    res = pb_new();
    pb_kv(&res, 1, "service.name", av_str("after"));
    pb_u(&res, 2, 3);
    pb_msg(&rs, 1, &res);
    pb_msg(&req, 1, &rs);

    sp = span_new("c", 0);
    ss = scope_spans("lib", &sp, 1);
    rs = pb_new();
    res = pb_new();
    pb_kv(&res, 1, "service.name", av_int(7));
    pb_msg(&rs, 1, &res);
    pb_msg(&rs, 2, &ss);
    pb_msg(&req, 1, &rs);

    sp = span_new("d", 0);
    ss = scope_spans("lib", &sp, 1);
    rs = pb_new();
    res = pb_new();
    pb_kv(&res, 1, "service.name", av_str(""));
    pb_msg(&rs, 1, &res);
    pb_msg(&rs, 2, &ss);
    pb_msg(&req, 1, &rs);

    struct cn_tel_batch b;
    assert_int_equal(traces(&b, &req, &(struct cn_tel_limits){.max_attrs = 2}), 0);
    assert_int_equal(b.num_spans, 4);
    slice_is(b.spans[0].resource->service, "unknown_service");
    assert_int_equal(b.spans[0].resource->attrs.num, 0);
    slice_is(b.spans[1].resource->service, "after");
    assert_int_equal(b.spans[1].resource->attrs.num, 2);
    assert_int_equal(b.spans[1].resource->attrs.dropped, 3);
    slice_is(b.spans[1].resource->attrs.items[0].key, "k1");
    slice_is(b.spans[1].resource->attrs.items[1].key, "service.name");
    slice_is(b.spans[2].resource->service, "unknown_service");
    slice_is(b.spans[3].resource->service, "unknown_service");
    assert_ptr_not_equal(b.spans[0].resource, b.spans[1].resource);
    cn_tel_batch_release(&b);
    pb_free(&req);

    /* An empty body is an empty request. */
    req = pb_new();
    assert_int_equal(traces(&b, &req, NULL), 0);
    assert_int_equal(b.num_spans, 0);
    assert_null(b.spans);
    cn_tel_batch_release(&b);
    assert_int_equal(logs(&b, &req, NULL), 0);
    assert_int_equal(b.num_logs, 0);
    cn_tel_batch_release(&b);
}

/* Unknown fields of every wire type, including the largest field number. */
static void unknowns(struct pb *m)
{
    pb_u(m, 100, 1);
    pb_f64(m, 101, 2);
    pb_str(m, 102, "x");
    pb_f32(m, 103, 3);
    pb_u(m, 536870911, 4);
}

static void unknown_fields(void **state)
{
    (void)state;
    struct pb s = span_new("op", 0);
    unknowns(&s);
    struct pb any = av_str("v");
    unknowns(&any);
    pb_u(&any, 8, 1); /* string_value_strindex, profiles only */
    struct pb kv = pb_new();
    pb_str(&kv, 1, "k");
    pb_u(&kv, 3, 1); /* key_strindex */
    unknowns(&kv);
    pb_msg(&kv, 2, &any);
    pb_msg(&s, 9, &kv);
    struct pb ev = pb_new();
    unknowns(&ev);
    pb_str(&ev, 2, "ev");
    pb_msg(&s, 11, &ev);
    struct pb st = pb_new();
    pb_str(&st, 1, "deprecated code"); /* reserved 1 */
    unknowns(&st);
    pb_u(&st, 3, 1);
    pb_msg(&s, 15, &st);
    struct pb items[1] = {av_int(1)};
    struct pb arr = av_array(items, 1);
    pb_kv(&s, 9, "arr", arr);

    struct pb sc = pb_new(), ss = pb_new(), res = pb_new(), rs = pb_new(), req = pb_new();
    pb_str(&sc, 1, "lib");
    unknowns(&sc);
    pb_msg(&ss, 1, &sc);
    unknowns(&ss);
    pb_msg(&ss, 2, &s);
    pb_str(&ss, 3, "scope-schema");
    unknowns(&res);
    pb_str(&res, 3, "entity_refs"); /* not used here */
    pb_kv(&res, 1, "service.name", av_str("svc"));
    pb_msg(&rs, 1, &res);
    pb_str(&rs, 1000, "instrumentation_library_spans");
    unknowns(&rs);
    pb_msg(&rs, 2, &ss);
    unknowns(&req);
    pb_msg(&req, 1, &rs);
    unknowns(&req);

    struct cn_tel_batch b;
    assert_int_equal(traces(&b, &req, NULL), 0);
    assert_int_equal(b.num_spans, 1);
    const struct cn_span *sp = &b.spans[0];
    slice_is(sp->name, "op");
    assert_int_equal(sp->attrs.num, 2);
    str_attr_is(&sp->attrs, "k", "v");
    json_attr_is(&sp->attrs, "arr", CN_VAL_ARRAY,
                 "{\"arrayValue\":{\"values\":[{\"intValue\":\"1\"}]}}");
    assert_int_equal(sp->num_events, 1);
    slice_is(sp->events[0].name, "ev");
    assert_int_equal(sp->status_code, CN_STATUS_OK);
    assert_int_equal(sp->status_message.len, 0);
    slice_is(sp->resource->service, "svc");
    slice_is(sp->scope->name, "lib");
    cn_tel_batch_release(&b);
    pb_free(&req);
}

/* ---- malformed bodies ---- */

/* The span of the brief's example: resource_spans[0].scope_spans[1].spans[3]. */
static struct pb example_req(struct pb bad_span)
{
    struct pb a[1] = {span_new("a", 0)};
    struct pb c[4] = {span_new("c0", 0), span_new("c1", 0), span_new("c2", 0), bad_span};
    struct pb ss0 = scope_spans("s0", a, 1), ss1 = scope_spans("s1", c, 4);
    struct pb rs = pb_new(), req = pb_new();
    pb_msg(&rs, 2, &ss0);
    pb_msg(&rs, 2, &ss1);
    pb_msg(&req, 1, &rs);
    return req;
}

static void malformed(void **state)
{
    (void)state;
    static const struct {
        const char *raw; /* appended to a valid span */
        size_t len;
        const char *msg;
    } cases[] = {
        {"\x2a\x0a"
         "abc",
         5, "truncated field 5 (name)"},
        /* Ten bytes whose last one carries more than bit 63; eleven bytes. */
        {"\x30\xff\xff\xff\xff\xff\xff\xff\xff\xff\x02", 11, "bad varint in field 6 (kind)"},
        {"\x30\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01", 12, "bad varint in field 6 (kind)"},
        {"\x30\x80", 2, "truncated field 6 (kind)"},
        {"\x28\x01", 2, "field 5 (name): wire type 0, want 2"},
        {"\x38\x01", 2, "field 7 (start_time_unix_nano): wire type 0, want 1"},
        {"\x81\x01\x01\x00\x00\x00\x00\x00\x00\x00", 10, "field 16 (flags): wire type 1, want 5"},
        {"\x39\x01\x02\x03\x04", 5, "truncated field 7 (start_time_unix_nano)"},
        {"\x85\x01\x01\x00", 4, "truncated field 16 (flags)"},
        {"\xa3\x01", 2, "field 20: group wire type 3 is not supported"},
        {"\xa4\x01", 2, "field 20: group wire type 4 is not supported"},
        {"\x2b", 1, "field 5: group wire type 3 is not supported"},
        {"\xa6\x01", 2, "field 20: invalid wire type 6"},
        {"\xa7\x01", 2, "field 20: invalid wire type 7"},
        {"\x02\x00", 2, "invalid field number 0"},
        {"\x80\x80\x80\x80\x10\x00", 6, "invalid field number 536870912"},
        {"\x80", 1, "truncated field tag"},
        {"\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01", 11, "bad varint in a field tag"},
        {"\x9a\x06\x05x", 4, "truncated field 99"},
        {"\x9a\x06\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01", 13, "bad varint in field 99"},
        {"\x2a\xff\xff\xff\xff\xff\xff\xff\xff\x7f", 10, "truncated field 5 (name)"},
    };
    for (size_t k = 0; k < CN_ARRAY_LEN(cases); k++) {
        struct pb s = span_new("x", 0);
        pb_raw(&s, cases[k].raw, cases[k].len);
        struct pb req = example_req(s);
        struct cn_tel_batch b;
        assert_int_equal(traces(&b, &req, NULL), CN_ESYNTAX);
        char want[256];
        snprintf(want, sizeof(want), "resource_spans[0].scope_spans[1].spans[3]: %s", cases[k].msg);
        assert_string_equal(err, want);
        assert_int_equal(b.num_spans, 0);
        assert_null(b.spans);
        cn_tel_batch_release(&b);
        pb_free(&req);
    }
}

/* Errors inside nested messages name the full path. */
static void malformed_paths(void **state)
{
    (void)state;
    struct cn_tel_batch b;
    struct pb req = pb_new();

    /* The top level. */
    pb_raw(&req, "\x0a\x05\x0a", 3);
    assert_int_equal(traces(&b, &req, NULL), CN_ESYNTAX);
    assert_string_equal(err, "truncated field 1 (resource_spans)");
    cn_tel_batch_release(&b);
    pb_free(&req);
    pb_raw(&req, "\x08\x01", 2);
    assert_int_equal(traces(&b, &req, NULL), CN_ESYNTAX);
    assert_string_equal(err, "field 1 (resource_spans): wire type 0, want 2");
    /* Without an error buffer. */
    cn_tel_batch_release(&b);
    cn_tel_batch_init(&b, 1 << 20);
    assert_int_equal(cn_otlp_pb_decode_traces(&b, req.d, req.n, NULL, NULL, 0), CN_ESYNTAX);
    cn_tel_batch_release(&b);
    pb_free(&req);

    /* Attribute value, array item, kvlist value. */
    struct pb s = span_new("x", 0);
    pb_kv(&s, 9, "ok", av_str("fine"));
    struct pb any = pb_new(), kv = pb_new();
    pb_raw(&any, "\x0a\x09short", 7);
    pb_str(&kv, 1, "k");
    pb_msg(&kv, 2, &any);
    pb_msg(&s, 9, &kv);
    req = traces_req1(s);
    assert_int_equal(traces(&b, &req, NULL), CN_ESYNTAX);
    assert_string_equal(err, "resource_spans[0].scope_spans[0].spans[0].attributes[1].value: "
                             "truncated field 1 (string_value)");
    cn_tel_batch_release(&b);
    pb_free(&req);

    struct pb bad = pb_new();
    pb_str(&bad, 3, "not an int");
    struct pb items[2] = {av_int(1), bad};
    s = span_new("x", 0);
    pb_kv(&s, 9, "arr", av_array(items, 2));
    req = traces_req1(s);
    assert_int_equal(traces(&b, &req, NULL), CN_ESYNTAX);
    assert_string_equal(err, "resource_spans[0].scope_spans[0].spans[0].attributes[0].value."
                             "array_value.values[1]: field 3 (int_value): wire type 2, want 0");
    cn_tel_batch_release(&b);
    pb_free(&req);

    struct pb list = pb_new(), v = pb_new();
    pb_u(&v, 4, 1);
    pb_kv(&list, 1, "k", v);
    s = span_new("x", 0);
    pb_kv(&s, 9, "kvl", av_kvlist(&list));
    req = traces_req1(s);
    assert_int_equal(traces(&b, &req, NULL), CN_ESYNTAX);
    assert_string_equal(err, "resource_spans[0].scope_spans[0].spans[0].attributes[0].value."
                             "kvlist_value.values[0].value: field 4 (double_value): wire type 0, "
                             "want 1");
    cn_tel_batch_release(&b);
    pb_free(&req);

    /* Resource, scope, event, link, status; a dropped attribute is checked too. */
    struct pb rs = pb_new(), res = pb_new(), rkv = pb_new();
    pb_raw(&rkv, "\x0a\x05k", 3);
    pb_msg(&res, 1, &rkv);
    pb_msg(&rs, 1, &res);
    pb_msg(&req, 1, &rs);
    assert_int_equal(traces(&b, &req, NULL), CN_ESYNTAX);
    assert_string_equal(err, "resource_spans[0].resource.attributes[0]: truncated field 1 (key)");
    cn_tel_batch_release(&b);
    pb_free(&req);

    struct pb ss = pb_new(), sc = pb_new();
    pb_u(&sc, 1, 1);
    pb_msg(&ss, 1, &sc);
    rs = pb_new();
    pb_msg(&rs, 2, &ss);
    pb_msg(&req, 1, &rs);
    assert_int_equal(traces(&b, &req, NULL), CN_ESYNTAX);
    assert_string_equal(err, "resource_spans[0].scope_spans[0].scope: field 1 (name): wire type 0, "
                             "want 2");
    cn_tel_batch_release(&b);
    pb_free(&req);

    s = span_new("x", 0);
    struct pb lk = pb_new();
    pb_u(&lk, 6, 1);
    pb_msg(&s, 13, &lk);
    req = traces_req1(s);
    assert_int_equal(traces(&b, &req, NULL), CN_ESYNTAX);
    assert_string_equal(err, "resource_spans[0].scope_spans[0].spans[0].links[0]: field 6 "
                             "(flags): wire type 0, want 5");
    cn_tel_batch_release(&b);
    pb_free(&req);

    s = span_new("x", 0);
    struct pb st = pb_new();
    pb_str(&st, 3, "2");
    pb_msg(&s, 15, &st);
    req = traces_req1(s);
    assert_int_equal(traces(&b, &req, NULL), CN_ESYNTAX);
    assert_string_equal(err, "resource_spans[0].scope_spans[0].spans[0].status: field 3 (code): "
                             "wire type 2, want 0");
    cn_tel_batch_release(&b);
    pb_free(&req);

    s = span_new("x", 0);
    pb_kv(&s, 9, "kept", av_int(1));
    pb_kv(&s, 9, "dropped", av_array1(bad_tid_len())); /* a Span is not an AnyValue */
    req = traces_req1(s);
    assert_int_equal(traces(&b, &req, &(struct cn_tel_limits){.max_attrs = 1}), CN_ESYNTAX);
    assert_string_equal(err, "resource_spans[0].scope_spans[0].spans[0].attributes[1].value."
                             "array_value.values[0]: field 2 (bool_value): wire type 2, want 0");
    cn_tel_batch_release(&b);
    pb_free(&req);
}

static void budget(void **state)
{
    (void)state;
    struct pb spans[400];
    for (size_t k = 0; k < CN_ARRAY_LEN(spans); k++) {
        spans[k] = span_new("budget", 0);
        add_attrs(&spans[k], 9, "attr", 10);
    }
    struct pb req = traces_req(spans, CN_ARRAY_LEN(spans));
    struct cn_tel_batch b;
    /* Enough for the span array but not for the attributes. */
    cn_tel_batch_init(&b, 256 << 10);
    assert_int_equal(cn_otlp_pb_decode_traces(&b, req.d, req.n, NULL, err, sizeof(err)), CN_ENOMEM);
    assert_string_equal(err, "batch too large for the decode budget");
    assert_int_equal(b.num_spans, 0);
    assert_null(b.spans);
    cn_tel_batch_release(&b);
    /* Not even one chunk. */
    cn_tel_batch_init(&b, 1024);
    assert_int_equal(cn_otlp_pb_decode_traces(&b, req.d, req.n, NULL, err, sizeof(err)), CN_ENOMEM);
    assert_string_equal(err, "batch too large for the decode budget");
    cn_tel_batch_release(&b);
    /* And enough. */
    cn_tel_batch_init(&b, 1 << 20);
    assert_int_equal(cn_otlp_pb_decode_traces(&b, req.d, req.n, NULL, err, sizeof(err)), 0);
    assert_int_equal(b.num_spans, 400);
    assert_int_equal(b.spans[399].attrs.num, 10);
    cn_tel_batch_release(&b);
    pb_free(&req);
}

/* ---- logs ---- */

static void log_fields(void **state)
{
    (void)state;
    struct pb l[7];
    l[0] = pb_new();
    pb_f64(&l[0], 1, 1700000000000000001ull);
    pb_f64(&l[0], 11, 1700000000000000002ull);
    pb_u(&l[0], 2, 9);
    pb_str(&l[0], 3, "INFO");
    struct pb body = av_str("hello, a body longer than the value limit");
    pb_msg(&l[0], 5, &body);
    pb_kv(&l[0], 6, "job.id", av_int(17));
    pb_kv(&l[0], 6, "job.queue", av_str("mail-and-more"));
    pb_kv(&l[0], 6, "extra", av_int(1));
    pb_u(&l[0], 7, 3);
    pb_f32(&l[0], 8, 1);
    pb_bytes(&l[0], 9, TID, 16);
    pb_bytes(&l[0], 10, SID, 8);
    pb_str(&l[0], 12, "job.done");

    l[1] = pb_new();
    pb_u(&l[1], 2, 24);
    pb_bytes(&l[1], 9, "", 0);
    pb_bytes(&l[1], 10, "", 0);
    struct pb list = pb_new();
    pb_kv(&list, 1, "msg", av_str("failed"));
    pb_kv(&list, 1, "code", av_int(2));
    body = av_kvlist(&list);
    pb_msg(&l[1], 5, &body);

    l[2] = pb_new();
    struct pb items[2] = {av_str("x"), av_double(0.5)};
    body = av_array(items, 2);
    pb_msg(&l[2], 5, &body);

    l[3] = pb_new();
    pb_bytes(&l[3], 9, TID, 5);
    l[4] = pb_new();
    pb_bytes(&l[4], 10, SID, 3);
    l[5] = pb_new();
    pb_u(&l[5], 2, 25);
    l[6] = pb_new(); /* an empty record is a valid one */
    struct pb req = logs_req(l, 7);

    struct cn_tel_batch b;
    const struct cn_tel_limits lim = {.max_attrs = 2, .max_attr_value_bytes = 4};
    assert_int_equal(logs(&b, &req, &lim), 0);
    assert_int_equal(b.num_logs, 4);
    assert_int_equal(b.rejected, 3);
    assert_string_equal(b.reject_msg, "resource_logs[0].scope_logs[0].log_records[3]: trace_id "
                                      "is 5 bytes, want 0 or 16");
    const struct cn_log *a = &b.logs[0];
    assert_int_equal(a->time_ns, 1700000000000000001ull);
    assert_int_equal(a->observed_ns, 1700000000000000002ull);
    assert_int_equal(a->severity_number, 9);
    slice_is(a->severity_text, "INFO");
    assert_int_equal(a->body.type, CN_VAL_STR);
    slice_is(a->body.u.s, "hello, a body longer than the value limit"); /* bodies are not cut */
    assert_int_equal(a->attrs.num, 2);
    assert_int_equal(a->attrs.dropped, 4);
    assert_true(attr(&a->attrs, "job.id")->val.u.i == 17);
    str_attr_is(&a->attrs, "job.queue", "mail");
    assert_int_equal(a->flags, 1);
    assert_memory_equal(a->trace_id, TID, 16);
    assert_memory_equal(a->span_id, SID, 8);
    slice_is(a->event_name, "job.done");
    /* The value limit cuts the attribute but not the service's name. */
    slice_is(a->resource->service, "worker");
    str_attr_is(&a->resource->attrs, "service.name", "work");
    slice_is(a->scope->name, "jobs");
    slice_is(a->scope->version, "1.0");

    assert_int_equal(b.logs[1].severity_number, 24);
    assert_true(cn_id_is_zero(b.logs[1].trace_id, 16));
    assert_true(cn_id_is_zero(b.logs[1].span_id, 8));
    assert_int_equal(b.logs[1].body.type, CN_VAL_KVLIST);
    slice_is(b.logs[1].body.u.s,
             "{\"kvlistValue\":{\"values\":[{\"key\":\"msg\",\"value\":{\"stringValue\":"
             "\"failed\"}},{\"key\":\"code\",\"value\":{\"intValue\":\"2\"}}]}}");
    assert_int_equal(b.logs[2].body.type, CN_VAL_ARRAY);
    slice_is(b.logs[2].body.u.s, "{\"arrayValue\":{\"values\":[{\"stringValue\":\"x\"},"
                                 "{\"doubleValue\":0.5}]}}");
    assert_int_equal(b.logs[3].body.type, CN_VAL_EMPTY);
    assert_ptr_equal(b.logs[3].resource, a->resource);
    assert_int_equal(b.truncated_attrs, 1);
    assert_int_equal(b.truncated_values, 2); /* job.queue, service.name */
    cn_tel_batch_release(&b);

    /* The other two refusals' messages. */
    struct pb one[1] = {pb_new()};
    pb_bytes(&one[0], 10, SID, 3);
    pb_free(&req);
    req = logs_req(one, 1);
    assert_int_equal(logs(&b, &req, NULL), 0);
    assert_string_equal(b.reject_msg, "resource_logs[0].scope_logs[0].log_records[0]: span_id "
                                      "is 3 bytes, want 0 or 8");
    cn_tel_batch_release(&b);
    pb_free(&req);
    one[0] = pb_new();
    pb_u(&one[0], 2, 25);
    req = logs_req(one, 1);
    assert_int_equal(logs(&b, &req, NULL), 0);
    assert_int_equal(b.num_logs, 0);
    assert_string_equal(b.reject_msg, "resource_logs[0].scope_logs[0].log_records[0]: "
                                      "severity_number 25 is out of range (0..24)");
    cn_tel_batch_release(&b);
    pb_free(&req);

    /* Malformed: the body names its place; a span field number means nothing here. */
    one[0] = pb_new();
    pb_raw(&one[0], "\x2a\x02\x10\x80", 4);
    req = logs_req(one, 1);
    assert_int_equal(logs(&b, &req, NULL), CN_ESYNTAX);
    assert_string_equal(err, "resource_logs[0].scope_logs[0].log_records[0].body: truncated "
                             "field 2 (bool_value)");
    assert_int_equal(b.num_logs, 0);
    assert_null(b.logs);
    cn_tel_batch_release(&b);
    pb_free(&req);
    one[0] = pb_new();
    pb_u(&one[0], 9, 1);
    req = logs_req(one, 1);
    assert_int_equal(logs(&b, &req, NULL), CN_ESYNTAX);
    assert_string_equal(err, "resource_logs[0].scope_logs[0].log_records[0]: field 9 "
                             "(trace_id): wire type 0, want 2");
    cn_tel_batch_release(&b);
    pb_free(&req);
}

/* ---- responses ---- */

static void response_is(int logs_resp, uint64_t rejected, const char *msg, const char *want,
                        size_t want_len)
{
    struct cn_buf out;
    cn_buf_init(&out, 1 << 16);
    cn_buf_append(&out, "X", 1); /* appended after what is there */
    int rc = logs_resp ? cn_otlp_pb_encode_logs_response(&out, rejected, msg)
                       : cn_otlp_pb_encode_trace_response(&out, rejected, msg);
    assert_int_equal(rc, 0);
    assert_int_equal(out.len, 1 + want_len);
    assert_memory_equal(out.ptr + 1, want, want_len);
    cn_buf_release(&out);
}

static void responses(void **state)
{
    (void)state;
    for (int lg = 0; lg < 2; lg++) {
        response_is(lg, 0, NULL, "", 0);
        response_is(lg, 0, "", "", 0);
        response_is(lg, 3, NULL, "\x0a\x02\x08\x03", 4);
        response_is(lg, 0, "warn", "\x0a\x06\x12\x04warn", 8);
        response_is(lg, 300, "x", "\x0a\x06\x08\xac\x02\x12\x01x", 8);
        response_is(lg, UINT64_MAX, NULL, "\x0a\x0b\x08\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01",
                    13);
    }
    /* A 200-byte message: two-byte lengths. */
    char msg[201];
    memset(msg, 'm', 200);
    msg[200] = '\0';
    struct cn_buf out;
    cn_buf_init(&out, 1 << 16);
    assert_int_equal(cn_otlp_pb_encode_trace_response(&out, 1, msg), 0);
    assert_int_equal(out.len, 3 + 2 + 3 + 200);
    assert_memory_equal(out.ptr, "\x0a\xcd\x01\x08\x01\x12\xc8\x01", 8);
    assert_memory_equal(out.ptr + 8, msg, 200);
    cn_buf_release(&out);
    /* Past the buffer's maximum: an error and nothing appended. */
    cn_buf_init(&out, 3);
    assert_int_equal(cn_otlp_pb_encode_logs_response(&out, 1, "four"), CN_ELIMIT);
    assert_int_equal(out.len, 0);
    cn_buf_release(&out);
}

/* ---- bodies from the OpenTelemetry JS SDK ---- */

static void js_exporter_trace(void **state)
{
    (void)state;
    struct cn_tel_batch b;
    cn_tel_batch_init(&b, 1 << 20);
    assert_int_equal(
        cn_otlp_pb_decode_traces(&b, js_trace, sizeof(js_trace), NULL, err, sizeof(err)), 0);
    assert_int_equal(b.num_spans, 1);
    assert_int_equal(b.rejected, 0);
    const struct cn_span *s = &b.spans[0];
    hex_is(s->trace_id, 16, "5b8efff798038103d269b633813fc60c");
    hex_is(s->span_id, 8, "eee19b7ec3c1b171");
    assert_true(cn_id_is_zero(s->parent_id, 8));
    slice_is(s->name, "GET /api/cart");
    assert_int_equal(s->kind, CN_KIND_SERVER);
    assert_int_equal(s->start_ns, 1700000000123456789ull);
    assert_int_equal(s->end_ns, 1700000000523456789ull);
    assert_int_equal(s->flags, 0x101); /* sampled, parent-is-remote known */
    assert_int_equal(s->attrs.num, 5);
    assert_int_equal(s->attrs.dropped, 0);
    str_attr_is(&s->attrs, "http.request.method", "GET");
    assert_int_equal(attr(&s->attrs, "http.response.status_code")->val.type, CN_VAL_INT);
    assert_true(attr(&s->attrs, "http.response.status_code")->val.u.i == 503);
    assert_true(attr(&s->attrs, "retry.ratio")->val.u.d == 0.25);
    assert_int_equal(attr(&s->attrs, "cache.hit")->val.type, CN_VAL_BOOL);
    assert_int_equal(attr(&s->attrs, "cache.hit")->val.u.b, 0);
    json_attr_is(&s->attrs, "user.roles", CN_VAL_ARRAY,
                 "{\"arrayValue\":{\"values\":[{\"stringValue\":\"admin\"},{\"stringValue\":"
                 "\"ops\"}]}}");
    assert_int_equal(s->num_events, 1);
    slice_is(s->events[0].name, "cache.miss");
    assert_int_equal(s->events[0].time_ns, 1700000000200000000ull);
    str_attr_is(&s->events[0].attrs, "cache.key", "cart:42");
    assert_int_equal(s->num_links, 0);
    assert_int_equal(s->status_code, CN_STATUS_ERROR);
    slice_is(s->status_message, "upstream timeout");
    slice_is(s->resource->service, "cart");
    str_attr_is(&s->resource->attrs, "service.version", "1.4.2");
    slice_is(s->scope->name, "cart-handler");
    slice_is(s->scope->version, "0.3.1");
    cn_tel_batch_release(&b);
}

static void js_exporter_logs(void **state)
{
    (void)state;
    struct cn_tel_batch b;
    cn_tel_batch_init(&b, 1 << 20);
    assert_int_equal(cn_otlp_pb_decode_logs(&b, js_logs, sizeof(js_logs), NULL, err, sizeof(err)),
                     0);
    assert_int_equal(b.num_logs, 2);
    const struct cn_log *a = &b.logs[0], *c = &b.logs[1];
    assert_int_equal(a->time_ns, 1700000001000000005ull);
    assert_int_equal(a->observed_ns, 1795663684914000000ull);
    assert_int_equal(a->severity_number, 9);
    slice_is(a->severity_text, "INFO");
    slice_is(a->body.u.s, "job 17 done");
    assert_true(attr(&a->attrs, "job.id")->val.u.i == 17);
    str_attr_is(&a->attrs, "job.queue", "mail");
    assert_int_equal(a->flags, 1);
    hex_is(a->trace_id, 16, "5b8efff798038103d269b633813fc60c");
    hex_is(a->span_id, 8, "eee19b7ec3c1b174");
    assert_int_equal(a->event_name.len, 0);
    assert_int_equal(c->severity_number, 17);
    slice_is(c->severity_text, "ERROR");
    assert_int_equal(c->body.type, CN_VAL_KVLIST);
    slice_is(c->body.u.s,
             "{\"kvlistValue\":{\"values\":[{\"key\":\"msg\",\"value\":{\"stringValue\":"
             "\"failed\"}},{\"key\":\"codes\",\"value\":{\"arrayValue\":{\"values\":[{"
             "\"intValue\":\"1\"},{\"intValue\":\"2\"}]}}},{\"key\":\"nested\",\"value\":{"
             "\"kvlistValue\":{\"values\":[{\"key\":\"ok\",\"value\":{\"boolValue\":false}}]}}"
             "}]}}");
    slice_is(c->event_name, "job.failed");
    str_attr_is(&c->attrs, "exception.type", "IOError");
    assert_true(cn_id_is_zero(c->trace_id, 16));
    slice_is(c->resource->service, "worker");
    slice_is(c->scope->name, "jobs");
    cn_tel_batch_release(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(span_fields),      cmocka_unit_test(json_values),
        cmocka_unit_test(depth_limit),      cmocka_unit_test(rejects),
        cmocka_unit_test(accepts_edges),    cmocka_unit_test(limit_attrs),
        cmocka_unit_test(limit_values),     cmocka_unit_test(limit_events_links),
        cmocka_unit_test(resources),        cmocka_unit_test(unknown_fields),
        cmocka_unit_test(malformed),        cmocka_unit_test(malformed_paths),
        cmocka_unit_test(budget),           cmocka_unit_test(log_fields),
        cmocka_unit_test(responses),        cmocka_unit_test(js_exporter_trace),
        cmocka_unit_test(js_exporter_logs), cmocka_unit_test(attribute_runs),
        cmocka_unit_test(span_field_order),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
