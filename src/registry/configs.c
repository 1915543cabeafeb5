/* Configuration center: items by (namespace, group, dataId), their MD5, history through the
 * store, rollback, and a change callback that wakes long-polling listeners. */
#include "base/log.h"
#include "registry/internal.h"
#include "registry/util.h"

#include <stdarg.h>

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

int reg_cfg_init(struct cn_reg *reg)
{
    reg->cfg_nbuckets = 256;
    reg->cfg_buckets = calloc(reg->cfg_nbuckets, sizeof(*reg->cfg_buckets));
    return reg->cfg_buckets ? 0 : CN_ENOMEM;
}

static void item_free(struct cfg_item *it)
{
    free(it->ns);
    free(it->group);
    free(it->data_id);
    free(it->content);
    free(it);
}

void reg_cfg_release(struct cn_reg *reg)
{
    for (size_t b = 0; b < reg->cfg_nbuckets; b++) {
        struct cfg_item *it = reg->cfg_buckets[b];
        while (it) {
            struct cfg_item *next = it->next;
            item_free(it);
            it = next;
        }
    }
    free(reg->cfg_buckets);
    reg->cfg_buckets = NULL;
}

static uint64_t key_hash(struct cn_slice ns, struct cn_slice group, struct cn_slice data_id)
{
    const char *p[] = {ns.ptr, group.ptr, data_id.ptr};
    size_t l[] = {ns.len, group.len, data_id.len};
    return reg_hash(p, l, 3);
}

/* Under cfg_lock. *out_pp: the link that points to the item (or where it would go). */
static struct cfg_item *find(struct cn_reg *reg, struct cn_slice ns, struct cn_slice group,
                             struct cn_slice data_id, struct cfg_item ***out_pp)
{
    uint64_t h = key_hash(ns, group, data_id);
    struct cfg_item **pp = &reg->cfg_buckets[h % reg->cfg_nbuckets];
    for (; *pp; pp = &(*pp)->next) {
        struct cfg_item *it = *pp;
        if (it->hash == h && cn_slice_eq(cn_slice_of(it->data_id), data_id) &&
            cn_slice_eq(cn_slice_of(it->group), group) && cn_slice_eq(cn_slice_of(it->ns), ns))
            break;
    }
    if (out_pp)
        *out_pp = pp;
    return *pp;
}

static void grow(struct cn_reg *reg)
{
    if (reg->num_configs < reg->cfg_nbuckets)
        return;
    size_t nb = reg->cfg_nbuckets * 2;
    struct cfg_item **b = calloc(nb, sizeof(*b));
    if (!b)
        return; /* chains just get longer */
    for (size_t i = 0; i < reg->cfg_nbuckets; i++) {
        struct cfg_item *it = reg->cfg_buckets[i];
        while (it) {
            struct cfg_item *next = it->next;
            it->next = b[it->hash % nb];
            b[it->hash % nb] = it;
            it = next;
        }
    }
    free(reg->cfg_buckets);
    reg->cfg_buckets = b;
    reg->cfg_nbuckets = nb;
}

/* Under cfg_lock: sets (creating) an item's current state. */
static int set_item(struct cn_reg *reg, struct cn_slice ns, struct cn_slice group,
                    struct cn_slice data_id, const char *content, size_t len, const char *md5,
                    const char *type, uint64_t version, uint64_t mtime_ms)
{
    struct cfg_item **pp;
    struct cfg_item *it = find(reg, ns, group, data_id, &pp);
    char *c = malloc(len + 1);
    if (!c)
        return CN_ENOMEM;
    memcpy(c, content, len);
    c[len] = '\0';
    if (!it) {
        it = calloc(1, sizeof(*it));
        if (!it) {
            free(c);
            return CN_ENOMEM;
        }
        it->hash = key_hash(ns, group, data_id);
        it->ns = reg_strdup(ns);
        it->group = reg_strdup(group);
        it->data_id = reg_strdup(data_id);
        if (!it->ns || !it->group || !it->data_id) {
            free(c);
            item_free(it);
            return CN_ENOMEM;
        }
        *pp = it;
        reg->num_configs++;
        grow(reg);
    }
    free(it->content);
    it->content = c;
    it->len = len;
    snprintf(it->md5, sizeof(it->md5), "%s", md5);
    snprintf(it->type, sizeof(it->type), "%s", type);
    it->version = version;
    it->mtime_ms = mtime_ms;
    return 0;
}

int reg_cfg_load(void *ctx, const struct cn_reg_cfg_rec *r)
{
    struct cn_reg *reg = ctx;
    uv_mutex_lock(&reg->cfg_lock);
    int rc = set_item(reg, cn_slice_of(r->ns), cn_slice_of(r->group), cn_slice_of(r->data_id),
                      r->content, r->content_len, r->md5, r->type, r->version, r->mtime_ms);
    uv_mutex_unlock(&reg->cfg_lock);
    return rc;
}

static int check_key(const struct cn_reg_cfg_key *k, struct cn_reg_error *err)
{
    if (k->data_id.len == 0)
        return seterr(err, "dataId", "Param 'dataId' is required."), CN_EINVAL;
    if (cn_reg_check_name(k->data_id) != 0)
        return seterr(err, "dataId", "Param 'dataId' is illegal"), CN_EINVAL;
    if (cn_reg_check_name(k->group) != 0)
        return seterr(err, "group", "Param 'group' is illegal"), CN_EINVAL;
    if (k->ns.len && cn_reg_check_name(k->ns) != 0)
        return seterr(err, "tenant", "Param 'tenant' is illegal"), CN_EINVAL;
    return 0;
}

void cn_reg_set_cfg_change_cb(struct cn_reg *reg, cn_reg_cfg_change_cb cb, void *ctx)
{
    reg->cfg_cb = cb;
    reg->cfg_ctx = ctx;
}

static void notify(struct cn_reg *reg, const struct cn_reg_cfg_key *k)
{
    if (reg->cfg_cb)
        reg->cfg_cb(reg->cfg_ctx, k);
}

/* Publishes with a history op. */
static int publish_op(struct cn_reg *reg, const struct cn_reg_cfg_key *k0, struct cn_slice content,
                      struct cn_slice type, const char *op, const char *who, uint64_t now_ms,
                      uint64_t *out_version, struct cn_reg_error *err)
{
    int rc = check_key(k0, err);
    if (rc)
        return rc;
    struct cn_reg_cfg_key k = {cn_reg_ns(k0->ns), k0->group, k0->data_id};
    if (content.len > reg->opts.max_config_bytes)
        return seterr(err, "content",
                      "Param 'content' is too large: registry.max_config_bytes is %llu",
                      (unsigned long long)reg->opts.max_config_bytes),
               CN_ELIMIT;
    if (type.len == 0)
        type = CN_SLICE_LIT("text");
    if (type.len > 63)
        return seterr(err, "type", "Param 'type' is too long (max 63 bytes)"), CN_EINVAL;
    for (size_t i = 0; i < type.len; i++)
        if ((unsigned char)type.ptr[i] < 0x20)
            return seterr(err, "type", "Param 'type' is illegal"), CN_EINVAL;
    char md5[33], typez[64];
    cn_reg_md5_hex(content.ptr ? content.ptr : "", content.len, md5);
    snprintf(typez, sizeof(typez), "%.*s", (int)type.len, type.ptr);
    char *ns = reg_strdup(k.ns), *group = reg_strdup(k.group), *data_id = reg_strdup(k.data_id);
    if (!ns || !group || !data_id) {
        free(ns), free(group), free(data_id);
        return seterr(err, NULL, "out of memory"), CN_ENOMEM;
    }
    uv_mutex_lock(&reg->cfg_lock);
    uint64_t version = 0;
    rc = 0;
    if (!find(reg, k.ns, k.group, k.data_id, NULL) && reg->num_configs >= reg->opts.max_configs) {
        seterr(err, "dataId", "too many configuration items: registry.max_configs is %llu",
               (unsigned long long)reg->opts.max_configs);
        rc = CN_ELIMIT;
    }
    if (rc == 0 && reg->store) {
        struct cn_reg_cfg_rec r = {
            ns,          group, data_id,       content.ptr ? content.ptr : "",
            content.len, md5,   typez,         0,
            now_ms,      op,    who ? who : ""};
        char e[256];
        uv_mutex_lock(&reg->store_lock);
        rc = reg->store->ops->cfg_write(reg->store, &r, reg->opts.max_history, e, sizeof(e));
        uv_mutex_unlock(&reg->store_lock);
        if (rc) {
            cn_error("registry", "store failed", "op=config_write error=\"%s\"", e);
            seterr(err, NULL, "storage failed: %s", e);
            rc = CN_EIO;
        }
        version = r.version;
    } else if (rc == 0) {
        struct cfg_item *it = find(reg, k.ns, k.group, k.data_id, NULL);
        version = it ? it->version + 1 : 1;
    }
    if (rc == 0)
        rc = set_item(reg, k.ns, k.group, k.data_id, content.ptr ? content.ptr : "", content.len,
                      md5, typez, version, now_ms);
    uv_mutex_unlock(&reg->cfg_lock);
    free(ns), free(group), free(data_id);
    if (rc)
        return rc;
    atomic_fetch_add_explicit(&reg->n_publishes, 1, memory_order_relaxed);
    if (out_version)
        *out_version = version;
    notify(reg, &k);
    return 0;
}

int cn_reg_cfg_publish(struct cn_reg *reg, const struct cn_reg_cfg_key *k, struct cn_slice content,
                       struct cn_slice type, const char *who, uint64_t now_ms,
                       uint64_t *out_version, struct cn_reg_error *err)
{
    return publish_op(reg, k, content, type, "publish", who, now_ms, out_version, err);
}

int cn_reg_cfg_delete(struct cn_reg *reg, const struct cn_reg_cfg_key *k0, const char *who,
                      uint64_t now_ms, struct cn_reg_error *err)
{
    int rc = check_key(k0, err);
    if (rc)
        return rc;
    struct cn_reg_cfg_key k = {cn_reg_ns(k0->ns), k0->group, k0->data_id};
    uv_mutex_lock(&reg->cfg_lock);
    struct cfg_item **pp;
    struct cfg_item *it = find(reg, k.ns, k.group, k.data_id, &pp);
    if (!it) {
        uv_mutex_unlock(&reg->cfg_lock);
        return 0;
    }
    if (reg->store) {
        struct cn_reg_cfg_rec r = {it->ns, it->group, it->data_id, NULL,          0, "", it->type,
                                   0,      now_ms,    "delete",    who ? who : ""};
        char e[256];
        uv_mutex_lock(&reg->store_lock);
        rc = reg->store->ops->cfg_write(reg->store, &r, reg->opts.max_history, e, sizeof(e));
        uv_mutex_unlock(&reg->store_lock);
        if (rc) {
            uv_mutex_unlock(&reg->cfg_lock);
            cn_error("registry", "store failed", "op=config_delete error=\"%s\"", e);
            seterr(err, NULL, "storage failed: %s", e);
            return CN_EIO;
        }
    }
    *pp = it->next;
    reg->num_configs--;
    /* The key's slices may point into it: notify with copies. */
    char *ns = it->ns, *group = it->group, *data_id = it->data_id;
    it->ns = it->group = it->data_id = NULL;
    item_free(it);
    uv_mutex_unlock(&reg->cfg_lock);
    struct cn_reg_cfg_key nk = {cn_slice_of(ns), cn_slice_of(group), cn_slice_of(data_id)};
    notify(reg, &nk);
    free(ns), free(group), free(data_id);
    return 0;
}

int cn_reg_cfg_get(struct cn_reg *reg, const struct cn_reg_cfg_key *k, struct cn_buf *out_content,
                   char out_md5[33], char out_type[64], uint64_t *out_version,
                   uint64_t *out_mtime_ms)
{
    uv_mutex_lock(&reg->cfg_lock);
    struct cfg_item *it = find(reg, cn_reg_ns(k->ns), k->group, k->data_id, NULL);
    int rc = CN_ENOENT;
    if (it) {
        rc = out_content ? cn_buf_append(out_content, it->content, it->len) : 0;
        if (out_md5)
            memcpy(out_md5, it->md5, 33);
        if (out_type)
            memcpy(out_type, it->type, 64);
        if (out_version)
            *out_version = it->version;
        if (out_mtime_ms)
            *out_mtime_ms = it->mtime_ms;
    }
    uv_mutex_unlock(&reg->cfg_lock);
    return rc;
}

void cn_reg_cfg_md5(struct cn_reg *reg, const struct cn_reg_cfg_key *k, char out_md5[33])
{
    uv_mutex_lock(&reg->cfg_lock);
    struct cfg_item *it = find(reg, cn_reg_ns(k->ns), k->group, k->data_id, NULL);
    if (it)
        memcpy(out_md5, it->md5, 33);
    else
        out_md5[0] = '\0';
    uv_mutex_unlock(&reg->cfg_lock);
}

struct hist_ctx {
    struct cn_buf *out;
    int n, rc;
    uint64_t want;       /* rollback: the version looked for */
    struct cn_buf found; /* its content */
    char type[64];
    int hit;
};

static int hist_json(void *ctx, const struct cn_reg_cfg_rec *r)
{
    struct hist_ctx *h = ctx;
    struct cn_buf *b = h->out;
    int rc = cn_buf_puts(b, h->n++ ? ",{\"version\":" : "{\"version\":");
    rc |= cn_buf_append_u64(b, r->version);
    rc |= cn_buf_puts(b, ",\"op\":");
    rc |= cn_reg_json_str(b, r->op, strlen(r->op));
    rc |= cn_buf_puts(b, ",\"md5\":");
    rc |= cn_reg_json_str(b, r->md5, strlen(r->md5));
    rc |= cn_buf_puts(b, ",\"type\":");
    rc |= cn_reg_json_str(b, r->type, strlen(r->type));
    rc |= cn_buf_puts(b, ",\"size\":");
    rc |= cn_buf_append_u64(b, r->content_len);
    rc |= cn_buf_puts(b, ",\"who\":");
    rc |= cn_reg_json_str(b, r->who, strlen(r->who));
    rc |= cn_buf_puts(b, ",\"time\":");
    rc |= cn_buf_append_u64(b, r->mtime_ms);
    rc |= cn_buf_puts(b, "}");
    h->rc = rc ? CN_ELIMIT : 0;
    return h->rc;
}

int cn_reg_cfg_history_json(struct cn_reg *reg, const struct cn_reg_cfg_key *k, uint64_t limit,
                            struct cn_buf *out)
{
    struct hist_ctx h = {.out = out};
    int rc = cn_buf_puts(out, "[");
    if (rc == 0 && reg->store) {
        char *ns = reg_strdup(cn_reg_ns(k->ns)), *g = reg_strdup(k->group),
             *d = reg_strdup(k->data_id);
        char e[256];
        if (!ns || !g || !d)
            rc = CN_ENOMEM;
        else {
            uv_mutex_lock(&reg->cfg_lock);
            uv_mutex_lock(&reg->store_lock);
            rc = reg->store->ops->cfg_history(reg->store, ns, g, d, limit, 0, hist_json, &h, e,
                                              sizeof(e));
            uv_mutex_unlock(&reg->store_lock);
            uv_mutex_unlock(&reg->cfg_lock);
        }
        free(ns), free(g), free(d);
        if (rc == 0)
            rc = h.rc;
    }
    if (rc == 0)
        rc = cn_buf_puts(out, "]");
    return rc;
}

static int hist_find(void *ctx, const struct cn_reg_cfg_rec *r)
{
    struct hist_ctx *h = ctx;
    if (r->version != h->want)
        return 0;
    h->hit = strcmp(r->op, "delete") == 0 ? -1 : 1;
    snprintf(h->type, sizeof(h->type), "%s", r->type);
    if (h->hit > 0 && cn_buf_append(&h->found, r->content, r->content_len) != 0)
        h->hit = -2;
    return 1;
}

int cn_reg_cfg_rollback(struct cn_reg *reg, const struct cn_reg_cfg_key *k, uint64_t version,
                        const char *who, uint64_t now_ms, uint64_t *out_version,
                        struct cn_reg_error *err)
{
    int rc = check_key(k, err);
    if (rc)
        return rc;
    if (!reg->store)
        return seterr(err, "version", "no history without a store"), CN_ENOENT;
    struct hist_ctx h = {.want = version};
    cn_buf_init(&h.found, reg->opts.max_config_bytes + 1);
    char *ns = reg_strdup(cn_reg_ns(k->ns)), *g = reg_strdup(k->group), *d = reg_strdup(k->data_id);
    char e[256];
    if (!ns || !g || !d)
        rc = CN_ENOMEM;
    else {
        uv_mutex_lock(&reg->cfg_lock);
        uv_mutex_lock(&reg->store_lock);
        rc = reg->store->ops->cfg_history(reg->store, ns, g, d, 0, 1, hist_find, &h, e, sizeof(e));
        uv_mutex_unlock(&reg->store_lock);
        uv_mutex_unlock(&reg->cfg_lock);
    }
    free(ns), free(g), free(d);
    if (rc == 0 && h.hit == 0) {
        seterr(err, "version", "version %llu is not in the history of this item",
               (unsigned long long)version);
        rc = CN_ENOENT;
    } else if (rc == 0 && h.hit < 0) {
        seterr(err, "version", "version %llu is a deletion; publish or delete instead",
               (unsigned long long)version);
        rc = CN_EINVAL;
    } else if (rc == 0) {
        rc = publish_op(reg, k, cn_buf_slice(&h.found), cn_slice_of(h.type), "rollback", who,
                        now_ms, out_version, err);
    } else {
        seterr(err, NULL, "storage failed");
    }
    cn_buf_release(&h.found);
    return rc;
}

int cn_reg_cfg_list_json(struct cn_reg *reg, struct cn_slice ns, struct cn_slice group,
                         struct cn_buf *out)
{
    ns = cn_reg_ns(ns);
    int rc = cn_buf_puts(out, "[");
    int n = 0;
    uv_mutex_lock(&reg->cfg_lock);
    for (size_t b = 0; b < reg->cfg_nbuckets && rc == 0; b++)
        for (struct cfg_item *it = reg->cfg_buckets[b]; it && rc == 0; it = it->next) {
            if (!cn_slice_eq(cn_slice_of(it->ns), ns) ||
                (group.len && !cn_slice_eq(cn_slice_of(it->group), group)))
                continue;
            rc |= cn_buf_puts(out, n++ ? ",{\"dataId\":" : "{\"dataId\":");
            rc |= cn_reg_json_str(out, it->data_id, strlen(it->data_id));
            rc |= cn_buf_puts(out, ",\"group\":");
            rc |= cn_reg_json_str(out, it->group, strlen(it->group));
            rc |= cn_buf_puts(out, ",\"tenant\":");
            rc |= cn_reg_json_str(out, it->ns, strlen(it->ns));
            rc |= cn_buf_puts(out, ",\"md5\":\"");
            rc |= cn_buf_puts(out, it->md5);
            rc |= cn_buf_puts(out, "\",\"type\":");
            rc |= cn_reg_json_str(out, it->type, strlen(it->type));
            rc |= cn_buf_puts(out, ",\"size\":");
            rc |= cn_buf_append_u64(out, it->len);
            rc |= cn_buf_puts(out, ",\"version\":");
            rc |= cn_buf_append_u64(out, it->version);
            rc |= cn_buf_puts(out, ",\"time\":");
            rc |= cn_buf_append_u64(out, it->mtime_ms);
            rc |= cn_buf_puts(out, "}");
        }
    uv_mutex_unlock(&reg->cfg_lock);
    rc |= cn_buf_puts(out, "]");
    return rc ? CN_ELIMIT : 0;
}

/* ---- changes from a shared store --------------------------------------------------------- */

int reg_apply_cfg(struct cn_reg *reg, const struct cn_reg_cfg_rec *r, uint64_t sync)
{
    struct cn_reg_cfg_key k = {cn_reg_ns(cn_slice_of(r->ns)), cn_slice_of(r->group),
                               cn_slice_of(r->data_id)};
    if (check_key(&k, NULL) != 0)
        return CN_EINVAL;
    uv_mutex_lock(&reg->cfg_lock);
    struct cfg_item *it = find(reg, k.ns, k.group, k.data_id, NULL);
    if (it && sync)
        it->seen = sync;
    if (it && it->version >= r->version) {
        uv_mutex_unlock(&reg->cfg_lock);
        return 0;
    }
    int changed = !it || strcmp(it->md5, r->md5) != 0 || strcmp(it->type, r->type) != 0;
    int rc = set_item(reg, k.ns, k.group, k.data_id, r->content, r->content_len, r->md5, r->type,
                      r->version, r->mtime_ms);
    it = rc == 0 ? find(reg, k.ns, k.group, k.data_id, NULL) : NULL;
    if (it && sync)
        it->seen = sync;
    /* Notify with copies: the item may change once the lock is released. */
    char *ns = it ? strdup(it->ns) : NULL, *group = it ? strdup(it->group) : NULL,
         *data_id = it ? strdup(it->data_id) : NULL;
    uv_mutex_unlock(&reg->cfg_lock);
    if (changed && ns && group && data_id) {
        struct cn_reg_cfg_key nk = {cn_slice_of(ns), cn_slice_of(group), cn_slice_of(data_id)};
        notify(reg, &nk);
    }
    free(ns), free(group), free(data_id);
    return rc;
}

/* Under cfg_lock: unlinks *pp's item and notifies (after releasing the lock). */
static void drop_item_unlock(struct cn_reg *reg, struct cfg_item **pp)
{
    struct cfg_item *it = *pp;
    *pp = it->next;
    reg->num_configs--;
    char *ns = it->ns, *group = it->group, *data_id = it->data_id;
    it->ns = it->group = it->data_id = NULL;
    item_free(it);
    uv_mutex_unlock(&reg->cfg_lock);
    struct cn_reg_cfg_key nk = {cn_slice_of(ns), cn_slice_of(group), cn_slice_of(data_id)};
    notify(reg, &nk);
    free(ns), free(group), free(data_id);
}

int reg_apply_cfg_del(struct cn_reg *reg, const char *ns, const char *group, const char *data_id,
                      uint64_t rev)
{
    uv_mutex_lock(&reg->cfg_lock);
    struct cfg_item **pp;
    struct cfg_item *it =
        find(reg, cn_reg_ns(cn_slice_of(ns)), cn_slice_of(group), cn_slice_of(data_id), &pp);
    if (it && it->version < rev)
        drop_item_unlock(reg, pp);
    else
        uv_mutex_unlock(&reg->cfg_lock);
    return 0;
}

void reg_cfg_sweep(struct cn_reg *reg, uint64_t sync, uint64_t upto)
{
    for (;;) {
        uv_mutex_lock(&reg->cfg_lock);
        struct cfg_item **hit = NULL;
        for (size_t b = 0; b < reg->cfg_nbuckets && !hit; b++)
            for (struct cfg_item **pp = &reg->cfg_buckets[b]; *pp; pp = &(*pp)->next)
                if ((*pp)->seen != sync && (*pp)->version <= upto) {
                    hit = pp;
                    break;
                }
        if (!hit) {
            uv_mutex_unlock(&reg->cfg_lock);
            return;
        }
        cn_info("registry", "configuration gone from the store", "data_id=\"%s\" group=\"%s\"",
                (*hit)->data_id, (*hit)->group);
        drop_item_unlock(reg, hit); /* one at a time: notify runs outside the lock */
    }
}
