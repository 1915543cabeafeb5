#include "telemetry/store.h"

#include "base/log.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/file.h>
#include <unistd.h>
#include <xxhash.h>

/* One ingested batch kept whole in the head. */
struct entry {
    uint8_t *body;
    size_t len;
    struct cn_tel_batch batch;
    uint64_t bytes; /* body + arena, counted against head_max_bytes */
    uint64_t lsn;
};

/* A span or log in the head: entry index, record index, next ref of the same trace. */
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

struct cn_store {
    struct cn_store_opts opts;
    char *dir;
    int lock_fd; /* flock on DIR/LOCK: one process per store */
    struct cn_wal *wal;
    struct cn_store_stats stats;

    /* Writer queue: guarded by qlock. */
    uv_mutex_t qlock;
    uv_cond_t qcond;
    struct cn_store_sub **q;
    size_t qlen, qcap;
    int stopping;
    uv_thread_t writer;
    int writer_started;

    /* Head: guarded by hlock (writer takes it exclusive, readers shared). */
    uv_rwlock_t hlock;
    struct entry *entries;
    size_t num_entries, cap_entries;
    struct ref *span_refs, *log_refs;
    size_t num_span_refs, cap_span_refs, num_log_refs, cap_log_refs;
    struct slot *slots;
    size_t num_slots, used_slots;
};

static uint64_t hash_id(const uint8_t *id)
{
    return XXH3_64bits(id, 16);
}

static struct slot *find_slot(struct slot *slots, size_t n, const uint8_t *id)
{
    size_t mask = n - 1;
    for (size_t i = hash_id(id) & mask;; i = (i + 1) & mask) {
        struct slot *s = &slots[i];
        if (!s->used || memcmp(s->id, id, 16) == 0)
            return s;
    }
}

static int grow_slots(struct cn_store *st)
{
    size_t n = st->num_slots ? st->num_slots * 2 : 1024;
    struct slot *slots = calloc(n, sizeof(*slots));
    if (!slots)
        return CN_ENOMEM;
    for (size_t i = 0; i < st->num_slots; i++) {
        if (st->slots[i].used)
            *find_slot(slots, n, st->slots[i].id) = st->slots[i];
    }
    free(st->slots);
    st->slots = slots;
    st->num_slots = n;
    return 0;
}

static struct slot *slot_for(struct cn_store *st, const uint8_t *id)
{
    struct slot *s = find_slot(st->slots, st->num_slots, id);
    if (!s->used) {
        memcpy(s->id, id, 16);
        s->used = 1;
        s->span_first = s->span_last = s->log_first = s->log_last = NO_REF;
        st->used_slots++;
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

/* Adds a batch to the head (writer thread, hlock held exclusive). Takes body and batch. */
static int head_add(struct cn_store *st, uint8_t *body, size_t len, struct cn_tel_batch *b,
                    uint64_t lsn)
{
    struct cn_tel_batch *bb = b;
    if (reserve((void **)&st->entries, &st->cap_entries, st->num_entries + 1,
                sizeof(*st->entries)) ||
        reserve((void **)&st->span_refs, &st->cap_span_refs, st->num_span_refs + bb->num_spans,
                sizeof(struct ref)) ||
        reserve((void **)&st->log_refs, &st->cap_log_refs, st->num_log_refs + bb->num_logs,
                sizeof(struct ref)))
        return CN_ENOMEM;
    /* Room for every new trace up front, so nothing below can fail half-way. */
    while ((st->used_slots + bb->num_spans + bb->num_logs + 1) * 2 > st->num_slots)
        if (grow_slots(st) != 0)
            return CN_ENOMEM;
    uint32_t e = (uint32_t)st->num_entries;
    struct entry *en = &st->entries[st->num_entries++];
    en->body = body;
    en->len = len;
    en->batch = *b;
    en->lsn = lsn;
    en->bytes = len + b->arena.used;
    for (size_t i = 0; i < en->batch.num_spans; i++) {
        struct slot *s = slot_for(st, en->batch.spans[i].trace_id);
        uint32_t r = (uint32_t)st->num_span_refs++;
        st->span_refs[r] = (struct ref){e, (uint32_t)i, NO_REF};
        if (s->span_last == NO_REF)
            s->span_first = r;
        else
            st->span_refs[s->span_last].next = r;
        s->span_last = r;
    }
    for (size_t i = 0; i < en->batch.num_logs; i++) {
        const struct cn_log *l = &en->batch.logs[i];
        uint32_t r = (uint32_t)st->num_log_refs++;
        st->log_refs[r] = (struct ref){e, (uint32_t)i, NO_REF};
        if (cn_id_is_zero(l->trace_id, 16))
            continue;
        struct slot *s = slot_for(st, l->trace_id);
        if (s->log_last == NO_REF)
            s->log_first = r;
        else
            st->log_refs[s->log_last].next = r;
        s->log_last = r;
    }
    atomic_fetch_add(&st->stats.head_bytes, en->bytes);
    atomic_fetch_add(&st->stats.spans, en->batch.num_spans);
    atomic_fetch_add(&st->stats.logs, en->batch.num_logs);
    atomic_fetch_add(&st->stats.batches, 1);
    atomic_fetch_add(&st->stats.truncated_attrs, b->truncated_attrs);
    atomic_fetch_add(&st->stats.truncated_values, b->truncated_values);
    atomic_fetch_add(&st->stats.truncated_events, b->truncated_events);
    atomic_fetch_add(&st->stats.truncated_links, b->truncated_links);
    return 0;
}

/* ---- writer thread --------------------------------------------------------------------- */

static void writer_main(void *arg)
{
    struct cn_store *st = arg;
    struct cn_store_sub **batch = NULL;
    size_t cap = 0;
    for (;;) {
        uv_mutex_lock(&st->qlock);
        while (st->qlen == 0 && !st->stopping)
            uv_cond_wait(&st->qcond, &st->qlock);
        if (st->qlen == 0 && st->stopping) {
            uv_mutex_unlock(&st->qlock);
            break;
        }
        /* Take everything queued: one group commit for all of it. */
        struct cn_store_sub **tmp = batch;
        size_t tcap = cap;
        batch = st->q;
        cap = st->qcap;
        size_t n = st->qlen;
        st->q = tmp;
        st->qcap = tcap;
        st->qlen = 0;
        uv_mutex_unlock(&st->qlock);

        uint64_t bytes = 0;
        int rc = 0;
        for (size_t i = 0; i < n && !rc; i++) {
            struct cn_store_sub *sub = batch[i];
            rc = cn_wal_append(st->wal, (uint8_t)sub->kind, sub->body, sub->len, &sub->lsn);
            bytes += sub->len;
        }
        if (!rc)
            rc = cn_wal_commit(st->wal);
        if (rc) {
            atomic_fetch_add(&st->stats.wal_errors, 1);
            cn_error("telemetry", "wal write failed, batches refused", "batches=%zu error=\"%s\"",
                     n, cn_strerror(rc));
        } else {
            atomic_fetch_add(&st->stats.wal_commits, 1);
            atomic_fetch_add(&st->stats.wal_bytes, bytes);
        }
        uv_rwlock_wrlock(&st->hlock);
        for (size_t i = 0; i < n; i++) {
            struct cn_store_sub *sub = batch[i];
            sub->status = rc;
            if (!rc) {
                sub->status = head_add(st, sub->body, sub->len, &sub->batch, sub->lsn);
                if (sub->status == 0) {
                    /* The head owns body and batch now. */
                    sub->body = NULL;
                    cn_tel_batch_init(&sub->batch, 0);
                }
            }
        }
        uv_rwlock_wrunlock(&st->hlock);
        atomic_fetch_sub(&st->stats.queue_bytes, bytes);
        for (size_t i = 0; i < n; i++)
            cn_mailbox_post(batch[i]->mailbox, &batch[i]->mail);
    }
    free(batch);
}

int cn_store_mkdirs(const char *dir)
{
    char tmp[4096];
    snprintf(tmp, sizeof(tmp), "%s", dir);
    for (char *p = tmp + 1; *p; p++) {
        if (*p == '/') {
            *p = '\0';
            if (mkdir(tmp, 0750) != 0 && errno != EEXIST)
                return -errno;
            *p = '/';
        }
    }
    if (mkdir(tmp, 0750) != 0 && errno != EEXIST)
        return -errno;
    return 0;
}

/* ---- open, replay, close --------------------------------------------------------------- */

struct replay_ctx {
    struct cn_store *st;
    uint64_t failed;
};

static int replay_one(void *ctx, uint64_t lsn, uint8_t type, const uint8_t *data, size_t len)
{
    struct replay_ctx *rc = ctx;
    struct cn_store *st = rc->st;
    uint8_t *body = malloc(len ? len : 1);
    if (!body)
        return CN_ENOMEM;
    memcpy(body, data, len);
    struct cn_tel_batch b;
    cn_tel_batch_init(&b, (size_t)st->opts.max_body_bytes * 4 + (1u << 20));
    char err[256];
    int r =
        cn_tel_decode(&b, (enum cn_body_kind)type, body, len, &st->opts.limits, err, sizeof(err));
    if (r == 0)
        r = head_add(st, body, len, &b, lsn);
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
    atomic_fetch_add(&st->stats.replayed_records, 1);
    return 0;
}

int cn_store_open(struct cn_store **out_store, const struct cn_store_opts *opts, char *err,
                  size_t err_len)
{
    struct cn_store *st = calloc(1, sizeof(*st));
    if (!st)
        return CN_ENOMEM;
    st->opts = *opts;
    st->dir = strdup(opts->dir);
    uv_mutex_init(&st->qlock);
    uv_cond_init(&st->qcond);
    uv_rwlock_init(&st->hlock);
    st->lock_fd = -1;
    char waldir[4096];
    snprintf(waldir, sizeof(waldir), "%s/wal", opts->dir);
    char lockpath[4096];
    snprintf(lockpath, sizeof(lockpath), "%s/LOCK", opts->dir);
    int rc = cn_store_mkdirs(opts->dir);
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
    struct cn_wal_opts wo = {waldir, opts->wal_segment_bytes, opts->max_body_bytes, opts->fsync};
    rc = cn_wal_open(&st->wal, &wo, err, err_len);
    if (rc) {
        cn_store_close(st);
        return rc;
    }
    struct replay_ctx ctx = {st, 0};
    struct cn_wal_replay_stats rs;
    uint64_t t0 = uv_hrtime();
    rc = cn_wal_replay(st->wal, replay_one, &ctx, &rs);
    if (rc) {
        snprintf(err, err_len, "%s: replay failed: %s", waldir, cn_strerror(rc));
        cn_store_close(st);
        return rc;
    }
    atomic_store(&st->stats.replay_corrupt, rs.corrupt + ctx.failed);
    cn_info("telemetry", "wal replayed",
            "records=%llu bytes=%llu files=%llu corrupt=%llu "
            "torn_bytes=%llu spans=%llu logs=%llu ms=%llu",
            (unsigned long long)rs.records, (unsigned long long)rs.bytes,
            (unsigned long long)rs.files, (unsigned long long)(rs.corrupt + ctx.failed),
            (unsigned long long)rs.truncated, (unsigned long long)atomic_load(&st->stats.spans),
            (unsigned long long)atomic_load(&st->stats.logs),
            (unsigned long long)((uv_hrtime() - t0) / 1000000));
    rc = uv_thread_create(&st->writer, writer_main, st);
    if (rc) {
        snprintf(err, err_len, "cannot start the telemetry writer: %s", uv_strerror(rc));
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
    cn_wal_close(st->wal);
    if (st->lock_fd >= 0)
        close(st->lock_fd);
    for (size_t i = 0; i < st->num_entries; i++) {
        cn_tel_batch_release(&st->entries[i].batch);
        free(st->entries[i].body);
    }
    free(st->entries);
    free(st->span_refs);
    free(st->log_refs);
    free(st->slots);
    free(st->q);
    free(st->dir);
    uv_rwlock_destroy(&st->hlock);
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
    atomic_fetch_add(
        &st->stats.rejected_spans,
        sub->kind == CN_BODY_LOGS_PB || sub->kind == CN_BODY_LOGS_JSON ? 0 : sub->batch.rejected);
    atomic_fetch_add(
        &st->stats.rejected_logs,
        sub->kind == CN_BODY_LOGS_PB || sub->kind == CN_BODY_LOGS_JSON ? sub->batch.rejected : 0);
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

size_t cn_store_trace(struct cn_store *st, const uint8_t trace_id[16], cn_store_span_cb cb,
                      void *ctx)
{
    size_t n = 0;
    uv_rwlock_rdlock(&st->hlock);
    if (st->num_slots) {
        struct slot *s = find_slot(st->slots, st->num_slots, trace_id);
        for (uint32_t r = s->used ? s->span_first : NO_REF; r != NO_REF;
             r = st->span_refs[r].next) {
            cb(ctx, &st->entries[st->span_refs[r].entry].batch.spans[st->span_refs[r].idx]);
            n++;
        }
    }
    uv_rwlock_rdunlock(&st->hlock);
    return n;
}

size_t cn_store_trace_logs(struct cn_store *st, const uint8_t trace_id[16], cn_store_log_cb cb,
                           void *ctx)
{
    size_t n = 0;
    uv_rwlock_rdlock(&st->hlock);
    if (st->num_slots) {
        struct slot *s = find_slot(st->slots, st->num_slots, trace_id);
        for (uint32_t r = s->used ? s->log_first : NO_REF; r != NO_REF; r = st->log_refs[r].next) {
            cb(ctx, &st->entries[st->log_refs[r].entry].batch.logs[st->log_refs[r].idx]);
            n++;
        }
    }
    uv_rwlock_rdunlock(&st->hlock);
    return n;
}

size_t cn_store_scan_spans(struct cn_store *st, uint64_t from_ns, uint64_t to_ns, size_t limit,
                           cn_store_span_cb cb, void *ctx)
{
    size_t n = 0;
    uv_rwlock_rdlock(&st->hlock);
    for (size_t e = 0; e < st->num_entries && (!limit || n < limit); e++) {
        const struct cn_tel_batch *b = &st->entries[e].batch;
        for (size_t i = 0; i < b->num_spans && (!limit || n < limit); i++) {
            if (b->spans[i].start_ns >= from_ns && b->spans[i].start_ns < to_ns) {
                cb(ctx, &b->spans[i]);
                n++;
            }
        }
    }
    uv_rwlock_rdunlock(&st->hlock);
    return n;
}

size_t cn_store_scan_logs(struct cn_store *st, uint64_t from_ns, uint64_t to_ns, size_t limit,
                          cn_store_log_cb cb, void *ctx)
{
    size_t n = 0;
    uv_rwlock_rdlock(&st->hlock);
    for (size_t e = 0; e < st->num_entries && (!limit || n < limit); e++) {
        const struct cn_tel_batch *b = &st->entries[e].batch;
        for (size_t i = 0; i < b->num_logs && (!limit || n < limit); i++) {
            if (b->logs[i].time_ns >= from_ns && b->logs[i].time_ns < to_ns) {
                cb(ctx, &b->logs[i]);
                n++;
            }
        }
    }
    uv_rwlock_rdunlock(&st->hlock);
    return n;
}

const struct cn_store_stats *cn_store_stats(const struct cn_store *st)
{
    return &st->stats;
}
