/* The telemetry data model shared by the decoders (OTLP protobuf, OTLP JSON, Zipkin) and the
 * store: a decoded batch of spans and log records. Strings are slices: into the request body
 * when the decoder can point there (protobuf), otherwise into the batch's arena. A batch and
 * everything it points to lives until cn_tel_batch_release. */
#ifndef CN_TELEMETRY_MODEL_H
#define CN_TELEMETRY_MODEL_H

#include "base/arena.h"

enum cn_val_type {
    CN_VAL_EMPTY = 0,
    CN_VAL_STR,
    CN_VAL_BOOL,
    CN_VAL_INT,
    CN_VAL_DOUBLE,
    CN_VAL_BYTES,  /* s holds the raw bytes */
    CN_VAL_ARRAY,  /* s holds the OTLP JSON form: {"arrayValue":{"values":[...]}} */
    CN_VAL_KVLIST, /* s holds the OTLP JSON form: {"kvlistValue":{"values":[...]}} */
};

/* An OTLP AnyValue. Arrays and key-value lists keep their OTLP JSON text so they round-trip
 * without a tree of their own. */
struct cn_val {
    uint8_t type; /* cn_val_type */
    union {
        struct cn_slice s;
        int64_t i;
        double d;
        int b;
    } u;
};

struct cn_kv {
    struct cn_slice key;
    struct cn_val val;
};

struct cn_kvs {
    struct cn_kv *items;
    uint32_t num;
    uint32_t dropped; /* dropped by the sender (dropped_attributes_count) plus by our limits */
};

struct cn_resource {
    struct cn_kvs attrs;
    struct cn_slice service; /* value of service.name; "unknown_service" when absent */
    struct cn_slice schema_url;
};

struct cn_scope {
    struct cn_slice name;
    struct cn_slice version;
    struct cn_kvs attrs;
};

struct cn_event {
    uint64_t time_ns;
    struct cn_slice name;
    struct cn_kvs attrs;
};

struct cn_link {
    uint8_t trace_id[16];
    uint8_t span_id[8];
    struct cn_slice trace_state;
    struct cn_kvs attrs;
    uint32_t flags;
};

/* OTLP SpanKind and StatusCode numbers. */
enum cn_span_kind {
    CN_KIND_UNSPECIFIED = 0,
    CN_KIND_INTERNAL = 1,
    CN_KIND_SERVER = 2,
    CN_KIND_CLIENT = 3,
    CN_KIND_PRODUCER = 4,
    CN_KIND_CONSUMER = 5,
};
enum cn_status_code { CN_STATUS_UNSET = 0, CN_STATUS_OK = 1, CN_STATUS_ERROR = 2 };

struct cn_span {
    uint8_t trace_id[16];
    uint8_t span_id[8];
    uint8_t parent_id[8]; /* all zero for a root span */
    struct cn_slice trace_state;
    struct cn_slice name;
    uint8_t kind;        /* cn_span_kind */
    uint8_t status_code; /* cn_status_code */
    struct cn_slice status_message;
    uint32_t flags;
    uint64_t start_ns;
    uint64_t end_ns;
    struct cn_kvs attrs;
    struct cn_event *events;
    uint32_t num_events;
    uint32_t dropped_events;
    struct cn_link *links;
    uint32_t num_links;
    uint32_t dropped_links;
    const struct cn_resource *resource;
    const struct cn_scope *scope;
};

struct cn_log {
    uint64_t time_ns;
    uint64_t observed_ns;
    uint8_t severity_number; /* 0..24 */
    struct cn_slice severity_text;
    struct cn_val body;
    struct cn_kvs attrs;
    uint32_t flags;
    uint8_t trace_id[16]; /* all zero when the record has no trace */
    uint8_t span_id[8];
    struct cn_slice event_name;
    const struct cn_resource *resource;
    const struct cn_scope *scope;
};

/* Limits applied while decoding. What passes a limit is cut, counted in the batch's
 * truncation counters, and reported; never dropped in silence. */
struct cn_tel_limits {
    uint32_t max_attrs;            /* attributes per span, event, link, log, resource */
    uint32_t max_attr_value_bytes; /* longer string/bytes values are cut to this */
    uint32_t max_events;           /* events per span */
    uint32_t max_links;            /* links per span */
};

struct cn_tel_batch {
    struct cn_arena arena;
    struct cn_span *spans;
    size_t num_spans;
    struct cn_log *logs;
    size_t num_logs;
    /* Records refused (invalid IDs, ...): reported as partial success. */
    uint64_t rejected;
    char reject_msg[256]; /* the first reason, "" when none */
    /* Truncations applied under cn_tel_limits. */
    uint64_t truncated_attrs;
    uint64_t truncated_values;
    uint64_t truncated_events;
    uint64_t truncated_links;
};

/* arena_max bounds the memory of the decoded batch (besides the body it points into). */
void cn_tel_batch_init(struct cn_tel_batch *b, size_t arena_max);
void cn_tel_batch_release(struct cn_tel_batch *b);
/* Records a refused record with its reason (the first reason is kept). */
void cn_tel_batch_reject(struct cn_tel_batch *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Hex helpers for IDs: lowercase hex of n bytes into dst (2n + 1 bytes). */
void cn_hex_encode(char *dst, const uint8_t *src, size_t n);
/* Parses exactly 2n hex digits into dst. Returns 0 or CN_ESYNTAX. */
int cn_hex_decode(uint8_t *dst, size_t n, struct cn_slice hex);
/* 1 when all n bytes are zero. Inline: called per span on the ingest path, with n 8 or 16. */
static inline int cn_id_is_zero(const uint8_t *id, size_t n)
{
    uint8_t acc = 0;
    for (size_t i = 0; i < n; i++)
        acc |= id[i];
    return acc == 0;
}

#endif
