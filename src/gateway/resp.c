/* Upstream response heads, parsed with the server core's strictness (RFC 9112: no bare LF, no
 * obs-fold, token field names, no control character but HTAB in a value, a status line of
 * "HTTP/1.x nnn reason"). A head that arrived whole (the common case: one read) is checked
 * and split in one pass once its CRLF CRLF is found; a head still arriving goes
 * through the resumable strict scanner (http/head.c) so a malformed one is refused before
 * its end comes. Framing is chosen by us: one Content-Length, one Transfer-Encoding
 * (chunked only), never both. Two passes (the scanner, then llhttp, then a field split) cost
 * more than all the rest of the response's handling. */
#include "gateway/internal.h"

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
        struct cn_slice t = cn_slice_trim_ows((struct cn_slice){p, (size_t)(e - p)});
        if (gw_lit_eq(t, CN_SLICE_LIT("close")))
            f |= CONN_CLOSE;
        else if (gw_lit_eq(t, CN_SLICE_LIT("keep-alive")))
            f |= CONN_KEEP_ALIVE;
        p = c ? c + 1 : end;
    }
    return f;
}

/* Byte classes: RFC 9110 tchar (field names), and field-value bytes (HTAB, SP, VCHAR,
 * obs-text; also what a reason phrase may hold). */
enum { C_TOKEN = 1, C_VALUE = 2 };
static const unsigned char cls[256] = {
    ['\t'] = C_VALUE,
    [' '] = C_VALUE,
    ['!'] = C_VALUE | C_TOKEN,
    ['"'] = C_VALUE,
    ['#' ... '\''] = C_VALUE | C_TOKEN,
    ['(' ... ')'] = C_VALUE,
    ['*' ... '+'] = C_VALUE | C_TOKEN,
    [','] = C_VALUE,
    ['-' ... '.'] = C_VALUE | C_TOKEN,
    ['/'] = C_VALUE,
    ['0' ... '9'] = C_VALUE | C_TOKEN,
    [':' ... '@'] = C_VALUE,
    ['A' ... 'Z'] = C_VALUE | C_TOKEN,
    ['[' ... ']'] = C_VALUE,
    ['^' ... '`'] = C_VALUE | C_TOKEN,
    ['a' ... 'z'] = C_VALUE | C_TOKEN,
    ['{'] = C_VALUE,
    ['|'] = C_VALUE | C_TOKEN,
    ['}'] = C_VALUE,
    ['~'] = C_VALUE | C_TOKEN,
    [0x80 ... 0xff] = C_VALUE,
};

static int malformed(const char **out_reason)
{
    *out_reason = "upstream sent a malformed response head";
    return CN_ESYNTAX;
}

static int too_large(const char **out_reason)
{
    *out_reason = "upstream response head too large (limits.max_response_header_bytes, "
                  "limits.max_response_headers)";
    return CN_ELIMIT;
}

/* Checks and splits buf[0..head_len), which ends with its first CRLF CRLF: the status line,
 * then "name:value" CRLF lines up to the empty one. Every run below stops at a CR at the
 * latest, and the head's last 4 bytes are CR LF CR LF: nothing is read past head_len. */
static int parse_head(struct gw_resp *r, const char *buf, size_t head_len, const char **out_reason)
{
    /* status-line = "HTTP/" DIGIT "." DIGIT SP 3DIGIT SP reason-phrase CRLF */
    if (head_len < 17 || memcmp(buf, "HTTP/", 5) != 0 || !is_digit(buf[5]) || buf[6] != '.' ||
        !is_digit(buf[7]) || buf[8] != ' ')
        return malformed(out_reason);
    if (buf[5] != '1') {
        *out_reason = "upstream answered with an HTTP version other than 1.x";
        return CN_ESYNTAX;
    }
    if (buf[7] > '1')
        return malformed(out_reason); /* no HTTP/1.2 and up */
    if (!is_digit(buf[9]) || !is_digit(buf[10]) || !is_digit(buf[11]) || buf[12] != ' ') {
        *out_reason = "upstream sent an invalid status code"; /* three digits */
        return CN_ESYNTAX;
    }
    r->status = (buf[9] - '0') * 100 + (buf[10] - '0') * 10 + (buf[11] - '0');
    if (r->status < 100 || r->status > 599) {
        *out_reason = "upstream sent an invalid status code";
        return CN_ESYNTAX;
    }
    const unsigned char *p = (const unsigned char *)buf + 13;
    const unsigned char *end = (const unsigned char *)buf + head_len - 2; /* the empty line */
    while (cls[*p] & C_VALUE)
        p++;
    if (p[0] != '\r' || p[1] != '\n')
        return malformed(out_reason);
    p += 2;
    unsigned conn = 0;
    r->num_hdrs = 0;
    while (p < end) {
        const unsigned char *name = p;
        while (cls[*p] & C_TOKEN)
            p++;
        if (p == name || *p != ':')
            return malformed(out_reason); /* obs-fold, whitespace or a bad byte in a name */
        const unsigned char *colon = p++;
        while (cls[*p] & C_VALUE)
            p++;
        if (p[0] != '\r' || p[1] != '\n')
            return malformed(out_reason); /* a control byte, a bare LF or CR */
        if (r->num_hdrs >= r->lim.max_headers || r->num_hdrs == r->hdr_cap)
            return too_large(out_reason);
        struct cn_http_header *h = &r->hdrs[r->num_hdrs++];
        h->name = (struct cn_slice){(const char *)name, (size_t)(colon - name)};
        h->value =
            cn_slice_trim_ows((struct cn_slice){(const char *)colon + 1, (size_t)(p - colon - 1)});
        if ((h->name.len == 10 && gw_lit_eq(h->name, CN_SLICE_LIT("connection"))) ||
            (h->name.len == 16 && gw_lit_eq(h->name, CN_SLICE_LIT("proxy-connection"))))
            conn |= conn_flags(h->value);
        p += 2;
    }
    /* HTTP/1.1 persists unless "close"; HTTP/1.0 only with "keep-alive" (RFC 9112 9.3). */
    r->keep_alive = buf[7] == '1' ? !(conn & CONN_CLOSE) : (conn & CONN_KEEP_ALIVE) != 0;
    return 0;
}

/* Where the head in buf[0..len) ends: past the first LF that closes CR LF CR LF, looking at
 * the LFs from `from` on (those before were looked at by an earlier call); NULL when none.
 * One memchr per line: glibc's memmem cost 5 times more on a 150-byte head. */
static const char *head_end(const char *buf, size_t from, size_t len)
{
    const char *p = buf + from, *end = buf + len;
    while (p < end && (p = memchr(p, '\n', (size_t)(end - p))) != NULL) {
        if (p - buf >= 3 && p[-1] == '\r' && p[-2] == '\n' && p[-3] == '\r')
            return p + 1;
        p++;
    }
    return NULL;
}

int gw_resp_head(struct gw_resp *r, const char *buf, size_t len, const char **out_reason)
{
    /* scan.pos: the bytes an earlier call saw without finding the end (0 on a new head). */
    const char *e = head_end(buf, CN_MIN(r->scan.pos, len), len);
    size_t head_len;
    if (e) {
        head_len = (size_t)(e - buf);
    } else {
        /* Not whole yet: the resumable scanner refuses a malformed or oversized head now. */
        enum cn_head_result hr = cn_head_scan(&r->scan, buf, len, &r->lim);
        if (hr == CN_HEAD_MORE)
            return CN_EAGAIN;
        if (hr == CN_HEAD_TOO_LARGE)
            return too_large(out_reason);
        if (hr != CN_HEAD_DONE)
            return malformed(out_reason);
        head_len = r->scan.pos; /* cannot be without a CRLF CRLF; parsed the same way */
    }
    if (head_len > r->lim.max_header_bytes)
        return too_large(out_reason);
    r->head_len = head_len;
    int rc = parse_head(r, buf, head_len, out_reason);
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
            if (cn_slice_to_u64(cn_slice_trim_ows(r->hdrs[i].value), &cl) != 0 ||
                cl > (uint64_t)INT64_MAX)
                return "upstream sent an invalid Content-Length";
        } else if (nm.len == 17 && gw_lit_eq(nm, CN_SLICE_LIT("transfer-encoding"))) {
            if (++nte > 1)
                return "upstream sent more than one Transfer-Encoding";
            if (!gw_lit_eq(cn_slice_trim_ows(r->hdrs[i].value), CN_SLICE_LIT("chunked")))
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
