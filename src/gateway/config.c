/* Gateway configuration: YAML (libyaml document API) checked field by field and compiled
 * into an immutable snapshot. Every error names FILE:LINE:COL and the field's path. */
#include "gateway/config-ld.h"

#include "base/regex.h"
#include "gateway/discovery.h"
#include "gateway/internal.h"
#include "gateway/tls.h"

#include "ev/ev.h"

#include <ctype.h>
#include <math.h>
#include <llhttp.h>
#include <stdarg.h>
#include <yaml.h>

#define MAX_CONFIG_BYTES (16u << 20)
#define MAX_ITEMS        100000 /* routes, clusters, endpoints, matches... per list */
#define MAX_WEIGHT       1000000
#define KIB              1024ull
#define MIB              (1024ull * 1024)
#define GIB              (1024ull * MIB)

struct ld {
    yaml_document_t *doc;
    struct cn_gw_snapshot *snap;
    const char *file;
    char *err;
    size_t err_len;
    char path[512];
    size_t path_len;
};

/* ---- errors and the field path ------------------------------------------------------------ */

static int fail_at(struct ld *l, const yaml_node_t *n, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int fail_at(struct ld *l, const yaml_node_t *n, const char *fmt, ...)
{
    char msg[384];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (n)
        snprintf(l->err, l->err_len, "%s:%zu:%zu: %s: %s", l->file, n->start_mark.line + 1,
                 n->start_mark.column + 1, l->path_len ? l->path : "(top)", msg);
    else
        snprintf(l->err, l->err_len, "%s: %s: %s", l->file, l->path_len ? l->path : "(top)", msg);
    /* Values quoted in the message may hold line breaks: the error stays one line. */
    for (char *p = l->err; *p; p++)
        if ((unsigned char)*p < 0x20 || *p == 0x7f)
            *p = ' ';
    return CN_EINVAL;
}

static size_t push(struct ld *l, const char *key)
{
    size_t old = l->path_len;
    int n = snprintf(l->path + old, sizeof(l->path) - old, "%s%s", old ? "." : "", key);
    if (n > 0)
        l->path_len = CN_MIN(old + (size_t)n, sizeof(l->path) - 1);
    return old;
}

static size_t push_index(struct ld *l, size_t i)
{
    size_t old = l->path_len;
    int n = snprintf(l->path + old, sizeof(l->path) - old, "[%zu]", i);
    if (n > 0)
        l->path_len = CN_MIN(old + (size_t)n, sizeof(l->path) - 1);
    return old;
}

static void pop(struct ld *l, size_t old)
{
    l->path_len = old;
    l->path[old] = '\0';
}

/* ---- node helpers --------------------------------------------------------------------------- */

static yaml_node_t *node(struct ld *l, int id)
{
    return yaml_document_get_node(l->doc, id);
}

static struct cn_slice scalar(const yaml_node_t *n)
{
    return (struct cn_slice){(const char *)n->data.scalar.value, n->data.scalar.length};
}

static int is_null(const yaml_node_t *n)
{
    if (n->type != YAML_SCALAR_NODE || n->data.scalar.style != YAML_PLAIN_SCALAR_STYLE)
        return 0;
    struct cn_slice s = scalar(n);
    return s.len == 0 || cn_slice_eq(s, CN_SLICE_LIT("null")) || cn_slice_eq(s, CN_SLICE_LIT("~"));
}

static int want_map(struct ld *l, const yaml_node_t *n)
{
    if (n->type != YAML_MAPPING_NODE)
        return fail_at(l, n, "must be a mapping");
    return 0;
}

static int want_seq(struct ld *l, const yaml_node_t *n, size_t *out_len)
{
    *out_len = 0;
    if (n->type != YAML_SEQUENCE_NODE)
        return fail_at(l, n, "must be a list");
    size_t len = (size_t)(n->data.sequence.items.top - n->data.sequence.items.start);
    if (len > MAX_ITEMS)
        return fail_at(l, n, "more than %d items", MAX_ITEMS);
    *out_len = len;
    return 0;
}

static yaml_node_t *seq_item(struct ld *l, const yaml_node_t *n, size_t i)
{
    return node(l, n->data.sequence.items.start[i]);
}

/* Checks every key of map is one of keys (NULL-terminated) and not repeated. */
static int check_keys(struct ld *l, const yaml_node_t *map, const char *const *keys)
{
    for (yaml_node_pair_t *p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top;
         p++) {
        yaml_node_t *k = node(l, p->key);
        if (k->type != YAML_SCALAR_NODE)
            return fail_at(l, k, "keys must be plain strings");
        struct cn_slice ks = scalar(k);
        int known = 0;
        for (size_t i = 0; keys[i]; i++)
            if (cn_slice_eq(ks, cn_slice_of(keys[i])))
                known = 1;
        if (!known) {
            char list[256];
            size_t n = 0;
            for (size_t i = 0; keys[i] && n < sizeof(list); i++) {
                int w = snprintf(list + n, sizeof(list) - n, "%s%s", i ? ", " : "", keys[i]);
                if (w > 0)
                    n += (size_t)w;
            }
            return fail_at(l, k, "unknown field '%.*s' (known: %s)", (int)CN_MIN(ks.len, 64),
                           ks.ptr, list);
        }
        for (yaml_node_pair_t *q = map->data.mapping.pairs.start; q < p; q++)
            if (cn_slice_eq(scalar(node(l, q->key)), ks))
                return fail_at(l, k, "field '%.*s' given twice", (int)CN_MIN(ks.len, 64), ks.ptr);
    }
    return 0;
}

static yaml_node_t *get(struct ld *l, const yaml_node_t *map, const char *key)
{
    struct cn_slice k = cn_slice_of(key);
    for (yaml_node_pair_t *p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top;
         p++) {
        yaml_node_t *kn = node(l, p->key);
        if (kn->type == YAML_SCALAR_NODE && cn_slice_eq(scalar(kn), k)) {
            yaml_node_t *v = node(l, p->value);
            return is_null(v) ? NULL : v;
        }
    }
    return NULL;
}

static int want_str(struct ld *l, const yaml_node_t *n, struct cn_slice *out)
{
    if (n->type != YAML_SCALAR_NODE)
        return fail_at(l, n, "must be a string");
    struct cn_slice s = scalar(n);
    if (memchr(s.ptr, '\0', s.len))
        return fail_at(l, n, "must not hold a NUL byte");
    *out = cn_arena_dup(&l->snap->arena, s.ptr, s.len);
    if (!out->ptr)
        return fail_at(l, n, "out of memory");
    return 0;
}

/* A string field that must be present. */
static int req_str(struct ld *l, const yaml_node_t *map, const char *key, struct cn_slice *out)
{
    yaml_node_t *v = get(l, map, key);
    size_t o = push(l, key);
    int rc = v ? want_str(l, v, out) : fail_at(l, map, "is required");
    if (!rc && out->len == 0)
        rc = fail_at(l, v, "must not be empty");
    if (!rc)
        pop(l, o);
    return rc;
}

static int want_u64(struct ld *l, const yaml_node_t *n, uint64_t lo, uint64_t hi, uint64_t *out)
{
    if (n->type != YAML_SCALAR_NODE)
        return fail_at(l, n, "must be a number");
    uint64_t v;
    if (cn_slice_to_u64(scalar(n), &v) != 0)
        return fail_at(l, n, "'%.*s' is not a whole number", (int)CN_MIN(scalar(n).len, 64),
                       scalar(n).ptr);
    if (v < lo || v > hi)
        return fail_at(l, n, "%llu is out of range [%llu, %llu]", (unsigned long long)v,
                       (unsigned long long)lo, (unsigned long long)hi);
    *out = v;
    return 0;
}

static int want_bool(struct ld *l, const yaml_node_t *n, int *out)
{
    struct cn_slice s = n->type == YAML_SCALAR_NODE ? scalar(n) : (struct cn_slice){"", 0};
    if (cn_slice_eq(s, CN_SLICE_LIT("true")))
        *out = 1;
    else if (cn_slice_eq(s, CN_SLICE_LIT("false")))
        *out = 0;
    else
        return fail_at(l, n, "must be true or false");
    return 0;
}

/* "250ms", "5s", "2m", "1h"; "0" means none. */
static int want_duration(struct ld *l, const yaml_node_t *n, uint64_t hi_ms, uint64_t *out_ms)
{
    if (n->type != YAML_SCALAR_NODE)
        return fail_at(l, n, "must be a duration like 250ms, 5s, 2m, 1h");
    struct cn_slice s = scalar(n);
    size_t i = 0;
    uint64_t v = 0;
    while (i < s.len && s.ptr[i] >= '0' && s.ptr[i] <= '9' && v < (1ull << 40))
        v = v * 10 + (uint64_t)(s.ptr[i++] - '0');
    struct cn_slice unit = {s.ptr + i, s.len - i};
    uint64_t mul;
    if (i == 0 || v >= (1ull << 40))
        return fail_at(l, n, "'%.*s' is not a duration like 250ms, 5s, 2m, 1h",
                       (int)CN_MIN(s.len, 64), s.ptr);
    if (unit.len == 0 && v == 0)
        mul = 1;
    else if (cn_slice_eq(unit, CN_SLICE_LIT("ms")))
        mul = 1;
    else if (cn_slice_eq(unit, CN_SLICE_LIT("s")))
        mul = 1000;
    else if (cn_slice_eq(unit, CN_SLICE_LIT("m")))
        mul = 60000;
    else if (cn_slice_eq(unit, CN_SLICE_LIT("h")))
        mul = 3600000;
    else
        return fail_at(l, n, "'%.*s' is not a duration like 250ms, 5s, 2m, 1h",
                       (int)CN_MIN(s.len, 64), s.ptr);
    if (v * mul > hi_ms)
        return fail_at(l, n, "'%.*s' is longer than %llu ms", (int)CN_MIN(s.len, 64), s.ptr,
                       (unsigned long long)hi_ms);
    *out_ms = v * mul;
    return 0;
}

/* "512", "64k", "8m", "1g" (powers of 1024). */
static int want_size(struct ld *l, const yaml_node_t *n, uint64_t lo, uint64_t hi, uint64_t *out)
{
    if (n->type != YAML_SCALAR_NODE)
        return fail_at(l, n, "must be a size like 512, 64k, 8m, 1g");
    struct cn_slice s = scalar(n);
    size_t i = 0;
    uint64_t v = 0;
    while (i < s.len && s.ptr[i] >= '0' && s.ptr[i] <= '9' && v < (1ull << 40))
        v = v * 10 + (uint64_t)(s.ptr[i++] - '0');
    uint64_t mul = 1;
    if (i + 1 == s.len) {
        char u = (char)(s.ptr[i] | 0x20);
        mul = u == 'k' ? KIB : u == 'm' ? MIB : u == 'g' ? GIB : 0;
    } else if (i != s.len) {
        mul = 0;
    }
    if (i == 0 || mul == 0 || v >= (1ull << 40))
        return fail_at(l, n, "'%.*s' is not a size like 512, 64k, 8m, 1g", (int)CN_MIN(s.len, 64),
                       s.ptr);
    v *= mul;
    if (v < lo || v > hi)
        return fail_at(l, n, "%llu bytes is out of range [%llu, %llu]", (unsigned long long)v,
                       (unsigned long long)lo, (unsigned long long)hi);
    *out = v;
    return 0;
}

/* Optional fields: absent leaves *out alone. */
#define OPT(call_node, key, stmt)                                                                  \
    do {                                                                                           \
        yaml_node_t *call_node = get(l, map, key);                                                 \
        if (call_node) {                                                                           \
            size_t o_ = push(l, key);                                                              \
            int rc_ = (stmt);                                                                      \
            if (rc_)                                                                               \
                return rc_;                                                                        \
            pop(l, o_);                                                                            \
        }                                                                                          \
    } while (0)

static int is_tchar(unsigned char c)
{
    return isalnum(c) || (c && strchr("!#$%&'*+-.^_`|~", c));
}

static int check_header_name(struct ld *l, const yaml_node_t *n, struct cn_slice s)
{
    if (s.len == 0)
        return fail_at(l, n, "a header name must not be empty");
    for (size_t i = 0; i < s.len; i++)
        if (!is_tchar((unsigned char)s.ptr[i]))
            return fail_at(l, n, "'%.*s' is not a valid header name", (int)CN_MIN(s.len, 64),
                           s.ptr);
    return 0;
}

static int check_header_value(struct ld *l, const yaml_node_t *n, struct cn_slice s)
{
    for (size_t i = 0; i < s.len; i++) {
        unsigned char c = (unsigned char)s.ptr[i];
        if ((c < 0x20 && c != '\t') || c == 0x7f)
            return fail_at(l, n, "a header value must not hold control characters (CR, LF...)");
    }
    return 0;
}

static int check_name(struct ld *l, const yaml_node_t *n, struct cn_slice s)
{
    for (size_t i = 0; i < s.len; i++) {
        unsigned char c = (unsigned char)s.ptr[i];
        if (!isalnum(c) && c != '-' && c != '_' && c != '.')
            return fail_at(l, n, "'%.*s': names use letters, digits, '-', '_' and '.'",
                           (int)CN_MIN(s.len, 64), s.ptr);
    }
    return 0;
}

/* Compiles an ERE anchored at both ends. */
static int compile_re(struct ld *l, const yaml_node_t *n, struct cn_slice pat, regex_t **out)
{
    struct cn_gw_snapshot *s = l->snap;
    char why[160];
    if (cn_regex_check(pat.ptr, pat.len, why, sizeof(why)) != 0)
        return fail_at(l, n, "%s", why);
    char *full = malloc(pat.len + 5);
    if (!full)
        return fail_at(l, n, "out of memory");
    full[0] = '^';
    full[1] = '(';
    memcpy(full + 2, pat.ptr, pat.len);
    memcpy(full + 2 + pat.len, ")$", 3);
    regex_t *re = cn_arena_alloc(&s->arena, sizeof(*re));
    regex_t **list = cn_arena_alloc(&s->arena, (s->num_regexes + 1) * sizeof(*list));
    if (!re || !list) {
        free(full);
        return fail_at(l, n, "out of memory");
    }
    int rc = regcomp(re, full, REG_EXTENDED | REG_NOSUB);
    free(full);
    if (rc != 0) {
        char msg[128];
        regerror(rc, re, msg, sizeof(msg));
        return fail_at(l, n, "invalid regular expression (POSIX ERE): %s", msg);
    }
    if (s->num_regexes)
        memcpy(list, s->regexes, s->num_regexes * sizeof(*list));
    list[s->num_regexes++] = re;
    s->regexes = list;
    *out = re;
    return 0;
}

/* ---- sections ------------------------------------------------------------------------------- */

static int load_timeouts(struct ld *l, const yaml_node_t *map, struct gw_timeouts *t,
                         unsigned *out_set)
{
    static const char *const keys[] = {"connect", "first_byte", "total", "idle", NULL};
    int rc = want_map(l, map);
    if (!rc)
        rc = check_keys(l, map, keys);
    if (rc)
        return rc;
    unsigned set = 0;
    OPT(v, "connect", (set |= 1, want_duration(l, v, 3600000, &t->connect_ms)));
    OPT(v, "first_byte", (set |= 2, want_duration(l, v, 86400000, &t->first_byte_ms)));
    OPT(v, "total", (set |= 4, want_duration(l, v, 86400000, &t->total_ms)));
    OPT(v, "idle", (set |= 8, want_duration(l, v, 86400000, &t->idle_ms)));
    if ((set & 1) && t->connect_ms == 0)
        return fail_at(l, get(l, map, "connect"), "connect timeout must be above 0");
    if (out_set)
        *out_set = set;
    return 0;
}

static int load_limits(struct ld *l, const yaml_node_t *map)
{
    static const char *const keys[] = {"max_url_bytes",
                                       "max_header_bytes",
                                       "max_headers",
                                       "max_body_bytes",
                                       "header_timeout",
                                       "idle_timeout",
                                       "send_timeout",
                                       "max_connections",
                                       "busy_poll_us",
                                       "max_response_header_bytes",
                                       "max_response_headers",
                                       "batch_upstream_sends",
                                       NULL};
    int rc = want_map(l, map);
    if (!rc)
        rc = check_keys(l, map, keys);
    if (rc)
        return rc;
    struct gw_limits *g = &l->snap->limits;
    struct cn_http_limits *h = &g->http;
    OPT(v, "max_url_bytes", want_size(l, v, 64, MIB, &h->max_url_bytes));
    OPT(v, "max_header_bytes", want_size(l, v, 256, MIB, &h->max_header_bytes));
    OPT(v, "max_headers", want_u64(l, v, 1, 10000, &h->max_headers));
    OPT(v, "max_body_bytes", want_size(l, v, 0, 1024 * GIB, &h->max_body_bytes));
    OPT(v, "header_timeout", want_duration(l, v, 3600000, &h->header_timeout_ms));
    OPT(v, "idle_timeout", want_duration(l, v, 86400000, &h->idle_timeout_ms));
    OPT(v, "send_timeout", want_duration(l, v, 86400000, &h->send_timeout_ms));
    OPT(v, "max_connections", want_u64(l, v, 1, 10000000, &h->max_connections));
    OPT(v, "busy_poll_us", want_u64(l, v, 0, 10000, &h->busy_poll_us));
    OPT(v, "max_response_header_bytes", want_size(l, v, 256, MIB, &g->max_response_header_bytes));
    OPT(v, "max_response_headers", want_u64(l, v, 1, 10000, &g->max_response_headers));
    OPT(v, "batch_upstream_sends", want_bool(l, v, &g->batch_upstream_sends));
    if (h->max_url_bytes > h->max_header_bytes)
        return fail_at(l, map, "max_url_bytes is larger than max_header_bytes");
    return 0;
}

static int load_endpoint(struct ld *l, const yaml_node_t *n, struct gw_endpoint *ep)
{
    const yaml_node_t *addr_node = n;
    ep->weight = 1;
    if (n->type == YAML_MAPPING_NODE) {
        static const char *const keys[] = {"address", "weight", NULL};
        const yaml_node_t *map = n;
        int rc = check_keys(l, n, keys);
        if (!rc)
            rc = req_str(l, n, "address", &ep->name);
        if (rc)
            return rc;
        addr_node = get(l, n, "address");
        uint64_t w = 1;
        OPT(v, "weight", want_u64(l, v, 1, MAX_WEIGHT, &w));
        ep->weight = (uint32_t)w;
    } else {
        int rc = want_str(l, n, &ep->name);
        if (rc)
            return rc;
    }
    size_t o = push(l, "address");
    if (cn_ev_parse_addr(ep->name.ptr, &ep->addr) != 0)
        return fail_at(l, addr_node, "'%.*s' is not HOST:PORT with a numeric IP address",
                       (int)CN_MIN(ep->name.len, 64), ep->name.ptr);
    uint16_t port = ep->addr.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ep->addr)->sin6_port
                                                   : ((struct sockaddr_in *)&ep->addr)->sin_port;
    if (port == 0)
        return fail_at(l, addr_node, "port 0 is not a valid upstream port");
    pop(l, o);
    return 0;
}

/* ---- governance: health_check, outlier, retry, circuit_breaker, RateLimit (gov.c) ---------- */

static int check_path(struct ld *l, const yaml_node_t *n, struct cn_slice p)
{
    if (p.len == 0 || p.ptr[0] != '/')
        return fail_at(l, n, "a path must start with '/'");
    for (size_t i = 0; i < p.len; i++) {
        unsigned char c = (unsigned char)p.ptr[i];
        if (c <= 0x20 || c == 0x7f || c == '#')
            return fail_at(l, n, "a path must not hold spaces, controls or '#'");
    }
    return 0;
}

static int load_health(struct ld *l, const yaml_node_t *map, struct gw_health_cfg *h)
{
    static const char *const keys[] = {"path",
                                       "interval",
                                       "timeout",
                                       "healthy_threshold",
                                       "unhealthy_threshold",
                                       "expected_statuses",
                                       "max_concurrent",
                                       NULL};
    int rc = want_map(l, map);
    if (!rc)
        rc = check_keys(l, map, keys);
    if (!rc)
        rc = req_str(l, map, "path", &h->path);
    if (rc)
        return rc;
    size_t o = push(l, "path");
    if ((rc = check_path(l, get(l, map, "path"), h->path)))
        return rc;
    pop(l, o);
    h->enabled = 1;
    h->interval_ms = 5000;
    h->timeout_ms = 1000;
    h->healthy_threshold = 2;
    h->unhealthy_threshold = 3;
    h->max_concurrent = 16;
    uint64_t ht = h->healthy_threshold, ut = h->unhealthy_threshold, mc = h->max_concurrent;
    OPT(v, "interval", want_duration(l, v, 86400000, &h->interval_ms));
    OPT(v, "timeout", want_duration(l, v, 3600000, &h->timeout_ms));
    OPT(v, "healthy_threshold", want_u64(l, v, 1, 1000, &ht));
    OPT(v, "unhealthy_threshold", want_u64(l, v, 1, 1000, &ut));
    OPT(v, "max_concurrent", want_u64(l, v, 1, 4096, &mc));
    if (h->interval_ms < 10)
        return fail_at(l, get(l, map, "interval"), "interval must be at least 10ms");
    if (h->timeout_ms == 0)
        return fail_at(l, get(l, map, "timeout"), "timeout must be above 0");
    h->healthy_threshold = (uint32_t)ht;
    h->unhealthy_threshold = (uint32_t)ut;
    h->max_concurrent = (uint32_t)mc;
    yaml_node_t *es = get(l, map, "expected_statuses");
    if (es) {
        size_t n;
        o = push(l, "expected_statuses");
        if ((rc = want_seq(l, es, &n)))
            return rc;
        if (n == 0 || n > GW_HC_MAX_STATUSES)
            return fail_at(l, es, "must list 1 to %d status codes", GW_HC_MAX_STATUSES);
        for (size_t i = 0; i < n; i++) {
            size_t oi = push_index(l, i);
            uint64_t st;
            if ((rc = want_u64(l, seq_item(l, es, i), 100, 599, &st)))
                return rc;
            h->statuses[i] = (uint16_t)st;
            pop(l, oi);
        }
        h->num_statuses = n;
        pop(l, o);
    }
    return 0;
}

static int load_outlier(struct ld *l, const yaml_node_t *map, struct gw_outlier_cfg *oc)
{
    static const char *const keys[] = {"consecutive_errors", "base_ejection", "max_ejection",
                                       "max_ejected_percent", NULL};
    int rc = want_map(l, map);
    if (!rc)
        rc = check_keys(l, map, keys);
    if (rc)
        return rc;
    oc->enabled = 1;
    oc->base_ms = 30000;
    oc->max_ms = 300000;
    uint64_t ce = 5, pct = 10;
    OPT(v, "consecutive_errors", want_u64(l, v, 1, 100000, &ce));
    OPT(v, "base_ejection", want_duration(l, v, 86400000, &oc->base_ms));
    OPT(v, "max_ejection", want_duration(l, v, 86400000, &oc->max_ms));
    OPT(v, "max_ejected_percent", want_u64(l, v, 0, 100, &pct));
    if (oc->base_ms == 0)
        return fail_at(l, get(l, map, "base_ejection"), "base_ejection must be above 0");
    if (oc->max_ms < oc->base_ms)
        return fail_at(l, get(l, map, "max_ejection") ?: map,
                       "max_ejection is shorter than base_ejection");
    oc->consecutive_errors = (uint32_t)ce;
    oc->max_percent = (uint32_t)pct;
    return 0;
}

static int load_retry(struct ld *l, const yaml_node_t *map, struct gw_retry_cfg *r)
{
    static const char *const keys[] = {"attempts",
                                       "on",
                                       "per_try_timeout",
                                       "budget_percent",
                                       "min_retries_per_second",
                                       "max_body_bytes",
                                       "attempts_header",
                                       NULL};
    int rc = want_map(l, map);
    if (!rc)
        rc = check_keys(l, map, keys);
    if (rc)
        return rc;
    r->enabled = 1;
    r->on = GW_RETRY_CONNECT | GW_RETRY_RESET;
    r->max_body_bytes = 64 * KIB;
    uint64_t at = 2, bp = 20, mr = 10;
    OPT(v, "attempts", want_u64(l, v, 1, 10, &at));
    OPT(v, "per_try_timeout", want_duration(l, v, 86400000, &r->per_try_ms));
    OPT(v, "budget_percent", want_u64(l, v, 0, 100, &bp));
    OPT(v, "min_retries_per_second", want_u64(l, v, 0, 1000000, &mr));
    OPT(v, "max_body_bytes", want_size(l, v, 0, MIB, &r->max_body_bytes));
    OPT(v, "attempts_header", want_bool(l, v, &r->attempts_header));
    r->attempts = (uint32_t)at;
    r->budget_percent = (uint32_t)bp;
    r->min_per_s = (uint32_t)mr;
    yaml_node_t *on = get(l, map, "on");
    if (on) {
        size_t n, o = push(l, "on");
        if ((rc = want_seq(l, on, &n)))
            return rc;
        r->on = 0;
        static const struct {
            const char *name;
            unsigned bit;
        } conds[] = {{"connect-failure", GW_RETRY_CONNECT},
                     {"reset", GW_RETRY_RESET},
                     {"502", GW_RETRY_502},
                     {"503", GW_RETRY_503},
                     {"504", GW_RETRY_504}};
        for (size_t i = 0; i < n; i++) {
            size_t oi = push_index(l, i);
            yaml_node_t *it = seq_item(l, on, i);
            struct cn_slice c;
            if ((rc = want_str(l, it, &c)))
                return rc;
            unsigned bit = 0;
            for (size_t k = 0; k < sizeof(conds) / sizeof(conds[0]); k++)
                if (cn_slice_eq(c, cn_slice_of(conds[k].name)))
                    bit = conds[k].bit;
            if (!bit)
                return fail_at(l, it, "'%.*s' is not one of connect-failure, reset, 502, 503, 504",
                               (int)CN_MIN(c.len, 64), c.ptr);
            r->on |= bit;
            pop(l, oi);
        }
        pop(l, o);
    }
    return 0;
}

static int load_breaker(struct ld *l, const yaml_node_t *map, struct gw_breaker_cfg *b)
{
    static const char *const keys[] = {"max_connections", "max_pending", "max_requests", NULL};
    int rc = want_map(l, map);
    if (!rc)
        rc = check_keys(l, map, keys);
    if (rc)
        return rc;
    uint64_t mc = 0, mp = 0, mr = 0;
    OPT(v, "max_connections", want_u64(l, v, 0, 10000000, &mc));
    OPT(v, "max_pending", want_u64(l, v, 0, 10000000, &mp));
    OPT(v, "max_requests", want_u64(l, v, 0, 10000000, &mr));
    b->enabled = mc || mp || mr;
    b->max_connections = (uint32_t)mc;
    b->max_pending = (uint32_t)mp;
    b->max_requests = (uint32_t)mr;
    return 0;
}

/* rate: N (per second) or "N/s", "N/m", "N/h". */
static int want_rate(struct ld *l, const yaml_node_t *n, struct gw_ratelimit *rl)
{
    struct cn_slice s = n->type == YAML_SCALAR_NODE ? scalar(n) : (struct cn_slice){"", 0};
    size_t i = 0;
    uint64_t v = 0;
    while (i < s.len && s.ptr[i] >= '0' && s.ptr[i] <= '9' && v < 1000000000ull)
        v = v * 10 + (uint64_t)(s.ptr[i++] - '0');
    struct cn_slice unit = {s.ptr + i, s.len - i};
    double per = 0;
    if (unit.len == 0 || cn_slice_eq(unit, CN_SLICE_LIT("/s")))
        per = 1;
    else if (cn_slice_eq(unit, CN_SLICE_LIT("/m")))
        per = 60;
    else if (cn_slice_eq(unit, CN_SLICE_LIT("/h")))
        per = 3600;
    if (i == 0 || per == 0 || v == 0 || v > 1000000000ull)
        return fail_at(l, n, "'%.*s' is not a rate like 100, 100/s, 30/m, 10/h (1 to 10^9)",
                       (int)CN_MIN(s.len, 64), s.ptr);
    rl->rate_per_s = (double)v / per;
    char *t = cn_arena_alloc(&l->snap->arena, 32);
    if (!t)
        return fail_at(l, n, "out of memory");
    int k = snprintf(t, 32, "%llu/%s", (unsigned long long)v,
                     per == 1    ? "s"
                     : per == 60 ? "m"
                                 : "h");
    rl->rate_text = (struct cn_slice){t, (size_t)k};
    return 0;
}

static int load_ratelimit(struct ld *l, const yaml_node_t *map, struct gw_ratelimit *rl)
{
    static const char *const keys[] = {"rate", "burst", "key", "max_keys", NULL};
    int rc = want_map(l, map);
    if (!rc)
        rc = check_keys(l, map, keys);
    if (rc)
        return rc;
    yaml_node_t *rate = get(l, map, "rate");
    size_t o = push(l, "rate");
    if (!rate)
        return fail_at(l, map, "is required (100, 100/s, 30/m, 10/h)");
    if ((rc = want_rate(l, rate, rl)))
        return rc;
    pop(l, o);
    rl->burst = (uint64_t)ceil(rl->rate_per_s);
    rl->max_keys = 10000;
    OPT(v, "burst", want_u64(l, v, 1, 1000000000, &rl->burst));
    OPT(v, "max_keys", want_u64(l, v, 1, 10000000, &rl->max_keys));
    rl->key = GW_RL_CLIENT_IP;
    rl->key_text = CN_SLICE_LIT("client_ip");
    yaml_node_t *k = get(l, map, "key");
    if (k) {
        o = push(l, "key");
        if ((rc = want_str(l, k, &rl->key_text)))
            return rc;
        struct cn_slice t = rl->key_text;
        if (cn_slice_eq(t, CN_SLICE_LIT("client_ip"))) {
            rl->key = GW_RL_CLIENT_IP;
        } else if (t.len > 7 && memcmp(t.ptr, "header:", 7) == 0) {
            rl->key = GW_RL_HEADER;
            rl->key_name = (struct cn_slice){t.ptr + 7, t.len - 7};
            if ((rc = check_header_name(l, k, rl->key_name)))
                return rc;
        } else if (t.len > 10 && memcmp(t.ptr, "jwt_claim:", 10) == 0) {
            rl->key = GW_RL_JWT_CLAIM;
            rl->key_name = (struct cn_slice){t.ptr + 10, t.len - 10};
        } else {
            return fail_at(l, k, "'%.*s' is not one of client_ip, header:NAME, jwt_claim:NAME",
                           (int)CN_MIN(t.len, 64), t.ptr);
        }
        pop(l, o);
    }
    return 0;
}

static int load_endpoints(struct ld *l, const yaml_node_t *eps, struct gw_cluster *cl)
{
    size_t n;
    int rc = want_seq(l, eps, &n);
    if (rc)
        return rc;
    if (n == 0)
        return fail_at(l, eps, "must list at least one endpoint");
    cl->eps = cn_arena_calloc(&l->snap->arena, n, sizeof(*cl->eps));
    if (!cl->eps)
        return fail_at(l, eps, "out of memory");
    cl->num_eps = n;
    for (size_t i = 0; i < n; i++) {
        size_t oi = push_index(l, i);
        if ((rc = load_endpoint(l, seq_item(l, eps, i), &cl->eps[i])))
            return rc;
        pop(l, oi);
    }
    return 0;
}

static int load_cluster(struct ld *l, const yaml_node_t *map, struct gw_cluster *cl)
{
    static const char *const keys[] = {"name",
                                       "endpoints",
                                       "policy",
                                       "hash_on",
                                       "timeouts",
                                       "max_idle_per_worker",
                                       "pool_idle_timeout",
                                       "health_check",
                                       "outlier",
                                       "retry",
                                       "circuit_breaker",
                                       "discovery",
                                       NULL};
    int rc = want_map(l, map);
    if (!rc)
        rc = check_keys(l, map, keys);
    if (!rc)
        rc = req_str(l, map, "name", &cl->name);
    if (rc)
        return rc;
    size_t o = push(l, "name");
    if ((rc = check_name(l, get(l, map, "name"), cl->name)))
        return rc;
    pop(l, o);
    cl->timeouts = (struct gw_timeouts){5000, 60000, 0, 60000};
    cl->max_idle = 64;
    cl->pool_idle_ms = 60000;
    yaml_node_t *eps = get(l, map, "endpoints");
    yaml_node_t *disc = get(l, map, "discovery");
    o = push(l, disc ? "discovery" : "endpoints");
    if (disc && eps)
        return fail_at(l, disc, "give endpoints or discovery, not both");
    if (disc)
        rc = gw_disc_load(l, disc, cl); /* endpoints come with each discovered set */
    else if (!eps)
        return fail_at(l, map, "is required (a list of HOST:PORT, or a discovery block)");
    else
        rc = load_endpoints(l, eps, cl);
    if (rc)
        return rc;
    pop(l, o);
    struct cn_slice pol = CN_SLICE_LIT("round_robin");
    OPT(v, "policy", want_str(l, v, &pol));
    static const char *const policies[] = {"round_robin", "weighted", "least_request",
                                           "consistent_hash"};
    int found = -1;
    for (int i = 0; i < 4; i++)
        if (cn_slice_eq(pol, cn_slice_of(policies[i])))
            found = i;
    if (found < 0) {
        o = push(l, "policy");
        return fail_at(l, get(l, map, "policy"),
                       "'%.*s' is not one of round_robin, weighted, least_request, "
                       "consistent_hash",
                       (int)CN_MIN(pol.len, 64), pol.ptr);
    }
    cl->policy = (enum gw_policy)found;
    yaml_node_t *h = get(l, map, "hash_on");
    if (cl->policy == GW_LB_HASH) {
        o = push(l, "hash_on");
        if (!h)
            return fail_at(l, map,
                           "is required with policy consistent_hash "
                           "({header: NAME}, {cookie: NAME} or {client_ip: true})");
        static const char *const hkeys[] = {"header", "cookie", "client_ip", NULL};
        if ((rc = want_map(l, h)) || (rc = check_keys(l, h, hkeys)))
            return rc;
        size_t nkeys = (size_t)(h->data.mapping.pairs.top - h->data.mapping.pairs.start);
        if (nkeys != 1)
            return fail_at(l, h, "give exactly one of header, cookie, client_ip");
        yaml_node_t *v;
        if ((v = get(l, h, "header"))) {
            cl->hash_on = GW_HASH_HEADER;
            size_t oo = push(l, "header");
            if ((rc = want_str(l, v, &cl->hash_key)) ||
                (rc = check_header_name(l, v, cl->hash_key)))
                return rc;
            pop(l, oo);
        } else if ((v = get(l, h, "cookie"))) {
            cl->hash_on = GW_HASH_COOKIE;
            size_t oo = push(l, "cookie");
            if ((rc = want_str(l, v, &cl->hash_key)) ||
                (rc = check_header_name(l, v, cl->hash_key)))
                return rc;
            pop(l, oo);
        } else if ((v = get(l, h, "client_ip"))) {
            int on = 0;
            size_t oo = push(l, "client_ip");
            if ((rc = want_bool(l, v, &on)))
                return rc;
            if (!on)
                return fail_at(l, v, "must be true (or use header/cookie)");
            pop(l, oo);
            cl->hash_on = GW_HASH_CLIENT_IP;
        } else {
            return fail_at(l, h, "give exactly one of header, cookie, client_ip");
        }
        pop(l, o);
        if (cl->num_eps && (rc = gw_ring_build(l->snap, cl)))
            return fail_at(l, h, "out of memory");
    } else if (h) {
        o = push(l, "hash_on");
        return fail_at(l, h, "only applies to policy consistent_hash");
    }
    OPT(v, "timeouts", load_timeouts(l, v, &cl->timeouts, NULL));
    uint64_t mi = cl->max_idle;
    OPT(v, "max_idle_per_worker", want_u64(l, v, 0, 100000, &mi));
    cl->max_idle = (uint32_t)mi;
    OPT(v, "pool_idle_timeout", want_duration(l, v, 86400000, &cl->pool_idle_ms));
    OPT(v, "health_check", load_health(l, v, &cl->gov.health));
    OPT(v, "outlier", load_outlier(l, v, &cl->gov.outlier));
    OPT(v, "retry", load_retry(l, v, &cl->gov.retry));
    OPT(v, "circuit_breaker", load_breaker(l, v, &cl->gov.breaker));
    return 0;
}

static int load_kv_matches(struct ld *l, const yaml_node_t *seq, struct gw_kv_match **out,
                           size_t *out_n, int header)
{
    size_t n;
    int rc = want_seq(l, seq, &n);
    if (rc)
        return rc;
    struct gw_kv_match *v = cn_arena_calloc(&l->snap->arena, n ? n : 1, sizeof(*v));
    if (!v)
        return fail_at(l, seq, "out of memory");
    for (size_t i = 0; i < n; i++) {
        size_t o = push_index(l, i);
        yaml_node_t *map = seq_item(l, seq, i);
        static const char *const keys[] = {"name", "value", "type", NULL};
        if ((rc = want_map(l, map)) || (rc = check_keys(l, map, keys)) ||
            (rc = req_str(l, map, "name", &v[i].name)))
            return rc;
        if (header) {
            size_t oo = push(l, "name");
            if ((rc = check_header_name(l, get(l, map, "name"), v[i].name)))
                return rc;
            pop(l, oo);
        }
        yaml_node_t *val = get(l, map, "value");
        size_t oo = push(l, "value");
        if (!val)
            return fail_at(l, map, "is required");
        if ((rc = want_str(l, val, &v[i].value)))
            return rc;
        pop(l, oo);
        struct cn_slice type = CN_SLICE_LIT("Exact");
        OPT(t, "type", want_str(l, t, &type));
        if (cn_slice_eq(type, CN_SLICE_LIT("Exact"))) {
            v[i].type = GW_VAL_EXACT;
        } else if (cn_slice_eq(type, CN_SLICE_LIT("RegularExpression"))) {
            v[i].type = GW_VAL_REGEX;
            oo = push(l, "value");
            if ((rc = compile_re(l, val, v[i].value, &v[i].re)))
                return rc;
            pop(l, oo);
        } else {
            push(l, "type");
            return fail_at(l, get(l, map, "type"), "'%.*s' is not one of Exact, RegularExpression",
                           (int)CN_MIN(type.len, 64), type.ptr);
        }
        pop(l, o);
    }
    *out = v;
    *out_n = n;
    return 0;
}

static int parse_method(struct cn_slice s)
{
    for (int m = 0; m <= HTTP_SOURCE; m++) { /* the HTTP methods; llhttp aborts past its table */
        const char *name = llhttp_method_name((llhttp_method_t)m);
        if (name && strcmp(name, "<unknown>") != 0 && cn_slice_eq(s, cn_slice_of(name)))
            return m;
    }
    return -1;
}

static int load_match(struct ld *l, const yaml_node_t *map, struct gw_match *m)
{
    static const char *const keys[] = {"path", "method", "headers", "queryParams", NULL};
    int rc = want_map(l, map);
    if (!rc)
        rc = check_keys(l, map, keys);
    if (rc)
        return rc;
    m->path_type = GW_PATH_PREFIX;
    m->path = CN_SLICE_LIT("/");
    m->method = -1;
    yaml_node_t *p = get(l, map, "path");
    if (p) {
        size_t o = push(l, "path");
        static const char *const pkeys[] = {"type", "value", NULL};
        if ((rc = want_map(l, p)) || (rc = check_keys(l, p, pkeys)))
            return rc;
        const yaml_node_t *map = p; /* for OPT */
        struct cn_slice type = CN_SLICE_LIT("PathPrefix");
        OPT(t, "type", want_str(l, t, &type));
        if (cn_slice_eq(type, CN_SLICE_LIT("Exact")))
            m->path_type = GW_PATH_EXACT;
        else if (cn_slice_eq(type, CN_SLICE_LIT("PathPrefix")))
            m->path_type = GW_PATH_PREFIX;
        else if (cn_slice_eq(type, CN_SLICE_LIT("RegularExpression")))
            m->path_type = GW_PATH_REGEX;
        else {
            push(l, "type");
            return fail_at(l, get(l, p, "type"),
                           "'%.*s' is not one of Exact, PathPrefix, RegularExpression",
                           (int)CN_MIN(type.len, 64), type.ptr);
        }
        yaml_node_t *val = get(l, p, "value");
        size_t oo = push(l, "value");
        if (!val)
            return fail_at(l, p, "is required");
        if ((rc = want_str(l, val, &m->path)))
            return rc;
        if (m->path_type == GW_PATH_REGEX) {
            if ((rc = compile_re(l, val, m->path, &m->path_re)))
                return rc;
        } else {
            if (m->path.len == 0 || m->path.ptr[0] != '/')
                return fail_at(l, val, "a path must start with '/'");
            for (size_t i = 0; i < m->path.len; i++) {
                unsigned char c = (unsigned char)m->path.ptr[i];
                if (c <= 0x20 || c == 0x7f || c == '?' || c == '#')
                    return fail_at(l, val, "a path must not hold spaces, controls, '?' or '#'");
            }
            if (m->path_type == GW_PATH_PREFIX)
                while (m->path.len > 1 && m->path.ptr[m->path.len - 1] == '/')
                    m->path.len--;
        }
        pop(l, oo);
        pop(l, o);
    }
    yaml_node_t *meth = get(l, map, "method");
    if (meth) {
        size_t o = push(l, "method");
        struct cn_slice s = {NULL, 0};
        if ((rc = want_str(l, meth, &s)))
            return rc;
        m->method = parse_method(s);
        if (m->method < 0)
            return fail_at(l, meth, "'%.*s' is not an HTTP method (GET, POST, ...)",
                           (int)CN_MIN(s.len, 64), s.ptr);
        pop(l, o);
    }
    OPT(v, "headers", load_kv_matches(l, v, &m->headers, &m->num_headers, 1));
    OPT(v, "queryParams", load_kv_matches(l, v, &m->query, &m->num_query, 0));
    return 0;
}

static int load_header_ops(struct ld *l, const yaml_node_t *seq, struct gw_header_op **out,
                           size_t *out_n)
{
    size_t n;
    int rc = want_seq(l, seq, &n);
    if (rc)
        return rc;
    struct gw_header_op *v = cn_arena_calloc(&l->snap->arena, n ? n : 1, sizeof(*v));
    if (!v)
        return fail_at(l, seq, "out of memory");
    for (size_t i = 0; i < n; i++) {
        size_t o = push_index(l, i);
        yaml_node_t *map = seq_item(l, seq, i);
        static const char *const keys[] = {"name", "value", NULL};
        if ((rc = want_map(l, map)) || (rc = check_keys(l, map, keys)) ||
            (rc = req_str(l, map, "name", &v[i].name)))
            return rc;
        size_t oo = push(l, "name");
        if ((rc = check_header_name(l, get(l, map, "name"), v[i].name)))
            return rc;
        pop(l, oo);
        yaml_node_t *val = get(l, map, "value");
        oo = push(l, "value");
        if (!val)
            return fail_at(l, map, "is required");
        if ((rc = want_str(l, val, &v[i].value)) || (rc = check_header_value(l, val, v[i].value)))
            return rc;
        pop(l, oo);
        pop(l, o);
    }
    *out = v;
    *out_n = n;
    return 0;
}

static int load_header_mod(struct ld *l, const yaml_node_t *map, struct gw_header_mod *hm)
{
    static const char *const keys[] = {"set", "add", "remove", NULL};
    int rc = want_map(l, map);
    if (!rc)
        rc = check_keys(l, map, keys);
    if (rc)
        return rc;
    OPT(v, "set", load_header_ops(l, v, &hm->set, &hm->num_set));
    OPT(v, "add", load_header_ops(l, v, &hm->add, &hm->num_add));
    yaml_node_t *rm = get(l, map, "remove");
    if (rm) {
        size_t o = push(l, "remove"), n;
        if ((rc = want_seq(l, rm, &n)))
            return rc;
        hm->remove = cn_arena_calloc(&l->snap->arena, n ? n : 1, sizeof(*hm->remove));
        if (!hm->remove)
            return fail_at(l, rm, "out of memory");
        for (size_t i = 0; i < n; i++) {
            size_t oi = push_index(l, i);
            yaml_node_t *it = seq_item(l, rm, i);
            if ((rc = want_str(l, it, &hm->remove[i])) ||
                (rc = check_header_name(l, it, hm->remove[i])))
                return rc;
            pop(l, oi);
        }
        hm->num_remove = n;
        pop(l, o);
    }
    return 0;
}

static int load_path_mod(struct ld *l, const yaml_node_t *map, enum gw_path_mod *mod,
                         struct cn_slice *path)
{
    static const char *const keys[] = {"type", "replaceFullPath", "replacePrefixMatch", NULL};
    int rc = want_map(l, map);
    if (!rc)
        rc = check_keys(l, map, keys);
    struct cn_slice type;
    if (!rc)
        rc = req_str(l, map, "type", &type);
    if (rc)
        return rc;
    const char *field;
    if (cn_slice_eq(type, CN_SLICE_LIT("ReplaceFullPath"))) {
        *mod = GW_PM_FULL;
        field = "replaceFullPath";
    } else if (cn_slice_eq(type, CN_SLICE_LIT("ReplacePrefixMatch"))) {
        *mod = GW_PM_PREFIX;
        field = "replacePrefixMatch";
    } else {
        push(l, "type");
        return fail_at(l, get(l, map, "type"),
                       "'%.*s' is not one of ReplaceFullPath, ReplacePrefixMatch",
                       (int)CN_MIN(type.len, 64), type.ptr);
    }
    if ((rc = req_str(l, map, field, path)))
        return rc;
    if (path->ptr[0] != '/') {
        push(l, field);
        return fail_at(l, get(l, map, field), "a path must start with '/'");
    }
    for (size_t i = 0; i < path->len; i++) {
        unsigned char c = (unsigned char)path->ptr[i];
        if (c <= 0x20 || c == 0x7f || c == '?' || c == '#') {
            push(l, field);
            return fail_at(l, get(l, map, field),
                           "a path must not hold spaces, controls, '?' or '#'");
        }
    }
    return 0;
}

static int check_hostname(struct ld *l, const yaml_node_t *n, struct cn_slice h, int wildcard)
{
    size_t i = 0;
    if (wildcard && h.len > 2 && h.ptr[0] == '*' && h.ptr[1] == '.')
        i = 2;
    if (h.len == 0 || h.len > GW_MAX_HOST)
        return fail_at(l, n, "a hostname has 1 to %d characters", GW_MAX_HOST);
    for (; i < h.len; i++) {
        unsigned char c = (unsigned char)h.ptr[i];
        if (!(islower(c) || isdigit(c) || c == '-' || c == '.'))
            return fail_at(l, n,
                           "'%.*s' is not a lower-case hostname%s (letters, digits, '-', '.')",
                           (int)CN_MIN(h.len, 64), h.ptr, wildcard ? " or *.suffix" : "");
    }
    return 0;
}

static int load_filter(struct ld *l, const yaml_node_t *map, struct gw_filter *f)
{
    static const char *const keys[] = {"type",
                                       "requestHeaderModifier",
                                       "responseHeaderModifier",
                                       "urlRewrite",
                                       "requestRedirect",
                                       "jwt",
                                       "keyAuth",
                                       "cors",
                                       "rateLimit",
                                       NULL};
    int rc = want_map(l, map);
    if (!rc)
        rc = check_keys(l, map, keys);
    struct cn_slice type;
    if (!rc)
        rc = req_str(l, map, "type", &type);
    if (rc)
        return rc;
    static const struct {
        const char *type;
        const char *field;
    } kinds[] = {{"RequestHeaderModifier", "requestHeaderModifier"},
                 {"ResponseHeaderModifier", "responseHeaderModifier"},
                 {"URLRewrite", "urlRewrite"},
                 {"RequestRedirect", "requestRedirect"},
                 {"JWT", "jwt"}, /* GW_F_JWT.. in enum order (config-ext.c) */
                 {"KeyAuth", "keyAuth"},
                 {"CORS", "cors"},
                 {"RateLimit", "rateLimit"}};
    int k = -1;
    for (int i = 0; i < (int)CN_ARRAY_LEN(kinds); i++)
        if (cn_slice_eq(type, cn_slice_of(kinds[i].type)))
            k = i;
    if (k < 0) {
        push(l, "type");
        return fail_at(l, get(l, map, "type"),
                       "'%.*s' is not one of RequestHeaderModifier, ResponseHeaderModifier, "
                       "URLRewrite, RequestRedirect, JWT, KeyAuth, CORS, RateLimit",
                       (int)CN_MIN(type.len, 64), type.ptr);
    }
    for (int i = 0; i < (int)CN_ARRAY_LEN(kinds); i++) {
        yaml_node_t *other = get(l, map, kinds[i].field);
        if (i != k && other) {
            push(l, kinds[i].field);
            return fail_at(l, other, "does not go with type %s", kinds[k].type);
        }
    }
    f->kind = (enum gw_filter_kind)k;
    yaml_node_t *body = get(l, map, kinds[k].field);
    size_t o = push(l, kinds[k].field);
    if (!body)
        return fail_at(l, map, "is required with type %s", kinds[k].type);
    if (k == GW_F_RATE_LIMIT) {
        if ((rc = load_ratelimit(l, body, &f->u.ratelimit)))
            return rc;
    } else if (k >= GW_F_JWT) {
        if ((rc = gw_ext_load_filter(l, body, f)))
            return rc;
    } else if (k <= 1) {
        if ((rc = load_header_mod(l, body, &f->u.headers)))
            return rc;
    } else if (k == 2) {
        static const char *const rkeys[] = {"hostname", "path", NULL};
        if ((rc = want_map(l, body)) || (rc = check_keys(l, body, rkeys)))
            return rc;
        const yaml_node_t *map = body;
        OPT(v, "hostname",
            want_str(l, v, &f->u.rewrite.hostname)
                ?: check_hostname(l, v, f->u.rewrite.hostname, 0));
        OPT(v, "path", load_path_mod(l, v, &f->u.rewrite.path_mod, &f->u.rewrite.path));
    } else {
        static const char *const rkeys[] = {"scheme", "hostname",   "port",
                                            "path",   "statusCode", NULL};
        if ((rc = want_map(l, body)) || (rc = check_keys(l, body, rkeys)))
            return rc;
        const yaml_node_t *map = body;
        f->u.redirect.status = 302;
        OPT(v, "scheme", want_str(l, v, &f->u.redirect.scheme));
        if (f->u.redirect.scheme.ptr && !cn_slice_eq(f->u.redirect.scheme, CN_SLICE_LIT("http")) &&
            !cn_slice_eq(f->u.redirect.scheme, CN_SLICE_LIT("https"))) {
            push(l, "scheme");
            return fail_at(l, get(l, body, "scheme"), "must be http or https");
        }
        OPT(v, "hostname",
            want_str(l, v, &f->u.redirect.hostname)
                ?: check_hostname(l, v, f->u.redirect.hostname, 0));
        uint64_t port = 0, status = 302;
        OPT(v, "port", want_u64(l, v, 1, 65535, &port));
        OPT(v, "path", load_path_mod(l, v, &f->u.redirect.path_mod, &f->u.redirect.path));
        OPT(v, "statusCode", want_u64(l, v, 300, 399, &status));
        if (status != 301 && status != 302 && status != 303 && status != 307 && status != 308) {
            push(l, "statusCode");
            return fail_at(l, get(l, body, "statusCode"), "must be 301, 302, 303, 307 or 308");
        }
        f->u.redirect.port = (int)port;
        f->u.redirect.status = (int)status;
    }
    pop(l, o);
    return 0;
}

static struct gw_cluster *find_cluster(struct cn_gw_snapshot *s, struct cn_slice name)
{
    for (size_t i = 0; i < s->num_clusters; i++)
        if (cn_slice_eq(s->clusters[i].name, name))
            return &s->clusters[i];
    return NULL;
}

/* Route i; its matches go to snap->matches from *next_match on. */
static int load_route(struct ld *l, const yaml_node_t *map, struct gw_route *rt, size_t *next_match,
                      yaml_node_t **hostnames_out)
{
    static const char *const keys[] = {"name",        "hostnames", "matches", "filters",
                                       "backendRefs", "timeouts",  NULL};
    struct cn_gw_snapshot *s = l->snap;
    int rc = want_map(l, map);
    if (!rc)
        rc = check_keys(l, map, keys);
    if (!rc)
        rc = req_str(l, map, "name", &rt->name);
    if (rc)
        return rc;
    size_t o = push(l, "name");
    if ((rc = check_name(l, get(l, map, "name"), rt->name)))
        return rc;
    pop(l, o);
    *hostnames_out = get(l, map, "hostnames");
    yaml_node_t *ms = get(l, map, "matches");
    if (ms) {
        size_t n;
        o = push(l, "matches");
        if ((rc = want_seq(l, ms, &n)))
            return rc;
        if (n == 0)
            return fail_at(l, ms, "must not be empty (leave it out to match every path)");
        for (size_t i = 0; i < n; i++) {
            size_t oi = push_index(l, i);
            struct gw_match *m = &s->matches[(*next_match)++];
            m->route = rt;
            m->order = *next_match;
            if ((rc = load_match(l, seq_item(l, ms, i), m)))
                return rc;
            pop(l, oi);
        }
        pop(l, o);
    } else {
        struct gw_match *m = &s->matches[(*next_match)++];
        m->route = rt;
        m->order = *next_match;
        m->path_type = GW_PATH_PREFIX;
        m->path = CN_SLICE_LIT("/");
        m->method = -1;
    }
    yaml_node_t *fs = get(l, map, "filters");
    if (fs) {
        size_t n;
        o = push(l, "filters");
        if ((rc = want_seq(l, fs, &n)))
            return rc;
        rt->filters = cn_arena_calloc(&s->arena, n ? n : 1, sizeof(*rt->filters));
        if (!rt->filters)
            return fail_at(l, fs, "out of memory");
        rt->num_filters = n;
        for (size_t i = 0; i < n; i++) {
            size_t oi = push_index(l, i);
            struct gw_filter *f = &rt->filters[i];
            yaml_node_t *fn = seq_item(l, fs, i);
            if ((rc = load_filter(l, fn, f)))
                return rc;
            if (f->kind == GW_F_RATE_LIMIT) {
                f->u.ratelimit.ordinal = (size_t)rt->has_ratelimit++;
            }
            if (f->kind == GW_F_REDIRECT) {
                if (rt->redirect || rt->rewrite)
                    return fail_at(l, fn, "one RequestRedirect or URLRewrite filter per route");
                rt->redirect = f;
            } else if (f->kind == GW_F_URL_REWRITE) {
                if (rt->redirect || rt->rewrite)
                    return fail_at(l, fn, "one RequestRedirect or URLRewrite filter per route");
                rt->rewrite = f;
            }
            enum gw_path_mod pm = f->kind == GW_F_REDIRECT      ? f->u.redirect.path_mod
                                  : f->kind == GW_F_URL_REWRITE ? f->u.rewrite.path_mod
                                                                : GW_PM_NONE;
            if (pm == GW_PM_PREFIX) {
                for (size_t k = 0; k < *next_match; k++)
                    if (s->matches[k].route == rt && s->matches[k].path_type != GW_PATH_PREFIX)
                        return fail_at(l, fn,
                                       "ReplacePrefixMatch needs every match of the route to "
                                       "be a PathPrefix");
            }
            pop(l, oi);
        }
        pop(l, o);
    }
    yaml_node_t *bs = get(l, map, "backendRefs");
    o = push(l, "backendRefs");
    if (bs && rt->redirect)
        return fail_at(l, bs, "a route with a RequestRedirect filter has no backends");
    if (!bs && !rt->redirect)
        return fail_at(l, map, "is required (or a RequestRedirect filter)");
    if (bs) {
        size_t n;
        if ((rc = want_seq(l, bs, &n)))
            return rc;
        if (n == 0)
            return fail_at(l, bs, "must list at least one backend");
        rt->backends = cn_arena_calloc(&s->arena, n, sizeof(*rt->backends));
        if (!rt->backends)
            return fail_at(l, bs, "out of memory");
        rt->num_backends = n;
        for (size_t i = 0; i < n; i++) {
            size_t oi = push_index(l, i);
            yaml_node_t *b = seq_item(l, bs, i);
            static const char *const bkeys[] = {"name", "weight", NULL};
            struct cn_slice name;
            if ((rc = want_map(l, b)) || (rc = check_keys(l, b, bkeys)) ||
                (rc = req_str(l, b, "name", &name)))
                return rc;
            rt->backends[i].cluster = find_cluster(s, name);
            if (!rt->backends[i].cluster) {
                push(l, "name");
                return fail_at(l, get(l, b, "name"), "no cluster named '%.*s'",
                               (int)CN_MIN(name.len, 64), name.ptr);
            }
            uint64_t w = 1;
            const yaml_node_t *map = b;
            OPT(v, "weight", want_u64(l, v, 0, MAX_WEIGHT, &w));
            rt->backends[i].weight = (uint32_t)w;
            rt->total_weight += (uint32_t)w;
            pop(l, oi);
        }
        if (rt->total_weight == 0)
            return fail_at(l, bs, "the weights add up to 0");
    }
    pop(l, o);
    OPT(v, "timeouts", load_timeouts(l, v, &rt->timeouts, &rt->timeouts_set));
    return 0;
}

static size_t count_matches(struct ld *l, const yaml_node_t *routes)
{
    size_t total = 0;
    for (yaml_node_item_t *it = routes->data.sequence.items.start;
         it < routes->data.sequence.items.top; it++) {
        yaml_node_t *r = node(l, *it);
        yaml_node_t *ms = r->type == YAML_MAPPING_NODE ? get(l, r, "matches") : NULL;
        if (ms && ms->type == YAML_SEQUENCE_NODE)
            total += (size_t)(ms->data.sequence.items.top - ms->data.sequence.items.start);
        total += 1;
    }
    return total;
}

static int load_root(struct ld *l, const yaml_node_t *root)
{
    static const char *const keys[] = {"listeners", "admin",  "workers", "limits", "proxy",
                                       "clusters",  "routes", "tracing", NULL};
    struct cn_gw_snapshot *s = l->snap;
    int rc = want_map(l, root);
    if (!rc)
        rc = check_keys(l, root, keys);
    if (rc)
        return rc;
    const yaml_node_t *map = root;
    /* listeners */
    yaml_node_t *ls = get(l, root, "listeners");
    size_t o = push(l, "listeners"), n;
    if (!ls)
        return fail_at(l, root, "is required (a list of {name, address})");
    if ((rc = want_seq(l, ls, &n)))
        return rc;
    if (n == 0 || n > 64)
        return fail_at(l, ls, "must list 1 to 64 listeners");
    s->listeners = cn_arena_calloc(&s->arena, n, sizeof(*s->listeners));
    if (!s->listeners)
        return fail_at(l, ls, "out of memory");
    s->num_listeners = n;
    for (size_t i = 0; i < n; i++) {
        size_t oi = push_index(l, i);
        yaml_node_t *ln = seq_item(l, ls, i);
        static const char *const lkeys[] = {"name", "address", "tls", NULL};
        struct gw_listener *li = &s->listeners[i];
        if ((rc = want_map(l, ln)) || (rc = check_keys(l, ln, lkeys)) ||
            (rc = req_str(l, ln, "address", &li->address)))
            return rc;
        li->name = CN_SLICE_LIT("default");
        const yaml_node_t *map = ln;
        OPT(v, "name", want_str(l, v, &li->name) ?: check_name(l, v, li->name));
        if (cn_ev_parse_addr(li->address.ptr, &li->addr) != 0) {
            push(l, "address");
            return fail_at(l, get(l, ln, "address"), "'%.*s' is not HOST:PORT",
                           (int)CN_MIN(li->address.len, 64), li->address.ptr);
        }
        OPT(v, "tls", gw_tls_load(l, v, li)); /* tls.c */
        pop(l, oi);
    }
    pop(l, o);
    s->admin_address = CN_SLICE_LIT("127.0.0.1:9901");
    yaml_node_t *adm = get(l, root, "admin");
    if (adm) {
        o = push(l, "admin");
        static const char *const akeys[] = {"address", NULL};
        if ((rc = want_map(l, adm)) || (rc = check_keys(l, adm, akeys)) ||
            (rc = req_str(l, adm, "address", &s->admin_address)))
            return rc;
        struct sockaddr_storage ss;
        if (cn_ev_parse_addr(s->admin_address.ptr, &ss) != 0) {
            push(l, "address");
            return fail_at(l, get(l, adm, "address"), "'%.*s' is not HOST:PORT",
                           (int)CN_MIN(s->admin_address.len, 64), s->admin_address.ptr);
        }
        pop(l, o);
    }
    OPT(v, "workers", want_u64(l, v, 0, 1024, &s->workers));
    gw_ext_tracing_defaults(&s->tracing);
    OPT(v, "tracing", gw_ext_load_tracing(l, v));
    OPT(v, "limits", load_limits(l, v));
    yaml_node_t *px = get(l, root, "proxy");
    if (px) {
        o = push(l, "proxy");
        static const char *const pkeys[] = {"via", "request_id", NULL};
        if ((rc = want_map(l, px)) || (rc = check_keys(l, px, pkeys)))
            return rc;
        const yaml_node_t *map = px;
        OPT(v, "via", want_bool(l, v, &s->via));
        OPT(v, "request_id", want_bool(l, v, &s->request_id));
        pop(l, o);
    }
    /* clusters */
    yaml_node_t *cs = get(l, root, "clusters");
    o = push(l, "clusters");
    n = 0;
    if (cs && (rc = want_seq(l, cs, &n)))
        return rc;
    s->clusters = cn_arena_calloc(&s->arena, n ? n : 1, sizeof(*s->clusters));
    if (!s->clusters)
        return fail_at(l, cs, "out of memory");
    for (size_t i = 0; i < n; i++) {
        size_t oi = push_index(l, i);
        struct gw_cluster *cl = &s->clusters[i];
        yaml_node_t *cn = seq_item(l, cs, i);
        if ((rc = load_cluster(l, cn, cl)))
            return rc;
        cl->index = i;
        if (find_cluster(s, cl->name)) {
            push(l, "name");
            return fail_at(l, get(l, cn, "name"), "a cluster named '%.*s' comes earlier",
                           (int)CN_MIN(cl->name.len, 64), cl->name.ptr);
        }
        s->num_clusters = i + 1;
        for (size_t e = 0; e < cl->num_eps; e++)
            cl->eps[e].global = s->num_eps++;
        pop(l, oi);
    }
    pop(l, o);
    /* routes */
    yaml_node_t *rs = get(l, root, "routes");
    o = push(l, "routes");
    n = 0;
    if (rs && (rc = want_seq(l, rs, &n)))
        return rc;
    s->routes = cn_arena_calloc(&s->arena, n ? n : 1, sizeof(*s->routes));
    size_t nm = rs ? count_matches(l, rs) : 0;
    s->matches = cn_arena_calloc(&s->arena, nm ? nm : 1, sizeof(*s->matches));
    yaml_node_t **hosts = calloc(n ? n : 1, sizeof(*hosts));
    if (!s->routes || !s->matches || !hosts) {
        free(hosts);
        return fail_at(l, rs, "out of memory");
    }
    size_t next_match = 0;
    for (size_t i = 0; i < n; i++) {
        size_t oi = push_index(l, i);
        struct gw_route *rt = &s->routes[i];
        rt->index = i;
        yaml_node_t *rn = seq_item(l, rs, i);
        if ((rc = load_route(l, rn, rt, &next_match, &hosts[i]))) {
            free(hosts);
            return rc;
        }
        for (size_t k = 0; k < i; k++)
            if (cn_slice_eq(s->routes[k].name, rt->name)) {
                free(hosts);
                push(l, "name");
                return fail_at(l, get(l, rn, "name"), "a route named '%.*s' comes earlier",
                               (int)CN_MIN(rt->name.len, 64), rt->name.ptr);
            }
        s->num_routes = i + 1;
        pop(l, oi);
    }
    s->num_matches = next_match;
    pop(l, o);
    /* hostnames: checked here, compiled by the matcher (stored on the route via a list) */
    for (size_t i = 0; i < n; i++) {
        if (!hosts[i])
            continue;
        size_t o1 = push(l, "routes"), o2 = push_index(l, i), o3 = push(l, "hostnames"), hn;
        (void)o1;
        if ((rc = want_seq(l, hosts[i], &hn))) {
            free(hosts);
            return rc;
        }
        struct cn_slice *hv = cn_arena_calloc(&s->arena, hn + 1, sizeof(*hv));
        if (!hv) {
            rc = fail_at(l, hosts[i], "out of memory");
            free(hosts);
            return rc;
        }
        for (size_t k = 0; k < hn; k++) {
            size_t ok = push_index(l, k);
            yaml_node_t *h = seq_item(l, hosts[i], k);
            if ((rc = want_str(l, h, &hv[k])) || (rc = check_hostname(l, h, hv[k], 1))) {
                free(hosts);
                return rc;
            }
            pop(l, ok);
        }
        s->routes[i].hostnames = hv;
        s->routes[i].num_hostnames = hn;
        (void)o2;
        (void)o3;
        pop(l, o1);
    }
    free(hosts);
    return 0;
}

static void snapshot_free(struct cn_gw_snapshot *s)
{
    if (!s)
        return;
    if (s->base) {
        gw_disc_snapshot_free(s); /* derived by discovery: most of it is base's */
        return;
    }
    for (size_t i = 0; i < s->num_regexes; i++)
        regfree(s->regexes[i]);
    gw_tls_snapshot_free(s);
    gw_matcher_free(s);
    gw_ext_snapshot_free(s);
    gw_gov_release(s);
    free(s->source);
    cn_arena_release(&s->arena);
    free(s);
}

static int yaml_fail(struct ld *l, const yaml_parser_t *p)
{
    snprintf(l->err, l->err_len, "%s:%zu:%zu: %s%s%s", l->file, p->problem_mark.line + 1,
             p->problem_mark.column + 1, p->problem ? p->problem : "malformed YAML",
             p->context ? " " : "", p->context ? p->context : "");
    return CN_ESYNTAX;
}

struct cn_gw_snapshot *cn_gw_config_load_buffer(const char *name, const char *data, size_t len,
                                                char *err, size_t err_len)
{
    struct cn_gw_snapshot *s = calloc(1, sizeof(*s));
    if (!s) {
        snprintf(err, err_len, "%s: out of memory", name);
        return NULL;
    }
    atomic_init(&s->refs, 1);
    cn_arena_init(&s->arena, 64 << 10, 256u << 20);
    s->source = strdup(name);
    s->request_id = 1;
    s->limits.http = (struct cn_http_limits){
        .max_url_bytes = 8 * KIB,
        .max_header_bytes = 32 * KIB,
        .max_headers = 100,
        .max_body_bytes = 100 * MIB,
        .header_timeout_ms = 10000,
        .body_timeout_ms = 0,
        .idle_timeout_ms = 60000,
        .send_timeout_ms = 30000,
        .max_connections = 10000,
        .busy_poll_us = 0, /* a proxy waits on its upstreams: spinning takes their CPU */
    };
    s->limits.max_response_header_bytes = 32 * KIB;
    s->limits.max_response_headers = 100;
    s->limits.batch_upstream_sends = 1;
    struct ld l = {.snap = s, .file = name, .err = err, .err_len = err_len};
    l.path[0] = '\0';
    yaml_parser_t parser;
    yaml_document_t doc;
    int rc = CN_EINVAL;
    if (!yaml_parser_initialize(&parser)) {
        snprintf(err, err_len, "%s: out of memory", name);
        snapshot_free(s);
        return NULL;
    }
    yaml_parser_set_input_string(&parser, (const unsigned char *)data, len);
    if (!yaml_parser_load(&parser, &doc)) {
        rc = yaml_fail(&l, &parser);
    } else {
        l.doc = &doc;
        yaml_node_t *root = yaml_document_get_root_node(&doc);
        if (!root)
            rc = fail_at(&l, NULL, "the file is empty (listeners and routes are required)");
        else
            rc = load_root(&l, root);
        if (!rc && (rc = gw_matcher_build(s)) != 0)
            snprintf(err, err_len, "%s: out of memory building the route table", name);
        if (!rc && (rc = gw_gov_prepare(s)) != 0)
            snprintf(err, err_len, "%s: out of memory", name);
        yaml_document_delete(&doc);
    }
    yaml_parser_delete(&parser);
    if (rc) {
        snapshot_free(s);
        return NULL;
    }
    return s;
}

struct cn_gw_snapshot *cn_gw_config_load_file(const char *path, char *err, size_t err_len)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        snprintf(err, err_len, "%s: cannot open: %s", path, strerror(errno));
        return NULL;
    }
    struct cn_buf b;
    cn_buf_init(&b, MAX_CONFIG_BYTES);
    char chunk[8192];
    size_t n;
    int rc = 0;
    while (!rc && (n = fread(chunk, 1, sizeof(chunk), f)) > 0)
        rc = cn_buf_append(&b, chunk, n);
    int rerr = ferror(f);
    fclose(f);
    if (rc || rerr) {
        snprintf(err, err_len, "%s: %s", path,
                 rc == CN_ELIMIT ? "larger than 16 MiB" : "cannot read the file");
        cn_buf_release(&b);
        return NULL;
    }
    struct cn_gw_snapshot *s =
        cn_gw_config_load_buffer(path, b.ptr ? b.ptr : "", b.len, err, err_len);
    cn_buf_release(&b);
    return s;
}

struct cn_gw_snapshot *cn_gw_snapshot_ref(struct cn_gw_snapshot *s)
{
    atomic_fetch_add_explicit(&s->refs, 1, memory_order_relaxed);
    return s;
}

void cn_gw_snapshot_unref(struct cn_gw_snapshot *s)
{
    if (s && atomic_fetch_sub_explicit(&s->refs, 1, memory_order_acq_rel) == 1)
        snapshot_free(s);
}

size_t cn_gw_snapshot_num_listeners(const struct cn_gw_snapshot *s)
{
    return s->num_listeners;
}

const struct sockaddr_storage *cn_gw_snapshot_listener(const struct cn_gw_snapshot *s, size_t i,
                                                       const char **out_name)
{
    if (out_name)
        *out_name = s->listeners[i].name.ptr;
    return &s->listeners[i].addr;
}

const char *cn_gw_snapshot_admin(const struct cn_gw_snapshot *s)
{
    return s->admin_address.ptr;
}

uint64_t cn_gw_snapshot_workers(const struct cn_gw_snapshot *s)
{
    return s->workers;
}

const struct cn_http_limits *cn_gw_snapshot_limits(const struct cn_gw_snapshot *s)
{
    return &s->limits.http;
}

int cn_gw_snapshot_same_listeners(const struct cn_gw_snapshot *a, const struct cn_gw_snapshot *b)
{
    if (a->num_listeners != b->num_listeners)
        return 0;
    for (size_t i = 0; i < a->num_listeners; i++)
        if (!cn_slice_eq(a->listeners[i].address, b->listeners[i].address) ||
            !a->listeners[i].tls != !b->listeners[i].tls)
            return 0;
    return 1;
}

/* ---- for config-ext.c ----------------------------------------------------------------------- */

int gw_ld_fail(struct ld *l, const yaml_node_t *n, const char *fmt, ...)
{
    char msg[384];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    return fail_at(l, n, "%s", msg);
}

size_t gw_ld_push(struct ld *l, const char *key)
{
    return push(l, key);
}
size_t gw_ld_push_index(struct ld *l, size_t i)
{
    return push_index(l, i);
}
void gw_ld_pop(struct ld *l, size_t old)
{
    pop(l, old);
}
yaml_node_t *gw_ld_get(struct ld *l, const yaml_node_t *map, const char *key)
{
    return get(l, map, key);
}
yaml_node_t *gw_ld_item(struct ld *l, const yaml_node_t *seq, size_t i)
{
    return seq_item(l, seq, i);
}
int gw_ld_map(struct ld *l, const yaml_node_t *n, const char *const *keys)
{
    return want_map(l, n) ?: check_keys(l, n, keys);
}
int gw_ld_seq(struct ld *l, const yaml_node_t *n, size_t *out_len)
{
    return want_seq(l, n, out_len);
}
int gw_ld_str(struct ld *l, const yaml_node_t *n, struct cn_slice *out)
{
    return want_str(l, n, out);
}
int gw_ld_u64(struct ld *l, const yaml_node_t *n, uint64_t lo, uint64_t hi, uint64_t *out)
{
    return want_u64(l, n, lo, hi, out);
}
int gw_ld_bool(struct ld *l, const yaml_node_t *n, int *out)
{
    return want_bool(l, n, out);
}
int gw_ld_duration(struct ld *l, const yaml_node_t *n, uint64_t hi_ms, uint64_t *out_ms)
{
    return want_duration(l, n, hi_ms, out_ms);
}
int gw_ld_size(struct ld *l, const yaml_node_t *n, uint64_t lo, uint64_t hi, uint64_t *out)
{
    return want_size(l, n, lo, hi, out);
}
int gw_ld_header_name(struct ld *l, const yaml_node_t *n, struct cn_slice s)
{
    return check_header_name(l, n, s);
}
struct cn_gw_snapshot *gw_ld_snap(struct ld *l)
{
    return l->snap;
}
const char *gw_ld_file(struct ld *l)
{
    return l->file;
}
