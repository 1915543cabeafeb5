/* The embedded telemetry store: WAL, in-memory head, sealing into segment files, the
 * trace-ID map, retention. See store.h for the threads and the read interface. */
#include "telemetry/store.h"

#include "base/log.h"
#include "telemetry/derive.h"
#include "telemetry/seg.h"
#include "telemetry/tmapf.h"

#include <dirent.h>
#include <pthread.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <xxhash.h>

#define DAY_NS (86400ull * 1000000000ull)

/* Rows per row group of span segments. A trace by ID decodes every group holding one of its
 * spans whole, and rows are sorted by service, so a trace over k services reads about k
 * groups: 1024 rows cut that lookup's server CPU by ~30% against the format's default 4096,
 * for ~4% more bytes per span (bench/query.sh, BENCHMARKS.md). Log segments keep the
 * default: their searches scan time ranges, where fewer groups cost less. */
#define SPAN_GROUP_ROWS 1024u

/* One ingested batch kept whole in a head. */
struct entry {
    uint8_t *body;
    size_t len;
    struct cn_tel_batch batch;
    uint64_t bytes; /* body + arena, counted against head_max_bytes */
    uint64_t lsn;
};

/* A span or log in a head: entry index, record index, next ref of the same trace. */
struct ref {
    uint32_t entry;
    uint32_t idx;
    uint32_t next;
};

#define NO_REF UINT32_MAX

/* Open-addressing table from trace ID to the first and last ref of its span and log chains.
 * States: used slots have a nonzero `used`; load stays under 1/2. */
struct slot {
    uint8_t id[16];
    uint32_t used;
    uint32_t span_first, span_last;
    uint32_t log_first, log_last;
};

/* Batches ingested since the last seal. Entries are in LSN order. */
struct head {
    struct entry *entries;
    size_t num_entries, cap_entries;
    struct ref *span_refs, *log_refs;
    size_t num_span_refs, cap_span_refs, num_log_refs, cap_log_refs;
    struct slot *slots;
    size_t num_slots, used_slots;
    uint64_t bytes;
    uint64_t end_lsn;   /* LSN just after the last entry's record */
    uint64_t opened_ms; /* monotonic ms of the first entry */
};

/* A segment file. Indices into st->segs are stable; a removed segment stays as dead. */
struct segref {
    struct cn_seg *seg; /* NULL when dead */
    char *path;
    uint8_t kind;
    uint32_t day; /* days since the epoch */
    uint64_t bytes;
    size_t nmap;   /* entries it put in the in-memory trace map */
    uint32_t pday; /* its partition's day (its directory), UINT32_MAX when not one */
    uint32_t seq;  /* its sequence number (file name), UINT32_MAX when past 32 bits */
    int filed;     /* its trace IDs are in its partition's trace map file, not in memory */
};

/* A partition's trace map file (tmapf.h), guarded by hlock like the segment table. Readers
 * search it without the lock: a replaced or removed one is retired like a segment. */
struct daymap {
    uint32_t pday;
    struct cn_tmapf *f;
};

/* Multimap trace-ID hash -> segment index, 8 bytes a cell: the key (32 bits of the ID's hash,
 * which also place it) and the segment. Key 0 marks an empty cell. A collision costs one
 * bloom check of a segment, never a wrong answer (the segment is asked): with 57 million
 * traces mapped, about one lookup in 75 checks one segment more. */
struct tmap {
    uint32_t *keys;
    uint32_t *segs;
    size_t cap, used;
};

/* What left the tables in an epoch: a sealed head (its records), removed segments. */
struct retired {
    uint64_t epoch;
    struct head head;
    uint64_t head_bytes; /* counted in stats.head_bytes until freed */
    struct cn_seg **segs;
    size_t nsegs;
    struct cn_tmapf *map;
};

#define EPOCH_SLOTS 64

struct cn_store {
    struct cn_store_opts opts;
    char *dir;
    int lock_fd; /* flock on DIR/LOCK: one process per store */
    /* DIR/CHECKPOINT and DIR/SEALING once this process wrote them (see write_record): then
     * rewritten in place. -1 before. Sealer thread, or the opening thread before it starts. */
    int cp_fd, sm_fd;
    struct cn_wal *wal;
    struct cn_store_stats stats;
    struct cn_derive *derive;
    /* Span segments whose spans the derived tables still need after a restart (the tables
     * live in memory): the sealer feeds them one segment per turn, between seals, and
     * leaves compaction and retention alone until it is done. Sealer thread only. */
    struct cn_seg **rebuild;
    size_t rebuild_num, rebuild_next;
    uint64_t rebuild_from_ns, rebuild_spans, rebuild_t0;

    /* Writer queue: guarded by qlock. */
    uv_mutex_t qlock;
    uv_cond_t qcond;
    struct cn_store_sub **q;
    size_t qlen, qcap;
    int stopping;
    int force_seal; /* cn_store_seal asked for the head to be sealed now */
    uv_thread_t writer;
    int writer_started;
    atomic_uint_fast64_t truncate_lsn; /* set by the sealer, applied by the writer */

    /* Sealer: waits for a frozen head, writes it out. Guarded by slock. */
    uv_mutex_t slock;
    uv_cond_t scond;
    uv_cond_t sdone;  /* signalled when seal_pending drops to 0 */
    int seal_pending; /* frozen holds a head to write */
    int seal_failed;  /* the last seal failed (disk full...): the writer does not wait */
    uv_thread_t sealer;
    int sealer_started;
    uint64_t next_seq;

    /* Guarded by hlock: the writer and the sealer take it exclusive, readers shared. */
    uv_rwlock_t hlock;
    uint64_t epoch; /* see pin; bumped by the sealer thread, hlock exclusive */
    struct head head;
    struct head frozen;
    struct segref *segs;
    size_t num_segs, cap_segs;
    struct tmap tmap;
    size_t tmap_dead;    /* entries of removed segments; sealer thread, like every map change */
    struct daymap *days; /* trace map files of older partitions, by pday */
    size_t num_days, cap_days;
    /* Bumped when a segment leaves the table or a partition's entries move to a new file:
     * a lookup that searched the files without the lock then searches again (store_trace). */
    uint64_t map_gen;
    size_t segs_dead; /* slots of removed segments in segs; sealer thread too */

    /* Readers pinned in each epoch, by the epoch modulo EPOCH_SLOTS (see pin), and what left
     * the tables waiting for them, oldest first. Guarded by plock. */
    uv_mutex_t plock;
    uv_cond_t pcond;
    size_t pins[EPOCH_SLOTS];
    struct retired *retired;
    size_t num_retired, cap_retired;
    int reap_wanted; /* guarded by slock: a reader left, the sealer may free */

    /* Ingest hook (cn_store_set_ingest_cb): set before the first submission. */
    cn_store_ingest_cb ingest_cb;
    void *ingest_ctx;
};

static uint64_t now_ms(void)
{
    return uv_hrtime() / 1000000;
}

static uint64_t wall_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static uint64_t hash_id(const uint8_t *id)
{
    return XXH3_64bits(id, 16);
}

static uint32_t tmap_key(const uint8_t *id)
{
    return (uint32_t)(hash_id(id) >> 32) | 1; /* never 0 */
}

/* ---- head ------------------------------------------------------------------------------ */

static struct slot *find_slot(struct slot *slots, size_t n, const uint8_t *id)
{
    size_t mask = n - 1;
    for (size_t i = hash_id(id) & mask;; i = (i + 1) & mask) {
        struct slot *s = &slots[i];
        if (!s->used || memcmp(s->id, id, 16) == 0)
            return s;
    }
}

static int grow_slots(struct head *h)
{
    size_t n = h->num_slots ? h->num_slots * 2 : 1024;
    struct slot *slots = calloc(n, sizeof(*slots));
    if (!slots)
        return CN_ENOMEM;
    for (size_t i = 0; i < h->num_slots; i++) {
        if (h->slots[i].used)
            *find_slot(slots, n, h->slots[i].id) = h->slots[i];
    }
    free(h->slots);
    h->slots = slots;
    h->num_slots = n;
    return 0;
}

static struct slot *slot_for(struct head *h, const uint8_t *id)
{
    struct slot *s = find_slot(h->slots, h->num_slots, id);
    if (!s->used) {
        memcpy(s->id, id, 16);
        s->used = 1;
        s->span_first = s->span_last = s->log_first = s->log_last = NO_REF;
        h->used_slots++;
    }
    return s;
}

static int reserve(void **arr, size_t *cap, size_t need, size_t size)
{
    if (need <= *cap)
        return 0;
    size_t n = *cap ? *cap : 1024;
    while (n < need)
        n *= 2;
    void *p = realloc(*arr, n * size);
    if (!p)
        return CN_ENOMEM;
    *arr = p;
    *cap = n;
    return 0;
}

/* Adds a batch (hlock held exclusive, or before threads start). Takes body and batch on
 * success; on failure nothing changed. */
static int head_add(struct head *h, uint8_t *body, size_t len, struct cn_tel_batch *b, uint64_t lsn)
{
    if (reserve((void **)&h->entries, &h->cap_entries, h->num_entries + 1, sizeof(*h->entries)) ||
        reserve((void **)&h->span_refs, &h->cap_span_refs, h->num_span_refs + b->num_spans,
                sizeof(struct ref)) ||
        reserve((void **)&h->log_refs, &h->cap_log_refs, h->num_log_refs + b->num_logs,
                sizeof(struct ref)))
        return CN_ENOMEM;
    /* Room for every new trace up front, so nothing below can fail half-way. */
    while ((h->used_slots + b->num_spans + b->num_logs + 1) * 2 > h->num_slots)
        if (grow_slots(h) != 0)
            return CN_ENOMEM;
    uint32_t e = (uint32_t)h->num_entries;
    struct entry *en = &h->entries[h->num_entries++];
    en->body = body;
    en->len = len;
    en->batch = *b;
    en->lsn = lsn;
    en->bytes = len + b->arena.used;
    struct slot *s = NULL;
    for (size_t i = 0; i < en->batch.num_spans; i++) {
        /* Spans of a trace mostly come one after the other: no hashing for those. */
        const uint8_t *id = en->batch.spans[i].trace_id;
        if (!s || memcmp(s->id, id, 16) != 0)
            s = slot_for(h, id);
        uint32_t r = (uint32_t)h->num_span_refs++;
        h->span_refs[r] = (struct ref){e, (uint32_t)i, NO_REF};
        if (s->span_last == NO_REF)
            s->span_first = r;
        else
            h->span_refs[s->span_last].next = r;
        s->span_last = r;
    }
    for (size_t i = 0; i < en->batch.num_logs; i++) {
        const struct cn_log *l = &en->batch.logs[i];
        uint32_t r = (uint32_t)h->num_log_refs++;
        h->log_refs[r] = (struct ref){e, (uint32_t)i, NO_REF};
        if (cn_id_is_zero(l->trace_id, 16))
            continue;
        struct slot *s = slot_for(h, l->trace_id);
        if (s->log_last == NO_REF)
            s->log_first = r;
        else
            h->log_refs[s->log_last].next = r;
        s->log_last = r;
    }
    if (h->num_entries == 1)
        h->opened_ms = now_ms();
    h->bytes += en->bytes;
    h->end_lsn = lsn + CN_WAL_HEADER + len;
    return 0;
}

static void head_release(struct head *h);

/* Readers do not hold hlock while they read. Under it, shared and briefly, they take what they
 * will read (struct snap: the segments, and the record arrays of the heads' batches or one
 * trace's records in them) and pin the epoch; then they let go of it, read, and unpin. A long
 * search thus holds back neither the writer, which takes hlock exclusive after every group
 * commit to add to the head, nor the sealer. What leaves the tables (a sealed head's records,
 * a segment removed by retention or compaction) leaves under hlock exclusive with the epoch
 * ended (retire), and is freed once no reader pinned in that epoch or before is left (reap):
 * the sealer goes on meanwhile, and a sealed head's memory stays counted against the head's
 * budget until then. Only the sealer thread ends epochs; it waits before reusing the slot of
 * a reader pinned EPOCH_SLOTS epochs ago (retire_room). */
static uint64_t pin(struct cn_store *st)
{
    uint64_t e = st->epoch; /* hlock held */
    uv_mutex_lock(&st->plock);
    st->pins[e % EPOCH_SLOTS]++;
    uv_mutex_unlock(&st->plock);
    return e;
}

static void unpin(struct cn_store *st, uint64_t e)
{
    uv_mutex_lock(&st->plock);
    int last = --st->pins[e % EPOCH_SLOTS] == 0;
    int waiting = st->num_retired > 0;
    if (last)
        uv_cond_broadcast(&st->pcond);
    uv_mutex_unlock(&st->plock);
    if (last && waiting) {
        uv_mutex_lock(&st->slock);
        st->reap_wanted = 1;
        uv_cond_signal(&st->scond);
        uv_mutex_unlock(&st->slock);
    }
}

/* plock held: no reader is pinned in epoch e or before. Sealer thread (reads st->epoch). */
static int epochs_done(const struct cn_store *st, uint64_t e)
{
    uint64_t lo = st->epoch >= EPOCH_SLOTS ? st->epoch - EPOCH_SLOTS + 1 : 0;
    for (uint64_t x = lo; x <= e && x <= st->epoch; x++)
        if (st->pins[x % EPOCH_SLOTS])
            return 0;
    return 1;
}

/* Sealer thread, before taking hlock exclusive to retire: waits for the readers (if any)
 * pinned EPOCH_SLOTS - 1 epochs ago, whose slot the next epoch takes. */
static void retire_room(struct cn_store *st)
{
    uv_mutex_lock(&st->plock);
    while (st->pins[(st->epoch + 1) % EPOCH_SLOTS])
        uv_cond_wait(&st->pcond, &st->plock);
    uv_mutex_unlock(&st->plock);
}

/* hlock held exclusive, sealer thread (or before the threads start), after retire_room.
 * Ends the epoch; returns it, for retire_later. */
static uint64_t retire(struct cn_store *st)
{
    return st->epoch++;
}

static void retired_free(struct cn_store *st, struct retired *r)
{
    head_release(&r->head);
    atomic_fetch_sub(&st->stats.head_bytes, r->head_bytes);
    for (size_t i = 0; i < r->nsegs; i++)
        cn_seg_close(r->segs[i]);
    free(r->segs);
    cn_tmapf_close(r->map);
}

/* Sealer thread: frees what no reader may still read (all of it when force: closing). */
static void reap(struct cn_store *st, int force)
{
    for (;;) {
        struct retired r;
        uv_mutex_lock(&st->plock);
        int ready = st->num_retired && (force || epochs_done(st, st->retired[0].epoch));
        if (ready) {
            r = st->retired[0];
            memmove(st->retired, st->retired + 1, --st->num_retired * sizeof(*st->retired));
        }
        uv_mutex_unlock(&st->plock);
        if (!ready)
            return;
        retired_free(st, &r);
    }
}

/* Without hlock, sealer thread: what left the tables in epoch e is freed once its readers
 * are done. */
static void queue_retired(struct cn_store *st, struct retired r)
{
    uint64_t e = r.epoch;
    uv_mutex_lock(&st->plock);
    int queued = reserve((void **)&st->retired, &st->cap_retired, st->num_retired + 1,
                         sizeof(*st->retired)) == 0;
    if (queued)
        st->retired[st->num_retired++] = r;
    else /* out of memory: wait for the readers here */
        while (!epochs_done(st, e))
            uv_cond_wait(&st->pcond, &st->plock);
    uv_mutex_unlock(&st->plock);
    if (!queued)
        retired_free(st, &r);
    reap(st, 0);
}

/* queue_retired of a sealed head and removed segments (head may be NULL; segs is taken). */
static void retire_later(struct cn_store *st, uint64_t e, struct head *head, uint64_t head_bytes,
                         struct cn_seg **segs, size_t nsegs)
{
    struct retired r = {e, {0}, head_bytes, segs, nsegs, NULL};
    if (head)
        r.head = *head;
    queue_retired(st, r);
}

/* queue_retired of a trace map file replaced or removed (NULL: nothing). */
static void retire_map_later(struct cn_store *st, uint64_t e, struct cn_tmapf *map)
{
    if (map)
        queue_retired(st, (struct retired){e, {0}, 0, NULL, 0, map});
}

static void head_release(struct head *h)
{
    for (size_t i = 0; i < h->num_entries; i++) {
        cn_tel_batch_release(&h->entries[i].batch);
        free(h->entries[i].body);
    }
    free(h->entries);
    free(h->span_refs);
    free(h->log_refs);
    free(h->slots);
    memset(h, 0, sizeof(*h));
}

/* ---- trace map ------------------------------------------------------------------------- */

static void tmap_release(struct tmap *m)
{
    free(m->keys);
    free(m->segs);
    *m = (struct tmap){NULL, NULL, 0, 0};
}

/* An empty map of cap cells, a power of two. Returns 0 or CN_ENOMEM (m empty). */
static int tmap_init(struct tmap *m, size_t cap)
{
    *m = (struct tmap){calloc(cap, sizeof(uint32_t)), calloc(cap, sizeof(uint32_t)), cap, 0};
    if (!m->keys || !m->segs) {
        tmap_release(m);
        return CN_ENOMEM;
    }
    return 0;
}

/* Puts (k, seg) in the first free cell from k's; the caller knows it is not there. */
static void tmap_put(struct tmap *m, uint32_t k, uint32_t seg)
{
    size_t j = k & (m->cap - 1);
    while (m->keys[j])
        j = (j + 1) & (m->cap - 1);
    m->keys[j] = k;
    m->segs[j] = seg;
    m->used++;
}

static int tmap_grow(struct tmap *m)
{
    struct tmap n;
    if (tmap_init(&n, m->cap ? m->cap * 2 : 4096) != 0)
        return CN_ENOMEM;
    for (size_t i = 0; i < m->cap; i++)
        if (m->keys[i])
            tmap_put(&n, m->keys[i], m->segs[i]);
    tmap_release(m);
    *m = n;
    return 0;
}

/* Returns 1 when added, 0 when there already, CN_ENOMEM. */
static int tmap_add(struct tmap *m, const uint8_t *id, uint32_t seg)
{
    if ((m->used + 1) * 4 > m->cap * 3 && tmap_grow(m) != 0)
        return CN_ENOMEM;
    uint32_t k = tmap_key(id);
    size_t j = k & (m->cap - 1);
    for (; m->keys[j]; j = (j + 1) & (m->cap - 1))
        if (m->keys[j] == k && m->segs[j] == seg)
            return 0;
    m->keys[j] = k; /* the free cell tmap_put would find */
    m->segs[j] = seg;
    m->used++;
    return 1;
}

static void tmap_stats(struct cn_store *st)
{
    atomic_store(&st->stats.trace_map_entries, st->tmap.used); /* removed segments' too */
    atomic_store(&st->stats.trace_map_bytes,
                 st->tmap.cap * (sizeof(*st->tmap.keys) + sizeof(*st->tmap.segs)));
}

/* Entries of removed segments pruned at once when there are at least this many. */
#define TMAP_PRUNE_MIN 1024
/* Removed segments' slots in the segment table dropped at once when at least this many. */
#define SEGS_PRUNE_MIN 16

/* Drops what removed segments (retention, compaction) leave behind once it is half of its
 * table: their entries in the trace map, which would otherwise keep every trace ever sealed,
 * and their slots in the segment table, which every seal's retention and compaction and
 * every scan walk. Dropping slots renumbers the segments, so the map is built anew then too.
 * Sealer thread, the only one changing either table, so it reads both without the lock and
 * takes it only to swap the new ones in (segment numbers are held only under the lock, and
 * the derived tables' rebuild, which holds segment pointers, is not running). */
static void prune_removed(struct cn_store *st)
{
    struct tmap *m = &st->tmap;
    int map = st->tmap_dead >= TMAP_PRUNE_MIN && st->tmap_dead * 2 >= m->used;
    int refs = st->segs_dead >= SEGS_PRUNE_MIN && st->segs_dead * 2 >= st->num_segs;
    if (!map && !refs)
        return;
    uint32_t *renum = NULL; /* old segment number -> new */
    struct segref *segs = st->segs;
    size_t nsegs = st->num_segs, capsegs = st->cap_segs;
    if (refs) {
        renum = malloc((st->num_segs ? st->num_segs : 1) * sizeof(*renum));
        segs = malloc((st->num_segs - st->segs_dead + 1) * sizeof(*segs));
        if (!renum || !segs)
            goto nomem;
        nsegs = 0;
        for (size_t i = 0; i < st->num_segs; i++) {
            renum[i] = (uint32_t)nsegs;
            if (st->segs[i].seg)
                segs[nsegs++] = st->segs[i];
        }
        capsegs = st->num_segs - st->segs_dead + 1;
    }
    size_t live = m->used - st->tmap_dead;
    struct tmap n = {NULL, NULL, 0, 0};
    if (live) {
        size_t cap = 4096;
        while (live * 2 > cap)
            cap *= 2;
        if (tmap_init(&n, cap) != 0)
            goto nomem;
        for (size_t i = 0; i < m->cap; i++)
            if (m->keys[i] && st->segs[m->segs[i]].seg)
                tmap_put(&n, m->keys[i], renum ? renum[m->segs[i]] : m->segs[i]);
    }
    uv_rwlock_wrlock(&st->hlock);
    struct tmap old = *m;
    *m = n;
    st->tmap_dead = 0;
    struct segref *old_segs = st->segs;
    size_t dropped = st->num_segs - nsegs;
    if (refs) {
        st->segs = segs;
        st->num_segs = nsegs;
        st->cap_segs = capsegs;
        st->segs_dead = 0;
    }
    uv_rwlock_wrunlock(&st->hlock);
    size_t map_dropped = old.used - n.used;
    tmap_release(&old);
    if (refs)
        free(old_segs);
    free(renum);
    tmap_stats(st);
    cn_debug("telemetry", "removed segments pruned",
             "map_entries=%zu map_dropped=%zu segments=%zu "
             "slots_dropped=%zu",
             n.used, map_dropped, nsegs, dropped);
    return;
nomem: /* tried again after the next removal */
    free(renum);
    if (refs)
        free(segs);
    tmap_release(&n);
}

/* Calls fn for each segment that may hold id. */
static void tmap_each(const struct tmap *m, const uint8_t *id, void (*fn)(void *, uint32_t),
                      void *ctx)
{
    if (!m->cap)
        return;
    uint32_t k = tmap_key(id);
    for (size_t j = k & (m->cap - 1); m->keys[j]; j = (j + 1) & (m->cap - 1))
        if (m->keys[j] == k)
            fn(ctx, m->segs[j]);
}

/* ---- segments -------------------------------------------------------------------------- */

static void day_dir(const struct cn_store *st, uint32_t day, char *dst, size_t len)
{
    time_t t = (time_t)day * 86400;
    struct tm tm;
    gmtime_r(&t, &tm);
    snprintf(dst, len, "%s/parts/%04d-%02d-%02d", st->dir, tm.tm_year + 1900, tm.tm_mon + 1,
             tm.tm_mday);
}

struct collect_ids {
    uint8_t (*ids)[16];
    size_t num, cap;
    int oom;
};

static void collect_id(void *ctx, const uint8_t id[16])
{
    struct collect_ids *c = ctx;
    if (c->num == c->cap) {
        size_t cap = c->cap ? c->cap * 2 : 1024;
        uint8_t(*ids)[16] = realloc(c->ids, cap * 16);
        if (!ids) {
            c->oom = 1;
            return;
        }
        c->ids = ids;
        c->cap = cap;
    }
    memcpy(c->ids[c->num++], id, 16);
}

/* The day (since the epoch) of a partition directory's name, YYYY-MM-DD; UINT32_MAX when it
 * is not one. */
static uint32_t parse_day(const char *name, size_t len)
{
    if (len != 10 || name[4] != '-' || name[7] != '-')
        return UINT32_MAX;
    int v[3] = {0, 0, 0}, at[3] = {0, 5, 8}, width[3] = {4, 2, 2};
    for (int k = 0; k < 3; k++)
        for (int i = 0; i < width[k]; i++) {
            char c = name[at[k] + i];
            if (c < '0' || c > '9')
                return UINT32_MAX;
            v[k] = v[k] * 10 + (c - '0');
        }
    struct tm tm = {.tm_year = v[0] - 1900, .tm_mon = v[1] - 1, .tm_mday = v[2]};
    time_t t = timegm(&tm);
    struct tm back;
    if (t < 0 || !gmtime_r(&t, &back) || back.tm_mday != v[2] || back.tm_mon != v[1] - 1)
        return UINT32_MAX;
    return (uint32_t)(t / 86400);
}

/* A segment's partition day and sequence number, from its path DIR/YYYY-MM-DD/SEQ.kind. */
static void path_ids(const char *path, uint32_t *pday, uint32_t *seq)
{
    const char *slash = strrchr(path, '/');
    unsigned long long q = strtoull(slash ? slash + 1 : path, NULL, 16);
    *seq = q < UINT32_MAX ? (uint32_t)q : UINT32_MAX;
    *pday = UINT32_MAX;
    if (slash) {
        const char *p = slash;
        while (p > path && p[-1] != '/')
            p--;
        *pday = parse_day(p, (size_t)(slash - p));
    }
}

/* Registers an open segment and its trace IDs (hlock exclusive). */
static int register_seg(struct cn_store *st, struct cn_seg *seg, const char *path, uint8_t kind,
                        const struct collect_ids *ids)
{
    if (reserve((void **)&st->segs, &st->cap_segs, st->num_segs + 1, sizeof(*st->segs)))
        return CN_ENOMEM;
    const struct cn_seg_info *info = cn_seg_info(seg);
    uint32_t idx = (uint32_t)st->num_segs;
    struct segref *r = &st->segs[st->num_segs++];
    r->seg = seg;
    r->path = strdup(path);
    r->kind = kind;
    r->day = (uint32_t)(info->created_ns / DAY_NS); /* the ingest day it was sealed on */
    r->bytes = info->bytes;
    r->nmap = 0;
    r->filed = 0;
    path_ids(path, &r->pday, &r->seq);
    atomic_fetch_add(&st->stats.segments, 1);
    atomic_fetch_add(&st->stats.segment_bytes, r->bytes);
    for (size_t i = 0; i < ids->num; i++) {
        int added = tmap_add(&st->tmap, ids->ids[i], idx);
        if (added < 0) {
            tmap_stats(st);
            return CN_ENOMEM;
        }
        r->nmap += (size_t)added;
    }
    tmap_stats(st);
    return 0;
}

/* Writes the records of h into segment files, one per day and kind. Opens each written
 * segment into out (caller registers them). Returns 0 or an error (files written before
 * the error are removed). */
struct written {
    struct cn_seg *seg;
    char path[4200];
    uint8_t kind;
    struct collect_ids ids;
};

static void written_drop(struct written *w, size_t n, int unlink_files)
{
    for (size_t i = 0; i < n; i++) {
        cn_seg_close(w[i].seg);
        if (unlink_files)
            unlink(w[i].path);
        free(w[i].ids.ids);
    }
}

/* Partitions are days of ingest (the wall clock when a head is sealed), not of the records'
 * own times: retention then counts from when data arrived, so a late or replayed batch with
 * old timestamps is kept as long as fresh data. Queries prune segments by the min/max of the
 * records' times kept in each segment's footer. */
static int write_seal_manifest(struct cn_store *st, uint64_t end_lsn, const struct written *w,
                               size_t nw);
static void remove_seal_manifest(struct cn_store *st);

static int write_head(struct cn_store *st, const struct head *h, struct written **out,
                      size_t *out_num)
{
    size_t nspans = 0, nlogs = 0;
    for (size_t e = 0; e < h->num_entries; e++) {
        nspans += h->entries[e].batch.num_spans;
        nlogs += h->entries[e].batch.num_logs;
    }
    const struct cn_span **sp = malloc((nspans + 1) * sizeof(*sp));
    const struct cn_log **lg = malloc((nlogs + 1) * sizeof(*lg));
    struct written *w = calloc(2, sizeof(*w));
    size_t nw = 0, ns = 0, nl = 0;
    int rc = sp && lg && w ? 0 : CN_ENOMEM;
    for (size_t e = 0; !rc && e < h->num_entries; e++) {
        const struct cn_tel_batch *b = &h->entries[e].batch;
        for (size_t i = 0; i < b->num_spans; i++)
            sp[ns++] = &b->spans[i];
        for (size_t i = 0; i < b->num_logs; i++)
            lg[nl++] = &b->logs[i];
    }
    char dir[4096];
    if (!rc) {
        day_dir(st, (uint32_t)(wall_ns() / DAY_NS), dir, sizeof(dir));
        rc = cn_mkdirs(dir);
    }
    size_t planned = 0;
    for (int kind = CN_SEG_SPANS; !rc && kind <= CN_SEG_LOGS; kind++) {
        if ((kind == CN_SEG_SPANS ? ns : nl) == 0)
            continue;
        struct written *x = &w[planned++];
        snprintf(x->path, sizeof(x->path), "%s/%016llx.%s", dir, (unsigned long long)st->next_seq++,
                 kind == CN_SEG_SPANS ? "spans" : "logs");
        x->kind = (uint8_t)kind;
    }
    if (!rc && planned)
        rc = write_seal_manifest(st, h->end_lsn, w, planned);
    for (size_t k = 0; !rc && k < planned; k++) {
        struct written *x = &w[nw];
        int kind = x->kind;
        size_t n = kind == CN_SEG_SPANS ? ns : nl;
        struct cn_seg_write_opts o = {.trace_cb = collect_id, .trace_ctx = &x->ids};
        if (kind == CN_SEG_SPANS)
            o.group_rows = SPAN_GROUP_ROWS;
        char err[512] = "";
        rc = kind == CN_SEG_SPANS
                 ? cn_seg_write_spans_opts(x->path, sp, n, &o, NULL, err, sizeof(err))
                 : cn_seg_write_logs_opts(x->path, lg, n, &o, NULL, err, sizeof(err));
        if (!rc && x->ids.oom)
            rc = CN_ENOMEM;
        if (!rc)
            rc = cn_seg_open(&x->seg, x->path, err, sizeof(err));
        if (rc) {
            cn_error("telemetry", "sealing failed, the head is kept and sealed later",
                     "error=\"%s\"", err[0] ? err : cn_strerror(rc));
            free(x->ids.ids);
            unlink(x->path);
            break;
        }
        nw++;
    }
    free(sp);
    free(lg);
    if (rc) {
        written_drop(w, nw, 1);
        free(w);
        remove_seal_manifest(st);
        return rc;
    }
    *out = w;
    *out_num = nw;
    return 0;
}

/* The checksum of a checkpoint or seal manifest record: over its LSN and its paths. */
static uint64_t record_sum(uint64_t lsn, const char *paths, size_t len)
{
    return XXH3_64bits_withSeed(paths, len, lsn ^ 0x636169726e63706bull);
}

/* DIR/CHECKPOINT: "LSN\n", then (since the file is rewritten in place) "sum=HEX\n" and
 * newlines up to CHECKPOINT_BYTES. A file without the sum line (older versions, a rename of
 * SEALING) is taken as it is; one whose sum does not match reads as 0: the WAL is replayed
 * from its start, and seal_recover moves the checkpoint past the last seal first. */
static uint64_t read_checkpoint(const char *dir)
{
    char path[4096], line[128];
    snprintf(path, sizeof(path), "%s/CHECKPOINT", dir);
    FILE *f = fopen(path, "r");
    unsigned long long v = 0, sum;
    if (f) {
        if (!fgets(line, sizeof(line), f) || sscanf(line, "%llu", &v) != 1)
            v = 0;
        if (v && fgets(line, sizeof(line), f) && sscanf(line, "sum=%llx", &sum) == 1 &&
            sum != record_sum(v, "", 0)) {
            cn_error("telemetry", "CHECKPOINT fails its checksum: replaying the WAL from its start",
                     "lsn=%llu", v);
            v = 0;
        }
        fclose(f);
    }
    return v;
}

/* Replaces DIR/NAME with text, durably (temporary file, fsync, rename, directory fsync). */
static int write_small_file(const char *dir, const char *name, const char *text, size_t len)
{
    char path[4096], tmp[4200];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0640);
    if (fd < 0)
        return -errno;
    int rc = write(fd, text, len) == (ssize_t)len && fsync(fd) == 0 ? 0 : -errno;
    close(fd);
    if (!rc && rename(tmp, path) != 0)
        rc = -errno;
    if (!rc) {
        int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (dfd >= 0) {
            fsync(dfd);
            close(dfd);
        }
    }
    return rc;
}

/* Fixed sizes of the records rewritten in place: CHECKPOINT's "LSN\nsum=HEX\n", SEALING's
 * first line and two paths (write_head's names are under 4200 bytes each). */
#define CHECKPOINT_BYTES 64
#define SEALING_BYTES    (3 * 4200 + 64)

/* Writes text, padded with newlines to size, as DIR/NAME, durably. The first time in this
 * process through write_small_file (a new file, synced, renamed, its directory synced), then
 * in place: one pwrite of the same size and an fdatasync, which syncs one data block and no
 * metadata (no rename, no directory sync, no journal commit: a seal's two manifest writes
 * were 3 of its 5 syncs and 2 of its 3 renames; its syscalls took 9.6 ms, now 7.0). A write of a
 * few hundred bytes at offset 0 does not tear on a real disk; the records carry a checksum all the
 * same. */
static int write_record(struct cn_store *st, int *fd, const char *name, const char *text,
                        size_t len, size_t size)
{
    char buf[SEALING_BYTES];
    if (len >= size || size > sizeof(buf))
        return CN_ELIMIT;
    memcpy(buf, text, len);
    memset(buf + len, '\n', size - len);
    if (*fd >= 0) {
        /* The record and its first newline of padding, to the end of a 512-byte sector:
         * readers stop at the first empty line, so an older record's bytes past it are
         * never read (SEALING's record is mostly under 512 bytes of its 12 KiB). */
        size_t n = CN_MIN(size, (len + 1 + 511) & ~(size_t)511);
        if (pwrite(*fd, buf, n, 0) == (ssize_t)n && fdatasync(*fd) == 0)
            return 0;
        int rc = -errno;
        close(*fd); /* the next write starts over with a new file */
        *fd = -1;
        return rc ? rc : CN_EIO;
    }
    int rc = write_small_file(st->dir, name, buf, size);
    if (!rc) {
        char path[4096];
        snprintf(path, sizeof(path), "%s/%s", st->dir, name);
        *fd = open(path, O_WRONLY | O_CLOEXEC); /* -1: the next write is a new file again */
    }
    return rc;
}

static int write_checkpoint(struct cn_store *st, uint64_t lsn)
{
    char text[64];
    int n = snprintf(text, sizeof(text), "%llu\nsum=%016llx\n", (unsigned long long)lsn,
                     (unsigned long long)record_sum(lsn, "", 0));
    return write_record(st, &st->cp_fd, "CHECKPOINT", text, (size_t)n, CHECKPOINT_BYTES);
}

/* DIR/SEALING names the segments a seal is about to write and the WAL position they cover
 * ("LSN sum=HEX\nPATH\n...", the sum over the LSN and the paths), durable before they are
 * written; CHECKPOINT moves to that LSN once they are durable. A kill in between would
 * otherwise leave segments whose records the WAL replays again at the next start (served
 * twice): seal_recover settles it. The file stays (rewritten by the next seal) until the
 * store closes; a SEALING whose LSN the checkpoint has reached is a finished seal. */
static int write_seal_manifest(struct cn_store *st, uint64_t end_lsn, const struct written *w,
                               size_t nw)
{
    char paths[2 * 4200], text[SEALING_BYTES];
    size_t n = 0;
    for (size_t i = 0; i < nw; i++) {
        int k = snprintf(paths + n, sizeof(paths) - n, "%s\n", w[i].path);
        if (k < 0 || (size_t)k >= sizeof(paths) - n)
            return CN_ELIMIT;
        n += (size_t)k;
    }
    int h = snprintf(text, sizeof(text), "%llu sum=%016llx\n", (unsigned long long)end_lsn,
                     (unsigned long long)record_sum(end_lsn, paths, n));
    if (h < 0 || (size_t)h + n >= sizeof(text))
        return CN_ELIMIT;
    memcpy(text + h, paths, n);
    return write_record(st, &st->sm_fd, "SEALING", text, (size_t)h + n, SEALING_BYTES);
}

static void remove_seal_manifest(struct cn_store *st)
{
    if (st->sm_fd >= 0) {
        close(st->sm_fd);
        st->sm_fd = -1;
    }
    char path[4096];
    snprintf(path, sizeof(path), "%s/SEALING", st->dir);
    unlink(path);
}

/* At open, before segments load: settles a seal that a kill cut short. When every segment it
 * named is there, the checkpoint moves past what they hold; otherwise the ones written are
 * removed and the WAL brings their records back. */
static void seal_recover(struct cn_store *st)
{
    char path[4096];
    snprintf(path, sizeof(path), "%s/SEALING", st->dir);
    FILE *f = fopen(path, "r");
    if (!f)
        return;
    char line[4200];
    unsigned long long lsn = 0, sum = 0;
    char paths[2][4200], joined[2 * 4200];
    size_t np = 0, present = 0, jn = 0;
    int ok = fgets(line, sizeof(line), f) && sscanf(line, "%llu", &lsn) == 1;
    const char *sp = ok ? strstr(line, " sum=") : NULL;
    int has_sum = sp && sscanf(sp, " sum=%llx", &sum) == 1;
    /* The paths end at the first empty line (the padding of a record rewritten in place). */
    while (ok && np < 2 && fgets(paths[np], sizeof(paths[np]), f)) {
        size_t l = strcspn(paths[np], "\n");
        paths[np][l] = '\0';
        if (!l)
            break;
        memcpy(joined + jn, paths[np], l);
        joined[jn + l] = '\n';
        jn += l + 1;
        present += access(paths[np++], F_OK) == 0;
    }
    fclose(f);
    uint64_t checkpoint = read_checkpoint(st->dir);
    if (ok && has_sum && sum != record_sum(lsn, joined, jn)) {
        /* Cut short while being written: its seal had not begun its segments. */
        cn_warn("telemetry", "SEALING fails its checksum, ignored", "lsn=%llu", lsn);
        ok = 0;
    }
    if (!ok || lsn <= checkpoint) {
        unlink(path); /* nothing to settle: a finished seal's manifest, or a torn one */
        return;
    }
    if (present == np) {
        if (write_checkpoint(st, lsn) != 0) {
            cn_error("telemetry", "cannot record the checkpoint of an interrupted seal", "lsn=%llu",
                     lsn);
            return; /* SEALING stays: tried again at the next start */
        }
        cn_info("telemetry", "interrupted seal completed", "segments=%zu lsn=%llu", np, lsn);
    } else {
        for (size_t i = 0; i < np; i++)
            if (unlink(paths[i]) == 0)
                cn_info("telemetry", "segment of an interrupted seal removed", "file=%s", paths[i]);
    }
    unlink(path);
}

/* ---- trace map files ------------------------------------------------------------------ */

static void map_path(const struct cn_store *st, uint32_t pday, char *dst, size_t len)
{
    char dir[4096];
    day_dir(st, pday, dir, sizeof(dir));
    snprintf(dst, len, "%s/%s", dir, CN_TMAPF_NAME);
}

/* hlock held, or the sealer thread (the only one changing the list). */
static struct daymap *find_daymap(const struct cn_store *st, uint32_t pday)
{
    for (size_t i = 0; i < st->num_days; i++)
        if (st->days[i].pday == pday)
            return &st->days[i];
    return NULL;
}

static void daymap_stats(struct cn_store *st)
{
    uint64_t bytes = 0, mem = 0;
    for (size_t i = 0; i < st->num_days; i++) {
        bytes += cn_tmapf_file_bytes(st->days[i].f);
        mem += cn_tmapf_mem_bytes(st->days[i].f);
    }
    atomic_store(&st->stats.trace_map_files, st->num_days);
    atomic_store(&st->stats.trace_map_file_bytes, bytes);
    atomic_store(&st->stats.trace_map_file_mem, mem);
}

/* Whether partition pday's trace IDs belong in its file (opts.trace_map_mem_days). */
static int map_filed_day(const struct cn_store *st, uint32_t pday)
{
    if (pday == UINT32_MAX)
        return 0;
    int64_t keep =
        st->opts.trace_map_mem_days ? st->opts.trace_map_mem_days : CN_STORE_MAP_MEM_DAYS;
    return keep < 0 || (int64_t)pday + keep <= (int64_t)(wall_ns() / DAY_NS);
}

struct spill {
    struct cn_tmapf_entry *e;
    size_t n, cap;
    const uint32_t *live; /* sorted */
    size_t nlive;
    int oom;
};

static void spill_add(struct spill *sp, uint32_t key, uint32_t seq)
{
    if (sp->oom || reserve((void **)&sp->e, &sp->cap, sp->n + 1, sizeof(*sp->e)) != 0) {
        sp->oom = 1;
        return;
    }
    sp->e[sp->n++] = (struct cn_tmapf_entry){key, seq};
}

/* cn_tmapf_each: an entry of the old file stays when its segment is still there. */
static void spill_keep(void *ctx, const struct cn_tmapf_entry *e)
{
    struct spill *sp = ctx;
    if (bsearch(&e->seq, sp->live, sp->nlive, sizeof(*sp->live), cn_u32_cmp))
        spill_add(sp, e->key, e->seq);
}

/* A segment whose trace IDs go to its partition's file. */
static int spillable(const struct segref *r, uint32_t pday)
{
    return r->seg && r->pday == pday && r->seq != UINT32_MAX;
}

/* Moves partition pday's entries of the in-memory trace map into its file, merged with those
 * of the file it had for segments still there (compaction and retention remove some), and
 * swaps the file in. Sealer thread, the only one changing the map, the segment table and
 * the files: it reads them without the lock. Returns 0 or an error (nothing changed). */
static int spill_day(struct cn_store *st, uint32_t pday)
{
    struct spill sp = {0};
    uint32_t *live = malloc((st->num_segs + 1) * sizeof(*live));
    struct tmap *m = &st->tmap, n = {NULL, NULL, 0, 0};
    char path[4300], err[512] = "";
    struct cn_tmapf *f = NULL;
    int rc = live ? 0 : CN_ENOMEM;
    size_t nlive = 0, keep = 0;
    for (size_t i = 0; !rc && i < st->num_segs; i++)
        if (spillable(&st->segs[i], pday))
            live[nlive++] = st->segs[i].seq;
    if (!rc)
        qsort(live, nlive, sizeof(*live), cn_u32_cmp);
    sp.live = live;
    sp.nlive = nlive;
    for (size_t i = 0; !rc && i < m->cap; i++) {
        if (!m->keys[i] || !st->segs[m->segs[i]].seg)
            continue;
        const struct segref *r = &st->segs[m->segs[i]];
        if (spillable(r, pday))
            spill_add(&sp, m->keys[i], r->seq);
        else
            keep++;
    }
    struct daymap *dm = find_daymap(st, pday);
    if (!rc && dm)
        rc = cn_tmapf_each(dm->f, spill_keep, &sp);
    if (!rc && sp.oom)
        rc = CN_ENOMEM;
    map_path(st, pday, path, sizeof(path));
    if (!rc)
        rc = cn_tmapf_write(path, sp.e, sp.n, live, nlive, err, sizeof(err));
    if (!rc)
        rc = cn_tmapf_open(&f, path, err, sizeof(err));
    /* The in-memory map without the moved entries (nor those of removed segments). */
    if (!rc && keep) {
        size_t cap = 4096;
        while (keep * 2 > cap)
            cap *= 2;
        rc = tmap_init(&n, cap);
        for (size_t i = 0; !rc && i < m->cap; i++)
            if (m->keys[i] && st->segs[m->segs[i]].seg && !spillable(&st->segs[m->segs[i]], pday))
                tmap_put(&n, m->keys[i], m->segs[i]);
    }
    if (!rc && !dm &&
        reserve((void **)&st->days, &st->cap_days, st->num_days + 1, sizeof(*st->days)) != 0)
        rc = CN_ENOMEM;
    free(sp.e);
    free(live);
    if (rc) {
        cn_tmapf_close(f);
        tmap_release(&n);
        cn_error("telemetry", "trace map not moved to its file, kept in memory",
                 "file=%s error=\"%s\"", path, err[0] ? err : cn_strerror(rc));
        return rc;
    }
    retire_room(st);
    uv_rwlock_wrlock(&st->hlock);
    struct tmap old = *m;
    *m = n;
    st->tmap_dead = 0;
    st->map_gen++;
    for (size_t i = 0; i < st->num_segs; i++) {
        struct segref *r = &st->segs[i];
        if (spillable(r, pday)) {
            r->filed = 1;
            r->nmap = 0;
        }
    }
    struct cn_tmapf *replaced = NULL;
    if (dm) {
        replaced = dm->f;
        dm->f = f;
    } else {
        st->days[st->num_days++] = (struct daymap){pday, f};
    }
    uint64_t e = retire(st);
    uv_rwlock_wrunlock(&st->hlock);
    tmap_release(&old);
    retire_map_later(st, e, replaced);
    tmap_stats(st);
    daymap_stats(st);
    cn_info("telemetry", "trace map of a partition moved to its file",
            "file=%s entries=%zu segments=%zu", path, cn_tmapf_entries(f), nlive);
    return 0;
}

/* A partition's file whose segments retention removed one at a time (the disk budget, in
 * the last partition left) keeps their entries: lookups skip them, but they take disk (which
 * counts against the budget) and reads. Once they are a quarter of the segments the file
 * lists, it is written again with those still there. Sealer thread. */
static void refile_thinned_days(struct cn_store *st)
{
    for (size_t d = 0; d < st->num_days; d++) {
        uint32_t pday = st->days[d].pday;
        const struct cn_tmapf *f = st->days[d].f;
        size_t ncov = cn_tmapf_num_covered(f), live = 0;
        for (size_t i = 0; i < st->num_segs; i++)
            live += spillable(&st->segs[i], pday) && cn_tmapf_covers(f, st->segs[i].seq);
        size_t dead = ncov - CN_MIN(live, ncov);
        if (dead == 0 || dead * 4 < ncov)
            continue;
        if (spill_day(st, pday) != 0)
            return; /* logged; tried again after the next seal */
        cn_info("telemetry", "trace map file written again without removed segments",
                "day=%u segments=%zu removed=%zu", (unsigned)pday, ncov, dead);
    }
}

/* Moves the in-memory trace map entries of every partition past trace_map_mem_days into the
 * partition's file. Sealer thread. */
static void spill_maps(struct cn_store *st)
{
    for (;;) {
        uint32_t pday = UINT32_MAX;
        for (size_t i = 0; i < st->num_segs && pday == UINT32_MAX; i++) {
            const struct segref *r = &st->segs[i];
            if (r->seg && !r->filed && r->seq != UINT32_MAX && map_filed_day(st, r->pday))
                pday = r->pday;
        }
        if (pday == UINT32_MAX || spill_day(st, pday) != 0)
            return; /* done, or tried again after the next seal */
    }
}

/* Removes whole partitions older than the retention, then the oldest partitions (or, in
 * the last one, the oldest segments) while over the disk budget. Sealer thread. */
static void enforce_retention(struct cn_store *st)
{
    uint64_t cutoff_day = 0;
    if (st->opts.retention_ms) {
        uint64_t cut = wall_ns() - st->opts.retention_ms * 1000000ull;
        cutoff_day = cut / DAY_NS; /* a day ending before the cutoff goes */
    }
    for (;;) {
        retire_room(st);
        uv_rwlock_wrlock(&st->hlock);
        uint64_t total = 0;
        uint32_t oldest = UINT32_MAX, newest = 0;
        size_t live = 0;
        for (size_t i = 0; i < st->num_segs; i++) {
            if (!st->segs[i].seg)
                continue;
            total += st->segs[i].bytes;
            oldest = CN_MIN(oldest, st->segs[i].day);
            newest = CN_MAX(newest, st->segs[i].day);
            live++;
        }
        for (size_t d = 0; d < st->num_days; d++)
            total += cn_tmapf_file_bytes(st->days[d].f); /* they count against the budget too */
        int over_age = live && st->opts.retention_ms && (uint64_t)oldest + 1 <= cutoff_day;
        int over_disk = live && st->opts.disk_budget && total > st->opts.disk_budget;
        if (!over_age && !over_disk) {
            uv_rwlock_wrunlock(&st->hlock);
            return;
        }
        /* The victims: the oldest day whole, or in the only day left its oldest segment. */
        int one = !over_age && oldest == newest;
        char **paths = calloc(st->num_segs, sizeof(char *));
        struct cn_seg **segs = calloc(st->num_segs, sizeof(*segs));
        size_t nv = 0;
        /* The one segment: the one whose newest record is the oldest (the table's order is
         * the directory's at start, then the seals'). */
        size_t pick = SIZE_MAX;
        uint64_t pick_t = 0;
        for (size_t i = 0; one && i < st->num_segs; i++) {
            const struct segref *r = &st->segs[i];
            if (!r->seg || r->day != oldest)
                continue;
            uint64_t t = cn_seg_info(r->seg)->max_ns;
            if (pick == SIZE_MAX || t < pick_t || (t == pick_t && r->seq < st->segs[pick].seq)) {
                pick = i;
                pick_t = t;
            }
        }
        for (size_t i = 0; paths && segs && i < st->num_segs; i++) {
            struct segref *r = &st->segs[i];
            if (!r->seg || r->day != oldest || (one && i != pick))
                continue;
            segs[nv] = r->seg;
            paths[nv++] = r->path;
            r->seg = NULL;
            r->path = NULL;
            st->tmap_dead += r->nmap;
            st->segs_dead++;
            st->map_gen++;
            atomic_fetch_sub(&st->stats.segments, 1);
            atomic_fetch_sub(&st->stats.segment_bytes, r->bytes);
            if (one)
                break;
        }
        /* A partition's trace map file goes with its last segment. */
        struct daymap *gone = calloc(st->num_days + 1, sizeof(*gone));
        size_t ngone = 0;
        for (size_t d = 0; gone && d < st->num_days;) {
            int any = 0;
            for (size_t i = 0; i < st->num_segs && !any; i++)
                any = st->segs[i].seg && st->segs[i].pday == st->days[d].pday;
            if (any) {
                d++;
                continue;
            }
            gone[ngone++] = st->days[d];
            st->days[d] = st->days[--st->num_days];
        }
        uint64_t e = retire(st);
        uv_rwlock_wrunlock(&st->hlock);
        for (size_t d = 0; d < ngone; d++) {
            char mp[4300];
            map_path(st, gone[d].pday, mp, sizeof(mp));
            unlink(mp);
            retire_map_later(st, e, gone[d].f);
        }
        if (ngone)
            daymap_stats(st);
        free(gone);
        /* Unlinked now; closed once the reads that hold them are done. */
        for (size_t i = 0; i < nv; i++) {
            cn_info("telemetry", "segment removed by retention", "file=%s reason=%s", paths[i],
                    over_age ? "age" : "disk_budget");
            unlink(paths[i]);
            char *slash = strrchr(paths[i], '/');
            if (slash) {
                *slash = '\0';
                rmdir(paths[i]); /* only when the partition is empty */
            }
            free(paths[i]);
            atomic_fetch_add(&st->stats.retention_removed, 1);
        }
        free(paths);
        retire_later(st, e, NULL, 0, segs, nv);
        if (nv == 0)
            return;
    }
}

/* Writes the frozen head out and swaps it for its segments. Sealer thread, or the opening
 * thread before the others start. Returns 0 or an error (the frozen head stays). */
static int seal_frozen(struct cn_store *st)
{
    struct written *w = NULL;
    size_t nw = 0;
    uint64_t t0 = uv_hrtime();
    int rc = write_head(st, &st->frozen, &w, &nw);
    /* The segments are durable (or there were none): the checkpoint moves past the head. */
    if (!rc)
        rc = write_checkpoint(st, st->frozen.end_lsn);
    if (rc) {
        if (w) {
            written_drop(w, nw, 1);
            free(w);
            remove_seal_manifest(st);
        }
        atomic_fetch_add(&st->stats.seal_errors, 1);
        return rc;
    }
    uint64_t end = st->frozen.end_lsn, bytes = st->frozen.bytes;
    size_t entries = st->frozen.num_entries;
    struct head old;
    retire_room(st);
    uv_rwlock_wrlock(&st->hlock);
    for (size_t i = 0; i < nw; i++) {
        if (register_seg(st, w[i].seg, w[i].path, w[i].kind, &w[i].ids) != 0) {
            /* Out of memory for the map: the segment stays on disk and is found again
             * at the next start; its traces are missing from lookups until then. */
            cn_error("telemetry", "trace map full, segment not indexed", "file=%s", w[i].path);
        }
        w[i].seg = NULL;
    }
    old = st->frozen;
    memset(&st->frozen, 0, sizeof(st->frozen));
    uint64_t e = retire(st);
    uv_rwlock_wrunlock(&st->hlock);
    retire_later(st, e, &old, bytes, NULL, 0);
    written_drop(w, nw, 0);
    free(w);
    atomic_store(&st->truncate_lsn, end);
    atomic_fetch_add(&st->stats.seals, 1);
    cn_debug("telemetry", "head sealed", "batches=%zu segments=%zu ms=%llu", entries, nw,
             (unsigned long long)((uv_hrtime() - t0) / 1000000));
    return 0;
}

/* ---- compaction ------------------------------------------------------------------------ */

#define COMPACT_MIN_INPUTS 4
#define COMPACT_MAX_INPUTS 64
#define COMPACT_MAX_ROWS   200000u /* records materialised per merge (~1 KiB each) */
/* Segments under this are merged: what quiet periods seal by interval. A head sealed for
 * size (telemetry.seal_bytes of records) writes more than this, so heavy ingest is never
 * slowed by merging, and a merged segment past it is not merged again. A head compresses
 * about 30x into its segment, so with a small seal_bytes the bound is seal_bytes / 64
 * (else every segment sealed for size would be written twice). */
#define COMPACT_SMALL_BYTES (1u << 20)

/* DIR/COMPACTING names the merged segment ("merged:PATH") and lists the inputs it replaces.
 * It is durable before the merged segment appears and removed once the inputs are gone, so a
 * crash anywhere in between never leaves both served (their spans would come back twice):
 * at the next start the inputs go if the merged segment is there, else the inputs stay. A
 * manifest without the "merged:" line (older versions wrote it once the merged segment was
 * there) lists inputs to remove. */
static void compact_manifest_path(const struct cn_store *st, char *dst, size_t len)
{
    snprintf(dst, len, "%s/COMPACTING", st->dir);
}

/* At open, before segments load: finishes a compaction that a crash cut short. */
static void compact_recover(struct cn_store *st)
{
    char path[4096];
    compact_manifest_path(st, path, sizeof(path));
    FILE *f = fopen(path, "r");
    if (!f)
        return;
    char line[4200];
    int first = 1, keep_inputs = 0;
    while (fgets(line, sizeof(line), f)) {
        line[strcspn(line, "\n")] = '\0';
        if (first && strncmp(line, "merged:", 7) == 0) {
            first = 0;
            /* The merged segment never landed (cn_seg_write renames it into place whole):
             * its inputs are still the data. */
            keep_inputs = access(line + 7, F_OK) != 0;
            if (keep_inputs)
                cn_info("telemetry", "compaction cut short, its inputs kept", "file=%s", line + 7);
            continue;
        }
        first = 0;
        if (!keep_inputs && line[0] && unlink(line) == 0)
            cn_info("telemetry", "compacted segment removed after a restart", "file=%s", line);
    }
    fclose(f);
    unlink(path);
}

/* Records read back by a scan live only during its callback: they are copied into the
 * batch's arena, resources and scopes once per distinct pointer seen recently. */
struct rec_copy {
    struct cn_arena *a;
    struct cn_log *logs; /* or spans, by the kind scanned */
    struct cn_span *spans;
    size_t num, cap;
    const void *from[32];
    void *to[32];
    size_t cache_next;
    int oom;
};

static struct cn_slice dup_slice(struct rec_copy *c, struct cn_slice s)
{
    if (!s.len)
        return (struct cn_slice){"", 0};
    struct cn_slice d = cn_arena_dup(c->a, s.ptr, s.len);
    if (!d.ptr)
        c->oom = 1;
    return d;
}

static void dup_val(struct rec_copy *c, struct cn_val *v)
{
    if (v->type == CN_VAL_STR || v->type == CN_VAL_BYTES || v->type == CN_VAL_ARRAY ||
        v->type == CN_VAL_KVLIST)
        v->u.s = dup_slice(c, v->u.s);
}

static struct cn_kvs dup_kvs(struct rec_copy *c, const struct cn_kvs *k)
{
    struct cn_kvs d = {NULL, k->num, k->dropped};
    if (!k->num)
        return d;
    d.items = cn_arena_alloc(c->a, k->num * sizeof(*d.items));
    if (!d.items) {
        c->oom = 1;
        d.num = 0;
        return d;
    }
    for (uint32_t i = 0; i < k->num; i++) {
        d.items[i].key = dup_slice(c, k->items[i].key);
        d.items[i].val = k->items[i].val;
        dup_val(c, &d.items[i].val);
    }
    return d;
}

static int same_val(const struct cn_val *a, const struct cn_val *b)
{
    if (a->type != b->type)
        return 0;
    switch (a->type) {
    case CN_VAL_EMPTY:
        return 1;
    case CN_VAL_BOOL:
        return (a->u.b != 0) == (b->u.b != 0);
    case CN_VAL_INT:
        return a->u.i == b->u.i;
    case CN_VAL_DOUBLE:
        return memcmp(&a->u.d, &b->u.d, sizeof(a->u.d)) == 0;
    default:
        return cn_slice_eq(a->u.s, b->u.s);
    }
}

static int same_kvs(const struct cn_kvs *a, const struct cn_kvs *b)
{
    if (a->num != b->num || a->dropped != b->dropped)
        return 0;
    for (uint32_t i = 0; i < a->num; i++)
        if (!cn_slice_eq(a->items[i].key, b->items[i].key) ||
            !same_val(&a->items[i].val, &b->items[i].val))
            return 0;
    return 1;
}

/* The copy made earlier of the resource or scope at from, or NULL. The reader frees what it
 * decoded as it goes, so a later record's resource may lie at the address of an earlier,
 * different one: the caller checks that the copy still has from's content. */
static void *cached(struct rec_copy *c, const void *from)
{
    for (size_t i = 0; i < CN_ARRAY_LEN(c->from); i++)
        if (c->from[i] == from)
            return c->to[i];
    return NULL;
}

static void remember(struct rec_copy *c, const void *from, void *to)
{
    c->from[c->cache_next] = from;
    c->to[c->cache_next] = to;
    c->cache_next = (c->cache_next + 1) % CN_ARRAY_LEN(c->from);
}

static const struct cn_resource *copy_resource(struct rec_copy *c, const struct cn_resource *from)
{
    struct cn_resource *r = cached(c, from);
    if (r && (!cn_slice_eq(r->service, from->service) ||
              !cn_slice_eq(r->schema_url, from->schema_url) || !same_kvs(&r->attrs, &from->attrs)))
        r = NULL;
    if (!r && from) {
        r = cn_arena_alloc(c->a, sizeof(*r));
        if (r) {
            r->attrs = dup_kvs(c, &from->attrs);
            r->service = dup_slice(c, from->service);
            r->schema_url = dup_slice(c, from->schema_url);
            remember(c, from, r);
        }
    }
    if (from && !r)
        c->oom = 1;
    return r;
}

static const struct cn_scope *copy_scope(struct rec_copy *c, const struct cn_scope *from)
{
    struct cn_scope *sc = cached(c, from);
    if (sc && (!cn_slice_eq(sc->name, from->name) || !cn_slice_eq(sc->version, from->version) ||
               !same_kvs(&sc->attrs, &from->attrs)))
        sc = NULL;
    if (!sc && from) {
        sc = cn_arena_alloc(c->a, sizeof(*sc));
        if (sc) {
            sc->name = dup_slice(c, from->name);
            sc->version = dup_slice(c, from->version);
            sc->attrs = dup_kvs(c, &from->attrs);
            remember(c, from, sc);
        }
    }
    if (from && !sc)
        c->oom = 1;
    return sc;
}

/* Makes room for one more record in c->logs or c->spans (elem bytes each). */
static void *copy_slot(struct rec_copy *c, void **arr, size_t elem)
{
    if (c->num == c->cap) {
        size_t cap = c->cap ? c->cap * 2 : 1024;
        void *a = realloc(*arr, cap * elem);
        if (!a) {
            c->oom = 1;
            return NULL;
        }
        *arr = a;
        c->cap = cap;
    }
    return (char *)*arr + c->num++ * elem;
}

static int copy_log(void *ctx, const struct cn_span *span, const struct cn_log *log)
{
    struct rec_copy *c = ctx;
    (void)span;
    struct cn_log *d = copy_slot(c, (void **)&c->logs, sizeof(*d));
    if (!d)
        return CN_ENOMEM;
    *d = *log;
    d->severity_text = dup_slice(c, log->severity_text);
    d->event_name = dup_slice(c, log->event_name);
    dup_val(c, &d->body);
    d->attrs = dup_kvs(c, &log->attrs);
    d->resource = copy_resource(c, log->resource);
    d->scope = copy_scope(c, log->scope);
    return c->oom ? CN_ENOMEM : 0;
}

static int copy_span(void *ctx, const struct cn_span *span, const struct cn_log *log)
{
    struct rec_copy *c = ctx;
    (void)log;
    struct cn_span *d = copy_slot(c, (void **)&c->spans, sizeof(*d));
    if (!d)
        return CN_ENOMEM;
    *d = *span;
    d->trace_state = dup_slice(c, span->trace_state);
    d->name = dup_slice(c, span->name);
    d->status_message = dup_slice(c, span->status_message);
    d->attrs = dup_kvs(c, &span->attrs);
    d->events =
        span->num_events ? cn_arena_alloc(c->a, span->num_events * sizeof(*d->events)) : NULL;
    d->links = span->num_links ? cn_arena_alloc(c->a, span->num_links * sizeof(*d->links)) : NULL;
    if ((span->num_events && !d->events) || (span->num_links && !d->links))
        return c->oom = 1, CN_ENOMEM;
    for (uint32_t i = 0; i < span->num_events; i++) {
        d->events[i] = span->events[i];
        d->events[i].name = dup_slice(c, span->events[i].name);
        d->events[i].attrs = dup_kvs(c, &span->events[i].attrs);
    }
    for (uint32_t i = 0; i < span->num_links; i++) {
        d->links[i] = span->links[i];
        d->links[i].trace_state = dup_slice(c, span->links[i].trace_state);
        d->links[i].attrs = dup_kvs(c, &span->links[i].attrs);
    }
    d->resource = copy_resource(c, span->resource);
    d->scope = copy_scope(c, span->scope);
    return c->oom ? CN_ENOMEM : 0;
}

/* Merges the small segments of one kind and ingest day into one. Sealer thread. Returns 1
 * when it merged something. */
static int compact_once(struct cn_store *st, uint8_t kind)
{
    uint64_t small = CN_MIN((uint64_t)COMPACT_SMALL_BYTES, st->opts.seal_bytes / 64);
    uint32_t idx[COMPACT_MAX_INPUTS];
    size_t n = 0;
    uint32_t day = 0;
    uint64_t rows = 0;
    uv_rwlock_rdlock(&st->hlock);
    /* The day with the most small span segments. */
    uint32_t best_day = 0;
    size_t best = 0;
    for (size_t i = 0; i < st->num_segs; i++) {
        const struct segref *r = &st->segs[i];
        if (!r->seg || r->kind != kind || r->bytes >= small)
            continue;
        size_t c = 0;
        for (size_t j = 0; j < st->num_segs; j++)
            c += st->segs[j].seg && st->segs[j].kind == kind && st->segs[j].day == r->day &&
                 st->segs[j].bytes < small;
        if (c > best) {
            best = c;
            best_day = r->day;
        }
    }
    if (best >= COMPACT_MIN_INPUTS) {
        day = best_day;
        for (size_t i = 0; i < st->num_segs && n < COMPACT_MAX_INPUTS; i++) {
            const struct segref *r = &st->segs[i];
            if (!r->seg || r->kind != kind || r->day != day || r->bytes >= small)
                continue;
            uint64_t rr = cn_seg_info(r->seg)->rows;
            if (rows + rr > COMPACT_MAX_ROWS)
                break;
            rows += rr;
            idx[n++] = (uint32_t)i;
        }
    }
    uv_rwlock_rdunlock(&st->hlock);
    if (n < COMPACT_MIN_INPUTS)
        return 0;

    /* Read every span of the inputs (the sealer is the only thread that removes segments,
     * so they stay open while it reads them without the lock). */
    struct cn_tel_batch b;
    cn_tel_batch_init(&b, (size_t)4 << 30);
    int rc = 0;
    struct rec_copy lc = {.a = &b.arena};
    /* One scan per input: every record once, decoded a row group at a time. */
    for (size_t k = 0; !rc && k < n; k++) {
        rc = cn_seg_scan(st->segs[idx[k]].seg, 0, UINT64_MAX, NULL,
                         kind == CN_SEG_SPANS ? copy_span : copy_log, &lc);
        if (!rc && lc.oom)
            rc = CN_ENOMEM;
    }
    size_t nrec = lc.num;
    const void **sp = rc ? NULL : malloc((nrec + 1) * sizeof(*sp));
    if (!rc && !sp)
        rc = CN_ENOMEM;
    if (rc) {
        /* A damaged input keeps its place: merging would drop its unreadable rows. */
        cn_warn("telemetry", "compaction skipped", "inputs=%zu error=\"%s\"", n, cn_strerror(rc));
        free(sp);
        free(lc.logs);
        free(lc.spans);
        cn_tel_batch_release(&b);
        return 0;
    }
    for (size_t i = 0; i < nrec; i++)
        sp[i] = kind == CN_SEG_SPANS ? (const void *)&lc.spans[i] : (const void *)&lc.logs[i];
    char dir[4096];
    day_dir(st, day, dir, sizeof(dir));
    struct written w = {0};
    snprintf(w.path, sizeof(w.path), "%s/%016llx.%s", dir, (unsigned long long)st->next_seq++,
             kind == CN_SEG_SPANS ? "spans" : "logs");
    w.kind = kind;
    struct cn_seg_write_opts o = {.trace_cb = collect_id, .trace_ctx = &w.ids};
    if (kind == CN_SEG_SPANS)
        o.group_rows = SPAN_GROUP_ROWS;
    char err[512] = "";
    /* The manifest names the merged segment and its inputs before the segment appears. */
    char mpath[4096], mtmp[4200];
    compact_manifest_path(st, mpath, sizeof(mpath));
    snprintf(mtmp, sizeof(mtmp), "%s.tmp", mpath);
    FILE *mf = fopen(mtmp, "w");
    rc = mf ? 0 : -errno;
    if (mf) {
        fprintf(mf, "merged:%s\n", w.path);
        for (size_t k = 0; k < n; k++)
            fprintf(mf, "%s\n", st->segs[idx[k]].path);
        if (fflush(mf) != 0 || fsync(fileno(mf)) != 0)
            rc = -errno;
        fclose(mf);
        if (!rc && rename(mtmp, mpath) != 0)
            rc = -errno;
        if (!rc) {
            int dfd = open(st->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
            if (dfd >= 0) {
                fsync(dfd);
                close(dfd);
            }
        }
    }
    if (!rc)
        rc = kind == CN_SEG_SPANS
                 ? cn_seg_write_spans_opts(w.path, (const struct cn_span *const *)sp, nrec, &o,
                                           NULL, err, sizeof(err))
                 : cn_seg_write_logs_opts(w.path, (const struct cn_log *const *)sp, nrec, &o, NULL,
                                          err, sizeof(err));
    free(sp);
    free(lc.logs);
    free(lc.spans);
    cn_tel_batch_release(&b);
    if (!rc && w.ids.oom)
        rc = CN_ENOMEM;
    if (!rc)
        rc = cn_seg_open(&w.seg, w.path, err, sizeof(err));
    if (rc) {
        cn_error("telemetry", "compaction failed, the inputs stay", "error=\"%s\"",
                 err[0] ? err : cn_strerror(rc));
        cn_seg_close(w.seg);
        unlink(w.path); /* before the manifest: a crash between them keeps the inputs */
        unlink(mpath);
        unlink(mtmp);
        free(w.ids.ids);
        return 0;
    }
    char **paths = calloc(n, sizeof(char *));
    struct cn_seg **old = calloc(n, sizeof(*old));
    retire_room(st);
    uv_rwlock_wrlock(&st->hlock);
    if (register_seg(st, w.seg, w.path, kind, &w.ids) != 0)
        cn_error("telemetry", "trace map full, segment not indexed", "file=%s", w.path);
    for (size_t k = 0; k < n; k++) {
        struct segref *r = &st->segs[idx[k]];
        if (old)
            old[k] = r->seg;
        if (paths)
            paths[k] = r->path;
        else
            free(r->path);
        r->seg = NULL;
        r->path = NULL;
        st->tmap_dead += r->nmap;
        st->segs_dead++;
        st->map_gen++;
        atomic_fetch_sub(&st->stats.segments, 1);
        atomic_fetch_sub(&st->stats.segment_bytes, r->bytes);
    }
    uint64_t e = retire(st);
    uv_rwlock_wrunlock(&st->hlock);
    for (size_t k = 0; paths && k < n; k++) {
        unlink(paths[k]);
        free(paths[k]);
    }
    unlink(mpath);
    free(paths);
    retire_later(st, e, NULL, 0, old, old ? n : 0);
    free(w.ids.ids);
    atomic_fetch_add(&st->stats.compactions, 1);
    cn_info("telemetry", "segments compacted", "inputs=%zu rows=%llu file=%s", n,
            (unsigned long long)rows, w.path);
    return 1;
}

static int rebuild_span(void *ctx, const struct cn_span *span, const struct cn_log *log)
{
    struct cn_store *st = ctx;
    (void)log;
    cn_derive_add_spans(st->derive, span, 1, wall_ns());
    st->rebuild_spans++;
    return 0;
}

/* Sealer thread: feeds the next segment of the rebuild list to the derived tables. */
static void rebuild_step(struct cn_store *st)
{
    struct cn_seg *seg = st->rebuild[st->rebuild_next++];
    int rc = cn_seg_scan(seg, st->rebuild_from_ns, UINT64_MAX, NULL, rebuild_span, st);
    if (rc)
        cn_warn("telemetry", "segment skipped while rebuilding the derived tables", "error=\"%s\"",
                cn_strerror(rc));
    atomic_store(&st->stats.rebuild_segments_left, st->rebuild_num - st->rebuild_next);
    if (st->rebuild_next < st->rebuild_num)
        return;
    cn_info("telemetry", "derived tables rebuilt from segments", "segments=%zu spans=%llu ms=%llu",
            st->rebuild_num, (unsigned long long)st->rebuild_spans,
            (unsigned long long)((uv_hrtime() - st->rebuild_t0) / 1000000));
    free(st->rebuild);
    st->rebuild = NULL;
    st->rebuild_num = st->rebuild_next = 0;
}

/* How often an idle sealer applies retention and compaction: they follow each seal, but a
 * store that receives nothing seals nothing, and its old data must go all the same (and a
 * restart with a smaller disk budget apply at once). */
#define IDLE_LIFECYCLE_NS (5 * 1000000000ull)

/* Retention, then compaction, then dropping what removed segments left behind. Sealer thread, not
 * while the derived tables are rebuilt from segments (the rebuild holds segment pointers). */
static void lifecycle(struct cn_store *st)
{
    enforce_retention(st);
    while (compact_once(st, CN_SEG_SPANS) || compact_once(st, CN_SEG_LOGS))
        ;
    prune_removed(st);
    refile_thinned_days(st);
    spill_maps(st);
}

static void sealer_main(void *arg)
{
    struct cn_store *st = arg;
    pthread_setname_np(pthread_self(), "cn-seal");
    int idle = 1; /* at start: what retention removes while the store was down goes now */
    for (;;) {
        uv_mutex_lock(&st->slock);
        while (!idle && !st->seal_pending && !st->stopping && !st->rebuild && !st->reap_wanted)
            idle = uv_cond_timedwait(&st->scond, &st->slock, IDLE_LIFECYCLE_NS) != 0;
        int pending = st->seal_pending, stopping = st->stopping;
        st->reap_wanted = 0;
        uv_mutex_unlock(&st->slock);
        reap(st, 0);
        if (!pending && stopping)
            break;
        if (!pending) {
            if (st->rebuild)
                rebuild_step(st);
            else if (idle)
                lifecycle(st);
            idle = 0;
            continue;
        }
        idle = 0;
        if (seal_frozen(st) != 0) {
            /* Disk full or another failure: try again in a second; ingest goes on into the
             * head until its budget refuses more. */
            uv_mutex_lock(&st->slock);
            st->seal_failed = 1;
            uv_cond_broadcast(&st->sdone);
            uv_mutex_unlock(&st->slock);
            uv_sleep(1000);
            if (stopping)
                break;
            continue;
        }
        if (!st->rebuild)
            lifecycle(st);
        uv_mutex_lock(&st->slock);
        st->seal_pending = 0;
        st->seal_failed = 0;
        uv_cond_broadcast(&st->sdone);
        uv_mutex_unlock(&st->slock);
    }
}

/* Writer thread: hands the head to the sealer when it is big or old enough. Returns 1
 * when the head is empty afterwards (frozen, or nothing in it). */
static int maybe_freeze(struct cn_store *st, int force)
{
    struct head *h = &st->head;
    if (!h->num_entries)
        return 1;
    int due = force || h->bytes >= st->opts.seal_bytes ||
              now_ms() - h->opened_ms >= st->opts.seal_interval_ms;
    if (!due)
        return 0;
    uv_mutex_lock(&st->slock);
    /* While the sealer writes the previous head, this one may grow to twice seal_bytes; past
     * that the writer waits for the sealer, holding acknowledgements back, so that clients
     * slow down to what the sealer keeps up with instead of the head growing to its memory
     * budget (and every page of it being faulted in anew). A failing sealer (disk full) is
     * not waited for: the head's budget refuses ingest then. */
    while (st->seal_pending && !st->seal_failed && h->bytes >= 2 * st->opts.seal_bytes)
        uv_cond_wait(&st->sdone, &st->slock);
    int busy = st->seal_pending;
    if (!busy) {
        uv_rwlock_wrlock(&st->hlock);
        st->frozen = st->head;
        memset(&st->head, 0, sizeof(st->head));
        uv_rwlock_wrunlock(&st->hlock);
        st->seal_pending = 1;
        uv_cond_signal(&st->scond);
    }
    uv_mutex_unlock(&st->slock);
    return !busy;
}

/* Writer thread: takes a pending cn_store_seal request once the head could be frozen. */
static void freeze_turn(struct cn_store *st)
{
    uv_mutex_lock(&st->qlock);
    int force = st->force_seal;
    uv_mutex_unlock(&st->qlock);
    if (maybe_freeze(st, force) && force) {
        uv_mutex_lock(&st->qlock);
        st->force_seal = 0;
        uv_mutex_unlock(&st->qlock);
    }
}

/* ---- writer thread --------------------------------------------------------------------- */

/* Group commit. Each commit's fdatasync costs ~0.1-0.2 ms of CPU in the kernel whatever
 * it writes, so the writer lets a commit gather the requests it can expect soon: those of
 * the clients the previous commit answered (each tends to send its next request at once)
 * on top of the ones already waiting then. It waits for them at most GROUP_WAIT_NS, and not
 * once GROUP_BYTES are queued. A lone client is never waited for: the previous commit
 * answered one request, and its next one is what woke the writer. */
#define GROUP_WAIT_NS (2 * 1000000ull)
#define GROUP_BYTES   (8u << 20)

static void writer_main(void *arg)
{
    struct cn_store *st = arg;
    pthread_setname_np(pthread_self(), "cn-wal");
    struct cn_store_sub **batch = NULL;
    size_t cap = 0;
    size_t expect = 0; /* requests the next commit may wait for (see GROUP_WAIT_NS) */
    for (;;) {
        uv_mutex_lock(&st->qlock);
        while (st->qlen == 0 && !st->stopping) {
            /* Wake up now and then to seal an old head even without traffic. */
            if (uv_cond_timedwait(&st->qcond, &st->qlock, 200 * 1000000ull) != 0)
                break;
        }
        if (st->qlen && st->qlen < expect) {
            uint64_t until = uv_hrtime() + GROUP_WAIT_NS;
            while (st->qlen < expect && !st->stopping &&
                   atomic_load(&st->stats.queue_bytes) < GROUP_BYTES) {
                uint64_t now = uv_hrtime();
                if (now >= until || uv_cond_timedwait(&st->qcond, &st->qlock, until - now) != 0)
                    break;
            }
        }
        int stopping = st->stopping;
        struct cn_store_sub **tmp = batch;
        size_t tcap = cap;
        batch = st->q;
        cap = st->qcap;
        size_t n = st->qlen;
        st->q = tmp;
        st->qcap = tcap;
        st->qlen = 0;
        uv_mutex_unlock(&st->qlock);

        uint64_t tl = atomic_exchange(&st->truncate_lsn, 0);
        if (tl)
            cn_wal_truncate_before(st->wal, tl);
        if (n == 0) {
            if (stopping)
                break;
            /* Idle: unpaired span halves past their window still become what they are. */
            if (st->derive) {
                cn_derive_expire(st->derive, wall_ns());
                /* One ten-minute rollup a turn, so topology queries find them built. */
                cn_derive_rollup_step(st->derive);
            }
            freeze_turn(st);
            continue;
        }
        /* Everything queued goes out in one group commit. */
        uint64_t bytes = 0;
        int rc = 0;
        for (size_t i = 0; i < n; i++) {
            struct cn_store_sub *sub = batch[i];
            if (!rc)
                rc = cn_wal_append(st->wal, (uint8_t)sub->kind, sub->body, sub->len, &sub->lsn);
            bytes += sub->len; /* leaves the queue either way */
        }
        if (rc)
            cn_wal_abort(st->wal); /* the group is refused: none of it in a later commit */
        else
            rc = cn_wal_commit(st->wal);
        if (rc) {
            atomic_fetch_add(&st->stats.wal_errors, 1);
            cn_error("telemetry", "wal write failed, batches refused", "batches=%zu error=\"%s\"",
                     n, cn_strerror(rc));
        } else {
            atomic_fetch_add(&st->stats.wal_commits, 1);
            atomic_fetch_add(&st->stats.wal_bytes, bytes);
        }
        uint64_t now = wall_ns();
        size_t added = 0;
        uv_rwlock_wrlock(&st->hlock);
        for (size_t i = 0; i < n; i++) {
            struct cn_store_sub *sub = batch[i];
            sub->status = rc;
            if (rc)
                continue;
            uint64_t before = st->head.bytes;
            sub->status = head_add(&st->head, sub->body, sub->len, &sub->batch, sub->lsn);
            if (sub->status)
                continue;
            const struct cn_tel_batch *b = &st->head.entries[st->head.num_entries - 1].batch;
            atomic_fetch_add(&st->stats.head_bytes, st->head.bytes - before);
            atomic_fetch_add(&st->stats.spans, b->num_spans);
            atomic_fetch_add(&st->stats.logs, b->num_logs);
            atomic_fetch_add(&st->stats.batches, 1);
            atomic_fetch_add(&st->stats.truncated_attrs, b->truncated_attrs);
            atomic_fetch_add(&st->stats.truncated_values, b->truncated_values);
            atomic_fetch_add(&st->stats.truncated_events, b->truncated_events);
            atomic_fetch_add(&st->stats.truncated_links, b->truncated_links);
            /* The head owns body and batch now; the answer still needs what was refused. */
            sub->body = NULL;
            uint64_t rejected = sub->batch.rejected;
            char msg[sizeof(sub->batch.reject_msg)];
            memcpy(msg, sub->batch.reject_msg, sizeof(msg));
            cn_tel_batch_init(&sub->batch, 0);
            sub->batch.rejected = rejected;
            memcpy(sub->batch.reject_msg, msg, sizeof(msg));
            added++;
        }
        uv_rwlock_wrunlock(&st->hlock);
        /* Derived tables see the spans once they are durable and readable. Only this
         * thread replaces the head, so it reads its own entries without the lock. */
        if (st->derive && added) {
            for (size_t e = st->head.num_entries - added; e < st->head.num_entries; e++)
                cn_derive_add_spans(st->derive, st->head.entries[e].batch.spans,
                                    st->head.entries[e].batch.num_spans, now);
        }
        if (st->ingest_cb && added) {
            for (size_t e = st->head.num_entries - added; e < st->head.num_entries; e++)
                st->ingest_cb(st->ingest_ctx, &st->head.entries[e].batch);
        }
        atomic_fetch_sub(&st->stats.queue_bytes, bytes);
        for (size_t i = 0; i < n; i++)
            cn_mailbox_post(batch[i]->mailbox, &batch[i]->mail);
        uv_mutex_lock(&st->qlock);
        expect = st->qlen + n;
        uv_mutex_unlock(&st->qlock);
        freeze_turn(st);
    }
    free(batch);
}

/* ---- open, replay, close --------------------------------------------------------------- */

/* Opens every segment under DIR/parts and fills the trace map. Damaged segments are
 * reported and left out; the rest is served. */
static int load_segments(struct cn_store *st)
{
    char parts[4096];
    snprintf(parts, sizeof(parts), "%s/parts", st->dir);
    DIR *d = opendir(parts);
    if (!d)
        return errno == ENOENT ? 0 : -errno;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.')
            continue;
        char day[8192];
        snprintf(day, sizeof(day), "%s/%s", parts, e->d_name);
        /* The partition's trace map file: its segments' trace IDs are not read again. A
         * damaged one is removed, and its segments indexed from their own trace indexes. */
        uint32_t pday = parse_day(e->d_name, strlen(e->d_name));
        char mp[8448];
        snprintf(mp, sizeof(mp), "%s/%s", day, CN_TMAPF_NAME);
        struct cn_tmapf *mf = NULL;
        char merr[512];
        int mrc = pday == UINT32_MAX ? CN_ENOENT : cn_tmapf_open(&mf, mp, merr, sizeof(merr));
        if (mrc == 0 &&
            reserve((void **)&st->days, &st->cap_days, st->num_days + 1, sizeof(*st->days)) != 0) {
            cn_tmapf_close(mf);
            closedir(d);
            return CN_ENOMEM;
        }
        if (mrc == 0) {
            st->days[st->num_days++] = (struct daymap){pday, mf};
        } else if (mrc != CN_ENOENT) {
            cn_error("telemetry", "trace map file not used, its segments indexed instead",
                     "error=\"%s\"", merr);
            atomic_fetch_add(&st->stats.read_errors, 1);
            unlink(mp);
        }
        DIR *dd = opendir(day);
        struct dirent *f;
        while (dd && (f = readdir(dd)) != NULL) {
            size_t len = strlen(f->d_name);
            int spans = len > 6 && strcmp(f->d_name + len - 6, ".spans") == 0;
            int logs = len > 5 && strcmp(f->d_name + len - 5, ".logs") == 0;
            if (!spans && !logs) {
                if (len > 4 && strcmp(f->d_name + len - 4, ".tmp") == 0) {
                    char tmp[8448];
                    snprintf(tmp, sizeof(tmp), "%s/%s", day, f->d_name);
                    unlink(tmp); /* a seal cut short */
                }
                continue;
            }
            char path[8448];
            snprintf(path, sizeof(path), "%s/%s", day, f->d_name);
            unsigned long long seq = strtoull(f->d_name, NULL, 16);
            if (seq >= st->next_seq)
                st->next_seq = seq + 1;
            struct cn_seg *seg = NULL;
            char err[512];
            if (cn_seg_open(&seg, path, err, sizeof(err)) != 0) {
                cn_error("telemetry", "segment not served", "error=\"%s\"", err);
                atomic_fetch_add(&st->stats.corrupt_segments, 1);
                continue;
            }
            struct collect_ids ids = {0};
            uint32_t seg_pday, seq32;
            path_ids(path, &seg_pday, &seq32);
            int filed = mf && seg_pday == pday && seq32 != UINT32_MAX && cn_tmapf_covers(mf, seq32);
            int rc = filed ? 0 : cn_seg_trace_ids(seg, collect_id, &ids);
            if (rc == CN_EIO)
                cn_error("telemetry", "segment trace index damaged, partly indexed", "file=%s",
                         path);
            if (ids.oom ||
                register_seg(st, seg, path, spans ? CN_SEG_SPANS : CN_SEG_LOGS, &ids) != 0) {
                free(ids.ids);
                cn_seg_close(seg);
                closedir(dd);
                closedir(d);
                return CN_ENOMEM;
            }
            st->segs[st->num_segs - 1].filed = filed;
            free(ids.ids);
        }
        if (dd)
            closedir(dd);
    }
    closedir(d);
    return 0;
}

struct replay_ctx {
    struct cn_store *st;
    uint64_t from_lsn;
    uint64_t failed, skipped;
};

static int replay_one(void *ctx, uint64_t lsn, uint8_t type, const uint8_t *data, size_t len)
{
    struct replay_ctx *rc = ctx;
    struct cn_store *st = rc->st;
    if (lsn < rc->from_lsn) {
        rc->skipped++; /* already in a segment */
        return 0;
    }
    uint8_t *body = malloc(len ? len : 1);
    if (!body)
        return CN_ENOMEM;
    memcpy(body, data, len);
    struct cn_tel_batch b;
    cn_tel_batch_init(&b, (size_t)st->opts.max_body_bytes * 4 + (1u << 20));
    char err[256] = "";
    int r =
        cn_tel_decode(&b, (enum cn_body_kind)type, body, len, &st->opts.limits, err, sizeof(err));
    if (r == 0)
        cn_store_limit_traces(st, &b); /* as when it was received */
    uint64_t before = st->head.bytes;
    if (r == 0)
        r = head_add(&st->head, body, len, &b, lsn);
    if (r) {
        /* It decoded when it was acknowledged; a failure now means a changed decoder or a
         * damaged record that kept its checksum. Counted, not fatal. */
        cn_error("telemetry", "wal record not replayed", "lsn=%llu error=\"%s\"",
                 (unsigned long long)lsn, r == CN_ENOMEM ? "out of memory" : err);
        cn_tel_batch_release(&b);
        free(body);
        rc->failed++;
        return r == CN_ENOMEM ? r : 0;
    }
    const struct cn_tel_batch *hb = &st->head.entries[st->head.num_entries - 1].batch;
    if (st->derive)
        cn_derive_add_spans(st->derive, hb->spans, hb->num_spans, wall_ns());
    atomic_fetch_add(&st->stats.head_bytes, st->head.bytes - before);
    atomic_fetch_add(&st->stats.spans, hb->num_spans);
    atomic_fetch_add(&st->stats.logs, hb->num_logs);
    atomic_fetch_add(&st->stats.replayed_records, 1);
    /* Replay is bounded in memory: a full head is sealed on the spot. */
    if (st->head.bytes >= st->opts.seal_bytes) {
        st->frozen = st->head;
        memset(&st->head, 0, sizeof(st->head));
        if (seal_frozen(st) != 0)
            return CN_EIO;
    }
    return 0;
}

/* At open, after the segments loaded and before the WAL replays (whose spans reach the
 * derived tables as they are replayed): the span segments holding spans in the window the
 * derived tables keep, for the sealer to feed them. Out of memory: no rebuild, said in the
 * log (the tables fill up again from new spans). */
static void plan_rebuild(struct cn_store *st)
{
    const struct cn_derive_opts *o = cn_derive_opts(st->derive);
    uint64_t now = wall_ns(), keep = o->bucket_ns * o->num_buckets;
    st->rebuild_from_ns = now > keep ? now - keep : 0;
    size_t n = 0;
    for (size_t i = 0; i < st->num_segs; i++)
        n += st->segs[i].seg && st->segs[i].kind == CN_SEG_SPANS &&
             cn_seg_info(st->segs[i].seg)->max_ns >= st->rebuild_from_ns;
    if (!n)
        return;
    st->rebuild = malloc(n * sizeof(*st->rebuild));
    if (!st->rebuild) {
        cn_error("telemetry", "derived tables not rebuilt from segments", "error=\"%s\"",
                 cn_strerror(CN_ENOMEM));
        return;
    }
    for (size_t i = 0; i < st->num_segs; i++)
        if (st->segs[i].seg && st->segs[i].kind == CN_SEG_SPANS &&
            cn_seg_info(st->segs[i].seg)->max_ns >= st->rebuild_from_ns)
            st->rebuild[st->rebuild_num++] = st->segs[i].seg;
    st->rebuild_t0 = uv_hrtime();
    atomic_store(&st->stats.rebuild_segments_left, st->rebuild_num);
}

int cn_store_open(struct cn_store **out_store, const struct cn_store_opts *opts, char *err,
                  size_t err_len)
{
    struct cn_store *st = calloc(1, sizeof(*st));
    if (!st)
        return CN_ENOMEM;
    st->opts = *opts;
    cn_seg_set_bloom_cache(opts->bloom_cache_bytes ? opts->bloom_cache_bytes : CN_SEG_BLOOM_CACHE);
    cn_seg_set_footer_cache(opts->footer_cache_bytes ? opts->footer_cache_bytes
                                                     : CN_SEG_FOOTER_CACHE);
    if (!st->opts.seal_bytes)
        st->opts.seal_bytes = 16u << 20;
    if (!st->opts.seal_interval_ms)
        st->opts.seal_interval_ms = 10000;
    st->dir = strdup(opts->dir);
    st->lock_fd = -1;
    st->cp_fd = st->sm_fd = -1;
    uv_mutex_init(&st->qlock);
    uv_cond_init(&st->qcond);
    uv_mutex_init(&st->slock);
    uv_cond_init(&st->scond);
    uv_cond_init(&st->sdone);
    uv_rwlock_init(&st->hlock);
    uv_mutex_init(&st->plock);
    uv_cond_init(&st->pcond);
    struct cn_derive_opts dopts;
    cn_derive_opts_default(&dopts);
    st->derive = cn_derive_new(&dopts);
    char waldir[4096], lockpath[4096];
    snprintf(waldir, sizeof(waldir), "%s/wal", opts->dir);
    snprintf(lockpath, sizeof(lockpath), "%s/LOCK", opts->dir);
    int rc = st->dir && st->derive ? cn_mkdirs(opts->dir) : CN_ENOMEM;
    if (!rc) {
        st->lock_fd = open(lockpath, O_RDWR | O_CREAT | O_CLOEXEC, 0640);
        rc = st->lock_fd < 0 ? -errno : 0;
    }
    if (rc) {
        snprintf(err, err_len, "%s: %s", lockpath, cn_strerror(rc));
        cn_store_close(st);
        return rc;
    }
    if (flock(st->lock_fd, LOCK_EX | LOCK_NB) != 0) {
        rc = -errno;
        snprintf(err, err_len, "%s: the store is in use by another cairn process", opts->dir);
        cn_store_close(st);
        return rc;
    }
    compact_recover(st);
    seal_recover(st);
    rc = load_segments(st);
    if (rc) {
        snprintf(err, err_len, "%s/parts: %s", opts->dir, cn_strerror(rc));
        cn_store_close(st);
        return rc;
    }
    daymap_stats(st);
    plan_rebuild(st);
    uint64_t checkpoint = read_checkpoint(opts->dir);
    struct cn_wal_opts wo = {.dir = waldir,
                             .segment_bytes = opts->wal_segment_bytes,
                             .max_record = opts->max_body_bytes,
                             .fsync = opts->fsync,
                             .min_lsn = checkpoint,
                             .direct = !opts->wal_buffered};
    rc = cn_wal_open(&st->wal, &wo, err, err_len);
    if (rc) {
        cn_store_close(st);
        return rc;
    }
    struct replay_ctx ctx = {st, checkpoint, 0, 0};
    struct cn_wal_replay_stats rs;
    uint64_t t0 = uv_hrtime();
    rc = cn_wal_replay(st->wal, replay_one, &ctx, &rs);
    if (rc) {
        snprintf(err, err_len, "%s: replay failed: %s", waldir, cn_strerror(rc));
        cn_store_close(st);
        return rc;
    }
    atomic_store(&st->stats.replay_corrupt, rs.corrupt + ctx.failed);
    cn_info("telemetry", "store opened",
            "segments=%llu segment_bytes=%llu wal_records=%llu replayed=%llu already_sealed=%llu "
            "corrupt=%llu torn_bytes=%llu ms=%llu",
            (unsigned long long)atomic_load(&st->stats.segments),
            (unsigned long long)atomic_load(&st->stats.segment_bytes),
            (unsigned long long)rs.records,
            (unsigned long long)atomic_load(&st->stats.replayed_records),
            (unsigned long long)ctx.skipped, (unsigned long long)(rs.corrupt + ctx.failed),
            (unsigned long long)rs.truncated, (unsigned long long)((uv_hrtime() - t0) / 1000000));
    rc = uv_thread_create(&st->sealer, sealer_main, st);
    if (!rc) {
        st->sealer_started = 1;
        rc = uv_thread_create(&st->writer, writer_main, st);
    }
    if (rc) {
        snprintf(err, err_len, "cannot start the telemetry threads: %s", uv_strerror(rc));
        cn_store_close(st);
        return rc;
    }
    st->writer_started = 1;
    *out_store = st;
    return 0;
}

void cn_store_close(struct cn_store *st)
{
    if (!st)
        return;
    if (st->writer_started) {
        uv_mutex_lock(&st->qlock);
        st->stopping = 1;
        uv_cond_signal(&st->qcond);
        uv_mutex_unlock(&st->qlock);
        uv_thread_join(&st->writer);
    }
    if (st->sealer_started) {
        uv_mutex_lock(&st->slock);
        st->stopping = 1;
        uv_cond_signal(&st->scond);
        uv_mutex_unlock(&st->slock);
        uv_thread_join(&st->sealer);
    }
    /* What is still in memory is in the WAL: replayed at the next start. The last seal's
     * manifest is finished: removed, so that a start of an older version, which takes any
     * SEALING for an interrupted seal, has nothing to settle. */
    if (st->sm_fd >= 0)
        remove_seal_manifest(st);
    if (st->cp_fd >= 0)
        close(st->cp_fd);
    cn_wal_close(st->wal);
    if (st->lock_fd >= 0)
        close(st->lock_fd);
    reap(st, 1);
    free(st->retired);
    head_release(&st->head);
    head_release(&st->frozen);
    for (size_t i = 0; i < st->num_segs; i++) {
        cn_seg_close(st->segs[i].seg);
        free(st->segs[i].path);
    }
    free(st->segs);
    tmap_release(&st->tmap);
    for (size_t i = 0; i < st->num_days; i++)
        cn_tmapf_close(st->days[i].f);
    free(st->days);
    cn_derive_free(st->derive);
    free(st->q);
    free(st->rebuild);
    free(st->dir);
    uv_rwlock_destroy(&st->hlock);
    uv_cond_destroy(&st->pcond);
    uv_mutex_destroy(&st->plock);
    uv_cond_destroy(&st->scond);
    uv_cond_destroy(&st->sdone);
    uv_mutex_destroy(&st->slock);
    uv_cond_destroy(&st->qcond);
    uv_mutex_destroy(&st->qlock);
    free(st);
}

/* ---- submit ---------------------------------------------------------------------------- */

int cn_store_submit(struct cn_store *st, struct cn_store_sub *sub, struct cn_mailbox *mailbox)
{
    uint64_t cost = sub->len + sub->batch.arena.used;
    if (atomic_load(&st->stats.head_bytes) + atomic_load(&st->stats.queue_bytes) + cost >
            st->opts.head_max_bytes ||
        atomic_load(&st->stats.queue_bytes) + sub->len > st->opts.queue_max_bytes) {
        atomic_fetch_add(&st->stats.refused_full, 1);
        return CN_EAGAIN;
    }
    sub->mailbox = mailbox;
    uv_mutex_lock(&st->qlock);
    if (st->qlen == st->qcap) {
        size_t n = st->qcap ? st->qcap * 2 : 64;
        struct cn_store_sub **q = realloc(st->q, n * sizeof(*q));
        if (!q) {
            uv_mutex_unlock(&st->qlock);
            return CN_EAGAIN;
        }
        st->q = q;
        st->qcap = n;
    }
    st->q[st->qlen++] = sub;
    atomic_fetch_add(&st->stats.queue_bytes, sub->len);
    int logs = sub->kind == CN_BODY_LOGS_PB || sub->kind == CN_BODY_LOGS_JSON;
    atomic_fetch_add(logs ? &st->stats.rejected_logs : &st->stats.rejected_spans,
                     sub->batch.rejected);
    uv_cond_signal(&st->qcond);
    uv_mutex_unlock(&st->qlock);
    return 0;
}

void cn_store_sub_free(struct cn_store_sub *sub)
{
    if (!sub)
        return;
    cn_tel_batch_release(&sub->batch);
    free(sub->body);
    free(sub);
}

/* ---- read ------------------------------------------------------------------------------ */

/* What a reader reads, taken under hlock (see pin): segments, then records of the heads, as
 * the arrays of each batch (scans) or one by one (a trace's). */
struct snap {
    struct cn_store *st;
    uint64_t epoch;
    struct cn_seg **segs;
    size_t nsegs, cap_segs;
    struct part {
        const struct cn_span *spans;
        const struct cn_log *logs;
        size_t nspans, nlogs;
    } * parts;
    size_t nparts, cap_parts;
    const void **recs; /* spans or logs, per the read */
    size_t nrecs, cap_recs;
    int oom;
};

/* Takes hlock shared and pins the epoch; snap_unlock lets go of hlock, snap_release unpins. */
static void snap_lock(struct cn_store *st, struct snap *sn)
{
    memset(sn, 0, sizeof(*sn));
    sn->st = st;
    uv_rwlock_rdlock(&st->hlock);
    sn->epoch = pin(st);
}

/* What could not be taken (out of memory) is not read: counted as a read error. */
static void snap_unlock(struct snap *sn)
{
    uv_rwlock_rdunlock(&sn->st->hlock);
    if (sn->oom) {
        atomic_fetch_add(&sn->st->stats.read_errors, 1);
        cn_error("telemetry", "out of memory: a read left records out", NULL);
    }
}

static void snap_release(struct snap *sn)
{
    unpin(sn->st, sn->epoch);
    free(sn->segs);
    free(sn->parts);
    free(sn->recs);
}

static void snap_seg(struct snap *sn, struct cn_seg *seg)
{
    if (reserve((void **)&sn->segs, &sn->cap_segs, sn->nsegs + 1, sizeof(*sn->segs)) == 0)
        sn->segs[sn->nsegs++] = seg;
    else
        sn->oom = 1;
}

static void snap_head(struct snap *sn, const struct head *h)
{
    if (reserve((void **)&sn->parts, &sn->cap_parts, sn->nparts + h->num_entries,
                sizeof(*sn->parts)) != 0) {
        sn->oom = 1;
        return;
    }
    for (size_t e = 0; e < h->num_entries; e++) {
        const struct cn_tel_batch *b = &h->entries[e].batch;
        sn->parts[sn->nparts++] = (struct part){b->spans, b->logs, b->num_spans, b->num_logs};
    }
}

static void snap_rec(struct snap *sn, const void *rec)
{
    if (reserve((void **)&sn->recs, &sn->cap_recs, sn->nrecs + 1, sizeof(*sn->recs)) == 0)
        sn->recs[sn->nrecs++] = rec;
    else
        sn->oom = 1;
}

/* The records of trace id in h: spans, or logs. */
static void snap_head_trace(struct snap *sn, const struct head *h, const uint8_t *id, int logs)
{
    if (!h->num_slots)
        return;
    const struct slot *s = find_slot(h->slots, h->num_slots, id);
    if (!s->used)
        return;
    const struct ref *refs = logs ? h->log_refs : h->span_refs;
    for (uint32_t r = logs ? s->log_first : s->span_first; r != NO_REF; r = refs[r].next) {
        const struct cn_tel_batch *b = &h->entries[refs[r].entry].batch;
        snap_rec(sn, logs ? (const void *)&b->logs[refs[r].idx] : &b->spans[refs[r].idx]);
    }
}

struct trace_segs {
    struct snap *sn;
    const struct segref *segs;
    uint8_t kind;
};

/* tmap_each: a segment that may hold the trace, once. */
static void collect_seg(void *ctx, uint32_t idx)
{
    struct trace_segs *t = ctx;
    struct cn_seg *seg = t->segs[idx].seg;
    if (!seg || t->segs[idx].kind != t->kind)
        return;
    for (size_t i = 0; i < t->sn->nsegs; i++)
        if (t->sn->segs[i] == seg)
            return;
    snap_seg(t->sn, seg);
}

/* Segments of a partition's trace map file that may hold a trace. */
struct file_hits {
    struct hit {
        uint32_t pday, seq;
    } * hits;
    size_t n, cap;
    uint32_t pday;
    int oom;
};

static void file_hit(void *ctx, uint32_t seq)
{
    struct file_hits *h = ctx;
    if (reserve((void **)&h->hits, &h->cap, h->n + 1, sizeof(*h->hits)) != 0) {
        h->oom = 1;
        return;
    }
    h->hits[h->n++] = (struct hit){h->pday, seq};
}

/* Searches the partitions' trace map files for key. */
static void find_in_files(struct cn_store *st, const struct daymap *days, size_t ndays,
                          uint32_t key, struct file_hits *h)
{
    for (size_t d = 0; d < ndays; d++) {
        h->pday = days[d].pday;
        if (cn_tmapf_find(days[d].f, key, file_hit, h) != 0)
            atomic_fetch_add(&st->stats.read_errors, 1);
    }
    if (h->oom) {
        atomic_fetch_add(&st->stats.read_errors, 1);
        cn_error("telemetry", "out of memory: a read left records out", NULL);
    }
}

/* hlock held: adds to sn the segments of kind that the files' hits name. */
static void snap_hits(struct cn_store *st, struct snap *sn, const struct file_hits *h, uint8_t kind)
{
    struct trace_segs t = {sn, st->segs, kind};
    for (size_t i = 0; h->n && i < st->num_segs; i++) {
        const struct segref *r = &st->segs[i];
        if (!r->seg || !r->filed)
            continue;
        for (size_t k = 0; k < h->n; k++)
            if (h->hits[k].pday == r->pday && h->hits[k].seq == r->seq) {
                collect_seg(&t, (uint32_t)i);
                break;
            }
    }
}

/* What a lookup by trace ID reads, as of one moment: the segments the in-memory map and the
 * partitions' files name, and the heads' records. The files are searched without the lock
 * (sn's pin keeps them open), and the segments they name taken under it once more; when a
 * segment left the table or entries moved to a new file in between (map_gen), the lookup
 * starts again and searches the files under the lock. */
static void snap_trace(struct cn_store *st, struct snap *sn, const uint8_t *id, uint8_t kind)
{
    uint32_t key = tmap_key(id);
    for (int locked = 0;; locked = 1) {
        snap_lock(st, sn);
        struct trace_segs t = {sn, st->segs, kind};
        tmap_each(&st->tmap, id, collect_seg, &t);
        snap_head_trace(sn, &st->frozen, id, kind == CN_SEG_LOGS);
        snap_head_trace(sn, &st->head, id, kind == CN_SEG_LOGS);
        struct file_hits h = {0};
        if (locked || st->num_days == 0) {
            find_in_files(st, st->days, st->num_days, key, &h);
            snap_hits(st, sn, &h, kind);
            snap_unlock(sn);
            free(h.hits);
            return;
        }
        uint64_t gen = st->map_gen;
        size_t ndays = st->num_days;
        struct daymap *days = malloc(ndays * sizeof(*days));
        if (days)
            memcpy(days, st->days, ndays * sizeof(*days));
        else
            sn->oom = 1;
        snap_unlock(sn);
        if (days)
            find_in_files(st, days, ndays, key, &h);
        free(days);
        int again = 0;
        if (h.n) {
            uv_rwlock_rdlock(&st->hlock);
            again = st->map_gen != gen;
            if (!again)
                snap_hits(st, sn, &h, kind);
            uv_rwlock_rdunlock(&st->hlock);
        }
        free(h.hits);
        if (!again)
            return;
        snap_release(sn);
    }
}

static size_t store_trace(struct cn_store *st, const uint8_t *id, uint8_t kind,
                          cn_store_span_cb span_cb, cn_store_log_cb log_cb, void *ctx)
{
    struct snap sn;
    snap_trace(st, &sn, id, kind);
    size_t n = 0;
    for (size_t i = 0; i < sn.nsegs; i++) {
        if (!cn_seg_may_contain_trace(sn.segs[i], id))
            continue;
        struct cn_tel_batch b;
        cn_tel_batch_init(&b, 256u << 20);
        if (cn_seg_trace(sn.segs[i], id, &b) == CN_EIO)
            atomic_fetch_add(&st->stats.read_errors, 1);
        for (size_t k = 0; k < b.num_spans; k++, n++)
            span_cb(ctx, &b.spans[k]);
        for (size_t k = 0; k < b.num_logs; k++, n++)
            log_cb(ctx, &b.logs[k]);
        cn_tel_batch_release(&b);
    }
    for (size_t i = 0; i < sn.nrecs; i++, n++) {
        if (kind == CN_SEG_SPANS)
            span_cb(ctx, sn.recs[i]);
        else
            log_cb(ctx, sn.recs[i]);
    }
    snap_release(&sn);
    return n;
}

size_t cn_store_trace(struct cn_store *st, const uint8_t trace_id[16], cn_store_span_cb cb,
                      void *ctx)
{
    return store_trace(st, trace_id, CN_SEG_SPANS, cb, NULL, ctx);
}

size_t cn_store_trace_logs(struct cn_store *st, const uint8_t trace_id[16], cn_store_log_cb cb,
                           void *ctx)
{
    return store_trace(st, trace_id, CN_SEG_LOGS, NULL, cb, ctx);
}

struct scan_ctx {
    cn_store_span_cb span_cb;
    cn_store_log_cb log_cb;
    void *ctx;
    size_t n, limit;
};

static int scan_rec(void *ctx, const struct cn_span *span, const struct cn_log *log)
{
    struct scan_ctx *s = ctx;
    if (s->limit && s->n >= s->limit)
        return 1;
    if (span)
        s->span_cb(s->ctx, span);
    else
        s->log_cb(s->ctx, log);
    s->n++;
    return s->limit && s->n >= s->limit;
}

/* The segments of kind whose records' times meet [from, to), and the heads' batches. */
static void snap_range(struct snap *sn, uint8_t kind, uint64_t from, uint64_t to)
{
    const struct cn_store *st = sn->st;
    for (size_t i = 0; i < st->num_segs; i++) {
        const struct segref *r = &st->segs[i];
        if (!r->seg || r->kind != kind)
            continue;
        const struct cn_seg_info *info = cn_seg_info(r->seg);
        if (info->rows == 0 || info->max_ns < from || info->min_ns >= to)
            continue;
        snap_seg(sn, r->seg);
    }
    snap_head(sn, &st->frozen);
    snap_head(sn, &st->head);
}

static void scan_parts(const struct snap *sn, uint64_t from, uint64_t to, struct scan_ctx *s)
{
    for (size_t p = 0; p < sn->nparts && (!s->limit || s->n < s->limit); p++) {
        const struct part *b = &sn->parts[p];
        for (size_t i = 0; s->span_cb && i < b->nspans && (!s->limit || s->n < s->limit); i++)
            if (b->spans[i].start_ns >= from && b->spans[i].start_ns < to)
                scan_rec(s, &b->spans[i], NULL);
        for (size_t i = 0; s->log_cb && i < b->nlogs && (!s->limit || s->n < s->limit); i++)
            if (b->logs[i].time_ns >= from && b->logs[i].time_ns < to)
                scan_rec(s, NULL, &b->logs[i]);
    }
}

static size_t scan(struct cn_store *st, uint8_t kind, uint64_t from, uint64_t to, size_t limit,
                   struct scan_ctx *s)
{
    s->limit = limit;
    struct snap sn;
    snap_lock(st, &sn);
    snap_range(&sn, kind, from, to);
    snap_unlock(&sn);
    for (size_t i = 0; i < sn.nsegs && (!limit || s->n < limit); i++)
        if (cn_seg_scan(sn.segs[i], from, to, NULL, scan_rec, s) == CN_EIO)
            atomic_fetch_add(&st->stats.read_errors, 1);
    scan_parts(&sn, from, to, s);
    snap_release(&sn);
    return s->n;
}

size_t cn_store_scan_spans(struct cn_store *st, uint64_t from_ns, uint64_t to_ns, size_t limit,
                           cn_store_span_cb cb, void *ctx)
{
    struct scan_ctx s = {cb, NULL, ctx, 0, 0};
    return scan(st, CN_SEG_SPANS, from_ns, to_ns, limit, &s);
}

size_t cn_store_scan_logs(struct cn_store *st, uint64_t from_ns, uint64_t to_ns, size_t limit,
                          cn_store_log_cb cb, void *ctx)
{
    struct scan_ctx s = {NULL, cb, ctx, 0, 0};
    return scan(st, CN_SEG_LOGS, from_ns, to_ns, limit, &s);
}

/* ---- filtered scans ------------------------------------------------------------------- */

/* A filtered scan: the plain scan's callbacks and budget, the filter, and the filter's terms
 * as C strings for the blooms. */
struct fscan {
    struct scan_ctx s; /* first: scan_rec gets it through the shared ctx */
    const struct cn_store_filter *f;
    char **terms; /* NULL entries prune nothing */
    uint8_t kind; /* CN_SEG_SPANS or CN_SEG_LOGS */
};

static int dur_passes(const struct cn_store_filter *f, uint64_t d)
{
    return (!f->min_duration_ns || d >= f->min_duration_ns) &&
           (!f->max_duration_ns || d <= f->max_duration_ns);
}

/* The segment's predicate: the cheap columns of one row. */
static int filter_row(void *ctx, const struct cn_seg_row *r)
{
    const struct fscan *x = ctx;
    const struct cn_store_filter *f = x->f;
    if (f->service.ptr && !cn_slice_eq(r->service, f->service))
        return 0;
    if (f->trace_id && memcmp(r->trace_id, f->trace_id, 16) != 0)
        return 0;
    if (x->kind == CN_SEG_LOGS)
        return !f->min_severity || r->severity >= f->min_severity;
    if (f->name.ptr && !cn_slice_eq(r->name, f->name))
        return 0;
    if (f->kind >= 0 && r->kind != f->kind)
        return 0;
    if (f->status >= 0 && r->status_code != f->status)
        return 0;
    /* A duration past INT64_MAX reads as 0 here: 0 is left to the caller's own check. */
    return r->duration_ns == 0 || dur_passes(f, r->duration_ns);
}

static int service_passes(const struct cn_store_filter *f, const struct cn_resource *r)
{
    return !f->service.ptr || (r ? cn_slice_eq(r->service, f->service) : f->service.len == 0);
}

static int span_passes(const struct cn_store_filter *f, const struct cn_span *s)
{
    return service_passes(f, s->resource) &&
           (!f->trace_id || memcmp(s->trace_id, f->trace_id, 16) == 0) &&
           (!f->name.ptr || cn_slice_eq(s->name, f->name)) && (f->kind < 0 || s->kind == f->kind) &&
           (f->status < 0 || s->status_code == f->status) &&
           dur_passes(f, s->end_ns > s->start_ns ? s->end_ns - s->start_ns : 0);
}

static int log_passes(const struct cn_store_filter *f, const struct cn_log *l)
{
    return service_passes(f, l->resource) &&
           (!f->trace_id || memcmp(l->trace_id, f->trace_id, 16) == 0) &&
           (!f->min_severity || l->severity_number >= f->min_severity);
}

/* The records of one trace in seg (through its trace index) that lie in [from, to). */
static void fscan_trace(struct cn_store *st, struct cn_seg *seg, uint64_t from, uint64_t to,
                        struct fscan *x)
{
    struct cn_tel_batch b;
    cn_tel_batch_init(&b, 256u << 20);
    if (cn_seg_trace(seg, x->f->trace_id, &b) == CN_EIO)
        atomic_fetch_add(&st->stats.read_errors, 1);
    int stop = 0;
    for (size_t i = 0; i < b.num_spans && !stop && x->s.span_cb; i++)
        if (b.spans[i].start_ns >= from && b.spans[i].start_ns < to &&
            span_passes(x->f, &b.spans[i]))
            stop = scan_rec(&x->s, &b.spans[i], NULL);
    for (size_t i = 0; i < b.num_logs && !stop && x->s.log_cb; i++)
        if (b.logs[i].time_ns >= from && b.logs[i].time_ns < to && log_passes(x->f, &b.logs[i]))
            stop = scan_rec(&x->s, NULL, &b.logs[i]);
    cn_tel_batch_release(&b);
}

static void fscan_parts(const struct snap *sn, uint64_t from, uint64_t to, struct fscan *x)
{
    struct scan_ctx *s = &x->s;
    for (size_t p = 0; p < sn->nparts && (!s->limit || s->n < s->limit); p++) {
        const struct part *b = &sn->parts[p];
        for (size_t i = 0; s->span_cb && i < b->nspans && (!s->limit || s->n < s->limit); i++)
            if (b->spans[i].start_ns >= from && b->spans[i].start_ns < to &&
                span_passes(x->f, &b->spans[i]))
                scan_rec(s, &b->spans[i], NULL);
        for (size_t i = 0; s->log_cb && i < b->nlogs && (!s->limit || s->n < s->limit); i++)
            if (b->logs[i].time_ns >= from && b->logs[i].time_ns < to &&
                log_passes(x->f, &b->logs[i]))
                scan_rec(s, NULL, &b->logs[i]);
    }
}

/* 0 when seg surely holds nothing x asks for, by its blooms. */
static int seg_may_pass(struct cn_seg *seg, const struct fscan *x)
{
    if (x->f->trace_id && !cn_seg_may_contain_trace(seg, x->f->trace_id))
        return 0;
    for (size_t i = 0; i < x->f->num_terms; i++)
        if (x->terms[i] && !cn_seg_may_contain_token(seg, x->terms[i]))
            return 0;
    return 1;
}

static size_t fscan(struct cn_store *st, uint64_t from, uint64_t to, size_t limit, struct fscan *x,
                    struct cn_store_scan_stats *stats)
{
    uint8_t kind = x->kind;
    static const struct cn_store_filter none = {.kind = -1, .status = -1};
    struct cn_store_scan_stats sink;
    if (!stats)
        stats = &sink;
    memset(stats, 0, sizeof(*stats));
    if (!x->f)
        x->f = &none;
    const struct cn_store_filter *f = x->f;
    /* Terms as C strings for the blooms; one that cannot be copied prunes nothing. */
    x->terms = f->num_terms ? calloc(f->num_terms, sizeof(*x->terms)) : NULL;
    for (size_t i = 0; x->terms && i < f->num_terms; i++) {
        if (f->terms[i].len > CN_STORE_MAX_FILTER_TERM ||
            memchr(f->terms[i].ptr, 0, f->terms[i].len))
            continue;
        x->terms[i] = malloc(f->terms[i].len + 1);
        if (x->terms[i]) {
            memcpy(x->terms[i], f->terms[i].ptr, f->terms[i].len);
            x->terms[i][f->terms[i].len] = '\0';
        }
    }
    struct cn_seg_filter sf = {f->service, 0, UINT64_MAX};
    if (kind == CN_SEG_SPANS) {
        sf.min_stat = f->min_duration_ns;
        sf.max_stat = f->max_duration_ns ? f->max_duration_ns : UINT64_MAX;
    } else {
        sf.min_stat = f->min_severity;
    }
    x->s.limit = limit;
    struct snap sn;
    snap_lock(st, &sn);
    snap_range(&sn, kind, from, to);
    snap_unlock(&sn);
    for (size_t i = 0; i < sn.nsegs && (!limit || x->s.n < limit); i++) {
        struct cn_seg *seg = sn.segs[i];
        stats->segments++;
        if (!seg_may_pass(seg, x)) {
            stats->segments_skipped++;
            continue;
        }
        if (f->trace_id)
            fscan_trace(st, seg, from, to, x);
        else if (cn_seg_scan_where(seg, from, to, &sf, filter_row, scan_rec, x) == CN_EIO)
            atomic_fetch_add(&st->stats.read_errors, 1);
    }
    fscan_parts(&sn, from, to, x);
    snap_release(&sn);
    for (size_t i = 0; x->terms && i < f->num_terms; i++)
        free(x->terms[i]);
    free(x->terms);
    stats->records = x->s.n;
    return x->s.n;
}

size_t cn_store_scan_spans_where(struct cn_store *st, uint64_t from_ns, uint64_t to_ns,
                                 size_t limit, const struct cn_store_filter *f, cn_store_span_cb cb,
                                 void *ctx, struct cn_store_scan_stats *stats)
{
    struct fscan x = {{cb, NULL, ctx, 0, 0}, f, NULL, CN_SEG_SPANS};
    return fscan(st, from_ns, to_ns, limit, &x, stats);
}

size_t cn_store_scan_logs_where(struct cn_store *st, uint64_t from_ns, uint64_t to_ns, size_t limit,
                                const struct cn_store_filter *f, cn_store_log_cb cb, void *ctx,
                                struct cn_store_scan_stats *stats)
{
    struct fscan x = {{NULL, cb, ctx, 0, 0}, f, NULL, CN_SEG_LOGS};
    return fscan(st, from_ns, to_ns, limit, &x, stats);
}

uint64_t cn_store_corrupt_blocks(struct cn_store *st)
{
    uint64_t n = 0;
    uv_rwlock_rdlock(&st->hlock);
    for (size_t i = 0; i < st->num_segs; i++)
        if (st->segs[i].seg)
            n += cn_seg_corrupt_blocks(st->segs[i].seg);
    uv_rwlock_rdunlock(&st->hlock);
    return n;
}

void cn_store_count_rejected(struct cn_store *st, int logs, uint64_t n)
{
    atomic_fetch_add(logs ? &st->stats.rejected_logs : &st->stats.rejected_spans, n);
}

struct tcount {
    uint8_t id[16];
    uint32_t used, uniq;
};

void cn_store_limit_traces(struct cn_store *st, struct cn_tel_batch *b)
{
    uint32_t max = st->opts.max_spans_per_trace;
    if (!max || !st->derive || b->num_spans == 0)
        return;
    size_t cap = 16;
    while (cap < b->num_spans * 2)
        cap *= 2;
    /* The batch's distinct traces, each span's among them, then what the derived tables
     * already count of each: looked up all at once, which lets the lookups overlap. */
    struct tcount *t = calloc(cap, sizeof(*t));
    /* One block: each distinct trace's ID (pointers first, for their alignment), then each
     * span's trace among them and each distinct trace's count. */
    size_t n = b->num_spans;
    const uint8_t **ids = malloc(n * (sizeof(*ids) + 2 * sizeof(uint32_t)));
    if (!t || !ids) {
        /* the limit is a guard, not a correctness need: skip it rather than fail */
        free(t);
        free(ids);
        return;
    }
    uint32_t *of = (uint32_t *)(ids + n), *count = of + n;
    size_t nuniq = 0, j = 0;
    for (size_t i = 0; i < b->num_spans; i++) {
        const uint8_t *id = b->spans[i].trace_id;
        /* Spans of a trace mostly come one after the other: no hashing for those. */
        if (!(i && memcmp(t[j].id, id, 16) == 0)) {
            j = hash_id(id) & (cap - 1);
            while (t[j].used && memcmp(t[j].id, id, 16) != 0)
                j = (j + 1) & (cap - 1);
            if (!t[j].used) {
                t[j].used = 1;
                memcpy(t[j].id, id, 16);
                t[j].uniq = (uint32_t)nuniq;
                ids[nuniq++] = id;
            }
        }
        of[i] = t[j].uniq;
    }
    cn_derive_trace_spans(st->derive, ids, nuniq, count);
    size_t kept = 0;
    for (size_t i = 0; i < b->num_spans; i++) {
        uint32_t u = of[i];
        if (count[u] >= max) {
            char hex[33];
            cn_hex_encode(hex, b->spans[i].trace_id, 16);
            cn_tel_batch_reject(b, "trace %s already has %u spans (telemetry.max_spans_per_trace)",
                                hex, (unsigned)count[u]);
            continue;
        }
        count[u]++;
        if (kept != i)
            b->spans[kept] = b->spans[i];
        kept++;
    }
    b->num_spans = kept;
    free(t);
    free(ids);
}

struct cn_derive *cn_store_derive(struct cn_store *st)
{
    return st->derive;
}

int cn_store_seal(struct cn_store *st)
{
    /* From any thread: ask the writer to freeze on its next turn, then wait for the sealer. */
    uv_mutex_lock(&st->qlock);
    st->force_seal = 1;
    uv_cond_signal(&st->qcond);
    uv_mutex_unlock(&st->qlock);
    for (int i = 0; i < 600; i++) {
        uv_mutex_lock(&st->qlock);
        int asked = st->force_seal;
        uv_mutex_unlock(&st->qlock);
        uv_mutex_lock(&st->slock);
        int pending = st->seal_pending;
        uv_mutex_unlock(&st->slock);
        if (!asked && !pending)
            return 0;
        uv_sleep(10);
    }
    return CN_EAGAIN;
}

const struct cn_store_stats *cn_store_stats(const struct cn_store *st)
{
    return &st->stats;
}

/* ---- ingest hook (query layer: live tail) ---------------------------------------------- */

void cn_store_set_ingest_cb(struct cn_store *st, cn_store_ingest_cb cb, void *ctx)
{
    uv_mutex_lock(&st->qlock); /* the writer reads the hook after taking qlock */
    st->ingest_cb = cb;
    st->ingest_ctx = ctx;
    uv_mutex_unlock(&st->qlock);
}
