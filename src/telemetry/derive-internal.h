/* Private to derive.c, derive-pair.c, derive-trace.c and derive-query.c: the tables behind
 * derive.h. Named derive-internal.h rather than the part's internal.h because only the derive
 * sources share it. */
#ifndef CN_TELEMETRY_DERIVE_INTERNAL_H
#define CN_TELEMETRY_DERIVE_INTERNAL_H

#include "telemetry/derive.h"

#include <pthread.h>

#define NAME_NONE UINT32_MAX
#define SVC_NONE  UINT16_MAX
#define IDX_NONE  UINT32_MAX
#define NUM_KINDS 6 /* cn_span_kind values */

/* Linear-probing index over an array of items. A used slot holds the item index + 1 in its
 * low 32 bits and the low 32 bits of the item's hash above: probes compare that tag before
 * they touch an item, and growing or deleting (by backward shift, no tombstones) needs no
 * hash recomputed. Invariant: num * 2 <= mask + 1 once slots exist. */
struct itab {
    uint64_t *slots;
    uint32_t mask;
    uint32_t num;
};

#define ITAB_ITEM(slot) ((uint32_t)(slot)-1)
#define ITAB_TAG(slot)  ((uint32_t)((slot) >> 32))

/* Interned names. Bytes live in chunks that never move or shrink, NUL-terminated, so a name's
 * slice stays valid until cn_derive_free. svc is the service a name denotes, if any. */
struct name {
    uint64_t hash;
    const char *ptr;
    uint32_t len;
    uint16_t svc;
};

struct name_chunk {
    struct name_chunk *next;
    size_t used, size;
    char data[];
};

struct names {
    struct name *items;
    uint32_t num, cap;
    struct itab idx;
    struct name_chunk *chunks;
    size_t chunk_bytes;
};

struct service {
    uint32_t name;
    uint32_t series[NUM_KINDS]; /* service-level series per kind, IDX_NONE until seen */
    uint32_t num_span_names;    /* its entries in cn_derive.spnames */
};

/* A (service, span name, kind) seen on any span, indexed by hash of (svc, kind, name). */
struct spname {
    uint64_t hash;
    uint32_t name;
    uint16_t svc;
    uint8_t kind;
};

/* A RED series: op NAME_NONE for a service-level one (reached from struct service, not
 * indexed), else (svc, op, kind), indexed by hash of (svc, kind, op name). */
struct series {
    uint64_t hash;
    uint32_t op;
    uint16_t svc;
    uint8_t kind;
};

/* An edge key. caller and callee are name IDs (a callee may be a peer name, not a service). */
struct edge {
    uint32_t caller, callee;
    uint8_t type;
    uint8_t uninstrumented;
};

/* Cells of one time bucket, keyed by series or edge index; the key is the first field. */
struct red_cell {
    uint32_t series;
    uint32_t errors;
    struct cn_sketch sk;
};

struct edge_cell {
    uint32_t edge;
    uint32_t errors;
    uint64_t count;
    struct cn_sketch server, client;
};

/* Cells of one kind in one bucket: an array and its index (hash of the key). */
struct ctab {
    void *cells;
    uint32_t num, cap;
    struct itab idx;
};

/* One slot of the ring: bucket number bno (start / bucket_ns) while used. mod is the
 * cn_derive.mod_seq of the last write into it (rollups built later are fresh for it), mod_ns
 * the cn_derive.now of that write. */
struct bucket {
    uint64_t bno;
    uint64_t mod, mod_ns;
    int used;
    struct ctab red, edge;
    size_t bytes; /* heap bytes of the cells, their indexes and sketches */
};

/* A pairing half waiting for its peer, keyed by (trace ID, id): the span ID of a caller
 * (CLIENT, PRODUCER), the parent or linked span ID of a callee (SERVER, CONSUMER); several
 * callees may share a key. Halves are in a list in order of arrival (expiry order); free
 * items are chained through next. */
enum { ROLE_FREE = 0, ROLE_CALLER = 1, ROLE_CALLEE = 2 };

struct half {
    uint8_t trace_id[16];
    uint8_t id[8];
    uint64_t start_ns, dur_ns, expires_ns;
    uint32_t hash; /* low bits of the key's hash */
    uint32_t peer; /* CLIENT: name ID of the peer it names, NAME_NONE, or PEER_LATER */
    uint32_t prev, next;
    uint16_t svc;
    uint8_t role, type, error, matched;
};

/* Spans handled per hold of the write lock: bounds how long a query waits. */
#define CHUNK_SPANS 1024

/* A CLIENT half's peer is looked up in its span's attributes only if it is still waiting
 * when cn_derive_add_spans ends its chunk (or its window ends first): most CLIENTs meet
 * their SERVER in the same batch and never need it. Until then peer is PEER_LATER and the
 * half is listed in later[] with its span. */
#define PEER_LATER (UINT32_MAX - 1)

struct peer_later {
    uint32_t half;
    const struct cn_span *span;
};

struct pending {
    struct half *items;
    uint32_t cap, used;
    uint32_t free_head;
    uint32_t oldest, newest;
    struct itab idx;
    struct peer_later *later; /* CHUNK_SPANS of them, allocated with the first */
    uint32_t num_later;
};

/* A trace summary. The root is the span without a parent once one arrived (TS_ROOT), else
 * the earliest span so far. Services: up to 4 inline, past 4 in ext (max_trace_services). */
enum { TS_USED = 1 << 0, TS_ROOT = 1 << 1, TS_SVC_TRUNC = 1 << 2 };

struct tsum {
    uint8_t trace_id[16];
    uint64_t start_ns, end_ns;
    uint32_t spans, errors;
    uint32_t root_op;
    uint16_t root_svc;
    uint8_t nsvc;
    uint8_t flags;
    union {
        uint16_t in[4];
        uint16_t *ext;
    } sv;
};

#define TS_INLINE    4
#define TBLOCK_SHIFT 10 /* summaries per time-range block: 1024 */

/* Start-time range of the summaries in one block of ring positions. cur covers summaries
 * written since the write position last entered the block, prev those written before that
 * are not yet overwritten; prev empties when the write position leaves the block. A range is
 * conservative: min only falls, max only rises, and a summary's start only falls. */
struct tblock {
    uint64_t cur_min, cur_max, prev_min, prev_max;
};

/* Summaries in a ring of max positions written in order (first in, first out), allocated as
 * it fills; idx maps trace ID to position. */
struct traces {
    struct tsum *ring;
    uint32_t cap, max;
    uint32_t svc_cap; /* max_trace_services: the length of every ext array */
    uint32_t head;    /* next position written */
    uint32_t num;
    uint32_t hwm; /* positions ever handed out: [0, hwm) hold summaries or zeros, the rest of
                   * the ring was never touched (not even zeroed: untouched pages cost no
                   * memory, and a page fault here costs ~14 us) */
    struct itab idx;
    struct tblock *blocks;
    uint32_t num_blocks;
    size_t ext_bytes;
};

/* Rollups: the RED and edge cells of aligned blocks of ROLL_SPAN_0 and ROLL_SPAN_1 buckets
 * merged, built by queries the first time they need a block that lies behind the newest
 * two buckets, and reused while no bucket of the block was written since (a query over an hour
 * of 10 s buckets merges ~20 pieces instead of 360). A rollup is the same cells as its
 * buckets merged, so answers do not change. Slot k % nslots of a level holds block k.
 * Everything here is guarded by lock, taken under the derive lock (read or write), never
 * the other way round. Invariant: bytes is the heap held by every used slot's cells and
 * sketches, at most max_bytes (max_rollup_bytes) after each build. */
#define ROLL_LEVELS 2
#define ROLL_SPAN_0 6u    /* buckets a level-0 block: a minute of 10 s buckets */
#define ROLL_SPAN_1 60u   /* level 1: ten minutes */
#define ROLL_SLOTS  4096u /* slots a level at most (direct-mapped) */

struct rollup {
    uint64_t block; /* first bucket / span */
    uint64_t built; /* cn_derive.mod_seq when built */
    uint64_t tick;  /* last use, for eviction */
    int used;
    struct bucket b; /* its cells; b.bytes is their heap */
};

struct rollups {
    pthread_mutex_t lock;
    struct rollup *slots[ROLL_LEVELS];
    uint32_t nslots[ROLL_LEVELS];
    size_t bytes, max_bytes;
    uint64_t tick;
    uint64_t hits, builds, refused; /* pieces served by a rollup; rollups built; over budget */
    int inited;                     /* lock initialised */
};

struct cn_derive {
    struct cn_derive_opts o;
    struct cn_sketch_cfg skc;
    pthread_rwlock_t lock;

    /* Everything below: written under the write lock, read under the read lock. */
    struct cn_derive_stats st;
    uint64_t now;
    int started; /* a now has been seen: ring_head is set */

    struct names names;
    struct service *services;
    uint32_t num_services;
    struct series *series;
    uint32_t num_series, cap_series, num_ops;
    struct itab series_idx;

    struct bucket *ring; /* num_buckets slots: bucket bno in slot bno % num_buckets */
    uint64_t mod_seq;    /* writes into buckets so far (struct bucket.mod) */
    struct rollups roll;
    uint64_t ring_head; /* newest bucket number */
    uint64_t ring_lo;   /* oldest bucket number kept (retention or memory) */
    uint64_t seal_next; /* buckets below it were trimmed (bucket_seal) */
    size_t bucket_bytes;

    struct edge *edges;
    uint32_t num_edges, cap_edges;
    struct itab edge_idx;

    struct pending pend;
    struct traces tr;

    struct spname *spnames;
    uint32_t num_spnames, cap_spnames;
    struct itab spname_idx;
};

/* derive.c */
int cn_derive__itab_reserve(struct itab *t, uint32_t init_slots);
void cn_derive__itab_put(struct itab *t, uint64_t h, uint32_t item);
void cn_derive__itab_del(struct itab *t, uint32_t pos);
/* Name ID of s (cut as interning cuts it), NAME_NONE when unknown. */
uint32_t cn_derive__find_name(const struct cn_derive *d, struct cn_slice s);
uint32_t cn_derive__intern(struct cn_derive *d, struct cn_slice s);
/* s cut to max_name_bytes as interning cuts it. */
struct cn_slice cn_derive__cut(const struct cn_derive *d, struct cn_slice s);
struct cn_slice cn_derive__name(const struct cn_derive *d, uint32_t id);
/* Series index of (svc, kind, op) or IDX_NONE. */
uint32_t cn_derive__find_series(const struct cn_derive *d, uint16_t svc, uint8_t kind,
                                struct cn_slice op);
/* The bucket bno when kept, else NULL. */
struct bucket *cn_derive__bucket_at(const struct cn_derive *d, uint64_t bno);
/* The bucket for start time t, created if needed; NULL (counted by the caller) outside the
 * ring. */
struct bucket *cn_derive__bucket_for(struct cn_derive *d, uint64_t t);
/* The cell of key in b's table, created if needed; NULL when refused (counted). */
void *cn_derive__cell(struct cn_derive *d, struct bucket *b, struct ctab *t, size_t size,
                      uint32_t key);
const void *cn_derive__find_cell(const struct ctab *t, size_t size, uint32_t key);
/* The new cell of key in t (not there yet) for a rollup: no memory budget, no byte count.
 * NULL on a failed allocation. */
void *cn_derive__ctab_add(struct ctab *t, size_t size, uint32_t key);
size_t cn_derive__ctab_bytes(const struct ctab *t, size_t size);
/* Adds v (key k) to a cell's sketch, keeping the bucket's byte count. */
void cn_derive__sketch_add(struct cn_derive *d, struct bucket *b, struct cn_sketch *sk, double v,
                           int32_t k);

/* derive-roll.c */
typedef int (*cn_derive__piece_cb)(void *ctx, const struct bucket *b);
/* Read lock held. Calls cb for the kept buckets of [lo, hi] (bucket numbers) in order, with
 * whole aligned blocks replaced by their rollups where one is fresh, or, with build set, can
 * be built: the same cells, merged. Building merges every cell of a block, so only callers
 * that read most cells (edges: all of them) build; the others use what exists. Stops at and
 * returns cb's nonzero value; 0 after the last. */
int cn_derive__each_piece(struct cn_derive *d, uint64_t lo, uint64_t hi, int build,
                          cn_derive__piece_cb cb, void *ctx);
/* Frees what bucket b holds (sketches, cells, indexes) and zeroes it; returns the bytes it
 * accounted for, for the caller's own counter. */
size_t cn_derive__bucket_release(struct bucket *b);
int cn_derive__rollups_init(struct cn_derive *d);
void cn_derive__rollups_release(struct cn_derive *d);
size_t cn_derive__rollups_bytes(struct cn_derive *d);

/* derive-pair.c */
/* The hash of the key cn_derive__pair looks up first for s (0 when it has none, or that is
 * the hash): CLIENT and PRODUCER spans wait under their own ID, SERVER spans look for their
 * parent. key: that hash computed ahead (to fetch its slot), or 0 to compute it again. */
uint64_t cn_derive__pair_key(const struct cn_span *s);
void cn_derive__pair(struct cn_derive *d, const struct cn_span *s, uint16_t svc, uint64_t dur,
                     int err, uint64_t key);
void cn_derive__expire_halves(struct cn_derive *d);
/* Looks up the peers of the CLIENT halves still waiting for them (see PEER_LATER). Called
 * while the spans given to cn_derive__pair since the last call are still alive. */
void cn_derive__resolve_peers(struct cn_derive *d);
void cn_derive__pending_release(struct pending *p);
size_t cn_derive__pending_bytes(const struct pending *p);

/* derive-spans.c */
/* name is raw cut by cn_derive__cut, h its cn_derive__span_name_hash: the same hash as the RED
 * series of (svc, kind, name), so a span's name is hashed once for both. */
uint64_t cn_derive__span_name_hash(uint16_t svc, uint8_t kind, struct cn_slice name);
void cn_derive__span_name(struct cn_derive *d, uint16_t svc, uint8_t kind, struct cn_slice raw,
                          struct cn_slice name, uint64_t h);
void cn_derive__span_names_release(struct cn_derive *d);
size_t cn_derive__span_names_bytes(const struct cn_derive *d);

/* derive-trace.c */
int cn_derive__traces_init(struct traces *t, uint32_t max, uint32_t svc_cap);
void cn_derive__traces_release(struct traces *t);
/* The trace of the span added last, found again without hashing while nothing evicted it
 * (within one locked run of cn_derive__trace_add calls). */
struct cn_derive__last_trace {
    uint8_t id[16];
    uint32_t pos;
    int valid;
};
void cn_derive__trace_add(struct cn_derive *d, const struct cn_span *s, uint16_t svc, int err,
                          struct cn_derive__last_trace *last);
/* Fetches the index slot of trace ID id into the cache, for a cn_derive__trace_add soon. */
void cn_derive__trace_prefetch(const struct cn_derive *d, const uint8_t id[16]);
const struct tsum *cn_derive__find_trace(const struct cn_derive *d, const uint8_t id[16]);
size_t cn_derive__traces_bytes(const struct traces *t);
/* Services of a summary (nsvc of them). */
static inline const uint16_t *cn_derive__tsum_services(const struct tsum *ts)
{
    return ts->nsvc > TS_INLINE ? ts->sv.ext : ts->sv.in;
}

#endif
