/* The registry: service discovery (namespaces, groups, services, clusters, instances) and a
 * configuration center, shared by every worker thread of a process.
 *
 * Threads. One cn_reg is shared by all workers. Writers (register, deregister, beat, expiry,
 * config publish) serialise on a mutex; naming reads (instance lists, the hot path) do not
 * lock: each service publishes an immutable snapshot of its instances, pre-rendered as
 * Nacos JSON, through an atomic pointer, and readers pin snapshots with epoch-based
 * reclamation (a per-thread slot holding the epoch it entered at; a retired snapshot is freed
 * once every reader that could have seen it has left). A write only marks the snapshot
 * stale: the first read after it builds the new one under the mutex. Persistent instance
 * writes on the embedded store sync to disk outside the mutex, several in one commit (group
 * commit). Configuration reads take a short mutex (their rate is that of client start-ups and
 * change notifications, not requests).
 *
 * Time. Every call that depends on time takes now_ms (milliseconds on the wall clock): the
 * caller owns the clock, so tests drive expiry with an injected one.
 *
 * Storage. Configuration, its history, services created explicitly and persistent instances
 * go through a cn_reg_store (SQLite by default, store.h) before a write is answered;
 * ephemeral instances live in memory and are rebuilt by heartbeats after a restart. */
#ifndef CN_REGISTRY_H
#define CN_REGISTRY_H

#include "base/buf.h"

#include <stdint.h>

#define CN_REG_DEFAULT_NAMESPACE "public"
#define CN_REG_DEFAULT_GROUP     "DEFAULT_GROUP"
#define CN_REG_DEFAULT_CLUSTER   "DEFAULT"

/* Name limits (bytes), as Nacos enforces them (NamingUtils / ParamUtils). */
#define CN_REG_MAX_NAME_BYTES     512   /* namespace, group, service, cluster, dataId */
#define CN_REG_MAX_IP_BYTES       128   /* an IP or host name */
#define CN_REG_MAX_METADATA_BYTES 16384 /* one instance's or service's metadata as JSON */

/* Heartbeat defaults of ephemeral instances (Nacos' Constants.DEFAULT_HEART_BEAT_*). */
#define CN_REG_BEAT_INTERVAL_MS  5000
#define CN_REG_BEAT_TIMEOUT_MS   15000
#define CN_REG_DELETE_TIMEOUT_MS 30000

struct cn_reg;
struct cn_reg_store;

/* Limits and defaults; every one is a setting (registry.* in docs/configuration.md). */
struct cn_reg_opts {
    uint64_t max_services;              /* across namespaces; past it a register gets 400 */
    uint64_t max_instances_per_service; /* past it a register gets 400 */
    uint64_t max_configs;               /* configuration items across namespaces */
    uint64_t max_config_bytes;          /* one item's content */
    uint64_t max_history;               /* history rows kept per item (oldest pruned) */
    uint64_t beat_interval_ms;          /* defaults of ephemeral instances, overridden per */
    uint64_t beat_timeout_ms;           /* instance by preserved.heart.beat.interval, */
    uint64_t delete_timeout_ms; /* preserved.heart.beat.timeout, preserved.ip.delete.timeout */
    uint64_t cache_millis;      /* cacheMillis in list answers (client poll period) */
};

void cn_reg_opts_default(struct cn_reg_opts *o);

/* Creates a registry over store (may be NULL: memory only, for tests) and loads what the
 * store holds (configuration, services, persistent instances). The registry owns the store
 * on success and closes it in cn_reg_free. NULL with a message in err on failure (the store
 * is then still the caller's). */
struct cn_reg *cn_reg_new(const struct cn_reg_opts *opts, struct cn_reg_store *store,
                          uint64_t now_ms, char *err, size_t err_len);
void cn_reg_free(struct cn_reg *reg);

/* ---- naming ------------------------------------------------------------------------------ */

/* An instance as given to a register or update. Slices need not be NUL-terminated.
 * metadata is a JSON object of strings ("{}" when empty). */
struct cn_reg_instance {
    struct cn_slice ns, group, service, cluster, ip;
    uint16_t port;
    double weight; /* 0 .. 10000 */
    int healthy, enabled, ephemeral;
    struct cn_slice metadata;
};

/* Field-level failure: which parameter and why, for a Nacos-style 400. */
struct cn_reg_error {
    const char *param; /* static: "serviceName", "ip", ... or NULL */
    char message[256];
};

/* Registers (or replaces) an instance. A persistent instance is stored before this returns.
 * Returns 0, CN_EINVAL (bad field: err says which), CN_ELIMIT (a limit: err says which),
 * CN_EIO (the store failed). Persistent writes in flight at once may pass
 * max_instances_per_service by their number (each is checked against memory before any of
 * them is applied). */
int cn_reg_register(struct cn_reg *reg, const struct cn_reg_instance *in, uint64_t now_ms,
                    struct cn_reg_error *err);
/* Updates the fields of an existing instance (PUT). CN_ENOENT when it does not exist. */
int cn_reg_update(struct cn_reg *reg, const struct cn_reg_instance *in, uint64_t now_ms,
                  struct cn_reg_error *err);
/* One write of cn_reg_put_batch: in (slices valid until the call returns), whether it is an
 * update (must_exist), and its result as cn_reg_register or cn_reg_update gives it. */
struct cn_reg_put {
    struct cn_reg_instance in;
    int must_exist;
    int rc;                  /* out */
    struct cn_reg_error err; /* out, when rc != 0 */
};
/* Registers or updates each of puts[0..num) as cn_reg_register / cn_reg_update called one
 * after the other would (concurrent with each other: an update does not see a register of
 * the same batch), each with its own result; the persistent ones reach the embedded store
 * together, durable with one sync to disk. */
void cn_reg_put_batch(struct cn_reg *reg, struct cn_reg_put *const puts[], size_t num,
                      uint64_t now_ms);
/* Removes an instance (graceful deregistration). 0 also when it was absent, as Nacos. */
int cn_reg_deregister(struct cn_reg *reg, struct cn_slice ns, struct cn_slice group,
                      struct cn_slice service, struct cn_slice cluster, struct cn_slice ip,
                      uint16_t port, int ephemeral, uint64_t now_ms, struct cn_reg_error *err);

/* A heartbeat of an ephemeral instance. When the instance is unknown and reg_if_absent is
 * set (the beat carried the instance, as Nacos clients send it), it is registered from it.
 * Returns 0 with *out_interval_ms (the instance's beat interval), CN_ENOENT when unknown
 * (Nacos code 20404), or an error as cn_reg_register. */
int cn_reg_beat(struct cn_reg *reg, const struct cn_reg_instance *in, int reg_if_absent,
                uint64_t now_ms, uint64_t *out_interval_ms, struct cn_reg_error *err);

/* Runs expiry: ephemeral instances silent past their beat timeout become unhealthy, past
 * their delete timeout are removed; retired snapshots are reclaimed. Returns how many
 * instances changed state. Call every few hundred milliseconds. */
size_t cn_reg_tick(struct cn_reg *reg, uint64_t now_ms);

/* What an instance list query asks for. clusters: comma-separated, empty for all. */
struct cn_reg_query {
    struct cn_slice ns, group, service, clusters;
    int healthy_only;
};

/* Appends the Nacos v1 /instance/list JSON for q into out (see docs/registry.md for the
 * fields). Lock-free, but for the first list of a service after it changed, which builds its
 * snapshot under the writer mutex. Returns 0, CN_ELIMIT when out's maximum is too small,
 * CN_ENOMEM. */
int cn_reg_list_json(struct cn_reg *reg, const struct cn_reg_query *q, uint64_t now_ms,
                     struct cn_buf *out);

/* One instance as read back (cn_reg_instances). Strings are NUL-terminated copies owned by
 * the array (freed by cn_reg_instances_free). */
struct cn_reg_inst_view {
    char *cluster, *ip, *metadata;
    uint16_t port;
    double weight;
    int healthy, enabled, ephemeral;
    uint64_t last_beat_ms;
};
/* The instances of a service (all clusters), in registration order. Returns the count (0
 * for an unknown service) with *out set (free with cn_reg_instances_free), or a negative
 * code. */
long cn_reg_instances(struct cn_reg *reg, struct cn_slice ns, struct cn_slice group,
                      struct cn_slice service, struct cn_reg_inst_view **out);
void cn_reg_instances_free(struct cn_reg_inst_view *v, long n);

/* Service-level attributes. */
struct cn_reg_service {
    struct cn_slice ns, group, service;
    double protect_threshold; /* 0 .. 1 */
    struct cn_slice metadata; /* JSON object of strings */
};
/* Creates (or, with update set, changes) a service explicitly; an explicit service stays
 * when its last instance leaves. Stored. CN_EEXIST-like CN_EINVAL when creating twice. */
int cn_reg_service_put(struct cn_reg *reg, const struct cn_reg_service *s, int update,
                       struct cn_reg_error *err);
/* Deletes a service; CN_EINVAL (err says why) when it still has instances, CN_ENOENT when
 * absent. */
int cn_reg_service_delete(struct cn_reg *reg, struct cn_slice ns, struct cn_slice group,
                          struct cn_slice service, struct cn_reg_error *err);
/* Appends {"namespaceId","groupName","name","protectThreshold","metadata","clusters":[...]}
 * (Nacos' GET /ns/service) into out. CN_ENOENT when absent. */
int cn_reg_service_json(struct cn_reg *reg, struct cn_slice ns, struct cn_slice group,
                        struct cn_slice service, struct cn_buf *out);
/* Appends a JSON array of the service names of ns (and group, when its len > 0), sorted,
 * page page_no (1-based) of page_size, and stores the total in *out_count. */
int cn_reg_service_names(struct cn_reg *reg, struct cn_slice ns, struct cn_slice group,
                         uint64_t page_no, uint64_t page_size, struct cn_buf *out,
                         uint64_t *out_count);

struct cn_reg_stats {
    uint64_t services, instances, healthy_instances, ephemeral_instances, configs;
    uint64_t registers, deregisters, beats, expired_unhealthy, expired_removed;
    uint64_t config_publishes;
    uint64_t generation; /* shared store (cluster mode): the store revision applied last */
    int shared;          /* 1 in cluster mode */
};
void cn_reg_stats(struct cn_reg *reg, struct cn_reg_stats *out);
/* Appends the registry's Prometheus metrics (cairn_registry_*: sizes, the storage backend,
 * the generation in cluster mode, and the store's own counters) into out. */
void cn_reg_metrics_write(struct cn_reg *reg, struct cn_buf *out);

/* Persistent instances as (service key, ip, port) for the server-side health checker.
 * health_path is the HTTP path to GET (metadata "preserved.health.checker.path"), empty for
 * a TCP connect check. */
struct cn_reg_check {
    char *ns, *group, *service, *cluster, *ip, *health_path;
    uint16_t port;
};
long cn_reg_checks(struct cn_reg *reg, struct cn_reg_check **out);
void cn_reg_checks_free(struct cn_reg_check *c, long n);
/* Sets the health of a persistent instance from a check result. No-op when it left. */
void cn_reg_set_health(struct cn_reg *reg, const struct cn_reg_check *c, int healthy,
                       uint64_t now_ms);

/* Called after a service's instance list changed, on the writer's thread with the registry's
 * writer lock held: it must only record the fact (take no registry call). Set once before the
 * workers start. */
typedef void (*cn_reg_svc_change_cb)(void *ctx, const char *ns, const char *group,
                                     const char *service);
void cn_reg_set_svc_change_cb(struct cn_reg *reg, cn_reg_svc_change_cb cb, void *ctx);
/* More service-change callbacks beside that one (the gateway's discovery under cairn up),
 * with the same rules; at most CN_REG_MAX_SVC_WATCHERS. Thread-safe. 0 or CN_ELIMIT. remove
 * forgets the (cb, ctx) pair; after it returns the callback is not running and not called. */
#define CN_REG_MAX_SVC_WATCHERS 4
int cn_reg_add_svc_change_cb(struct cn_reg *reg, cn_reg_svc_change_cb cb, void *ctx);
void cn_reg_remove_svc_change_cb(struct cn_reg *reg, cn_reg_svc_change_cb cb, void *ctx);

/* ---- configuration center ------------------------------------------------------------------ */

/* A configuration item's key. tenant "" and "public" are the same namespace. */
struct cn_reg_cfg_key {
    struct cn_slice ns, group, data_id;
};

/* Publishes content (stored with its history row before returning). who is the writer (a
 * client IP or token subject). Returns 0 with *out_version, CN_EINVAL/CN_ELIMIT (err says
 * which field), CN_EIO. */
int cn_reg_cfg_publish(struct cn_reg *reg, const struct cn_reg_cfg_key *k, struct cn_slice content,
                       struct cn_slice type, const char *who, uint64_t now_ms,
                       uint64_t *out_version, struct cn_reg_error *err);
/* Deletes an item (a history row records it). 0 also when absent, as Nacos answers true. */
int cn_reg_cfg_delete(struct cn_reg *reg, const struct cn_reg_cfg_key *k, const char *who,
                      uint64_t now_ms, struct cn_reg_error *err);
/* Reads an item: content into out_content, md5 (32 hex + NUL) and type (up to 63 bytes + NUL)
 * into the arrays; version and time when not NULL. CN_ENOENT when absent. */
int cn_reg_cfg_get(struct cn_reg *reg, const struct cn_reg_cfg_key *k, struct cn_buf *out_content,
                   char out_md5[33], char out_type[64], uint64_t *out_version,
                   uint64_t *out_mtime_ms);
/* The current md5 of an item into out_md5; "" when absent. */
void cn_reg_cfg_md5(struct cn_reg *reg, const struct cn_reg_cfg_key *k, char out_md5[33]);
/* Appends the history of an item as a JSON array, newest first, at most limit rows:
 * [{"version","op":"publish"|"delete"|"rollback","md5","type","who","time"}]. */
int cn_reg_cfg_history_json(struct cn_reg *reg, const struct cn_reg_cfg_key *k, uint64_t limit,
                            struct cn_buf *out);
/* Publishes the content an item had at version again ("rollback" in its history). CN_ENOENT
 * when that version is not in the item's history. */
int cn_reg_cfg_rollback(struct cn_reg *reg, const struct cn_reg_cfg_key *k, uint64_t version,
                        const char *who, uint64_t now_ms, uint64_t *out_version,
                        struct cn_reg_error *err);
/* Appends a JSON array of the items of ns (group when its len > 0):
 * [{"dataId","group","tenant","md5","type","version","time"}]. */
int cn_reg_cfg_list_json(struct cn_reg *reg, struct cn_slice ns, struct cn_slice group,
                         struct cn_buf *out);

/* Called after every committed change of an item, outside the registry's locks, on the
 * writer's thread. Set once before the workers start. */
typedef void (*cn_reg_cfg_change_cb)(void *ctx, const struct cn_reg_cfg_key *k);
void cn_reg_set_cfg_change_cb(struct cn_reg *reg, cn_reg_cfg_change_cb cb, void *ctx);

/* ---- helpers shared with the Nacos API and tests ---------------------------------------- */

/* Lower-case hex MD5 of data into out (33 bytes with the NUL). */
void cn_reg_md5_hex(const void *data, size_t len, char out[33]);
/* Normalises a namespace: empty and "public" give "public". */
struct cn_slice cn_reg_ns(struct cn_slice ns);
/* Checks a name (service, group, cluster, dataId, namespace): 1..CN_REG_MAX_NAME_BYTES bytes,
 * no control characters, no "@@". Returns 0 or CN_EINVAL. */
int cn_reg_check_name(struct cn_slice s);
/* Parses instance metadata as a Nacos client sends it: a JSON object (values of any scalar
 * type become strings) or "k=v,k2=v2". Appends the canonical JSON object into out. Returns 0,
 * CN_EINVAL (malformed), CN_ELIMIT (past CN_REG_MAX_METADATA_BYTES). */
int cn_reg_parse_metadata(struct cn_slice in, struct cn_buf *out);

#endif
