#include "telemetry/receiver.h"

#include "base/log.h"
#include "base/utf8.h"
#include <jansson.h>
#include "http/json.h"
#include "telemetry/otlp-json.h"
#include "telemetry/otlp-pb.h"

struct ingest {
    struct cn_store_sub sub; /* first: the mailbox hands it back */
    struct cn_http_req *req; /* NULL once the connection went away */
    struct cn_receiver *rc;
    struct cn_receiver_worker *rw;
    int json;
};

static void reply_ok(struct cn_http_req *req, enum cn_body_kind kind, uint64_t rejected,
                     const char *msg)
{
    struct cn_buf out;
    cn_buf_init(&out, 1u << 16);
    if (kind == CN_BODY_ZIPKIN) {
        cn_http_reply(req, 202, NULL, NULL, 0, NULL, 0);
    } else if (kind == CN_BODY_TRACES_PB || kind == CN_BODY_LOGS_PB) {
        if (kind == CN_BODY_TRACES_PB)
            cn_otlp_pb_encode_trace_response(&out, rejected, msg);
        else
            cn_otlp_pb_encode_logs_response(&out, rejected, msg);
        cn_http_reply(req, 200, "application/x-protobuf", out.ptr, out.len, NULL, 0);
    } else {
        if (kind == CN_BODY_TRACES_JSON)
            cn_otlp_json_encode_trace_response(&out, rejected, msg);
        else
            cn_otlp_json_encode_logs_response(&out, rejected, msg);
        cn_http_reply(req, 200, "application/json", out.ptr, out.len, NULL, 0);
    }
    cn_buf_release(&out);
}

#define STATUS_MSG_MAX 300 /* bytes of an error message kept in a google.rpc.Status */

static int status_code(int status)
{
    return status == 429 || status == 507 ? 8  /* RESOURCE_EXHAUSTED */
           : status == 503                ? 14 /* UNAVAILABLE */
                                          : 3;                /* INVALID_ARGUMENT */
}

/* A google.rpc.Status (code, message) for an HTTP error status, in protobuf or in JSON (which
 * also keeps Cairn's usual "error" field). out has room for STATUS_BODY_MAX bytes. */
#define STATUS_BODY_MAX (32 + 2 * 6 * STATUS_MSG_MAX)
static size_t status_body(int status, const char *msg, int proto, char *out)
{
    size_t len = cn_utf8_cut(msg, strlen(msg), STATUS_MSG_MAX);
    size_t o = 0;
    if (proto) {
        out[o++] = 0x08; /* field 1, varint: code */
        out[o++] = (char)status_code(status);
        out[o++] = 0x12; /* field 2, bytes: message */
        size_t l = len;
        do {
            out[o++] = (char)((l & 0x7f) | (l > 0x7f ? 0x80 : 0));
            l >>= 7;
        } while (l);
        memcpy(out + o, msg, len);
        return o + len;
    }
    o += (size_t)sprintf(out, "{\"code\":%d,\"message\":", status_code(status));
    o += cn_json_str(out + o, msg, len);
    memcpy(out + o, ",\"error\":", 9);
    o += 9;
    o += cn_json_str(out + o, msg, len);
    out[o++] = '}';
    return o;
}

/* An error answer as OTLP/HTTP asks: the body is a google.rpc.Status in the request's
 * encoding, protobuf or JSON. 429, 503 and 507 carry Retry-After. */
static void reply_error(struct cn_receiver *rc, struct cn_http_req *req, enum cn_body_kind kind,
                        int status, const char *msg)
{
    char secs[16];
    int n = snprintf(secs, sizeof(secs), "%u", rc->retry_after_s);
    struct cn_http_header h = {CN_SLICE_LIT("Retry-After"), {secs, (size_t)n}};
    size_t nh = status == 429 || status == 503 || status == 507 ? 1 : 0;
    int proto = kind == CN_BODY_TRACES_PB || kind == CN_BODY_LOGS_PB;
    char body[STATUS_BODY_MAX];
    size_t len = status_body(status, msg, proto, body);
    cn_http_reply(req, status, proto ? "application/x-protobuf" : "application/json", body, len,
                  nh ? &h : NULL, nh);
}

static void ingest_abort(struct cn_http_req *req)
{
    struct ingest *in = req->data;
    in->req = NULL;
}

static void ingest_done(struct cn_mail *m)
{
    struct ingest *in = (struct ingest *)m;
    struct cn_receiver_worker *rw = in->rw;
    struct cn_http_req *req = in->req;
    if (req) {
        req->abort_cb = NULL;
        int st = in->sub.status;
        if (st == 0) {
            reply_ok(req, in->sub.kind, in->sub.batch.rejected,
                     in->sub.batch.rejected ? in->sub.batch.reject_msg : NULL);
        } else if (st == -ENOSPC || st == -EDQUOT) {
            reply_error(in->rc, req, in->sub.kind, 507,
                        "telemetry store: disk full, batch not stored");
        } else {
            reply_error(in->rc, req, in->sub.kind, 503,
                        "telemetry store: write failed, batch not stored");
        }
    }
    cn_store_sub_free(&in->sub);
    if (--rw->inflight == 0 && rw->on_idle)
        rw->on_idle(rw);
}

static void ingest(struct cn_http_req *req, struct cn_receiver *rc, enum cn_body_kind kind)
{
    atomic_fetch_add(&rc->requests, 1);
    struct ingest *in = calloc(1, sizeof(*in));
    if (!in) {
        reply_error(rc, req, kind, 503, "out of memory");
        return;
    }
    /* The body moves into the submission: the decoded slices point into it. */
    in->sub.body = (uint8_t *)req->body.ptr;
    in->sub.len = req->body.len;
    in->sub.kind = kind;
    req->body.ptr = NULL;
    req->body.len = req->body.cap = 0;
    cn_tel_batch_init(&in->sub.batch, rc->decode_budget);
    char err[512];
    int r = cn_tel_decode(&in->sub.batch, kind, in->sub.body ? in->sub.body : (const uint8_t *)"",
                          in->sub.len, &rc->limits, err, sizeof(err));
    if (r) {
        atomic_fetch_add(&rc->bad_requests, 1);
        cn_store_sub_free(&in->sub);
        reply_error(rc, req, kind, r == CN_ENOMEM ? 413 : 400,
                    r == CN_ENOMEM ? "batch too large for the decode budget" : err);
        return;
    }
    cn_store_limit_traces(rc->store, &in->sub.batch);
    const struct cn_tel_batch *b = &in->sub.batch;
    if (b->num_spans == 0 && b->num_logs == 0) {
        /* Nothing to store (empty, or every record refused). */
        cn_store_count_rejected(rc->store, kind == CN_BODY_LOGS_PB || kind == CN_BODY_LOGS_JSON,
                                b->rejected);
        reply_ok(req, kind, b->rejected, b->rejected ? b->reject_msg : NULL);
        cn_store_sub_free(&in->sub);
        return;
    }
    struct cn_receiver_worker *rw = &rc->workers[req->worker->id];
    in->req = req;
    in->rc = rc;
    in->rw = rw;
    in->sub.mail.cb = ingest_done;
    if (cn_store_submit(rc->store, &in->sub, &rw->mailbox) != 0) {
        atomic_fetch_add(&rc->refused, 1);
        cn_store_sub_free(&in->sub);
        reply_error(rc, req, kind, 429, "telemetry store is full, retry later");
        return;
    }
    rw->inflight++;
    req->data = in;
    req->abort_cb = ingest_abort;
}

/* The media type without parameters. */
static int media_is(const struct cn_http_req *req, const char *type)
{
    const struct cn_slice *ct = cn_http_req_header(req, "content-type");
    if (!ct)
        return 0;
    struct cn_slice t = *ct;
    const char *semi = memchr(t.ptr, ';', t.len);
    if (semi)
        t.len = (size_t)(semi - t.ptr);
    while (t.len && (t.ptr[t.len - 1] == ' ' || t.ptr[t.len - 1] == '\t'))
        t.len--;
    return cn_slice_case_eq(t, cn_slice_of(type));
}

static void otlp(struct cn_http_req *req, struct cn_receiver *rc, int logs)
{
    if (media_is(req, "application/x-protobuf")) {
        ingest(req, rc, logs ? CN_BODY_LOGS_PB : CN_BODY_TRACES_PB);
    } else if (media_is(req, "application/json")) {
        ingest(req, rc, logs ? CN_BODY_LOGS_JSON : CN_BODY_TRACES_JSON);
    } else {
        atomic_fetch_add(&rc->bad_requests, 1);
        cn_http_reply_json_error(req, 415, "Content-Type",
                                 "Content-Type must be application/x-protobuf or "
                                 "application/json");
    }
}

static void h_traces(struct cn_http_req *req, void *ctx)
{
    otlp(req, ctx, 0);
}

static void h_logs(struct cn_http_req *req, void *ctx)
{
    otlp(req, ctx, 1);
}

static void h_zipkin(struct cn_http_req *req, void *ctx)
{
    const struct cn_slice *ct = cn_http_req_header(req, "content-type");
    if (ct && !media_is(req, "application/json")) {
        cn_http_reply_json_error(req, 415, "Content-Type",
                                 "Content-Type must be application/json (Zipkin v2 JSON)");
        return;
    }
    ingest(req, ctx, CN_BODY_ZIPKIN);
}

size_t cn_receiver_error_body(void *ctx, const struct cn_http_req *req, int status,
                              const char *reason, char *out, size_t cap, const char **content_type)
{
    (void)ctx;
    int otlp_path = cn_slice_eq(req->path, CN_SLICE_LIT("/v1/traces")) ||
                    cn_slice_eq(req->path, CN_SLICE_LIT("/v1/logs"));
    int proto = media_is(req, "application/x-protobuf");
    if (cap < STATUS_BODY_MAX)
        return 0;
    if (otlp_path && (proto || media_is(req, "application/json"))) {
        *content_type = proto ? "application/x-protobuf" : "application/json";
        return status_body(status, reason, proto, out);
    }
    if (cn_slice_eq(req->path, CN_SLICE_LIT("/api/v2/spans"))) {
        *content_type = "application/json";
        return status_body(status, reason, 0, out);
    }
    return 0;
}

int cn_receiver_routes(struct cn_receiver *rc, struct cn_router *r)
{
    int rv;
    if ((rv = cn_router_add(r, CN_M(HTTP_POST), "/v1/traces", h_traces, rc)) < 0 ||
        (rv = cn_router_add(r, CN_M(HTTP_POST), "/v1/logs", h_logs, rc)) < 0 ||
        (rv = cn_router_add(r, CN_M(HTTP_POST), "/api/v2/spans", h_zipkin, rc)) < 0)
        return rv;
    return 0;
}
