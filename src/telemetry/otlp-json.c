/* OTLP JSON decoder (traces, logs) and export response encoder. jansson parses the body into a
 * tree; the walk below checks every known field's JSON type, copies what it keeps into the
 * batch's arena and frees the tree, so the batch never points into jansson's memory. */
#include "telemetry/otlp-json.h"

#include "base/base64.h"
#include "base/utf8.h"
#include "telemetry/json-num.h"
#include "telemetry/json-path.h"

#include <jansson.h>
#include <math.h>
#include <stdarg.h>

/* Arrays and kvlists nested deeper than this are refused, as the protobuf decoder does. */
#define MAX_VALUE_DEPTH 16

/* State of one decode call. The path keeps its first CN_JPATH_MAX steps (a deeper path
 * prints with "..."). pending is set once the record being decoded is
 * refused; decoding goes on so that a malformed field later in the record is still a hard
 * error, and the walker counts the refusal when the record ends. keep is 0 while reading an
 * item dropped by a limit: it is checked as any other (limits never change which records are
 * accepted) but nothing of it is copied. */
struct dec {
    struct cn_tel_batch *b;
    uint32_t max_attrs, max_value, max_events, max_links; /* UINT32_MAX when unlimited */
    char *err;
    size_t err_len;
    struct cn_jpath jp;
    int pending;
    int keep;
    int ints_as_reals; /* the body was read with every number a double (see parse) */
    char reason[sizeof(((struct cn_tel_batch *)0)->reject_msg)];
    struct cn_buf scratch; /* canonical JSON text of an array or kvlist value */
    struct cn_buf bytes;   /* decoded bytes of a nested bytesValue */
};

static const char empty[] = "";

/* The batch's truncation counters, saved before a record that may be refused or an item that
 * is dropped whole, so that neither adds to them. */
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

/* Paths and messages */

static void push(struct dec *d, const char *key)
{
    cn_jpath_push(&d->jp, key);
}

/* Makes the top segment name element i of its array. */
static void at(struct dec *d, size_t i)
{
    cn_jpath_at(&d->jp, i);
}

static void pop(struct dec *d)
{
    cn_jpath_pop(&d->jp);
}

static size_t fmt_path(const struct dec *d, char *dst, size_t cap)
{
    return cn_jpath_format(&d->jp, dst, cap);
}

/* Writes "path: msg" into dst. A path too long for dst keeps its start and its end around
 * "...", so that the message itself always shows. */
static void compose(const struct dec *d, char *dst, size_t cap, const char *msg)
{
    char path[CN_JPATH_MAX * 48];
    if (cap == 0)
        return;
    size_t n = fmt_path(d, path, sizeof(path)), m = strlen(msg);
    if (n + 2 + m < cap || cap < m + 2 + 24) {
        snprintf(dst, cap, "%s: %s", path, msg);
        return;
    }
    size_t room = cap - 1 - 2 - m - 3, head = room / 3, tail = room - head;
    snprintf(dst, cap, "%.*s...%s: %s", (int)head, path, path + n - tail, msg);
}

/* Formats "path: message" into dst. */
static void fmt_msg(const struct dec *d, char *dst, size_t cap, const char *fmt, va_list ap)
{
    char msg[128];
    vsnprintf(msg, sizeof(msg), fmt, ap);
    compose(d, dst, cap, msg);
}

/* A hard error at the current path. */
__attribute__((format(printf, 2, 3))) static int fail(struct dec *d, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fmt_msg(d, d->err, d->err_len, fmt, ap);
    va_end(ap);
    return CN_ESYNTAX;
}

static int oom(struct dec *d)
{
    if (d->err_len)
        snprintf(d->err, d->err_len, "batch too large for the decode budget");
    return CN_ENOMEM;
}

/* Refuses the record being decoded, with the reason at the current path. */
static void refuse(struct dec *d, const char *msg)
{
    if (d->pending)
        return;
    d->pending = 1;
    if (d->b->rejected == 0)
        compose(d, d->reason, sizeof(d->reason), msg);
}

/* Arena copies */

static int dup(struct dec *d, const char *p, size_t n, struct cn_slice *out)
{
    if (n == 0 || !d->keep) {
        *out = (struct cn_slice){empty, 0};
        return 0;
    }
    *out = cn_arena_dup(&d->b->arena, p, n);
    return out->ptr ? 0 : oom(d);
}

/* JSON fields */

/* The field named camel, or snake (the proto field name, which receivers accept too); NULL
 * when absent or null. *out_name is the name found, for paths. */
static json_t *field(json_t *obj, const char *camel, const char *snake, const char **out_name)
{
    json_t *v = json_object_get(obj, camel);
    *out_name = camel;
    if (!v && snake && (v = json_object_get(obj, snake)) != NULL)
        *out_name = snake;
    return json_is_null(v) ? NULL : v;
}

static int as_u64(struct dec *d, json_t *v, uint64_t max, uint64_t *out)
{
    const char *why = cn_json_u64(v, max, out);
    return why ? fail(d, "%s", why) : 0;
}

static int as_i64(struct dec *d, json_t *v, int64_t *out)
{
    if (json_is_integer(v)) {
        *out = json_integer_value(v);
        return 0;
    }
    if (json_is_real(v)) {
        double r = json_real_value(v);
        if (r != floor(r))
            return fail(d, "not an integer");
        if (r < -9223372036854775808.0 || r >= 9223372036854775808.0)
            return fail(d, "out of range");
        *out = (int64_t)r;
        return 0;
    }
    if (!json_is_string(v))
        return fail(d, "not an integer");
    struct cn_slice s = {json_string_value(v), json_string_length(v)};
    int neg = s.len > 0 && s.ptr[0] == '-';
    uint64_t m;
    int rc = cn_slice_to_u64((struct cn_slice){s.ptr + neg, s.len - (size_t)neg}, &m);
    if (rc == CN_ESYNTAX)
        return fail(d, "not an integer");
    if (rc || m > (uint64_t)INT64_MAX + (uint64_t)neg)
        return fail(d, "out of range");
    *out = neg ? (int64_t)(0 - m) : (int64_t)m;
    return 0;
}

/* A double as a JSON number or, as the mapping allows, a string: "NaN", "Infinity",
 * "-Infinity" or a decimal. */
static int as_double(struct dec *d, json_t *v, double *out)
{
    if (json_is_number(v)) {
        *out = json_number_value(v);
        return 0;
    }
    if (json_is_string(v)) {
        const char *s = json_string_value(v);
        size_t n = json_string_length(v);
        if (strcmp(s, "NaN") == 0) {
            *out = NAN;
            return 0;
        }
        if (strcmp(s, "Infinity") == 0 || strcmp(s, "-Infinity") == 0) {
            *out = s[0] == '-' ? -INFINITY : INFINITY;
            return 0;
        }
        char *end;
        /* strtod reads more than JSON numbers: no hex, no leading space or '+'. */
        if (n > 0 && strlen(s) == n && (s[0] == '-' || (s[0] >= '0' && s[0] <= '9')) &&
            !strpbrk(s, "xX")) {
            double x = strtod(s, &end);
            if (*end == '\0' && isfinite(x)) {
                *out = x;
                return 0;
            }
        }
    }
    return fail(d, "not a number");
}

/* Reads an optional unsigned field into *out (left as is when absent). */
static int get_u64(struct dec *d, json_t *obj, const char *camel, const char *snake, uint64_t max,
                   uint64_t *out)
{
    const char *name;
    json_t *v = field(obj, camel, snake, &name);
    if (!v)
        return 0;
    push(d, name);
    int rc = as_u64(d, v, max, out);
    pop(d);
    return rc;
}

static int get_u32(struct dec *d, json_t *obj, const char *camel, const char *snake, uint32_t *out)
{
    uint64_t x = *out;
    int rc = get_u64(d, obj, camel, snake, UINT32_MAX, &x);
    *out = (uint32_t)x;
    return rc;
}

/* Copies an optional string field into the arena ("" when absent). */
static int get_str(struct dec *d, json_t *obj, const char *camel, const char *snake,
                   struct cn_slice *out)
{
    const char *name;
    json_t *v = field(obj, camel, snake, &name);
    *out = (struct cn_slice){empty, 0};
    if (!v)
        return 0;
    if (!json_is_string(v)) {
        push(d, name);
        return fail(d, "not a string");
    }
    return dup(d, json_string_value(v), json_string_length(v), out);
}

/* An optional object or array field: *out is NULL when absent. */
static int get_typed(struct dec *d, json_t *obj, const char *camel, const char *snake, int array,
                     json_t **out, const char **out_name)
{
    *out = field(obj, camel, snake, out_name);
    if (*out && (array ? !json_is_array(*out) : !json_is_object(*out))) {
        push(d, *out_name);
        return fail(d, array ? "not an array" : "not an object");
    }
    return 0;
}

static void add_sat(uint32_t *a, uint64_t v)
{
    *a = (uint32_t)CN_MIN((uint64_t)*a + v, UINT32_MAX);
}

/* IDs */

enum id_mode { ID_REQUIRED, ID_OPTIONAL };

/* Reads an ID of n bytes: 2n hex digits (any case), or base64 of the n bytes. A required ID
 * must be present and not all zero; an optional one may be absent or "" (all zero). A
 * malformed ID refuses the record. */
static int get_id(struct dec *d, json_t *obj, const char *camel, const char *snake, uint8_t *dst,
                  size_t n, enum id_mode mode)
{
    const char *name;
    json_t *v = field(obj, camel, snake, &name);
    memset(dst, 0, n);
    push(d, name);
    if (v && !json_is_string(v))
        return fail(d, "not a string");
    size_t len = v ? json_string_length(v) : 0;
    if (len == 0) {
        if (mode == ID_REQUIRED)
            refuse(d, "missing");
        pop(d);
        return 0;
    }
    const char *s = json_string_value(v);
    uint8_t tmp[24];
    int ok = cn_hex_decode(dst, n, (struct cn_slice){s, len}) == 0;
    if (!ok && len <= 4 * ((n + 2) / 3) && cn_base64_decode(tmp, s, len) == (long)n) {
        memcpy(dst, tmp, n);
        ok = 1;
    }
    if (!ok)
        refuse(d, n == 16 ? "not 32 hex digits" : "not 16 hex digits");
    else if (mode == ID_REQUIRED && cn_id_is_zero(dst, n))
        refuse(d, "all zero");
    pop(d);
    return 0;
}

/* Reads an enum given as its number or its name; a value outside the enum refuses the
 * record. */
static int get_enum(struct dec *d, json_t *obj, const char *camel, const char *snake,
                    const char *const *names, size_t num_names, const char *what, uint8_t *out)
{
    const char *name;
    json_t *v = field(obj, camel, snake, &name);
    if (!v)
        return 0;
    push(d, name);
    if (json_is_integer(v)) {
        json_int_t i = json_integer_value(v);
        if (i >= 0 && (size_t)i < num_names)
            *out = (uint8_t)i;
        else
            refuse(d, what);
    } else if (d->ints_as_reals && json_is_real(v) &&
               json_real_value(v) == floor(json_real_value(v))) {
        /* A body with a number past int64 elsewhere is re-read with every number a double:
         * whole doubles are the integers they were written as. */
        double x = json_real_value(v);
        if (x >= 0 && x < (double)num_names)
            *out = (uint8_t)x;
        else
            refuse(d, what);
    } else if (json_is_string(v)) {
        size_t i = 0;
        struct cn_slice name_in = {json_string_value(v), json_string_length(v)};
        while (i < num_names && !cn_slice_eq(cn_slice_of(names[i]), name_in))
            i++;
        if (i < num_names)
            *out = (uint8_t)i;
        else
            refuse(d, what);
    } else {
        return fail(d, "not an integer or enum name");
    }
    pop(d);
    return 0;
}

/* Canonical JSON text */

static int put(struct dec *d, const char *s)
{
    return cn_buf_puts(&d->scratch, s) ? oom(d) : 0;
}

/* Appends s as a JSON string; bytes that are not UTF-8 become U+FFFD. */
static int put_json_str(struct cn_buf *o, const char *s, size_t n)
{
    int rc = cn_buf_reserve(o, cn_json_str(NULL, s, n));
    if (rc == 0)
        o->len += cn_json_str(o->ptr + o->len, s, n);
    return rc;
}

static int put_b64(struct cn_buf *o, const uint8_t *p, size_t n)
{
    int rc = cn_buf_reserve(o, CN_BASE64_LEN(n));
    if (rc == 0)
        o->len += cn_base64_encode(o->ptr + o->len, p, n);
    return rc;
}

size_t cn_otlp_json_double(char *dst, double x)
{
    char e[32], digits[20];
    int prec = 0, k = 0, neg = x < 0; /* -0 is written "0", as JavaScript does */
    size_t n = 0;
    if (!isfinite(x))
        return (size_t)snprintf(dst, 32, "%s", isnan(x) ? "NaN" : x > 0 ? "Infinity" : "-Infinity");
    /* The fewest significant digits that read back as x, as d.ddde+XX. */
    while (snprintf(e, sizeof(e), "%.*e", prec, fabs(x)), prec < 16 && strtod(e, NULL) != fabs(x))
        prec++;
    char *p = e;
    for (; *p != 'e'; p++)
        if (*p != '.')
            digits[k++] = *p;
    while (k > 1 && digits[k - 1] == '0')
        k--;
    int exp = atoi(p + 1), point = exp + 1; /* digits before the decimal point */
    if (neg)
        dst[n++] = '-';
    /* Integers past int64 go in exponent form: parsers that read integers as int64 (jansson
     * among them) refuse "100000000000000000000" but read "1e+20". */
    int plain_int = point >= k && point <= 21 && fabs(x) < 9223372036854775808.0;
    if (plain_int) { /* 1500 */
        memcpy(dst + n, digits, (size_t)k);
        n += (size_t)k;
        for (int i = k; i < point; i++)
            dst[n++] = '0';
    } else if (point > 0 && point < k) { /* 1.5 */
        memcpy(dst + n, digits, (size_t)point);
        n += (size_t)point;
        dst[n++] = '.';
        memcpy(dst + n, digits + point, (size_t)(k - point));
        n += (size_t)(k - point);
    } else if (point > -6 && point <= 0) { /* 0.0015 */
        dst[n++] = '0';
        dst[n++] = '.';
        for (int i = point; i < 0; i++)
            dst[n++] = '0';
        memcpy(dst + n, digits, (size_t)k);
        n += (size_t)k;
    } else { /* 1.5e+300 */
        dst[n++] = digits[0];
        if (k > 1) {
            dst[n++] = '.';
            memcpy(dst + n, digits + 1, (size_t)(k - 1));
            n += (size_t)(k - 1);
        }
        n += (size_t)snprintf(dst + n, 32 - n, "e%c%d", exp < 0 ? '-' : '+', abs(exp));
    }
    dst[n] = '\0';
    return n;
}

/* A double in canonical JSON: NaN and the infinities as the mapping's strings. */
static int put_double(struct cn_buf *o, double x)
{
    char tmp[32];
    size_t n = cn_otlp_json_double(tmp, x);
    if (!isfinite(x))
        return cn_buf_printf(o, "\"%s\"", tmp);
    return cn_buf_append(o, tmp, n);
}

/* AnyValue */

enum any_kind {
    ANY_NONE,
    ANY_STR,
    ANY_BOOL,
    ANY_INT,
    ANY_DOUBLE,
    ANY_BYTES,
    ANY_ARRAY,
    ANY_KVLIST
};

static const struct {
    const char *camel, *snake;
} any_names[] = {
    [ANY_STR] = {"stringValue", "string_value"},    [ANY_BOOL] = {"boolValue", "bool_value"},
    [ANY_INT] = {"intValue", "int_value"},          [ANY_DOUBLE] = {"doubleValue", "double_value"},
    [ANY_BYTES] = {"bytesValue", "bytes_value"},    [ANY_ARRAY] = {"arrayValue", "array_value"},
    [ANY_KVLIST] = {"kvlistValue", "kvlist_value"},
};

/* Finds the one value of an AnyValue object (none for {}); a second one is an error, as the
 * fields form a oneof. */
static int any_pick(struct dec *d, json_t *obj, enum any_kind *out_kind, json_t **out_v,
                    const char **out_name)
{
    if (!json_is_object(obj))
        return fail(d, "not an object");
    *out_kind = ANY_NONE;
    *out_v = NULL;
    *out_name = NULL;
    const char *k;
    json_t *v;
    json_object_foreach(obj, k, v)
    {
        if (json_is_null(v))
            continue;
        for (int i = ANY_STR; i <= ANY_KVLIST; i++) {
            int camel = strcmp(k, any_names[i].camel) == 0;
            if (!camel && strcmp(k, any_names[i].snake) != 0)
                continue;
            if (*out_kind != ANY_NONE)
                return fail(d, "more than one value");
            *out_kind = (enum any_kind)i;
            *out_v = v;
            *out_name = camel ? any_names[i].camel : any_names[i].snake;
            break;
        }
    }
    return 0;
}

static int write_any(struct dec *d, json_t *obj, int cut, int depth);

static int write_values(struct dec *d, json_t *v, int kv, int cut, int depth)
{
    if (!json_is_object(v))
        return fail(d, "not an object");
    const char *name;
    json_t *vals;
    int rc = get_typed(d, v, "values", NULL, 1, &vals, &name);
    if (rc)
        return rc;
    if ((rc = put(d, kv ? "{\"kvlistValue\":{\"values\":[" : "{\"arrayValue\":{\"values\":[")))
        return rc;
    push(d, name);
    for (size_t i = 0; i < json_array_size(vals); i++) {
        json_t *e = json_array_get(vals, i);
        at(d, i);
        if (i && (rc = put(d, ",")))
            return rc;
        if (!kv) {
            if ((rc = write_any(d, e, cut, depth + 1)))
                return rc;
            continue;
        }
        if (!json_is_object(e))
            return fail(d, "not an object");
        json_t *key = field(e, "key", NULL, &name), *val = field(e, "value", NULL, &name);
        if (key && !json_is_string(key)) {
            push(d, "key");
            return fail(d, "not a string");
        }
        if ((rc = put(d, "{\"key\":")))
            return rc;
        if (put_json_str(&d->scratch, key ? json_string_value(key) : "",
                         key ? json_string_length(key) : 0))
            return oom(d);
        if ((rc = put(d, ",\"value\":")))
            return rc;
        push(d, "value");
        rc = val ? write_any(d, val, cut, depth + 1) : put(d, "{}");
        pop(d);
        if (rc || (rc = put(d, "}")))
            return rc;
    }
    pop(d);
    return put(d, "]}");
}

/* Appends the canonical OTLP JSON of the AnyValue obj, at nesting level depth (1 for an
 * attribute's value), to d->scratch: ints as strings, bytes in padded base64, doubles as
 * cn_otlp_json_double writes them, arrays and kvlists with "values" always present. With cut,
 * strings and bytes are cut as attribute values. */
static int write_any(struct dec *d, json_t *obj, int cut, int depth)
{
    enum any_kind kind;
    json_t *v;
    const char *name;
    if (depth > MAX_VALUE_DEPTH)
        return fail(d, "nesting too deep (more than %d levels)", MAX_VALUE_DEPTH);
    int rc = any_pick(d, obj, &kind, &v, &name);
    if (rc)
        return rc;
    if (kind == ANY_NONE)
        return put(d, "{}");
    struct cn_buf *o = &d->scratch;
    push(d, name);
    switch (kind) {
    case ANY_STR: {
        if (!json_is_string(v))
            return fail(d, "not a string");
        size_t n = json_string_length(v), m = n;
        if (cut && (m = cn_utf8_cut(json_string_value(v), n, d->max_value)) < n)
            d->b->truncated_values++;
        if ((rc = put(d, "{\"stringValue\":")))
            return rc;
        if (put_json_str(o, json_string_value(v), m))
            return oom(d);
        break;
    }
    case ANY_BOOL:
        if (!json_is_boolean(v))
            return fail(d, "not a boolean");
        if ((rc = put(d, json_is_true(v) ? "{\"boolValue\":true" : "{\"boolValue\":false")))
            return rc;
        break;
    case ANY_INT: {
        int64_t i;
        char tmp[24];
        if ((rc = as_i64(d, v, &i)))
            return rc;
        snprintf(tmp, sizeof(tmp), "\"%lld\"", (long long)i);
        if ((rc = put(d, "{\"intValue\":")) || (rc = put(d, tmp)))
            return rc;
        break;
    }
    case ANY_DOUBLE: {
        double x;
        if ((rc = as_double(d, v, &x)))
            return rc;
        if ((rc = put(d, "{\"doubleValue\":")))
            return rc;
        if (put_double(o, x))
            return oom(d);
        break;
    }
    case ANY_BYTES: {
        if (!json_is_string(v))
            return fail(d, "not a string");
        size_t n = json_string_length(v);
        cn_buf_reset(&d->bytes);
        if (cn_buf_reserve(&d->bytes, n / 4 * 3 + 3))
            return oom(d);
        long m = cn_base64_decode((uint8_t *)d->bytes.ptr, json_string_value(v), n);
        if (m < 0)
            return fail(d, "not base64");
        if (cut && (size_t)m > d->max_value) {
            m = (long)d->max_value;
            d->b->truncated_values++;
        }
        if ((rc = put(d, "{\"bytesValue\":\"")))
            return rc;
        if (put_b64(o, (const uint8_t *)d->bytes.ptr, (size_t)m))
            return oom(d);
        if ((rc = put(d, "\"")))
            return rc;
        break;
    }
    case ANY_ARRAY:
    case ANY_KVLIST:
        if ((rc = write_values(d, v, kind == ANY_KVLIST, cut, depth)))
            return rc;
        break;
    case ANY_NONE:
        break;
    }
    pop(d);
    return put(d, "}");
}

/* Decodes the AnyValue obj into out, copying into the arena. With cut, it is an attribute
 * value: strings and bytes past max_attr_value_bytes are cut and counted. */
static int any_val(struct dec *d, json_t *obj, int cut, struct cn_val *out)
{
    enum any_kind kind;
    json_t *v;
    const char *name;
    int rc = any_pick(d, obj, &kind, &v, &name);
    if (rc)
        return rc;
    memset(out, 0, sizeof(*out));
    if (kind == ANY_NONE)
        return 0;
    if (kind == ANY_ARRAY || kind == ANY_KVLIST) {
        cn_buf_reset(&d->scratch);
        if ((rc = write_any(d, obj, cut, 1)))
            return rc;
        out->type = kind == ANY_ARRAY ? CN_VAL_ARRAY : CN_VAL_KVLIST;
        return dup(d, d->scratch.ptr, d->scratch.len, &out->u.s);
    }
    push(d, name);
    switch (kind) {
    case ANY_STR: {
        if (!json_is_string(v))
            return fail(d, "not a string");
        size_t n = json_string_length(v), m = n;
        if (cut && (m = cn_utf8_cut(json_string_value(v), n, d->max_value)) < n)
            d->b->truncated_values++;
        out->type = CN_VAL_STR;
        rc = dup(d, json_string_value(v), m, &out->u.s);
        break;
    }
    case ANY_BOOL:
        if (!json_is_boolean(v))
            return fail(d, "not a boolean");
        out->type = CN_VAL_BOOL;
        out->u.b = json_is_true(v);
        break;
    case ANY_INT:
        out->type = CN_VAL_INT;
        rc = as_i64(d, v, &out->u.i);
        break;
    case ANY_DOUBLE:
        out->type = CN_VAL_DOUBLE;
        rc = as_double(d, v, &out->u.d);
        break;
    case ANY_BYTES: {
        if (!json_is_string(v))
            return fail(d, "not a string");
        size_t n = json_string_length(v);
        uint8_t *p;
        if (d->keep) {
            p = cn_arena_alloc(&d->b->arena, n / 4 * 3 + 3);
        } else { /* checked only: decoded where nested bytes go */
            cn_buf_reset(&d->bytes);
            p = cn_buf_reserve(&d->bytes, n / 4 * 3 + 3) ? NULL : (uint8_t *)d->bytes.ptr;
        }
        if (!p)
            return oom(d);
        long m = cn_base64_decode(p, json_string_value(v), n);
        if (m < 0)
            return fail(d, "not base64");
        if (cut && (size_t)m > d->max_value) {
            m = (long)d->max_value;
            d->b->truncated_values++;
        }
        out->type = CN_VAL_BYTES;
        out->u.s = (struct cn_slice){m && d->keep ? (const char *)p : empty, (size_t)m};
        break;
    }
    default:
        break;
    }
    pop(d);
    return rc;
}

/* Attributes */

/* Reads one KeyValue into kv; when it is dropped (keep 0) it is only checked, and what it
 * would add to the truncation counters is taken back. */
static int get_kv(struct dec *d, json_t *e, int keep, struct cn_kv *kv)
{
    const char *name;
    json_t *v;
    struct trunc t = trunc_save(d->b);
    int outer = d->keep, rc;
    memset(kv, 0, sizeof(*kv));
    if (!json_is_object(e))
        return fail(d, "not an object");
    d->keep = outer && keep;
    if ((rc = get_str(d, e, "key", NULL, &kv->key)))
        return rc;
    if ((v = field(e, "value", NULL, &name))) {
        push(d, name);
        if ((rc = any_val(d, v, 1, &kv->val)))
            return rc;
        pop(d);
    }
    if (!keep)
        trunc_restore(d->b, t);
    d->keep = outer;
    return 0;
}

/* Reads obj's "attributes" and "droppedAttributesCount": past max_attrs, attributes are
 * checked, dropped and counted; the sender's count is added to the dropped ones. */
static int get_attrs(struct dec *d, json_t *obj, struct cn_kvs *out)
{
    const char *name;
    json_t *a;
    memset(out, 0, sizeof(*out));
    int rc = get_typed(d, obj, "attributes", NULL, 1, &a, &name);
    if (rc)
        return rc;
    size_t n = json_array_size(a), keep = d->keep ? CN_MIN(n, (size_t)d->max_attrs) : 0;
    if (keep && !(out->items = cn_arena_calloc(&d->b->arena, keep, sizeof(*out->items))))
        return oom(d);
    push(d, name);
    for (size_t i = 0; i < n; i++) {
        struct cn_kv dropped;
        at(d, i);
        if ((rc = get_kv(d, json_array_get(a, i), i < keep, i < keep ? &out->items[i] : &dropped)))
            return rc;
    }
    pop(d);
    out->num = (uint32_t)keep;
    out->dropped = (uint32_t)CN_MIN(n - keep, UINT32_MAX);
    d->b->truncated_attrs += n - keep;
    uint32_t sent = 0;
    if ((rc = get_u32(d, obj, "droppedAttributesCount", "dropped_attributes_count", &sent)))
        return rc;
    add_sat(&out->dropped, sent);
    return 0;
}

/* Resources and scopes */

static int get_resource(struct dec *d, json_t *rs, const struct cn_resource **out)
{
    struct cn_resource *res = cn_arena_calloc(&d->b->arena, 1, sizeof(*res));
    const char *name;
    json_t *r;
    int rc;
    if (!res)
        return oom(d);
    if ((rc = get_typed(d, rs, "resource", NULL, 0, &r, &name)))
        return rc;
    if (r) {
        push(d, name);
        if ((rc = get_attrs(d, r, &res->attrs)))
            return rc;
        pop(d);
    }
    /* As in the protobuf decoder: the last string service.name, kept or dropped, names the
     * service whole (the value limit cuts the attribute, not the service's identity); an
     * empty one counts as absent. The attributes were checked above. */
    json_t *a = r ? json_object_get(r, "attributes") : NULL, *service = NULL;
    for (size_t i = 0; i < json_array_size(a); i++) {
        json_t *e = json_array_get(a, i), *v, *s;
        enum any_kind kind;
        const char *k = json_string_value(json_object_get(e, "key"));
        if (k && strcmp(k, "service.name") == 0 && (v = field(e, "value", NULL, &name)) &&
            any_pick(d, v, &kind, &s, &name) == 0 && kind == ANY_STR)
            service = s;
    }
    res->service = CN_SLICE_LIT("unknown_service");
    if (json_string_length(service) &&
        (rc = dup(d, json_string_value(service), json_string_length(service), &res->service)))
        return rc;
    if ((rc = get_str(d, rs, "schemaUrl", "schema_url", &res->schema_url)))
        return rc;
    *out = res;
    return 0;
}

static int get_scope(struct dec *d, json_t *ss, const struct cn_scope **out)
{
    struct cn_scope *sc = cn_arena_calloc(&d->b->arena, 1, sizeof(*sc));
    const char *name;
    json_t *s;
    int rc;
    if (!sc)
        return oom(d);
    sc->name = sc->version = (struct cn_slice){empty, 0};
    if ((rc = get_typed(d, ss, "scope", NULL, 0, &s, &name)))
        return rc;
    if (s) {
        push(d, name);
        if ((rc = get_str(d, s, "name", NULL, &sc->name)) ||
            (rc = get_str(d, s, "version", NULL, &sc->version)) ||
            (rc = get_attrs(d, s, &sc->attrs)))
            return rc;
        pop(d);
    }
    /* cn_scope has no schema URL: the field's type is checked, its value not kept. */
    json_t *u = field(ss, "schemaUrl", "schema_url", &name);
    if (u && !json_is_string(u)) {
        push(d, name);
        return fail(d, "not a string");
    }
    *out = sc;
    return 0;
}

/* Spans */

static const char *const kind_names[] = {
    "SPAN_KIND_UNSPECIFIED", "SPAN_KIND_INTERNAL", "SPAN_KIND_SERVER",
    "SPAN_KIND_CLIENT",      "SPAN_KIND_PRODUCER", "SPAN_KIND_CONSUMER",
};
static const char *const status_names[] = {"STATUS_CODE_UNSET", "STATUS_CODE_OK",
                                           "STATUS_CODE_ERROR"};

static int get_event(struct dec *d, json_t *o, struct cn_event *ev)
{
    if (!json_is_object(o))
        return fail(d, "not an object");
    int rc;
    if ((rc = get_u64(d, o, "timeUnixNano", "time_unix_nano", UINT64_MAX, &ev->time_ns)) ||
        (rc = get_str(d, o, "name", NULL, &ev->name)) || (rc = get_attrs(d, o, &ev->attrs)))
        return rc;
    return 0;
}

static int get_link(struct dec *d, json_t *o, struct cn_link *l)
{
    if (!json_is_object(o))
        return fail(d, "not an object");
    int rc;
    /* As in the protobuf decoder, a link's IDs may be empty; malformed ones refuse the span. */
    if ((rc = get_id(d, o, "traceId", "trace_id", l->trace_id, 16, ID_OPTIONAL)) ||
        (rc = get_id(d, o, "spanId", "span_id", l->span_id, 8, ID_OPTIONAL)) ||
        (rc = get_str(d, o, "traceState", "trace_state", &l->trace_state)) ||
        (rc = get_attrs(d, o, &l->attrs)) || (rc = get_u32(d, o, "flags", NULL, &l->flags)))
        return rc;
    return 0;
}

/* Reads a span's events or links: the first max are kept, the rest checked, dropped and
 * counted. */
static int get_list(struct dec *d, json_t *o, const char *camel, uint32_t max, size_t size,
                    int (*one)(struct dec *, json_t *, void *), void **out, uint32_t *out_num,
                    uint32_t *out_dropped, uint64_t *truncated)
{
    const char *name;
    json_t *a;
    int rc = get_typed(d, o, camel, NULL, 1, &a, &name);
    if (rc)
        return rc;
    size_t n = json_array_size(a), keep = d->keep ? CN_MIN(n, (size_t)max) : 0;
    char *items = NULL;
    if (keep && !(items = cn_arena_calloc(&d->b->arena, keep, size)))
        return oom(d);
    push(d, name);
    for (size_t i = 0; i < n; i++) {
        union {
            struct cn_event e;
            struct cn_link l;
        } dropped;
        struct trunc t = trunc_save(d->b);
        int outer = d->keep;
        at(d, i);
        CN_ASSERT(size <= sizeof(dropped));
        memset(&dropped, 0, sizeof(dropped));
        d->keep = outer && i < keep;
        if ((rc = one(d, json_array_get(a, i), i < keep ? items + i * size : (char *)&dropped)))
            return rc;
        if (i >= keep)
            trunc_restore(d->b, t);
        d->keep = outer;
    }
    pop(d);
    *out = items;
    *out_num = (uint32_t)keep;
    add_sat(out_dropped, n - keep);
    *truncated += n - keep;
    return 0;
}

static int one_event(struct dec *d, json_t *o, void *p)
{
    return get_event(d, o, p);
}

static int one_link(struct dec *d, json_t *o, void *p)
{
    return get_link(d, o, p);
}

static int get_span(struct dec *d, json_t *o, void *rec)
{
    struct cn_span *sp = rec;
    const char *name;
    json_t *st;
    void *list;
    uint32_t sent = 0;
    int rc;
    if (!json_is_object(o))
        return fail(d, "not an object");
    if ((rc = get_id(d, o, "traceId", "trace_id", sp->trace_id, 16, ID_REQUIRED)) ||
        (rc = get_id(d, o, "spanId", "span_id", sp->span_id, 8, ID_REQUIRED)) ||
        (rc = get_id(d, o, "parentSpanId", "parent_span_id", sp->parent_id, 8, ID_OPTIONAL)) ||
        (rc = get_str(d, o, "traceState", "trace_state", &sp->trace_state)) ||
        (rc = get_str(d, o, "name", NULL, &sp->name)) ||
        (rc = get_enum(d, o, "kind", NULL, kind_names, CN_ARRAY_LEN(kind_names), "not a span kind",
                       &sp->kind)) ||
        (rc = get_u64(d, o, "startTimeUnixNano", "start_time_unix_nano", UINT64_MAX,
                      &sp->start_ns)) ||
        (rc = get_u64(d, o, "endTimeUnixNano", "end_time_unix_nano", UINT64_MAX, &sp->end_ns)) ||
        (rc = get_attrs(d, o, &sp->attrs)))
        return rc;
    if ((rc = get_list(d, o, "events", d->max_events, sizeof(struct cn_event), one_event, &list,
                       &sp->num_events, &sp->dropped_events, &d->b->truncated_events)))
        return rc;
    sp->events = list;
    if ((rc = get_u32(d, o, "droppedEventsCount", "dropped_events_count", &sent)))
        return rc;
    add_sat(&sp->dropped_events, sent);
    if ((rc = get_list(d, o, "links", d->max_links, sizeof(struct cn_link), one_link, &list,
                       &sp->num_links, &sp->dropped_links, &d->b->truncated_links)))
        return rc;
    sp->links = list;
    sent = 0;
    if ((rc = get_u32(d, o, "droppedLinksCount", "dropped_links_count", &sent)))
        return rc;
    add_sat(&sp->dropped_links, sent);
    sp->status_message = (struct cn_slice){empty, 0};
    if ((rc = get_typed(d, o, "status", NULL, 0, &st, &name)))
        return rc;
    if (st) {
        push(d, name);
        if ((rc = get_enum(d, st, "code", NULL, status_names, CN_ARRAY_LEN(status_names),
                           "not a status code", &sp->status_code)) ||
            (rc = get_str(d, st, "message", NULL, &sp->status_message)))
            return rc;
        pop(d);
    }
    if ((rc = get_u32(d, o, "flags", NULL, &sp->flags)))
        return rc;
    if (sp->end_ns < sp->start_ns) {
        push(d, "endTimeUnixNano");
        refuse(d, "before startTimeUnixNano");
        pop(d);
    }
    return 0;
}

/* Logs */

static const char *const severity_names[] = {
    "SEVERITY_NUMBER_UNSPECIFIED", "SEVERITY_NUMBER_TRACE",  "SEVERITY_NUMBER_TRACE2",
    "SEVERITY_NUMBER_TRACE3",      "SEVERITY_NUMBER_TRACE4", "SEVERITY_NUMBER_DEBUG",
    "SEVERITY_NUMBER_DEBUG2",      "SEVERITY_NUMBER_DEBUG3", "SEVERITY_NUMBER_DEBUG4",
    "SEVERITY_NUMBER_INFO",        "SEVERITY_NUMBER_INFO2",  "SEVERITY_NUMBER_INFO3",
    "SEVERITY_NUMBER_INFO4",       "SEVERITY_NUMBER_WARN",   "SEVERITY_NUMBER_WARN2",
    "SEVERITY_NUMBER_WARN3",       "SEVERITY_NUMBER_WARN4",  "SEVERITY_NUMBER_ERROR",
    "SEVERITY_NUMBER_ERROR2",      "SEVERITY_NUMBER_ERROR3", "SEVERITY_NUMBER_ERROR4",
    "SEVERITY_NUMBER_FATAL",       "SEVERITY_NUMBER_FATAL2", "SEVERITY_NUMBER_FATAL3",
    "SEVERITY_NUMBER_FATAL4",
};

static int get_log(struct dec *d, json_t *o, void *rec)
{
    struct cn_log *lg = rec;
    const char *name;
    json_t *body;
    int rc;
    if (!json_is_object(o))
        return fail(d, "not an object");
    if ((rc = get_u64(d, o, "timeUnixNano", "time_unix_nano", UINT64_MAX, &lg->time_ns)) ||
        (rc = get_u64(d, o, "observedTimeUnixNano", "observed_time_unix_nano", UINT64_MAX,
                      &lg->observed_ns)) ||
        (rc = get_enum(d, o, "severityNumber", "severity_number", severity_names,
                       CN_ARRAY_LEN(severity_names), "not a severity number",
                       &lg->severity_number)) ||
        (rc = get_str(d, o, "severityText", "severity_text", &lg->severity_text)))
        return rc;
    if ((body = field(o, "body", NULL, &name))) {
        push(d, name);
        if ((rc = any_val(d, body, 0, &lg->body)))
            return rc;
        pop(d);
    }
    if ((rc = get_attrs(d, o, &lg->attrs)) || (rc = get_u32(d, o, "flags", NULL, &lg->flags)) ||
        (rc = get_id(d, o, "traceId", "trace_id", lg->trace_id, 16, ID_OPTIONAL)) ||
        (rc = get_id(d, o, "spanId", "span_id", lg->span_id, 8, ID_OPTIONAL)) ||
        (rc = get_str(d, o, "eventName", "event_name", &lg->event_name)))
        return rc;
    return 0;
}

/* The walk shared by both signals: resource{Spans,Logs}[].scope{Spans,Logs}[].records[]. */
struct signal {
    const char *res_camel, *res_snake;
    const char *scope_camel, *scope_snake;
    const char *rec_camel, *rec_snake;
    size_t rec_size;
    size_t res_off, scope_off; /* offsets of the resource and scope pointers in a record */
    int (*one)(struct dec *d, json_t *o, void *rec);
};

static const struct signal traces_signal = {
    "resourceSpans",
    "resource_spans",
    "scopeSpans",
    "scope_spans",
    "spans",
    NULL,
    sizeof(struct cn_span),
    offsetof(struct cn_span, resource),
    offsetof(struct cn_span, scope),
    get_span,
};

static const struct signal logs_signal = {
    "resourceLogs",
    "resource_logs",
    "scopeLogs",
    "scope_logs",
    "logRecords",
    "log_records",
    sizeof(struct cn_log),
    offsetof(struct cn_log, resource),
    offsetof(struct cn_log, scope),
    get_log,
};

/* Records in a well-typed body; wrong types are left for the walk to report. */
static size_t count(json_t *root, const struct signal *sig)
{
    const char *name;
    size_t total = 0;
    json_t *rss = field(root, sig->res_camel, sig->res_snake, &name);
    for (size_t i = 0; i < json_array_size(rss); i++) {
        json_t *rs = json_array_get(rss, i);
        json_t *sss =
            json_is_object(rs) ? field(rs, sig->scope_camel, sig->scope_snake, &name) : NULL;
        for (size_t j = 0; j < json_array_size(sss); j++) {
            json_t *ss = json_array_get(sss, j);
            json_t *recs =
                json_is_object(ss) ? field(ss, sig->rec_camel, sig->rec_snake, &name) : NULL;
            total += json_array_size(recs);
        }
    }
    return total;
}

static int walk(struct dec *d, json_t *root, const struct signal *sig, void **out_recs,
                size_t *out_num)
{
    const char *rname, *sname, *name;
    json_t *rss, *sss, *recs;
    int rc;
    if (!json_is_object(root))
        return fail(d, "not an object");
    size_t total = count(root, sig), num = 0;
    char *arr = NULL;
    if (total && !(arr = cn_arena_alloc(&d->b->arena, total * sig->rec_size)))
        return oom(d);
    if ((rc = get_typed(d, root, sig->res_camel, sig->res_snake, 1, &rss, &rname)))
        return rc;
    push(d, rname);
    for (size_t i = 0; i < json_array_size(rss); i++) {
        json_t *rs = json_array_get(rss, i);
        const struct cn_resource *res = NULL;
        at(d, i);
        if (!json_is_object(rs))
            return fail(d, "not an object");
        if ((rc = get_resource(d, rs, &res)) ||
            (rc = get_typed(d, rs, sig->scope_camel, sig->scope_snake, 1, &sss, &sname)))
            return rc;
        push(d, sname);
        for (size_t j = 0; j < json_array_size(sss); j++) {
            json_t *ss = json_array_get(sss, j);
            const struct cn_scope *scope = NULL;
            at(d, j);
            if (!json_is_object(ss))
                return fail(d, "not an object");
            if ((rc = get_scope(d, ss, &scope)) ||
                (rc = get_typed(d, ss, sig->rec_camel, sig->rec_snake, 1, &recs, &name)))
                return rc;
            push(d, name);
            for (size_t k = 0; k < json_array_size(recs); k++) {
                char *rec = arr + num * sig->rec_size;
                struct trunc t = trunc_save(d->b);
                at(d, k);
                memset(rec, 0, sig->rec_size);
                if ((rc = sig->one(d, json_array_get(recs, k), rec)))
                    return rc;
                if (d->pending) { /* a refused record adds nothing to the truncations */
                    trunc_restore(d->b, t);
                    cn_tel_batch_reject(d->b, "%s", d->reason);
                    d->pending = 0;
                    continue;
                }
                memcpy(rec + sig->res_off, &res, sizeof(res));
                memcpy(rec + sig->scope_off, &scope, sizeof(scope));
                num++;
            }
            pop(d);
        }
        pop(d);
    }
    pop(d);
    *out_recs = num ? arr : NULL;
    *out_num = num;
    return 0;
}

/* Parses the body. An integer literal past int64 makes jansson fail: writers produce one for
 * a double such as 1e20 (JavaScript and Go write it in plain digits), so the body is then read
 * again with every number as a double. Spec-following writers put int64 values in strings,
 * which this does not touch. */
static json_t *parse(const char *buf, size_t len, json_error_t *je, int *out_as_reals)
{
    size_t flags = JSON_DECODE_ANY | JSON_ALLOW_NUL;
    json_t *root = json_loadb(buf ? buf : "", len, flags, je);
    *out_as_reals = 0;
    if (!root && json_error_code(je) == json_error_numeric_overflow) {
        root = json_loadb(buf ? buf : "", len, flags | JSON_DECODE_INT_AS_REAL, je);
        *out_as_reals = root != NULL;
    }
    return root;
}

static int decode(struct cn_tel_batch *b, const char *buf, size_t len,
                  const struct cn_tel_limits *lim, char *err, size_t err_len,
                  const struct signal *sig, void **out_recs, size_t *out_num)
{
    struct dec d;
    *out_recs = NULL;
    *out_num = 0;
    memset(&d, 0, sizeof(d));
    d.b = b;
    d.keep = 1;
    d.max_attrs = lim && lim->max_attrs ? lim->max_attrs : UINT32_MAX;
    d.max_value = lim && lim->max_attr_value_bytes ? lim->max_attr_value_bytes : UINT32_MAX;
    d.max_events = lim && lim->max_events ? lim->max_events : UINT32_MAX;
    d.max_links = lim && lim->max_links ? lim->max_links : UINT32_MAX;
    if (!err)
        err_len = 0;
    d.err = err;
    d.err_len = err_len;
    if (err_len)
        err[0] = '\0';
    cn_buf_init(&d.scratch, b->arena.max);
    cn_buf_init(&d.bytes, b->arena.max);

    json_error_t je;
    json_t *root = parse(buf, len, &je, &d.ints_as_reals);
    if (!root) {
        if (json_error_code(&je) == json_error_out_of_memory)
            return oom(&d);
        if (err_len) {
            snprintf(err, err_len, "invalid JSON at line %d, column %d: %s", je.line, je.column,
                     je.text);
            for (char *p = err; *p; p++)
                if ((unsigned char)*p < 0x20 || (unsigned char)*p > 0x7e)
                    *p = '?';
        }
        return CN_ESYNTAX;
    }

    /* Counters as they were, to put back on failure. */
    uint64_t rejected = b->rejected;
    struct trunc t = trunc_save(b);
    char reject_msg[sizeof(b->reject_msg)];
    memcpy(reject_msg, b->reject_msg, sizeof(reject_msg));

    int rc = walk(&d, root, sig, out_recs, out_num);
    json_decref(root);
    cn_buf_release(&d.scratch);
    cn_buf_release(&d.bytes);
    if (rc) {
        *out_recs = NULL;
        *out_num = 0;
        b->rejected = rejected;
        trunc_restore(b, t);
        memcpy(b->reject_msg, reject_msg, sizeof(reject_msg));
    }
    return rc;
}

int cn_otlp_json_decode_traces(struct cn_tel_batch *b, const char *buf, size_t len,
                               const struct cn_tel_limits *lim, char *err, size_t err_len)
{
    void *recs;
    CN_ASSERT(b->num_spans == 0);
    int rc = decode(b, buf, len, lim, err, err_len, &traces_signal, &recs, &b->num_spans);
    b->spans = recs;
    return rc;
}

int cn_otlp_json_decode_logs(struct cn_tel_batch *b, const char *buf, size_t len,
                             const struct cn_tel_limits *lim, char *err, size_t err_len)
{
    void *recs;
    CN_ASSERT(b->num_logs == 0);
    int rc = decode(b, buf, len, lim, err, err_len, &logs_signal, &recs, &b->num_logs);
    b->logs = recs;
    return rc;
}

/* Responses */

static int encode_response(struct cn_buf *out, const char *count_key, uint64_t rejected,
                           const char *msg)
{
    size_t start = out->len;
    int has_msg = msg && *msg, rc;
    if (rejected == 0 && !has_msg)
        return cn_buf_puts(out, "{}");
    if ((rc = cn_buf_puts(out, "{\"partialSuccess\":{\"")) || (rc = cn_buf_puts(out, count_key)) ||
        (rc = cn_buf_puts(out, "\":\"")) || (rc = cn_buf_append_u64(out, rejected)) ||
        (rc = cn_buf_puts(out, "\"")))
        goto fail;
    if (has_msg && ((rc = cn_buf_puts(out, ",\"errorMessage\":")) ||
                    (rc = put_json_str(out, msg, strlen(msg)))))
        goto fail;
    if ((rc = cn_buf_puts(out, "}}")))
        goto fail;
    return 0;
fail:
    out->len = start;
    return rc;
}

int cn_otlp_json_encode_trace_response(struct cn_buf *out, uint64_t rejected, const char *msg)
{
    return encode_response(out, "rejectedSpans", rejected, msg);
}

int cn_otlp_json_encode_logs_response(struct cn_buf *out, uint64_t rejected, const char *msg)
{
    return encode_response(out, "rejectedLogRecords", rejected, msg);
}
