/* Persistent instance writes on the embedded store: group commit.
 *
 * A persistent instance's write (register, update, deregister) does not hold the naming lock
 * across its sync to disk: it is validated under the lock and given a sequence number; then,
 * without the lock, it joins the writes waiting for the store, and whichever writer finds
 * none being committed commits all that wait in one transaction (one sync for all); then,
 * under the lock again, each write is applied to memory in sequence order, so memory ends as
 * the store does. Meanwhile the service stays (pending) and an ephemeral register of an
 * instance with a put in flight is refused, as it would be once the put is applied. The
 * shared store (etcd) keeps the direct path: its revisions are read under the lock. */
#include "base/log.h"
#include "registry/internal.h"

/* Whether in's writes take the group commit path. */
int reg_deferred(const struct cn_reg *reg, int ephemeral)
{
    return reg->store && !reg->applying && !ephemeral && !(reg->store->flags & CN_REG_STORE_SHARED);
}

/* Under the lock: 1 when a put of s's instance (cluster, ip, port) is in flight. */
int reg_put_pending(struct cn_reg *reg, const struct svc *s, struct cn_slice cluster,
                    struct cn_slice ip, uint16_t port)
{
    uint64_t key = reg_inst_key(cluster, ip, port);
    int hit = 0;
    uv_mutex_lock(&reg->pw_lock);
    for (struct reg_pw *w = reg->pw_head; w && !hit; w = w->next)
        hit = !w->del && w->s == s && w->n.key == key && w->n.port == port &&
              w->n.ip_len == ip.len && w->n.cluster_len == cluster.len &&
              memcmp(w->n.ip, ip.ptr, ip.len) == 0 &&
              memcmp(w->n.cluster, cluster.ptr, cluster.len) == 0;
    uv_mutex_unlock(&reg->pw_lock);
    return hit;
}

/* Under the lock: w (its s, n, del set) joins the writes in flight with the next seq. */
void reg_pw_enqueue(struct cn_reg *reg, struct reg_pw *w)
{
    w->seq = ++reg->pw_seq;
    w->s->pending++;
    w->s->growing += w->grows ? 1u : 0u;
    w->state = PW_QUEUED;
    w->next = NULL;
    uv_mutex_lock(&reg->pw_lock);
    if (reg->pw_tail)
        reg->pw_tail->next = w;
    else
        reg->pw_head = w;
    reg->pw_tail = w;
    if (!reg->pw_queued)
        reg->pw_queued = w;
    uv_mutex_unlock(&reg->pw_lock);
}

static int pw_store(struct cn_reg *reg, struct reg_pw *w, char *e, size_t e_len)
{
    const struct svc *s = w->s;
    const struct inst *n = &w->n;
    if (w->del)
        return reg->store->ops->inst_del(reg->store, s->ns, s->group, s->name, n->cluster, n->ip,
                                         n->port, e, e_len);
    struct cn_reg_inst_rec r = {s->ns,      s->group,    s->name,     n->cluster,
                                n->ip,      n->metadata, n->port,     n->weight,
                                n->healthy, n->enabled,  n->ephemeral};
    return reg->store->ops->inst_put(reg->store, &r, e, e_len);
}

/* Without any lock: stores first..last (consecutive in the list, being committed) in one
 * transaction when the store has them; one by one when it has not, or when the transaction
 * failed (then each write gets its own answer). Sets each one's rc and err. */
static void pw_commit(struct cn_reg *reg, struct reg_pw *first, struct reg_pw *last)
{
    const struct cn_reg_store_ops *ops = reg->store->ops;
    char e[256] = "";
    uv_mutex_lock(&reg->store_lock);
    int grouped = first != last && ops->txn_begin && ops->txn_begin(reg->store, e, sizeof(e)) == 0;
    if (grouped) {
        int rc = 0;
        for (struct reg_pw *w = first; rc == 0; w = w->next) {
            rc = pw_store(reg, w, e, sizeof(e));
            if (w == last)
                break;
        }
        if (rc == 0)
            rc = ops->txn_commit(reg->store, e, sizeof(e));
        else
            ops->txn_rollback(reg->store);
        if (rc == 0)
            for (struct reg_pw *w = first;; w = w->next) {
                w->rc = 0;
                if (w == last)
                    break;
            }
        else
            grouped = 0; /* each on its own, for its own answer */
    }
    if (!grouped)
        for (struct reg_pw *w = first;; w = w->next) {
            w->rc = pw_store(reg, w, w->err, sizeof(w->err)) ? CN_EIO : 0;
            if (w == last)
                break;
        }
    uv_mutex_unlock(&reg->store_lock);
}

/* Without any lock: returns once w is durable (or failed: w->rc). */
void reg_pw_wait(struct cn_reg *reg, struct reg_pw *w)
{
    uv_mutex_lock(&reg->pw_lock);
    while (w->state != PW_DONE) {
        if (reg->pw_committing) {
            uv_cond_wait(&reg->pw_done, &reg->pw_lock);
            continue;
        }
        /* Nobody commits and w waits: w's writer commits every write that waits. */
        struct reg_pw *first = reg->pw_queued, *last = reg->pw_tail;
        CN_BUG_ON(!first || w->state != PW_QUEUED);
        reg->pw_queued = NULL;
        reg->pw_committing = 1;
        for (struct reg_pw *x = first;; x = x->next) {
            x->state = PW_COMMITTING;
            if (x == last)
                break;
        }
        uv_mutex_unlock(&reg->pw_lock);
        pw_commit(reg, first, last);
        uv_mutex_lock(&reg->pw_lock);
        for (struct reg_pw *x = first;; x = x->next) {
            x->state = PW_DONE;
            if (x == last)
                break;
        }
        reg->pw_committing = 0;
        uv_cond_broadcast(&reg->pw_done);
    }
    uv_mutex_unlock(&reg->pw_lock);
}

/* Under the lock: waits for w's turn, applies it (when stored) and takes it out of the
 * list. Returns w->rc, with err set on failure. */
int reg_pw_apply(struct cn_reg *reg, struct reg_pw *w, struct cn_reg_error *err)
{
    while (reg->pw_applied + 1 != w->seq)
        uv_cond_wait(&reg->pw_turn, &reg->lock);
    struct svc *s = w->s;
    if (w->rc) {
        cn_error("registry", "store failed", "op=%s error=\"%s\"",
                 w->del ? "instance_del" : "instance_put", w->err);
        reg_seterr(err, NULL, "storage failed: %s", w->err);
        if (!w->del)
            reg_inst_release(&w->n);
    } else {
        struct inst *old = reg_find_inst(s, (struct cn_slice){w->n.cluster, w->n.cluster_len},
                                         (struct cn_slice){w->n.ip, w->n.ip_len}, w->n.port);
        if (w->del) {
            if (old && !old->ephemeral)
                reg_remove_inst(reg, s, (size_t)(old - s->insts));
        } else if (old) {
            if (!old->ephemeral)
                w->n.healthy = old->healthy; /* the checker owns a persistent one's health */
            reg_inst_release(old);
            *old = w->n;
            reg_publish(reg, s);
        } else if (reg_index_reserve(s, s->num + 1) == 0) {
            s->insts[s->num] = w->n;
            reg_index_put(s, s->num++);
            reg_publish(reg, s);
        } else {
            /* Stored, not in memory until a restart loads it. */
            cn_error("registry", "out of memory applying a stored instance",
                     "service=\"%s\" ip=%s port=%u", s->grouped, w->n.ip, w->n.port);
            reg_inst_release(&w->n);
            reg_seterr(err, NULL, "out of memory");
            w->rc = CN_ENOMEM;
        }
    }
    uv_mutex_lock(&reg->pw_lock);
    CN_BUG_ON(reg->pw_head != w);
    reg->pw_head = w->next;
    if (!reg->pw_head)
        reg->pw_tail = NULL;
    uv_mutex_unlock(&reg->pw_lock);
    reg->pw_applied = w->seq;
    uv_cond_broadcast(&reg->pw_turn);
    s->growing -= w->grows ? 1u : 0u;
    if (--s->pending == 0 && s->num == 0 && !s->explicit_)
        reg_drop_svc(reg, s);
    free(w->del_key);
    return w->rc;
}
