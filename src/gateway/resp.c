/* Upstream response heads: the strict head scanner (status-line mode) first; then, the head
 * being known well formed, its status line is read and its fields split here (one memchr
 * for the colon and one for the CR of each line: llhttp walking the same bytes again cost
 * more than all the rest of the response's handling). Framing is chosen by us with the
 * server core's strictness: one Content-Length, one Transfer-Encoding (chunked only), never
 * both. */
#include "gateway/internal.h"

static struct cn_slice trim(struct cn_slice s)
{
    while (s.len && (s.ptr[0] == ' ' || s.ptr[0] == '\t')) {
        s.ptr++;
        s.len--;
    }
    while (s.len && (s.ptr[s.len - 1] == ' ' || s.ptr[s.len - 1] == '\t'))
        s.len--;
    return s;
}

void gw_resp_init(struct gw_resp *r, struct cn_http_header *hdrs, size_t hdr_cap,
                  uint64_t max_head_bytes)
{
    memset(r, 0, sizeof(*r));
    r->hdrs = hdrs;
    r->hdr_cap = hdr_cap;
    r->lim = (struct cn_http_limits){.max_url_bytes = max_head_bytes,
                                     .max_header_bytes = max_head_bytes,
                                     .max_headers = hdr_cap};
    cn_head_scan_init_response(&r->scan);
}

void gw_resp_reset(struct gw_resp *r)
{
    cn_head_scan_init_response(&r->scan);
    r->num_hdrs = 0;
}

static int is_digit(char c)
{
    return c >= '0' && c <= '9';
}

/* The Connection (or Proxy-Connection) tokens that decide keep-alive. */
enum { CONN_CLOSE = 1, CONN_KEEP_ALIVE = 2 };

static unsigned conn_flags(struct cn_slice v)
{
    unsigned f = 0;
    const char *p = v.ptr, *end = v.ptr + v.len;
    while (p < end) {
        const char *c = memchr(p, ',', (size_t)(end - p));
        const char *e = c ? c : end;
        struct cn_slice t = trim((struct cn_slice){p, (size_t)(e - p)});
        if (gw_lit_eq(t, CN_SLICE_LIT("close")))
            f |= CONN_CLOSE;
        else if (gw_lit_eq(t, CN_SLICE_LIT("keep-alive")))
            f |= CONN_KEEP_ALIVE;
        p = c ? c + 1 : end;
    }
    return f;
}

/* Reads the status line and splits the fields of buf[0..head_len), a head the scanner passed
 * (so every field line is "name:value" CRLF with a token name and no CR, LF or other control
 * character but HTAB in the value, and the head ends with an empty line). */
static int split_head(struct gw_resp *r, const char *buf, size_t head_len, const char **out_reason)
{
    /* status-line = "HTTP/" DIGIT "." DIGIT SP 3DIGIT SP reason-phrase CRLF */
    if (head_len < 17 || memcmp(buf, "HTTP/", 5) != 0 || !is_digit(buf[5]) || buf[6] != '.' ||
        !is_digit(buf[7]) || buf[8] != ' ') {
        *out_reason = "upstream sent a malformed response head";
        return CN_ESYNTAX;
    }
    if (buf[5] != '1') {
        *out_reason = "upstream answered with an HTTP version other than 1.x";
        return CN_ESYNTAX;
    }
    if (buf[7] > '1') {
        *out_reason = "upstream sent a malformed response head"; /* no HTTP/1.2 and up */
        return CN_ESYNTAX;
    }
    if (!is_digit(buf[9]) || !is_digit(buf[10]) || !is_digit(buf[11]) || buf[12] != ' ') {
        *out_reason = "upstream sent an invalid status code"; /* three digits */
        return CN_ESYNTAX;
    }
    r->status = (buf[9] - '0') * 100 + (buf[10] - '0') * 10 + (buf[11] - '0');
    if (r->status < 100 || r->status > 599) {
        *out_reason = "upstream sent an invalid status code";
        return CN_ESYNTAX;
    }
    const char *end = buf + head_len - 2; /* the final empty line */
    const char *p = memchr(buf + 13, '\r', (size_t)(end - buf - 13));
    if (CN_NEVER(!p)) {
        *out_reason = "upstream sent a malformed response head";
        return CN_ESYNTAX;
    }
    p += 2;
    unsigned conn = 0;
    r->num_hdrs = 0;
    while (p < end) {
        const char *colon = memchr(p, ':', (size_t)(end - p));
        const char *cr = colon ? memchr(colon, '\r', (size_t)(end - colon)) : NULL;
        if (CN_NEVER(!cr) || CN_NEVER(r->num_hdrs == r->hdr_cap)) {
            *out_reason = "upstream sent a malformed response head";
            return CN_ESYNTAX;
        }
        struct cn_http_header *h = &r->hdrs[r->num_hdrs++];
        h->name = (struct cn_slice){p, (size_t)(colon - p)};
        h->value = trim((struct cn_slice){colon + 1, (size_t)(cr - colon - 1)});
        if ((h->name.len == 10 && gw_lit_eq(h->name, CN_SLICE_LIT("connection"))) ||
            (h->name.len == 16 && gw_lit_eq(h->name, CN_SLICE_LIT("proxy-connection"))))
            conn |= conn_flags(h->value);
        p = cr + 2;
    }
    /* HTTP/1.1 persists unless "close"; HTTP/1.0 only with "keep-alive" (RFC 9112 9.3). */
    r->keep_alive = buf[7] == '1' ? !(conn & CONN_CLOSE) : (conn & CONN_KEEP_ALIVE) != 0;
    return 0;
}

int gw_resp_head(struct gw_resp *r, const char *buf, size_t len, const char **out_reason)
{
    enum cn_head_result hr = cn_head_scan(&r->scan, buf, len, &r->lim);
    if (hr == CN_HEAD_MORE)
        return CN_EAGAIN;
    if (hr != CN_HEAD_DONE) {
        *out_reason = hr == CN_HEAD_TOO_LARGE ? "upstream response head too large "
                                                "(limits.max_response_header_bytes, "
                                                "limits.max_response_headers)"
                                              : "upstream sent a malformed response head";
        return hr == CN_HEAD_TOO_LARGE ? CN_ELIMIT : CN_ESYNTAX;
    }
    r->head_len = r->scan.pos;
    int rc = split_head(r, buf, r->head_len, out_reason);
    if (rc)
        return rc;
    /* Ready for the next head (after an interim response). */
    cn_head_scan_init_response(&r->scan);
    return 0;
}

const char *gw_resp_framing(const struct gw_resp *r, int head_req, enum gw_resp_mode *out_mode,
                            uint64_t *out_left, int64_t *out_client_len)
{
    int ncl = 0, nte = 0;
    uint64_t cl = 0;
    int status = r->status;
    for (size_t i = 0; i < r->num_hdrs; i++) {
        struct cn_slice nm = r->hdrs[i].name;
        if (nm.len == 14 && gw_lit_eq(nm, CN_SLICE_LIT("content-length"))) {
            if (++ncl > 1)
                return "upstream sent more than one Content-Length";
            if (cn_slice_to_u64(trim(r->hdrs[i].value), &cl) != 0 || cl > (uint64_t)INT64_MAX)
                return "upstream sent an invalid Content-Length";
        } else if (nm.len == 17 && gw_lit_eq(nm, CN_SLICE_LIT("transfer-encoding"))) {
            if (++nte > 1)
                return "upstream sent more than one Transfer-Encoding";
            if (!gw_lit_eq(trim(r->hdrs[i].value), CN_SLICE_LIT("chunked")))
                return "upstream sent a Transfer-Encoding other than chunked";
        }
    }
    if (ncl && nte)
        return "upstream sent both Content-Length and Transfer-Encoding";
    *out_left = 0;
    if (head_req || status == 204 || status == 304 || status < 200) {
        *out_mode = GW_RM_NONE;
        *out_client_len = ncl ? (int64_t)cl : nte ? CN_HTTP_LEN_CHUNKED : CN_HTTP_LEN_CLOSE;
        if (status == 204 || status == 304)
            *out_client_len = CN_HTTP_LEN_CLOSE;
    } else if (nte) {
        *out_mode = GW_RM_CHUNKED;
        *out_client_len = CN_HTTP_LEN_CHUNKED;
    } else if (ncl) {
        *out_mode = cl ? GW_RM_LENGTH : GW_RM_NONE;
        *out_left = cl;
        *out_client_len = (int64_t)cl;
    } else {
        /* Delimited by the upstream closing: re-framed as chunked for the client. */
        *out_mode = GW_RM_CLOSE;
        *out_client_len = CN_HTTP_LEN_CHUNKED;
    }
    return NULL;
}
