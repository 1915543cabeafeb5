/* The gateway: YAML configuration compiled into immutable snapshots, and the reverse proxy
 * that runs on the HTTP server's worker loops (streaming server mode). docs/gateway.md. */
#ifndef CN_GATEWAY_H
#define CN_GATEWAY_H

#include "base/buf.h"
#include "http/server.h"

#include <uv.h>

struct cn_gw_snapshot;
struct cn_gw;

/* Loads and compiles a configuration. On failure returns NULL with one line in err:
 * "FILE:LINE:COL: FIELD: message" (or "FILE: message" when no position applies). The
 * snapshot starts with one reference. */
struct cn_gw_snapshot *cn_gw_config_load_file(const char *path, char *err, size_t err_len);
struct cn_gw_snapshot *cn_gw_config_load_buffer(const char *name, const char *data, size_t len,
                                                char *err, size_t err_len);
/* Reference counting (thread-safe); unref of NULL does nothing. */
struct cn_gw_snapshot *cn_gw_snapshot_ref(struct cn_gw_snapshot *s);
void cn_gw_snapshot_unref(struct cn_gw_snapshot *s);

/* Facts of a snapshot the command needs. */
size_t cn_gw_snapshot_num_listeners(const struct cn_gw_snapshot *s);
/* Listener i's address (parsed) and name. */
const struct sockaddr_storage *cn_gw_snapshot_listener(const struct cn_gw_snapshot *s, size_t i,
                                                       const char **out_name);
const char *cn_gw_snapshot_admin(const struct cn_gw_snapshot *s);
uint64_t cn_gw_snapshot_workers(const struct cn_gw_snapshot *s);
const struct cn_http_limits *cn_gw_snapshot_limits(const struct cn_gw_snapshot *s);
/* Whether two snapshots have the same listeners (addresses, in order). */
int cn_gw_snapshot_same_listeners(const struct cn_gw_snapshot *a, const struct cn_gw_snapshot *b);

/* The process root: the current snapshot, statistics by route and cluster name, workers. */
struct cn_gw *cn_gw_new(int nworkers);
/* Frees the root after the workers are gone. */
void cn_gw_free(struct cn_gw *gw);
/* Makes snap (a reference is taken) the current configuration with the next generation.
 * Workers pick it up in cn_gw_worker_adopt. Thread-safe. Returns the generation. */
uint64_t cn_gw_publish(struct cn_gw *gw, struct cn_gw_snapshot *snap);
/* cairn up: the gateway's spans and access logs go to store in-process (instead of an
 * OTLP endpoint). Call before the first cn_gw_publish. */
struct cn_store;
void cn_gw_set_store(struct cn_gw *gw, struct cn_store *store);
/* Counts a rejected reload (shown on /metrics). */
void cn_gw_reload_failed(struct cn_gw *gw);

/* Worker side, on the worker's thread. init once (0 or CN_ENOMEM), adopt the current
 * snapshot on a reload wake, stop closes idle upstream connections (draining) and release
 * frees what is left once the loop is done. */
int cn_gw_worker_init(struct cn_gw *gw, int id, uv_loop_t *loop);
void cn_gw_worker_adopt(struct cn_gw *gw, int id);
void cn_gw_worker_stop(struct cn_gw *gw, int id);
void cn_gw_worker_release(struct cn_gw *gw, int id);
/* The client-side limits of the snapshot the worker runs (NULL before it has one). */
const struct cn_http_limits *cn_gw_worker_limits(struct cn_gw *gw, int id);
/* Generation the worker runs. */
uint64_t cn_gw_worker_generation(struct cn_gw *gw, int id);

/* Active health checks on loop (one control loop for the process, e.g. the main one): they
 * follow every snapshot published from then on. stop (on the loop's thread) closes their
 * handles; the loop must run once more to finish closing them. 0 or a negative code. */
int cn_gw_health_start(struct cn_gw *gw, uv_loop_t *loop);
void cn_gw_health_stop(struct cn_gw *gw);

/* ---- registry discovery (docs/gateway.md "Registry discovery") ---------------------------- */

/* An endpoint source in the same process (cairn up: the registry), so that the gateway does
 * not include the registry's headers. list appends the Nacos v1 /nacos/v1/ns/instance/list
 * JSON of a service (every enabled instance, healthyOnly=false; clusters "" for all) to out
 * and returns 0 or a negative code (CN_ELIMIT past out's maximum). Called on the discovery
 * thread, never under the gateway's locks. */
struct cn_gw_ep_source {
    int (*list)(void *ctx, const char *ns, const char *group, const char *service,
                const char *clusters, struct cn_buf *out);
    void *ctx;
};
/* Sets (src NULL: clears) the source of `registry: local` clusters. Thread-safe. */
void cn_gw_set_endpoint_source(struct cn_gw *gw, const struct cn_gw_ep_source *src);
/* The source's instances of a service changed. Any thread, also under the source's own locks:
 * it only marks the watch and wakes the discovery thread. */
void cn_gw_endpoints_changed(struct cn_gw *gw, const char *ns, const char *group,
                             const char *service);
/* Whether s's discovery can run in this process: CN_EINVAL with err ("FILE:LINE:COL: cluster
 * 'x' discovery: registry: local needs ...") when a cluster reads `registry: local` and no
 * source is set; else 0. */
int cn_gw_discovery_check(struct cn_gw *gw, const struct cn_gw_snapshot *s, char *err,
                          size_t err_len);
/* Starts the discovery thread after the first cn_gw_publish: it reads every discovering
 * cluster's service once before returning (the workers start with those endpoints), then
 * follows changes. 0 or a negative code. */
int cn_gw_discovery_start(struct cn_gw *gw);
/* wake(ctx) is called (on the discovery thread) after each discovered change is published,
 * to have every worker call cn_gw_worker_adopt; set it once the workers run (it is called
 * once at once). */
void cn_gw_discovery_set_wake(struct cn_gw *gw, void (*wake)(void *ctx), void *ctx);
/* Stops the thread (joined; no wake after it returns). Idempotent; cn_gw_free calls it. */
void cn_gw_discovery_stop(struct cn_gw *gw);

/* ---- TLS listeners (docs/gateway.md "TLS") --------------------------------------------------- */

/* Whether listener i of s terminates TLS. */
int cn_gw_snapshot_listener_tls(const struct cn_gw_snapshot *s, size_t i);
/* When listener i of the current snapshot has TLS, makes srv (that listener's server) take
 * its certificates from the snapshot each worker runs: a worker's new handshakes use the
 * certificate store of the snapshot it adopted last (and keep their set when a reload takes
 * the listener's TLS off: listeners change on restart only). Nothing for a plain listener.
 * After the first cn_gw_publish, before the workers start. 0 or CN_ENOMEM. */
int cn_gw_tls_attach(struct cn_gw *gw, struct cn_http_server *srv, size_t i);
/* Watches the certificate and key files of the running configuration on loop (a stat every
 * 500 ms; a changed content builds that listener's set again, a bad one is logged and the
 * running set stays). stop (on the loop's thread) closes the timer. 0 or a negative code. */
int cn_gw_tls_watch_start(struct cn_gw *gw, uv_loop_t *loop);
void cn_gw_tls_watch_stop(struct cn_gw *gw);

/* The streaming handler for the listeners' cn_http_server (ctx: the cn_gw). */
void cn_gw_handle(struct cn_http_req *req, void *ctx);

/* Appends the gateway's Prometheus metrics. Safe from any thread. */
int cn_gw_metrics_write(struct cn_buf *out, struct cn_gw *gw);

#endif
