/* Where the registry keeps what must survive a restart: configuration items and their
 * history, explicit services, persistent instances. An interface, so that the embedded
 * SQLite store (store-sqlite.c) and a cluster store on etcd (phase 2: keys for these records,
 * leases for ephemeral instances, watch plus periodic reconciliation) are interchangeable.
 *
 * Contract: every call returns 0 or a negative CN_E* code with a message in err; a call that
 * returned 0 is durable (on disk, or acknowledged by the cluster's quorum). The registry calls
 * the store under its store lock (and its naming writer lock, but for the embedded store's
 * persistent instance writes, committed in groups without it), so a store needs no locking of
 * its own. */
#ifndef CN_REG_STORE_H
#define CN_REG_STORE_H

#include "base/base.h"

#include <stdint.h>

struct cn_reg_store;
struct cn_reg;
struct cn_buf;

/* One configuration item or one history row (strings NUL-terminated). */
struct cn_reg_cfg_rec {
    const char *ns, *group, *data_id;
    const char *content;
    size_t content_len;
    const char *md5, *type;
    uint64_t version; /* history id; unique and increasing across the store */
    uint64_t mtime_ms;
    const char *op; /* history rows: "publish", "delete", "rollback" */
    const char *who;
};

/* A service created explicitly, or a persistent instance (strings NUL-terminated). */
struct cn_reg_svc_rec {
    const char *ns, *group, *service, *metadata;
    double protect_threshold;
};
struct cn_reg_inst_rec {
    const char *ns, *group, *service, *cluster, *ip, *metadata;
    uint16_t port;
    double weight;
    int healthy, enabled;
    int ephemeral; /* only a CN_REG_STORE_SHARED store is given ephemeral instances */
};

/* Loading: called for every stored record at open. */
struct cn_reg_load_cbs {
    void *ctx;
    int (*cfg)(void *ctx, const struct cn_reg_cfg_rec *r);
    int (*svc)(void *ctx, const struct cn_reg_svc_rec *r);
    int (*inst)(void *ctx, const struct cn_reg_inst_rec *r);
};

/* Called for history rows, newest first; nonzero stops. */
typedef int (*cn_reg_history_cb)(void *ctx, const struct cn_reg_cfg_rec *r);

struct cn_reg_store_ops {
    int (*load)(struct cn_reg_store *s, const struct cn_reg_load_cbs *cbs, char *err,
                size_t err_len);
    /* Writes the item (content NULL: deletes it) and appends a history row in one
     * transaction; fills r->version with the new history id. max_history > 0 prunes the
     * item's history to that many rows. */
    int (*cfg_write)(struct cn_reg_store *s, struct cn_reg_cfg_rec *r, uint64_t max_history,
                     char *err, size_t err_len);
    int (*cfg_history)(struct cn_reg_store *s, const char *ns, const char *group,
                       const char *data_id, uint64_t limit, int with_content, cn_reg_history_cb cb,
                       void *ctx, char *err, size_t err_len);
    int (*svc_put)(struct cn_reg_store *s, const struct cn_reg_svc_rec *r, char *err,
                   size_t err_len);
    int (*svc_del)(struct cn_reg_store *s, const char *ns, const char *group, const char *service,
                   char *err, size_t err_len);
    int (*inst_put)(struct cn_reg_store *s, const struct cn_reg_inst_rec *r, char *err,
                    size_t err_len);
    int (*inst_del)(struct cn_reg_store *s, const char *ns, const char *group, const char *service,
                    const char *cluster, const char *ip, uint16_t port, char *err, size_t err_len);
    /* Optional (group commit): inst_put and inst_del calls between txn_begin and txn_commit
     * are one transaction, durable together when txn_commit returns 0 (one sync to disk for
     * all); after a failed call, txn_rollback undoes them. */
    int (*txn_begin)(struct cn_reg_store *s, char *err, size_t err_len);
    int (*txn_commit)(struct cn_reg_store *s, char *err, size_t err_len);
    void (*txn_rollback)(struct cn_reg_store *s);
    /* Optional (NULL for the embedded store). Called once at the end of cn_reg_new, after
     * load: a shared store reads the cluster's state into reg through the reg_apply_* calls
     * (internal.h) and keeps it current from then on (watch, reconciliation) until close. */
    int (*attach)(struct cn_reg_store *s, struct cn_reg *reg, char *err, size_t err_len);
    /* Optional: appends the store's own Prometheus metrics. */
    void (*metrics)(struct cn_reg_store *s, struct cn_buf *out);
    void (*close)(struct cn_reg_store *s);
};

enum cn_reg_store_flags {
    /* A cluster store shared by several Cairn nodes: ephemeral instances are written to it
     * too (under the node's lease), and changes made by other nodes arrive through attach. */
    CN_REG_STORE_SHARED = 1 << 0
};

/* A store: its operations and its state (implementations embed this first). */
struct cn_reg_store {
    const struct cn_reg_store_ops *ops;
    unsigned flags;    /* enum cn_reg_store_flags */
    uint64_t last_rev; /* shared stores: the revision of the last successful write, read by the
                        * registry under store_lock right after the call */
};

/* Opens (creating) the SQLite store in dir (created 0750 when missing): dir/registry.db in
 * WAL mode with synchronous=FULL, so a committed write survives a crash. NULL with a message
 * in err on failure. Closed through ops->close. */
struct cn_reg_store *cn_reg_store_sqlite_open(const char *dir, char *err, size_t err_len);

/* The cluster store on etcd (store-etcd.c, docs/registry.md "Cluster mode"). */
struct cn_reg_etcd_opts {
    const char *endpoints; /* comma-separated http://HOST:PORT */
    const char *prefix;    /* key prefix, e.g. "/cairn" */
    uint64_t dial_timeout_ms, request_timeout_ms;
    uint64_t lease_ttl_ms; /* this node's lease: its ephemeral instances outlive it by this */
    uint64_t reconcile_ms; /* full re-read of the cluster's state */
    uint64_t max_response_bytes;
};
/* Connects (grants this node's lease). NULL with a message in err when no endpoint answers or
 * an option is wrong. Closed through ops->close (which revokes the lease). */
struct cn_reg_store *cn_reg_store_etcd_open(const struct cn_reg_etcd_opts *o, char *err,
                                            size_t err_len);

#endif
