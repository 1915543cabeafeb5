/* Jaeger, Zipkin and Tempo renderings of stored spans (render-compat.h). */
#include "telemetry/render-compat.h"

#include "base/base64.h"
#include "telemetry/query.h"
#include "telemetry/render.h"

#include <math.h>

static json_t *hexid(const uint8_t *id, size_t n)
{
    char b[40];
    cn_hex_encode(b, id, n);
    return json_string(b);
}

/* A trace ID as Jaeger's and Zipkin's own servers print it: 16 hex digits when the high 64
 * bits are zero (a 64-bit ID), else 32. */
static json_t *trace_hex(const uint8_t id[16])
{
    return cn_id_is_zero(id, 8) ? hexid(id + 8, 8) : hexid(id, 16);
}

/* A JSON string of s; bytes that are not UTF-8 become U+FFFD (through cn_render_value,
 * which already knows how). */
static json_t *text(struct cn_slice s)
{
    struct cn_val v = {.type = CN_VAL_STR, .u.s = s};
    json_t *o = cn_render_value(&v);
    json_t *str = json_incref(json_object_get(o, "stringValue"));
    json_decref(o);
    return str ? str : json_string("");
}

static const char *kind_upper(int kind)
{
    switch (kind) {
    case CN_KIND_SERVER:
        return "SERVER";
    case CN_KIND_CLIENT:
        return "CLIENT";
    case CN_KIND_PRODUCER:
        return "PRODUCER";
    case CN_KIND_CONSUMER:
        return "CONSUMER";
    default:
        return NULL;
    }
}

/* Text for the doubles JSON has no number for. */
static const char *nonfinite(double d)
{
    return isnan(d) ? "NaN" : d > 0 ? "+Inf" : "-Inf";
}

/* OTLP JSON AnyValue (as stored for arrays and maps) to plain JSON: arrays become arrays,
 * maps objects, scalars themselves; what Jaeger's and Zipkin's converters print for them. */
static json_t *plain(const json_t *any)
{
    json_t *v;
    if ((v = json_object_get(any, "stringValue")))
        return json_incref(v);
    if ((v = json_object_get(any, "boolValue")))
        return json_incref(v);
    if ((v = json_object_get(any, "doubleValue")))
        return json_incref(v);
    if ((v = json_object_get(any, "intValue"))) {
        if (json_is_string(v))
            return json_integer(strtoll(json_string_value(v), NULL, 10));
        return json_incref(v);
    }
    if ((v = json_object_get(any, "bytesValue")))
        return json_incref(v);
    if ((v = json_object_get(any, "arrayValue"))) {
        json_t *out = json_array();
        json_t *vals = json_object_get(v, "values");
        size_t i;
        json_t *x;
        json_array_foreach(vals, i, x) json_array_append_new(out, plain(x));
        return out;
    }
    if ((v = json_object_get(any, "kvlistValue"))) {
        json_t *out = json_object();
        json_t *vals = json_object_get(v, "values");
        size_t i;
        json_t *x;
        json_array_foreach(vals, i, x)
        {
            const char *k = json_string_value(json_object_get(x, "key"));
            if (k)
                json_object_set_new(out, k, plain(json_object_get(x, "value")));
        }
        return out;
    }
    return json_null();
}

/* The compact JSON text of a stored array or map value, as a string. */
static json_t *compound_text(const struct cn_val *v)
{
    json_t *any = cn_render_value(v);
    json_t *p = plain(any);
    json_decref(any);
    char *s = json_dumps(p, JSON_COMPACT | JSON_ENCODE_ANY);
    json_decref(p);
    json_t *out = json_string(s ? s : "");
    free(s);
    return out;
}

/* ---- Jaeger ----------------------------------------------------------------------------- */

static json_t *jtag(const char *key, const char *type, json_t *value)
{
    json_t *t = json_object();
    json_object_set_new(t, "key", json_string(key));
    json_object_set_new(t, "type", json_string(type));
    json_object_set_new(t, "value", value);
    return t;
}

static json_t *jtag_kv(const struct cn_kv *kv)
{
    const char *type = "string";
    json_t *value;
    switch (kv->val.type) {
    case CN_VAL_STR:
        value = text(kv->val.u.s);
        break;
    case CN_VAL_BOOL:
        type = "bool";
        value = json_boolean(kv->val.u.b);
        break;
    case CN_VAL_INT:
        type = "int64";
        value = json_integer(kv->val.u.i);
        break;
    case CN_VAL_DOUBLE:
        type = "float64";
        /* JSON has no NaN or infinities: Jaeger's encoder fails on them; we print text. */
        value = isfinite(kv->val.u.d) ? json_real(kv->val.u.d) : NULL;
        if (!value) {
            type = "string";
            value = json_string(nonfinite(kv->val.u.d));
        }
        break;
    case CN_VAL_BYTES: {
        type = "binary";
        json_t *o = cn_render_value(&kv->val);
        value = json_incref(json_object_get(o, "bytesValue"));
        json_decref(o);
        if (!value)
            value = json_string("");
        break;
    }
    case CN_VAL_ARRAY:
    case CN_VAL_KVLIST:
        value = compound_text(&kv->val);
        break;
    default:
        value = json_string("");
        break;
    }
    json_t *t = json_object();
    json_object_set_new(t, "key", text(kv->key));
    json_object_set_new(t, "type", json_string(type));
    json_object_set_new(t, "value", value);
    return t;
}

json_t *cn_jaeger_tags(const struct cn_kvs *kvs)
{
    json_t *a = json_array();
    for (uint32_t i = 0; kvs && i < kvs->num; i++)
        json_array_append_new(a, jtag_kv(&kvs->items[i]));
    return a;
}

void cn_jaeger_trace_init(struct cn_jaeger_trace *t)
{
    t->spans = json_array();
    t->procs = json_array();
}

void cn_jaeger_trace_release(struct cn_jaeger_trace *t)
{
    json_decref(t->spans);
    json_decref(t->procs);
    t->spans = t->procs = NULL;
}

static json_t *jaeger_process(const struct cn_resource *r)
{
    json_t *p = json_object();
    json_t *tags = json_array();
    json_object_set_new(p, "serviceName", text(r ? r->service : CN_SLICE_LIT("unknown_service")));
    for (uint32_t i = 0; r && i < r->attrs.num; i++) {
        if (cn_slice_eq(r->attrs.items[i].key, CN_SLICE_LIT("service.name")))
            continue;
        json_array_append_new(tags, jtag_kv(&r->attrs.items[i]));
    }
    json_object_set_new(p, "tags", tags);
    return p;
}

static json_t *jref(const char *type, const uint8_t trace_id[16], const uint8_t span_id[8])
{
    json_t *r = json_object();
    json_object_set_new(r, "refType", json_string(type));
    json_object_set_new(r, "traceID", trace_hex(trace_id));
    json_object_set_new(r, "spanID", hexid(span_id, 8));
    return r;
}

int cn_jaeger_trace_add(struct cn_jaeger_trace *t, const struct cn_span *s)
{
    /* The process: the same resource (service and tags) shares one process ID. */
    json_t *proc = jaeger_process(s->resource);
    size_t pi, n = json_array_size(t->procs);
    for (pi = 0; pi < n; pi++)
        if (json_equal(json_array_get(t->procs, pi), proc))
            break;
    if (pi == n) {
        if (json_array_append(t->procs, proc) != 0) {
            json_decref(proc);
            return CN_ENOMEM;
        }
    }
    json_decref(proc);
    char pid[24];
    snprintf(pid, sizeof(pid), "p%zu", pi + 1);

    json_t *j = json_object();
    json_object_set_new(j, "traceID", trace_hex(s->trace_id));
    json_object_set_new(j, "spanID", hexid(s->span_id, 8));
    json_object_set_new(j, "operationName", text(s->name));
    json_t *refs = json_array();
    if (!cn_id_is_zero(s->parent_id, 8))
        json_array_append_new(refs, jref("CHILD_OF", s->trace_id, s->parent_id));
    for (uint32_t i = 0; i < s->num_links; i++)
        json_array_append_new(refs,
                              jref("FOLLOWS_FROM", s->links[i].trace_id, s->links[i].span_id));
    json_object_set_new(j, "references", refs);
    json_object_set_new(j, "startTime", json_integer((json_int_t)(s->start_ns / 1000)));
    uint64_t dur = s->end_ns > s->start_ns ? s->end_ns - s->start_ns : 0;
    json_object_set_new(j, "duration", json_integer((json_int_t)(dur / 1000)));
    json_t *tags = cn_jaeger_tags(&s->attrs);
    if (s->kind >= CN_KIND_INTERNAL && s->kind <= CN_KIND_CONSUMER)
        json_array_append_new(
            tags, jtag("span.kind", "string", json_string(cn_query_kind_name(s->kind))));
    if (s->status_code == CN_STATUS_OK) {
        json_array_append_new(tags, jtag("otel.status_code", "string", json_string("OK")));
    } else if (s->status_code == CN_STATUS_ERROR) {
        json_array_append_new(tags, jtag("otel.status_code", "string", json_string("ERROR")));
        json_array_append_new(tags, jtag("error", "bool", json_true()));
    }
    if (s->status_message.len)
        json_array_append_new(tags,
                              jtag("otel.status_description", "string", text(s->status_message)));
    if (s->scope && s->scope->name.len)
        json_array_append_new(tags, jtag("otel.scope.name", "string", text(s->scope->name)));
    if (s->scope && s->scope->version.len)
        json_array_append_new(tags, jtag("otel.scope.version", "string", text(s->scope->version)));
    if (s->trace_state.len)
        json_array_append_new(tags, jtag("w3c.tracestate", "string", text(s->trace_state)));
    json_object_set_new(j, "tags", tags);
    json_t *logs = json_array();
    for (uint32_t i = 0; i < s->num_events; i++) {
        json_t *l = json_object();
        json_object_set_new(l, "timestamp",
                            json_integer((json_int_t)(s->events[i].time_ns / 1000)));
        json_t *fields = json_array();
        json_array_append_new(fields, jtag("event", "string", text(s->events[i].name)));
        json_t *et = cn_jaeger_tags(&s->events[i].attrs);
        json_array_extend(fields, et);
        json_decref(et);
        json_object_set_new(l, "fields", fields);
        json_array_append_new(logs, l);
    }
    json_object_set_new(j, "logs", logs);
    json_object_set_new(j, "processID", json_string(pid));
    json_object_set_new(j, "warnings", json_null());
    if (s->flags & 0xff)
        json_object_set_new(j, "flags", json_integer(s->flags & 0xff));
    return json_array_append_new(t->spans, j) == 0 ? 0 : CN_ENOMEM;
}

struct ordered {
    json_t *item;
    long long start;
    size_t index;
};

static int by_start(const void *a, const void *b)
{
    const struct ordered *x = a, *y = b;
    if (x->start != y->start)
        return x->start < y->start ? -1 : 1;
    return x->index < y->index ? -1 : x->index > y->index;
}

/* Sorts an array of objects by an integer field, ties in their present order. */
static int sort_by(json_t *arr, const char *field)
{
    size_t n = json_array_size(arr);
    if (n < 2)
        return 0;
    struct ordered *o = malloc(n * sizeof(*o));
    if (!o)
        return CN_ENOMEM;
    for (size_t i = 0; i < n; i++) {
        o[i].item = json_incref(json_array_get(arr, i));
        o[i].start = (long long)json_integer_value(json_object_get(o[i].item, field));
        o[i].index = i;
    }
    qsort(o, n, sizeof(*o), by_start);
    json_array_clear(arr);
    for (size_t i = 0; i < n; i++)
        json_array_append_new(arr, o[i].item);
    free(o);
    return 0;
}

json_t *cn_jaeger_trace_finish(struct cn_jaeger_trace *t, const uint8_t trace_id[16])
{
    json_t *j = NULL;
    if (!t->spans || !t->procs || sort_by(t->spans, "startTime") != 0)
        goto out;
    j = json_object();
    json_object_set_new(j, "traceID", trace_hex(trace_id));
    json_object_set(j, "spans", t->spans);
    json_t *procs = json_object();
    size_t i;
    json_t *p;
    json_array_foreach(t->procs, i, p)
    {
        char pid[24];
        snprintf(pid, sizeof(pid), "p%zu", i + 1);
        json_object_set(procs, pid, p);
    }
    json_object_set_new(j, "processes", procs);
    json_object_set_new(j, "warnings", json_null());
out:
    cn_jaeger_trace_release(t);
    return j;
}

/* ---- Zipkin ----------------------------------------------------------------------------- */

/* The Zipkin tag text of a value: strings as they are, numbers and booleans as the query
 * layer prints them, bytes in base64, arrays and maps as compact JSON. */
static json_t *ztag(const struct cn_val *v)
{
    char buf[64];
    switch (v->type) {
    case CN_VAL_STR:
        return text(v->u.s);
    case CN_VAL_DOUBLE:
        if (!isfinite(v->u.d))
            return json_string(nonfinite(v->u.d));
        /* fall through */
    case CN_VAL_BOOL:
    case CN_VAL_INT:
        return cn_val_text(v, buf, sizeof(buf)) >= 0 ? json_string(buf) : json_string("");
    case CN_VAL_BYTES: {
        json_t *o = cn_render_value(v);
        json_t *b = json_incref(json_object_get(o, "bytesValue"));
        json_decref(o);
        return b ? b : json_string("");
    }
    case CN_VAL_ARRAY:
    case CN_VAL_KVLIST:
        return compound_text(v);
    default:
        return json_string("");
    }
}

static void zset(json_t *tags, struct cn_slice key, json_t *v)
{
    char k[512];
    snprintf(k, sizeof(k), "%.*s", (int)CN_MIN(key.len, sizeof(k) - 1), key.ptr ? key.ptr : "");
    json_t *kj = text(key);
    /* Keys with bytes that are not UTF-8 (or NULs) are skipped: a JSON object key must be. */
    if (json_string_length(kj) == key.len && strlen(k) == key.len)
        json_object_set_new(tags, k, v);
    else
        json_decref(v);
    json_decref(kj);
}

static const struct cn_val *attr(const struct cn_kvs *kvs, const char *key)
{
    struct cn_slice k = cn_slice_of(key);
    for (uint32_t i = 0; i < kvs->num; i++)
        if (cn_slice_eq(kvs->items[i].key, k))
            return &kvs->items[i].val;
    return NULL;
}

json_t *cn_zipkin_render_span(const struct cn_span *s)
{
    json_t *j = json_object();
    json_object_set_new(j, "traceId", trace_hex(s->trace_id));
    if (!cn_id_is_zero(s->parent_id, 8))
        json_object_set_new(j, "parentId", hexid(s->parent_id, 8));
    json_object_set_new(j, "id", hexid(s->span_id, 8));
    const char *kind = kind_upper(s->kind);
    if (kind)
        json_object_set_new(j, "kind", json_string(kind));
    json_object_set_new(j, "name", text(s->name));
    json_object_set_new(j, "timestamp", json_integer((json_int_t)(s->start_ns / 1000)));
    uint64_t dur = s->end_ns > s->start_ns ? (s->end_ns - s->start_ns) / 1000 : 0;
    /* Zipkin's duration is at least 1 µs when present; 0 means "unknown" there. */
    json_object_set_new(j, "duration", json_integer((json_int_t)(dur ? dur : 1)));
    json_t *local = json_object();
    json_object_set_new(local, "serviceName",
                        text(s->resource ? s->resource->service : CN_SLICE_LIT("unknown_service")));
    json_object_set_new(j, "localEndpoint", local);
    /* The remote side as OpenTelemetry's Zipkin exporter names it. */
    const struct cn_val *peer = attr(&s->attrs, "peer.service");
    if (!peer)
        peer = attr(&s->attrs, "server.address");
    if (!peer)
        peer = attr(&s->attrs, "net.peer.name");
    if (peer && peer->type == CN_VAL_STR &&
        (s->kind == CN_KIND_CLIENT || s->kind == CN_KIND_PRODUCER)) {
        json_t *remote = json_object();
        json_object_set_new(remote, "serviceName", text(peer->u.s));
        json_object_set_new(j, "remoteEndpoint", remote);
    }
    if (s->num_events) {
        json_t *ann = json_array();
        for (uint32_t i = 0; i < s->num_events; i++) {
            json_t *a = json_object();
            json_object_set_new(a, "timestamp",
                                json_integer((json_int_t)(s->events[i].time_ns / 1000)));
            json_object_set_new(a, "value", text(s->events[i].name));
            json_array_append_new(ann, a);
        }
        json_object_set_new(j, "annotations", ann);
    }
    json_t *tags = json_object();
    for (uint32_t i = 0; i < s->attrs.num; i++)
        zset(tags, s->attrs.items[i].key, ztag(&s->attrs.items[i].val));
    if (s->status_code == CN_STATUS_OK)
        json_object_set_new(tags, "otel.status_code", json_string("OK"));
    if (s->status_code == CN_STATUS_ERROR) {
        json_object_set_new(tags, "otel.status_code", json_string("ERROR"));
        json_object_set_new(tags, "error", text(s->status_message));
    }
    if (s->scope && s->scope->name.len)
        json_object_set_new(tags, "otel.scope.name", text(s->scope->name));
    if (s->scope && s->scope->version.len)
        json_object_set_new(tags, "otel.scope.version", text(s->scope->version));
    json_object_set_new(j, "tags", tags);
    return j;
}

/* ---- Tempo ------------------------------------------------------------------------------ */

static const char *const kind_enum[] = {"SPAN_KIND_UNSPECIFIED", "SPAN_KIND_INTERNAL",
                                        "SPAN_KIND_SERVER",      "SPAN_KIND_CLIENT",
                                        "SPAN_KIND_PRODUCER",    "SPAN_KIND_CONSUMER"};
static const char *const status_enum[] = {"STATUS_CODE_UNSET", "STATUS_CODE_OK",
                                          "STATUS_CODE_ERROR"};

static json_t *b64id(const uint8_t *id, size_t n)
{
    char out[CN_BASE64_LEN(16)];
    return json_stringn(out, cn_base64_encode(out, id, CN_MIN(n, (size_t)16)));
}

static json_t *u64s(uint64_t v)
{
    char b[24];
    snprintf(b, sizeof(b), "%llu", (unsigned long long)v);
    return json_string(b);
}

static void set_attrs(json_t *o, const struct cn_kvs *kvs)
{
    if (kvs->num)
        json_object_set_new(o, "attributes", cn_render_attrs(kvs));
    if (kvs->dropped)
        json_object_set_new(o, "droppedAttributesCount", json_integer(kvs->dropped));
}

static json_t *tempo_span(const struct cn_span *s)
{
    json_t *j = json_object();
    json_object_set_new(j, "traceId", b64id(s->trace_id, 16));
    json_object_set_new(j, "spanId", b64id(s->span_id, 8));
    if (s->trace_state.len)
        json_object_set_new(j, "traceState", text(s->trace_state));
    if (!cn_id_is_zero(s->parent_id, 8))
        json_object_set_new(j, "parentSpanId", b64id(s->parent_id, 8));
    if (s->flags)
        json_object_set_new(j, "flags", json_integer(s->flags));
    json_object_set_new(j, "name", text(s->name));
    json_object_set_new(j, "kind",
                        json_string(kind_enum[s->kind <= CN_KIND_CONSUMER ? s->kind : 0]));
    json_object_set_new(j, "startTimeUnixNano", u64s(s->start_ns));
    json_object_set_new(j, "endTimeUnixNano", u64s(s->end_ns));
    set_attrs(j, &s->attrs);
    if (s->num_events) {
        json_t *evs = json_array();
        for (uint32_t i = 0; i < s->num_events; i++) {
            json_t *e = json_object();
            json_object_set_new(e, "timeUnixNano", u64s(s->events[i].time_ns));
            json_object_set_new(e, "name", text(s->events[i].name));
            set_attrs(e, &s->events[i].attrs);
            json_array_append_new(evs, e);
        }
        json_object_set_new(j, "events", evs);
    }
    if (s->dropped_events)
        json_object_set_new(j, "droppedEventsCount", json_integer(s->dropped_events));
    if (s->num_links) {
        json_t *ls = json_array();
        for (uint32_t i = 0; i < s->num_links; i++) {
            json_t *l = json_object();
            json_object_set_new(l, "traceId", b64id(s->links[i].trace_id, 16));
            json_object_set_new(l, "spanId", b64id(s->links[i].span_id, 8));
            if (s->links[i].trace_state.len)
                json_object_set_new(l, "traceState", text(s->links[i].trace_state));
            set_attrs(l, &s->links[i].attrs);
            if (s->links[i].flags)
                json_object_set_new(l, "flags", json_integer(s->links[i].flags));
            json_array_append_new(ls, l);
        }
        json_object_set_new(j, "links", ls);
    }
    if (s->dropped_links)
        json_object_set_new(j, "droppedLinksCount", json_integer(s->dropped_links));
    json_t *st = json_object();
    if (s->status_message.len)
        json_object_set_new(st, "message", text(s->status_message));
    if (s->status_code)
        json_object_set_new(st, "code",
                            json_string(status_enum[s->status_code <= 2 ? s->status_code : 0]));
    json_object_set_new(j, "status", st);
    return j;
}

void cn_tempo_trace_init(struct cn_tempo_trace *t)
{
    t->batches = json_array();
}

void cn_tempo_trace_release(struct cn_tempo_trace *t)
{
    json_decref(t->batches);
    t->batches = NULL;
}

int cn_tempo_trace_add(struct cn_tempo_trace *t, const struct cn_span *s)
{
    json_t *res = json_object();
    if (s->resource) {
        set_attrs(res, &s->resource->attrs);
    }
    json_t *scope = json_object();
    if (s->scope) {
        if (s->scope->name.len)
            json_object_set_new(scope, "name", text(s->scope->name));
        if (s->scope->version.len)
            json_object_set_new(scope, "version", text(s->scope->version));
        set_attrs(scope, &s->scope->attrs);
    }
    json_t *batch = NULL, *ss = NULL;
    size_t i;
    json_t *b;
    json_array_foreach(t->batches, i, b)
    {
        if (json_equal(json_object_get(b, "resource"), res)) {
            batch = b;
            break;
        }
    }
    if (!batch) {
        batch = json_object();
        json_object_set(batch, "resource", res);
        json_object_set_new(batch, "scopeSpans", json_array());
        json_array_append_new(t->batches, batch);
    }
    json_t *sss = json_object_get(batch, "scopeSpans");
    json_array_foreach(sss, i, b)
    {
        if (json_equal(json_object_get(b, "scope"), scope)) {
            ss = b;
            break;
        }
    }
    if (!ss) {
        ss = json_object();
        json_object_set(ss, "scope", scope);
        json_object_set_new(ss, "spans", json_array());
        json_array_append_new(sss, ss);
    }
    json_decref(res);
    json_decref(scope);
    json_t *sp = tempo_span(s);
    return sp && json_array_append_new(json_object_get(ss, "spans"), sp) == 0 ? 0 : CN_ENOMEM;
}

json_t *cn_tempo_trace_finish(struct cn_tempo_trace *t)
{
    json_t *b = t->batches;
    t->batches = NULL;
    return b;
}

/* ---- Tempo protobuf: the JSON above, re-encoded with the OTLP field numbers -------------- */

static int put_varint(struct cn_buf *b, uint64_t v)
{
    uint8_t tmp[10];
    size_t n = 0;
    do {
        tmp[n++] = (uint8_t)((v & 0x7f) | (v > 0x7f ? 0x80 : 0));
        v >>= 7;
    } while (v);
    return cn_buf_append(b, tmp, n);
}

static int put_key(struct cn_buf *b, uint32_t field, int wire)
{
    return put_varint(b, (uint64_t)field << 3 | (uint64_t)wire);
}

static int put_bytes(struct cn_buf *b, uint32_t field, const void *p, size_t n)
{
    int rc;
    if ((rc = put_key(b, field, 2)) != 0 || (rc = put_varint(b, n)) != 0)
        return rc;
    return cn_buf_append(b, p, n);
}

static int put_fixed(struct cn_buf *b, uint32_t field, uint64_t v, int bytes)
{
    uint8_t tmp[8];
    for (int i = 0; i < bytes; i++)
        tmp[i] = (uint8_t)(v >> (8 * i));
    int rc = put_key(b, field, bytes == 8 ? 1 : 5);
    return rc ? rc : cn_buf_append(b, tmp, (size_t)bytes);
}

static int put_str(struct cn_buf *b, uint32_t field, const json_t *s)
{
    if (!s)
        return 0;
    if (!json_is_string(s))
        return CN_ESYNTAX;
    return put_bytes(b, field, json_string_value(s), json_string_length(s));
}

static int put_b64(struct cn_buf *b, uint32_t field, const json_t *s)
{
    if (!s)
        return 0;
    if (!json_is_string(s))
        return CN_ESYNTAX;
    size_t n = json_string_length(s);
    uint8_t *out = malloc(n / 4 * 3 + 3);
    if (!out)
        return CN_ENOMEM;
    long o = cn_base64_decode(out, json_string_value(s), n);
    int rc = o < 0 ? CN_ESYNTAX : put_bytes(b, field, out, (size_t)o);
    free(out);
    return rc;
}

static int put_u64s(struct cn_buf *b, uint32_t field, const json_t *s)
{
    if (!s)
        return 0;
    return put_fixed(b, field,
                     strtoull(json_string_value(s) ? json_string_value(s) : "0", NULL, 10), 8);
}

static int put_uint(struct cn_buf *b, uint32_t field, const json_t *v)
{
    if (!v)
        return 0;
    int rc = put_key(b, field, 0);
    return rc ? rc : put_varint(b, (uint64_t)json_integer_value(v));
}

/* A nested message: encodes it into a scratch buffer, then appends it as a bytes field. */
typedef int (*enc_fn)(struct cn_buf *b, const json_t *j);

static int put_msg(struct cn_buf *b, uint32_t field, enc_fn fn, const json_t *j)
{
    struct cn_buf tmp;
    cn_buf_init(&tmp, b->max);
    int rc = fn(&tmp, j);
    if (rc == 0)
        rc = put_bytes(b, field, tmp.ptr ? tmp.ptr : "", tmp.len);
    cn_buf_release(&tmp);
    return rc;
}

static int put_each(struct cn_buf *b, uint32_t field, enc_fn fn, const json_t *arr)
{
    size_t i;
    json_t *x;
    int rc = 0;
    json_array_foreach(arr, i, x) if ((rc = put_msg(b, field, fn, x)) != 0) return rc;
    return 0;
}

static int enc_kv(struct cn_buf *b, const json_t *kv);

static int enc_array(struct cn_buf *b, const json_t *arr);

static int enc_any(struct cn_buf *b, const json_t *any)
{
    json_t *v;
    if ((v = json_object_get(any, "stringValue")))
        return put_str(b, 1, v);
    if ((v = json_object_get(any, "boolValue"))) {
        int rc = put_key(b, 2, 0);
        return rc ? rc : put_varint(b, json_is_true(v));
    }
    if ((v = json_object_get(any, "intValue"))) {
        int64_t i = json_is_string(v) ? strtoll(json_string_value(v), NULL, 10)
                                      : (int64_t)json_integer_value(v);
        int rc = put_key(b, 3, 0);
        return rc ? rc : put_varint(b, (uint64_t)i);
    }
    if ((v = json_object_get(any, "doubleValue"))) {
        double d = json_number_value(v);
        uint64_t u;
        memcpy(&u, &d, 8);
        return put_fixed(b, 4, u, 8);
    }
    if ((v = json_object_get(any, "arrayValue")))
        return put_msg(b, 5, enc_array, json_object_get(v, "values"));
    if ((v = json_object_get(any, "kvlistValue"))) {
        struct cn_buf tmp;
        cn_buf_init(&tmp, b->max);
        int rc = put_each(&tmp, 1, enc_kv, json_object_get(v, "values"));
        if (rc == 0)
            rc = put_bytes(b, 6, tmp.ptr ? tmp.ptr : "", tmp.len);
        cn_buf_release(&tmp);
        return rc;
    }
    if ((v = json_object_get(any, "bytesValue")))
        return put_b64(b, 7, v);
    return 0;
}

static int enc_array(struct cn_buf *b, const json_t *arr)
{
    return put_each(b, 1, enc_any, arr);
}

static int enc_kv(struct cn_buf *b, const json_t *kv)
{
    int rc = put_str(b, 1, json_object_get(kv, "key"));
    return rc ? rc : put_msg(b, 2, enc_any, json_object_get(kv, "value"));
}

static int enc_resource(struct cn_buf *b, const json_t *r)
{
    int rc = put_each(b, 1, enc_kv, json_object_get(r, "attributes"));
    return rc ? rc : put_uint(b, 2, json_object_get(r, "droppedAttributesCount"));
}

static int enc_scope(struct cn_buf *b, const json_t *s)
{
    int rc;
    if ((rc = put_str(b, 1, json_object_get(s, "name"))) != 0 ||
        (rc = put_str(b, 2, json_object_get(s, "version"))) != 0 ||
        (rc = put_each(b, 3, enc_kv, json_object_get(s, "attributes"))) != 0)
        return rc;
    return put_uint(b, 4, json_object_get(s, "droppedAttributesCount"));
}

static int enc_event(struct cn_buf *b, const json_t *e)
{
    int rc;
    if ((rc = put_u64s(b, 1, json_object_get(e, "timeUnixNano"))) != 0 ||
        (rc = put_str(b, 2, json_object_get(e, "name"))) != 0 ||
        (rc = put_each(b, 3, enc_kv, json_object_get(e, "attributes"))) != 0)
        return rc;
    return put_uint(b, 4, json_object_get(e, "droppedAttributesCount"));
}

static int enc_link(struct cn_buf *b, const json_t *l)
{
    int rc;
    const json_t *flags = json_object_get(l, "flags");
    if ((rc = put_b64(b, 1, json_object_get(l, "traceId"))) != 0 ||
        (rc = put_b64(b, 2, json_object_get(l, "spanId"))) != 0 ||
        (rc = put_str(b, 3, json_object_get(l, "traceState"))) != 0 ||
        (rc = put_each(b, 4, enc_kv, json_object_get(l, "attributes"))) != 0 ||
        (rc = put_uint(b, 5, json_object_get(l, "droppedAttributesCount"))) != 0)
        return rc;
    return flags ? put_fixed(b, 6, (uint64_t)json_integer_value(flags), 4) : 0;
}

static int enum_num(const json_t *v, const char *const *names, size_t n)
{
    const char *s = json_string_value(v);
    for (size_t i = 0; s && i < n; i++)
        if (strcmp(s, names[i]) == 0)
            return (int)i;
    return 0;
}

static int enc_status(struct cn_buf *b, const json_t *st)
{
    int rc = put_str(b, 2, json_object_get(st, "message"));
    int code = enum_num(json_object_get(st, "code"), status_enum, CN_ARRAY_LEN(status_enum));
    if (rc == 0 && code && (rc = put_key(b, 3, 0)) == 0)
        rc = put_varint(b, (uint64_t)code);
    return rc;
}

static int enc_span(struct cn_buf *b, const json_t *s)
{
    int rc;
    int kind = enum_num(json_object_get(s, "kind"), kind_enum, CN_ARRAY_LEN(kind_enum));
    const json_t *flags = json_object_get(s, "flags");
    if ((rc = put_b64(b, 1, json_object_get(s, "traceId"))) != 0 ||
        (rc = put_b64(b, 2, json_object_get(s, "spanId"))) != 0 ||
        (rc = put_str(b, 3, json_object_get(s, "traceState"))) != 0 ||
        (rc = put_b64(b, 4, json_object_get(s, "parentSpanId"))) != 0 ||
        (rc = put_str(b, 5, json_object_get(s, "name"))) != 0)
        return rc;
    if (kind && ((rc = put_key(b, 6, 0)) != 0 || (rc = put_varint(b, (uint64_t)kind)) != 0))
        return rc;
    if ((rc = put_u64s(b, 7, json_object_get(s, "startTimeUnixNano"))) != 0 ||
        (rc = put_u64s(b, 8, json_object_get(s, "endTimeUnixNano"))) != 0 ||
        (rc = put_each(b, 9, enc_kv, json_object_get(s, "attributes"))) != 0 ||
        (rc = put_uint(b, 10, json_object_get(s, "droppedAttributesCount"))) != 0 ||
        (rc = put_each(b, 11, enc_event, json_object_get(s, "events"))) != 0 ||
        (rc = put_uint(b, 12, json_object_get(s, "droppedEventsCount"))) != 0 ||
        (rc = put_each(b, 13, enc_link, json_object_get(s, "links"))) != 0 ||
        (rc = put_uint(b, 14, json_object_get(s, "droppedLinksCount"))) != 0 ||
        (rc = put_msg(b, 15, enc_status, json_object_get(s, "status"))) != 0)
        return rc;
    return flags ? put_fixed(b, 16, (uint64_t)json_integer_value(flags), 4) : 0;
}

static int enc_scope_spans(struct cn_buf *b, const json_t *ss)
{
    int rc = put_msg(b, 1, enc_scope, json_object_get(ss, "scope"));
    return rc ? rc : put_each(b, 2, enc_span, json_object_get(ss, "spans"));
}

static int enc_resource_spans(struct cn_buf *b, const json_t *rs)
{
    if (!json_is_object(rs))
        return CN_ESYNTAX;
    int rc = put_msg(b, 1, enc_resource, json_object_get(rs, "resource"));
    return rc ? rc : put_each(b, 2, enc_scope_spans, json_object_get(rs, "scopeSpans"));
}

int cn_tempo_encode_pb(struct cn_buf *out, const json_t *batches, uint32_t field)
{
    if (!json_is_array(batches))
        return CN_ESYNTAX;
    return put_each(out, field, enc_resource_spans, batches);
}
