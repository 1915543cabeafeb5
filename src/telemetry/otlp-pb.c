/* OTLP/protobuf decoding into the telemetry model, and the two response encoders.
 *
 * Every message is read with next_field(), which checks tags, lengths and the wire types of
 * a message's known fields against its table below, skips unknown fields and returns the
 * known ones; the switch of each decoder then says what a field becomes. Repeated fields
 * that become arrays are counted first: the request is walked once to count its records
 * (one allocation for the span or log array), and a message with attributes, events or
 * links is read twice, once to count them (which also checks its framing) and once to fill
 * arrays allocated at their final size. Nothing is allocated per field.
 *
 * Array and kvlist values are rendered as OTLP JSON in two passes over the protobuf bytes
 * with the same code: one measures (and checks the bytes), the other writes into an arena
 * block of exactly that size. */
#include "telemetry/otlp-pb.h"

#include "base/base64.h"
#include "base/utf8.h"

#include <math.h>
#include <stdarg.h>

enum { WT_VARINT = 0, WT_I64 = 1, WT_LEN = 2, WT_SGROUP = 3, WT_EGROUP = 4, WT_I32 = 5 };

/* Wire types 3, 4 (groups), 6 and 7 (undefined) as a bit set. */
#define WT_BAD_SET 0xD8u

#define MAX_FIELD_NUMBER 0x1fffffffu
/* AnyValue levels: an attribute's value is level 1, the items of an array in it level 2. */
#define MAX_VALUE_DEPTH 16
/* Record path (resource_*, scope_*, record, event/link, attributes, value) plus two
 * elements per nested AnyValue level. */
#define MAX_PATH (8 + 2 * MAX_VALUE_DEPTH)
#define NO_INDEX SIZE_MAX

/* A message's known fields, indexed by field number; name NULL for unknown numbers. */
struct field_info {
    const char *name;
    uint8_t wire;
};

/* collector/trace/v1 and trace/v1 */
static const struct field_info trace_request_f[] = {[1] = {"resource_spans", WT_LEN}};
static const struct field_info resource_spans_f[] = {
    [1] = {"resource", WT_LEN}, [2] = {"scope_spans", WT_LEN}, [3] = {"schema_url", WT_LEN}};
static const struct field_info scope_spans_f[] = {
    [1] = {"scope", WT_LEN}, [2] = {"spans", WT_LEN}, [3] = {"schema_url", WT_LEN}};
static const struct field_info span_f[] = {
    [1] = {"trace_id", WT_LEN},
    [2] = {"span_id", WT_LEN},
    [3] = {"trace_state", WT_LEN},
    [4] = {"parent_span_id", WT_LEN},
    [5] = {"name", WT_LEN},
    [6] = {"kind", WT_VARINT},
    [7] = {"start_time_unix_nano", WT_I64},
    [8] = {"end_time_unix_nano", WT_I64},
    [9] = {"attributes", WT_LEN},
    [10] = {"dropped_attributes_count", WT_VARINT},
    [11] = {"events", WT_LEN},
    [12] = {"dropped_events_count", WT_VARINT},
    [13] = {"links", WT_LEN},
    [14] = {"dropped_links_count", WT_VARINT},
    [15] = {"status", WT_LEN},
    [16] = {"flags", WT_I32},
};
static const struct field_info event_f[] = {
    [1] = {"time_unix_nano", WT_I64},
    [2] = {"name", WT_LEN},
    [3] = {"attributes", WT_LEN},
    [4] = {"dropped_attributes_count", WT_VARINT},
};
static const struct field_info link_f[] = {
    [1] = {"trace_id", WT_LEN},
    [2] = {"span_id", WT_LEN},
    [3] = {"trace_state", WT_LEN},
    [4] = {"attributes", WT_LEN},
    [5] = {"dropped_attributes_count", WT_VARINT},
    [6] = {"flags", WT_I32},
};
static const struct field_info status_f[] = {[2] = {"message", WT_LEN}, [3] = {"code", WT_VARINT}};

/* collector/logs/v1 and logs/v1 */
static const struct field_info logs_request_f[] = {[1] = {"resource_logs", WT_LEN}};
static const struct field_info resource_logs_f[] = {
    [1] = {"resource", WT_LEN}, [2] = {"scope_logs", WT_LEN}, [3] = {"schema_url", WT_LEN}};
static const struct field_info scope_logs_f[] = {
    [1] = {"scope", WT_LEN}, [2] = {"log_records", WT_LEN}, [3] = {"schema_url", WT_LEN}};
static const struct field_info log_f[] = {
    [1] = {"time_unix_nano", WT_I64}, [2] = {"severity_number", WT_VARINT},
    [3] = {"severity_text", WT_LEN},  [5] = {"body", WT_LEN},
    [6] = {"attributes", WT_LEN},     [7] = {"dropped_attributes_count", WT_VARINT},
    [8] = {"flags", WT_I32},          [9] = {"trace_id", WT_LEN},
    [10] = {"span_id", WT_LEN},       [11] = {"observed_time_unix_nano", WT_I64},
    [12] = {"event_name", WT_LEN},
};

/* resource/v1 and common/v1. The newer key_strindex and string_value_strindex (profiles
 * dictionaries) are not used by traces or logs and are skipped as unknown. */
static const struct field_info resource_f[] = {
    [1] = {"attributes", WT_LEN}, [2] = {"dropped_attributes_count", WT_VARINT}};
static const struct field_info scope_f[] = {
    [1] = {"name", WT_LEN},
    [2] = {"version", WT_LEN},
    [3] = {"attributes", WT_LEN},
    [4] = {"dropped_attributes_count", WT_VARINT},
};
static const struct field_info kv_f[] = {[1] = {"key", WT_LEN}, [2] = {"value", WT_LEN}};
static const struct field_info anyvalue_f[] = {
    [1] = {"string_value", WT_LEN}, [2] = {"bool_value", WT_VARINT}, [3] = {"int_value", WT_VARINT},
    [4] = {"double_value", WT_I64}, [5] = {"array_value", WT_LEN},   [6] = {"kvlist_value", WT_LEN},
    [7] = {"bytes_value", WT_LEN},
};
/* ArrayValue and KeyValueList alike. */
static const struct field_info values_f[] = {[1] = {"values", WT_LEN}};

/* AnyValue field numbers, used by both the model mapping and the JSON rendering. */
enum {
    AV_STRING = 1,
    AV_BOOL = 2,
    AV_INT = 3,
    AV_DOUBLE = 4,
    AV_ARRAY = 5,
    AV_KVLIST = 6,
    AV_BYTES = 7
};

/* One field as next_field() returns it: v for VARINT, I64 and I32, p/len for LEN. */
struct pb_field {
    uint32_t num;
    uint64_t v;
    const uint8_t *p;
    size_t len;
};

struct pb_reader {
    const uint8_t *p;
    const uint8_t *end;
};

struct path_elem {
    const char *name;
    size_t idx; /* NO_INDEX for a singular field */
};

struct dec;
typedef int (*record_cb)(struct dec *d, const struct cn_resource *res, const struct cn_scope *scope,
                         const uint8_t *p, size_t len, size_t idx);

/* The shape shared by both requests: request → resource_* → scope_* → records, the records
 * being field 2 of the scope level. */
struct shape {
    const struct field_info *req, *res, *scope;
    uint32_t num_req, num_res, num_scope;
    record_cb record;
};

/* Decoder state. path[0..depth) names the message being read, for error messages; it is
 * maintained on every push/pop but only formatted on failure or rejection. Limits of 0 are
 * turned into the type's maximum. */
struct dec {
    struct cn_tel_batch *b;
    uint32_t max_attrs;
    uint32_t max_events;
    uint32_t max_links;
    size_t max_value;
    size_t cap; /* records counted in the first walk */
    /* A span's attributes are decoded here, then copied into the arena at their final
     * count, so a span is read once instead of counted first. Grows by doubling, never past
     * what the arena could still hold; freed when the decode ends. */
    struct cn_kv *kv_buf;
    uint32_t kv_cap;
    char *err;
    size_t err_len;
    unsigned depth;
    struct path_elem path[MAX_PATH];
};

/* The batch's truncation counters, saved before a record that may be refused or an item
 * that is dropped whole, so neither adds to them. */
struct trunc {
    uint64_t attrs, values, events, links;
};

static struct trunc trunc_save(const struct cn_tel_batch *b)
{
    return (struct trunc){b->truncated_attrs, b->truncated_values, b->truncated_events,
                          b->truncated_links};
}

static void trunc_restore(struct cn_tel_batch *b, struct trunc t)
{
    b->truncated_attrs = t.attrs;
    b->truncated_values = t.values;
    b->truncated_events = t.events;
    b->truncated_links = t.links;
}

static inline uint32_t sat_add32(uint32_t a, uint64_t b)
{
    uint64_t s = a + b;
    return s > UINT32_MAX ? UINT32_MAX : (uint32_t)s;
}

static inline struct cn_slice field_slice(const struct pb_field *f)
{
    return (struct cn_slice){(const char *)f->p, f->len};
}

static inline uint64_t load_le64(const uint8_t *p)
{
    uint64_t v;
    memcpy(&v, p, 8);
#if __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    v = __builtin_bswap64(v);
#endif
    return v;
}

static inline uint32_t load_le32(const uint8_t *p)
{
    uint32_t v;
    memcpy(&v, p, 4);
#if __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    v = __builtin_bswap32(v);
#endif
    return v;
}

/* ---- paths and errors ---- */

static inline void push(struct dec *d, const char *name, size_t idx)
{
    CN_BUG_ON(d->depth >= MAX_PATH);
    d->path[d->depth++] = (struct path_elem){name, idx};
}

static inline void pop(struct dec *d)
{
    CN_ASSERT(d->depth > 0);
    d->depth--;
}

/* snprintf that appends at *n and keeps *n within cap - 1. */
__attribute__((format(printf, 4, 5))) static void appendf(char *dst, size_t cap, size_t *n,
                                                          const char *fmt, ...)
{
    if (*n + 1 >= cap)
        return;
    va_list ap;
    va_start(ap, fmt);
    int w = vsnprintf(dst + *n, cap - *n, fmt, ap);
    va_end(ap);
    if (w > 0)
        *n = CN_MIN(*n + (size_t)w, cap - 1);
}

/* Writes "a[0].b.c[2]: " (nothing at the top level) into dst; returns the length. */
static size_t path_prefix(const struct dec *d, char *dst, size_t cap)
{
    size_t n = 0;
    dst[0] = '\0';
    for (unsigned i = 0; i < d->depth; i++) {
        appendf(dst, cap, &n, "%s%s", i ? "." : "", d->path[i].name);
        if (d->path[i].idx != NO_INDEX)
            appendf(dst, cap, &n, "[%zu]", d->path[i].idx);
    }
    if (n)
        appendf(dst, cap, &n, ": ");
    return n;
}

__attribute__((cold, format(printf, 2, 3))) static int fail(struct dec *d, const char *fmt, ...)
{
    if (d->err && d->err_len) {
        size_t n = path_prefix(d, d->err, d->err_len);
        if (n + 1 < d->err_len) {
            va_list ap;
            va_start(ap, fmt);
            vsnprintf(d->err + n, d->err_len - n, fmt, ap);
            va_end(ap);
        }
    }
    return CN_ESYNTAX;
}

/* "truncated field 5 (name)", "bad varint in field 99". */
__attribute__((cold)) static int fail_field(struct dec *d, const char *what, uint64_t num,
                                            const char *name)
{
    return fail(d, "%s field %llu%s%s%s", what, (unsigned long long)num, name ? " (" : "",
                name ? name : "", name ? ")" : "");
}

__attribute__((cold)) static int nomem(struct dec *d)
{
    if (d->err && d->err_len)
        snprintf(d->err, d->err_len, "batch too large for the decode budget");
    return CN_ENOMEM;
}

/* Refuses the current record: counts it and keeps "<path>: <reason>" when it is the first. */
__attribute__((cold, format(printf, 2, 3))) static void reject(struct dec *d, const char *fmt, ...)
{
    char msg[sizeof(d->b->reject_msg)] = "";
    if (d->b->rejected == 0) {
        size_t n = path_prefix(d, msg, sizeof(msg));
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(msg + n, sizeof(msg) - n, fmt, ap);
        va_end(ap);
    }
    cn_tel_batch_reject(d->b, "%s", msg);
}

/* ---- wire format ---- */

/* Reads a varint at *pp. Returns 0, 1 when the input ends inside it, 2 when it is longer
 * than 10 bytes or does not fit 64 bits. */
static int get_varint_slow(const uint8_t **pp, const uint8_t *end, uint64_t *out)
{
    const uint8_t *p = *pp;
    uint64_t v = 0;
    for (unsigned shift = 0; shift <= 63; shift += 7) {
        if (p == end)
            return 1;
        uint8_t c = *p++;
        if (shift == 63 && c > 1)
            return 2;
        v |= (uint64_t)(c & 0x7f) << shift;
        if (c < 0x80) {
            *out = v;
            *pp = p;
            return 0;
        }
    }
    return 2;
}

static inline int get_varint(const uint8_t **pp, const uint8_t *end, uint64_t *out)
{
    const uint8_t *p = *pp;
    if (CN_LIKELY(p < end && *p < 0x80)) {
        *out = *p;
        *pp = p + 1;
        return 0;
    }
    if (p + 1 < end && p[1] < 0x80) {
        *out = (uint64_t)(p[0] & 0x7f) | (uint64_t)p[1] << 7;
        *pp = p + 2;
        return 0;
    }
    return get_varint_slow(pp, end, out);
}

/* next_field() in general: any tag and length size, unknown fields, and every error. */
__attribute__((noinline)) static int next_field_slow(struct dec *d, struct pb_reader *r,
                                                     const struct field_info *tab, uint32_t num_tab,
                                                     struct pb_field *f)
{
    for (;;) {
        const uint8_t *p = r->p, *end = r->end;
        if (p == end)
            return 0;
        uint64_t tag;
        int vr = get_varint(&p, end, &tag);
        if (CN_UNLIKELY(vr))
            return fail(d, vr == 1 ? "truncated field tag" : "bad varint in a field tag");
        uint64_t num = tag >> 3;
        unsigned wire = (unsigned)(tag & 7);
        if (CN_UNLIKELY(num == 0 || num > MAX_FIELD_NUMBER))
            return fail(d, "invalid field number %llu", (unsigned long long)num);
        if (CN_UNLIKELY((WT_BAD_SET >> wire) & 1)) {
            if (wire == WT_SGROUP || wire == WT_EGROUP)
                return fail(d, "field %llu: group wire type %u is not supported",
                            (unsigned long long)num, wire);
            return fail(d, "field %llu: invalid wire type %u", (unsigned long long)num, wire);
        }
        const char *name = num < num_tab ? tab[num].name : NULL;
        if (CN_UNLIKELY(name && wire != tab[num].wire))
            return fail(d, "field %llu (%s): wire type %u, want %u", (unsigned long long)num, name,
                        wire, tab[num].wire);
        switch (wire) {
        case WT_VARINT:
            vr = get_varint(&p, end, &f->v);
            if (CN_UNLIKELY(vr))
                return fail_field(d, vr == 1 ? "truncated" : "bad varint in", num, name);
            break;
        case WT_I64:
            if (CN_UNLIKELY(end - p < 8))
                return fail_field(d, "truncated", num, name);
            f->v = load_le64(p);
            p += 8;
            break;
        case WT_LEN: {
            uint64_t n;
            vr = get_varint(&p, end, &n);
            if (CN_UNLIKELY(vr == 2))
                return fail_field(d, "bad varint in", num, name);
            if (CN_UNLIKELY(vr == 1 || n > (uint64_t)(end - p)))
                return fail_field(d, "truncated", num, name);
            f->p = p;
            f->len = (size_t)n;
            p += n;
            break;
        }
        default: /* WT_I32, the only one left */
            if (CN_UNLIKELY(end - p < 4))
                return fail_field(d, "truncated", num, name);
            f->v = load_le32(p);
            p += 4;
            break;
        }
        r->p = p;
        if (name) {
            f->num = (uint32_t)num;
            return 1;
        }
    }
}

/* Reads the next known field of a message into f, skipping unknown fields. Returns 1 with a
 * field, 0 at the end of the message, or CN_ESYNTAX with the error in d.
 *
 * The common case is handled inline, where the table is a constant of the call site: a
 * one-byte tag of a known field with its wire type, then a one-byte varint, a length under
 * 128 that fits, or a fixed-size value that fits; with len2 also a length of two bytes that
 * fits. The levels above the records pass len2 (a span or log record takes 128 bytes to 16
 * KiB); inside a record nearly every length is under 128. Anything else, errors included,
 * takes next_field_slow from the same position, so both read the same way. */
__attribute__((always_inline)) static inline int next_field(struct dec *d, struct pb_reader *r,
                                                            const struct field_info *tab,
                                                            uint32_t num_tab, struct pb_field *f,
                                                            int len2)
{
    const uint8_t *p = r->p, *end = r->end;
    if (p == end)
        return 0;
    if (CN_LIKELY(end - p >= 2 && p[0] < 0x80)) {
        unsigned num = p[0] >> 3, wire = p[0] & 7;
        /* tab[0] is never named, so field number 0 goes the slow way. */
        if (CN_LIKELY(num < num_tab && tab[num].name && tab[num].wire == wire)) {
            switch (wire) {
            case WT_LEN:
                if (CN_LIKELY(p[1] < 0x80 && p[1] <= end - p - 2)) {
                    f->p = p + 2;
                    f->len = p[1];
                    r->p = p + 2 + p[1];
                    f->num = num;
                    return 1;
                }
                if (len2 && p[1] >= 0x80 && end - p >= 3 && p[2] < 0x80) {
                    size_t n = (size_t)(p[1] & 0x7f) | (size_t)p[2] << 7;
                    if (n <= (size_t)(end - p - 3)) {
                        f->p = p + 3;
                        f->len = n;
                        r->p = p + 3 + n;
                        f->num = num;
                        return 1;
                    }
                }
                break;
            case WT_VARINT:
                if (CN_LIKELY(p[1] < 0x80)) {
                    f->v = p[1];
                    r->p = p + 2;
                    f->num = num;
                    return 1;
                }
                break;
            case WT_I64:
                if (CN_LIKELY(end - p >= 9)) {
                    f->v = load_le64(p + 1);
                    r->p = p + 9;
                    f->num = num;
                    return 1;
                }
                break;
            default: /* WT_I32 */
                if (CN_LIKELY(end - p >= 5)) {
                    f->v = load_le32(p + 1);
                    r->p = p + 5;
                    f->num = num;
                    return 1;
                }
                break;
            }
        }
    }
    return next_field_slow(d, r, tab, num_tab, f);
}

#define NEXT(d, r, tab, f) next_field((d), (r), (tab), CN_ARRAY_LEN(tab), (f), 0)

static inline struct pb_reader reader(const uint8_t *p, size_t len)
{
    return (struct pb_reader){p, p + len};
}

/* Counts each known field of a message into counts[num] (num_tab entries, zeroed by the
 * caller), checking the message's framing. */
static int count_fields(struct dec *d, const uint8_t *p, size_t len, const struct field_info *tab,
                        uint32_t num_tab, uint32_t *counts)
{
    struct pb_reader r = reader(p, len);
    struct pb_field f;
    int rc;
    while ((rc = next_field(d, &r, tab, num_tab, &f, 0)) > 0)
        counts[f.num] += counts[f.num] != UINT32_MAX;
    return rc;
}

static void *alloc_array(struct dec *d, size_t n, size_t size)
{
    if (n > SIZE_MAX / size)
        return NULL;
    return cn_arena_alloc(&d->b->arena, n * size);
}

/* ---- UTF-8 and JSON rendering ---- */

/* JSON output: measures while p is NULL, writes at p + n otherwise. String and bytes leaves
 * are cut to limit. */
struct jw {
    char *p;
    size_t n;
    size_t limit;
};

static inline void jw_put(struct jw *w, const void *s, size_t n)
{
    if (w->p && n)
        memcpy(w->p + w->n, s, n);
    w->n += n;
}

#define JW_LIT(w, s) jw_put((w), (s), sizeof(s) - 1)

/* A JSON string: quotes, escapes, U+FFFD (escaped) for bytes that are not UTF-8. */
static void jw_str(struct jw *w, const uint8_t *s, size_t len)
{
    w->n += cn_json_str(w->p ? w->p + w->n : NULL, s, len);
}

static void jw_base64(struct jw *w, const uint8_t *s, size_t len)
{
    if (w->p)
        cn_base64_encode(w->p + w->n, s, len);
    w->n += CN_BASE64_LEN(len);
}

/* The shortest of %.15g / %.17g that reads back as v; non-finite values as the OTLP JSON
 * strings. */
static size_t fmt_double(char *dst, size_t cap, double v)
{
    if (isnan(v))
        return (size_t)snprintf(dst, cap, "\"NaN\"");
    if (isinf(v))
        return (size_t)snprintf(dst, cap, v > 0 ? "\"Infinity\"" : "\"-Infinity\"");
    int n = snprintf(dst, cap, "%.15g", v);
    if (strtod(dst, NULL) != v)
        n = snprintf(dst, cap, "%.17g", v);
    return (size_t)n;
}

static int json_any(struct dec *d, struct jw *w, const uint8_t *p, size_t len, int depth);

/* The items of an ArrayValue (AnyValue each) or a KeyValueList (KeyValue each). */
static int json_list(struct dec *d, struct jw *w, const uint8_t *p, size_t len, int depth,
                     int kvlist);

/* One AnyValue member f (already read) at the given level. Truncations are counted while
 * writing only, so a value is counted once. */
static int json_member(struct dec *d, struct jw *w, const struct pb_field *f, int depth)
{
    char tmp[32];
    size_t n;
    switch (f->num) {
    case AV_STRING:
        n = cn_utf8_cut(f->p, f->len, w->limit);
        if (n < f->len && w->p)
            d->b->truncated_values++;
        JW_LIT(w, "{\"stringValue\":");
        jw_str(w, f->p, n);
        JW_LIT(w, "}");
        return 0;
    case AV_BOOL:
        if (f->v)
            JW_LIT(w, "{\"boolValue\":true}");
        else
            JW_LIT(w, "{\"boolValue\":false}");
        return 0;
    case AV_INT: {
        int64_t i = (int64_t)f->v;
        n = 0;
        if (i < 0)
            tmp[n++] = '-';
        n += cn_u64_to_dec(tmp + n, i < 0 ? 0 - f->v : f->v);
        JW_LIT(w, "{\"intValue\":\"");
        jw_put(w, tmp, n);
        JW_LIT(w, "\"}");
        return 0;
    }
    case AV_DOUBLE: {
        double v;
        memcpy(&v, &f->v, sizeof(v));
        n = fmt_double(tmp, sizeof(tmp), v);
        JW_LIT(w, "{\"doubleValue\":");
        jw_put(w, tmp, n);
        JW_LIT(w, "}");
        return 0;
    }
    case AV_ARRAY:
        return json_list(d, w, f->p, f->len, depth, 0);
    case AV_KVLIST:
        return json_list(d, w, f->p, f->len, depth, 1);
    default: /* AV_BYTES */
        n = CN_MIN(f->len, w->limit);
        if (n < f->len && w->p)
            d->b->truncated_values++;
        JW_LIT(w, "{\"bytesValue\":\"");
        jw_base64(w, f->p, n);
        JW_LIT(w, "\"}");
        return 0;
    }
}

/* An AnyValue message: its last member wins (oneof). Measuring checks and measures every
 * member once and keeps the size of the last; writing (on checked bytes) finds the last
 * member first and writes only that one. An empty AnyValue is {}. */
static int json_any(struct dec *d, struct jw *w, const uint8_t *p, size_t len, int depth)
{
    if (depth > MAX_VALUE_DEPTH)
        return fail(d, "nesting too deep (more than %d levels)", MAX_VALUE_DEPTH);
    struct pb_reader r = reader(p, len);
    struct pb_field f, last;
    int rc, have = 0;
    if (!w->p) {
        size_t base = w->n, last_n = 2;
        while ((rc = NEXT(d, &r, anyvalue_f, &f)) > 0) {
            if ((rc = json_member(d, w, &f, depth)) != 0)
                return rc;
            last_n = w->n - base;
            w->n = base;
        }
        w->n += last_n;
        return rc;
    }
    while ((rc = NEXT(d, &r, anyvalue_f, &f)) > 0) {
        last = f;
        have = 1;
    }
    if (rc < 0)
        return rc;
    if (!have) {
        JW_LIT(w, "{}");
        return 0;
    }
    return json_member(d, w, &last, depth);
}

/* A KeyValue as {"key":"k","value":{...}}; a missing value is {}. */
static int json_kv(struct dec *d, struct jw *w, const uint8_t *p, size_t len, int depth)
{
    struct pb_reader r = reader(p, len);
    struct pb_field f, key = {0}, val = {0};
    int rc, have_val = 0;
    size_t val_n = 2;
    while ((rc = NEXT(d, &r, kv_f, &f)) > 0) {
        if (f.num == 1) {
            key = f;
            continue;
        }
        val = f;
        have_val = 1;
        if (!w->p) {
            size_t base = w->n;
            push(d, "value", NO_INDEX);
            if ((rc = json_any(d, w, f.p, f.len, depth)) != 0)
                return rc;
            pop(d);
            val_n = w->n - base;
            w->n = base;
        }
    }
    if (rc < 0)
        return rc;
    JW_LIT(w, "{\"key\":");
    jw_str(w, key.p, key.len);
    JW_LIT(w, ",\"value\":");
    if (!w->p)
        w->n += val_n;
    else if (!have_val)
        JW_LIT(w, "{}");
    else if ((rc = json_any(d, w, val.p, val.len, depth)) != 0)
        return rc;
    JW_LIT(w, "}");
    return 0;
}

static int json_list(struct dec *d, struct jw *w, const uint8_t *p, size_t len, int depth,
                     int kvlist)
{
    struct pb_reader r = reader(p, len);
    struct pb_field f;
    int rc;
    size_t i = 0;
    if (kvlist)
        JW_LIT(w, "{\"kvlistValue\":{\"values\":[");
    else
        JW_LIT(w, "{\"arrayValue\":{\"values\":[");
    while ((rc = NEXT(d, &r, values_f, &f)) > 0) {
        if (i)
            JW_LIT(w, ",");
        push(d, kvlist ? "kvlist_value.values" : "array_value.values", i++);
        rc = kvlist ? json_kv(d, w, f.p, f.len, depth + 1) : json_any(d, w, f.p, f.len, depth + 1);
        if (rc)
            return rc;
        pop(d);
    }
    if (rc < 0)
        return rc;
    JW_LIT(w, "]}}");
    return 0;
}

/* ---- attributes and values ---- */

/* Decodes an AnyValue into val, the last member winning. Arrays and kvlists are always
 * checked; with keep their JSON text is rendered into the arena, string and bytes items in
 * them cut to limit and counted. A string or bytes val itself is left whole (see cut_value). */
static int decode_value(struct dec *d, struct cn_val *val, const uint8_t *p, size_t len,
                        size_t limit, int keep)
{
    struct pb_reader r = reader(p, len);
    struct pb_field f, nested = {0};
    size_t nested_n = 0;
    int rc;
    while ((rc = NEXT(d, &r, anyvalue_f, &f)) > 0) {
        switch (f.num) {
        case AV_STRING:
            val->type = CN_VAL_STR;
            val->u.s = field_slice(&f);
            break;
        case AV_BOOL:
            val->type = CN_VAL_BOOL;
            val->u.b = f.v != 0;
            break;
        case AV_INT:
            val->type = CN_VAL_INT;
            val->u.i = (int64_t)f.v;
            break;
        case AV_DOUBLE:
            val->type = CN_VAL_DOUBLE;
            memcpy(&val->u.d, &f.v, sizeof(val->u.d));
            break;
        case AV_ARRAY:
        case AV_KVLIST: {
            struct jw w = {NULL, 0, limit};
            if ((rc = json_member(d, &w, &f, 1)) != 0)
                return rc;
            val->type = f.num == AV_ARRAY ? CN_VAL_ARRAY : CN_VAL_KVLIST;
            val->u.s = (struct cn_slice){NULL, 0};
            nested = f;
            nested_n = w.n;
            break;
        }
        default: /* AV_BYTES */
            val->type = CN_VAL_BYTES;
            val->u.s = field_slice(&f);
            break;
        }
    }
    if (rc < 0)
        return rc;
    if ((val->type == CN_VAL_ARRAY || val->type == CN_VAL_KVLIST) && nested_n && keep) {
        char *out = cn_arena_alloc(&d->b->arena, nested_n);
        if (!out)
            return nomem(d);
        struct jw w = {out, 0, limit};
        rc = json_member(d, &w, &nested, 1);
        CN_BUG_ON(rc != 0 || w.n != nested_n);
        val->u.s = (struct cn_slice){out, nested_n};
    }
    return 0;
}

/* Cuts a string (at a UTF-8 boundary) or bytes value to max_value; counts it when keep. A
 * value within the limit (nearly every one) costs one comparison. */
static inline void cut_value(struct dec *d, struct cn_val *val, int keep)
{
    if ((val->type != CN_VAL_STR && val->type != CN_VAL_BYTES) || val->u.s.len <= d->max_value)
        return;
    size_t n = val->type == CN_VAL_STR
                   ? cn_utf8_cut((const uint8_t *)val->u.s.ptr, val->u.s.len, d->max_value)
                   : CN_MIN(val->u.s.len, d->max_value);
    if (n < val->u.s.len) {
        val->u.s.len = n;
        d->b->truncated_values += keep != 0;
    }
}

/* Makes kvs hold room for n_more attributes within max_attrs (kept ones stay first, as a
 * repeated message field merges); *out_cap is the number it may hold. */
static int kvs_grow(struct dec *d, struct cn_kvs *kvs, uint32_t n_more, uint32_t *out_cap)
{
    uint64_t want = (uint64_t)kvs->num + n_more;
    uint32_t cap = want > d->max_attrs ? d->max_attrs : (uint32_t)want;
    if (cap > kvs->num) {
        struct cn_kv *items = alloc_array(d, cap, sizeof(*items));
        if (!items)
            return nomem(d);
        if (kvs->num)
            memcpy(items, kvs->items, kvs->num * sizeof(*items));
        kvs->items = items;
    }
    *out_cap = CN_MAX(cap, kvs->num);
    return 0;
}

/* The KeyValue nearly every SDK writes, read without the general reader: the key (fewer
 * than 128 bytes), then the value holding a single string (fewer than 128 bytes), bool, int
 * or double, and nothing else. Returns 1 with kv->key and kv->val set (kv->val.u zeroed by
 * the caller), 0 when the message has any other shape; the general path then reads it from
 * the start, errors included, so both read the same bytes the same way. */
static inline int kv_fast(const uint8_t *p, size_t len, struct cn_kv *kv)
{
    if (len < 6 || p[0] != (1 << 3 | WT_LEN) || p[1] >= 0x80 || p[1] > len - 6)
        return 0;
    const uint8_t *end = p + len, *q = p + 2 + p[1];
    if (q[0] != (2 << 3 | WT_LEN) || q[1] >= 0x80 || q[1] != end - q - 2)
        return 0;
    const uint8_t *v = q + 2; /* the AnyValue: at least 2 bytes */
    switch (v[0]) {
    case AV_STRING << 3 | WT_LEN:
        if (v[1] >= 0x80 || v[1] != end - v - 2)
            return 0;
        kv->val.type = CN_VAL_STR;
        kv->val.u.s = (struct cn_slice){(const char *)v + 2, v[1]};
        break;
    case AV_BOOL << 3 | WT_VARINT:
    case AV_INT << 3 | WT_VARINT: {
        const uint8_t *x = v + 1;
        uint64_t n;
        if (get_varint(&x, end, &n) != 0 || x != end)
            return 0;
        if (v[0] == (AV_BOOL << 3 | WT_VARINT)) {
            kv->val.type = CN_VAL_BOOL;
            kv->val.u.b = n != 0;
        } else {
            kv->val.type = CN_VAL_INT;
            kv->val.u.i = (int64_t)n;
        }
        break;
    }
    case AV_DOUBLE << 3 | WT_I64: {
        if (end - v != 9)
            return 0;
        uint64_t bits = load_le64(v + 1);
        kv->val.type = CN_VAL_DOUBLE;
        memcpy(&kv->val.u.d, &bits, sizeof(kv->val.u.d));
        break;
    }
    default:
        return 0;
    }
    kv->key = (struct cn_slice){(const char *)p + 2, p[1]};
    return 1;
}

/* Decodes a KeyValue into kvs while it holds fewer than cap items, otherwise checks it and
 * counts it as dropped. With service, a string "service.name" (kept or not) is stored
 * there whole: the value limit cuts the attribute, not the service's identity. */
static int decode_kv(struct dec *d, struct cn_kvs *kvs, uint32_t cap, const struct pb_field *in,
                     size_t idx, struct cn_slice *service)
{
    struct cn_kv scratch;
    int keep = kvs->num < cap;
    struct cn_kv *kv = keep ? &kvs->items[kvs->num] : &scratch;
    struct pb_reader r = reader(in->p, in->len);
    struct pb_field f;
    int rc;
    kv->key = (struct cn_slice){NULL, 0};
    kv->val.type = CN_VAL_EMPTY;
    memset(&kv->val.u, 0, sizeof(kv->val.u));
    if (!kv_fast(in->p, in->len, kv)) {
        push(d, "attributes", idx);
        while ((rc = NEXT(d, &r, kv_f, &f)) > 0) {
            if (f.num == 1) {
                kv->key = field_slice(&f);
                continue;
            }
            push(d, "value", NO_INDEX);
            if ((rc = decode_value(d, &kv->val, f.p, f.len, d->max_value, keep)) != 0)
                return rc;
            pop(d);
        }
        if (rc < 0)
            return rc;
        pop(d);
    }
    if (keep) {
        kvs->num++;
    } else {
        kvs->dropped = sat_add32(kvs->dropped, 1);
        d->b->truncated_attrs++;
    }
    if (service && kv->val.type == CN_VAL_STR && cn_slice_eq(kv->key, CN_SLICE_LIT("service.name")))
        *service = kv->val.u.s;
    cut_value(d, &kv->val, keep);
    return 0;
}

/* ---- resource and scope ---- */

static int decode_resource(struct dec *d, struct cn_resource *res, const uint8_t *p, size_t len)
{
    uint32_t counts[CN_ARRAY_LEN(resource_f)] = {0}, cap = 0;
    int rc = count_fields(d, p, len, resource_f, CN_ARRAY_LEN(resource_f), counts);
    if (rc || (rc = kvs_grow(d, &res->attrs, counts[1], &cap)) != 0)
        return rc;
    struct pb_reader r = reader(p, len);
    struct pb_field f;
    size_t n_attr = 0;
    uint32_t dropped = 0;
    while ((rc = NEXT(d, &r, resource_f, &f)) > 0) {
        if (f.num == 2)
            dropped = (uint32_t)f.v;
        else if ((rc = decode_kv(d, &res->attrs, cap, &f, n_attr++, &res->service)) != 0)
            return rc;
    }
    res->attrs.dropped = sat_add32(res->attrs.dropped, dropped);
    return rc;
}

static int decode_scope(struct dec *d, struct cn_scope *sc, const uint8_t *p, size_t len)
{
    uint32_t counts[CN_ARRAY_LEN(scope_f)] = {0}, cap = 0;
    int rc = count_fields(d, p, len, scope_f, CN_ARRAY_LEN(scope_f), counts);
    if (rc || (rc = kvs_grow(d, &sc->attrs, counts[3], &cap)) != 0)
        return rc;
    struct pb_reader r = reader(p, len);
    struct pb_field f;
    size_t n_attr = 0;
    uint32_t dropped = 0;
    while ((rc = NEXT(d, &r, scope_f, &f)) > 0) {
        switch (f.num) {
        case 1:
            sc->name = field_slice(&f);
            break;
        case 2:
            sc->version = field_slice(&f);
            break;
        case 3:
            if ((rc = decode_kv(d, &sc->attrs, cap, &f, n_attr++, NULL)) != 0)
                return rc;
            break;
        default:
            dropped = (uint32_t)f.v;
            break;
        }
    }
    sc->attrs.dropped = sat_add32(sc->attrs.dropped, dropped);
    return rc;
}

/* ---- spans ---- */

/* The first link of a span whose IDs have the wrong length. */
struct bad_link {
    const char *field; /* NULL when all links are fine */
    size_t idx, len, want;
};

/* Decodes an event into ev; without keep it is only checked (attributes not stored). */
static int decode_event(struct dec *d, struct cn_event *ev, const uint8_t *p, size_t len, int keep)
{
    uint32_t counts[CN_ARRAY_LEN(event_f)] = {0}, cap = 0;
    int rc = count_fields(d, p, len, event_f, CN_ARRAY_LEN(event_f), counts);
    if (rc || (keep && (rc = kvs_grow(d, &ev->attrs, counts[3], &cap)) != 0))
        return rc;
    struct pb_reader r = reader(p, len);
    struct pb_field f;
    size_t n_attr = 0;
    uint32_t dropped = 0;
    while ((rc = NEXT(d, &r, event_f, &f)) > 0) {
        switch (f.num) {
        case 1:
            ev->time_ns = f.v;
            break;
        case 2:
            ev->name = field_slice(&f);
            break;
        case 3:
            if ((rc = decode_kv(d, &ev->attrs, cap, &f, n_attr++, NULL)) != 0)
                return rc;
            break;
        default:
            dropped = (uint32_t)f.v;
            break;
        }
    }
    ev->attrs.dropped = sat_add32(ev->attrs.dropped, dropped);
    return rc;
}

static int decode_link(struct dec *d, struct cn_link *lk, const uint8_t *p, size_t len, int keep,
                       size_t idx, struct bad_link *bad)
{
    uint32_t counts[CN_ARRAY_LEN(link_f)] = {0}, cap = 0;
    int rc = count_fields(d, p, len, link_f, CN_ARRAY_LEN(link_f), counts);
    if (rc || (keep && (rc = kvs_grow(d, &lk->attrs, counts[4], &cap)) != 0))
        return rc;
    struct pb_reader r = reader(p, len);
    struct pb_field f;
    size_t n_attr = 0, tid_len = 0, sid_len = 0;
    uint32_t dropped = 0;
    while ((rc = NEXT(d, &r, link_f, &f)) > 0) {
        switch (f.num) {
        case 1:
            tid_len = f.len;
            if (f.len == sizeof(lk->trace_id))
                memcpy(lk->trace_id, f.p, f.len);
            else
                memset(lk->trace_id, 0, sizeof(lk->trace_id));
            break;
        case 2:
            sid_len = f.len;
            if (f.len == sizeof(lk->span_id))
                memcpy(lk->span_id, f.p, f.len);
            else
                memset(lk->span_id, 0, sizeof(lk->span_id));
            break;
        case 3:
            lk->trace_state = field_slice(&f);
            break;
        case 4:
            if ((rc = decode_kv(d, &lk->attrs, cap, &f, n_attr++, NULL)) != 0)
                return rc;
            break;
        case 5:
            dropped = (uint32_t)f.v;
            break;
        default:
            lk->flags = (uint32_t)f.v;
            break;
        }
    }
    if (rc < 0)
        return rc;
    lk->attrs.dropped = sat_add32(lk->attrs.dropped, dropped);
    /* An empty ID is allowed: the API records links to invalid contexts that carry
     * attributes or a trace state. */
    if (!bad->field && tid_len != 0 && tid_len != sizeof(lk->trace_id))
        *bad = (struct bad_link){"trace_id", idx, tid_len, sizeof(lk->trace_id)};
    else if (!bad->field && sid_len != 0 && sid_len != sizeof(lk->span_id))
        *bad = (struct bad_link){"span_id", idx, sid_len, sizeof(lk->span_id)};
    return 0;
}

static int span_event(struct dec *d, struct cn_span *s, uint32_t cap, const struct pb_field *f,
                      size_t idx)
{
    struct cn_event scratch;
    int keep = s->num_events < cap;
    struct cn_event *ev = keep ? &s->events[s->num_events] : &scratch;
    struct trunc saved = trunc_save(d->b);
    memset(ev, 0, sizeof(*ev));
    push(d, "events", idx);
    int rc = decode_event(d, ev, f->p, f->len, keep);
    if (rc)
        return rc;
    pop(d);
    if (keep) {
        s->num_events++;
    } else {
        trunc_restore(d->b, saved);
        s->dropped_events = sat_add32(s->dropped_events, 1);
        d->b->truncated_events++;
    }
    return 0;
}

static int span_link(struct dec *d, struct cn_span *s, uint32_t cap, const struct pb_field *f,
                     size_t idx, struct bad_link *bad)
{
    struct cn_link scratch;
    int keep = s->num_links < cap;
    struct cn_link *lk = keep ? &s->links[s->num_links] : &scratch;
    struct trunc saved = trunc_save(d->b);
    memset(lk, 0, sizeof(*lk));
    push(d, "links", idx);
    int rc = decode_link(d, lk, f->p, f->len, keep, idx, bad);
    if (rc)
        return rc;
    pop(d);
    if (keep) {
        s->num_links++;
    } else {
        trunc_restore(d->b, saved);
        s->dropped_links = sat_add32(s->dropped_links, 1);
        d->b->truncated_links++;
    }
    return 0;
}

static int decode_status(struct dec *d, struct cn_span *s, uint64_t *code, const uint8_t *p,
                         size_t len)
{
    struct pb_reader r = reader(p, len);
    struct pb_field f;
    int rc;
    while ((rc = NEXT(d, &r, status_f, &f)) > 0) {
        if (f.num == 2)
            s->status_message = field_slice(&f);
        else
            *code = f.v;
    }
    return rc;
}

/* The reason to refuse a decoded span, written into why; 0 when it is valid. */
static int span_invalid(const struct cn_span *s, size_t tid_len, size_t sid_len, size_t pid_len,
                        uint64_t kind, uint64_t code, const struct bad_link *bad, char *why,
                        size_t why_len)
{
    if (tid_len != sizeof(s->trace_id))
        snprintf(why, why_len, "trace_id is %zu bytes, want 16", tid_len);
    else if (cn_id_is_zero(s->trace_id, sizeof(s->trace_id)))
        snprintf(why, why_len, "trace_id is all zero");
    else if (sid_len != sizeof(s->span_id))
        snprintf(why, why_len, "span_id is %zu bytes, want 8", sid_len);
    else if (cn_id_is_zero(s->span_id, sizeof(s->span_id)))
        snprintf(why, why_len, "span_id is all zero");
    else if (pid_len != 0 && pid_len != sizeof(s->parent_id))
        snprintf(why, why_len, "parent_span_id is %zu bytes, want 8", pid_len);
    else if (kind > CN_KIND_CONSUMER)
        snprintf(why, why_len, "kind %llu is not a SpanKind (0..5)", (unsigned long long)kind);
    else if (code > CN_STATUS_ERROR)
        snprintf(why, why_len, "status code %llu is not a StatusCode (0..2)",
                 (unsigned long long)code);
    else if (s->end_ns < s->start_ns)
        snprintf(why, why_len, "end_time_unix_nano %llu is before start_time_unix_nano %llu",
                 (unsigned long long)s->end_ns, (unsigned long long)s->start_ns);
    else if (bad->field)
        snprintf(why, why_len, "links[%zu]: %s is %zu bytes, want 0 or %zu", bad->idx, bad->field,
                 bad->len, bad->want);
    else
        return 0;
    return 1;
}

/* Doubles d->kv_buf, within what the batch's arena could still take (the items are copied
 * there). Returns 0 or CN_ENOMEM. */
static int kv_buf_grow(struct dec *d)
{
    const struct cn_arena *a = &d->b->arena;
    size_t room = a->max > a->used ? (a->max - a->used) / sizeof(struct cn_kv) : 0;
    size_t cap = d->kv_cap ? (size_t)d->kv_cap * 2 : 32;
    if (cap > room)
        cap = room;
    if (cap > UINT32_MAX)
        cap = UINT32_MAX;
    if (cap <= d->kv_cap)
        return CN_ENOMEM;
    struct cn_kv *buf = realloc(d->kv_buf, cap * sizeof(*buf));
    if (!buf)
        return CN_ENOMEM;
    d->kv_buf = buf;
    d->kv_cap = (uint32_t)cap;
    return 0;
}

/* The string attribute nearly every span has, in a KeyValue of fewer than 128 bytes:
 * key, then an AnyValue holding only string_value, within max_value. Returns 1 with kv
 * set, 0 for anything else (kv_fast or decode_kv then read it from the start). */
static inline int kv_str_fast(const uint8_t *p, size_t len, struct cn_kv *kv, size_t max_value)
{
    size_t k = p[1];
    if (p[0] != (1 << 3 | WT_LEN) || k + 6 > len)
        return 0;
    const uint8_t *q = p + 2 + k;
    size_t n = len - k - 6; /* what is left for the string */
    if (q[0] != (2 << 3 | WT_LEN) || q[1] != n + 2 || q[2] != (AV_STRING << 3 | WT_LEN) ||
        q[3] != n || n > max_value)
        return 0;
    kv->key = (struct cn_slice){(const char *)p + 2, k};
    kv->val.type = CN_VAL_STR;
    kv->val.u.s = (struct cn_slice){(const char *)q + 4, n};
    return 1;
}

/* Decodes the attribute in f into attrs (d->kv_buf), then the ones right after it: SDKs
 * write a span's attributes one after another, so each next one whose tag and length take a
 * byte each, as next_field's fast path reads them, is taken here without going back through
 * the span's field switch. A short string attribute is read by kv_str_fast, another common
 * one by kv_fast, every other by decode_kv. */
static int span_attrs(struct dec *d, struct cn_kvs *attrs, struct pb_reader *r, struct pb_field *f,
                      size_t *n_attr)
{
    const uint8_t *end = r->end, *p = f->p;
    size_t len = f->len, max_value = d->max_value;
    uint32_t cap = CN_MIN(d->kv_cap, d->max_attrs);
    for (;;) {
        (*n_attr)++;
        if (CN_LIKELY(attrs->num < cap && len < 0x80 &&
                      kv_str_fast(p, len, &attrs->items[attrs->num], max_value))) {
            attrs->num++;
        } else {
            if (attrs->num == d->kv_cap && attrs->num < d->max_attrs) {
                if (kv_buf_grow(d) != 0)
                    return nomem(d);
                attrs->items = d->kv_buf;
                cap = CN_MIN(d->kv_cap, d->max_attrs);
            }
            struct cn_kv *kv = &attrs->items[attrs->num];
            if (attrs->num < cap &&
                (memset(&kv->val.u, 0, sizeof(kv->val.u)), kv_fast(p, len, kv))) {
                cut_value(d, &kv->val, 1);
                attrs->num++;
            } else {
                struct pb_field cur = {9, 0, p, len};
                int rc = decode_kv(d, attrs, cap, &cur, *n_attr - 1, NULL);
                if (rc)
                    return rc;
            }
        }
        const uint8_t *t = r->p;
        if (end - t < 2 || t[0] != (9 << 3 | WT_LEN) || t[1] >= 0x80 || t[1] > end - t - 2)
            return 0;
        p = t + 2;
        len = t[1];
        r->p = p + len;
    }
}

/* The fields SDKs write first, in field order and at their usual sizes: trace_id (16
 * bytes), span_id, parent_span_id (8), name (a length under 128), kind (under 128),
 * start_time_unix_nano and end_time_unix_nano. Each is taken here while the next bytes are
 * exactly its tag and length, as decode_span's loop would take it; r then points past them,
 * and the loop reads the rest (and any of these that were not taken). */
static inline void span_head(struct pb_reader *r, struct cn_span *s, size_t *tid_len,
                             size_t *sid_len, size_t *pid_len, uint64_t *kind)
{
    const uint8_t *q = r->p, *end = r->end;
    if (end - q >= 18 && q[0] == (1 << 3 | WT_LEN) && q[1] == 16) {
        memcpy(s->trace_id, q + 2, 16);
        *tid_len = 16;
        q += 18;
    }
    if (end - q >= 10 && q[0] == (2 << 3 | WT_LEN) && q[1] == 8) {
        memcpy(s->span_id, q + 2, 8);
        *sid_len = 8;
        q += 10;
    }
    if (end - q >= 10 && q[0] == (4 << 3 | WT_LEN) && q[1] == 8) {
        memcpy(s->parent_id, q + 2, 8);
        *pid_len = 8;
        q += 10;
    }
    if (end - q >= 2 && q[0] == (5 << 3 | WT_LEN) && q[1] < 0x80 && q[1] <= end - q - 2) {
        s->name = (struct cn_slice){(const char *)q + 2, q[1]};
        q += 2 + q[1];
    }
    if (end - q >= 2 && q[0] == (6 << 3 | WT_VARINT) && q[1] < 0x80) {
        *kind = q[1];
        q += 2;
    }
    if (end - q >= 9 && q[0] == (7 << 3 | WT_I64)) {
        s->start_ns = load_le64(q + 1);
        q += 9;
    }
    if (end - q >= 9 && q[0] == (8 << 3 | WT_I64)) {
        s->end_ns = load_le64(q + 1);
        q += 9;
    }
    r->p = q;
}

static int decode_span(struct dec *d, const struct cn_resource *res, const struct cn_scope *sc,
                       const uint8_t *p, size_t len, size_t idx)
{
    struct cn_tel_batch *b = d->b;
    if (CN_NEVER(b->num_spans >= d->cap))
        return fail(d, "more spans than counted");
    struct cn_span *s = &b->spans[b->num_spans]; /* all zero (see decode_traces) */
    s->resource = res;
    s->scope = sc;
    struct trunc saved = trunc_save(b);
    push(d, "spans", idx);

    /* Attributes go to d->kv_buf first. Events and links (rare) are counted, to size their
     * arrays, only when the span has some. */
    struct cn_kvs attrs = {d->kv_buf, 0, 0};
    uint32_t ev_cap = 0, link_cap = 0;
    int counted = 0, rc;
    struct pb_reader r = reader(p, len);
    struct pb_field f;
    size_t tid_len = 0, sid_len = 0, pid_len = 0, n_attr = 0, n_ev = 0, n_link = 0;
    uint64_t kind = 0, code = 0;
    uint32_t drop_attrs = 0, drop_events = 0, drop_links = 0;
    struct bad_link bad = {0};
    span_head(&r, s, &tid_len, &sid_len, &pid_len, &kind);
    while ((rc = NEXT(d, &r, span_f, &f)) > 0) {
        if ((f.num == 11 || f.num == 13) && !counted) {
            uint32_t counts[CN_ARRAY_LEN(span_f)] = {0};
            if ((rc = count_fields(d, p, len, span_f, CN_ARRAY_LEN(span_f), counts)) != 0)
                return rc;
            counted = 1;
            ev_cap = CN_MIN(counts[11], d->max_events);
            link_cap = CN_MIN(counts[13], d->max_links);
            if (ev_cap && !(s->events = alloc_array(d, ev_cap, sizeof(*s->events))))
                return nomem(d);
            if (link_cap && !(s->links = alloc_array(d, link_cap, sizeof(*s->links))))
                return nomem(d);
        }
        int sub = 0;
        switch (f.num) {
        case 1:
            tid_len = f.len;
            if (f.len == sizeof(s->trace_id))
                memcpy(s->trace_id, f.p, f.len);
            break;
        case 2:
            sid_len = f.len;
            if (f.len == sizeof(s->span_id))
                memcpy(s->span_id, f.p, f.len);
            break;
        case 3:
            s->trace_state = field_slice(&f);
            break;
        case 4:
            pid_len = f.len;
            if (f.len == sizeof(s->parent_id))
                memcpy(s->parent_id, f.p, f.len);
            else
                memset(s->parent_id, 0, sizeof(s->parent_id));
            break;
        case 5:
            s->name = field_slice(&f);
            break;
        case 6:
            kind = f.v;
            break;
        case 7:
            s->start_ns = f.v;
            break;
        case 8:
            s->end_ns = f.v;
            break;
        case 9:
            sub = span_attrs(d, &attrs, &r, &f, &n_attr);
            break;
        case 10:
            drop_attrs = (uint32_t)f.v;
            break;
        case 11:
            sub = span_event(d, s, ev_cap, &f, n_ev++);
            break;
        case 12:
            drop_events = (uint32_t)f.v;
            break;
        case 13:
            sub = span_link(d, s, link_cap, &f, n_link++, &bad);
            break;
        case 14:
            drop_links = (uint32_t)f.v;
            break;
        case 15:
            push(d, "status", NO_INDEX);
            if ((sub = decode_status(d, s, &code, f.p, f.len)) == 0)
                pop(d);
            break;
        default: /* 16 */
            s->flags = (uint32_t)f.v;
            break;
        }
        if (sub)
            return sub;
    }
    if (rc < 0)
        return rc;
    if (attrs.num) {
        if (!(s->attrs.items = alloc_array(d, attrs.num, sizeof(*attrs.items))))
            return nomem(d);
        memcpy(s->attrs.items, attrs.items, attrs.num * sizeof(*attrs.items));
    }
    s->attrs.num = attrs.num;
    s->attrs.dropped = sat_add32(attrs.dropped, drop_attrs);
    s->dropped_events = sat_add32(s->dropped_events, drop_events);
    s->dropped_links = sat_add32(s->dropped_links, drop_links);
    s->kind = (uint8_t)kind;
    s->status_code = (uint8_t)code;

    char why[160];
    if (span_invalid(s, tid_len, sid_len, pid_len, kind, code, &bad, why, sizeof(why))) {
        trunc_restore(b, saved);
        reject(d, "%s", why);
        memset(s, 0, sizeof(*s)); /* for the next span */
    } else {
        b->num_spans++;
    }
    pop(d);
    return 0;
}

/* ---- log records ---- */

static int decode_log(struct dec *d, const struct cn_resource *res, const struct cn_scope *sc,
                      const uint8_t *p, size_t len, size_t idx)
{
    struct cn_tel_batch *b = d->b;
    if (CN_NEVER(b->num_logs >= d->cap))
        return fail(d, "more log records than counted");
    struct cn_log *l = &b->logs[b->num_logs];
    memset(l, 0, sizeof(*l));
    l->resource = res;
    l->scope = sc;
    struct trunc saved = trunc_save(b);
    push(d, "log_records", idx);

    uint32_t counts[CN_ARRAY_LEN(log_f)] = {0}, attr_cap = 0;
    int rc = count_fields(d, p, len, log_f, CN_ARRAY_LEN(log_f), counts);
    if (rc || (rc = kvs_grow(d, &l->attrs, counts[6], &attr_cap)) != 0)
        return rc;

    struct pb_reader r = reader(p, len);
    struct pb_field f;
    size_t tid_len = 0, sid_len = 0, n_attr = 0;
    uint64_t severity = 0;
    uint32_t drop_attrs = 0;
    while ((rc = NEXT(d, &r, log_f, &f)) > 0) {
        switch (f.num) {
        case 1:
            l->time_ns = f.v;
            break;
        case 2:
            severity = f.v;
            break;
        case 3:
            l->severity_text = field_slice(&f);
            break;
        case 5:
            push(d, "body", NO_INDEX);
            if ((rc = decode_value(d, &l->body, f.p, f.len, SIZE_MAX, 1)) != 0)
                return rc;
            pop(d);
            break;
        case 6:
            if ((rc = decode_kv(d, &l->attrs, attr_cap, &f, n_attr++, NULL)) != 0)
                return rc;
            break;
        case 7:
            drop_attrs = (uint32_t)f.v;
            break;
        case 8:
            l->flags = (uint32_t)f.v;
            break;
        case 9:
            tid_len = f.len;
            if (f.len == sizeof(l->trace_id))
                memcpy(l->trace_id, f.p, f.len);
            else
                memset(l->trace_id, 0, sizeof(l->trace_id));
            break;
        case 10:
            sid_len = f.len;
            if (f.len == sizeof(l->span_id))
                memcpy(l->span_id, f.p, f.len);
            else
                memset(l->span_id, 0, sizeof(l->span_id));
            break;
        case 11:
            l->observed_ns = f.v;
            break;
        default: /* 12 */
            l->event_name = field_slice(&f);
            break;
        }
    }
    if (rc < 0)
        return rc;
    l->attrs.dropped = sat_add32(l->attrs.dropped, drop_attrs);
    l->severity_number = (uint8_t)severity;

    if (tid_len != 0 && tid_len != sizeof(l->trace_id)) {
        trunc_restore(b, saved);
        reject(d, "trace_id is %zu bytes, want 0 or 16", tid_len);
    } else if (sid_len != 0 && sid_len != sizeof(l->span_id)) {
        trunc_restore(b, saved);
        reject(d, "span_id is %zu bytes, want 0 or 8", sid_len);
    } else if (severity > 24) {
        trunc_restore(b, saved);
        reject(d, "severity_number %llu is out of range (0..24)", (unsigned long long)severity);
    } else {
        b->num_logs++;
    }
    pop(d);
    return 0;
}

/* ---- request walk ---- */

static const struct shape traces_shape = {
    trace_request_f,
    resource_spans_f,
    scope_spans_f,
    CN_ARRAY_LEN(trace_request_f),
    CN_ARRAY_LEN(resource_spans_f),
    CN_ARRAY_LEN(scope_spans_f),
    decode_span,
};

static const struct shape logs_shape = {
    logs_request_f,
    resource_logs_f,
    scope_logs_f,
    CN_ARRAY_LEN(logs_request_f),
    CN_ARRAY_LEN(resource_logs_f),
    CN_ARRAY_LEN(scope_logs_f),
    decode_log,
};

/* Counts the records of a request, checking the framing of the two outer levels. */
static int count_records(struct dec *d, const struct shape *sh, const uint8_t *buf, size_t len,
                         size_t *out_n)
{
    struct pb_reader r = reader(buf, len);
    struct pb_field f, g, h;
    size_t n = 0, i = 0;
    int rc;
    while ((rc = next_field(d, &r, sh->req, sh->num_req, &f, 1)) > 0) {
        struct pb_reader rr = reader(f.p, f.len);
        size_t j = 0;
        push(d, sh->req[1].name, i++);
        while ((rc = next_field(d, &rr, sh->res, sh->num_res, &g, 1)) > 0) {
            if (g.num != 2)
                continue;
            struct pb_reader rs = reader(g.p, g.len);
            push(d, sh->res[2].name, j++);
            while ((rc = next_field(d, &rs, sh->scope, sh->num_scope, &h, 1)) > 0)
                n += h.num == 2;
            if (rc < 0)
                return rc;
            pop(d);
        }
        if (rc < 0)
            return rc;
        pop(d);
    }
    *out_n = n;
    return rc;
}

static int decode_scope_level(struct dec *d, const struct shape *sh, const struct cn_resource *res,
                              const uint8_t *p, size_t len)
{
    struct cn_scope *sc = cn_arena_calloc(&d->b->arena, 1, sizeof(*sc));
    if (!sc)
        return nomem(d);
    struct pb_reader r = reader(p, len);
    struct pb_field f;
    size_t k = 0;
    int rc;
    while ((rc = next_field(d, &r, sh->scope, sh->num_scope, &f, 1)) > 0) {
        if (f.num == 1) {
            push(d, "scope", NO_INDEX);
            if ((rc = decode_scope(d, sc, f.p, f.len)) != 0)
                return rc;
            pop(d);
        } else if (f.num == 2) {
            if ((rc = sh->record(d, res, sc, f.p, f.len, k++)) != 0)
                return rc;
        }
        /* 3, the scope's schema_url, has no place in the model. */
    }
    return rc;
}

static int decode_resource_level(struct dec *d, const struct shape *sh, const uint8_t *p,
                                 size_t len)
{
    struct cn_resource *res = cn_arena_calloc(&d->b->arena, 1, sizeof(*res));
    if (!res)
        return nomem(d);
    struct pb_reader r = reader(p, len);
    struct pb_field f;
    size_t j = 0;
    int rc;
    while ((rc = next_field(d, &r, sh->res, sh->num_res, &f, 1)) > 0) {
        switch (f.num) {
        case 1:
            push(d, "resource", NO_INDEX);
            if ((rc = decode_resource(d, res, f.p, f.len)) != 0)
                return rc;
            pop(d);
            break;
        case 2:
            push(d, sh->res[2].name, j++);
            if ((rc = decode_scope_level(d, sh, res, f.p, f.len)) != 0)
                return rc;
            pop(d);
            break;
        default:
            res->schema_url = field_slice(&f);
            break;
        }
    }
    /* Spans decoded above point to res already; an empty service.name counts as absent. */
    if (res->service.len == 0)
        res->service = CN_SLICE_LIT("unknown_service");
    return rc;
}

static void dec_init(struct dec *d, struct cn_tel_batch *b, const struct cn_tel_limits *lim,
                     char *err, size_t err_len)
{
    d->b = b;
    d->max_attrs = lim && lim->max_attrs ? lim->max_attrs : UINT32_MAX;
    d->max_events = lim && lim->max_events ? lim->max_events : UINT32_MAX;
    d->max_links = lim && lim->max_links ? lim->max_links : UINT32_MAX;
    d->max_value = lim && lim->max_attr_value_bytes ? lim->max_attr_value_bytes : SIZE_MAX;
    d->cap = 0;
    d->kv_buf = NULL;
    d->kv_cap = 0;
    d->err = err;
    d->err_len = err_len;
    d->depth = 0;
    if (err && err_len)
        err[0] = '\0';
}

/* The second walk: decodes every record into the array sized by count_records. */
static int walk(struct dec *d, const struct shape *sh, const uint8_t *buf, size_t len)
{
    struct pb_reader r = reader(buf, len);
    struct pb_field f;
    size_t i = 0;
    int rc;
    while ((rc = next_field(d, &r, sh->req, sh->num_req, &f, 1)) > 0) {
        push(d, sh->req[1].name, i++);
        if ((rc = decode_resource_level(d, sh, f.p, f.len)) != 0)
            return rc;
        pop(d);
    }
    return rc;
}

int cn_otlp_pb_decode_traces(struct cn_tel_batch *b, const uint8_t *buf, size_t len,
                             const struct cn_tel_limits *lim, char *err, size_t err_len)
{
    struct dec d;
    dec_init(&d, b, lim, err, err_len);
    b->spans = NULL;
    b->num_spans = 0;
    int rc = count_records(&d, &traces_shape, buf, len, &d.cap);
    if (rc == 0 && d.cap && !(b->spans = alloc_array(&d, d.cap, sizeof(*b->spans))))
        rc = nomem(&d);
    /* Zeroed at once here rather than span by span: one long fill costs less than a short
     * one per span. A refused span's slot is zeroed again for the next. */
    if (rc == 0 && d.cap)
        memset(b->spans, 0, d.cap * sizeof(*b->spans));
    if (rc == 0)
        rc = walk(&d, &traces_shape, buf, len);
    free(d.kv_buf);
    if (rc) {
        b->spans = NULL;
        b->num_spans = 0;
    }
    return rc;
}

int cn_otlp_pb_decode_logs(struct cn_tel_batch *b, const uint8_t *buf, size_t len,
                           const struct cn_tel_limits *lim, char *err, size_t err_len)
{
    struct dec d;
    dec_init(&d, b, lim, err, err_len);
    b->logs = NULL;
    b->num_logs = 0;
    int rc = count_records(&d, &logs_shape, buf, len, &d.cap);
    if (rc == 0 && d.cap && !(b->logs = alloc_array(&d, d.cap, sizeof(*b->logs))))
        rc = nomem(&d);
    if (rc == 0)
        rc = walk(&d, &logs_shape, buf, len);
    if (rc) {
        b->logs = NULL;
        b->num_logs = 0;
    }
    return rc;
}

/* ---- responses ---- */

static size_t put_varint(uint8_t *dst, uint64_t v)
{
    size_t n = 0;
    while (v >= 0x80) {
        dst[n++] = (uint8_t)(v | 0x80);
        v >>= 7;
    }
    dst[n++] = (uint8_t)v;
    return n;
}

static size_t varint_len(uint64_t v)
{
    size_t n = 1;
    while (v >= 0x80) {
        v >>= 7;
        n++;
    }
    return n;
}

/* Export*ServiceResponse { 1: Export*PartialSuccess { 1: int64 rejected, 2: string
 * error_message } }: both signals have this shape. proto3 leaves out zero and empty fields,
 * and the whole partial_success when both are. */
static int encode_response(struct cn_buf *out, uint64_t rejected, const char *msg)
{
    size_t msg_len = msg ? strlen(msg) : 0;
    if (rejected == 0 && msg_len == 0)
        return 0;
    size_t inner = (rejected ? 1 + varint_len(rejected) : 0) +
                   (msg_len ? 1 + varint_len(msg_len) + msg_len : 0);
    size_t total = 1 + varint_len(inner) + inner;
    int rc = cn_buf_reserve(out, total);
    if (rc)
        return rc;
    uint8_t head[3 + 3 * 10];
    size_t n = 0;
    head[n++] = 1 << 3 | WT_LEN;
    n += put_varint(head + n, inner);
    if (rejected) {
        head[n++] = 1 << 3 | WT_VARINT;
        n += put_varint(head + n, rejected);
    }
    if (msg_len) {
        head[n++] = 2 << 3 | WT_LEN;
        n += put_varint(head + n, msg_len);
    }
    /* Both appends fit in the room reserved above. */
    rc = cn_buf_append(out, head, n);
    if (rc == 0)
        rc = cn_buf_append(out, msg, msg_len);
    CN_BUG_ON(rc != 0);
    return 0;
}

int cn_otlp_pb_encode_trace_response(struct cn_buf *out, uint64_t rejected_spans,
                                     const char *error_message)
{
    return encode_response(out, rejected_spans, error_message);
}

int cn_otlp_pb_encode_logs_response(struct cn_buf *out, uint64_t rejected_log_records,
                                    const char *error_message)
{
    return encode_response(out, rejected_log_records, error_message);
}
