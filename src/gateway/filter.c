/* Route filters that do not need a connection: path rewrites, redirect locations, header
 * modifier look-ups, hop-by-hop header names. */
#include "gateway/internal.h"

/* The new path for a prefix replacement: "/foo" -> "/bar" turns "/foo/x" into "/bar/x";
 * "/foo" -> "/" turns "/foo/x" into "/x" and "/foo" into "/". */
static int replace_prefix(struct cn_slice prefix, struct cn_slice with, struct cn_slice path,
                          char *dst, size_t dst_len)
{
    size_t plen = cn_slice_eq(prefix, CN_SLICE_LIT("/")) ? 0 : prefix.len;
    if (plen > path.len)
        plen = path.len;
    struct cn_slice rest = {path.ptr + plen, path.len - plen};
    size_t wlen = with.len;
    if (wlen && with.ptr[wlen - 1] == '/' && rest.len && rest.ptr[0] == '/')
        wlen--;
    if (wlen == 0 && (rest.len == 0 || rest.ptr[0] != '/')) {
        if (dst_len < 1)
            return -1;
        dst[0] = '/';
        wlen = 1;
        if (rest.len + 1 > dst_len)
            return -1;
        memcpy(dst + 1, rest.ptr, rest.len);
        return (int)(1 + rest.len);
    }
    if (wlen + rest.len > dst_len)
        return -1;
    memcpy(dst, with.ptr, wlen);
    memcpy(dst + wlen, rest.ptr, rest.len);
    size_t n = wlen + rest.len;
    if (n == 0) {
        dst[0] = '/';
        n = 1;
    }
    return (int)n;
}

static int new_path(enum gw_path_mod mod, struct cn_slice with, const struct gw_match *m,
                    struct cn_slice path, char *dst, size_t dst_len)
{
    if (mod == GW_PM_FULL) {
        if (with.len > dst_len)
            return -1;
        memcpy(dst, with.ptr, with.len);
        return (int)with.len;
    }
    if (mod == GW_PM_PREFIX)
        return replace_prefix(m->path, with, path, dst, dst_len);
    if (path.len > dst_len)
        return -1;
    memcpy(dst, path.ptr, path.len);
    return (int)path.len;
}

int gw_rewrite_path(const struct gw_filter *f, const struct gw_match *m, struct cn_slice path,
                    char *dst, size_t dst_len)
{
    return new_path(f->u.rewrite.path_mod, f->u.rewrite.path, m, path, dst, dst_len);
}

int gw_redirect_location(const struct gw_filter *f, const struct gw_match *m, int tls,
                         struct cn_slice host, struct cn_slice path, struct cn_slice query,
                         char *dst, size_t dst_len)
{
    struct cn_slice scheme = f->u.redirect.scheme.len ? f->u.redirect.scheme
                             : tls                    ? CN_SLICE_LIT("https")
                                                      : CN_SLICE_LIT("http");
    /* The request's host and port. */
    struct cn_slice h = host;
    int req_port = 0;
    const char *colon = NULL;
    if (host.len && host.ptr[0] == '[') {
        const char *rb = memchr(host.ptr, ']', host.len);
        if (rb && rb + 1 < host.ptr + host.len && rb[1] == ':')
            colon = rb + 1;
    } else {
        colon = memchr(host.ptr, ':', host.len);
    }
    if (colon) {
        h.len = (size_t)(colon - host.ptr);
        uint64_t p;
        if (cn_slice_to_u64((struct cn_slice){colon + 1, (size_t)(host.ptr + host.len - colon - 1)},
                            &p) == 0 &&
            p < 65536)
            req_port = (int)p;
    }
    if (f->u.redirect.hostname.len)
        h = f->u.redirect.hostname;
    int port = f->u.redirect.port;
    if (!port && !f->u.redirect.scheme.len)
        port = req_port; /* same scheme: keep the port the client used */
    int default_port = cn_slice_eq(scheme, CN_SLICE_LIT("https")) ? 443 : 80;
    char pbuf[16] = "";
    if (port && port != default_port)
        snprintf(pbuf, sizeof(pbuf), ":%d", port);
    int n = snprintf(dst, dst_len, "%.*s://%.*s%s", (int)scheme.len, scheme.ptr, (int)h.len, h.ptr,
                     pbuf);
    if (n < 0 || (size_t)n >= dst_len)
        return -1;
    int pl =
        new_path(f->u.redirect.path_mod, f->u.redirect.path, m, path, dst + n, dst_len - (size_t)n);
    if (pl < 0)
        return -1;
    n += pl;
    if (query.len) {
        if ((size_t)n + 1 + query.len > dst_len)
            return -1;
        dst[n++] = '?';
        memcpy(dst + n, query.ptr, query.len);
        n += (int)query.len;
    }
    return n;
}

int gw_header_mod_drops(const struct gw_header_mod *hm, struct cn_slice name)
{
    for (size_t i = 0; i < hm->num_remove; i++)
        if (cn_slice_case_eq(hm->remove[i], name))
            return 1;
    for (size_t i = 0; i < hm->num_set; i++)
        if (cn_slice_case_eq(hm->set[i].name, name))
            return 1;
    return 0;
}

int gw_is_hop_by_hop(struct cn_slice n)
{
    switch (n.len) {
    case 2:
        return gw_lit_eq(n, CN_SLICE_LIT("te"));
    case 7:
        return gw_lit_eq(n, CN_SLICE_LIT("trailer")) || gw_lit_eq(n, CN_SLICE_LIT("upgrade"));
    case 10:
        return gw_lit_eq(n, CN_SLICE_LIT("connection")) || gw_lit_eq(n, CN_SLICE_LIT("keep-alive"));
    case 17:
        if (gw_lit_eq(n, CN_SLICE_LIT("transfer-encoding")))
            return 1;
        break;
    default:
        break;
    }
    return n.len > 6 && gw_lit_eq((struct cn_slice){n.ptr, 6}, CN_SLICE_LIT("proxy-"));
}
