/* The cluster store on etcd: several Cairn nodes share one etcd cluster (docs/registry.md,
 * "Cluster mode"; the key layout is in etcd-layout.h).
 *
 * Why a store and not a layer above it: naming.c and configs.c already call the store before
 * they answer a write, under their locks, and keep the in-memory structures that every read
 * is served from. A shared store only adds (1) ephemeral instances, written under this node's
 * lease, and (2) changes from other nodes, which a background thread applies to the same
 * structures through reg_apply_* (internal.h) so that the service- and config-change
 * callbacks fire for them exactly as for local writes.
 *
 * Threads. Writes run on the caller's thread (under the registry's store_lock) on their own
 * curl handle. One background thread owns the watch stream (a curl multi handle), the lease
 * keepalive (every TTL/3) and the periodic reconciliation (a full read, then a sweep of what
 * the read did not see). Own writes come back through the watch: their revisions are kept in
 * a short queue so the thread skips them (memory already holds them).
 *
 * Revisions. Every item remembers the revision it was last written or applied at; a change at
 * or below it is ignored, so a late watch event or a reconciliation that raced a local write
 * never rolls memory back. The generation shown on /metrics and the native API is the last
 * revision applied. */
#include "base/log.h"
#include "registry/etcd-layout.h"
#include "registry/etcd.h"
#include "registry/internal.h"

#include <jansson.h>
#include <time.h>

#define OWN_MAX 4096 /* own write revisions remembered (older ones: applied, harmlessly) */

struct et_store {
    struct cn_reg_store base;
    struct cn_etcd *etcd;
    struct cn_etcd_conn *wconn; /* writes: caller threads, serialised by the store lock */
    struct cn_etcd_conn *bconn; /* background thread */
    char *prefix;
    size_t prefix_len;
    uint64_t ttl_s, reconcile_ms;
    _Atomic int64_t lease;
    struct cn_reg *reg;

    uv_thread_t thread;
    int running;
    atomic_int stop;
    uv_mutex_t wlock; /* guards watch (for the wakeup from close) */
    struct cn_etcd_watch *watch;

    uv_mutex_t own_lock;
    uint64_t own[OWN_MAX];
    size_t own_head, own_num;
    uint64_t hist_seq;

    /* background thread only */
    uint64_t sync;
    int64_t applied;
    int need_reload;

    atomic_uint_fast64_t n_events, n_watch_restarts, n_reconciles, n_reconcile_errors,
        n_lease_regrants, n_compactions, n_write_errors;
};

static uint64_t wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static uint64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static struct cn_slice pfx(const struct et_store *s)
{
    return (struct cn_slice){s->prefix, s->prefix_len};
}

/* ---- key layout ---------------------------------------------------------------------------- */

int cn_etcd_key_component(struct cn_buf *out, struct cn_slice name)
{
    int rc = 0;
    size_t run = 0;
    for (size_t i = 0; i < name.len && rc == 0; i++) {
        char c = name.ptr[i];
        if (c != '/' && c != '%')
            continue;
        rc |= cn_buf_append(out, name.ptr + run, i - run);
        rc |= cn_buf_puts(out, c == '/' ? "%2F" : "%25");
        run = i + 1;
    }
    rc |= cn_buf_append(out, name.ptr + run, name.len - run);
    return rc ? CN_ELIMIT : 0;
}

static int key_base(struct cn_buf *out, struct cn_slice prefix, const char *top, const char *ns,
                    const char *group, const char *name)
{
    int rc = cn_buf_append(out, prefix.ptr, prefix.len);
    rc |= cn_buf_puts(out, top);
    rc |= cn_etcd_key_component(out, cn_slice_of(ns));
    rc |= cn_buf_puts(out, "/");
    rc |= cn_etcd_key_component(out, cn_slice_of(group));
    rc |= cn_buf_puts(out, "/");
    rc |= cn_etcd_key_component(out, cn_slice_of(name));
    return rc ? CN_ELIMIT : 0;
}

int cn_etcd_key_service(struct cn_buf *out, struct cn_slice prefix, const char *ns,
                        const char *group, const char *service)
{
    int rc = key_base(out, prefix, "/registry/", ns, group, service);
    return rc ? rc : (cn_buf_puts(out, "/service") ? CN_ELIMIT : 0);
}

int cn_etcd_key_instance(struct cn_buf *out, struct cn_slice prefix, const char *ns,
                         const char *group, const char *service, const char *cluster,
                         const char *ip, uint16_t port)
{
    int rc = key_base(out, prefix, "/registry/", ns, group, service);
    rc |= cn_buf_puts(out, "/instances/");
    rc |= cn_etcd_key_component(out, cn_slice_of(cluster));
    rc |= cn_buf_puts(out, "/");
    rc |= cn_etcd_key_component(out, cn_slice_of(ip));
    rc |= cn_buf_printf(out, ":%u", port);
    return rc ? CN_ELIMIT : 0;
}

int cn_etcd_key_config(struct cn_buf *out, struct cn_slice prefix, const char *ns,
                       const char *group, const char *data_id)
{
    return key_base(out, prefix, "/config/", ns, group, data_id);
}

int cn_etcd_key_history(struct cn_buf *out, struct cn_slice prefix, const char *ns,
                        const char *group, const char *data_id)
{
    int rc = key_base(out, prefix, "/config-history/", ns, group, data_id);
    return rc ? rc : (cn_buf_puts(out, "/") ? CN_ELIMIT : 0);
}

/* Unescapes one component into dst (room for cap bytes with the NUL). */
static int unescape(struct cn_slice c, char *dst, size_t cap)
{
    size_t n = 0;
    for (size_t i = 0; i < c.len; i++) {
        char ch = c.ptr[i];
        if (ch == '%') {
            if (i + 2 >= c.len)
                return CN_ESYNTAX;
            if (c.ptr[i + 1] == '2' && (c.ptr[i + 2] == 'F' || c.ptr[i + 2] == 'f'))
                ch = '/';
            else if (c.ptr[i + 1] == '2' && c.ptr[i + 2] == '5')
                ch = '%';
            else
                return CN_ESYNTAX;
            i += 2;
        } else if ((unsigned char)ch < 0x20 || ch == '/') {
            return CN_ESYNTAX;
        }
        if (n + 1 >= cap)
            return CN_ELIMIT;
        dst[n++] = ch;
    }
    if (n == 0)
        return CN_ESYNTAX;
    dst[n] = '\0';
    return 0;
}

int cn_etcd_key_parse(struct cn_slice key, struct cn_slice prefix, struct cn_etcd_key *out)
{
    out->kind = CN_EK_NONE;
    out->port = 0;
    out->ns[0] = out->group[0] = out->service[0] = out->cluster[0] = out->ip[0] = '\0';
    if (key.len <= prefix.len + 1 || memcmp(key.ptr, prefix.ptr, prefix.len) != 0 ||
        key.ptr[prefix.len] != '/')
        return 0;
    struct cn_slice parts[8];
    size_t np = 0, start = prefix.len + 1;
    for (size_t i = start; i <= key.len; i++) {
        if (i < key.len && key.ptr[i] != '/')
            continue;
        if (np == 8)
            return 0;
        parts[np++] = (struct cn_slice){key.ptr + start, i - start};
        start = i + 1;
    }
    if (np < 4)
        return 0;
    enum cn_etcd_key_kind kind = CN_EK_NONE;
    if (cn_slice_eq(parts[0], CN_SLICE_LIT("config")) && np == 4)
        kind = CN_EK_CONFIG;
    else if (cn_slice_eq(parts[0], CN_SLICE_LIT("config-history")) && np == 5)
        kind = CN_EK_HISTORY;
    else if (cn_slice_eq(parts[0], CN_SLICE_LIT("registry")) && np == 5 &&
             cn_slice_eq(parts[4], CN_SLICE_LIT("service")))
        kind = CN_EK_SERVICE;
    else if (cn_slice_eq(parts[0], CN_SLICE_LIT("registry")) && np == 7 &&
             cn_slice_eq(parts[4], CN_SLICE_LIT("instances")))
        kind = CN_EK_INSTANCE;
    if (kind == CN_EK_NONE)
        return 0;
    if (unescape(parts[1], out->ns, sizeof(out->ns)) ||
        unescape(parts[2], out->group, sizeof(out->group)) ||
        unescape(parts[3], out->service, sizeof(out->service)))
        return 0;
    if (kind == CN_EK_INSTANCE) {
        struct cn_slice a = parts[6];
        size_t colon = a.len;
        while (colon > 0 && a.ptr[colon - 1] != ':')
            colon--;
        uint64_t port;
        if (colon < 2 ||
            cn_slice_to_u64((struct cn_slice){a.ptr + colon, a.len - colon}, &port) != 0 ||
            port == 0 || port > 65535 ||
            unescape((struct cn_slice){a.ptr, colon - 1}, out->ip, sizeof(out->ip)) ||
            unescape(parts[5], out->cluster, sizeof(out->cluster)))
            return 0;
        out->port = (uint16_t)port;
    }
    out->kind = kind;
    return 0;
}

/* ---- values ------------------------------------------------------------------------------ */

void cn_etcd_value_release(struct cn_etcd_value *v)
{
    json_decref(v->json);
    memset(v, 0, sizeof(*v));
}

static const char *jstr(json_t *o, const char *k)
{
    json_t *v = json_object_get(o, k);
    return json_is_string(v) ? json_string_value(v) : NULL;
}

int cn_etcd_value_parse(enum cn_etcd_key_kind kind, struct cn_slice v, struct cn_etcd_value *out,
                        const char **why)
{
    memset(out, 0, sizeof(*out));
    struct cn_slice head = v;
    if (kind == CN_EK_CONFIG || kind == CN_EK_HISTORY) {
        const char *nl = memchr(v.ptr, '\n', v.len);
        if (!nl)
            return *why = "a configuration value without its header line", CN_ESYNTAX;
        head.len = (size_t)(nl - v.ptr);
        out->content = (struct cn_slice){nl + 1, v.len - head.len - 1};
    }
    json_t *o = json_loadb(head.ptr, head.len, JSON_REJECT_DUPLICATES, NULL);
    if (!json_is_object(o)) {
        json_decref(o);
        return *why = "the value is not a JSON object", CN_ESYNTAX;
    }
    out->json = o;
    switch (kind) {
    case CN_EK_INSTANCE: {
        json_t *w = json_object_get(o, "weight"), *h = json_object_get(o, "healthy"),
               *e = json_object_get(o, "enabled"), *eph = json_object_get(o, "ephemeral");
        out->metadata = jstr(o, "metadata");
        if (!json_is_number(w) || !json_is_boolean(h) || !json_is_boolean(e) ||
            !json_is_boolean(eph) || !out->metadata) {
            cn_etcd_value_release(out);
            return *why = "an instance needs weight, healthy, enabled, ephemeral, metadata",
                   CN_ESYNTAX;
        }
        out->weight = json_number_value(w);
        out->healthy = json_is_true(h);
        out->enabled = json_is_true(e);
        out->ephemeral = json_is_true(eph);
        return 0;
    }
    case CN_EK_SERVICE: {
        json_t *t = json_object_get(o, "protectThreshold");
        out->metadata = jstr(o, "metadata");
        if (!json_is_number(t) || !out->metadata) {
            cn_etcd_value_release(out);
            return *why = "a service needs protectThreshold and metadata", CN_ESYNTAX;
        }
        out->protect_threshold = json_number_value(t);
        return 0;
    }
    case CN_EK_CONFIG:
    case CN_EK_HISTORY: {
        json_t *t = json_object_get(o, "time");
        out->md5 = jstr(o, "md5");
        out->type = jstr(o, "type");
        out->who = jstr(o, "who");
        out->op = jstr(o, "op");
        if (!out->md5 || !out->type || !out->who || !json_is_integer(t) ||
            json_integer_value(t) < 0 || strlen(out->md5) > 32 || strlen(out->type) > 63 ||
            (kind == CN_EK_HISTORY && !out->op)) {
            cn_etcd_value_release(out);
            return *why = "a configuration needs md5, type, who, time (history: op)", CN_ESYNTAX;
        }
        out->time_ms = (uint64_t)json_integer_value(t);
        return 0;
    }
    default:
        cn_etcd_value_release(out);
        return *why = "not a value kind", CN_ESYNTAX;
    }
}

static char *cfg_value(const char *md5, const char *type, uint64_t time_ms, const char *who,
                       const char *op, const char *content, size_t len, size_t *out_len)
{
    json_t *o = json_pack("{s:s,s:s,s:I,s:s}", "md5", md5, "type", type, "time",
                          (json_int_t)time_ms, "who", who ? who : "");
    if (o && op)
        json_object_set_new(o, "op", json_string(op));
    char *h = o ? json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
    json_decref(o);
    if (!h)
        return NULL;
    size_t hl = strlen(h);
    char *v = malloc(hl + 1 + len + 1);
    if (v) {
        memcpy(v, h, hl);
        v[hl] = '\n';
        if (len)
            memcpy(v + hl + 1, content, len);
        *out_len = hl + 1 + len;
    }
    free(h);
    return v;
}

/* ---- own writes ---------------------------------------------------------------------------- */

static void own_push(struct et_store *s, uint64_t rev)
{
    uv_mutex_lock(&s->own_lock);
    if (s->own_num == OWN_MAX) {
        s->own_head = (s->own_head + 1) % OWN_MAX;
        s->own_num--;
    }
    s->own[(s->own_head + s->own_num) % OWN_MAX] = rev;
    s->own_num++;
    uv_mutex_unlock(&s->own_lock);
}

/* Whether rev is one of this node's writes. Watch events arrive in revision order. */
static int own_is(struct et_store *s, uint64_t rev)
{
    uv_mutex_lock(&s->own_lock);
    while (s->own_num && s->own[s->own_head] < rev) {
        s->own_head = (s->own_head + 1) % OWN_MAX;
        s->own_num--;
    }
    int mine = s->own_num && s->own[s->own_head] == rev;
    uv_mutex_unlock(&s->own_lock);
    return mine;
}

static void wrote(struct et_store *s, const struct cn_etcd_resp *r)
{
    s->base.last_rev = (uint64_t)r->revision;
    own_push(s, (uint64_t)r->revision);
}

/* ---- store operations ---------------------------------------------------------------------- */

static int et_load(struct cn_reg_store *base, const struct cn_reg_load_cbs *cbs, char *err,
                   size_t err_len)
{
    /* Everything is read by attach's first reconciliation, ephemeral instances included. */
    (void)base, (void)cbs, (void)err, (void)err_len;
    return 0;
}

static int et_cfg_write(struct cn_reg_store *base, struct cn_reg_cfg_rec *r, uint64_t max_history,
                        char *err, size_t err_len)
{
    struct et_store *s = (struct et_store *)base;
    struct cn_buf k, hk;
    cn_buf_init(&k, 8192);
    cn_buf_init(&hk, 8192);
    size_t vlen = 0, hlen = 0;
    char *v = r->content ? cfg_value(r->md5, r->type, r->mtime_ms, r->who, NULL, r->content,
                                     r->content_len, &vlen)
                         : NULL;
    char *hv = cfg_value(r->md5, r->type, r->mtime_ms, r->who, r->op, r->content,
                         r->content ? r->content_len : 0, &hlen);
    int rc = cn_etcd_key_config(&k, pfx(s), r->ns, r->group, r->data_id);
    rc |= cn_etcd_key_history(&hk, pfx(s), r->ns, r->group, r->data_id);
    size_t hprefix = hk.len;
    rc |= cn_buf_printf(&hk, "%013llu-%llx-%llu", (unsigned long long)r->mtime_ms,
                        (unsigned long long)atomic_load(&s->lease),
                        (unsigned long long)++s->hist_seq);
    struct cn_etcd_resp out;
    cn_etcd_resp_init(&out);
    if (rc || !hv || (r->content && !v)) {
        snprintf(err, err_len, "out of memory");
        rc = CN_ENOMEM;
        goto done;
    }
    struct cn_etcd_op ops[2] = {
        {r->content ? 0 : 1, cn_buf_slice(&k), {v, vlen}, 0},
        {0, cn_buf_slice(&hk), {hv, hlen}, 0},
    };
    rc = cn_etcd_txn(s->wconn, ops, 2, &out, err, err_len);
    if (rc)
        goto done;
    wrote(s, &out);
    r->version = (uint64_t)out.revision;
    /* Prune the item's history past max_history (oldest first); a failure here loses
     * nothing, the rows are pruned at the next write. */
    if (max_history > 0) {
        struct cn_etcd_range_opts ro = {.prefix = 1, .keys_only = 1, .sort_create_desc = 1};
        struct cn_slice hp = {hk.ptr, hprefix};
        char e2[256];
        cn_etcd_resp_release(&out);
        if (cn_etcd_range(s->wconn, hp, &ro, &out, e2, sizeof(e2)) == 0 &&
            out.num_kvs > max_history) {
            size_t n = out.num_kvs - max_history;
            struct cn_etcd_op *del = calloc(n, sizeof(*del));
            if (del) {
                for (size_t i = 0; i < n; i++)
                    del[i] = (struct cn_etcd_op){1, out.kvs[max_history + i].key, {NULL, 0}, 0};
                struct cn_etcd_resp o2;
                cn_etcd_resp_init(&o2);
                if (cn_etcd_txn(s->wconn, del, n, &o2, e2, sizeof(e2)) == 0)
                    own_push(s, (uint64_t)o2.revision);
                cn_etcd_resp_release(&o2);
                free(del);
            }
        }
    }
done:
    if (rc)
        atomic_fetch_add(&s->n_write_errors, 1);
    cn_etcd_resp_release(&out);
    cn_buf_release(&k);
    cn_buf_release(&hk);
    free(v);
    free(hv);
    return rc;
}

static int et_cfg_history(struct cn_reg_store *base, const char *ns, const char *group,
                          const char *data_id, uint64_t limit, int with_content,
                          cn_reg_history_cb cb, void *ctx, char *err, size_t err_len)
{
    (void)with_content; /* the rows carry their content either way */
    struct et_store *s = (struct et_store *)base;
    struct cn_buf k;
    cn_buf_init(&k, 8192);
    if (cn_etcd_key_history(&k, pfx(s), ns, group, data_id) != 0) {
        cn_buf_release(&k);
        snprintf(err, err_len, "key too long");
        return CN_ELIMIT;
    }
    struct cn_etcd_range_opts ro = {.prefix = 1, .sort_create_desc = 1, .limit = (int64_t)limit};
    struct cn_etcd_resp out;
    cn_etcd_resp_init(&out);
    int rc = cn_etcd_range(s->wconn, cn_buf_slice(&k), &ro, &out, err, err_len);
    for (size_t i = 0; rc == 0 && i < out.num_kvs; i++) {
        struct cn_etcd_value v;
        const char *why;
        if (cn_etcd_value_parse(CN_EK_HISTORY, out.kvs[i].value, &v, &why) != 0)
            continue;
        int deleted = strcmp(v.op, "delete") == 0;
        struct cn_reg_cfg_rec r = {ns,
                                   group,
                                   data_id,
                                   deleted ? NULL : v.content.ptr,
                                   deleted ? 0 : v.content.len,
                                   v.md5,
                                   v.type,
                                   (uint64_t)out.kvs[i].create_rev,
                                   v.time_ms,
                                   v.op,
                                   v.who};
        int stop = cb(ctx, &r);
        cn_etcd_value_release(&v);
        if (stop)
            break;
    }
    cn_etcd_resp_release(&out);
    cn_buf_release(&k);
    return rc;
}

static char *svc_value(double threshold, const char *metadata)
{
    json_t *o = json_pack("{s:f,s:s}", "protectThreshold", threshold, "metadata", metadata);
    char *v = o ? json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
    json_decref(o);
    return v;
}

static int put_key(struct et_store *s, struct cn_buf *k, char *v, int64_t lease, char *err,
                   size_t err_len)
{
    int rc;
    if (!v) {
        snprintf(err, err_len, "out of memory");
        rc = CN_ENOMEM;
    } else {
        struct cn_etcd_resp out;
        cn_etcd_resp_init(&out);
        rc = cn_etcd_put(s->wconn, cn_buf_slice(k), cn_slice_of(v), lease, &out, err, err_len);
        if (rc == 0)
            wrote(s, &out);
        cn_etcd_resp_release(&out);
    }
    if (rc)
        atomic_fetch_add(&s->n_write_errors, 1);
    free(v);
    cn_buf_release(k);
    return rc;
}

static int del_key(struct et_store *s, struct cn_buf *k, char *err, size_t err_len)
{
    struct cn_etcd_resp out;
    cn_etcd_resp_init(&out);
    int rc = cn_etcd_delete(s->wconn, cn_buf_slice(k), 0, &out, err, err_len);
    /* Only a deletion makes a revision; without one the header's revision is someone else's. */
    if (rc == 0 && out.deleted > 0)
        wrote(s, &out);
    if (rc)
        atomic_fetch_add(&s->n_write_errors, 1);
    cn_etcd_resp_release(&out);
    cn_buf_release(k);
    return rc;
}

static int et_svc_put(struct cn_reg_store *base, const struct cn_reg_svc_rec *r, char *err,
                      size_t err_len)
{
    struct et_store *s = (struct et_store *)base;
    struct cn_buf k;
    cn_buf_init(&k, 8192);
    cn_etcd_key_service(&k, pfx(s), r->ns, r->group, r->service);
    return put_key(s, &k, svc_value(r->protect_threshold, r->metadata), 0, err, err_len);
}

static int et_svc_del(struct cn_reg_store *base, const char *ns, const char *group,
                      const char *service, char *err, size_t err_len)
{
    struct et_store *s = (struct et_store *)base;
    struct cn_buf k;
    cn_buf_init(&k, 8192);
    cn_etcd_key_service(&k, pfx(s), ns, group, service);
    return del_key(s, &k, err, err_len);
}

static int et_inst_put(struct cn_reg_store *base, const struct cn_reg_inst_rec *r, char *err,
                       size_t err_len)
{
    struct et_store *s = (struct et_store *)base;
    struct cn_buf k;
    cn_buf_init(&k, 8192);
    cn_etcd_key_instance(&k, pfx(s), r->ns, r->group, r->service, r->cluster, r->ip, r->port);
    json_t *o =
        json_pack("{s:f,s:b,s:b,s:b,s:s}", "weight", r->weight, "healthy", r->healthy, "enabled",
                  r->enabled, "ephemeral", r->ephemeral, "metadata", r->metadata);
    char *v = o ? json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
    json_decref(o);
    return put_key(s, &k, v, r->ephemeral ? atomic_load(&s->lease) : 0, err, err_len);
}

static int et_inst_del(struct cn_reg_store *base, const char *ns, const char *group,
                       const char *service, const char *cluster, const char *ip, uint16_t port,
                       char *err, size_t err_len)
{
    struct et_store *s = (struct et_store *)base;
    struct cn_buf k;
    cn_buf_init(&k, 8192);
    cn_etcd_key_instance(&k, pfx(s), ns, group, service, cluster, ip, port);
    return del_key(s, &k, err, err_len);
}

/* ---- applying the cluster's state ------------------------------------------------------------ */

/* Applies one key (a put, or a deletion when del). sync: the reconciliation's stamp or 0. */
static void apply_kv(struct et_store *s, const struct cn_etcd_kv *kv, int del, uint64_t sync)
{
    struct cn_etcd_key k;
    cn_etcd_key_parse(kv->key, pfx(s), &k);
    if (k.kind == CN_EK_NONE || k.kind == CN_EK_HISTORY)
        return;
    uint64_t rev = (uint64_t)kv->mod_rev, now = wall_ms();
    if (del) {
        if (k.kind == CN_EK_CONFIG)
            reg_apply_cfg_del(s->reg, k.ns, k.group, k.service, rev);
        else if (k.kind == CN_EK_SERVICE)
            reg_apply_svc_del(s->reg, k.ns, k.group, k.service, rev);
        else
            reg_apply_inst_del(s->reg, k.ns, k.group, k.service, k.cluster, k.ip, k.port, rev, now);
        return;
    }
    struct cn_etcd_value v;
    const char *why = "";
    if (cn_etcd_value_parse(k.kind, kv->value, &v, &why) != 0) {
        cn_warn("registry", "etcd value ignored", "key=\"%.*s\" error=\"%s\"",
                (int)CN_MIN(kv->key.len, 300), kv->key.ptr, why);
        return;
    }
    int rc = 0;
    if (k.kind == CN_EK_CONFIG) {
        struct cn_reg_cfg_rec r = {k.ns,   k.group, k.service, v.content.ptr, v.content.len, v.md5,
                                   v.type, rev,     v.time_ms, NULL,          v.who};
        rc = reg_apply_cfg(s->reg, &r, sync);
    } else if (k.kind == CN_EK_SERVICE) {
        struct cn_reg_svc_rec r = {k.ns, k.group, k.service, v.metadata, v.protect_threshold};
        rc = reg_apply_svc(s->reg, &r, rev, sync);
    } else {
        struct cn_reg_inst_rec r = {k.ns,   k.group,  k.service, k.cluster, k.ip,       v.metadata,
                                    k.port, v.weight, v.healthy, v.enabled, v.ephemeral};
        int remote = v.ephemeral && kv->lease != atomic_load(&s->lease);
        rc = reg_apply_inst(s->reg, &r, remote, rev, sync, now);
    }
    if (rc)
        cn_warn("registry", "etcd record not applied", "key=\"%.*s\" error=%d",
                (int)CN_MIN(kv->key.len, 300), kv->key.ptr, rc);
    cn_etcd_value_release(&v);
}

static void set_applied(struct et_store *s, int64_t rev)
{
    if (rev > s->applied) {
        s->applied = rev;
        atomic_store(&s->reg->generation, (uint64_t)rev);
    }
}

/* A full read of the registry's keys and configuration at one revision, then the sweep. */
static int reconcile(struct et_store *s, char *err, size_t err_len)
{
    uint64_t sync = ++s->sync;
    struct cn_buf k;
    cn_buf_init(&k, s->prefix_len + 32);
    cn_buf_append(&k, s->prefix, s->prefix_len);
    cn_buf_puts(&k, "/registry/");
    struct cn_etcd_range_opts ro = {.prefix = 1};
    struct cn_etcd_resp a, b;
    cn_etcd_resp_init(&a);
    cn_etcd_resp_init(&b);
    int rc = cn_etcd_range(s->bconn, cn_buf_slice(&k), &ro, &a, err, err_len);
    if (rc == 0) {
        cn_buf_reset(&k);
        cn_buf_append(&k, s->prefix, s->prefix_len);
        cn_buf_puts(&k, "/config/");
        ro.revision = a.revision; /* both halves at the same revision */
        rc = cn_etcd_range(s->bconn, cn_buf_slice(&k), &ro, &b, err, err_len);
    }
    if (rc == 0) {
        for (size_t i = 0; i < a.num_kvs; i++)
            apply_kv(s, &a.kvs[i], 0, sync);
        for (size_t i = 0; i < b.num_kvs; i++)
            apply_kv(s, &b.kvs[i], 0, sync);
        reg_sync_sweep(s->reg, sync, (uint64_t)a.revision, wall_ms());
        reg_cfg_sweep(s->reg, sync, (uint64_t)a.revision);
        set_applied(s, a.revision);
        atomic_fetch_add(&s->n_reconciles, 1);
    } else {
        atomic_fetch_add(&s->n_reconcile_errors, 1);
    }
    cn_etcd_resp_release(&a);
    cn_etcd_resp_release(&b);
    cn_buf_release(&k);
    return rc;
}

static int on_watch(void *ctx, struct cn_etcd_resp *m)
{
    struct et_store *s = ctx;
    if (m->compact_revision) {
        /* The revision to resume from is gone: read everything again. */
        cn_warn("registry", "etcd watch compacted: full reload", "compact_revision=%lld",
                (long long)m->compact_revision);
        atomic_fetch_add(&s->n_compactions, 1);
        s->need_reload = 1;
        return 1;
    }
    if (m->canceled)
        return 1;
    for (size_t i = 0; i < m->num_kvs; i++) {
        const struct cn_etcd_kv *kv = &m->kvs[i];
        atomic_fetch_add(&s->n_events, 1);
        if (!own_is(s, (uint64_t)kv->mod_rev))
            apply_kv(s, kv, m->event_delete[i], 0);
        set_applied(s, kv->mod_rev);
    }
    return atomic_load(&s->stop);
}

static int grant(struct et_store *s, struct cn_etcd_conn *c, char *err, size_t err_len)
{
    struct cn_etcd_resp out;
    cn_etcd_resp_init(&out);
    int rc = cn_etcd_lease_grant(c, (int64_t)s->ttl_s, &out, err, err_len);
    if (rc == 0 && out.lease_id == 0) {
        snprintf(err, err_len, "lease grant answered no ID");
        rc = CN_EIO;
    }
    if (rc == 0)
        atomic_store(&s->lease, out.lease_id);
    cn_etcd_resp_release(&out);
    return rc;
}

static void keepalive(struct et_store *s)
{
    char err[512];
    struct cn_etcd_resp out;
    cn_etcd_resp_init(&out);
    int rc = cn_etcd_lease_keepalive(s->bconn, atomic_load(&s->lease), &out, err, sizeof(err));
    if (rc) {
        cn_warn("registry", "etcd lease keepalive failed", "error=\"%s\"", err);
    } else if (out.ttl <= 0) {
        /* Expired (this node was cut off past its TTL): its ephemeral keys are gone. A new
         * lease, then a reconciliation writes this node's live instances again. */
        cn_warn("registry", "etcd lease lost: granting a new one", "lease=%llx",
                (unsigned long long)atomic_load(&s->lease));
        if (grant(s, s->bconn, err, sizeof(err)) == 0) {
            atomic_fetch_add(&s->n_lease_regrants, 1);
            s->need_reload = 1;
        } else {
            cn_warn("registry", "etcd lease grant failed", "error=\"%s\"", err);
        }
    }
    cn_etcd_resp_release(&out);
}

static void nap(struct et_store *s, uint64_t ms)
{
    for (uint64_t t = 0; t < ms && !atomic_load(&s->stop); t += 50) {
        struct timespec ts = {0, 50 * 1000000L};
        nanosleep(&ts, NULL);
    }
}

static void run(void *arg)
{
    struct et_store *s = arg;
    char err[512];
    uint64_t ka_every = CN_MAX(s->ttl_s * 1000 / 3, (uint64_t)500);
    uint64_t next_ka = mono_ms() + ka_every, next_rec = mono_ms() + s->reconcile_ms;
    while (!atomic_load(&s->stop)) {
        if (s->need_reload) {
            if (reconcile(s, err, sizeof(err)) != 0) {
                cn_warn("registry", "etcd reconciliation failed", "error=\"%s\"", err);
                nap(s, 1000);
                continue;
            }
            s->need_reload = 0;
            next_rec = mono_ms() + s->reconcile_ms;
        }
        if (!s->watch) {
            struct cn_etcd_watch *w =
                cn_etcd_watch_new(s->etcd, pfx(s), s->applied + 1, on_watch, s, err, sizeof(err));
            if (!w) {
                nap(s, 1000);
                continue;
            }
            uv_mutex_lock(&s->wlock);
            s->watch = w;
            uv_mutex_unlock(&s->wlock);
        }
        uint64_t now = mono_ms();
        uint64_t until = CN_MIN(next_ka, next_rec);
        uint64_t wait = until > now ? CN_MIN(until - now, (uint64_t)1000) : 0;
        if (cn_etcd_watch_poll(s->watch, wait, err, sizeof(err)) != 0) {
            size_t ep = cn_etcd_watch_endpoint(s->watch);
            uv_mutex_lock(&s->wlock);
            cn_etcd_watch_free(s->watch);
            s->watch = NULL;
            uv_mutex_unlock(&s->wlock);
            if (atomic_load(&s->stop))
                break;
            cn_warn("registry", "etcd watch ended: reconnecting", "error=\"%s\" from_rev=%lld", err,
                    (long long)(s->applied + 1));
            atomic_fetch_add(&s->n_watch_restarts, 1);
            cn_etcd_next(s->etcd, ep);
            nap(s, 100);
        }
        now = mono_ms();
        if (now >= next_ka) {
            keepalive(s);
            next_ka = mono_ms() + ka_every;
        }
        if (now >= next_rec) {
            s->need_reload = 1;
            next_rec = now + s->reconcile_ms;
        }
    }
}

static int et_attach(struct cn_reg_store *base, struct cn_reg *reg, char *err, size_t err_len)
{
    struct et_store *s = (struct et_store *)base;
    s->reg = reg;
    if (reconcile(s, err, err_len) != 0)
        return CN_EIO;
    if (uv_thread_create(&s->thread, run, s) != 0) {
        snprintf(err, err_len, "cannot start the etcd thread");
        return CN_EIO;
    }
    s->running = 1;
    cn_info("registry", "cluster mode on etcd", "endpoints=%zu prefix=\"%s\" lease=%llx rev=%lld",
            cn_etcd_num_endpoints(s->etcd), s->prefix, (unsigned long long)atomic_load(&s->lease),
            (long long)s->applied);
    return 0;
}

static void et_metrics(struct cn_reg_store *base, struct cn_buf *b)
{
    struct et_store *s = (struct et_store *)base;
    cn_buf_printf(
        b,
        "# HELP cairn_registry_etcd_watch_events_total Watch events received from etcd.\n"
        "# TYPE cairn_registry_etcd_watch_events_total counter\n"
        "cairn_registry_etcd_watch_events_total %llu\n"
        "# HELP cairn_registry_etcd_watch_restarts_total Watch streams reopened (member lost).\n"
        "# TYPE cairn_registry_etcd_watch_restarts_total counter\n"
        "cairn_registry_etcd_watch_restarts_total %llu\n"
        "# HELP cairn_registry_etcd_reconciliations_total Full reads of the cluster's state.\n"
        "# TYPE cairn_registry_etcd_reconciliations_total counter\n"
        "cairn_registry_etcd_reconciliations_total{result=\"ok\"} %llu\n"
        "cairn_registry_etcd_reconciliations_total{result=\"error\"} %llu\n"
        "# HELP cairn_registry_etcd_compactions_total Watches resumed past a compaction.\n"
        "# TYPE cairn_registry_etcd_compactions_total counter\n"
        "cairn_registry_etcd_compactions_total %llu\n"
        "# HELP cairn_registry_etcd_lease_regrants_total This node's lease found expired.\n"
        "# TYPE cairn_registry_etcd_lease_regrants_total counter\n"
        "cairn_registry_etcd_lease_regrants_total %llu\n"
        "# HELP cairn_registry_etcd_write_errors_total Writes etcd did not acknowledge.\n"
        "# TYPE cairn_registry_etcd_write_errors_total counter\n"
        "cairn_registry_etcd_write_errors_total %llu\n"
        "# HELP cairn_registry_etcd_failovers_total Calls moved to another endpoint.\n"
        "# TYPE cairn_registry_etcd_failovers_total counter\n"
        "cairn_registry_etcd_failovers_total %llu\n"
        "# HELP cairn_registry_etcd_fast_failures_total Calls failed at once: no etcd member had "
        "answered the call before.\n"
        "# TYPE cairn_registry_etcd_fast_failures_total counter\n"
        "cairn_registry_etcd_fast_failures_total %llu\n",
        (unsigned long long)atomic_load(&s->n_events),
        (unsigned long long)atomic_load(&s->n_watch_restarts),
        (unsigned long long)atomic_load(&s->n_reconciles),
        (unsigned long long)atomic_load(&s->n_reconcile_errors),
        (unsigned long long)atomic_load(&s->n_compactions),
        (unsigned long long)atomic_load(&s->n_lease_regrants),
        (unsigned long long)atomic_load(&s->n_write_errors),
        (unsigned long long)cn_etcd_failovers(s->etcd),
        (unsigned long long)cn_etcd_fast_failures(s->etcd));
}

static void et_close(struct cn_reg_store *base)
{
    struct et_store *s = (struct et_store *)base;
    if (!s)
        return;
    atomic_store(&s->stop, 1);
    if (s->running) {
        uv_mutex_lock(&s->wlock);
        if (s->watch)
            cn_etcd_watch_wakeup(s->watch);
        uv_mutex_unlock(&s->wlock);
        uv_thread_join(&s->thread);
    }
    cn_etcd_watch_free(s->watch);
    /* A clean stop takes this node's ephemeral instances away at once rather than after the
     * TTL: their clients are about to lose their server anyway. */
    if (s->wconn && atomic_load(&s->lease)) {
        char err[256];
        if (cn_etcd_lease_revoke(s->wconn, atomic_load(&s->lease), err, sizeof(err)) != 0)
            cn_warn("registry", "etcd lease revoke failed", "error=\"%s\"", err);
    }
    cn_etcd_conn_free(s->wconn);
    cn_etcd_conn_free(s->bconn);
    cn_etcd_free(s->etcd);
    uv_mutex_destroy(&s->wlock);
    uv_mutex_destroy(&s->own_lock);
    free(s->prefix);
    free(s);
}

static const struct cn_reg_store_ops et_ops = {
    .load = et_load,
    .cfg_write = et_cfg_write,
    .cfg_history = et_cfg_history,
    .svc_put = et_svc_put,
    .svc_del = et_svc_del,
    .inst_put = et_inst_put,
    .inst_del = et_inst_del,
    .attach = et_attach,
    .metrics = et_metrics,
    .close = et_close,
};

struct cn_reg_store *cn_reg_store_etcd_open(const struct cn_reg_etcd_opts *o, char *err,
                                            size_t err_len)
{
    const char *p = o->prefix && *o->prefix ? o->prefix : "/cairn";
    size_t pl = strlen(p);
    while (pl > 0 && p[pl - 1] == '/')
        pl--;
    if (p[0] != '/' || pl == 0) {
        snprintf(err, err_len, "registry.etcd.prefix: '%s' must start with '/' and name a path", p);
        return NULL;
    }
    struct et_store *s = calloc(1, sizeof(*s));
    if (!s) {
        snprintf(err, err_len, "out of memory");
        return NULL;
    }
    s->base.ops = &et_ops;
    s->base.flags = CN_REG_STORE_SHARED;
    uv_mutex_init(&s->wlock);
    uv_mutex_init(&s->own_lock);
    s->prefix = strndup(p, pl);
    s->prefix_len = pl;
    s->ttl_s = CN_MAX((o->lease_ttl_ms + 999) / 1000, (uint64_t)2);
    s->reconcile_ms = CN_MAX(o->reconcile_ms, (uint64_t)100);
    struct cn_etcd_opts eo = {o->endpoints, o->dial_timeout_ms, o->request_timeout_ms,
                              o->max_response_bytes};
    s->etcd = s->prefix ? cn_etcd_new(&eo, err, err_len) : NULL;
    if (!s->etcd) {
        et_close(&s->base);
        return NULL;
    }
    s->wconn = cn_etcd_conn_new(s->etcd);
    s->bconn = cn_etcd_conn_new(s->etcd);
    /* The keepalive must get through well within the TTL, even while a member hangs. */
    if (s->bconn)
        cn_etcd_conn_set_attempt_timeout(s->bconn, s->ttl_s * 1000 / 4);
    if (!s->wconn || !s->bconn) {
        snprintf(err, err_len, "out of memory");
        et_close(&s->base);
        return NULL;
    }
    if (grant(s, s->wconn, err, err_len) != 0) {
        et_close(&s->base);
        return NULL;
    }
    return &s->base;
}
