/* Jaeger, Zipkin v2 and Tempo query APIs on the API port (docs/compat.md).
 *
 * cn_api_compat_routes is the one entry point for the rest of the tree. Below it, what the
 * three API files (api-jaeger.c, api-zipkin.c, api-tempo.c) share, defined in api-compat.c:
 * error replies, query parameters, jobs on the threadpool, trace by ID, the derived-table
 * lists and the trace search of the query layer. Nothing outside those files uses them. */
#ifndef CN_CLI_API_COMPAT_H
#define CN_CLI_API_COMPAT_H

#include "cli/up.h"
#include "telemetry/query.h"
#include "telemetry/traceql.h"

#include <jansson.h>

/* Registers the compatibility routes on r (they answer 503 while up has no store). Returns
 * 0 or the router's error. */
int cn_api_compat_routes(struct cn_up *up, struct cn_router *r);

/* ---- shared by api-jaeger.c, api-zipkin.c, api-tempo.c ---------------------------------- */

#define CN_COMPAT_MS_NS  1000000ull
#define CN_COMPAT_SEC_NS 1000000000ull
/* Largest query parameter value taken (a TraceQL query is the longest). */
#define CN_COMPAT_MAX_PARAM (CN_TQL_MAX_QUERY + 1)
/* Longest service or operation name taken in a parameter or path. */
#define CN_COMPAT_MAX_NAME 511
/* Largest answer body built (a search of max_limit whole traces). */
#define CN_COMPAT_MAX_BODY (256u << 20)

/* Each API answers errors in its own shape: Jaeger's envelope, Zipkin's and Tempo's text. */
enum cn_compat_api { CN_COMPAT_JAEGER, CN_COMPAT_ZIPKIN, CN_COMPAT_TEMPO };

struct cn_compat_route {
    const char *pattern;
    cn_http_handler_cb handler;
};

/* Adds n GET routes with up as their context. Returns 0 or the router's error. */
int cn_compat_add_routes(struct cn_up *up, struct cn_router *r,
                         const struct cn_compat_route *routes, size_t n);
int cn_api_jaeger_routes(struct cn_up *up, struct cn_router *r);
int cn_api_zipkin_routes(struct cn_up *up, struct cn_router *r);
int cn_api_tempo_routes(struct cn_up *up, struct cn_router *r);
/* Tempo's trace by ID in protobuf (tempopb.Trace) for /api/traces/{id} when the client asks
 * for protobuf (api-tempo.c). */
void cn_api_tempo_trace_pb(struct cn_http_req *req, struct cn_up *up);

uint64_t cn_compat_now_ns(void);
/* The query.* settings in force (cn_config_query_limits). */
void cn_compat_limits(struct cn_up *up, struct cn_query_limits *out);

/* Jaeger's {data, total, limit: 0, offset: 0, errors: null}; takes data's reference. */
json_t *cn_compat_jaeger_envelope(json_t *data, size_t total);
/* Replies status with the message in api's error shape. */
void cn_compat_reply_error(struct cn_http_req *req, enum cn_compat_api api, int status,
                           const char *fmt, ...) __attribute__((format(printf, 4, 5)));

/* ---- parameters: each returns -1 after it replied 400 ---- */

/* Percent-decodes s ('+' is a space) into dst, NUL-terminated. Returns the length, or -2 when
 * it does not fit. */
int cn_compat_decode(struct cn_slice s, char *dst, size_t dst_len);
/* The idx-th value of parameter name, decoded into dst. Returns its length, -1 when absent,
 * -2 when longer than dst. */
int cn_compat_param_n(const struct cn_http_req *req, const char *name, size_t idx, char *dst,
                      size_t dst_len);
/* 0 when every parameter is in names (NULL-ended); else replies 400 naming the first other
 * one, or 503 when there is no store, and returns -1. */
int cn_compat_check(struct cn_http_req *req, struct cn_up *up, enum cn_compat_api api,
                    const char *const *names);
/* One parameter: 1 with its value in dst, 0 when absent or empty, -1 (400: too long). */
int cn_compat_param(struct cn_http_req *req, enum cn_compat_api api, const char *name, char *dst,
                    size_t dst_len);
/* An unsigned integer in [min, max]: 1 with *out, 0 when absent, -1 (400). */
int cn_compat_param_u64(struct cn_http_req *req, enum cn_compat_api api, const char *name,
                        uint64_t min, uint64_t max, uint64_t *out);
/* A duration with a unit ("1.2s", "100ms"): 1 with *out_ns, 0 when absent, -1 (400). */
int cn_compat_param_duration(struct cn_http_req *req, enum cn_compat_api api, const char *name,
                             uint64_t *out_ns);
/* endTs (ms, default now) and lookback (ms, default one day, at most query.max_range) into
 * [from, to): 0, or -1 (400). */
int cn_compat_end_lookback(struct cn_http_req *req, enum cn_compat_api api, struct cn_up *up,
                           int end_required, uint64_t *from, uint64_t *to);
/* Trace IDs: 1 to 32 hex digits, left-padded with zeros (all three accept the short 64-bit
 * form); all zero is not an ID. Returns 0 or CN_ESYNTAX. */
int cn_compat_parse_id(struct cn_slice hex, uint8_t id[16]);

/* ---- jobs on the threadpool ---- */

struct cn_compat_job;
typedef void (*cn_compat_job_cb)(struct cn_compat_job *j);

/* One request's work. States: queued (req set, abort_cb installed) -> worked (status, ctype,
 * body set by work) -> replied and freed on the loop. When the connection goes first,
 * abort_cb clears req and the loop only frees. lim is read on the loop when queued. */
struct cn_compat_job {
    struct cn_http_req *req;
    struct cn_up *up;
    enum cn_compat_api api;
    struct cn_query_limits lim;
    cn_compat_job_cb work;
    cn_compat_job_cb release; /* frees the endpoint's parameters; may be NULL */
    void *p;                  /* the endpoint's parameters */
    int status;
    const char *ctype;
    int truncated; /* answered with X-Cairn-Truncated: true (the scan budget ran out) */
    struct cn_buf body;
};

/* Queues work with parameters p (freed by release, also when queueing fails: then a 503). */
void cn_compat_submit(struct cn_http_req *req, struct cn_up *up, enum cn_compat_api api,
                      cn_compat_job_cb work, cn_compat_job_cb release, void *p);
/* The job's answer: j as compact JSON (reference taken). */
void cn_compat_job_json(struct cn_compat_job *jb, int status, json_t *j);
void cn_compat_job_error(struct cn_compat_job *jb, int status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* A release callback that frees p. */
void cn_compat_free_p(struct cn_compat_job *j);

/* ---- trace by ID ---- */

struct cn_compat_trace_p {
    uint8_t id[16];
    int form; /* the endpoint's */
};

/* 1 when the Accept header asks for protobuf (Grafana's Tempo data source does). */
int cn_compat_wants_protobuf(const struct cn_http_req *req);
/* Checks the parameters (Jaeger's and Tempo's take start, end, raw, prettyPrint and ignore
 * them; Zipkin's none) and the ID in the path, then queues work with a cn_compat_trace_p. */
void cn_compat_trace_by_id(struct cn_http_req *req, struct cn_up *up, enum cn_compat_api api,
                           cn_compat_job_cb work, int form);

/* ---- lists from the derived tables ---- */

/* Service names, sorted. */
json_t *cn_compat_services(struct cn_up *up);
/* Every span name of service (all kinds: cn_derive_span_names), each once, sorted; with kind
 * >= 0 only those of that kind. With objects, [{name, spanKind}] per (name, kind) as Jaeger's
 * /api/operations; service.ptr NULL: every service's. */
json_t *cn_compat_operations(struct cn_up *up, struct cn_slice service, int kind, int objects);
/* Edges over [from, to) merged per (caller, callee): [{parent, child, callCount[,
 * errorCount]}]. */
json_t *cn_compat_dependencies(struct cn_up *up, uint64_t from, uint64_t to, int errors);

/* ---- trace search through the query layer (Jaeger, Zipkin, Tempo's tags=) ---- */

/* A search's parameters. render turns one matching trace ID into its answer item (NULL: the
 * store no longer has it). */
struct cn_compat_search {
    struct cn_trace_query q;
    struct cn_pred preds[CN_QUERY_MAX_PREDS];
    size_t num_preds;
    char service[CN_COMPAT_MAX_NAME + 1], operation[CN_COMPAT_MAX_NAME + 1];
    uint8_t (*ids)[16]; /* Jaeger's traceID=: these traces, no search */
    size_t num_ids;
    json_t *(*render)(struct cn_store *st, const uint8_t id[16]);
};

/* A new search (any status and kind, newest first) or NULL after a 503. */
struct cn_compat_search *cn_compat_search_new(struct cn_http_req *req, enum cn_compat_api api);
void cn_compat_search_free(struct cn_compat_search *p);
/* A release callback for a job whose p is a cn_compat_search. */
void cn_compat_search_release(struct cn_compat_job *j);
/* Adds predicate "key=value" (value NULL: "key is set"). Returns 0, or -1 (400 naming
 * pname). */
int cn_compat_add_pred(struct cn_http_req *req, enum cn_compat_api api, struct cn_compat_search *p,
                       const char *pname, const char *key, const char *value);
/* Job work: runs the search and answers [render(trace), ...], in Jaeger's envelope for
 * Jaeger. */
void cn_compat_work_search(struct cn_compat_job *jb);

#endif
