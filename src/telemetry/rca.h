/* Root cause analysis (docs/rca.md): for a service and a time window, or for one trace, a
 * ranked list of suspects, each a (service, operation, kind) with a score and its evidence.
 *
 * Scope. The requests of a service S are its topmost entry spans: spans of S with no
 * ancestor of S (S's spans called by another service, or trace roots). Everything below is
 * measured in the subtrees of those requests, so upstream callers never count as causes.
 *
 * Methods, combined per (service, operation), X below:
 *   error origin    in a failing request, the erroring spans none of whose children errs
 *                   (the deepest errors); a request with k origins gives each 1/k.
 *                   E(X) = origin share / requests. Score E_now(X) - E_base(X) (trace mode:
 *                   E_now(X)): the fraction of S's requests that newly fail at X.
 *   new error       the origin's error message (status message, else the exception event's
 *                   type and message, else the HTTP/gRPC status code) was never seen on an
 *                   erroring span of X in the baseline. Score: the fraction of S's requests
 *                   failing at X with a new message. Needs a baseline with requests.
 *   latency         the critical path of the slow requests (duration >= the window's p90):
 *                   C(X) = X's time on those critical paths / their total duration. Score
 *                   C(X) * g(X), g = the share of X's mean self-time per call that is new
 *                   against the baseline, clamp((self_now - self_base) / self_now, 0, 1);
 *                   1 when X has no baseline calls.
 *   traffic change  calls per request of S, K(X), against the baseline:
 *                   0.5 * |K_now - K_base| / max(K_now, K_base); for S's own entry operations
 *                   the request rate, only when it grew: 0.5 * (R_now - R_base) / R_now,
 *                   each rate over the part of its window that holds data (from the first
 *                   span its scan read, when the scan read the whole window).
 *
 * Self-time of a span: its duration minus the union of its children's intervals (clipped to
 * the span). Critical path: from a request's end backwards, the child that ends last before
 * the cursor is on the path (recursively), the gaps are the parent's; ties by later end,
 * earlier start, span ID.
 *
 * Determinism: traces are processed in trace ID order and spans in (start, span ID) order, so
 * every sum is made in the same order; scores are rounded to 1e-4 and ties broken by kind
 * (new_error, error_origin, latency, traffic_change), service, then operation (bytewise).
 *
 * Bounded work. Each window's scan reads at most a third of max_spans spans (newest time
 * first); fetching the chosen traces reads the rest. At most max_traces traces per window
 * are examined: when more requests' traces were seen, erroring traces and the others are
 * sampled apart (each up to half, the unused share going to the other), choosing the
 * smallest hashes of the trace IDs, and weighted by seen / chosen so that every rate stays
 * an estimate of the whole window. A trace keeps its first max_trace_spans spans. Log
 * evidence reads at most max_log_scan records per suspect. The answer says what was cut.
 *
 * Threads: cn_rca_run may run on any thread (the API runs it on the libuv threadpool). */
#ifndef CN_TELEMETRY_RCA_H
#define CN_TELEMETRY_RCA_H

#include "telemetry/query.h"
#include "telemetry/store.h"

#include <jansson.h>

#define CN_RCA_MAX_TRACES        1000    /* traces examined per window */
#define CN_RCA_MAX_SPANS         1000000 /* spans read in all (scans and trace fetches) */
#define CN_RCA_MAX_TRACE_SPANS   10000   /* spans kept of one trace */
#define CN_RCA_MAX_LOGS          10      /* log lines of evidence per suspect */
#define CN_RCA_MAX_LOG_SCAN      20000   /* log records read per suspect for nearby lines */
#define CN_RCA_LOG_WINDOW_NS     (5ull * 1000000000ull)   /* nearby: the span +- 5 s */
#define CN_RCA_DEFAULT_WINDOW_NS (900ull * 1000000000ull) /* start defaults to end - 15 min */
#define CN_RCA_TRACE_BASELINE_NS (900ull * 1000000000ull) /* trace mode: 15 min before it */
#define CN_RCA_DEFAULT_SUSPECTS  10
#define CN_RCA_MAX_SUSPECTS      50
#define CN_RCA_EXAMPLES          3    /* example traces per suspect */
#define CN_RCA_MIN_SCORE         0.01 /* suspects scoring less are left out */
#define CN_RCA_TRAFFIC_WEIGHT    0.5  /* traffic changes are more often effects than causes */
#define CN_RCA_SLOW_QUANTILE     0.9  /* slow requests: duration >= this quantile */

struct cn_rca_limits {
    uint32_t max_traces;      /* 1 .. : CN_RCA_MAX_TRACES */
    uint64_t max_spans;       /* 3 .. : CN_RCA_MAX_SPANS (the API takes the smaller of this
                                 and query.max_scan_records) */
    uint32_t max_trace_spans; /* 1 .. : CN_RCA_MAX_TRACE_SPANS */
    uint32_t max_logs;        /* 0 .. : CN_RCA_MAX_LOGS */
    uint64_t max_log_scan;    /* CN_RCA_MAX_LOG_SCAN */
    uint64_t log_window_ns;   /* CN_RCA_LOG_WINDOW_NS */
};

void cn_rca_limits_default(struct cn_rca_limits *l);

/* Where spans and logs come from: the store (cn_rca_source_store), or a test's own. The
 * functions have the contracts of their cn_store_* namesakes. */
struct cn_rca_source {
    void *ctx;
    size_t (*scan_spans)(void *ctx, uint64_t from_ns, uint64_t to_ns, size_t limit,
                         cn_store_span_cb cb, void *cb_ctx);
    size_t (*trace)(void *ctx, const uint8_t trace_id[16], cn_store_span_cb cb, void *cb_ctx);
    size_t (*scan_logs)(void *ctx, uint64_t from_ns, uint64_t to_ns, size_t limit,
                        cn_store_log_cb cb, void *cb_ctx);
    size_t (*trace_logs)(void *ctx, const uint8_t trace_id[16], cn_store_log_cb cb, void *cb_ctx);
};

void cn_rca_source_store(struct cn_rca_source *src, struct cn_store *st);

struct cn_rca_query {
    struct cn_slice service; /* ptr NULL: trace mode only, the trace's root service */
    int by_trace;            /* analyse the one trace trace_id */
    uint8_t trace_id[16];
    uint64_t from_ns, to_ns;        /* the window, service mode: [from, to) of request starts */
    uint64_t base_from_ns;          /* the baseline; both 0: the window of equal length just */
    uint64_t base_to_ns;            /* before (trace mode: CN_RCA_TRACE_BASELINE_NS before it) */
    size_t limit;                   /* suspects, 1 .. CN_RCA_MAX_SUSPECTS */
    const struct cn_code_links *cl; /* code links on log evidence; may be NULL */
};

/* Runs the analysis. Returns 0 and the answer in *out (a new reference; its shape is in
 * docs/rca.md), or CN_EINVAL (a bad query field: *err_param names the API parameter),
 * CN_ENOENT (the trace is not stored, or the service has no span in it), CN_ENOMEM, with a
 * message in err. */
int cn_rca_run(const struct cn_rca_source *src, const struct cn_rca_limits *lim,
               const struct cn_rca_query *q, json_t **out, const char **err_param, char *err,
               size_t err_len);

#endif
