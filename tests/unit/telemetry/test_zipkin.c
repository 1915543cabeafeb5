#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "telemetry/zipkin.h"

/* Bodies the OpenTelemetry JS SDK's Zipkin exporter (@opentelemetry/exporter-zipkin 2.x)
 * POSTed to a local /api/v2/spans, byte for byte: a SERVER span with an error status and its
 * CLIENT child with an event. */
static const char js_zipkin_server_body[] =
    "[{\"traceId\":\"f2931e4d54c21c8f59093bfe3117d879\",\"name\":\"GET /cart\","
    "\"id\":\"35ebe955e1bb1f42\",\"kind\":\"SERVER\",\"timestamp\":1795663623081000,"
    "\"duration\":5625,\"localEndpoint\":{\"serviceName\":\"checkout\"},"
    "\"tags\":{\"http.method\":\"GET\",\"http.status_code\":\"500\","
    "\"net.peer.name\":\"web-1\",\"otel.status_code\":\"ERROR\","
    "\"error\":\"cart service failed\",\"service.name\":\"checkout\"}}]";
static const char js_zipkin_client_body[] =
    "[{\"traceId\":\"f2931e4d54c21c8f59093bfe3117d879\",\"parentId\":\"35ebe955e1bb1f42\","
    "\"name\":\"SELECT cart\",\"id\":\"544e9e78cb5c795c\",\"kind\":\"CLIENT\","
    "\"timestamp\":1795663623082000,\"duration\":380,"
    "\"localEndpoint\":{\"serviceName\":\"checkout\"},\"tags\":{\"db.system\":\"postgresql\","
    "\"tags\":\"a,b\",\"service.name\":\"checkout\"},"
    "\"annotations\":[{\"timestamp\":1795663623082149,\"value\":\"query.start\"}]}]";

static struct cn_tel_batch b;
static char err[256];

static int setup(void **state)
{
    (void)state;
    cn_tel_batch_init(&b, 1 << 24);
    memset(err, 'x', sizeof(err));
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    cn_tel_batch_release(&b);
    return 0;
}

/* Test bodies are written with ' for " to stay readable; this puts the quotes back. */
static const char *q(const char *s)
{
    static char buf[1 << 18];
    size_t n = strlen(s);
    assert_true(n < sizeof(buf));
    for (size_t i = 0; i <= n; i++)
        buf[i] = s[i] == '\'' ? '"' : s[i];
    return buf;
}

static int zipkin(const char *body, const struct cn_tel_limits *lim)
{
    const char *j = q(body);
    return cn_zipkin_decode(&b, j, strlen(j), lim, err, sizeof(err));
}

static void reset(void)
{
    cn_tel_batch_release(&b);
    cn_tel_batch_init(&b, 1 << 24);
}

#define assert_slice(s, lit)                                                                       \
    do {                                                                                           \
        struct cn_slice s_ = (s);                                                                  \
        assert_non_null(s_.ptr);                                                                   \
        assert_int_equal(s_.len, strlen(lit));                                                     \
        assert_memory_equal(s_.ptr, (lit), s_.len + (s_.len == 0));                                \
    } while (0)

#define assert_id(id, n, hex)                                                                      \
    do {                                                                                           \
        char h_[65];                                                                               \
        cn_hex_encode(h_, (id), (n));                                                              \
        assert_string_equal(h_, (hex));                                                            \
    } while (0)

#define assert_str_kv(kv, k, v)                                                                    \
    do {                                                                                           \
        assert_slice((kv).key, k);                                                                 \
        assert_int_equal((kv).val.type, CN_VAL_STR);                                               \
        assert_slice((kv).val.u.s, v);                                                             \
    } while (0)

#define IDS "'traceId':'463ac35c9f6413ad48485a3953bb6124','id':'a2fb4a1d1a96d312'"
#define TS  "'timestamp':1700000000000000"

static void js_sdk_server_span(void **state)
{
    (void)state;
    assert_int_equal(cn_zipkin_decode(&b, js_zipkin_server_body, strlen(js_zipkin_server_body),
                                      NULL, err, sizeof(err)),
                     0);
    assert_string_equal(err, "");
    assert_int_equal(b.num_spans, 1);
    assert_int_equal(b.rejected, 0);
    const struct cn_span *s = &b.spans[0];
    assert_id(s->trace_id, 16, "f2931e4d54c21c8f59093bfe3117d879");
    assert_id(s->span_id, 8, "35ebe955e1bb1f42");
    assert_id(s->parent_id, 8, "0000000000000000");
    assert_slice(s->name, "GET /cart");
    assert_int_equal(s->kind, CN_KIND_SERVER);
    assert_int_equal(s->start_ns, 1795663623081000000ull);
    assert_int_equal(s->end_ns, 1795663623081000000ull + 5625000);
    assert_int_equal(s->status_code, CN_STATUS_ERROR);
    assert_slice(s->status_message, "cart service failed");
    assert_int_equal(s->attrs.num, 6);
    assert_int_equal(s->attrs.dropped, 0);
    assert_str_kv(s->attrs.items[0], "http.method", "GET");
    assert_str_kv(s->attrs.items[1], "http.status_code", "500");
    assert_str_kv(s->attrs.items[2], "net.peer.name", "web-1");
    assert_str_kv(s->attrs.items[3], "otel.status_code", "ERROR");
    assert_str_kv(s->attrs.items[4], "error", "cart service failed");
    assert_str_kv(s->attrs.items[5], "service.name", "checkout");
    assert_int_equal(s->num_events, 0);
    assert_int_equal(s->num_links, 0);
    assert_slice(s->resource->service, "checkout");
    assert_int_equal(s->resource->attrs.num, 1);
    assert_str_kv(s->resource->attrs.items[0], "service.name", "checkout");
    assert_slice(s->scope->name, "");
    assert_slice(s->trace_state, "");
}

static void js_sdk_client_span(void **state)
{
    (void)state;
    assert_int_equal(cn_zipkin_decode(&b, js_zipkin_client_body, strlen(js_zipkin_client_body),
                                      NULL, err, sizeof(err)),
                     0);
    assert_int_equal(b.num_spans, 1);
    const struct cn_span *s = &b.spans[0];
    assert_id(s->span_id, 8, "544e9e78cb5c795c");
    assert_id(s->parent_id, 8, "35ebe955e1bb1f42");
    assert_slice(s->name, "SELECT cart");
    assert_int_equal(s->kind, CN_KIND_CLIENT);
    assert_int_equal(s->end_ns - s->start_ns, 380000);
    assert_int_equal(s->status_code, CN_STATUS_UNSET);
    assert_slice(s->status_message, "");
    assert_int_equal(s->attrs.num, 3);
    assert_str_kv(s->attrs.items[0], "db.system", "postgresql");
    assert_str_kv(s->attrs.items[1], "tags", "a,b");
    assert_int_equal(s->num_events, 1);
    assert_slice(s->events[0].name, "query.start");
    assert_int_equal(s->events[0].time_ns, 1795663623082149000ull);
    assert_int_equal(s->events[0].attrs.num, 0);
    assert_slice(s->resource->service, "checkout");
}

static void every_field(void **state)
{
    (void)state;
    assert_int_equal(
        zipkin("[{'traceId':'48485a3953bb6124','id':'d312','parentId':'6b221d5bc9e6496c',"
               "'name':'get /api','kind':'PRODUCER','timestamp':1472470996199000,"
               "'duration':207000,'localEndpoint':{'serviceName':'frontend','ipv4':'192.168.99.1',"
               "'port':8080},'remoteEndpoint':{'serviceName':'broker','ipv6':'2001:db8::c001',"
               "'port':9092},'annotations':[{'timestamp':1472470996238000,'value':'ws'},"
               "{'timestamp':'1472470996403000','value':'wr'}],'tags':{'http.path':'/api',"
               "'clnt/finagle.version':'6.45.0','n':42,'r':2.5,'big':1e21,'t':true},"
               "'debug':true,'shared':true}]",
               NULL),
        0);
    assert_int_equal(b.num_spans, 1);
    const struct cn_span *s = &b.spans[0];
    assert_id(s->trace_id, 16, "000000000000000048485a3953bb6124");
    assert_id(s->span_id, 8, "000000000000d312");
    assert_id(s->parent_id, 8, "6b221d5bc9e6496c");
    assert_slice(s->name, "get /api");
    assert_int_equal(s->kind, CN_KIND_PRODUCER);
    assert_int_equal(s->start_ns, 1472470996199000000ull);
    assert_int_equal(s->end_ns, 1472470996406000000ull);
    assert_int_equal(s->flags, 0);
    assert_int_equal(s->attrs.num, 14);
    const struct cn_kv *kv = s->attrs.items;
    assert_str_kv(kv[0], "http.path", "/api");
    assert_str_kv(kv[1], "clnt/finagle.version", "6.45.0");
    assert_str_kv(kv[2], "n", "42");
    assert_str_kv(kv[3], "r", "2.5");
    assert_str_kv(kv[4], "big", "1e+21");
    assert_str_kv(kv[5], "t", "true");
    assert_str_kv(kv[6], "net.peer.name", "broker");
    assert_str_kv(kv[7], "server.address", "broker");
    assert_str_kv(kv[8], "net.peer.ip", "2001:db8::c001");
    assert_slice(kv[9].key, "net.peer.port");
    assert_int_equal(kv[9].val.type, CN_VAL_INT);
    assert_int_equal(kv[9].val.u.i, 9092);
    assert_str_kv(kv[10], "net.host.ip", "192.168.99.1");
    assert_slice(kv[11].key, "net.host.port");
    assert_int_equal(kv[11].val.u.i, 8080);
    assert_slice(kv[12].key, "zipkin.debug");
    assert_int_equal(kv[12].val.type, CN_VAL_BOOL);
    assert_int_equal(kv[12].val.u.b, 1);
    assert_slice(kv[13].key, "zipkin.shared");
    assert_int_equal(kv[13].val.u.b, 1);
    assert_int_equal(s->num_events, 2);
    assert_slice(s->events[0].name, "ws");
    assert_int_equal(s->events[0].time_ns, 1472470996238000000ull);
    assert_slice(s->events[1].name, "wr");
    assert_int_equal(s->events[1].time_ns, 1472470996403000000ull);
    assert_slice(s->resource->service, "frontend");
    assert_int_equal(b.truncated_attrs + b.truncated_values + b.truncated_events, 0);
}

static void kinds_and_ids(void **state)
{
    (void)state;
    static const struct {
        const char *fields;
        uint8_t kind;
        const char *trace, *span, *parent;
    } cases[] = {
        {"'kind':'CLIENT'", CN_KIND_CLIENT, NULL, NULL, NULL},
        {"'kind':'SERVER'", CN_KIND_SERVER, NULL, NULL, NULL},
        {"'kind':'PRODUCER'", CN_KIND_PRODUCER, NULL, NULL, NULL},
        {"'kind':'CONSUMER'", CN_KIND_CONSUMER, NULL, NULL, NULL},
        {"'kind':null", CN_KIND_INTERNAL, NULL, NULL, NULL},
        {"'name':'x'", CN_KIND_INTERNAL, NULL, NULL, NULL},
        /* Zipkin pads IDs shorter than 16 or 32 digits; any case */
        {"'traceId':'1','id':'2','parentId':'3'", CN_KIND_INTERNAL,
         "00000000000000000000000000000001", "0000000000000002", "0000000000000003"},
        {"'traceId':'ABCDEF0123456789A','id':'ABCDEF0123456789','parentId':''", CN_KIND_INTERNAL,
         "000000000000000abcdef0123456789a", "abcdef0123456789", "0000000000000000"},
        {"'traceId':'463AC35C9F6413AD48485A3953BB6124','id':'A','parentId':'0000000000000000'",
         CN_KIND_INTERNAL, "463ac35c9f6413ad48485a3953bb6124", "000000000000000a",
         "0000000000000000"},
    };
    for (size_t i = 0; i < CN_ARRAY_LEN(cases); i++) {
        char body[512];
        snprintf(body, sizeof(body), "[{" IDS "," TS ",%s}]", cases[i].fields);
        reset();
        assert_int_equal(zipkin(body, NULL), 0);
        assert_int_equal(b.rejected, 0);
        assert_int_equal(b.num_spans, 1);
        assert_int_equal(b.spans[0].kind, cases[i].kind);
        if (cases[i].trace) {
            assert_id(b.spans[0].trace_id, 16, cases[i].trace);
            assert_id(b.spans[0].span_id, 8, cases[i].span);
            assert_id(b.spans[0].parent_id, 8, cases[i].parent);
        }
    }
}

/* Spans of one localEndpoint.serviceName share a resource; all share one empty scope. */
static void resources(void **state)
{
    (void)state;
    assert_int_equal(zipkin("[{" IDS "," TS ",'localEndpoint':{'serviceName':'a'}},"
                            "{" IDS "," TS ",'localEndpoint':{'serviceName':'b'}},"
                            "{" IDS "," TS ",'localEndpoint':{'serviceName':'a','port':1}},"
                            "{" IDS "," TS "},"
                            "{" IDS "," TS ",'localEndpoint':{'serviceName':''}},"
                            "{" IDS "," TS ",'localEndpoint':{'serviceName':'unknown_service'}}]",
                            NULL),
                     0);
    assert_int_equal(b.num_spans, 6);
    const struct cn_span *s = b.spans;
    assert_true(s[0].resource == s[2].resource);
    assert_true(s[0].resource != s[1].resource);
    assert_slice(s[0].resource->service, "a");
    assert_slice(s[1].resource->service, "b");
    assert_true(s[3].resource == s[4].resource);
    assert_slice(s[3].resource->service, "unknown_service");
    assert_int_equal(s[3].resource->attrs.num, 0);
    assert_slice(s[3].resource->schema_url, "");
    /* A service literally named so is still a service with its attribute. */
    assert_true(s[5].resource != s[3].resource);
    assert_int_equal(s[5].resource->attrs.num, 1);
    for (size_t i = 0; i < 6; i++) {
        assert_true(s[i].scope == s[0].scope);
        assert_slice(s[i].scope->name, "");
        assert_slice(s[i].scope->version, "");
        assert_int_equal(s[i].scope->attrs.num, 0);
    }

    /* Many services: the table finds each again. */
    reset();
    static char body[1 << 15];
    size_t n = (size_t)snprintf(body, sizeof(body), "[");
    for (int i = 0; i < 200; i++)
        n += (size_t)snprintf(body + n, sizeof(body) - n,
                              "%s{" IDS "," TS ",'localEndpoint':{'serviceName':'svc%d'}}",
                              i ? "," : "", i % 50);
    snprintf(body + n, sizeof(body) - n, "]");
    assert_int_equal(zipkin(body, NULL), 0);
    assert_int_equal(b.num_spans, 200);
    for (int i = 0; i < 200; i++) {
        char name[16];
        snprintf(name, sizeof(name), "svc%d", i % 50);
        assert_slice(b.spans[i].resource->service, name);
        assert_true(b.spans[i].resource == b.spans[i % 50].resource);
    }
}

static void status(void **state)
{
    (void)state;
    static const struct {
        const char *tags;
        uint8_t code;
        const char *msg;
    } cases[] = {
        {"{}", CN_STATUS_UNSET, ""},
        {"{'error':''}", CN_STATUS_ERROR, ""},
        {"{'error':'timeout'}", CN_STATUS_ERROR, "timeout"},
        {"{'error':true}", CN_STATUS_ERROR, ""},
        {"{'error':null}", CN_STATUS_UNSET, ""},
        {"{'otel.status_code':'OK'}", CN_STATUS_OK, ""},
        {"{'otel.status_code':'ok','otel.status_description':'ignored unless an error'}",
         CN_STATUS_OK, ""},
        {"{'otel.status_code':'UNSET'}", CN_STATUS_UNSET, ""},
        {"{'otel.status_code':'ERROR','otel.status_description':'db down'}", CN_STATUS_ERROR,
         "db down"},
        {"{'otel.status_code':'ERROR','otel.status_description':'db down','error':'conn reset'}",
         CN_STATUS_ERROR, "conn reset"},
        {"{'otel.status_code':'ERROR','otel.status_description':'db down','error':''}",
         CN_STATUS_ERROR, "db down"},
        {"{'otel.status_code':'OK','error':'boom'}", CN_STATUS_ERROR, "boom"},
    };
    for (size_t i = 0; i < CN_ARRAY_LEN(cases); i++) {
        char body[512];
        snprintf(body, sizeof(body), "[{" IDS "," TS ",'tags':%s}]", cases[i].tags);
        reset();
        assert_int_equal(zipkin(body, NULL), 0);
        assert_int_equal(b.num_spans, 1);
        assert_int_equal(b.spans[0].status_code, cases[i].code);
        assert_slice(b.spans[0].status_message, cases[i].msg);
    }
}

/* Refused spans are skipped and counted; the first reason is kept with its path. */
static void rejections(void **state)
{
    (void)state;
    static const struct {
        const char *span;
        const char *msg;
    } cases[] = {
        {"{'id':'1'," TS "}", "[1].traceId: missing"},
        {"{'traceId':'','id':'1'," TS "}", "[1].traceId: missing"},
        {"{'traceId':'463ac35c9f6413ad48485a3953bb61240','id':'1'," TS "}",
         "[1].traceId: longer than 32 hex digits"},
        {"{'traceId':'463ac35c9f6413ad48485a3953bb612g','id':'1'," TS "}", "[1].traceId: not hex"},
        {"{'traceId':'0x12','id':'1'," TS "}", "[1].traceId: not hex"},
        {"{'traceId':'00000000000000000000000000000000','id':'1'," TS "}", "[1].traceId: all zero"},
        {"{'traceId':'0','id':'1'," TS "}", "[1].traceId: all zero"},
        {"{'traceId':'1'," TS "}", "[1].id: missing"},
        {"{'traceId':'1','id':'0000'," TS "}", "[1].id: all zero"},
        {"{'traceId':'1','id':'a2fb4a1d1a96d3120'," TS "}", "[1].id: longer than 16 hex digits"},
        {"{" IDS ",'parentId':'-1'," TS "}", "[1].parentId: not hex"},
        {"{" IDS ",'parentId':'6b221d5bc9e6496c6'," TS "}",
         "[1].parentId: longer than 16 hex digits"},
        {"{" IDS ",'kind':'INTERNAL'," TS "}", "[1].kind: not a span kind"},
        {"{" IDS ",'kind':'client'," TS "}", "[1].kind: not a span kind"},
        {"{" IDS "}", "[1].timestamp: missing"},
        {"{" IDS ",'timestamp':0,'duration':5}", "[1].timestamp: missing"},
        {"{" IDS "," TS ",'tags':{'otel.status_code':'FAILED'}}",
         "[1].tags.otel.status_code: not a status code"},
    };
    for (size_t i = 0; i < CN_ARRAY_LEN(cases); i++) {
        char body[1024];
        snprintf(body, sizeof(body), "[{" IDS "," TS ",'name':'a'},%s,{" IDS "," TS ",'name':'c'}]",
                 cases[i].span);
        reset();
        assert_int_equal(zipkin(body, NULL), 0);
        if (b.rejected != 1 || strcmp(b.reject_msg, cases[i].msg) != 0)
            fail_msg("case %zu: %u rejected, \"%s\"", i, (unsigned)b.rejected, b.reject_msg);
        assert_int_equal(b.num_spans, 2);
        assert_slice(b.spans[0].name, "a");
        assert_slice(b.spans[1].name, "c");
        assert_non_null(b.spans[1].resource);
    }

    /* All counted, the first reason kept. */
    reset();
    assert_int_equal(zipkin("[{'id':'1'},{" IDS "},{" IDS "," TS "}]", NULL), 0);
    assert_int_equal(b.rejected, 2);
    assert_string_equal(b.reject_msg, "[0].traceId: missing");
    assert_int_equal(b.num_spans, 1);

    /* Only refused spans: no spans, no error. */
    reset();
    assert_int_equal(zipkin("[{'id':'1'}]", NULL), 0);
    assert_int_equal(b.rejected, 1);
    assert_int_equal(b.num_spans, 0);
    assert_null(b.spans);

    /* A refused span with a malformed field later on is still a hard error. */
    reset();
    assert_int_equal(zipkin("[{'id':'1','tags':{'a':[]}}]", NULL), CN_ESYNTAX);
    assert_string_equal(err, "[0].tags.a: not a string");
    assert_int_equal(b.rejected, 0);
}

static void limit_attrs(void **state)
{
    (void)state;
    struct cn_tel_limits lim = {.max_attrs = 3};
    /* Exactly max. */
    assert_int_equal(zipkin("[{" IDS "," TS ",'tags':{'a':'1','b':'2'},'debug':true}]", &lim), 0);
    assert_int_equal(b.spans[0].attrs.num, 3);
    assert_int_equal(b.spans[0].attrs.dropped, 0);
    assert_int_equal(b.truncated_attrs, 0);

    /* max + 1 tag, then endpoint attributes: all past max are dropped and counted. */
    reset();
    assert_int_equal(zipkin("[{" IDS "," TS ",'tags':{'a':'1','b':'2','c':'3','d':'4'},"
                            "'remoteEndpoint':{'serviceName':'db','ipv4':'10.0.0.2','port':5432},"
                            "'localEndpoint':{'serviceName':'svc','port':80}}]",
                            &lim),
                     0);
    const struct cn_span *s = &b.spans[0];
    assert_int_equal(s->attrs.num, 3);
    assert_str_kv(s->attrs.items[2], "c", "3");
    assert_int_equal(s->attrs.dropped, 6);
    assert_int_equal(b.truncated_attrs, 6);
    /* The resource keeps its one attribute. */
    assert_int_equal(s->resource->attrs.num, 1);

    /* Tags only dropped past max: the endpoint attributes fill the remaining slots. */
    reset();
    assert_int_equal(zipkin("[{" IDS "," TS ",'tags':{'a':'1'},'remoteEndpoint':{'serviceName':"
                            "'db','port':5432},'kind':'SERVER'}]",
                            &lim),
                     0);
    s = &b.spans[0];
    assert_int_equal(s->attrs.num, 3);
    assert_str_kv(s->attrs.items[1], "net.peer.name", "db");
    assert_slice(s->attrs.items[2].key, "net.peer.port");
    assert_int_equal(s->attrs.dropped, 0);
}

static void limit_values(void **state)
{
    (void)state;
    struct cn_tel_limits lim = {.max_attr_value_bytes = 4};
    assert_int_equal(zipkin("[{" IDS "," TS ",'tags':{'a':'abcd','b':'abcde','c':'abc\xc3\xa9',"
                            "'d':123456,'error':'timeout'},'remoteEndpoint':{'serviceName':"
                            "'database'},'localEndpoint':{'serviceName':'frontend'},"
                            "'annotations':[{'timestamp':1,'value':'long annotation'}],"
                            "'name':'long span name'}]",
                            &lim),
                     0);
    const struct cn_kv *kv = b.spans[0].attrs.items;
    assert_str_kv(kv[0], "a", "abcd");
    assert_str_kv(kv[1], "b", "abcd");
    assert_str_kv(kv[2], "c", "abc");
    assert_str_kv(kv[3], "d", "1234");
    assert_str_kv(kv[4], "error", "time");
    assert_str_kv(kv[5], "net.peer.name", "data");
    assert_str_kv(kv[6], "server.address", "data");
    /* Status message, names and annotations are not attribute values. */
    assert_slice(b.spans[0].status_message, "timeout");
    assert_slice(b.spans[0].name, "long span name");
    assert_slice(b.spans[0].events[0].name, "long annotation");
    /* The attribute is cut, the service keeps its name. */
    assert_slice(b.spans[0].resource->service, "frontend");
    assert_str_kv(b.spans[0].resource->attrs.items[0], "service.name", "fron");
    assert_int_equal(b.truncated_values, 7);

    /* A refused span adds nothing to the truncation counters. */
    reset();
    struct cn_tel_limits all = {.max_attrs = 1, .max_attr_value_bytes = 2, .max_events = 1};
    assert_int_equal(zipkin("[{" IDS ",'tags':{'a':'long','b':'x'},'annotations':[{'timestamp':1,"
                            "'value':'a'},{'timestamp':2,'value':'b'}]},{" IDS "," TS
                            ",'tags':{'a':'x','b':'y'}}]",
                            &all),
                     0);
    assert_int_equal(b.rejected, 1);
    assert_string_equal(b.reject_msg, "[0].timestamp: missing");
    assert_int_equal(b.num_spans, 1);
    assert_int_equal(b.truncated_attrs, 1);
    assert_int_equal(b.truncated_values + b.truncated_events, 0);
}

static void limit_events(void **state)
{
    (void)state;
    struct cn_tel_limits lim = {.max_events = 2};
    assert_int_equal(zipkin("[{" IDS "," TS ",'annotations':[{'timestamp':1,'value':'a'},"
                            "{'timestamp':2,'value':'b'}]},"
                            "{" IDS "," TS ",'annotations':[{'timestamp':1,'value':'a'},"
                            "{'timestamp':2,'value':'b'},{'timestamp':3,'value':'c'}]}]",
                            &lim),
                     0);
    assert_int_equal(b.spans[0].num_events, 2);
    assert_int_equal(b.spans[0].dropped_events, 0);
    assert_int_equal(b.spans[1].num_events, 2);
    assert_slice(b.spans[1].events[1].name, "b");
    assert_int_equal(b.spans[1].dropped_events, 1);
    assert_int_equal(b.truncated_events, 1);

    /* Zero limits and no limits keep everything. */
    struct cn_tel_limits zero = {0};
    reset();
    assert_int_equal(zipkin("[{" IDS "," TS ",'annotations':[{'timestamp':1,'value':'a'},"
                            "{'timestamp':2,'value':'b'},{'timestamp':3,'value':'c'}],"
                            "'tags':{'a':'0123456789','b':'','c':'','d':'','e':''}}]",
                            &zero),
                     0);
    assert_int_equal(b.spans[0].num_events, 3);
    assert_int_equal(b.spans[0].attrs.num, 5);
    assert_int_equal(b.spans[0].attrs.items[0].val.u.s.len, 10);
    reset();
    assert_int_equal(zipkin("[{" IDS "," TS ",'annotations':[{'timestamp':1,'value':'a'},"
                            "{'timestamp':2,'value':'b'},{'timestamp':3,'value':'c'}]}]",
                            NULL),
                     0);
    assert_int_equal(b.spans[0].num_events, 3);
    assert_int_equal(b.truncated_events + b.truncated_attrs + b.truncated_values, 0);
}

static void malformed(void **state)
{
    (void)state;
    static const struct {
        const char *body;
        const char *err;
    } cases[] = {
        {"", "invalid JSON at line 1, column 0: unexpected token near end of file"},
        {"[{'a':1},", "invalid JSON at line 1, column 9: ']' expected near end of file"},
        {"[]]", "invalid JSON at line 1, column 3: end of file expected near ']'"},
        {"{}", "top level: not an array"},
        {"'spans'", "top level: not an array"},
        {"[{" IDS "," TS "},1]", "[1]: not an object"},
        {"[{'traceId':5}]", "[0].traceId: not a string"},
        {"[{'id':['a']}]", "[0].id: not a string"},
        {"[{'parentId':{}}]", "[0].parentId: not a string"},
        {"[{'name':{}}]", "[0].name: not a string"},
        {"[{'kind':2}]", "[0].kind: not a string"},
        {"[{'timestamp':'x'}]", "[0].timestamp: not an integer"},
        {"[{'timestamp':1.5}]", "[0].timestamp: not an integer"},
        {"[{'timestamp':-1}]", "[0].timestamp: out of range"},
        {"[{'timestamp':18446744073709552}]", "[0].timestamp: out of range"},
        {"[{'timestamp':18446744073709551,'duration':1000}]", "[0].duration: out of range"},
        {"[{'duration':true}]", "[0].duration: not an integer"},
        {"[{'localEndpoint':[]}]", "[0].localEndpoint: not an object"},
        {"[{'localEndpoint':{'serviceName':1}}]", "[0].localEndpoint.serviceName: not a string"},
        {"[{'remoteEndpoint':{'ipv4':1}}]", "[0].remoteEndpoint.ipv4: not a string"},
        {"[{'remoteEndpoint':{'ipv6':[]}}]", "[0].remoteEndpoint.ipv6: not a string"},
        {"[{'remoteEndpoint':{'port':65536}}]", "[0].remoteEndpoint.port: out of range"},
        {"[{'remoteEndpoint':{'port':'http'}}]", "[0].remoteEndpoint.port: not an integer"},
        {"[{'annotations':{}}]", "[0].annotations: not an array"},
        {"[{'annotations':[{'timestamp':1,'value':'a'},1]}]", "[0].annotations[1]: not an object"},
        {"[{'annotations':[{'timestamp':1}]}]", "[0].annotations[0].value: missing"},
        {"[{'annotations':[{'value':'a'}]}]", "[0].annotations[0].timestamp: missing"},
        {"[{'annotations':[{'timestamp':1,'value':7}]}]", "[0].annotations[0].value: not a string"},
        {"[{'annotations':[{'timestamp':'soon','value':'a'}]}]",
         "[0].annotations[0].timestamp: not an integer"},
        {"[{'tags':[]}]", "[0].tags: not an object"},
        {"[{'tags':{'http.path':['/']}}]", "[0].tags.http.path: not a string"},
        {"[{'tags':{'a b\\n':{}}}]", "[0].tags.?: not a string"},
        {"[{'debug':'true'}]", "[0].debug: not a boolean"},
        {"[{'shared':1}]", "[0].shared: not a boolean"},
    };
    for (size_t i = 0; i < CN_ARRAY_LEN(cases); i++) {
        reset();
        b.rejected = 7; /* counters before the call come back on failure */
        strcpy(b.reject_msg, "before");
        int rc = zipkin(cases[i].body, NULL);
        if (rc != CN_ESYNTAX || strcmp(err, cases[i].err) != 0)
            fail_msg("case %zu: rc %d, err \"%s\", want \"%s\"", i, rc, err, cases[i].err);
        assert_int_equal(b.num_spans, 0);
        assert_null(b.spans);
        assert_int_equal(b.rejected, 7);
        assert_string_equal(b.reject_msg, "before");
    }

    /* Not UTF-8: invalid JSON, and the message stays printable ASCII. */
    static const char bad[] = "[\"\xc3\x28\"]";
    reset();
    assert_int_equal(cn_zipkin_decode(&b, bad, strlen(bad), NULL, err, sizeof(err)), CN_ESYNTAX);
    assert_string_equal(err,
                        "invalid JSON at line 1, column 2: unable to decode byte 0xc3 near '\"'");
    reset();
    assert_int_equal(cn_zipkin_decode(&b, bad, strlen(bad), NULL, NULL, 0), CN_ESYNTAX);
    reset();
    assert_int_equal(cn_zipkin_decode(&b, bad, strlen(bad), NULL, NULL, 64), CN_ESYNTAX);
}

/* Nulls are absent fields, unknown keys are ignored, bad addresses are ignored. */
static void lenient_input(void **state)
{
    (void)state;
    assert_int_equal(zipkin("[]", NULL), 0);
    assert_int_equal(b.num_spans, 0);
    assert_null(b.spans);

    reset();
    assert_int_equal(zipkin("[{" IDS "," TS ",'parentId':null,'name':null,'kind':null,"
                            "'duration':null,'localEndpoint':null,'remoteEndpoint':{'serviceName':"
                            "null,'ipv4':'300.1.1.1','ipv6':'::ffff:10.0.0.1','port':null},"
                            "'annotations':null,'tags':{'a':null,'b':'x'},'debug':false,"
                            "'shared':null,'future':{'x':[1]}}]",
                            NULL),
                     0);
    const struct cn_span *s = &b.spans[0];
    assert_int_equal(b.num_spans, 1);
    assert_slice(s->name, "");
    assert_int_equal(s->kind, CN_KIND_INTERNAL);
    assert_int_equal(s->end_ns, s->start_ns);
    assert_int_equal(s->attrs.num, 2);
    assert_str_kv(s->attrs.items[0], "b", "x");
    assert_str_kv(s->attrs.items[1], "net.peer.ip", "::ffff:10.0.0.1");
    assert_int_equal(s->num_events, 0);
    assert_slice(s->resource->service, "unknown_service");

    reset();
    assert_int_equal(zipkin("[{" IDS "," TS ",'localEndpoint':{'ipv4':'10.0.0.256','ipv6':'zz',"
                            "'port':0},'timestamp':'1700000000000001'}]",
                            NULL),
                     0);
    assert_int_equal(b.spans[0].attrs.num, 0);
    assert_int_equal(b.spans[0].start_ns, 1700000000000001000ull);
}

static void arena_limit(void **state)
{
    (void)state;
    static char body[1 << 17];
    size_t n = (size_t)snprintf(body, sizeof(body), "[");
    for (int i = 0; i < 150; i++)
        n += (size_t)snprintf(body + n, sizeof(body) - n,
                              "%s{" IDS "," TS ",'name':'%0300d','localEndpoint':{'serviceName':"
                              "'s%d'}}",
                              i ? "," : "", i, i);
    snprintf(body + n, sizeof(body) - n, "]");
    cn_tel_batch_release(&b);
    cn_tel_batch_init(&b, 70000);
    assert_int_equal(zipkin(body, NULL), CN_ENOMEM);
    assert_string_equal(err, "batch too large for the decode budget");
    assert_int_equal(b.num_spans, 0);
    assert_null(b.spans);
    reset();
    assert_int_equal(zipkin(body, NULL), 0);
    assert_int_equal(b.num_spans, 150);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(js_sdk_server_span, setup, teardown),
        cmocka_unit_test_setup_teardown(js_sdk_client_span, setup, teardown),
        cmocka_unit_test_setup_teardown(every_field, setup, teardown),
        cmocka_unit_test_setup_teardown(kinds_and_ids, setup, teardown),
        cmocka_unit_test_setup_teardown(resources, setup, teardown),
        cmocka_unit_test_setup_teardown(status, setup, teardown),
        cmocka_unit_test_setup_teardown(rejections, setup, teardown),
        cmocka_unit_test_setup_teardown(limit_attrs, setup, teardown),
        cmocka_unit_test_setup_teardown(limit_values, setup, teardown),
        cmocka_unit_test_setup_teardown(limit_events, setup, teardown),
        cmocka_unit_test_setup_teardown(malformed, setup, teardown),
        cmocka_unit_test_setup_teardown(lenient_input, setup, teardown),
        cmocka_unit_test_setup_teardown(arena_limit, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
