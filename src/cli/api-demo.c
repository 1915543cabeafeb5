/* The demo's API on the API port (docs/demo.md): its processes, and the fault switches the
 * console's buttons and `cairn demo fault` flip. The switches are one configuration item of
 * the registry's configuration center (CN_DEMO_FAULTS_DATA_ID in CN_DEMO_FAULTS_GROUP) that
 * every demo service listens to with the Nacos client, so a change reaches the services at
 * once and its history is the registry's. Writes are taken from loopback peers only unless
 * the API requires a bearer token. */
#include "cli/demo.h"
#include "cli/up.h"
#include "http/json.h"

#include <arpa/inet.h>
#include <time.h>

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static const struct cn_reg_cfg_key faults_key = {
    CN_SLICE_LIT(CN_REG_DEFAULT_NAMESPACE),
    CN_SLICE_LIT(CN_DEMO_FAULTS_GROUP),
    CN_SLICE_LIT(CN_DEMO_FAULTS_DATA_ID),
};

static int not_running(struct cn_http_req *req, struct cn_up *up)
{
    if (up->demo)
        return 0;
    cn_http_reply_json_error(req, 404, NULL, "the demo is not running: start cairn up --demo");
    return 1;
}

/* Appends "faults":{...} (the current document, {} when there is none). */
static int faults_member(struct cn_up *up, struct cn_buf *b)
{
    struct cn_buf c;
    cn_buf_init(&c, 1u << 20);
    char md5[33], type[64];
    int rc = cn_reg_cfg_get(up->reg, &faults_key, &c, md5, type, NULL, NULL);
    json_error_t je;
    json_t *j = rc == 0 && c.len ? json_loadb(c.ptr, c.len, 0, &je) : NULL;
    char *text = json_is_object(j) ? json_dumps(j, JSON_SORT_KEYS | JSON_COMPACT) : NULL;
    rc = cn_buf_printf(b, "\"faults\":%s", text ? text : "{}");
    free(text);
    json_decref(j);
    cn_buf_release(&c);
    return rc;
}

static void reply_buf(struct cn_http_req *req, int status, struct cn_buf *b)
{
    cn_http_reply(req, status, "application/json", b->ptr ? b->ptr : "", b->len, NULL, 0);
}

/* GET /api/v1/demo: {"route", "rps", "gateway", "processes": [...], "faults": {...}} */
static void h_demo(struct cn_http_req *req, void *ctx)
{
    struct cn_up *up = ctx;
    if (not_running(req, up))
        return;
    struct cn_buf b;
    cn_buf_init(&b, 1u << 20);
    int rc = cn_buf_puts(&b, "{");
    rc |= cn_demo_status_json(up->demo, &b);
    rc |= cn_buf_puts(&b, ",");
    rc |= faults_member(up, &b);
    rc |= cn_buf_puts(&b, "}\n");
    if (rc)
        cn_http_reply_json_error(req, 500, NULL, "answer too large");
    else
        reply_buf(req, 200, &b);
    cn_buf_release(&b);
}

static int loopback_peer(struct cn_http_req *req)
{
    const char *ip = cn_http_req_peer_ip(req);
    struct in_addr a4;
    struct in6_addr a6;
    if (inet_pton(AF_INET, ip, &a4) == 1)
        return (ntohl(a4.s_addr) >> 24) == 127;
    if (inet_pton(AF_INET6, ip, &a6) == 1)
        return IN6_IS_ADDR_LOOPBACK(&a6) || (IN6_IS_ADDR_V4MAPPED(&a6) && a6.s6_addr[12] == 127);
    return 0;
}

/* GET /api/v1/demo/faults: {"services": [...], "faults": {...}}
 * POST /api/v1/demo/faults {"service", "fault", "errorRate"?, "latencyMs"?}: the same after
 * the change, with the document's new "version". */
static void h_faults(struct cn_http_req *req, void *ctx)
{
    struct cn_up *up = ctx;
    if (not_running(req, up))
        return;
    struct cn_buf b, cur, next;
    cn_buf_init(&b, 1u << 20);
    cn_buf_init(&cur, 1u << 20);
    cn_buf_init(&next, 1u << 20);
    json_t *j = NULL;
    uint64_t version = 0;
    if (req->method == HTTP_POST) {
        if (!up->api.token && !loopback_peer(req)) {
            cn_http_reply_json_error(req, 403, NULL,
                                     "fault switches take loopback clients only unless "
                                     "api.token is set");
            goto out;
        }
        json_error_t je;
        j = json_loadb(req->body.ptr ? req->body.ptr : "", req->body.len, 0, &je);
        if (!json_is_object(j)) {
            cn_http_reply_json_error(req, 400, "body", "not a JSON object");
            goto out;
        }
        json_t *svc = json_object_get(j, "service"), *fault = json_object_get(j, "fault");
        json_t *rate = json_object_get(j, "errorRate"), *lat = json_object_get(j, "latencyMs");
        const char *bad = !json_is_string(svc)            ? "service"
                          : !json_is_string(fault)        ? "fault"
                          : rate && !json_is_number(rate) ? "errorRate"
                          : lat && (!json_is_integer(lat) || json_integer_value(lat) < 0 ||
                                    json_integer_value(lat) > 60000)
                              ? "latencyMs"
                              : NULL;
        if (bad) {
            cn_http_reply_json_error(req, 400, bad,
                                     strcmp(bad, "latencyMs") == 0   ? "an integer from 0 to 60000"
                                     : strcmp(bad, "errorRate") == 0 ? "a number from 0 to 1"
                                                                     : "required, a string");
            goto out;
        }
        struct cn_demo_fault f = {json_string_value(svc), json_string_value(fault),
                                  rate ? json_number_value(rate) : 0,
                                  lat ? (unsigned)json_integer_value(lat) : 0};
        char err[256], md5[33], type[64], who[80];
        snprintf(who, sizeof(who), "api@%s", cn_http_req_peer_ip(req));
        cn_demo_lock(up->demo);
        int rc = cn_reg_cfg_get(up->reg, &faults_key, &cur, md5, type, NULL, NULL);
        if (rc == 0 || rc == CN_ENOENT)
            rc = cn_demo_fault_apply(rc == 0 ? cur.ptr : NULL, rc == 0 ? cur.len : 0, &f, &next,
                                     err, sizeof(err));
        else
            snprintf(err, sizeof(err), "cannot read the fault switches: %s", cn_strerror(rc));
        struct cn_reg_error re = {0};
        if (rc == 0)
            rc = cn_reg_cfg_publish(up->reg, &faults_key, (struct cn_slice){next.ptr, next.len},
                                    cn_slice_of("json"), who, now_ms(), &version, &re);
        cn_demo_unlock(up->demo);
        if (rc) {
            /* cn_demo_fault_apply's messages start with the field they are about. */
            char field[32] = "";
            if (!re.message[0] && rc == CN_EINVAL)
                sscanf(err, "%31[a-zA-Z]:", field);
            cn_http_reply_json_error(req, rc == CN_EINVAL ? 400 : 500,
                                     re.param   ? re.param
                                     : field[0] ? field
                                                : NULL,
                                     re.message[0] ? re.message : err);
            goto out;
        }
    }
    int rc = cn_buf_puts(&b, "{\"services\":[");
    for (size_t i = 0; i < CN_DEMO_NUM_SERVICES; i++)
        rc |= cn_buf_printf(&b, "%s\"%s\"", i ? "," : "", cn_demo_services[i]);
    rc |= cn_buf_puts(&b, "],\"kinds\":[\"error\",\"latency\",\"bad-version\",\"clear\"],");
    if (version)
        rc |= cn_buf_printf(&b, "\"version\":%llu,", (unsigned long long)version);
    rc |= faults_member(up, &b);
    rc |= cn_buf_puts(&b, "}\n");
    if (rc)
        cn_http_reply_json_error(req, 500, NULL, "answer too large");
    else
        reply_buf(req, 200, &b);
out:
    json_decref(j);
    cn_buf_release(&b);
    cn_buf_release(&cur);
    cn_buf_release(&next);
}

int cn_api_demo_routes(struct cn_up *up, struct cn_router *r)
{
    int rc;
    if ((rc = cn_router_add(r, CN_M(HTTP_GET), "/api/v1/demo", h_demo, up)) < 0 ||
        (rc = cn_router_add(r, CN_M(HTTP_GET) | CN_M(HTTP_POST), "/api/v1/demo/faults", h_faults,
                            up)) < 0)
        return rc;
    return 0;
}

int cn_api_demo_reset(struct cn_up *up)
{
    char md5[33];
    cn_reg_cfg_md5(up->reg, &faults_key, md5);
    if (strcmp(md5, "") == 0 || strcmp(md5, "99914b932bd37a50b983c5e7c90ae93b") == 0)
        return 0; /* absent, or already "{}" */
    uint64_t version;
    struct cn_reg_error re = {0};
    return cn_reg_cfg_publish(up->reg, &faults_key, cn_slice_of("{}"), cn_slice_of("json"),
                              "cairn up --demo", now_ms(), &version, &re);
}
