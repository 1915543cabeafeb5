/* Code links: per-service URL templates filled from a record's code.* attributes and its
 * resource's vcs.* / service.version attributes (query.h). */
#include "telemetry/query.h"

enum ph { PH_SERVICE, PH_REPO, PH_REVISION, PH_FILEPATH, PH_LINENO, PH_FUNCTION, PH_COUNT };

static const char *const ph_names[PH_COUNT] = {"service",  "repo",   "revision",
                                               "filepath", "lineno", "function"};

struct link {
    char *service;
    char *tmpl;
};

/* A small table, searched linearly: a configuration names a handful of services. */
struct cn_code_links {
    struct link *items;
    size_t num;
};

/* The placeholder named p[0..n), or -1. */
static int ph_find(const char *p, size_t n)
{
    for (int i = 0; i < PH_COUNT; i++)
        if (strlen(ph_names[i]) == n && memcmp(ph_names[i], p, n) == 0)
            return i;
    return -1;
}

int cn_code_template_check(const char *tmpl, char *err, size_t err_len)
{
    for (const char *p = tmpl; *p; p++) {
        unsigned char c = (unsigned char)*p;
        /* The template's own text goes into URLs as it is: URL characters only. */
        if (c <= 0x20 || c >= 0x7f || strchr("\"<>\\^`|", c)) {
            snprintf(err, err_len,
                     "byte 0x%02x at position %zu of the code link template is not allowed in a "
                     "URL",
                     c, (size_t)(p - tmpl));
            return CN_ESYNTAX;
        }
        if (*p == '}') {
            snprintf(err, err_len, "'}' without '{' in the code link template");
            return CN_ESYNTAX;
        }
        if (*p != '{')
            continue;
        const char *e = strchr(p, '}');
        if (!e) {
            snprintf(err, err_len, "unclosed '{' in the code link template");
            return CN_ESYNTAX;
        }
        if (ph_find(p + 1, (size_t)(e - p - 1)) < 0) {
            snprintf(err, err_len,
                     "unknown placeholder {%.*s} (known: {service}, {repo}, {revision}, "
                     "{filepath}, {lineno}, {function})",
                     (int)CN_MIN(e - p - 1, 64), p + 1);
            return CN_ESYNTAX;
        }
        p = e;
    }
    return 0;
}

struct cn_code_links *cn_code_links_new(void)
{
    return calloc(1, sizeof(struct cn_code_links));
}

void cn_code_links_free(struct cn_code_links *cl)
{
    if (!cl)
        return;
    for (size_t i = 0; i < cl->num; i++) {
        free(cl->items[i].service);
        free(cl->items[i].tmpl);
    }
    free(cl->items);
    free(cl);
}

int cn_code_links_add(struct cn_code_links *cl, const char *service, const char *tmpl, char *err,
                      size_t err_len)
{
    int rc = cn_code_template_check(tmpl, err, err_len);
    if (rc)
        return rc;
    struct link *items = realloc(cl->items, (cl->num + 1) * sizeof(*items));
    if (!items)
        return CN_ENOMEM;
    cl->items = items;
    char *s = strdup(service), *t = strdup(tmpl);
    if (!s || !t) {
        free(s);
        free(t);
        return CN_ENOMEM;
    }
    cl->items[cl->num++] = (struct link){s, t};
    return 0;
}

static const char *template_for(const struct cn_code_links *cl, struct cn_slice service)
{
    const char *def = NULL;
    for (size_t i = 0; i < cl->num; i++) {
        if (cn_slice_eq(service, cn_slice_of(cl->items[i].service)))
            return cl->items[i].tmpl;
        if (strcmp(cl->items[i].service, "*") == 0)
            def = cl->items[i].tmpl;
    }
    return def;
}

static const struct cn_val *attr(const struct cn_kvs *kvs, const char *key)
{
    size_t n = strlen(key);
    for (uint32_t i = 0; kvs && i < kvs->num; i++)
        if (kvs->items[i].key.len == n && memcmp(kvs->items[i].key.ptr, key, n) == 0)
            return &kvs->items[i].val;
    return NULL;
}

/* The text of the first of keys present with a non-empty text form, into dst. */
static int first_text(const struct cn_kvs *kvs, const char *const *keys, size_t num_keys, char *dst,
                      size_t dst_len)
{
    for (size_t i = 0; i < num_keys; i++) {
        const struct cn_val *v = attr(kvs, keys[i]);
        if (!v)
            continue;
        int n = cn_val_text(v, dst, dst_len);
        if (n > 0 && (size_t)n < dst_len)
            return n;
    }
    return -1;
}

/* Appends s percent-escaped; '/', ':' and '@' kept when keep_slash (a path or a repository
 * URL: https://git.example/org/repo must stay a URL). Returns 0 or CN_ERANGE. */
static int put_escaped(char *dst, size_t dst_len, size_t *at, const char *s, size_t n,
                       int keep_slash)
{
    static const char hex[] = "0123456789ABCDEF";
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        int plain = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                    c == '-' || c == '.' || c == '_' || c == '~' ||
                    (keep_slash && (c == '/' || c == ':' || c == '@'));
        if (plain) {
            if (*at + 1 >= dst_len)
                return CN_ERANGE;
            dst[(*at)++] = (char)c;
        } else {
            if (*at + 3 >= dst_len)
                return CN_ERANGE;
            dst[(*at)++] = '%';
            dst[(*at)++] = hex[c >> 4];
            dst[(*at)++] = hex[c & 15];
        }
    }
    return 0;
}

int cn_code_url(const struct cn_code_links *cl, const struct cn_resource *r,
                const struct cn_kvs *attrs, char *dst, size_t dst_len)
{
    if (!cl || cl->num == 0 || !r)
        return 0;
    static const char *const k_path[] = {"code.filepath", "code.file.path"};
    static const char *const k_line[] = {"code.lineno", "code.line.number"};
    static const char *const k_func[] = {"code.function", "code.function.name"};
    static const char *const k_repo[] = {"vcs.repository.name", "vcs.repository.url.full"};
    static const char *const k_rev[] = {"vcs.revision", "vcs.ref.head.revision", "service.version"};
    char vals[PH_COUNT][1024];
    int lens[PH_COUNT];
    lens[PH_FILEPATH] = first_text(attrs, k_path, 2, vals[PH_FILEPATH], sizeof(vals[0]));
    if (lens[PH_FILEPATH] <= 0)
        return 0;
    const char *tmpl = template_for(cl, r->service);
    if (!tmpl)
        return 0;
    lens[PH_LINENO] = first_text(attrs, k_line, 2, vals[PH_LINENO], sizeof(vals[0]));
    lens[PH_FUNCTION] = first_text(attrs, k_func, 2, vals[PH_FUNCTION], sizeof(vals[0]));
    lens[PH_REPO] = first_text(&r->attrs, k_repo, 2, vals[PH_REPO], sizeof(vals[0]));
    lens[PH_REVISION] = first_text(&r->attrs, k_rev, 3, vals[PH_REVISION], sizeof(vals[0]));
    lens[PH_SERVICE] = r->service.len < sizeof(vals[0]) ? (int)r->service.len : -1;
    if (lens[PH_SERVICE] > 0)
        memcpy(vals[PH_SERVICE], r->service.ptr, r->service.len);
    size_t at = 0;
    for (const char *p = tmpl; *p; p++) {
        if (*p != '{') {
            if (at + 1 >= dst_len)
                return CN_ERANGE;
            dst[at++] = *p;
            continue;
        }
        const char *e = strchr(p, '}');
        int ph = e ? ph_find(p + 1, (size_t)(e - p - 1)) : -1;
        if (CN_NEVER(ph < 0))
            return 0; /* templates are checked when added */
        if (lens[ph] <= 0)
            return 0;
        int rc = put_escaped(dst, dst_len, &at, vals[ph], (size_t)lens[ph],
                             ph == PH_FILEPATH || ph == PH_REPO);
        if (rc)
            return rc;
        p = e;
    }
    if (at >= dst_len)
        return CN_ERANGE;
    dst[at] = '\0';
    return (int)at;
}
