/* The web console's files on the API port (console.h). */
#include "console/console.h"

#include "http/router.h"
#include "http/server.h"

/* The top-level paths of the console's pages (web/src/main.jsx's PAGES). "/NAME" and
 * "/NAME/..." answer index.html and the page's script shows what the rest names; any other
 * unknown path stays a plain 404 like elsewhere on the API port. The gateway's page adds its
 * name here when it comes. */
static const char *const pages[] = {"services", "topology", "traces",   "logs",
                                    "rca",      "gateway",  "registry", "demo"};

#define IMMUTABLE  "public, max-age=31536000, immutable"
#define REVALIDATE "no-cache"

static const struct {
    const char *ext;
    const char *type;
} types[] = {
    {".html", "text/html; charset=utf-8"},
    {".js", "text/javascript; charset=utf-8"},
    {".mjs", "text/javascript; charset=utf-8"},
    {".css", "text/css; charset=utf-8"},
    {".json", "application/json"},
    {".map", "application/json"},
    {".svg", "image/svg+xml"},
    {".png", "image/png"},
    {".jpg", "image/jpeg"},
    {".jpeg", "image/jpeg"},
    {".gif", "image/gif"},
    {".webp", "image/webp"},
    {".ico", "image/x-icon"},
    {".woff2", "font/woff2"},
    {".woff", "font/woff"},
    {".ttf", "font/ttf"},
    {".txt", "text/plain; charset=utf-8"},
    {".wasm", "application/wasm"},
};

const char *cn_console_content_type(struct cn_slice path)
{
    size_t dot = path.len;
    while (dot > 0 && path.ptr[dot - 1] != '.' && path.ptr[dot - 1] != '/')
        dot--;
    if (dot == 0 || path.ptr[dot - 1] != '.')
        return "application/octet-stream";
    struct cn_slice ext = {path.ptr + dot - 1, path.len - dot + 1};
    for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++)
        if (cn_slice_case_eq(ext, cn_slice_of(types[i].ext)))
            return types[i].type;
    return "application/octet-stream";
}

const struct cn_console_asset *cn_console_find(struct cn_slice path)
{
    size_t lo = 0, hi = cn_console_num_assets;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        const char *p = cn_console_assets[mid].path;
        size_t n = strlen(p);
        int c = memcmp(p, path.ptr, n < path.len ? n : path.len);
        if (c == 0)
            c = n < path.len ? -1 : n > path.len ? 1 : 0;
        if (c == 0)
            return &cn_console_assets[mid];
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

int cn_console_is_page(struct cn_slice path)
{
    if (path.len == 1 && path.ptr[0] == '/')
        return 1;
    if (path.len < 2 || path.ptr[0] != '/')
        return 0;
    const char *seg = path.ptr + 1;
    const char *slash = memchr(seg, '/', path.len - 1);
    size_t n = slash ? (size_t)(slash - seg) : path.len - 1;
    for (size_t i = 0; i < sizeof(pages) / sizeof(pages[0]); i++)
        if (strlen(pages[i]) == n && memcmp(pages[i], seg, n) == 0)
            return 1;
    return 0;
}

/* The next comma-separated entry of a header list, trimmed; 0 at the end. */
static int next_entry(struct cn_slice *rest, struct cn_slice *out)
{
    while (rest->len) {
        const char *comma = memchr(rest->ptr, ',', rest->len);
        size_t n = comma ? (size_t)(comma - rest->ptr) : rest->len;
        struct cn_slice e = {rest->ptr, n};
        rest->ptr += comma ? n + 1 : n;
        rest->len -= comma ? n + 1 : n;
        while (e.len && (e.ptr[0] == ' ' || e.ptr[0] == '\t')) {
            e.ptr++;
            e.len--;
        }
        while (e.len && (e.ptr[e.len - 1] == ' ' || e.ptr[e.len - 1] == '\t'))
            e.len--;
        if (e.len) {
            *out = e;
            return 1;
        }
    }
    return 0;
}

int cn_console_accepts_gzip(struct cn_slice ae)
{
    struct cn_slice e;
    while (next_entry(&ae, &e)) {
        const char *semi = memchr(e.ptr, ';', e.len);
        struct cn_slice name = {e.ptr, semi ? (size_t)(semi - e.ptr) : e.len};
        while (name.len && (name.ptr[name.len - 1] == ' ' || name.ptr[name.len - 1] == '\t'))
            name.len--;
        if (!cn_slice_case_eq(name, cn_slice_of("gzip")) &&
            !cn_slice_case_eq(name, cn_slice_of("x-gzip")) &&
            !(name.len == 1 && name.ptr[0] == '*'))
            continue;
        /* "q=0", "q=0.", "q=0.000" refuse; anything else (or no q) accepts. */
        int refused = 0;
        for (const char *p = semi; p && p < e.ptr + e.len; p++) {
            if ((*p == 'q' || *p == 'Q') && (p[-1] == ';' || p[-1] == ' ' || p[-1] == '\t') &&
                p + 1 < e.ptr + e.len && p[1] == '=') {
                const char *v = p + 2, *end = e.ptr + e.len;
                refused = v < end && *v == '0';
                for (v++; refused && v < end && *v != ';' && *v != ' '; v++)
                    if (*v != '.' && *v != '0')
                        refused = 0;
                break;
            }
        }
        return !refused;
    }
    return 0;
}

int cn_console_etag_matches(struct cn_slice inm, const char *etag)
{
    struct cn_slice e, want = cn_slice_of(etag);
    while (next_entry(&inm, &e)) {
        if (e.len == 1 && e.ptr[0] == '*')
            return 1;
        if (e.len > 2 && e.ptr[0] == 'W' && e.ptr[1] == '/') {
            e.ptr += 2; /* If-None-Match compares weakly */
            e.len -= 2;
        }
        if (cn_slice_eq(e, want))
            return 1;
    }
    return 0;
}

void cn_console_resolve(struct cn_slice path, const struct cn_slice *accept_encoding,
                        const struct cn_slice *if_none_match, struct cn_console_reply *out)
{
    memset(out, 0, sizeof(*out));
    const struct cn_console_asset *a = NULL;
    /* "/" and the pages are index.html; "/index.html" itself too. */
    if (cn_console_is_page(path))
        a = cn_console_find(cn_slice_of("/index.html"));
    else if (path.len > 1)
        a = cn_console_find(path);
    if (!a) {
        out->status = 404;
        return;
    }
    out->asset = a;
    out->content_type = cn_console_content_type(cn_slice_of(a->path));
    /* Vite names what is under /assets/ by a hash of its content: it never changes. The
     * rest (index.html, the icon) is revalidated with its ETag on every use. */
    out->cache_control = strncmp(a->path, "/assets/", 8) == 0 ? IMMUTABLE : REVALIDATE;
    out->gzip = a->gz && accept_encoding && cn_console_accepts_gzip(*accept_encoding);
    size_t n = strlen(a->etag);
    if (n >= 2 && n + 3 < sizeof(out->etag)) {
        if (out->gzip)
            snprintf(out->etag, sizeof(out->etag), "%.*s-gz\"", (int)(n - 1), a->etag);
        else
            memcpy(out->etag, a->etag, n + 1);
    }
    out->status = if_none_match && cn_console_etag_matches(*if_none_match, out->etag) ? 304 : 200;
}

static void h_console(struct cn_http_req *req, void *ctx)
{
    (void)ctx;
    struct cn_console_reply r;
    cn_console_resolve(req->path, cn_http_req_header(req, "accept-encoding"),
                       cn_http_req_header(req, "if-none-match"), &r);
    if (r.status == 404) {
        cn_http_reply_text(req, 404, "not found");
        return;
    }
    struct cn_http_header h[8];
    size_t n = 0;
    h[n++] = (struct cn_http_header){cn_slice_of("ETag"), cn_slice_of(r.etag)};
    h[n++] = (struct cn_http_header){cn_slice_of("Cache-Control"), cn_slice_of(r.cache_control)};
    if (r.asset->gz)
        h[n++] = (struct cn_http_header){cn_slice_of("Vary"), cn_slice_of("Accept-Encoding")};
    if (r.gzip && r.status == 200)
        h[n++] = (struct cn_http_header){cn_slice_of("Content-Encoding"), cn_slice_of("gzip")};
    h[n++] = (struct cn_http_header){cn_slice_of("Content-Security-Policy"),
                                     cn_slice_of(CN_CONSOLE_CSP)};
    h[n++] = (struct cn_http_header){cn_slice_of("X-Content-Type-Options"), cn_slice_of("nosniff")};
    h[n++] = (struct cn_http_header){cn_slice_of("X-Frame-Options"), cn_slice_of("DENY")};
    h[n++] = (struct cn_http_header){cn_slice_of("Referrer-Policy"), cn_slice_of("same-origin")};
    if (r.status == 304) {
        cn_http_reply(req, 304, NULL, NULL, 0, h, n);
        return;
    }
    const unsigned char *body = r.gzip ? r.asset->gz : r.asset->data;
    size_t len = r.gzip ? r.asset->gz_len : r.asset->len;
    cn_http_reply(req, 200, r.content_type, body, len, h, n);
}

int cn_console_routes(struct cn_router *r)
{
    if (!cn_console_num_assets)
        return 0;
    const unsigned get = CN_M(HTTP_GET);
    int rc;
    char pat[128];
    if ((rc = cn_router_add(r, get, "/", h_console, NULL)) < 0 ||
        (rc = cn_router_set_flags(r, rc, CN_ROUTE_PUBLIC)) < 0 ||
        (rc = cn_router_add(r, get, "/assets/{file...}", h_console, NULL)) < 0 ||
        (rc = cn_router_set_flags(r, rc, CN_ROUTE_PUBLIC)) < 0)
        return rc;
    /* The files at the top (index.html, the icon): one literal route each. */
    for (size_t i = 0; i < cn_console_num_assets; i++) {
        const char *p = cn_console_assets[i].path;
        if (strchr(p + 1, '/') || strlen(p) >= sizeof(pat))
            continue;
        if ((rc = cn_router_add(r, get, p, h_console, NULL)) < 0 ||
            (rc = cn_router_set_flags(r, rc, CN_ROUTE_PUBLIC)) < 0)
            return rc;
    }
    for (size_t i = 0; i < sizeof(pages) / sizeof(pages[0]); i++) {
        snprintf(pat, sizeof(pat), "/%s", pages[i]);
        if ((rc = cn_router_add(r, get, pat, h_console, NULL)) < 0 ||
            (rc = cn_router_set_flags(r, rc, CN_ROUTE_PUBLIC)) < 0)
            return rc;
        snprintf(pat, sizeof(pat), "/%s/{path...}", pages[i]);
        if ((rc = cn_router_add(r, get, pat, h_console, NULL)) < 0 ||
            (rc = cn_router_set_flags(r, rc, CN_ROUTE_PUBLIC)) < 0)
            return rc;
    }
    return 0;
}
