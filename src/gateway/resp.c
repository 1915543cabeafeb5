/* Upstream response heads: the strict head scanner (status-line mode) first, then llhttp for
 * the fields; framing chosen by us with the server core's strictness: one Content-Length,
 * one Transfer-Encoding (chunked only), never both. */
#include "gateway/internal.h"

static struct gw_resp *resp_of(llhttp_t *p)
{
    return p->data;
}

static void extend(struct cn_slice *s, const char *at, size_t len)
{
    if (!s->ptr)
        *s = (struct cn_slice){at, len};
    else
        s->len = (size_t)(at + len - s->ptr);
}

static int on_field(llhttp_t *p, const char *at, size_t len)
{
    struct gw_resp *r = resp_of(p);
    if (r->last_cb != 1) {
        if (r->num_hdrs == r->hdr_cap)
            return -1; /* the scanner counted them: cannot happen */
        r->hdrs[r->num_hdrs++] = (struct cn_http_header){{NULL, 0}, {NULL, 0}};
        r->last_cb = 1;
    }
    extend(&r->hdrs[r->num_hdrs - 1].name, at, len);
    return 0;
}

static int on_value(llhttp_t *p, const char *at, size_t len)
{
    struct gw_resp *r = resp_of(p);
    r->last_cb = 2;
    if (r->num_hdrs)
        extend(&r->hdrs[r->num_hdrs - 1].value, at, len);
    return 0;
}

static int on_headers_complete(llhttp_t *p)
{
    (void)p;
    return 1; /* the body is framed by us */
}

static int on_complete(llhttp_t *p)
{
    resp_of(p)->msg_done = 1;
    return HPE_PAUSED;
}

static const llhttp_settings_t settings = {
    .on_header_field = on_field,
    .on_header_value = on_value,
    .on_headers_complete = on_headers_complete,
    .on_message_complete = on_complete,
};

void gw_resp_init(struct gw_resp *r, struct cn_http_header *hdrs, size_t hdr_cap,
                  uint64_t max_head_bytes)
{
    memset(r, 0, sizeof(*r));
    r->hdrs = hdrs;
    r->hdr_cap = hdr_cap;
    r->lim = (struct cn_http_limits){.max_url_bytes = max_head_bytes,
                                     .max_header_bytes = max_head_bytes,
                                     .max_headers = hdr_cap};
    llhttp_init(&r->parser, HTTP_RESPONSE, &settings);
    r->parser.data = r;
    cn_head_scan_init_response(&r->scan);
}

void gw_resp_reset(struct gw_resp *r)
{
    cn_head_scan_init_response(&r->scan);
    r->num_hdrs = 0;
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
    r->num_hdrs = 0;
    r->last_cb = 0;
    r->msg_done = 0;
    llhttp_reset(&r->parser);
    llhttp_errno_t err = llhttp_execute(&r->parser, buf, r->head_len);
    if ((err != HPE_PAUSED && err != HPE_PAUSED_UPGRADE) || !r->msg_done) {
        *out_reason = "upstream sent a malformed response head";
        return CN_ESYNTAX;
    }
    if (r->parser.http_major != 1) {
        *out_reason = "upstream answered with an HTTP version other than 1.x";
        return CN_ESYNTAX;
    }
    r->status = r->parser.status_code;
    if (r->status < 100 || r->status > 599) {
        /* llhttp takes "20" or "2000": a status code is three digits, 1xx to 5xx */
        *out_reason = "upstream sent an invalid status code";
        return CN_ESYNTAX;
    }
    r->keep_alive = llhttp_should_keep_alive(&r->parser);
    /* Ready for the next head (after an interim response). */
    cn_head_scan_init_response(&r->scan);
    return 0;
}

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

const char *gw_resp_framing(const struct gw_resp *r, int head_req, enum gw_resp_mode *out_mode,
                            uint64_t *out_left, int64_t *out_client_len)
{
    int ncl = 0, nte = 0;
    uint64_t cl = 0;
    int status = r->status;
    for (size_t i = 0; i < r->num_hdrs; i++) {
        struct cn_slice nm = r->hdrs[i].name;
        if (nm.len == 14 && cn_slice_case_eq(nm, CN_SLICE_LIT("content-length"))) {
            if (++ncl > 1)
                return "upstream sent more than one Content-Length";
            if (cn_slice_to_u64(trim(r->hdrs[i].value), &cl) != 0 || cl > (uint64_t)INT64_MAX)
                return "upstream sent an invalid Content-Length";
        } else if (nm.len == 17 && cn_slice_case_eq(nm, CN_SLICE_LIT("transfer-encoding"))) {
            if (++nte > 1)
                return "upstream sent more than one Transfer-Encoding";
            if (!cn_slice_case_eq(trim(r->hdrs[i].value), CN_SLICE_LIT("chunked")))
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
