#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <math.h>

#include "telemetry/otlp-json.h"

/* Bodies the OpenTelemetry JS SDK 2.x sent (@opentelemetry/exporter-trace-otlp-http 0.223.1
 * POSTing to a local server, two spans exported one at a time by a SimpleSpanProcessor), and
 * an ExportLogsServiceRequest from the same release's JsonLogsSerializer, byte for byte. */
static const char js_parent_body[] =
    "{\"resourceSpans\":[{\"resource\":{\"attributes\":[{\"key\":\"service.name\","
    "\"value\":{\"stringValue\":\"checkout\"}},{\"key\":\"service.version\","
    "\"value\":{\"stringValue\":\"1.4.2\"}},{\"key\":\"host.cores\","
    "\"value\":{\"intValue\":8}}],\"droppedAttributesCount\":0},"
    "\"scopeSpans\":[{\"scope\":{\"name\":\"checkout-lib\",\"version\":\"0.9.0\"},"
    "\"spans\":[{\"traceId\":\"0918becd78fa6d6583228be51b2f9fc1\","
    "\"spanId\":\"acf9c37ac347d0c5\",\"name\":\"GET /cart\",\"kind\":2,"
    "\"startTimeUnixNano\":\"1795663357894000000\","
    "\"endTimeUnixNano\":\"1795663357899573972\",\"attributes\":[{\"key\":\"http.method\","
    "\"value\":{\"stringValue\":\"GET\"}},{\"key\":\"http.status_code\","
    "\"value\":{\"intValue\":500}},{\"key\":\"ratio\",\"value\":{\"doubleValue\":0.25}},"
    "{\"key\":\"cached\",\"value\":{\"boolValue\":false}},{\"key\":\"tags\","
    "\"value\":{\"arrayValue\":{\"values\":[{\"stringValue\":\"a\"},"
    "{\"stringValue\":\"b\"}]}}}],\"droppedAttributesCount\":0,"
    "\"events\":[{\"attributes\":[{\"key\":\"exception.type\","
    "\"value\":{\"stringValue\":\"Error\"}},{\"key\":\"exception.message\","
    "\"value\":{\"stringValue\":\"boom\"}},{\"key\":\"exception.stacktrace\","
    "\"value\":{\"stringValue\":\"Error: boom\\n    at Server.<anonymous> (/tmp/otelgen2/gen."
    "js:33:26)\\n    at Object.onceWrapper (node:events:638:28)\\n    at Server.emit (node:ev"
    "ents:536:35)\\n    at emitListeningNT (node:net:1951:10)\\n    at process.processTicksAn"
    "dRejections (node:internal/process/task_queues:81:21)\"}}],\"name\":\"exception\","
    "\"timeUnixNano\":\"1795663357899555067\",\"droppedAttributesCount\":0}],"
    "\"droppedEventsCount\":0,\"status\":{\"code\":2,\"message\":\"cart service failed\"},"
    "\"links\":[],\"droppedLinksCount\":0,\"flags\":257}]}]}]}";
static const char js_child_body[] =
    "{\"resourceSpans\":[{\"resource\":{\"attributes\":[{\"key\":\"service.name\","
    "\"value\":{\"stringValue\":\"checkout\"}},{\"key\":\"service.version\","
    "\"value\":{\"stringValue\":\"1.4.2\"}},{\"key\":\"host.cores\","
    "\"value\":{\"intValue\":8}}],\"droppedAttributesCount\":0},"
    "\"scopeSpans\":[{\"scope\":{\"name\":\"checkout-lib\",\"version\":\"0.9.0\"},"
    "\"spans\":[{\"traceId\":\"0918becd78fa6d6583228be51b2f9fc1\","
    "\"spanId\":\"e08606f153990950\",\"parentSpanId\":\"acf9c37ac347d0c5\","
    "\"name\":\"SELECT cart\",\"kind\":3,\"startTimeUnixNano\":\"1795663357895000000\","
    "\"endTimeUnixNano\":\"1795663357895345816\",\"attributes\":[],"
    "\"droppedAttributesCount\":0,\"events\":[{\"attributes\":[{\"key\":\"db.rows\","
    "\"value\":{\"intValue\":3}}],\"name\":\"query.start\","
    "\"timeUnixNano\":\"1795663357895217283\",\"droppedAttributesCount\":0}],"
    "\"droppedEventsCount\":0,\"status\":{\"code\":1},"
    "\"links\":[{\"attributes\":[{\"key\":\"link.kind\","
    "\"value\":{\"stringValue\":\"retry\"}}],\"spanId\":\"0123456789abcdef\","
    "\"traceId\":\"abcdef0123456789abcdef0123456789\",\"droppedAttributesCount\":0,"
    "\"flags\":769}],\"droppedLinksCount\":0,\"flags\":257}]}]}]}";
static const char js_logs_body[] =
    "{\"resourceLogs\":[{\"resource\":{\"attributes\":[{\"key\":\"service.name\","
    "\"value\":{\"stringValue\":\"billing\"}}],\"droppedAttributesCount\":0},"
    "\"scopeLogs\":[{\"scope\":{\"name\":\"billing-log\",\"version\":\"2.0.1\"},"
    "\"logRecords\":[{\"timeUnixNano\":\"1795663369375000000\","
    "\"observedTimeUnixNano\":\"1795663369375000000\",\"severityNumber\":17,"
    "\"severityText\":\"ERROR\",\"body\":{\"stringValue\":\"payment declined\"},"
    "\"eventName\":\"payment.failed\",\"attributes\":[{\"key\":\"order.id\","
    "\"value\":{\"intValue\":42}},{\"key\":\"amount\",\"value\":{\"doubleValue\":9.5}}],"
    "\"droppedAttributesCount\":0,\"flags\":1,"
    "\"traceId\":\"5b8efff798038103d269b633813fc60c\",\"spanId\":\"eee19b7ec3c1b174\"},"
    "{\"timeUnixNano\":\"1795663369376000000\","
    "\"observedTimeUnixNano\":\"1795663369376000000\",\"severityNumber\":9,"
    "\"severityText\":\"INFO\",\"body\":{\"kvlistValue\":{\"values\":[{\"key\":\"user\","
    "\"value\":{\"stringValue\":\"bob\"}},{\"key\":\"n\","
    "\"value\":{\"arrayValue\":{\"values\":[{\"intValue\":1},{\"intValue\":2}]}}}]}},"
    "\"attributes\":[],\"droppedAttributesCount\":0}]}]}]}";

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
    static char buf[1 << 20];
    size_t n = strlen(s);
    assert_true(n < sizeof(buf));
    for (size_t i = 0; i <= n; i++)
        buf[i] = s[i] == '\'' ? '"' : s[i];
    return buf;
}

static int traces(const char *body, const struct cn_tel_limits *lim)
{
    const char *j = q(body);
    return cn_otlp_json_decode_traces(&b, j, strlen(j), lim, err, sizeof(err));
}

static int logs(const char *body, const struct cn_tel_limits *lim)
{
    const char *j = q(body);
    return cn_otlp_json_decode_logs(&b, j, strlen(j), lim, err, sizeof(err));
}

/* Re-initialises the batch between two decodes in one test. */
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

/* Envelope of one resource and scope around spans / log records. */
#define SPANS(...) "{'resourceSpans':[{'scopeSpans':[{'spans':[" __VA_ARGS__ "]}]}]}"
#define LOGS(...)  "{'resourceLogs':[{'scopeLogs':[{'logRecords':[" __VA_ARGS__ "]}]}]}"
#define TID        "5b8efff798038103d269b633813fc60c"
#define SID        "eee19b7ec3c1b174"
#define IDS        "'traceId':'" TID "','spanId':'" SID "'"
#define SPAN0      "resourceSpans[0].scopeSpans[0].spans[0]"
#define SPAN1      "resourceSpans[0].scopeSpans[0].spans[1]"
#define LOG0       "resourceLogs[0].scopeLogs[0].logRecords[0]"

static void js_sdk_parent_span(void **state)
{
    (void)state;
    assert_int_equal(cn_otlp_json_decode_traces(&b, js_parent_body, strlen(js_parent_body), NULL,
                                                err, sizeof(err)),
                     0);
    assert_string_equal(err, "");
    assert_int_equal(b.num_spans, 1);
    assert_int_equal(b.rejected, 0);
    const struct cn_span *s = &b.spans[0];
    assert_id(s->trace_id, 16, "0918becd78fa6d6583228be51b2f9fc1");
    assert_id(s->span_id, 8, "acf9c37ac347d0c5");
    assert_id(s->parent_id, 8, "0000000000000000");
    assert_slice(s->name, "GET /cart");
    assert_slice(s->trace_state, "");
    assert_int_equal(s->kind, CN_KIND_SERVER);
    assert_int_equal(s->start_ns, 1795663357894000000ull);
    assert_int_equal(s->end_ns, 1795663357899573972ull);
    assert_int_equal(s->flags, 257);
    assert_int_equal(s->status_code, CN_STATUS_ERROR);
    assert_slice(s->status_message, "cart service failed");

    assert_int_equal(s->attrs.num, 5);
    assert_int_equal(s->attrs.dropped, 0);
    assert_str_kv(s->attrs.items[0], "http.method", "GET");
    assert_slice(s->attrs.items[1].key, "http.status_code");
    assert_int_equal(s->attrs.items[1].val.type, CN_VAL_INT);
    assert_int_equal(s->attrs.items[1].val.u.i, 500);
    assert_slice(s->attrs.items[2].key, "ratio");
    assert_int_equal(s->attrs.items[2].val.type, CN_VAL_DOUBLE);
    assert_true(s->attrs.items[2].val.u.d == 0.25);
    assert_slice(s->attrs.items[3].key, "cached");
    assert_int_equal(s->attrs.items[3].val.type, CN_VAL_BOOL);
    assert_int_equal(s->attrs.items[3].val.u.b, 0);
    assert_slice(s->attrs.items[4].key, "tags");
    assert_int_equal(s->attrs.items[4].val.type, CN_VAL_ARRAY);
    assert_slice(s->attrs.items[4].val.u.s,
                 "{\"arrayValue\":{\"values\":[{\"stringValue\":\"a\"},{\"stringValue\":\"b\"}]}}");

    assert_int_equal(s->num_events, 1);
    assert_int_equal(s->dropped_events, 0);
    assert_slice(s->events[0].name, "exception");
    assert_int_equal(s->events[0].time_ns, 1795663357899555067ull);
    assert_int_equal(s->events[0].attrs.num, 3);
    assert_str_kv(s->events[0].attrs.items[0], "exception.type", "Error");
    assert_str_kv(s->events[0].attrs.items[1], "exception.message", "boom");
    assert_slice(s->events[0].attrs.items[2].key, "exception.stacktrace");
    assert_int_equal(s->events[0].attrs.items[2].val.u.s.len, 278);
    assert_memory_equal(s->events[0].attrs.items[2].val.u.s.ptr, "Error: boom\n    at Server.", 26);
    assert_int_equal(s->num_links, 0);
    assert_null(s->links);

    const struct cn_resource *r = s->resource;
    assert_slice(r->service, "checkout");
    assert_slice(r->schema_url, "");
    assert_int_equal(r->attrs.num, 3);
    assert_str_kv(r->attrs.items[1], "service.version", "1.4.2");
    assert_int_equal(r->attrs.items[2].val.type, CN_VAL_INT);
    assert_int_equal(r->attrs.items[2].val.u.i, 8);
    assert_slice(s->scope->name, "checkout-lib");
    assert_slice(s->scope->version, "0.9.0");
    assert_int_equal(s->scope->attrs.num, 0);

    /* Nothing points into the body or jansson's tree: the arena holds every string. */
    assert_false(s->name.ptr >= js_parent_body &&
                 s->name.ptr < js_parent_body + sizeof(js_parent_body));
}

static void js_sdk_child_span(void **state)
{
    (void)state;
    assert_int_equal(cn_otlp_json_decode_traces(&b, js_child_body, strlen(js_child_body), NULL, err,
                                                sizeof(err)),
                     0);
    assert_int_equal(b.num_spans, 1);
    const struct cn_span *s = &b.spans[0];
    assert_id(s->span_id, 8, "e08606f153990950");
    assert_id(s->parent_id, 8, "acf9c37ac347d0c5");
    assert_int_equal(s->kind, CN_KIND_CLIENT);
    assert_int_equal(s->status_code, CN_STATUS_OK);
    assert_slice(s->status_message, "");
    assert_int_equal(s->attrs.num, 0);
    assert_int_equal(s->num_events, 1);
    assert_slice(s->events[0].name, "query.start");
    assert_int_equal(s->events[0].time_ns, 1795663357895217283ull);
    assert_int_equal(s->events[0].attrs.items[0].val.u.i, 3);
    assert_int_equal(s->num_links, 1);
    assert_id(s->links[0].trace_id, 16, "abcdef0123456789abcdef0123456789");
    assert_id(s->links[0].span_id, 8, "0123456789abcdef");
    assert_int_equal(s->links[0].flags, 769);
    assert_slice(s->links[0].trace_state, "");
    assert_str_kv(s->links[0].attrs.items[0], "link.kind", "retry");
}

static void js_sdk_logs(void **state)
{
    (void)state;
    assert_int_equal(
        cn_otlp_json_decode_logs(&b, js_logs_body, strlen(js_logs_body), NULL, err, sizeof(err)),
        0);
    assert_int_equal(b.num_logs, 2);
    assert_int_equal(b.num_spans, 0);
    const struct cn_log *l = &b.logs[0];
    assert_int_equal(l->time_ns, 1795663369375000000ull);
    assert_int_equal(l->observed_ns, 1795663369375000000ull);
    assert_int_equal(l->severity_number, 17);
    assert_slice(l->severity_text, "ERROR");
    assert_int_equal(l->body.type, CN_VAL_STR);
    assert_slice(l->body.u.s, "payment declined");
    assert_slice(l->event_name, "payment.failed");
    assert_int_equal(l->attrs.num, 2);
    assert_int_equal(l->attrs.items[0].val.u.i, 42);
    assert_true(l->attrs.items[1].val.u.d == 9.5);
    assert_int_equal(l->flags, 1);
    assert_id(l->trace_id, 16, TID);
    assert_id(l->span_id, 8, SID);
    assert_slice(l->resource->service, "billing");
    assert_slice(l->scope->name, "billing-log");
    assert_slice(l->scope->version, "2.0.1");

    l = &b.logs[1];
    assert_int_equal(l->severity_number, 9);
    assert_id(l->trace_id, 16, "00000000000000000000000000000000");
    assert_id(l->span_id, 8, "0000000000000000");
    assert_slice(l->event_name, "");
    assert_int_equal(l->body.type, CN_VAL_KVLIST);
    assert_slice(l->body.u.s, "{\"kvlistValue\":{\"values\":[{\"key\":\"user\",\"value\":{"
                              "\"stringValue\":\"bob\"}},{\"key\":\"n\",\"value\":{"
                              "\"arrayValue\":{\"values\":[{\"intValue\":\"1\"},{\"intValue\":"
                              "\"2\"}]}}}]}}");
}

/* Every field of the mapping, in lowerCamelCase. */
static const char every_field[] =
    "{'resourceSpans':[{'resource':{'attributes':[{'key':'service.name','value':{'stringValue':"
    "'cart'}},{'key':'k8s.pod.uid','value':{'bytesValue':'AQL/'}}],'droppedAttributesCount':2},"
    "'scopeSpans':[{'scope':{'name':'lib','version':'1.0','attributes':[{'key':'s','value':{"
    "'boolValue':true}}],'droppedAttributesCount':1},'spans':[{'traceId':'" TID "',"
    "'spanId':'" SID "','parentSpanId':'0102030405060708','traceState':'vendor=x','name':'op',"
    "'kind':4,'startTimeUnixNano':1700000000000000000,'endTimeUnixNano':'1700000000000000100',"
    "'attributes':[{'key':'i','value':{'intValue':'-9223372036854775808'}},{'key':'d','value':{"
    "'doubleValue':'-Infinity'}},{'key':'e','value':{}},{'key':'kv','value':{'kvlistValue':{"
    "'values':[{'key':'a','value':{'doubleValue':1e300}}]}}}],'droppedAttributesCount':3,"
    "'events':[{'timeUnixNano':'1700000000000000050','name':'ev','attributes':[{'key':'x',"
    "'value':{'stringValue':'y'}}],'droppedAttributesCount':4}],'droppedEventsCount':5,"
    "'links':[{'traceId':'0102030405060708090a0b0c0d0e0f10','spanId':'1112131415161718',"
    "'traceState':'a=b','attributes':[],'droppedAttributesCount':6,'flags':513}],"
    "'droppedLinksCount':7,'status':{'code':1,'message':'fine'},'flags':1}],"
    "'schemaUrl':'https://opentelemetry.io/schemas/1.24.0'}],"
    "'schemaUrl':'https://opentelemetry.io/schemas/1.25.0'}]}";

static void check_every_field(void)
{
    assert_int_equal(b.num_spans, 1);
    assert_int_equal(b.rejected, 0);
    const struct cn_span *s = &b.spans[0];
    assert_id(s->trace_id, 16, TID);
    assert_id(s->span_id, 8, SID);
    assert_id(s->parent_id, 8, "0102030405060708");
    assert_slice(s->trace_state, "vendor=x");
    assert_slice(s->name, "op");
    assert_int_equal(s->kind, CN_KIND_PRODUCER);
    assert_int_equal(s->start_ns, 1700000000000000000ull);
    assert_int_equal(s->end_ns, 1700000000000000100ull);
    assert_int_equal(s->attrs.num, 4);
    assert_int_equal(s->attrs.dropped, 3);
    assert_int_equal(s->attrs.items[0].val.type, CN_VAL_INT);
    assert_true(s->attrs.items[0].val.u.i == INT64_MIN);
    assert_int_equal(s->attrs.items[1].val.type, CN_VAL_DOUBLE);
    assert_true(isinf(s->attrs.items[1].val.u.d) && s->attrs.items[1].val.u.d < 0);
    assert_slice(s->attrs.items[2].key, "e");
    assert_int_equal(s->attrs.items[2].val.type, CN_VAL_EMPTY);
    assert_int_equal(s->attrs.items[3].val.type, CN_VAL_KVLIST);
    assert_slice(s->attrs.items[3].val.u.s,
                 "{\"kvlistValue\":{\"values\":[{\"key\":\"a\",\"value\":{\"doubleValue\":1e+300}}"
                 "]}}");
    assert_int_equal(s->num_events, 1);
    assert_int_equal(s->dropped_events, 5);
    assert_int_equal(s->events[0].time_ns, 1700000000000000050ull);
    assert_slice(s->events[0].name, "ev");
    assert_int_equal(s->events[0].attrs.num, 1);
    assert_int_equal(s->events[0].attrs.dropped, 4);
    assert_int_equal(s->num_links, 1);
    assert_int_equal(s->dropped_links, 7);
    assert_id(s->links[0].trace_id, 16, "0102030405060708090a0b0c0d0e0f10");
    assert_id(s->links[0].span_id, 8, "1112131415161718");
    assert_slice(s->links[0].trace_state, "a=b");
    assert_int_equal(s->links[0].attrs.num, 0);
    assert_int_equal(s->links[0].attrs.dropped, 6);
    assert_int_equal(s->links[0].flags, 513);
    assert_int_equal(s->status_code, CN_STATUS_OK);
    assert_slice(s->status_message, "fine");
    assert_int_equal(s->flags, 1);

    const struct cn_resource *r = s->resource;
    assert_slice(r->service, "cart");
    assert_slice(r->schema_url, "https://opentelemetry.io/schemas/1.25.0");
    assert_int_equal(r->attrs.num, 2);
    assert_int_equal(r->attrs.dropped, 2);
    assert_int_equal(r->attrs.items[1].val.type, CN_VAL_BYTES);
    assert_slice(r->attrs.items[1].val.u.s, "\x01\x02\xff");
    assert_slice(s->scope->name, "lib");
    assert_slice(s->scope->version, "1.0");
    assert_int_equal(s->scope->attrs.num, 1);
    assert_int_equal(s->scope->attrs.dropped, 1);
    assert_int_equal(s->scope->attrs.items[0].val.type, CN_VAL_BOOL);
    assert_int_equal(s->scope->attrs.items[0].val.u.b, 1);
    assert_int_equal(b.truncated_attrs, 0);
    assert_int_equal(b.truncated_events, 0);
    assert_int_equal(b.truncated_links, 0);
}

static void every_span_field(void **state)
{
    (void)state;
    assert_int_equal(traces(every_field, NULL), 0);
    check_every_field();
}

/* The proto field names, which the mapping says receivers accept too. */
static void snake_case_names(void **state)
{
    (void)state;
    static const char *const names[][2] = {
        {"resourceSpans", "resource_spans"},
        {"scopeSpans", "scope_spans"},
        {"droppedAttributesCount", "dropped_attributes_count"},
        {"traceId", "trace_id"},
        {"spanId", "span_id"},
        {"parentSpanId", "parent_span_id"},
        {"traceState", "trace_state"},
        {"startTimeUnixNano", "start_time_unix_nano"},
        {"endTimeUnixNano", "end_time_unix_nano"},
        {"timeUnixNano", "time_unix_nano"},
        {"droppedEventsCount", "dropped_events_count"},
        {"droppedLinksCount", "dropped_links_count"},
        {"schemaUrl", "schema_url"},
        {"stringValue", "string_value"},
        {"bytesValue", "bytes_value"},
        {"boolValue", "bool_value"},
        {"intValue", "int_value"},
        {"doubleValue", "double_value"},
        {"kvlistValue", "kvlist_value"},
    };
    static char body[sizeof(every_field) * 2];
    strcpy(body, every_field);
    for (size_t i = 0; i < CN_ARRAY_LEN(names); i++) {
        char from[64], to[64], *p;
        snprintf(from, sizeof(from), "'%s'", names[i][0]);
        snprintf(to, sizeof(to), "'%s'", names[i][1]);
        while ((p = strstr(body, from)) != NULL) {
            memmove(p + strlen(to), p + strlen(from), strlen(p + strlen(from)) + 1);
            memcpy(p, to, strlen(to));
        }
    }
    assert_null(strstr(body, "Count'"));
    assert_int_equal(traces(body, NULL), 0);
    check_every_field();
}

static void enum_names(void **state)
{
    (void)state;
    static const struct {
        const char *kind;
        uint8_t want;
    } kinds[] = {
        {"'SPAN_KIND_UNSPECIFIED'", 0},
        {"'SPAN_KIND_INTERNAL'", 1},
        {"'SPAN_KIND_SERVER'", 2},
        {"'SPAN_KIND_CLIENT'", 3},
        {"'SPAN_KIND_PRODUCER'", 4},
        {"'SPAN_KIND_CONSUMER'", 5},
        {"5", 5},
        {"0", 0},
    };
    for (size_t i = 0; i < CN_ARRAY_LEN(kinds); i++) {
        char body[512];
        snprintf(body, sizeof(body), SPANS("{" IDS ",'kind':%s}"), kinds[i].kind);
        reset();
        assert_int_equal(traces(body, NULL), 0);
        assert_int_equal(b.num_spans, 1);
        assert_int_equal(b.spans[0].kind, kinds[i].want);
    }
    static const char *const codes[] = {"'STATUS_CODE_UNSET'", "'STATUS_CODE_OK'",
                                        "'STATUS_CODE_ERROR'"};
    for (size_t i = 0; i < CN_ARRAY_LEN(codes); i++) {
        char body[512];
        snprintf(body, sizeof(body), SPANS("{" IDS ",'status':{'code':%s}}"), codes[i]);
        reset();
        assert_int_equal(traces(body, NULL), 0);
        assert_int_equal(b.spans[0].status_code, i);
    }
    static const struct {
        const char *sev;
        uint8_t want;
    } sevs[] = {
        {"'SEVERITY_NUMBER_UNSPECIFIED'", 0}, {"'SEVERITY_NUMBER_TRACE'", 1},
        {"'SEVERITY_NUMBER_DEBUG2'", 6},      {"'SEVERITY_NUMBER_INFO'", 9},
        {"'SEVERITY_NUMBER_WARN3'", 15},      {"'SEVERITY_NUMBER_ERROR'", 17},
        {"'SEVERITY_NUMBER_FATAL4'", 24},     {"24", 24},
    };
    for (size_t i = 0; i < CN_ARRAY_LEN(sevs); i++) {
        char body[512];
        snprintf(body, sizeof(body), LOGS("{'severityNumber':%s}"), sevs[i].sev);
        reset();
        assert_int_equal(logs(body, NULL), 0);
        assert_int_equal(b.num_logs, 1);
        assert_int_equal(b.logs[0].severity_number, sevs[i].want);
    }
}

/* 64-bit integers as strings or numbers; fixed32 fields as numbers or strings too. */
static void integer_forms(void **state)
{
    (void)state;
    assert_int_equal(traces(SPANS("{" IDS ",'startTimeUnixNano':'0','endTimeUnixNano':"
                                  "'18446744073709551615','flags':'4294967295','attributes':["
                                  "{'key':'a','value':{'intValue':9223372036854775807}},"
                                  "{'key':'b','value':{'intValue':'-1'}},"
                                  "{'key':'c','value':{'intValue':-5}},"
                                  "{'key':'d','value':{'intValue':1.5e3}},"
                                  "{'key':'e','value':{'doubleValue':3}},"
                                  "{'key':'f','value':{'doubleValue':'2.5'}},"
                                  "{'key':'g','value':{'doubleValue':'NaN'}}]}"),
                            NULL),
                     0);
    const struct cn_span *s = &b.spans[0];
    assert_int_equal(s->start_ns, 0);
    assert_true(s->end_ns == UINT64_MAX);
    assert_true(s->flags == UINT32_MAX);
    assert_true(s->attrs.items[0].val.u.i == INT64_MAX);
    assert_int_equal(s->attrs.items[1].val.u.i, -1);
    assert_int_equal(s->attrs.items[2].val.u.i, -5);
    assert_int_equal(s->attrs.items[3].val.u.i, 1500);
    assert_true(s->attrs.items[4].val.type == CN_VAL_DOUBLE && s->attrs.items[4].val.u.d == 3.0);
    assert_true(s->attrs.items[5].val.u.d == 2.5);
    assert_true(isnan(s->attrs.items[6].val.u.d));

    reset();
    assert_int_equal(traces(SPANS("{" IDS ",'startTimeUnixNano':1700000000000000000,"
                                  "'endTimeUnixNano':1.7e18}"),
                            NULL),
                     0);
    assert_int_equal(b.spans[0].start_ns, 1700000000000000000ull);
    assert_int_equal(b.spans[0].end_ns, 1700000000000000000ull);

    /* A double past int64 in plain digits, as JavaScript and Go write 1e20: the body is read
     * with numbers as doubles, small integers stay exact. */
    reset();
    assert_int_equal(traces(SPANS("{" IDS ",'flags':257,'attributes':[{'key':'a','value':{"
                                  "'doubleValue':100000000000000000000}},{'key':'b','value':{"
                                  "'intValue':9007199254740992}}]}"),
                            NULL),
                     0);
    assert_int_equal(b.spans[0].flags, 257);
    assert_true(b.spans[0].attrs.items[0].val.u.d == 1e20);
    assert_true(b.spans[0].attrs.items[1].val.u.i == 9007199254740992);

    /* Enums in such a body are whole doubles and keep working (kind, status code). */
    reset();
    assert_int_equal(traces(SPANS("{" IDS ",'kind':2,'status':{'code':2},'attributes':[{'key':"
                                  "'a','value':{'doubleValue':100000000000000000000}}]}"),
                            NULL),
                     0);
    assert_int_equal(b.num_spans, 1);
    assert_int_equal(b.spans[0].kind, 2);
    assert_int_equal(b.spans[0].status_code, 2);
}

/* IDs: hex in any case, base64 of the raw bytes (standard or URL-safe, padded or not). */
static void id_forms(void **state)
{
    (void)state;
    assert_int_equal(traces(SPANS("{'traceId':'5B8EFFF798038103D269B633813FC60C','spanId':"
                                  "'EEE19B7EC3C1B174','parentSpanId':'0000000000000000'},"
                                  "{'traceId':'W47/95gDgQPSabYzgT/GDA==','spanId':'7uGbfsPBsXQ=',"
                                  "'parentSpanId':'7uGbfsPBsXQ'},"
                                  "{'traceId':'W47_95gDgQPSabYzgT_GDA','spanId':'7uGbfsPBsXQ',"
                                  "'parentSpanId':''}"),
                            NULL),
                     0);
    assert_int_equal(b.rejected, 0);
    assert_int_equal(b.num_spans, 3);
    for (size_t i = 0; i < 3; i++) {
        assert_id(b.spans[i].trace_id, 16, TID);
        assert_id(b.spans[i].span_id, 8, SID);
    }
    assert_id(b.spans[0].parent_id, 8, "0000000000000000");
    assert_id(b.spans[1].parent_id, 8, SID);
    assert_id(b.spans[2].parent_id, 8, "0000000000000000");
}

/* Refused spans are skipped and counted; the first reason is kept with its path. */
static void rejections(void **state)
{
    (void)state;
    static const struct {
        const char *span;
        const char *msg;
    } cases[] = {
        {"{'spanId':'" SID "'}", SPAN1 ".traceId: missing"},
        {"{'traceId':'','spanId':'" SID "'}", SPAN1 ".traceId: missing"},
        {"{'traceId':null,'spanId':'" SID "'}", SPAN1 ".traceId: missing"},
        {"{'traceId':'5b8efff798038103d269b633813fc60','spanId':'" SID "'}",
         SPAN1 ".traceId: not 32 hex digits"},
        {"{'traceId':'5b8efff798038103d269b633813fc60g','spanId':'" SID "'}",
         SPAN1 ".traceId: not 32 hex digits"},
        {"{'traceId':'00000000000000000000000000000000','spanId':'" SID "'}",
         SPAN1 ".traceId: all zero"},
        {"{'traceId':'AAAAAAAAAAAAAAAAAAAAAA==','spanId':'" SID "'}", SPAN1 ".traceId: all zero"},
        {"{'traceId':'" TID "'}", SPAN1 ".spanId: missing"},
        {"{'traceId':'" TID "','spanId':'0000000000000000'}", SPAN1 ".spanId: all zero"},
        {"{'traceId':'" TID "','spanId':'eee19b7ec3c1b17'}", SPAN1 ".spanId: not 16 hex digits"},
        {"{" IDS ",'parentSpanId':'xyz'}", SPAN1 ".parentSpanId: not 16 hex digits"},
        {"{" IDS ",'kind':6}", SPAN1 ".kind: not a span kind"},
        {"{" IDS ",'kind':-1}", SPAN1 ".kind: not a span kind"},
        {"{" IDS ",'kind':'SERVER'}", SPAN1 ".kind: not a span kind"},
        {"{" IDS ",'kind':'SPAN_KIND_SERVER\\u0000'}", SPAN1 ".kind: not a span kind"},
        {"{" IDS ",'status':{'code':3}}", SPAN1 ".status.code: not a status code"},
        {"{" IDS ",'status':{'code':'STATUS_CODE_FAILED'}}",
         SPAN1 ".status.code: not a status code"},
        {"{" IDS ",'startTimeUnixNano':'2','endTimeUnixNano':'1'}",
         SPAN1 ".endTimeUnixNano: before startTimeUnixNano"},
        {"{" IDS ",'startTimeUnixNano':'2'}", SPAN1 ".endTimeUnixNano: before startTimeUnixNano"},
        {"{" IDS ",'links':[{'traceId':'" TID "','spanId':'" SID "'},{'spanId':'xyz'}]}",
         SPAN1 ".links[1].spanId: not 16 hex digits"},
        {"{" IDS ",'links':[{'traceId':'abc','spanId':'" SID "'}]}",
         SPAN1 ".links[0].traceId: not 32 hex digits"},
    };
    for (size_t i = 0; i < CN_ARRAY_LEN(cases); i++) {
        char body[1024];
        snprintf(body, sizeof(body), SPANS("{" IDS ",'name':'a'},%s,{" IDS ",'name':'c'}"),
                 cases[i].span);
        reset();
        assert_int_equal(traces(body, NULL), 0);
        if (b.rejected != 1 || strcmp(b.reject_msg, cases[i].msg) != 0)
            fail_msg("case %zu: %u rejected, \"%s\"", i, (unsigned)b.rejected, b.reject_msg);
        assert_int_equal(b.num_spans, 2);
        assert_slice(b.spans[0].name, "a");
        assert_slice(b.spans[1].name, "c");
        assert_non_null(b.spans[1].resource);
        assert_non_null(b.spans[1].scope);
    }

    /* A link's IDs may be empty or all zero, as in the protobuf decoder. */
    reset();
    assert_int_equal(traces(SPANS("{" IDS ",'links':[{},{'traceId':'','spanId':null},{'traceId':"
                                  "'00000000000000000000000000000000','spanId':'0000000000000000'"
                                  "}]}"),
                            NULL),
                     0);
    assert_int_equal(b.rejected, 0);
    assert_int_equal(b.spans[0].num_links, 3);
    assert_true(cn_id_is_zero(b.spans[0].links[1].trace_id, 16));

    /* Several refusals: all counted, the first reason kept, also over resources. */
    reset();
    assert_int_equal(traces("{'resourceSpans':[{'scopeSpans':[{'spans':[{'spanId':'" SID "'}]}]},"
                            "{'scopeSpans':[{},{'spans':[{" IDS ",'kind':9,'status':{'code':7}},"
                            "{" IDS "}]}]}]}",
                            NULL),
                     0);
    assert_int_equal(b.rejected, 2);
    assert_string_equal(b.reject_msg, "resourceSpans[0].scopeSpans[0].spans[0].traceId: missing");
    assert_int_equal(b.num_spans, 1);

    /* A refused span with a malformed field later on is still a hard error. */
    reset();
    assert_int_equal(traces(SPANS("{'spanId':'" SID "','name':7}"), NULL), CN_ESYNTAX);
    assert_string_equal(err, SPAN0 ".name: not a string");
    assert_int_equal(b.rejected, 0);
    assert_string_equal(b.reject_msg, "");
}

static void log_rejections(void **state)
{
    (void)state;
    static const struct {
        const char *log;
        const char *msg;
    } cases[] = {
        {"{'traceId':'123'}", LOG0 ".traceId: not 32 hex digits"},
        {"{'spanId':'zz'}", LOG0 ".spanId: not 16 hex digits"},
        {"{'severityNumber':25}", LOG0 ".severityNumber: not a severity number"},
        {"{'severityNumber':'SEVERITY_NUMBER_INFO5'}",
         LOG0 ".severityNumber: not a severity number"},
    };
    for (size_t i = 0; i < CN_ARRAY_LEN(cases); i++) {
        char body[512];
        snprintf(body, sizeof(body), LOGS("%s,{'severityText':'kept'}"), cases[i].log);
        reset();
        assert_int_equal(logs(body, NULL), 0);
        assert_int_equal(b.rejected, 1);
        assert_string_equal(b.reject_msg, cases[i].msg);
        assert_int_equal(b.num_logs, 1);
        assert_slice(b.logs[0].severity_text, "kept");
    }
    /* Absent, empty and all-zero IDs are a log without trace. */
    reset();
    assert_int_equal(logs(LOGS("{},{'traceId':'','spanId':''},{'traceId':"
                               "'00000000000000000000000000000000','spanId':'0000000000000000'}"),
                          NULL),
                     0);
    assert_int_equal(b.rejected, 0);
    assert_int_equal(b.num_logs, 3);
    for (size_t i = 0; i < 3; i++) {
        assert_true(cn_id_is_zero(b.logs[i].trace_id, 16));
        assert_true(cn_id_is_zero(b.logs[i].span_id, 8));
        assert_int_equal(b.logs[i].body.type, CN_VAL_EMPTY);
    }
}

static void every_log_field(void **state)
{
    (void)state;
    assert_int_equal(
        logs("{'resource_logs':[{'resource':{'attributes':[{'key':'service.name','value':{"
             "'string_value':'api'}}]},'schema_url':'u','scope_logs':[{'scope':{'name':'s'},"
             "'log_records':[{'time_unix_nano':'1','observed_time_unix_nano':2,"
             "'severity_number':'SEVERITY_NUMBER_WARN','severity_text':'WARN','body':{"
             "'bytes_value':'AQL/'},'attributes':[{'key':'a','value':{'int_value':1}}],"
             "'dropped_attributes_count':3,'flags':1,'trace_id':'" TID "','span_id':'" SID "',"
             "'event_name':'ev'},{'timeUnixNano':'3','body':{'arrayValue':{'values':[]}},"
             "'eventName':'x'}]}]}]}",
             NULL),
        0);
    assert_int_equal(b.num_logs, 2);
    const struct cn_log *l = &b.logs[0];
    assert_int_equal(l->time_ns, 1);
    assert_int_equal(l->observed_ns, 2);
    assert_int_equal(l->severity_number, 13);
    assert_slice(l->severity_text, "WARN");
    assert_int_equal(l->body.type, CN_VAL_BYTES);
    assert_slice(l->body.u.s, "\x01\x02\xff");
    assert_int_equal(l->attrs.num, 1);
    assert_int_equal(l->attrs.dropped, 3);
    assert_int_equal(l->flags, 1);
    assert_id(l->trace_id, 16, TID);
    assert_id(l->span_id, 8, SID);
    assert_slice(l->event_name, "ev");
    assert_slice(l->resource->service, "api");
    assert_slice(l->resource->schema_url, "u");
    assert_slice(l->scope->name, "s");
    assert_int_equal(b.logs[1].time_ns, 3);
    assert_int_equal(b.logs[1].body.type, CN_VAL_ARRAY);
    assert_slice(b.logs[1].body.u.s, "{\"arrayValue\":{\"values\":[]}}");
    assert_slice(b.logs[1].event_name, "x");
    assert_true(b.logs[1].resource == l->resource);
}

/* Arrays and kvlists keep the canonical compact OTLP JSON of the value. */
static void canonical_values(void **state)
{
    (void)state;
    static const struct {
        const char *in;
        const char *out;
    } cases[] = {
        {"{'arrayValue':{'values':[{'stringValue':'a'}]}}",
         "{\"arrayValue\":{\"values\":[{\"stringValue\":\"a\"}]}}"},
        {"{'array_value':{'values':[{'int_value':7},{'intValue':'-8'},{'bool_value':true},{}]}}",
         "{\"arrayValue\":{\"values\":[{\"intValue\":\"7\"},{\"intValue\":\"-8\"},{\"boolValue\":"
         "true},{}]}}"},
        {"{'arrayValue':{}}", "{\"arrayValue\":{\"values\":[]}}"},
        {"{'arrayValue':{'values':null}}", "{\"arrayValue\":{\"values\":[]}}"},
        {"{'arrayValue':{'values':[{'doubleValue':0.1},{'doubleValue':'NaN'},{'doubleValue':"
         "'Infinity'},{'doubleValue':-0.0},{'doubleValue':100},{'doubleValue':'1.5'}]}}",
         "{\"arrayValue\":{\"values\":[{\"doubleValue\":0.1},{\"doubleValue\":\"NaN\"},{"
         "\"doubleValue\":\"Infinity\"},{\"doubleValue\":0},{\"doubleValue\":100},{"
         "\"doubleValue\":1.5}]}}"},
        {"{'arrayValue':{'values':[{'bytesValue':'AQL_'},{'bytesValue':''},{'bytesValue':'AQ'}]}}",
         "{\"arrayValue\":{\"values\":[{\"bytesValue\":\"AQL/\"},{\"bytesValue\":\"\"},{"
         "\"bytesValue\":\"AQ==\"}]}}"},
        {"{'kvlistValue':{'values':[{'key':'q','value':{'stringValue':'a\\'\\\\\\n\\u0001\\u00e9"
         "\\ud83d\\ude00/'}},{'key':'n'},{'value':{'kvlist_value':{'values':[{'key':'d','value':"
         "{'arrayValue':{'values':[{'arrayValue':{}}]}}}]}}}]},'unknown':1}",
         "{\"kvlistValue\":{\"values\":[{\"key\":\"q\",\"value\":{\"stringValue\":\"a\\\"\\\\\\n"
         "\\u0001\xc3\xa9\xf0\x9f\x98\x80/"
         "\"}},{\"key\":\"n\",\"value\":{}},{\"key\":\"\",\"value\":"
         "{\"kvlistValue\":{\"values\":[{\"key\":\"d\",\"value\":{\"arrayValue\":{\"values\":[{"
         "\"arrayValue\":{\"values\":[]}}]}}}]}}}]}}"},
    };
    for (size_t i = 0; i < CN_ARRAY_LEN(cases); i++) {
        char body[1024];
        snprintf(body, sizeof(body), SPANS("{" IDS ",'attributes':[{'key':'v','value':%s}]}"),
                 cases[i].in);
        reset();
        assert_int_equal(traces(body, NULL), 0);
        assert_int_equal(b.num_spans, 1);
        const struct cn_val *v = &b.spans[0].attrs.items[0].val;
        assert_int_equal(v->type, cases[i].in[2] == 'a' ? CN_VAL_ARRAY : CN_VAL_KVLIST);
        if (!cn_slice_eq(v->u.s, cn_slice_of(cases[i].out)))
            fail_msg("case %zu: %.*s", i, (int)v->u.s.len, v->u.s.ptr);
    }
}

/* Doubles as JavaScript writes them; the expected texts are Node 20's String(x), but for
 * integers past int64, which Node writes in plain digits. */
static void double_text(void **state)
{
    (void)state;
    static const struct {
        double x;
        const char *text;
    } cases[] = {
        {0.0, "0"},
        {1.0, "1"},
        {-1.0, "-1"},
        {100.0, "100"},
        {0.1, "0.1"},
        {0.25, "0.25"},
        {1.5e+300, "1.5e+300"},
        {-2.5e-300, "-2.5e-300"},
        {1e+21, "1e+21"},
        {100000000000000000000.0, "1e+20"},
        {123456789012345680000.0, "1.2345678901234568e+20"},
        {9223372036854775808.0, "9.223372036854776e+18"},
        {9223372036854774784.0, "9223372036854775000"},
        {0.000001, "0.000001"},
        {1e-7, "1e-7"},
        {1.7976931348623157e+308, "1.7976931348623157e+308"},
        {5e-324, "5e-324"},
        {3.141592653589793, "3.141592653589793"},
        {-0.000123, "-0.000123"},
        {0.3333333333333333, "0.3333333333333333"},
        {9007199254740992.0, "9007199254740992"},
        {12345.678, "12345.678"},
        {-0.0, "0"},
        {NAN, "NaN"},
        {INFINITY, "Infinity"},
        {-INFINITY, "-Infinity"},
    };
    for (size_t i = 0; i < CN_ARRAY_LEN(cases); i++) {
        char buf[32];
        size_t n = cn_otlp_json_double(buf, cases[i].x);
        assert_string_equal(buf, cases[i].text);
        assert_int_equal(n, strlen(cases[i].text));
    }
}

static void service_name(void **state)
{
    (void)state;
    static const struct {
        const char *attrs;
        uint32_t max_attrs;
        const char *service;
    } cases[] = {
        {"[]", 0, "unknown_service"},
        {"[{'key':'service.name','value':{'stringValue':''}}]", 0, "unknown_service"},
        {"[{'key':'service.name','value':{'intValue':3}}]", 0, "unknown_service"},
        /* The last one wins, as in protobuf where a repeated field is read in order. */
        {"[{'key':'service.name','value':{'stringValue':'a'}},{'key':'service.name','value':{"
         "'stringValue':'b'}}]",
         0, "b"},
        {"[{'key':'service.name','value':{'stringValue':'a'}},{'key':'service.name','value':{"
         "'intValue':1}}]",
         0, "a"},
        /* Past max_attrs it is dropped as an attribute but still names the service. */
        {"[{'key':'x','value':{}},{'key':'service.name','value':{'string_value':'late'}}]", 1,
         "late"},
    };
    for (size_t i = 0; i < CN_ARRAY_LEN(cases); i++) {
        char body[512];
        struct cn_tel_limits lim = {.max_attrs = cases[i].max_attrs};
        snprintf(body, sizeof(body),
                 "{'resourceSpans':[{'resource':{'attributes':%s},'scopeSpans':[{'spans':[{" IDS
                 "}]}]}]}",
                 cases[i].attrs);
        reset();
        assert_int_equal(traces(body, &lim), 0);
        assert_slice(b.spans[0].resource->service, cases[i].service);
    }
    /* No resource at all. */
    reset();
    assert_int_equal(traces(SPANS("{" IDS "}"), NULL), 0);
    assert_slice(b.spans[0].resource->service, "unknown_service");
    assert_int_equal(b.spans[0].resource->attrs.num, 0);
    assert_slice(b.spans[0].scope->name, "");
}

static void limit_attrs(void **state)
{
    (void)state;
    struct cn_tel_limits lim = {.max_attrs = 2};
    /* Exactly max: all kept, nothing counted. */
    assert_int_equal(traces(SPANS("{" IDS ",'attributes':[{'key':'a','value':{}},{'key':'b',"
                                  "'value':{}}]}"),
                            &lim),
                     0);
    assert_int_equal(b.spans[0].attrs.num, 2);
    assert_int_equal(b.spans[0].attrs.dropped, 0);
    assert_int_equal(b.truncated_attrs, 0);

    /* max + 1: the last is dropped and counted, the sender's count added. */
    reset();
    assert_int_equal(traces("{'resourceSpans':[{'resource':{'attributes':[{'key':'r1','value':{}},"
                            "{'key':'r2','value':{}},{'key':'r3','value':{}}]},'scopeSpans':[{"
                            "'scope':{'attributes':[{'key':'s1','value':{}},{'key':'s2','value':{}"
                            "},{'key':'s3','value':{}}]},'spans':[{" IDS ",'attributes':["
                            "{'key':'a','value':{}},{'key':'b','value':{}},{'key':'c','value':{}"
                            "}],'droppedAttributesCount':5,'events':[{'attributes':[{'key':'e1',"
                            "'value':{}},{'key':'e2','value':{}},{'key':'e3','value':{}}]}],"
                            "'links':[{" IDS ",'attributes':[{'key':'l1','value':{}},{'key':'l2',"
                            "'value':{}},{'key':'l3','value':{}}],'droppedAttributesCount':1}]}]}]"
                            "}]}",
                            &lim),
                     0);
    const struct cn_span *s = &b.spans[0];
    assert_int_equal(s->attrs.num, 2);
    assert_slice(s->attrs.items[1].key, "b");
    assert_int_equal(s->attrs.dropped, 6);
    assert_int_equal(s->resource->attrs.num, 2);
    assert_int_equal(s->resource->attrs.dropped, 1);
    assert_int_equal(s->scope->attrs.num, 2);
    assert_int_equal(s->scope->attrs.dropped, 1);
    assert_int_equal(s->events[0].attrs.num, 2);
    assert_int_equal(s->events[0].attrs.dropped, 1);
    assert_int_equal(s->links[0].attrs.num, 2);
    assert_int_equal(s->links[0].attrs.dropped, 2);
    assert_int_equal(b.truncated_attrs, 5);

    reset();
    assert_int_equal(logs(LOGS("{'attributes':[{'key':'a','value':{}},{'key':'b','value':{}},"
                               "{'key':'c','value':{}}]}"),
                          &lim),
                     0);
    assert_int_equal(b.logs[0].attrs.num, 2);
    assert_int_equal(b.logs[0].attrs.dropped, 1);
    assert_int_equal(b.truncated_attrs, 1);

    /* The sender's count saturates instead of wrapping. */
    reset();
    assert_int_equal(traces(SPANS("{" IDS ",'attributes':[{'key':'a','value':{}},{'key':'b',"
                                  "'value':{}},{'key':'c','value':{}}],'droppedAttributesCount':"
                                  "4294967295}"),
                            &lim),
                     0);
    assert_true(b.spans[0].attrs.dropped == UINT32_MAX);
}

static void limit_values(void **state)
{
    (void)state;
    struct cn_tel_limits lim = {.max_attr_value_bytes = 4};
    assert_int_equal(
        traces(SPANS("{" IDS ",'attributes':[{'key':'a','value':{'stringValue':'abcd'}},"
                     "{'key':'b','value':{'stringValue':'abcde'}},"
                     /* é is two bytes: cutting at 4 would split it, so 3 bytes are kept */
                     "{'key':'c','value':{'stringValue':'abc\xc3\xa9'}},"
                     "{'key':'d','value':{'stringValue':'ab\xc3\xa9'}},"
                     "{'key':'e','value':{'bytesValue':'AQIDBA=='}},"
                     "{'key':'f','value':{'bytesValue':'AQIDBAU='}},"
                     "{'key':'g','value':{'arrayValue':{'values':[{'stringValue':'123456'},"
                     "{'bytesValue':'AQIDBAU='},{'stringValue':'1234'}]}}},"
                     "{'key':'h','value':{'intValue':'123456789'}}],"
                     "'events':[{'attributes':[{'key':'x','value':{'stringValue':'vwxyz'}}]}]}"),
               &lim),
        0);
    const struct cn_kv *kv = b.spans[0].attrs.items;
    assert_slice(kv[0].val.u.s, "abcd");
    assert_slice(kv[1].val.u.s, "abcd");
    assert_slice(kv[2].val.u.s, "abc");
    assert_slice(kv[3].val.u.s, "ab\xc3\xa9");
    assert_slice(kv[4].val.u.s, "\x01\x02\x03\x04");
    assert_slice(kv[5].val.u.s, "\x01\x02\x03\x04");
    assert_slice(kv[6].val.u.s, "{\"arrayValue\":{\"values\":[{\"stringValue\":\"1234\"},{"
                                "\"bytesValue\":\"AQIDBA==\"},{\"stringValue\":\"1234\"}]}}");
    assert_int_equal(kv[7].val.u.i, 123456789);
    assert_slice(b.spans[0].events[0].attrs.items[0].val.u.s, "vwxy");
    assert_int_equal(b.truncated_values, 6);

    /* Log bodies and names are not attribute values: never cut. */
    reset();
    assert_int_equal(logs(LOGS("{'body':{'stringValue':'long body'},'attributes':[{'key':"
                               "'service.name.long.key','value':{'stringValue':'long value'}}]}"),
                          &lim),
                     0);
    assert_slice(b.logs[0].body.u.s, "long body");
    assert_slice(b.logs[0].attrs.items[0].key, "service.name.long.key");
    assert_slice(b.logs[0].attrs.items[0].val.u.s, "long");
    assert_int_equal(b.truncated_values, 1);

    /* The limit cuts the service.name attribute, not the service's name. */
    reset();
    assert_int_equal(traces("{'resourceSpans':[{'resource':{'attributes':[{'key':'service.name',"
                            "'value':{'stringValue':'checkout'}}]},'scopeSpans':[{'spans':[{" IDS
                            "}]}]}]}",
                            &lim),
                     0);
    assert_slice(b.spans[0].resource->service, "checkout");
    assert_str_kv(b.spans[0].resource->attrs.items[0], "service.name", "chec");
    assert_int_equal(b.truncated_values, 1);
}

/* Limits never change which records are accepted: dropped items are checked like kept ones;
 * what a dropped item or a refused record would add to the truncation counters is not
 * added. */
static void limits_and_checks(void **state)
{
    (void)state;
    struct cn_tel_limits lim = {
        .max_attrs = 1, .max_attr_value_bytes = 2, .max_links = 1, .max_events = 1};
    static const struct {
        const char *span;
        const char *err;
    } hard[] = {
        {"{" IDS ",'attributes':[{'key':'a','value':{}},{'key':'b','value':{'intValue':'x'}}]}",
         SPAN0 ".attributes[1].value.intValue: not an integer"},
        {"{" IDS ",'events':[{},{'attributes':[{'key':'a','value':{}},{'key':1}]}]}",
         SPAN0 ".events[1].attributes[1].key: not a string"},
        {"{" IDS ",'links':[{},{'flags':-1}]}", SPAN0 ".links[1].flags: out of range"},
    };
    for (size_t i = 0; i < CN_ARRAY_LEN(hard); i++) {
        char body[512];
        snprintf(body, sizeof(body), SPANS("%s"), hard[i].span);
        reset();
        assert_int_equal(traces(body, &lim), CN_ESYNTAX);
        assert_string_equal(err, hard[i].err);
    }

    /* A dropped link with a malformed ID refuses its span. */
    reset();
    assert_int_equal(traces(SPANS("{" IDS ",'links':[{},{},{'traceId':'x'}]}"), &lim), 0);
    assert_int_equal(b.rejected, 1);
    assert_string_equal(b.reject_msg, SPAN0 ".links[2].traceId: not 32 hex digits");

    /* Values cut inside dropped items are not counted; the dropped items are. */
    reset();
    assert_int_equal(traces(SPANS("{" IDS ",'attributes':[{'key':'a','value':{'stringValue':"
                                  "'xyz'}},{'key':'b','value':{'stringValue':'long'}},{'key':'c',"
                                  "'value':{'arrayValue':{'values':[{'stringValue':'long'}]}}}],"
                                  "'events':[{},{'attributes':[{'key':'x','value':{'stringValue':"
                                  "'long'}}]}],'links':[{},{'attributes':[{'key':'a','value':{}},"
                                  "{'key':'b','value':{}}]}]}"),
                            &lim),
                     0);
    assert_int_equal(b.truncated_values, 1); /* "xyz" */
    assert_int_equal(b.truncated_attrs, 2);  /* b and c, not those of the dropped link */
    assert_int_equal(b.truncated_events, 1);
    assert_int_equal(b.truncated_links, 1);
    assert_int_equal(b.spans[0].attrs.dropped, 2);

    /* A refused span adds nothing to the truncation counters. */
    reset();
    assert_int_equal(traces(SPANS("{'traceId':'" TID "','attributes':[{'key':'a','value':{"
                                  "'stringValue':'xyz'}},{'key':'b','value':{}}],'events':[{},{}],"
                                  "'links':[{},{}]},{" IDS ",'attributes':[{'key':'a','value':{}},"
                                  "{'key':'b','value':{}}]}"),
                            &lim),
                     0);
    assert_int_equal(b.rejected, 1);
    assert_int_equal(b.num_spans, 1);
    assert_int_equal(b.truncated_attrs, 1);
    assert_int_equal(b.truncated_values + b.truncated_events + b.truncated_links, 0);
}

/* Arrays and kvlists nest up to 16 levels, as in the protobuf decoder. */
static void nesting_depth(void **state)
{
    (void)state;
    static char body[4096];
    for (int levels = 15; levels <= 16; levels++) {
        size_t n = (size_t)snprintf(body, sizeof(body), "%s",
                                    "{'resourceSpans':[{'scopeSpans':[{'spans':[{" IDS
                                    ",'attributes':[{'key':'deep','value':");
        for (int i = 0; i < levels; i++)
            n += (size_t)snprintf(body + n, sizeof(body) - n, "%s",
                                  i % 2 ? "{'kvlistValue':{'values':[{'key':'k','value':"
                                        : "{'arrayValue':{'values':[");
        n += (size_t)snprintf(body + n, sizeof(body) - n, "{'intValue':1}");
        for (int i = levels - 1; i >= 0; i--)
            n += (size_t)snprintf(body + n, sizeof(body) - n, "%s", i % 2 ? "}]}}" : "]}}");
        snprintf(body + n, sizeof(body) - n, "}]}]}]}]}");
        reset();
        int rc = traces(body, NULL);
        if (levels == 15) {
            assert_int_equal(rc, 0);
            assert_int_equal(b.spans[0].attrs.items[0].val.type, CN_VAL_ARRAY);
        } else {
            /* The path is longer than err: its middle gives way to the message. */
            assert_int_equal(rc, CN_ESYNTAX);
            assert_string_equal(err, "resourceSpans[0].scopeSpans[0].spans[0].attributes[0].value."
                                     "arrayValue...yValue.values[0].kvlistValue.values[0].value."
                                     "arrayValue.values[0].kvlistValue.values[0].value.arrayValue."
                                     "values[0].kvlistValue.values[0].value: nesting too deep "
                                     "(more than 16 levels)");
            assert_int_equal(strlen(err), 255);
            char big[1024];
            const char *j = q(body);
            reset();
            assert_int_equal(cn_otlp_json_decode_traces(&b, j, strlen(j), NULL, big, sizeof(big)),
                             CN_ESYNTAX);
            char want[1024] = SPAN0 ".attributes[0].value";
            for (int i = 0; i < 8; i++)
                strcat(want, ".arrayValue.values[0].kvlistValue.values[0].value");
            strcat(want, ": nesting too deep (more than 16 levels)");
            assert_string_equal(big, want);
        }
    }
}

static void limit_events_links(void **state)
{
    (void)state;
    struct cn_tel_limits lim = {.max_events = 2, .max_links = 1};
    assert_int_equal(
        traces(SPANS("{" IDS ",'events':[{'name':'a'},{'name':'b'}],'links':[{" IDS "}]}"), &lim),
        0);
    assert_int_equal(b.spans[0].num_events, 2);
    assert_int_equal(b.spans[0].dropped_events, 0);
    assert_int_equal(b.spans[0].num_links, 1);
    assert_int_equal(b.spans[0].dropped_links, 0);
    assert_int_equal(b.truncated_events, 0);
    assert_int_equal(b.truncated_links, 0);

    reset();
    assert_int_equal(
        traces(SPANS("{" IDS ",'events':[{'name':'a'},{'name':'b'},{'name':'c'}],"
                     "'droppedEventsCount':10,'links':[{" IDS ",'traceState':'one'},{" IDS
                     ",'traceState':'two'}],'droppedLinksCount':'20'},"
                     "{" IDS ",'events':[{},{},{},{}]}"),
               &lim),
        0);
    assert_int_equal(b.spans[0].num_events, 2);
    assert_slice(b.spans[0].events[1].name, "b");
    assert_int_equal(b.spans[0].dropped_events, 11);
    assert_int_equal(b.spans[0].num_links, 1);
    assert_slice(b.spans[0].links[0].trace_state, "one");
    assert_int_equal(b.spans[0].dropped_links, 21);
    assert_int_equal(b.spans[1].num_events, 2);
    assert_int_equal(b.spans[1].dropped_events, 2);
    assert_int_equal(b.truncated_events, 3);
    assert_int_equal(b.truncated_links, 1);
}

/* A zero limit, or no limits at all, keeps everything. */
static void no_limits(void **state)
{
    (void)state;
    struct cn_tel_limits zero = {0};
    static char body[1 << 16];
    size_t n =
        (size_t)snprintf(body, sizeof(body), "%s",
                         "{'resourceSpans':[{'scopeSpans':[{'spans':[{" IDS ",'attributes':[");
    for (int i = 0; i < 100; i++)
        n += (size_t)snprintf(body + n, sizeof(body) - n,
                              "%s{'key':'k%d','value':{'stringValue':"
                              "'%0200d'}}",
                              i ? "," : "", i, i);
    snprintf(body + n, sizeof(body) - n, "]}]}]}]}");
    assert_int_equal(traces(body, &zero), 0);
    assert_int_equal(b.spans[0].attrs.num, 100);
    assert_int_equal(b.spans[0].attrs.items[99].val.u.s.len, 200);
    reset();
    assert_int_equal(traces(body, NULL), 0);
    assert_int_equal(b.spans[0].attrs.num, 100);
    assert_int_equal(b.truncated_attrs + b.truncated_values, 0);
}

static void malformed(void **state)
{
    (void)state;
    static const struct {
        const char *body;
        const char *err;
    } cases[] = {
        {"", "invalid JSON at line 1, column 0: unexpected token near end of file"},
        {"{", "invalid JSON at line 1, column 1: string or '}' expected near end of file"},
        {"{}x", "invalid JSON at line 1, column 3: end of file expected near 'x'"},
        {"{\n'a':\n[1,}", "invalid JSON at line 3, column 4: unexpected token near '}'"},
        {"{'resourceSpans':99999999999999999999}", "resourceSpans: not an array"},
        {"{'a':99999999999999999999,'b':1e400}",
         "invalid JSON at line 1, column 35: real number overflow near '1e400'"},
        {SPANS("{" IDS ",'attributes':[{'key':'a','value':{'intValue':100000000000000000000}}]}"),
         SPAN0 ".attributes[0].value.intValue: out of range"},
        {"[]", "top level: not an object"},
        {"'resourceSpans'", "top level: not an object"},
        {"{'resourceSpans':{}}", "resourceSpans: not an array"},
        {"{'resource_spans':7}", "resource_spans: not an array"},
        {"{'resourceSpans':[1]}", "resourceSpans[0]: not an object"},
        {"{'resourceSpans':[{'resource':[]}]}", "resourceSpans[0].resource: not an object"},
        {"{'resourceSpans':[{'resource':{'attributes':{}}}]}",
         "resourceSpans[0].resource.attributes: not an array"},
        {"{'resourceSpans':[{'resource':{'attributes':[{'key':1}]}}]}",
         "resourceSpans[0].resource.attributes[0].key: not a string"},
        {"{'resourceSpans':[{'resource':{'droppedAttributesCount':-1}}]}",
         "resourceSpans[0].resource.droppedAttributesCount: out of range"},
        {"{'resourceSpans':[{'schemaUrl':1}]}", "resourceSpans[0].schemaUrl: not a string"},
        {"{'resourceSpans':[{'scopeSpans':{}}]}", "resourceSpans[0].scopeSpans: not an array"},
        {"{'resourceSpans':[{'scopeSpans':[[]]}]}",
         "resourceSpans[0].scopeSpans[0]: not an object"},
        {"{'resourceSpans':[{'scopeSpans':[{'scope':1}]}]}",
         "resourceSpans[0].scopeSpans[0].scope: not an object"},
        {"{'resourceSpans':[{'scopeSpans':[{'scope':{'version':1}}]}]}",
         "resourceSpans[0].scopeSpans[0].scope.version: not a string"},
        {"{'resourceSpans':[{'scopeSpans':[{'schemaUrl':[]}]}]}",
         "resourceSpans[0].scopeSpans[0].schemaUrl: not a string"},
        {"{'resourceSpans':[{'scopeSpans':[{'spans':{}}]}]}",
         "resourceSpans[0].scopeSpans[0].spans: not an array"},
        {SPANS("{" IDS "},{" IDS "},{" IDS ",'startTimeUnixNano':true}"),
         "resourceSpans[0].scopeSpans[0].spans[2].startTimeUnixNano: not an integer"},
        {SPANS("{" IDS "},{" IDS "},{" IDS ",'start_time_unix_nano':'17e8'}"),
         "resourceSpans[0].scopeSpans[0].spans[2].start_time_unix_nano: not an integer"},
        {SPANS("1"), SPAN0 ": not an object"},
        {SPANS("{'traceId':5}"), SPAN0 ".traceId: not a string"},
        {SPANS("{" IDS ",'parentSpanId':[]}"), SPAN0 ".parentSpanId: not a string"},
        {SPANS("{" IDS ",'traceState':{}}"), SPAN0 ".traceState: not a string"},
        {SPANS("{" IDS ",'kind':true}"), SPAN0 ".kind: not an integer or enum name"},
        {SPANS("{" IDS ",'kind':2.5}"), SPAN0 ".kind: not an integer or enum name"},
        {SPANS("{" IDS ",'endTimeUnixNano':'18446744073709551616'}"),
         SPAN0 ".endTimeUnixNano: out of range"},
        {SPANS("{" IDS ",'endTimeUnixNano':-1}"), SPAN0 ".endTimeUnixNano: out of range"},
        {SPANS("{" IDS ",'endTimeUnixNano':'-1'}"), SPAN0 ".endTimeUnixNano: not an integer"},
        {SPANS("{" IDS ",'endTimeUnixNano':' 1'}"), SPAN0 ".endTimeUnixNano: not an integer"},
        {SPANS("{" IDS ",'endTimeUnixNano':1.5}"), SPAN0 ".endTimeUnixNano: not an integer"},
        {SPANS("{" IDS ",'flags':4294967296}"), SPAN0 ".flags: out of range"},
        {SPANS("{" IDS ",'droppedEventsCount':'x'}"), SPAN0 ".droppedEventsCount: not an integer"},
        {SPANS("{" IDS ",'dropped_links_count':{}}"), SPAN0 ".dropped_links_count: not an integer"},
        {SPANS("{" IDS ",'attributes':[{},'x']}"), SPAN0 ".attributes[1]: not an object"},
        {SPANS("{" IDS ",'attributes':[{'key':'a','value':'x'}]}"),
         SPAN0 ".attributes[0].value: not an object"},
        {SPANS("{" IDS ",'attributes':[{'key':'a','value':{'intValue':'12a'}}]}"),
         SPAN0 ".attributes[0].value.intValue: not an integer"},
        {SPANS("{" IDS ",'attributes':[{'key':'a','value':{'int_value':'9223372036854775808'}}]}"),
         SPAN0 ".attributes[0].value.int_value: out of range"},
        {SPANS("{" IDS ",'attributes':[{'key':'a','value':{'intValue':true}}]}"),
         SPAN0 ".attributes[0].value.intValue: not an integer"},
        {SPANS("{" IDS ",'attributes':[{'key':'a','value':{'boolValue':'true'}}]}"),
         SPAN0 ".attributes[0].value.boolValue: not a boolean"},
        {SPANS("{" IDS ",'attributes':[{'key':'a','value':{'doubleValue':'abc'}}]}"),
         SPAN0 ".attributes[0].value.doubleValue: not a number"},
        {SPANS("{" IDS ",'attributes':[{'key':'a','value':{'doubleValue':'1e999'}}]}"),
         SPAN0 ".attributes[0].value.doubleValue: not a number"},
        {SPANS("{" IDS ",'attributes':[{'key':'a','value':{'doubleValue':'0x10'}}]}"),
         SPAN0 ".attributes[0].value.doubleValue: not a number"},
        {SPANS("{" IDS ",'attributes':[{'key':'a','value':{'doubleValue':' 1'}}]}"),
         SPAN0 ".attributes[0].value.doubleValue: not a number"},
        {SPANS("{" IDS ",'attributes':[{'key':'a','value':{'stringValue':1}}]}"),
         SPAN0 ".attributes[0].value.stringValue: not a string"},
        {SPANS("{" IDS ",'attributes':[{'key':'a','value':{'bytesValue':'!!!!'}}]}"),
         SPAN0 ".attributes[0].value.bytesValue: not base64"},
        {SPANS("{" IDS ",'attributes':[{'key':'a','value':{'bytesValue':'AQL/A'}}]}"),
         SPAN0 ".attributes[0].value.bytesValue: not base64"},
        {SPANS("{" IDS ",'attributes':[{'key':'a','value':{'stringValue':'x','intValue':1}}]}"),
         SPAN0 ".attributes[0].value: more than one value"},
        {SPANS("{" IDS ",'attributes':[{'key':'a','value':{'arrayValue':[]}}]}"),
         SPAN0 ".attributes[0].value.arrayValue: not an object"},
        {SPANS("{" IDS ",'attributes':[{'key':'a','value':{'arrayValue':{'values':{}}}}]}"),
         SPAN0 ".attributes[0].value.arrayValue.values: not an array"},
        {SPANS("{" IDS ",'attributes':[{'key':'a','value':{'arrayValue':{'values':[{},"
               "{'intValue':[]}]}}}]}"),
         SPAN0 ".attributes[0].value.arrayValue.values[1].intValue: not an integer"},
        {SPANS("{" IDS ",'attributes':[{'key':'a','value':{'kvlistValue':{'values':[{'key':5}]}}"
               "}]}"),
         SPAN0 ".attributes[0].value.kvlistValue.values[0].key: not a string"},
        {SPANS("{" IDS ",'attributes':[{'key':'a','value':{'kvlistValue':{'values':[7]}}}]}"),
         SPAN0 ".attributes[0].value.kvlistValue.values[0]: not an object"},
        {SPANS("{" IDS ",'attributes':[{'key':'a','value':{'kvlistValue':{'values':[{'key':'k',"
               "'value':{'kvlistValue':{'values':[{'value':{'boolValue':0}}]}}}]}}}]}"),
         SPAN0 ".attributes[0].value.kvlistValue.values[0].value.kvlistValue.values[0].value."
               "boolValue: not a boolean"},
        {SPANS("{" IDS ",'events':{}}"), SPAN0 ".events: not an array"},
        {SPANS("{" IDS ",'events':[{},[]]}"), SPAN0 ".events[1]: not an object"},
        {SPANS("{" IDS ",'events':[{'timeUnixNano':'x'}]}"),
         SPAN0 ".events[0].timeUnixNano: not an integer"},
        {SPANS("{" IDS ",'events':[{'name':1}]}"), SPAN0 ".events[0].name: not a string"},
        {SPANS("{" IDS ",'links':[{'flags':'x'}]}"), SPAN0 ".links[0].flags: not an integer"},
        {SPANS("{" IDS ",'links':[{'traceId':1}]}"), SPAN0 ".links[0].traceId: not a string"},
        {SPANS("{" IDS ",'status':'x'}"), SPAN0 ".status: not an object"},
        {SPANS("{" IDS ",'status':{'code':'2','message':3}}"),
         SPAN0 ".status.message: not a string"},
        {SPANS("{" IDS ",'status':{'code':{}}}"),
         SPAN0 ".status.code: not an integer or enum name"},
    };
    for (size_t i = 0; i < CN_ARRAY_LEN(cases); i++) {
        reset();
        b.rejected = 7; /* counters before the call come back on failure */
        strcpy(b.reject_msg, "before");
        int rc = traces(cases[i].body, NULL);
        if (rc != CN_ESYNTAX || strcmp(err, cases[i].err) != 0)
            fail_msg("case %zu: rc %d, err \"%s\", want \"%s\"", i, rc, err, cases[i].err);
        assert_int_equal(b.num_spans, 0);
        assert_null(b.spans);
        assert_int_equal(b.rejected, 7);
        assert_string_equal(b.reject_msg, "before");
    }

    static const struct {
        const char *body;
        const char *err;
    } log_cases[] = {
        {"{'resourceLogs':1}", "resourceLogs: not an array"},
        {"{'resourceLogs':[{'scopeLogs':[{'logRecords':1}]}]}",
         "resourceLogs[0].scopeLogs[0].logRecords: not an array"},
        {"{'resource_logs':[{'scope_logs':[{'log_records':[{'body':'x'}]}]}]}",
         "resource_logs[0].scope_logs[0].log_records[0].body: not an object"},
        {LOGS("{'severityNumber':1.0}"), LOG0 ".severityNumber: not an integer or enum name"},
        {LOGS("{'severityText':1}"), LOG0 ".severityText: not a string"},
        {LOGS("{'observedTimeUnixNano':[]}"), LOG0 ".observedTimeUnixNano: not an integer"},
        {LOGS("{'eventName':false}"), LOG0 ".eventName: not a string"},
        {LOGS("{'spanId':1}"), LOG0 ".spanId: not a string"},
        {LOGS("{'body':{'kvlistValue':{'values':[{'key':'a','value':{'intValue':'x'}}]}}}"),
         LOG0 ".body.kvlistValue.values[0].value.intValue: not an integer"},
    };
    for (size_t i = 0; i < CN_ARRAY_LEN(log_cases); i++) {
        reset();
        int rc = logs(log_cases[i].body, NULL);
        if (rc != CN_ESYNTAX || strcmp(err, log_cases[i].err) != 0)
            fail_msg("log case %zu: rc %d, err \"%s\", want \"%s\"", i, rc, err, log_cases[i].err);
        assert_int_equal(b.num_logs, 0);
        assert_null(b.logs);
    }

    /* Bytes that are not UTF-8 are invalid JSON; the message stays printable ASCII. */
    static const char bad_utf8[] = "{\"a\":\"\xff\xfe\"}";
    reset();
    assert_int_equal(
        cn_otlp_json_decode_traces(&b, bad_utf8, strlen(bad_utf8), NULL, err, sizeof(err)),
        CN_ESYNTAX);
    assert_string_equal(err,
                        "invalid JSON at line 1, column 6: unable to decode byte 0xff near '\"'");

    /* A short err buffer gets a cut, NUL-terminated message; no buffer at all is fine too. */
    char small[12];
    reset();
    const char *j = q(SPANS("1"));
    assert_int_equal(cn_otlp_json_decode_traces(&b, j, strlen(j), NULL, small, sizeof(small)),
                     CN_ESYNTAX);
    assert_string_equal(small, "resourceSpa");
    reset();
    assert_int_equal(cn_otlp_json_decode_traces(&b, j, strlen(j), NULL, NULL, 0), CN_ESYNTAX);
    reset();
    assert_int_equal(cn_otlp_json_decode_logs(&b, "{", 1, NULL, NULL, 256), CN_ESYNTAX);
}

/* Nulls are absent fields, unknown keys are ignored, an empty request is fine. */
static void lenient_input(void **state)
{
    (void)state;
    assert_int_equal(traces("{}", NULL), 0);
    assert_int_equal(b.num_spans, 0);
    assert_null(b.spans);
    assert_int_equal(traces("{'resourceSpans':[]}", NULL), 0);
    assert_int_equal(traces("{'resourceSpans':null}", NULL), 0);
    assert_int_equal(traces("{'resourceSpans':[{},{'scopeSpans':[{},{'spans':[]}]}]}", NULL), 0);
    assert_int_equal(b.num_spans, 0);
    assert_int_equal(b.rejected, 0);

    reset();
    assert_int_equal(traces("{'futureField':{'x':[1]},'resourceSpans':[{'resource':null,"
                            "'scopeSpans':[{'scope':null,'spans':[{" IDS ",'name':null,'kind':null,"
                            "'parentSpanId':null,'status':null,'events':null,'links':null,"
                            "'attributes':[{'key':'a','value':null},{'key':null,'value':{"
                            "'stringValue':null,'boolValue':true}}],'flags':null,"
                            "'newThing':{'deep':[1,2]},'startTimeUnixNano':null}]}]}]}",
                            NULL),
                     0);
    const struct cn_span *s = &b.spans[0];
    assert_int_equal(b.num_spans, 1);
    assert_slice(s->name, "");
    assert_int_equal(s->kind, 0);
    assert_int_equal(s->status_code, 0);
    assert_int_equal(s->start_ns, 0);
    assert_int_equal(s->attrs.num, 2);
    assert_int_equal(s->attrs.items[0].val.type, CN_VAL_EMPTY);
    assert_slice(s->attrs.items[1].key, "");
    assert_int_equal(s->attrs.items[1].val.type, CN_VAL_BOOL);

    /* Strings may hold NUL characters; slices keep them. */
    reset();
    assert_int_equal(traces(SPANS("{" IDS ",'name':'a\\u0000b'}"), NULL), 0);
    assert_int_equal(b.spans[0].name.len, 3);
    assert_memory_equal(b.spans[0].name.ptr, "a\0b", 3);
}

/* The arena's maximum bounds the decoded batch: 100,000 bytes hold one 64 KiB chunk. */
static void arena_limit(void **state)
{
    (void)state;
    static char body[1 << 18];
    size_t n =
        (size_t)snprintf(body, sizeof(body), "%s", "{'resourceSpans':[{'scopeSpans':[{'spans':[");
    for (int i = 0; i < 300; i++)
        n += (size_t)snprintf(body + n, sizeof(body) - n, "%s{" IDS ",'name':'%0200d'}",
                              i ? "," : "", i);
    snprintf(body + n, sizeof(body) - n, "]}]}]}");
    assert_int_equal(traces(body, NULL), 0);
    assert_int_equal(b.num_spans, 300);
    cn_tel_batch_release(&b);
    cn_tel_batch_init(&b, 100000);
    assert_int_equal(traces(body, NULL), CN_ENOMEM);
    assert_string_equal(err, "batch too large for the decode budget");
    assert_int_equal(b.num_spans, 0);
    assert_null(b.spans);

    /* An array value that passes the limit while it is being written. */
    n = (size_t)snprintf(body, sizeof(body), "%s",
                         "{'resourceSpans':[{'scopeSpans':[{'spans':[{" IDS
                         ",'attributes':[{'key':'a','value':{'arrayValue':{'values':[");
    for (int i = 0; i < 1000; i++)
        n += (size_t)snprintf(body + n, sizeof(body) - n, "%s{'stringValue':'%0100d'}",
                              i ? "," : "", i);
    snprintf(body + n, sizeof(body) - n, "]}}}]}]}]}]}");
    cn_tel_batch_release(&b);
    cn_tel_batch_init(&b, 100000);
    assert_int_equal(traces(body, NULL), CN_ENOMEM);
    assert_int_equal(b.num_spans, 0);

    cn_tel_batch_release(&b);
    cn_tel_batch_init(&b, 1 << 20);
    assert_int_equal(traces(body, NULL), 0);
    /* {"arrayValue":{"values":[ + 1000 {"stringValue":"<100 digits>"} + commas + ]}} */
    assert_int_equal(b.spans[0].attrs.items[0].val.u.s.len, 25 + 1000 * 118 + 999 + 3);
}

static void encode_responses(void **state)
{
    (void)state;
    static const struct {
        uint64_t rejected;
        const char *msg;
        const char *traces, *logs;
    } cases[] = {
        {0, NULL, "{}", "{}"},
        {0, "", "{}", "{}"},
        {3, SPAN0 ".traceId: all zero",
         "{\"partialSuccess\":{\"rejectedSpans\":\"3\",\"errorMessage\":\"" SPAN0
         ".traceId: all zero\"}}",
         "{\"partialSuccess\":{\"rejectedLogRecords\":\"3\",\"errorMessage\":\"" SPAN0
         ".traceId: all zero\"}}"},
        {2, NULL, "{\"partialSuccess\":{\"rejectedSpans\":\"2\"}}",
         "{\"partialSuccess\":{\"rejectedLogRecords\":\"2\"}}"},
        {0, "attributes were cut",
         "{\"partialSuccess\":{\"rejectedSpans\":\"0\",\"errorMessage\":\"attributes were cut\"}}",
         "{\"partialSuccess\":{\"rejectedLogRecords\":\"0\",\"errorMessage\":\"attributes were "
         "cut\"}}"},
        {UINT64_MAX, "q\"b\\n\n\x01\xc3\xa9\xff",
         "{\"partialSuccess\":{\"rejectedSpans\":\"18446744073709551615\",\"errorMessage\":"
         "\"q\\\"b\\\\n\\n\\u0001\xc3\xa9\\ufffd\"}}",
         "{\"partialSuccess\":{\"rejectedLogRecords\":\"18446744073709551615\",\"errorMessage\":"
         "\"q\\\"b\\\\n\\n\\u0001\xc3\xa9\\ufffd\"}}"},
    };
    for (size_t i = 0; i < CN_ARRAY_LEN(cases); i++) {
        struct cn_buf out;
        cn_buf_init(&out, 1024);
        assert_int_equal(cn_otlp_json_encode_trace_response(&out, cases[i].rejected, cases[i].msg),
                         0);
        assert_int_equal(out.len, strlen(cases[i].traces));
        assert_memory_equal(out.ptr, cases[i].traces, out.len);
        cn_buf_reset(&out);
        assert_int_equal(cn_otlp_json_encode_logs_response(&out, cases[i].rejected, cases[i].msg),
                         0);
        assert_int_equal(out.len, strlen(cases[i].logs));
        assert_memory_equal(out.ptr, cases[i].logs, out.len);
        cn_buf_release(&out);
    }

    /* Past the buffer's maximum: CN_ELIMIT and the buffer as it was. */
    struct cn_buf out;
    cn_buf_init(&out, 64);
    assert_int_equal(cn_buf_puts(&out, "HTTP"), 0);
    assert_int_equal(
        cn_otlp_json_encode_trace_response(&out, 1, "a message that passes the buffer's maximum"),
        CN_ELIMIT);
    assert_int_equal(out.len, 4);
    assert_memory_equal(out.ptr, "HTTP", 4);
    assert_int_equal(cn_otlp_json_encode_trace_response(&out, 1, NULL), 0);
    assert_int_equal(out.len, 4 + 40);
    cn_buf_release(&out);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(js_sdk_parent_span, setup, teardown),
        cmocka_unit_test_setup_teardown(js_sdk_child_span, setup, teardown),
        cmocka_unit_test_setup_teardown(js_sdk_logs, setup, teardown),
        cmocka_unit_test_setup_teardown(every_span_field, setup, teardown),
        cmocka_unit_test_setup_teardown(snake_case_names, setup, teardown),
        cmocka_unit_test_setup_teardown(enum_names, setup, teardown),
        cmocka_unit_test_setup_teardown(integer_forms, setup, teardown),
        cmocka_unit_test_setup_teardown(id_forms, setup, teardown),
        cmocka_unit_test_setup_teardown(rejections, setup, teardown),
        cmocka_unit_test_setup_teardown(log_rejections, setup, teardown),
        cmocka_unit_test_setup_teardown(every_log_field, setup, teardown),
        cmocka_unit_test_setup_teardown(canonical_values, setup, teardown),
        cmocka_unit_test(double_text),
        cmocka_unit_test_setup_teardown(service_name, setup, teardown),
        cmocka_unit_test_setup_teardown(limit_attrs, setup, teardown),
        cmocka_unit_test_setup_teardown(limit_values, setup, teardown),
        cmocka_unit_test_setup_teardown(limit_events_links, setup, teardown),
        cmocka_unit_test_setup_teardown(limits_and_checks, setup, teardown),
        cmocka_unit_test_setup_teardown(nesting_depth, setup, teardown),
        cmocka_unit_test_setup_teardown(no_limits, setup, teardown),
        cmocka_unit_test_setup_teardown(malformed, setup, teardown),
        cmocka_unit_test_setup_teardown(lenient_input, setup, teardown),
        cmocka_unit_test_setup_teardown(arena_limit, setup, teardown),
        cmocka_unit_test_setup_teardown(encode_responses, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
