/* Naming: services and instances, heartbeats and expiry, lock-free instance lists.
 *
 * Writers hold reg->lock and change a service's mutable instance array, then publish a new
 * immutable snapshot (struct snap) with an atomic exchange and retire the old one. Readers
 * enter an epoch (their thread's slot), walk the bucket chain and read the snapshot with
 * acquire loads, and leave; nothing they can reach is freed while they are inside, because a
 * retired object is freed only when every slot is idle or entered after its retirement. */
#include "base/log.h"
#include "registry/internal.h"
#include "registry/util.h"

#include <stdarg.h>
#include <xxhash.h>

static atomic_uint_fast64_t next_reg_id = 1;

static _Thread_local struct {
    uint64_t reg_id;
    int slot;
} tl_reader;

void reg_seterr(struct cn_reg_error *err, const char *param, const char *fmt, ...)
{
    if (!err)
        return;
    err->param = param;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->message, sizeof(err->message), fmt, ap);
    va_end(ap);
}

void cn_reg_opts_default(struct cn_reg_opts *o)
{
    o->max_services = 100000;
    o->max_instances_per_service = 10000;
    o->max_configs = 100000;
    o->max_config_bytes = 1u << 20;
    o->max_history = 100;
    o->beat_interval_ms = CN_REG_BEAT_INTERVAL_MS;
    o->beat_timeout_ms = CN_REG_BEAT_TIMEOUT_MS;
    o->delete_timeout_ms = CN_REG_DELETE_TIMEOUT_MS;
    o->cache_millis = 10000;
}

/* ---- epochs ----------------------------------------------------------------------------- */

/* This thread's reader slot, or -1 when every slot is taken. */
static int reader_slot(struct cn_reg *reg)
{
    if (tl_reader.reg_id == reg->id)
        return tl_reader.slot;
    int s = atomic_fetch_add(&reg->num_slots, 1);
    if (s >= REG_MAX_READERS)
        s = -1;
    tl_reader.reg_id = reg->id;
    tl_reader.slot = s;
    return s;
}

/* Enters a read section. Returns the slot to leave with, or -1 when the section holds the
 * writer lock instead. */
static int read_begin(struct cn_reg *reg)
{
    int s = reader_slot(reg);
    if (s < 0) {
        uv_mutex_lock(&reg->lock);
        return -1;
    }
    atomic_store(&reg->slots[s].epoch, atomic_load(&reg->epoch));
    atomic_thread_fence(memory_order_seq_cst);
    return s;
}

static void read_end(struct cn_reg *reg, int s)
{
    if (s < 0)
        uv_mutex_unlock(&reg->lock);
    else
        atomic_store_explicit(&reg->slots[s].epoch, 0, memory_order_release);
}

/* Under reg->lock: frees ptr once no reader can hold it. */
static void retire(struct cn_reg *reg, void *ptr, void (*free_fn)(void *))
{
    if (!ptr)
        return;
    if (reg->num_retired == reg->cap_retired) {
        size_t cap = reg->cap_retired ? reg->cap_retired * 2 : 64;
        struct retired *r = realloc(reg->retired, cap * sizeof(*r));
        if (!r) {
            /* Cannot defer: wait for the readers instead (rare; never under load). */
            uint64_t e = atomic_fetch_add(&reg->epoch, 1) + 1;
            int n = CN_MIN(atomic_load(&reg->num_slots), REG_MAX_READERS);
            for (int i = 0; i < n; i++)
                while (1) {
                    uint64_t se = atomic_load(&reg->slots[i].epoch);
                    if (se == 0 || se >= e)
                        break;
                }
            free_fn(ptr);
            return;
        }
        reg->retired = r;
        reg->cap_retired = cap;
    }
    /* Retired at epoch e: a reader that entered at e or before may hold it. */
    uint64_t e = atomic_fetch_add(&reg->epoch, 1);
    reg->retired[reg->num_retired++] = (struct retired){ptr, free_fn, e};
}

/* Under reg->lock: frees what no reader can hold any more. */
void reg_reclaim(struct cn_reg *reg)
{
    if (!reg->num_retired)
        return;
    uint64_t min = UINT64_MAX;
    int n = CN_MIN(atomic_load(&reg->num_slots), REG_MAX_READERS);
    for (int i = 0; i < n; i++) {
        uint64_t se = atomic_load(&reg->slots[i].epoch);
        if (se && se < min)
            min = se;
    }
    size_t keep = 0;
    for (size_t i = 0; i < reg->num_retired; i++) {
        struct retired *r = &reg->retired[i];
        if (r->epoch < min)
            r->free_fn(r->ptr);
        else
            reg->retired[keep++] = *r;
    }
    reg->num_retired = keep;
}

/* ---- services ---------------------------------------------------------------------------- */

static void snap_free(void *p)
{
    free(p); /* one allocation: header, hosts, cluster names, text, tail */
}

void reg_inst_release(struct inst *in)
{
    free(in->frag);
    free(in->cluster); /* and ip, metadata, health_path: one allocation */
}

static void svc_free(void *p)
{
    struct svc *s = p;
    for (size_t i = 0; i < s->num; i++)
        reg_inst_release(&s->insts[i]);
    free(s->insts);
    free(s->index);
    free(s->metadata); /* the names live in s's own allocation */
    snap_free(atomic_load(&s->snap));
    free(s);
}

static uint64_t svc_hash(struct cn_slice ns, struct cn_slice group, struct cn_slice name)
{
    const char *p[] = {ns.ptr, group.ptr, name.ptr};
    size_t l[] = {ns.len, group.len, name.len};
    return reg_hash(p, l, 3);
}

static int svc_is(const struct svc *s, uint64_t h, struct cn_slice ns, struct cn_slice group,
                  struct cn_slice name)
{
    return s->hash == h && s->name_len == name.len && s->group_len == group.len &&
           s->ns_len == ns.len && memcmp(s->name, name.ptr, name.len) == 0 &&
           memcmp(s->group, group.ptr, group.len) == 0 && memcmp(s->ns, ns.ptr, ns.len) == 0;
}

/* Inside a read section or under the lock. */
struct svc *reg_find_svc(struct cn_reg *reg, struct cn_slice ns, struct cn_slice group,
                         struct cn_slice name)
{
    ns = cn_reg_ns(ns);
    uint64_t h = svc_hash(ns, group, name);
    struct svc *s = atomic_load_explicit(&reg->buckets[h % REG_BUCKETS], memory_order_acquire);
    while (s && !svc_is(s, h, ns, group, name))
        s = atomic_load_explicit(&s->next, memory_order_acquire);
    return s;
}

/* ---- a service's instance index ---------------------------------------------------------- */

uint64_t reg_inst_key(struct cn_slice cluster, struct cn_slice ip, uint16_t port)
{
    const char *p[] = {cluster.ptr, ip.ptr};
    size_t l[] = {cluster.len, ip.len};
    return reg_hash(p, l, 2) ^ ((uint64_t)port * 0x9e3779b97f4a7c15ull);
}

/* Files insts[pos] in s's index; the table has room (index_reserve). */
void reg_index_put(struct svc *s, size_t pos)
{
    size_t mask = s->index_cap - 1;
    size_t i = (size_t)s->insts[pos].key & mask;
    while (s->index[i])
        i = (i + 1) & mask;
    s->index[i] = (uint32_t)(pos + 1);
}

/* Refiles every instance (after insts moved) in the table as it is. */
void reg_index_rebuild(struct svc *s)
{
    if (!s->index_cap)
        return;
    memset(s->index, 0, s->index_cap * sizeof(*s->index));
    for (size_t i = 0; i < s->num; i++)
        reg_index_put(s, i);
}

/* Room in s's index (and its instance array) for n instances. 0 or CN_ENOMEM (nothing
 * changed then). */
int reg_index_reserve(struct svc *s, size_t n)
{
    if (n > s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 4;
        while (cap < n)
            cap *= 2;
        struct inst *a = realloc(s->insts, cap * sizeof(*a));
        if (!a)
            return CN_ENOMEM;
        s->insts = a;
        s->cap = cap;
    }
    if (2 * n <= s->index_cap)
        return 0;
    size_t cap = s->index_cap ? s->index_cap : 8;
    while (cap < 2 * n)
        cap *= 2;
    uint32_t *t = calloc(cap, sizeof(*t));
    if (!t)
        return CN_ENOMEM;
    free(s->index);
    s->index = t;
    s->index_cap = cap;
    reg_index_rebuild(s);
    return 0;
}

struct inst *reg_find_inst(struct svc *s, struct cn_slice cluster, struct cn_slice ip,
                           uint16_t port)
{
    if (!s->index_cap)
        return NULL;
    uint64_t key = reg_inst_key(cluster, ip, port);
    size_t mask = s->index_cap - 1;
    for (size_t i = (size_t)key & mask; s->index[i]; i = (i + 1) & mask) {
        struct inst *in = &s->insts[s->index[i] - 1];
        if (in->key == key && in->port == port && in->ip_len == ip.len &&
            in->cluster_len == cluster.len && memcmp(in->ip, ip.ptr, ip.len) == 0 &&
            memcmp(in->cluster, cluster.ptr, cluster.len) == 0)
            return in;
    }
    return NULL;
}

/* When expiry may next change in (UINT64_MAX: never; persistent and remote instances are
 * not this node's to expire). As cn_reg_tick decides: removed once silent past its delete
 * timeout, unhealthy once silent past its beat timeout. */
static uint64_t inst_due(const struct inst *in)
{
    if (!in->ephemeral || in->remote)
        return UINT64_MAX;
    uint64_t t =
        in->healthy ? CN_MIN(in->beat_timeout_ms, in->delete_timeout_ms) : in->delete_timeout_ms;
    return in->last_beat_ms + t;
}

/* Under the lock, after in changed: the tick must look at s by in's due time. */
static void due_note(struct svc *s, const struct inst *in)
{
    s->due_ms = CN_MIN(s->due_ms, inst_due(in));
}

/* ---- snapshots --------------------------------------------------------------------------- */

/* Renders one host; records where its healthy value is. */
static int render_host(struct cn_buf *b, const struct svc *s, const struct inst *in,
                       struct snap_host *h)
{
    size_t start = b->len;
    char num[24];
    int rc = cn_buf_puts(b, "{\"instanceId\":");
    struct cn_buf id;
    cn_buf_init(&id, 4096);
    rc |= cn_buf_printf(&id, "%s#%u#%s#%s", in->ip, in->port, in->cluster, s->grouped);
    rc |= cn_reg_json_str(b, id.ptr, id.len);
    cn_buf_release(&id);
    rc |= cn_buf_puts(b, ",\"ip\":");
    rc |= cn_reg_json_str(b, in->ip, in->ip_len);
    rc |= cn_buf_puts(b, ",\"port\":");
    rc |= cn_buf_append(b, num, cn_u64_to_dec(num, in->port));
    rc |= cn_buf_puts(b, ",\"weight\":");
    rc |= cn_reg_json_double(b, in->weight);
    rc |= cn_buf_puts(b, ",\"healthy\":");
    h->hoff = (uint32_t)(b->len - start);
    rc |= cn_buf_puts(b, in->healthy ? "true" : "false");
    h->hlen = in->healthy ? 4 : 5;
    rc |= cn_buf_puts(b, in->enabled ? ",\"enabled\":true" : ",\"enabled\":false");
    rc |= cn_buf_puts(b, in->ephemeral ? ",\"ephemeral\":true" : ",\"ephemeral\":false");
    rc |= cn_buf_puts(b, ",\"clusterName\":");
    rc |= cn_reg_json_str(b, in->cluster, in->cluster_len);
    rc |= cn_buf_puts(b, ",\"serviceName\":");
    rc |= cn_reg_json_str(b, s->grouped, s->group_len + 2 + s->name_len);
    rc |= cn_buf_puts(b, ",\"metadata\":");
    rc |= cn_buf_puts(b, in->metadata);
    rc |= cn_buf_printf(b,
                        ",\"instanceHeartBeatInterval\":%llu,\"instanceHeartBeatTimeOut\":%llu,"
                        "\"ipDeleteTimeout\":%llu,\"instanceIdGenerator\":\"simple\"}",
                        (unsigned long long)in->beat_interval_ms,
                        (unsigned long long)in->beat_timeout_ms,
                        (unsigned long long)in->delete_timeout_ms);
    h->len = (uint32_t)(b->len - start);
    return rc ? CN_ENOMEM : 0;
}

/* Renders in->frag when missing or stale. */
static int ensure_frag(const struct svc *s, struct inst *in)
{
    if (in->frag && in->frag_healthy == in->healthy)
        return 0;
    struct cn_buf b;
    cn_buf_init(&b, UINT32_MAX);
    struct snap_host h = {0};
    if (render_host(&b, s, in, &h) != 0 || cn_buf_append(&b, "", 1) != 0) {
        cn_buf_release(&b);
        return CN_ENOMEM;
    }
    free(in->frag);
    in->frag = b.ptr;
    in->frag_len = h.len;
    in->frag_hoff = h.hoff;
    in->frag_healthy = in->healthy;
    return 0;
}

/* The head of s's common list answer, {"name":...,"hosts":[, into b. */
static int render_head(struct cn_reg *reg, const struct svc *s, struct cn_buf *b)
{
    char num[24];
    int rc = cn_buf_puts(b, "{\"name\":");
    rc |= cn_reg_json_str(b, s->grouped, s->group_len + 2 + s->name_len);
    rc |= cn_buf_puts(b, ",\"groupName\":");
    rc |= cn_reg_json_str(b, s->group, s->group_len);
    rc |= cn_buf_puts(b, ",\"clusters\":\"\",\"cacheMillis\":");
    rc |= cn_buf_append(b, num, cn_u64_to_dec(num, reg->opts.cache_millis));
    rc |= cn_buf_puts(b, ",\"hosts\":[");
    return rc ? CN_ENOMEM : 0;
}

/* Where a list answer's time goes, and what follows it. */
#define LIST_TIME "],\"lastRefTime\":"
#define LIST_TAIL_FMT                                                                              \
    ",\"checksum\":\"%s\",\"allIPs\":false,\"reachProtectionThreshold\":%s,\"valid\":true}"
#define LIST_TAIL_MAX 128

/* Under the lock: when s is stale, builds its snapshot from the instances and publishes it,
 * retiring the old one. On allocation failure the old snapshot stays (readers see the state
 * before the writes; the next reader tries again). The hosts' JSON comes from their cached
 * fragments: a build costs one copy of the service's text, not a rendering of every host. */
static int build(struct cn_reg *reg, struct svc *s)
{
    if (!atomic_load_explicit(&s->stale, memory_order_relaxed))
        return 0;
    size_t names = 0, host_len = 0, healthy = 0, enabled = 0;
    for (size_t i = 0; i < s->num; i++) {
        if (ensure_frag(s, &s->insts[i]) != 0)
            return CN_ENOMEM;
        names += s->insts[i].cluster_len + 1;
        host_len += s->insts[i].frag_len + (i ? 1 : 0);
        healthy += s->insts[i].healthy;
        enabled += s->insts[i].enabled;
    }
    struct cn_buf head;
    cn_buf_init(&head, SIZE_MAX);
    if (render_head(reg, s, &head) != 0) {
        cn_buf_release(&head);
        return CN_ENOMEM;
    }
    size_t text_len = head.len + host_len + sizeof(LIST_TIME) - 1;
    size_t sz =
        sizeof(struct snap) + s->num * sizeof(struct snap_host) + names + text_len + LIST_TAIL_MAX;
    struct snap *sn = malloc(sz);
    if (!sn) {
        cn_buf_release(&head);
        return CN_ENOMEM;
    }
    sn->revision = s->revision;
    sn->protect_threshold = s->protect_threshold;
    sn->num = s->num;
    sn->num_healthy = healthy;
    sn->num_enabled = enabled;
    sn->hosts = (struct snap_host *)(sn + 1);
    char *p = (char *)(sn->hosts + s->num);
    for (size_t i = 0; i < s->num; i++) {
        size_t l = s->insts[i].cluster_len + 1;
        memcpy(p, s->insts[i].cluster, l);
        sn->hosts[i].cluster = p;
        p += l;
    }
    sn->text = p;
    memcpy(p, head.ptr, head.len);
    p += head.len;
    cn_buf_release(&head);
    sn->host_text = p;
    for (size_t i = 0; i < s->num; i++) {
        const struct inst *in = &s->insts[i];
        if (i)
            *p++ = ',';
        struct snap_host *h = &sn->hosts[i];
        h->off = (uint32_t)(p - sn->host_text);
        h->len = in->frag_len;
        h->hoff = h->off + in->frag_hoff;
        h->hlen = in->healthy ? 4 : 5;
        h->healthy = in->healthy;
        h->enabled = in->enabled;
        memcpy(p, in->frag, in->frag_len);
        p += in->frag_len;
    }
    sn->host_len = host_len;
    memcpy(p, LIST_TIME, sizeof(LIST_TIME) - 1);
    p += sizeof(LIST_TIME) - 1;
    sn->text_len = text_len;
    /* A change marker for clients (Nacos sends an MD5 here; nothing checks its value). */
    XXH128_hash_t x = XXH3_128bits(sn->host_text, host_len);
    snprintf(sn->checksum, sizeof(sn->checksum), "%016llx%016llx", (unsigned long long)x.high64,
             (unsigned long long)x.low64);
    /* The common answer's protection: every host counts (all enabled, no cluster filter). */
    int reach = s->num && enabled == s->num && s->protect_threshold > 0 &&
                (double)healthy / (double)s->num < s->protect_threshold;
    int tail_len =
        snprintf(p, LIST_TAIL_MAX, LIST_TAIL_FMT, sn->checksum, reach ? "true" : "false");
    CN_BUG_ON(tail_len < 0 || tail_len >= LIST_TAIL_MAX);
    sn->tail = p;
    sn->tail_len = (size_t)tail_len;
    struct snap *old = atomic_exchange_explicit(&s->snap, sn, memory_order_acq_rel);
    /* After the snapshot: a reader that sees stale clear then finds this one or a later. */
    atomic_store_explicit(&s->stale, 0, memory_order_release);
    retire(reg, old, snap_free);
    return 0;
}

/* Under the lock: tells the service-change callbacks that s changed. */
static void notify(struct cn_reg *reg, const struct svc *s)
{
    if (reg->svc_cb)
        reg->svc_cb(reg->svc_ctx, s->ns, s->group, s->name);
    for (int i = 0; i < CN_REG_MAX_SVC_WATCHERS; i++)
        if (reg->svc_more[i].cb)
            reg->svc_more[i].cb(reg->svc_more[i].ctx, s->ns, s->group, s->name);
}

/* Under the lock, after s's instances or attributes changed: marks its snapshot stale (the
 * next reader rebuilds it) and tells the watchers. */
void reg_publish(struct cn_reg *reg, struct svc *s)
{
    s->revision++;
    atomic_store_explicit(&s->stale, 1, memory_order_release);
    notify(reg, s);
}

void cn_reg_set_svc_change_cb(struct cn_reg *reg, cn_reg_svc_change_cb cb, void *ctx)
{
    reg->svc_cb = cb;
    reg->svc_ctx = ctx;
}

int cn_reg_add_svc_change_cb(struct cn_reg *reg, cn_reg_svc_change_cb cb, void *ctx)
{
    int rc = CN_ELIMIT;
    uv_mutex_lock(&reg->lock); /* the callbacks run under it */
    for (int i = 0; i < CN_REG_MAX_SVC_WATCHERS && rc; i++)
        if (!reg->svc_more[i].cb) {
            reg->svc_more[i].cb = cb;
            reg->svc_more[i].ctx = ctx;
            rc = 0;
        }
    uv_mutex_unlock(&reg->lock);
    return rc;
}

void cn_reg_remove_svc_change_cb(struct cn_reg *reg, cn_reg_svc_change_cb cb, void *ctx)
{
    uv_mutex_lock(&reg->lock);
    for (int i = 0; i < CN_REG_MAX_SVC_WATCHERS; i++)
        if (reg->svc_more[i].cb == cb && reg->svc_more[i].ctx == ctx)
            reg->svc_more[i].cb = NULL;
    uv_mutex_unlock(&reg->lock);
}

/* Under the lock: finds or creates a service. NULL with err set on a limit or no memory. */
struct svc *reg_get_svc(struct cn_reg *reg, struct cn_slice ns, struct cn_slice group,
                        struct cn_slice name, struct cn_reg_error *err)
{
    ns = cn_reg_ns(ns);
    struct svc *s = reg_find_svc(reg, ns, group, name);
    if (s)
        return s;
    if (reg->num_services >= reg->opts.max_services) {
        reg_seterr(err, "serviceName", "too many services: registry.max_services is %llu",
                   (unsigned long long)reg->opts.max_services);
        return NULL;
    }
    /* One allocation with its names: a lookup compares them next to the header. */
    s = calloc(1, sizeof(*s) + ns.len + group.len + name.len + group.len + name.len + 6);
    if (!s)
        goto nomem;
    s->hash = svc_hash(ns, group, name);
    s->ns = (char *)(s + 1);
    memcpy(s->ns, ns.ptr, ns.len);
    s->group = s->ns + ns.len + 1;
    memcpy(s->group, group.ptr, group.len);
    s->name = s->group + group.len + 1;
    memcpy(s->name, name.ptr, name.len);
    s->grouped = s->name + name.len + 1;
    memcpy(s->grouped, group.ptr, group.len);
    memcpy(s->grouped + group.len, "@@", 2);
    memcpy(s->grouped + group.len + 2, name.ptr, name.len);
    s->ns_len = (uint32_t)ns.len;
    s->group_len = (uint32_t)group.len;
    s->name_len = (uint32_t)name.len;
    s->metadata = strdup("{}");
    if (!s->metadata)
        goto nomem;
    /* Readers find it with its (empty) snapshot; nobody watches it yet. */
    atomic_store_explicit(&s->stale, 1, memory_order_relaxed);
    if (build(reg, s) != 0)
        goto nomem;
    struct svc *head = atomic_load(&reg->buckets[s->hash % REG_BUCKETS]);
    atomic_store_explicit(&s->next, head, memory_order_relaxed);
    atomic_store_explicit(&reg->buckets[s->hash % REG_BUCKETS], s, memory_order_release);
    reg->num_services++;
    return s;
nomem:
    if (s)
        svc_free(s);
    reg_seterr(err, NULL, "out of memory");
    return NULL;
}

/* Under the lock: unlinks s and retires it. Its watchers learn it is gone (a list finds no
 * service now, so no instance). */
void reg_drop_svc(struct cn_reg *reg, struct svc *s)
{
    _Atomic(struct svc *) *pp = &reg->buckets[s->hash % REG_BUCKETS];
    struct svc *c;
    while ((c = atomic_load(pp)) != s) {
        if (CN_NEVER(!c))
            return;
        pp = &c->next;
    }
    atomic_store_explicit(pp, atomic_load(&s->next), memory_order_release);
    reg->num_services--;
    notify(reg, s); /* unlinked already, not freed yet */
    retire(reg, s, svc_free);
}

int reg_check_instance(const struct cn_reg_instance *in, struct cn_reg_error *err)
{
    if (in->ns.len && cn_reg_check_name(in->ns) != 0)
        return reg_seterr(err, "namespaceId", "Param 'namespaceId' is illegal"), CN_EINVAL;
    if (cn_reg_check_name(in->group) != 0)
        return reg_seterr(err, "groupName", "Param 'groupName' is illegal"), CN_EINVAL;
    if (cn_reg_check_name(in->service) != 0)
        return reg_seterr(err, "serviceName", "Param 'serviceName' is illegal"), CN_EINVAL;
    if (cn_reg_check_name(in->cluster) != 0)
        return reg_seterr(err, "clusterName", "Param 'clusterName' is illegal"), CN_EINVAL;
    if (in->ip.len == 0 || in->ip.len > CN_REG_MAX_IP_BYTES)
        return reg_seterr(err, "ip", "Param 'ip' is illegal"), CN_EINVAL;
    for (size_t i = 0; i < in->ip.len; i++) {
        char c = in->ip.ptr[i];
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
              c == '.' || c == ':' || c == '-' || c == '_' || c == '%' || c == '[' || c == ']'))
            return reg_seterr(err, "ip", "Param 'ip' is illegal"), CN_EINVAL;
    }
    if (in->port == 0)
        return reg_seterr(err, "port", "Param 'port' is illegal: 1..65535"), CN_EINVAL;
    if (!(in->weight >= 0 && in->weight <= 10000))
        return reg_seterr(err, "weight", "Param 'weight' is illegal: 0..10000"), CN_EINVAL;
    return 0;
}

/* Whether an instance goes to the store: persistent ones always, ephemeral ones only to a
 * shared store (other nodes see them there); nothing while applying the store's own change. */
static int stores(const struct cn_reg *reg, const struct inst *in)
{
    return reg->store && !reg->applying &&
           (!in->ephemeral || (reg->store->flags & CN_REG_STORE_SHARED));
}

/* Writes in to the store; on success in->rev is the write's revision (shared stores). */
int reg_store_inst(struct cn_reg *reg, const struct svc *s, struct inst *in,
                   struct cn_reg_error *err)
{
    if (!stores(reg, in))
        return 0;
    char e[256];
    struct cn_reg_inst_rec r = {s->ns,       s->group,     s->name,      in->cluster,
                                in->ip,      in->metadata, in->port,     in->weight,
                                in->healthy, in->enabled,  in->ephemeral};
    uv_mutex_lock(&reg->store_lock);
    int rc = reg->store->ops->inst_put(reg->store, &r, e, sizeof(e));
    if (rc == 0)
        in->rev = reg->store->last_rev;
    uv_mutex_unlock(&reg->store_lock);
    if (rc) {
        cn_error("registry", "store failed", "op=instance_put error=\"%s\"", e);
        reg_seterr(err, NULL, "storage failed: %s", e);
        return CN_EIO;
    }
    return 0;
}

static int unstore_inst(struct cn_reg *reg, const struct svc *s, const struct inst *in,
                        struct cn_reg_error *err)
{
    if (!stores(reg, in))
        return 0;
    char e[256];
    uv_mutex_lock(&reg->store_lock);
    int rc = reg->store->ops->inst_del(reg->store, s->ns, s->group, s->name, in->cluster, in->ip,
                                       in->port, e, sizeof(e));
    uv_mutex_unlock(&reg->store_lock);
    if (rc) {
        cn_error("registry", "store failed", "op=instance_del error=\"%s\"", e);
        reg_seterr(err, NULL, "storage failed: %s", e);
        return CN_EIO;
    }
    return 0;
}

/* Fills an instance's fields from in; metadata is canonical JSON, NUL-terminated. */
static int fill_inst(struct cn_reg *reg, struct inst *d, const struct cn_reg_instance *in,
                     const char *metadata, size_t metadata_len)
{
    struct inst n = {0};
    n.port = in->port;
    n.weight = in->weight;
    n.healthy = in->healthy ? 1 : 0;
    n.enabled = in->enabled ? 1 : 0;
    n.ephemeral = in->ephemeral ? 1 : 0;
    n.beat_interval_ms = reg->opts.beat_interval_ms;
    n.beat_timeout_ms = reg->opts.beat_timeout_ms;
    n.delete_timeout_ms = reg->opts.delete_timeout_ms;
    char *path = NULL;
    if (strstr(metadata, "preserved.")) { /* parse only when an override may be there */
        n.beat_interval_ms =
            cn_reg_meta_ms(metadata, "preserved.heart.beat.interval", n.beat_interval_ms);
        n.beat_timeout_ms =
            cn_reg_meta_ms(metadata, "preserved.heart.beat.timeout", n.beat_timeout_ms);
        n.delete_timeout_ms =
            cn_reg_meta_ms(metadata, "preserved.ip.delete.timeout", n.delete_timeout_ms);
        path = cn_reg_meta_str(metadata, "preserved.health.checker.path");
        if (!path)
            return CN_ENOMEM;
    }
    size_t path_len = path ? strlen(path) : 0;
    char *p = malloc(in->cluster.len + in->ip.len + metadata_len + path_len + 4);
    if (!p) {
        free(path);
        return CN_ENOMEM;
    }
    n.cluster = p;
    memcpy(p, in->cluster.ptr, in->cluster.len);
    p[in->cluster.len] = '\0';
    n.cluster_len = (uint32_t)in->cluster.len;
    p += in->cluster.len + 1;
    n.ip = p;
    memcpy(p, in->ip.ptr, in->ip.len);
    p[in->ip.len] = '\0';
    n.ip_len = (uint32_t)in->ip.len;
    p += in->ip.len + 1;
    n.metadata = p;
    memcpy(p, metadata, metadata_len + 1);
    p += metadata_len + 1;
    n.health_path = p;
    if (path_len)
        memcpy(p, path, path_len);
    p[path_len] = '\0';
    free(path);
    n.key = reg_inst_key(in->cluster, in->ip, in->port);
    *d = n;
    return 0;
}

/* ---- registering --------------------------------------------------------------------------- */

/* Under the lock: checks in against the registry (service, limits, the instance it replaces)
 * and fills *out_n (the caller's on success) for service *out_s, replacing *out_old (NULL
 * for a new instance; room for one is made). */
static int prepare_put(struct cn_reg *reg, const struct cn_reg_instance *in, int must_exist,
                       struct svc **out_s, struct inst **out_old, struct inst *out_n,
                       struct cn_reg_error *err)
{
    struct cn_buf meta;
    cn_buf_init(&meta, CN_REG_MAX_METADATA_BYTES + 64);
    const char *metadata = "{}";
    size_t metadata_len = 2;
    if (in->metadata.len && !cn_slice_eq(in->metadata, CN_SLICE_LIT("{}"))) {
        /* Not the common empty metadata: canonical JSON (the empty case's is "{}"). */
        int rc = cn_reg_parse_metadata(in->metadata, &meta);
        if (rc == 0)
            rc = cn_buf_append(&meta, "", 1);
        if (rc) {
            cn_buf_release(&meta);
            reg_seterr(err, "metadata",
                       rc == CN_ELIMIT ? "Param 'metadata' is too large (max %d bytes)"
                                       : "Param 'metadata' is illegal: a JSON object or k=v,k2=v2",
                       CN_REG_MAX_METADATA_BYTES);
            return CN_EINVAL;
        }
        metadata = meta.ptr;
        metadata_len = meta.len - 1;
    }
    struct svc *s = must_exist ? reg_find_svc(reg, in->ns, in->group, in->service)
                               : reg_get_svc(reg, in->ns, in->group, in->service, err);
    if (!s) {
        cn_buf_release(&meta);
        if (must_exist) {
            reg_seterr(err, "serviceName", "service not found: %.*s@@%.*s", (int)in->group.len,
                       in->group.ptr, (int)in->service.len, in->service.ptr);
            return CN_ENOENT;
        }
        return CN_ELIMIT;
    }
    struct inst *old = reg_find_inst(s, in->cluster, in->ip, in->port);
    if (must_exist && !old) {
        cn_buf_release(&meta);
        reg_seterr(err, "ip", "instance not found: %.*s:%u", (int)in->ip.len, in->ip.ptr, in->port);
        return CN_ENOENT;
    }
    /* An ephemeral one whose persistent put is in flight: refused as once that is applied. */
    int persistent_pending = !old && in->ephemeral && reg->pw_head &&
                             reg_put_pending(reg, s, in->cluster, in->ip, in->port);
    if ((old && old->ephemeral != (in->ephemeral ? 1 : 0)) || persistent_pending) {
        cn_buf_release(&meta);
        int eph = old ? old->ephemeral : 0;
        reg_seterr(err, "ephemeral",
                   "instance %.*s:%u is already registered as %s; deregister it first",
                   (int)in->ip.len, in->ip.ptr, in->port, eph ? "ephemeral" : "persistent");
        return CN_EINVAL;
    }
    /* Persistent puts in flight that add an instance count as added: concurrent writers
     * cannot pass the limit together. */
    if (!old && (uint64_t)s->num + s->growing >= reg->opts.max_instances_per_service) {
        cn_buf_release(&meta);
        reg_seterr(err, "ip",
                   "too many instances in service: registry.max_instances_per_service is %llu",
                   (unsigned long long)reg->opts.max_instances_per_service);
        return CN_ELIMIT;
    }
    /* Room first: once the store has it, nothing may fail. */
    size_t old_pos = old ? (size_t)(old - s->insts) : 0;
    if ((!old && reg_index_reserve(s, s->num + 1) != 0) ||
        fill_inst(reg, out_n, in, metadata, metadata_len) != 0) {
        cn_buf_release(&meta);
        reg_seterr(err, NULL, "out of memory");
        return CN_ENOMEM;
    }
    cn_buf_release(&meta);
    *out_s = s;
    *out_old = old ? &s->insts[old_pos] : NULL; /* the array may have moved */
    return 0;
}

/* Under the lock: adds or replaces, storing first when the instance goes to the store. */
int reg_put_locked(struct cn_reg *reg, const struct cn_reg_instance *in, int must_exist,
                   uint64_t now_ms, struct cn_reg_error *err)
{
    struct svc *s;
    struct inst *old, n;
    int rc = prepare_put(reg, in, must_exist, &s, &old, &n, err);
    if (rc)
        return rc;
    n.last_beat_ms = now_ms;
    if (!n.ephemeral && old)
        n.healthy = old->healthy; /* the checker owns a persistent instance's health */
    if (reg_store_inst(reg, s, &n, err) != 0) {
        reg_inst_release(&n);
        return CN_EIO;
    }
    if (old) {
        reg_inst_release(old);
        *old = n;
    } else {
        s->insts[s->num] = n;
        reg_index_put(s, s->num++);
    }
    due_note(s, &n);
    reg_publish(reg, s);
    return 0;
}

/* A register or update (must_exist). */
static int put(struct cn_reg *reg, const struct cn_reg_instance *in, int must_exist,
               uint64_t now_ms, struct cn_reg_error *err)
{
    int rc = reg_check_instance(in, err);
    if (rc)
        return rc;
    uv_mutex_lock(&reg->lock);
    if (!reg_deferred(reg, in->ephemeral)) {
        rc = reg_put_locked(reg, in, must_exist, now_ms, err);
        reg_reclaim(reg);
        uv_mutex_unlock(&reg->lock);
        return rc;
    }
    struct reg_pw w = {0};
    struct inst *old;
    rc = prepare_put(reg, in, must_exist, &w.s, &old, &w.n, err);
    if (rc) {
        uv_mutex_unlock(&reg->lock);
        return rc;
    }
    w.n.last_beat_ms = now_ms;
    if (old)
        w.n.healthy = old->healthy; /* as stored; applied from the one it replaces then */
    w.grows = !old;
    reg_pw_enqueue(reg, &w);
    uv_mutex_unlock(&reg->lock);
    reg_pw_wait(reg, &w);
    uv_mutex_lock(&reg->lock);
    rc = reg_pw_apply(reg, &w, err);
    reg_reclaim(reg);
    uv_mutex_unlock(&reg->lock);
    return rc;
}

int cn_reg_register(struct cn_reg *reg, const struct cn_reg_instance *in, uint64_t now_ms,
                    struct cn_reg_error *err)
{
    int rc = put(reg, in, 0, now_ms, err);
    if (rc == 0)
        atomic_fetch_add_explicit(&reg->n_registers, 1, memory_order_relaxed);
    return rc;
}

int cn_reg_update(struct cn_reg *reg, const struct cn_reg_instance *in, uint64_t now_ms,
                  struct cn_reg_error *err)
{
    return put(reg, in, 1, now_ms, err);
}

void cn_reg_put_batch(struct cn_reg *reg, struct cn_reg_put *const puts[], size_t num,
                      uint64_t now_ms)
{
    struct reg_pw *w = calloc(num ? num : 1, sizeof(*w));
    if (!w) { /* one by one, each with its own sync */
        for (size_t i = 0; i < num; i++) {
            struct cn_reg_put *p = puts[i];
            p->rc = p->must_exist ? cn_reg_update(reg, &p->in, now_ms, &p->err)
                                  : cn_reg_register(reg, &p->in, now_ms, &p->err);
        }
        return;
    }
    struct reg_pw *last = NULL;
    uv_mutex_lock(&reg->lock);
    for (size_t i = 0; i < num; i++) {
        struct cn_reg_put *p = puts[i];
        struct inst *old;
        p->rc = reg_check_instance(&p->in, &p->err);
        if (p->rc)
            continue;
        if (!reg_deferred(reg, p->in.ephemeral)) {
            p->rc = reg_put_locked(reg, &p->in, p->must_exist, now_ms, &p->err);
            continue;
        }
        p->rc = prepare_put(reg, &p->in, p->must_exist, &w[i].s, &old, &w[i].n, &p->err);
        if (p->rc)
            continue;
        w[i].n.last_beat_ms = now_ms;
        if (old)
            w[i].n.healthy = old->healthy;
        w[i].grows = !old;
        reg_pw_enqueue(reg, &w[i]);
        last = &w[i];
    }
    uv_mutex_unlock(&reg->lock);
    if (last)
        reg_pw_wait(reg, last); /* committed in order: every earlier one is done too */
    uv_mutex_lock(&reg->lock);
    for (size_t i = 0; i < num; i++)
        if (w[i].seq)
            puts[i]->rc = reg_pw_apply(reg, &w[i], &puts[i]->err);
    reg_reclaim(reg);
    uv_mutex_unlock(&reg->lock);
    for (size_t i = 0; i < num; i++)
        if (puts[i]->rc == 0 && !puts[i]->must_exist)
            atomic_fetch_add_explicit(&reg->n_registers, 1, memory_order_relaxed);
    free(w);
}

/* Under the lock: removes instance i of s; drops s when it empties and is implicit. */
void reg_remove_inst(struct cn_reg *reg, struct svc *s, size_t i)
{
    reg_inst_release(&s->insts[i]);
    memmove(&s->insts[i], &s->insts[i + 1], (s->num - i - 1) * sizeof(s->insts[0]));
    s->num--;
    reg_index_rebuild(s);
    if (s->num == 0 && !s->explicit_ && !s->pending)
        reg_drop_svc(reg, s);
    else
        reg_publish(reg, s);
}

int cn_reg_deregister(struct cn_reg *reg, struct cn_slice ns, struct cn_slice group,
                      struct cn_slice service, struct cn_slice cluster, struct cn_slice ip,
                      uint16_t port, int ephemeral, uint64_t now_ms, struct cn_reg_error *err)
{
    (void)ephemeral; /* an instance is found by its address whatever the flag says */
    (void)now_ms;
    uv_mutex_lock(&reg->lock);
    int rc = 0;
    struct svc *s = reg_find_svc(reg, ns, group, service);
    struct inst *in = s ? reg_find_inst(s, cluster, ip, port) : NULL;
    if (in && reg_deferred(reg, in->ephemeral)) {
        struct reg_pw w = {.s = s, .del = 1};
        w.del_key = malloc(in->cluster_len + in->ip_len + 2);
        if (!w.del_key) {
            uv_mutex_unlock(&reg->lock);
            reg_seterr(err, NULL, "out of memory");
            return CN_ENOMEM;
        }
        w.n = *in;
        w.n.cluster = w.del_key;
        memcpy(w.n.cluster, in->cluster, in->cluster_len + 1);
        w.n.ip = w.del_key + in->cluster_len + 1;
        memcpy(w.n.ip, in->ip, in->ip_len + 1);
        w.n.metadata = w.n.health_path = w.n.frag = NULL;
        reg_pw_enqueue(reg, &w);
        uv_mutex_unlock(&reg->lock);
        reg_pw_wait(reg, &w);
        uv_mutex_lock(&reg->lock);
        rc = reg_pw_apply(reg, &w, err);
    } else if (in) {
        rc = unstore_inst(reg, s, in, err);
        if (rc == 0)
            reg_remove_inst(reg, s, (size_t)(in - s->insts));
    }
    reg_reclaim(reg);
    uv_mutex_unlock(&reg->lock);
    if (rc == 0)
        atomic_fetch_add_explicit(&reg->n_deregisters, 1, memory_order_relaxed);
    return rc;
}

int cn_reg_beat(struct cn_reg *reg, const struct cn_reg_instance *in, int reg_if_absent,
                uint64_t now_ms, uint64_t *out_interval_ms, struct cn_reg_error *err)
{
    atomic_fetch_add_explicit(&reg->n_beats, 1, memory_order_relaxed);
    uv_mutex_lock(&reg->lock);
    struct svc *s = reg_find_svc(reg, in->ns, in->group, in->service);
    struct inst *i = s ? reg_find_inst(s, in->cluster, in->ip, in->port) : NULL;
    if (i) {
        i->last_beat_ms = now_ms;
        *out_interval_ms = i->beat_interval_ms;
        if (i->remote) {
            /* Another node owned it; its client now beats here: this node takes it over (its
             * key moves under this node's lease). */
            i->remote = 0;
            i->healthy = 1;
            reg_store_inst(reg, s, i, NULL);
            reg_publish(reg, s);
        } else if (!i->healthy && i->ephemeral) {
            i->healthy = 1;
            reg_store_inst(reg, s, i, NULL); /* a shared store carries the health */
            reg_publish(reg, s);
        }
        due_note(s, i);
        uv_mutex_unlock(&reg->lock);
        return 0;
    }
    uv_mutex_unlock(&reg->lock);
    if (!reg_if_absent)
        return CN_ENOENT;
    int rc = cn_reg_register(reg, in, now_ms, err);
    if (rc)
        return rc;
    uv_mutex_lock(&reg->lock);
    s = reg_find_svc(reg, in->ns, in->group, in->service);
    i = s ? reg_find_inst(s, in->cluster, in->ip, in->port) : NULL;
    *out_interval_ms = i ? i->beat_interval_ms : reg->opts.beat_interval_ms;
    uv_mutex_unlock(&reg->lock);
    return 0;
}

/* Under the lock: expires s's silent instances. Returns how many changed state. */
static size_t expire_svc(struct cn_reg *reg, struct svc *s, uint64_t now_ms)
{
    size_t changed = 0, keep = 0, removed = 0;
    uint64_t due = UINT64_MAX;
    for (size_t i = 0; i < s->num; i++) {
        struct inst *in = &s->insts[i];
        uint64_t silent = now_ms > in->last_beat_ms ? now_ms - in->last_beat_ms : 0;
        if (in->ephemeral && !in->remote && silent > in->delete_timeout_ms) {
            cn_info("registry", "instance removed: no heartbeat",
                    "service=\"%s\" ip=%s port=%u silent_ms=%llu", s->grouped, in->ip, in->port,
                    (unsigned long long)silent);
            unstore_inst(reg, s, in, NULL); /* shared store: other nodes drop it too */
            reg_inst_release(in);
            removed++;
            changed++;
            atomic_fetch_add_explicit(&reg->n_removed, 1, memory_order_relaxed);
            continue;
        }
        if (in->ephemeral && !in->remote && in->healthy && silent > in->beat_timeout_ms) {
            cn_info("registry", "instance unhealthy: no heartbeat",
                    "service=\"%s\" ip=%s port=%u silent_ms=%llu", s->grouped, in->ip, in->port,
                    (unsigned long long)silent);
            in->healthy = 0;
            reg_store_inst(reg, s, in, NULL);
            changed++;
            atomic_fetch_add_explicit(&reg->n_unhealthy, 1, memory_order_relaxed);
        }
        due = CN_MIN(due, inst_due(in));
        if (keep != i)
            s->insts[keep] = *in;
        keep++;
    }
    s->num = keep;
    s->due_ms = due;
    if (removed)
        reg_index_rebuild(s);
    return changed;
}

size_t cn_reg_tick(struct cn_reg *reg, uint64_t now_ms)
{
    size_t changed = 0;
    uv_mutex_lock(&reg->lock);
    for (size_t b = 0; b < REG_BUCKETS; b++) {
        struct svc *s = atomic_load(&reg->buckets[b]);
        while (s) {
            struct svc *next = atomic_load(&s->next);
            size_t n = now_ms > s->due_ms ? expire_svc(reg, s, now_ms) : 0;
            if (n && s->num == 0 && !s->explicit_ && !s->pending)
                reg_drop_svc(reg, s);
            else if (n)
                reg_publish(reg, s);
            changed += n;
            s = next;
        }
    }
    reg_reclaim(reg);
    uv_mutex_unlock(&reg->lock);
    return changed;
}

/* ---- reads ------------------------------------------------------------------------------- */

/* 1 when cluster is one of the comma-separated names in clusters. */
static int in_clusters(struct cn_slice clusters, const char *cluster)
{
    struct cn_slice c = cn_slice_of(cluster);
    size_t i = 0;
    while (i <= clusters.len) {
        size_t e = i;
        while (e < clusters.len && clusters.ptr[e] != ',')
            e++;
        if (cn_slice_eq((struct cn_slice){clusters.ptr + i, e - i}, c))
            return 1;
        i = e + 1;
    }
    return 0;
}

/* The answer to q from sn (NULL: no such service). */
static int list_body(struct cn_reg *reg, const struct cn_reg_query *q, const struct snap *sn,
                     uint64_t now_ms, struct cn_buf *out)
{
    char num[24];
    size_t num_len = cn_u64_to_dec(num, now_ms);
    if (sn && q->clusters.len == 0 && sn->num_enabled == sn->num &&
        (sn->num_healthy == sn->num ||
         (!q->healthy_only &&
          !(sn->protect_threshold > 0 &&
            (double)sn->num_healthy / (double)sn->num < sn->protect_threshold)))) {
        /* The common answer, ready in the snapshot but for its time: every host as it is
         * (none filtered out by healthyOnly, none made healthy by protection). */
        if (cn_buf_reserve(out, sn->text_len + num_len + sn->tail_len) != 0)
            return CN_ELIMIT;
        char *p = out->ptr + out->len;
        memcpy(p, sn->text, sn->text_len);
        memcpy(p + sn->text_len, num, num_len);
        memcpy(p + sn->text_len + num_len, sn->tail, sn->tail_len);
        out->len += sn->text_len + num_len + sn->tail_len;
        return 0;
    }
    /* Room for the common answer at once: the hosts' text and the fields around it. */
    if (cn_buf_reserve(out, (sn ? sn->host_len : 0) + 2 * (q->group.len + q->service.len) +
                                q->clusters.len + 320) != 0)
        return CN_ELIMIT;
    int rc = cn_buf_puts(out, "{\"name\":");
    /* "group@@service" as one JSON string: the group's string without its closing quote,
     * then the service's without its opening one. */
    rc |= cn_reg_json_str(out, q->group.ptr, q->group.len);
    out->len--;
    rc |= cn_buf_puts(out, "@@");
    size_t at = out->len;
    rc |= cn_reg_json_str(out, q->service.ptr, q->service.len);
    memmove(out->ptr + at, out->ptr + at + 1, out->len - at - 1);
    out->len--;
    rc |= cn_buf_puts(out, ",\"groupName\":");
    rc |= cn_reg_json_str(out, q->group.ptr, q->group.len);
    rc |= cn_buf_puts(out, ",\"clusters\":");
    rc |= cn_reg_json_str(out, q->clusters.ptr, q->clusters.len);
    rc |= cn_buf_puts(out, ",\"cacheMillis\":");
    rc |= cn_buf_append(out, num, cn_u64_to_dec(num, reg->opts.cache_millis));
    rc |= cn_buf_puts(out, ",\"hosts\":[");
    if (rc)
        return CN_ELIMIT;
    int reach = 0;
    if (sn && sn->num) {
        /* Which hosts: the clusters asked for, enabled ones only (Nacos' enableOnly). */
        int all = q->clusters.len == 0 && sn->num_enabled == sn->num;
        size_t total = 0, healthy = 0;
        if (all) {
            total = sn->num;
            healthy = sn->num_healthy;
        } else {
            for (size_t i = 0; i < sn->num; i++) {
                const struct snap_host *h = &sn->hosts[i];
                if (!h->enabled || (q->clusters.len && !in_clusters(q->clusters, h->cluster)))
                    continue;
                total++;
                healthy += h->healthy;
            }
        }
        /* Protection: when too few are healthy, every host is returned as healthy so that
         * clients keep spreading load instead of crushing the survivors. */
        reach = total && sn->protect_threshold > 0 &&
                (double)healthy / (double)total < sn->protect_threshold;
        if (all && (reach ? healthy == total : (!q->healthy_only || healthy == total))) {
            rc = cn_buf_append(out, sn->host_text, sn->host_len);
        } else {
            int first = 1;
            for (size_t i = 0; i < sn->num && !rc; i++) {
                const struct snap_host *h = &sn->hosts[i];
                if (!h->enabled || (q->clusters.len && !in_clusters(q->clusters, h->cluster)))
                    continue;
                if (!reach && q->healthy_only && !h->healthy)
                    continue;
                if (!first)
                    rc |= cn_buf_append(out, ",", 1);
                first = 0;
                const char *t = sn->host_text + h->off;
                if (reach && !h->healthy) {
                    rc |= cn_buf_append(out, t, h->hoff - h->off);
                    rc |= cn_buf_puts(out, "true");
                    rc |= cn_buf_append(out, sn->host_text + h->hoff + h->hlen,
                                        h->off + h->len - h->hoff - h->hlen);
                } else {
                    rc |= cn_buf_append(out, t, h->len);
                }
            }
        }
    }
    rc |= cn_buf_puts(out, "],\"lastRefTime\":");
    rc |= cn_buf_append(out, num, cn_u64_to_dec(num, now_ms));
    rc |= cn_buf_puts(out, ",\"checksum\":\"");
    rc |= cn_buf_puts(out, sn ? sn->checksum : "");
    rc |= cn_buf_puts(out, reach ? "\",\"allIPs\":false,\"reachProtectionThreshold\":true,"
                                   "\"valid\":true}"
                                 : "\",\"allIPs\":false,\"reachProtectionThreshold\":false,"
                                   "\"valid\":true}");
    return rc ? CN_ELIMIT : 0;
}

int cn_reg_list_json(struct cn_reg *reg, const struct cn_reg_query *q, uint64_t now_ms,
                     struct cn_buf *out)
{
    int slot = read_begin(reg);
    struct svc *s = reg_find_svc(reg, q->ns, q->group, q->service);
    if (s && atomic_load_explicit(&s->stale, memory_order_acquire)) {
        /* Changed since its snapshot was built: build it under the writer lock, and answer
         * from it there (the lock keeps it from being freed). The read section ends first:
         * a writer may wait for readers (retire, out of memory) while holding the lock. */
        read_end(reg, slot);
        uv_mutex_lock(&reg->lock);
        s = reg_find_svc(reg, q->ns, q->group, q->service);
        if (s)
            build(reg, s); /* out of memory: the previous snapshot answers */
        int rc = list_body(reg, q, s ? atomic_load(&s->snap) : NULL, now_ms, out);
        reg_reclaim(reg);
        uv_mutex_unlock(&reg->lock);
        return rc;
    }
    const struct snap *sn = s ? atomic_load_explicit(&s->snap, memory_order_acquire) : NULL;
    int rc = list_body(reg, q, sn, now_ms, out);
    read_end(reg, slot);
    return rc;
}

long cn_reg_instances(struct cn_reg *reg, struct cn_slice ns, struct cn_slice group,
                      struct cn_slice service, struct cn_reg_inst_view **out)
{
    *out = NULL;
    uv_mutex_lock(&reg->lock);
    struct svc *s = reg_find_svc(reg, ns, group, service);
    long n = s ? (long)s->num : 0;
    struct cn_reg_inst_view *v = calloc(n ? (size_t)n : 1, sizeof(*v));
    if (!v) {
        uv_mutex_unlock(&reg->lock);
        return CN_ENOMEM;
    }
    for (long i = 0; i < n; i++) {
        const struct inst *in = &s->insts[i];
        v[i].cluster = strdup(in->cluster);
        v[i].ip = strdup(in->ip);
        v[i].metadata = strdup(in->metadata);
        v[i].port = in->port;
        v[i].weight = in->weight;
        v[i].healthy = in->healthy;
        v[i].enabled = in->enabled;
        v[i].ephemeral = in->ephemeral;
        v[i].last_beat_ms = in->last_beat_ms;
        if (!v[i].cluster || !v[i].ip || !v[i].metadata) {
            uv_mutex_unlock(&reg->lock);
            cn_reg_instances_free(v, i + 1);
            return CN_ENOMEM;
        }
    }
    uv_mutex_unlock(&reg->lock);
    *out = v;
    return n;
}

void cn_reg_instances_free(struct cn_reg_inst_view *v, long n)
{
    if (!v)
        return;
    for (long i = 0; i < n; i++) {
        free(v[i].cluster);
        free(v[i].ip);
        free(v[i].metadata);
    }
    free(v);
}

/* ---- services ---------------------------------------------------------------------------- */

int cn_reg_service_put(struct cn_reg *reg, const struct cn_reg_service *sv, int update,
                       struct cn_reg_error *err)
{
    if (sv->ns.len && cn_reg_check_name(sv->ns) != 0)
        return reg_seterr(err, "namespaceId", "Param 'namespaceId' is illegal"), CN_EINVAL;
    if (cn_reg_check_name(sv->group) != 0)
        return reg_seterr(err, "groupName", "Param 'groupName' is illegal"), CN_EINVAL;
    if (cn_reg_check_name(sv->service) != 0)
        return reg_seterr(err, "serviceName", "Param 'serviceName' is illegal"), CN_EINVAL;
    if (!(sv->protect_threshold >= 0 && sv->protect_threshold <= 1))
        return reg_seterr(err, "protectThreshold", "Param 'protectThreshold' is illegal: 0..1"),
               CN_EINVAL;
    struct cn_buf meta;
    cn_buf_init(&meta, CN_REG_MAX_METADATA_BYTES + 64);
    if (cn_reg_parse_metadata(sv->metadata, &meta) != 0 || cn_buf_append(&meta, "", 1) != 0) {
        cn_buf_release(&meta);
        return reg_seterr(err, "metadata", "Param 'metadata' is illegal"), CN_EINVAL;
    }
    uv_mutex_lock(&reg->lock);
    int rc = 0;
    struct svc *s = reg_find_svc(reg, sv->ns, sv->group, sv->service);
    if (update && !s) {
        reg_seterr(err, "serviceName", "service %.*s not found", (int)sv->service.len,
                   sv->service.ptr);
        rc = CN_ENOENT;
    } else if (!update && s && s->explicit_) {
        reg_seterr(err, "serviceName", "specified service %.*s already exists",
                   (int)sv->service.len, sv->service.ptr);
        rc = CN_EINVAL;
    } else {
        s = s ? s : reg_get_svc(reg, sv->ns, sv->group, sv->service, err);
        char *m = strdup(meta.ptr);
        if (!s || !m) {
            free(m);
            rc = s ? CN_ENOMEM : CN_ELIMIT;
        } else {
            if (reg->store) {
                char e[256];
                struct cn_reg_svc_rec r = {s->ns, s->group, s->name, m, sv->protect_threshold};
                uv_mutex_lock(&reg->store_lock);
                rc = reg->store->ops->svc_put(reg->store, &r, e, sizeof(e));
                if (rc == 0)
                    s->svc_rev = reg->store->last_rev;
                uv_mutex_unlock(&reg->store_lock);
                if (rc) {
                    reg_seterr(err, NULL, "storage failed: %s", e);
                    rc = CN_EIO;
                }
            }
            if (rc == 0) {
                free(s->metadata);
                s->metadata = m;
                s->protect_threshold = sv->protect_threshold;
                s->explicit_ = 1;
                reg_publish(reg, s);
            } else {
                free(m);
            }
        }
    }
    uv_mutex_unlock(&reg->lock);
    cn_buf_release(&meta);
    return rc;
}

int cn_reg_service_delete(struct cn_reg *reg, struct cn_slice ns, struct cn_slice group,
                          struct cn_slice service, struct cn_reg_error *err)
{
    uv_mutex_lock(&reg->lock);
    int rc = 0;
    struct svc *s = reg_find_svc(reg, ns, group, service);
    if (!s) {
        reg_seterr(err, "serviceName", "specified service not exist, serviceName : %.*s",
                   (int)service.len, service.ptr);
        rc = CN_ENOENT;
    } else if (s->num || s->pending) {
        reg_seterr(err, "serviceName",
                   "service %s is not empty, can't be delete. Please unregister instance first",
                   s->grouped);
        rc = CN_EINVAL;
    } else {
        if (reg->store) {
            char e[256];
            uv_mutex_lock(&reg->store_lock);
            rc = reg->store->ops->svc_del(reg->store, s->ns, s->group, s->name, e, sizeof(e));
            uv_mutex_unlock(&reg->store_lock);
            if (rc) {
                reg_seterr(err, NULL, "storage failed: %s", e);
                rc = CN_EIO;
            }
        }
        if (rc == 0)
            reg_drop_svc(reg, s);
    }
    uv_mutex_unlock(&reg->lock);
    return rc;
}

int cn_reg_service_json(struct cn_reg *reg, struct cn_slice ns, struct cn_slice group,
                        struct cn_slice service, struct cn_buf *out)
{
    uv_mutex_lock(&reg->lock);
    struct svc *s = reg_find_svc(reg, ns, group, service);
    if (!s) {
        uv_mutex_unlock(&reg->lock);
        return CN_ENOENT;
    }
    int rc = cn_buf_puts(out, "{\"namespaceId\":");
    rc |= cn_reg_json_str(out, s->ns, strlen(s->ns));
    rc |= cn_buf_puts(out, ",\"groupName\":");
    rc |= cn_reg_json_str(out, s->group, strlen(s->group));
    rc |= cn_buf_puts(out, ",\"name\":");
    rc |= cn_reg_json_str(out, s->name, strlen(s->name));
    rc |= cn_buf_puts(out, ",\"protectThreshold\":");
    rc |= cn_reg_json_double(out, s->protect_threshold);
    rc |= cn_buf_puts(out, ",\"metadata\":");
    rc |= cn_buf_puts(out, s->metadata);
    rc |= cn_buf_puts(out, ",\"selector\":{\"type\":\"none\"},\"clusters\":[");
    /* Distinct clusters in order of first appearance. */
    for (size_t i = 0; i < s->num; i++) {
        size_t j = 0;
        while (j < i && strcmp(s->insts[j].cluster, s->insts[i].cluster) != 0)
            j++;
        if (j < i)
            continue;
        if (out->len && out->ptr[out->len - 1] == '}')
            rc |= cn_buf_puts(out, ",");
        rc |= cn_buf_puts(out, "{\"name\":");
        rc |= cn_reg_json_str(out, s->insts[i].cluster, strlen(s->insts[i].cluster));
        rc |= cn_buf_puts(out, ",\"healthChecker\":{\"type\":\"");
        rc |= cn_buf_puts(out, s->insts[i].health_path[0] ? "HTTP" : "TCP");
        rc |= cn_buf_puts(out, "\"},\"metadata\":{}}");
    }
    rc |= cn_buf_puts(out, "]}");
    uv_mutex_unlock(&reg->lock);
    return rc ? CN_ELIMIT : 0;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

int cn_reg_service_names(struct cn_reg *reg, struct cn_slice ns, struct cn_slice group,
                         uint64_t page_no, uint64_t page_size, struct cn_buf *out,
                         uint64_t *out_count)
{
    ns = cn_reg_ns(ns);
    uv_mutex_lock(&reg->lock);
    char **names = malloc((reg->num_services ? reg->num_services : 1) * sizeof(char *));
    size_t n = 0;
    if (!names) {
        uv_mutex_unlock(&reg->lock);
        return CN_ENOMEM;
    }
    for (size_t b = 0; b < REG_BUCKETS; b++)
        for (struct svc *s = atomic_load(&reg->buckets[b]); s; s = atomic_load(&s->next))
            if (cn_slice_eq(cn_slice_of(s->ns), ns) &&
                (group.len == 0 || cn_slice_eq(cn_slice_of(s->group), group)))
                names[n++] = group.len ? s->name : s->grouped;
    qsort(names, n, sizeof(*names), cmp_str);
    *out_count = n;
    int rc = cn_buf_puts(out, "[");
    uint64_t from = page_no > 0 ? (page_no - 1) * page_size : 0;
    for (uint64_t i = from; i < n && i < from + page_size; i++) {
        if (i > from)
            rc |= cn_buf_puts(out, ",");
        rc |= cn_reg_json_str(out, names[i], strlen(names[i]));
    }
    rc |= cn_buf_puts(out, "]");
    uv_mutex_unlock(&reg->lock);
    free(names);
    return rc ? CN_ELIMIT : 0;
}

void cn_reg_stats(struct cn_reg *reg, struct cn_reg_stats *o)
{
    memset(o, 0, sizeof(*o));
    uv_mutex_lock(&reg->lock);
    o->services = reg->num_services;
    for (size_t b = 0; b < REG_BUCKETS; b++)
        for (struct svc *s = atomic_load(&reg->buckets[b]); s; s = atomic_load(&s->next))
            for (size_t i = 0; i < s->num; i++) {
                o->instances++;
                o->healthy_instances += s->insts[i].healthy;
                o->ephemeral_instances += s->insts[i].ephemeral;
            }
    uv_mutex_unlock(&reg->lock);
    uv_mutex_lock(&reg->cfg_lock);
    o->configs = reg->num_configs;
    uv_mutex_unlock(&reg->cfg_lock);
    o->registers = atomic_load(&reg->n_registers);
    o->deregisters = atomic_load(&reg->n_deregisters);
    o->beats = atomic_load(&reg->n_beats);
    o->expired_unhealthy = atomic_load(&reg->n_unhealthy);
    o->expired_removed = atomic_load(&reg->n_removed);
    o->config_publishes = atomic_load(&reg->n_publishes);
    o->generation = atomic_load(&reg->generation);
    o->shared = reg->store && (reg->store->flags & CN_REG_STORE_SHARED);
}

void cn_reg_metrics_write(struct cn_reg *reg, struct cn_buf *b)
{
    struct cn_reg_stats st;
    cn_reg_stats(reg, &st);
    cn_buf_printf(b,
                  "# HELP cairn_registry_services Services known to this node.\n"
                  "# TYPE cairn_registry_services gauge\n"
                  "cairn_registry_services %llu\n"
                  "# HELP cairn_registry_instances Instances known to this node.\n"
                  "# TYPE cairn_registry_instances gauge\n"
                  "cairn_registry_instances %llu\n"
                  "# HELP cairn_registry_configs Configuration items.\n"
                  "# TYPE cairn_registry_configs gauge\n"
                  "cairn_registry_configs %llu\n"
                  "# HELP cairn_registry_backend The storage backend in use.\n"
                  "# TYPE cairn_registry_backend gauge\n"
                  "cairn_registry_backend{backend=\"%s\"} 1\n"
                  "# HELP cairn_registry_generation Cluster mode: the etcd revision this node "
                  "has applied (0 embedded).\n"
                  "# TYPE cairn_registry_generation gauge\n"
                  "cairn_registry_generation %llu\n",
                  (unsigned long long)st.services, (unsigned long long)st.instances,
                  (unsigned long long)st.configs, st.shared ? "etcd" : "sqlite",
                  (unsigned long long)st.generation);
    if (reg->store && reg->store->ops->metrics)
        reg->store->ops->metrics(reg->store, b);
}

/* ---- persistent health ------------------------------------------------------------------- */

long cn_reg_checks(struct cn_reg *reg, struct cn_reg_check **out)
{
    *out = NULL;
    uv_mutex_lock(&reg->lock);
    size_t n = 0, cap = 0;
    struct cn_reg_check *v = NULL;
    long rc = 0;
    for (size_t b = 0; b < REG_BUCKETS && rc == 0; b++)
        for (struct svc *s = atomic_load(&reg->buckets[b]); s && rc == 0; s = atomic_load(&s->next))
            for (size_t i = 0; i < s->num && rc == 0; i++) {
                const struct inst *in = &s->insts[i];
                if (in->ephemeral)
                    continue;
                if (n == cap) {
                    cap = cap ? cap * 2 : 16;
                    struct cn_reg_check *nv = realloc(v, cap * sizeof(*v));
                    if (!nv) {
                        rc = CN_ENOMEM;
                        break;
                    }
                    v = nv;
                }
                struct cn_reg_check *c = &v[n++];
                c->ns = strdup(s->ns);
                c->group = strdup(s->group);
                c->service = strdup(s->name);
                c->cluster = strdup(in->cluster);
                c->ip = strdup(in->ip);
                c->health_path = strdup(in->health_path);
                c->port = in->port;
                if (!c->ns || !c->group || !c->service || !c->cluster || !c->ip || !c->health_path)
                    rc = CN_ENOMEM;
            }
    uv_mutex_unlock(&reg->lock);
    if (rc) {
        cn_reg_checks_free(v, (long)n);
        return rc;
    }
    *out = v;
    return (long)n;
}

void cn_reg_checks_free(struct cn_reg_check *c, long n)
{
    if (!c)
        return;
    for (long i = 0; i < n; i++) {
        free(c[i].ns);
        free(c[i].group);
        free(c[i].service);
        free(c[i].cluster);
        free(c[i].ip);
        free(c[i].health_path);
    }
    free(c);
}

void cn_reg_set_health(struct cn_reg *reg, const struct cn_reg_check *c, int healthy,
                       uint64_t now_ms)
{
    (void)now_ms; /* a change marks the snapshot stale; nothing keeps its time */
    uv_mutex_lock(&reg->lock);
    struct svc *s =
        reg_find_svc(reg, cn_slice_of(c->ns), cn_slice_of(c->group), cn_slice_of(c->service));
    struct inst *in =
        s ? reg_find_inst(s, cn_slice_of(c->cluster), cn_slice_of(c->ip), c->port) : NULL;
    if (in && !in->ephemeral && in->healthy != (healthy ? 1 : 0)) {
        in->healthy = healthy ? 1 : 0;
        cn_info("registry",
                healthy ? "instance healthy: check passed" : "instance unhealthy: check failed",
                "service=\"%s\" ip=%s port=%u", s->grouped, in->ip, in->port);
        reg_publish(reg, s);
    }
    reg_reclaim(reg);
    uv_mutex_unlock(&reg->lock);
}

/* ---- life -------------------------------------------------------------------------------- */

static int load_svc(void *ctx, const struct cn_reg_svc_rec *r)
{
    struct cn_reg *reg = ctx;
    struct svc *s =
        reg_get_svc(reg, cn_slice_of(r->ns), cn_slice_of(r->group), cn_slice_of(r->service), NULL);
    char *m = strdup(r->metadata);
    if (!s || !m) {
        free(m);
        return CN_ENOMEM;
    }
    free(s->metadata);
    s->metadata = m;
    s->protect_threshold = r->protect_threshold;
    s->explicit_ = 1;
    reg_publish(reg, s);
    return 0;
}

static int load_inst(void *ctx, const struct cn_reg_inst_rec *r)
{
    struct cn_reg *reg = ctx;
    struct cn_reg_instance in = reg_inst_of_rec(r);
    in.ephemeral = 0;
    struct cn_reg_error e;
    /* No store during load: the record is already there. */
    struct cn_reg_store *st = reg->store;
    reg->store = NULL;
    int rc = reg_put_locked(reg, &in, 0, 0, &e);
    reg->store = st;
    return rc;
}

struct cn_reg *cn_reg_new(const struct cn_reg_opts *opts, struct cn_reg_store *store,
                          uint64_t now_ms, char *err, size_t err_len)
{
    (void)now_ms;
    struct cn_reg *reg = calloc(1, sizeof(*reg));
    if (!reg) {
        snprintf(err, err_len, "out of memory");
        return NULL;
    }
    reg->opts = *opts;
    reg->id = atomic_fetch_add(&next_reg_id, 1);
    atomic_init(&reg->epoch, 1);
    uv_mutex_init(&reg->lock);
    uv_mutex_init(&reg->cfg_lock);
    uv_mutex_init(&reg->store_lock);
    uv_mutex_init(&reg->pw_lock);
    uv_cond_init(&reg->pw_done);
    uv_cond_init(&reg->pw_turn);
    if (reg_cfg_init(reg) != 0) {
        snprintf(err, err_len, "out of memory");
        cn_reg_free(reg);
        return NULL;
    }
    if (store) {
        struct cn_reg_load_cbs cbs = {reg, reg_cfg_load, load_svc, load_inst};
        uv_mutex_lock(&reg->lock);
        int rc = store->ops->load(store, &cbs, err, err_len);
        uv_mutex_unlock(&reg->lock);
        if (rc) {
            cn_reg_free(reg);
            return NULL;
        }
        reg->store = store;
        if (store->ops->attach && store->ops->attach(store, reg, err, err_len) != 0) {
            reg->store = NULL; /* still the caller's */
            cn_reg_free(reg);
            return NULL;
        }
    }
    return reg;
}

void cn_reg_free(struct cn_reg *reg)
{
    if (!reg)
        return;
    /* First: a shared store's thread applies changes until it is closed. */
    if (reg->store)
        reg->store->ops->close(reg->store);
    reg->store = NULL;
    for (size_t b = 0; b < REG_BUCKETS; b++) {
        struct svc *s = atomic_load(&reg->buckets[b]);
        while (s) {
            struct svc *next = atomic_load(&s->next);
            svc_free(s);
            s = next;
        }
    }
    for (size_t i = 0; i < reg->num_retired; i++)
        reg->retired[i].free_fn(reg->retired[i].ptr);
    free(reg->retired);
    reg_cfg_release(reg);
    uv_mutex_destroy(&reg->lock);
    uv_mutex_destroy(&reg->cfg_lock);
    uv_mutex_destroy(&reg->store_lock);
    uv_mutex_destroy(&reg->pw_lock);
    uv_cond_destroy(&reg->pw_done);
    uv_cond_destroy(&reg->pw_turn);
    free(reg);
}
