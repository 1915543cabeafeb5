/* The gateway's admin API (docs/gateway.md, "Admin API").
 *
 * The running configuration is kept as a JSON document beside the snapshot compiled from
 * it. A change (a whole document, or one route or cluster put or deleted) is applied to a
 * copy of the document, dumped as JSON (which YAML reads) and compiled by the same compiler
 * as the file; only a snapshot that compiles is published (cn_gw_publish: in-flight requests
 * finish on theirs, no listener is closed) and only then does the copy become the document.
 * Changes are serialised by one lock; the document's revision (its ETag) counts them, so a
 * client can make a change conditional on what it read (If-Match).
 *
 * The file and the API: a reload of the file (SIGHUP, or its content changing) replaces the
 * document with the file's; an API change holds until then. */
#include "gateway/admin.h"

#include "base/log.h"
#include "ev/ev.h"
#include "gateway/internal.h"
#include "http/json.h"

#include <errno.h>
#include <libgen.h>
#include <time.h>

#define MAX_NAME 256

struct cn_gw_admin {
    uv_mutex_t lock; /* doc, revision, generation, source: one change at a time */
    struct cn_gw *gw;
    struct cn_gw_snapshot *first; /* the listeners that run (restart to change) */
    json_t *doc;                  /* the running document; NULL if the file did not convert */
    uint64_t revision;            /* changes since start, the first document is 1 */
    uint64_t generation;          /* cn_gw_publish's answer for the document */
    const char *source;           /* "file" or "api" */
    uint64_t changed_ms;          /* wall clock of the last change */
    char *file;
    char *api_name; /* compiler's name for API documents: DIR/(api), DIR the file's */
    void (*on_publish)(void *ctx);
    void *ctx;
};

static uint64_t wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static int read_file(const char *path, struct cn_buf *b)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return CN_EIO;
    char chunk[8192];
    size_t n;
    int rc = 0;
    while (!rc && (n = fread(chunk, 1, sizeof(chunk), f)) > 0)
        rc = cn_buf_append(b, chunk, n);
    if (!rc && ferror(f))
        rc = CN_EIO;
    fclose(f);
    return rc;
}

static json_t *file_doc(const char *path)
{
    struct cn_buf b;
    cn_buf_init(&b, 16u << 20);
    char err[512];
    json_t *j = NULL;
    if (read_file(path, &b) == 0)
        j = cn_gw_doc_from_yaml(path, b.ptr ? b.ptr : "", b.len, err, sizeof(err));
    else
        snprintf(err, sizeof(err), "%s: cannot read", path);
    if (!j)
        cn_warn("gateway", "the admin API cannot show the file's document", "error=\"%s\"", err);
    cn_buf_release(&b);
    return j;
}

/* Under a->lock: makes s the running snapshot and doc (taken) the document. */
static void publish(struct cn_gw_admin *a, struct cn_gw_snapshot *s, json_t *doc,
                    const char *source)
{
    a->generation = cn_gw_publish(a->gw, s);
    json_decref(a->doc);
    a->doc = doc;
    a->revision++;
    a->source = source;
    a->changed_ms = wall_ms();
    if (a->on_publish)
        a->on_publish(a->ctx);
}

struct cn_gw_admin *cn_gw_admin_new(struct cn_gw *gw, struct cn_gw_snapshot *first,
                                    const struct cn_gw_admin_opts *opts)
{
    struct cn_gw_admin *a = calloc(1, sizeof(*a));
    if (!a)
        return NULL;
    a->gw = gw;
    a->on_publish = opts->on_publish;
    a->ctx = opts->ctx;
    a->file = strdup(opts->file);
    char *dup = strdup(opts->file);
    size_t n = dup ? strlen(dup) + 16 : 0;
    a->api_name = dup ? malloc(n) : NULL;
    if (!a->file || !a->api_name) {
        free(dup);
        free(a->file);
        free(a->api_name);
        free(a);
        return NULL;
    }
    snprintf(a->api_name, n, "%s/(api)", dirname(dup));
    free(dup);
    uv_mutex_init(&a->lock);
    a->first = cn_gw_snapshot_ref(first);
    uv_mutex_lock(&a->lock);
    publish(a, first, file_doc(a->file), "file");
    uv_mutex_unlock(&a->lock);
    return a;
}

void cn_gw_admin_free(struct cn_gw_admin *a)
{
    if (!a)
        return;
    json_decref(a->doc);
    cn_gw_snapshot_unref(a->first);
    uv_mutex_destroy(&a->lock);
    free(a->file);
    free(a->api_name);
    free(a);
}

uint64_t cn_gw_admin_reload_file(struct cn_gw_admin *a, const char *trigger)
{
    char err[1024];
    struct cn_gw_snapshot *s = cn_gw_config_load_file(a->file, err, sizeof(err));
    if (!s) {
        cn_gw_reload_failed(a->gw);
        cn_error("gateway", "reload rejected, the running configuration stays",
                 "trigger=%s error=\"%s\"", trigger, err);
        return 0;
    }
    if (!cn_gw_snapshot_same_listeners(a->first, s))
        cn_warn("gateway", "listeners change only on restart, the running ones stay", "file=%s",
                a->file);
    json_t *doc = file_doc(a->file);
    uv_mutex_lock(&a->lock);
    publish(a, s, doc, "file");
    uint64_t gen = a->generation, rev = a->revision;
    uv_mutex_unlock(&a->lock);
    cn_gw_snapshot_unref(s);
    cn_info("gateway", "configuration reloaded", "generation=%llu revision=%llu trigger=%s file=%s",
            (unsigned long long)gen, (unsigned long long)rev, trigger, a->file);
    return gen;
}

/* ---- replies ------------------------------------------------------------------------------- */

static void reply_json_etag(struct cn_http_req *req, int status, json_t *j, uint64_t revision)
{
    char *text = j ? json_dumps(j, JSON_COMPACT) : NULL;
    json_decref(j);
    if (!text) {
        cn_http_reply_json_error(req, 500, NULL, "out of memory");
        return;
    }
    char etag[32];
    int n = snprintf(etag, sizeof(etag), "\"%llu\"", (unsigned long long)revision);
    struct cn_http_header h = {CN_SLICE_LIT("ETag"), {etag, (size_t)n}};
    size_t len = strlen(text);
    text[len] = '\n'; /* the NUL goes; the length says where the body ends */
    cn_http_reply(req, status, "application/json", text, len + 1, &h, 1);
    free(text);
}

static int not_running(struct cn_http_req *req, struct cn_gw_admin *a)
{
    if (a)
        return 0;
    cn_http_reply_json_error(req, 404, NULL,
                             "the gateway is not running: set gateway.config (or start cairn up "
                             "--demo)");
    return 1;
}

/* If-Match: "*", or a list of (weak or strong) entity tags; one must be the revision.
 * Returns 1 when the request may go on. */
static int if_match_ok(const struct cn_http_req *req, uint64_t revision)
{
    const struct cn_slice *v = cn_http_req_header(req, "if-match");
    if (!v)
        return 1;
    const char *p = v->ptr, *end = v->ptr + v->len;
    while (p < end) {
        while (p < end && (*p == ' ' || *p == '\t' || *p == ','))
            p++;
        if (p < end && *p == '*')
            return 1;
        if (end - p >= 2 && p[0] == 'W' && p[1] == '/')
            p += 2;
        int quoted = p < end && *p == '"';
        if (quoted)
            p++;
        uint64_t n = 0;
        int digits = 0;
        while (p < end && *p >= '0' && *p <= '9' && digits < 19) {
            n = n * 10 + (uint64_t)(*p++ - '0');
            digits++;
        }
        if (quoted && p < end && *p == '"')
            p++;
        if (digits && n == revision && (p == end || *p == ',' || *p == ' ' || *p == '\t'))
            return 1;
        while (p < end && *p != ',')
            p++;
    }
    return 0;
}

static void precondition_failed(struct cn_http_req *req, uint64_t revision)
{
    json_t *j = json_object();
    json_object_set_new(j, "error",
                        json_string("If-Match does not name the running revision: the "
                                    "configuration changed since it was read"));
    json_object_set_new(j, "param", json_string("If-Match"));
    json_object_set_new(j, "revision", json_integer((json_int_t)revision));
    reply_json_etag(req, 412, j, revision);
}

/* The compiler's "NAME:LINE:COL: FIELD: message" for a document the API built: the field
 * and message (positions in a generated document mean nothing to the client). With
 * keep_pos the name becomes "body" (the client sent that text). *out_field: the field. */
static void api_error(const char *api_name, const char *err, int keep_pos, char *out,
                      size_t out_len, char *field, size_t field_len)
{
    size_t nl = strlen(api_name);
    const char *rest = err;
    if (strncmp(err, api_name, nl) == 0) {
        rest = err + nl;
        if (keep_pos) {
            snprintf(out, out_len, "body%s", rest);
        } else {
            /* skip ":LINE:COL" */
            while (*rest == ':' && rest[1] >= '0' && rest[1] <= '9') {
                rest++;
                while (*rest >= '0' && *rest <= '9')
                    rest++;
            }
            if (*rest == ':')
                rest++;
            while (*rest == ' ')
                rest++;
            snprintf(out, out_len, "%s", rest);
        }
        if (keep_pos) {
            rest = err + nl;
            while (*rest == ':' && rest[1] >= '0' && rest[1] <= '9') {
                rest++;
                while (*rest >= '0' && *rest <= '9')
                    rest++;
            }
            if (*rest == ':')
                rest++;
            while (*rest == ' ')
                rest++;
        }
    } else {
        snprintf(out, out_len, "%s", err);
    }
    /* FIELD is what comes before the next ": " (field paths hold no spaces). */
    const char *sep = strstr(rest, ": ");
    size_t fl = sep ? (size_t)(sep - rest) : 0;
    if (fl && !memchr(rest, ' ', fl) && fl < field_len) {
        memcpy(field, rest, fl);
        field[fl] = '\0';
    } else {
        field[0] = '\0';
    }
}

static void reply_rejected(struct cn_http_req *req, struct cn_gw_admin *a, const char *err,
                           int keep_pos)
{
    char msg[1200], field[256];
    api_error(a->api_name, err, keep_pos, msg, sizeof(msg), field, sizeof(field));
    cn_gw_reload_failed(a->gw);
    cn_warn("gateway", "admin change rejected, the running configuration stays",
            "peer=%s error=\"%s\"", cn_http_req_peer_ip(req), msg);
    cn_http_reply_json_error(req, 400, field[0] ? field : NULL, msg);
}

/* Under a->lock: compiles text (named a->api_name), and publishes it with doc (taken) when it
 * compiles and keeps the listeners. Replies 400 otherwise. Returns 0 when published. */
static int apply(struct cn_http_req *req, struct cn_gw_admin *a, const char *text, size_t len,
                 json_t *doc, int keep_pos)
{
    char err[1024];
    struct cn_gw_snapshot *s = cn_gw_config_load_buffer(a->api_name, text, len, err, sizeof(err));
    if (!s) {
        json_decref(doc);
        reply_rejected(req, a, err, keep_pos);
        return -1;
    }
    if (!cn_gw_snapshot_same_listeners(a->first, s)) {
        json_decref(doc);
        cn_gw_snapshot_unref(s);
        cn_gw_reload_failed(a->gw);
        cn_http_reply_json_error(req, 400, "listeners",
                                 "listeners: change only on restart (the admin API keeps the "
                                 "running ones: send them unchanged)");
        return -1;
    }
    publish(a, s, doc, "api");
    cn_gw_snapshot_unref(s);
    cn_info("gateway", "configuration changed", "generation=%llu revision=%llu trigger=api peer=%s",
            (unsigned long long)a->generation, (unsigned long long)a->revision,
            cn_http_req_peer_ip(req));
    return 0;
}

/* {"revision", "generation", ...extra} with the ETag: the answer to a change. */
static void reply_changed(struct cn_http_req *req, struct cn_gw_admin *a, int status,
                          const char *what, const char *name)
{
    json_t *j = json_object();
    json_object_set_new(j, "revision", json_integer((json_int_t)a->revision));
    json_object_set_new(j, "generation", json_integer((json_int_t)a->generation));
    if (what)
        json_object_set_new(j, what, json_string(name));
    reply_json_etag(req, status, j, a->revision);
}

/* ---- /api/v1/gateway/config ----------------------------------------------------------------- */

static json_t *config_json(struct cn_gw_admin *a)
{
    json_t *j = json_object();
    json_object_set_new(j, "revision", json_integer((json_int_t)a->revision));
    json_object_set_new(j, "generation", json_integer((json_int_t)a->generation));
    json_object_set_new(j, "source", json_string(a->source));
    json_object_set_new(j, "file", json_string(a->file));
    json_object_set_new(j, "changed_ms", json_integer((json_int_t)a->changed_ms));
    json_object_set_new(j, "config", a->doc ? json_deep_copy(a->doc) : json_null());
    return j;
}

static void h_config(struct cn_http_req *req, void *ctx)
{
    struct cn_gw_admin *a = ctx;
    if (not_running(req, a))
        return;
    uv_mutex_lock(&a->lock);
    if (req->method != HTTP_PUT) {
        json_t *j = config_json(a);
        uint64_t rev = a->revision;
        uv_mutex_unlock(&a->lock);
        reply_json_etag(req, 200, j, rev);
        return;
    }
    if (!if_match_ok(req, a->revision)) {
        precondition_failed(req, a->revision);
        goto out;
    }
    const char *body = req->body.ptr ? req->body.ptr : "";
    char err[1024], cerr[1024];
    json_t *doc = cn_gw_doc_from_yaml(a->api_name, body, req->body.len, err, sizeof(err));
    if (!doc) {
        /* The compiler names the field where it can: its message first. */
        struct cn_gw_snapshot *s =
            cn_gw_config_load_buffer(a->api_name, body, req->body.len, cerr, sizeof(cerr));
        reply_rejected(req, a, s ? err : cerr, 1);
        cn_gw_snapshot_unref(s);
        goto out;
    }
    if (apply(req, a, body, req->body.len, doc, 1) == 0)
        reply_changed(req, a, 200, NULL, NULL);
out:
    uv_mutex_unlock(&a->lock);
}

/* ---- /api/v1/gateway/{routes,clusters}[/{name}] ---------------------------------------------- */

static const char *list_of(const struct cn_http_req *req)
{
    /* /api/v1/gateway/routes... or /api/v1/gateway/clusters... */
    static const char pre[] = "/api/v1/gateway/";
    const char *p = req->path.ptr + sizeof(pre) - 1;
    return req->path.len > sizeof(pre) && p[0] == 'r' ? "routes" : "clusters";
}

static void h_list(struct cn_http_req *req, void *ctx)
{
    struct cn_gw_admin *a = ctx;
    if (not_running(req, a))
        return;
    const char *list = list_of(req);
    uv_mutex_lock(&a->lock);
    json_t *j = json_object();
    json_t *l = json_object_get(a->doc, list);
    json_object_set_new(j, "revision", json_integer((json_int_t)a->revision));
    json_object_set_new(j, "generation", json_integer((json_int_t)a->generation));
    json_object_set_new(j, list, json_is_array(l) ? json_deep_copy(l) : json_array());
    uint64_t rev = a->revision;
    uv_mutex_unlock(&a->lock);
    reply_json_etag(req, 200, j, rev);
}

static void h_item(struct cn_http_req *req, void *ctx)
{
    struct cn_gw_admin *a = ctx;
    if (not_running(req, a))
        return;
    const char *list = list_of(req);
    const char *what = list[0] == 'r' ? "route" : "cluster";
    struct cn_slice nv = req->params.values[0];
    if (nv.len == 0 || nv.len > MAX_NAME) {
        cn_http_reply_json_error(req, 400, "name", "a name of 1 to 256 bytes");
        return;
    }
    char name[MAX_NAME + 1];
    memcpy(name, nv.ptr, nv.len);
    name[nv.len] = '\0';
    uv_mutex_lock(&a->lock);
    if (!a->doc) {
        cn_http_reply_json_error(req, 409, NULL,
                                 "the running configuration has no document to edit (its file "
                                 "could not be read back): PUT /api/v1/gateway/config");
        goto out;
    }
    json_t *cur = cn_gw_doc_find(a->doc, list, name, NULL);
    if (req->method == HTTP_GET || req->method == HTTP_HEAD) {
        if (!cur) {
            char msg[320];
            snprintf(msg, sizeof(msg), "no %s named '%s'", what, name);
            cn_http_reply_json_error(req, 404, "name", msg);
        } else {
            reply_json_etag(req, 200, json_deep_copy(cur), a->revision);
        }
        goto out;
    }
    if (!if_match_ok(req, a->revision)) {
        precondition_failed(req, a->revision);
        goto out;
    }
    const struct cn_slice *inm = cn_http_req_header(req, "if-none-match");
    if (cur && req->method == HTTP_PUT && inm && inm->len == 1 && inm->ptr[0] == '*') {
        char msg[320];
        snprintf(msg, sizeof(msg), "a %s named '%s' exists (If-None-Match: *)", what, name);
        cn_http_reply_json_error(req, 412, "If-None-Match", msg);
        goto out;
    }
    char err[1024];
    json_t *doc = json_deep_copy(a->doc);
    int created = 0;
    if (!doc) {
        cn_http_reply_json_error(req, 500, NULL, "out of memory");
        goto out;
    }
    if (req->method == HTTP_DELETE) {
        if (cn_gw_doc_delete(doc, list, name) != 0) {
            json_decref(doc);
            char msg[320];
            snprintf(msg, sizeof(msg), "no %s named '%s'", what, name);
            cn_http_reply_json_error(req, 404, "name", msg);
            goto out;
        }
    } else {
        const char *body = req->body.ptr ? req->body.ptr : "";
        json_t *obj = cn_gw_doc_from_yaml("body", body, req->body.len, err, sizeof(err));
        int rc = obj ? cn_gw_doc_put(doc, list, name, obj, err, sizeof(err)) : CN_EINVAL;
        json_decref(obj);
        if (rc < 0) {
            json_decref(doc);
            char field[64] = "";
            if (strncmp(err, "name:", 5) == 0)
                snprintf(field, sizeof(field), "name");
            else
                snprintf(field, sizeof(field), "body");
            cn_gw_reload_failed(a->gw);
            cn_http_reply_json_error(req, 400, field, err);
            goto out;
        }
        created = rc == 0;
    }
    char *text = json_dumps(doc, JSON_INDENT(1));
    if (!text) {
        json_decref(doc);
        cn_http_reply_json_error(req, 500, NULL, "out of memory");
        goto out;
    }
    if (apply(req, a, text, strlen(text), doc, 0) == 0)
        reply_changed(req, a, created ? 201 : 200, what, name);
    free(text);
out:
    uv_mutex_unlock(&a->lock);
}

/* ---- /api/v1/gateway/status ----------------------------------------------------------------- */

#define LD(x) ((json_int_t)atomic_load_explicit(&(x), memory_order_relaxed))

/* RED of one route or cluster: requests by class, errors (5xx), duration sum and quantiles
 * (the upper bound of the histogram bucket that holds them; null past the last bound). */
static json_t *red_json(const struct gw_stats *s, int cluster)
{
    json_t *j = json_object();
    if (!s)
        return j;
    static const char *const cls[6] = {"aborted", "1xx", "2xx", "3xx", "4xx", "5xx"};
    json_t *by = json_object();
    json_int_t total = 0, lat[GW_LAT_BUCKETS + 1] = {0}, sum_us = 0;
    for (int c = 0; c < 6; c++) {
        json_int_t n = 0;
        for (int i = 0; i < s->nworkers; i++)
            n += LD(s->w[i].by_class[c]);
        total += n;
        json_object_set_new(by, cls[c], json_integer(n));
    }
    json_int_t lat_total = 0;
    for (int k = 0; k <= GW_LAT_BUCKETS; k++) {
        for (int i = 0; i < s->nworkers; i++)
            lat[k] += LD(s->w[i].lat[k]);
        lat_total += lat[k];
    }
    for (int i = 0; i < s->nworkers; i++)
        sum_us += LD(s->w[i].lat_sum_us);
    json_object_set_new(j, "requests", json_integer(total));
    json_object_set_new(j, "errors", json_incref(json_object_get(by, "5xx")));
    json_object_set_new(j, "by_class", by);
    json_object_set_new(j, "duration_sum_s", json_real((double)sum_us / 1e6));
    static const double qs[2] = {0.5, 0.99};
    static const char *const qn[2] = {"p50_s", "p99_s"};
    for (int q = 0; q < 2; q++) {
        json_t *v = json_null();
        if (lat_total) {
            json_int_t want = (json_int_t)((double)lat_total * qs[q] + 0.999999), cum = 0;
            for (int k = 0; k <= GW_LAT_BUCKETS; k++) {
                cum += lat[k];
                if (cum >= want) {
                    if (k < GW_LAT_BUCKETS)
                        v = json_real(cn_http_lat_bounds[k]);
                    break;
                }
            }
        }
        json_object_set_new(j, qn[q], v);
    }
    if (cluster) {
        static const char *const errs[4] = {"connect", "reset", "timeout", "bad_response"};
        json_t *ue = json_object();
        for (int e = 0; e < 4; e++) {
            json_int_t n = 0;
            for (int i = 0; i < s->nworkers; i++)
                n += LD(s->w[i].upstream_errors[e]);
            json_object_set_new(ue, errs[e], json_integer(n));
        }
        json_object_set_new(j, "upstream_errors", ue);
    }
    return j;
}

static json_t *slice_json(struct cn_slice s)
{
    return json_stringn(s.ptr ? s.ptr : "", s.len);
}

static json_t *kv_json(const struct gw_kv_match *kv, size_t n)
{
    json_t *a = json_array();
    for (size_t i = 0; i < n; i++)
        json_array_append_new(
            a, json_pack("{s:o,s:o,s:s}", "name", slice_json(kv[i].name), "value",
                         slice_json(kv[i].value), "type",
                         kv[i].type == GW_VAL_REGEX ? "RegularExpression" : "Exact"));
    return a;
}

static json_t *route_json(const struct cn_gw_snapshot *s, const struct gw_route *rt)
{
    static const char *const ptype[3] = {"Exact", "PathPrefix", "RegularExpression"};
    static const char *const fnames[] = {"RequestHeaderModifier",
                                         "ResponseHeaderModifier",
                                         "URLRewrite",
                                         "RequestRedirect",
                                         "JWT",
                                         "KeyAuth",
                                         "CORS",
                                         "RateLimit"};
    json_t *j = json_object();
    json_object_set_new(j, "name", slice_json(rt->name));
    json_t *hosts = json_array();
    for (size_t i = 0; i < rt->num_hostnames; i++)
        json_array_append_new(hosts, slice_json(rt->hostnames[i]));
    json_object_set_new(j, "hostnames", hosts);
    json_t *ms = json_array();
    for (size_t i = 0; i < s->num_matches; i++) {
        const struct gw_match *m = &s->matches[i];
        if (m->route != rt)
            continue;
        json_t *mj = json_object();
        struct cn_slice pv = m->path;
        if (m->path_type == GW_PATH_PREFIX && pv.len == 0)
            pv = CN_SLICE_LIT("/");
        json_object_set_new(
            mj, "path",
            json_pack("{s:s,s:o}", "type", ptype[m->path_type], "value", slice_json(pv)));
        if (m->method >= 0)
            json_object_set_new(mj, "method",
                                json_string(llhttp_method_name((llhttp_method_t)m->method)));
        if (m->num_headers)
            json_object_set_new(mj, "headers", kv_json(m->headers, m->num_headers));
        if (m->num_query)
            json_object_set_new(mj, "queryParams", kv_json(m->query, m->num_query));
        json_array_append_new(ms, mj);
    }
    json_object_set_new(j, "matches", ms);
    json_t *fs = json_array();
    for (size_t i = 0; i < rt->num_filters; i++) {
        unsigned k = (unsigned)rt->filters[i].kind;
        json_array_append_new(fs, json_string(k < CN_ARRAY_LEN(fnames) ? fnames[k] : "other"));
    }
    json_object_set_new(j, "filters", fs);
    json_t *bs = json_array();
    for (size_t i = 0; i < rt->num_backends; i++)
        json_array_append_new(bs, json_pack("{s:o,s:I}", "cluster",
                                            slice_json(rt->backends[i].cluster->name), "weight",
                                            (json_int_t)rt->backends[i].weight));
    json_object_set_new(j, "backends", bs);
    json_object_set_new(j, "stats", red_json(rt->stats, 0));
    return j;
}

static json_t *cluster_json(const struct gw_cluster *cl, uint64_t now)
{
    static const char *const pol[4] = {"round_robin", "weighted", "least_request",
                                       "consistent_hash"};
    json_t *j = json_object();
    json_object_set_new(j, "name", slice_json(cl->name));
    json_object_set_new(j, "policy", json_string(pol[cl->policy]));
    json_object_set_new(j, "health_check", json_boolean(cl->gov.health.enabled));
    json_object_set_new(j, "outlier_detection", json_boolean(cl->gov.outlier.enabled));
    json_t *eps = json_array();
    size_t healthy = 0;
    for (size_t e = 0; e < cl->num_eps; e++) {
        const struct gw_endpoint *ep = &cl->eps[e];
        const struct gw_ep_state *st = ep->st;
        unsigned f = st ? atomic_load_explicit(&st->flags, memory_order_relaxed) : 0;
        uint64_t until = st ? atomic_load_explicit(&st->ejected_until, memory_order_relaxed) : 0;
        int ejected = (f & GW_EP_EJECTED) && now < until;
        int up = !(f & GW_EP_UNHEALTHY) && !ejected;
        healthy += (size_t)up;
        json_t *ej = json_object();
        json_object_set_new(ej, "address", slice_json(ep->name));
        json_object_set_new(ej, "weight", json_integer((json_int_t)ep->weight));
        json_object_set_new(ej, "healthy", json_boolean(!(f & GW_EP_UNHEALTHY)));
        json_object_set_new(ej, "ejected", json_boolean(ejected));
        json_object_set_new(ej, "ejected_for_ms",
                            json_integer(ejected ? (json_int_t)(until - now) : 0));
        json_object_set_new(ej, "consecutive_errors",
                            json_integer(st ? (json_int_t)atomic_load_explicit(&st->consec_errors,
                                                                               memory_order_relaxed)
                                            : 0));
        json_object_set_new(ej, "state",
                            json_string(up        ? "up"
                                        : ejected ? "ejected"
                                                  : "unhealthy"));
        json_array_append_new(eps, ej);
    }
    json_object_set_new(j, "endpoints", eps);
    json_object_set_new(j, "endpoints_up", json_integer((json_int_t)healthy));
    json_object_set_new(j, "stats", red_json(cl->stats, 1));
    return j;
}

static void h_status(struct cn_http_req *req, void *ctx)
{
    struct cn_gw_admin *a = ctx;
    if (not_running(req, a))
        return;
    struct cn_gw *gw = a->gw;
    uv_mutex_lock(&a->lock);
    uint64_t rev = a->revision, changed = a->changed_ms;
    const char *source = a->source;
    uv_mutex_unlock(&a->lock);
    uv_mutex_lock(&gw->lock);
    struct cn_gw_snapshot *s = gw->current ? cn_gw_snapshot_ref(gw->current) : NULL;
    uint64_t gen = gw->generation;
    uv_mutex_unlock(&gw->lock);
    json_t *j = json_object();
    json_object_set_new(j, "generation", json_integer((json_int_t)gen));
    json_object_set_new(j, "revision", json_integer((json_int_t)rev));
    json_object_set_new(j, "source", json_string(source));
    json_object_set_new(j, "changed_ms", json_integer((json_int_t)changed));
    json_t *ws = json_array();
    int converged = 1;
    for (int i = 0; i < gw->nworkers; i++) {
        uint64_t g = cn_gw_worker_generation(gw, i);
        converged &= g == gen;
        json_array_append_new(ws, json_pack("{s:i,s:I}", "id", i, "generation", (json_int_t)g));
    }
    json_object_set_new(j, "workers", ws);
    json_object_set_new(j, "converged", json_boolean(converged));
    json_t *ls = json_array();
    for (size_t i = 0; i < a->first->num_listeners; i++) {
        char addr[128];
        const struct gw_listener *l = &a->first->listeners[i];
        cn_ev_format_addr((const struct sockaddr *)&l->addr, addr, sizeof(addr));
        json_array_append_new(ls,
                              json_pack("{s:o,s:s}", "name", slice_json(l->name), "address", addr));
    }
    json_object_set_new(j, "listeners", ls);
    json_t *rs = json_array(), *cs = json_array();
    uint64_t now = uv_hrtime() / 1000000;
    for (size_t i = 0; s && i < s->num_routes; i++)
        json_array_append_new(rs, route_json(s, &s->routes[i]));
    for (size_t i = 0; s && i < s->num_clusters; i++)
        json_array_append_new(cs, cluster_json(&s->clusters[i], now));
    json_object_set_new(j, "routes", rs);
    json_object_set_new(j, "clusters", cs);
    cn_gw_snapshot_unref(s);
    reply_json_etag(req, 200, j, rev);
}

int cn_gw_admin_routes(struct cn_gw_admin *a, struct cn_router *r)
{
    unsigned get = CN_M(HTTP_GET) | CN_M(HTTP_HEAD);
    unsigned edit = get | CN_M(HTTP_PUT) | CN_M(HTTP_DELETE);
    int rc;
    if ((rc = cn_router_add(r, get, "/api/v1/gateway/status", h_status, a)) < 0 ||
        (rc = cn_router_add(r, get | CN_M(HTTP_PUT), "/api/v1/gateway/config", h_config, a)) < 0 ||
        (rc = cn_router_add(r, get, "/api/v1/gateway/routes", h_list, a)) < 0 ||
        (rc = cn_router_add(r, get, "/api/v1/gateway/clusters", h_list, a)) < 0 ||
        (rc = cn_router_add(r, edit, "/api/v1/gateway/routes/{name}", h_item, a)) < 0 ||
        (rc = cn_router_add(r, edit, "/api/v1/gateway/clusters/{name}", h_item, a)) < 0)
        return rc;
    return 0;
}
