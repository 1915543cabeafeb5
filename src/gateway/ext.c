/* The request filters' chain (CORS, key auth, JWT, in route order) and the trace context of
 * each request: what they answer by themselves (preflight 204, 401), what they add to the
 * upstream request (traceparent, tracestate, claim headers) and to the reply (CORS). */
#include "gateway/internal.h"

#include "base/log.h"

#include <stdio.h>
#include <time.h>

void gw_ext_release(struct gw_ext_state *st)
{
    json_decref(st->claims);
    st->claims = NULL;
}

static void new_id(struct gw_worker *w, uint8_t *id, size_t n)
{
    do {
        for (size_t i = 0; i < n; i += 8) {
            uint64_t r = gw_rand(&w->rng);
            memcpy(id + i, &r, CN_MIN((size_t)8, n - i));
        }
    } while (cn_slice_eq((struct cn_slice){(const char *)id, n},
                         (struct cn_slice){"\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0", n}));
}

static void trace_start(struct gw_worker *w, const struct gw_tracing *t, struct cn_http_req *creq,
                        struct gw_ext_state *st)
{
    st->traced = 1;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    st->start_wall_ns = (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
    const struct cn_slice *tp = cn_http_req_header(creq, "traceparent");
    struct gw_traceparent in;
    if (tp && gw_traceparent_parse(*tp, &in) == 0) {
        memcpy(st->trace_id, in.trace_id, 16);
        memcpy(st->parent_id, in.span_id, 8);
        st->has_parent = 1;
        st->flags = in.flags & 1; /* only "sampled" is defined for version 00 */
        const struct cn_slice *ts_v = cn_http_req_header(creq, "tracestate");
        if (ts_v && ts_v->len && ts_v->len <= t->max_tracestate_bytes)
            st->tracestate = *ts_v; /* longer: dropped (the spec allows it) */
    } else {
        new_id(w, st->trace_id, 16);
        st->flags = 1; /* a new trace is sampled */
    }
    new_id(w, st->span_id, 8);
    st->sampled = st->flags & 1;
}

/* A 401 of the auth filters, with the CORS fields the request earned (so a browser's script
 * can read why it was refused). */
static void unauthorized(struct cn_http_req *creq, const struct gw_ext_state *st, const char *what,
                         const char *why, int bearer)
{
    char hv[256], body[256];
    struct cn_http_header h[1 + GW_EXT_MAX_REPLY_HEADERS];
    size_t nh = 0;
    if (bearer) {
        /* The description is ours (fixed phrases and bounded token facts), no quotes in it. */
        int n = snprintf(hv, sizeof(hv), "Bearer error=\"invalid_token\", error_description=\"%s\"",
                         why);
        for (int i = 0; n > 0 && i < n && i < (int)sizeof(hv); i++)
            if (hv[i] == '\r' || hv[i] == '\n')
                hv[i] = ' ';
        h[nh++] = (struct cn_http_header){CN_SLICE_LIT("WWW-Authenticate"),
                                          {hv, (size_t)CN_MIN(n, (int)sizeof(hv) - 1)}};
    }
    nh += gw_ext_reply_headers(st, h + nh);
    int bl = snprintf(body, sizeof(body), "%s: %s\n", what, why);
    cn_http_reply(creq, 401, "text/plain; charset=utf-8", body,
                  (size_t)CN_MIN(bl, (int)sizeof(body) - 1), h, nh);
}

/* A preflight: OPTIONS with Origin and Access-Control-Request-Method. */
static int preflight(const struct gw_cors *c, struct cn_http_req *creq, struct cn_slice origin)
{
    const struct cn_slice *m = cn_http_req_header(creq, "access-control-request-method");
    const struct cn_slice *hs = cn_http_req_header(creq, "access-control-request-headers");
    struct cn_http_header h[6];
    size_t n = 0;
    h[n++] = (struct cn_http_header){CN_SLICE_LIT("Vary"),
                                     CN_SLICE_LIT("Origin, Access-Control-Request-Method, "
                                                  "Access-Control-Request-Headers")};
    if (gw_cors_origin_allowed(c, origin) &&
        gw_cors_preflight_ok(c, *m, hs ? *hs : CN_SLICE_LIT(""))) {
        h[n++] = (struct cn_http_header){CN_SLICE_LIT("Access-Control-Allow-Origin"), origin};
        h[n++] = (struct cn_http_header){CN_SLICE_LIT("Access-Control-Allow-Methods"), c->methods};
        if (c->headers.len)
            h[n++] =
                (struct cn_http_header){CN_SLICE_LIT("Access-Control-Allow-Headers"), c->headers};
        if (c->credentials)
            h[n++] = (struct cn_http_header){CN_SLICE_LIT("Access-Control-Allow-Credentials"),
                                             CN_SLICE_LIT("true")};
        if (c->max_age_s)
            h[n++] = (struct cn_http_header){CN_SLICE_LIT("Access-Control-Max-Age"),
                                             cn_slice_of(c->max_age_text)};
    }
    /* A refused preflight is still a 204, without the Allow fields: the browser refuses. */
    cn_http_reply(creq, 204, NULL, NULL, 0, h, n);
    return 204;
}

int gw_ext_request(struct gw_worker *w, const struct cn_gw_snapshot *s, const struct gw_route *rt,
                   struct cn_http_req *creq, struct gw_ext_state *st)
{
    memset(st, 0, sizeof(*st));
    /* A preflight carries no credentials: the route's CORS filter answers it wherever it
     * stands in the chain, before any auth filter runs. */
    if (creq->method == HTTP_OPTIONS && cn_http_req_header(creq, "access-control-request-method"))
        for (size_t i = 0; i < rt->num_filters; i++) {
            const struct cn_slice *o = cn_http_req_header(creq, "origin");
            if (rt->filters[i].kind == GW_F_CORS && o)
                return preflight(rt->filters[i].u.cors, creq, *o);
        }
    /* CORS first, wherever it stands: the gateway's own refusals (401 here, 429 of the rate
     * limit) carry the same CORS fields as a proxied reply. */
    const struct cn_slice *origin = NULL;
    for (size_t i = 0; i < rt->num_filters; i++) {
        const struct gw_filter *f = &rt->filters[i];
        if (f->kind != GW_F_CORS)
            continue;
        if (!origin && !(origin = cn_http_req_header(creq, "origin")))
            break;
        st->origin = *origin;
        st->cors = gw_cors_origin_allowed(f->u.cors, *origin) ? f->u.cors : NULL;
    }
    for (size_t i = 0; i < rt->num_filters; i++) {
        const struct gw_filter *f = &rt->filters[i];
        switch (f->kind) {
        case GW_F_KEY_AUTH: {
            char buf[1024];
            struct cn_slice key = {NULL, 0};
            int rc = gw_keyauth_find(f->u.keyauth, creq, &key, buf, sizeof(buf));
            if (rc != 0 || !gw_keyauth_check(f->u.keyauth, key)) {
                gw_ext_release(st);
                unauthorized(creq, st, "key auth", rc == CN_ENOENT ? "no key" : "unknown key", 0);
                return 401;
            }
            st->ka = f->u.keyauth;
            break;
        }
        case GW_F_JWT: {
            const struct cn_slice *a = cn_http_req_header(creq, "authorization");
            struct cn_slice tok = {NULL, 0};
            if (a && a->len > 7 &&
                cn_slice_case_eq((struct cn_slice){a->ptr, 7}, CN_SLICE_LIT("bearer "))) {
                tok = (struct cn_slice){a->ptr + 7, a->len - 7};
                while (tok.len && tok.ptr[0] == ' ') {
                    tok.ptr++;
                    tok.len--;
                }
            }
            struct gw_jwt_err err = {""};
            json_t *claims = NULL;
            if (gw_jwt_verify(f->u.jwt, tok, (int64_t)time(NULL), &claims, &err) != 0) {
                gw_ext_release(st);
                cn_debug("gateway", "jwt refused", "route=%.*s reason=\"%s\"", (int)rt->name.len,
                         rt->name.ptr, err.msg);
                unauthorized(creq, st, "jwt", err.msg, 1);
                return 401;
            }
            json_decref(st->claims);
            st->claims = claims;
            st->jwt = f->u.jwt;
            break;
        }
        default:
            break;
        }
    }
    if (s->tracing.enabled)
        trace_start(w, &s->tracing, creq, st);
    return 0;
}

int gw_ext_drops(const struct gw_ext_state *st, const struct cn_gw_snapshot *s,
                 struct cn_slice name)
{
    if (s->tracing.enabled && (gw_lit_eq(name, CN_SLICE_LIT("traceparent")) ||
                               gw_lit_eq(name, CN_SLICE_LIT("tracestate"))))
        return 1;
    if (st->jwt) {
        if (!st->jwt->forward && gw_lit_eq(name, CN_SLICE_LIT("authorization")))
            return 1;
        /* A client cannot send a field the gateway writes from the verified token. */
        for (size_t i = 0; i < st->jwt->num_claims_to_headers; i++)
            if (cn_slice_case_eq(name, st->jwt->claims_to_headers[i].header))
                return 1;
    }
    if (st->ka && !st->ka->forward && st->ka->header.len && cn_slice_case_eq(name, st->ka->header))
        return 1;
    return 0;
}

#define CLAIM_MAX 1024 /* bytes of one claim written into a header at most */

static int claim_value(const struct gw_ext_state *st, size_t i, char *buf, struct cn_slice *out)
{
    if (gw_jwt_claim(st->claims, st->jwt->claims_to_headers[i].claim, buf, 64, out) != 0)
        return -1;
    if (out->len > CLAIM_MAX)
        return -1;
    for (size_t k = 0; k < out->len; k++) {
        unsigned char c = (unsigned char)out->ptr[k];
        if ((c < 0x20 && c != '\t') || c == 0x7f)
            return -1; /* never a field that could split the head */
    }
    return 0;
}

size_t gw_ext_upstream_size(const struct gw_ext_state *st)
{
    size_t n = 0;
    if (st->traced)
        n += 13 + 55 + 2 + 12 + st->tracestate.len + 2;
    if (st->jwt && st->claims)
        for (size_t i = 0; i < st->jwt->num_claims_to_headers; i++)
            n += st->jwt->claims_to_headers[i].header.len + 4 + CLAIM_MAX;
    return n;
}

static void put(struct cn_buf *o, const char *p, size_t n)
{
    memcpy(o->ptr + o->len, p, n);
    o->len += n;
}

void gw_ext_upstream_headers(const struct gw_ext_state *st, struct cn_buf *o)
{
    if (st->traced) {
        char tp[56];
        gw_traceparent_format(tp, st->trace_id, st->span_id, st->flags);
        put(o, "traceparent: ", 13);
        put(o, tp, 55);
        put(o, "\r\n", 2);
        if (st->tracestate.len) {
            put(o, "tracestate: ", 12);
            put(o, st->tracestate.ptr, st->tracestate.len);
            put(o, "\r\n", 2);
        }
    }
    if (st->jwt && st->claims) {
        for (size_t i = 0; i < st->jwt->num_claims_to_headers; i++) {
            char buf[64];
            struct cn_slice v;
            if (claim_value(st, i, buf, &v) != 0)
                continue;
            struct cn_slice h = st->jwt->claims_to_headers[i].header;
            put(o, h.ptr, h.len);
            put(o, ": ", 2);
            put(o, v.ptr, v.len);
            put(o, "\r\n", 2);
        }
    }
}

size_t gw_ext_reply_headers(const struct gw_ext_state *st, struct cn_http_header *out)
{
    size_t n = 0;
    if (!st->origin.len)
        return 0;
    out[n++] = (struct cn_http_header){CN_SLICE_LIT("Vary"), CN_SLICE_LIT("Origin")};
    if (!st->cors)
        return n;
    out[n++] = (struct cn_http_header){CN_SLICE_LIT("Access-Control-Allow-Origin"), st->origin};
    if (st->cors->credentials)
        out[n++] = (struct cn_http_header){CN_SLICE_LIT("Access-Control-Allow-Credentials"),
                                           CN_SLICE_LIT("true")};
    if (st->cors->expose_headers.len)
        out[n++] = (struct cn_http_header){CN_SLICE_LIT("Access-Control-Expose-Headers"),
                                           st->cors->expose_headers};
    return n;
}
