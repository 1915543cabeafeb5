/* Private to src/gateway: the request filters that answer or annotate a request before it is
 * proxied (JWT, key auth, CORS), W3C trace context, and the per-request state they share.
 * Included by internal.h; the YAML side is in config-ext.c. docs/gateway.md. */
#ifndef CN_GATEWAY_EXT_H
#define CN_GATEWAY_EXT_H

#include "base/base.h"
#include "base/buf.h"

#include <jansson.h>
#include <stdatomic.h>
#include <stdint.h>

struct cn_http_req;
struct cn_http_header;
struct gw_route;
struct gw_worker;
struct gw_req;
struct cn_gw_snapshot;
struct cn_gw;
struct evp_pkey_st;

/* ---- JWT (jwt.c) ------------------------------------------------------------------------- */

enum gw_jwt_alg { GW_JWT_HS256 = 1 << 0, GW_JWT_RS256 = 1 << 1, GW_JWT_ES256 = 1 << 2 };

#define GW_JWT_MAX_TOKEN_BYTES 16384 /* default of jwt.max_token_bytes */
#define GW_JWT_MAX_KEYS        64    /* keys of one JWKS */
#define GW_JWT_MAX_JWKS_BYTES  (1u << 20)

/* One key of a JWKS: an RSA or EC P-256 public key (pkey), or an HMAC secret ("oct"). */
struct gw_jwk {
    char kid[128];            /* "" when the key has none */
    unsigned alg;             /* the algorithm the key is for (enum gw_jwt_alg) */
    struct evp_pkey_st *pkey; /* RS256 / ES256 */
    uint8_t *secret;          /* HS256 */
    size_t secret_len;
};

/* An immutable key set; readers hold a reference while they verify. */
struct gw_jwks {
    atomic_int refs;
    struct gw_jwk *keys;
    size_t num_keys;
};

/* A JWKS fetched from a URL by its own thread (libcurl), refreshed every refresh_ms; a
 * failed fetch keeps the last good set. Shared by the thread and the snapshot (refs). */
struct gw_jwks_remote;

struct gw_claim_header {
    struct cn_slice claim;
    struct cn_slice header;
};

struct gw_jwt {
    struct cn_slice issuer;     /* empty: not checked */
    struct cn_slice *audiences; /* none: not checked; else aud must hold one */
    size_t num_audiences;
    unsigned algorithms;           /* enum gw_jwt_alg bits */
    struct gw_jwks *keys;          /* jwks_file (and the HS256 secret as a key); may be NULL */
    struct gw_jwks_remote *remote; /* jwks_url, NULL when none */
    struct gw_claim_header *claims_to_headers;
    size_t num_claims_to_headers;
    int forward;           /* pass Authorization upstream */
    uint64_t clock_skew_s; /* allowed on exp, nbf, iat */
    uint64_t max_token_bytes;
};

/* Why a token was refused: a short phrase for error_description ("token expired"...). */
struct gw_jwt_err {
    char msg[160];
};

/* Verifies token (the Bearer value) against j at time now_s (Unix seconds). On success
 * returns 0 and *out_claims (a new reference to the payload object; the caller owns it). On
 * failure returns CN_EINVAL with err->msg; *out_claims is untouched. */
int gw_jwt_verify(const struct gw_jwt *j, struct cn_slice token, int64_t now_s, json_t **out_claims,
                  struct gw_jwt_err *err);
/* Parses a JWKS document (JSON text). Keys of unknown types are skipped; a key of a known
 * type that is malformed is an error. Returns the set (one reference) or NULL with err. */
struct gw_jwks *gw_jwks_parse(const char *text, size_t len, char *err, size_t err_len);
struct gw_jwks *gw_jwks_ref(struct gw_jwks *k);
void gw_jwks_unref(struct gw_jwks *k);
/* Starts fetching url every refresh_ms (timeout_ms per fetch). NULL on ENOMEM. */
struct gw_jwks_remote *gw_jwks_remote_start(const char *url, uint64_t refresh_ms,
                                            uint64_t timeout_ms);
/* The last good set (a new reference), NULL when none was fetched yet. Thread-safe. */
struct gw_jwks *gw_jwks_remote_get(struct gw_jwks_remote *r);
/* Tells the thread to stop; it frees everything when it ends (never blocks). */
void gw_jwks_remote_stop(struct gw_jwks_remote *r);
/* base64url without padding (RFC 7515 section 2) into dst (room for len * 3 / 4 + 1 bytes).
 * Returns the byte count or -1. */
long gw_b64url_decode(uint8_t *dst, const char *s, size_t len);
/* Reads the verified claim name of a request as text (strings as they are, numbers and
 * booleans formatted into buf). Returns 0 with *out set (pointing into the claims or buf),
 * CN_ENOENT when the request has no verified token or no such claim (or it is an object,
 * an array or null). For filters keyed on jwt_claim:NAME. */
int gw_jwt_claim(const json_t *claims, struct cn_slice name, char *buf, size_t buf_len,
                 struct cn_slice *out);

/* ---- key auth (keyauth.c) ---------------------------------------------------------------- */

struct gw_keyauth {
    struct cn_slice header; /* where the key is read (one of header / query) */
    struct cn_slice query;
    struct cn_slice *keys; /* from keys_file, one per line */
    size_t num_keys;
    int forward; /* pass the key upstream */
};

/* 1 when the key equals one of ka's keys (constant time in the key's bytes). */
int gw_keyauth_check(const struct gw_keyauth *ka, struct cn_slice key);
/* The key of a request (header or query parameter), 0 when found. */
int gw_keyauth_find(const struct gw_keyauth *ka, const struct cn_http_req *creq,
                    struct cn_slice *out, char *buf, size_t buf_len);

/* ---- CORS (cors.c) ----------------------------------------------------------------------- */

struct gw_cors {
    struct cn_slice *origins; /* exact ("https://a.example") or "*.suffix" patterns, or "*" */
    size_t num_origins;
    struct cn_slice methods;       /* Access-Control-Allow-Methods, comma separated */
    struct cn_slice *methods_list; /* the same, for the preflight check */
    size_t num_methods;
    struct cn_slice headers; /* Access-Control-Allow-Headers ("" none) */
    struct cn_slice *headers_list;
    size_t num_headers;
    struct cn_slice expose_headers; /* Access-Control-Expose-Headers ("" none) */
    int credentials;
    uint64_t max_age_s;
    char max_age_text[24];
};

/* Whether origin is allowed by c. */
int gw_cors_origin_allowed(const struct gw_cors *c, struct cn_slice origin);
/* Whether a preflight's Access-Control-Request-Method and -Headers are allowed. */
int gw_cors_preflight_ok(const struct gw_cors *c, struct cn_slice method, struct cn_slice headers);

/* ---- trace context (trace.c) ------------------------------------------------------------- */

#define GW_TRACESTATE_MAX 512 /* default of tracing.max_tracestate_bytes */

struct gw_traceparent {
    uint8_t trace_id[16];
    uint8_t span_id[8];
    uint8_t flags;
};

/* Parses a W3C traceparent value strictly: version 00, exactly 55 characters, lower-case
 * hex, non-zero IDs. Returns 0 or CN_ESYNTAX. */
int gw_traceparent_parse(struct cn_slice v, struct gw_traceparent *out);
/* Formats "00-TRACE-SPAN-FLAGS" (55 bytes + NUL) into dst. */
void gw_traceparent_format(char dst[56], const uint8_t trace_id[16], const uint8_t span_id[8],
                           uint8_t flags);

struct gw_tracing {
    int enabled;
    struct cn_slice service_name;
    uint64_t max_tracestate_bytes;
    int access_log;
    struct cn_slice otlp_endpoint; /* alone: where spans and logs go ("" none) */
    uint64_t batch_size;           /* records per worker batch */
    uint64_t flush_ms;             /* a partial batch goes after this */
    uint64_t queue_batches;        /* batches queued for the exporter at most */
    uint64_t export_timeout_ms;
};

/* ---- the request state ------------------------------------------------------------------- */

/* What the filters decided about one request; lives in the gw_req. States: zeroed (no filter
 * ran) -> filled by gw_ext_request -> released with the request. */
struct gw_ext_state {
    json_t *claims;              /* verified JWT payload (owned), NULL when none */
    const struct gw_jwt *jwt;    /* the filter that verified it (claims_to_headers) */
    const struct gw_keyauth *ka; /* key auth that passed (forward) */
    const struct gw_cors *cors;  /* the CORS filter whose origin matched, NULL otherwise */
    struct cn_slice origin;      /* the request's Origin (into the client request) */
    /* Trace context: ours (span_id) and the caller's (parent). */
    unsigned traced : 1, has_parent : 1, sampled : 1;
    uint8_t trace_id[16], span_id[8], parent_id[8];
    uint8_t flags;
    struct cn_slice tracestate; /* into the client request, bounded */
    uint64_t start_wall_ns;
};

/* Runs the route's request filters in order (CORS, keyAuth, JWT) and the trace context.
 * Returns 0 to proxy the request, or the status it answered with (204 preflight, 401), in
 * which case st holds nothing to release. */
int gw_ext_request(struct gw_worker *w, const struct cn_gw_snapshot *s, const struct gw_route *rt,
                   struct cn_http_req *creq, struct gw_ext_state *st);
void gw_ext_release(struct gw_ext_state *st);
/* Whether a client request field is replaced by the filters (trace context, claim headers,
 * Authorization when not forwarded) and must not be copied upstream. */
int gw_ext_drops(const struct gw_ext_state *st, const struct cn_gw_snapshot *s,
                 struct cn_slice name);
/* Bytes gw_ext_upstream_headers may write at most. */
size_t gw_ext_upstream_size(const struct gw_ext_state *st);
/* Appends the filters' upstream fields to o (reserved by the caller). */
void gw_ext_upstream_headers(const struct gw_ext_state *st, struct cn_buf *o);
/* Fields the reply gets (CORS); out has room for GW_EXT_MAX_REPLY_HEADERS. Returns the
 * count. */
#define GW_EXT_MAX_REPLY_HEADERS 4
size_t gw_ext_reply_headers(const struct gw_ext_state *st, struct cn_http_header *out);

/* ---- telemetry of requests (export.c) ---------------------------------------------------- */

/* A finished request, as its server span and access-log record are built from it. */
struct gw_req_done {
    const struct gw_ext_state *st;
    const struct cn_http_req *creq; /* NULL when the client went away */
    struct cn_slice host;           /* the Host value (into creq), used when creq is set */
    struct cn_slice route, cluster, endpoint;
    int status; /* 0: aborted */
    uint64_t duration_ns;
};

/* One finished request as the exporter encodes it: fixed-size copies (the request and the
 * snapshot it names may be gone when the batch is encoded), each string cut to its array
 * and its length kept (no NUL). */
#define GW_REC_STR 192 /* bytes kept of the path, route, cluster and endpoint names */
struct gw_rec {
    uint8_t trace_id[16], span_id[8], parent_id[8];
    uint8_t flags, has_parent, sampled;
    uint8_t method_len, path_len, host_len, ip_len, route_len, cluster_len, endpoint_len;
    int status; /* 0: aborted */
    uint64_t start_ns, end_ns;
    char method[24], path[GW_REC_STR], host[128], ip[48], route[GW_REC_STR], cluster[GW_REC_STR],
        endpoint[GW_REC_STR];
};

/* A worker's batch, handed whole to the exporter. n <= cap. */
struct gw_batch {
    struct gw_batch *next;
    size_t n, cap;
    struct gw_rec recs[];
};

/* Appends to out an OTLP ExportTraceServiceRequest of b's sampled records (logs == 0) or an
 * ExportLogsServiceRequest of all its records (logs == 1), under a resource whose
 * service.name is service. Returns the number of records written (0: out unchanged), or
 * CN_ELIMIT / CN_ENOMEM when out cannot hold them (out's contents are then unspecified). */
int gw_tel_encode(struct cn_buf *out, const struct gw_batch *b, struct cn_slice service, int logs);

/* Records a finished request in the worker's batch (never blocks; a full queue drops and
 * counts). */
void gw_tel_record(struct gw_worker *w, const struct gw_req_done *d);
int gw_tel_worker_init(struct gw_worker *w);
/* Sends what the worker's batch holds and closes its timer (on the worker's thread). */
void gw_tel_worker_release(struct gw_worker *w);
/* The exporter's figures for /metrics. */
void gw_tel_metrics_write(struct cn_buf *b, struct cn_gw *gw);
void gw_tel_free(struct cn_gw *gw);
/* Starts the exporter when s traces and has somewhere to send (under gw->lock). */
void gw_tel_configure(struct cn_gw *gw, const struct cn_gw_snapshot *s);

#endif
