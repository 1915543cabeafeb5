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

static void seterr(struct cn_reg_error *err, const char *param, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void seterr(struct cn_reg_error *err, const char *param, const char *fmt, ...)
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
static void reclaim(struct cn_reg *reg)
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
    free(p); /* one allocation: header, hosts, cluster names, text */
}

static void inst_release(struct inst *in)
{
    free(in->frag);
    free(in->cluster);
    free(in->ip);
    free(in->metadata);
    free(in->health_path);
}

static void svc_free(void *p)
{
    struct svc *s = p;
    for (size_t i = 0; i < s->num; i++)
        inst_release(&s->insts[i]);
    free(s->insts);
    free(s->ns);
    free(s->group);
    free(s->name);
    free(s->grouped);
    free(s->metadata);
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
    return s->hash == h && cn_slice_eq(cn_slice_of(s->name), name) &&
           cn_slice_eq(cn_slice_of(s->group), group) && cn_slice_eq(cn_slice_of(s->ns), ns);
}

/* Inside a read section or under the lock. */
static struct svc *find_svc(struct cn_reg *reg, struct cn_slice ns, struct cn_slice group,
                            struct cn_slice name)
{
    ns = cn_reg_ns(ns);
    uint64_t h = svc_hash(ns, group, name);
    struct svc *s = atomic_load_explicit(&reg->buckets[h % REG_BUCKETS], memory_order_acquire);
    while (s && !svc_is(s, h, ns, group, name))
        s = atomic_load_explicit(&s->next, memory_order_acquire);
    return s;
}

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
    rc |= cn_reg_json_str(b, in->ip, strlen(in->ip));
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
    rc |= cn_reg_json_str(b, in->cluster, strlen(in->cluster));
    rc |= cn_buf_puts(b, ",\"serviceName\":");
    rc |= cn_reg_json_str(b, s->grouped, strlen(s->grouped));
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

/* Under the lock: tells the service-change callbacks that s changed. */
static void notify(struct cn_reg *reg, const struct svc *s)
{
    if (reg->svc_cb)
        reg->svc_cb(reg->svc_ctx, s->ns, s->group, s->name);
    for (int i = 0; i < CN_REG_MAX_SVC_WATCHERS; i++)
        if (reg->svc_more[i].cb)
            reg->svc_more[i].cb(reg->svc_more[i].ctx, s->ns, s->group, s->name);
}

/* Under the lock: builds and publishes a new snapshot of s, retiring the old one. On
 * allocation failure the old snapshot stays (readers see the previous state). The hosts'
 * JSON comes from their cached fragments: a change costs one copy of the service's text,
 * not a rendering of every host. */
static int publish(struct cn_reg *reg, struct svc *s, uint64_t now_ms)
{
    size_t names = 0, text_len = 0, healthy = 0, enabled = 0;
    for (size_t i = 0; i < s->num; i++) {
        if (ensure_frag(s, &s->insts[i]) != 0)
            return CN_ENOMEM;
        names += strlen(s->insts[i].cluster) + 1;
        text_len += s->insts[i].frag_len + (i ? 1 : 0);
    }
    size_t sz = sizeof(struct snap) + s->num * sizeof(struct snap_host) + names + text_len + 1;
    struct snap *sn = malloc(sz);
    if (!sn)
        return CN_ENOMEM;
    sn->revision = ++s->revision;
    sn->changed_ms = now_ms;
    sn->protect_threshold = s->protect_threshold;
    sn->num = s->num;
    sn->hosts = (struct snap_host *)(sn + 1);
    char *p = (char *)(sn->hosts + s->num);
    for (size_t i = 0; i < s->num; i++) {
        size_t l = strlen(s->insts[i].cluster) + 1;
        memcpy(p, s->insts[i].cluster, l);
        sn->hosts[i].cluster = p;
        p += l;
    }
    sn->text = p;
    for (size_t i = 0; i < s->num; i++) {
        const struct inst *in = &s->insts[i];
        if (i)
            *p++ = ',';
        struct snap_host *h = &sn->hosts[i];
        h->off = (uint32_t)(p - sn->text);
        h->len = in->frag_len;
        h->hoff = h->off + in->frag_hoff;
        h->hlen = in->healthy ? 4 : 5;
        h->healthy = in->healthy;
        h->enabled = in->enabled;
        memcpy(p, in->frag, in->frag_len);
        p += in->frag_len;
        healthy += in->healthy;
        enabled += in->enabled;
    }
    *p = '\0';
    sn->text_len = text_len;
    sn->num_healthy = healthy;
    sn->num_enabled = enabled;
    /* A change marker for clients (Nacos sends an MD5 here; nothing checks its value). */
    XXH128_hash_t x = XXH3_128bits(sn->text, text_len);
    snprintf(sn->checksum, sizeof(sn->checksum), "%016llx%016llx", (unsigned long long)x.high64,
             (unsigned long long)x.low64);
    struct snap *old = atomic_exchange_explicit(&s->snap, sn, memory_order_acq_rel);
    retire(reg, old, snap_free);
    if (old)
        notify(reg, s);
    return 0;
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
static struct svc *get_svc(struct cn_reg *reg, struct cn_slice ns, struct cn_slice group,
                           struct cn_slice name, uint64_t now_ms, struct cn_reg_error *err)
{
    ns = cn_reg_ns(ns);
    struct svc *s = find_svc(reg, ns, group, name);
    if (s)
        return s;
    if (reg->num_services >= reg->opts.max_services) {
        seterr(err, "serviceName", "too many services: registry.max_services is %llu",
               (unsigned long long)reg->opts.max_services);
        return NULL;
    }
    s = calloc(1, sizeof(*s));
    if (!s)
        goto nomem;
    s->hash = svc_hash(ns, group, name);
    s->ns = reg_strdup(ns);
    s->group = reg_strdup(group);
    s->name = reg_strdup(name);
    s->grouped = malloc(group.len + name.len + 3);
    s->metadata = strdup("{}");
    if (!s->ns || !s->group || !s->name || !s->grouped || !s->metadata)
        goto nomem;
    sprintf(s->grouped, "%s@@%s", s->group, s->name);
    if (publish(reg, s, now_ms) != 0)
        goto nomem;
    struct svc *head = atomic_load(&reg->buckets[s->hash % REG_BUCKETS]);
    atomic_store_explicit(&s->next, head, memory_order_relaxed);
    atomic_store_explicit(&reg->buckets[s->hash % REG_BUCKETS], s, memory_order_release);
    reg->num_services++;
    return s;
nomem:
    if (s)
        svc_free(s);
    seterr(err, NULL, "out of memory");
    return NULL;
}

/* Under the lock: unlinks s and retires it. Its watchers learn it is gone (a list finds no
 * service now, so no instance). */
static void drop_svc(struct cn_reg *reg, struct svc *s)
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

static struct inst *find_inst(struct svc *s, struct cn_slice cluster, struct cn_slice ip,
                              uint16_t port)
{
    for (size_t i = 0; i < s->num; i++) {
        struct inst *in = &s->insts[i];
        if (in->port == port && cn_slice_eq(cn_slice_of(in->ip), ip) &&
            cn_slice_eq(cn_slice_of(in->cluster), cluster))
            return in;
    }
    return NULL;
}

static int check_instance(const struct cn_reg_instance *in, struct cn_reg_error *err)
{
    if (in->ns.len && cn_reg_check_name(in->ns) != 0)
        return seterr(err, "namespaceId", "Param 'namespaceId' is illegal"), CN_EINVAL;
    if (cn_reg_check_name(in->group) != 0)
        return seterr(err, "groupName", "Param 'groupName' is illegal"), CN_EINVAL;
    if (cn_reg_check_name(in->service) != 0)
        return seterr(err, "serviceName", "Param 'serviceName' is illegal"), CN_EINVAL;
    if (cn_reg_check_name(in->cluster) != 0)
        return seterr(err, "clusterName", "Param 'clusterName' is illegal"), CN_EINVAL;
    if (in->ip.len == 0 || in->ip.len > CN_REG_MAX_IP_BYTES)
        return seterr(err, "ip", "Param 'ip' is illegal"), CN_EINVAL;
    for (size_t i = 0; i < in->ip.len; i++) {
        char c = in->ip.ptr[i];
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
              c == '.' || c == ':' || c == '-' || c == '_' || c == '%' || c == '[' || c == ']'))
            return seterr(err, "ip", "Param 'ip' is illegal"), CN_EINVAL;
    }
    if (in->port == 0)
        return seterr(err, "port", "Param 'port' is illegal: 1..65535"), CN_EINVAL;
    if (!(in->weight >= 0 && in->weight <= 10000))
        return seterr(err, "weight", "Param 'weight' is illegal: 0..10000"), CN_EINVAL;
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
static int store_inst(struct cn_reg *reg, const struct svc *s, struct inst *in,
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
        seterr(err, NULL, "storage failed: %s", e);
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
        seterr(err, NULL, "storage failed: %s", e);
        return CN_EIO;
    }
    return 0;
}

/* Fills an instance's fields from in (metadata already canonical). */
static int fill_inst(struct cn_reg *reg, struct inst *d, const struct cn_reg_instance *in,
                     const char *metadata)
{
    struct inst n = {0};
    n.cluster = reg_strdup(in->cluster);
    n.ip = reg_strdup(in->ip);
    n.metadata = strdup(metadata);
    n.port = in->port;
    n.weight = in->weight;
    n.healthy = in->healthy ? 1 : 0;
    n.enabled = in->enabled ? 1 : 0;
    n.ephemeral = in->ephemeral ? 1 : 0;
    n.beat_interval_ms = reg->opts.beat_interval_ms;
    n.beat_timeout_ms = reg->opts.beat_timeout_ms;
    n.delete_timeout_ms = reg->opts.delete_timeout_ms;
    if (strstr(metadata, "preserved.")) { /* parse only when an override may be there */
        n.beat_interval_ms =
            cn_reg_meta_ms(metadata, "preserved.heart.beat.interval", n.beat_interval_ms);
        n.beat_timeout_ms =
            cn_reg_meta_ms(metadata, "preserved.heart.beat.timeout", n.beat_timeout_ms);
        n.delete_timeout_ms =
            cn_reg_meta_ms(metadata, "preserved.ip.delete.timeout", n.delete_timeout_ms);
        n.health_path = cn_reg_meta_str(metadata, "preserved.health.checker.path");
    } else {
        n.health_path = strdup("");
    }
    if (!n.cluster || !n.ip || !n.metadata || !n.health_path) {
        inst_release(&n);
        return CN_ENOMEM;
    }
    *d = n;
    return 0;
}

/* Under the lock: adds or replaces. */
static int put_locked(struct cn_reg *reg, const struct cn_reg_instance *in, int must_exist,
                      uint64_t now_ms, struct cn_reg_error *err)
{
    struct cn_buf meta;
    cn_buf_init(&meta, CN_REG_MAX_METADATA_BYTES + 64);
    int rc = cn_reg_parse_metadata(in->metadata, &meta);
    if (rc == 0)
        rc = cn_buf_append(&meta, "", 1);
    if (rc) {
        cn_buf_release(&meta);
        seterr(err, "metadata",
               rc == CN_ELIMIT ? "Param 'metadata' is too large (max %d bytes)"
                               : "Param 'metadata' is illegal: a JSON object or k=v,k2=v2",
               CN_REG_MAX_METADATA_BYTES);
        return CN_EINVAL;
    }
    struct svc *s = must_exist ? find_svc(reg, in->ns, in->group, in->service)
                               : get_svc(reg, in->ns, in->group, in->service, now_ms, err);
    if (!s) {
        cn_buf_release(&meta);
        if (must_exist) {
            seterr(err, "serviceName", "service not found: %.*s@@%.*s", (int)in->group.len,
                   in->group.ptr, (int)in->service.len, in->service.ptr);
            return CN_ENOENT;
        }
        return CN_ELIMIT;
    }
    struct inst *old = find_inst(s, in->cluster, in->ip, in->port);
    if (must_exist && !old) {
        cn_buf_release(&meta);
        seterr(err, "ip", "instance not found: %.*s:%u", (int)in->ip.len, in->ip.ptr, in->port);
        return CN_ENOENT;
    }
    if (old && old->ephemeral != (in->ephemeral ? 1 : 0)) {
        cn_buf_release(&meta);
        seterr(err, "ephemeral",
               "instance %.*s:%u is already registered as %s; deregister it first", (int)in->ip.len,
               in->ip.ptr, in->port, old->ephemeral ? "ephemeral" : "persistent");
        return CN_EINVAL;
    }
    if (!old && s->num >= reg->opts.max_instances_per_service) {
        cn_buf_release(&meta);
        seterr(err, "ip",
               "too many instances in service: registry.max_instances_per_service is %llu",
               (unsigned long long)reg->opts.max_instances_per_service);
        return CN_ELIMIT;
    }
    struct inst n;
    if (fill_inst(reg, &n, in, meta.ptr) != 0) {
        cn_buf_release(&meta);
        seterr(err, NULL, "out of memory");
        return CN_ENOMEM;
    }
    cn_buf_release(&meta);
    n.last_beat_ms = now_ms;
    if (!n.ephemeral && old)
        n.healthy = old->healthy; /* the checker owns a persistent instance's health */
    if (store_inst(reg, s, &n, err) != 0) {
        inst_release(&n);
        return CN_EIO;
    }
    if (old) {
        inst_release(old);
        *old = n;
    } else {
        if (s->num == s->cap) {
            size_t cap = s->cap ? s->cap * 2 : 4;
            struct inst *a = realloc(s->insts, cap * sizeof(*a));
            if (!a) {
                inst_release(&n);
                seterr(err, NULL, "out of memory");
                return CN_ENOMEM;
            }
            s->insts = a;
            s->cap = cap;
        }
        s->insts[s->num++] = n;
    }
    publish(reg, s, now_ms);
    return 0;
}

int cn_reg_register(struct cn_reg *reg, const struct cn_reg_instance *in, uint64_t now_ms,
                    struct cn_reg_error *err)
{
    int rc = check_instance(in, err);
    if (rc)
        return rc;
    uv_mutex_lock(&reg->lock);
    rc = put_locked(reg, in, 0, now_ms, err);
    reclaim(reg);
    uv_mutex_unlock(&reg->lock);
    if (rc == 0)
        atomic_fetch_add_explicit(&reg->n_registers, 1, memory_order_relaxed);
    return rc;
}

int cn_reg_update(struct cn_reg *reg, const struct cn_reg_instance *in, uint64_t now_ms,
                  struct cn_reg_error *err)
{
    int rc = check_instance(in, err);
    if (rc)
        return rc;
    uv_mutex_lock(&reg->lock);
    rc = put_locked(reg, in, 1, now_ms, err);
    uv_mutex_unlock(&reg->lock);
    return rc;
}

/* Under the lock: removes instance i of s; drops s when it empties and is implicit. */
static void remove_inst(struct cn_reg *reg, struct svc *s, size_t i, uint64_t now_ms)
{
    inst_release(&s->insts[i]);
    memmove(&s->insts[i], &s->insts[i + 1], (s->num - i - 1) * sizeof(s->insts[0]));
    s->num--;
    if (s->num == 0 && !s->explicit_)
        drop_svc(reg, s);
    else
        publish(reg, s, now_ms);
}

int cn_reg_deregister(struct cn_reg *reg, struct cn_slice ns, struct cn_slice group,
                      struct cn_slice service, struct cn_slice cluster, struct cn_slice ip,
                      uint16_t port, int ephemeral, uint64_t now_ms, struct cn_reg_error *err)
{
    (void)ephemeral; /* an instance is found by its address whatever the flag says */
    uv_mutex_lock(&reg->lock);
    int rc = 0;
    struct svc *s = find_svc(reg, ns, group, service);
    struct inst *in = s ? find_inst(s, cluster, ip, port) : NULL;
    if (in) {
        rc = unstore_inst(reg, s, in, err);
        if (rc == 0)
            remove_inst(reg, s, (size_t)(in - s->insts), now_ms);
    }
    reclaim(reg);
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
    struct svc *s = find_svc(reg, in->ns, in->group, in->service);
    struct inst *i = s ? find_inst(s, in->cluster, in->ip, in->port) : NULL;
    if (i) {
        i->last_beat_ms = now_ms;
        *out_interval_ms = i->beat_interval_ms;
        if (i->remote) {
            /* Another node owned it; its client now beats here: this node takes it over (its
             * key moves under this node's lease). */
            i->remote = 0;
            i->healthy = 1;
            store_inst(reg, s, i, NULL);
            publish(reg, s, now_ms);
        } else if (!i->healthy && i->ephemeral) {
            i->healthy = 1;
            store_inst(reg, s, i, NULL); /* a shared store carries the health */
            publish(reg, s, now_ms);
        }
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
    s = find_svc(reg, in->ns, in->group, in->service);
    i = s ? find_inst(s, in->cluster, in->ip, in->port) : NULL;
    *out_interval_ms = i ? i->beat_interval_ms : reg->opts.beat_interval_ms;
    uv_mutex_unlock(&reg->lock);
    return 0;
}

size_t cn_reg_tick(struct cn_reg *reg, uint64_t now_ms)
{
    size_t changed = 0;
    uv_mutex_lock(&reg->lock);
    for (size_t b = 0; b < REG_BUCKETS; b++) {
        struct svc *s = atomic_load(&reg->buckets[b]);
        while (s) {
            struct svc *next = atomic_load(&s->next);
            int dirty = 0;
            for (size_t i = 0; i < s->num;) {
                struct inst *in = &s->insts[i];
                uint64_t silent = now_ms > in->last_beat_ms ? now_ms - in->last_beat_ms : 0;
                if (in->remote) { /* its owner expires it */
                    i++;
                    continue;
                }
                if (in->ephemeral && silent > in->delete_timeout_ms) {
                    cn_info("registry", "instance removed: no heartbeat",
                            "service=\"%s\" ip=%s port=%u silent_ms=%llu", s->grouped, in->ip,
                            in->port, (unsigned long long)silent);
                    unstore_inst(reg, s, in, NULL); /* shared store: other nodes drop it too */
                    inst_release(in);
                    memmove(in, in + 1, (s->num - i - 1) * sizeof(*in));
                    s->num--;
                    dirty = 1;
                    changed++;
                    atomic_fetch_add_explicit(&reg->n_removed, 1, memory_order_relaxed);
                    continue;
                }
                if (in->ephemeral && in->healthy && silent > in->beat_timeout_ms) {
                    cn_info("registry", "instance unhealthy: no heartbeat",
                            "service=\"%s\" ip=%s port=%u silent_ms=%llu", s->grouped, in->ip,
                            in->port, (unsigned long long)silent);
                    in->healthy = 0;
                    store_inst(reg, s, in, NULL);
                    dirty = 1;
                    changed++;
                    atomic_fetch_add_explicit(&reg->n_unhealthy, 1, memory_order_relaxed);
                }
                i++;
            }
            if (s->num == 0 && !s->explicit_ && dirty)
                drop_svc(reg, s);
            else if (dirty)
                publish(reg, s, now_ms);
            s = next;
        }
    }
    reclaim(reg);
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

static int list_body(struct cn_reg *reg, const struct cn_reg_query *q, const struct snap *sn,
                     uint64_t now_ms, struct cn_buf *out)
{
    char num[24];
    /* Room for the common answer at once: the hosts' text and the fields around it. */
    if (cn_buf_reserve(out, (sn ? sn->text_len : 0) + 2 * (q->group.len + q->service.len) +
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
            rc = cn_buf_append(out, sn->text, sn->text_len);
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
                const char *t = sn->text + h->off;
                if (reach && !h->healthy) {
                    rc |= cn_buf_append(out, t, h->hoff - h->off);
                    rc |= cn_buf_puts(out, "true");
                    rc |= cn_buf_append(out, sn->text + h->hoff + h->hlen,
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
    struct svc *s = find_svc(reg, q->ns, q->group, q->service);
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
    struct svc *s = find_svc(reg, ns, group, service);
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
        return seterr(err, "namespaceId", "Param 'namespaceId' is illegal"), CN_EINVAL;
    if (cn_reg_check_name(sv->group) != 0)
        return seterr(err, "groupName", "Param 'groupName' is illegal"), CN_EINVAL;
    if (cn_reg_check_name(sv->service) != 0)
        return seterr(err, "serviceName", "Param 'serviceName' is illegal"), CN_EINVAL;
    if (!(sv->protect_threshold >= 0 && sv->protect_threshold <= 1))
        return seterr(err, "protectThreshold", "Param 'protectThreshold' is illegal: 0..1"),
               CN_EINVAL;
    struct cn_buf meta;
    cn_buf_init(&meta, CN_REG_MAX_METADATA_BYTES + 64);
    if (cn_reg_parse_metadata(sv->metadata, &meta) != 0 || cn_buf_append(&meta, "", 1) != 0) {
        cn_buf_release(&meta);
        return seterr(err, "metadata", "Param 'metadata' is illegal"), CN_EINVAL;
    }
    uv_mutex_lock(&reg->lock);
    int rc = 0;
    struct svc *s = find_svc(reg, sv->ns, sv->group, sv->service);
    if (update && !s) {
        seterr(err, "serviceName", "service %.*s not found", (int)sv->service.len, sv->service.ptr);
        rc = CN_ENOENT;
    } else if (!update && s && s->explicit_) {
        seterr(err, "serviceName", "specified service %.*s already exists", (int)sv->service.len,
               sv->service.ptr);
        rc = CN_EINVAL;
    } else {
        s = s ? s : get_svc(reg, sv->ns, sv->group, sv->service, 0, err);
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
                    seterr(err, NULL, "storage failed: %s", e);
                    rc = CN_EIO;
                }
            }
            if (rc == 0) {
                free(s->metadata);
                s->metadata = m;
                s->protect_threshold = sv->protect_threshold;
                s->explicit_ = 1;
                publish(reg, s, 0);
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
    struct svc *s = find_svc(reg, ns, group, service);
    if (!s) {
        seterr(err, "serviceName", "specified service not exist, serviceName : %.*s",
               (int)service.len, service.ptr);
        rc = CN_ENOENT;
    } else if (s->num) {
        seterr(err, "serviceName",
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
                seterr(err, NULL, "storage failed: %s", e);
                rc = CN_EIO;
            }
        }
        if (rc == 0)
            drop_svc(reg, s);
    }
    uv_mutex_unlock(&reg->lock);
    return rc;
}

int cn_reg_service_json(struct cn_reg *reg, struct cn_slice ns, struct cn_slice group,
                        struct cn_slice service, struct cn_buf *out)
{
    uv_mutex_lock(&reg->lock);
    struct svc *s = find_svc(reg, ns, group, service);
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
    uv_mutex_lock(&reg->lock);
    struct svc *s =
        find_svc(reg, cn_slice_of(c->ns), cn_slice_of(c->group), cn_slice_of(c->service));
    struct inst *in = s ? find_inst(s, cn_slice_of(c->cluster), cn_slice_of(c->ip), c->port) : NULL;
    if (in && !in->ephemeral && in->healthy != (healthy ? 1 : 0)) {
        in->healthy = healthy ? 1 : 0;
        cn_info("registry",
                healthy ? "instance healthy: check passed" : "instance unhealthy: check failed",
                "service=\"%s\" ip=%s port=%u", s->grouped, in->ip, in->port);
        publish(reg, s, now_ms);
    }
    reclaim(reg);
    uv_mutex_unlock(&reg->lock);
}

/* ---- changes from a shared store --------------------------------------------------------- */

static int same_inst(const struct inst *in, const struct cn_reg_inst_rec *r, int remote)
{
    return in->weight == r->weight && in->enabled == (r->enabled ? 1 : 0) &&
           in->ephemeral == (r->ephemeral ? 1 : 0) && in->remote == (remote ? 1 : 0) &&
           (!in->ephemeral || in->healthy == (r->healthy ? 1 : 0)) &&
           strcmp(in->metadata, r->metadata) == 0;
}

int reg_apply_inst(struct cn_reg *reg, const struct cn_reg_inst_rec *r, int remote, uint64_t rev,
                   uint64_t sync, uint64_t now_ms)
{
    struct cn_reg_instance in = {cn_slice_of(r->ns),
                                 cn_slice_of(r->group),
                                 cn_slice_of(r->service),
                                 cn_slice_of(r->cluster),
                                 cn_slice_of(r->ip),
                                 r->port,
                                 r->weight,
                                 r->healthy,
                                 r->enabled,
                                 r->ephemeral,
                                 cn_slice_of(r->metadata)};
    struct cn_reg_error e = {0};
    int rc = check_instance(&in, &e);
    if (rc)
        return rc;
    uv_mutex_lock(&reg->lock);
    struct svc *s = find_svc(reg, in.ns, in.group, in.service);
    struct inst *old = s ? find_inst(s, in.cluster, in.ip, in.port) : NULL;
    if (old) {
        if (sync)
            old->seen = sync;
        if (old->rev >= rev || same_inst(old, r, remote)) {
            old->rev = CN_MAX(old->rev, rev);
            uv_mutex_unlock(&reg->lock);
            return 0;
        }
        if (old->ephemeral != (r->ephemeral ? 1 : 0)) /* re-registered as the other kind */
            remove_inst(reg, s, (size_t)(old - s->insts), now_ms);
    }
    reg->applying = 1;
    rc = put_locked(reg, &in, 0, now_ms, &e);
    reg->applying = 0;
    s = rc == 0 ? find_svc(reg, in.ns, in.group, in.service) : NULL;
    struct inst *n = s ? find_inst(s, in.cluster, in.ip, in.port) : NULL;
    if (n) {
        n->rev = rev;
        n->seen = sync ? sync : n->seen;
        if (n->remote != (remote ? 1 : 0)) {
            n->remote = remote ? 1 : 0;
            publish(reg, s, now_ms);
        }
    } else if (rc) {
        cn_warn("registry", "cannot apply a stored instance",
                "service=\"%s@@%s\" ip=%s port=%u error=\"%s\"", r->group, r->service, r->ip,
                r->port, e.message);
    }
    reclaim(reg);
    uv_mutex_unlock(&reg->lock);
    return rc;
}

int reg_apply_inst_del(struct cn_reg *reg, const char *ns, const char *group, const char *service,
                       const char *cluster, const char *ip, uint16_t port, uint64_t rev,
                       uint64_t now_ms)
{
    uv_mutex_lock(&reg->lock);
    struct svc *s = find_svc(reg, cn_slice_of(ns), cn_slice_of(group), cn_slice_of(service));
    struct inst *in = s ? find_inst(s, cn_slice_of(cluster), cn_slice_of(ip), port) : NULL;
    if (in && in->rev < rev)
        remove_inst(reg, s, (size_t)(in - s->insts), now_ms);
    reclaim(reg);
    uv_mutex_unlock(&reg->lock);
    return 0;
}

int reg_apply_svc(struct cn_reg *reg, const struct cn_reg_svc_rec *r, uint64_t rev, uint64_t sync)
{
    if (cn_reg_check_name(cn_slice_of(r->group)) || cn_reg_check_name(cn_slice_of(r->service)) ||
        (r->ns[0] && cn_reg_check_name(cn_slice_of(r->ns))) ||
        !(r->protect_threshold >= 0 && r->protect_threshold <= 1))
        return CN_EINVAL;
    uv_mutex_lock(&reg->lock);
    int rc = 0;
    struct svc *s =
        get_svc(reg, cn_slice_of(r->ns), cn_slice_of(r->group), cn_slice_of(r->service), 0, NULL);
    if (!s) {
        rc = CN_ELIMIT;
    } else {
        if (sync)
            s->seen = sync;
        if (s->svc_rev < rev && (!s->explicit_ || s->protect_threshold != r->protect_threshold ||
                                 strcmp(s->metadata, r->metadata) != 0)) {
            char *m = strdup(r->metadata);
            if (!m) {
                rc = CN_ENOMEM;
            } else {
                free(s->metadata);
                s->metadata = m;
                s->protect_threshold = r->protect_threshold;
                s->explicit_ = 1;
                publish(reg, s, 0);
            }
        }
        if (rc == 0)
            s->svc_rev = CN_MAX(s->svc_rev, rev);
    }
    uv_mutex_unlock(&reg->lock);
    return rc;
}

int reg_apply_svc_del(struct cn_reg *reg, const char *ns, const char *group, const char *service,
                      uint64_t rev)
{
    uv_mutex_lock(&reg->lock);
    struct svc *s = find_svc(reg, cn_slice_of(ns), cn_slice_of(group), cn_slice_of(service));
    if (s && s->explicit_ && s->svc_rev < rev) {
        s->explicit_ = 0;
        if (s->num == 0)
            drop_svc(reg, s);
    }
    reclaim(reg);
    uv_mutex_unlock(&reg->lock);
    return 0;
}

void reg_sync_sweep(struct cn_reg *reg, uint64_t sync, uint64_t upto, uint64_t now_ms)
{
    uv_mutex_lock(&reg->lock);
    for (size_t b = 0; b < REG_BUCKETS; b++) {
        struct svc *s = atomic_load(&reg->buckets[b]);
        while (s) {
            struct svc *next = atomic_load(&s->next);
            int dirty = 0;
            for (size_t i = 0; i < s->num;) {
                struct inst *in = &s->insts[i];
                if (in->seen == sync || in->rev > upto) {
                    i++;
                    continue;
                }
                if (in->ephemeral && !in->remote) {
                    /* Ours, alive by its beats, missing from the store: our lease was lost
                     * (this node was cut off longer than its TTL). Write it again. */
                    cn_info("registry", "instance stored again", "service=\"%s\" ip=%s port=%u",
                            s->grouped, in->ip, in->port);
                    store_inst(reg, s, in, NULL);
                    i++;
                    continue;
                }
                cn_info("registry", "instance gone from the store", "service=\"%s\" ip=%s port=%u",
                        s->grouped, in->ip, in->port);
                inst_release(in);
                memmove(in, in + 1, (s->num - i - 1) * sizeof(*in));
                s->num--;
                dirty = 1;
            }
            if (s->explicit_ && s->seen != sync && s->svc_rev <= upto)
                s->explicit_ = 0;
            if (s->num == 0 && !s->explicit_)
                drop_svc(reg, s);
            else if (dirty)
                publish(reg, s, now_ms);
            s = next;
        }
    }
    reclaim(reg);
    uv_mutex_unlock(&reg->lock);
}

/* ---- life -------------------------------------------------------------------------------- */

static int load_svc(void *ctx, const struct cn_reg_svc_rec *r)
{
    struct cn_reg *reg = ctx;
    struct svc *s =
        get_svc(reg, cn_slice_of(r->ns), cn_slice_of(r->group), cn_slice_of(r->service), 0, NULL);
    char *m = strdup(r->metadata);
    if (!s || !m) {
        free(m);
        return CN_ENOMEM;
    }
    free(s->metadata);
    s->metadata = m;
    s->protect_threshold = r->protect_threshold;
    s->explicit_ = 1;
    return publish(reg, s, 0);
}

static int load_inst(void *ctx, const struct cn_reg_inst_rec *r)
{
    struct cn_reg *reg = ctx;
    struct cn_reg_instance in = {cn_slice_of(r->ns),
                                 cn_slice_of(r->group),
                                 cn_slice_of(r->service),
                                 cn_slice_of(r->cluster),
                                 cn_slice_of(r->ip),
                                 r->port,
                                 r->weight,
                                 r->healthy,
                                 r->enabled,
                                 0,
                                 cn_slice_of(r->metadata)};
    struct cn_reg_error e;
    /* No store during load: the record is already there. */
    struct cn_reg_store *st = reg->store;
    reg->store = NULL;
    int rc = put_locked(reg, &in, 0, 0, &e);
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
    free(reg);
}
