/* Fuzzes the OTLP protobuf decoders: each input is decoded as an ExportTraceServiceRequest
 * and as an ExportLogsServiceRequest, each time without limits and with small ones, under a
 * 4 MiB arena budget. Properties:
 * - limits never change the outcome: same status, same records accepted and refused;
 * - a failure leaves no records and says why;
 * - zero copy: strings and bytes point into the input, and kept items respect the limits;
 * - the JSON text of array and kvlist values parses (and is valid UTF-8, as jansson checks);
 * - the partial-success response encodes. */
#include <jansson.h>

#include "telemetry/otlp-pb.h"

#define BUDGET (4u << 20)

static const struct cn_tel_limits small = {
    .max_attrs = 2, .max_attr_value_bytes = 5, .max_events = 1, .max_links = 1};

static const uint8_t *in_p;
static size_t in_len;

static void check_in_input(struct cn_slice s)
{
    if (s.len == 0)
        return;
    const uint8_t *p = (const uint8_t *)s.ptr;
    if (p < in_p || p + s.len > in_p + in_len)
        __builtin_trap();
}

static void check_val(const struct cn_val *v, const struct cn_tel_limits *lim)
{
    switch (v->type) {
    case CN_VAL_STR:
    case CN_VAL_BYTES:
        check_in_input(v->u.s);
        if (lim && v->u.s.len > lim->max_attr_value_bytes)
            __builtin_trap();
        break;
    case CN_VAL_ARRAY:
    case CN_VAL_KVLIST: {
        json_error_t e;
        json_t *j = json_loadb(v->u.s.ptr, v->u.s.len, JSON_ALLOW_NUL, &e);
        if (!j || !json_is_object(j))
            __builtin_trap();
        json_decref(j);
        break;
    }
    default:
        if (v->type > CN_VAL_KVLIST)
            __builtin_trap();
    }
}

static void check_kvs(const struct cn_kvs *kvs, const struct cn_tel_limits *lim)
{
    if (lim && kvs->num > lim->max_attrs)
        __builtin_trap();
    for (uint32_t i = 0; i < kvs->num; i++) {
        check_in_input(kvs->items[i].key);
        check_val(&kvs->items[i].val, lim);
    }
}

static void check_spans(const struct cn_tel_batch *b, const struct cn_tel_limits *lim)
{
    for (size_t i = 0; i < b->num_spans; i++) {
        const struct cn_span *s = &b->spans[i];
        if (cn_id_is_zero(s->trace_id, 16) || cn_id_is_zero(s->span_id, 8) ||
            s->kind > CN_KIND_CONSUMER || s->status_code > CN_STATUS_ERROR ||
            s->end_ns < s->start_ns || !s->resource || !s->scope)
            __builtin_trap();
        check_in_input(s->name);
        check_in_input(s->trace_state);
        check_in_input(s->status_message);
        check_kvs(&s->attrs, lim);
        check_kvs(&s->resource->attrs, lim);
        check_kvs(&s->scope->attrs, lim);
        if (lim && (s->num_events > lim->max_events || s->num_links > lim->max_links))
            __builtin_trap();
        for (uint32_t k = 0; k < s->num_events; k++) {
            check_in_input(s->events[k].name);
            check_kvs(&s->events[k].attrs, lim);
        }
        for (uint32_t k = 0; k < s->num_links; k++)
            check_kvs(&s->links[k].attrs, lim);
    }
}

static void check_logs(const struct cn_tel_batch *b, const struct cn_tel_limits *lim)
{
    for (size_t i = 0; i < b->num_logs; i++) {
        const struct cn_log *l = &b->logs[i];
        if (l->severity_number > 24 || !l->resource || !l->scope)
            __builtin_trap();
        check_in_input(l->severity_text);
        check_in_input(l->event_name);
        check_val(&l->body, NULL); /* bodies are not cut */
        check_kvs(&l->attrs, lim);
    }
}

typedef int (*decode_fn)(struct cn_tel_batch *b, const uint8_t *buf, size_t len,
                         const struct cn_tel_limits *lim, char *err, size_t err_len);

static void run(decode_fn decode, int traces, const uint8_t *data, size_t size)
{
    struct cn_tel_batch full, cut;
    char err_full[256], err_cut[256];
    cn_tel_batch_init(&full, BUDGET);
    cn_tel_batch_init(&cut, BUDGET);
    int rc_full = decode(&full, data, size, NULL, err_full, sizeof(err_full));
    int rc_cut = decode(&cut, data, size, &small, err_cut, sizeof(err_cut));

    if (rc_full != 0 && rc_full != CN_ESYNTAX && rc_full != CN_ENOMEM)
        __builtin_trap();
    /* The budget may run out without limits only. */
    if (rc_full != CN_ENOMEM && rc_cut != rc_full)
        __builtin_trap();
    if (rc_full == CN_ESYNTAX && strcmp(err_full, err_cut) != 0)
        __builtin_trap();
    if ((rc_full && !err_full[0]) || (rc_cut && !err_cut[0]))
        __builtin_trap();
    if (rc_full && (full.num_spans || full.num_logs))
        __builtin_trap();
    if (rc_full == 0 && rc_cut == 0) {
        if (full.num_spans != cut.num_spans || full.num_logs != cut.num_logs ||
            full.rejected != cut.rejected || strcmp(full.reject_msg, cut.reject_msg) != 0)
            __builtin_trap();
        if (full.truncated_attrs || full.truncated_values || full.truncated_events ||
            full.truncated_links)
            __builtin_trap();
        if (traces) {
            check_spans(&full, NULL);
            check_spans(&cut, &small);
        } else {
            check_logs(&full, NULL);
            check_logs(&cut, &small);
        }
        struct cn_buf out;
        cn_buf_init(&out, 1 << 16);
        int rc = traces ? cn_otlp_pb_encode_trace_response(&out, full.rejected, full.reject_msg)
                        : cn_otlp_pb_encode_logs_response(&out, full.rejected, full.reject_msg);
        if (rc != 0 || (full.rejected && out.len == 0))
            __builtin_trap();
        cn_buf_release(&out);
    }
    cn_tel_batch_release(&full);
    cn_tel_batch_release(&cut);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    in_p = data;
    in_len = size;
    run(cn_otlp_pb_decode_traces, 1, data, size);
    run(cn_otlp_pb_decode_logs, 0, data, size);
    return 0;
}
