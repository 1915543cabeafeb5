#include "telemetry/render.h"

#include "base/base64.h"

#include <math.h>

/* A JSON string; bytes that are not UTF-8 become U+FFFD so one bad value cannot make a
 * whole answer unencodable. */
static json_t *str(struct cn_slice s)
{
    json_t *j = json_stringn(s.ptr ? s.ptr : "", s.len);
    if (j)
        return j;
    char *out = malloc(s.len * 3 + 1);
    if (!out)
        return json_string("");
    size_t o = 0;
    const unsigned char *p = (const unsigned char *)s.ptr;
    for (size_t i = 0; i < s.len;) {
        size_t n = p[i] < 0x80         ? 1
                   : (p[i] >> 5) == 6  ? 2
                   : (p[i] >> 4) == 14 ? 3
                   : (p[i] >> 3) == 30 ? 4
                                       : 0;
        json_t *probe = n && i + n <= s.len ? json_stringn((const char *)p + i, n) : NULL;
        if (probe && p[i] != 0) {
            json_decref(probe);
            memcpy(out + o, p + i, n);
            o += n;
            i += n;
        } else {
            json_decref(probe);
            memcpy(out + o, "\xef\xbf\xbd", 3);
            o += 3;
            i++;
        }
    }
    j = json_stringn(out, o);
    free(out);
    return j ? j : json_string("");
}

static json_t *u64(uint64_t v)
{
    char b[24];
    snprintf(b, sizeof(b), "%llu", (unsigned long long)v);
    return json_string(b);
}

static json_t *hex(const uint8_t *id, size_t n)
{
    char b[40];
    cn_hex_encode(b, id, n);
    return json_string(b);
}

static json_t *base64(struct cn_slice s)
{
    char *out = malloc(CN_BASE64_LEN(s.len) + 1);
    if (!out)
        return NULL;
    json_t *j = json_stringn(out, cn_base64_encode(out, s.ptr, s.len));
    free(out);
    return j;
}

json_t *cn_render_value(const struct cn_val *v)
{
    json_t *j = json_object();
    switch (v->type) {
    case CN_VAL_STR:
        json_object_set_new(j, "stringValue", str(v->u.s));
        break;
    case CN_VAL_BOOL:
        json_object_set_new(j, "boolValue", json_boolean(v->u.b));
        break;
    case CN_VAL_INT: {
        char b[24];
        snprintf(b, sizeof(b), "%lld", (long long)v->u.i);
        json_object_set_new(j, "intValue", json_string(b));
        break;
    }
    case CN_VAL_DOUBLE:
        /* JSON has no NaN or infinities; the protobuf JSON mapping writes them as strings. */
        json_object_set_new(j, "doubleValue",
                            isfinite(v->u.d) ? json_real(v->u.d)
                            : isnan(v->u.d)  ? json_string("NaN")
                            : v->u.d > 0     ? json_string("Infinity")
                                             : json_string("-Infinity"));
        break;
    case CN_VAL_BYTES:
        json_object_set_new(j, "bytesValue", base64(v->u.s));
        break;
    case CN_VAL_ARRAY:
    case CN_VAL_KVLIST: {
        /* Kept as OTLP JSON text: parse it back into the tree. */
        json_t *inner = json_loadb(v->u.s.ptr, v->u.s.len, 0, NULL);
        if (inner) {
            json_decref(j);
            return inner;
        }
        break;
    }
    default:
        break;
    }
    return j;
}

json_t *cn_render_attrs(const struct cn_kvs *kvs)
{
    json_t *a = json_array();
    for (uint32_t i = 0; i < kvs->num; i++) {
        json_t *kv = json_object();
        json_object_set_new(kv, "key", str(kvs->items[i].key));
        json_object_set_new(kv, "value", cn_render_value(&kvs->items[i].val));
        json_array_append_new(a, kv);
    }
    return a;
}

static json_t *resource(const struct cn_resource *r)
{
    json_t *j = json_object();
    if (r) {
        json_object_set_new(j, "serviceName", str(r->service));
        json_object_set_new(j, "attributes", cn_render_attrs(&r->attrs));
        json_object_set_new(j, "droppedAttributesCount", json_integer(r->attrs.dropped));
    }
    return j;
}

static json_t *scope(const struct cn_scope *sc)
{
    json_t *j = json_object();
    if (sc) {
        json_object_set_new(j, "name", str(sc->name));
        json_object_set_new(j, "version", str(sc->version));
        json_object_set_new(j, "attributes", cn_render_attrs(&sc->attrs));
    }
    return j;
}

json_t *cn_render_span(const struct cn_span *s)
{
    json_t *j = json_object();
    json_object_set_new(j, "traceId", hex(s->trace_id, 16));
    json_object_set_new(j, "spanId", hex(s->span_id, 8));
    json_object_set_new(j, "parentSpanId",
                        cn_id_is_zero(s->parent_id, 8) ? json_string("") : hex(s->parent_id, 8));
    json_object_set_new(j, "traceState", str(s->trace_state));
    json_object_set_new(j, "name", str(s->name));
    json_object_set_new(j, "kind", json_integer(s->kind));
    json_object_set_new(j, "startTimeUnixNano", u64(s->start_ns));
    json_object_set_new(j, "endTimeUnixNano", u64(s->end_ns));
    json_object_set_new(j, "attributes", cn_render_attrs(&s->attrs));
    json_object_set_new(j, "droppedAttributesCount", json_integer(s->attrs.dropped));
    json_t *events = json_array();
    for (uint32_t i = 0; i < s->num_events; i++) {
        json_t *e = json_object();
        json_object_set_new(e, "timeUnixNano", u64(s->events[i].time_ns));
        json_object_set_new(e, "name", str(s->events[i].name));
        json_object_set_new(e, "attributes", cn_render_attrs(&s->events[i].attrs));
        json_object_set_new(e, "droppedAttributesCount", json_integer(s->events[i].attrs.dropped));
        json_array_append_new(events, e);
    }
    json_object_set_new(j, "events", events);
    json_object_set_new(j, "droppedEventsCount", json_integer(s->dropped_events));
    json_t *links = json_array();
    for (uint32_t i = 0; i < s->num_links; i++) {
        json_t *l = json_object();
        json_object_set_new(l, "traceId", hex(s->links[i].trace_id, 16));
        json_object_set_new(l, "spanId", hex(s->links[i].span_id, 8));
        json_object_set_new(l, "traceState", str(s->links[i].trace_state));
        json_object_set_new(l, "attributes", cn_render_attrs(&s->links[i].attrs));
        json_object_set_new(l, "droppedAttributesCount", json_integer(s->links[i].attrs.dropped));
        json_object_set_new(l, "flags", json_integer(s->links[i].flags));
        json_array_append_new(links, l);
    }
    json_object_set_new(j, "links", links);
    json_object_set_new(j, "droppedLinksCount", json_integer(s->dropped_links));
    json_t *st = json_object();
    json_object_set_new(st, "code", json_integer(s->status_code));
    json_object_set_new(st, "message", str(s->status_message));
    json_object_set_new(j, "status", st);
    json_object_set_new(j, "flags", json_integer(s->flags));
    json_object_set_new(j, "resource", resource(s->resource));
    json_object_set_new(j, "scope", scope(s->scope));
    return j;
}

json_t *cn_render_log(const struct cn_log *l)
{
    json_t *j = json_object();
    json_object_set_new(j, "timeUnixNano", u64(l->time_ns));
    json_object_set_new(j, "observedTimeUnixNano", u64(l->observed_ns));
    json_object_set_new(j, "severityNumber", json_integer(l->severity_number));
    json_object_set_new(j, "severityText", str(l->severity_text));
    json_object_set_new(j, "body", cn_render_value(&l->body));
    json_object_set_new(j, "attributes", cn_render_attrs(&l->attrs));
    json_object_set_new(j, "droppedAttributesCount", json_integer(l->attrs.dropped));
    json_object_set_new(j, "flags", json_integer(l->flags));
    json_object_set_new(j, "traceId",
                        cn_id_is_zero(l->trace_id, 16) ? json_string("") : hex(l->trace_id, 16));
    json_object_set_new(j, "spanId",
                        cn_id_is_zero(l->span_id, 8) ? json_string("") : hex(l->span_id, 8));
    json_object_set_new(j, "eventName", str(l->event_name));
    json_object_set_new(j, "resource", resource(l->resource));
    json_object_set_new(j, "scope", scope(l->scope));
    return j;
}
