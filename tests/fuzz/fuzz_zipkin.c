/* Fuzzes the Zipkin v2 JSON decoder under small limits. Properties: the result is 0,
 * CN_ESYNTAX or CN_ENOMEM with a printable message; a decoded batch keeps the limits and the
 * validation rules; spans of one service share its resource. */
#include "telemetry/zipkin.h"

static const struct cn_tel_limits lim = {
    .max_attrs = 6, .max_attr_value_bytes = 32, .max_events = 3, .max_links = 1};

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

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct cn_tel_batch b;
    char err[256];

    cn_tel_batch_init(&b, 8 << 20);
    int rc = cn_zipkin_decode(&b, (const char *)data, size, &lim, err, sizeof(err));
    check(rc == 0 || rc == CN_ESYNTAX || rc == CN_ENOMEM);
    for (const char *p = err; *p; p++)
        check(*p >= 0x20 && *p <= 0x7e);
    check((rc == 0) == (err[0] == '\0'));
    check(rc == 0 || (b.num_spans == 0 && b.spans == NULL && b.rejected == 0));
    check((b.num_spans == 0) == (b.spans == NULL));
    check(b.num_logs == 0);
    for (size_t i = 0; i < b.num_spans; i++) {
        const struct cn_span *s = &b.spans[i];
        check(!cn_id_is_zero(s->trace_id, 16) && !cn_id_is_zero(s->span_id, 8));
        check(s->kind >= CN_KIND_INTERNAL && s->kind <= CN_KIND_CONSUMER);
        check(s->status_code <= CN_STATUS_ERROR);
        check(s->start_ns > 0 && s->end_ns >= s->start_ns);
        check(s->start_ns % 1000 == 0 && s->end_ns % 1000 == 0);
        check(s->num_links == 0 && s->links == NULL);
        check(s->num_events <= lim.max_events);
        check(s->attrs.num <= lim.max_attrs);
        touch(s->name);
        touch(s->trace_state);
        touch(s->status_message);
        for (uint32_t a = 0; a < s->attrs.num; a++) {
            const struct cn_kv *kv = &s->attrs.items[a];
            touch(kv->key);
            if (kv->val.type == CN_VAL_STR) {
                touch(kv->val.u.s);
                check(kv->val.u.s.len <= lim.max_attr_value_bytes);
            } else {
                check(kv->val.type == CN_VAL_INT || kv->val.type == CN_VAL_BOOL);
            }
        }
        for (uint32_t e = 0; e < s->num_events; e++)
            touch(s->events[e].name);
        const struct cn_resource *r = s->resource;
        check(r != NULL && r->service.len > 0);
        touch(r->service);
        check(r->attrs.num <= 1);
        check(r->attrs.num == 0 || (r->attrs.items[0].val.u.s.len <= r->service.len &&
                                    memcmp(r->attrs.items[0].val.u.s.ptr, r->service.ptr,
                                           r->attrs.items[0].val.u.s.len) == 0));
        check(s->scope == b.spans[0].scope && s->scope->name.len == 0);
        /* Resources are shared by service: same service text, same resource. */
        for (size_t j = 0; j < i; j++)
            if (b.spans[j].resource->attrs.num == r->attrs.num &&
                cn_slice_eq(b.spans[j].resource->service, r->service))
                check(b.spans[j].resource == r);
    }
    cn_tel_batch_release(&b);
    return 0;
}
