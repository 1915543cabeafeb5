#include "cli/client.h"
#include "cli/cmd.h"

#include <curl/curl.h>
#include <stdio.h>

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

/* One request's handle, with what every request sets: the URL, the bearer token, errors
 * into cerr, no signals, the user agent. */
struct req {
    CURL *h;
    struct curl_slist *hdrs;
    char url[8192];
    char cerr[CURL_ERROR_SIZE];
};

static int req_open(struct req *r, const struct cn_client *c, const char *path, char *err,
                    size_t err_len)
{
    size_t sl = strlen(c->server);
    while (sl && c->server[sl - 1] == '/')
        sl--;
    r->h = NULL;
    r->hdrs = NULL;
    r->cerr[0] = '\0';
    if ((size_t)snprintf(r->url, sizeof(r->url), "%.*s%s", (int)sl, c->server, path) >=
        sizeof(r->url)) {
        snprintf(err, err_len, "URL longer than %zu bytes", sizeof(r->url) - 1);
        return CN_ELIMIT;
    }
    r->h = curl_easy_init();
    if (!r->h) {
        snprintf(err, err_len, "cannot start the HTTP client");
        return CN_ENOMEM;
    }
    if (c->token) {
        char auth[4200];
        snprintf(auth, sizeof(auth), "Authorization: Bearer %s", c->token);
        r->hdrs = curl_slist_append(r->hdrs, auth);
    }
    curl_easy_setopt(r->h, CURLOPT_URL, r->url);
    curl_easy_setopt(r->h, CURLOPT_HTTPHEADER, r->hdrs);
    curl_easy_setopt(r->h, CURLOPT_ERRORBUFFER, r->cerr);
    curl_easy_setopt(r->h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(r->h, CURLOPT_USERAGENT, "cairn-cli");
    return 0;
}

static void req_close(struct req *r)
{
    curl_slist_free_all(r->hdrs);
    if (r->h)
        curl_easy_cleanup(r->h);
}

int cn_client_request(const struct cn_client *c, const char *method, const char *path,
                      const char *body, struct cn_buf *out, long *out_status, char *err,
                      size_t err_len)
{
    struct req r;
    int ret = req_open(&r, c, path, err, err_len);
    if (ret) {
        req_close(&r);
        return ret;
    }
    if (strcmp(method, body ? "POST" : "GET") != 0)
        curl_easy_setopt(r.h, CURLOPT_CUSTOMREQUEST, method);
    if (body) {
        r.hdrs = curl_slist_append(r.hdrs, "Content-Type: application/json");
        curl_easy_setopt(r.h, CURLOPT_HTTPHEADER, r.hdrs);
        curl_easy_setopt(r.h, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(r.h, CURLOPT_POSTFIELDSIZE, (long)strlen(body));
    }
    curl_easy_setopt(r.h, CURLOPT_WRITEFUNCTION, on_data);
    curl_easy_setopt(r.h, CURLOPT_WRITEDATA, out);
    curl_easy_setopt(r.h, CURLOPT_TIMEOUT_MS, c->timeout_ms);
    CURLcode rc = curl_easy_perform(r.h);
    if (rc != CURLE_OK) {
        snprintf(err, err_len, "%s: %s", r.url,
                 rc == CURLE_WRITE_ERROR ? "answer too large"
                                         : (r.cerr[0] ? r.cerr : curl_easy_strerror(rc)));
        ret = CN_EIO;
    } else {
        curl_easy_getinfo(r.h, CURLINFO_RESPONSE_CODE, out_status);
    }
    req_close(&r);
    return ret;
}

int cn_client_get(const struct cn_client *c, const char *path, struct cn_buf *out, long *out_status,
                  char *err, size_t err_len)
{
    return cn_client_request(c, "GET", path, NULL, out, out_status, err, err_len);
}

int cn_client_post_json(const struct cn_client *c, const char *path, const char *body,
                        struct cn_buf *out, long *out_status, char *err, size_t err_len)
{
    return cn_client_request(c, "POST", path, body, out, out_status, err, err_len);
}

int cn_client_report(const char *what, long status, const struct cn_buf *body)
{
    json_t *e = json_loadb(body->ptr ? body->ptr : "", body->len, 0, NULL);
    const char *m = json_string_value(json_object_get(e, "error"));
    const char *p = json_string_value(json_object_get(e, "param"));
    fprintf(stderr, "cairn: %s: %s%s%s%s (HTTP %ld)\n", what,
            m ? m
              : (status == 401 ? "unauthorized: set --token or CAIRN_API_TOKEN" : "request failed"),
            p ? " (parameter '" : "", p ? p : "", p ? "')" : "", status);
    json_decref(e);
    return CN_EXIT_FAIL;
}

json_t *cn_client_json(const struct cn_client *c, const char *method, const char *path,
                       const char *body, const char *what, int raw, size_t max_bytes, int *rc)
{
    struct cn_buf out;
    cn_buf_init(&out, max_bytes);
    long status = 0;
    char err[512];
    json_t *doc = NULL;
    *rc = CN_EXIT_FAIL;
    if (cn_client_request(c, method, path, body, &out, &status, err, sizeof(err)) != 0) {
        fprintf(stderr, "cairn: %s: %s\n", what, err);
    } else if (status != 200) {
        *rc = cn_client_report(what, status, &out);
    } else if (raw) {
        fwrite(out.ptr ? out.ptr : "", 1, out.len, stdout);
        *rc = CN_EXIT_OK;
    } else {
        json_error_t je;
        doc = json_loadb(out.ptr ? out.ptr : "", out.len, 0, &je);
        if (doc)
            *rc = CN_EXIT_OK;
        else
            fprintf(stderr, "cairn: %s: the server's answer is not JSON: %s\n", what, je.text);
    }
    cn_buf_release(&out);
    return doc;
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
    struct req r;
    int ret = req_open(&r, c, path, err, err_len);
    if (ret) {
        req_close(&r);
        return ret;
    }
    struct stream s = {{0}, err_body, r.h, 0, cb, ctx, 0, 0};
    cn_buf_init(&s.line, 1u << 20);
    curl_easy_setopt(r.h, CURLOPT_WRITEFUNCTION, on_stream);
    curl_easy_setopt(r.h, CURLOPT_WRITEDATA, &s);
    curl_easy_setopt(r.h, CURLOPT_CONNECTTIMEOUT_MS, c->timeout_ms);
    CURLcode rc = curl_easy_perform(r.h);
    if (rc != CURLE_OK && !s.stopped) {
        snprintf(err, err_len, "%s: %s", r.url,
                 s.too_long ? "a line longer than 1 MiB"
                            : (r.cerr[0] ? r.cerr : curl_easy_strerror(rc)));
        ret = CN_EIO;
    } else {
        curl_easy_getinfo(r.h, CURLINFO_RESPONSE_CODE, out_status);
    }
    cn_buf_release(&s.line);
    req_close(&r);
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
