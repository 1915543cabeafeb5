/* GET /api/v1/rca: root cause analysis (telemetry/rca.h, docs/rca.md) on the API port. The
 * handler checks the parameters on the loop; the analysis runs on the libuv threadpool and
 * the loop sends its answer, like the other scanning queries of api-query.c. */
#include "cli/api-rca.h"

#include "base/log.h"
#include "http/json.h"
#include "telemetry/rca.h"

#include <time.h>

#define MAX_VALUE 1024 /* longest parameter value taken */

static const char *const allowed[] = {"service", "start",          "end",          "trace",
                                      "limit",   "baseline_start", "baseline_end", NULL};

struct rjob {
    struct cn_http_req *req; /* NULL once the client went away */
    struct cn_up *up;
    struct cn_rca_query q;
    struct cn_rca_limits lim;
    struct cn_code_links *cl;
    char service[MAX_VALUE + 1];
    json_t *out;
    int status;
    const char *err_param;
    char err[256];
};

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* Replies 400 naming the first parameter not in allowed; returns -1 then. */
static int check_names(struct cn_http_req *req)
{
    const char *p = req->query.ptr, *end = p + req->query.len;
    while (p && p < end) {
        const char *amp = memchr(p, '&', (size_t)(end - p));
        const char *e = amp ? amp : end;
        const char *eq = memchr(p, '=', (size_t)(e - p));
        const char *ke = eq ? eq : e;
        char name[64];
        size_t n = 0;
        for (const char *c = p; c < ke; c++) {
            int ch = (unsigned char)*c;
            if (ch == '%') {
                if (ke - c < 3 || cn_hexval(c[1]) < 0 || cn_hexval(c[2]) < 0) {
                    cn_http_reply_json_error(req, 400, NULL,
                                             "malformed percent-escape in the query");
                    return -1;
                }
                ch = cn_hexval(c[1]) * 16 + cn_hexval(c[2]);
                c += 2;
            } else if (ch == '+') {
                ch = ' ';
            }
            if (n + 1 < sizeof(name))
                name[n++] = (char)ch; /* a longer name is no known one: cut for the message */
        }
        name[n] = '\0';
        if (e > p) {
            int known = 0;
            for (size_t i = 0; allowed[i] && !known; i++)
                known = strcmp(allowed[i], name) == 0;
            if (!known) {
                cn_http_reply_json_error(req, 400, name, "unknown parameter");
                return -1;
            }
        }
        p = amp ? amp + 1 : end;
    }
    return 0;
}

/* The value of name into dst: 1 present, 0 absent; -1 after replying 400 (too long). */
static int param(struct cn_http_req *req, const char *name, char *dst, size_t len)
{
    if (cn_http_req_query(req, name, dst, len) >= 0)
        return 1;
    /* Absent, or it did not fit: look for the name. */
    const char *p = req->query.ptr, *end = p + req->query.len;
    size_t nl = strlen(name);
    while (p && p < end) {
        const char *amp = memchr(p, '&', (size_t)(end - p));
        const char *e = amp ? amp : end;
        if ((size_t)(e - p) >= nl && memcmp(p, name, nl) == 0 && (p + nl == e || p[nl] == '=')) {
            char msg[96];
            snprintf(msg, sizeof(msg), "%s is too long or malformed (%zu bytes at most)", name,
                     len - 1);
            cn_http_reply_json_error(req, 400, name, msg);
            return -1;
        }
        p = amp ? amp + 1 : end;
    }
    return 0;
}

static int time_param(struct cn_http_req *req, const char *name, uint64_t *out, int *given)
{
    char v[128];
    int rc = param(req, name, v, sizeof(v));
    *given = rc == 1;
    if (rc <= 0)
        return rc;
    if (cn_query_parse_time(cn_slice_of(v), out) != 0) {
        cn_http_reply_json_error(req, 400, name,
                                 "not a time: use RFC 3339 or an integer with a unit suffix "
                                 "(s, ms, us, ns)");
        return -1;
    }
    return 0;
}

static void rjob_free(struct rjob *j)
{
    cn_code_links_free(j->cl);
    json_decref(j->out);
    free(j);
}

static void rjob_abort(struct cn_http_req *req)
{
    struct rjob *j = req->data;
    j->req = NULL;
}

static void rjob_work(void *arg)
{
    struct rjob *j = arg;
    struct cn_rca_source src;
    cn_rca_source_store(&src, j->up->store);
    int rc = cn_rca_run(&src, &j->lim, &j->q, &j->out, &j->err_param, j->err, sizeof(j->err));
    j->status = rc == 0 ? 200 : rc == CN_EINVAL ? 400 : rc == CN_ENOENT ? 404 : 503;
}

static void rjob_done(void *arg)
{
    struct rjob *j = arg;
    struct cn_http_req *req = j->req;
    if (req) {
        req->abort_cb = NULL;
        req->data = NULL;
        if (j->status == 200 && j->out) {
            cn_http_reply_json(req, 200, j->out);
            j->out = NULL;
        } else {
            cn_http_reply_json_error(req, j->status == 200 ? 503 : j->status, j->err_param,
                                     j->err[0] ? j->err : "analysis failed");
        }
    }
    rjob_free(j);
}

static void h_rca(struct cn_http_req *req, void *ctx)
{
    struct cn_up *up = ctx;
    if (!up->store) {
        cn_http_reply_json_error(req, 503, NULL, "telemetry is not running");
        return;
    }
    if (check_names(req) != 0)
        return;
    struct rjob *j = calloc(1, sizeof(*j));
    if (!j) {
        cn_http_reply_json_error(req, 503, NULL, "out of memory");
        return;
    }
    j->up = up;
    struct cn_rca_query *q = &j->q;
    struct cn_config *cfg = cn_up_config(up);
    struct cn_query_limits ql;
    cn_config_query_limits(cfg, &ql);
    if (cfg->telemetry.code_links && strcmp(cfg->telemetry.code_links, "{}") != 0) {
        char err[256];
        j->cl = cn_config_code_links(cfg, err, sizeof(err));
        if (!j->cl)
            cn_error("rca", "code links unusable", "error=\"%s\"", err);
    }
    cn_config_unref(cfg);
    cn_rca_limits_default(&j->lim);
    if (ql.max_scan_records < j->lim.max_spans)
        j->lim.max_spans = ql.max_scan_records;
    q->cl = j->cl;
    q->limit = CN_RCA_DEFAULT_SUSPECTS;

    int rc;
    char v[MAX_VALUE + 1];
    if ((rc = param(req, "service", j->service, sizeof(j->service))) < 0)
        goto fail;
    if (rc == 1) {
        if (!j->service[0]) {
            cn_http_reply_json_error(req, 400, "service", "service must not be empty");
            goto fail;
        }
        q->service = cn_slice_of(j->service);
    }
    if ((rc = param(req, "trace", v, sizeof(v))) < 0)
        goto fail;
    if (rc == 1) {
        if (cn_hex_decode(q->trace_id, 16, cn_slice_of(v)) != 0 || cn_id_is_zero(q->trace_id, 16)) {
            cn_http_reply_json_error(req, 400, "trace",
                                     "trace id must be 32 hex digits, not all zero");
            goto fail;
        }
        q->by_trace = 1;
    }
    if (!q->service.ptr && !q->by_trace) {
        cn_http_reply_json_error(req, 400, "service", "service (or trace) is required");
        goto fail;
    }
    if ((rc = param(req, "limit", v, sizeof(v))) < 0)
        goto fail;
    if (rc == 1) {
        uint64_t n;
        if (cn_slice_to_u64(cn_slice_of(v), &n) != 0 || n < 1 || n > CN_RCA_MAX_SUSPECTS) {
            cn_http_reply_json_error(req, 400, "limit", "limit must be a number from 1 to 50");
            goto fail;
        }
        q->limit = (size_t)n;
    }
    /* The window. */
    int sg, eg;
    uint64_t to = now_ns(), from = 0;
    if (time_param(req, "end", &to, &eg) < 0 || time_param(req, "start", &from, &sg) < 0)
        goto fail;
    if (q->by_trace && (sg || eg)) {
        cn_http_reply_json_error(req, 400, sg ? "start" : "end",
                                 "start and end do not apply to a trace (its own extent is the "
                                 "window)");
        goto fail;
    }
    if (!sg)
        from = to > CN_RCA_DEFAULT_WINDOW_NS ? to - CN_RCA_DEFAULT_WINDOW_NS : 0;
    if (!q->by_trace && to <= from) {
        cn_http_reply_json_error(req, 400, "start", "start must be before end");
        goto fail;
    }
    if (!q->by_trace && to - from > ql.max_range_ns) {
        char msg[128];
        snprintf(msg, sizeof(msg), "time range wider than query.max_range (%llus)",
                 (unsigned long long)(ql.max_range_ns / 1000000000ull));
        cn_http_reply_json_error(req, 400, "start", msg);
        goto fail;
    }
    q->from_ns = from;
    q->to_ns = to;
    /* The baseline: both bounds or neither. */
    int bsg, beg;
    uint64_t bfrom = 0, bto = 0;
    if (time_param(req, "baseline_start", &bfrom, &bsg) < 0 ||
        time_param(req, "baseline_end", &bto, &beg) < 0)
        goto fail;
    if (bsg != beg) {
        cn_http_reply_json_error(req, 400, bsg ? "baseline_end" : "baseline_start",
                                 "baseline_start and baseline_end go together");
        goto fail;
    }
    if (bsg) {
        if (bto <= bfrom) {
            cn_http_reply_json_error(req, 400, "baseline_start",
                                     "baseline_start must be before baseline_end");
            goto fail;
        }
        if (bto - bfrom > ql.max_range_ns) {
            cn_http_reply_json_error(req, 400, "baseline_start",
                                     "baseline range wider than query.max_range");
            goto fail;
        }
        q->base_from_ns = bfrom;
        q->base_to_ns = bto;
    }
    j->req = req;
    if (cn_query_submit(req->worker->loop, rjob_work, rjob_done, j) != 0) {
        cn_http_reply_json_error(req, 503, NULL, "cannot start the analysis");
        goto fail;
    }
    req->data = j;
    req->abort_cb = rjob_abort;
    return;
fail:
    rjob_free(j);
}

int cn_api_rca_routes(struct cn_up *up, struct cn_router *r)
{
    return cn_router_add(r, CN_M(HTTP_GET), "/api/v1/rca", h_rca, up) < 0 ? -1 : 0;
}
