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

/* An instance as the writer side keeps it (under reg->lock). cluster, ip, metadata and
 * health_path are NUL-terminated strings in one allocation that starts at cluster (freed
 * with it); key is the hash of (cluster, ip, port) that the service's index files it under. */
struct inst {
    char *cluster, *ip, *metadata;
    uint32_t cluster_len, ip_len;
    uint64_t key;
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

/* One host of a snapshot: its pre-rendered JSON object host_text[off, off+len), whose
 * "healthy" value sits at host_text[hoff, hoff+hlen) ("true" or "false"). */
struct snap_host {
    uint32_t off, len, hoff, hlen;
    const char *cluster; /* NUL-terminated, inside the snapshot's allocation */
    uint8_t healthy, enabled;
};

/* An immutable view of a service's instances, replaced whole when it is rebuilt. States:
 * published (svc->snap points to it) -> retired (replaced; freed when no reader holds it).
 * One allocation: header, hosts, cluster names, text, tail.
 *
 * text is the common instance list answer (every host, no cluster filter) up to its time:
 * {"name":...,"hosts":[ then the host objects joined by ',' (host_text, host_len bytes, where
 * the hosts' offsets point), then ],"lastRefTime": — and tail is what follows the time. */
struct snap {
    uint64_t revision;
    double protect_threshold;
    size_t num, num_healthy, num_enabled;
    struct snap_host *hosts;
    const char *text, *host_text, *tail;
    size_t text_len, host_len, tail_len;
    char checksum[33];
};

/* A service. Its names never change after creation; the rest is the writer's. Linked into a
 * bucket chain while it exists; unlinked services are retired like snapshots.
 *
 * Snapshots are built lazily: a write changes the instances, sets stale and tells the
 * watchers; the first reader that finds stale set takes reg->lock and builds the snapshot
 * (clearing stale), so a run of writes with no read between them costs no copy of the
 * service's hosts. A reader that finds stale clear serves snap without a lock. */
struct svc {
    _Atomic(struct svc *) next;
    uint64_t hash;
    /* In the service's own allocation; grouped: "group@@name" */
    char *ns, *group, *name, *grouped;
    uint32_t ns_len, group_len, name_len;
    _Atomic(struct snap *) snap;
    _Atomic int stale; /* the instances changed after snap was built */
    /* writer side */
    struct inst *insts; /* in registration order */
    size_t num, cap;
    /* Open-addressing index of insts by inst.key: a slot holds position + 1, 0 when empty.
     * index_cap is a power of two at least twice num (0 with no table). */
    uint32_t *index;
    size_t index_cap;
    /* No local ephemeral instance of the service can expire at or before this time:
     * cn_reg_tick skips the service until then (lowered by every write, recomputed by the
     * tick's scan). */
    uint64_t due_ms;
    double protect_threshold;
    char *metadata;
    int explicit_;    /* created by the service API: stays when empty */
    unsigned pending; /* persistent writes in flight for it (struct reg_pw): it stays meanwhile */
    unsigned growing; /* those of them adding an instance it did not have: they count against
                       * max_instances_per_service as if applied */
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
    /* Persistent instance writes in flight on an embedded store (naming.c, "group commit"):
     * pw_head..pw_tail in seq order, from pw_queued on not yet being committed. The list
     * under pw_lock (taken after lock, never before; never with store_lock); pw_seq and
     * pw_applied under lock. */
    uv_mutex_t pw_lock;
    uv_cond_t pw_done; /* a batch was committed (with pw_lock) */
    uv_cond_t pw_turn; /* a write was applied (with lock) */
    struct reg_pw *pw_head, *pw_tail, *pw_queued;
    int pw_committing;   /* a writer is committing a batch */
    uint64_t pw_seq;     /* the last seq given */
    uint64_t pw_applied; /* every write up to this seq is applied (or failed) */
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

/* ---- naming's shared helpers (naming.c); all but reg_seterr and reg_inst_key under lock --- */

void reg_seterr(struct cn_reg_error *err, const char *param, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Frees what no reader can hold any more. */
void reg_reclaim(struct cn_reg *reg);
/* Frees an instance's strings and fragment (not the struct). */
void reg_inst_release(struct inst *in);
/* Also inside a read section. */
struct svc *reg_find_svc(struct cn_reg *reg, struct cn_slice ns, struct cn_slice group,
                         struct cn_slice name);
/* Finds or creates a service. NULL with err set (may be NULL) on a limit or no memory. */
struct svc *reg_get_svc(struct cn_reg *reg, struct cn_slice ns, struct cn_slice group,
                        struct cn_slice name, struct cn_reg_error *err);
/* Unlinks s and retires it; its watchers learn it is gone. */
void reg_drop_svc(struct cn_reg *reg, struct svc *s);
/* The hash an instance is indexed by. */
uint64_t reg_inst_key(struct cn_slice cluster, struct cn_slice ip, uint16_t port);
struct inst *reg_find_inst(struct svc *s, struct cn_slice cluster, struct cn_slice ip,
                           uint16_t port);
/* Files insts[pos] in s's index (room made by reg_index_reserve). */
void reg_index_put(struct svc *s, size_t pos);
/* Refiles every instance after insts moved (no allocation). */
void reg_index_rebuild(struct svc *s);
/* Room in s's instance array and index for n instances: 0 or CN_ENOMEM. */
int reg_index_reserve(struct svc *s, size_t n);
/* After s changed: marks its snapshot stale and tells the watchers. */
void reg_publish(struct cn_reg *reg, struct svc *s);
/* Removes instance i of s; drops s when it empties, is implicit and has no write pending. */
void reg_remove_inst(struct cn_reg *reg, struct svc *s, size_t i);
/* Checks an instance's fields: 0 or CN_EINVAL with err set. */
int reg_check_instance(const struct cn_reg_instance *in, struct cn_reg_error *err);
/* Writes in to the store when it goes there (not while applying the store's own change). */
int reg_store_inst(struct cn_reg *reg, const struct svc *s, struct inst *in,
                   struct cn_reg_error *err);
/* Adds or replaces an instance, storing it first when it goes to the store. */
int reg_put_locked(struct cn_reg *reg, const struct cn_reg_instance *in, int must_exist,
                   uint64_t now_ms, struct cn_reg_error *err);

/* ---- persistent writes on the embedded store: group commit (commit.c) -------------------- */

enum { PW_QUEUED, PW_COMMITTING, PW_DONE };

/* One persistent write in flight; lives on its writer's stack. States (under pw_lock):
 * QUEUED (waits for a commit) -> COMMITTING -> DONE (rc says how it went); between
 * reg_pw_enqueue and reg_pw_apply it is in reg->pw_head's list and s->pending counts it. */
struct reg_pw {
    struct reg_pw *next;
    uint64_t seq;
    struct svc *s; /* kept from being dropped by s->pending */
    int del;
    int grows;     /* a put of an instance s did not have when it was checked (s->growing) */
    struct inst n; /* put: the new instance (owned until applied); del: its key only */
    char *del_key; /* del: copy of cluster and ip, which n points into (freed by apply) */
    int state, rc;
    char err[256];
};

/* Whether a write of an instance (ephemeral or not) takes the group commit path. */
int reg_deferred(const struct cn_reg *reg, int ephemeral);
/* Under the lock: 1 when a put of s's instance (cluster, ip, port) is in flight. */
int reg_put_pending(struct cn_reg *reg, const struct svc *s, struct cn_slice cluster,
                    struct cn_slice ip, uint16_t port);
/* Under the lock: w (its s, n, del and del_key set) joins the writes in flight. */
void reg_pw_enqueue(struct cn_reg *reg, struct reg_pw *w);
/* Without any lock: returns once w, and every write enqueued before it, is durable or failed. */
void reg_pw_wait(struct cn_reg *reg, struct reg_pw *w);
/* Under the lock (released while waiting for w's turn): applies w to memory when it was
 * stored and takes it out of the list. Returns w->rc, with err set on failure. */
int reg_pw_apply(struct cn_reg *reg, struct reg_pw *w, struct cn_reg_error *err);

/* configs.c: loading and freeing configuration items. */
int reg_cfg_init(struct cn_reg *reg);
void reg_cfg_release(struct cn_reg *reg);
int reg_cfg_load(void *ctx, const struct cn_reg_cfg_rec *r);

/* The instance a stored record describes (its strings point into r). */
struct cn_reg_instance reg_inst_of_rec(const struct cn_reg_inst_rec *r);

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
