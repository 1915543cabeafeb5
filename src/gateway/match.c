/* The route table: host groups (exact host map, wildcard suffixes longest first, routes for
 * every host), each with a path matcher (exact map, prefix map walked from the longest
 * segment prefix down, regex list). Within a path key matches are sorted by precedence, so
 * the first whose method, headers and query parameters agree wins. */
#include "gateway/internal.h"

#include <xxhash.h>

uint64_t gw_hash(const void *p, size_t len)
{
    return XXH3_64bits(p, len);
}

static size_t pow2_for(size_t n)
{
    size_t cap = 8;
    while (cap < n * 2 + 1)
        cap <<= 1;
    return cap;
}

static int map_init(struct cn_arena *a, struct gw_map *m, size_t n)
{
    if (n == 0) {
        memset(m, 0, sizeof(*m));
        return 0;
    }
    m->cap = pow2_for(n);
    m->len = 0;
    m->slots = cn_arena_calloc(a, m->cap, sizeof(*m->slots));
    return m->slots ? 0 : CN_ENOMEM;
}

/* Insert-only (keys are unique when built). */
static void map_put(struct gw_map *m, struct cn_slice key, void *val)
{
    uint64_t h = gw_hash(key.ptr, key.len);
    size_t i = (size_t)h & (m->cap - 1);
    while (m->slots[i].val)
        i = (i + 1) & (m->cap - 1);
    m->slots[i] = (struct gw_map_slot){key, h, val};
    m->len++;
}

void *gw_map_get(const struct gw_map *m, struct cn_slice key)
{
    if (!m->cap)
        return NULL;
    uint64_t h = gw_hash(key.ptr, key.len);
    size_t i = (size_t)h & (m->cap - 1);
    while (m->slots[i].val) {
        if (m->slots[i].hash == h && cn_slice_eq(m->slots[i].key, key))
            return m->slots[i].val;
        i = (i + 1) & (m->cap - 1);
    }
    return NULL;
}

/* ---- build -------------------------------------------------------------------------------- */

struct entry {
    struct gw_group *g;
    int type;
    struct cn_slice key;
    struct gw_match *m;
};

static int cmp_slice(struct cn_slice a, struct cn_slice b)
{
    size_t n = CN_MIN(a.len, b.len);
    int c = n ? memcmp(a.ptr, b.ptr, n) : 0;
    if (c)
        return c;
    return a.len < b.len ? -1 : a.len > b.len;
}

/* Precedence among matches of one key: a method, more headers, more query parameters, then
 * configuration order. */
static int cmp_prec(const struct gw_match *a, const struct gw_match *b)
{
    int am = a->method >= 0, bm = b->method >= 0;
    if (am != bm)
        return bm - am;
    if (a->num_headers != b->num_headers)
        return a->num_headers > b->num_headers ? -1 : 1;
    if (a->num_query != b->num_query)
        return a->num_query > b->num_query ? -1 : 1;
    return a->order < b->order ? -1 : a->order > b->order;
}

static int cmp_entry(const void *pa, const void *pb)
{
    const struct entry *a = pa, *b = pb;
    if (a->g != b->g)
        return a->g < b->g ? -1 : 1;
    if (a->type != b->type)
        return a->type - b->type;
    if (a->type != GW_PATH_REGEX) {
        int c = cmp_slice(a->key, b->key);
        if (c)
            return c;
    }
    return cmp_prec(a->m, b->m);
}

static int cmp_wild(const void *pa, const void *pb)
{
    const struct gw_wild *a = pa, *b = pb;
    if (a->suffix.len != b->suffix.len)
        return a->suffix.len > b->suffix.len ? -1 : 1;
    return cmp_slice(a->suffix, b->suffix);
}

void gw_matcher_free(struct cn_gw_snapshot *snap)
{
    (void)snap; /* everything lives in the snapshot's arena */
}

int gw_matcher_build(struct cn_gw_snapshot *s)
{
    struct cn_arena *a = &s->arena;
    /* Host groups. */
    size_t num_exact = 0, num_wild = 0;
    for (size_t i = 0; i < s->num_routes; i++)
        for (size_t k = 0; k < s->routes[i].num_hostnames; k++) {
            if (s->routes[i].hostnames[k].ptr[0] == '*')
                num_wild++;
            else
                num_exact++;
        }
    if (map_init(a, &s->hosts, num_exact) != 0)
        return CN_ENOMEM;
    s->wild = cn_arena_calloc(a, num_wild ? num_wild : 1, sizeof(*s->wild));
    if (!s->wild)
        return CN_ENOMEM;
    for (size_t i = 0; i < s->num_routes; i++)
        for (size_t k = 0; k < s->routes[i].num_hostnames; k++) {
            struct cn_slice h = s->routes[i].hostnames[k];
            if (h.ptr[0] == '*') {
                struct cn_slice suf = {h.ptr + 1, h.len - 1};
                size_t j = 0;
                while (j < s->num_wild && !cn_slice_eq(s->wild[j].suffix, suf))
                    j++;
                if (j == s->num_wild)
                    s->wild[s->num_wild++].suffix = suf;
            } else if (!gw_map_get(&s->hosts, h)) {
                struct gw_group *g = cn_arena_calloc(a, 1, sizeof(*g));
                if (!g)
                    return CN_ENOMEM;
                map_put(&s->hosts, h, g);
            }
        }
    qsort(s->wild, s->num_wild, sizeof(*s->wild), cmp_wild);
    /* Entries: each match in each group of its route. */
    size_t num_entries = 0;
    for (size_t i = 0; i < s->num_matches; i++) {
        size_t nh = s->matches[i].route->num_hostnames;
        num_entries += nh ? nh : 1;
    }
    struct entry *es = calloc(num_entries ? num_entries : 1, sizeof(*es));
    if (!es)
        return CN_ENOMEM;
    size_t ne = 0;
    for (size_t i = 0; i < s->num_matches; i++) {
        struct gw_match *m = &s->matches[i];
        const struct gw_route *rt = m->route;
        for (size_t k = 0; k < (rt->num_hostnames ? rt->num_hostnames : 1); k++) {
            struct gw_group *g = &s->any;
            if (rt->num_hostnames) {
                struct cn_slice h = rt->hostnames[k];
                if (h.ptr[0] == '*') {
                    struct cn_slice suf = {h.ptr + 1, h.len - 1};
                    for (size_t j = 0; j < s->num_wild; j++)
                        if (cn_slice_eq(s->wild[j].suffix, suf))
                            g = &s->wild[j].group;
                } else {
                    g = gw_map_get(&s->hosts, h);
                }
            }
            es[ne++] = (struct entry){g, (int)m->path_type, m->path, m};
        }
    }
    qsort(es, ne, sizeof(*es), cmp_entry);
    /* Count keys per group and kind, size the maps, then fill them run by run. */
    for (int pass = 0; pass < 2; pass++) {
        size_t i = 0;
        while (i < ne) {
            size_t j = i + 1;
            while (j < ne && es[j].g == es[i].g && es[j].type == es[i].type &&
                   (es[i].type == GW_PATH_REGEX || cn_slice_eq(es[j].key, es[i].key)))
                j++;
            struct gw_group *g = es[i].g;
            if (pass == 0) {
                if (es[i].type == GW_PATH_EXACT)
                    g->exact.len++;
                else if (es[i].type == GW_PATH_PREFIX)
                    g->prefix.len++;
            } else {
                struct gw_mlist *l =
                    es[i].type == GW_PATH_REGEX ? &g->regex : cn_arena_calloc(a, 1, sizeof(*l));
                if (!l)
                    goto oom;
                l->v = cn_arena_alloc(a, (j - i) * sizeof(*l->v));
                if (!l->v)
                    goto oom;
                l->n = j - i;
                for (size_t k = i; k < j; k++)
                    l->v[k - i] = es[k].m;
                if (es[i].type == GW_PATH_EXACT)
                    map_put(&g->exact, es[i].key, l);
                else if (es[i].type == GW_PATH_PREFIX)
                    map_put(&g->prefix, es[i].key, l);
            }
            i = j;
        }
        if (pass == 0) {
            /* Every group's key counts are in len: size its maps. */
            for (size_t k = 0; k < ne; k++) {
                struct gw_group *g = es[k].g;
                if (g->exact.len && !g->exact.cap) {
                    size_t n = g->exact.len;
                    if (map_init(a, &g->exact, n) != 0)
                        goto oom;
                }
                if (g->prefix.len && !g->prefix.cap) {
                    size_t n = g->prefix.len;
                    if (map_init(a, &g->prefix, n) != 0)
                        goto oom;
                }
            }
        }
    }
    free(es);
    return 0;
oom:
    free(es);
    return CN_ENOMEM;
}

/* ---- matching ---------------------------------------------------------------------------- */

static int gw_re_match(const regex_t *re, const char *p, size_t len)
{
    char stack[1024];
    char *buf = len < sizeof(stack) ? stack : malloc(len + 1);
    if (!buf)
        return 0;
    memcpy(buf, p, len);
    buf[len] = '\0';
    /* A NUL inside the value would cut it short: never a match. */
    int ok = memchr(p, '\0', len) == NULL && regexec(re, buf, 0, NULL, 0) == 0;
    if (buf != stack)
        free(buf);
    return ok;
}

static int value_ok(const struct gw_kv_match *kv, const char *p, size_t len)
{
    if (kv->type == GW_VAL_EXACT)
        return cn_slice_eq(kv->value, (struct cn_slice){p, len});
    return gw_re_match(kv->re, p, len);
}

/* Percent-decodes the first value of query parameter name into dst. Returns the length or
 * -1 when absent or too long. */
static int query_value(struct cn_slice q, struct cn_slice name, char *dst, size_t dst_len)
{
    const char *p = q.ptr, *end = q.ptr + q.len;
    while (p && p < end) {
        const char *amp = memchr(p, '&', (size_t)(end - p));
        const char *e = amp ? amp : end;
        const char *eq = memchr(p, '=', (size_t)(e - p));
        const char *ke = eq ? eq : e;
        if ((size_t)(ke - p) == name.len && memcmp(p, name.ptr, name.len) == 0) {
            size_t n = 0;
            for (const char *v = eq ? eq + 1 : e; v < e; v++) {
                char ch = *v;
                if (ch == '+') {
                    ch = ' ';
                } else if (ch == '%' && e - v > 2 && cn_hexval(v[1]) >= 0 && cn_hexval(v[2]) >= 0) {
                    ch = (char)(cn_hexval(v[1]) * 16 + cn_hexval(v[2]));
                    v += 2;
                }
                if (n >= dst_len)
                    return -1;
                dst[n++] = ch;
            }
            return (int)n;
        }
        p = amp ? amp + 1 : end;
    }
    return -1;
}

static int conds_ok(const struct gw_match *m, const struct gw_req_view *rv)
{
    if (m->method >= 0 && m->method != rv->method)
        return 0;
    for (size_t i = 0; i < m->num_headers; i++) {
        const struct gw_kv_match *kv = &m->headers[i];
        size_t k = 0;
        while (k < rv->num_headers && !cn_slice_case_eq(rv->headers[k].name, kv->name))
            k++;
        if (k == rv->num_headers ||
            !value_ok(kv, rv->headers[k].value.ptr, rv->headers[k].value.len))
            return 0;
    }
    for (size_t i = 0; i < m->num_query; i++) {
        char buf[GW_MAX_QUERY_VAL];
        int n = query_value(rv->query, m->query[i].name, buf, sizeof(buf));
        if (n < 0 || !value_ok(&m->query[i], buf, (size_t)n))
            return 0;
    }
    return 1;
}

static const struct gw_match *first_ok(const struct gw_mlist *l, const struct gw_req_view *rv)
{
    if (!l)
        return NULL;
    for (size_t i = 0; i < l->n; i++)
        if (conds_ok(l->v[i], rv))
            return l->v[i];
    return NULL;
}

static const struct gw_match *group_match(const struct gw_group *g, const struct gw_req_view *rv)
{
    const struct gw_match *m;
    struct cn_slice path = rv->path;
    if (g->exact.cap && (m = first_ok(gw_map_get(&g->exact, path), rv)))
        return m;
    if (g->prefix.cap) {
        /* Segment prefixes from the longest: "/a/b/c" -> "/a/b/c", "/a/b", "/a", "/". */
        size_t len = path.len;
        while (len > 1 && path.ptr[len - 1] == '/')
            len--;
        for (;;) {
            struct cn_slice key = {path.ptr, len};
            if (len == 0)
                key = CN_SLICE_LIT("/");
            if ((m = first_ok(gw_map_get(&g->prefix, key), rv)))
                return m;
            if (len <= 1)
                break;
            size_t j = len - 1;
            while (j > 0 && path.ptr[j] != '/')
                j--;
            len = j;
        }
    }
    for (size_t i = 0; i < g->regex.n; i++) {
        m = g->regex.v[i];
        if (gw_re_match(m->path_re, path.ptr, path.len) && conds_ok(m, rv))
            return m;
    }
    return NULL;
}

const struct gw_match *gw_match_request(const struct cn_gw_snapshot *s,
                                        const struct gw_req_view *rv)
{
    const struct gw_match *m;
    if (rv->host.len) {
        const struct gw_group *g = gw_map_get(&s->hosts, rv->host);
        if (g && (m = group_match(g, rv)))
            return m;
        for (size_t i = 0; i < s->num_wild; i++) {
            struct cn_slice suf = s->wild[i].suffix;
            if (rv->host.len > suf.len &&
                memcmp(rv->host.ptr + rv->host.len - suf.len, suf.ptr, suf.len) == 0 &&
                (m = group_match(&s->wild[i].group, rv)))
                return m;
        }
    }
    return group_match(&s->any, rv);
}

int gw_host_normalize(struct cn_slice host, char *dst)
{
    size_t len = host.len;
    if (len && host.ptr[0] == '[') {
        const char *rb = memchr(host.ptr, ']', len);
        if (rb)
            len = (size_t)(rb - host.ptr) + 1;
    } else {
        const char *colon = memchr(host.ptr, ':', len);
        if (colon)
            len = (size_t)(colon - host.ptr);
    }
    while (len && host.ptr[len - 1] == '.')
        len--;
    if (len > GW_MAX_HOST)
        return -1;
    for (size_t i = 0; i < len; i++) {
        char c = host.ptr[i];
        dst[i] = (c >= 'A' && c <= 'Z') ? (char)(c + 32) : c;
    }
    dst[len] = '\0';
    return (int)len;
}
