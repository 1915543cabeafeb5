/* Fuzzes the OTLP JSON decoder: the input is decoded as an ExportTraceServiceRequest and as an
 * ExportLogsServiceRequest under small limits. Properties: the result is 0, CN_ESYNTAX or
 * CN_ENOMEM with a printable message; a decoded batch keeps the limits and the validation
 * rules; the canonical JSON kept for an array or kvlist decodes again to the same text; the
 * partial-success response is valid JSON. */
#include "telemetry/otlp-json.h"

#include <jansson.h>

static const struct cn_tel_limits lim = {
    .max_attrs = 8, .max_attr_value_bytes = 64, .max_events = 4, .max_links = 4};

static volatile unsigned sink;

static void check(int ok)
{
    if (!ok)
        __builtin_trap();
}

static void touch(struct cn_slice s)
{
    check(s.ptr != NULL || s.len == 0);
    for (size_t i = 0; i < s.len; i++)
        sink += (unsigned char)s.ptr[i];
}

static void check_err(int rc, const char *err)
{
    check(rc == 0 || rc == CN_ESYNTAX || rc == CN_ENOMEM);
    check(strlen(err) < 256);
    for (const char *p = err; *p; p++)
        check(*p >= 0x20 && *p <= 0x7e);
    check(rc != 0 || err[0] == '\0');
    check(rc == 0 || err[0] != '\0');
}

/* The canonical text of an array or kvlist, put back as a log body, comes out the same. */
static void round_trip(const struct cn_val *v)
{
    static const char head[] = "{\"resourceLogs\":[{\"scopeLogs\":[{\"logRecords\":[{\"body\":";
    static const char tail[] = "}]}]}]}";
    struct cn_tel_batch b;
    char err[256];
    size_t n = strlen(head) + v->u.s.len + strlen(tail);
    char *doc = malloc(n);
    if (!doc)
        return;
    memcpy(doc, head, strlen(head));
    memcpy(doc + strlen(head), v->u.s.ptr, v->u.s.len);
    memcpy(doc + strlen(head) + v->u.s.len, tail, strlen(tail));
    cn_tel_batch_init(&b, 64 << 20);
    int rc = cn_otlp_json_decode_logs(&b, doc, n, NULL, err, sizeof(err));
    check(rc == 0 && b.num_logs == 1);
    check(b.logs[0].body.type == v->type);
    check(cn_slice_eq(b.logs[0].body.u.s, v->u.s));
    cn_tel_batch_release(&b);
    free(doc);
}

static void check_kvs(const struct cn_kvs *kvs)
{
    check(kvs->num <= lim.max_attrs);
    check(kvs->num == 0 || kvs->items != NULL);
    for (uint32_t i = 0; i < kvs->num; i++) {
        const struct cn_val *v = &kvs->items[i].val;
        touch(kvs->items[i].key);
        check(v->type <= CN_VAL_KVLIST);
        if (v->type == CN_VAL_STR || v->type == CN_VAL_BYTES) {
            touch(v->u.s);
            check(v->u.s.len <= lim.max_attr_value_bytes);
        } else if (v->type == CN_VAL_ARRAY || v->type == CN_VAL_KVLIST) {
            touch(v->u.s);
            round_trip(v);
        }
    }
}

static void check_resource(const struct cn_resource *r)
{
    check(r != NULL);
    check(r->service.len > 0);
    touch(r->service);
    touch(r->schema_url);
    check_kvs(&r->attrs);
}

static void check_scope(const struct cn_scope *s)
{
    check(s != NULL);
    touch(s->name);
    touch(s->version);
    check_kvs(&s->attrs);
}

static void response(const struct cn_tel_batch *b, int logs)
{
    struct cn_buf out;
    cn_buf_init(&out, 4096);
    int rc = logs ? cn_otlp_json_encode_logs_response(&out, b->rejected, b->reject_msg)
                  : cn_otlp_json_encode_trace_response(&out, b->rejected, b->reject_msg);
    check(rc == 0);
    json_error_t je;
    json_t *j = json_loadb(out.ptr, out.len, 0, &je);
    check(j != NULL);
    json_decref(j);
    cn_buf_release(&out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct cn_tel_batch b;
    char err[256];

    cn_tel_batch_init(&b, 8 << 20);
    int rc = cn_otlp_json_decode_traces(&b, (const char *)data, size, &lim, err, sizeof(err));
    check_err(rc, err);
    check(rc == 0 || (b.num_spans == 0 && b.spans == NULL && b.rejected == 0));
    check((b.num_spans == 0) == (b.spans == NULL));
    for (size_t i = 0; i < b.num_spans; i++) {
        const struct cn_span *s = &b.spans[i];
        check(!cn_id_is_zero(s->trace_id, 16) && !cn_id_is_zero(s->span_id, 8));
        check(s->kind <= CN_KIND_CONSUMER && s->status_code <= CN_STATUS_ERROR);
        check(s->end_ns >= s->start_ns);
        check(s->num_events <= lim.max_events && s->num_links <= lim.max_links);
        touch(s->name);
        touch(s->trace_state);
        touch(s->status_message);
        check_kvs(&s->attrs);
        for (uint32_t e = 0; e < s->num_events; e++) {
            touch(s->events[e].name);
            check_kvs(&s->events[e].attrs);
        }
        for (uint32_t l = 0; l < s->num_links; l++) {
            touch(s->links[l].trace_state);
            check_kvs(&s->links[l].attrs);
        }
        check_resource(s->resource);
        check_scope(s->scope);
    }
    check(b.num_logs == 0);
    response(&b, 0);
    cn_tel_batch_release(&b);

    cn_tel_batch_init(&b, 8 << 20);
    rc = cn_otlp_json_decode_logs(&b, (const char *)data, size, &lim, err, sizeof(err));
    check_err(rc, err);
    check(rc == 0 || (b.num_logs == 0 && b.logs == NULL && b.rejected == 0));
    for (size_t i = 0; i < b.num_logs; i++) {
        const struct cn_log *l = &b.logs[i];
        check(l->severity_number <= 24);
        touch(l->severity_text);
        touch(l->event_name);
        if (l->body.type == CN_VAL_STR || l->body.type == CN_VAL_BYTES)
            touch(l->body.u.s);
        else if (l->body.type == CN_VAL_ARRAY || l->body.type == CN_VAL_KVLIST)
            round_trip(&l->body);
        check_kvs(&l->attrs);
        check_resource(l->resource);
        check_scope(l->scope);
    }
    check(b.num_spans == 0);
    response(&b, 1);
    cn_tel_batch_release(&b);
    return 0;
}
