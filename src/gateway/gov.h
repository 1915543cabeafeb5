/* Private to src/gateway: traffic governance. Active health checks (health.c, on one control
 * loop), passive outlier detection, retries with a budget, circuit breaking and local rate
 * limits (gov.c). Included by internal.h. docs/gateway.md. */
#ifndef CN_GATEWAY_GOV_H
#define CN_GATEWAY_GOV_H

#include "base/base.h"
#include "base/buf.h"

#include <stdatomic.h>
#include <stdint.h>
#include <uv.h>

struct cn_http_req;
struct cn_gw;
struct cn_gw_snapshot;
struct gw_cluster;
struct gw_route;
struct gw_lb_state;
struct gw_ext_state;

/* ---- configuration (parsed in config.c) ------------------------------------------------------ */

#define GW_HC_MAX_STATUSES 32

struct gw_health_cfg {
    int enabled;
    struct cn_slice path;
    uint64_t interval_ms, timeout_ms;
    uint32_t healthy_threshold, unhealthy_threshold;
    uint32_t max_concurrent; /* checks of the cluster in flight at once */
    uint16_t statuses[GW_HC_MAX_STATUSES];
    size_t num_statuses; /* 0: any 2xx */
};

struct gw_outlier_cfg {
    int enabled;
    uint32_t consecutive_errors;
    uint64_t base_ms, max_ms;
    uint32_t max_percent; /* of the cluster's endpoints ejected at once */
};

enum gw_retry_on {
    GW_RETRY_CONNECT = 1 << 0,
    GW_RETRY_RESET = 1 << 1,
    GW_RETRY_502 = 1 << 2,
    GW_RETRY_503 = 1 << 3,
    GW_RETRY_504 = 1 << 4, /* an upstream 504 or our per-try / first-byte timeout */
};

struct gw_retry_cfg {
    int enabled;
    uint32_t attempts; /* in all, the first one included */
    unsigned on;       /* enum gw_retry_on */
    uint64_t per_try_ms;
    uint32_t budget_percent;
    uint32_t min_per_s;
    uint64_t max_body_bytes; /* a body buffered while connecting is resent up to this */
    int attempts_header;     /* x-cairn-attempts on the reply */
};

struct gw_breaker_cfg {
    int enabled;
    uint32_t max_connections, max_pending, max_requests; /* 0: no limit */
};

/* Shared across workers and reloads (a reload that keeps the cluster keeps its state). */
struct gw_cl_state {
    atomic_int refs;
    uv_mutex_t lock; /* ejection decisions (rare) */
    atomic_uint requests, pending, connections;
};

enum gw_ep_flags { GW_EP_UNHEALTHY = 1 << 0, GW_EP_EJECTED = 1 << 1 };

/* One endpoint's health, shared by every worker and the health checker, kept across reloads
 * by (cluster, address). flags: UNHEALTHY (active checks; set and cleared by the checker),
 * EJECTED (outlier detection; set by a worker, cleared lazily once ejected_until passed). */
struct gw_ep_state {
    atomic_int refs;
    atomic_uint flags;
    atomic_uint consec_errors;
    atomic_uint ejections;              /* in a row: the backoff's exponent */
    atomic_uint_fast64_t ejected_until; /* loop ms (uv_now: one monotonic clock) */
    uint32_t hc_ok, hc_fail;            /* check streaks (control loop only) */
};

struct gw_cluster_gov {
    struct gw_health_cfg health;
    struct gw_outlier_cfg outlier;
    struct gw_retry_cfg retry;
    struct gw_breaker_cfg breaker;
    struct gw_cl_state *st;
};

/* ---- local rate limit (a route filter) ---------------------------------------------------------
 */

enum gw_rl_key { GW_RL_CLIENT_IP = 0, GW_RL_HEADER, GW_RL_JWT_CLAIM };

struct gw_rl_table;

struct gw_ratelimit {
    double rate_per_s;
    struct cn_slice rate_text; /* as configured ("10/s") */
    uint64_t burst;
    enum gw_rl_key key;
    struct cn_slice key_name; /* header or claim name */
    struct cn_slice key_text; /* as configured */
    uint64_t max_keys;
    size_t ordinal; /* among the route's rate limits (reload matching) */
    struct gw_rl_table *table;
};

/* Token bucket: refills rate_per_ms up to burst, takes one token. Returns 1 when taken; else 0
 * with *out_wait_ms until one is there. */
int gw_tb_take(double *tokens, uint64_t *last_ms, double rate_per_ms, double burst, uint64_t now_ms,
               uint64_t *out_wait_ms);

/* A bounded table of buckets by key hash, least recently used evicted past max_keys, one
 * lock (shared by every worker: see docs "Rate limits"). */
struct gw_rl_table *gw_rl_table_new(double rate_per_s, uint64_t burst, uint64_t max_keys);
void gw_rl_table_unref(struct gw_rl_table *t);
/* Takes a token for key. Returns 1 when allowed; 0 with *out_wait_ms. *out_evicted is set
 * when a key was evicted to make room. */
int gw_rl_take(struct gw_rl_table *t, uint64_t key_hash, uint64_t now_ms, uint64_t *out_wait_ms,
               int *out_evicted);
size_t gw_rl_len(struct gw_rl_table *t);

/* ---- outliers, budget, breaker
 * ------------------------------------------------------------------- */

/* Ejection time for the k-th ejection in a row: base * 2^k, at most max. */
uint64_t gw_outlier_backoff_ms(uint64_t base_ms, uint64_t max_ms, uint32_t k);
/* Endpoints that may be ejected at once: floor(num_eps * percent / 100). */
size_t gw_outlier_cap(size_t num_eps, uint32_t percent);
/* Result of one attempt on endpoint ep (failed: a 5xx or no response). Ejects it when it
 * reached consecutive_errors and the cap allows. Returns 1 when it was ejected now. */
int gw_outlier_result(const struct gw_cluster *cl, uint32_t ep, int failed, uint64_t now_ms,
                      int worker);
/* Whether endpoint ep is out of rotation now (unhealthy or ejected). */
int gw_ep_down(const struct gw_cluster *cl, uint32_t ep, uint64_t now_ms);

/* Retry budget of one cluster on one worker (in its gw_lb_state). */
struct gw_budget {
    uint32_t inflight; /* requests in flight */
    uint32_t retrying; /* of those, requests that retried */
    double floor_tokens;
    uint64_t floor_ms;
};

/* Whether one more request may retry: while retrying + 1 stays within budget_percent of
 * inflight, or a token of the min_per_s floor is there (taken). */
int gw_budget_allow(struct gw_budget *b, uint32_t budget_percent, uint32_t min_per_s,
                    uint64_t now_ms);

/* The circuit breaker limit a new upstream connection would pass, NULL when none. */
const char *gw_breaker_conn_check(const struct gw_cluster *cl);

enum gw_gov_counter {
    GW_C_EJECTIONS = 0,
    GW_C_EJECTIONS_CAPPED,
    GW_C_RETRIES,
    GW_C_RETRY_BUDGET,
    GW_C_CB_CONNECTIONS,
    GW_C_CB_PENDING,
    GW_C_CB_REQUESTS,
    GW_C_RATE_LIMITED,
    GW_C_RL_EVICTIONS,
    GW_C_HC_OK,
    GW_C_HC_FAIL,
    GW_C_NUM
};

void gw_gov_count(const struct gw_cluster *cl, int worker, enum gw_gov_counter c);
/* Answers 503 for an open circuit breaker (limit: max_requests, ...). */
void gw_breaker_reply(struct cn_http_req *creq, const struct gw_cluster *cl, const char *limit);
/* Runs the route's rate limits (after the request filters: ext holds the verified JWT claims
 * for jwt_claim keys). Returns 1 when the request was answered (429). */
int gw_ratelimit_check(const struct gw_route *rt, struct cn_http_req *creq,
                       const struct gw_ext_state *ext, int worker, uint64_t now_ms);

/* ---- snapshot lifecycle -------------------------------------------------------------------------
 */

/* Fresh state for every cluster, endpoint and rate limit of a new snapshot. 0 or CN_ENOMEM. */
int gw_gov_prepare(struct cn_gw_snapshot *s);
/* Takes over the state of old (may be NULL) for what s keeps: clusters by name, endpoints by
 * cluster and address, rate limits by route, position and parameters. Before s is published. */
void gw_gov_inherit(struct cn_gw_snapshot *s, const struct cn_gw_snapshot *old);
void gw_gov_release(struct cn_gw_snapshot *s);
void gw_cl_state_unref(struct gw_cl_state *st);
struct gw_cl_state *gw_cl_state_ref(struct gw_cl_state *st);

/* /metrics: governance counters by cluster and route, endpoint states. Under gw->lock. */
void gw_gov_metrics_write(struct cn_buf *b, struct cn_gw *gw);

/* ---- health checker (health.c) --------------------------------------------------------------- */

struct gw_health;
/* The current snapshot changed (called by cn_gw_publish, under gw->lock). */
void gw_health_notify(struct gw_health *h);

#endif
