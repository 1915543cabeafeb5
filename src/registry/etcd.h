/* A small etcd v3 client over etcd's JSON gateway (/v3/kv/..., /v3/lease/..., /v3/watch) with
 * libcurl: keys and values travel base64-encoded, int64 values as JSON strings. No gRPC.
 *
 * Threads. A struct cn_etcd (the endpoints and which one answered last) is shared; each thread
 * that calls etcd owns a struct cn_etcd_conn (one curl handle, reused across calls so its
 * connection stays open). A conn is not thread-safe.
 *
 * Failover. A call goes to the endpoint that answered last; when it cannot connect, a try
 * times out, or it gets a 5xx/no-leader answer, the next endpoint is tried, round after round
 * until the request timeout (so a call made during an election waits for the new leader). A
 * When no member answered at all for a whole request timeout, the calls of the next
 * CN_ETCD_DOWN_MS (or the request timeout, if shorter) fail at once, from any thread, rather
 * than each wait the request timeout again (counted by cn_etcd_fast_failures). A
 * write retried after a timeout may have been applied by the first member: callers write
 * values that are idempotent (a put of the same key and value) or accept a duplicate (a
 * history row).
 *
 * Parsing. The response parsers (cn_etcd_parse_*) take the raw JSON text, never trust it, and
 * are fuzzed (tests/fuzz/fuzz_etcd_json.c). */
#ifndef CN_REG_ETCD_H
#define CN_REG_ETCD_H

#include "base/base.h"
#include "base/buf.h"

#include <stdint.h>

#define CN_ETCD_MAX_ENDPOINTS 16
/* How long calls fail at once after one found no member answering (see above). */
#define CN_ETCD_DOWN_MS 1000
/* The largest response a call accepts (a full range of the registry's keys included). */
#define CN_ETCD_DEFAULT_MAX_RESPONSE (256u << 20)

struct cn_etcd_opts {
    const char *endpoints; /* comma-separated http://host:port */
    uint64_t dial_timeout_ms;
    uint64_t request_timeout_ms;
    uint64_t max_response_bytes; /* 0: CN_ETCD_DEFAULT_MAX_RESPONSE */
};

struct cn_etcd;
struct cn_etcd_conn;

/* Parses the endpoint list (each http://HOST:PORT, no path). NULL with a message naming
 * registry.etcd.endpoints in err. */
struct cn_etcd *cn_etcd_new(const struct cn_etcd_opts *o, char *err, size_t err_len);
void cn_etcd_free(struct cn_etcd *e);
size_t cn_etcd_num_endpoints(const struct cn_etcd *e);
/* The endpoint calls go to first (as given in the list). */
const char *cn_etcd_endpoint(const struct cn_etcd *e, size_t i);
size_t cn_etcd_current(const struct cn_etcd *e);
/* Moves the preferred endpoint to the one after i (used when a stream on i broke). */
void cn_etcd_next(struct cn_etcd *e, size_t i);
uint64_t cn_etcd_failovers(const struct cn_etcd *e);
/* Calls failed at once because etcd was found unreachable just before. */
uint64_t cn_etcd_fast_failures(const struct cn_etcd *e);

struct cn_etcd_conn *cn_etcd_conn_new(struct cn_etcd *e);
void cn_etcd_conn_free(struct cn_etcd_conn *c);
/* The timeout of one try on one member (default: a quarter of the request timeout, 250 ms to
 * 2 s); past it the next member is tried, until the request timeout. */
void cn_etcd_conn_set_attempt_timeout(struct cn_etcd_conn *c, uint64_t ms);

/* One key-value as etcd returns it. key and value point into the parse's storage. */
struct cn_etcd_kv {
    struct cn_slice key, value;
    int64_t create_rev, mod_rev, version, lease;
};

/* A parsed response. States: zeroed (cn_etcd_resp_init) -> filled by a parse or a call ->
 * released (cn_etcd_resp_release, which also makes it zeroed again). */
struct cn_etcd_resp {
    int64_t revision; /* header.revision */
    /* range: the kvs; watch: the events' kvs (event_delete[i] says which are deletions) */
    struct cn_etcd_kv *kvs;
    uint8_t *event_delete;
    size_t num_kvs;
    int64_t count;    /* range: "count" */
    int more;         /* range: "more" */
    int64_t deleted;  /* deleterange: "deleted" */
    int succeeded;    /* txn: "succeeded" */
    int64_t lease_id; /* lease grant: "ID" */
    int64_t ttl;      /* lease grant / keepalive: "TTL" (keepalive: 0 = the lease is gone) */
    int64_t watch_id; /* watch */
    int created, canceled;
    int64_t compact_revision; /* watch: set when the start revision was compacted */
    char error[256];          /* an error answer's message ("" when none) */
    struct cn_buf store;      /* decoded keys and values */
};

void cn_etcd_resp_init(struct cn_etcd_resp *r);
void cn_etcd_resp_release(struct cn_etcd_resp *r);

enum cn_etcd_kind {
    CN_ETCD_RANGE,
    CN_ETCD_PUT,
    CN_ETCD_DELETE,
    CN_ETCD_TXN,
    CN_ETCD_LEASE_GRANT,
    CN_ETCD_LEASE_KEEPALIVE,
    CN_ETCD_LEASE_REVOKE,
    CN_ETCD_WATCH /* one line of the watch stream: {"result":{...}} */
};

/* Parses a response body of kind into out (initialised by the caller). Returns 0, or
 * CN_ESYNTAX when the text is not a response of that kind (out->error says why), CN_ELIMIT
 * when the decoded keys and values together could pass max_bytes (each base64 string of n
 * bytes counts n / 4 * 3 + 3), or CN_EIO for an error answer from etcd
 * ({"error":...} with its message in out->error). */
int cn_etcd_parse(enum cn_etcd_kind kind, const char *json, size_t len, size_t max_bytes,
                  struct cn_etcd_resp *out);

/* ---- calls (blocking, with failover; out is filled on 0) ----------------------------- */

/* Puts key=value, attached to lease when nonzero. */
int cn_etcd_put(struct cn_etcd_conn *c, struct cn_slice key, struct cn_slice value, int64_t lease,
                struct cn_etcd_resp *out, char *err, size_t err_len);
/* Reads key, or with prefix set every key that starts with key. keys_only and count_only as
 * etcd's; limit 0 is no limit. sort_create_desc: newest first by creation. */
struct cn_etcd_range_opts {
    int prefix, keys_only, count_only, sort_create_desc;
    int64_t limit;
    int64_t revision; /* 0: latest */
};
int cn_etcd_range(struct cn_etcd_conn *c, struct cn_slice key, const struct cn_etcd_range_opts *o,
                  struct cn_etcd_resp *out, char *err, size_t err_len);
/* Deletes key (prefix: every key starting with it). out->deleted says how many. */
int cn_etcd_delete(struct cn_etcd_conn *c, struct cn_slice key, int prefix,
                   struct cn_etcd_resp *out, char *err, size_t err_len);

/* A transaction without comparisons: every op applied atomically in one revision. */
struct cn_etcd_op {
    int del; /* 0: put */
    struct cn_slice key, value;
    int64_t lease;
};
int cn_etcd_txn(struct cn_etcd_conn *c, const struct cn_etcd_op *ops, size_t num_ops,
                struct cn_etcd_resp *out, char *err, size_t err_len);

int cn_etcd_lease_grant(struct cn_etcd_conn *c, int64_t ttl_s, struct cn_etcd_resp *out, char *err,
                        size_t err_len);
/* Renews lease once; out->ttl is 0 when etcd no longer knows it (expired). */
int cn_etcd_lease_keepalive(struct cn_etcd_conn *c, int64_t lease, struct cn_etcd_resp *out,
                            char *err, size_t err_len);
int cn_etcd_lease_revoke(struct cn_etcd_conn *c, int64_t lease, char *err, size_t err_len);

/* ---- watch stream ------------------------------------------------------------------------ */

/* Called for every complete message of the stream, parsed; returning nonzero ends the
 * stream. */
typedef int (*cn_etcd_watch_cb)(void *ctx, struct cn_etcd_resp *msg);

struct cn_etcd_watch;
/* Opens a watch of every key under prefix from start_rev (inclusive) on the preferred
 * endpoint; messages arrive through cb from cn_etcd_watch_poll. NULL with err on failure
 * (nothing connected yet: a connection failure shows in cn_etcd_watch_poll). */
struct cn_etcd_watch *cn_etcd_watch_new(struct cn_etcd *e, struct cn_slice prefix,
                                        int64_t start_rev, cn_etcd_watch_cb cb, void *ctx,
                                        char *err, size_t err_len);
/* Waits up to timeout_ms for stream data (or cn_etcd_watch_wakeup) and delivers complete
 * messages. Returns 0 while the stream runs, 1 when it ended (closed, failed, or cb asked):
 * err says why; the caller frees it and opens another. */
int cn_etcd_watch_poll(struct cn_etcd_watch *w, uint64_t timeout_ms, char *err, size_t err_len);
/* Interrupts a cn_etcd_watch_poll from another thread. */
void cn_etcd_watch_wakeup(struct cn_etcd_watch *w);
/* The endpoint index the stream is on. */
size_t cn_etcd_watch_endpoint(const struct cn_etcd_watch *w);
void cn_etcd_watch_free(struct cn_etcd_watch *w);

/* The key just past every key starting with prefix (etcd's range_end for a prefix), into
 * out. */
int cn_etcd_prefix_end(struct cn_slice prefix, struct cn_buf *out);

#endif
