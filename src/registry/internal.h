/* The registry's private structures (registry.h explains the threading model). */
#ifndef CN_REG_INTERNAL_H
#define CN_REG_INTERNAL_H

#include "registry/registry.h"
#include "registry/store.h"

#include <stdatomic.h>
#include <uv.h>

/* Service buckets: a fixed array of chains, so readers walk it without a lock while a
 * writer links (release store) or unlinks (then retires) services. */
#define REG_BUCKETS 4096
/* Reader slots for epoch-based reclamation: one per thread that reads; a thread past the
 * last slot reads under the writer lock instead (correct, only slower). */
#define REG_MAX_READERS 256

/* An instance as the writer side keeps it (under reg->lock). */
struct inst {
    char *cluster, *ip, *metadata;
    uint16_t port;
    double weight;
    uint8_t healthy, enabled, ephemeral;
    /* Shared store: an ephemeral instance another node owns (its key is under that node's
     * lease). This node does not expire it; it leaves when its key is deleted. */
    uint8_t remote;
    uint64_t rev;  /* shared store: revision of the instance's key as last written or applied */
    uint64_t seen; /* shared store: the reconciliation that last saw its key */
    uint64_t beat_interval_ms, beat_timeout_ms, delete_timeout_ms;
    uint64_t last_beat_ms;
    char *health_path; /* persistent: "" for TCP, else the HTTP path to GET */
    /* The instance's JSON object as lists show it, rendered when first published and again
     * when healthy differs from frag_healthy (its only field that changes in place). */
    char *frag;
    uint32_t frag_len, frag_hoff;
    uint8_t frag_healthy;
};

/* One host of a snapshot: its pre-rendered JSON object text[off, off+len), whose "healthy"
 * value sits at text[hoff, hoff+hlen) ("true" or "false"). */
struct snap_host {
    uint32_t off, len, hoff, hlen;
    const char *cluster; /* NUL-terminated, inside the snapshot's allocation */
    uint8_t healthy, enabled;
};

/* An immutable view of a service's instances, swapped whole on every change. States:
 * published (svc->snap points to it) -> retired (replaced; freed when no reader holds it). */
struct snap {
    uint64_t revision;
    uint64_t changed_ms;
    double protect_threshold;
    size_t num, num_healthy, num_enabled;
    struct snap_host *hosts;
    char *text; /* host objects joined by ',' */
    size_t text_len;
    char checksum[33];
};

/* A service. Its names never change after creation; the rest is the writer's. Linked into a
 * bucket chain while it exists; unlinked services are retired like snapshots. */
struct svc {
    _Atomic(struct svc *) next;
    uint64_t hash;
    char *ns, *group, *name, *grouped; /* grouped: "group@@name" */
    _Atomic(struct snap *) snap;
    /* writer side */
    struct inst *insts;
    size_t num, cap;
    double protect_threshold;
    char *metadata;
    int explicit_; /* created by the service API: stays when empty */
    uint64_t revision;
    uint64_t svc_rev, seen; /* shared store: as struct inst's rev and seen, for the service key */
};

struct retired {
    void *ptr;
    void (*free_fn)(void *);
    uint64_t epoch;
};

struct reader_slot {
    _Atomic uint64_t epoch; /* 0: not reading */
    char pad[64 - sizeof(uint64_t)];
};

struct cfg_item {
    struct cfg_item *next;
    uint64_t hash;
    char *ns, *group, *data_id;
    char *content;
    size_t len;
    char md5[33];
    char type[64];
    uint64_t version, mtime_ms; /* shared store: version is the key's revision */
    uint64_t seen;              /* shared store: the reconciliation that last saw its key */
};

struct cn_reg {
    struct cn_reg_opts opts;
    struct cn_reg_store *store;
    uint64_t id; /* tells thread-local reader slots of different registries apart */

    uv_mutex_t lock; /* naming writers */
    _Atomic(struct svc *) buckets[REG_BUCKETS];
    size_t num_services;
    struct retired *retired;
    size_t num_retired, cap_retired;
    _Atomic uint64_t epoch;
    struct reader_slot slots[REG_MAX_READERS];
    atomic_int num_slots;

    uv_mutex_t store_lock; /* store calls; taken after lock or cfg_lock, never before */
    /* Shared store: set (under lock) while applying a change that came from the store, so
     * that nothing is written back. */
    int applying;
    _Atomic uint64_t generation; /* shared store: the store revision applied last */

    uv_mutex_t cfg_lock; /* configuration items */
    struct cfg_item **cfg_buckets;
    size_t cfg_nbuckets, num_configs;
    cn_reg_cfg_change_cb cfg_cb;
    void *cfg_ctx;
    cn_reg_svc_change_cb svc_cb; /* called under lock after a service's snapshot changed */
    void *svc_ctx;
    struct {
        cn_reg_svc_change_cb cb;
        void *ctx;
    } svc_more[CN_REG_MAX_SVC_WATCHERS]; /* cn_reg_add_svc_change_cb, called after svc_cb */

    atomic_uint_fast64_t n_registers, n_deregisters, n_beats, n_unhealthy, n_removed, n_publishes,
        n_instances, n_healthy, n_ephemeral;
};

uint64_t reg_hash(const char *parts[], const size_t lens[], size_t n);
/* Copies a slice into a NUL-terminated heap string; NULL on allocation failure. */
char *reg_strdup(struct cn_slice s);

/* configs.c: loading and freeing configuration items. */
int reg_cfg_init(struct cn_reg *reg);
void reg_cfg_release(struct cn_reg *reg);
int reg_cfg_load(void *ctx, const struct cn_reg_cfg_rec *r);

/* ---- applying a shared store's changes (store-etcd.c) ------------------------------------
 * Changes made by other nodes (or read back by a reconciliation) go into memory without a
 * write back, and fire the service- and config-change callbacks exactly as local writes do.
 * rev is the change's store revision: a change at or below what the item already holds is
 * ignored (it is this node's own write coming back, or older). sync nonzero marks the item as
 * seen by that reconciliation (reg_sync_sweep). Return 0 or a negative CN_E* code. */
int reg_apply_inst(struct cn_reg *reg, const struct cn_reg_inst_rec *r, int remote, uint64_t rev,
                   uint64_t sync, uint64_t now_ms);
int reg_apply_inst_del(struct cn_reg *reg, const char *ns, const char *group, const char *service,
                       const char *cluster, const char *ip, uint16_t port, uint64_t rev,
                       uint64_t now_ms);
int reg_apply_svc(struct cn_reg *reg, const struct cn_reg_svc_rec *r, uint64_t rev, uint64_t sync);
int reg_apply_svc_del(struct cn_reg *reg, const char *ns, const char *group, const char *service,
                      uint64_t rev);
/* r->version is the key's revision. */
int reg_apply_cfg(struct cn_reg *reg, const struct cn_reg_cfg_rec *r, uint64_t sync);
int reg_apply_cfg_del(struct cn_reg *reg, const char *ns, const char *group, const char *data_id,
                      uint64_t rev);
/* After a full read at revision upto with stamp sync: what the read did not see and that was
 * not written after upto is gone from the store: removed here too (callbacks fire). This
 * node's own ephemeral instances missing from the store (its lease was lost) are written
 * again instead. */
void reg_sync_sweep(struct cn_reg *reg, uint64_t sync, uint64_t upto, uint64_t now_ms);
void reg_cfg_sweep(struct cn_reg *reg, uint64_t sync, uint64_t upto);

#endif
