#include "http/json.h"

static int dump_cb(const char *buf, size_t size, void *data)
{
    return cn_buf_append(data, buf, size) == 0 ? 0 : -1;
}

void cn_http_reply_json(struct cn_http_req *req, int status, json_t *j)
{
    struct cn_buf b;
    cn_buf_init(&b, 64u << 20);
    if (!j || json_dump_callback(j, dump_cb, &b, JSON_COMPACT) != 0 ||
        cn_buf_append(&b, "\n", 1) != 0) {
        json_decref(j);
        cn_buf_release(&b);
        static const char msg[] = "{\"error\":\"reply could not be encoded\"}\n";
        cn_http_reply(req, 500, "application/json", msg, sizeof(msg) - 1, NULL, 0);
        return;
    }
    json_decref(j);
    cn_http_reply(req, status, "application/json", b.ptr, b.len, NULL, 0);
    cn_buf_release(&b);
}

void cn_http_reply_json_error(struct cn_http_req *req, int status, const char *param,
                              const char *message)
{
    json_t *j = json_object();
    json_object_set_new(j, "error", json_string(message));
    if (param)
        json_object_set_new(j, "param", json_string(param));
    cn_http_reply_json(req, status, j);
}
