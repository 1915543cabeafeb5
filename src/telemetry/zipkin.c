/* Zipkin v2 JSON decoder: jansson parses the body, the walk below maps each span onto the
 * OTLP-shaped model (see zipkin.h) copying what it keeps into the batch's arena. */
#include "telemetry/zipkin.h"

#include "base/utf8.h"
#include "telemetry/json-num.h"
#include "telemetry/json-path.h"
#include "telemetry/otlp-json.h"

#include <arpa/inet.h>
#include <jansson.h>
#include <math.h>

/* Resources by localEndpoint.serviceName: open addressing, size a power of two, at most half
 * full. key is the serviceName as sent ("" when absent). */
struct res_slot {
    struct cn_slice key;
    struct cn_resource *res;
};

/* State of one decode call. pending is set once the span being decoded is refused; decoding
 * goes on so that a malformed field later in the span is still a hard error. */
struct dec {
    struct cn_tel_batch *b;
    uint32_t max_attrs, max_value, max_events; /* UINT32_MAX when unlimited */
    char *err;
    size_t err_len;
    struct cn_jpath jp;
    int pending;
    char reason[sizeof(((struct cn_tel_batch *)0)->reject_msg)];
    struct res_slot *slots;
    size_t num_slots;
    const struct cn_scope *scope;
};

static const char empty[] = "";

/* Paths and messages */

static void push(struct dec *d, const char *key)
{
    cn_jpath_push(&d->jp, key);
}

static void at(struct dec *d, size_t i)
{
    cn_jpath_at(&d->jp, i);
}

static void pop(struct dec *d)
{
    cn_jpath_pop(&d->jp);
}

/* A tag key for a path: itself when short printable ASCII, else "?". */
static const char *path_key(const char *k)
{
    size_t n = 0;
    for (; k[n]; n++)
        if (n == 64 || (unsigned char)k[n] < 0x20 || (unsigned char)k[n] > 0x7e)
            return "?";
    return k;
}

static size_t fmt_path(const struct dec *d, char *dst, size_t cap)
{
    return cn_jpath_format(&d->jp, dst, cap);
}

static void printable(char *s)
{
    for (; *s; s++)
        if ((unsigned char)*s < 0x20 || (unsigned char)*s > 0x7e)
            *s = '?';
}

/* A hard error at the current path. */
static int fail(struct dec *d, const char *msg)
{
    if (d->err_len) {
        size_t n = fmt_path(d, d->err, d->err_len);
        snprintf(d->err + n, d->err_len - n, ": %s", msg);
        printable(d->err);
    }
    return CN_ESYNTAX;
}

static int oom(struct dec *d)
{
    if (d->err_len)
        snprintf(d->err, d->err_len, "batch too large for the decode budget");
    return CN_ENOMEM;
}

/* Refuses the span being decoded, with the reason at the current path. */
static void refuse(struct dec *d, const char *msg)
{
    if (d->pending)
        return;
    d->pending = 1;
    if (d->b->rejected == 0) {
        size_t n = fmt_path(d, d->reason, sizeof(d->reason));
        snprintf(d->reason + n, sizeof(d->reason) - n, ": %s", msg);
        printable(d->reason);
    }
}

/* Values */

static int dup(struct dec *d, const char *p, size_t n, struct cn_slice *out)
{
    if (n == 0) {
        *out = (struct cn_slice){empty, 0};
        return 0;
    }
    *out = cn_arena_dup(&d->b->arena, p, n);
    return out->ptr ? 0 : oom(d);
}

/* The field key of obj; NULL when absent or null (Zipkin reads null as absent). */
static json_t *field(json_t *obj, const char *key)
{
    json_t *v = json_object_get(obj, key);
    return json_is_null(v) ? NULL : v;
}

/* An unsigned integer as a JSON number or a decimal string, at most max. */
static int as_u64(struct dec *d, json_t *v, uint64_t max, uint64_t *out)
{
    const char *why = cn_json_u64(v, max, out);
    return why ? fail(d, why) : 0;
}

/* Reads an optional field of obj into *out (left as is when absent). */
static int get_u64(struct dec *d, json_t *obj, const char *key, uint64_t max, uint64_t *out)
{
    json_t *v = field(obj, key);
    if (!v)
        return 0;
    push(d, key);
    int rc = as_u64(d, v, max, out);
    pop(d);
    return rc;
}

/* An optional string field, not copied: *out is NULL when absent. */
static int get_str(struct dec *d, json_t *obj, const char *key, json_t **out)
{
    *out = field(obj, key);
    if (*out && !json_is_string(*out)) {
        push(d, key);
        return fail(d, "not a string");
    }
    return 0;
}

static struct cn_slice str_of(json_t *v)
{
    return v ? (struct cn_slice){json_string_value(v), json_string_length(v)}
             : (struct cn_slice){empty, 0};
}

static int get_bool(struct dec *d, json_t *obj, const char *key, int *out)
{
    json_t *v = field(obj, key);
    *out = 0;
    if (!v)
        return 0;
    if (!json_is_boolean(v)) {
        push(d, key);
        return fail(d, "not a boolean");
    }
    *out = json_is_true(v);
    return 0;
}

/* Reads a hex ID of at most 2n digits into dst, left-padded with zeros. An absent or empty
 * ID is all zero; a malformed one refuses the span. */
static int get_id(struct dec *d, json_t *obj, const char *key, uint8_t *dst, size_t n, int required)
{
    json_t *v;
    int rc = get_str(d, obj, key, &v);
    memset(dst, 0, n);
    if (rc)
        return rc;
    struct cn_slice s = str_of(v);
    push(d, key);
    if (s.len == 0) {
        if (required)
            refuse(d, "missing");
    } else if (s.len > 2 * n) {
        refuse(d, n == 16 ? "longer than 32 hex digits" : "longer than 16 hex digits");
    } else {
        char hex[32];
        memset(hex, '0', 2 * n - s.len);
        memcpy(hex + 2 * n - s.len, s.ptr, s.len);
        if (cn_hex_decode(dst, n, (struct cn_slice){hex, 2 * n}) != 0)
            refuse(d, "not hex");
        else if (required && cn_id_is_zero(dst, n))
            refuse(d, "all zero");
    }
    pop(d);
    return 0;
}

/* Attributes */

/* Attributes of one span being built: cap slots, the rest dropped and counted. */
struct attrs {
    struct cn_kvs *kvs;
    size_t cap;
};

/* The next slot, or NULL when the attribute is dropped (counted). */
static struct cn_kv *slot(struct dec *d, struct attrs *a)
{
    if (a->kvs->num < a->cap)
        return &a->kvs->items[a->kvs->num++];
    if (a->kvs->dropped < UINT32_MAX)
        a->kvs->dropped++;
    d->b->truncated_attrs++;
    return NULL;
}

/* A string attribute; key must outlive the batch (a literal) or be copied by the caller. */
static int add_str(struct dec *d, struct attrs *a, struct cn_slice key, struct cn_slice val)
{
    struct cn_kv *kv = slot(d, a);
    if (!kv)
        return 0;
    size_t m = cn_utf8_cut(val.ptr, val.len, d->max_value);
    if (m < val.len)
        d->b->truncated_values++;
    kv->key = key;
    kv->val.type = CN_VAL_STR;
    return dup(d, val.ptr, m, &kv->val.u.s);
}

static void add_int(struct dec *d, struct attrs *a, const char *key, int64_t v)
{
    struct cn_kv *kv = slot(d, a);
    if (kv) {
        kv->key = cn_slice_of(key);
        kv->val.type = CN_VAL_INT;
        kv->val.u.i = v;
    }
}

static void add_bool(struct dec *d, struct attrs *a, const char *key)
{
    struct cn_kv *kv = slot(d, a);
    if (kv) {
        kv->key = cn_slice_of(key);
        kv->val.type = CN_VAL_BOOL;
        kv->val.u.b = 1;
    }
}

/* A tag value as text: strings as they are, numbers and booleans as their JSON text (the
 * Zipkin server reads numbers as strings too). */
static int tag_text(struct dec *d, json_t *v, char tmp[32], struct cn_slice *out)
{
    if (json_is_string(v)) {
        *out = str_of(v);
    } else if (json_is_integer(v)) {
        *out = (struct cn_slice){
            tmp, (size_t)snprintf(tmp, 32, "%lld", (long long)json_integer_value(v))};
    } else if (json_is_real(v)) {
        *out = (struct cn_slice){tmp, cn_otlp_json_double(tmp, json_real_value(v))};
    } else if (json_is_boolean(v)) {
        *out = cn_slice_of(json_is_true(v) ? "true" : "false");
    } else {
        return fail(d, "not a string");
    }
    return 0;
}

/* Endpoints */

struct endpoint {
    json_t *service, *ipv4, *ipv6; /* strings or NULL */
    uint64_t port;                 /* 0 when absent */
};

static int get_endpoint(struct dec *d, json_t *o, const char *key, struct endpoint *ep)
{
    json_t *e = field(o, key);
    int rc;
    memset(ep, 0, sizeof(*ep));
    if (!e)
        return 0;
    push(d, key);
    if (!json_is_object(e))
        return fail(d, "not an object");
    if ((rc = get_str(d, e, "serviceName", &ep->service)) ||
        (rc = get_str(d, e, "ipv4", &ep->ipv4)) || (rc = get_str(d, e, "ipv6", &ep->ipv6)) ||
        (rc = get_u64(d, e, "port", 65535, &ep->port)))
        return rc;
    pop(d);
    return 0;
}

/* The endpoint's address: ipv4 when it parses, else ipv6 when it parses. */
static json_t *endpoint_ip(const struct endpoint *ep)
{
    unsigned char addr[16];
    if (ep->ipv4 && strlen(json_string_value(ep->ipv4)) == json_string_length(ep->ipv4) &&
        inet_pton(AF_INET, json_string_value(ep->ipv4), addr) == 1)
        return ep->ipv4;
    if (ep->ipv6 && strlen(json_string_value(ep->ipv6)) == json_string_length(ep->ipv6) &&
        inet_pton(AF_INET6, json_string_value(ep->ipv6), addr) == 1)
        return ep->ipv6;
    return NULL;
}

/* Resources */

static uint64_t hash(struct cn_slice s)
{
    uint64_t h = 0xcbf29ce484222325u;
    for (size_t i = 0; i < s.len; i++)
        h = (h ^ (unsigned char)s.ptr[i]) * 0x100000001b3u;
    return h;
}

/* The resource of spans whose localEndpoint.serviceName is name ("" for none). */
static int get_resource(struct dec *d, struct cn_slice name, const struct cn_resource **out)
{
    size_t mask = d->num_slots - 1, i = hash(name) & mask;
    while (d->slots[i].res && !cn_slice_eq(d->slots[i].key, name))
        i = (i + 1) & mask;
    struct res_slot *s = &d->slots[i];
    if (!s->res) {
        struct cn_resource *res = cn_arena_calloc(&d->b->arena, 1, sizeof(*res));
        int rc;
        if (!res)
            return oom(d);
        res->service = CN_SLICE_LIT("unknown_service");
        res->schema_url = (struct cn_slice){empty, 0};
        if ((rc = dup(d, name.ptr, name.len, &s->key)))
            return rc;
        /* The value limit cuts the service.name attribute, not the service's name. */
        if (name.len) {
            struct attrs a = {&res->attrs, 1};
            if (!(res->attrs.items = cn_arena_calloc(&d->b->arena, 1, sizeof(struct cn_kv))))
                return oom(d);
            if ((rc = add_str(d, &a, CN_SLICE_LIT("service.name"), name)))
                return rc;
            res->service = s->key;
        }
        s->res = res;
    }
    *out = s->res;
    return 0;
}

/* Spans */

static const struct {
    const char *name;
    uint8_t kind;
} kinds[] = {
    {"CLIENT", CN_KIND_CLIENT},
    {"SERVER", CN_KIND_SERVER},
    {"PRODUCER", CN_KIND_PRODUCER},
    {"CONSUMER", CN_KIND_CONSUMER},
};

static const char *const status_names[] = {"UNSET", "OK", "ERROR"};

static int get_annotations(struct dec *d, json_t *o, struct cn_span *sp)
{
    json_t *a = field(o, "annotations");
    int rc;
    if (!a)
        return 0;
    push(d, "annotations");
    if (!json_is_array(a))
        return fail(d, "not an array");
    size_t n = json_array_size(a), keep = CN_MIN(n, (size_t)d->max_events);
    if (keep && !(sp->events = cn_arena_calloc(&d->b->arena, keep, sizeof(*sp->events))))
        return oom(d);
    /* Every annotation is checked, as the Zipkin server refuses an incomplete one. */
    for (size_t i = 0; i < n; i++) {
        json_t *e = json_array_get(a, i), *v;
        uint64_t ts = 0;
        at(d, i);
        if (!json_is_object(e))
            return fail(d, "not an object");
        if ((rc = get_u64(d, e, "timestamp", UINT64_MAX / 1000, &ts)) ||
            (rc = get_str(d, e, "value", &v)))
            return rc;
        if (!field(e, "timestamp") || !v) {
            push(d, v ? "timestamp" : "value");
            return fail(d, "missing");
        }
        if (i < keep) {
            struct cn_event *ev = &sp->events[i];
            ev->time_ns = ts * 1000;
            if ((rc = dup(d, json_string_value(v), json_string_length(v), &ev->name)))
                return rc;
        }
    }
    pop(d);
    sp->num_events = (uint32_t)keep;
    sp->dropped_events = (uint32_t)CN_MIN(n - keep, UINT32_MAX);
    d->b->truncated_events += n - keep;
    return 0;
}

/* Status from the tags; see zipkin.h. */
static int set_status(struct dec *d, json_t *tags, struct cn_span *sp)
{
    json_t *code = field(tags, "otel.status_code"), *desc = field(tags, "otel.status_description");
    json_t *error = field(tags, "error");
    struct cn_slice msg = {empty, 0};
    if (code && json_is_string(code)) {
        size_t i = 0;
        while (i < CN_ARRAY_LEN(status_names) &&
               !cn_slice_case_eq(str_of(code), cn_slice_of(status_names[i])))
            i++;
        if (i == CN_ARRAY_LEN(status_names)) {
            push(d, "tags");
            push(d, "otel.status_code");
            refuse(d, "not a status code");
            pop(d);
            pop(d);
        } else {
            sp->status_code = (uint8_t)i;
            if (i == CN_STATUS_ERROR && desc && json_is_string(desc))
                msg = str_of(desc);
        }
    }
    if (error) {
        sp->status_code = CN_STATUS_ERROR;
        if (json_is_string(error) && json_string_length(error))
            msg = str_of(error);
    }
    return dup(d, msg.ptr, msg.len, &sp->status_message);
}

static int get_span(struct dec *d, json_t *o, struct cn_span *sp)
{
    json_t *name, *kind, *tags;
    struct endpoint local, remote;
    uint64_t ts = 0, dur = 0;
    int debug, shared, rc;
    char tmp[32];
    if (!json_is_object(o))
        return fail(d, "not an object");
    if ((rc = get_id(d, o, "traceId", sp->trace_id, 16, 1)) ||
        (rc = get_id(d, o, "id", sp->span_id, 8, 1)) ||
        (rc = get_id(d, o, "parentId", sp->parent_id, 8, 0)) ||
        (rc = get_str(d, o, "name", &name)) || (rc = get_str(d, o, "kind", &kind)) ||
        (rc = get_u64(d, o, "timestamp", UINT64_MAX / 1000, &ts)) ||
        (rc = get_u64(d, o, "duration", UINT64_MAX / 1000, &dur)) ||
        (rc = get_endpoint(d, o, "localEndpoint", &local)) ||
        (rc = get_endpoint(d, o, "remoteEndpoint", &remote)) ||
        (rc = get_bool(d, o, "debug", &debug)) || (rc = get_bool(d, o, "shared", &shared)))
        return rc;
    if ((tags = field(o, "tags")) && !json_is_object(tags)) {
        push(d, "tags");
        return fail(d, "not an object");
    }
    if ((rc = dup(d, json_string_value(name), name ? json_string_length(name) : 0, &sp->name)))
        return rc;
    sp->trace_state = (struct cn_slice){empty, 0};

    sp->kind = CN_KIND_INTERNAL;
    if (kind) {
        size_t i = 0;
        while (i < CN_ARRAY_LEN(kinds) && !cn_slice_eq(str_of(kind), cn_slice_of(kinds[i].name)))
            i++;
        if (i < CN_ARRAY_LEN(kinds)) {
            sp->kind = kinds[i].kind;
        } else {
            push(d, "kind");
            refuse(d, "not a span kind");
            pop(d);
        }
    }
    if (ts == 0) {
        push(d, "timestamp");
        refuse(d, "missing");
        pop(d);
    }
    sp->start_ns = ts * 1000;
    if (dur * 1000 > UINT64_MAX - sp->start_ns) {
        push(d, "duration");
        return fail(d, "out of range");
    }
    sp->end_ns = sp->start_ns + dur * 1000;

    /* Attributes: the tags, then what the endpoints and flags add. */
    json_t *remote_ip = endpoint_ip(&remote), *local_ip = endpoint_ip(&local);
    int peer = remote.service && json_string_length(remote.service);
    size_t extra = (size_t)peer * (sp->kind == CN_KIND_SERVER ? 1 : 2) + !!remote_ip +
                   !!remote.port + !!local_ip + !!local.port + (size_t)debug + (size_t)shared;
    struct attrs a = {&sp->attrs, CN_MIN(json_object_size(tags) + extra, (size_t)d->max_attrs)};
    if (a.cap && !(sp->attrs.items = cn_arena_calloc(&d->b->arena, a.cap, sizeof(struct cn_kv))))
        return oom(d);
    const char *k;
    json_t *v;
    json_object_foreach(tags, k, v)
    {
        struct cn_slice key, val;
        if (json_is_null(v))
            continue;
        push(d, "tags");
        push(d, path_key(k));
        if ((rc = tag_text(d, v, tmp, &val)))
            return rc;
        pop(d);
        pop(d);
        if (sp->attrs.num == a.cap) {
            slot(d, &a); /* counts the drop */
            continue;
        }
        if ((rc = dup(d, k, strlen(k), &key)) || (rc = add_str(d, &a, key, val)))
            return rc;
    }
    if (peer) {
        if ((rc = add_str(d, &a, CN_SLICE_LIT("net.peer.name"), str_of(remote.service))))
            return rc;
        if (sp->kind != CN_KIND_SERVER &&
            (rc = add_str(d, &a, CN_SLICE_LIT("server.address"), str_of(remote.service))))
            return rc;
    }
    if (remote_ip && (rc = add_str(d, &a, CN_SLICE_LIT("net.peer.ip"), str_of(remote_ip))))
        return rc;
    if (remote.port)
        add_int(d, &a, "net.peer.port", (int64_t)remote.port);
    if (local_ip && (rc = add_str(d, &a, CN_SLICE_LIT("net.host.ip"), str_of(local_ip))))
        return rc;
    if (local.port)
        add_int(d, &a, "net.host.port", (int64_t)local.port);
    if (debug)
        add_bool(d, &a, "zipkin.debug");
    if (shared)
        add_bool(d, &a, "zipkin.shared");

    if ((rc = set_status(d, tags, sp)) || (rc = get_annotations(d, o, sp)))
        return rc;
    sp->scope = d->scope;
    return d->pending ? 0 : get_resource(d, str_of(local.service), &sp->resource);
}

static int walk(struct dec *d, json_t *root)
{
    if (!json_is_array(root))
        return fail(d, "not an array");
    size_t n = json_array_size(root), num = 0;
    struct cn_scope *scope;
    int rc;
    if (n == 0)
        return 0;
    d->num_slots = 8;
    while (d->num_slots < 2 * n)
        d->num_slots *= 2;
    if (!(d->b->spans = cn_arena_alloc(&d->b->arena, n * sizeof(struct cn_span))) ||
        !(d->slots = cn_arena_calloc(&d->b->arena, d->num_slots, sizeof(*d->slots))) ||
        !(scope = cn_arena_calloc(&d->b->arena, 1, sizeof(*scope))))
        return oom(d);
    scope->name = scope->version = (struct cn_slice){empty, 0};
    d->scope = scope;
    push(d, "");
    for (size_t i = 0; i < n; i++) {
        struct cn_span *sp = &d->b->spans[num];
        struct cn_tel_batch *b = d->b;
        uint64_t t[3] = {b->truncated_attrs, b->truncated_values, b->truncated_events};
        at(d, i);
        memset(sp, 0, sizeof(*sp));
        if ((rc = get_span(d, json_array_get(root, i), sp)))
            return rc;
        if (d->pending) { /* a refused span adds nothing to the truncations */
            b->truncated_attrs = t[0];
            b->truncated_values = t[1];
            b->truncated_events = t[2];
            cn_tel_batch_reject(d->b, "%s", d->reason);
            d->pending = 0;
            continue;
        }
        num++;
    }
    pop(d);
    d->b->num_spans = num;
    return 0;
}

/* Parses the body; an integer literal past int64 (a double written in plain digits) makes
 * jansson fail, and the body is then read again with every number as a double. */
static json_t *parse(const char *buf, size_t len, json_error_t *je)
{
    size_t flags = JSON_DECODE_ANY | JSON_ALLOW_NUL;
    json_t *root = json_loadb(buf ? buf : "", len, flags, je);
    if (!root && json_error_code(je) == json_error_numeric_overflow)
        root = json_loadb(buf ? buf : "", len, flags | JSON_DECODE_INT_AS_REAL, je);
    return root;
}

int cn_zipkin_decode(struct cn_tel_batch *b, const char *buf, size_t len,
                     const struct cn_tel_limits *lim, char *err, size_t err_len)
{
    struct dec d;
    CN_ASSERT(b->num_spans == 0);
    memset(&d, 0, sizeof(d));
    d.b = b;
    d.max_attrs = lim && lim->max_attrs ? lim->max_attrs : UINT32_MAX;
    d.max_value = lim && lim->max_attr_value_bytes ? lim->max_attr_value_bytes : UINT32_MAX;
    d.max_events = lim && lim->max_events ? lim->max_events : UINT32_MAX;
    if (!err)
        err_len = 0;
    d.err = err;
    d.err_len = err_len;
    if (err_len)
        err[0] = '\0';

    json_error_t je;
    json_t *root = parse(buf, len, &je);
    if (!root) {
        if (json_error_code(&je) == json_error_out_of_memory)
            return oom(&d);
        if (err_len) {
            snprintf(err, err_len, "invalid JSON at line %d, column %d: %s", je.line, je.column,
                     je.text);
            printable(err);
        }
        return CN_ESYNTAX;
    }

    uint64_t rejected = b->rejected, t_attrs = b->truncated_attrs, t_values = b->truncated_values,
             t_events = b->truncated_events;
    char reject_msg[sizeof(b->reject_msg)];
    memcpy(reject_msg, b->reject_msg, sizeof(reject_msg));

    int rc = walk(&d, root);
    json_decref(root);
    if (rc || b->num_spans == 0) {
        b->spans = NULL;
        b->num_spans = 0;
    }
    if (rc) {
        b->rejected = rejected;
        b->truncated_attrs = t_attrs;
        b->truncated_values = t_values;
        b->truncated_events = t_events;
        memcpy(b->reject_msg, reject_msg, sizeof(reject_msg));
    }
    return rc;
}
