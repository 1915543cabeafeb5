/* The native registry API under /api/v1/registry on the API port (docs/registry.md): services
 * and instances, configuration items with history and rollback. JSON in and out; errors are
 * {"error": message, "param": name}. */
#include "cli/up.h"
#include "http/json.h"
#include "registry/util.h"

#include <time.h>

#define P "/api/v1/registry"

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static struct cn_slice param(const struct cn_http_req *req, const char *name)
{
    for (size_t i = 0; i < req->params.num; i++)
        if (cn_slice_eq(req->params.names[i], cn_slice_of(name)))
            return req->params.values[i];
    return (struct cn_slice){"", 0};
}

/* Path parameters arrive percent-encoded; decoded copies go into buf (NUL-separated). */
static int path_params(struct cn_http_req *req, const char *const *names, size_t n,
                       struct cn_slice *out, struct cn_buf *buf)
{
    size_t offs[8];
    for (size_t i = 0; i < n; i++) {
        offs[i] = buf->len;
        if (cn_url_decode(buf, param(req, names[i]), 0) != 0 || cn_buf_append(buf, "", 1) != 0) {
            cn_http_reply_json_error(req, 400, names[i], "malformed percent-encoding");
            return -1;
        }
    }
    for (size_t i = 0; i < n; i++) {
        out[i] = cn_slice_of(buf->ptr + offs[i]);
        if (cn_reg_check_name(out[i]) != 0 && strcmp(names[i], "ip") != 0 &&
            strcmp(names[i], "port") != 0) {
            cn_http_reply_json_error(req, 400, names[i], "illegal name");
            return -1;
        }
    }
    return 0;
}

static void reply_raw_json(struct cn_http_req *req, int status, const struct cn_buf *b)
{
    cn_http_reply(req, status, "application/json", b->ptr ? b->ptr : "", b->len, NULL, 0);
}

static void reg_error(struct cn_http_req *req, int rc, const struct cn_reg_error *e)
{
    int status = rc == CN_ENOENT ? 404 : rc == CN_EIO || rc == CN_ENOMEM ? 500 : 400;
    cn_http_reply_json_error(req, status, e->param, e->message[0] ? e->message : cn_strerror(rc));
}

static void who_of(struct cn_http_req *req, char *out, size_t len)
{
    snprintf(out, len, "api@%s", cn_http_req_peer_ip(req));
}

/* ---- services ---------------------------------------------------------------------------- */

static void h_services(struct cn_http_req *req, void *ctx)
{
    struct cn_up *up = ctx;
    char ns[CN_REG_MAX_NAME_BYTES + 1] = "", group[CN_REG_MAX_NAME_BYTES + 1] = "";
    cn_http_req_query(req, "namespace", ns, sizeof(ns));
    cn_http_req_query(req, "group", group, sizeof(group));
    struct cn_buf names, b;
    cn_buf_init(&names, 64u << 20);
    cn_buf_init(&b, 64u << 20);
    uint64_t count = 0;
    if (cn_reg_service_names(up->reg, cn_slice_of(ns), cn_slice_of(group), 1, UINT32_MAX, &names,
                             &count) != 0 ||
        cn_buf_puts(&b, "{\"namespace\":") != 0 ||
        cn_reg_json_str(&b, ns[0] ? ns : CN_REG_DEFAULT_NAMESPACE,
                        strlen(ns[0] ? ns : CN_REG_DEFAULT_NAMESPACE)) != 0 ||
        cn_buf_printf(&b, ",\"count\":%llu,\"services\":", (unsigned long long)count) != 0 ||
        cn_buf_append(&b, names.ptr, names.len) != 0 || cn_buf_puts(&b, "}\n") != 0)
        cn_http_reply_json_error(req, 500, NULL, "answer too large");
    else
        reply_raw_json(req, 200, &b);
    cn_buf_release(&names);
    cn_buf_release(&b);
}

static void h_service_get(struct cn_http_req *req, void *ctx)
{
    struct cn_up *up = ctx;
    static const char *const names[] = {"namespace", "group", "service"};
    struct cn_slice v[3];
    struct cn_buf pb, b;
    cn_buf_init(&pb, 4096);
    cn_buf_init(&b, 64u << 20);
    if (path_params(req, names, 3, v, &pb) != 0)
        goto out;
    struct cn_reg_inst_view *iv;
    long n = cn_reg_instances(up->reg, v[0], v[1], v[2], &iv);
    if (n < 0) {
        cn_http_reply_json_error(req, 500, NULL, "out of memory");
        goto out;
    }
    int rc = cn_buf_puts(&b, "{\"namespace\":");
    rc |= cn_reg_json_str(&b, v[0].ptr, v[0].len);
    rc |= cn_buf_puts(&b, ",\"group\":");
    rc |= cn_reg_json_str(&b, v[1].ptr, v[1].len);
    rc |= cn_buf_puts(&b, ",\"service\":");
    rc |= cn_reg_json_str(&b, v[2].ptr, v[2].len);
    rc |= cn_buf_puts(&b, ",\"instances\":[");
    for (long i = 0; i < n; i++) {
        rc |= cn_buf_puts(&b, i ? ",{\"ip\":" : "{\"ip\":");
        rc |= cn_reg_json_str(&b, iv[i].ip, strlen(iv[i].ip));
        rc |= cn_buf_printf(&b, ",\"port\":%u,\"cluster\":", iv[i].port);
        rc |= cn_reg_json_str(&b, iv[i].cluster, strlen(iv[i].cluster));
        rc |= cn_buf_puts(&b, ",\"weight\":");
        rc |= cn_reg_json_double(&b, iv[i].weight);
        rc |= cn_buf_printf(
            &b,
            ",\"healthy\":%s,\"enabled\":%s,\"ephemeral\":%s,\"last_beat_ms\":%llu,\"metadata\":",
            iv[i].healthy ? "true" : "false", iv[i].enabled ? "true" : "false",
            iv[i].ephemeral ? "true" : "false", (unsigned long long)iv[i].last_beat_ms);
        rc |= cn_buf_puts(&b, iv[i].metadata);
        rc |= cn_buf_puts(&b, "}");
    }
    rc |= cn_buf_puts(&b, "]}\n");
    cn_reg_instances_free(iv, n);
    if (rc)
        cn_http_reply_json_error(req, 500, NULL, "answer too large");
    else
        reply_raw_json(req, 200, &b);
out:
    cn_buf_release(&pb);
    cn_buf_release(&b);
}

/* PUT .../instances: {"ip","port","cluster","weight","healthy","enabled","ephemeral","metadata"} */
static void h_instance_put(struct cn_http_req *req, void *ctx)
{
    struct cn_up *up = ctx;
    static const char *const names[] = {"namespace", "group", "service"};
    struct cn_slice v[3];
    struct cn_buf pb;
    cn_buf_init(&pb, 4096);
    json_t *j = NULL;
    char *meta = NULL;
    if (path_params(req, names, 3, v, &pb) != 0)
        goto out;
    json_error_t je;
    j = json_loadb(req->body.ptr ? req->body.ptr : "", req->body.len, 0, &je);
    if (!json_is_object(j)) {
        cn_http_reply_json_error(req, 400, "body", "not a JSON object");
        goto out;
    }
    const char *ip = json_string_value(json_object_get(j, "ip"));
    json_t *port = json_object_get(j, "port");
    const char *cluster = json_string_value(json_object_get(j, "cluster"));
    json_t *w = json_object_get(j, "weight"), *m = json_object_get(j, "metadata");
    json_t *h = json_object_get(j, "healthy"), *e = json_object_get(j, "enabled"),
           *eph = json_object_get(j, "ephemeral");
    if (!ip || !*ip) {
        cn_http_reply_json_error(req, 400, "ip", "required");
        goto out;
    }
    if (!json_is_integer(port) || json_integer_value(port) < 1 ||
        json_integer_value(port) > 65535) {
        cn_http_reply_json_error(req, 400, "port", "must be 1..65535");
        goto out;
    }
    if ((w && !json_is_number(w)) || (m && !json_is_object(m)) || (h && !json_is_boolean(h)) ||
        (e && !json_is_boolean(e)) || (eph && !json_is_boolean(eph))) {
        cn_http_reply_json_error(req, 400,
                                 w && !json_is_number(w)    ? "weight"
                                 : m && !json_is_object(m)  ? "metadata"
                                 : h && !json_is_boolean(h) ? "healthy"
                                 : e && !json_is_boolean(e) ? "enabled"
                                                            : "ephemeral",
                                 "wrong type");
        goto out;
    }
    meta = m ? json_dumps(m, JSON_COMPACT) : NULL;
    /* Instances put through this API are persistent unless said otherwise: nothing sends
     * them heartbeats. */
    struct cn_reg_instance in = {
        v[0],
        v[1],
        v[2],
        cn_slice_of(cluster && *cluster ? cluster : CN_REG_DEFAULT_CLUSTER),
        cn_slice_of(ip),
        (uint16_t)json_integer_value(port),
        w ? json_number_value(w) : 1.0,
        h ? json_is_true(h) : 1,
        e ? json_is_true(e) : 1,
        eph ? json_is_true(eph) : 0,
        cn_slice_of(meta ? meta : "{}")};
    struct cn_reg_error err = {0};
    int rc = cn_reg_register(up->reg, &in, now_ms(), &err);
    if (rc)
        reg_error(req, rc, &err);
    else
        cn_http_reply(req, 200, "application/json", "{\"ok\":true}\n", 12, NULL, 0);
out:
    free(meta);
    json_decref(j);
    cn_buf_release(&pb);
}

static void h_instance_delete(struct cn_http_req *req, void *ctx)
{
    struct cn_up *up = ctx;
    static const char *const names[] = {"namespace", "group", "service", "ip", "port"};
    struct cn_slice v[5];
    struct cn_buf pb;
    cn_buf_init(&pb, 4096);
    if (path_params(req, names, 5, v, &pb) != 0)
        goto out;
    uint64_t port;
    if (cn_slice_to_u64(v[4], &port) != 0 || port < 1 || port > 65535) {
        cn_http_reply_json_error(req, 400, "port", "must be 1..65535");
        goto out;
    }
    char cluster[CN_REG_MAX_NAME_BYTES + 1] = CN_REG_DEFAULT_CLUSTER;
    cn_http_req_query(req, "cluster", cluster, sizeof(cluster));
    struct cn_reg_error err = {0};
    int rc = cn_reg_deregister(up->reg, v[0], v[1], v[2], cn_slice_of(cluster), v[3],
                               (uint16_t)port, 0, now_ms(), &err);
    if (rc)
        reg_error(req, rc, &err);
    else
        cn_http_reply(req, 200, "application/json", "{\"ok\":true}\n", 12, NULL, 0);
out:
    cn_buf_release(&pb);
}

/* ---- configuration ------------------------------------------------------------------------ */

static void h_configs(struct cn_http_req *req, void *ctx)
{
    struct cn_up *up = ctx;
    char ns[CN_REG_MAX_NAME_BYTES + 1] = "", group[CN_REG_MAX_NAME_BYTES + 1] = "";
    cn_http_req_query(req, "namespace", ns, sizeof(ns));
    cn_http_req_query(req, "group", group, sizeof(group));
    struct cn_buf l, b;
    cn_buf_init(&l, 64u << 20);
    cn_buf_init(&b, 64u << 20);
    if (cn_reg_cfg_list_json(up->reg, cn_slice_of(ns), cn_slice_of(group), &l) != 0 ||
        cn_buf_puts(&b, "{\"configs\":") != 0 || cn_buf_append(&b, l.ptr, l.len) != 0 ||
        cn_buf_puts(&b, "}\n") != 0)
        cn_http_reply_json_error(req, 500, NULL, "answer too large");
    else
        reply_raw_json(req, 200, &b);
    cn_buf_release(&l);
    cn_buf_release(&b);
}

static int cfg_key(struct cn_http_req *req, struct cn_reg_cfg_key *k, struct cn_buf *pb)
{
    static const char *const names[] = {"namespace", "group", "dataId"};
    struct cn_slice v[3];
    if (path_params(req, names, 3, v, pb) != 0)
        return -1;
    *k = (struct cn_reg_cfg_key){v[0], v[1], v[2]};
    return 0;
}

static void h_config(struct cn_http_req *req, void *ctx)
{
    struct cn_up *up = ctx;
    struct cn_buf pb, b, c;
    cn_buf_init(&pb, 4096);
    cn_buf_init(&b, SIZE_MAX);
    cn_buf_init(&c, SIZE_MAX);
    json_t *j = NULL;
    struct cn_reg_cfg_key k;
    struct cn_reg_error err = {0};
    char who[96];
    who_of(req, who, sizeof(who));
    if (cfg_key(req, &k, &pb) != 0)
        goto out;
    if (req->method == HTTP_GET) {
        char md5[33], type[64];
        uint64_t version, mtime;
        int rc = cn_reg_cfg_get(up->reg, &k, &c, md5, type, &version, &mtime);
        if (rc == CN_ENOENT) {
            cn_http_reply_json_error(req, 404, "dataId", "config data not exist");
            goto out;
        }
        rc = cn_buf_puts(&b, "{\"namespace\":");
        rc |= cn_reg_json_str(&b, cn_reg_ns(k.ns).ptr, cn_reg_ns(k.ns).len);
        rc |= cn_buf_puts(&b, ",\"group\":");
        rc |= cn_reg_json_str(&b, k.group.ptr, k.group.len);
        rc |= cn_buf_puts(&b, ",\"dataId\":");
        rc |= cn_reg_json_str(&b, k.data_id.ptr, k.data_id.len);
        rc |= cn_buf_printf(&b, ",\"md5\":\"%s\",\"type\":", md5);
        rc |= cn_reg_json_str(&b, type, strlen(type));
        rc |= cn_buf_printf(&b, ",\"version\":%llu,\"time\":%llu,\"content\":",
                            (unsigned long long)version, (unsigned long long)mtime);
        rc |= cn_reg_json_str(&b, c.ptr ? c.ptr : "", c.len);
        rc |= cn_buf_puts(&b, "}\n");
        if (rc)
            cn_http_reply_json_error(req, 500, NULL, "answer too large");
        else
            reply_raw_json(req, 200, &b);
        goto out;
    }
    if (req->method == HTTP_DELETE) {
        int rc = cn_reg_cfg_delete(up->reg, &k, who, now_ms(), &err);
        if (rc)
            reg_error(req, rc, &err);
        else
            cn_http_reply(req, 200, "application/json", "{\"ok\":true}\n", 12, NULL, 0);
        goto out;
    }
    /* PUT {"content": "...", "type": "yaml"} */
    json_error_t je;
    j = json_loadb(req->body.ptr ? req->body.ptr : "", req->body.len, 0, &je);
    json_t *content = json_object_get(j, "content"), *type = json_object_get(j, "type");
    if (!json_is_object(j)) {
        cn_http_reply_json_error(req, 400, "body", "not a JSON object");
        goto out;
    }
    if (!json_is_string(content)) {
        cn_http_reply_json_error(req, 400, "content", "required, a string");
        goto out;
    }
    if (type && !json_is_string(type)) {
        cn_http_reply_json_error(req, 400, "type", "a string");
        goto out;
    }
    uint64_t version = 0;
    struct cn_slice cs = {json_string_value(content), json_string_length(content)};
    int rc = cn_reg_cfg_publish(up->reg, &k, cs, cn_slice_of(type ? json_string_value(type) : ""),
                                who, now_ms(), &version, &err);
    if (rc) {
        reg_error(req, rc, &err);
        goto out;
    }
    char md5[33];
    cn_reg_md5_hex(cs.ptr, cs.len, md5);
    cn_buf_printf(&b, "{\"version\":%llu,\"md5\":\"%s\"}\n", (unsigned long long)version, md5);
    reply_raw_json(req, 200, &b);
out:
    json_decref(j);
    cn_buf_release(&pb);
    cn_buf_release(&b);
    cn_buf_release(&c);
}

static void h_history(struct cn_http_req *req, void *ctx)
{
    struct cn_up *up = ctx;
    struct cn_buf pb, h, b;
    cn_buf_init(&pb, 4096);
    cn_buf_init(&h, 64u << 20);
    cn_buf_init(&b, 64u << 20);
    struct cn_reg_cfg_key k;
    if (cfg_key(req, &k, &pb) != 0)
        goto out;
    char lim[32];
    uint64_t limit = 100;
    if (cn_http_req_query(req, "limit", lim, sizeof(lim)) >= 0 &&
        (cn_slice_to_u64(cn_slice_of(lim), &limit) != 0 || limit < 1 || limit > 100000)) {
        cn_http_reply_json_error(req, 400, "limit", "must be 1..100000");
        goto out;
    }
    if (cn_reg_cfg_history_json(up->reg, &k, limit, &h) != 0 ||
        cn_buf_puts(&b, "{\"history\":") != 0 || cn_buf_append(&b, h.ptr, h.len) != 0 ||
        cn_buf_puts(&b, "}\n") != 0)
        cn_http_reply_json_error(req, 500, NULL, "history could not be read");
    else
        reply_raw_json(req, 200, &b);
out:
    cn_buf_release(&pb);
    cn_buf_release(&h);
    cn_buf_release(&b);
}

/* POST .../rollback {"version": N} */
static void h_rollback(struct cn_http_req *req, void *ctx)
{
    struct cn_up *up = ctx;
    struct cn_buf pb;
    cn_buf_init(&pb, 4096);
    json_t *j = NULL;
    struct cn_reg_cfg_key k;
    if (cfg_key(req, &k, &pb) != 0)
        goto out;
    json_error_t je;
    j = json_loadb(req->body.ptr ? req->body.ptr : "", req->body.len, 0, &je);
    json_t *v = json_object_get(j, "version");
    if (!json_is_integer(v) || json_integer_value(v) < 1) {
        cn_http_reply_json_error(req, 400, "version", "required, a positive integer");
        goto out;
    }
    char who[96];
    who_of(req, who, sizeof(who));
    struct cn_reg_error err = {0};
    uint64_t nv = 0;
    int rc =
        cn_reg_cfg_rollback(up->reg, &k, (uint64_t)json_integer_value(v), who, now_ms(), &nv, &err);
    if (rc) {
        reg_error(req, rc, &err);
    } else {
        char body[64];
        int n = snprintf(body, sizeof(body), "{\"version\":%llu}\n", (unsigned long long)nv);
        cn_http_reply(req, 200, "application/json", body, (size_t)n, NULL, 0);
    }
out:
    json_decref(j);
    cn_buf_release(&pb);
}

/* GET /status: the storage backend and, in cluster mode, the generation (the etcd revision
 * this node has applied: equal on two nodes means they serve the same state). */
static void h_status(struct cn_http_req *req, void *ctx)
{
    struct cn_up *up = ctx;
    struct cn_reg_stats st;
    cn_reg_stats(up->reg, &st);
    char body[512];
    int n = snprintf(body, sizeof(body),
                     "{\"backend\":\"%s\",\"generation\":%llu,\"services\":%llu,"
                     "\"instances\":%llu,\"configs\":%llu}\n",
                     st.shared ? "etcd" : "sqlite", (unsigned long long)st.generation,
                     (unsigned long long)st.services, (unsigned long long)st.instances,
                     (unsigned long long)st.configs);
    cn_http_reply(req, 200, "application/json", body, (size_t)n, NULL, 0);
}

int cn_api_registry_routes(struct cn_up *up, struct cn_router *r)
{
    const unsigned get = CN_M(HTTP_GET);
    int rc;
    if ((rc = cn_router_add(r, get, P "/status", h_status, up)) < 0 ||
        (rc = cn_router_add(r, get, P "/services", h_services, up)) < 0 ||
        (rc = cn_router_add(r, get, P "/services/{namespace}/{group}/{service}", h_service_get,
                            up)) < 0 ||
        (rc = cn_router_add(r, CN_M(HTTP_PUT) | CN_M(HTTP_POST),
                            P "/services/{namespace}/{group}/{service}/instances", h_instance_put,
                            up)) < 0 ||
        (rc = cn_router_add(r, CN_M(HTTP_DELETE),
                            P "/services/{namespace}/{group}/{service}/instances/{ip}/{port}",
                            h_instance_delete, up)) < 0 ||
        (rc = cn_router_add(r, get, P "/configs", h_configs, up)) < 0 ||
        (rc = cn_router_add(r, get | CN_M(HTTP_PUT) | CN_M(HTTP_DELETE),
                            P "/configs/{namespace}/{group}/{dataId}", h_config, up)) < 0 ||
        (rc = cn_router_add(r, get, P "/configs/{namespace}/{group}/{dataId}/history", h_history,
                            up)) < 0 ||
        (rc = cn_router_add(r, CN_M(HTTP_POST), P "/configs/{namespace}/{group}/{dataId}/rollback",
                            h_rollback, up)) < 0)
        return rc;
    return 0;
}
