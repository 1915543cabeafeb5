/* Private to src/gateway: the compiled configuration snapshot (routes, matcher, clusters,
 * balancers, filters) and the per-worker state that refers to it. */
#ifndef CN_GATEWAY_INTERNAL_H
#define CN_GATEWAY_INTERNAL_H

#include "base/arena.h"
#include "gateway/ext.h"
#include "gateway/gateway.h"
#include "gateway/gov.h"
#include "http/head.h"
#include "http/http-t.h"
#include "http/server.h"

#include <llhttp.h>
#include <regex.h>
#include <stdatomic.h>
#include <sys/socket.h>

#define GW_MAX_HOST      255  /* bytes of a Host value matched (longer: no host route) */
#define GW_MAX_QUERY_VAL 1024 /* a query parameter's decoded value compared at most */

/* ---- statistics: persistent across reloads, one slot per worker ------------------------- */

#define GW_LAT_BUCKETS 14 /* the server's bounds (cn_http_lat_bounds) */

struct gw_stats_w {
    atomic_uint_fast64_t by_class[6]; /* status / 100; 0: no answer (client gone) */
    atomic_uint_fast64_t lat[GW_LAT_BUCKETS + 1];
    atomic_uint_fast64_t lat_sum_us;
    atomic_uint_fast64_t upstream_errors[4]; /* enum gw_up_err */
    atomic_uint_fast64_t connects;           /* upstream connections opened */
    atomic_uint_fast64_t gov[GW_C_NUM];      /* enum gw_gov_counter */
    char pad[64];
};

enum gw_up_err { GW_ERR_CONNECT = 0, GW_ERR_RESET, GW_ERR_TIMEOUT, GW_ERR_BAD_RESPONSE };

/* Kept by name in the process root for its lifetime (routes and clusters come and go with
 * reloads; their counters stay). */
struct gw_stats {
    char *name;
    int kind; /* 0 route, 1 cluster */
    struct gw_stats *next;
    int nworkers;
    struct gw_stats_w w[];
};

/* ---- snapshot ---------------------------------------------------------------------------- */

struct gw_header_op {
    struct cn_slice name;
    struct cn_slice value;
};

struct gw_header_mod {
    struct gw_header_op *set;
    size_t num_set;
    struct gw_header_op *add;
    size_t num_add;
    struct cn_slice *remove;
    size_t num_remove;
};

enum gw_filter_kind {
    GW_F_REQUEST_HEADERS = 0,
    GW_F_RESPONSE_HEADERS,
    GW_F_URL_REWRITE,
    GW_F_REDIRECT,
    GW_F_JWT, /* ext.h: request filters run by gw_ext_request */
    GW_F_KEY_AUTH,
    GW_F_CORS,
    GW_F_RATE_LIMIT,
};

enum gw_path_mod { GW_PM_NONE = 0, GW_PM_FULL, GW_PM_PREFIX };

/* One entry of a route's filter chain, applied in order. New kinds (auth, rate limits, CORS)
 * add an enum value and a union member. */
struct gw_filter {
    enum gw_filter_kind kind;
    union {
        struct gw_header_mod headers;
        struct {
            struct cn_slice hostname; /* empty: keep the Host */
            enum gw_path_mod path_mod;
            struct cn_slice path;
        } rewrite;
        struct {
            struct cn_slice scheme;   /* empty: the request's (http) */
            struct cn_slice hostname; /* empty: the request's host */
            int port;                 /* 0: the request's (or the scheme's default) */
            enum gw_path_mod path_mod;
            struct cn_slice path;
            int status;
        } redirect;
        const struct gw_jwt *jwt;
        const struct gw_keyauth *keyauth;
        const struct gw_cors *cors;
        struct gw_ratelimit ratelimit;
    } u;
};

enum gw_path_type { GW_PATH_EXACT = 0, GW_PATH_PREFIX, GW_PATH_REGEX };
enum gw_value_type { GW_VAL_EXACT = 0, GW_VAL_REGEX };

struct gw_kv_match {
    struct cn_slice name;
    struct cn_slice value;
    enum gw_value_type type;
    regex_t *re;
};

struct gw_route;

/* One entry of a route's matches. Precedence among matches of one host group: path kind
 * (exact, then prefix by length, then regex), then a method, then more headers, then more
 * query parameters, then configuration order. */
struct gw_match {
    enum gw_path_type path_type;
    struct cn_slice path; /* prefix: without a trailing '/' (except "/") */
    regex_t *path_re;
    int method; /* llhttp method, -1: any */
    struct gw_kv_match *headers;
    size_t num_headers;
    struct gw_kv_match *query;
    size_t num_query;
    struct gw_route *route;
    size_t order;
};

struct gw_timeouts {
    uint64_t connect_ms;
    uint64_t first_byte_ms; /* request sent -> response head */
    uint64_t total_ms;      /* 0: none */
    uint64_t idle_ms;       /* no byte either way */
};

struct gw_cluster;
struct gw_disc_cfg; /* discovery.h */

struct gw_backend {
    struct gw_cluster *cluster;
    uint32_t weight;
};

struct gw_route {
    struct cn_slice name;
    size_t index;
    struct cn_slice *hostnames; /* exact or "*.suffix"; none: every host */
    size_t num_hostnames;
    struct gw_filter *filters;
    size_t num_filters;
    const struct gw_filter *redirect; /* the RequestRedirect filter, if any */
    const struct gw_filter *rewrite;  /* the URLRewrite filter, if any */
    struct gw_backend *backends;
    size_t num_backends;
    uint32_t total_weight;
    struct gw_timeouts timeouts; /* set fields override the cluster's */
    unsigned timeouts_set;       /* bit per field: connect, first_byte, total, idle */
    int has_ratelimit;           /* a RateLimit filter (gw_ratelimit_check) */
    struct gw_stats *stats;
};

enum gw_policy { GW_LB_ROUND_ROBIN = 0, GW_LB_WEIGHTED, GW_LB_LEAST_REQUEST, GW_LB_HASH };
enum gw_hash_on { GW_HASH_HEADER = 0, GW_HASH_COOKIE, GW_HASH_CLIENT_IP };

struct gw_endpoint {
    struct sockaddr_storage addr;
    struct cn_slice name; /* "host:port" as configured */
    uint32_t weight;
    size_t global; /* index among every endpoint of the snapshot */
    struct gw_ep_state *st;
};

struct gw_ring_point {
    uint64_t hash;
    uint32_t ep;
};

#define GW_RING_POINTS_PER_WEIGHT 160

struct gw_cluster {
    struct cn_slice name;
    size_t index;
    enum gw_policy policy;
    enum gw_hash_on hash_on;
    struct cn_slice hash_key; /* header or cookie name */
    struct gw_endpoint *eps;
    size_t num_eps;
    struct gw_ring_point *ring; /* sorted by hash */
    size_t ring_len;
    struct gw_timeouts timeouts;
    uint32_t max_idle;         /* idle keep-alive connections kept per endpoint per worker */
    uint64_t pool_idle_ms;     /* an idle pooled connection older than this is closed */
    struct gw_cluster_gov gov; /* health, outliers, retries, circuit breaker */
    struct gw_stats *stats;
    const struct gw_disc_cfg *disc; /* endpoints from a registry service, NULL: static */
};

/* Open-addressing map from a byte string to a pointer (matcher tables). */
struct gw_map_slot {
    struct cn_slice key;
    uint64_t hash;
    void *val;
};

struct gw_map {
    struct gw_map_slot *slots;
    size_t cap; /* power of two, 0 when empty */
    size_t len;
};

/* Matches sharing one exact path or one prefix, best first. */
struct gw_mlist {
    struct gw_match **v;
    size_t n;
};

/* The path matcher of one host group. */
struct gw_group {
    struct gw_map exact;  /* path -> gw_mlist */
    struct gw_map prefix; /* prefix -> gw_mlist */
    struct gw_mlist regex;
    int has_root_prefix; /* prefix "/" present (in prefix map under "") */
};

struct gw_wild {
    struct cn_slice suffix; /* ".example.com" for "*.example.com" */
    struct gw_group group;
};

struct gw_limits {
    struct cn_http_limits http;
    uint64_t max_response_header_bytes;
    uint64_t max_response_headers;
    int batch_upstream_sends; /* queue upstream sends per loop iteration (ev/sendq.h) */
};

struct gw_tls; /* tls.h */

struct gw_listener {
    struct cn_slice name;
    struct cn_slice address;
    struct sockaddr_storage addr;
    struct gw_tls *tls; /* the certificate store of a TLS listener, NULL: plain HTTP */
};

/* The compiled, immutable configuration. Shared by every worker; a worker and each of its
 * in-flight requests hold a reference; the last unref frees it (on any thread). */
struct cn_gw_snapshot {
    atomic_int refs;
    struct cn_arena arena;
    char *source; /* file name for messages */
    uint64_t generation;
    uint64_t published_ns; /* uv_hrtime() when it became current (workers' adopt lag) */
    struct gw_listener *listeners;
    size_t num_listeners;
    struct cn_slice admin_address;
    uint64_t workers;
    struct gw_limits limits;
    int via;        /* add Via */
    int request_id; /* add X-Request-Id when absent */
    struct gw_route *routes;
    size_t num_routes;
    struct gw_cluster *clusters;
    size_t num_clusters;
    size_t num_eps; /* across clusters */
    struct gw_match *matches;
    size_t num_matches;
    /* matcher */
    struct gw_map hosts;  /* exact host -> gw_group */
    struct gw_wild *wild; /* longest suffix first */
    size_t num_wild;
    struct gw_group any;
    regex_t **regexes; /* to free */
    size_t num_regexes;
    struct gw_tracing tracing; /* ext.h */
    struct gw_jwks **jwks;     /* key sets to unref (config-ext.c) */
    size_t num_jwks, cap_jwks;
    struct gw_jwks_remote **remotes; /* fetchers to stop */
    size_t num_remotes, cap_remotes;
    /* Set in a snapshot derived by discovery (discovery.c): the configuration it copies with
     * discovered endpoints. Its clusters, routes, matches and matcher are its own; the rest
     * (strings, filters, regexes, key sets, fetchers) is base's, held by this reference. */
    struct cn_gw_snapshot *base;
};

/* ---- matcher (match.c) --------------------------------------------------------------------- */

/* What the matcher looks at, so unit tests need no connection. */
struct gw_req_view {
    struct cn_slice host; /* lower case, without the port */
    struct cn_slice path;
    struct cn_slice query;
    int method;
    const struct cn_http_header *headers;
    size_t num_headers;
};

/* Builds the matcher from snap->matches. Returns 0 or CN_ENOMEM. */
int gw_matcher_build(struct cn_gw_snapshot *snap);
/* Frees what the matcher allocated outside the arena. */
void gw_matcher_free(struct cn_gw_snapshot *snap);
/* The best match for the request, NULL when none. */
const struct gw_match *gw_match_request(const struct cn_gw_snapshot *snap,
                                        const struct gw_req_view *rv);
/* Lower-cases host[0..len) without a trailing ":port" or '.' into dst (GW_MAX_HOST + 1).
 * Returns the length, or -1 when it does not fit. */
int gw_host_normalize(struct cn_slice host, char *dst);

uint64_t gw_hash(const void *p, size_t len);
void *gw_map_get(const struct gw_map *m, struct cn_slice key);

/* ---- balancing (balance.c) ----------------------------------------------------------------- */

/* Per worker, per cluster: round robin position, smooth weighted round robin weights, and
 * requests in flight per endpoint (least request). */
struct gw_lb_state {
    uint64_t rr;
    int64_t *current; /* [num_eps] */
    uint32_t *active; /* [num_eps] */
    struct gw_budget budget;
};

static inline uint64_t gw_rand(uint64_t *s)
{
    /* xorshift64* */
    uint64_t x = *s;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *s = x;
    return x * 0x2545F4914F6CDD1DULL;
}

/* Picks an endpoint index. key/key_len: the hash key (consistent hash), NULL when the
 * request has none (then a random endpoint). */
uint32_t gw_lb_pick(const struct gw_cluster *cl, struct gw_lb_state *st, uint64_t *rng,
                    const char *key, size_t key_len);
/* gw_lb_pick skipping endpoints that are down (unhealthy or ejected) and, when it can, the
 * endpoint avoid (-1: none; a retry's previous one). When every endpoint is down the
 * policy's pick is used anyway. */
uint32_t gw_lb_pick_up(const struct gw_cluster *cl, struct gw_lb_state *st, uint64_t *rng,
                       const char *key, size_t key_len, uint64_t now_ms, int64_t avoid);
/* Smooth weighted round robin over weights[0..n): the index picked. current has n slots. */
size_t gw_swrr(int64_t *current, const uint32_t *weights, size_t stride, size_t n, uint64_t total);
/* Builds cl->ring from its endpoints. Returns 0 or CN_ENOMEM. */
int gw_ring_build(struct cn_gw_snapshot *snap, struct gw_cluster *cl);
/* The ring's endpoint for a hash. */
uint32_t gw_ring_lookup(const struct gw_cluster *cl, uint64_t h);

/* ---- filters (filter.c) -------------------------------------------------------------------- */

/* The upstream path after a URLRewrite (into dst, at most dst_len). Returns the length or -1
 * when it does not fit. m is the match that selected the route (prefix replacement). */
int gw_rewrite_path(const struct gw_filter *f, const struct gw_match *m, struct cn_slice path,
                    char *dst, size_t dst_len);
/* The Location of a RequestRedirect. tls: the request came over TLS (the scheme when the
 * filter sets none). host: the request's Host value as sent. Returns the length or -1. */
int gw_redirect_location(const struct gw_filter *f, const struct gw_match *m, int tls,
                         struct cn_slice host, struct cn_slice path, struct cn_slice query,
                         char *dst, size_t dst_len);
/* Whether header name is removed or replaced by a header modifier. */
int gw_header_mod_drops(const struct gw_header_mod *hm, struct cn_slice name);
/* Hop-by-hop: Connection, Keep-Alive, TE, Trailer, Transfer-Encoding, Upgrade, Proxy-*. */
int gw_is_hop_by_hop(struct cn_slice name);

/* Whether s equals lit ignoring ASCII case, for lit a lower-case literal of letters, digits
 * and '-' (a field name, a Connection token) and s a field name or value as the strict head
 * scanners pass them. OR-ing 0x20 folds A-Z onto a-z; the only other bytes it folds onto
 * such a character are control bytes, which no name holds and no value but HTAB (folded
 * onto ')', in no literal). One OR and one compare per byte where cn_slice_case_eq folds
 * both sides: it was a tenth of the proxy's user-space instructions. */
static inline int gw_lit_eq(struct cn_slice s, struct cn_slice lit)
{
    if (s.len != lit.len)
        return 0;
    for (size_t i = 0; i < s.len; i++)
        if (((unsigned char)s.ptr[i] | 0x20) != (unsigned char)lit.ptr[i])
            return 0;
    return 1;
}

/* ---- upstream responses (resp.c) ------------------------------------------------------------ */

enum gw_resp_mode { GW_RM_NONE = 0, GW_RM_LENGTH, GW_RM_CHUNKED, GW_RM_CLOSE };

/* Parser of the response heads of one upstream connection. hdrs (hdr_cap slots, owned by the
 * caller) receive the fields of the last head; slices point into the caller's buffer. */
struct gw_resp {
    struct cn_head_scan scan;
    struct cn_http_limits lim;
    struct cn_http_header *hdrs;
    size_t num_hdrs, hdr_cap;
    int status;
    int keep_alive;
    size_t head_len;
};

void gw_resp_init(struct gw_resp *r, struct cn_http_header *hdrs, size_t hdr_cap,
                  uint64_t max_head_bytes);
/* Forgets a partly scanned head (the connection starts a new response). */
void gw_resp_reset(struct gw_resp *r);
/* Parses the head at buf[0..len) (resumable: call again with more bytes from the same start).
 * Returns 0 with status, keep_alive, head_len and the fields set; CN_EAGAIN for more bytes;
 * CN_ESYNTAX or CN_ELIMIT with *out_reason. */
int gw_resp_head(struct gw_resp *r, const char *buf, size_t len, const char **out_reason);
/* How the body of the parsed head is delimited (head_req: the request was HEAD). Returns NULL
 * or the reason for a 502. out_client_len: what the client's reply head says. */
const char *gw_resp_framing(const struct gw_resp *r, int head_req, enum gw_resp_mode *out_mode,
                            uint64_t *out_left, int64_t *out_client_len);

/* ---- stats ---------------------------------------------------------------------------------- */

void gw_stats_record(struct gw_stats *s, int worker, int status, uint64_t us);

/* ---- workers (proxy.c, gw.c) --------------------------------------------------------------- */

struct gw_upconn;
struct gw_req;

/* Idle keep-alive connections to one upstream address on one worker (LIFO: the most
 * recently used first, its peer is least likely to have timed it out). Pools outlive
 * snapshots: a reload that keeps an endpoint keeps its connections. */
struct gw_pool {
    struct sockaddr_storage addr;
    struct gw_upconn *idle;
    uint32_t num_idle;
    struct gw_pool *next;
};

/* A worker's view of one snapshot: balancer state and pools by endpoint. The worker holds
 * one reference while the view is current, each request one more; freed at zero (all on
 * the worker's thread). */
struct gw_view {
    struct cn_gw_snapshot *snap;
    int refs;
    struct gw_lb_state *lb;  /* [num_clusters] */
    int64_t **route_current; /* [num_routes][num_backends]: backend choice (SWRR) */
    struct gw_pool **pools;  /* [num_eps] */
};

struct gw_worker {
    struct cn_gw *gw;
    int id;
    uv_loop_t *loop;
    struct gw_view *view;
    atomic_uint_fast64_t generation;
    /* From a snapshot's publication to this worker running it: the last and the longest. */
    atomic_uint_fast64_t adopt_lag_last_ns, adopt_lag_max_ns;
    struct gw_pool *pools;
    struct gw_req *free_reqs;
    struct gw_upconn *conns; /* every upstream connection of the worker */
    uint64_t rng;
    struct cn_buf scratch;       /* decoded chunked response data */
    struct cn_http_header *hdrs; /* the client reply's header fields */
    size_t hdr_cap;
    int stopping;
    struct gw_tel_w *tel; /* spans and access logs being batched (export.c) */
};

struct cn_gw {
    int nworkers;
    struct gw_worker *workers;
    uv_mutex_t lock; /* current, generation, stats registry */
    struct cn_gw_snapshot *current;
    uint64_t generation;
    struct gw_stats *stats;
    atomic_uint_fast64_t reloads;
    atomic_uint_fast64_t reload_failures;
    struct gw_tel *tel;       /* the exporter (export.c), NULL until something is recorded */
    struct cn_store *store;   /* cairn up: spans and logs go there in-process */
    struct gw_health *health; /* the health checker, NULL when not started */
    struct gw_tls_root *tls;  /* TLS listeners' hooks, reload counters, file watch (tls.c) */
    /* Discovery (discovery.c): publishers (a reload, the admin API, a discovered change) take
     * publish_lock, then lock for the swap. tmpl is the configuration last given to
     * cn_gw_publish (under both locks); current is derived from it. */
    uv_mutex_t publish_lock;
    struct cn_gw_snapshot *tmpl;
    struct gw_disc *disc;
};

/* Drops a view reference (frees the view and its snapshot reference at zero). */
void gw_view_unref(struct gw_view *v);

#endif
