/* Jaeger, Zipkin and Tempo renderings of hand-built spans (render-compat.h), compared field
 * by field with the shapes those tools parse: Jaeger's model/json, zipkin2-api.yaml, and the
 * protobuf JSON mapping / wire format of OTLP TracesData (tempopb.Trace). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <math.h>

#include "telemetry/render-compat.h"

#define T0 1700000000123456789ull /* ns */

/* ---- fixtures ---- */

static struct cn_kv kv_str(const char *k, const char *v)
{
    struct cn_kv kv = {.key = cn_slice_of(k), .val = {.type = CN_VAL_STR}};
    kv.val.u.s = cn_slice_of(v);
    return kv;
}

static struct cn_kv kv_int(const char *k, int64_t v)
{
    struct cn_kv kv = {.key = cn_slice_of(k), .val = {.type = CN_VAL_INT}};
    kv.val.u.i = v;
    return kv;
}

static struct cn_kv kv_double(const char *k, double v)
{
    struct cn_kv kv = {.key = cn_slice_of(k), .val = {.type = CN_VAL_DOUBLE}};
    kv.val.u.d = v;
    return kv;
}

static struct cn_kv kv_raw(const char *k, int type, const char *bytes, size_t n)
{
    struct cn_kv kv = {.key = cn_slice_of(k), .val = {.type = (uint8_t)type}};
    kv.val.u.s = (struct cn_slice){bytes, n};
    return kv;
}

static void set_id(uint8_t *dst, const char *hex)
{
    assert_int_equal(cn_hex_decode(dst, strlen(hex) / 2, cn_slice_of(hex)), 0);
}

/* Everything a span can carry, with odd strings: one SERVER span of a 64-bit trace ID (the
 * high half zero) whose span ID has the top bit set. */
struct fixture {
    struct cn_kv res_kv[2], attrs[10], ev_kv[1], link_kv[1];
    struct cn_resource res;
    struct cn_scope scope;
    struct cn_event ev;
    struct cn_link link;
    struct cn_span span;
};

static void fixture_init(struct fixture *f)
{
    memset(f, 0, sizeof(*f));
    f->res_kv[0] = kv_str("service.name", "svc");
    f->res_kv[1] = kv_str("host", "h\"1\"");
    f->res = (struct cn_resource){.attrs = {f->res_kv, 2, 0}, .service = cn_slice_of("svc")};
    f->scope = (struct cn_scope){.name = cn_slice_of("lib"), .version = cn_slice_of("1.0")};
    size_t n = 0;
    f->attrs[n++] = kv_str("s", "line\nbreak\ttab \"q\" \\ \x01 end");
    f->attrs[n++] = kv_int("i", -5);
    f->attrs[n++] = kv_int("big", INT64_MAX);
    f->attrs[n++] = kv_double("d", 1.5);
    f->attrs[n] = (struct cn_kv){.key = cn_slice_of("b"), .val = {.type = CN_VAL_BOOL}};
    f->attrs[n++].val.u.b = 1;
    f->attrs[n++] = kv_raw("bytes", CN_VAL_BYTES, "\x00\xff", 2);
    f->attrs[n++] = kv_double("nan", NAN);
    static const char arr[] = "{\"arrayValue\":{\"values\":[{\"stringValue\":\"a\"},"
                              "{\"intValue\":\"1\"}]}}";
    f->attrs[n++] = kv_raw("arr", CN_VAL_ARRAY, arr, sizeof(arr) - 1);
    f->attrs[n++] = kv_str("bad", "x\xff\xfey");         /* not UTF-8 */
    f->attrs[n++] = kv_raw("k\xff", CN_VAL_STR, "v", 1); /* a key that is not UTF-8 */
    f->ev_kv[0] = kv_int("n", 1);
    f->ev = (struct cn_event){
        .time_ns = T0 + 1000, .name = cn_slice_of("ev"), .attrs = {f->ev_kv, 1, 0}};
    f->link_kv[0] = kv_str("lk", "lv");
    f->link = (struct cn_link){
        .trace_state = cn_slice_of("a=b"), .attrs = {f->link_kv, 1, 0}, .flags = 1};
    set_id(f->link.trace_id, "abababababababababababababababab");
    set_id(f->link.span_id, "0102030405060708");
    struct cn_span *s = &f->span;
    set_id(s->trace_id, "00000000000000000102030405060708");
    set_id(s->span_id, "ffffffffffffffff");
    set_id(s->parent_id, "8000000000000001");
    s->trace_state = cn_slice_of("k=v");
    s->name = cn_slice_of("GET \"/a\"\n");
    s->kind = CN_KIND_SERVER;
    s->status_code = CN_STATUS_ERROR;
    s->status_message = (struct cn_slice){"bad\xff", 4};
    s->flags = 1;
    s->start_ns = T0;
    s->end_ns = T0 + 2500000; /* 2.5 ms */
    s->attrs = (struct cn_kvs){f->attrs, (uint32_t)n, 3};
    s->events = &f->ev;
    s->num_events = 1;
    s->links = &f->link;
    s->num_links = 1;
    s->resource = &f->res;
    s->scope = &f->scope;
}

/* got equals the JSON text want (whole values compared, object keys in any order). Takes
 * got's reference. */
static void assert_json(json_t *got, const char *want)
{
    json_error_t e;
    json_t *w = json_loads(want, JSON_DECODE_ANY, &e);
    if (!w)
        fail_msg("expected JSON does not parse: %s at %d", e.text, e.position);
    if (!json_equal(got, w)) {
        char *g = json_dumps(got, JSON_COMPACT | JSON_SORT_KEYS | JSON_ENCODE_ANY);
        char *x = json_dumps(w, JSON_COMPACT | JSON_SORT_KEYS | JSON_ENCODE_ANY);
        print_error("got  %s\nwant %s\n", g, x);
        free(g);
        free(x);
        fail();
    }
    json_decref(w);
    json_decref(got);
}

/* The bytes on the wire of j contain want (escaping checks). */
static void assert_wire(const json_t *j, const char *want)
{
    char *s = json_dumps(j, JSON_COMPACT | JSON_ENCODE_ANY);
    assert_non_null(s);
    if (!strstr(s, want))
        fail_msg("%s\nhas no %s", s, want);
    free(s);
}

/* ---- Jaeger ---- */

/* The Jaeger trace of spans a and b (of a's trace ID). */
static json_t *jaeger_of(const struct cn_span *a, const struct cn_span *b)
{
    struct cn_jaeger_trace t;
    cn_jaeger_trace_init(&t);
    assert_int_equal(cn_jaeger_trace_add(&t, a), 0);
    assert_int_equal(cn_jaeger_trace_add(&t, b), 0);
    json_t *j = cn_jaeger_trace_finish(&t, a->trace_id);
    assert_non_null(j);
    assert_null(t.spans); /* released */
    return j;
}

static const char jaeger_span_tags[] =
    "[{\"key\":\"s\",\"type\":\"string\",\"value\":\"line\\nbreak\\ttab \\\"q\\\" \\\\ \\u0001 "
    "end\"},"
    "{\"key\":\"i\",\"type\":\"int64\",\"value\":-5},"
    "{\"key\":\"big\",\"type\":\"int64\",\"value\":9223372036854775807},"
    "{\"key\":\"d\",\"type\":\"float64\",\"value\":1.5},"
    "{\"key\":\"b\",\"type\":\"bool\",\"value\":true},"
    "{\"key\":\"bytes\",\"type\":\"binary\",\"value\":\"AP8=\"},"
    "{\"key\":\"nan\",\"type\":\"string\",\"value\":\"NaN\"},"
    "{\"key\":\"arr\",\"type\":\"string\",\"value\":\"[\\\"a\\\",1]\"},"
    "{\"key\":\"bad\",\"type\":\"string\",\"value\":\"x\\ufffd\\ufffdy\"},"
    "{\"key\":\"k\\ufffd\",\"type\":\"string\",\"value\":\"v\"},"
    "{\"key\":\"span.kind\",\"type\":\"string\",\"value\":\"server\"},"
    "{\"key\":\"otel.status_code\",\"type\":\"string\",\"value\":\"ERROR\"},"
    "{\"key\":\"error\",\"type\":\"bool\",\"value\":true},"
    "{\"key\":\"otel.status_description\",\"type\":\"string\",\"value\":\"bad\\ufffd\"},"
    "{\"key\":\"otel.scope.name\",\"type\":\"string\",\"value\":\"lib\"},"
    "{\"key\":\"otel.scope.version\",\"type\":\"string\",\"value\":\"1.0\"},"
    "{\"key\":\"w3c.tracestate\",\"type\":\"string\",\"value\":\"k=v\"}]";

static void jaeger_trace_fields(void **state)
{
    (void)state;
    struct fixture f;
    fixture_init(&f);
    /* A second span of another resource, earlier: it sorts first and gets process p2. */
    struct cn_resource res2 = {.service = cn_slice_of("db")};
    struct cn_span s2 = {.kind = CN_KIND_CLIENT,
                         .name = cn_slice_of("q"),
                         .start_ns = T0 - 1000,
                         .end_ns = T0 - 2000, /* ends before it starts: duration 0 */
                         .resource = &res2};
    memcpy(s2.trace_id, f.span.trace_id, 16);
    set_id(s2.span_id, "0000000000000001");
    json_t *j = jaeger_of(&f.span, &s2);
    assert_wire(j, "\"operationName\":\"GET \\\"/a\\\"\\n\"");
    assert_wire(j, "\"value\":\"line\\nbreak\\ttab \\\"q\\\" \\\\ \\u0001 end\"");
    assert_wire(j, "\"value\":\"x\xef\xbf\xbd\xef\xbf\xbdy\"");
    char want[8192];
    snprintf(want, sizeof(want),
             "{\"traceID\":\"0102030405060708\",\"warnings\":null,"
             "\"processes\":{\"p1\":{\"serviceName\":\"svc\",\"tags\":[{\"key\":\"host\","
             "\"type\":\"string\",\"value\":\"h\\\"1\\\"\"}]},"
             "\"p2\":{\"serviceName\":\"db\",\"tags\":[]}},"
             "\"spans\":["
             "{\"traceID\":\"0102030405060708\",\"spanID\":\"0000000000000001\","
             "\"operationName\":\"q\",\"references\":[],\"startTime\":1700000000123455,"
             "\"duration\":0,\"tags\":[{\"key\":\"span.kind\",\"type\":\"string\","
             "\"value\":\"client\"}],\"logs\":[],\"processID\":\"p2\",\"warnings\":null},"
             "{\"traceID\":\"0102030405060708\",\"spanID\":\"ffffffffffffffff\","
             "\"operationName\":\"GET \\\"/a\\\"\\n\","
             "\"references\":[{\"refType\":\"CHILD_OF\",\"traceID\":\"0102030405060708\","
             "\"spanID\":\"8000000000000001\"},{\"refType\":\"FOLLOWS_FROM\","
             "\"traceID\":\"abababababababababababababababab\",\"spanID\":\"0102030405060708\"}],"
             "\"startTime\":1700000000123456,\"duration\":2500,\"tags\":%s,"
             "\"logs\":[{\"timestamp\":1700000000123457,\"fields\":[{\"key\":\"event\","
             "\"type\":\"string\",\"value\":\"ev\"},{\"key\":\"n\",\"type\":\"int64\","
             "\"value\":1}]}],\"processID\":\"p1\",\"warnings\":null,\"flags\":1}]}",
             jaeger_span_tags);
    assert_json(j, want);
}

/* Spans of the same resource share one process; a 128-bit trace ID keeps 32 digits. */
static void jaeger_processes_and_ids(void **state)
{
    (void)state;
    struct fixture f;
    fixture_init(&f);
    set_id(f.span.trace_id, "8000000000000000000000000000000a");
    struct cn_span s2 = f.span;
    set_id(s2.span_id, "0000000000000002");
    json_t *j = jaeger_of(&f.span, &s2);
    assert_int_equal(json_object_size(json_object_get(j, "processes")), 1);
    json_t *spans = json_object_get(j, "spans");
    assert_int_equal(json_array_size(spans), 2);
    assert_string_equal(json_string_value(json_object_get(j, "traceID")),
                        "8000000000000000000000000000000a");
    for (size_t i = 0; i < 2; i++) {
        json_t *s = json_array_get(spans, i);
        assert_string_equal(json_string_value(json_object_get(s, "processID")), "p1");
        assert_string_equal(json_string_value(json_object_get(s, "traceID")),
                            "8000000000000000000000000000000a");
    }
    /* Equal start times keep the order of arrival. */
    assert_string_equal(json_string_value(json_object_get(json_array_get(spans, 1), "spanID")),
                        "0000000000000002");
    json_decref(j);
}

/* ---- Zipkin ---- */

static void zipkin_span_fields(void **state)
{
    (void)state;
    struct fixture f;
    fixture_init(&f);
    json_t *j = cn_zipkin_render_span(&f.span);
    assert_wire(j, "\"name\":\"GET \\\"/a\\\"\\n\"");
    assert_json(j, "{\"traceId\":\"0102030405060708\",\"parentId\":\"8000000000000001\","
                   "\"id\":\"ffffffffffffffff\",\"kind\":\"SERVER\",\"name\":\"GET \\\"/a\\\"\\n\","
                   "\"timestamp\":1700000000123456,\"duration\":2500,"
                   "\"localEndpoint\":{\"serviceName\":\"svc\"},"
                   "\"annotations\":[{\"timestamp\":1700000000123457,\"value\":\"ev\"}],"
                   "\"tags\":{\"s\":\"line\\nbreak\\ttab \\\"q\\\" \\\\ \\u0001 end\","
                   "\"i\":\"-5\",\"big\":\"9223372036854775807\",\"d\":\"1.5\",\"b\":\"true\","
                   "\"bytes\":\"AP8=\",\"nan\":\"NaN\",\"arr\":\"[\\\"a\\\",1]\","
                   "\"bad\":\"x\\ufffd\\ufffdy\",\"otel.status_code\":\"ERROR\","
                   "\"error\":\"bad\\ufffd\",\"otel.scope.name\":\"lib\","
                   "\"otel.scope.version\":\"1.0\"}}");
}

/* CLIENT: the remote endpoint from peer.service, else server.address; INTERNAL: no kind; a
 * root: no parentId; an instant span: duration 1 (Zipkin rounds durations up). */
static void zipkin_kinds_and_peers(void **state)
{
    (void)state;
    struct cn_kv a[2] = {kv_str("server.address", "10.0.0.1"), kv_str("peer.service", "db")};
    struct cn_span s = {.kind = CN_KIND_CLIENT,
                        .name = cn_slice_of("q"),
                        .start_ns = T0,
                        .end_ns = T0,
                        .attrs = {a, 2, 0}};
    set_id(s.trace_id, "11111111111111112222222222222222");
    set_id(s.span_id, "3333333333333333");
    assert_json(cn_zipkin_render_span(&s),
                "{\"traceId\":\"11111111111111112222222222222222\",\"id\":\"3333333333333333\","
                "\"kind\":\"CLIENT\",\"name\":\"q\",\"timestamp\":1700000000123456,\"duration\":1,"
                "\"localEndpoint\":{\"serviceName\":\"unknown_service\"},"
                "\"remoteEndpoint\":{\"serviceName\":\"db\"},"
                "\"tags\":{\"server.address\":\"10.0.0.1\",\"peer.service\":\"db\"}}");
    s.attrs.num = 1;
    json_t *j = cn_zipkin_render_span(&s);
    assert_string_equal(
        json_string_value(json_object_get(json_object_get(j, "remoteEndpoint"), "serviceName")),
        "10.0.0.1");
    json_decref(j);
    s.kind = CN_KIND_INTERNAL;
    s.status_code = CN_STATUS_OK;
    j = cn_zipkin_render_span(&s);
    assert_null(json_object_get(j, "kind"));
    assert_null(json_object_get(j, "remoteEndpoint"));
    assert_string_equal(
        json_string_value(json_object_get(json_object_get(j, "tags"), "otel.status_code")), "OK");
    json_decref(j);
}

/* ---- Tempo JSON ---- */

static void tempo_json_fields(void **state)
{
    (void)state;
    struct fixture f;
    fixture_init(&f);
    f.span.attrs.num = 6; /* up to "bytes": doubles that JSON has no number for stay out */
    struct cn_tempo_trace t;
    cn_tempo_trace_init(&t);
    assert_int_equal(cn_tempo_trace_add(&t, &f.span), 0);
    json_t *b = cn_tempo_trace_finish(&t);
    assert_wire(b, "\"name\":\"GET \\\"/a\\\"\\n\"");
    assert_json(
        b, "[{\"resource\":{\"attributes\":[{\"key\":\"service.name\",\"value\":{\"stringValue\":"
           "\"svc\"}},{\"key\":\"host\",\"value\":{\"stringValue\":\"h\\\"1\\\"\"}}]},"
           "\"scopeSpans\":[{\"scope\":{\"name\":\"lib\",\"version\":\"1.0\"},\"spans\":[{"
           "\"traceId\":\"AAAAAAAAAAABAgMEBQYHCA==\",\"spanId\":\"//////////8=\","
           "\"traceState\":\"k=v\",\"parentSpanId\":\"gAAAAAAAAAE=\",\"flags\":1,"
           "\"name\":\"GET \\\"/a\\\"\\n\",\"kind\":\"SPAN_KIND_SERVER\","
           "\"startTimeUnixNano\":\"1700000000123456789\","
           "\"endTimeUnixNano\":\"1700000000125956789\","
           "\"attributes\":[{\"key\":\"s\",\"value\":{\"stringValue\":\"line\\nbreak\\ttab "
           "\\\"q\\\" \\\\ \\u0001 end\"}},{\"key\":\"i\",\"value\":{\"intValue\":\"-5\"}},"
           "{\"key\":\"big\",\"value\":{\"intValue\":\"9223372036854775807\"}},"
           "{\"key\":\"d\",\"value\":{\"doubleValue\":1.5}},"
           "{\"key\":\"b\",\"value\":{\"boolValue\":true}},"
           "{\"key\":\"bytes\",\"value\":{\"bytesValue\":\"AP8=\"}}],"
           "\"droppedAttributesCount\":3,"
           "\"events\":[{\"timeUnixNano\":\"1700000000123457789\",\"name\":\"ev\","
           "\"attributes\":[{\"key\":\"n\",\"value\":{\"intValue\":\"1\"}}]}],"
           "\"links\":[{\"traceId\":\"q6urq6urq6urq6urq6urqw==\",\"spanId\":\"AQIDBAUGBwg=\","
           "\"traceState\":\"a=b\",\"attributes\":[{\"key\":\"lk\",\"value\":{\"stringValue\":"
           "\"lv\"}}],\"flags\":1}],"
           "\"status\":{\"message\":\"bad\\ufffd\",\"code\":\"STATUS_CODE_ERROR\"}}]}]}]");
}

/* Grouping: one batch per resource, one scopeSpans per scope, in order of first arrival;
 * empty fields left out (an UNSET status is {}). */
static void tempo_grouping(void **state)
{
    (void)state;
    struct cn_resource r1 = {.service = cn_slice_of("a")}, r2 = {.service = cn_slice_of("b")};
    struct cn_kv k1 = kv_str("service.name", "a"), k2 = kv_str("service.name", "b");
    r1.attrs = (struct cn_kvs){&k1, 1, 0};
    r2.attrs = (struct cn_kvs){&k2, 1, 0};
    struct cn_scope sc1 = {.name = cn_slice_of("x")}, sc2 = {.name = cn_slice_of("y")};
    struct cn_span s[4] = {{.resource = &r1, .scope = &sc1},
                           {.resource = &r2, .scope = &sc1},
                           {.resource = &r1, .scope = &sc2},
                           {.resource = &r1, .scope = &sc1}};
    struct cn_tempo_trace t;
    cn_tempo_trace_init(&t);
    for (int i = 0; i < 4; i++) {
        s[i].trace_id[15] = 1;
        s[i].span_id[7] = (uint8_t)(i + 1);
        s[i].name = cn_slice_of("n");
        assert_int_equal(cn_tempo_trace_add(&t, &s[i]), 0);
    }
    json_t *b = cn_tempo_trace_finish(&t);
    assert_int_equal(json_array_size(b), 2);
    json_t *ss = json_object_get(json_array_get(b, 0), "scopeSpans");
    assert_int_equal(json_array_size(ss), 2);
    assert_int_equal(json_array_size(json_object_get(json_array_get(ss, 0), "spans")), 2);
    json_t *sp = json_array_get(json_object_get(json_array_get(ss, 1), "spans"), 0);
    assert_json(json_incref(sp), "{\"traceId\":\"AAAAAAAAAAAAAAAAAAAAAQ==\","
                                 "\"spanId\":\"AAAAAAAAAAM=\",\"name\":\"n\","
                                 "\"kind\":\"SPAN_KIND_UNSPECIFIED\",\"startTimeUnixNano\":\"0\","
                                 "\"endTimeUnixNano\":\"0\",\"status\":{}}");
    json_decref(b);
}

/* ---- Tempo protobuf: a small reader of the wire format ---- */

struct field {
    uint32_t num;
    int wire;
    uint64_t v;       /* varint, fixed64, fixed32 */
    const uint8_t *p; /* length-delimited */
    size_t len;
};

static uint64_t varint(const uint8_t **p, const uint8_t *end)
{
    uint64_t v = 0;
    for (int shift = 0; *p < end && shift < 64; shift += 7) {
        uint8_t b = *(*p)++;
        v |= (uint64_t)(b & 0x7f) << shift;
        if (!(b & 0x80))
            return v;
    }
    fail_msg("bad varint");
    return 0;
}

/* The fields of a message, in order; at most max. Returns how many. */
static size_t fields(const uint8_t *p, size_t n, struct field *out, size_t max)
{
    const uint8_t *end = p + n;
    size_t k = 0;
    while (p < end) {
        assert_true(k < max);
        uint64_t key = varint(&p, end);
        struct field *f = &out[k++];
        *f = (struct field){.num = (uint32_t)(key >> 3), .wire = (int)(key & 7)};
        switch (f->wire) {
        case 0:
            f->v = varint(&p, end);
            break;
        case 1:
        case 5: {
            int bytes = f->wire == 1 ? 8 : 4;
            assert_true(end - p >= bytes);
            for (int i = 0; i < bytes; i++)
                f->v |= (uint64_t)p[i] << (8 * i);
            p += bytes;
            break;
        }
        case 2:
            f->len = (size_t)varint(&p, end);
            assert_true((size_t)(end - p) >= f->len);
            f->p = p;
            p += f->len;
            break;
        default:
            fail_msg("wire type %d", f->wire);
        }
    }
    return k;
}

static void assert_field(const struct field *f, uint32_t num, int wire)
{
    if (f->num != num || f->wire != wire)
        fail_msg("field %u/%d, want %u/%d", f->num, f->wire, num, wire);
}

static void assert_bytes(const struct field *f, uint32_t num, const void *want, size_t n)
{
    assert_field(f, num, 2);
    assert_int_equal(f->len, n);
    assert_memory_equal(f->p, want, n);
}

static void tempo_protobuf_wire(void **state)
{
    (void)state;
    struct fixture f;
    fixture_init(&f);
    f.span.attrs.num = 4; /* s, i, big, d */
    struct cn_tempo_trace t;
    cn_tempo_trace_init(&t);
    assert_int_equal(cn_tempo_trace_add(&t, &f.span), 0);
    json_t *batches = cn_tempo_trace_finish(&t);
    struct cn_buf out;
    cn_buf_init(&out, 1 << 20);
    assert_int_equal(cn_tempo_encode_pb(&out, batches, 1), 0);
    json_decref(batches);

    struct field top[4], rs[4], res[4], kv[4], any[2], ss[4], sc[4], sp[32], st[4], ev[8], ln[8];
    /* tempopb.Trace / TracesData: batches = 1, one ResourceSpans. */
    assert_int_equal(fields((const uint8_t *)out.ptr, out.len, top, 4), 1);
    assert_field(&top[0], 1, 2);
    /* ResourceSpans: resource = 1, scope_spans = 2. */
    assert_int_equal(fields(top[0].p, top[0].len, rs, 4), 2);
    assert_field(&rs[0], 1, 2);
    assert_field(&rs[1], 2, 2);
    /* Resource: attributes = 1 (KeyValue: key = 1, value = 2 AnyValue: string_value = 1). */
    assert_int_equal(fields(rs[0].p, rs[0].len, res, 4), 2);
    assert_int_equal(fields(res[1].p, res[1].len, kv, 4), 2);
    assert_bytes(&kv[0], 1, "host", 4);
    assert_int_equal(fields(kv[1].p, kv[1].len, any, 2), 1);
    assert_bytes(&any[0], 1, "h\"1\"", 4);
    /* ScopeSpans: scope = 1 (name = 1, version = 2), spans = 2. */
    assert_int_equal(fields(rs[1].p, rs[1].len, ss, 4), 2);
    assert_int_equal(fields(ss[0].p, ss[0].len, sc, 4), 2);
    assert_bytes(&sc[0], 1, "lib", 3);
    assert_bytes(&sc[1], 2, "1.0", 3);
    assert_field(&ss[1], 2, 2);
    size_t n = fields(ss[1].p, ss[1].len, sp, 32);
    assert_int_equal(n, 17);
    size_t i = 0;
    assert_bytes(&sp[i++], 1, f.span.trace_id, 16);
    assert_bytes(&sp[i++], 2, f.span.span_id, 8);
    assert_bytes(&sp[i++], 3, "k=v", 3);
    assert_bytes(&sp[i++], 4, f.span.parent_id, 8);
    assert_bytes(&sp[i++], 5, "GET \"/a\"\n", 9);
    assert_field(&sp[i], 6, 0); /* kind */
    assert_int_equal(sp[i++].v, CN_KIND_SERVER);
    assert_field(&sp[i], 7, 1); /* start_time_unix_nano, fixed64 */
    assert_true(sp[i++].v == T0);
    assert_field(&sp[i], 8, 1);
    assert_true(sp[i++].v == T0 + 2500000);
    /* attributes = 9: s, i (int_value = 3, a negative varint of 10 bytes), big, d (double
     * = 4, fixed64). */
    assert_int_equal(fields(sp[i].p, sp[i].len, kv, 4), 2);
    assert_bytes(&kv[0], 1, "s", 1);
    assert_int_equal(fields(kv[1].p, kv[1].len, any, 2), 1);
    assert_bytes(&any[0], 1, "line\nbreak\ttab \"q\" \\ \x01 end", 26);
    i++;
    assert_int_equal(fields(sp[i].p, sp[i].len, kv, 4), 2);
    assert_int_equal(fields(kv[1].p, kv[1].len, any, 2), 1);
    assert_field(&any[0], 3, 0);
    assert_true((int64_t)any[0].v == -5);
    assert_int_equal(kv[1].len, 11);
    i++;
    assert_int_equal(fields(sp[i].p, sp[i].len, kv, 4), 2);
    assert_int_equal(fields(kv[1].p, kv[1].len, any, 2), 1);
    assert_true((int64_t)any[0].v == INT64_MAX);
    i++;
    assert_int_equal(fields(sp[i].p, sp[i].len, kv, 4), 2);
    assert_int_equal(fields(kv[1].p, kv[1].len, any, 2), 1);
    assert_field(&any[0], 4, 1);
    double d;
    memcpy(&d, &any[0].v, 8);
    assert_true(d == 1.5);
    i++;
    assert_field(&sp[i], 10, 0); /* dropped_attributes_count */
    assert_int_equal(sp[i++].v, 3);
    /* events = 11: time_unix_nano = 1 (fixed64), name = 2, attributes = 3. */
    assert_field(&sp[i], 11, 2);
    assert_int_equal(fields(sp[i].p, sp[i].len, ev, 8), 3);
    assert_field(&ev[0], 1, 1);
    assert_true(ev[0].v == T0 + 1000);
    assert_bytes(&ev[1], 2, "ev", 2);
    i++;
    /* links = 13: trace_id, span_id, trace_state, attributes, flags = 6 (fixed32). */
    assert_field(&sp[i], 13, 2);
    assert_int_equal(fields(sp[i].p, sp[i].len, ln, 8), 5);
    assert_bytes(&ln[0], 1, f.link.trace_id, 16);
    assert_bytes(&ln[1], 2, f.link.span_id, 8);
    assert_bytes(&ln[2], 3, "a=b", 3);
    assert_field(&ln[4], 6, 5);
    assert_int_equal(ln[4].v, 1);
    i++;
    /* status = 15: message = 2, code = 3. */
    assert_field(&sp[i], 15, 2);
    assert_int_equal(fields(sp[i].p, sp[i].len, st, 4), 2);
    assert_bytes(&st[0], 2, "bad\xef\xbf\xbd", 6);
    assert_field(&st[1], 3, 0);
    assert_int_equal(st[1].v, CN_STATUS_ERROR);
    i++;
    assert_field(&sp[i], 16, 5); /* flags, fixed32 */
    assert_int_equal(sp[i++].v, 1);
    assert_int_equal(i, n);

    /* The encoder refuses what is not batches, and stops at the buffer's maximum. */
    json_t *notarray = json_object();
    assert_int_equal(cn_tempo_encode_pb(&out, notarray, 1), CN_ESYNTAX);
    json_decref(notarray);
    cn_buf_release(&out);
    cn_tempo_trace_init(&t);
    assert_int_equal(cn_tempo_trace_add(&t, &f.span), 0);
    batches = cn_tempo_trace_finish(&t);
    cn_buf_init(&out, 64);
    assert_int_not_equal(cn_tempo_encode_pb(&out, batches, 1), 0);
    cn_buf_release(&out);
    json_decref(batches);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(jaeger_trace_fields), cmocka_unit_test(jaeger_processes_and_ids),
        cmocka_unit_test(zipkin_span_fields),  cmocka_unit_test(zipkin_kinds_and_peers),
        cmocka_unit_test(tempo_json_fields),   cmocka_unit_test(tempo_grouping),
        cmocka_unit_test(tempo_protobuf_wire),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
