#include "cli/client.h"

#include <curl/curl.h>

void cn_client_defaults(struct cn_client *c)
{
    const char *s = getenv("CAIRN_SERVER");
    c->server = s && *s ? s : "http://127.0.0.1:9000";
    const char *t = getenv("CAIRN_API_TOKEN");
    c->token = t && *t ? t : NULL;
    c->timeout_ms = 30000;
}

static size_t on_data(char *p, size_t size, size_t n, void *ud)
{
    struct cn_buf *b = ud;
    return cn_buf_append(b, p, size * n) == 0 ? size * n : 0;
}

int cn_client_get(const struct cn_client *c, const char *path, struct cn_buf *out, long *out_status,
                  char *err, size_t err_len)
{
    char url[4096];
    size_t sl = strlen(c->server);
    while (sl && c->server[sl - 1] == '/')
        sl--;
    snprintf(url, sizeof(url), "%.*s%s", (int)sl, c->server, path);
    CURL *h = curl_easy_init();
    if (!h) {
        snprintf(err, err_len, "cannot start the HTTP client");
        return CN_ENOMEM;
    }
    struct curl_slist *hdrs = NULL;
    char auth[4200];
    if (c->token) {
        snprintf(auth, sizeof(auth), "Authorization: Bearer %s", c->token);
        hdrs = curl_slist_append(hdrs, auth);
    }
    char cerr[CURL_ERROR_SIZE] = "";
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdrs);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_data);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, out);
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, c->timeout_ms);
    curl_easy_setopt(h, CURLOPT_ERRORBUFFER, cerr);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_USERAGENT, "cairn-cli");
    CURLcode rc = curl_easy_perform(h);
    int ret = 0;
    if (rc != CURLE_OK) {
        snprintf(err, err_len, "%s: %s", url,
                 rc == CURLE_WRITE_ERROR ? "answer too large"
                                         : (cerr[0] ? cerr : curl_easy_strerror(rc)));
        ret = CN_EIO;
    } else {
        curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, out_status);
    }
    curl_slist_free_all(hdrs);
    curl_easy_cleanup(h);
    return ret;
}

struct stream {
    struct cn_buf line;
    struct cn_buf *err_body;
    CURL *h;
    long status;
    cn_client_line_cb cb;
    void *ctx;
    int stopped, too_long;
};

static size_t on_stream(char *p, size_t size, size_t n, void *ud)
{
    struct stream *s = ud;
    size_t len = size * n;
    if (s->status == 0)
        curl_easy_getinfo(s->h, CURLINFO_RESPONSE_CODE, &s->status);
    if (s->status != 200)
        return cn_buf_append(s->err_body, p, len) == 0 ? len : 0;
    for (size_t i = 0; i < len; i++) {
        if (p[i] != '\n') {
            if (cn_buf_append(&s->line, p + i, 1) != 0) {
                s->too_long = 1;
                return 0;
            }
            continue;
        }
        int stop = s->cb(s->ctx, s->line.ptr ? s->line.ptr : "", s->line.len);
        s->line.len = 0;
        if (stop) {
            s->stopped = 1;
            return 0;
        }
    }
    return len;
}

int cn_client_stream(const struct cn_client *c, const char *path, cn_client_line_cb cb, void *ctx,
                     struct cn_buf *err_body, long *out_status, char *err, size_t err_len)
{
    char url[8192];
    size_t sl = strlen(c->server);
    while (sl && c->server[sl - 1] == '/')
        sl--;
    snprintf(url, sizeof(url), "%.*s%s", (int)sl, c->server, path);
    CURL *h = curl_easy_init();
    if (!h) {
        snprintf(err, err_len, "cannot start the HTTP client");
        return CN_ENOMEM;
    }
    struct curl_slist *hdrs = NULL;
    char auth[4200];
    if (c->token) {
        snprintf(auth, sizeof(auth), "Authorization: Bearer %s", c->token);
        hdrs = curl_slist_append(hdrs, auth);
    }
    struct stream s = {{0}, err_body, h, 0, cb, ctx, 0, 0};
    cn_buf_init(&s.line, 1u << 20);
    char cerr[CURL_ERROR_SIZE] = "";
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdrs);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_stream);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, &s);
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, c->timeout_ms);
    curl_easy_setopt(h, CURLOPT_ERRORBUFFER, cerr);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_USERAGENT, "cairn-cli");
    CURLcode rc = curl_easy_perform(h);
    int ret = 0;
    if (rc != CURLE_OK && !s.stopped) {
        snprintf(err, err_len, "%s: %s", url,
                 s.too_long ? "a line longer than 1 MiB"
                            : (cerr[0] ? cerr : curl_easy_strerror(rc)));
        ret = CN_EIO;
    } else {
        curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, out_status);
    }
    cn_buf_release(&s.line);
    curl_slist_free_all(hdrs);
    curl_easy_cleanup(h);
    return ret;
}

int cn_client_escape(struct cn_buf *out, const char *s)
{
    static const char hex[] = "0123456789ABCDEF";
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        int plain = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                    c == '-' || c == '.' || c == '_' || c == '~';
        char e[3] = {'%', hex[c >> 4], hex[c & 15]};
        if ((plain ? cn_buf_append(out, s, 1) : cn_buf_append(out, e, 3)) != 0)
            return CN_ELIMIT;
    }
    return 0;
}
