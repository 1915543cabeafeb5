/* Fuzzes the gateway's upstream response parsing (src/gateway/resp.c with the strict head
 * scanner and the chunked decoder): the input is what an upstream sends on one connection.
 * Heads are parsed one after the other (interim ones skipped), each body framed as the proxy
 * frames it. Properties: a head is never longer than the input or the limit, the fields fit
 * their array, every slice lies inside the input, a Content-Length body never reads past its
 * length. */
#include "gateway/internal.h"
#include "http/chunked.h"

#include <stdint.h>

#define MAX_HEAD 2048
#define MAX_HDRS 32

static void check_inside(const uint8_t *data, size_t size, struct cn_slice s)
{
    if (s.len == 0)
        return;
    CN_BUG_ON((const uint8_t *)s.ptr < data || (const uint8_t *)s.ptr + s.len > data + size);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct cn_http_header hdrs[MAX_HDRS];
    struct gw_resp r;
    gw_resp_init(&r, hdrs, MAX_HDRS, MAX_HEAD);
    size_t pos = 0;
    int head_req = size > 0 && (data[0] & 1);
    struct cn_buf out;
    cn_buf_init(&out, SIZE_MAX / 2);
    for (int responses = 0; pos < size && responses < 16; responses++) {
        const char *reason = NULL;
        int rc = gw_resp_head(&r, (const char *)data + pos, size - pos, &reason);
        if (rc == CN_EAGAIN)
            break;
        if (rc) {
            CN_BUG_ON(reason == NULL);
            break;
        }
        CN_BUG_ON(r.head_len == 0 || r.head_len > size - pos || r.head_len > MAX_HEAD + 2);
        CN_BUG_ON(r.num_hdrs > MAX_HDRS);
        CN_BUG_ON(r.status < 100 || r.status > 599);
        for (size_t i = 0; i < r.num_hdrs; i++) {
            check_inside(data, size, hdrs[i].name);
            check_inside(data, size, hdrs[i].value);
        }
        pos += r.head_len;
        if (r.status < 200)
            continue;
        enum gw_resp_mode mode;
        uint64_t left;
        int64_t client_len;
        if (gw_resp_framing(&r, head_req, &mode, &left, &client_len) != NULL)
            break;
        if (mode == GW_RM_LENGTH) {
            CN_BUG_ON(client_len != (int64_t)left);
            size_t n = size - pos < left ? size - pos : (size_t)left;
            pos += n;
        } else if (mode == GW_RM_CHUNKED) {
            struct cn_chunked st;
            cn_chunked_init(&st);
            size_t used = 0;
            cn_buf_reset(&out);
            enum cn_chunked_result cr =
                cn_chunked_decode(&st, (const char *)data + pos, size - pos, &out, &r.lim, &used);
            CN_BUG_ON(used > size - pos);
            CN_BUG_ON(out.len > used);
            pos += used;
            if (cr != CN_CHUNKED_DONE)
                break;
        } else if (mode == GW_RM_CLOSE) {
            break;
        }
    }
    cn_buf_release(&out);
    return 0;
}
