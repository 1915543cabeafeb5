/* Applying a shared store's changes (internal.h, "applying a shared store's changes"): other
 * nodes' writes and what a reconciliation reads back go into memory through the same helpers
 * as local writes, without a write back. */
#include "base/log.h"
#include "registry/internal.h"

static int same_inst(const struct inst *in, const struct cn_reg_inst_rec *r, int remote)
{
    return in->weight == r->weight && in->enabled == (r->enabled ? 1 : 0) &&
           in->ephemeral == (r->ephemeral ? 1 : 0) && in->remote == (remote ? 1 : 0) &&
           (!in->ephemeral || in->healthy == (r->healthy ? 1 : 0)) &&
           strcmp(in->metadata, r->metadata) == 0;
}

struct cn_reg_instance reg_inst_of_rec(const struct cn_reg_inst_rec *r)
{
    return (struct cn_reg_instance){cn_slice_of(r->ns),
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
}

int reg_apply_inst(struct cn_reg *reg, const struct cn_reg_inst_rec *r, int remote, uint64_t rev,
                   uint64_t sync, uint64_t now_ms)
{
    struct cn_reg_instance in = reg_inst_of_rec(r);
    struct cn_reg_error e = {0};
    int rc = reg_check_instance(&in, &e);
    if (rc)
        return rc;
    uv_mutex_lock(&reg->lock);
    struct svc *s = reg_find_svc(reg, in.ns, in.group, in.service);
    struct inst *old = s ? reg_find_inst(s, in.cluster, in.ip, in.port) : NULL;
    if (old) {
        if (sync)
            old->seen = sync;
        if (old->rev >= rev || same_inst(old, r, remote)) {
            old->rev = CN_MAX(old->rev, rev);
            uv_mutex_unlock(&reg->lock);
            return 0;
        }
        if (old->ephemeral != (r->ephemeral ? 1 : 0)) /* re-registered as the other kind */
            reg_remove_inst(reg, s, (size_t)(old - s->insts));
    }
    reg->applying = 1;
    rc = reg_put_locked(reg, &in, 0, now_ms, &e);
    reg->applying = 0;
    s = rc == 0 ? reg_find_svc(reg, in.ns, in.group, in.service) : NULL;
    struct inst *n = s ? reg_find_inst(s, in.cluster, in.ip, in.port) : NULL;
    if (n) {
        n->rev = rev;
        n->seen = sync ? sync : n->seen;
        if (n->remote != (remote ? 1 : 0)) {
            n->remote = remote ? 1 : 0;
            reg_publish(reg, s);
        }
    } else if (rc) {
        cn_warn("registry", "cannot apply a stored instance",
                "service=\"%s@@%s\" ip=%s port=%u error=\"%s\"", r->group, r->service, r->ip,
                r->port, e.message);
    }
    reg_reclaim(reg);
    uv_mutex_unlock(&reg->lock);
    return rc;
}

int reg_apply_inst_del(struct cn_reg *reg, const char *ns, const char *group, const char *service,
                       const char *cluster, const char *ip, uint16_t port, uint64_t rev,
                       uint64_t now_ms)
{
    (void)now_ms; /* a change marks the snapshot stale; nothing keeps its time */
    uv_mutex_lock(&reg->lock);
    struct svc *s = reg_find_svc(reg, cn_slice_of(ns), cn_slice_of(group), cn_slice_of(service));
    struct inst *in = s ? reg_find_inst(s, cn_slice_of(cluster), cn_slice_of(ip), port) : NULL;
    if (in && in->rev < rev)
        reg_remove_inst(reg, s, (size_t)(in - s->insts));
    reg_reclaim(reg);
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
        reg_get_svc(reg, cn_slice_of(r->ns), cn_slice_of(r->group), cn_slice_of(r->service), NULL);
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
                reg_publish(reg, s);
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
    struct svc *s = reg_find_svc(reg, cn_slice_of(ns), cn_slice_of(group), cn_slice_of(service));
    if (s && s->explicit_ && s->svc_rev < rev) {
        s->explicit_ = 0;
        if (s->num == 0 && !s->pending)
            reg_drop_svc(reg, s);
    }
    reg_reclaim(reg);
    uv_mutex_unlock(&reg->lock);
    return 0;
}

void reg_sync_sweep(struct cn_reg *reg, uint64_t sync, uint64_t upto, uint64_t now_ms)
{
    (void)now_ms; /* a change marks the snapshot stale; nothing keeps its time */
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
                    reg_store_inst(reg, s, in, NULL);
                    i++;
                    continue;
                }
                cn_info("registry", "instance gone from the store", "service=\"%s\" ip=%s port=%u",
                        s->grouped, in->ip, in->port);
                reg_inst_release(in);
                memmove(in, in + 1, (s->num - i - 1) * sizeof(*in));
                s->num--;
                dirty = 1;
            }
            if (dirty)
                reg_index_rebuild(s);
            if (s->explicit_ && s->seen != sync && s->svc_rev <= upto)
                s->explicit_ = 0;
            if (s->num == 0 && !s->explicit_ && !s->pending)
                reg_drop_svc(reg, s);
            else if (dirty)
                reg_publish(reg, s);
            s = next;
        }
    }
    reg_reclaim(reg);
    uv_mutex_unlock(&reg->lock);
}
