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
