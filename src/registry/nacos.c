/* Nacos v1 HTTP API: the wire format of Nacos 1.x/2.x servers as their clients read it.
 * Errors: 400 with "caused: MESSAGE;" naming the parameter, as Nacos' exception handler
 * answers; never a crash. */
#include "registry/nacos.h"

#include "base/log.h"
#include "http/server.h"
#include "registry/util.h"

#include <jansson.h>
#include <stdarg.h>
#include <time.h>
#include <unistd.h>

#define TEXT "text/plain;charset=UTF-8"
#define JSON "application/json;charset=UTF-8"
/* Listener hold time: the client's Long-Pulling-Timeout minus this margin, so the answer
 * reaches it before its own timer fires; at least NACOS_MIN_HOLD_MS (both as Nacos). */
#define NACOS_HOLD_MARGIN_MS 500
#define NACOS_MIN_HOLD_MS    10000
#define NACOS_TICK_MS        100
#define NACOS_MAX_TOKENS     4096
/* An instance list answer: at most LIST_BUF_MAX bytes; a worker keeps a buffer of up to
 * LIST_BUF_KEEP bytes for the next one. */
#define LIST_BUF_MAX  (64u << 20)
#define LIST_BUF_KEEP (256u << 10)

struct cn_nacos_token {
    char token[33];
    uint64_t expires_ms;
    char user[64];
};

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static char *reg_strdup_slice(struct cn_slice s)
{
    char *p = malloc(s.len + 1);
    if (p) {
        if (s.len)
            memcpy(p, s.ptr, s.len);
        p[s.len] = '\0';
    }
    return p;
}

/* ---- replies ----------------------------------------------------------------------------- */

static void reply_text(struct cn_http_req *req, int status, const char *text)
{
    cn_http_reply(req, status, TEXT, text, strlen(text), NULL, 0);
}

static void reply_json(struct cn_http_req *req, const char *body, size_t len)
{
    cn_http_reply(req, 200, JSON, body, len, NULL, 0);
}

/* 400 "caused: MESSAGE;" as Nacos' ResponseExceptionHandler writes it. */
static void bad(struct cn_http_req *req, int status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void bad(struct cn_http_req *req, int status, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    char body[600];
    int n = snprintf(body, sizeof(body), "caused: %s;", msg);
    cn_http_reply(req, status, TEXT, body, (size_t)CN_MIN(n, (int)sizeof(body) - 1), NULL, 0);
}

static void reg_fail(struct cn_http_req *req, int rc, const struct cn_reg_error *e)
{
    int status = rc == CN_EIO || rc == CN_ENOMEM ? 500 : rc == CN_ENOENT ? 404 : 400;
    bad(req, status, "%s", e->message[0] ? e->message : cn_strerror(rc));
}

/* The answer to a naming write: "ok", or the registry's error. With missing_400, an unknown
 * instance is Nacos' 400 "instance not exist" (an update) rather than reg_fail's 404. */
static void reply_write(struct cn_http_req *req, int rc, const struct cn_reg_error *e,
                        int missing_400)
{
    if (rc == CN_ENOENT && missing_400)
        bad(req, 400, "instance not exist: %s", e->message);
    else if (rc)
        reg_fail(req, rc, e);
    else
        reply_text(req, 200, "ok");
}

/* The answer to a service write: "ok", or 500 (store) / 400 with the registry's message. */
static void reply_service_write(struct cn_http_req *req, int rc, const struct cn_reg_error *e)
{
    if (rc)
        bad(req, rc == CN_EIO ? 500 : 400, "%s", e->message);
    else
        reply_text(req, 200, "ok");
}

/* b as a JSON 200, or 500 "TOO_LARGE" when building it failed (rc != 0). */
static void reply_built(struct cn_http_req *req, int rc, const struct cn_buf *b,
                        const char *too_large)
{
    if (rc)
        bad(req, 500, "%s", too_large);
    else
        reply_json(req, b->ptr, b->len);
}

/* ---- one request ------------------------------------------------------------------------- */

/* A request's parameters: query string, then a form body. */
struct params {
    struct cn_form f;
};

/* What a handler gets: the request with its parameters parsed and the caller authorized
 * (see nacos_entry). p is released after the handler returns unless it set kept (a write
 * job took p over). */
struct call {
    struct cn_nacos *n;
    struct cn_http_req *req;
    struct params p;
    char user[64]; /* the login user when authentication named one; else "" */
    int kept;
};

/* Who made a change, for the history: the login user, else the peer's IP. */
static const char *call_who(const struct call *c)
{
    return c->user[0] ? c->user : cn_http_req_peer_ip(c->req);
}

static int params_parse(struct cn_http_req *req, struct params *p)
{
    cn_form_init(&p->f, req->query.len + req->body.len + 16);
    int rc = cn_form_parse(&p->f, req->query);
    if (rc == 0 && req->body.len) {
        const struct cn_slice *ct = cn_http_req_header(req, "Content-Type");
        /* Nacos clients send forms; a body of another type carries no parameters. */
        if (!ct ||
            (ct->len >= 33 && strncasecmp(ct->ptr, "application/x-www-form-urlencoded", 33) == 0))
            rc = cn_form_parse(&p->f, cn_buf_slice(&req->body));
    }
    if (rc) {
        bad(req, 400,
            rc == CN_ELIMIT ? "too many parameters (max %d)"
                            : "malformed percent-encoding in the parameters",
            CN_FORM_MAX_PARAMS);
        cn_form_release(&p->f);
        return rc;
    }
    return 0;
}

/* 1 with the value in *v when name is present and not empty. */
static int has(const struct call *c, const char *name, struct cn_slice *v)
{
    return cn_form_get(&c->p.f, name, v) && v->len;
}

static struct cn_slice opt(const struct call *c, const char *name, const char *def)
{
    struct cn_slice v;
    return has(c, name, &v) ? v : cn_slice_of(def);
}

/* A required, non-blank parameter; replies 400 and returns -1 when absent. */
static int req_param(struct call *c, const char *name, struct cn_slice *out)
{
    if (cn_form_get(&c->p.f, name, out)) {
        size_t i = 0;
        while (i < out->len && (out->ptr[i] == ' ' || out->ptr[i] == '\t'))
            i++;
        if (i < out->len)
            return 0;
    }
    bad(c->req, 400, "Param '%s' is required.", name);
    return -1;
}

/* Booleans as clients send them; anything else is a 400 naming the parameter. */
static int parse_bool(struct cn_http_req *req, const char *name, struct cn_slice v, int *out)
{
    static const char *const yes[] = {"true", "on", "yes", "y", "t", "1"};
    static const char *const no[] = {"false", "off", "no", "n", "f", "0"};
    for (size_t i = 0; i < CN_ARRAY_LEN(yes); i++) {
        if (cn_slice_case_eq(v, cn_slice_of(yes[i])))
            return *out = 1, 0;
        if (cn_slice_case_eq(v, cn_slice_of(no[i])))
            return *out = 0, 0;
    }
    bad(req, 400, "Param '%s' is illegal: '%.*s' is not true or false.", name,
        (int)CN_MIN(v.len, 64), v.ptr);
    return -1;
}

static int parse_u64(struct cn_http_req *req, const char *name, struct cn_slice v, uint64_t max,
                     uint64_t *out)
{
    if (cn_slice_to_u64(v, out) != 0 || *out > max) {
        bad(req, 400, "Param '%s' is illegal: '%.*s' is not a number in 0..%llu.", name,
            (int)CN_MIN(v.len, 64), v.ptr, (unsigned long long)max);
        return -1;
    }
    return 0;
}

/* v as strtod reads it when v is [digits][.digits] with 1 to 15 digits in all (what clients
 * send: "1", "1.0", "0.5"): the digits as an integer m < 2^53 over 10^k (k <= 15), both exact
 * doubles, so the one division rounds as strtod does. 0, or -1 for any other shape. */
static int plain_decimal(struct cn_slice v, double *out)
{
    static const double pow10[] = {1e0, 1e1, 1e2,  1e3,  1e4,  1e5,  1e6,  1e7,
                                   1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15};
    uint64_t m = 0;
    size_t digits = 0, frac = 0;
    int dot = 0;
    for (size_t i = 0; i < v.len; i++) {
        char c = v.ptr[i];
        if (c == '.' && !dot) {
            dot = 1;
        } else if (c >= '0' && c <= '9' && digits < 15) {
            m = m * 10 + (uint64_t)(c - '0');
            digits++;
            frac += (size_t)dot;
        } else {
            return -1;
        }
    }
    if (!digits)
        return -1;
    *out = (double)m / pow10[frac];
    return 0;
}

static int parse_double(struct cn_http_req *req, const char *name, struct cn_slice v, double *out)
{
    char t[64];
    char *end = NULL;
    if (v.len == 0 || v.len >= sizeof(t))
        goto fail;
    if (plain_decimal(v, out) != 0) {
        memcpy(t, v.ptr, v.len);
        t[v.len] = '\0';
        *out = strtod(t, &end);
        if (*end)
            goto fail;
    }
    if (*out != *out || *out > 1e9 || *out < -1e9)
        goto fail;
    return 0;
fail:
    bad(req, 400, "Param '%s' is illegal: '%.*s' is not a number.", name, (int)CN_MIN(v.len, 64),
        v.ptr);
    return -1;
}

/* Optional parameters: *out is left alone when name is absent or empty; a bad value replies
 * 400 and returns -1. */
static int opt_bool(struct call *c, const char *name, int *out)
{
    struct cn_slice v;
    return has(c, name, &v) ? parse_bool(c->req, name, v, out) : 0;
}

static int opt_u64(struct call *c, const char *name, uint64_t max, uint64_t *out)
{
    struct cn_slice v;
    return has(c, name, &v) ? parse_u64(c->req, name, v, max, out) : 0;
}

static int opt_double(struct call *c, const char *name, double *out)
{
    struct cn_slice v;
    return has(c, name, &v) ? parse_double(c->req, name, v, out) : 0;
}

/* A required number in 0..max. */
static int req_u64(struct call *c, const char *name, uint64_t max, uint64_t *out)
{
    struct cn_slice v;
    return req_param(c, name, &v) ? -1 : parse_u64(c->req, name, v, max, out);
}

/* serviceName ("svc" or "group@@svc") and groupName into group and service. */
static int service_param(struct call *c, struct cn_slice *group, struct cn_slice *service)
{
    struct cn_slice s;
    if (req_param(c, "serviceName", &s))
        return -1;
    const char *at = NULL;
    for (size_t i = 0; i + 1 < s.len; i++)
        if (s.ptr[i] == '@' && s.ptr[i + 1] == '@') {
            at = s.ptr + i;
            break;
        }
    if (at) {
        *group = (struct cn_slice){s.ptr, (size_t)(at - s.ptr)};
        *service = (struct cn_slice){at + 2, s.len - group->len - 2};
    } else {
        *group = opt(c, "groupName", CN_REG_DEFAULT_GROUP);
        *service = s;
    }
    if (group->len == 0 || cn_reg_check_name(*service) != 0 || cn_reg_check_name(*group) != 0) {
        bad(c->req, 400,
            "Param 'serviceName' is illegal, it should be format as 'groupName@@serviceName'");
        return -1;
    }
    return 0;
}

/* The namespace parameter (namespaceId or tenant), checked. */
static int ns_param(struct call *c, const char *name, struct cn_slice *out)
{
    *out = opt(c, name, "");
    if (out->len && cn_reg_check_name(*out) != 0) {
        bad(c->req, 400, "Param '%s' is illegal", name);
        return -1;
    }
    return 0;
}

/* namespaceId and serviceName (with groupName). */
static int ns_service(struct call *c, struct cn_slice *ns, struct cn_slice *group,
                      struct cn_slice *service)
{
    return ns_param(c, "namespaceId", ns) || service_param(c, group, service) ? -1 : 0;
}

/* An instance's address in the parameters: ip and port. */
static int addr_params(struct call *c, struct cn_slice *ip, uint16_t *port)
{
    uint64_t v;
    if (req_param(c, "ip", ip) || req_u64(c, "port", 65535, &v))
        return -1;
    *port = (uint16_t)v;
    return 0;
}

/* ---- auth --------------------------------------------------------------------------------- */

static int slice_eq_str(struct cn_slice a, const char *b)
{
    return b && cn_slice_eq(a, cn_slice_of(b));
}

/* 1 when the request may go on (auth off, a valid token, or valid credentials); else replies
 * 403 and returns 0. c->user receives the user name when authenticated. */
static int authorized(struct call *c)
{
    struct cn_nacos *n = c->n;
    if (!n->opts.auth)
        return 1;
    struct cn_slice tok, user, pass;
    if (cn_form_get(&c->p.f, "accessToken", &tok) && tok.len == 32) {
        uint64_t now = now_ms();
        uv_mutex_lock(&n->tlock);
        for (size_t i = 0; i < n->num_tokens; i++)
            if (n->tokens[i].expires_ms > now && memcmp(n->tokens[i].token, tok.ptr, 32) == 0) {
                snprintf(c->user, sizeof(c->user), "%s", n->tokens[i].user);
                uv_mutex_unlock(&n->tlock);
                return 1;
            }
        uv_mutex_unlock(&n->tlock);
    }
    if (cn_form_get(&c->p.f, "username", &user) && cn_form_get(&c->p.f, "password", &pass) &&
        slice_eq_str(user, n->opts.username) && slice_eq_str(pass, n->opts.password)) {
        snprintf(c->user, sizeof(c->user), "%s", n->opts.username);
        return 1;
    }
    reply_text(c->req, 403, "user not found!");
    return 0;
}

/* A new token for the configured user into t; 0, or -1 without randomness. */
static int token_new(struct cn_nacos *n, struct cn_nacos_token *t)
{
    unsigned char rnd[16];
    static const char hex[] = "0123456789abcdef";
    if (uv_random(NULL, NULL, rnd, sizeof(rnd), 0, NULL) != 0)
        return -1;
    for (int i = 0; i < 16; i++) {
        t->token[2 * i] = hex[rnd[i] >> 4];
        t->token[2 * i + 1] = hex[rnd[i] & 15];
    }
    t->token[32] = '\0';
    uint64_t now = now_ms();
    t->expires_ms = now + n->opts.token_ttl_ms;
    snprintf(t->user, sizeof(t->user), "%s", n->opts.username);
    uv_mutex_lock(&n->tlock);
    /* Expired tokens go first; past the cap the oldest is replaced. */
    size_t keep = 0;
    for (size_t i = 0; i < n->num_tokens; i++)
        if (n->tokens[i].expires_ms > now)
            n->tokens[keep++] = n->tokens[i];
    n->num_tokens = keep;
    if (n->num_tokens == NACOS_MAX_TOKENS) {
        memmove(n->tokens, n->tokens + 1, (NACOS_MAX_TOKENS - 1) * sizeof(*t));
        n->num_tokens--;
    }
    n->tokens[n->num_tokens++] = *t;
    uv_mutex_unlock(&n->tlock);
    return 0;
}

static void h_login(struct call *c)
{
    struct cn_nacos *n = c->n;
    struct cn_slice user, pass;
    struct cn_nacos_token t;
    if (!n->opts.auth) {
        bad(c->req, 400, "authentication is off (registry.auth)");
    } else if (req_param(c, "username", &user) || req_param(c, "password", &pass)) {
        return;
    } else if (!slice_eq_str(user, n->opts.username) || !slice_eq_str(pass, n->opts.password)) {
        reply_text(c->req, 403, "unknown user!");
    } else if (token_new(n, &t) != 0) {
        bad(c->req, 500, "no randomness");
    } else {
        char body[160];
        int len = snprintf(body, sizeof(body),
                           "{\"accessToken\":\"%s\",\"tokenTtl\":%llu,\"globalAdmin\":true}",
                           t.token, (unsigned long long)(n->opts.token_ttl_ms / 1000));
        reply_json(c->req, body, (size_t)len);
    }
}

/* ---- naming ------------------------------------------------------------------------------- */

/* Reads an instance from the parameters (register, update). Replies 400 and returns -1 on a
 * bad one. */
static int instance_params(struct call *c, struct cn_reg_instance *in)
{
    memset(in, 0, sizeof(*in));
    struct cn_slice v;
    if (ns_service(c, &in->ns, &in->group, &in->service) || addr_params(c, &in->ip, &in->port))
        return -1;
    in->cluster = opt(c, "clusterName", CN_REG_DEFAULT_CLUSTER);
    in->weight = 1.0;
    if (opt_double(c, "weight", &in->weight))
        return -1;
    in->enabled = in->healthy = in->ephemeral = 1;
    /* "enabled" wins over "enable" (the Node client's spelling), as in Nacos. */
    if (has(c, "enabled", &v) ? parse_bool(c->req, "enabled", v, &in->enabled)
                              : opt_bool(c, "enable", &in->enabled))
        return -1;
    if (opt_bool(c, "healthy", &in->healthy) || opt_bool(c, "ephemeral", &in->ephemeral))
        return -1;
    in->metadata = opt(c, "metadata", "");
    return 0;
}

/* ---- writes off the loop ---------------------------------------------------------------------
 * A write that reaches the store (a configuration change, a persistent instance) waits for an
 * fsync. It runs on libuv's thread pool so the worker's loop keeps serving other requests;
 * the answer is sent from the loop when it is done. */

enum job_kind { JOB_PUBLISH, JOB_CFG_DELETE, JOB_REGISTER, JOB_UPDATE, JOB_DEREGISTER };

struct cn_nacos_job {
    uv_work_t work;
    struct cn_nacos *n;
    struct cn_http_req *req;
    int aborted; /* the connection went away: answer nobody */
    enum job_kind kind;
    struct params p; /* owns the decoded bytes the slices below point into */
    struct cn_reg_cfg_key k;
    struct cn_slice content, type;
    struct cn_reg_put put; /* JOB_REGISTER, JOB_UPDATE: run in a batch (struct put_batch) */
    struct cn_slice svc_group, svc_name, cluster, ip; /* JOB_DEREGISTER (and ns in k.ns) */
    uint16_t port;
    struct cn_nacos_job *next; /* in its worker's waiting list or its batch */
    char who[96];
    uint64_t now;
    int rc;
    struct cn_reg_error e;
};

static void job_work(uv_work_t *w)
{
    struct cn_nacos_job *j = w->data;
    struct cn_reg *reg = j->n->reg;
    switch (j->kind) {
    case JOB_PUBLISH:
        j->rc = cn_reg_cfg_publish(reg, &j->k, j->content, j->type, j->who, j->now, NULL, &j->e);
        break;
    case JOB_CFG_DELETE:
        j->rc = cn_reg_cfg_delete(reg, &j->k, j->who, j->now, &j->e);
        break;
    case JOB_DEREGISTER:
        j->rc = cn_reg_deregister(reg, j->k.ns, j->svc_group, j->svc_name, j->cluster, j->ip,
                                  j->port, 0, j->now, &j->e);
        break;
    case JOB_REGISTER:
    case JOB_UPDATE:
        break; /* in batches (put_batch_work) */
    }
}

/* Answers j (unless its connection went away) and frees it. */
static void job_finish(struct cn_nacos_job *j, int status)
{
    if (!j->aborted) {
        struct cn_http_req *req = j->req;
        req->abort_cb = NULL;
        if (status != 0)
            bad(req, 500, "the write was cancelled");
        else if (j->kind == JOB_REGISTER || j->kind == JOB_UPDATE)
            reply_write(req, j->put.rc, &j->put.err, j->kind == JOB_UPDATE);
        else if (j->kind == JOB_DEREGISTER)
            reply_write(req, j->rc, &j->e, 0);
        else if (j->rc)
            reg_fail(req, j->rc, &j->e);
        else
            reply_text(req, 200, "true"); /* a configuration write */
    }
    cn_form_release(&j->p.f);
    free(j);
}

static void job_done(uv_work_t *w, int status)
{
    job_finish(w->data, status);
}

static void on_job_abort(struct cn_http_req *req)
{
    struct cn_nacos_job *j = req->data;
    j->aborted = 1;
}

/* A job of kind for c, taking over its parameters (c->kept); NULL when out of memory. */
static struct cn_nacos_job *job_new(struct call *c, enum job_kind kind)
{
    struct cn_nacos_job *j = calloc(1, sizeof(*j));
    if (j) {
        j->n = c->n;
        j->kind = kind;
        j->p = c->p;
        c->kept = 1;
        j->now = now_ms();
    }
    return j;
}

/* Queues j. On failure answers 500 itself. */
static void job_start(struct cn_http_req *req, struct cn_nacos_job *j)
{
    j->req = req;
    j->work.data = j;
    req->data = j;
    req->abort_cb = on_job_abort;
    if (uv_queue_work(req->worker->loop, &j->work, job_work, job_done) != 0) {
        req->abort_cb = NULL;
        bad(req, 500, "cannot queue the write");
        cn_form_release(&j->p.f);
        free(j);
    }
}

/* Persistent registers and updates wait for the store: a worker runs them in batches, one
 * at a time, each batch holding every one that arrived while the one before ran, so that they
 * share one sync to disk (cn_reg_put_batch). */
struct put_batch {
    uv_work_t work;
    struct cn_nacos_worker *w;
    struct cn_nacos_job *jobs;
    size_t num;
};

static void put_batch_work(uv_work_t *work)
{
    struct put_batch *b = work->data;
    struct cn_reg_put *one[1] = {NULL}, **puts = b->num > 1 ? calloc(b->num, sizeof(*puts)) : one;
    size_t i = 0;
    for (struct cn_nacos_job *j = b->jobs; j; j = j->next) {
        if (puts) {
            puts[i++] = &j->put;
        } else { /* out of memory: one at a time */
            struct cn_reg_put *p = &j->put;
            cn_reg_put_batch(b->w->n->reg, &p, 1, j->now);
        }
    }
    if (puts)
        cn_reg_put_batch(b->w->n->reg, puts, i, b->jobs->now);
    if (puts != one)
        free(puts);
}

static void put_batch_start(struct cn_nacos_worker *w, uv_loop_t *loop);

static void put_batch_done(uv_work_t *work, int status)
{
    struct put_batch *b = work->data;
    struct cn_nacos_worker *w = b->w;
    for (struct cn_nacos_job *j = b->jobs, *next; j; j = next) {
        next = j->next;
        job_finish(j, status);
    }
    w->put_running = 0;
    if (w->put_waiting)
        put_batch_start(w, work->loop);
    free(b);
}

/* Starts a batch of the worker's waiting jobs; on failure answers them 500. */
static void put_batch_start(struct cn_nacos_worker *w, uv_loop_t *loop)
{
    struct put_batch *b = calloc(1, sizeof(*b));
    struct cn_nacos_job *jobs = w->put_waiting;
    w->put_waiting = w->put_last = NULL;
    if (b) {
        b->w = w;
        b->jobs = jobs;
        for (struct cn_nacos_job *j = jobs; j; j = j->next)
            b->num++;
        b->work.data = b;
        if (uv_queue_work(loop, &b->work, put_batch_work, put_batch_done) == 0) {
            w->put_running = 1;
            return;
        }
        free(b);
    }
    for (struct cn_nacos_job *j = jobs, *next; j; j = next) {
        next = j->next;
        if (!j->aborted) {
            j->req->abort_cb = NULL;
            bad(j->req, 500, "cannot queue the write");
        }
        cn_form_release(&j->p.f);
        free(j);
    }
}

/* Queues a persistent register or update (j->put set) on its request's worker. */
static void put_job_start(struct cn_http_req *req, struct cn_nacos_job *j)
{
    struct cn_nacos_worker *w = &j->n->workers[req->worker->id];
    j->req = req;
    req->data = j;
    req->abort_cb = on_job_abort;
    if (w->put_last)
        w->put_last->next = j;
    else
        w->put_waiting = j;
    w->put_last = j;
    if (!w->put_running)
        put_batch_start(w, req->worker->loop);
}

/* GET /nacos/v1/ns/instance: one instance as JSON. */
static void instance_get(struct call *c)
{
    struct cn_http_req *req = c->req;
    struct cn_slice ip, ns, group, service;
    uint16_t port;
    if (ns_service(c, &ns, &group, &service) || addr_params(c, &ip, &port))
        return;
    struct cn_slice cluster = opt(c, "cluster", "");
    if (!cluster.len)
        cluster = opt(c, "clusterName", CN_REG_DEFAULT_CLUSTER);
    struct cn_reg_inst_view *iv;
    long num = cn_reg_instances(c->n->reg, ns, group, service, &iv);
    long hit = -1;
    for (long i = 0; i < num && hit < 0; i++)
        if (iv[i].port == port && cn_slice_eq(cn_slice_of(iv[i].ip), ip) &&
            cn_slice_eq(cn_slice_of(iv[i].cluster), cluster))
            hit = i;
    if (hit < 0) {
        bad(req, 404, "no matched ip found!");
    } else {
        struct cn_buf b;
        cn_buf_init(&b, 1u << 20);
        struct cn_reg_inst_view *x = &iv[hit];
        int rc = cn_buf_puts(&b, "{\"service\":\"");
        rc |= cn_buf_append_slice(&b, group) | cn_buf_puts(&b, "@@") |
              cn_buf_append_slice(&b, service);
        rc |= cn_buf_puts(&b, "\",\"ip\":");
        rc |= cn_reg_json_str(&b, x->ip, strlen(x->ip));
        rc |= cn_buf_printf(&b, ",\"port\":%u,\"clusterName\":", x->port);
        rc |= cn_reg_json_str(&b, x->cluster, strlen(x->cluster));
        rc |= cn_buf_puts(&b, ",\"weight\":");
        rc |= cn_reg_json_double(&b, x->weight);
        rc |= cn_buf_printf(&b, ",\"healthy\":%s,\"instanceId\":\"%s#%u#%s#",
                            x->healthy ? "true" : "false", x->ip, x->port, x->cluster);
        rc |= cn_buf_append_slice(&b, group) | cn_buf_puts(&b, "@@") |
              cn_buf_append_slice(&b, service);
        rc |= cn_buf_puts(&b, "\",\"metadata\":");
        rc |= cn_buf_puts(&b, x->metadata);
        rc |= cn_buf_puts(&b, "}");
        reply_built(req, rc, &b, "reply too large");
        cn_buf_release(&b);
    }
    cn_reg_instances_free(iv, num);
}

/* DELETE /nacos/v1/ns/instance: deregisters. A persistent instance's (as the client says:
 * ephemeral=false) waits for the store: off the loop. */
static void instance_delete(struct call *c)
{
    struct cn_slice ip, ns, group, service;
    uint16_t port;
    int eph = 1;
    if (ns_service(c, &ns, &group, &service) || addr_params(c, &ip, &port) ||
        opt_bool(c, "ephemeral", &eph))
        return;
    struct cn_nacos_job *j = eph ? NULL : job_new(c, JOB_DEREGISTER);
    if (j) {
        j->k.ns = ns;
        j->svc_group = group;
        j->svc_name = service;
        j->cluster = opt(c, "clusterName", CN_REG_DEFAULT_CLUSTER);
        j->ip = ip;
        j->port = port;
        job_start(c->req, j);
        return;
    }
    struct cn_reg_error e = {0};
    int rc = cn_reg_deregister(c->n->reg, ns, group, service,
                               opt(c, "clusterName", CN_REG_DEFAULT_CLUSTER), ip, port, eph,
                               now_ms(), &e);
    reply_write(c->req, rc, &e, 0);
}

/* POST (register) and PUT (update) /nacos/v1/ns/instance. A persistent instance is stored,
 * off the loop; an ephemeral one only in memory, answered at once. */
static void instance_put(struct call *c)
{
    struct cn_reg_instance in;
    int update = c->req->method == HTTP_PUT;
    if (instance_params(c, &in))
        return;
    if (!in.ephemeral) {
        struct cn_nacos_job *j = job_new(c, update ? JOB_UPDATE : JOB_REGISTER);
        if (j) {
            j->put.in = in;
            j->put.must_exist = update;
            put_job_start(c->req, j);
            return;
        }
    }
    struct cn_reg_error e = {0};
    int rc = update ? cn_reg_update(c->n->reg, &in, now_ms(), &e)
                    : cn_reg_register(c->n->reg, &in, now_ms(), &e);
    reply_write(c->req, rc, &e, 1);
}

static void h_instance(struct call *c)
{
    if (c->req->method == HTTP_GET)
        instance_get(c);
    else if (c->req->method == HTTP_DELETE)
        instance_delete(c);
    else
        instance_put(c);
}

/* ---- UDP push ---------------------------------------------------------------------------------
 */

struct cn_nacos_sub {
    char *ns, *group, *service, *clusters;
    char ip[64];
    uint16_t port;
    uint8_t dirty;
    uint64_t last_ms;
};

static void sub_release(struct cn_nacos_sub *s)
{
    free(s->ns);
    free(s->group);
    free(s->service);
    free(s->clusters);
}

/* A list query with udpPort: (re)subscribes the connection's peer address. The clientIP
 * parameter is not trusted: pushes never go to an address the request merely names. */
static void subscribe(struct cn_nacos *n, const struct cn_reg_query *q, const char *ip,
                      uint16_t port)
{
    struct cn_slice ns = cn_reg_ns(q->ns);
    uint64_t now = now_ms();
    uv_mutex_lock(&n->slock);
    for (size_t i = 0; i < n->num_subs; i++) {
        struct cn_nacos_sub *s = &n->subs[i];
        if (s->port == port && strcmp(s->ip, ip) == 0 &&
            cn_slice_eq(cn_slice_of(s->service), q->service) &&
            cn_slice_eq(cn_slice_of(s->group), q->group) &&
            cn_slice_eq(cn_slice_of(s->clusters), q->clusters) &&
            cn_slice_eq(cn_slice_of(s->ns), ns)) {
            s->last_ms = now;
            uv_mutex_unlock(&n->slock);
            return;
        }
    }
    if (n->num_subs < CN_NACOS_MAX_PUSH_SUBSCRIBERS && strlen(ip) < sizeof(n->subs[0].ip)) {
        struct cn_nacos_sub *s = &n->subs[n->num_subs];
        memset(s, 0, sizeof(*s));
        s->ns = reg_strdup_slice(ns);
        s->group = reg_strdup_slice(q->group);
        s->service = reg_strdup_slice(q->service);
        s->clusters = reg_strdup_slice(q->clusters);
        snprintf(s->ip, sizeof(s->ip), "%s", ip);
        s->port = port;
        s->last_ms = now;
        if (s->ns && s->group && s->service && s->clusters)
            n->num_subs++;
        else
            sub_release(s);
    }
    uv_mutex_unlock(&n->slock);
}

/* Under the registry's writer lock: marks the service's subscribers and wakes worker 0. */
static void on_svc_change(void *ctx, const char *ns, const char *group, const char *service)
{
    struct cn_nacos *n = ctx;
    int any = 0;
    uv_mutex_lock(&n->slock);
    for (size_t i = 0; i < n->num_subs; i++) {
        struct cn_nacos_sub *s = &n->subs[i];
        if (strcmp(s->service, service) == 0 && strcmp(s->group, group) == 0 &&
            strcmp(s->ns, ns) == 0)
            s->dirty = any = 1;
    }
    uv_mutex_unlock(&n->slock);
    if (!any)
        return;
    uv_mutex_lock(&n->wlock);
    if (n->nworkers > 0 && n->workers[0].open && atomic_exchange(&n->push_pending, 1) == 0)
        cn_mailbox_post(&n->workers[0].mb, &n->push_mail);
    uv_mutex_unlock(&n->wlock);
}

/* On worker 0: sends the changed lists to their subscribers; drops expired subscribers. */
static void on_push(struct cn_mail *m)
{
    struct cn_nacos *n = (struct cn_nacos *)((char *)m - offsetof(struct cn_nacos, push_mail));
    atomic_store(&n->push_pending, 0);
    uint64_t now = now_ms();
    struct cn_nacos_sub *due = NULL;
    size_t num_due = 0;
    uv_mutex_lock(&n->slock);
    size_t keep = 0;
    for (size_t i = 0; i < n->num_subs; i++) {
        struct cn_nacos_sub *s = &n->subs[i];
        if (now - s->last_ms > n->opts.push_expire_ms) {
            sub_release(s);
            continue;
        }
        if (s->dirty) {
            struct cn_nacos_sub *d = realloc(due, (num_due + 1) * sizeof(*d));
            if (d) {
                due = d;
                due[num_due] = *s;
                due[num_due].ns = strdup(s->ns);
                due[num_due].group = strdup(s->group);
                due[num_due].service = strdup(s->service);
                due[num_due].clusters = strdup(s->clusters);
                num_due++;
            }
            s->dirty = 0;
        }
        n->subs[keep++] = *s;
    }
    n->num_subs = keep;
    uv_mutex_unlock(&n->slock);
    struct cn_buf list, pkt;
    cn_buf_init(&list, CN_NACOS_MAX_PUSH_BYTES);
    cn_buf_init(&pkt, 2 * CN_NACOS_MAX_PUSH_BYTES);
    for (size_t i = 0; i < num_due; i++) {
        struct cn_nacos_sub *d = &due[i];
        cn_buf_reset(&list);
        cn_buf_reset(&pkt);
        struct cn_reg_query q = {cn_slice_of(d->ns), cn_slice_of(d->group), cn_slice_of(d->service),
                                 cn_slice_of(d->clusters), 0};
        struct sockaddr_in sa;
        if (d->ns && d->group && d->service && d->clusters &&
            cn_reg_list_json(n->reg, &q, now, &list) == 0 &&
            cn_buf_puts(&pkt, "{\"type\":\"dom\",\"data\":") == 0 &&
            cn_reg_json_str(&pkt, list.ptr, list.len) == 0 &&
            cn_buf_printf(&pkt, ",\"lastRefTime\":%llu}", (unsigned long long)now * 1000000u) ==
                0 &&
            pkt.len <= CN_NACOS_MAX_PUSH_BYTES && uv_ip4_addr(d->ip, d->port, &sa) == 0 &&
            sendto(n->udp_fd, pkt.ptr, pkt.len, MSG_DONTWAIT, (struct sockaddr *)&sa, sizeof(sa)) ==
                (ssize_t)pkt.len)
            atomic_fetch_add_explicit(&n->pushes, 1, memory_order_relaxed);
        sub_release(d);
    }
    free(due);
    cn_buf_release(&list);
    cn_buf_release(&pkt);
}

static void h_list(struct call *c)
{
    struct cn_nacos *n = c->n;
    struct cn_reg_query q = {0};
    uint64_t udp_port = 0;
    if (ns_service(c, &q.ns, &q.group, &q.service))
        return;
    q.clusters = opt(c, "clusters", "");
    if (opt_bool(c, "healthyOnly", &q.healthy_only) || opt_u64(c, "udpPort", 65535, &udp_port))
        return;
    if (udp_port && n->udp_fd >= 0)
        subscribe(n, &q, cn_http_req_peer_ip(c->req), (uint16_t)udp_port);
    /* The worker's answer buffer, kept between lists (the reply copies it out): a list
     * costs no allocation. One grown past LIST_BUF_KEEP bytes is freed after its answer. */
    struct cn_buf *b = &n->workers[c->req->worker->id].list_buf;
    cn_buf_reset(b);
    reply_built(c->req, cn_reg_list_json(n->reg, &q, now_ms(), b), b, "instance list too large");
    if (b->cap > LIST_BUF_KEEP) {
        cn_buf_release(b);
        cn_buf_init(b, LIST_BUF_MAX);
    }
}

/* The instance a beat's JSON parameter carries into in; its metadata (re-serialised) into
 * meta. Replies 400 and returns -1 on a bad one. in's strings point into beat. */
static int beat_json(struct cn_http_req *req, json_t *beat, struct cn_reg_instance *in,
                     struct cn_buf *meta)
{
    if (!json_is_object(beat)) {
        bad(req, 400, "Param 'beat' is illegal: not a JSON object");
        return -1;
    }
    const char *ip = json_string_value(json_object_get(beat, "ip"));
    json_t *port = json_object_get(beat, "port");
    const char *cluster = json_string_value(json_object_get(beat, "cluster"));
    json_t *w = json_object_get(beat, "weight");
    json_t *m = json_object_get(beat, "metadata");
    if (!ip || !*ip) {
        bad(req, 400, "Param 'beat' is illegal: no ip");
        return -1;
    }
    if (!json_is_integer(port) || json_integer_value(port) < 1 ||
        json_integer_value(port) > 65535) {
        bad(req, 400, "Param 'beat' is illegal: port must be 1..65535");
        return -1;
    }
    in->ip = cn_slice_of(ip);
    in->port = (uint16_t)json_integer_value(port);
    if (cluster && *cluster)
        in->cluster = cn_slice_of(cluster);
    if (json_is_number(w))
        in->weight = json_number_value(w);
    if (json_is_object(m)) {
        char *t = json_dumps(m, JSON_COMPACT);
        int rc = t ? cn_buf_puts(meta, t) : CN_ENOMEM;
        free(t);
        if (rc) {
            bad(req, 400, "Param 'beat' is illegal: metadata too large");
            return -1;
        }
        in->metadata = cn_buf_slice(meta);
    }
    return 0;
}

/* The beat itself, once in holds the instance; beat_json tells whether it carries it. */
static void beat_reply(struct call *c, const struct cn_reg_instance *in, int carries)
{
    struct cn_reg_error e = {0};
    uint64_t interval = 0;
    int rc = cn_reg_beat(c->n->reg, in, carries, now_ms(), &interval, &e);
    char body[128];
    int len;
    if (rc && rc != CN_ENOENT) {
        reg_fail(c->req, rc, &e);
        return;
    }
    if (rc == CN_ENOENT)
        len = snprintf(body, sizeof(body), "{\"clientBeatInterval\":%llu,\"code\":20404}",
                       (unsigned long long)CN_REG_BEAT_INTERVAL_MS);
    else
        len = snprintf(body, sizeof(body),
                       "{\"clientBeatInterval\":%llu,\"code\":10200,\"lightBeatEnabled\":true}",
                       (unsigned long long)interval);
    reply_json(c->req, body, (size_t)len);
}

static void h_beat(struct call *c)
{
    struct cn_reg_instance in = {0};
    struct cn_slice v;
    if (ns_service(c, &in.ns, &in.group, &in.service))
        return;
    in.cluster = opt(c, "clusterName", CN_REG_DEFAULT_CLUSTER);
    in.weight = 1.0;
    in.enabled = in.healthy = in.ephemeral = 1;
    in.metadata = CN_SLICE_LIT("{}");
    if (!has(c, "beat", &v)) {
        if (addr_params(c, &in.ip, &in.port) == 0)
            beat_reply(c, &in, 0);
        return;
    }
    json_error_t je;
    json_t *beat = json_loadb(v.ptr, v.len, 0, &je);
    struct cn_buf meta;
    cn_buf_init(&meta, CN_REG_MAX_METADATA_BYTES + 64);
    if (beat_json(c->req, beat, &in, &meta) == 0)
        beat_reply(c, &in, 1);
    json_decref(beat);
    cn_buf_release(&meta);
}

static void h_service_list(struct call *c)
{
    struct cn_slice ns;
    uint64_t page_no, page_size;
    if (ns_param(c, "namespaceId", &ns) || req_u64(c, "pageNo", 1000000000, &page_no) ||
        req_u64(c, "pageSize", 100000, &page_size))
        return;
    struct cn_slice group = opt(c, "groupName", CN_REG_DEFAULT_GROUP);
    struct cn_buf names, b;
    cn_buf_init(&names, 64u << 20);
    cn_buf_init(&b, 64u << 20);
    uint64_t count = 0;
    int rc = cn_reg_service_names(c->n->reg, ns, group, page_no, page_size, &names, &count) != 0 ||
             cn_buf_printf(&b, "{\"count\":%llu,\"doms\":", (unsigned long long)count) != 0 ||
             cn_buf_append(&b, names.ptr, names.len) != 0 || cn_buf_puts(&b, "}") != 0;
    reply_built(c->req, rc, &b, "service list too large");
    cn_buf_release(&names);
    cn_buf_release(&b);
}

static void h_service(struct call *c)
{
    struct cn_reg *reg = c->n->reg;
    struct cn_reg_service s = {0};
    struct cn_reg_error e = {0};
    if (ns_service(c, &s.ns, &s.group, &s.service))
        return;
    if (c->req->method == HTTP_GET) {
        struct cn_buf b;
        cn_buf_init(&b, 1u << 20);
        int rc = cn_reg_service_json(reg, s.ns, s.group, s.service, &b);
        if (rc == CN_ENOENT)
            bad(c->req, 400, "service %.*s is not found!", (int)s.service.len, s.service.ptr);
        else
            reply_built(c->req, rc, &b, "reply too large");
        cn_buf_release(&b);
    } else if (c->req->method == HTTP_DELETE) {
        reply_service_write(c->req, cn_reg_service_delete(reg, s.ns, s.group, s.service, &e), &e);
    } else if (opt_double(c, "protectThreshold", &s.protect_threshold) == 0) {
        s.metadata = opt(c, "metadata", "");
        reply_service_write(c->req, cn_reg_service_put(reg, &s, c->req->method == HTTP_PUT, &e),
                            &e);
    }
}

static void h_metrics(struct call *c)
{
    struct cn_reg_stats st;
    cn_reg_stats(c->n->reg, &st);
    double load[3] = {0, 0, 0};
    uv_loadavg(load);
    char body[512];
    int len =
        snprintf(body, sizeof(body),
                 "{\"status\":\"UP\",\"serviceCount\":%llu,\"instanceCount\":%llu,"
                 "\"subscribeCount\":0,\"responsibleInstanceCount\":%llu,\"clientCount\":%llu,"
                 "\"configCount\":%llu,\"load\":%.2f,\"cpu\":0.0,\"mem\":0.0}",
                 (unsigned long long)st.services, (unsigned long long)st.instances,
                 (unsigned long long)st.instances, (unsigned long long)st.instances,
                 (unsigned long long)st.configs, load[0]);
    reply_json(c->req, body, (size_t)len);
}

/* ---- configuration -------------------------------------------------------------------------- */

static int cfg_key(struct call *c, struct cn_reg_cfg_key *k)
{
    if (req_param(c, "dataId", &k->data_id) || req_param(c, "group", &k->group) ||
        ns_param(c, "tenant", &k->ns))
        return -1;
    if (cn_reg_check_name(k->data_id) != 0) {
        bad(c->req, 400, "Param 'dataId' is illegal");
        return -1;
    }
    if (cn_reg_check_name(k->group) != 0) {
        bad(c->req, 400, "Param 'group' is illegal");
        return -1;
    }
    return 0;
}

static const char *content_type_of(const char *type)
{
    static const struct {
        const char *type, *ct;
    } map[] = {{"json", "application/json;charset=UTF-8"},
               {"xml", "application/xml;charset=UTF-8"},
               {"yaml", "text/yaml;charset=UTF-8"},
               {"html", "text/html;charset=UTF-8"},
               {"properties", "text/plain;charset=UTF-8"}};
    for (size_t i = 0; i < CN_ARRAY_LEN(map); i++)
        if (strcmp(map[i].type, type) == 0)
            return map[i].ct;
    return TEXT;
}

static void config_get(struct call *c, const struct cn_reg_cfg_key *k)
{
    struct cn_buf b;
    cn_buf_init(&b, SIZE_MAX);
    char md5[33], type[64];
    int rc = cn_reg_cfg_get(c->n->reg, k, &b, md5, type, NULL, NULL);
    if (rc == CN_ENOENT) {
        cn_http_reply(c->req, 404, TEXT, "config data not exist", 21, NULL, 0);
    } else if (rc) {
        bad(c->req, 500, "cannot read the configuration");
    } else {
        struct cn_http_header h[] = {
            {CN_SLICE_LIT("Content-MD5"), {md5, 32}},
            {CN_SLICE_LIT("Config-Type"), cn_slice_of(type)},
            {CN_SLICE_LIT("Cache-Control"), CN_SLICE_LIT("no-cache,no-store")},
        };
        cn_http_reply(c->req, 200, content_type_of(type), b.ptr ? b.ptr : "", b.len, h, 3);
    }
    cn_buf_release(&b);
}

static void h_configs(struct call *c)
{
    struct cn_reg_cfg_key k;
    struct cn_slice content = {"", 0};
    if (cfg_key(c, &k))
        return;
    if (c->req->method == HTTP_GET) {
        config_get(c, &k);
        return;
    }
    if (c->req->method != HTTP_DELETE && req_param(c, "content", &content))
        return;
    struct cn_nacos_job *j =
        job_new(c, c->req->method == HTTP_DELETE ? JOB_CFG_DELETE : JOB_PUBLISH);
    if (!j) {
        bad(c->req, 500, "out of memory");
        return;
    }
    j->k = k;
    j->content = content;
    j->type = opt(c, "type", "text");
    snprintf(j->who, sizeof(j->who), "%s", call_who(c));
    job_start(c->req, j);
}

/* ---- long polling ---------------------------------------------------------------------------- */

struct pkey {
    struct cn_reg_cfg_key k;
    struct cn_slice tenant; /* as the client sent it, echoed back */
    int has_tenant;
    char md5[33];
};

struct cn_nacos_parked {
    struct cn_nacos_parked *prev, *next;
    struct cn_http_req *req;
    struct cn_nacos_worker *w;
    uint64_t deadline; /* uv_now of the worker's loop */
    size_t num_keys;
    struct pkey *keys;
    char *text; /* the decoded Listening-Configs the keys point into */
};

/* Appends the URL-encoded changed keys ("dataId%02group[%02tenant]%01") into out. Returns the
 * number of changed keys, or a negative code. */
static long changed_keys(struct cn_reg *reg, const struct pkey *keys, size_t num,
                         struct cn_buf *out)
{
    long changed = 0;
    struct cn_buf raw;
    cn_buf_init(&raw, SIZE_MAX);
    for (size_t i = 0; i < num; i++) {
        char md5[33];
        cn_reg_cfg_md5(reg, &keys[i].k, md5);
        if (strcmp(md5, keys[i].md5) == 0)
            continue;
        changed++;
        cn_buf_append_slice(&raw, keys[i].k.data_id);
        cn_buf_append(&raw, "\x02", 1);
        cn_buf_append_slice(&raw, keys[i].k.group);
        if (keys[i].has_tenant && keys[i].tenant.len) {
            cn_buf_append(&raw, "\x02", 1);
            cn_buf_append_slice(&raw, keys[i].tenant);
        }
        cn_buf_append(&raw, "\x01", 1);
    }
    int rc = changed ? cn_url_encode_java(out, cn_buf_slice(&raw)) : 0;
    cn_buf_release(&raw);
    return rc ? rc : changed;
}

static void listener_reply(struct cn_http_req *req, const struct cn_buf *changed)
{
    static const struct cn_http_header h[] = {
        {CN_SLICE_LIT("Pragma"), CN_SLICE_LIT("no-cache")},
        {CN_SLICE_LIT("Expires"), CN_SLICE_LIT("0")},
        {CN_SLICE_LIT("Cache-Control"), CN_SLICE_LIT("no-cache,no-store")},
    };
    /* Java's println after the keys; nothing at all when nothing changed. */
    struct cn_buf b;
    cn_buf_init(&b, SIZE_MAX);
    if (changed->len) {
        cn_buf_append(&b, changed->ptr, changed->len);
        cn_buf_append(&b, "\n", 1);
    }
    cn_http_reply(req, 200, "text/html;charset=UTF-8", b.ptr ? b.ptr : "", b.len, h, 3);
    cn_buf_release(&b);
}

static void parked_unlink(struct cn_nacos_parked *pk)
{
    struct cn_nacos_worker *w = pk->w;
    if (pk->prev)
        pk->prev->next = pk->next;
    else
        w->parked = pk->next;
    if (pk->next)
        pk->next->prev = pk->prev;
    w->num_parked--;
    if (w->num_parked == 0 && w->open)
        uv_timer_stop(&w->timer);
}

static void parked_free(struct cn_nacos_parked *pk)
{
    free(pk->keys);
    free(pk->text);
    free(pk);
}

static void on_parked_abort(struct cn_http_req *req)
{
    struct cn_nacos_parked *pk = req->data;
    parked_unlink(pk);
    parked_free(pk);
}

/* Answers pk (changed keys or empty) and frees it. */
static void parked_answer(struct cn_nacos_parked *pk, int check)
{
    struct cn_buf out;
    cn_buf_init(&out, SIZE_MAX);
    if (check && changed_keys(pk->w->n->reg, pk->keys, pk->num_keys, &out) > 0)
        atomic_fetch_add_explicit(&pk->w->n->listeners_changed, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&pk->w->n->listeners_answered, 1, memory_order_relaxed);
    parked_unlink(pk);
    pk->req->abort_cb = NULL;
    listener_reply(pk->req, &out);
    cn_buf_release(&out);
    parked_free(pk);
}

static void on_tick(uv_timer_t *t)
{
    struct cn_nacos_worker *w = t->data;
    uint64_t now = uv_now(t->loop);
    struct cn_nacos_parked *pk = w->parked;
    while (pk) {
        struct cn_nacos_parked *next = pk->next;
        if (now >= pk->deadline)
            parked_answer(pk, 1);
        pk = next;
    }
}

static void on_wake(struct cn_mail *m)
{
    struct cn_nacos_worker *w =
        (struct cn_nacos_worker *)((char *)m - offsetof(struct cn_nacos_worker, mail));
    atomic_store(&w->pending, 0);
    w->wakes++;
    struct cn_buf out;
    cn_buf_init(&out, SIZE_MAX);
    struct cn_nacos_parked *pk = w->parked;
    while (pk) {
        struct cn_nacos_parked *next = pk->next;
        cn_buf_reset(&out);
        if (changed_keys(w->n->reg, pk->keys, pk->num_keys, &out) > 0) {
            atomic_fetch_add_explicit(&w->n->listeners_changed, 1, memory_order_relaxed);
            atomic_fetch_add_explicit(&w->n->listeners_answered, 1, memory_order_relaxed);
            parked_unlink(pk);
            pk->req->abort_cb = NULL;
            listener_reply(pk->req, &out);
            parked_free(pk);
        }
        pk = next;
    }
    cn_buf_release(&out);
}

/* Any thread: a configuration item changed. */
static void on_cfg_change(void *ctx, const struct cn_reg_cfg_key *k)
{
    (void)k; /* every worker checks its own listeners' keys */
    struct cn_nacos *n = ctx;
    uv_mutex_lock(&n->wlock);
    for (int i = 0; i < n->nworkers; i++) {
        struct cn_nacos_worker *w = &n->workers[i];
        if (w->open && atomic_exchange(&w->pending, 1) == 0)
            cn_mailbox_post(&w->mb, &w->mail);
    }
    uv_mutex_unlock(&n->wlock);
}

/* The parked listener for a listener request's Listening-Configs (not yet linked anywhere);
 * NULL after replying 400/500 on a bad one. */
static struct cn_nacos_parked *listen_keys(struct call *c)
{
    struct cn_http_req *req = c->req;
    struct cn_slice lc;
    if (!cn_form_get(&c->p.f, "Listening-Configs", &lc) || lc.len == 0) {
        bad(req, 400, "invalid probeModify");
        return NULL;
    }
    /* Nacos decodes the (already form-decoded) value once more; so do we. */
    struct cn_buf dec;
    cn_buf_init(&dec, lc.len + 1);
    if (cn_url_decode(&dec, lc, 1) != 0) {
        cn_buf_release(&dec);
        bad(req, 400, "invalid probeModify: malformed percent-encoding");
        return NULL;
    }
    size_t max = (size_t)c->n->opts.max_listen_keys;
    struct cn_listen_key *lk = calloc(max ? max : 1, sizeof(*lk));
    long num = lk ? cn_listen_parse(cn_buf_slice(&dec), lk, max) : CN_ENOMEM;
    struct cn_nacos_parked *pk = num > 0 ? calloc(1, sizeof(*pk)) : NULL;
    struct pkey *keys = pk ? calloc((size_t)num, sizeof(*keys)) : NULL;
    if (!keys) {
        if (num == CN_ELIMIT)
            bad(req, 400, "invalid protocol, too much listener (registry.max_listen_keys is %llu)",
                (unsigned long long)c->n->opts.max_listen_keys);
        else if (num == 0 || num == CN_ESYNTAX)
            bad(req, 400, "invalid probeModify");
        else
            bad(req, 500, "out of memory");
        free(pk), free(lk);
        cn_buf_release(&dec);
        return NULL;
    }
    pk->text = dec.ptr; /* the keys point into it; owned by pk from here */
    pk->keys = keys;
    pk->num_keys = (size_t)num;
    int bad_md5 = 0;
    for (long i = 0; i < num; i++) {
        keys[i].k.data_id = lk[i].data_id;
        keys[i].k.group = lk[i].group;
        keys[i].k.ns = lk[i].tenant; /* "" without one: the public namespace */
        keys[i].tenant = lk[i].tenant;
        keys[i].has_tenant = lk[i].has_tenant;
        if (lk[i].md5.len > 32)
            bad_md5 = 1;
        else
            snprintf(keys[i].md5, sizeof(keys[i].md5), "%.*s", (int)lk[i].md5.len, lk[i].md5.ptr);
    }
    free(lk);
    if (bad_md5) {
        parked_free(pk);
        bad(req, 400, "invalid probeModify: an md5 longer than 32 characters");
        return NULL;
    }
    return pk;
}

/* Parks pk on the request's worker for its hold time (from the client's timeout). */
static void park(struct cn_nacos_worker *w, struct cn_http_req *req, struct cn_nacos_parked *pk,
                 uint64_t timeout)
{
    uint64_t hold = timeout > NACOS_HOLD_MARGIN_MS ? timeout - NACOS_HOLD_MARGIN_MS : 0;
    hold = CN_MAX(hold, (uint64_t)NACOS_MIN_HOLD_MS);
    hold = CN_MIN(hold, w->n->opts.max_hold_ms);
    pk->req = req;
    pk->w = w;
    pk->deadline = uv_now(w->timer.loop) + hold;
    pk->next = w->parked;
    if (w->parked)
        w->parked->prev = pk;
    w->parked = pk;
    if (w->num_parked++ == 0)
        uv_timer_start(&w->timer, on_tick, NACOS_TICK_MS, NACOS_TICK_MS);
    req->data = pk;
    req->abort_cb = on_parked_abort;
}

static void h_listener(struct call *c)
{
    struct cn_nacos *n = c->n;
    struct cn_http_req *req = c->req;
    struct cn_nacos_parked *pk = listen_keys(c);
    if (!pk)
        return;
    struct cn_buf changed;
    cn_buf_init(&changed, SIZE_MAX);
    long nch = changed_keys(n->reg, pk->keys, pk->num_keys, &changed);
    const struct cn_slice *to = cn_http_req_header(req, "Long-Pulling-Timeout");
    const struct cn_slice *nohang = cn_http_req_header(req, "Long-Pulling-No-Hangup");
    uint64_t timeout = 0;
    struct cn_nacos_worker *w = &n->workers[req->worker->id];
    if (to && cn_slice_to_u64(*to, &timeout) != 0) {
        bad(req, 400, "header 'Long-Pulling-Timeout' is not a number of milliseconds");
    } else if (nch != 0 || !to || (nohang && cn_slice_eq(*nohang, CN_SLICE_LIT("true"))) ||
               !w->open || w->num_parked >= n->opts.max_parked) {
        /* Changed, or not a long poll, or no room: answer now. */
        atomic_fetch_add_explicit(&n->listeners_answered, 1, memory_order_relaxed);
        if (nch > 0)
            atomic_fetch_add_explicit(&n->listeners_changed, 1, memory_order_relaxed);
        listener_reply(req, &changed);
    } else {
        park(w, req, pk, timeout);
        pk = NULL;
    }
    cn_buf_release(&changed);
    if (pk)
        parked_free(pk);
}

/* ---- routes ---------------------------------------------------------------------------------- */

enum route_flags {
    R_PARAMS = 1 << 0, /* parse the parameters (query and form) first */
    R_AUTH = 1 << 1,   /* and require a login when authentication is on */
};

struct route {
    unsigned methods;
    const char *path;
    void (*fn)(struct call *c);
    unsigned flags;
};

#define ANY  (CN_M(HTTP_GET) | CN_M(HTTP_POST) | CN_M(HTTP_PUT) | CN_M(HTTP_DELETE))
#define GET  CN_M(HTTP_GET)
#define POST CN_M(HTTP_POST)

static const struct route routes[] = {
    {ANY, "/nacos/v1/ns/instance", h_instance, R_PARAMS | R_AUTH},
    {GET, "/nacos/v1/ns/instance/list", h_list, R_PARAMS | R_AUTH},
    {CN_M(HTTP_PUT) | POST, "/nacos/v1/ns/instance/beat", h_beat, R_PARAMS | R_AUTH},
    {GET, "/nacos/v1/ns/service/list", h_service_list, R_PARAMS | R_AUTH},
    {ANY, "/nacos/v1/ns/service", h_service, R_PARAMS | R_AUTH},
    {GET, "/nacos/v1/ns/operator/metrics", h_metrics, 0},
    {GET | POST | CN_M(HTTP_DELETE), "/nacos/v1/cs/configs", h_configs, R_PARAMS | R_AUTH},
    {POST, "/nacos/v1/cs/configs/listener", h_listener, R_PARAMS | R_AUTH},
    {POST, "/nacos/v1/auth/login", h_login, R_PARAMS},
    {POST, "/nacos/v1/auth/users/login", h_login, R_PARAMS},
};

#undef ANY
#undef GET
#undef POST

/* A route's handler context: the table entry and the object it serves. */
struct cn_nacos_bound {
    struct cn_nacos *n;
    const struct route *route;
};

/* Every Nacos request: the parameters parsed and the caller checked as the route asks, then
 * its handler, then the parameters released (unless the handler handed them to a job). */
static void nacos_entry(struct cn_http_req *req, void *ctx)
{
    const struct cn_nacos_bound *b = ctx;
    struct call c = {.n = b->n, .req = req};
    if ((b->route->flags & R_PARAMS) && params_parse(req, &c.p) != 0)
        return;
    if (!(b->route->flags & R_AUTH) || authorized(&c))
        b->route->fn(&c);
    if ((b->route->flags & R_PARAMS) && !c.kept)
        cn_form_release(&c.p.f);
}

/* ---- life ------------------------------------------------------------------------------------ */

struct cn_nacos *cn_nacos_new(struct cn_reg *reg, const struct cn_nacos_opts *opts, int nworkers)
{
    struct cn_nacos *n = calloc(1, sizeof(*n));
    if (!n)
        return NULL;
    n->reg = reg;
    n->opts = *opts;
    n->nworkers = nworkers;
    n->workers = calloc((size_t)(nworkers > 0 ? nworkers : 1), sizeof(*n->workers));
    n->tokens = calloc(NACOS_MAX_TOKENS, sizeof(*n->tokens));
    n->bound = calloc(CN_ARRAY_LEN(routes), sizeof(*n->bound));
    if (!n->workers || !n->tokens || !n->bound) {
        free(n->workers);
        free(n->tokens);
        free(n->bound);
        free(n);
        return NULL;
    }
    for (int i = 0; i < nworkers; i++) {
        n->workers[i].n = n;
        n->workers[i].id = i;
        n->workers[i].mail.cb = on_wake;
        cn_buf_init(&n->workers[i].list_buf, LIST_BUF_MAX);
    }
    uv_mutex_init(&n->wlock);
    uv_mutex_init(&n->tlock);
    uv_mutex_init(&n->slock);
    n->subs = calloc(CN_NACOS_MAX_PUSH_SUBSCRIBERS, sizeof(*n->subs));
    n->udp_fd = n->subs ? socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0) : -1;
    n->push_mail.cb = on_push;
    cn_reg_set_cfg_change_cb(reg, on_cfg_change, n);
    cn_reg_set_svc_change_cb(reg, on_svc_change, n);
    return n;
}

void cn_nacos_free(struct cn_nacos *n)
{
    if (!n)
        return;
    cn_reg_set_cfg_change_cb(n->reg, NULL, NULL);
    cn_reg_set_svc_change_cb(n->reg, NULL, NULL);
    for (size_t i = 0; i < n->num_subs; i++)
        sub_release(&n->subs[i]);
    free(n->subs);
    for (int i = 0; i < n->nworkers; i++)
        cn_buf_release(&n->workers[i].list_buf);
    if (n->udp_fd >= 0)
        close(n->udp_fd);
    uv_mutex_destroy(&n->slock);
    uv_mutex_destroy(&n->wlock);
    uv_mutex_destroy(&n->tlock);
    free(n->workers);
    free(n->tokens);
    free(n->bound);
    free(n);
}

int cn_nacos_worker_init(struct cn_nacos *n, int id, uv_loop_t *loop)
{
    struct cn_nacos_worker *w = &n->workers[id];
    int rc = cn_mailbox_init(&w->mb, loop);
    if (rc)
        return rc;
    uv_timer_init(loop, &w->timer);
    w->timer.data = w;
    uv_mutex_lock(&n->wlock);
    w->open = 1;
    uv_mutex_unlock(&n->wlock);
    return 0;
}

void cn_nacos_worker_stop(struct cn_nacos *n, int id)
{
    struct cn_nacos_worker *w = &n->workers[id];
    if (!w->open)
        return;
    while (w->parked)
        parked_answer(w->parked, 0);
    uv_mutex_lock(&n->wlock);
    w->open = 0;
    uv_mutex_unlock(&n->wlock);
    uv_close((uv_handle_t *)&w->timer, NULL);
    cn_mailbox_close(&w->mb);
    cn_buf_release(&w->list_buf);
}

int cn_nacos_routes(struct cn_nacos *n, struct cn_router *r)
{
    for (size_t i = 0; i < CN_ARRAY_LEN(routes); i++) {
        n->bound[i] = (struct cn_nacos_bound){n, &routes[i]};
        int rc = cn_router_add(r, routes[i].methods, routes[i].path, nacos_entry, &n->bound[i]);
        if (rc < 0)
            return rc;
    }
    return 0;
}
